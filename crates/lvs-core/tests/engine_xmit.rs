//! The transmit methods through the engine (forwarding.md §3, §6, §7):
//! direct routing changes only TTL and the header checksum; tunnels write
//! their outer headers into the buffer's headroom exactly as §7 lays them
//! out; TTL expiry, the (tunnel) MTU and `pmtu_disc` answer as §3.3/§3.4/
//! §7.5 say; the transmit decision names the method, the path and what is
//! left to the I/O layer.

mod support;

use lvs_core::wire::checksum;
use lvs_core::wire::ipproto;
use lvs_core::wire::ipv4::Ipv4Packet;
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::xmit::{IcmpError, IcmpSource, Method, OnLink, PacketBuf, Reply, Transmit, HEADROOM};
use lvs_core::{
    DestConfig, DropReason, Engine, Forward, ServiceKey, Tunnel, TunnelCsum, TunnelType,
};
use support::{ip, tcp};

const C: [u8; 4] = [198, 18, 0, 2];
const V: [u8; 4] = [198, 18, 0, 100];
const R: [u8; 4] = [198, 18, 1, 11];
const DIRECTOR: [u8; 4] = [198, 18, 1, 1];

fn engine(forward: Forward, tunnel: Tunnel) -> Engine {
    engine_with(ipproto::TCP, forward, tunnel, 80)
}

/// An engine with one service on VIP:80 of `protocol` and the real server
/// R on `dport`, reached with `forward` (and `tunnel`).
fn engine_with(protocol: u8, forward: Forward, tunnel: Tunnel, dport: u16) -> Engine {
    let mut e = Engine::new(7);
    let key = ServiceKey {
        protocol,
        addr: ip(V),
        port: 80,
    };
    e.add_service(key, "rr", 0).unwrap();
    e.add_dest(
        key,
        DestConfig {
            addr: ip(R),
            port: dport,
            forward,
            tunnel,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    )
    .unwrap();
    e
}

fn paths(mtu: u16) -> OnLink {
    OnLink {
        src: ip(DIRECTOR),
        mtu,
    }
}

/// Runs `pkt` through `e` with `HEADROOM` bytes in front; returns the
/// answer and the bytes it says to send (or the packet as it is now).
fn run(e: &mut Engine, pkt: &[u8], mtu: u16) -> (Transmit, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + pkt.len()];
    buf[HEADROOM..].copy_from_slice(pkt);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    let t = e.process(0, &mut p, &paths(mtu));
    let out = match t {
        Transmit::Send(s) => buf[s.start..s.start + s.len].to_vec(),
        _ => buf[HEADROOM..].to_vec(),
    };
    (t, out)
}

fn with_tos_ttl(mut v: Vec<u8>, tos: u8, ttl: u8, df: bool) -> Vec<u8> {
    v[1] = tos;
    v[8] = ttl;
    v[6] = if df { 0x40 } else { 0 };
    v[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
    Ipv4Packet::new_checked(&mut v[..]).unwrap().fill_checksum();
    v
}

fn big_tcp(len: usize, df: bool) -> Vec<u8> {
    let mut v = tcp(C, 40000, V, 80, SYN);
    v.resize(len, 0x5a);
    v[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    with_tos_ttl(v, 0, 64, df)
}

#[test]
fn direct_routing_changes_only_ttl_and_the_header_checksum() {
    let mut e = engine(Forward::Route, Tunnel::default());
    let syn = with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0xbb, 64, true);
    let (t, out) = run(&mut e, &syn, 1500);
    let Transmit::Send(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!(s.method, Method::Route);
    assert_eq!(s.next_hop, ip(R), "the real server is the next hop");
    assert_eq!(s.start, HEADROOM);
    assert_eq!(s.fragment, None);
    let mut want = syn.clone();
    want[8] = 63;
    Ipv4Packet::new_checked(&mut want[..])
        .unwrap()
        .fill_checksum();
    assert_eq!(out, want);
    // The next packet of the flow goes the same way; the state table is
    // the input-only one (no reply ever seen).
    let ack = tcp(C, 40000, V, 80, ACK);
    let (t, _) = run(&mut e, &ack, 1500);
    assert!(matches!(t, Transmit::Send(s) if s.method == Method::Route));
    assert_eq!(
        Engine::state_name(e.connections().next().unwrap()),
        "ESTABLISHED"
    );
    assert_eq!(e.counters.sent_route, 2);
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded() {
    for f in [Forward::Route, Forward::Masq, Forward::Tunnel] {
        let mut e = engine(f, Tunnel::default());
        let syn = with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0, 1, true);
        let (t, out) = run(&mut e, &syn, 1500);
        assert_eq!(
            t,
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::TimeExceeded,
                from: IcmpSource::PacketDestination
            }),
            "{f:?}"
        );
        assert_eq!(out, syn, "the packet is quoted as it came");
        assert_eq!(e.counters.icmp_time_exceeded, 1);
        // The reply quotes the packet, from the VIP, to the client.
        let mut icmp = [0u8; 600];
        let n = Reply::Icmp {
            error: IcmpError::TimeExceeded,
            from: IcmpSource::PacketDestination,
        }
        .build(&out, &mut icmp, None)
        .unwrap();
        assert_eq!(&icmp[12..16], &V);
        assert_eq!(&icmp[16..20], &C);
        assert_eq!(&icmp[20..22], &[11, 0]);
        assert_eq!(&icmp[28..n], &syn[..]);
    }
}

