//! `lvsd demo`: the whole product on a built-in configuration, in a lab of
//! network namespaces that it builds and removes itself.

use lvs_control::render::{self, ListMode, ListOptions};
use lvs_control::{Request, Response};
use lvs_lab::{Lab, VIP};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The configuration the demo runs: one TCP and one UDP round-robin NAT director.
pub const DEMO_CONFIG: &str = "\
# lvsd demo: round-robin NAT over three real servers
director web 198.18.0.100:80 TCP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:80
    server rs2 198.18.1.12:80
    server rs3 198.18.1.13:80

director dns 198.18.0.100:53 UDP
    balance roundrobin
    mode nat
    server rs1 198.18.1.11:53
    server rs2 198.18.1.12:53
    server rs3 198.18.1.13:53
";

/// Waits until something accepts connections on the control socket `path`.
pub fn wait_for_control(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn run(requests: u32) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let _ = Lab::cleanup_stale("lvsdemo");
    println!("Building the lab: client 198.18.0.2, director (VIP 198.18.0.100), real servers 198.18.1.11-13 ...");
    let lab = Lab::nat("lvsdemo", 3).map_err(|e| format!("cannot build the namespace lab: {e}"))?;
    let servers = lab
        .start_identity_servers(80, 53)
        .map_err(|e| format!("cannot start real servers: {e}"))?;
    let dir = std::env::temp_dir();
    let conf: PathBuf = dir.join(format!("lvsd-demo-{}.conf", std::process::id()));
    let sock: PathBuf = dir.join(format!("lvsd-demo-{}.sock", std::process::id()));
    std::fs::write(&conf, DEMO_CONFIG)
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    println!("Configuration ({}):\n{DEMO_CONFIG}", conf.display());

    let mut cmd: Command = lab.command(lab.director_ns(), &exe.to_string_lossy());
    cmd.arg("--config").arg(&conf).arg("--control").arg(&sock);
    let pid = lab
        .spawn(lab.director_ns(), cmd)
        .map_err(|e| format!("cannot start lvsd: {e}"))?;
    let result = drive(&lab, &sock, requests);
    let _ = lab.stop(pid);
    let _ = std::fs::remove_file(&conf);
    let _ = std::fs::remove_file(&sock);
    let (table, conns) = result?;
    print!("\n$ lvsadm -L -n\n{table}");
    print!("\n$ lvsadm -L -n -c  (first lines)\n");
    for l in conns.lines().take(8) {
        println!("{l}");
    }
    println!("\nWhat each real server received:");
    let mut total = 0;
    for s in &servers {
        println!(
            "  {} {}: {} HTTP requests, {} UDP datagrams",
            s.name,
            s.ip,
            s.tcp_requests(),
            s.udp_requests()
        );
        total += s.tcp_requests();
    }
    drop(servers);
    lab.close().map_err(|e| format!("cleanup: {e}"))?;
    println!("\nAll namespaces removed.");
    if total != u64::from(requests) {
        return Err(format!(
            "only {total} of {requests} HTTP requests reached a real server"
        ));
    }
    Ok(())
}

/// Sends the traffic and reads the listings back over the control socket.
fn drive(lab: &Lab, sock: &Path, requests: u32) -> Result<(String, String), String> {
    if !wait_for_control(sock, Duration::from_secs(10)) {
        return Err("lvsd did not open its control socket within 10 s".into());
    }
    let n = requests;
    let http = lab
        .run_in(lab.client_ns(), move || {
            let mut answers = Vec::new();
            for _ in 0..n {
                answers.push(lvs_lab::http_get(
                    SocketAddrV4::new(VIP, 80),
                    Duration::from_secs(3),
                ));
            }
            answers
        })
        .map_err(|e| format!("client: {e}"))?;
    let ok = http.iter().filter(|r| r.is_ok()).count();
    println!("HTTP through the VIP: {ok}/{n} answered");
    if let Some(Err(e)) = http.iter().find(|r| r.is_err()) {
        println!("  first failure: {e}");
    }
    let udp = lab
        .run_in(lab.client_ns(), || {
            (0..12u16)
                .map(|i| {
                    lvs_lab::udp_exchange(
                        41000 + i,
                        SocketAddrV4::new(VIP, 53),
                        b"who?",
                        Duration::from_secs(2),
                    )
                })
                .filter(|r| r.is_ok())
                .count()
        })
        .map_err(|e| format!("client: {e}"))?;
    println!("UDP through the VIP: {udp}/12 answered");
    let opts = ListOptions {
        mode: ListMode::Default,
        nosort: false,
    };
    let table = match lvs_control::call(sock, &Request::ListServices) {
        Ok(Response::Services {
            conn_tab_size,
            services,
        }) => render::list(conn_tab_size, &services, &opts),
        other => return Err(format!("listing failed: {other:?}")),
    };
    let conns = match lvs_control::call(sock, &Request::ListConnections) {
        Ok(Response::Connections(c)) => render::connections(&c),
        other => return Err(format!("connection listing failed: {other:?}")),
    };
    Ok((table, conns))
}
