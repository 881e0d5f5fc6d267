//! IPv6 headers: the fixed header's fields, and the walk over extension
//! headers to the transport header (forwarding.md §2: IPVS finds the
//! transport header past hop-by-hop, routing and destination options,
//! and does not balance fragments it was not given whole).

use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Offsets in the fixed header.
pub mod field {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Next-header values the walk knows.
pub mod nexthdr {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AUTH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NONE: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// Most extension headers walked before giving up (a chain longer than
/// this is malformed for our purposes; the packet is not balanced).
const MAX_EXT: usize = 8;

/// Where the transport header of a checked IPv6 packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// The transport protocol (the last next-header value).
    pub protocol: u8,
    /// Offset of the transport header from the start of the packet.
    pub offset: usize,
    /// The packet carries a fragment header.
    pub fragment: bool,
}

/// Why a buffer is not a usable IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    Truncated,
    NotIpv6,
    /// The payload length says more than the buffer holds (jumbograms,
    /// payload length 0, are not accepted either).
    BadPayloadLen,
    /// An extension header runs past the packet, or the chain is too long.
    BadExtension,
}

/// Checks the fixed header against the buffer and returns the packet's
/// length (header + payload length): bytes past it are link padding.
pub fn check(b: &[u8]) -> Result<usize, Ipv6Error> {
    if b.len() < HEADER_LEN {
        return Err(Ipv6Error::Truncated);
    }
    if b[0] >> 4 != 6 {
        return Err(Ipv6Error::NotIpv6);
    }
    let pl = usize::from(u16::from_be_bytes([b[4], b[5]]));
    if pl == 0 || HEADER_LEN + pl > b.len() {
        return Err(Ipv6Error::BadPayloadLen);
    }
    Ok(HEADER_LEN + pl)
}

/// Walks the extension headers of a packet `check` accepted (`b` cut to
/// its length) to the transport header.
pub fn transport(b: &[u8]) -> Result<Transport, Ipv6Error> {
    let mut next = b[field::NEXT_HEADER];
    let mut at = HEADER_LEN;
    let mut fragment = false;
    for _ in 0..MAX_EXT {
        match next {
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
                let h = b.get(at..at + 2).ok_or(Ipv6Error::BadExtension)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            nexthdr::FRAGMENT => {
                let h = b.get(at..at + 8).ok_or(Ipv6Error::BadExtension)?;
                next = h[0];
                fragment = true;
                at += 8;
            }
            nexthdr::AUTH => {
                let h = b.get(at..at + 2).ok_or(Ipv6Error::BadExtension)?;
                next = h[0];
                at += (usize::from(h[1]) + 2) * 4;
            }
            protocol => {
                if at > b.len() {
                    return Err(Ipv6Error::BadExtension);
                }
                return Ok(Transport {
                    protocol,
                    offset: at,
                    fragment,
                });
            }
        }
    }
    Err(Ipv6Error::BadExtension)
}

pub fn src(b: &[u8]) -> Ipv6Addr {
    addr(b, field::SRC)
}

pub fn dst(b: &[u8]) -> Ipv6Addr {
    addr(b, field::DST)
}

fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

