//! Traffic counters kept per service and destination (connections.md §19.1)
//! and the kernel's rate estimator (§19.2).
//!
//! The data path only adds to plain [`Counters`]. What listings show is an
//! [`Estimator`]'s view of them: a snapshot taken when the estimator visits
//! the counters (every 2 s), minus the zero point set by `ipvsadm -Z`, and
//! the five smoothed rates, computed with the kernel's fixed-point EWMA.

/// Connection, packet and byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Counters {
    /// One incoming (client → real server) packet of `len` bytes.
    #[inline]
    pub fn add_in(&mut self, len: u64) {
        self.in_pkts = self.in_pkts.wrapping_add(1);
        self.in_bytes = self.in_bytes.wrapping_add(len);
    }

    /// `pkts` packets of `bytes` bytes in all, incoming (`inbound`) or
    /// outgoing.
    #[inline]
    pub fn add_many(&mut self, inbound: bool, pkts: u64, bytes: u64) {
        let (p, b) = if inbound {
            (&mut self.in_pkts, &mut self.in_bytes)
        } else {
            (&mut self.out_pkts, &mut self.out_bytes)
        };
        *p = p.wrapping_add(pkts);
        *b = b.wrapping_add(bytes);
    }

    /// One outgoing (real server → client) packet of `len` bytes.
    #[inline]
    pub fn add_out(&mut self, len: u64) {
        self.out_pkts = self.out_pkts.wrapping_add(1);
        self.out_bytes = self.out_bytes.wrapping_add(len);
    }

    fn to_array(self) -> [u64; 5] {
        [
            self.conns,
            self.in_pkts,
            self.out_pkts,
            self.in_bytes,
            self.out_bytes,
        ]
    }

    fn from_array(a: [u64; 5]) -> Self {
        Counters {
            conns: a[0],
            in_pkts: a[1],
            out_pkts: a[2],
            in_bytes: a[3],
            out_bytes: a[4],
        }
    }

    /// `self − other`, counter by counter, wrapping like the kernel's u64s.
    pub fn wrapping_sub(self, other: Counters) -> Counters {
        let (a, b) = (self.to_array(), other.to_array());
        Counters::from_array(std::array::from_fn(|i| a[i].wrapping_sub(b[i])))
    }
}

/// The five rates of `ipvsadm --rate`: connections, packets and bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// What a listing shows for one stats object: zero-point adjusted snapshot and rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsView {
    pub counters: Counters,
    pub rates: Rates,
}

/// The estimation period: every estimator is visited once per 2 s (§19.2).
pub const EST_PERIOD_MS: u64 = 2000;
/// The period is split into this many ticks; each estimator lives in one.
pub const EST_TICKS: u64 = 50;
/// Length of one tick (40 ms).
pub const EST_TICK_MS: u64 = EST_PERIOD_MS / EST_TICKS;

/// Left shift turning a 2-second delta into the fixed-point sample:
/// conns/pkts `<< 9` (per-second × 2^10), bytes `<< 4` (per-second × 2^5).
const SAMPLE_SHIFT: [u32; 5] = [9, 9, 9, 4, 4];

/// One estimator (`struct ip_vs_estimator` plus the `kstats`/`kstats0`
/// snapshot and zero point of `struct ip_vs_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimator {
    /// The counters at the last visit (`kstats`, which is also the
    /// estimator's `last_*`: the base of the next delta).
    snap: Counters,
    /// The zero point (`kstats0`), set by `-Z`.
    zero: Counters,
    /// Fixed-point averages: cps, inpps, outpps (× 2^10), inbps, outbps (× 2^5).
    avg: [u64; 5],
    /// The tick slot (0..EST_TICKS) in which this estimator is visited.
    pub slot: u8,
}

impl Estimator {
    /// A new estimator visited in tick `slot`: averages and previous values 0,
    /// so its first delta is the count since creation.
    pub fn new(slot: u8) -> Self {
        Estimator {
            slot,
            ..Estimator::default()
        }
    }

    /// One estimator visit (`ip_vs_chain_estimation`): snapshot `live` and
    /// fold the 2-second deltas into the averages.
    pub fn visit(&mut self, live: &Counters) {
        let cur = live.to_array();
        let last = self.snap.to_array();
        for i in 0..5 {
            let rate = cur[i].wrapping_sub(last[i]).wrapping_shl(SAMPLE_SHIFT[i]);
            // e->x += ((s64)rate - (s64)e->x) >> 2;
            let step = (rate as i64).wrapping_sub(self.avg[i] as i64) >> 2;
            self.avg[i] = self.avg[i].wrapping_add(step as u64);
        }
        self.snap = *live;
    }

