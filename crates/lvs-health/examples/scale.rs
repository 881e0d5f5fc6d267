//! Scale benchmark for lvs-health (issue 10, item 6): 1,000 real servers
//! checked every second by `tcpcheck` and `httpcheck` — the checker thread's
//! CPU, the check latencies, and the packet path's throughput with and
//! without the checks running, in one run.
//!
//! Run as root (it builds network namespaces); never run by `cargo test`:
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo run --release -p lvs-health --example scale [-- --secs 5 --rounds 4]
//! ```
//!
//! Progress goes to stderr; the report (Markdown, ready to paste) to stdout.
//!
//! # Topology
//!
//! ```text
//!  [lvscale<pid>-c]  sc1 198.18.99.5/30 ---- sv0 198.18.99.6/30  [lvscale<pid>-s1]  lo: 198.18.101.1..250/32
//!   lvs-health       sc2 198.18.99.9/30 ---- sv0 198.18.99.10/30 [lvscale<pid>-s2]  lo: 198.18.102.1..250/32
//!   thread           sc3 ...                                     [lvscale<pid>-s3]  lo: 198.18.103.1..250/32
//!                    sc4 ...                                     [lvscale<pid>-s4]  lo: 198.18.104.1..250/32
//! ```
//!
//! The checker namespace routes each server /24 via its veth peer, so the
//! neighbour table holds 4 entries, not 1,000 (the ARP table's `gc_thresh3`
//! of 1,024 is shared by every namespace of the host). Each server namespace
//! has one TCP listener (`0.0.0.0:9000`, accept and close) and one minimal
//! HTTP/1.1 server (`0.0.0.0:80`, two threads, `200 OK`) serving its 250
//! addresses. Nothing is created in the root namespace, only addresses from
//! 198.18.0.0/15 are used, and the namespaces are deleted on exit, on error,
//! on SIGINT/SIGTERM and on panic (the release profile aborts on panic, so a
//! panic hook deletes them too). Leftovers of a killed run (`lvscale<pid>-*`
//! of a dead pid) are removed at start.
//!
//! # What is measured
//!
//! After a 1 s warm-up of the packet loop, `--rounds` rounds each run the
//! packet loop (established-flow NAT through `Engine::process_ipv4` with 10k
//! connections, as `established` in `crates/lvs-core/benches/engine.rs`) on
//! the main thread for `--secs` seconds with the 2,000 checks running (A),
//! then for `--secs` seconds with no checks (B). Nothing is pinned. Between
//! A and B the wanted set is emptied with `Health::set_checks`, so the
//! checker thread stays but idles; before each A the checks are set again and
//! run 1 s before the window opens.
//!
//! - checks per second: the growth of `Status::checks_run` over the A windows;
//! - CPU per thread from `/proc/self/task/<tid>/schedstat` (`utime+stime`
//!   from `stat` if absent): the `lvs-health` thread, the server threads
//!   (harness, not part of a daemon), the latency sampler, the main thread;
//!   and all CPUs' busy time from `/proc/stat`;
//! - latency: `Status::last_latency` of every check whose `checks_run` grew,
//!   sampled every 200 ms by a separate thread during the A windows (each
//!   check runs once a second, so nearly every probe is seen; the coverage is
//!   reported);
//! - transitions (`Health::poll_transition`) and failed probes: both should
//!   be 0.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lvs_core::wire::checksum;
use lvs_core::wire::tcp_flags::{ACK, SYN};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, Verdict};
use lvs_health::{CheckKind, CheckSpec, Health};
use lvs_lab::{in_netns, output_with_timeout, Lab};

type Result<T> = std::result::Result<T, String>;

/// Namespace names are `lvscale<pid>-<role>`.
const PREFIX: &str = "lvscale";
const SERVER_NAMESPACES: u8 = 4;
const PER_NAMESPACE: u8 = 250;
const TCP_PORT: u16 = 9000;
const HTTP_PORT: u16 = 80;
const HTTP_THREADS: usize = 2;
const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);
/// Established connections in the engine's table.
const CONNS: u32 = 10_000;
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Checks run this long before an A window opens.
const CHECK_WARMUP: Duration = Duration::from_secs(1);
/// Pause after the checks are removed, before a B window opens.
const CHECK_DRAIN: Duration = Duration::from_millis(500);
/// Bound for one `ip` invocation.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a thread of ours is waited for when stopping.
const JOIN_GRACE: Duration = Duration::from_secs(3);

