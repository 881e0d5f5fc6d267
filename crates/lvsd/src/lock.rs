//! One director per network namespace. Two lvsd in one namespace would
//! both forward every SYN, and the one that stops would remove the other's
//! kernel guard. The lock is an abstract Unix socket: its name lives in
//! the network namespace, and the kernel releases it when the process
//! ends however it ends, so a crashed lvsd never leaves a stale lock.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// The abstract socket name (per network namespace).
const NAME: &[u8] = b"lvsd/director";

/// Held while lvsd runs.
#[derive(Debug)]
pub struct DirectorLock {
    _listener: UnixListener,
}

/// Takes the namespace's director lock, or says who holds it.
pub fn acquire() -> Result<DirectorLock, String> {
    let addr = SocketAddr::from_abstract_name(NAME).map_err(|e| e.to_string())?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(DirectorLock { _listener: l }),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let who = UnixStream::connect_addr(&addr)
                .ok()
                .and_then(|s| peer_pid(&s))
                .map_or(String::new(), |pid| format!(" (pid {pid})"));
            Err(format!(
                "another lvsd{who} is already running in this network namespace; one director per namespace: stop it first"
            ))
        }
        Err(e) => Err(format!("cannot take the director lock: {e}")),
    }
}

/// The pid of the process at the other end of `s` (SO_PEERCRED).
fn peer_pid(s: &UnixStream) -> Option<i32> {
    // SAFETY: ucred is plain old data; getsockopt writes at most `len`
    // bytes into it and the result is checked.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let r = libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        (r == 0 && cred.pid > 0).then_some(cred.pid)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_in_the_same_namespace_is_refused_with_the_holders_pid() {
        let first = super::acquire().expect("the first lock");
        let second = super::acquire().unwrap_err();
        assert!(
            second.contains("already running in this network namespace"),
            "{second}"
        );
        assert!(
            second.contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        drop(first);
        super::acquire().expect("free again once dropped");
    }
}
