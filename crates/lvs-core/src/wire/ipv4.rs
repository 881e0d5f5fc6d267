//! A zero-copy view of an IPv4 header (smoltcp style: check once, then index freely).

use super::checksum;
use std::net::Ipv4Addr;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Minimum IPv4 header length.
pub const MIN_HEADER_LEN: usize = 20;

/// Why a buffer is not a usable IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    Truncated,
    NotIpv4,
    BadHeaderLen,
    BadTotalLen,
}

/// A checked view of an IPv4 packet. The constructor guarantees that the
/// buffer holds the whole header and `total_len` bytes.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length and total length against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, Ipv4Error> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Ipv4Error::NotIpv4);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLen);
        }
        let tl = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if tl < hl || tl > b.len() {
            return Err(Ipv4Error::BadTotalLen);
        }
        Ok(Ipv4Packet { buf })
    }

    /// A view of a buffer the caller has already checked with
    /// `new_checked` (the same bytes): skips the checks on the hot path.
    /// Getters index the buffer, so a wrong buffer panics, never reads
    /// out of bounds.
    #[inline(always)]
    pub(crate) fn new_unchecked(buf: T) -> Self {
        debug_assert!(Ipv4Packet::new_checked(buf.as_ref()).is_ok());
        Ipv4Packet { buf }
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    #[inline]
    pub fn total_len(&self) -> usize {
        let b = self.buf.as_ref();
        usize::from(u16::from_be_bytes([
            b[field::TOTAL_LEN.start],
            b[field::TOTAL_LEN.start + 1],
        ]))
    }
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTOCOL]
    }
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }
    #[inline]
    pub fn src_bytes(&self) -> [u8; 4] {
        let b = self.buf.as_ref();
        [b[12], b[13], b[14], b[15]]
    }
    #[inline]
    pub fn dst_bytes(&self) -> [u8; 4] {
        let b = self.buf.as_ref();
        [b[16], b[17], b[18], b[19]]
    }
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_bytes())
    }
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_bytes())
    }
    /// Type of service / traffic class byte (DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    /// Identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }
    /// "Don't fragment" flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[field::FLAGS_FRAG.start] & 0x40 != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[field::FLAGS_FRAG.start], b[field::FLAGS_FRAG.start + 1]]) & 0x1fff
    }
    /// "More fragments" flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[field::FLAGS_FRAG.start] & 0x20 != 0
    }
    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add_bytes(
            0,
            &self.buf.as_ref()[..self.header_len()],
        )) == 0xffff
    }
    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len()]
    }
    /// The payload (L4 segment), bounded by `total_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&a);
    }
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buf.as_mut()[field::TTL] = ttl;
    }
    #[inline]
    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[field::DST].copy_from_slice(&a);
    }
    /// Decrements TTL by one and updates the header checksum incrementally
    /// (RFC 1624; the same value a full recomputation gives).
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.buf.as_mut();
        let old = [b[field::TTL], b[field::PROTOCOL]];
        b[field::TTL] = old[0].wrapping_sub(1);
        let new = [b[field::TTL], old[1]];
        let c = u16::from_be_bytes([b[10], b[11]]);
        let c = checksum::replace(c, &old, &new, true);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    /// Recomputes the header checksum over the header.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[..hl]);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    /// Mutable payload bounded by `total_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[hl..tl]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real IPv4 header of a TCP SYN 198.18.0.2 -> 198.18.0.100, captured bytes.
    pub(crate) const SYN_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 198, 18, 0, 2, 198,
        18, 0, 100,
    ];

    fn with_len(total: usize) -> Vec<u8> {
        let mut v = SYN_HDR.to_vec();
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v.resize(total, 0);
        v
    }

    #[test]
    fn rejects_truncated_and_wrong_lengths() {
        assert_eq!(
            Ipv4Packet::new_checked(&SYN_HDR[..19]).unwrap_err(),
            Ipv4Error::Truncated
        );
        // total length 60 but only 20 bytes present
        assert_eq!(
            Ipv4Packet::new_checked(&SYN_HDR[..]).unwrap_err(),
            Ipv4Error::BadTotalLen
        );
        let mut v = with_len(40);
        v[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]).unwrap_err(),
            Ipv4Error::BadHeaderLen
        );
        v[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]).unwrap_err(),
            Ipv4Error::NotIpv4
        );
    }

    #[test]
    fn fields_and_checksum() {
        let mut v = with_len(60);
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.protocol(), 6);
        assert_eq!(p.src(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(198, 18, 0, 100));
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_dst([198, 18, 1, 11]);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 40);
    }
}

