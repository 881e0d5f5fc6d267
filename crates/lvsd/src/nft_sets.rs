//! Adding and removing elements of the guard's nftables sets over netlink
//! (`NETLINK_NETFILTER`), in one atomic nf_tables batch, without running
//! `nft`: its text parser spends about 6 µs per element, so 110,000
//! elements took 0.65 s at start; the kernel takes them in a few tens of
//! milliseconds. The table, its chain and its empty sets are still created
//! by `nft` once (`guard::table`): only their elements change while lvsd
//! runs.
//!
//! Message layout (uapi `linux/netfilter/nf_tables.h`, `nfnetlink.h`): a
//! batch-begin message, `NEWSETELEM`/`DELSETELEM` messages for table
//! `lvsd` of family netdev, each carrying a nested list of elements whose
//! key (and, for ranges, end key) is a `NFTA_DATA_VALUE`, and a batch-end
//! message. A key is the concatenation of the set's fields, each padded to
//! a 32-bit register: an IPv4 address (4 bytes), a protocol (1 byte + 3),
//! a port (2 bytes big-endian + 2).

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::os::fd::AsRawFd;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_NETDEV: u8 = 5;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;

/// Elements per message: a nested attribute's length is 16 bits, and the
/// largest element (a range of 16-byte keys) takes 52 bytes.
const PER_MESSAGE: usize = 1000;

/// One element: its key and, in an interval set, the key its range ends at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

/// What a batch does to one set.
pub struct Change<'a> {
    pub add: bool,
    pub set: &'a str,
    pub keys: Vec<Key>,
}

/// Key fields, each padded to a 32-bit register.
pub fn field_addr(k: &mut Vec<u8>, a: std::net::Ipv4Addr) {
    k.extend_from_slice(&a.octets());
}

pub fn field_proto(k: &mut Vec<u8>, p: u8) {
    k.extend_from_slice(&[p, 0, 0, 0]);
}

pub fn field_port(k: &mut Vec<u8>, p: u16) {
    let b = p.to_be_bytes();
    k.extend_from_slice(&[b[0], b[1], 0, 0]);
}

