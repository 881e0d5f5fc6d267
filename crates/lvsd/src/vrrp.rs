//! VRRP version 3 (RFC 5798), sans-IO: the advertisement codec (IPv4 and
//! IPv6) and one virtual router's state machine on a virtual clock. The
//! daemon carries the packets (`vrrp_io.rs`) and acts on the transitions:
//! while master, lvsd answers ARP/NDP for the instance's addresses and
//! announces them; while backup, it leaves them to the master.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const PROTO: u8 = 112;
/// The IPv4 and IPv6 multicast groups.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Every VRRP packet is sent, and must arrive, with this TTL / hop limit.
pub const TTL: u8 = 255;

/// An advertisement's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Maximum advertisement interval, centiseconds (12 bits).
    pub interval_cs: u16,
    pub addrs: Vec<IpAddr>,
}

/// Why a received advertisement is discarded (RFC 5798 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Short,
    Version,
    Type,
    Checksum,
    Ttl,
    Length,
}

/// One's-complement sum of 16-bit words.
fn sum(mut acc: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum over the pseudo-header (RFC 5798 §5.2.8: the IPv4 or
/// IPv6 pseudo-header, protocol 112) and the message.
fn checksum(src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut s = match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => sum(sum(0, &a.octets()), &b.octets()),
        (IpAddr::V6(a), IpAddr::V6(b)) => sum(sum(0, &a.octets()), &b.octets()),
        _ => 0,
    };
    s += u32::from(PROTO) + msg.len() as u32;
    !fold(sum(s, msg))
}

impl Advert {
    /// The VRRP message (without IP header), its checksum computed for
    /// `src` → the group of its family.
    pub fn encode(&self, src: IpAddr) -> Vec<u8> {
        let mut b = vec![0x31, self.vrid, self.priority, self.addrs.len() as u8];
        b.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        let dst = group_of(src);
        let c = checksum(src, dst, &b);
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Reads a VRRP message that came from `src` with TTL/hop limit `ttl`.
    pub fn decode(msg: &[u8], src: IpAddr, ttl: u8) -> Result<Advert, Discard> {
        if ttl != TTL {
            return Err(Discard::Ttl);
        }
        if msg.len() < 8 {
            return Err(Discard::Short);
        }
        if msg[0] >> 4 != 3 {
            return Err(Discard::Version);
        }
        if msg[0] & 0x0f != 1 {
            return Err(Discard::Type);
        }
        let count = usize::from(msg[3]);
        let alen = if src.is_ipv6() { 16 } else { 4 };
        if msg.len() < 8 + count * alen {
            return Err(Discard::Length);
        }
        if checksum(src, group_of(src), msg) != 0 {
            return Err(Discard::Checksum);
        }
        let addrs = msg[8..8 + count * alen]
            .chunks_exact(alen)
            .map(|c| match alen {
                4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                _ => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
            })
            .collect();
        Ok(Advert {
            vrid: msg[1],
            priority: msg[2],
            interval_cs: u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff,
            addrs,
        })
    }
}

/// The group advertisements of `src`'s family go to.
pub fn group_of(src: IpAddr) -> IpAddr {
    if src.is_ipv6() {
        IpAddr::V6(GROUP_V6)
    } else {
        IpAddr::V4(GROUP_V4)
    }
}

/// One virtual router's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub vrid: u8,
    /// 1..=254 (255: the address owner, master at once).
    pub priority: u8,
    /// Advertisement interval, centiseconds.
    pub interval_cs: u16,
    /// A higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// …but not before this long after it started (keepalived's
    /// `preempt_delay`): time for a returning director to relearn the
    /// connection table from the master's sync messages.
    pub preempt_delay_ms: u64,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast an advertisement with this priority.
    Send(u8),
    /// The instance became master: take its addresses (announce them).
    BecameMaster,
    /// The instance became backup: leave its addresses.
    BecameBackup,
}

/// One virtual router (RFC 5798 §6.4), in milliseconds on any clock.
#[derive(Debug, Clone)]
pub struct Router {
    pub cfg: Config,
    pub state: State,
    /// The master's advertisement interval as last heard (centiseconds).
    master_interval_cs: u16,
    /// When the master is declared down (backup).
    down_at: Option<u64>,
    /// When the next advertisement is due (master).
    advert_at: Option<u64>,
    /// The master we last accepted, for the status.
    pub master: Option<IpAddr>,
    started_at: u64,
}

impl Router {
    pub fn new(cfg: Config) -> Router {
        Router {
            master_interval_cs: cfg.interval_cs,
            cfg,
            state: State::Initialize,
            down_at: None,
            advert_at: None,
            master: None,
            started_at: 0,
        }
    }

    fn skew_ms(&self) -> u64 {
        (256 - u64::from(self.cfg.priority)) * u64::from(self.master_interval_cs) * 10 / 256
    }

    fn master_down_ms(&self) -> u64 {
        3 * u64::from(self.master_interval_cs) * 10 + self.skew_ms()
    }

    fn become_master(&mut self, now: u64, out: &mut Vec<Action>) {
        out.push(Action::Send(self.cfg.priority));
        self.advert_at = Some(now + u64::from(self.cfg.interval_cs) * 10);
        self.down_at = None;
        self.master = None;
        if self.state != State::Master {
            self.state = State::Master;
            out.push(Action::BecameMaster);
        }
    }

    fn become_backup(&mut self, now: u64, out: &mut Vec<Action>) {
        self.advert_at = None;
        self.down_at = Some(now + self.master_down_ms());
        if self.state != State::Backup {
            self.state = State::Backup;
            out.push(Action::BecameBackup);
        }
    }

    /// The Startup event.
    pub fn start(&mut self, now: u64, out: &mut Vec<Action>) {
        self.master_interval_cs = self.cfg.interval_cs;
        self.started_at = now;
        if self.cfg.priority == 255 {
            self.become_master(now, out);
        } else {
            self.become_backup(now, out);
        }
    }

    /// The Shutdown event: a master says so with priority 0.
    pub fn shutdown(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::Send(0));
        }
        self.state = State::Initialize;
        self.down_at = None;
        self.advert_at = None;
    }

    /// When `on_timer` must run next.
    pub fn deadline(&self) -> Option<u64> {
        self.down_at.or(self.advert_at)
    }

    pub fn on_timer(&mut self, now: u64, out: &mut Vec<Action>) {
        match self.state {
            State::Backup if self.down_at.is_some_and(|t| now >= t) => self.become_master(now, out),
            State::Master if self.advert_at.is_some_and(|t| now >= t) => {
                out.push(Action::Send(self.cfg.priority));
                self.advert_at = Some(now + u64::from(self.cfg.interval_cs) * 10);
            }
            _ => {}
        }
    }

    /// An advertisement for this VRID from `src`; `local` is this
    /// router's own primary address on the link (for the tie-break).
    pub fn on_advert(
        &mut self,
        now: u64,
        a: &Advert,
        src: IpAddr,
        local: IpAddr,
        out: &mut Vec<Action>,
    ) {
        if a.vrid != self.cfg.vrid {
            return;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if a.priority == 0 {
                    self.down_at = Some(now + self.skew_ms());
                } else if !self.cfg.preempt
                    || a.priority >= self.cfg.priority
                    || now < self.started_at + self.cfg.preempt_delay_ms
                {
                    self.master_interval_cs = a.interval_cs.max(1);
                    self.down_at = Some(now + self.master_down_ms());
                    self.master = Some(src);
                }
                // A lower priority with preemption: discarded; the down
                // timer runs out and this router takes over.
            }
            State::Master => {
                if a.priority == 0 {
                    out.push(Action::Send(self.cfg.priority));
                    self.advert_at = Some(now + u64::from(self.cfg.interval_cs) * 10);
                } else if a.priority > self.cfg.priority
                    || (a.priority == self.cfg.priority && ip_greater(src, local))
                {
                    self.master_interval_cs = a.interval_cs.max(1);
                    self.master = Some(src);
                    self.become_backup(now, out);
                }
            }
        }
    }
}

