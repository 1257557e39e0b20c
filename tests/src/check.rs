//! Assertions that say what was measured, what was expected, and by how much it missed.

use anyhow::{Result, ensure};

use crate::loadtrace::Received;

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
