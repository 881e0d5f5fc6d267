//! IPv6 through the engine (forwarding.md §2–§6 for IPv6): NAT66 both
//! ways with the L4 checksum carried over the IPv6 pseudo-header, direct
//! routing with the hop limit decremented, extension headers walked to the
//! transport header, fragments reassembled as the kernel's defragmenter
//! does, and what is not balanced (ICMPv6, malformed chains). Packets are built byte by byte here; each expected
//! output is built independently and compared whole.

use lvs_core::xmit::{IcmpError, OnLink, PacketBuf, Reply, Transmit};
use lvs_core::{DestConfig, DropReason, Engine, Forward, ServiceKey};
use std::net::{IpAddr, Ipv6Addr};

const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const RIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);

/// One's-complement sum of `data` as 16-bit words.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// An IPv6 packet: fixed header, `ext` (extension headers, the first one's
/// type in `first`, or none), a TCP (6) or UDP (17) header with ports,
/// `flags` for TCP, `payload`, and a correct checksum (UDP: `zero_udp`
/// leaves it 0).
#[allow(clippy::too_many_arguments)]
fn packet(
    proto: u8,
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: u8,
    hop: u8,
    ext: Option<(u8, Vec<u8>)>,
    payload: &[u8],
    zero_udp: bool,
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend(sport.to_be_bytes());
    l4.extend(dport.to_be_bytes());
    if proto == 6 {
        l4.extend(1000u32.to_be_bytes());
        l4.extend(0u32.to_be_bytes());
        l4.extend([0x50, flags]);
        l4.extend(65535u16.to_be_bytes());
        l4.extend([0, 0, 0, 0]);
    } else {
        l4.extend(((8 + payload.len()) as u16).to_be_bytes());
        l4.extend([0, 0]);
    }
    l4.extend_from_slice(payload);
    if !(proto == 17 && zero_udp) {
        let mut s = sum(0, &src.octets());
        s = sum(s, &dst.octets());
        s = sum(s, &(l4.len() as u32).to_be_bytes());
        s += u32::from(proto);
        s = sum(s, &l4);
        let mut c = !fold(s);
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        let at = if proto == 6 { 16 } else { 6 };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let (next, ext) = match ext {
        Some((first, bytes)) => (first, bytes),
        None => (proto, Vec::new()),
    };
    let mut b = vec![0x60, 0, 0, 0];
    b.extend(((ext.len() + l4.len()) as u16).to_be_bytes());
    b.extend([next, hop]);
    b.extend(src.octets());
    b.extend(dst.octets());
    b.extend(ext);
    b.extend(l4);
    b
}

fn tcp(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8, hop: u8) -> Vec<u8> {
    packet(6, src, sport, dst, dport, flags, hop, None, b"", false)
}

fn engine(forward: Forward, port: u16) -> Engine {
    let mut e = Engine::new(7);
    let key = ServiceKey {
        protocol: 6,
        addr: VIP.into(),
        port: 80,
    };
    e.add_service(key, "rr", 0).unwrap();
    let udp = ServiceKey {
        protocol: 17,
        ..key
    };
    e.add_service(udp, "rr", 0).unwrap();
    for k in [key, udp] {
        e.add_dest(
            k,
            DestConfig {
                tunnel: Default::default(),
                addr: RIP.into(),
                port,
                forward,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        )
        .unwrap();
    }
    e
}

fn run(e: &mut Engine, pkt: &mut [u8], mtu: u16) -> Transmit {
    let paths = OnLink {
        src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        mtu,
    };
    let mut buf = PacketBuf::new(pkt, 0);
    e.process(0, &mut buf, &paths)
}

fn sent_to(t: Transmit) -> IpAddr {
    match t {
        Transmit::Send(s) => s.next_hop,
        other => panic!("not sent: {other:?}"),
    }
}

#[test]
fn nat66_rewrites_both_ways_with_the_pseudo_header_checksum() {
    let mut e = engine(Forward::Masq, 8080);
    let mut syn = tcp(CLIENT, 40000, VIP, 80, 0x02, 64);
    assert_eq!(sent_to(run(&mut e, &mut syn, 1500)), IpAddr::V6(RIP));
    assert_eq!(syn, tcp(CLIENT, 40000, RIP, 8080, 0x02, 63));
    let c = e.connections().next().unwrap();
    assert_eq!(
        (c.caddr, c.vaddr, c.daddr, c.dport),
        (CLIENT.into(), VIP.into(), RIP.into(), 8080)
    );
    // The reply: from the real server, rewritten to come from the VIP.
    let mut synack = tcp(RIP, 8080, CLIENT, 40000, 0x12, 64);
    assert_eq!(sent_to(run(&mut e, &mut synack, 1500)), IpAddr::V6(CLIENT));
    assert_eq!(synack, tcp(VIP, 80, CLIENT, 40000, 0x12, 63));
    // UDP without checksum (invalid over IPv6) gets a whole one.
    let mut q = packet(17, CLIENT, 5353, VIP, 80, 0, 64, None, b"who?", true);
    assert_eq!(sent_to(run(&mut e, &mut q, 1500)), IpAddr::V6(RIP));
    assert_eq!(
        q,
        packet(17, CLIENT, 5353, RIP, 8080, 0, 63, None, b"who?", false)
    );
}

#[test]
fn direct_routing_only_decrements_the_hop_limit() {
    let mut e = engine(Forward::Route, 80);
    let mut syn = tcp(CLIENT, 40001, VIP, 80, 0x02, 64);
    assert_eq!(sent_to(run(&mut e, &mut syn, 1500)), IpAddr::V6(RIP));
    assert_eq!(syn, tcp(CLIENT, 40001, VIP, 80, 0x02, 63));
}

#[test]
fn extension_headers_are_walked_to_the_transport_header() {
    let mut e = engine(Forward::Masq, 8080);
    // Destination options (8 bytes: next header TCP, length 0, a PadN).
    let ext = Some((60u8, vec![6, 0, 1, 4, 0, 0, 0, 0]));
    let mut syn = packet(6, CLIENT, 40002, VIP, 80, 0x02, 64, ext.clone(), b"", false);
    assert_eq!(sent_to(run(&mut e, &mut syn, 1500)), IpAddr::V6(RIP));
    assert_eq!(
        syn,
        packet(6, CLIENT, 40002, RIP, 8080, 0x02, 63, ext, b"", false)
    );
}

#[test]
fn hop_limit_and_mtu_are_answered_with_icmpv6_errors() {
    let mut e = engine(Forward::Masq, 8080);
    let mut last_hop = tcp(CLIENT, 40003, VIP, 80, 0x02, 1);
    assert!(matches!(
        run(&mut e, &mut last_hop, 1500),
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::TimeExceeded,
            ..
        })
    ));
    // 1400 bytes to a 1280-byte path: packet too big, with the MTU.
    let big = vec![0u8; 1400 - 60];
    let mut p = packet(6, CLIENT, 40004, VIP, 80, 0x02, 64, None, &big, false);
    assert_eq!(p.len(), 1400);
    assert!(matches!(
        run(&mut e, &mut p, 1280),
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu: 1280 },
            ..
        })
    ));
    // A path MTU below IPv6's minimum is taken as 1280.
    let fits = vec![0u8; 1280 - 60];
    let mut p = packet(6, CLIENT, 40005, VIP, 80, 0x02, 64, None, &fits, false);
    assert_eq!(sent_to(run(&mut e, &mut p, 1000)), IpAddr::V6(RIP));
}

