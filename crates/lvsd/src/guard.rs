//! Keeping the host kernel from handling the packets lvsd balances
//! ("two stacks, one packet"): the kernel sees every frame lvsd sees.
//!
//! Preferred: an nftables table `netdev lvsd` with one ingress chain on the
//! interfaces lvsd is attached to, dropping for each virtual service the
//! client→VIP:port packets and the real server→client replies (but not
//! replies addressed to the director itself, so its own connections to real
//! servers keep working). The ingress hook runs right after the packet taps
//! of the receiving device, so lvsd has its copy before the kernel drops
//! its own. (A prerouting chain would not do: with `br_netfilter` loaded,
//! prerouting runs at the bridge port, before the bridge device's taps.)
//! This works with the VIP configured on a kernel interface (as keepalived
//! does) and with kernel forwarding on.
//!
//! Fallback when `nft` is not installed: switch IPv4 forwarding off in the
//! namespace while lvsd runs (restored on exit); the VIP then must not be on
//! a kernel interface.

use lvs_core::wire::ipproto;
use lvs_core::Engine;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

const TABLE: &str = "lvsd";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// How the kernel is kept out of the way.
pub enum KernelGuard {
    Nft {
        installed: bool,
        devices: Vec<String>,
    },
    Forwarding {
        restore: Option<String>,
    },
}

fn proto_name(p: u8) -> Option<&'static str> {
    match p {
        ipproto::TCP => Some("tcp"),
        ipproto::UDP => Some("udp"),
        ipproto::SCTP => Some("sctp"),
        _ => None,
    }
}

