//! ipvsadm-compatible text renderings (spec `ipvsadm.md` §7–§8).
//!
//! All functions are pure and produce the exact bytes ipvsadm prints in
//! numeric mode (`-n`). Non-numeric mode is rendered numerically as well:
//! there are no reverse-DNS or services-database lookups, on purpose (the
//! output of ipvsadm without `-n` depends on the resolver anyway).

use crate::proto::{
    ConnInfo, DestInfo, ErrorKind, Forward, Protocol, ServiceInfo, ServiceKey, StatsInfo, Timeouts,
    Tunnel, TunnelCsum, TunnelType,
};
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// Column layout of a service listing (§8.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListMode {
    /// `Forward Weight ActiveConn InActConn`.
    #[default]
    Default,
    /// `--thresholds`.
    Thresholds,
    /// `--persistent-conn`.
    PersistentConn,
    /// `--tun-info`: the TunnelInfo column (`n/a`, `ipip`, `gue:PORT:F`, `gre:F`).
    TunInfo,
    /// `--stats`; `exact` is `--exact` (§7.3).
    Stats { exact: bool },
    /// `--rate`; `exact` is `--exact` (§7.3).
    Rate { exact: bool },
}

/// Options of a service listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub mode: ListMode,
    /// `--nosort`: keep the daemon's order.
    pub nosort: bool,
}

/// `IP Virtual Server version 1.2.1 (size=N)` line.
pub fn header(conn_tab_size: u32) -> String {
    format!("IP Virtual Server version 1.2.1 (size={conn_tab_size})\n")
}

/// The two column title lines of §8.2.
pub fn titles(mode: ListMode) -> String {
    match mode {
        ListMode::Default => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string(),
        ListMode::TunInfo => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string(),
        ListMode::Thresholds => format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListMode::PersistentConn => format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        ListMode::Stats { .. } => format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListMode::Rate { .. } => format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
    }
}

/// One number of a `--stats`/`--rate` line, its field including the leading
/// space (§7.3): K/M/G/T-scaled by default, every digit with `--exact`.
pub fn push_big(out: &mut String, n: u64, exact: bool) {
    let _ = if exact {
        write!(out, " {n:>8}")
    } else if n < 100_000_000 {
        write!(out, "{n:>9}")
    } else if n < 1_000_000_000 {
        write!(out, "{:>8}K", n / 1_000)
    } else if n < 100_000_000_000 {
        write!(out, "{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        write!(out, "{:>8}G", n / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", n / 1_000_000_000_000)
    };
}

/// The low 32 bits: ipvsadm 1.31 reads these fields of a real server's
/// netlink statistics as 32-bit values (§8.4, known quirk).
fn low32(n: u64) -> u64 {
    n & 0xffff_ffff
}

/// `-L -n` (and `-L`): header, titles, every service with its real servers.
pub fn list(conn_tab_size: u32, services: &[ServiceInfo], opts: &ListOptions) -> String {
    let mut out = header(conn_tab_size);
    out.push_str(&titles(opts.mode));
    let mut order: Vec<&ServiceInfo> = services.iter().collect();
    if !opts.nosort {
        merge_sort(&mut order, |a, b| cmp_services(&a.spec.key, &b.spec.key));
    }
    for svc in order {
        push_service(&mut out, svc, opts);
    }
    out
}

/// `-L -n -t ADDR:PORT`: titles and one service, no version header.
pub fn list_one(service: &ServiceInfo, opts: &ListOptions) -> String {
    let mut out = titles(opts.mode);
    push_service(&mut out, service, opts);
    out
}

/// `-L -n -c`: the connection table (daemon order, not sorted).
pub fn connections(conns: &[ConnInfo]) -> String {
    let mut out = connections_header();
    out.push_str(&connection_rows(conns));
    out
}

/// The two title lines of `-L -c`.
pub fn connections_header() -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    out
}

/// The entry lines of `-L -c` (a listing printed as its parts arrive).
pub fn connection_rows(conns: &[ConnInfo]) -> String {
    let mut out = String::new();
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.protocol,
            expire,
            c.state,
            addrport(c.caddr, c.cport),
            addrport(c.vaddr, c.vport),
            addrport(c.daddr, c.dport)
        );
    }
    out
}

/// `-L --timeout`.
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcpfin, t.udp
    )
}

