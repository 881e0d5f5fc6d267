//! keepalived.conf → the director language.
//!
//! Mapped: `virtual_server IP PORT`, `virtual_server group NAME` with its
//! `virtual_server_group` (one director per member address, ranges
//! `A.B.C.X-Y` expanded), `lb_algo`/`lvs_sched` (kernel names),
//! `lb_kind`/`lvs_method` NAT / DR / TUN (with `tun_type`, `tun_port`,
//! `tun_nocsum`/`tun_csum`/`tun_remcsum`), `protocol`, `persistence_timeout`,
//! `persistence_granularity`, `ops`, `delay_loop` (check interval),
//! `sorry_server`, `virtualhost`; real servers' `weight`, `uthreshold`,
//! `lthreshold`, `inhibit_on_failure`; checkers `TCP_CHECK`, `HTTP_GET`
//! (first `url`'s `path` and `status_code`), `PING_CHECK`, with
//! `connect_timeout` → check timeout, `connect_port` → check port,
//! `retry`/`nb_get_retry` N → `fall N+1` (keepalived takes a server out
//! after the first failure and N failed retries).
//!
//! `virtual_server fwmark N` becomes `director fwmN mark N` (its flows —
//! which packets carry the mark — are for the operator to write: noted).
//!
//! Not mapped, and listed as such: fwmark group members,
//! `SSL_GET` (lvsd's HTTP check has no TLS: imported as a TCP check),
//! `MISC_CHECK`, `SMTP_CHECK`, `DNS_CHECK`, `UDP_CHECK`, `FILE_CHECK`,
//! `BFD_CHECK`, `digest`, `delay_before_retry` (lvsd checks again at the
//! next interval), `alpha`/`omega`/`quorum`/`hysteresis`, notify scripts,
//! and every block other than virtual servers (VRRP, global_defs, …).

use super::{finish, persistence, Dir, Srv};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// One statement: its words on one line, and its block if `{` follows.
#[derive(Debug)]
struct Node {
    line: usize,
    words: Vec<String>,
    block: Option<Vec<Node>>,
}

impl Node {
    fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }

    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Words per line (`#` and `!` start comments, `"…"` quotes), braces as
/// words of their own.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |w: &mut String, out: &mut Vec<(usize, String)>| {
            if !w.is_empty() {
                out.push((n + 1, std::mem::take(w)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' | '!' if word.is_empty() => break,
                '"' => {
                    for q in chars.by_ref() {
                        if q == '"' {
                            break;
                        }
                        word.push(q);
                    }
                }
                '{' | '}' => {
                    flush(&mut word, &mut out);
                    out.push((n + 1, c.to_string()));
                }
                c if c.is_whitespace() => flush(&mut word, &mut out),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut out);
    }
    out
}

/// Statements until the matching `}` (or the end at depth 0).
fn parse(toks: &[(usize, String)], pos: &mut usize, depth: usize) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let (line, w) = &toks[*pos];
        if w == "}" {
            if depth == 0 {
                return Err(format!("line {line}: `}}` without a block to close"));
            }
            *pos += 1;
            return Ok(nodes);
        }
        if depth > 16 {
            return Err(format!("line {line}: blocks nested too deep"));
        }
        let mut node = Node {
            line: *line,
            words: Vec::new(),
            block: None,
        };
        while *pos < toks.len()
            && toks[*pos].0 == *line
            && toks[*pos].1 != "{"
            && toks[*pos].1 != "}"
        {
            node.words.push(toks[*pos].1.clone());
            *pos += 1;
        }
        if *pos < toks.len() && toks[*pos].1 == "{" {
            *pos += 1;
            node.block = Some(parse(toks, pos, depth + 1)?);
        }
        if node.words.is_empty() && node.block.is_none() {
            continue;
        }
        nodes.push(node);
    }
    if depth > 0 {
        return Err("a block is not closed (missing `}`)".into());
    }
    Ok(nodes)
}

/// A checker as lvsd can run it.
#[derive(Clone, PartialEq)]
enum Method {
    Tcp,
    Http {
        path: String,
        status: Option<String>,
    },
    Icmp,
}

