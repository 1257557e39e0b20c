//! How exact the figures are: loadtrace's totals against the kernel's own accounting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use loadtrace_tests::procfs::{self, Schedstat};
use loadtrace_tests::{
    Loadtrace, Options, Received, Thread, Workload, check, in_vm, note, patience, reports_within,
    require_root, runnable_against_run_queues, samples, workload_bin,
};

/// CPU work per fork child: about 0.6 ms on the host; a tenth of the iterations under
/// emulation, which runs them some twenty times slower.
fn child_iters() -> u64 {
    if in_vm() { 40_000 } else { 400_000 }
}

#[test]
fn short_lived_processes_all_accounted() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_first_report()?;
    let iters = child_iters().to_string();
    let forks = Workload::spawn(
        &workload_bin!(),
        &["forks", "--count", "1000", "--child-iters", &iters],
    )?;
    let result = forks.wait_exit(patience(Duration::from_secs(120)))?;
    loadtrace.wait_for_report_starting_after(SystemTime::now())?;
    let reports = loadtrace.stop()?;

    // The kernel's runnable time (exec + run_delay, from each zombie's schedstat) is the
    // oracle: its CPU time alone (rusage) also holds the wait between a child's wakeup and
    // its first instruction whenever the scheduler skips a run-queue clock update, which
    // under emulation is a tenth of these children's lives.
    let expected_ns = result["children_runnable_ns"]
        .as_f64()
        .context("no children_runnable_ns")?;
    let rusage_ns = result["children_cpu_ns"]
        .as_f64()
        .context("no children_cpu_ns")?;
    let children: BTreeSet<u32> = result["child_pids"]
        .as_array()
        .context("no child_pids")?
        .iter()
        .filter_map(|pid| pid.as_u64()?.try_into().ok())
        .collect();
    ensure!(
        children.len() == 1000,
        "the workload reported {} distinct children",
        children.len()
    );

    let (seen, on_cpu_ns, runnable_ns) = fork_children_seen(&reports);
    let missing = children.difference(&seen).count();
    let strays: Vec<_> = seen.difference(&children).collect();
    note(&format!(
        "forks: children runnable {:.3} ms by schedstat, {:.3} ms by loadtrace; on CPU {:.3} ms \
         by rusage, {:.3} ms by loadtrace; {} of 1000 children seen",
        expected_ns / 1e6,
        runnable_ns / 1e6,
        rusage_ns / 1e6,
        on_cpu_ns / 1e6,
        seen.len() - strays.len()
    ));
    let last = &reports.last().context("no reports")?.report;
    ensure!(
        missing == 0,
        "{missing} of the 1000 short-lived children never appeared as lt-forkchild; {}; \
         records lost {}, map full {}, exits deferred {}",
        rows_of(&reports, children.difference(&seen)),
        last.lost,
        last.counters.map_full,
        last.counters.ringbuf_deferred,
    );
    ensure!(
        last.lost == 0,
        "{} records lost (map full {})",
        last.lost,
        last.counters.map_full
    );
    ensure!(
        strays.is_empty(),
        "lt-forkchild reported under pids that were not children: {strays:?}"
    );
    check::near_fraction(
        "lt-forkchild runnable time (ns)",
        runnable_ns,
        expected_ns,
        0.05,
    )
}

/// Where the given pids were listed under another name, report by report.
fn rows_of<'a>(reports: &[Received], pids: impl Iterator<Item = &'a u32>) -> String {
    let pids: BTreeSet<u32> = pids.copied().collect();
    let rows: Vec<String> = reports
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.report
                .processes
                .iter()
                .filter(|p| pids.contains(&p.pid))
                .map(move |p| {
                    format!(
                        "report {i}: pid {} as {:?}, load {:.6}, switches {}+{}",
                        p.pid, p.comm, p.load, p.voluntary_switches, p.involuntary_switches
                    )
                })
        })
        .collect();
    if rows.is_empty() {
        format!("pids {pids:?} in no report under any name")
    } else {
        rows.join("; ")
    }
}

