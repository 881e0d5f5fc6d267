//! Keeping the host kernel from handling the packets lvsd balances
//! ("two stacks, one packet"): the kernel sees every frame lvsd sees.
//!
//! Preferred: an nftables table `netdev lvsd` with one ingress chain on the
//! interfaces lvsd is attached to, dropping the client→VIP:port packets of
//! every virtual service and the NAT real servers' replies to clients (but
//! not replies addressed to the director itself, so its own connections to
//! real servers keep working). The ingress hook runs right after the packet
//! taps of the receiving device, so lvsd has its copy before the kernel
//! drops its own. (A prerouting chain would not do: with `br_netfilter`
//! loaded, prerouting runs at the bridge port, before the bridge device's
//! taps.) This works with the VIP configured on a kernel interface (as
//! keepalived does) and with kernel forwarding on.
//!
//! The chain's nine rules never change: they look the packet up in nine
//! sets (VIP . protocol . port, VIP . protocol for all-port services, the
//! same for NAT real servers' replies — each for IPv4 and IPv6 — and the flows of directors without
//! an address: source net . destination net . protocol . port range). `nft`
//! creates the table once; a change of the services is applied as the
//! difference of the sets' elements, in one atomic nf_tables batch sent
//! over netlink (`nft_sets`), by a thread of its own: the packet loop only
//! collects the wanted elements (unsorted) and never waits for the
//! kernel. Changes that come faster than batches are applied are coalesced
//! (the latest wins).
//!
//! Fallback when `nft` is not installed: switch IPv4 and IPv6 forwarding
//! off in the namespace while lvsd runs (restored on exit); the VIP then
//! must not be on a kernel interface.

use crate::nft_sets::{self, Change, Key};
use lvs_core::wire::ipproto;
use lvs_core::Engine;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

const TABLE: &str = "lvsd";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// How the kernel is kept out of the way.
pub enum KernelGuard {
    Nft(NftGuard),
    /// Forwarding switched off: the values to put back (IPv4, IPv6).
    Forwarding {
        restore: Option<String>,
        restore6: Option<String>,
    },
}

fn proto_name(p: u8) -> Option<&'static str> {
    match p {
        ipproto::TCP => Some("tcp"),
        ipproto::UDP => Some("udp"),
        ipproto::SCTP => Some("sctp"),
        _ => None,
    }
}

/// One element of one of the guard's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// Client→VIP:port packets of a service.
    Service(Ipv4Addr, u8, u16),
    /// Every port of the VIP (a persistent port-0 service).
    ServiceAnyPort(Ipv4Addr, u8),
    /// A NAT real server's replies from this port.
    Server(Ipv4Addr, u8, u16),
    /// A NAT real server's replies from any port (all-port service).
    ServerAnyPort(Ipv4Addr, u8),
    /// The same four for IPv6.
    Service6(Ipv6Addr, u8, u16),
    ServiceAnyPort6(Ipv6Addr, u8),
    Server6(Ipv6Addr, u8, u16),
    ServerAnyPort6(Ipv6Addr, u8),
    /// A flow's packets: source and destination networks, protocol, and
    /// a destination port range.
    /// Both networks are of one family (IPv6: the `flows6` set).
    Flow {
        src: (IpAddr, u8),
        dst: (IpAddr, u8),
        proto: u8,
        ports: (u16, u16),
    },
}

