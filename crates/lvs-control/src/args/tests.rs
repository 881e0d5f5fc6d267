use super::*;

fn p(v: &[&str]) -> Result<Command, UsageError> {
    let a: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    parse_args(&a)
}

fn failmsg(v: &[&str]) -> String {
    match p(v) {
        Err(UsageError::Fail(m)) => m,
        other => panic!("expected Fail for {v:?}, got {other:?}"),
    }
}

fn key(proto: Protocol, a: &str, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: proto,
        addr: a.parse().unwrap(),
        port,
    }
}

fn list(target: ListTarget, mode: ListMode, nosort: bool, numeric: bool) -> Command {
    Command::List {
        target,
        opts: ListOptions { mode, nosort },
        numeric,
    }
}

#[test]
fn no_arguments_lists() {
    assert_eq!(
        p(&[]).unwrap(),
        list(ListTarget::All, ListMode::Default, false, false)
    );
}

#[test]
fn bundled_list_options() {
    let all_n = list(ListTarget::All, ListMode::Default, false, true);
    assert_eq!(p(&["-Ln"]).unwrap(), all_n);
    assert_eq!(p(&["-L", "-n"]).unwrap(), all_n);
    assert_eq!(p(&["-l", "--numeric"]).unwrap(), all_n);
    assert_eq!(p(&["--list", "-n", "--sort"]).unwrap(), all_n);
    let conns = list(
        ListTarget::Connections {
            persistent_conn: false,
        },
        ListMode::Default,
        false,
        true,
    );
    assert_eq!(p(&["-lcn"]).unwrap(), conns);
    assert_eq!(p(&["-Lnc"]).unwrap(), conns);
    assert_eq!(p(&["-L", "-c", "-n"]).unwrap(), conns);
    assert_eq!(
        p(&["-L", "--timeout"]).unwrap(),
        list(ListTarget::Timeouts, ListMode::Default, false, false)
    );
    assert_eq!(
        p(&["-Ln", "--thresholds", "--nosort"]).unwrap(),
        list(ListTarget::All, ListMode::Thresholds, true, true)
    );
    assert_eq!(
        p(&["-Ln", "--persistent-conn"]).unwrap(),
        list(ListTarget::All, ListMode::PersistentConn, false, true)
    );
    assert_eq!(
        p(&["-L", "-n", "-t", "192.0.2.10:80"]).unwrap(),
        list(
            ListTarget::Service(key(Protocol::Tcp, "192.0.2.10", 80)),
            ListMode::Default,
            false,
            true
        )
    );
    assert_eq!(
        p(&["-Lnt192.0.2.10:80"]).unwrap(),
        list(
            ListTarget::Service(key(Protocol::Tcp, "192.0.2.10", 80)),
            ListMode::Default,
            false,
            true
        )
    );
}

#[test]
fn first_option_must_be_a_command() {
    assert_eq!(p(&["-n", "-L"]), Err(UsageError::TryHelp));
    assert_eq!(p(&["--nosuch"]), Err(UsageError::TryHelp));
    assert_eq!(p(&["foo"]), Err(UsageError::TryHelp));
    assert_eq!(UsageError::TryHelp.exit_code(), 255);
    assert_eq!(
        UsageError::TryHelp.message("ipvsadm"),
        "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"
    );
    assert_eq!(p(&["-h", "--nosuch"]), Ok(Command::Help));
    assert_eq!(p(&["--help"]), Ok(Command::Help));
    assert_eq!(p(&["-v"]), Ok(Command::Version));
}

#[test]
fn popt_errors() {
    let e = p(&["-L", "--nosuch"]).unwrap_err();
    assert_eq!(e.message("x"), "--nosuch: unknown option\n");
    assert_eq!(e.exit_code(), 255);
    let e = p(&["-A", "-t", "1.2.3.4:80", "-s"]).unwrap_err();
    assert_eq!(e.message("x"), "-s: missing argument\n");
    assert_eq!(e.exit_code(), 255);
    let e = p(&["-L", "--numeric=3"]).unwrap_err();
    assert!(matches!(e, UsageError::Popt { .. }));
}