/// The pids listed as lt-forkchild, and their on-CPU and runnable time summed over all
/// reports (ns), less steal time, which the kernel's CPU time leaves out.
fn fork_children_seen(reports: &[Received]) -> (BTreeSet<u32>, f64, f64) {
    let mut seen = BTreeSet::new();
    let mut on_cpu_ns = 0.0;
    let mut runnable_ns = 0.0;
    for r in reports {
        for p in r
            .report
            .processes
            .iter()
            .filter(|p| p.comm == "lt-forkchild")
        {
            seen.insert(p.pid);
            on_cpu_ns += (p.on_cpu - p.stolen) * r.report.interval_s * 1e9;
            runnable_ns += (p.on_cpu - p.stolen + p.runqueue) * r.report.interval_s * 1e9;
        }
    }
    (seen, on_cpu_ns, runnable_ns)
}

#[test]
fn runnable_time_matches_schedstat() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let mut spinner = Workload::spawn(
        &workload_bin!(),
        &[
            "--wait-stdin",
            "--then-block",
            "spin",
            "--threads",
            "2",
            "--secs",
            "10",
        ],
    )?;
    spinner.wait_ready(patience(Duration::from_secs(30)))?;
    let pid = spinner.pid();
    let tids = procfs::threads(pid)?;

    let loadtrace = Loadtrace::start(Options::every(1).pid(pid))?;
    loadtrace.wait_for_first_report()?;
    // The kernel's baseline is read once loadtrace traces, not before it starts: on 6.12 a
    // thread asleep at the start barrier can be left queued (delayed dequeue) and gather
    // schedstat run-queue wait meanwhile (a spinner once showed 12.17 s runnable for its 10 s
    // of spinning), which loadtrace, attached after the thread went to sleep, cannot see.
    let before = schedstats(pid, &tids)?;
    spinner.release()?;
    let done = spinner.wait_parked(patience(Duration::from_secs(60)))?;
    // Every thread is parked: nothing changes now. Wait for a report that covers only
    // the quiet, so the reports hold all the work.
    loadtrace.wait_for_report_starting_after(SystemTime::now())?;
    let after = schedstats(pid, &tids)?;
    let reports = loadtrace.stop()?;
    ensure!(
        procfs::threads(pid)? == tids,
        "the workload's threads changed during the test"
    );

    for r in &reports {
        let others: Vec<u32> = r
            .report
            .processes
            .iter()
            .map(|p| p.pid)
            .filter(|&p| p != pid)
            .collect();
        ensure!(
            others.is_empty(),
            "--pid {pid} also reported processes {others:?}"
        );
    }
    let mut spinning = 0;
    for &tid in &tids {
        // A spinner's own reading around its spin: on 6.12+ one left queued asleep at the
        // start barrier is charged that whole wait as run-queue wait when it first runs, after
        // any baseline read from outside (a spinner showed 13.84 s runnable for its 10 s).
        let Some(kernel_ns) = done["loop_runnable_ns"][tid.to_string()].as_u64() else {
            check_sleeper(&reports, pid, tid, &before[&tid], &after[&tid])?;
            continue;
        };
        let traced_ns = traced_runnable_ns(&reports, pid, tid);
        note(&format!(
            "thread {tid}: runnable {kernel_ns} ns by schedstat, {traced_ns} ns by loadtrace"
        ));
        check_runnable(tid, traced_ns, kernel_ns)?;
        spinning += usize::from(kernel_ns > 9_000_000_000);
    }
    // Both spinners were runnable for their 10 s: the comparison covered the work.
    ensure!(
        spinning == 2,
        "{spinning} threads were runnable 9 s or more, expected the 2 spinners"
    );
    Ok(())
}