/// Builds the batch that applies `changes` to table `table` (netdev).
pub fn batch(table: &str, changes: &[Change]) -> (Vec<u8>, u32) {
    let mut b = Vec::new();
    let mut seq = 0u32;
    message(
        &mut b,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        &mut seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    let mut acked = 0;
    for c in changes {
        for chunk in c.keys.chunks(PER_MESSAGE) {
            let (ty, flags) = if c.add {
                (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK)
            } else {
                (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
            };
            let at = message(
                &mut b,
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                flags,
                &mut seq,
                NFPROTO_NETDEV,
                0,
            );
            attr_str(&mut b, NFTA_SET_ELEM_LIST_TABLE, table);
            attr_str(&mut b, NFTA_SET_ELEM_LIST_SET, c.set);
            let list = open(&mut b, NFTA_SET_ELEM_LIST_ELEMENTS);
            for k in chunk {
                let elem = open(&mut b, NFTA_LIST_ELEM);
                let key = open(&mut b, NFTA_SET_ELEM_KEY);
                attr(&mut b, NFTA_DATA_VALUE, &k.start);
                close(&mut b, key);
                if let Some(end) = &k.end {
                    let key = open(&mut b, NFTA_SET_ELEM_KEY_END);
                    attr(&mut b, NFTA_DATA_VALUE, end);
                    close(&mut b, key);
                }
                close(&mut b, elem);
            }
            close(&mut b, list);
            finish(&mut b, at);
            acked += 1;
        }
    }
    message(
        &mut b,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        &mut seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    (b, acked)
}

/// Starts a message (header and `nfgenmsg`); returns where it starts.
fn message(b: &mut Vec<u8>, ty: u16, flags: u16, seq: &mut u32, family: u8, res_id: u16) -> usize {
    let at = b.len();
    b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    *seq += 1;
    b.push(family);
    b.push(0); // NFNETLINK_V0
    b.extend_from_slice(&res_id.to_be_bytes());
    if ty == NFNL_MSG_BATCH_BEGIN || ty == NFNL_MSG_BATCH_END {
        finish(b, at);
    }
    at
}

fn finish(b: &mut [u8], at: usize) {
    let len = (b.len() - at) as u32;
    b[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

fn attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    pad(b);
}

fn attr_str(b: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    attr(b, ty, &v);
}

fn pad(b: &mut Vec<u8>) {
    b.resize(b.len().next_multiple_of(4), 0);
}

fn open(b: &mut Vec<u8>, ty: u16) -> usize {
    let at = b.len();
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    at
}

fn close(b: &mut [u8], at: usize) {
    let len = (b.len() - at) as u16;
    b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Sends the batch and waits for the kernel's verdict on each message: all
/// are applied, or (an error in any) none.
pub fn apply(table: &str, changes: &[Change]) -> Result<(), String> {
    if changes.iter().all(|c| c.keys.is_empty()) {
        return Ok(());
    }
    let (buf, acks) = batch(table, changes);
    let sock = Socket::new(NETLINK_NETFILTER).map_err(|e| format!("netlink socket: {e}"))?;
    let _ = sock.set_cap_ack(true);
    // The whole batch is one datagram: the send buffer must hold it.
    grow_send_buffer(&sock, buf.len() + 4096);
    sock.send_to(&buf, &SocketAddr::new(0, 0), 0)
        .map_err(|e| format!("netlink send of {} bytes: {e}", buf.len()))?;
    // The kernel handles the batch while sending; its answers are queued
    // already, but wait a little in case it is slow.
    let fd = sock.as_raw_fd();
    set_receive_timeout(fd);
    let mut got = 0;
    let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while got < acks {
        rbuf.clear();
        let n = sock
            .recv(&mut rbuf, 0)
            .map_err(|e| format!("netlink: no answer from nf_tables: {e}"))?;
        for err in errors(&rbuf[..n.min(rbuf.len())]) {
            if err != 0 {
                return Err(format!(
                    "nf_tables refused the batch: {}",
                    std::io::Error::from_raw_os_error(-err)
                ));
            }
            got += 1;
        }
    }
    Ok(())
}

/// The error codes of the `NLMSG_ERROR` messages in `buf` (0: an ack).
/// Malformed input ends the walk.
pub fn errors(buf: &[u8]) -> Vec<i32> {
    let mut v = Vec::new();
    let mut at = 0;
    while buf.len() - at >= NLMSG_HDRLEN {
        let h = &buf[at..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        if len < NLMSG_HDRLEN || len > h.len() {
            break;
        }
        if ty == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
            v.push(i32::from_ne_bytes([h[16], h[17], h[18], h[19]]));
        }
        at += (len + 3) & !3;
        if at > buf.len() {
            break;
        }
    }
    v
}

fn grow_send_buffer(sock: &Socket, size: usize) {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: setsockopt reads one c_int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn set_receive_timeout(fd: i32) {
    let tv = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads one timeval from a live local.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_element_batch_bytes() {
        let mut k = Vec::new();
        field_addr(&mut k, std::net::Ipv4Addr::new(198, 18, 0, 100));
        field_proto(&mut k, 6);
        field_port(&mut k, 80);
        assert_eq!(k, [198, 18, 0, 100, 6, 0, 0, 0, 0, 80, 0, 0]);
        let (b, acks) = batch(
            "lvsd",
            &[Change {
                add: true,
                set: "svc",
                keys: vec![Key {
                    start: k,
                    end: None,
                }],
            }],
        );
        assert_eq!(acks, 1);
        let ne16 = |v: u16| v.to_ne_bytes();
        let ne32 = |v: u32| v.to_ne_bytes();
        let mut want: Vec<u8> = Vec::new();
        // batch begin: 20 bytes, type 0x10, request, seq 0, res_id 10 (BE)
        want.extend(ne32(20));
        want.extend(ne16(0x10));
        want.extend(ne16(1));
        want.extend(ne32(0));
        want.extend(ne32(0));
        want.extend([0, 0, 0, 10]);
        // NEWSETELEM (0x0a0c), request|ack|create, seq 1, netdev
        let body_len = 20 + 12 + 8 + (4 + 4 + 4 + 4 + 12);
        want.extend(ne32(body_len as u32));
        want.extend(ne16(0x0a0c));
        want.extend(ne16(0x405));
        want.extend(ne32(1));
        want.extend(ne32(0));
        want.extend([5, 0, 0, 0]);
        want.extend(ne16(9));
        want.extend(ne16(1));
        want.extend(*b"lvsd\0\0\0\0");
        want.extend(ne16(8));
        want.extend(ne16(2));
        want.extend(*b"svc\0");
        want.extend(ne16(4 + 4 + 4 + 4 + 12));
        want.extend(ne16(3 | 0x8000));
        want.extend(ne16(4 + 4 + 4 + 12));
        want.extend(ne16(1 | 0x8000));
        want.extend(ne16(4 + 4 + 12));
        want.extend(ne16(1 | 0x8000));
        want.extend(ne16(4 + 12));
        want.extend(ne16(1));
        want.extend([198, 18, 0, 100, 6, 0, 0, 0, 0, 80, 0, 0]);
        // batch end, seq 2
        want.extend(ne32(20));
        want.extend(ne16(0x11));
        want.extend(ne16(1));
        want.extend(ne32(2));
        want.extend(ne32(0));
        want.extend([0, 0, 0, 10]);
        assert_eq!(b, want);
    }

    #[test]
    fn large_changes_are_split_in_messages_of_one_batch() {
        let keys: Vec<Key> = (0..2500u16)
            .map(|p| {
                let mut k = vec![198, 18, 0, 1];
                field_proto(&mut k, 17);
                field_port(&mut k, p);
                Key {
                    start: k.clone(),
                    end: Some(k),
                }
            })
            .collect();
        let (b, acks) = batch(
            "lvsd",
            &[Change {
                add: false,
                set: "flows",
                keys,
            }],
        );
        assert_eq!(acks, 3);
        // Each message's length fits its 16-bit nested list.
        let mut at = 0;
        let mut n = 0;
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            assert!(len < 65536);
            at += len;
            n += 1;
        }
        assert_eq!((n, at), (5, b.len()));
    }

    #[test]
    fn kernel_answers_are_read_defensively() {
        let mut m = Vec::new();
        m.extend(36u32.to_ne_bytes());
        m.extend(NLMSG_ERROR.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend((-2i32).to_ne_bytes());
        m.extend([0u8; 16]);
        assert_eq!(errors(&m), vec![-2]);
        // Truncated, zero-length, oversized: no panic, nothing more read.
        for cut in 0..m.len() {
            let _ = errors(&m[..cut]);
        }
        let mut bad = m.clone();
        bad[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(errors(&bad), Vec::<i32>::new());
        bad[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(errors(&bad), Vec::<i32>::new());
    }
}
