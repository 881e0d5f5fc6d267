//! End-to-end over IPv6: NAT66 and IPv6 direct routing through the real
//! `lvsd`, with real `curl -6` clients and real servers' kernels in network
//! namespaces, a dual-stack director serving an IPv4 and an IPv6 VIP at
//! once, neighbour discovery both ways (the client resolves the VIP from
//! lvsd's advertisements, lvsd resolves the real servers with
//! solicitations), and the nftables guard's IPv6 sets. Addresses from
//! 2001:db8::/32.
//!
//! Needs root and `curl` (`cargo build -p lvsd -p lvsadm --bins` first).

mod support;

use lvs_lab::Lab;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::{curl_args, ip, lvsadm_ok, nat_lab, nft_set, Decap, Director};

/// IPv6 on the lab (which keeps it off by default) and addresses on its
/// links (no duplicate address detection, so they are usable at once):
/// client 2001:db8::2 on the front link, the director 2001:db8::1 and
/// 2001:db8:1::1, real server i 2001:db8:1::1i with the director as its
/// default router. The kernels' own IPv6 chatter (link-local addresses,
/// their duplicate address detection, router solicitations) comes with it.
fn add_ipv6(lab: &Lab) {
    for ns in lab.namespaces() {
        lab.set_sysctl(&ns, "net.ipv6.conf.all.disable_ipv6", "0")
            .unwrap();
    }
    let nodad = |ns: &str, addr: &str, dev: &str| {
        ip(lab, ns, &["-6", "addr", "add", addr, "dev", dev, "nodad"]);
    };
    nodad(lab.client_ns(), "2001:db8::2/64", "c0");
    nodad(lab.director_ns(), "2001:db8::1/64", "d0");
    nodad(lab.director_ns(), "2001:db8:1::1/64", "br1");
    for i in 1..=lab.server_count() {
        let ns = lab.server_ns(i).to_string();
        nodad(&ns, &format!("2001:db8:1::1{i}/64"), "b0");
        ip(
            lab,
            &ns,
            &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
        );
    }
}

/// `n` requests to `url` from the client, a new curl each; answers counted.
fn requests(lab: &Lab, url: &str, n: usize, extra: &[&str]) -> HashMap<String, u32> {
    let mut bodies = HashMap::new();
    for i in 0..n {
        match curl_args(lab, url, extra) {
            Ok(b) => *bodies.entry(b).or_default() += 1,
            Err(e) => panic!("request {i} to {url} failed (so far {bodies:?}): {e}"),
        }
    }
    bodies
}

/// Sends `what` from the client's own socket to [2001:db8::100]:53 and
/// returns the answer and where it came from.
fn udp_ask(lab: &Lab, what: &[u8]) -> (Vec<u8>, SocketAddr) {
    let what = what.to_vec();
    lab.run_in(lab.client_ns(), move || {
        let s = UdpSocket::bind("[2001:db8::2]:0")?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let to: SocketAddr = "[2001:db8::100]:53".parse().unwrap();
        s.send_to(&what, to)?;
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf)?;
        Ok::<_, std::io::Error>((buf[..n].to_vec(), from))
    })
    .expect("run in the client namespace")
    .expect("a UDP answer over IPv6")
}

const DUAL: &str = "\
director web6 [2001:db8::100]:80 TCP
    balance roundrobin
    mode nat
    server rs1 [2001:db8:1::11]:80
    server rs2 [2001:db8:1::12]:80

director dns6 [2001:db8::100]:53 UDP
    mode nat
    server rs1 [2001:db8:1::11]:53

director web4 198.18.0.100:80 TCP
    mode nat
    server rs1 198.18.1.11:80
";

