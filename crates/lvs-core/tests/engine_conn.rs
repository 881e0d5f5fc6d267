//! Connection tracking with a virtual clock (connections.md): persistence
//! templates and their life cycle, port reuse, dead and quiesced
//! destinations, one-packet scheduling, the defenses, nat_icmp_send and
//! SCTP, each through real packet bytes.

mod support;

use lvs_core::conn::flags::TEMPLATE;
use lvs_core::conn::Conn;
use lvs_core::proto::sctp::chunk;
use lvs_core::wire::{ipproto, tcp_flags::*};
use lvs_core::xmit::Reply;
use lvs_core::{DestConfig, DropReason, Engine, Forward, ServiceKey, ServiceOptions, Verdict};
use support::*;

const V: [u8; 4] = [198, 18, 0, 100];

fn rs(i: u8) -> [u8; 4] {
    [198, 18, 1, 10 + i]
}

/// Client `n` of network 198.18.(2 + net).0/24.
fn cl(net: u8, n: u8) -> [u8; 4] {
    [198, 18, 2 + net, n]
}

struct Lab {
    e: Engine,
    now: u64,
    key: ServiceKey,
}

impl Lab {
    /// A service on V:`port` with rr over real servers `dests` (added in
    /// this order, so the last is first in the list), NAT unless `dr`.
    fn new(protocol: u8, port: u16, opts: ServiceOptions, dests: &[u8], dr: bool) -> Lab {
        let mut e = Engine::new(7);
        let key = ServiceKey {
            protocol,
            addr: ip(V),
            port,
        };
        e.add_service_with(key, "rr", 0, opts).unwrap();
        for &i in dests {
            e.add_dest(
                key,
                DestConfig {
                    tunnel: Default::default(),
                    addr: ip(rs(i)),
                    port: if dr || port == 0 { 0 } else { 8080 },
                    forward: if dr { Forward::Route } else { Forward::Masq },
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                },
            )
            .unwrap();
        }
        e.handle_timeout(0);
        Lab { e, now: 0, key }
    }

    fn persistent(protocol: u8, secs: u32, mask: u32, dests: &[u8]) -> Lab {
        let opts = ServiceOptions {
            persistent: Some(secs),
            netmask: mask,
            one_packet: false,
        };
        Lab::new(protocol, 80, opts, dests, false)
    }

    fn send(&mut self, mut p: Vec<u8>) -> (Verdict, Vec<u8>) {
        let v = self.e.process_ipv4(self.now, &mut p, false);
        (v, p)
    }

    /// Sends and returns the real server the packet went to (last octet).
    fn to(&mut self, p: Vec<u8>) -> Option<u8> {
        match self.send(p) {
            (Verdict::Forward { .. }, out) => {
                assert!(valid(&out), "bad checksums after NAT");
                Some(dst_of(&out).0[3] - 10)
            }
            _ => None,
        }
    }

    /// Advances the clock by `ms`, running timers every 100 ms like lvsd.
    fn wait(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 100).min(end);
            self.e.handle_timeout(self.now);
        }
    }

    fn entries(&self) -> Vec<&Conn> {
        self.e.connections().collect()
    }

    fn templates(&self) -> Vec<&Conn> {
        self.e
            .connections()
            .filter(|c| c.flags & TEMPLATE != 0)
            .collect()
    }

    fn conns(&self) -> Vec<&Conn> {
        self.e
            .connections()
            .filter(|c| c.flags & TEMPLATE == 0)
            .collect()
    }

    /// Remaining whole seconds of an entry, as a listing shows them.
    fn left(&self, c: &Conn) -> u64 {
        c.expires.saturating_sub(self.now) / 1000
    }

    /// (active, inactive, persistent) counters of real server `i`.
    fn counts(&self, i: u8) -> (u32, u32, u32) {
        let (_, dests) = self.e.service(&self.key).unwrap();
        let d = dests.iter().find(|d| d.addr == ip(rs(i))).unwrap();
        (d.active_conns, d.inact_conns, d.persist_conns)
    }

    fn set(&mut self, name: &str, v: &str) {
        self.e.set_sysctl(name, v).unwrap();
    }

    fn weight(&mut self, i: u8, w: i32) {
        let (_, dests) = self.e.service(&self.key).unwrap();
        let d = dests.iter().find(|d| d.addr == ip(rs(i))).unwrap();
        let cfg = DestConfig {
            tunnel: Default::default(),
            addr: d.addr,
            port: d.port,
            forward: d.forward,
            weight: w,
            u_threshold: 0,
            l_threshold: 0,
        };
        self.e.edit_dest(self.key, cfg).unwrap();
    }
}

