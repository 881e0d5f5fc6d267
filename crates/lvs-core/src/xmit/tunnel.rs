//! Tunnelling transmit (forwarding.md §7): the inner packet after §3 (TTL
//! or hop limit decremented against the tunnel MTU), then an outer header
//! — IPv4 for an IPv4 real server, IPv6 for an IPv6 one, whatever the
//! inner family (mixed families are allowed for tunnels) — and the
//! encapsulation (IPIP, GUE, GRE) written in place into the buffer's
//! headroom: no copy of the inner packet, no allocation.

use super::{
    fragment_hint, lookup_from, prepare, IcmpSource, Method, PacketBuf, Paths, Send, Transmit,
};
use crate::engine::DropReason;
use crate::service::{Tunnel, TunnelCsum, TunnelType};
use crate::wire::checksum;
use crate::wire::ipproto;
use crate::wire::ipv4::Ipv4Packet;
use std::net::IpAddr;

/// IP protocol numbers of the outer header.
const PROTO_IPIP: u8 = 4;
const PROTO_IPV6: u8 = 41;
const PROTO_GRE: u8 = 47;
/// Smallest tunnel MTU for an IPv4 outer header (§7.5), and an IPv6 one.
const MIN_TMTU_V4: u16 = 68;
const MIN_TMTU_V6: u16 = 1280;
/// The host's default ephemeral port range (GUE source ports, §7.3).
const EPHEMERAL: (u32, u32) = (32768, 60999);

/// Per-engine state of the tunnel path: the outer IP ID counter, the key
/// of the GUE source-port hash, and the path MTUs learned from the tunnel
/// paths' "fragmentation needed" reports (§9.2).
#[derive(Debug, Clone, Default)]
pub struct TunnelState {
    pub next_id: u16,
    pub hash_key: u32,
    pub pmtu: std::collections::HashMap<std::net::Ipv4Addr, Pmtu>,
}

/// A learned path MTU towards a tunnel real server: the kernel's route
/// exception, which lives 10 minutes (`ip_rt_mtu_expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pmtu {
    pub mtu: u16,
    pub expires_ms: u64,
    /// A packet went to the real server since the exception exists: the
    /// destination's cached route is the exception itself, so its MTU
    /// follows later reports (until then it is the plain route's).
    pub cached: bool,
}

/// How long a learned path MTU lives.
pub const PMTU_EXPIRES_MS: u64 = 600_000;
/// The smallest path MTU a report may set (`ip_rt_min_pmtu`).
pub const MIN_PMTU: u16 = 552;

impl TunnelState {
    /// The MTU towards `rip`: the route's, or a learned smaller one. A
    /// transmission (`sending`) makes the exception the cached route.
    fn mtu_towards(
        &mut self,
        rip: std::net::Ipv4Addr,
        route_mtu: u16,
        now: u64,
        sending: bool,
    ) -> u16 {
        // Usually nothing was learned: no hashing on the packet path.
        if self.pmtu.is_empty() {
            return route_mtu;
        }
        match self.pmtu.get_mut(&rip) {
            Some(p) if p.expires_ms > now => {
                p.cached |= sending;
                p.mtu.min(route_mtu)
            }
            Some(_) => {
                self.pmtu.remove(&rip);
                route_mtu
            }
            None => route_mtu,
        }
    }

    /// A tunnel path reported "fragmentation needed" with `mtu` towards
    /// `rip`: learns it, and answers the MTU the client is told — the
    /// destination's cached route's MTU (the plain route's until a packet
    /// used the exception, §9.2), less 20 when above 88.
    pub fn report(&mut self, rip: std::net::Ipv4Addr, mtu: u16, route_mtu: u16, now: u64) -> u16 {
        let mtu = mtu.max(MIN_PMTU);
        let e = self.pmtu.entry(rip).or_insert(Pmtu {
            mtu,
            expires_ms: 0,
            cached: false,
        });
        if e.expires_ms <= now {
            e.cached = false;
        }
        e.mtu = mtu;
        e.expires_ms = now + PMTU_EXPIRES_MS;
        let cached = if e.cached {
            e.mtu.min(route_mtu)
        } else {
            route_mtu
        };
        if cached > 68 + 20 {
            cached - 20
        } else {
            cached
        }
    }
}

