//! Boots a kernel under QEMU and judges the run from its serial console.

use std::{
    collections::VecDeque,
    fs,
    io::{BufReader, Write as _},
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};

use super::initramfs::{FAILED_MARKER, INIT_BANNER, RESULT_MARKER};

/// How many console lines a failure report repeats.
const TAIL_LINES: usize = 40;
/// How many lines of each failed test's own output a failure report repeats: enough for
/// its notes and assertion message, not its backtrace.
const FAILURE_LINES: usize = 30;
/// What `timeout` exits with when it had to stop QEMU.
const TIMED_OUT: i32 = 124;

pub struct Boot<'a> {
    /// Prefixes the streamed console lines, so two kernels' output stays apart.
    pub label: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub disk: &'a Path,
    pub timeout: Duration,
    pub console_log: &'a Path,
}

pub struct Report {
    /// From starting QEMU to the first line of `/init`; `None` if `/init` never spoke.
    pub boot_time: Option<Duration>,
    /// Whether the guest ran the tests and they all passed.
    pub result: Result<()>,
}

/// Boots the guest and waits for it to power off, streaming its console to stdout and the
/// log file as it comes, so a slow run can be followed and a hung one read.
pub fn boot(b: &Boot) -> Result<Report> {
    let log = fs::File::create(b.console_log)
        .with_context(|| format!("creating {}", b.console_log.display()))?;
    let mut cmd = qemu_command(b);
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().context("QEMU's stdout")?;
    // On a read error QEMU still gets waited for: the timeout bounds it either way.
    let console = follow_console(BufReader::new(stdout), log, b, started);
    let status = child.wait().context("waiting for QEMU")?;
    let console = console?;
    let total = started.elapsed();
    let boot_time = console.boot_time;
    let boot = match boot_time {
        Some(t) => format!("/init started after {:.1}s", t.as_secs_f64()),
        None => "/init never started".to_string(),
    };
    eprintln!(
        "xtask: kernel {}: {boot}; the guest ran {:.1}s in all",
        b.label,
        total.as_secs_f64()
    );
    Ok(Report {
        boot_time,
        result: console.verdict(status, b.timeout),
    })
}

