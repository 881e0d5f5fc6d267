//! `lvs-config`: the director configuration language of lvsd.
//!
//! This crate turns the text of a configuration file written in the
//! "director" language of HAProxy ALOHA's LVS manager (plus our global
//! `interface` statement) into a typed AST ([`Config`]). It does no I/O apart
//! from [`load`] and knows nothing about the kernel or the data plane: the
//! daemon (`lvsd`) consumes the AST and may itself reject valid-but-unsupported
//! constructs with [`ConfigError::at`], which produces the same
//! `file:line:col` diagnostics as the parser.
//!
//! Every line must be understood: an unknown statement, option, or malformed
//! value is an error pointing at the offending token, never silently ignored.
//! The parser never panics, whatever the input.
//!
//! # Language summary
//!
//! ```text
//! interface <name>                                   # global, repeatable
//! director <name> [ <ip>[:<port>] [TCP|UDP|SCTP] ]
//!     balance { roundrobin | leastconn [localitybased [replication]] | source
//!             | srcdst | dest | shortestexpected | shortexpdelay | neverqueue
//!             | fo | mh | ovh | twos }
//!     mode { gateway | nat | tunnel [<tunnel>] }
//!     check [timeout <s>] [interval <s>] [source <ip>] [port <port>]
//!           [rise <n>] [fall <n>] [inhibit]
//!     option persistence [timeout <s>] [netmask <mask>]
//!     option httpcheck [uri <uri>] [statuscode <int>] [vhost <string>]
//!     option tcpcheck | option arpcheck [iface <name>] | option icmpcheck
//!     option onepacket
//!     option schedflags <flag>[,<flag>...]
//!     server <name> <ip>[:<port>] [weight <int>] [maxconn <n>] [minconn <n>]
//!            [check] [sorry] [mode { gateway | nat | tunnel [<tunnel>] }]
//! sysctl <name> <value>                              # global
//! timeout <tcp> <tcpfin> <udp>                       # global
//!
//! <tunnel> = [ ipip | gue port <port> | gre ] [ nocsum | csum | remcsum ]
//! ```
//!
//! # Forwarding methods
//!
//! `mode` sets how a director's servers are reached: `gateway` (direct
//! routing, ipvsadm `-g`; the default when there is no `mode` line), `nat`
//! (`-m`) or `tunnel` (`-i`). A `server` may carry its own `mode`, which
//! replaces the director's entirely for that server (ipvsadm sets the method
//! per real server, so one service may mix them); on a server line the
//! tunnel options end at the first word that is not one.
//!
//! Tunnel options, in any order (ipvsadm's `--tun-*` rules):
//! `ipip` (the default type), `gue port <port>` (GUE to UDP port 1..65535 of
//! the real server; the port is required, and only `gue` takes one) or
//! `gre`; then at most one checksum option: `nocsum` (the default), `csum`
//! (`gue` or `gre`) or `remcsum` (`gue` only). `ipip` has no checksum.
//!
//! Gateway and tunnel forwarding deliver the packet unchanged, so the real
//! server gets the director's port: such a server's port must be absent or
//! equal to the director's (0 for a director without a port). Another port
//! is an error pointing at it (ipvsadm would silently replace it); use
//! `mode nat` to change ports.
//!
//! `#` at the start of a token starts a comment running to the end of the
//! line (a `#` in the middle of a token, e.g. in a URI, is part of it).
//! Tokens are separated by spaces and tabs; indentation is free; `\r\n` line
//! endings and a leading UTF-8 byte-order mark are accepted.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------

/// A position in the source text: 1-based line and 1-based column, the
/// column counting characters (not bytes) from the start of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// 1-based line number (0 means "no position", e.g. an I/O error).
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl Span {
    /// Builds a span from a line and a column.
    pub const fn new(line: u32, col: u32) -> Self {
        Span { line, col }
    }
}

/// A value together with the position of the token it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The parsed value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps `value` with `span`.
    pub const fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Interfaces named by `interface` lines, in file order (no duplicates).
    /// Empty means "all interfaces that are up, except loopback".
    pub interfaces: Vec<Spanned<String>>,
    /// Directors (virtual services), in file order; names are unique.
    pub directors: Vec<Director>,
    /// `sysctl NAME VALUE` lines (IPVS's `/proc/sys/net/ipv4/vs/*` knobs),
    /// in file order; a name at most once. Names and values are checked
    /// by the daemon against its sysctl table.
    pub sysctls: Vec<(Spanned<String>, Spanned<String>)>,
    /// `timeout TCP TCPFIN UDP` (global, at most once): the three timeouts
    /// of `ipvsadm --set`, seconds 0..=2678400, 0 = leave the default.
    pub timeouts: Option<Spanned<[u32; 3]>>,
    /// `control [socket PATH] [group NAME]` (global, at most once): where
    /// lvsd's control socket is, and the group allowed to use it besides
    /// root (the group is looked up by the daemon).
    pub control: Option<Control>,
    /// `metrics ADDRESS:PORT` (global, at most once): where lvsd serves
    /// its Prometheus metrics and status page.
    pub metrics: Option<Spanned<std::net::SocketAddr>>,
    /// `flow` lines, in file order: traffic for the directors without an
    /// address.
    pub flows: Vec<FlowDef>,
    /// `sync master|backup …` lines (global, at most one per role): the
    /// connection sync daemons started with lvsd.
    pub syncs: Vec<SyncDef>,
    /// `vrrp` lines.
    pub vrrps: Vec<VrrpDef>,
}

/// `vrrp NAME interface IF id N priority N [advert S] [nopreempt] address
/// ADDR [address ADDR …]`: a VRRP version 3 virtual router whose addresses
/// lvsd holds while it is master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpDef {
    /// Unique among `vrrp` lines.
    pub name: Spanned<String>,
    /// The link the advertisements go on.
    pub interface: Spanned<String>,
    /// The virtual router ID, 1..=255.
    pub vrid: u8,
    /// 1..=255 (255: the address owner); default 100.
    pub priority: u8,
    /// Advertisement interval in centiseconds (from `advert S`, 0.01..40.95 s;
    /// default 1 s).
    pub interval_cs: u16,
    /// Take over from a lower-priority master (default; `nopreempt` off).
    pub preempt: bool,
    /// `preempt-delay S`: not before S seconds after start (0..=3600).
    pub preempt_delay_s: u32,
    /// The addresses (one family).
    pub addrs: Vec<IpAddr>,
    /// Where the statement is.
    pub span: Span,
}

/// `sync master|backup interface IF [syncid N] [maxlen N] [group ADDR]
/// [port N] [ttl N]`: ipvsadm's `--start-daemon` and its options.
/// `sync vrrp NAME …`: the role follows that VRRP instance (master while
/// it is master, backup otherwise), as keepalived's `lvs_sync_daemon`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDef {
    /// True for `master`, false for `backup`.
    pub master: bool,
    /// The VRRP instance the role follows.
    pub follow: Option<Spanned<String>>,
    /// The multicast interface (`--mcast-interface`).
    pub interface: Spanned<String>,
    /// The sync ID (`--syncid`).
    pub syncid: u8,
    /// 0: the default.
    pub maxlen: u16,
    /// A multicast group; `None`: 224.0.0.81.
    pub group: Option<IpAddr>,
    /// 0: 8848.
    pub port: u16,
    /// 0: 1.
    pub ttl: u8,
    /// `resync`: a backup asks the master for a full copy at start.
    pub resync: bool,
    /// Where the statement is.
    pub span: Span,
}

/// `flow NAME to PREFIX [from PREFIX] [ports LIST] [TCP|UDP|SCTP] director
/// NAME`: packets to PREFIX (from PREFIX), of that protocol (any of TCP,
/// UDP, SCTP when absent), to those ports (any when absent) are balanced by
/// the director, which has no address of its own (a firewall-mark service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDef {
    /// Unique among flows.
    pub name: Spanned<String>,
    /// Destination network: address (host bits zero) and prefix length.
    pub to: Spanned<(IpAddr, u8)>,
    /// Source network, if the flow is limited to some clients.
    pub from: Option<Spanned<(IpAddr, u8)>>,
    /// Inclusive port ranges; empty: every port.
    pub ports: Vec<(u16, u16)>,
    /// `None`: TCP, UDP and SCTP.
    pub protocol: Option<Protocol>,
    /// The director (without an address) that balances the traffic.
    pub director: Spanned<String>,
    /// Where the statement is.
    pub span: Span,
}

/// The control socket's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Control {
    /// `socket PATH`: an absolute path.
    pub socket: Option<Spanned<String>>,
    /// `group NAME`: members may use the socket (mode 0660).
    pub group: Option<Spanned<String>>,
    /// Where the statement is.
    pub span: Span,
}

/// Transport protocol of a director.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (an lvsd extension of the language; ipvsadm `--sctp-service`).
    Sctp,
}

/// Packet forwarding method of a director or of one server.
///
/// The default, when a director has no `mode` line, is [`Mode::Gateway`]
/// (direct routing), like `ipvsadm`'s default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `mode gateway`: direct routing (the default; ipvsadm `-g`).
    Gateway,
    /// `mode nat`: destination NAT (masquerading; ipvsadm `-m`).
    Nat,
    /// `mode tunnel [...]`: encapsulation to the real server (ipvsadm `-i`).
    Tunnel(Tunnel),
}

/// The options of `mode tunnel`: `[ipip | gue port <port> | gre]
/// [nocsum | csum | remcsum]`, default `ipip` without checksum.
///
/// The parser guarantees ipvsadm's rules: `port` only (and always) with
/// `gue`, `remcsum` only with `gue`, `csum` not with `ipip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tunnel {
    /// The encapsulation (`--tun-type`, `--tun-port`).
    pub kind: TunnelType,
    /// The checksum option (`--tun-nocsum`, `--tun-csum`, `--tun-remcsum`).
    pub csum: TunnelCsum,
}

/// Encapsulation of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelType {
    /// `ipip`: IP in IP (the default).
    #[default]
    Ipip,
    /// `gue port <port>`: Generic UDP Encapsulation to UDP port `port` (1..=65535).
    Gue {
        /// The real server's GUE port.
        port: u16,
    },
    /// `gre`: GRE without key or sequence number.
    Gre,
}

