//! "Identity" real servers: tiny HTTP and UDP servers that answer `rsI\n`,
//! so a client can tell which real server handled its request.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::netns::{enter_netns, join_bounded, lock};
use crate::LabError;

/// How often blocked loops re-check the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Overall time a client gets to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted request header block.
const MAX_REQUEST: usize = 16 * 1024;
/// Most connection-handler threads per server; beyond that connections are
/// handled inline by the accept thread.
const MAX_CONN_THREADS: usize = 32;
/// How long a start waits for the bind result.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long stopping waits for the threads.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The body every identity server `i` (1-based) returns: `rsI\n`.
pub fn identity_body(i: usize) -> String {
    format!("rs{i}\n")
}

/// State shared by an [`IdentityServer`], its threads and the owning lab.
pub(crate) struct Shared {
    name: String,
    stop: AtomicBool,
    tcp: AtomicU64,
    udp: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Signals the threads to stop and joins them (bounded). Idempotent.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handles = std::mem::take(&mut *lock(&self.threads));
        if !handles.is_empty() {
            join_bounded(
                handles,
                Instant::now() + STOP_TIMEOUT,
                &format!("identity server {}", self.name),
            );
        }
    }
}

/// One running identity server (TCP + UDP) inside a real-server namespace.
///
/// Dropping it stops its threads (the owning [`crate::Lab`] also stops it
/// when dropped first).
pub struct IdentityServer {
    /// Server name, `rsI` (1-based).
    pub name: String,
    /// Server address, [`crate::server_ip`]`(I)`.
    pub ip: Ipv4Addr,
    /// 1-based server index.
    pub index: usize,
    /// Namespace the server runs in.
    pub namespace: String,
    /// TCP (HTTP) port it listens on (0.0.0.0).
    pub tcp_port: u16,
    /// UDP port it listens on (0.0.0.0).
    pub udp_port: u16,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IdentityServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityServer")
            .field("name", &self.name)
            .field("ip", &self.ip)
            .field("namespace", &self.namespace)
            .field("tcp_port", &self.tcp_port)
            .field("udp_port", &self.udp_port)
            .field("tcp_requests", &self.tcp_requests())
            .field("udp_requests", &self.udp_requests())
            .finish()
    }
}

impl IdentityServer {
    /// Number of complete HTTP requests answered so far (counted before the
    /// response is written, so a client that got its answer sees it counted).
    pub fn tcp_requests(&self) -> u64 {
        self.shared.tcp.load(Ordering::SeqCst)
    }

    /// Number of UDP datagrams answered so far (counted before replying).
    pub fn udp_requests(&self) -> u64 {
        self.shared.udp.load(Ordering::SeqCst)
    }

    /// The body this server returns (`rsI\n`).
    pub fn body(&self) -> String {
        identity_body(self.index)
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&self) {
        self.shared.shutdown();
    }

