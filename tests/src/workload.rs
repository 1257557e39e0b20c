//! Runs `lt-workload` and reads the JSON events it prints ("ready", "done").

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::child::{kill_and_reap, wait_timeout};
use crate::lines::Lines;
use crate::procfs;

/// A running workload. Dropping it kills the process.
pub struct Workload {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    events: Lines<Value>,
    args: Vec<String>,
}

impl Workload {
    /// Starts `bin` (see `workload_bin!`) with `args`, e.g. `["spin", "--threads", "3"]`.
    pub fn spawn(bin: &Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {args:?}", bin.display()))?;
        let stdout = child.stdout.take().context("the workload's stdout")?;
        Ok(Self {
            stdin: child.stdin.take(),
            child: Some(child),
            events: Lines::spawn(stdout, |line| Ok(serde_json::from_str(line)?)),
            args: args.iter().map(|a| a.to_string()).collect(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the "ready" event of a `--wait-stdin` run, and for every thread to be
    /// asleep waiting for [`Workload::release`]: the line is printed just before the
    /// wait, and a baseline read in between would miss the last bit of set-up.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let ready = self.wait_event("ready", timeout)?;
        self.wait_all_asleep(deadline)?;
        Ok(ready)
    }

    /// Lets a `--wait-stdin` run start its work.
    pub fn release(&mut self) -> Result<()> {
        let mut stdin = self.stdin.take().context("workload already released")?;
        stdin.write_all(b"go\n").context("releasing the workload")
    }

    /// Waits for the "done" event, which carries the workload's results.
    pub fn wait_done(&self, timeout: Duration) -> Result<Value> {
        self.wait_event("done", timeout)
    }

    /// For a `--then-block` run: waits for the work to end and for every thread to be
    /// parked in its interruptible sleep, after which the kernel's totals stay put.
    pub fn wait_parked(&self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let done = self.wait_done(timeout)?;
        self.wait_all_asleep(deadline)?;
        Ok(done)
    }

    /// Waits for the workload to exit successfully; returns its "done" event.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<Value> {
        let child = self.child.as_mut().context("workload already reaped")?;
        let status =
            wait_timeout(child, timeout).with_context(|| format!("workload {:?}", self.args))?;
        self.child = None;
        ensure!(
            status.success(),
            "workload {:?} exited with {status}",
            self.args
        );
        self.events.finish()?;
        self.wait_done(Duration::ZERO)
    }

    fn wait_event(&self, event: &str, timeout: Duration) -> Result<Value> {
        let is_event = |v: &Value| v["event"] == event;
        self.events
            .wait_until(&format!("the {event:?} event"), timeout, |events| {
                events.iter().any(is_event)
            })
            .with_context(|| format!("workload {:?}", self.args))?;
        Ok(self.events.with_items(|events| {
            events
                .iter()
                .find(|v| is_event(v))
                .cloned()
                .unwrap_or_default()
        }))
    }

    fn wait_all_asleep(&self, deadline: Instant) -> Result<()> {
        while !self.all_threads_asleep()? {
            if Instant::now() >= deadline {
                bail!(
                    "workload {:?}: its threads did not all go to sleep in time",
                    self.args
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn all_threads_asleep(&self) -> Result<bool> {
        let pid = self.pid();
        for tid in procfs::threads(pid)? {
            if procfs::thread_stat(pid, tid)?.state != 'S' {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}