struct Checker {
    method: Method,
    params: String,
}

fn num(n: &Node, i: usize, what: &str) -> Result<u32, String> {
    n.arg(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("line {}: `{}` needs {what}", n.line, n.key()))
}

/// A checker block → lvsd's method and `check` parameters, or a note.
fn checker(c: &Node, notes: &mut Vec<String>) -> Result<Option<Checker>, String> {
    let method = match c.key() {
        "TCP_CHECK" => Method::Tcp,
        "HTTP_GET" => {
            let url = c.children().iter().find(|u| u.key() == "url");
            let get = |k: &str| {
                url.and_then(|u| u.children().iter().find(|x| x.key() == k))
                    .and_then(|x| x.arg(1))
                    .map(str::to_string)
            };
            if url.is_some_and(|u| u.children().iter().any(|x| x.key() == "digest")) {
                notes.push(format!(
                    "line {}: HTTP_GET digest (the status code is checked)",
                    c.line
                ));
            }
            Method::Http {
                path: get("path").unwrap_or_else(|| "/".into()),
                status: get("status_code"),
            }
        }
        "SSL_GET" => {
            notes.push(format!(
                "line {}: SSL_GET (lvsd's HTTP check has no TLS): imported as a TCP check",
                c.line
            ));
            Method::Tcp
        }
        "PING_CHECK" => Method::Icmp,
        other => {
            notes.push(format!(
                "line {}: {other} (no equivalent check): the server is left unchecked",
                c.line
            ));
            return Ok(None);
        }
    };
    let mut params = String::new();
    for p in c.children() {
        match p.key() {
            "connect_timeout" => {
                let _ = write!(params, " timeout {}", num(p, 1, "seconds")?.max(1));
            }
            "connect_port" => {
                let _ = write!(params, " port {}", num(p, 1, "a port")?);
            }
            "retry" | "nb_get_retry" => {
                let _ = write!(params, " fall {}", num(p, 1, "a count")?.saturating_add(1));
            }
            "bindto" => {
                let _ = write!(params, " source {}", p.arg(1).unwrap_or(""));
            }
            "delay_before_retry" => notes.push(format!(
                "line {}: delay_before_retry (lvsd checks again at the next interval)",
                p.line
            )),
            "url" | "connect_ip" | "warmup" => {}
            other => notes.push(format!("line {}: {} option `{other}`", p.line, c.key())),
        }
    }
    Ok(Some(Checker { method, params }))
}

