//! The transmit paths of IPv6 packets (forwarding.md §3–§6 for IPv6):
//! NAT66 in both directions and direct routing. The common step is the
//! hop limit (decremented; at 1 or 0 the packet is answered with ICMPv6
//! time exceeded) and the MTU: IPv6 routers never fragment, so a packet
//! over the path MTU is answered with ICMPv6 packet too big (the
//! `FragNeeded` reply), and no IPv6 link is below 1280 bytes.

use super::{lookup, IcmpError, IcmpSource, Method, PacketBuf, Path, Paths, Reply, Send, Transmit};
use crate::engine::DropReason;
use crate::nat::{self, Side};
use crate::wire::ipv6;
use std::net::{IpAddr, Ipv6Addr};

/// The IPv6 minimum link MTU (RFC 8200 §5).
pub const MIN_MTU: u16 = 1280;

/// Hop limit and MTU (see the module). `ttl_first`: IPVS's route step
/// decrements before the MTU check, so its error quotes the decremented
/// packet; the host's forwarding checks the MTU first.
fn prepare(
    pkt: &mut PacketBuf,
    mtu: u16,
    from: IcmpSource,
    ttl_first: bool,
) -> Result<(), Transmit> {
    let (gso, relay, frag_max) = (pkt.gso_size, pkt.relay_icmp, pkt.frag_max);
    let b = pkt.bytes_mut();
    let hop = b[ipv6::field::HOP_LIMIT];
    if hop <= 1 {
        if relay {
            return Err(Transmit::Drop(DropReason::TtlExceeded));
        }
        return Err(Transmit::Reply(Reply::Icmp {
            error: IcmpError::TimeExceeded,
            from,
        }));
    }
    // A GSO super-packet is checked by its segments' size, a reassembled
    // datagram by its largest fragment's (§3.4).
    let on_wire = if frag_max != 0 {
        usize::from(frag_max)
    } else if gso == 0 {
        b.len()
    } else {
        match ipv6::transport(b) {
            Ok(t) => {
                let l4 = &b[t.offset..];
                let hdr = match t.protocol {
                    crate::wire::ipproto::TCP if l4.len() >= 13 => usize::from(l4[12] >> 4) * 4,
                    crate::wire::ipproto::UDP => 8,
                    _ => 0,
                };
                (t.offset + hdr + usize::from(gso)).min(b.len())
            }
            Err(_) => b.len(),
        }
    };
    if on_wire > usize::from(mtu) && !relay {
        if ttl_first {
            b[ipv6::field::HOP_LIMIT] = hop - 1;
        }
        return Err(Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu },
            from,
        }));
    }
    b[ipv6::field::HOP_LIMIT] = hop - 1;
    Ok(())
}

/// The path to `to` (at least the IPv6 minimum MTU).
pub(super) fn forward_path(
    paths: &impl Paths,
    to: Ipv6Addr,
    on_local: Transmit,
) -> Result<Path, Transmit> {
    let mut p = lookup(paths, IpAddr::V6(to), on_local)?;
    p.mtu = p.mtu.max(MIN_MTU);
    Ok(p)
}

/// The path to `to` from `from` (`Paths::path_from`): for replies whose
/// source is rewritten (NAT66 OUT) or kept (`snat_reroute` 0).
pub(super) fn reply_path(
    paths: &impl Paths,
    to: Ipv6Addr,
    from: Ipv6Addr,
) -> Result<Path, Transmit> {
    let mut p = super::lookup_from(paths, IpAddr::V6(to), IpAddr::V6(from), Transmit::Pass)?;
    p.mtu = p.mtu.max(MIN_MTU);
    Ok(p)
}

/// The source a NAT66 reply is routed from: the VIP it gets (`reroute`,
/// `snat_reroute`) or the one it came with.
pub(super) fn reply_source(pkt: &PacketBuf, vip: Ipv6Addr, reroute: bool) -> Ipv6Addr {
    if reroute {
        return vip;
    }
    ipv6::src(pkt.bytes())
}

