//! A one-line reading of an interval, in the spirit of the USE method: is the load CPU
//! demand, disk waits, or other uninterruptible waits, and who makes most of it.

use super::process::{LoadFigures, ProcessInterval};

/// Below this, the box is called idle: a few short wakeups of background threads.
const IDLE_LOAD: f64 = 0.05;

pub fn verdict(box_figures: &LoadFigures, cpus: u32, processes: &[ProcessInterval]) -> String {
    let f = box_figures;
    let cpus_f = f64::from(cpus.max(1));
    let head = if f.load() < IDLE_LOAD {
        return format!("idle: load {:.2}", f.load());
    } else if f.uninterruptible > f.runnable() {
        let other = f.uninterruptible - f.iowait;
        if f.iowait >= other {
            format!(
                "I/O-bound: {:.2} of {:.2} load is tasks waiting on disk I/O",
                f.iowait,
                f.load()
            )
        } else {
            format!(
                "blocked: {:.2} of {:.2} load is uninterruptible sleep that is not disk I/O \
                 (locks, page faults, D-state kernel threads)",
                other,
                f.load()
            )
        }
    } else if f.runnable() > cpus_f {
        format!(
            "CPU-saturated: {:.2} runnable tasks on {cpus} CPUs, {:.2} waiting for a CPU",
            f.runnable(),
            f.runqueue
        )
    } else {
        format!(
            "CPU-bound, not saturated: {:.2} runnable tasks on {cpus} CPUs",
            f.runnable()
        )
    };
    // Load that is no demand at all: worth saying when it is a good part of the figure.
    let head = if f.queued_asleep >= 0.1 && f.queued_asleep >= 0.25 * f.load() {
        format!(
            "{head}; {:.2} of the load is sleepers the kernel still counts as running \
             (delayed dequeue), not demand",
            f.queued_asleep
        )
    } else {
        head
    };
    let top: Vec<String> = processes
        .iter()
        .filter(|p| p.figures.load() >= 0.01)
        .take(3)
        .map(|p| format!("{} [{}] {:.2}", p.comm, p.pid, p.figures.load()))
        .collect();
    if top.is_empty() {
        head
    } else {
        format!("{head}; top: {}", top.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use loadtrace_common::TaskTotals;

    use super::*;

    fn figures(on_cpu: f64, runqueue: f64, uninterruptible: f64, iowait: f64) -> LoadFigures {
        LoadFigures {
            on_cpu,
            runqueue,
            uninterruptible,
            iowait,
            queued_asleep: 0.0,
            stolen: 0.0,
        }
    }

    fn process(comm: &str, load: f64) -> ProcessInterval {
        ProcessInterval {
            pid: 42,
            comm: comm.into(),
            threads: 1,
            totals: TaskTotals::default(),
            figures: figures(load, 0.0, 0.0, 0.0),
            thread_detail: vec![],
            disk: Default::default(),
        }
    }

    #[test]
    fn names_the_kind_of_load() {
        assert!(verdict(&figures(0.01, 0.0, 0.0, 0.0), 2, &[]).starts_with("idle"));
        assert!(verdict(&figures(2.0, 1.0, 0.0, 0.0), 2, &[]).starts_with("CPU-saturated"));
        assert!(verdict(&figures(1.0, 0.0, 0.0, 0.0), 2, &[]).starts_with("CPU-bound"));
        assert!(verdict(&figures(0.2, 0.0, 2.0, 1.8), 2, &[]).starts_with("I/O-bound"));
        assert!(verdict(&figures(0.2, 0.0, 2.0, 0.1), 2, &[]).starts_with("blocked"));
    }

    #[test]
    fn says_when_queued_sleepers_make_much_of_the_load() {
        let mut f = figures(1.0, 0.0, 0.0, 0.0);
        assert!(!verdict(&f, 2, &[]).contains("delayed dequeue"));
        f.queued_asleep = 0.8;
        let v = verdict(&f, 2, &[]);
        assert!(
            v.starts_with("CPU-bound") && v.contains("0.80 of the load"),
            "{v}"
        );
    }

    #[test]
    fn lists_the_top_contributors() {
        let v = verdict(
            &figures(2.0, 1.0, 0.0, 0.0),
            2,
            &[process("spin", 3.0), process("idle", 0.0)],
        );
        assert!(v.ends_with("top: spin [42] 3.00"), "{v}");
    }
}
