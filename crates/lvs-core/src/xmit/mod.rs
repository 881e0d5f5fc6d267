//! The transmit seam: how a packet leaves the director (forwarding.md
//! §3–§8). The engine answers every packet with a [`Transmit`]: leave it to
//! the host, drop it, send it (with the method, the path, where the bytes
//! now start in the buffer and what is left for the I/O layer), or answer
//! its sender (an ICMP error, a TCP reset).
//!
//! Each forwarding method has one home here, as in the kernel's transmit
//! paths: [`masq`] (NAT, both directions), [`route`] (direct routing) and
//! [`tunnel`] (IPIP, GUE, GRE). The common step of §3 (route, local
//! policy, TTL, MTU) is [`prepare`]. Which method an entry uses is answered
//! once, by [`Method::of_flags`].
//!
//! The engine does not know the host's routes: the caller passes a
//! [`Paths`], which answers "how do I reach this address" with its own port
//! handle, the next hop, the source address it would use, the MTU and
//! whether the address is the host's own (the kernel's route lookup and
//! its per-destination route cache).

pub mod icmp;
pub mod icmp6;
pub mod masq;
pub mod route;
pub mod tunnel;
pub mod v6;

use crate::conn::flags as cf;
use crate::engine::DropReason;
use crate::service::{Forward, TunnelType};
use crate::wire::ipv4::Ipv4Packet;
use std::net::IpAddr;

/// Room in front of a received packet for an outer header: IPv6 (40) +
/// UDP (8) + GUE with remote checksum offload (12), rounded up.
pub const HEADROOM: usize = 64;

/// An IP packet inside a buffer that may have room in front of it.
pub struct PacketBuf<'a> {
    /// The whole buffer; the packet is `buf[start..start + len]`.
    pub buf: &'a mut [u8],
    pub start: usize,
    pub len: usize,
    /// The L4 checksum field holds a partial pseudo-header sum (offload).
    pub csum_partial: bool,
    /// A GSO super-packet (segmented on output) with this segment payload
    /// size; 0 for an ordinary packet.
    pub gso_size: u16,
    /// Set by the engine for an ICMP error it relays: such a packet never
    /// triggers "fragmentation needed" (§3.4).
    pub relay_icmp: bool,
    /// Set by the engine for an IPv6 datagram it reassembled: the largest
    /// fragment's size, which the MTU check uses instead of the length and
    /// which bounds the fragments made again on output (0: not
    /// reassembled).
    pub frag_max: u16,
    /// Set by the engine with `Send::segment` for a tunnel: the
    /// encapsulation each segment gets.
    pub encap: Option<tunnel::Encap>,
}

impl<'a> PacketBuf<'a> {
    /// A packet of `len` bytes at `start` in `buf`; the bytes after it are
    /// room the engine may use (a reassembled datagram is written there).
    pub fn with_len(buf: &'a mut [u8], start: usize, len: usize) -> Self {
        let len = len.min(buf.len().saturating_sub(start));
        PacketBuf {
            buf,
            start,
            len,
            csum_partial: false,
            gso_size: 0,
            relay_icmp: false,
            frag_max: 0,
            encap: None,
        }
    }

    /// A packet filling `buf` from `start` to the end.
    pub fn new(buf: &'a mut [u8], start: usize) -> Self {
        let len = buf.len().saturating_sub(start);
        Self::with_len(buf, start, len)
    }
    /// True for a GSO super-packet.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_size != 0
    }
    /// The packet's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
    /// The packet's bytes, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// How the caller reaches an address: its answer to a route lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The caller's handle for the egress interface.
    pub port: u32,
    /// The neighbour the frame goes to (the address itself when on-link).
    pub next_hop: IpAddr,
    /// The route MTU.
    pub mtu: u16,
    /// The address is one of the host's own (the target is local, §3.2).
    pub local: bool,
}

/// The caller's routing table, as the engine needs it.
pub trait Paths {
    /// The path to `to`, or `None` when there is no route.
    fn path(&self, to: IpAddr) -> Option<Path>;
    /// The path to `to` for a packet whose source is `from`: where
    /// policy routing selects by source, a NAT reply re-routed after its
    /// source became the VIP (`snat_reroute`) or a tunnel's outer packet
    /// may take another route than `path` gives.
    fn path_from(&self, to: IpAddr, from: IpAddr) -> Option<Path> {
        let _ = from;
        self.path(to)
    }
    /// The source address the host would use towards `to` (the route's
    /// preferred source): a tunnel's outer source (§7). Asked only for
    /// tunnels, so the NAT and DR paths do not pay for it.
    fn source(&self, to: IpAddr) -> Option<IpAddr>;
    /// Whether `a` is one of the host's own addresses (a packet from one
    /// is martian). Asked when a packet would make a new entry.
    fn is_local(&self, a: IpAddr) -> bool {
        self.path(a).is_some_and(|p| p.local)
    }
}

