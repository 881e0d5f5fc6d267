//! The engine's side of connection sync (sync-protocol.md): a backup
//! applies received messages to its connection table (§5), a master
//! decides after each incoming packet whether a connection must be sent
//! (§6.1, §6.2) and queues its entry; the caller carries the messages.

use super::*;
use crate::sync::codec::{wire_flags as wf, Builder, Entry, Item, Message, MessageFault};
use crate::sync::{MasterConfig, Outgoing, SyncCounters, SyncTimeouts, FLUSH_AFTER_MS};

/// A template's timeout when the entry does not give one (§5.3).
const TEMPLATE_DEFAULT_SECS: u32 = 180;

impl Engine {
    /// Applies a received sync message as a backup listening for
    /// `syncid` (0: every sync ID). A message refused whole is counted
    /// and its fault returned; one that stopped part-way keeps the
    /// entries before the fault.
    pub fn apply_sync(&mut self, msg: &[u8], syncid: u8, now: u64) -> Result<(), MessageFault> {
        let m = match Message::parse(msg, syncid) {
            Ok(m) => m,
            Err(f) => {
                self.sync_counters.dropped[f as usize] += 1;
                return Err(f);
            }
        };
        self.sync_counters.received += 1;
        self.sync_counters.last_received_ms = Some(now);
        for item in m.entries() {
            match item {
                Item::Entry(e) => self.apply_sync_entry(&e, m.version, now),
                Item::Skipped => self.sync_counters.entries_skipped += 1,
                Item::Stop(f) => {
                    self.sync_counters.dropped[f as usize] += 1;
                    return Err(f);
                }
            }
        }
        Ok(())
    }

    /// §5.3 for one entry.
    fn apply_sync_entry(&mut self, e: &Entry<'_>, version: u8, now: u64) {
        let flags = if version == 1 {
            (e.flags & wf::BACKUP_MASK) | wf::SYNC
        } else {
            (e.flags | wf::SYNC) & !wf::HASHED
        };
        let template = flags & wf::TEMPLATE != 0;
        if !template {
            let states = match e.protocol {
                ipproto::TCP => tcp::STATE_COUNT,
                ipproto::UDP => 1,
                ipproto::SCTP => sctp::STATE_COUNT,
                _ => 0,
            };
            if usize::from(e.state) >= states {
                self.sync_counters.entries_skipped += 1;
                return;
            }
        }
        // No persistence engine (sip) here: an entry that needs one is
        // skipped, as on a kernel without the module.
        if e.pe_data.is_some() {
            self.sync_counters.entries_skipped += 1;
            return;
        }
        let key = InKey {
            protocol: e.protocol,
            caddr: e.caddr,
            cport: e.cport,
            vaddr: e.vaddr,
            vport: e.vport,
        };
        let mut found = if template {
            self.conns.lookup_template(&key)
        } else {
            self.conns.lookup_in(&key)
        };
        if let Some(id) = found.filter(|_| !template) {
            let c = self.conns.get(id);
            if c.dport != e.dport || c.daddr != e.daddr {
                if flags & cf::INACTIVE != 0 {
                    // The expiry notice of a connection already replaced.
                    self.sync_counters.entries_ignored += 1;
                    return;
                }
                self.delete_forced(id);
                found = None;
            }
        }
        let id = match found {
            Some(id) => {
                let c = self.conns.get_mut(id);
                if !template && (c.flags ^ flags) & cf::INACTIVE != 0 {
                    if let Some(did) = c.dest() {
                        move_counters(
                            &mut self.dests[did],
                            &mut c.flags,
                            flags & cf::INACTIVE == 0,
                        );
                    }
                }
                c.flags = (flags & wf::BACKUP_UPD_MASK) | (c.flags & !wf::BACKUP_UPD_MASK);
                let mut id = id;
                if c.dest().is_none() {
                    if let Some(did) = self.sync_dest(e, flags) {
                        // Binding may change the forwarding method, and
                        // with it the reply-side key: out of the indexes,
                        // bound, back in.
                        if let Some(mut c) = self.conns.remove(id) {
                            self.bind_synced(&mut c, did);
                            id = self.conns.insert(now, c);
                        }
                    }
                }
                self.sync_counters.entries_updated += 1;
                id
            }
            None => {
                let mut c = ConnTable::new_conn(
                    e.protocol, e.caddr, e.cport, e.vaddr, e.vport, e.daddr, e.dport, flags, now,
                );
                // Bound before it is indexed: the method decides its
                // reply-side key.
                if let Some(did) = self.sync_dest(e, flags) {
                    self.bind_synced(&mut c, did);
                }
                self.sync_counters.entries_created += 1;
                self.conns.insert(now, c)
            }
        };
        let threshold = self.sync_timing().threshold;
        let settings = &self.settings;
        let secs = if version == 1 && e.timeout != 0 {
            e.timeout.min(MAX_TIMEOUT_SECS)
        } else if template {
            TEMPLATE_DEFAULT_SECS
        } else {
            match e.protocol {
                ipproto::TCP => settings.tcp_timeouts[usize::from(e.state)],
                ipproto::UDP => settings.udp_timeout,
                ipproto::SCTP => settings.sctp_timeouts[usize::from(e.state)],
                _ => TEMPLATE_DEFAULT_SECS,
            }
        };
        let c = self.conns.get_mut(id);
        c.in_pkts = threshold;
        c.state = e.state as u8;
        c.set_old_state(c.state);
        let timeout_ms = u64::from(secs) * 1000;
        c.timeout_ms = crate::conn::clamp_timeout(timeout_ms);
        self.conns.restart_timer(id, now, timeout_ms);
    }

