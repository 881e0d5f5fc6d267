//! `--json`: the listings for machines. The schema is documented in
//! `docs/json.md` and is independent of the control protocol's own
//! encoding (which may change between versions): names here only grow.

use lvs_control::{
    ConnInfo, Counter, DestInfo, Forward, HealthInfo, ServiceInfo, ServiceKey, StatsInfo,
    SysctlValue, Timeouts, TunnelCsum,
};
use serde_json::{json, Value};
use std::net::IpAddr;

fn stats(s: &Option<StatsInfo>) -> Value {
    let s = s.unwrap_or_default();
    json!({
        "conns": s.conns, "in_pkts": s.in_pkts, "out_pkts": s.out_pkts,
        "in_bytes": s.in_bytes, "out_bytes": s.out_bytes,
        "cps": s.cps, "in_pps": s.in_pps, "out_pps": s.out_pps,
        "in_bps": s.in_bps, "out_bps": s.out_bps,
    })
}

fn key(k: &ServiceKey) -> Value {
    match k.mark() {
        Some(mark) => json!({ "protocol": "FWM", "fwmark": mark, "ipv6": k.addr.is_ipv6() }),
        None => {
            json!({ "protocol": k.protocol.label(), "address": k.addr.to_string(), "port": k.port })
        }
    }
}

fn server(d: &DestInfo) -> Value {
    let tunnel = (d.forward == Forward::Tunnel).then(|| {
        json!({
            "type": d.tunnel.kind.label(),
            "port": d.tunnel.port,
            "csum": match d.tunnel.csum {
                TunnelCsum::NoCsum => "nocsum",
                TunnelCsum::Csum => "csum",
                TunnelCsum::RemCsum => "remcsum",
            },
        })
    });
    json!({
        "address": d.addr.to_string(),
        "port": d.port,
        "forward": d.forward.label(),
        "weight": d.weight,
        "active_conns": d.active_conns,
        "inactive_conns": d.inact_conns,
        "persistent_conns": d.persist_conns,
        "u_threshold": d.u_threshold,
        "l_threshold": d.l_threshold,
        "tunnel": tunnel,
        "stats": stats(&d.stats),
    })
}

/// `-L [--json]`: every service (or one) with its real servers.
pub fn services(conn_tab_size: u32, services: &[ServiceInfo]) -> String {
    let list: Vec<Value> = services
        .iter()
        .map(|s| {
            let sp = &s.spec;
            let persistent = sp.persistent.map(|t| {
                let netmask = match sp.key.addr {
                    IpAddr::V4(_) => std::net::Ipv4Addr::from(sp.netmask).to_string(),
                    IpAddr::V6(_) => sp.netmask.to_string(),
                };
                json!({ "timeout": t, "netmask": netmask })
            });
            let mut v = key(&sp.key);
            v["scheduler"] = json!(sp.scheduler);
            v["sched_flags"] = json!(lvs_control::render::sched_flags_text(
                &sp.scheduler,
                sp.sched_flags
            )
            .map(|f| f.split(',').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default());
            v["persistent"] = json!(persistent);
            v["one_packet"] = json!(sp.one_packet);
            v["stats"] = stats(&s.stats);
            v["servers"] = Value::Array(s.dests.iter().map(server).collect());
            v
        })
        .collect();
    line(json!({ "version": "1.2.1", "conn_tab_size": conn_tab_size, "services": list }))
}

/// `-L -c --json`: the connection entries.
pub fn connections(conns: &[ConnInfo]) -> String {
    let end = |a: IpAddr, p: u16| json!({ "address": a.to_string(), "port": p });
    let list: Vec<Value> = conns
        .iter()
        .map(|c| {
            json!({
                "protocol": c.protocol,
                "client": end(c.caddr, c.cport),
                "virtual": end(c.vaddr, c.vport),
                "server": end(c.daddr, c.dport),
                "state": c.state,
                "expires_s": c.expires_secs,
            })
        })
        .collect();
    line(json!({ "connections": list }))
}

/// `-L --timeout --json`.
pub fn timeouts(t: &Timeouts) -> String {
    line(json!({ "tcp": t.tcp, "tcpfin": t.tcpfin, "udp": t.udp }))
}

/// `--counters --json`: name → value.
pub fn counters(v: &[Counter]) -> String {
    let map: serde_json::Map<String, Value> =
        v.iter().map(|c| (c.name.clone(), json!(c.value))).collect();
    line(json!({ "counters": map }))
}

/// `--sysctl --json`.
pub fn sysctls(v: &[SysctlValue]) -> String {
    let list: Vec<Value> = v
        .iter()
        .map(|s| json!({ "name": s.name, "value": s.value, "no_effect": s.no_effect }))
        .collect();
    line(json!({ "sysctls": list }))
}

/// `--health --json`.
pub fn health(v: &[HealthInfo]) -> String {
    let list: Vec<Value> = v
        .iter()
        .map(|h| {
            json!({
                "director": h.director,
                "server": h.server,
                "service": key(&h.service),
                "address": h.addr.to_string(),
                "port": h.port,
                "check": h.check,
                "up": h.up,
                "sorry": h.sorry,
                "in_service": h.in_service,
                "weight": h.weight,
                "last_ok": h.last_ok,
                "reason": h.reason,
                "age_ms": h.age_ms,
                "successes": h.successes,
                "failures": h.failures,
                "latency": h.latency.as_ref().map(|l| json!({
                    "bounds_us": l.bounds_us,
                    "counts": l.counts,
                    "sum_us": l.sum_us,
                })),
            })
        })
        .collect();
    line(json!({ "servers": list }))
}

fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_control::{Protocol, TunnelType};

    #[test]
    fn services_have_the_documented_fields() {
        let s = ServiceInfo {
            spec: lvs_control::ServiceSpec {
                key: ServiceKey {
                    protocol: Protocol::Tcp,
                    addr: "198.18.0.100".parse().unwrap(),
                    port: 443,
                },
                scheduler: "sh".into(),
                sched_flags: 0x10,
                persistent: Some(600),
                netmask: 0xffff_ff00,
                one_packet: false,
            },
            dests: vec![DestInfo {
                addr: "198.18.1.11".parse().unwrap(),
                port: 443,
                forward: Forward::Tunnel,
                weight: 2,
                active_conns: 1,
                inact_conns: 0,
                persist_conns: 1,
                u_threshold: 0,
                l_threshold: 0,
                tunnel: lvs_control::Tunnel {
                    kind: TunnelType::Gue,
                    port: 6080,
                    csum: TunnelCsum::Csum,
                },
                stats: None,
            }],
            stats: None,
        };
        let v: Value = serde_json::from_str(&services(4096, &[s])).unwrap();
        let svc = &v["services"][0];
        assert_eq!(svc["protocol"], "TCP");
        assert_eq!(svc["sched_flags"], json!(["sh-port"]));
        assert_eq!(
            svc["persistent"],
            json!({"timeout": 600, "netmask": "255.255.255.0"})
        );
        let rs = &svc["servers"][0];
        assert_eq!(rs["forward"], "Tunnel");
        assert_eq!(
            rs["tunnel"],
            json!({"type": "gue", "port": 6080, "csum": "csum"})
        );
        assert_eq!(rs["stats"]["conns"], 0);
        assert_eq!(v["conn_tab_size"], 4096);
    }
}
