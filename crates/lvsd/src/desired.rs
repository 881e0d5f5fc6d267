//! The desired state: what the engine's services and real servers should
//! be, computed from three inputs — the configuration file, the changes
//! made with lvsadm since, and the health verdicts — and applied to the
//! engine as a difference. Nothing else edits the engine's destinations.
//! A reload is one more input change (`reload.rs`).
//!
//! For each service the effective real servers are: every normal server
//! that is up (unchecked servers always are) with its configured weight;
//! a normal server that is down is removed (like `ipvsadm -d`: its
//! connections follow the kernel's rules) or, with `inhibit`, kept at
//! weight 0; the `sorry` servers are present only while no normal server
//! is up. An operator's edit (weight, thresholds) changes the configured
//! values, so it survives health transitions.

use lvs_core::{ControlError, DestConfig, Engine, ServiceKey};

/// What identifies a health check in the daemon's desired state: equal
/// specs are one check, shared by every server that has it.
pub type Check = lvs_health::CheckSpec;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

/// A real server as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server<C> {
    /// The configured definition (weight, method, thresholds).
    pub cfg: DestConfig,
    /// Its health check (`None`: unchecked, always up).
    pub check: Option<C>,
    pub sorry: bool,
    /// Down: weight 0 instead of removal.
    pub inhibit: bool,
    /// For logs and listings: the director's and the server's names.
    pub director: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Service<C> {
    key: ServiceKey,
    servers: Vec<Server<C>>,
    /// The (address, port) of every server in `servers`.
    index: HashSet<(IpAddr, u16)>,
}

/// The desired state, generic over the health check's identity.
#[derive(Debug)]
pub struct Desired<C> {
    services: Vec<Service<C>>,
    /// Index of each service in `services`.
    by_key: HashMap<ServiceKey, usize>,
    /// Verdicts: checks that are down (absent: up).
    down: HashMap<C, ()>,
    /// The configuration file as loaded last (what a reload is compared
    /// with).
    pub file: std::sync::Arc<crate::reload::FileState<C>>,
    /// A file was applied already (later ones are reloads).
    pub started: bool,
}

impl<C> Default for Desired<C> {
    fn default() -> Self {
        Desired {
            services: Vec::new(),
            by_key: HashMap::new(),
            down: HashMap::new(),
            file: Default::default(),
            started: false,
        }
    }
}

impl<C: Clone + Eq + Hash> Desired<C> {
    /// Every check wanted now (for the checker).
    pub fn checks(&self) -> Vec<C> {
        let mut seen: HashSet<&C> = HashSet::new();
        let mut v: Vec<C> = Vec::new();
        for s in &self.services {
            for d in &s.servers {
                if let Some(c) = &d.check {
                    if seen.insert(c) {
                        v.push(c.clone());
                    }
                }
            }
        }
        v
    }

