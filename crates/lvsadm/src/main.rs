//! `lvsadm`: the ipvsadm-compatible administration command for `lvsd`.
//!
//! It parses an ipvsadm command line, sends the matching request over the
//! control socket of `lvsd` and prints the answer in ipvsadm's formats.

mod help;
mod json;

use lvs_control::args::{parse_args, Command, ListTarget, UsageError};
use lvs_control::{render, ControlError, ErrorKind, Request, Response};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Environment variable naming the control socket (`--control` wins).
const CONTROL_ENV: &str = "LVSADM_CONTROL";

/// Removes `--control PATH` / `--control=PATH` from anywhere in the
/// arguments. Returns the path (last one wins) and the remaining arguments.
fn extract_control(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>), String> {
    let mut path = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--control" {
            match it.next() {
                Some(p) => path = Some(PathBuf::from(p)),
                None => return Err("--control: missing argument".into()),
            }
        } else if let Some(p) = a.strip_prefix("--control=") {
            path = Some(PathBuf::from(p));
        } else {
            rest.push(a.clone());
        }
    }
    Ok((path, rest))
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

fn err(s: &str) {
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

/// Invoked as `ipvsadm` (a symlink): print exactly what ipvsadm prints.
static AS_IPVSADM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Outcome of one request.
enum Failure {
    /// Could not talk to lvsd (exit 2).
    Control(ControlError),
    /// lvsd answered with an error.
    Daemon(ErrorKind, String),
    /// lvsd answered something unexpected for this request (exit 2).
    Unexpected(Response),
}

fn request(path: &Path, req: &Request) -> Result<Response, Failure> {
    match lvs_control::call(path, req) {
        Ok(Response::Error { kind, detail }) => Err(Failure::Daemon(kind, detail)),
        Ok(r) => Ok(r),
        Err(e) => Err(Failure::Control(e)),
    }
}

/// Prints a failure and returns the exit status; `daemon_status` is the
/// status for errors reported by lvsd (255, or 1 for `-L <service>`).
fn report(f: Failure, daemon_status: i32) -> i32 {
    match f {
        Failure::Control(e) => {
            err(&format!("lvsadm: {e}\n"));
            2
        }
        Failure::Daemon(kind, detail) => {
            err(&format!("{}\n", render::error_message(kind)));
            // Under ipvsadm's name, exactly ipvsadm's message (scripts may
            // compare it); as lvsadm, lvsd's detail too.
            if !detail.is_empty() && !AS_IPVSADM.load(std::sync::atomic::Ordering::Relaxed) {
                err(&format!("lvsd: {detail}\n"));
            }
            daemon_status
        }
        Failure::Unexpected(r) => {
            err(&format!("lvsadm: unexpected answer from lvsd: {r:?}\n"));
            2
        }
    }
}

/// What `--sysctl [NAME[=VALUE]]` asks for (an lvsd extension: the kernel's
/// `/proc/sys/net/ipv4/vs/*` knobs live in lvsd).
#[derive(Debug, PartialEq, Eq)]
enum SysctlCmd {
    All,
    Show(String),
    Set(String, String),
}

fn parse_sysctl(args: &[String]) -> Result<SysctlCmd, String> {
    let mut words: Vec<String> = Vec::new();
    if let Some(v) = args[0].strip_prefix("--sysctl=") {
        words.push(v.to_string());
    }
    words.extend(args[1..].iter().cloned());
    match words.as_slice() {
        [] => Ok(SysctlCmd::All),
        [one] => match one.split_once('=') {
            Some((n, v)) if !n.is_empty() => Ok(SysctlCmd::Set(n.to_string(), v.to_string())),
            Some(_) => Err(format!("--sysctl: no name in `{one}`")),
            None => Ok(SysctlCmd::Show(one.clone())),
        },
        _ => Err("--sysctl takes one NAME or NAME=VALUE".into()),
    }
}

/// `lvsadm --counters`: lvsd's own counters, one `NAME VALUE` per line
/// (an lvsd extension: packets per forwarding method, replies, drops by
/// reason, packet I/O).
fn counters(path: &Path, rest: &[String], as_json: bool) -> i32 {
    if let Some(extra) = rest.first() {
        err(&format!(
            "lvsadm: --counters takes no argument (got `{extra}`)\n"
        ));
        return 2;
    }
    match request(path, &Request::GetCounters) {
        Ok(Response::Counters(v)) if as_json => {
            out(&json::counters(&v));
            0
        }
        Ok(Response::Counters(v)) => {
            let w = v.iter().map(|c| c.name.len()).max().unwrap_or(0);
            out(&v
                .iter()
                .map(|c| format!("{:<w$} {}\n", c.name, c.value))
                .collect::<String>());
            0
        }
        Ok(r) => report(Failure::Unexpected(r), 2),
        Err(f) => report(f, 2),
    }
}

/// `lvsadm --health`: every real server's health check, verdict, last
/// result and whether the engine holds it now (an lvsd extension; the
/// ipvsadm listings stay as they are).
fn health(path: &Path, rest: &[String], as_json: bool) -> i32 {
    if let Some(extra) = rest.first() {
        err(&format!(
            "lvsadm: --health takes no argument (got `{extra}`)\n"
        ));
        return 2;
    }
    match request(path, &Request::GetHealth) {
        Ok(Response::Health(v)) => {
            out(&if as_json {
                json::health(&v)
            } else {
                render_health(&v)
            });
            0
        }
        Ok(r) => report(Failure::Unexpected(r), 2),
        Err(f) => report(f, 2),
    }
}

/// `lvsadm --reload`: lvsd re-reads its configuration file and applies
/// what changed in it (an lvsd extension; SIGHUP does the same). Prints
/// each change; exits 0 when all applied, 1 when the file was refused
/// (nothing changed), 3 when applied with warnings, 2 without lvsd.
fn reload(path: &Path, rest: &[String]) -> i32 {
    if let Some(extra) = rest.first() {
        err(&format!(
            "lvsadm: --reload takes no argument (got `{extra}`)\n"
        ));
        return 2;
    }
    match request(path, &Request::Reload) {
        Ok(Response::Reloaded {
            changes,
            warnings,
            notes,
        }) => {
            for n in &notes {
                err(&format!("{n}\n"));
            }
            let mut o = format!(
                "lvsd reloaded its configuration: {} change(s)\n",
                changes.len()
            );
            for c in &changes {
                o.push_str(&format!("  {c}\n"));
            }
            out(&o);
            for w in &warnings {
                err(&format!("lvsadm: warning: {w}\n"));
            }
            if warnings.is_empty() {
                0
            } else {
                3
            }
        }
        Ok(r) => report(Failure::Unexpected(r), 2),
        Err(Failure::Daemon(_, detail)) => {
            err(&format!("lvsadm: {detail}\n"));
            1
        }
        Err(f) => report(f, 2),
    }
}

/// `lvsadm --proc NAME`: the kernel's `/proc/net/NAME` text for lvsd's
/// table (an lvsd extension, for scripts that parse those files).
fn proc_file(path: &Path, rest: &[String]) -> i32 {
    use lvs_control::procfs;
    let [name] = rest else {
        err(&format!(
            "lvsadm: --proc takes one of: {}\n",
            procfs::FILES.join(", ")
        ));
        return 2;
    };
    let name = name.strip_prefix("/proc/net/").unwrap_or(name);
    let req = match name {
        "ip_vs" => Request::ListServices,
        "ip_vs_conn" | "ip_vs_conn_sync" => Request::ListConnections,
        "ip_vs_stats" => Request::GetTotals,
        other => {
            err(&format!(
                "lvsadm: --proc: no file `{other}`; one of: {}\n",
                procfs::FILES.join(", ")
            ));
            return 2;
        }
    };
    let text = match request(path, &req) {
        Ok(Response::Services {
            conn_tab_size,
            services,
        }) => procfs::ip_vs(conn_tab_size, &services),
        Ok(Response::Connections(c)) if name == "ip_vs_conn" => procfs::ip_vs_conn(&c),
        Ok(Response::Connections(c)) => procfs::ip_vs_conn_sync(&c),
        Ok(Response::Totals(t)) => procfs::ip_vs_stats(&t),
        Ok(r) => return report(Failure::Unexpected(r), 2),
        Err(f) => return report(f, 2),
    };
    out(&text);
    0
}

/// The `--health` table: one line per real server.
fn render_health(v: &[lvs_control::HealthInfo]) -> String {
    let mut rows = vec![[
        "DIRECTOR".to_string(),
        "SERVER".into(),
        "ADDRESS".into(),
        "STATE".into(),
        "IN-USE".into(),
        "LAST".into(),
        "AGE".into(),
        "OK/FAIL".into(),
        "CHECK".into(),
        "REASON".into(),
    ]];
    for h in v {
        let addr = match h.addr {
            std::net::IpAddr::V4(a) => format!("{a}:{}", h.port),
            std::net::IpAddr::V6(a) => format!("[{a}]:{}", h.port),
        };
        let state = match (h.check.is_empty(), h.up) {
            (true, _) => "unchecked",
            (false, true) => "UP",
            (false, false) => "DOWN",
        };
        let in_use = match (h.in_service, h.sorry) {
            (true, _) => format!("yes w{}", h.weight),
            (false, true) => "sorry".to_string(),
            (false, false) => "no".to_string(),
        };
        let last = match h.last_ok {
            None => "-",
            Some(true) => "ok",
            Some(false) => "failed",
        };
        let age = h
            .age_ms
            .map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        rows.push([
            dash(&h.director),
            dash(&h.server),
            addr,
            state.into(),
            in_use,
            last.into(),
            age,
            format!("{}/{}", h.successes, h.failures),
            dash(&h.check),
            dash(&h.reason),
        ]);
    }
    let mut w = [0usize; 10];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut s = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<width$}", width = w[i])
                }
            })
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// `lvsadm --sysctl`: list all as `net.ipv4.vs.NAME = VALUE`, show one, or set one.
fn sysctl(path: &Path, args: &[String], as_json: bool) -> i32 {
    let cmd = match parse_sysctl(args) {
        Ok(c) => c,
        Err(e) => {
            err(&format!("{e}\n"));
            return 2;
        }
    };
    let (name, set) = match &cmd {
        SysctlCmd::Set(n, v) => (Some(n.clone()), Some(v.clone())),
        SysctlCmd::Show(n) => (Some(n.clone()), None),
        SysctlCmd::All => (None, None),
    };
    let short = name
        .as_deref()
        .map(|n| n.strip_prefix("net.ipv4.vs.").unwrap_or(n).to_string());
    if let (Some(n), Some(v)) = (&short, &set) {
        match lvs_control::call(
            path,
            &Request::SetSysctl {
                name: n.clone(),
                value: v.clone(),
            },
        ) {
            Ok(Response::Ok) => {}
            Ok(Response::Error { detail, .. }) => {
                err(&format!("lvsadm: {detail}\n"));
                return 2;
            }
            Ok(r) => return report(Failure::Unexpected(r), 2),
            Err(e) => return report(Failure::Control(e), 2),
        }
    }
    let all = match request(path, &Request::GetSysctls) {
        Ok(Response::Sysctls(v)) => v,
        Ok(r) => return report(Failure::Unexpected(r), 2),
        Err(f) => return report(f, 2),
    };
    let line = |s: &lvs_control::SysctlValue| {
        let note = match &s.no_effect {
            None => String::new(),
            Some(why) => format!("   # no effect: {why}"),
        };
        format!("net.ipv4.vs.{} = {}{note}\n", s.name, s.value)
    };
    if as_json {
        let chosen: Vec<lvs_control::SysctlValue> = all
            .into_iter()
            .filter(|s| short.as_ref().is_none_or(|n| &s.name == n))
            .collect();
        out(&json::sysctls(&chosen));
        return 0;
    }
    match short {
        None => out(&all.iter().map(line).collect::<String>()),
        Some(n) => match all.iter().find(|s| s.name == n) {
            Some(s) => out(&line(s)),
            None => {
                err(&format!(
                    "lvsadm: no sysctl `{n}` (lvsadm --sysctl lists them)\n"
                ));
                return 2;
            }
        },
    }
    0
}

