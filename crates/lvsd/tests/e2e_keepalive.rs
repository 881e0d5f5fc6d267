//! End-to-end: IPVS timeouts against TCP keepalive, UDP expiry and
//! persistence, the claims of docs/operations.md §2 checked on the real
//! lvsd with the real kernel TCP stacks of the lab's client and server.
//! The timeouts are shortened (`timeout 3 0 2`: TCP ESTABLISHED 3 s, UDP
//! 2 s) so that each test idles for seconds, not minutes.
//!
//! Needs root.

mod support;

use lvs_lab::Lab;
use socket2::{SockRef, TcpKeepalive};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::{counter, lvsadm_ok, nat_lab, Director};

const PORT: u16 = 7000;

fn tcp_config() -> String {
    format!(
        "timeout 3 0 2
director echo 198.18.0.100:{PORT} TCP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:{PORT}
"
    )
}

/// An echo server on the first real server: answers what it reads until
/// the client goes away (bounded: 30 s).
fn echo_server(lab: &Lab) -> std::thread::JoinHandle<()> {
    let listener = lab
        .run_in(lab.server_ns(1), move || {
            TcpListener::bind(("0.0.0.0", PORT))
        })
        .expect("enter the server's namespace")
        .expect("bind the echo server");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = [0u8; 256];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A client connection to the VIP from the client's namespace, with
/// keepalive after `idle` of silence, probes every `interval`.
fn client(lab: &Lab, idle: Duration, interval: Duration) -> TcpStream {
    let vip: SocketAddr = format!("{}:{PORT}", lvs_lab::VIP).parse().unwrap();
    let s = lab
        .run_in(lab.client_ns(), move || {
            TcpStream::connect_timeout(&vip, Duration::from_secs(5))
        })
        .expect("enter the client's namespace")
        .expect("connect to the VIP");
    let ka = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(3);
    SockRef::from(&s).set_tcp_keepalive(&ka).expect("keepalive");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn echo(s: &mut TcpStream, what: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(what)?;
    let mut buf = vec![0u8; what.len()];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// The connection entries `lvsadm -L -n -c` lists for the service port.
fn entries(sock: &std::path::Path, port: u16) -> Vec<String> {
    lvsadm_ok(sock, &["-L", "-n", "-c"])
        .lines()
        .filter(|l| l.contains(&format!("198.18.0.100:{port}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn idle_connection_with_long_keepalive_is_reset_after_expiry() {
    let (_g, lab) = nat_lab("lvtkal", 1);
    let d = Director::start(&lab, "kalong", &tcp_config());
    let server = echo_server(&lab);
    // Keepalive after 20 s of silence: far beyond the 3 s timeout.
    let mut s = client(&lab, Duration::from_secs(20), Duration::from_secs(1));
    assert_eq!(echo(&mut s, b"hello").unwrap(), b"hello");
    assert!(entries(&d.sock, PORT)
        .iter()
        .any(|l| l.contains("ESTABLISHED")));
    let resets = counter(&lvsadm_ok(&d.sock, &["--counters"]), "engine.tcp_resets");
    // Idle past the timeout: the entry expires, the endpoints know nothing.
    let t0 = Instant::now();
    while !entries(&d.sock, PORT).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "the entry never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    // The next segment matches no entry and cannot make one: answered with
    // a reset, as the kernel director's own stack answers it.
    let err = echo(&mut s, b"again").expect_err("the connection survived its entry");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let after = counter(&lvsadm_ok(&d.sock, &["--counters"]), "engine.tcp_resets");
    assert!(after > resets, "no reset counted ({resets} → {after})");
    assert!(
        entries(&d.sock, PORT).is_empty(),
        "a non-SYN segment made an entry"
    );
    drop(s);
    d.stop(&lab);
    let _ = server.join();
    lab.close().expect("clean up the lab");
}

#[test]
fn keepalive_shorter_than_timeout_keeps_the_connection() {
    let (_g, lab) = nat_lab("lvtkas", 1);
    let d = Director::start(&lab, "kashort", &tcp_config());
    let server = echo_server(&lab);
    // Keepalive after 1 s of silence, every second: under the 3 s timeout.
    let mut s = client(&lab, Duration::from_secs(1), Duration::from_secs(1));
    assert_eq!(echo(&mut s, b"hello").unwrap(), b"hello");
    let in_pkts = |d: &Director| -> u64 {
        let out = lvsadm_ok(&d.sock, &["-L", "-n", "--stats", "--exact"]);
        out.lines()
            .find(|l| l.starts_with("TCP"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or_else(|| panic!("{out}"))
    };
    let before = in_pkts(&d);
    // Silent for three timeouts; the entry must be there all along.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(9) {
        let e = entries(&d.sock, PORT);
        assert!(
            e.iter().any(|l| l.contains("ESTABLISHED")),
            "the entry expired at {:?} despite keepalive: {e:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        echo(&mut s, b"again").expect("the idle connection died"),
        b"again"
    );
    // The probes crossed the director (the counters are 2-second snapshots).
    assert!(in_pkts(&d) >= before + 4, "no keepalive probes seen");
    drop(s);
    d.stop(&lab);
    let _ = server.join();
    lab.close().expect("clean up the lab");
}

fn udp_config(persistence: bool) -> String {
    format!(
        "timeout 0 0 2
director dns 198.18.0.100:53 UDP
    balance roundrobin
    mode nat
{}    server rs1 198.18.1.11:53
    server rs2 198.18.1.12:53
",
        if persistence {
            "    option persistence timeout 30\n"
        } else {
            ""
        }
    )
}

/// A UDP socket in the client's namespace on `port`.
fn udp(lab: &Lab, port: u16) -> UdpSocket {
    let s = lab
        .run_in(lab.client_ns(), move || {
            UdpSocket::bind(("198.18.0.2", port))
        })
        .expect("enter the client's namespace")
        .expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// One query to the VIP: which server answered.
fn ask(s: &UdpSocket) -> String {
    s.send_to(b"who?\n", "198.18.0.100:53").expect("send");
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).expect("an answer (no error, no silence)");
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

/// A persistence template: `pro expire state source …` with client port 0.
fn is_template(line: &str) -> bool {
    line.split_whitespace()
        .nth(3)
        .is_some_and(|s| s.ends_with(":0"))
}

/// Waits (bounded) until no UDP connection entry is left (templates stay).
fn wait_expired(d: &Director) {
    let t0 = Instant::now();
    while entries(&d.sock, 53).iter().any(|l| !is_template(l)) {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "UDP entry never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn udp_flow_after_expiry_is_scheduled_again() {
    let (_g, lab) = nat_lab("lvtkau", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "kaudp", &udp_config(false));
    let s = udp(&lab, 40053);
    let first = ask(&s);
    assert_eq!(ask(&s), first, "the flow's entry holds it to its server");
    wait_expired(&d);
    // Same client address and port: a new flow, scheduled again (round
    // robin moves on), without a reset or an error.
    let second = ask(&s);
    assert_ne!(second, first, "the expired flow was not scheduled again");
    d.stop(&lab);
    lab.close().expect("clean up the lab");
}

#[test]
fn persistence_outlives_expired_connection() {
    let (_g, lab) = nat_lab("lvtkap", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "kapersist", &udp_config(true));
    let first = ask(&udp(&lab, 40153));
    wait_expired(&d);
    let left = entries(&d.sock, 53);
    assert!(
        left.iter().any(|l| is_template(l)),
        "no template left: {left:?}"
    );
    // A new flow from the same client, after its connection expired: the
    // template sends it to the same server, several times over.
    for port in [40154, 40155, 40156] {
        assert_eq!(ask(&udp(&lab, port)), first, "persistence lost");
    }
    d.stop(&lab);
    lab.close().expect("clean up the lab");
}
