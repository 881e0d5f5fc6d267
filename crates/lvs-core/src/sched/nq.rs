//! nq — placeholder until implemented (schedulers.md). Schedules nothing.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Not implemented yet.
#[derive(Debug, Default)]
pub struct Nq;

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
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
