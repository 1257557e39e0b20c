//! Scheduler hooks. Every context switch on the machine runs `sched_switch`, so it does the
//! least it can: one clock read and one hash-map update, for the thread leaving the CPU, and
//! on kernels that keep a steal clock one read of it.
//!
//! - The thread arriving is only named in the CPU's slot (a per-CPU array, no hashing); its
//!   entry is brought up to date when it leaves.
//! - A wakeup of a sleeping thread (one hash lookup) stamps where its sleep ended: where the
//!   kernel moved it back to `nr_running`, which the `nr_running` hook saw just before. Where
//!   no stamp was seen, the kernel's own `sched_info.run_delay` says, when the thread leaves
//!   the CPU, how long it waited in a run queue before this run; the rest of the time since
//!   it last left was the sleep.
//! - A thread going to sleep stops counting at its dequeue, also seen by that hook, before
//!   the kernel picks the next thread; the switch event comes after the pick.
//! - Where the kernel switches without the event (counted as `unseen_handovers`), the thread
//!   found leaving arrived at a moment nothing marked: its CPU time by the kernel's own count
//!   (`se.sum_exec_runtime`) since it last left says how long it ran, so when it arrived.
//! - On a virtual machine the hypervisor can run something else on a CPU while a thread
//!   holds it. The run queue's steal clock, read at each switch, says how much of each run
//!   was taken so: the kernel leaves that out of the thread's CPU time, yet the thread was
//!   running, and load, throughout.
//! - New threads are hooked (`sched_wakeup_new`, once per fork) so that their wait before
//!   their first run is counted from the fork.
//! - On 6.12+ a sleeper can stay queued (delayed dequeue), still counted in `nr_running`. The
//!   CPU it stays on follows it in a few per-CPU slots and checks them at its next switches
//!   and drops of its `nr_running`: the kernel dequeues such a sleeper while picking the next
//!   task, which can be the one already running (then no switch follows).
//!
//! BTF tracepoints: no trace record is built, and their arguments are typed pointers the
//! verifier lets the programs read directly (no helper call). The `task_struct` offsets are
//! resolved from the running kernel's BTF and handed over as read-only globals.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use loadtrace_common::{
    Counters, DELAYED_SLOTS, TaskEntry,
    state::{QUEUED_ASLEEP, RUNNABLE, SLEEPING, UNINTERRUPTIBLE},
    task_state::{TASK_DEAD, TASK_FROZEN, TASK_NOLOAD, TASK_UNINTERRUPTIBLE},
};

use crate::{
    loadavg::{Samples, calc_load_update, left_idle},
    maps::{counters, layout},
    tasks::{begin_update, end_update, insert, lookup, new_entry, send_exit},
};

/// What userspace puts in a CPU's `curr_tid` before attaching: the CPU runs someone.
const UNKNOWN_TID: u32 = u32::MAX;

#[inline(always)]
fn read_u32(task: *const u8, offset: u32) -> u32 {
    unsafe { core::ptr::read_volatile(task.add(offset as usize) as *const u32) }
}

#[inline(always)]
fn read_u64(task: *const u8, offset: u32) -> u64 {
    unsafe { core::ptr::read_volatile(task.add(offset as usize) as *const u64) }
}

#[inline(always)]
fn read_u8(task: *const u8, offset: u32) -> u8 {
    unsafe { core::ptr::read_volatile(task.add(offset as usize)) }
}

/// A checked read, for pointers the verifier does not know (kept from an earlier event, or
/// read out of kernel memory).
#[inline(always)]
pub fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }.ok()
}

