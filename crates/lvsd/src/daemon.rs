//! The packet loop: attaches to interfaces, answers ARP for the VIPs,
//! runs every IPv4 frame addressed to us through the engine, routes the
//! rewritten packets out, serves the control socket between batches, and
//! stops cleanly on SIGTERM/SIGINT.

use crate::arp::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR};
use crate::control::ControlServer;
use crate::desired::{Check, Desired};
use crate::fib::{self, Fib};
use crate::guard::KernelGuard;
use crate::io::afpacket::AfPacket;
use crate::io::{Offload, PacketIo, PortId};
use crate::ndp;
use crate::net::{self, Interface, Neighbours};
use crate::pending::Pending;
use crate::rtnl;
use lvs_core::xmit::{self, PacketBuf, Transmit};
use lvs_core::Engine;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the daemon was asked to run.
pub struct Options {
    pub config: Option<PathBuf>,
    /// `--control`: wins over the file's `control socket`.
    pub control: Option<PathBuf>,
    /// `--metrics`: wins over the file's `metrics` line.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--fastpath xdp|tc`: established NAT flows in an XDP or TC program.
    pub fastpath: Option<crate::xdp::Hook>,
    /// `--fastpath-after`: client packets before a connection is offered.
    pub fastpath_after: u64,
}

/// Counters of the daemon's own decisions (the engine counts the rest).
#[derive(Default, Debug)]
struct Counters {
    rx: u64,
    tx: u64,
    /// IPv4 frames whose L4 checksum was left to offload (partial).
    rx_csum_partial: u64,
    /// GSO super-packets received.
    rx_gso: u64,
    no_route: u64,
    no_neighbour: u64,
    tx_refused: u64,
    arp_replies: u64,
    /// ICMP echo replies sent for VIPs.
    echo_replies: u64,
    icmp_ratelimited: u64,
    /// Frames parked while their next hop was being resolved.
    parked: u64,
    /// Fragments sent for packets over the path MTU.
    fragments: u64,
    /// Frames with a VLAN tag seen on a parent interface (left alone).
    rx_vlan_other: u64,
    /// Segments cut from super-packets lvsd had to segment itself.
    segments: u64,
    /// Route, neighbour and address changes read from rtnetlink.
    netlink_events: u64,
    /// Neighbour advertisements sent for IPv6 VIPs.
    nd_adverts: u64,
    /// Receive batches (one system call each) that brought frames.
    rx_batches: u64,
    /// VRRP: instances that are master here, advertisements sent,
    /// received and discarded (bad TTL, checksum, version, …).
    vrrp_masters: u64,
    vrrp_sent: u64,
    vrrp_received: u64,
    vrrp_discarded: u64,
    /// The XDP fast path: flows carried now, packets it carried (folded
    /// every second), offers it could not take (no route or neighbour),
    /// flows written again after their route or next hop changed.
    fastpath_flows: u64,
    fastpath_packets: u64,
    fastpath_skipped: u64,
    fastpath_rewritten: u64,
}

impl Counters {
    /// Every counter by name (`lvsadm --counters` shows them as `io.*`).
    fn list(&self, neighbours: usize, routes: usize) -> [(&'static str, u64); 27] {
        [
            ("fastpath_flows", self.fastpath_flows),
            ("fastpath_packets", self.fastpath_packets),
            ("fastpath_skipped", self.fastpath_skipped),
            ("fastpath_rewritten", self.fastpath_rewritten),
            ("vrrp_master_instances", self.vrrp_masters),
            ("vrrp_adverts_sent", self.vrrp_sent),
            ("vrrp_adverts_received", self.vrrp_received),
            ("vrrp_adverts_discarded", self.vrrp_discarded),
            ("rx_frames", self.rx),
            ("rx_batches", self.rx_batches),
            ("tx_frames", self.tx),
            ("rx_csum_partial", self.rx_csum_partial),
            ("rx_gso", self.rx_gso),
            ("rx_vlan_other_interface", self.rx_vlan_other),
            ("tx_fragments", self.fragments),
            ("tx_segments", self.segments),
            ("drop_no_route", self.no_route),
            ("drop_no_neighbour", self.no_neighbour),
            ("tx_refused", self.tx_refused),
            ("arp_replies", self.arp_replies),
            ("echo_replies", self.echo_replies),
            ("icmp_ratelimited", self.icmp_ratelimited),
            ("parked_for_arp", self.parked),
            ("neighbours", neighbours as u64),
            ("routes", routes as u64),
            ("netlink_events", self.netlink_events),
            ("nd_adverts", self.nd_adverts),
        ]
    }
}

/// A token bucket of one token per millisecond, `BURST` deep.
struct IcmpLimit {
    tokens: u64,
    last_ms: u64,
}

impl IcmpLimit {
    const BURST: u64 = 50;

    fn allow(&mut self, now_ms: u64) -> bool {
        self.tokens = (self.tokens + now_ms.saturating_sub(self.last_ms)).min(Self::BURST);
        self.last_ms = now_ms;
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

struct Director {
    engine: Engine,
    /// What the engine's real servers should be (config, lvsadm, health).
    desired: Desired<Check>,
    ports: Vec<Interface>,
    /// IPv4 routing (rules and tables), built from `kernel_routes` and
    /// `kernel_rules`.
    fib4: Fib<u32>,
    /// Every route of the kernel (both families, every table), by key, as
    /// rtnetlink reported them.
    kernel_routes: HashMap<rtnl::RouteKey, rtnl::Route>,
    /// The kernel's policy-routing rules (both families), in its order.
    kernel_rules: Vec<rtnl::Rule>,
    neigh: Neighbours,
    vips: HashSet<Ipv4Addr>,
    /// The IPv6 VIPs (answered and announced with neighbour discovery).
    vips6: HashSet<Ipv6Addr>,
    /// Addresses of VRRP instances that are not master here (left to the
    /// master), and those of instances that are.
    held_back: HashSet<IpAddr>,
    vrrp_owned: HashSet<IpAddr>,
    fib6: Fib<u128>,
    neigh6: Neighbours<Ipv6Addr>,
    counters: Counters,
    /// Last time an ARP request went out for (port, address).
    /// ARP requests and neighbour solicitations sent, by (port, address).
    arp_asked: std::collections::HashMap<(PortId, IpAddr), Instant>,
    icmp_buf: Vec<u8>,
    /// Without the nftables guard a VIP on a kernel interface is answered by
    /// the kernel too: worth a warning.
    warn_local_vip: bool,
    icmp_limit: IcmpLimit,
    pending: Pending,
    /// The host's addresses on the attached ports (fixed at start, as the
    /// ports are).
    local_addrs: Vec<Ipv4Addr>,
    local_addrs6: Vec<Ipv6Addr>,
    /// Identification of the IPv6 fragments lvsd makes.
    frag6_id: u32,
    /// Scratch for fragmentation: a copy of the packet (`FRAG_SRC` bytes),
    /// then one fragment frame (Ethernet header + up to a jumbo MTU).
    frag_buf: Vec<u8>,
    /// The XDP fast path, when it runs (`--fastpath xdp`).
    fastpath: Option<crate::fastpath::Daemon>,
}

/// Largest packet the director fragments itself.
const FRAG_SRC: usize = 65536;

/// The director's routing as the engine's transmit step asks for it: the
/// route (`fib`), the egress port, its MTU and address.
struct Net<'a> {
    ports: &'a [Interface],
    fib4: &'a Fib<u32>,
    /// The host's addresses on the attached ports, flat.
    local: &'a [Ipv4Addr],
    fib6: &'a Fib<u128>,
    local6: &'a [Ipv6Addr],
}

impl Net<'_> {
    #[inline]
    fn lookup(&self, to: IpAddr, from: Option<IpAddr>) -> Option<xmit::Path> {
        let (port, next_hop, local) = match to {
            IpAddr::V4(a) => {
                let from = from.and_then(<u32 as fib::Bits>::of);
                let (port, nh) = self.fib4.hop(u32::from(a), from)?;
                (
                    port,
                    IpAddr::V4(Ipv4Addr::from(nh)),
                    self.local.contains(&a),
                )
            }
            IpAddr::V6(a) => {
                let from = from.and_then(<u128 as fib::Bits>::of);
                let (port, nh) = self.fib6.hop(u128::from(a), from)?;
                (
                    port,
                    IpAddr::V6(Ipv6Addr::from(nh)),
                    self.local6.contains(&a),
                )
            }
        };
        Some(xmit::Path {
            port: port as u32,
            next_hop,
            mtu: self.ports[port].mtu,
            local,
        })
    }
}

impl xmit::Paths for Net<'_> {
    #[inline]
    fn path(&self, to: IpAddr) -> Option<xmit::Path> {
        self.lookup(to, None)
    }

    #[inline]
    fn path_from(&self, to: IpAddr, from: IpAddr) -> Option<xmit::Path> {
        let by_source = match to {
            IpAddr::V4(_) => self.fib4.by_source(),
            IpAddr::V6(_) => self.fib6.by_source(),
        };
        self.lookup(to, by_source.then_some(from))
    }

