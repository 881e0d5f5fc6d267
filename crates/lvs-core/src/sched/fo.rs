//! fo — weighted fail over (schedulers.md §7): among destinations with
//! OVERLOAD clear, the one with the highest weight. The running maximum starts
//! at 0 and only a strictly greater weight replaces it, so weight-0
//! destinations are never chosen and equal weights keep the earliest in list
//! order. Connection counts are ignored.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Stateless.
#[derive(Debug, Default)]
pub struct Fo;

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut best = None;
        let mut hw = 0i32;
        for i in 0..dests.len() {
            let d = dests.get(i);
            if !d.overloaded() && d.weight > hw {
                best = Some(i);
                hw = d.weight;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    #[test]
    fn highest_weight_wins_and_counts_are_ignored() {
        let mut h = Harness::new("fo");
        h.add(1, 10);
        h.add(2, 20);
        h.add(3, 5); // list 3 2 1
        h.set_conns(2, 1000, 1000);
        assert_eq!(h.picks(3), [2, 2, 2]);
    }

    #[test]
    fn equal_weights_keep_the_earliest() {
        let mut h = Harness::new("fo");
        h.add(1, 7);
        h.add(2, 7);
        h.add(3, 3); // list 3 2 1
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn fails_over_on_overload_and_weight_zero() {
        let mut h = Harness::new("fo");
        h.add(1, 1);
        h.add(2, 2);
        h.add(3, 3); // list 3 2 1
        assert_eq!(h.pick(), 3);
        h.set_overload(3, true);
        assert_eq!(h.pick(), 2);
        h.set_weight(2, 0);
        assert_eq!(h.pick(), 1);
        h.set_overload(3, false);
        assert_eq!(h.pick(), 3);
    }

    // §7 (kernel-verified): all weights 0 → no destination.
    #[test]
    fn none_when_all_weights_zero_overloaded_or_empty() {
        let mut h = Harness::new("fo");
        assert_eq!(h.pick(), 0);
        h.add(1, 0);
        h.add(2, 0);
        assert_eq!(h.pick(), 0);
        h.set_weight(1, 1);
        h.set_overload(1, true);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn max_weight() {
        let mut h = Harness::new("fo");
        h.add(1, i32::MAX);
        h.add(2, i32::MAX - 1);
        h.add(3, i32::MAX); // list 3 2 1
        assert_eq!(h.pick(), 3);
    }
}
