//! The kernel's routes, neighbours and addresses, from rtnetlink: a full
//! dump at start, then change events applied as they come (the packet
//! loop polls the event socket with its packet sockets), instead of
//! re-reading `/proc/net/route` and `/proc/net/arp` every second.
//!
//! Sockets come from `netlink-sys` and messages are decoded by
//! `netlink-packet-route` (both from the rust-netlink project, MIT: the
//! maintained Rust rtnetlink codecs; the async `rtnetlink` crate on top
//! of them would bring a runtime the packet loop does not want). Both
//! families are read; what lvsd does with IPv6 entries is the daemon's
//! business.
//!
//! Route lookups follow the host's default rules (tables local, main,
//! default, in that order); other policy-routing rules are not followed,
//! and lvsd says so at start when the host has some.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

/// Routing tables the default rules look up after `local` (which holds
/// the host's own and broadcast addresses), in order.
pub const TABLE_MAIN: u32 = 254;
pub const TABLE_DEFAULT: u32 = 253;

/// One route (the first next hop of a multipath route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: IpAddr,
    pub len: u8,
    pub gateway: Option<IpAddr>,
    /// Output interface index (0: none, as for a blackhole).
    pub oif: u32,
    pub metric: u32,
    pub tos: u8,
    /// Unicast; anything else (blackhole, unreachable, prohibit, local,
    /// broadcast…) is `false`: no path through it.
    pub unicast: bool,
}

/// What identifies a route: table, destination, prefix length, TOS,
/// metric (the kernel's key).
pub type RouteKey = (u32, IpAddr, u8, u8, u32);

impl Route {
    pub fn key(&self) -> RouteKey {
        (self.table, self.dst, self.len, self.tos, self.metric)
    }
}

/// A change the kernel reported (or an entry of the start-up dump, as an
/// addition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Route {
        add: bool,
        route: Route,
    },
    /// A neighbour entry; `mac` is set when it holds a usable link-layer
    /// address (reachable, stale, delay, probe, permanent).
    Neighbour {
        add: bool,
        ifindex: u32,
        ip: IpAddr,
        mac: Option<[u8; 6]>,
    },
    Address {
        add: bool,
        ifindex: u32,
        ip: IpAddr,
        len: u8,
    },
    /// Events were lost (the socket's buffer overflowed): dump again.
    Overrun,
}

