//! End-to-end: direct routing and tunnelling through the real `lvsd`
//! (forwarding.md §6, §7), a bulk upload through a GUE tunnel whose GSO
//! super-packets lvsd cuts into segments itself, the reset a stray TCP
//! segment to a service gets, and path MTU discovery through a NAT service
//! (§3.4) — real kernels' TCP stacks in network namespaces, real `curl`,
//! the real `lvsadm`.
//!
//! In this lab the real servers route the client net via the director, so
//! the replies of DR and tunnel servers (source VIP, untouched by IPVS)
//! travel back through the director's kernel: these tests switch
//! `ip_forward` on in the director namespace, as on a kernel director that
//! is also the real servers' router. lvsd's nftables guard keeps the kernel
//! from forwarding the client → VIP packets itself.
//!
//! The kernel here has no ipip/gre/fou modules, so the tunnel tests run
//! `lvs-decap` (crates/lvs-lab/src/bin) on each real server: a strict
//! userspace tunnel endpoint that checks every header as §7.3/§7.4 describe
//! and hands the inner packet to the server's own stack through a TUN
//! device.
//!
//! Needs root, `curl` and the binaries (`cargo build -p lvsd -p lvsadm
//! -p lvs-lab --bins`).

mod support;

use lvs_lab::{server_ip, Lab, CLIENT_IP, VIP};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{
    bulk_both_ways, curl_args, inet_sum, ip, lvsadm_ok, nat_lab, reported, tcp_pseudo, Decap,
    Director,
};

/// `n` sequential requests, a new curl (and source port) each; the bodies
/// counted per answer. Stops at the first failure.
fn requests(lab: &Lab, url: &str, first_port: u16, n: u16) -> Result<HashMap<String, u32>, String> {
    let mut bodies: HashMap<String, u32> = HashMap::new();
    for i in 0..n {
        let port = (first_port + i).to_string();
        match curl_args(lab, url, &["--local-port", &port]) {
            Ok(b) => *bodies.entry(b).or_default() += 1,
            Err(e) => {
                return Err(format!(
                    "request {i} of {n} failed (answers so far {bodies:?}): {e}"
                ))
            }
        }
    }
    Ok(bodies)
}

