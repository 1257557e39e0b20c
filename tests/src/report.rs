//! loadtrace's `--json` report, one per interval. Every figure but the `_ns` ones is an
//! average number of tasks over the interval: seconds of state time per second.
//!
//! Fields are required as the interface defines them, so a report that lacks one fails
//! to parse and fails the test; fields added later are ignored.

use std::collections::BTreeMap;

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
    /// The kernel's load samples loadtrace folded in since the previous report.
    pub samples: Vec<Sample>,
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
    /// The part of `uninterruptible` spent waiting for I/O (task->in_iowait).
    pub io_wait: f64,
    /// The rest of `uninterruptible`: locks, page-fault waits, vfork and the like.
    pub other_d: f64,
    /// Asleep, yet counted as running by the kernel (6.12+ delayed dequeue).
    pub queued_asleep: f64,
    /// The part of `on_cpu` the hypervisor took (steal time).
    pub stolen: f64,
    /// The kernel's recurrence fed with loadtrace's counts at the kernel's sample instants
    /// (the time average until those are followed).
    pub reconstructed_1m: f64,
    pub reconstructed_5m: f64,
    pub reconstructed_15m: f64,
    /// The same recurrence fed with the time-average count.
    pub time_average_1m: f64,
}

/// One of the kernel's load samples as loadtrace folded it into its averages.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Sample {
    /// The sample's instant, seconds since the epoch.
    pub time: f64,
    /// Threads loadtrace counted toward load at the instant.
    pub counted: u32,
    /// Changes between the instant and the moments the CPUs' ticks counted their queues.
    pub fold_lag: i64,
    /// What was folded in: `counted + fold_lag`, or the time average for a late sample.
    pub folded: u32,
    /// Passed before loadtrace could count it.
    pub late: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Counters {
    pub ringbuf_deferred: u64,
    pub map_full: u64,
    /// Context switches seen since start (cumulative).
    pub switches: u64,
    /// Times a CPU's next switch named an outgoing thread other than the one seen coming
    /// in: a handover the kernel made without a switch event (cumulative).
    pub unseen_handovers: u64,
    /// The kernel's load samples loadtrace counted, and those it missed (cumulative).
    pub load_samples_counted: u64,
    pub load_samples_missed: u64,
    /// Sleepers left queued that no slot could follow (cumulative).
    pub queued_unfollowed: u64,
    /// Queued threads moved between a CPU that had counted for a sample and one that had not
    /// (cumulative).
    pub sample_migrations: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    pub load: f64,
    pub on_cpu: f64,
    pub runqueue: f64,
    pub uninterruptible: f64,
    /// The part of `uninterruptible` spent waiting for I/O (task->in_iowait).
    pub io_wait: f64,
    /// The rest of `uninterruptible`.
    pub other_d: f64,
    pub queued_asleep: f64,
    /// The part of `on_cpu` the hypervisor took (steal time), which the kernel's own CPU
    /// time of the process (schedstat, rusage) leaves out.
    pub stolen: f64,
    /// A flusher kworker: its I/O is write-back on behalf of others.
    pub writeback: bool,
    /// Present for every process, with zero counts when it did no I/O.
    pub disk: Disk,
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
    pub io_wait_ns: u64,
    /// The part of `on_cpu_ns` the hypervisor took.
    pub stolen_ns: u64,
}

/// The block requests a process submitted that completed in the interval: counts for
/// the interval, not cumulative; latency from submission to completion.
#[derive(Clone, Debug, Deserialize)]
pub struct Disk {
    pub ops: u64,
    pub bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub latency_ms: Latency,
    pub devices: Vec<Device>,
}

/// One device's share of a process's [`Disk`] figures.
#[derive(Clone, Debug, Deserialize)]
pub struct Device {
    /// As lsblk names it: `vda`, `nullb0`.
    pub name: String,
    pub ops: u64,
    pub bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub latency_ms: Latency,
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
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

    /// Task-seconds of runnable and queued-asleep threads in this interval, `pid`'s left
    /// out: what a reader of the kernel's `nr_running` other than `pid` counts, integrated.
    pub fn running_seconds_except(&self, pid: u32) -> f64 {
        let own = self.seconds_of(pid, |p| p.on_cpu + p.runqueue + p.queued_asleep);
        (self.load.runnable + self.load.queued_asleep) * self.interval_s - own
    }
}

impl Process {
    pub fn thread(&self, tid: u32) -> Option<&Thread> {
        self.thread_detail.as_deref()?.iter().find(|t| t.tid == tid)
    }
}

/// One process's disk figures added up over several reports.
#[derive(Clone, Debug, Default)]
pub struct DiskSum {
    pub total: DiskCounts,
    /// By device name.
    pub devices: BTreeMap<String, DiskCounts>,
}

/// Request counts added up over intervals, with what it takes to average the latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskCounts {
    pub ops: u64,
    pub bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    /// The largest latency seen in any interval, ms.
    pub max_latency_ms: f64,
    /// Each interval's average latency weighted by its requests, ms.
    weighted_latency_ms: f64,
}

