//! Connection tracking at scale, on one core:
//!
//! * `conn_lookup`: `ConnTable::lookup_in` hits and misses with 10k, 1M and
//!   10M entries, independent (`hit`, `miss`) and each waiting for the
//!   previous one (`hit_serial`);
//! * `conn_established`: established-flow packets through
//!   `Engine::process_ipv4` (lookup, state, timer, NAT rewrite), client to
//!   real server (`in`) and the real server's replies (`out`), same sizes;
//! * `conn_expiry`: entries removed per second when a burst of entries falls
//!   due at once, by `ConnTable::expire` and by `Engine::handle_timeout`;
//! * `conn_tick`: one `handle_timeout` tick with the entries live and none
//!   due (`none_due`), and the tick that meets the wheel slot holding every
//!   entry's far-future filing (`refile`).
//!
//! Tables are built once per size, lazily (a filter that skips a size skips
//! its build), and sampled over all entries in a scattered order, so that at
//! 1M and 10M the caches are as cold as with real traffic. The 10k rows are
//! a same-run baseline: on a shared, noisy machine compare ratios.
//!
//! Memory is printed, not timed, whenever a table or engine is built
//! (`memory/table/N`, `memory/engine/N` on stderr): live heap bytes counted
//! by the global allocator of `benches/support`, and the resident-set
//! growth, each per entry and against the 320-byte `ip_vs_conn` slab object
//! of the 6.18 kernel.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use lvs_core::conn::{flags, Conn, ConnTable, InKey, TICK_MS};
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::{Engine, Verdict};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{client, engine_with, tcp, CLIENT_BASE, LIVE, VIP};

/// Size of the 6.18 kernel's `ip_vs_conn` slab object (`/proc/slabinfo`
/// objsize of the `ip_vs_conn` cache).
const KERNEL_CONN_BYTES: f64 = 320.0;

/// Slots of the timing wheel.
const WHEEL_SLOTS: u64 = lvs_core::conn::WHEEL_SLOTS as u64;

/// `handle_timeout` calls that finish a slot of `n` filings (each call looks
/// at no more than `EXPIRE_BUDGET` of them).
fn calls_for(n: u32) -> usize {
    n as usize / lvs_core::engine::EXPIRE_BUDGET + 2
}

/// Table sizes, with their labels.
const SIZES: [(u32, &str); 3] = [(10_000, "10k"), (1_000_000, "1M"), (10_000_000, "10M")];

/// Sampled keys or packets per size: more than any cache holds of the entries
/// they point at, visited in order (the array itself streams from memory).
const SAMPLES: usize = 1 << 20;
/// Lookups or packets per timed iteration.
const BATCH: usize = 256;

/// The client number of (address, port), the inverse of `client`.
fn client_number(addr: Ipv4Addr, port: u16) -> usize {
    (((u32::from(addr) - CLIENT_BASE) << 14) | u32::from(port - 1024)) as usize
}

/// The `k`-th sample of `0..n`, scattered over the whole range (splitmix64).
fn scatter(k: u64, n: u32) -> u32 {
    let mut z = k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % u64::from(n)) as u32
}

/// Resident set size of this process in bytes.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Runs `build` (which creates `n` entries) and prints the heap and resident
/// memory it added, per entry.
fn measured<T>(what: &str, label: &str, n: u32, build: impl FnOnce() -> T) -> T {
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), resident());
    let t = Instant::now();
    let v = build();
    let took = t.elapsed();
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(heap0) as f64 / f64::from(n);
    let rss = resident().saturating_sub(rss0) as f64 / f64::from(n);
    eprintln!(
        "memory/{what}/{label}: {n} entries (Conn {} B, slab slot {} B), built in {:.1} s: \
         heap {heap:.1} B/entry ({:.2} x the kernel's 320 B), resident {rss:.1} B/entry ({:.2} x)",
        std::mem::size_of::<Conn>(),
        std::mem::size_of::<Option<Conn>>(),
        took.as_secs_f64(),
        heap / KERNEL_CONN_BYTES,
        rss / KERNEL_CONN_BYTES,
    );
    v
}

/// Entry `i` of a table: client `i` to the VIP, NAT to one of three real
/// servers, expiring `timeout_ms` after `now`.
fn entry(i: u32, now: u64, timeout_ms: u64) -> Conn {
    let (a, p) = client(i);
    let mut c = ConnTable::new_conn(
        6,
        Ipv4Addr::from(a).into(),
        p,
        Ipv4Addr::from(VIP).into(),
        80,
        Ipv4Addr::new(198, 18, 1, 11 + (i % 3) as u8).into(),
        80,
        flags::MASQ,
        now,
    );
    c.timeout_ms = timeout_ms as u32;
    c.expires = now + timeout_ms;
    c
}

fn in_key(i: u32) -> InKey {
    let (a, p) = client(i);
    InKey {
        protocol: 6,
        caddr: Ipv4Addr::from(a).into(),
        cport: p,
        vaddr: Ipv4Addr::from(VIP).into(),
        vport: 80,
    }
}