    /// `ipvsadm -Z` (`ip_vs_zero_stats`): the current snapshot becomes the
    /// zero point and the rates restart from 0. Packets counted since the last
    /// visit are not zeroed: they show up at the next visit (§19.1).
    pub fn zero(&mut self) {
        self.zero = self.snap;
        self.avg = [0; 5];
    }

    /// The counters a listing shows: snapshot minus zero point.
    pub fn counters(&self) -> Counters {
        self.snap.wrapping_sub(self.zero)
    }

    /// The rates a listing shows (`ip_vs_read_estimator`), rounded.
    pub fn rates(&self) -> Rates {
        let a = self.avg;
        Rates {
            cps: a[0].wrapping_add(0x1FF) >> 10,
            in_pps: a[1].wrapping_add(0x1FF) >> 10,
            out_pps: a[2].wrapping_add(0x1FF) >> 10,
            in_bps: a[3].wrapping_add(0xF) >> 5,
            out_bps: a[4].wrapping_add(0xF) >> 5,
        }
    }

    /// Counters and rates together.
    pub fn view(&self) -> StatsView {
        StatsView {
            counters: self.counters(),
            rates: self.rates(),
        }
    }

    /// The raw fixed-point average of counter `i` (0 conns … 4 outbytes), for tests.
    pub fn raw_avg(&self, i: usize) -> u64 {
        self.avg.get(i).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(n: u64) -> Counters {
        Counters {
            conns: n,
            ..Counters::default()
        }
    }

    #[test]
    fn constant_100_cps_follows_the_spec_sequence() {
        // §19.2: internal 25600 → 44800 → 59200 …; reported 25, 44, 58 … → 100.
        let mut e = Estimator::new(0);
        let mut reported = Vec::new();
        let mut internal = Vec::new();
        for k in 1..=40u64 {
            e.visit(&conns(200 * k));
            internal.push(e.raw_avg(0));
            reported.push(e.rates().cps);
        }
        assert_eq!(&internal[..3], &[25600, 44800, 59200]);
        assert_eq!(&reported[..3], &[25, 44, 58]);
        assert_eq!(reported[39], 100);
    }

    #[test]
    fn bytes_use_shift_4_and_round_with_0xf() {
        let mut e = Estimator::new(0);
        // 1000 B/s in, 3 B/s out for one period: sample = 2000 << 4 = 32000,
        // avg = 8000, reported (8000 + 15) >> 5 = 250.
        let live = Counters {
            in_bytes: 2000,
            out_bytes: 6,
            in_pkts: 3,
            ..Counters::default()
        };
        e.visit(&live);
        assert_eq!(e.raw_avg(3), 8000);
        assert_eq!(e.rates().in_bps, 250);
        // out: 6 << 4 = 96, avg 24, (24 + 15) >> 5 = 1.
        assert_eq!(e.rates().out_bps, 1);
        // in pkts: 3 << 9 = 1536, avg 384, (384 + 511) >> 10 = 0.
        assert_eq!(e.rates().in_pps, 0);
    }

    #[test]
    fn rates_decay_to_zero_without_traffic() {
        let mut e = Estimator::new(0);
        e.visit(&conns(1000));
        assert!(e.rates().cps > 0);
        for _ in 0..200 {
            e.visit(&conns(1000));
        }
        assert_eq!(e.raw_avg(0), 0);
        assert_eq!(e.rates(), Rates::default());
    }

    #[test]
    fn zero_keeps_unvisited_traffic_for_the_next_visit() {
        let mut e = Estimator::new(0);
        e.visit(&conns(60));
        // 22 more arrive after the visit, then -Z.
        e.zero();
        assert_eq!(e.counters(), Counters::default());
        assert_eq!(e.rates(), Rates::default());
        e.visit(&conns(82));
        assert_eq!(e.counters().conns, 22);
    }

    #[test]
    fn wrapping_never_panics() {
        let mut e = Estimator::new(0);
        e.visit(&Counters {
            conns: u64::MAX,
            in_pkts: u64::MAX,
            out_pkts: 1,
            in_bytes: u64::MAX,
            out_bytes: 0,
        });
        e.visit(&Counters::default());
        let _ = e.rates();
        let _ = e.counters();
    }
}