const MASK32: u32 = u32::MAX;
const MASK24: u32 = 0xffff_ff00;

// ----- persistence (§8) -------------------------------------------------

#[test]
fn persistent_clients_stick_across_source_ports_and_netmask() {
    let mut l = Lab::persistent(ipproto::TCP, 300, MASK24, &[1, 2, 3]);
    let first = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    // Other ports, and other hosts of the same /24: the same server.
    for (n, port) in [(5, 1001), (5, 1002), (6, 2000), (200, 3000)] {
        assert_eq!(l.to(tcp(cl(0, n), port, V, 80, SYN)), Some(first));
    }
    // Another /24 gets its own template and, with rr, the next server.
    let other = l.to(tcp(cl(1, 5), 1000, V, 80, SYN)).unwrap();
    assert_ne!(other, first);
    let t = l.templates();
    assert_eq!(t.len(), 2);
    let t0 = t.iter().find(|t| t.caddr == ip(cl(0, 0))).unwrap();
    assert_eq!((t0.cport, t0.vport, t0.dport), (0, 80, 8080));
    assert_eq!(Engine::state_name(t0), "NONE");
    assert_eq!(l.left(t0), 300);
    // Five SYNs to `first`: all in SYN_RECV (active), one template.
    assert_eq!(l.counts(first), (5, 0, 1));
    assert_eq!(l.counts(other), (1, 0, 1));
    // The real port of a normal persistent service is the destination's.
    assert!(l.conns().iter().all(|c| c.dport == 8080));
}

#[test]
fn netmask_32_keys_templates_per_client_host() {
    let mut l = Lab::persistent(ipproto::UDP, 60, MASK32, &[1, 2]);
    let a = l.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    let b = l.to(udp(cl(0, 6), 1000, V, 80)).unwrap();
    assert_ne!(a, b);
    assert_eq!(l.to(udp(cl(0, 5), 1001, V, 80)), Some(a));
    assert_eq!(l.to(udp(cl(0, 6), 1001, V, 80)), Some(b));
    assert_eq!(l.templates().len(), 2);
}

#[test]
fn templates_become_assured_when_a_connection_is_established() {
    let mut l = Lab::persistent(ipproto::TCP, 300, MASK32, &[1]);
    l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    assert_eq!(Engine::state_name(l.templates()[0]), "NONE");
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    assert_eq!(Engine::state_name(l.templates()[0]), "ASSURED");
    // UDP: a reply (OUTPUT) assures the template.
    let mut u = Lab::persistent(ipproto::UDP, 300, MASK32, &[1]);
    u.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    assert_eq!(Engine::state_name(u.templates()[0]), "NONE");
    let (v, _) = u.send(udp(rs(1), 8080, cl(0, 5), 1000));
    assert!(matches!(v, Verdict::Forward { .. }));
    assert_eq!(Engine::state_name(u.templates()[0]), "ASSURED");
}

#[test]
fn template_timer_restarts_only_on_new_connections_and_retries_60s() {
    let mut l = Lab::persistent(ipproto::TCP, 10, MASK32, &[1]);
    l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    l.wait(4_000);
    // Packets of the existing connection do not restart the template.
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    assert_eq!(l.left(l.templates()[0]), 6);
    // A new connection does: expiry = now + 10 s.
    l.to(tcp(cl(0, 5), 1001, V, 80, SYN)).unwrap();
    assert_eq!(l.left(l.templates()[0]), 10);
    // The timer fires while it still controls two connections: kept, 60 s.
    l.wait(10_100);
    let t = l.templates()[0];
    assert_eq!(t.timeout_ms, 60_000);
    assert!((59..=60).contains(&l.left(t)));
    assert_eq!(l.counts(1).2, 1);
    // The 60 s sticks: a new connection restarts it with 60 s, not 10.
    l.to(tcp(cl(0, 5), 1002, V, 80, SYN)).unwrap();
    assert_eq!(l.left(l.templates()[0]), 60);
}

#[test]
fn template_outlives_its_connections_until_its_own_timer() {
    let mut l = Lab::persistent(ipproto::UDP, 400, MASK32, &[1]);
    l.set("conn_reuse_mode", "1");
    l.e.set_timeouts(0, 0, 5).unwrap();
    l.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    l.wait(5_200);
    // The UDP entry is gone; the template (400 s) stays and keeps the client.
    assert_eq!(l.conns().len(), 0);
    assert_eq!(l.templates().len(), 1);
    assert_eq!(l.counts(1), (0, 0, 1));
    l.wait(395_000);
    assert_eq!(l.templates().len(), 0);
    assert_eq!(l.counts(1), (0, 0, 0));
}

