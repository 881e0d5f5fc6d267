use super::*;
use crate::proto::{ServiceSpec, StatsInfo, Timeouts, Tunnel, TunnelCsum, TunnelType};

fn key(p: Protocol, a: &str, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: p,
        addr: a.parse().unwrap(),
        port,
    }
}

#[allow(clippy::too_many_arguments)]
fn dest(a: &str, port: u16, fwd: Forward, w: i32, act: u32, inact: u32) -> DestInfo {
    DestInfo {
        addr: a.parse().unwrap(),
        port,
        forward: fwd,
        weight: w,
        active_conns: act,
        inact_conns: inact,
        persist_conns: 0,
        u_threshold: 0,
        l_threshold: 0,
        tunnel: Tunnel::default(),
        stats: None,
    }
}

fn tunnel_dest(a: &str, port: u16, kind: TunnelType, tun_port: u16, csum: TunnelCsum) -> DestInfo {
    DestInfo {
        tunnel: Tunnel {
            kind,
            port: tun_port,
            csum,
        },
        ..dest(a, port, Forward::Tunnel, 3, 0, 0)
    }
}

fn svc(k: ServiceKey, sched: &str, dests: Vec<DestInfo>) -> ServiceInfo {
    ServiceInfo {
        spec: ServiceSpec {
            key: k,
            scheduler: sched.into(),
            sched_flags: 0,
            persistent: None,
            netmask: if k.addr.is_ipv4() { u32::MAX } else { 128 },
            one_packet: false,
        },
        dests,
        stats: None,
    }
}

/// The §8.6 setup without the fwmark service, given in a scrambled order
/// (services and real servers) so that sorting is exercised.
fn setup() -> Vec<ServiceInfo> {
    let http = svc(
        key(Protocol::Tcp, "192.0.2.10", 80),
        "wlc",
        vec![
            dest("10.0.0.12", 80, Forward::Masq, 2, 25, 7),
            dest("10.0.0.11", 80, Forward::Masq, 1, 12, 3),
        ],
    );
    let mut https = svc(
        key(Protocol::Tcp, "192.0.2.10", 443),
        "rr",
        vec![
            dest("10.0.0.12", 443, Forward::Route, 1, 38, 97),
            dest("10.0.0.11", 443, Forward::Route, 1, 40, 112),
        ],
    );
    https.spec.persistent = Some(360);
    https.spec.netmask = u32::from(Ipv4Addr::new(255, 255, 255, 0));
    https.dests[0].persist_conns = 15;
    https.dests[1].persist_conns = 17;
    let mut dns = svc(
        key(Protocol::Udp, "192.0.2.10", 53),
        "sh",
        vec![dest("10.0.0.21", 53, Forward::Masq, 1, 0, 0)],
    );
    dns.spec.sched_flags = 0x08 | 0x10;
    dns.spec.one_packet = true;
    let v6 = svc(
        key(Protocol::Tcp, "2001:db8::80", 80),
        "rr",
        vec![dest("2001:db8::a0a0", 80, Forward::Masq, 1, 2, 0)],
    );
    vec![v6, dns, https, http]
}

#[test]
fn list_n_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 wlc
  -> 10.0.0.11:80                 Masq    1      12         3         
  -> 10.0.0.12:80                 Masq    2      25         7         
TCP  192.0.2.10:443 rr persistent 360 mask 255.255.255.0
  -> 10.0.0.11:443                Route   1      40         112       
  -> 10.0.0.12:443                Route   1      38         97        
UDP  192.0.2.10:53 sh (sh-fallback,sh-port) ops
  -> 10.0.0.21:53                 Masq    1      0          0         
TCP  [2001:db8::80]:80 rr
  -> [2001:db8::a0a0]:80          Masq    1      2          0         
";
    assert_eq!(list(4096, &setup(), &ListOptions::default()), expected);
}

#[test]
fn byte_exact_dest_line() {
    let out = list(4096, &setup(), &ListOptions::default());
    let line = out.lines().nth(4).unwrap().replace(' ', "·");
    assert_eq!(
        line,
        "··->·10.0.0.11:80·················Masq····1······12·········3·········"
    );
}

#[test]
fn empty_table() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
";
    assert_eq!(list(4096, &[], &ListOptions::default()), expected);
}

