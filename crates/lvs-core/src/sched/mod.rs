//! Schedulers: one module each behind one small trait, as in the kernel
//! (schedulers.md). A scheduler sees the service's destination list in list
//! order (front first) and returns an index into it.

use crate::service::{Dest, DestId};
use crate::slab::Slab;
use std::net::IpAddr;

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod srcdst;
mod twos;
mod wlc;
mod wrr;

pub use dh::Dh;
pub use fo::Fo;
pub use lblc::Lblc;
pub use lblcr::Lblcr;
pub use lc::Lc;
pub use mh::Mh;
pub use nq::Nq;
pub use ovf::Ovf;
pub use rr::Rr;
pub use sed::Sed;
pub use sh::Sh;
pub use srcdst::Srcdst;
pub use twos::Twos;
pub use wlc::Wlc;
pub use wrr::Wrr;

/// The destination list of a service, front first, resolved through the pool.
#[derive(Clone, Copy)]
pub struct DestList<'a> {
    ids: &'a [DestId],
    pool: &'a Slab<Dest>,
}

impl<'a> DestList<'a> {
    pub fn new(ids: &'a [DestId], pool: &'a Slab<Dest>) -> Self {
        DestList { ids, pool }
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// The destination at list position `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &'a Dest {
        &self.pool[self.ids[i]]
    }
    /// List position of the destination whose `uid` is `uid`, if it is
    /// still in the list (schedulers that remember destinations across
    /// calls, like lblc, hold uids, never positions).
    pub fn position_of(&self, uid: u64) -> Option<usize> {
        self.iter().position(|d| d.uid == uid)
    }
    /// `position_of` that first tries where the destination was last seen:
    /// O(1) until the list changes.
    #[inline]
    pub fn position_hinted(&self, uid: u64, hint: usize) -> Option<usize> {
        if hint < self.len() && self.get(hint).uid == uid {
            return Some(hint);
        }
        self.position_of(uid)
    }
    pub fn iter(&self) -> impl Iterator<Item = &'a Dest> + 'a {
        let pool = self.pool;
        self.ids.iter().map(move |&id| &pool[id])
    }
}

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    pub protocol: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// Scheduler flag bit 1 (`-b sh-fallback` / `mh-fallback` / `flag-1`).
pub const SCHED_F_FALLBACK: u32 = 0x0008;
/// Scheduler flag bit 2 (`-b sh-port` / `mh-port` / `flag-2`).
pub const SCHED_F_PORT: u32 = 0x0010;
/// Scheduler flag bit 3 (`flag-3`).
pub const SCHED_F_3: u32 = 0x0020;

/// Run-time knobs (sysctls) that schedulers read.
#[derive(Debug, Clone)]
pub struct SchedSettings {
    /// `lblc_expiration`, seconds (default 86400).
    pub lblc_expiration_s: u32,
    /// `lblcr_expiration`, seconds (default 86400).
    pub lblcr_expiration_s: u32,
    /// The two values as written: the kernel accepts negative values and
    /// reads them back unchanged; they act like 0 here (entries are due at
    /// the next check), except for lblcr's same-millisecond `lastmod`
    /// comparison (kernel: strictly after `lastmod - x`).
    pub lblc_expiration_written: i64,
    pub lblcr_expiration_written: i64,
}

impl Default for SchedSettings {
    fn default() -> Self {
        SchedSettings {
            lblc_expiration_s: 24 * 60 * 60,
            lblcr_expiration_s: 24 * 60 * 60,
            lblc_expiration_written: 24 * 60 * 60,
            lblcr_expiration_written: 24 * 60 * 60,
        }
    }
}

/// What a scheduling call may use besides the list and the packet: the
/// engine's clock, its seeded random source, and the sysctls.
pub struct SchedCtx<'a> {
    /// Engine time in milliseconds.
    pub now_ms: u64,
    pub rng: &'a mut crate::rng::Rng,
    pub settings: &'a SchedSettings,
}

/// One scheduling algorithm bound to one service. The hooks mirror the
/// kernel's: they run after the list has changed.
pub trait Scheduler: Send {
    /// Kernel name (`rr`, `wrr`, ...).
    fn name(&self) -> &'static str;
    /// Bound to the service (at creation or when the scheduler is changed).
    /// `flags` are the service's scheduler flag bits (`SCHED_F_*`).
    fn init(&mut self, _dests: DestList<'_>, _flags: u32) {}
    /// A destination was inserted at list position `index` (always 0).
    fn add_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// The destination that was at `index` was unlinked (explicit delete).
    fn del_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// The destination at `index` was edited.
    fn upd_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// The service's scheduler flags changed (`ipvsadm -E` with the same
    /// scheduler). The kernel reads the flags at every decision; schedulers
    /// that use them store the new value here, keeping all other state.
    fn set_flags(&mut self, _flags: u32) {}
    /// Picks a destination for a new connection, or `None`.
    fn schedule(
        &mut self,
        dests: DestList<'_>,
        pkt: &PacketInfo,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize>;
    /// Called regularly (at least every second) with the engine's time, for
    /// schedulers with their own timers (lblc/lblcr garbage collection).
    fn tick(&mut self, _dests: DestList<'_>, _ctx: &mut SchedCtx<'_>) {}
}

/// Kernel names of the schedulers this build provides (and `srcdst`, the
/// director language's source+destination hash).
pub const AVAILABLE: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos", "dh", "sh", "srcdst", "mh", "lblc",
    "lblcr",
];

/// Creates the scheduler called `name`, if this build offers it.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    if !AVAILABLE.contains(&name) {
        return None;
    }
    construct(name)
}