/// `a > b` as unsigned integers in network byte order (RFC 5798 §6.4.3).
fn ip_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(priority: u8, preempt: bool) -> Config {
        Config {
            vrid: 51,
            priority,
            interval_cs: 100,
            preempt,
            preempt_delay_ms: 0,
            addrs: vec![ip("198.18.0.100")],
        }
    }

    fn advert(priority: u8) -> Advert {
        Advert {
            vrid: 51,
            priority,
            interval_cs: 100,
            addrs: vec![ip("198.18.0.100")],
        }
    }

    #[test]
    fn an_advertisement_byte_for_byte() {
        let src = ip("198.18.2.1");
        let b = advert(150).encode(src);
        // Version 3, type 1; VRID 51; priority 150; one address; 100 cs.
        assert_eq!(&b[..6], &[0x31, 51, 150, 1, 0, 100]);
        assert_eq!(&b[8..], &[198, 18, 0, 100]);
        // The checksum over pseudo-header and message, computed by hand.
        let mut s: u32 = 0xC612 + 0x0201 + 0xE000 + 0x0012 + 112 + 12;
        s += 0x3133 + 0x9601 + 0x0064 + 0xC612 + 0x0064;
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), !(s as u16));
        assert_eq!(Advert::decode(&b, src, 255), Ok(advert(150)));
        assert_eq!(Advert::decode(&b, src, 254), Err(Discard::Ttl));
        assert_eq!(
            Advert::decode(&b, ip("198.18.2.9"), 255),
            Err(Discard::Checksum)
        );
        let mut v2 = b.clone();
        v2[0] = 0x21;
        assert_eq!(Advert::decode(&v2, src, 255), Err(Discard::Version));
        assert_eq!(Advert::decode(&b[..10], src, 255), Err(Discard::Length));
        let six = Advert {
            addrs: vec![ip("2001:db8::10"), ip("fe80::1")],
            ..advert(100)
        };
        let ll = ip("fe80::2");
        assert_eq!(Advert::decode(&six.encode(ll), ll, 255), Ok(six));
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking(b in prop::collection::vec(any::<u8>(), 0..80), v6 in any::<bool>()) {
            let src = if v6 { ip("fe80::1") } else { ip("198.18.2.1") };
            let _ = Advert::decode(&b, src, 255);
        }
    }

    #[test]
    fn a_lone_router_becomes_master_after_the_down_interval() {
        let mut r = Router::new(cfg(100, true));
        let mut out = Vec::new();
        r.start(0, &mut out);
        assert_eq!(out, vec![Action::BecameBackup]);
        // 3 × 1 s + (256 − 100) × 1 s / 256 = 3609 ms.
        assert_eq!(r.deadline(), Some(3609));
        out.clear();
        r.on_timer(3608, &mut out);
        assert!(out.is_empty());
        r.on_timer(3609, &mut out);
        assert_eq!(out, vec![Action::Send(100), Action::BecameMaster]);
        out.clear();
        r.on_timer(4609, &mut out);
        assert_eq!(out, vec![Action::Send(100)]);
    }

    #[test]
    fn a_higher_master_holds_a_backup_and_its_shutdown_hands_over_quickly() {
        let mut r = Router::new(cfg(100, true));
        let mut out = Vec::new();
        r.start(0, &mut out);
        out.clear();
        r.on_advert(
            1000,
            &advert(150),
            ip("198.18.2.2"),
            ip("198.18.2.1"),
            &mut out,
        );
        assert_eq!(r.deadline(), Some(4609));
        r.on_advert(
            4000,
            &advert(150),
            ip("198.18.2.2"),
            ip("198.18.2.1"),
            &mut out,
        );
        r.on_timer(5000, &mut out);
        assert!(out.is_empty(), "the master is alive");
        // Priority 0: the master leaves; take over after the skew time.
        r.on_advert(
            5000,
            &advert(0),
            ip("198.18.2.2"),
            ip("198.18.2.1"),
            &mut out,
        );
        assert_eq!(r.deadline(), Some(5000 + 609));
        r.on_timer(5609, &mut out);
        assert_eq!(r.state, State::Master);
    }

    #[test]
    fn preemption_decides_who_takes_over_from_a_lower_master() {
        for preempt in [true, false] {
            let mut r = Router::new(cfg(200, preempt));
            let mut out = Vec::new();
            r.start(0, &mut out);
            for t in (0..10).map(|i| i * 1000) {
                r.on_advert(
                    t,
                    &advert(100),
                    ip("198.18.2.2"),
                    ip("198.18.2.1"),
                    &mut out,
                );
                r.on_timer(t + 1, &mut out);
            }
            let want = if preempt {
                State::Master
            } else {
                State::Backup
            };
            assert_eq!(r.state, want, "preempt {preempt}");
        }
    }

    #[test]
    fn a_preempt_delay_holds_a_returning_higher_priority_back() {
        let mut r = Router::new(Config {
            preempt_delay_ms: 5000,
            ..cfg(200, true)
        });
        let mut out = Vec::new();
        r.start(0, &mut out);
        let mut t = 0;
        while r.state == State::Backup {
            r.on_advert(
                t,
                &advert(100),
                ip("198.18.2.2"),
                ip("198.18.2.1"),
                &mut out,
            );
            t += 1000;
            r.on_timer(t, &mut out);
        }
        // The last advertisement it accepted came at 4 s; it took over at
        // the down interval after it, not before the delay ran out.
        assert!(t >= 5000, "took over at {t} ms");
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_or_a_higher_address_at_equal_priority() {
        let mut out = Vec::new();
        let mut r = Router::new(cfg(100, true));
        r.start(0, &mut out);
        r.on_timer(3609, &mut out);
        assert_eq!(r.state, State::Master);
        r.on_advert(
            4000,
            &advert(100),
            ip("198.18.2.0"),
            ip("198.18.2.1"),
            &mut out,
        );
        assert_eq!(r.state, State::Master, "equal priority, lower address");
        r.on_advert(
            4000,
            &advert(100),
            ip("198.18.2.9"),
            ip("198.18.2.1"),
            &mut out,
        );
        assert_eq!(r.state, State::Backup, "equal priority, higher address");
        let mut r = Router::new(cfg(100, true));
        r.start(0, &mut out);
        r.on_timer(3609, &mut out);
        out.clear();
        r.on_advert(
            4000,
            &advert(0),
            ip("198.18.2.9"),
            ip("198.18.2.1"),
            &mut out,
        );
        assert_eq!(
            out,
            vec![Action::Send(100)],
            "answers a leaving peer at once"
        );
        r.shutdown(&mut out);
        assert_eq!(out.last(), Some(&Action::Send(0)));
    }
}