#[test]
fn list_one_service() {
    let expected = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 wlc
  -> 10.0.0.11:80                 Masq    1      12         3         
  -> 10.0.0.12:80                 Masq    2      25         7         
";
    let s = setup();
    assert_eq!(list_one(&s[3], &ListOptions::default()), expected);
}

#[test]
fn thresholds_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.10:80 wlc
  -> 10.0.0.11:80                 0          0          12         3         
  -> 10.0.0.12:80                 200        150        25         7         
";
    let mut s = setup();
    let mut http = s.remove(3);
    http.dests[0].u_threshold = 200;
    http.dests[0].l_threshold = 150;
    let opts = ListOptions {
        mode: ListMode::Thresholds,
        nosort: false,
    };
    assert_eq!(list(4096, &[http], &opts), expected);
}

#[test]
fn persistent_conn_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.10:443 rr persistent 360 mask 255.255.255.0
  -> 10.0.0.11:443                1         17          40         112       
  -> 10.0.0.12:443                1         15          38         97        
";
    let s = setup();
    let opts = ListOptions {
        mode: ListMode::PersistentConn,
        nosort: false,
    };
    assert_eq!(list(4096, &s[2..3], &opts), expected);
}

#[test]
fn tun_info_titles_and_lines() {
    let mut s = svc(
        key(Protocol::Tcp, "192.0.2.20", 80),
        "wlc",
        vec![dest("10.0.1.5", 80, Forward::Tunnel, 3, 1, 0)],
    );
    s.dests.push(dest("10.0.1.6", 80, Forward::Masq, 3, 0, 2));
    let opts = ListOptions {
        mode: ListMode::TunInfo,
        nosort: false,
    };
    let expected = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.0.2.20:80 wlc
  -> 10.0.1.5:80                  Tunnel  ipip          3      1          0         
  -> 10.0.1.6:80                  Masq    n/a           3      0          2         
";
    assert_eq!(list_one(&s, &opts), expected);
}

/// The real-server lines of spec §8.6's `ipvsadm -L -n --tun-info` example
/// (there a fwmark-7 service, which lvsd has not: the service line differs).
#[test]
fn tun_info_gue_and_gre_example() {
    let mut a = tunnel_dest("10.0.1.5", 0, TunnelType::Gue, 6080, TunnelCsum::Csum);
    a.active_conns = 1;
    let mut b = tunnel_dest("10.0.1.6", 0, TunnelType::Gre, 0, TunnelCsum::NoCsum);
    b.inact_conns = 2;
    let s = svc(key(Protocol::Tcp, "192.0.2.20", 0), "wlc", vec![b, a]);
    let opts = ListOptions {
        mode: ListMode::TunInfo,
        nosort: false,
    };
    let expected = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.0.2.20:0 wlc
  -> 10.0.1.5:0                   Tunnel  gue:6080:+c   3      1          0         
  -> 10.0.1.6:0                   Tunnel  gre:-c        3      0          2         
";
    assert_eq!(list_one(&s, &opts), expected);
}

/// Every tunnel type and checksum option in the TunnelInfo column (§8.4;
/// the oracle's captures include `gue:6080:-c` and `gre:+c`).
#[test]
fn tun_info_column_for_every_type_and_checksum() {
    use TunnelCsum::{Csum, NoCsum, RemCsum};
    use TunnelType::{Gre, Gue, Ipip};
    let cases = [
        (Ipip, 0, NoCsum, "ipip"),
        (Gue, 6080, NoCsum, "gue:6080:-c"),
        (Gue, 6080, Csum, "gue:6080:+c"),
        (Gue, 65535, RemCsum, "gue:65535:r+c"),
        (Gre, 0, NoCsum, "gre:-c"),
        (Gre, 0, Csum, "gre:+c"),
    ];
    for (kind, port, csum, want) in cases {
        assert_eq!(
            tunnel_info(&tunnel_dest("10.0.1.5", 80, kind, port, csum)),
            want
        );
    }
    // Other methods show n/a, whatever tunnel settings they carry.
    let mut d = tunnel_dest("10.0.1.5", 80, Gue, 6080, Csum);
    d.forward = Forward::Route;
    assert_eq!(tunnel_info(&d), "n/a");
    // The widest value fills the 13-character column exactly.
    let s = svc(
        key(Protocol::Tcp, "192.0.2.20", 80),
        "wlc",
        vec![tunnel_dest("10.0.1.5", 80, Gue, 65535, RemCsum)],
    );
    let opts = ListOptions {
        mode: ListMode::TunInfo,
        nosort: false,
    };
    assert!(list_one(&s, &opts).ends_with(
        "  -> 10.0.1.5:80                  Tunnel  gue:65535:r+c 3      0          0         \n"
    ));
}

