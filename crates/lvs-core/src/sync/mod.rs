//! Connection synchronisation (sync-protocol.md): the wire codec, what a
//! master sends when, and how a backup applies what it receives.

pub mod codec;

use codec::MessageFault;

/// The two values of the `sync_threshold` sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTimeouts {
    pub threshold: u32,
    pub period: u32,
}

/// Counters of both roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Messages accepted (backup).
    pub received: u64,
    /// Messages dropped whole or stopped part-way, by fault.
    pub dropped: [u64; MessageFault::ALL.len()],
    /// Entries created, updated, skipped (unknown protocol or state, an
    /// unknown mandatory option, PE data) and ignored (the expiry notice
    /// of a replaced connection).
    pub entries_created: u64,
    pub entries_updated: u64,
    pub entries_skipped: u64,
    pub entries_ignored: u64,
    /// Engine clock of the last accepted message.
    pub last_received_ms: Option<u64>,
    /// Entries queued and messages made (master).
    pub entries_sent: u64,
    pub messages_sent: u64,
    /// Messages thrown away because the queue was full (`sync_qlen_max`).
    pub messages_dropped: u64,
}