/// The event socket, subscribed to route, neighbour and address changes
/// of both families; non-blocking.
pub struct Rtnl {
    sock: Socket,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        for g in [
            libc::RTNLGRP_NEIGH,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_IFADDR,
            libc::RTNLGRP_IPV6_ROUTE,
        ] {
            sock.add_membership(g)?;
        }
        // Room for bursts (a route flap, a neighbour table refilled).
        let _ = sock.set_rx_buf_sz(4 << 20);
        sock.set_non_blocking(true)?;
        Ok(Rtnl {
            sock,
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads every waiting event into `out` (bounded per call).
    pub fn read(&mut self, out: &mut Vec<Event>) {
        for _ in 0..256 {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => parse(&self.buf[..n.min(self.buf.len())], out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(Event::Overrun),
                Err(_) => return,
            }
        }
    }
}

/// Everything the kernel holds now, as additions: routes, neighbours and
/// addresses of both families, and how many policy-routing rules beyond
/// the kernel's default ones (three for IPv4, two for IPv6) the host has.
pub fn dump() -> io::Result<(Vec<Event>, usize)> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut out = Vec::new();
    let requests = [
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    ];
    for (seq, req) in requests.into_iter().enumerate() {
        request(&sock, req, seq as u32 + 1, &mut |m| {
            if let Some(e) = event(m) {
                out.push(e);
            }
        })?;
    }
    let (mut v4, mut v6) = (0usize, 0usize);
    request(
        &sock,
        RouteNetlinkMessage::GetRule(RuleMessage::default()),
        4,
        &mut |m| {
            if let RouteNetlinkMessage::NewRule(r) = m {
                match r.header.family {
                    AddressFamily::Inet => v4 += 1,
                    AddressFamily::Inet6 => v6 += 1,
                    _ => {}
                }
            }
        },
    )?;
    // The kernel's own: local, main and default for IPv4; local and main
    // for IPv6.
    Ok((out, v4.saturating_sub(3) + v6.saturating_sub(2)))
}

/// Sends a dump request and hands every answer to `each` until done.
fn request(
    sock: &Socket,
    msg: RouteNetlinkMessage,
    seq: u32,
    each: &mut dyn FnMut(RouteNetlinkMessage),
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf[..]);
    sock.send(&buf, 0)?;
    let mut rbuf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut &mut rbuf[..], 0)?;
        let mut at = 0;
        while at < n.min(rbuf.len()) {
            let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[at..n]) else {
                break;
            };
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("rtnetlink dump: {e:?}")))
                }
                NetlinkPayload::InnerMessage(inner) => each(inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// The events in one datagram of the event socket. Malformed input ends
/// the walk (nothing is trusted: no panic, no endless loop).
pub fn parse(buf: &[u8], out: &mut Vec<Event>) {
    let mut at = 0;
    while at < buf.len() {
        let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..]) else {
            return;
        };
        let len = m.header.length as usize;
        if let NetlinkPayload::InnerMessage(inner) = m.payload {
            if let Some(e) = event(inner) {
                out.push(e);
            }
        }
        if len == 0 {
            return;
        }
        at += len.next_multiple_of(4);
    }
}

