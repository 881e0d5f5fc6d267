//! Packet I/O behind one trait.
//!
//! The daemon receives a batch of frames from one port, rewrites them in
//! place, queues each for some output port, and flushes. `AfPacket` is the
//! first (portable) backend; an AF_XDP backend fits the same shape: its
//! frames are UMEM slots, `recv` drains the RX ring, `queue_rx` moves a slot
//! to a TX ring, `flush` kicks the rings.

pub mod afpacket;

use std::io;

/// Index of an attached interface ("port") in the backend.
pub type PortId = usize;

/// Offload metadata of a frame (virtio-net header semantics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// The L4 checksum field holds a partial pseudo-header sum to be
    /// completed by whoever transmits (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub csum_partial: bool,
    /// Checksum start/offset, meaningful with `csum_partial`.
    pub csum_start: u16,
    pub csum_offset: u16,
    /// GSO type and segment size of a super-packet (0 = none).
    pub gso_type: u8,
    pub gso_size: u16,
    pub hdr_len: u16,
}

/// What the backend knows of a received frame.
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    /// Where the Ethernet frame starts in the buffer `rx_frame` returns;
    /// the bytes before it are free headroom (at least
    /// `lvs_core::xmit::HEADROOM`) for encapsulation headers.
    pub start: usize,
    pub len: usize,
    /// Addressed to this host's MAC (PACKET_HOST), as opposed to broadcast,
    /// multicast or another host.
    pub to_us: bool,
    /// The frame carried an 802.1Q tag (stripped by the kernel): it belongs
    /// to a VLAN sub-interface, which is where lvsd handles it (once).
    pub vlan: bool,
    pub offload: Offload,
}

/// A batch-oriented packet I/O backend.
pub trait PacketIo {
    /// Number of attached ports.
    fn port_count(&self) -> usize;
    /// Descriptors to poll(2) for readability, one per port, in port order.
    fn fds(&self) -> Vec<std::os::fd::RawFd>;
    /// Receives up to one batch from `port` into the backend's buffers;
    /// returns how many frames arrived (0 when none is waiting).
    fn recv(&mut self, port: PortId) -> io::Result<usize>;
    /// The buffer of frame `i` of the last `recv` (headroom, then the
    /// Ethernet frame at `meta.start`, `meta.len` bytes, then free room up
    /// to at least 64 KiB of frame) and its metadata.
    fn rx_frame(&mut self, i: usize) -> (&mut [u8], RxMeta);
    /// Queues the bytes `start..start + len` of frame `i`'s buffer (an
    /// Ethernet frame, which may now begin in the headroom) for sending on `out`.
    fn queue_rx(&mut self, i: usize, out: PortId, start: usize, len: usize, offload: Offload);
    /// Queues a frame the daemon built or kept itself (ARP, ICMP, frames
    /// parked while a neighbour was resolved), with its offload metadata.
    fn queue_new(&mut self, out: PortId, frame: &[u8], offload: Offload);
    /// Sends everything queued; returns the number of frames the kernel refused.
    fn flush(&mut self) -> io::Result<usize>;
}
