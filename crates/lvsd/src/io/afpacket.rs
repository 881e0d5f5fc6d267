//! AF_PACKET backend: one raw socket per interface, `recvmmsg`/`sendmmsg`
//! batches, and a virtio-net header on every frame (`PACKET_VNET_HDR`) so
//! that checksum-offloaded and GSO packets from veth/containers are handled
//! correctly rather than broken (see the design's pitfalls).

use super::{Offload, PacketIo, PortId, RxMeta};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Frames per batch.
pub const BATCH: usize = 64;
/// Size of the virtio-net header in front of each frame.
const VNET_LEN: usize = 10;
/// Free bytes in front of each received frame's virtio-net header, for an
/// encapsulation written in place.
const HEADROOM: usize = lvs_core::xmit::HEADROOM;
/// Room for the largest GSO super-packet plus headers.
const SLOT: usize = HEADROOM + VNET_LEN + 65536 + 64;
/// Slots for frames the daemon builds itself, per flush.
const NEW_SLOTS: usize = 64;
/// Room for a jumbo frame (fragments and segments lvsd makes itself follow
/// the path MTU, up to 9216).
const NEW_SLOT: usize = VNET_LEN + 9216 + 64;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_AUXDATA: libc::c_int = 8;
/// `tp_status` bit: the frame carried an 802.1Q tag the kernel stripped.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// Control-message room per received frame (one `tpacket_auxdata`).
const CTRL_LEN: usize = 64;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: fd is a valid socket; the option value points at a live c_int of the given size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Opens a raw packet socket bound to `ifindex`, with vnet headers.
fn open_socket(ifindex: i32) -> io::Result<OwnedFd> {
    // Protocol 0 at creation: the socket receives nothing until it is bound
    // to one interface, so no frames of other interfaces slip in.
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
    // Our own transmissions would otherwise come back to us.
    setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    // Tells which frames carried a VLAN tag (the kernel strips it before
    // the packet taps): those belong to a VLAN sub-interface.
    setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_AUXDATA, 1)?;
    let _ = setsockopt_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        8 << 20,
    );
    let _ = setsockopt_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        8 << 20,
    );
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a valid sockaddr_ll and the length matches it.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    // Every multicast frame too: neighbour solicitations for the IPv6
    // VIPs go to their solicited-node groups, which the host never joined
    // (a NIC that filters multicast would drop them). Best effort.
    // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = ifindex;
    mr.mr_type = libc::PACKET_MR_ALLMULTI as u16;
    // SAFETY: fd is a valid packet socket; mr is a live packet_mreq of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(
            "interface {ifindex}: all-multicast mode not set ({}); solicitations for IPv6 VIPs may not arrive on NICs that filter multicast",
            io::Error::last_os_error()
        );
    }
    Ok(fd)
}

/// One queued transmission: which buffer, from which offset.
#[derive(Clone, Copy)]
enum TxSrc {
    /// Receive slot `i`, starting at this offset (the virtio-net header).
    Rx(usize, usize),
    New(usize),
}

/// The AF_PACKET backend.
pub struct AfPacket {
    socks: Vec<OwnedFd>,
    rx_buf: Vec<u8>,
    rx_len: [usize; BATCH],
    rx_addr: Vec<libc::sockaddr_ll>,
    /// Control messages of the last batch, and whether each frame was tagged.
    rx_ctrl: Vec<[u64; CTRL_LEN / 8]>,
    rx_vlan: [bool; BATCH],
    new_buf: Vec<u8>,
    new_used: usize,
    /// Per output port: queued frames (source, length including vnet header).
    tx: Vec<Vec<(TxSrc, usize)>>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside iovec/mmsghdr only ever point into this
// struct's own buffers and are rebuilt before each system call.
unsafe impl Send for AfPacket {}

impl AfPacket {
    /// Opens one socket per interface index.
    pub fn open(ifindexes: &[i32]) -> io::Result<AfPacket> {
        let socks = ifindexes
            .iter()
            .map(|&i| open_socket(i))
            .collect::<io::Result<Vec<_>>>()?;
        let n = socks.len();
        // SAFETY: sockaddr_ll, iovec and mmsghdr are plain old data; zero is valid for each.
        let zero_sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(AfPacket {
            socks,
            rx_buf: vec![0u8; BATCH * SLOT],
            rx_len: [0; BATCH],
            rx_addr: vec![zero_sll; BATCH],
            rx_ctrl: vec![[0u64; CTRL_LEN / 8]; BATCH],
            rx_vlan: [false; BATCH],
            new_buf: vec![0u8; NEW_SLOTS * NEW_SLOT],
            new_used: 0,
            tx: (0..n)
                .map(|_| Vec::with_capacity(BATCH + NEW_SLOTS))
                .collect(),
            iov: vec![zero_iov; BATCH + NEW_SLOTS],
            msgs: vec![zero_msg; BATCH + NEW_SLOTS],
        })
    }

