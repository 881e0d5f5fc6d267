//! End-to-end tests of the lab itself, using kernel forwarding in the
//! director instead of a balancer. They need root and create namespaces, so
//! they run one at a time (`NS_LOCK`) and use distinct prefixes.

use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::*;

static NS_LOCK: Mutex<()> = Mutex::new(());

fn ns_lock() -> std::sync::MutexGuard<'static, ()> {
    NS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "lvs-lab tests create network namespaces and must run as root (euid is {euid}); \
         they are not skipped"
    );
}

fn assert_gone(names: &[String]) {
    let listed = list_netns().expect("list namespaces");
    for n in names {
        assert!(
            !listed.contains(n),
            "namespace {n} still listed: {listed:?}"
        );
        assert!(
            !Path::new("/run/netns").join(n).exists(),
            "/run/netns/{n} still exists"
        );
    }
    // Cross-check with `ip netns list` itself.
    let out = output_with_timeout(
        {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "list"]);
            c
        },
        Duration::from_secs(10),
    )
    .expect("ip netns list");
    let text = String::from_utf8_lossy(&out.stdout);
    for n in names {
        assert!(
            !text.split_whitespace().any(|w| w == n),
            "`ip netns list` still shows {n}:\n{text}"
        );
    }
}

/// Interface names of the root namespace (this test process's namespace).
fn root_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

fn curl(lab: &Lab, url: &str) -> std::process::Output {
    let mut cmd = lab.command(lab.client_ns(), "curl");
    cmd.args(["-s", "-m", "5", url]);
    output_with_timeout(cmd, Duration::from_secs(10)).expect("run curl")
}

#[test]
fn nat_lab_with_kernel_forwarding() {
    let _g = ns_lock();
    require_root();
    let stale = Lab::cleanup_stale("lvlt").expect("cleanup_stale");
    if !stale.is_empty() {
        eprintln!("removed stale namespaces from an earlier run: {stale:?}");
    }
    let root_before = root_links();
    let lab = Lab::nat("lvlt", 3).expect("build lab");
    let names = lab.namespaces();
    assert_eq!(names.len(), 5);
    for n in &names {
        assert!(netns_exists(n), "{n} missing");
        assert!(n.starts_with(&format!("lvlt{}-", std::process::id())));
    }
    let (c, d) = (lab.client_ns().to_string(), lab.director_ns().to_string());

    // Static configuration.
    assert_eq!(lab.sysctl(&d, "net.ipv4.ip_forward").unwrap(), "0");
    for ns in &names {
        assert_eq!(lab.sysctl(ns, "net.ipv4.conf.all.rp_filter").unwrap(), "0");
        if Path::new("/proc/sys/net/ipv6").exists() {
            assert_eq!(
                lab.sysctl(ns, "net.ipv6.conf.all.disable_ipv6").unwrap(),
                "1"
            );
        }
        let routes = lab
            .exec(
                ns,
                "ip",
                &["-4", "route", "show", "default"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(routes.stdout.is_empty(), "{ns} has a default route");
    }
    let addrs = lab
        .exec(&d, "ip", &["-4", "-o", "addr"], Duration::from_secs(5))
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        addrs.contains("198.18.0.1/24") && addrs.contains("198.18.1.1/24"),
        "{addrs}"
    );
    assert!(
        !addrs.contains(&VIP.to_string()),
        "VIP must not be configured"
    );
    let br = lab
        .exec(
            &d,
            "ip",
            &["-o", "link", "show", "dev", "br1"],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&br.stdout).contains("02:00:c6:12:01:01"));
    // Nothing was created in the root namespace.
    assert_eq!(root_links(), root_before, "root namespace links changed");

    let servers = lab
        .start_identity_servers(80, 9000)
        .expect("identity servers");
    assert_eq!(servers.len(), 3);

    // The lab gives the client only its on-link front net (the VIP lives
    // there); to reach the servers through kernel routing it needs a route.
    let r = lab
        .exec(
            &c,
            "ip",
            &[
                "route",
                "add",
                "198.18.1.0/24",
                "via",
                "198.18.0.1",
                "dev",
                "c0",
            ],
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(r.status.success(), "{r:?}");

    // Without kernel forwarding the director drops client traffic.
    let dst = SocketAddrV4::new(server_ip(1), 9000);
    let r = lab
        .run_in(&c, move || {
            udp_exchange(0, dst, b"x", Duration::from_millis(300))
        })
        .unwrap();
    assert!(matches!(r, Err(LabError::Timeout(_))), "{r:?}");

    lab.set_sysctl(&d, "net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(lab.sysctl(&d, "net.ipv4.ip_forward").unwrap(), "1");
    // Cross-check the sysctl with an external process in the namespace.
    let cat = lab
        .exec(
            &d,
            "cat",
            &["/proc/sys/net/ipv4/ip_forward"],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout).trim(), "1");
    assert_eq!(lab.sysctl(&c, "net.ipv4.ip_forward").unwrap(), "0");

    for s in &servers {
        assert_eq!(s.name, format!("rs{}", s.index));
        assert_eq!(s.ip, server_ip(s.index));
        let out = curl(&lab, &format!("http://{}/", s.ip));
        assert!(out.status.success(), "curl to {} failed: {out:?}", s.ip);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("rs{}\n", s.index)
        );
    }

    for s in &servers {
        let dst = SocketAddrV4::new(s.ip, 9000);
        let local = 40000 + s.index as u16;
        let reply = lab
            .run_in(&c, move || {
                udp_exchange(local, dst, b"who?", Duration::from_secs(3))
            })
            .unwrap()
            .expect("udp exchange");
        assert_eq!(reply, s.body().into_bytes());
        let addr = SocketAddrV4::new(s.ip, 80);
        let body = lab
            .run_in(&c, move || http_get(addr, Duration::from_secs(5)))
            .unwrap()
            .expect("http_get");
        assert_eq!(body, s.body());
    }

    // A panic inside run_in is reported, not propagated.
    let r = lab.run_in(&c, || -> u8 { panic!("boom in netns") });
    assert!(
        matches!(&r, Err(LabError::Panicked(m)) if m.contains("boom")),
        "{r:?}"
    );
    // Foreign namespaces are refused.
    assert!(matches!(
        lab.run_in("not-a-lab-ns", || ()),
        Err(LabError::InvalidArgument(_))
    ));

    for s in &servers {
        assert_eq!(s.tcp_requests(), 2, "{s:?}");
        assert_eq!(s.udp_requests(), 1, "{s:?}");
    }

    // Binding a port already in use is reported, not swallowed.
    let dup = lab.start_identity_server(1, 80, 9000);
    assert!(matches!(dup, Err(LabError::Io { .. })), "{dup:?}");

    // A tracked process in the director, to be stopped by the drop.
    let mut sleeper = lab.command(&d, "sleep");
    sleeper.arg("60");
    let pid = lab.spawn(&d, sleeper).expect("spawn");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // A plain command is moved into the namespace too.
    let mut plain = std::process::Command::new("sleep");
    plain.arg("60");
    let pid2 = lab.spawn(lab.server_ns(2), plain).expect("spawn plain");
    let in_ns = output_with_timeout(
        {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "identify", &pid2.to_string()]);
            c
        },
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&in_ns.stdout).trim(),
        lab.server_ns(2)
    );

    // Lab dropped before the servers: it must stop them itself.
    drop(lab);
    assert_gone(&names);
    for p in [pid, pid2] {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "process {p} survived"
        );
    }
    drop(servers);
}