/// Checksum option of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelCsum {
    /// `nocsum`: no outer checksum (the default).
    #[default]
    NoCsum,
    /// `csum`: GUE with a UDP checksum, GRE with a GRE checksum (`gue`, `gre`).
    Csum,
    /// `remcsum`: GUE remote checksum offload (`gue` only).
    RemCsum,
}

/// A `director` section: one virtual service and its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Director {
    /// The director's name (unique in the file); span of the name token.
    pub name: Spanned<String>,
    /// `director NAME mark N`: the firewall mark of a director without an
    /// address (chosen by lvsd when absent).
    pub mark: Option<Spanned<u32>>,
    /// `director NAME [mark N] ipv6`: a director without an address that is
    /// an IPv6 firewall-mark service (`ipvsadm -f N -6`) even before it has
    /// flows; span of the word. Without it the flows give the family.
    pub ipv6: Option<Span>,
    /// Virtual address, if any (a director without one is reached through a
    /// flow); span of the address token.
    pub addr: Option<Spanned<IpAddr>>,
    /// Virtual port; `None` when the address has no `:port`.
    pub port: Option<u16>,
    /// Protocol (default [`Protocol::Tcp`]).
    pub protocol: Protocol,
    /// Kernel scheduler name (`"wlc"`, `"wrr"`, `"lblc"`, …). Span of the
    /// `balance` keyword, or of the `director` keyword when defaulted
    /// (default `"wlc"`).
    pub balance: Spanned<&'static str>,
    /// Forwarding method of servers without their own `mode`; span of the
    /// `mode` keyword, or of the `director` keyword when defaulted (default
    /// [`Mode::Gateway`]). See [`Director::server_mode`].
    pub mode: Spanned<Mode>,
    /// Global check parameters (`check` line); span of the `check` keyword.
    pub check: Option<Spanned<Check>>,
    /// `option persistence`; span of the `persistence` word.
    pub persistence: Option<Spanned<Persistence>>,
    /// The health-check method (`option httpcheck|tcpcheck|arpcheck|icmpcheck`);
    /// span of the method word. `None` means ICMP checks by default.
    pub health: Option<Spanned<HealthCheck>>,
    /// `option onepacket` (UDP one-packet scheduling); span of the `onepacket` word.
    pub one_packet: Option<Span>,
    /// `option schedflags FLAG[,FLAG...]`: scheduler flags with ipvsadm's
    /// names (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`, `flag-1`,
    /// `flag-2`, `flag-3`); span of the `schedflags` word. Whether they fit
    /// the scheduler is checked by the daemon, as ipvsadm checks `-b`.
    pub sched_flags: Option<Spanned<Vec<String>>>,
    /// Real servers, in file order.
    pub servers: Vec<Server>,
    /// Span of the `director` keyword (start of the section).
    pub span: Span,
}

impl Director {
    /// The forwarding method of `server`: its own `mode`, else the director's.
    pub fn server_mode(&self, server: &Server) -> Spanned<Mode> {
        server.mode.unwrap_or(self.mode)
    }
}

/// The `check` line: global health-check parameters of a director.
/// Every field is `None`/`false` when not written; see the associated
/// constants and methods for the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Check {
    /// `timeout <seconds>`: connection timeout (default: half the interval).
    pub timeout: Option<u32>,
    /// `interval <seconds>`: time between checks (default 10).
    pub interval: Option<u32>,
    /// `source <ip>`: force the source address of checks.
    pub source: Option<IpAddr>,
    /// `port <port>`: force the destination port (tcpcheck/httpcheck only).
    pub port: Option<u16>,
    /// `rise <n>`: consecutive successes to declare a server up (default 1).
    pub rise: Option<u32>,
    /// `fall <n>`: consecutive failures to declare a server down (default 1).
    pub fall: Option<u32>,
    /// `inhibit`: a failed server gets weight 0 instead of being removed.
    pub inhibit: bool,
}

impl Check {
    /// Default check interval, in seconds.
    pub const DEFAULT_INTERVAL: u32 = 10;

    /// The interval in seconds, with its default applied.
    pub fn interval_secs(&self) -> u32 {
        self.interval.unwrap_or(Self::DEFAULT_INTERVAL)
    }

    /// The timeout in seconds, with its default (half the interval, at least 1).
    pub fn timeout_secs(&self) -> u32 {
        self.timeout.unwrap_or((self.interval_secs() / 2).max(1))
    }

    /// `rise` with its default (1).
    pub fn rise_count(&self) -> u32 {
        self.rise.unwrap_or(1)
    }

    /// `fall` with its default (1).
    pub fn fall_count(&self) -> u32 {
        self.fall.unwrap_or(1)
    }
}

/// `option persistence`: client affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Persistence {
    /// `timeout <seconds>` of persistent sessions (`None`: the daemon's
    /// default, 360 s like `ipvsadm -p` without a value).
    pub timeout: Option<u32>,
    /// `netmask <mask>` grouping clients (`None`: per client host, i.e.
    /// 255.255.255.255 or /128).
    pub netmask: Option<Netmask>,
}

/// A persistence netmask.
///
/// IPv4 directors take a dotted mask (`255.255.255.0`), which must be
/// contiguous ones; IPv6 directors take a prefix length (`64`, 0..=128);
/// directors without an address accept either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// A contiguous dotted IPv4 mask, as a host-order `u32` (e.g. `0xffff_ff00`).
    V4(u32),
    /// A prefix length, 0..=128.
    Prefix(u8),
}

impl Netmask {
    /// The number of leading one bits (the prefix length).
    pub fn prefix_len(&self) -> u8 {
        match *self {
            // leading_ones() of a u32 is at most 32, so it fits in a u8.
            Netmask::V4(m) => u8::try_from(m.leading_ones()).unwrap_or(32),
            Netmask::Prefix(p) => p,
        }
    }
}

/// A health-check method (`option …check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `option httpcheck`: HTTP GET on the real server.
    Http {
        /// `uri <uri>` (starts with `/`; default `/`).
        uri: Option<String>,
        /// `statuscode <int>` expected, 100..=599 (default 200).
        status_code: Option<u16>,
        /// `vhost <string>` sent in the `Host` header.
        vhost: Option<String>,
    },
    /// `option tcpcheck`: a TCP connection to the real server.
    Tcp,
    /// `option arpcheck`: an ARP who-has for the real server.
    Arp {
        /// `iface <name>` to send it on.
        iface: Option<String>,
    },
    /// `option icmpcheck`: an ICMP echo request.
    Icmp,
}

/// A `server` line: one real server of a director.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Name, unique within the director; span of the name token.
    pub name: Spanned<String>,
    /// Address; span of the address token.
    pub addr: Spanned<IpAddr>,
    /// Port; `None` means the director's port. With gateway and tunnel
    /// forwarding the parser allows only `None` or the director's port
    /// (0 for a director without one): those methods cannot change it.
    pub port: Option<u16>,
    /// `weight <int>`, 0..=2147483647, default 1.
    pub weight: u32,
    /// `check`: health checks are enabled for this server.
    pub check: bool,
    /// Check options written after the server's `check` (`check interval 2
    /// fall 3 …`): each one given replaces the director's.
    pub check_params: Check,
    /// `sorry`: used only when all other servers are unavailable.
    pub sorry: bool,
    /// `maxconn <n>`: the upper connection threshold (ipvsadm `-x`): once
    /// the server holds this many connections it gets no new ones until it
    /// falls below `minconn` (or 3/4 of `maxconn`). 0 or absent = no limit.
    pub maxconn: Option<u32>,
    /// `minconn <n>`: the lower connection threshold (ipvsadm `-y`); must not
    /// exceed `maxconn`.
    pub minconn: Option<u32>,
    /// `mode ...`: this server's own forwarding method, overriding the
    /// director's (ipvsadm sets the method per real server); span of the
    /// server's `mode` word.
    pub mode: Option<Spanned<Mode>>,
    /// Span of the `server` keyword.
    pub span: Span,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A configuration error with its position, rendered like rustc/clang:
///
/// ```text
/// FILE:LINE:COL: error: MESSAGE
///    LINE | source line text
///         |      ^
/// ```
///
/// For line 0 (no position, e.g. an I/O error) only the first line is shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File name as given to [`parse_str`] / [`load`].
    pub file: String,
    /// 1-based line (0: no position).
    pub line: u32,
    /// 1-based column in characters (0: no position).
    pub col: u32,
    /// What is wrong, e.g. "expected a port number 0..65535, found `99999`".
    pub message: String,
    /// The text of the offending line (without line terminator).
    pub source_line: String,
}

impl ConfigError {
    /// Builds an error at `span` of `text` (the whole file contents), taking
    /// the source line from `text`. Used by the daemon to reject valid but
    /// unsupported constructs with the parser's diagnostics format.
    pub fn at(file: impl Into<String>, text: &str, span: Span, message: impl Into<String>) -> Self {
        let source_line = if span.line == 0 {
            String::new()
        } else {
            let text = strip_bom(text);
            usize::try_from(span.line - 1)
                .ok()
                .and_then(|idx| text.split('\n').nth(idx))
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .unwrap_or_default()
        };
        ConfigError {
            file: file.into(),
            line: span.line,
            col: span.col,
            message: message.into(),
            source_line,
        }
    }

    /// An error without position (line 0, column 0).
    pub fn without_position(file: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line: 0,
            col: 0,
            message: message.into(),
            source_line: String::new(),
        }
    }

    /// The position of the error.
    pub fn span(&self) -> Span {
        Span::new(self.line, self.col)
    }
}

impl ConfigError {
    /// The same diagnostic as a warning (`file:line:col: warning: …`),
    /// for legal but suspicious settings.
    pub fn as_warning(&self) -> impl fmt::Display + '_ {
        Labelled(self, "warning")
    }
}

/// A diagnostic with its label (`error`, `warning`).
struct Labelled<'a>(&'a ConfigError, &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Labelled(self, "error").fmt(f)
    }
}