/// The nftables ruleset for the engine's services on the interfaces
/// `devices` (a whole-table replacement, applied atomically by `nft -f`).
/// Destinations that were deleted but still carry connections keep their
/// rule, since lvsd still translates their replies.
pub fn ruleset(engine: &Engine, devices: &[String]) -> String {
    let mut r =
        format!("add table netdev {TABLE}\ndelete table netdev {TABLE}\ntable netdev {TABLE} {{\n");
    let devs: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    let _ = writeln!(
        r,
        "  chain ingress {{\n    type filter hook ingress devices = {{ {} }} priority filter; policy accept;",
        devs.join(", ")
    );
    let mut lines = std::collections::BTreeSet::new();
    for (svc, _) in engine.services() {
        let (IpAddr::V4(vip), Some(proto)) = (svc.key.addr, proto_name(svc.key.protocol)) else {
            continue;
        };
        // A port-0 service (persistent, all ports) takes every port.
        lines.insert(match svc.key.port {
            0 => format!("    ip daddr {vip} meta l4proto {proto} drop"),
            port => format!("    ip daddr {vip} {proto} dport {port} drop"),
        });
    }
    for d in engine.all_dests() {
        // Only NAT real servers' replies are translated by lvsd; replies of
        // direct-routing and tunnel servers carry the VIP and are the host's
        // to forward (or to never see).
        if d.forward != lvs_core::Forward::Masq {
            continue;
        }
        let (IpAddr::V4(rip), Some(proto)) = (d.addr, proto_name(d.svc_key.protocol)) else {
            continue;
        };
        // Port 0: any port (a real server of an all-port service).
        lines.insert(match d.reply_port() {
            0 => format!("    ip saddr {rip} meta l4proto {proto} fib daddr type != local drop"),
            port => format!("    ip saddr {rip} {proto} sport {port} fib daddr type != local drop"),
        });
    }
    for l in lines {
        r.push_str(&l);
        r.push('\n');
    }
    r.push_str("  }\n}\n");
    r
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn nft_available() -> bool {
    Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl KernelGuard {
    /// Installs the guard for the engine's current services.
    pub fn install(engine: &Engine, devices: &[String]) -> Result<KernelGuard, String> {
        if nft_available() {
            let mut g = KernelGuard::Nft {
                installed: false,
                devices: devices.to_vec(),
            };
            g.update(engine)?;
            eprintln!("lvsd: nftables table `netdev {TABLE}` keeps the kernel from handling balanced packets");
            return Ok(g);
        }
        let old = std::fs::read_to_string(IP_FORWARD).unwrap_or_default();
        if old.trim() == "0" {
            return Ok(KernelGuard::Forwarding { restore: None });
        }
        std::fs::write(IP_FORWARD, "0").map_err(|e| {
            format!("nft is not installed and {IP_FORWARD} cannot be set to 0: {e}")
        })?;
        eprintln!("lvsd: nft not found: switched kernel IPv4 forwarding off in this namespace (restored on exit)");
        Ok(KernelGuard::Forwarding {
            restore: Some(old.trim().to_string()),
        })
    }

    /// Follows a change of the service set.
    pub fn update(&mut self, engine: &Engine) -> Result<(), String> {
        if let KernelGuard::Nft { installed, devices } = self {
            nft(&ruleset(engine, devices))?;
            *installed = true;
        }
        Ok(())
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        match self {
            KernelGuard::Nft {
                installed: true, ..
            } => {
                if let Err(e) = nft(&format!("delete table netdev {TABLE}\n")) {
                    eprintln!(
                        "lvsd: warning: could not remove nftables table `netdev {TABLE}`: {e}"
                    );
                }
            }
            KernelGuard::Nft {
                installed: false, ..
            } => {}
            KernelGuard::Forwarding { restore } => {
                if let Some(v) = restore {
                    let _ = std::fs::write(IP_FORWARD, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::{DestConfig, Forward, ServiceKey};
    use std::net::Ipv4Addr;

    #[test]
    fn ruleset_drops_service_traffic_but_not_replies_to_the_director() {
        let mut e = Engine::new(0);
        let key = ServiceKey {
            protocol: 6,
            addr: Ipv4Addr::new(198, 18, 0, 100).into(),
            port: 80,
        };
        e.add_service(key, "rr", 0).unwrap();
        let d = DestConfig {
            tunnel: Default::default(),
            addr: Ipv4Addr::new(198, 18, 1, 11).into(),
            port: 8080,
            forward: Forward::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, d.clone()).unwrap();
        let r = ruleset(&e, &["d0".into(), "br1".into()]);
        assert!(
            r.starts_with("add table netdev lvsd\ndelete table netdev lvsd\n"),
            "{r}"
        );
        assert!(
            r.contains("hook ingress devices = { \"d0\", \"br1\" }"),
            "{r}"
        );
        assert!(
            r.contains("    ip daddr 198.18.0.100 tcp dport 80 drop\n"),
            "{r}"
        );
        assert!(
            r.contains("    ip saddr 198.18.1.11 tcp sport 8080 fib daddr type != local drop\n"),
            "{r}"
        );
        // A port-0 (all ports, persistent) service takes every port.
        let all = ServiceKey { port: 0, ..key };
        let opts = lvs_core::ServiceOptions {
            persistent: Some(60),
            ..Default::default()
        };
        e.add_service_with(all, "rr", 0, opts).unwrap();
        e.add_dest(
            all,
            DestConfig {
                tunnel: Default::default(),
                port: 0,
                ..d.clone()
            },
        )
        .unwrap();
        let r0 = ruleset(&e, &["d0".into()]);
        assert!(
            r0.contains(
                "    ip daddr 198.18.0.100 meta l4proto tcp drop
"
            ),
            "{r0}"
        );
        assert!(
            r0.contains(
                "    ip saddr 198.18.1.11 meta l4proto tcp fib daddr type != local drop
"
            ),
            "{r0}"
        );
        e.delete_service(all).unwrap();
        // Deleting the service removes its rules (its destination had no connections).
        e.delete_service(key).unwrap();
        let r = ruleset(&e, &["d0".into()]);
        assert!(!r.contains("ip daddr"), "{r}");
    }
}
