//! SCTP in IPVS (connections.md §10.3, §6, §13, §14): the entry's state
//! machine as three data tables, the event a packet represents (read from its
//! first chunk), and the CRC32c of the SCTP common header that NAT rewrites
//! (forwarding.md §5.1).
//!
//! As for TCP, the state only picks the entry's timeout and whether it counts
//! as active: IPVS follows neither verification tags nor TSNs. Everything here
//! works on the SCTP packet alone (common header + chunks, the IP payload) and
//! never panics on truncated or malformed input.

use super::Direction;

/// Length of the SCTP common header (ports, verification tag, checksum).
pub const COMMON_HEADER_LEN: usize = 12;

/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;

/// Byte ranges of the common header and of the first chunk's header.
pub mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const VERIFICATION_TAG: Range<usize> = 4..8;
    pub const CHECKSUM: Range<usize> = 8..12;
    /// Type of the first chunk.
    pub const CHUNK_TYPE: usize = 12;
    /// Length of the first chunk (header included, padding excluded).
    pub const CHUNK_LEN: Range<usize> = 14..16;
}

/// Chunk type numbers (RFC 9260 §3.2) that IPVS tells apart.
pub mod chunk {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECN_ECNE: u8 = 12;
    pub const ECN_CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// SCTP states, numbered as the kernel numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SctpState {
    None = 0,
    Init1 = 1,
    Init = 2,
    CookieSent = 3,
    CookieReplied = 4,
    CookieWait = 5,
    Cookie = 6,
    CookieEchoed = 7,
    Established = 8,
    ShutdownSent = 9,
    ShutdownReceived = 10,
    ShutdownAckSent = 11,
    Rejected = 12,
    Closed = 13,
}

/// Number of SCTP states.
pub const STATE_COUNT: usize = 14;

/// Number of SCTP events (table columns).
pub const EVENT_COUNT: usize = 10;

impl SctpState {
    /// All states in numeric order.
    pub const ALL: [SctpState; STATE_COUNT] = [
        SctpState::None,
        SctpState::Init1,
        SctpState::Init,
        SctpState::CookieSent,
        SctpState::CookieReplied,
        SctpState::CookieWait,
        SctpState::Cookie,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownReceived,
        SctpState::ShutdownAckSent,
        SctpState::Rejected,
        SctpState::Closed,
    ];

    /// State from its kernel number.
    pub fn from_u8(v: u8) -> Option<SctpState> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// Name as ipvsadm and /proc/net/ip_vs_conn print it.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Init1 => "INIT1",
            SctpState::Init => "INIT",
            SctpState::CookieSent => "C-SENT",
            SctpState::CookieReplied => "C-REPLIED",
            SctpState::CookieWait => "C-WAIT",
            SctpState::Cookie => "COOKIE",
            SctpState::CookieEchoed => "C-ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "S-SENT",
            SctpState::ShutdownReceived => "S-RECEIVED",
            SctpState::ShutdownAckSent => "S-ACK-SENT",
            SctpState::Rejected => "REJECTED",
            SctpState::Closed => "CLOSED",
        }
    }

    /// Whether an entry in this state counts in `activeconns`: ESTABLISHED
    /// only (connections.md §12).
    pub fn is_active(self) -> bool {
        self == SctpState::Established
    }
}

/// Default per-state timeouts in seconds (connections.md §10.3, §11). None of
/// them can be changed with `--set`.
pub const DEFAULT_TIMEOUTS: [u32; STATE_COUNT] =
    [2, 4, 61, 61, 61, 61, 61, 61, 900, 61, 61, 61, 4, 61];

/// The event a packet represents, in table-column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SctpEvent {
    Data = 0,
    Init = 1,
    InitAck = 2,
    CookieEcho = 3,
    CookieAck = 4,
    Shutdown = 5,
    ShutdownAck = 6,
    ShutdownComplete = 7,
    Error = 8,
    Abort = 9,
}