impl fmt::Display for Labelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (e, label) = (self.0, self.1);
        if e.line == 0 {
            return write!(f, "{}: {label}: {}", e.file, e.message);
        }
        write!(f, "{}:{}:{}: {label}: {}", e.file, e.line, e.col, e.message)?;
        let num = e.line.to_string();
        write!(f, "\n   {num} | {}\n   ", e.source_line)?;
        for _ in 0..num.len() {
            f.write_char(' ')?;
        }
        f.write_str(" | ")?;
        // Pad up to the column, copying tabs so the caret lines up; never
        // pad further than one past the end of the line.
        let width = usize::try_from(e.col.saturating_sub(1)).unwrap_or(usize::MAX);
        let line_len = e.source_line.chars().count();
        let width = width.min(line_len.saturating_add(1));
        let mut chars = e.source_line.chars();
        for _ in 0..width {
            f.write_char(if chars.next() == Some('\t') {
                '\t'
            } else {
                ' '
            })?;
        }
        f.write_char('^')
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses the configuration in `text`; `file_name` is used in errors only.
pub fn parse_str(text: &str, file_name: &str) -> Result<Config> {
    let text = strip_bom(text);
    let mut parser = Parser::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let src = raw.strip_suffix('\r').unwrap_or(raw);
        let line = u32::try_from(idx).unwrap_or(u32::MAX - 1).saturating_add(1);
        let toks = tokenize(src);
        if toks.is_empty() {
            continue;
        }
        let cx = Cx {
            file: file_name,
            line,
            src,
        };
        parser.statement(&cx, &toks)?;
    }
    parser.finish(file_name, text)
}

/// Largest configuration file read (16 MiB: room for well over 100,000
/// servers); a larger or endless input (`/dev/zero`) is refused.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longest line accepted, in bytes; longer ones are refused (and never echoed
/// whole in the error).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most of a line quoted in an error message.
const QUOTE_CHARS: usize = 160;

/// Reads and parses the file at `path`. See [`read`] for what is refused
/// before parsing.
pub fn load(path: &Path) -> Result<Config> {
    let text = read(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Reads the configuration file at `path`, bounded: more than
/// [`MAX_FILE_BYTES`] is refused without reading further, and so is a line
/// longer than [`MAX_LINE_BYTES`], invalid UTF-8 and a carriage return not
/// followed by a line feed (old Mac line endings), each with its line and
/// column. I/O errors are reported with line 0, column 0.
pub fn read(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = path.display().to_string();
    let io_err =
        |e: std::io::Error| ConfigError::without_position(&file, format!("cannot read file: {e}"));
    let f = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::without_position(
            &file,
            format!(
                "file is larger than {} MiB; refusing to read it",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    check_bytes(&bytes, &file)?;
    String::from_utf8(bytes).map_err(|_| ConfigError::without_position(&file, "invalid UTF-8"))
}

/// Line length, UTF-8 and line-ending checks over the raw bytes, with the
/// position of the first offence.
fn check_bytes(bytes: &[u8], file: &str) -> Result<()> {
    let at = |line_no: usize, line: &[u8], byte: usize, message: String| {
        let before = String::from_utf8_lossy(line.get(..byte).unwrap_or(line));
        let quoted: String = String::from_utf8_lossy(line)
            .chars()
            .take(QUOTE_CHARS)
            .collect();
        ConfigError {
            file: file.to_string(),
            line: u32::try_from(line_no).unwrap_or(u32::MAX),
            col: u32::try_from(before.chars().count().saturating_add(1)).unwrap_or(u32::MAX),
            message,
            source_line: quoted,
        }
    };
    for (idx, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = idx.saturating_add(1);
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        if body.len() > MAX_LINE_BYTES {
            return Err(at(
                line_no,
                body,
                MAX_LINE_BYTES,
                format!("line is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if let Err(e) = std::str::from_utf8(body) {
            return Err(at(
                line_no,
                body,
                e.valid_up_to(),
                "invalid UTF-8".to_string(),
            ));
        }
        if let Some(cr) = body.iter().position(|&b| b == b'\r') {
            return Err(at(
                line_no,
                body,
                cr,
                "carriage return without line feed: lines must end with LF or CR LF".to_string(),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------

/// One token of a line.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    text: &'a str,
    /// 1-based column of the first character.
    col: u32,
    /// Length in characters.
    len: u32,
}

impl Tok<'_> {
    /// Column just past the token.
    fn end(&self) -> u32 {
        self.col.saturating_add(self.len)
    }

    /// Column of the character at char offset `off` within the token.
    fn col_at(&self, off: usize) -> u32 {
        self.col
            .saturating_add(u32::try_from(off).unwrap_or(u32::MAX))
    }
}

fn tokenize(line: &str) -> Vec<Tok<'_>> {
    fn push<'a>(toks: &mut Vec<Tok<'a>>, line: &'a str, start: usize, end: usize, col: u32) {
        let text = line.get(start..end).unwrap_or("");
        let len = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        toks.push(Tok { text, col, len });
    }
    let mut toks = Vec::new();
    let mut start: Option<(usize, u32)> = None;
    let mut col: u32 = 0;
    for (i, c) in line.char_indices() {
        col = col.saturating_add(1);
        if c == ' ' || c == '\t' {
            if let Some((s, sc)) = start.take() {
                push(&mut toks, line, s, i, sc);
            }
        } else if start.is_none() {
            if c == '#' {
                return toks;
            }
            start = Some((i, col));
        }
    }
    if let Some((s, sc)) = start {
        push(&mut toks, line, s, line.len(), sc);
    }
    toks
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Per-line context for building errors.
struct Cx<'a> {
    file: &'a str,
    line: u32,
    src: &'a str,
}

impl Cx<'_> {
    fn err(&self, col: u32, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line,
            col,
            message: message.into(),
            source_line: self.src.to_string(),
        }
    }

    fn span(&self, tok: &Tok<'_>) -> Span {
        Span::new(self.line, tok.col)
    }
}

/// Cursor over the tokens of one statement.
struct Args<'c, 'a> {
    cx: &'c Cx<'a>,
    toks: &'c [Tok<'a>],
    pos: usize,
}

impl<'a> Args<'_, 'a> {
    /// The next token, without consuming it.
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        let t = self.toks.get(self.pos).copied();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// Column just past the last consumed token (where a missing value goes).
    fn end_col(&self) -> u32 {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map_or(1, Tok::end)
    }

    /// The next token, or an "expected `what`" error just past the last one.
    fn expect(&mut self, what: &str) -> Result<Tok<'a>> {
        match self.next() {
            Some(t) => Ok(t),
            None => Err(self.cx.err(self.end_col(), format!("expected {what}"))),
        }
    }

    /// Errors if tokens remain.
    fn finish(&mut self, stmt: &str) -> Result<()> {
        match self.next() {
            None => Ok(()),
            Some(t) => Err(self.cx.err(
                t.col,
                format!("unexpected `{}` at end of `{stmt}` statement", t.text),
            )),
        }
    }
}

/// Parses a decimal number in `min..=max` (digits only, no sign).
fn parse_num(cx: &Cx<'_>, tok: &Tok<'_>, what: &str, min: u64, max: u64) -> Result<u64> {
    let ok = !tok.text.is_empty() && tok.text.bytes().all(|b| b.is_ascii_digit());
    match tok.text.parse::<u64>() {
        Ok(n) if ok && (min..=max).contains(&n) => Ok(n),
        _ => Err(cx.err(
            tok.col,
            format!("expected {what} {min}..{max}, found `{}`", tok.text),
        )),
    }
}

fn num_u32(cx: &Cx<'_>, tok: &Tok<'_>, what: &str, min: u32, max: u32) -> Result<u32> {
    let n = parse_num(cx, tok, what, min.into(), max.into())?;
    u32::try_from(n).map_err(|_| cx.err(tok.col, format!("{what} out of range")))
}

const MAX_I32: u32 = 2_147_483_647;

/// One `check` option (director or server line) into `c`; false if `opt`
/// is not a check option.
fn check_option(
    cx: &Cx<'_>,
    opt: &Tok<'_>,
    args: &mut Args<'_, '_>,
    c: &mut Check,
) -> Result<bool> {
    match opt.text {
        "timeout" => c.timeout = Some(seconds(cx, &args.expect("a number of seconds")?)?),
        "interval" => c.interval = Some(seconds(cx, &args.expect("a number of seconds")?)?),
        "source" => {
            let t = args.expect("an IP address")?;
            let ip = t.text.parse::<IpAddr>().map_err(|_| {
                cx.err(t.col, format!("expected an IP address, found `{}`", t.text))
            })?;
            c.source = Some(ip);
        }
        "port" => {
            let t = args.expect("a port number 0..65535")?;
            c.port = Some(port_str(cx, t.text, t.col)?);
        }
        "rise" => c.rise = Some(count(cx, &args.expect("a count")?)?),
        "fall" => c.fall = Some(count(cx, &args.expect("a count")?)?),
        "inhibit" => c.inhibit = true,
        _ => return Ok(false),
    }
    Ok(true)
}

fn seconds(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<u32> {
    num_u32(cx, tok, "a number of seconds", 1, MAX_I32)
}

fn count(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<u32> {
    num_u32(cx, tok, "a count", 1, MAX_I32)
}

fn port_str(cx: &Cx<'_>, text: &str, col: u32) -> Result<u16> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(p) if ok => Ok(p),
        _ => Err(cx.err(
            col,
            format!("expected a port number 0..65535, found `{text}`"),
        )),
    }
}

const ADDR_EXPECTED: &str =
    "an IP address with optional port (`a.b.c.d[:port]`, `[ipv6]:port` or bare `ipv6`)";

/// Parses `a.b.c.d[:port]`, `[ipv6][:port]` or a bare IPv6 address.
fn parse_addr(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<(IpAddr, Option<u16>)> {
    let text = tok.text;
    let bad = || cx.err(tok.col, format!("expected {ADDR_EXPECTED}, found `{text}`"));
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(cx.err(tok.col, format!("missing `]` in address `{text}`")));
        };
        let ip: Ipv6Addr = inner.parse().map_err(|_| {
            cx.err(
                tok.col_at(1),
                format!("expected an IPv6 address inside `[]`, found `{inner}`"),
            )
        })?;
        // Offset (in chars) of whatever follows `]`.
        let after_off = inner.chars().count().saturating_add(2);
        if after.is_empty() {
            return Ok((IpAddr::V6(ip), None));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(cx.err(
                tok.col_at(after_off),
                format!("expected `:port` after `]`, found `{after}`"),
            ));
        };
        let port = port_str(cx, port, tok.col_at(after_off.saturating_add(1)))?;
        return Ok((IpAddr::V6(ip), Some(port)));
    }
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Ok((IpAddr::V6(ip), None));
    }
    match text.split_once(':') {
        None => text
            .parse::<Ipv4Addr>()
            .map(|ip| (IpAddr::V4(ip), None))
            .map_err(|_| bad()),
        Some((host, port)) => {
            let ip: Ipv4Addr = host.parse().map_err(|_| bad())?;
            let off = host.chars().count().saturating_add(1);
            let port = port_str(cx, port, tok.col_at(off))?;
            Ok((IpAddr::V4(ip), Some(port)))
        }
    }
}

/// Linux interface name rules (`dev_valid_name`).
fn check_iface_name(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<String> {
    let name = tok.text;
    let problem = if name.is_empty() || name.len() > 15 {
        Some("must be 1..15 bytes long")
    } else if name == "." || name == ".." {
        Some("must not be `.` or `..`")
    } else if name.contains('/') {
        Some("must not contain `/`")
    } else if name.contains(':') {
        Some("must not contain `:`")
    } else if name.chars().any(char::is_whitespace) {
        Some("must not contain whitespace")
    } else {
        None
    };
    match problem {
        Some(p) => Err(cx.err(tok.col, format!("invalid interface name `{name}`: {p}"))),
        None => Ok(name.to_string()),
    }
}

/// Parser state across lines.
#[derive(Default)]
struct Parser {
    interfaces: Vec<Spanned<String>>,
    iface_lines: HashMap<String, u32>,
    sysctls: Vec<(Spanned<String>, Spanned<String>)>,
    sysctl_lines: HashMap<String, u32>,
    timeouts: Option<Spanned<[u32; 3]>>,
    control: Option<Control>,
    metrics: Option<Spanned<std::net::SocketAddr>>,
    syncs: Vec<SyncDef>,
    vrrps: Vec<VrrpDef>,
    flows: Vec<FlowDef>,
    flow_lines: HashMap<String, u32>,
    directors: Vec<Director>,
    director_lines: HashMap<String, u32>,
    cur: Option<DirState>,
}

/// The director being parsed, plus what is needed to detect duplicates.
struct DirState {
    dir: Director,
    balance_line: Option<u32>,
    mode_line: Option<u32>,
    server_names: HashMap<String, u32>,
    server_addrs: HashMap<(IpAddr, Option<u16>), u32>,
    /// Servers with an explicit port that follow the director's mode, seen
    /// before any `mode` line: whether their port is allowed is known once
    /// the mode is (at the `mode` line or the end of the director).
    pending_ports: Vec<PendingPort>,
}

/// Where a server's explicit port was written, for an error found later.
struct PendingPort {
    /// Index in `Director::servers`.
    server: usize,
    line: u32,
    col: u32,
    src: String,
}

/// `ADDR` or `ADDR/LEN`, host bits zero.
fn parse_prefix(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<(IpAddr, u8)> {
    let (a, len) = match tok.text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (tok.text, None),
    };
    let ip: IpAddr = a.parse().map_err(|_| {
        cx.err(
            tok.col,
            format!("expected an address or ADDR/LEN, found `{}`", tok.text),
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(cx.err(
                    tok.col,
                    format!("expected a prefix length 0..{max} in `{}`", tok.text),
                ))
            }
        },
    };
    let net = match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    };
    if net != ip {
        return Err(cx.err(
            tok.col,
            format!(
                "`{}` has host bits set: did you mean `{net}/{len}`?",
                tok.text
            ),
        ));
    }
    Ok((net, len))
}

/// `N`, `N-M`, comma-separated (1..65535).
fn parse_ports(cx: &Cx<'_>, tok: &Tok<'_>) -> Result<Vec<(u16, u16)>> {
    let mut v = Vec::new();
    for part in tok.text.split(',') {
        let bad = || {
            cx.err(
                tok.col,
                format!("expected ports as N or N-M (1..65535), comma-separated, found `{part}`"),
            )
        };
        let num = |s: &str| s.parse::<u16>().ok().filter(|&n| n != 0);
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
            None => {
                let n = num(part).ok_or_else(bad)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        v.push((lo, hi));
    }
    // Each port once (the guard's interval set refuses overlaps).
    v.sort_unstable();
    if let Some(w) = v.windows(2).find(|w| w[1].0 <= w[0].1) {
        return Err(cx.err(
            tok.col,
            format!(
                "ports {}-{} and {}-{} overlap in `{}`: list each port once",
                w[0].0, w[0].1, w[1].0, w[1].1, tok.text
            ),
        ));
    }
    Ok(v)
}

/// Whether two flows can match the same packet.
fn flows_overlap(a: &FlowDef, b: &FlowDef) -> bool {
    let nets = |x: (IpAddr, u8), y: (IpAddr, u8)| {
        let len = x.1.min(y.1);
        prefix_contains((x.0, len), y.0)
    };
    let any = |p: &Option<Spanned<(IpAddr, u8)>>, v6: bool| {
        p.as_ref().map_or(
            (
                if v6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                },
                0,
            ),
            |s| s.value,
        )
    };
    let v6 = a.to.value.0.is_ipv6();
    if v6 != b.to.value.0.is_ipv6() {
        return false;
    }
    let protos = a.protocol.is_none() || b.protocol.is_none() || a.protocol == b.protocol;
    let full = [(1u16, 65535u16)];
    let pa: &[(u16, u16)] = if a.ports.is_empty() { &full } else { &a.ports };
    let pb: &[(u16, u16)] = if b.ports.is_empty() { &full } else { &b.ports };
    let ports = pa
        .iter()
        .any(|x| pb.iter().any(|y| x.0 <= y.1 && y.0 <= x.1));
    protos && ports && nets(a.to.value, b.to.value) && nets(any(&a.from, v6), any(&b.from, v6))
}

/// Whether `addr` is in the network `net/len`.
fn prefix_contains((net, len): (IpAddr, u8), addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & m == u128::from(a) & m
        }
        _ => false,
    }
}

