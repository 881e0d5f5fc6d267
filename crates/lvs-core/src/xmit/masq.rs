//! Masquerading (NAT) transmit, both directions (forwarding.md §4, §5): the
//! common step of §3, then the address/port rewrite of `crate::nat`.

use super::{fragment_hint, prepare, IcmpSource, Method, PacketBuf, Paths, Send, Transmit};
use crate::engine::DropReason;
use crate::nat::{self, Side};
use crate::wire::ipv4::Ipv4Packet;
use std::net::{IpAddr, Ipv4Addr};

/// IN direction: client → VIP:vport becomes client → RIP:dport (§4). TTL
/// is decremented first and the MTU checked after, as IPVS's route step
/// does, so an error quotes the decremented packet.
pub fn xmit_in(pkt: &mut PacketBuf, paths: &impl Paths, rip: Ipv4Addr, dport: u16) -> Transmit {
    let Some(path) = paths.path(IpAddr::V4(rip)) else {
        return Transmit::Drop(DropReason::NoRoute);
    };
    if path.local {
        // A real server on the director itself: the kernel delivers the
        // translated packet to its own stack, which lvsd cannot do.
        return Transmit::Drop(DropReason::LocalTarget);
    }
    if let Err(t) = prepare(pkt, path.mtu, true, IcmpSource::PacketDestination, true) {
        return t;
    }
    rewrite(pkt, Side::Destination, rip, dport);
    send(pkt, path)
}

/// OUT direction: RIP:dport → client becomes VIP:vport → client (§5). The
/// kernel's IP forwarding checks TTL and MTU before IPVS translates, and
/// its errors come from the director's own address.
pub fn xmit_out(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    vip: Ipv4Addr,
    vport: u16,
    caddr: IpAddr,
) -> Transmit {
    let Some(path) = paths.path(caddr) else {
        return Transmit::Drop(DropReason::NoRoute);
    };
    if path.local {
        // A reply to the director's own connection: the host has it.
        return Transmit::Pass;
    }
    if let Err(t) = prepare(pkt, path.mtu, true, IcmpSource::Director, false) {
        return t;
    }
    rewrite(pkt, Side::Source, vip, vport);
    send(pkt, path)
}

fn rewrite(pkt: &mut PacketBuf, side: Side, addr: Ipv4Addr, port: u16) {
    let partial = pkt.csum_partial;
    if let Ok(mut ip) = Ipv4Packet::new_checked(pkt.bytes_mut()) {
        nat::rewrite_v4(&mut ip, side, addr.octets(), port, partial);
    }
}

fn send(pkt: &PacketBuf, path: super::Path) -> Transmit {
    Transmit::Send(Send {
        method: Method::Masq,
        port: path.port,
        next_hop: path.next_hop,
        start: pkt.start,
        len: pkt.len,
        csum_partial: pkt.csum_partial,
        fragment: fragment_hint(pkt.len, path.mtu, pkt.is_gso()),
        segment: None,
    })
}
