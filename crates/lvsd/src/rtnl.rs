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
//! Policy-routing rules come the same way (dump and events); `fib` does
//! the lookups with them.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

/// The table of the host's own and broadcast addresses.
pub const TABLE_LOCAL: u32 = 255;

/// What a lookup that ends on a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A path (gateway or on-link).
    Unicast,
    /// The host's own address (the local table).
    Local,
    /// Not in this table: the lookup goes on with the next rule.
    Throw,
    /// Blackhole, unreachable, prohibit, broadcast, multicast…: the lookup
    /// ends without a path.
    Blocked,
}

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
    pub kind: RouteKind,
    /// The route's preferred source address (`src` in `ip route`).
    pub prefsrc: Option<IpAddr>,
}

/// What identifies a route: table, destination, prefix length, TOS,
/// metric (the kernel's key).
pub type RouteKey = (u32, IpAddr, u8, u8, u32);

impl Route {
    pub fn key(&self) -> RouteKey {
        (self.table, self.dst, self.len, self.tos, self.metric)
    }
}

/// A policy-routing rule, reduced to what decides lvsd's lookups. lvsd
/// looks routes up as the kernel's IPVS does: an output lookup (input
/// interface `lo`), no output interface, firewall mark 0, TOS 0, no
/// protocol or ports, uid 0, outside any VRF. Selectors of those kinds are
/// evaluated here, once, into `selectors_match`; only the address
/// selectors remain for each lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub action: Action,
    /// `from` and `to` prefixes (`None`: all).
    pub src: Option<(IpAddr, u8)>,
    pub dst: Option<(IpAddr, u8)>,
    /// Whether the rule's other selectors accept lvsd's lookups.
    pub selectors_match: bool,
    /// `not`: the match, selectors included, is inverted.
    pub invert: bool,
    /// `suppress_prefixlength N`: a route found with a prefix of N or
    /// shorter is ignored (the lookup goes on).
    pub suppress_prefixlen: Option<u8>,
    /// `suppress_ifgroup G`: lvsd's interfaces are taken to be in group 0
    /// (the default), so only `Some(0)` suppresses.
    pub suppress_ifgroup: Option<u32>,
}