fn dup_line(what: &str, first: u32) -> String {
    format!("duplicate {what} (first at line {first})")
}

impl Parser {
    fn finish(mut self, file: &str, text: &str) -> Result<Config> {
        self.close_director(file)?;
        self.check_flows(file, text)?;
        for s in &self.syncs {
            if let Some(f) = &s.follow {
                if !self.vrrps.iter().any(|v| v.name.value == f.value) {
                    return Err(ConfigError::at(
                        file,
                        text,
                        f.span,
                        format!("no `vrrp {}` line for this `sync` to follow", f.value),
                    ));
                }
            }
        }
        Ok(Config {
            interfaces: self.interfaces,
            directors: self.directors,
            sysctls: self.sysctls,
            timeouts: self.timeouts,
            control: self.control,
            metrics: self.metrics,
            flows: self.flows,
            syncs: self.syncs,
            vrrps: self.vrrps,
        })
    }

    fn close_director(&mut self, file: &str) -> Result<()> {
        if let Some(mut st) = self.cur.take() {
            // No `mode` line: the default applies to the waiting servers.
            st.check_pending_ports(file)?;
            self.directors.push(st.dir);
        }
        Ok(())
    }

    fn statement(&mut self, cx: &Cx<'_>, toks: &[Tok<'_>]) -> Result<()> {
        let Some(kw) = toks.first().copied() else {
            return Ok(());
        };
        let mut args = Args { cx, toks, pos: 1 };
        match kw.text {
            "interface" => self.interface(cx, &mut args),
            "sysctl" => self.sysctl(cx, &mut args),
            "timeout" => self.timeout(cx, kw, &mut args),
            "control" => self.control(cx, kw, &mut args),
            "metrics" => self.metrics(cx, kw, &mut args),
            "sync" => self.sync(cx, kw, &mut args),
            "vrrp" => self.vrrp(cx, kw, &mut args),
            "flow" => self.flow(cx, kw, &mut args),
            "director" => self.director(cx, kw, &mut args),
            "balance" | "mode" | "check" | "option" | "server" => {
                let Some(st) = self.cur.as_mut() else {
                    return Err(cx.err(
                        kw.col,
                        format!("`{}` must follow a `director` line", kw.text),
                    ));
                };
                match kw.text {
                    "balance" => st.balance(cx, kw, &mut args),
                    "mode" => st.mode(cx, kw, &mut args),
                    "check" => st.check(cx, kw, &mut args),
                    "option" => st.option(cx, &mut args),
                    _ => st.server(cx, kw, &mut args),
                }
            }
            other => Err(cx.err(kw.col, format!("unknown statement `{other}`"))),
        }
    }

    fn timeout(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = &self.timeouts {
            return Err(cx.err(kw.col, dup_line("`timeout`", first.span.line)));
        }
        let mut v = [0u32; 3];
        for (slot, what) in v.iter_mut().zip(["TCP", "TCPFIN", "UDP"]) {
            let t = args.expect(&format!(
                "the {what} timeout in seconds (0..2678400, 0 = default)"
            ))?;
            *slot = num_u32(
                cx,
                &t,
                &format!("a {what} timeout in seconds"),
                0,
                2_678_400,
            )?;
        }
        args.finish("timeout")?;
        self.timeouts = Some(Spanned::new(v, cx.span(&kw)));
        Ok(())
    }

    fn control(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = &self.control {
            return Err(cx.err(kw.col, dup_line("`control`", first.span.line)));
        }
        let mut c = Control {
            span: cx.span(&kw),
            ..Control::default()
        };
        while let Some(word) = args.next() {
            let slot = match word.text {
                "socket" => &mut c.socket,
                "group" => &mut c.group,
                other => {
                    return Err(cx.err(
                        word.col,
                        format!("unknown `control` option `{other}` (expected `socket PATH` or `group NAME`)"),
                    ))
                }
            };
            if slot.is_some() {
                return Err(cx.err(word.col, format!("`{}` given twice", word.text)));
            }
            let value = args.expect(if word.text == "socket" {
                "the control socket's path"
            } else {
                "a group name"
            })?;
            if word.text == "socket" && !value.text.starts_with('/') {
                return Err(cx.err(
                    value.col,
                    format!(
                        "the control socket's path must be absolute, not `{}`",
                        value.text
                    ),
                ));
            }
            *slot = Some(Spanned::new(value.text.to_string(), cx.span(&value)));
        }
        if c.socket.is_none() && c.group.is_none() {
            return Err(cx.err(
                kw.col,
                "`control` needs `socket PATH`, `group NAME` or both",
            ));
        }
        self.control = Some(c);
        Ok(())
    }

    fn sync(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        let role = args.expect("`master`, `backup` or `vrrp NAME`")?;
        let (master, follow) = match role.text {
            "master" => (true, None),
            "backup" => (false, None),
            "vrrp" => {
                let n = args.expect("the name of a `vrrp` line")?;
                (false, Some(Spanned::new(n.text.to_string(), cx.span(&n))))
            }
            other => {
                return Err(cx.err(
                    role.col,
                    format!("expected `master`, `backup` or `vrrp NAME`, found `{other}`"),
                ))
            }
        };
        let clash = |s: &&SyncDef| {
            if follow.is_some() || s.follow.is_some() {
                true
            } else {
                s.master == master
            }
        };
        if let Some(first) = self.syncs.iter().find(clash) {
            return Err(cx.err(
                kw.col,
                dup_line("`sync` line for this role", first.span.line),
            ));
        }
        let mut d = SyncDef {
            master,
            follow,
            interface: Spanned::new(String::new(), cx.span(&kw)),
            syncid: 0,
            maxlen: 0,
            group: None,
            port: 0,
            ttl: 0,
            resync: false,
            span: cx.span(&kw),
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut have_iface = false;
        while let Some(word) = args.next() {
            if seen.contains(&word.text) {
                return Err(cx.err(word.col, format!("`{}` given twice", word.text)));
            }
            if word.text == "resync" {
                d.resync = true;
                seen.push(word.text);
                continue;
            }
            let v = match word.text {
                "interface" => args.expect("an interface name")?,
                "syncid" => args.expect("a sync ID (0..255)")?,
                "maxlen" => args.expect("a message size in bytes (1..65507)")?,
                "group" => args.expect("a multicast group address")?,
                "port" => args.expect("a UDP port (1..65535)")?,
                "ttl" => args.expect("a TTL (1..255)")?,
                other => {
                    return Err(cx.err(
                        word.col,
                        format!("unknown `sync` option `{other}` (expected interface, syncid, maxlen, group, port, ttl or resync)"),
                    ))
                }
            };
            match word.text {
                "interface" => {
                    d.interface = Spanned::new(check_iface_name(cx, &v)?, cx.span(&v));
                    have_iface = true;
                }
                "syncid" => d.syncid = num_u32(cx, &v, "a sync ID", 0, 255)? as u8,
                "maxlen" => d.maxlen = num_u32(cx, &v, "a message size", 1, 65507)? as u16,
                "port" => d.port = num_u32(cx, &v, "a UDP port", 1, 65535)? as u16,
                "ttl" => d.ttl = num_u32(cx, &v, "a TTL", 1, 255)? as u8,
                _ => {
                    let g: IpAddr = v.text.parse().map_err(|_| {
                        cx.err(
                            v.col,
                            format!("expected a multicast group address, found `{}`", v.text),
                        )
                    })?;
                    if !g.is_multicast() {
                        return Err(cx.err(v.col, format!("`{g}` is not a multicast address")));
                    }
                    d.group = Some(g);
                }
            }
            seen.push(word.text);
        }
        if !have_iface {
            return Err(cx.err(
                kw.col,
                "`sync` needs `interface NAME` (the multicast interface)",
            ));
        }
        self.syncs.push(d);
        Ok(())
    }

    fn vrrp(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        let name = args.expect("a name for the VRRP instance")?;
        if let Some(first) = self.vrrps.iter().find(|v| v.name.value == name.text) {
            return Err(cx.err(
                name.col,
                dup_line(&format!("vrrp name `{}`", name.text), first.span.line),
            ));
        }
        let mut v = VrrpDef {
            name: Spanned::new(name.text.to_string(), cx.span(&name)),
            interface: Spanned::new(String::new(), cx.span(&kw)),
            vrid: 0,
            priority: 100,
            interval_cs: 100,
            preempt: true,
            preempt_delay_s: 0,
            addrs: Vec::new(),
            span: cx.span(&kw),
        };
        let mut seen: Vec<&str> = Vec::new();
        while let Some(word) = args.next() {
            if word.text != "address" && seen.contains(&word.text) {
                return Err(cx.err(word.col, format!("`{}` given twice", word.text)));
            }
            match word.text {
                "interface" => {
                    let t = args.expect("an interface name")?;
                    v.interface = Spanned::new(check_iface_name(cx, &t)?, cx.span(&t));
                }
                "id" => {
                    let t = args.expect("a virtual router ID (1..255)")?;
                    v.vrid = num_u32(cx, &t, "a virtual router ID", 1, 255)? as u8;
                }
                "priority" => {
                    let t = args.expect("a priority (1..255)")?;
                    v.priority = num_u32(cx, &t, "a priority", 1, 255)? as u8;
                }
                "advert" => {
                    let t = args.expect("an advertisement interval in seconds")?;
                    let secs: f64 = t.text.parse().map_err(|_| {
                        cx.err(t.col, format!("expected seconds (0.01..40.95), found `{}`", t.text))
                    })?;
                    let cs = (secs * 100.0).round();
                    if !(1.0..=4095.0).contains(&cs) {
                        return Err(cx.err(t.col, "the advertisement interval must be 0.01..40.95 seconds"));
                    }
                    v.interval_cs = cs as u16;
                }
                "nopreempt" => v.preempt = false,
                "preempt-delay" => {
                    let t = args.expect("seconds to wait before preempting")?;
                    v.preempt_delay_s = num_u32(cx, &t, "a preempt delay in seconds", 0, 3600)?;
                }
                "preempt" => v.preempt = true,
                "address" => {
                    let t = args.expect("an address the instance holds")?;
                    let a: IpAddr = t.text.parse().map_err(|_| {
                        cx.err(t.col, format!("expected an IP address, found `{}`", t.text))
                    })?;
                    if v.addrs.first().is_some_and(|f| f.is_ipv6() != a.is_ipv6()) {
                        return Err(cx.err(t.col, "one `vrrp` line holds addresses of one family (write one line per family)"));
                    }
                    if v.addrs.contains(&a) {
                        return Err(cx.err(t.col, format!("address {a} given twice")));
                    }
                    v.addrs.push(a);
                }
                other => {
                    return Err(cx.err(
                        word.col,
                        format!("unknown `vrrp` option `{other}` (expected interface, id, priority, advert, preempt, nopreempt, preempt-delay or address)"),
                    ))
                }
            }
            seen.push(word.text);
        }
        for (what, ok) in [
            ("`interface NAME`", seen.contains(&"interface")),
            ("`id N`", seen.contains(&"id")),
            ("at least one `address ADDR`", !v.addrs.is_empty()),
        ] {
            if !ok {
                return Err(cx.err(kw.col, format!("`vrrp` needs {what}")));
            }
        }
        self.vrrps.push(v);
        Ok(())
    }

    fn metrics(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = &self.metrics {
            return Err(cx.err(kw.col, dup_line("`metrics`", first.span.line)));
        }
        let t = args.expect("the address to serve metrics on (`198.18.0.1:9100`, `[::1]:9100`)")?;
        let (ip, port) = parse_addr(cx, &t)?;
        let Some(port) = port else {
            return Err(cx.err(
                t.col,
                format!("`metrics` needs a port (`{t}:9100`, say)", t = t.text),
            ));
        };
        args.finish("metrics")?;
        self.metrics = Some(Spanned::new(
            std::net::SocketAddr::new(ip, port),
            cx.span(&t),
        ));
        Ok(())
    }

    fn flow(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        // A flow line ends the director section before it.
        self.close_director(cx.file)?;
        let name_tok = args.expect("a flow name")?;
        if let Some(&first) = self.flow_lines.get(name_tok.text) {
            return Err(cx.err(
                name_tok.col,
                dup_line(&format!("flow name `{}`", name_tok.text), first),
            ));
        }
        let (mut to, mut from, mut ports, mut protocol, mut director) =
            (None, None, Vec::new(), None, None);
        let mut seen: HashMap<&str, u32> = HashMap::new();
        while let Some(word) = args.next() {
            let key = word.text.to_ascii_lowercase();
            let key = match key.as_str() {
                "to" | "from" | "ports" | "director" | "tcp" | "udp" | "sctp" => key,
                _ => {
                    return Err(cx.err(
                        word.col,
                        format!(
                            "unknown `flow` word `{}` (expected `to`, `from`, `ports`, `TCP`, `UDP`, `SCTP` or `director`)",
                            word.text
                        ),
                    ))
                }
            };
            let slot: &'static str = match key.as_str() {
                "tcp" | "udp" | "sctp" => "protocol",
                "to" => "to",
                "from" => "from",
                "ports" => "ports",
                _ => "director",
            };
            if seen.insert(slot, word.col).is_some() {
                return Err(cx.err(word.col, format!("`{}` given twice in one flow", word.text)));
            }
            match key.as_str() {
                "to" | "from" => {
                    let t = args.expect("an address or prefix (ADDR or ADDR/LEN)")?;
                    let p = parse_prefix(cx, &t)?;
                    let v = Some(Spanned::new(p, cx.span(&t)));
                    if key == "to" {
                        to = v;
                    } else {
                        from = v;
                    }
                }
                "ports" => {
                    let t = args.expect("ports (N, N-M, comma-separated)")?;
                    ports = parse_ports(cx, &t)?;
                }
                "director" => {
                    let t = args.expect("the name of a director without an address")?;
                    director = Some(Spanned::new(t.text.to_string(), cx.span(&t)));
                }
                "tcp" => protocol = Some(Protocol::Tcp),
                "udp" => protocol = Some(Protocol::Udp),
                _ => protocol = Some(Protocol::Sctp),
            }
        }
        let Some(to) = to else {
            return Err(cx.err(kw.col, "a flow needs `to ADDR[/LEN]`: the traffic it takes"));
        };
        let Some(director) = director else {
            return Err(cx.err(
                kw.col,
                "a flow needs `director NAME`: where its traffic goes",
            ));
        };
        if let Some(f) = &from {
            if f.value.0.is_ipv4() != to.value.0.is_ipv4() {
                return Err(cx.err(
                    f.span.col,
                    "`from` and `to` must be of the same address family",
                ));
            }
        }
        self.flow_lines.insert(name_tok.text.to_string(), cx.line);
        self.flows.push(FlowDef {
            name: Spanned::new(name_tok.text.to_string(), cx.span(&name_tok)),
            to,
            from,
            ports,
            protocol,
            director,
            span: cx.span(&kw),
        });
        Ok(())
    }

    /// Each flow goes to a director without an address, all of one family,
    /// and no two flows take the same packets.
    fn check_flows(&self, file: &str, text: &str) -> Result<()> {
        let at = |span: Span, msg: String| ConfigError::at(file, text, span, msg);
        for (i, f) in self.flows.iter().enumerate() {
            let Some(d) = self
                .directors
                .iter()
                .find(|d| d.name.value == f.director.value)
            else {
                return Err(at(
                    f.director.span,
                    format!(
                        "no director `{}` (flows go to a director without an address)",
                        f.director.value
                    ),
                ));
            };
            if d.addr.is_some() {
                return Err(at(
                    f.director.span,
                    format!(
                        "director `{}` has an address: flows go to directors without one (`director {}` alone)",
                        d.name.value, d.name.value
                    ),
                ));
            }
            let v6 = f.to.value.0.is_ipv6();
            if d.ipv6.is_some() && !v6 {
                return Err(at(
                    f.to.span,
                    format!(
                        "flow `{}` is IPv4 but director `{}` is IPv6 (`ipv6` on its line)",
                        f.name.value, d.name.value
                    ),
                ));
            }
            if let Some(other) = self.flows[..i]
                .iter()
                .find(|o| o.director.value == f.director.value && o.to.value.0.is_ipv6() != v6)
            {
                return Err(at(
                    f.to.span,
                    format!(
                        "flow `{}` is not of the address family of flow `{}` (line {}) for the same director",
                        f.name.value, other.name.value, other.span.line
                    ),
                ));
            }
            if let Some(other) = self.flows[..i].iter().find(|o| flows_overlap(o, f)) {
                return Err(at(
                    f.name.span,
                    format!(
                        "flow `{}` takes some of the packets of flow `{}` (line {}): make their addresses, ports or protocols disjoint",
                        f.name.value, other.name.value, other.span.line
                    ),
                ));
            }
        }
        Ok(())
    }

    fn sysctl(&mut self, cx: &Cx<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        let name = args.expect("a sysctl name (e.g. `conn_reuse_mode`)")?;
        let short = name
            .text
            .strip_prefix("net.ipv4.vs.")
            .unwrap_or(name.text)
            .to_string();
        if let Some(&first) = self.sysctl_lines.get(&short) {
            return Err(cx.err(name.col, dup_line(&format!("sysctl `{short}`"), first)));
        }
        let value = args.expect("a value")?;
        // Some knobs take more than one word (`sync_threshold 3 50`).
        let mut text = value.text.to_string();
        while let Some(more) = args.next() {
            text.push(' ');
            text.push_str(more.text);
        }
        self.sysctl_lines.insert(short.clone(), cx.line);
        self.sysctls.push((
            Spanned::new(short, cx.span(&name)),
            Spanned::new(text, cx.span(&value)),
        ));
        Ok(())
    }

    fn interface(&mut self, cx: &Cx<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        let tok = args.expect("an interface name")?;
        let name = check_iface_name(cx, &tok)?;
        if let Some(&first) = self.iface_lines.get(&name) {
            return Err(cx.err(tok.col, dup_line(&format!("interface `{name}`"), first)));
        }
        args.finish("interface")?;
        self.iface_lines.insert(name.clone(), cx.line);
        self.interfaces.push(Spanned::new(name, cx.span(&tok)));
        Ok(())
    }

    fn director(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        self.close_director(cx.file)?;
        let name_tok = args.expect("a director name")?;
        let name = name_tok.text.to_string();
        if let Some(&first) = self.director_lines.get(&name) {
            return Err(cx.err(
                name_tok.col,
                dup_line(&format!("director name `{name}`"), first),
            ));
        }
        let mut addr = None;
        let mut port = None;
        let mut protocol = Protocol::Tcp;
        let mut mark = None;
        let mut ipv6 = None;
        let markless = args
            .peek()
            .is_some_and(|t| t.text == "mark" || t.text.eq_ignore_ascii_case("ipv6"));
        if markless {
            if args.peek().is_some_and(|t| t.text == "mark") {
                args.next();
                let t = args.expect("a firewall mark (1..4294967295)")?;
                let m = num_u32(cx, &t, "a firewall mark", 1, u32::MAX)?;
                mark = Some(Spanned::new(m, cx.span(&t)));
            }
            if let Some(t) = args.peek().filter(|t| t.text.eq_ignore_ascii_case("ipv6")) {
                ipv6 = Some(cx.span(&t));
                args.next();
            }
        } else if let Some(tok) = args.next() {
            let (ip, p) = parse_addr(cx, &tok)?;
            addr = Some(Spanned::new(ip, cx.span(&tok)));
            port = p;
            if let Some(tok) = args.next() {
                protocol = if tok.text.eq_ignore_ascii_case("tcp") {
                    Protocol::Tcp
                } else if tok.text.eq_ignore_ascii_case("udp") {
                    Protocol::Udp
                } else if tok.text.eq_ignore_ascii_case("sctp") {
                    Protocol::Sctp
                } else {
                    return Err(cx.err(
                        tok.col,
                        format!("expected `TCP`, `UDP` or `SCTP`, found `{}`", tok.text),
                    ));
                };
            }
        }
        args.finish("director")?;
        let span = cx.span(&kw);
        self.director_lines.insert(name.clone(), cx.line);
        self.cur = Some(DirState {
            dir: Director {
                name: Spanned::new(name, cx.span(&name_tok)),
                mark,
                ipv6,
                addr,
                port,
                protocol,
                balance: Spanned::new("wlc", span),
                mode: Spanned::new(Mode::Gateway, span),
                check: None,
                persistence: None,
                health: None,
                one_packet: None,
                sched_flags: None,
                servers: Vec::new(),
                span,
            },
            balance_line: None,
            mode_line: None,
            server_names: HashMap::new(),
            server_addrs: HashMap::new(),
            pending_ports: Vec::new(),
        });
        Ok(())
    }
}

