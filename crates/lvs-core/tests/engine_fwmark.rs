//! Firewall-mark services fed by flows (connections.md §4, §8.1): a flow
//! over a range of addresses and ports marks new connections, the service
//! of that mark schedules them, persistence holds one template per
//! (client network, mark) across protocols, addresses and ports.

mod support;

use lvs_core::wire::{ipproto, tcp_flags::*};
use lvs_core::{DestConfig, Engine, Flow, Forward, ServiceKey, ServiceOptions, Verdict};
use support::{ip, packet};

const C: [u8; 4] = [198, 18, 0, 2];

fn rs(i: u8) -> [u8; 4] {
    [198, 18, 1, 10 + i]
}

/// Mark 7: TCP to 198.18.0.100/30, ports 80 and 8000-8010; mark 9: UDP
/// to 198.18.0.100/30, any port.
fn flows() -> Vec<Flow> {
    vec![
        Flow {
            dst: ip([198, 18, 0, 100]),
            dst_len: 30,
            src: None,
            protocol: Some(ipproto::TCP),
            ports: vec![(80, 80), (8000, 8010)],
            mark: 7,
        },
        Flow {
            dst: ip([198, 18, 0, 100]),
            dst_len: 30,
            src: None,
            protocol: Some(ipproto::UDP),
            ports: vec![],
            mark: 9,
        },
    ]
}

fn fwm_service(e: &mut Engine, mark: u32, persistent: Option<u32>, servers: &[u8]) -> ServiceKey {
    let key = ServiceKey::fwmark(mark, false);
    let opts = ServiceOptions {
        persistent,
        ..Default::default()
    };
    e.add_service_with(key, "rr", 0, opts).unwrap();
    for &i in servers {
        e.add_dest(key, nat(i)).unwrap();
    }
    key
}