/// A `vrrp_instance` as lvsd's `vrrp` statement: interface, router id,
/// priority, advertisement interval, preemption and the virtual addresses
/// (of the first address's family: one family per lvsd instance). The
/// older `lvs_sync_daemon_interface` inside it becomes a `sync vrrp` line.
fn vrrp_instance(n: &Node, out: &mut String, notes: &mut Vec<String>) -> Result<(), String> {
    let name = n
        .arg(1)
        .ok_or_else(|| format!("line {}: vrrp_instance needs a name", n.line))?;
    let (mut iface, mut id) = (None, None);
    let mut opts = String::new();
    let mut addrs: Vec<IpAddr> = Vec::new();
    for c in n.children() {
        let arg = c.arg(1).unwrap_or("");
        match c.key() {
            "interface" => iface = Some(arg.to_string()),
            "virtual_router_id" => id = Some(num(c, 1, "a router id")?),
            "priority" => {
                let p = num(c, 1, "a priority")?;
                // keepalived gives an address owner 255; lvsd keeps 1–255.
                let _ = write!(opts, " priority {}", p.clamp(1, 255));
            }
            "advert_int" => {
                let s: f64 = arg
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.01..=40.95).contains(s))
                    .ok_or_else(|| format!("line {}: bad advert_int `{arg}`", c.line))?;
                let _ = write!(opts, " advert {s}");
            }
            "nopreempt" => opts.push_str(" nopreempt"),
            "preempt_delay" => {
                let _ = write!(opts, " preempt-delay {}", num(c, 1, "seconds")?);
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for a in c.children() {
                    let text = a.key();
                    let ip = text.split('/').next().unwrap_or("");
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| format!("line {}: bad virtual address `{text}`", a.line))?;
                    if a.words.len() > 1 {
                        notes.push(format!(
                            "line {}: options of virtual address {ip} (lvsd holds it on the instance's interface)",
                            a.line
                        ));
                    }
                    match addrs.first() {
                        Some(f) if f.is_ipv4() != ip.is_ipv4() => notes.push(format!(
                            "line {}: virtual address {ip} of the other family (write a second `vrrp` line with its own id)",
                            a.line
                        )),
                        _ => addrs.push(ip),
                    }
                }
            }
            "lvs_sync_daemon_interface" => sync_line(out, name, arg, ""),
            "state" => notes.push(format!(
                "line {}: state {arg} (lvsd starts every instance as backup; the election decides)",
                c.line
            )),
            "authentication" => notes.push(format!(
                "line {}: authentication (VRRP version 3 has none; lvsd speaks version 3)",
                c.line
            )),
            "version" if arg != "3" => notes.push(format!(
                "line {}: version {arg} (lvsd speaks VRRP version 3; set keepalived's peers to `version 3`)",
                c.line
            )),
            "version" => {}
            other => notes.push(format!("line {}: vrrp_instance `{other}`", c.line)),
        }
    }
    let iface =
        iface.ok_or_else(|| format!("line {}: vrrp_instance {name} has no interface", n.line))?;
    let id = id.ok_or_else(|| {
        format!(
            "line {}: vrrp_instance {name} has no virtual_router_id",
            n.line
        )
    })?;
    if addrs.is_empty() {
        return Err(format!(
            "line {}: vrrp_instance {name} has no virtual_ipaddress",
            n.line
        ));
    }
    let _ = write!(out, "vrrp {name} interface {iface} id {id}{opts}");
    for a in addrs {
        let _ = write!(out, " address {a}");
    }
    out.push('\n');
    Ok(())
}

/// A `sync vrrp` line: the sync daemon follows instance `name`.
fn sync_line(out: &mut String, name: &str, iface: &str, rest: &str) {
    let _ = writeln!(out, "sync vrrp {name} interface {iface}{rest}");
}

/// `global_defs`: `lvs_sync_daemon IF INSTANCE [id N] [maxlen N] [port N]
/// [ttl N] [group ADDR]` becomes a `sync vrrp` line; the rest is noted.
fn global_defs(n: &Node, out: &mut String, notes: &mut Vec<String>) {
    for c in n.children() {
        match (c.key(), c.arg(1), c.arg(2)) {
            ("lvs_sync_daemon", Some(iface), Some(inst)) => {
                let mut rest = String::new();
                let mut i = 3;
                while let (Some(k), Some(v)) = (c.arg(i), c.arg(i + 1)) {
                    let k = match k {
                        "id" => "syncid",
                        "maxlen" | "port" | "ttl" | "group" => k,
                        _ => {
                            notes.push(format!("line {}: lvs_sync_daemon `{k}`", c.line));
                            i += 2;
                            continue;
                        }
                    };
                    let _ = write!(rest, " {k} {v}");
                    i += 2;
                }
                sync_line(out, inst, iface, &rest);
            }
            (k, _, _) => notes.push(format!("line {}: global_defs `{k}`", c.line)),
        }
    }
}

/// The member addresses of a `virtual_server_group` (ranges expanded).
fn members(g: &Node, notes: &mut Vec<String>) -> Result<Vec<(IpAddr, u16)>, String> {
    let mut v = Vec::new();
    for m in g.children() {
        if m.key() == "fwmark" {
            notes.push(format!(
                "line {}: group member fwmark {} (write a `director … mark {}` with its `flow` lines)",
                m.line,
                m.arg(1).unwrap_or(""),
                m.arg(1).unwrap_or("")
            ));
            continue;
        }
        let port: u16 = m
            .arg(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("line {}: a group member needs `ADDRESS PORT`", m.line))?;
        let a = m.key();
        match a.split_once('-') {
            Some((first, last)) => {
                let first: Ipv4Addr = first
                    .parse()
                    .map_err(|_| format!("line {}: bad address range `{a}`", m.line))?;
                let last: u8 = last
                    .parse()
                    .map_err(|_| format!("line {}: bad address range `{a}`", m.line))?;
                let o = first.octets();
                if last < o[3] {
                    return Err(format!("line {}: empty address range `{a}`", m.line));
                }
                for x in o[3]..=last {
                    v.push((IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)), port));
                }
            }
            None => v.push((
                a.parse()
                    .map_err(|_| format!("line {}: bad address `{a}`", m.line))?,
                port,
            )),
        }
    }
    Ok(v)
}

