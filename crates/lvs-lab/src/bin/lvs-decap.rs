//! `lvs-decap`: a strict userspace tunnel endpoint for the end-to-end tests.
//!
//! A real server of a tunnelling director (forwarding.md §7) must strip the
//! director's encapsulation and deliver the inner packet — still addressed
//! to the VIP — to its own stack. Kernels without the ipip/gre/fou modules
//! cannot, so this program does it in the real server's namespace:
//!
//! - IPv4 (`--addr` an IPv4 address): raw sockets for IPPROTO_IPIP (4),
//!   IPPROTO_IPV6 (41), IPPROTO_GRE (47) and IPPROTO_UDP (17) receive whole
//!   IPv4 packets (a raw socket for a protocol also keeps the kernel from
//!   answering "protocol unreachable");
//! - IPv6 (`--addr` an IPv6 address, `--dev` the link): raw IPv6 sockets do
//!   not hand the header over, so a packet socket on the link reads the
//!   packets, and raw IPv6 sockets for 4, 41 and 47 are only drained (they
//!   keep the kernel from answering "unrecognized next header");
//! - a UDP socket bound to the GUE port only keeps the kernel from
//!   answering "port unreachable";
//! - every packet is checked exactly as §7.3/§7.4 describe (outer header,
//!   encapsulation, inner header, and the outer fields derived from the
//!   inner ones with `pmtu_disc` = 1, the default); a violation is counted
//!   and the packet dropped;
//! - the inner IPv4 or IPv6 packet is written into a TUN device (IFF_TUN |
//!   IFF_NO_PI), so the kernel receives it as if from a link and delivers it
//!   to the socket on the VIP (configured on `lo`), verifying its checksums.
//!
//! Counters are rewritten (atomically) into the `--stats` file after every
//! packet, as `key value` lines; `ready 1` appears once the sockets and the
//! TUN device are set up. SIGTERM/SIGINT end the program (exit 0, the
//! counters printed on stdout); so does `--max-seconds` (default 300).
//!
//! ```text
//! lvs-decap --addr 198.18.1.11 [--from 198.18.1.1] [--dev b0] [--gue-port 6080]
//!           [--tun lvdecap0] --stats FILE [--max-seconds 300]
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, UdpSocket};
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
/// IPv6 in IPv4 or IPv6 (§7.2 `next_protocol` of an IPv6 inner packet).
const PROTO_IPV6: u8 = 41;
const PROTO_GRE: u8 = 47;
/// The host's default ephemeral port range (GUE source ports, §7.3).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;
/// Packets read from one socket per wake-up (keeps every loop bounded).
const BATCH: usize = 64;

