//! Route lookups as the kernel does them for IPVS, from what rtnetlink
//! reports (`rtnl`): the policy-routing rules in priority order, and in
//! each table a route by longest prefix, then lowest metric.
//!
//! A lookup is the kernel's output lookup for a packet the director sends
//! (`rtnl::Rule` says which selectors that fixes): the destination, and a
//! source when there is one (a NAT reply re-routed from its VIP, a
//! tunnel's outer source). Rule actions: a table lookup (a `throw` route
//! or no route goes on with the next rule; a blackhole, unreachable or
//! prohibit route ends it without a path), `goto`, `nop`, and the
//! rejecting actions. `suppress_prefixlength` and `suppress_ifgroup`
//! (interfaces in the default group 0) are honoured.
//!
//! The local table is left out: the host's own addresses are known from
//! its interface addresses instead (`Path::local`), and the table's
//! broadcast routes are no paths for IPVS.
//!
//! Tables are searched linearly, longest prefix first: the few routes of
//! a director cost less that way than a trie would.

use crate::io::PortId;
use crate::net::Interface;
use crate::rtnl::{self, Action, RouteKind};
use std::net::IpAddr;

/// An address of one family as an integer: `u32` for IPv4, `u128` for
/// IPv6.
pub trait Bits:
    Copy + Eq + std::fmt::Debug + std::ops::BitAnd<Output = Self> + std::ops::Not<Output = Self>
{
    const BITS: u8;
    /// `a` as this family's integer (`None`: the other family).
    fn of(a: IpAddr) -> Option<Self>;
    /// The mask of a prefix of `len` bits.
    fn mask(len: u8) -> Self;
}

impl Bits for u32 {
    const BITS: u8 = 32;
    fn of(a: IpAddr) -> Option<u32> {
        match a {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        }
    }
    fn mask(len: u8) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0)
    }
}

impl Bits for u128 {
    const BITS: u8 = 128;
    fn of(a: IpAddr) -> Option<u128> {
        match a {
            IpAddr::V6(a) => Some(u128::from(a)),
            IpAddr::V4(_) => None,
        }
    }
    fn mask(len: u8) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(len.min(128)))
            .unwrap_or(0)
    }
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// Out of this attached port.
    Port(PortId),
    /// Out of an interface lvsd is not attached to: no path for lvsd.
    Elsewhere,
    /// No path: blackhole, unreachable, prohibit, broadcast, local…
    Blocked,
    /// Not in this table: the next rule decides.
    Throw,
}

/// One route as the lookup uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<T> {
    /// The prefix, masked.
    pub dest: T,
    pub mask: T,
    pub len: u8,
    pub gateway: Option<T>,
    /// The route's preferred source.
    pub prefsrc: Option<T>,
    pub to: To,
    metric: u32,
}

impl<T: Bits> Entry<T> {
    /// Whether `a` is inside the route's prefix.
    #[inline]
    pub fn covers(&self, a: T) -> bool {
        a & self.mask == self.dest
    }
}

/// A rule as the lookup uses it (see `rtnl::Rule`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule<T> {
    priority: u32,
    action: Action,
    /// (prefix, mask)
    src: Option<(T, T)>,
    dst: Option<(T, T)>,
    selectors_match: bool,
    invert: bool,
    suppress_prefixlen: Option<u8>,
    suppress_ifgroup: bool,
}

impl<T: Bits> Rule<T> {
    #[inline]
    fn matches(&self, dst: T, src: Option<T>) -> bool {
        let inside = |p: &Option<(T, T)>, a: Option<T>| match (p, a) {
            (None, _) => true,
            (Some((net, mask)), Some(a)) => a & *mask == *net,
            // An unspecified source is all zero, as in the kernel: inside
            // only a prefix of zeros.
            (Some((net, mask)), None) => *net == *mask & !*mask,
        };
        let m = self.selectors_match && inside(&self.src, src) && inside(&self.dst, Some(dst));
        m != self.invert
    }
}

