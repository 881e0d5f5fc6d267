//! Unit tests of the parser.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn sp(line: u32, col: u32) -> Span {
    Span::new(line, col)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("test address"))
}

fn parse(text: &str) -> Config {
    match parse_str(text, "test.cfg") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

/// Parses `text`, expecting an error at `line`:`col` whose message contains `msg`.
#[track_caller]
fn err(text: &str, line: u32, col: u32, msg: &str) -> ConfigError {
    let e = match parse_str(text, "test.cfg") {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e,
    };
    assert_eq!(
        (e.line, e.col),
        (line, col),
        "wrong position for error:\n{e}"
    );
    assert!(
        e.message.contains(msg),
        "message {:?} does not contain {msg:?}",
        e.message
    );
    assert_eq!(e.file, "test.cfg");
    e
}

const FULL: &str = "\
# global settings
interface eth0
interface eth1   # second NIC

director www 10.0.0.1:80 TCP
    balance leastconn localitybased
    mode nat
    check interval 5 timeout 2 rise 2 fall 3 inhibit source 10.0.0.254 port 8080
    option httpcheck uri /health#x statuscode 204 vhost www.example.com
    option persistence timeout 300 netmask 255.255.255.0
    server web1 192.168.0.11:8080 weight 10 check
\tserver web2 192.168.0.12 check sorry  # backup

director dns [2001:db8::53]:53 udp
    balance roundrobin
    option onepacket
    option persistence netmask 64
    server ns1 2001:db8::1
    server ns2 [2001:db8::2]:5353 weight 0 mode nat

director flow
    option arpcheck iface eth1
    server a 10.1.1.1
";

#[test]
fn full_example() {
    let cfg = parse(FULL);
    let expected = Config {
        interfaces: vec![
            Spanned::new("eth0".to_string(), sp(2, 11)),
            Spanned::new("eth1".to_string(), sp(3, 11)),
        ],
        directors: vec![
            Director {
                mark: None,
                ipv6: None,
                name: Spanned::new("www".to_string(), sp(5, 10)),
                addr: Some(Spanned::new(v4(10, 0, 0, 1), sp(5, 14))),
                port: Some(80),
                protocol: Protocol::Tcp,
                balance: Spanned::new("lblc", sp(6, 5)),
                mode: Spanned::new(Mode::Nat, sp(7, 5)),
                check: Some(Spanned::new(
                    Check {
                        timeout: Some(2),
                        interval: Some(5),
                        source: Some(v4(10, 0, 0, 254)),
                        port: Some(8080),
                        rise: Some(2),
                        fall: Some(3),
                        inhibit: true,
                    },
                    sp(8, 5),
                )),
                persistence: Some(Spanned::new(
                    Persistence {
                        timeout: Some(300),
                        netmask: Some(Netmask::V4(0xffff_ff00)),
                    },
                    sp(10, 12),
                )),
                health: Some(Spanned::new(
                    HealthCheck::Http {
                        uri: Some("/health#x".to_string()),
                        status_code: Some(204),
                        vhost: Some("www.example.com".to_string()),
                    },
                    sp(9, 12),
                )),
                one_packet: None,
                sched_flags: None,
                servers: vec![
                    Server {
                        name: Spanned::new("web1".to_string(), sp(11, 12)),
                        addr: Spanned::new(v4(192, 168, 0, 11), sp(11, 17)),
                        port: Some(8080),
                        weight: 10,
                        check: true,
                        check_params: Default::default(),
                        sorry: false,
                        maxconn: None,
                        minconn: None,
                        mode: None,
                        span: sp(11, 5),
                    },
                    Server {
                        name: Spanned::new("web2".to_string(), sp(12, 9)),
                        addr: Spanned::new(v4(192, 168, 0, 12), sp(12, 14)),
                        port: None,
                        weight: 1,
                        check: true,
                        check_params: Default::default(),
                        sorry: true,
                        maxconn: None,
                        minconn: None,
                        mode: None,
                        span: sp(12, 2),
                    },
                ],
                span: sp(5, 1),
            },
            Director {
                mark: None,
                ipv6: None,
                name: Spanned::new("dns".to_string(), sp(14, 10)),
                addr: Some(Spanned::new(v6("2001:db8::53"), sp(14, 14))),
                port: Some(53),
                protocol: Protocol::Udp,
                balance: Spanned::new("wrr", sp(15, 5)),
                mode: Spanned::new(Mode::Gateway, sp(14, 1)),
                check: None,
                persistence: Some(Spanned::new(
                    Persistence {
                        timeout: None,
                        netmask: Some(Netmask::Prefix(64)),
                    },
                    sp(17, 12),
                )),
                health: None,
                one_packet: Some(sp(16, 12)),
                sched_flags: None,
                servers: vec![
                    Server {
                        name: Spanned::new("ns1".to_string(), sp(18, 12)),
                        addr: Spanned::new(v6("2001:db8::1"), sp(18, 16)),
                        port: None,
                        weight: 1,
                        check: false,
                        check_params: Default::default(),
                        sorry: false,
                        maxconn: None,
                        minconn: None,
                        mode: None,
                        span: sp(18, 5),
                    },
                    Server {
                        name: Spanned::new("ns2".to_string(), sp(19, 12)),
                        addr: Spanned::new(v6("2001:db8::2"), sp(19, 16)),
                        port: Some(5353),
                        weight: 0,
                        check: false,
                        check_params: Default::default(),
                        sorry: false,
                        maxconn: None,
                        minconn: None,
                        mode: Some(Spanned::new(Mode::Nat, sp(19, 44))),
                        span: sp(19, 5),
                    },
                ],
                span: sp(14, 1),
            },
            Director {
                mark: None,
                ipv6: None,
                name: Spanned::new("flow".to_string(), sp(21, 10)),
                addr: None,
                port: None,
                protocol: Protocol::Tcp,
                balance: Spanned::new("wlc", sp(21, 1)),
                mode: Spanned::new(Mode::Gateway, sp(21, 1)),
                check: None,
                persistence: None,
                health: Some(Spanned::new(
                    HealthCheck::Arp {
                        iface: Some("eth1".to_string()),
                    },
                    sp(22, 12),
                )),
                one_packet: None,
                sched_flags: None,
                servers: vec![Server {
                    name: Spanned::new("a".to_string(), sp(23, 12)),
                    addr: Spanned::new(v4(10, 1, 1, 1), sp(23, 14)),
                    port: None,
                    weight: 1,
                    check: false,
                    check_params: Default::default(),
                    sorry: false,
                    maxconn: None,
                    minconn: None,
                    mode: None,
                    span: sp(23, 5),
                }],
                span: sp(21, 1),
            },
        ],
        sysctls: vec![],
        timeouts: None,
        control: None,
        metrics: None,
        syncs: Vec::new(),
        vrrps: Vec::new(),
        flows: vec![],
    };
    assert_eq!(cfg, expected);
}

#[test]
fn crlf_gives_same_ast() {
    let crlf = FULL.replace('\n', "\r\n");
    assert_eq!(parse(&crlf), parse(FULL));
    // And errors on CRLF files do not include the `\r`.
    let e = err(
        "director a\r\n  bogus x\r\n",
        2,
        3,
        "unknown statement `bogus`",
    );
    assert_eq!(e.source_line, "  bogus x");
}

#[test]
fn empty_and_comment_only() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("\n\n   \t\n"), Config::default());
    assert_eq!(parse("# hello\n   # indented\n#\r\n"), Config::default());
    assert_eq!(parse("\u{feff}# bom\n"), Config::default());
}

