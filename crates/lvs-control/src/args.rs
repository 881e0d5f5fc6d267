//! ipvsadm command-line parsing (spec `ipvsadm.md` §1–§5), popt style, by hand.
//!
//! [`parse_args`] is pure: it turns the arguments (without `argv[0]` and
//! without `--control`) into a [`Command`] or a [`UsageError`] carrying the
//! exact ipvsadm message and exit status.

use crate::render::{ListMode, ListOptions};
use crate::{
    DaemonConfig, DestSpec, Forward, Protocol, Request, ServiceKey, ServiceSpec, SyncRole,
    Timeouts, Tunnel, TunnelCsum, TunnelType,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What to list with `-L`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListTarget {
    All,
    Service(ServiceKey),
    Connections { persistent_conn: bool },
    Timeouts,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    List {
        target: ListTarget,
        opts: ListOptions,
        /// `-n`; rendering is numeric either way (no name lookups).
        numeric: bool,
    },
    /// `-S [-n]`.
    Save {
        nosort: bool,
    },
    /// `-R`: read command lines from stdin.
    Restore,
    /// `-L --daemon`.
    ListDaemons,
    /// Everything that changes state: one request, answer `Ok` expected.
    Apply(Request),
}

/// A command-line error, with ipvsadm's message and exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// ``Try `ARGV0 -h' or 'ARGV0 --help' for more information.`` (exit 255).
    TryHelp,
    /// A popt error: `<option>: <text>` (exit 255).
    Popt { option: String, text: &'static str },
    /// A validation failure (`fail(2, ...)` in ipvsadm): the message, exit 2.
    Fail(String),
    /// Valid ipvsadm, but not implemented by lvsd/lvsadm yet (exit 2).
    Unsupported(String),
}

impl UsageError {
    pub fn exit_code(&self) -> i32 {
        match self {
            UsageError::TryHelp | UsageError::Popt { .. } => 255,
            UsageError::Fail(_) | UsageError::Unsupported(_) => 2,
        }
    }

    /// The text for stderr, newline included.
    pub fn message(&self, argv0: &str) -> String {
        match self {
            UsageError::TryHelp => {
                format!("Try `{argv0} -h' or '{argv0} --help' for more information.\n")
            }
            UsageError::Popt { option, text } => format!("{option}: {text}\n"),
            UsageError::Fail(m) => format!("{m}\n"),
            UsageError::Unsupported(what) => {
                format!("{what} is not supported by lvsadm/lvsd yet\n")
            }
        }
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError::Fail(msg.into()))
}

// ---------------------------------------------------------------------------
// Option table

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Id {
    // commands
    AddService,
    EditService,
    DeleteService,
    Clear,
    Restore,
    Save,
    AddServer,
    EditServer,
    DeleteServer,
    List,
    Zero,
    Set,
    StartDaemon,
    StopDaemon,
    Help,
    Version,
    // options
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Ipv6,
    Scheduler,
    Persistent,
    Netmask,
    Pe,
    SchedFlags,
    Ops,
    RealServer,
    Gatewaying,
    Ipip,
    Masquerading,
    Weight,
    UThreshold,
    LThreshold,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Numeric,
    Connection,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
    NoSort,
    Sort,
    Exact,
    McastInterface,
    Syncid,
    SyncMaxlen,
    McastGroup,
    McastPort,
    McastTtl,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

struct OptDef {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    id: Id,
}

const fn d(long: &'static str, short: Option<char>, arg: Arg, id: Id) -> OptDef {
    OptDef {
        long,
        short,
        arg,
        id,
    }
}

const OPTS: &[OptDef] = &[
    d("add-service", Some('A'), Arg::No, Id::AddService),
    d("edit-service", Some('E'), Arg::No, Id::EditService),
    d("delete-service", Some('D'), Arg::No, Id::DeleteService),
    d("clear", Some('C'), Arg::No, Id::Clear),
    d("restore", Some('R'), Arg::No, Id::Restore),
    d("save", Some('S'), Arg::No, Id::Save),
    d("add-server", Some('a'), Arg::No, Id::AddServer),
    d("edit-server", Some('e'), Arg::No, Id::EditServer),
    d("delete-server", Some('d'), Arg::No, Id::DeleteServer),
    d("list", Some('L'), Arg::No, Id::List),
    d("list", Some('l'), Arg::No, Id::List),
    d("zero", Some('Z'), Arg::No, Id::Zero),
    d("set", None, Arg::No, Id::Set),
    d("start-daemon", None, Arg::Required, Id::StartDaemon),
    d("stop-daemon", None, Arg::Required, Id::StopDaemon),
    d("help", Some('h'), Arg::No, Id::Help),
    d("version", Some('v'), Arg::No, Id::Version),
    d("tcp-service", Some('t'), Arg::Required, Id::Tcp),
    d("udp-service", Some('u'), Arg::Required, Id::Udp),
    d("sctp-service", None, Arg::Required, Id::Sctp),
    d("fwmark-service", Some('f'), Arg::Required, Id::Fwmark),
    d("ipv6", Some('6'), Arg::No, Id::Ipv6),
    d("scheduler", Some('s'), Arg::Required, Id::Scheduler),
    d("persistent", Some('p'), Arg::Optional, Id::Persistent),
    d("netmask", Some('M'), Arg::Required, Id::Netmask),
    d("pe", None, Arg::Required, Id::Pe),
    d("sched-flags", Some('b'), Arg::Required, Id::SchedFlags),
    d("ops", Some('o'), Arg::No, Id::Ops),
    d("real-server", Some('r'), Arg::Required, Id::RealServer),
    d("gatewaying", Some('g'), Arg::No, Id::Gatewaying),
    d("ipip", Some('i'), Arg::No, Id::Ipip),
    d("masquerading", Some('m'), Arg::No, Id::Masquerading),
    d("weight", Some('w'), Arg::Required, Id::Weight),
    d("u-threshold", Some('x'), Arg::Required, Id::UThreshold),
    d("l-threshold", Some('y'), Arg::Required, Id::LThreshold),
    d("tun-type", None, Arg::Required, Id::TunType),
    d("tun-port", None, Arg::Required, Id::TunPort),
    d("tun-nocsum", None, Arg::No, Id::TunNocsum),
    d("tun-csum", None, Arg::No, Id::TunCsum),
    d("tun-remcsum", None, Arg::No, Id::TunRemcsum),
    d("numeric", Some('n'), Arg::No, Id::Numeric),
    d("connection", Some('c'), Arg::No, Id::Connection),
    d("timeout", None, Arg::No, Id::Timeout),
    d("daemon", None, Arg::No, Id::Daemon),
    d("stats", None, Arg::No, Id::Stats),
    d("rate", None, Arg::No, Id::Rate),
    d("thresholds", None, Arg::No, Id::Thresholds),
    d("persistent-conn", None, Arg::No, Id::PersistentConn),
    d("tun-info", None, Arg::No, Id::TunInfo),
    d("nosort", None, Arg::No, Id::NoSort),
    d("sort", None, Arg::No, Id::Sort),
    d("exact", Some('X'), Arg::No, Id::Exact),
    d("mcast-interface", None, Arg::Required, Id::McastInterface),
    d("syncid", None, Arg::Required, Id::Syncid),
    d("sync-maxlen", None, Arg::Required, Id::SyncMaxlen),
    d("mcast-group", None, Arg::Required, Id::McastGroup),
    d("mcast-port", None, Arg::Required, Id::McastPort),
    d("mcast-ttl", None, Arg::Required, Id::McastTtl),
];

/// One popt event.
enum Event {
    Opt { id: Id, value: Option<String> },
    Arg(String),
    Error { option: String, text: &'static str },
}

/// Splits the words into popt events; stops at the first popt error.
fn tokenize(args: &[String]) -> Vec<Event> {
    let mut ev = Vec::new();
    let mut i = 0;
    let mut only_args = false;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if only_args || word == "-" || !word.starts_with('-') {
            ev.push(Event::Arg(word.clone()));
            continue;
        }
        if word == "--" {
            only_args = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(def) = OPTS.iter().find(|o| o.long == name) else {
                ev.push(Event::Error {
                    option: word.clone(),
                    text: "unknown option",
                });
                return ev;
            };
            let value = match (def.arg, inline) {
                (Arg::No, Some(_)) => {
                    ev.push(Event::Error {
                        option: word.clone(),
                        text: "option does not take an argument",
                    });
                    return ev;
                }
                (Arg::No, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        ev.push(Event::Error {
                            option: word.clone(),
                            text: "missing argument",
                        });
                        return ev;
                    }
                },
                (Arg::Optional, None) => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        Some(v.clone())
                    }
                    _ => None,
                },
            };
            ev.push(Event::Opt { id: def.id, value });
            continue;
        }
        // Bundled short options.
        let body = &word[1..];
        for (pos, c) in body.char_indices() {
            let Some(def) = OPTS.iter().find(|o| o.short == Some(c)) else {
                ev.push(Event::Error {
                    option: word.clone(),
                    text: "unknown option",
                });
                return ev;
            };
            let rest = &body[pos + c.len_utf8()..];
            match def.arg {
                Arg::No => ev.push(Event::Opt {
                    id: def.id,
                    value: None,
                }),
                Arg::Required | Arg::Optional => {
                    let value = if !rest.is_empty() {
                        Some(rest.to_string())
                    } else {
                        match args.get(i) {
                            Some(v) if def.arg == Arg::Required || !v.starts_with('-') => {
                                i += 1;
                                Some(v.clone())
                            }
                            None if def.arg == Arg::Required => {
                                ev.push(Event::Error {
                                    option: word.clone(),
                                    text: "missing argument",
                                });
                                return ev;
                            }
                            _ => None,
                        }
                    };
                    ev.push(Event::Opt { id: def.id, value });
                    break;
                }
            }
        }
    }
    ev
}

