//! The IPVS sysctls (`/proc/sys/net/ipv4/vs/*`, sysctls.md), declared once:
//! name, accepted values, default, meaning, and whether this engine acts on
//! it. Parsing, validation, listing and the docs all read this table.
//!
//! Every knob is accepted with the kernel's validation and read back as
//! written. A few belong to parts that do not exist here yet (the sync
//! daemon, tunnels, conntrack): they are stored, and their declaration says
//! why they have no effect, so listings can tell the operator.

use crate::engine::Engine;

/// Which values a sysctl accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Any integer (the kernel's plain `int` and boolean knobs).
    AnyInt,
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// A power of two, at least 1 (`sync_ports`).
    PowerOfTwo,
    /// An unsigned long: 0 up to 2^64 - 1 (`sync_qlen_max`).
    Unsigned,
    /// `threshold period`: both >= 0 and threshold < period unless period
    /// is 0 (`sync_threshold`).
    SyncThreshold,
    /// A CPU list such as `0-3,8` (empty allowed) (`est_cpulist`).
    CpuList,
}

/// Whether the engine acts on a sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Read by the engine or the daemon.
    Acts,
    /// Stored and listed, but without effect in this build; says why.
    NoEffect(&'static str),
}

/// One sysctl declaration.
#[derive(Debug, Clone, Copy)]
pub struct Sysctl {
    pub name: &'static str,
    pub accepts: Accepts,
    /// Default as the kernel prints it.
    pub default: &'static str,
    /// What it does, in a line.
    pub doc: &'static str,
    /// Whether this engine acts on it.
    pub effect: Effect,
}

/// `|v| <= INT_MAX / HZ` for HZ = 250: the kernel's bound on jiffies knobs written in seconds.
const JIFFIES_SECS: i64 = 8_589_934;

macro_rules! sysctl {
    ($name:literal, $acc:expr, $def:literal, $eff:expr, $doc:literal) => {
        Sysctl {
            name: $name,
            accepts: $acc,
            default: $def,
            doc: $doc,
            effect: $eff,
        }
    };
}

use Accepts::{AnyInt, CpuList, PowerOfTwo, Range, SyncThreshold, Unsigned};
use Effect::{Acts, NoEffect};

