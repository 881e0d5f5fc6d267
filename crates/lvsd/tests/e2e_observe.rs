//! End-to-end: what an operator watches. The metrics endpoint scraped
//! during a lab run and checked against `lvsadm` and against Debian's
//! `prometheus-node-exporter` reading lvsd's `/proc`-style views; the
//! status page loaded in Debian's headless Chromium, showing the servers
//! and turning a server red when its check fails; the log formats.
//!
//! Needs root, curl, chromium and prometheus-node-exporter (scripts/deps.sh
//! installs them).

mod support;

use lvs_lab::Lab;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{curl_args, lvsadm_ok, nat_lab, Director};

const URL: &str = "http://198.18.0.100/";
const METRICS: &str = "127.0.0.1:9100";

fn config(extra: &str) -> String {
    format!(
        "metrics {METRICS}
{extra}
director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    check interval 1 timeout 1
    option tcpcheck
    server rs1 198.18.1.11:80 check
    server rs2 198.18.1.12:80 check
"
    )
}

/// `curl` inside the director's namespace (where the endpoint listens).
fn fetch(lab: &Lab, path: &str) -> String {
    let url = format!("http://{METRICS}{path}");
    let out = lab
        .exec(
            lab.director_ns(),
            "curl",
            &["-s", "-S", "-m", "10", &url],
            Duration::from_secs(15),
        )
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

type Sample = (String, BTreeMap<String, String>);

/// A Prometheus or OpenMetrics text: sample → value, and family → type.
fn parse(text: &str) -> (HashMap<Sample, f64>, HashMap<String, String>) {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let (name, ty) = (w.next().unwrap(), w.next().unwrap());
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                // Values here never hold `",` (addresses, names, numbers).
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        samples.insert((name, labels), v);
    }
    (samples, types)
}

/// The type of the family a sample belongs to (OpenMetrics names a
/// counter's family without `_total`; the Prometheus text format with it).
fn type_of<'a>(types: &'a HashMap<String, String>, sample: &str) -> &'a str {
    for name in [sample, sample.trim_end_matches("_total")] {
        if let Some(t) = types.get(name) {
            return t;
        }
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(t) = sample.strip_suffix(suffix).and_then(|n| types.get(n)) {
            return t;
        }
    }
    panic!("no TYPE for {sample}")
}

fn value(samples: &HashMap<Sample, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|((n, l), _)| n == name && want.iter().all(|(k, v)| l.get(k) == Some(v)))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
}

/// `n` requests, each on a new connection.
fn traffic(lab: &Lab, port: u16, n: u16) {
    for i in 0..n {
        let p = (port + i).to_string();
        curl_args(lab, URL, &["--local-port", &p]).expect("request through the VIP");
    }
}