// ---------------------------------------------------------------------------
// Commands and options as ipvsadm counts them

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Set,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Set => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
        }
    }
    /// Column of the legality table (spec §3.1 order).
    fn column(self) -> usize {
        match self {
            Cmd::Add | Cmd::Edit => 0,
            Cmd::Del => 1,
            Cmd::Flush => 2,
            Cmd::List => 3,
            Cmd::AddDest | Cmd::EditDest => 4,
            Cmd::DelDest => 5,
            Cmd::Set => 6,
            Cmd::StartDaemon => 7,
            Cmd::StopDaemon => 8,
            Cmd::Restore => 9,
            Cmd::Save => 10,
            Cmd::Zero => 11,
        }
    }
}

/// ipvsadm's option bits, in its order (the order of the legality checks),
/// with message names and legality rows (columns: -A/-E -D -C -L -a/-e -d
/// --set --start-daemon --stop-daemon -R -S -Z; `x` illegal, `o` optional,
/// `+` required, `1` exclusive).
const OPT_TABLE: &[(&str, &str)] = &[
    ("numeric", "xxxoxxxxxxox"),
    ("connection", "xxx1xxxxxxxx"),
    ("service-address", "++x1++xxxxxo"),
    ("scheduler", "oxxxxxxxxxxx"),
    ("persistent", "oxxxxxxxxxxx"),
    ("netmask", "oxxxxxxxxxxx"),
    ("real-server", "xxxx++xxxxxx"),
    ("forwarding-method", "xxxxoxxxxxxx"),
    ("weight", "xxxxoxxxxxxx"),
    ("u-threshold", "xxxxoxxxxxxx"),
    ("l-threshold", "xxxxoxxxxxxx"),
    ("mcast-interface", "xxxxxxxoxxxx"),
    ("timeout", "xxx1xxxxxxxx"),
    ("daemon", "xxx1xxxxxxxx"),
    ("stats", "xxxoxxxxxxxx"),
    ("rate", "xxxoxxxxxxxx"),
    ("thresholds", "xxxoxxxxxxxx"),
    ("persistent-conn", "xxxoxxxxxxxx"),
    ("nosort", "xxxoxxxxxxxx"),
    ("syncid", "xxxoxxxooxxx"),
    ("exact", "xxxoxxxxxxxx"),
    ("ops", "oxxxxxxxxxxx"),
    ("pe", "oxxxxxxxxxxx"),
    ("sched-flags", "oxxxxxxxxxxx"),
    ("mcast-group", "xxxxxxxoxxxx"),
    ("mcast-port", "xxxxxxxoxxxx"),
    ("mcast-ttl", "xxxxxxxoxxxx"),
    ("sync-maxlen", "xxxxxxxoxxxx"),
    ("tun-info", "xxxoxxxxxxxx"),
    ("tun-type", "xxxxoxxxxxxx"),
    ("tun-port", "xxxxoxxxxxxx"),
    ("tun-nocsum", "xxxxoxxxxxxx"),
    ("tun-csum", "xxxxoxxxxxxx"),
    ("tun-remcsum", "xxxxoxxxxxxx"),
];

