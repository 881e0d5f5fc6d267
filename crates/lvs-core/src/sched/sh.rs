//! sh — source hashing (schedulers.md §12, `ip_vs_sh.c`).
//!
//! A 256-bucket table is tiled from the destination list: walking the list
//! cyclically, each destination fills `max(weight, 1)` consecutive buckets
//! (weights A=2, B=1, C=0 → `A A B C A A B C …`). It is rebuilt at init and by
//! the add, del and upd hooks. The key is the client (source) address, plus
//! the client port for TCP/UDP/SCTP with `sh-port`:
//! `h(offset) = (offset + hash_32((port + fold(saddr)) mod 2^32, 8)) mod 256`.
//! A bucket's destination is *unavailable* when `weight <= 0` or OVERLOAD is
//! set (AVAILABLE is not tested). Without `sh-fallback` an unavailable bucket
//! gives none; with it the kernel probes `h((k + ih) mod 256)` for
//! k = 0..255, i.e. buckets `2*ih, 2*ih + 1, …` (not `ih + 1`!), stopping at
//! an empty bucket.
//!
//! This module also holds the helpers that dh and srcdst share:
//! [`hash_32`], [`fold`] (§0.7) and the bucket [`Table`] (which stores
//! destination uids, since our list positions shift where the kernel's
//! pointers do not).

use super::{DestList, PacketInfo, SchedCtx, Scheduler, SCHED_F_FALLBACK, SCHED_F_PORT};
use crate::service::Dest;
use std::net::IpAddr;

/// Table size of dh, sh and srcdst (`CONFIG_IP_VS_{SH,DH}_TAB_BITS` = 8).
pub(super) const TAB_BITS: u32 = 8;
pub(super) const TAB_SIZE: usize = 1 << TAB_BITS;

/// The kernel's generic `hash_32` (schedulers.md §0.7): multiply by
/// 0x61C88647 modulo 2^32 and keep the top `bits` bits (`bits` in 1..=32;
/// 0 or more than 32 gives 0 rather than panicking).
#[inline]
pub(super) fn hash_32(x: u32, bits: u32) -> u32 {
    if bits == 0 || bits > 32 {
        return 0;
    }
    x.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Address folding (schedulers.md §0.7): an IPv4 address as its host-order
/// value; an IPv6 address as the XOR of its four big-endian 32-bit words.
///
/// The kernel folds by the *service* family; packets always have the
/// service's family, so folding by the address's own family is the same (and
/// cannot misbehave when handed a mismatched packet).
#[inline]
pub(super) fn fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// `is_unavailable()` of sh (and srcdst): weight <= 0 or OVERLOAD.
#[inline]
pub(super) fn sh_unavailable(d: &Dest) -> bool {
    d.weight <= 0 || d.overloaded()
}

/// One bucket: the destination's uid, and its list position when the table
/// was built (checked against the uid before use).
#[derive(Debug, Clone, Copy)]
struct Slot {
    uid: u64,
    pos: usize,
}

/// What a bucket lookup found.
pub(super) enum Bucket {
    /// No destination (the list was empty when the table was built).
    Empty,
    /// The bucket's destination is no longer in the list. Unreachable while
    /// the hooks rebuild the table on every delete; callers treat it as an
    /// unavailable destination.
    Gone,
    /// The bucket's destination, at this list position.
    At(usize),
}

/// A 256-bucket table of destination uids. Empty (all buckets empty) until
/// first filled; filling reuses the allocation.
#[derive(Debug, Default)]
pub(super) struct Table {
    slots: Vec<Slot>,
}

impl Table {
    /// dh's `ip_vs_dh_reassign`: bucket i = the (i mod N)-th destination.
    pub(super) fn fill_round_robin(&mut self, dests: DestList<'_>) {
        self.slots.clear();
        let n = dests.len();
        if n == 0 {
            return;
        }
        self.slots.reserve(TAB_SIZE);
        for i in 0..TAB_SIZE {
            let pos = i % n;
            self.slots.push(Slot {
                uid: dests.get(pos).uid,
                pos,
            });
        }
    }

    /// sh's `ip_vs_sh_reassign`: each destination fills `max(weight, 1)`
    /// consecutive buckets (`++d_count >= weight` moves on), cyclically.
    pub(super) fn fill_weighted(&mut self, dests: DestList<'_>) {
        self.slots.clear();
        let n = dests.len();
        if n == 0 {
            return;
        }
        self.slots.reserve(TAB_SIZE);
        let mut pos = 0;
        let mut count: i64 = 0;
        for _ in 0..TAB_SIZE {
            let d = dests.get(pos);
            self.slots.push(Slot { uid: d.uid, pos });
            count += 1;
            if count >= i64::from(d.weight) {
                pos = (pos + 1) % n;
                count = 0;
            }
        }
    }

    /// The destination in bucket `b`.
    pub(super) fn bucket(&self, dests: DestList<'_>, b: usize) -> Bucket {
        let Some(s) = self.slots.get(b) else {
            return Bucket::Empty;
        };
        if s.pos < dests.len() && dests.get(s.pos).uid == s.uid {
            return Bucket::At(s.pos);
        }
        match dests.position_of(s.uid) {
            Some(p) => Bucket::At(p),
            None => Bucket::Gone,
        }
    }

    /// The uids in bucket order (tests).
    #[cfg(test)]
    pub(super) fn uids(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.uid).collect()
    }
}

