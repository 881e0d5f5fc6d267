//! Live reload: the configuration file is one input of the desired state,
//! and a new version of it is applied as the difference from the version
//! loaded last.
//!
//! The rule for changes made with lvsadm since the last load: a reload
//! applies what changed *in the file* (services, real servers, sysctls,
//! timeouts added, removed or edited between the two versions) and leaves
//! everything else as it is. So an lvsadm change survives a reload unless
//! the file changes the same service, real server or setting (then the
//! file wins for that object); a service added with lvsadm stays; a server
//! drained with `lvsadm -e … -w 0` stays drained. Unchanged services are
//! not touched at all: they keep their connections, counters and scheduler
//! state. A removed real server is deleted as `ipvsadm -d` does (its
//! connections follow the kernel's rules); a removed service as `-D`.
//!
//! Reading, parsing and checking the new file happen off the packet thread
//! (`setup::file_state`, which builds it on a scratch engine: a file the
//! engine would refuse is refused whole before anything changes); only the
//! difference is applied by the packet loop, between batches.

use crate::daemon::endpoint;
use crate::desired::{Desired, Server};
use lvs_core::{Engine, ServiceKey, ServiceOptions};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

/// What a configuration file asks for, checked and ready to apply.
#[derive(Debug, Clone)]
pub struct FileState<C> {
    /// The services in file order.
    pub services: Vec<FileService<C>>,
    /// Every sysctl's value after the file (defaults for those it does not
    /// set), as the engine prints them.
    pub sysctls: Vec<(String, String)>,
    /// `(tcp, tcpfin, udp)` after the file.
    pub timeouts: Option<(u32, u32, u32)>,
    /// The `interface` lines (applied only at start).
    pub interfaces: Vec<String>,
    /// The `control` line: socket path and group (name, gid), applied
    /// only at start.
    pub control_socket: Option<std::path::PathBuf>,
    pub control_group: Option<(String, u32)>,
    /// The `metrics` line (applied only at start).
    pub metrics: Option<std::net::SocketAddr>,
    /// The `sync` lines (started with lvsd).
    pub sync: Vec<lvs_control::DaemonConfig>,
    /// `sync vrrp NAME …`: the VRRP instance whose role the daemon follows,
    /// and its settings.
    pub sync_follow: Option<(String, lvs_control::DaemonConfig)>,
    /// The `vrrp` lines: name, interface, settings (applied at start).
    pub vrrp: Vec<(String, String, crate::vrrp::Config)>,
    /// Legal but suspicious settings, rendered (`file:line:col: warning: …`).
    pub warnings: Vec<String>,
    /// The `flow` lines, with their directors' marks.
    pub flows: Vec<lvs_core::Flow>,
}

impl<C> Default for FileState<C> {
    fn default() -> Self {
        FileState {
            services: Vec::new(),
            sysctls: Vec::new(),
            timeouts: None,
            interfaces: Vec::new(),
            control_socket: None,
            control_group: None,
            metrics: None,
            sync: Vec::new(),
            sync_follow: None,
            vrrp: Vec::new(),
            warnings: Vec::new(),
            flows: Vec::new(),
        }
    }
}

/// One director of the file: a service and its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileService<C> {
    pub key: ServiceKey,
    pub scheduler: String,
    pub sched_flags: u32,
    pub opts: ServiceOptions,
    /// In file order.
    pub servers: Vec<Server<C>>,
}

impl<C> FileService<C> {
    fn same_settings(&self, o: &FileService<C>) -> bool {
        self.scheduler == o.scheduler && self.sched_flags == o.sched_flags && self.opts == o.opts
    }
}

/// What a reload changed, in words, for the log and the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub changes: Vec<String>,
    /// What could not be applied.
    pub warnings: Vec<String>,
    /// The file's own warnings (legal but suspicious settings).
    pub notes: Vec<String>,
}

fn svc_name(k: &ServiceKey) -> String {
    if let Some(mark) = k.mark() {
        return format!("FWM {mark}");
    }
    let proto = match k.protocol {
        6 => "TCP",
        17 => "UDP",
        132 => "SCTP",
        _ => "?",
    };
    format!("{proto} {}", endpoint(k.addr, k.port))
}