mod bit {
    pub const NUMERIC: usize = 0;
    pub const CONNECTION: usize = 1;
    pub const SERVICE: usize = 2;
    pub const SCHEDULER: usize = 3;
    pub const PERSISTENT: usize = 4;
    pub const NETMASK: usize = 5;
    pub const SERVER: usize = 6;
    pub const FORWARD: usize = 7;
    pub const WEIGHT: usize = 8;
    pub const UTHRESHOLD: usize = 9;
    pub const LTHRESHOLD: usize = 10;
    pub const MCAST: usize = 11;
    pub const TIMEOUT: usize = 12;
    pub const DAEMON: usize = 13;
    pub const STATS: usize = 14;
    pub const RATE: usize = 15;
    pub const THRESHOLDS: usize = 16;
    pub const PERSISTENTCONN: usize = 17;
    pub const NOSORT: usize = 18;
    pub const SYNCID: usize = 19;
    pub const EXACT: usize = 20;
    pub const ONEPACKET: usize = 21;
    pub const PE: usize = 22;
    pub const SCHED_FLAGS: usize = 23;
    pub const MCAST_GROUP: usize = 24;
    pub const MCAST_PORT: usize = 25;
    pub const MCAST_TTL: usize = 26;
    pub const SYNC_MAXLEN: usize = 27;
    pub const TUN_INFO: usize = 28;
    pub const TUN_TYPE: usize = 29;
    pub const TUN_PORT: usize = 30;
    pub const TUN_NOCSUM: usize = 31;
    pub const TUN_CSUM: usize = 32;
    pub const TUN_REMCSUM: usize = 33;
}

