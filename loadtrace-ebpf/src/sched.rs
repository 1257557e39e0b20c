//! Scheduler hooks: context switches and wakeups drive the per-thread state machine.
//!
//! BTF tracepoints: no trace record is built for them, and their arguments are typed
//! pointers the verifier lets the programs read directly (a fault-safe load, no helper call),
//! which keeps the cost of every context switch on the machine down. The `task_struct` fields
//! come at offsets resolved from the running kernel's BTF and handed over as read-only globals
//! (see `maps::LAYOUT`): known to the verifier, so it checks each load against `task_struct`
//! itself, and one build runs on every kernel.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use loadtrace_common::{
    Counters, TaskEntry,
    state::{DEAD, RUNNABLE, RUNNING, SLEEPING, UNINTERRUPTIBLE, UNSEEN},
    task_state::{TASK_DEAD, TASK_FROZEN, TASK_NOLOAD, TASK_UNINTERRUPTIBLE},
};

use crate::{
    maps::{counters, layout},
    tasks::{begin_update, end_update, flush_dead, insert, lookup, new_entry, send_exit},
};

#[inline(always)]
fn read_u32(task: *const u8, offset: u32) -> u32 {
    unsafe { core::ptr::read_volatile(task.add(offset as usize) as *const u32) }
}

/// 0 when the kernel has no `sched_info.pcount`: the check that uses it is then skipped.
#[inline(always)]
fn read_pcount(task: *const u8) -> u32 {
    let off = layout().pcount_offset;
    if off == 0 { 0 } else { read_u32(task, off) }
}

#[inline(always)]
fn read_u8(task: *const u8, offset: u32) -> u8 {
    unsafe { core::ptr::read_volatile(task.add(offset as usize)) }
}

/// `sched_switch(bool preempt, task *prev, task *next[, unsigned int prev_state])`.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
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
    let cpu_busy_since = counters.last_switch_ns;
    counters.last_switch_ns = now;

    // prev is still current here; tid 0 is a CPU's idle task, which is never load.
    let pid_tgid = bpf_get_current_pid_tgid();
    let prev_tid = pid_tgid as u32;
    let last_in = counters.curr_tid as u32;
    if last_in != prev_tid && cpu_busy_since != 0 {
        unseen_handover(last_in, prev_tid, cpu_busy_since, counters);
    }
    if prev_tid != 0 {
        let tgid = (pid_tgid >> 32) as u32;
        switch_out(
            prev,
            prev_tid,
            tgid,
            preempt != 0,
            prev_state,
            now,
            cpu_busy_since,
            counters,
        );
    }
    let next_tid = read_u32(next, l.pid_offset);
    counters.curr_tid = next_tid as u64;
    if next_tid != 0 {
        switch_in(next, next_tid, now, counters);
    }
    0
}

