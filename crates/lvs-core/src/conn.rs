//! The connection table: entries in a slab, two hash indexes (client side
//! "in" and real-server side "out", connections.md §3.1–3.2), and a timing
//! wheel that expires entries without scanning the table.
//!
//! Timers are lazy: a packet that moves an entry's expiry later only stores
//! the new time; when the wheel reaches the tick the entry was filed under,
//! an entry that is not yet due is re-filed under its new expiry. A packet
//! that moves the expiry *earlier* (a shorter timeout, e.g. ESTABLISHED →
//! CLOSE) files the entry again under the earlier tick; the older filing is
//! recognised as stale and skipped. So a timer restart costs one store, or
//! one push when the timeout shrinks.

use crate::service::DestId;
use crate::slab::Slab;
use ahash::RandomState;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::net::IpAddr;

/// Identifies an entry in the table.
pub type ConnId = u32;

/// Connection flag values (`IP_VS_CONN_F_*`, connections.md §2).
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    /// Forwarding-method value of masquerading (NAT).
    pub const MASQ: u32 = 0;
    /// Forwarding-method value of a `cache_bypass` entry.
    pub const BYPASS: u32 = 0x0004;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
}

/// Values of `Conn::offload` (`engine::offload`).
pub mod offload {
    /// Not carried by the fast path.
    pub const NONE: u8 = 0;
    /// Carried.
    pub const CARRIED: u8 = 1;
    /// Carried, its timer ran out: expires at the next run out unless the
    /// fast path reports a packet.
    pub const GRACE: u8 = 2;
}

/// One connection entry.
#[derive(Debug, Clone)]
pub struct Conn {
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub flags: u32,
    /// Protocol state number (TCP: `TcpState as u8`; UDP: 0).
    pub state: u8,
    /// `old_state()` in the low 6 bits, `offload()` in the high 2 (one
    /// byte: the entry stays at 104 bytes).
    meta: u8,
    /// Current timeout in milliseconds, set by the state machine (at most
    /// `u32::MAX`, 49.7 days; longer ones are cut to that).
    pub timeout_ms: u32,
    /// Absolute expiry time in milliseconds (engine clock).
    pub expires: u64,
    /// The real server (`dest()`).
    dest_id: PackedId,
    /// Incoming packets, wrapping at 2^32 (the kernel's is an atomic_t).
    pub in_pkts: u32,
    /// When the last sync of this entry would expire, milliseconds, with
    /// the retry count in its two low bits (sync-protocol.md §6.1).
    pub sync_endtime: u64,
    /// The entry controlling this one, its persistence template
    /// (`control()`).
    control_id: PackedId,
    /// How many entries this one controls (a template: its connections).
    pub n_control: u32,
    /// The wheel tick this entry is currently filed under, its low 32 bits
    /// (compared as the kernel compares jiffies: 2^31 ticks of 100 ms,
    /// 6.8 years, apart at most).
    filed_tick: u32,
}

/// An id or none in 4 bytes (`Option<u32>` takes 8): `u32::MAX` stands
/// for none (no table holds that many entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedId(u32);

impl PackedId {
    #[inline]
    fn new(id: Option<u32>) -> PackedId {
        PackedId(id.unwrap_or(u32::MAX))
    }
    #[inline]
    fn get(self) -> Option<u32> {
        (self.0 != u32::MAX).then_some(self.0)
    }
}

/// Lookup key of the client side: (protocol, caddr, cport, vaddr, vport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InKey {
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
}

/// Lookup key of the real-server side: (protocol, daddr, dport, caddr, cport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutKey {
    pub protocol: u8,
    pub daddr: IpAddr,
    pub dport: u16,
    pub caddr: IpAddr,
    pub cport: u16,
}