    #[inline]
    fn is_local(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a4) => self.local.contains(&a4),
            IpAddr::V6(a6) => self.local6.contains(&a6),
        }
    }

    fn source(&self, to: IpAddr) -> Option<IpAddr> {
        let ports = self.ports;
        match to {
            IpAddr::V4(a) => {
                let addrs = |p: PortId| ports[p].addrs.iter().map(|a| u32::from(*a));
                let s = source_of(self.fib4, u32::from(a), addrs, |_| true)?;
                Some(IpAddr::V4(Ipv4Addr::from(s)))
            }
            IpAddr::V6(a) => {
                let addrs = |p: PortId| ports[p].addrs6.iter().map(|a| u128::from(*a));
                // Not link-local (fe80::/10).
                let global = |a: &u128| (a >> 118) as u16 != 0xfe80 >> 6;
                let s = source_of(self.fib6, u128::from(a), addrs, global)?;
                Some(IpAddr::V6(Ipv6Addr::from(s)))
            }
        }
    }
}

/// The source address the host would use towards `to` (kernel source
/// selection, simplified): the route's preferred source; else the one of
/// the on-link route that reaches the next hop, or the egress port's
/// address inside it; else the port's first `preferred` address; else its
/// first.
fn source_of<T: fib::Bits, I: Iterator<Item = T>>(
    fib: &Fib<T>,
    to: T,
    addrs: impl Fn(PortId) -> I,
    preferred: impl Fn(&T) -> bool,
) -> Option<T> {
    let e = fib.lookup(to, None)?;
    if let Some(s) = e.prefsrc {
        return Some(s);
    }
    let fib::To::Port(port) = e.to else {
        return None;
    };
    let nh = e.gateway.unwrap_or(to);
    let on_link = fib
        .entries()
        .find(|r| r.to == fib::To::Port(port) && r.gateway.is_none() && r.covers(nh));
    on_link
        .and_then(|r| r.prefsrc.or_else(|| addrs(port).find(|a| r.covers(*a))))
        .or_else(|| addrs(port).find(&preferred))
        .or_else(|| addrs(port).next())
}

/// Flows of at most 256 addresses (IPv4 /24, IPv6 /120 or longer) are
/// ranges of VIPs: lvsd owns each address of them on the wire (answers ARP
/// or neighbour solicitations). Wider flows are for traffic routed to the
/// director.
const FLOW_OWNED_HOST_BITS: u8 = 8;

/// The addresses of the flows of one family (of services that exist) lvsd
/// answers ARP or NDP for: every address of their networks but those in
/// `taken` (the director's own, route gateways, known neighbours, and the
/// subnets' network, broadcast or subnet-router anycast addresses: a flow
/// never claims another host's address). `family` picks the family's
/// addresses (`None`: the other family).
fn flow_addresses<A: Copy + Eq + std::hash::Hash>(
    engine: &Engine,
    taken: &HashSet<A>,
    family: impl Fn(IpAddr) -> Option<A>,
) -> Vec<A> {
    let marks: HashSet<u32> = engine.service_keys().filter_map(|k| k.mark()).collect();
    let mut v = Vec::new();
    for f in engine.flows() {
        let (bits, base) = match f.dst {
            IpAddr::V4(a) => (32u8, u128::from(u32::from(a))),
            IpAddr::V6(a) => (128, u128::from(a)),
        };
        let host = bits.saturating_sub(f.dst_len);
        if family(f.dst).is_none() || host > FLOW_OWNED_HOST_BITS || !marks.contains(&f.mark) {
            continue;
        }
        v.extend(
            (0..1u128 << host)
                .filter_map(|i| {
                    let n = base.wrapping_add(i);
                    family(match f.dst {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
                    })
                })
                .filter(|a| !taken.contains(a)),
        );
    }
    v
}

/// The family pickers of `flow_addresses`.
fn v4_only(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6_only(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// Adds `x` to `v` (once) or removes it.
fn set_member<T: PartialEq>(v: &mut Vec<T>, x: T, add: bool) {
    v.retain(|a| *a != x);
    if add {
        v.push(x);
    }
}

/// What the signals an operator may send do (README, "Signals").
struct Signals {
    /// SIGTERM, SIGINT, SIGQUIT: stop cleanly.
    stop: Arc<AtomicBool>,
    /// SIGHUP: reload the configuration file (as `lvsadm --reload`).
    hup: Arc<AtomicBool>,
    /// SIGUSR1: the counters on stderr.
    usr1: Arc<AtomicBool>,
    /// SIGUSR2: every real server's health on stderr.
    usr2: Arc<AtomicBool>,
    /// Any other signal that would end the process by default (SIGALRM,
    /// SIGPWR, real-time signals, …): its number, logged and ignored.
    other: Arc<std::sync::atomic::AtomicUsize>,
}

/// Signals whose default action ends a process and that lvsd ignores
/// (logged), so that none of them takes the director down without cleanup.
/// Not SIGKILL/SIGSTOP (cannot be caught) nor the fault signals.
fn ignored_signals() -> Vec<i32> {
    let mut v = vec![
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGPWR,
        libc::SIGIO,
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
    ];
    v.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    v
}

impl Signals {
    fn install() -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            hup: Arc::new(AtomicBool::new(false)),
            usr1: Arc::new(AtomicBool::new(false)),
            usr2: Arc::new(AtomicBool::new(false)),
            other: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        let set = [
            (SIGTERM, &s.stop),
            (SIGINT, &s.stop),
            (SIGQUIT, &s.stop),
            (SIGHUP, &s.hup),
            (SIGUSR1, &s.usr1),
            (SIGUSR2, &s.usr2),
        ];
        for (sig, flag) in set {
            signal_hook::flag::register(sig, flag.clone())
                .map_err(|e| format!("cannot install signal handler: {e}"))?;
        }
        for sig in ignored_signals() {
            // Some real-time signals may be reserved by the C library;
            // those cannot be sent to lvsd by an operator's kill anyway.
            let _ = signal_hook::flag::register_usize(sig, s.other.clone(), sig as usize);
        }
        Ok(s)
    }
}

/// Least time between two computations of the kernel guard's elements.
const GUARD_SPACING: Duration = Duration::from_millis(20);

/// Most ARP requests remembered at once (replies to them are learned).
const MAX_ARP_ASKED: usize = 4096;
/// How long a reply to one of our ARP requests is awaited.
const ARP_ASK_TTL: Duration = Duration::from_secs(3);

/// Maps the `debug_level` sysctl onto the log level (see `log`).
fn apply_debug_level(engine: &Engine) {
    if let Some(v) = engine
        .sysctl("debug_level")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        crate::log::set_debug_level(v);
    }
}

