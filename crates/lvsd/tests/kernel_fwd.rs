//! Differential test against Linux 6.18: the packets of every scenario
//! recorded by `tools/oracle-fwd` (crates/lvs-core/tests/vectors/
//! kernel-6.18/fwd/, format `lvs-oracle-fwd/1`) go through `lvsd replay`
//! with the scenario's services written in the director language, and
//! every frame lvsd would send must equal, byte for byte, what the kernel
//! sent — except the fields the vectors mark as filled unpredictably by
//! the kernel (`vary`: IP IDs of packets the director originates without
//! DF, the GUE source port), which are checked by property instead.
//!
//! Steps where lvsd deliberately differs are listed in `KNOWN` with the
//! reason; the test fails if one of them starts to agree (so the list
//! stays true) as well as on any other difference.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Steps where lvsd differs from the kernel on purpose or for a gap it
/// says in the README: (scenario, step index, why).
const KNOWN: &[(&str, usize, &str)] = &[];

/// Scenario-wide differences: (scenario, why) — every step may differ.
const KNOWN_SCENARIOS: &[(&str, &str)] = &[];

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lvs-core/tests/vectors/kernel-6.18/fwd")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex in the vectors"))
        .collect()
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string `{k}` in {v}"))
}

/// The scenario's ipvsadm commands as a director-language file.
fn config(v: &Value) -> String {
    let mut out = String::new();
    for (k, val) in v["sysctls"].as_object().into_iter().flatten() {
        let val = match val {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "sysctl {k} {val}");
    }
    // Services in order, each with its servers.
    let mut services: Vec<(String, String)> = Vec::new();
    let mut servers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in v["ipvsadm"].as_array().expect("ipvsadm lines") {
        let words: Vec<&str> = line.as_str().unwrap().split_whitespace().collect();
        let get = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1).copied())
        };
        let (proto, svc) = if let Some(s) = get("-t") {
            ("TCP", s)
        } else if let Some(s) = get("-u") {
            ("UDP", s)
        } else if let Some(s) = get("--sctp-service") {
            ("SCTP", s)
        } else {
            panic!("no service in `{line}`")
        };
        match words[0] {
            "-A" => {
                let mut d = format!("director d{} {svc} {proto}\n", services.len());
                let balance = match get("-s").unwrap_or("wlc") {
                    "rr" | "wrr" => "roundrobin",
                    "wlc" => "leastconn",
                    "sh" => "source",
                    "dh" => "dest",
                    other => panic!("scheduler {other} not mapped"),
                };
                let _ = writeln!(d, "  balance {balance}");
                if words.contains(&"-p") {
                    let t = get("-p")
                        .filter(|t| t.parse::<u32>().is_ok())
                        .unwrap_or("360");
                    let _ = writeln!(d, "  option persistence timeout {t}");
                }
                services.push((svc.to_string(), d));
            }
            "-a" => {
                let rip = get("-r").expect("-r");
                let list = servers.entry(svc.to_string()).or_default();
                let weight = get("-w").unwrap_or("1");
                let mode = if words.contains(&"-m") {
                    "nat".to_string()
                } else if words.contains(&"-i") {
                    let mut m = format!("tunnel {}", get("--tun-type").unwrap_or("ipip"));
                    if let Some(p) = get("--tun-port") {
                        let _ = write!(m, " port {p}");
                    }
                    for (flag, word) in [
                        ("--tun-csum", "csum"),
                        ("--tun-nocsum", "nocsum"),
                        ("--tun-remcsum", "remcsum"),
                    ] {
                        if words.contains(&flag) {
                            let _ = write!(m, " {word}");
                        }
                    }
                    m
                } else {
                    "gateway".to_string()
                };
                // DR and tunnel servers take the service's port.
                let addr = if mode == "nat" {
                    rip.to_string()
                } else {
                    host_of(rip).to_string()
                };
                list.push(format!(
                    "  server s{} {addr} weight {weight} mode {mode}\n",
                    list.len()
                ));
            }
            other => panic!("ipvsadm command {other} not mapped"),
        }
    }
    for (svc, mut d) in services {
        for s in servers.get(&svc).into_iter().flatten() {
            d.push_str(s);
        }
        out.push_str(&d);
    }
    out
}

/// `lvsd replay`'s `--src`/`--src6` from the director's real-server-side
/// addresses: `director` of the scenario's family, and `director4` or
/// `director6` of the other one when the real servers are of it.
fn sources(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for d in [&v["director"], &v["director4"], &v["director6"]] {
        let Some(a) = d["rs_if"]["addr"].as_str() else {
            continue;
        };
        let flag = if a.contains(':') { "--src6" } else { "--src" };
        out.extend([flag.to_string(), a.to_string()]);
    }
    out
}

/// The address of ipvsadm's `ADDR[:PORT]` (`[IPV6][:PORT]` for IPv6).
fn host_of(a: &str) -> &str {
    match a.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => a.split(':').next().unwrap_or(a),
    }
}

/// The destination address of an IP packet, as text.
fn dst_of(p: &[u8]) -> String {
    if p.first().is_some_and(|b| b >> 4 == 6) && p.len() >= 40 {
        let a: [u8; 16] = p[24..40].try_into().unwrap();
        return std::net::Ipv6Addr::from(a).to_string();
    }
    format!("{}.{}.{}.{}", p[16], p[17], p[18], p[19])
}

/// Steps are fed 600 ms apart, as they were recorded.
const STEP_US: u64 = 600_000;

/// The frames `lvsd replay` wrote, grouped by the input step (timestamp).
fn outputs(bytes: &[u8], steps: usize) -> Vec<Vec<Vec<u8>>> {
    let mut out = vec![Vec::new(); steps];
    for (us, r) in support::pcap_records(bytes) {
        out[(us / STEP_US) as usize].push(r);
    }
    out
}

