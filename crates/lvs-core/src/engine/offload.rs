//! The engine's side of a fast path (lvsd's XDP program): which
//! connections the caller may carry without the engine, and what the fast
//! path saw, folded back into the engine's timers and statistics.
//!
//! The engine stays the judge of every state change: a connection is
//! offered (`Offload::Install`) only once nothing but its data is left to
//! see — a NAT connection whose reply came back, TCP in ESTABLISHED — and
//! it has shown `set_offload_after` client packets (short connections
//! are not worth a flow), and
//! is taken back (`Offload::Remove`) as soon as it leaves that state (a
//! FIN or RST, which the fast path never carries, comes through the
//! engine), or the entry goes. The caller reports the fast path's packets
//! (`offload_seen`); an entry whose timer runs out while offloaded gets one
//! grace period for that report before it expires, so an entry the fast
//! path still sees traffic for is not expired.
//!
//! Not offered: IPv6 and tunnels (the programs know NAT and direct routing
//! of IPv4 only), templates and one-packet entries, and every connection
//! while a sync master runs (its sends follow each packet's count).

use super::*;
use std::collections::VecDeque;

/// How long an offloaded entry whose timer ran out waits for the fast
/// path's report before it expires (more than the report period).
pub const OFFLOAD_GRACE_MS: u64 = 3_000;

/// Client packets a connection shows the engine before it is offered, by
/// default (`set_offload_after`): installing and removing a flow costs the
/// caller more than the few data packets of a short connection (an HTTP
/// request per connection) would save; a long one is offered after these.
pub const OFFLOAD_AFTER_PKTS: u64 = 8;

use crate::conn::offload as state;

/// A carried connection. NAT (`method` `Forward::Masq`): both of its
/// directions, the client's packets (caddr:cport → vaddr:vport, rewritten
/// to daddr:dport) and the real server's (daddr:dport → caddr:cport,
/// rewritten from vaddr:vport). Direct routing (`Forward::Route`): the
/// client's packets only, sent unchanged but for their TTL to the real
/// server daddr (its replies do not pass the director).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffloadFlow {
    pub method: Forward,
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

impl OffloadFlow {
    fn of(c: &Conn) -> OffloadFlow {
        OffloadFlow {
            method: if c.flags & cf::FWD_MASK == cf::MASQ {
                Forward::Masq
            } else {
                Forward::Route
            },
            protocol: c.protocol,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.daddr,
            dport: c.dport,
        }
    }

    fn in_key(&self) -> InKey {
        InKey {
            protocol: self.protocol,
            caddr: self.caddr,
            cport: self.cport,
            vaddr: self.vaddr,
            vport: self.vport,
        }
    }
}

/// What the engine asks of the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Carry this connection's packets (both directions).
    Install(OffloadFlow),
    /// Stop carrying it: its packets are the engine's again.
    Remove(OffloadFlow),
    /// Its timer ran out: report what was carried of it since the last
    /// report now (`offload_seen`, also when nothing was), so that it
    /// expires on time or lives on from its last packet. Without the
    /// report it expires `OFFLOAD_GRACE_MS` later.
    Report(OffloadFlow),
}

/// What the fast path carried of one connection since its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastPathSeen {
    /// Client → server packets and bytes (IP length).
    pub in_pkts: u64,
    pub in_bytes: u64,
    /// Server → client.
    pub out_pkts: u64,
    pub out_bytes: u64,
    /// When the last of them passed, on the engine's clock (ms); 0: none.
    pub last_ms: u64,
}

impl Engine {
    /// Turns offering connections to a fast path on or off. Off: every
    /// carried connection is taken back (`Offload::Remove`).
    pub fn set_offload(&mut self, on: bool) {
        self.offload_on = on;
        if !on {
            self.take_back_where(|_| true);
        }
    }

    /// Client packets a connection shows the engine before it is offered
    /// (at least 1; `OFFLOAD_AFTER_PKTS` until set).
    pub fn set_offload_after(&mut self, pkts: u64) {
        self.offload_after = pkts.max(1);
    }

