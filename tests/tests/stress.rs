//! Under the densest event stream two tasks can make, loadtrace loses nothing.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use loadtrace_tests::{
    Loadtrace, Options, Workload, check, note, patience, require_root, workload_bin,
};

#[test]
fn pingpong_loses_nothing() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let loadtrace = Loadtrace::start(Options::every(1).top(5))?;
    loadtrace.wait_for_first_report()?;
    let pingpong = Workload::spawn(&workload_bin!(), &["pingpong", "--secs", "5", "--cpu", "0"])?;
    let result = pingpong.wait_exit(patience(Duration::from_secs(60)))?;
    loadtrace.wait_for_report_starting_after(SystemTime::now())?;
    let reports = loadtrace.stop()?;

    for (i, r) in reports.iter().enumerate() {
        ensure!(
            r.report.lost == 0,
            "report {}: {} records lost",
            i + 1,
            r.report.lost
        );
    }
    // Both ends of the span fall in quiet intervals (before and after the ping-pong),
    // so the moment each count was taken hardly matters.
    let (first, last) = (
        reports.first().context("no report")?,
        reports.last().context("no report")?,
    );
    let traced = last
        .report
        .counters
        .switches
        .checked_sub(first.report.counters.switches);
    let traced = traced.context("counters.switches went backwards")?;
    let kernel = last.ctxt - first.ctxt;
    let round_trips = result["round_trips"].as_u64().context("no round_trips")?;
    note(&format!(
        "pingpong: {round_trips} round trips, {:.0} ns each; switches: loadtrace {traced}, /proc/stat {kernel}",
        result["ns_per_round_trip"].as_f64().unwrap_or(f64::NAN)
    ));
    // Each round trip is two switches on CPU 0: the span must hold them all.
    ensure!(
        kernel >= 2 * round_trips,
        "the span holds {kernel} switches, fewer than the ping-pong made"
    );
    check::near_fraction(
        "switches seen by loadtrace",
        traced as f64,
        kernel as f64,
        0.01,
    )
}
