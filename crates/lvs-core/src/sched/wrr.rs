//! wrr — weighted round robin (schedulers.md §2), including the kernel's cycle
//! state across weight changes and its "fresh service starts at cw = 1" quirk.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// wrr state: cursor (`None` = list head), current weight, max weight, gcd.
#[derive(Debug)]
pub struct Wrr {
    cl: Option<usize>,
    cw: i32,
    mw: i32,
    di: i32,
}

impl Default for Wrr {
    fn default() -> Self {
        Wrr {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }
}

fn gcd(mut a: i32, mut b: i32) -> i32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Wrr {
    /// Recomputes `di` (gcd of positive weights, 1 if none) and `mw`.
    fn recompute(&mut self, dests: DestList<'_>) {
        let mut di = 0;
        let mut max = 0;
        for d in dests.iter() {
            if d.weight > 0 {
                di = if di == 0 { d.weight } else { gcd(di, d.weight) };
            }
            max = max.max(d.weight);
        }
        self.di = if di == 0 { 1 } else { di };
        self.mw = max - (self.di - 1);
        if self.mw < 0 {
            self.mw = 0;
        }
    }

    /// The add/del/upd hook: restart the scan at the head and fit cw to the new weights.
    fn list_changed(&mut self, dests: DestList<'_>) {
        self.cl = None;
        self.recompute(dests);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn init(&mut self, dests: DestList<'_>, _flags: u32) {
        self.recompute(dests);
        self.cw = self.mw;
        self.cl = None;
    }

    fn add_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.list_changed(dests);
    }

    fn del_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.list_changed(dests);
    }

    fn upd_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.list_changed(dests);
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        let n = dests.len();
        let last = self.cl;
        let mut pos = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let start = pos.map_or(0, |p| p + 1);
            for i in start..n {
                let d = dests.get(i);
                if !d.overloaded() && d.weight >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    // Every destination is overloaded: give up where we stopped.
                    self.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    /// Builds a service whose list order (front first) is `weights` by adding
    /// them in reverse, as `ipvsadm -a` would have to.
    fn service(weights: &[(u8, i32)]) -> Harness {
        let mut h = Harness::new("wrr");
        for &(o, w) in weights.iter().rev() {
            h.add(o, w);
        }
        h
    }

    const A: u8 = 1;
    const B: u8 = 2;
    const C: u8 = 3;

    // schedulers.md §2 worked examples, "first picks of a fresh service" column.
    #[test]
    fn worked_examples_fresh_service() {
        type Case<'a> = (&'a [(u8, i32)], &'a [u8]);
        let cases: &[Case] = &[
            (
                &[(A, 4), (B, 3), (C, 2)],
                &[A, B, C, A, A, B, A, B, C, A, B, C, A, A, B],
            ),
            (&[(A, 4), (B, 2)], &[A, B, A, A, B, A]),
            (
                &[(A, 6), (B, 4), (C, 2)],
                &[A, B, C, A, A, B, A, B, C, A, A, B],
            ),
            (&[(A, 5), (B, 1), (C, 1)], &[A, B, C, A, A, A, A, A, B, C]),
            (&[(A, 1), (B, 1), (C, 1)], &[A, B, C, A, B, C]),
        ];
        for (weights, want) in cases {
            let mut h = service(weights);
            assert_eq!(h.picks(want.len()), *want, "weights {weights:?}");
        }
    }

    // Adding A(4), B(3), C(2) in that order gives list order C, B, A and the
    // kernel sends C, B, A, A, B, A, C, B, A and repeats (kernel-verified).
    #[test]
    fn front_insertion_order_kernel_verified() {
        let mut h = Harness::new("wrr");
        h.add(A, 4);
        h.add(B, 3);
        h.add(C, 2);
        let period = [C, B, A, A, B, A, C, B, A];
        assert_eq!(h.picks(9), period);
        assert_eq!(h.picks(9), period);
    }

    // Overloaded B (weights 4,3,2): A B C A A A C A C, then A A A C A C.
    #[test]
    fn overloaded_destination_is_skipped() {
        let mut h = service(&[(A, 4), (B, 3), (C, 2)]);
        assert_eq!(h.picks(2), [A, B]);
        h.set_overload(B, true); // its first connection overloaded it (-x 1)
        assert_eq!(h.picks(7), [C, A, A, A, C, A, C]);
        assert_eq!(h.picks(6), [A, A, A, C, A, C]);
    }

    // Mid-cycle change: 4,3,2 after the fresh picks A B C A A B A (cw now 2);
    // set C to 3 → next A B C A B C, then the normal 4,3,3 cycle (A A B C ...).
    #[test]
    fn mid_cycle_weight_change_kernel_verified() {
        let mut h = service(&[(A, 4), (B, 3), (C, 2)]);
        assert_eq!(h.picks(7), [A, B, C, A, A, B, A]);
        h.set_weight(C, 3);
        assert_eq!(h.picks(6), [A, B, C, A, B, C]);
        assert_eq!(h.picks(4), [A, A, B, C]);
    }

    #[test]
    fn all_zero_or_empty_gives_none() {
        let mut h = Harness::new("wrr");
        assert_eq!(h.pick(), 0);
        h.add(A, 0);
        assert_eq!(h.pick(), 0);
        h.add(B, 2);
        assert_eq!(h.picks(3), [B, B, B]);
    }

    #[test]
    fn all_overloaded_gives_none_and_recovers() {
        let mut h = service(&[(A, 2), (B, 1)]);
        h.set_overload(A, true);
        h.set_overload(B, true);
        assert_eq!(h.pick(), 0);
        assert_eq!(h.pick(), 0);
        h.set_overload(B, false);
        assert_eq!(h.pick(), B);
    }
}
