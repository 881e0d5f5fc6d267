//! twos — placeholder until implemented (schedulers.md). Schedules nothing.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Not implemented yet.
#[derive(Debug, Default)]
pub struct Twos;

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
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