    /// The real server an entry names, on this director (§5.3 "Find the
    /// real server").
    fn sync_dest(&self, e: &Entry<'_>, flags: u32) -> Option<DestId> {
        let v6 = e.caddr.is_ipv6();
        let get = |k: ServiceKey| self.by_key.get(&k).copied();
        let by = |port| {
            get(ServiceKey {
                protocol: e.protocol,
                addr: e.vaddr,
                port,
            })
        };
        let svc = (e.fwmark != 0)
            .then(|| get(ServiceKey::fwmark(e.fwmark, v6)))
            .flatten()
            .or_else(|| by(e.vport))
            .or_else(|| {
                (e.protocol == ipproto::TCP
                    && self.port21_services > 0
                    && (e.vport == 20 || e.vport >= UNPRIVILEGED_PORT_START))
                    .then(|| by(21))
                    .flatten()
            })
            .or_else(|| by(0))?;
        let port = if e.fwmark != 0 && flags & cf::FWD_MASK != cf::MASQ {
            0
        } else {
            e.dport
        };
        let s = &self.services[svc];
        let find = |port: u16| {
            s.dests.iter().copied().find(|&did| {
                let d = &self.dests[did];
                d.addr == e.daddr && d.port == port
            })
        };
        find(port).or_else(|| find(port ^ e.dport))
    }

    /// Binds a synced entry to a real server of this director: its
    /// forwarding method and NOOUTPUT come from the server's own
    /// configuration; a connection keeps the entry's INACTIVE (§5.3).
    fn bind_synced(&mut self, c: &mut Conn, did: DestId) {
        let d = &mut self.dests[did];
        let dest_flags = d.conn_flags();
        let keep = c.flags & !(cf::FWD_MASK | cf::NOOUTPUT);
        c.flags = if c.is_template() {
            keep | dest_flags
        } else {
            keep | (dest_flags & !cf::INACTIVE)
        };
        c.set_dest(Some(did));
        if c.is_template() {
            d.persist_conns += 1;
        } else if c.flags & cf::INACTIVE != 0 {
            d.inact_conns += 1;
        } else {
            d.active_conns += 1;
        }
        d.refs += 1;
        d.check_overload_on_bind();
    }

    /// What the sync code reads of the `sync_threshold` sysctl.
    pub(crate) fn sync_timing(&self) -> SyncTimeouts {
        let (threshold, period) = self
            .settings
            .stored
            .get("sync_threshold")
            .and_then(|v| {
                let mut w = v.split_whitespace().map(|n| n.parse::<u32>().ok());
                Some((w.next()??, w.next()??))
            })
            .unwrap_or((3, 50));
        SyncTimeouts { threshold, period }
    }