/// The main thread, asleep but for a few wakeups, read from outside. Its CPU time must
/// agree; its run-queue wait can only be bounded from above: on 6.12 a sleeper left queued
/// by delayed dequeue and moved to another CPU meanwhile is charged the rest of its sleep
/// as run-queue wait when it next runs (the main thread once showed 3.93 s of wait for a
/// release it slept through), time it was not runnable and loadtrace rightly does not count.
fn check_sleeper(
    reports: &[Received],
    pid: u32,
    tid: u32,
    before: &Schedstat,
    after: &Schedstat,
) -> Result<()> {
    let on_cpu_ns = thread_sum(reports, pid, tid, |t| t.on_cpu_ns - t.stolen_ns);
    let waited_ns = thread_sum(reports, pid, tid, |t| t.runqueue_ns);
    let exec_ns = after.exec_ns - before.exec_ns;
    let run_delay_ns = after.run_delay_ns - before.run_delay_ns;
    note(&format!(
        "thread {tid}: on CPU {exec_ns} ns by schedstat, {on_cpu_ns} ns by loadtrace; \
         run-queue wait {run_delay_ns} ns by schedstat, {waited_ns} ns by loadtrace"
    ));
    let floor_ns = sleeper_floor_ns();
    let diff_ns = on_cpu_ns.abs_diff(exec_ns);
    ensure!(
        diff_ns as f64 <= floor_ns,
        "thread {tid}: loadtrace saw {on_cpu_ns} ns on CPU, schedstat {exec_ns} ns \
         (off by {diff_ns} ns, allowed {floor_ns:.0})"
    );
    ensure!(
        waited_ns as f64 <= run_delay_ns as f64 + floor_ns,
        "thread {tid}: loadtrace saw {waited_ns} ns of run-queue wait, more than schedstat's \
         {run_delay_ns} ns (allowed {floor_ns:.0} over)"
    );
    Ok(())
}

/// What a handful of wakeups may differ by. Under emulation the kernel's run-queue clock
/// lags each wakeup by up to a millisecond (skipped clock updates), which schedstat charges
/// as CPU time rather than wait.
fn sleeper_floor_ns() -> f64 {
    if in_vm() { 5e6 } else { 1e6 }
}

fn schedstats(pid: u32, tids: &[u32]) -> Result<BTreeMap<u32, Schedstat>> {
    tids.iter()
        .map(|&tid| Ok((tid, procfs::schedstat(pid, tid)?)))
        .collect()
}

/// A thread's on-CPU plus run-queue time summed over all reports, from thread_detail; less
/// steal time, which schedstat's CPU time leaves out (its run-queue wait keeps it).
fn traced_runnable_ns(reports: &[Received], pid: u32, tid: u32) -> u64 {
    thread_sum(reports, pid, tid, |t| {
        t.on_cpu_ns - t.stolen_ns + t.runqueue_ns
    })
}

/// A figure of one thread summed over all reports, from thread_detail.
fn thread_sum(reports: &[Received], pid: u32, tid: u32, figure: impl Fn(&Thread) -> u64) -> u64 {
    reports
        .iter()
        .filter_map(|r| r.report.process(pid)?.thread(tid))
        .map(figure)
        .sum()
}

/// Within 2%, or the few-wakeup floor should the thread hardly have run.
fn check_runnable(tid: u32, traced_ns: u64, kernel_ns: u64) -> Result<()> {
    let tolerance_ns = (kernel_ns as f64 * 0.02).max(sleeper_floor_ns());
    let diff_ns = (traced_ns as f64 - kernel_ns as f64).abs();
    ensure!(
        diff_ns <= tolerance_ns,
        "thread {tid}: loadtrace saw {traced_ns} ns runnable, schedstat {kernel_ns} ns \
         (off by {diff_ns:.0} ns, allowed {tolerance_ns:.0})"
    );
    Ok(())
}