fn execute(cmd: Command, path: &Path, argv0: &str, json: bool) -> i32 {
    match cmd {
        Command::Help => {
            out(&help::usage(argv0));
            0
        }
        Command::Version => {
            out(&help::version_for(argv0));
            0
        }
        Command::List { target, opts, .. } => match target {
            ListTarget::All => match request(path, &Request::ListServices) {
                Ok(Response::Services {
                    conn_tab_size,
                    services,
                }) => {
                    out(&if json {
                        json::services(conn_tab_size, &services)
                    } else {
                        render::list(conn_tab_size, &services, &opts)
                    });
                    0
                }
                Ok(r) => report(Failure::Unexpected(r), 2),
                Err(f) => report(f, 255),
            },
            ListTarget::Service(key) => match request(path, &Request::GetService(key)) {
                Ok(Response::Services { services, .. }) => {
                    let found = services
                        .iter()
                        .find(|s| s.spec.key == key)
                        .or(services.first());
                    match found {
                        Some(s) if json => {
                            out(&json::services(0, std::slice::from_ref(s)));
                            0
                        }
                        Some(s) => {
                            out(&render::list_one(s, &opts));
                            0
                        }
                        None => report(Failure::Daemon(ErrorKind::NoSuchService, String::new()), 1),
                    }
                }
                Ok(r) => report(Failure::Unexpected(r), 2),
                Err(f) => report(f, 1),
            },
            // Streamed: each part of a long table is printed as it comes,
            // so a million entries need neither much memory nor a wait.
            ListTarget::Connections { .. } if !json => {
                let mut header = false;
                let mut print = |v: &[lvs_control::ConnInfo]| {
                    if !header {
                        out(&render::connections_header());
                        header = true;
                    }
                    out(&render::connection_rows(v));
                };
                let r = lvs_control::call_stream(path, &Request::ListConnections, |r| {
                    if let Response::ConnectionsPart(v) = r {
                        print(&v);
                    }
                });
                match r {
                    Ok(Response::Connections(c)) => {
                        print(&c);
                        0
                    }
                    Ok(Response::Error { kind, detail }) => {
                        report(Failure::Daemon(kind, detail), 1)
                    }
                    Ok(r) => report(Failure::Unexpected(r), 2),
                    Err(e) => report(Failure::Control(e), 1),
                }
            }
            ListTarget::Connections { .. } => match request(path, &Request::ListConnections) {
                Ok(Response::Connections(c)) => {
                    out(&json::connections(&c));
                    0
                }
                Ok(r) => report(Failure::Unexpected(r), 2),
                Err(f) => report(f, 1),
            },
            ListTarget::Timeouts => match request(path, &Request::GetTimeouts) {
                Ok(Response::Timeouts(t)) => {
                    out(&if json {
                        json::timeouts(&t)
                    } else {
                        render::timeouts(&t)
                    });
                    0
                }
                Ok(r) => report(Failure::Unexpected(r), 2),
                Err(f) => report(f, 255),
            },
        },
        Command::Save { nosort } => match request(path, &Request::ListServices) {
            Ok(Response::Services { services, .. }) => {
                out(&render::save(&services, nosort));
                0
            }
            Ok(r) => report(Failure::Unexpected(r), 2),
            Err(f) => report(f, 255),
        },
        Command::Restore => restore(path, argv0),
        Command::ListDaemons => match request(path, &Request::GetDaemons) {
            Ok(Response::Daemons { daemons, .. }) => {
                print!("{}", lvs_control::render::daemons(&daemons));
                0
            }
            Ok(r) => report(Failure::Unexpected(r), 2),
            Err(f) => report(f, 255),
        },
        Command::Apply(req) => match request(path, &req) {
            Ok(Response::Ok) => 0,
            Ok(r) => report(Failure::Unexpected(r), 2),
            Err(f) => report(f, 255),
        },
    }
}

