//! The control socket: a thread accepts `lvsadm` connections and gives
//! each its own thread (at most `MAX_CLIENTS` at once), which reads one
//! request within `READ_DEADLINE`, hands it to the packet loop through a
//! channel (the engine has one owner) and writes the answer back. A slow
//! or idle client holds only its own thread. A request the loop has not
//! taken within `APPLY_DEADLINE` is withdrawn and answered "not applied";
//! once taken it is applied and the answer awaited: a change either
//! applies and says so, or does not apply.

use crate::desired::{apply_request, Check, CheckStatus, Desired};
use crate::reload::{FileState, Plan};
use lvs_control::{ErrorKind, Request, Response};
use lvs_core::Engine;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the packet loop is asked to do.
pub enum Job {
    Request(Request),
    /// Apply a configuration file, read, checked and compared with the
    /// running one already.
    Reload(Box<Plan<Check>>),
}

/// A job waiting for the packet loop, with the way back.
pub struct Pending {
    pub job: Job,
    pub reply: SyncSender<Response>,
    /// `WAITING`, then `TAKEN` by the loop or `WITHDRAWN` by the client's
    /// thread, whichever comes first.
    state: Arc<AtomicU8>,
}

const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// Control connections served at once; more are refused with an error.
pub const MAX_CLIENTS: usize = 256;
/// Time a client has to send its whole request.
const READ_DEADLINE: Duration = Duration::from_secs(3);
/// Time the packet loop has to take a request before it is withdrawn
/// (below lvsadm's own 5 s, so that it hears the answer).
const APPLY_DEADLINE: Duration = Duration::from_secs(4);

/// A connection listing sent in chunks, one per step of the packet loop.
struct Stream {
    reply: SyncSender<Response>,
    /// Table slot the next chunk starts at.
    next: usize,
    /// A chunk the client's thread was not ready for yet.
    pending: Option<Response>,
    /// The last chunk is made (pending or sent).
    last: bool,
}

/// A service listing built in chunks, one per step of the packet loop,
/// and sent whole: the services present when it was asked for, each as
/// it is when its chunk is made.
struct Listing {
    reply: SyncSender<Response>,
    keys: Vec<lvs_core::ServiceKey>,
    next: usize,
    done: Vec<lvs_control::ServiceInfo>,
}

/// Services listed per step of the packet loop (about 2 µs each).
const SERVICES_PER_STEP: usize = 256;

/// The running control server.
pub struct ControlServer {
    served: Arc<Served>,
    streams: Vec<Stream>,
    listings: Vec<Listing>,
    path: PathBuf,
    pub requests: Receiver<Pending>,
    /// Where reloads read from: the `--config` file.
    config: Option<PathBuf>,
    tx: Sender<Pending>,
    reload_lock: LastFile,
    wake: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Longest request line accepted (a saved table of 100,000 real servers
/// restored with `lvsadm -R` is one request of about 25 MiB).
const MAX_REQUEST: u64 = 64 << 20;

/// Fails if another daemon answers on `path` or if something other than a
/// (stale) socket is in the way. Called before lvsd touches any interface.
pub fn check_free(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; choose another --control PATH",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another lvsd answers on {}; stop it or use --control PATH",
                path.display()
            ),
        ));
    }
    Ok(())
}

