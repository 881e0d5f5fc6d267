//! lvsadm = ipvsadm, checked against the real thing: the command lines of
//! `tools/oracle-ipvsadm/commands.txt` were run with Debian's ipvsadm 1.31
//! on a Linux 6.18 kernel (`tools/oracle-ipvsadm/record.sh`, recorded in
//! `tests/vectors/ipvsadm-6.18.json`); here each runs, in the same order,
//! through an `ipvsadm` symlink to lvsadm against a running lvsd, and its
//! standard output, standard error and exit status must be the kernel
//! run's, byte for byte.
//!
//! Needs root (lvsd attaches to a lab's interfaces).

mod support;

use std::process::Command;
use support::{nat_lab, Director};

#[test]
fn every_recorded_ipvsadm_command_gives_the_same_output_and_status() {
    let text = include_str!("vectors/ipvsadm-6.18.json");
    let rec: serde_json::Value = serde_json::from_str(text).expect("vectors");
    let (_g, lab) = nat_lab("lvtipv", 1);
    let d = Director::start(&lab, "ipvsadm", "");
    let dir = std::env::temp_dir().join(format!("lvsd-oracle-ipvsadm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(support::sibling("lvsadm"), dir.join("ipvsadm")).unwrap();
    let mut diffs = Vec::new();
    let cmds = rec["commands"].as_array().expect("commands");
    for (i, c) in cmds.iter().enumerate() {
        let args = c["args"].as_str().unwrap();
        let out = Command::new(dir.join("ipvsadm"))
            .args(args.split_whitespace())
            .env("LVSADM_CONTROL", &d.sock)
            .output()
            .expect("run ipvsadm (lvsadm)");
        let got = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        );
        let want = (
            c["stdout"].as_str().unwrap().to_string(),
            c["stderr"].as_str().unwrap().to_string(),
            c["rc"].as_i64().unwrap() as i32,
        );
        // `--nosort` prints the kernel's hash-table order, which depends on
        // a per-namespace pointer (spec procfs.md §1, ipvsadm.md §7.2): not
        // reproducible, so the same lines in any order.
        let (got, want) = if args.contains("--nosort") {
            let lines = |s: &str| {
                let mut v: Vec<String> = s.lines().map(str::to_string).collect();
                v.sort();
                v.join("\n")
            };
            (
                (lines(&got.0), got.1, got.2),
                (lines(&want.0), want.1, want.2),
            )
        } else {
            (got, want)
        };
        if got != want {
            diffs.push(format!(
                "#{} ipvsadm {args}\n  kernel: rc {} stdout {:?} stderr {:?}\n  lvsd:   rc {} stdout {:?} stderr {:?}",
                i + 1,
                want.2,
                want.0,
                want.1,
                got.2,
                got.0,
                got.1
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    d.stop(&lab);
    assert!(
        diffs.is_empty(),
        "{} of {} commands differ from the kernel's ipvsadm:\n{}",
        diffs.len(),
        cmds.len(),
        diffs.join("\n")
    );
}
