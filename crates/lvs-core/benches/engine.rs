//! Engine throughput on one core: established-flow NAT packets with 10k and
//! 1M entries in the table, and new connections scheduled by wrr.
//!
//! Each measured packet is first copied from a template (the engine rewrites
//! in place), which stands in for the NIC writing the frame.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvs_core::wire::checksum;
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Verdict};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes, to report the memory cost of a connection entry.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only bookkeeping.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p was allocated by System with layout l.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const VIP: [u8; 4] = [198, 18, 0, 100];

/// A 64-byte-frame-sized TCP packet (IP 20 + TCP 20 + 6 payload).
fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> [u8; 46] {
    let mut v = [0u8; 46];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&46u16.to_be_bytes());
    v[8] = 64;
    v[9] = 6;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[32] = 5 << 4;
    v[33] = flags;
    let sum = checksum::pseudo_v4(src, dst, 6, 26);
    let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
    v[36..38].copy_from_slice(&c.to_be_bytes());
    let hc = checksum::checksum(&v[..20]);
    v[10..12].copy_from_slice(&hc.to_be_bytes());
    v
}

/// Client number `i` as (address in 198.18.128.0/17 .. 198.19.x, port).
fn client(i: u32) -> ([u8; 4], u16) {
    let host = 0xC612_8000u32 + (i >> 14);
    (host.to_be_bytes(), 1024 + (i & 0x3fff) as u16)
}

fn engine_with(dests: u8) -> Engine {
    let mut e = Engine::new(0x5eed);
    let key = ServiceKey {
        protocol: 6,
        addr: Ipv4Addr::from(VIP).into(),
        port: 80,
    };
    e.add_service(key, "wrr", 0).unwrap();
    for d in 0..dests {
        let cfg = DestConfig {
            addr: Ipv4Addr::new(198, 18, 1, 11 + d).into(),
            port: 80,
            forward: Forward::Masq,
            weight: 1 + i32::from(d % 3),
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, cfg).unwrap();
    }
    e
}

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

criterion_group!(benches, memory_per_connection, established, new_connections);
criterion_main!(benches);
