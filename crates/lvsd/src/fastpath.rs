//! The daemon's side of the fast path (`--fastpath xdp|tc`): attaches
//! the program (`xdp.rs`) to every port, carries the engine's offload
//! requests into its flow map (both directions of a NAT connection, with
//! the egress port, MACs and MTU the daemon's routes and neighbours give),
//! and folds what the program counted back into the engine every second —
//! and at once when a flow is removed — so that statistics stay exact and
//! an entry is not expired while the fast path still carries it. At each
//! fold the ways out are looked up again: a flow whose route or next hop's
//! MAC changed is installed again with the new ones (or taken out of the
//! map, its packets then going through lvsd, when there is none).
//!
//! XDP is attached in generic (skb) mode: it redirects into any device,
//! bridges included (native mode on veth or a NIC is faster but can
//! redirect only to devices that take XDP frames). TC is attached at
//! ingress, and lvsd's packet sockets are filtered so that they do not
//! also get what it carries.

use crate::io::PortId;
use crate::net::Interface;
use crate::xdp::{FastPath, FlowAction, FlowKey, Hook, Side};
use lvs_core::engine::{FastPathSeen, Offload, OffloadFlow};
use lvs_core::wire::ipproto;
use lvs_core::{Engine, Forward};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// A way out for one address: egress port and the next hop's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub port: PortId,
    pub dmac: [u8; 6],
}

/// What the program counted of one direction when last folded.
#[derive(Debug, Clone, Copy, Default)]
struct Folded {
    packets: u64,
    bytes: u64,
    last_ns: u64,
}

/// One carried connection.
struct Carried {
    in_key: FlowKey,
    /// The real server's packets (NAT; none pass by with direct routing).
    out_key: Option<FlowKey>,
    folded_in: Folded,
    folded_out: Folded,
    /// The ways out it was installed with (towards the server, the client).
    hops: (Hop, Option<Hop>),
}

pub struct Daemon {
    fp: FastPath,
    carried: HashMap<OffloadFlow, Carried>,
    /// Flows carried now, and packets the program carried (folded).
    pub flows: u64,
    pub packets: u64,
    /// Offers not taken: no route or neighbour for a direction yet.
    pub skipped: u64,
    /// Flows written again (or taken out) because their way out changed.
    pub rewritten: u64,
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

impl Daemon {
    /// Loads the program for `hook`, attaches it to every port and filters
    /// lvsd's packet sockets (`sockets`, for TC); says per port which path
    /// its packets take.
    pub fn start<'a>(
        hook: Hook,
        ports: &[Interface],
        sockets: impl Iterator<Item = std::os::fd::BorrowedFd<'a>>,
    ) -> Result<Daemon, String> {
        let mut fp = FastPath::load(hook)?;
        for sock in sockets {
            fp.filter_socket(sock)?;
        }
        for p in ports {
            fp.attach(&p.name)?;
            tracing::info!(
                "{}: fast path {}: established NAT flows are forwarded in the kernel; everything else goes to lvsd (AF_PACKET)",
                p.name,
                hook.describe()
            );
        }
        Ok(Daemon {
            fp,
            carried: HashMap::new(),
            flows: 0,
            packets: 0,
            skipped: 0,
            rewritten: 0,
        })
    }

    /// Carries the engine's requests into the flow map. `hop` finds the
    /// way to an address (from a source, for policy routing).
    pub fn apply(
        &mut self,
        engine: &mut Engine,
        ports: &[Interface],
        now_ms: u64,
        hop: impl Fn(Ipv4Addr, Option<Ipv4Addr>) -> Option<Hop>,
    ) {
        let reroute = engine.snat_reroute();
        while let Some(req) = engine.pop_offload() {
            match req {
                Offload::Install(f) => {
                    if let Err(e) = self.install(&f, ports, &hop, reroute) {
                        self.skipped += 1;
                        engine.offload_refused(&f);
                        tracing::debug!("fast path: not carried: {e}");
                    }
                }
                Offload::Report(f) => match self.carried.remove(&f) {
                    Some(mut c) => {
                        self.fold_one(engine, &f, &mut c, now_ms, true);
                        self.carried.insert(f, c);
                    }
                    // Not in the map: nothing was carried.
                    None => engine.offload_seen(&f, &FastPathSeen::default()),
                },
                Offload::Remove(f) => {
                    if let Some(mut c) = self.carried.remove(&f) {
                        self.take_out(engine, &f, &mut c, now_ms);
                    }
                }
            }
        }
        self.flows = self.carried.len() as u64;
    }