impl SctpEvent {
    /// The event of a chunk type on its own. SACK, HEARTBEAT, HEARTBEAT_ACK,
    /// ECN_ECNE, ECN_CWR and every type ≥ 15 count as DATA.
    pub fn from_chunk_type(t: u8) -> SctpEvent {
        match t {
            chunk::INIT => SctpEvent::Init,
            chunk::INIT_ACK => SctpEvent::InitAck,
            chunk::ABORT => SctpEvent::Abort,
            chunk::SHUTDOWN => SctpEvent::Shutdown,
            chunk::SHUTDOWN_ACK => SctpEvent::ShutdownAck,
            chunk::ERROR => SctpEvent::Error,
            chunk::COOKIE_ECHO => SctpEvent::CookieEcho,
            chunk::COOKIE_ACK => SctpEvent::CookieAck,
            chunk::SHUTDOWN_COMPLETE => SctpEvent::ShutdownComplete,
            _ => SctpEvent::Data,
        }
    }
}

/// Type of the first chunk, or `None` when the packet is too short to hold
/// the common header and a chunk header.
pub fn first_chunk_type(sctp_packet: &[u8]) -> Option<u8> {
    if sctp_packet.len() < COMMON_HEADER_LEN + CHUNK_HEADER_LEN {
        return None;
    }
    Some(sctp_packet[field::CHUNK_TYPE])
}

/// The event of a packet (connections.md §10.3): the first chunk's, except
/// that a COOKIE_ECHO or COOKIE_ACK immediately followed by an ABORT chunk is
/// an ABORT. `None` when the first chunk header is missing.
///
/// The second chunk starts at the first chunk's length rounded up to a
/// multiple of 4, taken as written (a length of 0 points back at the first
/// chunk itself); it counts only if its whole chunk header is present.
pub fn event(sctp_packet: &[u8]) -> Option<SctpEvent> {
    let first = first_chunk_type(sctp_packet)?;
    if first == chunk::COOKIE_ECHO || first == chunk::COOKIE_ACK {
        let len = u16::from_be_bytes([
            sctp_packet[field::CHUNK_LEN.start],
            sctp_packet[field::CHUNK_LEN.start + 1],
        ]);
        // At most 12 + 65536: no overflow on any target with a 32-bit usize.
        let next = COMMON_HEADER_LEN + usize::from(len).next_multiple_of(4);
        let second = sctp_packet.get(next..next + CHUNK_HEADER_LEN);
        if second.is_some_and(|h| h[0] == chunk::ABORT) {
            return Some(SctpEvent::Abort);
        }
    }
    Some(SctpEvent::from_chunk_type(first))
}

/// The §6 gate for a packet that matches no entry: it may create one when its
/// first chunk is not ABORT and is INIT or `sloppy_sctp` is on (§13).
pub fn may_create_entry(first_chunk: u8, sloppy_sctp: bool) -> bool {
    first_chunk != chunk::ABORT && (first_chunk == chunk::INIT || sloppy_sctp)
}

