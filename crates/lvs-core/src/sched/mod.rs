//! Schedulers: one module each behind one small trait, as in the kernel
//! (schedulers.md). A scheduler sees the service's destination list in list
//! order (front first) and returns an index into it.

use crate::service::{Dest, DestId};
use crate::slab::Slab;
use std::net::IpAddr;

mod lc;
mod rr;
mod wlc;
mod wrr;

pub use lc::Lc;
pub use rr::Rr;
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

/// One scheduling algorithm bound to one service. The hooks mirror the
/// kernel's: they run after the list has changed.
pub trait Scheduler: Send {
    /// Kernel name (`rr`, `wrr`, ...).
    fn name(&self) -> &'static str;
    /// Bound to the service (at creation or when the scheduler is changed).
    fn init(&mut self, _dests: DestList<'_>) {}
    /// A destination was inserted at list position `index` (always 0).
    fn add_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// The destination that was at `index` was unlinked (explicit delete).
    fn del_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// The destination at `index` was edited.
    fn upd_dest(&mut self, _dests: DestList<'_>, _index: usize) {}
    /// Picks a destination for a new connection, or `None`.
    fn schedule(&mut self, dests: DestList<'_>, pkt: &PacketInfo) -> Option<usize>;
}

/// Kernel names of the schedulers this build provides.
pub const AVAILABLE: &[&str] = &["rr", "wrr", "lc", "wlc"];

/// Creates the scheduler called `name`, if this build has it.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    Some(match name {
        "rr" => Box::new(Rr::default()),
        "wrr" => Box::new(Wrr::default()),
        "lc" => Box::new(Lc),
        "wlc" => Box::new(Wlc),
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
            let mut h = Harness {
                pool: Slab::default(),
                ids: vec![],
                sched: by_name(name).unwrap(),
            };
            h.sched.init(DestList::new(&h.ids, &h.pool));
            h
        }
        /// `ipvsadm -a`: the destination named by its last octet goes to the front.
        pub fn add(&mut self, octet: u8, weight: i32) {
            let id = self.pool.insert(Dest {
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
                svc_key: crate::service::ServiceKey {
                    protocol: 6,
                    addr: pkt().daddr,
                    port: 80,
                },
                refs: 0,
                stats: Counters::default(),
            });
            self.ids.insert(0, id);
            self.sched.add_dest(DestList::new(&self.ids, &self.pool), 0);
        }
        fn pos(&self, octet: u8) -> usize {
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
            self.ids.remove(i);
            self.sched.del_dest(DestList::new(&self.ids, &self.pool), i);
        }
        /// One scheduling decision: the last octet of the chosen destination, 0 for none.
        pub fn pick(&mut self) -> u8 {
            match self
                .sched
                .schedule(DestList::new(&self.ids, &self.pool), &pkt())
            {
                Some(i) => self.octet(self.ids[i]),
                None => 0,
            }
        }
        pub fn picks(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.pick()).collect()
        }
    }
}
