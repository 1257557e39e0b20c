//! The kernel-facing part: loads and attaches the programs, and reads what they record.
//! Thin on purpose; everything it reads is handed to the model as plain readings.

use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::Program,
};
use loadtrace_common::{
    Counters, ExitRecord, IoKey, IoTotals, LoadSampleAt, LoadSampleSeen, TaskEntry, TaskLayout,
    state,
};

use crate::{
    map_batch,
    model::{
        sampling::SampleReading,
        thread::{ThreadReading, ThreadState},
    },
};

/// Map update flag: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/loadtrace"));

/// Programs on the tracepoints of the same name, in the order they are attached: the switch
/// hook first, so that no thread gets an entry from a wakeup hook and then lives and dies
/// unseen before the switch hook is in place (an entry left runnable for ever).
const SCHED_HOOKS: [&str; 3] = ["sched_switch", "sched_wakeup", "sched_wakeup_new"];

/// Where the kernel moves threads in and out of `nr_running` (a bare tracepoint, no trace
/// event, 5.9+): the exact ends of sleeps and runs, and where sleepers can stay queued
/// (6.12+), the moment the kernel finally dequeues one.
pub const NR_RUNNING_HOOK: &str = "sched_update_nr_running_tp";

/// Where the kernel's load samples are seen being taken: the end of a timer interrupt (the
/// tick's is where the kernel samples).
pub const LOAD_SAMPLE_HOOK: &str = "hrtimer_expire_exit";

/// Where a queued thread moves between CPUs' run queues, in the few ticks around a load
/// sample: the kernel's sample can then hold it twice, or not at all.
pub const MIGRATE_HOOK: &str = "sched_migrate_task";

/// Where a CPU stops its tick in idle (NO_HZ kernels): the kernel counts its run queue for
/// the load average then, and again only if a tick comes before the CPU leaves idle.
pub const TICK_STOP_HOOK: &str = "tick_stop";

/// What a CPU's `curr_tid` holds until its first switch: it runs someone, since `curr_since`.
const UNKNOWN_TID: u32 = u32::MAX;

/// Each scheduler and timer hook's empty stand-in (`--empty-programs`): the cost of running
/// any program there.
const EMPTY_PROGRAMS: &[(&str, &str)] = &[
    ("sched_switch", "empty_sched_switch"),
    ("sched_wakeup", "empty_sched_wakeup"),
    ("sched_wakeup_new", "empty_sched_wakeup_new"),
    (NR_RUNNING_HOOK, "empty_sched_update_nr_running_tp"),
    (LOAD_SAMPLE_HOOK, "empty_hrtimer_expire_exit"),
    (MIGRATE_HOOK, "empty_sched_migrate_task"),
];

