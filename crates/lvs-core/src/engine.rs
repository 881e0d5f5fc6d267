//! The engine: services, destinations and the connection table, driven by
//! the caller with packets and the current time (sans-IO, like quinn-proto).
//!
//! Data path (connections.md §5): a packet is first looked up as the client
//! side of an entry ("in"), then as the real-server side ("out"); if neither
//! matches and it is addressed to a virtual service, the service's scheduler
//! picks a destination and a new entry is created. Entries are rewritten by
//! their forwarding method (only masquerading so far), their state machine
//! advances, and their timer restarts.

use crate::conn::{flags as cf, Conn, ConnId, ConnTable, InKey, OutKey};
use crate::defense::Defense;
use crate::proto::sctp::{self, SctpEvent, SctpState};
use crate::proto::tcp::{self, TcpEvent, TcpState};
use crate::proto::{udp, Direction};
use crate::rng::Rng;
use crate::sched::{self, DestList, PacketInfo, SchedCtx};
use crate::service::{
    Dest, DestId, Forward, Service, ServiceKey, ServiceOptions, SvcId, Tunnel, DEST_F_AVAILABLE,
    DEST_F_OVERLOAD,
};
use crate::slab::Slab;
use crate::stats::{Counters, Estimator, StatsView, EST_TICKS, EST_TICK_MS};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{ipproto, tcp_flags};
use crate::xmit::tunnel::TunnelState;
use crate::xmit::{self, IcmpError, IcmpSource, Method, OnLink, PacketBuf, Paths, Reply, Transmit};
use std::collections::HashMap;
use std::net::IpAddr;

mod offload;
mod sync;

pub use offload::{FastPathSeen, Offload, OffloadFlow, OFFLOAD_AFTER_PKTS, OFFLOAD_GRACE_MS};

/// Errors of control-plane operations; each matches one ipvsadm message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("Service already exists")]
    ServiceExists,
    #[error("Scheduler or persistence engine not found")]
    SchedulerNotFound,
    #[error("No such service")]
    NoSuchService,
    #[error("Service not defined")]
    ServiceNotDefined,
    #[error("Destination already exists")]
    DestExists,
    #[error("No such destination")]
    NoSuchDest,
    #[error("Invalid operation: {0}")]
    Invalid(&'static str),
    /// The kernel's ERANGE (`Numerical result out of range`).
    #[error("Numerical result out of range: {0}")]
    OutOfRange(&'static str),
    #[error("not supported yet: {0}")]
    NotSupported(&'static str),
}

/// A summary of a [`Transmit`] for `Engine::process_ipv4`, the
/// convenience entry used by tests and tools that do not care how a packet
/// leaves (every address on-link, no MTU limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a packet of any virtual service or connection: leave it to the host.
    NotOurs,
    /// Rewritten in place; send it on towards `to` (its new IP destination).
    Forward { to: IpAddr },
    /// Discard it.
    Drop(DropReason),
    /// Discard it and send the client ICMP port unreachable
    /// (no destination available, connections.md §7.5).
    Unreachable,
    /// Discard it and send its sender, a NAT real server, ICMP port
    /// unreachable from the director's own address (`nat_icmp_send`, §18).
    UnreachableToRealServer,
    /// Discard it and answer its sender otherwise (fragmentation needed,
    /// a TCP reset).
    Reply(Reply),
}

impl Verdict {
    fn of(t: Transmit) -> Verdict {
        match t {
            Transmit::Pass | Transmit::Held => Verdict::NotOurs,
            Transmit::Drop(r) => Verdict::Drop(r),
            Transmit::Send(s) => Verdict::Forward { to: s.next_hop },
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::PortUnreachable,
                from,
            }) => match from {
                IcmpSource::PacketDestination => Verdict::Unreachable,
                IcmpSource::Director => Verdict::UnreachableToRealServer,
            },
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::TimeExceeded,
                ..
            }) => Verdict::Drop(DropReason::TtlExceeded),
            Transmit::Reply(r) => Verdict::Reply(r),
        }
    }
}

/// Why a packet was dropped; each reason has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The entry's destination was deleted and `expire_nodest_conn` is 0.
    DestDeleted = 0,
    /// The forwarding method of the entry cannot be carried out here (an
    /// IPv6 real server of an IPv4 service, a tunnel entry without its
    /// destination).
    UnsupportedForward = 1,
    /// TTL would reach 0; the sender gets ICMP time exceeded.
    TtlExceeded = 2,
    /// The drop_packet defense dropped a new-connection packet (§17.3).
    DefenseDropPacket = 3,
    /// No route to the real server (or to the client, for a reply).
    NoRoute = 4,
    /// A NAT real server that is the director itself: the kernel would
    /// deliver the translated packet locally, which lvsd cannot.
    LocalTarget = 5,
    /// The tunnel MTU would be below 68 bytes (§7.5).
    TunnelMtu = 6,
    /// A GSO super-packet for a tunnel (no tunnel segmentation offload).
    GsoTunnel = 7,
    /// The buffer had no room in front of the packet for the outer header.
    NoHeadroom = 8,
    /// The packet's headers do not hold together.
    Malformed = 9,
    /// Too big for the path with DF set; the sender gets "fragmentation
    /// needed".
    FragNeeded = 10,
    /// A tunnel path's "fragmentation needed" about a client packet without
    /// DF: its MTU was learned, nothing is passed on (§9.2).
    TunnelPmtuLearned = 11,
    /// A fragment that cannot be reassembled (overlap, inconsistent
    /// lengths, the reassembly queue full, no room for the datagram).
    Fragment = 12,
    /// The IPv4 header checksum does not verify (`ip_rcv`).
    BadChecksum = 13,
    /// IP options that overrun the header or do not parse.
    BadOptions = 14,
    /// Source-routed (LSRR/SSRR), which the host refuses by default
    /// (`accept_source_route` 0).
    SourceRoute = 15,
    /// A martian source or destination: 0.0.0.0/8, 127/8, multicast or
    /// the limited broadcast as source; 0/8 or 127/8 as destination.
    Martian = 16,
    /// A source that is one of the director's own addresses or a VIP.
    LocalSource = 17,
}

/// Number of `DropReason` values.
pub const DROP_REASONS: usize = 18;

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::DestDeleted,
        DropReason::UnsupportedForward,
        DropReason::TtlExceeded,
        DropReason::DefenseDropPacket,
        DropReason::NoRoute,
        DropReason::LocalTarget,
        DropReason::TunnelMtu,
        DropReason::GsoTunnel,
        DropReason::NoHeadroom,
        DropReason::Malformed,
        DropReason::FragNeeded,
        DropReason::TunnelPmtuLearned,
        DropReason::Fragment,
        DropReason::BadChecksum,
        DropReason::BadOptions,
        DropReason::SourceRoute,
        DropReason::Martian,
        DropReason::LocalSource,
    ];
    /// A short name for listings and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::DestDeleted => "dest_deleted",
            DropReason::UnsupportedForward => "unsupported_forward",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::DefenseDropPacket => "defense_drop_packet",
            DropReason::NoRoute => "no_route",
            DropReason::LocalTarget => "local_target",
            DropReason::TunnelMtu => "tunnel_mtu",
            DropReason::GsoTunnel => "gso_tunnel",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::Malformed => "malformed",
            DropReason::FragNeeded => "frag_needed",
            DropReason::TunnelPmtuLearned => "tunnel_pmtu_learned",
            DropReason::Fragment => "fragment",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadOptions => "bad_options",
            DropReason::SourceRoute => "source_route",
            DropReason::Martian => "martian",
            DropReason::LocalSource => "local_source",
        }
    }
}

/// Template state bit: a controlled connection got established (§8.3).
pub const TEMPLATE_ASSURED: u8 = 1;

/// `net.ipv4.ip_unprivileged_port_start` at its default: destination ports
/// from here on may be FTP data for a port-21 service (§4).
const UNPRIVILEGED_PORT_START: u16 = 1024;

/// Wheel filings one `handle_timeout` looks at, at most (a few ms of work):
/// a burst of entries due together is spread over the following calls.
pub const EXPIRE_BUDGET: usize = 16_384;

/// The trash timer's period and how long a deleted, unreferenced
/// destination stays revivable (§15).
const TRASH_PERIOD_MS: u64 = 60_000;
const TRASH_IDLE_MS: u64 = 120_000;

/// drop_entry examines `CONN_TAB_SIZE / 32` random buckets a second (§17.2).
const DROP_ENTRY_BUCKETS: usize = CONN_TAB_SIZE as usize / 32;

/// Engine-wide counters.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    pub drops: [u64; DROP_REASONS],
    /// New-connection packets for which no destination was available.
    pub unreachable: u64,
    /// Connections created.
    pub conns: u64,
    /// Entries expired or deleted.
    pub expired: u64,
    /// Entries deleted by the drop_entry defense.
    pub defense_dropped_entries: u64,
    /// Times the connection table gave memory back after a flood drained.
    pub memory_given_back: u64,
    /// ICMP errors asked for by `nat_icmp_send`.
    pub nat_icmp_sent: u64,
    /// Real servers' packets that matched no entry, forwarded untouched.
    pub passed_untouched: u64,
    /// TCP resets answered for segments to a service that match no entry.
    pub resets: u64,
    /// ICMP errors asked for: time exceeded, fragmentation needed.
    pub icmp_time_exceeded: u64,
    pub icmp_frag_needed: u64,
    /// Tunnel paths' ICMP errors passed on to the client (§9.2).
    pub icmp_relayed: u64,
    /// Fragments kept for reassembly, and datagrams made whole.
    pub fragments_held: u64,
    pub reassembled: u64,
    /// Packets sent per method: NAT, direct routing, tunnel.
    pub sent_masq: u64,
    pub sent_route: u64,
    pub sent_tunnel: u64,
}

/// The run-time knobs the skeleton honours (sysctls.md); the full sysctl
/// table comes later.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `conn_reuse_mode` (default 1).
    pub conn_reuse_mode: i32,
    /// `expire_nodest_conn` (default 0).
    pub expire_nodest_conn: i32,
    /// `cache_bypass` (default 0).
    pub cache_bypass: i32,
    /// `sloppy_tcp` (default 0).
    pub sloppy_tcp: i32,
    /// `sloppy_sctp` (default 0).
    pub sloppy_sctp: i32,
    /// `expire_quiescent_template` (default 0).
    pub expire_quiescent_template: i32,
    /// `nat_icmp_send` (default 0).
    pub nat_icmp_send: i32,
    /// `run_estimation` (default 1).
    pub run_estimation: i32,
    /// `pmtu_disc` (default 1): DF checks against the tunnel MTU.
    pub pmtu_disc: i32,
    /// `snat_reroute` (default 1): NAT replies are routed from the VIP.
    pub snat_reroute: i32,
    /// Values written to sysctls the engine does not read itself.
    pub stored: std::collections::BTreeMap<&'static str, String>,
    /// TCP timeouts per state, seconds.
    pub tcp_timeouts: [u32; tcp::STATE_COUNT],
    /// UDP timeout, seconds.
    pub udp_timeout: u32,
    /// SCTP timeouts per state, seconds (not settable, §11).
    pub sctp_timeouts: [u32; sctp::STATE_COUNT],
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            conn_reuse_mode: 1,
            expire_nodest_conn: 0,
            cache_bypass: 0,
            sloppy_tcp: 0,
            sloppy_sctp: 0,
            expire_quiescent_template: 0,
            nat_icmp_send: 0,
            run_estimation: 1,
            pmtu_disc: 1,
            snat_reroute: 1,
            stored: Default::default(),
            tcp_timeouts: tcp::DEFAULT_TIMEOUTS,
            udp_timeout: udp::DEFAULT_TIMEOUT,
            sctp_timeouts: sctp::DEFAULT_TIMEOUTS,
        }
    }
}

/// A destination as the control plane defines it (`ipvsadm -a/-e`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    /// Encapsulation (`--tun-type` and friends), for `Forward::Tunnel`.
    pub tunnel: Tunnel,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
}