/// A `virtual_server` block as one director (for one address).
fn director(
    vs: &Node,
    name: String,
    vip: (IpAddr, u16),
    notes: &mut Vec<String>,
) -> Result<(Dir, u16), String> {
    let mut d = Dir {
        name,
        protocol: "TCP",
        balance: "wlc".into(),
        ..Dir::default()
    };
    let mut method = "nat".to_string();
    let mut tun = (String::new(), String::new());
    let (mut persist, mut granularity): (Option<u32>, Option<String>) = (None, None);
    let mut interval: Option<u32> = None;
    let mut vhost: Option<String> = None;
    for s in vs.children() {
        match s.key() {
            "lb_algo" | "lvs_sched" => {
                let a = s.arg(1).unwrap_or("");
                if lvs_core::sched::by_name(a).is_none() {
                    return Err(format!("line {}: unknown scheduler `{a}`", s.line));
                }
                d.balance = a.into();
            }
            "lb_kind" | "lvs_method" => {
                method = match s.arg(1).unwrap_or("") {
                    "NAT" => "nat".into(),
                    "DR" => "gateway".into(),
                    "TUN" => "tunnel".into(),
                    other => return Err(format!("line {}: unknown lb_kind `{other}`", s.line)),
                }
            }
            "tun_type" => tun.0 = s.arg(1).unwrap_or("ipip").to_string(),
            "tun_port" => tun.0 = format!("gue port {}", num(s, 1, "a port")?),
            "tun_nocsum" => tun.1.clear(),
            "tun_csum" => tun.1 = "csum".into(),
            "tun_remcsum" => tun.1 = "remcsum".into(),
            "protocol" => {
                d.protocol = match s.arg(1).unwrap_or("") {
                    "TCP" => "TCP",
                    "UDP" => "UDP",
                    "SCTP" => "SCTP",
                    other => return Err(format!("line {}: unknown protocol `{other}`", s.line)),
                }
            }
            "persistence_timeout" => persist = Some(num(s, 1, "seconds")?),
            "persistence_granularity" => granularity = s.arg(1).map(str::to_string),
            "ops" => d.options.push("option onepacket".into()),
            "delay_loop" => interval = Some(num(s, 1, "seconds")?),
            "virtualhost" => vhost = s.arg(1).map(str::to_string),
            "real_server" | "sorry_server" | "ip_family" => {}
            other => notes.push(format!("line {}: virtual_server option `{other}`", s.line)),
        }
    }
    if method == "tunnel" {
        let t = [tun.0.as_str(), tun.1.as_str()].join(" ");
        let t = t.trim();
        if !t.is_empty() && t != "ipip" {
            method = format!("tunnel {t}");
        }
    }
    if let Some(t) = persist {
        let v6 = vip.0.is_ipv6();
        let mask = match &granularity {
            None if v6 => 128,
            None => u32::MAX,
            Some(g) if v6 => g
                .parse()
                .map_err(|_| format!("bad persistence_granularity `{g}`"))?,
            Some(g) => u32::from(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| format!("bad persistence_granularity `{g}`"))?,
            ),
        };
        d.options.push(persistence(t, mask, v6));
    }
    d.addr = match vip.1 {
        0 => match vip.0 {
            IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        },
        p => super::endpoint(vip.0, p),
    };
    let mut chosen: Option<Method> = None;
    for s in vs.children() {
        let sorry = s.key() == "sorry_server";
        if !sorry && s.key() != "real_server" {
            continue;
        }
        let addr: IpAddr = s
            .arg(1)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("line {}: `{}` needs `ADDRESS PORT`", s.line, s.key()))?;
        let port: u16 = match s.arg(2) {
            Some(p) => p
                .parse()
                .map_err(|_| format!("line {}: bad port `{p}`", s.line))?,
            None => vip.1,
        };
        let mut srv = Srv {
            addr,
            port,
            mode: method.clone(),
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            extra: String::new(),
        };
        let mut inhibit = false;
        for o in s.children() {
            match o.key() {
                "weight" => srv.weight = i32::try_from(num(o, 1, "a weight")?).unwrap_or(i32::MAX),
                "uthreshold" => srv.u_threshold = num(o, 1, "a number")?,
                "lthreshold" => srv.l_threshold = num(o, 1, "a number")?,
                "inhibit_on_failure" => inhibit = true,
                "lvs_method" | "lb_kind" => {
                    srv.mode = match o.arg(1).unwrap_or("") {
                        "NAT" => "nat".into(),
                        "DR" => "gateway".into(),
                        _ => "tunnel".into(),
                    }
                }
                k if k.ends_with("_CHECK") || k.ends_with("_GET") => {
                    let Some(c) = checker(o, notes)? else {
                        continue;
                    };
                    match &chosen {
                        Some(m) if *m != c.method => {
                            notes.push(format!(
                                "line {}: a second kind of check in one virtual server (lvsd has one check method per director): server left unchecked",
                                o.line
                            ));
                            continue;
                        }
                        Some(_) => {}
                        None => chosen = Some(c.method.clone()),
                    }
                    srv.extra.push_str(" check");
                    if let Some(i) = interval {
                        let _ = write!(srv.extra, " interval {i}");
                    }
                    srv.extra.push_str(&c.params);
                    if inhibit {
                        srv.extra.push_str(" inhibit");
                    }
                }
                other => notes.push(format!("line {}: real_server option `{other}`", o.line)),
            }
        }
        if sorry {
            srv.extra.push_str(" sorry");
        }
        d.servers.push(srv);
    }
    d.method = chosen.map(|m| match m {
        Method::Tcp => "option tcpcheck".to_string(),
        Method::Icmp => "option icmpcheck".to_string(),
        Method::Http { path, status } => {
            let mut o = format!("option httpcheck uri {path}");
            if let Some(s) = status {
                let _ = write!(o, " statuscode {s}");
            }
            if let Some(h) = &vhost {
                let _ = write!(o, " vhost {h}");
            }
            o
        }
    });
    // Servers were listed in file order; the director language adds each
    // in front, as keepalived's ipvsadm calls do: same list order.
    Ok((d, vip.1))
}

