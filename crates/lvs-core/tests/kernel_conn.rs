//! Differential test of connection tracking: replays scenarios recorded from
//! a real Linux 6.18 IPVS kernel (tests/vectors/kernel-6.18/conn/*.json,
//! format `lvs-oracle-conn/1`, made by tools/oracle-conn/record.sh) through
//! `lvs_core::Engine` with a virtual clock that follows the recorded guest
//! times, and compares after every step:
//!
//! * the entries of `ipvsadm -Lcn` (protocol, state, client, virtual,
//!   destination; templates included) as a multiset, and each entry's
//!   remaining time: the kernel prints whole seconds, truncated, so ours must
//!   lie within ±2 s of the kernel's interval [shown, shown + 1);
//! * per destination Weight, PersistConn, ActiveConn and InActConn
//!   (`-L -n --persistent-conn`) exactly, and Conns (`--stats --exact`),
//!   which the kernel lists from its 2-second estimator snapshot: the
//!   kernel's value must be one our live counter had during the 3 s up to
//!   the snapshot;
//! * what became of every packet: forwarded (to which real server and port,
//!   or rewritten back from which VIP:port, with valid checksums), dropped,
//!   answered with ICMP port unreachable (no destination), or passed to the
//!   host's own stack;
//! * the return code of every ipvsadm and sysctl step, and the sysctl value
//!   read back.
//!
//! DR destinations: the engine accepts them but does not transmit yet, so a
//! packet the kernel sent on by direct routing may come back as
//! `Drop(UnsupportedForward)`; their entries are compared as for NAT.
//!
//! `LVS_KERNEL_VECTORS_CONN=DIR` replays another directory (e.g. a fresh
//! record.sh output). The test fails when no vector is found and on any
//! mismatch, naming scenario, step, expected and got.

use lvs_core::{DestConfig, DropReason, Engine, Forward, ServiceKey, ServiceOptions, Verdict};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// Virtual time (ms) of a scenario's t = 0.
const BASE_MS: u64 = 1_000_000;
/// `handle_timeout` is called at least this often between steps (ms).
const TICK_MS: u64 = 50;
/// Allowed difference between our remaining time and the kernel's (s).
const EXPIRE_TOLERANCE_S: f64 = 2.0;
/// How old the kernel's estimator snapshot of Conns may be (ms).
const CONNS_WINDOW_MS: u64 = 3_000;
/// Mismatches listed per scenario (the first is what matters; later ones
/// are often consequences).
const MAX_LISTED: usize = 12;
/// Free memory of the recording guest in pages, roughly (no defense is
/// triggered by memory there).
const GUEST_AVAILABLE_PAGES: u64 = 100_000;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("LVS_KERNEL_VECTORS_CONN") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/kernel-6.18/conn"),
    }
}

// ----- packets: the bytes tools/oracle-conn/craft.py sent -------------------

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// The Internet checksum over `data`, starting from a partial sum.
fn inet_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src);
    p[4..8].copy_from_slice(&dst);
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    inet_sum(0, &p)
}

