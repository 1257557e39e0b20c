//! The kernel's load-average samples: when they fall, and how many threads counted toward
//! load at each, by loadtrace's own account of every thread.
//!
//! The kernel folds one instant count into its averages every LOAD_FREQ (5 s and a tick).
//! Where few threads come and go fast (a fork storm, a disk writer), that count swings from
//! sample to sample and the kernel's 1-minute average carries the swings; an average fed with
//! the time-average count instead is smoother, and off from the kernel's by as much. Counting
//! at the kernel's own instants follows the kernel's figure, swings included.

use loadtrace_common::LoadSampleSeen;

use super::thread::ThreadState;

/// The kernel's LOAD_FREQ is `5 * HZ + 1` jiffies; these are the HZ a kernel can be built with.
const KNOWN_HZ: [u64; 4] = [100, 250, 300, 1000];

/// When the kernel samples, learnt from the samples the kernel side saw being taken.
///
/// Sample instants sit on the jiffy grid: the sample of jiffy `j` is taken at the tick that
/// starts it, `offset + j * tick_ns` in CLOCK_MONOTONIC. Each sample seen bounds `offset`
/// from above (it was seen at or after its tick, late when the CPUs were idle and one caught
/// up on waking), so the lowest bound is the closest.
#[derive(Clone, Debug, Default)]
pub struct SampleClock {
    load_freq: u64,
    tick_ns: u64,
    offset: Option<i128>,
    /// The jiffy of the latest sample seen.
    last_jiffy: u64,
    /// Jiffies seen before a sample gave the tick's length (`observe_jiffy`), kept to place
    /// the grid as soon as it does.
    early_jiffies: Vec<(u64, u64)>,
}

/// How many early jiffy sightings are kept: a few seconds' worth from a handful of CPUs.
const EARLY_JIFFIES: usize = 512;

impl SampleClock {
    /// Takes in the latest sample a CPU was seen taking (the same one may come again).
    pub fn observe(&mut self, seen: &LoadSampleSeen) {
        if seen.jiffy_after == 0 || seen.jiffy_after <= seen.jiffy_before {
            return;
        }
        if self.load_freq == 0 {
            // A CPU back from idle can skip several samples at once; one step is LOAD_FREQ.
            let step = seen.jiffy_after - seen.jiffy_before;
            let Some(hz) = KNOWN_HZ.into_iter().find(|hz| 5 * hz + 1 == step) else {
                return;
            };
            self.load_freq = step;
            // The kernel's TICK_NSEC.
            self.tick_ns = (1_000_000_000 + hz / 2) / hz;
        }
        let jiffy = seen.jiffy_after - self.load_freq;
        let bound = i128::from(seen.seen_ns) - i128::from(jiffy) * i128::from(self.tick_ns);
        self.offset = Some(self.offset.map_or(bound, |o| o.min(bound)));
        self.last_jiffy = self.last_jiffy.max(jiffy);
        for (jiffy, at_ns) in std::mem::take(&mut self.early_jiffies) {
            self.observe_jiffy(jiffy, at_ns);
        }
    }

    /// Takes in a CPU's first sight of jiffy `jiffy`, at `at_ns`: that jiffy began at or
    /// before then. Timer interrupts see a new jiffy hundreds of times a second, some right at
    /// its start, where a sample can first be seen late, when every CPU was idle at its tick.
    /// Used once a sample has given the tick's length.
    pub fn observe_jiffy(&mut self, jiffy: u64, at_ns: u64) {
        let Some(offset) = self.offset else {
            if self.early_jiffies.len() < EARLY_JIFFIES {
                self.early_jiffies.push((jiffy, at_ns));
            }
            return;
        };
        let bound = i128::from(at_ns) - i128::from(jiffy) * i128::from(self.tick_ns);
        self.offset = Some(offset.min(bound));
    }

    /// The sample period in ns, once known.
    pub fn period_ns(&self) -> Option<u64> {
        (self.offset.is_some()).then_some(self.load_freq * self.tick_ns)
    }

    /// The first sample instant after `t` (CLOCK_MONOTONIC ns), once the grid is known.
    pub fn next_after(&self, t: u64) -> Option<u64> {
        let offset = self.offset?;
        let period = i128::from(self.load_freq * self.tick_ns);
        let last = offset + i128::from(self.last_jiffy) * i128::from(self.tick_ns);
        let t = i128::from(t);
        let steps = if t < last { 0 } else { (t - last) / period + 1 };
        u64::try_from(last + steps * period).ok()
    }

