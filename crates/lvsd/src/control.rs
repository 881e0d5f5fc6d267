//! The control socket: a thread accepts `lvsadm` connections, decodes one
//! request each, and hands it to the packet loop through a channel (the
//! engine has one owner). The loop answers between batches; the thread
//! writes the answer back.

use crate::desired::{apply_request, Check, CheckStatus, Desired};
use lvs_control::{ErrorKind, Request, Response};
use lvs_core::Engine;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A request waiting for the packet loop, with the way back.
pub struct Pending {
    pub request: Request,
    pub reply: SyncSender<Response>,
}

/// The running control server.
pub struct ControlServer {
    path: PathBuf,
    pub requests: Receiver<Pending>,
    wake: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Longest request line accepted.
const MAX_REQUEST: u64 = 1 << 20;

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
    /// socket, refusing if another daemon answers there) and starts the thread.
    pub fn start(path: &Path) -> io::Result<ControlServer> {
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
        // Root only: the socket changes the balancer's configuration.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
        let thread = std::thread::Builder::new()
            .name("lvsd-control".into())
            .spawn(move || accept_loop(listener, tx, wake_fd, stop2))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            requests: rx,
            wake,
            stop,
            thread: Some(thread),
        })
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
        &self,
        desired: &mut Desired<Check>,
        engine: &mut Engine,
        now_ms: u64,
        io: &[(&str, u64)],
        status: &dyn Fn(&Check) -> CheckStatus,
    ) -> bool {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes from our eventfd into a live buffer.
        unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        let mut changed = false;
        while let Ok(p) = self.requests.try_recv() {
            let (resp, ch) = apply_request(desired, engine, &p.request, now_ms, io, status);
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

fn accept_loop(listener: UnixListener, tx: Sender<Pending>, wake_fd: RawFd, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handle(stream, &tx, wake_fd) {
                    eprintln!("lvsd: control connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                eprintln!("lvsd: control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(stream: UnixStream, tx: &Sender<Pending>, wake_fd: RawFd) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    if line.trim().is_empty() {
        // A connect-and-close probe (e.g. waiting for the socket to appear).
        return Ok(());
    }
    let resp = match lvs_control::read_request(&line) {
        Err(e) => Response::Error {
            kind: ErrorKind::BadRequest,
            detail: format!("cannot decode request: {e}"),
        },
        Ok(request) => {
            let (reply, back) = mpsc::sync_channel(1);
            if tx.send(Pending { request, reply }).is_err() {
                return Ok(());
            }
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd.
            unsafe { libc::write(wake_fd, (&one as *const u64).cast(), 8) };
            match back.recv_timeout(Duration::from_secs(5)) {
                Ok(r) => r,
                Err(_) => Response::Error {
                    kind: ErrorKind::Invalid,
                    detail: "lvsd did not answer in time".into(),
                },
            }
        }
    };
    (&stream).write_all(lvs_control::encode_response(&resp).as_bytes())
}