/// Every scheduler module (a module can be registered here before it is
/// offered through AVAILABLE; tests reach them all).
fn construct(name: &str) -> Option<Box<dyn Scheduler>> {
    Some(match name {
        "rr" => Box::<Rr>::default(),
        "wrr" => Box::<Wrr>::default(),
        "lc" => Box::<Lc>::default(),
        "wlc" => Box::<Wlc>::default(),

        "sed" => Box::<Sed>::default(),
        "nq" => Box::<Nq>::default(),
        "fo" => Box::<Fo>::default(),
        "ovf" => Box::<Ovf>::default(),
        "twos" => Box::<Twos>::default(),
        "dh" => Box::<Dh>::default(),
        "sh" => Box::<Sh>::default(),
        "srcdst" => Box::<Srcdst>::default(),
        "mh" => Box::<Mh>::default(),
        "lblc" => Box::<Lblc>::default(),
        "lblcr" => Box::<Lblcr>::default(),
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A service-less harness: a pool and a list in front-first order.
    use super::*;
    use crate::service::{Forward, DEST_F_AVAILABLE, DEST_F_OVERLOAD};
    use crate::stats::Counters;
    use std::net::Ipv4Addr;

    pub struct Harness {
        pub pool: Slab<Dest>,
        pub ids: Vec<DestId>,
        pub sched: Box<dyn Scheduler>,
        pub rng: crate::rng::Rng,
        pub settings: SchedSettings,
        pub now_ms: u64,
        next_uid: u64,
    }

    pub fn pkt() -> PacketInfo {
        PacketInfo {
            protocol: 6,
            saddr: Ipv4Addr::new(198, 18, 0, 2).into(),
            sport: 40000,
            daddr: Ipv4Addr::new(198, 18, 0, 100).into(),
            dport: 80,
        }
    }

    impl Harness {
        pub fn new(name: &str) -> Self {
            Self::with_flags(name, 0)
        }
        pub fn with_flags(name: &str, flags: u32) -> Self {
            let mut h = Harness {
                pool: Slab::default(),
                ids: vec![],
                sched: construct(name).unwrap(),
                rng: crate::rng::Rng::new(1),
                settings: SchedSettings::default(),
                now_ms: 0,
                next_uid: 1,
            };
            h.sched.init(DestList::new(&h.ids, &h.pool), flags);
            h
        }
        /// `ipvsadm -a`: the destination named by its last octet goes to the front.
        pub fn add(&mut self, octet: u8, weight: i32) {
            self.next_uid += 1;
            let id = self.pool.insert(Dest {
                tunnel: Default::default(),
                addr: Ipv4Addr::new(198, 18, 1, octet).into(),
                port: 80,
                forward: Forward::Masq,
                weight,
                last_weight: weight,
                u_threshold: 0,
                l_threshold: 0,
                active_conns: 0,
                inact_conns: 0,
                persist_conns: 0,
                flags: DEST_F_AVAILABLE,
                svc: 0,
                uid: self.next_uid,
                svc_key: crate::service::ServiceKey {
                    protocol: 6,
                    addr: pkt().daddr,
                    port: 80,
                },
                refs: 0,
                trash_idle_since: None,
                stats: Counters::default(),
            });
            self.ids.insert(0, id);
            self.sched.add_dest(DestList::new(&self.ids, &self.pool), 0);
        }
        pub fn pos(&self, octet: u8) -> usize {
            self.ids
                .iter()
                .position(|&id| self.octet(id) == octet)
                .unwrap()
        }
        fn octet(&self, id: DestId) -> u8 {
            match self.pool[id].addr {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(_) => unreachable!(),
            }
        }
        pub fn set_weight(&mut self, octet: u8, weight: i32) {
            let i = self.pos(octet);
            let id = self.ids[i];
            self.pool[id].weight = weight;
            if weight != 0 {
                self.pool[id].last_weight = weight;
            }
            self.sched.upd_dest(DestList::new(&self.ids, &self.pool), i);
        }
        pub fn set_overload(&mut self, octet: u8, on: bool) {
            let id = self.ids[self.pos(octet)];
            if on {
                self.pool[id].flags |= DEST_F_OVERLOAD;
            } else {
                self.pool[id].flags &= !DEST_F_OVERLOAD;
            }
        }
        pub fn set_conns(&mut self, octet: u8, active: u32, inactive: u32) {
            let id = self.ids[self.pos(octet)];
            self.pool[id].active_conns = active;
            self.pool[id].inact_conns = inactive;
        }
        pub fn delete(&mut self, octet: u8) {
            let i = self.pos(octet);
            let id = self.ids.remove(i);
            self.pool[id].flags &= !DEST_F_AVAILABLE;
            self.sched.del_dest(DestList::new(&self.ids, &self.pool), i);
        }
        /// One scheduling decision: the last octet of the chosen destination, 0 for none.
        pub fn pick(&mut self) -> u8 {
            self.pick_for(&pkt())
        }
        /// One decision for a given packet.
        pub fn pick_for(&mut self, p: &PacketInfo) -> u8 {
            let mut ctx = SchedCtx {
                now_ms: self.now_ms,
                rng: &mut self.rng,
                settings: &self.settings,
            };
            match self
                .sched
                .schedule(DestList::new(&self.ids, &self.pool), p, &mut ctx)
            {
                Some(i) => self.octet(self.ids[i]),
                None => 0,
            }
        }
        pub fn picks(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.pick()).collect()
        }
        /// Runs the scheduler's periodic hook at the harness time.
        #[allow(dead_code)]
        pub fn tick(&mut self) {
            let mut ctx = SchedCtx {
                now_ms: self.now_ms,
                rng: &mut self.rng,
                settings: &self.settings,
            };
            self.sched
                .tick(DestList::new(&self.ids, &self.pool), &mut ctx);
        }
    }
}
