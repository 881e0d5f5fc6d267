//! Turns a parsed configuration file into engine state, refusing (with the
//! file, line and column) what this build cannot do yet.

use crate::desired::{Check, Desired, Server};
use crate::reload::{FileService, FileState};
use lvs_config::{Config, ConfigError, Mode, Netmask, Protocol, Span};
use lvs_core::wire::ipproto;
use lvs_core::{
    DestConfig, Engine, Forward, ServiceKey, ServiceOptions, Tunnel, TunnelCsum, TunnelType,
};

/// Persistence timeout when `option persistence` gives none (`ipvsadm -p`'s default).
pub const DEFAULT_PERSISTENCE_SECS: u32 = 360;

/// Applies every director of `cfg` to `engine`. `text` and `file` are used
/// to point errors at the offending line.
pub fn apply(engine: &mut Engine, cfg: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    apply_with(engine, &mut Desired::default(), cfg, file, text)
}

/// Checks `cfg` whole, by building it on a scratch engine (what the
/// engine would refuse is refused here, with its position), and returns
/// what it asks for, ready to be applied to the running engine as a
/// difference (`Desired::apply_file`). Runs off the packet thread.
pub fn file_state(cfg: &Config, file: &str, text: &str) -> Result<FileState<Check>, ConfigError> {
    let mut engine = Engine::new(0);
    let mut desired = Desired::default();
    apply_with(&mut engine, &mut desired, cfg, file, text)?;
    let services = desired
        .wanted()
        .filter_map(|(key, servers)| {
            let (s, _) = engine.service(&key)?;
            Some(FileService {
                key,
                scheduler: s.scheduler.name().to_string(),
                sched_flags: s.sched_flags,
                opts: s.opts,
                servers: servers.to_vec(),
            })
        })
        .collect();
    let sysctls = lvs_core::sysctl::SYSCTLS
        .iter()
        .filter_map(|d| Some((d.name.to_string(), engine.sysctl(d.name).ok()?)))
        .collect();
    let control = cfg.control.as_ref();
    let control_group = match control.and_then(|c| c.group.as_ref()) {
        None => None,
        Some(g) => match group_id(&g.value) {
            Some(gid) => Some((g.value.clone(), gid)),
            None => {
                return Err(ConfigError::at(
                    file,
                    text,
                    g.span,
                    format!(
                        "no group `{}` on this host (see /etc/group; create it with groupadd)",
                        g.value
                    ),
                ))
            }
        },
    };
    let warnings = lint(cfg)
        .into_iter()
        .map(|(span, msg)| {
            ConfigError::at(file, text, span, msg)
                .as_warning()
                .to_string()
        })
        .collect();
    Ok(FileState {
        flows: engine.flows().to_vec(),
        warnings,
        services,
        sysctls,
        timeouts: Some(engine.timeouts()),
        interfaces: cfg.interfaces.iter().map(|i| i.value.clone()).collect(),
        control_socket: control
            .and_then(|c| c.socket.as_ref())
            .map(|s| std::path::PathBuf::from(&s.value)),
        control_group,
        metrics: cfg.metrics.as_ref().map(|m| m.value),
        sync_follow: cfg
            .syncs
            .iter()
            .find_map(|s| Some((s.follow.as_ref()?.value.clone(), daemon_config(s)))),
        vrrp: cfg
            .vrrps
            .iter()
            .map(|v| {
                (
                    v.name.value.clone(),
                    v.interface.value.clone(),
                    crate::vrrp::Config {
                        vrid: v.vrid,
                        priority: v.priority,
                        interval_cs: v.interval_cs,
                        preempt: v.preempt,
                        preempt_delay_ms: u64::from(v.preempt_delay_s) * 1000,
                        addrs: v.addrs.clone(),
                    },
                )
            })
            .collect(),
        sync: cfg
            .syncs
            .iter()
            .filter(|s| s.follow.is_none())
            .map(daemon_config)
            .collect(),
    })
}

/// ipvsadm's `--start-daemon` request of a `sync` line.
fn daemon_config(s: &lvs_config::SyncDef) -> lvs_control::DaemonConfig {
    lvs_control::DaemonConfig {
        role: if s.master {
            lvs_control::SyncRole::Master
        } else {
            lvs_control::SyncRole::Backup
        },
        ifname: s.interface.value.clone(),
        syncid: s.syncid,
        maxlen: s.maxlen,
        group: s.group,
        port: s.port,
        ttl: s.ttl,
        resync: s.resync,
    }
}

