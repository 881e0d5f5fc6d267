//! ovf — overflow connection (schedulers.md §8). Eligible: OVERLOAD clear,
//! `weight != 0` and `activeconns <= weight` (note `<=`: a destination holding
//! `weight` active connections is still eligible and can reach `weight + 1`).
//! Among the eligible the highest weight wins; ties keep the earliest in list
//! order (strict `>`). Inactive connections are ignored.
//!
//! Widths follow `ip_vs_ovf.c`: `activeconns` and `weight` are compared as C
//! `int`s.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Stateless.
#[derive(Debug, Default)]
pub struct Ovf;

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for i in 0..dests.len() {
            let d = dests.get(i);
            let w = d.weight;
            if d.overloaded() || d.active_conns as i32 > w || w == 0 {
                continue;
            }
            match best {
                Some((_, hw)) if w <= hw => {}
                _ => best = Some((i, w)),
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // schedulers.md §8 example (kernel-verified): A(w=3, active 3), B(w=2,
    // active 0): A is still eligible (3 ≤ 3) → A; then A has 4 active → B; once B
    // also exceeds its weight → none.
    #[test]
    fn spec_example() {
        let mut h = Harness::new("ovf");
        h.add(2, 2); // B
        h.add(1, 3); // A (front)
        h.set_conns(1, 3, 0);
        assert_eq!(h.pick(), 1);
        h.set_conns(1, 4, 0);
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 2, 0);
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 3, 0);
        assert_eq!(h.pick(), 0);
    }

    // The kernel-verified run from a fresh service: A gets weight+1
    // connections, then B, then none.
    #[test]
    fn fills_weight_plus_one_each() {
        let mut h = Harness::new("ovf");
        h.add(2, 2); // B
        h.add(1, 3); // A
        let mut got = vec![];
        for _ in 0..8 {
            let o = h.pick();
            got.push(o);
            if o != 0 {
                let i = h.pos(o);
                let a = h.pool[h.ids[i]].active_conns;
                h.set_conns(o, a + 1, 0);
            }
        }
        assert_eq!(got, [1, 1, 1, 1, 2, 2, 2, 0]);
    }

    #[test]
    fn ties_inactive_weight_zero_overload() {
        let mut h = Harness::new("ovf");
        h.add(1, 5);
        h.add(2, 5);
        h.add(3, 0); // list 3 2 1; 3 has weight 0
        h.set_conns(2, 0, 10_000); // inactive ignored
        assert_eq!(h.pick(), 2); // tie 5/5 → earliest
        h.set_overload(2, true);
        assert_eq!(h.pick(), 1);
        h.set_overload(1, true);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn none_on_empty() {
        let mut h = Harness::new("ovf");
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut h = Harness::new("ovf");
        h.add(2, 1);
        h.add(1, i32::MAX);
        h.set_conns(1, i32::MAX as u32, u32::MAX); // = weight → eligible
        assert_eq!(h.pick(), 1);
        // 0x80000000 active is negative as the kernel's int → "≤ weight".
        h.set_conns(1, u32::MAX, 0);
        assert_eq!(h.pick(), 1);
    }
}