struct Args {
    addr: IpAddr,
    from: Option<IpAddr>,
    /// The link IPv6 tunnel packets arrive on (needed for an IPv6 `addr`).
    dev: Option<String>,
    gue_port: u16,
    tun: String,
    stats: PathBuf,
    max: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("lvs-decap: {msg}");
    eprintln!(
        "usage: lvs-decap --addr IP [--from IP] [--dev IF] [--gue-port PORT] [--tun NAME] --stats FILE [--max-seconds N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut addr = None;
    let mut from = None;
    let mut dev = None;
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
            "--addr" => addr = Some(value.parse().unwrap_or_else(|_| bad("not an IP address"))),
            "--from" => from = Some(value.parse().unwrap_or_else(|_| bad("not an IP address"))),
            "--dev" => {
                if value.is_empty() || value.len() >= libc::IFNAMSIZ {
                    bad("interface name length");
                }
                dev = Some(value);
            }
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
    let in_lab = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets()[0] == 198 && (a.octets()[1] & 0xfe) == 18,
        IpAddr::V6(a) => a.segments()[..2] == [0x2001, 0x0db8],
    };
    if !in_lab(addr) || from.is_some_and(|f| !in_lab(f) || f.is_ipv4() != addr.is_ipv4()) {
        usage("addresses must be in 198.18.0.0/15 or 2001:db8::/32, of one family");
    }
    if addr.is_ipv6() && dev.is_none() {
        usage("--dev is required for an IPv6 address");
    }
    Args {
        addr,
        from,
        dev,
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
    /// Tunnel packets with an IPv6 outer header, and with an IPv6 inner
    /// packet.
    outer_v6: u64,
    inner_v6: u64,
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
            ("outer_v6", self.outer_v6),
            ("inner_v6", self.inner_v6),
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
    addr: IpAddr,
    from: Option<IpAddr>,
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

/// An outer header, read and checked.
struct Outer {
    /// Protocol / next header.
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    /// TOS / traffic class.
    ds: u8,
    /// TTL / hop limit.
    ttl: u8,
    /// IPv4 only: DF, and whether the IP ID is zero.
    df: Option<(bool, bool)>,
    /// Where the encapsulation starts.
    body: usize,
}

/// An IPv4 outer header as a raw socket of protocol `proto` hands the
/// datagram over.
fn outer_v4(pkt: &[u8], proto: u8) -> Result<Outer, String> {
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
    Ok(Outer {
        proto,
        src: IpAddr::from(<[u8; 4]>::try_from(&pkt[12..16]).unwrap_or_default()),
        dst: IpAddr::from(<[u8; 4]>::try_from(&pkt[16..20]).unwrap_or_default()),
        ds: pkt[1],
        ttl: pkt[8],
        df: Some((pkt[6] & 0x40 != 0, pkt[4..6] == [0, 0])),
        body: 20,
    })
}

/// Checks an IPv6 header at the start of `p` whose packet is exactly `p`.
fn check_ipv6(p: &[u8], what: &str) -> Result<(), String> {
    if p.len() < 40 {
        return Err(format!(
            "{what}: {} bytes, shorter than an IPv6 header",
            p.len()
        ));
    }
    if p[0] >> 4 != 6 {
        return Err(format!("{what}: version {}", p[0] >> 4));
    }
    let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
    if plen + 40 != p.len() {
        return Err(format!("{what}: payload length {plen}, packet {}", p.len()));
    }
    Ok(())
}

/// An IPv6 outer header (§7.4: 40 bytes, flow label 0, no extension
/// header), as a packet socket hands the packet over.
fn outer_v6(pkt: &[u8]) -> Result<Outer, String> {
    check_ipv6(pkt, "outer")?;
    let flow = u32::from_be_bytes([0, pkt[1] & 0x0f, pkt[2], pkt[3]]);
    if flow != 0 {
        return Err(format!("outer: flow label {flow:#07x}, want 0"));
    }
    Ok(Outer {
        proto: pkt[6],
        src: IpAddr::from(<[u8; 16]>::try_from(&pkt[8..24]).unwrap_or_default()),
        dst: IpAddr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap_or_default()),
        ds: (pkt[0] << 4) | (pkt[1] >> 4),
        ttl: pkt[7],
        df: None,
        body: 40,
    })
}

/// The pseudo-header sum of a UDP datagram of `len` bytes between the
/// outer addresses.
fn pseudo(o: &Outer, len: usize) -> u32 {
    let addr = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    sum(sum(0, &addr(o.src)), &addr(o.dst)) + u32::from(PROTO_UDP) + len as u32
}

/// Validates one tunnel packet: the whole IPv4 datagram a raw socket of
/// protocol `proto` hands over, or (`proto` = None) the whole IPv6 packet
/// of a packet socket. `Ok(None)`: not a tunnel packet for us (UDP to
/// another port, another destination); `Ok(Some((kind, range)))`: the
/// inner packet (IPv4 or IPv6) is `pkt[range]`.
fn decap(
    proto: Option<u8>,
    pkt: &[u8],
    want: &Expect,
) -> Result<Option<(Kind, std::ops::Range<usize>)>, String> {
    let o = match proto {
        Some(p) => outer_v4(pkt, p)?,
        None => outer_v6(pkt)?,
    };
    // A packet socket sees all of the link's IPv6 traffic, the raw UDP
    // socket every UDP datagram: only tunnel packets to us are checked.
    let tunnel_proto = matches!(o.proto, PROTO_IPIP | PROTO_IPV6 | PROTO_GRE);
    if o.dst != want.addr && (proto.is_none() || !tunnel_proto) {
        return Ok(None);
    }
    if o.dst != want.addr {
        return Err(format!("outer: destination {}, want {}", o.dst, want.addr));
    }
    let body = &pkt[o.body..];
    // The inner packet's version, as the encapsulation says it.
    let (kind, inner_at, inner_v6) = match o.proto {
        PROTO_IPIP | PROTO_IPV6 => (Kind::Ipip, o.body, o.proto == PROTO_IPV6),
        PROTO_UDP => {
            if body.len() < 8 {
                return Err("udp: truncated header".into());
            }
            let sport = u16::from_be_bytes([body[0], body[1]]);
            let dport = u16::from_be_bytes([body[2], body[3]]);
            if dport != want.gue_port {
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
            if csum != 0 && !checksum_ok(pseudo(&o, ulen), body) {
                return Err(format!("gue: bad UDP checksum {csum:#06x}"));
            }
            if body.len() < 12 {
                return Err("gue: truncated GUE header".into());
            }
            // Version 0, C 0, hlen 0; proto IPIP or IPv6; flags 0.
            if body[8] != 0 || body[10..12] != [0, 0] || !matches!(body[9], PROTO_IPIP | PROTO_IPV6)
            {
                return Err(format!(
                    "gue: header {:02x?}, want 00 04|29 00 00",
                    &body[8..12]
                ));
            }
            (
                Kind::Gue { csum: csum != 0 },
                o.body + 12,
                body[9] == PROTO_IPV6,
            )
        }
        PROTO_GRE => {
            if body.len() < 4 {
                return Err("gre: truncated header".into());
            }
            let flags = u16::from_be_bytes([body[0], body[1]]);
            let v6 = match u16::from_be_bytes([body[2], body[3]]) {
                0x0800 => false,
                0x86dd => true,
                t => return Err(format!("gre: protocol type {t:#06x}")),
            };
            match flags {
                0x0000 => (Kind::Gre { csum: false }, o.body + 4, v6),
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
                    (Kind::Gre { csum: true }, o.body + 8, v6)
                }
                f => return Err(format!("gre: flags/version {f:#06x}, want 0 or 0x8000")),
            }
        }
        // Not a tunnel protocol (the link's other IPv6 traffic).
        _ if proto.is_none() => return Ok(None),
        p => return Err(format!("unexpected protocol {p}")),
    };
    if let Some(from) = want.from {
        if o.src != from {
            return Err(format!("outer: source {}, want {from}", o.src));
        }
    }
    let inner = &pkt[inner_at..];
    // §7.2: outer fields derived from the inner packet.
    let (ids, ittl, idf) = if inner_v6 {
        check_ipv6(inner, "inner")?;
        (((inner[0] & 0x0f) << 4) | (inner[1] >> 4), inner[7], false)
    } else {
        check_ipv4(inner, "inner")?;
        (inner[1], inner[8], inner[6] & 0x40 != 0)
    };
    let want_ds = if ids & 0x03 == 0x03 {
        (ids & !0x03) | 0x02
    } else {
        ids
    };
    if o.ds != want_ds {
        return Err(format!("outer: TOS {:#04x} for inner {ids:#04x}", o.ds));
    }
    if o.ttl != ittl {
        return Err(format!("outer: TTL {} for inner TTL {ittl}", o.ttl));
    }
    if let Some((odf, id_zero)) = o.df {
        // An IPv6 inner packet never sets DF outside.
        if odf != idf {
            return Err(format!("outer: DF {odf} for inner DF {idf}"));
        }
        if odf && !id_zero {
            return Err("outer: DF set with a non-zero IP ID".into());
        }
    }
    Ok(Some((kind, inner_at..pkt.len())))
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// A raw socket of `family` (AF_INET or AF_INET6) for protocol `proto`.
fn raw_socket(family: libc::c_int, proto: u8) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
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

/// A packet socket receiving the IPv6 packets (network header first) of
/// interface `dev`.
fn ipv6_packet_socket(dev: &str) -> Result<OwnedFd, String> {
    let proto = (libc::ETH_P_IPV6 as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if fd < 0 {
        return Err(last_os_error("packet socket"));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev).map_err(|_| format!("bad interface name {dev:?}"))?;
    // SAFETY: if_nametoindex reads one NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(last_os_error(&format!("interface {dev}")));
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: bind(2) with a sockaddr_ll that lives on our stack, and its size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(last_os_error(&format!(
            "binding the packet socket to {dev}"
        )));
    }
    Ok(sock)
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
    // IPv6 inner packets need IPv6 on the device (a host without IPv6 has
    // no such file: IPv4 only then).
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), b"0");
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
    // Where tunnel packets are read: IPv4 raw sockets (protocol known, the
    // whole datagram), or for IPv6 a packet socket on the link (raw IPv6
    // sockets do not hand the header over). `drains` are only read and
    // dropped: a raw IPv6 socket per tunnel protocol keeps the kernel from
    // answering "unrecognized next header".
    let (socks, drains): (Vec<(Option<u8>, OwnedFd)>, Vec<OwnedFd>) = match args.addr {
        IpAddr::V4(_) => (
            [PROTO_IPIP, PROTO_IPV6, PROTO_GRE, PROTO_UDP]
                .into_iter()
                .map(|p| Ok((Some(p), raw_socket(libc::AF_INET, p)?)))
                .collect::<Result<_, String>>()?,
            Vec::new(),
        ),
        IpAddr::V6(_) => (
            vec![(None, ipv6_packet_socket(args.dev.as_deref().unwrap_or(""))?)],
            [PROTO_IPIP, PROTO_IPV6, PROTO_GRE]
                .into_iter()
                .map(|p| raw_socket(libc::AF_INET6, p))
                .collect::<Result<_, String>>()?,
        ),
    };
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
        .chain(drains.iter().map(|d| d.as_raw_fd()))
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
                        c.outer_v6 += u64::from(proto.is_none());
                        c.inner_v6 += u64::from(pkt.get(inner.start).is_some_and(|b| b >> 4 == 6));
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
        for (k, d) in drains.iter().enumerate() {
            if fds[socks.len() + k].revents == 0 {
                continue;
            }
            for _ in 0..BATCH {
                // SAFETY: recv(2) into a live buffer of the given length.
                let got =
                    unsafe { libc::recv(d.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if got <= 0 {
                    break;
                }
            }
        }
        if fds[socks.len() + drains.len()].revents != 0 {
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

    use std::net::{Ipv4Addr, Ipv6Addr};

    const WANT: Expect = Expect {
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11)),
        from: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))),
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
        let (kind, r) = decap(Some(PROTO_IPIP), &p, &WANT).unwrap().unwrap();
        assert_eq!(kind, Kind::Ipip);
        assert_eq!(&p[r], &i[..]);
        // CE inside must become ECT(0) outside, not stay CE.
        let mut bad = p.clone();
        bad[1] = 0xbb;
        fix_ip(&mut bad);
        assert!(decap(Some(PROTO_IPIP), &bad, &WANT)
            .unwrap_err()
            .contains("TOS"));
        let mut bad = p.clone();
        bad[16..20].copy_from_slice(&[198, 18, 1, 12]);
        fix_ip(&mut bad);
        assert!(decap(Some(PROTO_IPIP), &bad, &WANT).is_err());
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
            let (kind, r) = decap(Some(PROTO_UDP), &p, &WANT).unwrap().unwrap();
            assert_eq!(kind, Kind::Gue { csum });
            assert_eq!(&p[r], &inner()[..]);
        }
        let mut p = gue(true, [0, 4, 0, 0]);
        p[40] ^= 1; // payload byte: the checksum no longer matches
        assert!(decap(Some(PROTO_UDP), &p, &WANT)
            .unwrap_err()
            .contains("checksum"));
        assert!(decap(Some(PROTO_UDP), &gue(false, [0x02, 4, 0, 0]), &WANT).is_err());
        assert!(decap(Some(PROTO_UDP), &gue(false, [0, 4, 0, 1]), &WANT).is_err());
        // UDP to another port is not ours.
        let mut other = gue(false, [0, 4, 0, 0]);
        other[22..24].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(decap(Some(PROTO_UDP), &other, &WANT), Ok(None));
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
            let (kind, r) = decap(Some(PROTO_GRE), &p, &WANT).unwrap().unwrap();
            assert_eq!(kind, Kind::Gre { csum });
            assert_eq!(&p[r], &inner()[..]);
        }
        let mut p = gre(true);
        p[25] ^= 0x10;
        assert!(decap(Some(PROTO_GRE), &p, &WANT)
            .unwrap_err()
            .contains("checksum"));
        let mut p = gre(false);
        p[20] = 0x20; // K bit
        assert!(decap(Some(PROTO_GRE), &p, &WANT)
            .unwrap_err()
            .contains("flags"));
    }

    const RIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
    const DIRECTOR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

    const WANT6: Expect = Expect {
        addr: IpAddr::V6(RIP6),
        from: Some(IpAddr::V6(DIRECTOR6)),
        gue_port: 6080,
    };

    /// A TCP SYN [2001:db8::2]:40000 -> [2001:db8::100]:80, hop limit 63,
    /// traffic class 0xbb (the L4 checksum is not looked at).
    fn inner6() -> Vec<u8> {
        let mut p = vec![0x6b, 0xb0, 0, 0, 0, 20, 6, 63];
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100).octets());
        p.extend_from_slice(&[
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x10, 0x00, 0, 0, 0, 0,
        ]);
        p
    }

    /// An IPv6 outer header (traffic class 0xba, hop limit 63) from the
    /// director to the real server before `encap` and `inner`.
    fn outer6(next: u8, encap: &[u8], inner: &[u8]) -> Vec<u8> {
        let plen = (encap.len() + inner.len()) as u16;
        let mut p = vec![0x6b, 0xa0, 0, 0, 0, 0, next, 63];
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p.extend_from_slice(&DIRECTOR6.octets());
        p.extend_from_slice(&RIP6.octets());
        p.extend_from_slice(encap);
        p.extend_from_slice(inner);
        p
    }

    /// IPv6 outer headers (§7.4): IPv6 and IPv4 inside, GUE with its
    /// checksum over the IPv6 pseudo-header; and IPv6 inside IPv4.
    #[test]
    fn ipv6_outer_and_inner_headers() {
        let i6 = inner6();
        let p = outer6(PROTO_IPV6, &[], &i6);
        let (kind, r) = decap(None, &p, &WANT6).unwrap().unwrap();
        assert_eq!((kind, &p[r]), (Kind::Ipip, &i6[..]));
        // The derived fields: traffic class with CE re-encoded, hop limit,
        // flow label 0; the version the encapsulation announces.
        for (at, v, what) in [(1, 0xb0, "TOS"), (7, 64, "TTL"), (3, 1, "flow label")] {
            let mut bad = p.clone();
            bad[at] = v;
            assert!(
                decap(None, &bad, &WANT6).unwrap_err().contains(what),
                "{what}"
            );
        }
        assert!(decap(None, &outer6(PROTO_IPIP, &[], &i6), &WANT6).is_err());
        // IPv4 in IPv6 (an IPv4 service with an IPv6 tunnel real server).
        let i4 = inner();
        let p = outer6(PROTO_IPIP, &[], &i4);
        assert_eq!(decap(None, &p, &WANT6).unwrap().unwrap().1, 40..p.len());
        // GUE over IPv6, with the checksum.
        let ulen = (8 + 4 + i6.len()) as u16;
        let mut udp = vec![0x80, 0x00, 0x17, 0xc0, 0, 0, 0, 0, 0, PROTO_IPV6, 0, 0];
        udp[4..6].copy_from_slice(&ulen.to_be_bytes());
        let mut p = outer6(PROTO_UDP, &udp, &i6);
        let ps = sum(0, &p[8..40]) + u32::from(PROTO_UDP) + u32::from(ulen);
        let c = !fold(sum(ps, &p[40..]));
        p[46..48].copy_from_slice(&c.to_be_bytes());
        let (kind, r) = decap(None, &p, &WANT6).unwrap().unwrap();
        assert_eq!((kind, &p[r]), (Kind::Gue { csum: true }, &i6[..]));
        p[60] ^= 1;
        assert!(decap(None, &p, &WANT6).unwrap_err().contains("checksum"));
        // The link's other traffic is not ours.
        let mut other = outer6(6, &[], &i6);
        assert_eq!(decap(None, &other, &WANT6), Ok(None));
        other[39] ^= 1;
        other[6] = PROTO_IPV6;
        assert_eq!(decap(None, &other, &WANT6), Ok(None));
        // IPv6 in IPv4 (protocol 41): outer DF clear for an IPv6 inner.
        let p = outer(PROTO_IPV6, &[], &i6);
        let mut nodf = p.clone();
        nodf[6] = 0;
        fix_ip(&mut nodf);
        assert_eq!(
            decap(Some(PROTO_IPV6), &nodf, &WANT).unwrap().unwrap().1,
            20..p.len()
        );
        assert!(decap(Some(PROTO_IPV6), &p, &WANT)
            .unwrap_err()
            .contains("DF"));
    }
}
