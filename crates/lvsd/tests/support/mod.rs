//! What the end-to-end tests share: the lab set-up under one lock, the real
//! `lvsd` started and stopped as a [`Director`] (and its exit report read
//! back), `lvsadm` and `curl` run against it, the bulk-transfer pattern,
//! and the Internet checksum for hand-made packets.
//!
//! Each test file is its own process and includes this module with
//! `mod support;`; not every file uses every helper.
#![allow(dead_code)]

use lvs_lab::{Lab, VIP};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Namespace tests run one at a time (two cores; clearer failures). One
/// lock per test process, as each test file is its own process.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests need root (network namespaces, AF_PACKET, raw sockets); run scripts/test.sh as root"
    );
}

/// Takes the namespace-test lock, checks for root, removes what a crashed
/// run left with this prefix and builds a NAT lab with `servers` real
/// servers. Hold the guard for the whole test.
pub fn nat_lab(prefix: &str, servers: usize) -> (MutexGuard<'static, ()>, Lab) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let _ = Lab::cleanup_stale(prefix);
    let lab = Lab::nat(prefix, servers).expect("build lab");
    (guard, lab)
}

pub fn lvsd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lvsd"))
}

/// A binary built next to `lvsd` (same target directory).
pub fn sibling(name: &str) -> PathBuf {
    let p = lvsd().with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build -p lvsd -p lvsadm -p lvs-lab --bins)",
        p.display()
    );
    p
}