/// The console on stdio, no graphics and no default devices; `panic=-1` plus `-no-reboot`
/// turns a kernel panic into QEMU exiting instead of a guest hanging until the timeout.
fn qemu_command(b: &Boot) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=10")
        .arg(b.timeout.as_secs().to_string())
        .arg("qemu-system-x86_64")
        // TCG: KVM is not usable on the CI machines, and TCG behaves the same everywhere.
        .args("-machine q35 -accel tcg -smp 2 -m 1G".split(' '))
        .args("-nodefaults -display none -serial stdio -no-reboot".split(' '))
        .arg("-kernel")
        .arg(b.kernel)
        .arg("-initrd")
        .arg(b.initrd)
        // schedstats and delayacct switch on the kernel's own per-task accounting, which the
        // tests compare loadtrace against. tsc=reliable: the emulated CPU (vendor AMD, no
        // constant-TSC flag) would otherwise have its TSC declared unsynchronized, and the
        // clock would fall back to the HPET, whose every read is an emulated device access
        // that waits on QEMU's global lock; on a busy host such reads came back milliseconds
        // late, and loadtrace's timestamps with them (the kernel's scheduler clock reads the
        // TSC either way).
        .args([
            "-append",
            "console=ttyS0 panic=-1 schedstats=enable delayacct tsc=reliable quiet",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", b.disk.display()))
        // With a terminal on stdin QEMU would put it in raw mode and leave it so on a kill.
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

fn follow_console(
    stdout: impl std::io::BufRead,
    mut log: fs::File,
    b: &Boot,
    started: Instant,
) -> Result<Console> {
    let log_path = b.console_log;
    let mut console = Console::default();
    for line in console_lines(stdout) {
        let line = line.context("reading the guest console")?;
        println!("[{}] {line}", b.label);
        writeln!(log, "{line}").with_context(|| format!("writing {}", log_path.display()))?;
        console.observe(line, started.elapsed());
    }
    Ok(console)
}

/// Lines without the serial console's `\r`, and lossy, since a dying guest may print
/// anything.
fn console_lines(
    mut input: impl std::io::BufRead,
) -> impl Iterator<Item = std::io::Result<String>> {
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                buf.retain(|&c| c != b'\r' && c != b'\n');
                Some(Ok(String::from_utf8_lossy(&buf).into_owned()))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// What the console said that matters for the verdict.
#[derive(Default)]
struct Console {
    boot_time: Option<Duration>,
    /// The text after the result marker, if `/init` got that far.
    result: Option<String>,
    /// The test executables that failed, each with its exit status.
    failed: Vec<String>,
    panicked: bool,
    /// Each failed test's captured output up to its backtrace, as libtest prints it under
    /// `---- name stdout ----`: the reason, which the tail has usually scrolled past.
    failures: Vec<String>,
    /// Lines still to keep of the failure being read, if one is.
    failure_budget: usize,
    tail: VecDeque<String>,
}

impl Console {
    fn observe(&mut self, line: String, at: Duration) {
        if self.boot_time.is_none() && line.contains(INIT_BANNER) {
            self.boot_time = Some(at);
        }
        if let Some(result) = after(&line, RESULT_MARKER) {
            self.result = Some(result);
        }
        if let Some(failed) = after(&line, FAILED_MARKER) {
            self.failed.push(failed);
        }
        self.panicked |= line.contains("Kernel panic - not syncing");
        self.keep_failure(&line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn keep_failure(&mut self, line: &str) {
        let trimmed = line.trim();
        if trimmed.starts_with("---- ") && trimmed.ends_with(" stdout ----") {
            self.failure_budget = FAILURE_LINES;
        } else if trimmed.eq_ignore_ascii_case("stack backtrace:") || trimmed == "failures:" {
            self.failure_budget = 0;
        }
        if self.failure_budget > 0 {
            self.failures.push(line.to_string());
            self.failure_budget -= 1;
        }
    }

    /// Passes only on a zero result marker from a guest that did not panic; anything else
    /// fails with the reason and the end of the console.
    fn verdict(&self, status: ExitStatus, timeout: Duration) -> Result<()> {
        let problem = if status.code() == Some(TIMED_OUT) {
            format!(
                "the guest did not finish within {}s (LOADTRACE_VM_TIMEOUT_SECS)",
                timeout.as_secs()
            )
        } else if self.panicked {
            "the guest kernel panicked".to_string()
        } else {
            match self.result.as_deref() {
                Some("0") => return Ok(()),
                Some(code) if self.failed.is_empty() => format!("tests failed (result {code})"),
                Some(code) => format!("tests failed (result {code}): {}", self.failed.join(", ")),
                None => format!("the guest stopped ({status}) without reporting a result"),
            }
        };
        if self.tail.is_empty() {
            return Err(anyhow!("{problem}; the console stayed silent"));
        }
        let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        let failures = if self.failures.is_empty() {
            String::new()
        } else {
            format!("; failed tests said:\n{}\n", self.failures.join("\n"))
        };
        Err(anyhow!(
            "{problem}{failures}; last console lines:\n{}",
            tail.join("\n")
        ))
    }
}

/// The rest of the line after `marker`. Kernel messages can share a line with the marker, so
/// it is searched for rather than expected at the start.
fn after(line: &str, marker: &str) -> Option<String> {
    let pos = line.find(marker)?;
    Some(line[pos + marker.len()..].trim().to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn console(lines: &[&str]) -> Console {
        let mut c = Console::default();
        for (i, l) in lines.iter().enumerate() {
            c.observe(l.to_string(), Duration::from_secs(i as u64));
        }
        c
    }

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn zero_marker_passes() {
        let c = console(&[
            "noise",
            &format!("{INIT_BANNER} on 6.1"),
            &format!("{RESULT_MARKER}0"),
        ]);
        assert_eq!(c.boot_time, Some(Duration::from_secs(1)));
        c.verdict(exited(0), Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn failures_name_the_reason_and_show_the_tail() {
        let failed = console(&[
            "test x ... FAILED",
            &format!("{FAILED_MARKER}sched (exit status 101 after 3s)"),
            &format!("{RESULT_MARKER}101"),
        ]);
        let err = failed
            .verdict(exited(0), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tests failed (result 101): sched (exit status 101 after 3s)")
                && err.contains("test x ... FAILED")
        );

        let with_reason = console(&[
            "failures:",
            "",
            "---- disk::io_wait stdout ----",
            "thread 'io_wait' panicked at tests/disk.rs:1:1:",
            "io_wait 1.2 s against 1.5 s",
            "Stack backtrace:",
            "   0: frame",
            "failures:",
            "    io_wait",
            &format!("{RESULT_MARKER}101"),
        ]);
        let err = with_reason
            .verdict(exited(0), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        let said = err.split("last console lines").next().unwrap();
        assert!(said.contains("io_wait 1.2 s against 1.5 s"), "{err}");
        assert!(
            !said.contains("frame") && !said.contains("    io_wait"),
            "{err}"
        );

        let silent = console(&["booting"]);
        let err = silent
            .verdict(exited(0), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without reporting a result"));

        let err = silent
            .verdict(exited(TIMED_OUT), Duration::from_secs(7))
            .unwrap_err();
        assert!(err.to_string().contains("within 7s"));

        let panicked = console(&["Kernel panic - not syncing: Attempted to kill init!"]);
        let err = panicked
            .verdict(exited(0), Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("panicked"));
    }

    #[test]
    fn console_lines_drop_carriage_returns() {
        let lines: Vec<String> = console_lines(&b"a\r\r\nb\r\nc"[..])
            .map(Result::unwrap)
            .collect();
        assert_eq!(lines, ["a", "b", "c"]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let lines: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let c = console(&refs);
        assert_eq!(c.tail.len(), TAIL_LINES);
        assert_eq!(c.tail.front().map(String::as_str), Some("60"));
    }
}