#[test]
fn quiesced_server_keeps_persistent_clients_unless_expire_quiescent_template() {
    for eqt in [0, 1] {
        let mut l = Lab::persistent(ipproto::TCP, 300, MASK32, &[1, 2]);
        l.set("expire_quiescent_template", &eqt.to_string());
        let first = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
        l.weight(first, 0);
        let next = l.to(tcp(cl(0, 5), 1001, V, 80, SYN)).unwrap();
        if eqt == 0 {
            assert_eq!(next, first, "eqt=0: the quiesced server keeps its client");
            assert_eq!(l.templates().len(), 1);
        } else {
            assert_ne!(next, first, "eqt=1: rescheduled");
            // The old template was neutralised (re-keyed, left to expire).
            let t = l.templates();
            assert_eq!(t.len(), 2);
            let old = t.iter().find(|t| t.daddr == ip(rs(first))).unwrap();
            assert_eq!((old.cport, old.vport, old.dport), (0, 65535, 65535));
            assert_eq!(l.counts(first).2, 1);
        }
    }
}

#[test]
fn deleted_server_invalidates_templates() {
    let mut l = Lab::persistent(ipproto::TCP, 300, MASK32, &[1, 2]);
    let first = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.e.delete_dest(l.key, ip(rs(first)), 8080).unwrap();
    let next = l.to(tcp(cl(0, 5), 1001, V, 80, SYN)).unwrap();
    assert_ne!(next, first);
}

#[test]
fn port_zero_persistent_service_shares_one_template_across_ports() {
    let opts = ServiceOptions {
        persistent: Some(300),
        netmask: MASK32,
        one_packet: false,
    };
    let mut l = Lab::new(ipproto::TCP, 0, opts, &[1, 2], false);
    let a = l.to(tcp(cl(0, 5), 1000, V, 443, SYN)).unwrap();
    assert_eq!(l.to(tcp(cl(0, 5), 1001, V, 8443, SYN)), Some(a));
    let t = l.templates();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].vport, t[0].dport), (0, 0));
    // The real port is the port the client asked for.
    let mut ports: Vec<u16> = l.conns().iter().map(|c| c.dport).collect();
    ports.sort_unstable();
    assert_eq!(ports, [443, 8443]);
    // A port-0 service without persistence is refused, whatever the path
    // (ipvsadm's "Zero port specified for non-persistent service"); the
    // kernel would keep it and answer unreachable to every packet.
    let mut e = Engine::new(7);
    let key = ServiceKey {
        protocol: ipproto::TCP,
        addr: ip(V),
        port: 0,
    };
    assert!(matches!(
        e.add_service_with(key, "rr", 0, ServiceOptions::default()),
        Err(lvs_core::ControlError::Invalid(_))
    ));
    // Nor can persistence be taken away from one.
    e.add_service_with(key, "rr", 0, opts).unwrap();
    assert!(e
        .edit_service_with(key, "rr", 0, ServiceOptions::default())
        .is_err());
}

// ----- reuse and dead destinations (§14, §15) ---------------------------

/// A NAT connection from cl(0,5):1000 that ends in TIME_WAIT (server closes first).
fn time_wait(l: &mut Lab) -> u8 {
    let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.send(tcp(rs(s), 8080, cl(0, 5), 1000, SYN | ACK));
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    l.send(tcp(rs(s), 8080, cl(0, 5), 1000, FIN | ACK));
    l.to(tcp(cl(0, 5), 1000, V, 80, FIN | ACK)).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "TIME_WAIT");
    s
}

#[test]
fn conn_reuse_mode_reschedules_a_syn_on_time_wait() {
    for mode in ["0", "1", "2", "3"] {
        let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
        l.set("conn_reuse_mode", mode);
        let s = time_wait(&mut l);
        let again = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
        let c = l.conns();
        assert_eq!(c.len(), 1, "mode {mode}");
        assert_eq!(Engine::state_name(c[0]), "SYN_RECV");
        if mode == "0" {
            // The old entry continues: same server, TIME_WAIT + SYN → SYN_RECV.
            assert_eq!(again, s);
            assert_eq!(l.e.counters.conns, 1);
        } else {
            // rr moves on: a new entry on the other server.
            assert_ne!(again, s, "mode {mode}");
            assert_eq!(l.e.counters.conns, 2);
            assert_eq!(l.counts(s), (0, 0, 0));
        }
    }
}

