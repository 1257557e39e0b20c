//! The table an on-call engineer reads: a header that says how the box's load is made up and
//! what it means, then one row per process (or per thread with `--pid`).

use std::fmt::Write as _;

use super::Report;
use crate::model::process::LoadFigures;

pub fn render(r: &Report) -> String {
    let f = &r.summary.figures;
    let mut s = String::new();
    let secs = r.summary.interval_ns as f64 / 1e9;
    let _ = writeln!(
        s,
        "loadavg {:.2} {:.2} {:.2}   reconstructed {:.2} {:.2} {:.2}   {} CPUs   interval {secs:.1}s   kernel {}",
        r.loadavg[0],
        r.loadavg[1],
        r.loadavg[2],
        r.reconstructed[0],
        r.reconstructed[1],
        r.reconstructed[2],
        r.cpus,
        r.kernel,
    );
    // Only where the kernel has it (6.12+ delayed dequeue) and it happened.
    let queued = if f.queued_asleep >= 0.005 || r.queued_unfollowed > 0 {
        format!(" + asleep but queued {:.2}", f.queued_asleep)
    } else {
        String::new()
    };
    // Only on a virtual machine whose hypervisor took CPU time from it.
    let stolen = if f.stolen >= 0.005 {
        format!(", of which stolen {:.2}", f.stolen)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "load {:.2} = runnable {:.2} (on CPU {:.2}{stolen} + run queue {:.2}) + uninterruptible {:.2} (I/O {:.2} + other {:.2}){queued}   lost {}{}",
        f.load(),
        f.runnable(),
        f.on_cpu,
        f.runqueue,
        f.uninterruptible,
        f.iowait,
        f.uninterruptible - f.iowait,
        r.lost,
        if r.deferred > 0 {
            format!(" (late {})", r.deferred)
        } else {
            String::new()
        },
    );
    if r.queued_unfollowed > 0 {
        let _ = writeln!(
            s,
            "{} sleepers left queued could not be followed: their queued time counts as sleep, \
             so load is short of the kernel's",
            r.queued_unfollowed
        );
    }
    let _ = writeln!(s, "{}", r.verdict);
    if let Some(costs) = r.program_costs {
        let parts: Vec<String> = costs
            .iter()
            .map(|c| {
                format!(
                    "{} {:.0} ns x {}",
                    c.name,
                    c.run_time_ns as f64 / c.runs.max(1) as f64,
                    c.runs
                )
            })
            .collect();
        let _ = writeln!(s, "programs: {}", parts.join(", "));
    }
    let _ = writeln!(
        s,
        "{:>8} {:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>5}",
        if r.thread_detail { "TID" } else { "PID" },
        "COMM",
        "LOAD",
        "CPU",
        "RUNQ",
        "D",
        "IOWAIT",
        "QSLEEP",
        "IOPS",
        "MB/s",
        "LAT ms",
        if r.thread_detail { "" } else { "THR" },
    );
    let secs = secs.max(1e-9);
    for p in r.processes {
        if r.thread_detail {
            for t in &p.thread_detail {
                let tf = LoadFigures::from_totals(&t.delta, r.summary.interval_ns);
                let name = t.comm.as_deref().unwrap_or(&p.comm);
                row(&mut s, t.tid, name, &tf, "", "");
            }
        } else {
            let d = &p.disk.total;
            let disk = if d.ops > 0 {
                format!(
                    "{:>7.0} {:>7.1} {:>7.2}",
                    d.ops as f64 / secs,
                    d.bytes as f64 / secs / 1e6,
                    d.latency().avg_ns / 1e6
                )
            } else {
                format!("{:>7} {:>7} {:>7}", "-", "-", "-")
            };
            // Marked, since its writes belong to whoever dirtied the pages, not to it.
            let comm = if p.writeback() {
                format!("{} [wb]", p.comm.chars().take(11).collect::<String>())
            } else {
                p.comm.clone()
            };
            row(
                &mut s,
                p.pid,
                &comm,
                &p.figures,
                &disk,
                &p.threads.to_string(),
            );
        }
    }
    s
}

fn row(s: &mut String, id: u32, comm: &str, f: &LoadFigures, disk: &str, last: &str) {
    let comm: String = comm.chars().take(16).collect();
    let disk = if disk.is_empty() {
        format!("{:>7} {:>7} {:>7}", "", "", "")
    } else {
        disk.to_owned()
    };
    let _ = writeln!(
        s,
        "{id:>8} {comm:<16} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {disk} {last:>5}",
        f.load(),
        f.on_cpu,
        f.runqueue,
        f.uninterruptible,
        f.iowait,
        f.queued_asleep,
    );
}
