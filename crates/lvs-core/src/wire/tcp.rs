//! TCP segments the director builds itself: the reset a host stack sends
//! for a segment that belongs to no connection (RFC 793 "reset
//! generation", as Linux's `tcp_v4_send_reset` fills it).

use super::checksum;
use super::ipv4::Ipv4Packet;
use super::tcp_flags;

/// Length of the reset: IPv4 header plus a TCP header without options.
pub const RST_LEN: usize = 40;

/// Writes into `out` the RST answering the IPv4 TCP segment `orig`, from
/// `orig`'s destination to its source, and returns its length. `None` if
/// `orig` is not a TCP segment with a complete header, is itself a RST, or
/// `out` is too small.
///
/// Sequence numbers: a segment with ACK gets `seq = its ack`, no ACK flag;
/// one without gets `seq 0`, ACK, and `ack = its seq + SYN + FIN + payload
/// length`. IP: DF set and ID 0, TTL 64, the segment's DSCP with ECN clear.
pub fn reset_v4(orig: &[u8], out: &mut [u8]) -> Option<usize> {
    let o = Ipv4Packet::new_checked(orig).ok()?;
    if o.protocol() != super::ipproto::TCP || out.len() < RST_LEN {
        return None;
    }
    let t = o.payload();
    let out = &mut out[..RST_LEN];
    out.fill(0);
    reset_header(t, &mut out[20..])?;
    out[0] = 0x45;
    out[1] = o.tos() & !0x03;
    out[2..4].copy_from_slice(&(RST_LEN as u16).to_be_bytes());
    out[6] = 0x40;
    out[8] = 64;
    out[9] = super::ipproto::TCP;
    out[12..16].copy_from_slice(&o.dst_bytes());
    out[16..20].copy_from_slice(&o.src_bytes());
    let hc = checksum::checksum(&out[..20]);
    out[10..12].copy_from_slice(&hc.to_be_bytes());
    let sum = checksum::pseudo_v4(o.dst_bytes(), o.src_bytes(), super::ipproto::TCP, 20);
    let c = !checksum::fold(checksum::add_bytes(sum, &out[20..]));
    out[36..38].copy_from_slice(&c.to_be_bytes());
    Some(RST_LEN)
}

/// Length of an IPv6 reset: IPv6 header plus a TCP header.
pub const RST_LEN_V6: usize = 60;

/// `reset_v4` for an IPv6 segment (hop limit 64, the traffic class's DSCP
/// with ECN clear, the transport header right after the fixed header).
pub fn reset_v6(orig: &[u8], out: &mut [u8]) -> Option<usize> {
    let total = super::ipv6::check(orig).ok()?;
    let orig = &orig[..total];
    let tp = super::ipv6::transport(orig).ok()?;
    if tp.protocol != super::ipproto::TCP || tp.fragment || out.len() < RST_LEN_V6 {
        return None;
    }
    let out = &mut out[..RST_LEN_V6];
    out.fill(0);
    reset_header(&orig[tp.offset..], &mut out[40..])?;
    let tclass = ((orig[0] & 0x0f) << 4 | orig[1] >> 4) & !0x03;
    out[0] = 0x60 | tclass >> 4;
    out[1] = tclass << 4;
    out[4..6].copy_from_slice(&20u16.to_be_bytes());
    out[6] = super::ipproto::TCP;
    out[7] = 64;
    out[8..24].copy_from_slice(&orig[24..40]);
    out[24..40].copy_from_slice(&orig[8..24]);
    let (src, dst): ([u8; 16], [u8; 16]) =
        (out[8..24].try_into().ok()?, out[24..40].try_into().ok()?);
    let sum = checksum::pseudo_v6(src, dst, super::ipproto::TCP, 20);
    let c = !checksum::fold(checksum::add_bytes(sum, &out[40..]));
    out[56..58].copy_from_slice(&c.to_be_bytes());
    Some(RST_LEN_V6)
}