/// Waits (bounded) until the service's listed connection count is `n`
/// (the counters are the estimator's 2-second snapshot).
fn wait_stats(sock: &Path, n: u64) -> String {
    let t0 = Instant::now();
    loop {
        let out = lvsadm_ok(sock, &["-L", "-n", "--stats", "--exact"]);
        let conns = out
            .lines()
            .find(|l| l.starts_with("TCP"))
            .and_then(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok());
        if conns == Some(n) {
            return out;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "stats never reached {n}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_health(sock: &Path, server: &str, state: &str) {
    let t0 = Instant::now();
    loop {
        let out = lvsadm_ok(sock, &["--health"]);
        if out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&server) && w.get(3) == Some(&state)
        }) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "{server} not {state}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_agree_with_lvsadm_and_with_node_exporter() {
    let (_g, lab) = nat_lab("lvtobs", 2);
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "observe", &config(""));
    traffic(&lab, 41000, 10);
    let stats = wait_stats(&d.sock, 10);
    let (samples, types) = parse(&fetch(&lab, "/metrics"));

    // Per backend, the numbers `lvsadm -L -n --stats` prints.
    let mut backends = 0;
    for line in stats.lines().filter(|l| l.trim_start().starts_with("->")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 7 {
            continue; // the column titles
        }
        let Some((addr, port)) = w[1].rsplit_once(':') else {
            continue;
        };
        let l = [
            ("remote_address", addr),
            ("remote_port", port),
            ("local_address", "198.18.0.100"),
        ];
        for (i, name) in [
            "lvsd_backend_connections_total",
            "lvsd_backend_incoming_packets_total",
            "lvsd_backend_outgoing_packets_total",
            "lvsd_backend_incoming_bytes_total",
            "lvsd_backend_outgoing_bytes_total",
        ]
        .iter()
        .enumerate()
        {
            let listed: f64 = w[2 + i].parse().unwrap();
            assert_eq!(value(&samples, name, &l), listed, "{name} {addr}\n{stats}");
        }
        assert_eq!(value(&samples, "node_ipvs_backend_weight", &l), 1.0);
        assert_eq!(value(&samples, "lvsd_backend_up", &l), 1.0);
        assert_eq!(value(&samples, "lvsd_backend_in_service", &l), 1.0);
        let checks = value(
            &samples,
            "lvsd_health_check_duration_seconds_count",
            &l[..2],
        );
        assert!(checks >= 1.0, "no check counted for {addr}");
        backends += 1;
    }
    assert_eq!(backends, 2, "{stats}");
    assert_eq!(value(&samples, "node_ipvs_connections_total", &[]), 10.0);
    assert_eq!(
        value(
            &samples,
            "lvsd_service_connections_total",
            &[("proto", "TCP")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &samples,
            "lvsd_service_available_backends",
            &[("local_port", "80")]
        ),
        2.0
    );
    assert_eq!(value(&samples, "lvsd_connections_created_total", &[]), 10.0);
    assert!(value(&samples, "lvsd_io_rx_frames_total", &[]) > 0.0);
    assert!(value(&samples, "lvsd_io_rx_batches_total", &[]) > 0.0);
    assert!(value(&samples, "lvsd_control_requests_total", &[]) >= 1.0);
    assert_eq!(
        value(&samples, "lvsd_reloads_total", &[("result", "applied")]),
        0.0
    );
    assert_eq!(value(&samples, "lvsd_up", &[]), 1.0);
    assert_eq!(types["lvsd_health_check_duration_seconds"], "histogram");

    // node_exporter's IPVS collector on lvsd's /proc views: the same
    // samples, values and types as lvsd's own node_ipvs_* families.
    let procfs = std::env::temp_dir().join(format!("lvsd-e2e-procfs-{}", std::process::id()));
    std::fs::create_dir_all(procfs.join("net")).unwrap();
    for view in ["ip_vs", "ip_vs_stats"] {
        std::fs::write(
            procfs.join("net").join(view),
            lvsadm_ok(&d.sock, &["--proc", view]),
        )
        .unwrap();
    }
    let ours = parse(&fetch(&lab, "/metrics"));
    let exporter = "/usr/bin/prometheus-node-exporter";
    assert!(
        Path::new(exporter).exists(),
        "{exporter} missing: apt-get install prometheus-node-exporter (scripts/deps.sh)"
    );
    let mut cmd = lab.command(lab.director_ns(), exporter);
    cmd.arg(format!("--path.procfs={}", procfs.display()))
        .args([
            "--collector.disable-defaults",
            "--collector.ipvs",
            "--web.listen-address=127.0.0.1:9101",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = lab
        .spawn(lab.director_ns(), cmd)
        .expect("start node_exporter");
    let t0 = Instant::now();
    let theirs = loop {
        let out = lab
            .exec(
                lab.director_ns(),
                "curl",
                &["-s", "-m", "5", "http://127.0.0.1:9101/metrics"],
                Duration::from_secs(10),
            )
            .expect("curl");
        if out.status.success() {
            break parse(&String::from_utf8_lossy(&out.stdout));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node_exporter did not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = lab.stop(pid);
    let _ = std::fs::remove_dir_all(&procfs);
    let ipvs = |s: &HashMap<Sample, f64>| -> BTreeMap<String, f64> {
        s.iter()
            .filter(|((n, _), _)| n.starts_with("node_ipvs_"))
            .map(|((n, l), v)| (format!("{n}{l:?}"), *v))
            .collect()
    };
    let (a, b) = (ipvs(&ours.0), ipvs(&theirs.0));
    assert_eq!(a.len(), 11, "{a:#?}");
    assert_eq!(a, b, "lvsd's node_ipvs_* differ from node_exporter's");
    for (n, _) in ours.0.keys().filter(|(n, _)| n.starts_with("node_ipvs_")) {
        assert_eq!(type_of(&ours.1, n), type_of(&theirs.1, n), "type of {n}");
    }
    d.stop(&lab);
    lab.close().expect("clean up the lab");
}

/// The page as Chromium renders it (DOM after its scripts ran).
fn browser(lab: &Lab, mode: &str, out: &Path) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/browser-check.sh"
    );
    let url = format!("http://{METRICS}/");
    let run = lab
        .exec(
            lab.director_ns(),
            script,
            &[mode, &url, &out.to_string_lossy()],
            Duration::from_secs(90),
        )
        .expect("run chromium");
    assert!(
        run.status.success(),
        "browser-check.sh {mode}: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(out).unwrap_or_default()
}

/// The opening tag of the row of server `endpoint` in a dumped DOM.
fn row<'a>(dom: &'a str, endpoint: &str) -> &'a str {
    let at = dom
        .find(&format!("data-server=\"{endpoint}\""))
        .unwrap_or_else(|| panic!("no row for {endpoint} in {dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

#[test]
fn the_status_page_shows_the_servers_and_a_failed_check_in_chromium() {
    let (_g, lab) = nat_lab("lvtpage", 2);
    let servers = lab.start_identity_servers(80, 53).expect("real servers");
    let d = Director::start(&lab, "page", &config(""));
    // A few samples of traffic for the charts (a minute of it when taking
    // the screenshot for the docs).
    let rounds = if std::env::var_os("LVSD_SCREENSHOT").is_some() {
        30
    } else {
        3
    };
    for round in 0..rounds {
        traffic(&lab, 42000 + round * 40, 10 + (round * 7) % 25);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let tmp = std::env::temp_dir();
    let dom_path = tmp.join(format!("lvsd-e2e-page-{}.html", std::process::id()));
    let dom = browser(&lab, "dom", &dom_path);
    assert!(
        dom.contains("data-service=\"TCP 198.18.0.100:80\""),
        "{dom}"
    );
    for ep in ["198.18.1.11:80", "198.18.1.12:80"] {
        let r = row(&dom, ep);
        assert!(r.contains("data-health=\"up\""), "{r}");
    }
    assert!(dom.contains(">rs1<") && dom.contains(">rs2<"), "{dom}");

    servers[0].stop();
    wait_health(&d.sock, "rs1", "DOWN");
    let dom = browser(&lab, "dom", &dom_path);
    let r = row(&dom, "198.18.1.11:80");
    assert!(
        r.contains("data-health=\"down\"") && r.contains("down"),
        "{r}"
    );
    assert!(row(&dom, "198.18.1.12:80").contains("data-health=\"up\""));
    let (samples, _) = parse(&fetch(&lab, "/metrics"));
    assert_eq!(
        value(&samples, "lvsd_backend_up", &[("server", "rs1")]),
        0.0
    );
    assert_eq!(
        value(&samples, "lvsd_backend_up", &[("server", "rs2")]),
        1.0
    );
    assert_eq!(value(&samples, "lvsd_service_available_backends", &[]), 1.0);

    // The screenshot committed as docs/status-page.png comes from here
    // (LVSD_SCREENSHOT=path).
    let shot = std::env::var_os("LVSD_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.join(format!("lvsd-e2e-page-{}.png", std::process::id())));
    browser(&lab, "shot", &shot);
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("LVSD_SCREENSHOT").is_none() {
        let _ = std::fs::remove_file(&shot);
    }
    let _ = std::fs::remove_file(&dom_path);

    // Logs are logfmt when stderr is not a terminal, with fields.
    let log = d.stop(&lab);
    let down = log
        .lines()
        .find(|l| l.contains("is DOWN"))
        .unwrap_or_else(|| panic!("no DOWN line in {log}"));
    assert!(down.starts_with("ts=20"), "{down}");
    for want in [
        " level=warn ",
        " director=web",
        " server=198.18.1.11:80",
        " reason=\"connection refused\"",
        " service=\"TCP 198.18.0.100:80\"",
        " name=rs1",
    ] {
        assert!(down.contains(want), "{want} missing in {down}");
    }
    lab.close().expect("clean up the lab");
}

#[test]
fn json_logs_are_one_object_per_line() {
    support::require_root();
    let dir = std::env::temp_dir();
    let conf = dir.join(format!("lvsd-e2e-json-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        "director web 198.18.0.100:80 TCP\n    balanse roundrobin\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::lvsd())
        .args(["--log-format", "json", "--config"])
        .arg(&conf)
        .arg("--control")
        .arg(dir.join("lvsd-e2e-json-unused.sock"))
        .output()
        .expect("run lvsd");
    let _ = std::fs::remove_file(&conf);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
    assert_eq!(v["level"], "error");
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains(":2:5: error: unknown statement `balanse`"),
        "{v}"
    );
    assert!(v["ts"].as_str().unwrap().ends_with('Z'), "{v}");
}
