//! The kernel's `/proc/net/ip_vs*` text files (spec `procfs.md`), rendered
//! from a running lvsd's listings for scripts that parse them
//! (`lvsadm --proc NAME`). Pure functions: the exact bytes the kernel
//! prints, with two differences the spec allows for: services come in
//! lvsd's order (the kernel's hash-bucket order is not reproducible
//! either), and persistence timeouts are in ticks of HZ = 250 (Debian's
//! kernels; HZ is a kernel build choice).

use crate::proto::{ConnInfo, ServiceInfo, StatsInfo};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The kernel tick rate the persistence timeout is printed in.
pub const HZ: u64 = 250;

/// The `/proc/net` files `lvsadm --proc` can print.
pub const FILES: [&str; 4] = ["ip_vs", "ip_vs_conn", "ip_vs_conn_sync", "ip_vs_stats"];

/// `%pI6`: eight groups of four lower-case hex digits, no compression.
fn pi6(a: std::net::Ipv6Addr) -> String {
    let s = a.segments();
    let g: Vec<String> = s.iter().map(|w| format!("{w:04x}")).collect();
    g.join(":")
}

/// An address as the files print it: IPv4 as a host-order hex integer,
/// IPv6 as `%pI6` (in brackets where `bracket`).
fn addr(a: IpAddr, bracket: bool) -> String {
    match a {
        IpAddr::V4(v4) => format!("{:08X}", u32::from(v4)),
        IpAddr::V6(v6) if bracket => format!("[{}]", pi6(v6)),
        IpAddr::V6(v6) => pi6(v6),
    }
}

/// `/proc/net/ip_vs`: services and their real servers.
pub fn ip_vs(conn_tab_size: u32, services: &[ServiceInfo]) -> String {
    let mut o = format!(
        "IP Virtual Server version 1.2.1 (size={conn_tab_size})\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
    );
    for s in services {
        let k = &s.spec.key;
        // `TCP  C000020A:0050 wlc OPS `, `TCP  [v6]:0050 rr ` (no ops
        // field) or `FWM  00000007 wlc OPS` (spec §1: mind the spaces).
        let ops = if s.spec.one_packet { "ops " } else { "" };
        let (label, tail) = match (k.mark(), k.addr) {
            (Some(m), _) => (format!("FWM  {m:08X}"), ops.to_string()),
            (None, IpAddr::V4(_)) => (
                format!(
                    "{}  {}:{:04X}",
                    k.protocol.label(),
                    addr(k.addr, false),
                    k.port
                ),
                format!("{ops} "),
            ),
            (None, IpAddr::V6(_)) => (
                format!(
                    "{}  {}:{:04X}",
                    k.protocol.label(),
                    addr(k.addr, true),
                    k.port
                ),
                String::new(),
            ),
        };
        let _ = write!(o, "{label} {} {tail}", s.spec.scheduler);
        match s.spec.persistent {
            Some(t) => {
                // The IPv6 prefix length is byte-swapped for display as
                // the kernel does on little-endian hosts.
                let mask = match k.addr {
                    IpAddr::V4(_) => s.spec.netmask,
                    IpAddr::V6(_) => s.spec.netmask.swap_bytes(),
                };
                let _ = writeln!(o, "persistent {} {:08X}", u64::from(t) * HZ, mask);
            }
            None => o.push('\n'),
        }
        for d in &s.dests {
            let _ = writeln!(
                o,
                "  -> {}:{:04X}      {:<7} {:<6} {:<10} {:<10}",
                addr(d.addr, true),
                d.port,
                d.forward.label(),
                d.weight,
                d.active_conns,
                d.inact_conns
            );
        }
    }
    o
}

fn conn_start(o: &mut String, c: &ConnInfo) {
    let _ = write!(
        o,
        "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11}",
        c.protocol,
        addr(c.caddr, false),
        c.cport,
        addr(c.vaddr, false),
        c.vport,
        addr(c.daddr, false),
        c.dport,
        c.state
    );
}