/// `-R`: every stdin line is a command line (spec §9). Consecutive
/// changes go to lvsd as one batch, applied in one step (packets never see
/// half of them); each line's error is printed as ipvsadm prints it and the
/// rest goes on. A line that is not a change (a listing) is run in order
/// between batches; a usage error stops the restore after what came before
/// it is applied, as with ipvsadm.
fn restore(path: &Path, argv0: &str) -> i32 {
    restore_from(path, argv0, false)
}

/// `restore`, skipping `#` lines when `skip_comments` (ipvsadm-restore).
fn restore_from(path: &Path, argv0: &str, skip_comments: bool) -> i32 {
    let stdin = std::io::stdin();
    let mut status = 0;
    let mut batch: Vec<Request> = Vec::new();
    for line in stdin.lock().lines() {
        let Ok(line) = line else {
            err("lvsadm: cannot read standard input\n");
            return 2;
        };
        if skip_comments && line.starts_with('#') {
            continue;
        }
        let words: Vec<String> = line
            .split([' ', '\t', '\r'])
            .filter(|w| !w.is_empty() && *w != "ipvsadm" && *w != "lvsadm")
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            continue;
        }
        let cmd = match parse_args(&words) {
            Ok(Command::Restore) => Err(UsageError::TryHelp),
            other => other,
        };
        match cmd {
            Ok(Command::Apply(req)) => batch.push(req),
            Ok(cmd) => {
                status = apply_batch(path, &mut batch, status);
                if status == 2 {
                    return status;
                }
                status = execute(cmd, path, argv0, false);
                if status == 2 {
                    // lvsd unreachable: no point in going on.
                    return status;
                }
            }
            Err(e) => {
                if apply_batch(path, &mut batch, status) == 2 {
                    return 2;
                }
                err(&e.message(argv0));
                return e.exit_code();
            }
        }
    }
    apply_batch(path, &mut batch, status)
}