const BALANCE_EXPECTED: &str = "a balance algorithm (`roundrobin`, `leastconn`, `source`, \
     `srcdst`, `dest`, `shortestexpected`, `shortexpdelay`, `neverqueue`, `fo`, `mh`, `ovh` or `twos`) \
     or a kernel scheduler name (`rr`, `wrr`, `lc`, `wlc`, `lblc`, `lblcr`, `dh`, `sh`, `sed`, `nq`, `ovf`)";

/// The kernel's scheduler names, accepted by `balance` as they are (what
/// `ipvsadm -s` and keepalived's `lb_algo` take).
const KERNEL_SCHEDULERS: [&str; 11] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "ovf",
];

impl DirState {
    fn balance(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = self.balance_line {
            return Err(cx.err(kw.col, dup_line("`balance` statement", first)));
        }
        let algo = args.expect(BALANCE_EXPECTED)?;
        let sched: &'static str = match algo.text {
            "roundrobin" => "wrr",
            "leastconn" => match args.next() {
                None => "wlc",
                Some(t) if t.text == "localitybased" => match args.next() {
                    None => "lblc",
                    Some(t) if t.text == "replication" => "lblcr",
                    Some(t) => {
                        return Err(cx.err(
                            t.col,
                            format!(
                                "expected `replication` or end of line after \
                                 `leastconn localitybased`, found `{}`",
                                t.text
                            ),
                        ))
                    }
                },
                Some(t) => {
                    return Err(cx.err(
                        t.col,
                        format!(
                            "expected `localitybased` or end of line after `leastconn`, found `{}`",
                            t.text
                        ),
                    ))
                }
            },
            "source" => "sh",
            "dest" => "dh",
            "srcdst" => "srcdst",
            "shortestexpected" | "shortexpdelay" => "sed",
            "neverqueue" => "nq",
            "fo" => "fo",
            "mh" => "mh",
            "ovh" => "ovf",
            "twos" => "twos",
            other => match KERNEL_SCHEDULERS.iter().find(|k| **k == other) {
                Some(k) => k,
                None => {
                    return Err(cx.err(
                        algo.col,
                        format!("unknown balance algorithm `{other}`, expected {BALANCE_EXPECTED}"),
                    ))
                }
            },
        };
        args.finish("balance")?;
        self.balance_line = Some(cx.line);
        self.dir.balance = Spanned::new(sched, cx.span(&kw));
        Ok(())
    }

    fn mode(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = self.mode_line {
            return Err(cx.err(kw.col, dup_line("`mode` statement", first)));
        }
        let mode = mode_value(cx, args, false)?;
        args.finish("mode")?;
        self.mode_line = Some(cx.line);
        self.dir.mode = Spanned::new(mode, cx.span(&kw));
        self.check_pending_ports(cx.file)
    }

    /// Checks the servers waiting for the director's mode (now known: the
    /// `mode` line's, or the default at the end of the director).
    fn check_pending_ports(&mut self, file: &str) -> Result<()> {
        for p in std::mem::take(&mut self.pending_ports) {
            let Some(server) = self.dir.servers.get(p.server) else {
                continue;
            };
            if let Some(message) = self.port_problem(server) {
                return Err(ConfigError {
                    file: file.to_string(),
                    line: p.line,
                    col: p.col,
                    message,
                    source_line: p.src,
                });
            }
        }
        Ok(())
    }

    /// Why `server`'s explicit port cannot be used with its forwarding
    /// method, if it cannot: direct routing and tunnelling deliver the
    /// packet unchanged, so the real server gets the director's port (the
    /// kernel takes the service's port, as `ipvsadm -g`/`-i` force it).
    fn port_problem(&self, server: &Server) -> Option<String> {
        let port = server.port?;
        // A director without an address (flows) has no port of its own:
        // its traffic comes to any port the flows name.
        self.dir.addr.as_ref()?;
        let mode = self.dir.server_mode(server).value;
        let want = self.dir.port.unwrap_or(0);
        let method = match mode {
            Mode::Nat => return None,
            _ if port == want => return None,
            Mode::Gateway => "`mode gateway` (direct routing)",
            Mode::Tunnel(_) => "`mode tunnel` (tunnelling)",
        };
        let whose = if server.mode.is_some() {
            ""
        } else if self.mode_line.is_none() {
            ", the director's default,"
        } else {
            ", the director's mode,"
        };
        let arrives = match self.dir.port {
            Some(p) => format!("on the director's port {p}"),
            None => "on their original port (the director has none)".to_string(),
        };
        Some(format!(
            "server `{}` has port {port}, but with {method}{whose} packets reach the real \
             server unchanged, {arrives}; remove `:{port}`, or use `mode nat` to change the port",
            server.name.value
        ))
    }

    fn check(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        if let Some(first) = &self.dir.check {
            return Err(cx.err(kw.col, dup_line("`check` statement", first.span.line)));
        }
        let mut c = Check::default();
        let mut seen: Vec<&str> = Vec::new();
        while let Some(opt) = args.next() {
            if seen.contains(&opt.text) {
                return Err(cx.err(opt.col, format!("duplicate `{}` option", opt.text)));
            }
            if !check_option(cx, &opt, args, &mut c)? {
                return Err(cx.err(
                    opt.col,
                    format!(
                        "unknown check option `{}`, expected `timeout`, `interval`, \
                         `source`, `port`, `rise`, `fall` or `inhibit`",
                        opt.text
                    ),
                ));
            }
            seen.push(opt.text);
        }
        self.dir.check = Some(Spanned::new(c, cx.span(&kw)));
        Ok(())
    }

    fn option(&mut self, cx: &Cx<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        const EXPECTED: &str = "an option (`persistence`, `httpcheck`, `tcpcheck`, \
                                `arpcheck`, `icmpcheck`, `onepacket` or `schedflags`)";
        let which = args.expect(EXPECTED)?;
        let span = cx.span(&which);
        match which.text {
            "persistence" => {
                if let Some(first) = &self.dir.persistence {
                    return Err(
                        cx.err(which.col, dup_line("`option persistence`", first.span.line))
                    );
                }
                let p = self.persistence(cx, args)?;
                self.dir.persistence = Some(Spanned::new(p, span));
            }
            "httpcheck" | "tcpcheck" | "arpcheck" | "icmpcheck" => {
                if let Some(first) = &self.dir.health {
                    return Err(cx.err(
                        which.col,
                        format!(
                            "only one health check per director is allowed (one is already \
                             set at line {})",
                            first.span.line
                        ),
                    ));
                }
                let h = health(cx, which.text, args)?;
                self.dir.health = Some(Spanned::new(h, span));
            }
            "onepacket" => {
                if let Some(first) = self.dir.one_packet {
                    return Err(cx.err(which.col, dup_line("`option onepacket`", first.line)));
                }
                if self.dir.addr.is_some() && self.dir.protocol != Protocol::Udp {
                    return Err(cx.err(
                        which.col,
                        "`option onepacket` is only valid for UDP directors",
                    ));
                }
                args.finish("option onepacket")?;
                self.dir.one_packet = Some(span);
            }
            "schedflags" => {
                if let Some(first) = &self.dir.sched_flags {
                    return Err(cx.err(which.col, dup_line("`option schedflags`", first.span.line)));
                }
                const FLAGS: &str =
                    "sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3";
                let list = args.expect(&format!(
                    "a comma-separated list of scheduler flags ({FLAGS})"
                ))?;
                let mut names: Vec<String> = Vec::new();
                let mut off = 0usize;
                for part in list.text.split(',') {
                    let col = list.col + list.text[..off].chars().count() as u32;
                    off += part.len() + 1;
                    let known = matches!(
                        part,
                        "sh-fallback"
                            | "sh-port"
                            | "mh-fallback"
                            | "mh-port"
                            | "flag-1"
                            | "flag-2"
                            | "flag-3"
                    );
                    if !known {
                        return Err(cx.err(
                            col,
                            format!("unknown scheduler flag `{part}`, expected one of {FLAGS}"),
                        ));
                    }
                    names.push(part.to_string());
                }
                args.finish("option schedflags")?;
                self.dir.sched_flags = Some(Spanned::new(names, span));
            }
            other => {
                return Err(cx.err(
                    which.col,
                    format!("unknown option `{other}`, expected {EXPECTED}"),
                ))
            }
        }
        Ok(())
    }

    fn persistence(&self, cx: &Cx<'_>, args: &mut Args<'_, '_>) -> Result<Persistence> {
        let mut p = Persistence::default();
        let mut seen: Vec<&str> = Vec::new();
        while let Some(opt) = args.next() {
            if seen.contains(&opt.text) {
                return Err(cx.err(opt.col, format!("duplicate `{}` option", opt.text)));
            }
            match opt.text {
                "timeout" => p.timeout = Some(seconds(cx, &args.expect("a number of seconds")?)?),
                "netmask" => {
                    let v6 = match &self.dir.addr {
                        Some(a) => Some(a.value.is_ipv6()),
                        None => self.dir.ipv6.map(|_| true),
                    };
                    let what = match v6 {
                        Some(false) => "a dotted IPv4 netmask",
                        Some(true) => "a prefix length 0..128",
                        None => "a dotted IPv4 netmask or a prefix length 0..128",
                    };
                    let t = args.expect(what)?;
                    p.netmask = Some(netmask(cx, &t, v6)?);
                }
                other => {
                    return Err(cx.err(
                        opt.col,
                        format!(
                            "unknown persistence option `{other}`, expected `timeout` or `netmask`"
                        ),
                    ))
                }
            }
            seen.push(opt.text);
        }
        Ok(p)
    }

    fn server(&mut self, cx: &Cx<'_>, kw: Tok<'_>, args: &mut Args<'_, '_>) -> Result<()> {
        let name_tok = args.expect("a server name")?;
        let name = name_tok.text.to_string();
        if let Some(&first) = self.server_names.get(&name) {
            return Err(cx.err(
                name_tok.col,
                dup_line(
                    &format!("server name `{name}` in director `{}`", self.dir.name.value),
                    first,
                ),
            ));
        }
        let addr_tok = args.expect(&format!("a server address: {ADDR_EXPECTED}"))?;
        let (ip, port) = parse_addr(cx, &addr_tok)?;
        let key = (ip, port.or(self.dir.port));
        if let Some(&first) = self.server_addrs.get(&key) {
            return Err(cx.err(
                addr_tok.col,
                dup_line(
                    &format!(
                        "server address `{}` in director `{}`",
                        addr_tok.text, self.dir.name.value
                    ),
                    first,
                ),
            ));
        }
        let mut weight = None;
        let mut check = false;
        let mut check_params = Check::default();
        let mut check_seen: Vec<&str> = Vec::new();
        let mut sorry = false;
        let mut maxconn: Option<u32> = None;
        let mut minconn: Option<(u32, u32)> = None;
        let mut mode: Option<Spanned<Mode>> = None;
        while let Some(opt) = args.next() {
            let dup = match opt.text {
                "weight" => weight.is_some(),
                "maxconn" => maxconn.is_some(),
                "minconn" => minconn.is_some(),
                "check" => check,
                "sorry" => sorry,
                "mode" => mode.is_some(),
                _ => false,
            };
            if dup {
                return Err(cx.err(opt.col, format!("duplicate `{}` option", opt.text)));
            }
            match opt.text {
                "weight" => {
                    let t = args.expect("a weight 0..2147483647")?;
                    weight = Some(num_u32(cx, &t, "a weight", 0, MAX_I32)?);
                }
                "check" => check = true,
                "sorry" => sorry = true,
                "maxconn" => {
                    let t = args.expect("a connection count 0..2147483647")?;
                    maxconn = Some(num_u32(cx, &t, "a connection count", 0, MAX_I32)?);
                }
                "minconn" => {
                    let t = args.expect("a connection count 0..2147483647")?;
                    minconn = Some((num_u32(cx, &t, "a connection count", 0, MAX_I32)?, t.col));
                }
                "mode" => {
                    let m = mode_value(cx, args, true)?;
                    mode = Some(Spanned::new(m, cx.span(&opt)));
                }
                "timeout" | "interval" | "source" | "port" | "rise" | "fall" | "inhibit"
                    if check =>
                {
                    if check_seen.contains(&opt.text) {
                        return Err(cx.err(opt.col, format!("duplicate `{}` option", opt.text)));
                    }
                    check_seen.push(opt.text);
                    check_option(cx, &opt, args, &mut check_params)?;
                }
                other if TUNNEL_WORDS.contains(&other) => {
                    return Err(cx.err(
                        opt.col,
                        format!("`{other}` is a tunnel option: it goes right after `mode tunnel`"),
                    ))
                }
                "timeout" | "interval" | "source" | "rise" | "fall" | "inhibit" => {
                    return Err(cx.err(
                        opt.col,
                        format!(
                            "`{}` is a check option: on a server line it goes after `check` \
                             (e.g. `check {} …`)",
                            opt.text, opt.text
                        ),
                    ));
                }
                other => {
                    return Err(cx.err(
                        opt.col,
                        format!(
                            "unknown server option `{other}`, expected `weight`, `maxconn`, \
                             `minconn`, `check` (with its options), `sorry` or `mode`"
                        ),
                    ))
                }
            }
        }
        if let Some((min, col)) = minconn {
            let max = maxconn.unwrap_or(0);
            if min > max {
                return Err(cx.err(
                    col,
                    format!("`minconn {min}` is above `maxconn {max}` (the kernel refuses a lower threshold above the upper one)"),
                ));
            }
        }
        let server = Server {
            name: Spanned::new(name.clone(), cx.span(&name_tok)),
            addr: Spanned::new(ip, cx.span(&addr_tok)),
            port,
            weight: weight.unwrap_or(1),
            check,
            check_params,
            sorry,
            maxconn,
            minconn: minconn.map(|(m, _)| m),
            mode,
            span: cx.span(&kw),
        };
        if port.is_some() {
            // The port is the text after the address's last `:`.
            let off = addr_tok
                .text
                .rfind(':')
                .map_or(0, |i| addr_tok.text[..i].chars().count() + 1);
            let col = addr_tok.col_at(off);
            if mode.is_some() || self.mode_line.is_some() {
                if let Some(message) = self.port_problem(&server) {
                    return Err(cx.err(col, message));
                }
            } else {
                self.pending_ports.push(PendingPort {
                    server: self.dir.servers.len(),
                    line: cx.line,
                    col,
                    src: cx.src.to_string(),
                });
            }
        }
        self.server_names.insert(name, cx.line);
        self.server_addrs.insert(key, cx.line);
        self.dir.servers.push(server);
        Ok(())
    }
}

