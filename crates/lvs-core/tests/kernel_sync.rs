//! Interoperability with a kernel sync master (sync-protocol.md §5): the
//! messages a Linux 6.18 master sent for real NAT, UDP and persistent DR
//! traffic (`crates/lvsd/tests/vectors/sync/kernel-master/`, recorded with
//! `record.sh` there) are applied to an engine configured like the kernel
//! backup that received the same messages (`kernel/`, recorded with
//! `tools/oracle-sync/backup.sh`). The resulting connection table — client,
//! VIP, server, state, remaining time — and the per-server counters must be
//! the kernel backup's.

use lvs_core::conn::Conn;
use lvs_core::{DestConfig, Engine, Forward, ServiceKey, ServiceOptions};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lvsd/tests/vectors/sync/kernel-master")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn addrport(s: &str) -> (IpAddr, u16) {
    let (a, p) = s.rsplit_once(':').unwrap();
    (a.parse().unwrap(), p.parse().unwrap())
}

/// An engine with the services of `ipvsadm -S -n` output (the subset of
/// options the recording uses).
fn configured(save: &str) -> Engine {
    let mut e = Engine::new(9);
    for line in save.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let protocol = match w[1] {
            "-t" => 6,
            "-u" => 17,
            other => panic!("{other}"),
        };
        let (addr, port) = addrport(w[2]);
        let key = ServiceKey {
            protocol,
            addr,
            port,
        };
        let opt = |name: &str| w.iter().position(|x| *x == name).map(|i| w[i + 1]);
        match w[0] {
            "-A" => {
                let opts = ServiceOptions {
                    persistent: opt("-p").map(|p| p.parse().unwrap()),
                    netmask: opt("-M").map_or(0xFFFF_FFFF, |m| {
                        u32::from(m.parse::<std::net::Ipv4Addr>().unwrap())
                    }),
                    ..Default::default()
                };
                e.add_service_with(key, opt("-s").unwrap(), 0, opts)
                    .unwrap();
            }
            "-a" => {
                let (raddr, rport) = addrport(opt("-r").unwrap());
                let forward = if w.contains(&"-m") {
                    Forward::Masq
                } else {
                    Forward::Route
                };
                e.add_dest(
                    key,
                    DestConfig {
                        addr: raddr,
                        port: rport,
                        forward,
                        tunnel: Default::default(),
                        weight: opt("-w").unwrap().parse().unwrap(),
                        u_threshold: 0,
                        l_threshold: 0,
                    },
                )
                .unwrap();
            }
            other => panic!("{other}"),
        }
    }
    e
}

/// `ipvsadm -L -n -c` lines as (pro, state, source, virtual, destination)
/// and the remaining seconds.
fn kernel_table(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .skip(2)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (m, s) = w[1].split_once(':').unwrap();
            let left = m.parse::<u64>().unwrap() * 60 + s.parse::<u64>().unwrap();
            (
                format!("{} {} {} {} {}", w[0], w[2], w[3], w[4], w[5]),
                left,
            )
        })
        .collect()
}

fn endpoint(a: IpAddr, p: u16) -> String {
    format!("{a}:{p}")
}

fn our_table(e: &Engine, now: u64) -> Vec<(String, u64)> {
    e.connections()
        .map(|c: &Conn| {
            let pro = match c.protocol {
                6 => "TCP",
                17 => "UDP",
                _ => "IP",
            };
            (
                format!(
                    "{pro} {} {} {} {}",
                    Engine::state_name(c),
                    endpoint(c.caddr, c.cport),
                    endpoint(c.vaddr, c.vport),
                    endpoint(c.daddr, c.dport)
                ),
                c.expires.saturating_sub(now) / 1000,
            )
        })
        .collect()
}