#[test]
fn what_is_not_balanced() {
    let mut e = engine(Forward::Masq, 8080);
    // ICMPv6 (neighbour discovery among it) is the host's.
    let mut icmp = tcp(CLIENT, 1, VIP, 80, 0, 255);
    icmp[6] = 58;
    assert_eq!(run(&mut e, &mut icmp, 1500), Transmit::Pass);
    // A fragment from and to no one lvsd balances is the host's.
    let frag = Some((44u8, vec![6, 0, 0, 1, 0, 0, 0, 7]));
    let mut f = packet(6, CLIENT, 40006, RIP, 80, 0x02, 64, frag, b"", false);
    assert_eq!(run(&mut e, &mut f, 1500), Transmit::Pass);
    // An option header that runs past the packet; a payload length past
    // the buffer; a multicast source.
    let bad = Some((0u8, vec![6, 9, 0, 0, 0, 0, 0, 0]));
    let mut b = packet(6, CLIENT, 40007, VIP, 80, 0x02, 64, bad, b"", false);
    assert_eq!(
        run(&mut e, &mut b, 1500),
        Transmit::Drop(DropReason::Malformed)
    );
    let mut long = tcp(CLIENT, 40008, VIP, 80, 0x02, 64);
    long[5] = 200;
    assert_eq!(
        run(&mut e, &mut long, 1500),
        Transmit::Drop(DropReason::Malformed)
    );
    let mut mc = tcp("ff02::1".parse().unwrap(), 40009, VIP, 80, 0x02, 64);
    assert_eq!(
        run(&mut e, &mut mc, 1500),
        Transmit::Drop(DropReason::Martian)
    );
    assert_eq!(e.connection_count(), 0);
    // Every cut of a good packet: no panic, nothing balanced.
    let good = tcp(CLIENT, 40010, VIP, 80, 0x02, 64);
    for cut in 0..good.len() {
        let mut p = good[..cut].to_vec();
        let _ = run(&mut e, &mut p, 1500);
    }
    assert_eq!(e.connection_count(), 0);
}

