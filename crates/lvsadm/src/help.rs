//! `-h` and `-v` texts.

/// `-v` / `--version`: ipvsadm's own line when invoked as `ipvsadm`, so
/// scripts that parse it keep working.
pub fn version_for(argv0: &str) -> String {
    if program(argv0) == "ipvsadm" {
        return "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n".into();
    }
    version()
}

/// lvsadm's own version line.
pub fn version() -> String {
    format!(
        "lvsadm v{} (ipvsadm v1.31 compatible, IPVS v1.2.1, talks to lvsd)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The name the command was invoked under (`ipvsadm` through a symlink).
pub fn program(argv0: &str) -> &str {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(argv0)
}

/// `-h` / `--help`.
pub fn usage(argv0: &str) -> String {
    let p = argv0;
    format!(
        "{version}\
Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --start-daemon {{master|backup}}     (not supported yet)
  {p} --stop-daemon {{master|backup}}      (not supported yet)
  {p} -h

lvsadm is the administration command of lvsd, a userspace IP Virtual Server.
It accepts ipvsadm's command line and prints ipvsadm's formats, but instead of
talking to the kernel it sends each command to the lvsd daemon over its control
socket. Any of the forms above may also carry:
  --control PATH, --control=PATH       control socket of lvsd (anywhere on the
                                       command line; default {ctl}, or the
                                       LVSADM_CONTROL environment variable)
Without arguments, {p} lists the table (same as -L).
  {p} --sysctl [NAME[=VALUE]]    list IPVS's sysctls (net.ipv4.vs.*) as lvsd
                                       has them, show one, or set one
  {p} --counters                 lvsd's own counters: packets per forwarding
                                       method, ICMP errors and resets sent,
                                       drops by reason, packet I/O
  {p} --health                   every real server's health check, verdict,
                                       last result and whether it is in use
  {p} --proc NAME                the kernel's /proc/net/NAME text for lvsd's
                                       table: ip_vs, ip_vs_conn, ip_vs_conn_sync,
                                       ip_vs_stats
  {p} --reload                   lvsd re-reads its configuration file and
                                       applies what changed in it (as SIGHUP);
                                       exit 0 applied, 1 file refused (nothing
                                       changed), 3 applied with warnings

Commands (the first option must be one of these):
  --add-service     -A        add a virtual service with options
  --edit-service    -E        replace a virtual service's definition
  --delete-service  -D        delete a virtual service and its real servers
  --clear           -C        remove every virtual service
  --restore         -R        read commands (one per line) from standard input
  --save            -S        print the table as commands for --restore
  --add-server      -a        add a real server to a virtual service
  --edit-server     -e        replace a real server's definition
  --delete-server   -d        delete a real server
  --list            -L|-l     list the table, one service, connections or timeouts
  --zero            -Z        zero the counters and rates of one service or all
  --set tcp tcpfin udp        set the connection timeouts in seconds (0 = keep)
  --help            -h        show this text
  --version         -v        show the version

virtual-service:
  --tcp-service|-t  address   TCP service, address is host[:port]
  --udp-service|-u  address   UDP service
  --sctp-service    address   SCTP service
  --fwmark-service|-f mark    firewall-mark service (fed by the configuration's flows)
Addresses are numeric only: a.b.c.d[:port] for IPv4, [v6addr]:port or a bare
v6addr for IPv6; ports are numbers (no host names, no service names).

Options:
  --scheduler    -s scheduler one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh
                              as lvsd supports them; the default is wlc
  --persistent   -p [timeout] persistent service, timeout in seconds (default 360)
  --netmask      -M netmask   persistence granularity: dotted mask for IPv4,
                              prefix length for IPv6
  --sched-flags  -b flags     comma-separated scheduler flags: flag-1, flag-2,
                              flag-3, sh-fallback, sh-port, mh-fallback, mh-port
  --ops          -o           one-packet scheduling (UDP only)
  --real-server  -r address   real server, host[:port] (port defaults to the
                              service's; forced to it for -g and -i)
  --gatewaying   -g           direct routing (the default)
  --ipip         -i           tunnelling (ipip, gue or gre: see --tun-type)
  --masquerading -m           NAT
  --weight       -w weight    capacity of the real server, 0 .. 2147483647 (default 1)
  --u-threshold  -x uthreshold upper connection threshold, 0 = none
  --l-threshold  -y lthreshold lower connection threshold, 0 = none
  --tun-type     type         one of ipip|gue|gre (with -i); the default is ipip
  --tun-port     port         GUE destination port, 1 .. 65535 (required for gue)
  --tun-nocsum                no outer checksum (gue, gre; the default)
  --tun-csum                  outer checksum (gue: UDP checksum, gre: C bit)
  --tun-remcsum               GUE remote checksum offload (gue only)
  --numeric      -n           numeric output (lvsadm always prints numbers)
  --connection   -c           list the connection table
  --timeout                   list the timeouts
  --thresholds                list the threshold columns
  --persistent-conn           list persistent connection counts
  --tun-info                  list the tunnel column
  --nosort                    do not sort the listing
  --sort                      sort the listing (the default)
  --stats                     list the counters (conns, packets, bytes)
  --rate                      list the rates (per second, smoothed over ~8 s)
  --exact        -X           every digit of --stats/--rate numbers (no K/M/G/T)
",
        version = version_for(argv0),
        ctl = lvs_control::DEFAULT_CONTROL_PATH,
    )
}
