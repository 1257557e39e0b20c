//! Assertions that say what was measured, what was expected, and by how much it missed.

use anyhow::{Result, ensure};

use crate::loadtrace::Received;
use crate::report::{Disk, Latency, Report};

/// Fails unless `actual` is within `tolerance` of `expected`.
pub fn near(what: &str, actual: f64, expected: f64, tolerance: f64) -> Result<()> {
    ensure!(
        (actual - expected).abs() <= tolerance,
        "{what} is {actual:.4}, expected {expected:.4} ± {tolerance}"
    );
    Ok(())
}

/// Fails unless `actual` is within `fraction` (0.02 = 2%) of `expected`.
pub fn near_fraction(what: &str, actual: f64, expected: f64, fraction: f64) -> Result<()> {
    ensure!(
        (actual - expected).abs() <= fraction * expected.abs(),
        "{what} is {actual:.6}, expected {expected:.6} ± {}% (off by {:.2}%)",
        fraction * 100.0,
        (actual - expected) / expected * 100.0
    );
    Ok(())
}

/// The reports fit for rate assertions: all but the first, whose interval holds
/// loadtrace's own start-up and tasks it met mid-way. Fails when none is left, so a
/// test cannot pass by checking nothing.
pub fn steady(reports: &[Received]) -> Result<&[Received]> {
    ensure!(
        reports.len() >= 2,
        "only {} report(s), need at least 2",
        reports.len()
    );
    Ok(&reports[1..])
}

/// How far apart two figures that should be equal may print: the JSON carries f64s, so
/// only rounding in the last places separates a correct split from its total.
const SPLIT_EPSILON: f64 = 1e-6;

/// Fails unless a report's disk figures hang together: D splits into I/O wait and the
/// rest, for the box and for every process, and each process's devices add up to its
/// disk totals.
pub fn disk_consistent(report: &Report) -> Result<()> {
    let load = &report.load;
    split_adds_up("the box", load.uninterruptible, load.io_wait, load.other_d)?;
    for p in &report.processes {
        let who = format!("{} [{}]", p.comm, p.pid);
        split_adds_up(&who, p.uninterruptible, p.io_wait, p.other_d)?;
        devices_add_up(&who, &p.disk)?;
        latency_ordered(&who, "all devices", p.disk.ops, &p.disk.latency_ms)?;
        for d in &p.disk.devices {
            latency_ordered(&who, &d.name, d.ops, &d.latency_ms)?;
        }
    }
    Ok(())
}

fn split_adds_up(who: &str, d: f64, io_wait: f64, other_d: f64) -> Result<()> {
    ensure!(
        io_wait >= 0.0 && other_d >= 0.0 && (io_wait + other_d - d).abs() <= SPLIT_EPSILON,
        "{who}: io_wait {io_wait} + other_d {other_d} is not its uninterruptible {d}"
    );
    Ok(())
}

fn devices_add_up(who: &str, disk: &Disk) -> Result<()> {
    let ops: u64 = disk.devices.iter().map(|d| d.ops).sum();
    let bytes: u64 = disk.devices.iter().map(|d| d.bytes).sum();
    ensure!(
        ops == disk.ops && bytes == disk.bytes,
        "{who}: its devices hold {ops} requests of {bytes} bytes, its disk totals {} of {}",
        disk.ops,
        disk.bytes
    );
    ensure!(
        disk.read_ops + disk.write_ops <= disk.ops,
        "{who}: {} reads and {} writes, but only {} requests",
        disk.read_ops,
        disk.write_ops,
        disk.ops
    );
    Ok(())
}

/// Percentiles may come from histogram buckets, so only orderings every method keeps are
/// checked: the median is no more than the 99th percentile, the mean no more than the max.
fn latency_ordered(who: &str, device: &str, ops: u64, l: &Latency) -> Result<()> {
    if ops == 0 {
        return Ok(());
    }
    ensure!(
        l.avg > 0.0 && l.p50 <= l.p99 && l.avg <= l.max + SPLIT_EPSILON,
        "{who} on {device}: latency_ms {l:?} over {ops} requests is out of order"
    );
    Ok(())
}