#[test]
fn oversized_df_packets_get_fragmentation_needed_with_the_route_mtu() {
    for f in [Forward::Route, Forward::Masq] {
        let mut e = engine(f, Tunnel::default());
        let (t, out) = run(&mut e, &big_tcp(1500, true), 1400);
        assert_eq!(
            t,
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::FragNeeded { mtu: 1400 },
                from: IcmpSource::PacketDestination
            }),
            "{f:?}"
        );
        // IPVS decrements TTL before its MTU check: the error quotes that.
        assert_eq!(out[8], 63);
        // Without DF it is sent, and the I/O layer fragments it.
        let mut e = engine(f, Tunnel::default());
        let (t, _) = run(&mut e, &big_tcp(1500, false), 1400);
        assert!(
            matches!(t, Transmit::Send(s) if s.fragment == Some(1400)),
            "{t:?}"
        );
    }
}

fn tunnel(kind: TunnelType, port: u16, csum: TunnelCsum) -> Tunnel {
    Tunnel { kind, port, csum }
}

/// Checks the outer IPv4 header of §7.4 and returns (outer, inner).
fn outer(out: &[u8], proto: u8, tos: u8, df: bool) -> (&[u8], &[u8]) {
    let o = Ipv4Packet::new_checked(out).unwrap();
    assert!(o.verify_checksum());
    assert_eq!(o.header_len(), 20);
    assert_eq!(o.total_len(), out.len());
    assert_eq!(o.protocol(), proto);
    assert_eq!(o.tos(), tos);
    assert_eq!(o.dont_frag(), df);
    if df {
        assert_eq!(o.ident(), 0, "ID 0 when DF is set");
    }
    assert_eq!(o.ttl(), 63, "outer TTL = the decremented inner TTL");
    assert_eq!(o.src_bytes(), DIRECTOR);
    assert_eq!(o.dst_bytes(), R);
    (&out[..20], &out[20..])
}

fn inner_expected(syn: &[u8]) -> Vec<u8> {
    let mut want = syn.to_vec();
    want[8] -= 1;
    Ipv4Packet::new_checked(&mut want[..])
        .unwrap()
        .fill_checksum();
    want
}

#[test]
fn ipip_outer_header_as_the_kernel_writes_it() {
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let syn = with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0xbb, 64, true);
    let (t, out) = run(&mut e, &syn, 1500);
    let Transmit::Send(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!(s.method, Method::Tunnel(TunnelType::Ipip));
    assert_eq!(s.start, HEADROOM - 20, "written into the headroom");
    assert!(!s.csum_partial);
    // CE (0xbb) becomes ECT(0) (0xba) outside.
    let (_, inner) = outer(&out, 4, 0xba, true);
    assert_eq!(inner, &inner_expected(&syn)[..]);
    // DF clear inside: DF clear outside, with a non-zero ID; ECT(0) kept.
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let syn = with_tos_ttl(tcp(C, 40001, V, 80, SYN), 0x02, 64, false);
    let (_, out) = run(&mut e, &syn, 1500);
    outer(&out, 4, 0x02, false);
    assert_ne!(Ipv4Packet::new_checked(&out[..]).unwrap().ident(), 0);
}

#[test]
fn gue_with_and_without_checksum() {
    for csum in [TunnelCsum::NoCsum, TunnelCsum::Csum, TunnelCsum::RemCsum] {
        let mut e = engine(Forward::Tunnel, tunnel(TunnelType::Gue, 6080, csum));
        let syn = with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0, 64, true);
        let (t, out) = run(&mut e, &syn, 1500);
        assert!(
            matches!(t, Transmit::Send(s) if s.start == HEADROOM - 32),
            "{t:?}"
        );
        let (_, rest) = outer(&out, ipproto::UDP, 0, true);
        let sport = u16::from_be_bytes([rest[0], rest[1]]);
        assert!((32768..61000).contains(&sport), "{sport}");
        assert_eq!(&rest[2..4], &6080u16.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([rest[4], rest[5]])),
            rest.len()
        );
        assert_eq!(
            &rest[8..12],
            &[0, 4, 0, 0],
            "GUE version 0, hlen 0, proto 4"
        );
        assert_eq!(&rest[12..], &inner_expected(&syn)[..]);
        let check = u16::from_be_bytes([rest[6], rest[7]]);
        if csum == TunnelCsum::NoCsum {
            assert_eq!(check, 0);
        } else {
            let sum = checksum::pseudo_v4(DIRECTOR, R, ipproto::UDP, rest.len() as u16);
            assert_eq!(checksum::fold(checksum::add_bytes(sum, rest)), 0xffff);
        }
        // The same flow keeps its source port.
        let (_, again) = run(&mut e, &tcp(C, 40000, V, 80, ACK), 1500);
        assert_eq!(&again[20..22], &rest[0..2]);
    }
}

