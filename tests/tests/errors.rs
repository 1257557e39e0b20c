//! Bad situations get a sentence saying what is wrong and a non-zero exit, never a panic.

use std::{
    os::unix::process::CommandExt as _,
    process::{Command, Output},
};

use anyhow::{Result, ensure};
use loadtrace_tests::{loadtrace_bin, require_root};

fn run(cmd: &mut Command) -> Result<(Output, String)> {
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !stderr.contains("panicked"),
        "loadtrace panicked instead of explaining: {stderr}"
    );
    Ok((out, stderr))
}

#[test]
fn unprivileged_run_names_the_missing_capabilities() -> Result<()> {
    // Dropping to an ordinary user takes root.
    if !require_root() {
        return Ok(());
    }
    let mut cmd = Command::new(loadtrace_bin());
    cmd.args(["--duration", "1"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (out, stderr) = run(&mut cmd)?;
    ensure!(
        !out.status.success(),
        "loadtrace succeeded without privileges"
    );
    ensure!(
        stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON") && stderr.contains("root"),
        "the message does not say what is missing: {stderr}"
    );
    Ok(())
}

#[test]
fn a_pid_that_does_not_exist_is_a_clear_error() -> Result<()> {
    // pid_max is at most 2^22, so this pid cannot exist.
    let (out, stderr) = run(Command::new(loadtrace_bin()).args(["--pid", "4194305"]))?;
    ensure!(!out.status.success(), "loadtrace accepted a missing pid");
    ensure!(
        stderr.contains("no process with PID 4194305"),
        "unexpected message: {stderr}"
    );
    Ok(())
}

#[test]
fn nonsense_options_are_refused() -> Result<()> {
    let (out, stderr) = run(Command::new(loadtrace_bin()).args(["--interval", "0"]))?;
    ensure!(!out.status.success(), "an interval of 0 was accepted");
    ensure!(
        stderr.contains("--interval"),
        "unexpected message: {stderr}"
    );
    Ok(())
}
