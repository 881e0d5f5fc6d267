//! The checker thread as the daemon uses it: wanted sets, transitions with
//! their counts and reasons, the wake descriptor, spreading, sharing, stopping.

mod support;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use lvs_health::{first_offset, CheckKind, CheckSpec, Health, Transition};
use support::*;

#[test]
fn tcpcheck_goes_down_when_the_listener_goes_and_up_when_it_returns() {
    let health = Health::start().unwrap();
    let server = tcp_server(0);
    let port = server.port;
    let s = spec(CheckKind::Tcp, port, 100, 1000);
    health.set_checks(vec![s.clone()]);
    // Starts up, and stays silent while up.
    let st = &health.status()[0].1;
    assert!(
        st.up && st.last_ok.is_none() && st.checks_run == 0,
        "{st:?}"
    );
    wait_runs(&health, &s, 3, Duration::from_secs(5));
    assert_eq!(health.poll_transition(), None);
    assert!(!readable(health.wake_fd()));

    drop(server);
    let t = next_transition(&health, Duration::from_secs(5)).expect("down");
    assert_eq!(
        t,
        Transition {
            spec: s.clone(),
            up: false,
            reason: "connection refused".into(),
            successes: 0,
            failures: 1,
        }
    );
    let st = &health.status()[0].1;
    assert!(!st.up && st.last_ok == Some(false), "{st:?}");
    assert_eq!(st.last_reason, "connection refused");

    // Readable until a poll finds the queue empty.
    assert!(readable(health.wake_fd()));
    assert_eq!(health.poll_transition(), None);
    assert!(!readable(health.wake_fd()));

    let server = tcp_server(port);
    // The wake descriptor rises with the transition.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !readable(health.wake_fd()) {
        assert!(Instant::now() < deadline, "wake fd never became readable");
        thread::sleep(Duration::from_millis(5));
    }
    let t = health.poll_transition().expect("up");
    assert!(
        t.up && t.reason == "ok" && t.successes == 1 && t.failures == 0,
        "{t:?}"
    );
    // Draining clears it.
    assert_eq!(health.poll_transition(), None);
    assert!(!readable(health.wake_fd()));
    assert!(server.count() >= 1);
}

#[test]
fn flapping_server_gives_exactly_the_transitions_rise_3_fall_2_imply() {
    // The server's answers in order ('+' 200, '-' 503), then 200 for ever.
    const SCRIPT: &[u8] = b"+-+--++-+++-";
    let server = http_server(|n, _| match SCRIPT.get(n as usize) {
        Some(b'-') => Reply::Status(503),
        _ => Reply::Status(200),
    });
    let health = Health::start().unwrap();
    let mut s = spec(http("/health", None, 200), server.port, 100, 2000);
    s.rise = 3;
    s.fall = 2;
    health.set_checks(vec![s.clone()]);
    wait_runs(
        &health,
        &s,
        SCRIPT.len() as u64 + 4,
        Duration::from_secs(10),
    );
    let mut got = Vec::new();
    while let Some(t) = health.poll_transition() {
        got.push(t);
    }
    assert_eq!(
        got,
        vec![
            // Requests 3 and 4 fail: down on the second, as fall 2 says.
            Transition {
                spec: s.clone(),
                up: false,
                reason: "status 503".into(),
                successes: 0,
                failures: 2,
            },
            // 5, 6 succeed, 7 fails, 8, 9, 10 succeed: up on the third in a row.
            Transition {
                spec: s.clone(),
                up: true,
                reason: "ok".into(),
                successes: 3,
                failures: 0,
            },
        ]
    );
    // Request 11 failed once more: counted, but not enough to fall.
    let st = &health.status()[0].1;
    assert!(st.up, "{st:?}");
}

#[test]
fn first_runs_are_spread_over_the_interval() {
    let interval = Duration::from_secs(1);
    let specs: Vec<CheckSpec> = (0..1000u32)
        .map(|i| {
            let mut s = spec(CheckKind::Tcp, 80, 1000, 500);
            s.addr = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i));
            s
        })
        .collect();
    let offsets: Vec<Duration> = specs.iter().map(first_offset).collect();
    assert!(offsets.iter().all(|o| *o < interval));
    let distinct: HashSet<Duration> = offsets.iter().copied().collect();
    assert!(distinct.len() >= 990, "{} distinct offsets", distinct.len());
    // Roughly uniform: each tenth of the interval gets its share.
    let mut buckets = [0u32; 10];
    for o in &offsets {
        buckets[(o.as_millis() / 100) as usize] += 1;
    }
    assert!(
        buckets.iter().all(|&b| (50..=150).contains(&b)),
        "{buckets:?}"
    );
    // Stable: the same spec always gets the same slot.
    assert_eq!(first_offset(&specs[7].clone()), offsets[7]);
    // Other fields move it too.
    let mut other = specs[7].clone();
    other.port = 8080;
    assert_ne!(first_offset(&other), offsets[7]);
}