    /// Takes back every carried entry that `which` picks.
    pub(crate) fn take_back_where(&mut self, which: impl Fn(&Conn) -> bool) {
        let carried: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.offload() != state::NONE && which(c))
            .map(|(id, _)| id)
            .collect();
        for id in carried {
            self.take_back(id);
        }
    }

    /// The caller could not take `flow` (no route or neighbour for it, a
    /// clash with another carried flow): its packets keep coming to the
    /// engine, which may offer it again later.
    pub fn offload_refused(&mut self, flow: &OffloadFlow) {
        if let Some(id) = self.carried_id(flow) {
            self.conns.get_mut(id).set_offload(state::NONE);
        }
    }

    /// The entry `flow` names, if it is the one carried (not a newer entry
    /// with the same client side).
    fn carried_id(&self, flow: &OffloadFlow) -> Option<ConnId> {
        let id = self.conns.lookup_in(&flow.in_key())?;
        let c = self.conns.get(id);
        (c.offload() != state::NONE && OffloadFlow::of(c) == *flow).then_some(id)
    }

    /// Whether NAT replies are routed from their VIP (`snat_reroute` on),
    /// as a fast path carrying them must route them too.
    pub fn snat_reroute(&self) -> bool {
        self.settings.snat_reroute != 0
    }

    /// The next request for the fast path, oldest first.
    pub fn pop_offload(&mut self) -> Option<Offload> {
        self.offload_queue.pop_front()
    }

    /// Folds what the fast path carried of `flow` into the entry: its
    /// packets count in the statistics, and the timer restarts from the
    /// last of them as it would have for each packet (the state's
    /// timeout; ESTABLISHED or UDP do not change on data). A flow that is
    /// no longer offloaded only counts what it reports; one that is gone,
    /// nothing.
    pub fn offload_seen(&mut self, flow: &OffloadFlow, seen: &FastPathSeen) {
        // Only the entry that was carried: a newer one with the same client
        // side (after this one expired) gets nothing of it.
        let Some(id) = self.conns.lookup_in(&flow.in_key()) else {
            return;
        };
        if OffloadFlow::of(self.conns.get(id)) != *flow {
            return;
        }
        if seen.in_pkts > 0 {
            self.account_bulk(id, true, seen.in_pkts, seen.in_bytes);
            let c = self.conns.get_mut(id);
            c.in_pkts = c.in_pkts.wrapping_add(seen.in_pkts as u32);
        }
        if seen.out_pkts > 0 {
            self.account_bulk(id, false, seen.out_pkts, seen.out_bytes);
        }
        let c = self.conns.get_mut(id);
        let graced = c.offload() == state::GRACE;
        if c.offload() == state::NONE {
            return;
        }
        if seen.last_ms == 0 {
            if graced {
                // Nothing carried since its timer ran out (the grace began
                // then): it expires now, as it would have without a fast path.
                let ran_out = c.expires.saturating_sub(OFFLOAD_GRACE_MS);
                self.conns.set_expiry(id, ran_out);
            }
            return;
        }
        c.set_offload(state::CARRIED);
        let timeout = u64::from(c.timeout_ms);
        // In the grace period the expiry is the grace's end, not the
        // timer's: the last packet decides.
        if graced || seen.last_ms.saturating_add(timeout) > c.expires {
            self.conns.restart_timer(id, seen.last_ms, timeout);
        }
    }

    /// Entry `id` went into its grace period: the fast path is asked for
    /// its report.
    pub(crate) fn offload_report_due(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut_checked(id) {
            if c.offload() == state::GRACE {
                let f = OffloadFlow::of(c);
                self.offload_queue.push_back(Offload::Report(f));
            }
        }
    }

    /// After a packet of entry `id` went through the engine (`reply`: one
    /// of the real server's): offers the connection when nothing but data
    /// is left to see — TCP in ESTABLISHED, UDP at a reply (the first one
    /// assures a template) — after `offload_after` client packets, and
    /// takes it back when it left that state.
    pub(crate) fn offload_after_packet(&mut self, id: ConnId, reply: bool) {
        if !self.offload_on {
            return;
        }
        let Some(c) = self.conns.get_mut_checked(id) else {
            return;
        };
        // NAT, or direct routing (whose entries expect no output).
        let method = c.flags & (cf::FWD_MASK | cf::TEMPLATE | cf::ONE_PACKET | cf::NOOUTPUT);
        let route = method == Forward::Route as u32 | cf::NOOUTPUT;
        let eligible = (method == cf::MASQ || route)
            && c.caddr.is_ipv4()
            && c.daddr.is_ipv4()
            && match c.protocol {
                ipproto::TCP => c.state == TcpState::Established as u8,
                ipproto::UDP => true,
                _ => false,
            }
            && self.sync_master.is_none()
            && u64::from(c.in_pkts) >= self.offload_after;
        // UDP by NAT waits for a reply (the first one assures a template);
        // direct routing never sees one.
        let ready = reply || c.protocol != ipproto::UDP || route;
        match (c.offload(), eligible) {
            (state::NONE, true) if ready => {
                c.set_offload(state::CARRIED);
                let f = OffloadFlow::of(c);
                self.offload_queue.push_back(Offload::Install(f));
            }
            (state::CARRIED | state::GRACE, false) => self.take_back(id),
            (state::GRACE, true) => c.set_offload(state::CARRIED),
            _ => {}
        }
    }

    /// The fast path stops carrying entry `id`.
    fn take_back(&mut self, id: ConnId) {
        let c = self.conns.get_mut(id);
        c.set_offload(state::NONE);
        let f = OffloadFlow::of(c);
        self.offload_queue.push_back(Offload::Remove(f));
    }

    /// An entry left the table: a fast path carrying it must stop.
    pub(crate) fn offload_gone(&mut self, c: &Conn) {
        if c.offload() != state::NONE {
            self.offload_queue
                .push_back(Offload::Remove(OffloadFlow::of(c)));
        }
    }
}

/// For `VecDeque` in the engine's fields.
pub(crate) type OffloadQueue = VecDeque<Offload>;
