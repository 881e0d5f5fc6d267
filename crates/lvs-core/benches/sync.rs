//! Connection sync on one core (sync-protocol.md):
//!
//! * `sync_codec/encode`: entries appended to messages (`Builder`), 40 per
//!   1472-byte message, throughput in entries;
//! * `sync_codec/apply_update` and `apply_create`: entries a backup applies
//!   (`Engine::apply_sync`), refreshing existing connections and creating
//!   new ones;
//! * `sync_churn/{off,master}`: 10,000 new NAT connections of three client
//!   packets each through the engine, without a sync daemon and as a
//!   master (each connection is sent at its third packet): the master's
//!   extra CPU per connection is the difference; the sync traffic for a
//!   churn of 100,000 new connections per second is printed (bytes of
//!   messages per connection × 100,000);
//! * `sync_full_copy/1000000`: a full copy of a 1M-entry table (lvsd's
//!   resync for a joining backup), queued and assembled into messages.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lvs_core::sync::codec::{Builder, Entry};
use lvs_core::sync::MasterConfig;
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::Engine;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use support::{client, engine_with, tcp, VIP};

const MASTER: MasterConfig = MasterConfig {
    syncid: 1,
    maxlen: 1472,
    ports: 1,
};

fn entry(i: u32) -> Entry<'static> {
    let (c, port) = client(i);
    Entry {
        protocol: 6,
        flags: 0,
        state: 1,
        cport: port,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: IpAddr::V4(Ipv4Addr::from(c)),
        vaddr: IpAddr::V4(Ipv4Addr::from(VIP)),
        daddr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11 + (i % 3) as u8)),
        seq: None,
        pe_data: None,
        pe_name: None,
    }
}

/// Messages holding entries `0..n`.
fn messages(n: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = Builder::new(1, 1, 1472);
    for i in 0..n {
        let e = entry(i);
        if !b.fits(&e, 1472) {
            out.push(b.bytes().to_vec());
            b.reset(1, 1);
        }
        b.push(&e);
    }
    if !b.is_empty() {
        out.push(b.bytes().to_vec());
    }
    out
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_codec");
    let entries: Vec<Entry> = (0..40).map(entry).collect();
    g.throughput(Throughput::Elements(40));
    g.bench_function("encode", |b| {
        let mut m = Builder::new(1, 1, 1472);
        b.iter(|| {
            m.reset(1, 1);
            for e in &entries {
                m.push(black_box(e));
            }
            black_box(m.len())
        })
    });
    const N: u32 = 100_000;
    let msgs = messages(N);
    g.throughput(Throughput::Elements(u64::from(N)));
    let mut warm = engine_with(3);
    for m in &msgs {
        warm.apply_sync(m, 0, 0).unwrap();
    }
    let mut now = 0;
    g.bench_function("apply_update", |b| {
        b.iter(|| {
            now += 1;
            for m in &msgs {
                warm.apply_sync(black_box(m), 0, now).unwrap();
            }
        })
    });
    g.sample_size(10);
    g.bench_function("apply_create", |b| {
        b.iter_batched_ref(
            || {
                let mut e = engine_with(3);
                e.reserve_connections(N as usize);
                e
            },
            |e| {
                for m in &msgs {
                    e.apply_sync(black_box(m), 0, 0).unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// 10,000 new connections of three client packets; the sync bytes made.
fn churn(e: &mut Engine, round: u32) -> usize {
    let base = round.wrapping_mul(10_000);
    let mut bytes = 0;
    let now = u64::from(round) * 10;
    for i in 0..10_000 {
        let (c, port) = client(base.wrapping_add(i) % 4_000_000);
        for f in [SYN, ACK, ACK] {
            let mut p = tcp(c, port, VIP, 80, f);
            black_box(e.process_ipv4(now, &mut p, false));
        }
    }
    while let Some(m) = e.pop_sync_message(now + 5000) {
        bytes += m.bytes.len();
        e.recycle_sync_buffer(m.bytes);
    }
    bytes
}

fn sync_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_churn");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(20);
    for master in [false, true] {
        let fresh = || {
            let mut e = engine_with(3);
            e.reserve_connections(20_000);
            if master {
                e.start_sync_master(MASTER);
            }
            e
        };
        if master {
            let bytes = churn(&mut fresh(), 0);
            eprintln!(
                "sync_churn: {bytes} bytes of sync messages per 10,000 new connections: {:.1} Mbit/s at 100,000 new connections per second",
                bytes as f64 * 10.0 * 8.0 / 1e6
            );
        }
        g.bench_function(if master { "master" } else { "off" }, |b| {
            b.iter_batched_ref(fresh, |e| churn(e, 0), BatchSize::LargeInput)
        });
    }
    g.finish();
}

fn full_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_full_copy");
    const N: u32 = 1_000_000;
    let mut e = engine_with(3);
    e.reserve_connections(N as usize);
    for m in messages(N) {
        e.apply_sync(&m, 0, 0).unwrap();
    }
    e.start_sync_master(MASTER);
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    g.bench_function("1000000", |b| {
        b.iter(|| {
            e.begin_full_sync();
            let mut msgs = 0;
            while e.full_sync_running() {
                e.pump_full_sync(1, 4096);
                while let Some(m) = e.pop_sync_message(1) {
                    msgs += 1;
                    e.recycle_sync_buffer(m.bytes);
                }
            }
            black_box(msgs)
        })
    });
    g.finish();
}

criterion_group!(benches, codec, sync_churn, full_copy);
criterion_main!(benches);