/// Invoked as `ipvsadm-save [-n]` (a symlink): `-S [-n]`; another `-…`
/// argument prints the script's two-line note and exits 1; other
/// arguments are ignored (spec §9).
fn save_script(path: &Path, argv0: &str, args: &[String]) -> i32 {
    // `-n` is accepted (lvsadm always prints numbers); other words are
    // ignored as the script ignores them.
    for a in args {
        match a.as_str() {
            "-n" => {}
            d if d.starts_with('-') => {
                err("ipvsadm-save: save IPVS table to stdout\n  -n  do not resolve names (print numbers)\n");
                return 1;
            }
            _ => {}
        }
    }
    execute(Command::Save { nosort: false }, path, argv0, false)
}

/// Invoked as `ipvsadm-restore`: lines starting with `#` are dropped, the
/// table is cleared (`-C`), then the rest is restored (`-R`), as the
/// ipvsadm-restore script does.
fn restore_script(path: &Path, argv0: &str) -> i32 {
    let status = execute(Command::Apply(Request::Clear), path, argv0, false);
    if status != 0 {
        return status;
    }
    restore_from(path, argv0, true)
}

/// Sends the changes gathered so far as one batch and prints each error;
/// returns the status of the last one (`status` if there were none).
fn apply_batch(path: &Path, batch: &mut Vec<Request>, status: i32) -> i32 {
    if batch.is_empty() {
        return status;
    }
    let reqs = std::mem::take(batch);
    match request(path, &Request::Batch(reqs)) {
        Ok(Response::Batch(answers)) => answers.into_iter().fold(status, |_, a| match a {
            Response::Ok => 0,
            Response::Error { kind, detail } => report(Failure::Daemon(kind, detail), 255),
            other => report(Failure::Unexpected(other), 2),
        }),
        Ok(r) => report(Failure::Unexpected(r), 2),
        Err(f) => report(f, 2),
    }
}

