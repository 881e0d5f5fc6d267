//! lblc — locality-based least connection (schedulers.md §9).
//!
//! A 1024-bucket table maps the packet's destination address to the
//! destination last chosen for it. A cached destination is reused while it
//! is AVAILABLE, has `weight > 0` and is not "lblc-overloaded" (the OVERLOAD
//! flag is not consulted); otherwise wlc picks a new one and the entry is
//! replaced. A 60 s timer (driven from `tick`/`schedule` by the engine
//! clock) garbage-collects entries.
//!
//! This module also holds the table, timer and helpers that lblcr shares.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};
use crate::service::Dest;
use std::net::IpAddr;

/// `CONFIG_IP_VS_LBLC_TAB_BITS` / `CONFIG_IP_VS_LBLCR_TAB_BITS`.
pub(super) const TAB_BITS: u32 = 10;
pub(super) const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// `tbl->max_size`.
pub(super) const MAX_SIZE: i32 = (TAB_SIZE * 16) as i32;
/// `CHECK_EXPIRE_INTERVAL` (60 s).
pub(super) const CHECK_EXPIRE_INTERVAL_MS: u64 = 60_000;
/// `ENTRY_TIMEOUT` (6 min) of the over-size collection.
pub(super) const ENTRY_TIMEOUT_MS: u64 = 6 * 60 * 1000;
/// `COUNT_FOR_FULL_EXPIRATION`.
const COUNT_FOR_FULL_EXPIRATION: i32 = 30;
/// Most timer periods replayed in one call after the clock jumped (one day);
/// beyond that the remaining periods are skipped, keeping the timer phase.
const MAX_CATCH_UP: u32 = 1440;

/// `hash_32(fold(addr), 10)` (schedulers.md §0.7).
pub(super) fn bucket_of(addr: &IpAddr) -> usize {
    let x = match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    };
    (x.wrapping_mul(0x61C8_8647) >> (32 - TAB_BITS)) as usize
}

/// `ip_vs_dest_conn_overhead()` exactly as the kernel computes it: a 32-bit
/// int, `activeconns << 8` plus `inactconns`, wrapping.
#[inline]
pub(super) fn kernel_overhead(d: &Dest) -> i32 {
    (d.active_conns as i32)
        .wrapping_shl(8)
        .wrapping_add(d.inact_conns as i32)
}

/// The kernel's `is_overloaded()` of lblc/lblcr: `activeconns > weight` and
/// some destination of the service (any) has `activeconns * 2 < weight`.
pub(super) fn lblc_overloaded(d: &Dest, dests: DestList<'_>) -> bool {
    (d.active_conns as i32) > d.weight
        && dests
            .iter()
            .any(|x| (x.active_conns as i32).wrapping_mul(2) < x.weight)
}

/// `__ip_vs_lblc_schedule()` / `__ip_vs_lblcr_schedule()`: wlc over the whole
/// service (OVERLOAD skipped, first `weight > 0` starts, strict s64 compare).
pub(super) fn wlc_pick(dests: DestList<'_>) -> Option<usize> {
    super::wlc::least_loaded(dests, Dest::overhead)
}

/// Expiration sysctl in ms.
#[inline]
pub(super) fn secs_ms(s: u32) -> u64 {
    u64::from(s) * 1000
}

/// What the table's garbage collector needs to know about an entry.
pub(super) trait GcEntry {
    fn addr(&self) -> &IpAddr;
    fn lastuse(&self) -> u64;
}

/// The kernel's `ip_vs_lblc_table` / `ip_vs_lblcr_table` with its GC timer.
///
/// Entries are unique per address, so the order inside a bucket never
/// influences a decision (lookups find the one match; the collector always
/// finishes a bucket); buckets are plain vectors.
#[derive(Debug)]
pub(super) struct Table<E> {
    /// `TAB_SIZE` buckets once the first entry is inserted, empty before.
    buckets: Vec<Vec<E>>,
    /// `tbl->entries`: the kernel's counter, not necessarily the number of
    /// entries (lblc's replacement increments it without a decrement).
    pub(super) entries: i32,
    rover: usize,
    counter: i32,
    /// When the periodic timer fires next; armed at the first call that
    /// sees the clock (the hooks that bind the scheduler carry no time).
    next_gc_ms: Option<u64>,
}