#[test]
fn reuse_of_close_and_fin_wait_entries() {
    // CLOSE after RST: any non-zero mode reschedules.
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
    let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    // (A RST in SYN_RECV keeps SYN_RECV: the INPUT table's quirk.)
    l.to(tcp(cl(0, 5), 1000, V, 80, RST)).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "SYN_RECV");
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    l.to(tcp(cl(0, 5), 1000, V, 80, RST)).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "CLOSE");
    assert_ne!(l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap(), s);
    // NAT FIN_WAIT (server FIN): never NOOUTPUT, so even mode 2 keeps it.
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
    l.set("conn_reuse_mode", "2");
    let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    l.send(tcp(rs(s), 8080, cl(0, 5), 1000, FIN | ACK));
    assert_eq!(Engine::state_name(l.conns()[0]), "FIN_WAIT");
    assert_eq!(l.to(tcp(cl(0, 5), 1000, V, 80, SYN)), Some(s));
    assert_eq!(Engine::state_name(l.conns()[0]), "SYN_RECV");
    // DR FIN_WAIT (client FIN, no output seen): mode 2 reschedules, mode 1 not.
    for (mode, moves) in [("1", false), ("2", true)] {
        let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], true);
        l.set("conn_reuse_mode", mode);
        for f in [SYN, ACK, FIN | ACK] {
            let (v, _) = l.send(tcp(cl(0, 5), 1000, V, 80, f));
            // Direct routing: the packet goes to the real server as next hop.
            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        }
        let c = l.conns()[0];
        assert_eq!(Engine::state_name(c), "FIN_WAIT");
        let before = c.daddr;
        l.send(tcp(cl(0, 5), 1000, V, 80, SYN));
        let c = l.conns();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].daddr != before, moves, "mode {mode}");
    }
}

#[test]
fn controlled_connections_are_not_rescheduled_by_reuse() {
    let mut l = Lab::persistent(ipproto::TCP, 300, MASK32, &[1, 2]);
    let s = time_wait(&mut l);
    // Same client port again: the entry is controlled, so it is reused.
    assert_eq!(l.to(tcp(cl(0, 5), 1000, V, 80, SYN)), Some(s));
    assert_eq!(l.e.counters.conns, 1);
}

#[test]
fn expire_nodest_conn_and_deleted_destinations() {
    for end in [0, 1] {
        let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
        l.set("expire_nodest_conn", &end.to_string());
        let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
        l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
        l.e.delete_dest(l.key, ip(rs(s)), 8080).unwrap();
        if end == 0 {
            let (v, _) = l.send(tcp(cl(0, 5), 1000, V, 80, ACK));
            assert_eq!(v, Verdict::Drop(DropReason::DestDeleted));
            assert_eq!(l.conns().len(), 1);
        } else {
            // The background flush removes the entry at the next timer run.
            l.wait(100);
            assert_eq!(l.conns().len(), 0);
            // A data packet of the flow now gets the host's reset; a SYN is scheduled.
            assert_eq!(
                l.send(tcp(cl(0, 5), 1000, V, 80, ACK)).0,
                Verdict::Reply(Reply::TcpReset)
            );
            assert_ne!(l.to(tcp(cl(0, 5), 1000, V, 80, SYN)), Some(s));
        }
    }
}

#[test]
fn expire_nodest_conn_flush_takes_templates_with_it() {
    let mut l = Lab::persistent(ipproto::TCP, 300, MASK32, &[1, 2]);
    l.set("expire_nodest_conn", "1");
    let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap(); // ASSURED
    l.e.delete_dest(l.key, ip(rs(s)), 8080).unwrap();
    l.wait(100);
    assert!(l.entries().is_empty());
}

#[test]
fn expire_nodest_conn_reschedules_syns_to_weight_0() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
    l.set("conn_reuse_mode", "0");
    l.set("expire_nodest_conn", "1");
    let s = l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    l.weight(s, 0);
    // Data keeps flowing to the quiesced server; a new SYN moves.
    assert_eq!(l.to(tcp(cl(0, 5), 1000, V, 80, ACK)), Some(s));
    assert_ne!(l.to(tcp(cl(0, 5), 1000, V, 80, SYN)), Some(s));
}

#[test]
fn sloppy_tcp_creates_entries_from_mid_stream_packets() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1], false);
    assert_eq!(
        l.send(tcp(cl(0, 5), 1000, V, 80, ACK)).0,
        Verdict::Reply(Reply::TcpReset)
    );
    l.set("sloppy_tcp", "1");
    assert!(l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).is_some());
    assert_eq!(Engine::state_name(l.conns()[0]), "ESTABLISHED");
    assert_eq!(l.left(l.conns()[0]), 900);
    // RST never creates one.
    assert_eq!(l.send(tcp(cl(0, 5), 1001, V, 80, RST)).0, Verdict::NotOurs);
}

