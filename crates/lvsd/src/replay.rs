//! `lvsd replay`: the engine, offline, over a capture. Every packet of the
//! input pcap goes through the engine with the capture's timestamps as the
//! clock (timers fire in between, as they would have); every frame the
//! director would have transmitted (forwarded, encapsulated, fragmented,
//! or an ICMP error / TCP reset it answers with) is written to the output
//! pcap as a raw IP packet, and a report says what happened. The engine is
//! seeded with constants, so the same input gives the same output, byte
//! for byte. Operators use it to try a configuration on recorded traffic
//! before deploying it.

use crate::pcap::{self, Reader, Writer};
use lvs_core::xmit::{PacketBuf, Path, Paths, Reply, Transmit, HEADROOM};
use lvs_core::{DropReason, Engine};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// What `lvsd replay` was asked to do.
pub struct Options {
    pub config: PathBuf,
    pub pcap: PathBuf,
    pub out: Option<PathBuf>,
    pub json: bool,
    /// The director's own address (tunnels' outer source, source of the
    /// errors the host's forwarding would send), and its IPv6 one.
    pub src: Ipv4Addr,
    pub src6: Option<Ipv6Addr>,
    /// The path MTU towards every address ...
    pub mtu: u16,
    /// ... except these prefixes: (network, prefix length, MTU), either
    /// family.
    pub path_mtus: Vec<(IpAddr, u8, u16)>,
}

/// The replay's routing: every address on-link, with one MTU or a
/// per-prefix one.
struct ReplayPaths {
    src: Ipv4Addr,
    src6: Option<Ipv6Addr>,
    mtu: u16,
    /// (network, mask, MTU) as 128-bit words (IPv4 in the low 32 bits,
    /// with `v6` false), longest prefix first.
    path_mtus: Vec<(bool, u128, u128, u16)>,
}

