//! `lvs-decap`: a strict userspace tunnel endpoint for the end-to-end tests.
//!
//! A real server of a tunnelling director (forwarding.md §7) must strip the
//! director's encapsulation and deliver the inner packet — still addressed
//! to the VIP — to its own stack. Kernels without the ipip/gre/fou modules
//! cannot, so this program does it in the real server's namespace:
//!
//! - raw sockets for IPPROTO_IPIP (4), IPPROTO_GRE (47) and IPPROTO_UDP (17)
//!   receive whole IPv4 packets (a raw socket for a protocol also keeps the
//!   kernel from answering "protocol unreachable"); a UDP socket bound to
//!   the GUE port only keeps the kernel from answering "port unreachable";
//! - every packet is checked exactly as §7.3/§7.4 describe (outer header,
//!   encapsulation, inner header, and the outer fields derived from the
//!   inner ones with `pmtu_disc` = 1, the default); a violation is counted
//!   and the packet dropped;
//! - the inner IPv4 packet is written into a TUN device (IFF_TUN |
//!   IFF_NO_PI), so the kernel receives it as if from a link and delivers it
//!   to the socket on the VIP (configured on `lo`), verifying its checksums.
//!
//! Counters are rewritten (atomically) into the `--stats` file after every
//! packet, as `key value` lines; `ready 1` appears once the sockets and the
//! TUN device are set up. SIGTERM/SIGINT end the program (exit 0, the
//! counters printed on stdout); so does `--max-seconds` (default 300).
//!
//! ```text
//! lvs-decap --addr 198.18.1.11 [--from 198.18.1.1] [--gue-port 6080]
//!           [--tun lvdecap0] --stats FILE [--max-seconds 300]
//! ```

use std::fmt::Write as _;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the SIGTERM/SIGINT handler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const PROTO_IPIP: u8 = 4;
const PROTO_UDP: u8 = 17;
const PROTO_GRE: u8 = 47;
/// The host's default ephemeral port range (GUE source ports, §7.3).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;
/// Packets read from one socket per wake-up (keeps every loop bounded).
const BATCH: usize = 64;

struct Args {
    addr: Ipv4Addr,
    from: Option<Ipv4Addr>,
    gue_port: u16,
    tun: String,
    stats: PathBuf,
    max: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("lvs-decap: {msg}");
    eprintln!(
        "usage: lvs-decap --addr IP [--from IP] [--gue-port PORT] [--tun NAME] --stats FILE [--max-seconds N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut addr = None;
    let mut from = None;
    let mut gue_port = 6080;
    let mut tun = "lvdecap0".to_string();
    let mut stats = None;
    let mut max = 300u64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"));
        };
        let bad = |what: &str| -> ! { usage(&format!("{flag}: {what}: {value:?}")) };
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().unwrap_or_else(|_| bad("not an IPv4 address"))),
            "--from" => from = Some(value.parse().unwrap_or_else(|_| bad("not an IPv4 address"))),
            "--gue-port" => gue_port = value.parse().unwrap_or_else(|_| bad("not a port")),
            "--tun" => {
                if value.is_empty() || value.len() >= libc::IFNAMSIZ {
                    bad("interface name length");
                }
                tun = value;
            }
            "--stats" => stats = Some(PathBuf::from(value)),
            "--max-seconds" => max = value.parse().unwrap_or_else(|_| bad("not a number")),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    let Some(addr) = addr else {
        usage("--addr is required")
    };
    let Some(stats) = stats else {
        usage("--stats is required")
    };
    let in_lab = |a: Ipv4Addr| a.octets()[0] == 198 && (a.octets()[1] & 0xfe) == 18;
    if !in_lab(addr) || from.is_some_and(|f| !in_lab(f)) {
        usage("addresses must be in 198.18.0.0/15");
    }
    Args {
        addr,
        from,
        gue_port,
        tun,
        stats,
        max: Duration::from_secs(max),
    }
}

/// What the program has seen.
#[derive(Debug, Default)]
struct Counters {
    ipip: u64,
    gue: u64,
    /// GUE packets with a (valid) non-zero UDP checksum.
    gue_csum: u64,
    gre: u64,
    /// GRE packets with the C bit (and a valid checksum).
    gre_csum: u64,
    /// Inner packets written into the TUN device.
    written: u64,
    write_errors: u64,
    violations: u64,
    last_violation: String,
}

