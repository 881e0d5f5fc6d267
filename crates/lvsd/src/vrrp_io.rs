//! VRRP on the wire: one raw IP socket (protocol 112) per instance, bound
//! to its interface, joined to 224.0.0.18 (or ff02::12), sending with TTL
//! 255 from the interface's own address. The state machines are in
//! `vrrp.rs`; this carries their packets and reports their transitions.

use crate::vrrp::{Action, Advert, Config, Router, State, GROUP_V4, GROUP_V6, PROTO, TTL};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// One configured instance and its socket.
pub struct Instance {
    pub name: String,
    pub ifname: String,
    pub router: Router,
    socket: Socket,
    /// This router's address on the link (the advertisements' source).
    local: IpAddr,
    /// Advertisements received and discarded (bad TTL, checksum, …).
    pub discarded: u64,
    pub sent: u64,
    pub received: u64,
}

/// What changed for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub instance: usize,
    pub master: bool,
}

impl Instance {
    pub fn open(name: &str, ifname: &str, cfg: Config) -> io::Result<Instance> {
        let v6 = cfg.addrs.first().is_some_and(|a| a.is_ipv6());
        let ifindex = ifindex(ifname).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}"))
        })?;
        let local = local_address(ifname, v6).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "interface {ifname} has no {} address to send VRRP from",
                    if v6 { "link-local IPv6" } else { "IPv4" }
                ),
            )
        })?;
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(
            domain,
            Type::RAW,
            Some(socket2::Protocol::from(i32::from(PROTO))),
        )?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        if v6 {
            socket.set_multicast_if_v6(ifindex)?;
            socket.set_multicast_hops_v6(u32::from(TTL))?;
            socket.set_multicast_loop_v6(false)?;
            socket.join_multicast_v6(&GROUP_V6, ifindex)?;
            set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        } else {
            let m = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from(GROUP_V4).to_be(),
                },
                // The source of what is sent: exactly the address the
                // checksum is computed over (binding the socket to it would
                // filter out what arrives for the group).
                imr_address: libc::in_addr {
                    s_addr: match local {
                        IpAddr::V4(a) => u32::from(a).to_be(),
                        IpAddr::V6(_) => 0,
                    },
                },
                imr_ifindex: ifindex as i32,
            };
            setsockopt(&socket, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &m)?;
            setsockopt(&socket, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m)?;
            socket.set_multicast_ttl_v4(u32::from(TTL))?;
            socket.set_multicast_loop_v4(false)?;
        }
        socket.set_nonblocking(true)?;
        Ok(Instance {
            name: name.to_string(),
            ifname: ifname.to_string(),
            router: Router::new(cfg),
            socket,
            local,
            discarded: 0,
            sent: 0,
            received: 0,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub fn is_master(&self) -> bool {
        self.router.state == State::Master
    }

    fn send(&mut self, priority: u8) {
        let a = Advert {
            vrid: self.router.cfg.vrid,
            priority,
            interval_cs: self.router.cfg.interval_cs,
            addrs: self.router.cfg.addrs.clone(),
        };
        let msg = a.encode(self.local);
        let to = match self.local {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(GROUP_V4), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(GROUP_V6), 0),
        };
        if self.socket.send_to(&msg, &SockAddr::from(to)).is_ok() {
            self.sent += 1;
        }
    }

    /// Carries out actions; returns whether the role changed.
    fn act(&mut self, actions: &mut Vec<Action>) -> Option<bool> {
        let mut changed = None;
        for a in actions.drain(..) {
            match a {
                Action::Send(p) => self.send(p),
                Action::BecameMaster => changed = Some(true),
                Action::BecameBackup => changed = Some(false),
            }
        }
        changed
    }

    /// Reads every waiting advertisement.
    fn receive(&mut self, now: u64, actions: &mut Vec<Action>) {
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            let Some((n, src, hops)) = recv_with_hops(&self.socket, &mut buf) else {
                break;
            };
            let b = &buf[..n];
            let parsed = match src {
                IpAddr::V4(_) => {
                    // An IPv4 raw socket hands over the IP header too.
                    let ihl = usize::from(b.first().map_or(0, |v| v & 0x0f)) * 4;
                    if b.len() < ihl || ihl < 20 {
                        self.discarded += 1;
                        continue;
                    }
                    Advert::decode(&b[ihl..], src, b[8])
                }
                // IPv6: the hop limit comes as ancillary data (RFC 5798
                // §7.1: anything but 255 may come from off the link).
                IpAddr::V6(_) => Advert::decode(b, src, hops.unwrap_or(0)),
            };
            match parsed {
                Ok(a) if src != self.local => {
                    self.received += 1;
                    self.router.on_advert(now, &a, src, self.local, actions);
                }
                Ok(_) => {}
                Err(_) => self.discarded += 1,
            }
        }
    }
}

