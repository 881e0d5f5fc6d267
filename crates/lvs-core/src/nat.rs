//! Masquerading (NAT) as an in-place packet transformation
//! (forwarding.md §4, §5, §5.1): rewrite one address and its port, update
//! the L4 checksum incrementally (TCP, UDP) or recompute it (SCTP's CRC32c),
//! recompute the IPv4 header checksum.

use crate::proto::sctp;
use crate::wire::checksum;
use crate::wire::ipproto;
use crate::wire::ipv4::Ipv4Packet;

/// Which end of the packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// IN direction: destination VIP:vport → RIP:dport.
    Destination,
    /// OUT direction: source RIP:dport → VIP:vport.
    Source,
}

/// Rewrites `side` of a TCP, UDP or SCTP IPv4 packet to `addr:port`.
///
/// `csum_partial` says the L4 checksum field holds a non-complemented
/// pseudo-header sum left for checksum offload (only the address is part of
/// it, not the port), rather than a finished checksum; for SCTP, that the
/// CRC32c was left for offload. The caller has checked that the L4 header is
/// present.
pub fn rewrite_v4(
    pkt: &mut Ipv4Packet<&mut [u8]>,
    side: Side,
    addr: [u8; 4],
    port: u16,
    csum_partial: bool,
) {
    let protocol = pkt.protocol();
    if protocol == ipproto::SCTP {
        rewrite_sctp_v4(pkt, side, addr, port, csum_partial);
        return;
    }
    let Some((csum_off, min_len)) = crate::wire::l4_layout(protocol) else {
        return;
    };
    let old_addr = match side {
        Side::Destination => pkt.dst_bytes(),
        Side::Source => pkt.src_bytes(),
    };
    let (src_after, dst_after) = match side {
        Side::Destination => (pkt.src_bytes(), addr),
        Side::Source => (addr, pkt.dst_bytes()),
    };
    let l4 = pkt.payload_mut();
    if l4.len() < min_len {
        return;
    }
    let port_off = match side {
        Side::Destination => 2,
        Side::Source => 0,
    };
    // IPv4 UDP without checksum: IPVS adds a full one.
    let pseudo = |len: usize| checksum::pseudo_v4(src_after, dst_after, protocol, len as u16);
    update_l4_check(
        l4,
        protocol,
        csum_off,
        port_off,
        port,
        (&old_addr, &addr),
        csum_partial,
        pseudo,
    );
    match side {
        Side::Destination => pkt.set_dst(addr),
        Side::Source => pkt.set_src(addr),
    }
    pkt.fill_checksum();
}

/// Writes `port` at `port_off` of the TCP or UDP header `l4` and updates
/// its checksum for that and for the address change `addrs` (old, new),
/// incrementally; a partial (offload) checksum covers only the address. A
/// UDP checksum of 0 is computed whole over `pseudo(l4 length)`, the
/// pseudo-header sum after the rewrite; a UDP result of 0 is sent as
/// 0xffff.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn update_l4_check(
    l4: &mut [u8],
    protocol: u8,
    csum_off: usize,
    port_off: usize,
    port: u16,
    addrs: (&[u8], &[u8]),
    csum_partial: bool,
    pseudo: impl FnOnce(usize) -> u32,
) {
    let old_port = [l4[port_off], l4[port_off + 1]];
    let new_port = port.to_be_bytes();
    let check = u16::from_be_bytes([l4[csum_off], l4[csum_off + 1]]);
    l4[port_off..port_off + 2].copy_from_slice(&new_port);
    let udp_nonzero = |c: u16| {
        if protocol == ipproto::UDP && c == 0 {
            0xffff
        } else {
            c
        }
    };
    let new_check = if csum_partial {
        checksum::replace(check, addrs.0, addrs.1, false)
    } else if protocol == ipproto::UDP && check == 0 {
        l4[csum_off..csum_off + 2].copy_from_slice(&[0, 0]);
        let sum = pseudo(l4.len());
        udp_nonzero(!checksum::fold(checksum::add_bytes(sum, l4)))
    } else {
        // Address and port, as one replacement.
        let n = addrs.0.len().min(16);
        let (mut old, mut new) = ([0u8; 18], [0u8; 18]);
        old[..n].copy_from_slice(&addrs.0[..n]);
        old[n..n + 2].copy_from_slice(&old_port);
        new[..n].copy_from_slice(&addrs.1[..n]);
        new[n..n + 2].copy_from_slice(&new_port);
        udp_nonzero(checksum::replace(check, &old[..n + 2], &new[..n + 2], true))
    };
    l4[csum_off..csum_off + 2].copy_from_slice(&new_check.to_be_bytes());
}

