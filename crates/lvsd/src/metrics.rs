//! The metrics endpoint (`metrics ADDRESS:PORT`): Prometheus metrics at
//! `/metrics`, a live status page at `/` and its data at `/status.json`.
//!
//! Nothing here touches the engine: every scrape asks the packet loop
//! through the control path, as lvsadm does (the service listing is built
//! 256 services per loop step), and a sampler thread does the same every
//! [`SAMPLE_EVERY`] to keep the status page's recent history. The HTTP side
//! is deliberately small: one request per connection, GET or HEAD, at most
//! [`MAX_CLIENTS`] connections at once, each with a read deadline.
//!
//! The exposition is OpenMetrics text (the `prometheus-client` crate). The
//! `node_ipvs_*` families carry the names, types and labels of
//! node_exporter's IPVS collector, so dashboards and alerts written for a
//! kernel director work unchanged; `lvsd_*` families are ours.

use crate::control::Client;
use crate::daemon::endpoint;
use lvs_control::{Counter, DestInfo, Forward, HealthInfo, Protocol, Request, Response};
use lvs_control::{ServiceInfo, ServiceKey, StatsInfo};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Connections served at once; more are answered 503 and closed.
const MAX_CLIENTS: usize = 16;
/// Time a client has to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(3);
/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;
/// How often the status page's history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per server (five minutes).
const HISTORY: usize = 150;
/// Servers whose history is kept (the first ones listed); the others show
/// their current rates only.
const HISTORY_SERVERS: usize = 1024;

/// The page, served as it is: no asset from anywhere else.
const STATUS_PAGE: &str = include_str!("status.html");

/// The running endpoint; dropping it stops its threads.
pub struct Metrics {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Shared {
    client: Client,
    started: SystemTime,
    history: Mutex<History>,
    busy: AtomicUsize,
}

/// Recent rates per server, oldest first.
#[derive(Default)]
struct History {
    servers: HashMap<(ServiceKey, IpAddr, u16), VecDeque<(u64, u64)>>,
}

/// Binds `addr` and starts serving (an error if the address cannot be
/// bound: lvsd refuses to start rather than run unobserved).
pub fn start(addr: SocketAddr, client: Client) -> io::Result<Metrics> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        client,
        started: SystemTime::now(),
        history: Mutex::new(History::default()),
        busy: AtomicUsize::new(0),
    });
    let (s1, st1) = (shared.clone(), stop.clone());
    let accept = std::thread::Builder::new()
        .name("lvsd-metrics".into())
        .spawn(move || accept_loop(listener, s1, st1))?;
    let (s2, st2) = (shared, stop.clone());
    let sampler = std::thread::Builder::new()
        .name("lvsd-sampler".into())
        .spawn(move || sample_loop(s2, st2))?;
    Ok(Metrics {
        addr,
        stop,
        threads: vec![accept, sampler],
    })
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    shared.busy.fetch_sub(1, Ordering::AcqRel);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = respond(&stream, 503, "text/plain", b"busy, try again\n", false);
                    continue;
                }
                let s = shared.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("lvsd-http".into())
                        .spawn(move || {
                            let _slot = Slot(&s.busy);
                            if let Err(e) = serve(stream, &s) {
                                tracing::debug!("metrics connection: {e}");
                            }
                        });
                if let Err(e) = spawned {
                    shared.busy.fetch_sub(1, Ordering::AcqRel);
                    tracing::error!("metrics: cannot start a thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads the request head (bounded in size and time).
fn read_head(stream: &TcpStream) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = (&*stream).read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
    }
}