/// The reconstructed 1-minute average against /proc/loadavg where the kernel's own samples
/// swing most: a fork storm, whose short-lived children are there at one sample and gone at
/// the next, beside a spinning thread. Fed with loadtrace's counts at the kernel's sample
/// instants, the recurrence must follow the kernel's figure report by report; fed with the
/// time average it would be off by the sampling noise (shown, not checked).
#[test]
fn reconstructed_load_tracks_kernel() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let _spinner = Workload::spawn(&workload_bin!(), &["spin", "--threads", "1", "--secs", "0"])?;
    // Children of some 0.6 ms: present or not at a sample at random, so the kernel's samples
    // swing, and many forks and exits fall between one CPU's count and the other's.
    let iters = child_iters().to_string();
    let _forks = Workload::spawn(
        &workload_bin!(),
        &["forks", "--count", "100000000", "--child-iters", &iters],
    )?;
    // Two minutes of samples: one sample counted one thread off early in a 70-s run was 0.05
    // of mean absolute difference on its own (under emulation, one run in three).
    let loadtrace = Loadtrace::start(Options::every(1).top(1).duration(130))?;
    let reports = loadtrace.wait_exit()?;
    let last = &reports.last().context("no report")?.report;
    // From the first report after a counted sample: before it, the time average stands in.
    let sampled: Vec<&Received> = reports
        .iter()
        .filter(|r| r.report.counters.load_samples_counted > 0)
        .collect();
    let mean_abs = |f: &dyn Fn(&Received) -> f64| {
        sampled
            .iter()
            .map(|r| (f(r) - r.report.loadavg[0]).abs())
            .sum::<f64>()
            / sampled.len().max(1) as f64
    };
    let kernel_mean =
        sampled.iter().map(|r| r.report.loadavg[0]).sum::<f64>() / sampled.len().max(1) as f64;
    let sampled_err = mean_abs(&|r| r.report.load.reconstructed_1m);
    let time_average_err = mean_abs(&|r| r.report.load.time_average_1m);
    note(&format!(
        "1-minute load over {} reports: kernel mean {kernel_mean:.3}; mean absolute difference \
         {sampled_err:.4} from samples, {time_average_err:.4} from the time average; {} samples \
         counted, {} missed",
        sampled.len(),
        last.counters.load_samples_counted,
        last.counters.load_samples_missed
    ));
    ensure!(
        last.counters.load_samples_counted >= 20,
        "only {} of the kernel's load samples counted in 130 s",
        last.counters.load_samples_counted
    );
    ensure!(
        last.counters.load_samples_missed == 0,
        "{} load samples missed",
        last.counters.load_samples_missed
    );
    // Issue 5's target, 5%, and /proc/loadavg's two decimals. One sample counted one thread
    // off moves the average by 0.08 for a minute.
    let allowed = 0.01 + 0.05 * kernel_mean;
    check::near(
        "mean absolute difference from /proc/loadavg's 1-minute average",
        sampled_err,
        0.0,
        allowed,
    )
    .with_context(|| trajectory(&reports))?;
    check_sample_records(&reports).with_context(|| trajectory(&reports))
}

/// The samples each report lists are the kernel's: one per fold, on the kernel's 5-second
/// grid, every one counted, and what each folded in is the count the kernel folded in,
/// recovered from the 1-minute averages read just before and just after its fold.
fn check_sample_records(reports: &[Received]) -> Result<()> {
    let listed: Vec<_> = reports.iter().flat_map(|r| &r.report.samples).collect();
    let last = &reports.last().context("no report")?.report;
    ensure!(
        listed.len() as u64 == last.counters.load_samples_counted,
        "{} samples listed, {} counted",
        listed.len(),
        last.counters.load_samples_counted
    );
    for s in &listed {
        ensure!(!s.late, "a late sample listed while none was missed: {s:?}");
        ensure!(
            i64::from(s.folded) == (i64::from(s.counted) + s.fold_lag).max(0),
            "folded is not the count with its lag: {s:?}"
        );
    }
    // LOAD_FREQ is 5 s and a tick: 5.001 to 5.01 s whatever the kernel's HZ. The grid the
    // instants are placed on is refined as earlier sightings of jiffies come in, so an
    // instant can move by up to a tick (10 ms at HZ=100) against the one before.
    for pair in listed.windows(2) {
        let gap = pair[1].time - pair[0].time;
        let periods = (gap / 5.0).round();
        ensure!(
            periods >= 1.0 && (gap - 5.0055 * periods).abs() <= 0.0055 * periods + 0.01,
            "samples {gap:.4} s apart: not on the kernel's 5-second grid"
        );
    }
    // Reports every second: between two of them the kernel folded at most one sample, the
    // one the later report lists (a report waits for the count of a sample already folded).
    let folds = samples::folds_in(reports, |r| r.report.loadavg[0]);
    let compared = folds.len();
    let off: Vec<String> = folds
        .iter()
        .map(|&(i, kernel)| (reports[i].report.samples[0], kernel))
        .filter(|(sample, kernel)| kernel.round() as i64 != i64::from(sample.folded))
        .map(|(sample, kernel)| format!("{sample:?} where the kernel folded {kernel:.2}"))
        .collect();
    note(&format!(
        "samples folded: {} of {compared} as the kernel folded them; {} moves between a CPU \
         that had counted and one that had not",
        compared - off.len(),
        last.counters.sample_migrations
    ));
    ensure!(
        compared + 1 >= listed.len(),
        "only {compared} of {} samples could be set beside the kernel's",
        listed.len()
    );
    // One sample in a few hundred has come out one off (ACCURACY.md); more than two in two
    // minutes is a regression.
    ensure!(
        off.len() <= 2,
        "{} of {compared} samples folded other than the kernel's: {}",
        off.len(),
        off.join("; ")
    );
    Ok(())
}