/// Encapsulates `pkt` towards the real server `rip` (§7). `pmtu_disc`
/// enables the DF check against the tunnel MTU and the copy of DF to the
/// outer header.
pub(crate) fn xmit(
    now: u64,
    pkt: &mut PacketBuf,
    paths: &impl Paths,
    rip: IpAddr,
    t: &Tunnel,
    pmtu_disc: bool,
    st: &mut TunnelState,
) -> Transmit {
    // The outer source first, then the route from it (the kernel looks
    // up again with the source it chose: policy rules by source apply).
    let src = match (paths.source(rip), rip) {
        (Some(s @ IpAddr::V4(_)), IpAddr::V4(_)) | (Some(s @ IpAddr::V6(_)), IpAddr::V6(_)) => s,
        _ => return Transmit::Drop(DropReason::NoRoute),
    };
    let path = match lookup_from(paths, rip, src, Transmit::Pass) {
        Ok(p) => p,
        Err(t) => return t,
    };
    let (outer_len, min_tmtu) = match rip {
        IpAddr::V4(_) => (20, MIN_TMTU_V4),
        IpAddr::V6(_) => (40, MIN_TMTU_V6),
    };
    let hdr = outer_len + t.encap_len();
    // Path MTUs learned from tunnel errors exist for IPv4 paths only (§9.2).
    let mtu = match rip {
        IpAddr::V4(rip4) => st.mtu_towards(rip4, path.mtu, now, true),
        IpAddr::V6(_) => path.mtu,
    };
    let tmtu = mtu.saturating_sub(hdr as u16);
    if tmtu < min_tmtu {
        return Transmit::Drop(DropReason::TunnelMtu);
    }
    let inner_v6 = super::is_v6(pkt);
    // An IPv6 inner packet is always checked against the tunnel MTU.
    let prepared = if inner_v6 {
        super::v6::prepare_tunnel(pkt, tmtu)
    } else {
        prepare(
            pkt,
            tmtu,
            pmtu_disc,
            IcmpSource::PacketDestination,
            true,
            false,
        )
    };
    if let Err(tx) = prepared {
        return tx;
    }
    if pkt.start < hdr {
        return Transmit::Drop(DropReason::NoHeadroom);
    }
    if !pkt.is_gso() && pkt.len + hdr > usize::from(u16::MAX) {
        // No IP packet can carry it (a 64 KiB packet that is not a
        // super-packet cannot come from the wire anyway).
        return Transmit::Drop(DropReason::TunnelMtu);
    }
    if pkt.csum_partial && !pkt.is_gso() {
        // The outer checksum (and the real server) need the finished inner one.
        complete_inner(pkt.bytes_mut());
        pkt.csum_partial = false;
    }
    let Some(inner) = Inner::of(pkt.bytes()) else {
        return Transmit::Drop(DropReason::Malformed);
    };
    // DF is an IPv4 inner packet's (copied with pmtu_disc); never for IPv6.
    let df = pmtu_disc && inner.df;
    let mut encap = Encap {
        tunnel: *t,
        src: octets16(src),
        dst: octets16(rip),
        outer_v6: rip.is_ipv6(),
        inner_v6,
        tos: dsfield(inner.tos),
        ttl: inner.ttl,
        df,
        id: 0,
        sport: match t.kind {
            TunnelType::Gue => gue_source_port(&inner, st.hash_key),
            _ => 0,
        },
    };
    if pkt.is_gso() {
        // A super-packet cannot ask the kernel for tunnel segmentation
        // (the virtio header has no such type): the I/O layer cuts it into
        // segments and wraps each with `encap` (IDs counted from here).
        let Some(n) = crate::wire::tcp::segment_count(pkt.bytes(), pkt.gso_size) else {
            return Transmit::Drop(DropReason::GsoTunnel);
        };
        if !df && rip.is_ipv4() {
            encap.id = st.next_id.wrapping_add(1);
            st.next_id = st.next_id.wrapping_add(n as u16);
        }
        pkt.encap = Some(encap);
        return Transmit::Send(Send {
            method: Method::Tunnel(t.kind),
            port: path.port,
            next_hop: path.next_hop,
            start: pkt.start,
            len: pkt.len,
            csum_partial: false,
            fragment: None,
            segment: Some(pkt.gso_size),
        });
    }
    if !df && rip.is_ipv4() {
        st.next_id = st.next_id.wrapping_add(1);
        encap.id = st.next_id;
    }
    let (start, total) = encap.write(pkt.buf, pkt.start, pkt.len);
    pkt.start = start;
    pkt.len = total;
    Transmit::Send(Send {
        method: Method::Tunnel(t.kind),
        port: path.port,
        next_hop: path.next_hop,
        start,
        len: total,
        csum_partial: false,
        fragment: fragment_hint(total, mtu, false),
        segment: None,
    })
}