#[test]
fn cleanup_happens_when_test_panics() {
    let _g = ns_lock();
    require_root();
    let captured: Mutex<Option<(Vec<String>, u32)>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::nat("lvlp", 2).expect("build lab");
        let _servers = lab.start_identity_servers(8080, 9001).expect("servers");
        let mut cmd = lab.command(lab.server_ns(1), "sleep");
        cmd.arg("60");
        let pid = lab.spawn(lab.server_ns(1), cmd).expect("spawn");
        *captured.lock().unwrap() = Some((lab.namespaces(), pid));
        panic!("intentional panic with a live lab");
    }));
    assert!(result.is_err(), "closure should have panicked");
    let (names, pid) = captured.lock().unwrap().take().expect("lab was built");
    assert_gone(&names);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived"
    );
}

#[test]
fn cleanup_stale_removes_only_dead_owners() {
    let _g = ns_lock();
    require_root();
    // A pid that is not running: pick one above the current max in use.
    let dead = (100_000u32..4_000_000)
        .step_by(7919)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("free pid");
    let stale = format!("lvls{dead}-c");
    let mut add = std::process::Command::new("ip");
    add.args(["netns", "add", &stale]);
    let out = output_with_timeout(add, Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "{out:?}");

    let lab = Lab::nat("lvls", 1).expect("build lab");
    let removed = Lab::cleanup_stale("lvls").expect("cleanup_stale");
    assert_eq!(removed, vec![stale.clone()]);
    assert!(!netns_exists(&stale));
    for n in lab.namespaces() {
        assert!(netns_exists(&n), "live lab namespace {n} was removed");
    }
    // Same prefix twice in one process is refused.
    assert!(matches!(
        Lab::nat("lvls", 1),
        Err(LabError::InvalidArgument(_))
    ));
    let names = lab.namespaces();
    let mut stray = lab.command(lab.director_ns(), "sleep");
    stray.arg("60");
    let mut child = stray.spawn().unwrap();
    lab.close().expect("clean close");
    assert_gone(&names);
    // The untracked process was killed by the `ip netns pids` sweep.
    let status = child.wait().unwrap();
    assert!(!status.success());
}