/// A reload worked out ahead, off the packet thread: the new file and
/// what differs from the version it was compared with (`plan`). Services
/// equal in both versions are not in it: the packet loop never looks at
/// them.
pub struct Plan<C> {
    pub file: Arc<FileState<C>>,
    /// The version compared with.
    old: Arc<FileState<C>>,
    /// Services of the old version that the new one drops.
    removed: Vec<ServiceKey>,
    /// Services new or changed in the new version.
    changed: Vec<ServiceDiff>,
}

/// How one service of the new version differs.
struct ServiceDiff {
    /// Index in the new version's services.
    new: usize,
    /// Index in the old version's, if it was there.
    old: Option<usize>,
    /// Scheduler, flags or persistence changed.
    settings: bool,
    /// Real servers the old version had and the new one does not.
    gone: Vec<(IpAddr, u16)>,
    /// Indexes (in the new version) of the real servers added or changed.
    put: Vec<usize>,
}

/// Compares `new` with `old` (the version applied last).
pub fn plan<C: Clone + Eq + Hash>(old: Arc<FileState<C>>, new: FileState<C>) -> Plan<C> {
    let new_keys: HashMap<ServiceKey, ()> = new.services.iter().map(|s| (s.key, ())).collect();
    let removed = old
        .services
        .iter()
        .map(|o| o.key)
        .filter(|k| !new_keys.contains_key(k))
        .collect();
    let old_by_key: HashMap<ServiceKey, usize> = old
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key, i))
        .collect();
    let mut changed = Vec::new();
    for (i, n) in new.services.iter().enumerate() {
        let Some(&j) = old_by_key.get(&n.key) else {
            changed.push(ServiceDiff {
                new: i,
                old: None,
                settings: true,
                gone: Vec::new(),
                put: (0..n.servers.len()).collect(),
            });
            continue;
        };
        let o = &old.services[j];
        if o == n {
            continue;
        }
        let id = |s: &Server<C>| (s.cfg.addr, s.cfg.port);
        let wanted: HashMap<(IpAddr, u16), ()> = n.servers.iter().map(|s| (id(s), ())).collect();
        let had: HashMap<(IpAddr, u16), &Server<C>> =
            o.servers.iter().map(|s| (id(s), s)).collect();
        changed.push(ServiceDiff {
            new: i,
            old: Some(j),
            settings: !n.same_settings(o),
            gone: o
                .servers
                .iter()
                .map(id)
                .filter(|k| !wanted.contains_key(k))
                .collect(),
            put: n
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| had.get(&id(s)) != Some(s))
                .map(|(k, _)| k)
                .collect(),
        });
    }
    Plan {
        file: Arc::new(new),
        old,
        removed,
        changed,
    }
}

impl<C: Clone + Eq + Hash> Desired<C> {
    /// Applies `new` as the difference from the file loaded last (see the
    /// module's rule): `plan`, then `apply_plan`.
    pub fn apply_file(&mut self, engine: &mut Engine, new: FileState<C>) -> Report {
        let p = plan(self.file.clone(), new);
        self.apply_plan(engine, p)
    }