/// Every report's load, reconstruction and kernel average: where they parted shows
/// whether the window averages or the recurrence went wrong.
fn trajectory(reports: &[Received]) -> String {
    let mut lines =
        vec!["interval_s  total  reconstructed_1m  time_average_1m  loadavg_1m".to_string()];
    for r in reports {
        let (report, load) = (&r.report, &r.report.load);
        lines.push(format!(
            "{:10.3}  {:5.2}  {:16.3}  {:15.3}  {:10.2}",
            report.interval_s,
            load.total,
            load.reconstructed_1m,
            load.time_average_1m,
            report.loadavg[0]
        ));
    }
    lines.join("\n")
}

/// The kernel's own count of running tasks (`nr_running`, which on 6.12+ also holds sleepers
/// the fair class keeps queued), read every 3 ms by a real-time sampler, against loadtrace's
/// figure for the same: runnable plus asleep-but-queued, for the whole box over the same
/// seconds, the sampler's own share taken out (it counts itself out). The CPUs are kept busy
/// by spinning threads, among which the box's sleepy threads are the ones the kernel may
/// keep queued; none of it may be counted for longer than the kernel counts it.
#[test]
fn running_count_matches_the_kernels_nr_running() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    const SECS: u64 = 10;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.to_string();
    let _spinners = Workload::spawn(&workload_bin!(), &["spin", "--threads", &threads])?;
    let _sleepers = Workload::spawn(&workload_bin!(), &["sleep", "--threads", "8"])?;
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_first_report()?;
    let secs = SECS.to_string();
    let started = SystemTime::now();
    let sampler = Workload::spawn(
        &workload_bin!(),
        &["--fifo", "sample-running", "--secs", &secs],
    )?;
    let sampler_pid = sampler.pid();
    let result = sampler.wait_exit(patience(Duration::from_secs(SECS * 6)))?;
    let ended = SystemTime::now();
    let reports = loadtrace.stop()?;

    let within = reports_within(&reports, started, ended);
    ensure!(
        within.len() as u64 >= SECS / 2,
        "only {} one-second reports within the {SECS} s of sampling",
        within.len()
    );
    let seconds: f64 = within.iter().map(|r| r.interval_s).sum();
    let traced = within
        .iter()
        .map(|r| r.running_seconds_except(sampler_pid))
        .sum::<f64>()
        / seconds;
    let queued = within
        .iter()
        .map(|r| r.load.queued_asleep * r.interval_s)
        .sum::<f64>()
        / seconds;
    let (samples, kernel) = punctual_readings(&result)?;
    note(&format!(
        "nr_running: kernel {kernel:.3} ({samples} readings kept; by lateness {}), loadtrace \
         {traced:.3} over {seconds:.1} s, of which asleep but queued {queued:.3}",
        result["by_lateness"]
    ));
    ensure!(samples >= 500, "only {samples} readings of /proc/loadavg");
    // Under emulation (6.1 and 6.12 VMs) the readings run up to 5% above loadtrace's count
    // even here (2.160 against 2.059 in one 6.1 run), and 11-13% in a fork storm, while the
    // run queues' own integral of the same count agrees with loadtrace's to 0.5% (test
    // below): an emulated CPU lets the sampler read at moments that are no fair draw of
    // time (the later a reading, the more tasks it sees; ACCURACY.md). On the host the two
    // agree within 1%. The queued sleepers this test is for are 0.3-0.8 of a load of 2.
    let tolerance = if in_vm() { 0.08 } else { 0.05 };
    check::near(
        "running tasks (runnable + asleep but queued)",
        traced,
        kernel,
        (tolerance * kernel).max(0.05),
    )
}