fn event(m: RouteNetlinkMessage) -> Option<Event> {
    match m {
        RouteNetlinkMessage::NewRoute(r) => {
            route(&r).map(|route| Event::Route { add: true, route })
        }
        RouteNetlinkMessage::DelRoute(r) => {
            route(&r).map(|route| Event::Route { add: false, route })
        }
        RouteNetlinkMessage::NewNeighbour(n) => neighbour(&n, true),
        RouteNetlinkMessage::DelNeighbour(n) => neighbour(&n, false),
        RouteNetlinkMessage::NewAddress(a) => address(&a, true),
        RouteNetlinkMessage::DelAddress(a) => address(&a, false),
        _ => None,
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn route(m: &RouteMessage) -> Option<Route> {
    let h = &m.header;
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let max_len = if unspecified.is_ipv4() { 32 } else { 128 };
    if h.destination_prefix_length > max_len {
        return None;
    }
    let mut r = Route {
        table: u32::from(h.table),
        dst: unspecified,
        len: h.destination_prefix_length,
        gateway: None,
        oif: 0,
        metric: 0,
        tos: h.tos,
        unicast: h.kind == RouteType::Unicast,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Destination(d) => r.dst = ip_of(d)?,
            RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
            RouteAttribute::Oif(i) => r.oif = *i,
            RouteAttribute::Priority(p) => r.metric = *p,
            RouteAttribute::MultiPath(hops) if r.oif == 0 => {
                if let Some(h) = hops.first() {
                    r.oif = h.interface_index;
                    for a in &h.attributes {
                        if let RouteAttribute::Gateway(g) = a {
                            r.gateway = ip_of(g);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if r.dst.is_ipv4() != unspecified.is_ipv4() {
        return None;
    }
    Some(r)
}

fn neighbour(m: &NeighbourMessage, add: bool) -> Option<Event> {
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut b = [0u8; 6];
                b.copy_from_slice(l);
                mac = Some(b);
            }
            _ => {}
        }
    }
    let usable = matches!(
        m.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    Some(Event::Neighbour {
        add,
        ifindex: m.header.ifindex,
        ip: ip?,
        mac: mac.filter(|_| usable),
    })
}

fn address(m: &AddressMessage, add: bool) -> Option<Event> {
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS the peer's on
    // point-to-point links); IPv6 has only IFA_ADDRESS.
    let mut local = None;
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    Some(Event::Address {
        add,
        ifindex: m.header.index,
        ip: local.or(addr)?,
        len: m.header.prefix_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteHeader;
    use std::net::Ipv4Addr;

    /// `m` as the kernel would send it.
    fn bytes(m: RouteNetlinkMessage) -> Vec<u8> {
        let mut n = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
        n.finalize();
        let mut b = vec![0; n.header.length as usize];
        n.serialize(&mut b[..]);
        b
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn route_neighbour_and_address_events() {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = 24;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.kind = RouteType::Unicast;
        r.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(198, 18, 5, 0))),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(198, 18, 1, 11))),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(20),
        ];
        let mut blackhole = r.clone();
        blackhole.header.kind = RouteType::BlackHole;
        blackhole.attributes.truncate(1);
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 3;
        n.header.state = NeighbourState::Reachable;
        n.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(198, 18, 1, 11))),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 0x11]),
        ];
        let mut failed = n.clone();
        failed.header.state = NeighbourState::Failed;
        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet;
        a.header.prefix_len = 24;
        a.header.index = 3;
        a.attributes = vec![
            AddressAttribute::Address(v4([198, 18, 1, 1])),
            AddressAttribute::Local(v4([198, 18, 1, 1])),
        ];
        let mut buf = Vec::new();
        for m in [
            RouteNetlinkMessage::NewRoute(r),
            RouteNetlinkMessage::DelRoute(blackhole),
            RouteNetlinkMessage::NewNeighbour(n),
            RouteNetlinkMessage::NewNeighbour(failed),
            RouteNetlinkMessage::DelAddress(a),
        ] {
            buf.extend(bytes(m));
        }
        let mut got = Vec::new();
        parse(&buf, &mut got);
        let route = Route {
            table: 254,
            dst: v4([198, 18, 5, 0]),
            len: 24,
            gateway: Some(v4([198, 18, 1, 11])),
            oif: 3,
            metric: 20,
            tos: 0,
            unicast: true,
        };
        assert_eq!(
            got,
            vec![
                Event::Route {
                    add: true,
                    route: route.clone()
                },
                Event::Route {
                    add: false,
                    route: Route {
                        gateway: None,
                        oif: 0,
                        metric: 0,
                        unicast: false,
                        ..route
                    }
                },
                Event::Neighbour {
                    add: true,
                    ifindex: 3,
                    ip: v4([198, 18, 1, 11]),
                    mac: Some([2, 0, 0, 0, 0, 0x11])
                },
                // A failed entry carries no usable address.
                Event::Neighbour {
                    add: true,
                    ifindex: 3,
                    ip: v4([198, 18, 1, 11]),
                    mac: None
                },
                Event::Address {
                    add: false,
                    ifindex: 3,
                    ip: v4([198, 18, 1, 1]),
                    len: 24
                },
            ]
        );
        // Cut anywhere or corrupted: no panic.
        for cut in 0..buf.len() {
            let mut v = Vec::new();
            parse(&buf[..cut], &mut v);
            let mut bad = buf.clone();
            bad[cut] ^= 0xff;
            parse(&bad, &mut v);
        }
    }

    /// The start-up dump against this machine's kernel (no root needed):
    /// the loopback address is always there, and a host with the default
    /// rules has no extra one.
    #[test]
    fn the_dump_sees_loopback() {
        let (events, extra_rules) = dump().expect("rtnetlink dump");
        let rules = |family: &str| {
            std::process::Command::new("ip")
                .args([family, "rule"])
                .output()
                .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().count())
        };
        let default_rules = rules("-4") == 3 && matches!(rules("-6"), 0 | 2);
        if default_rules {
            assert_eq!(extra_rules, 0);
        }
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Address { add: true, ip, .. } if *ip == v4([127, 0, 0, 1])
            )),
            "{events:?}"
        );
    }
}
