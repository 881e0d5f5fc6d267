//! TCP connection states of IPVS as data tables (connections.md §10.1).
//!
//! The state only drives the entry's timeout and whether it counts as an
//! active or inactive connection of its destination; IPVS does not track
//! sequence numbers.

use super::Direction;

/// TCP states, numbered as the kernel numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

/// Number of TCP states.
pub const STATE_COUNT: usize = 11;

impl TcpState {
    /// All states in numeric order.
    pub const ALL: [TcpState; STATE_COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// State from its kernel number.
    pub fn from_u8(v: u8) -> Option<TcpState> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// Name as ipvsadm and /proc/net/ip_vs_conn print it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether an entry in this state counts in `activeconns`.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }
}

/// Default per-state timeouts in seconds (connections.md §11).
pub const DEFAULT_TIMEOUTS: [u32; STATE_COUNT] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];

/// The event a segment represents, by priority RST > SYN > FIN > ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn = 0,
    Fin = 1,
    Ack = 2,
    Rst = 3,
}

impl TcpEvent {
    /// Classifies TCP header flags; `None` when none of RST/SYN/FIN/ACK is set
    /// (such a segment moves the entry to CLOSE).
    pub fn from_flags(flags: u8) -> Option<TcpEvent> {
        use crate::wire::tcp_flags::*;
        if flags & RST != 0 {
            Some(TcpEvent::Rst)
        } else if flags & SYN != 0 {
            Some(TcpEvent::Syn)
        } else if flags & FIN != 0 {
            Some(TcpEvent::Fin)
        } else if flags & ACK != 0 {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynAck as SA, SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Table = [[TcpState; 4]; STATE_COUNT];

// Rows: current state in numeric order; columns: SYN, FIN, ACK, RST.
const NORMAL_INPUT: Table = [
    [SR, CL, ES, CL], // NONE
    [ES, CW, ES, CL], // ESTABLISHED
    [ES, SS, SS, CL], // SYN_SENT
    [SR, TW, ES, SR], // SYN_RECV
    [SR, TW, FW, CL], // FIN_WAIT
    [SR, TW, TW, CL], // TIME_WAIT
    [SR, CL, CL, CL], // CLOSE
    [SR, CW, CW, CL], // CLOSE_WAIT
    [SR, LA, CL, LA], // LAST_ACK
    [SR, LI, LI, LI], // LISTEN
    [SR, TW, ES, SR], // SYNACK
];

const NORMAL_OUTPUT: Table = [
    [SS, TW, ES, CL], // NONE
    [ES, FW, ES, CL], // ESTABLISHED
    [SS, SS, SS, SS], // SYN_SENT
    [SR, TW, ES, CL], // SYN_RECV
    [SS, FW, FW, CL], // FIN_WAIT
    [SS, TW, TW, TW], // TIME_WAIT
    [SS, CL, CL, CL], // CLOSE
    [SS, TW, CW, CL], // CLOSE_WAIT
    [SS, LA, LA, CL], // LAST_ACK
    [LI, LI, ES, CL], // LISTEN
    [SR, TW, ES, CL], // SYNACK
];

const NORMAL_INPUT_ONLY: Table = [
    [SR, CL, ES, CL], // NONE
    [ES, FW, ES, CL], // ESTABLISHED
    [ES, SS, SS, CL], // SYN_SENT
    [SR, TW, ES, SR], // SYN_RECV
    [SR, FW, FW, CL], // FIN_WAIT
    [SR, TW, TW, CL], // TIME_WAIT
    [SR, CL, CL, CL], // CLOSE
    [SR, CW, CW, CL], // CLOSE_WAIT
    [SR, LA, CL, LA], // LAST_ACK
    [SR, LI, LI, LI], // LISTEN
    [SR, TW, ES, CL], // SYNACK
];

const SECURE_INPUT: Table = [
    [SR, CL, ES, CL], // NONE
    [ES, CW, ES, CL], // ESTABLISHED
    [ES, SS, SS, CL], // SYN_SENT
    [SR, TW, SR, SR], // SYN_RECV
    [SR, TW, FW, CL], // FIN_WAIT
    [SR, TW, TW, CL], // TIME_WAIT
    [SR, CL, CL, CL], // CLOSE
    [SR, CW, CW, CL], // CLOSE_WAIT
    [SR, LA, CL, LA], // LAST_ACK
    [SR, LI, LI, LI], // LISTEN
    [SA, SA, SA, CL], // SYNACK
];

const SECURE_OUTPUT: Table = [
    [SS, TW, ES, CL], // NONE
    [ES, FW, ES, CL], // ESTABLISHED
    [SS, SS, SS, SS], // SYN_SENT
    [SA, TW, ES, CL], // SYN_RECV
    [SS, FW, FW, CL], // FIN_WAIT
    [SS, TW, TW, TW], // TIME_WAIT
    [SS, CL, CL, CL], // CLOSE
    [SS, TW, CW, CL], // CLOSE_WAIT
    [SS, LA, LA, CL], // LAST_ACK
    [LI, LI, ES, CL], // LISTEN
    [SA, TW, ES, CL], // SYNACK
];

const SECURE_INPUT_ONLY: Table = [
    [SA, CL, ES, CL], // NONE
    [ES, FW, ES, CL], // ESTABLISHED
    [ES, SS, SS, CL], // SYN_SENT
    [SR, TW, ES, SR], // SYN_RECV
    [SA, FW, FW, CL], // FIN_WAIT
    [SA, TW, TW, CL], // TIME_WAIT
    [SA, CL, CL, CL], // CLOSE
    [SA, CW, CW, CL], // CLOSE_WAIT
    [SA, LA, CL, LA], // LAST_ACK
    [SA, LI, LI, LI], // LISTEN
    [SA, TW, ES, CL], // SYNACK
];

/// Next state for a segment. `secure` selects the `secure_tcp` table.
pub fn next_state(
    secure: bool,
    dir: Direction,
    current: TcpState,
    event: Option<TcpEvent>,
) -> TcpState {
    let Some(ev) = event else {
        return TcpState::Close;
    };
    let table = match (secure, dir) {
        (false, Direction::Input) => &NORMAL_INPUT,
        (false, Direction::Output) => &NORMAL_OUTPUT,
        (false, Direction::InputOnly) => &NORMAL_INPUT_ONLY,
        (true, Direction::Input) => &SECURE_INPUT,
        (true, Direction::Output) => &SECURE_OUTPUT,
        (true, Direction::InputOnly) => &SECURE_INPUT_ONLY,
    };
    table[current as usize][ev as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp_flags::*;
    use Direction::*;

    fn step(s: TcpState, dir: Direction, flags: u8) -> TcpState {
        next_state(false, dir, s, TcpEvent::from_flags(flags))
    }

    // connections.md §10.1, "Typical NAT trace, normal table".
    #[test]
    fn typical_nat_trace() {
        let mut s = TcpState::None;
        s = step(s, Input, SYN);
        assert_eq!(s, TcpState::SynRecv);
        s = step(s, Output, SYN | ACK);
        assert_eq!(s, TcpState::SynRecv);
        s = step(s, Input, ACK);
        assert_eq!(s, TcpState::Established);
        s = step(s, Input, FIN | ACK);
        assert_eq!(s, TcpState::CloseWait);
        assert!(!s.is_active());
        s = step(s, Output, FIN | ACK);
        assert_eq!(s, TcpState::TimeWait);
        s = step(s, Input, ACK);
        assert_eq!(s, TcpState::TimeWait);
    }

    // connections.md §10.1, "Typical DR trace" (INPUT_ONLY).
    #[test]
    fn typical_dr_trace() {
        let mut s = TcpState::None;
        for (flags, want) in [
            (SYN, TcpState::SynRecv),
            (ACK, TcpState::Established),
            (FIN | ACK, TcpState::FinWait),
            (ACK, TcpState::FinWait),
        ] {
            s = step(s, InputOnly, flags);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn secure_nat_trace_waits_for_server_ack() {
        let mut s = TcpState::None;
        s = next_state(true, Input, s, Some(TcpEvent::Syn));
        assert_eq!(s, TcpState::SynRecv);
        s = next_state(true, Output, s, TcpEvent::from_flags(SYN | ACK));
        assert_eq!(s, TcpState::SynAck);
        s = next_state(true, Input, s, Some(TcpEvent::Ack));
        assert_eq!(s, TcpState::SynAck);
        s = next_state(true, Output, s, Some(TcpEvent::Ack));
        assert_eq!(s, TcpState::Established);
    }

    #[test]
    fn flag_priority_and_no_flags() {
        assert_eq!(
            TcpEvent::from_flags(RST | SYN | FIN | ACK),
            Some(TcpEvent::Rst)
        );
        assert_eq!(TcpEvent::from_flags(SYN | FIN), Some(TcpEvent::Syn));
        assert_eq!(TcpEvent::from_flags(FIN | ACK), Some(TcpEvent::Fin));
        assert_eq!(TcpEvent::from_flags(0x08), None); // PSH alone
        assert_eq!(step(TcpState::Established, Input, 0x08), TcpState::Close);
    }

    #[test]
    fn names_and_timeouts_follow_the_kernel_numbering() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names.join(" "),
            "NONE ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN SYNACK"
        );
        assert_eq!(DEFAULT_TIMEOUTS[TcpState::Established as usize], 900);
        assert_eq!(DEFAULT_TIMEOUTS[TcpState::SynRecv as usize], 60);
        assert_eq!(DEFAULT_TIMEOUTS[TcpState::Close as usize], 10);
        assert_eq!(TcpState::from_u8(10), Some(TcpState::SynAck));
        assert_eq!(TcpState::from_u8(11), None);
    }
}