/// The sampler's readings taken within 100 us of their timer, where there are 500 of them,
/// else all: a reading held back saw more tasks (host: 2.05 on time, 2.28-2.53 over 1 ms
/// late, in one run), so the late ones are no fair draw of time. One host run over all
/// readings came to 2.187 against loadtrace's 2.061 (its bins were not kept).
fn punctual_readings(result: &serde_json::Value) -> Result<(u64, f64)> {
    let bins = result["by_lateness"].as_array().context("no by_lateness")?;
    let on_time = bins.first().context("no readings binned")?;
    let samples = on_time["samples"].as_u64().context("no samples")?;
    if samples >= 500 {
        let mean = on_time["mean_others"].as_f64().context("no mean_others")?;
        return Ok((samples, mean));
    }
    Ok((
        result["samples"].as_u64().context("no samples")?,
        result["mean_others"].as_f64().context("no mean_others")?,
    ))
}

/// The box's runnable time, every thread's, children that came and went included, against
/// the run queues' own integral of it (/proc/schedstat's per-CPU time run plus time waited)
/// over the same reports, in a fork storm. Needs a kernel with scheduler statistics
/// (CONFIG_SCHEDSTATS: the pinned Debian kernels) that dequeues sleepers at once (before
/// 6.12; later, the queues' wait totals also gather time of threads asleep): the 6.1 VM.
#[test]
fn box_runnable_time_matches_the_run_queues_totals() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    if procfs::cpu_sched_totals()?.is_none() || procfs::fair_class_delays_dequeue()? {
        note("run-queue totals: not kept by this kernel, or not an integral of nr_running here");
        return Ok(());
    }
    const REPORTS: usize = 8;
    let iters = child_iters().to_string();
    let _storm = Workload::spawn(
        &workload_bin!(),
        &["forks", "--count", "1000000000", "--child-iters", &iters],
    )?;
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_first_report()?;
    loadtrace.wait_for_reports(REPORTS + 2)?;
    let reports = loadtrace.stop()?;
    // The first report holds the start-up; the span is the next REPORTS.
    let (start, span) = (&reports[1], &reports[2..REPORTS + 2]);
    let (traced, kernel) =
        runnable_against_run_queues(start, span)?.context("/proc/schedstat went away")?;
    note(&format!(
        "runnable tasks over {REPORTS} reports of a fork storm: loadtrace {traced:.4}, run \
         queues {kernel:.4}"
    ));
    // The run queues' totals start each wait at the run-queue clock read before the enqueue
    // and end each run at the one read before the dequeue; loadtrace counts from the moment
    // `nr_running` rises to the moment it drops, after each. Under emulation a fork's or a
    // wakeup's enqueue takes tens of microseconds, so loadtrace's count comes out up to 1.5%
    // below (8 s of storm, four runs: -1.50%, -0.98%, +0.37%, -1.05%; before loadtrace
    // followed `nr_running`'s changes, 0.02-0.5%).
    check::near_fraction("runnable tasks (average count)", traced, kernel, 0.03)
}
