//! Building the ICMP errors the director sends itself (port unreachable when a
//! service has no usable destination, connections.md §7.5).

use super::checksum;

/// ICMP type "destination unreachable".
pub const DEST_UNREACH: u8 = 3;
/// ICMP code "port unreachable".
pub const PORT_UNREACH: u8 = 3;

/// Like Linux, quote as much of the offending datagram as fits in 576 bytes.
const MAX_ERROR_LEN: usize = 576;

/// ICMP type "time exceeded" (code 0: TTL expired in transit).
pub const TIME_EXCEEDED: u8 = 11;
/// ICMP type "source quench" (deprecated, still "related" for IPVS).
pub const SOURCE_QUENCH: u8 = 4;
/// ICMP code "host unreachable".
pub const HOST_UNREACH: u8 = 1;
/// ICMP code "fragmentation needed and DF set".
pub const FRAG_NEEDED: u8 = 4;

/// Writes an IPv4 ICMP destination-unreachable/port-unreachable for the
/// datagram `orig` into `out` and returns the length written. The error
/// comes from the address the datagram was sent to (the VIP) and goes to its
/// source. Returns `None` if `out` is too small or `orig` is not IPv4.
pub fn port_unreachable_v4(orig: &[u8], out: &mut [u8]) -> Option<usize> {
    error_v4(orig, out, DEST_UNREACH, PORT_UNREACH, 0, None)
}

/// Like `port_unreachable_v4`, from address `from` if given (the director's
/// own address, for errors about packets that were not addressed to it).
pub fn port_unreachable_v4_from(
    orig: &[u8],
    out: &mut [u8],
    from: Option<[u8; 4]>,
) -> Option<usize> {
    error_v4(orig, out, DEST_UNREACH, PORT_UNREACH, 0, from)
}

/// Writes an IPv4 ICMP error of `typ`/`code` about the datagram `orig` into
/// `out`, with `info` as the 4 bytes after the checksum (the next-hop MTU
/// of "fragmentation needed" sits in the low 16 bits), and returns its
/// length. Like Linux's `icmp_send`: the error quotes as much of `orig` as
/// fits in 576 bytes, goes to `orig`'s source, comes from `from` or else
/// from the address `orig` was sent to, with TTL 64, the precedence
/// "internetwork control" over `orig`'s TOS bits, and DF clear.
pub fn error_v4(
    orig: &[u8],
    out: &mut [u8],
    typ: u8,
    code: u8,
    info: u32,
    from: Option<[u8; 4]>,
) -> Option<usize> {
    // The offending packet may itself be a truncated quote (a tunnel
    // path's error passed on): its header must be whole, the rest is
    // quoted as far as it goes.
    if orig.len() < 20 || orig[0] >> 4 != 4 || usize::from(orig[0] & 0x0f) * 4 < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([orig[2], orig[3]]));
    let quoted = orig.len().min(total.max(20)).min(MAX_ERROR_LEN - 28);
    let len = 28 + quoted;
    if out.len() < len {
        return None;
    }
    let out = &mut out[..len];
    out[0] = 0x45;
    out[1] = (orig[1] & 0x1e) | 0xc0;
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..6].copy_from_slice(&[0, 0]);
    out[6..8].copy_from_slice(&[0, 0]);
    out[8] = 64;
    out[9] = super::ipproto::ICMP;
    out[10..12].copy_from_slice(&[0, 0]);
    let dst = [orig[16], orig[17], orig[18], orig[19]];
    out[12..16].copy_from_slice(&from.unwrap_or(dst));
    out[16..20].copy_from_slice(&orig[12..16]);
    let hc = checksum::checksum(&out[..20]);
    out[10..12].copy_from_slice(&hc.to_be_bytes());
    out[20] = typ;
    out[21] = code;
    out[22..24].copy_from_slice(&[0, 0]);
    out[24..28].copy_from_slice(&info.to_be_bytes());
    out[28..].copy_from_slice(&orig[..quoted]);
    let c = checksum::checksum(&out[20..]);
    out[22..24].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// ICMPv6 error types (RFC 4443 §3).
pub mod v6 {
    /// Destination unreachable (code 4: port unreachable).
    pub const DEST_UNREACH: u8 = 1;
    pub const PORT_UNREACH: u8 = 4;
    /// Packet too big (the MTU in the 4 bytes after the checksum).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (code 0: hop limit exceeded in transit).
    pub const TIME_EXCEEDED: u8 = 3;
}