/// What the director answers over IPv6: a reset for a TCP segment to a
/// VIP port without a service (as the host of a kernel director would),
/// and the ICMPv6 forms of its errors — built from the engine's reply.
#[test]
fn replies_are_built_as_ipv6() {
    let mut e = engine(Forward::Masq, 8080);
    let mut seg = tcp(CLIENT, 40011, VIP, 81, 0x02, 64);
    let t = run(&mut e, &mut seg, 1500);
    let Transmit::Reply(r) = t else {
        panic!("{t:?}")
    };
    assert_eq!(r, Reply::TcpReset);
    let mut out = [0u8; 1500];
    let n = r.build_v6(&seg, &mut out, None).unwrap();
    // From the VIP's port 81 to the client, RST|ACK acknowledging the SYN.
    let mut want = tcp(VIP, 81, CLIENT, 40011, 0x14, 64);
    want[44..48].copy_from_slice(&0u32.to_be_bytes());
    want[48..52].copy_from_slice(&1001u32.to_be_bytes());
    want[54..56].copy_from_slice(&[0, 0]);
    // The expected checksum, computed independently.
    want[56..58].copy_from_slice(&[0, 0]);
    let mut s = sum(0, &VIP.octets());
    s = sum(s, &CLIENT.octets());
    s = sum(s, &20u32.to_be_bytes());
    s += 6;
    s = sum(s, &want[40..]);
    want[56..58].copy_from_slice(&(!fold(s)).to_be_bytes());
    assert_eq!(&out[..n], &want[..]);
    // Packet too big: type 2, the MTU, quoting the packet, from the VIP.
    let big = vec![0u8; 1400 - 60];
    let mut p = packet(6, CLIENT, 40012, VIP, 80, 0x02, 64, None, &big, false);
    let Transmit::Reply(r) = run(&mut e, &mut p, 1280) else {
        panic!()
    };
    let n = r.build_v6(&p, &mut out, None).unwrap();
    assert_eq!((out[40], out[41]), (2, 0));
    assert_eq!(&out[44..48], &1280u32.to_be_bytes());
    assert_eq!(&out[8..24], &VIP.octets());
    assert_eq!(n, 1280);
}

/// An ICMPv6 error: `typ`/`code`/`info` from `src` to `dst`, quoting
/// `quoted`, with a correct checksum.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, typ: u8, code: u8, info: u32, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend(info.to_be_bytes());
    m.extend_from_slice(quoted);
    let mut s = sum(0, &src.octets());
    s = sum(s, &dst.octets());
    s = sum(s, &(m.len() as u32).to_be_bytes());
    s += 58;
    s = sum(s, &m);
    m[2..4].copy_from_slice(&(!fold(s)).to_be_bytes());
    let mut b = vec![0x60, 0, 0, 0];
    b.extend((m.len() as u16).to_be_bytes());
    b.extend([58, 64]);
    b.extend(src.octets());
    b.extend(dst.octets());
    b.extend(m);
    b
}