const MODE_EXPECTED: &str = "a mode (`gateway`, `nat` or `tunnel`)";

/// The words that may follow `mode tunnel`.
const TUNNEL_WORDS: [&str; 7] = ["ipip", "gue", "gre", "port", "nocsum", "csum", "remcsum"];

const TUNNEL_EXPECTED: &str = "a tunnel type (`ipip`, `gue port <port>`, `gre`) \
     or a checksum option (`nocsum`, `csum`, `remcsum`)";

/// The value of a `mode` (after the word `mode`, on a `mode` line or a
/// `server` line). On a server line the tunnel options end at the first word
/// that is not one (a server option follows); on a `mode` line the caller
/// refuses leftovers.
fn mode_value(cx: &Cx<'_>, args: &mut Args<'_, '_>, on_server: bool) -> Result<Mode> {
    let tok = args.expect(MODE_EXPECTED)?;
    let mode = match tok.text {
        "gateway" => Mode::Gateway,
        "nat" => Mode::Nat,
        "tunnel" => return Ok(Mode::Tunnel(tunnel(cx, args, on_server)?)),
        other => {
            return Err(cx.err(
                tok.col,
                format!("unknown mode `{other}`, expected {MODE_EXPECTED}"),
            ))
        }
    };
    if let Some(t) = args.peek().filter(|t| TUNNEL_WORDS.contains(&t.text)) {
        return Err(cx.err(
            t.col,
            format!(
                "`{}` is a tunnel option: it is only valid after `mode tunnel`, not `mode {}`",
                t.text, tok.text
            ),
        ));
    }
    Ok(mode)
}

