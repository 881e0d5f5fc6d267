//! What lvsd knows of its namespace's network: the interfaces it attaches
//! to and a neighbour (ARP) cache of its own (routes come from `rtnl`).

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

/// An interface lvsd sends and receives on.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub index: i32,
    pub mac: [u8; 6],
    /// IPv4 addresses the kernel has on it (used as ARP sender address).
    pub addrs: Vec<Ipv4Addr>,
    /// Its IPv6 addresses (from rtnetlink; the source of solicitations).
    pub addrs6: Vec<Ipv6Addr>,
    pub up: bool,
    pub loopback: bool,
    /// Ethernet framing (ARPHRD_ETHER): the only kind lvsd can drive.
    pub ethernet: bool,
    /// The interface MTU (the route MTU lvsd uses towards its neighbours).
    pub mtu: u16,
}

/// The MTU of interface `name` (1500 if sysfs does not say).
fn read_mtu(name: &str) -> u16 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1500)
}

/// Lists the namespace's interfaces (getifaddrs).
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<Interface> = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and points at a sockaddr of the family it names.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let entry = match out.iter().position(|i| i.name == name) {
            Some(k) => k,
            None => {
                out.push(Interface {
                    name: name.clone(),
                    index: 0,
                    mac: [0; 6],
                    addrs: vec![],
                    addrs6: vec![],
                    up: ifa.ifa_flags & libc::IFF_UP as u32 != 0,
                    loopback: ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0,
                    ethernet: false,
                    mtu: read_mtu(&name),
                });
                out.len() - 1
            }
        };
        if family == libc::AF_PACKET {
            // SAFETY: for AF_PACKET entries ifa_addr points at a sockaddr_ll.
            let sll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
            out[entry].index = sll.sll_ifindex;
            out[entry].ethernet = sll.sll_hatype == libc::ARPHRD_ETHER;
            if sll.sll_halen == 6 {
                out[entry].mac.copy_from_slice(&sll.sll_addr[..6]);
            }
        } else if family == libc::AF_INET {
            // SAFETY: for AF_INET entries ifa_addr points at a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out[entry]
                .addrs
                .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
    }
    // SAFETY: head came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out.retain(|i| i.index > 0);
    Ok(out)
}

/// True if the interface is enslaved to a bridge or bond (its master is
/// attached instead, or frames would be seen twice).
pub fn has_master(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("master")
        .exists()
}

/// An address a neighbour can have: IPv4 (ARP) or IPv6 (NDP).
pub trait NeighbourAddr: Copy + Eq + std::hash::Hash {
    /// Not one that names no single host (unspecified, broadcast,
    /// multicast).
    fn unicast(&self) -> bool;
}

impl NeighbourAddr for Ipv4Addr {
    fn unicast(&self) -> bool {
        !self.is_unspecified() && !self.is_broadcast() && !self.is_multicast()
    }
}

impl NeighbourAddr for Ipv6Addr {
    fn unicast(&self) -> bool {
        !self.is_unspecified() && !self.is_multicast()
    }
}

/// lvsd's own neighbour cache: (port, address) → MAC, one for ARP and one
/// for NDP.
#[derive(Debug)]
pub struct Neighbours<A = Ipv4Addr> {
    map: HashMap<(usize, A), ([u8; 6], Instant)>,
}

impl<A> Default for Neighbours<A> {
    fn default() -> Self {
        Neighbours {
            map: HashMap::new(),
        }
    }
}

impl<A: NeighbourAddr> Neighbours<A> {
    /// Most entries kept; past it the least recently confirmed goes.
    pub const MAX: usize = 16_384;
    /// An entry not confirmed for this long is forgotten (and the address
    /// asked again when needed).
    pub const STALE: Duration = Duration::from_secs(300);