    /// Applies a plan and remembers its file. Engine refusals (possible
    /// only where lvsadm changed the same objects since) become warnings;
    /// the rest is still applied. A plan made against another version than
    /// the one applied last is made again here.
    pub fn apply_plan(&mut self, engine: &mut Engine, mut p: Plan<C>) -> Report {
        if !Arc::ptr_eq(&p.old, &self.file) {
            let file = Arc::try_unwrap(p.file).unwrap_or_else(|a| (*a).clone());
            p = plan(self.file.clone(), file);
        }
        let (old, new) = (p.old, p.file);
        let mut r = Report {
            notes: new.warnings.clone(),
            ..Report::default()
        };
        self.apply_settings(engine, &old, &new, &mut r);
        for &key in &p.removed {
            if self.has_service(key) {
                match engine.delete_service(key) {
                    Ok(()) => r
                        .changes
                        .push(format!("service {} removed", svc_name(&key))),
                    Err(e) => r
                        .warnings
                        .push(format!("service {}: not removed: {e}", svc_name(&key))),
                }
                self.delete_service(key);
            }
        }
        if old.flows != new.flows {
            engine.set_flows(new.flows.clone());
            r.changes.push(format!("flows: {} in use", new.flows.len()));
        }
        for d in &p.changed {
            let n = &new.services[d.new];
            match d.old {
                // A service new to the file, or changed in it while lvsadm
                // deleted it: the file's version, whole.
                None => self.put_service(engine, n, &mut r),
                Some(_) if !self.has_service(n.key) => self.put_service(engine, n, &mut r),
                Some(_) => self.update_service(engine, n, d, &mut r),
            }
        }
        let started = self.started;
        if started
            && (old.control_socket != new.control_socket || old.control_group != new.control_group)
        {
            r.warnings.push(
                "the `control` line changed: the control socket is set up at start only; restart lvsd to apply it"
                    .into(),
            );
        }
        if started && (old.vrrp != new.vrrp || old.sync_follow != new.sync_follow) {
            r.warnings.push(
                "the `vrrp` lines changed: VRRP instances start with lvsd; restart it to apply them"
                    .into(),
            );
        }
        if started && old.sync != new.sync {
            r.warnings.push(
                "the `sync` lines changed: sync daemons start with lvsd; restart it, or use lvsadm --stop-daemon/--start-daemon"
                    .into(),
            );
        }
        if started && old.metrics != new.metrics {
            r.warnings.push(
                "the `metrics` line changed: the metrics endpoint is set up at start only; restart lvsd to apply it"
                    .into(),
            );
        }
        if started && old.interfaces != new.interfaces {
            r.warnings.push(
                "the `interface` lines changed: lvsd attaches to interfaces at start only; restart it to apply them"
                    .into(),
            );
        }
        // Verdicts of checks nobody wants any more are forgotten (a check
        // that comes back starts afresh).
        let wanted: std::collections::HashSet<C> = self.checks().into_iter().collect();
        self.forget_verdicts(|c| wanted.contains(c));
        self.file = new;
        self.started = true;
        r
    }

    fn apply_settings(
        &mut self,
        engine: &mut Engine,
        old: &FileState<C>,
        new: &FileState<C>,
        r: &mut Report,
    ) {
        let before: HashMap<&str, &str> = old
            .sysctls
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for (name, value) in &new.sysctls {
            if before.get(name.as_str()) == Some(&value.as_str()) {
                continue;
            }
            if engine.sysctl(name).ok().as_deref() == Some(value.as_str()) {
                continue;
            }
            match engine.set_sysctl(name, value) {
                Ok(()) => r.changes.push(format!("sysctl {name} = {value}")),
                Err(e) => r
                    .warnings
                    .push(format!("sysctl {name} keeps its value: {e}")),
            }
        }
        if let Some(t) = new.timeouts {
            if old.timeouts != Some(t) && engine.timeouts() != t {
                match engine.set_timeouts(t.0, t.1, t.2) {
                    Ok(()) => r
                        .changes
                        .push(format!("timeouts tcp {} tcpfin {} udp {}", t.0, t.1, t.2)),
                    Err(e) => r.warnings.push(format!("timeouts not changed: {e}")),
                }
            }
        }
    }

    /// Makes `n` exist as the file says: added, or (added with lvsadm
    /// meanwhile) edited to the file's settings, with the file's servers.
    fn put_service(&mut self, engine: &mut Engine, n: &FileService<C>, r: &mut Report) {
        let res = if self.has_service(n.key) {
            engine.edit_service_with(n.key, &n.scheduler, n.sched_flags, n.opts)
        } else {
            engine.add_service_with(n.key, &n.scheduler, n.sched_flags, n.opts)
        };
        if let Err(e) = res {
            r.warnings
                .push(format!("service {}: not applied: {e}", svc_name(&n.key)));
            return;
        }
        self.add_service(n.key);
        r.changes
            .push(format!("service {} added", svc_name(&n.key)));
        for s in &n.servers {
            self.put_server(engine, n.key, s, r);
        }
    }

