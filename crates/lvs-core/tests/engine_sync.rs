//! Connection sync through the engine (sync-protocol.md §5, §6): what a
//! backup makes of received entries — created, updated, bound to its own
//! real servers with its own forwarding method, timed by the entry's
//! timeout or its own — and what a master queues and when.

use lvs_core::conn::Conn;
use lvs_core::sync::codec::{wire_flags as wf, Builder, Entry, MessageFault};
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, ServiceOptions};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: u8, addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: proto,
        addr: ip(addr),
        port,
    }
}

fn dest(addr: &str, port: u16, forward: Forward) -> DestConfig {
    DestConfig {
        addr: ip(addr),
        port,
        forward,
        tunnel: Default::default(),
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// A backup with a DR service 198.18.0.100:80 (two servers) and a
/// persistent NAT service 198.18.0.101:443 (/24).
fn backup() -> Engine {
    let mut e = Engine::new(1);
    let web = key(6, "198.18.0.100", 80);
    e.add_service(web, "rr", 0).unwrap();
    for a in ["198.18.1.11", "198.18.1.12"] {
        e.add_dest(web, dest(a, 80, Forward::Route)).unwrap();
    }
    let tls = key(6, "198.18.0.101", 443);
    let opts = ServiceOptions {
        persistent: Some(360),
        netmask: 0xFFFF_FF00,
        ..Default::default()
    };
    e.add_service_with(tls, "rr", 0, opts).unwrap();
    e.add_dest(tls, dest("198.18.1.11", 443, Forward::Masq))
        .unwrap();
    e
}

fn entry(flags: u32, state: u16, timeout: u32) -> Entry<'static> {
    Entry {
        protocol: 6,
        flags,
        state,
        cport: 51234,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout,
        caddr: ip("198.18.0.2"),
        vaddr: ip("198.18.0.100"),
        daddr: ip("198.18.1.11"),
        seq: None,
        pe_data: None,
        pe_name: None,
    }
}

fn message(version: u8, syncid: u8, entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = Builder::new(version, syncid, 1472);
    for e in entries {
        assert!(b.push(e));
    }
    b.bytes().to_vec()
}

fn conns(e: &Engine) -> Vec<Conn> {
    let mut v: Vec<Conn> = e.connections().cloned().collect();
    v.sort_by_key(|c| (c.vport, c.cport));
    v
}

fn counts(e: &Engine, svc: ServiceKey, addr: &str) -> (u32, u32, u32) {
    let (_, dests) = e.services().find(|(s, _)| s.key == svc).unwrap();
    let d = dests.iter().find(|d| d.addr == ip(addr)).unwrap();
    (d.active_conns, d.inact_conns, d.persist_conns)
}

#[test]
fn a_backup_creates_the_connection_with_its_own_forwarding_method() {
    let mut e = backup();
    // Sent by a NAT master (flags 0): the backup's server is DR.
    e.apply_sync(&message(1, 7, &[entry(0, 1, 900)]), 0, 1000)
        .unwrap();
    let c = &conns(&e)[0];
    assert_eq!((c.daddr, c.dport, c.state), (ip("198.18.1.11"), 80, 1));
    assert_eq!(c.flags & 0x7, Forward::Route as u32);
    assert_eq!(
        c.flags & (wf::SYNC | wf::NOOUTPUT | wf::INACTIVE),
        wf::SYNC | wf::NOOUTPUT
    );
    assert_eq!(c.timeout_ms, 900_000);
    assert_eq!(c.expires, 1000 + 900_000);
    assert_eq!(c.in_pkts, 3, "in_pkts := sync_threshold");
    assert_eq!(
        counts(&e, key(6, "198.18.0.100", 80), "198.18.1.11"),
        (1, 0, 0)
    );
    assert_eq!(e.sync_counters().entries_created, 1);
    // Synced connections are not scheduled here: no statistics.
    assert_eq!(e.counters.conns, 0);
}

#[test]
fn updates_take_inactive_and_restart_the_timer() {
    let mut e = backup();
    e.apply_sync(&message(1, 0, &[entry(0, 1, 900)]), 0, 0)
        .unwrap();
    // FIN_WAIT, inactive, 120 s: the count moves to InActConn.
    e.apply_sync(&message(1, 0, &[entry(wf::INACTIVE, 4, 120)]), 0, 5000)
        .unwrap();
    let c = &conns(&e)[0];
    assert_eq!((c.state, c.timeout_ms, c.expires), (4, 120_000, 125_000));
    assert_eq!(c.flags & 0x7, Forward::Route as u32, "the method stays");
    assert_eq!(
        counts(&e, key(6, "198.18.0.100", 80), "198.18.1.11"),
        (0, 1, 0)
    );
    assert_eq!(e.sync_counters().entries_updated, 1);
    assert_eq!(e.connections().count(), 1);
}

#[test]
fn another_server_replaces_the_entry_unless_the_news_is_inactive() {
    let mut e = backup();
    e.apply_sync(&message(1, 0, &[entry(0, 1, 900)]), 0, 0)
        .unwrap();
    let mut moved = entry(wf::INACTIVE, 4, 120);
    moved.daddr = ip("198.18.1.12");
    e.apply_sync(&message(1, 0, &[moved]), 0, 1).unwrap();
    assert_eq!(
        conns(&e)[0].daddr,
        ip("198.18.1.11"),
        "inactive news ignored"
    );
    assert_eq!(e.sync_counters().entries_ignored, 1);
    moved.flags = 0;
    moved.state = 1;
    e.apply_sync(&message(1, 0, &[moved]), 0, 2).unwrap();
    let all = conns(&e);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].daddr, ip("198.18.1.12"));
    let web = key(6, "198.18.0.100", 80);
    assert_eq!(counts(&e, web, "198.18.1.11"), (0, 0, 0));
    assert_eq!(counts(&e, web, "198.18.1.12"), (1, 0, 0));
}

