//! End-to-end: health checks and sorry servers. Real servers in network
//! namespaces are stopped and started while a client keeps requesting
//! through the VIP; lvsd's checker must take a dead server out within
//! `interval × fall + timeout` and bring it back after `rise` successes.
//!
//! Needs root and `curl` (scripts/test.sh installs it).

mod support;

use lvs_lab::{IdentityServer, Lab};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{curl_args, lvsadm_ok, nat_lab, Director};

const URL: &str = "http://198.18.0.100/";

/// `n` requests from distinct source ports starting at `port`: the answers
/// per server and the failures.
fn requests(lab: &Lab, port: u16, n: u16) -> (HashMap<String, u32>, Vec<String>) {
    let mut per = HashMap::new();
    let mut failed = Vec::new();
    for i in 0..n {
        let p = (port + i).to_string();
        match curl_args(lab, URL, &["--local-port", &p, "-m", "2"]) {
            Ok(b) => *per.entry(b.trim().to_string()).or_insert(0) += 1,
            Err(e) => failed.push(e),
        }
    }
    (per, failed)
}

/// Waits (bounded) until `lvsadm --health` shows `server` in `state`.
fn wait_state(sock: &std::path::Path, server: &str, state: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let out = lvsadm_ok(sock, &["--health"]);
        let hit = out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&server) && w.get(3) == Some(&state)
        });
        if hit {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{server} not {state} after {limit:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn restart(lab: &Lab, i: usize) -> IdentityServer {
    lab.start_identity_server(i, 80, 53)
        .expect("restart the server")
}

const TCPCHECK: &str = "director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    check interval 1 timeout 1 rise 2 fall 1
    option tcpcheck
    server rs1 198.18.1.11:80 check
    server rs2 198.18.1.12:80 check
";

/// A dead server leaves within interval × fall + timeout and no request
/// fails after that; it comes back after `rise` successful checks.
#[test]
fn a_dead_server_leaves_and_rejoins_after_rise_successes() {
    let (_g, lab) = nat_lab("lvthc", 2);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(&lab, "hc", TCPCHECK);
    let (per, failed) = requests(&lab, 41000, 10);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        (per.get("rs1"), per.get("rs2")),
        (Some(&5), Some(&5)),
        "{per:?}"
    );

    servers[0].stop();
    // interval 1 s × fall 1 + timeout 1 s, plus scheduling slack.
    let took = wait_state(&director.sock, "rs1", "DOWN", Duration::from_secs(5));
    eprintln!("rs1 went DOWN {took:?} after it stopped");
    let listing = lvsadm_ok(&director.sock, &["-L", "-n"]);
    assert!(!listing.contains("198.18.1.11"), "{listing}");
    let (per, failed) = requests(&lab, 42000, 10);
    assert!(
        failed.is_empty(),
        "requests failed after the server left: {failed:?}"
    );
    assert_eq!(per.get("rs2"), Some(&10), "{per:?}");

    let _back = restart(&lab, 1);
    // rise 2: two successful checks, about 2 s.
    let took = wait_state(&director.sock, "rs1", "UP", Duration::from_secs(6));
    assert!(
        took >= Duration::from_millis(900),
        "rose after one check: {took:?}"
    );
    let (per, failed) = requests(&lab, 43000, 10);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        (per.get("rs1"), per.get("rs2")),
        (Some(&5), Some(&5)),
        "{per:?}"
    );
    let health = lvsadm_ok(&director.sock, &["--health"]);
    assert!(
        health.contains("tcpcheck :80 every 1s timeout 1s rise 2 fall 1"),
        "{health}"
    );
    let log = director.stop(&lab);
    // Each transition is logged once, with the reason and the counts.
    let downs: Vec<&str> = log.lines().filter(|l| l.contains("is DOWN")).collect();
    assert_eq!(downs.len(), 1, "{log}");
    assert!(downs[0].contains("rs1 198.18.1.11:80 of director web is DOWN: tcpcheck :80 connection refused (1 consecutive failure, rise 2 fall 1)"), "{log}");
    let ups: Vec<&str> = log.lines().filter(|l| l.contains("is UP")).collect();
    assert_eq!(ups.len(), 1, "{log}");
    assert!(ups[0].contains("(2 consecutive successes"), "{log}");
    lab.close().expect("clean up the lab");
}