impl Rule {
    /// A rule with no selector: it matches every lookup.
    pub fn new(v6: bool, priority: u32, action: Action) -> Rule {
        Rule {
            v6,
            priority,
            action,
            src: None,
            dst: None,
            selectors_match: true,
            invert: false,
            suppress_prefixlen: None,
            suppress_ifgroup: None,
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look up this table.
    Table(u32),
    /// Go on at the first rule of this priority.
    Goto(u32),
    /// Nothing (go on).
    Nop,
    /// Blackhole, unreachable or prohibit: no path.
    Reject,
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
    Rule {
        add: bool,
        rule: Rule,
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
            libc::RTNLGRP_IPV4_RULE,
            libc::RTNLGRP_IPV6_RULE,
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

/// Everything the kernel holds now, as additions: routes, neighbours,
/// addresses and policy-routing rules of both families.
pub fn dump() -> io::Result<Vec<Event>> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut out = Vec::new();
    let requests = [
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        RouteNetlinkMessage::GetRule(RuleMessage::default()),
    ];
    for (seq, req) in requests.into_iter().enumerate() {
        request(&sock, req, seq as u32 + 1, &mut |m| {
            if let Some(e) = event(m) {
                out.push(e);
            }
        })?;
    }
    Ok(out)
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
        RouteNetlinkMessage::NewRule(r) => rule(&r).map(|rule| Event::Rule { add: true, rule }),
        RouteNetlinkMessage::DelRule(r) => rule(&r).map(|rule| Event::Rule { add: false, rule }),
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
        kind: match h.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            RouteType::Throw => RouteKind::Throw,
            _ => RouteKind::Blocked,
        },
        prefsrc: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Destination(d) => r.dst = ip_of(d)?,
            RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
            RouteAttribute::Oif(i) => r.oif = *i,
            RouteAttribute::Priority(p) => r.metric = *p,
            RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
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

/// FRA_DSCP and FRA_FLOWLABEL (Linux 6.13 and later), which the codec
/// leaves undecoded: a non-zero value never matches lvsd's lookups.
const FRA_DSCP: u16 = 25;
const FRA_FLOWLABEL: u16 = 26;

fn rule(m: &RuleMessage) -> Option<Rule> {
    use netlink_packet_core::Nla;
    let h = &m.header;
    let (v6, unspecified) = match h.family {
        AddressFamily::Inet => (false, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => (true, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        _ => return None,
    };
    let max_len = if v6 { 128 } else { 32 };
    if h.src_len > max_len || h.dst_len > max_len {
        return None;
    }
    let (mut src, mut dst) = (unspecified, unspecified);
    let mut r = Rule {
        // TOS 0 is the only one lvsd's lookups carry.
        selectors_match: h.tos == 0,
        invert: h.flags.contains(RuleFlags::Invert),
        ..Rule::new(v6, 0, Action::Nop)
    };
    let (mut table, mut goto) = (u32::from(h.table), None);
    let (mut mark, mut mask) = (None, None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Source(a) => src = *a,
            RuleAttribute::Destination(a) => dst = *a,
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Goto(p) => goto = Some(*p),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            // Output lookups come from `lo`; no output interface is set.
            RuleAttribute::Iifname(n) => r.selectors_match &= n == "lo",
            RuleAttribute::Oifname(_) => r.selectors_match = false,
            RuleAttribute::TunId(t) => r.selectors_match &= *t == 0,
            RuleAttribute::L3MDev(on) => r.selectors_match &= !*on,
            RuleAttribute::UidRange(u) => r.selectors_match &= u.start == 0,
            RuleAttribute::IpProtocol(p) => r.selectors_match &= u8::from(*p) == 0,
            RuleAttribute::SourcePortRange(p) | RuleAttribute::DestinationPortRange(p) => {
                r.selectors_match &= p.start == 0
            }
            // -1: none; anything from the family's length up suppresses
            // every route, as the kernel compares.
            RuleAttribute::SuppressPrefixLen(n) => {
                r.suppress_prefixlen = (*n != u32::MAX).then(|| u8::try_from(*n).unwrap_or(u8::MAX))
            }
            RuleAttribute::SuppressIfGroup(g) => {
                r.suppress_ifgroup = Some(*g).filter(|&g| g != u32::MAX)
            }
            RuleAttribute::Other(o) if matches!(o.kind(), FRA_DSCP | FRA_FLOWLABEL) => {
                let mut v = vec![0u8; o.value_len()];
                o.emit_value(&mut v);
                r.selectors_match &= v.iter().all(|&b| b == 0);
            }
            _ => {}
        }
    }
    // A mark given without a mask is matched whole (the kernel's rule).
    let mask = mask.unwrap_or(if mark.is_some_and(|m| m != 0) {
        u32::MAX
    } else {
        0
    });
    r.selectors_match &= mark.unwrap_or(0) & mask == 0;
    if src.is_ipv4() == v6 || dst.is_ipv4() == v6 {
        return None;
    }
    r.src = (h.src_len > 0).then_some((src, h.src_len));
    r.dst = (h.dst_len > 0).then_some((dst, h.dst_len));
    r.action = match h.action {
        RuleAction::ToTable => Action::Table(table),
        RuleAction::Goto => Action::Goto(goto?),
        RuleAction::Nop => Action::Nop,
        RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => Action::Reject,
        _ => return None,
    };
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

    /// `buf` cut anywhere or corrupted anywhere: no panic.
    fn parse_damaged(buf: &[u8]) {
        for cut in 0..buf.len() {
            let mut v = Vec::new();
            parse(&buf[..cut], &mut v);
            let mut bad = buf.to_vec();
            bad[cut] ^= 0xff;
            parse(&bad, &mut v);
        }
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
            kind: RouteKind::Unicast,
            prefsrc: None,
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
                        kind: RouteKind::Blocked,
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
        parse_damaged(&buf);
    }

    /// Rules reduced to what lvsd's lookups see: the prefixes, the
    /// action, and whether the other selectors accept an output lookup
    /// from `lo` without mark, TOS, protocol or ports.
    #[test]
    fn rule_events_are_reduced_to_what_the_lookup_needs() {
        use netlink_packet_route::rule::{RulePortRange, RuleUidRange};
        let base = |prio: u32, action: RuleAction| {
            let mut r = RuleMessage::default();
            r.header.family = AddressFamily::Inet;
            r.header.action = action;
            r.attributes = vec![RuleAttribute::Priority(prio), RuleAttribute::Table(100)];
            r
        };
        let mut from = base(100, RuleAction::ToTable);
        from.header.src_len = 32;
        from.attributes
            .push(RuleAttribute::Source(v4([198, 18, 0, 100])));
        from.attributes
            .push(RuleAttribute::SuppressPrefixLen(u32::MAX));
        let mut to = base(50, RuleAction::Prohibit);
        to.header.dst_len = 24;
        to.header.flags = RuleFlags::Invert;
        to.attributes
            .push(RuleAttribute::Destination(v4([198, 18, 9, 0])));
        to.attributes.push(RuleAttribute::SuppressPrefixLen(0));
        let mut goto = base(10, RuleAction::Goto);
        goto.attributes.push(RuleAttribute::Goto(30));
        let mut v6 = base(7, RuleAction::Nop);
        v6.header.family = AddressFamily::Inet6;
        v6.header.src_len = 64;
        v6.attributes.push(RuleAttribute::Source(IpAddr::V6(
            "2001:db8::".parse().unwrap(),
        )));
        // Selectors: the first two match lvsd's lookups, the others not.
        let selectors: Vec<(Vec<RuleAttribute>, u8, bool)> = vec![
            (vec![RuleAttribute::Iifname("lo".into())], 0, true),
            (
                vec![
                    RuleAttribute::FwMark(0),
                    RuleAttribute::FwMask(0xff),
                    RuleAttribute::UidRange(RuleUidRange { start: 0, end: 99 }),
                ],
                0,
                true,
            ),
            (vec![RuleAttribute::Iifname("d0".into())], 0, false),
            (vec![RuleAttribute::Oifname("d1".into())], 0, false),
            (vec![RuleAttribute::FwMark(1)], 0, false),
            (vec![], 0x10, false),
            (
                vec![RuleAttribute::DestinationPortRange(RulePortRange {
                    start: 80,
                    end: 80,
                })],
                0,
                false,
            ),
            (vec![RuleAttribute::L3MDev(true)], 0, false),
            (
                vec![RuleAttribute::Other(netlink_packet_core::DefaultNla::new(
                    FRA_DSCP,
                    vec![8],
                ))],
                0,
                false,
            ),
        ];
        let mut buf = Vec::new();
        for m in [from, to, goto, v6] {
            buf.extend(bytes(RouteNetlinkMessage::NewRule(m)));
        }
        for (attrs, tos, _) in &selectors {
            let mut m = base(200, RuleAction::ToTable);
            m.header.tos = *tos;
            m.attributes.extend(attrs.iter().cloned());
            buf.extend(bytes(RouteNetlinkMessage::DelRule(m)));
        }
        let mut got = Vec::new();
        parse(&buf, &mut got);
        let rule = |priority: u32, action: Action| Rule::new(false, priority, action);
        let mut want = vec![
            Event::Rule {
                add: true,
                rule: Rule {
                    src: Some((v4([198, 18, 0, 100]), 32)),
                    ..rule(100, Action::Table(100))
                },
            },
            Event::Rule {
                add: true,
                rule: Rule {
                    dst: Some((v4([198, 18, 9, 0]), 24)),
                    invert: true,
                    suppress_prefixlen: Some(0),
                    ..rule(50, Action::Reject)
                },
            },
            Event::Rule {
                add: true,
                rule: rule(10, Action::Goto(30)),
            },
            Event::Rule {
                add: true,
                rule: Rule {
                    v6: true,
                    src: Some((IpAddr::V6("2001:db8::".parse().unwrap()), 64)),
                    ..rule(7, Action::Nop)
                },
            },
        ];
        for (_, _, matches) in &selectors {
            want.push(Event::Rule {
                add: false,
                rule: Rule {
                    selectors_match: *matches,
                    ..rule(200, Action::Table(100))
                },
            });
        }
        assert_eq!(got, want);
        parse_damaged(&buf);
    }

    /// The start-up dump against this machine's kernel (no root needed):
    /// the loopback address is always there, and so is the rule that looks
    /// up the main table.
    #[test]
    fn the_dump_sees_loopback_and_the_main_rule() {
        let events = dump().expect("rtnetlink dump");
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Address { add: true, ip, .. } if *ip == v4([127, 0, 0, 1])
            )),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Rule { add: true, rule } if !rule.v6
                    && rule.action == Action::Table(254)
                    && rule.src.is_none()
                    && rule.selectors_match
            )),
            "{events:?}"
        );
    }
}