    /// Starts server `index` in namespace `ns`. Returns once both sockets
    /// are bound (or with the bind error).
    pub(crate) fn start(
        ns: &str,
        index: usize,
        ip: Ipv4Addr,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<IdentityServer, LabError> {
        let name = format!("rs{index}");
        let shared = Arc::new(Shared {
            name: name.clone(),
            stop: AtomicBool::new(false),
            tcp: AtomicU64::new(0),
            udp: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let server = IdentityServer {
            name: name.clone(),
            ip,
            index,
            namespace: ns.to_string(),
            tcp_port,
            udp_port,
            shared: Arc::clone(&shared),
        };
        let body: Arc<[u8]> = identity_body(index).into_bytes().into();

        // From here on, an early return drops `server`, which stops whatever
        // was started.
        for proto in ["tcp", "udp"] {
            let (tx, rx) = mpsc::channel::<Result<(), LabError>>();
            let ns_owned = ns.to_string();
            let sh = Arc::clone(&shared);
            let body = Arc::clone(&body);
            let handle = thread::Builder::new()
                .name(format!("{name}-{proto}"))
                .spawn(move || {
                    if let Err(e) = enter_netns(&ns_owned) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if proto == "tcp" {
                        // Both families (`::` takes IPv4 too), or IPv4 alone
                        // where the kernel has no IPv6.
                        match TcpListener::bind((Ipv6Addr::UNSPECIFIED, tcp_port))
                            .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, tcp_port)))
                            .and_then(|l| l.set_nonblocking(true).map(|_| l))
                        {
                            Ok(l) => {
                                let _ = tx.send(Ok(()));
                                tcp_loop(l, &sh, &body);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(LabError::io(
                                    format!("{ns_owned}: binding TCP [::]:{tcp_port}"),
                                    e,
                                )));
                            }
                        }
                    } else {
                        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, udp_port))
                            .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, udp_port)))
                            .and_then(|s| s.set_read_timeout(Some(POLL)).map(|_| s))
                        {
                            Ok(s) => {
                                let _ = tx.send(Ok(()));
                                udp_loop(s, &sh, &body);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(LabError::io(
                                    format!("{ns_owned}: binding UDP [::]:{udp_port}"),
                                    e,
                                )));
                            }
                        }
                    }
                })
                .map_err(|e| LabError::io("spawning identity server thread", e))?;
            lock(&shared.threads).push(handle);
            match rx.recv_timeout(BIND_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(LabError::Timeout(format!(
                        "{name} {proto} server did not report its bind within {BIND_TIMEOUT:?}"
                    )))
                }
            }
        }
        Ok(server)
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }
}

impl Drop for IdentityServer {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

fn tcp_loop(listener: TcpListener, shared: &Arc<Shared>, body: &Arc<[u8]>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let (done, rest): (Vec<_>, Vec<_>) =
                    conns.into_iter().partition(|h| h.is_finished());
                for h in done {
                    let _ = h.join();
                }
                conns = rest;
                if conns.len() < MAX_CONN_THREADS {
                    let sh = Arc::clone(shared);
                    let b = Arc::clone(body);
                    let spawned = thread::Builder::new()
                        .name(format!("{}-conn", shared.name))
                        .spawn(move || handle_http(stream, &sh, &b));
                    match spawned {
                        Ok(h) => conns.push(h),
                        Err(e) => eprintln!("lvs-lab: {}: cannot spawn thread: {e}", shared.name),
                    }
                } else {
                    handle_http(stream, shared, body);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                eprintln!("lvs-lab: {}: accept failed: {e}", shared.name);
                thread::sleep(POLL);
            }
        }
    }
    join_bounded(
        conns,
        Instant::now() + Duration::from_secs(2),
        &format!("{} connection", shared.name),
    );
}

fn header_end(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn handle_http(mut stream: TcpStream, shared: &Shared, body: &[u8]) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut req = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if shared.stopping() || Instant::now() >= deadline {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return, // closed before the headers were complete
            Ok(n) => {
                req.extend_from_slice(&chunk[..n]);
                if header_end(&req) {
                    break;
                }
                if req.len() > MAX_REQUEST {
                    let _ = stream.write_all(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
    shared.tcp.fetch_add(1, Ordering::SeqCst);
    let head = req.starts_with(b"HEAD ");
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        resp.extend_from_slice(body);
    }
    if stream
        .write_all(&resp)
        .and_then(|_| stream.flush())
        .is_err()
    {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    // Drain until the client closes (briefly): closing with unread data
    // would send a RST that can destroy the response in flight.
    let drain_deadline = Instant::now() + Duration::from_secs(1);
    while !shared.stopping() && Instant::now() < drain_deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

fn udp_loop(sock: UdpSocket, shared: &Shared, body: &[u8]) {
    let mut buf = vec![0u8; 65536];
    while !shared.stopping() {
        match sock.recv_from(&mut buf) {
            Ok((_n, src)) => {
                shared.udp.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = sock.send_to(body, src) {
                    eprintln!("lvs-lab: {}: UDP reply to {src} failed: {e}", shared.name);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                eprintln!("lvs-lab: {}: UDP receive failed: {e}", shared.name);
                thread::sleep(POLL);
            }
        }
    }
}
