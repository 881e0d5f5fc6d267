//! Builds lvsd's XDP program (`bpf/lvs_xdp.c`) with clang when the host
//! has it (Debian: `clang` and `libbpf-dev`; `scripts/deps.sh` installs
//! them). Without clang, lvsd is built without the XDP fast path and says
//! so when asked for it (cfg `lvsd_no_xdp`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lvsd_no_xdp)");
    println!("cargo::rerun-if-changed=bpf/lvs_xdp.c");
    println!("cargo::rerun-if-env-changed=LVSD_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let obj = out.join("lvs_xdp.o");
    let clang = std::env::var("LVSD_CLANG").unwrap_or_else(|_| "clang".into());
    // The multiarch include directory holds asm/types.h for the BPF target.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", "bpf/lvs_xdp.c", "-o"])
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} could not build bpf/lvs_xdp.c ({s}); see its messages above"),
        Err(e) => {
            println!(
                "cargo::warning=no XDP fast path in this build: {clang} cannot be run ({e}); install clang and libbpf-dev (scripts/deps.sh)"
            );
            println!("cargo::rustc-cfg=lvsd_no_xdp");
            // A path that does not exist keeps this script running at every
            // build, so the program is built once clang is installed.
            println!("cargo::rerun-if-changed=/usr/bin/clang");
        }
    }
}
