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
    /// gcd of the positive weights (0: none) and largest weight, from
    /// which `di` and `mw` derive.
    g: i32,
    max: i32,
}

impl Default for Wrr {
    fn default() -> Self {
        Wrr {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
            g: 0,
            max: 0,
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
        let mut g = 0;
        let mut max = 0;
        for d in dests.iter() {
            if d.weight > 0 {
                g = if g == 0 { d.weight } else { gcd(g, d.weight) };
            }
            max = max.max(d.weight);
        }
        self.g = g;
        self.max = max;
        self.di = if g == 0 { 1 } else { g };
        self.mw = (max - (self.di - 1)).max(0);
    }

    /// The add/del/upd hook: restart the scan at the head and fit cw to the new weights.
    fn list_changed(&mut self, dests: DestList<'_>) {
        self.cl = None;
        self.recompute(dests);
        self.fit_cw();
    }

    /// `di` and `mw` from `g` and `max` (after an addition), then cw.
    fn derive(&mut self) {
        self.di = if self.g == 0 { 1 } else { self.g };
        self.mw = (self.max - (self.di - 1)).max(0);
        self.fit_cw();
    }

    fn fit_cw(&mut self) {
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

    fn add_dest(&mut self, dests: DestList<'_>, index: usize) {
        // Adding a weight can only lower the gcd and raise the maximum:
        // fold the new one in (O(1), so adding n servers is not O(n²))
        // with the same result as a rescan.
        let w = dests.get(index).weight;
        if w > 0 {
            self.g = if self.g == 0 { w } else { gcd(self.g, w) };
        }
        self.max = self.max.max(w);
        self.cl = None;
        self.derive();
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
        let mut floor: Option<i32> = None;
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
            // A pass at a level above every non-overloaded weight (and above
            // di, so not a last pass) finds nothing and changes nothing but
            // cw. The kernel walks such levels one pass at a time — with one
            // huge weight overloaded that is billions of passes per new
            // connection. Skipping straight to the first level that can
            // matter gives the same decisions.
            let f = *floor.get_or_insert_with(|| {
                let m = dests
                    .iter()
                    .filter(|d| !d.overloaded())
                    .map(|d| d.weight)
                    .max()
                    .unwrap_or(0);
                m.max(self.di)
            });
            if self.cw > f {
                let (cw, f, di) = (i64::from(self.cw), i64::from(f), i64::from(self.di));
                let k = (cw - f + di - 1) / di;
                self.cw = (cw - k * di) as i32;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod literal {
    //! The kernel's loop as the spec writes it, one pass per level: the
    //! reference the level skipping is checked against.
    use super::Wrr;
    use crate::sched::DestList;

    pub fn schedule(w: &mut Wrr, dests: DestList<'_>) -> Option<usize> {
        if w.mw == 0 {
            return None;
        }
        let n = dests.len();
        let last = w.cl;
        let mut pos = w.cl;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        loop {
            for i in pos.map_or(0, |p| p + 1)..n {
                let d = dests.get(i);
                if !d.overloaded() && d.weight >= w.cw {
                    w.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    w.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            w.cw -= w.di;
            if w.cw <= 0 {
                w.cw = w.mw;
                if last_pass || last.is_none() {
                    w.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = w.cw <= w.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{literal, Wrr};
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

    /// Random weights, overloads and edits: the level-skipping loop makes
    /// the same decisions as the literal one, step after step (a diverging
    /// cursor or cw would show in later decisions).
    #[test]
    fn level_skipping_matches_the_literal_kernel_loop() {
        use crate::rng::Rng;
        use crate::sched::{DestList, Scheduler};
        let mut rng = Rng::new(99);
        for round in 0..300 {
            let mut h = Harness::new("wrr");
            let mut reference = Wrr::default();
            reference.init(DestList::new(&h.ids, &h.pool), 0);
            let n = 1 + (rng.next_u32() % 5) as u8;
            for o in 1..=n {
                let w = match rng.next_u32() % 4 {
                    0 => 0,
                    1 => (rng.next_u32() % 4) as i32,
                    2 => (rng.next_u32() % 40) as i32,
                    _ => 1000 + (rng.next_u32() % 5000) as i32,
                };
                h.add(o, w);
                reference.add_dest(DestList::new(&h.ids, &h.pool), 0);
            }
            for step in 0..60 {
                if rng.next_u32().is_multiple_of(7) {
                    let o = 1 + (rng.next_u32() % u32::from(n)) as u8;
                    h.set_overload(o, rng.next_u32().is_multiple_of(2));
                }
                if rng.next_u32().is_multiple_of(13) {
                    let o = 1 + (rng.next_u32() % u32::from(n)) as u8;
                    h.set_weight(o, (rng.next_u32() % 9) as i32);
                    reference.upd_dest(DestList::new(&h.ids, &h.pool), h.pos(o));
                }
                let want = literal::schedule(&mut reference, DestList::new(&h.ids, &h.pool))
                    .map_or(0, |i| match h.pool[h.ids[i]].addr {
                        std::net::IpAddr::V4(a) => a.octets()[3],
                        std::net::IpAddr::V6(_) => 255,
                    });
                assert_eq!(h.pick(), want, "round {round} step {step}");
            }
        }
    }

    /// One huge weight overloaded next to a small one: a decision is a few
    /// passes, not two billion (the literal loop would take seconds here).
    #[test]
    fn a_huge_overloaded_weight_does_not_stall() {
        let mut h = service(&[(A, i32::MAX), (B, 1)]);
        h.set_overload(A, true);
        assert_eq!(h.picks(4), [B, B, B, B]);
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
