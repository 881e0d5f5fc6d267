//! `arpcheck`: an ARP who-has for the server, sent on an `AF_PACKET` socket
//! bound to the interface; up when a reply from the server's address comes
//! back. IPv4 only.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use crate::io_reason;
use crate::probe::{recv_from, register};
use crate::CheckSpec;

const ETH_P_ARP: u16 = 0x0806;
const ARPHRD_ETHER: u16 = 1;
const ETH_P_IP: u16 = 0x0800;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;
/// An Ethernet/IPv4 ARP packet (RFC 826).
const ARP_LEN: usize = 28;

/// The link an ARP request goes out on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    index: u32,
    mac: [u8; 6],
    /// Sender protocol address of the request.
    source: Ipv4Addr,
}

pub(crate) async fn check(spec: &CheckSpec, iface: Option<&str>) -> Result<(), String> {
    let IpAddr::V4(target) = spec.addr else {
        return Err("arpcheck supports IPv4 servers only".to_string());
    };
    let source = match spec.source {
        None => None,
        Some(IpAddr::V4(s)) => Some(s),
        Some(IpAddr::V6(_)) => return Err("arpcheck: IPv6 source for an IPv4 server".to_string()),
    };
    let link = link(target, iface, source)?;

    let protocol = Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol))
        .map_err(|e| format!("cannot open an ARP socket: {}", io_reason(&e)))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("ARP socket: {}", io_reason(&e)))?;
    // Bound before sending, so that the reply cannot arrive before we listen.
    socket
        .bind(&link_addr(link.index, None))
        .map_err(|e| format!("binding the ARP socket: {}", io_reason(&e)))?;
    let fd = register(socket).map_err(|e| format!("ARP socket: {}", io_reason(&e)))?;

    let request = request(&link, target);
    let broadcast = link_addr(link.index, Some([0xff; 6]));
    loop {
        let mut guard = fd
            .writable()
            .await
            .map_err(|e| format!("ARP socket: {}", io_reason(&e)))?;
        match guard.try_io(|s| s.get_ref().send_to(&request, &broadcast)) {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => return Err(format!("sending ARP request: {}", io_reason(&e))),
            Err(_would_block) => continue,
        }
    }

    let mut buf = [0u8; 1500];
    loop {
        let mut guard = fd
            .readable()
            .await
            .map_err(|e| format!("ARP socket: {}", io_reason(&e)))?;
        match guard.try_io(|s| recv_from(s.get_ref(), &mut buf)) {
            Ok(Ok((n, _))) if is_reply_from(&buf[..n], target) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("receiving: {}", io_reason(&e))),
            Err(_would_block) => {}
        }
    }
}

/// The who-has request for `target`.
fn request(link: &Link, target: Ipv4Addr) -> [u8; ARP_LEN] {
    let mut p = [0u8; ARP_LEN];
    p[0..2].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    p[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&OP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&link.mac);
    p[14..18].copy_from_slice(&link.source.octets());
    // Target hardware address stays zero.
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// Whether `p` is an Ethernet/IPv4 ARP reply sent by `target`.
fn is_reply_from(p: &[u8], target: Ipv4Addr) -> bool {
    p.len() >= ARP_LEN
        && p[0..2] == ARPHRD_ETHER.to_be_bytes()
        && p[2..4] == ETH_P_IP.to_be_bytes()
        && p[4] == 6
        && p[5] == 4
        && p[6..8] == OP_REPLY.to_be_bytes()
        && p[14..18] == target.octets()
}

/// A `sockaddr_ll` for interface `index`, with a destination hardware address
/// when sending.
fn link_addr(index: u32, dest: Option<[u8; 6]>) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types and fits
    // in the storage (view_as asserts the size).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = i32::try_from(index).unwrap_or(0);
    if let Some(mac) = dest {
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&mac);
    }
    let len = std::mem::size_of::<libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}