const USAGE: &str =
    "usage: scale [--secs N (per packet run, default 5)] [--rounds N (A/B pairs, default 4)]";

/// Set by SIGINT/SIGTERM: every loop stops and the namespaces are deleted.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Namespaces to delete on exit, error or panic.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Config {
    secs: u64,
    rounds: u32,
}

impl Config {
    fn from_args() -> Result<Config> {
        let mut cfg = Config { secs: 5, rounds: 4 };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| -> Result<u64> {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                v.parse().map_err(|_| format!("{name}: bad number {v:?}"))
            };
            match a.as_str() {
                "--secs" => cfg.secs = value("--secs")?.clamp(1, 600),
                "--rounds" => cfg.rounds = value("--rounds")?.clamp(1, 50) as u32,
                // `cargo bench`-style harness flags are ignored.
                "--bench" => {}
                _ => return Err(format!("unknown argument {a:?}")),
            }
        }
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let cfg = match Config::from_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scale: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("scale: needs root (it creates network namespaces)");
        return ExitCode::from(2);
    }
    install_signal_handlers();
    install_panic_cleanup();
    match run(&cfg) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: &str) {
    eprintln!("scale: {msg}");
}

fn run(cfg: &Config) -> Result<String> {
    let load_start = loadavg();
    match Lab::cleanup_stale(PREFIX) {
        Ok(removed) if !removed.is_empty() => progress(&format!("removed stale {removed:?}")),
        Ok(_) => {}
        Err(e) => progress(&format!("stale namespace cleanup: {e}")),
    }
    let hard_deadline = Instant::now()
        + Duration::from_secs(120)
        + cfg.rounds * (Duration::from_secs(2 * cfg.secs) + CHECK_WARMUP + CHECK_DRAIN);

    progress("creating namespaces and 1,000 server addresses");
    // Drop order (reverse of declaration): sampler, checker, servers, namespaces.
    let net = Net::create()?;
    let servers = Servers::start(&net, hard_deadline)?;

    progress("engine: 10k established NAT connections");
    let (mut engine, samples) = engine_with_flows();

    let health = in_netns(&net.checker, Health::start)
        .map_err(|e| format!("entering {}: {e}", net.checker))?
        .map_err(|e| format!("starting the checker: {e}"))?;
    let health = Arc::new(health);
    let sampler = Sampler::start(health.clone(), hard_deadline)?;
    let specs = check_specs();

    progress("packet loop warm-up (1 s)");
    run_packets(&mut engine, &samples, Duration::from_secs(1))?;

    let run_for = Duration::from_secs(cfg.secs);
    let mut with = Phase::default();
    let mut without = Phase::default();
    let mut transitions = Vec::new();
    for round in 1..=cfg.rounds {
        health.set_checks(specs.clone());
        sleep_checked(CHECK_WARMUP)?;
        sampler.begin_window();
        let a0 = Snapshot::take(&health)?;
        let mpps = run_packets(&mut engine, &samples, run_for)?;
        let a1 = Snapshot::take(&health)?;
        sampler.end_window();
        with.add(&a0, &a1, mpps);
        while let Some(t) = health.poll_transition() {
            transitions.push(t);
        }
        progress(&format!(
            "round {round}/{}: with checks {mpps:.2} Mpps, {:.0} checks/s, {} failing",
            cfg.rounds,
            (a1.checks_run.saturating_sub(a0.checks_run)) as f64 / (a1.at - a0.at).as_secs_f64(),
            a1.failing
        ));

        health.set_checks(Vec::new());
        sleep_checked(CHECK_DRAIN)?;
        let b0 = Snapshot::take(&health)?;
        let mpps = run_packets(&mut engine, &samples, run_for)?;
        let b1 = Snapshot::take(&health)?;
        without.add(&b0, &b1, mpps);
        progress(&format!(
            "round {round}/{}: without checks {mpps:.2} Mpps",
            cfg.rounds
        ));
    }
    let latencies = sampler.finish();
    while let Some(t) = health.poll_transition() {
        transitions.push(t);
    }
    drop(health);
    drop(servers);
    drop(net);

    Ok(report(
        cfg,
        &load_start,
        &loadavg(),
        &with,
        &without,
        &latencies,
        &transitions,
    ))
}

fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err("interrupted".to_string());
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------------------
// Namespaces

