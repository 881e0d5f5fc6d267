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
