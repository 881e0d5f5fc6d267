//! The daemon's logging: every message goes through `tracing`'s macros
//! (`info!`, `warn!`, …, with fields such as `service`, `server`,
//! `reason`), and this subscriber writes each event as one line on
//! standard error, in one of three formats:
//!
//! - `human` (the default on a terminal): `lvsd: warning: MESSAGE`;
//! - `logfmt` (the default otherwise, e.g. under systemd, whose journal
//!   keeps standard error): `ts=… level=warn msg="…" server=…`;
//! - `json`: one object per line, `{"ts":…,"level":…,"msg":…,…}`.
//!
//! The level is `--log-level`; the `debug_level` sysctl raises it at run
//! time (1–6: debug, 7 and above: trace; 0 gives `--log-level` back).
//! lvsd has no spans: the subscriber only writes events.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// How lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `lvsd: warning: message`, for a person at a terminal.
    Human,
    /// One line of `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The most verbose level written (`--log-level`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

fn level_rank(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Writes events as lines on standard error.
pub struct Logger {
    format: Format,
    /// `--log-level`.
    base: u8,
    /// The level in force: `base`, or more verbose while `debug_level` asks.
    current: AtomicU8,
}

impl Logger {
    pub fn new(format: Format, level: LogLevel) -> Logger {
        Logger {
            format,
            base: level as u8,
            current: AtomicU8::new(level as u8),
        }
    }

    /// Applies the `debug_level` sysctl (see the module's mapping).
    pub fn set_debug_level(&self, debug_level: i64) {
        let wanted = match debug_level {
            i64::MIN..=0 => self.base,
            1..=6 => self.base.max(LogLevel::Debug as u8),
            _ => LogLevel::Trace as u8,
        };
        self.current.store(wanted, Ordering::Relaxed);
    }

    /// The line for one event (without the newline).
    pub fn line(&self, level: &Level, fields: &Fields, now: std::time::SystemTime) -> String {
        let mut out = String::with_capacity(96 + fields.message.len());
        match self.format {
            Format::Human => {
                out.push_str("lvsd: ");
                match *level {
                    Level::ERROR => out.push_str("error: "),
                    Level::WARN => out.push_str("warning: "),
                    Level::DEBUG => out.push_str("debug: "),
                    Level::TRACE => out.push_str("trace: "),
                    _ => {}
                }
                out.push_str(&fields.message);
            }
            Format::Logfmt => {
                out.push_str("ts=");
                rfc3339(&mut out, now);
                out.push_str(" level=");
                out.push_str(level_name(level));
                out.push_str(" msg=");
                logfmt_value(&mut out, &fields.message);
                for (k, v) in &fields.pairs {
                    out.push(' ');
                    out.push_str(k);
                    out.push('=');
                    logfmt_value(&mut out, v);
                }
            }
            Format::Json => {
                let mut map = serde_json::Map::new();
                let mut ts = String::new();
                rfc3339(&mut ts, now);
                map.insert("ts".into(), ts.into());
                map.insert("level".into(), level_name(level).into());
                map.insert("msg".into(), fields.message.clone().into());
                for (k, v) in &fields.pairs {
                    map.insert((*k).into(), v.clone().into());
                }
                out.push_str(&serde_json::Value::Object(map).to_string());
            }
        }
        out
    }
}

/// The message and the other fields of an event, as text.
#[derive(Default)]
pub struct Fields {
    pub message: String,
    pub pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

/// A logfmt value: bare if it is a plain word, else quoted with `\"`,
/// `\\`, `\n`, `\r` and `\t` escaped (other control characters as `\u{…}`).
fn logfmt_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-12-03T21:10:00.123Z` (UTC, milliseconds).
fn rfc3339(out: &mut String, t: std::time::SystemTime) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's well-known era arithmetic).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Subscriber for &'static Logger {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at run time (`debug_level`): ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_rank(metadata.level()) <= self.current.load(Ordering::Relaxed)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = self.line(
            event.metadata().level(),
            &fields,
            std::time::SystemTime::now(),
        );
        line.push('\n');
        // One write per line, so that lines of different threads do not mix.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Installs the logger for the whole process (once; later calls keep the
/// first). `format` `None`: human on a terminal, logfmt otherwise.
pub fn init(format: Option<Format>, level: LogLevel) {
    use std::io::IsTerminal;
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        Format::Human
    } else {
        Format::Logfmt
    });
    let logger: &'static Logger = LOGGER.get_or_init(|| Logger::new(format, level));
    let _ = tracing::subscriber::set_global_default(logger);
}

/// Applies the `debug_level` sysctl to the installed logger, if any.
pub fn set_debug_level(v: i64) {
    if let Some(l) = LOGGER.get() {
        l.set_debug_level(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn fields(msg: &str, pairs: &[(&'static str, &str)]) -> Fields {
        Fields {
            message: msg.into(),
            pairs: pairs.iter().map(|&(k, v)| (k, v.to_string())).collect(),
        }
    }

    const T: u64 = 1_796_332_200; // 2026-12-03T21:10:00Z

    #[test]
    fn the_three_formats() {
        let at = UNIX_EPOCH + Duration::from_millis(T * 1000 + 7);
        let f = fields(
            "server rs1 198.18.1.11:80 of director web is DOWN: tcpcheck connection refused",
            &[
                ("director", "web"),
                ("server", "198.18.1.11:80"),
                ("reason", "connection refused"),
            ],
        );
        let human = Logger::new(Format::Human, LogLevel::Info);
        assert_eq!(
            human.line(&Level::WARN, &f, at),
            "lvsd: warning: server rs1 198.18.1.11:80 of director web is DOWN: tcpcheck connection refused"
        );
        assert_eq!(
            human.line(&Level::INFO, &fields("stopping", &[]), at),
            "lvsd: stopping"
        );
        let logfmt = Logger::new(Format::Logfmt, LogLevel::Info);
        assert_eq!(
            logfmt.line(&Level::WARN, &f, at),
            "ts=2026-12-03T21:10:00.007Z level=warn msg=\"server rs1 198.18.1.11:80 of director web is DOWN: tcpcheck connection refused\" director=web server=198.18.1.11:80 reason=\"connection refused\""
        );
        let json = Logger::new(Format::Json, LogLevel::Info);
        let line = json.line(&Level::WARN, &f, at);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "2026-12-03T21:10:00.007Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["server"], "198.18.1.11:80");
        assert_eq!(v["reason"], "connection refused");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn logfmt_quotes_what_needs_it() {
        let mut s = String::new();
        for v in [
            "plain",
            "",
            "two words",
            "a=b",
            "q\"uote",
            "back\\slash",
            "new\nline",
            "bell\u{7}",
            "é",
        ] {
            logfmt_value(&mut s, v);
            s.push('|');
        }
        assert_eq!(
            s,
            "plain|\"\"|\"two words\"|\"a=b\"|\"q\\\"uote\"|\"back\\\\slash\"|\"new\\nline\"|\"bell\\u{7}\"|\"é\"|"
        );
    }

    #[test]
    fn dates_across_eras_and_leap_days() {
        let mut s = String::new();
        for secs in [0u64, 951_782_400, 4_107_542_399, T] {
            rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(secs));
            s.push(' ');
        }
        assert_eq!(
            s,
            "1970-01-01T00:00:00.000Z 2000-02-29T00:00:00.000Z 2100-02-28T23:59:59.000Z 2026-12-03T21:10:00.000Z "
        );
    }

    #[test]
    fn debug_level_raises_and_gives_back() {
        let l = Logger::new(Format::Logfmt, LogLevel::Warn);
        let lvl = || l.current.load(Ordering::Relaxed);
        assert_eq!(lvl(), LogLevel::Warn as u8);
        l.set_debug_level(3);
        assert_eq!(lvl(), LogLevel::Debug as u8);
        l.set_debug_level(12);
        assert_eq!(lvl(), LogLevel::Trace as u8);
        l.set_debug_level(0);
        assert_eq!(lvl(), LogLevel::Warn as u8);
        let verbose = Logger::new(Format::Logfmt, LogLevel::Trace);
        verbose.set_debug_level(2);
        assert_eq!(
            verbose.current.load(Ordering::Relaxed),
            LogLevel::Trace as u8
        );
    }
}
