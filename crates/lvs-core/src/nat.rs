//! Masquerading (NAT) as an in-place packet transformation
//! (forwarding.md §4, §5, §5.1): rewrite one address and its port, update
//! the L4 checksum incrementally, recompute the IPv4 header checksum.

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

/// Rewrites `side` of a TCP or UDP IPv4 packet to `addr:port`.
///
/// `csum_partial` says the L4 checksum field holds a non-complemented
/// pseudo-header sum left for checksum offload (only the address is part of
/// it, not the port), rather than a finished checksum. The caller has checked
/// that the L4 header is present.
pub fn rewrite_v4(
    pkt: &mut Ipv4Packet<&mut [u8]>,
    side: Side,
    addr: [u8; 4],
    port: u16,
    csum_partial: bool,
) {
    let protocol = pkt.protocol();
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
    let old_port = [l4[port_off], l4[port_off + 1]];
    let new_port = port.to_be_bytes();
    let check = u16::from_be_bytes([l4[csum_off], l4[csum_off + 1]]);
    l4[port_off..port_off + 2].copy_from_slice(&new_port);
    let new_check = if csum_partial {
        checksum::replace(check, &old_addr, &addr, false)
    } else if protocol == ipproto::UDP && check == 0 {
        // IPv4 UDP without checksum: IPVS adds a full one.
        l4[csum_off..csum_off + 2].copy_from_slice(&[0, 0]);
        let len = l4.len() as u16;
        let sum = checksum::pseudo_v4(src_after, dst_after, protocol, len);
        let c = !checksum::fold(checksum::add_bytes(sum, l4));
        if c == 0 {
            0xffff
        } else {
            c
        }
    } else {
        let mut old = [0u8; 6];
        old[..4].copy_from_slice(&old_addr);
        old[4..].copy_from_slice(&old_port);
        let mut new = [0u8; 6];
        new[..4].copy_from_slice(&addr);
        new[4..].copy_from_slice(&new_port);
        let c = checksum::replace(check, &old, &new, true);
        if protocol == ipproto::UDP && c == 0 {
            0xffff
        } else {
            c
        }
    };
    l4[csum_off..csum_off + 2].copy_from_slice(&new_check.to_be_bytes());
    match side {
        Side::Destination => pkt.set_dst(addr),
        Side::Source => pkt.set_src(addr),
    }
    pkt.fill_checksum();
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
}