/// ICMPv6 errors about a NAT66 connection are translated both ways
/// (forwarding.md §9.2, §9.3): a packet too big from a router on the
/// client's side about a reply (VIP → client) goes to the real server
/// about its own packet; a port unreachable from the real server about a
/// client's packet (client → RIP) goes to the client about its packet to
/// the VIP. Everything else of them stays, the quoted L4 checksum too.
#[test]
fn icmpv6_errors_of_nat66_connections_are_translated_both_ways() {
    let mut e = engine(Forward::Masq, 8080);
    let mut syn = tcp(CLIENT, 40020, VIP, 80, 0x02, 64);
    assert_eq!(sent_to(run(&mut e, &mut syn, 1500)), IpAddr::V6(RIP));
    let router: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
    // The reply as it left the director, quoted by a router.
    let reply = tcp(VIP, 80, CLIENT, 40020, 0x12, 60);
    let mut ptb = icmp6(router, VIP, 2, 0, 1280, &reply);
    assert_eq!(sent_to(run(&mut e, &mut ptb, 1500)), IpAddr::V6(RIP));
    let as_server_sent = tcp(RIP, 8080, CLIENT, 40020, 0x12, 60);
    let mut want_quote = as_server_sent.clone();
    // The quoted TCP checksum is left as the router quoted it.
    want_quote[56..58].copy_from_slice(&reply[56..58]);
    let mut want = icmp6(router, RIP, 2, 0, 1280, &want_quote);
    want[7] = 63;
    assert_eq!(ptb, want);
    // From the real server: port unreachable about the client's packet.
    let as_server_got = tcp(CLIENT, 40020, RIP, 8080, 0x10, 63);
    let mut unreach = icmp6(RIP, CLIENT, 1, 4, 0, &as_server_got);
    assert_eq!(sent_to(run(&mut e, &mut unreach, 1500)), IpAddr::V6(CLIENT));
    let mut want_quote = tcp(CLIENT, 40020, VIP, 80, 0x10, 63);
    want_quote[56..58].copy_from_slice(&as_server_got[56..58]);
    let mut want = icmp6(VIP, CLIENT, 1, 4, 0, &want_quote);
    want[7] = 63;
    assert_eq!(unreach, want);
    // A bad checksum is dropped; an error about no connection is the host's.
    let mut bad = icmp6(router, VIP, 2, 0, 1280, &reply);
    bad[42] ^= 1;
    assert_eq!(
        run(&mut e, &mut bad, 1500),
        Transmit::Drop(DropReason::Malformed)
    );
    let other = tcp(VIP, 80, CLIENT, 40999, 0x12, 60);
    let mut stray = icmp6(router, VIP, 2, 0, 1280, &other);
    assert_eq!(run(&mut e, &mut stray, 1500), Transmit::Pass);
    // Informational ICMPv6 (an echo request) is the host's.
    let mut echo = icmp6(CLIENT, VIP, 128, 0, 0x0001_0001, b"ping");
    assert_eq!(run(&mut e, &mut echo, 1500), Transmit::Pass);
}