    /// The wanted servers of every service, with their state.
    pub fn servers(&self) -> impl Iterator<Item = (ServiceKey, &Server<C>, bool)> + '_ {
        self.services
            .iter()
            .flat_map(move |s| s.servers.iter().map(move |d| (s.key, d, self.is_up(d))))
    }

    fn is_up(&self, d: &Server<C>) -> bool {
        d.check.as_ref().is_none_or(|c| !self.down.contains_key(c))
    }

    fn service_ref(&self, key: ServiceKey) -> Option<&Service<C>> {
        self.services.get(*self.by_key.get(&key)?)
    }

    fn service_mut(&mut self, key: ServiceKey) -> Option<&mut Service<C>> {
        self.services.get_mut(*self.by_key.get(&key)?)
    }

    /// Every wanted service with its servers, in the order they came.
    pub fn wanted(&self) -> impl Iterator<Item = (ServiceKey, &[Server<C>])> + '_ {
        self.services.iter().map(|s| (s.key, s.servers.as_slice()))
    }

    pub fn has_service(&self, key: ServiceKey) -> bool {
        self.service_ref(key).is_some()
    }

    /// Forgets the verdicts of the checks `keep` refuses.
    pub fn forget_verdicts(&mut self, keep: impl Fn(&C) -> bool) {
        self.down.retain(|c, _| keep(c));
    }

    /// A service exists (configured or added with lvsadm).
    pub fn add_service(&mut self, key: ServiceKey) {
        if self.service_mut(key).is_none() {
            self.by_key.insert(key, self.services.len());
            self.services.push(Service {
                key,
                servers: Vec::new(),
                index: HashSet::new(),
            });
        }
    }

    pub fn delete_service(&mut self, key: ServiceKey) {
        let Some(i) = self.by_key.remove(&key) else {
            return;
        };
        self.services.remove(i);
        for (n, s) in self.services.iter().enumerate().skip(i) {
            self.by_key.insert(s.key, n);
        }
    }

    pub fn clear(&mut self) {
        self.services.clear();
        self.by_key.clear();
    }

    /// Adds a real server; `DestExists` if the service has it already,
    /// `ServiceNotDefined` without the service. Then reconciles.
    pub fn add_server(
        &mut self,
        engine: &mut Engine,
        key: ServiceKey,
        server: Server<C>,
    ) -> Result<(), ControlError> {
        let id = (server.cfg.addr, server.cfg.port);
        let s = self
            .service_mut(key)
            .ok_or(ControlError::ServiceNotDefined)?;
        if s.index.contains(&id) {
            return Err(ControlError::DestExists);
        }
        let sorry = server.sorry;
        let up = self.is_up(&server);
        // Usually the new server only adds itself (or nothing): then the
        // engine gets just that, so adding n servers costs O(n), not O(n²).
        // Only a first normal server that is up changes the others (the
        // sorry servers leave).
        let s = self.service_ref(key);
        let any_up = s.is_some_and(|s| s.servers.iter().any(|d| !d.sorry && self.is_up(d)));
        let alone = !(!sorry && up && !any_up);
        let own = match (sorry, up) {
            (false, true) => Some(server.cfg.clone()),
            (false, false) if server.inhibit => Some(DestConfig {
                weight: 0,
                ..server.cfg.clone()
            }),
            (true, true) if !any_up => Some(server.cfg.clone()),
            _ => None,
        };
        if let Some(s) = self.service_mut(key) {
            s.servers.push(server);
            s.index.insert(id);
        }
        let r = match (alone, own) {
            (true, None) => Ok(()),
            (true, Some(cfg)) => engine.add_dest(key, cfg),
            (false, _) => self.reconcile(engine, key),
        };
        if r.is_err() {
            // The engine refused it (its own checks): it is not wanted.
            if let Some(s) = self.service_mut(key) {
                s.servers.pop();
                s.index.remove(&id);
            }
            let _ = self.reconcile(engine, key);
        }
        r
    }

    /// An operator's edit of a real server's definition (`-e`): the
    /// configured values change, the health state and check stay.
    pub fn edit_server(
        &mut self,
        engine: &mut Engine,
        key: ServiceKey,
        cfg: DestConfig,
    ) -> Result<(), ControlError> {
        let (addr, port) = (cfg.addr, cfg.port);
        self.change_server(engine, key, addr, port, |d| Server { cfg, ..d.clone() })
    }

    /// Puts `server` in the service, replacing the whole definition
    /// (configuration, check, role) of a server with the same address and
    /// port. Returns whether one was replaced.
    pub fn replace_server(
        &mut self,
        engine: &mut Engine,
        key: ServiceKey,
        server: Server<C>,
    ) -> Result<bool, ControlError> {
        let (addr, port) = (server.cfg.addr, server.cfg.port);
        let known = self
            .service_ref(key)
            .ok_or(ControlError::ServiceNotDefined)?
            .index
            .contains(&(addr, port));
        if known {
            self.change_server(engine, key, addr, port, |_| server)
                .map(|()| true)
        } else {
            self.add_server(engine, key, server).map(|()| false)
        }
    }

    /// Changes the wanted server `addr:port` of `key` and reconciles; if
    /// the engine refuses the result, the server is put back as it was.
    fn change_server(
        &mut self,
        engine: &mut Engine,
        key: ServiceKey,
        addr: IpAddr,
        port: u16,
        change: impl FnOnce(&Server<C>) -> Server<C>,
    ) -> Result<(), ControlError> {
        let s = self
            .service_mut(key)
            .ok_or(ControlError::ServiceNotDefined)?;
        let i = s
            .servers
            .iter()
            .position(|d| d.cfg.addr == addr && d.cfg.port == port)
            .ok_or(ControlError::NoSuchDest)?;
        let new = change(&s.servers[i]);
        let old = std::mem::replace(&mut s.servers[i], new);
        let r = self.reconcile(engine, key);
        if r.is_err() {
            if let Some(s) = self.service_mut(key) {
                s.servers[i] = old;
            }
            let _ = self.reconcile(engine, key);
        }
        r
    }

    /// `-d`: the server is not wanted any more.
    pub fn delete_server(
        &mut self,
        engine: &mut Engine,
        key: ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), ControlError> {
        let s = self
            .service_mut(key)
            .ok_or(ControlError::ServiceNotDefined)?;
        if !s.index.remove(&(addr, port)) {
            return Err(ControlError::NoSuchDest);
        }
        s.servers
            .retain(|d| !(d.cfg.addr == addr && d.cfg.port == port));
        self.reconcile(engine, key)
    }

    /// A check's verdict; returns the services whose servers changed.
    pub fn set_health(&mut self, engine: &mut Engine, check: &C, up: bool) -> Vec<ServiceKey> {
        let changed = if up {
            self.down.remove(check).is_some()
        } else {
            self.down.insert(check.clone(), ()).is_none()
        };
        if !changed {
            return Vec::new();
        }
        let keys: Vec<ServiceKey> = self
            .services
            .iter()
            .filter(|s| s.servers.iter().any(|d| d.check.as_ref() == Some(check)))
            .map(|s| s.key)
            .collect();
        for &k in &keys {
            let _ = self.reconcile(engine, k);
        }
        keys
    }

    /// The real servers the engine should hold for `key`, in definition
    /// order.
    pub fn effective(&self, key: ServiceKey) -> Vec<DestConfig> {
        let Some(s) = self.service_ref(key) else {
            return Vec::new();
        };
        let any_up = s.servers.iter().any(|d| !d.sorry && self.is_up(d));
        let mut v = Vec::new();
        for d in &s.servers {
            let up = self.is_up(d);
            match (d.sorry, up) {
                (false, true) => v.push(d.cfg.clone()),
                (false, false) if d.inhibit => v.push(DestConfig {
                    weight: 0,
                    ..d.cfg.clone()
                }),
                (false, false) => {}
                (true, _) if !any_up && up => v.push(d.cfg.clone()),
                (true, _) => {}
            }
        }
        v
    }

    /// Makes the engine's real servers of `key` the effective ones: adds,
    /// edits and deletes as needed (the first engine error is returned;
    /// the rest is still applied).
    pub fn reconcile(&self, engine: &mut Engine, key: ServiceKey) -> Result<(), ControlError> {
        let want = self.effective(key);
        // What to do, worked out while the engine is borrowed for reading.
        // Services have few servers: a linear search beats hashing them
        // (a reload or restore reconciles each changed service).
        let mut gone: Vec<(IpAddr, u16)> = Vec::new();
        let mut changed: Vec<(bool, usize)> = Vec::new();
        {
            let Some((_, have)) = engine.service(&key) else {
                return Err(ControlError::ServiceNotDefined);
            };
            let big = want.len().max(have.len()) > SMALL;
            let wanted: HashSet<(IpAddr, u16)> = if big {
                want.iter().map(|w| (w.addr, w.port)).collect()
            } else {
                HashSet::new()
            };
            let held: HashMap<(IpAddr, u16), usize> = if big {
                have.iter()
                    .enumerate()
                    .map(|(i, h)| ((h.addr, h.port), i))
                    .collect()
            } else {
                HashMap::new()
            };
            for h in &have {
                let id = (h.addr, h.port);
                let kept = if big {
                    wanted.contains(&id)
                } else {
                    want.iter().any(|w| (w.addr, w.port) == id)
                };
                if !kept {
                    gone.push(id);
                }
            }
            for (i, w) in want.iter().enumerate() {
                let id = (w.addr, w.port);
                let found = if big {
                    held.get(&id).copied()
                } else {
                    have.iter().position(|h| (h.addr, h.port) == id)
                };
                match found {
                    None => changed.push((true, i)),
                    Some(j) if !same(have[j], w) => changed.push((false, i)),
                    Some(_) => {}
                }
            }
        }
        let mut first = Ok(());
        let mut note = |r: Result<(), ControlError>| {
            if first.is_ok() {
                first = r;
            }
        };
        for (addr, port) in gone {
            note(engine.delete_dest(key, addr, port));
        }
        for (add, i) in changed {
            let w = want[i].clone();
            note(if add {
                engine.add_dest(key, w)
            } else {
                engine.edit_dest(key, w)
            });
        }
        first
    }
}

