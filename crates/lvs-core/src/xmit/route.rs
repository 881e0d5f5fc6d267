//! Direct routing transmit (forwarding.md §6): the packet keeps its
//! addresses and ports; only TTL (and the IPv4 header checksum) change, and
//! the frame goes to the real server's MAC address.

use super::{lookup, prepare, send, IcmpSource, Method, PacketBuf, Paths, Transmit};
use crate::engine::DropReason;
use std::net::IpAddr;

/// Sends `pkt` unchanged but for TTL to the real server `rip` as the next
/// hop ("known next hop": the real server's MAC although the IP
/// destination stays the VIP). A real server that is the director itself
/// gets the packet unmodified from the host.
pub(crate) fn xmit(pkt: &mut PacketBuf, paths: &impl Paths, rip: IpAddr) -> Transmit {
    match (super::is_v6(pkt), rip) {
        (true, IpAddr::V6(rip)) => return super::v6::route(pkt, paths, rip),
        (false, IpAddr::V4(_)) => {}
        _ => return Transmit::Drop(DropReason::UnsupportedForward),
    }
    unchanged(
        pkt,
        paths,
        rip,
        Method::Route,
        IcmpSource::PacketDestination,
        true,
    )
}

/// A packet IPVS leaves alone but that the host would IP-forward (a real
/// server's packet matching no entry, §5.2): TTL and MTU as the
/// forwarding path checks them (errors from the director), nothing else.
pub(crate) fn forward(pkt: &mut PacketBuf, paths: &impl Paths, to: IpAddr) -> Transmit {
    match (super::is_v6(pkt), to) {
        (true, IpAddr::V6(to)) => return super::v6::forward(pkt, paths, to),
        (false, IpAddr::V4(_)) => {}
        _ => return Transmit::Drop(DropReason::UnsupportedForward),
    }
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
    to: IpAddr,
    method: Method,
    from: IcmpSource,
    ttl_first: bool,
) -> Transmit {
    let path = match lookup(paths, to, Transmit::Pass) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, path.mtu, true, from, ttl_first, false) {
        return t;
    }
    super::finish_sctp_crc(pkt);
    send(method, pkt, path)
}