impl Element {
    fn set(&self) -> &'static str {
        match self {
            Element::Service(..) => "svc",
            Element::ServiceAnyPort(..) => "svc_any",
            Element::Server(..) => "rs",
            Element::ServerAnyPort(..) => "rs_any",
            Element::Flow { dst, .. } if dst.0.is_ipv6() => "flows6",
            Element::Flow { .. } => "flows",
            Element::Service6(..) => "svc6",
            Element::ServiceAnyPort6(..) => "svc_any6",
            Element::Server6(..) => "rs6",
            Element::ServerAnyPort6(..) => "rs_any6",
        }
    }

    /// The element's key in its set (`nft_sets`'s layout).
    fn key(&self) -> Key {
        use nft_sets::{field_addr, field_port, field_proto};
        let mut k = Vec::with_capacity(16);
        match *self {
            Element::Service(a, pr, port) | Element::Server(a, pr, port) => {
                field_addr(&mut k, a);
                field_proto(&mut k, pr);
                field_port(&mut k, port);
            }
            Element::ServiceAnyPort(a, pr) | Element::ServerAnyPort(a, pr) => {
                field_addr(&mut k, a);
                field_proto(&mut k, pr);
            }
            Element::Service6(a, pr, port) | Element::Server6(a, pr, port) => {
                k.extend_from_slice(&a.octets());
                field_proto(&mut k, pr);
                field_port(&mut k, port);
            }
            Element::ServiceAnyPort6(a, pr) | Element::ServerAnyPort6(a, pr) => {
                k.extend_from_slice(&a.octets());
                field_proto(&mut k, pr);
            }
            Element::Flow {
                src,
                dst,
                proto,
                ports,
            } => {
                let mut end = Vec::with_capacity(16);
                for (k, (s, d, port)) in [
                    (&mut k, (src.0, dst.0, ports.0)),
                    (&mut end, (last(src), last(dst), ports.1)),
                ] {
                    field_ip(k, s);
                    field_ip(k, d);
                    field_proto(k, proto);
                    field_port(k, port);
                }
                return Key {
                    start: k,
                    end: Some(end),
                };
            }
        }
        Key {
            start: k,
            end: None,
        }
    }
}

/// The last address of network `n` (its start with every host bit set).
fn last(n: (IpAddr, u8)) -> IpAddr {
    match n.0 {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(n.1)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(n.1)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
        }
    }
}

/// An address field of either family.
fn field_ip(k: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => nft_sets::field_addr(k, a),
        IpAddr::V6(a) => k.extend_from_slice(&a.octets()),
    }
}

/// The elements the engine's services call for, in no order and perhaps
/// repeated (the guard's thread sorts them out: the packet loop only
/// collects). Destinations that were deleted but still carry connections
/// keep theirs, since lvsd still translates their replies.
pub fn elements(engine: &Engine) -> Vec<Element> {
    let mut v = Vec::with_capacity(engine.all_dests().size_hint().0 + 16);
    let mut marks = std::collections::HashSet::new();
    for key in engine.service_keys() {
        if let Some(m) = key.mark() {
            marks.insert(m);
            continue;
        }
        if proto_name(key.protocol).is_none() {
            continue;
        }
        let pr = key.protocol;
        // A port-0 service (persistent, all ports) takes every port.
        v.push(match (key.addr, key.port) {
            (IpAddr::V4(vip), 0) => Element::ServiceAnyPort(vip, pr),
            (IpAddr::V4(vip), port) => Element::Service(vip, pr, port),
            (IpAddr::V6(vip), 0) => Element::ServiceAnyPort6(vip, pr),
            (IpAddr::V6(vip), port) => Element::Service6(vip, pr, port),
        });
    }
    for d in engine.all_dests() {
        // Only NAT real servers' replies are translated by lvsd; replies of
        // direct-routing and tunnel servers carry the VIP and are the host's
        // to forward (or to never see).
        if d.forward != lvs_core::Forward::Masq {
            continue;
        }
        let any = |pr| match d.addr {
            IpAddr::V4(rip) => Element::ServerAnyPort(rip, pr),
            IpAddr::V6(rip) => Element::ServerAnyPort6(rip, pr),
        };
        if d.svc_key.mark().is_some() {
            // A firewall-mark service's server answers on whatever its
            // flows take: every protocol, every port.
            v.extend(ALL_PROTOCOLS.map(any));
            continue;
        }
        let pr = d.svc_key.protocol;
        if proto_name(pr).is_none() {
            continue;
        }
        v.push(match (d.addr, d.reply_port()) {
            (_, 0) => any(pr),
            (IpAddr::V4(rip), port) => Element::Server(rip, pr, port),
            (IpAddr::V6(rip), port) => Element::Server6(rip, pr, port),
        });
    }
    flow_elements(engine, &marks, &mut v);
    v
}

const ALL_PROTOCOLS: [u8; 3] = [ipproto::TCP, ipproto::UDP, ipproto::SCTP];