#[test]
fn balance_algorithms() {
    let cases = [
        ("roundrobin", "wrr"),
        ("leastconn", "wlc"),
        ("leastconn localitybased", "lblc"),
        ("leastconn localitybased replication", "lblcr"),
        ("source", "sh"),
        ("dest", "dh"),
        ("srcdst", "srcdst"),
        ("shortestexpected", "sed"),
        ("shortexpdelay", "sed"),
        ("neverqueue", "nq"),
        ("fo", "fo"),
        ("mh", "mh"),
        ("ovh", "ovf"),
        ("twos", "twos"),
    ];
    for (kw, sched) in cases {
        let cfg = parse(&format!("director d\n balance {kw}\n"));
        assert_eq!(
            cfg.directors[0].balance,
            Spanned::new(sched, sp(2, 2)),
            "{kw}"
        );
    }
    let cfg = parse("director d\n");
    assert_eq!(cfg.directors[0].balance, Spanned::new("wlc", sp(1, 1)));
}

#[test]
fn balance_errors() {
    err(
        "director d\nbalance\n",
        2,
        8,
        "expected a balance algorithm",
    );
    err(
        "director d\nbalance wrrr\n",
        2,
        9,
        "unknown balance algorithm `wrrr`",
    );
    err(
        "director d\nbalance leastconn foo\n",
        2,
        19,
        "expected `localitybased`",
    );
    err(
        "director d\nbalance leastconn localitybased foo\n",
        2,
        33,
        "expected `replication`",
    );
    err(
        "director d\nbalance roundrobin x\n",
        2,
        20,
        "unexpected `x`",
    );
    err(
        "director d\nbalance fo\n  balance mh\n",
        3,
        3,
        "duplicate `balance` statement (first at line 2)",
    );
    err(
        "director d\nBalance fo\n",
        2,
        1,
        "unknown statement `Balance`",
    );
}

#[test]
fn modes() {
    for (kw, m) in [
        ("gateway", Mode::Gateway),
        ("nat", Mode::Nat),
        ("tunnel", Mode::Tunnel(Tunnel::default())),
    ] {
        let cfg = parse(&format!("director d\nmode {kw}\n"));
        assert_eq!(cfg.directors[0].mode, Spanned::new(m, sp(2, 1)));
    }
    err("director d\nmode\n", 2, 5, "expected a mode");
    err("director d\nmode NAT\n", 2, 6, "unknown mode `NAT`");
    err("director d\nmode nat nat\n", 2, 10, "unexpected `nat`");
    err("director d\nmode nat\nmode nat\n", 3, 1, "duplicate `mode`");
}

#[test]
fn director_addresses() {
    let cfg = parse(
        "director a 1.2.3.4\n\
         director b 1.2.3.4:0 udp\n\
         director c 2001:db8::1\n\
         director d [::1]\n\
         director e [::1]:65535 Tcp\n\
         director f ::ffff:1.2.3.4\n",
    );
    let got: Vec<_> = cfg
        .directors
        .iter()
        .map(|d| (d.addr.map(|a| a.value), d.port, d.protocol))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(v4(1, 2, 3, 4)), None, Protocol::Tcp),
            (Some(v4(1, 2, 3, 4)), Some(0), Protocol::Udp),
            (Some(v6("2001:db8::1")), None, Protocol::Tcp),
            (Some(v6("::1")), None, Protocol::Tcp),
            (Some(v6("::1")), Some(65535), Protocol::Tcp),
            (Some(v6("::ffff:1.2.3.4")), None, Protocol::Tcp),
        ]
    );
}

#[test]
fn director_errors() {
    err("director\n", 1, 9, "expected a director name");
    err("director   \n", 1, 9, "expected a director name");
    err(
        "director a 1.2.3.4:99999\n",
        1,
        20,
        "expected a port number 0..65535, found `99999`",
    );
    err(
        "director a 1.2.3.4:\n",
        1,
        20,
        "expected a port number 0..65535, found ``",
    );
    err("director a 1.2.3.4:+80\n", 1, 20, "found `+80`");
    err("director a 1.2.3:80\n", 1, 12, "expected an IP address");
    err(
        "director a www.example.com\n",
        1,
        12,
        "found `www.example.com`",
    );
    err("director a TCP\n", 1, 12, "expected an IP address");
    err("director a [::1\n", 1, 12, "missing `]`");
    err(
        "director a [1.2.3.4]:80\n",
        1,
        13,
        "expected an IPv6 address inside `[]`",
    );
    err("director a [::1]80\n", 1, 17, "expected `:port` after `]`");
    err("director a [::1]:x\n", 1, 18, "expected a port number");
    err(
        "director a 1.2.3.4 DCCP\n",
        1,
        20,
        "expected `TCP`, `UDP` or `SCTP`, found `DCCP`",
    );
    err(
        "director a 1.2.3.4:5 SCTP\n  option onepacket\n",
        2,
        10,
        "`option onepacket` is only valid for UDP directors",
    );
    let sctp = parse_str("director a 1.2.3.4:5 sctp\n", "t").unwrap();
    assert_eq!(sctp.directors[0].protocol, Protocol::Sctp);
    err(
        "director a 1.2.3.4 udp extra\n",
        1,
        24,
        "unexpected `extra`",
    );
    // Columns count characters, not bytes.
    err("director é 1.2.3.4:70000\n", 1, 20, "found `70000`");
}

#[test]
fn duplicate_names() {
    err(
        "director a\n\ndirector b\n  director   a 1.2.3.4\n",
        4,
        14,
        "duplicate director name `a` (first at line 1)",
    );
    err(
        "director a\nserver s 1.1.1.1\nserver s 1.1.1.2\n",
        3,
        8,
        "duplicate server name `s` in director `a` (first at line 2)",
    );
    // The same server name in two directors is fine.
    let cfg = parse("director a\nserver s 1.1.1.1\ndirector b\nserver s 1.1.1.1\n");
    assert_eq!(cfg.directors.len(), 2);
    err(
        "director a\nserver s 1.1.1.1:80\nserver t 1.1.1.1:80\n",
        3,
        10,
        "duplicate server address `1.1.1.1:80`",
    );
    // Without a port, the director's port is the effective one.
    err(
        "director a 10.0.0.1:80\nserver s 1.1.1.1\nserver t 1.1.1.1:80\n",
        3,
        10,
        "duplicate server address",
    );
    let cfg =
        parse("director a\nmode nat\nserver s 1.1.1.1:80\nserver t 1.1.1.1:81\nserver u 1.1.1.1\n");
    assert_eq!(cfg.directors[0].servers.len(), 3);
    err(
        "interface eth0\ninterface eth0\n",
        2,
        11,
        "duplicate interface `eth0`",
    );
}

#[test]
fn statement_before_director() {
    for kw in ["balance", "mode", "check", "option", "server"] {
        let e = err(
            &format!("# c\n  {kw} x\n"),
            2,
            3,
            "must follow a `director` line",
        );
        assert_eq!(e.message, format!("`{kw}` must follow a `director` line"));
    }
}

#[test]
fn unknown_statement() {
    let e = err("director a\n  \tfoo bar\n", 2, 4, "unknown statement");
    assert_eq!(e.message, "unknown statement `foo`");
    err("foo\n", 1, 1, "unknown statement `foo`");
    err("DIRECTOR a\n", 1, 1, "unknown statement `DIRECTOR`");
}

#[test]
fn interfaces() {
    let cfg = parse("director a\ninterface lo\ninterface eth0.100\ndirector b\n");
    assert_eq!(
        cfg.interfaces,
        vec![
            Spanned::new("lo".to_string(), sp(2, 11)),
            Spanned::new("eth0.100".to_string(), sp(3, 11)),
        ]
    );
    assert_eq!(cfg.directors.len(), 2);
    err("interface\n", 1, 10, "expected an interface name");
    err("interface 0123456789abcdef\n", 1, 11, "1..15 bytes");
    parse("interface 0123456789abcde\n");
    err("interface a/b\n", 1, 11, "must not contain `/`");
    err("interface .\n", 1, 11, "must not be `.`");
    err("interface ..\n", 1, 11, "must not be `.`");
    err("interface eth0:1\n", 1, 11, "must not contain `:`");
    err("interface eth0 eth1\n", 1, 16, "unexpected `eth1`");
}

