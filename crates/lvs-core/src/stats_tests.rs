//! Engine-level statistics tests with a virtual clock (connections.md §19).

use crate::stats::{Counters, Rates, StatsView};
use crate::wire::ipproto;
use crate::{ControlError, DestConfig, Engine, Forward, ServiceKey, Verdict};
use std::net::{IpAddr, Ipv4Addr};

const C: [u8; 4] = [198, 18, 0, 2];
const V: [u8; 4] = [198, 18, 0, 100];
/// Length of every test packet: IPv4 20 + UDP 8 + 4 payload bytes.
const LEN: u64 = 32;

fn ip(a: [u8; 4]) -> IpAddr {
    Ipv4Addr::from(a).into()
}

fn rs(i: u8) -> [u8; 4] {
    [198, 18, 1, 10 + i]
}

/// A UDP datagram (checksum 0: none).
fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = vec![0u8; LEN as usize];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
    v[8] = 64;
    v[9] = ipproto::UDP;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[24..26].copy_from_slice(&12u16.to_be_bytes());
    v[28..32].copy_from_slice(b"ping");
    crate::wire::ipv4::Ipv4Packet::new_checked(&mut v[..])
        .unwrap()
        .fill_checksum();
    v
}

fn engine(port: u16, dests: &[u8]) -> (Engine, ServiceKey) {
    let mut e = Engine::new(7);
    let key = add_service(&mut e, port, dests);
    (e, key)
}

