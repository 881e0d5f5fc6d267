//! The engine's side of connection sync (sync-protocol.md): a backup
//! applies received messages to its connection table (§5), a master
//! decides after each incoming packet whether a connection must be sent
//! (§6.1, §6.2) and queues its entry; the caller carries the messages.

use super::*;
use crate::sync::codec::{wire_flags as wf, Entry, Item, Message, MessageFault};
use crate::sync::{SyncCounters, SyncTimeouts};

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
                    if let Some(did) = c.dest {
                        move_counters(
                            &mut self.dests[did],
                            &mut c.flags,
                            flags & cf::INACTIVE == 0,
                        );
                    }
                }
                c.flags = (flags & wf::BACKUP_UPD_MASK) | (c.flags & !wf::BACKUP_UPD_MASK);
                if c.dest.is_none() {
                    if let Some(did) = self.sync_dest(e, flags) {
                        self.bind_synced(id, did);
                    }
                }
                self.sync_counters.entries_updated += 1;
                id
            }
            None => {
                let c = ConnTable::new_conn(
                    e.protocol, e.caddr, e.cport, e.vaddr, e.vport, e.daddr, e.dport, flags, now,
                );
                let id = self.conns.insert(now, c);
                if let Some(did) = self.sync_dest(e, flags) {
                    self.bind_synced(id, did);
                }
                self.sync_counters.entries_created += 1;
                id
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
        c.in_pkts = u64::from(threshold);
        c.state = e.state as u8;
        c.old_state = c.state;
        let timeout_ms = u64::from(secs) * 1000;
        c.timeout_ms = timeout_ms;
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
    fn bind_synced(&mut self, id: ConnId, did: DestId) {
        let d = &mut self.dests[did];
        let c = self.conns.get_mut(id);
        let dest_flags = d.conn_flags();
        let keep = c.flags & !(cf::FWD_MASK | cf::NOOUTPUT);
        c.flags = if c.is_template() {
            keep | dest_flags
        } else {
            keep | (dest_flags & !cf::INACTIVE)
        };
        c.dest = Some(did);
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
