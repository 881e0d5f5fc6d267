//! Virtual services and their destinations (real servers), as IPVS models them.

use crate::sched::Scheduler;
use crate::stats::{Counters, Estimator};
use std::net::IpAddr;

/// Identifies a destination in the engine's destination pool.
pub type DestId = u32;
/// Identifies a service in the engine's service pool.
pub type SvcId = u32;

/// Destination flag: linked in a service (cleared when deleted).
pub const DEST_F_AVAILABLE: u32 = 0x0001;
/// Destination flag: upper connection threshold reached.
pub const DEST_F_OVERLOAD: u32 = 0x0002;

/// Forwarding method of a destination (connection flag values 0..3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Forward {
    Masq = 0,
    Local = 1,
    Tunnel = 2,
    Route = 3,
}

/// Encapsulation of a tunnelling destination (`--tun-type`, forwarding.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TunnelType {
    /// IP in IP (protocol 4, or 41 for an IPv6 inner packet).
    #[default]
    Ipip = 0,
    /// Generic UDP Encapsulation to `Tunnel::port`.
    Gue = 1,
    /// GRE (protocol 47), without key or sequence number.
    Gre = 2,
}

/// Checksum option of a tunnel (`--tun-nocsum`, `--tun-csum`, `--tun-remcsum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelCsum {
    /// No outer checksum (the default).
    #[default]
    NoCsum,
    /// GUE: UDP checksum; GRE: the C bit and a GRE checksum.
    Csum,
    /// GUE remote checksum offload; for forwarded packets (never partial
    /// when received from the network) the bytes are those of `Csum`.
    RemCsum,
}

/// The tunnel settings of a destination; meaningful with `Forward::Tunnel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tunnel {
    pub kind: TunnelType,
    /// GUE destination port (`--tun-port`); 0 for the other types.
    pub port: u16,
    pub csum: TunnelCsum,
}

impl Tunnel {
    /// Bytes the encapsulation adds after the outer IP header (§7.5).
    pub fn encap_len(&self) -> usize {
        match (self.kind, self.csum) {
            (TunnelType::Ipip, _) => 0,
            (TunnelType::Gue, _) => 8 + 4,
            (TunnelType::Gre, TunnelCsum::NoCsum) => 4,
            (TunnelType::Gre, _) => 8,
        }
    }
}

/// A virtual service key: protocol number, virtual address, port.
///
/// A firewall-mark service (`ipvsadm -f`) has protocol 0 (IPPROTO_IP), the
/// mark in `addr` — as an IPv4 address, or in the first 32 bits of an IPv6
/// address for an IPv6 one (`-6`) — and port 0: the kernel's own encoding
/// of fwmark persistence templates (connections.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub protocol: u8,
    pub addr: IpAddr,
    pub port: u16,
}

impl ServiceKey {
    /// The key of firewall-mark service `mark` (IPv6 when `v6`).
    pub fn fwmark(mark: u32, v6: bool) -> ServiceKey {
        let addr = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(mark) << 96))
        } else {
            IpAddr::V4(std::net::Ipv4Addr::from(mark))
        };
        ServiceKey {
            protocol: 0,
            addr,
            port: 0,
        }
    }

    /// The mark of a firewall-mark service.
    pub fn mark(&self) -> Option<u32> {
        if self.protocol != 0 {
            return None;
        }
        Some(match self.addr {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => (u128::from(a) >> 96) as u32,
        })
    }
}

/// What lvsd's flows match (the kernel's packet marks come from netfilter
/// rules, which run after lvsd's taps; flows are lvsd's own matcher): a
/// destination prefix, optionally a source prefix, a protocol and port
/// ranges. A packet that matches gets `mark`, and is balanced by the
/// firewall-mark service of that mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub dst: IpAddr,
    pub dst_len: u8,
    pub src: Option<(IpAddr, u8)>,
    /// `None`: TCP, UDP and SCTP.
    pub protocol: Option<u8>,
    /// Inclusive destination port ranges; empty: every port.
    pub ports: Vec<(u16, u16)>,
    pub mark: u32,
}

/// Whether `a` is in `net/len` (same family).
pub fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

impl Flow {
    /// Whether a packet matches.
    pub fn matches(&self, protocol: u8, src: IpAddr, dst: IpAddr, dport: u16) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
            && in_prefix(dst, self.dst, self.dst_len)
            && self.src.is_none_or(|(n, l)| in_prefix(src, n, l))
            && (self.ports.is_empty() || self.ports.iter().any(|&(a, b)| (a..=b).contains(&dport)))
    }
}

/// A real server of one service.
#[derive(Debug, Clone)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    /// Encapsulation, for `Forward::Tunnel`.
    pub tunnel: Tunnel,
    /// Current weight (0 = quiesced).
    pub weight: i32,
    /// Most recent non-zero weight (schedulers.md §0.2).
    pub last_weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    /// `DEST_F_*` bits.
    pub flags: u32,
    /// The service this destination belongs (or belonged) to.
    pub svc: SvcId,
    /// Unique for the engine's lifetime (slab ids are reused; this is not).
    pub uid: u64,
    /// That service's key (still meaningful after the service is gone).
    pub svc_key: ServiceKey,
    /// Connection entries still pointing here (keeps a deleted destination alive).
    pub refs: u32,
    /// Deleted and unreferenced since this time (the trash timer's
    /// `idle_start`, connections.md §15); freed 120 s later.
    pub trash_idle_since: Option<u64>,
    pub stats: Counters,
}

