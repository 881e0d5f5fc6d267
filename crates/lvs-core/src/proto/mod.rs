//! Protocol state machines: one module per protocol, each a data table.

pub mod sctp;
pub mod tcp;
pub mod udp;

/// Which transition table a packet uses (connections.md §10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → director, entry has seen output (or is NAT).
    Input,
    /// Real server → director.
    Output,
    /// Client → director while the entry still has NOOUTPUT (DR/TUN).
    InputOnly,
}
