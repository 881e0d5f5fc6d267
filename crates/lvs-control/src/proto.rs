//! The control protocol between `lvsd` and `lvsadm`.
//!
//! One request per connection: the client writes one JSON object on one line,
//! the daemon answers with one JSON object on one line and closes. The types
//! are plain data; the daemon maps them onto the engine, `lvsadm` renders them
//! in ipvsadm's layouts (see `render`).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Layer-4 protocol of a virtual service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    /// A firewall-mark service (`-f MARK`): its key's `addr` holds the mark
    /// (an IPv4 address, or the first 32 bits of an IPv6 address for `-6`)
    /// and its port is 0 — see [`ServiceKey::fwmark`].
    Fwmark,
}

impl Protocol {
    /// IP protocol number (TCP 6, UDP 17, SCTP 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Fwmark => 0,
        }
    }
    /// The name ipvsadm prints (`TCP`, `UDP`, `SCTP`).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Fwmark => "FWM",
        }
    }
}

/// Forwarding method of a destination.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// NAT (`-m`), shown as `Masq`.
    Masq,
    /// Local node, shown as `Local`.
    Local,
    /// IP-in-IP and friends (`-i`), shown as `Tunnel`.
    Tunnel,
    /// Direct routing (`-g`), shown as `Route`.
    Route,
}

impl Forward {
    /// The name ipvsadm prints in the Forward column.
    pub fn label(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
        }
    }
}

/// Encapsulation of a tunnelling destination (`--tun-type`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelType {
    /// IP in IP (the default).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation to [`Tunnel::port`].
    Gue,
    /// GRE without key or sequence number.
    Gre,
}

impl TunnelType {
    /// The name ipvsadm uses (`--tun-type` value, `--tun-info` prefix).
    pub fn label(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipip",
            TunnelType::Gue => "gue",
            TunnelType::Gre => "gre",
        }
    }
}

/// Checksum option of a tunnel (`--tun-nocsum`, `--tun-csum`, `--tun-remcsum`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelCsum {
    /// No outer checksum (the default).
    #[default]
    NoCsum,
    /// Outer checksum (GUE: UDP checksum; GRE: the C bit).
    Csum,
    /// GUE remote checksum offload.
    RemCsum,
}

/// The tunnel settings of a destination, meaningful with [`Forward::Tunnel`]
/// (ipvsadm's initial values otherwise: ipip, port 0, no checksum).
/// ipvsadm's rules: a GUE tunnel has a port 1..65535, the others port 0;
/// `RemCsum` only with GUE; IPIP only `NoCsum`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(default)]
pub struct Tunnel {
    pub kind: TunnelType,
    /// GUE destination port (`--tun-port`); 0 for the other types.
    pub port: u16,
    pub csum: TunnelCsum,
}

/// Identifies a virtual service: protocol, address and port, or a firewall
/// mark ([`ServiceKey::fwmark`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
}

impl ServiceKey {
    /// The key of firewall-mark service `mark` (IPv6 with `v6`).
    pub fn fwmark(mark: u32, v6: bool) -> ServiceKey {
        let addr = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(mark) << 96))
        } else {
            IpAddr::V4(std::net::Ipv4Addr::from(mark))
        };
        ServiceKey {
            protocol: Protocol::Fwmark,
            addr,
            port: 0,
        }
    }

    /// The mark of a firewall-mark service.
    pub fn mark(&self) -> Option<u32> {
        (self.protocol == Protocol::Fwmark).then(|| match self.addr {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => (u128::from(a) >> 96) as u32,
        })
    }
}

/// What `-A`/`-E` send: a complete service definition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Kernel scheduler name (`rr`, `wrr`, `wlc`, ...).
    pub scheduler: String,
    /// Scheduler flag bits (0x08, 0x10, 0x20), as `-b` sets them.
    pub sched_flags: u32,
    /// Persistence timeout in seconds, if persistent.
    pub persistent: Option<u32>,
    /// Persistence netmask: IPv4 mask as u32 (host order) or IPv6 prefix length.
    pub netmask: u32,
    /// One-packet scheduling (`-o`).
    pub one_packet: bool,
}

/// What `-a`/`-e` send: a complete destination definition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// Encapsulation for [`Forward::Tunnel`] (absent from older clients: ipip).
    #[serde(default)]
    pub tunnel: Tunnel,
}

