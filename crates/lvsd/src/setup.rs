//! Turns a parsed configuration file into engine state, refusing (with the
//! file, line and column) what this build cannot do yet.

use lvs_config::{Config, ConfigError, Mode, Netmask, Protocol, Span};
use lvs_core::wire::ipproto;
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, ServiceOptions};

/// Persistence timeout when `option persistence` gives none (`ipvsadm -p`'s default).
pub const DEFAULT_PERSISTENCE_SECS: u32 = 360;

/// Applies every director of `cfg` to `engine`. `text` and `file` are used
/// to point errors at the offending line.
pub fn apply(engine: &mut Engine, cfg: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    let err = |span: Span, msg: String| ConfigError::at(file, text, span, msg);
    if let Some(t) = &cfg.timeouts {
        let [tcp, tcpfin, udp] = t.value;
        engine.set_timeouts(tcp, tcpfin, udp);
    }
    for (name, value) in &cfg.sysctls {
        use lvs_core::sysctl::SysctlError;
        match engine.set_sysctl(&name.value, &value.value) {
            Ok(()) => {}
            Err(e @ SysctlError::Unknown(_)) => return Err(err(name.span, e.to_string())),
            Err(e) => return Err(err(value.span, e.to_string())),
        }
    }
    for d in &cfg.directors {
        let Some(addr) = &d.addr else {
            return Err(err(d.name.span, format!(
                "director `{}` has no address: directors bound to flows (fwmark services) are not supported yet",
                d.name.value
            )));
        };
        if addr.value.is_ipv6() {
            return Err(err(
                addr.span,
                "IPv6 directors are not supported yet".into(),
            ));
        }
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
        if d.mode.value != Mode::Nat {
            let m = match d.mode.value {
                Mode::Gateway => "gateway",
                Mode::Tunnel => "tunnel",
                Mode::Nat => "nat",
            };
            let why = if d.mode.span == d.span {
                format!("director `{}` has no `mode` line, and the default `mode gateway` (direct routing) is not supported yet; add `mode nat`", d.name.value)
            } else {
                format!("`mode {m}` is not supported yet; only `mode nat` is")
            };
            return Err(err(d.mode.span, why));
        }
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
        if let Some(c) = &d.check {
            return Err(err(
                c.span,
                "`check` (health checks) is not supported yet".into(),
            ));
        }
        if let Some(h) = &d.health {
            return Err(err(
                h.span,
                "health checks (`option ...check`) are not supported yet".into(),
            ));
        }
        let protocol = match d.protocol {
            Protocol::Tcp => ipproto::TCP,
            Protocol::Udp => ipproto::UDP,
        };
        let key = ServiceKey {
            protocol,
            addr: addr.value,
            port,
        };
        let flags = match &d.sched_flags {
            None => 0,
            Some(f) => sched_flags(d.balance.value, &f.value).map_err(|m| err(f.span, m))?,
        };
        let opts = ServiceOptions {
            persistent: d
                .persistence
                .as_ref()
                .map(|p| p.value.timeout.unwrap_or(DEFAULT_PERSISTENCE_SECS)),
            netmask: match d.persistence.as_ref().and_then(|p| p.value.netmask) {
                None if key.addr.is_ipv6() => 128,
                None => u32::MAX,
                Some(Netmask::V4(m)) => m,
                Some(Netmask::Prefix(p)) if key.addr.is_ipv6() => u32::from(p),
                Some(Netmask::Prefix(p)) => u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0),
            },
            one_packet: d.one_packet.is_some(),
        };
        engine
            .add_service_with(key, d.balance.value, flags, opts)
            .map_err(|e| err(d.name.span, format!("director `{}`: {e}", d.name.value)))?;
        // Servers are added in file order; like `ipvsadm -a`, each new one
        // goes to the front of the destination list.
        for s in &d.servers {
            if s.check {
                return Err(err(
                    s.name.span,
                    "per-server `check` is not supported yet".into(),
                ));
            }
            if s.sorry {
                return Err(err(
                    s.name.span,
                    "sorry servers are not supported yet".into(),
                ));
            }
            if s.addr.value.is_ipv6() {
                return Err(err(
                    s.addr.span,
                    "IPv6 servers are not supported yet".into(),
                ));
            }
            let cfg = DestConfig {
                tunnel: Default::default(),
                addr: s.addr.value,
                // No port: the director's port (as ipvsadm does for -r without a port).
                port: s.port.unwrap_or(port),
                forward: Forward::Masq,
                weight: i32::try_from(s.weight).unwrap_or(i32::MAX),
                u_threshold: s.maxconn.unwrap_or(0),
                l_threshold: s.minconn.unwrap_or(0),
            };
            engine
                .add_dest(key, cfg)
                .map_err(|e| err(s.span, format!("server `{}`: {e}", s.name.value)))?;
        }
    }
    Ok(())
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
        let e = load("director web 198.18.0.100:80\n balance roundrobin\n")
            .err()
            .unwrap();
        assert_eq!((e.line, e.col), (1, 1));
        assert!(e.message.contains("mode nat"), "{}", e.message);
        let e = load("director web 198.18.0.100:80\n mode nat\n balance source\n option schedflags sh-port\n").unwrap();
        let (s, _) = e.services().next().unwrap();
        assert_eq!(
            (s.scheduler.name(), s.sched_flags),
            ("sh", lvs_core::sched::SCHED_F_PORT)
        );
        let e = load("director web 198.18.0.100:80\n mode tunnel\n")
            .err()
            .unwrap();
        assert_eq!((e.line, e.col), (2, 2));
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
