//! Views of one interval: the table for people, JSON for machines.

pub mod json;
pub mod table;

use crate::{
    load_samples::FoldedSample,
    model::process::{IntervalSummary, ProcessInterval},
    tracer::ProgramCost,
};

/// Everything a view shows about one interval.
pub struct Report<'a> {
    /// Wall-clock time at the end of the interval, seconds since the epoch.
    pub time: f64,
    pub cpus: u32,
    pub kernel: &'a str,
    pub loadavg: [f64; 3],
    pub summary: &'a IntervalSummary,
    /// The kernel's recurrence fed with loadtrace's counts at the kernel's own sample
    /// instants, once they are followed; until then (or where they cannot be) with
    /// `time_average`.
    pub reconstructed: [f64; 3],
    /// The same recurrence fed with the time-average count of every 5 s.
    pub time_average: [f64; 3],
    /// The kernel's samples counted, and those missed (folded with the time average).
    pub load_samples: (u64, u64),
    /// The samples folded in since the last report.
    pub samples: &'a [FoldedSample],
    /// CLOCK_MONOTONIC at `time`, to place the samples in wall-clock time.
    pub monotonic_ns: u64,
    /// Totals never delivered, cumulative.
    pub lost: u64,
    /// Exits delivered late (ring buffer full), cumulative; not lost.
    pub deferred: u64,
    pub map_full: u64,
    pub switches: u64,
    /// CPU handovers the kernel made without a switch event, cumulative (see the kernel side).
    pub unseen_handovers: u64,
    /// Sleepers left queued (6.12+ delayed dequeue) that no slot could follow, cumulative:
    /// their queued time is counted as plain sleep.
    pub queued_unfollowed: u64,
    /// Queued threads moved between a CPU that had counted for a sample and one that had not
    /// (counted twice or not at all by the kernel), cumulative.
    pub sample_migrations: u64,
    pub verdict: &'a str,
    /// Already filtered and cut to what is to be shown.
    pub processes: &'a [ProcessInterval],
    /// Thread by thread (`--pid`).
    pub thread_detail: bool,
    /// Present with `--bpf-stats`.
    pub program_costs: Option<&'a [ProgramCost]>,
    /// Names of the block devices the shown processes used, by kernel dev_t.
    pub device_names: &'a std::collections::HashMap<u32, String>,
}