#[test]
fn nat66_and_ipv4_side_by_side() {
    let (_g, lab) = nat_lab("lvsix", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    add_ipv6(&lab);
    let d = Director::start(&lab, "nat66", DUAL);
    // 20 requests over IPv6: round robin over both servers, translated
    // both ways (the client talks to the VIP only).
    let six = requests(&lab, "http://[2001:db8::100]/", 20, &["-6"]);
    assert_eq!(six.get("rs1\n"), Some(&10), "{six:?}");
    assert_eq!(six.get("rs2\n"), Some(&10), "{six:?}");
    // The IPv4 VIP at the same time.
    let four = requests(&lab, "http://198.18.0.100/", 5, &[]);
    assert_eq!(four.get("rs1\n"), Some(&5), "{four:?}");
    // UDP over IPv6, from the client's own socket.
    let answer = udp_ask(&lab, b"who?");
    assert_eq!(answer.0, b"rs1\n");
    assert_eq!(
        answer.1,
        "[2001:db8::100]:53".parse().unwrap(),
        "from the VIP"
    );
    // Listed as ipvsadm lists IPv6 services and real servers.
    let list = lvsadm_ok(&d.sock, &["-L", "-n", "-t", "[2001:db8::100]:80"]);
    assert!(list.contains("TCP  [2001:db8::100]:80 wrr\n"), "{list}");
    assert!(
        list.contains("  -> [2001:db8:1::11]:80          Masq    1      0          10"),
        "{list}"
    );
    let conns = lvsadm_ok(&d.sock, &["-L", "-n", "-c"]);
    assert!(conns.contains("[2001:db8::2]:"), "{conns}");
    // The guard keeps the kernel from the IPv6 VIP and the servers' replies.
    let svc6 = nft_set(&lab, "svc6");
    assert!(
        svc6.iter().any(|e| e == "2001:db8::100 . tcp . 80"),
        "{svc6:?}"
    );
    let rs6 = nft_set(&lab, "rs6");
    assert!(
        rs6.iter().any(|e| e == "2001:db8:1::12 . tcp . 80"),
        "{rs6:?}"
    );
    // The IPv6 VIP answers ping (lvsd does: the VIP is on no kernel
    // interface), as a kernel director's host would.
    let before = support::counter(&lvsadm_ok(&d.sock, &["--counters"]), "io.echo_replies");
    let out = lab
        .exec(
            lab.client_ns(),
            "ping",
            &["-6", "-c", "1", "-W", "3", "2001:db8::100"],
            Duration::from_secs(10),
        )
        .expect("run ping");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = support::counter(&lvsadm_ok(&d.sock, &["--counters"]), "io.echo_replies");
    assert_eq!(after, before + 1);
    // lvsd keeps its interfaces in all-multicast mode (solicitations for
    // the VIPs go to solicited-node groups the host never joined).
    // (`ip link` shows only the flag an operator set; the device's own
    // flags are in sysfs: IFF_ALLMULTI is 0x200.)
    let out = lab
        .exec(
            lab.director_ns(),
            "cat",
            &["/sys/class/net/d0/flags"],
            Duration::from_secs(5),
        )
        .expect("read the flags");
    let text = String::from_utf8_lossy(&out.stdout);
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    assert_ne!(flags & 0x200, 0, "flags {text}");
    // The client learned the VIP's MAC from lvsd (neighbour discovery).
    let neigh = ip(
        &lab,
        lab.client_ns(),
        &["-6", "neigh", "show", "2001:db8::100"],
    );
    assert!(neigh.contains("lladdr"), "{neigh:?}");
    let log = d.stop(&lab);
    assert!(log.contains("msg=\"stopping (rx"), "{log}");
    lab.close().unwrap();
}

/// The IPv6 VIP on every real server's loopback (direct routing and
/// tunnels: the packets reach them still addressed to it).
fn vip6_on_loopbacks(lab: &Lab) {
    for i in 1..=lab.server_count() {
        let ns = lab.server_ns(i).to_string();
        ip(
            lab,
            &ns,
            &["-6", "addr", "add", "2001:db8::100/128", "dev", "lo"],
        );
    }
}

#[test]
fn ipv6_direct_routing() {
    let (_g, lab) = nat_lab("lvsdr", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    add_ipv6(&lab);
    // Direct routing: each server has the VIP on its loopback (IPv6 answers
    // neighbour solicitations only for the receiving link's addresses) and
    // answers the client straight, through the director's kernel routing.
    vip6_on_loopbacks(&lab);
    lab.set_sysctl(lab.director_ns(), "net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    let d = Director::start(
        &lab,
        "dr6",
        "director web6 [2001:db8::100]:80 TCP\n    balance roundrobin\n    server rs1 2001:db8:1::11\n    server rs2 2001:db8:1::12\n",
    );
    let got = requests(&lab, "http://[2001:db8::100]/", 10, &["-6"]);
    assert_eq!(got.get("rs1\n"), Some(&5), "{got:?}");
    assert_eq!(got.get("rs2\n"), Some(&5), "{got:?}");
    let list = lvsadm_ok(&d.sock, &["-L", "-n"]);
    assert!(
        list.contains("  -> [2001:db8:1::12]:80          Route   1"),
        "{list}"
    );
    d.stop(&lab);
    lab.close().unwrap();
}

/// A path MTU below the client's link: lvsd answers the client's oversized
/// packets with ICMPv6 packet too big (IPv6 routers never fragment), the
/// client's kernel learns the path MTU and its TCP shrinks its segments —
/// the upload completes only if both happened.
#[test]
fn packet_too_big_reaches_the_client_and_its_tcp_shrinks() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let (_g, lab) = nat_lab("lvptb", 1);
    add_ipv6(&lab);
    // The director's side towards the servers: 1280 bytes (IPv6's minimum).
    ip(
        &lab,
        lab.director_ns(),
        &["link", "set", "br1", "mtu", "1280"],
    );
    let d = Director::start(
        &lab,
        "ptb",
        "director up6 [2001:db8::100]:9000 TCP\n    mode nat\n    server rs1 [2001:db8:1::11]:9000\n",
    );
    const LEN: usize = 200_000;
    let sink = || {
        lab.run_in(lab.server_ns(1), || {
            let l = TcpListener::bind("[2001:db8:1::11]:9000")?;
            // Bounded: a client that never comes ends the wait.
            l.set_nonblocking(true)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if std::time::Instant::now() > deadline {
                            return Err(e);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut got = 0usize;
            let mut buf = [0u8; 65536];
            loop {
                match s.read(&mut buf)? {
                    0 => break,
                    n => got += n,
                }
            }
            s.write_all(format!("{got}\n").as_bytes())?;
            Ok::<_, std::io::Error>(got)
        })
    };
    let (answer, got) = std::thread::scope(|sc| {
        let sink = sc.spawn(sink);
        std::thread::sleep(Duration::from_millis(200));
        let answer = lab
            .run_in(lab.client_ns(), || {
                let mut s = TcpStream::connect_timeout(
                    &"[2001:db8::100]:9000".parse().unwrap(),
                    Duration::from_secs(5),
                )?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                s.set_write_timeout(Some(Duration::from_secs(20)))?;
                s.write_all(&vec![0x5a; LEN])?;
                s.shutdown(Shutdown::Write)?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok::<_, std::io::Error>(out)
            })
            .expect("run in the client namespace");
        (answer, sink.join().unwrap())
    });
    let got = got.expect("run in the server namespace");
    assert_eq!(answer.expect("the upload"), format!("{LEN}\n"));
    assert_eq!(got.expect("the sink"), LEN);
    // The client learned the path MTU from lvsd's packet too big.
    let route = ip(
        &lab,
        lab.client_ns(),
        &["-6", "route", "get", "2001:db8::100"],
    );
    assert!(route.contains("mtu 1280"), "{route}");
    let counters = lvsadm_ok(&d.sock, &["--counters"]);
    assert!(
        support::counter(&counters, "drop.frag_needed") > 0,
        "{counters}"
    );
    d.stop(&lab);
    lab.close().unwrap();
}

/// IPv6 flows feed an IPv6 firewall-mark director: every address of a /126
/// and two ports, through NAT66, with the client resolving each address
/// from lvsd's neighbour advertisements; listed as ipvsadm lists an `-f N
/// -6` service; the guard's `flows6` interval set keeps the kernel off.
#[test]
fn ipv6_flows_feed_a_firewall_mark_director() {
    let (_g, lab) = nat_lab("lvsixf", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    add_ipv6(&lab);
    let d = Director::start(
        &lab,
        "flows6",
        "director range6 mark 6
    balance roundrobin
    mode nat
    server rs1 [2001:db8:1::11]:80
    server rs2 [2001:db8:1::12]:80

flow r6 to 2001:db8::200/126 ports 80,8080 TCP director range6
",
    );
    let mut total: HashMap<String, u32> = HashMap::new();
    for host in ["2001:db8::200", "2001:db8::201", "2001:db8::203"] {
        for port in [80, 8080] {
            let got = requests(&lab, &format!("http://[{host}]:{port}/"), 2, &["-6"]);
            for (k, v) in got {
                *total.entry(k).or_default() += v;
            }
        }
    }
    assert_eq!(total.get("rs1\n"), Some(&6), "{total:?}");
    assert_eq!(total.get("rs2\n"), Some(&6), "{total:?}");
    // A port outside the flow is not lvsd's (and nothing else answers).
    assert!(curl_args(
        &lab,
        "http://[2001:db8::200]:81/",
        &["-6", "--max-time", "2"]
    )
    .is_err());
    let list = lvsadm_ok(&d.sock, &["-L", "-n"]);
    assert!(list.contains("FWM  6 IPv6 wrr\n"), "{list}");
    assert!(
        list.contains("  -> [2001:db8:1::12]:80          Masq    1      0          6"),
        "{list}"
    );
    let save = lvsadm_ok(&d.sock, &["-S", "-n"]);
    assert!(save.contains("-A -f 6 -6 -s wrr\n"), "{save}");
    let set = nft_set(&lab, "flows6");
    assert!(
        set.iter()
            .any(|e| e == "::/0 . 2001:db8::200/126 . tcp . 8080"),
        "{set:?}"
    );
    // Answered (not announced): the client learned the address it asked.
    let neigh = ip(
        &lab,
        lab.client_ns(),
        &["-6", "neigh", "show", "2001:db8::201"],
    );
    assert!(neigh.contains("lladdr"), "{neigh:?}");
    d.stop(&lab);
    lab.close().unwrap();
}

/// A UDP datagram the client's kernel sends in IPv6 fragments is
/// reassembled by lvsd (as the kernel's defragmenter does before IPVS),
/// translated through NAT66, sent on in fragments no larger than it came
/// in, reassembled by the real server's kernel and answered.
#[test]
fn fragmented_ipv6_udp_through_nat66_is_reassembled_and_answered() {
    let (_g, lab) = nat_lab("lvsixfr", 1);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    add_ipv6(&lab);
    let d = Director::start(
        &lab,
        "frag6",
        "director dns6 [2001:db8::100]:53 UDP\n  mode nat\n  server rs1 [2001:db8:1::11]:53\n",
    );
    let answer = udp_ask(&lab, &[0x42u8; 4000]);
    assert_eq!(answer.0, b"rs1\n");
    assert_eq!(answer.1, "[2001:db8::100]:53".parse().unwrap());
    assert_eq!(servers[0].udp_requests(), 1);
    let counters = lvsadm_ok(&d.sock, &["--counters"]);
    let value = |name: &str| support::counter(&counters, name);
    // 4000 bytes over a 1500-byte link: 3 fragments, 2 held, 1 completes,
    // 3 made again.
    assert_eq!(value("engine.fragments_held"), 2, "{counters}");
    assert_eq!(value("engine.reassembled"), 1, "{counters}");
    assert_eq!(value("io.tx_fragments"), 3, "{counters}");
    d.stop(&lab);
    lab.close().unwrap();
}

/// Tunnels with an IPv6 outer header to real tunnel endpoints (`lvs-decap`
/// on each real server, reading the link with a packet socket; this
/// kernel has no ip6_tunnel module): an IPv6 VIP with IPv6-in-IPv6 to rs1
/// and GUE over IPv6 with its checksum to rs2, and an IPv4 VIP whose
/// servers are IPv6 addresses — IPv4 in IPv6 with GRE (mixed families,
/// forwarding.md §7). Every tunnel packet passes the endpoint's header
/// checks (§7.2–§7.4), the inner packets reach the servers' kernels, and
/// the servers answer the client straight (through the director's kernel
/// routing, as for direct routing).
#[test]
fn ipv6_tunnels_and_mixed_families() {
    let (_g, lab) = nat_lab("lvtun6", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    add_ipv6(&lab);
    vip6_on_loopbacks(&lab);
    for i in 1..=2 {
        ip(
            &lab,
            lab.server_ns(i),
            &["addr", "add", "198.18.0.100/32", "dev", "lo"],
        );
    }
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        lab.set_sysctl(lab.director_ns(), key, "1").unwrap();
    }
    let director6: std::net::IpAddr = "2001:db8:1::1".parse().unwrap();
    let decaps: Vec<Decap> = (1..=2)
        .map(|i| {
            let rip = format!("2001:db8:1::1{i}").parse().unwrap();
            Decap::start(&lab, i, "lvtun6", rip, director6, Some("b0"))
        })
        .collect();
    let d = Director::start(
        &lab,
        "tun6",
        "director web6 [2001:db8::100]:80 TCP\n    balance roundrobin\n    server rs1 2001:db8:1::11 mode tunnel\n    server rs2 2001:db8:1::12 mode tunnel gue port 6080 csum\n\
         director web4 198.18.0.100:80 TCP\n    balance roundrobin\n    mode tunnel gre csum\n    server rs1 2001:db8:1::11\n    server rs2 2001:db8:1::12\n",
    );
    let fail = |e: String| -> ! {
        let seen: Vec<_> = decaps.iter().map(Decap::counters).collect();
        panic!("{e}\nlvs-decap counters: {seen:?}")
    };
    let both = |url: &str, extra: &[&str]| {
        let mut got: HashMap<String, u32> = HashMap::new();
        for _ in 0..6 {
            let body = curl_args(&lab, url, extra).unwrap_or_else(|e| fail(e));
            *got.entry(body).or_default() += 1;
        }
        got
    };
    let got6 = both("http://[2001:db8::100]/", &["-6"]);
    let got4 = both("http://198.18.0.100/", &[]);
    for got in [&got6, &got4] {
        assert_eq!(
            (got.get("rs1\n"), got.get("rs2\n")),
            (Some(&3), Some(&3)),
            "{got:?}"
        );
    }
    let list = lvsadm_ok(&d.sock, &["-L", "-n", "--tun-info"]);
    assert!(
        list.contains("  -> [2001:db8:1::12]:80          Tunnel  gue:6080:+c"),
        "{list}"
    );
    assert!(
        list.contains("  -> [2001:db8:1::11]:80          Tunnel  gre:+c"),
        "{list}"
    );
    d.stop(&lab);
    let c: Vec<HashMap<String, u64>> = decaps.into_iter().map(|x| x.stop(&lab)).collect();
    // Per connection at least SYN, request, FIN (and ACKs).
    let (rs1, rs2) = (&c[0], &c[1]);
    assert!(
        rs1["ipip"] >= 9 && rs1["gre"] >= 9 && rs1["gue"] == 0,
        "{rs1:?}"
    );
    assert!(
        rs2["gue"] >= 9 && rs2["gre"] >= 9 && rs2["ipip"] == 0,
        "{rs2:?}"
    );
    assert_eq!(rs2["gue_csum"], rs2["gue"], "{rs2:?}");
    for x in &c {
        let all = x["ipip"] + x["gue"] + x["gre"];
        assert_eq!(
            (x["outer_v6"], x["written"], x["gre_csum"]),
            (all, all, x["gre"]),
            "{x:?}"
        );
        // IPv6 inside for the IPv6 VIP, IPv4 inside GRE for the IPv4 one.
        assert_eq!(x["inner_v6"], x["ipip"] + x["gue"], "{x:?}");
    }
    lab.close().unwrap();
}