#[test]
fn own_timeouts_for_v0_and_timeoutless_entries_and_180_s_for_templates() {
    let mut e = backup();
    e.set_timeouts(700, 0, 0).unwrap();
    e.apply_sync(&message(0, 0, &[entry(0, 1, 0)]), 0, 0)
        .unwrap();
    assert_eq!(
        conns(&e)[0].timeout_ms,
        700_000,
        "v0: the backup's own timeout"
    );
    let mut t = entry(wf::TEMPLATE | wf::INACTIVE, 1, 0);
    t.cport = 0;
    t.vaddr = ip("198.18.0.101");
    t.vport = 443;
    t.dport = 443;
    t.caddr = ip("198.18.0.0");
    e.apply_sync(&message(1, 0, &[t]), 0, 0).unwrap();
    let tmpl = conns(&e).into_iter().find(|c| c.is_template()).unwrap();
    assert_eq!(tmpl.timeout_ms, 180_000);
    assert_eq!(tmpl.flags & 0x7, Forward::Masq as u32);
    assert_eq!(
        counts(&e, key(6, "198.18.0.101", 443), "198.18.1.11"),
        (0, 0, 1)
    );
}

#[test]
fn unknown_services_give_unbound_entries_and_bad_entries_are_skipped() {
    let mut e = backup();
    let mut other = entry(0x83, 1, 900);
    other.vaddr = ip("198.18.0.200");
    let mut bad_state = entry(0, 11, 900);
    bad_state.cport = 1;
    e.apply_sync(&message(1, 0, &[other, bad_state, entry(0, 1, 900)]), 0, 0)
        .unwrap();
    let all = conns(&e);
    assert_eq!(
        all.len(),
        2,
        "the state-11 entry is skipped, the next applied"
    );
    let unbound = all.iter().find(|c| c.vaddr == ip("198.18.0.200")).unwrap();
    assert!(unbound.dest().is_none());
    assert_eq!(unbound.flags & 0x7, 3, "the entry's own method");
    assert_eq!(e.sync_counters().entries_skipped, 1);
}

#[test]
fn refused_messages_are_counted_by_reason() {
    let mut e = backup();
    let m = message(1, 7, &[entry(0, 1, 900)]);
    assert_eq!(e.apply_sync(&m, 8, 0), Err(MessageFault::SyncId));
    assert_eq!(
        e.apply_sync(&m[..m.len() - 1], 0, 0),
        Err(MessageFault::SizeMismatch)
    );
    assert_eq!(e.sync_counters().dropped[MessageFault::SyncId as usize], 1);
    assert_eq!(
        e.sync_counters().dropped[MessageFault::SizeMismatch as usize],
        1
    );
    assert_eq!(e.connections().count(), 0);
}

mod support;

use lvs_core::sync::codec::{Item, Message};
use lvs_core::sync::MasterConfig;
use lvs_core::wire::tcp_flags::{ACK, FIN, SYN};

/// A master with a DR service on 198.18.0.100:80 (persistent if asked).
fn master(persistent: bool) -> Engine {
    let mut e = Engine::new(1);
    let web = key(6, "198.18.0.100", 80);
    let opts = ServiceOptions {
        persistent: persistent.then_some(300),
        netmask: 0xFFFF_FFFF,
        ..Default::default()
    };
    e.add_service_with(web, "rr", 0, opts).unwrap();
    e.add_dest(web, dest("198.18.1.11", 80, Forward::Route))
        .unwrap();
    e.start_sync_master(MasterConfig {
        syncid: 7,
        maxlen: 1472,
        ports: 1,
    });
    e
}