/// `/proc/net/ip_vs_conn` (no persistence-engine data in lvsd).
pub fn ip_vs_conn(conns: &[ConnInfo]) -> String {
    let mut o = String::from(
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n",
    );
    for c in conns {
        conn_start(&mut o, c);
        let _ = writeln!(o, " {:>7}", c.expires_secs);
    }
    o
}

/// `/proc/net/ip_vs_conn_sync`: origin `SYNC` for entries a sync message
/// made, else `LOCAL`.
pub fn ip_vs_conn_sync(conns: &[ConnInfo]) -> String {
    let mut o =
        String::from("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires\n");
    for c in conns {
        conn_start(&mut o, c);
        let origin = if c.synced { "SYNC" } else { "LOCAL" };
        let _ = writeln!(o, " {:<6} {:>7}", origin, c.expires_secs);
    }
    o
}

/// `/proc/net/ip_vs_stats`: the totals and rates.
pub fn ip_vs_stats(t: &StatsInfo) -> String {
    format!(
        "   Total Incoming Outgoing         Incoming         Outgoing\n   Conns  Packets  Packets            Bytes            Bytes\n{:>8X} {:>8X} {:>8X} {:>16X} {:>16X}\n\n Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n{:>8X} {:>8X} {:>8X} {:>16X} {:>16X}\n",
        t.conns, t.in_pkts, t.out_pkts, t.in_bytes, t.out_bytes, t.cps, t.in_pps, t.out_pps, t.in_bps, t.out_bps
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DestInfo, Forward, Protocol, ServiceKey, ServiceSpec};

    fn dest(a: &str, port: u16, f: Forward, w: i32, act: u32, inact: u32) -> DestInfo {
        DestInfo {
            addr: a.parse().unwrap(),
            port,
            forward: f,
            weight: w,
            active_conns: act,
            inact_conns: inact,
            persist_conns: 0,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Default::default(),
            stats: None,
        }
    }

    fn svc(
        p: Protocol,
        a: &str,
        port: u16,
        sched: &str,
        persistent: Option<(u32, u32)>,
        ops: bool,
        dests: Vec<DestInfo>,
    ) -> ServiceInfo {
        ServiceInfo {
            spec: ServiceSpec {
                key: ServiceKey {
                    protocol: p,
                    addr: a.parse().unwrap(),
                    port,
                },
                scheduler: sched.into(),
                sched_flags: 0,
                persistent: persistent.map(|p| p.0),
                netmask: persistent.map_or(u32::MAX, |p| p.1),
                one_packet: ops,
            },
            dests,
            stats: None,
        }
    }

    /// The spec's example (§1), fwmark service aside (lvsd has none yet).
    #[test]
    fn ip_vs_matches_the_spec_example() {
        let services = vec![
            svc(
                Protocol::Tcp,
                "192.0.2.10",
                80,
                "wlc",
                None,
                false,
                vec![
                    dest("10.0.0.12", 80, Forward::Masq, 2, 25, 7),
                    dest("10.0.0.11", 80, Forward::Masq, 1, 12, 3),
                ],
            ),
            svc(
                Protocol::Tcp,
                "192.0.2.10",
                443,
                "rr",
                Some((360, 0xffff_ff00)),
                false,
                vec![
                    dest("10.0.0.12", 443, Forward::Route, 1, 38, 97),
                    dest("10.0.0.11", 443, Forward::Route, 1, 40, 112),
                ],
            ),
            svc(
                Protocol::Udp,
                "192.0.2.10",
                53,
                "sh",
                None,
                true,
                vec![dest("10.0.0.21", 53, Forward::Masq, 1, 0, 0)],
            ),
            svc(
                Protocol::Tcp,
                "2001:db8::80",
                80,
                "rr",
                None,
                false,
                vec![dest("2001:db8::a0a0", 80, Forward::Masq, 1, 2, 0)],
            ),
        ];
        assert_eq!(
            ip_vs(4096, &services),
            "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C000020A:0050 wlc  
  -> 0A00000C:0050      Masq    2      25         7         
  -> 0A00000B:0050      Masq    1      12         3         
TCP  C000020A:01BB rr  persistent 90000 FFFFFF00
  -> 0A00000C:01BB      Route   1      38         97        
  -> 0A00000B:01BB      Route   1      40         112       
UDP  C000020A:0035 sh ops  
  -> 0A000015:0035      Masq    1      0          0         
TCP  [2001:0db8:0000:0000:0000:0000:0000:0080]:0050 rr 
  -> [2001:0db8:0000:0000:0000:0000:0000:a0a0]:0050      Masq    1      2          0         
"
        );
        // IPv6 persistence: the prefix length byte-swapped (§1, /64).
        let v6 = svc(
            Protocol::Tcp,
            "2001:db8::80",
            80,
            "rr",
            Some((10, 64)),
            false,
            vec![],
        );
        assert!(ip_vs(4096, &[v6]).contains("rr persistent 2500 40000000\n"));
    }

    /// A connection from `(address, port)` pairs: client, VIP, server.
    fn conn(p: &str, ends: [(&str, u16); 3], st: &str, exp: u64) -> ConnInfo {
        let [(c, cport), (v, vport), (d, dport)] = ends;
        ConnInfo {
            protocol: p.into(),
            caddr: c.parse().unwrap(),
            cport,
            vaddr: v.parse().unwrap(),
            vport,
            daddr: d.parse().unwrap(),
            dport,
            state: st.into(),
            expires_secs: exp,
            synced: false,
        }
    }

    #[test]
    fn ip_vs_conn_and_conn_sync_match_the_spec_examples() {
        let conns = vec![
            conn(
                "TCP",
                [
                    ("203.0.113.10", 0xC822),
                    ("192.0.2.10", 80),
                    ("10.0.0.11", 80),
                ],
                "ESTABLISHED",
                897,
            ),
            conn(
                "TCP",
                [
                    ("198.51.100.7", 0x9CB0),
                    ("192.0.2.10", 443),
                    ("10.0.0.12", 443),
                ],
                "FIN_WAIT",
                75,
            ),
            conn(
                "TCP",
                [("198.51.100.0", 0), ("192.0.2.10", 443), ("10.0.0.12", 443)],
                "NONE",
                359,
            ),
            conn(
                "UDP",
                [
                    ("203.0.113.44", 0x81BB),
                    ("192.0.2.10", 53),
                    ("10.0.0.21", 53),
                ],
                "UDP",
                298,
            ),
            conn(
                "TCP",
                [
                    ("2001:db8:1::5", 0xC350),
                    ("2001:db8::80", 80),
                    ("2001:db8::a0a0", 80),
                ],
                "SYN_RECV",
                59,
            ),
        ];
        assert_eq!(
            ip_vs_conn(&conns),
            "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP CB00710A C822 C000020A 0050 0A00000B 0050 ESTABLISHED     897
TCP C6336407 9CB0 C000020A 01BB 0A00000C 01BB FIN_WAIT         75
TCP C6336400 0000 C000020A 01BB 0A00000C 01BB NONE            359
UDP CB00712C 81BB C000020A 0035 0A000015 0035 UDP             298
TCP 2001:0db8:0001:0000:0000:0000:0000:0005 C350 2001:0db8:0000:0000:0000:0000:0000:0080 0050 2001:0db8:0000:0000:0000:0000:0000:a0a0 0050 SYN_RECV         59
"
        );
        assert_eq!(
            ip_vs_conn_sync(&conns[..1]),
            "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires
TCP CB00710A C822 C000020A 0050 0A00000B 0050 ESTABLISHED LOCAL      897
"
        );
    }

    #[test]
    fn ip_vs_stats_matches_the_spec_example() {
        let t = StatsInfo {
            conns: 189_331,
            in_pkts: 2_955_325,
            out_pkts: 2_641_355,
            in_bytes: 252_761_598,
            out_bytes: 3_341_980_812,
            cps: 12,
            in_pps: 207,
            out_pps: 183,
            in_bps: 17_712,
            out_bps: 231_833,
        };
        assert_eq!(
            ip_vs_stats(&t),
            "   Total Incoming Outgoing         Incoming         Outgoing
   Conns  Packets  Packets            Bytes            Bytes
   2E393   2D183D   284DCB          F10D5FE         C732948C

 Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s
       C       CF       B7             4530            38999
"
        );
    }
}