/// CRC32c (Castagnoli, reflected), as SCTP uses it.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The SCTP chunks craft.py knows: name → (type, value).
fn sctp_chunk(name: &str) -> Option<(u8, Vec<u8>)> {
    // INIT / INIT_ACK: initiate tag, a_rwnd, outbound / inbound streams, initial TSN
    let init = || {
        let mut v = 0x1122_3344u32.to_be_bytes().to_vec();
        v.extend_from_slice(&65536u32.to_be_bytes());
        v.extend_from_slice(&[0, 1, 0, 1]);
        v.extend_from_slice(&1000u32.to_be_bytes());
        v
    };
    Some(match name {
        "data" => {
            let mut v = 1000u32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(b"DATA");
            (0, v)
        }
        "init" => (1, init()),
        "init-ack" => (2, init()),
        "sack" => {
            let mut v = 1000u32.to_be_bytes().to_vec();
            v.extend_from_slice(&65536u32.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
            (3, v)
        }
        "heartbeat" => (4, [&[0, 1, 0, 8][..], b"HBHB"].concat()),
        "abort" => (6, vec![]),
        "shutdown" => (7, 1000u32.to_be_bytes().to_vec()),
        "shutdown-ack" => (8, vec![]),
        "error" => (9, vec![]),
        "cookie-echo" => (10, b"COOK".to_vec()),
        "cookie-ack" => (11, vec![]),
        "shutdown-complete" => (14, vec![]),
        _ => return None,
    })
}

/// One recorded segment (`S`, `PA+20`, `udp+10`, `sctp-init`) as IPv4 bytes,
/// byte for byte what craft.py sent (IP id included).
fn build_packet(seg: &str, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ip_id: u16) -> Vec<u8> {
    let (kind, n) = match seg.split_once('+') {
        Some((k, n)) => (k, n.parse::<usize>().expect("payload length")),
        None => (seg, 0),
    };
    let payload: Vec<u8> = (0..n).map(|k| b'A' + (k % 26) as u8).collect();
    let (s, d) = (src.0.octets(), dst.0.octets());
    let (proto, mut l4) = if let Some(name) = kind.strip_prefix("sctp-") {
        let (ctype, val) =
            sctp_chunk(name).unwrap_or_else(|| panic!("unknown SCTP chunk {name:?}"));
        let mut l4 = Vec::new();
        l4.extend_from_slice(&src.1.to_be_bytes());
        l4.extend_from_slice(&dst.1.to_be_bytes());
        let vtag: u32 = if ctype == 1 { 0 } else { 0x5566_7788 };
        l4.extend_from_slice(&vtag.to_be_bytes());
        l4.extend_from_slice(&[0; 4]);
        l4.extend_from_slice(&[ctype, 0]);
        l4.extend_from_slice(&((4 + val.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&val);
        while l4.len() % 4 != 0 {
            l4.push(0);
        }
        let c = crc32c(&l4);
        l4[8..12].copy_from_slice(&c.to_le_bytes());
        (SCTP, l4)
    } else if kind == "udp" {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&src.1.to_be_bytes());
        l4.extend_from_slice(&dst.1.to_be_bytes());
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&payload);
        let mut c = !fold(inet_sum(pseudo(s, d, UDP, l4.len()), &l4));
        if c == 0 {
            c = 0xffff;
        }
        l4[6..8].copy_from_slice(&c.to_be_bytes());
        (UDP, l4)
    } else {
        let mut flags = 0u8;
        for ch in kind.chars() {
            flags |= match ch {
                'F' => 0x01,
                'S' => 0x02,
                'R' => 0x04,
                'P' => 0x08,
                'A' => 0x10,
                'U' => 0x20,
                _ => panic!("bad TCP segment {seg:?}"),
            };
        }
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&src.1.to_be_bytes());
        l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
        l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
        if flags & 0x10 != 0 {
            l4[8..12].copy_from_slice(&5000u32.to_be_bytes());
        }
        l4[12] = 5 << 4;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
        l4.extend_from_slice(&payload);
        let c = !fold(inet_sum(pseudo(s, d, TCP, l4.len()), &l4));
        l4[16..18].copy_from_slice(&c.to_be_bytes());
        (TCP, l4)
    };
    let total = 20 + l4.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&s);
    ip[16..20].copy_from_slice(&d);
    let c = !fold(inet_sum(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.append(&mut l4);
    ip
}

/// (src, sport, dst, dport) of an IPv4 TCP/UDP/SCTP packet.
fn endpoints(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ihl = usize::from(p[0] & 15) * 4;
    (
        Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        u16::from_be_bytes([p[ihl], p[ihl + 1]]),
        Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]),
    )
}

/// Whether the IP header checksum and the L4 checksum of `p` verify.
fn checksums_ok(p: &[u8]) -> Result<(), String> {
    let ihl = usize::from(p[0] & 15) * 4;
    if fold(inet_sum(0, &p[..ihl])) != 0xffff {
        return Err("IPv4 header checksum".into());
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let l4 = &p[ihl..total];
    let (s, d) = ([p[12], p[13], p[14], p[15]], [p[16], p[17], p[18], p[19]]);
    match p[9] {
        TCP | UDP => {
            if p[9] == UDP && l4[6..8] == [0, 0] {
                return Ok(());
            }
            if fold(inet_sum(pseudo(s, d, p[9], l4.len()), l4)) != 0xffff {
                return Err(format!(
                    "{} checksum",
                    if p[9] == TCP { "TCP" } else { "UDP" }
                ));
            }
        }
        SCTP => {
            let mut c = l4.to_vec();
            let got = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
            c[8..12].fill(0);
            if crc32c(&c) != got {
                return Err("SCTP CRC32c".into());
            }
        }
        _ => {}
    }
    Ok(())
}

// ----- vectors ---------------------------------------------------------------

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string {k:?} in {v}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("missing number {k:?} in {v}"))
}