/// A table of `n` entries, sample keys that hit and keys that miss.
fn lookup_fixture(n: u32, label: &str) -> (ConnTable, Vec<InKey>, Vec<InKey>) {
    let t = measured("table", label, n, || {
        let mut t = ConnTable::new(0x5eed);
        for i in 0..n {
            t.insert(0, entry(i, 0, 900_000));
        }
        t
    });
    let hits: Vec<InKey> = (0..SAMPLES as u64).map(|k| in_key(scatter(k, n))).collect();
    // Clients numbered from n up have no entry.
    let misses: Vec<InKey> = (0..SAMPLES as u64)
        .map(|k| in_key(n + scatter(k, n)))
        .collect();
    assert!(hits.iter().take(1000).all(|k| t.lookup_in(k).is_some()));
    assert!(misses.iter().take(1000).all(|k| t.lookup_in(k).is_none()));
    (t, hits, misses)
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_lookup");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for &(n, label) in &SIZES {
        let mut fixture = None;
        let mut at = 0usize;
        g.bench_function(format!("hit/{label}"), |b| {
            let (t, hits, _) = fixture.get_or_insert_with(|| lookup_fixture(n, label));
            b.iter(|| {
                for _ in 0..BATCH {
                    black_box(t.lookup_in(&hits[at % SAMPLES]));
                    at += 1;
                }
            })
        });
        // The same hits one after another: each key is chosen only once the
        // previous lookup has returned, so the misses of consecutive lookups
        // cannot overlap. This is the latency a packet sees; `hit` is the
        // throughput of independent lookups.
        g.bench_function(format!("hit_serial/{label}"), |b| {
            let (t, hits, _) = fixture.get_or_insert_with(|| lookup_fixture(n, label));
            b.iter(|| {
                for _ in 0..BATCH {
                    let id = black_box(t.lookup_in(&hits[at % SAMPLES]));
                    // Ids are below 2^31, so this adds 1, but only once `id` is known.
                    at += 1 + (id.unwrap_or(0) >> 31) as usize;
                }
            })
        });
        g.bench_function(format!("miss/{label}"), |b| {
            let (t, _, misses) = fixture.get_or_insert_with(|| lookup_fixture(n, label));
            b.iter(|| {
                for _ in 0..BATCH {
                    black_box(t.lookup_in(&misses[at % SAMPLES]));
                    at += 1;
                }
            })
        });
    }
    g.finish();
}

/// An engine with `n` established connections (SYN, then ACK), sample
/// packets from clients and sample replies from their real servers.
fn established_fixture(n: u32, label: &str) -> (Engine, Vec<[u8; 46]>, Vec<[u8; 46]>) {
    let e = measured("engine", label, n, || {
        let mut e = engine_with(3);
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
        e
    });
    // The real server each client was given (last octet), by client number.
    let mut server = vec![0u8; n as usize];
    for c in e.connections() {
        if let (IpAddr::V4(ca), IpAddr::V4(da)) = (c.caddr, c.daddr) {
            server[client_number(ca, c.cport)] = da.octets()[3];
        }
    }
    let ins: Vec<[u8; 46]> = (0..SAMPLES as u64)
        .map(|k| {
            let (a, p) = client(scatter(k, n));
            tcp(a, p, VIP, 80, ACK)
        })
        .collect();
    let replies: Vec<[u8; 46]> = (0..SAMPLES as u64)
        .map(|k| {
            let i = scatter(k, n);
            let (a, p) = client(i);
            tcp([198, 18, 1, server[i as usize]], 80, a, p, ACK)
        })
        .collect();
    (e, ins, replies)
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_established");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for &(n, label) in &SIZES {
        let mut fixture = None;
        let mut at = 0usize;
        for (dir, reply) in [("in", false), ("out", true)] {
            g.bench_function(format!("{dir}/{label}"), |b| {
                let (e, ins, outs) = fixture.get_or_insert_with(|| established_fixture(n, label));
                let samples = if reply { &*outs } else { &*ins };
                let mut pkt = samples[0];
                assert!(matches!(
                    e.process_ipv4(1, &mut pkt, false),
                    Verdict::Forward { .. }
                ));
                b.iter(|| {
                    for _ in 0..BATCH {
                        // Copied as the NIC would write it: the engine rewrites in place.
                        let mut pkt = samples[at % SAMPLES];
                        at += 1;
                        black_box(e.process_ipv4(1, &mut pkt, false));
                    }
                })
            });
        }
    }
    g.finish();
}

/// Timeout of the entries of an expiry burst (the engine's come from SYN_RECV).
const BURST_TIMEOUT_MS: u64 = 60_000;

