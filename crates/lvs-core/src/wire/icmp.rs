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
}