/// The tunnel real-server lines of spec §8.9's `ipvsadm -S -n` example,
/// plus ipip and the remaining checksum options.
#[test]
fn save_tunnel_options() {
    use TunnelCsum::{Csum, NoCsum, RemCsum};
    use TunnelType::{Gre, Gue, Ipip};
    let s = svc(
        key(Protocol::Tcp, "192.0.2.20", 0),
        "wlc",
        vec![
            tunnel_dest("10.0.1.5", 0, Gue, 6080, Csum),
            tunnel_dest("10.0.1.6", 0, Gre, 0, NoCsum),
            tunnel_dest("10.0.1.7", 0, Ipip, 0, NoCsum),
            tunnel_dest("10.0.1.8", 0, Gue, 6081, NoCsum),
            tunnel_dest("10.0.1.9", 0, Gue, 6082, RemCsum),
            tunnel_dest("10.0.1.10", 0, Gre, 0, Csum),
            dest("10.0.1.11", 0, Forward::Route, 1, 0, 0),
        ],
    );
    let expected = "\
-A -t 192.0.2.20:0 -s wlc
-a -t 192.0.2.20:0 -r 10.0.1.5:0 -i -w 3 --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.20:0 -r 10.0.1.6:0 -i -w 3 --tun-type gre --tun-nocsum
-a -t 192.0.2.20:0 -r 10.0.1.7:0 -i -w 3 --tun-type ipip
-a -t 192.0.2.20:0 -r 10.0.1.8:0 -i -w 3 --tun-type gue --tun-port 6081 --tun-nocsum
-a -t 192.0.2.20:0 -r 10.0.1.9:0 -i -w 3 --tun-type gue --tun-port 6082 --tun-remcsum
-a -t 192.0.2.20:0 -r 10.0.1.10:0 -i -w 3 --tun-type gre --tun-csum
-a -t 192.0.2.20:0 -r 10.0.1.11:0 -g -w 1
";
    assert_eq!(save(&[s], false), expected);
}

/// A destination from a daemon that predates tunnel types decodes as ipip.
#[test]
fn dest_info_without_tunnel_field_decodes_as_ipip() {
    let d = dest("10.0.1.5", 80, Forward::Tunnel, 1, 0, 0);
    let mut v = serde_json::to_value(&d).unwrap();
    v.as_object_mut().unwrap().remove("tunnel");
    let back: DestInfo = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    assert_eq!(tunnel_info(&back), "ipip");
}

