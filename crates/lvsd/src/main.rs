//! `lvsd`: the userspace Linux Virtual Server director.

mod arp;
mod control;
mod daemon;
mod demo;
mod desired;
mod engine_ops;
mod fastpath;
mod fib;
mod guard;
mod import;
mod io;
mod lock;
mod log;
mod metrics;
mod ndp;
mod net;
mod nft_sets;
mod pcap;
mod pending;
mod reload;
mod replay;
mod rtnl;
mod setup;
mod sync;
#[cfg(test)]
mod untrusted_tests;
mod vrrp;
mod vrrp_io;
mod xdp;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A userspace Linux Virtual Server: IPVS's layer-4 load balancing (same
/// schedulers, connection states and timeouts, ipvsadm-compatible listings)
/// without a kernel module.
///
/// lvsd runs in the foreground in its network namespace. It attaches to the
/// interfaces that are up (except loopback and bridge/bond ports), or to
/// those the configuration names with `interface NAME`, answers ARP for
/// every virtual IP and announces them with a gratuitous ARP, and balances
/// the configured directors by direct routing (the default), NAT or IP
/// tunnelling (IPIP, GUE, GRE), per real server. Servers with `check` are
/// health-checked (tcp, http, icmp, arp) on a thread of their own; a server
/// that fails leaves its service (or gets weight 0 with `inhibit`), sorry
/// servers take over when every other server is down. While it runs, an nftables table
/// `netdev lvsd` keeps the kernel from also handling the balanced packets (without
/// nft: kernel IPv4 forwarding is switched off instead). SIGHUP (or
/// `lvsadm --reload`) re-reads the configuration and applies what changed in
/// it; a file with errors is refused whole. SIGTERM or SIGINT stops it
/// cleanly and removes what it installed.
///
/// Manage it with `lvsadm` (ipvsadm's command line) over the control socket.
/// `--fastpath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FastPathArg {
    Off,
    Xdp,
    Tc,
}

#[derive(Parser, Debug)]
#[command(
    name = "lvsd",
    version,
    about,
    long_about,
    after_help = "Examples:\n  lvsd --config /etc/lvsd.conf\n  lvsd --config empty.conf --control /run/lvsd/test.sock\n  sudo lvsd demo"
)]
struct Cli {
    /// Director configuration file (see README: `director NAME IP:PORT TCP|UDP|SCTP`,
    /// `balance roundrobin`, `mode gateway|nat|tunnel …`, `server NAME IP[:PORT] [weight N]`).
    /// Without one, lvsd starts with no services; add them with lvsadm.
    #[arg(long, short = 'f', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Path of the control socket lvsadm talks to [default: the
    /// configuration's `control socket PATH`, else /run/lvsd/control.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics and a live status
    /// page at http://ADDR/ [default: the configuration's `metrics` line;
    /// none without it].
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,

    /// `xdp`: an XDP program (generic mode) on every interface forwards
    /// the packets of established IPv4 NAT connections in the kernel (the
    /// engine still sees every state change); best for packets from NICs.
    /// `tc`: the same at TC ingress, which also carries packets whose
    /// checksum is still to be computed and GSO packets (veth, containers,
    /// local senders); `off`: every packet goes through lvsd (AF_PACKET).
    /// Without them (an old kernel, no clang at build time) lvsd says so
    /// and runs with AF_PACKET only.
    #[arg(long, value_enum, value_name = "PATH", default_value_t = FastPathArg::Off)]
    fastpath: FastPathArg,

    /// With `--fastpath`: client packets a connection shows lvsd
    /// before the fast path carries it. Short connections are cheaper in
    /// lvsd than as a flow installed and removed again; 1 hands every
    /// connection over as soon as it is established.
    #[arg(long, value_name = "PKTS", default_value_t = lvs_core::engine::OFFLOAD_AFTER_PKTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    fastpath_after: u64,