impl DiskCounts {
    fn add(&mut self, ops: u64, bytes: u64, read_ops: u64, write_ops: u64, latency: &Latency) {
        self.ops += ops;
        self.bytes += bytes;
        self.read_ops += read_ops;
        self.write_ops += write_ops;
        self.max_latency_ms = self.max_latency_ms.max(latency.max);
        self.weighted_latency_ms += latency.avg * ops as f64;
    }

    /// The average latency over every request counted, ms (NaN without requests).
    pub fn avg_latency_ms(&self) -> f64 {
        self.weighted_latency_ms / self.ops as f64
    }
}

impl DiskSum {
    /// `pid`'s disk figures summed over `reports` (intervals it is missing from add nothing).
    pub fn of<'a>(reports: impl IntoIterator<Item = &'a Report>, pid: u32) -> Self {
        let mut sum = Self::default();
        for p in reports.into_iter().filter_map(|r| r.process(pid)) {
            sum.add(&p.disk);
        }
        sum
    }

    fn add(&mut self, d: &Disk) {
        self.total
            .add(d.ops, d.bytes, d.read_ops, d.write_ops, &d.latency_ms);
        for dev in &d.devices {
            self.devices.entry(dev.name.clone()).or_default().add(
                dev.ops,
                dev.bytes,
                dev.read_ops,
                dev.write_ops,
                &dev.latency_ms,
            );
        }
    }

    /// The devices that carried at least one request.
    pub fn busy_devices(&self) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|(_, c)| c.ops > 0)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATENCY: &str = r#"{"avg": 2.0, "p50": 2.0, "p99": 2.5, "max": 3.0}"#;

    fn process_json(disk: &str) -> String {
        format!(
            r#"{{"pid": 7, "comm": "w", "load": 1.0, "on_cpu": 0.1, "runqueue": 0.0,
                "uninterruptible": 0.9, "io_wait": 0.8, "other_d": 0.1, "queued_asleep": 0.0,
                "stolen": 0.0, "writeback": false,
                {disk} "threads": 1, "voluntary_switches": 5, "involuntary_switches": 0}}"#
        )
    }

    fn disk_json(ops: u64, avg: f64) -> String {
        let latency = format!(r#"{{"avg": {avg}, "p50": {avg}, "p99": {avg}, "max": {avg}}}"#);
        format!(
            r#""disk": {{"ops": {ops}, "bytes": {}, "read_ops": 0, "write_ops": {ops},
                "latency_ms": {latency}, "devices": [{{"name": "nullb0", "ops": {ops},
                "bytes": {}, "read_ops": 0, "write_ops": {ops}, "latency_ms": {latency}}}]}},"#,
            ops * 4096,
            ops * 4096
        )
    }

    #[test]
    fn process_with_disk_parses() {
        let p: Process = serde_json::from_str(&process_json(&disk_json(3, 2.0))).unwrap();
        assert_eq!((p.disk.ops, p.disk.devices[0].name.as_str()), (3, "nullb0"));
        assert!(!p.writeback && p.io_wait == 0.8);
    }

    #[test]
    fn process_without_disk_is_rejected() {
        assert!(serde_json::from_str::<Process>(&process_json("")).is_err());
        let no_devices = format!(
            r#""disk": {{"ops": 0, "bytes": 0, "read_ops": 0, "write_ops": 0, "latency_ms": {LATENCY}}},"#
        );
        assert!(serde_json::from_str::<Process>(&process_json(&no_devices)).is_err());
    }

    #[test]
    fn sums_weight_latency_by_requests() {
        let report = |ops, avg| -> Report {
            let line = format!(
                r#"{{"time": 1.0, "interval_s": 1.0, "cpus": 2, "kernel": "6.12",
                    "loadavg": [0, 0, 0], "lost": 0,
                    "load": {{"total": 1, "runnable": 0.1, "on_cpu": 0.1, "runqueue": 0,
                        "uninterruptible": 0.9, "io_wait": 0.8, "other_d": 0.1,
                        "queued_asleep": 0, "stolen": 0, "reconstructed_1m": 0, "reconstructed_5m": 0, "reconstructed_15m": 0,
                        "time_average_1m": 0}},
                    "counters": {{"ringbuf_deferred": 0, "map_full": 0, "switches": 9, "unseen_handovers": 0,
                        "load_samples_counted": 0, "load_samples_missed": 0, "queued_unfollowed": 0, "sample_migrations": 0}},
                    "samples": [{{"time": 0.5, "counted": 1, "fold_lag": 0, "folded": 1, "late": false}}],
                    "processes": [{}]}}"#,
                process_json(&disk_json(ops, avg))
            );
            serde_json::from_str(&line).unwrap()
        };
        let reports = [report(300, 2.0), report(100, 6.0)];
        let sum = DiskSum::of(&reports, 7);
        assert_eq!((sum.total.ops, sum.total.write_ops), (400, 400));
        assert_eq!(sum.total.avg_latency_ms(), 3.0);
        assert_eq!(sum.devices["nullb0"].max_latency_ms, 6.0);
        assert_eq!(sum.busy_devices(), ["nullb0"]);
        assert_eq!(DiskSum::of(&reports, 8).total.ops, 0);
    }
}
