//! IPv6 neighbour discovery (RFC 4861) over Ethernet: what ARP is to IPv4.
//! lvsd answers neighbour solicitations for its IPv6 VIPs, announces them
//! with unsolicited neighbour advertisements, and solicits the link-layer
//! address of its IPv6 next hops.

use crate::arp::ETH_HDR;
use std::net::Ipv6Addr;

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
pub const NEIGHBOUR_SOLICIT: u8 = 135;
pub const NEIGHBOUR_ADVERT: u8 = 136;
/// Option types: source and target link-layer address.
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Advertisement flags (first byte of the reserved word).
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
/// A solicitation or advertisement with one link-layer option.
const MSG_LEN: usize = 24 + 8;
/// The all-nodes group, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A parsed neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ndp {
    pub kind: u8,
    /// The IPv6 source of the message (unspecified for duplicate address
    /// detection).
    pub src: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The link-layer address option (source for a solicitation, target
    /// for an advertisement), if present.
    pub mac: Option<[u8; 6]>,
    pub solicited: bool,
}

/// Parses an IPv6 packet (from its fixed header) as a neighbour
/// solicitation or advertisement; `None` for anything else or anything
/// RFC 4861 §7.1 says to discard (hop limit not 255, bad checksum, code not
/// 0, short message, malformed options).
pub fn parse(ip: &[u8]) -> Option<Ndp> {
    let total = lvs_core::wire::ipv6::check(ip).ok()?;
    let ip = &ip[..total];
    if ip[6] != ICMPV6 || ip[7] != 255 {
        return None;
    }
    let m = &ip[40..];
    if m.len() < 24 || m[1] != 0 || !matches!(m[0], NEIGHBOUR_SOLICIT | NEIGHBOUR_ADVERT) {
        return None;
    }
    let src = lvs_core::wire::ipv6::src(ip);
    let dst = lvs_core::wire::ipv6::dst(ip);
    if checksum(src, dst, m) != 0 {
        return None;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&m[8..24]);
    let target = Ipv6Addr::from(t);
    if target.is_multicast() {
        return None;
    }
    let want = if m[0] == NEIGHBOUR_SOLICIT {
        OPT_SOURCE_LL
    } else {
        OPT_TARGET_LL
    };
    let mut mac = None;
    let mut o = &m[24..];
    while o.len() >= 2 {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > o.len() {
            return None;
        }
        if o[0] == want && len == 8 {
            let mut a = [0u8; 6];
            a.copy_from_slice(&o[2..8]);
            mac = Some(a);
        }
        o = &o[len..];
    }
    Some(Ndp {
        kind: m[0],
        src,
        target,
        mac,
        solicited: m[4] & FLAG_SOLICITED != 0,
    })
}

/// ICMPv6 checksum over the pseudo-header and `m` (0 when `m` holds a
/// correct one).
fn checksum(src: Ipv6Addr, dst: Ipv6Addr, m: &[u8]) -> u16 {
    use lvs_core::wire::checksum as c;
    let sum = c::pseudo_v6(src.octets(), dst.octets(), ICMPV6, m.len() as u32);
    !c::fold(c::add_bytes(sum, m))
}

/// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address of IPv6 multicast group `g` (33:33 + its last
/// 32 bits).
pub fn multicast_mac(g: Ipv6Addr) -> [u8; 6] {
    let o = g.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// Writes a whole frame: Ethernet, IPv6 (hop limit 255), and a neighbour
/// solicitation or advertisement for `target` with one link-layer option
/// carrying `our_mac`. Returns its length.
#[allow(clippy::too_many_arguments)]
fn build(
    out: &mut [u8],
    kind: u8,
    flags: u8,
    eth_dst: [u8; 6],
    our_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
) -> usize {
    let n = ETH_HDR + 40 + MSG_LEN;
    let f = &mut out[..n];
    f.fill(0);
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[ETH_HDR..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(MSG_LEN as u16).to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let m = &mut ip[40..];
    m[0] = kind;
    m[4] = flags;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = if kind == NEIGHBOUR_SOLICIT {
        OPT_SOURCE_LL
    } else {
        OPT_TARGET_LL
    };
    m[25] = 1;
    m[26..32].copy_from_slice(&our_mac);
    let c = checksum(src, dst, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    n
}

/// Frame buffer size for `advert`, `solicit` and `announce`.
pub const FRAME: usize = ETH_HDR + 40 + MSG_LEN;

/// The advertisement answering solicitation `s` (received from
/// `their_mac`) for our address `s.target`: solicited and override set,
/// to the soliciting node — or to all nodes when it solicited from the
/// unspecified address (duplicate address detection, §7.2.4).
pub fn advert(out: &mut [u8; FRAME], s: &Ndp, their_mac: [u8; 6], our_mac: [u8; 6]) -> usize {
    if s.src.is_unspecified() {
        return build(
            out,
            NEIGHBOUR_ADVERT,
            FLAG_OVERRIDE,
            multicast_mac(ALL_NODES),
            our_mac,
            s.target,
            ALL_NODES,
            s.target,
        );
    }
    build(
        out,
        NEIGHBOUR_ADVERT,
        FLAG_SOLICITED | FLAG_OVERRIDE,
        their_mac,
        our_mac,
        s.target,
        s.src,
        s.target,
    )
}

/// An unsolicited advertisement of `vip` to all nodes (IPv6's gratuitous
/// ARP, RFC 4861 §7.2.6).
pub fn announce(out: &mut [u8; FRAME], vip: Ipv6Addr, our_mac: [u8; 6]) -> usize {
    build(
        out,
        NEIGHBOUR_ADVERT,
        FLAG_OVERRIDE,
        multicast_mac(ALL_NODES),
        our_mac,
        vip,
        ALL_NODES,
        vip,
    )
}

/// A solicitation for `target` from our address `src`, to its
/// solicited-node group.
pub fn solicit(out: &mut [u8; FRAME], target: Ipv6Addr, src: Ipv6Addr, our_mac: [u8; 6]) -> usize {
    let group = solicited_node(target);
    build(
        out,
        NEIGHBOUR_SOLICIT,
        0,
        multicast_mac(group),
        our_mac,
        src,
        group,
        target,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x2);
    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x12, 0x3456);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEIRS: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn a_solicitation_is_answered_and_both_parse_back() {
        let mut f = [0u8; FRAME];
        let n = solicit(&mut f, VIP, A, THEIRS);
        assert_eq!(n, FRAME);
        // To the solicited-node group of the VIP, on its multicast MAC.
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0x12, 0x34, 0x56]);
        assert_eq!(
            solicited_node(VIP),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        let s = parse(&f[ETH_HDR..n]).expect("a valid solicitation");
        assert_eq!(
            s,
            Ndp {
                kind: NEIGHBOUR_SOLICIT,
                src: A,
                target: VIP,
                mac: Some(THEIRS),
                solicited: false
            }
        );
        let mut r = [0u8; FRAME];
        let n = advert(&mut r, &s, THEIRS, MAC);
        assert_eq!(&r[0..6], &THEIRS);
        let a = parse(&r[ETH_HDR..n]).expect("a valid advertisement");
        assert_eq!(
            a,
            Ndp {
                kind: NEIGHBOUR_ADVERT,
                src: VIP,
                target: VIP,
                mac: Some(MAC),
                solicited: true
            }
        );
        // Unsolicited, to all nodes.
        let n = announce(&mut r, VIP, MAC);
        assert_eq!(&r[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let a = parse(&r[ETH_HDR..n]).unwrap();
        assert!(!a.solicited);
        assert_eq!(a.mac, Some(MAC));
    }

    #[test]
    fn what_rfc_4861_discards_is_not_parsed() {
        let mut f = [0u8; FRAME];
        let n = solicit(&mut f, VIP, A, THEIRS);
        let good = f[ETH_HDR..n].to_vec();
        // Hop limit below 255 (not from the link).
        let mut b = good.clone();
        b[7] = 64;
        assert_eq!(parse(&b), None);
        // Bad checksum.
        let mut b = good.clone();
        b[40 + 20] ^= 1;
        assert_eq!(parse(&b), None);
        // A zero-length option.
        let mut b = good.clone();
        b[40 + 25] = 0;
        let c = checksum(A, solicited_node(VIP), &{
            let mut m = b[40..].to_vec();
            m[2] = 0;
            m[3] = 0;
            m
        });
        b[42..44].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&b), None);
        // Every cut and every single-byte change: no panic.
        for i in 0..good.len() {
            let _ = parse(&good[..i]);
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = parse(&b);
        }
    }
}