#[test]
fn gre_with_and_without_checksum() {
    for (csum, hdr) in [(TunnelCsum::NoCsum, 4), (TunnelCsum::Csum, 8)] {
        let mut e = engine(Forward::Tunnel, tunnel(TunnelType::Gre, 0, csum));
        let syn = with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0, 64, true);
        let (_, out) = run(&mut e, &syn, 1500);
        let (_, rest) = outer(&out, 47, 0, true);
        if hdr == 4 {
            assert_eq!(&rest[..4], &[0, 0, 8, 0]);
        } else {
            assert_eq!(&rest[..2], &[0x80, 0]);
            assert_eq!(&rest[2..4], &[8, 0]);
            assert_eq!(&rest[6..8], &[0, 0]);
            assert_eq!(checksum::fold(checksum::add_bytes(0, rest)), 0xffff);
        }
        assert_eq!(&rest[hdr..], &inner_expected(&syn)[..]);
    }
}

#[test]
fn tunnel_mtu_and_pmtu_disc() {
    // ipip: 1500 - 20 = 1480; GUE: 1500 - 32; GRE with checksum: 1500 - 28.
    for (t, tmtu) in [
        (Tunnel::default(), 1480),
        (tunnel(TunnelType::Gue, 6080, TunnelCsum::NoCsum), 1468),
        (tunnel(TunnelType::Gre, 0, TunnelCsum::Csum), 1472),
    ] {
        let mut e = engine(Forward::Tunnel, t);
        let (r, _) = run(&mut e, &big_tcp(tmtu as usize, true), 1500);
        assert!(
            matches!(r, Transmit::Send(s) if s.fragment.is_none()),
            "{r:?}"
        );
        let mut e = engine(Forward::Tunnel, t);
        let (r, _) = run(&mut e, &big_tcp(tmtu as usize + 1, true), 1500);
        assert_eq!(
            r,
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::FragNeeded { mtu: tmtu },
                from: IcmpSource::PacketDestination
            })
        );
        // Without DF: encapsulated, outer DF clear, fragmented on output.
        let mut e = engine(Forward::Tunnel, t);
        let (r, out) = run(&mut e, &big_tcp(1500, false), 1500);
        assert!(
            matches!(r, Transmit::Send(s) if s.fragment == Some(1500)),
            "{r:?}"
        );
        assert!(!Ipv4Packet::new_checked(&out[..]).unwrap().dont_frag());
        // pmtu_disc 0: no check, outer DF clear even for a DF inner packet.
        let mut e = engine(Forward::Tunnel, t);
        e.set_sysctl("pmtu_disc", "0").unwrap();
        let (r, out) = run(&mut e, &big_tcp(1500, true), 1500);
        assert!(
            matches!(r, Transmit::Send(s) if s.fragment == Some(1500)),
            "{r:?}"
        );
        assert!(!Ipv4Packet::new_checked(&out[..]).unwrap().dont_frag());
    }
    // A path MTU that leaves less than 68 bytes inside the tunnel: dropped.
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let (r, _) = run(&mut e, &tcp(C, 40000, V, 80, SYN), 87);
    assert_eq!(r, Transmit::Drop(DropReason::TunnelMtu));
}

#[test]
fn an_encapsulation_needs_headroom_and_a_partial_checksum_is_completed() {
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let mut syn = tcp(C, 40000, V, 80, SYN);
    assert_eq!(
        e.process(0, &mut PacketBuf::new(&mut syn, 0), &paths(1500)),
        Transmit::Drop(DropReason::NoHeadroom)
    );
    // An offloaded checksum (pseudo-header sum only) is finished before
    // the packet is wrapped: the real server gets a valid one.
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let good = tcp(C, 40001, V, 80, SYN);
    let mut partial = good.clone();
    let sum = checksum::fold(checksum::pseudo_v4(
        C,
        V,
        ipproto::TCP,
        (good.len() - 20) as u16,
    ));
    partial[36..38].copy_from_slice(&sum.to_be_bytes());
    let mut buf = vec![0u8; HEADROOM + partial.len()];
    buf[HEADROOM..].copy_from_slice(&partial);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    p.csum_partial = true;
    let Transmit::Send(s) = e.process(0, &mut p, &paths(1500)) else {
        panic!()
    };
    assert!(!s.csum_partial);
    assert_eq!(&buf[s.start + 20 + 36..s.start + 20 + 38], &good[36..38]);
}