/// Largest timeout the kernel takes (`INT_MAX / HZ` seconds at HZ 250).
pub const MAX_TIMEOUT_SECS: u32 = 8_589_934;

/// The connection hash table size shown by listings (kernel default 2^12).
pub const CONN_TAB_SIZE: u32 = 4096;

/// The IPVS engine.
pub struct Engine {
    services: Slab<Service>,
    /// Services by key; ahash (keyed from the engine seed) instead of
    /// SipHash: this lookup runs for every packet that matches no entry.
    by_key: HashMap<ServiceKey, SvcId, ahash::RandomState>,
    dests: Slab<Dest>,
    /// (service, address, port) of every destination on a service's list,
    /// so adding one is not a scan of the list (control path only).
    listed: std::collections::HashSet<(SvcId, IpAddr, u16)>,
    /// Deleted destinations still in the trash, by (service, address,
    /// port): what adding one looks up to revive it (control path only).
    trashed: HashMap<(ServiceKey, IpAddr, u16), DestId>,
    conns: ConnTable,
    pub settings: Settings,
    /// Knobs the schedulers read (lblc/lblcr expiration).
    pub sched_settings: sched::SchedSettings,
    pub counters: EngineCounters,
    rng: Rng,
    /// Outer IP IDs and the GUE source-port hash key.
    tunnel: TunnelState,
    /// Fragments of datagrams IPVS sees whole (§1).
    frags: crate::frag::Reassembly,
    next_dest_uid: u64,
    /// Last time the schedulers' periodic hooks ran.
    last_sched_tick: u64,
    trash: Trash,
    /// A scheduler was (re)bound since: tick at the next `handle_timeout`,
    /// so its own timers (lblc/lblcr) start from then, not up to 1 s later.
    sched_bound: bool,
    /// Namespace totals (live) and their estimator (connections.md §19).
    total: Counters,
    total_est: Estimator,
    /// Estimators of destinations, indexed by `DestId`.
    dest_est: Vec<Estimator>,
    /// Estimation runs once the first service has been added (as the
    /// kernel's estimator kthread starts then).
    est_running: bool,
    /// Index of the next estimator tick to run (slot = index % EST_TICKS).
    est_tick: u64,
    /// When that tick is due (set at the first `handle_timeout` after start).
    est_next_ms: Option<u64>,
    /// The defense strategies (§17) and the memory figure they follow.
    pub(crate) defense: Defense,
    mem_avail_pages: Option<u64>,
    /// When the 1-second defense job runs next.
    defense_next_ms: Option<u64>,
    /// A destination was deleted with `expire_nodest_conn` on: flush its
    /// entries at the next `handle_timeout` (§14 effect 3).
    flush_nodest: bool,
    /// Services on port 21 and on port 0 (they widen the service lookup, §4).
    port21_services: u32,
    port0_services: u32,
    /// What connection sync has done (both roles).
    sync_counters: crate::sync::SyncCounters,
    /// The sync master, while one runs.
    sync_master: Option<Box<sync::Master>>,
    /// Whether connections are offered to a fast path, and the requests
    /// for it not yet taken (`offload`).
    offload_on: bool,
    /// Client packets before a connection is offered.
    offload_after: u64,
    offload_queue: offload::OffloadQueue,
    /// A sync backup runs (the daemon says so).
    sync_backup: bool,
    /// `backup_only` is set and a backup runs: client packets are left
    /// to the host (sync-protocol.md §5.5).
    director_off: bool,
    /// Virtual addresses another director holds now (this one is a VRRP
    /// backup for them): their client packets are left to the host, as a
    /// kernel backup without the address would.
    held_vips: std::collections::HashSet<IpAddr>,
    /// Firewall-mark services, and the flows that give packets their marks.
    fwm_services: u32,
    flows: Vec<crate::service::Flow>,
    /// No compaction of the connection table (a listing by slot is in
    /// progress: compaction moves entries between slots).
    compaction_held: bool,
    /// Services per virtual address (the addresses lvsd answers for).
    vips: HashMap<IpAddr, u32, ahash::RandomState>,
    /// NAT real servers of all services, (protocol, address, port) → how
    /// many destinations (for `nat_icmp_send`, §18).
    nat_rs: HashMap<(u8, IpAddr, u16), u32, ahash::RandomState>,
    /// Reused buffer for entries expired in one `handle_timeout`.
    expired_buf: Vec<Conn>,
    /// Reused buffer of entry ids for table walks.
    id_buf: Vec<ConnId>,
    /// A destination went to the trash since the last `handle_timeout`.
    trash_pending: bool,
    /// When the trash timer runs next (`None`: trash empty).
    trash_next_ms: Option<u64>,
}

/// Parsed L4 facts of a packet.
#[derive(Clone, Copy)]
struct L4 {
    sport: u16,
    dport: u16,
    /// TCP: the flags byte; SCTP: the first chunk's type (if `sctp_event`).
    tcp_flags: u8,
    /// SCTP: the state-machine event of the packet (§10.3); `None` when the
    /// packet has no chunk.
    sctp_event: Option<SctpEvent>,
}

impl L4 {
    /// SCTP: the first chunk's type, if the packet has a chunk.
    #[inline]
    fn sctp_chunk(&self) -> Option<u8> {
        self.sctp_event.map(|_| self.tcp_flags)
    }
}

impl Engine {
    /// A new engine; `seed` keys its hash tables and seeds its random source
    /// (the caller supplies randomness). See `with_seeds` to keep the two
    /// apart.
    pub fn new(seed: u64) -> Self {
        Self::with_seeds(seed, seed.rotate_left(29) ^ 0x6a09_e667_f3bc_c909)
    }

    /// A new engine whose hash tables are keyed with `hash_seed` and whose
    /// random source (twos) starts from `rng_seed`. The daemon draws both
    /// independently, so that what twos reveals of its random numbers says
    /// nothing about the hash key.
    pub fn with_seeds(seed: u64, rng_seed: u64) -> Self {
        Engine {
            services: Slab::default(),
            by_key: HashMap::with_hasher(ahash::RandomState::with_seeds(
                seed.rotate_left(7),
                seed ^ 0x243f_6a88_85a3_08d3,
                seed.rotate_left(41),
                !seed.rotate_left(3),
            )),
            dests: Slab::default(),
            listed: std::collections::HashSet::new(),
            trashed: HashMap::default(),
            conns: ConnTable::new(seed),
            settings: Settings::default(),
            sched_settings: sched::SchedSettings::default(),
            counters: EngineCounters::default(),
            rng: Rng::new(rng_seed),
            tunnel: TunnelState {
                next_id: (seed >> 17) as u16,
                hash_key: (seed >> 32) as u32 ^ seed as u32,
                pmtu: HashMap::new(),
            },
            frags: Default::default(),
            next_dest_uid: 0,
            last_sched_tick: 0,
            sched_bound: false,
            trash: Trash::default(),
            total: Counters::default(),
            total_est: Estimator::default(),
            dest_est: Vec::new(),
            est_running: false,
            est_tick: 0,
            est_next_ms: None,
            defense: Defense::default(),
            mem_avail_pages: None,
            defense_next_ms: None,
            flush_nodest: false,
            port21_services: 0,
            sync_counters: Default::default(),
            sync_master: None,
            offload_on: false,
            offload_after: OFFLOAD_AFTER_PKTS,
            offload_queue: Default::default(),
            sync_backup: false,
            director_off: false,
            held_vips: Default::default(),
            port0_services: 0,
            fwm_services: 0,
            flows: Vec::new(),
            compaction_held: false,
            vips: HashMap::with_hasher(ahash::RandomState::with_seeds(
                seed.rotate_left(17),
                seed ^ 0x0a4e_b9e1_c2f3_d4b5,
                seed.rotate_left(37),
                !seed.rotate_left(19),
            )),
            nat_rs: HashMap::with_hasher(ahash::RandomState::with_seeds(
                seed.rotate_left(13),
                seed ^ 0x1319_8a2e_0370_7344,
                seed.rotate_left(53),
                !seed.rotate_left(11),
            )),
            expired_buf: Vec::new(),
            id_buf: Vec::new(),
            trash_pending: false,
            trash_next_ms: None,
        }
    }

    // ----- control plane -------------------------------------------------

    /// `ipvsadm -A`: a new, empty service.
    pub fn add_service(
        &mut self,
        key: ServiceKey,
        scheduler: &str,
        sched_flags: u32,
    ) -> Result<(), ControlError> {
        self.add_service_with(key, scheduler, sched_flags, ServiceOptions::default())
    }

    /// `ipvsadm -A` with persistence / one-packet options (`-p`, `-M`, `-o`).
    pub fn add_service_with(
        &mut self,
        key: ServiceKey,
        scheduler: &str,
        sched_flags: u32,
        opts: ServiceOptions,
    ) -> Result<(), ControlError> {
        if self.by_key.contains_key(&key) {
            return Err(ControlError::ServiceExists);
        }
        Self::check_options(&key, &opts)?;
        let mut s = sched::by_name(scheduler).ok_or(ControlError::SchedulerNotFound)?;
        s.init(DestList::new(&[], &self.dests), sched_flags);
        if !self.est_running {
            self.est_running = true;
            self.total_est.slot = self.new_est_slot();
        }
        let est = Estimator::new(self.new_est_slot());
        let id = self.services.insert(Service {
            key,
            opts,
            scheduler: s,
            sched_flags,
            dests: Vec::new(),
            stats: Counters::default(),
            est,
        });
        self.by_key.insert(key, id);
        self.count_port(key, 1);
        self.sched_bound = true;
        Ok(())
    }

    fn check_options(key: &ServiceKey, opts: &ServiceOptions) -> Result<(), ControlError> {
        // A port-0 service catches every port only through persistence
        // (ipvsadm's "Zero port specified for non-persistent service"):
        // refused here for every path (file, lvsadm, control protocol).
        if key.port == 0 && opts.persistent.is_none() && key.mark().is_none() {
            return Err(ControlError::Invalid(
                "zero port specified for a non-persistent service",
            ));
        }
        if key.addr.is_ipv6() && opts.persistent.is_some() && !(1..=128).contains(&opts.netmask) {
            return Err(ControlError::Invalid(
                "IPv6 netmask must be a prefix length 1..128",
            ));
        }
        Ok(())
    }

    fn count_port(&mut self, key: ServiceKey, add: i32) {
        if key.mark().is_some() {
            // A mark is not an address: no VIP.
            self.fwm_services = self.fwm_services.saturating_add_signed(add);
            return;
        }
        let n = self.vips.entry(key.addr).or_default();
        *n = n.saturating_add_signed(add);
        if *n == 0 {
            self.vips.remove(&key.addr);
        }
        let c = match key.port {
            0 => &mut self.port0_services,
            21 => &mut self.port21_services,
            _ => return,
        };
        *c = c.saturating_add_signed(add);
    }

    /// `ipvsadm -E`: change the scheduler (re-initialised with the current
    /// list); persistence and one-packet options are left as they are.
    pub fn edit_service(
        &mut self,
        key: ServiceKey,
        scheduler: &str,
        sched_flags: u32,
    ) -> Result<(), ControlError> {
        let id = *self.by_key.get(&key).ok_or(ControlError::NoSuchService)?;
        let opts = self.services[id].opts;
        self.edit_service_with(key, scheduler, sched_flags, opts)
    }

    /// `ipvsadm -E` with all options. Changing persistence leaves existing
    /// templates to expire on their own, as the kernel does.
    pub fn edit_service_with(
        &mut self,
        key: ServiceKey,
        scheduler: &str,
        sched_flags: u32,
        opts: ServiceOptions,
    ) -> Result<(), ControlError> {
        let id = *self.by_key.get(&key).ok_or(ControlError::NoSuchService)?;
        Self::check_options(&key, &opts)?;
        if self.services[id].scheduler.name() != scheduler && sched::by_name(scheduler).is_none() {
            return Err(ControlError::SchedulerNotFound);
        }
        let svc = &mut self.services[id];
        svc.opts = opts;
        // The kernel rebinds the scheduler only when it changes, so an edit
        // that keeps it keeps its state (rr cursor, wrr cycle, tables); new
        // flags are simply handed over.
        if svc.scheduler.name() != scheduler {
            let mut s = sched::by_name(scheduler).ok_or(ControlError::SchedulerNotFound)?;
            s.init(DestList::new(&svc.dests, &self.dests), sched_flags);
            svc.scheduler = s;
            self.sched_bound = true;
        } else if svc.sched_flags != sched_flags {
            svc.scheduler.set_flags(sched_flags);
        }
        svc.sched_flags = sched_flags;
        Ok(())
    }