    /// The packet sockets, one per port in port order (to filter them).
    pub fn sockets(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.socks.iter().map(|s| s.as_fd())
    }

    /// Whether the auxiliary data of a received frame says it had a VLAN tag.
    fn vlan_tagged(h: &libc::msghdr) -> bool {
        // SAFETY: `h` was filled by recvmmsg with msg_control pointing at
        // our own CTRL_LEN-byte buffer and msg_controllen set to what the
        // kernel wrote; the CMSG macros walk inside those bounds.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    let data = libc::CMSG_DATA(c);
                    let status = std::ptr::read_unaligned(data.cast::<u32>());
                    return status & TP_STATUS_VLAN_VALID != 0;
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        false
    }

    fn read_vnet(h: &[u8]) -> Offload {
        Offload {
            csum_partial: h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0,
            gso_type: h[1],
            hdr_len: u16::from_ne_bytes([h[2], h[3]]),
            gso_size: u16::from_ne_bytes([h[4], h[5]]),
            csum_start: u16::from_ne_bytes([h[6], h[7]]),
            csum_offset: u16::from_ne_bytes([h[8], h[9]]),
        }
    }

    fn write_vnet(h: &mut [u8], o: &Offload) {
        h[0] = if o.csum_partial {
            VIRTIO_NET_HDR_F_NEEDS_CSUM
        } else {
            0
        };
        h[1] = o.gso_type;
        h[2..4].copy_from_slice(&o.hdr_len.to_ne_bytes());
        h[4..6].copy_from_slice(&o.gso_size.to_ne_bytes());
        h[6..8].copy_from_slice(&o.csum_start.to_ne_bytes());
        h[8..10].copy_from_slice(&o.csum_offset.to_ne_bytes());
    }
}

impl PacketIo for AfPacket {
    fn port_count(&self) -> usize {
        self.socks.len()
    }

    fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.as_raw_fd()).collect()
    }

    fn recv(&mut self, port: PortId) -> io::Result<usize> {
        // Queued frames may point into the receive slots about to be reused.
        if self.tx.iter().any(|q| !q.is_empty()) {
            self.flush()?;
        }
        let fd = self.socks[port].as_raw_fd();
        // Raw pointers taken once, so that writing one header does not
        // invalidate the pointers already stored in the others.
        let rx = self.rx_buf.as_mut_ptr();
        let iov = self.iov.as_mut_ptr();
        let msgs = self.msgs.as_mut_ptr();
        let addrs = self.rx_addr.as_mut_ptr();
        let ctrl = self.rx_ctrl.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: i < BATCH and rx_buf has BATCH * SLOT bytes, iov and
            // msgs BATCH + NEW_SLOTS entries, rx_addr BATCH entries; all
            // live as long as self, and the kernel writes through them only
            // during the recvmmsg call below.
            unsafe {
                *iov.add(i) = libc::iovec {
                    iov_base: rx.add(i * SLOT + HEADROOM).cast(),
                    iov_len: SLOT - HEADROOM,
                };
                let m = &mut *msgs.add(i);
                m.msg_hdr.msg_name = addrs.add(i).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov.add(i);
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = ctrl.add(i).cast();
                m.msg_hdr.msg_controllen = CTRL_LEN;
                m.msg_hdr.msg_flags = 0;
                m.msg_len = 0;
            }
        }
        // SAFETY: msgs holds BATCH initialised headers whose buffers and
        // names point into our own live allocations.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.rx_len[i] = self.msgs[i].msg_len as usize;
            self.rx_vlan[i] = Self::vlan_tagged(&self.msgs[i].msg_hdr);
        }
        Ok(n)
    }

    fn rx_frame(&mut self, i: usize) -> (&mut [u8], RxMeta) {
        let total = self.rx_len[i].min(SLOT - HEADROOM);
        // The whole slot: room after the frame too (a reassembled datagram
        // is written there).
        let slot = &mut self.rx_buf[i * SLOT..(i + 1) * SLOT];
        let pkttype = self.rx_addr[i].sll_pkttype;
        if total < VNET_LEN {
            let meta = RxMeta {
                start: 0,
                len: 0,
                to_us: false,
                vlan: false,
                offload: Offload::default(),
            };
            return (slot, meta);
        }
        let offload = Self::read_vnet(&slot[HEADROOM..HEADROOM + VNET_LEN]);
        let meta = RxMeta {
            start: HEADROOM + VNET_LEN,
            len: total - VNET_LEN,
            to_us: pkttype == libc::PACKET_HOST,
            vlan: self.rx_vlan[i],
            offload,
        };
        (slot, meta)
    }

    fn queue_rx(&mut self, i: usize, out: PortId, start: usize, len: usize, offload: Offload) {
        let cap = self.iov.len();
        let Some(q) = self.tx.get_mut(out) else {
            return;
        };
        // The send headers are preallocated: beyond them a frame is dropped;
        // so is a frame that leaves no room for its virtio-net header.
        if i >= BATCH || q.len() >= cap || !(VNET_LEN..SLOT).contains(&start) {
            return;
        }
        let vnet = start - VNET_LEN;
        q.push((TxSrc::Rx(i, vnet), VNET_LEN + len.min(SLOT - start)));
        let base = i * SLOT + vnet;
        Self::write_vnet(&mut self.rx_buf[base..base + VNET_LEN], &offload);
    }

    fn queue_new(&mut self, out: PortId, frame: &[u8], offload: Offload) {
        if self.new_used >= NEW_SLOTS || out < self.tx.len() && self.tx[out].len() >= self.iov.len()
        {
            // Out of slots (a super-packet cut into segments, a packet into
            // fragments): send what is queued and start over. Queued
            // receive slots stay valid until the next `recv`.
            let _ = self.flush();
        }
        if self.new_used >= NEW_SLOTS
            || frame.len() > NEW_SLOT - VNET_LEN
            || out >= self.tx.len()
            || self.tx[out].len() >= self.iov.len()
        {
            return;
        }
        let k = self.new_used;
        self.new_used += 1;
        let slot = &mut self.new_buf[k * NEW_SLOT..(k + 1) * NEW_SLOT];
        Self::write_vnet(&mut slot[..VNET_LEN], &offload);
        slot[VNET_LEN..VNET_LEN + frame.len()].copy_from_slice(frame);
        self.tx[out].push((TxSrc::New(k), VNET_LEN + frame.len()));
    }

    fn flush(&mut self) -> io::Result<usize> {
        let mut refused = 0;
        for port in 0..self.tx.len() {
            let q = std::mem::take(&mut self.tx[port]);
            if q.is_empty() {
                self.tx[port] = q;
                continue;
            }
            let (rx, new) = (self.rx_buf.as_mut_ptr(), self.new_buf.as_mut_ptr());
            let (iov, msgs) = (self.iov.as_mut_ptr(), self.msgs.as_mut_ptr());
            for (j, &(src, len)) in q.iter().enumerate().take(self.iov.len()) {
                // SAFETY: queue_rx/queue_new only queue slots inside rx_buf /
                // new_buf with lengths within the slot, and at most
                // iov.len() (== msgs.len()) frames per port, so j is in
                // bounds; the pointers are used by the sendmmsg calls below
                // while self is borrowed.
                unsafe {
                    let base = match src {
                        TxSrc::Rx(i, off) => rx.add(i * SLOT + off),
                        TxSrc::New(k) => new.add(k * NEW_SLOT),
                    };
                    *iov.add(j) = libc::iovec {
                        iov_base: base.cast(),
                        iov_len: len,
                    };
                    let m = &mut *msgs.add(j);
                    m.msg_hdr.msg_name = std::ptr::null_mut();
                    m.msg_hdr.msg_namelen = 0;
                    m.msg_hdr.msg_iov = iov.add(j);
                    m.msg_hdr.msg_iovlen = 1;
                    m.msg_hdr.msg_control = std::ptr::null_mut();
                    m.msg_hdr.msg_controllen = 0;
                    m.msg_hdr.msg_flags = 0;
                }
            }
            let fd = self.socks[port].as_raw_fd();
            let mut sent = 0usize;
            // Give up only after repeated calls that made no progress.
            let mut stalls = 0;
            while sent < q.len() && stalls < 4 {
                // SAFETY: msgs[sent..q.len()] are initialised headers pointing into our buffers.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.msgs.as_mut_ptr().add(sent),
                        (q.len() - sent) as libc::c_uint,
                        0,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => {
                            stalls += 1;
                            // Socket buffer full: wait briefly for room.
                            let mut pfd = libc::pollfd {
                                fd,
                                events: libc::POLLOUT,
                                revents: 0,
                            };
                            // SAFETY: one valid pollfd.
                            unsafe { libc::poll(&mut pfd, 1, 10) };
                        }
                        // A frame the kernel refuses (e.g. too large): skip it.
                        _ => {
                            sent += 1;
                            refused += 1;
                        }
                    }
                } else if r == 0 {
                    stalls += 1;
                } else {
                    sent += r as usize;
                }
            }
            refused += q.len() - sent;
            let mut q = q;
            q.clear();
            self.tx[port] = q;
        }
        self.new_used = 0;
        Ok(refused)
    }
}