/// Servers per service up to which `reconcile` searches linearly.
const SMALL: usize = 16;

/// Whether the engine's destination is configured as `w` says.
fn same(d: &lvs_core::service::Dest, w: &DestConfig) -> bool {
    d.addr == w.addr
        && d.port == w.port
        && d.forward == w.forward
        && d.tunnel == w.tunnel
        && d.weight == w.weight
        && d.u_threshold == w.u_threshold
        && d.l_threshold == w.l_threshold
}

/// What the checker says of one check, for listings.
#[derive(Debug, Clone, Default)]
pub struct CheckStatus {
    /// The check in words (`tcpcheck :80 every 1s …`).
    pub desc: String,
    pub last_ok: Option<bool>,
    pub reason: String,
    pub age_ms: Option<u64>,
    pub successes: u32,
    pub failures: u32,
    pub latency: Option<lvs_control::Histogram>,
}

impl<C: Clone + Eq + Hash> Desired<C> {
    /// Every wanted real server's health and whether the engine holds it.
    pub fn health(
        &self,
        engine: &Engine,
        status: &dyn Fn(&C) -> CheckStatus,
    ) -> Vec<lvs_control::HealthInfo> {
        let mut v = Vec::new();
        for s in &self.services {
            let held = engine.service(&s.key).map(|(_, ds)| {
                ds.iter()
                    .map(|d| ((d.addr, d.port), d.weight))
                    .collect::<HashMap<_, _>>()
            });
            for d in &s.servers {
                let st = d.check.as_ref().map(status).unwrap_or_default();
                let engine_weight = held
                    .as_ref()
                    .and_then(|h| h.get(&(d.cfg.addr, d.cfg.port)).copied());
                v.push(lvs_control::HealthInfo {
                    director: d.director.clone(),
                    server: d.name.clone(),
                    service: crate::engine_ops::key_out(&s.key),
                    addr: d.cfg.addr,
                    port: d.cfg.port,
                    check: st.desc,
                    up: self.is_up(d),
                    sorry: d.sorry,
                    in_service: engine_weight.is_some(),
                    weight: engine_weight.unwrap_or(d.cfg.weight),
                    last_ok: st.last_ok,
                    reason: st.reason,
                    age_ms: st.age_ms,
                    successes: st.successes,
                    failures: st.failures,
                    latency: st.latency,
                });
            }
        }
        v
    }
}

