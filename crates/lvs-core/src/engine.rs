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
use crate::nat::{self, Side};
use crate::proto::tcp::{self, TcpEvent, TcpState};
use crate::proto::{udp, Direction};
use crate::rng::Rng;
use crate::sched::{self, DestList, PacketInfo, SchedCtx};
use crate::service::{
    Dest, DestId, Forward, Service, ServiceKey, SvcId, DEST_F_AVAILABLE, DEST_F_OVERLOAD,
};
use crate::slab::Slab;
use crate::stats::{Counters, Estimator, StatsView, EST_TICKS, EST_TICK_MS};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{ipproto, tcp_flags};
use std::collections::HashMap;
use std::net::IpAddr;

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
    #[error("not supported yet: {0}")]
    NotSupported(&'static str),
}

/// What to do with a packet after `Engine::process_ipv4`.
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
}

/// Why a packet was dropped; each reason has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The entry's destination was deleted and `expire_nodest_conn` is 0.
    DestDeleted = 0,
    /// The forwarding method of the entry is not implemented yet.
    UnsupportedForward = 1,
    /// TTL would reach 0 (the kernel also sends ICMP time exceeded; not yet here).
    TtlExceeded = 2,
}

/// Number of `DropReason` values.
pub const DROP_REASONS: usize = 3;

/// Engine-wide counters.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    pub drops: [u64; DROP_REASONS],
    /// New-connection packets for which no destination was available.
    pub unreachable: u64,
    /// Connections created.
    pub conns: u64,
    /// Entries expired.
    pub expired: u64,
}

/// The run-time knobs the skeleton honours (sysctls.md); the full sysctl
/// table comes later.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `conn_reuse_mode` (default 1).
    pub conn_reuse_mode: i32,
    /// `expire_nodest_conn` (default 0).
    pub expire_nodest_conn: i32,
    /// `sloppy_tcp` (default 0).
    pub sloppy_tcp: i32,
    /// Whether the `secure_tcp` state table is in effect.
    pub secure_tcp: bool,
    /// TCP timeouts per state, seconds.
    pub tcp_timeouts: [u32; tcp::STATE_COUNT],
    /// UDP timeout, seconds.
    pub udp_timeout: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            conn_reuse_mode: 1,
            expire_nodest_conn: 0,
            sloppy_tcp: 0,
            secure_tcp: false,
            tcp_timeouts: tcp::DEFAULT_TIMEOUTS,
            udp_timeout: udp::DEFAULT_TIMEOUT,
        }
    }
}

/// A destination as the control plane defines it (`ipvsadm -a/-e`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
}

/// The connection hash table size shown by listings (kernel default 2^12).
pub const CONN_TAB_SIZE: u32 = 4096;

/// The IPVS engine.
pub struct Engine {
    services: Slab<Service>,
    by_key: HashMap<ServiceKey, SvcId>,
    dests: Slab<Dest>,
    conns: ConnTable,
    pub settings: Settings,
    /// Knobs the schedulers read (lblc/lblcr expiration).
    pub sched_settings: sched::SchedSettings,
    pub counters: EngineCounters,
    rng: Rng,
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
}

