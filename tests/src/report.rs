//! loadtrace's `--json` report, one per interval. Every figure but the `_ns` ones is an
//! average number of tasks over the interval: seconds of state time per second.
//!
//! Fields are required as the interface defines them, so a report that lacks one fails
//! to parse and fails the test; fields added later are ignored.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    /// Wall-clock time of the report, seconds since the epoch.
    pub time: f64,
    pub interval_s: f64,
    pub cpus: u32,
    pub kernel: String,
    /// /proc/loadavg's three averages, read by loadtrace at report time.
    pub loadavg: [f64; 3],
    pub load: Load,
    /// Records lost since start (cumulative).
    pub lost: u64,
    pub counters: Counters,
    /// Sorted by load, descending.
    pub processes: Vec<Process>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Load {
    pub total: f64,
    pub runnable: f64,
    pub on_cpu: f64,
    pub runqueue: f64,
    pub uninterruptible: f64,
    pub reconstructed_1m: f64,
    pub reconstructed_5m: f64,
    pub reconstructed_15m: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Counters {
    pub ringbuf_deferred: u64,
    pub map_full: u64,
    /// Context switches seen since start (cumulative).
    pub switches: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    pub load: f64,
    pub on_cpu: f64,
    pub runqueue: f64,
    pub uninterruptible: f64,
    pub threads: u32,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Present only with `--pid`.
    #[serde(default)]
    pub thread_detail: Option<Vec<Thread>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Thread {
    pub tid: u32,
    pub comm: String,
    pub load: f64,
    pub on_cpu: f64,
    pub runqueue: f64,
    pub uninterruptible: f64,
    pub runnable_ns: u64,
    pub on_cpu_ns: u64,
    pub runqueue_ns: u64,
    pub uninterruptible_ns: u64,
}

impl Report {
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// Seconds `pid` spent in the state `figure` picks during this interval (0 when
    /// the process is not listed).
    pub fn seconds_of(&self, pid: u32, figure: impl Fn(&Process) -> f64) -> f64 {
        self.process(pid)
            .map_or(0.0, |p| figure(p) * self.interval_s)
    }
}

impl Process {
    pub fn thread(&self, tid: u32) -> Option<&Thread> {
        self.thread_detail.as_deref()?.iter().find(|t| t.tid == tid)
    }
}
