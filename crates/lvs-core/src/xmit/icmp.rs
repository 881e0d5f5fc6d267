//! ICMP errors related to connections (forwarding.md §9): the embedded
//! packet names the connection; for NAT both the outer and the embedded
//! headers are translated (the embedded L4 checksum is left alone, as the
//! kernel does), for the other methods the error travels like a data
//! packet of the connection.

use crate::wire::checksum;
use crate::wire::icmp::{DEST_UNREACH, SOURCE_QUENCH, TIME_EXCEEDED};
use crate::wire::ipproto;
use crate::wire::ipv4::Ipv4Packet;
use std::net::{IpAddr, Ipv4Addr};

/// ICMP header length before the embedded packet.
const ICMP_HDR: usize = 8;

/// What an ICMP error says about the packet it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Related {
    /// Offset of the embedded IP header from the outer IP header.
    pub inner_off: usize,
    /// Embedded header length.
    pub inner_hl: usize,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Parses an IPv4 ICMP error whose embedded packet is TCP, UDP or SCTP
/// with its ports present (§9.1). `None` for anything else: other ICMP
/// types, a truncated or malformed quote, a non-first embedded fragment.
pub fn related(ip: &Ipv4Packet<&[u8]>) -> Option<Related> {
    if ip.protocol() != ipproto::ICMP {
        return None;
    }
    let icmp = ip.payload();
    if icmp.len() < ICMP_HDR + 20 + 8
        || !matches!(icmp[0], DEST_UNREACH | SOURCE_QUENCH | TIME_EXCEEDED)
    {
        return None;
    }
    let inner = &icmp[ICMP_HDR..];
    if inner[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(inner[0] & 0x0f) * 4;
    if hl < 20 || inner.len() < hl + 8 {
        return None;
    }
    // A non-first fragment quotes no ports.
    if u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0 {
        return None;
    }
    let protocol = inner[9];
    if !matches!(protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP) {
        return None;
    }
    let l4 = &inner[hl..];
    Some(Related {
        inner_off: ip.header_len() + ICMP_HDR,
        inner_hl: hl,
        protocol,
        src: Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        dst: Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

/// An ICMP error about one of the director's own tunnel packets (§9.2,
/// tunnel errors): the quoted packet is IPIP, GUE or GRE towards a real
/// server, and inside it the client's packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelRelated {
    pub typ: u8,
    pub code: u8,
    /// The 4 bytes after the ICMP checksum (next-hop MTU in the low half
    /// for "fragmentation needed").
    pub info: u32,
    /// The real server the tunnel packet went to.
    pub rip: Ipv4Addr,
    pub kind: crate::service::TunnelType,
    /// GUE: the destination port of the tunnel packet.
    pub port: u16,
    /// Offset of the client's packet from the outer IP header, and how many
    /// of its bytes the error quotes.
    pub inner_off: usize,
    pub inner_len: usize,
    /// The client's packet: its 5-tuple and DF.
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub df: bool,
}

/// Parses an ICMP error quoting a tunnel packet (IPIP; UDP carrying GUE
/// version 0 without control flag and inner protocol 4; GRE version 0 with
/// only the checksum flag and protocol 0x0800) whose inner packet is an
/// IPv4 TCP/UDP/SCTP packet with its ports quoted. Whether the tunnel
/// packet went to a real server of that type is the caller's question.
pub fn tunnel_related(ip: &Ipv4Packet<&[u8]>) -> Option<TunnelRelated> {
    use crate::service::TunnelType;
    if ip.protocol() != ipproto::ICMP {
        return None;
    }
    let icmp = ip.payload();
    if icmp.len() < ICMP_HDR + 20
        || !matches!(icmp[0], DEST_UNREACH | SOURCE_QUENCH | TIME_EXCEEDED)
    {
        return None;
    }
    let outer = &icmp[ICMP_HDR..];
    if outer[0] >> 4 != 4 {
        return None;
    }
    let ohl = usize::from(outer[0] & 0x0f) * 4;
    if ohl < 20 || outer.len() < ohl || u16::from_be_bytes([outer[6], outer[7]]) & 0x3fff != 0 {
        return None;
    }
    let after = &outer[ohl..];
    let (kind, port, skip) = match outer[9] {
        4 => (TunnelType::Ipip, 0, 0),
        17 => {
            let g = after.get(8..12)?;
            // GUE version 0, C 0, inner protocol IPIP.
            if g[0] & 0xe0 != 0 || g[1] != 4 {
                return None;
            }
            let hlen = usize::from(g[0] & 0x1f) * 4;
            (
                TunnelType::Gue,
                u16::from_be_bytes([after[2], after[3]]),
                8 + 4 + hlen,
            )
        }
        47 => {
            let g = after.get(0..4)?;
            let flags = u16::from_be_bytes([g[0], g[1]]);
            if flags & !0x8000 != 0 || u16::from_be_bytes([g[2], g[3]]) != 0x0800 {
                return None;
            }
            (TunnelType::Gre, 0, if flags & 0x8000 != 0 { 8 } else { 4 })
        }
        _ => return None,
    };
    let inner = after.get(skip..)?;
    if inner.len() < 20 || inner[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if ihl < 20 || inner.len() < ihl + 4 || u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0 {
        return None;
    }
    let protocol = inner[9];
    if !matches!(protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP) {
        return None;
    }
    let l4 = &inner[ihl..];
    Some(TunnelRelated {
        typ: icmp[0],
        code: icmp[1],
        info: u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        rip: Ipv4Addr::new(outer[16], outer[17], outer[18], outer[19]),
        kind,
        port,
        inner_off: ip.header_len() + ICMP_HDR + ohl + skip,
        inner_len: inner.len(),
        protocol,
        src: Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        dst: Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        df: inner[6] & 0x40 != 0,
    })
}

/// True if the ICMP checksum over the whole message verifies.
pub fn checksum_ok(pkt: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
        return false;
    };
    checksum::fold(checksum::add_bytes(0, ip.payload())) == 0xffff
}

/// Which side of the exchange the NAT rewrite restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatSide {
    /// From the client side (§9.2): outer destination, embedded source
    /// and source port become the real server's.
    In,
    /// From the real server (§9.3): outer source, embedded destination
    /// and destination port become the VIP's.
    Out,
}

/// Rewrites a related ICMP error for a NAT connection: outer address,
/// embedded address and port, both IPv4 header checksums and the ICMP
/// checksum; the embedded L4 checksum is not touched.
pub fn nat_rewrite(pkt: &mut [u8], r: &Related, side: NatSide, addr: IpAddr, port: u16) {
    let IpAddr::V4(a) = addr else { return };
    let a = a.octets();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *pkt) else {
        return;
    };
    match side {
        NatSide::In => ip.set_dst(a),
        NatSide::Out => ip.set_src(a),
    }
    ip.fill_checksum();
    let hl = ip.header_len();
    let total = ip.total_len();
    let off = r.inner_off;
    let (addr_field, port_field) = match side {
        NatSide::In => (off + 12, off + r.inner_hl),
        NatSide::Out => (off + 16, off + r.inner_hl + 2),
    };
    if total < off + r.inner_hl + 8 {
        return;
    }
    pkt[addr_field..addr_field + 4].copy_from_slice(&a);
    pkt[port_field..port_field + 2].copy_from_slice(&port.to_be_bytes());
    pkt[off + 10..off + 12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&pkt[off..off + r.inner_hl]);
    pkt[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
    pkt[hl + 2..hl + 4].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&pkt[hl..total]);
    pkt[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
}

use super::{lookup, prepare, send, IcmpSource, Method, PacketBuf, Paths, Transmit};
use crate::engine::DropReason;

/// §9.2 for a NAT connection: to the real server, translated.
pub(crate) fn xmit_nat_in(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    r: &Related,
    rip: IpAddr,
    dport: u16,
) -> Transmit {
    let path = match lookup(paths, rip, Transmit::Drop(DropReason::LocalTarget)) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(
        pkt,
        path.mtu,
        false,
        IcmpSource::PacketDestination,
        true,
        false,
    ) {
        return t;
    }
    nat_rewrite(pkt.bytes_mut(), r, NatSide::In, rip, dport);
    send(Method::Masq, pkt, path)
}

/// §9.3 for a NAT connection: to the client, translated, then forwarded as
/// the host's IP forwarding would (TTL, errors from the director).
pub(crate) fn xmit_nat_out(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    r: &Related,
    vip: IpAddr,
    vport: u16,
    reroute: bool,
) -> Transmit {
    let (to, src) = match Ipv4Packet::new_checked(pkt.bytes()) {
        Ok(ip) => (IpAddr::V4(ip.dst()), IpAddr::V4(ip.src())),
        Err(_) => return Transmit::Drop(DropReason::Malformed),
    };
    // Routed from the VIP the error now comes from (`snat_reroute`), else
    // from its own source.
    let from = if reroute { vip } else { src };
    let path = match super::lookup_from(paths, to, from, Transmit::Pass) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, path.mtu, false, IcmpSource::Director, false, false) {
        return t;
    }
    nat_rewrite(pkt.bytes_mut(), r, NatSide::Out, vip, vport);
    send(Method::Masq, pkt, path)
}
