//! `lvsd import`: other tools' configurations turned into the director
//! language.
//!
//! * `ipvsadm`: the output of `ipvsadm -S` (or any `-A`/`-a` lines), read
//!   with lvsadm's own ipvsadm command-line parser.
//! * `keepalived`: the `virtual_server` and `virtual_server_group` blocks of
//!   keepalived.conf, their real servers and checkers.
//!
//! What has no equivalent is left out and said, as a `# not imported:`
//! comment at the top of the output, so the operator sees it next to the
//! result. The output is meant to pass `lvsd check`.

use lvs_control::args::{parse_args, Command};
use lvs_control::{DestSpec, Forward, Request, ServiceKey, ServiceSpec, TunnelCsum, TunnelType};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// A director being written out.
#[derive(Default)]
struct Dir {
    name: String,
    addr: String,
    protocol: &'static str,
    balance: String,
    options: Vec<String>,
    check: Option<String>,
    method: Option<String>,
    servers: Vec<Srv>,
}

struct Srv {
    addr: IpAddr,
    port: u16,
    mode: String,
    weight: i32,
    u_threshold: u32,
    l_threshold: u32,
    extra: String,
}

fn endpoint(a: IpAddr, port: u16) -> String {
    crate::daemon::endpoint(a, port)
}

/// The `mode` words of a forwarding method.
fn mode_words(d: &DestSpec) -> Option<String> {
    Some(match d.forward {
        Forward::Masq => "nat".into(),
        Forward::Route => "gateway".into(),
        Forward::Local => return None,
        Forward::Tunnel => {
            let mut m = String::from("tunnel");
            match d.tunnel.kind {
                TunnelType::Ipip => {}
                TunnelType::Gue => {
                    let _ = write!(m, " gue port {}", d.tunnel.port);
                }
                TunnelType::Gre => m.push_str(" gre"),
            }
            match d.tunnel.csum {
                TunnelCsum::NoCsum => {}
                TunnelCsum::Csum => m.push_str(" csum"),
                TunnelCsum::RemCsum => m.push_str(" remcsum"),
            }
            m
        }
    })
}

/// `option persistence …` for a timeout and an ipvsadm netmask (IPv4
/// mask as an integer, IPv6 prefix length).
fn persistence(timeout: u32, netmask: u32, v6: bool) -> String {
    let mut o = format!("option persistence timeout {timeout}");
    if v6 {
        if netmask != 128 {
            let _ = write!(o, " netmask {netmask}");
        }
    } else if netmask != u32::MAX {
        let _ = write!(o, " netmask {}", Ipv4Addr::from(netmask));
    }
    o
}

impl Dir {
    fn from_spec(name: String, s: &ServiceSpec) -> Dir {
        let k = &s.key;
        let addr = match k.port {
            _ if k.mark().is_some() => format!(
                "mark {}{}",
                k.mark().unwrap_or(0),
                if k.addr.is_ipv6() { " ipv6" } else { "" }
            ),
            0 => match k.addr {
                IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            },
            p => endpoint(k.addr, p),
        };
        let mut options = Vec::new();
        if let Some(t) = s.persistent {
            options.push(persistence(t, s.netmask, k.addr.is_ipv6()));
        }
        if s.one_packet {
            options.push("option onepacket".into());
        }
        if let Some(f) = lvs_control::render::sched_flags_text(&s.scheduler, s.sched_flags) {
            options.push(format!("option schedflags {f}"));
        }
        Dir {
            name,
            addr,
            protocol: if k.mark().is_some() {
                ""
            } else {
                k.protocol.label()
            },
            balance: s.scheduler.clone(),
            options,
            ..Dir::default()
        }
    }

