//! IPv4 reassembly of the fragments IPVS would see whole (forwarding.md §1:
//! the host reassembles before LOCAL_IN, and IPVS gathers the fragments of
//! NAT replies itself). The reassembled datagram is then processed like any
//! packet, and fragmented again on output when it is larger than the path
//! MTU (the I/O layer does that, keeping the datagram's ID).
//!
//! Bounded like the kernel's queue: at most `MAX_DATAGRAMS` datagrams in
//! flight (64 KiB each, 4 MiB in all, the default `ipfrag_high_thresh`),
//! each for at most 30 s (`ipfrag_time`); overlapping fragments discard
//! the datagram, as Linux does. Buffers are allocated when first needed
//! and reused after, so steady fragment traffic does not allocate.

use crate::wire::checksum;
use crate::wire::ipv4::Ipv4Packet;

/// Datagrams being reassembled at once.
pub const MAX_DATAGRAMS: usize = 64;
/// How long a datagram may take to arrive whole (`ipfrag_time`).
pub const TIMEOUT_MS: u64 = 30_000;
/// Fragments per datagram kept track of (more: the datagram is dropped).
const MAX_PIECES: usize = 64;
/// Largest datagram payload.
const MAX_PAYLOAD: usize = 65535 - 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    id: u16,
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    expires_ms: u64,
    /// The first fragment's header (offset 0), once it arrived.
    header: Option<([u8; 60], usize)>,
    /// Payload bytes at their offset.
    payload: Vec<u8>,
    /// Byte ranges received, unordered.
    pieces: Vec<(usize, usize)>,
    /// Payload length, once the last fragment (MF clear) arrived.
    total: Option<usize>,
}

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Kept until the rest of its datagram arrives.
    Held,
    /// The datagram is whole: take it with `Reassembly::take(slot, ..)`.
    Complete(usize),
    /// Dropped (overlap, inconsistent lengths, too many datagrams or
    /// pieces); the datagram so far is discarded.
    Dropped,
}

/// The reassembly queue.
#[derive(Debug, Default)]
pub struct Reassembly {
    slots: Vec<Option<Datagram>>,
    spare: Vec<Vec<u8>>,
}

impl Reassembly {
    /// Datagrams currently incomplete.
    pub fn pending(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Adds the fragment `frag` (a whole IPv4 packet with MF set or a
    /// non-zero offset) received at `now`.
    pub fn add(&mut self, now: u64, frag: &[u8]) -> Outcome {
        let Ok(ip) = Ipv4Packet::new_checked(frag) else {
            return Outcome::Dropped;
        };
        self.expire(now);
        let key = Key {
            src: ip.src_bytes(),
            dst: ip.dst_bytes(),
            protocol: ip.protocol(),
            id: ip.ident(),
        };
        let off = usize::from(ip.frag_offset()) * 8;
        let data = ip.payload();
        let end = off + data.len();
        let more = ip.more_frags();
        // Every fragment but the last carries a multiple of 8 bytes.
        if end > MAX_PAYLOAD || (more && data.len() % 8 != 0) || (more && data.is_empty()) {
            self.discard(key);
            return Outcome::Dropped;
        }
        let slot = match self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|d| d.key == key))
        {
            Some(i) => i,
            None => {
                let Some(i) = self.free_slot() else {
                    return Outcome::Dropped;
                };
                let payload = self.spare.pop().unwrap_or_default();
                self.slots[i] = Some(Datagram {
                    key,
                    expires_ms: now + TIMEOUT_MS,
                    header: None,
                    payload,
                    pieces: Vec::new(),
                    total: None,
                });
                i
            }
        };
        let Some(d) = self.slots[slot].as_mut() else {
            return Outcome::Dropped;
        };
        let overlaps = d.pieces.iter().any(|&(a, b)| off < b && a < end);
        let past_end = d.total.is_some_and(|t| end > t || (!more && end != t));
        let short_end = !more && d.pieces.iter().any(|&(_, b)| b > end);
        if overlaps || past_end || short_end || d.pieces.len() >= MAX_PIECES {
            self.discard(key);
            return Outcome::Dropped;
        }
        if d.payload.len() < end {
            d.payload.resize(end.max(d.payload.len()), 0);
        }
        d.payload[off..end].copy_from_slice(data);
        d.pieces.push((off, end));
        if !more {
            d.total = Some(end);
        }
        if off == 0 {
            let hl = ip.header_len();
            let mut h = [0u8; 60];
            h[..hl].copy_from_slice(&frag[..hl]);
            d.header = Some((h, hl));
        }
        let (Some(total), Some(_)) = (d.total, d.header) else {
            return Outcome::Held;
        };
        let covered: usize = d.pieces.iter().map(|&(a, b)| b - a).sum();
        if covered == total {
            Outcome::Complete(slot)
        } else {
            Outcome::Held
        }
    }

