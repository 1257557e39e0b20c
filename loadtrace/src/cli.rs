//! Command-line interface.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;

/// Which processes make the load average, and how: on a CPU, waiting for one, or in
/// uninterruptible sleep. Every figure is an average number of tasks over the interval, so
/// they add up to the box's load.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadtrace", version)]
pub struct Args {
    /// Show the N processes contributing most to load (0: every process active in the interval).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,

    /// Seconds between reports.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub interval: f64,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Print one JSON object per interval (NDJSON) instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Report only this process, thread by thread.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Most threads tracked at once (default: the kernel's own limit, min(pid_max, threads-max)).
    #[arg(long, value_name = "N")]
    pub max_threads: Option<u32>,

    /// Have the kernel time loadtrace's own programs while it runs (BPF_ENABLE_STATS) and
    /// report their cost per run. The timing itself adds a little to every run.
    #[arg(long)]
    pub bpf_stats: bool,

    /// Leave this hook unattached (sched_wakeup, sched_update_nr_running_tp,
    /// hrtimer_expire_exit, sched_migrate_task or a block hook), to measure what it costs. The figures it makes exact are then not.
    #[arg(long, value_name = "HOOK", hide = true)]
    pub leave_out: Vec<String>,

    /// Attach empty programs to the scheduler hooks instead of loadtrace's own (no block
    /// hooks), to measure what merely running a program at each event costs. Every figure
    /// is then zero.
    #[arg(long, hide = true)]
    pub empty_programs: bool,
}

impl Args {
    pub fn interval(&self) -> Result<Duration> {
        if !(self.interval.is_finite() && self.interval >= 0.1) {
            bail!(
                "--interval must be at least 0.1 seconds, not {}",
                self.interval
            );
        }
        Ok(Duration::from_secs_f64(self.interval))
    }

    pub fn duration(&self) -> Result<Option<Duration>> {
        match self.duration {
            None => Ok(None),
            Some(d) if d.is_finite() && d > 0.0 => Ok(Some(Duration::from_secs_f64(d))),
            Some(d) => bail!("--duration must be a positive number of seconds, not {d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_interface() {
        let a = Args::parse_from(["loadtrace"]);
        assert_eq!((a.top, a.interval, a.json, a.pid), (10, 2.0, false, None));
        assert_eq!(a.duration().unwrap(), None);
    }

    #[test]
    fn rejects_nonsense_intervals() {
        let a = Args::parse_from(["loadtrace", "--interval", "0"]);
        assert!(a.interval().is_err());
        let a = Args::parse_from(["loadtrace", "--duration=-1"]);
        assert!(a.duration().is_err());
    }
}