    /// What sync has done so far.
    pub fn sync_counters(&self) -> &SyncCounters {
        &self.sync_counters
    }
}

/// A master's state: one message being filled per port, and the messages
/// waiting for the daemon to send them.
#[derive(Debug)]
pub(crate) struct Master {
    cfg: MasterConfig,
    /// A full copy of the table being sent: the next table slot.
    full_copy: Option<usize>,
    current: Vec<Option<(Builder, u64)>>,
    queue: std::collections::VecDeque<Outgoing>,
    /// Spent buffers, reused.
    spare: Vec<Vec<u8>>,
}

impl Engine {
    /// Starts sending as a sync master (`--start-daemon master`).
    pub fn start_sync_master(&mut self, cfg: MasterConfig) {
        // A master counts every packet (§6.1): none may bypass the engine.
        self.take_back_where(|_| true);
        let ports = usize::from(cfg.ports.clamp(1, 64));
        self.conns.note_rearmed(true);
        self.sync_master = Some(Box::new(Master {
            cfg,
            full_copy: None,
            current: (0..ports).map(|_| None).collect(),
            queue: Default::default(),
            spare: Vec::new(),
        }));
    }

    /// Stops sending (what is not sent yet is lost, as in the kernel).
    pub fn stop_sync_master(&mut self) {
        self.sync_master = None;
        self.conns.note_rearmed(false);
    }

    /// Tells the engine whether a sync backup runs (`backup_only` then
    /// turns the director off).
    pub fn set_sync_backup(&mut self, running: bool) {
        self.sync_backup = running;
        self.refresh_backup_only();
    }

    /// Whether a backup runs.
    pub fn sync_backup_running(&self) -> bool {
        self.sync_backup
    }

    pub(crate) fn refresh_backup_only(&mut self) {
        self.director_off = self.sync_backup && self.stored_int("backup_only") != 0;
    }

    /// The virtual addresses another director holds now (a VRRP backup
    /// leaves their client packets to the host; NAT replies are still
    /// translated).
    pub fn set_held_vips(&mut self, held: impl IntoIterator<Item = IpAddr>) {
        self.held_vips = held.into_iter().collect();
    }

    /// Starts sending the whole table (lvsd's full copy for a backup that
    /// asked, [`crate::sync::RESYNC_REQUEST`]): every connection and
    /// template, whatever the send rules say, in the next steps.
    pub fn begin_full_sync(&mut self) {
        if let Some(m) = self.sync_master.as_mut() {
            m.full_copy = Some(0);
        }
    }

    /// Whether a full copy is under way.
    pub fn full_sync_running(&self) -> bool {
        self.sync_master
            .as_ref()
            .is_some_and(|m| m.full_copy.is_some())
    }

    /// Queues up to `budget` entries of a full copy (one step of the
    /// packet loop's; the messages leave with the next `pop_sync_message`).
    /// One-packet entries are never sent, as in the kernel; v0 carries IPv4
    /// entries only.
    pub fn pump_full_sync(&mut self, now: u64, budget: usize) {
        let Some(start) = self.sync_master.as_ref().and_then(|m| m.full_copy) else {
            return;
        };
        let version = self.sync_version();
        let mut ids = Vec::with_capacity(budget);
        let mut next = None;
        for (id, c) in self.conns.iter_from(start) {
            if ids.len() == budget {
                next = Some(id as usize);
                break;
            }
            if c.flags & cf::ONE_PACKET != 0 || (version == 0 && c.caddr.is_ipv6()) {
                continue;
            }
            ids.push(id);
        }
        for id in ids {
            self.queue_sync_entry(now, id, version);
        }
        let qlen = self.settings.stored.get("sync_qlen_max").cloned();
        if let Some(m) = self.sync_master.as_mut() {
            m.full_copy = next;
            if next.is_none() {
                // The last entries leave at once, not after 2 s.
                for port in 0..m.current.len() {
                    close(m, port, &mut self.sync_counters, qlen.as_ref());
                }
            }
        }
    }