/// Runs until SIGTERM/SIGINT/SIGQUIT. Errors are rendered for people.
pub fn run(opts: Options) -> Result<(), String> {
    // Signals first: from here on none of them ends lvsd uncleanly.
    let signals = Signals::install()?;
    let _lock = crate::lock::acquire()?;
    let mut engine = Engine::with_seeds(seed(), seed());
    // Room for the first connections without rehashing on the packet path.
    engine.reserve_connections(1 << 16);
    let mut desired: Desired<Check> = Desired::default();
    if let Some(path) = &opts.config {
        // The same path as a reload: checked whole on a scratch engine,
        // then applied as the difference from nothing.
        let file = crate::setup::load_file(path)?;
        let report = desired.apply_file(&mut engine, file);
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        for n in &report.notes {
            tracing::info!("{n}");
        }
    }
    apply_debug_level(&engine);
    let wanted = desired.file.interfaces.clone();
    let control_path = opts
        .control
        .clone()
        .or_else(|| desired.file.control_socket.clone())
        .unwrap_or_else(|| PathBuf::from(lvs_control::DEFAULT_CONTROL_PATH));
    let control_group = desired.file.control_group.clone();
    crate::control::check_free(&control_path).map_err(|e| format!("control socket: {e}"))?;
    let all = net::interfaces().map_err(|e| format!("cannot list interfaces: {e}"))?;
    let ports: Vec<Interface> = if wanted.is_empty() {
        all.into_iter()
            .filter(|i| i.up && !i.loopback && i.ethernet && !net::has_master(&i.name))
            .collect()
    } else {
        let mut v = Vec::new();
        for w in &wanted {
            let i = all.iter().find(|i| &i.name == w).ok_or_else(|| {
                format!("interface `{w}` named in the configuration does not exist")
            })?;
            if !i.up {
                return Err(format!("interface `{w}` is down"));
            }
            if !i.ethernet {
                return Err(format!("interface `{w}` is not an Ethernet interface"));
            }
            v.push(i.clone());
        }
        v
    };
    if ports.is_empty() {
        return Err("no interface to attach to: none is up (besides loopback)".into());
    }
    let mut io = AfPacket::open(&ports.iter().map(|p| p.index).collect::<Vec<_>>())
        .map_err(|e| format!("cannot open packet sockets (are you root?): {e}"))?;
    let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
    let mut guard = KernelGuard::install(&engine, &names)?;

    let stop = signals.stop.clone();

    // Subscribed before the dump: no change falls between the two.
    let mut netlink =
        rtnl::Rtnl::open().map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
    let local_addrs = ports.iter().flat_map(|p| p.addrs.iter().copied()).collect();
    let mut d = Director {
        local_addrs,
        local_addrs6: Vec::new(),
        desired,
        engine,
        ports,
        fib4: Fib::default(),
        kernel_routes: HashMap::new(),
        kernel_rules: Vec::new(),
        neigh: Neighbours::default(),
        vips: HashSet::new(),
        vips6: HashSet::new(),
        held_back: HashSet::new(),
        vrrp_owned: HashSet::new(),
        fib6: Fib::default(),
        neigh6: Neighbours::default(),
        counters: Counters::default(),
        arp_asked: Default::default(),
        icmp_buf: vec![0u8; 1600],
        frag_buf: vec![0u8; FRAG_SRC + 9216 + 64],
        fastpath: None,
        frag6_id: 0,
        warn_local_vip: matches!(guard, KernelGuard::Forwarding { .. }),
        pending: Pending::default(),
        icmp_limit: IcmpLimit {
            tokens: IcmpLimit::BURST,
            last_ms: 0,
        },
    };
    d.load_network()?;
    if let Some(hook) = opts.fastpath {
        match crate::fastpath::Daemon::start(hook, &d.ports, io.sockets()) {
            Ok(fp) => {
                d.fastpath = Some(fp);
                d.engine.set_offload_after(opts.fastpath_after);
                d.engine.set_offload(true);
            }
            Err(e) => tracing::warn!("no fast path ({e}): every interface uses AF_PACKET only"),
        }
        // Loading read the kernel's BTF (megabytes, freed since).
        release_free_heap();
    }
    let extra = d.kernel_rules.len().saturating_sub(5);
    if extra > 0 {
        tracing::info!(
            "following the host's policy-routing rules ({extra} beyond the kernel's own)"
        );
    }
    // VRRP instances start as backups: their addresses are neither
    // announced nor directed until an instance is master.
    d.held_back = d
        .desired
        .file
        .vrrp
        .iter()
        .filter(|(_, _, c)| c.priority < 255)
        .flat_map(|(_, _, c)| c.addrs.iter().copied())
        .collect();
    d.engine.set_held_vips(d.held_back.iter().copied());
    d.refresh_vips(&mut io, true);
    d.warm_up(&mut io, Duration::from_millis(500));
    // Opened only now: whoever waits for the socket finds a director that
    // already knows its real servers' MAC addresses.
    let mut control = ControlServer::start(
        &control_path,
        opts.config.clone(),
        control_group.as_ref().map(|g| g.1),
        d.desired.file.clone(),
    )
    .map_err(|e| format!("cannot open control socket {}: {e}", control_path.display()))?;
    let metrics = match opts.metrics.or(d.desired.file.metrics) {
        None => None,
        Some(addr) => {
            let m = crate::metrics::start(addr, control.client())
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(
                "metrics on http://{}/metrics, status page on http://{}/",
                m.addr,
                m.addr
            );
            Some(m)
        }
    };
    // Health checks run on their own thread (a tokio runtime) and only
    // hand verdicts over; the packet loop applies them between batches.
    let health =
        lvs_health::Health::start().map_err(|e| format!("cannot start the health checker: {e}"))?;
    health.set_checks(d.desired.checks());
    tracing::info!(
        "attached to {}; {} virtual service(s); control socket {}",
        d.ports
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        d.engine.services().count(),
        match &control_group {
            None => format!("{} (root only)", control_path.display()),
            Some((name, _)) => format!("{} (root and group {name})", control_path.display()),
        }
    );

    let start = Instant::now();
    let (mut guard_dirty, mut last_guard) = (false, Instant::now());
    let mut last_housekeeping = Instant::now() - Duration::from_secs(10);
    let mut last_fold = Instant::now();
    let mut fds: Vec<libc::pollfd> = io
        .fds()
        .into_iter()
        .chain(std::iter::once(control.wake_fd()))
        .chain(std::iter::once(health.wake_fd()))
        .chain(std::iter::once(netlink.fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let nports = io.port_count();
    let mut sync = crate::sync::SyncDaemons::default();
    for cfg in d.desired.file.sync.clone() {
        let req = lvs_control::Request::StartDaemon(cfg.clone());
        if let lvs_control::Response::Error { kind, detail } = sync.request(&req, &mut d.engine, 0)
        {
            return Err(format!(
                "cannot start the sync daemon on {}: {}{}",
                cfg.ifname,
                lvs_control::render::error_message(kind),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ));
        }
    }
    // VRRP instances: their sockets follow the fixed descriptors, the
    // sync daemons' after them.
    let mut vrrp = crate::vrrp_io::Vrrp::default();
    for (name, ifname, cfg) in d.desired.file.vrrp.clone() {
        let inst = crate::vrrp_io::Instance::open(&name, &ifname, cfg)
            .map_err(|e| format!("cannot start VRRP instance {name} on {ifname}: {e}"))?;
        vrrp.instances.push(inst);
    }
    let nfixed = nports + 3 + vrrp.instances.len();
    fds.extend(vrrp.fds().into_iter().map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    let changes = vrrp.start(start.elapsed().as_millis() as u64);
    d.follow_vrrp(&vrrp, &changes, &mut io, &mut sync);
    fds.extend(sync.fds().into_iter().map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    while !stop.load(Ordering::Relaxed) {
        // While connection listings stream, a step every millisecond at
        // least; else wake up every 50 ms for the timers (sooner when a
        // VRRP timer is due).
        let mut timeout = if control.streaming() { 1 } else { 50 };
        if let Some(ms) = vrrp.next_in(start.elapsed().as_millis() as u64) {
            timeout = timeout.min(ms as i32);
        }
        // SAFETY: fds is a live array of pollfd of the given length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
            continue;
        }
        let now_ms = start.elapsed().as_millis() as u64;
        for (port, pfd) in fds.iter().enumerate().take(nports) {
            // An error (e.g. the interface went down) is read and reported by
            // recv; skipping it would make poll return at once forever.
            if pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) == 0 {
                continue;
            }
            // Drain the socket batch by batch (bounded, so control requests
            // and timers are not starved under load).
            for _ in 0..64 {
                let n = match io.recv(port) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("receive on {}: {e}", d.ports[port].name);
                        0
                    }
                };
                if n == 0 {
                    break;
                }
                d.counters.rx += n as u64;
                d.counters.rx_batches += 1;
                for i in 0..n {
                    d.handle_frame(&mut io, port, i, now_ms);
                }
                match io.flush() {
                    Ok(refused) => d.counters.tx_refused += refused as u64,
                    Err(e) => tracing::warn!("send: {e}"),
                }
                if n < crate::io::afpacket::BATCH {
                    break;
                }
            }
        }
        if fds[nports].revents & libc::POLLIN != 0 {
            let statuses: std::collections::HashMap<Check, lvs_health::Status> =
                health.status().into_iter().collect();
            let status = |c: &Check| check_status(c, statuses.get(c));
            if control.serve(
                &mut d.desired,
                &mut d.engine,
                now_ms,
                &d.counters.list(d.neigh.len(), d.fib4.len()),
                &status,
                &mut sync,
            ) {
                guard_dirty = true;
                d.refresh_vips(&mut io, false);
                health.set_checks(d.desired.checks());
                last_housekeeping = Instant::now() - Duration::from_secs(10);
            }
            apply_debug_level(&d.engine);
            // Sync daemons started or stopped: their sockets in the poll set.
            fds.truncate(nfixed);
            fds.extend(sync.fds().into_iter().map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }));
        }
        if !vrrp.instances.is_empty() {
            let changes = vrrp.step(now_ms);
            let c = &mut d.counters;
            c.vrrp_masters = vrrp.instances.iter().filter(|i| i.is_master()).count() as u64;
            c.vrrp_sent = vrrp.instances.iter().map(|i| i.sent).sum();
            c.vrrp_received = vrrp.instances.iter().map(|i| i.received).sum();
            c.vrrp_discarded = vrrp.instances.iter().map(|i| i.discarded).sum();
            if !changes.is_empty() {
                d.follow_vrrp(&vrrp, &changes, &mut io, &mut sync);
                fds.truncate(nfixed);
                fds.extend(sync.fds().into_iter().map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }));
            }
        }
        if fds[nfixed..].iter().any(|p| p.revents & libc::POLLIN != 0) {
            sync.receive(&mut d.engine, now_ms);
        }
        sync.send(&mut d.engine, now_ms);
        if fds[nports + 2].revents & libc::POLLIN != 0 {
            let mut events = Vec::new();
            netlink.read(&mut events);
            if !events.is_empty() {
                d.apply_network(events);
            }
        }
        if fds[nports + 1].revents & libc::POLLIN != 0 && d.apply_health(&health) {
            guard_dirty = true;
            last_housekeeping = Instant::now() - Duration::from_secs(10);
        }
        if control.streaming() {
            control.pump(&d.engine, now_ms);
        }
        // The guard's wanted elements are computed from the whole table:
        // at most every GUARD_SPACING, however fast changes come.
        if guard_dirty && last_guard.elapsed() >= GUARD_SPACING {
            guard.update(&d.engine);
            guard_dirty = false;
            last_guard = Instant::now();
        }
        let other = signals.other.swap(0, Ordering::Relaxed);
        if other != 0 {
            tracing::info!("signal {other} ignored (TERM, INT or QUIT stop lvsd)");
        }
        if signals.hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the configuration");
            control.reload_in_background();
        }
        if signals.usr1.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGUSR1: counters");
            for (name, value) in d.counters.list(d.neigh.len(), d.fib4.len()) {
                tracing::info!("  io.{name} {value}");
            }
            tracing::info!("  {}", engine_report(&d.engine, d.counters.fragments));
        }
        if signals.usr2.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGUSR2: real servers");
            let statuses: std::collections::HashMap<Check, lvs_health::Status> =
                health.status().into_iter().collect();
            let status = |c: &Check| check_status(c, statuses.get(c));
            for h in d.desired.health(&d.engine, &status) {
                tracing::info!(
                    "  {} {} {} {} {}",
                    if h.director.is_empty() {
                        "-"
                    } else {
                        &h.director
                    },
                    if h.server.is_empty() { "-" } else { &h.server },
                    endpoint(h.addr, h.port),
                    if h.up { "UP" } else { "DOWN" },
                    if h.in_service { "in use" } else { "not in use" },
                );
            }
        }
        let given_back = d.engine.counters.memory_given_back;
        d.engine.hold_compaction(control.listing_connections());
        d.engine.handle_timeout(now_ms);
        let fold = last_fold.elapsed() >= Duration::from_secs(1);
        if fold {
            last_fold = Instant::now();
        }
        d.run_fastpath(now_ms, fold);
        if d.engine.counters.memory_given_back != given_back {
            release_free_heap();
        }
        if !d.pending.is_empty() {
            // Frames whose next hop never answered are dropped after a second.
            d.counters.no_neighbour += d.pending.expire(now_ms) as u64;
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            if let Some(pages) = crate::net::available_memory_pages() {
                d.engine.set_available_memory(pages);
            }
            d.neigh.age();
            d.forget_old_asks();
            d.resolve_destinations(&mut io);
            let _ = io.flush();
        }
    }
    tracing::info!(
"stopping (rx {} tx {} frames, {} with partial checksum, {} GSO; {} connections created; {} neighbours, {} frames parked for ARP; drops: no route {}, no neighbour {}, refused {})",
        d.counters.rx,
        d.counters.tx,
        d.counters.rx_csum_partial,
        d.counters.rx_gso,
        d.engine.counters.conns,
        d.neigh.len(),
        d.counters.parked,
        d.counters.no_route,
        d.counters.no_neighbour,
        d.counters.tx_refused
    );
    tracing::info!(
        "{}; {} segments cut from super-packets; {} VLAN-tagged frames left to their sub-interface",
        engine_report(&d.engine, d.counters.fragments),
        d.counters.segments,
        d.counters.rx_vlan_other
    );
    if d.fastpath.is_some() {
        // What the program carried since the last fold counts too.
        d.run_fastpath(start.elapsed().as_millis() as u64, true);
        let c = &d.counters;
        tracing::info!(
            "fast path: {} packets carried in the kernel; {} flows carried at the end; {} offers not taken; {} flows written again",
            c.fastpath_packets,
            c.fastpath_flows,
            c.fastpath_skipped,
            c.fastpath_rewritten
        );
    }
    // A master hands over at once (priority 0) instead of after the
    // backup's down interval.
    vrrp.shutdown();
    drop(metrics);
    drop(control);
    drop(guard);
    Ok(())
}

