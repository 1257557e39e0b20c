//! The main loop: every interval, read the kernel side, account, and print.

use std::{
    io::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use crate::{
    btf_layout,
    cli::Args,
    load_samples::LoadSamples,
    model::{
        accounting::Accountant,
        disk::DiskAccountant,
        loadavg::Reconstructed,
        process::{ProcessInterval, attach_disk, by_process},
        verdict::verdict,
    },
    preflight, procfs,
    tracer::{self, Tracer, monotonic_ns},
    view::{self, Report},
};

/// How often the exit ring buffer is emptied. Records are submitted without wakeups, so
/// this is what bounds its fill: 512 KiB holds about 5,000 exits, 50,000 a second.
const EXIT_POLL: Duration = Duration::from_millis(100);

pub async fn run(args: Args) -> Result<()> {
    let interval = args.interval()?;
    let duration = args.duration()?;
    if let Some(pid) = args.pid
        && !procfs::process_exists(pid)
    {
        bail!("no process with PID {pid}");
    }
    preflight::check()?;
    if let Some(warning) = preflight::clocksource_warning() {
        eprintln!("loadtrace: warning: {warning}");
    }
    let optional: Vec<&'static str> = tracer::BLOCK_HOOKS
        .iter()
        .copied()
        .chain([
            tracer::NR_RUNNING_HOOK,
            tracer::LOAD_SAMPLE_HOOK,
            tracer::TICK_STOP_HOOK,
        ])
        .collect();
    let kernel = btf_layout::inspect(std::path::Path::new(btf_layout::VMLINUX_BTF), &optional)?;
    let max_threads = args.max_threads.unwrap_or_else(procfs::max_threads);
    tracer::check_left_out(&args.leave_out)?;
    if !args.leave_out.is_empty() {
        eprintln!(
            "loadtrace: warning: left out {}: the figures they make exact are not",
            args.leave_out.join(", ")
        );
    }
    if args.empty_programs {
        eprintln!("loadtrace: warning: empty programs attached: every figure is zero");
    }
    let mut tracer = Tracer::start(
        &kernel.layout,
        max_threads,
        &kernel.tracepoints,
        &args.leave_out,
        args.empty_programs,
    )?;
    drop(kernel);
    // Held for the whole run: statistics stay on while the descriptor is open.
    let _stats = if args.bpf_stats {
        Some(
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .context("turning on BPF run-time statistics")?,
        )
    } else {
        None
    };
    // Totals run from here; the first interval starts here too, however long the seeding
    // scan of /proc takes.
    let attached_ns = monotonic_ns();
    procfs::visit_every_cpu();
    let start = Instant::now();
    // Empty programs would never update a seeded entry: it would stay runnable for ever.
    if !args.empty_programs {
        tracer.seed(&procfs::active_threads(), attached_ns);
    }

    let cpus = procfs::online_cpus();
    let kernel = procfs::kernel_release();
    let mut reconstructed = Reconstructed::starting_at(procfs::loadavg()?);
    let mut samples = LoadSamples::default();
    let mut accountant = Accountant::default();
    let mut disk_accountant = DiskAccountant::default();
    let mut devices = procfs::DeviceNames::default();
    let mut exits = Vec::new();
    let mut last_ns = attached_ns;

    let mut ticks = interval_at(start + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut polls = interval_at(start + EXIT_POLL, EXIT_POLL);
    let deadline = duration.map(|d| start + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;

    loop {
        tokio::select! {
            _ = polls.tick() => {
                tracer.drain_exits(&mut exits);
                samples.poll(&mut tracer)?;
            }
            _ = sleep_until_monotonic(samples.due_ns()), if samples.due_ns().is_some() => {
                tracer.drain_exits(&mut exits);
                samples.count(&mut tracer)?;
            }
            _ = ticks.tick() => {
                // Read beside /proc/loadavg, the averages must hold the samples it holds.
                if let Some(due) = samples.report_waits_until(monotonic_ns()) {
                    sleep_until_monotonic(Some(due)).await;
                    tracer.drain_exits(&mut exits);
                    samples.count(&mut tracer)?;
                }
                tracer.drain_exits(&mut exits);
                let now_ns = monotonic_ns();
                let live = tracer.sweep()?;
                let threads = accountant.interval(now_ns, exits.drain(..), live);
                let interval_ns = now_ns - last_ns;
                last_ns = now_ns;
                let (summary, mut processes) = by_process(threads, interval_ns, procfs::comm);
                let io = tracer.io_totals()?;
                let disk = disk_accountant.interval(&io);
                tracer.forget_io(&gone_quiet_io(&io, &disk));
                attach_disk(&mut processes, disk, interval_ns, procfs::comm);
                reconstructed.advance(summary.figures.load(), interval_ns);
                samples.set_fallback(summary.figures.load());
                let counters = tracer.counters()?;
                let shown = select(processes, &args);
                let costs = args.bpf_stats.then(|| tracer.program_costs());
                let verdict = verdict(&summary.figures, cpus, &shown);
                let folded = samples.take_folded();
                let report = Report {
                    time: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
                    monotonic_ns: monotonic_ns(),
                    cpus,
                    kernel: &kernel,
                    loadavg: procfs::loadavg()?,
                    summary: &summary,
                    reconstructed: samples.averages().unwrap_or(reconstructed.averages()),
                    time_average: reconstructed.averages(),
                    load_samples: (samples.counted, samples.late),
                    samples: &folded,
                    lost: counters.map_full + counters.exits_lost + counters.io_lost,
                    deferred: counters.exits_deferred,
                    map_full: counters.map_full,
                    switches: counters.switches,
                    unseen_handovers: counters.unseen_handovers,
                    queued_unfollowed: counters.delayed_unfollowed,
                    sample_migrations: counters.sample_migrations,
                    verdict: &verdict,
                    processes: &shown,
                    thread_detail: args.pid.is_some(),
                    program_costs: costs.as_deref(),
                    device_names: &devices.names_for(&shown),
                };
                print(&report, args.json)?;
                if let Some(pid) = args.pid && !procfs::process_exists(pid) {
                    eprintln!("loadtrace: process {pid} has exited");
                    return Ok(());
                }
                if deadline.is_some_and(|d| Instant::now() + interval / 2 > d) {
                    return Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        }
    }
}

/// Sleeps until a CLOCK_MONOTONIC instant (tokio's clock is the same clock, in its own
/// units); never wakes when there is none.
async fn sleep_until_monotonic(at_ns: Option<u64>) {
    match at_ns {
        Some(at) => {
            let wait = Duration::from_nanos(at.saturating_sub(monotonic_ns()));
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

/// I/O entries of processes that are gone and did nothing this interval: read for the last
/// time, so the kernel side's map can let them go.
fn gone_quiet_io(
    io: &[(loadtrace_common::IoKey, loadtrace_common::IoTotals)],
    disk: &std::collections::HashMap<u32, crate::model::disk::ProcessDisk>,
) -> Vec<loadtrace_common::IoKey> {
    io.iter()
        .map(|(k, _)| *k)
        .filter(|k| !disk.contains_key(&k.tgid) && !procfs::process_exists(k.tgid))
        .collect()
}

/// The processes to show: one with `--pid` (its threads named from /proc), else the top N
/// that did anything.
fn select(processes: Vec<ProcessInterval>, args: &Args) -> Vec<ProcessInterval> {
    if let Some(pid) = args.pid {
        let mut shown: Vec<_> = processes.into_iter().filter(|p| p.pid == pid).collect();
        for p in &mut shown {
            for t in &mut p.thread_detail {
                if t.comm.is_none() {
                    t.comm = std::fs::read_to_string(format!("/proc/{pid}/task/{}/comm", t.tid))
                        .ok()
                        .map(|s| s.trim_end().to_owned());
                }
            }
        }
        return shown;
    }
    let active = processes.into_iter().filter(ProcessInterval::active);
    if args.top == 0 {
        active.collect()
    } else {
        active.take(args.top).collect()
    }
}

fn print(report: &Report, json: bool) -> Result<()> {
    let text = if json {
        view::json::render(report) + "\n"
    } else {
        view::table::render(report) + "\n"
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