#[test]
fn first_run_waits_for_its_offset() {
    let server = tcp_server(0);
    // A spec whose slot is well inside a 1 s interval.
    let s = (0..10_000u16)
        .map(|i| {
            let mut s = spec(CheckKind::Tcp, server.port, 1000, 500);
            s.rise = 1 + u32::from(i);
            s
        })
        .find(|s| (400..600).contains(&first_offset(s).as_millis()))
        .expect("some slot lands in the middle");
    let offset = first_offset(&s);
    let health = Health::start().unwrap();
    let started = Instant::now();
    health.set_checks(vec![s.clone()]);
    wait_runs(&health, &s, 1, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(
        took + Duration::from_millis(20) >= offset,
        "{took:?} < {offset:?}"
    );
    assert!(
        took < offset + Duration::from_millis(800),
        "{took:?} vs {offset:?}"
    );
}

#[test]
fn identical_specs_are_one_check() {
    let server = tcp_server(0);
    let health = Health::start().unwrap();
    let s = spec(CheckKind::Tcp, server.port, 100, 1000);
    health.set_checks(vec![s.clone(), s.clone(), s.clone()]);
    assert_eq!(health.status().len(), 1);
    let runs = wait_runs(&health, &s, 8, Duration::from_secs(5));
    // One probe stream: accepts follow the runs of one check (not three).
    let accepts = server.count();
    assert!(
        accepts <= runs + 1 && accepts + 1 >= runs,
        "{accepts} accepts, {runs} runs"
    );

    // Keeping a spec in the wanted set keeps it running, counters and all.
    let other = spec(CheckKind::Tcp, closed_port(), 100, 1000);
    health.set_checks(vec![other.clone(), s.clone()]);
    assert_eq!(health.status().len(), 2);
    assert!(runs_of(&health, &s) >= runs, "the kept check restarted");
    let t = next_transition(&health, Duration::from_secs(5)).expect("other goes down");
    assert_eq!(t.spec, other);
    assert_eq!(t.reason, "connection refused");
}

#[test]
fn removed_checks_stop() {
    let server = tcp_server(0);
    let health = Health::start().unwrap();
    let s = spec(CheckKind::Tcp, server.port, 100, 1000);
    let gone = spec(CheckKind::Tcp, closed_port(), 100, 1000);
    health.set_checks(vec![s.clone(), gone.clone()]);
    wait_runs(&health, &s, 3, Duration::from_secs(5));
    wait_runs(&health, &gone, 1, Duration::from_secs(5));
    // `gone` has fallen, and its transition is waiting; removing the check
    // withdraws it.
    health.set_checks(vec![]);
    assert!(health.status().is_empty());
    assert_eq!(health.poll_transition(), None);
    // Let a probe that was in flight land, then nothing more may come.
    thread::sleep(Duration::from_millis(300));
    let before = server.count();
    thread::sleep(Duration::from_millis(600));
    assert_eq!(server.count(), before, "a removed check still probes");
    assert_eq!(health.poll_transition(), None);
}

#[test]
fn drop_is_prompt_even_with_probes_in_flight() {
    let silent = http_server(|_, _| Reply::Silence);
    let health = Health::start().unwrap();
    let s = spec(http("/", None, 200), silent.port, 100, 10_000);
    health.set_checks(vec![s.clone()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while silent.count() == 0 {
        assert!(Instant::now() < deadline, "probe never reached the server");
        thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    drop(health);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn icmpcheck_runs_on_the_checker_thread() {
    let health = Health::start().unwrap();
    let s = spec(CheckKind::Icmp, 0, 100, 1000);
    health.set_checks(vec![s.clone()]);
    wait_runs(&health, &s, 3, Duration::from_secs(5));
    let st = health.status()[0].1.clone();
    if st.last_reason.starts_with("cannot open an ICMP socket") {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(unsafe { libc::geteuid() }, 0, "{st:?}");
        eprintln!(
            "SKIPPED icmpcheck_runs_on_the_checker_thread: {}",
            st.last_reason
        );
        return;
    }
    assert!(st.up && st.last_ok == Some(true), "{st:?}");
    assert!(st.last_latency.unwrap() < Duration::from_millis(1000));
    assert_eq!(health.poll_transition(), None);
}
