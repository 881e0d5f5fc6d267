//! End-to-end: real kernels' TCP/UDP stacks in network namespaces (a client,
//! the director running the real `lvsd` binary, three real servers), real
//! `curl`, and the real `lvsadm` binary reading the tables back.
//!
//! Needs root (namespaces, AF_PACKET) and `curl`. The binaries must be built
//! (`cargo build --workspace --bins`, which `scripts/test.sh` does).

mod support;

use lvs_lab::{server_ip, Lab, VIP};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{
    bulk_both_ways, counter, curl, curl_args, inet_sum, lvsadm, lvsadm_ok, lvsd, nat_lab, reported,
    tcp_pseudo, Director,
};

/// One NAT director on the VIP's port 80 with the lab's first real server.
const ONE_NAT: &str = "director web 198.18.0.100:80 TCP\n  mode nat\n  server rs1 198.18.1.11:80\n";

/// Polls `lvsadm ARGS` until its output equals `want` (connections finish
/// closing a moment after the client is done) or 5 s have passed.
fn assert_listing(sock: &Path, args: &[&str], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, out, err) = lvsadm(sock, args);
        assert_eq!(code, 0, "lvsadm {args:?} failed: {err}");
        if out == want {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(out, want, "lvsadm {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CONFIG: &str = "\
# e2e: round-robin NAT, TCP and UDP
director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:80
    server rs2 198.18.1.12:80
    server rs3 198.18.1.13:80

director dns 198.18.0.100:53 UDP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:53
    server rs2 198.18.1.12:53
    server rs3 198.18.1.13:53
";

#[test]
fn round_robin_nat_tcp_and_udp_through_lvsd() {
    let (_g, lab) = nat_lab("lvte", 3);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    // Let the client learn neighbours from gratuitous ARP, to see lvsd's.
    for key in [
        "net.ipv4.conf.all.arp_accept",
        "net.ipv4.conf.c0.arp_accept",
    ] {
        lab.set_sysctl(lab.client_ns(), key, "1").unwrap();
    }
    let director = Director::start(&lab, "rr", CONFIG);
    // lvsd announced the VIP before anyone asked: the client already has it.
    let out = lab
        .exec(
            lab.client_ns(),
            "ip",
            &["neigh", "show", "198.18.0.100"],
            Duration::from_secs(5),
        )
        .unwrap();
    let neigh = String::from_utf8_lossy(&out.stdout);
    assert!(
        neigh.contains("lladdr"),
        "no neighbour entry for the VIP from lvsd's gratuitous ARP: {neigh:?}"
    );

    // 300 sequential HTTP requests, a new curl (and connection) each.
    let mut bodies: HashMap<String, u32> = HashMap::new();
    let mut failures = Vec::new();
    // Each request from its own source port: the servers close first, so
    // the client could otherwise reuse a port whose old entry is still in
    // TIME_WAIT, and conn_reuse_mode (as in the kernel) would replace that
    // entry — correct, but it would make the listing below vary.
    for i in 0..300u16 {
        let port = (41000 + i).to_string();
        match curl_args(&lab, "http://198.18.0.100/", &["--local-port", &port]) {
            Ok(b) => *bodies.entry(b).or_default() += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests failed, first: {}",
        failures.len(),
        failures[0]
    );
    for i in 1..=3 {
        assert_eq!(
            bodies.get(&format!("rs{i}\n")),
            Some(&100),
            "answers per server: {bodies:?}"
        );
    }
    for s in &servers {
        assert_eq!(s.tcp_requests(), 100, "{} counted", s.name);
    }

    // 30 UDP request/response exchanges from distinct source ports.
    let replies = lab
        .run_in(lab.client_ns(), || {
            (0..30u16)
                .map(|i| {
                    lvs_lab::udp_exchange(
                        42000 + i,
                        SocketAddrV4::new(VIP, 53),
                        b"who?",
                        Duration::from_secs(3),
                    )
                })
                .collect::<Vec<_>>()
        })
        .expect("udp client");
    let mut per: HashMap<Vec<u8>, u32> = HashMap::new();
    for r in replies {
        *per.entry(r.expect("udp reply through the VIP"))
            .or_default() += 1;
    }
    for i in 1..=3 {
        assert_eq!(
            per.get(format!("rs{i}\n").as_bytes()),
            Some(&10),
            "udp answers: {per:?}"
        );
    }
    for s in &servers {
        assert_eq!(s.udp_requests(), 10, "{} counted", s.name);
    }

    // The table, in ipvsadm's exact layout (trailing spaces included).
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 wrr
  -> 198.18.1.11:80               Masq    1      0          100       
  -> 198.18.1.12:80               Masq    1      0          100       
  -> 198.18.1.13:80               Masq    1      0          100       
UDP  198.18.0.100:53 wrr
  -> 198.18.1.11:53               Masq    1      0          10        
  -> 198.18.1.12:53               Masq    1      0          10        
  -> 198.18.1.13:53               Masq    1      0          10        
";
    assert_listing(&director.sock, &["-L", "-n"], want);
    assert_listing(&director.sock, &["-l", "-n"], want);
    assert_listing(&director.sock, &["-Ln"], want);

    // The connection table: 300 closed TCP entries and 30 UDP entries. The
    // last closes may still be on the wire: wait (bounded) for TIME_WAIT.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (code, out, err) = loop {
        let r = lvsadm(&director.sock, &["-L", "-n", "-c"]);
        let settled =
            r.1.lines()
                .filter(|l| l.starts_with("TCP "))
                .all(|l| l.contains("TIME_WAIT"));
        if settled || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("IPVS connection entries"));
    assert_eq!(
        lines.next(),
        Some("pro expire state       source             virtual            destination")
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 330, "{out}");
    let tcp: Vec<&&str> = rest.iter().filter(|l| l.starts_with("TCP ")).collect();
    let udp: Vec<&&str> = rest.iter().filter(|l| l.starts_with("UDP ")).collect();
    assert_eq!((tcp.len(), udp.len()), (300, 30));
    for l in &tcp {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Client and server both closed: FIN_WAIT or CLOSE_WAIT, then TIME_WAIT.
        assert_eq!(f[2], "TIME_WAIT", "{l}");
        assert!(
            f[3].starts_with("198.18.0.2:") && f[4] == "198.18.0.100:80",
            "{l}"
        );
        assert!(
            (1..=3).any(|i| f[5] == format!("{}:80", server_ip(i))),
            "{l}"
        );
    }
    for l in &udp {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[2], "UDP", "{l}");
        // UDP entries live 300 s; the listing shows mm:ss of what is left.
        assert!(f[1].starts_with("04:") || f[1] == "05:00", "{l}");
    }
    director.stop(&lab);
    drop(servers);
    lab.close().expect("lab cleanup");
}

#[test]
fn empty_config_then_lvsadm_alone() {
    let (_g, lab) = nat_lab("lvtadm", 3);
    let servers = lab
        .start_identity_servers(8080, 5300)
        .expect("real servers");
    let director = Director::start(&lab, "adm", "# nothing yet\n");
    let sock = &director.sock;
    assert_listing(
        sock,
        &["-L", "-n"],
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    let ok = |args: &[&str]| lvsadm_ok(sock, args);
    ok(&["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    ok(&[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.1.11:8080",
        "-m",
    ]);
    ok(&[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.1.12:8080",
        "-m",
        "-w",
        "3",
    ]);
    // ipvsadm's own error texts and exit codes.
    let (code, _, err) = lvsadm(sock, &["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    assert_eq!(
        (code, err.lines().next()),
        (255, Some("Service already exists"))
    );
    let (code, _, err) = lvsadm(
        sock,
        &["-a", "-t", "198.18.0.100:81", "-r", "198.18.1.11", "-m"],
    );
    assert_eq!(
        (code, err.lines().next()),
        (255, Some("Service not defined"))
    );

    // rr ignores weights: alternates between the two (list order: .12 first).
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(curl(&lab, "http://198.18.0.100/").expect("request through the VIP"));
    }
    assert_eq!(
        order,
        ["rs2\n", "rs1\n", "rs2\n", "rs1\n", "rs2\n", "rs1\n"]
    );

    // Quiesce rs2 (weight 0): new connections all go to rs1.
    ok(&[
        "-e",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.1.12:8080",
        "-m",
        "-w",
        "0",
    ]);
    for _ in 0..3 {
        assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap(), "rs1\n");
    }
    assert_eq!(servers[0].tcp_requests(), 6);
    assert_eq!(servers[1].tcp_requests(), 3);

    // Statistics (connections.md §19): the listing shows the estimator's
    // snapshot, refreshed every 2 s. Conns = connections each server got.
    let stats = |args: &[&str]| -> HashMap<String, Vec<u64>> {
        let out = lvsadm_ok(sock, args);
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("IP Virtual Server version 1.2.1 (size=4096)")
        );
        lines
            .skip(2)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // `TCP  VIP:PORT n…` or `-> RIP:PORT n…`.
                let (name, nums) = (f[1], &f[2..]);
                let v = nums
                    .iter()
                    .map(|n| {
                        n.parse()
                            .unwrap_or_else(|_| panic!("number {n:?} in {out}"))
                    })
                    .collect();
                (name.to_string(), v)
            })
            .collect()
    };
    let (_, out, _) = lvsadm(sock, &["-L", "-n", "--stats"]);
    assert!(
        out.starts_with("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let st = stats(&["-L", "-n", "--stats", "--exact"]);
        let conns = |k: &str| st.get(k).map(|v| v[0]);
        if conns("198.18.1.11:8080") == Some(6) && conns("198.18.1.12:8080") == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "stats never caught up: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // One more estimator period so that the closing packets are in too.
    std::thread::sleep(Duration::from_millis(2200));
    let st = stats(&["-L", "-n", "--stats", "--exact"]);
    let svc = &st["198.18.0.100:80"];
    let (rs1, rs2) = (&st["198.18.1.11:8080"], &st["198.18.1.12:8080"]);
    assert_eq!((svc[0], rs1[0], rs2[0]), (9, 6, 3), "{st:?}");
    for v in [svc, rs1, rs2] {
        assert!(v[1..].iter().all(|&n| n > 0), "{st:?}");
        // At least a SYN, an ACK and a request per connection in, bytes
        // at least 40 per packet (IP + TCP headers).
        assert!(v[1] >= 3 * v[0] && v[2] >= 2 * v[0], "{st:?}");
        assert!(v[3] >= 40 * v[1] && v[4] >= 40 * v[2], "{st:?}");
    }
    for i in 0..5 {
        assert_eq!(svc[i], rs1[i] + rs2[i], "{st:?}");
    }
    // --rate lists the same rows (rates decay, their values are not checked).
    let rates = stats(&["-L", "-n", "--rate"]);
    assert_eq!(rates.len(), 3, "{rates:?}");
    // -Z of an unknown service is ipvsadm's error; -Z zeroes everything.
    let (code, _, err) = lvsadm(sock, &["-Z", "-t", "198.18.0.100:81"]);
    assert_eq!((code, err.lines().next()), (255, Some("No such service")));
    ok(&["-Z", "-t", "198.18.0.100:80"]);
    ok(&["-Z"]);
    let st = stats(&["-L", "-n", "--stats"]);
    assert_eq!(st.len(), 3, "{st:?}");
    for (k, v) in &st {
        assert_eq!(v, &vec![0; 5], "{k}: {st:?}");
    }
    let st = stats(&["-L", "-n", "--rate"]);
    for (k, v) in &st {
        assert_eq!(v, &vec![0; 5], "{k}: {st:?}");
    }

    // --set and --timeout.
    // Sysctls: listed, set, range-checked.
    ok(&["--sysctl", "conn_reuse_mode=0"]);
    let (_, out, _) = lvsadm(sock, &["--sysctl", "net.ipv4.vs.conn_reuse_mode"]);
    assert_eq!(out, "net.ipv4.vs.conn_reuse_mode = 0\n");
    let (code, _, err) = lvsadm(sock, &["--sysctl", "lblc_expiration=9999999"]);
    assert_eq!(code, 2);
    assert!(err.contains("-8589934..8589934"), "{err}");
    let (_, out, _) = lvsadm(sock, &["--sysctl"]);
    assert_eq!(out.lines().count(), 32, "{out}");
    assert!(
        out.contains("net.ipv4.vs.secure_tcp = 0\n")
            && out.contains("net.ipv4.vs.sync_version = 1\n")
            && out.contains(
                "net.ipv4.vs.conntrack = 0   # no effect: lvsd's connections never pass through netfilter conntrack\n"
            ),
        "{out}"
    );
    ok(&["--set", "100", "20", "30"]);
    let (_, out, _) = lvsadm(sock, &["-L", "--timeout"]);
    assert_eq!(out, "Timeout (tcp tcpfin udp): 100 20 30\n");

    // Deleting the service empties the table; with no service the VIP no
    // longer answers (curl fails).
    ok(&["-D", "-t", "198.18.0.100:80"]);
    assert!(curl(&lab, "http://198.18.0.100/").is_err());
    director.stop(&lab);
    drop(servers);
    lab.close().expect("lab cleanup");
}

#[test]
fn config_errors_name_file_line_and_column() {
    let dir = std::env::temp_dir();
    let conf = dir.join(format!("lvsd-bad-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        "director web 198.18.0.100:80 TCP\n    mode nat\n    balanse roundrobin\n",
    )
    .unwrap();
    let out = Command::new(lvsd())
        .arg("--config")
        .arg(&conf)
        .arg("--control")
        .arg(dir.join("unused.sock"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&conf);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!(
            "{}:3:5: error: unknown statement `balanse`",
            conf.display()
        )),
        "{err}"
    );
}

/// Bulk TCP both ways: the senders' TSO hands lvsd 64 KB GSO super-packets
/// with offloaded (partial) checksums; they must arrive intact.
#[test]
fn bulk_tcp_both_directions_survives_gso_and_offload() {
    bulk_transfer("lvtbulk", false);
}

/// The same with checksum offload switched off on the director's own
/// interfaces (client and servers keep theirs, so lvsd still receives
/// partial checksums and GSO packets). The kernel then completes the
/// checksums lvsd forwards in software and the receivers verify them: a
/// wrong partial-sum update would be dropped here, whereas with offload on
/// veth peers trust it unchecked.
#[test]
fn bulk_tcp_with_software_checksums_on_the_director() {
    bulk_transfer("lvtsum", true);
}

fn bulk_transfer(prefix: &str, director_tx_csum_off: bool) {
    let (_g, lab) = nat_lab(prefix, 1);
    if director_tx_csum_off {
        for dev in ["d0", "br1"] {
            let out = lab
                .exec(
                    lab.director_ns(),
                    "ethtool",
                    &["-K", dev, "tx", "off"],
                    Duration::from_secs(10),
                )
                .expect("ethtool (package ethtool) must be installed");
            assert!(
                out.status.success(),
                "ethtool -K {dev} tx off: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    const LEN: usize = 32 << 20;
    let config = "director bulk 198.18.0.100:9000 TCP\n  balance roundrobin\n  mode nat\n  server rs1 198.18.1.11:9000\n";
    let director = Director::start_keeping_offloads(&lab, "bulk", config);
    let (up, down, _) = bulk_both_ways(&lab, LEN, Duration::from_secs(20));
    assert_eq!(up, Ok(LEN), "client → server through the VIP");
    assert_eq!(down, Ok(LEN), "server → client through the VIP");
    let log = director.stop(&lab);
    // The path under test really carried offloaded and GSO packets.
    assert!(reported(&log, " with partial checksum") > 0, "{log}");
    assert!(reported(&log, " GSO;") > 0, "{log}");
    lab.close().expect("lab cleanup");
}

/// The VIP on a kernel interface (as keepalived configures it) and kernel
/// forwarding on: lvsd's nftables guard keeps the kernel from answering or
/// forwarding the balanced packets, while the director's own connections to
/// the real servers still work. Everything lvsd installed is gone after it.
#[test]
fn vip_on_a_kernel_interface_with_forwarding_on() {
    let (_g, lab) = nat_lab("lvtvip", 2);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    let dns = lab.director_ns().to_string();
    let ok = |prog: &str, args: &[&str]| {
        let out = lab
            .exec(&dns, prog, args, Duration::from_secs(10))
            .expect(prog);
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok("ip", &["addr", "add", "198.18.0.100/32", "dev", "d0"]);
    lab.set_sysctl(&dns, "net.ipv4.ip_forward", "1").unwrap();
    let config = "director web 198.18.0.100:80 TCP\n  balance roundrobin\n  mode nat\n  server rs1 198.18.1.11:80\n  server rs2 198.18.1.12:80\n";
    let director = Director::start(&lab, "vip", config);
    assert!(ok("nft", &["list", "table", "netdev", "lvsd"]).contains("198.18.0.100"));
    let mut per: HashMap<String, u32> = HashMap::new();
    for _ in 0..20 {
        *per.entry(curl(&lab, "http://198.18.0.100/").expect("request through the VIP"))
            .or_default() += 1;
    }
    assert_eq!(
        (per.get("rs1\n"), per.get("rs2\n")),
        (Some(&10), Some(&10)),
        "{per:?}"
    );
    // The director's own connection to a real server is not caught by the guard.
    assert_eq!(
        ok("curl", &["-s", "-m", "5", "http://198.18.1.11/"]),
        "rs1\n"
    );
    let log = director.stop(&lab);
    assert!(log.contains("nftables table `netdev lvsd`"), "{log}");
    let out = lab
        .exec(&dns, "nft", &["list", "tables"], Duration::from_secs(10))
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("lvsd"),
        "the nftables table was left behind"
    );
    assert_eq!(lab.sysctl(&dns, "net.ipv4.ip_forward").unwrap().trim(), "1");
    drop(servers);
    lab.close().expect("lab cleanup");
}

/// The persistence templates of `lvsadm -L -n -c` as (client, real server).
fn templates(sock: &Path) -> Vec<(String, String, String)> {
    let (_, out, _) = lvsadm(sock, &["-L", "-n", "-c"]);
    out.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[3].ends_with(":0"))
                .then(|| (f[2].to_string(), f[3].to_string(), f[5].to_string()))
        })
        .collect()
}

#[test]
fn persistence_and_timeouts_set_through_lvsadm() {
    let (_g, lab) = nat_lab("lvtpers", 3);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    // A second client host in the same /24.
    let out = lab
        .exec(
            lab.client_ns(),
            "ip",
            &["addr", "add", "198.18.0.3/24", "dev", lvs_lab::CLIENT_IF],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let director = Director::start(&lab, "pers", "# empty\n");
    let sock = &director.sock;
    let ok = |args: &[&str]| lvsadm_ok(sock, args);
    ok(&["-A", "-t", "198.18.0.100:80", "-s", "rr", "-p", "30"]);
    for i in 1..=3 {
        ok(&[
            "-a",
            "-t",
            "198.18.0.100:80",
            "-r",
            &format!("198.18.1.1{i}:80"),
            "-m",
        ]);
    }
    // Six connections from each client host, each from its own port: a
    // /32 template per host keeps each host on one server, and rr gives the
    // second host the next server.
    let mut port = 43000u16;
    let mut from = |host: &str| -> Vec<String> {
        (0..6)
            .map(|_| {
                port += 1;
                let p = port.to_string();
                curl_args(
                    &lab,
                    "http://198.18.0.100/",
                    &["--interface", host, "--local-port", &p],
                )
                .expect("request through the VIP")
            })
            .collect()
    };
    let a = from("198.18.0.2");
    let b = from("198.18.0.3");
    assert!(a.iter().all(|x| *x == a[0]), "198.18.0.2 moved: {a:?}");
    assert!(b.iter().all(|x| *x == b[0]), "198.18.0.3 moved: {b:?}");
    assert_ne!(a[0], b[0]);
    let (_, out, _) = lvsadm(sock, &["-L", "-n"]);
    assert!(
        out.contains("TCP  198.18.0.100:80 rr persistent 30\n"),
        "{out}"
    );
    let mut t = templates(sock);
    t.sort();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[0].0, "ASSURED");
    assert_eq!(t[0].1, "198.18.0.2:0");
    assert_eq!(t[1].1, "198.18.0.3:0");
    let server_of = |body: &str| format!("198.18.1.1{}:80", &body[2..3]);
    assert_eq!(t[0].2, server_of(&a[0]));
    assert_eq!(t[1].2, server_of(&b[0]));
    let (_, out, _) = lvsadm(sock, &["-L", "-n", "--persistent-conn"]);
    let persist: u32 = out
        .lines()
        .filter(|l| l.starts_with("  -> 198.18.1."))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(persist, 2, "{out}");

    // A /24 mask: both hosts now share one template (old ones just expire).
    ok(&[
        "-E",
        "-t",
        "198.18.0.100:80",
        "-s",
        "rr",
        "-p",
        "30",
        "-M",
        "255.255.255.0",
    ]);
    let (_, out, _) = lvsadm(sock, &["-L", "-n"]);
    assert!(
        out.contains("TCP  198.18.0.100:80 rr persistent 30 mask 255.255.255.0\n"),
        "{out}"
    );
    let c = from("198.18.0.2");
    let d = from("198.18.0.3");
    assert!(c.iter().chain(&d).all(|x| *x == c[0]), "{c:?} {d:?}");
    assert!(templates(sock).iter().any(|t| t.1 == "198.18.0.0:0"));
    let total: u64 = servers.iter().map(|s| s.tcp_requests()).sum();
    assert_eq!(total, 24);

    // Timeouts set at run time: a UDP entry lives `--set`'s UDP seconds.
    ok(&["--set", "0", "0", "3"]);
    let (_, out, _) = lvsadm(sock, &["-L", "--timeout"]);
    assert_eq!(out, "Timeout (tcp tcpfin udp): 900 120 3\n");
    ok(&["-A", "-u", "198.18.0.100:53", "-s", "rr"]);
    ok(&["-a", "-u", "198.18.0.100:53", "-r", "198.18.1.11:53", "-m"]);
    let reply = lab
        .run_in(lab.client_ns(), || {
            lvs_lab::udp_exchange(
                44000,
                SocketAddrV4::new(VIP, 53),
                b"who?",
                Duration::from_secs(3),
            )
        })
        .expect("udp client");
    assert_eq!(reply.expect("udp reply"), b"rs1\n");
    let udp_line = |sock: &Path| {
        let (_, out, _) = lvsadm(sock, &["-L", "-n", "-c"]);
        out.lines()
            .find(|l| l.starts_with("UDP") && l.contains("198.18.0.2:44000"))
            .map(str::to_string)
    };
    let line = udp_line(sock).expect("UDP entry listed");
    assert!(
        line.starts_with("UDP 00:02  UDP") || line.starts_with("UDP 00:03  UDP"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        udp_line(sock),
        None,
        "the UDP entry outlived its 3 s timeout"
    );
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// A real server's datagram that belongs to no connection: forwarded
/// untouched (as the kernel's IP forwarding does after IPVS passes it,
/// although lvsd's guard keeps the host from forwarding it), and with
/// `nat_icmp_send` answered with ICMP port unreachable instead.
#[test]
fn unmatched_real_server_packets_and_nat_icmp_send() {
    use std::net::UdpSocket;
    let (_g, lab) = nat_lab("lvtstray", 1);
    let director = Director::start(&lab, "stray", "# empty\n");
    let sock = &director.sock;
    let ok = |args: &[&str]| lvsadm_ok(sock, args);
    ok(&["-A", "-u", "198.18.0.100:5400", "-s", "rr"]);
    ok(&[
        "-a",
        "-u",
        "198.18.0.100:5400",
        "-r",
        "198.18.1.11:5400",
        "-m",
    ]);
    // The client listens; the real server sends it a datagram from its
    // service port and then waits for an answer (an ICMP error shows as
    // ECONNREFUSED on its connected socket).
    let listener = lab
        .run_in(lab.client_ns(), || UdpSocket::bind("198.18.0.2:44444"))
        .unwrap()
        .expect("client socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let send_from_server = |tag: &'static [u8]| {
        lab.run_in(lab.server_ns(1), move || {
            let s = UdpSocket::bind("198.18.1.11:5400")?;
            s.connect("198.18.0.2:44444")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send(tag)?;
            let mut b = [0u8; 64];
            s.recv(&mut b).map(|_| ())
        })
        .unwrap()
    };
    let mut buf = [0u8; 64];

    // nat_icmp_send 0: the client gets it, from the real server's address.
    let answer = send_from_server(b"late");
    let (n, from) = listener.recv_from(&mut buf).expect("forwarded untouched");
    assert_eq!(
        (&buf[..n], from.to_string().as_str()),
        (&b"late"[..], "198.18.1.11:5400")
    );
    assert!(
        matches!(&answer, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no answer expected: {answer:?}"
    );

    // nat_icmp_send 1: dropped, and the real server is told port unreachable.
    ok(&["--sysctl", "nat_icmp_send=1"]);
    let answer = send_from_server(b"again");
    assert!(
        matches!(&answer, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "expected ICMP port unreachable at the real server: {answer:?}"
    );
    assert!(
        listener.recv_from(&mut buf).is_err(),
        "the datagram reached the client"
    );
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// Sends one raw Ethernet frame out of `ifname` in the current namespace.
fn send_raw_frame(ifname: &str, frame: &[u8]) -> std::io::Result<()> {
    send_raw_frames(ifname, &[frame.to_vec()])
}

/// A TCP SYN 198.18.0.2:`sport` -> VIP:80 in an Ethernet frame to `dst`,
/// with an 802.1Q tag of `vid` if given.
fn syn_frame(dst: [u8; 6], src: [u8; 6], sport: u16, vid: Option<u16>) -> Vec<u8> {
    let mut ip = vec![0u8; 40];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
    ip[16..20].copy_from_slice(&VIP.octets());
    let c = !inet_sum(0, &ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&80u16.to_be_bytes());
    ip[24..28].copy_from_slice(&1u32.to_be_bytes());
    ip[32] = 5 << 4;
    ip[33] = 0x02;
    ip[34..36].copy_from_slice(&64240u16.to_be_bytes());
    let c = !inet_sum(
        tcp_pseudo(Ipv4Addr::new(198, 18, 0, 2), VIP, 20),
        &ip[20..40],
    );
    ip[36..38].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f
}

fn mac_of(lab: &Lab, ns: &str, dev: &str) -> [u8; 6] {
    let out = lab
        .exec(
            ns,
            "cat",
            &[&format!("/sys/class/net/{dev}/address")],
            Duration::from_secs(5),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = [0u8; 6];
    for (k, part) in text.trim().split(':').enumerate().take(6) {
        m[k] = u8::from_str_radix(part, 16).unwrap();
    }
    m
}

/// A frame with an 802.1Q tag belongs to that VLAN's sub-interface: on the
/// parent interface lvsd must not take it for an untagged one (the kernel
/// strips the tag before the packet taps). Checked to fail without the
/// auxiliary-data check: the tagged SYN then made a connection too.
#[test]
fn vlan_tagged_frames_are_not_handled_on_the_parent_interface() {
    let (_g, lab) = nat_lab("lvtvlan", 1);
    let director = Director::start(&lab, "vlan", ONE_NAT);
    let d0 = mac_of(&lab, lab.director_ns(), "d0");
    let c0 = mac_of(&lab, lab.client_ns(), "c0");
    let tagged = syn_frame(d0, c0, 47001, Some(100));
    let plain = syn_frame(d0, c0, 47002, None);
    lab.run_in(lab.client_ns(), move || {
        send_raw_frame("c0", &tagged)?;
        std::thread::sleep(Duration::from_millis(100));
        send_raw_frame("c0", &plain)
    })
    .unwrap()
    .expect("send raw frames");
    let deadline = Instant::now() + Duration::from_secs(5);
    let listing = loop {
        let (_, out, _) = lvsadm(&director.sock, &["-L", "-n", "-c"]);
        if out.contains(":47002") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(listing.contains("198.18.0.2:47002"), "{listing}");
    assert!(
        !listing.contains(":47001"),
        "the tagged SYN was balanced: {listing}"
    );
    // The same counters live, through lvsadm.
    let (code, counters, e) = lvsadm(&director.sock, &["--counters"]);
    assert_eq!(code, 0, "{e}");
    let value = |name: &str| counter(&counters, name);
    assert_eq!(value("io.rx_vlan_other_interface"), 1, "{counters}");
    // The SYN, and the real server's answer (a reset: nothing listens).
    assert!(value("engine.sent_masq") >= 1, "{counters}");
    assert_eq!(value("drop.malformed"), 0, "{counters}");
    let log = director.stop(&lab);
    assert_eq!(reported(&log, "VLAN-tagged frames"), 1, "{log}");
    lab.close().expect("clean up the lab");
}

/// A UDP datagram larger than the MTU arrives in fragments: lvsd keeps
/// them until the datagram is whole, translates it and sends it on in
/// fragments again (as the kernel reassembles before IPVS); the real
/// server's kernel reassembles it and answers.
#[test]
fn fragmented_udp_through_nat_is_reassembled_and_answered() {
    let (_g, lab) = nat_lab("lvtfrag", 1);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(
        &lab,
        "frag",
        "director dns 198.18.0.100:53 UDP\n  mode nat\n  server rs1 198.18.1.11:53\n",
    );
    let payload = vec![0x42u8; 4000];
    let reply = lab
        .run_in(lab.client_ns(), move || {
            lvs_lab::udp_exchange(
                45000,
                SocketAddrV4::new(VIP, 53),
                &payload,
                Duration::from_secs(3),
            )
        })
        .expect("udp client")
        .expect("an answer to the fragmented datagram");
    assert_eq!(reply, b"rs1\n", "{:?}", String::from_utf8_lossy(&reply));
    assert_eq!(servers[0].udp_requests(), 1);
    let counters = lvsadm_ok(&director.sock, &["--counters"]);
    let value = |name: &str| counter(&counters, name);
    // 4000 bytes over a 1500-byte link: 3 fragments, 2 held, 1 completes.
    assert_eq!(value("engine.fragments_held"), 2, "{counters}");
    assert_eq!(value("engine.reassembled"), 1, "{counters}");
    assert_eq!(value("io.tx_fragments"), 3, "{counters}");
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// One director per namespace, and every signal an operator may send has a
/// defined effect: SIGHUP, SIGUSR1, SIGUSR2 leave lvsd running (and say
/// so), SIGQUIT stops it as cleanly as SIGTERM.
#[test]
fn a_second_director_is_refused_and_signals_do_what_they_say() {
    let (_g, lab) = nat_lab("lvtsig", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "sig", ONE_NAT);
    // A second lvsd in the same namespace (another control socket).
    let other = std::env::temp_dir().join(format!("lvsd-e2e-sig2-{}.sock", std::process::id()));
    let out = lab
        .exec(
            lab.director_ns(),
            &support::lvsd().to_string_lossy(),
            &["--control", &other.to_string_lossy()],
            Duration::from_secs(10),
        )
        .expect("run a second lvsd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "another lvsd (pid {}) is already running in this network namespace",
            director.pid
        )),
        "{err}"
    );
    assert!(!other.exists());
    // The first one is untouched: its guard is in place, it forwards.
    let guard = lab
        .exec(
            lab.director_ns(),
            "nft",
            &["list", "table", "netdev", "lvsd"],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(guard.status.success(), "the guard is gone");
    for sig in [
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGPWR,
        libc::SIGRTMIN() + 3,
    ] {
        // SAFETY: kill(2) on the pid of a child this test started.
        assert_eq!(unsafe { libc::kill(director.pid as i32, sig) }, 0);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            lab.try_wait(director.pid).unwrap().is_none(),
            "signal {sig} stopped lvsd"
        );
        assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(director.pid as i32, libc::SIGQUIT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.try_wait(director.pid).unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGQUIT did not stop lvsd");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = director.stop(&lab);
    assert!(
        log.contains("SIGHUP: reloading the configuration")
            && log.contains("configuration reloaded: 0 change(s), 0 warning(s)"),
        "{log}"
    );
    assert!(
        log.contains("SIGUSR1: counters") && log.contains("io.rx_frames"),
        "{log}"
    );
    for sig in [libc::SIGALRM, libc::SIGPWR, libc::SIGRTMIN() + 3] {
        assert!(log.contains(&format!("signal {sig} ignored")), "{log}");
    }
    assert!(
        log.contains("SIGUSR2: real servers") && log.contains("rs1 198.18.1.11:80 UP in use"),
        "{log}"
    );
    let guard = lab
        .exec(
            lab.director_ns(),
            "nft",
            &["list", "table", "netdev", "lvsd"],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(!guard.status.success(), "the guard was left behind");
    lab.close().expect("clean up the lab");
}

/// The neighbour cache learns only what the kernel's ARP code would: an IP
/// frame from a spoofed MAC address does not redirect the replies to a
/// client, nor does an ARP message claiming an address lvsd owns or one
/// that is not on-link on that interface.
#[test]
fn spoofed_frames_do_not_poison_the_neighbour_cache() {
    let (_g, lab) = nat_lab("lvtspoof", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "spoof", ONE_NAT);
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    let d0 = mac_of(&lab, lab.director_ns(), "d0");
    let bogus = [0x02, 0xde, 0xad, 0xbe, 0xef, 0x01];
    // A SYN from the client's address but another MAC address.
    let spoofed = syn_frame(d0, bogus, 47100, None);
    // ARP replies nobody asked for: the VIP, the director's own address,
    // and a real server's address (not on-link on d0), all at `bogus`.
    let arp = |sender: [u8; 4]| {
        let mut f = Vec::new();
        f.extend_from_slice(&d0);
        f.extend_from_slice(&bogus);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        f.extend_from_slice(&bogus);
        f.extend_from_slice(&sender);
        f.extend_from_slice(&d0);
        f.extend_from_slice(&[198, 18, 0, 1]);
        f
    };
    let frames = vec![
        spoofed,
        arp([198, 18, 0, 100]),
        arp([198, 18, 0, 1]),
        arp([198, 18, 1, 11]),
    ];
    lab.run_in(lab.client_ns(), move || {
        for f in &frames {
            send_raw_frame("c0", f)?;
        }
        Ok::<(), std::io::Error>(())
    })
    .unwrap()
    .expect("send the spoofed frames");
    std::thread::sleep(Duration::from_millis(200));
    // Replies still reach the real client.
    for i in 0..5u16 {
        let port = (48000 + i).to_string();
        let b = curl_args(
            &lab,
            "http://198.18.0.100/",
            &["--local-port", &port, "-m", "3"],
        );
        assert_eq!(b.as_deref().map(str::trim), Ok("rs1"), "request {i}");
    }
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A UDP datagram from `src`:`sport` to VIP:54 in an Ethernet frame (no UDP
/// checksum, as IPv4 allows).
fn udp_frame(dst: [u8; 6], src_mac: [u8; 6], src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut ip = vec![0u8; 32];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&32u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&VIP.octets());
    let c = !inet_sum(0, &ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&54u16.to_be_bytes());
    ip[24..26].copy_from_slice(&12u16.to_be_bytes());
    ip[28..32].copy_from_slice(b"ping");
    let mut f = Vec::with_capacity(46);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f
}

/// Issue 15: a flood of 300,000 UDP flows grows the connection table; once
/// they have expired (UDP timeout 4 s here, so that most of them are alive
/// at once also when a fast path's hook slows the flood, and with 104-byte
/// entries) lvsd gives the memory back, and the service works during and
/// after.
#[test]
fn a_drained_flood_gives_memory_back() {
    let (_g, lab) = nat_lab("lvtflood", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(
        &lab,
        "flood",
        "timeout 0 0 4\n\
         director web 198.18.0.100:80 TCP\n  mode nat\n  server rs1 198.18.1.11:80\n\
         director sink 198.18.0.100:54 UDP\n  mode nat\n  server rs1 198.18.1.11:54\n",
    );
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    let before = rss_kib(director.pid);
    const FLOWS: u32 = 300_000;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (pid, p) = (director.pid, peak.clone());
    let sent = udp_flows(&lab, FLOWS, move || {
        p.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
    });
    std::thread::sleep(Duration::from_millis(300));
    let during = rss_kib(director.pid).max(peak.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    // Entries expire 4 s after the flood; memory goes back within a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = rss_kib(director.pid);
    while Instant::now() < deadline && after > before + 8 * 1024 {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_kib(director.pid);
    }
    eprintln!(
        "flood of {sent} flows: RSS {before} KiB before, {during} KiB at the peak, {after} KiB after"
    );
    assert!(
        during > before + 20 * 1024,
        "the flood grew the table ({before} → {during} KiB)"
    );
    assert!(
        after <= before + 8 * 1024,
        "memory given back: {before} KiB before, {during} during, {after} after"
    );
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    let log = director.stop(&lab);
    assert!(reported(&log, "connections created") >= 262_144, "{log}");
    lab.close().expect("clean up the lab");
}

/// Sends each frame on `ifname` through one AF_PACKET socket (closing a
/// packet socket waits for an RCU grace period: one per frame is too slow
/// for a flood).
fn send_raw_frames(ifname: &str, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls on a socket this function owns and closes;
    // the sockaddr_ll is fully initialised and its size passed; every
    // buffer passed to sendto outlives the call.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut result = Ok(());
        for frame in frames {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&frame[..6]);
            let r = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            if r < 0 {
                result = Err(std::io::Error::last_os_error());
                break;
            }
        }
        libc::close(fd);
        result
    }
}

/// Issue 15: packets the host's IPv4 input would drop before IPVS — bad
/// header checksum, martian or local source, source route, options past
/// the header — are dropped on the wire too, each counted by reason, no
/// entry made, and the service keeps working.
#[test]
fn packets_the_host_would_drop_are_dropped_and_counted() {
    let (_g, lab) = nat_lab("lvtmart", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "mart", ONE_NAT);
    let d0 = mac_of(&lab, lab.director_ns(), "d0");
    let c0 = mac_of(&lab, lab.client_ns(), "c0");
    const IP: usize = 14;
    let reseal = |f: &mut Vec<u8>| {
        let ihl = usize::from(f[IP] & 0x0f) * 4;
        f[IP + 10] = 0;
        f[IP + 11] = 0;
        let c = !inet_sum(0, &f[IP..IP + ihl]);
        f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
    };
    let with_src = |src: [u8; 4], sport: u16| {
        let mut f = syn_frame(d0, c0, sport, None);
        f[IP + 12..IP + 16].copy_from_slice(&src);
        reseal(&mut f);
        f
    };
    let mut bad_sum = syn_frame(d0, c0, 47001, None);
    bad_sum[IP + 10] ^= 0x5a;
    // Loose source route (an empty one) in a 24-byte header.
    let mut lsrr = syn_frame(d0, c0, 47002, None);
    lsrr.splice(IP + 20..IP + 20, [0x83, 3, 4, 0]);
    lsrr[IP] = 0x46;
    let total = u16::from_be_bytes([lsrr[IP + 2], lsrr[IP + 3]]) + 4;
    lsrr[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    reseal(&mut lsrr);
    // An option whose length runs past the header.
    let mut overrun = lsrr.clone();
    overrun[IP + 20] = 0x07; // record route
    overrun[IP + 21] = 40;
    reseal(&mut overrun);
    let frames = vec![
        bad_sum,
        with_src([127, 0, 0, 1], 47003),
        with_src([224, 0, 0, 5], 47004),
        with_src([0, 1, 2, 3], 47005),
        with_src([198, 18, 0, 100], 47006),
        with_src([198, 18, 0, 1], 47007),
        lsrr,
        overrun,
    ];
    lab.run_in(lab.client_ns(), move || send_raw_frames("c0", &frames))
        .unwrap()
        .expect("send the frames");
    std::thread::sleep(Duration::from_millis(200));
    let counters = lvsadm_ok(&director.sock, &["--counters"]);
    let value = |name: &str| counter(&counters, name);
    assert_eq!(value("drop.bad_checksum"), 1, "{counters}");
    assert_eq!(value("drop.martian"), 3, "{counters}");
    assert_eq!(value("drop.local_source"), 2, "{counters}");
    assert_eq!(value("drop.source_route"), 1, "{counters}");
    assert_eq!(value("drop.bad_options"), 1, "{counters}");
    assert_eq!(value("engine.connections_created"), 0, "{counters}");
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// Issue 15: an ARP spray — thousands of requests for the VIP from
/// on-link and off-link senders at random MACs — teaches lvsd only the
/// on-link senders (bounded by the subnet, and in any case by the cache's
/// cap), never disturbs the real client, and the service keeps working.
#[test]
fn an_arp_spray_is_bounded_and_harmless() {
    let (_g, lab) = nat_lab("lvtspray", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "spray", ONE_NAT);
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    let mut frames = Vec::new();
    for i in 0..4000u32 {
        let mac = [0x02, 0x5a, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01];
        // 198.18.0.3-254 are on d0's subnet; 198.18.5.0/24 is not.
        let sender = if i % 2 == 0 {
            [198, 18, 0, 3 + (i / 2 % 252) as u8]
        } else {
            [198, 18, 5, (i / 2 % 256) as u8]
        };
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&sender);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&VIP.octets());
        frames.push(f);
    }
    lab.run_in(lab.client_ns(), move || send_raw_frames("c0", &frames))
        .unwrap()
        .expect("send the spray");
    std::thread::sleep(Duration::from_millis(300));
    let counters = lvsadm_ok(&director.sock, &["--counters"]);
    let neighbours = counter(&counters, "io.neighbours");
    // 252 sprayed on-link senders, the client, the real server, at most.
    assert!(neighbours <= 254, "{neighbours} neighbours\n{counters}");
    assert!(
        neighbours >= 200,
        "on-link requesters are learned: {neighbours}"
    );
    for i in 0..5u16 {
        let port = (49000 + i).to_string();
        let b = curl_args(
            &lab,
            "http://198.18.0.100/",
            &["--local-port", &port, "-m", "3"],
        );
        assert_eq!(b.as_deref().map(str::trim), Ok("rs1"), "request {i}");
    }
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// Sends one ICMP echo request to `dst` from a raw socket in the current
/// namespace; returns the first echo reply's (source, ICMP message).
fn ping_once(
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> std::io::Result<(Ipv4Addr, Vec<u8>)> {
    let mut msg = vec![8u8, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(data);
    let c = !inet_sum(0, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    // SAFETY: plain libc calls on a socket this function owns and closes;
    // the sockaddr_in and timeval are fully initialised and sized; the
    // receive buffer outlives the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from(dst).to_be();
        let r = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        let mut buf = [0u8; 2048];
        let result = loop {
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                break Err(std::io::Error::last_os_error());
            }
            let p = &buf[..n as usize];
            let hl = usize::from(p[0] & 0x0f) * 4;
            if p.len() >= hl + 8 && p[hl] == 0 {
                let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
                break Ok((src, p[hl..].to_vec()));
            }
        };
        libc::close(fd);
        result
    }
}

/// A VIP answers ping, as a kernel director's host does (the VIP is a
/// local address there): same identifier, sequence and data, from the VIP.
#[test]
fn a_vip_answers_ping() {
    let (_g, lab) = nat_lab("lvtping", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "ping", ONE_NAT);
    let (src, reply) = lab
        .run_in(lab.client_ns(), || {
            ping_once(VIP, 0x4c56, 7, b"lvsd echo test payload")
        })
        .unwrap()
        .expect("an echo reply");
    assert_eq!(src, VIP);
    assert_eq!(&reply[4..6], &0x4c56u16.to_be_bytes());
    assert_eq!(&reply[6..8], &7u16.to_be_bytes());
    assert_eq!(&reply[8..], b"lvsd echo test payload");
    assert_eq!(inet_sum(0, &reply), 0xffff, "ICMP checksum");
    // An address that is not a VIP gets nothing from lvsd.
    let other = lab
        .run_in(lab.client_ns(), || {
            ping_once(Ipv4Addr::new(198, 18, 0, 99), 1, 1, b"x")
        })
        .unwrap();
    assert!(other.is_err(), "{other:?}");
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// Sends `flows` UDP datagrams from the client to VIP:54, each from its
/// own source address and port (one connection entry each), in raw frames
/// of 1,000 per batch, calling `each_batch` after every batch. Bounded in
/// count and in time (20 s). Returns how many were sent.
fn udp_flows(lab: &Lab, flows: u32, each_batch: impl Fn() + Send + 'static) -> u32 {
    let d0 = mac_of(lab, lab.director_ns(), "d0");
    let c0 = mac_of(lab, lab.client_ns(), "c0");
    lab.run_in(lab.client_ns(), move || -> std::io::Result<u32> {
        let mut frames = Vec::with_capacity(1000);
        let start = Instant::now();
        let mut i = 0;
        while i < flows && start.elapsed() < Duration::from_secs(20) {
            frames.clear();
            for _ in 0..1000 {
                let src = [198, 18, 64 + (i / 60_000) as u8, 1];
                frames.push(udp_frame(d0, c0, src, 1024 + (i % 60_000) as u16));
                i += 1;
            }
            send_raw_frames("c0", &frames)?;
            std::thread::sleep(Duration::from_millis(2));
            each_batch();
        }
        Ok(i)
    })
    .unwrap()
    .expect("send the flows")
}

/// A long connection table is listed in parts, a few thousand entries per
/// step of the packet loop: every entry arrives, and requests through the
/// VIP go on being answered while it streams.
#[test]
fn a_long_connection_listing_streams_while_forwarding_goes_on() {
    let (_g, lab) = nat_lab("lvtlist", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(
        &lab,
        "list",
        "timeout 0 0 120\n\
         director web 198.18.0.100:80 TCP\n  mode nat\n  server rs1 198.18.1.11:80\n\
         director sink 198.18.0.100:54 UDP\n  mode nat\n  server rs1 198.18.1.11:54\n",
    );
    assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
    let sent = udp_flows(&lab, 200_000, || {});
    std::thread::sleep(Duration::from_millis(500));
    let entries = counter(
        &lvsadm_ok(&director.sock, &["--counters"]),
        "engine.connections_created",
    );
    assert!(
        entries >= u64::from(sent) * 9 / 10,
        "{entries} entries of {sent} sent"
    );
    // List while a client keeps requesting (bounded: at most 200 requests).
    let sock = director.sock.clone();
    let lister = std::thread::spawn(move || {
        let t = Instant::now();
        let out = lvsadm_ok(&sock, &["-L", "-n", "-c"]);
        (out.lines().count(), t.elapsed())
    });
    let mut worst = Duration::ZERO;
    let mut requests = 0;
    while !lister.is_finished() && requests < 200 {
        let t = Instant::now();
        assert_eq!(curl(&lab, "http://198.18.0.100/").unwrap().trim(), "rs1");
        worst = worst.max(t.elapsed());
        requests += 1;
    }
    let (lines, took) = lister.join().unwrap();
    eprintln!(
        "listed {lines} lines ({entries} entries made) in {took:?}; {requests} requests meanwhile, slowest {worst:?}"
    );
    // Two title lines and every entry still there (UDP ones live 120 s).
    assert!(
        lines as u64 >= entries,
        "{lines} lines for {entries} entries"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a request took {worst:?} during the listing"
    );
    director.stop(&lab);
}

/// Routes, neighbours and the director's addresses come from rtnetlink,
/// applied when the kernel reports them (no re-read of /proc): a route
/// deleted and added back while lvsd runs, a neighbour the kernel learns,
/// an address added to an attached interface — each shows in lvsd's
/// counters, and requests go through again as soon as the route is back.
#[test]
fn routes_neighbours_and_addresses_follow_rtnetlink() {
    let (_g, lab) = nat_lab("lvnl", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "netlink", ONE_NAT);
    let counters = || lvsadm_ok(&director.sock, &["--counters"]);
    // Waits (bounded) until counter `name` satisfies `ok`.
    let wait = |name: &str, ok: &dyn Fn(u64) -> bool| -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = counter(&counters(), name);
            if ok(v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(curl(&lab, "http://198.18.0.100/").as_deref(), Ok("rs1\n"));
    let routes = counter(&counters(), "io.routes");
    assert!(routes >= 2, "{}", counters());
    let d = lab.director_ns().to_string();
    support::ip(&lab, &d, &["route", "del", "198.18.1.0/24", "dev", "br1"]);
    let fewer = wait("io.routes", &|v| v < routes);
    assert_eq!(fewer, routes - 1, "the deleted route is gone");
    assert!(
        curl_args(&lab, "http://198.18.0.100/", &["--max-time", "2"]).is_err(),
        "no route to the real server: no answer"
    );
    assert!(counter(&counters(), "drop.no_route") > 0, "{}", counters());
    support::ip(&lab, &d, &["route", "add", "198.18.1.0/24", "dev", "br1"]);
    assert_eq!(wait("io.routes", &|v| v == routes), routes);
    assert_eq!(curl(&lab, "http://198.18.0.100/").as_deref(), Ok("rs1\n"));
    // A neighbour the kernel learns (here: set by hand) is lvsd's too.
    let before = counter(&counters(), "io.neighbours");
    support::ip(
        &lab,
        &d,
        &[
            "neigh",
            "replace",
            "198.18.1.99",
            "lladdr",
            "02:00:00:00:01:99",
            "nud",
            "permanent",
            "dev",
            "br1",
        ],
    );
    assert_eq!(wait("io.neighbours", &|v| v > before), before + 1);
    // An address added to an attached interface is an event lvsd reads.
    let events = counter(&counters(), "io.netlink_events");
    support::ip(&lab, &d, &["addr", "add", "198.18.1.2/24", "dev", "br1"]);
    assert!(wait("io.netlink_events", &|v| v > events) > events);
    director.stop(&lab);
    lab.close().unwrap();
}

/// Policy routing, as the kernel's IPVS follows it: lvsd looks routes up
/// through the host's rules (dumped at start, then changed by rtnetlink
/// events). The real servers' subnet moves to a table reached by a rule
/// on the destination; the client's subnet to a table reached only from
/// the VIP, so the NAT replies find the client only when routed from the
/// VIP (`snat_reroute`); a `prohibit` rule for the real server stops the
/// traffic until it is deleted.
#[test]
fn policy_routing_rules_are_followed() {
    let (_g, lab) = nat_lab("lvpr", 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "policy", ONE_NAT);
    let d = lab.director_ns().to_string();
    let counters = || lvsadm_ok(&director.sock, &["--counters"]);
    // Runs `ip ARGS` in the director, then waits (bounded) until lvsd has
    // read an event more.
    let change = |args: &[&str]| {
        let before = counter(&counters(), "io.netlink_events");
        support::ip(&lab, &d, args);
        let deadline = Instant::now() + Duration::from_secs(5);
        while counter(&counters(), "io.netlink_events") == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let get = || curl_args(&lab, "http://198.18.0.100/", &["--max-time", "3"]);
    assert_eq!(get().as_deref(), Ok("rs1\n"));

    change(&[
        "route",
        "add",
        "198.18.1.0/24",
        "dev",
        "br1",
        "table",
        "100",
    ]);
    change(&[
        "rule",
        "add",
        "to",
        "198.18.1.0/24",
        "lookup",
        "100",
        "pref",
        "100",
    ]);
    change(&["route", "del", "198.18.1.0/24", "dev", "br1"]);
    assert_eq!(get().as_deref(), Ok("rs1\n"), "to the servers by table 100");

    change(&["route", "add", "198.18.0.0/24", "dev", "d0", "table", "101"]);
    change(&[
        "rule",
        "add",
        "from",
        "198.18.0.100",
        "lookup",
        "101",
        "pref",
        "101",
    ]);
    change(&["route", "del", "198.18.0.0/24", "dev", "d0"]);
    assert_eq!(get().as_deref(), Ok("rs1\n"), "replies routed from the VIP");

    let dropped = counter(&counters(), "drop.no_route");
    change(&["rule", "add", "to", "198.18.1.11", "prohibit", "pref", "50"]);
    assert!(get().is_err(), "a prohibit rule: no path to the server");
    assert!(
        counter(&counters(), "drop.no_route") > dropped,
        "{}",
        counters()
    );
    change(&["rule", "del", "pref", "50"]);
    assert_eq!(get().as_deref(), Ok("rs1\n"));
    director.stop(&lab);
    lab.close().unwrap();
}

/// The XDP fast path (`--fastpath xdp`): lvsd says which path each
/// interface takes; a UDP flow and a long TCP connection are carried by
/// the XDP program once the engine has seen what can change their state
/// (the UDP flow's replies, the TCP handshake) and a few packets; the TCP
/// connection is given back at its FIN; short connections stay with the
/// engine; a carried flow follows a change of its next hop's MAC. Every
/// answer arrives, the bulk transfer's bytes are intact both ways, and the
/// statistics stay exact with the fast path's packets folded in.
#[test]
fn the_xdp_fast_path_carries_established_nat_flows() {
    fast_path_carries_established_nat_flows("xdp");
}

/// The same with the TC fast path (`--fastpath tc`), the hosts keeping
/// their offloads: their packets leave checksums to be computed and TCP
/// sends GSO super-packets, which TC carries too (XDP leaves them to
/// lvsd). The director's own interfaces compute checksums in software, so
/// the receivers verify every one the fast path updated.
#[test]
fn the_tc_fast_path_carries_offloaded_packets() {
    fast_path_carries_established_nat_flows("tc");
}

fn fast_path_carries_established_nat_flows(hook: &str) {
    let (_g, lab) = nat_lab(&format!("lv{hook}"), 1);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let config = format!(
        "{ONE_NAT}director dns 198.18.0.100:53 UDP\n  mode nat\n  server rs1 198.18.1.11:53\n\
         director bulk 198.18.0.100:9000 TCP\n  mode nat\n  server rs1 198.18.1.11:9000\n"
    );
    // XDP: the client's and the server's stacks compute their checksums
    // (as a NIC delivers them): over veth they would leave them to be
    // computed (CHECKSUM_PARTIAL), and such packets are the engine's.
    // TC: the director computes the checksums it sends, from what the fast
    // path left in the field.
    let off = if hook == "xdp" {
        [(lab.client_ns(), "c0"), (lab.server_ns(1), "b0")]
    } else {
        [(lab.director_ns(), "d0"), (lab.director_ns(), "br1")]
    };
    for (ns, dev) in off {
        let out = lab
            .exec(
                ns,
                "ethtool",
                &["-K", dev, "tx", "off"],
                Duration::from_secs(10),
            )
            .expect("ethtool (package ethtool) must be installed");
        assert!(out.status.success(), "ethtool -K {dev} tx off");
    }
    let director = Director::start_with(&lab, hook, &config, &["--fastpath", hook]);
    let log = director.log_so_far();
    let said = if hook == "xdp" {
        "fast path XDP (generic mode)"
    } else {
        "fast path TC ingress"
    };
    assert!(log.contains(&format!("d0: {said}")), "{log}");
    assert!(log.contains(&format!("br1: {said}")), "{log}");
    let counters = || lvsadm_ok(&director.sock, &["--counters"]);
    // 200 exchanges of one UDP flow (bounded: 2 s per answer at most).
    let exchange = |count: u32| -> Vec<Vec<u8>> {
        lab.run_in(lab.client_ns(), move || -> std::io::Result<Vec<Vec<u8>>> {
            let sock = std::net::UdpSocket::bind("0.0.0.0:45000")?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut got = Vec::new();
            let mut buf = [0u8; 1500];
            for i in 0..count {
                sock.send_to(&i.to_be_bytes(), "198.18.0.100:53")?;
                let (n, from) = sock.recv_from(&mut buf)?;
                assert_eq!(from.to_string(), "198.18.0.100:53");
                got.push(buf[..n].to_vec());
            }
            Ok(got)
        })
        .unwrap()
        .expect("UDP exchanges")
    };
    let answers = exchange(200);
    assert_eq!(answers.len(), 200);
    assert!(answers.iter().all(|a| a == &answers[0] && !a.is_empty()));
    // Short connections: the engine's alone.
    for _ in 0..3 {
        assert_eq!(curl(&lab, "http://198.18.0.100/").as_deref(), Ok("rs1\n"));
    }
    // The fold runs every second.
    std::thread::sleep(Duration::from_millis(1500));
    let udp_carried = counter(&counters(), "io.fastpath_packets");
    assert!(
        udp_carried >= 300,
        "{udp_carried} packets carried\n{}",
        counters()
    );
    // The real server's MAC changes (and the director's kernel learns it):
    // the carried flow is written again with the new next hop, and its
    // exchanges go on.
    let new_mac = "02:00:00:00:aa:11";
    support::ip(
        &lab,
        lab.server_ns(1),
        &["link", "set", "b0", "address", new_mac],
    );
    let d = lab.director_ns().to_string();
    support::ip(
        &lab,
        &d,
        &[
            "neigh",
            "replace",
            "198.18.1.11",
            "lladdr",
            new_mac,
            "dev",
            "br1",
            "nud",
            "permanent",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(exchange(50).len(), 50);
    assert!(
        counter(&counters(), "io.fastpath_rewritten") >= 1,
        "{}",
        counters()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let udp_carried = counter(&counters(), "io.fastpath_packets");
    // A long TCP connection: the small segments (ACKs) go by the fast
    // path, the large (GSO) ones too with TC (by lvsd with XDP), the FIN
    // by lvsd; nothing is lost.
    const LEN: usize = 4 << 20;
    let (up, down, _) = bulk_both_ways(&lab, LEN, Duration::from_secs(20));
    assert_eq!((up, down), (Ok(LEN), Ok(LEN)));
    // The fold (1 s), then the estimator (2 s).
    std::thread::sleep(Duration::from_millis(3500));
    let c = counters();
    assert_eq!(
        counter(&c, "io.fastpath_flows"),
        1,
        "the UDP flow; TCP went back at its FIN\n{c}"
    );
    assert_eq!(counter(&c, "io.fastpath_skipped"), 0, "{c}");
    assert!(
        counter(&c, "io.fastpath_packets") > udp_carried,
        "the TCP connection was carried\n{c}"
    );
    let stats = lvsadm_ok(&director.sock, &["-L", "-n", "--stats", "--exact"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with("UDP  198.18.0.100:53"))
        .unwrap_or_else(|| panic!("{stats}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (f[2], f[3], f[4]),
        ("1", "250", "250"),
        "exact with the fast path's packets\n{stats}"
    );
    director.stop(&lab);
    lab.close().unwrap();
}