    /// Writes the whole datagram of `slot` (see `Outcome::Complete`) into
    /// `out` and frees the slot; returns its length, `None` if `out` is
    /// too small (the datagram is dropped then).
    pub fn take(&mut self, slot: usize, out: &mut [u8]) -> Option<usize> {
        let d = self.slots.get_mut(slot)?.take()?;
        let (h, hl) = d.header?;
        let total = d.total?;
        let len = hl + total;
        let fits = out.len() >= len;
        if fits {
            out[..hl].copy_from_slice(&h[..hl]);
            out[hl..len].copy_from_slice(&d.payload[..total]);
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            // Offset 0, MF clear; DF as the first fragment had it.
            out[6] &= 0x40;
            out[7] = 0;
            out[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&out[..hl]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        self.recycle(d.payload);
        fits.then_some(len)
    }

    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.slots.len() < MAX_DATAGRAMS {
            self.slots.push(None);
            return Some(self.slots.len() - 1);
        }
        None
    }

    fn discard(&mut self, key: Key) {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|d| d.key == key))
        {
            if let Some(d) = self.slots[i].take() {
                self.recycle(d.payload);
            }
        }
    }

    fn expire(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|d| d.expires_ms <= now) {
                if let Some(d) = self.slots[i].take() {
                    self.recycle(d.payload);
                }
            }
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if self.spare.len() < MAX_DATAGRAMS {
            self.spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        v[4..6].copy_from_slice(&0x5600u16.to_be_bytes());
        v[8] = 64;
        v[9] = 17;
        v[12..16].copy_from_slice(&[198, 18, 0, 2]);
        v[16..20].copy_from_slice(&[198, 18, 0, 100]);
        for (i, b) in v[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        v
    }

    fn fragments(v: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2000];
        crate::wire::ipv4::fragment(v, mtu, &mut buf, 0, |f| out.push(f.to_vec())).unwrap();
        out
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram_again() {
        let d = datagram(3000);
        let mut f = fragments(&d, 1000);
        assert_eq!(f.len(), 4);
        f.swap(0, 3);
        f.swap(1, 2);
        let mut r = Reassembly::default();
        let mut out = vec![0u8; 4000];
        for (k, frag) in f.iter().enumerate() {
            match r.add(0, frag) {
                Outcome::Held => assert!(k < 3),
                Outcome::Complete(slot) => {
                    assert_eq!(k, 3);
                    let n = r.take(slot, &mut out).unwrap();
                    assert_eq!(&out[..n], &d[..]);
                }
                Outcome::Dropped => panic!("dropped"),
            }
        }
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn overlaps_time_and_limits_drop_the_datagram() {
        let d = datagram(3000);
        let f = fragments(&d, 1000);
        let mut r = Reassembly::default();
        assert_eq!(r.add(0, &f[0]), Outcome::Held);
        assert_eq!(r.add(0, &f[0]), Outcome::Dropped, "overlap");
        assert_eq!(r.pending(), 0);
        // A datagram that does not complete in 30 s is forgotten.
        assert_eq!(r.add(0, &f[0]), Outcome::Held);
        assert_eq!(r.add(TIMEOUT_MS, &f[1]), Outcome::Held);
        assert_eq!(r.pending(), 1, "the old one expired, the new piece waits");
        // At most MAX_DATAGRAMS at once.
        let mut r = Reassembly::default();
        for id in 0..MAX_DATAGRAMS as u16 {
            let mut g = f[0].clone();
            g[4..6].copy_from_slice(&id.to_be_bytes());
            assert_eq!(r.add(0, &g), Outcome::Held);
        }
        let mut g = f[0].clone();
        g[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(r.add(0, &g), Outcome::Dropped);
        // Garbage never panics.
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 0x45) as u8).collect();
            let _ = r.add(1, &junk);
        }
    }
}