fn i(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("missing integer {k:?} in {v}"))
}

fn ipv4(x: &str) -> Ipv4Addr {
    x.parse()
        .unwrap_or_else(|_| panic!("bad IPv4 address {x:?}"))
}

fn addr_port(x: &str) -> (Ipv4Addr, u16) {
    let (a, p) = x
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("bad ADDR:PORT {x:?}"));
    (
        ipv4(a),
        p.parse().unwrap_or_else(|_| panic!("bad port in {x:?}")),
    )
}

fn ms(t: f64) -> u64 {
    BASE_MS + (t * 1000.0).round().max(0.0) as u64
}

fn proto_name(p: u8) -> &'static str {
    match p {
        TCP => "TCP",
        UDP => "UDP",
        SCTP => "SCTP",
        _ => "IP",
    }
}

// ----- ipvsadm, the subset the scenarios use ---------------------------------

enum Command {
    AddService(ServiceKey, String, ServiceOptions),
    EditService(ServiceKey, String, ServiceOptions),
    AddDest(ServiceKey, DestConfig),
    EditDest(ServiceKey, DestConfig),
    DeleteDest(ServiceKey, Ipv4Addr, u16),
    SetTimeouts(u32, u32, u32),
}

fn parse_mask(m: &str) -> u32 {
    u32::from(ipv4(m))
}

/// Parses the ipvsadm arguments of a step; omitted options take ipvsadm's
/// defaults (weight 1, rr, `-p` alone = 360 s, `-M` 255.255.255.255, a real
/// server without a port gets the service's port).
fn parse_ipvsadm(args: &str) -> Command {
    let t: Vec<&str> = args.split_whitespace().collect();
    if t.first() == Some(&"--set") {
        let n = |k: usize| -> u32 {
            t.get(k)
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("bad --set in {args:?}"))
        };
        return Command::SetTimeouts(n(1), n(2), n(3));
    }
    let cmd = t[0];
    let mut svc: Option<(u8, Ipv4Addr, u16)> = None;
    let mut sched = "wlc".to_string();
    let mut opts = ServiceOptions::default();
    let mut rs: Option<(Ipv4Addr, Option<u16>)> = None;
    let mut fwd = Forward::Route; // ipvsadm's default method is -g
    let mut weight: Option<i32> = None;
    let (mut u, mut l) = (0u32, 0u32);
    let mut k = 1;
    let arg = |k: usize| -> &str {
        t.get(k)
            .copied()
            .unwrap_or_else(|| panic!("option without value in {args:?}"))
    };
    while k < t.len() {
        match t[k] {
            "-t" | "-u" | "--sctp-service" => {
                let p = match t[k] {
                    "-t" => TCP,
                    "-u" => UDP,
                    _ => SCTP,
                };
                let (a, port) = addr_port(arg(k + 1));
                svc = Some((p, a, port));
                k += 1;
            }
            "-s" => {
                sched = arg(k + 1).to_string();
                k += 1;
            }
            "-p" => {
                // an optional value
                match t.get(k + 1).and_then(|x| x.parse::<u32>().ok()) {
                    Some(v) => {
                        opts.persistent = Some(v);
                        k += 1;
                    }
                    None => opts.persistent = Some(360),
                }
            }
            "-M" => {
                opts.netmask = parse_mask(arg(k + 1));
                k += 1;
            }
            "-o" => opts.one_packet = true,
            "-r" => {
                let x = arg(k + 1);
                rs = Some(match x.rsplit_once(':') {
                    Some((a, p)) => (ipv4(a), Some(p.parse().unwrap())),
                    None => (ipv4(x), None),
                });
                k += 1;
            }
            "-m" => fwd = Forward::Masq,
            "-g" => fwd = Forward::Route,
            "-i" => fwd = Forward::Tunnel,
            "-w" => {
                weight = Some(arg(k + 1).parse().unwrap());
                k += 1;
            }
            "-x" => {
                u = arg(k + 1).parse().unwrap();
                k += 1;
            }
            "-y" => {
                l = arg(k + 1).parse().unwrap();
                k += 1;
            }
            other => panic!("ipvsadm option {other:?} not supported by this test (in {args:?})"),
        }
        k += 1;
    }
    let (proto, vip, vport) = svc.unwrap_or_else(|| panic!("no service in {args:?}"));
    let key = ServiceKey {
        protocol: proto,
        addr: IpAddr::V4(vip),
        port: vport,
    };
    let dest = |weight: i32| {
        let (a, p) = rs.unwrap_or_else(|| panic!("no -r in {args:?}"));
        DestConfig {
            addr: IpAddr::V4(a),
            port: p.unwrap_or(vport),
            forward: fwd,
            weight,
            u_threshold: u,
            l_threshold: l,
        }
    };
    match cmd {
        "-A" => Command::AddService(key, sched, opts),
        "-E" => Command::EditService(key, sched, opts),
        "-a" => Command::AddDest(key, dest(weight.unwrap_or(1))),
        "-e" => Command::EditDest(
            key,
            dest(weight.unwrap_or_else(|| panic!("-e without -w is not supported here: {args:?}"))),
        ),
        "-d" => {
            let (a, p) = rs.unwrap_or_else(|| panic!("no -r in {args:?}"));
            Command::DeleteDest(key, a, p.unwrap_or(vport))
        }
        other => panic!("ipvsadm command {other:?} not supported by this test"),
    }
}

