//! One JSON object per interval (NDJSON); the schema is documented in README.md.

use serde::Serialize;

use super::Report;
use std::collections::HashMap;

use crate::model::{
    accounting::ThreadInterval,
    disk::{IoDelta, ProcessDisk},
    process::{LoadFigures, ProcessInterval},
};

#[derive(Serialize)]
struct Interval<'a> {
    time: f64,
    interval_s: f64,
    cpus: u32,
    kernel: &'a str,
    loadavg: [f64; 3],
    load: Load,
    lost: u64,
    counters: CountersOut,
    samples: Vec<SampleOut>,
    verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    programs: Option<Vec<ProgramOut>>,
    processes: Vec<Process<'a>>,
}

#[derive(Serialize)]
struct ProgramOut {
    name: &'static str,
    runs: u64,
    run_time_ns: u64,
    ns_per_run: f64,
}

#[derive(Serialize)]
struct Load {
    total: f64,
    runnable: f64,
    on_cpu: f64,
    runqueue: f64,
    uninterruptible: f64,
    io_wait: f64,
    other_d: f64,
    queued_asleep: f64,
    stolen: f64,
    reconstructed_1m: f64,
    reconstructed_5m: f64,
    reconstructed_15m: f64,
    time_average_1m: f64,
    time_average_5m: f64,
    time_average_15m: f64,
}

#[derive(Serialize)]
struct SampleOut {
    time: f64,
    counted: u32,
    fold_lag: i64,
    folded: u32,
    late: bool,
}

#[derive(Serialize)]
struct CountersOut {
    ringbuf_deferred: u64,
    map_full: u64,
    switches: u64,
    unseen_handovers: u64,
    queued_unfollowed: u64,
    sample_migrations: u64,
    load_samples_counted: u64,
    load_samples_missed: u64,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    comm: &'a str,
    load: f64,
    on_cpu: f64,
    runqueue: f64,
    uninterruptible: f64,
    io_wait: f64,
    other_d: f64,
    queued_asleep: f64,
    stolen: f64,
    threads: u32,
    voluntary_switches: u64,
    involuntary_switches: u64,
    writeback: bool,
    disk: Disk<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_detail: Option<Vec<Thread<'a>>>,
}

#[derive(Serialize)]
struct Disk<'a> {
    #[serde(flatten)]
    total: Io,
    devices: Vec<Device<'a>>,
}

#[derive(Serialize)]
struct Device<'a> {
    name: &'a str,
    #[serde(flatten)]
    io: Io,
}

#[derive(Serialize)]
struct Io {
    ops: u64,
    bytes: u64,
    read_ops: u64,
    write_ops: u64,
    latency_ms: LatencyMs,
}

