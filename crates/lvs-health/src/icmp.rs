//! `icmpcheck`: ICMP echo request and reply, IPv4.
//!
//! One socket per source address serves every icmpcheck using it. Each ping
//! registers its (server, sequence) before sending; whichever ping task reads
//! a reply from the socket hands it to the ping it belongs to, so a thousand
//! checks share one socket without reading each other's replies by mistake.
//!
//! The socket is raw (root or `CAP_NET_RAW`), so it sees every ICMP packet of
//! the host: replies are matched on type, identifier, sequence and source.
//! Without privileges it falls back to a ping socket (`SOCK_DGRAM`,
//! allowed by `net.ipv4.ping_group_range`), where the kernel picks the
//! identifier and delivers only our replies.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::io_reason;
use crate::probe::{recv_from, register};

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
const PAYLOAD: &[u8; 16] = b"lvs-health-check";

type Waiters = HashMap<(Ipv4Addr, u16), oneshot::Sender<()>>;

/// A shared ICMP socket and the pings waiting for a reply on it.
#[derive(Debug)]
pub(crate) struct IcmpSocket {
    fd: AsyncFd<Socket>,
    /// Raw socket (IP header included on receive, identifier ours to check).
    raw: bool,
    ident: u16,
    next_seq: AtomicU16,
    waiters: Mutex<Waiters>,
}

impl IcmpSocket {
    /// Opens the socket, bound to `source` if given. Must be called within a
    /// tokio runtime.
    pub(crate) fn open(source: Option<Ipv4Addr>) -> io::Result<Arc<IcmpSocket>> {
        let (socket, raw) = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(s) => (s, true),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => (
                Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))?,
                false,
            ),
            Err(e) => return Err(e),
        };
        socket.set_nonblocking(true)?;
        if let Some(src) = source {
            socket.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
        }
        // Distinguishes our echoes from other pingers' on a raw socket.
        let ident = (std::process::id() as u16)
            ^ source.map_or(0, |s| {
                let o = s.octets();
                u16::from_be_bytes([o[2], o[3]])
            });
        Ok(Arc::new(IcmpSocket {
            fd: register(socket)?,
            raw,
            ident,
            next_seq: AtomicU16::new(0),
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one echo request to `target` and waits for its reply (without a
    /// bound: the caller's timeout cancels it).
    pub(crate) async fn ping(&self, target: Ipv4Addr) -> Result<(), String> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.waiters().insert((target, seq), tx);
        // Unregisters on every way out, including cancellation by the timeout.
        let _pending = Pending {
            socket: self,
            key: (target, seq),
        };

        let packet = echo_request(self.ident, seq);
        let dest = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(target, 0)));
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| format!("ICMP socket: {}", io_reason(&e)))?;
            match guard.try_io(|s| s.get_ref().send_to(&packet, &dest)) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => return Err(format!("sending echo request: {}", io_reason(&e))),
                Err(_would_block) => continue,
            }
        }

        let mut buf = [0u8; 1500];
        loop {
            // Our reply may be read by another ping task: wait for either that
            // hand-over or the socket to have something for us to read.
            let ready = poll_fn(|cx| {
                if let Poll::Ready(r) = Pin::new(&mut rx).poll(cx) {
                    return Poll::Ready(Err(r.is_ok()));
                }
                self.fd.poll_read_ready(cx).map(Ok)
            })
            .await;
            let mut guard = match ready {
                Err(true) => return Ok(()),
                Err(false) => return Err("echo reply lost".to_string()),
                Ok(Ok(g)) => g,
                Ok(Err(e)) => return Err(format!("ICMP socket: {}", io_reason(&e))),
            };
            loop {
                match guard.try_io(|s| recv_from(s.get_ref(), &mut buf)) {
                    Ok(Ok((n, from))) => self.dispatch(&buf[..n], &from),
                    Ok(Err(e)) => return Err(format!("receiving: {}", io_reason(&e))),
                    Err(_would_block) => break,
                }
            }
        }
    }

    /// Hands a received packet to the ping it answers, if any.
    fn dispatch(&self, packet: &[u8], from: &SockAddr) {
        let Some((src, ident, seq)) = parse_reply(packet, self.raw, from) else {
            return;
        };
        if self.raw && ident != self.ident {
            return;
        }
        if let Some(tx) = self.waiters().remove(&(src, seq)) {
            let _ = tx.send(());
        }
    }
}

struct Pending<'a> {
    socket: &'a IcmpSocket,
    key: (Ipv4Addr, u16),
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.socket.waiters().remove(&self.key);
    }
}

/// An echo request with its checksum.
fn echo_request(ident: u16, seq: u16) -> [u8; 8 + PAYLOAD.len()] {
    let mut p = [0u8; 8 + PAYLOAD.len()];
    p[0] = ECHO_REQUEST;
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..].copy_from_slice(PAYLOAD);
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = match *chunk {
            [a, b] => u16::from_be_bytes([a, b]),
            [a] => u16::from_be_bytes([a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// (source, identifier, sequence) of an echo reply; `None` for anything else.
/// A raw socket's packets start with the IPv4 header; a ping socket's with
/// the ICMP header (the source is then the datagram's address).
fn parse_reply(packet: &[u8], raw: bool, from: &SockAddr) -> Option<(Ipv4Addr, u16, u16)> {
    let (src, icmp) = if raw {
        let first = *packet.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || packet.len() < ihl {
            return None;
        }
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        (src, &packet[ihl..])
    } else {
        (*from.as_socket_ipv4()?.ip(), packet)
    };
    if icmp.len() < 8 || icmp[0] != ECHO_REPLY || icmp[1] != 0 {
        return None;
    }
    let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    Some((src, ident, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_bytes() {
        let p = echo_request(0x1234, 7);
        assert_eq!(&p[..8], &[8, 0, 0xce, 0xb2, 0x12, 0x34, 0x00, 0x07]);
        // A packet with its checksum in place sums to zero.
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn parses_a_raw_echo_reply() {
        // IPv4 header (20 bytes, 198.18.0.2 -> 198.18.0.1, proto 1) + echo reply.
        let mut pkt = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1,
        ];
        pkt.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0x00, 0x07]);
        pkt.extend_from_slice(PAYLOAD);
        let from = SockAddr::from(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 0));
        assert_eq!(
            parse_reply(&pkt, true, &from),
            Some((Ipv4Addr::new(198, 18, 0, 2), 0x1234, 7))
        );
        // Our own request seen on loopback is not a reply.
        pkt[20] = ECHO_REQUEST;
        assert_eq!(parse_reply(&pkt, true, &from), None);
        // Truncated.
        assert_eq!(parse_reply(&pkt[..24], true, &from), None);
    }

    #[test]
    fn parses_a_ping_socket_reply() {
        let pkt = [0, 0, 0, 0, 0x00, 0x2a, 0x01, 0x00];
        let from = SockAddr::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        assert_eq!(
            parse_reply(&pkt, false, &from),
            Some((Ipv4Addr::LOCALHOST, 0x2a, 0x100))
        );
    }
}
