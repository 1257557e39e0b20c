//! Following the kernel's load samples: learns when they fall from the kernel side, tells the
//! kernel side the next instant, counts the threads that counted toward load at each one,
//! and folds that count into averages as the kernel folds its own.

use anyhow::Result;
use loadtrace_common::LoadSampleAt;

use crate::{
    model::{
        loadavg::Reconstructed,
        sampling::{SampleClock, count_at, kernel_sample},
    },
    procfs,
    tracer::{Tracer, monotonic_ns},
};

/// How far ahead of a sample the kernel side must know of it.
const LEAD_NS: u64 = 20_000_000;
/// How long after the kernel folds a sample its count is taken: until the fold the kernel
/// side still notes changes on CPUs that count late; this leaves room for the timer's slack.
const MARGIN_NS: u64 = 5_000_000;
/// How early the kernel may fold a sample against loadtrace's idea of the fold: the instants
/// are placed up to tens of µs after their jiffy began.
const FOLD_EARLY_NS: u64 = 1_000_000;

/// Whether a report at `now` falls between the kernel's fold of a sample and its count,
/// which is due at `due`.
fn report_waits(now: u64, due: u64) -> bool {
    now + MARGIN_NS + FOLD_EARLY_NS >= due
}

#[derive(Default)]
pub struct LoadSamples {
    clock: SampleClock,
    /// Started from /proc/loadavg right after one of the kernel's folds; `None` until then.
    averages: Option<Reconstructed>,
    /// The sample instant the kernel side was last told of, still to be counted.
    next_ns: Option<u64>,
    /// Samples counted, and samples passed while loadtrace could not count them in time
    /// (folded with the latest time-average count instead).
    pub counted: u64,
    pub late: u64,
    /// The latest interval's time-average count, for a late sample.
    fallback: f64,
    /// The samples folded since the last report, oldest first.
    folded: Vec<FoldedSample>,
}

/// One of the kernel's samples as loadtrace folded it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldedSample {
    /// The sample's instant (CLOCK_MONOTONIC ns); for a late sample, the instant it was due
    /// after the last one counted.
    pub at_ns: u64,
    /// Threads that counted toward load at the instant.
    pub counted: u32,
    /// Changes after the instant to queues whose CPUs counted later, and before it to queues
    /// that had counted already (summed over CPUs).
    pub fold_lag: i64,
    /// What was folded: the count with the lag, or for a late sample the time average.
    pub folded: u32,
    /// Passed before it could be counted.
    pub late: bool,
}

impl LoadSamples {
    /// The averages fed with samples, once they are.
    pub fn averages(&self) -> Option<[f64; 3]> {
        self.averages.as_ref().map(Reconstructed::averages)
    }

    /// When the next count is due (CLOCK_MONOTONIC ns).
    pub fn due_ns(&self) -> Option<u64> {
        self.next_ns
            .map(|t| t + self.clock.fold_delay_ns() + MARGIN_NS)
    }

    /// When a report taken at `now` must wait for the count due then: the kernel may already
    /// have folded the sample, and /proc/loadavg read in the report would hold it while the
    /// averages did not yet (a report 0.6 ms after a fold otherwise shows the averages a whole
    /// sample behind the kernel's).
    pub fn report_waits_until(&self, now: u64) -> Option<u64> {
        self.due_ns().filter(|&due| report_waits(now, due))
    }

    /// What the kernel side is told: the sample just past, and the next one.
    fn instants(&self, prev_ns: u64, next_ns: u64) -> LoadSampleAt {
        LoadSampleAt {
            prev_ns,
            next_ns,
            next_jiffy: self.clock.jiffy_of(next_ns).unwrap_or(0),
            fold_ns: next_ns + self.clock.fold_delay_ns(),
        }
    }

    /// The samples folded since the last call, oldest first.
    pub fn take_folded(&mut self) -> Vec<FoldedSample> {
        std::mem::take(&mut self.folded)
    }

