//! The kernel's own accounting, read from /proc: the oracles loadtrace is checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, ensure};

/// PF_KTHREAD in a task's flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// A thread's /proc/<pid>/task/<tid>/schedstat: the scheduler's exact totals since the
/// thread started (CONFIG_SCHED_INFO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedstat {
    /// Time on a CPU (sum_exec_runtime).
    pub exec_ns: u64,
    /// Time runnable but waiting in a run queue.
    pub run_delay_ns: u64,
    /// Number of times it was put on a CPU.
    pub timeslices: u64,
}

impl Schedstat {
    /// Time running or waiting to run: what the thread added to nr_running.
    pub fn runnable_ns(&self) -> u64 {
        self.exec_ns + self.run_delay_ns
    }
}

pub fn schedstat(pid: u32, tid: u32) -> Result<Schedstat> {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_schedstat(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

pub fn parse_schedstat(text: &str) -> Result<Schedstat> {
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("a field is not a number")?;
    ensure!(
        fields.len() == 3,
        "expected 3 fields, found {}",
        fields.len()
    );
    Ok(Schedstat {
        exec_ns: fields[0],
        run_delay_ns: fields[1],
        timeslices: fields[2],
    })
}

/// The sum of the schedstat of every thread `pid` has now.
pub fn process_schedstat(pid: u32) -> Result<Schedstat> {
    let mut sum = Schedstat::default();
    for tid in threads(pid)? {
        let s = schedstat(pid, tid)?;
        sum.exec_ns += s.exec_ns;
        sum.run_delay_ns += s.run_delay_ns;
        sum.timeslices += s.timeslices;
    }
    Ok(sum)
}

/// What every CPU's run queue has accounted since boot (/proc/schedstat, needs
/// CONFIG_SCHEDSTATS): time its tasks ran and time they waited, summed over CPUs. Tasks
/// that have exited are in it too, so over a span it is the box's own integral of running
/// and waiting tasks. `None` where the kernel has no /proc/schedstat.
pub fn cpu_sched_totals() -> Result<Option<Schedstat>> {
    match fs::read_to_string("/proc/schedstat") {
        Ok(text) => parse_cpu_sched_totals(&text)
            .context("parsing /proc/schedstat")
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading /proc/schedstat"),
    }
}

/// The `cpu<N>` lines: yld_count, a legacy 0, sched_count, sched_goidle, ttwu_count,
/// ttwu_local, rq_cpu_time, run_delay, pcount (the same from schedstat version 15 to 17).
pub fn parse_cpu_sched_totals(text: &str) -> Result<Schedstat> {
    let mut sum = Schedstat::default();
    let mut cpus = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        if name
            .strip_prefix("cpu")
            .is_none_or(|n| n.parse::<u32>().is_err())
        {
            continue;
        }
        let numbers: Vec<u64> = fields
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("a field of {name} is not a number"))?;
        ensure!(numbers.len() >= 9, "{name}: {} fields", numbers.len());
        sum.exec_ns += numbers[6];
        sum.run_delay_ns += numbers[7];
        sum.timeslices += numbers[8];
        cpus += 1;
    }
    ensure!(cpus > 0, "no cpu lines");
    Ok(sum)
}

/// The thread ids of process `pid`.
pub fn threads(pid: u32) -> Result<Vec<u32>> {
    let dir = format!("/proc/{pid}/task");
    numeric_entries(&dir)
}

/// The pids of every process (and kernel thread) on the system.
pub fn pids() -> Result<Vec<u32>> {
    numeric_entries("/proc")
}

fn numeric_entries(dir: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {dir}"))? {
        let entry = entry.with_context(|| format!("listing {dir}"))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// /proc/loadavg's three averages.
pub fn loadavg() -> Result<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse_loadavg(&text).with_context(|| format!("parsing /proc/loadavg: {text:?}"))
}

pub fn parse_loadavg(text: &str) -> Result<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || -> Result<f64> { Ok(fields.next().context("too few fields")??) };
    Ok([next()?, next()?, next()?])
}

/// The kernel's count of running tasks now (`nr_running`): /proc/loadavg's fourth field,
/// "running/threads".
pub fn running_tasks() -> Result<u64> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse_running_tasks(&text).with_context(|| format!("parsing /proc/loadavg: {text:?}"))
}

pub fn parse_running_tasks(text: &str) -> Result<u64> {
    let field = text.split_whitespace().nth(3).context("too few fields")?;
    let running = field.split('/').next().unwrap_or_default();
    running
        .parse()
        .with_context(|| format!("bad running/threads field {field:?}"))
}

/// The total number of context switches since boot (/proc/stat `ctxt`), and the steal time
/// of all CPUs in clock ticks (the `cpu` line's eighth figure), read together.
pub fn context_switches_and_steal() -> Result<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ctxt = parse_ctxt(&text).context("parsing /proc/stat")?;
    Ok((ctxt, parse_steal(&text).context("parsing /proc/stat")?))
}