#[test]
fn mixed_methods_in_one_service() {
    let mut e = engine(Forward::Route, Tunnel::default());
    let key = ServiceKey {
        protocol: ipproto::TCP,
        addr: ip(V),
        port: 80,
    };
    e.add_dest(
        key,
        DestConfig {
            addr: ip([198, 18, 1, 12]),
            port: 80,
            forward: Forward::Tunnel,
            tunnel: tunnel(TunnelType::Gre, 0, TunnelCsum::NoCsum),
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    )
    .unwrap();
    let mut methods = Vec::new();
    for p in 0..4 {
        let (t, _) = run(&mut e, &tcp(C, 40000 + p, V, 80, SYN), 1500);
        let Transmit::Send(s) = t else {
            panic!("{t:?}")
        };
        methods.push(s.method);
    }
    assert!(methods.contains(&Method::Route));
    assert!(methods.contains(&Method::Tunnel(TunnelType::Gre)));
}

#[test]
fn gso_super_packets_are_checked_by_their_segment_size() {
    // A 3000-byte super-packet of 1448-byte segments (20 + 20 + 1448 =
    // 1488 on the wire each).
    let run_gso = |mtu: u16| {
        let mut e = engine(Forward::Masq, Tunnel::default());
        let pkt = big_tcp(3000, true);
        let mut buf = vec![0u8; HEADROOM + pkt.len()];
        buf[HEADROOM..].copy_from_slice(&pkt);
        let mut p = PacketBuf::new(&mut buf, HEADROOM);
        p.gso_size = 1448;
        e.process(0, &mut p, &paths(mtu))
    };
    assert!(matches!(run_gso(1500), Transmit::Send(s) if s.fragment.is_none()));
    assert_eq!(
        run_gso(1400),
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu: 1400 },
            from: IcmpSource::PacketDestination
        })
    );
}

fn icmp_ok(p: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(p).unwrap();
    ip.verify_checksum() && checksum::fold(checksum::add_bytes(0, ip.payload())) == 0xffff
}

fn nat_engine() -> Engine {
    engine_with(ipproto::TCP, Forward::Masq, Tunnel::default(), 8080)
}