/// A connection's place among `MAX_CLIENTS`, released however its
/// thread ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = read_head(&stream)?;
    let (page, head_only) = match route(&head) {
        Ok(r) => r,
        Err((code, text)) => return respond(&stream, code, "text/plain", text.as_bytes(), false),
    };
    let (ctype, body) = match page {
        Page::Metrics => (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            scrape(shared),
        ),
        Page::StatusJson => (
            "application/json",
            status_json(shared).map(|v| v.to_string()),
        ),
        Page::Status => ("text/html; charset=utf-8", Ok(STATUS_PAGE.to_string())),
        Page::NotFound => {
            let text = b"not found (try /metrics or /)\n";
            return respond(&stream, 404, "text/plain", text, head_only);
        }
    };
    match body {
        Ok(b) => respond(&stream, 200, ctype, b.as_bytes(), head_only),
        Err(e) => respond(
            &stream,
            503,
            "text/plain",
            format!("{e}\n").as_bytes(),
            head_only,
        ),
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Page {
    Metrics,
    StatusJson,
    Status,
    NotFound,
}

/// The page a request head asks for and whether only the head is wanted,
/// or the error status and text to answer with.
fn route(head: &[u8]) -> Result<(Page, bool), (u16, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            (req.method.unwrap_or_default(), req.path.unwrap_or_default())
        }
        _ => return Err((400, "bad request\n")),
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Err((405, "GET or HEAD only\n"));
    }
    let page = match path.split('?').next().unwrap_or_default() {
        "/metrics" => Page::Metrics,
        "/status.json" => Page::StatusJson,
        "/" | "/index.html" => Page::Status,
        _ => Page::NotFound,
    };
    Ok((page, head_only))
}

fn respond(
    stream: &TcpStream,
    code: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut w = stream;
    w.write_all(out.as_bytes())?;
    if !head_only {
        w.write_all(body)?;
    }
    w.flush()
}

/// What one scrape reads from the packet loop.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: Vec<ServiceInfo>,
    pub health: Vec<HealthInfo>,
    pub counters: Vec<Counter>,
    pub totals: StatsInfo,
    pub requests: u64,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    pub start_time: f64,
}

fn ask_services(client: &Client) -> Result<Vec<ServiceInfo>, String> {
    match client.ask(Request::ListServices) {
        Response::Services { services, .. } => Ok(services),
        other => Err(unexpected(other)),
    }
}