    pub fn set_fallback(&mut self, active: f64) {
        self.fallback = active;
    }

    /// Learns from the latest sample the kernel side saw, and once the instants are known,
    /// tells it the next one. Nothing is ever seen where the samples are not followed.
    pub fn poll(&mut self, tracer: &mut Tracer) -> Result<()> {
        if let Some(seen) = tracer.load_sample_seen() {
            self.clock.observe(&seen);
        }
        for (jiffy, at_ns) in tracer.jiffy_sightings()? {
            self.clock.observe_jiffy(jiffy, at_ns);
        }
        if self.next_ns.is_some() {
            return Ok(());
        }
        let (Some(period), now) = (self.clock.period_ns(), monotonic_ns()) else {
            return Ok(());
        };
        let Some(next) = self.clock.next_after(now + LEAD_NS) else {
            return Ok(());
        };
        if self.averages.is_none() {
            // Started from the kernel's figures, they must already hold the sample before
            // `next`: folded 10 ticks after it.
            let prev = next.saturating_sub(period);
            if now < prev + self.clock.fold_delay_ns() + MARGIN_NS {
                return Ok(());
            }
            self.averages = Some(Reconstructed::starting_at(procfs::loadavg()?));
        }
        tracer.set_load_samples(self.instants(0, next))?;
        self.next_ns = Some(next);
        Ok(())
    }

    /// Counts the threads that counted toward load at the sample just past, folds the
    /// count in, and tells the kernel side the next instant.
    pub fn count(&mut self, tracer: &mut Tracer) -> Result<()> {
        let (Some(t), Some(period)) = (self.next_ns, self.clock.period_ns()) else {
            return Ok(());
        };
        // Set before any instant is handed over (see `poll`).
        let Some(averages) = self.averages.as_mut() else {
            return Ok(());
        };
        let readings = tracer.sample_readings()?;
        let now = monotonic_ns();
        let next = self.clock.next_after(now.max(t) + LEAD_NS);
        // Every sample from `t` up to the next one the kernel side can still be told of.
        let mut passed = next.map_or(1, |n| ((n - t) / period).max(1));
        let in_time = now < t + period;
        if in_time {
            let count = count_at(&readings, t);
            let lag = match self.clock.jiffy_of(t) {
                Some(jiffy) => tracer.fold_lag(jiffy)?,
                None => 0,
            };
            let folded = kernel_sample(count, lag);
            averages.fold_sample(folded);
            self.folded.push(FoldedSample {
                at_ns: t,
                counted: count,
                fold_lag: lag,
                folded,
                late: false,
            });
            self.counted += 1;
            passed -= 1;
        }
        // Too late for these: the kernel side has tagged later samples over their tags.
        let first_late = if in_time { t + period } else { t };
        for i in 0..passed {
            let folded = self.fallback.round() as u32;
            averages.fold_sample(folded);
            self.folded.push(FoldedSample {
                at_ns: first_late + i * period,
                counted: 0,
                fold_lag: 0,
                folded,
                late: true,
            });
        }
        self.late += passed;
        if let Some(next) = next {
            tracer.set_load_samples(self.instants(t, next))?;
        }
        self.next_ns = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_waits_only_once_the_kernel_may_have_folded() {
        let fold = 10_000_000_000;
        let due = fold + MARGIN_NS;
        // Well before the fold: neither the kernel's figures nor the averages hold the sample.
        assert!(!report_waits(fold - 2 * FOLD_EARLY_NS, due));
        // Just before the expected fold (the instant may be placed late), after it, and up
        // to the count: the kernel may hold it, so the count comes first.
        assert!(report_waits(fold - FOLD_EARLY_NS / 2, due));
        assert!(report_waits(fold + 600_000, due));
        assert!(report_waits(due, due));
        // Past the count's time with its timer not yet served: counted first, at once.
        assert!(report_waits(due + 1, due));
    }
}