#[test]
fn related_icmp_is_translated_through_nat_both_ways() {
    use lvs_core::wire::icmp::error_v4;
    let mut e = nat_engine();
    let (t, _) = run(&mut e, &tcp(C, 40000, V, 80, SYN), 1500);
    assert!(matches!(t, Transmit::Send(_)));
    let (_, reply) = run(&mut e, &tcp(R, 8080, C, 40000, SYN | ACK), 1500);
    assert_eq!(&reply[12..16], &V);

    // §9.2: a router on the client's side says the reply was too big.
    let router = [198, 18, 0, 254];
    let mut icmp = [0u8; 600];
    let n = error_v4(&reply, &mut icmp, 3, 4, 1300, Some(router)).unwrap();
    let icmp = icmp[..n].to_vec();
    assert_eq!(&icmp[16..20], &V, "sent to the VIP");
    let (t, out) = run(&mut e, &icmp, 1500);
    let Transmit::Send(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!((s.method, s.next_hop), (Method::Masq, ip(R)));
    assert!(icmp_ok(&out));
    assert_eq!(&out[12..16], &router);
    assert_eq!(&out[16..20], &R, "outer destination: the real server");
    assert_eq!(out[8], icmp[8] - 1);
    let inner = &out[28..];
    assert_eq!(&inner[12..16], &R, "embedded source: the real server");
    assert_eq!(&inner[20..22], &8080u16.to_be_bytes());
    assert_eq!(
        checksum::checksum(&inner[..20]),
        0,
        "embedded header checksum"
    );
    assert_eq!(
        &inner[36..38],
        &reply[36..38],
        "embedded L4 checksum untouched"
    );
    assert_eq!(&out[24..28], &1300u32.to_be_bytes(), "the MTU info is kept");

    // §9.3: the real server reports the client's packet as it got it.
    let as_seen = {
        let mut v = tcp(C, 40000, R, 8080, ACK);
        v[8] = 63;
        Ipv4Packet::new_checked(&mut v[..]).unwrap().fill_checksum();
        v
    };
    let mut icmp = [0u8; 600];
    let n = error_v4(&as_seen, &mut icmp, 3, 3, 0, None).unwrap();
    assert_eq!(&icmp[12..16], &R);
    let (t, out) = run(&mut e, &icmp[..n], 1500);
    let Transmit::Send(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!((s.method, s.next_hop), (Method::Masq, ip(C)));
    assert!(icmp_ok(&out));
    assert_eq!(&out[12..16], &V, "outer source: the VIP");
    let inner = &out[28..];
    assert_eq!(&inner[16..20], &V, "embedded destination: the VIP");
    assert_eq!(&inner[22..24], &80u16.to_be_bytes());
    assert_eq!(checksum::checksum(&inner[..20]), 0);

    // A corrupted ICMP checksum is dropped; unrelated ICMP is not ours.
    let mut bad = icmp[..n].to_vec();
    bad[22] ^= 0xff;
    assert_eq!(
        run(&mut e, &bad, 1500).0,
        Transmit::Drop(DropReason::Malformed)
    );
    let mut other = [0u8; 600];
    let m = error_v4(
        &tcp(C, 1, [198, 18, 9, 9], 2, SYN),
        &mut other,
        3,
        3,
        0,
        None,
    )
    .unwrap();
    assert_eq!(run(&mut e, &other[..m], 1500).0, Transmit::Pass);
    // Oversized relayed errors never trigger fragmentation needed.
    let mut e = nat_engine();
    run(&mut e, &tcp(C, 40000, V, 80, SYN), 1500);
    let n = error_v4(&reply, &mut icmp, 3, 4, 1300, Some(router)).unwrap();
    let mut big = icmp[..n].to_vec();
    big[6] = 0x40;
    Ipv4Packet::new_checked(&mut big[..])
        .unwrap()
        .fill_checksum();
    assert!(matches!(run(&mut e, &big, 60).0, Transmit::Send(_)));
}

#[test]
fn related_icmp_for_direct_routing_goes_to_the_real_server() {
    use lvs_core::wire::icmp::error_v4;
    let mut e = engine(Forward::Route, Tunnel::default());
    run(&mut e, &tcp(C, 40000, V, 80, SYN), 1500);
    // The real server's reply (from the VIP) met a small MTU on the way.
    let reply = tcp(V, 80, C, 40000, SYN | ACK);
    let mut icmp = [0u8; 600];
    let n = error_v4(&reply, &mut icmp, 3, 4, 1300, Some([198, 18, 0, 254])).unwrap();
    let (t, out) = run(&mut e, &icmp[..n], 1500);
    let Transmit::Send(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!((s.method, s.next_hop), (Method::Route, ip(R)));
    let mut want = icmp[..n].to_vec();
    want[8] -= 1;
    Ipv4Packet::new_checked(&mut want[..])
        .unwrap()
        .fill_checksum();
    assert_eq!(out, want, "unchanged but for TTL");
}

#[test]
fn a_gso_super_packet_for_a_tunnel_is_cut_and_each_segment_wrapped() {
    for (t, df) in [
        (tunnel(TunnelType::Gue, 6080, TunnelCsum::Csum), true),
        (Tunnel::default(), false),
    ] {
        let mut e = engine(Forward::Tunnel, t);
        let pkt = big_tcp(3040, df);
        let mut buf = vec![0u8; HEADROOM + pkt.len()];
        buf[HEADROOM..].copy_from_slice(&pkt);
        let mut p = PacketBuf::new(&mut buf, HEADROOM);
        p.gso_size = 1000;
        let Transmit::Send(s) = e.process(0, &mut p, &paths(1500)) else {
            panic!()
        };
        let mss = s.segment.expect("the I/O layer must segment");
        assert_eq!(mss, 1000);
        let encap = p.encap.expect("and wrap each segment");
        assert_eq!(s.start, HEADROOM, "nothing written in front yet");
        let inner = buf[s.start..s.start + s.len].to_vec();
        assert_eq!(inner[8], 63, "TTL decremented once, before cutting");
        let mut out = [0u8; 2048];
        let mut outer = Vec::new();
        let n = lvs_core::wire::tcp::segment(&inner, mss, &mut out, 64, |b, len| {
            let (start, total) = encap.write_nth(b, 64, len, outer.len() as u16);
            outer.push(b[start..start + total].to_vec());
        })
        .unwrap();
        assert_eq!(n, 3);
        let mut payload = Vec::new();
        for (k, o) in outer.iter().enumerate() {
            let ip = Ipv4Packet::new_checked(&o[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.dont_frag(), df);
            assert_eq!(
                ip.ident(),
                if df {
                    0
                } else {
                    encap.id.wrapping_add(k as u16)
                }
            );
            let hdr = 20 + t.encap_len();
            if t.kind == TunnelType::Gue {
                let udp = &o[20..];
                let sum = checksum::pseudo_v4(DIRECTOR, R, ipproto::UDP, udp.len() as u16);
                assert_eq!(checksum::fold(checksum::add_bytes(sum, udp)), 0xffff);
            }
            let i = &o[hdr..];
            assert!(Ipv4Packet::new_checked(i).unwrap().verify_checksum());
            payload.extend_from_slice(&i[40..]);
        }
        assert_eq!(&payload[..], &inner[40..]);
    }
}

#[test]
fn a_tunnel_paths_frag_needed_reaches_the_client_and_lowers_the_tunnel_mtu() {
    use lvs_core::wire::icmp::error_v4;
    let router = [198, 18, 1, 254];
    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let (_, outer) = run(
        &mut e,
        &with_tos_ttl(tcp(C, 40000, V, 80, SYN), 0, 64, true),
        1500,
    );
    assert_eq!(&outer[16..20], &R);
    // The path to the real server says 1400.
    let report = |outer: &[u8], mtu: u32| {
        let mut icmp = [0u8; 600];
        let n = error_v4(outer, &mut icmp, 3, 4, mtu, Some(router)).unwrap();
        icmp[..n].to_vec()
    };
    let icmp = report(&outer, 1400);
    assert_eq!(&icmp[16..20], &DIRECTOR, "to the tunnel's outer source");
    let mut buf = vec![0u8; HEADROOM + icmp.len()];
    buf[HEADROOM..].copy_from_slice(&icmp);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    let t = e.process(1, &mut p, &paths(1500));
    // The client hears the destination's cached route MTU less 20 (the
    // plain route's, 1500, until a packet went through the new one), about
    // its own packet, from the VIP.
    assert_eq!(
        t,
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::Relay {
                typ: 3,
                code: 4,
                info: 1480
            },
            from: IcmpSource::PacketDestination
        })
    );
    let quote = p.bytes().to_vec();
    assert_eq!(&quote[12..16], &C);
    assert_eq!(&quote[16..20], &V);
    let mut out = [0u8; 600];
    let Transmit::Reply(r) = t else {
        unreachable!()
    };
    let n = r.build(&quote, &mut out, None).unwrap();
    assert_eq!(&out[12..16], &V);
    assert_eq!(&out[16..20], &C);
    assert_eq!(&out[20..22], &[3, 4]);
    assert_eq!(&out[24..28], &1480u32.to_be_bytes());
    assert!(icmp_ok(&out[..n]));
    // Later packets use the learned MTU: 1400 - 20 for IPIP.
    let (t, _) = run(&mut e, &big_tcp(1381, true), 1500);
    assert_eq!(
        t,
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::FragNeeded { mtu: 1380 },
            from: IcmpSource::PacketDestination
        })
    );
    let (_, outer2) = run(
        &mut e,
        &with_tos_ttl(tcp(C, 40000, V, 80, ACK), 0, 64, true),
        1500,
    );
    // A second report now moves the cached route itself: 1300 - 20.
    let (t, _) = run(&mut e, &report(&outer2, 1300), 1500);
    assert!(
        matches!(
            t,
            Transmit::Reply(Reply::Icmp {
                error: IcmpError::Relay { info: 1280, .. },
                ..
            })
        ),
        "{t:?}"
    );
    // About a packet without DF: learned, nothing passed on.
    let (_, outer3) = run(
        &mut e,
        &with_tos_ttl(tcp(C, 40000, V, 80, ACK), 0, 64, false),
        1500,
    );
    assert_eq!(
        run(&mut e, &report(&outer3, 1200), 1500).0,
        Transmit::Drop(DropReason::TunnelPmtuLearned)
    );
    // Not one of ours (no tunnel server there): an ordinary ICMP packet.
    let mut other = outer.clone();
    other[16..20].copy_from_slice(&[198, 18, 1, 99]);
    Ipv4Packet::new_checked(&mut other[..])
        .unwrap()
        .fill_checksum();
    assert_eq!(run(&mut e, &report(&other, 1400), 1500).0, Transmit::Pass);
}

