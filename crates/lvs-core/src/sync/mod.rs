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

/// How a master sends (the daemon's `--start-daemon master` options that
/// reach the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterConfig {
    pub syncid: u8,
    /// Largest message (sync-protocol.md §1.2: 1472 for an IPv4 group,
    /// 1452 for IPv6, unless configured).
    pub maxlen: usize,
    /// Sending ports (`sync_ports`, clamped to 1..=64): a connection's
    /// messages go to `base port + its index`.
    pub ports: u8,
}

/// A message ready to go: to `base port + port`.
#[derive(Debug)]
pub struct Outgoing {
    pub port: u8,
    pub bytes: Vec<u8>,
}

/// A partly filled message is sent once it is this old (§6.3).
pub const FLUSH_AFTER_MS: u64 = 2000;

/// What a backup sends to ask a master for a full copy of its table
/// (lvsd's addition, off by default). To a kernel peer it is a version 0
/// message with no entries: ignored. `syncid` goes in byte 1.
pub const RESYNC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0, b'L', b'V', b'S'];

/// Whether `msg` is a full-copy request for sync ID `syncid` (0: any).
pub fn is_resync_request(msg: &[u8], syncid: u8) -> bool {
    msg.len() == 8
        && msg[0] == 0
        && msg[2..] == RESYNC_REQUEST[2..]
        && (syncid == 0 || msg[1] == syncid)
}