/// Some kernels hand a CPU from one thread to another without a sched_switch event (seen on
/// a 6.18 host for the threads of a few sandboxing processes). The CPU's last incoming thread
/// then never shows leaving, and the outgoing one never showed arriving. Neither the time the
/// first spent after arriving nor what the second did before leaving can be known; both are
/// dropped, rather than guessed, from the CPU's last visible switch: without this the first
/// would stay on a CPU forever, and the second would have its wait counted as CPU time.
#[inline(never)]
fn unseen_handover(last_in: u32, prev_tid: u32, at: u64, counters: &mut Counters) {
    counters.unseen_handovers += 1;
    if last_in != 0
        && let Some(e) = lookup(last_in)
        && e.state == RUNNING
    {
        begin_update(e);
        e.state = UNSEEN;
        e.since_ns = at;
        end_update(e);
    }
    if prev_tid != 0
        && let Some(e) = lookup(prev_tid)
    {
        begin_update(e);
        e.state = RUNNING;
        e.since_ns = at;
        end_update(e);
    }
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

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn switch_out(
    prev: *const u8,
    tid: u32,
    tgid: u32,
    preempt: bool,
    prev_state: u32,
    now: u64,
    cpu_busy_since: u64,
    counters: &mut Counters,
) {
    let Some(e) = lookup(tid) else {
        // Running since before tracing began (or the map was full when it started): it has
        // been on this CPU at least since the CPU's previous switch.
        let mut e = new_entry(tgid, state_after_switch_out(preempt, prev_state), now);
        if cpu_busy_since != 0 {
            e.totals.on_cpu_ns = now - cpu_busy_since;
        }
        insert(tid, &e, counters);
        return;
    };
    begin_update(e);
    // Whatever the entry said, the thread was on this CPU since it last changed state.
    e.totals.on_cpu_ns += now.saturating_sub(e.since_ns);
    e.tgid = tgid;
    if prev_state & TASK_DEAD != 0 {
        end_update(e);
        send_exit(tid, e, now, counters);
        return;
    }
    // The kernel's own split: a switch is voluntary when the thread gave up the CPU to sleep.
    if !preempt && prev_state != 0 {
        e.totals.voluntary_switches += 1;
    } else {
        e.totals.involuntary_switches += 1;
    }
    let next_state = state_after_switch_out(preempt, prev_state);
    let l = layout();
    if next_state == UNINTERRUPTIBLE {
        e.iowait = (read_u8(prev, l.in_iowait_offset) as u32 & l.in_iowait_mask != 0) as u8;
    } else if next_state == RUNNABLE {
        e.pcount = read_pcount(prev);
    }
    e.state = next_state;
    e.since_ns = now;
    end_update(e);
}

#[inline(always)]
fn switch_in(next: *const u8, tid: u32, now: u64, counters: &mut Counters) {
    let Some(e) = lookup(tid) else {
        let tgid = read_u32(next, layout().tgid_offset);
        insert(tid, &new_entry(tgid, RUNNING, now), counters);
        return;
    };
    mark_running(e, now);
}

#[inline(always)]
fn mark_running(e: &mut TaskEntry, now: u64) {
    begin_update(e);
    // Runnable since it was woken or preempted. A thread that comes back still marked asleep
    // was never dequeued (its sleep was cancelled by a pending signal before it blocked), so
    // that time, too, was spent runnable.
    if e.state != RUNNING && e.state != DEAD && e.state != UNSEEN {
        e.totals.runqueue_ns += now.saturating_sub(e.since_ns);
    }
    e.state = RUNNING;
    e.since_ns = now;
    end_update(e);
}

/// A sleep ends at the wakeup: that is where the kernel moves the thread from
/// `nr_uninterruptible` back to `nr_running`.
#[inline(always)]
fn wake(task: *const u8, fresh: bool) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let l = layout();
    let tid = read_u32(task, l.pid_offset);
    if tid == 0 {
        return 0;
    }
    counters.wakeups += 1;
    match lookup(tid) {
        Some(e) if fresh => {
            // The id is being reused; anything left under it belongs to a dead thread.
            if e.state == DEAD {
                flush_dead(tid, e, counters);
            }
            let tgid = read_u32(task, l.tgid_offset);
            begin_update(e);
            *e = TaskEntry {
                seq: e.seq,
                pcount: read_pcount(task),
                ..new_entry(tgid, RUNNABLE, now)
            };
            end_update(e);
        }
        Some(e) => {
            let slept = now - e.since_ns;
            begin_update(e);
            match e.state {
                UNINTERRUPTIBLE => {
                    e.totals.uninterruptible_ns += slept;
                    if e.iowait != 0 {
                        e.totals.iowait_ns += slept;
                    }
                }
                SLEEPING => e.totals.sleeping_ns += slept,
                UNSEEN => {}
                RUNNABLE => {
                    // Still waiting for a CPU, the wakeup changes nothing, unless the kernel
                    // ran it meanwhile without a switch event: that wait is not known.
                    let pcount = read_pcount(task);
                    if e.pcount == 0 || pcount == e.pcount {
                        end_update(e);
                        return 0;
                    }
                    counters.unseen_handovers += 1;
                }
                // On a CPU (or gone): the wakeup changes nothing.
                _ => {
                    end_update(e);
                    return 0;
                }
            }
            e.state = RUNNABLE;
            e.since_ns = now;
            e.pcount = read_pcount(task);
            end_update(e);
        }
        None => {
            let tgid = read_u32(task, l.tgid_offset);
            let entry = TaskEntry {
                pcount: read_pcount(task),
                ..new_entry(tgid, RUNNABLE, now)
            };
            insert(tid, &entry, counters);
        }
    }
    0
}

/// `sched_wakeup(task *p)`.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    wake(ctx.arg(0), false)
}

/// `sched_wakeup_new(task *p)`: a thread's first wakeup, right after fork or clone.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    wake(ctx.arg(0), true)
}