/// Rewrites `side` of a TCP, UDP or SCTP IPv6 packet (`b`, its transport
/// header at `l4_off`) to `addr:port`: the L4 checksum covers the
/// addresses through the pseudo-header and is updated incrementally (a
/// UDP checksum of 0, invalid over IPv6, is computed whole); there is no
/// IP header checksum. `csum_partial` as for `rewrite_v4`.
pub fn rewrite_v6(
    b: &mut [u8],
    l4_off: usize,
    protocol: u8,
    side: Side,
    addr: [u8; 16],
    port: u16,
    csum_partial: bool,
) {
    use crate::wire::ipv6;
    let at = match side {
        Side::Destination => ipv6::field::DST,
        Side::Source => ipv6::field::SRC,
    };
    if protocol == ipproto::SCTP {
        if sctp_port(&mut b[l4_off..], side, port, csum_partial) {
            b[at..at + 16].copy_from_slice(&addr);
        }
        return;
    }
    let Some((csum_off, min_len)) = crate::wire::l4_layout(protocol) else {
        return;
    };
    if b.len() < l4_off + min_len {
        return;
    }
    let mut old_addr = [0u8; 16];
    old_addr.copy_from_slice(&b[at..at + 16]);
    b[at..at + 16].copy_from_slice(&addr);
    let (src, dst) = (
        <[u8; 16]>::try_from(&b[ipv6::field::SRC..ipv6::field::SRC + 16]).unwrap_or_default(),
        <[u8; 16]>::try_from(&b[ipv6::field::DST..ipv6::field::DST + 16]).unwrap_or_default(),
    );
    let l4 = &mut b[l4_off..];
    let port_off = match side {
        Side::Destination => 2,
        Side::Source => 0,
    };
    // A UDP checksum of 0 (invalid over IPv6) is computed whole.
    let pseudo = |len: usize| checksum::pseudo_v6(src, dst, protocol, len as u32);
    update_l4_check(
        l4,
        protocol,
        csum_off,
        port_off,
        port,
        (&old_addr, &addr),
        csum_partial,
        pseudo,
    );
}

/// SCTP's CRC32c covers no address, so only the port matters to it. It is
/// recomputed over the whole SCTP packet when the port actually changes or
/// the checksum was left for offload, and otherwise left exactly as it came,
/// right or wrong (forwarding.md §5.1).
fn rewrite_sctp_v4(
    pkt: &mut Ipv4Packet<&mut [u8]>,
    side: Side,
    addr: [u8; 4],
    port: u16,
    csum_partial: bool,
) {
    if !sctp_port(pkt.payload_mut(), side, port, csum_partial) {
        return;
    }
    match side {
        Side::Destination => pkt.set_dst(addr),
        Side::Source => pkt.set_src(addr),
    }
    pkt.fill_checksum();
}