#[test]
fn timeouts_set_at_run_time_apply_at_the_next_packet() {
    let mut l = Lab::new(ipproto::UDP, 80, ServiceOptions::default(), &[1], false);
    l.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    assert_eq!(l.left(l.conns()[0]), 300);
    l.e.set_timeouts(0, 0, 7).unwrap();
    assert_eq!(l.left(l.conns()[0]), 300);
    l.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    assert_eq!(l.left(l.conns()[0]), 7);
    assert_eq!(l.counts(1), (0, 1, 0), "UDP entries are always inactive");
    l.wait(7_200);
    assert!(l.conns().is_empty());
    assert_eq!(l.counts(1), (0, 0, 0));
}

// ----- one-packet scheduling (§16) ----------------------------------------

#[test]
fn one_packet_scheduling_schedules_every_datagram() {
    let opts = ServiceOptions {
        one_packet: true,
        ..ServiceOptions::default()
    };
    let mut l = Lab::new(ipproto::UDP, 80, opts, &[1, 2], false);
    let got: Vec<Option<u8>> = (0..4).map(|_| l.to(udp(cl(0, 5), 1000, V, 80))).collect();
    assert_eq!(got[0], got[2]);
    assert_eq!(got[1], got[3]);
    assert_ne!(got[0], got[1]);
    assert!(l.entries().is_empty());
    assert_eq!((l.counts(1), l.counts(2)), ((0, 0, 0), (0, 0, 0)));
    assert_eq!(l.e.counters.conns, 4);
    // Replies find no entry: passed on un-NATed, from the real server.
    let (v, out) = l.send(udp(rs(1), 8080, cl(0, 5), 1000));
    assert_eq!(v, Verdict::Forward { to: ip(cl(0, 5)) });
    assert_eq!(&out[12..16], &rs(1));
    // TCP ignores the flag.
    let mut t = Lab::new(ipproto::TCP, 80, opts, &[1], false);
    t.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    assert_eq!(t.entries().len(), 1);
}

#[test]
fn one_packet_with_persistence_uses_a_template() {
    let opts = ServiceOptions {
        persistent: Some(30),
        netmask: MASK32,
        one_packet: true,
    };
    let mut l = Lab::new(ipproto::UDP, 80, opts, &[1, 2], false);
    let a = l.to(udp(cl(0, 5), 1000, V, 80)).unwrap();
    assert_eq!(l.to(udp(cl(0, 5), 1001, V, 80)), Some(a));
    let t = l.templates();
    assert_eq!((t.len(), l.conns().len()), (1, 0));
    assert_eq!(t[0].in_pkts, 2);
    assert_eq!(t[0].n_control, 0);
    assert_eq!(l.counts(a), (0, 0, 1));
}

// ----- defenses (§17) ----------------------------------------------------

#[test]
fn drop_packet_mode_3_drops_one_of_am_droprate_new_connections() {
    let mut l = Lab::new(ipproto::UDP, 80, ServiceOptions::default(), &[1], false);
    l.set("am_droprate", "3");
    l.set("drop_packet", "3");
    let dropped: Vec<bool> = (0..7)
        .map(|i| {
            l.send(udp(cl(0, 5), 2000 + i, V, 80)).0 == Verdict::Drop(DropReason::DefenseDropPacket)
        })
        .collect();
    assert_eq!(dropped, [true, false, false, true, false, false, true]);
    // Packets of existing entries are never dropped.
    for _ in 0..5 {
        assert!(l.to(udp(cl(0, 5), 2001, V, 80)).is_some());
    }
}

#[test]
fn drop_packet_automatic_mode_follows_memory() {
    let mut l = Lab::new(ipproto::UDP, 80, ServiceOptions::default(), &[1], false);
    l.set("drop_packet", "1");
    l.e.set_available_memory(512); // half the 1024-page threshold: rate 2
    l.wait(1_000);
    assert_eq!(l.e.sysctl("drop_packet").unwrap(), "2");
    let n = (0..10)
        .filter(|&i| {
            l.send(udp(cl(0, 5), 3000 + i, V, 80)).0 == Verdict::Drop(DropReason::DefenseDropPacket)
        })
        .count();
    assert_eq!(n, 5);
    l.e.set_available_memory(1 << 20);
    l.wait(1_000);
    assert_eq!(l.e.sysctl("drop_packet").unwrap(), "1");
    assert!((0..10).all(|i| l.to(udp(cl(0, 5), 4000 + i, V, 80)).is_some()));
}