    /// A service in both versions of the file: its settings if they
    /// changed, then its servers' differences.
    fn update_service(
        &mut self,
        engine: &mut Engine,
        n: &FileService<C>,
        d: &ServiceDiff,
        r: &mut Report,
    ) {
        let name = svc_name(&n.key);
        if d.settings {
            match engine.edit_service_with(n.key, &n.scheduler, n.sched_flags, n.opts) {
                Ok(()) => r.changes.push(format!(
                    "service {name}: scheduler {} flags {:#x}, persistence {:?}",
                    n.scheduler, n.sched_flags, n.opts.persistent
                )),
                Err(e) => r.warnings.push(format!("service {name}: not edited: {e}")),
            }
        }
        for &(addr, port) in &d.gone {
            // Absent already (deleted with lvsadm): nothing to do.
            if self.delete_server(engine, n.key, addr, port).is_ok() {
                r.changes.push(format!(
                    "service {name}: server {} removed",
                    endpoint(addr, port)
                ));
            }
        }
        for &i in &d.put {
            self.put_server(engine, n.key, &n.servers[i], r);
        }
    }

    fn put_server(&mut self, engine: &mut Engine, key: ServiceKey, s: &Server<C>, r: &mut Report) {
        let what = format!(
            "service {}: server {}",
            svc_name(&key),
            endpoint(s.cfg.addr, s.cfg.port)
        );
        match self.replace_server(engine, key, s.clone()) {
            Ok(true) => r.changes.push(format!("{what} changed")),
            Ok(false) => r.changes.push(format!("{what} added")),
            Err(e) => r.warnings.push(format!("{what}: not applied: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> ServiceKey {
        ServiceKey {
            protocol: 6,
            addr: Ipv4Addr::new(198, 18, 0, 100).into(),
            port,
        }
    }

    /// A NAT server 198.18.1.LAST:80 of director `web` (the desired
    /// state's test server, neither sorry nor inhibited).
    fn server(last: u8, weight: i32, check: Option<&str>) -> Server<String> {
        crate::desired::tests::server(last, weight, check, false, false)
    }

    fn service(port: u16, sched: &str, servers: Vec<Server<String>>) -> FileService<String> {
        FileService {
            key: key(port),
            scheduler: sched.into(),
            sched_flags: 0,
            opts: ServiceOptions::default(),
            servers,
        }
    }

    fn file(services: Vec<FileService<String>>, sysctls: &[(&str, &str)]) -> FileState<String> {
        FileState {
            services,
            sysctls: sysctls
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..FileState::default()
        }
    }

    /// `(port, [(last octet, weight)])` of every engine service, sorted.
    fn table(e: &Engine) -> Vec<(u16, Vec<(u8, i32)>)> {
        let mut v: Vec<(u16, Vec<(u8, i32)>)> = e
            .services()
            .map(|(s, ds)| {
                let mut d: Vec<(u8, i32)> = ds
                    .iter()
                    .map(|d| match d.addr {
                        IpAddr::V4(a) => (a.octets()[3], d.weight),
                        IpAddr::V6(_) => (0, d.weight),
                    })
                    .collect();
                d.sort();
                (s.key.port, d)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_reload_applies_only_the_files_difference() {
        let mut e = Engine::new(1);
        let mut d: Desired<String> = Desired::default();
        let v1 = file(
            vec![
                service(80, "wrr", vec![server(11, 1, None), server(12, 1, None)]),
                service(81, "rr", vec![server(13, 1, None)]),
            ],
            &[],
        );
        let r = d.apply_file(&mut e, v1.clone());
        assert!(r.warnings.is_empty(), "{r:?}");
        assert_eq!(
            table(&e),
            vec![(80, vec![(11, 1), (12, 1)]), (81, vec![(13, 1)])]
        );
        // lvsadm: drain 12, add a service of its own.
        let mut drained = server(12, 0, None).cfg;
        drained.weight = 0;
        d.edit_server(&mut e, key(80), drained).unwrap();
        e.add_service(key(82), "rr", 0).unwrap();
        d.add_service(key(82));
        // v2: 81 removed, 80 gets server 14 and 11's weight changes.
        let v2 = file(
            vec![service(
                80,
                "wrr",
                vec![
                    server(11, 3, None),
                    server(12, 1, None),
                    server(14, 1, None),
                ],
            )],
            &[("sloppy_tcp", "1")],
        );
        let r = d.apply_file(&mut e, v2);
        assert!(r.warnings.is_empty(), "{r:?}");
        // 12 stays drained (unchanged in the file), 82 stays (lvsadm's).
        assert_eq!(
            table(&e),
            vec![(80, vec![(11, 3), (12, 0), (14, 1)]), (82, vec![])]
        );
        assert_eq!(e.sysctl("sloppy_tcp").unwrap(), "1");
        assert_eq!(r.changes.len(), 4, "{r:?}");
        // The same file again changes nothing.
        let v2b = (*d.file).clone();
        let r = d.apply_file(&mut e, v2b);
        assert_eq!(r, Report::default());
    }

    #[test]
    fn scheduler_changes_keep_the_service_and_unchanged_ones_keep_their_state() {
        let mut e = Engine::new(1);
        let mut d: Desired<String> = Desired::default();
        d.apply_file(
            &mut e,
            file(vec![service(80, "wrr", vec![server(11, 1, None)])], &[]),
        );
        let r = d.apply_file(
            &mut e,
            file(vec![service(80, "lc", vec![server(11, 1, None)])], &[]),
        );
        assert_eq!(r.changes.len(), 1, "{r:?}");
        let (s, ds) = e.service(&key(80)).unwrap();
        assert_eq!((s.scheduler.name(), ds.len()), ("lc", 1));
    }

    #[test]
    fn a_server_whose_check_changes_is_replaced_and_old_verdicts_are_forgotten() {
        let mut e = Engine::new(1);
        let mut d: Desired<String> = Desired::default();
        d.apply_file(
            &mut e,
            file(
                vec![service(80, "wrr", vec![server(11, 1, Some("a"))])],
                &[],
            ),
        );
        d.set_health(&mut e, &"a".to_string(), false);
        assert_eq!(table(&e), vec![(80, vec![])]);
        let r = d.apply_file(
            &mut e,
            file(
                vec![service(80, "wrr", vec![server(11, 1, Some("b"))])],
                &[],
            ),
        );
        assert!(r.warnings.is_empty(), "{r:?}");
        // A new check starts up, as at start.
        assert_eq!(table(&e), vec![(80, vec![(11, 1)])]);
        assert_eq!(d.checks(), vec!["b".to_string()]);
        // "a" back: its old verdict is not remembered.
        d.apply_file(
            &mut e,
            file(
                vec![service(80, "wrr", vec![server(11, 1, Some("a"))])],
                &[],
            ),
        );
        assert_eq!(table(&e), vec![(80, vec![(11, 1)])]);
    }

    #[test]
    fn a_plan_holds_only_what_differs_and_a_stale_plan_is_made_again() {
        let mut e = Engine::new(1);
        let mut d: Desired<String> = Desired::default();
        let v1 = file(
            vec![
                service(80, "wrr", vec![server(11, 1, None), server(12, 1, None)]),
                service(81, "rr", vec![server(13, 1, None)]),
                service(82, "rr", vec![server(14, 1, None)]),
            ],
            &[],
        );
        d.apply_file(&mut e, v1.clone());
        // 80: 12 leaves, 11's weight changes; 81 unchanged; 82 removed;
        // 83 new.
        let v2 = file(
            vec![
                service(80, "wrr", vec![server(11, 5, None)]),
                service(81, "rr", vec![server(13, 1, None)]),
                service(83, "lc", vec![server(15, 1, None)]),
            ],
            &[],
        );
        let p = plan(d.file.clone(), v2.clone());
        assert_eq!(p.removed, vec![key(82)]);
        // (port, index in the old file, servers gone, servers put)
        type Row = (u16, Option<usize>, Vec<(IpAddr, u16)>, Vec<usize>);
        let got: Vec<Row> = p
            .changed
            .iter()
            .map(|c| {
                let n = &p.file.services[c.new];
                (n.key.port, c.old, c.gone.clone(), c.put.clone())
            })
            .collect();
        let rs = |last: u8| (IpAddr::from(Ipv4Addr::new(198, 18, 1, last)), 80);
        assert_eq!(
            got,
            vec![
                (80, Some(0), vec![rs(12)], vec![0]),
                (83, None, vec![], vec![0])
            ]
        );
        // A plan made against another version (here: the first one, while
        // v2 was applied meanwhile) is not trusted: made again, against v2.
        let stale = plan(Arc::new(FileState::default()), v1);
        d.apply_file(&mut e, v2);
        let r = d.apply_plan(&mut e, stale);
        assert!(r.warnings.is_empty(), "{r:?}");
        assert_eq!(
            table(&e),
            vec![
                (80, vec![(11, 1), (12, 1)]),
                (81, vec![(13, 1)]),
                (82, vec![(14, 1)])
            ]
        );
    }
}