fn add_service(e: &mut Engine, port: u16, dests: &[u8]) -> ServiceKey {
    let key = ServiceKey {
        protocol: ipproto::UDP,
        addr: ip(V),
        port,
    };
    e.add_service(key, "rr", 0).unwrap();
    for &i in dests {
        e.add_dest(
            key,
            DestConfig {
                tunnel: Default::default(),
                addr: ip(rs(i)),
                port: 53,
                forward: Forward::Masq,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        )
        .unwrap();
    }
    key
}

/// A new flow from client port `sport` to the service, and the real server's reply.
/// Returns the real server that got it.
fn flow(e: &mut Engine, now: u64, key: &ServiceKey, sport: u16, reply: bool) -> [u8; 4] {
    let mut p = udp(C, sport, V, key.port);
    let v = e.process_ipv4(now, &mut p, false);
    let Verdict::Forward { to: IpAddr::V4(d) } = v else {
        panic!("not forwarded: {v:?}");
    };
    if reply {
        let mut r = udp(d.octets(), 53, C, sport);
        assert!(matches!(
            e.process_ipv4(now, &mut r, false),
            Verdict::Forward { .. }
        ));
    }
    d.octets()
}

fn svc_view(e: &Engine, key: &ServiceKey) -> StatsView {
    e.service_stats(key).unwrap().0
}

#[test]
fn live_counters_follow_section_19_1() {
    let (mut e, key) = engine(53, &[1, 2]);
    e.handle_timeout(0);
    for i in 0..10u16 {
        flow(&mut e, 0, &key, 10_000 + i, i % 2 == 0);
    }
    // A second packet of an existing flow is not a new connection.
    let mut p = udp(C, 10_000, V, 53);
    e.process_ipv4(1, &mut p, false);
    let (s, dests) = e.service(&key).unwrap();
    assert_eq!(
        s.stats,
        Counters {
            conns: 10,
            in_pkts: 11,
            out_pkts: 5,
            in_bytes: 11 * LEN,
            out_bytes: 5 * LEN,
        }
    );
    let sum = dests.iter().fold(Counters::default(), |mut a, d| {
        a.conns += d.stats.conns;
        a.in_pkts += d.stats.in_pkts;
        a.out_pkts += d.stats.out_pkts;
        a.in_bytes += d.stats.in_bytes;
        a.out_bytes += d.stats.out_bytes;
        a
    });
    assert_eq!(sum, s.stats);
    // Nothing is visible before the estimator's first visit…
    assert_eq!(svc_view(&e, &key), StatsView::default());
    // …which comes one period (2 s) after the service was created.
    e.handle_timeout(1999);
    assert_eq!(svc_view(&e, &key).counters.conns, 0);
    e.handle_timeout(2000);
    assert_eq!(svc_view(&e, &key).counters, s_stats(&e, &key));
    assert_eq!(e.total_stats().counters, s_stats(&e, &key));
    let (_, dv) = e.service_stats(&key).unwrap();
    assert_eq!(dv[0].counters.conns + dv[1].counters.conns, 10);
    assert_eq!(dv[0].counters.conns, 5);
}

fn s_stats(e: &Engine, key: &ServiceKey) -> Counters {
    e.service(key).unwrap().0.stats
}

#[test]
fn deleted_destinations_are_not_counted() {
    let (mut e, key) = engine(53, &[1, 2]);
    let d = flow(&mut e, 0, &key, 10_000, false);
    let before = s_stats(&e, &key);
    e.delete_dest(key, ip(d), 53).unwrap();
    // Client packets of the entry are dropped (expire_nodest_conn 0) and
    // replies of the deleted server still pass but count nowhere.
    let mut p = udp(C, 10_000, V, 53);
    assert!(matches!(e.process_ipv4(1, &mut p, false), Verdict::Drop(_)));
    let mut r = udp(d, 53, C, 10_000);
    assert!(matches!(
        e.process_ipv4(1, &mut r, false),
        Verdict::Forward { .. }
    ));
    assert_eq!(s_stats(&e, &key), before);
}

/// Drives `secs` seconds of traffic from `t0`: one new flow (with a reply)
/// every `every_ms`, `handle_timeout` every 10 ms. Returns the end time.
fn run(
    e: &mut Engine,
    key: &ServiceKey,
    t0: u64,
    secs: u64,
    every_ms: u64,
    sport: &mut u16,
) -> u64 {
    let mut t = t0;
    while t < t0 + secs * 1000 {
        e.handle_timeout(t);
        if every_ms != 0 && (t - t0).is_multiple_of(every_ms) {
            *sport = sport.wrapping_add(1).max(1024);
            flow(e, t, key, *sport, true);
        }
        t += 10;
    }
    e.handle_timeout(t);
    t
}

#[test]
fn steady_traffic_converges_to_the_true_rates() {
    let (mut e, key) = engine(53, &[1, 2]);
    let mut sport = 1024;
    // 50 flows/s, each one 32-byte datagram in and one out, for 60 s.
    run(&mut e, &key, 0, 60, 20, &mut sport);
    let v = svc_view(&e, &key);
    assert_eq!(
        v.rates,
        Rates {
            cps: 50,
            in_pps: 50,
            out_pps: 50,
            in_bps: 50 * LEN,
            out_bps: 50 * LEN,
        }
    );
    let (_, dv) = e.service_stats(&key).unwrap();
    for d in &dv {
        assert_eq!(d.rates.cps, 25);
        assert_eq!(d.rates.in_bps, 25 * LEN);
    }
    assert_eq!(e.total_stats().rates, v.rates);
    // The snapshot lags by less than one period.
    assert!(v.counters.conns <= 3000 && v.counters.conns >= 2900);
}

#[test]
fn first_period_counts_everything_since_creation() {
    // §19.2: constant 100 conn/s from zero → reported 25, 44, 58, … → 100.
    let (mut e, key) = engine(53, &[1]);
    let mut sport = 1024;
    let mut seen = Vec::new();
    let mut t = 0;
    for _ in 0..3 {
        t = run(&mut e, &key, t, 2, 10, &mut sport);
        seen.push(svc_view(&e, &key).rates.cps);
    }
    assert_eq!(seen, vec![25, 44, 58]);
    let t = run(&mut e, &key, t, 60, 10, &mut sport);
    assert_eq!(svc_view(&e, &key).rates.cps, 100);
    // Traffic stops: the rates decay to 0 and the counters catch up.
    run(&mut e, &key, t, 120, 0, &mut sport);
    let v = svc_view(&e, &key);
    assert_eq!(v.rates, Rates::default());
    assert_eq!(v.counters, s_stats(&e, &key));
}

#[test]
fn zeroing_sets_the_zero_point_and_resets_the_rates() {
    let mut e = Engine::new(3);
    let a = add_service(&mut e, 53, &[1]);
    let b = add_service(&mut e, 54, &[2]);
    let mut sport = 1024;
    let t = run(&mut e, &a, 0, 10, 20, &mut sport);
    let t = run(&mut e, &b, t, 10, 20, &mut sport);
    // Zero one service: its destinations too, the other service not.
    e.zero_stats(Some(a)).unwrap();
    let (sa, da) = e.service_stats(&a).unwrap();
    assert_eq!(sa, StatsView::default());
    assert_eq!(da, vec![StatsView::default()]);
    let (sb, _) = e.service_stats(&b).unwrap();
    assert_ne!(sb.counters.conns, 0);
    assert_ne!(sb.rates.cps, 0);
    assert_ne!(e.total_stats().counters.conns, 0);
    assert_eq!(
        e.zero_stats(Some(ServiceKey { port: 1, ..a })),
        Err(ControlError::NoSuchService)
    );
    // Zero all: traffic since the last visit reappears at the next one.
    let mut t = t;
    // One flow after the last visit; step to the next visit (it shows up),
    // then 7 more flows right after it, then -Z.
    sport += 1;
    flow(&mut e, t, &b, sport, false);
    let snap = svc_view(&e, &b).counters.conns;
    for _ in 0..300 {
        if svc_view(&e, &b).counters.conns != snap {
            break;
        }
        t += 10;
        e.handle_timeout(t);
    }
    assert_eq!(svc_view(&e, &b).counters.conns, snap + 1);
    for _ in 0..7 {
        sport += 1;
        flow(&mut e, t, &b, sport, false);
    }
    e.zero_stats(None).unwrap();
    assert_eq!(svc_view(&e, &b), StatsView::default());
    assert_eq!(e.total_stats(), StatsView::default());
    run(&mut e, &b, t, 3, 0, &mut sport);
    let v = svc_view(&e, &b);
    assert_eq!(v.counters.conns, 7);
    assert_eq!(v.counters.in_pkts, 7);
    assert_eq!(v.counters.in_bytes, 7 * LEN);
    assert_eq!(v.rates.cps, 1); // (7 << 9 >> 2 + 0x1FF) >> 10 = 1
    assert_eq!(svc_view(&e, &a).counters, Counters::default());
}

#[test]
fn no_estimation_before_the_first_service() {
    let mut e = Engine::new(1);
    for t in 0..500u64 {
        e.handle_timeout(t * 10);
    }
    assert_eq!(e.total_stats(), StatsView::default());
    // A long stall catches up one period and never panics.
    let key = add_service(&mut e, 53, &[1]);
    flow(&mut e, 5000, &key, 2000, true);
    e.handle_timeout(u64::MAX / 2);
    e.handle_timeout(u64::MAX);
    assert_eq!(svc_view(&e, &key).counters.conns, 1);
}

/// `run_estimation 0` (or an emptied `est_cpulist`) freezes the listed
/// counters, and turning it back on catches up (§19.1).
#[test]
fn run_estimation_off_freezes_the_listed_counters() {
    let mut e = Engine::new(1);
    let key = add_service(&mut e, 53, &[1]);
    let run = |e: &mut Engine, from: u64, until: u64| {
        for t in (from..until).step_by(10) {
            e.handle_timeout(t);
        }
    };
    flow(&mut e, 0, &key, 2000, false);
    run(&mut e, 0, 2_100);
    assert_eq!(svc_view(&e, &key).counters.conns, 1);
    e.set_sysctl("run_estimation", "0").unwrap();
    flow(&mut e, 2_100, &key, 2001, false);
    run(&mut e, 2_100, 6_100);
    assert_eq!(svc_view(&e, &key).counters.conns, 1, "frozen");
    e.set_sysctl("run_estimation", "1").unwrap();
    e.set_sysctl("est_cpulist", "").unwrap();
    run(&mut e, 6_100, 10_100);
    assert_eq!(
        svc_view(&e, &key).counters.conns,
        1,
        "empty CPU list: still frozen"
    );
    e.set_sysctl("est_cpulist", "0-1").unwrap();
    run(&mut e, 10_100, 12_200);
    assert_eq!(svc_view(&e, &key).counters.conns, 2);
}
