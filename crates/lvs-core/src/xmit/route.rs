//! Direct routing transmit (forwarding.md §6): the packet keeps its
//! addresses and ports; only TTL (and the IPv4 header checksum) change, and
//! the frame goes to the real server's MAC address.

use super::{fragment_hint, prepare, IcmpSource, Method, PacketBuf, Paths, Send, Transmit};
use crate::engine::DropReason;
use std::net::IpAddr;

/// Sends `pkt` unchanged but for TTL to the real server `rip` as the next
/// hop ("known next hop": the real server's MAC although the IP
/// destination stays the VIP). A real server that is the director itself
/// gets the packet unmodified from the host.
pub fn xmit(pkt: &mut PacketBuf, paths: &impl Paths, rip: IpAddr) -> Transmit {
    let Some(path) = paths.path(rip) else {
        return Transmit::Drop(DropReason::NoRoute);
    };
    if path.local {
        return Transmit::Pass;
    }
    if let Err(t) = prepare(pkt, path.mtu, true, IcmpSource::PacketDestination, true) {
        return t;
    }
    Transmit::Send(Send {
        method: Method::Route,
        port: path.port,
        next_hop: path.next_hop,
        start: pkt.start,
        len: pkt.len,
        csum_partial: pkt.csum_partial,
        fragment: fragment_hint(pkt.len, path.mtu, pkt.is_gso()),
        segment: None,
    })
}

/// A packet IPVS leaves alone but that the host would IP-forward (a real
/// server's packet matching no entry, §5.2): TTL and MTU as the
/// forwarding path checks them (errors from the director), nothing else.
pub fn forward(pkt: &mut PacketBuf, paths: &impl Paths, to: IpAddr) -> Transmit {
    let Some(path) = paths.path(to) else {
        return Transmit::Drop(DropReason::NoRoute);
    };
    if path.local {
        return Transmit::Pass;
    }
    if let Err(t) = prepare(pkt, path.mtu, true, IcmpSource::Director, false) {
        return t;
    }
    Transmit::Send(Send {
        method: Method::Forwarded,
        port: path.port,
        next_hop: path.next_hop,
        start: pkt.start,
        len: pkt.len,
        csum_partial: pkt.csum_partial,
        fragment: fragment_hint(pkt.len, path.mtu, pkt.is_gso()),
        segment: None,
    })
}