/// Every address on-link behind port 0 with one MTU: for tests, replay and
/// benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct OnLink {
    /// Source address the director uses (the tunnel's outer source).
    pub src: IpAddr,
    pub mtu: u16,
}

impl Paths for OnLink {
    #[inline]
    fn path(&self, to: IpAddr) -> Option<Path> {
        Some(Path {
            port: 0,
            next_hop: to,
            mtu: self.mtu,
            local: to == self.src,
        })
    }
    #[inline]
    fn source(&self, _to: IpAddr) -> Option<IpAddr> {
        Some(self.src)
    }
}

/// The forwarding method an entry's packet leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// NAT (the IN or the OUT direction).
    Masq,
    /// Direct routing: only TTL and the L2 next hop change.
    Route,
    /// Encapsulated towards the real server.
    Tunnel(TunnelType),
    /// A packet IPVS does not translate, forwarded as the host's IP
    /// forwarding would (a real server's packet that matches no entry).
    Forwarded,
}

impl Method {
    /// The method of an entry (its flags' forwarding bits); `None` for
    /// LOCALNODE (delivered to the host untouched).
    #[inline]
    pub fn of_flags(flags: u32, tunnel: TunnelType) -> Option<Method> {
        match flags & cf::FWD_MASK {
            x if x == Forward::Masq as u32 => Some(Method::Masq),
            x if x == Forward::Route as u32 => Some(Method::Route),
            x if x == Forward::Tunnel as u32 => Some(Method::Tunnel(tunnel)),
            _ => None,
        }
    }
}

/// A packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub method: Method,
    /// The caller's port handle and the neighbour to send to.
    pub port: u32,
    pub next_hop: IpAddr,
    /// Where the packet to send now is in the buffer (an encapsulation
    /// moves `start` back into the headroom).
    pub start: usize,
    pub len: usize,
    /// The L4 checksum is still partial, at the same offset from the IP
    /// header as it was received: the I/O layer keeps the offload request
    /// (moved by `start`'s shift, which is 0 unless encapsulated — then it
    /// is always false).
    pub csum_partial: bool,
    /// The packet is larger than the path MTU and may be fragmented (DF
    /// clear, or marked "ignore DF" after the checks of §3.4): the I/O
    /// layer splits it into fragments of at most this size.
    pub fragment: Option<u16>,
    /// A GSO super-packet the I/O layer must cut into TCP segments of this
    /// many payload bytes itself (`wire::tcp::segment`), because the kernel
    /// cannot be asked to; each segment is then wrapped with
    /// `PacketBuf::encap` when that is set. `None` when the offload
    /// metadata can simply travel with the packet.
    pub segment: Option<u16>,
}

/// Where a director-built ICMP error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpSource {
    /// The address the offending packet was sent to (the VIP): IPVS's own
    /// errors, sent from LOCAL_IN.
    PacketDestination,
    /// The director's address on the receiving interface: errors of the
    /// host's IP forwarding, or about packets not addressed to the director.
    Director,
}

/// An ICMP error the director sends back to a packet's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Destination unreachable, port unreachable (type 3 code 3).
    PortUnreachable,
    /// Destination unreachable, fragmentation needed (3/4) with this MTU.
    FragNeeded { mtu: u16 },
    /// Time exceeded in transit (11/0).
    TimeExceeded,
    /// A new error of this type and code with this info field: a tunnel
    /// path's error passed on to the client about its own packet (§9.2).
    Relay { typ: u8, code: u8, info: u32 },
}

impl IcmpError {
    /// ICMP type, code and the 4-byte info field.
    pub fn type_code_info(self) -> (u8, u8, u32) {
        use crate::wire::icmp::*;
        match self {
            IcmpError::PortUnreachable => (DEST_UNREACH, PORT_UNREACH, 0),
            IcmpError::FragNeeded { mtu } => (DEST_UNREACH, FRAG_NEEDED, u32::from(mtu)),
            IcmpError::TimeExceeded => (TIME_EXCEEDED, 0, 0),
            IcmpError::Relay { typ, code, info } => (typ, code, info),
        }
    }
}

/// What the director answers instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Icmp {
        error: IcmpError,
        from: IcmpSource,
    },
    /// A TCP reset (what the host stack of a kernel director sends for a
    /// segment to a VIP that belongs to no connection).
    TcpReset,
}