/// Legal but suspicious settings, with where they are.
fn lint(cfg: &Config) -> Vec<(Span, String)> {
    let mut w = Vec::new();
    for i in &cfg.interfaces {
        if !std::path::Path::new("/sys/class/net")
            .join(&i.value)
            .exists()
        {
            w.push((
                i.span,
                format!(
                    "no interface `{}` on this host: lvsd would not start here",
                    i.value
                ),
            ));
        }
    }
    for (name, _) in &cfg.sysctls {
        if let Some(lvs_core::sysctl::Sysctl {
            effect: lvs_core::sysctl::Effect::NoEffect(why),
            ..
        }) = lvs_core::sysctl::lookup(&name.value)
        {
            w.push((
                name.span,
                format!("sysctl `{}` has no effect in lvsd: {why}", name.value),
            ));
        }
    }
    for d in &cfg.directors {
        let normal: Vec<&lvs_config::Server> = d.servers.iter().filter(|s| !s.sorry).collect();
        if d.servers.is_empty() {
            w.push((
                d.name.span,
                format!(
                    "director `{}` has no server: its clients are refused (ICMP port unreachable)",
                    d.name.value
                ),
            ));
        } else if normal.iter().all(|s| s.weight == 0) {
            w.push((
                d.name.span,
                format!(
                    "every server of director `{}` has weight 0: none takes new connections",
                    d.name.value
                ),
            ));
        }
        for s in d.servers.iter().filter(|s| s.check) {
            let p = check_params(d, s);
            if p.timeout_secs() > p.interval_secs() {
                w.push((
                    s.span,
                    format!(
                        "server `{}`: its check timeout ({} s) is longer than the check interval ({} s)",
                        s.name.value,
                        p.timeout_secs(),
                        p.interval_secs()
                    ),
                ));
            }
        }
        if d.addr.is_none() && !cfg.flows.iter().any(|f| f.director.value == d.name.value) {
            w.push((
                d.name.span,
                format!(
                    "director `{}` has no address and no flow points to it: it receives nothing (add `flow NAME to ADDR[/LEN] director {}`)",
                    d.name.value, d.name.value
                ),
            ));
        }
        if d.health.is_some() && !d.servers.iter().any(|s| s.check) {
            w.push((
                d.name.span,
                format!(
                    "director `{}` names a check method but no server has `check`: nothing is checked",
                    d.name.value
                ),
            ));
        }
    }
    w
}

/// The id of group `name` (the system's group database).
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: libc::group is integers and pointers: all zeroes is a valid
    // value (null pointers), overwritten by getgrnam_r.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: a NUL-terminated name,
    // a group struct and a buffer of the given length we own, and the
    // out pointer; getgrnam_r writes only within them.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(grp.gr_gid)
}

/// Reads, parses and checks the configuration file at `path`
/// (`file_state`); the error is ready to show.
pub fn load_file(path: &std::path::Path) -> Result<FileState<Check>, String> {
    let file = path.display().to_string();
    let text = lvs_config::read(path).map_err(|e| e.to_string())?;
    let cfg = lvs_config::parse_str(&text, &file).map_err(|e| e.to_string())?;
    file_state(&cfg, &file, &text).map_err(|e| e.to_string())
}

/// One line saying what a checked file holds (`lvsd check`); its
/// warnings are in `state.warnings`.
pub fn summary(path: &std::path::Path, state: &FileState<Check>) -> String {
    let servers: usize = state.services.iter().map(|s| s.servers.len()).sum();
    let checked: usize = state
        .services
        .iter()
        .flat_map(|s| &s.servers)
        .filter(|s| s.check.is_some())
        .count();
    format!(
        "{}: OK: {} virtual service(s), {servers} real server(s), {checked} health-checked",
        path.display(),
        state.services.len()
    )
}