/// Every normal server down: the sorry server answers; one back: new
/// requests go to it and the sorry server leaves.
#[test]
fn the_sorry_server_answers_only_while_every_other_is_down() {
    let (_g, lab) = nat_lab("lvtsorry", 3);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(
        &lab,
        "sorry",
        "director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    check interval 1 timeout 1
    option tcpcheck
    server rs1 198.18.1.11:80 check
    server rs2 198.18.1.12:80 check
    server rs3 198.18.1.13:80 sorry
",
    );
    let (per, failed) = requests(&lab, 41000, 6);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        per.get("rs3"),
        None,
        "the sorry server got traffic: {per:?}"
    );
    servers[0].stop();
    servers[1].stop();
    wait_state(&director.sock, "rs1", "DOWN", Duration::from_secs(5));
    wait_state(&director.sock, "rs2", "DOWN", Duration::from_secs(5));
    let (per, failed) = requests(&lab, 42000, 6);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(per.get("rs3"), Some(&6), "{per:?}");
    let _back = restart(&lab, 2);
    wait_state(&director.sock, "rs2", "UP", Duration::from_secs(5));
    let (per, failed) = requests(&lab, 43000, 6);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(per.get("rs2"), Some(&6), "{per:?}");
    let listing = lvsadm_ok(&director.sock, &["-L", "-n"]);
    assert!(
        !listing.contains("198.18.1.13"),
        "sorry server still in: {listing}"
    );
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// With `inhibit`, a failed server stays at weight 0: an established
/// connection to it keeps working while new ones go elsewhere. The check
/// (tcpcheck on another port) fails while the service port still answers.
#[test]
fn inhibit_keeps_established_connections_of_a_failed_server() {
    use std::io::{Read, Write};
    let (_g, lab) = nat_lab("lvtinh", 2);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    // The check probes port 81, served by a second identity server per
    // real server: stopping it fails the check, not the service.
    let probes: Vec<IdentityServer> = (1..=2)
        .map(|i| lab.start_identity_server(i, 81, 5353).expect("probe port"))
        .collect();
    let director = Director::start(
        &lab,
        "inhibit",
        "director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    check interval 1 timeout 1 port 81 inhibit
    option tcpcheck
    server rs1 198.18.1.11:80 check
    server rs2 198.18.1.12:80 check
",
    );
    // A long-lived connection, opened but not used yet (the identity
    // server answers one request per connection); lvsadm says where it went.
    let mut conn = lab
        .run_in(lab.client_ns(), || {
            std::net::TcpStream::connect_timeout(
                &"198.18.0.100:80".parse().unwrap(),
                Duration::from_secs(3),
            )
        })
        .unwrap()
        .expect("connect through the VIP");
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = conn.local_addr().unwrap().port();
    let conns = lvsadm_ok(&director.sock, &["-L", "-n", "-c"]);
    let entry = conns
        .lines()
        .find(|l| l.contains(&format!("198.18.0.2:{local}")))
        .unwrap_or_else(|| panic!("no entry for port {local}: {conns}"));
    let which = if entry.contains("198.18.1.11:80") {
        1
    } else {
        2
    };
    probes[which - 1].stop();
    let name = format!("rs{which}");
    wait_state(&director.sock, &name, "DOWN", Duration::from_secs(5));
    let listing = lvsadm_ok(&director.sock, &["-L", "-n"]);
    let line = listing
        .lines()
        .find(|l| l.contains(&format!("198.18.1.1{which}:80")))
        .unwrap_or_else(|| panic!("inhibited server removed: {listing}"));
    assert_eq!(line.split_whitespace().nth(3), Some("0"), "weight: {line}");
    // The established connection still works.
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains(&name),
        "the kept connection broke: {answer:?}"
    );
    let (per, failed) = requests(&lab, 42000, 6);
    assert!(failed.is_empty(), "{failed:?}");
    let other = format!("rs{}", 3 - which);
    assert_eq!(per.get(&other), Some(&6), "{per:?}");
    drop(conn);
    drop(servers);
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}