/// The program to attach to each hook: its own, or with `empty`, its empty stand-in (hooks
/// without one are left unattached).
fn programs_for(hooks: &[&'static str], empty: bool) -> Vec<(&'static str, &'static str)> {
    if !empty {
        return hooks.iter().map(|&hook| (hook, hook)).collect();
    }
    hooks
        .iter()
        .filter_map(|&hook| EMPTY_PROGRAMS.iter().find(|&&(h, _)| h == hook).copied())
        .collect()
}

/// The switch hook and the fork hook hold the accounting together; the others refine it.
const HOOKS_THAT_CAN_BE_LEFT_OUT: &[&str] = &[
    "sched_wakeup",
    NR_RUNNING_HOOK,
    LOAD_SAMPLE_HOOK,
    MIGRATE_HOOK,
];

/// Refuses to leave out a hook the accounting cannot do without (`--leave-out`, for
/// measuring what each refining hook costs).
pub fn check_left_out(left_out: &[String]) -> Result<()> {
    for name in left_out {
        if !HOOKS_THAT_CAN_BE_LEFT_OUT.contains(&name.as_str())
            && !BLOCK_HOOKS.contains(&name.as_str())
        {
            bail!(
                "--leave-out {name}: only {} or a block hook ({}) can be left out",
                HOOKS_THAT_CAN_BE_LEFT_OUT.join(", "),
                BLOCK_HOOKS.join(", ")
            );
        }
    }
    Ok(())
}

/// The programs to attach, in order: the scheduler hooks, the `nr_running` hook, the block
/// hooks that make sense together, and the load-sample hook where the kernel side can reach
/// the run queue (with [`TICK_STOP_HOOK`] and [`MIGRATE_HOOK`] before it), of the `optional`
/// ones the kernel has
/// (a subset of [`BLOCK_HOOKS`], [`NR_RUNNING_HOOK`], [`LOAD_SAMPLE_HOOK`] and
/// [`TICK_STOP_HOOK`]); less those in `left_out`.
fn hooks_to_attach(
    load_samples: bool,
    optional: &[&'static str],
    left_out: &[String],
) -> Vec<&'static str> {
    let block: Vec<&'static str> = if optional.contains(&"block_rq_complete") {
        optional
            .iter()
            .copied()
            .filter(|h| BLOCK_HOOKS.contains(h))
            // block_io_start (6.5+) already runs in the submitter's context; block_getrq
            // is for older kernels, which issue plugged requests from kblockd.
            .filter(|&h| !(h == "block_getrq" && optional.contains(&"block_io_start")))
            .collect()
    } else {
        // Without completions nothing about a request can be told.
        Vec::new()
    };
    let nr_running: &[&'static str] = if optional.contains(&NR_RUNNING_HOOK) {
        &[NR_RUNNING_HOOK]
    } else {
        &[]
    };
    let samples: &[&'static str] = match (
        load_samples
            && optional.contains(&LOAD_SAMPLE_HOOK)
            && !left_out.iter().any(|l| l == LOAD_SAMPLE_HOOK),
        optional.contains(&TICK_STOP_HOOK),
    ) {
        (true, true) => &[TICK_STOP_HOOK, MIGRATE_HOOK, LOAD_SAMPLE_HOOK],
        (true, false) => &[MIGRATE_HOOK, LOAD_SAMPLE_HOOK],
        (false, _) => &[],
    };
    SCHED_HOOKS
        .iter()
        .chain(nr_running)
        .chain(&block)
        .chain(samples)
        .copied()
        .filter(|h| !left_out.iter().any(|l| l == h))
        .collect()
}

/// Block-layer programs, each attached when the kernel has its tracepoint: block_io_start
/// arrived in 6.5; the others exist on every supported kernel.
pub const BLOCK_HOOKS: &[&str] = &[
    "block_getrq",
    "block_io_start",
    "block_rq_insert",
    "block_rq_issue",
    "block_rq_complete",
];

/// A thread to start tracking at start-up: runnable, or in D, as /proc shows it.
#[derive(Clone, Copy, Debug)]
pub struct SeedTask {
    pub tid: u32,
    pub tgid: u32,
    pub runnable: bool,
    /// Its run-queue wait so far (schedstat's second field).
    pub run_delay_ns: u64,
    /// Its CPU time so far (schedstat's first field).
    pub sum_exec_ns: u64,
}

/// What the kernel measured of one program (with BPF statistics on).
#[derive(Clone, Debug)]
pub struct ProgramCost {
    pub name: &'static str,
    pub runs: u64,
    pub run_time_ns: u64,
}

pub struct Tracer {
    // Holds the programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
    /// The programs attached: (hook, program name).
    programs: Vec<(&'static str, &'static str)>,
    tasks: HashMap<MapData, u32, TaskEntry>,
    tasks_fd: RawFd,
    io_totals: HashMap<MapData, IoKey, IoTotals>,
    io_totals_fd: RawFd,
    exits: RingBuf<MapData>,
    counters: PerCpuArray<MapData, Counters>,
    /// Present when the load-sample hook is attached.
    load_samples: Option<LoadSampleMaps>,
    /// Tagged exits read since the last `sample_readings`.
    exit_samples: Vec<SampleReading>,
}

