//! dh — destination hashing (schedulers.md §11, `ip_vs_dh.c`).
//!
//! A 256-bucket table where bucket i holds the (i mod N)-th destination in
//! list order (all N destinations, whatever their weight). It is rebuilt at
//! init and by the add and del hooks only: **the kernel's dh has no upd
//! hook**, so edits (weight changes included) never touch it (§0.6). The
//! bucket is `hash_32(fold(daddr), 8)`; its destination is returned unless
//! the bucket is empty, or the destination lacks AVAILABLE, has
//! `weight <= 0`, or is OVERLOADed — then none. There is no fallback.

use super::sh::{fold, hash_32, Bucket, Table, TAB_BITS, TAB_SIZE};
use super::{DestList, PacketInfo, SchedCtx, Scheduler};

/// dh state: the bucket table (destination uids).
#[derive(Debug, Default)]
pub struct Dh {
    table: Table,
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn init(&mut self, dests: DestList<'_>, _flags: u32) {
        self.table.fill_round_robin(dests);
    }

    fn add_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.table.fill_round_robin(dests);
    }

    fn del_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.table.fill_round_robin(dests);
    }

    // No upd_dest: the kernel's dh does not register one (an edit never moves
    // a destination, so the stored positions stay right).

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let b = hash_32(fold(&pkt.daddr), TAB_BITS) as usize % TAB_SIZE;
        match self.table.bucket(dests, b) {
            Bucket::At(p) => {
                let d = dests.get(p);
                (d.available() && d.weight > 0 && !d.overloaded()).then_some(p)
            }
            // A destination no longer linked would fail the AVAILABLE test.
            Bucket::Empty | Bucket::Gone => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{pkt, Harness};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn to(daddr: IpAddr, saddr: IpAddr) -> PacketInfo {
        PacketInfo {
            daddr,
            saddr,
            ..pkt()
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    /// A harness with destinations X0..X(n-1) in list order, octets 1..=n.
    fn list(n: u8) -> Harness {
        let mut h = Harness::new("dh");
        for o in (1..=n).rev() {
            h.add(o, 1);
        }
        h
    }

    // §11: 3 destinations; daddr 10.0.0.100 → hash_32 248 → 248 mod 3 = 2 → X2.
    #[test]
    fn spec_example() {
        assert_eq!(hash_32(0x0A00_0064, 8), 248);
        let mut h = list(3);
        assert_eq!(h.pick_for(&to(v4(10, 0, 0, 100), v4(1, 2, 3, 4))), 3);
    }

    // §11 kernel-verified: daddr 198.18.100.1 → bucket 17; 3 destinations →
    // X2 for every client; 4 → X1.
    #[test]
    fn kernel_verified() {
        assert_eq!(hash_32(0xC612_6401, 8), 17);
        let vip = v4(198, 18, 100, 1);
        let mut h = list(3);
        for c in 0..=255 {
            assert_eq!(h.pick_for(&to(vip, v4(10, 9, c, 255 - c))), 3);
        }
        let mut h = list(4);
        for c in 0..=255 {
            assert_eq!(h.pick_for(&to(vip, v4(10, 9, c, 1))), 2);
        }
    }

    // Buckets are i mod N whatever the weights: weight 100 gets no more.
    #[test]
    fn weights_do_not_shape_the_table() {
        let mut h = Harness::new("dh");
        h.add(2, 1);
        h.add(1, 100); // list 1 2
        for i in 0..=255u8 {
            let d = v4(10, 0, i, 7);
            let b = hash_32(fold(&d), 8);
            assert_eq!(h.pick_for(&to(d, v4(1, 1, 1, 1))), (b % 2 + 1) as u8);
        }
    }

    // §11: weight 0 (edit, no rebuild) or OVERLOAD → none, no fallback; the
    // destination gets its buckets back as soon as it is eligible again.
    #[test]
    fn weight_zero_and_overload_give_none() {
        let vip = to(v4(198, 18, 100, 1), v4(10, 0, 0, 1));
        let mut h = list(3);
        h.set_weight(3, 0);
        assert_eq!(h.pick_for(&vip), 0);
        h.set_weight(3, 5);
        assert_eq!(h.pick_for(&vip), 3);
        h.set_overload(3, true);
        assert_eq!(h.pick_for(&vip), 0);
        h.set_overload(3, false);
        assert_eq!(h.pick_for(&vip), 3);
        // Other buckets are unaffected by X2's state.
        let other = to(v4(10, 0, 0, 100), v4(10, 0, 0, 1)); // 248 mod 3 = 2 too
        h.set_weight(2, 0);
        assert_eq!(h.pick_for(&other), 3);
        // Added with weight 0: owns its buckets, serves nothing.
        let mut h = Harness::new("dh");
        h.add(1, 0);
        assert_eq!(h.pick_for(&vip), 0);
    }

    // Deletion and re-adding rebuild the table from the new list.
    #[test]
    fn delete_and_readd() {
        let vip = to(v4(198, 18, 100, 1), v4(10, 0, 0, 1)); // bucket 17
        let mut h = list(4); // 1 2 3 4 → 17 mod 4 = 1 → 2
        assert_eq!(h.pick_for(&vip), 2);
        h.delete(2); // 1 3 4 → 17 mod 3 = 2 → 4
        assert_eq!(h.pick_for(&vip), 4);
        h.add(2, 1); // 2 1 3 4 → 1 → 1
        assert_eq!(h.pick_for(&vip), 1);
        h.delete(1); // 2 3 4 → 4
        h.delete(3); // 2 4 → 17 mod 2 = 1 → 4
        assert_eq!(h.pick_for(&vip), 4);
        h.delete(4);
        h.delete(2);
        assert_eq!(h.pick_for(&vip), 0); // empty list, empty buckets
    }

    #[test]
    fn ipv6_destination() {
        let d: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        let b = hash_32(0x2001_0db8 ^ 0x0001_0002, 8);
        let mut h = list(5);
        let s: Ipv6Addr = "2001:db8::99".parse().unwrap();
        assert_eq!(h.pick_for(&to(d.into(), s.into())), (b % 5 + 1) as u8);
    }

    #[test]
    fn empty_and_uninitialised() {
        let mut h = Harness::new("dh");
        assert_eq!(h.pick(), 0);
        let mut s = Dh::default();
        let mut rng = crate::rng::Rng::new(1);
        let settings = crate::sched::SchedSettings::default();
        let mut ctx = SchedCtx {
            now_ms: 0,
            rng: &mut rng,
            settings: &settings,
        };
        assert_eq!(
            s.schedule(DestList::new(&h.ids, &h.pool), &pkt(), &mut ctx),
            None
        );
    }
}
