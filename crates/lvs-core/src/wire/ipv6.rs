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
}
