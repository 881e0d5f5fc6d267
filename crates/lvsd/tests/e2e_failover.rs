//! End-to-end failover: two lvsd directors (A priority 150, B 100) side by
//! side on one segment with the client and two direct-routing real servers
//! (`Lab::ha`). VRRP decides who holds 198.18.0.100; connection sync
//! follows the VRRP role (`sync vrrp front`). Long-lived TCP connections,
//! a persistence template and UDP flows are established through A; A is
//! killed with SIGKILL; within the VRRP dead interval B holds the VIP and
//! the connections go on without a reset or a lost byte (checked at both
//! ends), persistence holds, new connections are scheduled. A then comes
//! back with preemption (and a preempt delay to relearn the table) and
//! takes over again, connections still intact; with preemption off it
//! stays backup.
//!
//! Needs root.

mod support;

use lvs_lab::Lab;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{lvsadm_ok, Director};

const ECHO: u16 = 7000;
const STICKY: u16 = 7001;

fn config(priority: u8, preempt: &str) -> String {
    format!(
        "interface d0
vrrp front interface d0 id 51 priority {priority} advert 0.3 {preempt} address 198.18.0.100
sync vrrp front interface d0 syncid 9 resync
director echo 198.18.0.100:{ECHO} TCP
    balance roundrobin
    server rs1 198.18.0.11:{ECHO}
    server rs2 198.18.0.12:{ECHO}
director sticky 198.18.0.100:{STICKY} TCP
    balance roundrobin
    option persistence timeout 300
    server rs1 198.18.0.11:{STICKY}
    server rs2 198.18.0.12:{STICKY}
director dns 198.18.0.100:53 UDP
    balance roundrobin
    server rs1 198.18.0.11:53
    server rs2 198.18.0.12:53
"
    )
}

/// Server-side view: bytes each connection received, in order, checked
/// against the pattern (a mismatch means a lost or damaged byte).
#[derive(Default)]
struct ServerSide {
    received: AtomicU64,
    damaged: AtomicU64,
}

fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// On real server `i`: greets with its name, then echoes, checking that
/// what it reads follows the pattern.
fn servers(
    lab: &Lab,
    stop: Arc<AtomicBool>,
    side: Arc<ServerSide>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for i in 1..=2 {
        for port in [ECHO, STICKY] {
            let l = lab
                .run_in(lab.server_ns(i), move || {
                    TcpListener::bind(("0.0.0.0", port))
                })
                .unwrap()
                .unwrap();
            l.set_nonblocking(true).unwrap();
            let (stop, side) = (stop.clone(), side.clone());
            threads.push(std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let (stop, side) = (stop.clone(), side.clone());
                            conns.push(std::thread::spawn(move || {
                                let _ = s.set_nonblocking(false);
                                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                                let _ = s.write_all(format!("rs{i}\n").as_bytes());
                                let mut at = 0u64;
                                let mut buf = [0u8; 4096];
                                while !stop.load(Ordering::Relaxed) {
                                    match s.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            for &b in &buf[..n] {
                                                if b != pattern(at) {
                                                    side.damaged.fetch_add(1, Ordering::Relaxed);
                                                }
                                                at += 1;
                                            }
                                            side.received.fetch_add(n as u64, Ordering::Relaxed);
                                            if s.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                        Err(e)
                                            if matches!(
                                                e.kind(),
                                                std::io::ErrorKind::WouldBlock
                                                    | std::io::ErrorKind::TimedOut
                                            ) => {}
                                        Err(_) => break,
                                    }
                                }
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            }));
        }
    }
    threads
}

fn connect(lab: &Lab, port: u16) -> (TcpStream, String) {
    let to: SocketAddr = format!("198.18.0.100:{port}").parse().unwrap();
    let mut s = lab
        .run_in(lab.client_ns(), move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(3))
        })
        .unwrap()
        .expect("connect through the VIP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut name = [0u8; 4];
    s.read_exact(&mut name).expect("the server's name");
    (s, String::from_utf8_lossy(&name).trim().to_string())
}

/// A client connection that sends 200 bytes every 50 ms and checks each
/// echo, until told to stop; its error, if any.
fn talker(
    mut s: TcpStream,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let mut at = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let chunk: Vec<u8> = (at..at + 200).map(pattern).collect();
            s.write_all(&chunk)
                .map_err(|e| format!("write at byte {at}: {e}"))?;
            let mut back = vec![0u8; 200];
            s.read_exact(&mut back)
                .map_err(|e| format!("read at byte {at}: {e}"))?;
            if back != chunk {
                return Err(format!("echo differs at byte {at}"));
            }
            at += 200;
            sent.fetch_add(200, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })
}

