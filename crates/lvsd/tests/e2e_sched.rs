//! End-to-end differential test of the schedulers: the flows the Linux 6.18
//! kernel's IPVS scheduled in `../shared/oracle` (recorded in
//! `crates/lvs-core/tests/vectors/kernel-6.18/*.flows.json`) are sent again,
//! as real UDP datagrams from the same source addresses and ports, through
//! the real `lvsd` in a namespace lab with the oracle's addressing. The
//! services are created with the very `ipvsadm` commands the kernel got,
//! run through `lvsadm`; `lvsadm -L -n -c` then shows where each flow went,
//! and that must be where the kernel sent it.
//!
//! Needs root. UDP scenarios only (TCP ones are replayed at engine level by
//! `lvs-core/tests/kernel_sched.rs`); `twos` draws kernel random numbers and
//! one-packet scenarios leave no entries to list, so those are skipped
//! (named in the output); a scheduler that is not offered is a failure.

mod support;

use lvs_lab::Lab;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{ip, lvsadm, nat_lab, Director};

fn vectors() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lvs-core/tests/vectors/kernel-6.18");
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        panic!("no kernel vectors in {}", dir.display());
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".flows.json") {
            let text = std::fs::read_to_string(&p).expect("read vector");
            let doc: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            v.push((p.file_name().unwrap().to_string_lossy().into_owned(), doc));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Re-addresses a one-server NAT lab like the oracle's network: clients
/// 198.18.0.1/22 (+ 198.18.1.x sources), director 198.18.0.2 and 198.18.64.1,
/// real servers 198.18.64.10–29 in one namespace, VIPs in 198.18.100.0/24
/// routed to the director.
fn oracle_addressing(lab: &Lab) {
    let (c, d, s) = (
        lab.client_ns().to_string(),
        lab.director_ns().to_string(),
        lab.server_ns(1).to_string(),
    );
    ip(lab, &c, &["addr", "flush", "dev", "c0"]);
    ip(lab, &d, &["addr", "flush", "dev", "d0"]);
    ip(lab, &d, &["addr", "flush", "dev", "br1"]);
    ip(lab, &s, &["addr", "flush", "dev", "b0"]);
    ip(lab, &c, &["addr", "add", "198.18.0.1/22", "dev", "c0"]);
    // Flow i comes from 198.18.1.1 + (i % nsrc); the recorded scenarios use at most 256 sources.
    let batch: String = (0..256u32)
        .map(|k| {
            format!(
                "addr add {}/22 dev c0\n",
                Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 1)) + k)
            )
        })
        .collect();
    let bfile = std::env::temp_dir().join(format!("lvsd-e2e-sched-{}.batch", std::process::id()));
    std::fs::write(&bfile, batch).unwrap();
    ip(lab, &c, &["-batch", &bfile.to_string_lossy()]);
    let _ = std::fs::remove_file(&bfile);
    ip(
        lab,
        &c,
        &["route", "add", "198.18.100.0/24", "via", "198.18.0.2"],
    );
    ip(lab, &d, &["addr", "add", "198.18.0.2/22", "dev", "d0"]);
    ip(lab, &d, &["addr", "add", "198.18.64.1/24", "dev", "br1"]);
    for k in 10..30 {
        ip(
            lab,
            &s,
            &["addr", "add", &format!("198.18.64.{k}/24"), "dev", "b0"],
        );
    }
    ip(
        lab,
        &s,
        &["route", "add", "198.18.0.0/22", "via", "198.18.64.1"],
    );
}

/// The connection table as (client ip, client port, vport) → real server address.
fn conn_table(sock: &Path) -> HashMap<(String, u16, u16), String> {
    let (code, out, err) = lvsadm(sock, &["-L", "-n", "-c"]);
    assert_eq!(code, 0, "{err}");
    let mut m = HashMap::new();
    for l in out.lines().skip(2) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let split = |s: &str| {
            let (a, p) = s.rsplit_once(':').unwrap_or((s, "0"));
            (a.to_string(), p.parse::<u16>().unwrap_or(0))
        };
        let (ca, cp) = split(f[3]);
        let (_, vp) = split(f[4]);
        let (da, _) = split(f[5]);
        m.insert((ca, cp, vp), da);
    }
    m
}

fn count_for_port(sock: &Path, vport: u16) -> usize {
    conn_table(sock).keys().filter(|k| k.2 == vport).count()
}

/// Strips the leading `ipvsadm` of a recorded command line.
fn ipvsadm_args(cmd: &str) -> Vec<String> {
    let mut w: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    if w.first().is_some_and(|x| x.ends_with("ipvsadm")) {
        w.remove(0);
    }
    w
}