impl<E> Default for Table<E> {
    fn default() -> Self {
        Table {
            buckets: Vec::new(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_gc_ms: None,
        }
    }
}

impl<E: GcEntry> Table<E> {
    /// `init_service`: empty table, counter 1, rover 0, timer not armed.
    pub(super) fn reset(&mut self) {
        *self = Table::default();
    }

    pub(super) fn find_mut(&mut self, addr: &IpAddr) -> Option<&mut E> {
        self.buckets
            .get_mut(bucket_of(addr))?
            .iter_mut()
            .find(|e| e.addr() == addr)
    }

    /// `*_hash()`: links a new entry (the caller made sure none exists for
    /// its address) and increments the counter.
    pub(super) fn insert(&mut self, e: E) {
        if self.buckets.is_empty() {
            self.buckets.resize_with(TAB_SIZE, Vec::new);
        }
        let b = bucket_of(e.addr());
        self.buckets[b].push(e);
        self.entries = self.entries.wrapping_add(1);
    }

    /// All entries (any order).
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.buckets.iter_mut().flatten()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Arms the timer if needed and runs every expiry that is due at `now`,
    /// each at its own firing time (the kernel re-arms at firing + 60 s).
    pub(super) fn advance(&mut self, now: u64, expiration_ms: u64) {
        let mut next = *self
            .next_gc_ms
            .get_or_insert(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
        let mut runs = 0;
        while now >= next {
            if runs == MAX_CATCH_UP {
                let skip = (now - next) / CHECK_EXPIRE_INTERVAL_MS + 1;
                next = next.saturating_add(skip.saturating_mul(CHECK_EXPIRE_INTERVAL_MS));
                break;
            }
            self.check_expire(next, expiration_ms);
            next = next.saturating_add(CHECK_EXPIRE_INTERVAL_MS);
            runs += 1;
        }
        self.next_gc_ms = Some(next);
    }

    /// Removes the entries of bucket `j` for which `dead` holds; returns how many.
    fn purge(&mut self, j: usize, dead: impl Fn(&E) -> bool) -> i32 {
        let Some(b) = self.buckets.get_mut(j) else {
            return 0;
        };
        let before = b.len();
        b.retain(|e| !dead(e));
        let n = (before - b.len()) as i32;
        self.entries = self.entries.wrapping_sub(n);
        n
    }

    /// `ip_vs_lblc{,r}_check_expire()` at time `now`.
    pub(super) fn check_expire(&mut self, now: u64, expiration_ms: u64) {
        if self.counter % COUNT_FOR_FULL_EXPIRATION == 0 {
            // Full pass from rover+1 round to rover: rover is unchanged.
            for j in 0..TAB_SIZE {
                self.purge(j, |e| now >= e.lastuse().saturating_add(expiration_ms));
            }
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter = self.counter.wrapping_add(1);
            return;
        }
        let mut goal = self.entries.wrapping_sub(MAX_SIZE).wrapping_mul(4) / 3;
        if goal > MAX_SIZE / 2 {
            goal = MAX_SIZE / 2;
        }
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            let n = self.purge(j, |e| now >= e.lastuse().saturating_add(ENTRY_TIMEOUT_MS));
            goal = goal.wrapping_sub(n);
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

/// One cached mapping: destination address → destination (by uid).
#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    dest_uid: u64,
    /// Where that destination was in the list last time (a lookup hint).
    pos_hint: usize,
    lastuse: u64,
}

impl GcEntry for Entry {
    fn addr(&self) -> &IpAddr {
        &self.addr
    }
    fn lastuse(&self) -> u64 {
        self.lastuse
    }
}

/// Per-service lblc state: the table and its timer.
#[derive(Debug, Default)]
pub struct Lblc {
    tab: Table<Entry>,
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn init(&mut self, _dests: DestList<'_>, _flags: u32) {
        self.tab.reset();
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        pkt: &PacketInfo,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let now = ctx.now_ms;
        self.tab
            .advance(now, secs_ms(ctx.settings.lblc_expiration_s));

        // 1. The cache. A uid no longer in the list is a deleted
        //    destination: not AVAILABLE.
        if let Some(en) = self.tab.find_mut(&pkt.daddr) {
            en.lastuse = now;
            if let Some(i) = dests.position_hinted(en.dest_uid, en.pos_hint) {
                en.pos_hint = i;
                let d = dests.get(i);
                if d.available() && d.weight > 0 && !lblc_overloaded(d, dests) {
                    return Some(i);
                }
            }
        }

        // 2. wlc over the service.
        let n = wlc_pick(dests)?;
        let uid = dests.get(n).uid;

        // 3. ip_vs_lblc_new(): same dest → nothing; other dest → the entry is
        //    unlinked (the counter is NOT decremented, as in the kernel) and a
        //    fresh one linked (counter + 1); none → link a new one.
        let mut replaced = false;
        let mut found = false;
        if let Some(en) = self.tab.find_mut(&pkt.daddr) {
            found = true;
            if en.dest_uid != uid {
                en.dest_uid = uid;
                en.pos_hint = n;
                en.lastuse = now;
                replaced = true;
            }
        }
        if replaced {
            self.tab.entries = self.tab.entries.wrapping_add(1);
        } else if !found {
            self.tab.insert(Entry {
                addr: pkt.daddr,
                dest_uid: uid,
                pos_hint: n,
                lastuse: now,
            });
        }
        Some(n)
    }

    fn tick(&mut self, _dests: DestList<'_>, ctx: &mut SchedCtx<'_>) {
        self.tab
            .advance(ctx.now_ms, secs_ms(ctx.settings.lblc_expiration_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{pkt, Harness};
    use std::net::Ipv4Addr;

    fn to(last: u8) -> PacketInfo {
        PacketInfo {
            daddr: Ipv4Addr::new(198, 18, 0, last).into(),
            ..pkt()
        }
    }

    fn e(a: u32, lastuse: u64) -> Entry {
        Entry {
            addr: IpAddr::V4(Ipv4Addr::from(a)),
            dest_uid: 1,
            pos_hint: 0,
            lastuse,
        }
    }

    #[test]
    fn hash_is_hash_32_of_host_order_address() {
        // 10.0.0.1 = 0x0A000001; * 0x61C88647 = 0x...(mod 2^32) >> 22.
        let x: u32 = 0x0A00_0001u32.wrapping_mul(0x61C8_8647) >> 22;
        assert_eq!(bucket_of(&Ipv4Addr::new(10, 0, 0, 1).into()), x as usize);
        assert_eq!(bucket_of(&Ipv4Addr::new(0, 0, 0, 0).into()), 0);
        assert_eq!(
            bucket_of(&Ipv4Addr::new(0, 0, 0, 1).into()),
            0x61C8_8647 >> 22
        );
        // IPv6 folds by XOR of the four big-endian words.
        let v6: IpAddr = "::a00:1".parse().unwrap();
        assert_eq!(bucket_of(&v6), x as usize);
        let v6b: IpAddr = "1:2:3:4:1:2:3:5".parse().unwrap();
        assert_eq!(
            bucket_of(&v6b),
            bucket_of(&Ipv4Addr::new(0, 0, 0, 1).into())
        );
    }

    #[test]
    fn empty_service_and_default_instance() {
        let mut h = Harness::new("lblc");
        assert_eq!(h.pick(), 0);
        h.tick();
        let mut l = Lblc::default();
        assert_eq!(l.name(), "lblc");
        assert!(l.tab.find_mut(&pkt().daddr).is_none());
    }

    #[test]
    fn sticky_per_destination_address() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick_for(&to(10)), 2); // wlc: tie → front
        h.set_conns(2, 0, 50); // 2 now more loaded (inactive only)
        assert_eq!(h.pick_for(&to(11)), 1); // new address: wlc → 1
        assert_eq!(h.pick_for(&to(10)), 2); // cached, load ignored
        assert_eq!(h.pick_for(&to(11)), 1);
        h.set_conns(1, 0, 100);
        assert_eq!(h.pick_for(&to(11)), 1); // still cached
        assert_eq!(h.pick_for(&to(12)), 2); // wlc: 50 < 100
    }

    #[test]
    fn overload_flag_ignored_on_cache_hit() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_overload(2, true);
        assert_eq!(h.pick(), 2); // cached: OVERLOAD not checked
        assert_eq!(h.pick_for(&to(20)), 1); // wlc skips it
    }

    #[test]
    fn lblc_overloaded_needs_both_conditions() {
        let mut h = Harness::new("lblc");
        h.add(1, 4);
        h.add(2, 2); // list 2 1
        assert_eq!(h.pick(), 2);
        // active 3 > weight 2, but nobody has active*2 < weight: 1 has 2*2 = 4.
        h.set_conns(2, 3, 0);
        h.set_conns(1, 2, 0);
        assert_eq!(h.pick(), 2);
        // active == weight is not over.
        h.set_conns(2, 2, 0);
        h.set_conns(1, 0, 0);
        assert_eq!(h.pick(), 2);
        // Now both: 3 > 2 and 1 has 1*2 < 4 → replaced via wlc (768*4 > 256*2 → 1).
        h.set_conns(2, 3, 0);
        h.set_conns(1, 1, 0);
        assert_eq!(h.pick(), 1);
        // The new mapping sticks.
        h.set_conns(2, 0, 0);
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn lblc_overloaded_witness_may_carry_the_overload_flag() {
        // The witness is any destination: here only the OVERLOAD-flagged one.
        let mut h = Harness::new("lblc");
        h.add(1, 10);
        h.add(2, 1); // list 2 1
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 2, 0); // 2 > 1
        h.set_overload(1, true); // witness 1: 0*2 < 10
                                 // wlc: 1 skipped (OVERLOAD) → 2 itself again; entry unchanged.
        assert_eq!(h.pick(), 2);
        h.set_overload(1, false);
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn weight_zero_cached_destination_falls_back() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_weight(2, 0);
        assert_eq!(h.pick(), 1);
        h.set_weight(2, 1);
        assert_eq!(h.pick(), 1); // mapping replaced
        h.set_weight(1, 0);
        h.set_weight(2, 0);
        assert_eq!(h.pick(), 0); // nothing eligible
    }

    #[test]
    fn deleted_destination_is_not_available() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1);
        h.add(3, 1); // list 3 2 1
        assert_eq!(h.pick(), 3);
        h.set_conns(2, 0, 5);
        h.delete(3);
        assert_eq!(h.pick(), 1); // wlc over the rest
        assert_eq!(h.pick(), 1);
        h.delete(1);
        h.delete(2);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn expiry_by_the_full_pass_every_30th_timer() {
        let mut h = Harness::new("lblc");
        h.settings.lblc_expiration_s = 60;
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick_for(&to(10)), 2); // t = 0: arms the timer for 60 s
        assert_eq!(h.pick_for(&to(11)), 2);
        h.set_conns(2, 0, 10); // wlc now prefers 1
                               // Timers fire at 60 s, 120 s, ...; the 30th (1800 s) is the full pass.
        for s in 1..1800 {
            h.now_ms = s * 1000;
            h.tick();
        }
        h.now_ms = 1_799_999;
        h.tick();
        // Idle far longer than 60 s, but no full pass yet: still cached.
        assert_eq!(h.pick_for(&to(10)), 2); // (refreshes lastuse of 10)
        h.now_ms = 1_800_000;
        h.tick();
        assert_eq!(h.pick_for(&to(11)), 1); // expired → wlc
        assert_eq!(h.pick_for(&to(10)), 2); // used 1 ms ago: kept
    }