#[test]
fn a_kernel_masters_messages_build_the_kernel_backups_table() {
    let mut e = configured(&read("config.txt"));
    // The backup received the messages 50 ms apart and was read about
    // 1.5 s after the last one (kernel/read_at.txt).
    let mut now = 1000;
    for name in ["000.bin", "001.bin"] {
        let msg = std::fs::read(dir().join("messages").join(name)).unwrap();
        e.apply_sync(&msg, 0, now).expect("accepted");
        now += 50;
    }
    let read_at = now - 50 + 1500;
    let kernel = kernel_table(&read("kernel/conns.txt"));
    let ours = our_table(&e, read_at);
    let names = |t: &[(String, u64)]| t.iter().map(|x| x.0.clone()).collect::<BTreeSet<_>>();
    assert_eq!(names(&ours), names(&kernel), "the entries differ");
    for (k, left) in &kernel {
        let o = ours.iter().find(|x| &x.0 == k).unwrap().1;
        assert!(o.abs_diff(*left) <= 1, "{k}: ours {o} s, kernel {left} s");
    }
    // The per-server counters of `ipvsadm -L -n --persistent-conn`.
    let mut want = BTreeSet::new();
    let mut svc = String::new();
    for l in read("kernel/persistent-conn.txt").lines().skip(3) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w[0] == "->" {
            want.insert(format!("{svc} {} {} {} {}", w[1], w[3], w[4], w[5]));
        } else {
            svc = format!("{} {}", w[0], w[1]);
        }
    }
    let mut got = BTreeSet::new();
    for (s, dests) in e.services() {
        let pro = if s.key.protocol == 6 { "TCP" } else { "UDP" };
        for d in dests {
            got.insert(format!(
                "{pro} {} {} {} {} {}",
                endpoint(s.key.addr, s.key.port),
                endpoint(d.addr, d.port),
                d.persist_conns,
                d.active_conns,
                d.inact_conns
            ));
        }
    }
    assert_eq!(got, want);
    assert_eq!(e.sync_counters().received, 2);
    assert_eq!(
        e.sync_counters().entries_created + e.sync_counters().entries_updated,
        19
    );
}

#[path = "support/mod.rs"]
mod support;

use lvs_core::sync::MasterConfig;
use lvs_core::wire::tcp_flags::{ACK, FIN, SYN};

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lvsd/tests/vectors/sync/lvsd-master")
}

/// An lvsd master directing the recording's traffic (the same services):
/// the messages it sends and its own table when the last one left.
fn lvsd_master() -> (Vec<Vec<u8>>, Vec<(String, u64)>) {
    let mut e = configured(&read("config.txt"));
    e.start_sync_master(MasterConfig {
        syncid: 7,
        maxlen: 1472,
        ports: 1,
    });
    let vip = [198, 18, 0, 100];
    let mut now = 0;
    let mut msgs = Vec::new();
    let mut step = |e: &mut Engine, now: &mut u64, mut p: Vec<u8>| {
        *now += 10;
        e.process_ipv4(*now, &mut p, false);
        while let Some(m) = e.pop_sync_message(*now) {
            msgs.push(m.bytes);
        }
    };
    // Four NAT connections, three UDP flows, two DR clients of one /24.
    for c in 1..=4u8 {
        for f in [SYN, ACK, ACK | 0x08] {
            step(
                &mut e,
                &mut now,
                support::tcp([198, 18, 2, c], 40000 + u16::from(c), vip, 80, f),
            );
        }
    }
    for c in 5..=7u8 {
        for _ in 0..3 {
            step(
                &mut e,
                &mut now,
                support::udp([198, 18, 2, c], 41000 + u16::from(c), vip, 53),
            );
        }
    }
    for c in 21..=22u8 {
        for f in [SYN, ACK, ACK | 0x08] {
            step(
                &mut e,
                &mut now,
                support::tcp(
                    [198, 18, 2, c],
                    42000 + u16::from(c),
                    [198, 18, 0, 101],
                    443,
                    f,
                ),
            );
        }
    }
    // Two clients close.
    for c in 3..=4u8 {
        step(
            &mut e,
            &mut now,
            support::tcp([198, 18, 2, c], 40000 + u16::from(c), vip, 80, FIN | ACK),
        );
    }
    now += 3000;
    while let Some(m) = e.pop_sync_message(now) {
        msgs.push(m.bytes);
    }
    let table = our_table(&e, now);
    (msgs, table)
}

/// The other way: what an lvsd master sends, a kernel backup turns into
/// the master's table (kernel/ written by `tools/oracle-sync/backup.sh`
/// from `messages/`). `LVSD_WRITE_SYNC_VECTORS=1` rewrites `messages/`
/// (then record `kernel/` again).
#[test]
fn a_kernel_backup_builds_an_lvsd_masters_table() {
    let (msgs, table) = lvsd_master();
    let dir = out_dir().join("messages");
    if std::env::var_os("LVSD_WRITE_SYNC_VECTORS").is_some() {
        for (i, m) in msgs.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:03}.bin")), m).unwrap();
        }
    }
    for (i, m) in msgs.iter().enumerate() {
        let committed = std::fs::read(dir.join(format!("{i:03}.bin"))).unwrap();
        assert_eq!(&committed, m, "message {i} changed: record kernel/ again");
    }
    let Ok(kernel) = std::fs::read_to_string(out_dir().join("kernel/conns.txt")) else {
        panic!(
            "no kernel/conns.txt: run tools/oracle-sync/backup.sh on {}",
            out_dir().display()
        );
    };
    let names = |t: &[(String, u64)]| t.iter().map(|x| x.0.clone()).collect::<BTreeSet<_>>();
    assert_eq!(names(&kernel_table(&kernel)), names(&table));
}
