//! Who carries the load: each kind of task shows up in the state it is really in, and
//! tasks that do not count toward the load average show nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use loadtrace_tests::procfs::{self, Schedstat, StateWatch, StatesSeen};
use loadtrace_tests::{
    Loadtrace, Options, Report, Workload, check, note, patience, require_root, scratch_path,
    workload_bin,
};

#[test]
fn three_spinning_threads() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let spinner = Workload::spawn(&workload_bin!(), &["spin", "--threads", "3", "--secs", "0"])?;
    let pid = spinner.pid();
    let kernel_before = (Instant::now(), procfs::process_schedstat(pid)?);
    let loadtrace = Loadtrace::start(Options::every(2).top(10))?;
    loadtrace.wait_for_reports(4)?;
    let reports = loadtrace.stop()?;
    let kernel = kernel_view(pid, kernel_before)?;

    for (i, received) in check::steady(&reports)?.iter().enumerate() {
        check_spinners(&received.report, i + 2, pid).with_context(|| kernel.clone())?;
    }
    Ok(())
}

/// The workload comes first, with three threads' worth of load: as many on a CPU as
/// there are CPUs, the rest queued.
fn check_spinners(report: &Report, n: usize, pid: u32) -> Result<()> {
    let first = report
        .processes
        .first()
        .with_context(|| format!("report {n} lists no process"))?;
    ensure!(
        first.pid == pid,
        "report {n}: {} (pid {}, load {:.2}) comes first, not the spinning workload (pid {pid})",
        first.comm,
        first.pid,
        first.load
    );
    let on_cpu = 3f64.min(f64::from(report.cpus));
    check::near(&format!("report {n}: load"), first.load, 3.0, 0.3)?;
    check::near(&format!("report {n}: on_cpu"), first.on_cpu, on_cpu, 0.3)?;
    check::near(
        &format!("report {n}: runqueue"),
        first.runqueue,
        3.0 - on_cpu,
        0.3,
    )
}

/// The kernel's own averages for `pid` since `before`, to tell on a failure whether
/// loadtrace erred or the machine was busy with something else.
fn kernel_view(pid: u32, (since, before): (Instant, Schedstat)) -> Result<String> {
    let after = procfs::process_schedstat(pid)?;
    let seconds = since.elapsed().as_secs_f64() * 1e9;
    Ok(format!(
        "over the whole run, schedstat gives the workload on_cpu {:.2}, runqueue {:.2}",
        (after.exec_ns - before.exec_ns) as f64 / seconds,
        (after.run_delay_ns - before.run_delay_ns) as f64 / seconds
    ))
}

#[test]
fn sleeping_process_contributes_nothing() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let sleeper = Workload::spawn(&workload_bin!(), &["sleep", "--secs", "0"])?;
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_reports(4)?;
    let reports = loadtrace.stop()?;
    ensure!(
        procfs::task_stat(sleeper.pid())?.state == 'S',
        "the sleeper is not asleep, so the test proves nothing"
    );

    for (i, received) in check::steady(&reports)?.iter().enumerate() {
        let report = &received.report;
        // Something always runs (loadtrace itself): an empty list means a broken --top 0.
        ensure!(
            !report.processes.is_empty(),
            "report {} lists no process with --top 0",
            i + 2
        );
        if let Some(p) = report.process(sleeper.pid()) {
            ensure!(
                p.load < 0.01,
                "report {}: the sleeping process has load {:.4}",
                i + 2,
                p.load
            );
        }
    }
    Ok(())
}

#[test]
fn idle_kernel_threads_contribute_nothing() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let idle_before = procfs::kernel_threads_in_state('I')?;
    let watch = StateWatch::start(idle_before.clone());
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_reports(4)?;
    let reports = loadtrace.stop()?;
    let seen = watch.finish()?;
    let idle_after = procfs::kernel_threads_in_state('I')?;
    let idle = idle_throughout(&idle_before, &idle_after, &seen);
    ensure!(!idle.is_empty(), "no kernel thread stayed idle to check");

    let mut checked = 0;
    for (i, received) in reports.iter().enumerate() {
        for p in received
            .report
            .processes
            .iter()
            .filter(|p| idle.contains(&p.pid))
        {
            checked += 1;
            ensure!(
                p.uninterruptible < 0.001,
                "report {}: idle kernel thread {} (pid {}) shows uninterruptible {:.4}",
                i + 1,
                p.comm,
                p.pid,
                p.uninterruptible
            );
        }
    }
    // Idle kernel threads wake (and sleep again) all the time; if none showed up, the
    // loop above checked nothing.
    ensure!(
        checked > 0,
        "none of the {} idle kernel threads appeared in any report",
        idle.len()
    );
    let went_d: Vec<_> = idle_before
        .intersection(&idle_after)
        .filter(|p| !idle.contains(p))
        .collect();
    note(&format!(
        "idle kernel threads: {} idle throughout ({} sweeps of /proc), {checked} appearances \
         checked; left out for a real D sleep: {went_d:?}",
        idle.len(),
        seen.sweeps
    ));
    Ok(())
}