/// `-S -n` (§8.9): rules in restore format, sorted unless `nosort`.
pub fn save(services: &[ServiceInfo], nosort: bool) -> String {
    let mut out = String::new();
    let mut order: Vec<&ServiceInfo> = services.iter().collect();
    if !nosort {
        merge_sort(&mut order, |a, b| cmp_services(&a.spec.key, &b.spec.key));
    }
    for svc in order {
        let spec = &svc.spec;
        let sopt = save_service(&spec.key);
        let _ = write!(out, "-A {sopt} -s {}", spec.scheduler);
        if let Some(t) = spec.persistent {
            let _ = write!(out, " -p {t}");
            match spec.key.addr {
                IpAddr::V4(_) if spec.netmask != u32::MAX => {
                    let _ = write!(out, " -M {}", Ipv4Addr::from(spec.netmask));
                }
                IpAddr::V6(_) if spec.netmask != 128 => {
                    let _ = write!(out, " -M {}", spec.netmask);
                }
                _ => {}
            }
        }
        if spec.one_packet {
            out.push_str(" -o");
        }
        if let Some(flags) = sched_flags_text(&spec.scheduler, spec.sched_flags) {
            let _ = write!(out, " -b {flags}");
        }
        out.push('\n');
        let mut dests: Vec<&DestInfo> = svc.dests.iter().collect();
        if !nosort {
            merge_sort(&mut dests, |a, b| cmp_dests(a, b));
        }
        for d in dests {
            let m = match d.forward {
                Forward::Masq => "-m",
                Forward::Tunnel => "-i",
                Forward::Route | Forward::Local => "-g",
            };
            let _ = write!(
                out,
                "-a {sopt} -r {} {m} -w {}",
                addrport(d.addr, d.port),
                d.weight
            );
            if d.forward == Forward::Tunnel {
                push_tunnel_options(&mut out, &d.tunnel);
            }
            out.push('\n');
        }
    }
    out
}

/// The tunnel options of a tunnelling real server's save line (§8.9):
/// ` --tun-type ipip`, ` --tun-type gue --tun-port P CSUM`,
/// ` --tun-type gre CSUM`.
fn push_tunnel_options(out: &mut String, t: &Tunnel) {
    let _ = write!(out, " --tun-type {}", t.kind.label());
    let csum = match t.csum {
        TunnelCsum::NoCsum => "--tun-nocsum",
        TunnelCsum::Csum => "--tun-csum",
        TunnelCsum::RemCsum => "--tun-remcsum",
    };
    match t.kind {
        TunnelType::Ipip => {}
        TunnelType::Gue => {
            let _ = write!(out, " --tun-port {} {csum}", t.port);
        }
        TunnelType::Gre => {
            let _ = write!(out, " {csum}");
        }
    }
}

/// The TunnelInfo column of `--tun-info` (§8.4): `n/a` for other methods,
/// `ipip`, `gue:{port}:{f}` or `gre:{f}` with f = `-c`, `+c` or `r+c`.
pub fn tunnel_info(d: &DestInfo) -> String {
    if d.forward != Forward::Tunnel {
        return "n/a".to_string();
    }
    let t = &d.tunnel;
    let f = match t.csum {
        TunnelCsum::NoCsum => "-c",
        TunnelCsum::Csum => "+c",
        TunnelCsum::RemCsum => "r+c",
    };
    match t.kind {
        TunnelType::Ipip => "ipip".to_string(),
        TunnelType::Gue => format!("gue:{}:{f}", t.port),
        TunnelType::Gre => format!("gre:{f}"),
    }
}

/// The service option of a save line: `-t ADDR:PORT`, …, `-f MARK [-6]`.
fn save_service(k: &ServiceKey) -> String {
    let opt = match k.protocol {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
        Protocol::Fwmark => {
            let v6 = if k.addr.is_ipv6() { " -6" } else { "" };
            return format!("-f {}{v6}", k.mark().unwrap_or(0));
        }
    };
    format!("{opt} {}", addrport(k.addr, k.port))
}

/// `-L --daemon` (spec §8.8): master first, then backup, each only if
/// running, with the effective values.
pub fn daemons(list: &[crate::DaemonConfig]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for role in [crate::SyncRole::Master, crate::SyncRole::Backup] {
        for d in list.iter().filter(|d| d.role == role) {
            let name = if role == crate::SyncRole::Master {
                "master"
            } else {
                "backup"
            };
            let _ = write!(
                out,
                "{name} sync daemon (mcast={}, syncid={}",
                d.ifname, d.syncid
            );
            if d.maxlen != 0 {
                let _ = write!(out, ", maxlen={}", d.maxlen);
            }
            if let Some(g) = d.group {
                let _ = write!(out, ", group={g}");
            }
            if d.port != 0 {
                let _ = write!(out, ", port={}", d.port);
            }
            if d.ttl != 0 {
                let _ = write!(out, ", ttl={}", d.ttl);
            }
            out.push_str(")\n");
        }
    }
    out
}

