//! Health checks for lvsd's real servers: `tcpcheck`, `httpcheck`,
//! `icmpcheck` and `arpcheck` of seed 003's director language.
//!
//! # Where this sits
//!
//! The packet workers never wait on a check. [`Health::start`] spawns one OS
//! thread that runs a tokio current-thread runtime; every check is a task on
//! it. The daemon (control-plane side) tells it which checks it wants with
//! [`Health::set_checks`] and pulls up/down changes with
//! [`Health::poll_transition`], waking on [`Health::wake_fd`] from its own
//! poll loop. Nothing here knows about services or the engine: a verdict is
//! about a [`CheckSpec`], and mapping specs to destinations (and sharing one
//! check between directors that name the same target) is the daemon's job.
//!
//! # Semantics
//!
//! - A check starts **up** (as keepalived without `alpha`): traffic flows at
//!   once. It goes down after `fall` consecutive failures and comes back after
//!   `rise` consecutive successes ([`Verdict`]). A [`Transition`] is emitted
//!   only when up/down changes, carrying the reason of the probe that tripped
//!   it and the consecutive counts.
//! - A check runs every `interval`; its first run is delayed by a stable
//!   offset in `[0, interval)` derived from a hash of the spec
//!   ([`first_offset`]), so checks configured together do not fire together.
//! - A probe never takes longer than its `timeout`: one `tokio::time::timeout`
//!   wraps everything (connect, send, read).
//! - Identical specs are one check: [`Health::set_checks`] deduplicates, and a
//!   spec that stays in the wanted set keeps running undisturbed (its counters
//!   and schedule are kept).
//!
//! # Crates
//!
//! - **tokio** (`rt`, `net`, `time`, `io-util`, `sync`): the runtime. `sync`
//!   is for the [`tokio::sync::Notify`] that wakes the runtime when the wanted
//!   set changes or the handle is dropped.
//! - **httparse** for HTTP rather than hyper: a check needs one request and the
//!   status of the response head, and must stop reading at a fixed bound
//!   (8 KiB) without ever touching the body. Over a plain `TcpStream` that is
//!   a dozen lines with exact control of every byte read; hyper would bring a
//!   connection state machine, body streaming and a dozen more crates for
//!   nothing we use. httparse is the parser hyper itself uses.
//! - **socket2** for the raw ICMP socket and the `AF_PACKET` ARP socket
//!   (driven by tokio's `AsyncFd`) rather than surge-ping: one shared ICMP
//!   socket per source address, with replies dispatched by identifier and
//!   sequence, is short, and it keeps pnet and its dependencies out.
//! - **libc** for `getifaddrs`, `if_nametoindex` and the eventfd.
//!
//! # Privileges
//!
//! `icmpcheck` opens a raw ICMP socket (root or `CAP_NET_RAW`); without it, it
//! falls back to an unprivileged ping socket (`net.ipv4.ping_group_range`).
//! `arpcheck` needs `CAP_NET_RAW` for its `AF_PACKET` socket. `tcpcheck` and
//! `httpcheck` need nothing.
//!
//! # Scale benchmark
//!
//! `examples/scale.rs` checks 1,000 real servers (4 network namespaces × 250
//! addresses, one TCP listener and one HTTP server per namespace) with 1,000
//! `tcpcheck` + 1,000 `httpcheck` every second (timeout 500 ms, rise 1,
//! fall 1), from a checker thread started in a namespace of its own. In the
//! same run it times the packet path (established NAT with 10k connections
//! through `lvs_core::Engine::process_ipv4` on the main thread) alternately
//! with the checks running and without, nothing pinned. It reports the
//! `lvs-health` thread's CPU, checks run per second, check-latency
//! percentiles, transitions (expected: none), and the throughput medians and
//! their ratio, as Markdown on stdout (progress on stderr). It needs root,
//! creates nothing in the root namespace (namespaces `lvscale<pid>-*`,
//! addresses from 198.18.0.0/15) and deletes its namespaces on exit, error,
//! SIGINT/SIGTERM or panic. It is an example, so `cargo test` builds it but
//! never runs it:
//!
//! ```text
//! cargo run --release -p lvs-health --example scale               # 4 rounds of 5 s + 5 s, about 1 min
//! cargo run --release -p lvs-health --example scale -- --secs 5 --rounds 4
//! ```

mod arp;
mod http;
mod icmp;
mod probe;
mod runner;
mod verdict;
mod wake;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use probe::Prober;
pub use runner::Health;
pub use verdict::{first_offset, Verdict};

/// Largest response head (status line and headers) an `httpcheck` reads.
pub const HTTP_MAX_HEAD: usize = 8 * 1024;

