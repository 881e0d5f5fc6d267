//! End-to-end: live reload. lvsd's configuration file is rewritten and
//! reloaded ten times (SIGHUP and `lvsadm --reload` in turn) while a client
//! keeps requesting through the VIP and a long-lived connection keeps
//! exchanging messages: no request fails, the long-lived connection
//! survives, an unchanged service keeps its counters, and a file with an
//! error is refused whole while the running configuration stays.
//!
//! Needs root and `curl` (scripts/test.sh installs it).

mod support;

use lvs_lab::{Lab, VIP};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{lvsadm, lvsadm_input, lvsadm_ok, nat_lab, nft_set, Director};

/// Version `i` of the configuration: the web service's scheduler, servers
/// and weights change from one version to the next, a third service comes
/// and goes; the echo service (the long-lived connection's) never changes.
fn config(i: u32) -> String {
    let mut c = String::from("# reload test, version ");
    c.push_str(&i.to_string());
    c.push('\n');
    c.push_str(&format!(
        "director web 198.18.0.100:80 TCP\n  balance {}\n  mode nat\n  server rs1 198.18.1.11:80\n  server rs2 198.18.1.12:80 weight {}\n",
        if i.is_multiple_of(2) { "roundrobin" } else { "leastconn" },
        1 + i % 3
    ));
    if !i.is_multiple_of(3) {
        c.push_str("  server rs3 198.18.1.13:80\n");
    }
    c.push_str("director echo 198.18.0.100:9000 TCP\n  mode nat\n  server rs1 198.18.1.11:9000\n");
    if !i.is_multiple_of(2) {
        c.push_str(
            "director extra 198.18.0.100:8080 TCP\n  mode nat\n  server rs2 198.18.1.12:80\n",
        );
    }
    c
}