/// `apply`, building the desired state `desired` the engine's real servers
/// come from (the daemon keeps it for lvsadm changes and health verdicts).
pub fn apply_with(
    engine: &mut Engine,
    desired: &mut Desired<Check>,
    cfg: &Config,
    file: &str,
    text: &str,
) -> Result<(), ConfigError> {
    let err = |span: Span, msg: String| ConfigError::at(file, text, span, msg);
    if let Some(t) = &cfg.timeouts {
        let [tcp, tcpfin, udp] = t.value;
        engine
            .set_timeouts(tcp, tcpfin, udp)
            .map_err(|e| err(t.span, e.to_string()))?;
    }
    for (name, value) in &cfg.sysctls {
        use lvs_core::sysctl::SysctlError;
        match engine.set_sysctl(&name.value, &value.value) {
            Ok(()) => {}
            Err(e @ SysctlError::Unknown(_)) => return Err(err(name.span, e.to_string())),
            Err(e) => return Err(err(value.span, e.to_string())),
        }
    }
    let marks = marks(cfg).map_err(|(span, m)| err(span, m))?;
    let mut seen: std::collections::HashMap<ServiceKey, (&str, u32)> =
        std::collections::HashMap::new();
    for d in &cfg.directors {
        let (key, port) = match &d.addr {
            None => {
                // A director without an address: the firewall-mark service
                // its flows feed.
                let mark = marks.get(d.name.value.as_str()).copied().unwrap_or(0);
                // Its family: `ipv6` on its line, else its flows' (the
                // parser keeps one director's flows in one family).
                let v6 = d.ipv6.is_some()
                    || cfg
                        .flows
                        .iter()
                        .any(|f| f.director.value == d.name.value && f.to.value.0.is_ipv6());
                (ServiceKey::fwmark(mark, v6), 0)
            }
            Some(addr) => {
                let port = match d.port {
                    Some(p) => p,
                    // A port-0 service catches every port, through persistence (§7).
                    None if d.persistence.is_some() => 0,
                    None => {
                        return Err(err(addr.span, format!(
                            "director `{}` needs a port (`{}:PORT`): a director for all ports works only with `option persistence`",
                            d.name.value, addr.value
                        )))
                    }
                };
                let protocol = match d.protocol {
                    Protocol::Tcp => ipproto::TCP,
                    Protocol::Udp => ipproto::UDP,
                    Protocol::Sctp => ipproto::SCTP,
                };
                (
                    ServiceKey {
                        protocol,
                        addr: addr.value,
                        port,
                    },
                    port,
                )
            }
        };
        if lvs_core::sched::by_name(d.balance.value).is_none() {
            return Err(err(
                d.balance.span,
                format!(
                    "scheduler `{}` is not implemented yet; this build has: {}",
                    d.balance.value,
                    lvs_core::sched::AVAILABLE.join(", ")
                ),
            ));
        }
        let flags = match &d.sched_flags {
            None => 0,
            Some(f) => sched_flags(d.balance.value, &f.value).map_err(|m| err(f.span, m))?,
        };
        let v4_prefix = |p: u8, span: Span| {
            32u32
                .checked_sub(u32::from(p))
                .map(|shift| u32::MAX.checked_shl(shift).unwrap_or(0))
                .ok_or_else(|| {
                    err(
                        span,
                        format!("a prefix length for an IPv4 director is 0..32, not {p}"),
                    )
                })
        };
        let persist_span = d.persistence.as_ref().map_or(d.name.span, |p| p.span);
        let opts = ServiceOptions {
            persistent: d
                .persistence
                .as_ref()
                .map(|p| p.value.timeout.unwrap_or(DEFAULT_PERSISTENCE_SECS)),
            netmask: match d.persistence.as_ref().and_then(|p| p.value.netmask) {
                None if key.addr.is_ipv6() => 128,
                None => u32::MAX,
                Some(Netmask::V4(_)) if key.addr.is_ipv6() => {
                    return Err(err(
                        persist_span,
                        format!(
                            "director `{}` is IPv6 (its flows are): its persistence netmask is a prefix length 0..128",
                            d.name.value
                        ),
                    ))
                }
                Some(Netmask::V4(m)) => m,
                Some(Netmask::Prefix(p)) if key.addr.is_ipv6() => u32::from(p),
                Some(Netmask::Prefix(p)) => v4_prefix(p, persist_span)?,
            },
            one_packet: d.one_packet.is_some(),
        };
        if let Some((other, line)) = seen.insert(key, (&d.name.value, d.name.span.line)) {
            return Err(err(
                d.name.span,
                format!(
                    "director `{}` is the same virtual service as director `{other}` (line {line}): \
                     merge their servers into one director, or change the address, port or protocol",
                    d.name.value
                ),
            ));
        }
        // (A director of sorry servers alone is a maintenance page: fine.)
        let normal = d.servers.iter().any(|o| !o.sorry);
        if let Some(s) = d.servers.iter().find(|s| s.sorry).filter(|_| normal) {
            if !d.servers.iter().any(|o| !o.sorry && o.check) {
                return Err(err(
                    s.span,
                    format!(
                        "sorry server `{}` would never be used: no other server of director `{}` \
                         is health-checked, so none is ever down (add `check` to its servers)",
                        s.name.value, d.name.value
                    ),
                ));
            }
        }
        engine
            .add_service_with(key, d.balance.value, flags, opts)
            .map_err(|e| err(d.name.span, format!("director `{}`: {e}", d.name.value)))?;
        desired.add_service(key);
        // Servers are added in file order; like `ipvsadm -a`, each new one
        // goes to the front of the destination list.
        for s in &d.servers {
            let (forward, tunnel) = forwarding(d.server_mode(s).value);
            let cfg = DestConfig {
                tunnel,
                addr: s.addr.value,
                // No port: the director's port (as ipvsadm does for -r
                // without a port). Direct routing and tunnelling always
                // use it (the parser refuses another one), as ipvsadm
                // forces it for -g and -i — except for a director without an
                // address (a firewall-mark service), whose servers keep
                // theirs (0: the client's port).
                port: match forward {
                    Forward::Masq => s.port.unwrap_or(port),
                    _ if key.mark().is_some() => s.port.unwrap_or(0),
                    _ => port,
                },
                forward,
                weight: i32::try_from(s.weight).unwrap_or(i32::MAX),
                u_threshold: s.maxconn.unwrap_or(0),
                l_threshold: s.minconn.unwrap_or(0),
            };
            let params = check_params(d, s);
            let check = s.check.then(|| check_spec(d, &params, &cfg));
            if let Some(c) = &check {
                let needs_port = matches!(
                    c.kind,
                    lvs_health::CheckKind::Tcp | lvs_health::CheckKind::Http { .. }
                );
                if needs_port && c.port == 0 {
                    return Err(err(
                        s.span,
                        format!(
                            "server `{}`: its check has no port to connect to (the server has none): add `port N` to the check",
                            s.name.value
                        ),
                    ));
                }
            }
            let server = Server {
                cfg,
                check,
                sorry: s.sorry,
                inhibit: s.check && params.inhibit,
                director: d.name.value.clone(),
                name: s.name.value.clone(),
            };
            desired
                .add_server(engine, key, server)
                .map_err(|e| err(s.span, format!("server `{}`: {e}", s.name.value)))?;
        }
    }
    engine.set_flows(flows(cfg, &marks));
    Ok(())
}