#[test]
fn connections_example() {
    let c = |p: &str, ca: &str, cp, va: &str, vp, da: &str, dp, st: &str, e| ConnInfo {
        protocol: p.into(),
        caddr: ca.parse().unwrap(),
        cport: cp,
        vaddr: va.parse().unwrap(),
        vport: vp,
        daddr: da.parse().unwrap(),
        dport: dp,
        state: st.into(),
        expires_secs: e,
        synced: false,
    };
    let conns = vec![
        c(
            "TCP",
            "203.0.113.10",
            51234,
            "192.0.2.10",
            80,
            "10.0.0.11",
            80,
            "ESTABLISHED",
            897,
        ),
        c(
            "TCP",
            "198.51.100.7",
            40112,
            "192.0.2.10",
            443,
            "10.0.0.12",
            443,
            "FIN_WAIT",
            75,
        ),
        c(
            "TCP",
            "198.51.100.0",
            0,
            "192.0.2.10",
            443,
            "10.0.0.12",
            443,
            "NONE",
            359,
        ),
        c(
            "UDP",
            "203.0.113.44",
            33211,
            "192.0.2.10",
            53,
            "10.0.0.21",
            53,
            "UDP",
            298,
        ),
        c(
            "IP",
            "203.0.113.10",
            0,
            "0.0.0.7",
            0,
            "10.0.1.5",
            0,
            "ASSURED",
            1790,
        ),
        c(
            "TCP",
            "2001:db8:1::5",
            50000,
            "2001:db8::80",
            80,
            "2001:db8::a0a0",
            80,
            "SYN_RECV",
            59,
        ),
    ];
    let expected = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:57  ESTABLISHED 203.0.113.10:51234 192.0.2.10:80      10.0.0.11:80
TCP 01:15  FIN_WAIT    198.51.100.7:40112 192.0.2.10:443     10.0.0.12:443
TCP 05:59  NONE        198.51.100.0:0     192.0.2.10:443     10.0.0.12:443
UDP 04:58  UDP         203.0.113.44:33211 192.0.2.10:53      10.0.0.21:53
IP  29:50  ASSURED     203.0.113.10:0     0.0.0.7:0          10.0.1.5:0
TCP 00:59  SYN_RECV    [2001:db8:1::5]:50000 [2001:db8::80]:80  [2001:db8::a0a0]:80
";
    assert_eq!(connections(&conns), expected);
    let long = vec![c(
        "TCP", "1.2.3.4", 1, "5.6.7.8", 2, "9.9.9.9", 3, "NONE", 6000,
    )];
    assert!(connections(&long).contains("TCP 100:00 NONE "));
    assert_eq!(
        connections(&[]),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
}

#[test]
fn timeouts_line() {
    let t = Timeouts {
        tcp: 900,
        tcpfin: 120,
        udp: 300,
    };
    assert_eq!(timeouts(&t), "Timeout (tcp tcpfin udp): 900 120 300\n");
}

#[test]
fn save_example() {
    let expected = "\
-A -t 192.0.2.10:80 -s wlc
-a -t 192.0.2.10:80 -r 10.0.0.11:80 -m -w 1
-a -t 192.0.2.10:80 -r 10.0.0.12:80 -m -w 2
-A -t 192.0.2.10:443 -s rr -p 360 -M 255.255.255.0
-a -t 192.0.2.10:443 -r 10.0.0.11:443 -g -w 1
-a -t 192.0.2.10:443 -r 10.0.0.12:443 -g -w 1
-A -u 192.0.2.10:53 -s sh -o -b sh-fallback,sh-port
-a -u 192.0.2.10:53 -r 10.0.0.21:53 -m -w 1
-A -t [2001:db8::80]:80 -s rr
-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1
";
    assert_eq!(save(&setup(), false), expected);
}

#[test]
fn wrapping_comparator_sorts_192_before_10() {
    let s = vec![
        svc(key(Protocol::Tcp, "10.0.0.1", 80), "rr", vec![]),
        svc(key(Protocol::Tcp, "192.168.0.1", 80), "rr", vec![]),
    ];
    let out = list(4096, &s, &ListOptions::default());
    let a = out.find("192.168.0.1").unwrap();
    let b = out.find("10.0.0.1").unwrap();
    assert!(a < b, "{out}");
    // Real servers too.
    let s = [svc(
        key(Protocol::Tcp, "192.0.2.1", 80),
        "rr",
        vec![
            dest("10.0.0.1", 80, Forward::Masq, 1, 0, 0),
            dest("192.168.0.1", 80, Forward::Masq, 1, 0, 0),
            dest("10.0.0.1", 79, Forward::Masq, 1, 0, 0),
        ],
    )];
    let out = list_one(&s[0], &ListOptions::default());
    let lines: Vec<&str> = out.lines().skip(3).collect();
    assert!(lines[0].starts_with("  -> 192.168.0.1:80 "), "{out}");
    assert!(lines[1].starts_with("  -> 10.0.0.1:79 "), "{out}");
    assert!(lines[2].starts_with("  -> 10.0.0.1:80 "), "{out}");
}

#[test]
fn sort_order_family_protocol_port() {
    let s = vec![
        svc(key(Protocol::Sctp, "192.0.2.1", 1), "rr", vec![]),
        svc(key(Protocol::Tcp, "::1", 1), "rr", vec![]),
        svc(key(Protocol::Udp, "192.0.2.1", 1), "rr", vec![]),
        svc(key(Protocol::Tcp, "192.0.2.1", 443), "rr", vec![]),
        svc(key(Protocol::Tcp, "192.0.2.1", 80), "rr", vec![]),
    ];
    let out = list(1, &s, &ListOptions::default());
    let labels: Vec<&str> = out
        .lines()
        .skip(3)
        .map(|l| l.trim_end_matches(" rr"))
        .collect();
    assert_eq!(
        labels,
        [
            "TCP  192.0.2.1:80",
            "TCP  192.0.2.1:443",
            "UDP  192.0.2.1:1",
            "SCTP 192.0.2.1:1",
            "TCP  [::1]:1"
        ]
    );
    let nosort = ListOptions {
        nosort: true,
        ..Default::default()
    };
    let out = list(1, &s, &nosort);
    assert!(out.lines().nth(3).unwrap().starts_with("SCTP 192.0.2.1:1"));
}

#[test]
fn merge_sort_matches_glibc_on_plain_ints_and_is_stable() {
    let mut v: Vec<(i32, usize)> = [5, 3, 5, 1, 3, 9, 0, 5]
        .iter()
        .enumerate()
        .map(|(i, x)| (*x, i))
        .collect();
    merge_sort(&mut v, |a, b| a.0 - b.0);
    assert_eq!(
        v,
        [
            (0, 6),
            (1, 3),
            (3, 1),
            (3, 4),
            (5, 0),
            (5, 2),
            (5, 7),
            (9, 5)
        ]
    );
}

#[test]
fn flags_and_ipv6_mask() {
    assert_eq!(
        sched_flags_text("wlc", 0x28).as_deref(),
        Some("flag-1,flag-3")
    );
    assert_eq!(
        sched_flags_text("mh", 0x18).as_deref(),
        Some("mh-fallback,mh-port")
    );
    assert_eq!(sched_flags_text("rr", 0), None);
    let mut s = svc(key(Protocol::Udp, "2001:db8::1", 53), "mh", vec![]);
    s.spec.persistent = Some(60);
    s.spec.netmask = 64;
    s.spec.sched_flags = 0x10;
    let out = list_one(&s, &ListOptions::default());
    assert!(
        out.ends_with("UDP  [2001:db8::1]:53 mh (mh-port) persistent 60 mask 64\n"),
        "{out}"
    );
    assert!(save(&[s], false).starts_with("-A -u [2001:db8::1]:53 -s mh -p 60 -M 64 -b mh-port\n"));
}

#[allow(clippy::too_many_arguments)]
fn st(c: u64, ip: u64, op: u64, ib: u64, ob: u64, r: [u64; 5]) -> Option<StatsInfo> {
    Some(StatsInfo {
        conns: c,
        in_pkts: ip,
        out_pkts: op,
        in_bytes: ib,
        out_bytes: ob,
        cps: r[0],
        in_pps: r[1],
        out_pps: r[2],
        in_bps: r[3],
        out_bps: r[4],
    })
}

/// `setup()` with the counters and rates of the §8.6 `--stats`/`--rate` examples.
fn setup_stats() -> Vec<ServiceInfo> {
    let mut s = setup();
    // http: index 3, dests [.12, .11]; https: index 2, dests [.12, .11].
    let http = &mut s[3];
    http.stats = st(
        184211,
        2874125,
        2571034,
        243551287,
        3221847611,
        [12, 204, 181, 17302, 226511],
    );
    http.dests[0].stats = st(
        92124,
        1436824,
        1285412,
        121775073,
        1610926221,
        [6, 102, 91, 8652, 113261],
    );
    http.dests[1].stats = st(
        92087,
        1437301,
        1285622,
        121776214,
        1610921390,
        [6, 102, 90, 8650, 113250],
    );
    let https = &mut s[2];
    https.stats = st(5120, 81200, 70321, 9210311, 120133456, [0, 3, 2, 410, 5322]);
    https.dests[0].stats = st(2520, 40200, 0, 4610311, 0, [0, 1, 0, 205, 0]);
    https.dests[1].stats = st(2600, 41000, 0, 4600000, 0, [0, 2, 0, 205, 0]);
    // The UDP and IPv6 services: explicit zeros and absent statistics.
    s[1].stats = Some(StatsInfo::default());
    s
}

fn first_lines(s: &str, n: usize) -> String {
    s.split_inclusive('\n').take(n).collect()
}

#[test]
fn stats_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                  184211  2874125  2571034  243551K    3221M
  -> 10.0.0.11:80                    92087  1437301  1285622  121776K    1610M
  -> 10.0.0.12:80                    92124  1436824  1285412  121775K    1610M
TCP  192.0.2.10:443                   5120    81200    70321  9210311  120133K
  -> 10.0.0.11:443                    2600    41000        0  4600000        0
  -> 10.0.0.12:443                    2520    40200        0  4610311        0
UDP  192.0.2.10:53                       0        0        0        0        0
  -> 10.0.0.21:53                        0        0        0        0        0
TCP  [2001:db8::80]:80                   0        0        0        0        0
  -> [2001:db8::a0a0]:80                 0        0        0        0        0
";
    let opts = ListOptions {
        mode: ListMode::Stats { exact: false },
        nosort: false,
    };
    assert_eq!(list(4096, &setup_stats(), &opts), expected);
}