impl Conn {
    /// The state when the entry was last considered for sync (a state
    /// change forces a send, sync-protocol.md §6.1). States are below 64.
    #[inline]
    pub fn old_state(&self) -> u8 {
        self.meta & 0x3f
    }
    #[inline]
    pub fn set_old_state(&mut self, s: u8) {
        self.meta = (self.meta & 0xc0) | (s & 0x3f);
    }
    /// Whether a fast path carries the entry: `offload::NONE`, `CARRIED`,
    /// or `GRACE` (its timer ran out once; one grace period left).
    #[inline]
    pub fn offload(&self) -> u8 {
        self.meta >> 6
    }
    #[inline]
    pub fn set_offload(&mut self, o: u8) {
        self.meta = (self.meta & 0x3f) | (o << 6);
    }
    /// The real server the entry forwards to (none: unbound, e.g. a
    /// synced entry whose server is not configured here).
    #[inline]
    pub fn dest(&self) -> Option<DestId> {
        self.dest_id.get()
    }
    #[inline]
    pub fn set_dest(&mut self, d: Option<DestId>) {
        self.dest_id = PackedId::new(d);
    }
    /// The entry controlling this one (its persistence template).
    #[inline]
    pub fn control(&self) -> Option<ConnId> {
        self.control_id.get()
    }
    #[inline]
    pub fn set_control(&mut self, t: Option<ConnId>) {
        self.control_id = PackedId::new(t);
    }
    pub fn in_key(&self) -> InKey {
        InKey {
            protocol: self.protocol,
            caddr: self.caddr,
            cport: self.cport,
            vaddr: self.vaddr,
            vport: self.vport,
        }
    }
    /// The real-server side key (§3.2): replies come from the real server
    /// for NAT; for the other methods they would carry the virtual address.
    pub fn out_key(&self) -> OutKey {
        let (daddr, dport) = if self.flags & flags::FWD_MASK == flags::MASQ {
            (self.daddr, self.dport)
        } else {
            (self.vaddr, self.vport)
        };
        OutKey {
            protocol: self.protocol,
            daddr,
            dport,
            caddr: self.caddr,
            cport: self.cport,
        }
    }
    /// True for a persistence template.
    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }
    /// When the entry's timer was last restarted.
    #[inline]
    pub fn last_restart(&self) -> u64 {
        self.expires.saturating_sub(u64::from(self.timeout_ms))
    }
}

/// A timeout in milliseconds as an entry keeps it: at most `u32::MAX`
/// (49.7 days; the kernel's are jiffies in an int, up to 99 days at 250 Hz).
#[inline]
pub fn clamp_timeout(ms: u64) -> u32 {
    ms.min(u64::from(u32::MAX)) as u32
}

/// Timeout an entry gets when its timer fires while it still controls
/// others (connections.md §8.3, §9): it is kept and retried after 60 s.
pub const RETRY_MS: u64 = 60_000;

/// Granularity of the timing wheel in milliseconds: an entry expires at most
/// this much after its due time.
pub const TICK_MS: u64 = 100;
/// Slots of the timing wheel: one revolution spans `TICK_MS * WHEEL_SLOTS`
/// = 1638.4 s, more than the longest default timeout (ESTABLISHED, 900 s),
/// so entries are not revisited before they are due.
pub const WHEEL_SLOTS: usize = 16384;

/// A wheel filing: entry and the tick it was filed for (low 32 bits). A
/// filing is current while its entry's `filed_tick` is that tick; others
/// are stale (re-filed since, or an entry that went, its id taken by a
/// newer one: filed under the same tick, that one is merely visited
/// twice, the second time stale).
type Filing = (ConnId, u32);

/// Whether tick `a` comes before tick `b` (both their low 32 bits).
#[inline]
fn tick_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

struct Wheel {
    slots: Vec<Vec<Filing>>,
    /// Next tick to process; every tick before it has been processed.
    next_tick: Option<u64>,
    /// Where to resume in the slot of `next_tick` after a call ran out of
    /// budget (the filings before it stay for a later revolution).
    cursor: usize,
}

