//! The rise/fall state machine of one check, and where in its interval a check
//! first fires. Pure: no clock, no sockets, so the counting rules are tested
//! exactly (the runner feeds it one outcome per probe).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::CheckSpec;

/// Up/down state of one check with its consecutive counters.
///
/// Starts up (like keepalived without `alpha`): traffic flows at once and a
/// dead server leaves after `fall` consecutive failures; a down server comes
/// back after `rise` consecutive successes. A `rise` or `fall` of 0 counts as 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    rise: u32,
    fall: u32,
    up: bool,
    successes: u32,
    failures: u32,
}

impl Verdict {
    /// A fresh verdict: up, no result seen yet.
    pub fn new(rise: u32, fall: u32) -> Verdict {
        Verdict {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            successes: 0,
            failures: 0,
        }
    }

    /// Records the outcome of one probe; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if !self.up && self.successes >= self.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.up && self.failures >= self.fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// Whether the check currently counts as up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Consecutive successes (0 after a failure).
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// FNV-1a, 64 bits: a hash that does not change between runs or builds, so a
/// check keeps its slot in the interval across restarts and reloads.
struct Fnv64(u64);

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Delay before the first probe of `spec`: a stable offset in `[0, interval)`
/// derived from a hash of the whole spec, so that a thousand checks configured
/// at once do not all fire in the same millisecond.
pub fn first_offset(spec: &CheckSpec) -> Duration {
    let interval = spec.interval.as_nanos();
    if interval == 0 {
        return Duration::ZERO;
    }
    let mut h = Fnv64(0xcbf2_9ce4_8422_2325);
    spec.hash(&mut h);
    // Fold the high bits in: FNV's low bits are weak for short inputs.
    let x = h.finish();
    let x = x ^ (x >> 29) ^ (x >> 47);
    let nanos = u128::from(x) % interval;
    Duration::from_nanos(u64::try_from(nanos).expect("below the interval, which fits u64 nanos"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `outcomes` (`+` success, `-` failure) and returns the transitions
    /// with the consecutive counts at the moment they happened.
    fn run(rise: u32, fall: u32, outcomes: &str) -> Vec<(usize, bool, u32, u32)> {
        let mut v = Verdict::new(rise, fall);
        let mut out = Vec::new();
        for (i, c) in outcomes.chars().enumerate() {
            if let Some(up) = v.record(c == '+') {
                out.push((i, up, v.successes(), v.failures()));
            }
        }
        out
    }

    #[test]
    fn starts_up_and_silent_on_success() {
        let v = Verdict::new(1, 1);
        assert!(v.is_up());
        assert_eq!(run(1, 1, "++++"), vec![]);
    }

    #[test]
    fn seed_defaults_rise_1_fall_1() {
        assert_eq!(
            run(1, 1, "+-+-"),
            vec![(1, false, 0, 1), (2, true, 1, 0), (3, false, 0, 1)]
        );
    }

    #[test]
    fn rise_3_fall_2() {
        // One failure is forgiven; two take it down; two successes are not
        // enough to bring it back, three are; a failure resets the count.
        assert_eq!(
            run(3, 2, "+-+--++-+++-"),
            vec![(4, false, 0, 2), (10, true, 3, 0)]
        );
    }

    #[test]
    fn zero_counts_as_one() {
        assert_eq!(run(0, 0, "-+"), vec![(0, false, 0, 1), (1, true, 1, 0)]);
    }
}
