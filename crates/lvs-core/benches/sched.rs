//! Scheduling decisions per second, per scheduler, with 3, 100 and 1000
//! destinations: the cost of `Scheduler::schedule` alone (no connection is
//! created, so counters stay as set up: a mix of loads, weights 1..4).
//!
//! lc, wlc, sed, nq, fo, ovf and twos scan the whole list like the kernel
//! (O(n)); rr and wrr are O(n) only in the worst case; dh, sh, srcdst and
//! mh are table lookups (O(1)); lblc/lblcr are a hash lookup, a scan of
//! the list to find the cached destination's position, and on a miss or
//! overload a wlc-style scan. The bench spreads destination addresses over
//! 4096 values, so lblc/lblcr see many keys; through a VIP (daddr is the
//! VIP) they see one.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lvs_core::rng::Rng;
use lvs_core::sched::{self, DestList, PacketInfo, SchedCtx, SchedSettings};
use lvs_core::service::{Dest, Forward, ServiceKey, DEST_F_AVAILABLE};
use lvs_core::slab::Slab;
use lvs_core::stats::Counters;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

fn dests(n: u32) -> (Slab<Dest>, Vec<u32>) {
    let mut pool = Slab::default();
    let mut ids = Vec::new();
    let vip: IpAddr = Ipv4Addr::new(198, 18, 0, 100).into();
    for i in 0..n {
        let id = pool.insert(Dest {
            tunnel: Default::default(),
            addr: Ipv4Addr::from(0xC612_0100u32 + i).into(),
            port: 80,
            forward: Forward::Masq,
            weight: 1 + (i % 4) as i32,
            last_weight: 1 + (i % 4) as i32,
            u_threshold: 0,
            l_threshold: 0,
            active_conns: (i * 7) % 13,
            inact_conns: (i * 5) % 11,
            persist_conns: 0,
            flags: DEST_F_AVAILABLE,
            svc: 0,
            uid: u64::from(i) + 1,
            svc_key: ServiceKey {
                protocol: 17,
                addr: vip,
                port: 80,
            },
            refs: 0,
            trash_idle_since: None,
            stats: Counters::default(),
        });
        ids.insert(0, id);
    }
    (pool, ids)
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule");
    g.throughput(Throughput::Elements(1));
    for &name in sched::AVAILABLE {
        for &n in &[3u32, 100, 1000] {
            let Some(mut s) = sched::by_name(name) else {
                continue;
            };
            let (pool, ids) = dests(n);
            s.init(DestList::new(&[], &pool), 0);
            for k in (0..ids.len()).rev() {
                s.add_dest(DestList::new(&ids[k..], &pool), 0);
            }
            let mut rng = Rng::new(42);
            let settings = SchedSettings::default();
            let mut i: u32 = 0;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let pkt = PacketInfo {
                        protocol: 17,
                        saddr: Ipv4Addr::from(0xC612_8000u32 + (i & 0xffff)).into(),
                        sport: 1024 + (i % 60000) as u16,
                        daddr: Ipv4Addr::from(0xC612_6400u32 + (i & 0xfff)).into(),
                        dport: 80,
                    };
                    let mut ctx = SchedCtx {
                        now_ms: u64::from(i),
                        rng: &mut rng,
                        settings: &settings,
                    };
                    black_box(s.schedule(DestList::new(&ids, &pool), &pkt, &mut ctx))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
