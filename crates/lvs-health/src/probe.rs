//! One probe of one check: dispatch by method, bounded by the check's timeout.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpSocket, TcpStream};

use crate::icmp::IcmpSocket;
use crate::{arp, http, io_reason, CheckKind, CheckSpec};

/// Runs single probes. Holds what probes share: the ICMP sockets (one per
/// source address, their replies dispatched by identifier and sequence).
///
/// [`Health`](crate::Health) owns one; it is public so that a caller with its
/// own tokio runtime (a test, a "check now" command) can probe once.
#[derive(Debug, Default)]
pub struct Prober {
    icmp: Mutex<HashMap<Option<Ipv4Addr>, Arc<IcmpSocket>>>,
}

impl Prober {
    /// A prober with no sockets open yet (they open on first use).
    pub fn new() -> Prober {
        Prober::default()
    }

    /// Probes `spec` once. `Ok(())` is a success; `Err` carries the reason of
    /// the failure. Never takes longer than `spec.timeout` (plus scheduling
    /// delay); must be called within a tokio runtime with I/O and time enabled.
    pub async fn probe(&self, spec: &CheckSpec) -> Result<(), String> {
        match tokio::time::timeout(spec.timeout, self.probe_unbounded(spec)).await {
            Ok(result) => result,
            Err(_) => Err(match spec.kind {
                CheckKind::Icmp => "no echo reply".to_string(),
                CheckKind::Arp { .. } => "no ARP reply".to_string(),
                CheckKind::Tcp | CheckKind::Http { .. } => {
                    format!("timeout after {} ms", spec.timeout.as_millis())
                }
            }),
        }
    }

    async fn probe_unbounded(&self, spec: &CheckSpec) -> Result<(), String> {
        match &spec.kind {
            CheckKind::Tcp => {
                // Dropping the stream closes it.
                connect(spec).await.map(drop)
            }
            CheckKind::Http { uri, vhost, status } => {
                let stream = connect(spec).await?;
                http::check(stream, spec, uri, vhost.as_deref(), *status).await
            }
            CheckKind::Icmp => {
                let IpAddr::V4(target) = spec.addr else {
                    return Err("icmpcheck supports IPv4 servers only".to_string());
                };
                let source = match spec.source {
                    None => None,
                    Some(IpAddr::V4(s)) => Some(s),
                    Some(IpAddr::V6(_)) => {
                        return Err("icmpcheck: IPv6 source for an IPv4 server".to_string())
                    }
                };
                let socket = self.icmp_socket(source)?;
                socket.ping(target).await
            }
            CheckKind::Arp { iface } => arp::check(spec, iface.as_deref()).await,
        }
    }

    fn icmp_socket(&self, source: Option<Ipv4Addr>) -> Result<Arc<IcmpSocket>, String> {
        let mut map = self.icmp.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(&source) {
            return Ok(s.clone());
        }
        let s = IcmpSocket::open(source)
            .map_err(|e| format!("cannot open an ICMP socket: {}", io_reason(&e)))?;
        map.insert(source, s.clone());
        Ok(s)
    }
}

/// Opens a TCP connection to the check's server, from `source` if given.
pub(crate) async fn connect(spec: &CheckSpec) -> Result<TcpStream, String> {
    let dest = SocketAddr::new(spec.addr, spec.port);
    let socket = match dest {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {}", io_reason(&e)))?;
    if let Some(src) = spec.source {
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("binding to source {src}: {}", io_reason(&e)))?;
    }
    socket.connect(dest).await.map_err(|e| io_reason(&e))
}

/// Reads from a socket into an initialised buffer through socket2's
/// `MaybeUninit` interface.
pub(crate) fn recv_from(
    socket: &socket2::Socket,
    buf: &mut [u8],
) -> io::Result<(usize, socket2::SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the
    // buffer is already initialised; recv_from only writes bytes into it and
    // never de-initialises any, so it stays valid as `[u8]` afterwards.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    socket.recv_from(uninit)
}

/// Registers a socket with the current tokio runtime.
pub(crate) fn register(
    socket: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: a `socket2::Socket` owns its descriptor: it is open, stays open
    // and is the same descriptor until the socket (moved into the AsyncFd) is
    // dropped, and `as_raw_fd` always returns it.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(socket) }?)
}