pub fn parse_steal(text: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .context("no cpu line")?;
    let steal = line.split_whitespace().nth(7).context("no steal figure")?;
    steal
        .parse()
        .with_context(|| format!("bad steal figure {steal:?}"))
}

pub fn parse_ctxt(text: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .context("no ctxt line")?;
    line.trim()
        .parse()
        .with_context(|| format!("bad ctxt value {line:?}"))
}

/// The fields of /proc/<pid>/stat the tests use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStat {
    pub comm: String,
    /// R, S, D, I, Z, ...
    pub state: char,
    pub flags: u64,
}

impl TaskStat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

pub fn task_stat(pid: u32) -> Result<TaskStat> {
    read_stat(&format!("/proc/{pid}/stat"))
}

pub fn thread_stat(pid: u32, tid: u32) -> Result<TaskStat> {
    read_stat(&format!("/proc/{pid}/task/{tid}/stat"))
}

fn read_stat(path: &str) -> Result<TaskStat> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

/// Parses `pid (comm) state ppid pgrp session tty_nr tpgid flags ...`. The comm may
/// hold spaces and parentheses, so it runs to the last ')'.
pub fn parse_stat(text: &str) -> Result<TaskStat> {
    let open = text.find('(').context("no '(' before comm")?;
    let close = text.rfind(')').context("no ')' after comm")?;
    let comm = text
        .get(open + 1..close)
        .context("')' before '('")?
        .to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    ensure!(fields.len() > 6, "too few fields after comm");
    let state = fields[0].chars().next().context("empty state")?;
    let flags = fields[6]
        .parse()
        .with_context(|| format!("bad flags {:?}", fields[6]))?;
    Ok(TaskStat { comm, state, flags })
}