/// The ipvsadm message for a daemon error (spec §6).
pub fn error_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ServiceExists => "Service already exists",
        ErrorKind::SchedulerNotFound => "Scheduler or persistence engine not found",
        ErrorKind::NoSuchService => "No such service",
        ErrorKind::ServiceNotDefined => "Service not defined",
        ErrorKind::DestExists => "Destination already exists",
        ErrorKind::NoSuchDest => "No such destination",
        ErrorKind::Invalid => {
            "Invalid operation.  Possibly wrong module version, address not unicast, ..."
        }
        ErrorKind::NotSupported => "Operation not supported with IPv6",
        ErrorKind::OutOfRange => "Numerical result out of range",
        ErrorKind::BadRequest => {
            "lvsd could not decode the request (lvsadm/lvsd version mismatch?)"
        }
        ErrorKind::DaemonRunning => "Daemon has already run",
        ErrorKind::NoDaemon => "No daemon is running",
        ErrorKind::NoDevice => "No such device",
    }
}

/// Numeric addrport (§7.1): `a.b.c.d:port` or `[v6]:port` (RFC 5952).
pub fn addrport(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Scheduler flags text of §8.3, `None` when no flag bit is set.
pub fn sched_flags_text(scheduler: &str, flags: u32) -> Option<String> {
    let names: [&str; 3] = match scheduler {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let parts: Vec<&str> = [0x08u32, 0x10, 0x20]
        .iter()
        .zip(names)
        .filter(|(bit, _)| flags & **bit != 0)
        .map(|(_, n)| n)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(","))
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Service label `L` of §8.3 (cut to 33 characters for IPv4).
pub fn service_label(key: &ServiceKey) -> String {
    if let Some(mark) = key.mark() {
        let v6 = if key.addr.is_ipv6() { " IPv6" } else { "" };
        return format!("FWM  {mark}{v6}");
    }
    let s = format!(
        "{:<4} {}",
        key.protocol.label(),
        addrport(key.addr, key.port)
    );
    match key.addr {
        IpAddr::V4(_) => cut(s, 33),
        IpAddr::V6(_) => s,
    }
}

fn dest_label(d: &DestInfo) -> String {
    let s = addrport(d.addr, d.port);
    match d.addr {
        IpAddr::V4(_) => cut(s, 28),
        IpAddr::V6(_) => s,
    }
}

fn push_service(out: &mut String, svc: &ServiceInfo, opts: &ListOptions) {
    if let ListMode::Stats { exact } | ListMode::Rate { exact } = opts.mode {
        return push_service_stats(out, svc, opts, exact);
    }
    let spec = &svc.spec;
    out.push_str(&service_label(&spec.key));
    out.push(' ');
    out.push_str(&spec.scheduler);
    if let Some(flags) = sched_flags_text(&spec.scheduler, spec.sched_flags) {
        let _ = write!(out, " ({flags})");
    }
    if let Some(t) = spec.persistent {
        let _ = write!(out, " persistent {t}");
        match spec.key.addr {
            IpAddr::V4(_) if spec.netmask != u32::MAX => {
                let _ = write!(out, " mask {}", Ipv4Addr::from(spec.netmask));
            }
            IpAddr::V6(_) if spec.netmask != 128 => {
                let _ = write!(out, " mask {}", spec.netmask);
            }
            _ => {}
        }
    }
    if spec.one_packet {
        out.push_str(" ops");
    }
    out.push('\n');
    let mut dests: Vec<&DestInfo> = svc.dests.iter().collect();
    if !opts.nosort {
        merge_sort(&mut dests, |a, b| cmp_dests(a, b));
    }
    for d in dests {
        let label = dest_label(d);
        let _ = match opts.mode {
            ListMode::Default => writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                label,
                d.forward.label(),
                d.weight,
                d.active_conns,
                d.inact_conns
            ),
            ListMode::Thresholds => writeln!(
                out,
                "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
                label, d.u_threshold, d.l_threshold, d.active_conns, d.inact_conns
            ),
            ListMode::PersistentConn => writeln!(
                out,
                "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                label, d.weight, d.persist_conns, d.active_conns, d.inact_conns
            ),
            ListMode::TunInfo => writeln!(
                out,
                "  -> {:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                label,
                d.forward.label(),
                tunnel_info(d),
                d.weight,
                d.active_conns,
                d.inact_conns
            ),
            // Handled by `push_service_stats`.
            ListMode::Stats { .. } | ListMode::Rate { .. } => Ok(()),
        };
    }
}

/// A service and its real servers in `--stats` or `--rate` layout (§8.3, §8.4).
fn push_service_stats(out: &mut String, svc: &ServiceInfo, opts: &ListOptions, exact: bool) {
    let rate = matches!(opts.mode, ListMode::Rate { .. });
    let s = svc.stats.unwrap_or_default();
    let _ = write!(out, "{:<33}", service_label(&svc.spec.key));
    let five = if rate {
        [s.cps, s.in_pps, s.out_pps, s.in_bps, s.out_bps]
    } else {
        [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
    };
    for n in five {
        push_big(out, n, exact);
    }
    out.push('\n');
    let mut dests: Vec<&DestInfo> = svc.dests.iter().collect();
    if !opts.nosort {
        merge_sort(&mut dests, |a, b| cmp_dests(a, b));
    }
    for d in dests {
        let st: StatsInfo = d.stats.unwrap_or_default();
        let label = dest_label(d);
        if rate {
            // Plain numbers for the first three, no K/M suffixes (§8.4).
            let _ = write!(
                out,
                "  -> {:<28} {:>8} {:>8} {:>8}",
                label,
                low32(st.cps),
                low32(st.in_pps),
                low32(st.out_pps)
            );
            push_big(out, low32(st.in_bps), exact);
            push_big(out, low32(st.out_bps), exact);
        } else {
            let _ = write!(out, "  -> {label:<28}");
            for n in [
                low32(st.conns),
                low32(st.in_pkts),
                low32(st.out_pkts),
                st.in_bytes,
                st.out_bytes,
            ] {
                push_big(out, n, exact);
            }
        }
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------
// Sorting (§7.2)

/// Address family number as ipvsadm compares it (AF_INET 2, AF_INET6 10).
fn af(addr: &IpAddr) -> i32 {
    match addr {
        IpAddr::V4(_) => 2,
        IpAddr::V6(_) => 10,
    }
}

/// The address as four host-order words, the layout of `union nf_inet_addr`
/// (an IPv4 address occupies the first word, the rest is zero).
fn words(addr: &IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from(*a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// ipvsadm's address comparison: wrapping 32-bit differences as `i32`; the
/// family of the left operand picks one word (IPv4) or four (IPv6).
fn cmp_addr(a: &IpAddr, b: &IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if a.is_ipv4() { 1 } else { 4 };
    for i in 0..n {
        let r = wa[i].wrapping_sub(wb[i]) as i32;
        if r != 0 {
            return r;
        }
    }
    0
}

/// ipvsadm's service comparator (three-way, sign matters). There is no
/// fwmark yet, so step 1 (fwmark) is always equal.
pub fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> i32 {
    // Step 1: the mark (0 for the others), as a wrapping difference.
    let r = a.mark().unwrap_or(0).wrapping_sub(b.mark().unwrap_or(0)) as i32;
    if r != 0 {
        return r;
    }
    let r = af(&a.addr) - af(&b.addr);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.protocol.number()) - i32::from(b.protocol.number());
    if r != 0 {
        return r;
    }
    let r = cmp_addr(&a.addr, &b.addr);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// ipvsadm's real-server comparator: address then port.
pub fn cmp_dests(a: &DestInfo, b: &DestInfo) -> i32 {
    let r = cmp_addr(&a.addr, &b.addr);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// glibc's `qsort` merge sort (`msort_with_tmp`): top-down, the left half has
/// `n / 2` elements, ties and "less or equal" take the left element. The
/// comparators above are not transitive, so `slice::sort_by` (which may
/// panic or reorder differently on such comparators) is not used.
pub fn merge_sort<T: Copy>(v: &mut [T], cmp: impl Fn(&T, &T) -> i32) {
    let mut tmp: Vec<T> = v.to_vec();
    msort(v, &mut tmp, &cmp);
}

fn msort<T: Copy>(b: &mut [T], tmp: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = b.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (b1, b2) = b.split_at_mut(n1);
        msort(b1, &mut tmp[..n1], cmp);
        msort(b2, &mut tmp[n1..], cmp);
    }
    let (mut i, mut j, mut k) = (0, n1, 0);
    while i < n1 && j < n {
        if cmp(&b[i], &b[j]).cmp(&0) != Ordering::Greater {
            tmp[k] = b[i];
            i += 1;
        } else {
            tmp[k] = b[j];
            j += 1;
        }
        k += 1;
    }
    while i < n1 {
        tmp[k] = b[i];
        i += 1;
        k += 1;
    }
    // Elements b[j..] are already in place.
    b[..k].copy_from_slice(&tmp[..k]);
}

#[cfg(test)]
mod tests;