    /// `ipvsadm -D`: delete a service and its destinations. Existing entries
    /// keep their (now unavailable) destinations until they expire.
    pub fn delete_service(&mut self, key: ServiceKey) -> Result<(), ControlError> {
        let id = self
            .by_key
            .remove(&key)
            .ok_or(ControlError::NoSuchService)?;
        let svc = self
            .services
            .remove(id)
            .expect("service index and pool agree");
        self.count_port(key, -1);
        for d in svc.dests {
            self.unlink_dest(d);
        }
        Ok(())
    }

    /// `ipvsadm -C`.
    pub fn clear(&mut self) {
        let keys: Vec<ServiceKey> = self.by_key.keys().copied().collect();
        for k in keys {
            let _ = self.delete_service(k);
        }
    }

    fn find_dest(&self, svc: SvcId, addr: IpAddr, port: u16) -> Option<usize> {
        self.services[svc].dests.iter().position(|&d| {
            let d = &self.dests[d];
            d.addr == addr && d.port == port
        })
    }

    fn check_dest(key: &ServiceKey, cfg: &DestConfig) -> Result<(), ControlError> {
        // The kernel takes only unicast (or local) real servers (EINVAL,
        // "address not unicast"): not 0.0.0.0/8, broadcast, multicast;
        // not `::` or multicast for IPv6.
        let unicast = match cfg.addr {
            IpAddr::V4(a) => !(a.octets()[0] == 0 || a.is_broadcast() || a.is_multicast()),
            IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
        };
        if !unicast {
            return Err(ControlError::Invalid("real server address not unicast"));
        }
        // ERANGE, as the kernel answers both.
        if cfg.weight < 0 {
            return Err(ControlError::OutOfRange("negative weight"));
        }
        if cfg.l_threshold > cfg.u_threshold {
            return Err(ControlError::OutOfRange(
                "lower threshold above upper threshold",
            ));
        }
        if cfg.addr.is_ipv4() != key.addr.is_ipv4() && cfg.forward != Forward::Tunnel {
            return Err(ControlError::Invalid(
                "a different address family is allowed only for tunnelling",
            ));
        }
        Ok(())
    }

    /// `ipvsadm -a`: the destination goes to the front of the list.
    pub fn add_dest(&mut self, key: ServiceKey, cfg: DestConfig) -> Result<(), ControlError> {
        let svc = *self
            .by_key
            .get(&key)
            .ok_or(ControlError::ServiceNotDefined)?;
        Self::check_dest(&key, &cfg)?;
        if self.listed.contains(&(svc, cfg.addr, cfg.port)) {
            return Err(ControlError::DestExists);
        }
        // A deleted destination still in the trash is revived, with
        // its counters, so those connections keep flowing (connections.md §15).
        let trashed = self.trashed.remove(&(key, cfg.addr, cfg.port));
        if let Some(id) = trashed {
            let d = &mut self.dests[id];
            d.flags |= DEST_F_AVAILABLE;
            d.trash_idle_since = None;
            // As for an edit (schedulers.md §0.3): cleared only if the upper
            // threshold goes away or rises.
            if cfg.u_threshold == 0 || cfg.u_threshold > d.u_threshold {
                d.flags &= !DEST_F_OVERLOAD;
            }
            d.svc = svc;
            d.weight = cfg.weight;
            d.last_weight = cfg.weight;
            d.u_threshold = cfg.u_threshold;
            d.l_threshold = cfg.l_threshold;
            d.forward = cfg.forward;
            d.tunnel = cfg.tunnel;
            self.link_dest(svc, id);
            return Ok(());
        }
        let id = self.dests.insert(Dest {
            addr: cfg.addr,
            port: cfg.port,
            forward: cfg.forward,
            tunnel: cfg.tunnel,
            weight: cfg.weight,
            last_weight: cfg.weight,
            u_threshold: cfg.u_threshold,
            l_threshold: cfg.l_threshold,
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            flags: DEST_F_AVAILABLE,
            svc,
            svc_key: key,
            uid: match self.trash.take(key, cfg.addr, cfg.port) {
                Some(uid) => uid,
                None => {
                    self.next_dest_uid += 1;
                    self.next_dest_uid
                }
            },
            refs: 0,
            trash_idle_since: None,
            stats: Counters::default(),
        });
        let est = Estimator::new(self.new_est_slot());
        let slot = id as usize;
        if self.dest_est.len() <= slot {
            self.dest_est.resize(slot + 1, Estimator::default());
        }
        self.dest_est[slot] = est;
        self.link_dest(svc, id);
        Ok(())
    }

    /// Puts destination `id` at the front of service `svc`'s list and tells
    /// the scheduler and the real-server index.
    fn link_dest(&mut self, svc: SvcId, id: DestId) {
        self.index_rs(id, 1);
        let d = &self.dests[id];
        self.listed.insert((svc, d.addr, d.port));
        let s = &mut self.services[svc];
        s.dests.insert(0, id);
        s.scheduler
            .add_dest(DestList::new(&s.dests, &self.dests), 0);
    }

    /// `ipvsadm -e`: edit in place (the destination keeps its list position).
    pub fn edit_dest(&mut self, key: ServiceKey, cfg: DestConfig) -> Result<(), ControlError> {
        let svc = *self
            .by_key
            .get(&key)
            .ok_or(ControlError::ServiceNotDefined)?;
        Self::check_dest(&key, &cfg)?;
        let pos = self
            .find_dest(svc, cfg.addr, cfg.port)
            .ok_or(ControlError::NoSuchDest)?;
        let id = self.services[svc].dests[pos];
        self.index_rs(id, -1);
        let d = &mut self.dests[id];
        if cfg.u_threshold == 0 || cfg.u_threshold > d.u_threshold {
            d.flags &= !DEST_F_OVERLOAD;
        }
        d.weight = cfg.weight;
        if cfg.weight != 0 {
            d.last_weight = cfg.weight;
        }
        d.u_threshold = cfg.u_threshold;
        d.l_threshold = cfg.l_threshold;
        d.forward = cfg.forward;
        d.tunnel = cfg.tunnel;
        self.index_rs(id, 1);
        let s = &mut self.services[svc];
        s.scheduler
            .upd_dest(DestList::new(&s.dests, &self.dests), pos);
        Ok(())
    }

    /// `ipvsadm -d`.
    pub fn delete_dest(
        &mut self,
        key: ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), ControlError> {
        let svc = *self
            .by_key
            .get(&key)
            .ok_or(ControlError::ServiceNotDefined)?;
        let pos = self
            .find_dest(svc, addr, port)
            .ok_or(ControlError::NoSuchDest)?;
        let s = &mut self.services[svc];
        let id = s.dests.remove(pos);
        s.scheduler
            .del_dest(DestList::new(&s.dests, &self.dests), pos);
        self.unlink_dest(id);
        Ok(())
    }

    fn unlink_dest(&mut self, id: DestId) {
        // Without its destination the engine drops (or expires) an entry's
        // next packet: a fast path must stop carrying them.
        self.take_back_where(|c| c.dest() == Some(id));
        self.index_rs(id, -1);
        let d = &self.dests[id];
        self.listed.remove(&(d.svc, d.addr, d.port));
        if self.settings.expire_nodest_conn != 0 {
            self.flush_nodest = true;
        }
        let d = &mut self.dests[id];
        d.flags &= !DEST_F_AVAILABLE;
        d.trash_idle_since = None;
        self.trashed.insert((d.svc_key, d.addr, d.port), id);
        // It stays in the trash (revived if added again) until the trash
        // timer finds it unreferenced for 120 s (§15).
        self.trash_pending = true;
    }

    /// The trash timer (§15), every 60 s while the trash is not empty: a
    /// deleted destination that nothing references is freed 120 s after a
    /// run first found it unreferenced.
    fn run_trash(&mut self, now: u64) {
        if self.trash_pending && self.trash_next_ms.is_none() {
            self.trash_next_ms = Some(now.saturating_add(TRASH_PERIOD_MS));
        }
        self.trash_pending = false;
        let Some(due) = self.trash_next_ms else {
            return;
        };
        if now < due {
            return;
        }
        let mut left = false;
        let mut free = Vec::new();
        for (id, d) in self.dests.iter_mut() {
            if d.available() {
                continue;
            }
            if d.refs > 0 {
                left = true;
                continue;
            }
            match d.trash_idle_since {
                None => {
                    d.trash_idle_since = Some(now);
                    left = true;
                }
                Some(t) if now.saturating_sub(t) >= TRASH_IDLE_MS => free.push(id),
                Some(_) => left = true,
            }
        }
        for id in free {
            if let Some(d) = self.dests.get(id) {
                self.trashed.remove(&(d.svc_key, d.addr, d.port));
            }
            free_dest(&mut self.dests, &mut self.trash, id);
        }
        self.trash_next_ms = left.then(|| now.saturating_add(TRASH_PERIOD_MS));
    }

    /// Adds (`add` = 1) or removes (-1) a NAT destination in the real-server
    /// index that `nat_icmp_send` consults (§18).
    fn index_rs(&mut self, id: DestId, add: i32) {
        let d = &self.dests[id];
        if d.forward != Forward::Masq {
            return;
        }
        // A firewall-mark service's server answers whatever its flows
        // sent it: every protocol, any port (as the guard drops the
        // kernel's copy of all of them, lvsd forwards what matches no
        // connection). The kernel files these under TCP and the server's
        // port, which only matters for `nat_icmp_send`.
        let keys: [(u8, IpAddr, u16); 3] = if d.svc_key.mark().is_some() {
            [
                (ipproto::TCP, d.addr, 0),
                (ipproto::UDP, d.addr, 0),
                (ipproto::SCTP, d.addr, 0),
            ]
        } else {
            [(d.svc_key.protocol, d.addr, d.reply_port()); 3]
        };
        let distinct = if d.svc_key.mark().is_some() { 3 } else { 1 };
        for k in keys.into_iter().take(distinct) {
            let n = self.nat_rs.entry(k).or_insert(0);
            *n = n.saturating_add_signed(add);
            if *n == 0 {
                self.nat_rs.remove(&k);
            }
        }
    }

    /// `ipvsadm --set TCP TCPFIN UDP` (0 leaves a value unchanged).
    pub fn set_timeouts(
        &mut self,
        tcp_secs: u32,
        tcpfin_secs: u32,
        udp_secs: u32,
    ) -> Result<(), ControlError> {
        // The kernel's range: 0 ..= INT_MAX / HZ seconds (HZ 250), else
        // EINVAL, and nothing is changed.
        if [tcp_secs, tcpfin_secs, udp_secs]
            .iter()
            .any(|&t| t > MAX_TIMEOUT_SECS)
        {
            return Err(ControlError::Invalid("timeout out of range"));
        }
        if tcp_secs != 0 {
            self.settings.tcp_timeouts[TcpState::Established as usize] = tcp_secs;
        }
        if tcpfin_secs != 0 {
            self.settings.tcp_timeouts[TcpState::FinWait as usize] = tcpfin_secs;
        }
        if udp_secs != 0 {
            self.settings.udp_timeout = udp_secs;
        }
        Ok(())
    }

    /// The `(tcp, tcpfin, udp)` timeouts of `ipvsadm -L --timeout`.
    pub fn timeouts(&self) -> (u32, u32, u32) {
        let t = &self.settings.tcp_timeouts;
        (
            t[TcpState::Established as usize],
            t[TcpState::FinWait as usize],
            self.settings.udp_timeout,
        )
    }

    // ----- inspection ----------------------------------------------------