#[test]
fn lvsd_schedules_the_kernels_flows_like_the_kernel() {
    let all = vectors();
    assert!(!all.is_empty(), "no kernel vectors");
    let (_g, lab) = nat_lab("lvtsch", 1);
    oracle_addressing(&lab);
    const CONFIG: &str = "# services come from lvsadm\n";
    let mut director = Director::start(&lab, "sched", CONFIG);
    // Scenario files number their services from the same port: when a port
    // comes back, a fresh lvsd (empty tables, like the oracle's fresh VM).
    let mut used_ports = std::collections::HashSet::new();

    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for (file, doc) in &all {
        let svc = &doc["service"];
        let sched = svc["scheduler"].as_str().unwrap_or("");
        let proto = svc["protocol"].as_str().unwrap_or("");
        let options = svc["options"].as_str().unwrap_or("");
        if proto != "udp" || sched == "twos" || options.split_whitespace().any(|o| o == "-o") {
            skipped.push(format!("{file} ({proto} {sched} {options})"));
            continue;
        }
        let vport = svc["vport"].as_u64().unwrap_or(0) as u16;
        if !used_ports.insert(vport) {
            director.stop(&lab);
            director = Director::start(&lab, "sched", CONFIG);
            used_ports.clear();
            used_ports.insert(vport);
        }
        let vip: Ipv4Addr = svc["vip"].as_str().unwrap_or("0.0.0.0").parse().unwrap();
        let commands: Vec<String> = doc["ipvsadm_commands"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // Setup commands are those before the first `after N:` step.
        let mut setup_ok = true;
        for c in commands.iter().take_while(|c| !c.starts_with("after")) {
            let args = ipvsadm_args(c);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, _, err) = lvsadm(&director.sock, &refs);
            if code != 0 {
                if err.contains("Scheduler or persistence engine not found") {
                    failures.push(format!("{file}: scheduler {sched} is not offered"));
                } else {
                    failures.push(format!("{file}: `{c}` failed: {err}"));
                }
                setup_ok = false;
                break;
            }
        }
        if !setup_ok {
            continue;
        }
        let steps: Vec<(usize, Vec<String>)> = doc["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let n = s["after_flows"].as_u64().unwrap_or(0) as usize;
                        let args = s["ipvsadm_args"]
                            .as_str()
                            .unwrap_or("")
                            .split_whitespace()
                            .map(str::to_string)
                            .collect();
                        (n, args)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let flows = doc["flows"].as_array().cloned().unwrap_or_default();
        let client = lab.client_ns().to_string();
        for (i, f) in flows.iter().enumerate() {
            for (_, args) in steps.iter().filter(|(n, _)| *n == i) {
                // As the oracle did: wait until the table holds the i flows sent so far.
                let deadline = Instant::now() + Duration::from_secs(3);
                while count_for_port(&director.sock, vport) < i && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let (code, _, err) = lvsadm(&director.sock, &refs);
                assert_eq!(code, 0, "{file}: step {args:?}: {err}");
            }
            let src: Ipv4Addr = f["src_ip"].as_str().unwrap_or("0.0.0.0").parse().unwrap();
            let sport = f["src_port"].as_u64().unwrap_or(0) as u16;
            let pkts = f["pkts"].as_u64().unwrap_or(1).clamp(1, 4);
            lab.run_in(&client, move || {
                let s = UdpSocket::bind(SocketAddrV4::new(src, sport)).expect("bind flow source");
                for _ in 0..pkts {
                    let _ = s.send_to(b"flow", SocketAddrV4::new(vip, vport));
                }
            })
            .expect("client thread");
        }
        let want: Vec<Option<String>> = flows
            .iter()
            .map(|f| {
                f["rs"]
                    .as_str()
                    .map(|r| r.split(':').next().unwrap_or(r).to_string())
            })
            .collect();
        let expected_entries = want.iter().filter(|w| w.is_some()).count();
        let deadline = Instant::now() + Duration::from_secs(5);
        while count_for_port(&director.sock, vport) < expected_entries && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let table = conn_table(&director.sock);
        let mut bad = Vec::new();
        for (f, w) in flows.iter().zip(&want) {
            let key = (
                f["src_ip"].as_str().unwrap_or("").to_string(),
                f["src_port"].as_u64().unwrap_or(0) as u16,
                vport,
            );
            let got = table.get(&key).cloned();
            if &got != w {
                bad.push(format!(
                    "flow {} from {}:{}: kernel {:?}, lvsd {:?}",
                    f["seq"], key.0, key.1, w, got
                ));
            }
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{file} ({sched}): {} of {} flows differ; first: {}",
                bad.len(),
                flows.len(),
                bad[0]
            ));
        }
        ran.push(format!("{file} ({sched}, {} flows)", flows.len()));
    }
    director.stop(&lab);
    eprintln!(
        "replayed through lvsd: {}\nskipped: {}",
        ran.join(", "),
        skipped.join(", ")
    );
    lab.close().expect("lab cleanup");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // 53 of the 96 recorded scenarios are UDP and not twos.
    assert!(ran.len() >= 50, "only {} scenarios replayed", ran.len());
}
