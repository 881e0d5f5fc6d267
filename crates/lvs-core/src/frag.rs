//! Reassembly of the fragments IPVS would see whole (forwarding.md §1).
//! IPv4: the host reassembles before LOCAL_IN, and IPVS gathers the
//! fragments of NAT replies itself; the datagram is fragmented again on
//! output when it is larger than the path MTU (the I/O layer does that,
//! keeping the datagram's ID). IPv6: the netfilter defragmenter gathers
//! them and remembers the largest fragment, which bounds the MTU check
//! and the fragments made again on output (the fragment header is
//! removed; the headers in front of it, the unfragmentable part, are the
//! first fragment's).
//!
//! Bounded like the kernel's queue: at most `MAX_DATAGRAMS` datagrams in
//! flight (64 KiB each, 4 MiB in all, the default `ipfrag_high_thresh`),
//! each for at most 30 s (`ipfrag_time`); overlapping fragments discard
//! the datagram, as Linux does. Buffers are allocated when first needed
//! and reused after, so steady fragment traffic does not allocate.

use crate::wire::checksum;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6;

/// Datagrams being reassembled at once.
pub const MAX_DATAGRAMS: usize = 64;
/// How long a datagram may take to arrive whole (`ipfrag_time`).
pub const TIMEOUT_MS: u64 = 30_000;
/// Fragments per datagram kept track of (more: the datagram is dropped).
const MAX_PIECES: usize = 64;
/// Largest datagram payload.
const MAX_PAYLOAD: usize = 65535 - 20;
/// Largest first-fragment header kept (an IPv4 header with options, or an
/// IPv6 fixed header with the extension headers in front of the fragment
/// header); a datagram with more is dropped.
const MAX_HEADER: usize = 128;

/// A datagram's identity: IPv4 (source, destination, protocol, 16-bit
/// ID) or IPv6 (source, destination, 32-bit identification; protocol 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    protocol: u8,
    id: u32,
}

/// One fragment, as the family's parser sees it.
struct Piece<'a> {
    key: Key,
    /// Payload offset in bytes, and whether more follow.
    off: usize,
    more: bool,
    data: &'a [u8],
    /// The first fragment's header (what the datagram gets in front), and
    /// for IPv6 where its next-header byte naming the fragment header is
    /// and what the fragment header said follows.
    header: &'a [u8],
    fixup: Option<(usize, u8)>,
    /// The fragment's size on the wire (IP header included).
    size: usize,
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    expires_ms: u64,
    /// The first fragment's header (offset 0), once it arrived, and the
    /// IPv6 next-header fixup.
    header: Option<([u8; MAX_HEADER], usize)>,
    fixup: Option<(usize, u8)>,
    /// The largest fragment seen (IP header included).
    largest: usize,
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
    /// The datagram is whole: take it with `Reassembly::take(slot, ..)`
    /// (the slot, and the largest fragment's size).
    Complete(usize, u16),
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
        let mut key = Key {
            v6: false,
            src: [0; 16],
            dst: [0; 16],
            protocol: ip.protocol(),
            id: u32::from(ip.ident()),
        };
        key.src[..4].copy_from_slice(&ip.src_bytes());
        key.dst[..4].copy_from_slice(&ip.dst_bytes());
        let hl = ip.header_len();
        self.add_piece(
            now,
            Piece {
                key,
                off: usize::from(ip.frag_offset()) * 8,
                more: ip.more_frags(),
                data: ip.payload(),
                header: &frag[..hl],
                fixup: None,
                size: ip.total_len(),
            },
        )
    }

    /// Adds the IPv6 fragment `frag` (a packet `ipv6::check` accepted, cut
    /// to its length, whose fragment header is at `t.frag_at`).
    pub fn add_v6(&mut self, now: u64, frag: &[u8], t: &ipv6::Transport) -> Outcome {
        let Some((off, more, id)) = ipv6::fragment_fields(frag, t.frag_at) else {
            return Outcome::Dropped;
        };
        let mut key = Key {
            v6: true,
            src: [0; 16],
            dst: [0; 16],
            protocol: 0,
            id,
        };
        key.src = ipv6::src(frag).octets();
        key.dst = ipv6::dst(frag).octets();
        let (Some(data), Some(header), Some(&next)) = (
            frag.get(t.frag_at + 8..),
            frag.get(..t.frag_at),
            frag.get(t.frag_at),
        ) else {
            return Outcome::Dropped;
        };
        self.add_piece(
            now,
            Piece {
                key,
                off,
                more,
                data,
                header,
                fixup: Some((t.frag_next_at, next)),
                size: frag.len(),
            },
        )
    }

    fn add_piece(&mut self, now: u64, p: Piece<'_>) -> Outcome {
        self.expire(now);
        let Piece {
            key,
            off,
            more,
            data,
            ..
        } = p;
        let end = off + data.len();
        // Every fragment but the last carries a multiple of 8 bytes.
        let max = if key.v6 {
            usize::from(u16::MAX).saturating_sub(p.header.len().saturating_sub(ipv6::HEADER_LEN))
        } else {
            MAX_PAYLOAD
        };
        if end > max
            || (more && data.len() % 8 != 0)
            || (more && data.is_empty())
            || (off == 0 && p.header.len() > MAX_HEADER)
        {
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
                    fixup: None,
                    largest: 0,
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
            let hl = p.header.len();
            let mut h = [0u8; MAX_HEADER];
            h[..hl].copy_from_slice(p.header);
            d.header = Some((h, hl));
            d.fixup = p.fixup;
        }
        d.largest = d.largest.max(p.size);
        let (Some(total), Some(_)) = (d.total, d.header) else {
            return Outcome::Held;
        };
        let covered: usize = d.pieces.iter().map(|&(a, b)| b - a).sum();
        if covered == total {
            Outcome::Complete(slot, d.largest.min(usize::from(u16::MAX)) as u16)
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
            if let Some((at, next)) = d.fixup {
                // IPv6: the fragment header is gone; what it said follows
                // is named by the header in front of it.
                let pl = (len - ipv6::HEADER_LEN) as u16;
                out[ipv6::field::PAYLOAD_LEN..ipv6::field::PAYLOAD_LEN + 2]
                    .copy_from_slice(&pl.to_be_bytes());
                out[at] = next;
            } else {
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                // Offset 0, MF clear; DF as the first fragment had it.
                out[6] &= 0x40;
                out[7] = 0;
                out[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(&out[..hl]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
            }
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
                Outcome::Complete(slot, largest) => {
                    assert_eq!(k, 3);
                    assert_eq!(largest, 996, "20 + 976");
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