/// The firewall mark of every director without an address: its `mark`, or
/// the smallest one not taken, in file order.
fn marks(cfg: &Config) -> Result<std::collections::HashMap<&str, u32>, (Span, String)> {
    let mut by_name = std::collections::HashMap::new();
    let mut taken: std::collections::HashMap<u32, &str> = std::collections::HashMap::new();
    for d in cfg.directors.iter().filter(|d| d.addr.is_none()) {
        if let Some(m) = &d.mark {
            if let Some(other) = taken.insert(m.value, &d.name.value) {
                return Err((
                    m.span,
                    format!("mark {} is taken by director `{other}` already", m.value),
                ));
            }
            by_name.insert(d.name.value.as_str(), m.value);
        }
    }
    let mut next = 1u32;
    for d in cfg
        .directors
        .iter()
        .filter(|d| d.addr.is_none() && d.mark.is_none())
    {
        while taken.contains_key(&next) {
            next += 1;
        }
        taken.insert(next, &d.name.value);
        by_name.insert(d.name.value.as_str(), next);
    }
    Ok(by_name)
}

/// The engine's flows: each `flow` line with its director's mark.
fn flows(cfg: &Config, marks: &std::collections::HashMap<&str, u32>) -> Vec<lvs_core::Flow> {
    cfg.flows
        .iter()
        .map(|f| lvs_core::Flow {
            dst: f.to.value.0,
            dst_len: f.to.value.1,
            src: f.from.as_ref().map(|p| p.value),
            protocol: f.protocol.map(|p| match p {
                Protocol::Tcp => ipproto::TCP,
                Protocol::Udp => ipproto::UDP,
                Protocol::Sctp => ipproto::SCTP,
            }),
            ports: f.ports.clone(),
            mark: marks.get(f.director.value.as_str()).copied().unwrap_or(0),
        })
        .collect()
}

