//! Frames waiting for a neighbour's MAC address, like the kernel's
//! unresolved-neighbour queue: instead of dropping the first packet towards
//! a real server (or client) lvsd has not ARPed yet — which costs a TCP
//! client a 1 s SYN retransmission — a few frames are parked until the ARP
//! reply arrives, then sent; unanswered ones are dropped after a second.
//!
//! The pool is allocated once; parking copies the frame (this path only runs
//! on a neighbour miss). Frames larger than a slot (GSO super-packets) are
//! not parked.

use crate::io::{Offload, PortId};
use std::net::IpAddr;

/// Frame slots in the pool.
pub const SLOTS: usize = 64;
/// Largest frame that can be parked (a full-size Ethernet frame).
pub const SLOT_BYTES: usize = 1600;
/// At most this many frames wait for one neighbour.
pub const PER_NEIGHBOUR: usize = 16;
/// A parked frame older than this is dropped.
pub const MAX_WAIT_MS: u64 = 1000;

#[derive(Clone, Copy)]
struct Meta {
    port: PortId,
    hop: IpAddr,
    len: usize,
    offload: Offload,
    since_ms: u64,
}

/// The pool of parked frames.
pub struct Pending {
    buf: Vec<u8>,
    meta: [Option<Meta>; SLOTS],
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            buf: vec![0u8; SLOTS * SLOT_BYTES],
            meta: [None; SLOTS],
        }
    }
}

impl Pending {
    /// Parks `frame` until the MAC of `hop` on `port` is known. False if it
    /// cannot be parked (too large, pool or per-neighbour limit full).
    pub fn park(
        &mut self,
        port: PortId,
        hop: IpAddr,
        frame: &[u8],
        offload: Offload,
        now_ms: u64,
    ) -> bool {
        if frame.len() > SLOT_BYTES {
            return false;
        }
        let waiting = self
            .meta
            .iter()
            .flatten()
            .filter(|m| m.port == port && m.hop == hop)
            .count();
        if waiting >= PER_NEIGHBOUR {
            return false;
        }
        let Some(k) = self.meta.iter().position(Option::is_none) else {
            return false;
        };
        self.buf[k * SLOT_BYTES..k * SLOT_BYTES + frame.len()].copy_from_slice(frame);
        self.meta[k] = Some(Meta {
            port,
            hop,
            len: frame.len(),
            offload,
            since_ms: now_ms,
        });
        true
    }

    /// Hands every frame waiting for `hop` on `port` to `send` (oldest slot
    /// first), frees their slots, and returns how many there were.
    pub fn release(
        &mut self,
        port: PortId,
        hop: IpAddr,
        mut send: impl FnMut(&mut [u8], Offload),
    ) -> usize {
        let mut n = 0;
        for k in 0..SLOTS {
            let Some(m) = self.meta[k] else { continue };
            if m.port == port && m.hop == hop {
                send(
                    &mut self.buf[k * SLOT_BYTES..k * SLOT_BYTES + m.len],
                    m.offload,
                );
                self.meta[k] = None;
                n += 1;
            }
        }
        n
    }

    /// Drops frames that waited longer than `MAX_WAIT_MS`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        for m in self.meta.iter_mut() {
            if m.is_some_and(|x| now_ms.saturating_sub(x.since_ms) > MAX_WAIT_MS) {
                *m = None;
                n += 1;
            }
        }
        n
    }

    /// Whether anything is waiting (cheap check before `release`).
    pub fn is_empty(&self) -> bool {
        self.meta.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11));
    // An IPv6 next hop waits in the same pool.
    const B: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12));

    #[test]
    fn parked_frames_go_out_when_their_neighbour_answers() {
        let mut p = Pending::default();
        let off = Offload {
            csum_partial: true,
            csum_start: 34,
            csum_offset: 16,
            ..Offload::default()
        };
        assert!(p.park(1, A, &[1, 2, 3], off, 0));
        assert!(p.park(1, B, &[9], Offload::default(), 0));
        assert!(p.park(1, A, &[4, 5], off, 10));
        let mut sent = Vec::new();
        assert_eq!(p.release(1, A, |f, o| sent.push((f.to_vec(), o))), 2);
        assert_eq!(sent, vec![(vec![1, 2, 3], off), (vec![4, 5], off)]);
        assert_eq!(p.release(1, A, |_, _| panic!("nothing left for A")), 0);
        assert_eq!(p.release(0, B, |_, _| panic!("other port")), 0);
        assert!(!p.is_empty());
        assert_eq!(p.release(1, B, |_, _| {}), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn limits_and_expiry() {
        let mut p = Pending::default();
        assert!(
            !p.park(0, A, &[0u8; SLOT_BYTES + 1], Offload::default(), 0),
            "too large"
        );
        for _ in 0..PER_NEIGHBOUR {
            assert!(p.park(0, A, &[1], Offload::default(), 0));
        }
        assert!(
            !p.park(0, A, &[1], Offload::default(), 0),
            "per-neighbour limit"
        );
        let mut k = 0u8;
        while p.park(
            0,
            Ipv4Addr::new(198, 18, 2, k / 8).into(),
            &[k],
            Offload::default(),
            500,
        ) {
            k += 1;
        }
        assert_eq!(usize::from(k), SLOTS - PER_NEIGHBOUR, "pool limit");
        assert_eq!(p.expire(1000), 0);
        assert_eq!(p.expire(1001), PER_NEIGHBOUR);
        assert_eq!(p.expire(1501), SLOTS - PER_NEIGHBOUR);
        assert!(p.is_empty());
    }
}