fn expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_expiry");
    // One iteration removes a whole burst; each needs the burst rebuilt, untimed.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(n, label) in &SIZES[..2] {
        g.throughput(Throughput::Elements(u64::from(n)));

        // The table alone: n entries inserted at `now` with one timeout, then
        // one `expire` past it. Table and output buffer are reused, so the
        // timed part allocates nothing, as in steady state.
        let mut t = ConnTable::new(0x5eed);
        let mut out = Vec::new();
        let mut now = 0u64;
        g.bench_function(format!("table/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for i in 0..n {
                        t.insert(now, entry(i, now, BURST_TIMEOUT_MS));
                    }
                    out.clear();
                    let due = now + BURST_TIMEOUT_MS + 2 * TICK_MS;
                    let start = Instant::now();
                    let k = t.expire(due, &mut out);
                    total += start.elapsed();
                    assert_eq!(k, n as usize);
                    now = due;
                }
                total
            })
        });
        drop((t, out));

        // Through the engine: n SYNs at `now` (SYN_RECV, 60 s), then
        // `handle_timeout` past their expiry (as many calls as the expiry
        // budget needs), which also releases each entry from its real
        // server's counters.
        let mut e = engine_with(3);
        let syns: Vec<[u8; 46]> = (0..n)
            .map(|i| {
                let (a, p) = client(i);
                tcp(a, p, VIP, 80, SYN)
            })
            .collect();
        let mut now = 0u64;
        g.bench_function(format!("engine/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for s in &syns {
                        let mut pkt = *s;
                        e.process_ipv4(now, &mut pkt, false);
                    }
                    let expires = e.connections().map(|c| c.expires).max().unwrap_or(now);
                    assert_eq!(expires, now + BURST_TIMEOUT_MS);
                    let due = expires + 2 * TICK_MS;
                    let start = Instant::now();
                    let k: usize = (0..calls_for(n)).map(|_| e.handle_timeout(due)).sum();
                    total += start.elapsed();
                    assert_eq!(k, n as usize);
                    now = due;
                }
                total
            })
        });
    }
    g.finish();
}

/// An engine with `n` established connections that never fall due, its
/// clock past the tick where their SYN_RECV filings were moved to their
/// final tick. Returns the engine, its clock and that final wheel slot.
fn idle_fixture(n: u32) -> (Engine, u64, u64) {
    let mut e = engine_with(3);
    // ESTABLISHED lasts about 31 years.
    e.set_timeouts(lvs_core::engine::MAX_TIMEOUT_SECS, 0, 0)
        .unwrap();
    for i in 0..n {
        let (a, p) = client(i);
        let mut syn = tcp(a, p, VIP, 80, SYN);
        e.process_ipv4(0, &mut syn, false);
        let mut ack = tcp(a, p, VIP, 80, ACK);
        e.process_ipv4(0, &mut ack, false);
    }
    let now = 61_000;
    assert_eq!(e.handle_timeout(now), 0);
    let expires = e.connections().map(|c| c.expires).min().unwrap_or(0);
    (e, now, (expires / TICK_MS) % WHEEL_SLOTS)
}

/// True if the `handle_timeout` call at `now` (a multiple of TICK_MS)
/// processes the wheel slot `slot`.
fn meets(now: u64, slot: u64) -> bool {
    (now / TICK_MS - 1) % WHEEL_SLOTS == slot
}

fn ticks(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_tick");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for &(n, label) in &SIZES[..2] {
        let mut fixture = None;
        // Ticks 100 ms apart, timed in runs; the one tick per wheel
        // revolution that meets the entries' filings is run untimed.
        g.bench_function(format!("none_due/{label}"), |b| {
            let (e, now, slot) = fixture.get_or_insert_with(|| idle_fixture(n));
            b.iter_custom(|iters| {
                let (mut total, mut done, mut expired) = (Duration::ZERO, 0, 0);
                while done < iters {
                    let start = Instant::now();
                    while done < iters && !meets(*now + TICK_MS, *slot) {
                        *now += TICK_MS;
                        expired += e.handle_timeout(*now);
                        done += 1;
                    }
                    total += start.elapsed();
                    if done < iters {
                        // The slot with all the filings, untimed (refile
                        // below measures it), until it is finished.
                        *now += TICK_MS;
                        for _ in 0..calls_for(n) {
                            expired += e.handle_timeout(*now);
                        }
                    }
                }
                assert_eq!(expired, 0);
                total
            })
        });
        // The tick that meets the slot where all n entries are filed for a
        // later revolution (a revolution is WHEEL_SLOTS ticks, 1638.4 s):
        // the time until that slot is finished, over as many calls as the
        // expiry budget needs (no single call looks at more than
        // EXPIRE_BUDGET filings).
        g.sampling_mode(SamplingMode::Flat);
        g.bench_function(format!("refile/{label}"), |b| {
            let (e, now, slot) = fixture.get_or_insert_with(|| idle_fixture(n));
            b.iter_custom(|iters| {
                let (mut total, mut expired) = (Duration::ZERO, 0);
                for _ in 0..iters {
                    while !meets(*now + TICK_MS, *slot) {
                        *now += TICK_MS;
                        expired += e.handle_timeout(*now);
                    }
                    *now += TICK_MS;
                    let start = Instant::now();
                    for _ in 0..calls_for(n) {
                        expired += e.handle_timeout(*now);
                    }
                    total += start.elapsed();
                }
                assert_eq!(expired, 0);
                total
            })
        });
        g.sampling_mode(SamplingMode::Auto);
    }
    g.finish();
}

criterion_group!(benches, lookups, established, expiry, ticks);
criterion_main!(benches);
