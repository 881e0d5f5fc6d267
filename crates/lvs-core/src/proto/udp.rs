//! UDP in IPVS: one state (shown as `UDP`), one timeout, never active
//! (connections.md §10.2).

/// Default UDP timeout in seconds.
pub const DEFAULT_TIMEOUT: u32 = 300;

/// The state name ipvsadm prints for UDP entries.
pub const STATE_NAME: &str = "UDP";
