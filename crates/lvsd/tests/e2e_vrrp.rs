//! End-to-end: lvsd's VRRP version 3 speaker against Debian's keepalived
//! in one virtual router (VRID 51) on the lab's peer link. Each wins and
//! loses the election: by priority, by lvsd leaving (priority 0, a quick
//! hand-over), by preemption on return, and not when preemption is off.
//! The holder of 198.18.0.100 is read from both sides: keepalived adds the
//! address to its interface while it is master; lvsd logs its transitions.
//!
//! Needs root and keepalived (scripts/deps.sh installs it).

mod support;

use lvs_lab::Lab;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{nat_lab, Director};

const VIP: &str = "198.18.0.100";

struct Keepalived {
    pid: u32,
    log: PathBuf,
    files: Vec<PathBuf>,
}

fn keepalived(lab: &Lab, ns: &str, priority: u8, vip: &str) -> Keepalived {
    let exe = "/usr/sbin/keepalived";
    assert!(
        Path::new(exe).exists(),
        "{exe} missing: apt-get install keepalived (scripts/deps.sh)"
    );
    let base = std::env::temp_dir().join(format!("lvsd-e2e-keepalived-{}", std::process::id()));
    let conf = base.with_extension("conf");
    let log = base.with_extension("log");
    let pid = base.with_extension("pid");
    let vpid = base.with_extension("vrrp.pid");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{
    vrrp_version 3
    vrrp_garp_master_delay 0
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface s0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {vip}
    }}
}}
"
        ),
    )
    .unwrap();
    let mut cmd = lab.command(ns, exe);
    cmd.args([
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--vrrp",
        "--use-file",
    ])
    .arg(&conf)
    .arg("--pid")
    .arg(&pid)
    .arg("--vrrp_pid")
    .arg(&vpid)
    .stdout(std::fs::File::create(&log).unwrap())
    .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap());
    let p = lab.spawn(ns, cmd).expect("start keepalived");
    Keepalived {
        pid: p,
        log,
        files: vec![conf, pid, vpid],
    }
}

impl Keepalived {
    fn stop(self, lab: &Lab) -> String {
        let _ = lab.stop(self.pid);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        for f in self.files {
            let _ = std::fs::remove_file(f);
        }
        log
    }
}

/// Whether keepalived holds the address (on its interface in `ns`).
fn keepalived_holds(lab: &Lab, ns: &str) -> bool {
    support::ip(lab, ns, &["addr", "show", "dev", "s0"]).contains(&format!("{VIP}/32"))
}

/// lvsd's last VRRP transition in its log so far.
fn lvsd_state(d: &Director) -> Option<&'static str> {
    let log = d.log_so_far();
    let line = log
        .lines()
        .rfind(|l| l.contains("VRRP instance front on s0 is"))?;
    Some(if line.contains("is MASTER") {
        "MASTER"
    } else {
        "BACKUP"
    })
}

