//! The IPVS sysctls (`/proc/sys/net/ipv4/vs/*`, sysctls.md), declared once:
//! name, accepted values, default, meaning, and whether this engine acts on
//! it yet. Parsing, validation, listing and the docs all read this table.
//!
//! A knob the engine does not act on yet can be read (it shows the kernel's
//! default) but not changed: accepting a value that does nothing would
//! mislead an operator.

use crate::engine::Engine;

/// Which values a sysctl accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Any integer (the kernel's plain `int` and boolean knobs).
    AnyInt,
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// Something other than one integer (a pair, a CPU list, ...).
    Text,
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
    /// Whether this engine honours it (otherwise only the default is accepted).
    pub implemented: bool,
}

/// `|v| <= INT_MAX / HZ` for HZ = 250: the kernel's bound on jiffies knobs written in seconds.
const JIFFIES_SECS: i64 = 8_589_934;

macro_rules! sysctl {
    ($name:literal, $acc:expr, $def:literal, $imp:literal, $doc:literal) => {
        Sysctl {
            name: $name,
            accepts: $acc,
            default: $def,
            doc: $doc,
            implemented: $imp,
        }
    };
}

use Accepts::{AnyInt, Range, Text};

/// Every sysctl of sysctls.md, in the kernel's table order.
pub const SYSCTLS: &[Sysctl] = &[
    sysctl!("amemthresh", AnyInt, "1024", false, "available-memory threshold (pages) below which the automatic defenses switch on"),
    sysctl!("am_droprate", AnyInt, "10", false, "drop 1 of every N new-connection packets in drop_packet mode 3"),
    sysctl!("drop_entry", Range(0, 3), "0", false, "random eviction of half-open / idle entries (0 off, 1-2 auto, 3 always)"),
    sysctl!("drop_packet", Range(0, 3), "0", false, "drop a share of new-connection packets (0 off, 1-2 auto, 3 always)"),
    sysctl!("conntrack", AnyInt, "0", false, "keep netfilter conntrack entries for IPVS connections"),
    sysctl!("secure_tcp", Range(0, 3), "0", false, "use the secure TCP state table (on when the effective value is >= 2)"),
    sysctl!("snat_reroute", AnyInt, "1", false, "re-route NAT replies after the source rewrite"),
    sysctl!("sync_version", Range(0, 1), "1", false, "sync message format a master sends (0 = legacy v0)"),
    sysctl!("sync_ports", Text, "1", false, "number of sync threads/ports (a power of two)"),
    sysctl!("sync_persist_mode", AnyInt, "0", false, "for persistent services sync only templates"),
    sysctl!("sync_qlen_max", Text, "(RAM pages / 32)", false, "maximum queued, unsent sync messages"),
    sysctl!("sync_sock_size", AnyInt, "0", false, "send/receive buffer of sync sockets (0 = system default)"),
    sysctl!("cache_bypass", AnyInt, "0", false, "fwmark services without destination forward to the original destination"),
    sysctl!("expire_nodest_conn", AnyInt, "0", true, "expire (instead of dropping packets of) entries whose destination was deleted; reschedule SYNs to weight-0 destinations"),
    sysctl!("sloppy_tcp", AnyInt, "0", true, "create TCP entries from any non-RST packet, not only SYN"),
    sysctl!("sloppy_sctp", AnyInt, "0", false, "create SCTP entries from any packet whose first chunk is not ABORT"),
    sysctl!("expire_quiescent_template", AnyInt, "0", false, "a persistence template whose destination has weight 0 is invalid"),
    sysctl!("sync_threshold", Text, "3\t50", false, "sync a connection when in_pkts % period == threshold"),
    sysctl!("sync_refresh_period", Range(-JIFFIES_SECS, JIFFIES_SECS), "0", false, "re-sync an unchanged connection only when its expiry moved this much"),
    sysctl!("sync_retries", Range(0, 3), "0", false, "number of sync re-sends"),
    sysctl!("nat_icmp_send", AnyInt, "0", false, "answer unmatched packets from NAT real servers with ICMP port unreachable"),
    sysctl!("pmtu_disc", AnyInt, "1", false, "send FRAG_NEEDED for oversize DF packets"),
    sysctl!("backup_only", AnyInt, "0", false, "disable the director while a backup sync daemon runs"),
    sysctl!("conn_reuse_mode", AnyInt, "1", true, "reschedule a new SYN that hits an old entry in TIME_WAIT/CLOSE (bit 2: also FIN_WAIT of DR/TUN entries)"),
    sysctl!("schedule_icmp", AnyInt, "0", false, "create entries for ICMP errors whose embedded packet matches none"),
    sysctl!("ignore_tunneled", AnyInt, "0", false, "mark packets of protocols IPVS does not handle"),
    sysctl!("run_estimation", AnyInt, "1", false, "run the rate estimator"),
    sysctl!("est_cpulist", Text, "(housekeeping CPUs)", false, "CPUs for the estimator"),
    sysctl!("est_nice", Range(-20, 19), "0", false, "nice value of the estimator"),
    sysctl!("lblc_expiration", Range(-JIFFIES_SECS, JIFFIES_SECS), "86400", true, "idle seconds after which an lblc entry is removed by the periodic full check"),
    sysctl!("lblcr_expiration", Range(-JIFFIES_SECS, JIFFIES_SECS), "86400", true, "the same for lblcr; also when a server set may lose its most loaded member"),
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
    #[error("{0} is not implemented yet: only its default ({1}) is accepted")]
    NotImplemented(&'static str, &'static str),
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
            Text => format!("a value like `{}`", self.default),
        }
    }

    /// Checks `value` against the declaration and returns it as an integer.
    pub fn parse(&self, value: &str) -> Result<i64, SysctlError> {
        let invalid = || SysctlError::Invalid {
            name: self.name,
            value: value.to_string(),
            expected: self.expected(),
        };
        let v = value.trim();
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let n: i64 = v.parse().map_err(|_| invalid())?;
        match self.accepts {
            AnyInt if i32::try_from(n).is_ok() => Ok(n),
            Range(a, b) if (a..=b).contains(&n) => Ok(n),
            _ => Err(invalid()),
        }
    }
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
        Ok(match d.name {
            "conn_reuse_mode" => s.conn_reuse_mode.to_string(),
            "expire_nodest_conn" => s.expire_nodest_conn.to_string(),
            "sloppy_tcp" => s.sloppy_tcp.to_string(),
            "lblc_expiration" => self.sched_settings.lblc_expiration_written.to_string(),
            "lblcr_expiration" => self.sched_settings.lblcr_expiration_written.to_string(),
            _ => d.default.to_string(),
        })
    }

    /// Sets sysctl `name` to `value` after checking it against the declaration.
    pub fn set_sysctl(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let d = lookup(name).ok_or_else(|| SysctlError::Unknown(name.to_string()))?;
        if !d.implemented {
            let same = match d.accepts {
                // `00`, `-0` and `0` are the same number to the kernel.
                AnyInt | Range(..) => d.parse(value).ok() == d.parse(d.default).ok(),
                Text => value.split_whitespace().eq(d.default.split_whitespace()),
            };
            if same {
                return Ok(());
            }
            return Err(SysctlError::NotImplemented(d.name, d.default));
        }
        let v = d.parse(value)?;
        let s = &mut self.settings;
        match d.name {
            "conn_reuse_mode" => s.conn_reuse_mode = v as i32,
            "expire_nodest_conn" => s.expire_nodest_conn = v as i32,
            "sloppy_tcp" => s.sloppy_tcp = v as i32,
            "lblc_expiration" => {
                self.sched_settings.lblc_expiration_s = clamp_secs(v);
                self.sched_settings.lblc_expiration_written = v;
            }
            "lblcr_expiration" => {
                self.sched_settings.lblcr_expiration_s = clamp_secs(v);
                self.sched_settings.lblcr_expiration_written = v;
            }
            _ => {}
        }
        Ok(())
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
        assert_eq!(SYSCTLS.len(), 31);
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
    fn knobs_not_implemented_accept_only_their_default() {
        let mut e = Engine::new(1);
        e.set_sysctl("secure_tcp", "0").unwrap();
        e.set_sysctl("secure_tcp", "00").unwrap();
        e.set_sysctl("sync_threshold", "3 50").unwrap();
        e.set_sysctl("lblc_expiration", "-5").unwrap();
        assert_eq!(e.sysctl("lblc_expiration").unwrap(), "-5");
        assert_eq!(e.sched_settings.lblc_expiration_s, 0);
        let err = e.set_sysctl("secure_tcp", "2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "secure_tcp is not implemented yet: only its default (0) is accepted"
        );
    }
}
