//! The [`Lab`]: a set of network namespaces wired into the NAT topology,
//! plus the processes and threads started in them.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::identity::{IdentityServer, Shared};
use crate::netns::{
    in_netns, ip, list_netns, lock, netns_exists, open_netns, output_with_timeout, panic_message,
    remove_netns, send_signal, validate_ns_name,
};
use crate::{
    director_port_if, server_ip, LabError, CLIENT_IF, CLIENT_IP, DIRECTOR_BACK_IF,
    DIRECTOR_BACK_IP, DIRECTOR_BACK_MAC, DIRECTOR_FRONT_IF, DIRECTOR_FRONT_IP, MAX_SERVERS,
    NET_PREFIX_LEN, SERVER_IF,
};

/// Namespaces owned by live `Lab` values of this process (guards against
/// two labs with the same prefix, and lets [`Lab::cleanup_stale`] skip them).
#[path = "ha.rs"]
mod ha;
pub use ha::{ha_server_ip, HA_PEER_IP};

static ACTIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Longest accepted namespace prefix.
const MAX_PREFIX: usize = 8;
/// How long spawned processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long [`Lab::nat`] waits for links to come up.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// A running network-namespace lab (see the crate docs for the topology).
///
/// Dropping it — normally or while unwinding from a panic — stops the
/// identity servers it started, terminates the processes it spawned
/// (SIGTERM, then SIGKILL), kills anything else left in its namespaces
/// (`ip netns pids`), and deletes the namespaces (`ip netns del`). Failures
/// are reported on stderr; drop never panics. Use [`Lab::close`] to get
/// them as an error instead.
pub struct Lab {
    prefix: String,
    client: String,
    director: String,
    servers: Vec<String>,
    /// A second director's namespace, linked to the director ([`Lab::add_peer`]).
    peer: Option<String>,
    children: Mutex<Vec<Child>>,
    identity: Mutex<Vec<Arc<Shared>>>,
    closed: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("client", &self.client)
            .field("director", &self.director)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

fn check_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(LabError::NotRoot(euid))
    }
}

fn validate_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX
        && prefix.as_bytes()[0].is_ascii_alphabetic()
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidArgument(format!(
            "namespace prefix {prefix:?} must be 1..={MAX_PREFIX} ASCII letters/digits starting with a letter"
        )))
    }
}

/// Parses `<prefix><digits>-<rest>` and returns the digits as a pid.
fn parse_owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits_len == 0 || rest.as_bytes().get(digits_len) != Some(&b'-') {
        return None;
    }
    rest[..digits_len].parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: `pid (comm) state ...`; comm may contain spaces/parens.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