/// The TCP header of the reset answering segment `t` (its TCP header and
/// payload), written into the zeroed `th` (20 bytes); `None` if `t` is cut
/// short or is itself a reset.
fn reset_header(t: &[u8], th: &mut [u8]) -> Option<()> {
    if t.len() < 20 {
        return None;
    }
    let flags = t[13];
    if flags & tcp_flags::RST != 0 {
        return None;
    }
    let doff = usize::from(t[12] >> 4) * 4;
    let payload = t.len().saturating_sub(doff.max(20)) as u32;
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    th[0..2].copy_from_slice(&t[2..4]);
    th[2..4].copy_from_slice(&t[0..2]);
    if flags & tcp_flags::ACK != 0 {
        th[4..8].copy_from_slice(&ack.to_be_bytes());
        th[13] = tcp_flags::RST;
    } else {
        let syn_fin =
            u32::from(flags & tcp_flags::SYN != 0) + u32::from(flags & tcp_flags::FIN != 0);
        let a = seq.wrapping_add(syn_fin).wrapping_add(payload);
        th[8..12].copy_from_slice(&a.to_be_bytes());
        th[13] = tcp_flags::RST | tcp_flags::ACK;
    }
    th[12] = 5 << 4;
    Some(())
}

/// Completes an L4 checksum left for offload: the field holds the
/// non-complemented pseudo-header sum, and the checksum runs from
/// `l4` 's first byte to its end, as a NIC would finish it. `csum_off` is
/// the field's offset in `l4`; `udp` maps a zero result to 0xFFFF.
pub fn complete_partial(l4: &mut [u8], csum_off: usize, udp: bool) {
    if l4.len() < csum_off + 2 {
        return;
    }
    let c = !checksum::fold(checksum::add_bytes(0, l4));
    let c = if udp && c == 0 { 0xffff } else { c };
    l4[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Number of segments of `mss` payload bytes an IPv4 TCP super-packet
/// makes; `None` if it is not a TCP packet with complete headers or `mss`
/// is 0.
pub fn segment_count(pkt: &[u8], mss: u16) -> Option<usize> {
    let (hl, thl, payload) = tcp_layout(pkt)?;
    let _ = (hl, thl);
    let mss = usize::from(mss);
    if mss == 0 {
        return None;
    }
    Some(payload.div_ceil(mss).max(1))
}

/// (IP header length — for IPv6 up to the TCP header, extension headers
/// included — TCP header length, payload length) of an IPv4 or IPv6 TCP
/// packet (not a fragment) whose headers are complete.
fn tcp_layout(pkt: &[u8]) -> Option<(usize, usize, usize)> {
    let (hl, t) = if pkt.first().is_some_and(|b| b >> 4 == 6) {
        let total = super::ipv6::check(pkt).ok()?;
        let tp = super::ipv6::transport(&pkt[..total]).ok()?;
        if tp.protocol != super::ipproto::TCP || tp.fragment {
            return None;
        }
        (tp.offset, &pkt[tp.offset..total])
    } else {
        let ip = Ipv4Packet::new_checked(pkt).ok()?;
        if ip.protocol() != super::ipproto::TCP {
            return None;
        }
        let (hl, n) = (ip.header_len(), ip.payload().len());
        (hl, &pkt[hl..hl + n])
    };
    if t.len() < 20 {
        return None;
    }
    let thl = usize::from(t[12] >> 4) * 4;
    if thl < 20 || thl > t.len() {
        return None;
    }
    Some((hl, thl, t.len() - thl))
}

/// Cuts an IPv4 or IPv6 TCP super-packet into segments of at most `mss`
/// payload bytes, as GSO does: headers copied, IPv4 ID counted up (IPv6:
/// the payload length set), sequence numbers
/// advanced, FIN and PSH only on the last segment, CWR only on the first,
/// both checksums computed in full. Each segment is written at
/// `out[reserve..]`; `emit(out, len)` may then write in front of it (link
/// and tunnel headers) and send `out[..reserve + len]`'s tail. Returns the
/// number of segments, `None` if `pkt` is not such a packet or `out` is
/// too small.
pub fn segment(
    pkt: &[u8],
    mss: u16,
    out: &mut [u8],
    reserve: usize,
    mut emit: impl FnMut(&mut [u8], usize),
) -> Option<usize> {
    let (hl, thl, payload) = tcp_layout(pkt)?;
    let mss = usize::from(mss);
    if mss == 0 || out.len() < reserve + hl + thl + mss.min(payload) {
        return None;
    }
    let hdrs = hl + thl;
    let v6 = pkt[0] >> 4 == 6;
    let id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let seq = u32::from_be_bytes([pkt[hl + 4], pkt[hl + 5], pkt[hl + 6], pkt[hl + 7]]);
    let n = payload.div_ceil(mss).max(1);
    for k in 0..n {
        let off = k * mss;
        let take = mss.min(payload - off);
        let len = hdrs + take;
        let seg = &mut out[reserve..reserve + len];
        seg[..hdrs].copy_from_slice(&pkt[..hdrs]);
        seg[hdrs..].copy_from_slice(&pkt[hdrs + off..hdrs + off + take]);
        let sum = if v6 {
            let pl = (len - super::ipv6::HEADER_LEN) as u16;
            seg[4..6].copy_from_slice(&pl.to_be_bytes());
            let (src, dst) = (
                super::ipv6::src(seg).octets(),
                super::ipv6::dst(seg).octets(),
            );
            checksum::pseudo_v6(src, dst, super::ipproto::TCP, (thl + take) as u32)
        } else {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id.wrapping_add(k as u16).to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&seg[..hl]);
            seg[10..12].copy_from_slice(&c.to_be_bytes());
            let (src, dst) = (
                [seg[12], seg[13], seg[14], seg[15]],
                [seg[16], seg[17], seg[18], seg[19]],
            );
            checksum::pseudo_v4(src, dst, super::ipproto::TCP, (thl + take) as u16)
        };
        let t = &mut seg[hl..];
        t[4..8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
        if k + 1 < n {
            t[13] &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if k > 0 {
            t[13] &= !tcp_flags::CWR;
        }
        t[16..18].copy_from_slice(&[0, 0]);
        let c = !checksum::fold(checksum::add_bytes(sum, t));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        emit(out, len);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
        let total = 40 + payload;
        let mut v = vec![0u8; total];
        v[0] = 0x45;
        v[1] = 0xbb;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[8] = 64;
        v[9] = 6;
        v[12..16].copy_from_slice(&[198, 18, 0, 2]);
        v[16..20].copy_from_slice(&[198, 18, 0, 100]);
        v[20..22].copy_from_slice(&40000u16.to_be_bytes());
        v[22..24].copy_from_slice(&80u16.to_be_bytes());
        v[24..28].copy_from_slice(&seq.to_be_bytes());
        v[28..32].copy_from_slice(&ack.to_be_bytes());
        v[32] = 5 << 4;
        v[33] = flags;
        v
    }

    fn l4_ok(v: &[u8]) -> bool {
        let p = Ipv4Packet::new_checked(v).unwrap();
        let sum = checksum::pseudo_v4(p.src_bytes(), p.dst_bytes(), 6, (v.len() - 20) as u16);
        checksum::fold(checksum::add_bytes(sum, &v[20..])) == 0xffff
    }

    #[test]
    fn segmentation_as_gso_does_it() {
        let mut orig = segment(
            tcp_flags::ACK | tcp_flags::PSH | tcp_flags::FIN | tcp_flags::CWR,
            1000,
            7,
            25,
        );
        for (i, b) in orig[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        orig[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        assert_eq!(segment_count(&orig, 10), Some(3));
        let mut out = [0u8; 128];
        let mut segs = Vec::new();
        let n = super::segment(&orig, 10, &mut out, 8, |b, len| {
            segs.push(b[8..8 + len].to_vec())
        })
        .unwrap();
        assert_eq!(n, 3);
        let mut payload = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let p = Ipv4Packet::new_checked(&s[..]).unwrap();
            assert!(p.verify_checksum());
            assert!(l4_ok(s));
            assert_eq!(p.ident(), 0xfffeu16.wrapping_add(k as u16));
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + 10 * k as u32);
            let last = k == 2;
            assert_eq!(s[33] & tcp_flags::FIN != 0, last);
            assert_eq!(s[33] & tcp_flags::PSH != 0, last);
            assert_eq!(s[33] & tcp_flags::CWR != 0, k == 0);
            payload.extend_from_slice(&s[40..]);
        }
        assert_eq!(&payload[..], &orig[40..]);
        assert_eq!(segs[2].len(), 45);
        assert!(super::segment(&orig, 0, &mut out, 0, |_, _| {}).is_none());
        assert!(super::segment(&orig, 10, &mut out[..40], 8, |_, _| {}).is_none());
    }

    #[test]
    fn ipv6_super_packets_are_cut_the_same_way() {
        // IPv6 + 20-byte TCP + 25 bytes of payload, FIN|PSH|ACK.
        let (src, dst) = ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], {
            let mut d = [0u8; 16];
            d[..4].copy_from_slice(&[0x20, 1, 0xd, 0xb8]);
            d[15] = 0x10;
            d
        });
        let mut v = vec![0x60, 0, 0, 0, 0, 45, 6, 64];
        v.extend(src);
        v.extend(dst);
        let mut t = vec![0u8; 20];
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 0x50;
        t[13] = tcp_flags::ACK | tcp_flags::PSH | tcp_flags::FIN;
        v.extend(t);
        v.extend((0..25u8).collect::<Vec<u8>>());
        assert_eq!(segment_count(&v, 10), Some(3));
        let mut out = [0u8; 200];
        let mut segs = Vec::new();
        let n = super::segment(&v, 10, &mut out, 0, |b, len| segs.push(b[..len].to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut payload = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let pl = usize::from(u16::from_be_bytes([s[4], s[5]]));
            assert_eq!(pl, s.len() - 40);
            let sum = checksum::pseudo_v6(src, dst, 6, pl as u32);
            assert_eq!(checksum::fold(checksum::add_bytes(sum, &s[40..])), 0xffff);
            let seq = u32::from_be_bytes([s[44], s[45], s[46], s[47]]);
            assert_eq!(seq, 1000 + 10 * k as u32);
            assert_eq!(s[53] & tcp_flags::FIN != 0, k == 2);
            payload.extend_from_slice(&s[60..]);
        }
        assert_eq!(&payload[..], &v[60..]);
    }

    #[test]
    fn reset_for_an_ack_takes_its_ack_number() {
        let orig = segment(tcp_flags::ACK, 1000, 0xdead_beef, 10);
        let mut out = [0u8; 64];
        let n = reset_v4(&orig, &mut out).unwrap();
        let r = &out[..n];
        let p = Ipv4Packet::new_checked(r).unwrap();
        assert!(p.verify_checksum());
        assert!(l4_ok(r));
        assert_eq!(p.src_bytes(), [198, 18, 0, 100]);
        assert_eq!(p.dst_bytes(), [198, 18, 0, 2]);
        assert_eq!(r[1], 0xb8);
        assert_eq!(&r[20..24], &[0, 80, 0x9c, 0x40]);
        assert_eq!(&r[24..28], &0xdead_beefu32.to_be_bytes());
        assert_eq!(&r[28..32], &[0, 0, 0, 0]);
        assert_eq!(r[33], tcp_flags::RST);
    }

    #[test]
    fn reset_for_a_segment_without_ack_acknowledges_it() {
        let orig = segment(tcp_flags::FIN, 1000, 0, 10);
        let mut out = [0u8; 64];
        let n = reset_v4(&orig, &mut out).unwrap();
        let r = &out[..n];
        assert!(l4_ok(r));
        assert_eq!(&r[24..28], &[0, 0, 0, 0]);
        assert_eq!(&r[28..32], &1011u32.to_be_bytes());
        assert_eq!(r[33], tcp_flags::RST | tcp_flags::ACK);
        // A RST is never answered.
        assert!(reset_v4(&segment(tcp_flags::RST, 1, 0, 0), &mut out).is_none());
        assert!(reset_v4(&orig[..30], &mut out).is_none());
    }
}
