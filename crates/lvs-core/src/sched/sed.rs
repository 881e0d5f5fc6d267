//! sed — shortest expected delay (schedulers.md §5): wlc with the load
//! `activeconns + 1` (inactive connections ignored). The first destination
//! with OVERLOAD clear and `weight > 0` is the candidate; every later one with
//! OVERLOAD clear replaces it on a strict signed 64-bit cross-multiplied
//! comparison (§0.5), so ties keep list order.
//!
//! Widths follow `ip_vs_sed.c`: the load is a C `int`
//! (`atomic_read(&activeconns) + 1`, wrapping), widened to s64 only for the
//! products.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Stateless.
#[derive(Debug, Default)]
pub struct Sed;

/// `ip_vs_sed_dest_overhead`: `activeconns + 1` as a 32-bit int.
#[inline]
pub(super) fn sed_overhead(d: &Dest) -> i64 {
    i64::from((d.active_conns as i32).wrapping_add(1))
}

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        super::wlc::least_loaded(dests, sed_overhead)
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // schedulers.md §5 example: A(w=1, active 0 → 1), B(w=3, active 1 → 2):
    // 1*3=3 > 2*1=2 → B.
    #[test]
    fn spec_example() {
        let mut h = Harness::new("sed");
        h.add(2, 3); // B
        h.add(1, 1); // A (front)
        h.set_conns(2, 1, 0);
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn inactive_connections_are_ignored() {
        let mut h = Harness::new("sed");
        h.add(2, 1);
        h.add(1, 1); // list 1 2
        h.set_conns(1, 0, 1000);
        h.set_conns(2, 0, 0);
        // Equal loads (1/1 each) → the first in list order, despite 1000 inactive.
        assert_eq!(h.pick(), 1);
        h.set_conns(1, 1, 0);
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn ties_keep_list_order() {
        let mut h = Harness::new("sed");
        h.add(3, 2);
        h.add(2, 1);
        h.add(1, 2); // list 1 2 3
                     // loads: 1: (1+1)/2 = 1, 2: (0+1)/1 = 1, 3: (1+1)/2 = 1 → all tie → 1.
        h.set_conns(1, 1, 0);
        h.set_conns(3, 1, 0);
        assert_eq!(h.pick(), 1);
        // 1 gets heavier: 2 and 3 tie at 1 → 2 (earlier).
        h.set_conns(1, 2, 0);
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn weight_zero_and_overload() {
        let mut h = Harness::new("sed");
        h.add(1, 1);
        h.add(2, 0); // list 2 1: weight 0 at the front is never the candidate
        assert_eq!(h.pick(), 1);
        // A later weight-0 destination never wins (left side 0).
        let mut h = Harness::new("sed");
        h.add(2, 0);
        h.add(1, 1); // list 1 2
        h.set_conns(1, 100, 0);
        assert_eq!(h.pick(), 1);
        // Overloaded destinations are skipped as candidate and as challenger.
        let mut h = Harness::new("sed");
        h.add(3, 1);
        h.add(2, 5);
        h.add(1, 1); // list 1 2 3
        h.set_overload(1, true);
        h.set_overload(2, true);
        assert_eq!(h.pick(), 3);
        h.set_overload(3, true);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn none_on_empty_or_nothing_eligible() {
        let mut h = Harness::new("sed");
        assert_eq!(h.pick(), 0);
        h.add(1, 0);
        h.add(2, 0);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut h = Harness::new("sed");
        h.add(2, i32::MAX);
        h.add(1, i32::MAX); // list 1 2
        h.set_conns(1, i32::MAX as u32 - 1, u32::MAX); // load i32::MAX
        h.set_conns(2, 5, u32::MAX);
        assert_eq!(h.pick(), 2);
        // activeconns = 0xffffffff is -1 as the kernel's int: load 0 → wins.
        h.set_conns(1, u32::MAX, 0);
        assert_eq!(h.pick(), 1);
        // activeconns = 0x7fffffff: +1 wraps to i32::MIN → the smallest load.
        h.set_conns(1, 0, 0);
        h.set_conns(2, i32::MAX as u32, 0);
        assert_eq!(h.pick(), 2);
    }
}