/// Largest `-p` / `--set` value: 31 days.
const MAX_TIMEOUT: i64 = 2_678_400;
/// `-p` without a value.
const DEFAULT_PERSISTENT: u32 = 360;

struct State {
    cmd: Option<Cmd>,
    options: u64,
    protocol: Protocol,
    fwmark: Option<u32>,
    fwmark_v6: bool,
    svc_addr: Option<IpAddr>,
    svc_port: u16,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: u32,
    sched_flags_arg: Option<String>,
    one_packet: bool,
    dest_addr: Option<IpAddr>,
    dest_port: u16,
    forward: Forward,
    weight: i32,
    u_threshold: u32,
    l_threshold: u32,
    /// `--tun-type`, `--tun-port` and the checksum option, as given
    /// (ipvsadm's initial values: ipip, port 0, no checksum).
    tunnel: Tunnel,
    daemon_state: Option<String>,
    /// The sync daemon's options.
    mcast_ifn: Option<String>,
    syncid: u8,
    sync_maxlen: u16,
    mcast_group: Option<IpAddr>,
    mcast_port: u16,
    mcast_ttl: u8,
    leftovers: Vec<String>,
}

impl State {
    fn new() -> State {
        State {
            cmd: None,
            options: 0,
            protocol: Protocol::Tcp,
            fwmark: None,
            fwmark_v6: false,
            svc_addr: None,
            svc_port: 0,
            scheduler: None,
            persistent: None,
            netmask: u32::MAX,
            sched_flags_arg: None,
            one_packet: false,
            dest_addr: None,
            dest_port: 0,
            forward: Forward::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Tunnel::default(),
            daemon_state: None,
            mcast_ifn: None,
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
            leftovers: Vec::new(),
        }
    }

    fn has(&self, b: usize) -> bool {
        self.options & (1u64 << b) != 0
    }

    /// `set_option`: a second occurrence is an error.
    fn set(&mut self, b: usize) -> Result<(), UsageError> {
        if self.has(b) {
            return fail(format!("multiple '{}' options specified", OPT_TABLE[b].0));
        }
        self.options |= 1u64 << b;
        Ok(())
    }

    fn set_command(&mut self, c: Cmd) -> Result<(), UsageError> {
        if self.cmd.is_some() {
            return fail("multiple commands specified");
        }
        self.cmd = Some(c);
        Ok(())
    }
}

/// ipvsadm's `string_to_number`: strtol base 10 over the whole string, then
/// a range check.
fn number(s: &str, min: i64, max: i64) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let n: i64 = t.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

/// inet_aton syntax: 1–4 parts, each decimal, `0x` hex or `0` octal; the last
/// part fills the remaining bytes.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for p in s.split('.') {
        let v = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if h.is_empty() {
                0 // "0x" alone is 0 for strtoul
            } else if h.bytes().all(|b| b.is_ascii_hexdigit()) {
                u64::from_str_radix(h, 16).ok()?
            } else {
                return None;
            }
        } else if p.len() > 1 && p.starts_with('0') {
            if !p.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            u64::from_str_radix(p, 8).ok()?
        } else {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u64>().ok()?
        };
        parts.push(v);
    }
    let n = parts.len();
    if n > 4 {
        return None;
    }
    let (head, last) = parts.split_at(n - 1);
    if head.iter().any(|&v| v > 255) {
        return None;
    }
    let last = last[0];
    let rest_bits = 8 * (5 - n as u32); // bits covered by the last part
    if rest_bits < 64 && last >> rest_bits != 0 {
        return None;
    }
    let mut val: u64 = 0;
    for (k, v) in head.iter().enumerate() {
        val |= v << (24 - 8 * k as u32);
    }
    val |= last;
    u32::try_from(val).ok().map(Ipv4Addr::from)
}