#[test]
fn secure_tcp_needs_the_servers_ack_to_establish() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1], false);
    l.set("secure_tcp", "3");
    l.to(tcp(cl(0, 5), 1000, V, 80, SYN)).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "SYN_RECV");
    l.send(tcp(rs(1), 8080, cl(0, 5), 1000, SYN | ACK));
    assert_eq!(Engine::state_name(l.conns()[0]), "SYNACK");
    l.to(tcp(cl(0, 5), 1000, V, 80, ACK)).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "SYNACK");
    assert_eq!(l.counts(1), (1, 0, 0));
    l.send(tcp(rs(1), 8080, cl(0, 5), 1000, ACK));
    assert_eq!(Engine::state_name(l.conns()[0]), "ESTABLISHED");
    // Back to normal: the client's ACK establishes at once.
    l.set("secure_tcp", "0");
    l.to(tcp(cl(0, 5), 1001, V, 80, SYN)).unwrap();
    l.send(tcp(rs(1), 8080, cl(0, 5), 1001, SYN | ACK));
    l.to(tcp(cl(0, 5), 1001, V, 80, ACK)).unwrap();
    let c = l.conns();
    let c = c.iter().find(|c| c.cport == 1001).unwrap();
    assert_eq!(Engine::state_name(c), "ESTABLISHED");
}

#[test]
fn drop_entry_evicts_half_open_and_idle_single_packet_entries() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1], false);
    // 200 half-open TCP entries.
    for p in 0..200 {
        l.to(tcp(cl(0, 5), 10_000 + p, V, 80, SYN)).unwrap();
    }
    l.set("drop_entry", "3");
    // A scan covers 1/32 of the buckets a second, at random: within the
    // 60 s SYN_RECV timeout each entry is visited with p = 1 - (31/32)^59
    // ≈ 0.85, and a visited SYN_RECV entry goes at once.
    l.wait(59_000);
    let dropped = l.e.counters.defense_dropped_entries;
    assert!((140..=195).contains(&dropped), "{dropped} dropped");
    assert_eq!(l.conns().len() as u64, 200 - dropped);
    // UDP (rate test): entries idle for 60 s go if they saw 1 packet, every
    // second one with 2 packets...; more than 8 packets: kept.
    let mut u = Lab::new(ipproto::UDP, 80, ServiceOptions::default(), &[1], false);
    u.e.set_timeouts(0, 0, 3000).unwrap();
    u.set("drop_entry", "3");
    for p in 0..200 {
        u.to(udp(cl(0, 5), 10_000 + p, V, 80)).unwrap();
    }
    for p in 0..20 {
        for _ in 0..9 {
            u.to(udp(cl(0, 6), 10_000 + p, V, 80)).unwrap();
        }
    }
    u.wait(59_000);
    assert_eq!(u.conns().len(), 220, "entries idle < 60 s are kept");
    u.wait(400_000);
    let left = u.conns();
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|c| c.in_pkts == 9));
}

// ----- nat_icmp_send (§18) -----------------------------------------------

#[test]
fn nat_icmp_send_answers_unmatched_packets_from_real_servers() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1], false);
    let stray = || tcp(rs(1), 8080, cl(0, 9), 5555, ACK);
    // Off: passed on untouched, as the kernel's IP forwarding does.
    let (v, out) = l.send(stray());
    assert_eq!(v, Verdict::Forward { to: ip(cl(0, 9)) });
    let mut want = stray();
    want[8] -= 1;
    assert_eq!(&out[12..], &want[12..], "nothing but the TTL changes");
    assert!(valid(&out));
    l.set("nat_icmp_send", "1");
    assert_eq!(l.send(stray()).0, Verdict::UnreachableToRealServer);
    assert_eq!(l.e.counters.nat_icmp_sent, 1);
    let (v, _) = l.send(tcp(rs(1), 8080, cl(0, 9), 5555, RST));
    assert_eq!(v, Verdict::Forward { to: ip(cl(0, 9)) }, "RST passes");
    // Other ports of the real server, and other hosts, are not concerned.
    assert_eq!(
        l.send(tcp(rs(1), 22, cl(0, 9), 5555, ACK)).0,
        Verdict::NotOurs
    );
    assert_eq!(
        l.send(tcp(rs(2), 8080, cl(0, 9), 5555, ACK)).0,
        Verdict::NotOurs
    );
    assert_eq!(l.send(udp(rs(1), 8080, cl(0, 9), 5555)).0, Verdict::NotOurs);
    l.e.delete_dest(l.key, ip(rs(1)), 8080).unwrap();
    assert_eq!(l.send(stray()).0, Verdict::NotOurs);
}

// ----- SCTP (§10.3) -------------------------------------------------------