/// `sched_switch(bool preempt, task *prev, task *next[, unsigned int prev_state])`.
#[btf_tracepoint(function = "sched_switch")]
#[inline(always)]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let l = layout();
    let preempt: u64 = ctx.arg(0);
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u32 = if l.prev_state_arg != 0 {
        ctx.arg::<u64>(3) as u32
    } else {
        read_u32(prev, l.state_offset)
    };

    counters.switches += 1;
    let left = departure_time(counters, preempt != 0, prev_state);
    // Stale once the CPU switches: an enqueue's stamp is for a wakeup within the same run.
    counters.queue_add_ns = 0;
    // The offset test first: a constant, so kernels without delayed dequeue drop the call.
    if l.sched_delayed_offset != 0 && counters.delayed_count != 0 {
        settle_delayed(counters, unsafe { bpf_ktime_get_ns() });
    }
    let stolen = steal_since_last_switch(prev, counters);
    let arrived = counters.last_switch_ns;
    let last_in = counters.curr_tid as u32;
    // The next thread's run begins where the last one's ended, as in the kernel's books.
    counters.last_switch_ns = left;
    counters.curr_tid = u64::from(read_u32(next, l.pid_offset));
    counters.curr_task = next as u64;
    // A thread a timer interrupt found here after an unseen handover: its arrival is known
    // only from its CPU time.
    let arrival_unknown = core::mem::replace(&mut counters.arrival_unknown, 0) != 0;

    // Read from prev like next (a typed pointer, no helper call); tid 0 is a CPU's idle
    // task, which is never load.
    let prev_tid = read_u32(prev, l.pid_offset);
    if prev_tid == 0 {
        left_idle(counters, || {
            read_u64(run_queue_of(prev), l.rq_calc_load_update_offset)
        });
    }
    // UNKNOWN_TID: tracing began while this CPU ran someone; `arrived` is that moment.
    let unseen = last_in != prev_tid && last_in != UNKNOWN_TID && arrived != 0;
    if unseen {
        counters.unseen_handovers += 1;
    }
    let unseen = unseen || arrival_unknown;
    if prev_tid != 0 && arrived != 0 {
        let departure = Departure {
            task: prev,
            tid: prev_tid,
            tgid: read_u32(prev, l.tgid_offset),
            arrived,
            unseen,
            now: left,
            run_delay: read_u64(prev, l.run_delay_offset),
            sum_exec: read_u64(prev, l.sum_exec_offset),
            stolen,
            preempt: preempt != 0,
            prev_state,
        };
        leave(prev, &departure, counters);
    }
    0
}

/// A thread leaving a CPU.
struct Departure {
    task: *const u8,
    tid: u32,
    tgid: u32,
    /// When it (or, after an unseen handover, whoever the CPU ran) arrived on the CPU.
    arrived: u64,
    /// The CPU switched to this thread without an event, some time after `arrived`.
    unseen: bool,
    /// When it left: the switch, or its dequeue before it if it went to sleep.
    now: u64,
    /// The kernel's total run-queue wait of the thread.
    run_delay: u64,
    /// The kernel's total CPU time of the thread.
    sum_exec: u64,
    /// Steal time on this CPU since `arrived`.
    stolen: u64,
    preempt: bool,
    prev_state: u32,
}

/// When the thread leaving stopped counting toward load. One going to sleep left
/// `nr_running` at its dequeue, which the `nr_running` hook stamped; the pick of the next
/// thread and the scheduler's pressure accounting come between that and this event (some 2 us
/// of each of a disk writer's sleeps on this host's 6.18, more under emulation), and the
/// kernel's own accounting (schedstat) ends the run before the dequeue. A preempted thread
/// stays in `nr_running`: its run ends here. The stamp stands in for this event's own clock
/// read, so a sleep's switch reads the clock no more often than before.
#[inline(always)]
fn departure_time(counters: &mut Counters, preempt: bool, prev_state: u32) -> u64 {
    let dropped = core::mem::replace(&mut counters.queue_drop_ns, 0);
    if !preempt && prev_state != 0 && dropped != 0 && dropped >= counters.last_switch_ns {
        dropped
    } else {
        unsafe { bpf_ktime_get_ns() }
    }
}