/// The check parameters of server `s`: the director's `check` line, each
/// option the server's own `check …` gives replacing it.
fn check_params(d: &lvs_config::Director, s: &lvs_config::Server) -> lvs_config::Check {
    let dir = d
        .check
        .as_ref()
        .map(|c| c.value.clone())
        .unwrap_or_default();
    let own = &s.check_params;
    lvs_config::Check {
        timeout: own.timeout.or(dir.timeout),
        interval: own.interval.or(dir.interval),
        source: own.source.or(dir.source),
        port: own.port.or(dir.port),
        rise: own.rise.or(dir.rise),
        fall: own.fall.or(dir.fall),
        inhibit: own.inhibit || dir.inhibit,
    }
}

/// The health check of a server with `check` (seed 003): its check
/// parameters (`check_params`) with their defaults (interval 10 s, timeout
/// half of it, rise 1, fall 1), the director's `option …check` method (ICMP
/// echo without one), and the `port` given there or else the server's own.
fn check_spec(d: &lvs_config::Director, params: &lvs_config::Check, cfg: &DestConfig) -> Check {
    let kind = match d.health.as_ref().map(|h| &h.value) {
        None | Some(lvs_config::HealthCheck::Icmp) => lvs_health::CheckKind::Icmp,
        Some(lvs_config::HealthCheck::Tcp) => lvs_health::CheckKind::Tcp,
        Some(lvs_config::HealthCheck::Http {
            uri,
            status_code,
            vhost,
        }) => lvs_health::CheckKind::Http {
            uri: uri.clone().unwrap_or_else(|| "/".into()),
            vhost: vhost.clone(),
            status: status_code.unwrap_or(200),
        },
        Some(lvs_config::HealthCheck::Arp { iface }) => lvs_health::CheckKind::Arp {
            iface: iface.clone(),
        },
    };
    lvs_health::CheckSpec {
        kind,
        addr: cfg.addr,
        port: params.port.unwrap_or(cfg.port),
        source: params.source,
        interval: std::time::Duration::from_secs(u64::from(params.interval_secs())),
        timeout: std::time::Duration::from_secs(u64::from(params.timeout_secs())),
        rise: params.rise.unwrap_or(1),
        fall: params.fall.unwrap_or(1),
    }
}

/// The engine's forwarding method and tunnel settings for a server's mode.
fn forwarding(mode: Mode) -> (Forward, Tunnel) {
    match mode {
        Mode::Gateway => (Forward::Route, Tunnel::default()),
        Mode::Nat => (Forward::Masq, Tunnel::default()),
        Mode::Tunnel(t) => {
            let (kind, port) = match t.kind {
                lvs_config::TunnelType::Ipip => (TunnelType::Ipip, 0),
                lvs_config::TunnelType::Gue { port } => (TunnelType::Gue, port),
                lvs_config::TunnelType::Gre => (TunnelType::Gre, 0),
            };
            let csum = match t.csum {
                lvs_config::TunnelCsum::NoCsum => TunnelCsum::NoCsum,
                lvs_config::TunnelCsum::Csum => TunnelCsum::Csum,
                lvs_config::TunnelCsum::RemCsum => TunnelCsum::RemCsum,
            };
            (Forward::Tunnel, Tunnel { kind, port, csum })
        }
    }
}