/// keepalived.conf → configuration text.
pub fn import(text: &str) -> Result<String, String> {
    let toks = tokens(text);
    let mut pos = 0;
    let nodes = parse(&toks, &mut pos, 0)?;
    let mut notes = Vec::new();
    let groups: HashMap<&str, &Node> = nodes
        .iter()
        .filter(|n| n.key() == "virtual_server_group")
        .filter_map(|n| Some((n.arg(1)?, n)))
        .collect();
    let mut body = String::new();
    // VRRP instances and sync daemons come first (global statements).
    let mut globals = String::new();
    let mut count = 0;
    let mut names: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
        let vips: Vec<((IpAddr, u16), String)> = match (n.key(), n.arg(1)) {
            ("virtual_server_group", _) => continue,
            ("vrrp_instance", _) => {
                vrrp_instance(n, &mut globals, &mut notes)?;
                continue;
            }
            ("global_defs", _) => {
                global_defs(n, &mut globals, &mut notes);
                continue;
            }
            ("virtual_server", Some("fwmark")) => {
                let mark: u32 = n
                    .arg(2)
                    .and_then(|m| m.parse().ok())
                    .filter(|&m| m != 0)
                    .ok_or_else(|| {
                        format!("line {}: virtual_server fwmark needs a mark", n.line)
                    })?;
                notes.push(format!(
                    "line {}: which packets carry mark {mark} (netfilter rules): add `flow` lines for its director",
                    n.line
                ));
                // `ip_family inet6` makes it an IPv6 firewall-mark service.
                let v6 = n
                    .children()
                    .iter()
                    .any(|c| c.key() == "ip_family" && c.arg(1) == Some("inet6"));
                let key = lvs_core::ServiceKey::fwmark(mark, v6);
                vec![((key.addr, 0), format!("fwm{mark}"))]
            }
            ("virtual_server", Some("group")) => {
                let g = n.arg(2).unwrap_or("");
                let grp = groups
                    .get(g)
                    .ok_or_else(|| format!("line {}: no virtual_server_group `{g}`", n.line))?;
                members(grp, &mut notes)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (v, format!("{g}-{}", i + 1)))
                    .collect()
            }
            ("virtual_server", Some(a)) => {
                let addr: IpAddr = a
                    .parse()
                    .map_err(|_| format!("line {}: bad virtual_server address `{a}`", n.line))?;
                let port: u16 = n
                    .arg(2)
                    .ok_or_else(|| format!("line {}: virtual_server needs a port", n.line))?
                    .parse()
                    .map_err(|_| format!("line {}: bad virtual_server port", n.line))?;
                vec![((addr, port), String::new())]
            }
            (k, _) => {
                notes.push(format!("line {}: block `{k}`", n.line));
                continue;
            }
        };
        for (vip, name) in vips {
            count += 1;
            let mut name = if name.is_empty() {
                format!("vs{count}")
            } else {
                name
            };
            let seen = names.entry(name.clone()).or_insert(0);
            *seen += 1;
            if *seen > 1 {
                name = format!("{name}-{seen}");
            }
            let (mut d, port) = director(n, name, vip, &mut notes)?;
            if n.arg(1) == Some("fwmark") {
                let v6 = if vip.0.is_ipv6() { " ipv6" } else { "" };
                d.addr = format!("mark {}{v6}", n.arg(2).unwrap_or("0"));
                d.protocol = "";
            }
            d.write(&mut body, port);
            body.push('\n');
        }
    }
    notes.dedup();
    if !globals.is_empty() {
        globals.push('\n');
    }
    globals.push_str(&body);
    Ok(finish("keepalived.conf", &notes, &globals))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic keepalived.conf: a NAT web service with HTTP checks
    /// and a sorry server, a DR service with persistence and TCP checks, a
    /// group of two VIPs (one a range), a fwmark service, and a VRRP
    /// instance.
    const SAMPLE: &str = r#"