fn ask_health(client: &Client) -> Result<Vec<HealthInfo>, String> {
    match client.ask(Request::GetHealth) {
        Response::Health(h) => Ok(h),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Response) -> String {
    match r {
        Response::Error { detail, .. } => format!("lvsd did not answer: {detail}"),
        _ => "lvsd gave an unexpected answer".into(),
    }
}

fn snapshot(shared: &Shared) -> Result<Snapshot, String> {
    let c = &shared.client;
    let services = ask_services(c)?;
    let health = ask_health(c)?;
    let counters = match c.ask(Request::GetCounters) {
        Response::Counters(v) => v,
        other => return Err(unexpected(other)),
    };
    let totals = match c.ask(Request::GetTotals) {
        Response::Totals(t) => t,
        other => return Err(unexpected(other)),
    };
    let served = c.served();
    Ok(Snapshot {
        services,
        health,
        counters,
        totals,
        requests: served.requests.load(Ordering::Relaxed),
        reloads_applied: served.reloads_applied.load(Ordering::Relaxed),
        reloads_refused: served.reloads_refused.load(Ordering::Relaxed),
        start_time: shared
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    })
}

fn scrape(shared: &Shared) -> Result<String, String> {
    let snap = snapshot(shared)?;
    render(snap).map_err(|_| "cannot encode the metrics".to_string())
}

/// The OpenMetrics text of a snapshot.
pub fn render(snap: Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Collect(snap)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Collect(Snapshot);

type Labels = Vec<(&'static str, String)>;

/// The service half of node_exporter's backend labels.
fn service_labels(key: &ServiceKey) -> Labels {
    let (addr, port, mark) = match key.mark() {
        // node_exporter passes /proc/net/ip_vs's 8-digit hex through.
        Some(m) => (String::new(), "0".to_string(), format!("{m:08X}")),
        None => (key.addr.to_string(), key.port.to_string(), String::new()),
    };
    vec![
        ("local_address", addr),
        ("local_port", port),
        ("local_mark", mark),
        ("proto", proto_name(key.protocol).to_string()),
    ]
}

/// node_exporter's backend labels, in its order.
fn backend_labels(key: &ServiceKey, addr: IpAddr, port: u16) -> Labels {
    let s = service_labels(key);
    let get = |n: &str| {
        s.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    vec![
        ("local_address", get("local_address")),
        ("local_port", get("local_port")),
        ("remote_address", addr.to_string()),
        ("remote_port", port.to_string()),
        ("proto", get("proto")),
        ("local_mark", get("local_mark")),
    ]
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Fwmark => "FWM",
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, u64, f64>(&v, None)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&v)
}

/// One family with a sample per label set.
fn family<T>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl Iterator<Item = (Labels, T)>,
) -> std::fmt::Result
where
    T: Into<f64> + Copy,
{
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let mut f = m.encode_family(&labels)?;
        match ty {
            MetricType::Counter => f.encode_counter::<NoLabelSet, f64, f64>(&v.into(), None)?,
            _ => f.encode_gauge(&v.into())?,
        }
    }
    Ok(())
}

/// Counters of `lvsadm --counters` that are levels, not totals.
const LEVELS: [&str; 6] = [
    "engine.connections",
    "io.fastpath_flows",
    "engine.connection_slots",
    "io.neighbours",
    "io.routes",
    "io.vrrp_master_instances",
];

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let t = &s.totals;
        // node_exporter's IPVS collector: totals, then per backend.
        counter(
            &mut enc,
            "node_ipvs_connections",
            "The total number of connections made.",
            t.conns,
        )?;
        counter(
            &mut enc,
            "node_ipvs_incoming_packets",
            "The total number of incoming packets.",
            t.in_pkts,
        )?;
        counter(
            &mut enc,
            "node_ipvs_outgoing_packets",
            "The total number of outgoing packets.",
            t.out_pkts,
        )?;
        counter(
            &mut enc,
            "node_ipvs_incoming_bytes",
            "The total amount of incoming data.",
            t.in_bytes,
        )?;
        counter(
            &mut enc,
            "node_ipvs_outgoing_bytes",
            "The total amount of outgoing data.",
            t.out_bytes,
        )?;
        let dests = || {
            s.services
                .iter()
                .flat_map(|svc| svc.dests.iter().map(move |d| (svc, d)))
        };
        let per_dest = |f: fn(&DestInfo) -> f64| {
            dests().map(move |(svc, d)| (backend_labels(&svc.spec.key, d.addr, d.port), f(d)))
        };
        family(
            &mut enc,
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
            MetricType::Gauge,
            per_dest(|d| f64::from(d.active_conns)),
        )?;
        family(
            &mut enc,
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            MetricType::Gauge,
            per_dest(|d| f64::from(d.inact_conns)),
        )?;
        family(
            &mut enc,
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            MetricType::Gauge,
            per_dest(|d| f64::from(d.weight)),
        )?;

        // Ours, per backend.
        let stat = |f: fn(&StatsInfo) -> u64| {
            dests().map(move |(svc, d)| {
                let v = d.stats.as_ref().map(f).unwrap_or(0);
                (backend_labels(&svc.spec.key, d.addr, d.port), v as f64)
            })
        };
        family(
            &mut enc,
            "lvsd_backend_connections",
            "Connections scheduled to the backend.",
            MetricType::Counter,
            stat(|x| x.conns),
        )?;
        family(
            &mut enc,
            "lvsd_backend_incoming_packets",
            "Packets from clients forwarded to the backend.",
            MetricType::Counter,
            stat(|x| x.in_pkts),
        )?;
        family(
            &mut enc,
            "lvsd_backend_outgoing_packets",
            "Packets from the backend to clients.",
            MetricType::Counter,
            stat(|x| x.out_pkts),
        )?;
        family(
            &mut enc,
            "lvsd_backend_incoming_bytes",
            "Bytes from clients forwarded to the backend.",
            MetricType::Counter,
            stat(|x| x.in_bytes),
        )?;
        family(
            &mut enc,
            "lvsd_backend_outgoing_bytes",
            "Bytes from the backend to clients.",
            MetricType::Counter,
            stat(|x| x.out_bytes),
        )?;
        let health_rows = |f: fn(&HealthInfo) -> f64| {
            s.health.iter().map(move |h| {
                let mut l = vec![
                    ("director", h.director.clone()),
                    ("server", h.server.clone()),
                ];
                l.extend(backend_labels(&h.service, h.addr, h.port));
                (l, f(h))
            })
        };
        family(
            &mut enc,
            "lvsd_backend_up",
            "Health verdict of the backend: 1 up (or not checked), 0 down.",
            MetricType::Gauge,
            health_rows(|h| f64::from(u8::from(h.up))),
        )?;
        family(
            &mut enc,
            "lvsd_backend_in_service",
            "1 when the engine holds the backend with a weight above 0.",
            MetricType::Gauge,
            health_rows(|h| f64::from(u8::from(h.in_service && h.weight > 0))),
        )?;
        // Check durations, one histogram per checked server.
        {
            let mut m = enc.encode_descriptor(
                "lvsd_health_check_duration_seconds",
                "How long the backend's health checks took.",
                None,
                MetricType::Histogram,
            )?;
            for h in &s.health {
                let Some(l) = &h.latency else { continue };
                let labels: Labels = vec![
                    ("director", h.director.clone()),
                    ("server", h.server.clone()),
                    ("remote_address", h.addr.to_string()),
                    ("remote_port", h.port.to_string()),
                ];
                let mut cum = 0u64;
                let mut buckets: Vec<(f64, u64)> = l
                    .bounds_us
                    .iter()
                    .zip(&l.counts)
                    .map(|(&b, &c)| {
                        cum += c;
                        (b as f64 / 1e6, cum)
                    })
                    .collect();
                let count: u64 = l.counts.iter().sum();
                buckets.push((f64::INFINITY, count));
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    l.sum_us as f64 / 1e6,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }
        family(
            &mut enc,
            "lvsd_service_available_backends",
            "Backends of the service that can take new connections (weight above 0).",
            MetricType::Gauge,
            s.services.iter().map(|svc| {
                let n = svc.dests.iter().filter(|d| d.weight > 0).count();
                (service_labels(&svc.spec.key), n as f64)
            }),
        )?;
        let svc_stat = |f: fn(&StatsInfo) -> u64| {
            s.services.iter().map(move |svc| {
                (
                    service_labels(&svc.spec.key),
                    svc.stats.as_ref().map(f).unwrap_or(0) as f64,
                )
            })
        };
        family(
            &mut enc,
            "lvsd_service_connections",
            "Connections scheduled by the service.",
            MetricType::Counter,
            svc_stat(|x| x.conns),
        )?;
        family(
            &mut enc,
            "lvsd_service_incoming_packets",
            "Packets from clients of the service.",
            MetricType::Counter,
            svc_stat(|x| x.in_pkts),
        )?;
        family(
            &mut enc,
            "lvsd_service_outgoing_packets",
            "Packets to clients of the service.",
            MetricType::Counter,
            svc_stat(|x| x.out_pkts),
        )?;

        // The engine's and the packet path's counters.
        let value = |name: &str| {
            s.counters
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.value)
                .unwrap_or(0)
        };
        gauge(
            &mut enc,
            "lvsd_connections",
            "Entries in the connection table (templates included).",
            value("engine.connections") as f64,
        )?;
        gauge(
            &mut enc,
            "lvsd_connection_slots",
            "Entries the connection table holds memory for.",
            value("engine.connection_slots") as f64,
        )?;
        counter(
            &mut enc,
            "lvsd_connections_created",
            "Connection entries created.",
            value("engine.connections_created"),
        )?;
        counter(
            &mut enc,
            "lvsd_connections_expired",
            "Connection entries expired.",
            value("engine.connections_expired"),
        )?;
        // The engine's reasons, with the daemon's own drops folded in
        // (no route when transmitting counts as `no_route` too).
        let mut drops: Vec<(Labels, f64)> = s
            .counters
            .iter()
            .filter_map(|c| {
                let r = c.name.strip_prefix("drop.")?;
                let extra = if r == "no_route" {
                    value("io.drop_no_route")
                } else {
                    0
                };
                Some((vec![("reason", r.to_string())], (c.value + extra) as f64))
            })
            .collect();
        drops.push((
            vec![("reason", "no_neighbour".to_string())],
            value("io.drop_no_neighbour") as f64,
        ));
        family(
            &mut enc,
            "lvsd_drops",
            "Packets dropped, by reason.",
            MetricType::Counter,
            drops.into_iter(),
        )?;
        let sync_drops = s.counters.iter().filter_map(|c| {
            let r = c.name.strip_prefix("sync.drop_")?;
            Some((vec![("reason", r.to_string())], c.value as f64))
        });
        family(
            &mut enc,
            "lvsd_sync_receive_drops",
            "Received sync messages dropped or stopped part-way, by reason.",
            MetricType::Counter,
            sync_drops,
        )?;
        for c in &s.counters {
            let (area, rest) = match c.name.split_once('.') {
                Some((a @ ("engine" | "io" | "sync"), r)) => (a, r),
                _ => continue,
            };
            if area == "sync" && rest.starts_with("drop_") {
                continue;
            }
            if matches!(
                c.name.as_str(),
                "sync.queue_len" | "sync.last_message_age_ms"
            ) {
                let name = if rest == "queue_len" {
                    "lvsd_sync_queue_length".to_string()
                } else {
                    "lvsd_sync_last_message_age_seconds".to_string()
                };
                let v = if rest == "queue_len" {
                    c.value as f64
                } else {
                    c.value as f64 / 1000.0
                };
                gauge(
                    &mut enc,
                    &name,
                    &format!("lvsadm --counters: {}", c.name),
                    v,
                )?;
                continue;
            }
            if rest.starts_with("drop_")
                || matches!(
                    c.name.as_str(),
                    "engine.connections_created" | "engine.connections_expired"
                )
            {
                continue;
            }
            let name = format!("lvsd_{area}_{rest}");
            let help = format!("lvsadm --counters: {}", c.name);
            if LEVELS.contains(&c.name.as_str()) {
                if c.name.starts_with("io.") {
                    gauge(&mut enc, &name, &help, c.value as f64)?;
                }
            } else {
                counter(&mut enc, &name, &help, c.value)?;
            }
        }
        counter(
            &mut enc,
            "lvsd_control_requests",
            "Requests served on the control socket.",
            s.requests,
        )?;
        family(
            &mut enc,
            "lvsd_reloads",
            "Configuration reloads (SIGHUP or lvsadm --reload), by result.",
            MetricType::Counter,
            [
                ("applied", s.reloads_applied),
                ("refused", s.reloads_refused),
            ]
            .into_iter()
            .map(|(r, v)| (vec![("result", r.to_string())], v as f64)),
        )?;
        gauge(&mut enc, "lvsd_up", "1 while lvsd answers.", 1.0)?;
        gauge(
            &mut enc,
            "lvsd_start_time_seconds",
            "When lvsd started, in seconds since the epoch.",
            s.start_time,
        )?;
        Ok(())
    }
}