    fn write(&self, o: &mut String, vip_port: u16) {
        let line = format!("director {} {} {}", self.name, self.addr, self.protocol);
        let _ = writeln!(o, "{}", line.trim_end());
        let _ = writeln!(o, "    balance {}", self.balance);
        // One method for all servers goes on the director.
        let common = self
            .servers
            .first()
            .map(|s| s.mode.clone())
            .filter(|m| self.servers.iter().all(|s| &s.mode == m));
        if let Some(m) = &common {
            let _ = writeln!(o, "    mode {m}");
        }
        for opt in &self.options {
            let _ = writeln!(o, "    {opt}");
        }
        if let Some(m) = &self.method {
            let _ = writeln!(o, "    {m}");
        }
        if let Some(c) = &self.check {
            let _ = writeln!(o, "    check {c}");
        }
        for (i, s) in self.servers.iter().enumerate() {
            // Direct routing and tunnels reach the server on the VIP's port
            // (a firewall-mark director's servers keep theirs).
            let addr = if s.mode == "nat" || s.port != vip_port || self.addr.starts_with("mark ") {
                endpoint(s.addr, s.port)
            } else {
                match s.addr {
                    IpAddr::V6(a) => format!("[{a}]"),
                    a => a.to_string(),
                }
            };
            let _ = write!(o, "    server rs{} {addr}", i + 1);
            if s.weight != 1 {
                let _ = write!(o, " weight {}", s.weight);
            }
            if s.u_threshold != 0 {
                let _ = write!(o, " maxconn {}", s.u_threshold);
            }
            if s.l_threshold != 0 {
                let _ = write!(o, " minconn {}", s.l_threshold);
            }
            if common.is_none() {
                let _ = write!(o, " mode {}", s.mode);
            }
            o.push_str(&s.extra);
            o.push('\n');
        }
    }
}

/// Prepends the notes (what was not imported) to the output.
fn finish(source: &str, notes: &[String], body: &str) -> String {
    let mut o = format!("# imported from {source} by lvsd import\n");
    for n in notes {
        let _ = writeln!(o, "# not imported: {n}");
    }
    o.push('\n');
    o.push_str(body);
    o
}