/// Everything needed to wrap a packet for one tunnel destination: the
/// engine decides it, and [`Encap::write`] writes it in front of a packet
/// (of a whole packet, or of each segment of a super-packet the I/O layer
/// cut up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    pub tunnel: Tunnel,
    /// Outer source and destination: IPv6, or IPv4 in the first 4 bytes
    /// (`outer_v6` says which: the real server's family).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub outer_v6: bool,
    /// The inner packet is IPv6 (protocol 41, GRE 0x86DD, GUE proto 41).
    pub inner_v6: bool,
    /// Outer TOS or traffic class (ECN CE already re-encoded, §7.2) and
    /// TTL or hop limit.
    pub tos: u8,
    pub ttl: u8,
    /// IPv4 outer: DF.
    pub df: bool,
    /// IPv4 outer IP ID (0 with DF); segment `k` of a super-packet uses
    /// `id + k`.
    pub id: u16,
    /// GUE source port.
    pub sport: u16,
}

impl Encap {
    /// Bytes written in front of the inner packet.
    pub fn len(&self) -> usize {
        self.outer_len() + self.tunnel.encap_len()
    }

    fn outer_len(&self) -> usize {
        if self.outer_v6 {
            40
        } else {
            20
        }
    }

    /// Never empty (an outer IP header at least); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the outer headers in front of `buf[start..start + len]` and
    /// returns where the outer packet starts and its length. The caller
    /// guarantees `start >= self.len()`.
    pub fn write(&self, buf: &mut [u8], start: usize, len: usize) -> (usize, usize) {
        self.write_nth(buf, start, len, 0)
    }

    /// As `write`, for segment `k` of a super-packet (its outer IP ID).
    pub fn write_nth(&self, buf: &mut [u8], start: usize, len: usize, k: u16) -> (usize, usize) {
        let t = &self.tunnel;
        let hdr = self.len();
        let start = start - hdr;
        let total = hdr + len;
        let out = &mut buf[start..start + total];
        let inner_proto = if self.inner_v6 {
            PROTO_IPV6
        } else {
            PROTO_IPIP
        };
        let proto = match t.kind {
            TunnelType::Ipip => inner_proto,
            TunnelType::Gue => ipproto::UDP,
            TunnelType::Gre => PROTO_GRE,
        };
        let id = if self.df { 0 } else { self.id.wrapping_add(k) };
        let ol = self.outer_len();
        if self.outer_v6 {
            write_outer_v6(
                out,
                self.tos,
                (total - ol) as u16,
                self.ttl,
                proto,
                self.src,
                self.dst,
            )
        } else {
            write_outer_v4(
                out,
                self.tos,
                total as u16,
                id,
                self.df,
                self.ttl,
                proto,
                self.src4(),
                self.dst4(),
            )
        }
        let csum = t.csum != TunnelCsum::NoCsum;
        match t.kind {
            TunnelType::Ipip => {}
            TunnelType::Gue => {
                let udp_len = (total - ol) as u16;
                let (h, rest) = out[ol..].split_at_mut(12);
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&t.port.to_be_bytes());
                h[4..6].copy_from_slice(&udp_len.to_be_bytes());
                h[6..8].copy_from_slice(&[0, 0]);
                // GUE version 0, C 0, hlen 0; proto of the inner packet; flags 0.
                h[8..12].copy_from_slice(&[0, inner_proto, 0, 0]);
                if csum {
                    let pseudo = if self.outer_v6 {
                        checksum::pseudo_v6(self.src, self.dst, ipproto::UDP, udp_len.into())
                    } else {
                        checksum::pseudo_v4(self.src4(), self.dst4(), ipproto::UDP, udp_len)
                    };
                    let sum = checksum::add_bytes(checksum::add_bytes(pseudo, h), rest);
                    let c = !checksum::fold(sum);
                    let c = if c == 0 { 0xffff } else { c };
                    h[6..8].copy_from_slice(&c.to_be_bytes());
                }
            }
            TunnelType::Gre => {
                let (h, rest) = out[ol..].split_at_mut(t.encap_len());
                h[0..2].copy_from_slice(&if csum { [0x80, 0] } else { [0, 0] });
                let ethertype: u16 = if self.inner_v6 { 0x86dd } else { 0x0800 };
                h[2..4].copy_from_slice(&ethertype.to_be_bytes());
                if csum {
                    h[4..8].copy_from_slice(&[0; 4]);
                    let c = !checksum::fold(checksum::add_bytes(checksum::add_bytes(0, h), rest));
                    h[4..6].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        (start, total)
    }
}

/// The outer TOS: DSCP copied, ECN copied except CE, which becomes ECT(0)
/// (§7.2).
#[inline]
pub fn dsfield(tos: u8) -> u8 {
    if tos & 0x03 == 0x03 {
        (tos & !0x03) | 0x02
    } else {
        tos
    }
}

#[allow(clippy::too_many_arguments)]
fn write_outer_v4(
    h: &mut [u8],
    tos: u8,
    total: u16,
    id: u16,
    df: bool,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) {
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&if df { [0x40, 0] } else { [0, 0] });
    h[8] = ttl;
    h[9] = proto;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum::checksum(&h[..20]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An address as 16 bytes (IPv4 in the first 4).
fn octets16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
    }
}

impl Encap {
    #[inline(always)]
    fn src4(&self) -> [u8; 4] {
        [self.src[0], self.src[1], self.src[2], self.src[3]]
    }

