//! twos — power of two choices (schedulers.md §14). Eligible: OVERLOAD clear
//! and `weight > 0`.
//!
//! 1. `T` = sum of the eligible weights (none eligible → none).
//! 2. Two draws `r1`, `r2`, in that order, uniform in `[0, T]` inclusive
//!    (kernel: `get_random_u32_below(T + 1)` twice).
//! 3. Walking the eligible destinations in list order, both are decreased by
//!    each weight; choice1 / choice2 are the first destinations at which
//!    `r1` / `r2` become `<= 0` (so `r = 0` maps to the first destination too).
//! 4. choice2 wins iff `w2 * o1 > w1 * o2` (overheads §0.4), else choice1.
//!
//! Everything is the kernel's 32-bit `int` arithmetic of `ip_vs_twos.c`,
//! wrapping like the kernel (built with `-fno-strict-overflow`): the weight
//! sum, `T + 1` (reinterpreted as the `u32` ceiling), the draws (a `u32`
//! stored into an `int`), the subtractions, `overhead = (activeconns << 8) +
//! inactconns` and both products. The kernel's corner cases are kept too: if
//! `r1` never reaches `<= 0` (only possible after the sum wrapped), choice1 is
//! the *last* eligible destination with `w1 = -1`, `o1 = 0`; if `r2` never
//! does, choice1 is returned without a comparison.
//!
//! Random numbers: `get_random_u32_below(ceil)` is reproduced on `ctx.rng`
//! exactly as `__get_random_u32_below` (drivers/char/random.c) computes it
//! from its `get_random_u32()` stream (Lemire's multiply-and-reject):
//! `ceil == 0` returns one raw `next_u32()`; otherwise `m = ceil * next_u32()`
//! (64-bit), and if `(u32)m < ceil` it redraws while `(u32)m < (2^32 - ceil) %
//! ceil`; the result is `m >> 32`. The kernel's RNG itself cannot be
//! reproduced, so only the distribution and the comparison rule match the
//! kernel; for a given seed the decisions are deterministic.

use super::{DestList, PacketInfo, SchedCtx, Scheduler};
use crate::rng::Rng;
use crate::service::Dest;

/// Stateless.
#[derive(Debug, Default)]
pub struct Twos;

/// `get_random_u32_below(ceil)`: uniform in `[0, ceil)` (any `u32` for 0).
pub(crate) fn random_u32_below(rng: &mut Rng, ceil: u32) -> u32 {
    let rand = rng.next_u32();
    if ceil == 0 {
        return rand;
    }
    let mut mult = u64::from(ceil) * u64::from(rand);
    if (mult as u32) < ceil {
        let bound = ceil.wrapping_neg() % ceil;
        while (mult as u32) < bound {
            mult = u64::from(ceil) * u64::from(rng.next_u32());
        }
    }
    (mult >> 32) as u32
}