/// The real servers of each service in `lvsadm -S -n` output, sorted.
fn table(sock: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = lvsadm_ok(sock, &["-S", "-n"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Connections counted for `service` (`-L -n --stats`, exact numbers).
fn conns(sock: &std::path::Path, service: &str) -> u64 {
    let out = lvsadm_ok(sock, &["-L", "-n", "--stats", "--exact"]);
    out.lines()
        .find(|l| l.starts_with("TCP") && l.contains(service))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no {service} in {out}"))
}

/// Echoes lines on one connection to port 9000 of real server 1 (bounded).
fn echo_server(lab: &Lab, ready: std::sync::mpsc::Sender<()>) -> Result<u64, String> {
    lvs_lab::enter_netns(lab.server_ns(1)).map_err(|e| e.to_string())?;
    let l = TcpListener::bind(("0.0.0.0", 9000)).map_err(|e| e.to_string())?;
    let _ = ready.send(());
    let (s, _) = l.accept().map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut lines = 0;
    for line in BufReader::new(s).lines() {
        let line = line.map_err(|e| e.to_string())?;
        w.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        lines += 1;
    }
    Ok(lines)
}

/// Sends a numbered line every 50 ms over one connection through the VIP
/// and expects it back, until `stop` (at most 2,000 lines). Returns the
/// number of round trips.
fn echo_client(lab: &Lab, stop: &AtomicBool) -> Result<u64, String> {
    lvs_lab::enter_netns(lab.client_ns()).map_err(|e| e.to_string())?;
    let to = SocketAddrV4::new(VIP, 9000);
    let s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < 2000 {
        w.write_all(format!("message {n}\n").as_bytes())
            .map_err(|e| format!("send {n}: {e}"))?;
        let mut back = String::new();
        r.read_line(&mut back)
            .map_err(|e| format!("echo {n}: {e}"))?;
        if back != format!("message {n}\n") {
            return Err(format!("echo {n}: got {back:?}"));
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(n)
}

/// HTTP requests through VIP:80, each on a new connection, until `stop`
/// (at most 20,000 or 90 s): (answered, failures).
fn http_loop(lab: &Lab, stop: &AtomicBool) -> Result<(u64, Vec<String>), String> {
    lvs_lab::enter_netns(lab.client_ns()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (mut ok, mut failed) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) && ok < 20_000 && t0.elapsed() < Duration::from_secs(90) {
        match lvs_lab::http_get(SocketAddrV4::new(VIP, 80), Duration::from_secs(3)) {
            Ok(body) if body.starts_with("rs") => ok += 1,
            Ok(body) => failed.push(format!("unexpected body {body:?}")),
            Err(e) => failed.push(e.to_string()),
        }
    }
    Ok((ok, failed))
}

/// Waits (bounded) until lvsd's log has `n` "configuration reloaded" lines.
fn wait_reloads(d: &Director, n: usize) {
    let t0 = Instant::now();
    loop {
        let log = d.log_so_far();
        if log.matches("configuration reloaded").count() >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "reload {n} not seen in 10 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn ten_reloads_under_traffic_lose_no_request_nor_connection() {
    let (_g, lab) = nat_lab("lvtrl", 3);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "reload", &config(0));
    let stop = AtomicBool::new(false);
    let (http, echo, echoed) = std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lab = &lab;
        let server = s.spawn(move || echo_server(lab, ready_tx));
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("echo server listening");
        let stop = &stop;
        let echo = s.spawn(move || echo_client(lab, stop));
        let http = s.spawn(move || http_loop(lab, stop));
        // A failed assertion below stops the loops too (else the scope
        // waits for their own bounds).
        let _stop_on_panic = StopOnDrop(stop);
        std::thread::sleep(Duration::from_millis(500));
        for i in 1..=10u32 {
            d.write_config(&config(i));
            if i.is_multiple_of(2) {
                // SAFETY: kill(2) on the lvsd we started (its PID).
                assert_eq!(unsafe { libc::kill(d.pid as i32, libc::SIGHUP) }, 0);
                wait_reloads(&d, i as usize);
            } else {
                let (code, out, err) = lvsadm(&d.sock, &["--reload"]);
                assert_eq!(code, 0, "reload {i}: {out}{err}");
                assert!(out.contains("change(s)"), "{out}");
            }
            // The running table is the file's.
            let t = table(&d.sock);
            let has = |line: &str| t.iter().any(|l| l.contains(line));
            assert_eq!(
                has("-r 198.18.1.13:80"),
                !i.is_multiple_of(3),
                "reload {i}: {t:?}"
            );
            assert_eq!(
                has("-t 198.18.0.100:8080"),
                !i.is_multiple_of(2),
                "reload {i}: {t:?}"
            );
            // `roundrobin` is wrr, `leastconn` wlc (seed 003).
            let sched = if i.is_multiple_of(2) {
                "-s wrr"
            } else {
                "-s wlc"
            };
            assert!(
                t.iter()
                    .any(|l| l.contains("-A -t 198.18.0.100:80") && l.contains(sched)),
                "reload {i}: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
            // The guard's set follows (applied by its own thread).
            let set = nft_set(lab, "svc");
            let has = |e: &str| set.iter().any(|x| x == e);
            assert_eq!(
                has("198.18.0.100 . tcp . 8080"),
                !i.is_multiple_of(2),
                "reload {i}: {set:?}"
            );
            assert!(has("198.18.0.100 . tcp . 80"), "{set:?}");
            assert!(has("198.18.0.100 . tcp . 9000"), "{set:?}");
        }
        stop.store(true, Ordering::Relaxed);
        let http = http.join().expect("http loop");
        let echo = echo.join().expect("echo client");
        (http, echo, server.join().expect("echo server"))
    });
    let (answered, failed) = http.expect("http loop");
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(answered >= 100, "only {answered} requests in 10 reloads");
    let trips = echo.expect("the long-lived connection survives every reload");
    assert!(trips >= 20, "{trips}");
    assert_eq!(echoed.expect("echo server"), trips);
    // The unchanged service kept its counters: its one connection, made
    // before the reloads, is still counted (the listed counters follow
    // the estimator, which runs every 2 s as the kernel's does).
    let t0 = Instant::now();
    while conns(&d.sock, "198.18.0.100:9000") != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "echo service counters reset"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{answered} requests and {trips} echoes through 10 reloads, none lost");

    // A file with an error is refused whole; the running table stays.
    let before = table(&d.sock);
    d.write_config(&format!(
        "{}  server rs9 198.18.1.19:80 weight lots\n",
        config(11)
    ));
    let (code, out, err) = lvsadm(&d.sock, &["--reload"]);
    assert_eq!(code, 1, "{out}{err}");
    let file = d.config_path().display().to_string();
    assert!(err.contains(&file) && err.contains("weight"), "{err}");
    assert!(err.contains("the running configuration stays"), "{err}");
    assert_eq!(table(&d.sock), before);
    // SIGHUP with the same file: logged, nothing changes.
    // SAFETY: kill(2) on the lvsd we started (its PID).
    assert_eq!(unsafe { libc::kill(d.pid as i32, libc::SIGHUP) }, 0);
    let t0 = Instant::now();
    while !d.log_so_far().contains("SIGHUP: reload refused") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", d.log_so_far());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(table(&d.sock), before);
    let log = d.stop(&lab);
    assert_eq!(log.matches("configuration reloaded").count(), 10, "{log}");
}

/// A director started on an empty file takes the services the file gains;
/// `--reload` takes no argument.
#[test]
fn a_reload_adds_what_the_file_gained() {
    let (_g, lab) = nat_lab("lvtrn", 1);
    let d = Director::start(&lab, "reload-none", "");
    // Started with an (empty) file: reloading it adds the new version.
    d.write_config("director web 198.18.0.100:80 TCP\n  mode nat\n  server rs1 198.18.1.11:80\n");
    let (code, out, err) = lvsadm(&d.sock, &["--reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("service TCP 198.18.0.100:80 added"), "{out}");
    assert!(out.contains("server 198.18.1.11:80 added"), "{out}");
    let (code, _, err) = lvsadm(&d.sock, &["--reload", "now"]);
    assert_eq!(code, 2, "{err}");
    d.stop(&lab);
}

/// `lvsadm -R` sends its changes as one batch: a saved table comes back
/// whole; an error on one line is printed as ipvsadm prints it and the
/// rest is applied (exit status of the last line); a usage error stops the
/// restore after applying what came before it.
#[test]
fn restore_is_one_batch_with_ipvsadms_line_semantics() {
    let (_g, lab) = nat_lab("lvtrr", 2);
    let d = Director::start(&lab, "restore", &config(1));
    let saved = lvsadm_ok(&d.sock, &["-S", "-n"]);
    lvsadm_ok(&d.sock, &["-C"]);
    let (code, out, err) = lvsadm_input(&d.sock, &["-R"], &saved);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(lvsadm_ok(&d.sock, &["-S", "-n"]), saved);
    // A line the daemon refuses, in the middle: said, the rest applied.
    let input = "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m\n\
                 -A -t 198.18.0.100:81 -s rr\n\
                 -a -t 198.18.0.100:81 -r 198.18.1.12:80 -m -w 3\n";
    let (code, _, err) = lvsadm_input(&d.sock, &["-R"], input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "Destination already exists\n");
    let table = lvsadm_ok(&d.sock, &["-S", "-n"]);
    assert!(
        table.contains("-a -t 198.18.0.100:81 -r 198.18.1.12:80 -m -w 3"),
        "{table}"
    );
    // The last line failing gives its status.
    let (code, _, err) = lvsadm_input(&d.sock, &["-R"], "-D -t 198.18.0.100:82\n");
    assert_eq!((code, err.as_str()), (255, "No such service\n"));
    // A usage error: what came before is applied, nothing after.
    let input = "-A -t 198.18.0.100:83\n# a comment\n-A -t 198.18.0.100:84\n";
    let (code, _, err) = lvsadm_input(&d.sock, &["-R"], input);
    assert_eq!(code, 255, "{err}");
    let table = lvsadm_ok(&d.sock, &["-S", "-n"]);
    assert!(table.contains("-A -t 198.18.0.100:83"), "{table}");
    assert!(!table.contains("198.18.0.100:84"), "{table}");
    d.stop(&lab);
}

/// `lvsadm ARGS` run as user and group `nobody`/`nogroup` (65534).
fn lvsadm_as_nobody(sock: &std::path::Path, args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(support::sibling("lvsadm"));
    cmd.arg("--control").arg(sock).args(args);
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid)
    // between fork and exec, on values that live on the stack.
    unsafe {
        cmd.pre_exec(|| {
            let groups = [65534 as libc::gid_t];
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run lvsadm as nobody");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The control socket is root's alone, unless the configuration names a
/// group whose members may use it too (`control group NAME`).
#[test]
fn the_control_socket_admits_root_and_the_configured_group_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (_g, lab) = nat_lab("lvtcg", 1);
    let d = Director::start(&lab, "ctl-root", &config(0));
    let meta = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let (code, out) = lvsadm_as_nobody(&d.sock, &["-L", "-n"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    d.stop(&lab);

    let with_group = format!("control group nogroup\n{}", config(0));
    let d = Director::start(&lab, "ctl-group", &with_group);
    let meta = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.gid()),
        (0o660, 65534)
    );
    let (code, out) = lvsadm_as_nobody(&d.sock, &["-L", "-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TCP  198.18.0.100:80 wrr"), "{out}");
    // Members may change the table too (the group is trusted with it).
    let (code, out) = lvsadm_as_nobody(&d.sock, &["-A", "-t", "198.18.0.100:90"]);
    assert_eq!(code, 0, "{out}");
    let log = d.stop(&lab);
    assert!(log.contains("(root and group nogroup)"), "{log}");
}

/// `lvsadm --proc NAME` prints the kernel's `/proc/net/NAME` layouts for
/// lvsd's table.
#[test]
fn proc_views_show_the_running_table() {
    let (_g, lab) = nat_lab("lvtpv", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "proc", &config(0));
    // From the client's namespace (never from the host's).
    let body = support::curl(&lab, "http://198.18.0.100/").expect("a request through the VIP");
    assert!(body.starts_with("rs"), "{body}");
    let ip_vs = lvsadm_ok(&d.sock, &["--proc", "ip_vs"]);
    let lines: Vec<&str> = ip_vs.lines().collect();
    assert_eq!(lines[1], "Prot LocalAddress:Port Scheduler Flags");
    // 198.18.0.100:80 and its servers, as the kernel prints them.
    assert!(lines.contains(&"TCP  C6120064:0050 wrr  "), "{ip_vs}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  -> C612010B:0050      Masq    1      ")),
        "{ip_vs}"
    );
    let conn = lvsadm_ok(&d.sock, &["--proc", "/proc/net/ip_vs_conn"]);
    assert!(
        conn.starts_with("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State"),
        "{conn}"
    );
    assert!(
        conn.lines()
            .any(|l| l.starts_with("TCP ") && l.contains(" C6120064 0050 C61201")),
        "{conn}"
    );
    let sync = lvsadm_ok(&d.sock, &["--proc", "ip_vs_conn_sync"]);
    assert!(
        sync.lines().skip(1).all(|l| l.contains(" LOCAL ")),
        "{sync}"
    );
    let stats = lvsadm_ok(&d.sock, &["--proc", "ip_vs_stats"]);
    assert_eq!(stats.lines().count(), 6, "{stats}");
    let (code, _, err) = lvsadm(&d.sock, &["--proc", "ip_vs_nothing"]);
    assert_eq!(code, 2);
    assert!(err.contains("one of: ip_vs, ip_vs_conn"), "{err}");
    d.stop(&lab);
}

/// `--json` listings parse and hold the running table; lvsadm invoked as
/// `ipvsadm`, `ipvsadm-save` and `ipvsadm-restore` (symlinks) behaves as
/// those do.
#[test]
fn json_listings_and_the_ipvsadm_names() {
    let (_g, lab) = nat_lab("lvtjs", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "json", &config(0));
    support::curl(&lab, "http://198.18.0.100/").expect("a request through the VIP");
    let v: serde_json::Value =
        serde_json::from_str(&lvsadm_ok(&d.sock, &["-L", "-n", "--json"])).expect("JSON");
    let web = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == 80)
        .expect("the web service");
    assert_eq!(
        (web["protocol"].as_str(), web["scheduler"].as_str()),
        (Some("TCP"), Some("wrr"))
    );
    let servers = web["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert!(servers.iter().all(|s| s["forward"] == "Masq"));
    let c: serde_json::Value =
        serde_json::from_str(&lvsadm_ok(&d.sock, &["-L", "-n", "-c", "--json"])).unwrap();
    assert!(
        c["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["virtual"]["port"] == 80 && e["protocol"] == "TCP"),
        "{c}"
    );
    let t: serde_json::Value =
        serde_json::from_str(&lvsadm_ok(&d.sock, &["-L", "--timeout", "--json"])).unwrap();
    assert_eq!(t["tcp"], 900);
    let k: serde_json::Value =
        serde_json::from_str(&lvsadm_ok(&d.sock, &["--counters", "--json"])).unwrap();
    assert!(
        k["counters"]["engine.connections_created"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let (code, _, err) = lvsadm(&d.sock, &["-C", "--json"]);
    assert_eq!(code, 2, "{err}");

    // The ipvsadm names, through symlinks.
    let dir = std::env::temp_dir().join(format!("lvsd-ipvsadm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["ipvsadm", "ipvsadm-save", "ipvsadm-restore"] {
        std::os::unix::fs::symlink(support::sibling("lvsadm"), dir.join(name)).unwrap();
    }
    let run = |name: &str, args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(dir.join(name))
            .args(args)
            .env("LVSADM_CONTROL", &d.sock)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run through the symlink");
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run("ipvsadm", &["-v"], "");
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        )
    );
    let (code, _, err) = run("ipvsadm", &["-Q"], "");
    assert_eq!(code, 255);
    assert!(err.contains("ipvsadm -h"), "{err}");
    let (code, saved, _) = run("ipvsadm-save", &["-n"], "");
    assert_eq!(code, 0);
    assert_eq!(saved, lvsadm_ok(&d.sock, &["-S", "-n"]));
    let (code, _, _) = run("ipvsadm-save", &["-x"], "");
    assert_eq!(code, 1);
    // ipvsadm-restore: comments dropped, the table flushed, then restored.
    lvsadm_ok(&d.sock, &["-A", "-t", "198.18.0.100:99"]);
    let (code, out, err) = run("ipvsadm-restore", &[], &format!("# saved\n{saved}"));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lvsadm_ok(&d.sock, &["-S", "-n"]), saved);
    let _ = std::fs::remove_dir_all(&dir);
    d.stop(&lab);
}

/// A director without an address, fed by a flow over a range of VIPs and
/// two ports: real clients reach it on every address and port of the
/// flow; lvsadm lists it as a firewall-mark service, as ipvsadm does.
#[test]
fn a_flow_balances_a_range_of_addresses_and_ports() {
    let (_g, lab) = nat_lab("lvtfl", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let conf = "director web
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:80
    server rs2 198.18.1.12:80
flow web-range to 198.18.0.100/30 ports 80,8080 TCP director web
";
    let d = Director::start(&lab, "flow", conf);
    let mut seen = std::collections::BTreeSet::new();
    for url in [
        "http://198.18.0.100/",
        "http://198.18.0.101/",
        "http://198.18.0.102:8080/",
        "http://198.18.0.103:8080/",
    ] {
        let body = support::curl(&lab, url).unwrap_or_else(|e| panic!("{url}: {e}"));
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["rs1", "rs2"]);
    let list = lvsadm_ok(&d.sock, &["-L", "-n"]);
    assert!(list.contains("\nFWM  1 wrr\n"), "{list}");
    assert!(
        list.contains("  -> 198.18.1.11:80               Masq    1      "),
        "{list}"
    );
    let saved = lvsadm_ok(&d.sock, &["-S", "-n"]);
    assert!(
        saved.starts_with("-A -f 1 -s wrr\n-a -f 1 -r 198.18.1.11:80 -m -w 1\n"),
        "{saved}"
    );
    assert!(lvsadm_ok(&d.sock, &["--proc", "ip_vs"]).contains("\nFWM  00000001 wrr \n"));
    let set = nft_set(&lab, "flows");
    assert!(
        set.iter()
            .any(|e| e == "0.0.0.0/0 . 198.18.0.100/30 . tcp . 8080"),
        "{set:?}"
    );
    // lvsadm makes firewall-mark services too (fed by no flow here).
    lvsadm_ok(&d.sock, &["-A", "-f", "9", "-s", "rr"]);
    lvsadm_ok(&d.sock, &["-a", "-f", "9", "-r", "198.18.1.12:8080", "-m"]);
    let list = lvsadm_ok(&d.sock, &["-L", "-n"]);
    assert!(
        list.contains("\nFWM  9 rr\n  -> 198.18.1.12:8080"),
        "{list}"
    );
    d.stop(&lab);
}
