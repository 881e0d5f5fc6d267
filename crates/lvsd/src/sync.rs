//! The sync daemons' sockets (sync-protocol.md §1): the engine decides
//! what to send and applies what arrives; this only carries the bytes.
//!
//! Master: one UDP socket per port (`sync_ports`), connected to
//! `group:port+i`, multicast out of the configured interface, TTL as
//! configured, no loopback, no DF. Backup: one socket per port bound to
//! the group address and port on the interface, joined to the group.

use lvs_control::{DaemonConfig, ErrorKind, Request, Response, SyncRole, SyncStatus};
use lvs_core::sync::MasterConfig;
use lvs_core::Engine;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// The default group and port (§1).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const DEFAULT_PORT: u16 = 8848;

struct Running {
    cfg: DaemonConfig,
    sockets: Vec<Socket>,
    /// Master: listens on the group for full-copy requests. Backup with
    /// `resync`: sends its request.
    side: Option<Socket>,
    /// Backup with `resync`: requests sent, and when the next is due if
    /// nothing arrived by then.
    asked: u8,
    ask_at: u64,
}

/// Full-copy requests a backup sends at most (1 s apart while nothing
/// arrives).
const RESYNC_TRIES: u8 = 3;
/// Entries of a full copy queued per step of the packet loop.
const FULL_COPY_STEP: usize = 4096;

/// The running daemons and their socket-level counters.
#[derive(Default)]
pub struct SyncDaemons {
    master: Option<Running>,
    backup: Option<Running>,
    /// Messages the master could not send (the socket refused them).
    pub send_errors: u64,
    /// Receive buffer (the backup's maxlen).
    buf: Vec<u8>,
}

fn err(kind: ErrorKind, detail: impl Into<String>) -> Response {
    Response::Error {
        kind,
        detail: detail.into(),
    }
}

impl SyncDaemons {
    /// `--start-daemon`, `--stop-daemon`, `-L --daemon`.
    pub fn request(&mut self, req: &Request, engine: &mut Engine, now_ms: u64) -> Response {
        match req {
            Request::StartDaemon(cfg) => match self.start(cfg, engine) {
                Ok(()) => Response::Ok,
                Err(r) => r,
            },
            Request::StopDaemon(role) => {
                let slot = match role {
                    SyncRole::Master => &mut self.master,
                    SyncRole::Backup => &mut self.backup,
                };
                if slot.take().is_none() {
                    return err(ErrorKind::NoDaemon, "");
                }
                match role {
                    SyncRole::Master => engine.stop_sync_master(),
                    SyncRole::Backup => engine.set_sync_backup(false),
                }
                tracing::info!("{} sync daemon stopped", role_name(*role));
                Response::Ok
            }
            _ => Response::Daemons {
                daemons: self
                    .master
                    .iter()
                    .chain(self.backup.iter())
                    .map(|r| r.cfg.clone())
                    .collect(),
                status: Box::new(self.status(engine, now_ms)),
            },
        }
    }

    /// The counters `-L --daemon --json`, `--counters` and the metrics show.
    pub fn status(&self, engine: &Engine, now_ms: u64) -> SyncStatus {
        let c = engine.sync_counters();
        SyncStatus {
            messages_sent: c.messages_sent,
            entries_sent: c.entries_sent,
            send_dropped: c.messages_dropped + self.send_errors,
            queue_len: engine.sync_queue_len() as u64,
            messages_received: c.received,
            entries_created: c.entries_created,
            entries_updated: c.entries_updated,
            entries_skipped: c.entries_skipped,
            entries_ignored: c.entries_ignored,
            receive_dropped: lvs_core::sync::codec::MessageFault::ALL
                .iter()
                .map(|f| (f.name().to_string(), c.dropped[*f as usize]))
                .collect(),
            last_message_age_ms: c.last_received_ms.map(|t| now_ms.saturating_sub(t)),
        }
    }

