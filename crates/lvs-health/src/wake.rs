//! The eventfd that tells the daemon's poll loop that transitions are waiting.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd used as a level-triggered "something is waiting" flag.
#[derive(Debug)]
pub(crate) struct WakeFd(File);

impl WakeFd {
    pub(crate) fn new() -> io::Result<WakeFd> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is valid and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd(File::from(owned)))
    }

    /// Makes the descriptor readable.
    pub(crate) fn raise(&self) {
        // Fails only if the counter would overflow (it is then readable anyway).
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Makes the descriptor not readable (until the next `raise`).
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 8];
        // EAGAIN when already clear: nothing to do.
        let _ = (&self.0).read(&mut buf);
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