/// Result of `parse_service`: address and the port if one was given.
fn parse_addrport(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = |p: &str| -> Option<u16> {
        let n = number(p, 0, 65535)?;
        u16::try_from(n).ok()
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let p = tail.strip_prefix(':')?;
        let a: Ipv6Addr = host.parse().ok()?;
        return Some((IpAddr::V6(a), Some(port(p)?)));
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(a), None));
    }
    match s.rsplit_once(':') {
        Some((host, p)) => Some((IpAddr::V4(inet_aton(host)?), Some(port(p)?))),
        None => Some((IpAddr::V4(inet_aton(s)?), None)),
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Parses an ipvsadm command line (without `argv[0]`).
pub fn parse_args(args: &[String]) -> Result<Command, UsageError> {
    if args.is_empty() {
        return Ok(Command::List {
            target: ListTarget::All,
            opts: ListOptions::default(),
            numeric: false,
        });
    }
    let mut st = State::new();
    let mut first = true;
    for ev in tokenize(args) {
        let (id, value) = match ev {
            Event::Arg(a) => {
                st.leftovers.push(a);
                continue;
            }
            Event::Error { option, text } => {
                if first {
                    return Err(UsageError::TryHelp);
                }
                return Err(UsageError::Popt { option, text });
            }
            Event::Opt { id, value } => (id, value),
        };
        let val = value.unwrap_or_default();
        if first {
            first = false;
            match id {
                Id::Help => return Ok(Command::Help),
                Id::Version => return Ok(Command::Version),
                _ if command_of(id).is_none() => return Err(UsageError::TryHelp),
                _ => {}
            }
        }
        if let Some(c) = command_of(id) {
            st.set_command(c)?;
            match id {
                Id::StartDaemon => {
                    if val != "master" && val != "backup" {
                        return fail("illegal start-daemon parameter specified");
                    }
                    st.daemon_state = Some(val);
                }
                Id::StopDaemon => {
                    if val != "master" && val != "backup" {
                        return fail("illegal start_daemon specified");
                    }
                    st.daemon_state = Some(val);
                }
                _ => {}
            }
            continue;
        }
        option(&mut st, id, &val)?;
    }
    let Some(cmd) = st.cmd else {
        return Err(UsageError::TryHelp);
    };

    // --set values, leftovers.
    let mut leftovers = std::mem::take(&mut st.leftovers).into_iter();
    let mut set_values = None;
    if cmd == Cmd::Set {
        let vals: Vec<String> = leftovers.by_ref().take(3).collect();
        if vals.len() < 3 {
            return fail("--set option requires 3 timeout values");
        }
        let mut t = [0u32; 3];
        for (slot, v) in t.iter_mut().zip(&vals) {
            match number(v, 0, MAX_TIMEOUT) {
                Some(n) => *slot = n as u32,
                None => return fail(format!("invalid timeout value `{v}' specified")),
            }
        }
        set_values = Some(Timeouts {
            tcp: t[0],
            tcpfin: t[1],
            udp: t[2],
        });
    }
    if let Some(extra) = leftovers.next() {
        return fail(format!("unexpected argument {extra}"));
    }

    // Scheduler flags are checked after all options.
    let mut sched_flags = 0u32;
    if let Some(list) = st.sched_flags_arg.clone() {
        let sched = st.scheduler.as_deref().unwrap_or("wlc");
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            let (bits, needs) = match flag {
                "flag-1" => (0x08, None),
                "flag-2" => (0x10, None),
                "flag-3" => (0x20, None),
                "sh-fallback" => (0x08, Some("sh")),
                "sh-port" => (0x10, Some("sh")),
                "mh-fallback" => (0x08, Some("mh")),
                "mh-port" => (0x10, Some("mh")),
                _ => return fail(format!("invalid scheduler flag `{flag}'")),
            };
            if needs.is_some_and(|n| n != sched) {
                return fail(format!("incompatible scheduler flag `{flag}'"));
            }
            sched_flags |= bits;
        }
    }

    generic_opt_check(cmd, st.options)?;

    // Not expressible yet: refuse after ipvsadm's own checks.
    if st.has(bit::PE) {
        return Err(UsageError::Unsupported(
            "a persistence engine (--pe)".into(),
        ));
    }

    let key = match st.fwmark {
        Some(mark) => Some(ServiceKey::fwmark(mark, st.fwmark_v6)),
        None => st.svc_addr.map(|addr| ServiceKey {
            protocol: st.protocol,
            addr,
            port: st.svc_port,
        }),
    };
    let fwmark = st.fwmark.is_some();

    match cmd {
        Cmd::Add | Cmd::Edit => {
            let Some(key) = key else {
                return Err(UsageError::TryHelp);
            };
            if key.port == 0 && st.persistent.is_none() && !fwmark {
                return fail("Zero port specified for non-persistent service");
            }
            if st.one_packet && key.protocol != Protocol::Udp && !fwmark {
                return fail("One-Packet Scheduling is only for UDP virtual services");
            }
            let spec = ServiceSpec {
                key,
                scheduler: st.scheduler.clone().unwrap_or_else(|| "wlc".into()),
                sched_flags,
                persistent: st.persistent,
                netmask: st.netmask,
                one_packet: st.one_packet,
            };
            Ok(Command::Apply(if cmd == Cmd::Add {
                Request::AddService(spec)
            } else {
                Request::EditService(spec)
            }))
        }
        Cmd::Del => match key {
            Some(k) => Ok(Command::Apply(Request::DeleteService(k))),
            None => Err(UsageError::TryHelp),
        },
        Cmd::Flush => Ok(Command::Apply(Request::Clear)),
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let (Some(service), Some(addr)) = (key, st.dest_addr) else {
                return Err(UsageError::TryHelp);
            };
            let mut port = st.dest_port;
            if cmd == Cmd::DelDest {
                return Ok(Command::Apply(Request::DeleteDest {
                    service,
                    addr,
                    port,
                }));
            }
            if matches!(st.forward, Forward::Tunnel | Forward::Route) && !fwmark {
                port = service.port;
            }
            if addr.is_ipv4() != service.addr.is_ipv4() && st.forward != Forward::Tunnel {
                return fail("Different address family is allowed only for tunneling servers");
            }
            let tun_opts = [
                bit::TUN_TYPE,
                bit::TUN_PORT,
                bit::TUN_NOCSUM,
                bit::TUN_CSUM,
                bit::TUN_REMCSUM,
            ];
            if tun_opts.iter().any(|&b| st.has(b)) {
                if st.forward != Forward::Tunnel {
                    return fail("Tunnel options conflict with forward method");
                }
                tunnel_check(&st)?;
            }
            let dest = DestSpec {
                addr,
                port,
                forward: st.forward,
                weight: st.weight,
                u_threshold: st.u_threshold,
                l_threshold: st.l_threshold,
                tunnel: st.tunnel,
            };
            Ok(Command::Apply(if cmd == Cmd::AddDest {
                Request::AddDest { service, dest }
            } else {
                Request::EditDest { service, dest }
            }))
        }
        Cmd::Set => Ok(Command::Apply(Request::SetTimeouts(set_values.unwrap_or(
            Timeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 0,
            },
        )))),
        Cmd::List => {
            let o = |b| st.has(b);
            if (o(bit::CONNECTION) || o(bit::TIMEOUT) || o(bit::DAEMON))
                && (o(bit::STATS) || o(bit::RATE) || o(bit::THRESHOLDS))
                || (o(bit::TIMEOUT) || o(bit::DAEMON)) && o(bit::PERSISTENTCONN)
            {
                return fail("options conflicts in the list command");
            }
            if o(bit::DAEMON) {
                return Ok(Command::ListDaemons);
            }
            // Precedence: stats > rate > thresholds > persistent-conn > tun-info.
            let mode = if o(bit::STATS) {
                ListMode::Stats {
                    exact: o(bit::EXACT),
                }
            } else if o(bit::RATE) {
                ListMode::Rate {
                    exact: o(bit::EXACT),
                }
            } else if o(bit::THRESHOLDS) {
                ListMode::Thresholds
            } else if o(bit::PERSISTENTCONN) {
                ListMode::PersistentConn
            } else if o(bit::TUN_INFO) {
                ListMode::TunInfo
            } else {
                ListMode::Default
            };
            let target = if o(bit::CONNECTION) {
                ListTarget::Connections {
                    persistent_conn: o(bit::PERSISTENTCONN),
                }
            } else if let Some(k) = key {
                ListTarget::Service(k)
            } else if o(bit::TIMEOUT) {
                ListTarget::Timeouts
            } else {
                ListTarget::All
            };
            Ok(Command::List {
                target,
                opts: ListOptions {
                    mode,
                    nosort: o(bit::NOSORT),
                },
                numeric: o(bit::NUMERIC),
            })
        }
        Cmd::Save => Ok(Command::Save {
            nosort: st.has(bit::NOSORT),
        }),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::Zero => Ok(Command::Apply(Request::Zero(key))),
        Cmd::StartDaemon | Cmd::StopDaemon => {
            let role = match st.daemon_state.as_deref() {
                Some("backup") => SyncRole::Backup,
                _ => SyncRole::Master,
            };
            if matches!(st.cmd, Some(Cmd::StopDaemon)) {
                return Ok(Command::Apply(Request::StopDaemon(role)));
            }
            Ok(Command::Apply(Request::StartDaemon(DaemonConfig {
                role,
                ifname: st.mcast_ifn.clone().unwrap_or_else(|| "eth0".into()),
                syncid: st.syncid,
                maxlen: st.sync_maxlen,
                group: st.mcast_group,
                port: st.mcast_port,
                ttl: st.mcast_ttl,
                resync: false,
            })))
        }
    }
}

