//! Maps control requests onto engine operations and engine state onto
//! control answers (the daemon is the only place that knows both).

use lvs_control as ctl;
use lvs_control::{ErrorKind, Request, Response};
use lvs_core::service::Dest;
use lvs_core::stats::StatsView;
use lvs_core::wire::ipproto;
use lvs_core::{
    ControlError, DestConfig, Engine, Forward, ServiceKey, ServiceOptions, Tunnel, TunnelCsum,
    TunnelType,
};

/// Applies one request; returns the answer and whether the configuration changed.
#[cfg(test)]
pub fn apply(engine: &mut Engine, req: &Request, now_ms: u64) -> (Response, bool) {
    apply_with(engine, req, now_ms, &[])
}

/// `apply`, with the daemon's own counters (`io.*`) for `GetCounters`.
pub fn apply_with(
    engine: &mut Engine,
    req: &Request,
    now_ms: u64,
    io: &[(&str, u64)],
) -> (Response, bool) {
    let r = match req {
        Request::GetCounters => return (counters(engine, io, now_ms), false),
        Request::GetTotals => return (Response::Totals(stats_info(&engine.total_stats())), false),
        // Health lives in the desired state (`desired::apply_request`).
        Request::GetHealth => return (Response::Health(Vec::new()), false),
        // Reloads are read by the control thread (`control.rs`), batches
        // go through the desired state, sync daemons are the daemon's.
        Request::Reload
        | Request::Batch(_)
        | Request::StartDaemon(_)
        | Request::StopDaemon(_)
        | Request::GetDaemons => {
            return (
                Response::Error {
                    kind: lvs_control::ErrorKind::Invalid,
                    detail: "not an engine request".into(),
                },
                false,
            )
        }
        Request::ListServices => return (services(engine, None), false),
        Request::GetService(k) => return (services(engine, Some(key(k))), false),
        Request::ListConnections => return (connections(engine, now_ms), false),
        Request::GetTimeouts => return (timeouts(engine), false),
        Request::GetSysctls => return (sysctls(engine), false),
        Request::SetSysctl { name, value } => {
            return match engine.set_sysctl(name, value) {
                Ok(()) => (Response::Ok, true),
                Err(e) => (
                    Response::Error {
                        kind: ErrorKind::Invalid,
                        detail: e.to_string(),
                    },
                    false,
                ),
            };
        }
        Request::AddService(s) => {
            engine.add_service_with(key(&s.key), &s.scheduler, s.sched_flags, options(s))
        }
        Request::EditService(s) => {
            engine.edit_service_with(key(&s.key), &s.scheduler, s.sched_flags, options(s))
        }
        Request::DeleteService(k) => engine.delete_service(key(k)),
        Request::AddDest { service, dest } => {
            check_dest(dest).and_then(|_| engine.add_dest(key(service), dest_config(dest)))
        }
        Request::EditDest { service, dest } => {
            check_dest(dest).and_then(|_| engine.edit_dest(key(service), dest_config(dest)))
        }
        Request::DeleteDest {
            service,
            addr,
            port,
        } => engine.delete_dest(key(service), *addr, *port),
        Request::Clear => {
            engine.clear();
            Ok(())
        }
        Request::SetTimeouts(t) => engine.set_timeouts(t.tcp, t.tcpfin, t.udp),
        // Zeroing changes no configuration (nothing for the guard to follow).
        Request::Zero(k) => {
            return match engine.zero_stats(k.as_ref().map(key)) {
                Ok(()) => (Response::Ok, false),
                Err(e) => (error(e), false),
            };
        }
    };
    match r {
        Ok(()) => (Response::Ok, true),
        Err(e) => (error(e), false),
    }
}