/// The elements of the flows whose mark has a service.
fn flow_elements(engine: &Engine, marks: &std::collections::HashSet<u32>, v: &mut Vec<Element>) {
    for f in engine.flows() {
        let dst = f.dst;
        if !marks.contains(&f.mark) {
            continue;
        }
        let src = match f.src {
            Some((a, l)) if a.is_ipv6() == dst.is_ipv6() => (a, l),
            Some(_) => continue,
            None if dst.is_ipv6() => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        let protos: Vec<u8> = f.protocol.map_or(ALL_PROTOCOLS.to_vec(), |p| vec![p]);
        let ports = if f.ports.is_empty() {
            vec![(0, 65535)]
        } else {
            f.ports.clone()
        };
        for &proto in &protos {
            for &range in &ports {
                v.push(Element::Flow {
                    src,
                    dst: (dst, f.dst_len),
                    proto,
                    ports: range,
                });
            }
        }
    }
}

/// The table with its fixed chain and empty sets, replacing any table a
/// crashed lvsd left.
pub fn table(devices: &[String]) -> String {
    let devs: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "add table netdev {TABLE}
delete table netdev {TABLE}
table netdev {TABLE} {{
  set svc {{ type ipv4_addr . inet_proto . inet_service; }}
  set svc_any {{ type ipv4_addr . inet_proto; }}
  set rs {{ type ipv4_addr . inet_proto . inet_service; }}
  set rs_any {{ type ipv4_addr . inet_proto; }}
  set flows {{ type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval; }}
  set svc6 {{ type ipv6_addr . inet_proto . inet_service; }}
  set svc_any6 {{ type ipv6_addr . inet_proto; }}
  set rs6 {{ type ipv6_addr . inet_proto . inet_service; }}
  set rs_any6 {{ type ipv6_addr . inet_proto; }}
  set flows6 {{ type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags interval; }}
  chain ingress {{
    type filter hook ingress devices = {{ {} }} priority filter; policy accept;
    ip daddr . meta l4proto . th dport @svc drop
    ip daddr . meta l4proto @svc_any drop
    ip saddr . meta l4proto . th sport @rs fib daddr type != local drop
    ip saddr . meta l4proto @rs_any fib daddr type != local drop
    ip saddr . ip daddr . meta l4proto . th dport @flows fib daddr type != local drop
    ip6 daddr . meta l4proto . th dport @svc6 drop
    ip6 daddr . meta l4proto @svc_any6 drop
    ip6 saddr . meta l4proto . th sport @rs6 fib daddr type != local drop
    ip6 saddr . meta l4proto @rs_any6 fib daddr type != local drop
    ip6 saddr . ip6 daddr . meta l4proto . th dport @flows6 fib daddr type != local drop
  }}
}}
",
        devs.join(", ")
    )
}

/// The set changes that turn the sets holding `have` into `want`
/// (deletions first); empty if they are equal.
pub fn difference<'a>(have: &'a BTreeSet<Element>, want: &'a BTreeSet<Element>) -> Vec<Change<'a>> {
    let mut v = Vec::new();
    for (add, from, to) in [(false, have, want), (true, want, have)] {
        for set in SETS {
            let keys: Vec<Key> = from
                .difference(to)
                .filter(|e| e.set() == set)
                .map(Element::key)
                .collect();
            if !keys.is_empty() {
                v.push(Change { add, set, keys });
            }
        }
    }
    v
}