fn sum16(b: &[u8]) -> u16 {
    support::inet_sum(0, b)
}

/// Compares one frame, masking the kernel's unpredictable fields; checks
/// those fields of ours by property. `None` when equal.
fn compare(kernel: &Value, ours: &[u8]) -> Option<String> {
    let want = hex(str_of(kernel, "hex"));
    let mut masked: Vec<(usize, usize)> = Vec::new();
    for v in kernel["vary"].as_array().into_iter().flatten() {
        let off = v["off"].as_u64().unwrap() as usize;
        let len = v["len"].as_u64().unwrap() as usize;
        masked.push((off, len));
        match str_of(v, "field") {
            "ip.id" => masked.push((10, 2)),
            "udp.sport" => {
                masked.push((26, 2));
                let p = u16::from_be_bytes([ours[off], ours[off + 1]]);
                if !(32768..=60999).contains(&p) {
                    return Some(format!("GUE source port {p} outside 32768-60999"));
                }
            }
            _ => {}
        }
    }
    if ours.len() != want.len() {
        return Some(format!(
            "length {} (kernel {})\n  ours   {}\n  kernel {}",
            ours.len(),
            want.len(),
            hexs(ours),
            hexs(&want)
        ));
    }
    if ours[0] >> 4 == 4 {
        let ihl = usize::from(ours[0] & 0x0f) * 4;
        if sum16(&ours[..ihl]) != 0xffff {
            return Some("our IPv4 header checksum is wrong".into());
        }
    }
    let diff: Vec<usize> = (0..want.len())
        .filter(|&i| ours[i] != want[i] && !masked.iter().any(|&(o, l)| (o..o + l).contains(&i)))
        .collect();
    (!diff.is_empty()).then(|| {
        format!(
            "bytes differ at {diff:?}\n  ours   {}\n  kernel {}",
            hexs(ours),
            hexs(&want)
        )
    })
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn lvsd_replay_sends_what_linux_sends() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the vectors directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "guest-info.json")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 20, "too few vectors in {}", dir.display());
    let tmp = std::env::temp_dir().join(format!("lvsd-kernel-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut problems = Vec::new();
    let mut known_hit = std::collections::BTreeSet::new();
    let (mut compared, mut frames) = (0usize, 0usize);
    for f in &files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let name = str_of(&v, "scenario").to_string();
        let scenario_known = KNOWN_SCENARIOS.iter().find(|(s, _)| *s == name);
        let nonlocal: Vec<&str> = v["nonlocal_vips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let steps = v["steps"].as_array().unwrap();
        let inputs: Vec<Vec<u8>> = steps.iter().map(|s| hex(str_of(s, "in"))).collect();
        let conf = tmp.join(format!("{name}.conf"));
        std::fs::write(&conf, config(&v)).unwrap();
        let inp = tmp.join(format!("{name}.in.pcap"));
        std::fs::write(&inp, support::pcap(&inputs, 101, STEP_US)).unwrap();
        let outp = tmp.join(format!("{name}.out.pcap"));
        let rs = &v["director"]["rs_if"];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lvsd"));
        cmd.args(["replay", "--config"])
            .arg(&conf)
            .arg("--pcap")
            .arg(&inp)
            .arg("--out")
            .arg(&outp)
            .args(sources(&v))
            .args(["--mtu", &rs["mtu"].to_string()]);
        for r in v["routes"].as_array().into_iter().flatten() {
            if let Some(m) = r["mtu"].as_u64() {
                cmd.arg("--path-mtu")
                    .arg(format!("{}={m}", str_of(r, "dst")));
            }
        }
        let run = cmd.output().expect("run lvsd replay");
        assert!(
            run.status.success(),
            "{name}: lvsd replay failed: {}\n{}",
            String::from_utf8_lossy(&run.stderr),
            config(&v)
        );
        let ours = outputs(&std::fs::read(&outp).unwrap(), steps.len());
        for (k, step) in steps.iter().enumerate() {
            let dst = dst_of(&inputs[k]);
            if nonlocal.contains(&dst.as_str()) {
                // lvsd owns every VIP it serves; a kernel director never
                // sees packets for a service address it does not have.
                continue;
            }
            let want = step["out"].as_array().unwrap();
            let mut bad = None;
            if want.len() != ours[k].len() {
                bad = Some(format!(
                    "{} frame(s), kernel {}\n  ours   {:?}\n  kernel {:?}",
                    ours[k].len(),
                    want.len(),
                    ours[k].iter().map(|o| hexs(o)).collect::<Vec<_>>(),
                    want.iter().map(|w| str_of(w, "hex")).collect::<Vec<_>>()
                ));
            } else {
                for (w, o) in want.iter().zip(&ours[k]) {
                    frames += 1;
                    if let Some(p) = compare(w, o) {
                        bad = Some(p);
                        break;
                    }
                }
            }
            compared += 1;
            let known = KNOWN.iter().find(|(s, i, _)| *s == name && *i == k);
            match (bad, known, scenario_known) {
                (None, Some(_), _) => problems.push(format!(
                    "{name} step {k}: listed as a known difference but now agrees with the kernel; remove it from KNOWN"
                )),
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    known_hit.insert(name.clone());
                }
                (Some(p), None, None) => problems.push(format!(
                    "{name} step {k} ({}): {p}",
                    step["note"].as_str().unwrap_or("")
                )),
                (None, None, _) => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "{} scenarios, {compared} steps compared, {frames} frames byte-equal or masked-equal; known differences in: {known_hit:?}",
        files.len()
    );
    assert!(
        problems.is_empty(),
        "{} difference(s) with Linux 6.18:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