    #[inline]
    pub fn get(&self, port: usize, ip: A) -> Option<[u8; 6]> {
        self.map.get(&(port, ip)).map(|&(m, _)| m)
    }
    /// Records (or confirms) what an ARP or NDP message told us.
    pub fn learn(&mut self, port: usize, ip: A, mac: [u8; 6]) {
        if mac == [0; 6] || mac[0] & 1 != 0 || !ip.unicast() {
            return;
        }
        let now = Instant::now();
        if let Some(e) = self.map.get_mut(&(port, ip)) {
            *e = (mac, now);
            return;
        }
        if self.map.len() >= Self::MAX {
            // A flood of distinct senders: forget the oldest eighth at once,
            // so each insertion costs O(1) amortised, not a full scan.
            let mut times: Vec<Instant> = self.map.values().map(|&(_, t)| t).collect();
            let (_, &mut cutoff, _) = times.select_nth_unstable(Self::MAX / 8);
            self.map.retain(|_, &mut (_, t)| t > cutoff);
        }
        self.map.insert((port, ip), (mac, now));
    }
    /// Updates an entry that exists; learns nothing new.
    pub fn confirm(&mut self, port: usize, ip: A, mac: [u8; 6]) {
        if self.map.contains_key(&(port, ip)) {
            self.learn(port, ip, mac);
        }
    }
    /// Forgets entries not confirmed for `STALE`.
    pub fn age(&mut self) {
        let now = Instant::now();
        self.map
            .retain(|_, &mut (_, t)| now.duration_since(t) < Self::STALE);
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every neighbour's address.
    pub fn addresses(&self) -> impl Iterator<Item = A> + '_ {
        self.map.keys().map(|&(_, ip)| ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_cache_is_bounded_and_confirm_learns_nothing_new() {
        let mut n = Neighbours::default();
        let mac = [2, 0, 0, 0, 0, 1];
        n.confirm(0, Ipv4Addr::new(198, 18, 0, 9), mac);
        assert_eq!(n.len(), 0);
        for i in 0..(Neighbours::<Ipv4Addr>::MAX as u32 + 100) {
            n.learn(0, Ipv4Addr::from(0xc612_0000 + i), mac);
            assert!(n.len() <= Neighbours::<Ipv4Addr>::MAX);
        }
        let last = Ipv4Addr::from(0xc612_0000 + Neighbours::<Ipv4Addr>::MAX as u32 + 99);
        assert_eq!(n.get(0, last), Some(mac));
        n.confirm(0, last, [2, 0, 0, 0, 0, 2]);
        assert_eq!(n.get(0, last), Some([2, 0, 0, 0, 0, 2]));
        // Multicast/broadcast MACs and the zero address are never learned.
        n.learn(1, Ipv4Addr::new(198, 18, 0, 1), [1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(n.get(1, Ipv4Addr::new(198, 18, 0, 1)), None);
    }

    #[test]
    fn neighbours_ignore_multicast_and_zero() {
        let mut n = Neighbours::default();
        n.learn(0, Ipv4Addr::new(198, 18, 0, 2), [1, 0, 0x5e, 0, 0, 1]);
        n.learn(0, Ipv4Addr::new(198, 18, 0, 2), [0; 6]);
        assert_eq!(n.len(), 0);
        n.learn(0, Ipv4Addr::new(198, 18, 0, 2), [2, 0, 0, 0, 0, 1]);
        assert_eq!(
            n.get(0, Ipv4Addr::new(198, 18, 0, 2)),
            Some([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(n.get(1, Ipv4Addr::new(198, 18, 0, 2)), None);
    }
}

/// The memory figure the IPVS defenses follow (connections.md §17.1): free
/// plus buffer memory, in 4 KiB pages, from /proc/meminfo.
pub fn available_memory_pages() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_pages(&text)
}

/// `MemFree + Buffers` of a /proc/meminfo text, in 4 KiB pages.
fn meminfo_pages(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("MemFree")? + field("Buffers")?) / 4)
}

#[cfg(test)]
mod meminfo_tests {
    #[test]
    fn free_plus_buffers_in_pages() {
        let t = "MemTotal:       24000000 kB\nMemFree:        14000000 kB\nMemAvailable:   23000000 kB\nBuffers:            4000 kB\n";
        assert_eq!(super::meminfo_pages(t), Some((14_000_000 + 4000) / 4));
        assert_eq!(super::meminfo_pages("MemFree: 1 kB\n"), None);
        assert!(super::available_memory_pages().is_some());
    }
}