impl Director {
    /// Applies the checker's verdicts to the desired state (and so to the
    /// engine), logging each server's transition once. True if any
    /// service changed.
    fn apply_health(&mut self, health: &lvs_health::Health) -> bool {
        health.clear_wake();
        let mut changed = false;
        while let Some(t) = health.poll_transition() {
            let keys = self.desired.set_health(&mut self.engine, &t.spec, t.up);
            changed |= !keys.is_empty();
            for (key, s, _) in self.desired.servers() {
                if s.check.as_ref() != Some(&t.spec) {
                    continue;
                }
                let (count, what) = match (t.up, t.successes, t.failures) {
                    (true, 1, _) => (1, "success"),
                    (true, n, _) => (n, "successes"),
                    (false, _, 1) => (1, "failure"),
                    (false, _, n) => (n, "failures"),
                };
                let server = endpoint(s.cfg.addr, s.cfg.port);
                let director = if s.director.is_empty() {
                    "-"
                } else {
                    &s.director
                };
                let line = format!(
                    "server {}{} {} of director {} is {}: {} {} ({count} consecutive {what}, rise {} fall {})",
                    s.name,
                    if s.sorry { " (sorry)" } else { "" },
                    server,
                    director,
                    if t.up { "UP" } else { "DOWN" },
                    check_name(&t.spec),
                    t.reason,
                    t.spec.rise.max(1),
                    t.spec.fall.max(1),
                );
                let reason = t.reason.as_str();
                let name = s.name.as_str();
                let service = crate::metrics::service_name(&crate::engine_ops::key_out(&key));
                let service = service.as_str();
                if t.up {
                    tracing::info!(service, director, name, server, reason, "{line}");
                } else {
                    tracing::warn!(service, director, name, server, reason, "{line}");
                }
            }
        }
        changed
    }

    /// Resolves the destinations' next hops before traffic is expected:
    /// ARP requests out, replies in, for at most `limit`.
    fn warm_up(&mut self, io: &mut impl PacketIo, limit: Duration) {
        let t0 = Instant::now();
        let mut fds: Vec<libc::pollfd> = io
            .fds()
            .into_iter()
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while t0.elapsed() < limit && !self.all_resolved() {
            self.resolve_destinations(io);
            let _ = io.flush();
            // SAFETY: fds is a live array of pollfd of the given length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
            for port in 0..fds.len() {
                // Bounded: under load the sockets never run dry.
                for _ in 0..16 {
                    let n = io.recv(port).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    for i in 0..n {
                        self.handle_frame(io, port, i, 0);
                    }
                    let _ = io.flush();
                }
            }
        }
    }

    fn destination_hops(&self) -> Vec<(PortId, IpAddr)> {
        self.engine
            .all_dests()
            .filter(|d| d.available())
            .filter_map(|d| match d.addr {
                IpAddr::V4(a) => self.route(a).map(|(p, nh)| (p, IpAddr::V4(nh))),
                IpAddr::V6(a) => self.route6(a).map(|(p, nh)| (p, IpAddr::V6(nh))),
            })
            .collect()
    }

    /// Whether the MAC of next hop `nh` on `port` is known.
    fn resolved(&self, port: PortId, nh: IpAddr) -> bool {
        match nh {
            IpAddr::V4(a) => self.neigh.get(port, a).is_some(),
            IpAddr::V6(a) => self.neigh6.get(port, a).is_some(),
        }
    }

    fn all_resolved(&self) -> bool {
        self.destination_hops()
            .iter()
            .all(|&(p, nh)| self.resolved(p, nh))
    }

    /// The kernel's routes, rules, neighbours and addresses as they are
    /// now.
    fn load_network(&mut self) -> Result<(), String> {
        let events = rtnl::dump()
            .map_err(|e| format!("cannot read routes, neighbours and addresses: {e}"))?;
        self.kernel_routes.clear();
        self.kernel_rules.clear();
        self.apply_network(events);
        Ok(())
    }

    /// Applies rtnetlink events: routes are replaced at once (the lookup
    /// table is rebuilt), the kernel's usable neighbours are learned (a
    /// deleted one ages out of lvsd's own cache), the attached ports'
    /// addresses follow. Lost events mean a full dump again.
    fn apply_network(&mut self, events: Vec<rtnl::Event>) {
        use rtnl::Event;
        let mut routes_changed = false;
        let mut addrs_changed = false;
        let mut overrun = false;
        for e in events {
            if e != Event::Overrun {
                self.counters.netlink_events += 1;
            }
            match e {
                Event::Route { add, route } => {
                    if add {
                        self.kernel_routes.insert(route.key(), route);
                    } else {
                        self.kernel_routes.remove(&route.key());
                    }
                    routes_changed = true;
                }
                Event::Rule { add, rule } => {
                    if add {
                        self.kernel_rules.push(rule);
                    } else if let Some(i) = self.kernel_rules.iter().position(|r| *r == rule) {
                        self.kernel_rules.remove(i);
                    }
                    routes_changed = true;
                }
                Event::Neighbour {
                    add: true,
                    ifindex,
                    ip,
                    mac: Some(mac),
                } => {
                    if let Some(p) = self.port_of(ifindex) {
                        match ip {
                            IpAddr::V4(ip) => self.neigh.learn(p, ip, mac),
                            IpAddr::V6(ip) => self.neigh6.learn(p, ip, mac),
                        }
                    }
                }
                Event::Neighbour { .. } => {}
                Event::Address {
                    add, ifindex, ip, ..
                } => {
                    if let Some(p) = self.port_of(ifindex) {
                        let port = &mut self.ports[p];
                        match ip {
                            IpAddr::V4(ip) => set_member(&mut port.addrs, ip, add),
                            IpAddr::V6(ip) => set_member(&mut port.addrs6, ip, add),
                        }
                        addrs_changed = true;
                    }
                }
                Event::Overrun => overrun = true,
            }
        }
        if addrs_changed {
            self.local_addrs = self.ports.iter().flat_map(|p| p.addrs.clone()).collect();
            self.local_addrs6 = self.ports.iter().flat_map(|p| p.addrs6.clone()).collect();
        }
        if overrun {
            tracing::warn!(
                "rtnetlink events were lost; reading routes, neighbours and addresses again"
            );
            if let Err(e) = self.load_network() {
                tracing::warn!("{e}");
            }
            return;
        }
        if routes_changed {
            let rules = &self.kernel_rules;
            self.fib4 = Fib::build(self.kernel_routes.values(), rules, &self.ports);
            self.fib6 = Fib::build(self.kernel_routes.values(), rules, &self.ports);
        }
    }