/// Parsed L4 facts of a packet.
#[derive(Clone, Copy)]
struct L4 {
    sport: u16,
    dport: u16,
    tcp_flags: u8,
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
            by_key: HashMap::new(),
            dests: Slab::default(),
            conns: ConnTable::new(seed),
            settings: Settings::default(),
            sched_settings: sched::SchedSettings::default(),
            counters: EngineCounters::default(),
            rng: Rng::new(rng_seed),
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
        if self.by_key.contains_key(&key) {
            return Err(ControlError::ServiceExists);
        }
        let mut s = sched::by_name(scheduler).ok_or(ControlError::SchedulerNotFound)?;
        s.init(DestList::new(&[], &self.dests), sched_flags);
        if !self.est_running {
            self.est_running = true;
            self.total_est.slot = self.new_est_slot();
        }
        let est = Estimator::new(self.new_est_slot());
        let id = self.services.insert(Service {
            key,
            scheduler: s,
            sched_flags,
            dests: Vec::new(),
            stats: Counters::default(),
            est,
        });
        self.by_key.insert(key, id);
        self.sched_bound = true;
        Ok(())
    }

    /// `ipvsadm -E`: change the scheduler (re-initialised with the current list).
    pub fn edit_service(
        &mut self,
        key: ServiceKey,
        scheduler: &str,
        sched_flags: u32,
    ) -> Result<(), ControlError> {
        let id = *self.by_key.get(&key).ok_or(ControlError::NoSuchService)?;
        let svc = &mut self.services[id];
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
        if cfg.weight < 0 {
            return Err(ControlError::Invalid("negative weight"));
        }
        if cfg.l_threshold > cfg.u_threshold {
            return Err(ControlError::Invalid(
                "lower threshold above upper threshold",
            ));
        }
        if cfg.addr.is_ipv4() != key.addr.is_ipv4() && cfg.forward != Forward::Tunnel {
            return Err(ControlError::Invalid(
                "a different address family is allowed only for tunnelling",
            ));
        }
        if cfg.forward != Forward::Masq {
            return Err(ControlError::NotSupported(
                "only masquerading (NAT) is implemented",
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
        if self.find_dest(svc, cfg.addr, cfg.port).is_some() {
            return Err(ControlError::DestExists);
        }
        // A deleted destination that still has connections is revived, with
        // its counters, so those connections keep flowing (connections.md §15).
        let trashed = self
            .dests
            .iter()
            .find(|(_, d)| {
                !d.available() && d.svc_key == key && d.addr == cfg.addr && d.port == cfg.port
            })
            .map(|(id, _)| id);
        if let Some(id) = trashed {
            let d = &mut self.dests[id];
            d.flags |= DEST_F_AVAILABLE;
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
            let s = &mut self.services[svc];
            s.dests.insert(0, id);
            s.scheduler
                .add_dest(DestList::new(&s.dests, &self.dests), 0);
            return Ok(());
        }
        let id = self.dests.insert(Dest {
            addr: cfg.addr,
            port: cfg.port,
            forward: cfg.forward,
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
            stats: Counters::default(),
        });
        let est = Estimator::new(self.new_est_slot());
        let slot = id as usize;
        if self.dest_est.len() <= slot {
            self.dest_est.resize(slot + 1, Estimator::default());
        }
        self.dest_est[slot] = est;
        let s = &mut self.services[svc];
        s.dests.insert(0, id);
        s.scheduler
            .add_dest(DestList::new(&s.dests, &self.dests), 0);
        Ok(())
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
        let d = &mut self.dests[id];
        d.flags &= !DEST_F_AVAILABLE;
        if d.refs == 0 {
            free_dest(&mut self.dests, &mut self.trash, id);
        }
    }

    /// `ipvsadm --set TCP TCPFIN UDP` (0 leaves a value unchanged).
    pub fn set_timeouts(&mut self, tcp_secs: u32, tcpfin_secs: u32, udp_secs: u32) {
        if tcp_secs != 0 {
            self.settings.tcp_timeouts[TcpState::Established as usize] = tcp_secs;
        }
        if tcpfin_secs != 0 {
            self.settings.tcp_timeouts[TcpState::FinWait as usize] = tcpfin_secs;
        }
        if udp_secs != 0 {
            self.settings.udp_timeout = udp_secs;
        }
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

    /// Number of connection entries.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Makes room for `n` more connection entries (no allocation while they are created).
    pub fn reserve_connections(&mut self, n: usize) {
        self.conns.reserve(n);
    }

    /// Name of a connection's state as ipvsadm prints it.
    pub fn state_name(c: &Conn) -> &'static str {
        match c.protocol {
            ipproto::TCP => TcpState::from_u8(c.state).map_or("ERR!", TcpState::name),
            ipproto::UDP => udp::STATE_NAME,
            _ => "NONE",
        }
    }

    // ----- timers --------------------------------------------------------

    /// Expires every entry that is due at `now` (milliseconds). Call at least
    /// every `conn::TICK_MS`.
    pub fn handle_timeout(&mut self, now: u64) -> usize {
        let Engine {
            conns,
            dests,
            counters,
            trash,
            ..
        } = self;
        let n = conns.expire(now, |c| unbind(dests, trash, &c));
        counters.expired += n as u64;
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
        if self.est_running {
            self.run_estimator(now);
        }
        n
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

    /// Processes one IPv4 packet `pkt` (starting at the IP header) at time
    /// `now` (milliseconds). `csum_partial` tells that the L4 checksum field
    /// holds an offload pseudo-header sum. The packet is rewritten in place.
    pub fn process_ipv4(&mut self, now: u64, pkt: &mut [u8], csum_partial: bool) -> Verdict {
        let Ok(mut ip) = Ipv4Packet::new_checked(pkt) else {
            return Verdict::NotOurs;
        };
        let protocol = ip.protocol();
        // Fragments are not handled yet: leave them to the host (which drops
        // what is addressed to a VIP it does not have).
        if ip.frag_offset() != 0 || ip.more_frags() {
            return Verdict::NotOurs;
        }
        let Some(l4) = parse_l4(protocol, ip.payload()) else {
            return Verdict::NotOurs;
        };
        let len = ip.total_len() as u64;
        let src: IpAddr = ip.src().into();
        let dst: IpAddr = ip.dst().into();

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
            } else if let Some(d) = self.conns.get(id).dest {
                if !self.dests[d].available() {
                    if self.settings.expire_nodest_conn == 0 {
                        return self.drop(DropReason::DestDeleted);
                    }
                    self.expire_now(id);
                    found = None;
                }
            }
        }
        if let Some(id) = found {
            return self.forward_in(now, id, &mut ip, &l4, len, csum_partial);
        }

        let ok = OutKey {
            protocol,
            daddr: src,
            dport: l4.sport,
            caddr: dst,
            cport: l4.dport,
        };
        if let Some(id) = self.conns.lookup_out(&ok) {
            return self.forward_out(now, id, &mut ip, &l4, len, csum_partial);
        }

        // No entry: is it a new connection to a virtual service? (§4, §6, §7)
        let Some(&svc) = self.by_key.get(&ServiceKey {
            protocol,
            addr: dst,
            port: l4.dport,
        }) else {
            return Verdict::NotOurs;
        };
        if protocol == ipproto::TCP
            && (l4.tcp_flags & tcp_flags::RST != 0
                || (l4.tcp_flags & tcp_flags::SYN == 0 && self.settings.sloppy_tcp == 0))
        {
            return Verdict::NotOurs;
        }
        let info = PacketInfo {
            protocol,
            saddr: src,
            sport: l4.sport,
            daddr: dst,
            dport: l4.dport,
        };
        let s = &mut self.services[svc];
        let mut ctx = SchedCtx {
            now_ms: now,
            rng: &mut self.rng,
            settings: &self.sched_settings,
        };
        let Some(pos) = s
            .scheduler
            .schedule(DestList::new(&s.dests, &self.dests), &info, &mut ctx)
        else {
            self.counters.unreachable += 1;
            return Verdict::Unreachable;
        };
        let did = s.dests[pos];
        let d = &mut self.dests[did];
        let dport = if d.port != 0 { d.port } else { l4.dport };
        let mut flags = d.forward as u32 | cf::INACTIVE;
        if d.forward != Forward::Masq {
            flags |= cf::NOOUTPUT;
        }
        let mut c = ConnTable::new_conn(
            protocol, src, l4.sport, dst, l4.dport, d.addr, dport, flags, now,
        );
        c.dest = Some(did);
        // Bind: every new entry starts inactive (§2, §12).
        d.inact_conns += 1;
        d.refs += 1;
        d.check_overload_on_bind();
        d.stats.conns += 1;
        s.stats.conns += 1;
        self.total.conns += 1;
        self.counters.conns += 1;
        let id = self.conns.insert(now, c);
        self.forward_in(now, id, &mut ip, &l4, len, csum_partial)
    }

    fn drop(&mut self, r: DropReason) -> Verdict {
        self.counters.drops[r as usize] += 1;
        Verdict::Drop(r)
    }

    /// The reuse check of §14: false if a new-connection packet must not
    /// reuse entry `id` (it will be expired and the packet rescheduled).
    fn keep_on_reuse(&self, id: ConnId, protocol: u8, l4: &L4) -> bool {
        if protocol != ipproto::TCP || l4.tcp_flags & tcp_flags::SYN == 0 {
            return true;
        }
        let c = self.conns.get(id);
        if self.settings.expire_nodest_conn != 0 {
            if let Some(d) = c.dest {
                if self.dests[d].weight == 0 {
                    return false;
                }
            }
        }
        let mode = self.settings.conn_reuse_mode;
        if mode == 0 {
            return true;
        }
        let st = TcpState::from_u8(c.state);
        let expected = matches!(st, Some(TcpState::TimeWait) | Some(TcpState::Close))
            || (mode & 2 != 0 && st == Some(TcpState::FinWait) && c.flags & cf::NOOUTPUT != 0);
        !expected
    }

    /// "Expire now": with no controlled entries in this build, that is an
    /// immediate unlink and unbind.
    fn expire_now(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(id) {
            unbind(&mut self.dests, &mut self.trash, &c);
            self.counters.expired += 1;
        }
    }

    fn forward_in(
        &mut self,
        now: u64,
        id: ConnId,
        ip: &mut Ipv4Packet<&mut [u8]>,
        l4: &L4,
        len: u64,
        csum_partial: bool,
    ) -> Verdict {
        let dir = if self.conns.get(id).flags & cf::NOOUTPUT != 0 {
            Direction::InputOnly
        } else {
            Direction::Input
        };
        self.account(id, true, len);
        self.transition(now, id, dir, l4);
        let c = self.conns.get_mut(id);
        c.in_pkts += 1;
        if c.flags & cf::FWD_MASK != Forward::Masq as u32 {
            return self.drop(DropReason::UnsupportedForward);
        }
        let (daddr, dport) = (c.daddr, c.dport);
        let IpAddr::V4(d4) = daddr else {
            return self.drop(DropReason::UnsupportedForward);
        };
        // forwarding.md §3.3: the IN path decrements TTL towards a remote real server.
        self.masquerade(
            ip,
            Side::Destination,
            d4.octets(),
            dport,
            csum_partial,
            daddr,
        )
    }

    fn forward_out(
        &mut self,
        now: u64,
        id: ConnId,
        ip: &mut Ipv4Packet<&mut [u8]>,
        l4: &L4,
        len: u64,
        csum_partial: bool,
    ) -> Verdict {
        self.account(id, false, len);
        let c = self.conns.get_mut(id);
        c.flags &= !cf::NOOUTPUT;
        self.transition(now, id, Direction::Output, l4);
        let c = self.conns.get(id);
        let (vaddr, vport, caddr) = (c.vaddr, c.vport, c.caddr);
        let IpAddr::V4(v4) = vaddr else {
            return self.drop(DropReason::UnsupportedForward);
        };
        // The kernel forwards replies with the normal IP forwarding path,
        // which decrements TTL once.
        self.masquerade(ip, Side::Source, v4.octets(), vport, csum_partial, caddr)
    }

    /// Decrements TTL (dropping at 1) and rewrites `side` to `addr:port`.
    fn masquerade(
        &mut self,
        ip: &mut Ipv4Packet<&mut [u8]>,
        side: Side,
        addr: [u8; 4],
        port: u16,
        csum_partial: bool,
        to: IpAddr,
    ) -> Verdict {
        let ttl = ip.ttl();
        if ttl <= 1 {
            return self.drop(DropReason::TtlExceeded);
        }
        ip.set_ttl(ttl - 1);
        nat::rewrite_v4(ip, side, addr, port, csum_partial);
        Verdict::Forward { to }
    }

    fn account(&mut self, id: ConnId, inbound: bool, len: u64) {
        let Some(did) = self.conns.get(id).dest else {
            return;
        };
        let d = &mut self.dests[did];
        // Only destinations still linked in their service count (§19.1).
        if !d.available() {
            return;
        }
        let svc = d.svc;
        let bump = |c: &mut Counters| {
            if inbound {
                c.add_in(len);
            } else {
                c.add_out(len);
            }
        };
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
        let timeout_s = match c.protocol {
            ipproto::TCP => {
                let cur = TcpState::from_u8(c.state).unwrap_or(TcpState::None);
                let new = tcp::next_state(
                    settings.secure_tcp,
                    dir,
                    cur,
                    TcpEvent::from_flags(l4.tcp_flags),
                );
                if new != cur {
                    c.state = new as u8;
                    if let Some(did) = c.dest {
                        let d = &mut self.dests[did];
                        let inactive = c.flags & cf::INACTIVE != 0;
                        if inactive && new.is_active() {
                            d.inact_conns = d.inact_conns.saturating_sub(1);
                            d.active_conns += 1;
                            c.flags &= !cf::INACTIVE;
                        } else if !inactive && !new.is_active() {
                            d.active_conns = d.active_conns.saturating_sub(1);
                            d.inact_conns += 1;
                            c.flags |= cf::INACTIVE;
                        }
                    }
                }
                settings.tcp_timeouts[new as usize]
            }
            _ => settings.udp_timeout,
        };
        self.conns
            .restart_timer(id, now, u64::from(timeout_s) * 1000);
    }
}

/// Releases an entry's hold on its destination (§12).
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

fn unbind(dests: &mut Slab<Dest>, trash: &mut Trash, c: &Conn) {
    let Some(did) = c.dest else { return };
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
    if d.refs == 0 && !d.available() {
        free_dest(dests, trash, did);
    }
}

#[inline]
fn parse_l4(protocol: u8, l4: &[u8]) -> Option<L4> {
    match protocol {
        ipproto::TCP if l4.len() >= 20 => Some(L4 {
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            tcp_flags: l4[13],
        }),
        ipproto::UDP if l4.len() >= 8 => Some(L4 {
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            tcp_flags: 0,
        }),
        _ => None,
    }
}