/// `ip_vs_dest_conn_overhead` as the kernel's `int`.
#[inline]
fn int_overhead(d: &Dest) -> i32 {
    (d.active_conns as i32)
        .wrapping_shl(8)
        .wrapping_add(d.inact_conns as i32)
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(
        &mut self,
        dests: DestList<'_>,
        _pkt: &PacketInfo,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let eligible = |d: &Dest| !d.overloaded() && d.weight > 0;

        let mut total: i32 = 0;
        let mut choice1 = None;
        for i in 0..dests.len() {
            let d = dests.get(i);
            if eligible(d) {
                total = total.wrapping_add(d.weight);
                choice1 = Some(i); // the kernel leaves the last eligible here
            }
        }
        let mut choice1 = choice1?;

        let ceil = total.wrapping_add(1) as u32;
        let mut r1 = random_u32_below(ctx.rng, ceil) as i32;
        let mut r2 = random_u32_below(ctx.rng, ceil) as i32;

        let (mut w1, mut o1) = (-1i32, 0i32);
        let (mut w2, mut o2) = (-1i32, 0i32);
        let mut choice2 = None;
        for i in 0..dests.len() {
            let d = dests.get(i);
            if !eligible(d) {
                continue;
            }
            let w = d.weight;
            r1 = r1.wrapping_sub(w);
            r2 = r2.wrapping_sub(w);
            if r1 <= 0 && w1 == -1 {
                choice1 = i;
                w1 = w;
                o1 = int_overhead(d);
            }
            if r2 <= 0 && w2 == -1 {
                choice2 = Some(i);
                w2 = w;
                o2 = int_overhead(d);
            }
            if w1 != -1 && w2 != -1 {
                break;
            }
        }

        match choice2 {
            Some(c2) if w2.wrapping_mul(o1) > w1.wrapping_mul(o2) => Some(c2),
            _ => Some(choice1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::random_u32_below;
    use crate::rng::Rng;
    use crate::sched::testutil::Harness;

    #[test]
    fn below_is_in_range_and_matches_the_kernel_formula() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for ceil in [1u32, 2, 3, 7, 10, 1000, u32::MAX, 0x8000_0001] {
            for _ in 0..200 {
                let v = random_u32_below(&mut a, ceil);
                assert!(v < ceil);
                // Reference: plain Lemire with rejection, one step at a time.
                let expect = loop {
                    let m = u64::from(ceil) * u64::from(b.next_u32());
                    if (m as u32) >= (0u32.wrapping_sub(ceil) % ceil) {
                        break (m >> 32) as u32;
                    }
                };
                assert_eq!(v, expect);
            }
        }
        // ceil 0: a raw draw.
        let mut c = Rng::new(9);
        let mut d = Rng::new(9);
        assert_eq!(random_u32_below(&mut c, 0), d.next_u32());
        // ceil 1: always 0, one draw consumed.
        assert_eq!(random_u32_below(&mut c, 1), 0);
        d.next_u32();
        assert_eq!(c.next_u32(), d.next_u32());
    }

    #[test]
    fn none_when_nothing_eligible() {
        let mut h = Harness::new("twos");
        assert_eq!(h.pick(), 0);
        h.add(1, 0);
        h.add(2, 3);
        h.set_overload(2, true);
        assert_eq!(h.pick(), 0);
    }

    #[test]
    fn never_picks_weight_zero_or_overloaded() {
        let mut h = Harness::new("twos");
        h.add(1, 0);
        h.add(2, 5);
        h.add(3, 5);
        h.add(4, 1);
        h.set_overload(3, true);
        for _ in 0..2000 {
            let o = h.pick();
            assert!(o == 2 || o == 4, "picked {o}");
        }
    }

    #[test]
    fn single_destination_always_chosen() {
        let mut h = Harness::new("twos");
        h.add(1, 1);
        h.set_conns(1, 1000, 1000);
        assert!(h.picks(100).iter().all(|&o| o == 1));
    }

    #[test]
    fn deterministic_for_a_fixed_seed() {
        let run = || {
            let mut h = Harness::new("twos");
            h.add(1, 1);
            h.add(2, 2);
            h.add(3, 3);
            h.set_conns(2, 1, 0);
            h.picks(64)
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().all(|o| (1..=3).contains(o)));
    }

    // §14 step 3: with all loads equal (overhead 0) the comparison is a tie and
    // choice1 is returned, so the pick is distributed as r1: the first
    // destination gets (w1+1)/(T+1), the others wi/(T+1).
    #[test]
    fn with_equal_loads_choice1_is_weighted() {
        let mut h = Harness::new("twos");
        h.add(3, 6);
        h.add(2, 3);
        h.add(1, 2); // list 1 2 3, T = 11 → 3/12, 3/12, 6/12
        let n = 24_000;
        let mut count = [0usize; 4];
        for _ in 0..n {
            count[h.pick() as usize] += 1;
        }
        let expect = [0, 6000, 6000, 12000];
        for o in 1..=3 {
            let diff = count[o].abs_diff(expect[o]);
            assert!(diff < 400, "dest {o}: {} vs {}", count[o], expect[o]);
        }
    }

    // §14 step 4: the less loaded (per weight) of the two draws wins, so a
    // loaded destination loses whenever the other draw is idle; with two equal
    // weights and one destination loaded, the idle one wins unless both draws
    // hit the loaded one.
    #[test]
    fn less_loaded_choice_wins() {
        let mut h = Harness::new("twos");
        h.add(2, 1);
        h.add(1, 1); // list 1 2, T = 2: r ∈ {0,1,2} → 1, 1, 2
        h.set_conns(1, 1, 0);
        let n = 18_000;
        let picked_1 = h.picks(n).iter().filter(|&&o| o == 1).count();
        // P(both draws → 1) = (2/3)^2 = 4/9.
        let expect = n * 4 / 9;
        assert!(picked_1.abs_diff(expect) < 400, "{picked_1} vs {expect}");
        // The idle one always wins when load sits on the other side.
        h.set_conns(1, 0, 0);
        h.set_conns(2, 1, 0);
        let picked_2 = h.picks(n).iter().filter(|&&o| o == 2).count();
        let expect = n / 9; // both draws → 2
        assert!(picked_2.abs_diff(expect) < 300, "{picked_2} vs {expect}");
    }

    // Ties go to choice1 (weighted comparison w2*o1 > w1*o2 is strict): dest 1
    // (w=1, 1 active = 256) vs dest 2 (w=2, 2 active = 512) are equal per weight.
    #[test]
    fn weighted_tie_keeps_choice1() {
        let mut h = Harness::new("twos");
        h.add(2, 2);
        h.add(1, 1); // list 1 2, T = 3: r ∈ {0..3} → 1, 1, 2, 2
        h.set_conns(1, 1, 0);
        h.set_conns(2, 2, 0);
        let n = 16_000;
        let picked_1 = h.picks(n).iter().filter(|&&o| o == 1).count();
        assert!(picked_1.abs_diff(n / 2) < 400, "{picked_1}");
    }

    #[test]
    fn extreme_values_do_not_panic() {
        // Weight sum wraps the kernel's int: every pick is still some eligible dest.
        let mut h = Harness::new("twos");
        h.add(1, i32::MAX);
        h.add(2, i32::MAX);
        h.add(3, 1); // sum wraps to -1, T+1 = 0 → raw u32 draws
        h.set_conns(1, u32::MAX, u32::MAX);
        h.set_conns(2, 0x0100_0000, 0);
        h.set_conns(3, i32::MAX as u32, 7);
        for _ in 0..500 {
            let o = h.pick();
            assert!((1..=3).contains(&o));
        }
        let mut h = Harness::new("twos");
        h.add(1, i32::MAX);
        h.add(2, i32::MAX);
        for _ in 0..500 {
            let o = h.pick();
            assert!((1..=2).contains(&o));
        }
    }
}