    /// Services with their destinations in list order.
    pub fn services(&self) -> impl Iterator<Item = (&Service, Vec<&Dest>)> {
        self.services
            .iter()
            .map(|(_, s)| (s, s.dests.iter().map(|&d| &self.dests[d]).collect()))
    }

    /// The keys of the services, in list order (without collecting their
    /// destinations as `services` does).
    pub fn service_keys(&self) -> impl Iterator<Item = ServiceKey> + '_ {
        self.services.iter().map(|(_, s)| s.key)
    }

    /// One service by key.
    pub fn service(&self, key: &ServiceKey) -> Option<(&Service, Vec<&Dest>)> {
        let s = &self.services[*self.by_key.get(key)?];
        Some((s, s.dests.iter().map(|&d| &self.dests[d]).collect()))
    }

    /// Every destination, including deleted ones that still have connections.
    pub fn all_dests(&self) -> impl Iterator<Item = &Dest> {
        self.dests.iter().map(|(_, d)| d)
    }

    /// All connection entries.
    pub fn connections(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter().map(|(_, c)| c)
    }

    /// Holds (or allows again) the table's compaction while a listing by
    /// slot (`connections_chunk`) is in progress, so that no entry moves
    /// past its cursor.
    pub fn hold_compaction(&mut self, hold: bool) {
        self.compaction_held = hold;
    }

    /// At most `max` entries from table slot `start` on, and the slot to
    /// go on from (`None`: that was the end). A listing in chunks between
    /// packet batches never holds the packet path for long; entries made
    /// or removed meanwhile may or may not be listed, as with the kernel's
    /// `/proc/net/ip_vs_conn`.
    pub fn connections_chunk(&self, start: usize, max: usize) -> (Vec<&Conn>, Option<usize>) {
        let mut v = Vec::with_capacity(max.min(1 << 16));
        for (id, c) in self.conns.iter_from(start) {
            if v.len() == max {
                return (v, Some(id as usize));
            }
            v.push(c);
        }
        (v, None)
    }

    /// Number of connection entries.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Makes room for `n` more connection entries (no allocation while they are created).
    pub fn reserve_connections(&mut self, n: usize) {
        self.conns.reserve(n);
    }

    /// Entry slots the connection table holds memory for (live or free).
    pub fn connection_slots(&self) -> usize {
        self.conns.slots()
    }

    /// Name of a connection's state as ipvsadm prints it.
    pub fn state_name(c: &Conn) -> &'static str {
        if c.is_template() {
            return if c.state & TEMPLATE_ASSURED != 0 {
                "ASSURED"
            } else {
                "NONE"
            };
        }
        match c.protocol {
            ipproto::TCP => TcpState::from_u8(c.state).map_or("ERR!", TcpState::name),
            ipproto::UDP => udp::STATE_NAME,
            ipproto::SCTP => SctpState::from_u8(c.state).map_or("ERR!", SctpState::name),
            _ => "NONE",
        }
    }

    // ----- timers --------------------------------------------------------

    /// Expires every entry that is due at `now` (milliseconds). Call at least
    /// every `conn::TICK_MS`.
    pub fn handle_timeout(&mut self, now: u64) -> usize {
        let mut buf = std::mem::take(&mut self.expired_buf);
        let (n, _) = self.conns.expire_some(now, &mut buf, EXPIRE_BUDGET);
        if self.sync_master.is_some() {
            // §6.1: a template kept for its connections is sent again.
            let threshold = u64::from(self.sync_timing().threshold);
            for id in self.conns.take_rearmed() {
                if self.conns.get_mut_checked(id).is_some() {
                    self.sync_conn(now, id, threshold);
                }
            }
        }
        for id in self.conns.take_graced() {
            self.offload_report_due(id);
        }
        for c in buf.drain(..) {
            self.release(&c);
        }
        self.expired_buf = buf;
        self.counters.expired += n as u64;
        if self.flush_nodest {
            self.flush_nodest = false;
            self.flush_nodest_entries();
        }
        self.run_trash(now);
        if self.sched_bound || now.saturating_sub(self.last_sched_tick) >= 1000 {
            self.sched_bound = false;
            self.last_sched_tick = now;
            let mut ctx = SchedCtx {
                now_ms: now,
                rng: &mut self.rng,
                settings: &self.sched_settings,
            };
            for (_, s) in self.services.iter_mut() {
                s.scheduler
                    .tick(DestList::new(&s.dests, &self.dests), &mut ctx);
            }
        }
        let due = *self.defense_next_ms.get_or_insert(now.saturating_add(1000));
        if now >= due {
            self.defense_next_ms = Some(now.max(due.saturating_add(1000)));
            self.defense.update(self.mem_avail_pages);
            if !self.compaction_held && self.conns.give_back() {
                self.counters.memory_given_back += 1;
            }
            if self.defense.drop_entry_on() {
                self.random_drop_entries(now);
            }
        }
        if self.est_running && self.estimation_on() {
            self.run_estimator(now);
        }
        n
    }

    /// The memory figure the defenses follow (§17.1): free plus buffer
    /// pages, as the caller measures it (lvsd: `MemFree + Buffers` from
    /// /proc/meminfo, in 4 KiB pages). Read by the next 1-second run.
    pub fn set_available_memory(&mut self, pages: u64) {
        self.mem_avail_pages = Some(pages);
    }

    /// Re-runs the defense update at once (after a mode sysctl changed).
    pub(crate) fn update_defense(&mut self) {
        self.defense.update(self.mem_avail_pages);
    }

    /// Whether the secure TCP state table is in effect now.
    pub fn secure_tcp_on(&self) -> bool {
        self.defense.secure_on()
    }

    /// §14 effect 3: deletes every entry whose destination was deleted and
    /// that controls nothing, and its controller if that is left idle.
    fn flush_nodest_entries(&mut self) {
        let mut ids = std::mem::take(&mut self.id_buf);
        ids.clear();
        ids.extend(self.conns.iter().filter_map(|(id, c)| {
            let gone = c.dest().is_some_and(|d| !self.dests[d].available());
            (gone && c.n_control == 0).then_some(id)
        }));
        for &id in &ids {
            // An earlier deletion may have taken this one (as a controller).
            let Some(c) = self.conns.get_mut_checked(id) else {
                continue;
            };
            if c.n_control != 0 {
                continue;
            }
            let control = c.control();
            self.delete_forced(id);
            if let Some(t) = control {
                if self
                    .conns
                    .get_mut_checked(t)
                    .is_some_and(|t| t.n_control == 0)
                {
                    self.delete_forced(t);
                }
            }
        }
        self.id_buf = ids;
    }

    /// drop_entry (§17.2): examines the entries of `CONN_TAB_SIZE / 32`
    /// random buckets and deletes half-open ones and idle, low-traffic ones.
    fn random_drop_entries(&mut self, now: u64) {
        let mut ids = std::mem::take(&mut self.id_buf);
        ids.clear();
        for _ in 0..DROP_ENTRY_BUCKETS {
            let b = self.rng.below(CONN_TAB_SIZE) as usize;
            ids.extend(self.conns.bucket_ids(b, CONN_TAB_SIZE as usize));
        }
        for &id in &ids {
            let Some(c) = self.conns.get_mut_checked(id) else {
                continue;
            };
            if c.n_control != 0 {
                continue;
            }
            let (state, protocol, in_pkts) = (c.state, c.protocol, c.in_pkts);
            let idle = now.saturating_sub(c.last_restart()) >= 60_000;
            let rate_test = |d: &mut Defense| idle && d.rate_drop(u64::from(in_pkts));
            let drop = if c.is_template() {
                let ops = c
                    .dest()
                    .and_then(|d| self.dests.get(d))
                    .and_then(|d| self.services.get(d.svc))
                    .is_some_and(|s| s.opts.one_packet);
                if ops {
                    rate_test(&mut self.defense)
                } else {
                    state & TEMPLATE_ASSURED == 0
                }
            } else if protocol == ipproto::TCP {
                match TcpState::from_u8(state) {
                    Some(TcpState::SynRecv | TcpState::SynAck) => true,
                    Some(TcpState::Established) => rate_test(&mut self.defense),
                    _ => false,
                }
            } else if protocol == ipproto::SCTP {
                match SctpState::from_u8(state) {
                    Some(SctpState::Init1 | SctpState::Init) => true,
                    Some(SctpState::Established) => rate_test(&mut self.defense),
                    _ => false,
                }
            } else {
                rate_test(&mut self.defense)
            };
            if drop {
                self.delete_forced(id);
                self.counters.defense_dropped_entries += 1;
            }
        }
        self.id_buf = ids;
    }

    // ----- statistics (connections.md §19) ---------------------------------

    /// The slot of a new estimator: the tick that ran last, so that its first
    /// visit comes one full period (~2 s) after its creation.
    fn new_est_slot(&self) -> u8 {
        ((self.est_tick + EST_TICKS - 1) % EST_TICKS) as u8
    }

    /// Runs the estimator ticks due at `now`: each 40 ms tick visits the
    /// estimators of its slot, so every estimator is visited once per 2 s.
    /// After a long gap at most one period is caught up (each estimator
    /// visited once, its delta covering the whole gap).
    fn run_estimator(&mut self, now: u64) {
        let next = *self
            .est_next_ms
            .get_or_insert(now.saturating_add(EST_TICK_MS));
        let mut next = next;
        let mut ran = 0;
        while now >= next && ran < EST_TICKS {
            let slot = (self.est_tick % EST_TICKS) as u8;
            if self.total_est.slot == slot {
                self.total_est.visit(&self.total);
            }
            for (_, s) in self.services.iter_mut() {
                if s.est.slot == slot {
                    s.est.visit(&s.stats);
                }
            }
            for (id, d) in self.dests.iter() {
                // Deleted destinations have no running estimator.
                if !d.available() {
                    continue;
                }
                if let Some(e) = self.dest_est.get_mut(id as usize) {
                    if e.slot == slot {
                        e.visit(&d.stats);
                    }
                }
            }
            self.est_tick = self.est_tick.wrapping_add(1);
            next = next.saturating_add(EST_TICK_MS);
            ran += 1;
        }
        if now >= next {
            next = now.saturating_add(EST_TICK_MS);
        }
        self.est_next_ms = Some(next);
    }

    /// A service's statistics and those of its destinations (in list order,
    /// as `service()` returns them), as listings show them.
    pub fn service_stats(&self, key: &ServiceKey) -> Option<(StatsView, Vec<StatsView>)> {
        let s = &self.services[*self.by_key.get(key)?];
        let dests = s
            .dests
            .iter()
            .map(|&d| {
                self.dest_est
                    .get(d as usize)
                    .map(Estimator::view)
                    .unwrap_or_default()
            })
            .collect();
        Some((s.est.view(), dests))
    }

    /// The namespace totals (`/proc/net/ip_vs_stats`).
    pub fn total_stats(&self) -> StatsView {
        self.total_est.view()
    }

    /// `ipvsadm -Z`: zero one service and its destinations, or (`None`)
    /// every service, every destination and the totals.
    pub fn zero_stats(&mut self, key: Option<ServiceKey>) -> Result<(), ControlError> {
        let Engine {
            services,
            by_key,
            dest_est,
            total_est,
            ..
        } = self;
        let mut zero_svc = |s: &mut Service| {
            s.est.zero();
            for &d in &s.dests {
                if let Some(e) = dest_est.get_mut(d as usize) {
                    e.zero();
                }
            }
        };
        match key {
            Some(k) => {
                let id = *by_key.get(&k).ok_or(ControlError::NoSuchService)?;
                if let Some(s) = services.get_mut(id) {
                    zero_svc(s);
                }
            }
            None => {
                for (_, s) in services.iter_mut() {
                    zero_svc(s);
                }
                total_est.zero();
            }
        }
        Ok(())
    }

    // ----- data path -----------------------------------------------------

    /// Processes one IPv4 packet `pkt` (starting at the IP header, no
    /// headroom) at time `now` (milliseconds), with every address on-link
    /// and no MTU limit, and summarises the answer. `csum_partial` tells
    /// that the L4 checksum field holds an offload pseudo-header sum. The
    /// packet is rewritten in place. The daemon uses [`Engine::process`].
    pub fn process_ipv4(&mut self, now: u64, pkt: &mut [u8], csum_partial: bool) -> Verdict {
        let paths = OnLink {
            src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            mtu: u16::MAX,
        };
        let mut buf = PacketBuf::new(pkt, 0);
        buf.csum_partial = csum_partial;
        Verdict::of(self.process(now, &mut buf, &paths))
    }

    /// Processes one IPv4 packet at time `now` (milliseconds) and answers
    /// how it leaves (forwarding.md §2–§8). The packet is rewritten in
    /// place; an encapsulation is written into the buffer's headroom (the
    /// answer says where the packet to send starts). `paths` is the host's
    /// routing as the transmit step needs it.
    pub fn process(&mut self, now: u64, pkt: &mut PacketBuf, paths: &impl Paths) -> Transmit {
        let t = self.process_inner(now, pkt, paths);
        self.tally(t)
    }

    /// Counts what a packet came to.
    #[inline(always)]
    fn tally(&mut self, t: Transmit) -> Transmit {
        let c = &mut self.counters;
        if let Transmit::Send(s) = &t {
            *match s.method {
                Method::Masq => &mut c.sent_masq,
                Method::Route => &mut c.sent_route,
                Method::Tunnel(_) => &mut c.sent_tunnel,
                Method::Forwarded => &mut c.passed_untouched,
            } += 1;
            return t;
        }
        self.tally_other(t);
        t
    }

    /// The counters of the answers other than sending (off the hot path).
    #[cold]
    fn tally_other(&mut self, t: Transmit) {
        let c = &mut self.counters;
        match t {
            Transmit::Pass | Transmit::Send(_) => {}
            Transmit::Held => c.fragments_held += 1,
            Transmit::Drop(r) => c.drops[r as usize] += 1,
            Transmit::Reply(Reply::TcpReset) => c.resets += 1,
            Transmit::Reply(Reply::Icmp { error, from }) => match error {
                IcmpError::PortUnreachable if from == IcmpSource::Director => c.nat_icmp_sent += 1,
                IcmpError::PortUnreachable => c.unreachable += 1,
                IcmpError::TimeExceeded => {
                    c.icmp_time_exceeded += 1;
                    c.drops[DropReason::TtlExceeded as usize] += 1;
                }
                IcmpError::FragNeeded { .. } => {
                    c.icmp_frag_needed += 1;
                    c.drops[DropReason::FragNeeded as usize] += 1;
                }
                IcmpError::Relay { .. } => c.icmp_relayed += 1,
            },
        }
    }

    #[inline(always)]
    fn process_inner(&mut self, now: u64, pkt: &mut PacketBuf, paths: &impl Paths) -> Transmit {
        let Ok(ip) = Ipv4Packet::new_checked(pkt.bytes()) else {
            if pkt.bytes().first().is_some_and(|b| b >> 4 == 6) {
                return self.process_v6(now, pkt, paths);
            }
            // Lengths that do not hold together (the host's IP layer drops
            // them too): counted, not forwarded.
            return Transmit::Drop(DropReason::Malformed);
        };
        // What the host's IPv4 input drops before IPVS sees a packet
        // (`ip_rcv`, the route lookup's martian checks).
        if let Some(r) = input_check(&ip) {
            return Transmit::Drop(r);
        }
        let protocol = ip.protocol();
        if ip.frag_offset() != 0 || ip.more_frags() {
            return self.reassemble(now, pkt, paths);
        }
        if protocol == ipproto::ICMP {
            // §9: errors about a connection's packets; any other ICMP is
            // not balanced.
            let total = ip.total_len();
            let (related, tunnel) = (xmit::icmp::related(&ip), xmit::icmp::tunnel_related(&ip));
            pkt.len = total;
            if let Some(t) = tunnel {
                if let Some(answer) = self.tunnel_icmp_error(now, pkt, paths, &t) {
                    return answer;
                }
            }
            return match related {
                Some(r) => self.icmp_error(now, pkt, paths, &r),
                None => Transmit::Pass,
            };
        }
        let Some(l4) = parse_l4(protocol, ip.payload()) else {
            return no_transport(protocol);
        };
        let len = ip.total_len() as u64;
        let src: IpAddr = ip.src().into();
        let dst: IpAddr = ip.dst().into();
        // Trailing bytes past the IP total length (Ethernet padding) are
        // not part of the packet.
        pkt.len = ip.total_len();

        self.flow(now, pkt, paths, protocol, src, dst, &l4, len)
    }

    /// An IPv6 packet: what the host's IPv6 input drops is dropped
    /// (martian sources, multicast and loopback as source, malformed
    /// extension chains), ICMPv6 and multicast destinations are the host's
    /// (neighbour discovery among them), fragments of datagrams to a
    /// virtual address or from a NAT real server are reassembled first (as
    /// the kernel's defragmenter does before IPVS), and the rest goes
    /// through the same steps as IPv4.
    #[inline(never)]
    fn process_v6(&mut self, now: u64, pkt: &mut PacketBuf, paths: &impl Paths) -> Transmit {
        use crate::wire::ipv6;
        let Ok(total) = ipv6::check(pkt.bytes()) else {
            return Transmit::Drop(DropReason::Malformed);
        };
        pkt.len = total;
        let b = pkt.bytes();
        let (src, dst) = (ipv6::src(b), ipv6::dst(b));
        if src.is_multicast() || src.is_loopback() || dst.is_loopback() || dst.is_unspecified() {
            return Transmit::Drop(DropReason::Martian);
        }
        if dst.is_multicast() {
            return Transmit::Pass;
        }
        let Ok(t) = ipv6::transport(b) else {
            return Transmit::Drop(DropReason::Malformed);
        };
        let (src, dst) = (IpAddr::V6(src), IpAddr::V6(dst));
        if t.protocol == ipv6::nexthdr::ICMPV6 {
            // §9: errors about a connection's packets (an error behind a
            // fragment header is dropped); the rest (neighbour discovery,
            // echo) is the host's.
            let error = b.get(t.offset).is_some_and(|&typ| typ < 128);
            if t.fragment && error {
                return Transmit::Drop(DropReason::Fragment);
            }
            return match xmit::icmp6::related(b, t.offset) {
                Some(r) => self.icmp_error_v6(now, pkt, paths, &r),
                None => Transmit::Pass,
            };
        }
        if t.fragment {
            // An atomic fragment (offset 0, no more) is a whole packet
            // with a fragment header in it: balanced as it is.
            let atomic = ipv6::fragment_fields(b, t.frag_at).is_some_and(|(o, m, _)| o == 0 && !m);
            if !atomic {
                return self.reassemble_v6(now, pkt, paths, &t);
            }
        }
        let Some(l4) = parse_l4(t.protocol, &b[t.offset..]) else {
            return no_transport(t.protocol);
        };
        self.flow(now, pkt, paths, t.protocol, src, dst, &l4, total as u64)
    }

    /// What happens to a parsed packet of either family (§4–§8): an
    /// existing entry's direction, or a new connection to a virtual
    /// service. `len` is the IP packet's length (for the statistics).
    /// `backup_only` with a backup running (sync-protocol.md §5.5): the
    /// director does not schedule or forward client packets; replies of
    /// NAT connections are still translated; the rest goes to the host.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn replies_only(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        l4: &L4,
        len: u64,
    ) -> Transmit {
        let ok = OutKey {
            protocol,
            daddr: src,
            dport: l4.sport,
            caddr: dst,
            cport: l4.dport,
        };
        match self.conns.lookup_out(&ok) {
            Some(id) => self.forward_out(now, id, pkt, paths, l4, len),
            None => Transmit::Pass,
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn flow(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        l4: &L4,
        len: u64,
    ) -> Transmit {
        let l4 = *l4;
        if self.director_off || (!self.held_vips.is_empty() && self.held_vips.contains(&dst)) {
            return self.replies_only(now, pkt, paths, protocol, src, dst, &l4, len);
        }
        let ik = InKey {
            protocol,
            caddr: src,
            cport: l4.sport,
            vaddr: dst,
            vport: l4.dport,
        };
        let mut found = self.conns.lookup_in(&ik);
        if let Some(id) = found {
            if !self.keep_on_reuse(id, protocol, &l4) {
                self.expire_now(id);
                found = None;
            } else if let Some(d) = self.conns.get(id).dest() {
                if !self.dests[d].available() {
                    if self.settings.expire_nodest_conn == 0 {
                        return Transmit::Drop(DropReason::DestDeleted);
                    }
                    self.expire_now(id);
                    found = None;
                }
            }
        }
        if let Some(id) = found {
            return self.forward_in(now, id, pkt, paths, &l4, len);
        }

        let ok = OutKey {
            protocol,
            daddr: src,
            dport: l4.sport,
            caddr: dst,
            cport: l4.dport,
        };
        if let Some(id) = self.conns.lookup_out(&ok) {
            return self.forward_out(now, id, pkt, paths, &l4, len);
        }

        // No entry: is it a new connection to a virtual service? (§4, §6, §7)
        // A source that is one of the host's own addresses — a VIP is one on
        // a kernel director — is martian (`fib_validate_source`); checked
        // here, where entries are made, rather than for every packet.
        if self.vips.contains_key(&src) || paths.is_local(src) {
            return Transmit::Drop(DropReason::LocalSource);
        }
        let Some(svc) = self.find_service(protocol, src, dst, l4.dport, paths) else {
            let t = self.unmatched_out(pkt, paths, protocol, src, dst, &l4);
            if t == Transmit::Pass && self.vips.contains_key(&dst) {
                return self.vip_without_service(paths, protocol, dst, &l4);
            }
            return t;
        };
        if !self.new_conn_gate(protocol, &l4) {
            // IPVS lets it through to the host, whose TCP stack has no
            // socket for it (the VIP is a local address of a kernel
            // director) and answers with a reset.
            if protocol == ipproto::TCP && l4.tcp_flags & tcp_flags::RST == 0 {
                return Transmit::Reply(Reply::TcpReset);
            }
            return Transmit::Pass;
        }
        if self.defense.todrop_packet() {
            return Transmit::Drop(DropReason::DefenseDropPacket);
        }
        // §7 step 1: FTP data from the client's port 20 is left alone.
        if l4.sport == 20 {
            return self.vip_without_service(paths, protocol, dst, &l4);
        }
        let info = PacketInfo {
            protocol,
            saddr: src,
            sport: l4.sport,
            daddr: dst,
            dport: l4.dport,
        };
        let id = if self.services[svc].opts.persistent.is_some() {
            self.schedule_persistent(now, svc, &info)
        } else {
            self.schedule_plain(now, svc, &info)
        };
        let Some(id) = id else {
            if let Some(id) = self.bypass(now, svc, paths, &info) {
                return self.forward_in(now, id, pkt, paths, &l4, len);
            }
            return self.leave(svc, paths, protocol, dst, &l4);
        };
        let t = self.forward_in(now, id, pkt, paths, &l4, len);
        if self.conns.get(id).flags & cf::ONE_PACKET != 0 {
            // §16: used for this one packet, then destroyed at once.
            if let Some(c) = self.conns.remove(id) {
                self.release(&c);
            }
        }
        t
    }

    /// A fragment (§1): one of a datagram to a virtual address, or from a
    /// NAT real server, is kept until its datagram is whole, which is then
    /// processed in its place (and fragmented again on output when it is
    /// over the path MTU). Other fragments are the host's.
    #[cold]
    fn reassemble(&mut self, now: u64, pkt: &mut PacketBuf, paths: &impl Paths) -> Transmit {
        let b = pkt.bytes();
        let (protocol, src, dst) = (
            b[9],
            IpAddr::V4(std::net::Ipv4Addr::new(b[12], b[13], b[14], b[15])),
            IpAddr::V4(std::net::Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        );
        if !self.fragment_is_ours(Some(protocol), src, dst) {
            return Transmit::Pass;
        }
        let outcome = self.frags.add(now, pkt.bytes());
        self.reassembled(now, pkt, paths, outcome)
    }

    /// Whether a fragment from `src` to `dst` belongs to a datagram IPVS
    /// sees whole: to a virtual address, or from a NAT real server (of
    /// that protocol when the family's fragments say it).
    fn fragment_is_ours(&self, protocol: Option<u8>, src: IpAddr, dst: IpAddr) -> bool {
        self.vips.contains_key(&dst)
            || self
                .nat_rs
                .keys()
                .any(|&(p, a, _)| protocol.is_none_or(|q| q == p) && a == src)
    }

    /// An IPv6 fragment (§1: the netfilter defragmenter runs before
    /// IPVS): as for IPv4, the datagram is gathered and processed whole,
    /// remembering its largest fragment for the MTU check (§3.4) and the
    /// fragments made again on output.
    #[cold]
    fn reassemble_v6(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        t: &crate::wire::ipv6::Transport,
    ) -> Transmit {
        use crate::wire::ipv6;
        let b = pkt.bytes();
        let (src, dst) = (IpAddr::V6(ipv6::src(b)), IpAddr::V6(ipv6::dst(b)));
        if !self.fragment_is_ours(None, src, dst) {
            return Transmit::Pass;
        }
        let outcome = self.frags.add_v6(now, pkt.bytes(), t);
        self.reassembled(now, pkt, paths, outcome)
    }

    fn reassembled(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        outcome: crate::frag::Outcome,
    ) -> Transmit {
        match outcome {
            crate::frag::Outcome::Held => Transmit::Held,
            crate::frag::Outcome::Dropped => Transmit::Drop(DropReason::Fragment),
            crate::frag::Outcome::Complete(slot, largest) => {
                let start = pkt.start;
                let Some(len) = self.frags.take(slot, &mut pkt.buf[start..]) else {
                    return Transmit::Drop(DropReason::Fragment);
                };
                self.counters.reassembled += 1;
                let v6 = pkt.bytes().first().is_some_and(|b| b >> 4 == 6);
                pkt.len = len;
                pkt.csum_partial = false;
                pkt.gso_size = 0;
                pkt.frag_max = if v6 { largest } else { 0 };
                // Whole now: processed like any packet (it is no fragment).
                self.process_inner(now, pkt, paths)
            }
        }
    }

    /// An ICMP error about one of our tunnel packets (§9.2, tunnel errors):
    /// `None` when the quoted tunnel packet did not go to a real server of
    /// that tunnel type (then it is an ordinary ICMP packet).
    fn tunnel_icmp_error(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        t: &xmit::icmp::TunnelRelated,
    ) -> Option<Transmit> {
        let rip = IpAddr::V4(t.rip);
        let ours = self.dests.iter().any(|(_, d)| {
            d.forward == Forward::Tunnel
                && d.addr == rip
                && d.tunnel.kind == t.kind
                && (t.kind != crate::service::TunnelType::Gue || d.tunnel.port == t.port)
        });
        if !ours {
            return None;
        }
        let ik = InKey {
            protocol: t.protocol,
            caddr: t.src.into(),
            cport: t.sport,
            vaddr: t.dst.into(),
            vport: t.dport,
        };
        self.conns.lookup_in(&ik)?;
        if !xmit::icmp::checksum_ok(pkt.bytes()) {
            return Some(Transmit::Drop(DropReason::Malformed));
        }
        let mut info = t.info;
        if t.typ == crate::wire::icmp::DEST_UNREACH && t.code == crate::wire::icmp::FRAG_NEEDED {
            let route_mtu = paths.path(rip).map_or(u16::MAX, |p| p.mtu);
            let mtu = self.tunnel.report(t.rip, t.info as u16, route_mtu, now);
            // The client does not do path-MTU discovery: nothing to tell it.
            if !t.df {
                return Some(Transmit::Drop(DropReason::TunnelPmtuLearned));
            }
            info = u32::from(mtu);
        }
        // The new error quotes the client's packet, as far as the tunnel
        // path quoted it.
        pkt.start += t.inner_off;
        pkt.len = t.inner_len;
        Some(Transmit::Reply(Reply::Icmp {
            error: IcmpError::Relay {
                typ: t.typ,
                code: t.code,
                info,
            },
            from: IcmpSource::PacketDestination,
        }))
    }

    /// An ICMP error quoting a packet of a connection (§9.2, §9.3).
    fn icmp_error(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        r: &xmit::icmp::Related,
    ) -> Transmit {
        // From the client side: the quoted packet went from the VIP (or,
        // for NAT, as translated) towards the client; from the real
        // server: it is the client's as the real server got it (client →
        // RIP:dport).
        let (ik, ok) = related_keys(r.protocol, r.src.into(), r.sport, r.dst.into(), r.dport);
        if let Some(id) = self.conns.lookup_in(&ik) {
            if !xmit::icmp::checksum_ok(pkt.bytes()) {
                return Transmit::Drop(DropReason::Malformed);
            }
            pkt.relay_icmp = true;
            return self.transmit(now, id, pkt, paths, Some(r));
        }
        if let Some(id) = self.conns.lookup_out(&ok) {
            let c = self.conns.get(id);
            if c.flags & cf::FWD_MASK != Forward::Masq as u32 {
                return Transmit::Pass;
            }
            if !xmit::icmp::checksum_ok(pkt.bytes()) {
                return Transmit::Drop(DropReason::Malformed);
            }
            let (vaddr, vport) = (c.vaddr, c.vport);
            self.account(id, false, pkt.len as u64);
            pkt.relay_icmp = true;
            let reroute = self.settings.snat_reroute != 0;
            return xmit::icmp::xmit_nat_out(pkt, paths, r, vaddr, vport, reroute);
        }
        Transmit::Pass
    }

    /// §9.2/§9.3 for IPv6: an ICMPv6 error about a connection's packet,
    /// from the client side (the quote went VIP → client) or from the real
    /// server's (client → RIP). NAT66 translates it; direct routing passes
    /// an IN error on to the real server like the connection's packets.
    #[cold]
    fn icmp_error_v6(
        &mut self,
        now: u64,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        r: &xmit::icmp6::Related6,
    ) -> Transmit {
        let (ik, ok) = related_keys(r.protocol, r.src.into(), r.sport, r.dst.into(), r.dport);
        if let Some(id) = self.conns.lookup_in(&ik) {
            if !xmit::icmp6::checksum_ok(pkt.bytes(), r.icmp_off) {
                return Transmit::Drop(DropReason::Malformed);
            }
            let c = self.conns.get(id);
            return match (c.flags & cf::FWD_MASK, c.daddr) {
                (f, IpAddr::V6(rip)) if f == Forward::Masq as u32 => {
                    let dport = c.dport;
                    xmit::icmp6::xmit_nat_in(pkt, paths, r, rip, dport)
                }
                _ => {
                    pkt.relay_icmp = true;
                    self.transmit(now, id, pkt, paths, None)
                }
            };
        }
        if let Some(id) = self.conns.lookup_out(&ok) {
            let c = self.conns.get(id);
            let (IpAddr::V6(vip), true) = (c.vaddr, c.flags & cf::FWD_MASK == Forward::Masq as u32)
            else {
                return Transmit::Pass;
            };
            if !xmit::icmp6::checksum_ok(pkt.bytes(), r.icmp_off) {
                return Transmit::Drop(DropReason::Malformed);
            }
            let vport = c.vport;
            self.account(id, false, pkt.len as u64);
            let reroute = self.settings.snat_reroute != 0;
            return xmit::icmp6::xmit_nat_out(pkt, paths, r, vip, vport, reroute);
        }
        Transmit::Pass
    }

    /// The flows that mark packets for firewall-mark services (first match
    /// wins), replacing the previous ones.
    pub fn set_flows(&mut self, flows: Vec<crate::service::Flow>) {
        self.flows = flows;
    }

    pub fn flows(&self) -> &[crate::service::Flow] {
        &self.flows
    }

    /// The mark the flows give a packet (0: none).
    fn flow_mark(&self, protocol: u8, src: IpAddr, dst: IpAddr, dport: u16) -> u32 {
        self.flows
            .iter()
            .find(|f| f.matches(protocol, src, dst, dport))
            .map_or(0, |f| f.mark)
    }

    /// Service lookup for a packet to be scheduled (§4): the firewall-mark
    /// service of the packet's mark (from lvsd's flows), the exact match,
    /// the FTP data fallback to port 21, then a port-0 service.
    fn find_service(
        &self,
        protocol: u8,
        src: IpAddr,
        addr: IpAddr,
        port: u16,
        paths: &impl Paths,
    ) -> Option<SvcId> {
        // Flows never take the director's own traffic.
        if self.fwm_services > 0 && !paths.is_local(addr) {
            let mark = self.flow_mark(protocol, src, addr, port);
            if mark != 0 {
                if let Some(&s) = self.by_key.get(&ServiceKey::fwmark(mark, addr.is_ipv6())) {
                    return Some(s);
                }
            }
        }
        let get = |port| {
            self.by_key.get(&ServiceKey {
                protocol,
                addr,
                port,
            })
        };
        if let Some(&s) = get(port) {
            return Some(s);
        }
        if protocol == ipproto::TCP
            && self.port21_services > 0
            && (port == 20 || port >= UNPRIVILEGED_PORT_START)
        {
            if let Some(&s) = get(21) {
                return Some(s);
            }
        }
        if self.port0_services > 0 {
            return get(0).copied();
        }
        None
    }

    /// The protocol gates of §6: does this packet open a connection?
    fn new_conn_gate(&self, protocol: u8, l4: &L4) -> bool {
        match protocol {
            ipproto::TCP => {
                l4.tcp_flags & tcp_flags::RST == 0
                    && (l4.tcp_flags & tcp_flags::SYN != 0 || self.settings.sloppy_tcp != 0)
            }
            ipproto::SCTP => l4
                .sctp_chunk()
                .is_some_and(|c| sctp::may_create_entry(c, self.settings.sloppy_sctp != 0)),
            _ => true,
        }
    }

    /// §7.5 step 1, `cache_bypass`: a firewall-mark service without an
    /// available destination lets a packet to a non-local unicast address
    /// go on to that address, through a BYPASS entry (no destination, real
    /// address all-zero) that the flow's later packets follow. No "conns"
    /// statistic is counted.
    fn bypass(
        &mut self,
        now: u64,
        svc: SvcId,
        paths: &impl Paths,
        info: &PacketInfo,
    ) -> Option<ConnId> {
        if self.settings.cache_bypass == 0 || self.services[svc].key.mark().is_none() {
            return None;
        }
        let unicast = match info.daddr {
            IpAddr::V4(a) => !a.is_multicast() && !a.is_broadcast() && !a.is_unspecified(),
            IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified(),
        };
        if !unicast || paths.path(info.daddr).is_none_or(|p| p.local) {
            return None;
        }
        let mut flags = cf::BYPASS;
        if self.services[svc].opts.one_packet && info.protocol == ipproto::UDP {
            flags |= cf::ONE_PACKET;
        }
        let zero = match info.daddr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let c = ConnTable::new_conn(
            info.protocol,
            info.saddr,
            info.sport,
            info.daddr,
            info.dport,
            zero,
            0,
            flags,
            now,
        );
        Some(self.conns.insert(now, c))
    }

    /// What happens when no destination was found (§7.5): pass FTP data of
    /// an FTP service, otherwise ICMP port unreachable to the client.
    fn leave(
        &mut self,
        svc: SvcId,
        paths: &impl Paths,
        protocol: u8,
        dst: IpAddr,
        l4: &L4,
    ) -> Transmit {
        if self.services[svc].key.port == 21 && l4.dport != 21 {
            // Passed on to the host's stack (§7.5).
            return self.vip_without_service(paths, protocol, dst, l4);
        }
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::PortUnreachable,
            from: IcmpSource::PacketDestination,
        })
    }

    /// A packet to a virtual address that IPVS passes on to the host (a
    /// port without a service, FTP data it does not schedule, a client's
    /// port 20): on a kernel director the VIP is one of the host's own
    /// addresses, so its stack answers — a reset for TCP (RST itself
    /// excepted), port unreachable for UDP. When the VIP is also on one of
    /// the host's interfaces here, the host answers; otherwise lvsd, which
    /// owns the VIP on the wire, answers for it.
    fn vip_without_service(
        &self,
        paths: &impl Paths,
        protocol: u8,
        dst: IpAddr,
        l4: &L4,
    ) -> Transmit {
        if paths.path(dst).is_some_and(|p| p.local) {
            return Transmit::Pass;
        }
        match protocol {
            ipproto::TCP if l4.tcp_flags & tcp_flags::RST == 0 => Transmit::Reply(Reply::TcpReset),
            ipproto::UDP => Transmit::Reply(Reply::Icmp {
                error: IcmpError::PortUnreachable,
                from: IcmpSource::PacketDestination,
            }),
            _ => Transmit::Pass,
        }
    }

    /// A packet that matched no entry and no service, from a NAT real
    /// server's address (§5.2 steps 5–6, §18). With `nat_icmp_send`, one
    /// from a real server's address and port is answered with ICMP port
    /// unreachable and dropped, except TCP RST and SCTP ABORT. Otherwise the
    /// kernel passes it on untouched (IP forwarding); lvsd's guard keeps
    /// the host from forwarding real servers' packets, so the engine does
    /// it: TTL decremented, nothing rewritten.
    fn unmatched_out(
        &mut self,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        l4: &L4,
    ) -> Transmit {
        if self.nat_rs.is_empty() {
            return Transmit::Pass;
        }
        let exact = self.nat_rs.contains_key(&(protocol, src, l4.sport));
        // A port-0 destination (all-port service) answers from any port.
        if !exact && !self.nat_rs.contains_key(&(protocol, src, 0)) {
            return Transmit::Pass;
        }
        let spared = (protocol == ipproto::TCP && l4.tcp_flags & tcp_flags::RST != 0)
            || (protocol == ipproto::SCTP && l4.sctp_chunk() == Some(sctp::chunk::ABORT));
        if exact && self.settings.nat_icmp_send != 0 && !spared {
            return Transmit::Reply(Reply::Icmp {
                error: IcmpError::PortUnreachable,
                from: IcmpSource::Director,
            });
        }
        xmit::route::forward(pkt, paths, dst)
    }

    /// §7 steps 4–7 for a service without persistence.
    fn schedule_plain(&mut self, now: u64, svc: SvcId, info: &PacketInfo) -> Option<ConnId> {
        let s = &mut self.services[svc];
        // Only a port-0 service or the FTP fallback gets here with another
        // port; without persistence they make no entry (step 4). A
        // firewall-mark service takes every port.
        if info.dport != s.key.port && s.key.mark().is_none() {
            return None;
        }
        let mut ctx = SchedCtx {
            now_ms: now,
            rng: &mut self.rng,
            settings: &self.sched_settings,
        };
        let pos = s
            .scheduler
            .schedule(DestList::new(&s.dests, &self.dests), info, &mut ctx)?;
        let did = s.dests[pos];
        let d = &self.dests[did];
        let dport = if d.port != 0 { d.port } else { info.dport };
        Some(self.new_entry(now, svc, did, info, dport, None))
    }

    /// §8: scheduling through a persistence template.
    fn schedule_persistent(&mut self, now: u64, svc: SvcId, info: &PacketInfo) -> Option<ConnId> {
        let s = &self.services[svc];
        let opts = s.opts;
        let svc_port = s.key.port;
        let fwmark = s.key.mark().is_some();
        // §8.1: which template this packet belongs to.
        let (tvport, dport_from_dest) = if info.dport == svc_port && svc_port != 21 {
            (info.dport, true)
        } else {
            (0, false)
        };
        // (A firewall-mark service's port is 0: a packet to port 0 takes
        // the first row of §8.1, as in the kernel.)
        let tkey = if fwmark && !dport_from_dest {
            // One template per (client network, mark), whatever the
            // protocol, address and port: IPPROTO_IP and the mark.
            InKey {
                protocol: 0,
                caddr: opts.masked(info.saddr),
                cport: 0,
                vaddr: s.key.addr,
                vport: 0,
            }
        } else {
            InKey {
                protocol: info.protocol,
                caddr: opts.masked(info.saddr),
                cport: 0,
                vaddr: info.daddr,
                vport: tvport,
            }
        };
        let mut tmpl = self.conns.lookup_template(&tkey);
        if let Some(t) = tmpl {
            if !self.template_valid(t) {
                // Neutralised: no lookup finds it again; it expires on its
                // own timer, still counted in its old destination.
                self.conns.unhash_template(t);
                tmpl = None;
            }
        }
        let (tid, did) = match tmpl {
            Some(t) => (t, self.conns.get(t).dest()?),
            None => {
                let s = &mut self.services[svc];
                let mut ctx = SchedCtx {
                    now_ms: now,
                    rng: &mut self.rng,
                    settings: &self.sched_settings,
                };
                let pos =
                    s.scheduler
                        .schedule(DestList::new(&s.dests, &self.dests), info, &mut ctx)?;
                let did = s.dests[pos];
                let d = &mut self.dests[did];
                let tdport = if dport_from_dest { d.port } else { 0 };
                let flags = cf::TEMPLATE | d.conn_flags();
                let mut t = ConnTable::new_conn(
                    tkey.protocol,
                    tkey.caddr,
                    0,
                    tkey.vaddr,
                    tkey.vport,
                    d.addr,
                    tdport,
                    flags,
                    now,
                );
                let timeout = u64::from(opts.persistent.unwrap_or(0)) * 1000;
                t.timeout_ms = crate::conn::clamp_timeout(timeout);
                t.expires = now + timeout;
                t.set_dest(Some(did));
                d.persist_conns += 1;
                d.refs += 1;
                d.check_overload_on_bind();
                (self.conns.insert(now, t), did)
            }
        };
        // §8.2 step 5: the real port.
        let d = &self.dests[did];
        let dport = if info.dport == svc_port && d.port != 0 {
            d.port
        } else {
            info.dport
        };
        let id = self.new_entry(now, svc, did, info, dport, Some(tid));
        // Step 6: the template's timer restarts with its own timeout.
        let t = self.conns.get_mut(tid);
        t.n_control += 1;
        let timeout = u64::from(t.timeout_ms);
        self.conns.restart_timer(tid, now, timeout);
        Some(id)
    }

    /// §8.2 step 2: whether a template may still be used.
    fn template_valid(&self, t: ConnId) -> bool {
        let Some(did) = self.conns.get(t).dest() else {
            return false;
        };
        let Some(d) = self.dests.get(did) else {
            return false;
        };
        d.available() && !(self.settings.expire_quiescent_template != 0 && d.weight == 0)
    }

    /// Creates and binds a connection entry to destination `did` (§7 step
    /// 6–7, §12), controlled by `control` if given.
    fn new_entry(
        &mut self,
        now: u64,
        svc: SvcId,
        did: DestId,
        info: &PacketInfo,
        dport: u16,
        control: Option<ConnId>,
    ) -> ConnId {
        let one_packet = self.services[svc].opts.one_packet && info.protocol == ipproto::UDP;
        let d = &mut self.dests[did];
        let mut flags = d.conn_flags();
        if one_packet {
            flags |= cf::ONE_PACKET;
        }
        let mut c = ConnTable::new_conn(
            info.protocol,
            info.saddr,
            info.sport,
            info.daddr,
            info.dport,
            d.addr,
            dport,
            flags,
            now,
        );
        c.set_dest(Some(did));
        c.set_control(control);
        // Bind: every new entry starts inactive (§2, §12).
        d.inact_conns += 1;
        d.refs += 1;
        d.check_overload_on_bind();
        d.stats.conns += 1;
        self.services[svc].stats.conns += 1;
        self.total.conns += 1;
        self.counters.conns += 1;
        self.conns.insert(now, c)
    }

    /// The reuse check of §14: false if a new-connection packet must not
    /// reuse entry `id` (it will be expired and the packet rescheduled).
    fn keep_on_reuse(&self, id: ConnId, protocol: u8, l4: &L4) -> bool {
        // Only new-connection packets: TCP SYN, SCTP with INIT first (§5.1 step 5).
        let new_conn = if protocol == ipproto::TCP {
            l4.tcp_flags & tcp_flags::SYN != 0
        } else {
            protocol == ipproto::SCTP && l4.sctp_chunk() == Some(sctp::chunk::INIT)
        };
        if !new_conn {
            return true;
        }
        let c = self.conns.get(id);
        if self.settings.expire_nodest_conn != 0 {
            if let Some(d) = c.dest() {
                if self.dests[d].weight == 0 {
                    return false;
                }
            }
        }
        let mode = self.settings.conn_reuse_mode;
        // A controlled entry never expects a new connection.
        if mode == 0 || c.control().is_some() {
            return true;
        }
        let expected = if protocol == ipproto::SCTP {
            SctpState::from_u8(c.state) == Some(SctpState::Closed)
        } else {
            let st = TcpState::from_u8(c.state);
            matches!(st, Some(TcpState::TimeWait) | Some(TcpState::Close))
                || (mode & 2 != 0 && st == Some(TcpState::FinWait) && c.flags & cf::NOOUTPUT != 0)
        };
        !expected
    }

    /// "Expire now" (§9): the entry goes at once. It controls nothing (only
    /// templates control, and they are never found by packet lookups), and
    /// its timeout is kept, so its template stays.
    fn expire_now(&mut self, id: ConnId) {
        self.delete(id, false);
    }

    /// Deletes an entry on one of the forced paths (drop_entry, the
    /// expire_nodest_conn flush): its timeout becomes 0, so a controller
    /// left controlling nothing goes too unless it is an assured template.
    fn delete_forced(&mut self, id: ConnId) {
        self.delete(id, true);
    }

    fn delete(&mut self, id: ConnId, forced: bool) {
        if let Some(mut c) = self.conns.remove(id) {
            if forced {
                c.timeout_ms = 0;
            }
            self.release(&c);
            self.counters.expired += 1;
        }
    }

    /// What follows the removal of an entry: detach it from its controller
    /// (§8.3) and unbind it from its destination (§12).
    fn release(&mut self, c: &Conn) {
        self.offload_gone(c);
        if let Some(t) = c.control() {
            if let Some(ctl) = self.conns.get_mut_checked(t) {
                ctl.n_control = ctl.n_control.saturating_sub(1);
                let orphan =
                    ctl.n_control == 0 && (!ctl.is_template() || ctl.state & TEMPLATE_ASSURED == 0);
                if c.timeout_ms == 0 && orphan {
                    self.delete_forced(t);
                }
            }
        }
        unbind(&mut self.dests, c);
    }

    #[inline(always)]
    fn forward_in(
        &mut self,
        now: u64,
        id: ConnId,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        l4: &L4,
        len: u64,
    ) -> Transmit {
        let dir = if self.conns.get(id).flags & cf::NOOUTPUT != 0 {
            Direction::InputOnly
        } else {
            Direction::Input
        };
        self.account(id, true, len);
        self.transition(now, id, dir, l4);
        let c = self.conns.get_mut(id);
        let (flags, control) = (c.flags, c.control());
        // §5.1 step 8: a one-packet entry counts on its template.
        match control {
            Some(t) if flags & cf::ONE_PACKET != 0 => {
                if let Some(t) = self.conns.get_mut_checked(t) {
                    t.in_pkts = t.in_pkts.wrapping_add(1);
                }
            }
            _ => c.in_pkts = c.in_pkts.wrapping_add(1),
        }
        let t = self.transmit(now, id, pkt, paths, None);
        self.offload_after_packet(id, false);
        if self.sync_master.is_some() {
            // §6.1: evaluated after the packet went out.
            let c = self.conns.get(id);
            let pkts = if flags & cf::ONE_PACKET != 0 {
                u64::from(self.sync_timing().threshold)
            } else {
                u64::from(c.in_pkts)
            };
            self.sync_conn(now, id, pkts);
        }
        t
    }

    /// Sends a client-side packet of entry `id` by the entry's forwarding
    /// method — the one place that says which method an entry's packets
    /// leave by. `icmp`: the packet is a related ICMP error quoting this
    /// connection (NAT translates the quote too, §9.2).
    #[inline(always)]
    fn transmit(
        &mut self,
        now: u64,
        id: ConnId,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        icmp: Option<&xmit::icmp::Related>,
    ) -> Transmit {
        let c = self.conns.get(id);
        let (flags, daddr, dport, dest) = (c.flags, c.daddr, c.dport, c.dest());
        // The tunnel settings only for tunnel entries (a slab read saved
        // on the NAT and DR paths).
        let tunnel = if flags & cf::FWD_MASK == Forward::Tunnel as u32 {
            dest.map(|d| self.dests[d].tunnel)
        } else {
            None
        };
        let kind = tunnel.map(|t| t.kind).unwrap_or_default();
        match Method::of_flags(flags, kind) {
            Some(Method::Masq) => match (daddr, icmp) {
                (IpAddr::V4(rip), None) => xmit::masq::xmit_in(pkt, paths, rip, dport),
                (IpAddr::V4(_), Some(r)) => xmit::icmp::xmit_nat_in(pkt, paths, r, daddr, dport),
                (IpAddr::V6(rip), None) if xmit::is_v6(pkt) => {
                    xmit::v6::masq_in(pkt, paths, rip, dport)
                }
                (IpAddr::V6(_), _) => Transmit::Drop(DropReason::UnsupportedForward),
            },
            Some(Method::Route) => xmit::route::xmit(pkt, paths, daddr),
            Some(Method::Tunnel(_)) => match tunnel {
                Some(t) => xmit::tunnel::xmit(
                    now,
                    pkt,
                    paths,
                    daddr,
                    &t,
                    self.settings.pmtu_disc != 0,
                    &mut self.tunnel,
                ),
                // §7: a tunnel entry without its real server is dropped.
                None => Transmit::Drop(DropReason::UnsupportedForward),
            },
            // §8 BYPASS: routed to the packet's own destination, unchanged
            // but for the TTL.
            None if flags & cf::FWD_MASK == cf::BYPASS => {
                xmit::route::xmit(pkt, paths, self.conns.get(id).vaddr)
            }
            // LOCALNODE: the host's own stack takes it unmodified (§8).
            Some(Method::Forwarded) | None => Transmit::Pass,
        }
    }

    fn forward_out(
        &mut self,
        now: u64,
        id: ConnId,
        pkt: &mut PacketBuf,
        paths: &impl Paths,
        l4: &L4,
        len: u64,
    ) -> Transmit {
        self.account(id, false, len);
        self.conns.get_mut(id).flags &= !cf::NOOUTPUT;
        self.transition(now, id, Direction::Output, l4);
        let c = self.conns.get(id);
        if c.flags & cf::FWD_MASK != Forward::Masq as u32 {
            // Only NAT rewrites replies; for the other methods the kernel
            // just accounts and lets the host forward them.
            return Transmit::Pass;
        }
        let (vaddr, vport, caddr) = (c.vaddr, c.vport, c.caddr);
        let reroute = self.settings.snat_reroute != 0;
        let t = match (vaddr, caddr) {
            (IpAddr::V4(v4), _) => xmit::masq::xmit_out(pkt, paths, v4, vport, caddr, reroute),
            (IpAddr::V6(v6), IpAddr::V6(c6)) if xmit::is_v6(pkt) => {
                xmit::v6::masq_out(pkt, paths, v6, vport, c6, reroute)
            }
            _ => Transmit::Drop(DropReason::UnsupportedForward),
        };
        self.offload_after_packet(id, true);
        t
    }

    #[inline(always)]
    fn account(&mut self, id: ConnId, inbound: bool, len: u64) {
        self.account_bulk(id, inbound, 1, len);
    }

    /// `pkts` packets of `bytes` bytes in all for entry `id`'s destination,
    /// service and the totals.
    #[inline(always)]
    fn account_bulk(&mut self, id: ConnId, inbound: bool, pkts: u64, bytes: u64) {
        let Some(did) = self.conns.get(id).dest() else {
            return;
        };
        let d = &mut self.dests[did];
        // Only destinations still linked in their service count (§19.1).
        if !d.available() {
            return;
        }
        let svc = d.svc;
        let bump = |c: &mut Counters| c.add_many(inbound, pkts, bytes);
        bump(&mut d.stats);
        if let Some(s) = self.services.get_mut(svc) {
            bump(&mut s.stats);
        }
        bump(&mut self.total);
    }

    /// Runs the protocol state machine and restarts the entry's timer.
    fn transition(&mut self, now: u64, id: ConnId, dir: Direction, l4: &L4) {
        let settings = &self.settings;
        let c = self.conns.get_mut(id);
        let mut assure = false;
        let timeout_s = match c.protocol {
            ipproto::TCP => {
                let cur = TcpState::from_u8(c.state).unwrap_or(TcpState::None);
                let new = tcp::next_state(
                    self.defense.secure_on(),
                    dir,
                    cur,
                    TcpEvent::from_flags(l4.tcp_flags),
                );
                if new != cur {
                    c.state = new as u8;
                    if let Some(did) = c.dest() {
                        move_counters(&mut self.dests[did], &mut c.flags, new.is_active());
                    }
                    assure = new == TcpState::Established;
                }
                settings.tcp_timeouts[new as usize]
            }
            ipproto::SCTP => {
                let cur = SctpState::from_u8(c.state).unwrap_or(SctpState::None);
                // A packet without a chunk changes nothing (its timer restarts).
                let new = l4
                    .sctp_event
                    .map_or(cur, |ev| sctp::next_state(dir, cur, ev));
                if new != cur {
                    c.state = new as u8;
                    if let Some(did) = c.dest() {
                        move_counters(&mut self.dests[did], &mut c.flags, new.is_active());
                    }
                    assure = new == SctpState::Established;
                }
                if l4.sctp_event.is_none() {
                    c.timeout_ms / 1000
                } else {
                    settings.sctp_timeouts[new as usize]
                }
            }
            _ => {
                assure = dir == Direction::Output;
                settings.udp_timeout
            }
        };
        let control = c.control();
        self.conns
            .restart_timer(id, now, u64::from(timeout_s) * 1000);
        if assure {
            if let Some(t) = control.and_then(|t| self.conns.get_mut_checked(t)) {
                if t.is_template() {
                    t.state |= TEMPLATE_ASSURED;
                }
            }
        }
    }
}