fn udp_ask(s: &UdpSocket) -> String {
    s.send_to(b"who?\n", "198.18.0.100:53").unwrap();
    let mut buf = [0u8; 32];
    let n = s.recv(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

fn state_of(d: &Director) -> Option<&'static str> {
    let log = d.log_so_far();
    let l = log
        .lines()
        .rfind(|l| l.contains("VRRP instance front on d0 is"))?;
    Some(if l.contains("MASTER") {
        "MASTER"
    } else {
        "BACKUP"
    })
}

fn wait_state(d: &Director, want: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    while state_of(d) != Some(want) {
        assert!(
            t0.elapsed() < limit,
            "not {want} after {limit:?}:\n{}",
            d.log_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// Client ports of the ESTABLISHED entries for `port` in a director's table.
fn established(d: &Director, port: u16) -> usize {
    lvsadm_ok(&d.sock, &["-L", "-n", "-c"])
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.contains(&format!("198.18.0.100:{port}")))
        .count()
}

#[test]
fn the_backup_takes_over_established_connections_without_a_reset() {
    let _g = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::require_root();
    let _ = Lab::cleanup_stale("lvtha");
    let lab = Lab::ha("lvtha", 2).expect("HA lab");
    let peer = lab.peer_ns().unwrap().to_string();
    let _udp = lab
        .start_identity_servers(8080, 53)
        .expect("UDP identity servers");
    let stop_servers = Arc::new(AtomicBool::new(false));
    let side = Arc::new(ServerSide::default());
    let server_threads = servers(&lab, stop_servers.clone(), side.clone());

    let a = Director::start(&lab, "haA", &config(150, "preempt-delay 3"));
    let b = Director::start_in(&lab, &peer, "haB", &config(100, ""));
    wait_state(&a, "MASTER", Duration::from_secs(5));
    wait_state(&b, "BACKUP", Duration::from_secs(5));

    // Through A: four long-lived connections, a sticky one, two UDP flows.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut talkers = Vec::new();
    for _ in 0..4 {
        let (s, _) = connect(&lab, ECHO);
        talkers.push(talker(s, stop.clone(), sent.clone()));
    }
    let (sticky, sticky_rs) = connect(&lab, STICKY);
    talkers.push(talker(sticky, stop.clone(), sent.clone()));
    let flows: Vec<UdpSocket> = [41001u16, 41002]
        .iter()
        .map(|&p| {
            let s = lab
                .run_in(lab.client_ns(), move || UdpSocket::bind(("198.18.0.2", p)))
                .unwrap()
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s
        })
        .collect();
    let flow_rs: Vec<String> = flows
        .iter()
        .map(|s| {
            // Three datagrams: the flow is synced at its third.
            let first = udp_ask(s);
            for _ in 0..2 {
                assert_eq!(udp_ask(s), first);
            }
            first
        })
        .collect();
    // B has them all (synced at their 3rd packet, messages within 2-3 s).
    let t0 = Instant::now();
    while established(&b, ECHO) < 4 || established(&b, STICKY) < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "B never learned the connections:\n{}\n{}\n{}",
            lvsadm_ok(&b.sock, &["-L", "-n", "-c"]),
            lvsadm_ok(&a.sock, &["--counters"]),
            lvsadm_ok(&b.sock, &["--counters"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A dies without a word.
    let killed = Instant::now();
    a.kill(&lab);
    let took = wait_state(&b, "MASTER", Duration::from_secs(3));
    eprintln!("B took over {:?} after A was killed", killed.elapsed());
    // 3 × 0.3 s + skew (156/256 × 0.3 s) = 1.08 s, plus scheduling slack.
    assert!(took < Duration::from_millis(2000), "{took:?}");
    let before = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        sent.load(Ordering::Relaxed) > before + 4 * 200 * 10,
        "traffic did not resume through B"
    );
    // Persistence holds, the flows stay, new connections are scheduled.
    let (_again, rs) = connect(&lab, STICKY);
    assert_eq!(rs, sticky_rs, "persistence lost in the failover");
    for (s, rs) in flows.iter().zip(&flow_rs) {
        assert_eq!(&udp_ask(s), rs, "UDP flow moved");
    }
    let (_fresh, _) = connect(&lab, ECHO);

    // A comes back with preemption: after its preempt delay (while it
    // relearns the table from B) it takes over, the connections intact.
    let a = Director::start(&lab, "haA2", &config(150, "preempt-delay 3"));
    wait_state(&a, "BACKUP", Duration::from_secs(3));
    // It asks B for a full copy of the table (`resync`) and has it at
    // once, long before its preempt delay runs out (without the copy it
    // would learn each connection only at its next sync point).
    let t0 = Instant::now();
    while established(&a, ECHO) < 5 || established(&a, STICKY) < 1 {
        assert!(
            state_of(&a) == Some("BACKUP") && t0.elapsed() < Duration::from_millis(1500),
            "A did not relearn the table before taking over:\n{}",
            lvsadm_ok(&a.sock, &["-L", "-n", "-c"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = wait_state(&a, "MASTER", Duration::from_secs(12));
    assert!(
        took >= Duration::from_millis(2500),
        "preempted before its delay: {took:?}"
    );
    assert!(
        b.log_so_far().contains("a backup asked for a full copy"),
        "{}",
        b.log_so_far()
    );
    wait_state(&b, "BACKUP", Duration::from_secs(3));
    let before = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        sent.load(Ordering::Relaxed) > before + 4 * 200 * 10,
        "traffic did not resume through A:\n{}\n{}\n{}\n{}",
        lvsadm_ok(&a.sock, &["-L", "-n", "-c"]),
        lvsadm_ok(&a.sock, &["--counters"]),
        a.log_so_far(),
        b.log_so_far()
    );

    // Without preemption a returning A stays backup.
    let t = Instant::now();
    a.stop(&lab);
    wait_state(&b, "MASTER", Duration::from_secs(2));
    eprintln!("B took over {:?} after A stopped cleanly", t.elapsed());
    let a = Director::start(&lab, "haA3", &config(150, "nopreempt"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state_of(&a), Some("BACKUP"), "{}", a.log_so_far());
    assert_eq!(state_of(&b), Some("MASTER"));

    stop.store(true, Ordering::Relaxed);
    for t in talkers {
        t.join().unwrap().expect("a connection broke");
    }
    stop_servers.store(true, Ordering::Relaxed);
    for t in server_threads {
        let _ = t.join();
    }
    assert_eq!(
        side.damaged.load(Ordering::Relaxed),
        0,
        "bytes lost or damaged"
    );
    assert_eq!(
        side.received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed)
    );
    a.stop(&lab);
    b.stop(&lab);
    lab.close().expect("clean up the lab");
}
