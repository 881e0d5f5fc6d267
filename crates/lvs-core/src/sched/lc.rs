//! lc — least connection (schedulers.md §3): minimum overhead among
//! destinations that are not overloaded and have a non-zero weight.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Stateless.
#[derive(Debug, Default)]
pub struct Lc;

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if d.overloaded() || d.weight == 0 {
                continue;
            }
            let oh = d.overhead();
            if best.is_none_or(|(_, b)| oh < b) {
                best = Some((i, oh));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // schedulers.md §3 example: A(active 1) = 256, B(inactive 200) = 200 → B.
    #[test]
    fn spec_example() {
        let mut h = Harness::new("lc");
        h.add(2, 1);
        h.add(1, 1);
        h.set_conns(1, 1, 0);
        h.set_conns(2, 0, 200);
        assert_eq!(h.pick(), 2);
    }
}