fn main() {
    let all: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = all.first().cloned().unwrap_or_else(|| "lvsadm".into());
    let rest = all.get(1..).unwrap_or(&[]);
    let (flag_path, mut args) = match extract_control(rest) {
        Ok(v) => v,
        Err(e) => {
            err(&format!("{e}\n"));
            std::process::exit(255);
        }
    };
    // `--json` anywhere: machine-readable listings (docs/json.md).
    let as_json = args.iter().any(|a| a == "--json");
    args.retain(|a| a != "--json");
    let path = flag_path
        .or_else(|| {
            std::env::var_os(CONTROL_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(lvs_control::DEFAULT_CONTROL_PATH));
    if args
        .first()
        .is_some_and(|a| a == "--sysctl" || a.starts_with("--sysctl="))
    {
        std::process::exit(sysctl(&path, &args, as_json));
    }
    if args.first().is_some_and(|a| a == "--counters") {
        std::process::exit(counters(&path, &args[1..], as_json));
    }
    if args.first().is_some_and(|a| a == "--health") {
        std::process::exit(health(&path, &args[1..], as_json));
    }
    if as_json
        && args
            .first()
            .is_some_and(|a| a == "--proc" || a == "--reload")
    {
        err("lvsadm: --json applies to listings: -L/-l, --counters, --health, --sysctl\n");
        std::process::exit(2);
    }
    if args.first().is_some_and(|a| a == "--proc") {
        std::process::exit(proc_file(&path, &args[1..]));
    }
    if args.first().is_some_and(|a| a == "--reload") {
        std::process::exit(reload(&path, &args[1..]));
    }
    AS_IPVSADM.store(
        help::program(&argv0).starts_with("ipvsadm"),
        std::sync::atomic::Ordering::Relaxed,
    );
    match help::program(&argv0) {
        "ipvsadm-save" => std::process::exit(save_script(&path, &argv0, &args)),
        "ipvsadm-restore" => std::process::exit(restore_script(&path, &argv0)),
        _ => {}
    }
    let code = match parse_args(&args) {
        Ok(cmd) if as_json && !matches!(cmd, Command::List { .. }) => {
            err("lvsadm: --json applies to listings: -L/-l, --counters, --health, --sysctl\n");
            2
        }
        Ok(cmd) => execute(cmd, &path, &argv0, as_json),
        Err(e) => {
            err(&e.message(&argv0));
            e.exit_code()
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_table_lines_up_and_says_what_each_server_is_doing() {
        let ip = |s: &str| s.parse().unwrap();
        let svc = lvs_control::ServiceKey {
            protocol: lvs_control::Protocol::Tcp,
            addr: ip("198.18.0.100"),
            port: 80,
        };
        let row = |server: &str, last: u8, up: bool, in_service: bool, sorry: bool| {
            lvs_control::HealthInfo {
                director: "web".into(),
                server: server.into(),
                service: svc,
                addr: ip(&format!("198.18.1.{last}")),
                port: 80,
                check: if sorry {
                    String::new()
                } else {
                    "tcpcheck :80 every 1s timeout 1s rise 1 fall 1".into()
                },
                up,
                sorry,
                in_service,
                weight: if in_service { 1 } else { 0 },
                last_ok: Some(up),
                reason: if up {
                    "ok".into()
                } else {
                    "connection refused".into()
                },
                age_ms: Some(1500),
                successes: u32::from(up),
                failures: u32::from(!up),
                latency: None,
            }
        };
        let t = render_health(&[
            row("rs1", 11, false, false, false),
            row("rs2", 12, true, true, false),
            row("maint", 99, true, false, true),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("DIRECTOR  SERVER  ADDRESS"), "{t}");
        assert!(lines[1].contains("rs1     198.18.1.11:80  DOWN"), "{t}");
        assert!(lines[1].ends_with("connection refused"), "{t}");
        assert!(
            lines[2].contains("UP") && lines[2].contains("yes w1"),
            "{t}"
        );
        assert!(
            lines[3].contains("unchecked") && lines[3].contains("sorry"),
            "{t}"
        );
        assert!(lines[1].contains("1.5s"), "{t}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sysctl_arguments() {
        assert_eq!(parse_sysctl(&s(&["--sysctl"])), Ok(SysctlCmd::All));
        assert_eq!(
            parse_sysctl(&s(&["--sysctl", "sloppy_tcp"])),
            Ok(SysctlCmd::Show("sloppy_tcp".into()))
        );
        assert_eq!(
            parse_sysctl(&s(&["--sysctl", "net.ipv4.vs.sloppy_tcp=1"])),
            Ok(SysctlCmd::Set("net.ipv4.vs.sloppy_tcp".into(), "1".into()))
        );
        assert_eq!(
            parse_sysctl(&s(&["--sysctl=lblc_expiration=60"])),
            Ok(SysctlCmd::Set("lblc_expiration".into(), "60".into()))
        );
        assert!(parse_sysctl(&s(&["--sysctl", "=1"])).is_err());
        assert!(parse_sysctl(&s(&["--sysctl", "a", "b"])).is_err());
    }

    #[test]
    fn control_anywhere() {
        let (p, r) = extract_control(&s(&["-L", "--control", "/x.sock", "-n"])).unwrap();
        assert_eq!(p, Some(PathBuf::from("/x.sock")));
        assert_eq!(r, s(&["-L", "-n"]));
        let (p, r) = extract_control(&s(&["--control=/y", "-Ln"])).unwrap();
        assert_eq!(p, Some(PathBuf::from("/y")));
        assert_eq!(r, s(&["-Ln"]));
        assert!(extract_control(&s(&["-L", "--control"])).is_err());
        let (p, _) = extract_control(&s(&["-L"])).unwrap();
        assert_eq!(p, None);
    }

    #[test]
    fn unreachable_daemon_exits_2() {
        let path = Path::new("/nonexistent/lvsadm-test.sock");
        let cmd = parse_args(&s(&["-C"])).unwrap();
        assert_eq!(execute(cmd, path, "lvsadm", false), 2);
    }
}