/// An address as (is IPv6, 128-bit word).
fn word(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl Paths for ReplayPaths {
    fn path(&self, to: IpAddr) -> Option<Path> {
        let (v6, a) = word(to);
        let mtu = self
            .path_mtus
            .iter()
            .find(|&&(f, net, mask, _)| f == v6 && a & mask == net)
            .map_or(self.mtu, |&(_, _, _, m)| m);
        let local = match to {
            IpAddr::V4(a) => a == self.src,
            IpAddr::V6(a) => Some(a) == self.src6,
        };
        Some(Path {
            port: 0,
            next_hop: to,
            mtu,
            local,
        })
    }

    fn source(&self, to: IpAddr) -> Option<IpAddr> {
        match to {
            IpAddr::V4(_) => Some(IpAddr::V4(self.src)),
            IpAddr::V6(_) => self.src6.map(IpAddr::V6),
        }
    }
}

/// Parses `--path-mtu PREFIX=MTU` (e.g. `198.18.64.0/24=1400`).
pub fn parse_path_mtu(s: &str) -> Result<(IpAddr, u8, u16), String> {
    let (prefix, mtu) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected PREFIX=MTU, e.g. 198.18.64.0/24=1400"))?;
    let (addr, len) = match prefix.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (prefix, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = match len {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{l}` is not a prefix length (0-{max})"))?,
    };
    let mtu: u16 = mtu
        .parse()
        .ok()
        .filter(|m| *m >= 68)
        .ok_or_else(|| format!("`{mtu}` is not an MTU (68-65535)"))?;
    Ok((addr, len, mtu))
}

/// Seeds of the replay engine: constants, for reproducible output.
const HASH_SEED: u64 = 0x6c76_7364_7265_706c;
const RNG_SEED: u64 = 0x7265_706c_6179_0001;

#[derive(Default)]
struct Tally {
    frames: u64,
    not_ipv4: u64,
    passed: u64,
    /// Fragments kept until their datagram was whole.
    held: u64,
    sent: BTreeMap<&'static str, u64>,
    replies: BTreeMap<&'static str, u64>,
    drops: BTreeMap<&'static str, u64>,
    written: u64,
}

/// Runs the replay; returns the report (text or JSON) for stdout.
pub fn run(o: &Options) -> Result<String, String> {
    let file = o.config.display().to_string();
    let text = lvs_config::read(&o.config).map_err(|e| e.to_string())?;
    let cfg = lvs_config::parse_str(&text, &file).map_err(|e| e.to_string())?;
    let mut engine = Engine::with_seeds(HASH_SEED, RNG_SEED);
    crate::setup::apply(&mut engine, &cfg, &file, &text).map_err(|e| e.to_string())?;
    let input = std::fs::File::open(&o.pcap)
        .map_err(|e| format!("cannot open {}: {e}", o.pcap.display()))?;
    let mut reader = Reader::new(std::io::BufReader::new(input))
        .map_err(|e| format!("{}: {e}", o.pcap.display()))?;
    let link = reader.linktype;
    if ![
        pcap::LINKTYPE_ETHERNET,
        pcap::LINKTYPE_RAW,
        pcap::LINKTYPE_IPV4,
    ]
    .contains(&link)
    {
        return Err(format!(
            "{}: link type {link} is not supported (Ethernet or raw IP only)",
            o.pcap.display()
        ));
    }
    let mut writer = match &o.out {
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
            Some(
                Writer::new(std::io::BufWriter::new(f), pcap::LINKTYPE_RAW)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let mut path_mtus: Vec<(bool, u128, u128, u16)> = o
        .path_mtus
        .iter()
        .map(|&(a, len, mtu)| {
            let (v6, w) = word(a);
            let bits = if v6 { 128 } else { 32 };
            let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
            let mask = match len {
                0 => 0,
                l => (all << (bits - u32::from(l))) & all,
            };
            (v6, w & mask, mask, mtu)
        })
        .collect();
    path_mtus.sort_by_key(|&(_, _, mask, _)| std::cmp::Reverse(mask.count_ones()));
    let paths = ReplayPaths {
        src: o.src,
        src6: o.src6,
        mtu: o.mtu,
        path_mtus,
    };
    let mut t = Tally::default();
    let mut buf = vec![0u8; HEADROOM + 65536];
    let mut reply_buf = vec![0u8; 1600];
    let mut frag_buf = vec![0u8; 65536];
    let mut first_ns = None;
    let mut frag6_id = 0u32;
    let write =
        |w: &mut Option<Writer<_>>, ts: u64, bytes: &[u8], t: &mut Tally| -> Result<(), String> {
            t.written += 1;
            match w {
                Some(w) => w
                    .write(ts, bytes)
                    .map_err(|e| format!("writing the output: {e}")),
                None => Ok(()),
            }
        };
    while let Some(rec) = reader
        .next_record()
        .map_err(|e| format!("{}: {e}", o.pcap.display()))?
    {
        t.frames += 1;
        let Some(ip) = ip_of(link, &rec.data) else {
            t.not_ipv4 += 1;
            continue;
        };
        let base = *first_ns.get_or_insert(rec.ts_ns);
        // The engine's clock starts at 1 ms, as the daemon's never reads 0
        // after its first poll.
        let now = rec.ts_ns.saturating_sub(base) / 1_000_000 + 1;
        engine.handle_timeout(now);
        let len = ip.len().min(buf.len() - HEADROOM);
        buf[HEADROOM..HEADROOM + len].copy_from_slice(&ip[..len]);
        let mut pkt = PacketBuf::with_len(&mut buf, HEADROOM, len);
        let answer = engine.process(now, &mut pkt, &paths);
        // What a reply quotes: the packet as the engine left it.
        let quote = pkt.start..pkt.start + pkt.len;
        match answer {
            Transmit::Pass => t.passed += 1,
            Transmit::Held => t.held += 1,
            Transmit::Drop(r) => *t.drops.entry(r.name()).or_default() += 1,
            Transmit::Send(s) => {
                *t.sent.entry(method_name(s.method)).or_default() += 1;
                let bytes = &buf[s.start..s.start + s.len];
                match s.fragment {
                    None => write(&mut writer, rec.ts_ns, bytes, &mut t)?,
                    Some(mtu) => {
                        let mut frags = Vec::new();
                        let keep = |f: &[u8]| frags.push(f.to_vec());
                        if bytes.first().is_some_and(|b| b >> 4 == 6) {
                            frag6_id = frag6_id.wrapping_add(1);
                            lvs_core::wire::ipv6::fragment(
                                bytes,
                                usize::from(mtu),
                                frag6_id,
                                &mut frag_buf,
                                0,
                                keep,
                            );
                        } else {
                            lvs_core::wire::ipv4::fragment(
                                bytes,
                                usize::from(mtu),
                                &mut frag_buf,
                                0,
                                keep,
                            );
                        }
                        for f in frags {
                            write(&mut writer, rec.ts_ns, &f, &mut t)?;
                        }
                    }
                }
            }
            Transmit::Reply(r) => {
                *t.replies.entry(reply_name(&r)).or_default() += 1;
                let quoted = &buf[quote];
                let built = if quoted.first().is_some_and(|b| b >> 4 == 6) {
                    r.build_v6(quoted, &mut reply_buf, o.src6.map(|a| a.octets()))
                } else {
                    r.build(quoted, &mut reply_buf, Some(o.src.octets()))
                };
                if let Some(n) = built {
                    write(&mut writer, rec.ts_ns, &reply_buf[..n], &mut t)?;
                }
            }
        }
    }
    if let Some(w) = writer {
        w.finish().map_err(|e| format!("writing the output: {e}"))?;
    }
    Ok(if o.json {
        json(&engine, &t)
    } else {
        text_report(&engine, &t)
    })
}

/// The IP packet of a frame (one 802.1Q tag skipped), if it is one.
fn ip_of(link: u32, f: &[u8]) -> Option<&[u8]> {
    let ip = if link == pcap::LINKTYPE_ETHERNET {
        let mut off = 12;
        let mut ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        if ethertype == 0x8100 {
            off += 4;
            ethertype = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
        }
        if ethertype != 0x0800 && ethertype != 0x86dd {
            return None;
        }
        f.get(off + 2..)?
    } else {
        f
    };
    matches!(ip.first()? >> 4, 4 | 6).then_some(ip)
}

fn method_name(m: lvs_core::xmit::Method) -> &'static str {
    use lvs_core::xmit::Method;
    use lvs_core::TunnelType;
    match m {
        Method::Masq => "masq",
        Method::Route => "route",
        Method::Tunnel(TunnelType::Ipip) => "tunnel-ipip",
        Method::Tunnel(TunnelType::Gue) => "tunnel-gue",
        Method::Tunnel(TunnelType::Gre) => "tunnel-gre",
        Method::Forwarded => "forwarded",
    }
}

fn reply_name(r: &Reply) -> &'static str {
    use lvs_core::xmit::IcmpError;
    match r {
        Reply::TcpReset => "tcp-reset",
        Reply::Icmp { error, .. } => match error {
            IcmpError::PortUnreachable => "icmp-port-unreachable",
            IcmpError::FragNeeded { .. } => "icmp-frag-needed",
            IcmpError::TimeExceeded => "icmp-time-exceeded",
            IcmpError::Relay { .. } => "icmp-relayed",
        },
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "TCP",
        17 => "UDP",
        132 => "SCTP",
        _ => "?",
    }
}

fn text_report(e: &Engine, t: &Tally) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "frames: {} read, {} not IPv4, {} left to the host, {} fragments held for reassembly, {} written",
        t.frames, t.not_ipv4, t.passed, t.held, t.written
    );
    let list = |m: &BTreeMap<&str, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(s, "sent: {}", list(&t.sent));
    let _ = writeln!(s, "replies: {}", list(&t.replies));
    let _ = writeln!(s, "drops: {}", list(&t.drops));
    let _ = writeln!(s, "connections per destination:");
    for (svc, dests) in e.services() {
        let _ = writeln!(
            s,
            "  {} {}:{} {}",
            proto_name(svc.key.protocol),
            svc.key.addr,
            svc.key.port,
            svc.scheduler.name()
        );
        for d in dests {
            let _ = writeln!(
                s,
                "    -> {}:{} {:?} conns {} inpkts {} outpkts {}",
                d.addr, d.port, d.forward, d.stats.conns, d.stats.in_pkts, d.stats.out_pkts
            );
        }
    }
    s
}

fn json(e: &Engine, t: &Tally) -> String {
    let services: Vec<serde_json::Value> = e
        .services()
        .map(|(svc, dests)| {
            serde_json::json!({
                "protocol": proto_name(svc.key.protocol),
                "address": svc.key.addr.to_string(),
                "port": svc.key.port,
                "scheduler": svc.scheduler.name(),
                "destinations": dests.iter().map(|d| serde_json::json!({
                    "address": d.addr.to_string(),
                    "port": d.port,
                    "forward": format!("{:?}", d.forward),
                    "conns": d.stats.conns,
                    "inpkts": d.stats.in_pkts,
                    "outpkts": d.stats.out_pkts,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let drops_all: BTreeMap<&str, u64> = DropReason::ALL
        .iter()
        .map(|r| (r.name(), t.drops.get(r.name()).copied().unwrap_or(0)))
        .collect();
    let v = serde_json::json!({
        "frames": t.frames,
        "not_ipv4": t.not_ipv4,
        "passed": t.passed,
        "held": t.held,
        "written": t.written,
        "sent": t.sent,
        "replies": t.replies,
        "drops": drops_all,
        "services": services,
    });
    let mut out = serde_json::to_string_pretty(&v).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_mtu_prefixes_of_both_families() {
        assert_eq!(
            parse_path_mtu("198.18.64.0/24=1400"),
            Ok(("198.18.64.0".parse().unwrap(), 24, 1400))
        );
        assert_eq!(
            parse_path_mtu("2001:db8:64::11=1280"),
            Ok(("2001:db8:64::11".parse().unwrap(), 128, 1280))
        );
        assert!(parse_path_mtu("2001:db8::/129=1280").is_err());
        assert!(parse_path_mtu("198.18.0.0/33=1400").is_err());
        let p = ReplayPaths {
            src: Ipv4Addr::new(198, 18, 1, 1),
            src6: None,
            mtu: 1500,
            path_mtus: vec![
                (
                    true,
                    u128::from("2001:db8:64::".parse::<Ipv6Addr>().unwrap()),
                    u128::MAX << 64,
                    1280,
                ),
                (
                    false,
                    u128::from(0xc612_4000u32),
                    u128::from(0xffff_ff00u32),
                    1400,
                ),
            ],
        };
        let mtu = |a: &str| p.path(a.parse().unwrap()).unwrap().mtu;
        assert_eq!(mtu("2001:db8:64::11"), 1280);
        assert_eq!(mtu("2001:db8:65::11"), 1500);
        assert_eq!(mtu("198.18.64.9"), 1400);
        // An IPv4 address never matches an IPv6 prefix with the same bits.
        assert_eq!(mtu("198.18.65.9"), 1500);
    }

    #[test]
    fn frames_of_any_shape_never_panic_the_link_layer() {
        let mut x: u32 = 0x9e37_79b9;
        for n in 0..20_000usize {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x as usize) % 80;
            let mut f: Vec<u8> = (0..len).map(|i| (x >> (i % 24)) as u8).collect();
            // Often a VLAN tag or IPv4 ethertype, to reach the inner paths.
            if len > 17 && n % 3 == 0 {
                f[12..14].copy_from_slice(&[0x81, 0x00]);
                f[16..18].copy_from_slice(&[0x08, 0x00]);
            } else if len > 14 && n % 3 == 1 {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            for link in [pcap::LINKTYPE_ETHERNET, pcap::LINKTYPE_RAW] {
                if let Some(ip) = ip_of(link, &f) {
                    assert!(matches!(ip[0] >> 4, 4 | 6), "{ip:?}");
                }
            }
        }
        // A tagged IPv4 frame gives the packet after the tag.
        let mut f = vec![0u8; 18 + 20];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[16..18].copy_from_slice(&[0x08, 0x00]);
        f[18] = 0x45;
        assert_eq!(
            ip_of(pcap::LINKTYPE_ETHERNET, &f).map(|p| p.len()),
            Some(20)
        );
    }
}