! Configuration File for keepalived
global_defs {
   router_id LVS_A
   lvs_sync_daemon eth1 VI_1 id 7
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    preempt_delay 10
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        198.18.0.100/24 dev eth0
        198.18.0.101
        2001:db8::100
    }
}

virtual_server 198.18.0.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    sorry_server 198.18.1.99 80

    real_server 198.18.1.11 8080 {
        weight 3
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 3
            retry 2
            delay_before_retry 2
        }
    }
    real_server 198.18.1.12 8080 {
        weight 1
        inhibit_on_failure
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 3
            nb_get_retry 2
        }
    }
}

virtual_server 198.18.0.101 443 {
    delay_loop 10
    lb_algo sh
    lb_kind DR
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    protocol TCP

    real_server 198.18.1.21 443 {
        weight 1
        TCP_CHECK {
            connect_port 443
            connect_timeout 5
        }
    }
    real_server 198.18.1.22 443 {
        weight 2
        uthreshold 1000
        lthreshold 800
        TCP_CHECK {
            connect_port 443
            connect_timeout 5
        }
        MISC_CHECK {
            misc_path "/usr/local/bin/check.sh 198.18.1.22"
        }
    }
}

virtual_server_group DNS {
    198.18.0.110-111 53
    fwmark 9
}

virtual_server group DNS {
    lb_algo rr
    lb_kind NAT
    protocol UDP
    ops
    real_server 198.18.1.31 53 {
        weight 1
    }
}

virtual_server fwmark 7 {
    lb_algo rr
    lb_kind DR
}

