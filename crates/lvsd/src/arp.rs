//! ARP: answering for the VIPs lvsd owns, gratuitous announcements, and
//! requests for next hops (RFC 826 over Ethernet).

use std::net::Ipv4Addr;

pub const ETH_HDR: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_LEN: usize = 28;
/// Minimum Ethernet payload; short frames are padded.
const MIN_FRAME: usize = 60;

/// A parsed Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// Parses the ARP payload of a frame (after the Ethernet header).
pub fn parse(p: &[u8]) -> Option<Arp> {
    if p.len() < ARP_LEN {
        return None;
    }
    // Ethernet hardware, IPv4 protocol, 6/4 address lengths.
    if p[0..2] != [0, 1] || p[2..4] != [0x08, 0x00] || p[4] != 6 || p[5] != 4 {
        return None;
    }
    let mac = |o: usize| [p[o], p[o + 1], p[o + 2], p[o + 3], p[o + 4], p[o + 5]];
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    Some(Arp {
        op: u16::from_be_bytes([p[6], p[7]]),
        sender_mac: mac(8),
        sender_ip: ip(14),
        target_mac: mac(18),
        target_ip: ip(24),
    })
}

/// Writes a whole Ethernet frame carrying `a` into `out`; returns its length.
pub fn build(out: &mut [u8; MIN_FRAME], eth_dst: [u8; 6], eth_src: [u8; 6], a: &Arp) -> usize {
    out.fill(0);
    out[0..6].copy_from_slice(&eth_dst);
    out[6..12].copy_from_slice(&eth_src);
    out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let p = &mut out[ETH_HDR..];
    p[0..8].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 0]);
    p[6..8].copy_from_slice(&a.op.to_be_bytes());
    p[8..14].copy_from_slice(&a.sender_mac);
    p[14..18].copy_from_slice(&a.sender_ip.octets());
    p[18..24].copy_from_slice(&a.target_mac);
    p[24..28].copy_from_slice(&a.target_ip.octets());
    MIN_FRAME
}

/// The reply to `req` saying that `ip` is at `mac`.
pub fn reply_to(req: &Arp, mac: [u8; 6]) -> Arp {
    Arp {
        op: OP_REPLY,
        sender_mac: mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    }
}

/// A gratuitous ARP request announcing `ip` at `mac`.
pub fn gratuitous(ip: Ipv4Addr, mac: [u8; 6]) -> Arp {
    Arp {
        op: OP_REQUEST,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: [0; 6],
        target_ip: ip,
    }
}

/// A request for `target` from `sender_ip` (0.0.0.0 = probe).
pub fn request(target: Ipv4Addr, sender_ip: Ipv4Addr, mac: [u8; 6]) -> Arp {
    Arp {
        op: OP_REQUEST,
        sender_mac: mac,
        sender_ip,
        target_mac: [0; 6],
        target_ip: target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_reply_roundtrip() {
        let me = [2, 0, 0, 0, 0, 1];
        let peer = [2, 0, 0, 0, 0, 2];
        let q = request(
            Ipv4Addr::new(198, 18, 0, 100),
            Ipv4Addr::new(198, 18, 0, 2),
            peer,
        );
        let mut f = [0u8; MIN_FRAME];
        let n = build(&mut f, [0xff; 6], peer, &q);
        assert_eq!(n, 60);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let parsed = parse(&f[ETH_HDR..]).unwrap();
        assert_eq!(parsed, q);
        let r = reply_to(&parsed, me);
        assert_eq!(r.op, OP_REPLY);
        assert_eq!(r.sender_ip, Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(r.target_mac, peer);
        assert!(parse(&f[ETH_HDR..ETH_HDR + 27]).is_none());
        let mut bad = f;
        bad[ETH_HDR + 4] = 8;
        assert!(parse(&bad[ETH_HDR..]).is_none());
    }

    /// A small deterministic xorshift stream (no extra dependency here).
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Whatever arrives after an Ethernet header with the ARP ethertype:
    /// no panic; whatever parses is an Ethernet/IPv4 ARP message of at
    /// least 28 bytes whose fields are the bytes where RFC 826 puts them,
    /// and it rebuilds to the same message.
    #[test]
    fn parse_survives_arbitrary_payloads() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0;
        for n in 0..20_000 {
            let len = (rnd() % 72) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            // Half the time a valid fixed part, so that the rest is reached;
            // then perhaps one damaged byte in it.
            if n % 2 == 0 && len >= 6 {
                p[..6].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
                if rnd() & 3 == 0 {
                    p[(rnd() % 6) as usize] ^= 1 << (rnd() % 8);
                }
            }
            let Some(a) = parse(&p) else {
                assert!(
                    p.len() < ARP_LEN || p[..6] != [0, 1, 0x08, 0x00, 6, 4],
                    "refused a well-formed message: {p:02x?}"
                );
                continue;
            };
            parsed += 1;
            assert!(p.len() >= ARP_LEN);
            assert_eq!(&p[..6], &[0, 1, 0x08, 0x00, 6, 4]);
            assert_eq!(a.op, u16::from_be_bytes([p[6], p[7]]));
            assert_eq!(a.sender_mac, p[8..14]);
            assert_eq!(a.sender_ip.octets(), p[14..18]);
            assert_eq!(a.target_mac, p[18..24]);
            assert_eq!(a.target_ip.octets(), p[24..28]);
            let mut f = [0u8; MIN_FRAME];
            assert_eq!(build(&mut f, [0xff; 6], [2, 0, 0, 0, 0, 1], &a), MIN_FRAME);
            assert_eq!(parse(&f[ETH_HDR..]), Some(a));
            let r = reply_to(&a, [2, 0, 0, 0, 0, 9]);
            assert_eq!((r.sender_ip, r.target_ip), (a.target_ip, a.sender_ip));
        }
        assert!(parsed > 1_000, "only {parsed} messages parsed");
    }
}