const SETS: [&str; 10] = [
    "svc", "svc_any", "rs", "rs_any", "flows", "svc6", "svc_any6", "rs6", "rs_any6", "flows6",
];

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn nft_available() -> bool {
    Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the packet loop and the guard's thread share.
#[derive(Default)]
struct Slot {
    /// The latest wanted elements not yet taken by the thread.
    wanted: Option<Vec<Element>>,
    stop: bool,
}

/// The nftables guard: the table, and the thread that keeps its sets.
pub struct NftGuard {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl NftGuard {
    /// Creates the table with the engine's elements (synchronously: the
    /// guard is in place before lvsd handles a packet) and starts the
    /// thread.
    fn install(engine: &Engine, devices: &[String]) -> Result<NftGuard, String> {
        let want: BTreeSet<Element> = elements(engine).into_iter().collect();
        nft(&table(devices))?;
        nft_sets::apply(TABLE, &difference(&BTreeSet::new(), &want))
            .map_err(|e| format!("filling the nftables guard's sets: {e}"))?;
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lvsd-guard".into())
            .spawn(move || keep_sets(&s2, want))
            .map_err(|e| format!("cannot start the guard's thread: {e}"))?;
        Ok(NftGuard {
            shared,
            thread: Some(thread),
        })
    }

    fn update(&mut self, engine: &Engine) {
        let want = elements(engine);
        let (m, cv) = &*self.shared;
        if let Ok(mut slot) = m.lock() {
            slot.wanted = Some(want);
            cv.notify_one();
        }
    }
}

/// The guard's thread: applies each new wanted set as a difference from
/// what the table holds, until told to stop.
fn keep_sets(shared: &(Mutex<Slot>, Condvar), mut have: BTreeSet<Element>) {
    let (m, cv) = shared;
    // After a failure: the same difference is tried again, waiting longer
    // each time (1 s, 2 s, … 30 s) unless a newer set comes first.
    let mut backoff = std::time::Duration::ZERO;
    loop {
        let want = {
            let Ok(mut slot) = m.lock() else { return };
            if !backoff.is_zero() && !slot.stop {
                slot = match cv.wait_timeout(slot, backoff) {
                    Ok((s, _)) => s,
                    Err(_) => return,
                };
            }
            while slot.wanted.is_none() && !slot.stop {
                slot = match cv.wait(slot) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if slot.stop {
                return;
            }
            slot.wanted.take().unwrap_or_default()
        };
        let want: BTreeSet<Element> = want.into_iter().collect();
        let changes = difference(&have, &want);
        if changes.is_empty() {
            continue;
        }
        let res = nft_sets::apply(TABLE, &changes);
        drop(changes);
        match res {
            Ok(()) => {
                have = want;
                backoff = std::time::Duration::ZERO;
            }
            Err(e) => {
                // The batch is atomic: the sets are as they were. Unless a
                // newer set is waiting, this one is tried again.
                tracing::warn!("updating the nftables guard (tried again later): {e}");
                if let Ok(mut slot) = m.lock() {
                    if slot.wanted.is_none() {
                        slot.wanted = Some(want.into_iter().collect());
                    }
                }
                backoff = (backoff * 2).clamp(
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(30),
                );
            }
        }
    }
}

impl KernelGuard {
    /// Installs the guard for the engine's current services.
    pub fn install(engine: &Engine, devices: &[String]) -> Result<KernelGuard, String> {
        if nft_available() {
            let g = NftGuard::install(engine, devices)?;
            tracing::info!(
                "nftables table `netdev {TABLE}` keeps the kernel from handling balanced packets"
            );
            return Ok(KernelGuard::Nft(g));
        }
        let off = |path: &str| -> Result<Option<String>, String> {
            let old = match std::fs::read_to_string(path) {
                Ok(v) => v,
                // No IPv6 in this kernel: nothing to switch off.
                Err(_) if path == IP6_FORWARD => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "nft is not installed and {path} cannot be read: {e}"
                    ))
                }
            };
            if old.trim() == "0" {
                return Ok(None);
            }
            std::fs::write(path, "0")
                .map_err(|e| format!("nft is not installed and {path} cannot be set to 0: {e}"))?;
            Ok(Some(old.trim().to_string()))
        };
        let restore = off(IP_FORWARD)?;
        let restore6 = match off(IP6_FORWARD) {
            Ok(v) => v,
            Err(e) => {
                if let Some(v) = &restore {
                    let _ = std::fs::write(IP_FORWARD, v);
                }
                return Err(e);
            }
        };
        if restore.is_some() || restore6.is_some() {
            tracing::info!("nft not found: switched kernel IP forwarding off in this namespace (restored on exit)");
        }
        Ok(KernelGuard::Forwarding { restore, restore6 })
    }

    /// Follows a change of the service set: computes the wanted elements
    /// and hands them to the guard's thread (never waits for `nft`).
    pub fn update(&mut self, engine: &Engine) {
        if let KernelGuard::Nft(g) = self {
            g.update(engine);
        }
    }
}

