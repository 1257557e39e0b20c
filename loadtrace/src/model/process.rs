//! Sums threads into processes and turns nanoseconds into load figures.

use std::collections::HashMap;

use loadtrace_common::TaskTotals;

use super::{
    accounting::ThreadInterval,
    disk::ProcessDisk,
    thread::{load_ns, totals_add},
};

/// Average number of tasks in each load state over an interval (state seconds per second).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadFigures {
    pub on_cpu: f64,
    pub runqueue: f64,
    pub uninterruptible: f64,
    pub iowait: f64,
    /// Asleep, yet counted as running by the kernel (6.12+ delayed dequeue).
    pub queued_asleep: f64,
    /// The part of `on_cpu` the hypervisor took for something else (steal time).
    pub stolen: f64,
}

impl LoadFigures {
    pub fn from_totals(t: &TaskTotals, interval_ns: u64) -> Self {
        let per = |ns: u64| ns as f64 / interval_ns.max(1) as f64;
        Self {
            on_cpu: per(t.on_cpu_ns),
            runqueue: per(t.runqueue_ns),
            uninterruptible: per(t.uninterruptible_ns),
            iowait: per(t.iowait_ns),
            queued_asleep: per(t.queued_asleep_ns),
            stolen: per(t.stolen_ns),
        }
    }

    pub fn runnable(&self) -> f64 {
        self.on_cpu + self.runqueue
    }

    pub fn load(&self) -> f64 {
        self.on_cpu + self.runqueue + self.uninterruptible + self.queued_asleep
    }
}

#[derive(Clone, Debug)]
pub struct ProcessInterval {
    pub pid: u32,
    pub comm: String,
    pub threads: u32,
    pub totals: TaskTotals,
    pub figures: LoadFigures,
    /// The process's threads, busiest first.
    pub thread_detail: Vec<ThreadInterval>,
    /// Block I/O it submitted that completed in the interval.
    pub disk: ProcessDisk,
}

impl ProcessInterval {
    /// Did anything that matters for load or scheduling happen in it this interval?
    pub fn active(&self) -> bool {
        load_ns(&self.totals) > 0
            || self.totals.voluntary_switches + self.totals.involuntary_switches > 0
            || self.disk.total.ops > 0
    }

    /// A kernel worker writing on others' behalf (page-cache write-back by the flusher, or
    /// other deferred work): its writes have no process of their own to be charged to.
    pub fn writeback(&self) -> bool {
        self.comm.starts_with("kworker") && self.disk.total.write_ops > 0
    }
}

/// The whole box over one interval.
#[derive(Clone, Debug, Default)]
pub struct IntervalSummary {
    pub interval_ns: u64,
    pub totals: TaskTotals,
    pub figures: LoadFigures,
}

/// Groups threads by process, names them (`comm_of` answers for live processes; exited ones
/// are named from their own records), and sorts by load, highest first.
pub fn by_process(
    threads: Vec<ThreadInterval>,
    interval_ns: u64,
    comm_of: impl Fn(u32) -> Option<String>,
) -> (IntervalSummary, Vec<ProcessInterval>) {
    let mut summary = IntervalSummary {
        interval_ns,
        ..Default::default()
    };
    let mut groups: HashMap<u32, Vec<ThreadInterval>> = HashMap::new();
    for t in threads {
        totals_add(&mut summary.totals, &t.delta);
        groups.entry(t.tgid).or_default().push(t);
    }
    summary.figures = LoadFigures::from_totals(&summary.totals, interval_ns);

    let mut processes: Vec<ProcessInterval> = groups
        .into_iter()
        .map(|(pid, mut threads)| {
            let mut totals = TaskTotals::default();
            for t in &threads {
                totals_add(&mut totals, &t.delta);
            }
            threads.sort_by_key(|t| std::cmp::Reverse(load_ns(&t.delta)));
            let comm = comm_of(pid)
                .or_else(|| exited_name(&threads, pid))
                .unwrap_or_else(|| format!("[{pid}]"));
            ProcessInterval {
                pid,
                comm,
                threads: threads.len() as u32,
                figures: LoadFigures::from_totals(&totals, interval_ns),
                totals,
                thread_detail: threads,
                disk: ProcessDisk::default(),
            }
        })
        .collect();
    processes.sort_by(|a, b| {
        load_ns(&b.totals)
            .cmp(&load_ns(&a.totals))
            .then(a.pid.cmp(&b.pid))
    });
    (summary, processes)
}