/// The namespaces of this run; dropping it deletes them.
struct Net {
    checker: String,
    servers: Vec<String>,
}

fn ip(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out =
        output_with_timeout(cmd, IP_TIMEOUT).map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn add_netns(name: &str) -> Result<()> {
    // Registered first: a half-made namespace is deleted too.
    lock(&NAMESPACES).push(name.to_string());
    ip(&["netns", "add", name])
}

/// Deletes every registered namespace, newest first (bounded: one `ip`
/// call of at most [`IP_TIMEOUT`] each).
fn delete_namespaces(names: Vec<String>) {
    for ns in names.iter().rev() {
        if let Err(e) = ip(&["netns", "del", ns]) {
            eprintln!("scale: cleanup: {e}");
        }
    }
}

impl Net {
    fn create() -> Result<Net> {
        let pid = std::process::id();
        let checker = format!("{PREFIX}{pid}-c");
        let mut net = Net {
            checker: checker.clone(),
            servers: Vec::new(),
        };
        add_netns(&checker)?;
        ip(&["-n", &checker, "link", "set", "lo", "up"])?;
        for i in 1..=SERVER_NAMESPACES {
            let ns = format!("{PREFIX}{pid}-s{i}");
            add_netns(&ns)?;
            net.servers.push(ns.clone());
            let (here, there) = (format!("sc{i}"), "sv0");
            let near = format!("198.18.99.{}/30", 4 * u32::from(i) + 1);
            let far_ip = format!("198.18.99.{}", 4 * u32::from(i) + 2);
            let far = format!("{far_ip}/30");
            ip(&[
                "-n", &checker, "link", "add", &here, "type", "veth", "peer", "name", there,
                "netns", &ns,
            ])?;
            ip(&["-n", &checker, "addr", "add", &near, "dev", &here])?;
            ip(&["-n", &ns, "addr", "add", &far, "dev", there])?;
            ip(&["-n", &checker, "link", "set", &here, "up"])?;
            ip(&["-n", &ns, "link", "set", there, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // 250 /32 addresses on lo, in one `ip -batch`.
            let batch: String = (1..=PER_NAMESPACE)
                .map(|j| format!("addr add {}/32 dev lo\n", server_addr(i, j)))
                .collect();
            let file = std::env::temp_dir().join(format!("{ns}.ip-batch"));
            std::fs::write(&file, batch).map_err(|e| format!("writing {}: {e}", file.display()))?;
            let r = ip(&["-n", &ns, "-batch", &file.to_string_lossy()]);
            let _ = std::fs::remove_file(&file);
            r?;
            let subnet = format!("198.18.{}.0/24", 100 + u32::from(i));
            ip(&[
                "-n", &checker, "route", "add", &subnet, "via", &far_ip, "dev", &here,
            ])?;
        }
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        delete_namespaces(std::mem::take(&mut *lock(&NAMESPACES)));
    }
}

fn server_addr(ns: u8, j: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 100 + ns, j)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

/// The release profile aborts on panic, so no destructor runs: the hook
/// deletes the namespaces before the process goes.
fn install_panic_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let names = match NAMESPACES.try_lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(std::sync::TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Vec::new(),
        };
        delete_namespaces(names);
    }));
}

// ---------------------------------------------------------------------------
// Servers

/// The TCP and HTTP servers of every server namespace; dropping it stops
/// their threads (bounded).
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A listener on `0.0.0.0:port`, created in namespace `ns`, whose `accept`
/// returns after at most 100 ms (so the threads see `stop`).
fn listener(ns: &str, port: u16) -> Result<TcpListener> {
    let make = || -> std::io::Result<TcpListener> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        s.listen(4096)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s.into())
    };
    in_netns(ns, make)
        .map_err(|e| format!("entering {ns}: {e}"))?
        .map_err(|e| format!("listening on {ns} :{port}: {e}"))
}