impl Drop for NftGuard {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.shared.0.lock() {
            slot.stop = true;
            self.shared.1.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = nft(&format!("delete table netdev {TABLE}\n")) {
            tracing::warn!("could not remove nftables table `netdev {TABLE}`: {e}");
        }
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        if let KernelGuard::Forwarding { restore, restore6 } = self {
            if let Some(v) = restore {
                let _ = std::fs::write(IP_FORWARD, v);
            }
            if let Some(v) = restore6 {
                let _ = std::fs::write(IP6_FORWARD, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::{DestConfig, Forward, ServiceKey};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

    fn nat(port: u16) -> DestConfig {
        DestConfig {
            tunnel: Default::default(),
            addr: RIP.into(),
            port,
            forward: Forward::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn elements_follow_services_and_nat_servers_only() {
        let mut e = Engine::new(0);
        let key = ServiceKey {
            protocol: 6,
            addr: VIP.into(),
            port: 80,
        };
        e.add_service(key, "rr", 0).unwrap();
        e.add_dest(key, nat(8080)).unwrap();
        let udp = ServiceKey {
            protocol: 17,
            port: 53,
            ..key
        };
        e.add_service(udp, "rr", 0).unwrap();
        // A direct-routing server's replies are not lvsd's.
        e.add_dest(
            udp,
            DestConfig {
                forward: Forward::Route,
                addr: Ipv4Addr::new(198, 18, 1, 12).into(),
                ..nat(53)
            },
        )
        .unwrap();
        // A port-0 (all ports, persistent) service takes every port.
        let all = ServiceKey { port: 0, ..key };
        let opts = lvs_core::ServiceOptions {
            persistent: Some(60),
            ..Default::default()
        };
        e.add_service_with(all, "rr", 0, opts).unwrap();
        e.add_dest(all, nat(0)).unwrap();
        let got: Vec<Element> = sorted(&e).into_iter().collect();
        assert_eq!(
            got,
            vec![
                Element::Service(VIP, 6, 80),
                Element::Service(VIP, 17, 53),
                Element::ServiceAnyPort(VIP, 6),
                Element::Server(RIP, 6, 8080),
                Element::ServerAnyPort(RIP, 6),
            ]
        );
        // Deleting the services removes their elements (a deleted NAT
        // server's stay while the engine keeps the destination).
        e.delete_service(all).unwrap();
        e.delete_service(key).unwrap();
        let left = sorted(&e);
        assert!(left.contains(&Element::Service(VIP, 17, 53)), "{left:?}");
        assert!(
            !left
                .iter()
                .any(|e| matches!(e, Element::Service(_, 6, _) | Element::ServiceAnyPort(..))),
            "{left:?}"
        );
    }

    #[test]
    fn flows_of_firewall_mark_services_become_interval_elements() {
        let mut e = Engine::new(0);
        let key = ServiceKey::fwmark(7, false);
        e.add_service(key, "rr", 0).unwrap();
        e.add_dest(key, nat(0)).unwrap();
        let flow = |mark| lvs_core::Flow {
            dst: VIP.into(),
            dst_len: 30,
            src: None,
            protocol: Some(6),
            ports: vec![(80, 80), (8000, 8010)],
            mark,
        };
        // A flow whose mark has no service is the host's.
        e.set_flows(vec![flow(7), flow(8)]);
        let got: Vec<(&str, Key)> = sorted(&e).iter().map(|x| (x.set(), x.key())).collect();
        let any = |p: u8| Key {
            start: vec![198, 18, 1, 11, p, 0, 0, 0],
            end: None,
        };
        // Source 0.0.0.0/0, destination 198.18.0.100/30, TCP, a port range:
        // each field's first and last value.
        let range = |lo: u16, hi: u16| Key {
            start: [[0, 0, 0, 0], [198, 18, 0, 100], [6, 0, 0, 0]]
                .concat()
                .into_iter()
                .chain(lo.to_be_bytes())
                .chain([0, 0])
                .collect(),
            end: Some(
                [[255, 255, 255, 255], [198, 18, 0, 103], [6, 0, 0, 0]]
                    .concat()
                    .into_iter()
                    .chain(hi.to_be_bytes())
                    .chain([0, 0])
                    .collect(),
            ),
        };
        assert_eq!(
            got,
            [
                ("rs_any", any(6)),
                ("rs_any", any(17)),
                ("rs_any", any(132)),
                ("flows", range(80, 80)),
                ("flows", range(8000, 8010)),
            ]
        );
    }

    #[test]
    fn ipv6_services_and_nat_servers_have_their_own_sets() {
        let mut e = Engine::new(0);
        let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let rip: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        let key = ServiceKey {
            protocol: 6,
            addr: vip.into(),
            port: 80,
        };
        e.add_service(key, "rr", 0).unwrap();
        e.add_dest(
            key,
            DestConfig {
                addr: rip.into(),
                ..nat(8080)
            },
        )
        .unwrap();
        let got: Vec<(&str, Key)> = sorted(&e).iter().map(|x| (x.set(), x.key())).collect();
        let k = |a: Ipv6Addr, port: u16| Key {
            start: a
                .octets()
                .into_iter()
                .chain([6, 0, 0, 0])
                .chain(port.to_be_bytes())
                .chain([0, 0])
                .collect(),
            end: None,
        };
        assert_eq!(got, [("svc6", k(vip, 80)), ("rs6", k(rip, 8080))]);
        let t = table(&["d0".into()]);
        assert!(
            t.contains("set svc6 { type ipv6_addr . inet_proto . inet_service; }"),
            "{t}"
        );
        assert!(
            t.contains("ip6 daddr . meta l4proto . th dport @svc6 drop"),
            "{t}"
        );
    }

    #[test]
    fn ipv6_flows_have_their_own_interval_set() {
        let mut e = Engine::new(0);
        let key = ServiceKey::fwmark(9, true);
        e.add_service(key, "rr", 0).unwrap();
        let net: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let from: Ipv6Addr = "2001:db8:5::".parse().unwrap();
        e.set_flows(vec![lvs_core::Flow {
            dst: net.into(),
            dst_len: 124,
            src: Some((from.into(), 48)),
            protocol: Some(17),
            ports: vec![(53, 53)],
            mark: 9,
        }]);
        let got: Vec<(&str, Key)> = sorted(&e).iter().map(|x| (x.set(), x.key())).collect();
        let field = |a: &str, proto_port: [u8; 6]| -> Vec<u8> {
            a.parse::<Ipv6Addr>()
                .unwrap()
                .octets()
                .into_iter()
                .chain(proto_port)
                .collect()
        };
        let (start, end) = (
            [
                from.octets().to_vec(),
                field("2001:db8::100", [17, 0, 0, 0, 0, 53]),
            ]
            .concat(),
            [
                "2001:db8:5:ffff:ffff:ffff:ffff:ffff"
                    .parse::<Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
                field("2001:db8::10f", [17, 0, 0, 0, 0, 53]),
            ]
            .concat(),
        );
        // Ports are two bytes padded to four.
        let pad = |mut v: Vec<u8>| {
            v.extend([0, 0]);
            v
        };
        assert_eq!(
            got,
            [(
                "flows6",
                Key {
                    start: pad(start),
                    end: Some(pad(end)),
                }
            )]
        );
        let t = table(&["d0".into()]);
        assert!(
            t.contains("ip6 saddr . ip6 daddr . meta l4proto . th dport @flows6 fib daddr type != local drop"),
            "{t}"
        );
    }

    fn sorted(e: &Engine) -> BTreeSet<Element> {
        elements(e).into_iter().collect()
    }

    #[test]
    fn a_change_is_the_difference_of_the_sets() {
        let have: BTreeSet<Element> =
            [Element::Service(VIP, 6, 80), Element::Server(RIP, 6, 8080)].into();
        let want: BTreeSet<Element> = [
            Element::Service(VIP, 6, 80),
            Element::Service(VIP, 132, 9),
            Element::ServerAnyPort(RIP, 17),
        ]
        .into();
        let d = difference(&have, &want);
        let got: Vec<(bool, &str, usize)> =
            d.iter().map(|c| (c.add, c.set, c.keys.len())).collect();
        assert_eq!(
            got,
            [(false, "rs", 1), (true, "svc", 1), (true, "rs_any", 1)]
        );
        assert_eq!(d[0].keys[0], Element::Server(RIP, 6, 8080).key());
        assert_eq!(d[1].keys[0], Element::Service(VIP, 132, 9).key());
        assert!(difference(&want, &want).is_empty());
    }

    #[test]
    fn the_table_has_fixed_rules_on_the_attached_devices() {
        let t = table(&["d0".into(), "br1".into()]);
        assert!(
            t.starts_with("add table netdev lvsd\ndelete table netdev lvsd\n"),
            "{t}"
        );
        assert!(
            t.contains("hook ingress devices = { \"d0\", \"br1\" }"),
            "{t}"
        );
        assert!(
            t.contains("ip daddr . meta l4proto . th dport @svc drop"),
            "{t}"
        );
        assert!(
            t.contains("ip saddr . meta l4proto . th sport @rs fib daddr type != local drop"),
            "{t}"
        );
    }
}