    fn port_of(&self, ifindex: u32) -> Option<PortId> {
        self.ports.iter().position(|p| p.index as u32 == ifindex)
    }

    /// What the kernel's ARP code would learn from `a`, received on
    /// `port`: the sender of a request for one of our addresses (a VIP or
    /// the director's own) or of a reply to our own request becomes a
    /// neighbour; any other message only refreshes an entry that exists.
    /// Never an address that is ours or a VIP, nor one that is not on-link
    /// on that port (a spoofer cannot redirect traffic that way).
    fn learn_from_arp(&mut self, port: PortId, a: &arp::Arp) {
        let ip = a.sender_ip;
        if self.vips.contains(&ip) || self.local_addrs.contains(&ip) {
            return;
        }
        if !self.fib4.on_link(port, u32::from(ip)) {
            return;
        }
        let for_us = a.op == arp::OP_REQUEST
            && (self.vips.contains(&a.target_ip) || self.local_addrs.contains(&a.target_ip));
        let answer = a.op == arp::OP_REPLY && self.arp_asked.contains_key(&(port, IpAddr::V4(ip)));
        if for_us || answer {
            self.neigh.learn(port, ip, a.sender_mac);
        } else {
            self.neigh.confirm(port, ip, a.sender_mac);
        }
    }

    /// The fast path: the engine's offload requests into its flow map,
    /// and (`fold`) what it carried back into the engine.
    fn run_fastpath(&mut self, now_ms: u64, fold: bool) {
        let Director {
            engine,
            fastpath,
            fib4,
            neigh,
            ports,
            counters,
            ..
        } = self;
        let Some(fp) = fastpath else {
            return;
        };
        let hop = |dst: Ipv4Addr, from: Option<Ipv4Addr>| {
            let from = from.map(u32::from).filter(|_| fib4.by_source());
            let (port, nh) = fib4.hop(u32::from(dst), from)?;
            let dmac = neigh.get(port, Ipv4Addr::from(nh))?;
            Some(crate::fastpath::Hop { port, dmac })
        };
        fp.apply(engine, ports, now_ms, hop);
        if fold {
            fp.fold(engine, ports, now_ms, hop);
        }
        counters.fastpath_flows = fp.flows;
        counters.fastpath_packets = fp.packets;
        counters.fastpath_skipped = fp.skipped;
        counters.fastpath_rewritten = fp.rewritten;
    }

    /// Egress port and next hop for `dst`.
    #[inline]
    fn route(&self, dst: Ipv4Addr) -> Option<(PortId, Ipv4Addr)> {
        let (p, nh) = self.fib4.hop(u32::from(dst), None)?;
        Some((p, Ipv4Addr::from(nh)))
    }

    /// Egress port and next hop for an IPv6 `dst`.
    fn route6(&self, dst: Ipv6Addr) -> Option<(PortId, Ipv6Addr)> {
        let (p, nh) = self.fib6.hop(u128::from(dst), None)?;
        Some((p, Ipv6Addr::from(nh)))
    }

    /// Neighbour discovery, as `learn_from_arp` and the ARP answers do for
    /// IPv4: a solicitation for one of our IPv6 VIPs is answered (and its
    /// on-link sender learned); an advertisement is learned when we asked
    /// for it, else it only refreshes an entry, and frames parked for it
    /// leave. Never an address of ours, nor one not on-link on that port.
    fn handle_ndp(&mut self, io: &mut impl PacketIo, port: PortId, src_mac: [u8; 6], n: &ndp::Ndp) {
        let (who, mac) = match n.kind {
            ndp::NEIGHBOUR_SOLICIT => (n.src, n.mac),
            _ => (n.target, n.mac.or(Some(src_mac))),
        };
        let ours = |a: &Ipv6Addr| self.vips6.contains(a) || self.local_addrs6.contains(a);
        let on_link = self.fib6.on_link(port, u128::from(who));
        if let (Some(mac), false, true) = (mac, ours(&who) || who.is_unspecified(), on_link) {
            let learn = match n.kind {
                ndp::NEIGHBOUR_SOLICIT => self.vips6.contains(&n.target),
                _ => self.arp_asked.contains_key(&(port, IpAddr::V6(who))),
            };
            if learn {
                self.neigh6.learn(port, who, mac);
            } else {
                self.neigh6.confirm(port, who, mac);
            }
            if n.kind == ndp::NEIGHBOUR_ADVERT && !self.pending.is_empty() {
                if let Some(theirs) = self.neigh6.get(port, who) {
                    let ours_mac = self.ports[port].mac;
                    self.pending.release(port, IpAddr::V6(who), |f, offload| {
                        f[0..6].copy_from_slice(&theirs);
                        f[6..12].copy_from_slice(&ours_mac);
                        io.queue_new(port, f, offload);
                    });
                }
            }
        }
        if n.kind == ndp::NEIGHBOUR_SOLICIT && self.vips6.contains(&n.target) {
            let mut f = [0u8; ndp::FRAME];
            let len = ndp::advert(&mut f, n, n.mac.unwrap_or(src_mac), self.ports[port].mac);
            io.queue_new(port, &f[..len], Offload::default());
            self.counters.nd_adverts += 1;
        }
    }

    /// Acts on VRRP transitions: the instance's addresses are held (ARP,
    /// NDP, announced) only while it is master; a `sync vrrp NAME` daemon
    /// takes the instance's role.
    fn follow_vrrp(
        &mut self,
        vrrp: &crate::vrrp_io::Vrrp,
        changes: &[crate::vrrp_io::Change],
        io: &mut impl PacketIo,
        sync: &mut crate::sync::SyncDaemons,
    ) {
        if changes.is_empty() {
            return;
        }
        self.held_back = vrrp.not_owned().collect();
        self.engine.set_held_vips(self.held_back.iter().copied());
        self.vrrp_owned = vrrp
            .instances
            .iter()
            .filter(|i| i.is_master())
            .flat_map(|i| i.router.cfg.addrs.iter().copied())
            .collect();
        for c in changes {
            let inst = &vrrp.instances[c.instance];
            let role = if c.master { "MASTER" } else { "BACKUP" };
            let name = inst.name.as_str();
            tracing::info!(
                vrrp = name,
                "VRRP instance {name} on {} is {role}",
                inst.ifname
            );
            if let Some((follow, cfg)) = self.desired.file.sync_follow.clone() {
                if follow == inst.name {
                    use lvs_control::{Request, SyncRole};
                    let (start, stop) = if c.master {
                        (SyncRole::Master, SyncRole::Backup)
                    } else {
                        (SyncRole::Backup, SyncRole::Master)
                    };
                    let _ = sync.request(&Request::StopDaemon(stop), &mut self.engine, 0);
                    let req =
                        Request::StartDaemon(lvs_control::DaemonConfig { role: start, ..cfg });
                    if let lvs_control::Response::Error { kind, detail } =
                        sync.request(&req, &mut self.engine, 0)
                    {
                        tracing::error!(
                            "cannot start the sync daemon for VRRP instance {name}: {} {detail}",
                            lvs_control::render::error_message(kind)
                        );
                    }
                }
            }
        }
        self.refresh_vips(io, false);
    }