virtual_server fwmark 8 {
    ip_family inet6
    lb_algo rr
    lb_kind DR
    persistence_timeout 60
    persistence_granularity 64
    real_server 2001:db8:1::11 80 {
        weight 1
    }
}
"#;

    #[test]
    fn a_keepalived_conf_becomes_directors_that_lvsd_accepts() {
        let conf = import(SAMPLE).unwrap();
        // What does not map is said.
        for n in [
            "global_defs `router_id`",
            "state MASTER",
            "line 15: authentication (VRRP version 3 has none",
            "options of virtual address 198.18.0.100",
            "virtual address 2001:db8::100 of the other family",
            "delay_before_retry",
            "MISC_CHECK (no equivalent check)",
            "group member fwmark 9",
            "which packets carry mark 7",
        ] {
            assert!(conf.contains(n), "{n} not noted in\n{conf}");
        }
        // VRRP and the sync daemon that follows it.
        for line in [
            "\nvrrp VI_1 interface eth0 id 51 priority 150 advert 0.5 preempt-delay 10 address 198.18.0.100 address 198.18.0.101\n",
            "\nsync vrrp VI_1 interface eth1 syncid 7\n",
        ] {
            assert!(conf.contains(line), "{line} not in\n{conf}");
        }
        // The file is valid for lvsd, and builds the right table.
        let cfg = lvs_config::parse_str(&conf, "k.conf").unwrap_or_else(|e| panic!("{e}\n{conf}"));
        let state = crate::setup::file_state(&cfg, "k.conf", &conf)
            .unwrap_or_else(|e| panic!("{e}\n{conf}"));
        let svc: Vec<String> = state
            .services
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}",
                    crate::daemon::endpoint(s.key.addr, s.key.port),
                    s.scheduler,
                    s.servers.len()
                )
            })
            .collect();
        assert_eq!(
            svc,
            [
                "198.18.0.100:80 wrr 3",
                "198.18.0.101:443 sh 2",
                "198.18.0.110:53 rr 1",
                "198.18.0.111:53 rr 1",
                "0.0.0.7:0 rr 0",
                "[0:8::]:0 rr 1"
            ],
            "{conf}"
        );
        let web = &state.services[0];
        let by_addr = |s: &crate::reload::FileService<crate::desired::Check>, a: &str| {
            let a: IpAddr = a.parse().unwrap();
            s.servers
                .iter()
                .find(|x| x.cfg.addr == a)
                .cloned()
                .expect("server")
        };
        let rs1 = by_addr(web, "198.18.1.11");
        assert_eq!((rs1.cfg.port, rs1.cfg.weight), (8080, 3));
        let check = rs1.check.as_ref().expect("checked");
        assert_eq!(
            (
                check.interval.as_secs(),
                check.timeout.as_secs(),
                check.fall
            ),
            (6, 3, 3)
        );
        assert!(
            matches!(&check.kind, lvs_health::CheckKind::Http { uri, status: 200, .. } if uri == "/health")
        );
        assert!(by_addr(web, "198.18.1.12").inhibit);
        let sorry = by_addr(web, "198.18.1.99");
        assert!(sorry.sorry && sorry.check.is_none());
        let dr = &state.services[1];
        assert_eq!(
            (dr.opts.persistent, dr.opts.netmask),
            (Some(600), 0xffff_ff00)
        );
        let rs22 = by_addr(dr, "198.18.1.22");
        assert_eq!((rs22.cfg.u_threshold, rs22.cfg.l_threshold), (1000, 800));
        assert!(matches!(
            rs22.check.as_ref().map(|c| &c.kind),
            Some(lvs_health::CheckKind::Tcp)
        ));
        assert_eq!(rs22.check.as_ref().map(|c| c.port), Some(443));
        assert!(state.services[2].opts.one_packet);
    }

    #[test]
    fn broken_input_is_refused_with_its_line() {
        let e = import("virtual_server 198.18.0.100 80 {\n lb_algo nope\n}\n").unwrap_err();
        assert_eq!(e, "line 2: unknown scheduler `nope`");
        let e = import("virtual_server 198.18.0.100 80 {\n").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
        let e = import("}\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = import("virtual_server group X {\n}\n").unwrap_err();
        assert!(e.contains("no virtual_server_group `X`"), "{e}");
    }
}