/// Scheduler flag names to bits, refusing flags that do not belong to the
/// scheduler the way ipvsadm refuses them for `-b`.
fn sched_flags(scheduler: &str, names: &[String]) -> Result<u32, String> {
    let mut bits = 0;
    for n in names {
        let (bit, needs) = match n.as_str() {
            "sh-fallback" => (lvs_core::sched::SCHED_F_FALLBACK, Some("sh")),
            "sh-port" => (lvs_core::sched::SCHED_F_PORT, Some("sh")),
            "mh-fallback" => (lvs_core::sched::SCHED_F_FALLBACK, Some("mh")),
            "mh-port" => (lvs_core::sched::SCHED_F_PORT, Some("mh")),
            "flag-1" => (lvs_core::sched::SCHED_F_FALLBACK, None),
            "flag-2" => (lvs_core::sched::SCHED_F_PORT, None),
            "flag-3" => (lvs_core::sched::SCHED_F_3, None),
            other => return Err(format!("unknown scheduler flag `{other}`")),
        };
        if let Some(want) = needs {
            if want != scheduler {
                let balance = if want == "sh" {
                    "balance source"
                } else {
                    "balance mh"
                };
                return Err(format!(
                    "scheduler flag `{n}` needs `{balance}`, not the `{scheduler}` scheduler"
                ));
            }
        }
        bits |= bit;
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Engine, ConfigError> {
        let cfg = lvs_config::parse_str(text, "t.conf")?;
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text)?;
        Ok(e)
    }

    #[test]
    fn a_nat_director_becomes_a_service() {
        let e = load(
            "director web 198.18.0.100:80 TCP\n  balance roundrobin\n  mode nat\n  server a 198.18.1.11:80\n  server b 198.18.1.12 weight 2\n",
        )
        .unwrap();
        let (s, dests) = e.services().next().unwrap();
        assert_eq!(s.scheduler.name(), "wrr");
        // Front insertion: b (added last) is first in the list.
        assert_eq!(
            dests.iter().map(|d| (d.port, d.weight)).collect::<Vec<_>>(),
            [(80, 2), (80, 1)]
        );
    }

    #[test]
    fn unsupported_constructs_point_at_their_line() {
        let e = load("director web 198.18.0.100:80\n mode nat\n balance source\n option schedflags sh-port\n").unwrap();
        let (s, _) = e.services().next().unwrap();
        assert_eq!(
            (s.scheduler.name(), s.sched_flags),
            ("sh", lvs_core::sched::SCHED_F_PORT)
        );
        let e = load("director web 198.18.0.100\n mode nat\n")
            .err()
            .unwrap();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("needs a port"));
        assert!(load("").is_ok());
        let e = load("director web 198.18.0.100:80\n mode nat\n option schedflags sh-port\n")
            .err()
            .unwrap();
        assert_eq!((e.line, e.col), (3, 9));
        assert!(
            e.message.contains("needs `balance source`"),
            "{}",
            e.message
        );
    }
}

#[cfg(test)]
mod threshold_tests {
    use super::*;

    #[test]
    fn maxconn_and_minconn_become_thresholds() {
        let text = "director web 198.18.0.100:80\n mode nat\n server a 198.18.1.11:80 maxconn 100 minconn 50\n";
        let cfg = lvs_config::parse_str(text, "t.conf").unwrap();
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text).unwrap();
        let (_, dests) = e.services().next().unwrap();
        assert_eq!((dests[0].u_threshold, dests[0].l_threshold), (100, 50));
    }
}

#[cfg(test)]
mod sysctl_tests {
    use super::*;

    fn load(text: &str) -> Result<Engine, ConfigError> {
        let cfg = lvs_config::parse_str(text, "t.conf")?;
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text)?;
        Ok(e)
    }

    #[test]
    fn sysctl_lines_set_the_engine_and_errors_point_at_them() {
        let e = load("timeout 3600 60 30\nsysctl conn_reuse_mode 0\nsysctl lblcr_expiration 60\n")
            .unwrap();
        assert_eq!(e.timeouts(), (3600, 60, 30));
        assert_eq!(e.sysctl("conn_reuse_mode").unwrap(), "0");
        assert_eq!(e.sched_settings.lblcr_expiration_s, 60);
        let e = load("sysctl conn_reuse_modes 0\n").err().unwrap();
        assert_eq!((e.line, e.col), (1, 8));
        let e = load("\nsysctl lblc_expiration 9999999\n").err().unwrap();
        assert_eq!((e.line, e.col), (2, 24));
        assert!(e.message.contains("-8589934..8589934"), "{}", e.message);
        let e = load("sysctl secure_tcp 4\n").err().unwrap();
        assert_eq!((e.line, e.col), (1, 19));
        assert!(e.message.contains("an integer in 0..3"), "{}", e.message);
        let e = load("sysctl secure_tcp 3\nsysctl sync_threshold 5 10\n").unwrap();
        assert!(e.secure_tcp_on());
        assert_eq!(e.sysctl("sync_threshold").unwrap(), "5\t10");
    }
}

#[cfg(test)]
mod persistence_tests {
    use super::*;