impl Counters {
    fn render(&self, ready: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "ready {}", u8::from(ready));
        for (k, v) in [
            ("ipip", self.ipip),
            ("gue", self.gue),
            ("gue_csum", self.gue_csum),
            ("gre", self.gre),
            ("gre_csum", self.gre_csum),
            ("written", self.written),
            ("write_errors", self.write_errors),
            ("violations", self.violations),
        ] {
            let _ = writeln!(s, "{k} {v}");
        }
        let last = if self.last_violation.is_empty() {
            "-"
        } else {
            &self.last_violation
        };
        let _ = writeln!(s, "last_violation {last}");
        s
    }
}

/// The encapsulation a packet came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ipip,
    Gue { csum: bool },
    Gre { csum: bool },
}

/// The checks' expectations.
#[derive(Debug, Clone, Copy)]
struct Expect {
    addr: Ipv4Addr,
    from: Option<Ipv4Addr>,
    gue_port: u16,
}

/// One's-complement sum of `data` (16-bit big-endian words), not folded.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether `data` (with its checksum field in place) sums to 0xffff.
fn checksum_ok(initial: u32, data: &[u8]) -> bool {
    fold(sum(initial, data)) == 0xffff
}

/// Checks an IPv4 header at the start of `p` whose datagram is exactly
/// `p`; returns its header length.
fn check_ipv4(p: &[u8], what: &str) -> Result<usize, String> {
    if p.len() < 20 {
        return Err(format!(
            "{what}: {} bytes, shorter than an IPv4 header",
            p.len()
        ));
    }
    if p[0] >> 4 != 4 {
        return Err(format!("{what}: version {}", p[0] >> 4));
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || ihl > p.len() {
        return Err(format!("{what}: header length {ihl}"));
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total != p.len() {
        return Err(format!(
            "{what}: total length {total}, datagram {}",
            p.len()
        ));
    }
    if !checksum_ok(0, &p[..ihl]) {
        return Err(format!("{what}: bad header checksum"));
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & 0x3fff != 0 {
        return Err(format!("{what}: a fragment (flags/offset {frag:#06x})"));
    }
    Ok(ihl)
}

/// Validates one packet as a raw socket of protocol `proto` hands it over
/// (the whole IPv4 datagram). `Ok(None)`: not a tunnel packet for us (UDP to
/// another port); `Ok(Some((kind, range)))`: the inner packet is
/// `pkt[range]`.
fn decap(
    proto: u8,
    pkt: &[u8],
    want: &Expect,
) -> Result<Option<(Kind, std::ops::Range<usize>)>, String> {
    check_ipv4(pkt, "outer")?;
    // §7.4: 20 bytes, no options.
    if pkt[0] != 0x45 {
        return Err(format!(
            "outer: first byte {:#04x}, want 0x45 (no options)",
            pkt[0]
        ));
    }
    if pkt[9] != proto {
        return Err(format!(
            "outer: protocol {} on the raw socket for {proto}",
            pkt[9]
        ));
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let body = &pkt[20..];
    let (kind, inner_at) = match proto {
        PROTO_IPIP => (Kind::Ipip, 20),
        PROTO_UDP => {
            if body.len() < 8 {
                return Err("udp: truncated header".into());
            }
            let sport = u16::from_be_bytes([body[0], body[1]]);
            let dport = u16::from_be_bytes([body[2], body[3]]);
            if dport != want.gue_port || dst != want.addr {
                return Ok(None);
            }
            let ulen = usize::from(u16::from_be_bytes([body[4], body[5]]));
            if ulen != body.len() {
                return Err(format!("gue: UDP length {ulen}, payload {}", body.len()));
            }
            if !EPHEMERAL.contains(&sport) {
                return Err(format!("gue: source port {sport} outside 32768-60999"));
            }
            let csum = u16::from_be_bytes([body[6], body[7]]);
            if csum != 0 {
                let pseudo = sum(0, &pkt[12..20]) + u32::from(PROTO_UDP) + ulen as u32;
                if !checksum_ok(pseudo, body) {
                    return Err(format!("gue: bad UDP checksum {csum:#06x}"));
                }
            }
            if body.len() < 12 {
                return Err("gue: truncated GUE header".into());
            }
            // Version 0, C 0, hlen 0; proto IPIP; flags 0.
            if body[8..12] != [0x00, PROTO_IPIP, 0x00, 0x00] {
                return Err(format!(
                    "gue: header {:02x?}, want 00 04 00 00",
                    &body[8..12]
                ));
            }
            (Kind::Gue { csum: csum != 0 }, 20 + 12)
        }
        PROTO_GRE => {
            if body.len() < 4 {
                return Err("gre: truncated header".into());
            }
            let flags = u16::from_be_bytes([body[0], body[1]]);
            let ptype = u16::from_be_bytes([body[2], body[3]]);
            if ptype != 0x0800 {
                return Err(format!("gre: protocol type {ptype:#06x}"));
            }
            match flags {
                0x0000 => (Kind::Gre { csum: false }, 20 + 4),
                0x8000 => {
                    if body.len() < 8 {
                        return Err("gre: truncated checksum field".into());
                    }
                    if !checksum_ok(0, body) {
                        return Err("gre: bad checksum".into());
                    }
                    if body[6..8] != [0, 0] {
                        return Err("gre: reserved1 not zero".into());
                    }
                    (Kind::Gre { csum: true }, 20 + 8)
                }
                f => return Err(format!("gre: flags/version {f:#06x}, want 0 or 0x8000")),
            }
        }
        p => return Err(format!("unexpected protocol {p}")),
    };
    if dst != want.addr {
        return Err(format!("outer: destination {dst}, want {}", want.addr));
    }
    if let Some(from) = want.from {
        if src != from {
            return Err(format!("outer: source {src}, want {from}"));
        }
    }
    let inner = &pkt[inner_at..];
    check_ipv4(inner, "inner")?;
    // §7.2/§7.4: outer fields derived from the inner packet.
    let (otos, itos) = (pkt[1], inner[1]);
    let want_tos = if itos & 0x03 == 0x03 {
        (itos & !0x03) | 0x02
    } else {
        itos
    };
    if otos != want_tos {
        return Err(format!("outer: TOS {otos:#04x} for inner {itos:#04x}"));
    }
    if pkt[8] != inner[8] {
        return Err(format!("outer: TTL {} for inner TTL {}", pkt[8], inner[8]));
    }
    let odf = pkt[6] & 0x40 != 0;
    if odf != (inner[6] & 0x40 != 0) {
        return Err(format!("outer: DF {odf} differs from the inner packet's"));
    }
    if odf && pkt[4..6] != [0, 0] {
        return Err("outer: DF set with a non-zero IP ID".into());
    }
    Ok(Some((kind, inner_at..pkt.len())))
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn raw_socket(proto: u8) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if fd < 0 {
        return Err(last_os_error(&format!("raw socket for protocol {proto}")));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr
}

/// Creates TUN device `name` (IFF_TUN | IFF_NO_PI), sets it up and turns
/// rp_filter off for it (and `all`), so packets from any source are taken.
fn open_tun(name: &str) -> Result<OwnedFd, String> {
    // SAFETY: open(2) of a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(last_os_error("opening /dev/net/tun"));
    }
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = ifreq_named(name);
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives on our stack.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(last_os_error(&format!("TUNSETIFF {name}")));
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(last_os_error("control socket"));
    }
    // SAFETY: `s` was just returned by socket(2) and is owned by nobody else.
    let ctl = unsafe { OwnedFd::from_raw_fd(s) };
    let mut ifr = ifreq_named(name);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq on our
    // stack; ifru_flags is the member these requests use.
    unsafe {
        if libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(last_os_error(&format!("SIOCGIFFLAGS {name}")));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr) < 0 {
            return Err(last_os_error(&format!("SIOCSIFFLAGS {name} up")));
        }
    }
    for dev in [name, "all"] {
        let path = format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter");
        std::fs::write(&path, b"0").map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(tun)
}

fn write_stats(path: &std::path::Path, c: &Counters, ready: bool) {
    let tmp = path.with_extension("tmp");
    let ok = std::fs::write(&tmp, c.render(ready)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = ok {
        eprintln!("lvs-decap: writing {}: {e}", path.display());
    }
}

fn run(args: &Args) -> Result<Counters, String> {
    let want = Expect {
        addr: args.addr,
        from: args.from,
        gue_port: args.gue_port,
    };
    let socks = [
        (PROTO_IPIP, raw_socket(PROTO_IPIP)?),
        (PROTO_GRE, raw_socket(PROTO_GRE)?),
        (PROTO_UDP, raw_socket(PROTO_UDP)?),
    ];
    // Only there to consume the GUE datagrams (the raw UDP socket sees them
    // first): without a bound socket the kernel answers port unreachable.
    let sink = UdpSocket::bind((args.addr, args.gue_port))
        .map_err(|e| format!("binding UDP {}:{}: {e}", args.addr, args.gue_port))?;
    sink.set_nonblocking(true)
        .map_err(|e| format!("UDP socket: {e}"))?;
    let tun = open_tun(&args.tun)?;
    let mut c = Counters::default();
    write_stats(&args.stats, &c, true);

    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|(_, s)| s.as_raw_fd())
        .chain([sink.as_raw_fd()])
        .map(|fd: RawFd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = vec![0u8; 65536];
    let started = Instant::now();
    while !STOP.load(Ordering::SeqCst) && started.elapsed() < args.max {
        // SAFETY: `fds` is a live array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if n <= 0 {
            continue; // timeout, or EINTR from the signal
        }
        let mut changed = false;
        for (k, (proto, sock)) in socks.iter().enumerate() {
            if fds[k].revents == 0 {
                continue;
            }
            for _ in 0..BATCH {
                // SAFETY: recv(2) into a live buffer of the given length.
                let got =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if got <= 0 {
                    break;
                }
                let pkt = &buf[..got as usize];
                match decap(*proto, pkt, &want) {
                    Ok(None) => continue,
                    Ok(Some((kind, inner))) => {
                        match kind {
                            Kind::Ipip => c.ipip += 1,
                            Kind::Gue { csum } => {
                                c.gue += 1;
                                c.gue_csum += u64::from(csum);
                            }
                            Kind::Gre { csum } => {
                                c.gre += 1;
                                c.gre_csum += u64::from(csum);
                            }
                        }
                        let inner = &pkt[inner];
                        // SAFETY: write(2) of a live buffer of the given length.
                        let w = unsafe {
                            libc::write(tun.as_raw_fd(), inner.as_ptr().cast(), inner.len())
                        };
                        if w == inner.len() as isize {
                            c.written += 1;
                        } else {
                            c.write_errors += 1;
                        }
                    }
                    Err(why) => {
                        c.violations += 1;
                        eprintln!("lvs-decap: violation: {why}");
                        c.last_violation = why;
                    }
                }
                changed = true;
            }
        }
        if fds[socks.len()].revents != 0 {
            for _ in 0..BATCH {
                if sink.recv(&mut buf).is_err() {
                    break;
                }
            }
        }
        if changed {
            write_stats(&args.stats, &c, true);
        }
    }
    write_stats(&args.stats, &c, false);
    Ok(c)
}

fn main() {
    let args = parse_args();
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
    match run(&args) {
        Ok(c) => print!("{}", c.render(false)),
        Err(e) => {
            eprintln!("lvs-decap: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Expect = Expect {
        addr: Ipv4Addr::new(198, 18, 1, 11),
        from: Some(Ipv4Addr::new(198, 18, 1, 1)),
        gue_port: 6080,
    };

    /// Sets the IPv4 header checksum of the header at `h`.
    fn fix_ip(h: &mut [u8]) {
        h[10] = 0;
        h[11] = 0;
        let c = !fold(sum(0, &h[..20]));
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// A TCP SYN 198.18.0.2:40000 -> 198.18.0.100:80, TTL 63, DF, TOS 0xbb.
    fn inner() -> Vec<u8> {
        let mut p = vec![
            0x45, 0xbb, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 63, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0,
            100,
        ];
        p.extend_from_slice(&[
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x10, 0x00, 0, 0, 0, 0,
        ]);
        fix_ip(&mut p);
        p
    }

    fn outer(proto: u8, encap: &[u8], inner: &[u8]) -> Vec<u8> {
        let total = 20 + encap.len() + inner.len();
        let mut p = vec![
            0x45, 0xba, 0, 0, 0, 0, 0x40, 0x00, 63, proto, 0, 0, 198, 18, 1, 1, 198, 18, 1, 11,
        ];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(encap);
        p.extend_from_slice(inner);
        fix_ip(&mut p);
        p
    }

    #[test]
    fn ipip_as_the_kernel_sends_it() {
        let i = inner();
        let p = outer(PROTO_IPIP, &[], &i);
        let (kind, r) = decap(PROTO_IPIP, &p, &WANT).unwrap().unwrap();
        assert_eq!(kind, Kind::Ipip);
        assert_eq!(&p[r], &i[..]);
        // CE inside must become ECT(0) outside, not stay CE.
        let mut bad = p.clone();
        bad[1] = 0xbb;
        fix_ip(&mut bad);
        assert!(decap(PROTO_IPIP, &bad, &WANT).unwrap_err().contains("TOS"));
        let mut bad = p.clone();
        bad[16..20].copy_from_slice(&[198, 18, 1, 12]);
        fix_ip(&mut bad);
        assert!(decap(PROTO_IPIP, &bad, &WANT).is_err());
    }

    fn gue(csum: bool, header: [u8; 4]) -> Vec<u8> {
        let i = inner();
        let ulen = (8 + 4 + i.len()) as u16;
        let mut udp = vec![0xa0, 0x00, 0x17, 0xc0, 0, 0, 0, 0];
        udp[4..6].copy_from_slice(&ulen.to_be_bytes());
        udp.extend_from_slice(&header);
        let mut p = outer(PROTO_UDP, &udp, &i);
        if csum {
            let pseudo = sum(0, &p[12..20]) + 17 + u32::from(ulen);
            let c = !fold(sum(pseudo, &p[20..]));
            p[26..28].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        }
        p
    }

    #[test]
    fn gue_header_and_udp_checksum() {
        for csum in [false, true] {
            let p = gue(csum, [0, 4, 0, 0]);
            let (kind, r) = decap(PROTO_UDP, &p, &WANT).unwrap().unwrap();
            assert_eq!(kind, Kind::Gue { csum });
            assert_eq!(&p[r], &inner()[..]);
        }
        let mut p = gue(true, [0, 4, 0, 0]);
        p[40] ^= 1; // payload byte: the checksum no longer matches
        assert!(decap(PROTO_UDP, &p, &WANT)
            .unwrap_err()
            .contains("checksum"));
        assert!(decap(PROTO_UDP, &gue(false, [0x02, 4, 0, 0]), &WANT).is_err());
        assert!(decap(PROTO_UDP, &gue(false, [0, 4, 0, 1]), &WANT).is_err());
        // UDP to another port is not ours.
        let mut other = gue(false, [0, 4, 0, 0]);
        other[22..24].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(decap(PROTO_UDP, &other, &WANT), Ok(None));
    }

    fn gre(csum: bool) -> Vec<u8> {
        let i = inner();
        let mut g = if csum {
            vec![0x80, 0, 0x08, 0, 0, 0, 0, 0]
        } else {
            vec![0, 0, 0x08, 0]
        };
        if csum {
            let mut all = g.clone();
            all.extend_from_slice(&i);
            let c = !fold(sum(0, &all));
            g[4..6].copy_from_slice(&c.to_be_bytes());
        }
        outer(PROTO_GRE, &g, &i)
    }

    #[test]
    fn gre_with_and_without_checksum() {
        for csum in [false, true] {
            let p = gre(csum);
            let (kind, r) = decap(PROTO_GRE, &p, &WANT).unwrap().unwrap();
            assert_eq!(kind, Kind::Gre { csum });
            assert_eq!(&p[r], &inner()[..]);
        }
        let mut p = gre(true);
        p[25] ^= 0x10;
        assert!(decap(PROTO_GRE, &p, &WANT)
            .unwrap_err()
            .contains("checksum"));
        let mut p = gre(false);
        p[20] = 0x20; // K bit
        assert!(decap(PROTO_GRE, &p, &WANT).unwrap_err().contains("flags"));
    }
}