/// Splits the IPv4 packet `pkt` into fragments of at most `mtu` bytes, as the
/// output path does for a packet marked "ignore DF" (forwarding.md §3.4,
/// §7.5): each fragment is written into `out` and handed to `emit`. Options
/// are copied into every fragment only when they are marked "copied"; the
/// simple case (no options) is what tunnels produce. Fragments get DF clear.
/// Each fragment is written at `out[reserve..]` and `emit` gets
/// `out[..reserve + fragment length]` (the caller's link header stays in
/// front). Returns the number of fragments, or `None` if `pkt` is not a
/// valid IPv4 packet, `mtu` leaves no room for 8 payload bytes, or `out` is
/// too small.
pub fn fragment(
    pkt: &[u8],
    mtu: usize,
    out: &mut [u8],
    reserve: usize,
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    let p = Ipv4Packet::new_checked(pkt).ok()?;
    let hl = p.header_len();
    let payload = p.payload();
    // Fragment payloads are multiples of 8 bytes, except the last.
    let chunk = mtu.checked_sub(hl)? & !7;
    if chunk == 0 || out.len() < reserve + hl + chunk.min(payload.len()) {
        return None;
    }
    let base_off = usize::from(p.frag_offset()) * 8;
    let last_mf = p.more_frags();
    let mut n = 0;
    let mut off = 0;
    while off < payload.len() {
        let take = chunk.min(payload.len() - off);
        let more = off + take < payload.len() || last_mf;
        let f = &mut out[reserve..reserve + hl + take];
        f[..hl].copy_from_slice(&pkt[..hl]);
        f[hl..].copy_from_slice(&payload[off..off + take]);
        f[2..4].copy_from_slice(&((hl + take) as u16).to_be_bytes());
        let units = ((base_off + off) / 8) as u16;
        let flags: u16 = if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&(flags | (units & 0x1fff)).to_be_bytes());
        let mut v = Ipv4Packet { buf: &mut *f };
        v.fill_checksum();
        emit(&out[..reserve + hl + take]);
        n += 1;
        off += take;
    }
    Some(n)
}

#[cfg(test)]
mod fragment_tests {
    use super::*;

    #[test]
    fn fragments_cover_the_payload_in_8_byte_units() {
        let total = 20 + 100;
        let mut v = vec![0u8; total];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        v[8] = 64;
        v[9] = 4;
        for (i, b) in v[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut frags = Vec::new();
        let mut buf = [0u8; 64];
        let n = fragment(&v, 60, &mut buf, 0, |f| frags.push(f.to_vec())).unwrap();
        assert_eq!(n, 3);
        // 60 - 20 = 40 bytes per fragment (a multiple of 8).
        assert_eq!(frags[0].len(), 60);
        assert_eq!(&frags[0][6..8], &[0x20, 0]);
        assert_eq!(&frags[1][6..8], &[0x20, 5]);
        assert_eq!(frags[2].len(), 40);
        assert_eq!(&frags[2][6..8], &[0, 10]);
        let mut joined = Vec::new();
        for f in &frags {
            let p = Ipv4Packet::new_checked(&f[..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(p.ident(), 0x1234);
            joined.extend_from_slice(p.payload());
        }
        assert_eq!(&joined[..], &v[20..]);
        assert!(fragment(&v, 27, &mut buf, 0, |_| {}).is_none());
        // A reserved prefix stays in front of every fragment.
        let mut big = [0xeeu8; 80];
        fragment(&v, 60, &mut big, 14, |f| {
            assert_eq!(&f[..14], &[0xee; 14]);
            assert_eq!(f[14], 0x45);
        })
        .unwrap();
    }

    #[test]
    fn ttl_decrement_matches_a_full_recomputation() {
        for ttl in [2u8, 64, 255] {
            let mut v = [0u8; 20];
            v[0] = 0x45;
            v[2..4].copy_from_slice(&20u16.to_be_bytes());
            v[8] = ttl;
            v[9] = 6;
            v[12..16].copy_from_slice(&[198, 18, 0, 2]);
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            p.decrement_ttl();
            let inc = [v[10], v[11]];
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            assert_eq!(inc, [v[10], v[11]], "ttl {ttl}");
            assert_eq!(v[8], ttl - 1);
        }
    }
}
