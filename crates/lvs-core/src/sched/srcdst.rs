//! srcdst — hash of source and destination IP addresses (the HAProxy ALOHA
//! director language's `balance srcdst`). **The kernel has no such
//! scheduler: this is our own design**, built as the sibling of sh
//! (schedulers.md §12) and dh (§11).
//!
//! * **Table**: exactly sh's — 256 buckets tiled from the list, each
//!   destination filling `max(weight, 1)` consecutive buckets per cycle,
//!   rebuilt at init and by the add, del and upd hooks.
//! * **Key** (32-bit, all arithmetic modulo 2^32, `fold` as in §0.7: IPv4
//!   host-order value, IPv6 XOR of the four big-endian words):
//!
//!   ```text
//!   key       = (fold(saddr) * 0x61C88647) XOR fold(daddr)
//!   h(offset) = (offset + hash_32(key, 8)) mod 256
//!   ```
//!
//!   i.e. the source is first spread by the full-width golden-ratio multiply
//!   of `hash_32`, then the destination is mixed in, then `hash_32(·, 8)`
//!   picks the bucket. It is order-sensitive (swapping source and destination
//!   gives a different bucket), a fixed destination (the usual VIP) only
//!   permutes the sources, and `saddr == daddr` does not collapse (a plain
//!   `s XOR d` would send all of those to one bucket).
//! * **Selection**: as sh. Unavailable = `weight <= 0` or OVERLOAD. Without
//!   `SCHED_F_FALLBACK`: bucket `h(0)`, none if empty or unavailable. With
//!   it: the same probe sequence as sh (`h((k + ih) mod 256)`, k = 0..255,
//!   stopping at an empty bucket).
//! * Ports are never part of the key (`SCHED_F_PORT` is ignored): the
//!   director language hashes addresses only.

use super::sh::{fold, BucketKey, Weighted};
use super::PacketInfo;

/// Multiplier of `hash_32` (schedulers.md §0.7), reused to spread the source.
const GOLDEN: u32 = 0x61C8_8647;

/// srcdst's key (see the module doc); ports are ignored.
#[derive(Debug)]
pub struct SrcDstKey;

impl BucketKey for SrcDstKey {
    const NAME: &'static str = "srcdst";

    fn key(pkt: &PacketInfo, _flags: u32) -> u32 {
        key(pkt)
    }
}

/// The 32-bit key hashed into the table (see the module doc).
#[inline]
fn key(pkt: &PacketInfo) -> u32 {
    fold(&pkt.saddr).wrapping_mul(GOLDEN) ^ fold(&pkt.daddr)
}