#[test]
fn check_statement() {
    let cfg = parse("director a\ncheck\n");
    let c = &cfg.directors[0].check.as_ref().unwrap().value;
    assert_eq!(*c, Check::default());
    assert_eq!((c.interval_secs(), c.timeout_secs()), (10, 5));
    assert_eq!((c.rise_count(), c.fall_count()), (1, 1));
    let cfg = parse("director a\ncheck source 2001:db8::9\n");
    assert_eq!(
        cfg.directors[0].check.as_ref().unwrap().value.source,
        Some(v6("2001:db8::9"))
    );
    err(
        "director a\ncheck timeout\n",
        2,
        14,
        "expected a number of seconds",
    );
    err(
        "director a\ncheck timeout 0\n",
        2,
        15,
        "expected a number of seconds 1..",
    );
    err("director a\ncheck interval -1\n", 2, 16, "found `-1`");
    err(
        "director a\ncheck interval 99999999999999999999999\n",
        2,
        16,
        "found",
    );
    err(
        "director a\ncheck source foo\n",
        2,
        14,
        "expected an IP address, found `foo`",
    );
    err(
        "director a\ncheck port 65536\n",
        2,
        12,
        "expected a port number 0..65535",
    );
    err("director a\ncheck rise 0\n", 2, 12, "expected a count");
    err("director a\ncheck fall x\n", 2, 12, "expected a count");
    err(
        "director a\ncheck rise 1 rise 2\n",
        2,
        14,
        "duplicate `rise` option",
    );
    err(
        "director a\ncheck inhibit inhibit\n",
        2,
        15,
        "duplicate `inhibit`",
    );
    err(
        "director a\ncheck retries 3\n",
        2,
        7,
        "unknown check option `retries`",
    );
    err(
        "director a\ncheck\ncheck\n",
        3,
        1,
        "duplicate `check` statement",
    );
}

#[test]
fn options() {
    let cfg = parse("director a\noption tcpcheck\n");
    assert_eq!(
        cfg.directors[0].health,
        Some(Spanned::new(HealthCheck::Tcp, sp(2, 8)))
    );
    let cfg = parse("director a\noption icmpcheck\n");
    assert_eq!(
        cfg.directors[0].health.as_ref().unwrap().value,
        HealthCheck::Icmp
    );
    let cfg = parse("director a\noption httpcheck\noption persistence\n");
    let d = &cfg.directors[0];
    assert_eq!(
        d.health.as_ref().unwrap().value,
        HealthCheck::Http {
            uri: None,
            status_code: None,
            vhost: None
        }
    );
    assert_eq!(d.persistence.unwrap().value, Persistence::default());
    let cfg = parse("director a\noption persistence netmask 0.0.0.0\n");
    assert_eq!(
        cfg.directors[0].persistence.unwrap().value.netmask,
        Some(Netmask::V4(0))
    );
    // No address: both forms are accepted.
    let cfg = parse("director a\noption persistence netmask 24\n");
    assert_eq!(
        cfg.directors[0].persistence.unwrap().value.netmask,
        Some(Netmask::Prefix(24))
    );
    assert_eq!(Netmask::V4(0xffff_f000).prefix_len(), 20);
    // onepacket on a director without address is allowed.
    parse("director a\noption onepacket\n");

    err("director a\noption\n", 2, 7, "expected an option");
    err("director a\noption foo\n", 2, 8, "unknown option `foo`");
    err("director a\noption tcpcheck x\n", 2, 17, "unexpected `x`");
    err("director a\noption icmpcheck x\n", 2, 18, "unexpected `x`");
    err(
        "director a\noption tcpcheck\noption httpcheck\n",
        3,
        8,
        "only one health check",
    );
    err(
        "director a\noption httpcheck uri\n",
        2,
        21,
        "expected a URI",
    );
    err(
        "director a\noption httpcheck uri health\n",
        2,
        22,
        "starting with `/`",
    );
    err(
        "director a\noption httpcheck statuscode 700\n",
        2,
        29,
        "expected an HTTP status code 100..599",
    );
    err(
        "director a\noption httpcheck vhost\n",
        2,
        23,
        "expected a virtual host",
    );
    err(
        "director a\noption httpcheck uri / uri /\n",
        2,
        24,
        "duplicate `uri`",
    );
    err(
        "director a\noption httpcheck host x\n",
        2,
        18,
        "unknown httpcheck option `host`",
    );
    err(
        "director a\noption arpcheck iface\n",
        2,
        22,
        "expected an interface name",
    );
    err(
        "director a\noption arpcheck iface a/b\n",
        2,
        23,
        "invalid interface name",
    );
    err(
        "director a\noption arpcheck iface a iface b\n",
        2,
        25,
        "duplicate `iface`",
    );
    err(
        "director a\noption arpcheck dev a\n",
        2,
        17,
        "unknown arpcheck option `dev`",
    );
    err(
        "director a\noption persistence timeout\n",
        2,
        27,
        "expected a number of seconds",
    );
    err(
        "director a\noption persistence timeout 1 timeout 2\n",
        2,
        30,
        "duplicate `timeout`",
    );
    err(
        "director a\noption persistence foo\n",
        2,
        20,
        "unknown persistence option `foo`",
    );
    err(
        "director a\noption persistence\noption persistence\n",
        3,
        8,
        "duplicate `option persistence` (first at line 2)",
    );
    err(
        "director a 1.2.3.4\noption persistence netmask 255.0.255.0\n",
        2,
        28,
        "not contiguous",
    );
    err(
        "director a 1.2.3.4\noption persistence netmask 24\n",
        2,
        28,
        "expected a dotted IPv4 netmask, found `24`",
    );
    err(
        "director a ::1\noption persistence netmask 255.255.0.0\n",
        2,
        28,
        "expected a prefix length 0..128",
    );
    err(
        "director a ::1\noption persistence netmask 129\n",
        2,
        28,
        "prefix length 0..128",
    );
    err(
        "director a\noption persistence netmask\n",
        2,
        27,
        "expected a dotted IPv4 netmask or",
    );
    err(
        "director a 1.2.3.4:53\noption onepacket\n",
        2,
        8,
        "only valid for UDP directors",
    );
    err(
        "director a 1.2.3.4:53 udp\noption onepacket\noption onepacket\n",
        3,
        8,
        "duplicate `option onepacket`",
    );
    err(
        "director a 1.2.3.4:53 udp\noption onepacket x\n",
        2,
        18,
        "unexpected `x`",
    );
}

#[test]
fn server_errors() {
    err("director a\nserver\n", 2, 7, "expected a server name");
    err("director a\nserver s\n", 2, 9, "expected a server address");
    err(
        "director a\nserver s foo\n",
        2,
        10,
        "expected an IP address",
    );
    err(
        "director a\nserver s 1.2.3.4:99999\n",
        2,
        18,
        "found `99999`",
    );
    err(
        "director a\nserver s 1.2.3.4 weight\n",
        2,
        24,
        "expected a weight",
    );
    err(
        "director a\nserver s 1.2.3.4 weight -1\n",
        2,
        25,
        "expected a weight 0..2147483647",
    );
    err(
        "director a\nserver s 1.2.3.4 weight 2147483648\n",
        2,
        25,
        "found `2147483648`",
    );
    err(
        "director a\nserver s 1.2.3.4 check check\n",
        2,
        24,
        "duplicate `check`",
    );
    err(
        "director a\nserver s 1.2.3.4 sorry weight 1 sorry\n",
        2,
        33,
        "duplicate `sorry`",
    );
    err(
        "director a\nserver s 1.2.3.4 weight 1 weight 2\n",
        2,
        27,
        "duplicate `weight`",
    );
    err(
        "director a\nserver s 1.2.3.4 backup\n",
        2,
        18,
        "unknown server option `backup`",
    );
    let cfg = parse("director a\nserver s 1.2.3.4 sorry weight 2147483647 check\n");
    let s = &cfg.directors[0].servers[0];
    assert_eq!((s.weight, s.check, s.sorry), (2147483647, true, true));
}