/// Every sysctl of sysctls.md, in the kernel's table order.
pub const SYSCTLS: &[Sysctl] = &[
    sysctl!("amemthresh", AnyInt, "1024", Acts, "available-memory threshold (pages) below which the automatic defenses switch on"),
    sysctl!("am_droprate", AnyInt, "10", Acts, "drop 1 of every N new-connection packets in drop_packet mode 3"),
    sysctl!("drop_entry", Range(0, 3), "0", Acts, "random eviction of half-open / idle entries (0 off, 1-2 auto, 3 always)"),
    sysctl!("drop_packet", Range(0, 3), "0", Acts, "drop a share of new-connection packets (0 off, 1-2 auto, 3 always)"),
    sysctl!("conntrack", AnyInt, "0", NoEffect("lvsd's connections never pass through netfilter conntrack"), "keep netfilter conntrack entries for IPVS connections"),
    sysctl!("secure_tcp", Range(0, 3), "0", Acts, "use the secure TCP state table (on when the effective value is >= 2)"),
    sysctl!("snat_reroute", AnyInt, "1", Acts, "route NAT replies from the VIP after the source rewrite (policy routing by source applies; 0: from the real server, as they came)"),
    sysctl!("sync_version", Range(0, 1), "1", Acts, "sync message format a master sends (0 = legacy v0)"),
    sysctl!("sync_ports", PowerOfTwo, "1", Acts, "number of sync threads/ports (a power of two)"),
    sysctl!("sync_persist_mode", AnyInt, "0", Acts, "for persistent services sync only templates"),
    sysctl!("sync_qlen_max", Unsigned, "(RAM pages / 32)", Acts, "maximum queued, unsent sync messages"),
    sysctl!("sync_sock_size", AnyInt, "0", Acts, "send/receive buffer of sync sockets (0 = system default)"),
    sysctl!("cache_bypass", AnyInt, "0", Acts, "fwmark services without destination forward to the original destination"),
    sysctl!("expire_nodest_conn", AnyInt, "0", Acts, "expire (instead of dropping packets of) entries whose destination was deleted; reschedule SYNs to weight-0 destinations"),
    sysctl!("sloppy_tcp", AnyInt, "0", Acts, "create TCP entries from any non-RST packet, not only SYN"),
    sysctl!("sloppy_sctp", AnyInt, "0", Acts, "create SCTP entries from any packet whose first chunk is not ABORT"),
    sysctl!("expire_quiescent_template", AnyInt, "0", Acts, "a persistence template whose destination has weight 0 is invalid"),
    sysctl!("sync_threshold", SyncThreshold, "3\t50", Acts, "sync a connection when in_pkts % period == threshold"),
    sysctl!("sync_refresh_period", Range(-JIFFIES_SECS, JIFFIES_SECS), "0", Acts, "re-sync an unchanged connection only when its expiry moved this much"),
    sysctl!("sync_retries", Range(0, 3), "0", Acts, "number of sync re-sends"),
    sysctl!("nat_icmp_send", AnyInt, "0", Acts, "answer unmatched packets from NAT real servers with ICMP port unreachable"),
    sysctl!("pmtu_disc", AnyInt, "1", Acts, "tunnels: send FRAG_NEEDED for DF packets over the tunnel MTU and copy DF to the outer header (0: fragment the outer packet instead)"),
    sysctl!("backup_only", AnyInt, "0", Acts, "disable the director while a backup sync daemon runs"),
    sysctl!("conn_reuse_mode", AnyInt, "1", Acts, "reschedule a new SYN that hits an old entry in TIME_WAIT/CLOSE (bit 2: also FIN_WAIT of DR/TUN entries)"),
    sysctl!("schedule_icmp", AnyInt, "0", NoEffect("related ICMP errors are translated for existing connections, but never schedule new ones"), "create entries for ICMP errors whose embedded packet matches none"),
    sysctl!("ignore_tunneled", AnyInt, "0", NoEffect("lvsd always leaves protocols it does not handle to the host"), "mark packets of protocols IPVS does not handle"),
    sysctl!("run_estimation", AnyInt, "1", Acts, "run the rate estimator (0 freezes rates and the listed counters)"),
    sysctl!("est_cpulist", CpuList, "(housekeeping CPUs)", Acts, "CPUs for the estimator; lvsd runs it in its own loop, but an empty list stops it as in the kernel"),
    sysctl!("est_nice", Range(-20, 19), "0", NoEffect("the estimator runs in lvsd's own loop, not in a thread"), "nice value of the estimator"),
    sysctl!("debug_level", AnyInt, "0", Acts, "IPVS debug verbosity, mapped onto lvsd's log level: 0 leaves --log-level, 1-6 debug, 7 and above trace"),
    sysctl!("lblc_expiration", Range(-JIFFIES_SECS, JIFFIES_SECS), "86400", Acts, "idle seconds after which an lblc entry is removed by the periodic full check"),
    sysctl!("lblcr_expiration", Range(-JIFFIES_SECS, JIFFIES_SECS), "86400", Acts, "the same for lblcr; also when a server set may lose its most loaded member"),
];

/// Why a sysctl could not be read or set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("no sysctl `{0}` (see `lvsadm --sysctl` for the list)")]
    Unknown(String),
    #[error("invalid value `{value}` for {name}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
}

/// The declaration of `name` (`net.ipv4.vs.` prefix optional).
pub fn lookup(name: &str) -> Option<&'static Sysctl> {
    let short = name.strip_prefix("net.ipv4.vs.").unwrap_or(name);
    SYSCTLS.iter().find(|s| s.name == short)
}