#[test]
fn a_vip_port_without_service_is_answered_like_the_hosts_stack_would() {
    let mut e = nat_engine();
    // SYN to VIP:81 (no service there): RST-ACK; UDP: port unreachable.
    let (t, _) = run(&mut e, &tcp(C, 40000, V, 81, SYN), 1500);
    assert_eq!(t, Transmit::Reply(Reply::TcpReset));
    let (t, _) = run(&mut e, &support::udp(C, 40000, V, 53), 1500);
    assert_eq!(
        t,
        Transmit::Reply(Reply::Icmp {
            error: IcmpError::PortUnreachable,
            from: IcmpSource::PacketDestination
        })
    );
    // A RST is not answered; another address is not ours at all.
    let rst = tcp(C, 40000, V, 81, lvs_core::wire::tcp_flags::RST);
    assert_eq!(run(&mut e, &rst, 1500).0, Transmit::Pass);
    assert_eq!(
        run(&mut e, &tcp(C, 1, [198, 18, 0, 99], 81, SYN), 1500).0,
        Transmit::Pass
    );
    // When the VIP is one of the host's own addresses, the host answers.
    let host = OnLink {
        src: ip(V),
        mtu: 1500,
    };
    let mut syn = tcp(C, 40001, V, 81, SYN);
    assert_eq!(
        e.process(0, &mut PacketBuf::new(&mut syn, 0), &host),
        Transmit::Pass
    );
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let mut e = nat_engine();
    // Total length beyond the buffer, and a TCP header cut short.
    let mut long = tcp(C, 40000, V, 80, SYN);
    long[2..4].copy_from_slice(&2000u16.to_be_bytes());
    let mut short = tcp(C, 40000, V, 80, SYN);
    short.truncate(30);
    short[2..4].copy_from_slice(&30u16.to_be_bytes());
    Ipv4Packet::new_checked(&mut short[..])
        .unwrap()
        .fill_checksum();
    for p in [long, short] {
        assert_eq!(
            run(&mut e, &p, 1500).0,
            Transmit::Drop(DropReason::Malformed)
        );
    }
    assert_eq!(e.counters.drops[DropReason::Malformed as usize], 2);
    // Another protocol cut short is the host's business.
    let mut gre = tcp(C, 40000, V, 80, SYN);
    gre[9] = 47;
    Ipv4Packet::new_checked(&mut gre[..])
        .unwrap()
        .fill_checksum();
    assert_eq!(
        run(&mut e, &gre[..22], 1500).0,
        Transmit::Drop(DropReason::Malformed)
    );
    assert_eq!(run(&mut e, &gre, 1500).0, Transmit::Pass);
}