// ----- replay ---------------------------------------------------------------

/// An entry as ipvsadm lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EntryKey {
    protocol: String,
    state: String,
    client: String,
    virt: String,
    dest: String,
}

impl std::fmt::Display for EntryKey {
    fn fmt(&self, fm: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            fm,
            "{:4} {:11} {:21} {:21} {}",
            self.protocol, self.state, self.client, self.virt, self.dest
        )
    }
}

struct Replay<'a> {
    name: &'a str,
    e: Engine,
    now: u64,
    /// Services created, by the kernel's listing name ("TCP 198.18.100.10:80").
    services: BTreeMap<String, ServiceKey>,
    /// Live Conns per (service, "addr:port"): (time, value) after every change.
    conns_hist: BTreeMap<(String, String), Vec<(u64, u64)>>,
    mismatches: Vec<String>,
}

impl<'a> Replay<'a> {
    fn advance(&mut self, to: u64) {
        while self.now + TICK_MS < to {
            self.now += TICK_MS;
            self.e.handle_timeout(self.now);
        }
        if to > self.now {
            self.now = to;
        }
        self.e.handle_timeout(self.now);
    }

    fn bad(&mut self, step: &Value, what: String) {
        self.mismatches.push(format!(
            "step {} `{}` (t={:.3}s): {what}",
            i(step, "index"),
            s(step, "line"),
            f(step, "t")
        ));
    }

    fn record_conns(&mut self) {
        let now = self.now;
        for (name, key) in &self.services {
            if let Some((_, dests)) = self.e.service(key) {
                for d in dests {
                    let h = self
                        .conns_hist
                        .entry((name.clone(), format!("{}:{}", d.addr, d.port)))
                        .or_default();
                    if h.last().map(|x| x.1) != Some(d.stats.conns) {
                        h.push((now, d.stats.conns));
                    }
                }
            }
        }
    }

    fn command(&mut self, step: &Value) {
        let rc = i(step, "rc");
        let args = s(step, "args");
        let cmd = parse_ipvsadm(args);
        let r = match cmd {
            Command::AddService(key, sched, opts) => {
                let r = self.e.add_service_with(key, &sched, 0, opts);
                if r.is_ok() {
                    let IpAddr::V4(a) = key.addr else {
                        unreachable!()
                    };
                    self.services.insert(
                        format!("{} {}:{}", proto_name(key.protocol), a, key.port),
                        key,
                    );
                }
                r
            }
            Command::EditService(key, sched, opts) => {
                self.e.edit_service_with(key, &sched, 0, opts)
            }
            Command::AddDest(key, d) => self.e.add_dest(key, d),
            Command::EditDest(key, d) => self.e.edit_dest(key, d),
            Command::DeleteDest(key, a, p) => self.e.delete_dest(key, IpAddr::V4(a), p),
            Command::SetTimeouts(t, fin, u) => {
                self.e.set_timeouts(t, fin, u);
                Ok(())
            }
        };
        match (rc == 0, r) {
            (true, Ok(())) | (false, Err(_)) => {}
            (true, Err(err)) => {
                self.bad(step, format!("kernel accepted it, engine refused: {err:?}"))
            }
            (false, Ok(())) => self.bad(
                step,
                format!(
                    "kernel refused it (rc {rc}: {:?}), engine accepted it",
                    s(step, "output")
                ),
            ),
        }
    }