impl Wheel {
    fn new() -> Self {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            next_tick: None,
            cursor: 0,
        }
    }
    /// The tick an expiry time is filed under (never one already processed).
    fn tick_for(&self, expires: u64) -> u64 {
        let tick = expires / TICK_MS;
        match self.next_tick {
            Some(n) if tick < n => n,
            _ => tick,
        }
    }
    /// Files entry `id` for `expires`; the tick it is filed under.
    fn file(&mut self, id: ConnId, expires: u64) -> u32 {
        let tick = self.tick_for(expires);
        self.slots[(tick % WHEEL_SLOTS as u64) as usize].push((id, tick as u32));
        tick as u32
    }
}

/// Points the index slot of `key` at `id` (a newer entry with the same key
/// replaces the older one there, so lookups find the newest first).
#[inline(always)]
fn index_put<K: std::hash::Hash + Eq>(
    index: &mut HashTable<ConnId>,
    conns: &Slab<Conn>,
    hasher: &RandomState,
    id: ConnId,
    key: K,
    key_of: impl Fn(&Conn) -> K,
) {
    let h = hasher.hash_one(&key);
    match index.entry(
        h,
        |&x| x != id && key_of(&conns[x]) == key,
        |&x| hasher.hash_one(key_of(&conns[x])),
    ) {
        hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = id,
        hashbrown::hash_table::Entry::Vacant(e) => {
            e.insert(id);
        }
    }
}

/// The table of connection entries.
///
/// The two indexes hold only entry ids (4 bytes a slot); keys are hashed
/// from, and compared against, the entries in the slab. That keeps the
/// per-entry cost of indexing at about 11 bytes instead of two copies of the
/// keys, and the lookup touches the entry it needs anyway.
pub struct ConnTable {
    conns: Slab<Conn>,
    by_in: HashTable<ConnId>,
    by_out: HashTable<ConnId>,
    /// Persistence templates, by their (masked) client-side key (§3.3).
    by_tmpl: HashTable<ConnId>,
    hasher: RandomState,
    wheel: Wheel,
    /// Entries reserved up front: memory up to this is kept when the table
    /// drains; more is given back (`give_back`).
    floor: usize,
    /// Entries whose timer ran out while they still controlled others (a
    /// template re-armed for 60 s), noted while `note_rearmed` is on: a
    /// sync master sends them (sync-protocol.md §6.1).
    rearmed: Vec<ConnId>,
    note_rearmed: bool,
    /// Carried entries whose timer ran out (now in their grace period):
    /// the fast path is asked for its report on them.
    graced: Vec<ConnId>,
}

impl ConnTable {
    /// An empty table whose hash indexes are keyed with `seed` (the caller
    /// supplies randomness; the engine draws none itself).
    pub fn new(seed: u64) -> Self {
        ConnTable {
            conns: Slab::default(),
            by_in: HashTable::new(),
            by_out: HashTable::new(),
            by_tmpl: HashTable::new(),
            hasher: RandomState::with_seeds(
                seed,
                seed ^ 0x9e37_79b9_7f4a_7c15,
                seed.rotate_left(17),
                !seed,
            ),
            wheel: Wheel::new(),
            floor: 0,
            rearmed: Vec::new(),
            note_rearmed: false,
            graced: Vec::new(),
        }
    }