#[test]
fn an_offloaded_sctp_crc_is_finished_by_the_engine_and_no_offload_is_asked() {
    use lvs_core::proto::sctp;
    let mut e = engine_with(ipproto::SCTP, Forward::Route, Tunnel::default(), 80);
    // An SCTP INIT with its CRC left for offload (zero).
    let mut l4 = vec![0u8; 12 + 20];
    l4[0..2].copy_from_slice(&5000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&80u16.to_be_bytes());
    l4[12] = 1; // INIT
    l4[14..16].copy_from_slice(&20u16.to_be_bytes());
    let mut pkt = vec![0u8; 20];
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    pkt[8] = 64;
    pkt[9] = ipproto::SCTP;
    pkt[12..16].copy_from_slice(&C);
    pkt[16..20].copy_from_slice(&V);
    pkt.extend_from_slice(&l4);
    Ipv4Packet::new_checked(&mut pkt[..])
        .unwrap()
        .fill_checksum();
    let mut buf = vec![0u8; HEADROOM + pkt.len()];
    buf[HEADROOM..].copy_from_slice(&pkt);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    p.csum_partial = true;
    let Transmit::Send(s) = e.process(0, &mut p, &paths(1500)) else {
        panic!()
    };
    assert_eq!(s.method, Method::Route);
    assert!(!s.csum_partial, "a virtio header cannot ask for a CRC32c");
    let out = &buf[s.start + 20..s.start + s.len];
    assert_eq!(
        sctp::checksum(out).map(|c| c.to_le_bytes()),
        Some([out[8], out[9], out[10], out[11]]),
        "the CRC32c is filled in"
    );
}