    fn sysctl(&mut self, step: &Value) {
        let (name, value) = (s(step, "name"), s(step, "value"));
        let rc = i(step, "rc");
        let r = self.e.set_sysctl(name, value);
        match (rc == 0, &r) {
            (true, Ok(())) | (false, Err(_)) => {}
            (true, Err(err)) => {
                self.bad(step, format!("kernel accepted it, engine refused: {err:?}"));
                return;
            }
            (false, Ok(())) => self.bad(
                step,
                format!("kernel refused it (rc {rc}), engine accepted it"),
            ),
        }
        if let Some(rb) = step["readback"].as_str() {
            match self.e.sysctl(name) {
                Ok(v) if v.trim() == rb.trim() => {}
                other => self.bad(step, format!("read back: kernel {rb:?}, engine {other:?}")),
            }
        }
    }

    fn packet(&mut self, step: &Value) {
        let (src, dst) = (addr_port(s(step, "src")), addr_port(s(step, "dst")));
        let ip_id = i(step, "ip_id") as u16;
        let mut pkt = build_packet(s(step, "seg"), src, dst, ip_id);
        let got = self.e.process_ipv4(self.now, &mut pkt, false);
        let o = &step["outcome"];
        let verdict = s(o, "verdict");
        let from_client = s(step, "from") == "client";
        let show_got = |pkt: &[u8]| -> String {
            match got {
                Verdict::Forward { .. } => {
                    let (a, ap, b, bp) = endpoints(pkt);
                    format!("Forward (rewritten {a}:{ap} > {b}:{bp})")
                }
                other => format!("{other:?}"),
            }
        };
        let problem: Option<String> = match verdict {
            "forward" if o["method"].as_str() == Some("route") => match got {
                Verdict::Drop(DropReason::UnsupportedForward) => None,
                Verdict::Forward { .. } => {
                    let (_, _, b, bp) = endpoints(&pkt);
                    (format!("{b}:{bp}") != s(o, "to")).then(|| {
                        format!(
                            "kernel sent it on by DR to {}, engine: {}",
                            s(o, "to"),
                            show_got(&pkt)
                        )
                    })
                }
                _ => Some(format!(
                    "kernel sent it on by DR (VIP {}), engine: {}",
                    s(o, "to"),
                    show_got(&pkt)
                )),
            },
            "forward" => {
                let (a, ap, b, bp) = endpoints(&pkt);
                let want = if from_client {
                    format!("{} > {}", s(step, "src"), s(o, "to"))
                } else {
                    format!("{} > {}", s(o, "from"), s(o, "to"))
                };
                match got {
                    Verdict::Forward { to: IpAddr::V4(t) }
                        if format!("{a}:{ap} > {b}:{bp}") == want && t == b =>
                    {
                        checksums_ok(&pkt)
                            .err()
                            .map(|e| format!("forwarded as the kernel did, but with a bad {e}"))
                    }
                    _ => Some(format!(
                        "kernel forwarded it as {want}, engine: {}",
                        show_got(&pkt)
                    )),
                }
            }
            "icmp" => (got != Verdict::Unreachable).then(|| {
                format!(
                    "kernel answered ICMP {:?} (no destination), engine: {}",
                    o["icmp"],
                    show_got(&pkt)
                )
            }),
            "local" | "routed" => (got != Verdict::NotOurs).then(|| {
                format!(
                    "kernel {} it ({}), engine: {}",
                    if verdict == "local" {
                        "passed it to its own stack"
                    } else {
                        "did not rewrite it and routed it on"
                    },
                    o["reply"].as_str().unwrap_or("no reply"),
                    show_got(&pkt)
                )
            }),
            "drop" => (!matches!(got, Verdict::Drop(_)))
                .then(|| format!("kernel dropped it, engine: {}", show_got(&pkt))),
            other => panic!("{}: unknown verdict {other:?} in the vectors", self.name),
        };
        if let Some(p) = problem {
            self.bad(step, p);
        }
    }