/// A real server of a DR or tunnel service: the VIP on `lo`, and no ARP
/// answers or announcements for it (design.md, "rp_filter and ARP").
fn vip_on_loopback(lab: &Lab, i: usize) {
    let ns = lab.server_ns(i).to_string();
    ip(
        lab,
        &ns,
        &["addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    );
    for key in [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.b0.arp_ignore",
    ] {
        lab.set_sysctl(&ns, key, "1").unwrap();
    }
    for key in [
        "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.b0.arp_announce",
    ] {
        lab.set_sysctl(&ns, key, "2").unwrap();
    }
}

/// The real servers' replies (source VIP) are the director host's to route.
fn director_routes_replies(lab: &Lab) {
    lab.set_sysctl(lab.director_ns(), "net.ipv4.ip_forward", "1")
        .unwrap();
}

/// `lvsadm ARGS` lines of real servers (`  -> …`), as whitespace-split fields.
fn dest_lines(sock: &Path, args: &[&str]) -> (String, Vec<Vec<String>>) {
    let out = lvsadm_ok(sock, args);
    let lines = out
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    (out, lines)
}

/// A TCP server of our own in a real server's namespace: accepts `expect`
/// connections (20 s at most), answers `rsI\n` to each and records the
/// connection's local and peer address as the real server's stack saw them.
fn start_probe(
    lab: &Lab,
    i: usize,
    port: u16,
    expect: usize,
) -> std::thread::JoinHandle<Result<Vec<(SocketAddr, SocketAddr)>, String>> {
    let ns = lab.server_ns(i).to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        lvs_lab::enter_netns(&ns).map_err(|e| e.to_string())?;
        let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while seen.len() < expect {
            let mut s = match l.accept() {
                Ok((s, _)) => s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => {
                    return Err(format!(
                        "rs{i}: {} of {expect} connections: {e}",
                        seen.len()
                    ))
                }
            };
            seen.push((
                s.local_addr().map_err(|e| e.to_string())?,
                s.peer_addr().map_err(|e| e.to_string())?,
            ));
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            let mut line = [0u8; 16];
            let _ = s.read(&mut line).map_err(|e| e.to_string())?;
            s.write_all(format!("rs{i}\n").as_bytes())
                .map_err(|e| e.to_string())?;
            s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            // Wait (bounded) for the client's close: closing with unread
            // data would reset the connection.
            let _ = s.read(&mut line);
        }
        Ok(seen)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("probe server ready");
    h
}

/// Seed-style configuration (seed 003): no `mode` line, so direct routing.
const DR_CONFIG: &str = "\
director web 198.18.0.100:80 TCP
  balance roundrobin
  server rs1 198.18.1.11:80
  server rs2 198.18.1.12:80
  server rs3 198.18.1.13:80

director probe 198.18.0.100:8080 TCP
  balance roundrobin
  server rs1 198.18.1.11
  server rs2 198.18.1.12
  server rs3 198.18.1.13
";

#[test]
fn direct_routing_is_the_default_and_delivers_to_the_vip() {
    let (_g, lab) = nat_lab("lvtdr", 3);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    for i in 1..=3 {
        vip_on_loopback(&lab, i);
    }
    director_routes_replies(&lab);
    let probes: Vec<_> = (1..=3).map(|i| start_probe(&lab, i, 8080, 3)).collect();
    let director = Director::start(&lab, "dr", DR_CONFIG);

    // 60 HTTP requests through the VIP: round robin over all three.
    let bodies = requests(&lab, "http://198.18.0.100/", 45000, 60).unwrap();
    for i in 1..=3 {
        assert_eq!(
            bodies.get(&format!("rs{i}\n")),
            Some(&20),
            "answers per server: {bodies:?}"
        );
    }
    for s in &servers {
        assert_eq!(s.tcp_requests(), 20, "{} counted", s.name);
    }

    // Nine connections to the probe service: each real server's stack saw
    // a connection to VIP:8080 from the client itself — not rewritten.
    let answers = lab
        .run_in(lab.client_ns(), || {
            (0..9)
                .map(|_| -> Result<String, String> {
                    let addr = SocketAddr::from(SocketAddrV4::new(VIP, 8080));
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        .map_err(|e| e.to_string())?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .map_err(|e| e.to_string())?;
                    s.write_all(b"who?\n").map_err(|e| e.to_string())?;
                    let mut body = String::new();
                    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
                    Ok(body)
                })
                .collect::<Vec<_>>()
        })
        .expect("probe client");
    let mut per: HashMap<String, u32> = HashMap::new();
    for a in answers {
        *per.entry(a.expect("probe connection through the VIP"))
            .or_default() += 1;
    }
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|n| *n == 3), "{per:?}");
    for (i, p) in probes.into_iter().enumerate() {
        let seen = p.join().expect("probe thread").expect("probe server");
        assert_eq!(seen.len(), 3);
        for (local, peer) in seen {
            assert_eq!(
                local,
                SocketAddr::from(SocketAddrV4::new(VIP, 8080)),
                "rs{} saw a connection to {local}, not to the VIP",
                i + 1
            );
            assert_eq!(peer.ip(), std::net::IpAddr::V4(CLIENT_IP), "rs{}", i + 1);
        }
    }

    // The table: every real server forwarded by `Route`, with its share.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (out, lines) = dest_lines(&director.sock, &["-L", "-n"]);
        assert_eq!(lines.len(), 6, "{out}");
        assert!(
            lines.iter().all(|f| f[2] == "Route" && f[3] == "1"),
            "{out}"
        );
        let total = |port: &str| -> Vec<u64> {
            lines
                .iter()
                .filter(|f| f[1].ends_with(port))
                .map(|f| f[4].parse::<u64>().unwrap() + f[5].parse::<u64>().unwrap())
                .collect()
        };
        let (web, probe) = (total(":80"), total(":8080"));
        if web == [20, 20, 20] && probe == [3, 3, 3] {
            for i in 1..=3 {
                assert!(out.contains(&format!("  -> {}:80 ", server_ip(i))), "{out}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections per real server: web {web:?}, probe {probe:?}\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let log = director.stop(&lab);
    // Only direct routing was used: nothing was translated or tunnelled.
    // With a fast path (the later passes of scripts/test.sh), it carried
    // the established connections' packets.
    let carried = support::carried(&log);
    assert!(reported(&log, " route,") + carried >= 69 * 3, "{log}");
    if support::fastpath_everywhere().is_some() {
        assert!(carried > 0, "{log}");
    }
    assert_eq!(reported(&log, " masq,"), 0, "{log}");
    assert_eq!(reported(&log, " tunnel,"), 0, "{log}");
    drop(servers);
    lab.close().expect("lab cleanup");
}

/// Tunnel forwarding of one kind through two real servers running
/// `lvs-decap`: requests succeed, every tunnel packet passed the header
/// checks, and `--tun-info` shows the tunnel.
fn tunnel(prefix: &str, mode: &str, kind: &str, csum: bool, tun_info: &str) {
    let (_g, lab) = nat_lab(prefix, 2);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    for i in 1..=2 {
        vip_on_loopback(&lab, i);
    }
    director_routes_replies(&lab);
    let decaps: Vec<Decap> = (1..=2)
        .map(|i| {
            let (rip, from) = (server_ip(i).into(), lvs_lab::DIRECTOR_BACK_IP.into());
            Decap::start(&lab, i, prefix, rip, from, None)
        })
        .collect();
    let config = format!(
        "director web 198.18.0.100:80 TCP\n  balance roundrobin\n  {mode}\n  server rs1 198.18.1.11:80\n  server rs2 198.18.1.12:80\n"
    );
    let director = Director::start(&lab, prefix, &config);

    let bodies = requests(&lab, "http://198.18.0.100/", 46000, 20).unwrap_or_else(|e| {
        let seen: Vec<_> = decaps.iter().map(Decap::counters).collect();
        panic!("{e}\nlvs-decap counters: {seen:?}")
    });
    assert_eq!(
        (bodies.get("rs1\n"), bodies.get("rs2\n")),
        (Some(&10), Some(&10)),
        "{bodies:?}"
    );
    for s in &servers {
        assert_eq!(s.tcp_requests(), 10, "{} counted", s.name);
    }

    let (out, lines) = dest_lines(&director.sock, &["-L", "-n", "--tun-info"]);
    assert!(
        out.contains(
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    for (i, f) in lines.iter().enumerate() {
        assert_eq!(f[1], format!("{}:80", server_ip(i + 1)), "{out}");
        assert_eq!(
            (f[2].as_str(), f[3].as_str()),
            ("Tunnel", tun_info),
            "{out}"
        );
    }
    let (_, plain) = dest_lines(&director.sock, &["-L", "-n"]);
    assert!(plain.iter().all(|f| f[2] == "Tunnel"), "{plain:?}");

    let log = director.stop(&lab);
    let mut decapsulated = 0;
    for (i, d) in decaps.into_iter().enumerate() {
        let c = d.stop(&lab);
        eprintln!("rs{}: lvs-decap counted {c:?}", i + 1);
        let n = c[kind];
        // Per connection at least SYN, request, FIN (and ACKs).
        assert!(n >= 30, "rs{}: {n} {kind} packets: {c:?}", i + 1);
        assert_eq!(c["written"], n, "rs{}: {c:?}", i + 1);
        assert_eq!(c["write_errors"], 0, "rs{}: {c:?}", i + 1);
        assert_eq!(
            c["ipip"] + c["gue"] + c["gre"],
            n,
            "rs{}: other tunnel kinds seen: {c:?}",
            i + 1
        );
        let with_csum = c.get(&format!("{kind}_csum")).copied().unwrap_or(0);
        assert_eq!(with_csum, if csum { n } else { 0 }, "rs{}: {c:?}", i + 1);
        decapsulated += n;
    }
    // Every packet lvsd tunnelled arrived and was accepted.
    assert_eq!(reported(&log, " tunnel,"), decapsulated, "{log}");
    assert_eq!(reported(&log, " masq,"), 0, "{log}");
    assert_eq!(reported(&log, " route,"), 0, "{log}");
    drop(servers);
    lab.close().expect("lab cleanup");
}

#[test]
fn tunnel_ipip() {
    tunnel("lvtipip", "mode tunnel", "ipip", false, "ipip");
}

#[test]
fn tunnel_gue_with_checksum() {
    tunnel(
        "lvtgue",
        "mode tunnel gue port 6080 csum",
        "gue",
        true,
        "gue:6080:+c",
    );
}

#[test]
fn tunnel_gre_with_checksum() {
    tunnel("lvtgre", "mode tunnel gre csum", "gre", true, "gre:+c");
}

/// From the client namespace: sends a bare TCP ACK (no SYN, no
/// connection) from `sport` to VIP:`dport` on a raw socket and returns the
/// first TCP packet from VIP:`dport` to that port (IP header included), or
/// an error after 3 s.
fn stray_ack(sport: u16, dport: u16, seq: u32, ack: u32) -> Result<Vec<u8>, String> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: SO_RCVTIMEO takes a timeval, passed with its size.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    seg[4..8].copy_from_slice(&seq.to_be_bytes());
    seg[8..12].copy_from_slice(&ack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = 0x10; // ACK
    seg[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let c = !inet_sum(tcp_pseudo(CLIENT_IP, VIP, 20), &seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(VIP).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sendto(2) of a live buffer to a sockaddr_in passed with its size.
    let n = unsafe {
        libc::sendto(
            raw,
            seg.as_ptr().cast(),
            seg.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n != seg.len() as isize {
        return Err(format!("sendto: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: recv(2) into a live buffer of the given length.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 40 {
            continue; // timeout (bounded by the deadline) or a runt
        }
        let p = &buf[..n as usize];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let t = &p[ihl..];
        let from = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        if from == VIP
            && u16::from_be_bytes([t[0], t[1]]) == dport
            && u16::from_be_bytes([t[2], t[3]]) == sport
        {
            return Ok(p.to_vec());
        }
    }
    Err(format!("no answer from {VIP}:{dport} within 3 s"))
}

#[test]
fn stray_ack_to_a_service_gets_a_reset() {
    let (_g, lab) = nat_lab("lvtrst", 1);
    let config = "\
director web 198.18.0.100:80 TCP
  mode nat
  server rs1 198.18.1.11:80

director dr 198.18.0.100:81 TCP
  server rs1 198.18.1.11
";
    let director = Director::start(&lab, "rst", config);
    for (dport, sport, seq, ack) in [
        (80u16, 47001u16, 1000u32, 0x1234_5678u32),
        (81, 47002, 0xffff_fff0, 0x8000_0001),
    ] {
        let p = lab
            .run_in(lab.client_ns(), move || stray_ack(sport, dport, seq, ack))
            .expect("client thread")
            .unwrap_or_else(|e| panic!("stray ACK to port {dport}: {e}"));
        let ihl = usize::from(p[0] & 0x0f) * 4;
        assert_eq!(
            inet_sum(0, &p[..ihl]),
            0xffff,
            "IP header checksum: {p:02x?}"
        );
        assert_eq!(&p[16..20], &CLIENT_IP.octets(), "to the client");
        assert_eq!(p[9], 6);
        let t = &p[ihl..];
        assert_eq!(
            inet_sum(tcp_pseudo(VIP, CLIENT_IP, t.len()), t),
            0xffff,
            "TCP checksum: {p:02x?}"
        );
        // RFC 793 for a segment with ACK: <SEQ=SEG.ACK><CTL=RST>.
        assert_eq!(t[13], 0x04, "flags: RST only: {p:02x?}");
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), ack, "RST seq");
    }
    // Nothing was scheduled for them.
    let (_, lines) = dest_lines(&director.sock, &["-L", "-n"]);
    assert!(
        lines.iter().all(|f| f[4] == "0" && f[5] == "0"),
        "{lines:?}"
    );
    let log = director.stop(&lab);
    assert_eq!(reported(&log, " resets;"), 2, "{log}");
    lab.close().expect("lab cleanup");
}

/// MTU 1400 behind the director, 1500 in front: the client's full-size
/// segments (GSO super-packets of 1500-byte segments, from TSO on veth)
/// are too big for the back net, so lvsd must answer them with ICMP
/// fragmentation needed (§3.4) for the upload to get through.
///
/// The real server advertises an MSS of 1460 (`advmss` on its route to the
/// client net), as a server whose own link is not the narrow one would:
/// with the MSS derived from its 1400-byte link the client would never
/// send a segment that needs the check.
#[test]
fn path_mtu_discovery_through_nat() {
    let (_g, lab) = nat_lab("lvtpmtu", 1);
    let (d, s) = (lab.director_ns().to_string(), lab.server_ns(1).to_string());
    ip(&lab, &d, &["link", "set", "dev", "vs1", "mtu", "1400"]);
    ip(&lab, &d, &["link", "set", "dev", "br1", "mtu", "1400"]);
    ip(&lab, &s, &["link", "set", "dev", "b0", "mtu", "1400"]);
    ip(
        &lab,
        &s,
        &[
            "route",
            "replace",
            "198.18.0.0/24",
            "via",
            "198.18.1.1",
            "dev",
            "b0",
            "advmss",
            "1460",
        ],
    );
    const LEN: usize = 2 << 20;
    let config = "director bulk 198.18.0.100:9000 TCP\n  balance roundrobin\n  mode nat\n  server rs1 198.18.1.11:9000\n";
    let director = Director::start_keeping_offloads(&lab, "pmtu", config);
    let (up, down, took) = bulk_both_ways(&lab, LEN, Duration::from_secs(15));
    // The client learnt the path MTU from lvsd's frag-needed (sent from the VIP).
    let route = ip(&lab, lab.client_ns(), &["route", "get", "198.18.0.100"]);
    let log = director.stop(&lab);
    assert_eq!(up, Ok(LEN), "client → server through the VIP\n{log}");
    assert_eq!(down, Ok(LEN), "server → client through the VIP\n{log}");
    assert!(
        took < Duration::from_secs(10),
        "2 MB each way took {took:?}"
    );
    assert!(
        route.contains("mtu 1400"),
        "client's route to the VIP: {route}"
    );
    assert!(reported(&log, " frag-needed,") > 0, "{log}");
    // The client's TSO handed lvsd super-packets: the check covered them.
    assert!(reported(&log, " GSO;") > 0, "{log}");
    lab.close().expect("lab cleanup");
}

/// Bulk TCP through a GUE tunnel with checksums, 2 MB each way. The
/// client's TSO hands lvsd GSO super-packets, which a tunnel cannot pass
/// on to the kernel for segmentation: lvsd cuts each into TCP segments and
/// wraps every one (and answers the first full-size ones with
/// fragmentation needed, the tunnel MTU being 32 bytes smaller), and
/// `lvs-decap` checks every header. The download goes from the real
/// server straight to the client, routed by the director's kernel, as
/// tunnelled services answer.
#[test]
fn bulk_tcp_through_a_gue_tunnel_cuts_super_packets() {
    let (_g, lab) = nat_lab("lvtgbulk", 1);
    vip_on_loopback(&lab, 1);
    director_routes_replies(&lab);
    let (rip, from) = (server_ip(1).into(), lvs_lab::DIRECTOR_BACK_IP.into());
    let decap = Decap::start(&lab, 1, "lvtgbulk", rip, from, None);
    const LEN: usize = 2 << 20;
    let config = "director bulk 198.18.0.100:9000 TCP\n  balance roundrobin\n  mode tunnel gue port 6080 csum\n  server rs1 198.18.1.11:9000\n";
    let director = Director::start_keeping_offloads(&lab, "gbulk", config);
    let (up, down, took) = bulk_both_ways(&lab, LEN, Duration::from_secs(15));
    let log = director.stop(&lab);
    // Asserts 0 violations: every segment lvsd cut and wrapped passed the checks.
    let c = decap.stop(&lab);
    eprintln!("rs1: lvs-decap counted {c:?}; 2 MB each way took {took:?}");
    assert_eq!(up, Ok(LEN), "client → server through the tunnel\n{log}");
    assert_eq!(down, Ok(LEN), "server → client\n{log}");
    assert!(
        took < Duration::from_secs(10),
        "2 MB each way took {took:?}"
    );
    assert!(c["gue"] > 0, "{c:?}");
    assert_eq!(c["gue_csum"], c["gue"], "{c:?}");
    assert_eq!(c["written"], c["gue"], "{c:?}");
    assert_eq!(c["write_errors"], 0, "{c:?}");
    assert_eq!(c["ipip"] + c["gre"], 0, "{c:?}");
    // The client's TSO handed lvsd super-packets, and lvsd cut them.
    assert!(reported(&log, " GSO;") > 0, "{log}");
    assert!(
        reported(&log, " segments cut from super-packets") > 0,
        "{log}"
    );
    // Engine drops are listed only when there are any.
    let report = &log[log.find("stopping (rx").expect("exit report")..];
    if report.contains(" gso_tunnel") {
        assert_eq!(reported(&log, " gso_tunnel"), 0, "{log}");
    }
    assert_eq!(reported(&log, " masq,"), 0, "{log}");
    assert_eq!(reported(&log, " route,"), 0, "{log}");
    lab.close().expect("lab cleanup");
}