impl Reply {
    /// Writes the reply to the packet `orig` into `out`; `director` is the
    /// source for `IcmpSource::Director`. `orig` is the packet as the
    /// engine left it in the buffer (`PacketBuf::bytes` after `process`):
    /// an error quotes it as it is then (e.g. with TTL decremented), and
    /// for a relayed tunnel error it is the client's packet, as much of it
    /// as the tunnel path quoted.
    pub fn build(&self, orig: &[u8], out: &mut [u8], director: Option<[u8; 4]>) -> Option<usize> {
        match *self {
            Reply::Icmp { error, from } => {
                let (t, c, info) = error.type_code_info();
                let from = match from {
                    IcmpSource::PacketDestination => None,
                    IcmpSource::Director => Some(director?),
                };
                crate::wire::icmp::error_v4(orig, out, t, c, info, from)
            }
            Reply::TcpReset => crate::wire::tcp::reset_v4(orig, out),
        }
    }
}

impl Reply {
    /// `build` for an IPv6 packet: ICMPv6 port unreachable, packet too
    /// big, time exceeded, or a TCP reset; `director` is the source for
    /// `IcmpSource::Director`. A relayed (tunnel) error has no IPv6 form.
    pub fn build_v6(
        &self,
        orig: &[u8],
        out: &mut [u8],
        director: Option<[u8; 16]>,
    ) -> Option<usize> {
        use crate::wire::icmp::v6;
        match *self {
            Reply::Icmp { error, from } => {
                let (t, c, info) = match error {
                    IcmpError::PortUnreachable => (v6::DEST_UNREACH, v6::PORT_UNREACH, 0),
                    IcmpError::FragNeeded { mtu } => (v6::PACKET_TOO_BIG, 0, u32::from(mtu)),
                    IcmpError::TimeExceeded => (v6::TIME_EXCEEDED, 0, 0),
                    IcmpError::Relay { .. } => return None,
                };
                let from = match from {
                    IcmpSource::PacketDestination => None,
                    IcmpSource::Director => Some(director?),
                };
                crate::wire::icmp::error_v6(orig, out, t, c, info, from)
            }
            Reply::TcpReset => crate::wire::tcp::reset_v6(orig, out),
        }
    }
}

/// The engine's answer for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// Not a packet IPVS handles: leave it to the host.
    Pass,
    /// Discard it (counted by reason).
    Drop(DropReason),
    /// Send it.
    Send(Send),
    /// Discard it and answer its source.
    Reply(Reply),
    /// Kept by the engine: a fragment waiting for the rest of its
    /// datagram, which is processed whole when it arrives.
    Held,
}

/// The knobs of the transmit paths.
#[derive(Debug, Clone, Copy)]
pub struct XmitSettings {
    /// `pmtu_disc`: check DF packets against the tunnel MTU.
    pub pmtu_disc: bool,
}

/// The common step of §3 for a non-local target: TTL (§3.3) and the MTU
/// check (§3.4). `mtu` is the path's (or the tunnel's, §7.5) MTU; `check`
/// says whether the DF check applies at all (`pmtu_disc` = 0 turns it off
/// for IPv4 tunnels); `from` is where the errors come from. On success the
/// TTL is decremented; the header checksum is updated with it unless
/// `csum_later` (the method recomputes it anyway, as NAT does). `ttl_first`:
/// IPVS's route step decrements before the MTU check (its errors quote the
/// decremented packet); the host's IP forwarding checks the MTU first.
#[inline]
pub(crate) fn prepare(
    pkt: &mut PacketBuf,
    mtu: u16,
    check: bool,
    from: IcmpSource,
    ttl_first: bool,
    csum_later: bool,
) -> Result<(), Transmit> {
    let (gso_size, relay_icmp) = (pkt.gso_size, pkt.relay_icmp);
    let Ok(mut ip) = Ipv4Packet::new_checked(pkt.bytes_mut()) else {
        return Err(Transmit::Drop(DropReason::Malformed));
    };
    let check = check && !relay_icmp;
    prepare_view(
        &mut ip, mtu, check, from, ttl_first, csum_later, gso_size, relay_icmp,
    )
}

/// `prepare` on a view the caller already holds (and keeps using).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn prepare_view(
    ip: &mut Ipv4Packet<&mut [u8]>,
    mtu: u16,
    check: bool,
    from: IcmpSource,
    ttl_first: bool,
    csum_later: bool,
    gso_size: u16,
    relay_icmp: bool,
) -> Result<(), Transmit> {
    let ttl = ip.ttl();
    if ttl <= 1 {
        // No ICMP error is ever sent about an ICMP error (RFC 1122 3.2.2).
        if relay_icmp {
            return Err(Transmit::Drop(DropReason::TtlExceeded));
        }
        return Err(Transmit::Reply(Reply::Icmp {
            error: IcmpError::TimeExceeded,
            from,
        }));
    }
    if check && ip.dont_frag() && on_wire_len(ip, gso_size) > usize::from(mtu) {
        if ttl_first {
            // The error quotes the packet with its TTL already decremented.
            ip.decrement_ttl();
        }
        return Err(Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu },
            from,
        }));
    }
    if csum_later {
        ip.set_ttl(ttl - 1);
    } else {
        ip.decrement_ttl();
    }
    Ok(())
}

