//! End-to-end: connection sync between two real lvsd directors. The
//! master directs real client traffic and multicasts its connections
//! (224.0.0.81:8848, TTL 1) on the peer link; the backup, in its own
//! namespace with the same services, builds the same connection table.
//!
//! Needs root and curl.

mod support;

use lvs_lab::Lab;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{counter, curl_args, lvsadm, lvsadm_ok, nat_lab, Director};

const SERVICES: &str = "director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:80
    server rs2 198.18.1.12:80

director dns 198.18.0.100:53 UDP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:53
    server rs2 198.18.1.12:53
";

/// The entries of `lvsadm -L -n -c`, without the remaining time.
fn table(sock: &Path) -> BTreeSet<String> {
    lvsadm_ok(sock, &["-L", "-n", "-c"])
        .lines()
        .skip(2)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", w[0], w[2], w[3], w[4], w[5])
        })
        .collect()
}

fn udp_flow(lab: &Lab, port: u16, datagrams: usize) {
    let s = lab
        .run_in(lab.client_ns(), move || {
            UdpSocket::bind(("198.18.0.2", port))
        })
        .expect("client namespace")
        .expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..datagrams {
        s.send_to(b"who?\n", "198.18.0.100:53").unwrap();
        s.recv(&mut buf).expect("an answer");
    }
}

#[test]
fn a_backup_builds_the_masters_connection_table() {
    let (_g, mut lab) = nat_lab("lvtsync", 2);
    let peer = lab.add_peer().expect("peer namespace").to_string();
    let _servers = lab.start_identity_servers(80, 53).expect("real servers");
    let master = Director::start(
        &lab,
        "syncm",
        &format!("interface d0\ninterface br1\n{SERVICES}"),
    );
    // The backup's daemon from its configuration, the master's with lvsadm.
    let backup = Director::start_in(
        &lab,
        &peer,
        "syncb",
        &format!("interface s0\nsync backup interface s0 syncid 7\n{SERVICES}"),
    );
    lvsadm_ok(
        &master.sock,
        &[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "s0",
            "--syncid",
            "7",
        ],
    );
    assert_eq!(
        lvsadm_ok(&master.sock, &["-L", "--daemon"]),
        "master sync daemon (mcast=s0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    assert_eq!(
        lvsadm_ok(&backup.sock, &["-L", "--daemon"]),
        "backup sync daemon (mcast=s0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let (code, _, err) = lvsadm(
        &master.sock,
        &["--start-daemon", "master", "--mcast-interface", "s0"],
    );
    assert_eq!((code, err.as_str()), (255, "Daemon has already run\n"));
    let (code, _, err) = lvsadm(
        &master.sock,
        &["--start-daemon", "backup", "--mcast-interface", "nosuch0"],
    );
    assert_eq!((code, err.as_str()), (255, "No such device\n"));

    for i in 0..6 {
        let p = (41000 + i).to_string();
        curl_args(&lab, "http://198.18.0.100/", &["--local-port", &p]).expect("request");
    }
    for i in 0..4 {
        udp_flow(&lab, 42000 + i, 3);
    }
    let want = table(&master.sock);
    assert_eq!(want.len(), 10, "{want:#?}");
    // Partly filled messages leave within 2–3 s.
    let t0 = Instant::now();
    let got = loop {
        let got = table(&backup.sock);
        if got == want || t0.elapsed() > Duration::from_secs(8) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(got, want, "backup table differs from the master's");
    let sync_view = lvsadm_ok(&backup.sock, &["--proc", "ip_vs_conn_sync"]);
    assert!(
        sync_view.lines().skip(1).all(|l| l.contains(" SYNC ")),
        "{sync_view}"
    );
    let mc = lvsadm_ok(&master.sock, &["--counters"]);
    let bc = lvsadm_ok(&backup.sock, &["--counters"]);
    assert!(counter(&mc, "sync.messages_sent") >= 1, "{mc}");
    assert!(counter(&bc, "sync.messages_received") >= 1, "{bc}");
    assert_eq!(counter(&bc, "sync.entries_created"), 10, "{bc}");
    assert_eq!(counter(&bc, "sync.drop_sync_id"), 0, "{bc}");

    lvsadm_ok(&backup.sock, &["--stop-daemon", "backup"]);
    let (code, _, err) = lvsadm(&backup.sock, &["--stop-daemon", "backup"]);
    assert_eq!((code, err.as_str()), (255, "No daemon is running\n"));
    assert_eq!(lvsadm_ok(&backup.sock, &["-L", "--daemon"]), "");
    backup.stop(&lab);
    master.stop(&lab);
    lab.close().expect("clean up the lab");
}