/// The CRC32c of an SCTP packet as it belongs in its checksum field, computed
/// with that field taken as zero; `None` if the common header is truncated.
///
/// The value is the plain CRC32c (reflected, initial value and final XOR all
/// ones); the field stores it least significant byte first.
pub fn checksum(sctp_packet: &[u8]) -> Option<u32> {
    if sctp_packet.len() < COMMON_HEADER_LEN {
        return None;
    }
    let c = crc32c::crc32c(&sctp_packet[..field::CHECKSUM.start]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    Some(crc32c::crc32c_append(
        c,
        &sctp_packet[field::CHECKSUM.end..],
    ))
}

/// Recomputes and stores the checksum; false (nothing written) if the common
/// header is truncated.
pub fn fill_checksum(sctp_packet: &mut [u8]) -> bool {
    let Some(c) = checksum(sctp_packet) else {
        return false;
    };
    sctp_packet[field::CHECKSUM].copy_from_slice(&c.to_le_bytes());
    true
}

/// True if the stored checksum matches the packet.
pub fn verify_checksum(sctp_packet: &[u8]) -> bool {
    checksum(sctp_packet).is_some_and(|c| sctp_packet[field::CHECKSUM] == c.to_le_bytes())
}

// Short names so that each table row fits on one line and reads like the spec.
use SctpState::{
    Closed as CL, Cookie as CO, CookieEchoed as CE, CookieReplied as CR, CookieSent as CS,
    CookieWait as CW, Established as ES, Init as IN, Init1 as I1, Rejected as RJ,
    ShutdownAckSent as SA, ShutdownReceived as SR, ShutdownSent as SS,
};

type Table = [[SctpState; EVENT_COUNT]; STATE_COUNT];

// Rows: current state in numeric order; columns: DATA, INIT, INIT_ACK,
// COOKIE_ECHO, COOKIE_ACK, SHUTDOWN, SHUTDOWN_ACK, SHUTDOWN_COMPLETE, ERROR,
// ABORT (connections.md §10.3, copied cell for cell).
const INPUT: Table = [
    [ES, I1, CW, CR, ES, SR, CL, CL, CL, CL], // NONE
    [I1, IN, CW, IN, I1, I1, IN, CL, I1, CL], // INIT1
    [IN, IN, CW, IN, IN, IN, IN, CL, IN, CL], // INIT
    [CS, CS, CS, CR, CS, CS, CS, CS, CS, CL], // COOKIE_SENT
    [CR, CR, CR, CR, CR, CR, CR, CR, CR, CL], // COOKIE_REPLIED
    [CW, CW, CO, CW, CW, CW, CW, CW, CW, RJ], // COOKIE_WAIT
    [CO, CO, CO, CO, CO, CO, CO, CO, CO, CL], // COOKIE
    [CE, CE, CE, CE, ES, CE, CE, CE, CL, CL], // COOKIE_ECHOED
    [ES, ES, ES, ES, ES, SR, ES, ES, ES, CL], // ESTABLISHED
    [SS, SS, SS, SS, SS, SS, CL, SS, SS, CL], // SHUTDOWN_SENT
    [SR, SR, SR, SR, SR, SR, SR, SR, SR, CL], // SHUTDOWN_RECEIVED
    [SA, SA, SA, SA, SA, SA, CL, CL, SA, CL], // SHUTDOWN_ACK_SENT
    [RJ, IN, RJ, RJ, RJ, RJ, RJ, RJ, RJ, CL], // REJECTED
    [CL, IN, CL, CL, CL, CL, CL, CL, CL, CL], // CLOSED
];

const OUTPUT: Table = [
    [ES, CW, CS, CE, ES, SS, SA, CL, CL, CL], // NONE
    [I1, CW, CS, CE, ES, SS, SA, I1, CL, RJ], // INIT1
    [IN, CW, CS, CE, ES, SS, SA, IN, CL, CL], // INIT
    [CS, CW, CS, CE, ES, SS, SA, CS, CL, CL], // COOKIE_SENT
    [CR, CW, CR, CE, ES, SS, SA, CR, CL, CL], // COOKIE_REPLIED
    [CW, CW, CW, CE, ES, SS, CW, CW, CW, CL], // COOKIE_WAIT
    [CO, CW, CO, CE, ES, SS, CO, CO, CO, CL], // COOKIE
    [CE, CW, CE, CE, ES, SS, CE, CE, CE, CL], // COOKIE_ECHOED
    [ES, ES, ES, ES, ES, SS, ES, ES, ES, CL], // ESTABLISHED
    [SS, CW, SS, SS, SS, SS, SA, SS, SS, CL], // SHUTDOWN_SENT
    [SR, CW, SR, SR, SR, SR, SA, SR, SR, CL], // SHUTDOWN_RECEIVED
    [SA, CW, SA, SA, SA, SA, SA, SA, SA, CL], // SHUTDOWN_ACK_SENT
    [RJ, CW, RJ, RJ, RJ, RJ, RJ, RJ, RJ, CL], // REJECTED
    [CL, CW, CL, CL, CL, CL, CL, CL, CL, CL], // CLOSED
];

const INPUT_ONLY: Table = [
    [ES, I1, CE, ES, ES, SR, CL, CL, CL, CL], // NONE
    [I1, IN, CE, ES, I1, I1, IN, CL, I1, CL], // INIT1
    [IN, IN, CE, ES, IN, IN, IN, CL, IN, CL], // INIT
    [CS, IN, CE, ES, ES, CS, CS, CL, CS, CL], // COOKIE_SENT
    [CR, IN, CE, ES, ES, CR, CR, CL, CR, CL], // COOKIE_REPLIED
    [ES, IN, CE, ES, CW, CW, CW, CW, CW, RJ], // COOKIE_WAIT
    [CO, CO, CO, CO, ES, CO, CO, CO, CO, CL], // COOKIE
    [CE, CE, CE, CE, ES, CE, CE, CE, CE, CL], // COOKIE_ECHOED
    [ES, ES, ES, ES, ES, SR, CL, ES, ES, CL], // ESTABLISHED
    [SS, SS, SS, SS, SS, SS, CL, SS, SS, CL], // SHUTDOWN_SENT
    [SR, SR, SR, SR, SR, SR, SR, CL, SR, CL], // SHUTDOWN_RECEIVED
    [SA, SA, SA, SA, SA, SA, CL, CL, SA, CL], // SHUTDOWN_ACK_SENT
    [RJ, IN, RJ, RJ, RJ, RJ, RJ, RJ, RJ, CL], // REJECTED
    [CL, IN, CL, CL, CL, CL, CL, CL, CL, CL], // CLOSED
];

/// Next state for a packet of event `ev` travelling in `dir`.
pub fn next_state(dir: Direction, cur: SctpState, ev: SctpEvent) -> SctpState {
    let table = match dir {
        Direction::Input => &INPUT,
        Direction::Output => &OUTPUT,
        Direction::InputOnly => &INPUT_ONLY,
    };
    table[cur as usize][ev as usize]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::Rng;
    use Direction::{Input, InputOnly, Output};
    use SctpEvent as E;
    use SctpState as S;

    /// connections.md §10.3, the three tables as the spec prints them.
    const SPEC_TABLES: &str = r"
INPUT:
| current | DATA | INIT | INIT_ACK | COOKIE_ECHO | COOKIE_ACK | SHUTDOWN | SHUTDOWN_ACK | SHUTDOWN_COMPLETE | ERROR | ABORT |
| NONE | ESTABLISHED | INIT1 | COOKIE_WAIT | COOKIE_REPLIED | ESTABLISHED | SHUTDOWN_RECEIVED | CLOSED | CLOSED | CLOSED | CLOSED |
| INIT1 | INIT1 | INIT | COOKIE_WAIT | INIT | INIT1 | INIT1 | INIT | CLOSED | INIT1 | CLOSED |
| INIT | INIT | INIT | COOKIE_WAIT | INIT | INIT | INIT | INIT | CLOSED | INIT | CLOSED |
| COOKIE_SENT | COOKIE_SENT | COOKIE_SENT | COOKIE_SENT | COOKIE_REPLIED | COOKIE_SENT | COOKIE_SENT | COOKIE_SENT | COOKIE_SENT | COOKIE_SENT | CLOSED |
| COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_REPLIED | CLOSED |
| COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | REJECTED |
| COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | CLOSED |
| COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | ESTABLISHED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | CLOSED | CLOSED |
| ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | SHUTDOWN_RECEIVED | ESTABLISHED | ESTABLISHED | ESTABLISHED | CLOSED |
| SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | CLOSED | SHUTDOWN_SENT | SHUTDOWN_SENT | CLOSED |
| SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | CLOSED |
| SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | CLOSED | CLOSED | SHUTDOWN_ACK_SENT | CLOSED |
| REJECTED | REJECTED | INIT | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | CLOSED |
| CLOSED | CLOSED | INIT | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED |
OUTPUT:
| current | DATA | INIT | INIT_ACK | COOKIE_ECHO | COOKIE_ACK | SHUTDOWN | SHUTDOWN_ACK | SHUTDOWN_COMPLETE | ERROR | ABORT |
| NONE | ESTABLISHED | COOKIE_WAIT | COOKIE_SENT | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | CLOSED | CLOSED | CLOSED |
| INIT1 | INIT1 | COOKIE_WAIT | COOKIE_SENT | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | INIT1 | CLOSED | REJECTED |
| INIT | INIT | COOKIE_WAIT | COOKIE_SENT | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | INIT | CLOSED | CLOSED |
| COOKIE_SENT | COOKIE_SENT | COOKIE_WAIT | COOKIE_SENT | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | COOKIE_SENT | CLOSED | CLOSED |
| COOKIE_REPLIED | COOKIE_REPLIED | COOKIE_WAIT | COOKIE_REPLIED | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | COOKIE_REPLIED | CLOSED | CLOSED |
| COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | CLOSED |
| COOKIE | COOKIE | COOKIE_WAIT | COOKIE | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | COOKIE | COOKIE | COOKIE | CLOSED |
| COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_WAIT | COOKIE_ECHOED | COOKIE_ECHOED | ESTABLISHED | SHUTDOWN_SENT | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | CLOSED |
| ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | SHUTDOWN_SENT | ESTABLISHED | ESTABLISHED | ESTABLISHED | CLOSED |
| SHUTDOWN_SENT | SHUTDOWN_SENT | COOKIE_WAIT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | CLOSED |
| SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | COOKIE_WAIT | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_ACK_SENT | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | CLOSED |
| SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | COOKIE_WAIT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | CLOSED |
| REJECTED | REJECTED | COOKIE_WAIT | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | CLOSED |
| CLOSED | CLOSED | COOKIE_WAIT | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED |
INPUT_ONLY:
| current | DATA | INIT | INIT_ACK | COOKIE_ECHO | COOKIE_ACK | SHUTDOWN | SHUTDOWN_ACK | SHUTDOWN_COMPLETE | ERROR | ABORT |
| NONE | ESTABLISHED | INIT1 | COOKIE_ECHOED | ESTABLISHED | ESTABLISHED | SHUTDOWN_RECEIVED | CLOSED | CLOSED | CLOSED | CLOSED |
| INIT1 | INIT1 | INIT | COOKIE_ECHOED | ESTABLISHED | INIT1 | INIT1 | INIT | CLOSED | INIT1 | CLOSED |
| INIT | INIT | INIT | COOKIE_ECHOED | ESTABLISHED | INIT | INIT | INIT | CLOSED | INIT | CLOSED |
| COOKIE_SENT | COOKIE_SENT | INIT | COOKIE_ECHOED | ESTABLISHED | ESTABLISHED | COOKIE_SENT | COOKIE_SENT | CLOSED | COOKIE_SENT | CLOSED |
| COOKIE_REPLIED | COOKIE_REPLIED | INIT | COOKIE_ECHOED | ESTABLISHED | ESTABLISHED | COOKIE_REPLIED | COOKIE_REPLIED | CLOSED | COOKIE_REPLIED | CLOSED |
| COOKIE_WAIT | ESTABLISHED | INIT | COOKIE_ECHOED | ESTABLISHED | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | COOKIE_WAIT | REJECTED |
| COOKIE | COOKIE | COOKIE | COOKIE | COOKIE | ESTABLISHED | COOKIE | COOKIE | COOKIE | COOKIE | CLOSED |
| COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | ESTABLISHED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | COOKIE_ECHOED | CLOSED |
| ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | ESTABLISHED | SHUTDOWN_RECEIVED | CLOSED | ESTABLISHED | ESTABLISHED | CLOSED |
| SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | SHUTDOWN_SENT | CLOSED | SHUTDOWN_SENT | SHUTDOWN_SENT | CLOSED |
| SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | SHUTDOWN_RECEIVED | CLOSED | SHUTDOWN_RECEIVED | CLOSED |
| SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | SHUTDOWN_ACK_SENT | CLOSED | CLOSED | SHUTDOWN_ACK_SENT | CLOSED |
| REJECTED | REJECTED | INIT | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | REJECTED | CLOSED |
| CLOSED | CLOSED | INIT | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED | CLOSED |
";

    fn spec_state(name: &str) -> SctpState {
        match name {
            "NONE" => S::None,
            "INIT1" => S::Init1,
            "INIT" => S::Init,
            "COOKIE_SENT" => S::CookieSent,
            "COOKIE_REPLIED" => S::CookieReplied,
            "COOKIE_WAIT" => S::CookieWait,
            "COOKIE" => S::Cookie,
            "COOKIE_ECHOED" => S::CookieEchoed,
            "ESTABLISHED" => S::Established,
            "SHUTDOWN_SENT" => S::ShutdownSent,
            "SHUTDOWN_RECEIVED" => S::ShutdownReceived,
            "SHUTDOWN_ACK_SENT" => S::ShutdownAckSent,
            "REJECTED" => S::Rejected,
            "CLOSED" => S::Closed,
            _ => panic!("unknown state {name:?} in the spec table"),
        }
    }

    const EVENTS: [SctpEvent; EVENT_COUNT] = [
        E::Data,
        E::Init,
        E::InitAck,
        E::CookieEcho,
        E::CookieAck,
        E::Shutdown,
        E::ShutdownAck,
        E::ShutdownComplete,
        E::Error,
        E::Abort,
    ];

    #[test]
    fn tables_match_the_spec_cell_for_cell() {
        let mut dir = None;
        let mut rows = 0;
        for line in SPEC_TABLES.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line {
                "INPUT:" => dir = Some(Input),
                "OUTPUT:" => dir = Some(Output),
                "INPUT_ONLY:" => dir = Some(InputOnly),
                _ => {
                    let cells: Vec<&str> =
                        line.trim_matches('|').split('|').map(str::trim).collect();
                    assert_eq!(cells.len(), 1 + EVENT_COUNT, "{line}");
                    if cells[0] == "current" {
                        assert_eq!(
                            cells[1..].join(" "),
                            "DATA INIT INIT_ACK COOKIE_ECHO COOKIE_ACK SHUTDOWN SHUTDOWN_ACK SHUTDOWN_COMPLETE ERROR ABORT"
                        );
                        continue;
                    }
                    let dir = dir.expect("a table label precedes its rows");
                    let cur = spec_state(cells[0]);
                    assert_eq!(
                        cur,
                        SctpState::ALL[rows % STATE_COUNT],
                        "rows in numeric order"
                    );
                    for (ev, cell) in EVENTS.iter().zip(&cells[1..]) {
                        assert_eq!(
                            next_state(dir, cur, *ev),
                            spec_state(cell),
                            "{dir:?} {cur:?} {ev:?}"
                        );
                    }
                    rows += 1;
                }
            }
        }
        assert_eq!(rows, 3 * STATE_COUNT);
    }

    #[test]
    fn a_few_cells_per_table() {
        for (dir, cur, ev, want) in [
            (Input, S::None, E::Init, S::Init1),
            (Input, S::None, E::Data, S::Established),
            (Input, S::CookieWait, E::Abort, S::Rejected),
            (Input, S::CookieEchoed, E::Error, S::Closed),
            (Input, S::Closed, E::Init, S::Init),
            (Input, S::ShutdownSent, E::ShutdownAck, S::Closed),
            (Output, S::Init1, E::Abort, S::Rejected),
            (Output, S::Init, E::Abort, S::Closed),
            (Output, S::None, E::ShutdownAck, S::ShutdownAckSent),
            (Output, S::Established, E::Init, S::Established),
            (Output, S::Closed, E::Init, S::CookieWait),
            (Output, S::Init1, E::ShutdownComplete, S::Init1),
            (InputOnly, S::None, E::CookieEcho, S::Established),
            (InputOnly, S::CookieWait, E::Data, S::Established),
            (InputOnly, S::Established, E::ShutdownAck, S::Closed),
            (
                InputOnly,
                S::ShutdownReceived,
                E::ShutdownComplete,
                S::Closed,
            ),
            (InputOnly, S::Cookie, E::CookieAck, S::Established),
            (InputOnly, S::Rejected, E::Init, S::Init),
        ] {
            assert_eq!(next_state(dir, cur, ev), want, "{dir:?} {cur:?} {ev:?}");
        }
    }

    fn walk(steps: &[(Direction, SctpEvent, SctpState, u32)]) {
        let mut s = S::None;
        for &(dir, ev, want, timeout) in steps {
            s = next_state(dir, s, ev);
            assert_eq!(s, want, "{dir:?} {ev:?}");
            assert_eq!(DEFAULT_TIMEOUTS[s as usize], timeout, "{s:?}");
            assert_eq!(s.is_active(), s == S::Established);
        }
    }

    // connections.md §10.3, "NAT trace".
    #[test]
    fn nat_trace() {
        walk(&[
            (Input, E::Init, S::Init1, 4),
            (Output, E::InitAck, S::CookieSent, 61),
            (Input, E::CookieEcho, S::CookieReplied, 61),
            (Output, E::CookieAck, S::Established, 900),
        ]);
    }

    // connections.md §10.3, "DR trace (INPUT_ONLY)".
    #[test]
    fn dr_trace() {
        walk(&[
            (InputOnly, E::Init, S::Init1, 4),
            (InputOnly, E::CookieEcho, S::Established, 900),
        ]);
    }

    // connections.md §10.3: retransmitted INIT; INIT answered by ABORT.
    #[test]
    fn retransmitted_init_and_rejected_init() {
        walk(&[(Input, E::Init, S::Init1, 4), (Input, E::Init, S::Init, 61)]);
        walk(&[
            (Input, E::Init, S::Init1, 4),
            (Output, E::Abort, S::Rejected, 4),
        ]);
    }

    // connections.md, "Verified against the 6.18 kernel", §10.3 (NAT entry
    // whose real server never answers, and a DR entry), with the names shown.
    #[test]
    fn kernel_verified_traces() {
        let nat = [
            (Input, E::Init, S::Init1, 4),
            (Input, E::CookieEcho, S::Init, 61),
            (Input, E::Data, S::Init, 61),
            (Input, E::Abort, S::Closed, 61),
        ];
        walk(&nat);
        let dr = [
            (InputOnly, E::Init, S::Init1, 4),
            (InputOnly, E::CookieEcho, S::Established, 900),
            (InputOnly, E::Data, S::Established, 900),
            (InputOnly, E::Shutdown, S::ShutdownReceived, 61),
        ];
        walk(&dr);
        let shown: Vec<_> = nat.iter().chain(&dr).map(|s| s.2.name()).collect();
        assert_eq!(
            shown.join(" "),
            "INIT1 INIT INIT CLOSED INIT1 ESTABLISHED ESTABLISHED S-RECEIVED"
        );
    }

    // connections.md §13: with sloppy_sctp, DATA creates an entry that goes
    // NONE → ESTABLISHED.
    #[test]
    fn sloppy_data_establishes() {
        assert!(may_create_entry(chunk::DATA, true));
        assert_eq!(next_state(Input, S::None, E::Data), S::Established);
    }

    #[test]
    fn names_numbers_and_timeouts() {
        let names: Vec<_> = SctpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names.join(" "),
            "NONE INIT1 INIT C-SENT C-REPLIED C-WAIT COOKIE C-ECHOED ESTABLISHED S-SENT \
             S-RECEIVED S-ACK-SENT REJECTED CLOSED"
        );
        for (i, s) in SctpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(SctpState::from_u8(i as u8), Some(*s));
            assert_eq!(s.is_active(), *s == S::Established);
        }
        assert_eq!(SctpState::from_u8(14), None);
        // §11: NONE 2, INIT1 4, REJECTED 4, ESTABLISHED 900, all others 61.
        for s in SctpState::ALL {
            let want = match s {
                S::None => 2,
                S::Init1 | S::Rejected => 4,
                S::Established => 900,
                _ => 61,
            };
            assert_eq!(DEFAULT_TIMEOUTS[s as usize], want, "{s:?}");
        }
        for (i, e) in EVENTS.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
    }

    /// A common header (ports 40000 → 80, tag 0x11223344, zero checksum)
    /// followed by `chunks`.
    fn sctp(chunks: &[u8]) -> Vec<u8> {
        let mut v = vec![0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0];
        v.extend_from_slice(chunks);
        v
    }

    #[test]
    fn event_of_the_first_chunk() {
        for t in 0..=255u8 {
            let want = match t {
                0 | 3 | 4 | 5 | 12 | 13 | 15.. => E::Data,
                1 => E::Init,
                2 => E::InitAck,
                6 => E::Abort,
                7 => E::Shutdown,
                8 => E::ShutdownAck,
                9 => E::Error,
                10 => E::CookieEcho,
                11 => E::CookieAck,
                14 => E::ShutdownComplete,
            };
            assert_eq!(event(&sctp(&[t, 0, 0, 4])), Some(want), "type {t}");
            assert_eq!(first_chunk_type(&sctp(&[t, 0, 0, 4])), Some(t));
        }
        // Too short for a chunk header.
        for n in 0..16 {
            assert_eq!(event(&sctp(&[1, 0, 0, 4])[..n]), None, "len {n}");
        }
        // A chunk after INIT or DATA never matters.
        assert_eq!(event(&sctp(&[1, 0, 0, 4, 6, 0, 0, 4])), Some(E::Init));
        assert_eq!(event(&sctp(&[0, 0, 0, 4, 6, 0, 0, 4])), Some(E::Data));
    }

    #[test]
    fn cookie_chunk_followed_by_abort_is_abort() {
        // COOKIE_ECHO with a 4-byte cookie (length 8), then ABORT.
        let echo_abort = sctp(&[10, 0, 0, 8, b'C', b'O', b'O', b'K', 6, 0, 0, 4]);
        assert_eq!(event(&echo_abort), Some(E::Abort));
        // COOKIE_ACK, then ABORT.
        assert_eq!(event(&sctp(&[11, 0, 0, 4, 6, 0, 0, 4])), Some(E::Abort));
        // COOKIE_ACK, then DATA: the first chunk decides.
        assert_eq!(
            event(&sctp(&[11, 0, 0, 4, 0, 3, 0, 16])),
            Some(E::CookieAck)
        );
        // Odd length 5: the next chunk is at ALIGN(5, 4) = 8.
        let odd = sctp(&[10, 0, 0, 5, b'X', 0, 0, 0, 6, 0, 0, 4]);
        assert_eq!(event(&odd), Some(E::Abort));
        let odd_misread = sctp(&[10, 0, 0, 5, b'X', 6, 0, 0, 0, 0, 0, 4]);
        assert_eq!(event(&odd_misread), Some(E::CookieEcho));
        // Length 0 points back at the COOKIE_ECHO itself.
        assert_eq!(
            event(&sctp(&[10, 0, 0, 0, 6, 0, 0, 4])),
            Some(E::CookieEcho)
        );
        // Length past the end, or a second chunk header cut short.
        assert_eq!(
            event(&sctp(&[10, 0, 0xff, 0xff, 6, 0, 0, 4])),
            Some(E::CookieEcho)
        );
        assert_eq!(event(&sctp(&[11, 0, 0, 4, 6, 0, 0])), Some(E::CookieAck));
        assert_eq!(event(&sctp(&[11, 0, 0, 4])), Some(E::CookieAck));
    }

    // connections.md §6 and §14.
    #[test]
    fn new_connection_gate() {
        assert!(may_create_entry(chunk::INIT, false));
        assert!(may_create_entry(chunk::INIT, true));
        assert!(!may_create_entry(chunk::ABORT, false));
        assert!(!may_create_entry(chunk::ABORT, true));
        for t in [
            chunk::DATA,
            chunk::INIT_ACK,
            chunk::COOKIE_ECHO,
            chunk::SHUTDOWN,
            200,
        ] {
            assert!(!may_create_entry(t, false), "type {t}");
            assert!(may_create_entry(t, true), "type {t}");
        }
    }

    /// CRC32c one bit at a time (reflected polynomial 0x82F63B78), as an
    /// independent reference for the crate.
    pub(crate) fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn checksum_is_crc32c_stored_little_endian() {
        // The CRC32c check value (RFC 3720 / the "123456789" convention).
        assert_eq!(crc32c_bitwise(b"123456789"), 0xe306_9283);
        let mut p = sctp(&[
            1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 3, 0xe8,
        ]);
        // Any old value in the field is ignored.
        p[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut zeroed = p.clone();
        zeroed[8..12].fill(0);
        let want = crc32c_bitwise(&zeroed);
        assert_eq!(checksum(&p), Some(want));
        assert!(!verify_checksum(&p));
        assert!(fill_checksum(&mut p));
        assert_eq!(&p[8..12], &want.to_le_bytes());
        assert!(verify_checksum(&p));
        p[20] ^= 1;
        assert!(!verify_checksum(&p));
        // Truncated common header.
        let mut short = [0u8; 11];
        assert_eq!(checksum(&short), None);
        assert!(!fill_checksum(&mut short));
        assert!(!verify_checksum(&short));
        // A bare common header is a packet the CRC can cover.
        assert!(fill_checksum(&mut p[..12]));
    }

    // Never panics, whatever the bytes: random lengths and contents, biased
    // towards the interesting first chunks and lengths.
    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng::new(0x5c7b_2026);
        let mut buf = [0u8; 96];
        for round in 0..200_000u32 {
            let len = (rng.next_u32() % 97) as usize;
            for b in buf.iter_mut() {
                *b = rng.next_u32() as u8;
            }
            if round % 2 == 0 {
                buf[12] = [chunk::COOKIE_ECHO, chunk::COOKIE_ACK][(round / 2 % 2) as usize];
                let l = rng.next_u32() % 24;
                buf[14..16].copy_from_slice(
                    &(if round % 8 == 0 { 0xfffd } else { l as u16 }).to_be_bytes(),
                );
            }
            if round % 3 == 0 {
                let at = 12 + (rng.next_u32() % 84) as usize;
                buf[at] = chunk::ABORT;
            }
            let p = &mut buf[..len];
            let ev = event(p);
            assert_eq!(ev.is_none(), len < 16);
            if let Some(t) = first_chunk_type(p) {
                let _ = may_create_entry(t, round % 5 == 0);
                if ev != Some(E::Abort) {
                    assert_eq!(ev, Some(SctpEvent::from_chunk_type(t)));
                }
            }
            let filled = fill_checksum(p);
            assert_eq!(filled, len >= 12);
            assert_eq!(verify_checksum(p), filled);
        }
    }
}