/// Steal time on this CPU since its previous switch: time the hypervisor ran something else
/// while the thread leaving held the CPU. The kernel brings the run queue's clocks, its steal
/// clock included, up to date in `__schedule()` before this event. Reached from `prev` (it
/// runs here, so its run queue is this CPU's) through typed pointers: plain loads the
/// verifier checks, no helper call; none at all where the kernel keeps no steal clock.
#[inline(always)]
fn steal_since_last_switch(prev: *const u8, counters: &mut Counters) -> u64 {
    let l = layout();
    // Set only where the path to the run queue exists too.
    if l.rq_steal_offset == 0 {
        return 0;
    }
    let steal = read_u64(run_queue_of(prev), l.rq_steal_offset);
    let last = core::mem::replace(&mut counters.steal_ns, steal);
    if last == 0 {
        0
    } else {
        steal.saturating_sub(last)
    }
}

/// The run queue of a task that is running (`se.cfs_rq->rq`), through typed pointers: plain
/// loads. Only where the layout has the path (held changes and steal offsets imply it).
#[inline(always)]
fn run_queue_of(task: *const u8) -> *const u8 {
    let l = layout();
    let cfs_rq = read_u64(task, l.cfs_rq_offset) as *const u8;
    read_u64(cfs_rq, l.cfs_rq_rq_offset) as *const u8
}

/// The state a thread leaves the CPU in, by the kernel's own rule for `nr_uninterruptible`:
/// a preemption is not a sleep; D counts unless TASK_NOLOAD (TASK_IDLE) or frozen.
#[inline(always)]
fn state_after_switch_out(preempt: bool, prev_state: u32) -> u8 {
    if preempt || prev_state == 0 {
        RUNNABLE
    } else if prev_state & TASK_UNINTERRUPTIBLE != 0
        && prev_state & (TASK_NOLOAD | TASK_FROZEN) == 0
    {
        UNINTERRUPTIBLE
    } else {
        SLEEPING
    }
}

