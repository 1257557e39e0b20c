//! What std's `Child` lacks: waiting with a timeout, and sending a chosen signal.

use std::io;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!("pid {} still running after {timeout:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn signal(child: &Child, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own unreaped child,
    // so it cannot name some other process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("signal {signal} to pid {pid}"));
    }
    Ok(())
}

/// Ends a child that is still running, for Drop: a failed test must not leave a
/// spinning workload or an attached tracer behind to disturb the next one.
pub(crate) fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}
