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
    /// Where the fragment header is (0: none).
    pub frag_at: usize,
    /// Where the next-header byte naming the fragment header is.
    pub frag_next_at: usize,
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
    let mut next_at = field::NEXT_HEADER;
    let mut at = HEADER_LEN;
    let (mut frag_at, mut frag_next_at) = (0, 0);
    for _ in 0..MAX_EXT {
        match next {
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
                let h = b.get(at..at + 2).ok_or(Ipv6Error::BadExtension)?;
                next = h[0];
                next_at = at;
                at += (usize::from(h[1]) + 1) * 8;
            }
            nexthdr::FRAGMENT => {
                let h = b.get(at..at + 8).ok_or(Ipv6Error::BadExtension)?;
                // A second fragment header is not a packet anyone sends.
                if frag_at != 0 {
                    return Err(Ipv6Error::BadExtension);
                }
                next = h[0];
                (frag_at, frag_next_at) = (at, next_at);
                next_at = at;
                at += 8;
                // Past a non-first fragment's header is the middle of the
                // datagram: the walk ends there.
                if u16::from_be_bytes([h[2], h[3]]) & !7 != 0 {
                    return Ok(Transport {
                        protocol: next,
                        offset: at,
                        fragment: true,
                        frag_at,
                        frag_next_at,
                    });
                }
            }
            nexthdr::AUTH => {
                let h = b.get(at..at + 2).ok_or(Ipv6Error::BadExtension)?;
                next = h[0];
                next_at = at;
                at += (usize::from(h[1]) + 2) * 4;
            }
            protocol => {
                if at > b.len() {
                    return Err(Ipv6Error::BadExtension);
                }
                return Ok(Transport {
                    protocol,
                    offset: at,
                    fragment: frag_at != 0,
                    frag_at,
                    frag_next_at,
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

/// The unfragmentable part of a packet `check` accepted (RFC 8200 §4.5):
/// the fixed header, hop-by-hop options, and destination options and
/// routing headers up to the last routing header. Returns its length and
/// the offset of the next-header byte that names what follows it; `None`
/// if the chain runs past the packet or already holds a fragment header.
pub fn unfragmentable(b: &[u8]) -> Option<(usize, usize)> {
    let (mut end, mut next_at) = (HEADER_LEN, field::NEXT_HEADER);
    let (mut at, mut field_at) = (HEADER_LEN, field::NEXT_HEADER);
    for _ in 0..MAX_EXT {
        let next = *b.get(field_at)?;
        match next {
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
                let h = b.get(at..at + 2)?;
                let len = (usize::from(h[1]) + 1) * 8;
                if at + len > b.len() {
                    return None;
                }
                field_at = at;
                at += len;
                // Hop-by-hop and routing headers stay in every fragment;
                // destination options only when a routing header follows.
                if next != nexthdr::DEST_OPTS {
                    (end, next_at) = (at, field_at);
                }
            }
            nexthdr::FRAGMENT => return None,
            _ => return Some((end, next_at)),
        }
    }
    None
}

/// Splits the IPv6 packet `pkt` into fragments of at most `mtu` bytes,
/// each its unfragmentable part (see [`unfragmentable`]), a fragment header
/// (identification `id`) and a part of the rest in 8-byte units, written
/// at `out[reserve..]` and handed to `emit` (with the `reserve` bytes in
/// front). Returns how many, or `None` if it cannot (a too small MTU or
/// buffer, a fragment header already there).
pub fn fragment(
    pkt: &[u8],
    mtu: usize,
    id: u32,
    out: &mut [u8],
    reserve: usize,
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    let total = check(pkt).ok()?;
    let pkt = &pkt[..total];
    let (unfrag, next_at) = unfragmentable(pkt)?;
    let next = pkt[next_at];
    let payload = &pkt[unfrag..];
    let chunk = mtu.checked_sub(unfrag + 8)? & !7;
    if chunk == 0 || out.len() < reserve + unfrag + 8 + chunk.min(payload.len()) {
        return None;
    }
    let mut n = 0;
    let mut off = 0;
    while off < payload.len() {
        let take = chunk.min(payload.len() - off);
        let more = off + take < payload.len();
        let f = &mut out[reserve..reserve + unfrag + 8 + take];
        f[..unfrag].copy_from_slice(&pkt[..unfrag]);
        f[field::PAYLOAD_LEN..field::PAYLOAD_LEN + 2]
            .copy_from_slice(&((unfrag - HEADER_LEN + 8 + take) as u16).to_be_bytes());
        f[next_at] = nexthdr::FRAGMENT;
        let h = &mut f[unfrag..unfrag + 8];
        h[0] = next;
        h[1] = 0;
        let word = (off as u16) | u16::from(more);
        h[2..4].copy_from_slice(&word.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        f[unfrag + 8..].copy_from_slice(&payload[off..off + take]);
        emit(&out[..reserve + unfrag + 8 + take]);
        n += 1;
        off += take;
    }
    Some(n)
}

/// The fields of the fragment header at `at`: offset in bytes, more
/// fragments, identification.
pub fn fragment_fields(b: &[u8], at: usize) -> Option<(usize, bool, u32)> {
    let h = b.get(at..at + 8)?;
    let word = u16::from_be_bytes([h[2], h[3]]);
    Some((
        usize::from(word & !7),
        word & 1 != 0,
        u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
    ))
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
                fragment: false,
                frag_at: 0,
                frag_next_at: 0,
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
                fragment: true,
                frag_at: 40,
                frag_next_at: field::NEXT_HEADER,
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
        // Too small an MTU, or a fragment header already there: refused.
        assert_eq!(fragment(&p, 48, 1, &mut buf, 0, |_| {}), None);
        let fh = packet(nexthdr::FRAGMENT, &[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(fragment(&fh, 1280, 1, &mut buf, 0, |_| {}), None);
    }

    #[test]
    fn the_unfragmentable_part_is_repeated_in_every_fragment() {
        // Hop-by-hop (8) → routing (8) → destination options (8) → UDP:
        // the first two stay in front of the fragment header, the
        // destination options (after the routing header) travel inside.
        let mut p = vec![nexthdr::ROUTING, 0, 0, 0, 0, 0, 0, 0];
        p.extend([nexthdr::DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        p.extend([17, 0, 1, 4, 0, 0, 0, 0]);
        p.extend((0..100).map(|i| i as u8));
        let b = packet(nexthdr::HOP_BY_HOP, &p);
        assert_eq!(unfragmentable(&b), Some((56, 48)));
        let mut frags = Vec::new();
        let mut buf = [0u8; 400];
        let n = fragment(&b, 56 + 8 + 48, 7, &mut buf, 0, |f| frags.push(f.to_vec())).unwrap();
        assert_eq!(n, 3, "108 bytes in 48-byte pieces");
        for (k, f) in frags.iter().enumerate() {
            assert_eq!(&f[..4], &b[..4]);
            assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), f.len() - 40);
            assert_eq!(f[40], nexthdr::ROUTING, "hop-by-hop kept");
            assert_eq!(f[48], nexthdr::FRAGMENT, "routing header names it");
            assert_eq!(f[56], nexthdr::DEST_OPTS, "what followed");
            let t = transport(f).unwrap();
            assert_eq!((t.frag_at, t.frag_next_at), (56, 48));
            let (off, more, id) = fragment_fields(f, t.frag_at).unwrap();
            assert_eq!((off, more, id), (k * 48, k < 2, 7));
        }
        // Destination options alone (no routing header) are fragmentable.
        let d = packet(nexthdr::DEST_OPTS, &[17, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(unfragmentable(&d), Some((40, field::NEXT_HEADER)));
    }
}