/// sh's lookup (`ip_vs_sh_get` / `ip_vs_sh_get_fallback`) on a weighted
/// table, for the pre-hash key `key` (sh: `port + fold(addr)`).
pub(super) fn weighted_lookup(
    table: &Table,
    dests: DestList<'_>,
    key: u32,
    fallback: bool,
) -> Option<usize> {
    let ih = hash_32(key, TAB_BITS) as usize % TAB_SIZE;
    let usable = |p: usize| !sh_unavailable(dests.get(p));
    match table.bucket(dests, ih) {
        Bucket::Empty => return None,
        Bucket::At(p) if usable(p) => return Some(p),
        _ if !fallback => return None,
        _ => {}
    }
    for k in 0..TAB_SIZE {
        let ro = (k + ih) % TAB_SIZE;
        let b = (ro + ih) % TAB_SIZE;
        match table.bucket(dests, b) {
            Bucket::Empty => return None,
            Bucket::At(p) if usable(p) => return Some(p),
            _ => {}
        }
    }
    None
}

/// How a weighted-bucket scheduler turns a packet into its 32-bit key.
pub(super) trait BucketKey: Send + Sync + 'static {
    /// The scheduler's name.
    const NAME: &'static str;
    /// The key for `pkt` under the service's scheduler `flags`.
    fn key(pkt: &PacketInfo, flags: u32) -> u32;
}

/// A scheduler over sh's weighted 256-bucket table: sh itself, and srcdst
/// with another key. The table is rebuilt at init and by the add, del and
/// upd hooks; the flags are read at every decision.
#[derive(Debug)]
pub struct Weighted<K> {
    flags: u32,
    table: Table,
    key: std::marker::PhantomData<K>,
}

impl<K> Default for Weighted<K> {
    fn default() -> Self {
        Weighted {
            flags: 0,
            table: Table::default(),
            key: std::marker::PhantomData,
        }
    }
}

/// sh's key: the source address, plus the source port with `sh-port`.
#[derive(Debug)]
pub struct SourceKey;

impl BucketKey for SourceKey {
    const NAME: &'static str = "sh";