/// Statistics of a service or destination as `--stats`/`--rate` list them
/// (connections.md §19): the estimator's snapshot minus the `-Z` zero
/// point, and the estimated rates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsInfo {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Connections per second.
    pub cps: u64,
    /// Packets per second, in and out.
    pub in_pps: u64,
    pub out_pps: u64,
    /// Bytes per second, in and out.
    pub in_bps: u64,
    pub out_bps: u64,
}

/// A destination as listed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DestInfo {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    pub weight: i32,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// Encapsulation for [`Forward::Tunnel`] (absent from older daemons: ipip).
    #[serde(default)]
    pub tunnel: Tunnel,
    /// Counters and rates (`None` from a daemon without statistics: shown as 0).
    #[serde(default)]
    pub stats: Option<StatsInfo>,
}

/// A service as listed, destinations in the engine's list order (front first).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub spec: ServiceSpec,
    pub dests: Vec<DestInfo>,
    /// Counters and rates (`None`: shown as 0).
    #[serde(default)]
    pub stats: Option<StatsInfo>,
}

/// One entry of the connection table, as `/proc/net/ip_vs_conn` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for fwmark templates.
    pub protocol: String,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// State name as the kernel prints it (`ESTABLISHED`, `UDP`, `NONE`, ...).
    pub state: String,
    /// Whole seconds until the entry expires.
    pub expires_secs: u64,
    /// Made or last updated by a sync message (origin `SYNC`).
    #[serde(default)]
    pub synced: bool,
}

/// The three timeouts of `ipvsadm --set` / `-L --timeout`, in seconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// One sysctl as `lvsadm --sysctl` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SysctlValue {
    /// Name without the `net.ipv4.vs.` prefix.
    pub name: String,
    pub value: String,
    /// Why it has no effect in this build (`None`: lvsd acts on it).
    #[serde(default)]
    pub no_effect: Option<String>,
    pub doc: String,
}

/// One counter as `lvsadm --counters` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// `area.name`, e.g. `engine.sent_route`, `drop.ttl_exceeded`, `io.rx`.
    pub name: String,
    pub value: u64,
}

/// One real server's health as `lvsadm --health` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HealthInfo {
    /// The director and server names of the configuration (empty for a
    /// server added with lvsadm).
    pub director: String,
    pub server: String,
    pub service: ServiceKey,
    pub addr: IpAddr,
    pub port: u16,
    /// The check, e.g. `tcpcheck :80 every 1s timeout 500ms rise 1 fall 1`
    /// (empty: not checked).
    pub check: String,
    /// The verdict (an unchecked server is up).
    pub up: bool,
    /// A sorry server (used only while every other server is down).
    pub sorry: bool,
    /// The engine holds it now, with this weight (0 when inhibited).
    pub in_service: bool,
    pub weight: i32,
    /// The last check's result, its reason and age.
    pub last_ok: Option<bool>,
    pub reason: String,
    pub age_ms: Option<u64>,
    /// Consecutive successes and failures.
    pub successes: u32,
    pub failures: u32,
    /// How long the probes took (absent when not checked, or from an
    /// older daemon).
    #[serde(default)]
    pub latency: Option<Histogram>,
}

/// A histogram of durations in microseconds: `counts[i]` probes took at
/// most `bounds_us[i]` (and more than the bound before); the last count
/// is those above every bound.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub bounds_us: Vec<u64>,
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

/// A request from `lvsadm` to `lvsd`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// All services with their destinations.
    ListServices,
    /// One service (`-L -t ADDR:PORT`).
    GetService(ServiceKey),
    /// The connection table (`-L -c`).
    ListConnections,
    AddService(ServiceSpec),
    EditService(ServiceSpec),
    DeleteService(ServiceKey),
    AddDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    EditDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    DeleteDest {
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
    },
    /// `-C`: remove every service.
    Clear,
    GetTimeouts,
    /// Every sysctl with its value (`lvsadm --sysctl`).
    GetSysctls,
    /// Sets one sysctl (`lvsadm --sysctl NAME=VALUE`).
    SetSysctl {
        name: String,
        value: String,
    },
    /// `--set`: a 0 leaves that value unchanged.
    SetTimeouts(Timeouts),
    /// `-Z`: zero the counters and rates of one service and its real
    /// servers, or (`None`) of everything, totals included.
    Zero(Option<ServiceKey>),
    /// lvsd's own counters: packets per forwarding method, replies, drops
    /// by reason, packet I/O (`lvsadm --counters`).
    GetCounters,
    /// Every real server's health (`lvsadm --health`).
    GetHealth,
    /// The totals and rates of all services (`/proc/net/ip_vs_stats`).
    GetTotals,
    /// Re-read the configuration file and apply what changed in it
    /// (`lvsadm --reload`; SIGHUP does the same).
    Reload,
    /// Changes applied one after the other in one step of the packet loop
    /// (`lvsadm -R`): packets see the table before or after, never half
    /// of it. Each answers as it would alone (an error does not stop the
    /// rest, as with ipvsadm -R). No nested batches or reloads.
    Batch(Vec<Request>),
    /// `--start-daemon master|backup` with its options.
    StartDaemon(DaemonConfig),
    /// `--stop-daemon master|backup`.
    StopDaemon(SyncRole),
    /// `-L --daemon`.
    GetDaemons,
}