    fn refresh_vips(&mut self, io: &mut impl PacketIo, startup: bool) {
        // IPv6 VIPs: announced with an unsolicited advertisement when new.
        let now6: HashSet<Ipv6Addr> = self
            .engine
            .service_keys()
            .filter(|k| k.mark().is_none())
            .filter_map(|k| match k.addr {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect();
        let mut now6 = now6;
        now6.retain(|a| !self.held_back.contains(&IpAddr::V6(*a)));
        now6.extend(self.vrrp_owned.iter().filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        }));
        for vip in now6.difference(&self.vips6) {
            for (port, p) in self.ports.iter().enumerate() {
                let mut f = [0u8; ndp::FRAME];
                let n = ndp::announce(&mut f, *vip, p.mac);
                io.queue_new(port, &f[..n], Offload::default());
            }
        }
        // Flow addresses are answered, never announced (as for IPv4).
        let mut taken6: HashSet<Ipv6Addr> = self.local_addrs6.iter().copied().collect();
        taken6.extend(
            self.fib6
                .entries()
                .filter_map(|r| r.gateway.map(Ipv6Addr::from)),
        );
        taken6.extend(self.neigh6.addresses());
        taken6.extend(
            self.fib6
                .entries()
                .filter(|r| r.gateway.is_none() && r.mask != u128::MAX && r.mask != 0)
                .map(|r| Ipv6Addr::from(r.dest)),
        );
        now6.extend(flow_addresses(&self.engine, &taken6, v6_only));
        now6.retain(|a| !self.held_back.contains(&IpAddr::V6(*a)));
        self.vips6 = now6;
        let mut now: HashSet<Ipv4Addr> = self
            .engine
            .service_keys()
            .filter(|k| k.mark().is_none())
            .filter_map(|k| match k.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        // New VIPs of services are announced (gratuitous ARP); flow
        // addresses are only answered: a flow's network may hold a host
        // lvsd has not heard of yet, whose address must not be taken over.
        // VRRP: a backup leaves its instances' addresses to the master; a
        // master holds (and announces) them all, service VIPs or not.
        now.retain(|a| !self.held_back.contains(&IpAddr::V4(*a)));
        now.extend(self.vrrp_owned.iter().filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        }));
        let new: Vec<Ipv4Addr> = now.difference(&self.vips).copied().collect();
        let mut taken: HashSet<Ipv4Addr> = self.local_addrs.iter().copied().collect();
        taken.extend(
            self.fib4
                .entries()
                .filter_map(|r| r.gateway.map(Ipv4Addr::from)),
        );
        taken.extend(self.neigh.addresses());
        for r in self
            .fib4
            .entries()
            .filter(|r| r.gateway.is_none() && r.mask != u32::MAX && r.mask != 0)
        {
            taken.insert(Ipv4Addr::from(r.dest));
            taken.insert(Ipv4Addr::from(r.dest | !r.mask));
        }
        now.extend(flow_addresses(&self.engine, &taken, v4_only));
        now.retain(|a| !self.held_back.contains(&IpAddr::V4(*a)));
        for vip in &new {
            for (port, p) in self.ports.iter().enumerate() {
                if self.warn_local_vip && p.addrs.contains(vip) {
                    tracing::warn!("VIP {vip} is also configured on kernel interface {}; the kernel will answer it too (install nftables to prevent that)", p.name);
                }
                let mut f = [0u8; 60];
                let n = arp::build(&mut f, [0xff; 6], p.mac, &arp::gratuitous(*vip, p.mac));
                io.queue_new(port, &f[..n], Offload::default());
            }
        }
        if !new.is_empty() || startup {
            let _ = io.flush();
        }
        self.vips = now;
    }

    /// Asks for the MAC of every destination's next hop we do not know yet.
    fn resolve_destinations(&mut self, io: &mut impl PacketIo) {
        for (port, nh) in self.destination_hops() {
            if !self.resolved(port, nh) {
                self.ask(io, port, nh);
            }
        }
    }

    /// Forgets ARP requests older than `ARP_ASK_TTL` (a late reply is then
    /// only a refresh, not a new neighbour).
    fn forget_old_asks(&mut self) {
        let now = Instant::now();
        self.arp_asked
            .retain(|_, t| now.duration_since(*t) < ARP_ASK_TTL);
    }

    /// Sends an ARP request (IPv4) or a neighbour solicitation (IPv6) for
    /// `ip` on `port`, at most every 200 ms.
    fn ask(&mut self, io: &mut impl PacketIo, port: PortId, ip: IpAddr) {
        let now = Instant::now();
        if let Some(t) = self.arp_asked.get(&(port, ip)) {
            if now.duration_since(*t) < Duration::from_millis(200) {
                return;
            }
        }
        if self.arp_asked.len() >= MAX_ARP_ASKED {
            self.forget_old_asks();
            if self.arp_asked.len() >= MAX_ARP_ASKED {
                // Thousands of unanswered asks in 3 s: a flood; this frame
                // waits for the next hop in vain (counted as no neighbour).
                return;
            }
        }
        self.arp_asked.insert((port, ip), now);
        let p = &self.ports[port];
        match ip {
            IpAddr::V4(ip) => {
                let sender = p.addrs.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
                let mut f = [0u8; 60];
                let n = arp::build(&mut f, [0xff; 6], p.mac, &arp::request(ip, sender, p.mac));
                io.queue_new(port, &f[..n], Offload::default());
            }
            IpAddr::V6(ip) => {
                // From the port's link-local address if it has one.
                let src = p
                    .addrs6
                    .iter()
                    .find(|a| a.segments()[0] & 0xffc0 == 0xfe80)
                    .or(p.addrs6.first())
                    .copied()
                    .unwrap_or(Ipv6Addr::UNSPECIFIED);
                let mut f = [0u8; ndp::FRAME];
                let n = ndp::solicit(&mut f, ip, src, p.mac);
                io.queue_new(port, &f[..n], Offload::default());
            }
        }
    }

    /// Sends the packet the engine rewrote (`s` says where it now starts in
    /// receive buffer `i`, which port and neighbour it goes to, and what is
    /// left to do): prepends the Ethernet header in place and queues it, or
    /// parks it while the neighbour is resolved, or splits it into
    /// fragments when it may be fragmented.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        io: &mut impl PacketIo,
        i: usize,
        rx_offload: Offload,
        s: &xmit::Send,
        encap: Option<xmit::tunnel::Encap>,
        now_ms: u64,
    ) {
        let out = s.port as PortId;
        let nh = s.next_hop;
        if out >= self.ports.len() {
            self.counters.no_route += 1;
            return;
        }
        // The offload request follows the packet only when its L4 checksum
        // is still partial at the same place (NAT, DR); an encapsulated or
        // completed packet asks for nothing. GSO metadata stays for packets
        // that were not encapsulated (super-packets for a tunnel are cut
        // below, by `s.segment`).
        let mut offload = rx_offload;
        offload.csum_partial = s.csum_partial;
        if !s.csum_partial {
            offload.csum_start = 0;
            offload.csum_offset = 0;
        }
        let (frame, meta) = io.rx_frame(i);
        let ip_was = meta.start + ETH_HDR;
        if s.start != ip_was {
            offload.gso_type = 0;
            offload.gso_size = 0;
            offload.hdr_len = 0;
        }
        let Some(fstart) = s.start.checked_sub(ETH_HDR) else {
            return;
        };
        let flen = ETH_HDR + s.len;
        let our_mac = self.ports[out].mac;
        frame[fstart + 6..fstart + 12].copy_from_slice(&our_mac);
        let (ethertype, known) = match nh {
            IpAddr::V4(a) => (ETHERTYPE_IPV4, self.neigh.get(out, a)),
            IpAddr::V6(a) => (ndp::ETHERTYPE_IPV6, self.neigh6.get(out, a)),
        };
        frame[fstart + 12..fstart + 14].copy_from_slice(&ethertype.to_be_bytes());
        let Some(mac) = known else {
            if self
                .pending
                .park(out, nh, &frame[fstart..fstart + flen], offload, now_ms)
            {
                self.counters.parked += 1;
            } else {
                self.counters.no_neighbour += 1;
            }
            self.ask(io, out, nh);
            return;
        };
        frame[fstart..fstart + 6].copy_from_slice(&mac);
        if s.segment.is_some() || s.fragment.is_some() {
            // A super-packet lvsd cuts itself (for a tunnel), or a packet
            // over the path MTU that may be fragmented: the only copies on
            // the packet path; each piece becomes a new frame.
            let (frame, _) = io.rx_frame(i);
            let (src, scratch) = self.frag_buf.split_at_mut(FRAG_SRC);
            if s.len > src.len() {
                self.counters.tx_refused += 1;
                return;
            }
            src[..s.len].copy_from_slice(&frame[s.start..s.start + s.len]);
            let mut eth = [0u8; ETH_HDR];
            eth.copy_from_slice(&frame[fstart..fstart + ETH_HDR]);
            let pkt = &src[..s.len];
            let mut pieces: u64 = 0;
            let done = if let Some(mss) = s.segment {
                let reserve = ETH_HDR + lvs_core::xmit::HEADROOM;
                let n = lvs_core::wire::tcp::segment(pkt, mss, scratch, reserve, |b, len| {
                    let (start, total) = match &encap {
                        Some(e) => e.write_nth(b, reserve, len, pieces as u16),
                        None => (reserve, len),
                    };
                    b[start - ETH_HDR..start].copy_from_slice(&eth);
                    io.queue_new(out, &b[start - ETH_HDR..start + total], Offload::default());
                    pieces += 1;
                });
                self.counters.segments += pieces;
                n
            } else {
                let mtu = usize::from(s.fragment.unwrap_or(0));
                scratch[..ETH_HDR].copy_from_slice(&eth);
                let emit = |f: &[u8]| {
                    io.queue_new(out, f, Offload::default());
                    pieces += 1;
                };
                let n = if pkt.first().is_some_and(|b| b >> 4 == 6) {
                    // An IPv6 tunnel packet over the egress MTU: a fragment
                    // header, an identification of our own.
                    self.frag6_id = self.frag6_id.wrapping_add(1);
                    lvs_core::wire::ipv6::fragment(pkt, mtu, self.frag6_id, scratch, ETH_HDR, emit)
                } else {
                    lvs_core::wire::ipv4::fragment(pkt, mtu, scratch, ETH_HDR, emit)
                };
                self.counters.fragments += pieces;
                n
            };
            if done.is_none() {
                self.counters.tx_refused += 1;
            }
            self.counters.tx += pieces;
            return;
        }
        io.queue_rx(i, out, fstart, flen, offload);
        self.counters.tx += 1;
    }

    /// Answers the sender of receive buffer `i`'s packet (ICMP error or TCP
    /// reset) on the port it came in on, to the MAC it came from.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        io: &mut impl PacketIo,
        i: usize,
        quote: std::ops::Range<usize>,
        port: PortId,
        src_mac: [u8; 6],
        r: &xmit::Reply,
        now_ms: u64,
    ) {
        // Rate-limited like the kernel's ICMP (1000/s, burst 50): a SYN
        // flood must not become an ICMP flood.
        if matches!(r, xmit::Reply::Icmp { .. }) && !self.icmp_limit.allow(now_ms) {
            self.counters.icmp_ratelimited += 1;
            return;
        }
        let p = &self.ports[port];
        let mac = p.mac;
        let director = p.addrs.first().map(|a| a.octets());
        // IPv6 errors come from a global address of the port when it has one.
        let director6 = p
            .addrs6
            .iter()
            .find(|a| a.segments()[0] & 0xffc0 != 0xfe80)
            .or(p.addrs6.first())
            .map(|a| a.octets());
        let buf = &mut self.icmp_buf;
        buf[0..6].copy_from_slice(&src_mac);
        buf[6..12].copy_from_slice(&mac);
        let (frame, _) = io.rx_frame(i);
        let Some(ip) = frame.get(quote) else { return };
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        let (ethertype, built) = if v6 {
            (
                ndp::ETHERTYPE_IPV6,
                r.build_v6(ip, &mut buf[ETH_HDR..], director6),
            )
        } else {
            (ETHERTYPE_IPV4, r.build(ip, &mut buf[ETH_HDR..], director))
        };
        buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if let Some(n) = built {
            io.queue_new(port, &buf[..ETH_HDR + n], Offload::default());
        }
    }

    fn handle_frame(&mut self, io: &mut impl PacketIo, port: PortId, i: usize, now_ms: u64) {
        let (frame, meta) = io.rx_frame(i);
        if meta.len < ETH_HDR {
            return;
        }
        if meta.vlan {
            // A tagged frame is its VLAN sub-interface's: handled there if
            // lvsd is attached to it (and sent back out of it, so the kernel
            // tags it again), never here as if it were untagged.
            self.counters.rx_vlan_other += 1;
            return;
        }
        let end = meta.start + meta.len;
        let eth = &frame[meta.start..end];
        let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
        let src_mac: [u8; 6] = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
        match ethertype {
            ETHERTYPE_ARP => {
                let Some(a) = arp::parse(&frame[meta.start + ETH_HDR..end]) else {
                    return;
                };
                self.learn_from_arp(port, &a);
                if !self.pending.is_empty() {
                    let ours = self.ports[port].mac;
                    let theirs = a.sender_mac;
                    self.pending
                        .release(port, IpAddr::V4(a.sender_ip), |f, offload| {
                            f[0..6].copy_from_slice(&theirs);
                            f[6..12].copy_from_slice(&ours);
                            io.queue_new(port, f, offload);
                        });
                }
                if a.op == arp::OP_REQUEST
                    && self.vips.contains(&a.target_ip)
                    && a.sender_ip != a.target_ip
                {
                    let mac = self.ports[port].mac;
                    let mut f = [0u8; 60];
                    let n = arp::build(&mut f, a.sender_mac, mac, &arp::reply_to(&a, mac));
                    io.queue_new(port, &f[..n], Offload::default());
                    self.counters.arp_replies += 1;
                }
            }
            ndp::ETHERTYPE_IPV6 => {
                let ip_start = meta.start + ETH_HDR;
                // Neighbour discovery comes to multicast groups too.
                if let Some(n) = ndp::parse(&frame[ip_start..end]) {
                    self.handle_ndp(io, port, src_mac, &n);
                    return;
                }
                if meta.to_us {
                    self.balance(io, port, i, now_ms);
                }
            }
            ETHERTYPE_IPV4 if meta.to_us => self.balance(io, port, i, now_ms),
            _ => {}
        }
    }
}

