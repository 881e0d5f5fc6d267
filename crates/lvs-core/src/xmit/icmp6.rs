//! ICMPv6 errors about connections (forwarding.md §9 for IPv6): every
//! ICMPv6 error type (< 128) quoting a TCP, UDP or SCTP packet is
//! "related"; for NAT66 connections it is translated both ways — outer
//! address, quoted address and port — and its checksum recomputed over
//! the IPv6 pseudo-header with the new outer addresses. The quoted
//! packet's own L4 checksum is not touched.

use super::v6::{forward_path, prepare_relay, send};
use super::{IcmpSource, Method, PacketBuf, Paths, Transmit};
use crate::engine::DropReason;
use crate::wire::{checksum, ipproto, ipv6};
use std::net::Ipv6Addr;

/// ICMPv6 header: type, code, checksum, 4 bytes of info.
const ICMP_HDR: usize = 8;

/// An ICMPv6 error quoting a TCP, UDP or SCTP packet, with its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Related6 {
    /// Offset of the ICMPv6 header in the packet.
    pub icmp_off: usize,
    /// Offset of the quoted IPv6 header, and of its transport header.
    pub inner_off: usize,
    pub inner_l4: usize,
    pub protocol: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
}

/// The related error in IPv6 packet `b` (cut to its length) whose ICMPv6
/// header is at `icmp_off`; `None` for informational messages, quotes that
/// are not TCP/UDP/SCTP with their ports, non-first quoted fragments.
pub fn related(b: &[u8], icmp_off: usize) -> Option<Related6> {
    let icmp = b.get(icmp_off..)?;
    if icmp.len() < ICMP_HDR + ipv6::HEADER_LEN || icmp[0] >= 128 {
        return None;
    }
    let inner_off = icmp_off + ICMP_HDR;
    let inner = &b[inner_off..];
    if inner[0] >> 4 != 6 {
        return None;
    }
    let t = ipv6::transport(inner).ok()?;
    if !matches!(t.protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP) {
        return None;
    }
    if t.fragment && fragment_offset(inner).is_none_or(|o| o != 0) {
        return None;
    }
    let l4 = inner.get(t.offset..t.offset + 4)?;
    Some(Related6 {
        icmp_off,
        inner_off,
        inner_l4: inner_off + t.offset,
        protocol: t.protocol,
        src: ipv6::src(inner),
        dst: ipv6::dst(inner),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

/// The fragment offset of the first fragment header of `p`, if any.
fn fragment_offset(p: &[u8]) -> Option<u16> {
    let mut next = p[ipv6::field::NEXT_HEADER];
    let mut at = ipv6::HEADER_LEN;
    for _ in 0..8 {
        match next {
            ipv6::nexthdr::FRAGMENT => {
                let h = p.get(at..at + 4)?;
                return Some(u16::from_be_bytes([h[2], h[3]]) >> 3);
            }
            ipv6::nexthdr::HOP_BY_HOP | ipv6::nexthdr::ROUTING | ipv6::nexthdr::DEST_OPTS => {
                let h = p.get(at..at + 2)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            _ => return None,
        }
    }
    None
}

/// Whether the ICMPv6 checksum of IPv6 packet `b` is right.
pub fn checksum_ok(b: &[u8], icmp_off: usize) -> bool {
    let Some(m) = b.get(icmp_off..) else {
        return false;
    };
    let sum = checksum::pseudo_v6(
        ipv6::src(b).octets(),
        ipv6::dst(b).octets(),
        ipv6::nexthdr::ICMPV6,
        m.len() as u32,
    );
    checksum::fold(checksum::add_bytes(sum, m)) == 0xffff
}

/// Which side the translation restores (see `super::icmp::NatSide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// From the client side: outer destination, quoted source address and
    /// port become the real server's.
    In,
    /// From the real server's side: outer source, quoted destination
    /// address and port become the VIP's.
    Out,
}

/// Rewrites the error in place (see the module) and recomputes its
/// checksum.
pub fn nat_rewrite(b: &mut [u8], r: &Related6, side: Side, addr: Ipv6Addr, port: u16) {
    let (outer, inner, port_at) = match side {
        Side::In => (ipv6::field::DST, ipv6::field::SRC, r.inner_l4),
        Side::Out => (ipv6::field::SRC, ipv6::field::DST, r.inner_l4 + 2),
    };
    if b.len() < port_at + 2 {
        return;
    }
    b[outer..outer + 16].copy_from_slice(&addr.octets());
    let inner = r.inner_off + inner;
    b[inner..inner + 16].copy_from_slice(&addr.octets());
    b[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let at = r.icmp_off;
    b[at + 2..at + 4].copy_from_slice(&[0, 0]);
    let sum = checksum::pseudo_v6(
        ipv6::src(b).octets(),
        ipv6::dst(b).octets(),
        ipv6::nexthdr::ICMPV6,
        (b.len() - at) as u32,
    );
    let c = !checksum::fold(checksum::add_bytes(sum, &b[at..]));
    b[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
}

/// §9.2 for a NAT66 connection: to the real server, translated (hop
/// limit decremented, never a packet too big about an error).
pub(crate) fn xmit_nat_in(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    r: &Related6,
    rip: Ipv6Addr,
    dport: u16,
) -> Transmit {
    let p = match forward_path(paths, rip, Transmit::Drop(DropReason::LocalTarget)) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare_relay(pkt, IcmpSource::PacketDestination) {
        return t;
    }
    nat_rewrite(pkt.bytes_mut(), r, Side::In, rip, dport);
    send(Method::Masq, pkt, p)
}

/// §9.3 for a NAT66 connection: to the client, translated, forwarded as
/// the host would.
pub(crate) fn xmit_nat_out(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    r: &Related6,
    vip: Ipv6Addr,
    vport: u16,
    reroute: bool,
) -> Transmit {
    let to = ipv6::dst(pkt.bytes());
    let from = super::v6::reply_source(pkt, vip, reroute);
    let p = match super::v6::reply_path(paths, to, from) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare_relay(pkt, IcmpSource::Director) {
        return t;
    }
    nat_rewrite(pkt.bytes_mut(), r, Side::Out, vip, vport);
    send(Method::Masq, pkt, p)
}
