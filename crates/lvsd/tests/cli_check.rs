//! `lvsd check FILE`: validates a configuration without running anything
//! (no privileges needed).

use std::process::Command;

fn check(name: &str, text: &str) -> (i32, String, String) {
    let path = std::env::temp_dir().join(format!("lvsd-check-{name}-{}.conf", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("run lvsd check");
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_file_is_summarised_and_exits_0() {
    let (code, out, err) = check(
        "good",
        "director web 198.18.0.100:80 TCP\n  mode nat\n  option tcpcheck\n  server a 198.18.1.11:80 check\n  server b 198.18.1.12:80\ndirector dns 198.18.0.100:53 UDP\n  server c 198.18.1.13\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("OK: 2 virtual service(s), 3 real server(s), 1 health-checked"),
        "{out}"
    );
}

#[test]
fn errors_name_file_line_and_column_and_exit_1() {
    // A parse error.
    let (code, _, err) = check(
        "parse",
        "director web 198.18.0.100:80 TCP\n  mode nat\n  server a 198.18.1.11:80 weight x\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:3:34: error: expected a weight"),
        "{err}"
    );
    // An error only the engine finds (a second service with the same key).
    let (code, _, err) = check(
        "engine",
        "director a 198.18.0.100:80 TCP\n  mode nat\ndirector b 198.18.0.100:80 TCP\n  mode nat\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains(".conf:3:"), "{err}");
}

#[test]
fn the_control_statement_is_checked() {
    let (code, out, err) = check(
        "ctl",
        "control socket /run/lvsd/web.sock group nogroup\ndirector web 198.18.0.100:80 TCP\n  mode nat\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = check("ctlgrp", "control group no-such-group-here\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:1:15: error: no group `no-such-group-here`"),
        "{err}"
    );
    let (code, _, err) = check("ctlrel", "control socket run/x.sock\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:1:16: error: the control socket's path must be absolute"),
        "{err}"
    );
}

/// `lvsd import ipvsadm` (standard input) and `lvsd import keepalived
/// FILE` print configurations that `lvsd check` accepts.
#[test]
fn imports_give_files_that_check() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["import", "ipvsadm"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run lvsd import");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 2\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let conf = String::from_utf8(out.stdout).unwrap();
    assert!(
        conf.contains("server rs1 198.18.1.11:8080 weight 2"),
        "{conf}"
    );
    let (code, out, err) = check("imp-ipvsadm", &conf);
    assert_eq!(code, 0, "{out}{err}\n{conf}");

    let path = std::env::temp_dir().join(format!("lvsd-ka-{}.conf", std::process::id()));
    std::fs::write(
        &path,
        "virtual_server 198.18.0.100 80 {\n  lb_algo wlc\n  lb_kind DR\n  delay_loop 5\n  real_server 198.18.1.11 80 {\n    TCP_CHECK {\n      connect_timeout 2\n      retry 3\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["import", "keepalived"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = String::from_utf8(out.stdout).unwrap();
    assert!(
        conf.contains("server rs1 198.18.1.11 check interval 5 timeout 2 fall 4"),
        "{conf}"
    );
    let (code, out, err) = check("imp-ka", &conf);
    assert_eq!(code, 0, "{out}{err}\n{conf}");
    // A broken file: the line, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["import", "keepalived", "/nonexistent/keepalived.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Semantic errors say what to do; legal but suspicious settings are
/// warnings (on standard error, exit 0).
#[test]
fn semantic_errors_and_warnings() {
    let (code, _, err) = check(
        "dup",
        "director a 198.18.0.100:80\n  mode nat\ndirector b 198.18.0.100:80\n  mode nat\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:3:10: error: director `b` is the same virtual service as director `a` (line 1): merge"),
        "{err}"
    );
    let (code, _, err) = check(
        "sorry",
        "director a 198.18.0.100:80\n  option tcpcheck\n  server s 198.18.1.1 sorry\n  server t 198.18.1.2\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:3:3: error: sorry server `s` would never be used"),
        "{err}"
    );
    let (code, out, err) = check(
        "warn",
        "sysctl est_nice 5\ndirector a 198.18.0.100:80\n  check interval 2 timeout 5\n  server s 198.18.1.1 check weight 0\ndirector b 198.18.0.100:81\n  option tcpcheck\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    for w in [
        ".conf:1:8: warning: sysctl `est_nice` has no effect in lvsd",
        ".conf:2:10: warning: every server of director `a` has weight 0",
        ".conf:4:3: warning: server `s`: its check timeout (5 s) is longer than the check interval (2 s)",
        ".conf:5:10: warning: director `b` has no server",
        ".conf:5:10: warning: director `b` names a check method but no server has `check`",
    ] {
        assert!(err.contains(w), "{w} missing from\n{err}");
    }
}

/// Directors without an address: checks need a port, persistence an IPv4
/// prefix; a director of sorry servers alone is a maintenance page.
#[test]
fn address_less_directors_and_sorry_only_directors() {
    let (code, _, err) = check(
        "fwm-port",
        "director a\n  option tcpcheck\n  server s 198.18.1.1 check\nflow f to 198.18.0.100 director a\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(".conf:3:3: error: server `s`: its check has no port"),
        "{err}"
    );
    let (code, _, err) = check(
        "fwm-mask",
        "director a\n  option persistence netmask 64\nflow f to 198.18.0.100 director a\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("a prefix length for an IPv4 director is 0..32, not 64"),
        "{err}"
    );
    let (code, out, err) = check(
        "sorry-only",
        "director a 198.18.0.100:80\n  mode nat\n  server maint 198.18.1.9:8080 sorry\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("has no server"), "{err}");
}