/// srcdst: sh's weighted table keyed by source and destination.
pub type Srcdst = Weighted<SrcDstKey>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::sh::hash_32;
    use crate::sched::testutil::{pkt, Harness};
    use crate::sched::{SCHED_F_FALLBACK, SCHED_F_PORT};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    fn p(saddr: IpAddr, daddr: IpAddr) -> PacketInfo {
        PacketInfo {
            saddr,
            daddr,
            ..pkt()
        }
    }

    /// Destinations 1..=n in list order, weight 1 each: bucket b → b mod n + 1.
    fn list(flags: u32, n: u8) -> Harness {
        let mut h = Harness::with_flags("srcdst", flags);
        for o in (1..=n).rev() {
            h.add(o, 1);
        }
        h
    }

    #[test]
    fn documented_formula() {
        let s = v4(192, 168, 1, 100);
        let d = v4(198, 18, 0, 100);
        let k = 0xC0A8_0164u32.wrapping_mul(0x61C8_8647) ^ 0xC612_0064;
        assert_eq!(key(&p(s, d)), k);
        let mut h = list(0, 7);
        assert_eq!(h.pick_for(&p(s, d)), (hash_32(k, 8) % 7 + 1) as u8);
        // IPv6 folds like sh/dh.
        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let k6 = (0x2001_0db8u32 ^ 1).wrapping_mul(0x61C8_8647) ^ (0x2001_0db8 ^ 2);
        assert_eq!(key(&p(s6.into(), d6.into())), k6);
        assert_eq!(
            h.pick_for(&p(s6.into(), d6.into())),
            (hash_32(k6, 8) % 7 + 1) as u8
        );
    }

    #[test]
    fn deterministic_and_uses_both_addresses() {
        let mut h = list(0, 5);
        let mut by_dst = [false; 6];
        for i in 0..=255u8 {
            let pk = p(v4(10, 0, 0, 1), v4(10, 1, i, 1));
            let first = h.pick_for(&pk);
            assert_ne!(first, 0);
            // Ports and protocol never matter; the same pair always maps the same.
            for sport in [1, 40000, 65535] {
                let q = PacketInfo {
                    sport,
                    protocol: 17,
                    ..pk
                };
                assert_eq!(h.pick_for(&q), first);
            }
            by_dst[first as usize] = true;
        }
        // A fixed source reaches every destination when the VIP varies.
        assert!(by_dst[1..].iter().all(|&b| b));
        // The port flag is ignored.
        let mut hp = list(SCHED_F_PORT, 5);
        for i in 0..=255u8 {
            let pk = p(v4(10, 0, i, 1), v4(10, 1, 0, 1));
            assert_eq!(
                hp.pick_for(&PacketInfo { sport: 12345, ..pk }),
                h.pick_for(&pk)
            );
        }
    }

    // Weights 1, 2, 3: the table is sh's (6-bucket cycles), and over many
    // clients to one VIP the shares follow the weights.
    #[test]
    fn distribution_follows_weights() {
        let mut h = Harness::new("srcdst");
        h.add(3, 3);
        h.add(2, 2);
        h.add(1, 1);
        let vip = v4(198, 18, 0, 100);
        let mut n = [0u32; 4];
        for a in 0..48u8 {
            for b in 0..=255u8 {
                n[h.pick_for(&p(v4(10, a, b, 7), vip)) as usize] += 1;
            }
        }
        let total = 48 * 256;
        assert_eq!(n[0], 0);
        assert_eq!(n[1] + n[2] + n[3], total);
        for (i, w) in [(1usize, 1u32), (2, 2), (3, 3)] {
            let expect = total * w / 6;
            let diff = n[i].abs_diff(expect);
            assert!(diff * 5 < expect, "dest {i}: {} vs {expect} ({n:?})", n[i]);
        }
    }

    // saddr == daddr must not collapse onto one bucket.
    #[test]
    fn same_source_and_destination_spread() {
        let mut h = list(0, 4);
        let mut n = [0u32; 5];
        for a in 0..16u8 {
            for b in 0..=255u8 {
                let x = v4(172, 16 + a, b, 9);
                n[h.pick_for(&p(x, x)) as usize] += 1;
            }
        }
        for &c in &n[1..] {
            assert!(c > 16 * 256 / 4 / 2, "{n:?}");
        }
    }

    // Same rules as sh: unavailable bucket → none without the fallback flag;
    // with it, sh's probe order (2*ih, 2*ih+1, …) finds another server.
    #[test]
    fn fallback() {
        let s = v4(192, 168, 1, 100);
        let d = v4(198, 18, 0, 100);
        let ih = hash_32(key(&p(s, d)), 8) as usize;
        for flags in [0, SCHED_F_FALLBACK] {
            let mut h = list(flags, 4);
            let first = h.pick_for(&p(s, d));
            assert_eq!(first as usize, ih % 4 + 1);
            h.set_overload(first, true);
            let want = if flags == 0 {
                0
            } else {
                // First probe whose bucket is not `first`.
                (0..256)
                    .map(|k| ((k + ih) % 256 + ih) % 256 % 4 + 1)
                    .find(|&o| o as u8 != first)
                    .unwrap() as u8
            };
            assert_eq!(h.pick_for(&p(s, d)), want);
            h.set_overload(first, false);
            h.set_weight(first, 0); // rebuilt; still one bucket per cycle
            assert_eq!(h.pick_for(&p(s, d)), want);
            h.set_weight(first, 1);
            assert_eq!(h.pick_for(&p(s, d)), first);
        }
        // Everything unavailable or no destinations: none.
        let mut h = list(SCHED_F_FALLBACK, 3);
        for o in 1..=3 {
            h.set_weight(o, 0);
        }
        assert_eq!(h.pick_for(&p(s, d)), 0);
        let mut h = Harness::with_flags("srcdst", SCHED_F_FALLBACK);
        assert_eq!(h.pick_for(&p(s, d)), 0);
    }

    #[test]
    fn delete_rebuilds() {
        let mut h = list(0, 3);
        let vip = v4(198, 18, 0, 100);
        for i in 0..=255u8 {
            let pk = p(v4(10, 0, 0, i), vip);
            let b = hash_32(key(&pk), 8);
            assert_eq!(h.pick_for(&pk), (b % 3 + 1) as u8);
        }
        h.delete(2); // list 1 3
        for i in 0..=255u8 {
            let pk = p(v4(10, 0, 0, i), vip);
            let b = hash_32(key(&pk), 8);
            assert_eq!(h.pick_for(&pk), [1, 3][(b % 2) as usize]);
        }
    }

    #[test]
    fn mixed_families_do_not_panic() {
        let mut h = list(SCHED_F_FALLBACK, 2);
        let s6: Ipv6Addr = "::1".parse().unwrap();
        assert_ne!(h.pick_for(&p(s6.into(), v4(1, 2, 3, 4))), 0);
    }
}
