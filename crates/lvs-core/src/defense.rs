//! The defense strategies (connections.md §17): `drop_entry`, `drop_packet`
//! and `secure_tcp`, switched by an available-memory figure that the caller
//! measures and hands in (so the logic is testable with any figure).
//!
//! Each strategy's sysctl takes 0 (off), 1 (automatic, currently off),
//! 2 (automatic, currently on) or 3 (always on); the once-a-second update
//! rewrites 1 ↔ 2 itself, as the kernel does.

/// State of the three strategies and their two tuning knobs.
#[derive(Debug, Clone)]
pub struct Defense {
    /// `drop_entry` sysctl (0..=3).
    pub drop_entry: i32,
    /// `drop_packet` sysctl (0..=3).
    pub drop_packet: i32,
    /// `secure_tcp` sysctl (0..=3).
    pub secure_tcp: i32,
    /// `amemthresh` (pages; negative behaves as 0).
    pub amemthresh: i32,
    /// `am_droprate` (drop_packet mode 3).
    pub am_droprate: i32,
    /// Whether the random entry eviction runs (drop_entry on).
    drop_entry_on: bool,
    /// Drop one of every `drop_rate` new-connection packets (0 = none).
    drop_rate: i32,
    drop_counter: i32,
    /// Whether the secure TCP state table is in effect.
    secure_on: bool,
    /// drop_entry's per-`in_pkts` counters (index 1..=8), §17.2.
    entry_counters: [i32; 9],
}

impl Default for Defense {
    fn default() -> Self {
        Defense {
            drop_entry: 0,
            drop_packet: 0,
            secure_tcp: 0,
            amemthresh: 1024,
            am_droprate: 10,
            drop_entry_on: false,
            drop_rate: 0,
            drop_counter: 0,
            secure_on: false,
            entry_counters: [0; 9],
        }
    }
}

impl Defense {
    /// Recomputes the strategies from the available memory in pages
    /// (`None`: unknown, treated as plenty), §17.1. Runs once a second and
    /// whenever one of the three mode sysctls is written.
    pub fn update(&mut self, avail_pages: Option<u64>) {
        let thresh = i64::from(self.amemthresh.max(0));
        let avail = avail_pages.map_or(i64::MAX, |p| i64::try_from(p).unwrap_or(i64::MAX));
        let nomem = avail < thresh;

        self.drop_entry_on = match self.drop_entry {
            1 | 2 if nomem => {
                self.drop_entry = 2;
                true
            }
            1 | 2 => {
                self.drop_entry = 1;
                false
            }
            3 => true,
            _ => false,
        };

        match self.drop_packet {
            1 | 2 if nomem => {
                // thresh > avail >= 0 here, so the divisor is positive.
                let rate = (thresh / (thresh - avail)) as i32;
                self.drop_rate = rate;
                self.drop_counter = rate;
                self.drop_packet = 2;
            }
            1 | 2 => {
                self.drop_rate = 0;
                self.drop_packet = 1;
            }
            // The counter keeps its value (§17.3).
            3 => self.drop_rate = self.am_droprate,
            _ => self.drop_rate = 0,
        }

        match self.secure_tcp {
            1 | 2 if nomem => self.secure_tcp = 2,
            1 | 2 => self.secure_tcp = 1,
            _ => {}
        }
        self.secure_on = self.secure_tcp >= 2;
    }

    /// drop_packet (§17.3): whether this new-connection packet is dropped.
    #[inline]
    pub fn todrop_packet(&mut self) -> bool {
        if self.drop_rate == 0 {
            return false;
        }
        self.drop_counter = self.drop_counter.wrapping_sub(1);
        if self.drop_counter > 0 {
            return false;
        }
        self.drop_counter = self.drop_rate;
        true
    }

    /// Whether the random entry eviction is on.
    pub fn drop_entry_on(&self) -> bool {
        self.drop_entry_on
    }

    /// Whether the secure TCP state table is in effect.
    #[inline]
    pub fn secure_on(&self) -> bool {
        self.secure_on
    }