/// One interface as `getifaddrs` lists it.
#[derive(Clone, Debug, Default)]
struct Interface {
    name: String,
    mac: Option<[u8; 6]>,
    /// IPv4 addresses with their netmasks.
    v4: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// Where to send the who-has: `iface`, or the interface of the route to the
/// server. The sender address is `source`, else the address the route would
/// use, else the interface's address on the server's subnet, else its first
/// IPv4 address, else 0.0.0.0 (an RFC 5227 probe, which hosts answer too).
fn link(target: Ipv4Addr, iface: Option<&str>, source: Option<Ipv4Addr>) -> Result<Link, String> {
    let interfaces = interfaces().map_err(|e| format!("listing interfaces: {}", io_reason(&e)))?;
    let routed = route_source(target, source);
    let found = match iface {
        Some(name) => interfaces.iter().find(|i| i.name == name),
        None => {
            let Some(r) = routed else {
                return Err(format!("no route to {target}"));
            };
            interfaces
                .iter()
                .find(|i| i.v4.iter().any(|(a, _)| *a == r))
        }
    };
    let Some(found) = found else {
        return Err(match iface {
            Some(name) => format!("no interface {name}"),
            None => format!("no interface holds the route source for {target}"),
        });
    };
    let Some(mac) = found.mac else {
        return Err(format!("interface {} has no hardware address", found.name));
    };
    let index = if_index(&found.name)?;
    let in_subnet = |(a, m): &(Ipv4Addr, Ipv4Addr)| {
        u32::from(*a) & u32::from(*m) == u32::from(target) & u32::from(*m)
    };
    let source = source
        .or(routed.filter(|r| found.v4.iter().any(|(a, _)| a == r)))
        .or(found.v4.iter().find(|x| in_subnet(x)).map(|(a, _)| *a))
        .or(found.v4.first().map(|(a, _)| *a))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Ok(Link { index, mac, source })
}

/// The source address the kernel's routing would pick towards `target`,
/// learnt by connecting a UDP socket (which sends nothing).
fn route_source(target: Ipv4Addr, source: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let bind = SocketAddr::new(IpAddr::V4(source.unwrap_or(Ipv4Addr::UNSPECIFIED)), 0);
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect((target, 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn if_index(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the whole call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(format!("no interface {name}"))
    } else {
        Ok(index)
    }
}

/// The host's interfaces with their hardware and IPv4 addresses.
fn interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<Interface> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let entry = match out.iter().position(|i| i.name == name) {
            Some(i) => &mut out[i],
            None => {
                out.push(Interface {
                    name,
                    ..Interface::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family
        // tells its real type; we only read the type the family names.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_PACKET => {
                // SAFETY: for AF_PACKET entries ifa_addr is a sockaddr_ll.
                let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
                if ll.sll_halen == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&ll.sll_addr[..6]);
                    entry.mac = Some(mac);
                }
            }
            libc::AF_INET => {
                // SAFETY: for AF_INET entries ifa_addr (and a non-null
                // ifa_netmask) is a sockaddr_in.
                let addr = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let mask = if ifa.ifa_netmask.is_null() {
                    Ipv4Addr::BROADCAST
                } else {
                    // SAFETY: as above.
                    let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
                    Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr))
                };
                entry
                    .v4
                    .push((Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)), mask));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and no reference into it outlives this.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let link = Link {
            index: 2,
            mac: [0x02, 0, 0, 0, 0, 1],
            source: Ipv4Addr::new(198, 18, 0, 1),
        };
        let p = request(&link, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, who-has
                2, 0, 0, 0, 0, 1, 198, 18, 0, 1, // sender
                0, 0, 0, 0, 0, 0, 198, 18, 0, 2, // target
            ]
        );
    }

    #[test]
    fn reply_matching() {
        let reply = [
            0, 1, 8, 0, 6, 4, 0, 2, // is-at
            2, 0, 0, 0, 0, 2, 198, 18, 0, 2, // sender: the server
            2, 0, 0, 0, 0, 1, 198, 18, 0, 1,
        ];
        assert!(is_reply_from(&reply, Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!is_reply_from(&reply, Ipv4Addr::new(198, 18, 0, 3)));
        assert!(!is_reply_from(&reply[..27], Ipv4Addr::new(198, 18, 0, 2)));
        let mut req = reply;
        req[7] = 1;
        assert!(!is_reply_from(&req, Ipv4Addr::new(198, 18, 0, 2)));
    }

    #[test]
    fn loopback_is_listed() {
        let all = interfaces().unwrap();
        let lo = all.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(
            lo.v4.iter().any(|(a, _)| *a == Ipv4Addr::LOCALHOST),
            "{lo:?}"
        );
        assert_eq!(if_index("lo").unwrap(), 1);
    }
}