/// Gives each process its I/O. I/O of a process that did nothing else in the interval (its
/// requests completed after it stopped running, or after it exited) gets a row of its own.
pub fn attach_disk(
    processes: &mut Vec<ProcessInterval>,
    mut disk: HashMap<u32, ProcessDisk>,
    interval_ns: u64,
    comm_of: impl Fn(u32) -> Option<String>,
) {
    for p in processes.iter_mut() {
        if let Some(d) = disk.remove(&p.pid) {
            p.disk = d;
        }
    }
    for (pid, d) in disk {
        processes.push(ProcessInterval {
            pid,
            comm: comm_of(pid).unwrap_or_else(|| format!("[{pid}]")),
            threads: 0,
            totals: TaskTotals::default(),
            figures: LoadFigures::from_totals(&TaskTotals::default(), interval_ns),
            thread_detail: Vec::new(),
            disk: d,
        });
    }
}

/// A gone process's name, from its leader's exit record if there is one.
fn exited_name(threads: &[ThreadInterval], pid: u32) -> Option<String> {
    threads
        .iter()
        .find(|t| t.tid == pid && t.comm.is_some())
        .or_else(|| threads.iter().find(|t| t.comm.is_some()))
        .and_then(|t| t.comm.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: u32, tgid: u32, on_cpu: u64, runq: u64, d: u64) -> ThreadInterval {
        ThreadInterval {
            tid,
            tgid,
            delta: TaskTotals {
                on_cpu_ns: on_cpu,
                runqueue_ns: runq,
                uninterruptible_ns: d,
                ..Default::default()
            },
            exited: false,
            comm: None,
        }
    }

    #[test]
    fn processes_sum_their_threads_and_sort_by_load() {
        let threads = vec![
            thread(1, 1, 100, 0, 0),
            thread(2, 2, 600, 300, 0),
            thread(3, 2, 600, 300, 100),
        ];
        let (summary, procs) = by_process(threads, 1_000, |pid| Some(format!("p{pid}")));
        assert_eq!(procs[0].pid, 2);
        assert_eq!(procs[0].threads, 2);
        assert_eq!(procs[0].comm, "p2");
        let f = procs[0].figures;
        assert!((f.on_cpu - 1.2).abs() < 1e-9 && (f.runqueue - 0.6).abs() < 1e-9);
        assert!((f.load() - 1.9).abs() < 1e-9);
        assert!((summary.figures.load() - 2.0).abs() < 1e-9);
        assert_eq!(procs[0].thread_detail[0].tid, 3, "busiest thread first");
    }

    #[test]
    fn gone_process_is_named_from_its_leader_exit_record() {
        let mut leader = thread(9, 9, 10, 0, 0);
        leader.comm = Some("leader".into());
        let mut other = thread(10, 9, 10, 0, 0);
        other.comm = Some("worker".into());
        let (_, procs) = by_process(vec![other, leader], 1_000, |_| None);
        assert_eq!(procs[0].comm, "leader");
        let (_, procs) = by_process(vec![thread(11, 11, 1, 0, 0)], 1_000, |_| None);
        assert_eq!(procs[0].comm, "[11]");
    }

    #[test]
    fn io_goes_to_its_process_or_to_a_row_of_its_own() {
        let (_, mut procs) = by_process(vec![thread(1, 1, 10, 0, 0)], 1_000, |_| None);
        let mut disk = HashMap::new();
        let mut d = ProcessDisk::default();
        d.total.ops = 3;
        disk.insert(1, d.clone());
        disk.insert(2, d);
        attach_disk(&mut procs, disk, 1_000, |pid| Some(format!("p{pid}")));
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[0].disk.total.ops, 3);
        assert_eq!((procs[1].pid, procs[1].comm.as_str()), (2, "p2"));
        assert!(procs[1].active());
    }

    #[test]
    fn sleeping_only_process_is_not_active() {
        let mut t = thread(4, 4, 0, 0, 0);
        t.delta.sleeping_ns = 1_000;
        let (_, procs) = by_process(vec![t], 1_000, |_| None);
        assert!(!procs[0].active());
    }
}