#[test]
fn comments_and_hashes() {
    let cfg = parse("director a#b # comment\n server s 1.1.1.1 #comment?\n#x\n");
    // `#` inside a token is part of it; at a token start it begins a comment.
    assert_eq!(cfg.directors.len(), 1);
    assert_eq!(cfg.directors[0].name.value, "a#b");
    assert_eq!(cfg.directors[0].servers.len(), 1);
    err(
        "director a\nserver s 1.1.1.1#x\n",
        2,
        10,
        "found `1.1.1.1#x`",
    );
}

#[test]
fn display_format() {
    let e = err("director a\n    server s 1.2.3.4:99999\n", 2, 22, "99999");
    assert_eq!(
        e.to_string(),
        format!(
            "test.cfg:2:22: error: expected a port number 0..65535, found `99999`\n   \
             2 |     server s 1.2.3.4:99999\n     | {}^",
            " ".repeat(21)
        )
    );
    // Tabs are preserved in the caret line so the caret lines up.
    let e = err("director a\n\tfoo\n", 2, 2, "unknown statement");
    assert_eq!(
        e.to_string(),
        "test.cfg:2:2: error: unknown statement `foo`\n   2 | \tfoo\n     | \t^"
    );
    let e = ConfigError::without_position("x.cfg", "cannot read file: nope");
    assert_eq!(e.to_string(), "x.cfg: error: cannot read file: nope");
    // Wide line numbers widen the gutter.
    let text = format!("{}foo\n", "\n".repeat(122));
    let e = err(&text, 123, 1, "unknown");
    assert_eq!(
        e.to_string(),
        "test.cfg:123:1: error: unknown statement `foo`\n   123 | foo\n       | ^"
    );
}

#[test]
fn error_at_constructor() {
    let text = "director a 1.2.3.4\r\n  mode tunnel\r\n";
    let cfg = parse(text);
    let span = cfg.directors[0].mode.span;
    let e = ConfigError::at("f.cfg", text, span, "`mode tunnel` is not supported yet");
    assert_eq!(e.source_line, "  mode tunnel");
    assert_eq!((e.line, e.col), (2, 3));
    assert_eq!(
        e.to_string(),
        "f.cfg:2:3: error: `mode tunnel` is not supported yet\n   2 |   mode tunnel\n     |   ^"
    );
    // Out-of-range spans do not panic.
    let e = ConfigError::at("f.cfg", text, sp(99, u32::MAX), "x");
    assert_eq!(e.source_line, "");
    let _ = e.to_string();
    let e = ConfigError::at("f.cfg", text, sp(0, 0), "x");
    assert_eq!(e.to_string(), "f.cfg: error: x");
}

