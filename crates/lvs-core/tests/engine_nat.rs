//! Engine-level NAT flows with a virtual clock: real packet bytes in, checked
//! rewritten bytes out.

use lvs_core::wire::checksum;
use lvs_core::wire::ipv4::Ipv4Packet;
use lvs_core::wire::{ipproto, tcp_flags::*};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Verdict};
use std::net::{IpAddr, Ipv4Addr};

const C: [u8; 4] = [198, 18, 0, 2];
const V: [u8; 4] = [198, 18, 0, 100];

fn rs(i: u8) -> [u8; 4] {
    [198, 18, 1, 10 + i]
}

fn ip(a: [u8; 4]) -> IpAddr {
    Ipv4Addr::from(a).into()
}

fn packet(protocol: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let l4 = if protocol == ipproto::TCP { 20 } else { 8 };
    let total = 20 + l4 + 4;
    let mut v = vec![0u8; total];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    v[8] = 64;
    v[9] = protocol;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    if protocol == ipproto::TCP {
        v[32] = 5 << 4;
        v[33] = flags;
    } else {
        v[24..26].copy_from_slice(&((l4 + 4) as u16).to_be_bytes());
    }
    v[total - 4..].copy_from_slice(b"ping");
    let off = if protocol == ipproto::TCP { 36 } else { 26 };
    let sum = checksum::pseudo_v4(src, dst, protocol, (total - 20) as u16);
    let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
    v[off..off + 2].copy_from_slice(&c.to_be_bytes());
    let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
    p.fill_checksum();
    v
}

fn valid(v: &[u8]) -> bool {
    let p = Ipv4Packet::new_checked(v).unwrap();
    let sum = checksum::pseudo_v4(
        p.src_bytes(),
        p.dst_bytes(),
        p.protocol(),
        (v.len() - 20) as u16,
    );
    p.verify_checksum() && checksum::fold(checksum::add_bytes(sum, &v[20..])) == 0xffff
}

fn service(e: &mut Engine, protocol: u8, sched: &str, weights: &[(u8, i32)]) -> ServiceKey {
    let key = ServiceKey {
        protocol,
        addr: ip(V),
        port: 80,
    };
    e.add_service(key, sched, 0).unwrap();
    for &(i, w) in weights {
        e.add_dest(
            key,
            DestConfig {
                addr: ip(rs(i)),
                port: 8080,
                forward: Forward::Masq,
                weight: w,
                u_threshold: 0,
                l_threshold: 0,
            },
        )
        .unwrap();
    }
    key
}

fn counts(e: &Engine, key: &ServiceKey) -> Vec<(IpAddr, u32, u32)> {
    let (_, dests) = e.service(key).unwrap();
    dests
        .iter()
        .map(|d| (d.addr, d.active_conns, d.inact_conns))
        .collect()
}