#[test]
fn stats_exact_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                  184211  2874125  2571034 243551287 3221847611
  -> 10.0.0.11:80                    92087  1437301  1285622 121776214 1610921390
  -> 10.0.0.12:80                    92124  1436824  1285412 121775073 1610926221
";
    let opts = ListOptions {
        mode: ListMode::Stats { exact: true },
        nosort: false,
    };
    assert_eq!(first_lines(&list(4096, &setup_stats(), &opts), 6), expected);
}

#[test]
fn rate_example() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.0.2.10:80                      12      204      181    17302   226511
  -> 10.0.0.11:80                        6      102       90     8650   113250
  -> 10.0.0.12:80                        6      102       91     8652   113261
TCP  192.0.2.10:443                      0        3        2      410     5322
  -> 10.0.0.11:443                       0        2        0      205        0
  -> 10.0.0.12:443                       0        1        0      205        0
";
    let opts = ListOptions {
        mode: ListMode::Rate { exact: false },
        nosort: false,
    };
    assert_eq!(first_lines(&list(4096, &setup_stats(), &opts), 9), expected);
    // --exact does not change numbers that fit.
    let exact = ListOptions {
        mode: ListMode::Rate { exact: true },
        nosort: false,
    };
    assert_eq!(
        first_lines(&list(4096, &setup_stats(), &exact), 9),
        expected
    );
}

