//! Packet formats: typed views over byte buffers, checked at construction.

pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;

/// IP protocol numbers used by the engine.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
}

/// TCP header flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
    pub const PSH: u8 = 0x08;
    pub const CWR: u8 = 0x80;
}

/// Offset of the checksum field inside the L4 header, and the minimum header
/// length needed to read ports and checksum.
#[inline]
pub fn l4_layout(protocol: u8) -> Option<(usize, usize)> {
    match protocol {
        ipproto::TCP => Some((16, 20)),
        ipproto::UDP => Some((6, 8)),
        _ => None,
    }
}