    /// How long after a sample the kernel folds it into /proc/loadavg (10 ticks).
    pub fn fold_delay_ns(&self) -> u64 {
        10 * self.tick_ns
    }

    /// The jiffy of the sample instant `t` (one `next_after` gave), once the grid is known.
    pub fn jiffy_of(&self, t: u64) -> Option<u64> {
        let offset = self.offset?;
        let tick = i128::from(self.tick_ns);
        let jiffies = (i128::from(t) - offset + tick / 2).div_euclid(tick);
        u64::try_from(jiffies).ok()
    }
}

/// A thread as read right after a sample, for deciding whether it counted then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleReading {
    pub state: ThreadState,
    /// When the state began (for an exited thread: when it exited).
    pub since_ns: u64,
    /// Its latest wakeup stamp.
    pub woken_ns: u64,
    /// On a CPU since then, if it is on one now.
    pub on_cpu_since: Option<u64>,
    /// The latest sample inside an interval the kernel side has closed, and whether the
    /// thread counted toward load then (0: none).
    pub sample_ns: u64,
    pub sample_active: bool,
}

impl SampleReading {
    /// Did the thread count toward load at the sample instant `t`?
    pub fn active_at(&self, t: u64) -> bool {
        if self.sample_ns == t {
            return self.sample_active;
        }
        // Not tagged: either its current state began before `t` and goes on, or the thread
        // was not there at `t` (born, or first seen, after it).
        if self.since_ns >= t {
            return false;
        }
        match self.state {
            ThreadState::Runnable
            | ThreadState::Uninterruptible { .. }
            | ThreadState::QueuedAsleep => true,
            ThreadState::Exited => false,
            ThreadState::Sleeping => {
                let woken = self.woken_ns > self.since_ns && self.woken_ns <= t;
                woken
                    || self
                        .on_cpu_since
                        .is_some_and(|a| a >= self.since_ns && a <= t)
            }
        }
    }
}

/// How many threads counted toward load at `t`.
pub fn count_at<'a>(readings: impl IntoIterator<Item = &'a SampleReading>, t: u64) -> u32 {
    readings.into_iter().filter(|r| r.active_at(t)).count() as u32
}

