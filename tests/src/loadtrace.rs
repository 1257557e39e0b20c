//! Runs loadtrace with `--json` and collects its reports as they arrive.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};

use crate::child::{kill_and_reap, signal, wait_timeout};
use crate::lines::Lines;
use crate::procfs::Schedstat;
use crate::report::Report;
use crate::{loadtrace_bin, patience, procfs};

/// loadtrace's command line, less `--json`, which the runner always adds.
#[derive(Clone, Debug)]
pub struct Options {
    pub interval_s: u64,
    pub duration_s: Option<u64>,
    pub top: Option<u32>,
    pub pid: Option<u32>,
}

impl Options {
    /// One report every `interval_s` seconds, until stopped.
    pub fn every(interval_s: u64) -> Self {
        Self {
            interval_s,
            duration_s: None,
            top: None,
            pid: None,
        }
    }

    pub fn top(self, top: u32) -> Self {
        Self {
            top: Some(top),
            ..self
        }
    }

    pub fn pid(self, pid: u32) -> Self {
        Self {
            pid: Some(pid),
            ..self
        }
    }

    pub fn duration(self, duration_s: u64) -> Self {
        Self {
            duration_s: Some(duration_s),
            ..self
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--json".into(),
            "--interval".into(),
            self.interval_s.to_string(),
        ];
        let optional = [
            ("--duration", self.duration_s.map(|v| v.to_string())),
            ("--top", self.top.map(|v| v.to_string())),
            ("--pid", self.pid.map(|v| v.to_string())),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                args.extend([flag.to_string(), value]);
            }
        }
        args
    }
}

/// One report and what the test saw when it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub report: Report,
    pub at: Instant,
    /// /proc/stat's `ctxt` read the moment the line arrived, to compare loadtrace's
    /// switch count with the kernel's over the same span.
    pub ctxt: u64,
    /// /proc/stat's steal time of all CPUs (clock ticks), read with `ctxt`.
    pub steal_ticks: u64,
    /// The run queues' own totals (/proc/schedstat) read at the same moment, where the
    /// kernel has them.
    pub run_queues: Option<Schedstat>,
}

/// The reports whose interval lies wholly between `from` and `to`.
pub fn reports_within(reports: &[Received], from: SystemTime, to: SystemTime) -> Vec<&Report> {
    let epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (from, to) = (epoch(from), epoch(to));
    reports
        .iter()
        .map(|r| &r.report)
        .filter(|r| r.time - r.interval_s >= from && r.time <= to)
        .collect()
}

/// Every task's runnable time (on CPU + run queue) over `span`, and what the run queues
/// themselves accounted from the arrival of `start` to that of the span's last report
/// (/proc/schedstat: time their tasks ran plus time they waited), both as average counts.
/// `None` where the kernel keeps no such totals, or where they are no integral of
/// `nr_running`: where sleepers can stay queued (6.12+) the queues' wait totals also
/// gather time of threads asleep (kcompactd0, which wakes twice a second: 0.52 s of wait
/// in 20 s with 3 ms on a CPU; loadtrace, 16 ms runnable).
pub fn runnable_against_run_queues(
    start: &Received,
    span: &[Received],
) -> Result<Option<(f64, f64)>> {
    if procfs::fair_class_delays_dequeue()? {
        return Ok(None);
    }
    let Some(last) = span.last() else {
        return Ok(None);
    };
    let (Some(before), Some(after)) = (&start.run_queues, &last.run_queues) else {
        return Ok(None);
    };
    let seconds: f64 = span.iter().map(|r| r.report.interval_s).sum();
    let traced: f64 = span
        .iter()
        .map(|r| (r.report.load.on_cpu + r.report.load.runqueue) * r.report.interval_s)
        .sum();
    let kernel_s = after.runnable_ns().saturating_sub(before.runnable_ns()) as f64 / 1e9;
    Ok(Some((traced / seconds, kernel_s / seconds)))
}

/// A running loadtrace. Dropping it kills the process.
pub struct Loadtrace {
    child: Option<Child>,
    reports: Lines<Received>,
    stderr: Lines<String>,
    options: Options,
}

