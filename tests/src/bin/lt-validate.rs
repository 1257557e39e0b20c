//! Scenario by scenario, loadtrace's figures against the kernel's own accounting, for
//! ACCURACY.md. `cargo xtask validate` runs this on the host and inside the VM on each
//! pinned kernel; it prints one Markdown table (and one JSON line per scenario).
//!
//! Every comparison spans the same stretch of time on both sides: the kernel's counters are
//! read the moment loadtrace's first report arrives and again at its last, and loadtrace's
//! figures are summed over the reports in between.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use loadtrace_tests::procfs::{self, DelayAccounting, Schedstat};
use loadtrace_tests::{
    DiskSum, Loadtrace, Options, Process, Received, Workload, reports_within,
    runnable_against_run_queues, scratch_path, workload_bin_or,
};
use loadtrace_tests::{blockdev, samples};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Compare loadtrace with the kernel's own accounting, scenario by scenario")]
struct Cli {
    /// Seconds each scenario is traced (the floor for load averages is 180).
    #[arg(long, default_value_t = 180)]
    secs: u64,
    /// The load averages are also compared over the run after this many seconds, once the
    /// averages have had time to settle from the previous scenario's level.
    #[arg(long, default_value_t = 90)]
    settle: u64,
    /// loadtrace's report interval, seconds.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep the disk writer on this CPU. Where the CPU that takes the disk's interrupts is
    /// another one, every wakeup of the writer crosses CPUs, and the kernel's clocks of the
    /// two CPUs enter its accounting of each sleep (see ACCURACY.md).
    #[arg(long, value_name = "CPU")]
    writer_cpu: Option<usize>,
    /// Keep the fork storm's forker, and so its children, on this CPU. Every child's exit
    /// then wakes the forker on the CPU it runs on, and no wakeup crosses CPUs.
    #[arg(long, value_name = "CPU")]
    forker_cpu: Option<usize>,
}

/// What each scenario starts. Every scenario runs its workloads for the whole traced span.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    CpuSaturation,
    Disk,
    VforkD,
    Mixed,
    ForkStorm,
    Idle,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario::CpuSaturation,
    Scenario::Disk,
    Scenario::VforkD,
    Scenario::Mixed,
    Scenario::ForkStorm,
    Scenario::Idle,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::CpuSaturation => "cpu-saturation",
            Scenario::Disk => "disk",
            Scenario::VforkD => "vfork-d",
            Scenario::Mixed => "mixed",
            Scenario::ForkStorm => "fork-storm",
            Scenario::Idle => "idle",
        }
    }
}

/// One scenario's comparisons.
struct Outcome {
    scenario: Scenario,
    rows: Vec<Row>,
}

/// loadtrace's figure, the kernel's, and the error between them (relative, in percent,
/// unless the kernel's figure is too close to zero for that to mean anything).
struct Row {
    what: String,
    traced: f64,
    kernel: f64,
    unit: &'static str,
    error_pct: Option<f64>,
    error_abs: f64,
}

impl Row {
    fn new(what: impl Into<String>, traced: f64, kernel: f64, unit: &'static str) -> Self {
        let error_abs = traced - kernel;
        Self {
            what: what.into(),
            traced,
            kernel,
            unit,
            error_pct: (kernel.abs() >= 0.05).then(|| error_abs / kernel * 100.0),
            error_abs,
        }
    }