impl ControlServer {
    /// Binds the socket at `path` (creating its directory, replacing a stale
    /// socket, refusing if another daemon answers there) and starts the
    /// thread. Reloads re-read `config`. The socket is root's only (mode
    /// 0600), or root's and group `group`'s (0660).
    pub fn start(
        path: &Path,
        config: Option<PathBuf>,
        group: Option<u32>,
        file: Arc<FileState<Check>>,
    ) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        check_free(path)?;
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        // Root only (or a chosen group): the socket changes the balancer's
        // configuration.
        match group {
            None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
            Some(gid) => {
                std::os::unix::fs::chown(path, None, Some(gid))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            }
        }
        listener.set_nonblocking(true)?;
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor owned by nobody else.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let wake_fd = wake.as_raw_fd();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let reload_lock = Arc::new(std::sync::Mutex::new(file));
        let served = Arc::new(Served::default());
        let ctx = Context {
            served: served.clone(),
            tx: tx.clone(),
            wake_fd,
            config: config.clone(),
            reload_lock: reload_lock.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lvsd-control".into())
            .spawn(move || accept_loop(listener, ctx, stop2))?;
        Ok(ControlServer {
            served,
            streams: Vec::new(),
            listings: Vec::new(),
            path: path.to_path_buf(),
            requests: rx,
            config,
            tx,
            reload_lock,
            wake,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether listings are being made or sent (the packet loop then
    /// does not sleep between steps).
    pub fn streaming(&self) -> bool {
        !self.streams.is_empty() || !self.listings.is_empty()
    }

    /// Whether connection listings (by table slot) are being sent.
    pub fn listing_connections(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Sends the next chunk of every connection listing (a few thousand
    /// entries each: a step never holds the packet path for long). A
    /// client that is not ready keeps its chunk for the next step; one
    /// that went away ends its listing.
    pub fn pump(&mut self, engine: &Engine, now_ms: u64) {
        self.listings.retain_mut(|l| {
            let end = (l.next + SERVICES_PER_STEP).min(l.keys.len());
            crate::engine_ops::service_infos(engine, &l.keys[l.next..end], &mut l.done);
            l.next = end;
            if end < l.keys.len() {
                return true;
            }
            let _ = l.reply.send(Response::Services {
                conn_tab_size: lvs_core::engine::CONN_TAB_SIZE,
                services: std::mem::take(&mut l.done),
            });
            false
        });
        self.streams.retain_mut(|s| {
            let resp = match s.pending.take() {
                Some(r) => r,
                None => {
                    let (r, next) = crate::engine_ops::connections_chunk(engine, s.next, now_ms);
                    match next {
                        Some(n) => s.next = n,
                        None => s.last = true,
                    }
                    r
                }
            };
            match s.reply.try_send(resp) {
                Ok(()) => !s.last,
                Err(mpsc::TrySendError::Full(r)) => {
                    s.pending = Some(r);
                    true
                }
                Err(mpsc::TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// SIGHUP: reloads the configuration as `lvsadm --reload` does, from a
    /// thread of its own (reading and checking the file never holds up the
    /// packet loop); the outcome is logged.
    pub fn reload_in_background(&self) {
        let ctx = self.context();
        let spawned = std::thread::Builder::new()
            .name("lvsd-reload".into())
            .spawn(move || {
                if let Response::Error { detail, .. } = reload(&ctx) {
                    tracing::warn!("SIGHUP: {detail}");
                }
            });
        if let Err(e) = spawned {
            tracing::error!("SIGHUP: cannot start the reload: {e}");
        }
    }

    fn context(&self) -> Context {
        Context {
            served: self.served.clone(),
            tx: self.tx.clone(),
            wake_fd: self.wake.as_raw_fd(),
            config: self.config.clone(),
            reload_lock: self.reload_lock.clone(),
        }
    }

    /// A handle for lvsd's own threads to ask what lvsadm asks.
    pub fn client(&self) -> Client {
        Client(self.context())
    }

    /// Descriptor that becomes readable when requests are waiting.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Answers every waiting request: changes to services and real servers
    /// through the desired state, the rest against `engine` (`io`: the
    /// daemon's own counters, for `lvsadm --counters`). Returns true if
    /// the configuration changed.
    pub fn serve(
        &mut self,
        desired: &mut Desired<Check>,
        engine: &mut Engine,
        now_ms: u64,
        io: &[(&str, u64)],
        status: &dyn Fn(&Check) -> CheckStatus,
        sync: &mut crate::sync::SyncDaemons,
    ) -> bool {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes from our eventfd into a live buffer.
        unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        let mut changed = false;
        while let Ok(p) = self.requests.try_recv() {
            if p.state
                .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The client gave up: it was told "not applied".
                continue;
            }
            let (resp, ch) = match p.job {
                // Listed in chunks by `pump`, between packet batches.
                Job::Request(Request::ListConnections) => {
                    self.streams.push(Stream {
                        reply: p.reply,
                        next: 0,
                        pending: None,
                        last: false,
                    });
                    continue;
                }
                // Built in chunks by `pump`, between packet batches.
                Job::Request(Request::ListServices) => {
                    let keys: Vec<_> = engine.service_keys().collect();
                    self.listings.push(Listing {
                        reply: p.reply,
                        done: Vec::with_capacity(keys.len()),
                        keys,
                        next: 0,
                    });
                    continue;
                }
                Job::Request(
                    req @ (Request::StartDaemon(_) | Request::StopDaemon(_) | Request::GetDaemons),
                ) => (sync.request(&req, engine, now_ms), false),
                Job::Request(req) => apply_request(desired, engine, &req, now_ms, io, status),
                Job::Reload(plan) => {
                    // Logged by the reload's own thread.
                    let r = desired.apply_plan(engine, *plan);
                    let resp = Response::Reloaded {
                        changes: r.changes,
                        warnings: r.warnings,
                        notes: r.notes,
                    };
                    (resp, true)
                }
            };
            changed |= ch;
            let _ = p.reply.send(resp);
        }
        changed
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The file applied last, behind the lock reloads take.
type LastFile = Arc<std::sync::Mutex<Arc<FileState<Check>>>>;

/// Requests and reloads served, for the metrics.
#[derive(Default)]
pub struct Served {
    pub requests: AtomicU64,
    pub reloads_applied: AtomicU64,
    pub reloads_refused: AtomicU64,
}

/// A way for lvsd's own threads (the metrics endpoint) to ask the packet
/// loop what lvsadm asks, under the same deadlines.
#[derive(Clone)]
pub struct Client(Context);

impl Client {
    /// The loop's answer to `req` (not `ListConnections`, which streams).
    pub fn ask(&self, req: Request) -> Response {
        submit(&self.0, Job::Request(req))
    }

    /// What the control socket has served so far.
    pub fn served(&self) -> &Served {
        &self.0.served
    }
}

/// What a client's thread needs to reach the packet loop.
#[derive(Clone)]
struct Context {
    served: Arc<Served>,
    tx: Sender<Pending>,
    wake_fd: RawFd,
    config: Option<PathBuf>,
    /// The file applied last, locked by one reload at a time from reading
    /// the new file to its answer (so that an older version never lands
    /// after a newer one).
    reload_lock: LastFile,
}

fn accept_loop(listener: UnixListener, ctx: Context, stop: Arc<AtomicBool>) {
    let clients = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if clients.load(Ordering::Acquire) >= MAX_CLIENTS {
                    refuse(stream);
                    continue;
                }
                clients.fetch_add(1, Ordering::AcqRel);
                let (ctx, clients2) = (ctx.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("lvsd-client".into())
                    .spawn(move || {
                        match handle(stream, &ctx) {
                            // A client that sent nothing in time is closed
                            // quietly (one log line each would let it fill
                            // the log).
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) => {}
                            Err(e) => tracing::warn!("control connection: {e}"),
                            Ok(()) => {}
                        }
                        clients2.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    tracing::error!("control connection: cannot start a thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Wait for the next client (or 50 ms, to see `stop`).
                let mut pfd = libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for a descriptor we own.
                unsafe { libc::poll(&mut pfd, 1, 50) };
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Too many clients: says so (without waiting on the client) and closes.
fn refuse(stream: UnixStream) {
    let resp = Response::Error {
        kind: ErrorKind::Invalid,
        detail: format!("too many control connections (at most {MAX_CLIENTS}); try again"),
    };
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(lvs_control::encode_response(&resp).as_bytes());
}

/// Reads one request line, all of it within `READ_DEADLINE` (a client that
/// trickles bytes is cut off like one that sends nothing).
fn read_line_by(stream: &UnixStream, deadline: Instant) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not received in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match io::Read::read(&mut &*stream, &mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let part = chunk.get(..n).unwrap_or(&[]);
        let end = part.iter().position(|&b| b == b'\n');
        buf.extend_from_slice(part.get(..end.unwrap_or(n)).unwrap_or(&[]));
        if buf.len() as u64 > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
        if end.is_some() || n == 0 {
            return String::from_utf8(buf)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request not UTF-8"));
        }
    }
}

fn handle(stream: UnixStream, ctx: &Context) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let line = read_line_by(&stream, Instant::now() + READ_DEADLINE)?;
    if line.trim().is_empty() {
        // A connect-and-close probe (e.g. waiting for the socket to appear).
        return Ok(());
    }
    ctx.served.requests.fetch_add(1, Ordering::Relaxed);
    let resp = match lvs_control::read_request(&line) {
        Err(e) => Response::Error {
            kind: ErrorKind::BadRequest,
            detail: format!("cannot decode request: {e}"),
        },
        Ok(Request::Reload) => {
            let r = reload(ctx);
            if let Response::Error { detail, .. } = &r {
                tracing::warn!("lvsadm --reload: {detail}");
            }
            r
        }
        Ok(request) => {
            let (first, back) = submit_rx(ctx, Job::Request(request));
            let mut resp = first;
            // A long listing comes in parts until the last one.
            while let (Response::ConnectionsPart(_), Some(back)) = (&resp, &back) {
                (&stream).write_all(lvs_control::encode_response(&resp).as_bytes())?;
                resp = back.recv().unwrap_or(Response::Error {
                    kind: ErrorKind::Invalid,
                    detail: "lvsd stopped while listing".into(),
                });
            }
            resp
        }
    };
    (&stream).write_all(lvs_control::encode_response(&resp).as_bytes())
}

/// Reads and checks the configuration file here (off the packet loop);
/// a file with errors is refused whole, and nothing changes.
fn reload(ctx: &Context) -> Response {
    let r = reload_file(ctx);
    if matches!(r, Response::Error { .. }) {
        ctx.served.reloads_refused.fetch_add(1, Ordering::Relaxed);
    }
    r
}

fn reload_file(ctx: &Context) -> Response {
    let mut last = ctx
        .reload_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(path) = &ctx.config else {
        return Response::Error {
            kind: ErrorKind::Invalid,
            detail: "lvsd was started without --config: there is no file to reload".into(),
        };
    };
    let file = match crate::setup::load_file(path) {
        Ok(file) => file,
        Err(e) => {
            return Response::Error {
                kind: ErrorKind::Invalid,
                detail: format!("reload refused, the running configuration stays: {e}"),
            }
        }
    };
    let plan = crate::reload::plan(last.clone(), file);
    let applied = plan.file.clone();
    let resp = submit(ctx, Job::Reload(Box::new(plan)));
    if let Response::Reloaded {
        changes,
        warnings,
        notes,
    } = &resp
    {
        ctx.served.reloads_applied.fetch_add(1, Ordering::Relaxed);
        *last = applied;
        tracing::info!(
            changes = changes.len(),
            warnings = warnings.len(),
            "configuration reloaded: {} change(s), {} warning(s)",
            changes.len(),
            warnings.len()
        );
        for c in changes {
            tracing::info!("  {c}");
        }
        for w in warnings {
            tracing::warn!("reload: {w}");
        }
        for n in notes {
            tracing::info!("{n}");
        }
    }
    resp
}

/// Hands `job` to the packet loop and waits for its answer (see the
/// module's deadline rules).
fn submit(ctx: &Context, job: Job) -> Response {
    submit_rx(ctx, job).0
}

/// `submit`, keeping the way back for answers in parts.
fn submit_rx(ctx: &Context, job: Job) -> (Response, Option<Receiver<Response>>) {
    let (reply, back) = mpsc::sync_channel(1);
    let state = Arc::new(AtomicU8::new(WAITING));
    let pending = Pending {
        job,
        reply,
        state: state.clone(),
    };
    if ctx.tx.send(pending).is_err() {
        let e = Response::Error {
            kind: ErrorKind::Invalid,
            detail: "lvsd is stopping".into(),
        };
        return (e, None);
    }
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a live u64 to our eventfd.
    unsafe { libc::write(ctx.wake_fd, (&one as *const u64).cast(), 8) };
    let first = match back.recv_timeout(APPLY_DEADLINE) {
        Ok(r) => r,
        Err(_) => {
            let withdrawn = state
                .compare_exchange(WAITING, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if withdrawn {
                Response::Error {
                    kind: ErrorKind::Invalid,
                    detail: "lvsd did not take the request in time; nothing was applied".into(),
                }
            } else {
                // Taken: it is being applied; its answer follows.
                back.recv().unwrap_or(Response::Error {
                    kind: ErrorKind::Invalid,
                    detail: "lvsd stopped while applying the request".into(),
                })
            }
        }
    };
    (first, Some(back))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_control::{Protocol, ServiceKey, ServiceSpec};
    use std::io::Read;

    fn server(tag: &str) -> (ControlServer, PathBuf) {
        let path = std::env::temp_dir().join(format!("lvsd-ctl-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (
            ControlServer::start(&path, None, None, Default::default()).expect("control socket"),
            path,
        )
    }

    fn add_service() -> Request {
        Request::AddService(ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                addr: "198.18.0.100".parse().unwrap(),
                port: 80,
            },
            scheduler: "rr".into(),
            sched_flags: 0,
            persistent: None,
            netmask: u32::MAX,
            one_packet: false,
        })
    }

    /// Sends `req` on a fresh connection; returns the raw answer.
    fn ask(path: &Path, req: &Request) -> String {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(lvs_control::encode_request(req).as_bytes())
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Runs `serve` until `done` is set (at most 20 s).
    fn serve_until(
        ctl: &mut ControlServer,
        engine: &mut Engine,
        desired: &mut Desired<Check>,
        done: &AtomicBool,
    ) {
        let start = Instant::now();
        while !done.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(20) {
            ctl.serve(
                desired,
                engine,
                0,
                &[],
                &|_| CheckStatus::default(),
                &mut Default::default(),
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn idle_and_trickling_clients_do_not_block_the_others() {
        let (mut ctl, path) = server("idle");
        // 200 clients that connect and send nothing, one that trickles.
        let idle: Vec<UnixStream> = (0..200)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"{").unwrap();
        let mut engine = Engine::new(1);
        let mut desired = Desired::default();
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (path.clone(), done.clone());
        let client = std::thread::spawn(move || {
            let mut times = Vec::new();
            let mut answers = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                answers.push(ask(&p, &Request::GetTimeouts));
                times.push(t.elapsed());
            }
            d.store(true, Ordering::Release);
            (times, answers)
        });
        serve_until(&mut ctl, &mut engine, &mut desired, &done);
        let (mut times, answers) = client.join().unwrap();
        for a in &answers {
            let r = lvs_control::decode_response(a.trim_end()).expect("an answer");
            assert!(matches!(r, Response::Timeouts(_)), "{r:?}");
        }
        times.sort();
        // Far below the 3 s a stuck client could hold a serial server.
        assert!(times[10] < Duration::from_secs(1), "median {:?}", times[10]);
        eprintln!(
            "control latency with 200 idle clients: median {:?}, max {:?}",
            times[10], times[19]
        );
        // The trickling client is cut off at its deadline.
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let t = Instant::now();
        let _ = slow.read_to_end(&mut rest);
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(idle);
        drop(ctl);
        assert!(!path.exists());
    }

    #[test]
    fn without_a_configuration_file_a_reload_is_refused() {
        let (ctl, path) = server("noconf");
        let answer = ask(&path, &Request::Reload);
        match lvs_control::decode_response(answer.trim_end()) {
            Ok(Response::Error { detail, .. }) => {
                assert!(detail.contains("without --config"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        // Nothing reached the packet loop.
        assert!(ctl.requests.try_recv().is_err());
    }

    #[test]
    fn a_request_not_taken_in_time_is_not_applied() {
        let (mut ctl, path) = server("late");
        let p = path.clone();
        let client = std::thread::spawn(move || ask(&p, &add_service()));
        // The loop is busy past the deadline...
        let answer = client.join().unwrap();
        let r = lvs_control::decode_response(answer.trim_end()).expect("an answer");
        match r {
            Response::Error { detail, .. } => assert!(detail.contains("nothing was applied")),
            other => panic!("{other:?}"),
        }
        // ...and when it comes back, the withdrawn request is skipped.
        let mut engine = Engine::new(1);
        let mut desired = Desired::default();
        let changed = ctl.serve(
            &mut desired,
            &mut engine,
            0,
            &[],
            &|_| CheckStatus::default(),
            &mut Default::default(),
        );
        assert!(!changed);
        assert_eq!(engine.services().count(), 0);
        // A request taken in time is applied and says so.
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (path.clone(), done.clone());
        let client = std::thread::spawn(move || {
            let a = ask(&p, &add_service());
            d.store(true, Ordering::Release);
            a
        });
        serve_until(&mut ctl, &mut engine, &mut desired, &done);
        let a = client.join().unwrap();
        assert!(matches!(
            lvs_control::decode_response(a.trim_end()),
            Ok(Response::Ok)
        ));
        assert_eq!(engine.services().count(), 1);
    }

    #[test]
    fn a_service_listing_is_built_in_steps_of_the_loop() {
        let (mut ctl, path) = server("list");
        let mut engine = Engine::new(1);
        let n = SERVICES_PER_STEP * 2 + 10;
        let key = |i: usize| lvs_core::ServiceKey {
            protocol: 6,
            addr: "198.18.0.100".parse().unwrap(),
            port: 1000 + i as u16,
        };
        for i in 0..n {
            engine.add_service(key(i), "rr", 0).unwrap();
        }
        let p = path.clone();
        let client = std::thread::spawn(move || ask(&p, &Request::ListServices));
        let mut desired = Desired::default();
        let status = |_: &Check| CheckStatus::default();
        let start = Instant::now();
        while ctl.listings.is_empty() && start.elapsed() < Duration::from_secs(10) {
            ctl.serve(
                &mut desired,
                &mut engine,
                0,
                &[],
                &status,
                &mut Default::default(),
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Taken, not answered yet: one step lists SERVICES_PER_STEP.
        assert!(ctl.streaming());
        ctl.pump(&engine, 0);
        assert!(ctl.streaming());
        // A service deleted between two steps is left out; one added is
        // not in this listing (it was asked for before).
        engine.delete_service(key(n - 1)).unwrap();
        engine.add_service(key(n), "rr", 0).unwrap();
        while ctl.streaming() {
            ctl.pump(&engine, 0);
        }
        let a = client.join().unwrap();
        let Ok(Response::Services { services, .. }) = lvs_control::decode_response(a.trim_end())
        else {
            panic!("{a}");
        };
        let ports: Vec<u16> = services.iter().map(|s| s.spec.key.port).collect();
        let want: Vec<u16> = (0..n - 1).map(|i| 1000 + i as u16).collect();
        assert_eq!(ports, want);
    }
}
