//! sed — placeholder until implemented (schedulers.md). Schedules nothing.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Not implemented yet.
#[derive(Debug, Default)]
pub struct Sed;

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(
        &mut self,
        _dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}