/// The engine's counters, drops by reason, then the daemon's.
fn counters(engine: &Engine, io: &[(&str, u64)], now_ms: u64) -> Response {
    let c = &engine.counters;
    let mut v: Vec<ctl::Counter> = [
        ("engine.connections_created", c.conns),
        ("engine.connections_expired", c.expired),
        ("engine.sent_masq", c.sent_masq),
        ("engine.sent_route", c.sent_route),
        ("engine.sent_tunnel", c.sent_tunnel),
        ("engine.forwarded_untouched", c.passed_untouched),
        ("engine.icmp_port_unreachable", c.unreachable),
        ("engine.icmp_frag_needed", c.icmp_frag_needed),
        ("engine.icmp_time_exceeded", c.icmp_time_exceeded),
        ("engine.icmp_tunnel_relayed", c.icmp_relayed),
        ("engine.icmp_nat_icmp_send", c.nat_icmp_sent),
        ("engine.tcp_resets", c.resets),
        ("engine.fragments_held", c.fragments_held),
        ("engine.reassembled", c.reassembled),
        ("engine.defense_dropped_entries", c.defense_dropped_entries),
        ("engine.memory_given_back", c.memory_given_back),
        ("engine.connections", engine.connection_count() as u64),
        ("engine.connection_slots", engine.connection_slots() as u64),
    ]
    .iter()
    .map(|&(n, value)| ctl::Counter {
        name: n.to_string(),
        value,
    })
    .collect();
    for r in lvs_core::DropReason::ALL {
        v.push(ctl::Counter {
            name: format!("drop.{}", r.name()),
            value: c.drops[r as usize],
        });
    }
    v.extend(io.iter().map(|&(n, value)| ctl::Counter {
        name: format!("io.{n}"),
        value,
    }));
    // Connection sync, both roles.
    let s = engine.sync_counters();
    let mut sync = vec![
        ("sync.messages_sent", s.messages_sent),
        ("sync.entries_sent", s.entries_sent),
        ("sync.messages_dropped", s.messages_dropped),
        ("sync.queue_len", engine.sync_queue_len() as u64),
        ("sync.messages_received", s.received),
        ("sync.entries_created", s.entries_created),
        ("sync.entries_updated", s.entries_updated),
        ("sync.entries_skipped", s.entries_skipped),
        ("sync.entries_ignored", s.entries_ignored),
    ];
    if let Some(t) = s.last_received_ms {
        sync.push(("sync.last_message_age_ms", now_ms.saturating_sub(t)));
    }
    v.extend(sync.into_iter().map(|(n, value)| ctl::Counter {
        name: n.to_string(),
        value,
    }));
    for f in lvs_core::sync::codec::MessageFault::ALL {
        v.push(ctl::Counter {
            name: format!("sync.drop_{}", f.name()),
            value: s.dropped[f as usize],
        });
    }
    Response::Counters(v)
}

/// The engine's service options from a control-protocol service.
fn options(s: &ctl::ServiceSpec) -> ServiceOptions {
    ServiceOptions {
        persistent: s.persistent,
        netmask: s.netmask,
        one_packet: s.one_packet,
    }
}