    /// Messages waiting to be sent.
    pub fn sync_queue_len(&self) -> usize {
        self.sync_master.as_ref().map_or(0, |m| m.queue.len())
    }

    /// Whether a master runs.
    pub fn sync_master_running(&self) -> bool {
        self.sync_master.is_some()
    }

    /// The next message to send, if any: full ones at once, a partly
    /// filled one once it is [`FLUSH_AFTER_MS`] old.
    pub fn pop_sync_message(&mut self, now: u64) -> Option<Outgoing> {
        let m = self.sync_master.as_mut()?;
        if m.queue.is_empty() {
            for port in 0..m.current.len() {
                if m.current[port]
                    .as_ref()
                    .is_some_and(|(_, since)| now.saturating_sub(*since) >= FLUSH_AFTER_MS)
                {
                    close(
                        m,
                        port,
                        &mut self.sync_counters,
                        self.settings.stored.get("sync_qlen_max"),
                    );
                }
            }
        }
        m.queue.pop_front()
    }

    /// Puts back a message the socket could not take yet (it goes first
    /// next time, §6.3: the kernel waits for room and retries).
    pub fn unpop_sync_message(&mut self, out: Outgoing) {
        if let Some(m) = self.sync_master.as_mut() {
            m.queue.push_front(out);
        }
    }

    /// Gives a sent message's buffer back for reuse.
    pub fn recycle_sync_buffer(&mut self, mut buf: Vec<u8>) {
        if let Some(m) = self.sync_master.as_mut() {
            if m.spare.len() < 64 {
                buf.clear();
                m.spare.push(buf);
            }
        }
    }

    /// §6.1/§6.2: after an incoming packet of entry `id` (`pkts`: its
    /// incoming packet count now), queue it and its controllers as the
    /// kernel would.
    #[cold]
    pub(crate) fn sync_conn(&mut self, now: u64, id: ConnId, mut pkts: u64) {
        let version = self.sync_version();
        let threshold = self.sync_timing().threshold;
        let mut id = id;
        // A chain of controllers is short (connection → template); bounded
        // anyway.
        for _ in 0..4 {
            let c = self.conns.get(id);
            let one_packet = c.flags & cf::ONE_PACKET != 0;
            if version == 0 && (one_packet || c.caddr.is_ipv6()) {
                return;
            }
            let sent = !one_packet && self.sync_needed(now, id, pkts);
            if sent {
                self.queue_sync_entry(now, id, version);
            } else if version == 0 {
                return;
            }
            let Some(t) = self.conns.get(id).control() else {
                return;
            };
            let Some(tc) = self.conns.get_mut_checked(t) else {
                return;
            };
            pkts = if tc.is_template() {
                tc.in_pkts = tc.in_pkts.wrapping_add(1);
                u64::from(tc.in_pkts)
            } else {
                u64::from(threshold)
            };
            id = t;
        }
    }

    fn sync_version(&self) -> u8 {
        match self.settings.stored.get("sync_version").map(String::as_str) {
            Some("0") => 0,
            _ => 1,
        }
    }