impl Director {
    /// An IPv4 or IPv6 packet to us, through the engine: sent as it
    /// answers, answered (ICMP error, reset), or — passed to the host —
    /// an echo request to a VIP answered.
    fn balance(&mut self, io: &mut impl PacketIo, port: PortId, i: usize, now_ms: u64) {
        let (frame, meta) = io.rx_frame(i);
        let (ip_start, end) = (meta.start + ETH_HDR, meta.start + meta.len);
        let src_mac: [u8; 6] = frame[meta.start + 6..meta.start + 12]
            .try_into()
            .unwrap_or_default();
        self.counters.rx_csum_partial += u64::from(meta.offload.csum_partial);
        self.counters.rx_gso += u64::from(meta.offload.gso_type != 0);
        let mut pkt = PacketBuf::with_len(frame, ip_start, meta.len - ETH_HDR);
        pkt.csum_partial = meta.offload.csum_partial;
        if meta.offload.gso_type != 0 {
            pkt.gso_size = meta.offload.gso_size.max(1);
        }
        let v6 = pkt.bytes().first().is_some_and(|b| b >> 4 == 6);
        let paths = Net {
            ports: &self.ports,
            fib4: &self.fib4,
            local: &self.local_addrs,
            fib6: &self.fib6,
            local6: &self.local_addrs6,
        };
        let t = self.engine.process(now_ms, &mut pkt, &paths);
        // What a reply quotes: the packet as the engine left it.
        let quote = pkt.start..pkt.start + pkt.len;
        let encap = pkt.encap;
        match t {
            Transmit::Pass if v6 => self.echo6(io, i, port, src_mac, ip_start..end),
            Transmit::Pass => self.echo(io, i, port, src_mac, ip_start..end),
            Transmit::Drop(_) | Transmit::Held => {}
            Transmit::Send(s) => self.send(io, i, meta.offload, &s, encap, now_ms),
            Transmit::Reply(r) => self.reply(io, i, quote, port, src_mac, &r, now_ms),
        }
    }

    /// Answers an ICMP echo request to a VIP, as the host of a kernel
    /// director would (its VIPs are local addresses there): same ID,
    /// sequence and data, TTL 64, from the VIP. Not for a VIP that is also
    /// on a host interface (the host answers), nor for fragments or
    /// non-unicast sources (the engine has already dropped martians).
    fn echo(
        &mut self,
        io: &mut impl PacketIo,
        i: usize,
        port: PortId,
        to: [u8; 6],
        range: std::ops::Range<usize>,
    ) {
        // Most packets passed to the host are not pings: look before
        // setting up a reply buffer.
        let echo = {
            let (frame, _) = io.rx_frame(i);
            frame.get(range.clone()).is_some_and(|ip| {
                let hl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
                ip.get(9) == Some(&1) && ip.get(hl) == Some(&8)
            })
        };
        if !echo {
            return;
        }
        let mut f = [0u8; ETH_HDR + 20 + ECHO_MAX];
        let n = {
            let (frame, _) = io.rx_frame(i);
            match frame.get(range) {
                Some(ip) => self.echo_reply(port, to, ip, &mut f),
                None => None,
            }
        };
        if let Some(n) = n {
            io.queue_new(port, &f[..n], Offload::default());
            self.counters.echo_replies += 1;
        }
    }

    /// Writes the echo reply to `ip` into `f`; returns its length.
    /// `echo` for IPv6: an ICMPv6 echo request (no extension headers) to an
    /// IPv6 VIP gets its echo reply from the VIP, hop limit 64.
    fn echo6(
        &mut self,
        io: &mut impl PacketIo,
        i: usize,
        port: PortId,
        to: [u8; 6],
        range: std::ops::Range<usize>,
    ) {
        use lvs_core::wire::{checksum, ipv6};
        let mut f = [0u8; ETH_HDR + ECHO_MAX];
        let n = {
            let (frame, _) = io.rx_frame(i);
            let Some(ip) = frame.get(range) else { return };
            let Ok(total) = ipv6::check(ip) else { return };
            let ip = &ip[..total];
            let (src, dst) = (ipv6::src(ip), ipv6::dst(ip));
            // An echo request has at least its 8-byte header.
            if ip[ipv6::field::NEXT_HEADER] != ipv6::nexthdr::ICMPV6
                || total < 48
                || ip.get(40..42) != Some(&[128, 0])
                || total > ECHO_MAX
                || !self.vips6.contains(&dst)
                || self.local_addrs6.contains(&dst)
                || src.is_multicast()
                || src.is_unspecified()
                || to[0] & 1 != 0
            {
                return;
            }
            f[0..6].copy_from_slice(&to);
            f[6..12].copy_from_slice(&self.ports[port].mac);
            f[12..14].copy_from_slice(&ndp::ETHERTYPE_IPV6.to_be_bytes());
            let out = &mut f[ETH_HDR..ETH_HDR + total];
            out.copy_from_slice(ip);
            out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
            out[7] = 64;
            out[8..24].copy_from_slice(&dst.octets());
            out[24..40].copy_from_slice(&src.octets());
            let m = &mut out[40..];
            m[0] = 129;
            m[2..4].copy_from_slice(&[0, 0]);
            let sum = checksum::pseudo_v6(dst.octets(), src.octets(), 58, m.len() as u32);
            let c = !checksum::fold(checksum::add_bytes(sum, m));
            m[2..4].copy_from_slice(&c.to_be_bytes());
            ETH_HDR + total
        };
        io.queue_new(port, &f[..n], Offload::default());
        self.counters.echo_replies += 1;
    }