    fn install(
        &mut self,
        f: &OffloadFlow,
        ports: &[Interface],
        hop: &impl Fn(Ipv4Addr, Option<Ipv4Addr>) -> Option<Hop>,
        reroute: bool,
    ) -> Result<(), String> {
        let (Some(c), Some(v), Some(d)) = (v4(f.caddr), v4(f.vaddr), v4(f.daddr)) else {
            return Err("not IPv4".into());
        };
        if !matches!(f.protocol, ipproto::TCP | ipproto::UDP) {
            return Err("not TCP or UDP".into());
        }
        let hops = Self::hops(f, hop, reroute).ok_or("no route or neighbour")?;
        let in_key = FlowKey::new(f.protocol, c, f.cport, v, f.vport);
        let out_key =
            (f.method == Forward::Masq).then(|| FlowKey::new(f.protocol, d, f.dport, c, f.cport));
        // One client address and port to two VIPs, one server: their
        // replies look alike; the first carried keeps its flow.
        if self
            .carried
            .values()
            .any(|x| (out_key.is_some() && x.out_key == out_key) || x.in_key == in_key)
        {
            return Err("its replies would look like another carried flow's".into());
        }
        let mut carried = Carried {
            in_key,
            out_key,
            folded_in: Folded::default(),
            folded_out: Folded::default(),
            hops,
        };
        self.write(f, &mut carried, ports)?;
        self.carried.insert(*f, carried);
        Ok(())
    }

    /// The ways out of the directions of `f`: towards the server as the
    /// engine routes it (by destination), towards the client (NAT) from
    /// the VIP (`snat_reroute`) or the server.
    fn hops(
        f: &OffloadFlow,
        hop: &impl Fn(Ipv4Addr, Option<Ipv4Addr>) -> Option<Hop>,
        reroute: bool,
    ) -> Option<(Hop, Option<Hop>)> {
        let (c, v, d) = (v4(f.caddr)?, v4(f.vaddr)?, v4(f.daddr)?);
        let to_server = hop(d, None)?;
        if f.method != Forward::Masq {
            return Some((to_server, None));
        }
        let to_client = hop(c, Some(if reroute { v } else { d }))?;
        Some((to_server, Some(to_client)))
    }

    /// Writes both directions of `f` into the map with `c.hops` (fresh
    /// counters: what is folded starts again from zero).
    fn write(
        &mut self,
        f: &OffloadFlow,
        c: &mut Carried,
        ports: &[Interface],
    ) -> Result<(), String> {
        let (Some(v), Some(d)) = (v4(f.vaddr), v4(f.daddr)) else {
            return Err("not IPv4".into());
        };
        let action = |h: &Hop, side: Side, addr: Ipv4Addr, port: u16| {
            let p = &ports[h.port];
            FlowAction::new(side, addr, port, p.index as u32, p.mac, h.dmac, p.mtu)
        };
        let (to_server, to_client) = c.hops;
        let side = if c.out_key.is_some() {
            Side::Destination
        } else {
            Side::Neither
        };
        self.fp
            .install(&c.in_key, &action(&to_server, side, d, f.dport))?;
        if let (Some(k), Some(h)) = (&c.out_key, &to_client) {
            if let Err(e) = self.fp.install(k, &action(h, Side::Source, v, f.vport)) {
                let _ = self.fp.remove(&c.in_key);
                return Err(e);
            }
        }
        c.folded_in = Folded::default();
        c.folded_out = Folded::default();
        Ok(())
    }