fn accept_loop(
    l: TcpListener,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    mut serve: impl FnMut(TcpStream),
) {
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => serve(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads the request head (bounded: 4 KiB, 200 ms) and answers 200.
fn serve_http(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match s.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
}

impl Servers {
    fn start(net: &Net, deadline: Instant) -> Result<Servers> {
        let mut servers = Servers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for (i, ns) in net.servers.iter().enumerate() {
            let tcp = listener(ns, TCP_PORT)?;
            let stop = servers.stop.clone();
            servers.spawn(format!("scl-tcp-s{}", i + 1), move || {
                accept_loop(tcp, stop, deadline, drop)
            })?;
            let http = listener(ns, HTTP_PORT)?;
            for k in 0..HTTP_THREADS {
                let l = http
                    .try_clone()
                    .map_err(|e| format!("cloning a listener: {e}"))?;
                let stop = servers.stop.clone();
                servers.spawn(format!("scl-http-s{}-{k}", i + 1), move || {
                    accept_loop(l, stop, deadline, serve_http)
                })?;
            }
        }
        Ok(servers)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let t = thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| format!("spawning a server thread: {e}"))?;
        self.threads.push(t);
        Ok(())
    }
}

/// Joins `threads`, waiting at most [`JOIN_GRACE`]; the rest are detached.
fn join_bounded(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + JOIN_GRACE;
    let mut pending = threads;
    while !pending.is_empty() && Instant::now() < deadline {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        pending = rest;
        thread::sleep(Duration::from_millis(5));
    }
    if !pending.is_empty() {
        eprintln!("scale: {} thread(s) did not stop; detached", pending.len());
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        join_bounded(std::mem::take(&mut self.threads));
    }
}

// ---------------------------------------------------------------------------
// Checks and latency sampling

fn check_specs() -> Vec<CheckSpec> {
    let mut specs = Vec::new();
    for i in 1..=SERVER_NAMESPACES {
        for j in 1..=PER_NAMESPACE {
            let addr = IpAddr::V4(server_addr(i, j));
            let spec = |kind, port| CheckSpec {
                kind,
                addr,
                port,
                source: None,
                interval: INTERVAL,
                timeout: TIMEOUT,
                rise: 1,
                fall: 1,
            };
            specs.push(spec(CheckKind::Tcp, TCP_PORT));
            specs.push(spec(
                CheckKind::Http {
                    uri: "/".to_string(),
                    vhost: None,
                    status: 200,
                },
                HTTP_PORT,
            ));
        }
    }
    specs
}

#[derive(Default)]
struct Latencies {
    /// Microseconds, one per sampled probe.
    tcp: Vec<u32>,
    http: Vec<u32>,
    /// Probes run but not sampled (a check ran twice between two samples).
    unsampled: u64,
    /// Failed probes seen, by reason.
    failures: HashMap<String, u64>,
}

struct SamplerShared {
    collect: AtomicBool,
    window: AtomicU64,
    stop: AtomicBool,
    data: Mutex<Latencies>,
}

/// A thread that reads `Health::status` every 200 ms while a window is open
/// and keeps the latency of every probe that ran since the last read.
struct Sampler {
    shared: Arc<SamplerShared>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(health: Arc<Health>, deadline: Instant) -> Result<Sampler> {
        let shared = Arc::new(SamplerShared {
            collect: AtomicBool::new(false),
            window: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            data: Mutex::new(Latencies::default()),
        });
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("scale-sampler".to_string())
            .spawn(move || sample_loop(&health, &s, deadline))
            .map_err(|e| format!("spawning the sampler: {e}"))?;
        Ok(Sampler {
            shared,
            thread: Some(thread),
        })
    }

    /// Opens a window: the next read is the baseline, the following ones record.
    fn begin_window(&self) {
        self.shared.window.fetch_add(1, Ordering::SeqCst);
        self.shared.collect.store(true, Ordering::SeqCst);
    }

    fn end_window(&self) {
        self.shared.collect.store(false, Ordering::SeqCst);
    }

    fn finish(mut self) -> Latencies {
        self.stop();
        std::mem::take(&mut *lock(&self.shared.data))
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            join_bounded(vec![t]);
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sample_loop(health: &Health, shared: &SamplerShared, deadline: Instant) {
    let mut seen: HashMap<CheckSpec, u64> = HashMap::new();
    let mut window = u64::MAX;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(SAMPLE_EVERY);
        if !shared.collect.load(Ordering::SeqCst) {
            continue;
        }
        let w = shared.window.load(Ordering::SeqCst);
        let status = health.status();
        if w != window {
            window = w;
            seen = status
                .into_iter()
                .map(|(s, st)| (s, st.checks_run))
                .collect();
            continue;
        }
        let mut data = lock(&shared.data);
        for (spec, st) in status {
            let before = seen.get(&spec).copied().unwrap_or(0);
            if st.checks_run <= before {
                continue;
            }
            data.unsampled += st.checks_run - before - 1;
            if let Some(l) = st.last_latency {
                let us = u32::try_from(l.as_micros()).unwrap_or(u32::MAX);
                match spec.kind {
                    CheckKind::Http { .. } => data.http.push(us),
                    _ => data.tcp.push(us),
                }
            }
            if st.last_ok == Some(false) {
                *data.failures.entry(st.last_reason.clone()).or_default() += 1;
            }
            seen.insert(spec, st.checks_run);
        }
    }
}

// ---------------------------------------------------------------------------
// CPU accounting

/// CPU time of one thread in nanoseconds: `schedstat`'s run time, or
/// `stat`'s utime+stime.
fn thread_cpu_ns(tid: &str) -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15 (1-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    checker: u64,
    servers: u64,
    sampler: u64,
    main: u64,
}

fn thread_cpus() -> Result<Cpu> {
    let mut cpu = Cpu::default();
    let mut found_checker = false;
    let me = std::process::id().to_string();
    let dir = std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let comm =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
        let ns = thread_cpu_ns(&tid).unwrap_or(0);
        match comm.trim() {
            "lvs-health" => {
                cpu.checker += ns;
                found_checker = true;
            }
            "scale-sampler" => cpu.sampler += ns,
            c if c.starts_with("scl-") => cpu.servers += ns,
            _ if tid == me => cpu.main += ns,
            _ => {}
        }
    }
    if found_checker {
        Ok(cpu)
    } else {
        Err("no lvs-health thread in /proc/self/task".to_string())
    }
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`.
fn system_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

struct Snapshot {
    at: Instant,
    checks_run: u64,
    failing: usize,
    cpu: Cpu,
    sys: (u64, u64),
}

impl Snapshot {
    fn take(health: &Health) -> Result<Snapshot> {
        let status = health.status();
        Ok(Snapshot {
            at: Instant::now(),
            checks_run: status.iter().map(|(_, s)| s.checks_run).sum(),
            failing: status
                .iter()
                .filter(|(_, s)| s.last_ok == Some(false))
                .count(),
            cpu: thread_cpus()?,
            sys: system_jiffies(),
        })
    }
}

/// Totals over the windows of one kind (with or without checks).
#[derive(Default)]
struct Phase {
    mpps: Vec<f64>,
    secs: f64,
    checks_run: u64,
    failing_at_end: usize,
    cpu: Cpu,
    sys_busy: u64,
    sys_total: u64,
}

impl Phase {
    fn add(&mut self, a: &Snapshot, b: &Snapshot, mpps: f64) {
        self.mpps.push(mpps);
        self.secs += (b.at - a.at).as_secs_f64();
        self.checks_run += b.checks_run.saturating_sub(a.checks_run);
        self.failing_at_end += b.failing;
        self.cpu.checker += b.cpu.checker.saturating_sub(a.cpu.checker);
        self.cpu.servers += b.cpu.servers.saturating_sub(a.cpu.servers);
        self.cpu.sampler += b.cpu.sampler.saturating_sub(a.cpu.sampler);
        self.cpu.main += b.cpu.main.saturating_sub(a.cpu.main);
        self.sys_busy += b.sys.0.saturating_sub(a.sys.0);
        self.sys_total += b.sys.1.saturating_sub(a.sys.1);
    }

    /// CPU seconds per second (share of one core).
    fn share(&self, ns: u64) -> f64 {
        ns as f64 / 1e9 / self.secs.max(1e-9)
    }

    /// Busy CPUs of the whole machine, on average.
    fn busy_cores(&self) -> f64 {
        cpus() as f64 * self.sys_busy as f64 / self.sys_total.max(1) as f64
    }
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------
// Packet path

const VIP: [u8; 4] = [198, 18, 0, 100];

/// A 64-byte-frame-sized TCP packet (IP 20 + TCP 20 + 6 payload), as in the
/// engine benchmarks.
fn tcp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> [u8; 46] {
    let mut v = [0u8; 46];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&46u16.to_be_bytes());
    v[8] = 64;
    v[9] = 6;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[32] = 5 << 4;
    v[33] = flags;
    let sum = checksum::pseudo_v4(src, dst, 6, 26);
    let c = !checksum::fold(checksum::add_bytes(sum, &v[20..]));
    v[36..38].copy_from_slice(&c.to_be_bytes());
    let hc = checksum::checksum(&v[..20]);
    v[10..12].copy_from_slice(&hc.to_be_bytes());
    v
}

/// Client number `i` as (address from 198.18.128.0 up, port 1024..17408).
fn client(i: u32) -> ([u8; 4], u16) {
    let host = 0xC612_8000 + (i >> 14);
    (host.to_be_bytes(), 1024 + (i & 0x3fff) as u16)
}

/// A wrr service on VIP:80 with 3 NAT servers and [`CONNS`] established
/// connections, and 64 Ki ACK packets of those connections in a scattered
/// order (`established` in `crates/lvs-core/benches/engine.rs`).
fn engine_with_flows() -> (Engine, Vec<[u8; 46]>) {
    let mut e = Engine::new(0x5eed);
    let key = ServiceKey {
        protocol: 6,
        addr: Ipv4Addr::from(VIP).into(),
        port: 80,
    };
    e.add_service(key, "wrr", 0).expect("service");
    for d in 0..3u8 {
        let cfg = DestConfig {
            tunnel: Default::default(),
            addr: Ipv4Addr::new(198, 18, 1, 11 + d).into(),
            port: 80,
            forward: Forward::Masq,
            weight: 1 + i32::from(d % 3),
            u_threshold: 0,
            l_threshold: 0,
        };
        e.add_dest(key, cfg).expect("dest");
    }
    e.reserve_connections(CONNS as usize);
    for i in 0..CONNS {
        let (a, p) = client(i);
        let mut syn = tcp_packet(a, p, VIP, 80, SYN);
        assert!(matches!(
            e.process_ipv4(0, &mut syn, false),
            Verdict::Forward { .. }
        ));
        let mut ack = tcp_packet(a, p, VIP, 80, ACK);
        e.process_ipv4(0, &mut ack, false);
    }
    let samples: Vec<[u8; 46]> = (0..65536u32)
        .map(|k| {
            let (a, p) = client(k.wrapping_mul(2_654_435_761) % CONNS);
            tcp_packet(a, p, VIP, 80, ACK)
        })
        .collect();
    let mut probe = samples[0];
    assert!(matches!(
        e.process_ipv4(1, &mut probe, false),
        Verdict::Forward { .. }
    ));
    (e, samples)
}

/// Established packets through `process_ipv4` for `d`; returns Mpps.
fn run_packets(e: &mut Engine, samples: &[[u8; 46]], d: Duration) -> Result<f64> {
    const CHUNK: u64 = 16 * 1024;
    let start = Instant::now();
    let mut n = 0u64;
    let mut at = 0usize;
    loop {
        for _ in 0..CHUNK {
            let mut pkt = samples[at & 0xffff];
            at = at.wrapping_add(1);
            black_box(e.process_ipv4(1, &mut pkt, false));
        }
        n += CHUNK;
        let elapsed = start.elapsed();
        if elapsed >= d {
            return Ok(n as f64 / elapsed.as_secs_f64() / 1e6);
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err("interrupted".to_string());
        }
    }
}

// ---------------------------------------------------------------------------
// Report

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted microseconds, as text.
fn pct(sorted: &[u32], p: f64) -> String {
    if sorted.is_empty() {
        return "-".to_string();
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    us(sorted[rank - 1])
}

fn us(v: u32) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", f64::from(v) / 1000.0)
    } else {
        format!("{v} µs")
    }
}

fn latency_line(name: &str, v: &mut [u32]) -> String {
    v.sort_unstable();
    format!(
        "{name}: p50 {}, p90 {}, p99 {}, max {} (n = {})",
        pct(v, 0.50),
        pct(v, 0.90),
        pct(v, 0.99),
        v.last().map_or("-".to_string(), |&m| us(m)),
        v.len()
    )
}

fn runs(v: &[f64]) -> String {
    v.iter()
        .map(|m| format!("{m:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(
    cfg: &Config,
    load_start: &str,
    load_end: &str,
    with: &Phase,
    without: &Phase,
    lat: &Latencies,
    transitions: &[lvs_health::Transition],
) -> String {
    let mut r = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let checks = 2 * u32::from(SERVER_NAMESPACES) * u32::from(PER_NAMESPACE);
    let servers = u32::from(SERVER_NAMESPACES) * u32::from(PER_NAMESPACE);
    let per_s = with.checks_run as f64 / with.secs.max(1e-9);
    let mut tcp = lat.tcp.clone();
    let mut http = lat.http.clone();
    let mut all: Vec<u32> = tcp.iter().chain(http.iter()).copied().collect();
    let sampled = all.len() as u64;
    let failures: u64 = lat.failures.values().sum();
    let (mw, mo) = (median(&with.mpps), median(&without.mpps));

    let _ = writeln!(
        r,
        "### lvs-health scale benchmark (`cargo run --release -p lvs-health --example scale`)"
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "- machine: {} CPUs, Linux {}; load average (1/5/15 min) {} at start, {} at end",
        cpus(),
        kernel.trim(),
        load_start,
        load_end
    );
    let _ = writeln!(
        r,
        "- {servers} real servers: {SERVER_NAMESPACES} namespaces × {PER_NAMESPACE} addresses, one TCP listener (:{TCP_PORT}) and one HTTP/1.1 server (:{HTTP_PORT}) per namespace; the checker in its own namespace, one veth to each"
    );
    let _ = writeln!(
        r,
        "- {checks} checks: {servers} tcpcheck + {servers} httpcheck, interval {} s, timeout {} ms, rise 1, fall 1",
        INTERVAL.as_secs(),
        TIMEOUT.as_millis()
    );
    let _ = writeln!(
        r,
        "- {} rounds of {} s with checks (A) then {} s without (B), alternating, nothing pinned",
        cfg.rounds, cfg.secs, cfg.secs
    );
    let _ = writeln!(
        r,
        "- checks run: {} in {:.1} s = {:.0}/s (expected {}/s); failed probes seen {}{}; checks failing at window ends {}; transitions {}",
        with.checks_run,
        with.secs,
        per_s,
        checks,
        failures,
        if lat.failures.is_empty() {
            String::new()
        } else {
            format!(" {:?}", lat.failures)
        },
        with.failing_at_end,
        transitions.len()
    );
    for t in transitions.iter().take(5) {
        let _ = writeln!(
            r,
            "  - transition: {} {:?} up={} ({})",
            t.spec.addr, t.spec.kind, t.up, t.reason
        );
    }
    let _ = writeln!(
        r,
        "- checker (`lvs-health` thread) CPU: {:.1} % of one core = {:.1} µs per check (idle, without checks: {:.2} %)",
        100.0 * with.share(with.cpu.checker),
        with.cpu.checker as f64 / 1e3 / (with.checks_run.max(1) as f64),
        100.0 * without.share(without.cpu.checker)
    );
    let _ = writeln!(
        r,
        "- harness CPU with checks (not part of a daemon): server threads {:.1} %, latency sampler {:.1} % of one core",
        100.0 * with.share(with.cpu.servers),
        100.0 * with.share(with.cpu.sampler)
    );
    let _ = writeln!(
        r,
        "- check latency (`Status::last_latency`, {} of {} probes sampled = {:.1} %):",
        sampled,
        sampled + lat.unsampled,
        100.0 * sampled as f64 / (sampled + lat.unsampled).max(1) as f64
    );
    let _ = writeln!(r, "  - {}", latency_line("tcpcheck", &mut tcp));
    let _ = writeln!(r, "  - {}", latency_line("httpcheck", &mut http));
    let _ = writeln!(r, "  - {}", latency_line("all", &mut all));
    let _ = writeln!(
        r,
        "- packet path (established NAT, {} entries, `Engine::process_ipv4` on the main thread, {} s runs):",
        CONNS, cfg.secs
    );
    let _ = writeln!(
        r,
        "  - with checks: median {mw:.2} Mpps (runs {}); main thread on CPU {:.1} %",
        runs(&with.mpps),
        100.0 * with.share(with.cpu.main)
    );
    let _ = writeln!(
        r,
        "  - without checks: median {mo:.2} Mpps (runs {}); main thread on CPU {:.1} %",
        runs(&without.mpps),
        100.0 * without.share(without.cpu.main)
    );
    let _ = writeln!(
        r,
        "  - with / without: {:.3} ({:+.1} %)",
        mw / mo,
        100.0 * (mw / mo - 1.0)
    );
    let _ = writeln!(
        r,
        "- whole machine busy (/proc/stat, all processes): {:.2} of {} CPUs with checks, {:.2} without",
        with.busy_cores(),
        cpus(),
        without.busy_cores()
    );
    r
}