/// Kernel threads in state I (TASK_IDLE: uninterruptible but not counted) before and
/// after the run and never seen in D during it. A kworker is idle between work items,
/// but a work item may block in a real D sleep (waiting for I/O, synchronize_rcu), and
/// that does count: the kernel's own view of the state tells the two apart.
fn idle_throughout(
    before: &BTreeSet<u32>,
    after: &BTreeSet<u32>,
    seen: &StatesSeen,
) -> BTreeSet<u32> {
    let was_in_d = |pid: &u32| {
        seen.states
            .get(pid)
            .is_some_and(|states| states.contains(&'D'))
    };
    before
        .intersection(after)
        .filter(|pid| !was_in_d(pid))
        .copied()
        .collect()
}

#[test]
fn odirect_io_shows_d_time() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let scratch = scratch_path()?;
    let scratch = scratch.to_str().context("scratch path is not UTF-8")?;
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_first_report()?;
    let spawned = Instant::now();
    let writer = Workload::spawn(
        &workload_bin!(),
        &["odirect", "--path", scratch, "--count", "2000"],
    )?;
    let pid = writer.pid();
    let result = writer.wait_exit(patience(Duration::from_secs(120)))?;
    let lifetime_s = spawned.elapsed().as_secs_f64();
    loadtrace.wait_for_report_starting_after(SystemTime::now())?;
    let reports = loadtrace.stop()?;

    let per_interval: Vec<f64> = reports
        .iter()
        .map(|r| r.report.process(pid).map_or(0.0, |p| p.uninterruptible))
        .collect();
    let d_seconds: f64 = reports
        .iter()
        .map(|r| r.report.seconds_of(pid, |p| p.uninterruptible))
        .sum();
    note(&format!(
        "odirect: 2000 writes to {scratch} in {:.3} s; loadtrace: {d_seconds:.3} s in D, per interval {per_interval:.3?}",
        result["elapsed_ns"].as_f64().unwrap_or(f64::NAN) / 1e9
    ));
    ensure!(
        per_interval.iter().any(|&d| d > 0.05),
        "synchronous O_DIRECT writes never showed uninterruptible > 0.05: {per_interval:.4?}"
    );
    // One thread cannot sleep longer than it lived.
    ensure!(
        d_seconds <= lifetime_s,
        "{d_seconds:.3} s of D time for a single thread that lived {lifetime_s:.3} s"
    );
    Ok(())
}

#[test]
fn vfork_parent_shows_d_time() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let loadtrace = Loadtrace::start(Options::every(1).top(0))?;
    loadtrace.wait_for_first_report()?;
    let parent = Workload::spawn(&workload_bin!(), &["vfork-d", "--secs", "3"])?;
    let pid = parent.pid();
    let result = parent.wait_exit(patience(Duration::from_secs(60)))?;
    loadtrace.wait_for_report_starting_after(SystemTime::now())?;
    let reports = loadtrace.stop()?;

    // The parent waits for its vfork child in an uninterruptible sleep that is not
    // I/O; the child sleeps interruptibly and counts for nothing.
    let waited_s = result["elapsed_ns"].as_f64().context("no elapsed_ns")? / 1e9;
    let child = u32::try_from(result["child"].as_u64().context("no child pid")?)?;
    let parent_d: f64 = reports
        .iter()
        .map(|r| r.report.seconds_of(pid, |p| p.uninterruptible))
        .sum();
    let child_load: f64 = reports
        .iter()
        .map(|r| r.report.seconds_of(child, |p| p.load))
        .sum();
    note(&format!(
        "vfork-d: parent waited {waited_s:.3} s; loadtrace: parent {parent_d:.3} s in D, child load {child_load:.4} s"
    ));
    check::near_fraction("the vfork parent's D time (s)", parent_d, waited_s, 0.05)?;
    // Its few runnable moments (start, wake-up, exit) may wait behind other work, but
    // its sleep must not count: that would be the whole wait.
    ensure!(
        child_load < 0.1 * waited_s,
        "the sleeping vfork child carried {child_load:.4} s of load in {waited_s:.3} s"
    );
    Ok(())
}