    fn opts(text: &str) -> ServiceOptions {
        let cfg = lvs_config::parse_str(text, "t.conf").unwrap();
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text).unwrap();
        let (s, _) = e.services().next().unwrap();
        s.opts
    }

    #[test]
    fn persistence_and_onepacket_options_reach_the_engine() {
        let o = opts("director web 198.18.0.100:443\n mode nat\n option persistence timeout 60 netmask 255.255.255.0\n");
        assert_eq!(
            o,
            ServiceOptions {
                persistent: Some(60),
                netmask: 0xffff_ff00,
                one_packet: false
            }
        );
        let o = opts("director web 198.18.0.100:443\n mode nat\n option persistence\n");
        assert_eq!((o.persistent, o.netmask), (Some(360), u32::MAX));
        // A director for all ports needs persistence, as port-0 services do.
        let o =
            opts("director all 198.18.0.100\n mode nat\n option persistence netmask 255.255.0.0\n");
        assert_eq!((o.persistent, o.netmask), (Some(360), 0xffff_0000));
        let o = opts("director dns 198.18.0.100:53 UDP\n mode nat\n option onepacket\n");
        assert!(o.one_packet && o.persistent.is_none());
    }
}

#[cfg(test)]
mod forwarding_tests {
    use super::*;

    fn load(text: &str) -> Result<Engine, ConfigError> {
        let cfg = lvs_config::parse_str(text, "t.conf")?;
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text)?;
        Ok(e)
    }

    /// `(address, port, method, tunnel)` of every destination, sorted by address.
    fn dests(e: &Engine) -> Vec<(String, u16, Forward, Tunnel)> {
        let (_, dests) = e.services().next().unwrap();
        let mut v: Vec<_> = dests
            .iter()
            .map(|d| (d.addr.to_string(), d.port, d.forward, d.tunnel))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn tun(kind: TunnelType, port: u16, csum: TunnelCsum) -> Tunnel {
        Tunnel { kind, port, csum }
    }

    #[test]
    fn a_director_without_mode_routes_directly() {
        // Seed 003's syntax, no `mode` line: direct routing, the service port.
        let e = load(
            "director web 198.18.0.100:80 TCP\n  balance roundrobin\n  server web1 198.18.1.11:80 weight 10\n  server web2 198.18.1.12 weight 10\n",
        )
        .unwrap();
        assert_eq!(
            dests(&e),
            [
                ("198.18.1.11".into(), 80, Forward::Route, Tunnel::default()),
                ("198.18.1.12".into(), 80, Forward::Route, Tunnel::default()),
            ]
        );
    }

    #[test]
    fn tunnel_settings_and_per_server_methods_reach_the_engine() {
        use TunnelCsum::{Csum, NoCsum, RemCsum};
        let e = load(
            "\
director mixed 198.18.0.100:80
  mode tunnel gue port 6080 csum
  server a 198.18.1.11
  server b 198.18.1.12:80 mode gateway
  server c 198.18.1.13:8080 mode nat
  server d 198.18.1.14 mode tunnel
  server e 198.18.1.15 mode tunnel gre csum
  server f 198.18.1.16 mode tunnel gue port 7000 remcsum
",
        )
        .unwrap();
        assert_eq!(
            dests(&e),
            [
                (
                    "198.18.1.11".into(),
                    80,
                    Forward::Tunnel,
                    tun(TunnelType::Gue, 6080, Csum)
                ),
                ("198.18.1.12".into(), 80, Forward::Route, Tunnel::default()),
                ("198.18.1.13".into(), 8080, Forward::Masq, Tunnel::default()),
                (
                    "198.18.1.14".into(),
                    80,
                    Forward::Tunnel,
                    tun(TunnelType::Ipip, 0, NoCsum)
                ),
                (
                    "198.18.1.15".into(),
                    80,
                    Forward::Tunnel,
                    tun(TunnelType::Gre, 0, Csum)
                ),
                (
                    "198.18.1.16".into(),
                    80,
                    Forward::Tunnel,
                    tun(TunnelType::Gue, 7000, RemCsum)
                ),
            ]
        );
        // A director for all ports: gateway servers get port 0 (any port).
        let e = load(
            "director all 198.18.0.100\n option persistence\n server a 198.18.1.11\n server b 198.18.1.12:0 mode tunnel gre\n",
        )
        .unwrap();
        assert_eq!(
            dests(&e),
            [
                ("198.18.1.11".into(), 0, Forward::Route, Tunnel::default()),
                (
                    "198.18.1.12".into(),
                    0,
                    Forward::Tunnel,
                    tun(TunnelType::Gre, 0, NoCsum)
                ),
            ]
        );
    }

    #[test]
    fn ipv6_directors_and_tunnels_across_families() {
        // Tunnels may cross families (an IPv6 server of an IPv4 director
        // and the reverse); gateway and NAT may not (the kernel's refusal).
        let eng =
            load("director web 198.18.0.100:80\n server a 2001:db8::1 mode tunnel\n").unwrap();
        let (_, dests) = eng.services().next().unwrap();
        assert_eq!(dests[0].forward, Forward::Tunnel);
        let e = load("director web [2001:db8::1]:80\n server a 198.18.1.11\n")
            .err()
            .unwrap();
        assert!(e.message.contains("address family"), "{}", e.message);
        let eng = load(
            "director web6 [2001:db8::10]:80\n server a 2001:db8:1::11\n server b [2001:db8:1::12]:8080 mode nat\n server c 198.18.1.13 mode tunnel gue port 6080\n",
        )
        .unwrap();
        let (s, dests) = eng.services().next().unwrap();
        assert_eq!(
            s.key.addr,
            "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
        );
        let mut got: Vec<(String, u16, Forward)> = dests
            .iter()
            .map(|d| (d.addr.to_string(), d.port, d.forward))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("198.18.1.13".into(), 80, Forward::Tunnel),
                ("2001:db8:1::11".into(), 80, Forward::Route),
                ("2001:db8:1::12".into(), 8080, Forward::Masq)
            ]
        );
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn checks_come_from_the_director_and_the_server_line() {
        let text = "director web 198.18.0.100:80 TCP
  mode nat
  check interval 4 fall 2
  option httpcheck uri /health vhost www.example
  server a 198.18.1.11:8080 check rise 3 port 9000 inhibit
  server b 198.18.1.12 check
  server c 198.18.1.13 sorry
  server d 198.18.1.14
";
        let cfg = lvs_config::parse_str(text, "t.conf").unwrap();
        let mut e = Engine::new(0);
        let mut d = Desired::default();
        apply_with(&mut e, &mut d, &cfg, "t.conf", text).unwrap();
        let servers: Vec<_> = d.servers().map(|(_, s, up)| (s.clone(), up)).collect();
        assert_eq!(servers.len(), 4);
        let a = servers[0].0.check.clone().unwrap();
        assert_eq!(
            a.kind,
            lvs_health::CheckKind::Http {
                uri: "/health".into(),
                vhost: Some("www.example".into()),
                status: 200
            }
        );
        assert_eq!((a.port, a.rise, a.fall), (9000, 3, 2));
        assert_eq!(
            (a.interval, a.timeout),
            (Duration::from_secs(4), Duration::from_secs(2))
        );
        assert!(servers[0].0.inhibit);
        let b = servers[1].0.check.clone().unwrap();
        assert_eq!((b.port, b.rise, b.fall), (80, 1, 2));
        assert!(!servers[1].0.inhibit);
        assert!(servers[2].0.sorry && servers[2].0.check.is_none());
        assert!(servers[3].0.check.is_none());
        // The sorry server is not in the engine while the others are up.
        let (_, ds) = e
            .service(&ServiceKey {
                protocol: 6,
                addr: "198.18.0.100".parse().unwrap(),
                port: 80,
            })
            .unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(d.checks().len(), 2);
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    fn load(text: &str) -> Result<(), ConfigError> {
        let cfg = lvs_config::parse_str(text, "t.conf")?;
        let mut e = Engine::new(0);
        apply(&mut e, &cfg, "t.conf", text)
    }

    #[test]
    fn the_file_is_refused_what_lvsadm_and_the_kernel_refuse() {
        // A port-0 director without persistence (lvsadm refuses it too).
        let e = load("director a 198.18.0.100:0 TCP\n  mode nat\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 10), "{e}");
        assert!(
            e.to_string()
                .contains("zero port specified for a non-persistent service"),
            "{e}"
        );
        // A real server that is not unicast.
        let e = load("director a 198.18.0.100:80 TCP\n  mode nat\n  server m 224.0.0.9:80\n")
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(
            e.to_string().contains("real server address not unicast"),
            "{e}"
        );
    }
}