#[test]
fn destinations_and_timeouts_the_kernel_refuses_are_refused() {
    let mut e = engine(Forward::Masq, Tunnel::default());
    let key = ServiceKey {
        protocol: ipproto::TCP,
        addr: ip(V),
        port: 80,
    };
    for bad in [
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "239.1.2.3",
        "::",
        "ff02::1",
    ] {
        let cfg = DestConfig {
            addr: bad.parse().unwrap(),
            port: 80,
            forward: Forward::Tunnel,
            tunnel: Tunnel::default(),
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        assert!(
            matches!(
                e.add_dest(key, cfg),
                Err(lvs_core::ControlError::Invalid(_))
            ),
            "{bad} accepted"
        );
    }
    let max = lvs_core::engine::MAX_TIMEOUT_SECS;
    assert!(e.set_timeouts(max, max, max).is_ok());
    assert!(e.set_timeouts(0, max + 1, 0).is_err());
    assert_eq!(
        e.timeouts(),
        (max, max, max),
        "a refused change changes nothing"
    );
}

#[test]
fn packets_the_hosts_input_drops_are_dropped_and_counted() {
    let mut e = nat_engine();
    let fixed = |mut v: Vec<u8>| {
        Ipv4Packet::new_checked(&mut v[..]).unwrap().fill_checksum();
        v
    };
    // A SYN with a wrong header checksum makes no entry.
    let mut bad = tcp(C, 40000, V, 80, SYN);
    bad[10] ^= 0x55;
    assert_eq!(
        run(&mut e, &bad, 1500).0,
        Transmit::Drop(DropReason::BadChecksum)
    );
    assert_eq!(e.connection_count(), 0);
    // Martian sources and destinations.
    for (src, dst) in [
        ([0, 0, 0, 0], V),
        ([0, 1, 2, 3], V),
        ([127, 0, 0, 1], V),
        ([224, 0, 0, 5], V),
        ([255, 255, 255, 255], V),
        ([240, 0, 0, 1], V),
        (C, [127, 0, 0, 1]),
        (C, [0, 0, 0, 9]),
    ] {
        let p = tcp(src, 40000, dst, 80, SYN);
        assert_eq!(
            run(&mut e, &p, 1500).0,
            Transmit::Drop(DropReason::Martian),
            "{src:?} > {dst:?}"
        );
    }
    // Options: a loose source route, and an option longer than the header.
    let with_options = |opts: [u8; 4]| {
        let p = tcp(C, 40000, V, 80, SYN);
        let mut v = vec![0x46];
        v.extend_from_slice(&p[1..20]);
        v.extend_from_slice(&opts);
        v.extend_from_slice(&p[20..]);
        let n = v.len() as u16;
        v[2..4].copy_from_slice(&n.to_be_bytes());
        fixed(v)
    };
    let lsrr = with_options([0x83, 3, 4, 0]);
    assert_eq!(
        run(&mut e, &lsrr, 1500).0,
        Transmit::Drop(DropReason::SourceRoute)
    );
    let overrun = with_options([0x44, 12, 5, 0]);
    assert_eq!(
        run(&mut e, &overrun, 1500).0,
        Transmit::Drop(DropReason::BadOptions)
    );
    // NOPs and an end-of-list are fine.
    let nops = with_options([1, 1, 0, 0]);
    assert!(matches!(run(&mut e, &nops, 1500).0, Transmit::Send(_)));
    // A source that is a VIP or the director's own address.
    for src in [V, DIRECTOR] {
        let p = tcp(src, 40001, V, 80, SYN);
        assert_eq!(
            run(&mut e, &p, 1500).0,
            Transmit::Drop(DropReason::LocalSource)
        );
    }
    let c = &e.counters.drops;
    assert_eq!(
        [
            c[DropReason::BadChecksum as usize],
            c[DropReason::Martian as usize],
            c[DropReason::SourceRoute as usize],
            c[DropReason::BadOptions as usize],
            c[DropReason::LocalSource as usize]
        ],
        [1, 8, 1, 1, 2]
    );
}

/// Paths whose route depends on the source (policy routing by source): from
/// the VIP, through port 1 and a gateway; from the director's address,
/// through port 2; otherwise on-link behind port 0.
struct BySource;

const VIP_GATEWAY: [u8; 4] = [198, 18, 0, 254];

impl lvs_core::xmit::Paths for BySource {
    fn path(&self, to: std::net::IpAddr) -> Option<lvs_core::xmit::Path> {
        paths(1500).path(to)
    }
    fn path_from(
        &self,
        to: std::net::IpAddr,
        from: std::net::IpAddr,
    ) -> Option<lvs_core::xmit::Path> {
        let p = self.path(to)?;
        Some(if from == ip(V) {
            lvs_core::xmit::Path {
                port: 1,
                next_hop: ip(VIP_GATEWAY),
                ..p
            }
        } else if from == ip(DIRECTOR) {
            lvs_core::xmit::Path { port: 2, ..p }
        } else {
            p
        })
    }
    fn source(&self, _to: std::net::IpAddr) -> Option<std::net::IpAddr> {
        Some(ip(DIRECTOR))
    }
}

fn run_by_source(e: &mut Engine, pkt: &[u8]) -> Transmit {
    let mut buf = vec![0u8; HEADROOM + pkt.len()];
    buf[HEADROOM..].copy_from_slice(pkt);
    let mut p = PacketBuf::new(&mut buf, HEADROOM);
    e.process(0, &mut p, &BySource)
}

/// `snat_reroute` (forwarding.md §5 step 4): a NAT reply is routed as if
/// the director sent it from the VIP, so rules that select by source
/// apply; with 0 it keeps the route of its own source (the real server).
/// A NAT packet towards the real server is routed by its destination; a
/// tunnel's outer packet from the source the director picked.
#[test]
fn nat_replies_are_routed_from_the_vip_and_tunnels_from_their_source() {
    let sent = |t: Transmit| match t {
        Transmit::Send(s) => (s.port, s.next_hop),
        other => panic!("{other:?}"),
    };
    let mut e = nat_engine();
    assert_eq!(e.sysctl("snat_reroute").as_deref(), Ok("1"));
    let t = run_by_source(&mut e, &tcp(C, 40000, V, 80, SYN));
    assert_eq!(sent(t), (0, ip(R)));
    let t = run_by_source(&mut e, &tcp(R, 8080, C, 40000, SYN | ACK));
    assert_eq!(sent(t), (1, ip(VIP_GATEWAY)), "routed from the VIP");
    e.set_sysctl("snat_reroute", "0").unwrap();
    let t = run_by_source(&mut e, &tcp(R, 8080, C, 40000, ACK));
    assert_eq!(sent(t), (0, ip(C)), "routed from the real server");

    let mut e = engine(Forward::Tunnel, Tunnel::default());
    let t = run_by_source(&mut e, &tcp(C, 40000, V, 80, SYN));
    assert_eq!(sent(t), (2, ip(R)), "routed from the outer source");
}