/// `ipvsadm -S` output (or any `-A` / `-a` lines) as a configuration.
pub fn ipvsadm(text: &str) -> Result<String, String> {
    let mut dirs: Vec<(ServiceKey, Dir)> = Vec::new();
    let mut index: std::collections::HashMap<ServiceKey, usize> = std::collections::HashMap::new();
    let mut notes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<String> = line
            .split([' ', '\t', '\r'])
            .filter(|w| !w.is_empty() && *w != "ipvsadm" && *w != "lvsadm")
            .map(str::to_string)
            .collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let line_no = n + 1;
        match parse_args(&words) {
            Ok(Command::Apply(Request::AddService(s))) => {
                if let Some(mark) = s.key.mark() {
                    notes.push(format!(
                        "line {line_no}: which packets carry mark {mark} (netfilter rules, not in ipvsadm's table): add `flow` lines for its director"
                    ));
                }
                if lvs_core::sched::by_name(&s.scheduler).is_none() {
                    return Err(format!(
                        "line {line_no}: unknown scheduler `{}`",
                        s.scheduler
                    ));
                }
                if index.insert(s.key, dirs.len()).is_some() {
                    return Err(format!("line {line_no}: the service is defined twice"));
                }
                let name = format!("vs{}", dirs.len() + 1);
                dirs.push((s.key, Dir::from_spec(name, &s)));
            }
            Ok(Command::Apply(Request::AddDest { service, dest })) => {
                let Some((_, d)) = index.get(&service).and_then(|&i| dirs.get_mut(i)) else {
                    return Err(format!(
                        "line {line_no}: a real server of a service not defined before it"
                    ));
                };
                let Some(mode) = mode_words(&dest) else {
                    notes.push(format!(
                        "line {line_no}: real server {} uses Local forwarding",
                        endpoint(dest.addr, dest.port)
                    ));
                    continue;
                };
                d.servers.push(Srv {
                    addr: dest.addr,
                    port: dest.port,
                    mode,
                    weight: dest.weight,
                    u_threshold: dest.u_threshold,
                    l_threshold: dest.l_threshold,
                    extra: String::new(),
                });
            }
            Ok(_) => {
                return Err(format!(
                "line {line_no}: only -A and -a lines (ipvsadm -S output) can be imported: `{}`",
                line.trim()
            ))
            }
            Err(e) => {
                return Err(format!(
                    "line {line_no}: {}",
                    e.message("ipvsadm").trim_end()
                ))
            }
        }
    }
    let mut body = String::new();
    for (k, d) in &mut dirs {
        // -S lists the kernel's list order, front first; the file adds
        // each server in front, so writing them reversed keeps the order.
        d.servers.reverse();
        d.write(&mut body, k.port);
        body.push('\n');
    }
    Ok(finish("ipvsadm -S", &notes, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "\
-A -t 198.18.0.100:80 -s wrr
-a -t 198.18.0.100:80 -r 198.18.1.12:80 -m -w 2
-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1
-A -t 198.18.0.100:443 -s sh -p 600 -M 255.255.255.0 -b sh-port
-a -t 198.18.0.100:443 -r 198.18.1.11:443 -g -w 1
-a -t 198.18.0.100:443 -r 198.18.1.13:443 -i -w 3 --tun-type gue --tun-port 6080 --tun-csum
-A -u 198.18.0.100:53 -s rr -o
-a -u 198.18.0.100:53 -r 198.18.1.11:53 -m -w 1
-A -t 198.18.0.101:0 -s lc -p 360
-a -t 198.18.0.101:0 -r 198.18.1.14:0 -g -w 1
-A -f 7 -s rr
-a -f 7 -r 198.18.1.11:0 -g -w 1
-A -f 5 -6 -s rr -p 60 -M 64
-a -f 5 -6 -r [2001:db8::1]:0 -g -w 1
";

    /// The imported file builds the same table: `-S` of the engine it
    /// makes is the input again.
    #[test]
    fn an_ipvsadm_save_round_trips_through_the_director_language() {
        let conf = ipvsadm(SAVED).unwrap();
        assert!(
            conf.contains("# not imported: line 11: which packets carry mark 7"),
            "{conf}"
        );
        assert!(conf.contains("director vs5 mark 7\n"), "{conf}");
        assert!(conf.contains("director vs6 mark 5 ipv6\n"), "{conf}");
        let cfg =
            lvs_config::parse_str(&conf, "imported.conf").unwrap_or_else(|e| panic!("{e}\n{conf}"));
        let mut e = lvs_core::Engine::new(0);
        crate::setup::apply(&mut e, &cfg, "imported.conf", &conf).unwrap();
        let lvs_control::Response::Services { services, .. } =
            crate::engine_ops::services(&e, None)
        else {
            panic!()
        };
        let mut want: Vec<&str> = SAVED.lines().collect();
        let again = lvs_control::render::save(&services, false);
        let mut got: Vec<&str> = again.lines().collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{conf}");
    }

    #[test]
    fn what_cannot_be_imported_is_refused_with_its_line() {
        let e = ipvsadm("-A -t 198.18.0.100:80\n-L -n\n").unwrap_err();
        assert!(e.starts_with("line 2: only -A and -a lines"), "{e}");
        let e = ipvsadm("-a -t 198.18.0.100:80 -r 198.18.1.1\n").unwrap_err();
        assert!(
            e.contains("line 1: a real server of a service not defined"),
            "{e}"
        );
        let e = ipvsadm("-A -t 198.18.0.100:80 -s nope\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
        // Thresholds (which -S does not save, but -a lines may carry).
        let c =
            ipvsadm("-A -t 198.18.0.100:80\n-a -t 198.18.0.100:80 -r 198.18.1.1 -m -x 100 -y 50\n")
                .unwrap();
        assert!(
            c.contains("server rs1 198.18.1.1:80 maxconn 100 minconn 50"),
            "{c}"
        );
    }
}

mod keepalived;

/// keepalived.conf as a configuration (`import/keepalived.rs`).
pub fn keepalived(text: &str) -> Result<String, String> {
    keepalived::import(text)
}