    /// Reserves room for `n` more entries so that inserting them does not allocate.
    pub fn reserve(&mut self, n: usize) {
        self.floor = self.floor.max(self.conns.len().saturating_add(n));
        self.conns.reserve(n);
        let (conns, hasher) = (&self.conns, &self.hasher);
        self.by_in
            .reserve(n, |&id| hasher.hash_one(conns[id].in_key()));
        self.by_out
            .reserve(n, |&id| hasher.hash_one(conns[id].out_key()));
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Slots the table holds memory for (live or free).
    pub fn slots(&self) -> usize {
        self.conns.capacity().max(self.by_in.capacity())
    }

    /// After a flood has drained, returns the memory it grew: a table of
    /// at least 4,096 slots whose entries fill at most an eighth of them is
    /// compacted to twice its entries (the entries at high ids move down),
    /// the reserve is made again in fresh memory (not resident until used),
    /// and the indexes and the timing wheel are rebuilt. O(slots), and only
    /// when that much is to be gained. Returns whether memory was released.
    pub fn give_back(&mut self) -> bool {
        let len = self.conns.len();
        let slab = self.conns.capacity();
        if slab < 4096 || len > slab / 8 {
            return false;
        }
        // Down to twice the entries, then the reserve again in fresh memory
        // (untouched pages cost nothing until used).
        let target = len.saturating_mul(2).max(64);
        let moved: HashMap<ConnId, ConnId> = self.conns.compact(target).into_iter().collect();
        self.conns.reserve(self.floor.saturating_sub(len));
        let new_id = |id: ConnId| moved.get(&id).copied().unwrap_or(id);
        if !moved.is_empty() {
            for (_, c) in self.conns.iter_mut() {
                let t = c.control().map(new_id);
                c.set_control(t);
            }
        }
        let (conns, hasher) = (&self.conns, &self.hasher);
        let rebuild = |t: &HashTable<ConnId>, out: bool, room: usize| {
            let hash = |id: ConnId| match out {
                true => hasher.hash_one(conns[id].out_key()),
                false => hasher.hash_one(conns[id].in_key()),
            };
            let mut n = HashTable::with_capacity(t.len().max(room));
            for &id in t.iter() {
                let id = new_id(id);
                n.insert_unique(hash(id), id, |&x| hash(x));
            }
            n
        };
        let by_in = rebuild(&self.by_in, false, self.floor);
        let by_out = rebuild(&self.by_out, true, self.floor);
        let by_tmpl = rebuild(&self.by_tmpl, false, 0);
        (self.by_in, self.by_out, self.by_tmpl) = (by_in, by_out, by_tmpl);
        for slot in &mut self.wheel.slots {
            // Filings of moved entries follow them; a stale one may now
            // name a moved entry, which is then visited once more (`Filing`).
            for f in slot.iter_mut() {
                f.0 = new_id(f.0);
            }
            slot.shrink_to_fit();
        }
        true
    }
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    #[inline(always)]
    pub fn lookup_in(&self, k: &InKey) -> Option<ConnId> {
        let h = self.hasher.hash_one(k);
        self.by_in
            .find(h, |&id| self.conns[id].in_key() == *k)
            .copied()
    }
    #[inline]
    pub fn lookup_out(&self, k: &OutKey) -> Option<ConnId> {
        let h = self.hasher.hash_one(k);
        self.by_out
            .find(h, |&id| self.conns[id].out_key() == *k)
            .copied()
    }
    #[inline]
    pub fn get(&self, id: ConnId) -> &Conn {
        &self.conns[id]
    }
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.conns[id]
    }
    /// The entry `id` if it still exists.
    #[inline]
    pub fn get_mut_checked(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter()
    }