/// Moves an entry between its destination's active and inactive counters
/// when its state changes between an active and an inactive one (§12).
fn move_counters(d: &mut Dest, flags: &mut u32, active: bool) {
    let inactive = *flags & cf::INACTIVE != 0;
    if inactive && active {
        d.inact_conns = d.inact_conns.saturating_sub(1);
        d.active_conns += 1;
        *flags &= !cf::INACTIVE;
    } else if !inactive && !active {
        d.active_conns = d.active_conns.saturating_sub(1);
        d.inact_conns += 1;
        *flags |= cf::INACTIVE;
    }
}

/// Identities of destinations that were deleted and freed. The kernel keeps
/// a deleted destination in its trash while anything references it —
/// lblc/lblcr entries included — and revives the same object when it is
/// added again. Our schedulers reference destinations by uid, so a re-added
/// destination gets its old uid back and those entries become valid again.
#[derive(Default)]
struct Trash {
    uids: HashMap<(ServiceKey, IpAddr, u16), u64>,
}

impl Trash {
    /// Bound on remembered identities (oldest forgotten first is not
    /// tracked; past the bound the map is simply cleared).
    const MAX: usize = 1 << 16;

    fn remember(&mut self, d: &Dest) {
        if self.uids.len() >= Self::MAX {
            self.uids.clear();
        }
        self.uids.insert((d.svc_key, d.addr, d.port), d.uid);
    }