/// Answers one control request: changes to services and real servers go
/// through the desired state (so they survive health transitions and are
/// what a reload will start from); everything else is the engine's
/// (`engine_ops`). Returns the answer and whether the configuration
/// changed.
pub fn apply_request<C: Clone + Eq + Hash>(
    desired: &mut Desired<C>,
    engine: &mut Engine,
    req: &lvs_control::Request,
    now_ms: u64,
    io: &[(&str, u64)],
    status: &dyn Fn(&C) -> CheckStatus,
) -> (lvs_control::Response, bool) {
    use crate::engine_ops::{self, check_dest, dest_config, error, key};
    use lvs_control::{Request, Response};
    let done = |r: Result<(), ControlError>| match r {
        Ok(()) => (Response::Ok, true),
        Err(e) => (error(e), false),
    };
    match req {
        Request::Batch(reqs) => {
            let mut changed = false;
            let answers = reqs
                .iter()
                .map(|r| match r {
                    Request::Batch(_) | Request::Reload => Response::Error {
                        kind: lvs_control::ErrorKind::BadRequest,
                        detail: "a batch holds only single changes".into(),
                    },
                    r => {
                        let (resp, ch) = apply_request(desired, engine, r, now_ms, io, status);
                        changed |= ch;
                        resp
                    }
                })
                .collect();
            (Response::Batch(answers), changed)
        }
        Request::GetHealth => (Response::Health(desired.health(engine, status)), false),
        Request::AddDest { service, dest } => done(check_dest(dest).and_then(|_| {
            let server = Server {
                cfg: dest_config(dest),
                check: None,
                sorry: false,
                inhibit: false,
                director: String::new(),
                name: String::new(),
            };
            desired.add_server(engine, key(service), server)
        })),
        Request::EditDest { service, dest } => done(
            check_dest(dest)
                .and_then(|_| desired.edit_server(engine, key(service), dest_config(dest))),
        ),
        Request::DeleteDest {
            service,
            addr,
            port,
        } => done(desired.delete_server(engine, key(service), *addr, *port)),
        other => {
            let (resp, changed) = engine_ops::apply_with(engine, other, now_ms, io);
            if resp == Response::Ok {
                match other {
                    Request::AddService(s) => desired.add_service(key(&s.key)),
                    Request::DeleteService(k) => desired.delete_service(key(k)),
                    Request::Clear => desired.clear(),
                    _ => {}
                }
            }
            (resp, changed)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lvs_core::Forward;
    use std::net::Ipv4Addr;

    fn key() -> ServiceKey {
        ServiceKey {
            protocol: 6,
            addr: Ipv4Addr::new(198, 18, 0, 100).into(),
            port: 80,
        }
    }

    pub(crate) fn server(
        last: u8,
        weight: i32,
        check: Option<&str>,
        sorry: bool,
        inhibit: bool,
    ) -> Server<String> {
        Server {
            cfg: DestConfig {
                addr: Ipv4Addr::new(198, 18, 1, last).into(),
                port: 80,
                forward: Forward::Masq,
                tunnel: Default::default(),
                weight,
                u_threshold: 0,
                l_threshold: 0,
            },
            check: check.map(str::to_string),
            sorry,
            inhibit,
            director: "web".into(),
            name: format!("rs{last}"),
        }
    }

    fn engine_dests(e: &Engine) -> Vec<(u8, i32)> {
        let (_, ds) = e.service(&key()).unwrap();
        let mut v: Vec<(u8, i32)> = ds
            .iter()
            .map(|d| match d.addr {
                IpAddr::V4(a) => (a.octets()[3], d.weight),
                IpAddr::V6(_) => (0, d.weight),
            })
            .collect();
        v.sort();
        v
    }

    fn setup(servers: Vec<Server<String>>) -> (Engine, Desired<String>) {
        let mut e = Engine::new(1);
        e.add_service(key(), "wrr", 0).unwrap();
        let mut d = Desired::default();
        d.add_service(key());
        for s in servers {
            d.add_server(&mut e, key(), s).unwrap();
        }
        (e, d)
    }

    #[test]
    fn a_server_that_falls_leaves_and_comes_back_with_its_weight() {
        let (mut e, mut d) = setup(vec![
            server(11, 2, Some("c11"), false, false),
            server(12, 1, Some("c12"), false, false),
        ]);
        assert_eq!(engine_dests(&e), vec![(11, 2), (12, 1)]);
        assert_eq!(d.set_health(&mut e, &"c11".into(), false), vec![key()]);
        assert_eq!(engine_dests(&e), vec![(12, 1)]);
        // The same verdict again changes nothing.
        assert!(d.set_health(&mut e, &"c11".into(), false).is_empty());
        // An operator's weight while it is down is kept for its return.
        let mut cfg = server(11, 5, None, false, false).cfg;
        cfg.weight = 5;
        d.edit_server(&mut e, key(), cfg).unwrap();
        assert_eq!(engine_dests(&e), vec![(12, 1)]);
        d.set_health(&mut e, &"c11".into(), true);
        assert_eq!(engine_dests(&e), vec![(11, 5), (12, 1)]);
    }

    #[test]
    fn inhibit_keeps_a_down_server_at_weight_zero() {
        let (mut e, mut d) = setup(vec![
            server(11, 3, Some("c11"), false, true),
            server(12, 1, None, false, false),
        ]);
        d.set_health(&mut e, &"c11".into(), false);
        assert_eq!(engine_dests(&e), vec![(11, 0), (12, 1)]);
        d.set_health(&mut e, &"c11".into(), true);
        assert_eq!(engine_dests(&e), vec![(11, 3), (12, 1)]);
    }

    #[test]
    fn sorry_servers_take_over_only_while_every_other_is_down() {
        let (mut e, mut d) = setup(vec![
            server(11, 1, Some("c11"), false, false),
            server(12, 1, Some("c12"), false, true),
            server(99, 1, None, true, false),
            server(98, 1, Some("c98"), true, false),
        ]);
        assert_eq!(engine_dests(&e), vec![(11, 1), (12, 1)]);
        d.set_health(&mut e, &"c11".into(), false);
        assert_eq!(engine_dests(&e), vec![(12, 1)]);
        // The last normal server down (inhibited: weight 0, not "up").
        d.set_health(&mut e, &"c12".into(), false);
        assert_eq!(engine_dests(&e), vec![(12, 0), (98, 1), (99, 1)]);
        // A sorry server that is down itself is not used.
        d.set_health(&mut e, &"c98".into(), false);
        assert_eq!(engine_dests(&e), vec![(12, 0), (99, 1)]);
        // One normal server back: the sorry servers leave.
        d.set_health(&mut e, &"c11".into(), true);
        assert_eq!(engine_dests(&e), vec![(11, 1), (12, 0)]);
    }

    #[test]
    fn operator_changes_go_through_the_desired_state() {
        let (mut e, mut d) = setup(vec![server(11, 1, Some("c11"), false, false)]);
        assert_eq!(
            d.add_server(&mut e, key(), server(11, 1, None, false, false)),
            Err(ControlError::DestExists)
        );
        d.set_health(&mut e, &"c11".into(), false);
        // Deleting a server that is down (absent from the engine) works.
        d.delete_server(&mut e, key(), Ipv4Addr::new(198, 18, 1, 11).into(), 80)
            .unwrap();
        assert_eq!(
            d.delete_server(&mut e, key(), Ipv4Addr::new(198, 18, 1, 11).into(), 80),
            Err(ControlError::NoSuchDest)
        );
        // A server the engine refuses is not kept.
        assert!(d
            .add_server(&mut e, key(), server(13, -1, None, false, false))
            .is_err());
        assert!(d.servers().all(|(_, s, _)| s.cfg.weight >= 0));
        assert_eq!(d.checks(), Vec::<String>::new());
    }
}