/// Checks, from a timer interrupt or the idle loop stopping its tick, that the thread running
/// here is the one the last switch named. Some kernels hand a CPU over without a switch event
/// (see `unseen_handovers`); the CPU's next switch notices, but until then the thread named
/// would stay on the CPU, and load at every sample, for as long as the CPU idles. Its run is
/// closed here instead, where it sleeps now, at the latest moment its CPU time allows; the
/// thread found running arrived after that, when exactly its own CPU time tells at its
/// departure.
#[inline(always)]
pub fn notice_unseen_handover(counters: &mut Counters, current: *const u8) {
    let named = counters.curr_tid;
    if named == u64::from(UNKNOWN_TID) || counters.last_switch_ns == 0 {
        return;
    }
    let l = layout();
    let Some(pid) = read_at::<u32>(current, l.pid_offset) else {
        return;
    };
    if u64::from(pid) == named {
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    counters.unseen_handovers += 1;
    let arrived = counters.last_switch_ns;
    let left = if named == 0 {
        // Out of idle: as a switch from the idle task would.
        left_idle(counters, || calc_load_update(current).unwrap_or(0));
        arrived
    } else {
        let unknown = counters.arrival_unknown != 0;
        close_unseen_run(
            named as u32,
            counters.curr_task as *const u8,
            arrived,
            unknown,
            now,
            counters,
        )
    };
    counters.curr_tid = u64::from(pid);
    counters.curr_task = current as u64;
    counters.last_switch_ns = left;
    counters.arrival_unknown = (pid != 0) as u64;
}

/// Closes the run of a thread that left its CPU without an event, from checked reads of its
/// `task_struct` (kept from the switch that brought it): it ran for the CPU time the kernel
/// counted since it last left, from `arrived` on (or, where its arrival was not seen either,
/// up to `now`), and sleeps since. Returns when it left; `arrived` where its run is not closed
/// (gone, exiting: its exit is followed on its own, or runnable again).
#[inline(always)]
fn close_unseen_run(
    tid: u32,
    task: *const u8,
    arrived: u64,
    arrival_unknown: bool,
    now: u64,
    counters: &mut Counters,
) -> u64 {
    let l = layout();
    if read_at::<u32>(task, l.pid_offset) != Some(tid) {
        return arrived;
    }
    let (Some(state), Some(sum_exec), Some(run_delay)) = (
        read_at::<u32>(task, l.state_offset),
        read_at::<u64>(task, l.sum_exec_offset),
        read_at::<u64>(task, l.run_delay_offset),
    ) else {
        return arrived;
    };
    // Runnable again (queued, or running on another CPU, perhaps unseen there too): its
    // entry is left to its next departure seen, as it was before this check. Closing it here
    // as runnable would keep it so, wrongly, through sleeps whose switches go unseen.
    if state == 0 || state & TASK_DEAD != 0 {
        return arrived;
    }
    let Some(e) = lookup(tid) else {
        return arrived;
    };
    let left = if arrival_unknown {
        now
    } else {
        arrived
            .saturating_add(sum_exec.saturating_sub(e.sum_exec_ns))
            .min(now)
    };
    let d = Departure {
        task,
        tid,
        tgid: e.tgid,
        arrived,
        unseen: arrival_unknown,
        now: left,
        run_delay,
        sum_exec,
        stolen: 0,
        preempt: false,
        prev_state: state,
    };
    let next_state = state_after_switch_out(false, state);
    let samples = Samples::get();
    if next_state == SLEEPING {
        samples.note_fold_lag(task, left, -1, counters);
    }
    let iowait = if next_state == UNINTERRUPTIBLE {
        read_at::<u8>(task, l.in_iowait_offset).map_or(0, iowait_bit)
    } else {
        0
    };
    close_run(e, &d, next_state, iowait, samples, counters);
    left
}

/// A state that a wakeup ends.
#[inline(always)]
fn asleep(state: u8) -> bool {
    state == UNINTERRUPTIBLE || state == SLEEPING || state == QUEUED_ASLEEP
}

/// A sleeper the fair class kept queued is still load to the kernel: followed in a slot of
/// this CPU until it is dequeued. `false` when every slot is taken (counted).
#[inline(always)]
fn stays_queued(d: &Departure, counters: &mut Counters) -> bool {
    let offset = layout().sched_delayed_offset;
    if offset == 0 || read_u8(d.task, offset) == 0 {
        return false;
    }
    for i in 0..DELAYED_SLOTS {
        if counters.delayed_tids[i] == 0 {
            counters.delayed_tids[i] = u64::from(d.tid);
            counters.delayed_tasks[i] = d.task as u64;
            counters.delayed_count += 1;
            return true;
        }
    }
    counters.delayed_unfollowed += 1;
    false
}

/// Ends the queued part of the sleeps of followed threads the kernel has dequeued since (it
/// does so while picking the next task, so this switch is when). A thread woken meanwhile
/// is left to its own next switch, which knows when its sleep ended.
#[inline(always)]
pub fn settle_delayed(counters: &mut Counters, now: u64) {
    let l = layout();
    for i in 0..DELAYED_SLOTS {
        let tid = counters.delayed_tids[i];
        if tid == 0 {
            continue;
        }
        let task = counters.delayed_tasks[i] as *const u8;
        // Woken meanwhile, it may have run elsewhere and exited: checked reads, and a task
        // that is no longer this thread ends the follow without touching any entry.
        let pid = unsafe {
            bpf_probe_read_kernel(task.wrapping_add(l.pid_offset as usize) as *const u32)
        };
        let same = pid.is_ok_and(|pid| u64::from(pid) == tid);
        let queued: u8 =
            unsafe { bpf_probe_read_kernel(task.wrapping_add(l.sched_delayed_offset as usize)) }
                .unwrap_or(0);
        if same && queued != 0 {
            continue;
        }
        counters.delayed_tids[i] = 0;
        counters.delayed_count = counters.delayed_count.saturating_sub(1);
        if !same {
            continue;
        }
        if let Some(e) = lookup(tid as u32)
            && e.state == QUEUED_ASLEEP
            && e.woken_ns <= e.since_ns
        {
            let samples = Samples::get();
            samples.note_fold_lag(task, now, -1, counters);
            begin_update(e);
            // Queued, so load, at a sample taken meanwhile.
            let sample = samples.latest(now);
            if sample > e.since_ns {
                e.sample_ns = sample;
                e.sample_active = 1;
            }
            e.totals.queued_asleep_ns += now.saturating_sub(e.since_ns);
            e.state = SLEEPING;
            e.since_ns = now;
            end_update(e);
        }
    }
}

/// When a thread arrived that the CPU switched to without an event: the CPU ran someone else
/// from the last switch seen until then. The kernel's own count of the thread's CPU time
/// since it last left says how long this run was. (That count leaves out steal time, and
/// interrupt time where the kernel accounts it apart: the arrival can come out a little
/// late, never early.)
#[inline(always)]
fn arrival_after_unseen_switch(d: &Departure, e: &TaskEntry) -> u64 {
    let ran = d.sum_exec.saturating_sub(e.sum_exec_ns);
    d.now.saturating_sub(ran).max(d.arrived)
}

#[inline(always)]
fn leave(prev: *const u8, d: &Departure, counters: &mut Counters) {
    let mut next_state = state_after_switch_out(d.preempt, d.prev_state);
    // An exiting thread is never left queued (TASK_DEAD is a special state to the kernel).
    if next_state == SLEEPING && d.prev_state & TASK_DEAD == 0 && stays_queued(d, counters) {
        next_state = QUEUED_ASLEEP;
    }
    let samples = Samples::get();
    // Out of the run queue's count (a D sleep moves it to `nr_uninterruptible`: no change).
    if next_state == SLEEPING {
        samples.note_fold_lag(prev, d.now, -1, counters);
    }
    let Some(e) = lookup(d.tid) else {
        if d.prev_state & TASK_DEAD != 0 {
            // Known only at its last switch: nothing to follow, and an entry would never go.
            return;
        }
        // First sight of a thread that existed before tracing began: its history before this
        // run is not known; from here on it is.
        let mut e = new_entry(d.tgid, next_state, d.now);
        // Born when it arrived: userspace, which saw it on this CPU, knows it by that time.
        e.birth_ns = d.arrived;
        e.totals.on_cpu_ns = d.now.saturating_sub(d.arrived);
        e.totals.stolen_ns = d.stolen.min(e.totals.on_cpu_ns);
        e.run_delay_ns = d.run_delay;
        e.sum_exec_ns = d.sum_exec;
        let sample = samples.latest(d.now);
        if sample != 0 && sample >= d.arrived {
            e.sample_ns = sample;
            e.sample_active = 1;
        }
        if next_state == UNINTERRUPTIBLE {
            e.iowait = in_iowait(prev);
        }
        insert(d.tid, &e, counters);
        return;
    };
    let iowait = if next_state == UNINTERRUPTIBLE {
        in_iowait(prev)
    } else {
        0
    };
    close_run(e, d, next_state, iowait, samples, counters);
}

/// Brings a thread's entry up to its departure: the state it left in, the wait before this
/// run and the run itself, and the state it is in from now on (`iowait`: of a D sleep).
#[inline(always)]
fn close_run(
    e: &mut TaskEntry,
    d: &Departure,
    next_state: u8,
    iowait: u8,
    samples: Samples,
    counters: &mut Counters,
) {
    begin_update(e);
    let arrived = if d.unseen {
        arrival_after_unseen_switch(d, e)
    } else {
        d.arrived
    };
    let on_cpu = d.now.saturating_sub(arrived);
    // Since it last left: first the state it left in, then a wait in a run queue (the
    // kernel's measure), then this run.
    let away = arrived.saturating_sub(e.since_ns);
    // A sleep ends at its wakeup, seen by `sched_wakeup`. Without a stamp it ends where the
    // kernel's run-queue wait began, whose clock can lag a wakeup on an idle CPU by the time
    // that CPU takes to wake.
    let woken = asleep(e.state) && e.woken_ns > e.since_ns && e.woken_ns <= arrived;
    let waited = if woken {
        arrived - e.woken_ns
    } else {
        d.run_delay.saturating_sub(e.run_delay_ns).min(away)
    };
    let slept = away - waited;
    // A load sample inside what this closes: load unless it fell in a sleep that does not
    // count, before the wait that ended it.
    let sample = samples.latest(d.now);
    if sample > e.since_ns {
        e.sample_ns = sample;
        e.sample_active = (e.state != SLEEPING || sample >= arrived - waited) as u8;
    }
    e.totals.runqueue_ns += waited;
    match e.state {
        UNINTERRUPTIBLE => {
            e.totals.uninterruptible_ns += slept;
            if e.iowait != 0 {
                e.totals.iowait_ns += slept;
            }
        }
        SLEEPING => e.totals.sleeping_ns += slept,
        QUEUED_ASLEEP => e.totals.queued_asleep_ns += slept,
        // Runnable all along: what the kernel's clock did not see as waiting still was.
        _ => e.totals.runqueue_ns += slept,
    }
    e.totals.on_cpu_ns += on_cpu;
    e.totals.stolen_ns += d.stolen.min(on_cpu);
    e.tgid = d.tgid;
    e.run_delay_ns = d.run_delay;
    e.sum_exec_ns = d.sum_exec;
    if d.prev_state & TASK_DEAD != 0 {
        e.since_ns = d.now;
        end_update(e);
        send_exit(d.tid, e, d.now, counters);
        return;
    }
    // The kernel's own split: a switch is voluntary when the thread gave up the CPU to sleep.
    if !d.preempt && d.prev_state != 0 {
        e.totals.voluntary_switches += 1;
    } else {
        e.totals.involuntary_switches += 1;
    }
    e.iowait = iowait;
    e.state = next_state;
    e.since_ns = d.now;
    end_update(e);
}

#[inline(always)]
fn in_iowait(task: *const u8) -> u8 {
    iowait_bit(read_u8(task, layout().in_iowait_offset))
}

/// `in_iowait` out of the byte that holds the bitfield.
#[inline(always)]
fn iowait_bit(byte: u8) -> u8 {
    (u32::from(byte) & layout().in_iowait_mask != 0) as u8
}

/// `sched_update_nr_running_tp(rq *rq, int change)`: the kernel moving threads in and out of
/// `nr_running`, the count its load average takes, on the queue given.
///
/// - A rise is a wakeup's enqueue (or a move between CPUs): stamped for `sched_wakeup`, which
///   fires after the enqueue's preemption check, to place the sleep's end.
/// - A drop on this CPU's queue while the thread running here is not runnable is that thread
///   dequeuing itself to sleep: stamped for `sched_switch`, which fires after the pick of the
///   next thread.
/// - On 6.12+, where sleepers can stay queued, the kernel dequeues such a sleeper while picking
///   the next task, and when it picks the thread that was running already there is no switch
///   to notice it at: at a drop the followed sleepers are checked again.
#[btf_tracepoint(function = "sched_update_nr_running_tp")]
#[inline(always)]
pub fn sched_update_nr_running_tp(ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let change = ctx.arg::<u64>(1) as i32;
    if change > 0 {
        counters.queue_add_ns = unsafe { bpf_ktime_get_ns() };
        counters.queue_add_rq = ctx.arg::<u64>(0);
        return 0;
    }
    let l = layout();
    // A typed pointer: plain loads.
    let current = unsafe { generated::bpf_get_current_task_btf() } as *const u8;
    // Its own queue only: a CPU about to idle pulls threads from other CPUs' queues while its
    // sleeper is still the current task, microseconds after the sleeper's own dequeue.
    let going_to_sleep = read_u32(current, l.state_offset) != 0
        && (l.cfs_rq_offset == 0 || run_queue_of(current) as u64 == ctx.arg::<u64>(0));
    let delayed = l.sched_delayed_offset != 0 && counters.delayed_count != 0;
    if !going_to_sleep && !delayed {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if going_to_sleep {
        counters.queue_drop_ns = now;
    }
    if delayed {
        settle_delayed(counters, now);
    }
    0
}

/// When the thread being woken joined `nr_running`: this CPU's enqueue just before, if it
/// was onto the thread's run queue (a wakeup of a thread still queued enqueues nothing). The
/// stamp is taken either way, so that it serves one wakeup only; it stands in for the
/// wakeup's own clock read.
#[inline(always)]
fn enqueue_stamp(task: *const u8) -> Option<u64> {
    let counters = counters()?;
    let added = core::mem::replace(&mut counters.queue_add_ns, 0);
    if added == 0
        || (layout().cfs_rq_offset != 0 && counters.queue_add_rq != run_queue_of(task) as u64)
    {
        return None;
    }
    Some(added)
}

/// `sched_wakeup(task *p)`: stamps the end of a sleep. The kernel's run-queue clock can lag
/// a wakeup by the time an idle CPU takes to wake (skipped clock updates), and that lag is
/// run-queue wait to the kernel's own accounting, so it is measured here, not inferred.
///
/// Only the first wakeup after a thread left the CPU ends its sleep. A thread can be woken
/// again while it runs: it marks itself asleep, and its I/O completes before it calls
/// `schedule()` (`ttwu_runnable`, the tracepoint fires all the same). `e.state` still holds
/// the sleep before this run then, and a new stamp would erase that sleep's real end.
#[btf_tracepoint(function = "sched_wakeup")]
#[inline(always)]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let l = layout();
    let enqueued = enqueue_stamp(task);
    let now = || enqueued.unwrap_or_else(|| unsafe { bpf_ktime_get_ns() });
    let Some(e) = lookup(read_u32(task, l.pid_offset)) else {
        // Asleep since before tracing began: into the count of the queue it joins.
        if let Some(counters) = counters() {
            Samples::get().note_unknown_wakeup(task, now(), counters);
        }
        return 0;
    };
    if asleep(e.state) && e.woken_ns <= e.since_ns {
        let now = now();
        // From a D sleep it was in the count already; a queued sleeper never left it.
        if e.state == SLEEPING
            && let Some(counters) = counters()
        {
            Samples::get().note_fold_lag(task, now, 1, counters);
        }
        begin_update(e);
        e.woken_ns = now;
        end_update(e);
    }
    0
}

/// `sched_wakeup_new(task *p)`: a thread's first wakeup, right after fork or clone. Its wait
/// for its first run is counted from here; a dead thread's totals still waiting under the
/// same id are sent first.
#[btf_tracepoint(function = "sched_wakeup_new")]
#[inline(always)]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let task: *const u8 = ctx.arg(0);
    let now = enqueue_stamp(task).unwrap_or_else(|| unsafe { bpf_ktime_get_ns() });
    let l = layout();
    let tid = read_u32(task, l.pid_offset);
    if tid == 0 {
        return 0;
    }
    Samples::get().note_fold_lag(task, now, 1, counters);
    let entry = TaskEntry {
        run_delay_ns: read_u64(task, l.run_delay_offset),
        sum_exec_ns: read_u64(task, l.sum_exec_offset),
        ..new_entry(read_u32(task, l.tgid_offset), RUNNABLE, now)
    };
    match lookup(tid) {
        Some(e) => {
            crate::tasks::flush_if_dead(tid, e, counters);
            begin_update(e);
            *e = TaskEntry {
                seq: e.seq,
                ..entry
            };
            end_update(e);
        }
        None => insert(tid, &entry, counters),
    }
    0
}