impl Sysctl {
    /// What `accepts` means, for error messages.
    pub fn expected(&self) -> String {
        match self.accepts {
            AnyInt => "an integer".into(),
            Range(a, b) => format!("an integer in {a}..{b}"),
            PowerOfTwo => "a power of two (1, 2, 4, ...)".into(),
            Unsigned => "an integer in 0..18446744073709551615".into(),
            SyncThreshold => {
                "two integers `threshold period`, both >= 0, threshold < period unless period is 0"
                    .into()
            }
            CpuList => "a CPU list such as `0-3,8` (or empty)".into(),
        }
    }

    /// Checks `value` against the declaration and returns it normalised
    /// the way the kernel prints it back.
    pub fn check(&self, value: &str) -> Result<String, SysctlError> {
        let invalid = || SysctlError::Invalid {
            name: self.name,
            value: value.to_string(),
            expected: self.expected(),
        };
        let v = value.trim();
        match self.accepts {
            AnyInt | Range(..) => self.parse(value).map(|n| n.to_string()),
            PowerOfTwo => match int(v) {
                Some(n) if n >= 1 && i32::try_from(n).is_ok() && n.count_ones() == 1 => {
                    Ok(n.to_string())
                }
                _ => Err(invalid()),
            },
            Unsigned => {
                let digits = v.strip_prefix('+').unwrap_or(v);
                match digits.parse::<u64>() {
                    Ok(n) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                        Ok(n.to_string())
                    }
                    _ => Err(invalid()),
                }
            }
            SyncThreshold => {
                let mut it = v.split_whitespace().map(int);
                match (it.next(), it.next(), it.next()) {
                    (Some(Some(t)), Some(Some(p)), None)
                        if t >= 0
                            && p >= 0
                            && i32::try_from(t).is_ok()
                            && i32::try_from(p).is_ok()
                            && (t < p || p == 0) =>
                    {
                        Ok(format!("{t}\t{p}"))
                    }
                    _ => Err(invalid()),
                }
            }
            CpuList => {
                let ok = v.is_empty()
                    || v.split(',').all(|r| {
                        let mut ends = r.splitn(2, '-').map(|x| x.parse::<u32>().ok());
                        match (ends.next(), ends.next()) {
                            (Some(Some(_)), None) => true,
                            (Some(Some(a)), Some(Some(b))) => a <= b,
                            _ => false,
                        }
                    });
                if ok {
                    Ok(v.to_string())
                } else {
                    Err(invalid())
                }
            }
        }
    }

    /// Checks an integer `value` against the declaration and returns it.
    pub fn parse(&self, value: &str) -> Result<i64, SysctlError> {
        let invalid = || SysctlError::Invalid {
            name: self.name,
            value: value.to_string(),
            expected: self.expected(),
        };
        let n = int(value.trim()).ok_or_else(invalid)?;
        match self.accepts {
            AnyInt if i32::try_from(n).is_ok() => Ok(n),
            Range(a, b) if (a..=b).contains(&n) => Ok(n),
            _ => Err(invalid()),
        }
    }
}