impl Dest {
    /// True when the OVERLOAD flag is set.
    #[inline]
    pub fn overloaded(&self) -> bool {
        self.flags & DEST_F_OVERLOAD != 0
    }
    /// True while linked in its service.
    #[inline]
    pub fn available(&self) -> bool {
        self.flags & DEST_F_AVAILABLE != 0
    }
    /// The load figure of lc/wlc/lblc/lblcr (schedulers.md §0.4). Computed
    /// like the kernel's `int` helper, wrapping past 2^23 active connections,
    /// then widened for the s64 cross-multiplication.
    #[inline]
    pub fn overhead(&self) -> i64 {
        let active = self.active_conns as i32;
        let inactive = self.inact_conns as i32;
        i64::from(active.wrapping_shl(8).wrapping_add(inactive))
    }
    /// The port this real server answers from: its own, or when it has
    /// none the service's (0 for an all-port service: any port).
    #[inline]
    pub fn reply_port(&self) -> u16 {
        if self.port != 0 {
            self.port
        } else {
            self.svc_key.port
        }
    }
    /// The flags a new entry bound here starts with (connections.md §2):
    /// the forwarding method, INACTIVE, and NOOUTPUT unless it is NAT.
    #[inline]
    pub fn conn_flags(&self) -> u32 {
        use crate::conn::flags;
        let mut f = self.forward as u32 | flags::INACTIVE;
        if self.forward != Forward::Masq {
            f |= flags::NOOUTPUT;
        }
        f
    }
    /// Re-evaluates OVERLOAD after a bind (schedulers.md §0.3).
    pub(crate) fn check_overload_on_bind(&mut self) {
        if self.u_threshold != 0 && self.active_conns + self.inact_conns >= self.u_threshold {
            self.flags |= DEST_F_OVERLOAD;
        }
    }
    /// Re-evaluates OVERLOAD after an unbind (schedulers.md §0.3).
    pub(crate) fn check_overload_on_unbind(&mut self) {
        let total = u64::from(self.active_conns) + u64::from(self.inact_conns);
        let clear = if self.l_threshold != 0 {
            total < u64::from(self.l_threshold)
        } else if self.u_threshold != 0 {
            total * 4 < u64::from(self.u_threshold) * 3
        } else {
            true
        };
        if clear {
            self.flags &= !DEST_F_OVERLOAD;
        }
    }
}

/// Service options beyond the scheduler: persistence and one-packet
/// scheduling (`ipvsadm -p`, `-M`, `-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Persistence timeout in seconds (`-p`); `None`: not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity: an IPv4 netmask (host order, e.g.
    /// `0xffff_ff00`) or, for IPv6 services, a prefix length (1..=128).
    pub netmask: u32,
    /// One-packet scheduling (`-o`; effective for UDP only).
    pub one_packet: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            persistent: None,
            netmask: u32::MAX,
            one_packet: false,
        }
    }
}

impl ServiceOptions {
    /// The client network a persistence template is keyed by (§8.1).
    pub fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & self.netmask).into()),
            IpAddr::V6(a) => {
                let plen = self.netmask.min(128);
                let mask = if plen == 0 {
                    0
                } else {
                    u128::MAX << (128 - plen)
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

/// A virtual service: key, scheduler and destination list (front first).
pub struct Service {
    pub key: ServiceKey,
    /// Persistence and one-packet scheduling.
    pub opts: ServiceOptions,
    pub scheduler: Box<dyn Scheduler>,
    /// Scheduler flag bits (`IP_VS_SVC_F_SCHED1..3`).
    pub sched_flags: u32,
    /// Destinations in list order: new destinations are inserted at the front.
    pub dests: Vec<DestId>,
    /// Live counters (the data path adds to these).
    pub stats: Counters,
    /// The service's rate estimator: what listings show (connections.md §19).
    pub est: Estimator,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(active: u32, inactive: u32) -> Dest {
        Dest {
            tunnel: Default::default(),
            addr: std::net::Ipv4Addr::new(198, 18, 1, 1).into(),
            port: 80,
            forward: Forward::Masq,
            weight: 1,
            last_weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            active_conns: active,
            inact_conns: inactive,
            persist_conns: 0,
            flags: DEST_F_AVAILABLE,
            svc: 0,
            uid: 1,
            svc_key: ServiceKey {
                protocol: 6,
                addr: std::net::Ipv4Addr::new(198, 18, 0, 100).into(),
                port: 80,
            },
            refs: 0,
            trash_idle_since: None,
            stats: Counters::default(),
        }
    }

    #[test]
    fn overhead_is_the_kernels_int_formula() {
        assert_eq!(dest(1, 0).overhead(), 256);
        assert_eq!(dest(2, 7).overhead(), 519);
        // 2^23 active connections: (1 << 31) wraps to i32::MIN in the kernel.
        assert_eq!(dest(1 << 23, 0).overhead(), i64::from(i32::MIN));
    }
}