    fn ours(&self) -> Vec<(EntryKey, f64)> {
        let mut v: Vec<(EntryKey, f64)> = self
            .e
            .connections()
            .map(|c| {
                (
                    EntryKey {
                        protocol: proto_name(c.protocol).to_string(),
                        state: Engine::state_name(c).to_string(),
                        client: format!("{}:{}", c.caddr, c.cport),
                        virt: format!("{}:{}", c.vaddr, c.vport),
                        dest: format!("{}:{}", c.daddr, c.dport),
                    },
                    (c.expires as f64 - self.now as f64) / 1000.0,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        v
    }

    fn compare(&mut self, step: &Value) {
        let snap = &step["snapshot"];
        // the listing was read between "t" and "t_listing_end"
        let t = (f(snap, "t") + f(snap, "t_listing_end")) / 2.0;
        self.advance(ms(t));
        self.record_conns();
        let mut problems = Vec::new();

        // entries
        let mut kernel: Vec<(EntryKey, i64)> = snap["conns"]
            .as_array()
            .expect("conns")
            .iter()
            .map(|c| {
                (
                    EntryKey {
                        protocol: s(c, "protocol").to_string(),
                        state: s(c, "state").to_string(),
                        client: s(c, "client").to_string(),
                        virt: s(c, "virtual").to_string(),
                        dest: s(c, "dest").to_string(),
                    },
                    i(c, "expire"),
                )
            })
            .collect();
        kernel.sort();
        let mut ours = self.ours();
        let mut only_kernel = Vec::new();
        for (k, exp) in kernel {
            match ours.iter().position(|(o, _)| *o == k) {
                Some(p) => {
                    let (_, rem) = ours.remove(p);
                    let lo = exp as f64 - EXPIRE_TOLERANCE_S;
                    let hi = exp as f64 + 1.0 + EXPIRE_TOLERANCE_S;
                    if !(lo..hi).contains(&rem) {
                        problems.push(format!(
                            "entry {k}: kernel expire {exp} s, engine {rem:.2} s"
                        ));
                    }
                }
                None => only_kernel.push((k, exp)),
            }
        }
        for (k, exp) in only_kernel {
            problems.push(format!("entry only in the kernel: {k} (expire {exp} s)"));
        }
        for (k, rem) in ours {
            problems.push(format!("entry only in the engine: {k} (expire {rem:.2} s)"));
        }

        // destination counters
        let mut kernel_rows: BTreeMap<(String, String), &Value> = BTreeMap::new();
        for r in snap["dests"].as_array().expect("dests") {
            kernel_rows.insert((s(r, "service").to_string(), s(r, "dest").to_string()), r);
        }
        let listed: Vec<String> = snap["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|x| s(x, "service").to_string())
            .collect();
        for svc in &listed {
            if !self.services.contains_key(svc) {
                problems.push(format!(
                    "service {svc} listed by the kernel is not in the engine"
                ));
            }
        }
        for svc in self.services.keys() {
            if !listed.contains(svc) {
                problems.push(format!(
                    "service {svc} is in the engine but not listed by the kernel"
                ));
            }
        }
        let mut our_rows: BTreeMap<(String, String), [u64; 5]> = BTreeMap::new();
        for (name, key) in &self.services {
            if let Some((_, dests)) = self.e.service(key) {
                for d in dests {
                    our_rows.insert(
                        (name.clone(), format!("{}:{}", d.addr, d.port)),
                        [
                            d.weight as u64,
                            u64::from(d.persist_conns),
                            u64::from(d.active_conns),
                            u64::from(d.inact_conns),
                            d.stats.conns,
                        ],
                    );
                }
            } else if listed.contains(name) {
                problems.push(format!("service {name} is gone from the engine"));
            }
        }
        for ((svc, dest), r) in &kernel_rows {
            let Some(o) = our_rows.remove(&(svc.clone(), dest.clone())) else {
                problems.push(format!("destination {dest} of {svc} only in the kernel"));
                continue;
            };
            let want = [
                i(r, "weight"),
                i(r, "persist"),
                i(r, "active"),
                i(r, "inact"),
            ];
            let got = [o[0] as i64, o[1] as i64, o[2] as i64, o[3] as i64];
            if want != got {
                problems.push(format!(
                    "{dest} of {svc}: Weight/PersistConn/ActiveConn/InActConn kernel {want:?}, engine {got:?}"
                ));
            }
            let kc = i(r, "conns") as u64;
            let hist = self
                .conns_hist
                .get(&(svc.clone(), dest.clone()))
                .cloned()
                .unwrap_or_default();
            let at = |x: u64| {
                hist.iter()
                    .take_while(|(tm, _)| *tm <= x)
                    .last()
                    .map_or(0, |h| h.1)
            };
            let (lo, hi) = (at(self.now.saturating_sub(CONNS_WINDOW_MS)), at(self.now));
            if !(lo..=hi).contains(&kc) {
                problems.push(format!(
                    "{dest} of {svc}: Conns kernel {kc}, engine {hi} now ({lo} {} s ago)",
                    CONNS_WINDOW_MS / 1000
                ));
            }
        }
        for ((svc, dest), _) in our_rows {
            if listed.contains(&svc) {
                problems.push(format!("destination {dest} of {svc} only in the engine"));
            }
        }
        for p in problems {
            self.bad(step, format!("snapshot at t={t:.3}s: {p}"));
        }
    }
}

struct Outcome {
    steps: usize,
    packets: usize,
    snapshots: usize,
    mismatches: Vec<String>,
}

fn replay(name: &str, v: &Value) -> Outcome {
    let mut r = Replay {
        name,
        e: Engine::new(0xc0ec_0000),
        now: BASE_MS,
        services: BTreeMap::new(),
        conns_hist: BTreeMap::new(),
        mismatches: Vec::new(),
    };
    r.e.set_available_memory(GUEST_AVAILABLE_PAGES);
    r.e.handle_timeout(r.now);
    let steps = v["steps"].as_array().expect("steps");
    let (mut packets, mut snapshots) = (0, 0);
    for step in steps {
        r.advance(ms(f(step, "t")));
        match s(step, "kind") {
            "ipvsadm" => r.command(step),
            "sysctl" => r.sysctl(step),
            "packet" => {
                r.packet(step);
                packets += 1;
            }
            "wait" => {}
            other => panic!("{name}: unknown step kind {other:?}"),
        }
        r.record_conns();
        if !step["snapshot"].is_null() {
            r.compare(step);
            snapshots += 1;
        }
    }
    Outcome {
        steps: steps.len(),
        packets,
        snapshots,
        mismatches: r.mismatches,
    }
}

#[test]
fn kernel_recorded_connection_tracking() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json vectors in {}", dir.display());
    let mut failed = Vec::new();
    let mut kernels = std::collections::BTreeSet::new();
    let (mut n_steps, mut n_packets, mut n_snaps) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: bad JSON: {e}", file.display()));
        assert_eq!(s(&v, "format"), "lvs-oracle-conn/1", "{}", file.display());
        let name = s(&v, "scenario").to_string();
        kernels.insert(s(&v["kernel"], "release").to_string());
        let o = replay(&name, &v);
        assert!(o.snapshots > 0, "{name}: no snapshot in the vector");
        n_steps += o.steps;
        n_packets += o.packets;
        n_snaps += o.snapshots;
        if o.mismatches.is_empty() {
            eprintln!("ok    {name} ({} steps, {} packets)", o.steps, o.packets);
        } else {
            eprintln!("FAIL  {name}: {}", o.mismatches[0]);
            let mut m = format!(
                "scenario {name} ({}): {} mismatch(es), first:\n  {}",
                file.file_name().unwrap().to_string_lossy(),
                o.mismatches.len(),
                o.mismatches[0]
            );
            for x in o.mismatches.iter().skip(1).take(MAX_LISTED - 1) {
                m += &format!("\n  then {x}");
            }
            if o.mismatches.len() > MAX_LISTED {
                m += &format!("\n  ... and {} more", o.mismatches.len() - MAX_LISTED);
            }
            failed.push(m);
        }
    }
    eprintln!(
        "kernel vectors from {}: {} scenarios, {n_steps} steps, {n_packets} packets, {n_snaps} snapshots",
        kernels.into_iter().collect::<Vec<_>>().join(", "),
        files.len()
    );
    if !failed.is_empty() {
        panic!(
            "{} of {} scenario(s) disagree with the Linux kernel:\n\n{}\n",
            failed.len(),
            files.len(),
            failed.join("\n\n")
        );
    }
}