    /// Folds every carried flow's new packets into the engine, and writes
    /// again the flows whose ways out changed (`hop` as for `apply`).
    pub fn fold(
        &mut self,
        engine: &mut Engine,
        ports: &[Interface],
        now_ms: u64,
        hop: impl Fn(Ipv4Addr, Option<Ipv4Addr>) -> Option<Hop>,
    ) {
        let reroute = engine.snat_reroute();
        let flows: Vec<OffloadFlow> = self.carried.keys().copied().collect();
        for f in flows {
            let Some(mut c) = self.carried.remove(&f) else {
                continue;
            };
            self.fold_one(engine, &f, &mut c, now_ms, false);
            let now = Self::hops(&f, &hop, reroute);
            if now == Some(c.hops) {
                self.carried.insert(f, c);
                continue;
            }
            self.rewritten += 1;
            // Out of the map with its last counts; written again below.
            self.take_out(engine, &f, &mut c, now_ms);
            if let Some(h) = now {
                c.hops = h;
                if self.write(&f, &mut c, ports).is_ok() {
                    self.carried.insert(f, c);
                    continue;
                }
            }
            // No way out any more (or it could not be written): its packets
            // reach lvsd, whose engine may offer it again.
            engine.offload_refused(&f);
        }
        self.flows = self.carried.len() as u64;
    }

    /// Takes both directions of `f` out of the map and reports what the
    /// program carried of them since the last fold, up to the last packet.
    fn take_out(&mut self, engine: &mut Engine, f: &OffloadFlow, c: &mut Carried, now_ms: u64) {
        let i = self.fp.take(&c.in_key);
        let o = match &c.out_key {
            Some(k) => self.fp.take(k),
            None => Ok(Some(FlowAction::default())),
        };
        if let (Ok(Some(i)), Ok(Some(o))) = (i, o) {
            self.report(engine, f, c, (&i, &o), now_ms, false);
        }
    }

    /// Reports what the program carried of `f` since `c` was last folded
    /// (one read of each direction), and remembers what it read. `always`:
    /// reports also when nothing was (the engine asked).
    fn fold_one(
        &mut self,
        engine: &mut Engine,
        f: &OffloadFlow,
        c: &mut Carried,
        now_ms: u64,
        always: bool,
    ) {
        let out = match &c.out_key {
            Some(k) => self.fp.get(k),
            None => Ok(Some(FlowAction::default())),
        };
        let (Ok(Some(i)), Ok(Some(o))) = (self.fp.get(&c.in_key), out) else {
            if always {
                engine.offload_seen(f, &FastPathSeen::default());
            }
            return;
        };
        self.report(engine, f, c, (&i, &o), now_ms, always);
    }

    /// Reports the counts `i` and `o` (in and out) of `f` less what `c`
    /// has folded already, and remembers them.
    fn report(
        &mut self,
        engine: &mut Engine,
        f: &OffloadFlow,
        c: &mut Carried,
        (i, o): (&FlowAction, &FlowAction),
        now_ms: u64,
        always: bool,
    ) {
        let last_ns = i.last_ns.max(o.last_ns);
        let newer = last_ns > c.folded_in.last_ns.max(c.folded_out.last_ns);
        let ago_ms = monotonic_ns().saturating_sub(last_ns) / 1_000_000;
        let seen = FastPathSeen {
            in_pkts: i.packets.saturating_sub(c.folded_in.packets),
            in_bytes: i.bytes.saturating_sub(c.folded_in.bytes),
            out_pkts: o.packets.saturating_sub(c.folded_out.packets),
            out_bytes: o.bytes.saturating_sub(c.folded_out.bytes),
            last_ms: if newer {
                now_ms.saturating_sub(ago_ms).max(1)
            } else {
                0
            },
        };
        c.folded_in = Folded {
            packets: i.packets,
            bytes: i.bytes,
            last_ns: i.last_ns,
        };
        c.folded_out = Folded {
            packets: o.packets,
            bytes: o.bytes,
            last_ns: o.last_ns,
        };
        self.packets += seen.in_pkts + seen.out_pkts;
        if always || seen != FastPathSeen::default() {
            engine.offload_seen(f, &seen);
        }
    }
}