    fn key(pkt: &PacketInfo, flags: u32) -> u32 {
        // Only TCP, UDP and SCTP have ports; port 0 otherwise. (The
        // "inverse" ICMP-error key is not reachable through PacketInfo.)
        let port = if flags & SCHED_F_PORT != 0 && matches!(pkt.protocol, 6 | 17 | 132) {
            pkt.sport
        } else {
            0
        };
        u32::from(port).wrapping_add(fold(&pkt.saddr))
    }
}

/// sh: source hashing (schedulers.md §12).
pub type Sh = Weighted<SourceKey>;

impl<K: BucketKey> Scheduler for Weighted<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    fn init(&mut self, dests: DestList<'_>, flags: u32) {
        self.flags = flags;
        self.table.fill_weighted(dests);
    }

    fn add_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.table.fill_weighted(dests);
    }

    fn del_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.table.fill_weighted(dests);
    }

    fn upd_dest(&mut self, dests: DestList<'_>, _index: usize) {
        self.table.fill_weighted(dests);
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        pkt: &PacketInfo,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let key = K::key(pkt, self.flags);
        weighted_lookup(&self.table, dests, key, self.flags & SCHED_F_FALLBACK != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{pkt, Harness};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn from(saddr: IpAddr, sport: u16, protocol: u8) -> PacketInfo {
        PacketInfo {
            protocol,
            saddr,
            sport,
            ..pkt()
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    /// Bucket contents as last octets (table built from the harness list).
    fn table_octets(h: &Harness, weighted: bool) -> Vec<u8> {
        let dests = DestList::new(&h.ids, &h.pool);
        let mut t = Table::default();
        if weighted {
            t.fill_weighted(dests);
        } else {
            t.fill_round_robin(dests);
        }
        t.uids()
            .iter()
            .map(|&u| match dests.get(dests.position_of(u).unwrap()).addr {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(_) => unreachable!(),
            })
            .collect()
    }

    // §0.7 / §11 / §12: the hash_32 values quoted by the spec.
    #[test]
    fn hash_32_vectors() {
        for (x, want) in [
            (0x0A00_0064u32, 248),      // §11 daddr 10.0.0.100
            (0xC612_6401, 17),          // §11 kernel-verified 198.18.100.1
            (0xC0A8_0164, 89),          // §12 client 192.168.1.100
            (0xC612_0101, 133),         // §12 kernel-verified 198.18.1.1
            (0xC612_0102, 231),         // §12 kernel-verified 198.18.1.2
            (0xC0A8_0164 + 12345, 184), // §12 with sh-port 12345
        ] {
            assert_eq!(hash_32(x, 8), want, "{x:#x}");
        }
        assert_eq!(hash_32(1, 32), 0x61C8_8647);
        assert_eq!(hash_32(0xFFFF_FFFF, 0), 0);
    }

    #[test]
    fn folding() {
        assert_eq!(fold(&v4(10, 0, 0, 1)), 0x0A00_0001);
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(fold(&a.into()), 0x2001_0db8 ^ 1);
        let b: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            fold(&b.into()),
            0x2001_0db8 ^ 0x0001_0002 ^ 0x0003_0004 ^ 0x0005_0006
        );
    }

    // §12: weights (list order) A=2, B=1, C=0 → A A B C A A B C …
    #[test]
    fn weighted_tiling() {
        let mut h = Harness::new("sh");
        h.add(3, 0); // C
        h.add(2, 1); // B
        h.add(1, 2); // A — list A, B, C
        let t = table_octets(&h, true);
        assert_eq!(t.len(), 256);
        for (i, &o) in t.iter().enumerate() {
            assert_eq!(o, [1, 1, 2, 3][i % 4], "bucket {i}");
        }
        // Weights 1000, 1: the heavy front destination owns every bucket.
        let mut h = Harness::new("sh");
        h.add(2, 1);
        h.add(1, 1000);
        assert!(table_octets(&h, true).iter().all(|&o| o == 1));
        for i in 0..=255 {
            assert_eq!(h.pick_for(&from(v4(10, 1, 2, i), 0, 6)), 1);
        }
        // Weights 1, 2, 3 (list order): 6-bucket cycle; 256 = 42*6 + 4.
        let mut h = Harness::new("sh");
        h.add(3, 3);
        h.add(2, 2);
        h.add(1, 1);
        let t = table_octets(&h, true);
        assert_eq!(&t[..6], &[1, 2, 2, 3, 3, 3]);
        assert_eq!(&t[252..], &[1, 2, 2, 3]);
    }

    // §12 example: table A A B C; client 192.168.1.100 → bucket 89 → A; A
    // unavailable + sh-fallback → probe 178 → B; sh-port 12345 → bucket 184 → A.
    #[test]
    fn spec_example() {
        let client = v4(192, 168, 1, 100);
        for flags in [0, SCHED_F_FALLBACK] {
            let mut h = Harness::with_flags("sh", flags);
            h.add(3, 0);
            h.add(2, 1);
            h.add(1, 2);
            assert_eq!(h.pick_for(&from(client, 40000, 6)), 1);
            h.set_overload(1, true);
            let want = if flags == 0 { 0 } else { 2 };
            assert_eq!(h.pick_for(&from(client, 40000, 6)), want);
        }
        let mut h = Harness::with_flags("sh", SCHED_F_PORT);
        h.add(3, 0);
        h.add(2, 1);
        h.add(1, 2);
        assert_eq!(h.pick_for(&from(client, 12345, 6)), 1);
    }

    // Fallback probes 2*ih, 2*ih+1, … (178 B, 179 C, 180 A, …) and returns
    // none only after all 256 probes failed.
    #[test]
    fn fallback_probe_order() {
        let client = from(v4(192, 168, 1, 100), 0, 6);
        let mut h = Harness::with_flags("sh", SCHED_F_FALLBACK);
        h.add(3, 0);
        h.add(2, 1);
        h.add(1, 2);
        h.set_overload(1, true);
        h.set_overload(2, true);
        // C has weight 0 and A, B are overloaded: nothing anywhere.
        assert_eq!(h.pick_for(&client), 0);
        // C at weight 1 keeps the A A B C pattern; probe 179 is C.
        h.set_weight(3, 1);
        assert_eq!(h.pick_for(&client), 3);
        h.set_overload(2, false);
        assert_eq!(h.pick_for(&client), 2); // probe 178
        h.set_overload(1, false);
        assert_eq!(h.pick_for(&client), 1); // bucket 89 itself
    }

    // §12 kernel-verified: .10, .11, .12 added (list .12 .11 .10), weights 1:
    // 198.18.1.1 → 133 mod 3 = 1 → .11; 198.18.1.2 → 231 mod 3 = 0 → .12.
    #[test]
    fn kernel_verified() {
        let mut h = Harness::new("sh");
        h.add(10, 1);
        h.add(11, 1);
        h.add(12, 1);
        assert_eq!(table_octets(&h, true)[..3], [12, 11, 10]);
        assert_eq!(h.pick_for(&from(v4(198, 18, 1, 1), 1, 6)), 11);
        assert_eq!(h.pick_for(&from(v4(198, 18, 1, 2), 1, 6)), 12);
        // Deterministic: the same client always lands on the same server.
        for _ in 0..5 {
            assert_eq!(h.pick_for(&from(v4(198, 18, 1, 1), 2, 17)), 11);
        }
    }

    // sh-port: the source port joins the key for TCP/UDP/SCTP only.
    #[test]
    fn port_flag() {
        let client = v4(192, 168, 1, 100);
        let mut h = Harness::with_flags("sh", SCHED_F_PORT);
        for o in (1..=7).rev() {
            h.add(o, 1); // list 1..=7, bucket b → b mod 7 + 1
        }
        let want = |x: u32| (hash_32(x, 8) % 7 + 1) as u8;
        for proto in [6, 17, 132] {
            assert_eq!(
                h.pick_for(&from(client, 12345, proto)),
                want(0xC0A8_0164 + 12345)
            );
        }
        // ICMP (1) and anything else: port 0.
        assert_eq!(h.pick_for(&from(client, 12345, 1)), want(0xC0A8_0164));
        assert_eq!(h.pick_for(&from(client, 12345, 47)), want(0xC0A8_0164));
        // Without the flag the port never matters.
        let mut h = Harness::new("sh");
        for o in (1..=7).rev() {
            h.add(o, 1);
        }
        for port in [0, 1, 12345, 65535] {
            assert_eq!(h.pick_for(&from(client, port, 6)), want(0xC0A8_0164));
        }
        // Port + address wraps modulo 2^32.
        let mut h = Harness::with_flags("sh", SCHED_F_PORT);
        for o in (1..=7).rev() {
            h.add(o, 1);
        }
        let top = v4(255, 255, 255, 255);
        assert_eq!(h.pick_for(&from(top, 2, 6)), want(1));
    }

    #[test]
    fn ipv6_client() {
        let mut h = Harness::new("sh");
        for o in (1..=5).rev() {
            h.add(o, 1);
        }
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b = hash_32(0x2001_0db8 ^ 1, 8);
        assert_eq!(h.pick_for(&from(a.into(), 0, 6)), (b % 5 + 1) as u8);
    }

    // Weight 0 by edit: the table is rebuilt (still one bucket per cycle)
    // and that bucket is unavailable; deletion and re-adding rebuild it too.
    #[test]
    fn weight_zero_delete_readd() {
        let c1 = from(v4(198, 18, 1, 1), 0, 6); // 133
        let c2 = from(v4(198, 18, 1, 2), 0, 6); // 231
        let mut h = Harness::new("sh");
        h.add(10, 1);
        h.add(11, 1);
        h.add(12, 1); // .12 .11 .10
        h.set_weight(11, 0);
        assert_eq!(table_octets(&h, true)[..3], [12, 11, 10]);
        assert_eq!(h.pick_for(&c1), 0);
        assert_eq!(h.pick_for(&c2), 12);
        h.set_weight(11, 1);
        assert_eq!(h.pick_for(&c1), 11);
        // Delete .11: list .12 .10 → 133 mod 2 = 1 → .10; 231 → .10.
        h.delete(11);
        assert_eq!(h.pick_for(&c1), 10);
        assert_eq!(h.pick_for(&c2), 10);
        // Re-add .11 at the front: .11 .12 .10 → 133 mod 3 = 1 → .12; 231 → .11.
        h.add(11, 1);
        assert_eq!(h.pick_for(&c1), 12);
        assert_eq!(h.pick_for(&c2), 11);
        // Everything deleted: empty table, none (also with fallback).
        h.delete(10);
        h.delete(11);
        h.delete(12);
        assert_eq!(h.pick_for(&c1), 0);
        let mut h = Harness::with_flags("sh", SCHED_F_FALLBACK);
        assert_eq!(h.pick_for(&c1), 0);
    }

    #[test]
    fn all_weight_zero_or_overloaded_is_none() {
        let mut h = Harness::with_flags("sh", SCHED_F_FALLBACK);
        h.add(1, 0);
        h.add(2, 0);
        for i in 0..=255 {
            assert_eq!(h.pick_for(&from(v4(10, 0, 0, i), 0, 6)), 0);
        }
        h.set_weight(2, 3);
        h.set_overload(2, true);
        assert_eq!(h.pick_for(&from(v4(10, 0, 0, 1), 0, 6)), 0);
        h.set_overload(2, false);
        for i in 0..=255 {
            assert_eq!(h.pick_for(&from(v4(10, 0, 0, i), 0, 6)), 2);
        }
    }

    #[test]
    fn default_before_init_schedules_nothing() {
        let mut s = Sh::default();
        let h = Harness::new("rr");
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