impl Loadtrace {
    pub fn start(options: Options) -> Result<Self> {
        let bin = loadtrace_bin();
        let mut child = Command::new(&bin)
            .args(options.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("loadtrace's stdout")?;
        let stderr = child.stderr.take().context("loadtrace's stderr")?;
        Ok(Self {
            child: Some(child),
            reports: Lines::spawn(stdout, receive),
            stderr: Lines::spawn(stderr, |line| Ok(line.to_owned())),
            options,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// How long to wait for the first report: loading the eBPF programs takes a while,
    /// much longer under emulation.
    pub fn startup_timeout(&self) -> Duration {
        patience(Duration::from_secs(self.options.interval_s + 30))
    }

    pub fn wait_for_first_report(&self) -> Result<Received> {
        self.wait_for_reports(1)?;
        Ok(self.reports.with_items(|items| items[0].clone()))
    }

    /// Waits until `count` reports have arrived in all, allowing startup plus one
    /// interval per report and some slack.
    pub fn wait_for_reports(&self, count: usize) -> Result<()> {
        let per_report = patience(Duration::from_secs(self.options.interval_s * 2 + 5));
        let timeout = self.startup_timeout() + per_report * count as u32;
        self.reports
            .wait_until(&format!("{count} reports"), timeout, |items| {
                items.len() >= count
            })
            .map_err(|e| self.with_stderr(e))
    }

    /// Waits for a report whose interval began after `moment`, so every report that
    /// can hold anything from before `moment` is in. `time` is taken as the interval's
    /// end; were it the start, this waits one interval longer, which is harmless.
    pub fn wait_for_report_starting_after(&self, moment: SystemTime) -> Result<()> {
        let moment = moment
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs_f64();
        let timeout = patience(Duration::from_secs(self.options.interval_s * 3 + 10));
        self.reports
            .wait_until(
                "a report for an interval after the workload",
                timeout,
                |items| {
                    items
                        .iter()
                        .any(|r| r.report.time - r.report.interval_s >= moment)
                },
            )
            .map_err(|e| self.with_stderr(e))
    }

    /// The reports so far.
    pub fn reports(&self) -> Vec<Received> {
        self.reports.with_items(<[Received]>::to_vec)
    }

    /// Stops loadtrace as a user would (SIGINT), checks that it exits cleanly, and
    /// returns every report it wrote.
    pub fn stop(mut self) -> Result<Vec<Received>> {
        let child = self.child.as_mut().context("loadtrace already stopped")?;
        signal(child, libc::SIGINT)?;
        self.finish(patience(Duration::from_secs(15)))
    }

    /// Waits for a run with `--duration` to end by itself; returns every report.
    pub fn wait_exit(mut self) -> Result<Vec<Received>> {
        let duration = self
            .options
            .duration_s
            .context("wait_exit needs --duration")?;
        let timeout = self.startup_timeout()
            + Duration::from_secs(duration)
            + patience(Duration::from_secs(30));
        self.finish(timeout)
    }

    fn finish(&mut self, timeout: Duration) -> Result<Vec<Received>> {
        let mut child = self.child.take().context("loadtrace already stopped")?;
        let waited = wait_timeout(&mut child, timeout);
        if waited.is_err() {
            kill_and_reap(&mut child);
        }
        let status = waited.map_err(|e| self.with_stderr(e.context("loadtrace did not exit")))?;
        self.stderr.finish()?;
        if !status.success() {
            return Err(self.with_stderr(anyhow!("loadtrace exited with {status}")));
        }
        self.reports.finish().map_err(|e| self.with_stderr(e))?;
        Ok(self.reports())
    }

    /// Adds what loadtrace said on stderr to an error: usually the reason it failed.
    fn with_stderr(&self, error: anyhow::Error) -> anyhow::Error {
        let stderr = self.stderr.with_items(|lines| lines.join("\n"));
        error.context(format!(
            "loadtrace {:?}, stderr:\n{stderr}",
            self.options.args()
        ))
    }
}

impl Drop for Loadtrace {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

/// Parses one report line and notes when it arrived, with the kernel's switch count.
fn receive(line: &str) -> Result<Received> {
    let report = serde_json::from_str(line).context("not a loadtrace report")?;
    let at = Instant::now();
    let (ctxt, steal_ticks) = procfs::context_switches_and_steal()?;
    let run_queues = procfs::cpu_sched_totals()?;
    Ok(Received {
        report,
        at,
        ctxt,
        steal_ticks,
        run_queues,
    })
}