#[test]
fn sctp_nat_association_through_the_engine() {
    let mut l = Lab::new(ipproto::SCTP, 80, ServiceOptions::default(), &[1], false);
    let c = cl(0, 5);
    // DATA without an entry is not a new association.
    assert_eq!(
        l.send(sctp_packet(c, 1000, V, 80, &[chunk::DATA])).0,
        Verdict::NotOurs
    );
    // (from the client?, chunk, state, seconds left, dest counters)
    type Step = (bool, u8, &'static str, u64, (u32, u32, u32));
    let steps: [Step; 5] = [
        (true, chunk::INIT, "INIT1", 4, (0, 1, 0)),
        (false, chunk::INIT_ACK, "C-SENT", 61, (0, 1, 0)),
        (true, chunk::COOKIE_ECHO, "C-REPLIED", 61, (0, 1, 0)),
        (false, chunk::COOKIE_ACK, "ESTABLISHED", 900, (1, 0, 0)),
        (true, chunk::SHUTDOWN, "S-RECEIVED", 61, (0, 1, 0)),
    ];
    for (from_client, ch, state, left, counts) in steps {
        let p = if from_client {
            sctp_packet(c, 1000, V, 80, &[ch])
        } else {
            sctp_packet(rs(1), 8080, c, 1000, &[ch])
        };
        let (v, out) = l.send(p);
        assert!(matches!(v, Verdict::Forward { .. }), "{state}: {v:?}");
        assert!(valid(&out), "{state}: CRC32c after NAT");
        let e = l.conns()[0];
        assert_eq!((Engine::state_name(e), l.left(e)), (state, left));
        assert_eq!(l.counts(1), counts, "{state}");
    }
    // ABORT closes; a new INIT on the CLOSED entry is rescheduled (reuse).
    l.send(sctp_packet(c, 1000, V, 80, &[chunk::ABORT]));
    assert_eq!(Engine::state_name(l.conns()[0]), "CLOSED");
    l.to(sctp_packet(c, 1000, V, 80, &[chunk::INIT])).unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "INIT1");
    assert_eq!(l.e.counters.conns, 2);
}

#[test]
fn sloppy_sctp_creates_entries_from_any_chunk_but_abort() {
    let mut l = Lab::new(ipproto::SCTP, 80, ServiceOptions::default(), &[1], false);
    l.set("sloppy_sctp", "1");
    assert_eq!(
        l.send(sctp_packet(cl(0, 5), 1, V, 80, &[chunk::ABORT])).0,
        Verdict::NotOurs
    );
    l.to(sctp_packet(cl(0, 5), 2, V, 80, &[chunk::DATA]))
        .unwrap();
    assert_eq!(Engine::state_name(l.conns()[0]), "ESTABLISHED");
}

// ----- service lookup corners (§4, §7) ------------------------------------

#[test]
fn ftp_services_catch_data_ports_and_client_port_20_is_left_alone() {
    // Non-persistent port-21 service: data to a high port finds the service
    // through the FTP fallback, makes no entry and is passed to the host,
    // whose stack (the VIP is its own on a kernel director) resets it.
    let reset = Verdict::Reply(Reply::TcpReset);
    let mut l = Lab::new(ipproto::TCP, 21, ServiceOptions::default(), &[1, 2], false);
    assert!(l.to(tcp(cl(0, 5), 1000, V, 21, SYN)).is_some());
    assert_eq!(l.send(tcp(cl(0, 5), 1001, V, 40000, SYN)).0, reset);
    // Below 1024 (and not 20) there is no fallback: no service, the host's.
    assert_eq!(l.send(tcp(cl(0, 5), 1002, V, 990, SYN)).0, reset);
    // A client's source port 20 is never scheduled (§7 step 1).
    assert_eq!(l.send(tcp(cl(0, 5), 20, V, 21, SYN)).0, reset);
    assert_eq!(l.conns().len(), 1);
    // Persistent: control and passive data share one template (vport 0),
    // so the data connection goes to the control connection's server,
    // on the port the client asked for.
    let opts = ServiceOptions {
        persistent: Some(300),
        netmask: MASK32,
        one_packet: false,
    };
    let mut l = Lab::new(ipproto::TCP, 21, opts, &[1, 2], false);
    let ctl = l.to(tcp(cl(0, 5), 1000, V, 21, SYN)).unwrap();
    let (v, out) = l.send(tcp(cl(0, 5), 1001, V, 40000, SYN));
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    assert_eq!(dst_of(&out), (rs(ctl), 40000));
    let t = l.templates();
    assert_eq!((t.len(), t[0].vport, t[0].dport), (1, 0, 0));
}

// ----- memory after a flood ------------------------------------------------