/// Why a request failed; each kind maps to one ipvsadm message (spec §6).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// add service: `Service already exists`
    ServiceExists,
    /// add/edit service: `Scheduler or persistence engine not found`
    SchedulerNotFound,
    /// edit/delete/get service: `No such service`
    NoSuchService,
    /// add/edit/delete server: `Service not defined`
    ServiceNotDefined,
    /// add server: `Destination already exists`
    DestExists,
    /// edit/delete server: `No such destination`
    NoSuchDest,
    /// `Numerical result out of range` (the kernel's ERANGE: a negative
    /// weight, a lower threshold above the upper one).
    OutOfRange,
    /// `Invalid operation.  Possibly wrong module version, address not unicast, ...`
    Invalid,
    /// `Operation not supported with IPv6` (and other not-yet-implemented operations)
    NotSupported,
    /// The request could not be decoded.
    BadRequest,
    /// start daemon: `Daemon has already run`
    DaemonRunning,
    /// stop daemon: `No daemon is running`
    NoDaemon,
    /// start daemon on an unknown interface: `No such device`
    NoDevice,
}

/// A sync daemon's role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncRole {
    Master,
    Backup,
}

/// `--start-daemon` and what `-L --daemon` lists (with the defaults
/// filled in: sync-protocol.md §6.5).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub role: SyncRole,
    /// `--mcast-interface` (at most 15 bytes).
    pub ifname: String,
    pub syncid: u8,
    /// `--sync-maxlen`; 0: the default (§1.2).
    pub maxlen: u16,
    /// `--mcast-group`; `None`: 224.0.0.81.
    pub group: Option<IpAddr>,
    /// `--mcast-port`; 0: 8848.
    pub port: u16,
    /// `--mcast-ttl`; 0: 1.
    pub ttl: u8,
    /// Backup: ask the master for a full copy of its table at start
    /// (lvsd's addition; the `sync … resync` option of the file).
    #[serde(default)]
    pub resync: bool,
}

/// A running sync daemon's counters (lvsd's addition to `-L --daemon`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub messages_sent: u64,
    pub entries_sent: u64,
    /// Messages the master threw away (queue full, send failed).
    pub send_dropped: u64,
    /// Messages waiting to be sent.
    pub queue_len: u64,
    pub messages_received: u64,
    pub entries_created: u64,
    pub entries_updated: u64,
    pub entries_skipped: u64,
    pub entries_ignored: u64,
    /// Received messages dropped (or stopped part-way), by reason.
    pub receive_dropped: Vec<(String, u64)>,
    /// Milliseconds since the last accepted message (backup).
    pub last_message_age_ms: Option<u64>,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Ok,
    Services {
        /// Connection hash table size shown in the listing header.
        conn_tab_size: u32,
        services: Vec<ServiceInfo>,
    },
    /// The connection table; a long one comes in several lines, every one
    /// but the last a `ConnectionsPart`.
    Connections(Vec<ConnInfo>),
    /// A chunk of a long connection listing; more lines follow.
    ConnectionsPart(Vec<ConnInfo>),
    Timeouts(Timeouts),
    Sysctls(Vec<SysctlValue>),
    Counters(Vec<Counter>),
    Health(Vec<HealthInfo>),
    /// Totals and rates of everything (`GetTotals`).
    Totals(StatsInfo),
    /// The answers to a `Batch`, in order.
    Batch(Vec<Response>),
    /// A reload was applied: what changed, and what could not be.
    Reloaded {
        changes: Vec<String>,
        warnings: Vec<String>,
        /// The file's warnings (legal but suspicious settings).
        #[serde(default)]
        notes: Vec<String>,
    },
    Error {
        kind: ErrorKind,
        /// Extra detail for people (logged by lvsd, shown by lvsadm after the ipvsadm text).
        detail: String,
    },
    /// The running sync daemons (master first) and the counters.
    Daemons {
        daemons: Vec<DaemonConfig>,
        status: Box<SyncStatus>,
    },
}
