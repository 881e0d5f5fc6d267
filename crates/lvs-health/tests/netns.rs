//! arpcheck and icmpcheck against a server in another network namespace, over
//! a veth pair (root only): up while the server holds its address, down with
//! "no ARP reply" / "no echo reply" when it loses it, up again when it gets it
//! back. Namespaces are `lvhealth<pid>-{a,b}`, addresses from 198.18.0.0/15,
//! and both are deleted on drop, also when the test fails.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use lvs_health::{CheckKind, CheckSpec, Health, Transition};
use lvs_lab::{in_netns, output_with_timeout};
use support::*;

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", ns]);
            let _ = output_with_timeout(cmd, Duration::from_secs(10));
        }
    }
}

fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = output_with_timeout(cmd, Duration::from_secs(10)).expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(kind: CheckKind) -> CheckSpec {
    let mut s = spec(kind, 0, 150, 500);
    s.addr = IpAddr::V4(Ipv4Addr::new(198, 18, 7, 2));
    s
}

#[test]
fn arp_and_icmp_follow_the_server_address() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED arp_and_icmp_follow_the_server_address: needs root (namespaces, AF_PACKET)"
        );
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("lvhealth{pid}-a"), format!("lvhealth{pid}-b"));
    ip(&["netns", "add", &a]);
    let mut guard = Namespaces(vec![a.clone()]);
    ip(&["netns", "add", &b]);
    guard.0.push(b.clone());
    ip(&[
        "-n", &a, "link", "add", "hc0", "type", "veth", "peer", "name", "hc1", "netns", &b,
    ]);
    ip(&["-n", &a, "addr", "add", "198.18.7.1/24", "dev", "hc0"]);
    ip(&["-n", &b, "addr", "add", "198.18.7.2/24", "dev", "hc1"]);
    for (ns, dev) in [(&a, "hc0"), (&b, "hc1"), (&a, "lo"), (&b, "lo")] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    // The checker thread is spawned inside `a` and stays there.
    let health = in_netns(&a, Health::start).unwrap().unwrap();
    let specs = vec![
        check(CheckKind::Arp {
            iface: Some("hc0".into()),
        }),
        check(CheckKind::Arp { iface: None }),
        check(CheckKind::Icmp),
    ];
    health.set_checks(specs.clone());
    for s in &specs {
        wait_runs(&health, s, 3, Duration::from_secs(10));
    }
    for (s, st) in health.status() {
        assert!(st.up && st.last_ok == Some(true), "{s:?}: {st:?}");
    }
    assert_eq!(health.poll_transition(), None);

    let reason = |s: &CheckSpec| match s.kind {
        CheckKind::Icmp => "no echo reply",
        _ => "no ARP reply",
    };
    let collect = |want: usize| {
        let mut got: Vec<Transition> = Vec::new();
        while got.len() < want {
            got.push(next_transition(&health, Duration::from_secs(10)).expect("transition"));
        }
        got.sort_by_key(|t| specs.iter().position(|s| *s == t.spec));
        got
    };

    ip(&["-n", &b, "addr", "del", "198.18.7.2/24", "dev", "hc1"]);
    let down = collect(3);
    for (t, s) in down.iter().zip(&specs) {
        assert_eq!(
            (&t.spec, t.up, t.reason.as_str(), t.failures),
            (s, false, reason(s), 1),
            "{t:?}"
        );
    }

    ip(&["-n", &b, "addr", "add", "198.18.7.2/24", "dev", "hc1"]);
    let up = collect(3);
    for (t, s) in up.iter().zip(&specs) {
        assert_eq!((&t.spec, t.up, t.reason.as_str()), (s, true, "ok"), "{t:?}");
    }
    drop(health);
    drop(guard);
}