    fn error(&self) -> String {
        match self.error_pct {
            Some(pct) => format!("{pct:+.2}%"),
            None => format!("{:+.4} {}", self.error_abs, self.unit),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(cli.secs >= 20, "--secs must be at least 20");
    ensure!(
        cli.settle + 4 * cli.interval <= cli.secs,
        "--settle must leave at least four reports of the run"
    );
    let scenarios: Vec<Scenario> = if cli.only.is_empty() {
        SCENARIOS.to_vec()
    } else {
        cli.only
            .iter()
            .map(|name| {
                SCENARIOS
                    .into_iter()
                    .find(|s| s.name() == name)
                    .with_context(|| format!("unknown scenario {name:?}"))
            })
            .collect::<Result<_>>()?
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?;
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        eprintln!("lt-validate: {} for {} s", scenario.name(), cli.secs);
        let outcome = run(scenario, &cli).with_context(|| scenario.name().to_string())?;
        for row in &outcome.rows {
            println!(
                "{}",
                json!({
                    "scenario": scenario.name(),
                    "what": row.what,
                    "loadtrace": row.traced,
                    "kernel": row.kernel,
                    "unit": row.unit,
                    "error_pct": row.error_pct,
                })
            );
        }
        outcomes.push(outcome);
    }
    print_table(kernel.trim(), &cli, &outcomes);
    Ok(())
}

fn print_table(kernel: &str, cli: &Cli, outcomes: &[Outcome]) {
    println!("VALIDATE-TABLE-BEGIN");
    let writer_pinned = cli
        .writer_cpu
        .map(|cpu| format!(" The disk writer is kept on CPU {cpu}."))
        .unwrap_or_default();
    let forker_pinned = cli
        .forker_cpu
        .map(|cpu| format!(" The forker and its children are kept on CPU {cpu}."))
        .unwrap_or_default();
    println!(
        "Kernel {kernel}, {} s per scenario, reports every {} s.{writer_pinned}{forker_pinned}\n",
        cli.secs, cli.interval
    );
    println!("| scenario | comparison | loadtrace | kernel | error |");
    println!("|---|---|---|---|---|");
    for o in outcomes {
        for row in &o.rows {
            println!(
                "| {} | {} | {:.4} {} | {:.4} {} | {} |",
                o.scenario.name(),
                row.what,
                row.traced,
                row.unit,
                row.kernel,
                row.unit,
                row.error()
            );
        }
    }
    println!("VALIDATE-TABLE-END");
}

/// The disk the scenario writes to: the VM's null_blk device of known latency, else a file
/// in the scratch directory.
fn disk_target() -> Result<(PathBuf, Option<f64>)> {
    if let Some(path) = std::env::var_os("LT_NULLB") {
        let latency = std::env::var("LT_NULLB_LATENCY_NS").context("LT_NULLB_LATENCY_NS unset")?;
        let latency_ns: f64 = latency
            .parse()
            .with_context(|| format!("LT_NULLB_LATENCY_NS={latency:?}"))?;
        return Ok((path.into(), Some(latency_ns)));
    }
    Ok((scratch_path()?, None))
}

/// lt-workload sits beside this binary wherever Cargo (or the VM's initramfs) put both.
fn workload(args: &[&str]) -> Result<Workload> {
    let me = std::env::current_exe().context("finding this executable")?;
    let beside = me.with_file_name("lt-workload");
    let bin = workload_bin_or(beside.to_str().context("path is not UTF-8")?);
    Workload::spawn(&bin, args)
}

/// `workload`, kept on `cpu` when one is given.
fn workload_on(cpu: Option<usize>, args: &[&str]) -> Result<Workload> {
    let Some(cpu) = cpu else {
        return workload(args);
    };
    let cpu = cpu.to_string();
    let mut all = vec!["--on-cpu", &cpu];
    all.extend_from_slice(args);
    workload(&all)
}

/// Endless synchronous writes: real-time where the fair class may delay dequeues, so delay
/// accounting's blkio figure is one to compare with (see `fair_class_delays_dequeue`).
fn writer(path: &Path, cpu: Option<usize>) -> Result<Workload> {
    let path = path.to_str().context("disk path is not UTF-8")?;
    let mut args = vec![];
    if procfs::fair_class_delays_dequeue()? {
        args.push("--fifo");
    }
    args.extend([
        "odirect",
        "--path",
        path,
        "--count",
        "1000000000",
        "--size",
        "4096",
    ]);
    workload_on(cpu, &args)
}

fn run(scenario: Scenario, cli: &Cli) -> Result<Outcome> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workloads: Vec<(&'static str, Workload)> = Vec::new();
    let mut latency_ns = None;
    let mut device = None;
    let mut writer_pid = None;
    let spin_threads = match scenario {
        Scenario::CpuSaturation => Some(2 * cpus),
        Scenario::Mixed => Some(cpus),
        _ => None,
    };
    if let Some(threads) = spin_threads {
        let threads = threads.to_string();
        workloads.push(("spinners", workload(&["spin", "--threads", &threads])?));
    }
    let _delayacct = DelayAccounting::enable()?;
    if matches!(scenario, Scenario::Disk | Scenario::Mixed) {
        let (path, latency) = disk_target()?;
        latency_ns = latency;
        if latency.is_some() {
            device = Some(blockdev::name_of(&path)?);
        }
        let w = writer(&path, cli.writer_cpu)?;
        writer_pid = Some(w.pid());
        workloads.push(("writer", w));
    }
    if matches!(scenario, Scenario::VforkD | Scenario::Mixed) {
        let secs = (cli.secs + 60).to_string();
        workloads.push(("vfork parent", workload(&["vfork-d", "--secs", &secs])?));
    }
    if scenario == Scenario::ForkStorm {
        let forker = workload_on(cli.forker_cpu, &["forks", "--count", "1000000000"])?;
        workloads.push(("forker", forker));
    }
    // Let the workloads get going and their threads exist before the baseline.
    std::thread::sleep(Duration::from_secs(2));

    let reports_wanted = (cli.secs / cli.interval).max(2) as usize;
    let loadtrace = Loadtrace::start(
        Options::every(cli.interval)
            .top(0)
            .duration(cli.interval * (reports_wanted as u64 + 3)),
    )?;
    let first = loadtrace.wait_for_first_report()?;
    let pids: Vec<(&str, u32)> = workloads.iter().map(|(n, w)| (*n, w.pid())).collect();
    // The kernel's counters for the workloads, the writer and its device, read at once.
    type KernelCounters = (Vec<Schedstat>, Option<u64>, Option<(u64, u64)>);
    let read_kernel = || -> Result<KernelCounters> {
        let sched = pids
            .iter()
            .map(|&(_, pid)| procfs::process_schedstat(pid))
            .collect::<Result<_>>()?;
        let blkio = writer_pid
            .map(|pid| procfs::threads_blkio_ticks(pid, &procfs::threads(pid)?))
            .transpose()?;
        let device = device.as_deref().map(blockdev::write_stats).transpose()?;
        Ok((sched, blkio, device))
    };
    let (sched_before, blkio_before, device_before) = read_kernel()?;
    let sampling = Sampling::start(cli.secs.saturating_sub(2 * cli.interval).max(1))?;
    loadtrace.wait_for_reports(reports_wanted + 1)?;
    let (sched_after, blkio_after, device_after) = read_kernel()?;
    let sampled = sampling.finish()?;
    let all = loadtrace.reports();
    drop(loadtrace);
    drop(workloads);
    let span = &all[1..=reports_wanted];
    ensure!(
        span.iter().all(|r| r.report.lost == first.report.lost),
        "loadtrace lost records during the run"
    );

    let mut rows = Vec::new();
    print_trajectory(scenario, span);
    load_rows(span, "", &mut rows);
    let settled_from = span[0].at + Duration::from_secs(cli.settle);
    let settled: Vec<Received> = span
        .iter()
        .filter(|r| r.at >= settled_from)
        .cloned()
        .collect();
    load_rows(
        &settled,
        &format!(", after the first {} s", cli.settle),
        &mut rows,
    );
    sample_row(span, &mut rows);
    run_queue_row(&all[0], span, &mut rows)?;
    rows.push(sampled.row(&all)?);
    for (i, &(name, pid)) in pids.iter().enumerate() {
        // A fork storm's children come and go; the forker's own threads are what schedstat
        // still holds at the end.
        let kernel_s = (sched_after[i].runnable_ns() - sched_before[i].runnable_ns()) as f64 / 1e9;
        // Less steal time: the kernel's CPU time leaves it out, its run-queue wait keeps it.
        let traced_s = traced_seconds(span, pid, |p| p.on_cpu - p.stolen + p.runqueue);
        let stolen_s = traced_seconds(span, pid, |p| p.stolen);
        println!(
            "{}",
            json!({
                "scenario": scenario.name(),
                "process": name,
                "schedstat_exec_s": (sched_after[i].exec_ns - sched_before[i].exec_ns) as f64 / 1e9,
                "schedstat_run_delay_s":
                    (sched_after[i].run_delay_ns - sched_before[i].run_delay_ns) as f64 / 1e9,
                "on_cpu_s": traced_seconds(span, pid, |p| p.on_cpu),
                "stolen_s": stolen_s,
                "runqueue_s": traced_seconds(span, pid, |p| p.runqueue),
                "uninterruptible_s": traced_seconds(span, pid, |p| p.uninterruptible),
                "io_wait_s": traced_seconds(span, pid, |p| p.io_wait),
                "voluntary_switches": span.iter().filter_map(|r| r.report.process(pid)).map(|p| p.voluntary_switches).sum::<u64>(),
                "involuntary_switches": span.iter().filter_map(|r| r.report.process(pid)).map(|p| p.involuntary_switches).sum::<u64>(),
            })
        );
        rows.push(Row::new(
            format!(
                "{name}: runnable time (on CPU less {stolen_s:.3} s stolen + run queue) vs schedstat"
            ),
            traced_s,
            kernel_s,
            "s",
        ));
    }
    if let (Some(pid), Some(before), Some(after)) = (writer_pid, blkio_before, blkio_after) {
        let kernel_s = (after - before) as f64 / procfs::clock_ticks_per_sec()? as f64;
        rows.push(Row::new(
            "writer: I/O wait vs delay accounting (blkio)",
            traced_seconds(span, pid, |p| p.io_wait),
            kernel_s,
            "s",
        ));
        if let Some(latency_ns) = latency_ns {
            let disk = DiskSum::of(span.iter().map(|r| &r.report), pid);
            rows.push(Row::new(
                "writer: average request latency vs null_blk completion_nsec",
                disk.total.avg_latency_ms(),
                latency_ns / 1e6,
                "ms",
            ));
            // The kernel's own figure for the device: milliseconds spent writing per write
            // completed (/sys/block/<dev>/stat), which under emulation runs late.
            if let (Some((ios0, ms0)), Some((ios1, ms1))) = (device_before, device_after) {
                rows.push(Row::new(
                    "writer: average request latency vs the device's own (/sys/block stat)",
                    disk.total.avg_latency_ms(),
                    (ms1 - ms0) as f64 / (ios1 - ios0).max(1) as f64,
                    "ms",
                ));
            }
        }
    }
    let (first_r, last_r) = (&all[0], &all[reports_wanted]);
    let unseen = last_r.report.counters.unseen_handovers - first_r.report.counters.unseen_handovers;
    let seen = last_r.report.counters.switches - first_r.report.counters.switches;
    let ctxt = (last_r.ctxt - first_r.ctxt) as f64;
    // A handover the kernel made without a switch event is still a switch it counted in
    // `ctxt`, and loadtrace notices each at the CPU's next timer interrupt: both count.
    rows.push(Row::new(
        format!(
            "context switches (seen at sched_switch + {unseen} handovers noticed without it) vs /proc/stat ctxt"
        ),
        (seen + unseen) as f64,
        ctxt,
        "",
    ));
    if unseen != 0 {
        rows.push(Row::new(
            "context switches seen at sched_switch alone vs /proc/stat ctxt",
            seen as f64,
            ctxt,
            "",
        ));
    }
    // The kernel's figure also holds steal while a CPU idled, which no thread had.
    let stolen_s: f64 = span
        .iter()
        .map(|r| r.report.load.stolen * r.report.interval_s)
        .sum();
    rows.push(Row::new(
        "steal time on CPU (all threads) vs /proc/stat steal (idle CPUs' too)",
        stolen_s,
        (last_r.steal_ticks - first_r.steal_ticks) as f64 / procfs::clock_ticks_per_sec()? as f64,
        "s",
    ));
    Ok(Outcome { scenario, rows })
}

/// The kernel's count of running tasks read at moments spread evenly in time (a real-time
/// sampler reading /proc/loadavg's nr_running), against loadtrace's time average of its
/// runnable and queued threads over the same seconds. Where the 1-minute average and this
/// disagree, the moments the kernel folds its own samples at are not a fair draw of time.
struct Sampling {
    sampler: Workload,
    started: SystemTime,
}

/// What the sampler saw.
struct Sampled {
    sampler_pid: u32,
    result: Value,
    started: SystemTime,
    ended: SystemTime,
}

impl Sampling {
    /// Every 9.7 ms: not a multiple of the 4 ms tick, and light enough for an emulated CPU.
    fn start(secs: u64) -> Result<Self> {
        let secs = secs.to_string();
        let args = [
            "--fifo",
            "sample-running",
            "--secs",
            &secs,
            "--period-us",
            "9700",
        ];
        Ok(Self {
            started: SystemTime::now(),
            sampler: workload(&args)?,
        })
    }

    fn finish(self) -> Result<Sampled> {
        let sampler_pid = self.sampler.pid();
        let result = self.sampler.wait_exit(Duration::from_secs(60))?;
        Ok(Sampled {
            sampler_pid,
            result,
            started: self.started,
            ended: SystemTime::now(),
        })
    }
}

impl Sampled {
    fn row(&self, reports: &[Received]) -> Result<Row> {
        let within = reports_within(reports, self.started, self.ended);
        ensure!(!within.is_empty(), "no report within the sampler's run");
        let seconds: f64 = within.iter().map(|r| r.interval_s).sum();
        let traced = within
            .iter()
            .map(|r| r.running_seconds_except(self.sampler_pid))
            .sum::<f64>()
            / seconds;
        let kernel = self.result["mean_others"]
            .as_f64()
            .context("the sampler gave no mean")?;
        let samples = self.result["samples"].as_u64().unwrap_or(0);
        println!("{}", json!({ "sampler": self.result }));
        Ok(Row::new(
            format!(
                "running tasks (runnable + queued asleep) vs the kernel's nr_running read every \
                 9.7 ms ({samples} readings over {:.0} s of reports)",
                seconds
            ),
            traced,
            kernel,
            "",
        ))
    }
}

/// Every task's runnable time, exited ones and kernel threads included, against what the
/// run queues themselves accounted over the same span, where the kernel keeps a faithful
/// account of it (see `runnable_against_run_queues`).
fn run_queue_row(start: &Received, span: &[Received], rows: &mut Vec<Row>) -> Result<()> {
    if let Some((traced, kernel)) = runnable_against_run_queues(start, span)? {
        rows.push(Row::new(
            "every task, exited ones too: runnable (on CPU + run queue) vs the run queues' own \
             totals (/proc/schedstat rq_cpu_time + run_delay), as an average count",
            traced,
            kernel,
            "",
        ));
    }
    Ok(())
}

/// The reconstructed 1- and 5-minute averages against /proc/loadavg, report by report:
/// their means, and the mean absolute difference as the error. Also the 1-minute average
/// fed with the time-average count instead of the counts at the kernel's sample instants,
/// to show what following those instants is worth.
fn load_rows(span: &[Received], qualifier: &str, rows: &mut Vec<Row>) {
    let n = span.len() as f64;
    type Pick = fn(&Received) -> (f64, f64);
    let pairs: [(&str, Pick); 3] = [
        ("1-minute", |r| {
            (r.report.load.reconstructed_1m, r.report.loadavg[0])
        }),
        ("5-minute", |r| {
            (r.report.load.reconstructed_5m, r.report.loadavg[1])
        }),
        (
            "1-minute (fed with the time average, not the samples)",
            |r| (r.report.load.time_average_1m, r.report.loadavg[0]),
        ),
    ];
    let samples = span.last().map_or(String::new(), |r| {
        let c = &r.report.counters;
        format!(
            "; loadtrace counted {} of the kernel's samples since it started, missed {}",
            c.load_samples_counted, c.load_samples_missed
        )
    });
    for (label, pick) in pairs {
        let counted = if label == "1-minute" {
            samples.as_str()
        } else {
            ""
        };
        let (mut traced, mut kernel, mut abs_diff) = (0.0, 0.0, 0.0);
        for (t, k) in span.iter().map(pick) {
            traced += t / n;
            kernel += k / n;
            abs_diff += (t - k).abs() / n;
        }
        rows.push(Row {
            what: format!(
                "{label} load average{qualifier} (means over {} reports; error: mean absolute \
                 difference{counted})",
                span.len()
            ),
            traced,
            kernel,
            unit: "",
            error_pct: (kernel >= 0.05).then(|| abs_diff / kernel * 100.0),
            error_abs: abs_diff,
        });
    }
}

/// What the kernel itself sampled: its 1-minute average moves by (1 - e) x (sample - old
/// average) at each 5-second fold, so successive readings give back each instant count it
/// folded in (to +-0.06, as /proc/loadavg has two decimals). Their mean, with its standard
/// error, against loadtrace's time average over the same reports: where the load is
/// bursty, a gap within a few standard errors is the kernel's sampling, not a miscount.
fn sample_row(span: &[Received], rows: &mut Vec<Row>) {
    // Reports every 5 s against samples 5 s and a tick apart: one in some 1,250 holds none.
    let kernel = samples::folds_in(span, |r| r.report.loadavg[0]);
    let folds: Vec<usize> = kernel.iter().map(|&(i, _)| i).collect();
    let samples: Vec<f64> = kernel.iter().map(|&(_, count)| count).collect();
    if samples.len() < 2 {
        return;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let sd = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let traced = folds
        .iter()
        .map(|&i| span[i].report.load.total)
        .sum::<f64>()
        / n;
    // An average fed samples that scatter with `sd` around a steady level scatters itself
    // by sd * sqrt(w / (2 - w)), w = 1 - EXP_1 / FIXED_1; its mean absolute difference from
    // that level is sqrt(2 / pi) times as much. No reconstruction from the time average can
    // follow the kernel's average closer than this, however exact.
    let w = 1.0 - samples::DECAY_1M;
    let sampling_mad = (2.0 / std::f64::consts::PI).sqrt() * sd * (w / (2.0 - w)).sqrt();
    // In % of the load, as the 1-minute rows' error is, unless the load is next to nothing.
    let sampling_error = if mean >= 0.05 {
        format!("{:.1}%", sampling_mad / mean * 100.0)
    } else {
        format!("{sampling_mad:.3}")
    };
    rows.push(Row::new(
        format!(
            "time-average load vs the kernel's own samples (recovered from successive 1-minute \
             averages: {} samples, sd {sd:.2}, standard error of their mean {:.3}; such samples \
             alone put the kernel's 1-minute average {sampling_error} from a steady level, mean \
             absolute)",
            samples.len(),
            sd / n.sqrt(),
        ),
        traced,
        mean,
        "",
    ));
    // Sample by sample: loadtrace's reconstructed average gives back the counts it folded
    // the same way, so each of the kernel's samples can be checked, not only their mean.
    let traced: Vec<f64> = samples::folds_in(span, |r| r.report.load.reconstructed_1m)
        .into_iter()
        .map(|(_, count)| count)
        .collect();
    let off = samples::samples_off(&samples, &traced);
    let start = span[0].at;
    let where_off: Vec<String> = off
        .iter()
        .map(|o| {
            format!(
                "{} where the kernel counted {} at {:.0} s",
                o.traced,
                o.kernel,
                (span[folds[o.reading - 1]].at - start).as_secs_f64()
            )
        })
        .collect();
    let listed = if where_off.is_empty() {
        String::new()
    } else {
        format!("; loadtrace {}", where_off.join(", "))
    };
    rows.push(Row::new(
        format!(
            "the kernel's samples that loadtrace counted alike, of {} (each recovered from \
             successive 1-minute averages, as whole tasks{listed})",
            samples.len()
        ),
        (samples.len() - off.len()) as f64,
        samples.len() as f64,
        "",
    ));
}

/// Every report's load figures, one JSON line each, for looking into an error afterwards:
/// with the samples loadtrace folded in since the report before (their times in seconds from
/// the first report) and the count the kernel folded in over the same stretch, recovered
/// from the two reports' 1-minute averages.
fn print_trajectory(scenario: Scenario, span: &[Received]) {
    let (start, start_time) = (span[0].at, span[0].report.time);
    let mut before: Option<f64> = None;
    for r in span {
        let (report, load) = (&r.report, &r.report.load);
        let samples: Vec<Value> = report
            .samples
            .iter()
            .map(|s| {
                json!({
                    "t": s.time - start_time,
                    "counted": s.counted,
                    "fold_lag": s.fold_lag,
                    "folded": s.folded,
                    "late": s.late,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "scenario": scenario.name(),
                "t": (r.at - start).as_secs_f64(),
                "load": load.total,
                "runnable": load.runnable,
                "uninterruptible": load.uninterruptible,
                "queued_asleep": load.queued_asleep,
                "reconstructed": [load.reconstructed_1m, load.reconstructed_5m],
                "loadavg": [report.loadavg[0], report.loadavg[1]],
                "samples": samples,
                "kernel_folded": before.map(|b| samples::folded_between(b, report.loadavg[0])),
                "queued_unfollowed": report.counters.queued_unfollowed,
                "unseen_handovers": report.counters.unseen_handovers,
                "sample_migrations": report.counters.sample_migrations,
            })
        );
        before = Some(report.loadavg[0]);
    }
}

fn traced_seconds(span: &[Received], pid: u32, figure: impl Fn(&Process) -> f64) -> f64 {
    span.iter().map(|r| r.report.seconds_of(pid, &figure)).sum()
}