    fn take(&mut self, key: ServiceKey, addr: IpAddr, port: u16) -> Option<u64> {
        self.uids.remove(&(key, addr, port))
    }
}

fn free_dest(dests: &mut Slab<Dest>, trash: &mut Trash, did: DestId) {
    if let Some(d) = dests.remove(did) {
        trash.remember(&d);
    }
}

/// Releases an entry's hold on its destination (§12).
fn unbind(dests: &mut Slab<Dest>, c: &Conn) {
    let Some(did) = c.dest() else { return };
    let Some(d) = dests.get_mut(did) else { return };
    if c.flags & cf::TEMPLATE != 0 {
        d.persist_conns = d.persist_conns.saturating_sub(1);
    } else if c.flags & cf::INACTIVE != 0 {
        d.inact_conns = d.inact_conns.saturating_sub(1);
    } else {
        d.active_conns = d.active_conns.saturating_sub(1);
    }
    d.check_overload_on_unbind();
    d.refs = d.refs.saturating_sub(1);
}

/// The host's IPv4 input checks (the kernel's `ip_rcv` and martian rules,
/// with its defaults: no source routing, no local-network routing of
/// 127/8): the reason to drop, if any.
#[inline(always)]
fn input_check(ip: &Ipv4Packet<&[u8]>) -> Option<DropReason> {
    let h = ip.header();
    if !crate::wire::checksum::header_ok(h) {
        return Some(DropReason::BadChecksum);
    }
    // 0/8, 127/8 and 224/4 and above as source (multicast, class E, the
    // limited broadcast); 0/8 and 127/8 as destination.
    let (s, d) = (h[12], h[16]);
    if s == 0 || s == 127 || s >= 224 || d == 0 || d == 127 {
        return Some(DropReason::Martian);
    }
    if h.len() > 20 {
        return options_check(&h[20..]);
    }
    None
}