/// Runs `lvsadm ARGS` against the control socket `sock`: (exit code,
/// stdout, stderr).
pub fn lvsadm(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sibling("lvsadm"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .expect("run lvsadm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lvsadm ARGS` with `input` on its standard input: (exit code, stdout,
/// stderr).
pub fn lvsadm_input(sock: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(sibling("lvsadm"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lvsadm");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = input.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for lvsadm");
    let _ = feeder.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lvsadm ARGS`, asserting success; its stdout.
pub fn lvsadm_ok(sock: &Path, args: &[&str]) -> String {
    let (code, out, err) = lvsadm(sock, args);
    assert_eq!(code, 0, "lvsadm {args:?}: {err}");
    out
}

/// The value of counter `name` in `lvsadm --counters` output `text`
/// (exact name match); panics, quoting the output, if it is not there.
pub fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

pub fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("lvsd did not open {} within 10 s", path.display());
}

/// `LVSD_TEST_FASTPATH=xdp` or `tc` (the later passes of
/// `scripts/test.sh`): every director the tests start runs with that fast
/// path, which carries each connection from its first established packet
/// on; the tests are the same and must pass the same.
pub fn fastpath_everywhere() -> Option<&'static str> {
    match std::env::var("LVSD_TEST_FASTPATH").as_deref() {
        Ok("xdp") => Some("xdp"),
        Ok("tc") => Some("tc"),
        _ => None,
    }
}

/// Transmit checksum offload off on every veth of the lab. Packets from a
/// NIC arrive with complete checksums; a local stack's (veth) leave them
/// to be computed, and the fast path leaves those to lvsd, so that in a
/// lab with offload on it would carry nothing.
pub fn hosts_send_complete_checksums(lab: &Lab) {
    for ns in lab.namespaces() {
        let out = lab
            .exec(
                &ns,
                "ip",
                &["-o", "link", "show", "type", "veth"],
                Duration::from_secs(5),
            )
            .expect("ip link show");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `7: c0@if6: <…` → c0
            let Some(name) = line.split(':').nth(1) else {
                continue;
            };
            let dev = name.trim().split('@').next().unwrap_or_default();
            let out = lab
                .exec(
                    &ns,
                    "ethtool",
                    &["-K", dev, "tx", "off"],
                    Duration::from_secs(5),
                )
                .expect("ethtool (package ethtool) must be installed");
            assert!(out.status.success(), "ethtool -K {dev} tx off in {ns}");
        }
    }
}

/// A running director inside the lab; stopped (SIGTERM) by `stop` or on drop
/// of the lab.
pub struct Director {
    pub pid: u32,
    pub sock: PathBuf,
    conf: PathBuf,
    log: PathBuf,
}

impl Director {
    /// Writes `config`, starts lvsd on it in the director namespace (its
    /// stderr into a log file) and waits for its control socket. `tag`
    /// names the temporary files.
    pub fn start(lab: &Lab, tag: &str, config: &str) -> Director {
        Director::start_in(lab, lab.director_ns(), tag, config)
    }

    /// `start`, with more of lvsd's options.
    pub fn start_with(lab: &Lab, tag: &str, config: &str, args: &[&str]) -> Director {
        Director::start_in_with(lab, lab.director_ns(), tag, config, args)
    }

    /// `start`, in namespace `ns` of the lab (e.g. its peer).
    pub fn start_in(lab: &Lab, ns: &str, tag: &str, config: &str) -> Director {
        Director::start_in_with(lab, ns, tag, config, &[])
    }

    /// `start` for a test of what the hosts' offloads make (GSO
    /// super-packets, checksums left to be computed): in the XDP pass
    /// (`fastpath_everywhere`) their offloads stay on, so XDP is attached
    /// but leaves those packets to lvsd.
    pub fn start_keeping_offloads(lab: &Lab, tag: &str, config: &str) -> Director {
        Director::start_full(lab, lab.director_ns(), tag, config, &[], true)
    }

    fn start_in_with(lab: &Lab, ns: &str, tag: &str, config: &str, args: &[&str]) -> Director {
        Director::start_full(lab, ns, tag, config, args, false)
    }

    fn start_full(
        lab: &Lab,
        ns: &str,
        tag: &str,
        config: &str,
        args: &[&str],
        keep_offloads: bool,
    ) -> Director {
        let dir = std::env::temp_dir();
        let base = format!("lvsd-e2e-{tag}-{}", std::process::id());
        let conf = dir.join(format!("{base}.conf"));
        let sock = dir.join(format!("{base}.sock"));
        let log = dir.join(format!("{base}.log"));
        std::fs::write(&conf, config).unwrap();
        let mut cmd = lab.command(ns, &lvsd().to_string_lossy());
        cmd.arg("--config").arg(&conf).arg("--control").arg(&sock);
        cmd.args(args);
        if let Some(hook) = fastpath_everywhere().filter(|_| !args.contains(&"--fastpath")) {
            // XDP leaves packets whose checksum is still to be computed to
            // lvsd; TC carries them.
            if hook == "xdp" && !keep_offloads {
                hosts_send_complete_checksums(lab);
            }
            cmd.args(["--fastpath", hook, "--fastpath-after", "1"]);
        }
        cmd.stderr(std::fs::File::create(&log).expect("lvsd log file"));
        let pid = lab.spawn(ns, cmd).expect("start lvsd");
        wait_for_socket(&sock);
        Director {
            pid,
            sock,
            conf,
            log,
        }
    }

    /// Replaces the configuration file (for a reload).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.conf, config).expect("write the configuration");
    }

    /// The configuration file's path.
    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// What lvsd has written on stderr so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash): waits for the process, removes its files (its
    /// control socket is left behind by the crash). Returns its log.
    pub fn kill(self, lab: &Lab) -> String {
        // SAFETY: kill(2) on the pid of a process this test started.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let t0 = Instant::now();
        while lab.try_wait(self.pid).ok().flatten().is_none()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        for f in [&self.log, &self.conf, &self.sock] {
            let _ = std::fs::remove_file(f);
        }
        log
    }

    /// SIGTERM; asserts a clean exit and that the control socket is gone.
    /// Returns what lvsd wrote on stderr (also echoed to the test output).
    pub fn stop(self, lab: &Lab) -> String {
        let status = lab.stop(self.pid).expect("stop lvsd");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        eprint!("{log}");
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.conf);
        assert!(
            status.success(),
            "lvsd did not exit cleanly on SIGTERM: {status:?}\n{log}"
        );
        assert!(!self.sock.exists(), "control socket left behind");
        log
    }
}

/// The number printed just before `what` in lvsd's exit report, which
/// starts at the `lvsd: stopping` line (`… 12 GSO; …`) and goes on with the
/// engine's counters (`lvsd: sent 12 masq, 0 route, … 3 frag-needed, …`):
/// the first line from there that contains `what`.
pub fn reported(log: &str, what: &str) -> u64 {
    let start = log
        .find("stopping (rx")
        .unwrap_or_else(|| panic!("no exit report in {log}"));
    let line = log[start..]
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` in the exit report {}", &log[start..]));
    let end = line
        .find(what)
        .unwrap_or_else(|| panic!("no `{what}` in {line}"));
    line[..end]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{what}` in {line}"))
}

/// Packets lvsd's exit report says the kernel fast path carried (0
/// without a fast path).
pub fn carried(log: &str) -> u64 {
    if !log.contains(" packets carried in the kernel") {
        return 0;
    }
    reported(log, " packets carried in the kernel")
}

pub fn curl(lab: &Lab, url: &str) -> Result<String, String> {
    curl_args(lab, url, &[])
}

/// `curl -s -S -m 5 EXTRA URL` from the client namespace: the body.
pub fn curl_args(lab: &Lab, url: &str, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["-s", "-S", "-m", "5"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = lab
        .exec(lab.client_ns(), "curl", &args, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "curl {}: {:?} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip ARGS` in `ns`, asserting success; its stdout.
pub fn ip(lab: &Lab, ns: &str, args: &[&str]) -> String {
    let out = lab
        .exec(ns, "ip", args, Duration::from_secs(10))
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes of the bulk-transfer pattern at offset `i`.
pub fn pattern(i: usize) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

/// Reads everything from `r`, checking it against the pattern; returns the count.
pub fn read_pattern(r: &mut impl Read) -> Result<usize, String> {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0usize;
    loop {
        let k = r
            .read(&mut buf)
            .map_err(|e| format!("read after {n} bytes: {e}"))?;
        if k == 0 {
            return Ok(n);
        }
        for (j, b) in buf[..k].iter().enumerate() {
            if *b != pattern(n + j) {
                return Err(format!("corrupt byte at offset {}", n + j));
            }
        }
        n += k;
    }
}

pub fn write_pattern(w: &mut impl Write, len: usize) -> Result<(), String> {
    let chunk: Vec<u8> = (0..len).map(pattern).collect();
    w.write_all(&chunk).map_err(|e| e.to_string())
}

/// A bulk transfer through VIP:9000 (lvsd already running) to port 9000 of
/// real server 1: `len` bytes of the pattern up, then `len` bytes back
/// down, every read and write bounded by `io_timeout`. Returns what each
/// side read (checked against the pattern: the server's, then the
/// client's) and how long the two took.
pub fn bulk_both_ways(
    lab: &Lab,
    len: usize,
    io_timeout: Duration,
) -> (Result<usize, String>, Result<usize, String>, Duration) {
    let t0 = Instant::now();
    let server = bulk_server(lab.server_ns(1), 9000, len, io_timeout);
    let down = lab
        .run_in(lab.client_ns(), move || {
            bulk_client(SocketAddrV4::new(VIP, 9000), len, io_timeout)
        })
        .expect("client thread");
    let up = server.join().expect("server thread");
    (up, down, t0.elapsed())
}

/// The server half: accepts one connection on `port` in namespace `ns`
/// (within 20 s), reads the pattern to the end, answers with `len` bytes
/// of it and closes. Returns once it listens; the thread's result is the
/// number of bytes it read.
fn bulk_server(
    ns: &str,
    port: u16,
    len: usize,
    io_timeout: Duration,
) -> JoinHandle<Result<usize, String>> {
    let ns = ns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || -> Result<usize, String> {
        lvs_lab::enter_netns(&ns).map_err(|e| e.to_string())?;
        let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("no connection: {e}")),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        let got = read_pattern(&mut s)?;
        write_pattern(&mut s, len)?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok(got)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("bulk server ready");
    server
}

/// The client half, in the calling thread's namespace: connects to `to`,
/// sends `len` bytes of the pattern, closes its sending side and reads the
/// answer to the end. Returns the number of bytes read.
fn bulk_client(to: SocketAddrV4, len: usize, io_timeout: Duration) -> Result<usize, String> {
    let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(io_timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(io_timeout))
        .map_err(|e| e.to_string())?;
    write_pattern(&mut s, len)?;
    s.flush().map_err(|e| e.to_string())?;
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    read_pattern(&mut s)
}

/// Internet checksum of `data` with an initial (unfolded) sum; the
/// checksum field gets its complement, and a correct packet sums to 0xffff.
pub fn inet_sum(mut acc: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The unfolded sum of the TCP pseudo-header for a segment of `len` bytes.
pub fn tcp_pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u32 {
    let mut acc = 6 + len as u32;
    for a in [src, dst] {
        let o = a.octets();
        acc += u32::from(u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([o[2], o[3]]));
    }
    acc
}

/// Seconds of the first timestamp in the captures the tests write.
pub const PCAP_EPOCH: u32 = 1_700_000_000;

/// A classic pcap (microsecond timestamps) of `frames` with `linktype`,
/// frame k at `k × step_us` after `PCAP_EPOCH`.
pub fn pcap(frames: &[Vec<u8>], linktype: u32, step_us: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    for (k, f) in frames.iter().enumerate() {
        let us = step_us * k as u64;
        v.extend_from_slice(&(PCAP_EPOCH + (us / 1_000_000) as u32).to_le_bytes());
        v.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}

/// The records of a pcap `lvsd replay` wrote (raw IP): (microseconds
/// after `PCAP_EPOCH`, bytes).
pub fn pcap_records(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    assert_eq!(&bytes[20..24], &101u32.to_le_bytes(), "LINKTYPE_RAW");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let rd = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let us = u64::from(rd(off) - PCAP_EPOCH) * 1_000_000 + u64::from(rd(off + 4));
        let n = rd(off + 8) as usize;
        out.push((us, bytes[off + 16..off + 16 + n].to_vec()));
        off += 16 + n;
    }
    out
}

/// The elements of set NAME of lvsd's nftables table, in the director's
/// namespace.
pub fn nft_set(lab: &Lab, name: &str) -> Vec<String> {
    let out = lab
        .exec(
            lab.director_ns(),
            "nft",
            &["list", "set", "netdev", "lvsd", name],
            Duration::from_secs(5),
        )
        .expect("run nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((_, list)) = text.split_once("elements = {") else {
        return Vec::new();
    };
    list.split('}')
        .next()
        .unwrap_or("")
        .split(',')
        .map(|e| e.trim().to_string())
        .collect()
}

/// `lvs-decap` running in a real server's namespace.
pub struct Decap {
    pid: u32,
    stats: PathBuf,
    log: PathBuf,
}

impl Decap {
    /// Starts it on real server `i` for tunnel packets to `rip` from
    /// `from`, read on the link `dev` (needed for IPv6), and waits until it
    /// is ready.
    pub fn start(
        lab: &Lab,
        i: usize,
        tag: &str,
        rip: std::net::IpAddr,
        from: std::net::IpAddr,
        dev: Option<&str>,
    ) -> Decap {
        let dir = std::env::temp_dir();
        let base = format!("lvs-decap-{tag}-{}-rs{i}", std::process::id());
        let stats = dir.join(format!("{base}.stats"));
        let log = dir.join(format!("{base}.log"));
        let _ = std::fs::remove_file(&stats);
        let mut cmd = Command::new(sibling("lvs-decap"));
        cmd.args(["--addr", &rip.to_string(), "--from", &from.to_string()]);
        if let Some(dev) = dev {
            cmd.args(["--dev", dev]);
        }
        cmd.args([
            "--gue-port",
            "6080",
            "--tun",
            "lvdecap0",
            "--max-seconds",
            "120",
            "--stats",
        ])
        .arg(&stats);
        // One open file for both streams, so neither overwrites the other.
        let out = std::fs::File::create(&log).expect("decap log");
        cmd.stderr(out.try_clone().expect("decap log")).stdout(out);
        let pid = lab.spawn(lab.server_ns(i), cmd).expect("start lvs-decap");
        let d = Decap { pid, stats, log };
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.counters().get("ready").map(String::as_str) != Some("1") {
            if let Ok(Some(status)) = lab.try_wait(pid) {
                panic!(
                    "lvs-decap on rs{i} exited: {status:?}: {}",
                    std::fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "lvs-decap on rs{i} not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn counters(&self) -> std::collections::HashMap<String, String> {
        std::fs::read_to_string(&self.stats)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// SIGTERM; asserts a clean exit; returns the final counters.
    pub fn stop(self, lab: &Lab) -> std::collections::HashMap<String, u64> {
        let status = lab.stop(self.pid).expect("stop lvs-decap");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "lvs-decap: {status:?}\n{log}");
        let c: std::collections::HashMap<String, u64> = self
            .counters()
            .into_iter()
            .filter_map(|(k, v)| v.parse().ok().map(|n| (k, n)))
            .collect();
        assert_eq!(c.get("violations"), Some(&0), "{log}");
        let _ = std::fs::remove_file(&self.stats);
        let _ = std::fs::remove_file(&self.log);
        c
    }
}