struct LoadSampleMaps {
    at: Array<MapData, LoadSampleAt>,
    seen: Array<MapData, LoadSampleSeen>,
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tracer {
    /// Loads the programs for this kernel's `task_struct` layout, with room for `max_tasks`
    /// threads, and attaches them, with the `optional` hooks the kernel has (a subset of
    /// [`BLOCK_HOOKS`] and [`NR_RUNNING_HOOK`]), less those in `left_out`; with
    /// `empty`, empty programs on the scheduler hooks instead (to measure the floor).
    pub fn start(
        layout: &TaskLayout,
        max_tasks: u32,
        optional: &[&'static str],
        left_out: &[String],
        empty: bool,
    ) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .override_global("LAYOUT", layout, true)
            .map_max_entries("TASKS", max_tasks)
            .load(PROGRAMS)
            .context("loading the eBPF programs into the kernel")?;
        let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
        let hooks = hooks_to_attach(layout.cfs_rq_offset != 0, optional, left_out);
        let programs = programs_for(&hooks, empty);
        for &(hook, name) in &programs {
            match ebpf.program_mut(name) {
                Some(Program::RawTracePoint(p)) => p.load(),
                Some(Program::BtfTracePoint(p)) => p.load(hook, &btf),
                _ => return Err(anyhow!("program {name} missing from the object")),
            }
            .with_context(|| format!("verifying program {name}"))?;
        }
        let mut counters: PerCpuArray<MapData, Counters> =
            take(&mut ebpf, "COUNTERS")?.try_into()?;
        start_clocks(&mut counters)?;
        for &(hook, name) in &programs {
            match ebpf.program_mut(name) {
                Some(Program::RawTracePoint(p)) => p.attach(hook).map(drop),
                Some(Program::BtfTracePoint(p)) => p.attach().map(drop),
                _ => return Err(anyhow!("program {name} missing from the object")),
            }
            .with_context(|| format!("attaching to tracepoint {hook}"))?;
        }
        let tasks_map = take(&mut ebpf, "TASKS")?;
        let tasks_fd = raw_fd(&tasks_map)?;
        let io_map = take(&mut ebpf, "IO_TOTALS")?;
        let io_totals_fd = raw_fd(&io_map)?;
        // Its own program, not an empty stand-in.
        let load_samples = if programs.iter().any(|&(_, name)| name == LOAD_SAMPLE_HOOK) {
            Some(LoadSampleMaps {
                at: take(&mut ebpf, "LOAD_SAMPLE_AT")?.try_into()?,
                seen: take(&mut ebpf, "LOAD_SAMPLE_SEEN")?.try_into()?,
            })
        } else {
            None
        };
        Ok(Self {
            load_samples,
            exit_samples: Vec::new(),
            tasks: tasks_map.try_into()?,
            tasks_fd,
            io_totals: io_map.try_into()?,
            io_totals_fd,
            exits: take(&mut ebpf, "EXITS")?.try_into()?,
            counters,
            ebpf,
            programs,
        })
    }

    /// Starts tracking threads that were already runnable or in D when tracing began, from
    /// `now_ns`: their earlier time is before the first interval anyway. Threads the
    /// programs have seen since attaching are left alone.
    pub fn seed(&mut self, tasks: &[SeedTask], now_ns: u64) {
        for t in tasks {
            let entry = TaskEntry {
                tgid: t.tgid,
                state: if t.runnable {
                    state::RUNNABLE
                } else {
                    state::UNINTERRUPTIBLE
                },
                since_ns: now_ns,
                birth_ns: now_ns,
                run_delay_ns: t.run_delay_ns,
                sum_exec_ns: t.sum_exec_ns,
                ..TaskEntry::default()
            };
            // BPF_NOEXIST: an entry that exists is newer than what /proc said.
            if self.tasks.insert(t.tid, entry, BPF_NOEXIST).is_err() {
                continue;
            }
            // The thread may have exited between the /proc scan and the insert, its exit
            // already handled without this entry, which would then stay runnable for ever.
            // Checked after the insert: an exit from here on finds the entry and removes it.
            if !crate::procfs::thread_alive(t.tgid, t.tid) {
                let _ = self.tasks.remove(&t.tid);
            }
        }
    }

    /// Appends the exit records waiting in the ring buffer.
    pub fn drain_exits(&mut self, out: &mut Vec<ThreadReading>) {
        while let Some(item) = self.exits.next() {
            if item.len() < size_of::<ExitRecord>() {
                continue;
            }
            // SAFETY: the kernel side writes whole ExitRecords; read_unaligned copes with any
            // alignment of the ring's data area.
            let rec: ExitRecord = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            // Only a tagged exit can have counted at a sample (it was gone at any later one).
            if rec.sample_ns != 0 && self.load_samples.is_some() {
                self.exit_samples.push(SampleReading {
                    state: ThreadState::Exited,
                    since_ns: rec.exit_ns,
                    woken_ns: 0,
                    on_cpu_since: None,
                    sample_ns: rec.sample_ns,
                    sample_active: rec.sample_active != 0,
                });
            }
            out.push(ThreadReading {
                tid: rec.tid,
                tgid: rec.tgid,
                birth_ns: rec.birth_ns,
                state: ThreadState::Exited,
                since_ns: rec.exit_ns,
                on_cpu_since: None,
                totals: rec.totals,
                comm: Some(comm_string(&rec.comm)),
            });
        }
    }

    /// Reads every tracked thread. Threads whose exit could not be sent (ring buffer full)
    /// come back as exited and are removed from the map here.
    pub fn sweep(&mut self) -> Result<Vec<ThreadReading>> {
        let raw = self.entries()?;
        let running = self.running()?;
        let mut out = Vec::with_capacity(raw.len() + running.len());
        for (tid, entry) in raw {
            let mut reading = reading(tid, &entry);
            if reading.state == ThreadState::Exited {
                let _ = self.tasks.remove(&tid);
            } else {
                reading.on_cpu_since = running.get(&tid).copied();
            }
            out.push(reading);
        }
        // On a CPU without an entry yet (first seen when it leaves, born when it arrived).
        let known: std::collections::HashSet<u32> = out.iter().map(|r| r.tid).collect();
        for (&tid, &since) in &running {
            if known.contains(&tid) {
                continue;
            }
            out.push(ThreadReading {
                tid,
                tgid: crate::procfs::tgid_of(tid).unwrap_or(tid),
                birth_ns: since,
                state: ThreadState::Runnable,
                since_ns: since,
                on_cpu_since: Some(since),
                totals: Default::default(),
                comm: None,
            });
        }
        Ok(out)
    }

    /// Every entry of the task map, each read whole.
    fn entries(&self) -> Result<Vec<(u32, TaskEntry)>> {
        let mut raw: Vec<(u32, TaskEntry)> = Vec::new();
        match map_batch::lookup_all(self.tasks_fd, &mut raw) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                raw = self.tasks.iter().filter_map(Result::ok).collect();
            }
            Err(e) => return Err(e).context("reading the task map"),
        }
        Ok(raw
            .into_iter()
            .filter_map(|(tid, entry)| {
                if entry.seq % 2 == 0 {
                    return Some((tid, entry));
                }
                // Caught mid-update: read that one entry again.
                self.reread(tid).map(|e| (tid, e))
            })
            .collect())
    }

    /// The latest load sample a CPU was seen taking, if any yet.
    pub fn load_sample_seen(&self) -> Option<LoadSampleSeen> {
        let maps = self.load_samples.as_ref()?;
        // Written field by field on the kernel side: a reading is taken when two agree.
        let mut last = maps.seen.get(&0, 0).ok()?;
        for _ in 0..4 {
            let again = maps.seen.get(&0, 0).ok()?;
            if again == last {
                return (last.jiffy_after != 0).then_some(last);
            }
            last = again;
        }
        None
    }

    /// Every CPU's counters and slots.
    fn per_cpu_slots(&self) -> Result<PerCpuValues<Counters>> {
        self.counters
            .get(&0, 0)
            .context("reading the per-CPU slots")
    }

    /// Each CPU's latest jiffy seen by the timer hook and when it first saw it (none seen
    /// yet: left out).
    pub fn jiffy_sightings(&self) -> Result<Vec<(u64, u64)>> {
        let per_cpu = self.per_cpu_slots()?;
        Ok(per_cpu
            .iter()
            .filter(|c| c.jiffy_seen_ns != 0)
            .map(|c| (c.jiffy_seen, c.jiffy_seen_ns))
            .collect())
    }

    /// Tells the kernel side when the last load sample was taken and when the next one is.
    pub fn set_load_samples(&mut self, at: LoadSampleAt) -> Result<()> {
        let Some(maps) = self.load_samples.as_mut() else {
            return Ok(());
        };
        maps.at
            .set(0, at, 0)
            .context("writing the load-sample instants")
    }

    /// The changes the CPUs made, after the sample of `jiffy`, to run queues that had not yet
    /// counted for it (see [`LoadSampleAt`]).
    pub fn fold_lag(&self, jiffy: u64) -> Result<i64> {
        let per_cpu = self.per_cpu_slots()?;
        Ok(per_cpu
            .iter()
            .filter(|c| c.fold_lag_jiffy == jiffy)
            .map(|c| c.fold_lag)
            .sum())
    }

    /// Every thread as it stands, and every exit since the last call, for counting the
    /// threads that counted toward load at a sample just past.
    pub fn sample_readings(&mut self) -> Result<Vec<SampleReading>> {
        let running = self.running()?;
        let entries = self.entries()?;
        let known: std::collections::HashSet<u32> = entries.iter().map(|&(tid, _)| tid).collect();
        let mut out: Vec<SampleReading> = entries
            .iter()
            .map(|(tid, e)| SampleReading {
                state: thread_state(e),
                since_ns: e.since_ns,
                woken_ns: e.woken_ns,
                on_cpu_since: running.get(tid).copied(),
                sample_ns: e.sample_ns,
                sample_active: e.sample_active != 0,
            })
            .collect();
        // On a CPU without an entry yet: there since it arrived.
        for (tid, &since) in &running {
            if !known.contains(tid) {
                out.push(SampleReading {
                    state: ThreadState::Runnable,
                    since_ns: since,
                    woken_ns: 0,
                    on_cpu_since: Some(since),
                    sample_ns: 0,
                    sample_active: false,
                });
            }
        }
        out.append(&mut self.exit_samples);
        Ok(out)
    }

    /// The thread on each CPU and since when (idle CPUs and unknown ones left out).
    fn running(&self) -> Result<std::collections::HashMap<u32, u64>> {
        let per_cpu = self.per_cpu_slots()?;
        // A thread named by two CPUs left one of them unseen: the later arrival stands.
        let mut running = std::collections::HashMap::new();
        for c in per_cpu
            .iter()
            .filter(|c| c.curr_tid != 0 && c.curr_tid != u64::from(UNKNOWN_TID))
        {
            let since = running.entry(c.curr_tid as u32).or_insert(c.last_switch_ns);
            *since = (*since).max(c.last_switch_ns);
        }
        Ok(running)
    }

    /// Cumulative I/O of every (process, device).
    pub fn io_totals(&mut self) -> Result<Vec<(IoKey, IoTotals)>> {
        let mut out = Vec::new();
        match map_batch::lookup_all(self.io_totals_fd, &mut out) {
            Ok(()) => Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                Ok(self.io_totals.iter().filter_map(Result::ok).collect())
            }
            Err(e) => Err(e).context("reading the I/O map"),
        }
    }

    /// Forgets the I/O totals of processes that are gone (after their last reading).
    pub fn forget_io(&mut self, keys: &[IoKey]) {
        for k in keys {
            let _ = self.io_totals.remove(k);
        }
    }

    fn reread(&self, tid: u32) -> Option<TaskEntry> {
        for _ in 0..8 {
            let e = self.tasks.get(&tid, 0).ok()?;
            if e.seq % 2 == 0 {
                return Some(e);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Cumulative run counts and times of the programs (zero unless BPF statistics are on).
    pub fn program_costs(&self) -> Vec<ProgramCost> {
        self.programs
            .iter()
            .filter_map(|&(hook, name)| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some(ProgramCost {
                    name: hook,
                    runs: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }

    /// The kernel side's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let per_cpu = self
            .counters
            .get(&0, 0)
            .context("reading the counters map")?;
        let mut sum = Counters::default();
        for c in per_cpu.iter() {
            sum.switches += c.switches;
            sum.exits_deferred += c.exits_deferred;
            sum.map_full += c.map_full;
            sum.exits_lost += c.exits_lost;
            sum.unseen_handovers += c.unseen_handovers;
            sum.io_untracked += c.io_untracked;
            sum.io_lost += c.io_lost;
            sum.delayed_unfollowed += c.delayed_unfollowed;
            sum.sample_migrations += c.sample_migrations;
        }
        Ok(sum)
    }
}

/// Every CPU runs someone when tracing begins; its first switch closes that thread's time
/// on the CPU from now.
fn start_clocks(counters: &mut PerCpuArray<MapData, Counters>) -> Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
    let now = monotonic_ns();
    let start = Counters {
        last_switch_ns: now,
        curr_tid: u64::from(UNKNOWN_TID),
        ..Counters::default()
    };
    counters
        .set(0, PerCpuValues::try_from(vec![start; cpus])?, 0)
        .context("starting the per-CPU clocks")
}

/// The descriptor of a hash map, for batch reads; valid as long as the map is held.
fn raw_fd(map: &Map) -> Result<RawFd> {
    match map {
        Map::HashMap(data) => Ok(data.fd().as_fd().as_raw_fd()),
        _ => Err(anyhow!("expected a hash map")),
    }
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))
}

fn thread_state(e: &TaskEntry) -> ThreadState {
    match e.state {
        state::RUNNABLE => ThreadState::Runnable,
        state::UNINTERRUPTIBLE => ThreadState::Uninterruptible {
            iowait: e.iowait != 0,
        },
        state::DEAD => ThreadState::Exited,
        state::QUEUED_ASLEEP => ThreadState::QueuedAsleep,
        _ => ThreadState::Sleeping,
    }
}

fn reading(tid: u32, e: &TaskEntry) -> ThreadReading {
    let state = thread_state(e);
    ThreadReading {
        tid,
        tgid: e.tgid,
        birth_ns: e.birth_ns,
        state,
        since_ns: e.since_ns,
        on_cpu_since: None,
        totals: e.totals,
        comm: (state == ThreadState::Exited).then(|| comm_string(&e.comm)),
    }
}

pub fn comm_string(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_programs_stand_in_for_the_scheduler_hooks_only() {
        let hooks = [
            "sched_switch",
            "sched_wakeup",
            "sched_wakeup_new",
            NR_RUNNING_HOOK,
            LOAD_SAMPLE_HOOK,
            "block_rq_complete",
        ];
        let own = programs_for(&hooks, false);
        assert!(own.iter().all(|(hook, program)| hook == program));
        assert_eq!(own.len(), hooks.len());
        let empty = programs_for(&hooks, true);
        let covered: Vec<&str> = empty.iter().map(|&(hook, _)| hook).collect();
        assert_eq!(covered, hooks[..5]);
        // The kernel-side functions are named after their hooks.
        assert!(
            empty
                .iter()
                .all(|(hook, program)| *program == format!("empty_{hook}"))
        );
    }

    #[test]
    fn hooks_left_out_only_where_the_accounting_survives() {
        let optional = [
            "block_rq_complete",
            NR_RUNNING_HOOK,
            LOAD_SAMPLE_HOOK,
            TICK_STOP_HOOK,
        ];
        let all = hooks_to_attach(true, &optional, &[]);
        assert_eq!(
            all,
            [
                "sched_switch",
                "sched_wakeup",
                "sched_wakeup_new",
                NR_RUNNING_HOOK,
                "block_rq_complete",
                TICK_STOP_HOOK,
                MIGRATE_HOOK,
                LOAD_SAMPLE_HOOK,
            ]
        );
        // A kernel without NO_HZ never stops its tick: the load-sample hook goes alone.
        assert_eq!(
            hooks_to_attach(true, &optional[..3], &[]).last(),
            Some(&LOAD_SAMPLE_HOOK)
        );
        // A kernel without the `nr_running` tracepoint (before 5.9) goes without the hook.
        assert!(!hooks_to_attach(true, &optional[..1], &[]).contains(&NR_RUNNING_HOOK));
        // Without a way to the run queue the load-sample hooks have nothing to read.
        let without = hooks_to_attach(false, &optional, &[]);
        assert!(
            [LOAD_SAMPLE_HOOK, TICK_STOP_HOOK, MIGRATE_HOOK]
                .iter()
                .all(|h| !without.contains(h))
        );

        let left_out = [
            "sched_wakeup".to_owned(),
            NR_RUNNING_HOOK.to_owned(),
            LOAD_SAMPLE_HOOK.to_owned(),
        ];
        check_left_out(&left_out).unwrap();
        let lean = hooks_to_attach(true, &optional, &left_out);
        assert_eq!(
            lean,
            ["sched_switch", "sched_wakeup_new", "block_rq_complete"]
        );

        for essential in ["sched_switch", "sched_wakeup_new", "no_such_hook"] {
            let err = check_left_out(&[essential.to_owned()]).unwrap_err();
            assert!(err.to_string().contains(essential), "{err}");
        }
    }
}