fn command_of(id: Id) -> Option<Cmd> {
    Some(match id {
        Id::AddService => Cmd::Add,
        Id::EditService => Cmd::Edit,
        Id::DeleteService => Cmd::Del,
        Id::Clear => Cmd::Flush,
        Id::Restore => Cmd::Restore,
        Id::Save => Cmd::Save,
        Id::AddServer => Cmd::AddDest,
        Id::EditServer => Cmd::EditDest,
        Id::DeleteServer => Cmd::DelDest,
        Id::List => Cmd::List,
        Id::Zero => Cmd::Zero,
        Id::Set => Cmd::Set,
        Id::StartDaemon => Cmd::StartDaemon,
        Id::StopDaemon => Cmd::StopDaemon,
        // Help/version after the first position count as a second command.
        Id::Help | Id::Version => Cmd::List,
        _ => return None,
    })
}

fn option(st: &mut State, id: Id, val: &str) -> Result<(), UsageError> {
    match id {
        Id::Tcp | Id::Udp | Id::Sctp => {
            st.set(bit::SERVICE)?;
            st.protocol = match id {
                Id::Tcp => Protocol::Tcp,
                Id::Udp => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            let Some((addr, port)) = parse_addrport(val) else {
                return fail("illegal virtual server address[:port] specified");
            };
            st.svc_addr = Some(addr);
            st.svc_port = port.unwrap_or(0);
            if addr.is_ipv6() {
                st.netmask = 128;
            }
        }
        Id::Fwmark => {
            st.set(bit::SERVICE)?;
            match number(val, 1, u32::MAX as i64) {
                Some(n) => st.fwmark = Some(n as u32),
                None => return fail(format!("invalid fwmark value `{val}' specified")),
            }
        }
        Id::Ipv6 => {
            if st.fwmark.is_none() {
                return fail("-6 used before -f\n");
            }
            st.fwmark_v6 = true;
            st.netmask = 128;
        }
        Id::Scheduler => {
            st.set(bit::SCHEDULER)?;
            st.scheduler = Some(truncate(val, 15));
        }
        Id::Persistent => {
            st.set(bit::PERSISTENT)?;
            if val.is_empty() {
                st.persistent = Some(DEFAULT_PERSISTENT);
            } else {
                match number(val, 1, MAX_TIMEOUT) {
                    Some(n) => st.persistent = Some(n as u32),
                    None => return fail(format!("invalid timeout value `{val}' specified")),
                }
            }
        }
        Id::Netmask => {
            st.set(bit::NETMASK)?;
            let v6 = st.svc_addr.is_some_and(|a| a.is_ipv6()) || st.fwmark_v6;
            if v6 {
                match number(val, 1, 128) {
                    Some(n) => st.netmask = n as u32,
                    None => return fail("illegal ipv6 netmask specified"),
                }
            } else {
                match inet_aton(val) {
                    Some(m) => st.netmask = u32::from(m),
                    None => return fail("illegal virtual server persistent mask specified"),
                }
            }
        }
        Id::Pe => st.set(bit::PE)?,
        Id::SchedFlags => {
            st.set(bit::SCHED_FLAGS)?;
            st.sched_flags_arg = Some(val.to_string());
        }
        Id::Ops => {
            st.set(bit::ONEPACKET)?;
            st.one_packet = true;
        }
        Id::RealServer => {
            st.set(bit::SERVER)?;
            let Some((addr, port)) = parse_addrport(val) else {
                return fail("illegal real server address[:port] specified");
            };
            st.dest_addr = Some(addr);
            // Copy the service port when none given (as parsed so far).
            st.dest_port = port.unwrap_or(st.svc_port);
        }
        Id::Gatewaying | Id::Ipip | Id::Masquerading => {
            st.set(bit::FORWARD)?;
            st.forward = match id {
                Id::Gatewaying => Forward::Route,
                Id::Ipip => Forward::Tunnel,
                _ => Forward::Masq,
            };
        }
        Id::Weight => {
            st.set(bit::WEIGHT)?;
            match number(val, 0, i32::MAX as i64) {
                Some(n) => st.weight = n as i32,
                None => return fail("illegal weight specified"),
            }
        }
        Id::UThreshold => {
            st.set(bit::UTHRESHOLD)?;
            match number(val, 0, i32::MAX as i64) {
                Some(n) => st.u_threshold = n as u32,
                None => return fail("illegal u_threshold specified"),
            }
        }
        Id::LThreshold => {
            st.set(bit::LTHRESHOLD)?;
            match number(val, 0, i32::MAX as i64) {
                Some(n) => st.l_threshold = n as u32,
                None => return fail("illegal l_threshold specified"),
            }
        }
        Id::TunType => {
            st.set(bit::TUN_TYPE)?;
            st.tunnel.kind = match val {
                "ipip" => TunnelType::Ipip,
                "gue" => TunnelType::Gue,
                "gre" => TunnelType::Gre,
                _ => return fail("illegal tunnel type specified"),
            };
        }
        Id::TunPort => {
            st.set(bit::TUN_PORT)?;
            match number(val, 1, 65535).and_then(|n| u16::try_from(n).ok()) {
                Some(n) => st.tunnel.port = n,
                None => return fail("illegal tunnel port specified"),
            }
        }
        Id::TunNocsum => {
            st.set(bit::TUN_NOCSUM)?;
            st.tunnel.csum = TunnelCsum::NoCsum;
        }
        Id::TunCsum => {
            st.set(bit::TUN_CSUM)?;
            st.tunnel.csum = TunnelCsum::Csum;
        }
        Id::TunRemcsum => {
            st.set(bit::TUN_REMCSUM)?;
            st.tunnel.csum = TunnelCsum::RemCsum;
        }
        Id::Numeric => st.set(bit::NUMERIC)?,
        Id::Connection => st.set(bit::CONNECTION)?,
        Id::Timeout => st.set(bit::TIMEOUT)?,
        Id::Daemon => st.set(bit::DAEMON)?,
        Id::Stats => st.set(bit::STATS)?,
        Id::Rate => st.set(bit::RATE)?,
        Id::Thresholds => st.set(bit::THRESHOLDS)?,
        Id::PersistentConn => st.set(bit::PERSISTENTCONN)?,
        Id::TunInfo => st.set(bit::TUN_INFO)?,
        Id::NoSort => st.set(bit::NOSORT)?,
        Id::Sort => {}
        Id::Exact => st.set(bit::EXACT)?,
        Id::McastInterface => {
            st.set(bit::MCAST)?;
            // ipvsadm keeps the first 15 characters (IFNAMSIZ - 1).
            st.mcast_ifn = Some(val.chars().take(15).collect());
        }
        Id::Syncid => {
            st.set(bit::SYNCID)?;
            match number(val, 0, 255) {
                Some(n) => st.syncid = n as u8,
                None => return fail("illegal syncid specified"),
            }
        }
        Id::SyncMaxlen => {
            st.set(bit::SYNC_MAXLEN)?;
            match number(val, 1, 65507) {
                Some(n) => st.sync_maxlen = n as u16,
                None => return fail("illegal sync-maxlen specified"),
            }
        }
        Id::McastGroup => {
            st.set(bit::MCAST_GROUP)?;
            if val.contains(':') {
                match val.parse::<Ipv6Addr>() {
                    Ok(a) if a.is_multicast() => st.mcast_group = Some(IpAddr::V6(a)),
                    _ => return fail(format!("invalid IPv6 mcast-group `{val}'")),
                }
            } else {
                match inet_aton(val) {
                    Some(a) if a.is_multicast() => st.mcast_group = Some(IpAddr::V4(a)),
                    _ => return fail(format!("invalid IPv4 mcast-group `{val}'")),
                }
            }
        }
        Id::McastPort => {
            st.set(bit::MCAST_PORT)?;
            match number(val, 1, 65535) {
                Some(n) => st.mcast_port = n as u16,
                None => return fail("illegal mcast-port specified"),
            }
        }
        Id::McastTtl => {
            st.set(bit::MCAST_TTL)?;
            match number(val, 1, 255) {
                Some(n) => st.mcast_ttl = n as u8,
                None => return fail("illegal mcast-ttl specified"),
            }
        }
        // Commands are handled by the caller.
        _ => {}
    }
    Ok(())
}

/// The legality table of §3.1, in ipvsadm's option order.
fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), UsageError> {
    let col = cmd.column();
    let mut last: Option<usize> = None;
    for (j, (name, row)) in OPT_TABLE.iter().enumerate() {
        let rule = row.as_bytes().get(col).copied().unwrap_or(b'x');
        let set = options & (1u64 << j) != 0;
        if !set {
            if rule == b'+' {
                return fail(format!(
                    "You need to supply the '{name}' option for the '{}' command",
                    cmd.name()
                ));
            }
            continue;
        }
        match rule {
            b'x' => {
                return fail(format!(
                    "Illegal '{name}' option with the '{}' command",
                    cmd.name()
                ))
            }
            b'1' => match last {
                None => last = Some(j),
                Some(l) => {
                    return fail(format!(
                        "The option '{name}' conflicts with the '{}' option in the '{}' command",
                        OPT_TABLE[l].0,
                        cmd.name()
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The tunnel-type table of §4 (only called with method tunnel).
fn tunnel_check(st: &State) -> Result<(), UsageError> {
    let tname = st.tunnel.kind.label();
    let (port_rule, csum_rules) = match st.tunnel.kind {
        TunnelType::Ipip => (b'x', [b'x', b'x', b'x']),
        TunnelType::Gue => (b'+', [b'1', b'1', b'1']),
        TunnelType::Gre => (b'x', [b'1', b'1', b'x']),
    };
    let checks = [
        (bit::TUN_PORT, port_rule),
        (bit::TUN_NOCSUM, csum_rules[0]),
        (bit::TUN_CSUM, csum_rules[1]),
        (bit::TUN_REMCSUM, csum_rules[2]),
    ];
    let mut last: Option<usize> = None;
    for (b, rule) in checks {
        let name = OPT_TABLE[b].0;
        if !st.has(b) {
            if rule == b'+' {
                return fail(format!(
                    "You need to supply the '{name}' option for the '{tname}' tunnel type"
                ));
            }
            continue;
        }
        match rule {
            b'x' => {
                return fail(format!(
                    "Illegal '{name}' option with the '{tname}' tunnel type"
                ))
            }
            b'1' => match last {
                None => last = Some(b),
                Some(l) => {
                    return fail(format!(
                        "The option '{name}' conflicts with the '{}' option in the '{tname}' tunnel type",
                        OPT_TABLE[l].0
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