#[derive(Serialize)]
struct LatencyMs {
    avg: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct Thread<'a> {
    tid: u32,
    comm: Option<&'a str>,
    exited: bool,
    load: f64,
    on_cpu: f64,
    runqueue: f64,
    uninterruptible: f64,
    queued_asleep: f64,
    stolen: f64,
    runnable_ns: u64,
    on_cpu_ns: u64,
    runqueue_ns: u64,
    uninterruptible_ns: u64,
    io_wait_ns: u64,
    queued_asleep_ns: u64,
    stolen_ns: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

pub fn render(r: &Report) -> String {
    let interval_ns = r.summary.interval_ns;
    let f = &r.summary.figures;
    let out = Interval {
        time: r.time,
        interval_s: interval_ns as f64 / 1e9,
        cpus: r.cpus,
        kernel: r.kernel,
        loadavg: r.loadavg,
        load: Load {
            total: f.load(),
            runnable: f.runnable(),
            on_cpu: f.on_cpu,
            runqueue: f.runqueue,
            uninterruptible: f.uninterruptible,
            io_wait: f.iowait,
            other_d: f.uninterruptible - f.iowait,
            queued_asleep: f.queued_asleep,
            stolen: f.stolen,
            reconstructed_1m: r.reconstructed[0],
            reconstructed_5m: r.reconstructed[1],
            reconstructed_15m: r.reconstructed[2],
            time_average_1m: r.time_average[0],
            time_average_5m: r.time_average[1],
            time_average_15m: r.time_average[2],
        },
        lost: r.lost,
        counters: CountersOut {
            ringbuf_deferred: r.deferred,
            map_full: r.map_full,
            switches: r.switches,
            unseen_handovers: r.unseen_handovers,
            queued_unfollowed: r.queued_unfollowed,
            sample_migrations: r.sample_migrations,
            load_samples_counted: r.load_samples.0,
            load_samples_missed: r.load_samples.1,
        },
        samples: r
            .samples
            .iter()
            .map(|s| SampleOut {
                time: r.time - r.monotonic_ns.saturating_sub(s.at_ns) as f64 / 1e9,
                counted: s.counted,
                fold_lag: s.fold_lag,
                folded: s.folded,
                late: s.late,
            })
            .collect(),
        verdict: r.verdict,
        programs: r.program_costs.map(|costs| {
            costs
                .iter()
                .map(|c| ProgramOut {
                    name: c.name,
                    runs: c.runs,
                    run_time_ns: c.run_time_ns,
                    ns_per_run: c.run_time_ns as f64 / c.runs.max(1) as f64,
                })
                .collect()
        }),
        processes: r
            .processes
            .iter()
            .map(|p| process(p, r.thread_detail, interval_ns, r.device_names))
            .collect(),
    };
    serde_json::to_string(&out).expect("plain data serialises")
}

fn process<'a>(
    p: &'a ProcessInterval,
    detail: bool,
    interval_ns: u64,
    names: &'a HashMap<u32, String>,
) -> Process<'a> {
    Process {
        pid: p.pid,
        comm: &p.comm,
        load: p.figures.load(),
        on_cpu: p.figures.on_cpu,
        runqueue: p.figures.runqueue,
        uninterruptible: p.figures.uninterruptible,
        io_wait: p.figures.iowait,
        other_d: p.figures.uninterruptible - p.figures.iowait,
        queued_asleep: p.figures.queued_asleep,
        stolen: p.figures.stolen,
        threads: p.threads,
        voluntary_switches: p.totals.voluntary_switches,
        involuntary_switches: p.totals.involuntary_switches,
        writeback: p.writeback(),
        disk: disk(&p.disk, names),
        thread_detail: detail.then(|| {
            p.thread_detail
                .iter()
                .map(|t| thread(t, interval_ns))
                .collect()
        }),
    }
}

fn disk<'a>(d: &ProcessDisk, names: &'a HashMap<u32, String>) -> Disk<'a> {
    Disk {
        total: io(&d.total),
        devices: d
            .devices
            .iter()
            .map(|(dev, delta)| Device {
                name: names.get(dev).map_or("?", String::as_str),
                io: io(delta),
            })
            .collect(),
    }
}

fn io(d: &IoDelta) -> Io {
    let l = d.latency();
    Io {
        ops: d.ops,
        bytes: d.bytes,
        read_ops: d.read_ops,
        write_ops: d.write_ops,
        latency_ms: LatencyMs {
            avg: l.avg_ns / 1e6,
            p50: l.p50_ns / 1e6,
            p99: l.p99_ns / 1e6,
            max: l.max_ns / 1e6,
        },
    }
}

fn thread(t: &ThreadInterval, interval_ns: u64) -> Thread<'_> {
    let d = &t.delta;
    let f = LoadFigures::from_totals(d, interval_ns);
    Thread {
        tid: t.tid,
        comm: t.comm.as_deref(),
        exited: t.exited,
        load: f.load(),
        on_cpu: f.on_cpu,
        runqueue: f.runqueue,
        uninterruptible: f.uninterruptible,
        queued_asleep: f.queued_asleep,
        stolen: f.stolen,
        runnable_ns: d.on_cpu_ns + d.runqueue_ns,
        on_cpu_ns: d.on_cpu_ns,
        runqueue_ns: d.runqueue_ns,
        uninterruptible_ns: d.uninterruptible_ns,
        io_wait_ns: d.iowait_ns,
        queued_asleep_ns: d.queued_asleep_ns,
        stolen_ns: d.stolen_ns,
        voluntary_switches: d.voluntary_switches,
        involuntary_switches: d.involuntary_switches,
    }
}