    #[test]
    fn entry_used_recently_survives_the_full_pass() {
        let mut h = Harness::new("lblc");
        h.settings.lblc_expiration_s = 100;
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 0, 10);
        h.now_ms = 1_700_001;
        assert_eq!(h.pick(), 2); // lastuse = 1 700 001
        h.now_ms = 1_800_000;
        h.tick(); // full pass: 1 800 000 < 1 700 001 + 100 000 → kept
        assert_eq!(h.pick(), 2);
        // Next full pass at 3 600 000.
        h.now_ms = 3_600_000;
        h.tick();
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn jumping_clock_catches_up_timers() {
        let mut h = Harness::new("lblc");
        h.settings.lblc_expiration_s = 60;
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 0, 10);
        // One call long after: the 30th timer (1800 s) ran in between.
        h.now_ms = 1_900_000;
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn default_expiration_is_a_day() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1);
        assert_eq!(h.pick(), 2);
        h.set_conns(2, 0, 10);
        h.now_ms = 30 * 60_000 * 48; // 48th full pass at exactly 24 h
        h.tick();
        assert_eq!(h.pick(), 1);
    }

    #[test]
    fn replacement_drifts_the_counter_like_the_kernel() {
        let mut h = Harness::new("lblc");
        h.add(1, 1);
        h.add(2, 1);
        let mut l = Lblc::default();
        let mut rng = crate::rng::Rng::new(1);
        let settings = crate::sched::SchedSettings::default();
        let mut ctx = SchedCtx {
            now_ms: 0,
            rng: &mut rng,
            settings: &settings,
        };
        let list = DestList::new(&h.ids, &h.pool);
        assert!(l.schedule(list, &pkt(), &mut ctx).is_some());
        assert_eq!((l.tab.entries, l.tab.len()), (1, 1));
        let front = h.ids[0];
        h.pool[front].weight = 0; // cached one quiesced → replaced
        let list = DestList::new(&h.ids, &h.pool);
        assert!(l.schedule(list, &pkt(), &mut ctx).is_some());
        assert_eq!((l.tab.entries, l.tab.len()), (2, 1));
    }

    #[test]
    fn oversize_collection() {
        let mut t: Table<Entry> = Table::default();
        // 16384 + 300 entries used at t = 0.
        for a in 0..(MAX_SIZE as u32 + 300) {
            t.insert(e(a, 0));
        }
        assert_eq!(t.entries, MAX_SIZE + 300);
        // Over size: idle < 6 min → nothing deleted, all buckets visited,
        // rover back where it was, counter not incremented.
        t.check_expire(60_000, 86_400_000);
        assert_eq!(
            (t.len(), t.rover, t.counter),
            (MAX_SIZE as usize + 300, 0, 1)
        );
        // At 6 min: goal = 300 * 4 / 3 = 400; whole buckets from rover + 1
        // until the bucket where goal dropped to ≤ 0.
        t.check_expire(ENTRY_TIMEOUT_MS, 86_400_000);
        let removed = MAX_SIZE as usize + 300 - t.len();
        assert!(removed >= 400, "{removed}");
        assert_eq!(t.entries as usize, t.len());
        // rover = last bucket visited; every bucket 1..=rover is empty and
        // the bucket before it left goal > 0.
        assert!(t.rover >= 1);
        for j in 1..=t.rover {
            assert!(t.buckets[j].is_empty());
        }
        assert!(!t.buckets[(t.rover + 1) & TAB_MASK].is_empty());
        // Below size again: counter counts.
        t.check_expire(ENTRY_TIMEOUT_MS + 60_000, 86_400_000);
        assert_eq!(t.counter, 2);
    }

    #[test]
    fn oversize_goal_is_capped_and_full_pass_waits() {
        let mut t: Table<Entry> = Table {
            counter: 29,
            ..Table::default()
        };
        for a in 0..(MAX_SIZE as u32 * 2) {
            t.insert(e(a, 0));
        }
        // counter 29: not a full pass; over size → aggressive, goal capped at
        // 8192; counter stays 29 so the full pass never comes while over size.
        t.check_expire(ENTRY_TIMEOUT_MS, 1);
        let removed = MAX_SIZE as usize * 2 - t.len();
        assert!((8192..8192 + 200).contains(&removed), "{removed}");
        assert_eq!(t.counter, 29);
        let rover = t.rover;
        t.check_expire(ENTRY_TIMEOUT_MS, 1); // still over size: continues at rover + 1
        assert!(t.rover != rover);
        assert_eq!(t.counter, 29);
        // Drop below size: counter → 30, then the next firing is the full pass.
        while t.entries > MAX_SIZE {
            t.check_expire(u64::MAX / 2, 1);
        }
        t.check_expire(u64::MAX / 2, 1);
        assert_eq!(t.counter, 30);
        t.check_expire(u64::MAX / 2, 1);
        assert_eq!((t.counter, t.len(), t.entries), (1, 0, 0));
    }
}
