//! Internet checksum (RFC 1071) and incremental updates (RFC 1624).
//!
//! Sums are accumulated in a `u32` of 16-bit big-endian words and folded at
//! the end. Two kinds of L4 checksum fields exist on the receive path:
//! a complete (complemented) checksum, and a *partial* one left by checksum
//! offload (the non-complemented pseudo-header sum, `CHECKSUM_PARTIAL`).
//! Both are updated incrementally with the same arithmetic; only whether the
//! stored value is complemented differs.

/// Adds `data` as big-endian 16-bit words to `sum` (an odd last byte is padded with zero).
#[inline]
pub fn add_bytes(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early enough that the accumulator cannot overflow.
        if sum & 0x8000_0000 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// True if an IPv4 header (a multiple of 4 bytes, as IHL makes it) sums
/// to 0xFFFF: the receive check, on the packet path for every packet, so
/// summed 32 bits at a time.
#[inline]
pub fn header_ok(h: &[u8]) -> bool {
    // The common case, no options: five fixed 32-bit words.
    if let Ok(a) = <&[u8; 20]>::try_from(h) {
        let w = |i: usize| u64::from(u32::from_be_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]));
        return fold64(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff;
    }
    let mut sum: u64 = 0;
    for c in h.chunks_exact(4) {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    fold64(sum) == 0xffff && h.len() & 3 == 0
}

/// Folds a 64-bit sum of 32-bit words to 16 bits (one's complement).
#[inline(always)]
fn fold64(mut sum: u64) -> u64 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (sum & 0xffff) + (sum >> 16);
    (s & 0xffff) + (s >> 16)
}

/// Folds a 32-bit accumulator to 16 bits (one's-complement addition of the halves).
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for `data` (complement of the folded sum).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add_bytes(0, data))
}

/// Replaces the 16-bit words `old` by `new` inside the region covered by a
/// stored field value `field`.
///
/// `complemented` is true for a finished checksum (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`), false for a partial pseudo-header sum kept
/// non-complemented by checksum offload (`S' = S + ~m + m'`).
#[inline]
pub fn replace(field: u16, old: &[u8], new: &[u8], complemented: bool) -> u16 {
    let start = if complemented { !field } else { field };
    let mut sum = u32::from(start);
    // ~m summed word by word equals the one's-complement negation of the sum of m.
    sum += u32::from(!fold(add_bytes(0, old)));
    sum = add_bytes(sum, new);
    let r = fold(sum);
    if complemented {
        !r
    } else {
        r
    }
}

/// Sum of the IPv4 pseudo header (without the L4 data).
#[inline]
/// The IPv6 pseudo-header sum (RFC 8200 §8.1), not folded.
pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], protocol: u8, l4_len: u32) -> u32 {
    let mut sum = add_bytes(0, &src);
    sum = add_bytes(sum, &dst);
    sum = add_bytes(sum, &l4_len.to_be_bytes());
    sum + u32::from(protocol)
}

pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u32 {
    let mut sum = add_bytes(0, &src);
    sum = add_bytes(sum, &dst);
    sum += u32::from(protocol);
    sum += u32::from(l4_len);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_ok_agrees_with_the_word_sum() {
        let mut h = [
            0x45u8, 0, 0, 0x3c, 0x1c, 0x46, 0x40, 0, 0x40, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 100,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(header_ok(&h));
        for i in 0..20 {
            for bit in [1u8, 0x80] {
                let mut g = h;
                g[i] ^= bit;
                assert_eq!(header_ok(&g), fold(add_bytes(0, &g)) == 0xffff, "byte {i}");
            }
        }
        // The 0x0000 / 0xFFFF ambiguity of one's complement: both verify.
        let zero = [0u8; 20];
        assert_eq!(header_ok(&zero), fold(add_bytes(0, &zero)) == 0xffff);
    }

    // RFC 1071 §3 example bytes.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_bytes(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(add_bytes(0, &[0x12]), 0x1200);
        assert_eq!(fold(add_bytes(0, &[0xab, 0xcd, 0x12])), 0xabcd + 0x1200);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut data: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let before = checksum(&data);
        let old = [data[8], data[9], data[10], data[11]];
        let new = [198, 18, 1, 11];
        data[8..12].copy_from_slice(&new);
        assert_eq!(replace(before, &old, &new, true), checksum(&data));
    }

    #[test]
    fn partial_sum_update_stays_uncomplemented() {
        let mut data: Vec<u8> = (0..40u8).collect();
        let before = fold(add_bytes(0, &data));
        let old = [data[0], data[1]];
        data[0] = 0xfe;
        data[1] = 0x01;
        assert_eq!(
            replace(before, &old, &data[0..2], false),
            fold(add_bytes(0, &data))
        );
    }
}