/// `TCP 198.18.0.10:80`, `TCP [2001:db8::10]:80`, `FWM 5`.
pub fn service_name(k: &ServiceKey) -> String {
    match k.mark() {
        Some(m) => format!("FWM {m}"),
        None => format!("{} {}", proto_name(k.protocol), endpoint(k.addr, k.port)),
    }
}

fn method_name(f: Forward) -> &'static str {
    match f {
        Forward::Masq => "Masq",
        Forward::Local => "Local",
        Forward::Tunnel => "Tunnel",
        Forward::Route => "Route",
    }
}

fn stats_json(s: Option<&StatsInfo>) -> serde_json::Value {
    let s = s.copied().unwrap_or_default();
    serde_json::json!({
        "conns": s.conns, "in_pkts": s.in_pkts, "out_pkts": s.out_pkts,
        "in_bytes": s.in_bytes, "out_bytes": s.out_bytes, "cps": s.cps,
        "in_pps": s.in_pps, "out_pps": s.out_pps, "in_bps": s.in_bps, "out_bps": s.out_bps,
    })
}

/// The status page's data (schema in the README, "Metrics and status page").
fn status_json(shared: &Shared) -> Result<serde_json::Value, String> {
    let c = &shared.client;
    let services = ask_services(c)?;
    let health = ask_health(c)?;
    let connections = match c.ask(Request::GetCounters) {
        Response::Counters(v) => v
            .iter()
            .find(|c| c.name == "engine.connections")
            .map(|c| c.value)
            .unwrap_or(0),
        other => return Err(unexpected(other)),
    };
    let history = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    Ok(status_value(&services, &health, connections, &history))
}

