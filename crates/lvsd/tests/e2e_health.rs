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

/// How the scripted HTTP server answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ok,
    Unavailable,
    /// 200 only for `Host: good.example`, 404 otherwise.
    OnlyGoodHost,
    /// Accepts, reads the request, never answers.
    Hang,
}

/// A small HTTP server in a real server's namespace whose answers the test
/// changes: `mode` for every request, or a `script` of up (true) / down
/// (false) answers consumed one per request.
struct Scripted {
    mode: std::sync::Arc<std::sync::Mutex<Mode>>,
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<bool>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    fn start(lab: &Lab, i: usize, port: u16, name: &'static str) -> Scripted {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, sc, st) = (mode.clone(), script.clone(), stop.clone());
        let ns = lab.server_ns(i).to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            lvs_lab::enter_netns(&ns).expect("enter the server namespace");
            let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind");
            l.set_nonblocking(true).unwrap();
            let _ = ready_tx.send(());
            let mut hung = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_lowercase();
                let scripted = sc.lock().unwrap().pop_front();
                let status = match (scripted, *m.lock().unwrap()) {
                    (Some(true), _) => "200 OK",
                    (Some(false), _) => "503 Service Unavailable",
                    (None, Mode::Ok) => "200 OK",
                    (None, Mode::Unavailable) => "503 Service Unavailable",
                    (None, Mode::OnlyGoodHost) if text.contains("host: good.example") => "200 OK",
                    (None, Mode::OnlyGoodHost) => "404 Not Found",
                    (None, Mode::Hang) => {
                        hung.push(c);
                        continue;
                    }
                };
                let body = format!("{name}\n");
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("scripted server ready");
        Scripted {
            mode,
            script,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `--health` line of `server`.
fn health_line(sock: &std::path::Path, server: &str) -> String {
    let out = lvsadm_ok(sock, &["--health"]);
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(server))
        .unwrap_or_else(|| panic!("no {server} in {out}"))
        .to_string()
}

/// httpcheck: a 503, a wrong virtual host and a server that never answers
/// each take the server down, with the reason; it comes back each time.
#[test]
fn httpcheck_status_vhost_and_a_server_that_never_answers() {
    let (_g, lab) = nat_lab("lvthttp", 2);
    let _rs2 = lab.start_identity_server(2, 80, 53).expect("rs2");
    let rs1 = Scripted::start(&lab, 1, 80, "rs1");
    rs1.set(Mode::OnlyGoodHost);
    let director = Director::start(
        &lab,
        "http",
        "director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    check interval 1 timeout 1
    option httpcheck uri /health statuscode 200 vhost good.example
    server rs1 198.18.1.11:80 check
    server rs2 198.18.1.12:80
",
    );
    let sock = &director.sock;
    // Healthy with the right virtual host: it serves.
    wait_state(sock, "rs1", "UP", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        health_line(sock, "rs1").contains("UP"),
        "{}",
        health_line(sock, "rs1")
    );
    let phases = [
        (Mode::Unavailable, "status 503"),
        (Mode::Hang, "timeout after 1000 ms"),
    ];
    for (m, reason) in phases {
        rs1.set(m);
        wait_state(sock, "rs1", "DOWN", Duration::from_secs(5));
        let line = health_line(sock, "rs1");
        assert!(line.ends_with(reason), "{m:?}: {line}");
        let listing = lvsadm_ok(sock, &["-L", "-n"]);
        assert!(!listing.contains("198.18.1.11"), "{m:?}: {listing}");
        let (per, failed) = requests(&lab, 40000 + 100 * m as u16, 4);
        assert!(failed.is_empty(), "{m:?}: {failed:?}");
        assert_eq!(per.get("rs2"), Some(&4), "{m:?}: {per:?}");
        rs1.set(Mode::OnlyGoodHost);
        wait_state(sock, "rs1", "UP", Duration::from_secs(5));
    }
    director.stop(&lab);
    drop(rs1);

    // The same check with another virtual host than the server expects.
    let rs1 = Scripted::start(&lab, 1, 8080, "rs1");
    rs1.set(Mode::OnlyGoodHost);
    let director = Director::start(
        &lab,
        "vhost",
        "director web 198.18.0.100:8080 TCP
    mode nat
    check interval 1 timeout 1
    option httpcheck vhost wrong.example
    server rs1 198.18.1.11:8080 check
",
    );
    wait_state(&director.sock, "rs1", "DOWN", Duration::from_secs(4));
    assert!(health_line(&director.sock, "rs1").ends_with("status 404"));
    director.stop(&lab);
    drop(rs1);
    lab.close().expect("clean up the lab");
}

/// rise 3 fall 2 on a server whose check answers flap in a fixed pattern:
/// exactly the transitions the counts imply, in order.
#[test]
fn a_flapping_server_makes_exactly_the_transitions_of_its_counts() {
    let (_g, lab) = nat_lab("lvtflap", 1);
    let rs1 = Scripted::start(&lab, 1, 8081, "rs1");
    let pattern = [
        true, false, true, false, false, true, true, false, true, true, true, false, false,
    ];
    rs1.script.lock().unwrap().extend(pattern);
    // What the counts imply, from the up state: down after 2 failures in a
    // row, up after 3 successes in a row.
    let mut expected = Vec::new();
    let (mut up, mut ok, mut bad) = (true, 0, 0);
    for &r in &pattern {
        if r {
            ok += 1;
            bad = 0;
        } else {
            bad += 1;
            ok = 0;
        }
        if up && bad >= 2 {
            up = false;
            expected.push("DOWN");
        } else if !up && ok >= 3 {
            up = true;
            expected.push("UP");
        }
    }
    assert_eq!(expected, vec!["DOWN", "UP", "DOWN"]);
    let director = Director::start(
        &lab,
        "flap",
        "director web 198.18.0.100:80 TCP
    mode nat
    check interval 1 timeout 1 rise 3 fall 2 port 8081
    option httpcheck
    server rs1 198.18.1.11:80 check
",
    );
    // Until the script is used up (13 checks, one a second), then a bit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rs1.script.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the checks did not run");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    rs1.set(Mode::Unavailable);
    let log = director.stop(&lab);
    let got: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            if l.contains(" is DOWN:") {
                Some("DOWN")
            } else if l.contains(" is UP:") {
                Some("UP")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got, expected, "{log}");
    drop(rs1);
    lab.close().expect("clean up the lab");
}

/// icmpcheck and arpcheck: the server's interface goes down, the server
/// leaves; it comes back up, the server returns.
#[test]
fn icmpcheck_and_arpcheck_follow_the_servers_interface() {
    let (_g, lab) = nat_lab("lvticmp", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let director = Director::start(
        &lab,
        "icmp",
        "director ping 198.18.0.100:80 TCP
    mode nat
    check interval 1 timeout 1
    option icmpcheck
    server rs1 198.18.1.11:80 check

director arp 198.18.0.100:81 TCP
    mode nat
    check interval 1 timeout 1
    option arpcheck iface br1
    server rs2 198.18.1.12:80 check
",
    );
    let sock = &director.sock;
    for (i, name) in [(1, "rs1"), (2, "rs2")] {
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            health_line(sock, name).contains(" UP "),
            "{}",
            health_line(sock, name)
        );
        let ns = lab.server_ns(i).to_string();
        lab.exec(
            &ns,
            "ip",
            &["link", "set", "b0", "down"],
            Duration::from_secs(5),
        )
        .expect("ip link set down");
        wait_state(sock, name, "DOWN", Duration::from_secs(5));
        let reason = if i == 1 {
            "no echo reply"
        } else {
            "no ARP reply"
        };
        assert!(
            health_line(sock, name).ends_with(reason),
            "{}",
            health_line(sock, name)
        );
        lab.exec(
            &ns,
            "ip",
            &["link", "set", "b0", "up"],
            Duration::from_secs(5),
        )
        .expect("ip link set up");
        wait_state(sock, name, "UP", Duration::from_secs(8));
    }
    director.stop(&lab);
    lab.close().expect("clean up the lab");
}