/// The testing method of a check (seed 003's `option …check`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `option tcpcheck`: a TCP connection to `addr:port` is opened, then closed.
    Tcp,
    /// `option httpcheck`: `GET uri` over HTTP/1.1; up only if the response's
    /// status code is `status`. `vhost` is the Host header (default: the
    /// server's address, with the port unless it is 80).
    Http {
        /// Requested URI (seed default `/`).
        uri: String,
        /// Host header (`vhost`).
        vhost: Option<String>,
        /// Expected status code (`statuscode`, seed default 200).
        status: u16,
    },
    /// `option icmpcheck`: an ICMP echo request; up on the matching echo reply.
    /// IPv4 only. The seed's default when no method is set.
    Icmp,
    /// `option arpcheck`: an ARP who-has for the server on `iface` (default:
    /// the interface of the route to it); up on a reply from the server's
    /// address. IPv4 only.
    Arp {
        /// Interface to send on (`iface`).
        iface: Option<String>,
    },
}

/// One check: what to test, against which server, how often and how strictly.
///
/// Two equal specs are the same check (see [`Health::set_checks`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// Testing method.
    pub kind: CheckKind,
    /// The real server's address.
    pub addr: IpAddr,
    /// TCP/HTTP destination port (unused for ICMP/ARP).
    pub port: u16,
    /// Source address to send from (`source`); for ARP, the sender address.
    pub source: Option<IpAddr>,
    /// Time between the starts of two probes (`interval`, seed default 10 s).
    /// Values under 1 ms are taken as 1 ms.
    pub interval: Duration,
    /// Longest a probe may take (`timeout`, seed default half the interval).
    pub timeout: Duration,
    /// Consecutive successes that bring a down server back (`rise`, default 1; 0 counts as 1).
    pub rise: u32,
    /// Consecutive failures that take an up server down (`fall`, default 1; 0 counts as 1).
    pub fall: u32,
}

/// A change of a check between up and down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The check that changed.
    pub spec: CheckSpec,
    /// New state.
    pub up: bool,
    /// Outcome of the probe that tripped it: "ok" when going up, else the
    /// failure ("connection refused", "timeout after 500 ms", "status 503",
    /// "no echo reply", "no ARP reply", …).
    pub reason: String,
    /// Consecutive successes when it changed (≥ `rise` when going up, 0 when going down).
    pub successes: u32,
    /// Consecutive failures when it changed (≥ `fall` when going down, 0 when going up).
    pub failures: u32,
}

/// Current state of one running check.
#[derive(Clone, Debug)]
pub struct Status {
    /// Whether the check counts as up (true until `fall` failures are seen).
    pub up: bool,
    /// Outcome of the last probe; `None` before the first.
    pub last_ok: Option<bool>,
    /// Reason of the last probe ("ok" or the failure); empty before the first.
    pub last_reason: String,
    /// When the last probe finished.
    pub last_at: Option<Instant>,
    /// Consecutive successes.
    pub successes: u32,
    /// Consecutive failures.
    pub failures: u32,
    /// How long the last probe took (up to its timeout).
    pub last_latency: Option<Duration>,
    /// Probes run since the check started.
    pub checks_run: u64,
    /// How long the probes took, in buckets.
    pub latency: LatencyHistogram,
}

/// Upper bounds (seconds) of the probe-duration buckets.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Probe durations: a count per bucket of [`LATENCY_BOUNDS`] (the last
/// element counts those above the last bound) and their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    pub counts: [u64; LATENCY_BOUNDS.len() + 1],
    pub sum_secs: f64,
}

impl LatencyHistogram {
    /// Counts one probe that took `d`.
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i] += 1;
        self.sum_secs += s;
    }
}

impl Status {
    /// The status of a check that has not run yet: up, nothing seen.
    pub fn initial() -> Status {
        Status {
            up: true,
            last_ok: None,
            last_reason: String::new(),
            last_at: None,
            successes: 0,
            failures: 0,
            last_latency: None,
            checks_run: 0,
            latency: LatencyHistogram::default(),
        }
    }
}

/// The reason text of an I/O error: the OS message without its
/// "(os error N)" tail and with a lower-case first letter, so that it reads as
/// "connection refused" or "no route to host" in a log line.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => &s[..],
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_string(),
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket() {
        let mut h = LatencyHistogram::default();
        for ms in [0.2, 0.5, 0.7, 40.0, 2500.0, 2600.0] {
            h.record(Duration::from_secs_f64(ms / 1000.0));
        }
        let mut want = [0u64; 13];
        want[0] = 2; // <= 0.5 ms, the bound itself included
        want[1] = 1;
        want[6] = 1; // <= 50 ms
        want[11] = 1; // <= 2.5 s
        want[12] = 1; // above every bound
        assert_eq!(h.counts, want);
        assert!((h.sum_secs - 5.1414).abs() < 1e-9);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Health>();
        send_sync::<Prober>();
    }

    #[test]
    fn io_reason_reads_like_a_log_line() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(io_reason(&e), "no route to host");
        let e = std::io::Error::other("Odd thing");
        assert_eq!(io_reason(&e), "odd thing");
    }
}