/// A decimal integer with an optional minus sign (as the kernel's
/// `proc_dointvec` reads it), if it fits an i64.
fn int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn clamp_secs(v: i64) -> u32 {
    // A negative expiration makes every entry due at the next check, as 0 does.
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl Engine {
    /// The current value of sysctl `name`, as the kernel prints it.
    pub fn sysctl(&self, name: &str) -> Result<String, SysctlError> {
        let d = lookup(name).ok_or_else(|| SysctlError::Unknown(name.to_string()))?;
        let s = &self.settings;
        let f = &self.defense;
        Ok(match d.name {
            "amemthresh" => f.amemthresh.to_string(),
            "am_droprate" => f.am_droprate.to_string(),
            "drop_entry" => f.drop_entry.to_string(),
            "drop_packet" => f.drop_packet.to_string(),
            "secure_tcp" => f.secure_tcp.to_string(),
            "conn_reuse_mode" => s.conn_reuse_mode.to_string(),
            "expire_nodest_conn" => s.expire_nodest_conn.to_string(),
            "cache_bypass" => s.cache_bypass.to_string(),
            "sloppy_tcp" => s.sloppy_tcp.to_string(),
            "sloppy_sctp" => s.sloppy_sctp.to_string(),
            "expire_quiescent_template" => s.expire_quiescent_template.to_string(),
            "nat_icmp_send" => s.nat_icmp_send.to_string(),
            "run_estimation" => s.run_estimation.to_string(),
            "pmtu_disc" => s.pmtu_disc.to_string(),
            "snat_reroute" => s.snat_reroute.to_string(),
            "lblc_expiration" => self.sched_settings.lblc_expiration_written.to_string(),
            "lblcr_expiration" => self.sched_settings.lblcr_expiration_written.to_string(),
            other => s
                .stored
                .get(other)
                .cloned()
                .unwrap_or_else(|| d.default.to_string()),
        })
    }

    /// Sets sysctl `name` to `value` after checking it against the declaration.
    pub fn set_sysctl(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let d = lookup(name).ok_or_else(|| SysctlError::Unknown(name.to_string()))?;
        let text = d.check(value)?;
        let v = || d.parse(value).map(|n| n as i32);
        let s = &mut self.settings;
        let f = &mut self.defense;
        match d.name {
            "amemthresh" => f.amemthresh = v()?,
            "am_droprate" => f.am_droprate = v()?,
            // Defense modes: a new value re-runs the update at once; writing
            // the current value does nothing (§17.1).
            "drop_entry" | "drop_packet" | "secure_tcp" => {
                let slot = match d.name {
                    "drop_entry" => &mut f.drop_entry,
                    "drop_packet" => &mut f.drop_packet,
                    _ => &mut f.secure_tcp,
                };
                let n = v()?;
                if *slot != n {
                    *slot = n;
                    self.update_defense();
                }
            }
            "conn_reuse_mode" => s.conn_reuse_mode = v()?,
            "expire_nodest_conn" => s.expire_nodest_conn = v()?,
            "cache_bypass" => s.cache_bypass = v()?,
            "sloppy_tcp" => s.sloppy_tcp = v()?,
            "sloppy_sctp" => s.sloppy_sctp = v()?,
            "expire_quiescent_template" => s.expire_quiescent_template = v()?,
            "nat_icmp_send" => s.nat_icmp_send = v()?,
            "run_estimation" => s.run_estimation = v()?,
            "pmtu_disc" => s.pmtu_disc = v()?,
            "snat_reroute" => s.snat_reroute = v()?,
            "lblc_expiration" => {
                let n = d.parse(value)?;
                self.sched_settings.lblc_expiration_s = clamp_secs(n);
                self.sched_settings.lblc_expiration_written = n;
            }
            "lblcr_expiration" => {
                let n = d.parse(value)?;
                self.sched_settings.lblcr_expiration_s = clamp_secs(n);
                self.sched_settings.lblcr_expiration_written = n;
            }
            other => {
                s.stored.insert(other, text);
                if other == "backup_only" {
                    self.refresh_backup_only();
                }
            }
        }
        Ok(())
    }

    /// Whether the rate estimator runs: `run_estimation` on and
    /// `est_cpulist` not emptied (§19.1).
    pub(crate) fn estimation_on(&self) -> bool {
        self.settings.run_estimation != 0
            && self
                .settings
                .stored
                .get("est_cpulist")
                .is_none_or(|l| !l.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_knob_is_declared_once_and_reads_its_default() {
        let e = Engine::new(1);
        let mut names: Vec<&str> = SYSCTLS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SYSCTLS.len());
        assert_eq!(SYSCTLS.len(), 32);
        for s in SYSCTLS {
            assert_eq!(e.sysctl(s.name).unwrap(), s.default, "{}", s.name);
        }
        assert_eq!(e.sysctl("net.ipv4.vs.conn_reuse_mode").unwrap(), "1");
    }

    #[test]
    fn implemented_knobs_change_behaviour_and_are_range_checked() {
        let mut e = Engine::new(1);
        e.set_sysctl("conn_reuse_mode", "0").unwrap();
        assert_eq!(e.settings.conn_reuse_mode, 0);
        e.set_sysctl("sloppy_tcp", "1").unwrap();
        assert_eq!(e.sysctl("sloppy_tcp").unwrap(), "1");
        e.set_sysctl("lblc_expiration", "600").unwrap();
        assert_eq!(e.sched_settings.lblc_expiration_s, 600);
        let err = e.set_sysctl("lblcr_expiration", "8589935").unwrap_err();
        assert_eq!(err.to_string(), "invalid value `8589935` for lblcr_expiration: expected an integer in -8589934..8589934");
        assert!(e.set_sysctl("conn_reuse_mode", "2147483648").is_err());
        assert!(e.set_sysctl("conn_reuse_mode", "1x").is_err());
        assert!(e.set_sysctl("conn_reuse_mode", "").is_err());
        assert_eq!(
            e.set_sysctl("nosuch", "1").unwrap_err(),
            SysctlError::Unknown("nosuch".into())
        );
    }

    #[test]
    fn every_knob_is_settable_with_the_kernels_validation() {
        let mut e = Engine::new(1);
        for (name, good, shown) in [
            ("secure_tcp", "3", "3"),
            ("conntrack", "7", "7"),
            ("sync_ports", "8", "8"),
            ("sync_qlen_max", "0", "0"),
            (
                "sync_qlen_max",
                "18446744073709551615",
                "18446744073709551615",
            ),
            ("sync_threshold", "5 0", "5\t0"),
            ("sync_threshold", "  2\t9 ", "2\t9"),
            ("est_cpulist", "0-1,3", "0-1,3"),
            ("est_cpulist", "", ""),
            ("est_nice", "-20", "-20"),
            ("lblc_expiration", "-5", "-5"),
        ] {
            e.set_sysctl(name, good)
                .unwrap_or_else(|err| panic!("{name}={good}: {err}"));
            assert_eq!(e.sysctl(name).unwrap(), shown, "{name}");
        }
        assert_eq!(e.sched_settings.lblc_expiration_s, 0);
        for (name, bad) in [
            ("secure_tcp", "4"),
            ("drop_entry", "-1"),
            ("sync_ports", "3"),
            ("sync_ports", "0"),
            ("sync_qlen_max", "-1"),
            ("sync_threshold", "50 50"),
            ("sync_threshold", "-1 5"),
            ("sync_threshold", "3"),
            ("est_cpulist", "3-1"),
            ("est_cpulist", "a"),
            ("est_nice", "20"),
            ("sync_version", "2"),
        ] {
            assert!(e.set_sysctl(name, bad).is_err(), "{name}={bad} accepted");
        }
        let err = e.set_sysctl("sync_ports", "3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value `3` for sync_ports: expected a power of two (1, 2, 4, ...)"
        );
        // An emptied CPU list stops estimation, as in the kernel.
        assert!(!e.estimation_on());
        e.set_sysctl("est_cpulist", "0").unwrap();
        assert!(e.estimation_on());
        e.set_sysctl("run_estimation", "0").unwrap();
        assert!(!e.estimation_on());
    }

    #[test]
    fn defense_mode_writes_take_effect_at_once() {
        let mut e = Engine::new(1);
        assert!(!e.secure_tcp_on());
        e.set_sysctl("secure_tcp", "3").unwrap();
        assert!(e.secure_tcp_on());
        e.set_sysctl("secure_tcp", "1").unwrap();
        assert!(!e.secure_tcp_on());
        // Automatic mode follows the memory figure at the next 1 s run.
        e.set_available_memory(100);
        e.handle_timeout(0);
        e.handle_timeout(1000);
        assert!(e.secure_tcp_on());
        assert_eq!(e.sysctl("secure_tcp").unwrap(), "2");
        e.set_available_memory(1 << 20);
        e.handle_timeout(2000);
        assert!(!e.secure_tcp_on());
        assert_eq!(e.sysctl("secure_tcp").unwrap(), "1");
    }
}
