//! Low-level namespace helpers: entering namespaces, running bounded
//! commands, killing a namespace's processes and deleting namespaces.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::LabError;

/// Directory where `ip netns` keeps its namespace bind mounts.
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// Default bound for one `ip` invocation.
pub(crate) const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Locks a mutex, ignoring poisoning (the lab's state stays usable for
/// cleanup even after a panic elsewhere).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Extracts a printable message from a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Rejects names that are not plain `ip netns` names.
pub(crate) fn validate_ns_name(ns: &str) -> Result<(), LabError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns != "."
        && ns != ".."
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidArgument(format!(
            "bad network namespace name {ns:?}"
        )))
    }
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(ns)
}

/// Whether a named network namespace (`/run/netns/NAME`) exists.
pub fn netns_exists(ns: &str) -> bool {
    validate_ns_name(ns).is_ok() && netns_path(ns).exists()
}

/// Names of all named network namespaces (the entries of `/run/netns`,
/// i.e. what `ip netns list` shows), sorted.
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let rd = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("reading {NETNS_RUN_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| LabError::io(format!("reading {NETNS_RUN_DIR}"), e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) fn open_netns(ns: &str) -> Result<File, LabError> {
    validate_ns_name(ns)?;
    let path = netns_path(ns);
    File::open(&path).map_err(|e| LabError::io(format!("opening {}", path.display()), e))
}

fn setns_net(fd: &File, what: &str) -> Result<(), LabError> {
    // SAFETY: `fd` is a valid open file descriptor owned by `fd` for the whole
    // call; setns only changes the calling thread's network namespace
    // (allowed for CLONE_NEWNET in multi-threaded processes) and touches no
    // memory of ours.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(LabError::io(
            format!("setns(CLONE_NEWNET) into {what}"),
            std::io::Error::last_os_error(),
        ))
    }
}

/// Moves the *calling thread* into network namespace `ns` for good.
///
/// Meant for threads that live in one namespace until they exit (the
/// identity servers). Sockets created afterwards belong to `ns`.
pub fn enter_netns(ns: &str) -> Result<(), LabError> {
    let target = open_netns(ns)?;
    setns_net(&target, ns)
}

/// Runs `f` on the calling thread while it is inside network namespace `ns`,
/// then moves the thread back to its original namespace (also if `f`
/// panics). Sockets created by `f` stay in `ns`.
///
/// If the thread cannot be moved back (which would leave it in the wrong
/// namespace) the process is aborted rather than continuing silently.
pub fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> Result<T, LabError> {
    struct Restore(File);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Err(e) = setns_net(&self.0, "the original namespace") {
                eprintln!("lvs-lab: FATAL: cannot return thread to its namespace: {e}");
                std::process::abort();
            }
        }
    }
    let target = open_netns(ns)?;
    let original = File::open("/proc/thread-self/ns/net")
        .map_err(|e| LabError::io("opening /proc/thread-self/ns/net", e))?;
    setns_net(&target, ns)?;
    let _restore = Restore(original);
    Ok(f())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut r) = r {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    } else {
        let _ = tx.send(Vec::new());
    }
    rx
}

/// Runs `cmd` to completion with captured stdout/stderr (stdin is null),
/// killing it if it is still running after `timeout`.
///
/// Returns the output whatever the exit status; a timeout is an error.
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, LabError> {
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("spawning `{desc}`"), e))?;
    let out_rx = reader(child.stdout.take());
    let err_rx = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::io(format!("waiting for `{desc}`"), e));
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Timeout(format!(
                "`{desc}` still running after {timeout:?}; killed"
            )));
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    // The pipes close when the child exits (unless it left a grandchild
    // holding them); never wait for them for long.
    let grace = Duration::from_secs(1);
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs a command (bounded) and turns a non-zero exit into an error.
/// Returns stdout as a string.
pub(crate) fn run_checked(cmd: Command, timeout: Duration) -> Result<String, LabError> {
    let desc = describe(&cmd);
    let out = output_with_timeout(cmd, timeout)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: desc,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `ip ARGS...` (bounded) and checks its exit status.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_checked(cmd, IP_TIMEOUT)
}

/// PIDs of processes in namespace `ns` (`ip netns pids NS`), never
/// including this process.
pub(crate) fn netns_pids(ns: &str) -> Result<Vec<i32>, LabError> {
    let me = std::process::id() as i32;
    let out = ip(&["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|&p| p != me && p > 1)
        .collect())
}

pub(crate) fn send_signal(pid: i32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) takes plain integers and has no memory-safety
        // requirements; pid > 0 here, so it never targets a process group.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Stops every process in `ns`: SIGTERM, wait up to `grace` for them to go,
/// then SIGKILL and wait again (bounded). Returns the PIDs still present.
pub(crate) fn kill_netns_processes(ns: &str, grace: Duration) -> Result<Vec<i32>, LabError> {
    let mut pids = netns_pids(ns)?;
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        if pids.is_empty() {
            break;
        }
        for &p in &pids {
            send_signal(p, sig);
        }
        let deadline = Instant::now() + grace;
        loop {
            pids = netns_pids(ns)?;
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(pids)
}

/// Kills the processes of `ns` and deletes it (`ip netns del`), retrying the
/// delete a few times. A namespace that does not exist is not an error.
pub(crate) fn remove_netns(ns: &str) -> Result<(), LabError> {
    validate_ns_name(ns)?;
    if !netns_exists(ns) {
        return Ok(());
    }
    let leftover = kill_netns_processes(ns, Duration::from_secs(2))?;
    if !leftover.is_empty() {
        eprintln!("lvs-lab: processes {leftover:?} in {ns} survived SIGKILL; deleting anyway");
    }
    let mut last = None;
    for _ in 0..3 {
        match ip(&["netns", "del", ns]) {
            Ok(_) => return Ok(()),
            Err(e) => {
                if !netns_exists(ns) {
                    return Ok(());
                }
                last = Some(e);
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Err(last.unwrap_or_else(|| LabError::Timeout(format!("deleting {ns}"))))
}

/// Joins `handles`, waiting at most until `deadline`; threads that have
/// not finished by then are detached (and reported). Returns whether all
/// threads were joined.
pub(crate) fn join_bounded(handles: Vec<JoinHandle<()>>, deadline: Instant, what: &str) -> bool {
    let mut pending = handles;
    loop {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for h in done {
            if let Err(p) = h.join() {
                eprintln!("lvs-lab: {what} thread panicked: {}", panic_message(&*p));
            }
        }
        pending = rest;
        if pending.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "lvs-lab: {} {what} thread(s) did not stop in time; detaching",
                pending.len()
            );
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
