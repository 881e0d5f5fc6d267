//! nq — never queue (schedulers.md §6). Eligible: OVERLOAD clear and
//! `weight != 0`. Walking the eligible destinations in list order, the first
//! with `activeconns == 0` is returned at once (inactive connections do not
//! count); otherwise the result is the sed-style minimum of
//! `(activeconns + 1) / weight` by strict signed 64-bit cross-multiplication,
//! the first eligible being the initial candidate (ties keep list order).
//!
//! Widths follow `ip_vs_nq.c`: the load is a C `int` (`activeconns + 1`,
//! wrapping) and the idle test reads `activeconns` as an `int`.

use super::sed::sed_overhead;
use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Stateless.
#[derive(Debug, Default)]
pub struct Nq;

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut least: Option<(usize, i64, i64)> = None; // (index, load, weight)
        for i in 0..dests.len() {
            let d = dests.get(i);
            if d.overloaded() || d.weight == 0 {
                continue;
            }
            if d.active_conns == 0 {
                return Some(i);
            }
            let doh = sed_overhead(d);
            let dw = i64::from(d.weight);
            match least {
                Some((_, loh, lw)) if loh * dw <= doh * lw => {}
                _ => least = Some((i, doh, dw)),
            }
        }
        least.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // §6: the first idle (activeconns == 0) eligible destination wins at once,
    // even against a better weighted ratio, and inactive ones do not count.
    #[test]
    fn first_idle_wins_immediately() {
        let mut h = Harness::new("nq");
        h.add(3, 1);
        h.add(2, 1);
        h.add(1, 100); // list 1 2 3
        h.set_conns(1, 1, 0); // (1+1)/100: the best ratio, but not idle
        h.set_conns(2, 0, 5000); // idle despite 5000 inactive
        assert_eq!(h.pick(), 2);
        // Two idle destinations: the first in list order.
        h.set_conns(1, 0, 0);
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn sed_minimum_when_nobody_is_idle() {
        let mut h = Harness::new("nq");
        h.add(2, 3); // B
        h.add(1, 1); // A (front)
                     // §5 numbers: A(w=1, active 1 → 2), B(w=3, active 1 → 2): 2*3 > 2*1 → B.
        h.set_conns(1, 1, 0);
        h.set_conns(2, 1, 0);
        assert_eq!(h.pick(), 2);
        // A(w=1, active 1 → 2) vs B(w=3, active 5 → 6): 2*3 = 6*1 → tie → A.
        h.set_conns(2, 5, 0);
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn weight_zero_and_overload_are_skipped() {
        let mut h = Harness::new("nq");
        h.add(3, 1);
        h.add(2, 1);
        h.add(1, 0); // list 1 2 3; 1 idle but weight 0
        h.set_conns(2, 3, 0);
        h.set_conns(3, 0, 0);
        h.set_overload(3, true); // idle but overloaded
        assert_eq!(h.pick(), 2);
        h.set_overload(2, true);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn none_on_empty_or_nothing_eligible() {
        let mut h = Harness::new("nq");
        assert_eq!(h.pick(), 0);
        h.add(1, 0);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut h = Harness::new("nq");
        h.add(2, i32::MAX);
        h.add(1, i32::MAX);
        h.set_conns(1, u32::MAX - 1, u32::MAX); // int -2 → load -1
        h.set_conns(2, 1, u32::MAX);
        assert_eq!(h.pick(), 1);
        h.set_conns(1, 7, 0);
        assert_eq!(h.pick(), 2);
    }
}