fn send(e: &mut Engine, now: u64, flags: u8) {
    let mut p = support::tcp([198, 18, 0, 2], 40000, [198, 18, 0, 100], 80, flags);
    e.process_ipv4(now, &mut p, false);
}

/// Every entry of the messages ready at `now`: (template?, state, flags).
fn sent(e: &mut Engine, now: u64) -> Vec<(bool, u16, u32, u32)> {
    let mut v = Vec::new();
    while let Some(m) = e.pop_sync_message(now) {
        let msg = Message::parse(&m.bytes, 7).unwrap();
        assert_eq!((msg.version, msg.syncid), (1, 7));
        for item in msg.entries() {
            let Item::Entry(x) = item else {
                panic!("{item:?}")
            };
            v.push((x.flags & wf::TEMPLATE != 0, x.state, x.flags, x.timeout));
        }
        e.recycle_sync_buffer(m.bytes);
    }
    v
}

#[test]
fn a_master_sends_at_the_third_packet_and_on_closing_state_changes() {
    let mut e = master(false);
    send(&mut e, 0, SYN);
    send(&mut e, 10, ACK);
    assert!(
        sent(&mut e, 2000).is_empty(),
        "nothing before the 3rd packet"
    );
    send(&mut e, 20, ACK);
    assert!(sent(&mut e, 1000).is_empty(), "held until 2 s old");
    // DR, established: 0x83, the full timeout.
    assert_eq!(sent(&mut e, 2020), vec![(false, 1, 0x83, 900)]);
    send(&mut e, 3000, ACK);
    assert!(sent(&mut e, 6000).is_empty(), "4th packet: not 53rd");
    send(&mut e, 6000, FIN | ACK);
    let fin = sent(&mut e, 8000);
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].1, 4, "FIN_WAIT forces a send");
    for i in 0..50 {
        send(&mut e, 9000 + i, ACK);
    }
    // Packets 6..=55 include the 53rd.
    assert_eq!(sent(&mut e, 20_000).len(), 1);
    assert_eq!(e.sync_counters().entries_sent, 3);
}

#[test]
fn a_template_follows_every_evaluated_packet() {
    let mut e = master(true);
    for (t, f) in [(0, SYN), (10, ACK), (20, ACK)] {
        send(&mut e, t, f);
    }
    let v = sent(&mut e, 5000);
    let kinds: Vec<(bool, u16)> = v.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(kinds, vec![(true, 0), (true, 1), (false, 1), (true, 1)]);
    assert_eq!(v[0].2, 0x1183, "DR template flags");
    assert_eq!(v[0].3, 300, "the persistence timeout");
}

#[test]
fn what_a_master_sends_a_backup_rebuilds() {
    let mut m = master(true);
    let mut b = Engine::new(2);
    let web = key(6, "198.18.0.100", 80);
    let opts = ServiceOptions {
        persistent: Some(300),
        netmask: 0xFFFF_FFFF,
        ..Default::default()
    };
    b.add_service_with(web, "rr", 0, opts).unwrap();
    b.add_dest(web, dest("198.18.1.11", 80, Forward::Route))
        .unwrap();
    for (t, f) in [(0, SYN), (10, ACK), (20, ACK)] {
        send(&mut m, t, f);
    }
    while let Some(msg) = m.pop_sync_message(3000) {
        b.apply_sync(&msg.bytes, 7, 3000).unwrap();
    }
    let view = |e: &Engine| {
        let mut v: Vec<_> = e
            .connections()
            .map(|c| {
                (
                    c.protocol,
                    c.caddr,
                    c.cport,
                    c.vaddr,
                    c.vport,
                    c.daddr,
                    c.dport,
                    c.state,
                    c.flags & !wf::SYNC,
                )
            })
            .collect();
        v.sort_by_key(|x| x.2);
        v
    };
    assert_eq!(view(&m), view(&b));
    assert!(b.connections().all(|c| c.flags & wf::SYNC != 0));
}

#[test]
fn backup_only_leaves_client_packets_to_the_host_while_a_backup_runs() {
    let mut e = master(false);
    e.stop_sync_master();
    e.set_sysctl("backup_only", "1").unwrap();
    send(&mut e, 0, SYN);
    assert_eq!(e.connections().count(), 1, "no backup running: directing");
    e.set_sync_backup(true);
    let mut p = support::tcp([198, 18, 0, 3], 40000, [198, 18, 0, 100], 80, SYN);
    let v = e.process_ipv4(10, &mut p, false);
    assert_eq!(v, lvs_core::Verdict::NotOurs, "{v:?}");
    assert_eq!(e.connections().count(), 1);
    e.set_sysctl("backup_only", "0").unwrap();
    let mut p = support::tcp([198, 18, 0, 3], 40000, [198, 18, 0, 100], 80, SYN);
    e.process_ipv4(20, &mut p, false);
    assert_eq!(e.connections().count(), 2);
}

