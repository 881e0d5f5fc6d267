//! Masquerading (NAT) transmit, both directions (forwarding.md §4, §5): the
//! common step of §3, then the address/port rewrite of `crate::nat`.

use super::{
    lookup, lookup_from, prepare, prepare_view, send, IcmpSource, Method, PacketBuf, Paths,
    Transmit,
};
use crate::engine::DropReason;
use crate::nat::{self, Side};
use crate::wire::ipv4::Ipv4Packet;
use std::net::{IpAddr, Ipv4Addr};

/// IN direction: client → VIP:vport becomes client → RIP:dport (§4). TTL
/// is decremented first and the MTU checked after, as IPVS's route step
/// does, so an error quotes the decremented packet. A real server on the
/// director itself would get the translated packet from the kernel's own
/// stack, which lvsd cannot do: dropped.
#[inline(always)]
pub(crate) fn xmit_in(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    rip: Ipv4Addr,
    dport: u16,
) -> Transmit {
    let local = Transmit::Drop(DropReason::LocalTarget);
    let path = match lookup(paths, IpAddr::V4(rip), local) {
        Ok(p) => p,
        Err(t) => return t,
    };
    // The hot path of NAT: one view of the packet for the TTL and MTU
    // step and the rewrite (which recomputes the header checksum); the
    // engine checked these bytes when the packet came in.
    let (gso, partial, relay) = (pkt.gso_size, pkt.csum_partial, pkt.relay_icmp);
    let mut ip = Ipv4Packet::new_unchecked(pkt.bytes_mut());
    let from = IcmpSource::PacketDestination;
    if let Err(t) = prepare_view(&mut ip, path.mtu, !relay, from, true, true, gso, relay) {
        return t;
    }
    nat::rewrite_v4(&mut ip, Side::Destination, rip.octets(), dport, partial);
    send(Method::Masq, pkt, path)
}

/// OUT direction: RIP:dport → client becomes VIP:vport → client (§5). The
/// kernel's IP forwarding checks TTL and MTU before IPVS translates, and
/// its errors come from the director's own address. A reply to the
/// director's own connection is the host's. The route is the one from the
/// VIP with `reroute` (`snat_reroute`), else from the real server as the
/// reply came.
pub(crate) fn xmit_out(
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    vip: Ipv4Addr,
    vport: u16,
    caddr: IpAddr,
    reroute: bool,
) -> Transmit {
    let from = match (reroute, pkt.bytes().get(12..16)) {
        (false, Some(s)) => IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])),
        _ => IpAddr::V4(vip),
    };
    let path = match lookup_from(paths, caddr, from, Transmit::Pass) {
        Ok(p) => p,
        Err(t) => return t,
    };
    if let Err(t) = prepare(pkt, path.mtu, true, IcmpSource::Director, false, true) {
        return t;
    }
    rewrite(pkt, Side::Source, vip, vport);
    send(Method::Masq, pkt, path)
}

fn rewrite(pkt: &mut PacketBuf, side: Side, addr: Ipv4Addr, port: u16) {
    let partial = pkt.csum_partial;
    if let Ok(mut ip) = Ipv4Packet::new_checked(pkt.bytes_mut()) {
        nat::rewrite_v4(&mut ip, side, addr.octets(), port, partial);
    }
}
