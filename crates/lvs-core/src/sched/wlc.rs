//! wlc — weighted least connection (schedulers.md §4): least
//! `overhead / weight` by strict cross-multiplication; ties keep list order.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Stateless.
#[derive(Debug, Default)]
pub struct Wlc;

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        least_loaded(dests, Dest::overhead)
    }
}

/// The selection wlc, sed and the fallback of lblc/lblcr share: the first
/// destination with OVERLOAD clear and `weight > 0` is the candidate; every
/// later one with OVERLOAD clear replaces it when
/// `load(least) * weight(d) > load(d) * weight(least)` (strict, s64), so
/// ties keep list order and a later weight-0 destination never wins.
#[inline]
pub(super) fn least_loaded(dests: DestList<'_>, load: impl Fn(&Dest) -> i64) -> Option<usize> {
    let first = (0..dests.len()).find(|&i| {
        let d = dests.get(i);
        !d.overloaded() && d.weight > 0
    })?;
    let mut least = first;
    let mut loh = load(dests.get(first));
    let mut lw = i64::from(dests.get(first).weight);
    for i in first + 1..dests.len() {
        let d = dests.get(i);
        if d.overloaded() {
            continue;
        }
        let doh = load(d);
        if loh * i64::from(d.weight) > doh * lw {
            least = i;
            loh = doh;
            lw = i64::from(d.weight);
        }
    }
    Some(least)
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // schedulers.md §4 example: A(w=1, active 2 → 512), B(w=3, active 5 → 1280) → B.
    #[test]
    fn spec_example() {
        let mut h = Harness::new("wlc");
        h.add(2, 3); // B
        h.add(1, 1); // A (front)
        h.set_conns(1, 2, 0);
        h.set_conns(2, 5, 0);
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn ties_keep_list_order_and_weight_zero_never_wins() {
        let mut h = Harness::new("wlc");
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2);
        h.add(3, 0); // list 3 2 1: weight 0 at the front
        h.set_conns(2, 1, 0);
        assert_eq!(h.pick(), 1);
    }
}