/// One family's routing: its rules and the tables they name.
#[derive(Debug, Clone, Default)]
pub struct Fib<T> {
    rules: Vec<Rule<T>>,
    /// (table id, routes longest prefix first, then lowest metric).
    tables: Vec<(u32, Vec<Entry<T>>)>,
    /// Some rule selects by source: lookups with a source differ.
    by_source: bool,
    /// When every rule matches every lookup and only names a table (the
    /// kernel's default rules, for one), and no table throws: the tables'
    /// routes one after the other in rule order — the first route that
    /// covers an address is the answer, in one scan.
    flat: Option<Vec<Entry<T>>>,
}

impl<T: Bits> Fib<T> {
    /// The family's rules (of `rules`, any order) and routes (of
    /// `routes`), with each route's interface resolved to one of `ports`.
    pub fn build<'a>(
        routes: impl Iterator<Item = &'a rtnl::Route>,
        rules: &[rtnl::Rule],
        ports: &[Interface],
    ) -> Fib<T> {
        let prefix = |p: Option<(IpAddr, u8)>| -> Option<Option<(T, T)>> {
            match p {
                None => Some(None),
                Some((a, len)) => {
                    let mask = T::mask(len);
                    Some(Some((T::of(a)? & mask, mask)))
                }
            }
        };
        let mut fib_rules: Vec<Rule<T>> = rules
            .iter()
            .filter(|r| r.v6 == (T::BITS == 128))
            .filter_map(|r| {
                Some(Rule {
                    priority: r.priority,
                    action: r.action,
                    src: prefix(r.src)?,
                    dst: prefix(r.dst)?,
                    selectors_match: r.selectors_match,
                    invert: r.invert,
                    suppress_prefixlen: r.suppress_prefixlen,
                    suppress_ifgroup: r.suppress_ifgroup == Some(0),
                })
            })
            .collect();
        // Stable: rules of one priority keep the kernel's order.
        fib_rules.sort_by_key(|r| r.priority);
        let mut tables: Vec<(u32, Vec<Entry<T>>)> = Vec::new();
        for r in routes {
            let Some(dst) = T::of(r.dst) else { continue };
            if r.table == rtnl::TABLE_LOCAL || r.tos != 0 {
                continue;
            }
            let to = match r.kind {
                RouteKind::Unicast => ports
                    .iter()
                    .position(|p| p.index as u32 == r.oif)
                    .map_or(To::Elsewhere, To::Port),
                RouteKind::Throw => To::Throw,
                RouteKind::Local | RouteKind::Blocked => To::Blocked,
            };
            let mask = T::mask(r.len);
            let e = Entry {
                dest: dst & mask,
                mask,
                len: r.len,
                gateway: r.gateway.and_then(T::of),
                prefsrc: r.prefsrc.and_then(T::of),
                to,
                metric: r.metric,
            };
            match tables.iter_mut().find(|(id, _)| *id == r.table) {
                Some((_, v)) => v.push(e),
                None => tables.push((r.table, vec![e])),
            }
        }
        for (_, v) in &mut tables {
            v.sort_by(|a, b| b.len.cmp(&a.len).then(a.metric.cmp(&b.metric)));
        }
        let by_source = fib_rules.iter().any(|r| r.src.is_some());
        let plain = fib_rules.iter().all(|r| {
            r.src.is_none()
                && r.dst.is_none()
                && r.selectors_match
                && !r.invert
                && r.suppress_prefixlen.is_none()
                && !r.suppress_ifgroup
                && matches!(r.action, Action::Table(_) | Action::Nop)
        }) && tables
            .iter()
            .all(|(_, v)| v.iter().all(|e| e.to != To::Throw));
        let flat = plain.then(|| {
            let mut seen = Vec::new();
            let mut flat = Vec::new();
            for r in &fib_rules {
                let Action::Table(t) = r.action else { continue };
                if seen.contains(&t) {
                    continue;
                }
                seen.push(t);
                if let Some((_, v)) = tables.iter().find(|(id, _)| *id == t) {
                    flat.extend_from_slice(v);
                }
            }
            flat
        });
        Fib {
            rules: fib_rules,
            tables,
            by_source,
            flat,
        }
    }

    /// Whether some rule selects by source address.
    pub fn by_source(&self) -> bool {
        self.by_source
    }

    /// The route to `dst` from `src` (`None`: unspecified), when it leads
    /// out of an attached port.
    #[inline]
    pub fn lookup(&self, dst: T, src: Option<T>) -> Option<&Entry<T>> {
        if let Some(flat) = &self.flat {
            let e = flat.iter().find(|e| e.covers(dst))?;
            return matches!(e.to, To::Port(_)).then_some(e);
        }
        self.walk(dst, src)
    }

    /// `lookup` through the rules, one by one.
    fn walk(&self, dst: T, src: Option<T>) -> Option<&Entry<T>> {
        let mut i = 0;
        // Gotos only jump forward (the kernel refuses others), so a walk
        // is at most one pass; the bound is for safety only.
        let mut budget = self.rules.len() * 2 + 2;
        while let Some(r) = self.rules.get(i) {
            budget = budget.checked_sub(1)?;
            i += 1;
            if !r.matches(dst, src) {
                continue;
            }
            match r.action {
                Action::Nop => {}
                Action::Reject => return None,
                Action::Goto(p) => {
                    // To the first rule of that priority; none: skipped.
                    if let Some(at) = self.rules.iter().position(|t| t.priority == p) {
                        // The target is matched in turn, as after a jump.
                        i = at;
                    }
                }
                Action::Table(t) => {
                    let Some(e) = self.table_lookup(t, dst) else {
                        continue;
                    };
                    match e.to {
                        To::Throw => continue,
                        To::Blocked => return None,
                        To::Port(_) | To::Elsewhere => {}
                    }
                    if r.suppress_prefixlen.is_some_and(|n| e.len <= n) || r.suppress_ifgroup {
                        continue;
                    }
                    return matches!(e.to, To::Port(_)).then_some(e);
                }
            }
        }
        None
    }

    /// Egress port and next hop towards `dst` (from `src`).
    #[inline]
    pub fn hop(&self, dst: T, src: Option<T>) -> Option<(PortId, T)> {
        let e = self.lookup(dst, src)?;
        match e.to {
            To::Port(p) => Some((p, e.gateway.unwrap_or(dst))),
            _ => None,
        }
    }

    fn table_lookup(&self, table: u32, dst: T) -> Option<&Entry<T>> {
        let (_, v) = self.tables.iter().find(|(id, _)| *id == table)?;
        v.iter().find(|e| e.covers(dst))
    }

    /// Whether `a` is on-link behind `port` in some table (a route through
    /// the port without a gateway covers it): a neighbour lvsd may learn
    /// there, whichever rule leads to that table.
    pub fn on_link(&self, port: PortId, a: T) -> bool {
        self.entries()
            .any(|e| e.to == To::Port(port) && e.gateway.is_none() && e.covers(a))
    }

    /// Every route of every table (not the local one).
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.tables.iter().flat_map(|(_, v)| v.iter())
    }

    /// How many routes the tables hold.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|(_, v)| v.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn port(name: &str, index: i32) -> Interface {
        Interface {
            name: name.into(),
            index,
            mac: [2, 0, 0, 0, 0, index as u8],
            addrs: Vec::new(),
            addrs6: Vec::new(),
            up: true,
            loopback: false,
            ethernet: true,
            mtu: 1500,
        }
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn route(table: u32, dst: [u8; 4], len: u8, gw: Option<[u8; 4]>, oif: u32) -> rtnl::Route {
        rtnl::Route {
            table,
            dst: v4(dst),
            len,
            gateway: gw.map(v4),
            oif,
            metric: 0,
            tos: 0,
            kind: RouteKind::Unicast,
            prefsrc: None,
        }
    }

    fn rule(priority: u32, action: Action) -> rtnl::Rule {
        rtnl::Rule::new(false, priority, action)
    }

    /// The kernel's own IPv4 rules: local, main, default.
    fn default_rules() -> Vec<rtnl::Rule> {
        vec![
            rule(0, Action::Table(255)),
            rule(32766, Action::Table(254)),
            rule(32767, Action::Table(253)),
        ]
    }

    fn hop(f: &Fib<u32>, dst: [u8; 4], src: Option<[u8; 4]>) -> Option<(PortId, Ipv4Addr)> {
        let src = src.map(|s| u32::from(Ipv4Addr::from(s)));
        f.hop(u32::from(Ipv4Addr::from(dst)), src)
            .map(|(p, nh)| (p, Ipv4Addr::from(nh)))
    }

    /// With the kernel's default rules: main before default, longest prefix
    /// first, lowest metric first; rejects and routes out of interfaces
    /// lvsd is not attached to give no path; the local table is no path
    /// table; IPv6 routes stay out of the IPv4 tables.
    #[test]
    fn the_default_rules_look_up_main_then_default() {
        let ports = [port("d0", 2), port("d1", 3)];
        let routes = [
            route(254, [198, 18, 0, 0], 24, None, 2),
            route(254, [198, 18, 1, 0], 24, None, 3),
            rtnl::Route {
                metric: 100,
                ..route(254, [0, 0, 0, 0], 0, Some([198, 18, 1, 1]), 3)
            },
            route(253, [0, 0, 0, 0], 0, Some([198, 18, 0, 1]), 2),
            rtnl::Route {
                metric: 50,
                ..route(254, [198, 18, 9, 0], 24, Some([198, 18, 0, 9]), 2)
            },
            rtnl::Route {
                metric: 10,
                ..route(254, [198, 18, 9, 0], 24, Some([198, 18, 1, 9]), 3)
            },
            rtnl::Route {
                kind: RouteKind::Blocked,
                ..route(254, [198, 18, 1, 128], 25, None, 0)
            },
            route(254, [198, 18, 7, 0], 24, None, 9),
            route(255, [198, 18, 5, 1], 32, None, 2),
            rtnl::Route {
                dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                ..route(254, [0; 4], 0, None, 2)
            },
        ];
        let f = Fib::<u32>::build(routes.iter(), &default_rules(), &ports);
        assert_eq!(f.len(), 8);
        let ip = Ipv4Addr::new;
        assert_eq!(hop(&f, [198, 18, 0, 7], None), Some((0, ip(198, 18, 0, 7))));
        assert_eq!(hop(&f, [198, 18, 1, 7], None), Some((1, ip(198, 18, 1, 7))));
        assert_eq!(hop(&f, [198, 18, 1, 200], None), None);
        assert_eq!(hop(&f, [198, 18, 9, 1], None), Some((1, ip(198, 18, 1, 9))));
        assert_eq!(hop(&f, [198, 18, 7, 1], None), None);
        assert_eq!(hop(&f, [198, 18, 5, 1], None), Some((1, ip(198, 18, 1, 1))));
        assert_eq!(
            hop(&f, [198, 19, 200, 1], None),
            Some((1, ip(198, 18, 1, 1)))
        );
        assert!(!f.by_source());
        // The one-scan form answers as the walk through the rules does.
        assert!(f.flat.is_some());
        for a in [
            [198, 18, 0, 7],
            [198, 18, 1, 200],
            [198, 18, 9, 1],
            [198, 18, 7, 1],
            [1, 2, 3, 4],
        ] {
            let a = u32::from(Ipv4Addr::from(a));
            assert_eq!(f.lookup(a, None), f.walk(a, None), "{a:x}");
        }
        let on = |port: PortId, a: [u8; 4]| f.on_link(port, u32::from(Ipv4Addr::from(a)));
        assert!(on(1, [198, 18, 1, 7]) && on(0, [198, 18, 0, 7]));
        assert!(!on(0, [198, 18, 1, 7]), "on-link behind the other port");
        assert!(!on(1, [198, 19, 0, 1]), "behind a gateway only");
        // Without main's default route, the default table's answers.
        let f = Fib::<u32>::build(
            routes.iter().filter(|r| !(r.table == 254 && r.len == 0)),
            &default_rules(),
            &ports,
        );
        assert_eq!(
            hop(&f, [198, 19, 200, 1], None),
            Some((0, ip(198, 18, 0, 1)))
        );
        // No rules at all: no path.
        let f = Fib::<u32>::build(routes.iter(), &[], &ports);
        assert_eq!(hop(&f, [198, 18, 0, 7], None), None);
    }

    /// Policy rules as the kernel applies them to an output lookup.
    #[test]
    fn policy_rules_select_by_source_and_destination() {
        let ports = [port("d0", 2), port("d1", 3)];
        let routes = [
            route(254, [198, 18, 0, 0], 24, None, 2),
            route(254, [198, 18, 1, 0], 24, None, 3),
            route(254, [0, 0, 0, 0], 0, Some([198, 18, 1, 1]), 3),
            // Table 100: the VIP's replies leave by d0's gateway.
            route(100, [0, 0, 0, 0], 0, Some([198, 18, 0, 254]), 2),
            // Table 102 throws one /24 back to the rules, and has a
            // blackhole for another.
            rtnl::Route {
                kind: RouteKind::Throw,
                ..route(102, [198, 18, 9, 0], 24, None, 0)
            },
            rtnl::Route {
                kind: RouteKind::Blocked,
                ..route(102, [198, 18, 8, 0], 24, None, 0)
            },
            route(102, [198, 18, 0, 0], 16, Some([198, 18, 0, 102]), 2),
        ];
        let ip = Ipv4Addr::new;
        let vip = Some([198, 18, 0, 100]);
        let from = |r: rtnl::Rule, a: [u8; 4], len: u8| rtnl::Rule {
            src: Some((v4(a), len)),
            ..r
        };
        let to = |r: rtnl::Rule, a: [u8; 4], len: u8| rtnl::Rule {
            dst: Some((v4(a), len)),
            ..r
        };
        let with = |extra: Vec<rtnl::Rule>| {
            let mut rules = default_rules();
            rules.extend(extra);
            Fib::<u32>::build(routes.iter(), &rules, &ports)
        };

        // `from VIP lookup 100`: only a lookup from the VIP takes it.
        let f = with(vec![from(
            rule(100, Action::Table(100)),
            [198, 18, 0, 100],
            32,
        )]);
        assert!(f.by_source() && f.flat.is_none());
        assert_eq!(hop(&f, [198, 19, 0, 1], None), Some((1, ip(198, 18, 1, 1))));
        assert_eq!(
            hop(&f, [198, 19, 0, 1], vip),
            Some((0, ip(198, 18, 0, 254)))
        );
        assert_eq!(
            hop(&f, [198, 19, 0, 1], Some([198, 18, 0, 101])),
            Some((1, ip(198, 18, 1, 1)))
        );
        // Inverted (`not from VIP`): every other lookup takes it.
        let f = with(vec![rtnl::Rule {
            invert: true,
            ..from(rule(100, Action::Table(100)), [198, 18, 0, 100], 32)
        }]);
        assert_eq!(
            hop(&f, [198, 19, 0, 1], None),
            Some((0, ip(198, 18, 0, 254)))
        );
        assert_eq!(hop(&f, [198, 19, 0, 1], vip), Some((1, ip(198, 18, 1, 1))));
        // A `from 0.0.0.0/1` rule holds the unspecified source.
        let f = with(vec![from(rule(100, Action::Table(100)), [0, 0, 0, 0], 1)]);
        assert_eq!(
            hop(&f, [198, 19, 0, 1], None),
            Some((0, ip(198, 18, 0, 254)))
        );
        assert_eq!(hop(&f, [198, 19, 0, 1], vip), Some((1, ip(198, 18, 1, 1))));

        // `to 198.18.1.11 prohibit`: no path, whatever comes after.
        let f = with(vec![to(rule(50, Action::Reject), [198, 18, 1, 11], 32)]);
        assert_eq!(hop(&f, [198, 18, 1, 11], None), None);
        assert_eq!(
            hop(&f, [198, 18, 1, 12], None),
            Some((1, ip(198, 18, 1, 12)))
        );

        // Selectors lvsd's lookups never carry (an input interface other
        // than lo, a mark…): the rule does not match, unless inverted.
        let f = with(vec![rtnl::Rule {
            selectors_match: false,
            ..rule(10, Action::Reject)
        }]);
        assert_eq!(
            hop(&f, [198, 18, 1, 12], None),
            Some((1, ip(198, 18, 1, 12)))
        );
        let f = with(vec![rtnl::Rule {
            selectors_match: false,
            invert: true,
            ..rule(10, Action::Reject)
        }]);
        assert_eq!(hop(&f, [198, 18, 1, 12], None), None);

        // Throw goes on to the next rule; a blackhole ends the lookup; a
        // table without a route for the address goes on as well.
        let f = with(vec![
            rule(20, Action::Table(102)),
            rule(21, Action::Table(77)),
        ]);
        assert_eq!(hop(&f, [198, 18, 9, 1], None), Some((1, ip(198, 18, 1, 1))));
        assert_eq!(hop(&f, [198, 18, 8, 1], None), None);
        assert_eq!(
            hop(&f, [198, 18, 1, 5], None),
            Some((0, ip(198, 18, 0, 102)))
        );
        assert_eq!(hop(&f, [198, 19, 1, 5], None), Some((1, ip(198, 18, 1, 1))));

        // `goto` skips the rules between; `nop` does nothing; a goto to a
        // priority no rule has is skipped.
        let f = with(vec![
            rule(5, Action::Nop),
            rule(10, Action::Goto(30)),
            rule(20, Action::Reject),
            rule(30, Action::Table(100)),
        ]);
        assert_eq!(
            hop(&f, [198, 18, 1, 5], None),
            Some((0, ip(198, 18, 0, 254)))
        );
        let f = with(vec![rule(10, Action::Goto(25)), rule(20, Action::Reject)]);
        assert_eq!(hop(&f, [198, 18, 1, 5], None), None);

        // `lookup main suppress_prefixlength 0` then `lookup 100`: main
        // answers for all but its default route.
        let f = with(vec![
            rtnl::Rule {
                suppress_prefixlen: Some(0),
                ..rule(30, Action::Table(254))
            },
            rule(40, Action::Table(100)),
        ]);
        assert_eq!(hop(&f, [198, 18, 1, 5], None), Some((1, ip(198, 18, 1, 5))));
        assert_eq!(
            hop(&f, [198, 19, 1, 5], None),
            Some((0, ip(198, 18, 0, 254)))
        );
        // `suppress_ifgroup 0`: every route through lvsd's interfaces.
        let f = with(vec![
            rtnl::Rule {
                suppress_ifgroup: Some(0),
                ..rule(30, Action::Table(254))
            },
            rule(40, Action::Table(100)),
        ]);
        assert_eq!(
            hop(&f, [198, 18, 1, 5], None),
            Some((0, ip(198, 18, 0, 254)))
        );
    }

    /// IPv6 rules and tables are kept apart from IPv4's, by family.
    #[test]
    fn ipv6_rules_follow_their_own_family() {
        let ports = [port("d0", 2), port("d1", 3)];
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let r6 = |table: u32, dst: &str, len: u8, gw: Option<&str>, oif: u32| rtnl::Route {
            dst: v6(dst),
            len,
            gateway: gw.map(v6),
            ..route(table, [0; 4], 0, None, oif)
        };
        let routes = [
            r6(254, "2001:db8:1::", 64, None, 3),
            r6(254, "::", 0, Some("2001:db8:1::1"), 3),
            r6(100, "::", 0, Some("2001:db8:1::fe"), 2),
        ];
        let rules = [
            rtnl::Rule {
                v6: true,
                ..rule(0, Action::Table(255))
            },
            rtnl::Rule {
                v6: true,
                src: Some((v6("2001:db8::100"), 128)),
                ..rule(100, Action::Table(100))
            },
            rtnl::Rule {
                v6: true,
                ..rule(32766, Action::Table(254))
            },
            // An IPv4 rule that would reject everything.
            rule(1, Action::Reject),
        ];
        let f = Fib::<u128>::build(routes.iter(), &rules, &ports);
        let at = |d: &str, s: Option<&str>| {
            let a = |x: &str| u128::from(x.parse::<Ipv6Addr>().unwrap());
            f.hop(a(d), s.map(a)).map(|(p, nh)| (p, Ipv6Addr::from(nh)))
        };
        let ip = |x: &str| x.parse::<Ipv6Addr>().unwrap();
        assert_eq!(at("2001:db8:9::1", None), Some((1, ip("2001:db8:1::1"))));
        assert_eq!(
            at("2001:db8:9::1", Some("2001:db8::100")),
            Some((0, ip("2001:db8:1::fe")))
        );
        assert_eq!(at("2001:db8:1::5", None), Some((1, ip("2001:db8:1::5"))));
        let f4 = Fib::<u32>::build(routes.iter(), &rules, &ports);
        assert_eq!(f4.len(), 0);
    }
}