/// NAT server `rs(i)`, port 0 (the client's port), weight 1.
fn nat(i: u8) -> DestConfig {
    DestConfig {
        tunnel: Default::default(),
        addr: ip(rs(i)),
        port: 0,
        forward: Forward::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

#[test]
fn a_flow_marks_new_connections_for_the_service_of_its_mark() {
    let mut e = Engine::new(1);
    e.set_flows(flows());
    let key = fwm_service(&mut e, 7, None, &[1, 2]);
    assert_eq!(key.mark(), Some(7));
    // Two addresses and two ports of the flow: balanced, to the client's
    // port (the servers have port 0).
    let mut got = Vec::new();
    for (i, (d, port)) in [([198, 18, 0, 101], 80), ([198, 18, 0, 103], 8005)]
        .into_iter()
        .enumerate()
    {
        let mut syn = packet(ipproto::TCP, C, 40000 + i as u16, d, port, SYN);
        match e.process_ipv4(0, &mut syn, false) {
            Verdict::Forward { to } => got.push(to),
            other => panic!("{other:?}"),
        }
        assert_eq!(&syn[22..24], &port.to_be_bytes(), "the client's port");
    }
    got.sort();
    assert_eq!(got, [ip(rs(1)), ip(rs(2))], "round robin over both");
    // Outside the flow (port, address or protocol): not this service.
    for (d, port, proto) in [
        ([198, 18, 0, 101], 81, ipproto::TCP),
        ([198, 18, 0, 104], 80, ipproto::TCP),
        ([198, 18, 0, 101], 80, ipproto::UDP),
    ] {
        let mut p = packet(proto, C, 41000, d, port, SYN);
        assert!(
            !matches!(e.process_ipv4(0, &mut p, false), Verdict::Forward { .. }),
            "{d:?}:{port} {proto}"
        );
    }
    // The mark is no address: nothing is a VIP because of it.
    let mut p = packet(ipproto::TCP, [0, 0, 0, 7], 1, C, 80, SYN);
    assert!(!matches!(
        e.process_ipv4(0, &mut p, false),
        Verdict::Forward { .. }
    ));
}

#[test]
fn persistence_holds_one_template_per_client_network_and_mark() {
    let mut e = Engine::new(2);
    e.set_flows(flows());
    let key = fwm_service(&mut e, 7, Some(300), &[1, 2, 3]);
    let mut first = None;
    for (i, (d, port)) in [
        ([198, 18, 0, 100], 80),
        ([198, 18, 0, 102], 8001),
        ([198, 18, 0, 103], 8010),
        ([198, 18, 0, 101], 80),
    ]
    .into_iter()
    .enumerate()
    {
        let mut syn = packet(ipproto::TCP, C, 42000 + i as u16, d, port, SYN);
        let Verdict::Forward { to } = e.process_ipv4(i as u64, &mut syn, false) else {
            panic!()
        };
        assert_eq!(
            *first.get_or_insert(to),
            to,
            "same server for every port and address"
        );
    }
    // One template: protocol 0 (IPPROTO_IP), the mark as its address, port 0.
    let templates: Vec<_> = e
        .connections()
        .filter(|c| c.flags & lvs_core::conn::flags::TEMPLATE != 0)
        .map(|c| (c.protocol, c.vaddr, c.vport, c.dport))
        .collect();
    assert_eq!(templates, [(0, key.addr, 0, 0)]);
}

#[test]
fn flows_can_be_replaced_and_an_ipv6_mark_is_its_own_key() {
    let mut e = Engine::new(3);
    fwm_service(&mut e, 7, None, &[1]);
    let mut syn = packet(ipproto::TCP, C, 43000, [198, 18, 0, 101], 80, SYN);
    assert!(!matches!(
        e.process_ipv4(0, &mut syn, false),
        Verdict::Forward { .. }
    ));
    e.set_flows(flows());
    let mut syn = packet(ipproto::TCP, C, 43001, [198, 18, 0, 101], 80, SYN);
    assert!(matches!(
        e.process_ipv4(0, &mut syn, false),
        Verdict::Forward { .. }
    ));
    let v6 = ServiceKey::fwmark(7, true);
    assert_ne!(v6, ServiceKey::fwmark(7, false));
    assert_eq!(v6.mark(), Some(7));
    assert_eq!(v6.addr.to_string(), "0:7::");
}

/// A NAT server of a firewall-mark service answers whatever its flows sent
/// it; its other packets (matching no connection) are forwarded untouched
/// by lvsd, whatever the protocol or port, since the guard keeps them from
/// the host.
#[test]
fn a_nat_server_of_a_mark_service_is_known_for_every_protocol() {
    let mut e = Engine::new(4);
    e.set_flows(flows());
    fwm_service(&mut e, 7, None, &[1]);
    for (proto, sport) in [
        (ipproto::UDP, 5353),
        (ipproto::TCP, 44000),
        (ipproto::SCTP, 9),
    ] {
        let mut p = packet(proto, rs(1), sport, [198, 18, 9, 9], 53, 0);
        assert_eq!(
            e.process_ipv4(0, &mut p, false),
            Verdict::Forward {
                to: ip([198, 18, 9, 9])
            },
            "protocol {proto}"
        );
    }
}

/// The director's own address inside a flow's network: flows never take
/// its traffic (it is the host's, as the guard's `fib daddr type != local`
/// leaves it to the host too).
#[test]
fn flows_never_take_the_directors_own_traffic() {
    use lvs_core::xmit::{OnLink, PacketBuf, Path, Paths, Transmit};
    /// On-link paths; 198.18.0.101 is one of the director's addresses.
    struct Local(OnLink);
    impl Paths for Local {
        fn path(&self, to: std::net::IpAddr) -> Option<Path> {
            self.0.path(to)
        }
        fn source(&self, to: std::net::IpAddr) -> Option<std::net::IpAddr> {
            self.0.source(to)
        }
        fn is_local(&self, a: std::net::IpAddr) -> bool {
            a == ip([198, 18, 0, 101])
        }
    }
    let paths = Local(OnLink {
        src: ip([198, 18, 0, 1]),
        mtu: 1500,
    });
    let mut e = Engine::new(5);
    e.set_flows(flows());
    fwm_service(&mut e, 7, None, &[1]);
    let mut run = |dst: [u8; 4], sport: u16| {
        let mut p = packet(ipproto::TCP, C, sport, dst, 80, SYN);
        let mut buf = PacketBuf::new(&mut p, 0);
        e.process(0, &mut buf, &paths)
    };
    assert_eq!(
        run([198, 18, 0, 101], 44000),
        Transmit::Pass,
        "the director's own address"
    );
    assert!(
        matches!(run([198, 18, 0, 102], 44001), Transmit::Send(_)),
        "another address of the flow"
    );
}

/// `cache_bypass` (connections.md §7.5 step 1, forwarding.md §8): a
/// firewall-mark service without an available server lets the packet go on
/// to its own destination through a BYPASS entry that the flow's later
/// packets follow; off (the default), the client is refused.
#[test]
fn cache_bypass_sends_a_mark_services_packets_to_their_own_destination() {
    let dst = [198, 18, 0, 102];
    let mut e = Engine::new(6);
    e.set_flows(flows());
    let key = fwm_service(&mut e, 7, None, &[]);
    let mut syn = packet(ipproto::TCP, C, 42000, dst, 80, SYN);
    assert!(
        !matches!(e.process_ipv4(0, &mut syn, false), Verdict::Forward { .. }),
        "refused without cache_bypass"
    );
    assert_eq!(e.connection_count(), 0);
    e.set_sysctl("cache_bypass", "1").unwrap();
    let mut syn = packet(ipproto::TCP, C, 42000, dst, 80, SYN);
    let before = syn.clone();
    assert_eq!(
        e.process_ipv4(0, &mut syn, false),
        Verdict::Forward { to: ip(dst) }
    );
    // Unchanged but for the TTL (and the header checksum with it).
    assert_eq!(syn[8], before[8] - 1);
    assert_eq!(&syn[12..20], &before[12..20]);
    assert_eq!(&syn[20..], &before[20..]);
    let c = e.connections().next().expect("a bypass entry");
    assert_eq!(c.flags & 0x7, 4, "BYPASS");
    assert_eq!((c.daddr, c.dport), (ip([0, 0, 0, 0]), 0));
    assert_eq!((c.vaddr, c.vport), (ip(dst), 80));
    // The flow's next packet follows the entry; no "conns" is counted.
    let mut ack = packet(ipproto::TCP, C, 42000, dst, 80, ACK);
    assert_eq!(
        e.process_ipv4(10, &mut ack, false),
        Verdict::Forward { to: ip(dst) }
    );
    assert_eq!(e.connection_count(), 1);
    let (svc, _) = e.service_stats(&key).unwrap();
    assert_eq!(svc.counters.conns, 0);
    // With a server available, the service schedules as usual.
    e.add_dest(key, nat(1)).unwrap();
    let mut syn = packet(ipproto::TCP, C, 42001, dst, 80, SYN);
    assert_eq!(
        e.process_ipv4(20, &mut syn, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
}