/// The SCTP part of a rewrite (see `rewrite_sctp_v4`); false when the
/// common header is cut short (nothing is changed then).
fn sctp_port(l4: &mut [u8], side: Side, port: u16, csum_partial: bool) -> bool {
    if l4.len() < sctp::COMMON_HEADER_LEN {
        return false;
    }
    let port_field = match side {
        Side::Destination => sctp::field::DST_PORT,
        Side::Source => sctp::field::SRC_PORT,
    };
    let new_port = port.to_be_bytes();
    if l4[port_field.clone()] != new_port || csum_partial {
        l4[port_field].copy_from_slice(&new_port);
        sctp::fill_checksum(l4);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an IPv4 TCP or UDP packet with correct checksums.
    pub fn packet(
        protocol: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_hdr = if protocol == ipproto::TCP { 20 } else { 8 };
        let total = 20 + l4_hdr + payload.len();
        let mut v = vec![0u8; total];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[6] = 0x40;
        v[8] = 64;
        v[9] = protocol;
        v[12..16].copy_from_slice(&src);
        v[16..20].copy_from_slice(&dst);
        v[20..22].copy_from_slice(&sport.to_be_bytes());
        v[22..24].copy_from_slice(&dport.to_be_bytes());
        if protocol == ipproto::TCP {
            v[32] = 5 << 4;
            v[33] = crate::wire::tcp_flags::SYN;
            v[34..36].copy_from_slice(&64240u16.to_be_bytes());
        } else {
            v[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        v[20 + l4_hdr..].copy_from_slice(payload);
        fill_l4_checksum(&mut v);
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        v
    }

    pub fn fill_l4_checksum(v: &mut [u8]) {
        let p = Ipv4Packet::new_checked(&*v).unwrap();
        let (src, dst, proto) = (p.src_bytes(), p.dst_bytes(), p.protocol());
        let off = if proto == ipproto::TCP { 36 } else { 26 };
        v[off..off + 2].copy_from_slice(&[0, 0]);
        let sum = checksum::pseudo_v4(src, dst, proto, (v.len() - 20) as u16);
        let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
        v[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }

    pub fn l4_checksum_ok(v: &[u8]) -> bool {
        let p = Ipv4Packet::new_checked(v).unwrap();
        let sum = checksum::pseudo_v4(
            p.src_bytes(),
            p.dst_bytes(),
            p.protocol(),
            (v.len() - 20) as u16,
        );
        checksum::fold(checksum::add_bytes(sum, &v[20..])) == 0xffff
    }

    const C: [u8; 4] = [198, 18, 0, 2];
    const V: [u8; 4] = [198, 18, 0, 100];
    const R: [u8; 4] = [198, 18, 1, 11];

    #[test]
    fn tcp_in_and_out_keep_checksums_valid() {
        let mut v = packet(ipproto::TCP, C, 40000, V, 80, b"GET / HTTP/1.0\r\n\r\n");
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 8080, false);
        assert!(p.verify_checksum());
        assert_eq!(p.dst_bytes(), R);
        assert_eq!(&v[22..24], &8080u16.to_be_bytes());
        assert!(l4_checksum_ok(&v));
        // Equal to a packet built directly for the real server.
        assert_eq!(
            v,
            packet(ipproto::TCP, C, 40000, R, 8080, b"GET / HTTP/1.0\r\n\r\n")
        );
        let mut back = packet(ipproto::TCP, R, 8080, C, 40000, b"HTTP/1.0 200 OK\r\n");
        let mut p = Ipv4Packet::new_checked(&mut back[..]).unwrap();
        rewrite_v4(&mut p, Side::Source, V, 80, false);
        assert_eq!(
            back,
            packet(ipproto::TCP, V, 80, C, 40000, b"HTTP/1.0 200 OK\r\n")
        );
    }

    #[test]
    fn udp_zero_checksum_gets_a_full_one() {
        let mut v = packet(ipproto::UDP, C, 5353, V, 53, b"query");
        v[26..28].copy_from_slice(&[0, 0]);
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 53, false);
        assert!(l4_checksum_ok(&v));
        assert_ne!(&v[26..28], &[0, 0]);
    }

    #[test]
    fn udp_incremental_matches_full() {
        let mut v = packet(ipproto::UDP, C, 5353, V, 53, b"odd");
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 5300, false);
        assert_eq!(v, packet(ipproto::UDP, C, 5353, R, 5300, b"odd"));
    }

    #[test]
    fn partial_checksum_updates_pseudo_header_only() {
        // What a local stack hands to a veth with offload: the field holds the
        // non-complemented pseudo-header sum.
        let mut v = packet(ipproto::TCP, C, 40000, V, 80, b"x");
        let len = (v.len() - 20) as u16;
        let partial = checksum::fold(checksum::pseudo_v4(C, V, ipproto::TCP, len));
        v[36..38].copy_from_slice(&partial.to_be_bytes());
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 8080, true);
        let want = checksum::fold(checksum::pseudo_v4(C, R, ipproto::TCP, len));
        assert_eq!(u16::from_be_bytes([v[36], v[37]]), want);
    }

    /// An IPv4 SCTP packet with a valid header checksum and a CRC32c computed
    /// by the bitwise reference (not by the code under test).
    fn sctp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, chunks: &[u8]) -> Vec<u8> {
        let total = 20 + 12 + chunks.len();
        let mut v = vec![0u8; total];
        v[0] = 0x45;
        v[1] = 0xbb;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        v[6] = 0x40;
        v[8] = 64;
        v[9] = ipproto::SCTP;
        v[12..16].copy_from_slice(&src);
        v[16..20].copy_from_slice(&dst);
        v[20..22].copy_from_slice(&sport.to_be_bytes());
        v[22..24].copy_from_slice(&dport.to_be_bytes());
        v[24..28].copy_from_slice(&0x1122_3344u32.to_be_bytes());
        v[32..].copy_from_slice(chunks);
        let crc = crate::proto::sctp::tests::crc32c_bitwise(&v[20..]);
        v[28..32].copy_from_slice(&crc.to_le_bytes());
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        v
    }

    /// INIT chunk: tag, a_rwnd, streams out/in, initial TSN.
    const INIT: [u8; 20] = [
        1, 0, 0, 20, 0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 3, 0xe8,
    ];
    /// DATA chunk with a 5-byte payload (length 21, padded to 24).
    const DATA: [u8; 24] = [
        0, 3, 0, 21, 0, 0, 3, 0xe8, 0, 0, 0, 0, 0, 0, 0, 0x2f, b'h', b'e', b'l', b'l', b'o', 0, 0,
        0,
    ];

    fn sctp_crc_ok(v: &[u8]) -> bool {
        let mut zeroed = v[20..].to_vec();
        zeroed[8..12].fill(0);
        let want = crate::proto::sctp::tests::crc32c_bitwise(&zeroed);
        v[28..32] == want.to_le_bytes()
    }

    #[test]
    fn sctp_in_and_out_recompute_the_crc_when_the_port_changes() {
        let mut v = sctp_packet(C, 40000, V, 80, &INIT);
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 8080, false);
        assert!(p.verify_checksum());
        assert!(sctp_crc_ok(&v));
        assert_eq!(v, sctp_packet(C, 40000, R, 8080, &INIT));

        let mut back = sctp_packet(R, 8080, C, 40000, &DATA);
        let mut p = Ipv4Packet::new_checked(&mut back[..]).unwrap();
        rewrite_v4(&mut p, Side::Source, V, 80, false);
        assert!(p.verify_checksum());
        assert!(sctp_crc_ok(&back));
        assert_eq!(back, sctp_packet(V, 80, C, 40000, &DATA));
    }

    #[test]
    fn sctp_same_port_leaves_the_crc_alone() {
        // A wrong CRC stays wrong: it is not recomputed when only the address
        // changes (the CRC covers no address).
        let mut v = sctp_packet(C, 40000, V, 80, &DATA);
        v[28] ^= 0xff;
        let crc_before = v[28..32].to_vec();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 80, false);
        assert!(p.verify_checksum());
        assert_eq!(p.dst_bytes(), R);
        assert_eq!(&v[28..32], &crc_before[..]);
        // A right one stays right.
        let mut v = sctp_packet(C, 40000, V, 80, &DATA);
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 80, false);
        assert_eq!(v, sctp_packet(C, 40000, R, 80, &DATA));
    }

    #[test]
    fn sctp_offloaded_crc_is_filled_in_even_without_a_port_change() {
        let mut v = sctp_packet(C, 40000, V, 80, &INIT);
        v[28..32].fill(0); // left for the NIC
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        rewrite_v4(&mut p, Side::Destination, R, 80, true);
        assert!(p.verify_checksum());
        assert!(sctp_crc_ok(&v));
        assert_eq!(v, sctp_packet(C, 40000, R, 80, &INIT));
    }

    #[test]
    fn sctp_truncated_common_header_is_left_untouched() {
        let full = sctp_packet(C, 40000, V, 80, &[]);
        for cut in 20..32 {
            let mut v = full[..cut].to_vec();
            v[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            let before = v.clone();
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            rewrite_v4(&mut p, Side::Destination, R, 8080, true);
            assert_eq!(v, before, "SCTP payload of {} bytes", cut - 20);
        }
    }

    #[test]
    fn sctp_rewrite_of_garbage_never_panics_and_keeps_checksums() {
        let mut rng = crate::rng::Rng::new(132);
        for _ in 0..20_000 {
            let n = (rng.next_u32() % 80) as usize;
            let chunks: Vec<u8> = (0..n).map(|_| rng.next_u32() as u8).collect();
            let mut v = sctp_packet(C, 40000, V, 80, &chunks);
            let port = [80, 8080][(rng.next_u32() & 1) as usize];
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            let partial = rng.next_u32() < u32::MAX / 3;
            rewrite_v4(&mut p, Side::Destination, R, port, partial);
            assert!(p.verify_checksum());
            assert!(sctp_crc_ok(&v));
            assert_eq!(v, sctp_packet(C, 40000, R, port, &chunks));
        }
    }
}