    #[inline(always)]
    fn dst4(&self) -> [u8; 4] {
        [self.dst[0], self.dst[1], self.dst[2], self.dst[3]]
    }
}

/// An IPv6 outer header (§7.4): traffic class, flow label 0, payload
/// length, next header, hop limit.
fn write_outer_v6(
    h: &mut [u8],
    tclass: u8,
    payload: u16,
    hop: u8,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
) {
    h[0] = 0x60 | tclass >> 4;
    h[1] = tclass << 4;
    h[2..4].copy_from_slice(&[0, 0]);
    h[4..6].copy_from_slice(&payload.to_be_bytes());
    h[6] = proto;
    h[7] = hop;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
}

/// What the encapsulation takes from the inner packet (§7.2) and hashes.
struct Inner {
    tos: u8,
    ttl: u8,
    df: bool,
    protocol: u8,
    /// Source and destination folded to 32 bits (IPv6: the XOR of the
    /// address's words), and the first 4 transport bytes (ports).
    src: u32,
    dst: u32,
    ports: u32,
}

impl Inner {
    #[inline(always)]
    fn of(b: &[u8]) -> Option<Inner> {
        let fold = |a: &[u8]| {
            a.chunks_exact(4).fold(0u32, |x, w| {
                x ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]])
            })
        };
        let ports = |protocol: u8, l4: &[u8]| match l4.get(..4) {
            Some(p) if matches!(protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP) => {
                u32::from_be_bytes([p[0], p[1], p[2], p[3]])
            }
            _ => 0,
        };
        if super::is_v6_bytes(b) {
            let t = crate::wire::ipv6::transport(b).ok()?;
            return Some(Inner {
                tos: (b[0] << 4) | (b[1] >> 4),
                ttl: b[7],
                df: false,
                protocol: t.protocol,
                src: fold(&b[8..24]),
                dst: fold(&b[24..40]),
                ports: ports(t.protocol, &b[t.offset..]),
            });
        }
        let ip = Ipv4Packet::new_checked(b).ok()?;
        Some(Inner {
            tos: ip.tos(),
            ttl: ip.ttl(),
            df: ip.dont_frag(),
            protocol: ip.protocol(),
            src: u32::from_be_bytes(ip.src_bytes()),
            dst: u32::from_be_bytes(ip.dst_bytes()),
            ports: ports(ip.protocol(), ip.payload()),
        })
    }
}

/// GUE source port: a stable hash of the inner flow scaled into the
/// ephemeral port range the way the kernel scales its flow hash (§7.3;
/// the hash itself is the kernel's own and not reproducible).
#[inline(always)]
fn gue_source_port(inner: &Inner, key: u32) -> u16 {
    let mut h = key ^ inner.src;
    h = mix(h ^ inner.dst);
    h = mix(h ^ inner.ports);
    h = mix(h ^ u32::from(inner.protocol));
    let g = h ^ (h << 16);
    let (min, max) = EPHEMERAL;
    (min + ((u64::from(g) * u64::from(max - min)) >> 32) as u32) as u16
}

#[inline]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Finishes an offloaded TCP/UDP checksum of the inner packet.
fn complete_inner(p: &mut [u8]) {
    if super::is_v6_bytes(p) {
        let Ok(t) = crate::wire::ipv6::transport(p) else {
            return;
        };
        let Some((off, min)) = crate::wire::l4_layout(t.protocol) else {
            return;
        };
        let l4 = &mut p[t.offset..];
        if l4.len() >= min {
            crate::wire::tcp::complete_partial(l4, off, t.protocol == ipproto::UDP);
        }
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(p) else {
        return;
    };
    let proto = ip.protocol();
    let Some((off, min)) = crate::wire::l4_layout(proto) else {
        return;
    };
    let l4 = ip.payload_mut();
    if l4.len() >= min {
        crate::wire::tcp::complete_partial(l4, off, proto == ipproto::UDP);
    }
}
