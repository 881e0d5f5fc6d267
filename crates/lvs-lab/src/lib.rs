//! Network-namespace lab for the end-to-end tests and `lvsd demo`.
//!
//! [`Lab::nat`] builds the project's NAT topology out of network namespaces:
//!
//! ```text
//!  front net 198.18.0.0/24                      back net 198.18.1.0/24
//!  [client] c0 198.18.0.2/24 ---- d0 198.18.0.1/24 [director] br1 198.18.1.1/24 --+-- b0 198.18.1.11/24 [rs1]
//!                                                                                  +-- b0 198.18.1.12/24 [rs2] ...
//! ```
//!
//! The VIP ([`VIP`], 198.18.0.100) is not configured on any kernel interface:
//! the userspace balancer answers for it. The director keeps
//! `net.ipv4.ip_forward=0` so the kernel never forwards on its own.
//!
//! Safety rules the lab enforces:
//! - only addresses from 198.18.0.0/15 are used;
//! - nothing is created in the root namespace (veth ends are created directly
//!   inside their namespaces) and no namespace gets a default route;
//! - namespace names are `<prefix><pid>-<role>`, unique per process;
//! - dropping the [`Lab`] (also while unwinding from a panic) stops every
//!   thread and process the lab started and deletes every namespace;
//! - every wait is bounded in time.
//!
//! All of this needs root (`CAP_SYS_ADMIN` + `CAP_NET_ADMIN`); without it
//! [`Lab::nat`] returns [`LabError::NotRoot`].

#![warn(missing_docs)]

mod client;
mod identity;
mod lab;
mod netns;

use std::net::Ipv4Addr;

pub use client::{http_get, http_get_path, udp_exchange};
pub use identity::{identity_body, IdentityServer};
pub use lab::{ha_server_ip, Lab, HA_PEER_IP};
pub use netns::{enter_netns, in_netns, list_netns, netns_exists, output_with_timeout};

/// Client address on the front net (`c0` in the client namespace).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Director address on the front net (`d0` in the director namespace).
pub const DIRECTOR_FRONT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Director address on the back net (bridge `br1` in the director namespace).
pub const DIRECTOR_BACK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Virtual service address. Not configured on any kernel interface; on-link
/// for the client (inside [`FRONT_NET`]).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// Front network (client side), prefix length [`NET_PREFIX_LEN`].
pub const FRONT_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Back network (real-server side), prefix length [`NET_PREFIX_LEN`].
pub const BACK_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);
/// Peer link between the director and a second director ([`Lab::add_peer`]):
/// `s0` in both namespaces, the director .1, the peer .2.
pub const PEER_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 0);
/// The director's address on the peer link.
pub const DIRECTOR_PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The peer's address on the peer link.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// Interface name of the peer link, in both namespaces.
pub const PEER_IF: &str = "s0";
/// Prefix length of both lab networks.
pub const NET_PREFIX_LEN: u8 = 24;

/// Interface name of the client's veth (client namespace).
pub const CLIENT_IF: &str = "c0";
/// Interface name of the director's front veth (director namespace).
pub const DIRECTOR_FRONT_IF: &str = "d0";
/// Interface name of the director's back bridge (director namespace).
pub const DIRECTOR_BACK_IF: &str = "br1";
/// Interface name of each real server's veth (in its own namespace).
pub const SERVER_IF: &str = "b0";
/// Fixed, locally administered MAC address of the director bridge `br1`
/// (pinned so it does not change as ports are added).
pub const DIRECTOR_BACK_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x01, 0x01];

/// Largest number of real servers [`Lab::nat`] supports.
pub const MAX_SERVERS: usize = 9;

/// Address of real server `i` (1-based): 198.18.1.(10+i).
///
/// # Panics
/// Panics if `i` is not in `1..=MAX_SERVERS`.
pub fn server_ip(i: usize) -> Ipv4Addr {
    assert!(
        (1..=MAX_SERVERS).contains(&i),
        "server index {i} out of range 1..={MAX_SERVERS}"
    );
    Ipv4Addr::new(198, 18, 1, 10 + i as u8)
}

/// Name of the director-side bridge port (a veth in the director namespace)
/// that leads to real server `i` (1-based): `vs<i>`.
pub fn director_port_if(i: usize) -> String {
    format!("vs{i}")
}

/// Errors produced by the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root privileges.
    #[error(
        "the network-namespace lab must run as root (needs CAP_SYS_ADMIN and CAP_NET_ADMIN); \
         effective uid is {0}"
    )]
    NotRoot(u32),
    /// A caller-supplied argument was rejected.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external command exited unsuccessfully.
    #[error("command `{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error output (trimmed).
        stderr: String,
    },
    /// A bounded wait expired.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A lab thread panicked.
    #[error("thread panicked: {0}")]
    Panicked(String),
    /// Tearing the lab down left something behind.
    #[error("lab cleanup incomplete: {0}")]
    Cleanup(String),
    /// An HTTP exchange returned something unexpected.
    #[error("HTTP error: {0}")]
    Http(String),
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
