//! Engine-level NAT flows with a virtual clock: real packet bytes in, checked
//! rewritten bytes out.

mod support;

use lvs_core::wire::ipv4::Ipv4Packet;
use lvs_core::wire::{ipproto, tcp_flags::*};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Verdict};
use std::net::IpAddr;
use support::{ip, packet, valid};

const C: [u8; 4] = [198, 18, 0, 2];
const V: [u8; 4] = [198, 18, 0, 100];

fn rs(i: u8) -> [u8; 4] {
    [198, 18, 1, 10 + i]
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
                tunnel: Default::default(),
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
    // A non-SYN without entry is passed to the host (sloppy_tcp off),
    // whose stack answers with a reset; a RST gets nothing.
    let mut ack = packet(ipproto::TCP, C, 40001, V, 80, ACK);
    assert_eq!(
        e.process_ipv4(0, &mut ack, false),
        Verdict::Reply(lvs_core::xmit::Reply::TcpReset)
    );
    let mut rst = packet(
        ipproto::TCP,
        C,
        40001,
        V,
        80,
        lvs_core::wire::tcp_flags::RST,
    );
    assert_eq!(e.process_ipv4(0, &mut rst, false), Verdict::NotOurs);
    assert_eq!(e.counters.resets, 1);
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

#[test]
fn rst_on_an_established_entry_expires_it_after_the_close_timeout() {
    let mut e = Engine::new(8);
    service(&mut e, ipproto::TCP, "rr", &[(1, 1)]);
    e.handle_timeout(0);
    let mut syn = packet(ipproto::TCP, C, 40000, V, 80, SYN);
    e.process_ipv4(0, &mut syn, false);
    let mut ack = packet(ipproto::TCP, C, 40000, V, 80, ACK);
    e.process_ipv4(10, &mut ack, false);
    assert_eq!(e.handle_timeout(60_000), 0);
    let mut rst = packet(ipproto::TCP, C, 40000, V, 80, RST);
    e.process_ipv4(81_000, &mut rst, false);
    assert_eq!(Engine::state_name(e.connections().next().unwrap()), "CLOSE");
    assert_eq!(e.handle_timeout(90_900), 0);
    assert_eq!(
        e.handle_timeout(91_300),
        1,
        "CLOSE lasts 10 s, not the old 900 s"
    );
}

#[test]
fn a_deleted_destination_re_added_keeps_its_connections() {
    let mut e = Engine::new(4);
    let key = service(&mut e, ipproto::UDP, "rr", &[(1, 1)]);
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    e.process_ipv4(0, &mut q, false);
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    assert!(matches!(e.process_ipv4(1, &mut q, false), Verdict::Drop(_)));
    // Re-adding (e.g. a reload) revives the same destination and its counters.
    let cfg = DestConfig {
        tunnel: Default::default(),
        addr: ip(rs(1)),
        port: 8080,
        forward: Forward::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    e.add_dest(key, cfg).unwrap();
    assert_eq!(counts(&e, &key), [(ip(rs(1)), 0, 1)]);
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    assert_eq!(
        e.process_ipv4(2, &mut q, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
}

#[test]
fn control_plane_checks_match_the_kernel() {
    let mut e = Engine::new(4);
    let key = service(&mut e, ipproto::TCP, "wrr", &[(1, 2), (2, 1)]);
    let mut cfg = DestConfig {
        tunnel: Default::default(),
        addr: ip(rs(3)),
        port: 80,
        forward: Forward::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 5,
    };
    assert!(
        e.add_dest(key, cfg.clone()).is_err(),
        "l_threshold above u_threshold"
    );
    cfg.l_threshold = 0;
    cfg.addr = "2001:db8::1".parse().unwrap();
    assert!(
        e.add_dest(key, cfg.clone()).is_err(),
        "IPv6 server in an IPv4 NAT service"
    );
    // -E with the same scheduler keeps its cycle position.
    let pick = |e: &mut Engine, port: u16| {
        let mut syn = packet(ipproto::TCP, C, port, V, 80, SYN);
        e.process_ipv4(0, &mut syn, false)
    };
    let first = pick(&mut e, 1);
    e.edit_service(key, "wrr", 0).unwrap();
    let second = pick(&mut e, 2);
    assert_ne!(first, second, "the wrr cycle went on instead of restarting");
}

/// Valid IPv4 headers with random L4 bytes, lengths and flags: no panic, and
/// every verdict is one of the defined ones.
#[test]
fn random_l4_contents_never_panic() {
    let mut e = Engine::new(77);
    let tcp = service(&mut e, ipproto::TCP, "wrr", &[(1, 1), (2, 3)]);
    let udp = service(&mut e, ipproto::UDP, "rr", &[(1, 1)]);
    service(&mut e, ipproto::SCTP, "rr", &[(1, 1), (2, 1)]);
    // Persistence on TCP, one-packet + persistence on UDP.
    let persist = lvs_core::ServiceOptions {
        persistent: Some(5),
        netmask: 0xffff_ff00,
        one_packet: false,
    };
    e.edit_service_with(tcp, "wrr", 0, persist).unwrap();
    let ops = lvs_core::ServiceOptions {
        one_packet: true,
        ..persist
    };
    e.edit_service_with(udp, "rr", 0, ops).unwrap();
    let knobs = [
        "sloppy_tcp",
        "sloppy_sctp",
        "secure_tcp",
        "drop_entry",
        "drop_packet",
        "nat_icmp_send",
        "expire_nodest_conn",
        "expire_quiescent_template",
        "conn_reuse_mode",
    ];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in 0..200_000u64 {
        let protocol = [ipproto::TCP, ipproto::UDP, ipproto::SCTP][(rnd() % 3) as usize];
        let l4_len = (rnd() % 48) as usize;
        let mut v = vec![0u8; 20 + l4_len];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        v[8] = (rnd() % 4) as u8; // TTL 0..3 exercises the TTL check
        v[9] = protocol;
        let src = if rnd() % 2 == 0 {
            C
        } else {
            rs(1 + (rnd() % 2) as u8)
        };
        let dst = if rnd() % 3 == 0 { C } else { V };
        v[12..16].copy_from_slice(&src);
        v[16..20].copy_from_slice(&dst);
        for b in &mut v[20..] {
            *b = rnd() as u8;
        }
        if l4_len >= 4 && rnd() % 2 == 0 {
            v[22..24].copy_from_slice(&80u16.to_be_bytes());
        }
        // A valid header checksum mostly (the host drops the others).
        if rnd() % 8 != 0 {
            Ipv4Packet::new_checked(&mut v[..]).unwrap().fill_checksum();
        }
        let _ = e.process_ipv4(n, &mut v, rnd() % 2 == 0);
        if n % 10_000 == 0 {
            e.handle_timeout(n);
            // Flip a knob, and take a real server away or bring it back.
            let k = knobs[(rnd() % knobs.len() as u64) as usize];
            let v = (rnd() % 4).to_string();
            e.set_sysctl(k, &v).unwrap();
            e.set_available_memory(rnd() % 2048);
            let cfg = DestConfig {
                tunnel: Default::default(),
                addr: ip(rs(2)),
                port: 8080,
                forward: Forward::Masq,
                weight: (rnd() % 3) as i32,
                u_threshold: 0,
                l_threshold: 0,
            };
            if e.delete_dest(tcp, cfg.addr, 8080).is_err() {
                e.add_dest(tcp, cfg).unwrap();
            }
        }
    }
    assert!(
        e.connection_count() > 0,
        "some random packets must have opened connections"
    );
    // The destinations' counters agree with the table.
    let tmpl = lvs_core::conn::flags::TEMPLATE;
    let inact = lvs_core::conn::flags::INACTIVE;
    let count = |f: &dyn Fn(&lvs_core::conn::Conn) -> bool| {
        e.connections()
            .filter(|c| c.dest().is_some() && f(c))
            .count() as u64
    };
    let sum = |f: &dyn Fn(&lvs_core::service::Dest) -> u32| {
        e.all_dests().map(|d| u64::from(f(d))).sum::<u64>()
    };
    assert_eq!(count(&|c| c.flags & tmpl != 0), sum(&|d| d.persist_conns));
    assert_eq!(
        count(&|c| c.flags & (tmpl | inact) == inact),
        sum(&|d| d.inact_conns)
    );
    assert_eq!(
        count(&|c| c.flags & (tmpl | inact) == 0),
        sum(&|d| d.active_conns)
    );
    assert_eq!(count(&|_| true), sum(&|d| d.refs));
    eprintln!(
        "{} entries, {} templates, {} expired",
        count(&|_| true),
        count(&|c| c.flags & tmpl != 0),
        e.counters.expired
    );
}

#[test]
fn ttl_one_is_dropped_not_forwarded() {
    let mut e = Engine::new(2);
    service(&mut e, ipproto::TCP, "rr", &[(1, 1)]);
    let mut syn = packet(ipproto::TCP, C, 40000, V, 80, SYN);
    syn[8] = 1;
    let mut p = Ipv4Packet::new_checked(&mut syn[..]).unwrap();
    p.fill_checksum();
    assert_eq!(
        e.process_ipv4(0, &mut syn, false),
        Verdict::Drop(lvs_core::DropReason::TtlExceeded)
    );
    assert_eq!(
        e.counters.drops[lvs_core::DropReason::TtlExceeded as usize],
        1
    );
}

/// A deleted destination stays in the trash, revivable with its counters,
/// until the 60 s trash timer has found it unreferenced for 120 s (§15);
/// even after that, added again, it keeps its identity (so lblc and lblcr
/// entries that name it are valid again).
#[test]
fn a_re_added_destination_keeps_its_identity() {
    let mut e = Engine::new(6);
    let key = service(&mut e, ipproto::UDP, "lblc", &[(1, 1), (2, 1)]);
    let uid = |e: &Engine, o: u8| e.all_dests().find(|d| d.addr == ip(rs(o))).map(|d| d.uid);
    let conns = |e: &Engine, o: u8| {
        e.all_dests()
            .find(|d| d.addr == ip(rs(o)))
            .map(|d| d.stats.conns)
    };
    let before = uid(&e, 1).unwrap();
    let cfg = DestConfig {
        tunnel: Default::default(),
        addr: ip(rs(1)),
        port: 8080,
        forward: Forward::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    // lblc sends this client to rs1 or rs2; make sure rs1 has counted one.
    let mut sent = 0;
    while conns(&e, 1) == Some(0) {
        let mut p = packet(ipproto::UDP, C, 2000 + sent, V, 80, 0);
        e.process_ipv4(0, &mut p, false);
        sent += 1;
        assert!(sent < 50);
        if conns(&e, 1) == Some(0) {
            e.delete_dest(key, ip(rs(2)), 8080).unwrap();
        }
    }
    e.handle_timeout(1000);
    e.set_timeouts(0, 0, 1).unwrap();
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    let mut now = 1000;
    let mut tick = |e: &mut Engine, until: u64| {
        while now < until {
            now += 100;
            e.handle_timeout(now);
        }
    };
    // Its UDP entry expires after 300 s; then 60–180 s more in the trash.
    tick(&mut e, 301_000 + 60_000);
    assert_eq!(conns(&e, 1), Some(1), "still in the trash");
    e.add_dest(key, cfg.clone()).unwrap();
    assert_eq!(conns(&e, 1), Some(1), "revived with its statistics");
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    tick(&mut e, 361_000 + 181_000);
    assert_eq!(
        uid(&e, 1),
        None,
        "freed 120-180 s after it became unreferenced"
    );
    e.add_dest(key, cfg).unwrap();
    assert_eq!(uid(&e, 1), Some(before));
    assert_eq!(conns(&e, 1), Some(0));
}

/// `ipvsadm -E` that only changes the flags keeps the scheduler (and its
/// table) and the new flags apply at once, as the kernel reads them at
/// every decision: sh without fallback gives nothing for a quiesced
/// bucket, with `-b sh-fallback` the next server, and back.
#[test]
fn flag_only_edit_applies_at_once() {
    let mut e = Engine::new(12);
    let key = service(&mut e, ipproto::UDP, "sh", &[(1, 1), (2, 1), (3, 1)]);
    let send = |e: &mut Engine, port: u16| {
        let mut q = packet(ipproto::UDP, C, port, V, 80, 0);
        e.process_ipv4(0, &mut q, false)
    };
    let first = send(&mut e, 1000);
    let Verdict::Forward { to } = first else {
        panic!("{first:?}")
    };
    // Quiesce the server this client hashes to.
    let cfg = DestConfig {
        tunnel: Default::default(),
        addr: to,
        port: 8080,
        forward: Forward::Masq,
        weight: 0,
        u_threshold: 0,
        l_threshold: 0,
    };
    e.edit_dest(key, cfg).unwrap();
    assert_eq!(
        send(&mut e, 1001),
        Verdict::Unreachable,
        "sh without fallback"
    );
    e.edit_service(key, "sh", lvs_core::sched::SCHED_F_FALLBACK)
        .unwrap();
    let fb = send(&mut e, 1002);
    assert!(
        matches!(fb, Verdict::Forward { to: t } if t != to),
        "{fb:?}"
    );
    e.edit_service(key, "sh", 0).unwrap();
    assert_eq!(send(&mut e, 1003), Verdict::Unreachable);
}

/// Re-adding a deleted, still-overloaded destination with the same upper
/// threshold keeps it overloaded (schedulers.md §0.3: cleared only when the
/// threshold goes away or rises).
#[test]
fn revived_destination_keeps_overload_unless_threshold_rises() {
    let mut e = Engine::new(13);
    let key = ServiceKey {
        protocol: ipproto::UDP,
        addr: ip(V),
        port: 80,
    };
    e.add_service(key, "rr", 0).unwrap();
    let cfg = |u| DestConfig {
        tunnel: Default::default(),
        addr: ip(rs(1)),
        port: 8080,
        forward: Forward::Masq,
        weight: 1,
        u_threshold: u,
        l_threshold: 0,
    };
    e.add_dest(key, cfg(1)).unwrap();
    let mut q = packet(ipproto::UDP, C, 5000, V, 80, 0);
    assert_eq!(
        e.process_ipv4(0, &mut q, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    e.add_dest(key, cfg(1)).unwrap();
    let mut q = packet(ipproto::UDP, C, 5001, V, 80, 0);
    assert_eq!(
        e.process_ipv4(1, &mut q, false),
        Verdict::Unreachable,
        "still overloaded"
    );
    e.delete_dest(key, ip(rs(1)), 8080).unwrap();
    e.add_dest(key, cfg(5)).unwrap();
    let mut q = packet(ipproto::UDP, C, 5002, V, 80, 0);
    assert_eq!(
        e.process_ipv4(2, &mut q, false),
        Verdict::Forward { to: ip(rs(1)) }
    );
}