    /// Entries from slot `start` on (see `Engine::connections_chunk`).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter_from(start)
    }

    /// Notes (or stops noting) the entries re-armed because they control
    /// others.
    pub fn note_rearmed(&mut self, on: bool) {
        self.note_rearmed = on;
        self.rearmed.clear();
    }

    /// The entries re-armed since the last call.
    pub fn take_rearmed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.rearmed)
    }

    /// The carried entries that went into their grace period since the
    /// last call.
    pub fn take_graced(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.graced)
    }

    /// Moves the expiry of entry `id` to `expires` (its timeout stays):
    /// filed again if that is earlier than where it is filed.
    pub fn set_expiry(&mut self, id: ConnId, expires: u64) {
        let c = &mut self.conns[id];
        c.expires = expires;
        let tick = self.wheel.tick_for(expires) as u32;
        if tick_before(tick, c.filed_tick) {
            let t = self.wheel.file(id, expires);
            self.conns[id].filed_tick = t;
        }
    }

    /// Inserts an entry (a newer entry with the same key replaces the older
    /// one in the index, as the kernel finds the newest first) and arms its
    /// timer. Templates go to the template index only; one-packet entries
    /// are stored without being indexed or timed (§3, §16).
    pub fn insert(&mut self, now: u64, c: Conn) -> ConnId {
        if self.wheel.next_tick.is_none() {
            self.wheel.next_tick = Some(now / TICK_MS);
        }
        let (ik, ok, exp, fl) = (c.in_key(), c.out_key(), c.expires, c.flags);
        let id = self.conns.insert(c);
        if fl & flags::ONE_PACKET != 0 {
            return id;
        }
        let (conns, hasher) = (&self.conns, &self.hasher);
        if fl & flags::TEMPLATE != 0 {
            index_put(&mut self.by_tmpl, conns, hasher, id, ik, Conn::in_key);
        } else {
            index_put(&mut self.by_in, conns, hasher, id, ik, Conn::in_key);
            index_put(&mut self.by_out, conns, hasher, id, ok, Conn::out_key);
        }
        let tick = self.wheel.file(id, exp);
        self.conns[id].filed_tick = tick;
        id
    }

    /// The newest template with key `k` (§3.3).
    #[inline]
    pub fn lookup_template(&self, k: &InKey) -> Option<ConnId> {
        let h = self.hasher.hash_one(k);
        self.by_tmpl
            .find(h, |&id| self.conns[id].in_key() == *k)
            .copied()
    }

    /// Takes a template out of the template index so that no lookup finds
    /// it again (it stays in the table until its timer expires it), and
    /// re-keys it as the kernel does: client port 0, virtual and real port
    /// 65535 (§8.2).
    pub fn unhash_template(&mut self, id: ConnId) {
        let Some(c) = self.conns.get(id) else { return };
        let ik = c.in_key();
        if let Ok(e) = self
            .by_tmpl
            .find_entry(self.hasher.hash_one(ik), |&x| x == id)
        {
            e.remove();
        }
        let c = &mut self.conns[id];
        c.cport = 0;
        c.vport = 65535;
        c.dport = 65535;
    }

    /// Restarts the timer of entry `id`: it now expires `timeout_ms` after `now`.
    #[inline]
    pub fn restart_timer(&mut self, id: ConnId, now: u64, timeout_ms: u64) {
        let c = &mut self.conns[id];
        c.timeout_ms = clamp_timeout(timeout_ms);
        c.expires = now + timeout_ms;
        let tick = self.wheel.tick_for(c.expires) as u32;
        if tick_before(tick, c.filed_tick) {
            let exp = c.expires;
            let t = self.wheel.file(id, exp);
            self.conns[id].filed_tick = t;
        }
    }

    /// Unlinks and returns the entry `id`.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let (ik, ok, fl) = {
            let c = self.conns.get(id)?;
            (c.in_key(), c.out_key(), c.flags)
        };
        // Only this id's slots go; a newer entry with the same key keeps its own.
        if fl & flags::ONE_PACKET == 0 {
            let h = self.hasher.hash_one(ik);
            let index = if fl & flags::TEMPLATE != 0 {
                &mut self.by_tmpl
            } else {
                &mut self.by_in
            };
            if let Ok(e) = index.find_entry(h, |&x| x == id) {
                e.remove();
            }
            if fl & flags::TEMPLATE == 0 {
                if let Ok(e) = self
                    .by_out
                    .find_entry(self.hasher.hash_one(ok), |&x| x == id)
                {
                    e.remove();
                }
            }
        }
        self.conns.remove(id)
    }

    /// Removes every entry due at `now` and appends it to `out`. Entries
    /// whose timer was restarted are re-filed, not removed; entries that
    /// still control others are kept and retried after 60 s (§9).
    pub fn expire(&mut self, now: u64, out: &mut Vec<Conn>) -> usize {
        self.expire_some(now, out, usize::MAX).0
    }

    /// Like `expire`, but looks at no more than `budget` wheel filings, so
    /// that a burst of a million entries falling due together does not stall
    /// the caller: the rest is done by the next calls. Returns the number of
    /// entries removed and whether everything due at `now` was handled.
    pub fn expire_some(&mut self, now: u64, out: &mut Vec<Conn>, budget: usize) -> (usize, bool) {
        let now_tick = now / TICK_MS;
        let mut next = match self.wheel.next_tick {
            Some(n) => n,
            None => {
                self.wheel.next_tick = Some(now_tick);
                return (0, true);
            }
        };
        let mut expired = 0;
        let mut visited = 0;
        let mut steps = 0;
        // A tick is processed once it has completely passed.
        while next < now_tick && steps < WHEEL_SLOTS {
            let slot = (next % WHEEL_SLOTS as u64) as usize;
            let mut due = std::mem::take(&mut self.wheel.slots[slot]);
            // Re-filings land on later ticks, never on the one being processed.
            self.wheel.next_tick = Some(next + 1);
            let mut i = std::mem::take(&mut self.wheel.cursor).min(due.len());
            let mut out_of_budget = false;
            while i < due.len() {
                if visited == budget {
                    out_of_budget = true;
                    break;
                }
                visited += 1;
                let (id, tick) = due[i];
                let Some(c) = self.conns.get(id) else {
                    due.swap_remove(i);
                    continue;
                };
                if c.filed_tick != tick {
                    // A stale filing (see `Filing`).
                    due.swap_remove(i);
                    continue;
                }
                if tick_before(next as u32, tick) {
                    // Filed for a later revolution of the wheel: stays here.
                    i += 1;
                    continue;
                }
                due.swap_remove(i);
                if c.expires > now {
                    let exp = c.expires;
                    let t = self.wheel.file(id, exp);
                    self.conns[id].filed_tick = t;
                } else if c.offload() == offload::CARRIED {
                    // Carried by a fast path whose report may be late:
                    // one grace period (engine::offload).
                    let c = &mut self.conns[id];
                    c.set_offload(offload::GRACE);
                    c.expires = now.saturating_add(crate::engine::OFFLOAD_GRACE_MS);
                    let t = self.wheel.file(id, c.expires);
                    self.conns[id].filed_tick = t;
                    self.graced.push(id);
                } else if c.n_control > 0 {
                    if self.note_rearmed {
                        self.rearmed.push(id);
                    }
                    let c = &mut self.conns[id];
                    c.timeout_ms = RETRY_MS as u32;
                    c.expires = now.saturating_add(RETRY_MS);
                    let t = self.wheel.file(id, c.expires);
                    self.conns[id].filed_tick = t;
                } else if let Some(c) = self.remove(id) {
                    expired += 1;
                    out.push(c);
                }
            }
            // Keep the slot's allocation; entries filed into this very slot
            // meanwhile (a full revolution away) are kept too.
            due.append(&mut self.wheel.slots[slot]);
            self.wheel.slots[slot] = due;
            if out_of_budget {
                self.wheel.next_tick = Some(next);
                self.wheel.cursor = i;
                return (expired, false);
            }
            next += 1;
            steps += 1;
        }
        if steps == WHEEL_SLOTS {
            // The clock jumped by more than a revolution: every slot was visited once.
            self.wheel.next_tick = Some(now_tick);
        }
        (expired, true)
    }

    /// Ids of the live entries whose slab index is congruent to `bucket`
    /// modulo `buckets` (the drop_entry scan's "random bucket", §17.2).
    pub fn bucket_ids(&self, bucket: usize, buckets: usize) -> impl Iterator<Item = ConnId> + '_ {
        (bucket..self.conns.capacity())
            .step_by(buckets.max(1))
            .map(|i| i as ConnId)
            .filter(|&i| self.conns.get(i).is_some())
    }

    /// A fresh entry value (its timer is filed by `insert`).
    #[allow(clippy::too_many_arguments)]
    pub fn new_conn(
        protocol: u8,
        caddr: IpAddr,
        cport: u16,
        vaddr: IpAddr,
        vport: u16,
        daddr: IpAddr,
        dport: u16,
        flags: u32,
        now: u64,
    ) -> Conn {
        Conn {
            protocol,
            caddr,
            cport,
            vaddr,
            vport,
            daddr,
            dport,
            flags,
            state: 0,
            meta: 0,
            // connections.md §1.1: a new entry starts with a 3 s timeout.
            timeout_ms: 3000,
            expires: now + 3000,
            dest_id: PackedId::new(None),
            in_pkts: 0,
            sync_endtime: 0,
            control_id: PackedId::new(None),
            n_control: 0,
            filed_tick: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn conn(cport: u16, now: u64, timeout: u64) -> Conn {
        let c = Ipv4Addr::new(198, 18, 0, 2).into();
        let v = Ipv4Addr::new(198, 18, 0, 100).into();
        let d = Ipv4Addr::new(198, 18, 1, 11).into();
        let mut x = ConnTable::new_conn(6, c, cport, v, 80, d, 80, 0, now);
        x.timeout_ms = timeout as u32;
        x.expires = now + timeout;
        x
    }

    fn expire_into(t: &mut ConnTable, now: u64, gone: &mut Vec<u16>) -> usize {
        let mut out = Vec::new();
        let n = t.expire(now, &mut out);
        gone.extend(out.iter().map(|c| c.cport));
        n
    }

    #[test]
    fn lookups_in_both_directions() {
        let mut t = ConnTable::new(1);
        let id = t.insert(0, conn(1000, 0, 5000));
        let c = t.get(id).clone();
        assert_eq!(t.lookup_in(&c.in_key()), Some(id));
        assert_eq!(t.lookup_out(&c.out_key()), Some(id));
        let mut other = c.in_key();
        other.cport = 1001;
        assert_eq!(t.lookup_in(&other), None);
        t.remove(id);
        assert_eq!(t.lookup_in(&c.in_key()), None);
        assert_eq!(t.lookup_out(&c.out_key()), None);
    }

    /// Ticks are kept as their low 32 bits: timers filed and restarted
    /// across the wrap (2^32 ticks of 100 ms) run out on time.
    #[test]
    fn timers_run_across_the_tick_wrap() {
        assert!(tick_before(u32::MAX, 0) && !tick_before(0, u32::MAX));
        let wrap = (1u64 << 32) * TICK_MS;
        let mut t = ConnTable::new(9);
        t.expire(wrap - 1_000, &mut Vec::new());
        let a = t.insert(wrap - 1_000, conn(1, wrap - 1_000, 3_000));
        t.insert(wrap - 1_000, conn(2, wrap - 1_000, 60_000));
        // a, filed after the wrap, restarted to end before it: filed again
        // (the low bits of its new tick are the larger).
        t.restart_timer(a, wrap - 500, 300);
        let mut gone = vec![];
        assert_eq!(expire_into(&mut t, wrap - 300, &mut gone), 0);
        assert_eq!(expire_into(&mut t, wrap + 100, &mut gone), 1);
        assert_eq!(gone, vec![1]);
        assert_eq!(expire_into(&mut t, wrap + 58_000, &mut gone), 0);
        assert_eq!(expire_into(&mut t, wrap + 59_200, &mut gone), 1);
        assert_eq!(gone, vec![1, 2]);
    }

    /// An entry removed before its timer ran out leaves its filing; an entry
    /// that takes its id is not expired by it, and one filed under that
    /// same tick expires once.
    #[test]
    fn a_reused_id_is_not_expired_by_its_predecessors_filing() {
        let mut t = ConnTable::new(5);
        t.expire(0, &mut Vec::new());
        let a = t.insert(0, conn(1, 0, 3_000));
        t.remove(a);
        let b = t.insert(0, conn(2, 0, 10_000));
        assert_eq!(a, b, "the id is reused");
        let mut gone = vec![];
        assert_eq!(expire_into(&mut t, 5_000, &mut gone), 0);
        assert_eq!(t.len(), 1, "alive past its predecessor's expiry");
        t.remove(b);
        let c = t.insert(5_000, conn(3, 5_000, 5_000));
        assert_eq!(c, b);
        // Filed twice under 10 s (b's stale filing and its own).
        assert_eq!(expire_into(&mut t, 9_900, &mut gone), 0);
        assert_eq!(expire_into(&mut t, 10_200, &mut gone), 1);
        assert_eq!(gone, vec![3]);
        assert!(t.is_empty());
        assert_eq!(expire_into(&mut t, 20_000, &mut gone), 0);
    }

    #[test]
    fn expires_after_timeout_and_restart_postpones() {
        let mut t = ConnTable::new(7);
        t.expire(0, &mut Vec::new());
        let a = t.insert(0, conn(1, 0, 2_000));
        let b = t.insert(0, conn(2, 0, 2_000));
        let mut gone = vec![];
        assert_eq!(expire_into(&mut t, 1_900, &mut gone), 0);
        // b sees a packet at 1.5 s: its timer restarts for 2 s.
        t.get_mut(b).expires = 1_500 + 2_000;
        assert_eq!(expire_into(&mut t, 2_100 + TICK_MS, &mut gone), 1);
        assert_eq!(gone, [1]);
        assert!(t.conns.get(a).is_none());
        assert_eq!(expire_into(&mut t, 3_400, &mut gone), 0);
        assert_eq!(expire_into(&mut t, 3_500 + TICK_MS, &mut gone), 1);
        assert_eq!(gone, [1, 2]);
        assert!(t.is_empty());
    }

    #[test]
    fn long_timeouts_survive_wheel_revolutions() {
        let mut t = ConnTable::new(3);
        t.expire(0, &mut Vec::new());
        let span = TICK_MS * WHEEL_SLOTS as u64;
        t.insert(0, conn(1, 0, 2 * span + 50));
        let mut n = 0;
        let mut now = 0;
        while now + 1000 < 2 * span {
            now += 1000;
            n += t.expire(now, &mut Vec::new());
        }
        assert_eq!(n, 0);
        assert_eq!(t.expire(2 * span + 50 + 2 * TICK_MS, &mut Vec::new()), 1);
    }

    #[test]
    fn a_shorter_timeout_takes_effect_at_once() {
        let mut t = ConnTable::new(11);
        t.expire(0, &mut Vec::new());
        let id = t.insert(0, conn(1, 0, 3_000));
        t.restart_timer(id, 10, 900_000); // ESTABLISHED
        assert_eq!(t.expire(5_000, &mut Vec::new()), 0); // re-filed under 900 s
        t.restart_timer(id, 81_000, 10_000); // RST: CLOSE, 10 s
        assert_eq!(t.expire(90_900, &mut Vec::new()), 0);
        assert_eq!(t.expire(91_000 + 2 * TICK_MS, &mut Vec::new()), 1);
        assert!(t.is_empty());
        // The stale 900 s filing is skipped later and harms nobody.
        let other = t.insert(100_000, conn(2, 100_000, 1_000_000));
        assert_eq!(t.expire(901_000, &mut Vec::new()), 0);
        assert_eq!(t.get(other).cport, 2);
    }

    #[test]
    fn a_burst_is_expired_within_a_budget_per_call() {
        let mut t = ConnTable::new(5);
        t.expire(0, &mut Vec::new());
        // Long-lived entries filed first in the same slot, a revolution
        // later: they stay, and a resumed call must not look at them again.
        let span = TICK_MS * WHEEL_SLOTS as u64;
        for p in 0..1000 {
            t.insert(0, conn(5000 + p, 0, 60_000 + span));
        }
        for p in 0..1000 {
            t.insert(0, conn(p, 0, 60_000));
        }
        let mut out = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let (n, done) = t.expire_some(60_200, &mut out, 100);
            assert!(n <= 100);
            if done {
                break;
            }
            assert!(calls < 30);
        }
        assert_eq!(out.len(), 1000);
        assert_eq!(calls, 20);
        assert_eq!(t.len(), 1000);
        assert_eq!(t.expire(60_000 + span + 2 * TICK_MS, &mut out), 1000);
    }

    #[test]
    fn clock_jump_expires_everything_due() {
        let mut t = ConnTable::new(3);
        t.expire(0, &mut Vec::new());
        for p in 0..100 {
            t.insert(0, conn(p, 0, 1000 + u64::from(p) * 10_000));
        }
        assert_eq!(t.expire(10_000_000, &mut Vec::new()), 100);
    }
}