fn status_value(
    services: &[ServiceInfo],
    health: &[HealthInfo],
    connections: u64,
    history: &History,
) -> serde_json::Value {
    let by_server: HashMap<(ServiceKey, IpAddr, u16), &HealthInfo> = health
        .iter()
        .map(|h| ((h.service, h.addr, h.port), h))
        .collect();
    let services: Vec<serde_json::Value> = services
        .iter()
        .map(|svc| {
            let key = svc.spec.key;
            let mut servers: Vec<serde_json::Value> = svc
                .dests
                .iter()
                .map(|d| {
                    let h = by_server.get(&(key, d.addr, d.port));
                    let health = match h {
                        Some(h) if !h.check.is_empty() => if h.up { "up" } else { "down" },
                        _ => "unchecked",
                    };
                    serde_json::json!({
                        "name": h.map(|h| h.server.as_str()).unwrap_or(""),
                        "director": h.map(|h| h.director.as_str()).unwrap_or(""),
                        "endpoint": endpoint(d.addr, d.port),
                        "method": method_name(d.forward),
                        "weight": d.weight,
                        "active": d.active_conns,
                        "inactive": d.inact_conns,
                        "health": health,
                        "sorry": h.is_some_and(|h| h.sorry),
                        "check": h.map(|h| h.check.as_str()).unwrap_or(""),
                        "reason": h.map(|h| h.reason.as_str()).unwrap_or(""),
                        "stats": stats_json(d.stats.as_ref()),
                        "history": history_json(history, (key, d.addr, d.port)),
                    })
                })
                .collect();
            // Servers held out of the engine (down, or sorry while others
            // are up) are listed too, so that the page shows them red.
            for h in health.iter().filter(|h| h.service == key && !h.in_service) {
                servers.push(serde_json::json!({
                    "name": h.server, "director": h.director,
                    "endpoint": endpoint(h.addr, h.port), "method": "",
                    "weight": 0, "active": 0, "inactive": 0,
                    "health": if h.check.is_empty() { "unchecked" } else if h.up { "up" } else { "down" },
                    "sorry": h.sorry, "check": h.check, "reason": h.reason,
                    "stats": stats_json(None), "history": history_json(history, (key, h.addr, h.port)),
                }));
            }
            serde_json::json!({
                "key": service_name(&key),
                "protocol": proto_name(key.protocol),
                "address": if key.mark().is_some() { String::new() } else { key.addr.to_string() },
                "port": key.port,
                "mark": key.mark(),
                "scheduler": svc.spec.scheduler,
                "persistent": svc.spec.persistent,
                "stats": stats_json(svc.stats.as_ref()),
                "servers": servers,
            })
        })
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "interval_ms": SAMPLE_EVERY.as_millis() as u64,
        "connections": connections,
        "services": services,
    })
}