/// The largest packet that goes on the wire for `ip`: itself, or for a GSO
/// super-packet one segment (headers + `gso_size`). Kernel IPVS skips its
/// DF check for GSO packets and lets the output path fragment the segments
/// ("ignore DF"); lvsd cannot fragment a super-packet it hands to the
/// kernel for segmentation, so it checks the segment size instead, as the
/// kernel's IP forwarding does — the sender learns the path MTU either way
/// from the first packet that is not a super-packet.
#[inline(always)]
fn on_wire_len(ip: &Ipv4Packet<&mut [u8]>, gso_size: u16) -> usize {
    if gso_size == 0 {
        return ip.total_len();
    }
    let l4 = ip.payload();
    let l4_hdr = match ip.protocol() {
        crate::wire::ipproto::TCP if l4.len() >= 13 => usize::from(l4[12] >> 4) * 4,
        crate::wire::ipproto::UDP => 8,
        _ => 0,
    };
    (ip.header_len() + l4_hdr + usize::from(gso_size)).min(ip.total_len())
}

/// The path to `to`; `Err` with what to answer when there is none (drop)
/// or when `to` is the host's own (`on_local`).
#[inline(always)]
pub(crate) fn lookup(paths: &impl Paths, to: IpAddr, on_local: Transmit) -> Result<Path, Transmit> {
    checked(paths.path(to), on_local)
}

/// `lookup` for a packet from `from` (`Paths::path_from`).
#[inline(always)]
pub(crate) fn lookup_from(
    paths: &impl Paths,
    to: IpAddr,
    from: IpAddr,
    on_local: Transmit,
) -> Result<Path, Transmit> {
    checked(paths.path_from(to, from), on_local)
}

#[inline(always)]
fn checked(path: Option<Path>, on_local: Transmit) -> Result<Path, Transmit> {
    match path {
        None => Err(Transmit::Drop(DropReason::NoRoute)),
        Some(p) if p.local => Err(on_local),
        Some(mut p) => {
            // No IPv4 link has an MTU below 68 (RFC 791); a smaller figure
            // from the caller would make fragmentation impossible.
            p.mtu = p.mtu.max(68);
            Ok(p)
        }
    }
}

/// Sends `pkt` as it now is in the buffer along `path` (any fragmentation
/// left to the I/O layer; the offload request travels with it — except for
/// SCTP, whose CRC32c a virtio header cannot ask for: the engine has
/// finished it, see `finish_sctp_crc`).
#[inline(always)]
pub(crate) fn send(method: Method, pkt: &PacketBuf, path: Path) -> Transmit {
    let partial = pkt.csum_partial && pkt.bytes().get(9) != Some(&crate::wire::ipproto::SCTP);
    Transmit::Send(Send {
        method,
        port: path.port,
        next_hop: path.next_hop,
        start: pkt.start,
        len: pkt.len,
        csum_partial: partial,
        fragment: fragment_hint(pkt.len, path.mtu, pkt.is_gso()),
        segment: None,
    })
}

/// An SCTP packet whose CRC32c was left for offload and that no rewrite
/// recomputed (direct routing, forwarding): the engine finishes it, since
/// the I/O layer's offload request can only ask for an Internet checksum.
pub(crate) fn finish_sctp_crc(pkt: &mut PacketBuf) {
    if !pkt.csum_partial {
        return;
    }
    if let Ok(mut ip) = Ipv4Packet::new_checked(pkt.bytes_mut()) {
        if ip.protocol() == crate::wire::ipproto::SCTP {
            crate::proto::sctp::fill_checksum(ip.payload_mut());
        }
    }
}

/// Whether the packet in the buffer is an IPv6 one.
#[inline]
pub(crate) fn is_v6(pkt: &PacketBuf) -> bool {
    is_v6_bytes(pkt.bytes())
}

/// Whether `b` holds an IPv6 packet (by its version).
#[inline]
pub(crate) fn is_v6_bytes(b: &[u8]) -> bool {
    b.first().is_some_and(|b| b >> 4 == 6)
}

/// The fragmentation left to the I/O layer: a packet over the path MTU that
/// passed the checks (non-DF, or a tunnel without `pmtu_disc`).
#[inline]
pub(crate) fn fragment_hint(len: usize, mtu: u16, gso: bool) -> Option<u16> {
    (len > usize::from(mtu) && !gso).then_some(mtu)
}