    /// Most verbose messages written: error, warn, info, debug or trace.
    /// The `debug_level` sysctl raises it at run time (1-6: debug, 7 and
    /// above: trace; 0 gives this level back).
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = log::LogLevel::Info)]
    log_level: log::LogLevel,

    /// How messages are written on standard error: `human` (`lvsd:
    /// warning: …`), `logfmt` (one line of `ts=… level=… msg="…" key=value`)
    /// or `json` (one object per line) [default: human on a terminal,
    /// logfmt otherwise].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<log::Format>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum ImportFrom {
    /// `ipvsadm -S` output (any `-A`/`-a` lines), from FILE or standard
    /// input.
    Ipvsadm {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// keepalived.conf: its `virtual_server` and `virtual_server_group`
    /// blocks, real servers, `sorry_server`s and TCP_CHECK / HTTP_GET /
    /// SSL_GET checkers (the rest is listed as not imported).
    Keepalived {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turns another tool's configuration into lvsd's (printed on standard
    /// output): what has no equivalent is listed in `# not imported:`
    /// comments at the top. Check the result with `lvsd check`.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Checks a configuration file without running anything: reads and
    /// parses it and builds it on a scratch engine, exactly as start-up and
    /// a reload do. Prints what it holds, or the first error with its
    /// file, line and column. Exit status 0 when the file is good, 1 when
    /// it has an error. Needs no privileges.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Builds a throw-away lab of network namespaces (a client, this
    /// director, three real servers; addresses from 198.18.0.0/15), runs
    /// lvsd in it with a built-in round-robin NAT configuration, sends a
    /// bounded amount of HTTP and UDP traffic through it, prints the
    /// `lvsadm -L -n` table and what each real server received, and removes
    /// everything it created. Needs root.
    Demo {
        /// HTTP requests to send (each on a new connection).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10000))]
        requests: u32,
    },
    /// Runs the engine offline over a capture: every IPv4 packet of IN
    /// (classic pcap, Ethernet or raw IP) goes through the configuration's
    /// services with the capture's timestamps as the clock, and every frame
    /// the director would transmit (forwarded, NATed, encapsulated,
    /// fragmented, or its own ICMP errors and TCP resets) is written to OUT
    /// as a raw-IP pcap. Prints a report: packets per forwarding method,
    /// replies, drops by reason, connections per destination. The same
    /// input gives the same output byte for byte. Needs no privileges.
    Replay {
        /// Director configuration file to try.
        #[arg(long, short = 'f', value_name = "FILE")]
        config: PathBuf,
        /// The capture to replay.
        #[arg(long, value_name = "IN")]
        pcap: PathBuf,
        /// Where to write the frames the director would send.
        #[arg(long, value_name = "OUT.pcap")]
        out: Option<PathBuf>,
        /// Report format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
        /// The director's own address: outer source of tunnel packets and
        /// source of errors of the host's IP forwarding.
        #[arg(long, value_name = "ADDR", default_value = "198.18.1.1")]
        src: std::net::Ipv4Addr,
        /// The director's own IPv6 address, for IPv6 packets (without it,
        /// errors the host's forwarding would send about IPv6 packets are
        /// not written).
        #[arg(long, value_name = "ADDR")]
        src6: Option<std::net::Ipv6Addr>,
        /// Path MTU towards every destination.
        #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(68..))]
        mtu: u16,
        /// A different path MTU towards a prefix, as PREFIX=MTU (e.g.
        /// `198.18.64.0/24=1400`, `2001:db8:64::/64=1280`); repeatable,
        /// longest prefix wins.
        #[arg(long, value_name = "PREFIX=MTU", value_parser = replay::parse_path_mtu)]
        path_mtu: Vec<(std::net::IpAddr, u8, u16)>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ReportFormat {
    Text,
    Json,
}

/// The text of FILE (`-` or none: standard input), at most 16 MiB
/// (a longer input is refused, never cut).
fn read_input(file: Option<&std::path::Path>) -> Result<String, String> {
    use std::io::Read;
    const LIMIT: u64 = 16 << 20;
    let mut text = String::new();
    let r = match file {
        Some(p) if p.as_os_str() != "-" => std::fs::File::open(p)
            .and_then(|f| f.take(LIMIT + 1).read_to_string(&mut text))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        _ => std::io::stdin().take(LIMIT + 1).read_to_string(&mut text),
    };
    r.map_err(|e| format!("cannot read the input: {e}"))?;
    if text.len() as u64 > LIMIT {
        return Err("the input is larger than 16 MiB".into());
    }
    Ok(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Import { from }) => match from {
            ImportFrom::Ipvsadm { file } => {
                read_input(file.as_deref()).and_then(|t| import::ipvsadm(&t))
            }
            ImportFrom::Keepalived { file } => {
                read_input(Some(&file)).and_then(|t| import::keepalived(&t))
            }
        }
        .map(|c| print!("{c}")),
        Some(Command::Check { file }) => {
            return match setup::load_file(&file) {
                Ok(state) => {
                    for w in &state.warnings {
                        eprintln!("{w}");
                    }
                    println!("{}", setup::summary(&file, &state));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Some(Command::Demo { requests }) => demo::run(requests),
        Some(Command::Replay {
            config,
            pcap,
            out,
            report,
            src,
            src6,
            mtu,
            path_mtu,
        }) => replay::run(&replay::Options {
            config,
            pcap,
            out,
            json: matches!(report, ReportFormat::Json),
            src,
            src6,
            mtu,
            path_mtus: path_mtu,
        })
        .map(|r| print!("{r}")),
        None => {
            log::init(cli.log_format, cli.log_level);
            let run = daemon::run(daemon::Options {
                config: cli.config,
                control: cli.control,
                metrics: cli.metrics,
                fastpath: match cli.fastpath {
                    FastPathArg::Off => None,
                    FastPathArg::Xdp => Some(xdp::Hook::Xdp),
                    FastPathArg::Tc => Some(xdp::Hook::Tc),
                },
                fastpath_after: cli.fastpath_after,
            });
            return match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsd: {e}");
            ExitCode::from(2)
        }
    }
}