pub(super) fn send(method: Method, pkt: &PacketBuf, path: Path) -> Transmit {
    // SCTP's CRC32c was finished by the engine: no offload request.
    let sctp = pkt.csum_partial
        && ipv6::transport(pkt.bytes()).is_ok_and(|t| t.protocol == crate::wire::ipproto::SCTP);
    Transmit::Send(Send {
        method,
        port: path.port,
        next_hop: path.next_hop,
        start: pkt.start,
        len: pkt.len,
        csum_partial: pkt.csum_partial && !sctp,
        // A reassembled datagram leaves in fragments no larger than the
        // largest it came in (nor than the path MTU), as the kernel's
        // output fragments a defragmented packet.
        fragment: (pkt.frag_max != 0)
            .then(|| pkt.frag_max.min(path.mtu))
            .filter(|&m| pkt.len > usize::from(m)),
        segment: None,
    })
}

/// The common step for an ICMPv6 error passed on (§9.2, §9.3): the hop
/// limit only — no error is ever sent about an error, and the MTU check
/// does not apply to them.
pub(super) fn prepare_relay(pkt: &mut PacketBuf, from: IcmpSource) -> Result<(), Transmit> {
    pkt.relay_icmp = true;
    // No MTU can stop it: the check is skipped for relayed errors.
    prepare(pkt, u16::MAX, from, false)
}

/// The common step for an IPv6 packet entering a tunnel (§7.1, §7.5): the
/// hop limit, and the tunnel MTU `tmtu` (always checked for IPv6; a packet
/// over it is answered with packet too big carrying `tmtu`).
pub(super) fn prepare_tunnel(pkt: &mut PacketBuf, tmtu: u16) -> Result<(), Transmit> {
    prepare(pkt, tmtu, IcmpSource::PacketDestination, true)
}

/// NAT66, IN direction: client → VIP:vport becomes client → RIP:dport.
pub(crate) fn masq_in(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    rip: Ipv6Addr,
    dport: u16,
) -> Transmit {
    let p = match forward_path(paths, rip, Transmit::Drop(DropReason::LocalTarget)) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, p.mtu, IcmpSource::PacketDestination, true) {
        return t;
    }
    rewrite(pkt, Side::Destination, rip, dport);
    send(Method::Masq, pkt, p)
}

/// NAT66, OUT direction: RIP:dport → client becomes VIP:vport → client;
/// the host's forwarding checks come first, its errors from the director.
pub(crate) fn masq_out(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    vip: Ipv6Addr,
    vport: u16,
    caddr: Ipv6Addr,
    reroute: bool,
) -> Transmit {
    let from = reply_source(pkt, vip, reroute);
    let p = match reply_path(paths, caddr, from) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, p.mtu, IcmpSource::Director, false) {
        return t;
    }
    rewrite(pkt, Side::Source, vip, vport);
    send(Method::Masq, pkt, p)
}

fn rewrite(pkt: &mut PacketBuf, side: Side, addr: Ipv6Addr, port: u16) {
    let partial = pkt.csum_partial;
    let b = pkt.bytes_mut();
    if let Ok(t) = ipv6::transport(b) {
        nat::rewrite_v6(b, t.offset, t.protocol, side, addr.octets(), port, partial);
    }
}

/// Direct routing (and BYPASS): unchanged but for the hop limit, to `to`'s
/// next hop.
pub(crate) fn route(pkt: &mut PacketBuf, paths: &impl Paths, to: Ipv6Addr) -> Transmit {
    unchanged(
        pkt,
        paths,
        to,
        Method::Route,
        IcmpSource::PacketDestination,
        true,
    )
}

/// A packet the host would forward (a NAT real server's packet matching no
/// entry): errors from the director, MTU checked first.
pub(crate) fn forward(pkt: &mut PacketBuf, paths: &impl Paths, to: Ipv6Addr) -> Transmit {
    unchanged(
        pkt,
        paths,
        to,
        Method::Forwarded,
        IcmpSource::Director,
        false,
    )
}

fn unchanged(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    to: Ipv6Addr,
    method: Method,
    from: IcmpSource,
    ttl_first: bool,
) -> Transmit {
    let p = match forward_path(paths, to, Transmit::Pass) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, p.mtu, from, ttl_first) {
        return t;
    }
    if pkt.csum_partial {
        finish_sctp_crc(pkt);
    }
    send(method, pkt, p)
}

/// SCTP's CRC32c cannot be left to an Internet-checksum offload request.
fn finish_sctp_crc(pkt: &mut PacketBuf) {
    let b = pkt.bytes_mut();
    if let Ok(t) = ipv6::transport(b) {
        if t.protocol == crate::wire::ipproto::SCTP {
            crate::proto::sctp::fill_checksum(&mut b[t.offset..]);
        }
    }
}