#[test]
fn a_full_copy_sends_every_entry_at_once_and_a_backup_rebuilds_the_table() {
    let mut m = master(true);
    for c in 1..=200u8 {
        for (t, f) in [(0, SYN), (10, ACK)] {
            let mut p = support::tcp([198, 18, 3, c], 40000, [198, 18, 0, 100], 80, f);
            m.process_ipv4(t, &mut p, false);
        }
    }
    // Two packets each: nothing due under the kernel's rules but the
    // templates.
    while let Some(x) = m.pop_sync_message(5000) {
        m.recycle_sync_buffer(x.bytes);
    }
    let mut b = backup_like_master();
    m.begin_full_sync();
    let mut steps = 0;
    while m.full_sync_running() {
        m.pump_full_sync(6000, 64);
        steps += 1;
        // Full messages and the last one go at once, no 2 s wait.
        while let Some(x) = m.pop_sync_message(6000) {
            b.apply_sync(&x.bytes, 7, 6000).unwrap();
        }
    }
    assert_eq!(steps, 400 / 64 + 1);
    assert_eq!(b.connections().count(), 400);
    let key = |c: &Conn| (c.caddr, c.cport, c.vport, c.daddr, c.state, c.is_template());
    let mut want: Vec<_> = m.connections().map(key).collect();
    let mut got: Vec<_> = b.connections().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

fn backup_like_master() -> Engine {
    let mut e = Engine::new(3);
    let web = key(6, "198.18.0.100", 80);
    let opts = ServiceOptions {
        persistent: Some(300),
        netmask: 0xFFFF_FFFF,
        ..Default::default()
    };
    e.add_service_with(web, "rr", 0, opts).unwrap();
    e.add_dest(web, dest("198.18.1.11", 80, Forward::Route))
        .unwrap();
    e
}

#[test]
fn a_resync_request_reads_as_an_empty_v0_message_to_a_kernel_peer() {
    let mut req = lvs_core::sync::RESYNC_REQUEST;
    req[1] = 7;
    let m = Message::parse(&req, 7).unwrap();
    assert_eq!((m.version, m.count), (0, 0));
    assert_eq!(m.entries().count(), 0);
    assert!(lvs_core::sync::is_resync_request(&req, 7));
    assert!(lvs_core::sync::is_resync_request(&req, 0));
    assert!(!lvs_core::sync::is_resync_request(&req, 8));
}

#[test]
fn a_template_kept_for_its_connections_is_sent_again_when_its_timer_runs_out() {
    let mut e = master(true);
    for (t, f) in [(0, SYN), (10, ACK), (20, ACK)] {
        send(&mut e, t, f);
    }
    assert_eq!(sent(&mut e, 5000).len(), 4);
    // The persistence timeout (300 s) runs out while the connection
    // (ESTABLISHED, 900 s) still uses the template: kept for 60 s, and
    // sent with that timeout.
    let mut now = 5000;
    while now < 301_000 {
        now += 100;
        e.handle_timeout(now);
    }
    let v = sent(&mut e, now + 3000);
    assert_eq!(v, vec![(true, 1, 0x1183, 60)]);
}

#[test]
fn an_entry_bound_to_another_method_is_indexed_by_its_own_reply_key() {
    let mut e = backup();
    // The master sent it as DR; this backup's server is NAT.
    let mut x = entry(0x83, 1, 900);
    x.vaddr = ip("198.18.0.101");
    x.vport = 443;
    x.dport = 443;
    e.apply_sync(&message(1, 0, &[x]), 0, 0).unwrap();
    assert_eq!(conns(&e)[0].flags & 0x7, Forward::Masq as u32);
    // The real server's reply finds it and is translated.
    let mut p = support::tcp([198, 18, 1, 11], 443, [198, 18, 0, 2], 51234, ACK);
    let v = e.process_ipv4(10, &mut p, false);
    assert!(matches!(v, lvs_core::Verdict::Forward { .. }), "{v:?}");
    // An unbound entry bound by a later update is re-keyed too.
    let mut y = x;
    y.cport = 60000;
    y.vaddr = ip("198.18.0.200");
    e.apply_sync(&message(1, 0, &[y]), 0, 20).unwrap();
    // Expiry removes both cleanly.
    let mut now = 20;
    while now < 1_000_000 {
        now += 1000;
        e.handle_timeout(now);
    }
    assert_eq!(e.connections().count(), 0);
}