/// Every instance, stepped by the packet loop.
#[derive(Default)]
pub struct Vrrp {
    pub instances: Vec<Instance>,
    actions: Vec<Action>,
}

impl Vrrp {
    pub fn start(&mut self, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            inst.router.start(now, &mut self.actions);
            if let Some(m) = inst.act(&mut self.actions) {
                changes.push(Change {
                    instance: i,
                    master: m,
                });
            }
        }
        changes
    }

    pub fn fds(&self) -> Vec<RawFd> {
        self.instances.iter().map(Instance::fd).collect()
    }

    /// Reads advertisements (all sockets; cheap when none wait) and runs
    /// the timers that are due.
    pub fn step(&mut self, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            inst.receive(now, &mut self.actions);
            if inst.router.deadline().is_some_and(|t| now >= t) {
                inst.router.on_timer(now, &mut self.actions);
            }
            if let Some(m) = inst.act(&mut self.actions) {
                changes.push(Change {
                    instance: i,
                    master: m,
                });
            }
        }
        changes
    }

    /// Milliseconds until the next timer (for the loop's poll timeout).
    pub fn next_in(&self, now: u64) -> Option<u64> {
        self.instances
            .iter()
            .filter_map(|i| i.router.deadline())
            .min()
            .map(|t| t.saturating_sub(now))
    }

    /// Masters say goodbye (priority 0) so that a backup takes over at once.
    pub fn shutdown(&mut self) {
        for inst in &mut self.instances {
            inst.router.shutdown(&mut self.actions);
            inst.act(&mut self.actions);
        }
    }

    /// Addresses held by instances that are not master now.
    pub fn not_owned(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.instances
            .iter()
            .filter(|i| !i.is_master())
            .flat_map(|i| i.router.cfg.addrs.iter().copied())
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn set_int(s: &Socket, level: i32, name: i32, v: i32) -> io::Result<()> {
    setsockopt(s, level, name, &v)
}

fn setsockopt<T>(s: &Socket, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: setsockopt with a live value of T and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's first IPv4 address, or its link-local IPv6 address.
fn local_address(ifname: &str, v6: bool) -> Option<IpAddr> {
    let mut found = None;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says its type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if !v6 && family == libc::AF_INET {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
            break;
        }
        if v6 && family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            if a.segments()[0] & 0xffc0 == 0xfe80 {
                found = Some(IpAddr::V6(a));
                break;
            }
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// One datagram: its length, its source, and (IPv6) its hop limit from
/// the `IPV6_HOPLIMIT` control message.
fn recv_with_hops(s: &Socket, buf: &mut [u8]) -> Option<(usize, IpAddr, Option<u8>)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below are live
    // for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg with the live buffers described by `msg`.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let src = match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let a =
                unsafe { &*(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let a =
                unsafe { &*(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))
        }
        _ => return Some((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), None)),
    };
    let mut hops = None;
    // SAFETY: walking the control messages recvmsg wrote into `control`
    // with the libc macros, which stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
                hops = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, src, hops))
}