#[test]
fn tcp_handshake_through_nat_both_directions() {
    let mut e = Engine::new(42);
    let key = service(&mut e, ipproto::TCP, "rr", &[(1, 1)]);
    let mut syn = packet(ipproto::TCP, C, 40000, V, 80, SYN);
    assert_eq!(
        e.process_ipv4(0, &mut syn, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
    assert!(valid(&syn));
    assert_eq!(&syn[16..20], &rs(1));
    assert_eq!(&syn[22..24], &8080u16.to_be_bytes());
    assert_eq!(syn[8], 63, "TTL decremented");
    assert_eq!(counts(&e, &key), [(ip(rs(1)), 1, 0)]); // SYN_RECV is active

    let mut synack = packet(ipproto::TCP, rs(1), 8080, C, 40000, SYN | ACK);
    assert_eq!(
        e.process_ipv4(1, &mut synack, false),
        Verdict::Forward { to: ip(C) }
    );
    assert!(valid(&synack));
    assert_eq!(&synack[12..16], &V);
    assert_eq!(&synack[20..22], &80u16.to_be_bytes());

    let mut ack = packet(ipproto::TCP, C, 40000, V, 80, ACK);
    assert_eq!(
        e.process_ipv4(2, &mut ack, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
    let c = e.connections().next().unwrap();
    assert_eq!(Engine::state_name(c), "ESTABLISHED");
    assert_eq!(c.expires, 2 + 900_000);

    // Client closes: CLOSE_WAIT (inactive), server FIN → TIME_WAIT.
    let mut fin = packet(ipproto::TCP, C, 40000, V, 80, FIN | ACK);
    e.process_ipv4(3, &mut fin, false);
    assert_eq!(counts(&e, &key), [(ip(rs(1)), 0, 1)]);
    let mut fin2 = packet(ipproto::TCP, rs(1), 8080, C, 40000, FIN | ACK);
    e.process_ipv4(4, &mut fin2, false);
    let c = e.connections().next().unwrap();
    assert_eq!(Engine::state_name(c), "TIME_WAIT");
    assert_eq!(c.expires, 4 + 120_000);

    // Expires after its TIME_WAIT timeout, counters return to zero.
    assert_eq!(e.handle_timeout(100_000), 0);
    assert_eq!(e.handle_timeout(124_500), 1);
    assert_eq!(e.connection_count(), 0);
    assert_eq!(counts(&e, &key), [(ip(rs(1)), 0, 0)]);
}

#[test]
fn three_hundred_connections_round_robin_evenly() {
    let mut e = Engine::new(1);
    let key = service(&mut e, ipproto::TCP, "wrr", &[(1, 1), (2, 1), (3, 1)]);
    let mut per = [0u32; 4];
    for i in 0..300u16 {
        let mut syn = packet(ipproto::TCP, C, 20000 + i, V, 80, SYN);
        match e.process_ipv4(u64::from(i), &mut syn, false) {
            Verdict::Forward { to: IpAddr::V4(a) } => per[usize::from(a.octets()[3] - 10)] += 1,
            v => panic!("unexpected {v:?}"),
        }
    }
    assert_eq!(&per[1..], &[100, 100, 100]);
    assert_eq!(e.connection_count(), 300);
    assert!(counts(&e, &key).iter().all(|&(_, a, i)| a == 100 && i == 0));
    // SYN_RECV times out after 60 s.
    e.handle_timeout(1_000);
    assert_eq!(e.handle_timeout(59_900), 0);
    assert_eq!(e.handle_timeout(60_299 + 2 * lvs_core::conn::TICK_MS), 300);
}

#[test]
fn udp_flows_are_inactive_and_expire_after_300s() {
    let mut e = Engine::new(5);
    let key = service(&mut e, ipproto::UDP, "rr", &[(1, 1), (2, 1)]);
    for p in 0..4u16 {
        let mut q = packet(ipproto::UDP, C, 5000 + p, V, 80, 0);
        assert!(matches!(
            e.process_ipv4(0, &mut q, false),
            Verdict::Forward { .. }
        ));
        assert!(valid(&q));
    }
    let mut reply = packet(ipproto::UDP, rs(2), 8080, C, 5000, 0);
    assert_eq!(
        e.process_ipv4(1_000, &mut reply, false),
        Verdict::Forward { to: ip(C) }
    );
    assert!(valid(&reply));
    assert_eq!(counts(&e, &key), [(ip(rs(2)), 0, 2), (ip(rs(1)), 0, 2)]);
    assert!(e.connections().all(|c| Engine::state_name(c) == "UDP"));
    e.handle_timeout(0);
    assert_eq!(e.handle_timeout(299_000), 0);
    assert_eq!(e.handle_timeout(300_200), 3);
    assert_eq!(e.handle_timeout(301_200), 1);
}

#[test]
fn not_ours_and_unreachable() {
    let mut e = Engine::new(5);
    // No service yet: the packet belongs to the host.
    let mut syn = packet(ipproto::TCP, C, 40000, V, 80, SYN);
    assert_eq!(e.process_ipv4(0, &mut syn, false), Verdict::NotOurs);
    // A service without destinations answers port unreachable.
    service(&mut e, ipproto::TCP, "wrr", &[]);
    assert_eq!(e.process_ipv4(0, &mut syn, false), Verdict::Unreachable);
    // A non-SYN without entry is passed (sloppy_tcp off).
    let mut ack = packet(ipproto::TCP, C, 40001, V, 80, ACK);
    assert_eq!(e.process_ipv4(0, &mut ack, false), Verdict::NotOurs);
    // Garbage never panics.
    for n in 0..64 {
        let mut g: Vec<u8> = (0..n).map(|i| (i * 7 + 0x45) as u8).collect();
        let _ = e.process_ipv4(0, &mut g, false);
    }
}

#[test]
fn syn_on_time_wait_entry_is_rescheduled_with_conn_reuse_mode() {
    let mut e = Engine::new(9);
    service(&mut e, ipproto::TCP, "rr", &[(1, 1), (2, 1)]);
    let flow = |e: &mut Engine, t: u64| {
        let mut syn = packet(ipproto::TCP, C, 40000, V, 80, SYN);
        let v = e.process_ipv4(t, &mut syn, false);
        let mut fin = packet(ipproto::TCP, C, 40000, V, 80, FIN | ACK);
        e.process_ipv4(t + 1, &mut fin, false);
        v
    };
    let first = flow(&mut e, 0);
    // SYN_RECV + FIN(in) → TIME_WAIT; the next SYN from the same port gets a new server.
    let second = flow(&mut e, 10);
    assert_ne!(first, second);
    assert_eq!(e.connection_count(), 1);
    // With conn_reuse_mode 0 the old entry (TIME_WAIT → SYN_RECV) keeps the server.
    e.settings.conn_reuse_mode = 0;
    let third = flow(&mut e, 20);
    assert_eq!(third, second);
}

#[test]
fn deleted_destination_drops_its_packets_and_is_freed_on_expiry() {
    let mut e = Engine::new(3);
    let key = service(&mut e, ipproto::UDP, "rr", &[(1, 1)]);
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    e.process_ipv4(0, &mut q, false);
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    assert!(matches!(e.process_ipv4(1, &mut q, false), Verdict::Drop(_)));
    e.handle_timeout(0);
    assert_eq!(e.handle_timeout(301_000), 1);
}
