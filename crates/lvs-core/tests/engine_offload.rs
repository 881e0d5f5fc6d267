//! The engine's side of a fast path (`engine::offload`): a NAT connection
//! is offered once nothing but data is left to see, taken back at its
//! first state change, reported packets count and keep its timer going,
//! an entry whose report is late gets one grace period, and what can never
//! be carried is never offered.

mod support;

use lvs_core::engine::{FastPathSeen, Offload, OffloadFlow, OFFLOAD_AFTER_PKTS, OFFLOAD_GRACE_MS};
use lvs_core::wire::ipproto;
use lvs_core::wire::tcp_flags::{ACK, FIN, SYN};
use lvs_core::xmit::{OnLink, PacketBuf, Transmit, HEADROOM};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Tunnel};
use support::{ip, packet};

const C: [u8; 4] = [198, 18, 0, 2];
const V: [u8; 4] = [198, 18, 0, 100];
const R: [u8; 4] = [198, 18, 1, 11];

fn engine(protocol: u8, forward: Forward) -> (Engine, ServiceKey) {
    let mut e = Engine::new(3);
    let key = ServiceKey {
        protocol,
        addr: ip(V),
        port: 80,
    };
    e.add_service(key, "rr", 0).unwrap();
    let dest = DestConfig {
        addr: ip(R),
        port: if forward == Forward::Masq { 8080 } else { 80 },
        forward,
        tunnel: Tunnel::default(),
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    e.add_dest(key, dest).unwrap();
    e.set_offload(true);
    (e, key)
}

fn run(e: &mut Engine, now: u64, pkt: Vec<u8>) -> Transmit {
    let mut buf = vec![0u8; HEADROOM + pkt.len()];
    buf[HEADROOM..].copy_from_slice(&pkt);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    let paths = OnLink {
        src: ip([198, 18, 1, 1]),
        mtu: 1500,
    };
    e.process(now, &mut p, &paths)
}

fn events(e: &mut Engine) -> Vec<Offload> {
    std::iter::from_fn(|| e.pop_offload()).collect()
}

fn flow(protocol: u8, cport: u16) -> OffloadFlow {
    OffloadFlow {
        method: Forward::Masq,
        protocol,
        caddr: ip(C),
        cport,
        vaddr: ip(V),
        vport: 80,
        daddr: ip(R),
        dport: 8080,
    }
}

/// TCP: SYN, SYN-ACK and the client's ACK go through the engine; the
/// connection is offered once ESTABLISHED and `OFFLOAD_AFTER_PKTS` client
/// packets in, once only; its FIN (which the fast path never carries)
/// takes it back.
#[test]
fn a_tcp_connection_is_offered_when_established_and_taken_back_at_its_fin() {
    let (mut e, _) = engine(ipproto::TCP, Forward::Masq);
    let from_c = |flags| packet(ipproto::TCP, C, 40000, V, 80, flags);
    let from_r = |flags| packet(ipproto::TCP, R, 8080, C, 40000, flags);
    assert!(matches!(run(&mut e, 0, from_c(SYN)), Transmit::Send(_)));
    assert_eq!(events(&mut e), vec![], "SYN_RECV: not yet");
    run(&mut e, 10, from_r(SYN | ACK));
    assert_eq!(
        events(&mut e),
        vec![],
        "the server's SYN-ACK: still SYN_RECV"
    );
    run(&mut e, 20, from_c(ACK));
    assert_eq!(events(&mut e), vec![], "ESTABLISHED, but short so far");
    for k in 3..OFFLOAD_AFTER_PKTS {
        run(&mut e, 20 + k, from_c(ACK));
    }
    assert_eq!(
        events(&mut e),
        vec![],
        "{} client packets",
        OFFLOAD_AFTER_PKTS - 1
    );
    run(&mut e, 29, from_c(ACK));
    let f = flow(ipproto::TCP, 40000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    run(&mut e, 30, from_c(ACK));
    run(&mut e, 40, from_r(ACK));
    assert_eq!(events(&mut e), vec![], "offered once");
    run(&mut e, 50, from_c(FIN | ACK));
    assert_eq!(
        events(&mut e),
        vec![Offload::Remove(f)],
        "FIN_WAIT: the engine's"
    );
    run(&mut e, 60, from_r(ACK));
    assert_eq!(events(&mut e), vec![], "not offered again while closing");
}

/// Reported packets count in the statistics like the engine's own, and
/// keep the entry alive: its timer restarts from the last of them. An
/// entry whose timer runs out while offloaded waits one grace period for
/// a late report; without one it expires, and the fast path is told.
#[test]
fn reported_packets_count_and_keep_the_entry_alive() {
    let (mut e, key) = engine(ipproto::UDP, Forward::Masq);
    let f = flow(ipproto::UDP, 41000);
    for _ in 0..OFFLOAD_AFTER_PKTS {
        run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    }
    assert_eq!(events(&mut e), vec![], "no reply yet");
    run(&mut e, 100, packet(ipproto::UDP, R, 8080, C, 41000, 0));
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    let udp_timeout = 300_000;
    // The fast path carried 10 + 5 packets, the last at 200 s.
    let seen = FastPathSeen {
        in_pkts: 10,
        in_bytes: 320,
        out_pkts: 5,
        out_bytes: 160,
        last_ms: 200_000,
    };
    e.offload_seen(&f, &seen);
    // The statistics (as the estimator publishes them, every 2 s): the
    // engine's own 32-byte datagrams and the fast path's.
    for now in (100..=2500u64).step_by(100) {
        e.handle_timeout(now);
    }
    let s = e.service_stats(&key).unwrap().0.counters;
    let n = OFFLOAD_AFTER_PKTS;
    assert_eq!((s.in_pkts, s.in_bytes), (n + 10, 32 * n + 320));
    assert_eq!((s.out_pkts, s.out_bytes), (6, 32 + 160));
    // Without the report the entry would expire at 100 s + 300 s; it
    // lives until 200 s + 300 s.
    for now in (2500..=500_000u64).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(e.connection_count(), 1, "alive at 500 s");
    assert_eq!(events(&mut e), vec![]);
    // No report since: one grace period, then gone, and the fast path told.
    let end = 200_000 + udp_timeout + OFFLOAD_GRACE_MS + 1000;
    for now in (500_000..=200_000 + udp_timeout + OFFLOAD_GRACE_MS - 500).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(e.connection_count(), 1, "in its grace period");
    assert_eq!(
        events(&mut e),
        vec![Offload::Report(f)],
        "a report asked for"
    );
    // A late report within the grace period keeps it.
    e.offload_seen(
        &f,
        &FastPathSeen {
            last_ms: 200_000 + udp_timeout + 1000,
            ..FastPathSeen::default()
        },
    );
    for now in (200_000 + udp_timeout + OFFLOAD_GRACE_MS - 500..=end).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(e.connection_count(), 1, "reported within the grace period");
    let last = 200_000 + udp_timeout + 1000;
    for now in (end..=last + udp_timeout + OFFLOAD_GRACE_MS + 1000).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(e.connection_count(), 0, "expired after its grace period");
    assert_eq!(
        events(&mut e),
        vec![Offload::Report(f), Offload::Remove(f)],
        "asked again, not answered"
    );
}

/// When its timer runs out, a carried entry is asked for (`Report`); an
/// answer with nothing new carried expires it then, as without a fast
/// path, and one with a packet keeps it from that packet on.
#[test]
fn an_answered_report_decides_at_once() {
    let (mut e, _) = engine(ipproto::UDP, Forward::Masq);
    let f = flow(ipproto::UDP, 41000);
    for _ in 0..OFFLOAD_AFTER_PKTS {
        run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    }
    run(&mut e, 100, packet(ipproto::UDP, R, 8080, C, 41000, 0));
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    let udp_timeout = 300_000;
    // Runs out at 100 ms + 300 s: asked.
    for now in (100..=100 + udp_timeout + 200).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(events(&mut e), vec![Offload::Report(f)]);
    // A packet at 250 s: it lives until 550 s, asked again then.
    let seen = FastPathSeen {
        in_pkts: 1,
        in_bytes: 32,
        last_ms: 250_000,
        ..FastPathSeen::default()
    };
    e.offload_seen(&f, &seen);
    for now in (100 + udp_timeout + 200..=250_000 + udp_timeout - 200).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(e.connection_count(), 1, "alive until 550 s");
    assert_eq!(events(&mut e), vec![]);
    for now in (250_000 + udp_timeout - 200..=250_000 + udp_timeout + 200).step_by(100) {
        e.handle_timeout(now);
    }
    assert_eq!(events(&mut e), vec![Offload::Report(f)]);
    assert_eq!(e.connection_count(), 1, "waiting for the answer");
    // Nothing carried since: gone at the next tick, not after the grace.
    e.offload_seen(&f, &FastPathSeen::default());
    e.handle_timeout(250_000 + udp_timeout + 300);
    assert_eq!(e.connection_count(), 0, "expired when the answer came");
    assert_eq!(events(&mut e), vec![Offload::Remove(f)]);
}

/// Direct routing: the client's packets only (the replies do not pass
/// the director). TCP is offered once ESTABLISHED by the client's ACK
/// (the input-only state table) and taken back at its FIN; UDP at a
/// client packet, as no reply ever comes.
#[test]
fn direct_routing_is_offered_from_the_clients_packets() {
    let dr = |protocol, cport| OffloadFlow {
        method: Forward::Route,
        dport: 80,
        ..flow(protocol, cport)
    };
    let (mut e, _) = engine(ipproto::TCP, Forward::Route);
    run(&mut e, 0, packet(ipproto::TCP, C, 42000, V, 80, SYN));
    run(&mut e, 1, packet(ipproto::TCP, C, 42000, V, 80, ACK));
    for _ in 2..OFFLOAD_AFTER_PKTS {
        assert_eq!(events(&mut e), vec![]);
        run(&mut e, 2, packet(ipproto::TCP, C, 42000, V, 80, ACK));
    }
    let f = dr(ipproto::TCP, 42000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    run(&mut e, 3, packet(ipproto::TCP, C, 42000, V, 80, ACK | FIN));
    assert_eq!(events(&mut e), vec![Offload::Remove(f)]);

    let (mut e, _) = engine(ipproto::UDP, Forward::Route);
    for _ in 0..OFFLOAD_AFTER_PKTS {
        assert_eq!(events(&mut e), vec![]);
        run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    }
    assert_eq!(
        events(&mut e),
        vec![Offload::Install(dr(ipproto::UDP, 41000))]
    );
}

/// Never offered: tunnels, IPv4 NAT while a sync master runs; turning
/// offload off takes every carried entry back.
#[test]
fn what_the_fast_path_cannot_carry_is_never_offered() {
    for forward in [Forward::Tunnel] {
        let (mut e, _) = engine(ipproto::UDP, forward);
        for _ in 0..=OFFLOAD_AFTER_PKTS {
            run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
        }
        assert_eq!(events(&mut e), vec![], "{forward:?}");
    }
    let (mut e, _) = engine(ipproto::UDP, Forward::Masq);
    for _ in 0..OFFLOAD_AFTER_PKTS {
        run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    }
    e.start_sync_master(lvs_core::sync::MasterConfig {
        syncid: 1,
        maxlen: 1472,
        ports: 1,
    });
    run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    run(&mut e, 0, packet(ipproto::UDP, R, 8080, C, 41000, 0));
    assert_eq!(events(&mut e), vec![], "a sync master counts every packet");
    e.stop_sync_master();
    run(&mut e, 0, packet(ipproto::UDP, R, 8080, C, 41000, 0));
    let f = flow(ipproto::UDP, 41000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    e.set_offload(false);
    assert_eq!(events(&mut e), vec![Offload::Remove(f)]);
    run(&mut e, 0, packet(ipproto::UDP, C, 41000, V, 80, 0));
    assert_eq!(events(&mut e), vec![], "off");
}

/// Carried entries are taken back when the engine must see their packets
/// again: their real server is deleted (the engine then drops or expires
/// them), a sync master starts (it counts every packet). A flow the caller
/// could not take is offered again at a later packet; a report for a flow
/// the entry no longer matches counts nothing.
#[test]
fn carried_entries_are_taken_back_when_the_engine_must_see_them() {
    let offered = |e: &mut Engine, cport: u16| {
        for _ in 0..OFFLOAD_AFTER_PKTS {
            run(e, 0, packet(ipproto::UDP, C, cport, V, 80, 0));
        }
        run(e, 0, packet(ipproto::UDP, R, 8080, C, cport, 0));
        flow(ipproto::UDP, cport)
    };
    let (mut e, key) = engine(ipproto::UDP, Forward::Masq);
    let f = offered(&mut e, 41000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    e.delete_dest(key, ip(R), 8080).unwrap();
    assert_eq!(events(&mut e), vec![Offload::Remove(f)], "its server went");

    let (mut e, _) = engine(ipproto::UDP, Forward::Masq);
    let f = offered(&mut e, 41000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    e.start_sync_master(lvs_core::sync::MasterConfig {
        syncid: 1,
        maxlen: 1472,
        ports: 1,
    });
    assert_eq!(events(&mut e), vec![Offload::Remove(f)], "a sync master");

    let (mut e, key) = engine(ipproto::UDP, Forward::Masq);
    let f = offered(&mut e, 41000);
    assert_eq!(events(&mut e), vec![Offload::Install(f)]);
    e.offload_refused(&f);
    run(&mut e, 10, packet(ipproto::UDP, R, 8080, C, 41000, 0));
    assert_eq!(events(&mut e), vec![Offload::Install(f)], "offered again");
    // A report naming another server than the entry's counts nothing.
    let other = OffloadFlow { dport: 9999, ..f };
    for now in (0..=2500u64).step_by(100) {
        e.handle_timeout(now);
    }
    let before = e.service_stats(&key).unwrap().0.counters;
    e.offload_seen(
        &other,
        &FastPathSeen {
            in_pkts: 5,
            in_bytes: 500,
            ..FastPathSeen::default()
        },
    );
    for now in (2500..=5000u64).step_by(100) {
        e.handle_timeout(now);
    }
    let after = e.service_stats(&key).unwrap().0.counters;
    assert_eq!(after.in_pkts, before.in_pkts);
}