/// The kernel's sample: the count of every thread at the sample's instant, plus the changes
/// made after it to run queues whose CPU counted later (`fold_lag`, summed over CPUs).
pub fn kernel_sample(count: u32, fold_lag: i64) -> u32 {
    u32::try_from((i64::from(count) + fold_lag).max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 4_000_000;

    fn seen(before: u64, after: u64, at: u64) -> LoadSampleSeen {
        LoadSampleSeen {
            jiffy_before: before,
            jiffy_after: after,
            seen_ns: at,
        }
    }

    #[test]
    fn the_grid_comes_from_the_earliest_sighting() {
        let mut c = SampleClock::default();
        assert_eq!(c.next_after(0), None);
        // Jiffy 10_000 began at 50 s; its sample was seen 30 us after the tick.
        let tick_of = |j: u64| 50_000_000_000 + (j - 10_000) * TICK;
        c.observe(&seen(10_000, 11_251, tick_of(10_000) + 30_000));
        assert_eq!(c.period_ns(), Some(1251 * TICK));
        assert_eq!(
            c.next_after(tick_of(10_000)),
            Some(tick_of(10_000) + 30_000)
        );
        assert_eq!(
            c.next_after(tick_of(10_000) + 30_000),
            Some(tick_of(11_251) + 30_000)
        );
        // A CPU back from idle saw the next one 2 ms late: the grid stays put.
        c.observe(&seen(11_251, 12_502, tick_of(11_251) + 2_000_000));
        assert_eq!(
            c.next_after(tick_of(11_251)),
            Some(tick_of(11_251) + 30_000)
        );
        // One seen 5 us after its tick moves it earlier.
        c.observe(&seen(12_502, 13_753, tick_of(12_502) + 5_000));
        assert_eq!(c.next_after(tick_of(12_502)), Some(tick_of(12_502) + 5_000));
        // Later times are several periods on, never at or before `t`.
        let t = tick_of(13_753) + 5_000;
        assert_eq!(c.next_after(t), Some(t + 1251 * TICK));
        assert_eq!(c.next_after(t - 1), Some(t));
        // Each instant is its own jiffy's.
        assert_eq!(c.jiffy_of(t), Some(13_753));
        assert_eq!(c.jiffy_of(t + 1251 * TICK), Some(15_004));
    }

    #[test]
    fn any_jiffy_seen_early_places_the_grid() {
        let tick_of = |j: u64| 50_000_000_000 + (j - 10_000) * TICK;
        let mut c = SampleClock::default();
        // Every CPU was idle at the sample's tick: it was first seen 12 ms late.
        c.observe(&seen(10_000, 11_251, tick_of(10_000) + 12_000_000));
        let after = tick_of(10_000) + 13_000_000;
        assert_eq!(c.next_after(after), Some(tick_of(11_251) + 12_000_000));
        // A timer saw jiffy 10_600 begin 3 us after its start: the grid moves to it.
        c.observe_jiffy(10_600, tick_of(10_600) + 3_000);
        assert_eq!(c.next_after(after), Some(tick_of(11_251) + 3_000));
        assert_eq!(c.jiffy_of(tick_of(11_251) + 3_000), Some(11_251));
        // Later sightings within their jiffies leave it there.
        c.observe_jiffy(10_700, tick_of(10_700) + 2_500_000);
        c.observe_jiffy(10_701, tick_of(10_702));
        assert_eq!(c.next_after(after), Some(tick_of(11_251) + 3_000));
    }

    #[test]
    fn jiffies_seen_before_the_first_sample_count_once_it_comes() {
        let tick_of = |j: u64| 10_000_000_000 + j * TICK;
        let mut c = SampleClock::default();
        // Before a sample gives the tick's length, jiffies place nothing yet.
        c.observe_jiffy(9_990, tick_of(9_990) + 1_000);
        c.observe_jiffy(9_995, tick_of(9_995) + 700_000);
        assert_eq!(c.next_after(0), None);
        c.observe(&seen(10_000, 11_251, tick_of(10_000) + 12_000_000));
        let after = tick_of(10_000) + 13_000_000;
        assert_eq!(c.next_after(after), Some(tick_of(11_251) + 1_000));
    }

    #[test]
    fn changes_on_queues_that_counted_late_adjust_the_count() {
        assert_eq!(kernel_sample(3, 0), 3);
        assert_eq!(kernel_sample(3, 2), 5);
        assert_eq!(kernel_sample(3, -1), 2);
        assert_eq!(kernel_sample(1, -3), 0);
    }

    #[test]
    fn a_catch_up_over_several_samples_does_not_set_the_period() {
        let mut c = SampleClock::default();
        c.observe(&seen(10_000, 10_000 + 3 * 1251, 1_000_000_000_000));
        assert_eq!(c.period_ns(), None);
        c.observe(&seen(10_000, 10_501, 1_000_000_000_000));
        assert_eq!(c.period_ns(), Some(501 * 10_000_000));
    }

    fn asleep(since: u64) -> SampleReading {
        SampleReading {
            state: ThreadState::Sleeping,
            since_ns: since,
            woken_ns: 0,
            on_cpu_since: None,
            sample_ns: 0,
            sample_active: false,
        }
    }

    #[test]
    fn a_tag_from_the_kernel_side_decides() {
        let t = 1_000;
        let closed = SampleReading {
            since_ns: 1_500,
            sample_ns: t,
            sample_active: true,
            ..asleep(0)
        };
        assert!(closed.active_at(t));
        assert!(
            !SampleReading {
                sample_active: false,
                ..closed
            }
            .active_at(t)
        );
        // A tag for another sample says nothing of this one: born after `t`.
        assert!(
            !SampleReading {
                sample_ns: 2_000,
                ..closed
            }
            .active_at(t)
        );
    }

    #[test]
    fn open_intervals_are_judged_from_the_state() {
        let t = 1_000;
        assert!(!asleep(500).active_at(t));
        let woken_before = SampleReading {
            woken_ns: 900,
            ..asleep(500)
        };
        assert!(woken_before.active_at(t));
        let woken_after = SampleReading {
            woken_ns: 1_100,
            ..asleep(500)
        };
        assert!(!woken_after.active_at(t));
        let running_since = SampleReading {
            on_cpu_since: Some(800),
            ..asleep(500)
        };
        assert!(running_since.active_at(t));
        for state in [
            ThreadState::Runnable,
            ThreadState::Uninterruptible { iowait: true },
            ThreadState::QueuedAsleep,
        ] {
            assert!(
                SampleReading {
                    state,
                    ..asleep(500)
                }
                .active_at(t)
            );
            // In that state only since after the sample, with no tag: not there then.
            assert!(
                !SampleReading {
                    state,
                    ..asleep(1_200)
                }
                .active_at(t)
            );
        }
        let exited = SampleReading {
            state: ThreadState::Exited,
            ..asleep(500)
        };
        assert!(!exited.active_at(t));
        assert_eq!(
            count_at(&[asleep(500), woken_before, running_since, exited], t),
            2
        );
    }
}