    /// drop_entry's rate test for an entry idle for at least 60 s with
    /// `in_pkts` incoming packets (§17.2): entries with 1 packet always go,
    /// with 2 every second one, ... with 8 every eighth; 0 or more than 8
    /// packets: kept.
    pub fn rate_drop(&mut self, in_pkts: u64) -> bool {
        let i = match in_pkts {
            1..=8 => in_pkts as usize,
            _ => return false,
        };
        self.entry_counters[i] -= 1;
        if self.entry_counters[i] > 0 {
            return false;
        }
        self.entry_counters[i] = i as i32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(modes: (i32, i32, i32)) -> Defense {
        let mut d = Defense::default();
        (d.drop_entry, d.drop_packet, d.secure_tcp) = modes;
        d
    }

    #[test]
    fn automatic_modes_follow_memory_and_rewrite_their_sysctl() {
        let mut d = with((1, 1, 1));
        d.update(Some(5000));
        assert_eq!((d.drop_entry, d.drop_packet, d.secure_tcp), (1, 1, 1));
        assert!(!d.drop_entry_on() && !d.secure_on() && !d.todrop_packet());
        // 1000 < 1024 pages: every strategy switches on and reads 2.
        d.update(Some(1000));
        assert_eq!((d.drop_entry, d.drop_packet, d.secure_tcp), (2, 2, 2));
        assert!(d.drop_entry_on() && d.secure_on());
        // rate = 1024 / (1024 - 1000) = 42: one of every 42 dropped.
        assert_eq!((1..=84).filter(|_| d.todrop_packet()).count(), 2);
        d.update(Some(2000));
        assert_eq!((d.drop_entry, d.drop_packet, d.secure_tcp), (1, 1, 1));
        assert!(!d.drop_entry_on() && !d.secure_on() && !d.todrop_packet());
    }

    #[test]
    fn drop_packet_rate_resets_each_update_in_mode_2() {
        let mut d = with((0, 2, 0));
        d.update(Some(0)); // rate 1024 / 1024 = 1: everything dropped
        assert!((0..5).all(|_| d.todrop_packet()));
        d.update(Some(512)); // rate 2
        assert_eq!(
            (0..6).map(|_| d.todrop_packet()).collect::<Vec<_>>(),
            [false, true, false, true, false, true]
        );
    }

    #[test]
    fn mode_3_is_always_on_and_mode_0_always_off() {
        let mut d = with((3, 3, 3));
        d.update(None);
        assert!(d.drop_entry_on() && d.secure_on());
        assert_eq!((d.drop_entry, d.drop_packet, d.secure_tcp), (3, 3, 3));
        // am_droprate 10, counter not re-initialised: it starts at 0, so
        // the first packet is dropped, then one of every 10.
        let drops: Vec<usize> = (0..25).filter(|_| d.todrop_packet()).collect();
        assert_eq!(drops.len(), 3);
        let mut d = with((0, 0, 0));
        d.update(Some(0));
        assert!(!d.drop_entry_on() && !d.secure_on() && !d.todrop_packet());
    }

    #[test]
    fn mode_3_drop_counter_pattern_and_negative_rates() {
        let mut d = with((0, 3, 0));
        d.am_droprate = 3;
        d.update(None);
        let pattern: Vec<bool> = (0..7).map(|_| d.todrop_packet()).collect();
        assert_eq!(pattern, [true, false, false, true, false, false, true]);
        // A negative rate: once the running counter reaches 0, every packet goes.
        d.am_droprate = -1;
        d.update(None);
        assert_eq!((0..3).filter(|_| d.todrop_packet()).count(), 1);
        assert!((0..10).all(|_| d.todrop_packet()));
        d.am_droprate = 0;
        d.update(None);
        assert!(!(0..10).any(|_| d.todrop_packet()));
    }

    #[test]
    fn negative_threshold_never_means_low_memory() {
        let mut d = with((1, 1, 1));
        d.amemthresh = -5;
        d.update(Some(0));
        assert!(!d.drop_entry_on() && !d.secure_on());
    }

    #[test]
    fn entry_rate_test_drops_one_in_in_pkts() {
        let mut d = Defense::default();
        assert!((0..5).all(|_| d.rate_drop(1)));
        let twos: Vec<bool> = (0..4).map(|_| d.rate_drop(2)).collect();
        assert_eq!(twos, [true, false, true, false]);
        assert_eq!((0..16).filter(|_| d.rate_drop(8)).count(), 2);
        assert!(!(0..10).any(|_| d.rate_drop(0) || d.rate_drop(9)));
    }
}