pub fn set_src(b: &mut [u8], a: Ipv6Addr) {
    b[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
}

pub fn set_dst(b: &mut [u8], a: Ipv6Addr) {
    b[field::DST..field::DST + 16].copy_from_slice(&a.octets());
}

/// Splits the IPv6 packet `pkt` (a fixed header without extension
/// headers: the director's own tunnel packets) into fragments of at most
/// `mtu` bytes, each the fixed header, a fragment header (identification
/// `id`) and a part of the payload in 8-byte units, written at
/// `out[reserve..]` and handed to `emit` (with the `reserve` bytes in
/// front). Returns how many, or `None` if it cannot (a too small MTU or
/// buffer, extension headers already there).
pub fn fragment(
    pkt: &[u8],
    mtu: usize,
    id: u32,
    out: &mut [u8],
    reserve: usize,
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    let total = check(pkt).ok()?;
    let next = pkt[field::NEXT_HEADER];
    if matches!(
        next,
        nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::FRAGMENT | nexthdr::DEST_OPTS
    ) {
        return None;
    }
    let payload = &pkt[HEADER_LEN..total];
    let chunk = mtu.checked_sub(HEADER_LEN + 8)? & !7;
    if chunk == 0 || out.len() < reserve + HEADER_LEN + 8 + chunk.min(payload.len()) {
        return None;
    }
    let mut n = 0;
    let mut off = 0;
    while off < payload.len() {
        let take = chunk.min(payload.len() - off);
        let more = off + take < payload.len();
        let f = &mut out[reserve..reserve + HEADER_LEN + 8 + take];
        f[..HEADER_LEN].copy_from_slice(&pkt[..HEADER_LEN]);
        f[field::PAYLOAD_LEN..field::PAYLOAD_LEN + 2]
            .copy_from_slice(&((8 + take) as u16).to_be_bytes());
        f[field::NEXT_HEADER] = nexthdr::FRAGMENT;
        let h = &mut f[HEADER_LEN..HEADER_LEN + 8];
        h[0] = next;
        h[1] = 0;
        let word = (off as u16) | u16::from(more);
        h[2..4].copy_from_slice(&word.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        f[HEADER_LEN + 8..].copy_from_slice(&payload[off..off + take]);
        emit(&out[..reserve + HEADER_LEN + 8 + take]);
        n += 1;
        off += take;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed header with `next` and a payload of `payload`.
    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x60, 0, 0, 0];
        b.extend((payload.len() as u16).to_be_bytes());
        b.extend([next, 64]);
        b.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
        b.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).octets());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn the_walk_skips_options_and_routing_and_notes_fragments() {
        // Hop-by-hop (8 bytes) → destination options (16) → TCP.
        let mut p = vec![nexthdr::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        p.extend([6, 1]);
        p.extend([0u8; 14]);
        p.extend([0u8; 20]);
        let b = packet(nexthdr::HOP_BY_HOP, &p);
        assert_eq!(check(&b), Ok(b.len()));
        assert_eq!(
            transport(&b),
            Ok(Transport {
                protocol: 6,
                offset: 40 + 8 + 16,
                fragment: false
            })
        );
        // A fragment header → UDP.
        let mut p = vec![17, 0, 0, 0, 0, 0, 0, 1];
        p.extend([0u8; 8]);
        let b = packet(nexthdr::FRAGMENT, &p);
        assert_eq!(
            transport(&b),
            Ok(Transport {
                protocol: 17,
                offset: 48,
                fragment: true
            })
        );
        // ESP ends the walk: its payload is opaque.
        let b = packet(nexthdr::ESP, &[0u8; 16]);
        assert_eq!(transport(&b).map(|t| t.protocol), Ok(nexthdr::ESP));
    }

    #[test]
    fn bad_headers_are_refused_without_panic() {
        let ok = packet(6, &[0u8; 20]);
        assert_eq!(check(&ok[..39]), Err(Ipv6Error::Truncated));
        let mut v4 = ok.clone();
        v4[0] = 0x45;
        assert_eq!(check(&v4), Err(Ipv6Error::NotIpv6));
        let mut long = ok.clone();
        long[5] = 200;
        assert_eq!(check(&long), Err(Ipv6Error::BadPayloadLen));
        // An option header whose length runs past the packet.
        let b = packet(nexthdr::HOP_BY_HOP, &[6, 200, 0, 0, 0, 0, 0, 0]);
        assert_eq!(transport(&b), Err(Ipv6Error::BadExtension));
        // A loop of options longer than the walk allows.
        let mut p = Vec::new();
        for _ in 0..12 {
            p.extend([nexthdr::DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let b = packet(nexthdr::DEST_OPTS, &p);
        assert_eq!(transport(&b), Err(Ipv6Error::BadExtension));
        // Every cut of a valid chain: no panic.
        let mut p = vec![nexthdr::ROUTING, 0, 0, 0, 0, 0, 0, 0];
        p.extend([6, 0, 0, 0, 0, 0, 0, 0]);
        p.extend([0u8; 20]);
        let b = packet(nexthdr::HOP_BY_HOP, &p);
        for cut in HEADER_LEN + 1..b.len() {
            let mut c = b[..cut].to_vec();
            c[4..6].copy_from_slice(&((cut - HEADER_LEN) as u16).to_be_bytes());
            let n = check(&c).expect("header fits");
            let t = transport(&c[..n]);
            if let Ok(t) = t {
                assert!(t.offset <= n, "{t:?} past {n}");
            }
        }
    }

    #[test]
    fn fragments_carry_a_fragment_header_and_8_byte_units() {
        let mut p = packet(4, &[0u8; 100]);
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut frags = Vec::new();
        let mut buf = [0u8; 200];
        let n = fragment(&p, 40 + 8 + 44, 0xabcd, &mut buf, 0, |f| {
            frags.push(f.to_vec())
        })
        .unwrap();
        // 44 → 40 bytes a fragment (8-byte units): 40 + 40 + 20.
        assert_eq!(n, 3);
        let sizes: Vec<usize> = frags.iter().map(Vec::len).collect();
        assert_eq!(sizes, [88, 88, 68]);
        for (k, f) in frags.iter().enumerate() {
            assert_eq!(f[6], nexthdr::FRAGMENT);
            assert_eq!(f[40], 4, "the original next header");
            let word = u16::from_be_bytes([f[42], f[43]]);
            assert_eq!(usize::from(word & !7), k * 40, "offset");
            assert_eq!(word & 1, u16::from(k < 2), "more fragments");
            assert_eq!(&f[44..48], &0xabcdu32.to_be_bytes());
            assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), f.len() - 40);
            assert_eq!(&f[48..], &p[40 + k * 40..40 + k * 40 + f.len() - 48]);
        }
        // Too small an MTU, or extension headers already there: refused.
        assert_eq!(fragment(&p, 48, 1, &mut buf, 0, |_| {}), None);
        let hbh = packet(nexthdr::HOP_BY_HOP, &[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(fragment(&hbh, 1280, 1, &mut buf, 0, |_| {}), None);
    }
}