/// The options of `mode tunnel`, in any order, checked against ipvsadm's
/// tunnel-type table: `gue` needs `port` and only `gue` takes one;
/// `remcsum` is for `gue` only; `ipip` has no checksum (`nocsum` is
/// accepted, as it is what `ipip` does).
fn tunnel(cx: &Cx<'_>, args: &mut Args<'_, '_>, on_server: bool) -> Result<Tunnel> {
    let mut kind: Option<Tok<'_>> = None;
    let mut port: Option<(u16, Tok<'_>)> = None;
    let mut csum: Option<Tok<'_>> = None;
    while let Some(t) = args.peek() {
        match t.text {
            "ipip" | "gue" | "gre" => {
                if let Some(first) = kind {
                    let msg = if first.text == t.text {
                        format!("duplicate tunnel type `{}`", t.text)
                    } else {
                        format!(
                            "more than one tunnel type: `{}` after `{}`",
                            t.text, first.text
                        )
                    };
                    return Err(cx.err(t.col, msg));
                }
                kind = Some(t);
            }
            "port" => {
                if port.is_some() {
                    return Err(cx.err(t.col, "duplicate `port` option"));
                }
                args.next();
                let v = args.expect("a GUE port 1..65535")?;
                let n = parse_num(cx, &v, "a GUE port", 1, 65535)?;
                port = Some((u16::try_from(n).unwrap_or(u16::MAX), t));
                continue;
            }
            "nocsum" | "csum" | "remcsum" => {
                if let Some(first) = csum {
                    let msg = if first.text == t.text {
                        format!("duplicate `{}` option", t.text)
                    } else {
                        format!(
                            "`{}` conflicts with `{}`: a tunnel has one checksum option",
                            t.text, first.text
                        )
                    };
                    return Err(cx.err(t.col, msg));
                }
                csum = Some(t);
            }
            _ if on_server => break,
            other => {
                return Err(cx.err(
                    t.col,
                    format!("unknown tunnel option `{other}`, expected {TUNNEL_EXPECTED}"),
                ))
            }
        }
        args.next();
    }
    let type_name = kind.map_or("ipip", |t| t.text);
    let kind = match (kind, port) {
        (Some(t), None) if t.text == "gue" => {
            return Err(cx.err(
                t.col,
                "the `gue` tunnel type needs the real server's UDP port: `gue port <port>`",
            ))
        }
        (Some(t), Some((p, _))) if t.text == "gue" => TunnelType::Gue { port: p },
        (k, Some((_, ptok))) => {
            let msg = if k.is_none() {
                "`port` is only valid with the `gue` tunnel type, and without a type the \
                 tunnel is `ipip`: write `gue port <port>`"
                    .to_string()
            } else {
                format!("`port` is only valid with the `gue` tunnel type, not `{type_name}`")
            };
            return Err(cx.err(ptok.col, msg));
        }
        (Some(t), None) if t.text == "gre" => TunnelType::Gre,
        _ => TunnelType::Ipip,
    };
    let csum = match (csum.map(|t| t.text), kind) {
        (None | Some("nocsum"), _) => TunnelCsum::NoCsum,
        (Some("remcsum"), TunnelType::Gue { .. }) => TunnelCsum::RemCsum,
        (Some("csum"), TunnelType::Gue { .. } | TunnelType::Gre) => TunnelCsum::Csum,
        (Some(c), _) => {
            let why = if c == "remcsum" {
                "remote checksum offload is a GUE feature; use `gue port <port>`"
            } else {
                "`ipip` has no checksum; use `gue port <port>` or `gre`"
            };
            let col = csum.map_or(0, |t| t.col);
            return Err(cx.err(
                col,
                format!("`{c}` is not valid with the `{type_name}` tunnel type ({why})"),
            ));
        }
    };
    Ok(Tunnel { kind, csum })
}

fn health(cx: &Cx<'_>, which: &str, args: &mut Args<'_, '_>) -> Result<HealthCheck> {
    let mut seen: Vec<&str> = Vec::new();
    let h = match which {
        "httpcheck" => {
            let (mut uri, mut status_code, mut vhost) = (None, None, None);
            while let Some(opt) = args.next() {
                if seen.contains(&opt.text) {
                    return Err(cx.err(opt.col, format!("duplicate `{}` option", opt.text)));
                }
                match opt.text {
                    "uri" => {
                        let t = args.expect("a URI starting with `/`")?;
                        if !t.text.starts_with('/') {
                            return Err(cx.err(
                                t.col,
                                format!("expected a URI starting with `/`, found `{}`", t.text),
                            ));
                        }
                        uri = Some(t.text.to_string());
                    }
                    "statuscode" => {
                        let t = args.expect("an HTTP status code 100..599")?;
                        let n = parse_num(cx, &t, "an HTTP status code", 100, 599)?;
                        status_code = u16::try_from(n).ok();
                    }
                    "vhost" => vhost = Some(args.expect("a virtual host name")?.text.to_string()),
                    other => {
                        return Err(cx.err(
                            opt.col,
                            format!(
                                "unknown httpcheck option `{other}`, expected `uri`, \
                                 `statuscode` or `vhost`"
                            ),
                        ))
                    }
                }
                seen.push(opt.text);
            }
            HealthCheck::Http {
                uri,
                status_code,
                vhost,
            }
        }
        "arpcheck" => {
            let mut iface = None;
            while let Some(opt) = args.next() {
                match opt.text {
                    "iface" if iface.is_none() => {
                        let t = args.expect("an interface name")?;
                        iface = Some(check_iface_name(cx, &t)?);
                    }
                    "iface" => {
                        return Err(cx.err(opt.col, "duplicate `iface` option"));
                    }
                    other => {
                        return Err(cx.err(
                            opt.col,
                            format!("unknown arpcheck option `{other}`, expected `iface`"),
                        ))
                    }
                }
            }
            HealthCheck::Arp { iface }
        }
        "tcpcheck" => {
            args.finish("option tcpcheck")?;
            HealthCheck::Tcp
        }
        _ => {
            args.finish("option icmpcheck")?;
            HealthCheck::Icmp
        }
    };
    Ok(h)
}

/// Parses a persistence netmask; `v6` is the director's family if known.
fn netmask(cx: &Cx<'_>, tok: &Tok<'_>, v6: Option<bool>) -> Result<Netmask> {
    let text = tok.text;
    let is_prefix = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if is_prefix && v6 != Some(false) {
        let n = parse_num(cx, tok, "a prefix length", 0, 128)?;
        return Ok(Netmask::Prefix(u8::try_from(n).unwrap_or(128)));
    }
    if v6 == Some(true) {
        return Err(cx.err(
            tok.col,
            format!("expected a prefix length 0..128 for an IPv6 director, found `{text}`"),
        ));
    }
    let what = if v6.is_none() {
        "a dotted IPv4 netmask or a prefix length 0..128"
    } else {
        "a dotted IPv4 netmask"
    };
    let ip: Ipv4Addr = text
        .parse()
        .map_err(|_| cx.err(tok.col, format!("expected {what}, found `{text}`")))?;
    let m = u32::from(ip);
    if m.leading_ones() + m.trailing_zeros() < 32 {
        return Err(cx.err(
            tok.col,
            format!("netmask `{text}` is not contiguous (its one bits must come first)"),
        ));
    }
    Ok(Netmask::V4(m))
}