fn history_json(history: &History, k: (ServiceKey, IpAddr, u16)) -> serde_json::Value {
    let (cps, pps): (Vec<u64>, Vec<u64>) = history
        .servers
        .get(&k)
        .map(|q| q.iter().copied().unzip())
        .unwrap_or_default();
    serde_json::json!({"cps": cps, "pps": pps})
}

/// Samples every server's rates for the page's charts.
fn sample_loop(shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        next += SAMPLE_EVERY;
        let Ok(services) = ask_services(&shared.client) else {
            continue;
        };
        let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        record(&mut h, &services);
    }
}

fn record(h: &mut History, services: &[ServiceInfo]) {
    let mut seen = std::collections::HashSet::new();
    for svc in services {
        for d in &svc.dests {
            let key = (svc.spec.key, d.addr, d.port);
            if seen.len() >= HISTORY_SERVERS {
                break;
            }
            seen.insert(key);
            let s = d.stats.unwrap_or_default();
            let q = h.servers.entry(key).or_default();
            if q.len() == HISTORY {
                q.pop_front();
            }
            q.push_back((s.cps, s.in_pps + s.out_pps));
        }
    }
    // A server no longer listed (down, or removed) keeps its history, read
    // as zeros from now on, until it has nothing but zeros left.
    h.servers.retain(|k, q| {
        if seen.contains(k) {
            return true;
        }
        if q.len() == HISTORY {
            q.pop_front();
        }
        q.push_back((0, 0));
        q.iter().any(|&s| s != (0, 0))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_control::ServiceSpec;
    use proptest::prelude::*;

    #[test]
    fn requests_are_routed() {
        let r = |t: &str| route(t.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok((Page::Metrics, false))
        );
        assert_eq!(r("HEAD /?x=1 HTTP/1.0\r\n\r\n"), Ok((Page::Status, true)));
        assert_eq!(
            r("GET /status.json HTTP/1.1\r\n\r\n"),
            Ok((Page::StatusJson, false))
        );
        assert_eq!(
            r("GET /etc/passwd HTTP/1.1\r\n\r\n"),
            Ok((Page::NotFound, false))
        );
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n").unwrap_err().0, 405);
        assert_eq!(r("GET /metrics\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(r("\0\0\r\n\r\n").unwrap_err().0, 400);
    }

    proptest! {
        #[test]
        fn any_request_head_is_answered_without_panicking(head in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = route(&head);
        }
    }

    fn key(p: Protocol, a: &str, port: u16) -> ServiceKey {
        ServiceKey {
            protocol: p,
            addr: a.parse().unwrap(),
            port,
        }
    }

    fn dest(a: &str, port: u16, weight: i32) -> DestInfo {
        DestInfo {
            addr: a.parse().unwrap(),
            port,
            forward: Forward::Masq,
            weight,
            active_conns: 3,
            inact_conns: 1,
            persist_conns: 0,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Default::default(),
            stats: Some(StatsInfo {
                conns: 7,
                in_pkts: 70,
                cps: 2,
                in_pps: 60,
                out_pps: 10,
                ..Default::default()
            }),
        }
    }

    fn service(k: ServiceKey, dests: Vec<DestInfo>) -> ServiceInfo {
        ServiceInfo {
            spec: ServiceSpec {
                key: k,
                scheduler: "wlc".into(),
                sched_flags: 0,
                persistent: None,
                netmask: 0,
                one_packet: false,
            },
            dests,
            stats: Some(StatsInfo {
                conns: 14,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn families_and_labels_as_node_exporter_names_them() {
        let snap = Snapshot {
            services: vec![
                service(
                    key(Protocol::Tcp, "198.18.0.100", 80),
                    vec![dest("198.18.1.11", 8080, 2), dest("198.18.1.12", 8080, 0)],
                ),
                service(
                    key(Protocol::Udp, "2001:db8::10", 53),
                    vec![dest("2001:db8:1::11", 53, 1)],
                ),
                service(
                    ServiceKey::fwmark(42, false),
                    vec![dest("198.18.1.13", 0, 1)],
                ),
            ],
            counters: vec![
                Counter {
                    name: "drop.no_route".into(),
                    value: 2,
                },
                Counter {
                    name: "io.drop_no_route".into(),
                    value: 3,
                },
                Counter {
                    name: "io.rx_csum_partial".into(),
                    value: 9,
                },
                Counter {
                    name: "io.neighbours".into(),
                    value: 4,
                },
                Counter {
                    name: "engine.connections".into(),
                    value: 5,
                },
            ],
            totals: StatsInfo {
                conns: 21,
                in_bytes: 3_000_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let text = render(snap).unwrap();
        for line in [
            "# TYPE node_ipvs_connections counter",
            "node_ipvs_connections_total 21",
            "node_ipvs_incoming_bytes_total 3000000",
            "node_ipvs_backend_weight{local_address=\"198.18.0.100\",local_port=\"80\",remote_address=\"198.18.1.11\",remote_port=\"8080\",proto=\"TCP\",local_mark=\"\"} 2.0",
            "node_ipvs_backend_connections_active{local_address=\"2001:db8::10\",local_port=\"53\",remote_address=\"2001:db8:1::11\",remote_port=\"53\",proto=\"UDP\",local_mark=\"\"} 3.0",
            "node_ipvs_backend_connections_inactive{local_address=\"\",local_port=\"0\",remote_address=\"198.18.1.13\",remote_port=\"0\",proto=\"FWM\",local_mark=\"0000002A\"} 1.0",
            "lvsd_service_available_backends{local_address=\"198.18.0.100\",local_port=\"80\",local_mark=\"\",proto=\"TCP\"} 1.0",
            "lvsd_backend_connections_total{local_address=\"198.18.0.100\",local_port=\"80\",remote_address=\"198.18.1.12\",remote_port=\"8080\",proto=\"TCP\",local_mark=\"\"} 7.0",
            "lvsd_drops_total{reason=\"no_route\"} 5.0",
            "lvsd_drops_total{reason=\"no_neighbour\"} 0.0",
            "lvsd_io_rx_csum_partial_total 9",
            "lvsd_io_neighbours 4.0",
            "lvsd_connections 5.0",
            "lvsd_reloads_total{result=\"refused\"} 0.0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        // A counter is never exported twice, nor a drop as a plain io counter.
        assert!(!text.contains("lvsd_io_drop_no_route"), "{text}");
        assert!(!text.contains("lvsd_engine_connections "), "{text}");
    }

    #[test]
    fn history_keeps_five_minutes_of_listed_servers() {
        let k = key(Protocol::Tcp, "198.18.0.100", 80);
        let mut h = History::default();
        for _ in 0..HISTORY + 10 {
            record(
                &mut h,
                &[service(
                    k,
                    vec![dest("198.18.1.11", 80, 1), dest("198.18.1.12", 80, 1)],
                )],
            );
        }
        let q = &h.servers[&(k, "198.18.1.11".parse().unwrap(), 80)];
        assert_eq!(q.len(), HISTORY);
        assert_eq!(q.back(), Some(&(2, 70)));
        let gone = (k, "198.18.1.11".parse().unwrap(), 80);
        record(&mut h, &[service(k, vec![dest("198.18.1.12", 80, 1)])]);
        assert_eq!(
            h.servers[&gone].back(),
            Some(&(0, 0)),
            "an unlisted server reads zeros"
        );
        for _ in 0..HISTORY {
            record(&mut h, &[service(k, vec![dest("198.18.1.12", 80, 1)])]);
        }
        assert_eq!(
            h.servers.len(),
            1,
            "a server with only zeros left is forgotten"
        );
    }
}