/// IP options: each must fit the header; source routes are refused.
#[cold]
fn options_check(mut o: &[u8]) -> Option<DropReason> {
    while let Some(&kind) = o.first() {
        match kind {
            0 => return None,
            1 => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1)?);
                if len < 2 || len > o.len() {
                    return Some(DropReason::BadOptions);
                }
                // LSRR, SSRR.
                if kind == 0x83 || kind == 0x89 {
                    return Some(DropReason::SourceRoute);
                }
                o = &o[len..];
            }
        }
    }
    None
}

/// The lookups for an ICMP error quoting a packet from `src:sport` to
/// `dst:dport` (§9.2, §9.3): as a packet the director sent to the client
/// (IN), and as a client's packet the real server got (OUT).
fn related_keys(protocol: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> (InKey, OutKey) {
    let ik = InKey {
        protocol,
        caddr: dst,
        cport: dport,
        vaddr: src,
        vport: sport,
    };
    let ok = OutKey {
        protocol,
        daddr: dst,
        dport,
        caddr: src,
        cport: sport,
    };
    (ik, ok)
}

/// No usable transport header: a TCP/UDP/SCTP header cut short (IPVS
/// ignores a TCP header under 20 bytes; the host drops it) is counted;
/// other protocols are the host's.
#[cold]
fn no_transport(protocol: u8) -> Transmit {
    if matches!(protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP) {
        return Transmit::Drop(DropReason::Malformed);
    }
    Transmit::Pass
}

#[inline(always)]
fn parse_l4(protocol: u8, l4: &[u8]) -> Option<L4> {
    let ports = |l4: &[u8]| {
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    };
    match protocol {
        ipproto::TCP if l4.len() >= 20 => {
            let (sport, dport) = ports(l4);
            Some(L4 {
                sport,
                dport,
                tcp_flags: l4[13],
                sctp_event: None,
            })
        }
        ipproto::UDP if l4.len() >= 8 => {
            let (sport, dport) = ports(l4);
            Some(L4 {
                sport,
                dport,
                tcp_flags: 0,
                sctp_event: None,
            })
        }
        ipproto::SCTP if l4.len() >= sctp::COMMON_HEADER_LEN => {
            let (sport, dport) = ports(l4);
            Some(L4 {
                sport,
                dport,
                tcp_flags: sctp::first_chunk_type(l4).unwrap_or(0),
                sctp_event: sctp::event(l4),
            })
        }
        _ => None,
    }
}