#[test]
fn multiple_commands_and_options() {
    assert_eq!(failmsg(&["-L", "-C"]), "multiple commands specified");
    assert_eq!(failmsg(&["-L", "-h"]), "multiple commands specified");
    assert_eq!(
        failmsg(&["-L", "-n", "-n"]),
        "multiple 'numeric' options specified"
    );
    assert_eq!(failmsg(&["-Lnn"]), "multiple 'numeric' options specified");
    assert_eq!(
        failmsg(&["-a", "-t", "1.1.1.1:80", "-r", "2.2.2.2", "-m", "-g"]),
        "multiple 'forwarding-method' options specified"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.1.1.1:80", "-u", "1.1.1.1:80"]),
        "multiple 'service-address' options specified"
    );
    // --sort is not counted.
    assert!(p(&["-L", "--sort", "--sort"]).is_ok());
}

#[test]
fn add_service_defaults_and_options() {
    let c = p(&["-A", "-t", "192.0.2.10:80"]).unwrap();
    assert_eq!(
        c,
        Command::Apply(Request::AddService(ServiceSpec {
            key: key(Protocol::Tcp, "192.0.2.10", 80),
            scheduler: "wlc".into(),
            sched_flags: 0,
            persistent: None,
            netmask: u32::MAX,
            one_packet: false,
        }))
    );
    let c = p(&[
        "-A",
        "-t",
        "192.0.2.10:443",
        "-s",
        "rr",
        "-p",
        "-M",
        "255.255.255.0",
    ])
    .unwrap();
    let Command::Apply(Request::AddService(s)) = c else {
        panic!()
    };
    assert_eq!(s.scheduler, "rr");
    assert_eq!(s.persistent, Some(360));
    assert_eq!(s.netmask, 0xFFFF_FF00);
    // -p with a value, separate, bundled and --opt=value.
    for args in [
        &["-A", "-t", "1.2.3.4:80", "-p", "600"][..],
        &["-A", "-t", "1.2.3.4:80", "-p600"][..],
        &["-A", "-t", "1.2.3.4:80", "--persistent=600"][..],
        &["-A", "-t", "1.2.3.4:80", "--persistent", "600"][..],
    ] {
        let Command::Apply(Request::AddService(s)) = p(args).unwrap() else {
            panic!()
        };
        assert_eq!(s.persistent, Some(600), "{args:?}");
    }
    let Command::Apply(Request::EditService(s)) = p(&[
        "-E",
        "--udp-service=192.0.2.10:53",
        "--scheduler=sh",
        "-o",
        "-b",
        "sh-fallback,sh-port",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(s.key.protocol, Protocol::Udp);
    assert_eq!(s.sched_flags, 0x18);
    assert!(s.one_packet);
    // IPv6: netmask 128, prefix netmask.
    let Command::Apply(Request::AddService(s)) = p(&[
        "-A",
        "-t",
        "[2001:db8::80]:80",
        "-s",
        "rr",
        "-p",
        "60",
        "-M",
        "64",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(s.key.addr, "2001:db8::80".parse::<IpAddr>().unwrap());
    assert_eq!(s.netmask, 64);
    let Command::Apply(Request::AddService(s)) = p(&["-A", "-t", "[::1]:80"]).unwrap() else {
        panic!()
    };
    assert_eq!(s.netmask, 128);
    // Scheduler name cut to 15 characters.
    let Command::Apply(Request::AddService(s)) =
        p(&["-A", "-t", "1.2.3.4:80", "-s", "abcdefghijklmnopqrstuvwxyz"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(s.scheduler, "abcdefghijklmno");
}

#[test]
fn service_checks() {
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4"]),
        "Zero port specified for non-persistent service"
    );
    assert!(p(&["-A", "-t", "1.2.3.4", "-p"]).is_ok());
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-o"]),
        "One-Packet Scheduling is only for UDP virtual services"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-p", "2678401"]),
        "invalid timeout value `2678401' specified"
    );
    assert!(p(&["-A", "-t", "1.2.3.4:80", "-p", "2678400"]).is_ok());
    assert_eq!(
        failmsg(&["-A", "-t", "[::1]:80", "-M", "129"]),
        "illegal ipv6 netmask specified"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-M", "bogus"]),
        "illegal virtual server persistent mask specified"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-b", "sh-port"]),
        "incompatible scheduler flag `sh-port'"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-s", "sh", "-b", "nope"]),
        "invalid scheduler flag `nope'"
    );
    for bad in [
        "80",
        "[::1]",
        "1.2.3.4:70000",
        "1.2.3.4:",
        "host.example:80",
        "1.2.3.4:x",
    ] {
        assert_eq!(
            failmsg(&["-A", "-t", bad]),
            "illegal virtual server address[:port] specified",
            "{bad}"
        );
    }
    assert_eq!(
        failmsg(&["-A", "-f", "0"]),
        "invalid fwmark value `0' specified"
    );
    assert_eq!(failmsg(&["-A", "-6"]), "-6 used before -f\n");
    // Firewall-mark services: no port needed, -o allowed, -6 for IPv6,
    // and DR/tunnel servers keep their own port.
    match p(&["-A", "-f", "7", "-s", "rr", "-o"]) {
        Ok(Command::Apply(Request::AddService(s))) => {
            assert_eq!(
                (s.key.mark(), s.key.addr.is_ipv6(), s.one_packet),
                (Some(7), false, true)
            );
        }
        other => panic!("{other:?}"),
    }
    match p(&["-A", "-f", "4294967295", "-6"]) {
        Ok(Command::Apply(Request::AddService(s))) => {
            assert_eq!((s.key.mark(), s.key.addr.is_ipv6()), (Some(u32::MAX), true));
        }
        other => panic!("{other:?}"),
    }
    match p(&["-a", "-f", "7", "-r", "198.18.1.1:8080", "-g"]) {
        Ok(Command::Apply(Request::AddDest { service, dest })) => {
            assert_eq!((service.mark(), dest.port), (Some(7), 8080));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn legality_table() {
    assert_eq!(
        failmsg(&["-A", "-s", "rr"]),
        "You need to supply the 'service-address' option for the 'add-service' command"
    );
    assert_eq!(
        failmsg(&["-a", "-t", "1.2.3.4:80"]),
        "You need to supply the 'real-server' option for the 'add-server' command"
    );
    assert_eq!(
        failmsg(&["-D", "-t", "1.2.3.4:80", "-s", "rr"]),
        "Illegal 'scheduler' option with the 'delete-service' command"
    );
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "-n"]),
        "Illegal 'numeric' option with the 'add-service' command"
    );
    assert_eq!(
        failmsg(&["-L", "-c", "-t", "1.2.3.4:80"]),
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
    );
    assert_eq!(
        failmsg(&["-L", "-c", "--stats"]),
        "options conflicts in the list command"
    );
    assert_eq!(
        failmsg(&["-L", "--timeout", "--persistent-conn"]),
        "options conflicts in the list command"
    );
    assert_eq!(
        failmsg(&["-d", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-w", "3"]),
        "Illegal 'weight' option with the 'delete-server' command"
    );
}

#[test]
fn servers() {
    let svc = key(Protocol::Tcp, "192.0.2.10", 80);
    // Defaults: DR, weight 1, port = service port.
    assert_eq!(
        p(&["-a", "-t", "192.0.2.10:80", "-r", "10.0.0.11"]).unwrap(),
        Command::Apply(Request::AddDest {
            service: svc,
            dest: DestSpec {
                addr: "10.0.0.11".parse().unwrap(),
                port: 80,
                forward: Forward::Route,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                tunnel: Tunnel::default(),
            }
        })
    );
    // DR forces the port.
    let Command::Apply(Request::AddDest { dest, .. }) =
        p(&["-a", "-t", "192.0.2.10:80", "-r", "10.0.0.11:8080", "-g"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(dest.port, 80);
    // NAT keeps it; bundled -mw.
    let Command::Apply(Request::EditDest { dest, .. }) = p(&[
        "-e",
        "-t",
        "192.0.2.10:80",
        "-r",
        "10.0.0.11:8080",
        "-mw",
        "5",
        "-x",
        "200",
        "-y",
        "150",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            dest.port,
            dest.forward,
            dest.weight,
            dest.u_threshold,
            dest.l_threshold
        ),
        (8080, Forward::Masq, 5, 200, 150)
    );
    assert_eq!(
        p(&["-d", "-t", "192.0.2.10:80", "-r", "10.0.0.11"]).unwrap(),
        Command::Apply(Request::DeleteDest {
            service: svc,
            addr: "10.0.0.11".parse().unwrap(),
            port: 80
        })
    );
    for w in ["-1", "2147483648", "x", "1x", ""] {
        assert_eq!(
            failmsg(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-w", w]),
            "illegal weight specified",
            "{w}"
        );
    }
    assert!(p(&[
        "-a",
        "-t",
        "1.2.3.4:80",
        "-r",
        "5.6.7.8",
        "-w",
        "2147483647"
    ])
    .is_ok());
    assert_eq!(
        failmsg(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-x", "-3"]),
        "illegal u_threshold specified"
    );
    assert_eq!(
        failmsg(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-y", "z"]),
        "illegal l_threshold specified"
    );
    assert_eq!(
        failmsg(&["-a", "-t", "1.2.3.4:80", "-r", "80"]),
        "illegal real server address[:port] specified"
    );
    assert_eq!(
        failmsg(&["-a", "-t", "1.2.3.4:80", "-r", "[::1]:80", "-m"]),
        "Different address family is allowed only for tunneling servers"
    );
    assert!(p(&["-a", "-t", "1.2.3.4:80", "-r", "[::1]:80", "-i"]).is_ok());
    assert_eq!(
        failmsg(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-m",
            "--tun-type",
            "gre"
        ]),
        "Tunnel options conflict with forward method"
    );
    assert_eq!(
        failmsg(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-type",
            "gue"
        ]),
        "You need to supply the 'tun-port' option for the 'gue' tunnel type"
    );
    assert_eq!(
        failmsg(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-csum"
        ]),
        "Illegal 'tun-csum' option with the 'ipip' tunnel type"
    );
    assert_eq!(
        failmsg(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-type",
            "x"
        ]),
        "illegal tunnel type specified"
    );
}

/// The tunnel of an `-a`/`-e` line, or the ipvsadm message refusing it.
fn tunnel_of(extra: &[&str]) -> Result<(Forward, u16, Tunnel), String> {
    let mut v = vec!["-a", "-t", "192.0.2.10:80", "-r", "10.0.1.5:8080"];
    v.extend_from_slice(extra);
    match p(&v) {
        Ok(Command::Apply(Request::AddDest { dest, .. })) => {
            Ok((dest.forward, dest.port, dest.tunnel))
        }
        Err(UsageError::Fail(m)) => Err(m),
        other => panic!("unexpected {other:?} for {v:?}"),
    }
}

fn tun(kind: TunnelType, port: u16, csum: TunnelCsum) -> Tunnel {
    Tunnel { kind, port, csum }
}

#[test]
fn tunnel_types_and_options_reach_the_dest_spec() {
    use TunnelCsum::{Csum, NoCsum, RemCsum};
    use TunnelType::{Gre, Gue, Ipip};
    // -i alone: ipip, no checksum; the port is forced to the service's.
    assert_eq!(
        tunnel_of(&["-i"]),
        Ok((Forward::Tunnel, 80, tun(Ipip, 0, NoCsum)))
    );
    assert_eq!(
        tunnel_of(&["-i", "--tun-type", "ipip"]),
        Ok((Forward::Tunnel, 80, tun(Ipip, 0, NoCsum)))
    );
    // The §8.9 example's two tunnel servers, as their save lines read.
    assert_eq!(
        tunnel_of(&[
            "-i",
            "-w",
            "3",
            "--tun-type",
            "gue",
            "--tun-port",
            "6080",
            "--tun-csum"
        ]),
        Ok((Forward::Tunnel, 80, tun(Gue, 6080, Csum)))
    );
    assert_eq!(
        tunnel_of(&["-i", "-w", "3", "--tun-type", "gre", "--tun-nocsum"]),
        Ok((Forward::Tunnel, 80, tun(Gre, 0, NoCsum)))
    );
    assert_eq!(
        tunnel_of(&["--tun-port", "1", "--tun-type", "gue", "-i"]),
        Ok((Forward::Tunnel, 80, tun(Gue, 1, NoCsum)))
    );
    assert_eq!(
        tunnel_of(&["-i", "--tun-type=gue", "--tun-port=65535", "--tun-remcsum"]),
        Ok((Forward::Tunnel, 80, tun(Gue, 65535, RemCsum)))
    );
    assert_eq!(
        tunnel_of(&["-i", "--tun-type", "gre", "--tun-csum"]),
        Ok((Forward::Tunnel, 80, tun(Gre, 0, Csum)))
    );
    assert_eq!(
        tunnel_of(&["-i", "--tun-type", "gre"]),
        Ok((Forward::Tunnel, 80, tun(Gre, 0, NoCsum)))
    );
    // -e carries them too.
    let Command::Apply(Request::EditDest { dest, .. }) = p(&[
        "-e",
        "-t",
        "192.0.2.10:80",
        "-r",
        "10.0.1.5",
        "-i",
        "--tun-type",
        "gue",
        "--tun-port",
        "6080",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(dest.tunnel, tun(Gue, 6080, NoCsum));
    // Direct routing and NAT carry the initial values.
    assert_eq!(
        tunnel_of(&["-g"]),
        Ok((Forward::Route, 80, Tunnel::default()))
    );
    assert_eq!(
        tunnel_of(&["-m"]),
        Ok((Forward::Masq, 8080, Tunnel::default()))
    );
}

/// ipvsadm's tunnel-type table (§4) and option values (§3), message for message.
#[test]
fn tunnel_option_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["-i", "--tun-type", "vxlan"], "illegal tunnel type specified"),
        (&["-i", "--tun-type", "gue", "--tun-port", "0"], "illegal tunnel port specified"),
        (&["-i", "--tun-type", "gue", "--tun-port", "65536"], "illegal tunnel port specified"),
        (&["-i", "--tun-type", "gue", "--tun-port", "x"], "illegal tunnel port specified"),
        (
            &["-g", "--tun-type", "gue", "--tun-port", "6080"],
            "Tunnel options conflict with forward method",
        ),
        (&["--tun-csum"], "Tunnel options conflict with forward method"),
        (&["-m", "--tun-port", "6080"], "Tunnel options conflict with forward method"),
        (
            &["-i", "--tun-type", "gue"],
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gue", "--tun-port", "6080", "--tun-csum", "--tun-remcsum"],
            "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gue", "--tun-port", "6080", "--tun-nocsum", "--tun-csum"],
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gre", "--tun-port", "6080"],
            "Illegal 'tun-port' option with the 'gre' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gre", "--tun-remcsum"],
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gre", "--tun-nocsum", "--tun-csum"],
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type",
        ),
        (
            &["-i", "--tun-port", "6080"],
            "Illegal 'tun-port' option with the 'ipip' tunnel type",
        ),
        (
            &["-i", "--tun-type", "ipip", "--tun-nocsum"],
            "Illegal 'tun-nocsum' option with the 'ipip' tunnel type",
        ),
        (
            &["-i", "--tun-type", "gre", "--tun-type", "gue"],
            "multiple 'tun-type' options specified",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            tunnel_of(extra).as_ref().err().map(String::as_str),
            Some(*want),
            "{extra:?}"
        );
    }
    // Tunnel options are real-server options only.
    assert_eq!(
        failmsg(&["-A", "-t", "192.0.2.10:80", "--tun-type", "gre"]),
        "Illegal 'tun-type' option with the 'add-service' command"
    );
}

#[test]
fn set_and_leftovers() {
    assert_eq!(
        p(&["--set", "900", "120", "300"]).unwrap(),
        Command::Apply(Request::SetTimeouts(Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        }))
    );
    assert_eq!(
        failmsg(&["--set", "1", "2"]),
        "--set option requires 3 timeout values"
    );
    assert_eq!(
        failmsg(&["--set", "1", "2", "8589935"]),
        "invalid timeout value `8589935' specified"
    );
    assert_eq!(
        failmsg(&["--set", "1", "2", "3", "4"]),
        "unexpected argument 4"
    );
    assert_eq!(failmsg(&["-L", "extra"]), "unexpected argument extra");
    assert_eq!(failmsg(&["-C", "--", "-L"]), "unexpected argument -L");
}

#[test]
fn other_commands() {
    assert_eq!(p(&["-C"]).unwrap(), Command::Apply(Request::Clear));
    assert_eq!(
        p(&["--delete-service", "-u", "1.2.3.4:53"]).unwrap(),
        Command::Apply(Request::DeleteService(key(Protocol::Udp, "1.2.3.4", 53)))
    );
    assert_eq!(p(&["-S", "-n"]).unwrap(), Command::Save { nosort: false });
    assert_eq!(p(&["-R"]).unwrap(), Command::Restore);
    assert_eq!(p(&["-Z"]).unwrap(), Command::Apply(Request::Zero(None)));
    assert_eq!(
        p(&["-Ln", "--stats"]).unwrap(),
        list(
            ListTarget::All,
            ListMode::Stats { exact: false },
            false,
            true
        )
    );
    assert_eq!(
        failmsg(&["--start-daemon", "bogus"]),
        "illegal start-daemon parameter specified"
    );
    assert_eq!(
        failmsg(&["--stop-daemon", "bogus"]),
        "illegal start_daemon specified"
    );
    assert_eq!(
        p(&["--start-daemon", "master", "--syncid", "3"]),
        Ok(Command::Apply(Request::StartDaemon(DaemonConfig {
            role: SyncRole::Master,
            ifname: "eth0".into(),
            syncid: 3,
            maxlen: 0,
            group: None,
            port: 0,
            ttl: 0,
            resync: false,
        })))
    );
    assert_eq!(
        p(&[
            "--start-daemon",
            "backup",
            "--mcast-interface",
            "averyveryverylongname0",
            "--syncid",
            "9",
            "--sync-maxlen",
            "9000",
            "--mcast-group",
            "ff02::81",
            "--mcast-port",
            "9000",
            "--mcast-ttl",
            "2",
        ]),
        Ok(Command::Apply(Request::StartDaemon(DaemonConfig {
            role: SyncRole::Backup,
            ifname: "averyveryverylon".chars().take(15).collect(),
            syncid: 9,
            maxlen: 9000,
            group: Some("ff02::81".parse().unwrap()),
            port: 9000,
            ttl: 2,
            resync: false,
        })))
    );
    assert_eq!(
        p(&["--stop-daemon", "backup"]),
        Ok(Command::Apply(Request::StopDaemon(SyncRole::Backup)))
    );
    assert_eq!(p(&["-L", "--daemon"]), Ok(Command::ListDaemons));
    assert_eq!(
        failmsg(&["--start-daemon", "master", "--mcast-group", "198.18.0.1"]),
        "invalid IPv4 mcast-group `198.18.0.1'"
    );
    assert_eq!(
        failmsg(&["--start-daemon", "master", "--syncid", "256"]),
        "illegal syncid specified"
    );
}

#[test]
fn inet_aton_forms() {
    assert_eq!(inet_aton("10.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
    assert_eq!(inet_aton("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
    assert_eq!(inet_aton("3232235521"), Some(Ipv4Addr::new(192, 168, 0, 1)));
    assert_eq!(inet_aton("256.0.0.1"), None);
    assert_eq!(inet_aton("1.2.3.4.5"), None);
    assert_eq!(inet_aton("1..2"), None);
    assert_eq!(inet_aton("1.2.3.256"), None);
    assert_eq!(inet_aton(""), None);
}

#[test]
fn never_panics_on_odd_input() {
    let words = [
        "-",
        "--",
        "-p",
        "-pp",
        "--=",
        "--control",
        "-t",
        "[",
        "[]",
        "[::1]:",
        ":",
        "é",
        "-é",
        "-Lé",
        "--set",
        "-A",
        "-r",
        "0x",
        "1.2.3.4:-1",
        "-w",
        "+5",
        " 5",
    ];
    for a in words {
        for b in words {
            for c in words {
                let _ = p(&[a, b, c]);
            }
        }
    }
}

#[test]
fn stats_rate_exact_and_zero() {
    let all = |mode| list(ListTarget::All, mode, false, true);
    assert_eq!(
        p(&["-L", "-n", "--stats"]).unwrap(),
        all(ListMode::Stats { exact: false })
    );
    assert_eq!(
        p(&["-L", "-n", "--stats", "--exact"]).unwrap(),
        all(ListMode::Stats { exact: true })
    );
    assert_eq!(
        p(&["-Ln", "--rate", "-X"]).unwrap(),
        all(ListMode::Rate { exact: true })
    );
    assert_eq!(
        p(&["-Ln", "--rate"]).unwrap(),
        all(ListMode::Rate { exact: false })
    );
    // --stats --rate together is allowed: stats wins; stats/rate win over
    // --thresholds and --persistent-conn.
    assert_eq!(
        p(&["-Ln", "--rate", "--stats"]).unwrap(),
        all(ListMode::Stats { exact: false })
    );
    assert_eq!(
        p(&["-Ln", "--thresholds", "--rate"]).unwrap(),
        all(ListMode::Rate { exact: false })
    );
    // --exact alone changes nothing in the default layout.
    assert_eq!(p(&["-Ln", "--exact"]).unwrap(), all(ListMode::Default));
    assert_eq!(
        p(&["-L", "-n", "--stats", "-t", "1.2.3.4:80"]).unwrap(),
        list(
            ListTarget::Service(key(Protocol::Tcp, "1.2.3.4", 80)),
            ListMode::Stats { exact: false },
            false,
            true
        )
    );
    assert_eq!(
        failmsg(&["-L", "-c", "--rate"]),
        "options conflicts in the list command"
    );
    assert_eq!(
        failmsg(&["-L", "--timeout", "--stats"]),
        "options conflicts in the list command"
    );
    // -Z: optional service, nothing else.
    assert_eq!(
        p(&["-Z", "-t", "1.2.3.4:80"]).unwrap(),
        Command::Apply(Request::Zero(Some(key(Protocol::Tcp, "1.2.3.4", 80))))
    );
    assert_eq!(
        p(&["--zero", "-u", "1.2.3.4:53"]).unwrap(),
        Command::Apply(Request::Zero(Some(key(Protocol::Udp, "1.2.3.4", 53))))
    );
    assert_eq!(
        failmsg(&["-Z", "-n"]),
        "Illegal 'numeric' option with the 'zero' command"
    );
    assert_eq!(
        failmsg(&["-Z", "--stats"]),
        "Illegal 'stats' option with the 'zero' command"
    );
    assert_eq!(
        failmsg(&["-Z", "-t", "1.2.3.4:80", "-r", "10.0.0.1"]),
        "Illegal 'real-server' option with the 'zero' command"
    );
    assert_eq!(p(&["--stats", "-L"]), Err(UsageError::TryHelp));
    assert_eq!(
        failmsg(&["-A", "-t", "1.2.3.4:80", "--stats"]),
        "Illegal 'stats' option with the 'add-service' command"
    );
}
