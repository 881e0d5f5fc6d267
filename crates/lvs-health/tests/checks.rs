//! One probe at a time against servers on loopback: what each method calls a
//! success, what it reports on failure, and that no probe outlives its timeout.

mod support;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use lvs_health::CheckKind;
use support::*;

#[test]
fn tcpcheck_up_on_a_listener_refused_without() {
    let server = tcp_server(0);
    let (r, _) = probe_once(&spec(CheckKind::Tcp, server.port, 1000, 1000));
    assert_eq!(r, Ok(()));
    let (r, _) = probe_once(&spec(CheckKind::Tcp, closed_port(), 1000, 1000));
    assert_eq!(r, Err("connection refused".to_string()));
}

#[test]
fn tcpcheck_connects_from_the_source_address() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut s = spec(CheckKind::Tcp, port, 1000, 1000);
    s.source = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let (r, _) = probe_once(&s);
    assert_eq!(r, Ok(()));
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
}

#[test]
fn httpcheck_judges_the_status_code() {
    let ok = http_server(|_, _| Reply::Status(200));
    let sick = http_server(|_, _| Reply::Status(503));
    let (r, _) = probe_once(&spec(http("/", None, 200), ok.port, 1000, 1000));
    assert_eq!(r, Ok(()));
    let (r, _) = probe_once(&spec(http("/", None, 200), sick.port, 1000, 1000));
    assert_eq!(r, Err("status 503".to_string()));
    // `statuscode 503` makes 503 the healthy answer.
    let (r, _) = probe_once(&spec(http("/", None, 503), sick.port, 1000, 1000));
    assert_eq!(r, Ok(()));
    let (r, _) = probe_once(&spec(http("/", None, 200), closed_port(), 1000, 1000));
    assert_eq!(r, Err("connection refused".to_string()));
}

#[test]
fn httpcheck_sends_the_vhost() {
    let server = http_server(|_, host| {
        if host == "www.example.test" {
            Reply::Status(200)
        } else {
            Reply::Status(404)
        }
    });
    let port = server.port;
    let (r, _) = probe_once(&spec(
        http("/", Some("www.example.test"), 200),
        port,
        1000,
        1000,
    ));
    assert_eq!(r, Ok(()));
    let (r, _) = probe_once(&spec(http("/", Some("other.test"), 200), port, 1000, 1000));
    assert_eq!(r, Err("status 404".to_string()));
    // Without vhost the Host header is the server's address.
    let (r, _) = probe_once(&spec(http("/", None, 200), port, 1000, 1000));
    assert_eq!(r, Err("status 404".to_string()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s2 = seen.clone();
    let echo = http_server(move |_, host| {
        *s2.lock().unwrap() = host.to_string();
        Reply::Status(200)
    });
    let (r, _) = probe_once(&spec(http("/", None, 200), echo.port, 1000, 1000));
    assert_eq!(r, Ok(()));
    assert_eq!(*seen.lock().unwrap(), format!("127.0.0.1:{}", echo.port));
}

#[test]
fn httpcheck_silent_server_fails_within_the_timeout() {
    let server = http_server(|_, _| Reply::Silence);
    let (r, took) = probe_once(&spec(http("/", None, 200), server.port, 1000, 300));
    assert_eq!(r, Err("timeout after 300 ms".to_string()));
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1300), "{took:?}");
    assert_eq!(server.count(), 1, "the request was sent");
}

#[test]
fn httpcheck_endless_body_passes_promptly() {
    let server = http_server(|_, _| Reply::Endless);
    let (r, took) = probe_once(&spec(http("/", None, 200), server.port, 5000, 3000));
    assert_eq!(r, Ok(()));
    // Well under the timeout: the head decides, the body is never waited for.
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn httpcheck_huge_head_fails_without_reading_it_all() {
    let server = http_server(|_, _| Reply::HugeHead(64 * 1024));
    let (r, took) = probe_once(&spec(http("/", None, 200), server.port, 5000, 3000));
    assert_eq!(r, Err("response head over 8192 bytes".to_string()));
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn icmpcheck_loopback() {
    let mut checks = Vec::new();
    for i in 1..=20u8 {
        let mut s = spec(CheckKind::Icmp, 0, 1000, 2000);
        s.addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
        checks.push(s);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prober = std::sync::Arc::new(lvs_health::Prober::new());
    // Twenty pings in flight on one shared socket: each gets its own reply.
    let results: Vec<Result<(), String>> = rt.block_on(async {
        let tasks: Vec<_> = checks
            .iter()
            .cloned()
            .map(|s| {
                let p = prober.clone();
                tokio::spawn(async move { p.probe(&s).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    if let Err(e) = &results[0] {
        if e.starts_with("cannot open an ICMP socket") {
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            assert_ne!(euid, 0, "root could not open an ICMP socket: {e}");
            eprintln!("SKIPPED icmpcheck_loopback: not root and no ping socket allowed ({e})");
            return;
        }
    }
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

#[test]
fn icmp_and_arp_refuse_ipv6() {
    let mut s = spec(CheckKind::Icmp, 0, 1000, 1000);
    s.addr = "::1".parse().unwrap();
    let (r, _) = probe_once(&s);
    assert_eq!(r, Err("icmpcheck supports IPv4 servers only".to_string()));
    s.kind = CheckKind::Arp { iface: None };
    let (r, _) = probe_once(&s);
    assert_eq!(r, Err("arpcheck supports IPv4 servers only".to_string()));
}

#[test]
fn arpcheck_on_loopback_gets_no_reply() {
    // lo has no ARP: the request goes nowhere, the check fails at its timeout.
    let s = spec(
        CheckKind::Arp {
            iface: Some("lo".into()),
        },
        0,
        1000,
        200,
    );
    let (r, took) = probe_once(&s);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED arpcheck_on_loopback_gets_no_reply: not root ({r:?})");
        return;
    }
    assert_eq!(r, Err("no ARP reply".to_string()));
    assert!(took < Duration::from_millis(1200), "{took:?}");
    let s = spec(
        CheckKind::Arp {
            iface: Some("nosuchif0".into()),
        },
        0,
        1000,
        200,
    );
    assert_eq!(probe_once(&s).0, Err("no interface nosuchif0".to_string()));
}
