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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub protocol: u8,
    pub addr: IpAddr,
    pub port: u16,
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