#[test]
fn big_numbers_scale_and_exact_widens() {
    let big = |n: u64, exact: bool| {
        let mut s = String::new();
        push_big(&mut s, n, exact);
        s
    };
    assert_eq!(big(0, false), "        0");
    assert_eq!(big(99_999_999, false), " 99999999");
    assert_eq!(big(100_000_000, false), "  100000K");
    assert_eq!(big(999_999_999, false), "  999999K");
    assert_eq!(big(1_000_000_000, false), "    1000M");
    assert_eq!(big(99_999_999_999, false), "   99999M");
    assert_eq!(big(100_000_000_000, false), "     100G");
    assert_eq!(big(99_999_999_999_999, false), "   99999G");
    assert_eq!(big(100_000_000_000_000, false), "     100T");
    // 2^64 − 1 fills all eight digits: ipvsadm prints `%8lluT`, no space left.
    assert_eq!(big(u64::MAX, false), "18446744T");
    assert_eq!(big(12, true), "       12");
    assert_eq!(big(99_999_999, true), " 99999999");
    assert_eq!(big(100_000_000, true), " 100000000");
    assert_eq!(big(u64::MAX, true), " 18446744073709551615");
}

#[test]
fn rate_real_server_line_has_no_suffixes_and_stats_titles_for_one_service() {
    let mut s = setup_stats();
    s[3].dests[0].stats = st(0, 0, 0, 0, 0, [123_456_789, 0, 0, 5_000_000_000, 0]);
    let opts = ListOptions {
        mode: ListMode::Rate { exact: false },
        nosort: false,
    };
    let out = list_one(&s[3], &opts);
    // cps plain (wider than 8), inbps: ipvsadm reads it as 32 bits
    // (5_000_000_000 mod 2^32 = 705032704 → 705032K).
    assert!(
        out.contains(
            "  -> 10.0.0.12:80                 123456789        0        0  705032K        0\n"
        ),
        "{out}"
    );
    assert!(out.starts_with("Prot LocalAddress:Port                 CPS"));
}