#[test]
fn load_files() {
    let dir = std::env::temp_dir().join(format!("lvs-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.cfg");
    std::fs::write(&good, FULL).unwrap();
    assert_eq!(load(&good).unwrap(), parse(FULL));
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, b"director a\n  mode \xffnat\n").unwrap();
    let e = load(&bad).unwrap_err();
    assert_eq!((e.line, e.col), (2, 8));
    assert!(e.message.contains("UTF-8"));
    assert_eq!(e.file, bad.display().to_string());
    let missing = dir.join("missing.cfg");
    let e = load(&missing).unwrap_err();
    assert_eq!((e.line, e.col), (0, 0));
    assert!(e.message.starts_with("cannot read file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reading_is_bounded_and_precise() {
    let dir = std::env::temp_dir().join(format!("lvs-config-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An endless input is refused at the size limit, not read to the end.
    let e = read(Path::new("/dev/zero")).unwrap_err();
    assert!(e.message.contains("larger than 16 MiB"), "{e}");
    assert_eq!((e.line, e.col), (0, 0));
    // A huge line is refused with its position; the message quotes a bounded
    // part of it.
    let long = dir.join("long.cfg");
    let mut text = b"director a\n  # ".to_vec();
    text.extend(std::iter::repeat_n(b'x', 1 << 20));
    std::fs::write(&long, &text).unwrap();
    let e = read(&long).unwrap_err();
    assert_eq!((e.line, e.col), (2, MAX_LINE_BYTES as u32 + 1));
    assert!(e.message.contains("longer than 4096 bytes"));
    assert!(e.to_string().len() < 1000);
    // CR-only line endings are refused by name, at the first CR.
    let mac = dir.join("mac.cfg");
    std::fs::write(
        &mac,
        b"director a 198.18.0.1:80\r  server s 198.18.1.1:80\r",
    )
    .unwrap();
    let e = read(&mac).unwrap_err();
    assert_eq!((e.line, e.col), (1, 25));
    assert!(e.message.contains("carriage return without line feed"));
    // CR LF is fine.
    let dos = dir.join("dos.cfg");
    std::fs::write(
        &dos,
        "director a 198.18.0.1:80\r\n  server s 198.18.1.1:80\r\n",
    )
    .unwrap();
    assert_eq!(load(&dos).unwrap().directors.len(), 1);
    // Invalid UTF-8 after multibyte characters: the column counts characters.
    let utf = dir.join("utf.cfg");
    std::fs::write(&utf, "# caf\u{e9}\n  # \u{e9}\u{e9}\u{ff}".as_bytes()).unwrap();
    let mut b = std::fs::read(&utf).unwrap();
    b.extend_from_slice(b"\xc3(");
    std::fs::write(&utf, &b).unwrap();
    let e = read(&utf).unwrap_err();
    assert_eq!((e.line, e.col), (2, 8));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Fixed-seed xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses `text` and, on error, renders it (exercising Display too).
fn no_panic(text: &str) {
    if let Err(e) = parse_str(text, "fuzz") {
        assert!(e.line >= 1);
        assert!(e.col >= 1);
        let _ = e.to_string();
        let again = ConfigError::at("fuzz", text, e.span(), e.message.clone());
        assert_eq!(again, e, "ConfigError::at disagrees with the parser");
    }
}

#[test]
fn garbage_never_panics() {
    // Every prefix of a valid config (at every char boundary).
    for (i, _) in FULL.char_indices() {
        no_panic(&FULL[..i]);
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // Random bytes, lossily decoded.
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        no_panic(&String::from_utf8_lossy(&bytes));
    }
    // Single-byte mutations of the valid config.
    let base = FULL.as_bytes();
    let alphabet = b" \t\n\r#:[].0123456789abcdefx/-\xff";
    for _ in 0..3000 {
        let mut bytes = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[pos] = alphabet[rng.below(alphabet.len())],
                1 => {
                    bytes.remove(pos);
                }
                _ => bytes.insert(pos, alphabet[rng.below(alphabet.len())]),
            }
        }
        no_panic(&String::from_utf8_lossy(&bytes));
    }
    // Keyword soup: random lines built from the language's vocabulary.
    let words = [
        "director",
        "interface",
        "balance",
        "mode",
        "check",
        "option",
        "server",
        "leastconn",
        "localitybased",
        "replication",
        "roundrobin",
        "nat",
        "tunnel",
        "gateway",
        "timeout",
        "interval",
        "source",
        "port",
        "rise",
        "fall",
        "inhibit",
        "persistence",
        "netmask",
        "httpcheck",
        "tcpcheck",
        "arpcheck",
        "icmpcheck",
        "onepacket",
        "uri",
        "statuscode",
        "vhost",
        "iface",
        "weight",
        "sorry",
        "ipip",
        "gue",
        "gre",
        "nocsum",
        "csum",
        "remcsum",
        "1.2.3.4:81",
        "udp",
        "TCP",
        "1.2.3.4",
        "1.2.3.4:80",
        "::1",
        "[::1]:53",
        "[::1",
        "255.255.255.0",
        "64",
        "0",
        "99999",
        "eth0",
        "/",
        "a",
        "b",
        "#",
        "é",
        "\t",
        "",
    ];
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..rng.below(12) {
            for _ in 0..rng.below(8) {
                text.push_str(words[rng.below(words.len())]);
                text.push(if rng.below(5) == 0 { '\t' } else { ' ' });
            }
            text.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n" });
        }
        no_panic(&text);
    }
}

#[test]
fn sched_flags_and_connection_thresholds() {
    let text = "director d 198.18.0.100:53 UDP\n  balance source\n  option schedflags sh-fallback,sh-port\n  server a 198.18.1.11 maxconn 100 minconn 50\n  server b 198.18.1.12 maxconn 10\n";
    let cfg = parse_str(text, "t.conf").unwrap();
    let d = &cfg.directors[0];
    let f = d.sched_flags.as_ref().unwrap();
    assert_eq!(f.value, ["sh-fallback", "sh-port"]);
    assert_eq!((f.span.line, f.span.col), (3, 10));
    assert_eq!(
        (d.servers[0].maxconn, d.servers[0].minconn),
        (Some(100), Some(50))
    );
    assert_eq!(
        (d.servers[1].maxconn, d.servers[1].minconn),
        (Some(10), None)
    );

    let e = parse_str(
        "director d 198.18.0.100:80\n option schedflags sh-port,bogus\n",
        "t.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (2, 28));
    assert!(
        e.message.contains("unknown scheduler flag `bogus`"),
        "{}",
        e.message
    );
    let e = parse_str(
        "director d 198.18.0.100:80\n server a 198.18.1.1 minconn 5\n",
        "t.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (2, 30));
    assert!(e.message.contains("above `maxconn 0`"), "{}", e.message);
    let e = parse_str(
        "director d 198.18.0.100:80\n server a 198.18.1.1 maxconn 5 maxconn 6\n",
        "t.conf",
    )
    .unwrap_err();
    assert!(e.message.contains("duplicate `maxconn`"), "{}", e.message);
}

#[test]
fn sysctl_lines_are_global_and_unique() {
    let cfg = parse_str(
        "sysctl conn_reuse_mode 0\nsysctl net.ipv4.vs.lblc_expiration 600\n",
        "t.conf",
    )
    .unwrap();
    let got: Vec<(&str, &str, u32, u32)> = cfg
        .sysctls
        .iter()
        .map(|(n, v)| (n.value.as_str(), v.value.as_str(), v.span.line, v.span.col))
        .collect();
    assert_eq!(
        got,
        [
            ("conn_reuse_mode", "0", 1, 24),
            ("lblc_expiration", "600", 2, 36)
        ]
    );
    let e = parse_str(
        "sysctl sloppy_tcp 1\nsysctl net.ipv4.vs.sloppy_tcp 0\n",
        "t.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (2, 8));
    let e = parse_str("sysctl sloppy_tcp\n", "t.conf").unwrap_err();
    assert!(e.message.contains("expected a value"), "{}", e.message);
    // Several words make one value (`sync_threshold 3 50`); the daemon checks it.
    let cfg = parse_str("sysctl sync_threshold 3   50\n", "t.conf").unwrap();
    assert_eq!(cfg.sysctls[0].1.value, "3 50");
    assert_eq!(cfg.sysctls[0].1.span.col, 23);
}

#[test]
fn timeout_line_like_ipvsadm_set() {
    let cfg = parse_str("timeout 3600 60 30\n", "t.conf").unwrap();
    assert_eq!(cfg.timeouts.unwrap().value, [3600, 60, 30]);
    let e = parse_str("timeout 1 2 2678401\n", "t.conf").unwrap_err();
    assert_eq!((e.line, e.col), (1, 13));
    let e = parse_str("timeout 1 2\n", "t.conf").unwrap_err();
    assert!(e.message.contains("UDP timeout"), "{}", e.message);
    let e = parse_str("timeout 1 2 3\ntimeout 4 5 6\n", "t.conf").unwrap_err();
    assert_eq!((e.line, e.col), (2, 1));
}

fn tunnel(kind: TunnelType, csum: TunnelCsum) -> Mode {
    Mode::Tunnel(Tunnel { kind, csum })
}

#[test]
fn tunnel_modes() {
    use TunnelCsum::{Csum, NoCsum, RemCsum};
    let gue = |port| TunnelType::Gue { port };
    let cases = [
        ("tunnel", tunnel(TunnelType::Ipip, NoCsum)),
        ("tunnel ipip", tunnel(TunnelType::Ipip, NoCsum)),
        ("tunnel ipip nocsum", tunnel(TunnelType::Ipip, NoCsum)),
        ("tunnel nocsum", tunnel(TunnelType::Ipip, NoCsum)),
        ("tunnel gue port 6080", tunnel(gue(6080), NoCsum)),
        ("tunnel gue port 6080 csum", tunnel(gue(6080), Csum)),
        ("tunnel gue port 1 remcsum", tunnel(gue(1), RemCsum)),
        ("tunnel gue port 65535 nocsum", tunnel(gue(65535), NoCsum)),
        // Any order.
        ("tunnel port 6080 gue", tunnel(gue(6080), NoCsum)),
        ("tunnel csum gue port 6080", tunnel(gue(6080), Csum)),
        ("tunnel gre", tunnel(TunnelType::Gre, NoCsum)),
        ("tunnel gre csum", tunnel(TunnelType::Gre, Csum)),
        ("tunnel\tgre\tnocsum", tunnel(TunnelType::Gre, NoCsum)),
    ];
    for (text, mode) in cases {
        let cfg = parse(&format!(
            "director d 10.0.0.1:80\n  mode {text}   # comment\n"
        ));
        assert_eq!(
            cfg.directors[0].mode,
            Spanned::new(mode, sp(2, 3)),
            "{text}"
        );
    }
    // Without a `mode` line: gateway, spanned at the `director` keyword.
    let cfg = parse("director d 10.0.0.1:80\n");
    assert_eq!(cfg.directors[0].mode, Spanned::new(Mode::Gateway, sp(1, 1)));
}

#[test]
fn tunnel_mode_errors() {
    let d = "director d 10.0.0.1:80\n";
    let cases: &[(&str, u32, &str)] = &[
        // col is on line 2; "mode " is 5 columns.
        ("mode tunnel gue", 13, "the `gue` tunnel type needs the real server's UDP port: `gue port <port>`"),
        ("mode tunnel gue port", 21, "expected a GUE port 1..65535"),
        ("mode tunnel gue port 0", 22, "expected a GUE port 1..65535, found `0`"),
        ("mode tunnel gue port 65536", 22, "found `65536`"),
        ("mode tunnel gue port x", 22, "found `x`"),
        ("mode tunnel gue port 1 port 2", 24, "duplicate `port` option"),
        ("mode tunnel port 6080", 13, "`port` is only valid with the `gue` tunnel type, and without a type the tunnel is `ipip`: write `gue port <port>`"),
        ("mode tunnel gre port 6080", 17, "`port` is only valid with the `gue` tunnel type, not `gre`"),
        ("mode tunnel ipip port 6080", 18, "not `ipip`"),
        ("mode tunnel gre remcsum", 17, "`remcsum` is not valid with the `gre` tunnel type (remote checksum offload is a GUE feature; use `gue port <port>`)"),
        ("mode tunnel remcsum", 13, "`remcsum` is not valid with the `ipip` tunnel type"),
        ("mode tunnel csum", 13, "`csum` is not valid with the `ipip` tunnel type (`ipip` has no checksum; use `gue port <port>` or `gre`)"),
        ("mode tunnel ipip csum", 18, "`csum` is not valid with the `ipip` tunnel type"),
        ("mode tunnel gue gre", 17, "more than one tunnel type: `gre` after `gue`"),
        ("mode tunnel gre gre", 17, "duplicate tunnel type `gre`"),
        ("mode tunnel gre csum nocsum", 22, "`nocsum` conflicts with `csum`: a tunnel has one checksum option"),
        ("mode tunnel gre csum csum", 22, "duplicate `csum` option"),
        ("mode tunnel gue port 6080 vxlan", 27, "unknown tunnel option `vxlan`, expected a tunnel type"),
        ("mode tunnel GRE", 13, "unknown tunnel option `GRE`"),
        ("mode gateway gre", 14, "`gre` is a tunnel option: it is only valid after `mode tunnel`, not `mode gateway`"),
        ("mode nat csum", 10, "only valid after `mode tunnel`, not `mode nat`"),
        ("mode nat weight", 10, "unexpected `weight` at end of `mode` statement"),
        ("mode ipip", 6, "unknown mode `ipip`, expected a mode (`gateway`, `nat` or `tunnel`)"),
    ];
    for &(line, col, msg) in cases {
        err(&format!("{d}{line}\n"), 2, col, msg);
    }
    // The first problem in the line wins, after the whole line is read.
    err(
        &format!("{d}mode tunnel gre port 1 remcsum\n"),
        2,
        17,
        "`port`",
    );
}

#[test]
fn per_server_modes() {
    let text = "\
director mixed 10.0.0.1:80
    mode tunnel gue port 6080 csum
    server inherit 10.1.0.1
    server dr      10.1.0.2:80 weight 2 mode gateway
    server nat     10.1.0.3:8080 mode nat weight 3
    server ipip    10.1.0.4 mode tunnel maxconn 10
    server gre     10.1.0.5 mode tunnel gre csum sorry
    server gue     10.1.0.6 weight 0 mode tunnel remcsum gue port 7000
    server v6      2001:db8::7 mode tunnel
";
    let cfg = parse(text);
    let d = &cfg.directors[0];
    let modes: Vec<(&str, Option<Spanned<Mode>>, Mode)> = d
        .servers
        .iter()
        .map(|s| (s.name.value.as_str(), s.mode, d.server_mode(s).value))
        .collect();
    let gue = |port| TunnelType::Gue { port };
    let dir_mode = tunnel(gue(6080), TunnelCsum::Csum);
    assert_eq!(
        modes,
        [
            ("inherit", None, dir_mode),
            (
                "dr",
                Some(Spanned::new(Mode::Gateway, sp(4, 41))),
                Mode::Gateway
            ),
            ("nat", Some(Spanned::new(Mode::Nat, sp(5, 34))), Mode::Nat),
            (
                "ipip",
                Some(Spanned::new(Mode::Tunnel(Tunnel::default()), sp(6, 29))),
                Mode::Tunnel(Tunnel::default())
            ),
            (
                "gre",
                Some(Spanned::new(
                    tunnel(TunnelType::Gre, TunnelCsum::Csum),
                    sp(7, 29)
                )),
                tunnel(TunnelType::Gre, TunnelCsum::Csum)
            ),
            (
                "gue",
                Some(Spanned::new(
                    tunnel(gue(7000), TunnelCsum::RemCsum),
                    sp(8, 38)
                )),
                tunnel(gue(7000), TunnelCsum::RemCsum)
            ),
            (
                "v6",
                Some(Spanned::new(Mode::Tunnel(Tunnel::default()), sp(9, 32))),
                Mode::Tunnel(Tunnel::default())
            ),
        ]
    );
    // The server options around `mode` are all taken.
    let s = &d.servers;
    assert_eq!((s[1].weight, s[1].port), (2, Some(80)));
    assert_eq!((s[2].weight, s[2].port), (3, Some(8080)));
    assert_eq!(s[3].maxconn, Some(10));
    assert!(s[4].sorry);
    assert_eq!(s[5].weight, 0);
    // A server's `mode tunnel` takes nothing from the director's tunnel:
    // `ipip` above is plain ipip, not GUE.
    assert_eq!(d.mode.span, sp(2, 5));
}

#[test]
fn per_server_mode_errors() {
    let d = "director d 10.0.0.1:80\n";
    let cases: &[(&str, u32, &str)] = &[
        ("server a 10.1.0.1 mode", 23, "expected a mode"),
        ("server a 10.1.0.1 mode direct", 24, "unknown mode `direct`"),
        ("server a 10.1.0.1 mode nat mode nat", 28, "duplicate `mode` option"),
        ("server a 10.1.0.1 mode nat gre", 28, "`gre` is a tunnel option: it is only valid after `mode tunnel`, not `mode nat`"),
        ("server a 10.1.0.1 mode tunnel weight 2 csum", 40, "`csum` is a tunnel option: it goes right after `mode tunnel`"),
        ("server a 10.1.0.1 gue port 6080", 19, "`gue` is a tunnel option: it goes right after `mode tunnel`"),
        ("server a 10.1.0.1 mode tunnel gue weight 2", 31, "the `gue` tunnel type needs the real server's UDP port"),
        ("server a 10.1.0.1 mode tunnel gue port weight", 40, "expected a GUE port 1..65535, found `weight`"),
        ("server a 10.1.0.1 mode tunnel gre remcsum", 35, "`remcsum` is not valid with the `gre` tunnel type"),
        ("server a 10.1.0.1 mode tunnel gue port 6080 gwight 2", 45, "unknown server option `gwight`, expected `weight`, `maxconn`, `minconn`, `check` (with its options), `sorry` or `mode`"),
    ];
    for &(line, col, msg) in cases {
        err(&format!("{d}{line}\n"), 2, col, msg);
    }
}

/// Direct routing and tunnelling cannot change the port: a server port
/// other than the director's is refused where it is written, whether the
/// mode is the server's, the director's (before or after the server line)
/// or the default.
#[test]
fn gateway_and_tunnel_servers_keep_the_directors_port() {
    // Allowed: no port, the director's port, any port with NAT.
    let ok = [
        "director d 10.0.0.1:80\nserver a 10.1.0.1\nserver b 10.1.0.2:80\n",
        "director d 10.0.0.1:80\nmode tunnel\nserver a 10.1.0.1:80\n",
        "director d 10.0.0.1:80\nserver a 10.1.0.1:8080\nmode nat\n",
        "director d 10.0.0.1:80\nserver a 10.1.0.1:8080 mode nat\n",
        "director d 10.0.0.1:80\nmode nat\nserver a 10.1.0.1:8080\nserver b 10.1.0.2:80 mode gateway\n",
        "director d [2001:db8::1]:53 UDP\nserver a [2001:db8::2]:53\n",
        // A director without a port (all ports, or a flow): port 0 only.
        "director d 10.0.0.1\noption persistence\nserver a 10.1.0.1:0\nserver b 10.1.0.2\n",
        "director d\nserver a 10.1.0.1\n",
    ];
    for text in ok {
        parse(text);
    }
    // The default mode, found at the end of the director (the next
    // `director` line or the end of the file): the error is on the server.
    let e = err(
        "director web 10.0.0.1:80\n  server a 10.1.0.1:8080 weight 2\n",
        2,
        21,
        "server `a` has port 8080, but with `mode gateway` (direct routing), the director's default, packets reach the real server unchanged, on the director's port 80; remove `:8080`, or use `mode nat` to change the port",
    );
    assert_eq!(e.source_line, "  server a 10.1.0.1:8080 weight 2");
    err(
        "director web 10.0.0.1:80\nserver a 10.1.0.1:8080\n\ndirector other\n",
        2,
        19,
        "the director's default",
    );
    // A later `mode` line decides, and the error points at the server.
    let e = err(
        "director web 10.0.0.1:80\nserver a 10.1.0.1:8080\nmode tunnel gre\n",
        2,
        19,
        "with `mode tunnel` (tunnelling), the director's mode, packets",
    );
    assert_eq!(e.source_line, "server a 10.1.0.1:8080");
    // An earlier `mode` line, or the server's own: at once.
    err(
        "director web 10.0.0.1:80\nmode gateway\nserver a 10.1.0.1:81\nbogus\n",
        3,
        19,
        "the director's mode",
    );
    err(
        "director web 10.0.0.1:80\nmode nat\nserver a 10.1.0.1:81 mode tunnel\n",
        3,
        19,
        "but with `mode tunnel` (tunnelling) packets",
    );
    err(
        "director web [2001:db8::1]:80\nserver a [2001:db8::2]:8080 mode gateway\n",
        2,
        24,
        "has port 8080",
    );
    err(
        "director all 10.0.0.1\noption persistence\nserver a 10.1.0.1:80\n",
        3,
        19,
        "on their original port (the director has none); remove `:80`",
    );
    // A syntax error before the end of the director comes first.
    err(
        "director web 10.0.0.1:80\nserver a 10.1.0.1:8080\nbogus\n",
        3,
        1,
        "unknown statement `bogus`",
    );
}

/// Director sections written straight from the syntax and examples of the
/// ALOHA LVS documentation (seed 003), without `mode` lines: every server
/// forwards by direct routing, the documented default.
#[test]
fn seed_document_example_without_mode_is_gateway() {
    let text = "\
director web 192.168.10.100:80 TCP
  balance roundrobin
  check timeout 2 interval 10 source 192.168.10.1 port 80 rise 2 fall 3 inhibit
  option persistence timeout 300 netmask 255.255.255.0
  option httpcheck uri /health statuscode 200 vhost www.example.com
  server web1 192.168.10.11:80 weight 10 check
  server web2 192.168.10.12 weight 10 check
  server sorry1 192.168.10.13 check sorry

director dns 192.168.10.100:53 UDP
  balance leastconn localitybased replication
  option icmpcheck
  option onepacket
  server ns1 192.168.10.21
  server ns2 192.168.10.22 weight 5
";
    let cfg = parse(text);
    assert_eq!(cfg.directors.len(), 2);
    for d in &cfg.directors {
        assert_eq!(d.mode, Spanned::new(Mode::Gateway, d.span));
        for s in &d.servers {
            assert_eq!(s.mode, None);
            assert_eq!(d.server_mode(s).value, Mode::Gateway, "{}", s.name.value);
        }
    }
    assert_eq!(cfg.directors[0].servers.len(), 3);
    assert_eq!(cfg.directors[1].servers.len(), 2);
}

#[test]
fn tunnel_vocabulary_never_panics() {
    let words = [
        "director",
        "d",
        "10.0.0.1:80",
        "mode",
        "server",
        "s",
        "10.1.0.1",
        "10.1.0.1:81",
        "10.1.0.1:80",
        "tunnel",
        "gateway",
        "nat",
        "ipip",
        "gue",
        "gre",
        "port",
        "6080",
        "0",
        "65536",
        "nocsum",
        "csum",
        "remcsum",
        "weight",
        "2",
        "sorry",
        "maxconn",
        "#",
    ];
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for _ in 0..4000 {
        let mut text = String::new();
        for _ in 0..rng.below(8) {
            for _ in 0..rng.below(10) {
                text.push_str(words[rng.below(words.len())]);
                text.push(' ');
            }
            text.push('\n');
        }
        no_panic(&text);
    }
}

#[test]
fn server_lines_override_check_options() {
    let cfg = parse_str(
        "director web 198.18.0.100:80\n  check interval 5 fall 2\n  server a 198.18.1.11 check fall 3 port 8081 inhibit\n  server b 198.18.1.12 check\n",
        "t",
    )
    .unwrap();
    let d = &cfg.directors[0];
    let a = &d.servers[0].check_params;
    assert_eq!(
        (a.fall, a.port, a.inhibit, a.interval),
        (Some(3), Some(8081), true, None)
    );
    assert_eq!(d.servers[1].check_params, Check::default());
    err(
        "director web 198.18.0.100:80\n  server a 198.18.1.11 fall 3\n",
        2,
        24,
        "`fall` is a check option: on a server line it goes after `check`",
    );
    err(
        "director web 198.18.0.100:80\n  server a 198.18.1.11 check rise 2 rise 3\n",
        2,
        37,
        "duplicate `rise` option",
    );
}

#[test]
fn control_statement() {
    let cfg = parse("control socket /run/lvsd/a.sock group lvsadm\n");
    let c = cfg.control.unwrap();
    assert_eq!(c.socket.unwrap().value, "/run/lvsd/a.sock");
    assert_eq!(
        c.group.map(|g| (g.value, g.span)),
        Some(("lvsadm".into(), sp(1, 39)))
    );
    let e = parse_str("control group a\ncontrol group b\n", "t.conf").unwrap_err();
    assert_eq!((e.line, e.col), (2, 1));
    assert!(
        e.message.contains("duplicate `control` (first at line 1)"),
        "{}",
        e.message
    );
    let e = parse_str("control\n", "t.conf").unwrap_err();
    assert!(e.message.contains("needs `socket PATH`"), "{}", e.message);
    let e = parse_str("control group a group b\n", "t.conf").unwrap_err();
    assert_eq!((e.line, e.col), (1, 17));
    let e = parse_str("control owner root\n", "t.conf").unwrap_err();
    assert!(
        e.message.contains("unknown `control` option `owner`"),
        "{}",
        e.message
    );
}

#[test]
fn metrics_statement() {
    let cfg = parse("metrics 198.18.0.1:9100\n");
    let m = cfg.metrics.unwrap();
    assert_eq!(m.value, "198.18.0.1:9100".parse().unwrap());
    assert_eq!(m.span, sp(1, 9));
    let cfg = parse("metrics [2001:db8::1]:9100\n");
    assert_eq!(
        cfg.metrics.unwrap().value,
        "[2001:db8::1]:9100".parse().unwrap()
    );
    for (text, line, col, msg) in [
        ("metrics 198.18.0.1\n", 1, 9, "`metrics` needs a port"),
        ("metrics\n", 1, 8, "the address to serve metrics on"),
        ("metrics 198.18.0.1:9100 extra\n", 1, 25, "extra"),
        ("metrics 198.18.0.1:99999\n", 1, 20, "port"),
        ("metrics localhost:9100\n", 1, 9, "expected an IP address"),
        (
            "metrics 198.18.0.1:1\nmetrics 198.18.0.1:2\n",
            2,
            1,
            "duplicate `metrics` (first at line 1)",
        ),
    ] {
        let e = parse_str(text, "t.conf").unwrap_err();
        assert_eq!((e.line, e.col), (line, col), "{text:?}: {}", e.message);
        assert!(e.message.contains(msg), "{text:?}: {}", e.message);
    }
}

#[test]
fn sync_statements() {
    let cfg = parse("sync master interface s0 syncid 7\nsync backup interface eth1 group 224.0.0.82 port 9000 ttl 2 maxlen 9000\n");
    assert_eq!(cfg.syncs.len(), 2);
    let (m, b) = (&cfg.syncs[0], &cfg.syncs[1]);
    assert!(m.master && !b.master);
    assert_eq!((m.interface.value.as_str(), m.syncid, m.port), ("s0", 7, 0));
    assert_eq!(b.group, Some("224.0.0.82".parse().unwrap()));
    assert_eq!((b.port, b.ttl, b.maxlen), (9000, 2, 9000));
    for (text, line, col, msg) in [
        ("sync master\n", 1, 1, "needs `interface NAME`"),
        (
            "sync primary interface s0\n",
            1,
            6,
            "expected `master`, `backup` or `vrrp NAME`",
        ),
        ("sync master interface s0 syncid 256\n", 1, 33, "sync ID"),
        (
            "sync master interface s0 group 198.18.0.1\n",
            1,
            32,
            "not a multicast address",
        ),
        (
            "sync master interface s0 colour red\n",
            1,
            26,
            "unknown `sync` option `colour`",
        ),
        (
            "sync master interface s0 ttl 1 ttl 2\n",
            1,
            32,
            "`ttl` given twice",
        ),
        (
            "sync master interface s0\nsync master interface s1\n",
            2,
            1,
            "duplicate `sync` line for this role (first at line 1)",
        ),
    ] {
        let e = parse_str(text, "t.conf").unwrap_err();
        assert_eq!((e.line, e.col), (line, col), "{text:?}: {}", e.message);
        assert!(e.message.contains(msg), "{text:?}: {}", e.message);
    }
}

#[test]
fn vrrp_statements() {
    let cfg = parse(
        "vrrp front interface d0 id 51 priority 150 advert 0.5 nopreempt address 198.18.0.100 address 198.18.0.101\n\
         vrrp front6 interface d0 id 52 address 2001:db8::10\n\
         sync vrrp front interface s0 syncid 7\n",
    );
    let v = &cfg.vrrps[0];
    assert_eq!(
        (v.name.value.as_str(), v.interface.value.as_str()),
        ("front", "d0")
    );
    assert_eq!(
        (v.vrid, v.priority, v.interval_cs, v.preempt),
        (51, 150, 50, false)
    );
    assert_eq!(v.addrs.len(), 2);
    let w = &cfg.vrrps[1];
    assert_eq!((w.priority, w.interval_cs, w.preempt), (100, 100, true));
    assert_eq!(
        cfg.syncs[0].follow.as_ref().map(|f| f.value.as_str()),
        Some("front")
    );
    for (text, line, col, msg) in [
        ("vrrp a interface d0 address 198.18.0.100\n", 1, 1, "`vrrp` needs `id N`"),
        ("vrrp a interface d0 id 1\n", 1, 1, "at least one `address ADDR`"),
        ("vrrp a interface d0 id 0 address 198.18.0.100\n", 1, 24, "virtual router ID"),
        ("vrrp a interface d0 id 1 advert 50 address 198.18.0.100\n", 1, 33, "0.01..40.95"),
        ("vrrp a interface d0 id 1 address 198.18.0.100 address 2001:db8::1\n", 1, 55, "one family"),
        ("vrrp a interface d0 id 1 address 198.18.0.100\nvrrp a interface d0 id 2 address 198.18.0.101\n", 2, 6, "duplicate vrrp name `a`"),
        ("sync vrrp nosuch interface s0\n", 1, 11, "no `vrrp nosuch` line"),
        ("sync master interface s0\nsync vrrp a interface s0\nvrrp a interface d0 id 1 address 198.18.0.100\n", 2, 1, "duplicate `sync` line"),
    ] {
        let e = parse_str(text, "t.conf").unwrap_err();
        assert_eq!((e.line, e.col), (line, col), "{text:?}: {}", e.message);
        assert!(e.message.contains(msg), "{text:?}: {}", e.message);
    }
}

#[test]
fn balance_takes_kernel_scheduler_names_too() {
    for k in [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "ovf",
    ] {
        let cfg = parse(&format!("director a 198.18.0.100:80\n  balance {k}\n"));
        assert_eq!(cfg.directors[0].balance.value, k);
    }
    let e = parse_str("director a 198.18.0.100:80\n  balance rrr\n", "t.conf").unwrap_err();
    assert!(
        e.message.contains("or a kernel scheduler name"),
        "{}",
        e.message
    );
}

#[test]
fn flows_and_directors_without_address() {
    let cfg = parse(
        "director web\n  mode nat\n  server a 198.18.1.11:8080\ndirector dns mark 53\n  server b 198.18.1.12:53\n\
         flow web-range to 198.18.0.100/30 ports 80,8000-8010 TCP director web\n\
         flow dns to 198.18.0.53 from 198.18.0.0/24 udp director dns\n",
    );
    assert_eq!(cfg.directors[0].addr, None);
    assert_eq!(cfg.directors[1].mark.as_ref().map(|m| m.value), Some(53));
    let f = &cfg.flows[0];
    assert_eq!(f.to.value, ("198.18.0.100".parse().unwrap(), 30));
    assert_eq!(f.ports, [(80, 80), (8000, 8010)]);
    assert_eq!(
        (f.protocol, f.director.value.as_str()),
        (Some(Protocol::Tcp), "web")
    );
    let g = &cfg.flows[1];
    assert_eq!(g.to.value.1, 32);
    assert_eq!(g.from.as_ref().map(|p| p.value.1), Some(24));
    assert!(g.ports.is_empty());
    // A DR server of a director without address keeps its port.
    parse("director web\n  server a 198.18.1.11:8080\nflow f to 198.18.0.100 director web\n");
}

#[test]
fn flow_errors_point_at_the_word_and_say_what_to_do() {
    err(
        "flow f to 198.18.0.101/30 director web\n",
        1,
        11,
        "has host bits set: did you mean `198.18.0.100/30`?",
    );
    err(
        "flow f to 198.18.0.100 ports 80-70 director web\n",
        1,
        30,
        "expected ports",
    );
    err(
        "flow f to 198.18.0.100\n",
        1,
        1,
        "a flow needs `director NAME`",
    );
    err(
        "flow f director web\n",
        1,
        1,
        "a flow needs `to ADDR[/LEN]`",
    );
    err(
        "flow f to 198.18.0.100 via x director web\n",
        1,
        24,
        "unknown `flow` word `via`",
    );
    err(
        "flow f to 198.18.0.100 director web\n",
        1,
        33,
        "no director `web`",
    );
    err(
        "director web 198.18.0.100:80\nflow f to 198.18.0.100 director web\n",
        2,
        33,
        "director `web` has an address",
    );
    err(
        "director web\nflow f to 198.18.0.0/24 ports 80-90 director web\nflow g to 198.18.0.7 ports 85 TCP director web\n",
        3,
        6,
        "flow `g` takes some of the packets of flow `f` (line 2)",
    );
    // Disjoint protocols or ports do not overlap.
    parse("director web\nflow f to 198.18.0.0/24 tcp director web\nflow g to 198.18.0.0/24 udp director web\n");
    err("director web mark 0\n", 1, 19, "firewall mark");
}

#[test]
fn ipv6_directors_without_address() {
    // The family comes from the flows, or from `ipv6` on the line (an
    // imported `ipvsadm -f N -6` service has no flows yet).
    let cfg = parse(
        "director web\n  mode nat\n  option persistence netmask 64\n  server a [2001:db8:1::11]:8080\n\
         director six mark 7 ipv6\n  option persistence netmask 48\n  server b [2001:db8:1::12]\n\
         director plain ipv6\n  server c [2001:db8:1::13]\n\
         flow w to 2001:db8::100/124 ports 80 TCP director web\n",
    );
    assert_eq!(cfg.directors[0].ipv6, None);
    assert!(cfg.directors[1].ipv6.is_some());
    assert_eq!(cfg.directors[1].mark.as_ref().map(|m| m.value), Some(7));
    assert!(cfg.directors[2].ipv6.is_some());
    assert_eq!(
        cfg.directors[1].persistence.as_ref().unwrap().value.netmask,
        Some(Netmask::Prefix(48))
    );
    assert_eq!(
        cfg.flows[0].to.value,
        ("2001:db8::100".parse().unwrap(), 124)
    );
    err(
        "director six ipv6\n  option persistence netmask 255.255.255.0\n",
        2,
        30,
        "expected a prefix length 0..128 for an IPv6 director",
    );
    err(
        "director six mark 7 ipv6\nflow f to 198.18.0.100 director six\n",
        2,
        11,
        "flow `f` is IPv4 but director `six` is IPv6",
    );
    err("director six ipv6 mark 7\n", 1, 19, "");
}
