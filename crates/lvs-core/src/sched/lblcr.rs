//! lblcr — locality-based least connection with replication
//! (schedulers.md §10).
//!
//! Like lblc, but each destination address maps to a *set* of destinations:
//! the least-loaded member serves while it is not lblc-overloaded; else wlc
//! picks a destination that joins the set. A set unchanged for longer than
//! `lblcr_expiration` loses its most-loaded member (one per period). Table,
//! hash, timer and GC are lblc's (`super::lblc::Table`).

use super::lblc::{kernel_overhead, lblc_overloaded, secs_ms, wlc_pick, GcEntry, Table};
use super::{DestList, PacketInfo, SchedCtx, Scheduler};
use crate::service::Dest;
use std::net::IpAddr;

/// A set member. The kernel holds the destination object itself, so a
/// deleted destination (in the trash) keeps its weight and counters; here a
/// member is a uid plus what was last seen of it: `weight`/`overhead` are
/// refreshed from the list at every use of the set (and `weight` on every
/// edit), and only a member no longer in the list (not AVAILABLE) is judged
/// by the remembered values — which only `set_max` ever reads.
#[derive(Debug)]
struct Member {
    uid: u64,
    /// List position during the current call when AVAILABLE.
    pos: Option<usize>,
    weight: i32,
    overhead: i32,
    overloaded: bool,
}

