//! rr — round robin (schedulers.md §1): a cursor walks the list; eligible is
//! "not overloaded and weight > 0"; the weight value is otherwise ignored.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// Round-robin state: the cursor is the last returned position (`None` = list head).
#[derive(Debug, Default)]
pub struct Rr {
    cursor: Option<usize>,
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn init(&mut self, _dests: DestList<'_>, _flags: u32) {
        self.cursor = None;
    }

    fn add_dest(&mut self, _dests: DestList<'_>, index: usize) {
        // The kernel has no add hook: its cursor is a list node, which an
        // insertion in front of it does not move. Our positions shift instead.
        if let Some(c) = self.cursor {
            if c >= index {
                self.cursor = Some(c + 1);
            }
        }
    }

    fn del_dest(&mut self, _dests: DestList<'_>, index: usize) {
        // A cursor on the deleted destination moves to its predecessor.
        self.cursor = match self.cursor {
            Some(c) if c == index => index.checked_sub(1),
            Some(c) if c > index => Some(c - 1),
            other => other,
        };
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let n = dests.len();
        let eligible = |i: usize| {
            let d = dests.get(i);
            !d.overloaded() && d.weight > 0
        };
        let start = self.cursor.map_or(0, |c| c + 1);
        let found = (start..n).find(|&i| eligible(i)).or_else(|| {
            self.cursor
                .and_then(|c| (0..=c.min(n.saturating_sub(1))).find(|&i| i < n && eligible(i)))
        });
        if found.is_some() {
            self.cursor = found;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::testutil::Harness;

    // schedulers.md §1 example: add A, B, C (list = C, B, A); picks C, B, A, ...;
    // B at weight 0: C, A, C, A.
    #[test]
    fn spec_example() {
        let mut h = Harness::new("rr");
        h.add(1, 1); // A
        h.add(2, 1); // B
        h.add(3, 1); // C
        assert_eq!(h.picks(6), [3, 2, 1, 3, 2, 1]);
        h.set_weight(2, 0);
        assert_eq!(h.picks(4), [3, 1, 3, 1]);
    }

    #[test]
    fn delete_of_cursor_continues_with_successor() {
        let mut h = Harness::new("rr");
        h.add(1, 1);
        h.add(2, 1);
        h.add(3, 1); // list 3 2 1
        assert_eq!(h.pick(), 3);
        assert_eq!(h.pick(), 2);
        h.delete(2); // cursor moves to 3; next is 1
        assert_eq!(h.picks(3), [1, 3, 1]);
    }

    #[test]
    fn new_destination_is_reached_after_the_wrap() {
        let mut h = Harness::new("rr");
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2);
        h.add(3, 1); // list 3 2 1, cursor still on 2
        assert_eq!(h.picks(4), [1, 3, 2, 1]);
    }

    #[test]
    fn none_when_nothing_eligible() {
        let mut h = Harness::new("rr");
        assert_eq!(h.pick(), 0);
        h.add(1, 0);
        assert_eq!(h.pick(), 0);
        h.add(2, 1);
        h.set_overload(2, true);
        assert_eq!(h.pick(), 0);
        h.set_overload(2, false);
        assert_eq!(h.picks(2), [2, 2]);
    }
}