#[test]
fn a_drained_flood_gives_its_memory_back_and_traffic_goes_on() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
    // 20,000 half-open entries from 200 clients.
    for c in 0..200u16 {
        for p in 0..100u16 {
            let src = cl(1 + (c / 250) as u8, (c % 250) as u8 + 1);
            l.to(tcp(src, 20_000 + p, V, 80, SYN)).unwrap();
        }
    }
    assert_eq!(l.entries().len(), 20_000);
    let grown = l.e.connection_slots();
    assert!(grown >= 20_000, "{grown} slots");
    // A connection made at the end of the flood (so at a high id) outlives
    // it: the table is compacted around it.
    let rs_n = l.to(tcp(cl(0, 7), 5000, V, 80, SYN)).unwrap();
    assert_eq!(l.to(tcp(cl(0, 7), 5000, V, 80, ACK)), Some(rs_n));
    l.wait(61_000);
    assert_eq!(l.entries().len(), 1);
    assert_eq!(l.e.counters.memory_given_back, 1);
    let slots = l.e.connection_slots();
    assert!(slots < 2048, "{slots} slots after the drain");
    // The moved entry is still found in both directions and still expires.
    assert_eq!(l.to(tcp(cl(0, 7), 5000, V, 80, ACK)), Some(rs_n));
    let reply = tcp(rs(rs_n), 8080, cl(0, 7), 5000, ACK);
    assert!(matches!(l.send(reply).0, Verdict::Forward { .. }));
    assert!(l.to(tcp(cl(0, 8), 6000, V, 80, SYN)).is_some());
    l.wait(901_000);
    assert!(l.entries().is_empty());
}

/// While a listing by slot is in progress (`hold_compaction`), a drained
/// table is not compacted (entries would move past the listing's cursor);
/// once released, it is.
#[test]
fn held_compaction_waits_for_the_listing() {
    let mut l = Lab::new(ipproto::TCP, 80, ServiceOptions::default(), &[1, 2], false);
    for c in 0..100u16 {
        for p in 0..100u16 {
            l.to(tcp(
                cl(1, (c % 250) as u8 + 1),
                20_000 + p + 100 * (c / 250),
                V,
                80,
                SYN,
            ))
            .unwrap();
        }
    }
    let rs_n = l.to(tcp(cl(0, 7), 5000, V, 80, SYN)).unwrap();
    l.to(tcp(cl(0, 7), 5000, V, 80, ACK)).unwrap();
    let grown = l.e.connection_slots();
    l.e.hold_compaction(true);
    l.wait(61_000);
    assert_eq!(l.entries().len(), 1);
    assert_eq!(
        l.e.counters.memory_given_back, 0,
        "no compaction while held"
    );
    // The listing by slot finds the entry that stayed.
    let (found, next) = l.e.connections_chunk(0, 10);
    assert_eq!((found.len(), next), (1, None));
    l.e.hold_compaction(false);
    l.wait(2_000);
    assert_eq!(l.e.counters.memory_given_back, 1);
    assert!(l.e.connection_slots() < grown);
    assert_eq!(l.to(tcp(cl(0, 7), 5000, V, 80, ACK)), Some(rs_n));
}

#[test]
fn compaction_keeps_templates_and_the_entries_they_control() {
    let mut l = Lab::persistent(ipproto::TCP, 3600, MASK32, &[1, 2, 3]);
    for c in 0..250u8 {
        for p in 0..30u16 {
            l.to(tcp(cl(1, c), 20_000 + p, V, 80, SYN)).unwrap();
        }
    }
    // Clients with long-lived connections, made last (high ids).
    let mut chosen = Vec::new();
    for c in 1..=20u8 {
        let rs = l.to(tcp(cl(0, c), 5000, V, 80, SYN)).unwrap();
        l.to(tcp(cl(0, c), 5000, V, 80, ACK)).unwrap();
        chosen.push(rs);
    }
    // The half-open entries go at 60 s; their templates are persistent for
    // an hour, so the table keeps 250 + 20 templates and 20 connections.
    l.wait(61_000);
    assert_eq!(l.conns().len(), 20);
    assert_eq!(l.templates().len(), 270);
    assert!(l.e.counters.memory_given_back >= 1);
    assert!(l.e.connection_slots() < 2048);
    // Persistence still holds for every client, and templates still count
    // the connections they control.
    for c in 1..=20u8 {
        let rs = l.to(tcp(cl(0, c), 6000, V, 80, SYN)).unwrap();
        assert_eq!(rs, chosen[usize::from(c) - 1], "client {c}");
    }
    for c in 0..250u8 {
        let rs = l.to(tcp(cl(1, c), 7000, V, 80, SYN));
        assert!(rs.is_some());
    }
    assert!(l.templates().iter().all(|t| t.n_control <= 2));
    assert_eq!(
        l.templates()
            .iter()
            .map(|t| u64::from(t.n_control))
            .sum::<u64>(),
        l.conns().len() as u64
    );
}