fn cidr(ip: std::net::Ipv4Addr) -> String {
    format!("{ip}/{NET_PREFIX_LEN}")
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sysctl_path(key: &str) -> Result<String, LabError> {
    let ok = !key.is_empty()
        && !key.contains("..")
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !ok {
        return Err(LabError::InvalidArgument(format!("bad sysctl key {key:?}")));
    }
    Ok(format!("/proc/sys/{}", key.replace('.', "/")))
}

impl Lab {
    /// Builds the NAT topology with `servers` real servers (1..=9).
    ///
    /// Namespaces are named `<prefix><pid>-c` (client), `<prefix><pid>-d`
    /// (director) and `<prefix><pid>-s<i>` (real server i). `prefix` must be
    /// 1..=8 ASCII letters/digits starting with a letter. A leftover
    /// namespace with exactly one of these names (from a crashed run that
    /// had the same pid) is removed first. On any error everything created
    /// so far is removed again.
    pub fn nat(prefix: &str, servers: usize) -> Result<Lab, LabError> {
        validate_prefix(prefix)?;
        if !(1..=MAX_SERVERS).contains(&servers) {
            return Err(LabError::InvalidArgument(format!(
                "servers must be in 1..={MAX_SERVERS}, got {servers}"
            )));
        }
        check_root()?;

        let pid = std::process::id();
        let client = format!("{prefix}{pid}-c");
        let director = format!("{prefix}{pid}-d");
        let server_names: Vec<String> = (1..=servers)
            .map(|i| format!("{prefix}{pid}-s{i}"))
            .collect();

        {
            let mut active = lock(&ACTIVE);
            let all = std::iter::once(&client)
                .chain(std::iter::once(&director))
                .chain(server_names.iter());
            let mine: Vec<&String> = all.collect();
            if let Some(busy) = mine.iter().find(|n| active.contains(n.as_str())) {
                return Err(LabError::InvalidArgument(format!(
                    "namespace {busy} is already used by another Lab in this process \
                     (use a distinct prefix)"
                )));
            }
            for n in mine {
                active.insert(n.clone());
            }
        }

        // From here on `lab` owns the names: an early `?` return drops it,
        // which removes whatever was created and unregisters the names.
        let lab = Lab {
            prefix: prefix.to_string(),
            client,
            director,
            servers: server_names,
            peer: None,
            children: Mutex::new(Vec::new()),
            identity: Mutex::new(Vec::new()),
            closed: false,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        let (c, d) = (self.client.as_str(), self.director.as_str());

        for ns in self.namespaces() {
            if netns_exists(&ns) {
                eprintln!("lvs-lab: removing stale namespace {ns}");
                remove_netns(&ns)?;
            }
            ip(&["netns", "add", &ns])?;
        }

        // Sysctls first, so interfaces created afterwards inherit the
        // `default` values (rp_filter 0, IPv6 disabled).
        for ns in self.namespaces() {
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let settings: Vec<(&str, &str, bool)> = vec![
                ("net.ipv6.conf.default.disable_ipv6", "1", true),
                ("net.ipv6.conf.all.disable_ipv6", "1", true),
                ("net.ipv4.conf.default.rp_filter", "0", false),
                ("net.ipv4.conf.all.rp_filter", "0", false),
                // The director must never forward in the kernel; nobody else needs to.
                ("net.ipv4.ip_forward", "0", false),
            ];
            for (key, value, optional) in settings {
                match self.set_sysctl(&ns, key, value) {
                    Ok(()) => {}
                    // IPv6 may be absent (ipv6.disable=1): then it is quiet anyway.
                    Err(LabError::Io { source, .. })
                        if optional && source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }

        // Front link: client c0 <-> director d0, created inside the namespaces.
        ip(&[
            "link",
            "add",
            CLIENT_IF,
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            DIRECTOR_FRONT_IF,
            "netns",
            d,
        ])?;
        // Back bridge with a pinned MAC (otherwise it follows its ports).
        ip(&["-n", d, "link", "add", DIRECTOR_BACK_IF, "type", "bridge"])?;
        ip(&[
            "-n",
            d,
            "link",
            "set",
            "dev",
            DIRECTOR_BACK_IF,
            "address",
            &mac_string(DIRECTOR_BACK_MAC),
        ])?;
        for (i, s) in self.servers.iter().enumerate().map(|(k, s)| (k + 1, s)) {
            let port = director_port_if(i);
            ip(&[
                "link", "add", &port, "netns", d, "type", "veth", "peer", "name", SERVER_IF,
                "netns", s,
            ])?;
            ip(&[
                "-n",
                d,
                "link",
                "set",
                "dev",
                &port,
                "master",
                DIRECTOR_BACK_IF,
            ])?;
        }

        // Addresses.
        ip(&["-n", c, "addr", "add", &cidr(CLIENT_IP), "dev", CLIENT_IF])?;
        ip(&[
            "-n",
            d,
            "addr",
            "add",
            &cidr(DIRECTOR_FRONT_IP),
            "dev",
            DIRECTOR_FRONT_IF,
        ])?;
        ip(&[
            "-n",
            d,
            "addr",
            "add",
            &cidr(DIRECTOR_BACK_IP),
            "dev",
            DIRECTOR_BACK_IF,
        ])?;
        for (i, s) in self.servers.iter().enumerate().map(|(k, s)| (k + 1, s)) {
            ip(&[
                "-n",
                s,
                "addr",
                "add",
                &cidr(server_ip(i)),
                "dev",
                SERVER_IF,
            ])?;
        }

        // Links up (bridge ports first, then the bridge), then the routes.
        ip(&["-n", c, "link", "set", "dev", CLIENT_IF, "up"])?;
        ip(&["-n", d, "link", "set", "dev", DIRECTOR_FRONT_IF, "up"])?;
        for (i, s) in self.servers.iter().enumerate().map(|(k, s)| (k + 1, s)) {
            ip(&["-n", d, "link", "set", "dev", &director_port_if(i), "up"])?;
            ip(&["-n", s, "link", "set", "dev", SERVER_IF, "up"])?;
        }
        ip(&["-n", d, "link", "set", "dev", DIRECTOR_BACK_IF, "up"])?;
        let front_net = format!("{}/{NET_PREFIX_LEN}", crate::FRONT_NET);
        for s in &self.servers {
            ip(&[
                "-n",
                s,
                "route",
                "add",
                &front_net,
                "via",
                &DIRECTOR_BACK_IP.to_string(),
                "dev",
                SERVER_IF,
            ])?;
        }

        // Wait (bounded) until every link has carrier.
        let mut links: Vec<(String, String)> = vec![
            (self.client.clone(), CLIENT_IF.to_string()),
            (self.director.clone(), DIRECTOR_FRONT_IF.to_string()),
            (self.director.clone(), DIRECTOR_BACK_IF.to_string()),
        ];
        for (i, s) in self.servers.iter().enumerate().map(|(k, s)| (k + 1, s)) {
            links.push((self.director.clone(), director_port_if(i)));
            links.push((s.clone(), SERVER_IF.to_string()));
        }
        let deadline = Instant::now() + LINK_TIMEOUT;
        for (ns, dev) in links {
            loop {
                let out = ip(&["-n", &ns, "-o", "link", "show", "dev", &dev])?;
                if out.contains("LOWER_UP") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LabError::Timeout(format!(
                        "{ns}: link {dev} has no carrier after {LINK_TIMEOUT:?}: {}",
                        out.trim()
                    )));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The prefix this lab was created with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of the client namespace.
    pub fn client_ns(&self) -> &str {
        &self.client
    }

    /// Name of the director namespace (where `lvsd` runs).
    pub fn director_ns(&self) -> &str {
        &self.director
    }

    /// Name of real server `i`'s namespace (1-based).
    ///
    /// # Panics
    /// Panics if `i` is not in `1..=self.server_count()`.
    pub fn server_ns(&self, i: usize) -> &str {
        assert!(
            (1..=self.servers.len()).contains(&i),
            "server index {i} out of range 1..={}",
            self.servers.len()
        );
        &self.servers[i - 1]
    }

    /// Number of real servers.
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// All namespace names of this lab: client, director, servers.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.client.clone(), self.director.clone()];
        v.extend(self.servers.iter().cloned());
        v.extend(self.peer.iter().cloned());
        v
    }

    /// Adds a peer namespace `<prefix><pid>-p` (a second director, e.g. a
    /// sync backup) linked to the director by a veth pair named
    /// [`PEER_IF`](crate::PEER_IF) on both sides, addresses
    /// [`DIRECTOR_PEER_IP`](crate::DIRECTOR_PEER_IP) and
    /// [`PEER_IP`](crate::PEER_IP). Removed with the lab.
    pub fn add_peer(&mut self) -> Result<&str, LabError> {
        if self.peer.is_none() {
            let ns = format!("{}{}-p", self.prefix, std::process::id());
            if !lock(&ACTIVE).insert(ns.clone()) {
                return Err(LabError::InvalidArgument(format!(
                    "namespace {ns} is in use"
                )));
            }
            self.peer = Some(ns.clone());
            if netns_exists(&ns) {
                remove_netns(&ns)?;
            }
            ip(&["netns", "add", &ns])?;
            let d = self.director.as_str();
            let pif = crate::PEER_IF;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", d, "link", "add", pif, "type", "veth", "peer", "name", "p-tmp",
            ])?;
            ip(&["-n", d, "link", "set", "p-tmp", "netns", &ns])?;
            ip(&["-n", &ns, "link", "set", "p-tmp", "name", pif])?;
            let dip = format!("{}/{NET_PREFIX_LEN}", crate::DIRECTOR_PEER_IP);
            let pip = format!("{}/{NET_PREFIX_LEN}", crate::PEER_IP);
            ip(&["-n", d, "addr", "add", &dip, "dev", pif])?;
            ip(&["-n", &ns, "addr", "add", &pip, "dev", pif])?;
            ip(&["-n", d, "link", "set", pif, "up"])?;
            ip(&["-n", &ns, "link", "set", pif, "up"])?;
        }
        Ok(self.peer.as_deref().unwrap_or_default())
    }

    /// The peer namespace, if [`Lab::add_peer`] made one.
    pub fn peer_ns(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    fn check_ns(&self, ns: &str) -> Result<(), LabError> {
        if ns == self.client
            || ns == self.director
            || self.servers.iter().any(|s| s == ns)
            || self.peer.as_deref() == Some(ns)
        {
            Ok(())
        } else {
            Err(LabError::InvalidArgument(format!(
                "{ns:?} is not a namespace of this lab ({:?})",
                self.namespaces()
            )))
        }
    }

    /// `ip netns exec NS program` as a [`Command`]; add arguments and run it
    /// yourself, or hand it to [`Lab::spawn`] so it is stopped on drop.
    ///
    /// # Panics
    /// Panics if `ns` is not one of this lab's namespaces (keeps traffic
    /// inside the lab).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        if let Err(e) = self.check_ns(ns) {
            panic!("Lab::command: {e}");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// Runs `program args...` in `ns` to completion (killed after
    /// `timeout`) and returns its output, whatever its exit status.
    pub fn exec(
        &self,
        ns: &str,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        self.check_ns(ns)?;
        let mut cmd = self.command(ns, program);
        cmd.args(args);
        output_with_timeout(cmd, timeout)
    }

    /// Spawns `cmd` inside `ns` and tracks it: it is terminated (SIGTERM,
    /// then SIGKILL after 3 s) and reaped when the lab is dropped.
    ///
    /// `cmd` may be built with [`Lab::command`] for the same namespace, or
    /// be any plain command: the child enters `ns` with `setns` before
    /// `exec`. Returns the child's pid.
    pub fn spawn(&self, ns: &str, mut cmd: Command) -> Result<u32, LabError> {
        self.check_ns(ns)?;
        if cmd.get_program() == "ip" {
            let args: Vec<_> = cmd.get_args().take(3).collect();
            if args.len() == 3 && args[0] == "netns" && args[1] == "exec" && args[2] != ns {
                return Err(LabError::InvalidArgument(format!(
                    "command runs in namespace {:?} but was spawned for {ns:?}",
                    args[2]
                )));
            }
        }
        let target = open_netns(ns)?;
        let fd = target.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec and only
        // calls setns(2), which is async-signal-safe and allocates nothing.
        // `fd` stays open until after `spawn` returns (`target` is dropped
        // below); it is O_CLOEXEC, so the exec'ed program does not inherit it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("spawning {:?} in {ns}", cmd.get_program()), e))?;
        drop(target);
        let pid = child.id();
        lock(&self.children).push(child);
        Ok(pid)
    }

    /// Non-blocking check of a process started with [`Lab::spawn`]:
    /// `Some(status)` once it has exited.
    pub fn try_wait(&self, pid: u32) -> Result<Option<ExitStatus>, LabError> {
        let mut children = lock(&self.children);
        let child = children
            .iter_mut()
            .find(|c| c.id() == pid)
            .ok_or_else(|| LabError::InvalidArgument(format!("pid {pid} is not tracked")))?;
        child
            .try_wait()
            .map_err(|e| LabError::io(format!("waiting for {pid}"), e))
    }

    /// Stops a process started with [`Lab::spawn`] now (SIGTERM, SIGKILL
    /// after 3 s), reaps it and stops tracking it.
    pub fn stop(&self, pid: u32) -> Result<ExitStatus, LabError> {
        let child = {
            let mut children = lock(&self.children);
            let idx = children
                .iter()
                .position(|c| c.id() == pid)
                .ok_or_else(|| LabError::InvalidArgument(format!("pid {pid} is not tracked")))?;
            children.remove(idx)
        };
        let mut failed = terminate_children(vec![child]);
        match failed.pop() {
            Some((_, Ok(status))) => Ok(status),
            Some((_, Err(e))) => Err(e),
            None => Err(LabError::Timeout(format!("stopping {pid}"))),
        }
    }

    /// Runs `f` on a new thread that has entered namespace `ns`, and joins
    /// it (the wait is as long as `f` runs). Sockets `f` creates live in
    /// `ns`. A panic in `f` is returned as [`LabError::Panicked`].
    pub fn run_in<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LabError> {
        self.check_ns(ns)?;
        let ns_owned = ns.to_string();
        let handle = thread::Builder::new()
            .name("lvs-lab-run-in".to_string())
            .spawn(move || in_netns(&ns_owned, f))
            .map_err(|e| LabError::io("spawning run_in thread", e))?;
        match handle.join() {
            Ok(r) => r,
            Err(p) => Err(LabError::Panicked(panic_message(&*p))),
        }
    }

    /// Sets sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) to `value`
    /// inside `ns` (writes `/proc/sys/...` from a thread in `ns`).
    pub fn set_sysctl(&self, ns: &str, key: &str, value: &str) -> Result<(), LabError> {
        let path = sysctl_path(key)?;
        let value = value.to_string();
        let ctx = format!("{ns}: writing {path}");
        self.run_in(ns, move || std::fs::write(&path, value.as_bytes()))?
            .map_err(|e| LabError::io(ctx, e))
    }

    /// Reads sysctl `key` inside `ns` (trimmed).
    pub fn sysctl(&self, ns: &str, key: &str) -> Result<String, LabError> {
        let path = sysctl_path(key)?;
        let ctx = format!("{ns}: reading {path}");
        self.run_in(ns, move || std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_string())
            .map_err(|e| LabError::io(ctx, e))
    }

    /// Starts one identity server per real server (server i answers
    /// `rsI\n` on TCP/HTTP `tcp_port` and UDP `udp_port`, bound to
    /// `::` inside its namespace: both families). Returns once all are bound. The
    /// servers stop when the returned values or the lab are dropped.
    pub fn start_identity_servers(
        &self,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<Vec<IdentityServer>, LabError> {
        (1..=self.servers.len())
            .map(|i| self.start_identity_server(i, tcp_port, udp_port))
            .collect()
    }

    /// Starts the identity server of real server `i` (1-based) only.
    pub fn start_identity_server(
        &self,
        i: usize,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<IdentityServer, LabError> {
        if !(1..=self.servers.len()).contains(&i) {
            return Err(LabError::InvalidArgument(format!(
                "server index {i} out of range 1..={}",
                self.servers.len()
            )));
        }
        let server =
            IdentityServer::start(&self.servers[i - 1], i, server_ip(i), tcp_port, udp_port)?;
        lock(&self.identity).push(server.shared());
        Ok(server)
    }

    /// Tears the lab down now and reports failures (drop does the same but
    /// only logs them).
    pub fn close(mut self) -> Result<(), LabError> {
        let errors = self.teardown();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup(errors.join("; ")))
        }
    }

    fn teardown(&mut self) -> Vec<String> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        let mut errors = Vec::new();
        // 1. Threads we started in the namespaces.
        for shared in std::mem::take(&mut *lock(&self.identity)) {
            shared.shutdown();
        }
        // 2. Processes we spawned.
        let children = std::mem::take(&mut *lock(&self.children));
        for (pid, res) in terminate_children(children) {
            if let Err(e) = res {
                errors.push(format!("process {pid}: {e}"));
            }
        }
        // 3. Everything else in the namespaces, then the namespaces
        // (servers first, the director with the bridge, the client last).
        let names = self.namespaces();
        for ns in names.iter().rev() {
            if let Err(e) = remove_netns(ns) {
                errors.push(format!("{ns}: {e}"));
            }
        }
        let mut active = lock(&ACTIVE);
        for ns in &names {
            active.remove(ns);
        }
        errors
    }

    /// Removes leftover namespaces named `<prefix><pid>-...` whose owning
    /// process `pid` no longer runs (e.g. after a crashed run): kills their
    /// processes and deletes them. Namespaces of live processes — including
    /// this process's live labs — are left alone. Returns the removed names.
    pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, LabError> {
        validate_prefix(prefix)?;
        check_root()?;
        let me = std::process::id();
        let mut removed = Vec::new();
        for name in list_netns()? {
            let Some(owner) = parse_owner_pid(&name, prefix) else {
                continue;
            };
            if validate_ns_name(&name).is_err() {
                continue;
            }
            let stale = if owner == me {
                !lock(&ACTIVE).contains(&name)
            } else {
                !pid_alive(owner)
            };
            if stale {
                remove_netns(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("lvs-lab: cleanup: {e}");
        }
    }
}

/// SIGTERM all, wait (bounded) for them, SIGKILL the rest, reap (bounded).
fn terminate_children(mut children: Vec<Child>) -> Vec<(u32, Result<ExitStatus, LabError>)> {
    let mut results = Vec::new();
    for c in &children {
        send_signal(c.id() as i32, libc::SIGTERM);
    }
    for (sig, grace) in [
        (None, TERM_GRACE),
        (Some(libc::SIGKILL), Duration::from_secs(2)),
    ] {
        if let Some(sig) = sig {
            for c in &children {
                send_signal(c.id() as i32, sig);
            }
        }
        let deadline = Instant::now() + grace;
        loop {
            let mut still = Vec::new();
            for mut c in children {
                match c.try_wait() {
                    Ok(Some(status)) => results.push((c.id(), Ok(status))),
                    Ok(None) => still.push(c),
                    Err(e) => results.push((c.id(), Err(LabError::io("waitpid", e)))),
                }
            }
            children = still;
            if children.is_empty() || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    for c in children {
        results.push((
            c.id(),
            Err(LabError::Timeout(format!(
                "process {} did not exit after SIGKILL",
                c.id()
            ))),
        ));
    }
    results
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn owner_pid_parsing() {
        assert_eq!(parse_owner_pid("lvt1234-c", "lvt"), Some(1234));
        assert_eq!(parse_owner_pid("lvt1234-s9", "lvt"), Some(1234));
        assert_eq!(parse_owner_pid("lvt1234", "lvt"), None);
        assert_eq!(parse_owner_pid("lvtx1234-c", "lvt"), None);
        assert_eq!(parse_owner_pid("other1-c", "lvt"), None);
        assert!(pid_alive(std::process::id()));
    }

    #[test]
    fn argument_validation() {
        assert!(validate_prefix("lvlt").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("toolongprefix").is_err());
        assert!(validate_prefix("a/b").is_err());
        assert!(validate_prefix("1abc").is_err());
        assert!(matches!(
            Lab::nat("lvlx", 0),
            Err(LabError::InvalidArgument(_))
        ));
        assert!(matches!(
            Lab::nat("lvlx", 10),
            Err(LabError::InvalidArgument(_))
        ));
        assert!(sysctl_path("net.ipv4.ip_forward").unwrap() == "/proc/sys/net/ipv4/ip_forward");
        assert!(sysctl_path("net/../x").is_err());
        assert!(sysctl_path("net..x").is_err());
    }
}