    fn echo_reply(
        &self,
        port: PortId,
        to: [u8; 6],
        ip: &[u8],
        f: &mut [u8; ETH_HDR + 20 + ECHO_MAX],
    ) -> Option<usize> {
        const MAX: usize = ECHO_MAX;
        let &[vihl, _] = ip.first_chunk::<2>()?;
        let hl = usize::from(vihl & 0x0f) * 4;
        let total = ip
            .get(2..4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        if vihl >> 4 != 4 || hl < 20 || total < hl + 8 || total > ip.len() || total > MAX {
            return None;
        }
        let (&proto, frag, src, dst) =
            (ip.get(9)?, ip.get(6..8)?, ip.get(12..16)?, ip.get(16..20)?);
        let frag = u16::from_be_bytes([frag[0], frag[1]]);
        let dst4 = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
        let src4 = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
        if proto != 1
            || ip.get(hl) != Some(&8)
            || ip.get(hl + 1) != Some(&0)
            || frag & 0x3fff != 0
            || !self.vips.contains(&dst4)
            || self.local_addrs.contains(&dst4)
            || src4.is_broadcast()
            || src4.is_multicast()
            || src4.is_unspecified()
            || to[0] & 1 != 0
        {
            return None;
        }
        let icmp_len = total - hl;
        f[0..6].copy_from_slice(&to);
        f[6..12].copy_from_slice(&self.ports[port].mac);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let out_len = 20 + icmp_len;
        {
            let h = &mut f[ETH_HDR..ETH_HDR + 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&(out_len as u16).to_be_bytes());
            h[6] = 0x40; // DF, as Linux sets on echo replies that fit
            h[8] = 64;
            h[9] = 1;
            h[12..16].copy_from_slice(dst);
            h[16..20].copy_from_slice(src);
            let c = lvs_core::wire::checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let body = &mut f[ETH_HDR + 20..ETH_HDR + out_len];
        body.copy_from_slice(&ip[hl..total]);
        body[0] = 0;
        body[2] = 0;
        body[3] = 0;
        let c = lvs_core::wire::checksum::checksum(body);
        body[2..4].copy_from_slice(&c.to_be_bytes());
        Some(ETH_HDR + out_len)
    }
}

/// Largest echo request answered (IP length).
const ECHO_MAX: usize = 1600;

/// The engine's transmit counters in one line: packets per method, the
/// replies asked for, and drops by reason (only the non-zero ones).
fn engine_report(e: &Engine, fragments: u64) -> String {
    let c = &e.counters;
    let mut s = format!(
        "sent {} masq, {} route, {} tunnel, {} forwarded, {} fragments; replies: {} port-unreachable, {} frag-needed, {} time-exceeded, {} nat-icmp, {} tunnel-errors-relayed, {} resets; engine drops:",
        c.sent_masq,
        c.sent_route,
        c.sent_tunnel,
        c.passed_untouched,
        fragments,
        c.unreachable,
        c.icmp_frag_needed,
        c.icmp_time_exceeded,
        c.nat_icmp_sent,
        c.icmp_relayed,
        c.resets
    );
    let mut any = false;
    for r in lvs_core::DropReason::ALL {
        let n = c.drops[r as usize];
        if n != 0 {
            s.push_str(&format!(" {n} {}", r.name()));
            any = true;
        }
    }
    if !any {
        s.push_str(" none");
    }
    s
}

/// `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
/// `a:port`, or `[a]:port` for IPv6.
pub fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The check's method as the configuration names it.
fn check_name(c: &Check) -> String {
    match &c.kind {
        lvs_health::CheckKind::Tcp => format!("tcpcheck :{}", c.port),
        lvs_health::CheckKind::Http { uri, status, .. } => {
            format!("httpcheck GET {uri} :{} (want {status})", c.port)
        }
        lvs_health::CheckKind::Icmp => "icmpcheck".into(),
        lvs_health::CheckKind::Arp { .. } => "arpcheck".into(),
    }
}

/// What the listing shows of a check.
fn check_status(c: &Check, s: Option<&lvs_health::Status>) -> crate::desired::CheckStatus {
    let desc = format!(
        "{} every {}s timeout {}s rise {} fall {}",
        check_name(c),
        c.interval.as_secs_f64(),
        c.timeout.as_secs_f64(),
        c.rise.max(1),
        c.fall.max(1)
    );
    match s {
        None => crate::desired::CheckStatus {
            desc,
            ..Default::default()
        },
        Some(s) => crate::desired::CheckStatus {
            desc,
            last_ok: s.last_ok,
            reason: s.last_reason.clone(),
            age_ms: s.last_at.map(|t| t.elapsed().as_millis() as u64),
            successes: s.successes,
            failures: s.failures,
            latency: Some(lvs_control::Histogram {
                bounds_us: lvs_health::LATENCY_BOUNDS
                    .iter()
                    .map(|b| (b * 1e6).round() as u64)
                    .collect(),
                counts: s.latency.counts.to_vec(),
                sum_us: (s.latency.sum_secs * 1e6).round() as u64,
            }),
        },
    }
}

/// A 64-bit seed for the engine's hash tables, from the kernel's random source.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into a live buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(b)
}

/// Hands the allocator's free heap back to the system (after the connection
/// table shrank; glibc keeps freed small blocks otherwise).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own heap; it takes
    // no pointers from us and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::{flow_addresses, v4_only, v6_only, Engine, HashSet, IcmpLimit, Ipv4Addr, Ipv6Addr};

    #[test]
    fn icmp_limit_allows_a_burst_then_one_per_millisecond() {
        let mut l = IcmpLimit {
            tokens: IcmpLimit::BURST,
            last_ms: 1000,
        };
        assert_eq!((0..100).filter(|_| l.allow(1000)).count(), 50);
        assert!(!l.allow(1000));
        assert!(l.allow(1001));
        assert!(!l.allow(1001));
        assert_eq!((0..100).filter(|_| l.allow(2000)).count(), 50);
    }

    #[test]
    fn flow_addresses_skip_what_is_not_the_flows_to_take() {
        let mut e = Engine::new(0);
        let flow = |dst: [u8; 4], len: u8, mark: u32| lvs_core::Flow {
            dst: Ipv4Addr::from(dst).into(),
            dst_len: len,
            src: None,
            protocol: None,
            ports: Vec::new(),
            mark,
        };
        e.add_service(lvs_core::ServiceKey::fwmark(7, false), "rr", 0)
            .unwrap();
        // A /30 of mark 7, a /16 (routed only) of mark 7, a /32 of mark 8
        // (no service).
        e.set_flows(vec![
            flow([198, 18, 0, 100], 30, 7),
            flow([198, 19, 0, 0], 16, 7),
            flow([198, 18, 0, 200], 32, 8),
        ]);
        let taken: HashSet<Ipv4Addr> = [Ipv4Addr::new(198, 18, 0, 102)].into();
        let got = flow_addresses(&e, &taken, v4_only);
        assert_eq!(
            got,
            [
                Ipv4Addr::new(198, 18, 0, 100),
                Ipv4Addr::new(198, 18, 0, 101),
                Ipv4Addr::new(198, 18, 0, 103)
            ]
        );
        assert!(flow_addresses(&e, &HashSet::new(), v6_only).is_empty());
        // IPv6: a /126 is owned, a /64 only routed.
        e.add_service(lvs_core::ServiceKey::fwmark(9, true), "rr", 0)
            .unwrap();
        let six = |a: &str, len: u8| lvs_core::Flow {
            dst: a.parse::<Ipv6Addr>().unwrap().into(),
            dst_len: len,
            src: None,
            protocol: None,
            ports: Vec::new(),
            mark: 9,
        };
        e.set_flows(vec![six("2001:db8::100", 126), six("2001:db8:1::", 64)]);
        let taken6: HashSet<Ipv6Addr> = ["2001:db8::101".parse().unwrap()].into();
        let got = flow_addresses(&e, &taken6, v6_only);
        let want: Vec<Ipv6Addr> = ["2001:db8::100", "2001:db8::102", "2001:db8::103"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }
}