/// Waits (bounded) until keepalived holds the address or not, and lvsd
/// is in `lvsd` state; how long it took.
fn settle(lab: &Lab, ns: &str, d: &Director, keep: bool, lvsd: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if keepalived_holds(lab, ns) == keep && lvsd_state(d) == Some(lvsd) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "not settled in {limit:?}: keepalived holds {VIP}: {} (want {keep}), lvsd {:?} (want {lvsd})\n{}",
            keepalived_holds(lab, ns),
            lvsd_state(d),
            d.log_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lvsd(lab: &Lab, tag: &str, priority: u8, preempt: bool) -> Director {
    Director::start(
        lab,
        tag,
        &format!(
            "interface d0
interface br1
interface s0
vrrp front interface s0 id 51 priority {priority}{} address {VIP}
director web {VIP}:80 TCP
    mode nat
    server rs1 198.18.1.11:80
",
            if preempt { "" } else { " nopreempt" }
        ),
    )
}

#[test]
fn lvsd_and_keepalived_elect_each_other_in_one_virtual_router() {
    let (_g, mut lab) = nat_lab("lvtvrrp", 1);
    let peer = lab.add_peer().expect("peer namespace").to_string();
    let ka = keepalived(&lab, &peer, 100, &format!("{VIP}/32"));

    // lvsd 150 against keepalived 100: lvsd is master.
    let d = lvsd(&lab, "vrrp1", 150, true);
    let took = settle(&lab, &peer, &d, false, "MASTER", Duration::from_secs(8));
    eprintln!("lvsd master, keepalived backup after {took:?}");
    // lvsd stops: its priority-0 advertisement hands over within the skew
    // time, far below keepalived's 3.6 s down interval.
    let log = d.stop(&lab);
    assert!(log.contains("VRRP instance front on s0 is MASTER"), "{log}");
    let t0 = Instant::now();
    while !keepalived_holds(&lab, &peer) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "keepalived did not take over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let handover = t0.elapsed();
    eprintln!("keepalived took over {handover:?} after lvsd stopped");
    assert!(handover < Duration::from_millis(2500), "{handover:?}");

    // lvsd comes back with the higher priority and preemption: it takes over.
    let d = lvsd(&lab, "vrrp2", 150, true);
    settle(&lab, &peer, &d, false, "MASTER", Duration::from_secs(8));
    d.stop(&lab);
    settle_keepalived(&lab, &peer, true);

    // Without preemption, a returning higher priority stays backup.
    let d = lvsd(&lab, "vrrp3", 150, false);
    std::thread::sleep(Duration::from_secs(5));
    assert!(keepalived_holds(&lab, &peer), "{}", d.log_so_far());
    assert_eq!(lvsd_state(&d), Some("BACKUP"));
    d.stop(&lab);

    // A lower priority: keepalived stays master, lvsd backup.
    let d = lvsd(&lab, "vrrp4", 50, true);
    std::thread::sleep(Duration::from_secs(5));
    assert!(keepalived_holds(&lab, &peer));
    assert_eq!(lvsd_state(&d), Some("BACKUP"));
    d.stop(&lab);

    let klog = ka.stop(&lab);
    assert!(klog.contains("Entering MASTER STATE"), "{klog}");
    assert!(
        klog.contains("Entering BACKUP STATE")
            || klog.contains("Received advert with higher priority"),
        "{klog}"
    );
    assert!(
        !klog.contains("bad checksum") && !klog.contains("Invalid"),
        "{klog}"
    );
    lab.close().expect("clean up the lab");
}

fn settle_keepalived(lab: &Lab, ns: &str, holds: bool) {
    let t0 = Instant::now();
    while keepalived_holds(lab, ns) != holds {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same election over IPv6 (ff02::12, link-local sources): lvsd wins
/// with the higher priority, keepalived takes over when lvsd stops.
#[test]
fn the_election_works_over_ipv6_too() {
    const VIP6: &str = "2001:db8::100";
    let (_g, mut lab) = nat_lab("lvtvrrp6", 1);
    let peer = lab.add_peer().expect("peer namespace").to_string();
    for ns in [lab.director_ns().to_string(), peer.clone()] {
        // Link-local addresses usable at once (no duplicate detection).
        lab.set_sysctl(&ns, "net.ipv6.conf.s0.accept_dad", "0")
            .unwrap();
        lab.set_sysctl(&ns, "net.ipv6.conf.s0.disable_ipv6", "0")
            .unwrap();
    }
    let holds =
        |lab: &Lab| support::ip(lab, &peer, &["-6", "addr", "show", "dev", "s0"]).contains(VIP6);
    // Wait for both link-local addresses.
    let t0 = Instant::now();
    while [lab.director_ns().to_string(), peer.clone()]
        .iter()
        .any(|ns| !support::ip(&lab, ns, &["-6", "addr", "show", "dev", "s0"]).contains("fe80::"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no link-local address"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ka = keepalived(&lab, &peer, 100, &format!("{VIP6}/128"));
    let d = Director::start(
        &lab,
        "vrrp6",
        &format!(
            "interface s0
vrrp front interface s0 id 51 priority 150 address {VIP6}
director web {VIP}:80 TCP
    mode nat
    server rs1 198.18.1.11:80
"
        ),
    );
    let t0 = Instant::now();
    while lvsd_state(&d) != Some("MASTER") || holds(&lab) {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "lvsd {:?}, keepalived holds {VIP6}: {}\n{}",
            lvsd_state(&d),
            holds(&lab),
            d.log_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.stop(&lab);
    let t0 = Instant::now();
    while !holds(&lab) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "keepalived did not take over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let klog = ka.stop(&lab);
    assert!(klog.contains("Entering MASTER STATE"), "{klog}");
    lab.close().expect("clean up the lab");
}