/// The IPv6 minimum MTU: an ICMPv6 error is no larger (RFC 4443 §2.4(c)).
const MAX_ERROR_LEN_V6: usize = 1280;

/// Writes an ICMPv6 error of `typ`/`code` about the IPv6 packet `orig` into
/// `out`, with `info` after the checksum (the MTU of packet too big), and
/// returns its length: from `from` or else the address `orig` was sent
/// to, to `orig`'s source, hop limit 64, quoting as much of `orig` as
/// keeps the error within 1280 bytes. `None` if `orig` is not IPv6 (a
/// whole fixed header), comes from an address no error may go to
/// (unspecified, multicast), or `out` is too small.
pub fn error_v6(
    orig: &[u8],
    out: &mut [u8],
    typ: u8,
    code: u8,
    info: u32,
    from: Option<[u8; 16]>,
) -> Option<usize> {
    if orig.len() < 40 || orig[0] >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = orig[8..24].try_into().ok()?;
    if src == [0; 16] || src[0] == 0xff {
        return None;
    }
    let dst: [u8; 16] = orig[24..40].try_into().ok()?;
    let total = 40 + usize::from(u16::from_be_bytes([orig[4], orig[5]]));
    let quoted = orig.len().min(total).min(MAX_ERROR_LEN_V6 - 48);
    let len = 48 + quoted;
    if out.len() < len {
        return None;
    }
    let out = &mut out[..len];
    let me = from.unwrap_or(dst);
    out[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 58, 64]);
    out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    out[8..24].copy_from_slice(&me);
    out[24..40].copy_from_slice(&src);
    out[40] = typ;
    out[41] = code;
    out[42..44].copy_from_slice(&[0, 0]);
    out[44..48].copy_from_slice(&info.to_be_bytes());
    out[48..].copy_from_slice(&orig[..quoted]);
    let sum = checksum::pseudo_v6(me, src, 58, (len - 40) as u32);
    let c = !checksum::fold(checksum::add_bytes(sum, &out[40..]));
    out[42..44].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;

    #[test]
    fn builds_a_valid_port_unreachable() {
        let mut orig = vec![0u8; 48];
        orig[..20].copy_from_slice(&[
            0x45, 0, 0, 48, 0, 1, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 100,
        ]);
        let mut out = [0u8; 600];
        let n = port_unreachable_v4(&orig, &mut out).unwrap();
        assert_eq!(n, 28 + 48);
        let p = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src_bytes(), [198, 18, 0, 100]);
        assert_eq!(p.dst_bytes(), [198, 18, 0, 2]);
        assert_eq!(&out[20..22], &[3, 3]);
        assert_eq!(checksum::fold(checksum::add_bytes(0, &out[20..n])), 0xffff);
        assert_eq!(&out[28..n], &orig[..]);
        assert!(port_unreachable_v4(&orig, &mut [0u8; 40]).is_none());
    }

    #[test]
    fn icmpv6_errors_quote_within_1280_bytes_with_a_valid_checksum() {
        let mut orig = vec![0u8; 1400];
        orig[..8].copy_from_slice(&[0x60, 0, 0, 0, 0x05, 0x50, 6, 63]);
        orig[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        orig[24..40].copy_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        let mut out = [0u8; 1500];
        let n = error_v6(&orig, &mut out, v6::PACKET_TOO_BIG, 0, 1280, None).unwrap();
        assert_eq!(n, 1280);
        assert_eq!(&out[8..24], &orig[24..40], "from the VIP");
        assert_eq!(&out[24..40], &orig[8..24], "to the client");
        assert_eq!(&out[44..48], &1280u32.to_be_bytes());
        let sum = checksum::pseudo_v6(
            out[8..24].try_into().unwrap(),
            out[24..40].try_into().unwrap(),
            58,
            (n - 40) as u32,
        );
        assert_eq!(
            checksum::fold(checksum::add_bytes(sum, &out[40..n])),
            0xffff
        );
        // Never to a multicast or unspecified source; never about non-IPv6.
        let mut mc = orig.clone();
        mc[8] = 0xff;
        assert_eq!(error_v6(&mc, &mut out, 1, 4, 0, None), None);
        assert_eq!(error_v6(&orig[..39], &mut out, 1, 4, 0, None), None);
        let mut v4 = orig.clone();
        v4[0] = 0x45;
        assert_eq!(error_v6(&v4, &mut out, 1, 4, 0, None), None);
    }
}