impl Member {
    fn of(d: &Dest, pos: usize) -> Self {
        Member {
            uid: d.uid,
            pos: Some(pos),
            weight: d.weight,
            overhead: kernel_overhead(d),
            overloaded: d.overloaded(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    lastuse: u64,
    /// `set.lastmod`.
    lastmod: u64,
    /// Set order: front first (new members are inserted at the front).
    members: Vec<Member>,
}

impl GcEntry for Entry {
    fn addr(&self) -> &IpAddr {
        &self.addr
    }
    fn lastuse(&self) -> u64 {
        self.lastuse
    }
}

/// Re-reads every member from the list.
fn refresh(members: &mut [Member], dests: DestList<'_>) {
    for m in members.iter_mut() {
        m.pos = dests
            .position_hinted(m.uid, m.pos.unwrap_or(usize::MAX))
            .filter(|&i| dests.get(i).available());
        if let Some(i) = m.pos {
            let d = dests.get(i);
            m.weight = d.weight;
            m.overhead = kernel_overhead(d);
            m.overloaded = d.overloaded();
        }
    }
}

/// `ip_vs_dest_set_min()`: list position of the least-loaded AVAILABLE,
/// non-OVERLOAD member with `weight > 0` (first in set order on ties).
fn set_min(members: &[Member]) -> Option<usize> {
    let mut least: Option<&Member> = None;
    for m in members {
        if m.pos.is_none() || m.overloaded {
            continue;
        }
        match least {
            None => {
                if m.weight > 0 {
                    least = Some(m);
                }
            }
            Some(l) => {
                if i64::from(l.overhead) * i64::from(m.weight)
                    > i64::from(m.overhead) * i64::from(l.weight)
                {
                    least = Some(m);
                }
            }
        }
    }
    least.and_then(|m| m.pos)
}

/// `ip_vs_dest_set_max()`: index in the set of the most-loaded member with
/// `weight > 0` (OVERLOAD and AVAILABLE ignored; first in set order on ties).
fn set_max(members: &[Member]) -> Option<usize> {
    let first = members.iter().position(|m| m.weight > 0)?;
    let mut most = first;
    for (k, m) in members.iter().enumerate().skip(first + 1) {
        let b = &members[most];
        if i64::from(b.overhead) * i64::from(m.weight) < i64::from(m.overhead) * i64::from(b.weight)
            && m.weight > 0
        {
            most = k;
        }
    }
    Some(most)
}

/// Per-service lblcr state: the table and its timer.
#[derive(Debug, Default)]
pub struct Lblcr {
    tab: Table<Entry>,
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn init(&mut self, _dests: DestList<'_>, _flags: u32) {
        self.tab.reset();
    }

    /// Not a kernel hook for lblcr: only keeps the remembered weight of set
    /// members current, for members that get deleted later.
    fn upd_dest(&mut self, dests: DestList<'_>, index: usize) {
        if index >= dests.len() {
            return;
        }
        let d = dests.get(index);
        for en in self.tab.iter_mut() {
            for m in en.members.iter_mut().filter(|m| m.uid == d.uid) {
                m.weight = d.weight;
                m.overhead = kernel_overhead(d);
                m.overloaded = d.overloaded();
            }
        }
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        pkt: &PacketInfo,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let now = ctx.now_ms;
        let expiration = secs_ms(ctx.settings.lblcr_expiration_s);
        self.tab.advance(now, expiration);

        if let Some(en) = self.tab.find_mut(&pkt.daddr) {
            en.lastuse = now;
            refresh(&mut en.members, dests);
            // 1. The least-loaded member (computed before any erase).
            let d = set_min(&en.members);
            // 2. Shrink: more than one member and unchanged for strictly
            //    longer than the expiration → drop the most loaded.
            if en.members.len() > 1 && now > en.lastmod.saturating_add(expiration) {
                if let Some(k) = set_max(&en.members) {
                    en.members.remove(k);
                    en.lastmod = now;
                }
            }
            // 3. d is used even if it was just erased.
            if let Some(i) = d {
                if !lblc_overloaded(dests.get(i), dests) {
                    return Some(i);
                }
            }
            // 4. Replication: wlc, and the pick joins the set.
            let n = wlc_pick(dests)?;
            let nd = dests.get(n);
            if !en.members.iter().any(|m| m.uid == nd.uid) {
                en.members.insert(0, Member::of(nd, n));
                en.lastmod = now;
            }
            return Some(n);
        }

        let n = wlc_pick(dests)?;
        self.tab.insert(Entry {
            addr: pkt.daddr,
            lastuse: now,
            lastmod: now,
            members: vec![Member::of(dests.get(n), n)],
        });
        Some(n)
    }

    fn tick(&mut self, _dests: DestList<'_>, ctx: &mut SchedCtx<'_>) {
        self.tab
            .advance(ctx.now_ms, secs_ms(ctx.settings.lblcr_expiration_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{pkt, Harness};
    use std::net::Ipv4Addr;

    fn to(last: u8) -> PacketInfo {
        PacketInfo {
            daddr: Ipv4Addr::new(198, 18, 0, last).into(),
            ..pkt()
        }
    }

    fn m(uid: u64, weight: i32, overhead: i32, avail: bool) -> Member {
        Member {
            uid,
            pos: avail.then_some(uid as usize),
            weight,
            overhead,
            overloaded: false,
        }
    }

    #[test]
    fn empty_service_and_default_instance() {
        let mut h = Harness::new("lblcr");
        assert_eq!(h.pick(), 0);
        h.tick();
        let mut l = Lblcr::default();
        assert_eq!(l.name(), "lblcr");
        assert!(l.tab.find_mut(&pkt().daddr).is_none());
    }

    #[test]
    fn sticky_per_destination_address() {
        let mut h = Harness::new("lblcr");
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick_for(&to(10)), 2);
        h.set_conns(2, 0, 50);
        assert_eq!(h.pick_for(&to(11)), 1);
        assert_eq!(h.pick_for(&to(10)), 2); // set {2}
        assert_eq!(h.pick_for(&to(11)), 1); // set {1}
    }

    #[test]
    fn set_grows_when_overloaded_and_min_is_taken_from_the_set() {
        let mut h = Harness::new("lblcr");
        h.add(1, 2);
        h.add(2, 2);
        h.add(3, 2); // list 3 2 1
        assert_eq!(h.pick(), 3); // set {3}
                                 // 3 lblc-overloaded (3 > 2, witness 1: 0 < 2) → wlc over the service.
        h.set_conns(3, 3, 0);
        h.set_conns(2, 1, 0);
        assert_eq!(h.pick(), 1); // set {1, 3}
                                 // Least loaded member of {1, 3}: 1 (2 is not a member even when idle).
        h.set_conns(1, 1, 0);
        h.set_conns(2, 0, 0);
        assert_eq!(h.pick(), 1);
        // Equal loads in the set: set order (front = newest = 1) wins.
        h.set_conns(3, 1, 0);
        assert_eq!(h.pick(), 1);
        // 3 lighter → 3.
        h.set_conns(3, 0, 0);
        assert_eq!(h.pick(), 3);
        // Both members over their weight while 2 is idle → 2 joins: {2, 1, 3}.
        h.set_conns(3, 3, 0);
        h.set_conns(1, 3, 0);
        assert_eq!(h.pick(), 2);
        h.set_conns(3, 0, 1);
        h.set_conns(1, 0, 1);
        h.set_conns(2, 0, 1);
        assert_eq!(h.pick(), 2); // ties: set front
    }

    #[test]
    fn overload_flag_skips_members_in_set_min() {
        let mut h = Harness::new("lblcr");
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2); // {2}
        h.set_overload(2, true);
        // set_min finds nothing → wlc (skips 2) → 1 joins: {1, 2}.
        assert_eq!(h.pick(), 1);
        h.set_overload(2, false);
        h.set_conns(1, 0, 5);
        assert_eq!(h.pick(), 2); // both members usable again
    }

    #[test]
    fn deleted_member_is_skipped() {
        let mut h = Harness::new("lblcr");
        h.add(1, 1);
        h.add(2, 1);
        h.add(3, 1); // list 3 2 1
        assert_eq!(h.pick(), 3); // {3}
        h.set_conns(2, 0, 5);
        h.delete(3);
        assert_eq!(h.pick(), 1); // wlc → {1, 3}
        h.set_conns(1, 0, 9);
        assert_eq!(h.pick(), 1); // 3 not AVAILABLE, 1 the only usable member
        h.delete(1);
        assert_eq!(h.pick(), 2); // {2, 1, 3}
        h.delete(2);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn weight_zero_member_falls_back() {
        let mut h = Harness::new("lblcr");
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_weight(2, 0);
        assert_eq!(h.pick(), 1); // {1, 2}
        h.set_weight(2, 1);
        h.set_conns(1, 0, 1);
        assert_eq!(h.pick(), 2); // 2 usable again, lighter
        h.set_weight(1, 0);
        h.set_weight(2, 0);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn shrink_drops_the_most_loaded_strictly_after_expiration() {
        let mut h = Harness::new("lblcr");
        h.settings.lblcr_expiration_s = 100;
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2); // {2}, lastmod 0
        h.set_conns(2, 2, 0); // 2 > 1; witness 1
        h.now_ms = 10_000;
        assert_eq!(h.pick(), 1); // {1, 2}, lastmod 10 000
        h.set_conns(2, 0, 9);
        h.set_conns(1, 0, 3);
        h.now_ms = 110_000; // == lastmod + 100 s: not yet
        assert_eq!(h.pick(), 1);
        h.now_ms = 110_001;
        // min = 1 (3 < 9); max = 2 (9) is erased, lastmod = 110 001.
        assert_eq!(h.pick(), 1);
        // 2 is gone: even when idle it is not chosen for this address.
        h.set_conns(2, 0, 0);
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn shrink_may_erase_the_member_it_uses() {
        let mut h = Harness::new("lblcr");
        h.settings.lblcr_expiration_s = 1;
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2); // {2}
        h.set_conns(2, 2, 0);
        assert_eq!(h.pick(), 1); // {1, 2}
        h.set_conns(2, 0, 0);
        // Equal loads: min = front = 1, max = front = 1 → 1 erased but used.
        h.now_ms = 1_001;
        assert_eq!(h.pick(), 1); // {2}
        h.set_conns(2, 0, 5);
        assert_eq!(h.pick(), 2); // only member left
                                 // A single-member set never shrinks.
        h.now_ms = 1_000_000;
        assert_eq!(h.pick(), 2);
    }

    #[test]
    fn set_max_rules() {
        // First weight>0 member starts; strict "<" keeps the earlier one on
        // ties; a weight-0 member never wins; unavailable members count.
        assert_eq!(set_max(&[]), None);
        assert_eq!(set_max(&[m(1, 0, 900, true)]), None);
        assert_eq!(set_max(&[m(1, 1, 5, true), m(2, 1, 5, true)]), Some(0));
        assert_eq!(set_max(&[m(1, 0, 99, true), m(2, 1, 5, true)]), Some(1));
        assert_eq!(set_max(&[m(1, 1, 5, true), m(2, 0, 99, true)]), Some(0));
        assert_eq!(set_max(&[m(1, 2, 10, true), m(2, 1, 6, false)]), Some(1));
        assert_eq!(set_max(&[m(1, 2, 10, true), m(2, 1, 5, true)]), Some(0));
    }

    #[test]
    fn set_min_rules() {
        assert_eq!(set_min(&[]), None);
        // Unavailable members can neither start nor win.
        assert_eq!(set_min(&[m(1, 1, 0, false), m(2, 1, 9, true)]), Some(2));
        assert_eq!(set_min(&[m(2, 1, 9, true), m(1, 1, 0, false)]), Some(2));
        // Weight 0 cannot start; ties keep the earlier member.
        assert_eq!(set_min(&[m(1, 0, 0, true), m(2, 1, 9, true)]), Some(2));
        assert_eq!(set_min(&[m(1, 1, 4, true), m(2, 1, 4, true)]), Some(1));
        assert_eq!(set_min(&[m(1, 1, 4, true), m(2, 2, 4, true)]), Some(2));
    }

    #[test]
    fn expiry_by_the_full_pass() {
        let mut h = Harness::new("lblcr");
        h.settings.lblcr_expiration_s = 60;
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick_for(&to(10)), 2);
        assert_eq!(h.pick_for(&to(11)), 2);
        h.set_conns(2, 0, 10);
        h.now_ms = 1_799_999;
        h.tick();
        assert_eq!(h.pick_for(&to(10)), 2);
        h.now_ms = 1_800_000;
        h.tick(); // 30th timer: full pass
        assert_eq!(h.pick_for(&to(11)), 1); // new entry
        assert_eq!(h.pick_for(&to(10)), 2);
    }
}