/// A thread's I/O wait by delay accounting: /proc/<pid>/task/<tid>/stat field 42,
/// delayacct_blkio_ticks, in clock ticks (see [`clock_ticks_per_sec`]). It adds up the
/// sleeps the thread began with task->in_iowait set, from the switch-out to the wakeup.
pub fn blkio_ticks(pid: u32, tid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_blkio_ticks(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

/// The delay-accounting ticks of the threads `tids` of `pid` added up (see [`blkio_ticks`]).
pub fn threads_blkio_ticks(pid: u32, tids: &[u32]) -> Result<u64> {
    tids.iter().map(|&tid| blkio_ticks(pid, tid)).sum()
}

/// Field 42 of a stat line. Fields are counted from 1 and the comm (field 2) may hold
/// spaces, so counting starts after its closing ')', at field 3.
pub fn parse_blkio_ticks(text: &str) -> Result<u64> {
    let close = text.rfind(')').context("no ')' after comm")?;
    let field = text[close + 1..]
        .split_whitespace()
        .nth(42 - 3)
        .context("fewer than 42 fields")?;
    field
        .parse()
        .with_context(|| format!("bad delayacct_blkio_ticks {field:?}"))
}

/// The running kernel's (major, minor) version, from /proc/sys/kernel/osrelease.
pub fn kernel_version() -> Result<(u32, u32)> {
    let path = "/proc/sys/kernel/osrelease";
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_kernel_version(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

pub fn parse_kernel_version(text: &str) -> Result<(u32, u32)> {
    let mut parts = text.trim().split(['.', '-', '+']);
    let mut number = |what: &str| -> Result<u32> {
        let part = parts.next().with_context(|| format!("no {what} version"))?;
        part.parse()
            .with_context(|| format!("bad {what} version {part:?}"))
    };
    Ok((number("major")?, number("minor")?))
}

/// Whether the fair scheduler may keep a sleeping thread queued after it left the CPU
/// (EEVDF's DELAY_DEQUEUE, 6.12 on). The kernel then starts the thread's blkio delay only
/// when it finally dequeues it, on behalf of whichever thread is running at that moment,
/// and not at all when the thread is woken first; delay accounting's blkio figure is only
/// exact for threads the kernel dequeues at once (real-time ones).
pub fn fair_class_delays_dequeue() -> Result<bool> {
    Ok(kernel_version()? >= (6, 12))
}

/// USER_HZ: the unit of the tick counts in /proc/<pid>/stat.
pub fn clock_ticks_per_sec() -> Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .context("sysconf(_SC_CLK_TCK) failed")
}

const TASK_DELAYACCT: &str = "/proc/sys/kernel/task_delayacct";

/// Delay accounting switched on for as long as this lives. The kernel ships it off
/// (`kernel.task_delayacct=0`) unless booted with `delayacct`, and then field 42 stays 0.
pub struct DelayAccounting {
    /// Whether it was off before, so dropping this puts it back.
    was_off: bool,
}

impl DelayAccounting {
    /// Turns delay accounting on if it is off (needs root).
    pub fn enable() -> Result<Self> {
        let now = fs::read_to_string(TASK_DELAYACCT)
            .with_context(|| format!("reading {TASK_DELAYACCT}"))?;
        let was_off = now.trim() == "0";
        if was_off {
            fs::write(TASK_DELAYACCT, "1")
                .with_context(|| format!("writing 1 to {TASK_DELAYACCT}"))?;
        }
        Ok(Self { was_off })
    }
}

impl Drop for DelayAccounting {
    fn drop(&mut self) {
        if self.was_off {
            let _ = fs::write(TASK_DELAYACCT, "0");
        }
    }
}

/// Kernel threads now in state `state` (e.g. 'I', idle). Tasks that exit while the
/// list is read are left out.
pub fn kernel_threads_in_state(state: char) -> Result<BTreeSet<u32>> {
    let mut found = BTreeSet::new();
    for pid in pids()? {
        if let Ok(stat) = task_stat(pid)
            && stat.is_kernel_thread()
            && stat.state == state
        {
            found.insert(pid);
        }
    }
    Ok(found)
}

/// Watches the states of some tasks from a thread of its own, reading /proc/<pid>/stat
/// over and over, to learn which states each one passed through while a test ran.
pub struct StateWatch {
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<StatesSeen>,
}

/// Every state each watched task was seen in, and how many times they were all read.
#[derive(Debug, Default)]
pub struct StatesSeen {
    pub states: BTreeMap<u32, BTreeSet<char>>,
    pub sweeps: u64,
}

impl StateWatch {
    pub fn start(pids: BTreeSet<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let sampler = thread::spawn(move || {
            let mut seen = StatesSeen::default();
            // No pause between sweeps: the point is to catch short sleeps.
            while !stopping.load(Ordering::Relaxed) {
                for &pid in &pids {
                    if let Ok(stat) = task_stat(pid) {
                        seen.states.entry(pid).or_default().insert(stat.state);
                    }
                }
                seen.sweeps += 1;
            }
            seen
        });
        Self { stop, sampler }
    }

    pub fn finish(self) -> Result<StatesSeen> {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the state sampler panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sched_totals_sum_the_cpu_lines() {
        let text = "version 15\ntimestamp 4294937596\n\
            cpu0 0 0 85454 1434 1826 1041 4714273844 353185778 3004\n\
            domain0 03 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35\n\
            cpu1 0 0 4088 1599 1544 695 4009675375 850332809 2487\n";
        let s = parse_cpu_sched_totals(text).unwrap();
        assert_eq!(s.exec_ns, 4714273844 + 4009675375);
        assert_eq!(s.run_delay_ns, 353185778 + 850332809);
        assert_eq!(s.timeslices, 3004 + 2487);
        assert!(parse_cpu_sched_totals("version 15\n").is_err());
        assert!(parse_cpu_sched_totals("cpu0 1 2 3\n").is_err());
    }

    #[test]
    fn schedstat_fields() {
        let s = parse_schedstat("976502609 1025120588 243\n").unwrap();
        assert_eq!(
            (s.exec_ns, s.run_delay_ns, s.timeslices),
            (976502609, 1025120588, 243)
        );
        assert_eq!(s.runnable_ns(), 2001623197);
        assert!(parse_schedstat("1 2\n").is_err());
    }

    #[test]
    fn loadavg_fields() {
        assert_eq!(
            parse_loadavg("1.41 0.70 0.32 2/92 11624\n").unwrap(),
            [1.41, 0.70, 0.32]
        );
        assert!(parse_loadavg("1.41\n").is_err());
        assert_eq!(
            parse_running_tasks("1.41 0.70 0.32 2/92 11624\n").unwrap(),
            2
        );
        assert!(parse_running_tasks("1.41 0.70 0.32\n").is_err());
    }

    #[test]
    fn ctxt_line() {
        let stat = "cpu  1 2 3\nintr 5 6\nctxt 1275398\nbtime 17637\n";
        assert_eq!(parse_ctxt(stat).unwrap(), 1275398);
        assert!(parse_ctxt("cpu 1 2\n").is_err());
        let stat = "cpu  108689 0 30794 144758 4359 0 9608 8217 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_steal(stat).unwrap(), 8217);
        assert!(parse_steal("cpu  1 2 3\n").is_err());
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669\n").unwrap(), (6, 18));
        assert_eq!(parse_kernel_version("6.1.0-31-amd64").unwrap(), (6, 1));
        assert_eq!(parse_kernel_version("6.12.12+bpo-amd64").unwrap(), (6, 12));
        assert!(parse_kernel_version("six").is_err());
    }

    #[test]
    fn blkio_ticks_is_field_42() {
        // A 6.12 stat line: field 42 is 137, after a comm with a space in it.
        let text = "1234 (lt work) S 1 1234 1234 0 -1 4194560 116 0 0 0 0 3 0 0 20 0 1 0 \
                    5169 4452352 324 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 \
                    137 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(parse_blkio_ticks(text).unwrap(), 137);
        assert!(parse_blkio_ticks("1 (a) S 1 2 3\n").is_err());
    }

    #[test]
    fn stat_with_awkward_comm() {
        let text = "42 (a) b (c)) I 2 0 0 0 -1 2129984 0 0 0 0\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.state, 'I');
        assert!(stat.is_kernel_thread());
        let user = parse_stat("7 (bash) S 1 7 7 34816 7 4194304 0\n").unwrap();
        assert!(!user.is_kernel_thread());
    }
}