    fn start(&mut self, cfg: &DaemonConfig, engine: &mut Engine) -> Result<(), Response> {
        let running = match cfg.role {
            SyncRole::Master => self.master.is_some(),
            SyncRole::Backup => self.backup.is_some(),
        };
        if running {
            return Err(err(ErrorKind::DaemonRunning, ""));
        }
        let ifindex = ifindex(&cfg.ifname).ok_or_else(|| err(ErrorKind::NoDevice, ""))?;
        let group = cfg.group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
        let hlen = if group.is_ipv6() { 48 } else { 28 };
        let port = if cfg.port == 0 {
            DEFAULT_PORT
        } else {
            cfg.port
        };
        let ttl = cfg.ttl.max(1);
        // §1.1: the count of the daemon already running, else sync_ports.
        let ports = match (&self.master, &self.backup) {
            (Some(r), _) | (_, Some(r)) => r.sockets.len(),
            _ => engine
                .sysctl("sync_ports")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, 64),
        };
        let sock_size = engine
            .sysctl("sync_sock_size")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        // §1.2.
        let maxlen = match (cfg.role, cfg.maxlen) {
            (SyncRole::Master, 0) => 1500 - hlen,
            (SyncRole::Master, v) => usize::from(v).clamp(1, 65535 - hlen),
            (SyncRole::Backup, 0) => iface_mtu(&cfg.ifname).clamp(1500, 65535) - hlen,
            (SyncRole::Backup, v) => usize::from(v).clamp(1024, 65535 - hlen),
        };
        if usize::from(port) + ports - 1 > 65535 {
            return Err(err(
                ErrorKind::Invalid,
                format!(
                    "ports {port}..{} (sync_ports {ports}) run past 65535",
                    usize::from(port) + ports - 1
                ),
            ));
        }
        let mut sockets = Vec::with_capacity(ports);
        for i in 0..ports {
            let to = SocketAddr::new(group, port + i as u16);
            let s = match cfg.role {
                SyncRole::Master => master_socket(to, ifindex, ttl, sock_size),
                SyncRole::Backup => backup_socket(to, &cfg.ifname, ifindex, sock_size),
            }
            .map_err(|e| {
                err(
                    ErrorKind::Invalid,
                    format!("sync socket for {to} on {}: {e}", cfg.ifname),
                )
            })?;
            sockets.push(s);
        }
        let effective = DaemonConfig {
            role: cfg.role,
            ifname: cfg.ifname.clone(),
            syncid: cfg.syncid,
            maxlen: maxlen as u16,
            group: Some(group),
            port,
            ttl,
            resync: cfg.resync,
        };
        // The master hears full-copy requests on the group's base port; a
        // backup that wants a copy sends them there.
        let base = SocketAddr::new(group, port);
        let side = match cfg.role {
            SyncRole::Master => backup_socket(base, &cfg.ifname, ifindex, 0).ok(),
            SyncRole::Backup if cfg.resync => master_socket(base, ifindex, ttl, 0).ok(),
            SyncRole::Backup => None,
        };
        tracing::info!(
            "{} sync daemon started (mcast={}, syncid={}, maxlen={maxlen}, group={group}, port={port}, ttl={ttl})",
            role_name(cfg.role),
            cfg.ifname,
            cfg.syncid
        );
        match cfg.role {
            SyncRole::Master => {
                engine.start_sync_master(MasterConfig {
                    syncid: cfg.syncid,
                    maxlen,
                    ports: ports as u8,
                });
                self.master = Some(Running {
                    cfg: effective,
                    sockets,
                    side,
                    asked: 0,
                    ask_at: 0,
                });
            }
            SyncRole::Backup => {
                engine.set_sync_backup(true);
                self.buf = vec![0; maxlen];
                self.backup = Some(Running {
                    cfg: effective,
                    sockets,
                    side,
                    asked: 0,
                    ask_at: 0,
                });
            }
        }
        Ok(())
    }

    /// The backup's sockets, for the packet loop's poll.
    pub fn fds(&self) -> Vec<RawFd> {
        self.backup
            .iter()
            .flat_map(|r| r.sockets.iter().map(|s| s.as_raw_fd()))
            .chain(
                self.master
                    .iter()
                    .filter_map(|m| m.side.as_ref().map(|s| s.as_raw_fd())),
            )
            .collect()
    }

    /// Applies every message waiting on the backup's sockets (bounded per
    /// call).
    pub fn receive(&mut self, engine: &mut Engine, now_ms: u64) {
        if let Some(m) = &self.master {
            if let Some(s) = &m.side {
                let mut req = [0u8; 16];
                for _ in 0..64 {
                    // SAFETY: recv into a live buffer of that length.
                    let n = unsafe {
                        libc::recv(
                            s.as_raw_fd(),
                            req.as_mut_ptr().cast(),
                            req.len(),
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if n <= 0 {
                        break;
                    }
                    // Other masters' messages arrive here too (cut to 16
                    // bytes): only an 8-byte request counts.
                    if n == 8
                        && lvs_core::sync::is_resync_request(&req[..8], m.cfg.syncid)
                        && !engine.full_sync_running()
                    {
                        tracing::info!(
                            "sync master: a backup asked for a full copy; sending {} entries",
                            engine.connection_count()
                        );
                        engine.begin_full_sync();
                    }
                }
            }
        }
        let Some(b) = &self.backup else { return };
        let syncid = b.cfg.syncid;
        for s in &b.sockets {
            for _ in 0..256 {
                // A longer datagram is cut to the buffer; its size field
                // then does not match and the engine drops it (§1.2).
                // SAFETY: recv into our own live buffer of that length.
                let n = unsafe {
                    libc::recv(
                        s.as_raw_fd(),
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    break;
                }
                let _ = engine.apply_sync(&self.buf[..n as usize], syncid, now_ms);
            }
        }
    }

    /// Sends what the engine has ready (and a backup's full-copy request
    /// while it is due).
    pub fn send(&mut self, engine: &mut Engine, now_ms: u64) {
        if let Some(b) = &mut self.backup {
            if let Some(s) = &b.side {
                // Heard: entries arrived (another backup's request is an
                // empty message and does not count).
                let c = engine.sync_counters();
                let heard = c.entries_created + c.entries_updated > 0;
                if !heard && b.asked < RESYNC_TRIES && now_ms >= b.ask_at {
                    let mut req = lvs_core::sync::RESYNC_REQUEST;
                    req[1] = b.cfg.syncid;
                    let _ = s.send(&req);
                    b.asked += 1;
                    b.ask_at = now_ms + 1000;
                }
            }
        }
        let Some(m) = &self.master else { return };
        if engine.full_sync_running() {
            engine.pump_full_sync(now_ms, FULL_COPY_STEP);
        }
        while let Some(out) = engine.pop_sync_message(now_ms) {
            let s = &m.sockets[usize::from(out.port) % m.sockets.len()];
            match s.send(&out.bytes) {
                Ok(_) => {}
                // No room in the socket now: the message waits for the
                // next step, first in line.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    engine.unpop_sync_message(out);
                    break;
                }
                Err(_) => self.send_errors += 1,
            }
            engine.recycle_sync_buffer(out.bytes);
        }
    }
}

fn role_name(r: SyncRole) -> &'static str {
    match r {
        SyncRole::Master => "master",
        SyncRole::Backup => "backup",
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn iface_mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

fn set_int(s: &Socket, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a live i32 and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// IP_MULTICAST_IF by interface index (`struct ip_mreqn`): the kernel
/// then sends from that interface's primary address.
fn multicast_if_v4(s: &Socket, ifindex: u32) -> io::Result<()> {
    let m = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: setsockopt with a live ip_mreqn and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&m as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn master_socket(to: SocketAddr, ifindex: u32, ttl: u8, sock_size: i64) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))?;
    if sock_size > 0 {
        s.set_send_buffer_size(sock_size as usize)?;
    }
    match to {
        SocketAddr::V4(_) => {
            multicast_if_v4(&s, ifindex)?;
            s.set_multicast_ttl_v4(u32::from(ttl))?;
            s.set_multicast_loop_v4(false)?;
            // Never DF: a message over the path MTU is fragmented (§1).
            set_int(
                &s,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )?;
        }
        SocketAddr::V6(_) => {
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_hops_v6(u32::from(ttl))?;
            s.set_multicast_loop_v6(false)?;
            set_int(
                &s,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )?;
        }
    }
    s.connect(&SockAddr::from(to))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn backup_socket(at: SocketAddr, ifname: &str, ifindex: u32, sock_size: i64) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if sock_size > 0 {
        s.set_recv_buffer_size(sock_size as usize)?;
    }
    s.bind_device(Some(ifname.as_bytes()))?;
    s.bind(&SockAddr::from(at))?;
    match at {
        SocketAddr::V4(a) => {
            s.join_multicast_v4_n(a.ip(), &socket2::InterfaceIndexOrAddress::Index(ifindex))?
        }
        SocketAddr::V6(a) => s.join_multicast_v6(a.ip(), ifindex)?,
    }
    s.set_nonblocking(true)?;
    Ok(s)
}
