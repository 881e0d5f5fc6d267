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
