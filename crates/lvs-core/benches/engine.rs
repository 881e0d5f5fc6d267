//! Engine throughput on one core: established-flow NAT packets with 10k and
//! 1M entries in the table (through `process_ipv4`, comparable with the
//! numbers before the transmit seam), established packets per forwarding
//! method through `Engine::process` with headroom (NAT, direct routing,
//! IPIP, GUE with checksum, GRE), and new connections scheduled by wrr.
//!
//! Each measured packet is first copied from a template (the engine rewrites
//! in place), which stands in for the NIC writing the frame.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::xmit::{OnLink, PacketBuf, Transmit, HEADROOM};
use lvs_core::Verdict;
use lvs_core::{Forward, Tunnel, TunnelCsum, TunnelType};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{
    client, client6, engine_forwarding, engine_forwarding6, engine_with, tcp, tcp6, LIVE, VIP, VIP6,
};

/// Heap bytes per connection entry with 1M TCP entries in the table (all
/// indexes and timer filings included). Printed, not timed.
fn memory_per_connection(_c: &mut Criterion) {
    let n = 1_000_000u32;
    let before = LIVE.load(Ordering::Relaxed);
    let mut e = engine_with(3);
    for i in 0..n {
        let (a, p) = client(i);
        let mut syn = tcp(a, p, VIP, 80, SYN);
        e.process_ipv4(0, &mut syn, false);
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "memory_per_connection: {} entries, {} bytes of heap, {:.1} bytes per entry",
        e.connection_count(),
        used,
        used as f64 / f64::from(n)
    );
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established_nat");
    for &n in &[10_000u32, 1_000_000] {
        let mut e = engine_with(3);
        e.reserve_connections(n as usize);
        for i in 0..n {
            let (a, p) = client(i);
            let mut syn = tcp(a, p, VIP, 80, SYN);
            assert!(matches!(
                e.process_ipv4(0, &mut syn, false),
                Verdict::Forward { .. }
            ));
            let mut ack = tcp(a, p, VIP, 80, ACK);
            e.process_ipv4(0, &mut ack, false);
        }
        // 64 Ki sample flows spread over the whole table, visited in a scattered order.
        let samples: Vec<[u8; 46]> = (0..65536u32)
            .map(|k| {
                let i = (k.wrapping_mul(2_654_435_761)) % n;
                let (a, p) = client(i);
                tcp(a, p, VIP, 80, ACK)
            })
            .collect();
        g.throughput(Throughput::Elements(64));
        let mut at = 0usize;
        g.bench_function(format!("in_64pkt_batch/{n}_conns"), |b| {
            b.iter(|| {
                for _ in 0..64 {
                    let mut pkt = samples[at & 0xffff];
                    at = at.wrapping_add(1);
                    black_box(e.process_ipv4(1, &mut pkt, false));
                }
            })
        });
    }
    g.finish();
}

/// Established packets (client side) per forwarding method, through the
/// transmit seam with the buffer headroom the daemon gives.
/// Opens `n` connections on `e` (SYN, ACK each, all sent) and measures
/// batches of 64 established packets (ACKs of connections picked
/// scattered over the table) as benchmark `id` of group `g`.
fn bench_flows<const L: usize>(
    g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    id: &str,
    mut e: lvs_core::Engine,
    paths: &OnLink,
    n: u32,
    packet: impl Fn(u32, u8) -> [u8; L],
) {
    e.reserve_connections(n as usize);
    // On the stack, as a packet buffer of the daemon's would be in cache.
    let mut space = [0u8; HEADROOM + 128];
    let buf = &mut space[..HEADROOM + L];
    for i in 0..n {
        for flags in [SYN, ACK] {
            buf[HEADROOM..].copy_from_slice(&packet(i, flags));
            let t = e.process(0, &mut PacketBuf::new(buf, HEADROOM), paths);
            assert!(matches!(t, Transmit::Send(_)), "{id}: {t:?}");
        }
    }
    let samples: Vec<[u8; L]> = (0..65536u32)
        .map(|k| packet(k.wrapping_mul(2_654_435_761) % n, ACK))
        .collect();
    g.throughput(Throughput::Elements(64));
    let mut at = 0usize;
    g.bench_function(id, |b| {
        b.iter(|| {
            for _ in 0..64 {
                buf[HEADROOM..].copy_from_slice(&samples[at & 0xffff]);
                at = at.wrapping_add(1);
                let mut p = PacketBuf::new(buf, HEADROOM);
                black_box(e.process(1, &mut p, paths));
            }
        })
    });
}

fn established_methods(c: &mut Criterion) {
    let mut g = c.benchmark_group("established_method");
    let gue = Tunnel {
        kind: TunnelType::Gue,
        port: 6080,
        csum: TunnelCsum::Csum,
    };
    let gre = Tunnel {
        kind: TunnelType::Gre,
        ..Default::default()
    };
    let methods: [(&str, Forward, Tunnel); 5] = [
        ("masq", Forward::Masq, Tunnel::default()),
        ("route", Forward::Route, Tunnel::default()),
        ("ipip", Forward::Tunnel, Tunnel::default()),
        ("gue_csum", Forward::Tunnel, gue),
        ("gre", Forward::Tunnel, gre),
    ];
    let paths = OnLink {
        src: std::net::Ipv4Addr::new(198, 18, 1, 1).into(),
        mtu: 1500,
    };
    for &n in &[10_000u32, 1_000_000] {
        for (name, forward, tunnel) in methods {
            let e = engine_forwarding(3, forward, tunnel);
            let packet = |i: u32, flags: u8| {
                let (a, p) = client(i);
                tcp(a, p, VIP, 80, flags)
            };
            bench_flows(&mut g, &format!("{name}/{n}_conns"), e, &paths, n, packet);
        }
    }
    g.finish();
}

/// IPv6 established flows next to IPv4 (same group, one run): NAT66 and
/// direct routing at 10,000 connections, 66-byte packets (the IPv4
/// benchmarks' packet with an IPv6 header).
fn established_v6(c: &mut Criterion) {
    let mut g = c.benchmark_group("established_v6");
    let paths = OnLink {
        src: std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1).into(),
        mtu: 1500,
    };
    let n = 10_000u32;
    for (name, forward) in [("masq", Forward::Masq), ("route", Forward::Route)] {
        let e = engine_forwarding6(3, forward);
        let packet = |i: u32, flags: u8| {
            let (a, p) = client6(i);
            tcp6(a, p, VIP6, 80, flags)
        };
        bench_flows(&mut g, &format!("{name}/{n}_conns"), e, &paths, n, packet);
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_connections_wrr");
    for &dests in &[3u8, 100] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{dests}_dests"), |b| {
            // Only the SYN processing is timed: each chunk of 64 Ki new
            // connections gets a fresh engine, built and dropped untimed.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(1 << 16) as u32;
                    let mut e = engine_with(dests);
                    e.reserve_connections(n as usize);
                    let mut pkts: Vec<[u8; 46]> = (0..n)
                        .map(|i| {
                            let (a, p) = client(i);
                            tcp(a, p, VIP, 80, SYN)
                        })
                        .collect();
                    let t = Instant::now();
                    for p in pkts.iter_mut() {
                        black_box(e.process_ipv4(0, p, false));
                    }
                    total += t.elapsed();
                    left -= u64::from(n);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    memory_per_connection,
    established,
    established_methods,
    established_v6,
    new_connections
);
criterion_main!(benches);