/// A service `vip`:80 (TCP) with one tunnel real server `rip`.
fn tunnel_engine(vip: IpAddr, rip: IpAddr, tunnel: lvs_core::Tunnel) -> Engine {
    let mut e = Engine::new(9);
    let key = ServiceKey {
        protocol: 6,
        addr: vip,
        port: 80,
    };
    e.add_service(key, "rr", 0).unwrap();
    e.add_dest(
        key,
        DestConfig {
            tunnel,
            addr: rip,
            port: 80,
            forward: Forward::Tunnel,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    )
    .unwrap();
    e
}

/// Runs `pkt` (with headroom) from `src` paths; the bytes sent.
fn tunnelled(e: &mut Engine, pkt: &[u8], src: IpAddr, mtu: u16) -> Result<Vec<u8>, Transmit> {
    let mut buf = vec![0u8; lvs_core::xmit::HEADROOM + pkt.len()];
    buf[lvs_core::xmit::HEADROOM..].copy_from_slice(pkt);
    let mut p = PacketBuf::new(&mut buf, lvs_core::xmit::HEADROOM);
    match e.process(0, &mut p, &OnLink { src, mtu }) {
        Transmit::Send(s) => Ok(buf[s.start..s.start + s.len].to_vec()),
        other => Err(other),
    }
}

/// The outer IPv6 header the director writes (§7.4): traffic class from
/// the inner packet (CE re-encoded), flow label 0, hop limit the inner
/// one after the decrement.
fn outer6(tclass: u8, payload: usize, next: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut h = vec![0x60 | tclass >> 4, tclass << 4, 0, 0];
    h.extend((payload as u16).to_be_bytes());
    h.extend([next, hop]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h
}

const DIRECTOR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

#[test]
fn ipv6_tunnels_ipip_gue_gre_with_an_ipv6_outer_header() {
    use lvs_core::{Tunnel, TunnelCsum, TunnelType};
    // IPv6 in IPv6 (next header 41).
    let mut e = tunnel_engine(VIP.into(), RIP.into(), Tunnel::default());
    let syn = tcp(CLIENT, 40030, VIP, 80, 0x02, 64);
    let out = tunnelled(&mut e, &syn, DIRECTOR6.into(), 1500).unwrap();
    let inner = tcp(CLIENT, 40030, VIP, 80, 0x02, 63);
    let mut want = outer6(0, inner.len(), 41, 63, DIRECTOR6, RIP);
    want.extend(&inner);
    assert_eq!(out, want);
    // GUE with a checksum over the IPv6 pseudo-header, proto 41 inside.
    let gue = Tunnel {
        kind: TunnelType::Gue,
        port: 6080,
        csum: TunnelCsum::Csum,
    };
    let mut e = tunnel_engine(VIP.into(), RIP.into(), gue);
    let out = tunnelled(&mut e, &syn, DIRECTOR6.into(), 1500).unwrap();
    assert_eq!(
        (out[6], out[40 + 2..40 + 4].to_vec()),
        (17, 6080u16.to_be_bytes().to_vec())
    );
    let sport = u16::from_be_bytes([out[40], out[41]]);
    assert!((32768..=60999).contains(&sport));
    assert_eq!(&out[48..52], &[0, 41, 0, 0], "GUE header: proto 41");
    let mut s = sum(0, &DIRECTOR6.octets());
    s = sum(s, &RIP.octets());
    s = sum(s, &((out.len() - 40) as u32).to_be_bytes());
    s += 17;
    s = sum(s, &out[40..]);
    assert_eq!(fold(s), 0xffff, "outer UDP checksum");
    assert_eq!(&out[52..], &inner[..]);
    // GRE: protocol type 0x86DD.
    let gre = Tunnel {
        kind: TunnelType::Gre,
        ..Default::default()
    };
    let mut e = tunnel_engine(VIP.into(), RIP.into(), gre);
    let out = tunnelled(&mut e, &syn, DIRECTOR6.into(), 1500).unwrap();
    assert_eq!(out[6], 47);
    assert_eq!(&out[40..44], &[0, 0, 0x86, 0xdd]);
    assert_eq!(&out[44..], &inner[..]);
}

#[test]
fn mixed_families_4in6_and_6in4() {
    use lvs_core::Tunnel;
    // An IPv4 service with an IPv6 real server: IPv4 in IPv6 (next header
    // 4), the outer hop limit the inner TTL after its decrement.
    let vip4: std::net::Ipv4Addr = "198.18.0.100".parse().unwrap();
    let mut e = tunnel_engine(vip4.into(), RIP.into(), Tunnel::default());
    let mut syn4 = vec![0x45, 0xbb, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    syn4.extend([198, 18, 0, 2, 198, 18, 0, 100]);
    syn4.extend(40031u16.to_be_bytes());
    syn4.extend(80u16.to_be_bytes());
    syn4.extend([
        0, 0, 3, 0xe8, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    let c = !fold(sum(0, &syn4[..20]));
    syn4[10..12].copy_from_slice(&c.to_be_bytes());
    let out = tunnelled(&mut e, &syn4, DIRECTOR6.into(), 1500).unwrap();
    // Traffic class 0xbb with ECN CE re-encoded as ECT(0): 0xba.
    assert_eq!(&out[..40], &outer6(0xba, 40, 4, 63, DIRECTOR6, RIP)[..]);
    assert_eq!(out[40 + 8], 63, "inner TTL decremented");
    assert_eq!(fold(sum(0, &out[40..60])), 0xffff, "inner header checksum");
    // An IPv6 service with an IPv4 real server: IPv6 in IPv4 (protocol 41),
    // no DF (IPv6 inner), TTL the inner hop limit after its decrement.
    let rip4: std::net::Ipv4Addr = "198.18.1.11".parse().unwrap();
    let mut e = tunnel_engine(VIP.into(), rip4.into(), Tunnel::default());
    let syn = tcp(CLIENT, 40032, VIP, 80, 0x02, 64);
    let out = tunnelled(&mut e, &syn, "198.18.1.1".parse().unwrap(), 1500).unwrap();
    assert_eq!(out[0], 0x45);
    assert_eq!(
        usize::from(u16::from_be_bytes([out[2], out[3]])),
        20 + syn.len()
    );
    assert_eq!(&out[6..8], &[0, 0], "no DF");
    assert_eq!((out[8], out[9]), (63, 41));
    assert_eq!(&out[12..20], &[198, 18, 1, 1, 198, 18, 1, 11]);
    assert_eq!(fold(sum(0, &out[..20])), 0xffff);
    assert_eq!(&out[20..], &tcp(CLIENT, 40032, VIP, 80, 0x02, 63)[..]);
}

#[test]
fn an_ipv6_packet_over_the_tunnel_mtu_gets_packet_too_big() {
    use lvs_core::Tunnel;
    // Route MTU 1320, IPv6 outer: tunnel MTU 1280.
    let mut e = tunnel_engine(VIP.into(), RIP.into(), Tunnel::default());
    let big = vec![0u8; 1300 - 60];
    let p = packet(6, CLIENT, 40033, VIP, 80, 0x02, 64, None, &big, false);
    assert!(matches!(
        tunnelled(&mut e, &p, DIRECTOR6.into(), 1320),
        Err(Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu: 1280 },
            ..
        }))
    ));
    // A route MTU whose tunnel MTU would be under 1280: dropped.
    assert_eq!(
        tunnelled(&mut e, &p, DIRECTOR6.into(), 1300),
        Err(Transmit::Drop(DropReason::TunnelMtu))
    );
}

/// Feeds `frags` through the engine (each in a buffer with room for the
/// whole datagram) with path MTU `mtu`; every answer, and the bytes sent
/// for the last.
fn feed(e: &mut Engine, frags: &[Vec<u8>], mtu: u16) -> (Vec<Transmit>, Vec<u8>) {
    let paths = OnLink {
        src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        mtu,
    };
    let mut answers = Vec::new();
    let mut sent = Vec::new();
    for f in frags {
        let mut buf = vec![0u8; 70_000];
        buf[..f.len()].copy_from_slice(f);
        let mut pkt = PacketBuf::with_len(&mut buf, 0, f.len());
        let t = e.process(0, &mut pkt, &paths);
        if let Transmit::Send(s) = t {
            sent = buf[s.start..s.start + s.len].to_vec();
        }
        answers.push(t);
    }
    (answers, sent)
}

fn fragments(whole: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut out = vec![0u8; 2000];
    lvs_core::wire::ipv6::fragment(whole, size, id, &mut out, 0, |f| v.push(f.to_vec()))
        .expect("fragmented");
    v
}

#[test]
fn fragments_to_a_vip_are_reassembled_and_leave_no_larger_than_they_came() {
    let mut e = engine(Forward::Masq, 8080);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let whole = packet(17, CLIENT, 5353, VIP, 80, 0, 64, None, &data, false);
    // Three fragments of at most 1280 bytes, the last one first.
    let mut frags = fragments(&whole, 1280, 0x1234);
    assert_eq!(frags.len(), 3);
    frags.rotate_right(1);
    let (answers, sent) = feed(&mut e, &frags, 1500);
    assert_eq!(answers[..2], [Transmit::Held, Transmit::Held]);
    let Transmit::Send(s) = answers[2] else {
        panic!("{answers:?}")
    };
    // The datagram, translated whole (checksum over the new pseudo-header),
    // to be cut again into pieces no larger than the largest that came.
    assert_eq!(
        sent,
        packet(17, CLIENT, 5353, RIP, 8080, 0, 63, None, &data, false)
    );
    assert_eq!(s.fragment, Some(1280));
    assert_eq!(e.counters.reassembled, 1);
    // Fragments larger than the path: packet too big, with the path's MTU
    // (the datagram's largest fragment is what is checked).
    let frags = fragments(&whole, 1400, 0x1235);
    let (answers, _) = feed(&mut e, &frags, 1280);
    assert!(
        matches!(
            answers.last(),
            Some(Transmit::Reply(Reply::Icmp {
                error: IcmpError::FragNeeded { mtu: 1280 },
                ..
            }))
        ),
        "{answers:?}"
    );
    // Overlapping fragments discard the datagram (RFC 5722).
    let mut frags = fragments(&whole, 1280, 0x1236);
    frags.insert(1, frags[0].clone());
    let (answers, _) = feed(&mut e, &frags, 1500);
    assert_eq!(answers[1], Transmit::Drop(DropReason::Fragment));
    // An atomic fragment (offset 0, no more) is balanced as it is, its
    // fragment header kept.
    let atomic = Some((44u8, vec![17, 0, 0, 0, 0, 0, 0, 9]));
    let mut a = packet(
        17,
        CLIENT,
        5354,
        VIP,
        80,
        0,
        64,
        atomic.clone(),
        b"hi",
        false,
    );
    assert_eq!(sent_to(run(&mut e, &mut a, 1500)), IpAddr::V6(RIP));
    assert_eq!(
        a,
        packet(17, CLIENT, 5354, RIP, 8080, 0, 63, atomic, b"hi", false)
    );
}

/// An IPv6 GSO super-packet for an IPv6 tunnel (ip6ip6): sent with
/// `segment` set and the encapsulation for each piece; cut by
/// `wire::tcp::segment`, each segment is a whole TCP/IPv6 packet inside
/// its own outer header.
#[test]
fn an_ipv6_super_packet_for_a_tunnel_is_cut_and_each_segment_wrapped() {
    use lvs_core::Tunnel;
    let mut e = tunnel_engine(VIP.into(), RIP.into(), Tunnel::default());
    let syn = tcp(CLIENT, 40040, VIP, 80, 0x02, 64);
    tunnelled(&mut e, &syn, DIRECTOR6.into(), 1500).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let big = packet(6, CLIENT, 40040, VIP, 80, 0x10, 64, None, &data, false);
    let mut buf = vec![0u8; lvs_core::xmit::HEADROOM + big.len()];
    buf[lvs_core::xmit::HEADROOM..].copy_from_slice(&big);
    let mut p = PacketBuf::new(&mut buf, lvs_core::xmit::HEADROOM);
    p.gso_size = 1000;
    let paths = OnLink {
        src: DIRECTOR6.into(),
        mtu: 1500,
    };
    let Transmit::Send(s) = e.process(0, &mut p, &paths) else {
        panic!("not sent")
    };
    assert_eq!(s.segment, Some(1000));
    let encap = p.encap.expect("each segment wrapped");
    let inner = buf[s.start..s.start + s.len].to_vec();
    assert_eq!(inner[7], 63, "hop limit decremented once");
    let mut out = vec![0u8; 2048];
    let mut outer = Vec::new();
    let n = lvs_core::wire::tcp::segment(&inner, 1000, &mut out, 128, |b, len| {
        let (start, total) = encap.write_nth(b, 128, len, outer.len() as u16);
        outer.push(b[start..start + total].to_vec());
    })
    .expect("cut");
    assert_eq!(n, 3);
    let mut payload = Vec::new();
    for (k, o) in outer.iter().enumerate() {
        let i = &o[40..];
        assert_eq!(&o[..40], &outer6(0, i.len(), 41, 63, DIRECTOR6, RIP)[..]);
        // Each inner segment is the packet this engine test would build.
        let seg = &data[k * 1000..(k + 1) * 1000];
        let mut want = packet(6, CLIENT, 40040, VIP, 80, 0x10, 63, None, seg, false);
        // Sequence numbers advance by the payload sent before; the
        // checksum is then that packet's.
        let seq = 1000u32 + 1000 * k as u32;
        want[44..48].copy_from_slice(&seq.to_be_bytes());
        want[56..58].copy_from_slice(&[0, 0]);
        let mut s = sum(0, &CLIENT.octets());
        s = sum(s, &VIP.octets());
        s = sum(s, &((want.len() - 40) as u32).to_be_bytes());
        s += 6;
        s = sum(s, &want[40..]);
        want[56..58].copy_from_slice(&(!fold(s)).to_be_bytes());
        assert_eq!(i, &want[..], "segment {k}");
        payload.extend_from_slice(&i[60..]);
    }
    assert_eq!(payload, data);
}