/// Refuses what lvsd cannot transmit (local delivery) and
/// tunnel settings ipvsadm's table would refuse (lvsadm checks them too;
/// this guards other clients).
pub fn check_dest(d: &ctl::DestSpec) -> Result<(), ControlError> {
    if d.forward == ctl::Forward::Local {
        return Err(ControlError::NotSupported(
            "local forwarding (the director as its own real server) is not implemented; use -g, -i or -m",
        ));
    }
    if d.forward == ctl::Forward::Tunnel {
        let t = &d.tunnel;
        match (t.kind, t.port, t.csum) {
            (ctl::TunnelType::Gue, 0, _) => {
                return Err(ControlError::Invalid(
                    "a GUE tunnel needs a port (--tun-port)",
                ))
            }
            (ctl::TunnelType::Ipip | ctl::TunnelType::Gre, p, _) if p != 0 => {
                return Err(ControlError::Invalid("only a GUE tunnel has a port"))
            }
            (ctl::TunnelType::Ipip, _, c) if c != ctl::TunnelCsum::NoCsum => {
                return Err(ControlError::Invalid(
                    "an ipip tunnel has no checksum option",
                ))
            }
            (ctl::TunnelType::Gre, _, ctl::TunnelCsum::RemCsum) => {
                return Err(ControlError::Invalid(
                    "remote checksum offload is for GUE tunnels only",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn error(e: ControlError) -> Response {
    let kind = match e {
        ControlError::ServiceExists => ErrorKind::ServiceExists,
        ControlError::SchedulerNotFound => ErrorKind::SchedulerNotFound,
        ControlError::NoSuchService => ErrorKind::NoSuchService,
        ControlError::ServiceNotDefined => ErrorKind::ServiceNotDefined,
        ControlError::DestExists => ErrorKind::DestExists,
        ControlError::NoSuchDest => ErrorKind::NoSuchDest,
        ControlError::Invalid(_) => ErrorKind::Invalid,
        ControlError::OutOfRange(_) => ErrorKind::OutOfRange,
        ControlError::NotSupported(_) => ErrorKind::NotSupported,
    };
    let detail = match e {
        ControlError::Invalid(d) | ControlError::NotSupported(d) | ControlError::OutOfRange(d) => {
            format!("{e} ({d})")
        }
        ControlError::SchedulerNotFound => {
            format!(
                "{e}; this build has: {}",
                lvs_core::sched::AVAILABLE.join(" ")
            )
        }
        _ => String::new(),
    };
    Response::Error { kind, detail }
}

/// Control-protocol service key to engine key.
pub fn key(k: &ctl::ServiceKey) -> ServiceKey {
    ServiceKey {
        protocol: k.protocol.number(),
        addr: k.addr,
        port: k.port,
    }
}

fn protocol(p: u8) -> ctl::Protocol {
    match p {
        0 => ctl::Protocol::Fwmark,
        ipproto::UDP => ctl::Protocol::Udp,
        ipproto::SCTP => ctl::Protocol::Sctp,
        _ => ctl::Protocol::Tcp,
    }
}

fn forward_out(f: Forward) -> ctl::Forward {
    match f {
        Forward::Masq => ctl::Forward::Masq,
        Forward::Local => ctl::Forward::Local,
        Forward::Tunnel => ctl::Forward::Tunnel,
        Forward::Route => ctl::Forward::Route,
    }
}

/// Control-protocol tunnel settings to the engine's.
fn tunnel_in(t: &ctl::Tunnel) -> Tunnel {
    Tunnel {
        kind: match t.kind {
            ctl::TunnelType::Ipip => TunnelType::Ipip,
            ctl::TunnelType::Gue => TunnelType::Gue,
            ctl::TunnelType::Gre => TunnelType::Gre,
        },
        port: t.port,
        csum: match t.csum {
            ctl::TunnelCsum::NoCsum => TunnelCsum::NoCsum,
            ctl::TunnelCsum::Csum => TunnelCsum::Csum,
            ctl::TunnelCsum::RemCsum => TunnelCsum::RemCsum,
        },
    }
}

fn tunnel_out(t: &Tunnel) -> ctl::Tunnel {
    ctl::Tunnel {
        kind: match t.kind {
            TunnelType::Ipip => ctl::TunnelType::Ipip,
            TunnelType::Gue => ctl::TunnelType::Gue,
            TunnelType::Gre => ctl::TunnelType::Gre,
        },
        port: t.port,
        csum: match t.csum {
            TunnelCsum::NoCsum => ctl::TunnelCsum::NoCsum,
            TunnelCsum::Csum => ctl::TunnelCsum::Csum,
            TunnelCsum::RemCsum => ctl::TunnelCsum::RemCsum,
        },
    }
}

/// Control-protocol destination to engine destination. The tunnel
/// settings are kept for tunnelling destinations only (the others get
/// ipvsadm's initial values).
pub fn dest_config(d: &ctl::DestSpec) -> DestConfig {
    DestConfig {
        tunnel: if d.forward == ctl::Forward::Tunnel {
            tunnel_in(&d.tunnel)
        } else {
            Tunnel::default()
        },
        addr: d.addr,
        port: d.port,
        forward: match d.forward {
            ctl::Forward::Masq => Forward::Masq,
            ctl::Forward::Local => Forward::Local,
            ctl::Forward::Tunnel => Forward::Tunnel,
            ctl::Forward::Route => Forward::Route,
        },
        weight: d.weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
    }
}

fn stats_info(v: &StatsView) -> ctl::StatsInfo {
    let (c, r) = (&v.counters, &v.rates);
    ctl::StatsInfo {
        conns: c.conns,
        in_pkts: c.in_pkts,
        out_pkts: c.out_pkts,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        cps: r.cps,
        in_pps: r.in_pps,
        out_pps: r.out_pps,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
    }
}

fn dest_info(d: &Dest, stats: Option<&StatsView>) -> ctl::DestInfo {
    ctl::DestInfo {
        addr: d.addr,
        port: d.port,
        forward: forward_out(d.forward),
        weight: d.weight,
        active_conns: d.active_conns,
        inact_conns: d.inact_conns,
        persist_conns: d.persist_conns,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tunnel: tunnel_out(&d.tunnel),
        stats: Some(stats.map(stats_info).unwrap_or_default()),
    }
}

/// The control protocol's form of an engine service key.
pub fn key_out(k: &ServiceKey) -> ctl::ServiceKey {
    ctl::ServiceKey {
        protocol: protocol(k.protocol),
        addr: k.addr,
        port: k.port,
    }
}

/// The service listing (all, or the one with key `only`).
pub fn services(engine: &Engine, only: Option<ServiceKey>) -> Response {
    let keys: Vec<ServiceKey> = match only {
        Some(k) if engine.service(&k).is_none() => {
            return Response::Error {
                kind: ErrorKind::NoSuchService,
                detail: String::new(),
            }
        }
        Some(k) => vec![k],
        None => engine.service_keys().collect(),
    };
    let mut services = Vec::with_capacity(keys.len());
    service_infos(engine, &keys, &mut services);
    Response::Services {
        conn_tab_size: lvs_core::engine::CONN_TAB_SIZE,
        services,
    }
}

/// Appends the listing of services `keys` to `out` (those that exist).
pub fn service_infos(engine: &Engine, keys: &[ServiceKey], out: &mut Vec<ctl::ServiceInfo>) {
    for k in keys {
        let Some((s, dests)) = engine.service(k) else {
            continue;
        };
        let (svc_stats, dest_stats) = engine.service_stats(k).unwrap_or_default();
        out.push(ctl::ServiceInfo {
            spec: ctl::ServiceSpec {
                key: key_out(&s.key),
                scheduler: s.scheduler.name().to_string(),
                sched_flags: s.sched_flags,
                persistent: s.opts.persistent,
                netmask: s.opts.netmask,
                one_packet: s.opts.one_packet,
            },
            dests: dests
                .into_iter()
                .enumerate()
                .map(|(i, d)| dest_info(d, dest_stats.get(i)))
                .collect(),
            stats: Some(stats_info(&svc_stats)),
        });
    }
}

fn connections(engine: &Engine, now_ms: u64) -> Response {
    Response::Connections(engine.connections().map(|c| conn_info(c, now_ms)).collect())
}

/// One entry as listed.
fn conn_info(c: &lvs_core::conn::Conn, now_ms: u64) -> ctl::ConnInfo {
    ctl::ConnInfo {
        // Firewall-mark templates are IPPROTO_IP: `IP`, as the kernel prints.
        protocol: match c.protocol {
            0 => "IP".to_string(),
            p => protocol(p).label().to_string(),
        },
        caddr: c.caddr,
        cport: c.cport,
        vaddr: c.vaddr,
        vport: c.vport,
        daddr: c.daddr,
        dport: c.dport,
        state: Engine::state_name(c).to_string(),
        expires_secs: c.expires.saturating_sub(now_ms) / 1000,
        synced: c.flags & lvs_core::sync::codec::wire_flags::SYNC != 0,
    }
}

/// Entries listed per step of the packet loop.
pub const CONN_CHUNK: usize = 8192;

/// The next chunk of a connection listing from slot `start`: a
/// `ConnectionsPart` and where to go on, or the last `Connections`.
pub fn connections_chunk(engine: &Engine, start: usize, now_ms: u64) -> (Response, Option<usize>) {
    let (v, next) = engine.connections_chunk(start, CONN_CHUNK);
    let v = v.into_iter().map(|c| conn_info(c, now_ms)).collect();
    match next {
        Some(n) => (Response::ConnectionsPart(v), Some(n)),
        None => (Response::Connections(v), None),
    }
}

fn sysctls(engine: &Engine) -> Response {
    let v = lvs_core::sysctl::SYSCTLS
        .iter()
        .map(|s| ctl::SysctlValue {
            name: s.name.to_string(),
            value: engine
                .sysctl(s.name)
                .unwrap_or_else(|_| s.default.to_string()),
            no_effect: match s.effect {
                lvs_core::sysctl::Effect::Acts => None,
                lvs_core::sysctl::Effect::NoEffect(why) => Some(why.to_string()),
            },
            doc: s.doc.to_string(),
        })
        .collect();
    Response::Sysctls(v)
}

fn timeouts(engine: &Engine) -> Response {
    let (tcp, tcpfin, udp) = engine.timeouts();
    Response::Timeouts(ctl::Timeouts { tcp, tcpfin, udp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc_key() -> ctl::ServiceKey {
        ctl::ServiceKey {
            protocol: ctl::Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80,
        }
    }

    fn engine() -> Engine {
        let mut e = Engine::new(0);
        let spec = ctl::ServiceSpec {
            key: svc_key(),
            scheduler: "rr".into(),
            sched_flags: 0,
            persistent: None,
            netmask: u32::MAX,
            one_packet: false,
        };
        let (r, _) = apply(&mut e, &Request::AddService(spec), 0);
        assert_eq!(r, Response::Ok);
        e
    }

    fn dest(addr: &str, forward: ctl::Forward, tunnel: ctl::Tunnel) -> ctl::DestSpec {
        ctl::DestSpec {
            addr: addr.parse().unwrap(),
            port: 80,
            forward,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tunnel,
        }
    }

    fn add(e: &mut Engine, d: ctl::DestSpec) -> Response {
        apply(
            e,
            &Request::AddDest {
                service: svc_key(),
                dest: d,
            },
            0,
        )
        .0
    }

    fn gue(port: u16, csum: ctl::TunnelCsum) -> ctl::Tunnel {
        ctl::Tunnel {
            kind: ctl::TunnelType::Gue,
            port,
            csum,
        }
    }

    #[test]
    fn route_and_tunnel_destinations_are_accepted_and_listed() {
        let mut e = engine();
        let t = gue(6080, ctl::TunnelCsum::Csum);
        assert_eq!(
            add(&mut e, dest("198.18.1.11", ctl::Forward::Tunnel, t)),
            Response::Ok
        );
        assert_eq!(
            add(&mut e, dest("198.18.1.12", ctl::Forward::Route, t)),
            Response::Ok
        );
        let Response::Services { services, .. } = services(&e, None) else {
            panic!("not a listing")
        };
        let got: Vec<_> = services[0]
            .dests
            .iter()
            .map(|d| (d.addr.to_string(), d.forward, d.tunnel))
            .collect();
        // Front insertion; a non-tunnel destination keeps no tunnel settings.
        assert_eq!(
            got,
            [
                (
                    "198.18.1.12".into(),
                    ctl::Forward::Route,
                    ctl::Tunnel::default()
                ),
                ("198.18.1.11".into(), ctl::Forward::Tunnel, t),
            ]
        );
        // -e changes the tunnel.
        let t2 = ctl::Tunnel {
            kind: ctl::TunnelType::Gre,
            port: 0,
            csum: ctl::TunnelCsum::NoCsum,
        };
        let (r, changed) = apply(
            &mut e,
            &Request::EditDest {
                service: svc_key(),
                dest: dest("198.18.1.11", ctl::Forward::Tunnel, t2),
            },
            0,
        );
        assert_eq!((r, changed), (Response::Ok, true));
        let (_, dests) = e.services().next().unwrap();
        let d = dests
            .iter()
            .find(|d| d.addr.to_string() == "198.18.1.11")
            .unwrap();
        assert_eq!(d.tunnel.kind, TunnelType::Gre);
    }

    #[test]
    fn local_and_bad_tunnels_are_refused() {
        let mut e = engine();
        let cases = [
            (
                dest("198.18.1.11", ctl::Forward::Local, ctl::Tunnel::default()),
                ErrorKind::NotSupported,
            ),
            (
                dest(
                    "198.18.1.11",
                    ctl::Forward::Tunnel,
                    gue(0, ctl::TunnelCsum::NoCsum),
                ),
                ErrorKind::Invalid,
            ),
            (
                dest(
                    "198.18.1.11",
                    ctl::Forward::Tunnel,
                    ctl::Tunnel {
                        kind: ctl::TunnelType::Gre,
                        port: 0,
                        csum: ctl::TunnelCsum::RemCsum,
                    },
                ),
                ErrorKind::Invalid,
            ),
            (
                dest(
                    "198.18.1.11",
                    ctl::Forward::Tunnel,
                    ctl::Tunnel {
                        kind: ctl::TunnelType::Ipip,
                        port: 6080,
                        csum: ctl::TunnelCsum::NoCsum,
                    },
                ),
                ErrorKind::Invalid,
            ),
            (
                dest(
                    "198.18.1.11",
                    ctl::Forward::Tunnel,
                    ctl::Tunnel {
                        kind: ctl::TunnelType::Ipip,
                        port: 0,
                        csum: ctl::TunnelCsum::Csum,
                    },
                ),
                ErrorKind::Invalid,
            ),
        ];
        for (d, want) in cases {
            match add(&mut e, d.clone()) {
                Response::Error { kind, .. } => assert_eq!(kind, want, "{d:?}"),
                other => panic!("{d:?} accepted: {other:?}"),
            }
        }
        assert!(e.services().next().unwrap().1.is_empty());
    }
}
