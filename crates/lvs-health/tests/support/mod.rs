//! Test servers on loopback (plain std threads, independent of the checker's
//! runtime) and helpers to build specs and wait for verdicts. Every server
//! stops on drop and every wait is bounded.

#![allow(dead_code)] // each test binary uses a part

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lvs_health::{CheckKind, CheckSpec, Health, Prober, Transition};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn spec(kind: CheckKind, port: u16, interval_ms: u64, timeout_ms: u64) -> CheckSpec {
    CheckSpec {
        kind,
        addr: LOCALHOST,
        port,
        source: None,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        rise: 1,
        fall: 1,
    }
}

pub fn http(uri: &str, vhost: Option<&str>, status: u16) -> CheckKind {
    CheckKind::Http {
        uri: uri.to_string(),
        vhost: vhost.map(str::to_string),
        status,
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Probes once on a fresh current-thread runtime; returns the result and how
/// long it took.
pub fn probe_once(spec: &CheckSpec) -> (Result<(), String>, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prober = Prober::new();
    let started = Instant::now();
    let r = rt.block_on(prober.probe(spec));
    (r, started.elapsed())
}

/// Waits up to `within` for the next transition.
pub fn next_transition(health: &Health, within: Duration) -> Option<Transition> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = health.poll_transition() {
            return Some(t);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits up to `within` until the check of `spec` has run at least `runs` times.
pub fn wait_runs(health: &Health, spec: &CheckSpec, runs: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = runs_of(health, spec);
        if n >= runs {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "check ran {n} times within {within:?}, wanted {runs}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

pub fn runs_of(health: &Health, spec: &CheckSpec) -> u64 {
    health
        .status()
        .into_iter()
        .find(|(s, _)| s == spec)
        .map_or(0, |(_, st)| st.checks_run)
}

/// Whether a descriptor is readable right now.
pub fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// A background server that stops on drop.
pub struct Server {
    pub port: u16,
    /// Connections accepted (TCP) or requests read (HTTP).
    pub count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks accept().
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// Accepts TCP connections, counts and closes them. `port` 0 picks one.
pub fn tcp_server(port: u16) -> Server {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (count.clone(), stop.clone());
    let thread = thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            if conn.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Server {
        port,
        count,
        stop,
        thread: Some(thread),
    }
}

/// What the HTTP test server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response with this status and a short body.
    Status(u16),
    /// Reads the request and never answers (holds the connection).
    Silence,
    /// `200 OK` and a body that never ends.
    Endless,
    /// `200 OK` with a head of this many header bytes.
    HugeHead(usize),
}

/// An HTTP server; `reply(n, host)` decides the reply to request number `n`
/// (from 0) with Host header `host`.
pub fn http_server(reply: impl Fn(u64, &str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (count.clone(), stop.clone());
    let reply = Arc::new(reply);
    let thread = thread::spawn(move || {
        let mut workers = Vec::new();
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (c, s, reply) = (c.clone(), s.clone(), reply.clone());
            workers.push(thread::spawn(move || serve(conn, &c, &s, &*reply)));
        }
        for w in workers {
            let _ = w.join();
        }
    });
    Server {
        port,
        count,
        stop,
        thread: Some(thread),
    }
}

fn serve(
    mut conn: TcpStream,
    count: &AtomicU64,
    stop: &AtomicBool,
    reply: &dyn Fn(u64, &str) -> Reply,
) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let host = head
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or("")
        .to_string();
    let n = count.fetch_add(1, Ordering::SeqCst);
    // Bound on how long any connection is held, whatever the client does.
    let deadline = Instant::now() + Duration::from_secs(10);
    match reply(n, &host) {
        Reply::Status(code) => {
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
            );
        }
        Reply::Silence => {
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::Endless => {
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                .is_err()
            {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Reply::HugeHead(bytes) => {
            let mut r = String::from("HTTP/1.1 200 OK\r\n");
            while r.len() < bytes {
                r.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            }
            r.push_str("\r\n");
            let _ = conn.write_all(r.as_bytes());
        }
    }
}