    fn stored_int(&self, name: &str) -> i64 {
        self.settings
            .stored
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// §6.1 "sync needed", with the engine's milliseconds for jiffies.
    fn sync_needed(&mut self, now: u64, id: ConnId, pkts: u64) -> bool {
        let timing = self.sync_timing();
        let refresh_ms = self.stored_int("sync_refresh_period").max(0) as u64 * 1000;
        let retries_max = self.stored_int("sync_retries").clamp(0, 3) as u64;
        let persist_mode = self.stored_int("sync_persist_mode") != 0;
        let controlled = self.conns.get(id).control().is_some();
        let c = self.conns.get_mut(id);
        let orig = c.sync_endtime;
        let mut n = now.wrapping_add(u64::from(c.timeout_ms)) & !3;
        let template = c.is_template();
        let mut force = false;
        let mut set_now = false;
        if template {
        } else if persist_mode && controlled {
            return false;
        } else if c.protocol == ipproto::TCP || c.protocol == ipproto::SCTP {
            let ok = if c.protocol == ipproto::TCP {
                use TcpState as T;
                matches!(
                    TcpState::from_u8(c.state),
                    Some(T::Established | T::FinWait | T::Close | T::CloseWait | T::TimeWait)
                )
            } else {
                use SctpState as S;
                matches!(
                    SctpState::from_u8(c.state),
                    Some(
                        S::Established
                            | S::ShutdownSent
                            | S::ShutdownReceived
                            | S::ShutdownAckSent
                            | S::Closed
                    )
                )
            };
            if !ok {
                return false;
            }
            let established = if c.protocol == ipproto::TCP {
                TcpState::Established as u8
            } else {
                SctpState::Established as u8
            };
            force = c.state != c.old_state();
            set_now = force && c.state != established;
        }
        if !set_now {
            if refresh_ms > 0 {
                let diff = n.abs_diff(orig);
                let min_diff = (u64::from(c.timeout_ms) / 2).max(10_000);
                if diff < refresh_ms.min(min_diff) {
                    let retries = orig & 3;
                    if retries >= retries_max {
                        return false;
                    }
                    if now
                        < orig
                            .wrapping_sub(u64::from(c.timeout_ms))
                            .wrapping_add(refresh_ms / 8)
                    {
                        return false;
                    }
                    n |= retries + 1;
                }
            }
            let (th, period) = (u64::from(timing.threshold), u64::from(timing.period));
            if period > 0 {
                if !template && pkts % period != th {
                    return false;
                }
            } else if refresh_ms == 0 && pkts != th {
                return false;
            }
        }
        c.set_old_state(c.state);
        c.sync_endtime = n;
        let _ = force;
        true
    }

    /// Appends entry `id` to its port's message (§6.3).
    fn queue_sync_entry(&mut self, now: u64, id: ConnId, version: u8) {
        let c = self.conns.get(id);
        let fwmark = c
            .dest()
            .and_then(|d| self.dests.get(d))
            .and_then(|d| d.svc_key.mark())
            .unwrap_or(0);
        let entry = Entry {
            protocol: c.protocol,
            flags: c.flags & !wf::HASHED,
            state: u16::from(c.state),
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            fwmark,
            timeout: c.timeout_ms / 1000,
            caddr: c.caddr,
            vaddr: c.vaddr,
            daddr: c.daddr,
            seq: None,
            pe_data: None,
            pe_name: None,
        };
        let qlen = self.settings.stored.get("sync_qlen_max").cloned();
        let Some(m) = self.sync_master.as_mut() else {
            return;
        };
        let port = id as usize % m.current.len();
        let (maxlen, syncid) = (m.cfg.maxlen, m.cfg.syncid);
        let fits = m.current[port]
            .as_ref()
            .is_some_and(|(b, _)| b.version() == version && b.fits(&entry, maxlen));
        if !fits {
            close(m, port, &mut self.sync_counters, qlen.as_ref());
            let mut b = match m.spare.pop() {
                Some(buf) => Builder::with_buffer(buf, version, syncid),
                None => Builder::new(version, syncid, maxlen),
            };
            if b.push(&entry) {
                self.sync_counters.entries_sent += 1;
            }
            m.current[port] = Some((b, now));
            return;
        }
        if let Some((b, _)) = m.current[port].as_mut() {
            if b.push(&entry) {
                self.sync_counters.entries_sent += 1;
            }
        }
    }
}

/// Closes port `port`'s current message and queues it (or drops it when
/// `sync_qlen_max` messages already wait).
fn close(m: &mut Master, port: usize, counters: &mut SyncCounters, qlen: Option<&String>) {
    let Some((b, _)) = m.current[port].take() else {
        return;
    };
    if b.is_empty() {
        return;
    }
    let max = qlen
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_QLEN_MAX);
    if m.queue.len() >= max {
        counters.messages_dropped += 1;
        m.spare.push(b.into_buffer());
        return;
    }
    counters.messages_sent += 1;
    m.queue.push_back(Outgoing {
        port: port as u8,
        bytes: b.into_buffer(),
    });
}

/// `sync_qlen_max` when it was never set (the kernel's default depends on
/// its memory; this is its value for about 450 MiB free).
const DEFAULT_QLEN_MAX: usize = 3632;
