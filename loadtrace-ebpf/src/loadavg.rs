//! The kernel's load-average samples. Every LOAD_FREQ (5 s and a tick) each CPU's tick counts
//! its run queue's running and uninterruptible tasks and moves the queue's `calc_load_update`
//! on to the jiffy of the next sample. A timer interrupt that ends with that jiffy moved is
//! one that took a sample: its time is handed to userspace, which works out when the next
//! samples fall and tells the other hooks (`LOAD_SAMPLE_AT`), so that every thread's state
//! at those instants can be counted as the kernel counts it.
//!
//! Timer interrupts are a few hundred per second per CPU, whatever the switch rate: this hook
//! costs nothing on the scheduler's paths.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use loadtrace_common::{Counters, LoadSampleAt};

use crate::{
    maps::{LOAD_SAMPLE_AT, LOAD_SAMPLE_SEEN, counters, counters_of, layout},
    sched::{notice_unseen_handover, read_at, settle_delayed},
};

/// `hrtimer_expire_exit(struct hrtimer *)`: a timer's handler has run; the tick's is where
/// the kernel samples.
#[btf_tracepoint(function = "hrtimer_expire_exit")]
#[inline(always)]
pub fn hrtimer_expire_exit(_ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    let current = unsafe { bpf_get_current_task() } as *const u8;
    check_handover(counters, current);
    // Jiffies first: the clock read after it is at or after the jiffy's start. The clock is
    // read only for a jiffy this CPU has not seen yet.
    let jiffies = unsafe { bpf_jiffies64() };
    if counters.jiffy_seen != jiffies {
        counters.jiffy_seen = jiffies;
        counters.jiffy_seen_ns = unsafe { bpf_ktime_get_ns() };
    }
    let Some(rq) = run_queue(current) else {
        return 0;
    };
    // Where a thread moved here from another CPU is counted (`sched_migrate_task`).
    counters.rq = rq as u64;
    let Some(jiffy) = read_at::<u64>(rq, layout().rq_calc_load_update_offset) else {
        return 0;
    };
    let before = counters.calc_load_update;
    if jiffy == before {
        return 0;
    }
    counters.calc_load_update = jiffy;
    // 0: the first look on this CPU, which says nothing of when the jiffy moved.
    if before == 0 {
        return 0;
    }
    // Moved while the tick is stopped: no CPU leaves idle in an interrupt, so this is the
    // tick the stopped one was left as, and it counted the queue, held-back changes included,
    // into the sample they were held for (a queue idle through earlier samples moves one
    // period at a time, from a jiffy before it).
    if counters.tick_stopped != 0 && before <= counters.pending_lag_jiffy {
        let held = counters.pending_lag;
        counters.pending_lag = 0;
        counters.pending_before = 0;
        add_fold_lag(counters, counters.pending_lag_jiffy, held);
    }
    let Some(seen) = LOAD_SAMPLE_SEEN.get_ptr_mut(0) else {
        return 0;
    };
    let seen = unsafe { &mut *seen };
    // Another CPU saw this sample first (the CPUs' ticks take it within a tick of each
    // other; one back from idle catches up later still).
    if jiffy <= seen.jiffy_after {
        return 0;
    }
    seen.jiffy_before = before;
    seen.jiffy_after = jiffy;
    seen.seen_ns = unsafe { bpf_ktime_get_ns() };
    0
}

/// The `rq->calc_load_update` of the CPU `task` runs on.
#[inline(always)]
pub fn calc_load_update(task: *const u8) -> Option<u64> {
    read_at(run_queue(task)?, layout().rq_calc_load_update_offset)
}

/// A task's run queue, reached through its fair-class run queue (every task has one,
/// whatever its class; the idle task too).
#[inline(always)]
fn run_queue(task: *const u8) -> Option<*const u8> {
    let l = layout();
    let cfs_rq: u64 = read_at(task, l.cfs_rq_offset)?;
    let rq: u64 = read_at(cfs_rq as *const u8, l.cfs_rq_rq_offset)?;
    Some(rq as *const u8)
}

/// When the kernel's load samples fall, as userspace last placed them: looked up once per
/// event, however many of the hook's steps ask.
#[derive(Clone, Copy)]
pub struct Samples(Option<&'static LoadSampleAt>);

impl Samples {
    #[inline(always)]
    pub fn get() -> Self {
        Self(LOAD_SAMPLE_AT.get(0))
    }

    /// The latest load sample at or before `now` (0: none known).
    #[inline(always)]
    pub fn latest(self, now: u64) -> u64 {
        match self.0 {
            Some(at) if at.next_ns != 0 && now >= at.next_ns => at.next_ns,
            Some(at) => at.prev_ns,
            None => 0,
        }
    }

    /// Notes a change of `delta` to the load count of `task`'s run queue (+1: it joined
    /// `nr_running` from a sleep that does not count; -1: it left for one) where the count of
    /// every thread at the sample's instant and the kernel's sample would differ by it:
    /// - after the instant, on a queue that has not yet counted for the sample: the kernel's
    ///   sample holds the change, the instant's count does not;
    /// - before the instant (the instant is placed a little after the jiffy began), on a
    ///   queue that has counted already: the instant's count holds it, the sample does not.
    ///
    /// Outside the few ticks around a sample this is a comparison. The thread must be one
    /// the instant's count knows.
    #[inline(always)]
    pub fn note_fold_lag(self, task: *const u8, now: u64, delta: i64, counters: &mut Counters) {
        if !self.near_sample(now) {
            return;
        }
        if let Some(rq) = run_queue(task) {
            self.note_fold_lag_on(rq, now, delta, counters);
        }
    }

    /// Whether `now` falls in the few ticks around a sample where changes are noted.
    #[inline(always)]
    fn near_sample(self, now: u64) -> bool {
        self.0.is_some_and(|at| {
            at.next_ns != 0 && now >= at.next_ns.saturating_sub(EARLY_NS) && now < at.fold_ns
        })
    }

    /// `note_fold_lag` for a change to the run queue `rq`; `now` is near the sample. Whether
    /// the queue had counted for the sample already.
    #[inline(always)]
    fn note_fold_lag_on(
        self,
        rq: *const u8,
        now: u64,
        delta: i64,
        counters: &mut Counters,
    ) -> bool {
        let Some(at) = self.0 else {
            return false;
        };
        let before_instant = now < at.next_ns;
        let l = layout();
        let Some(owes) = read_at::<u64>(rq, l.rq_calc_load_update_offset) else {
            return false;
        };
        if owes > at.next_jiffy {
            if before_instant {
                add_fold_lag(counters, at.next_jiffy, -delta);
            }
            return true;
        }
        // The queue's CPU stopped its tick in idle: held back until it is known whether a
        // tick counts the queue again before the CPU leaves idle.
        let Some(cpu) = read_at::<u32>(rq, l.rq_cpu_offset) else {
            return false;
        };
        let here = unsafe { bpf_get_smp_processor_id() };
        if cpu == here {
            if counters.tick_stopped != 0 {
                hold_fold_lag(counters, at.next_jiffy, delta, before_instant);
                return false;
            }
        } else if let Some(target) = counters_of(cpu)
            && unsafe { (*target).tick_stopped } != 0
        {
            hold_fold_lag(
                unsafe { &mut *target },
                at.next_jiffy,
                delta,
                before_instant,
            );
            return false;
        }
        if !before_instant {
            add_fold_lag(counters, at.next_jiffy, delta);
        }
        false
    }

    /// A wakeup of a thread asleep since before tracing began, which the instant's count
    /// does not know: only the kernel's later count of its queue can hold it.
    #[inline(always)]
    pub fn note_unknown_wakeup(self, task: *const u8, now: u64, counters: &mut Counters) {
        if let Some(at) = self.0
            && now >= at.next_ns
        {
            self.note_fold_lag(task, now, 1, counters);
        }
    }
}

/// `task_struct::on_rq` while a queued thread is taken off one CPU's run queue and put on
/// another's (kernel/sched/sched.h).
const TASK_ON_RQ_MIGRATING: u32 = 2;

/// `sched_migrate_task(task *p, int dest_cpu)`: a thread is about to move to another CPU. One
/// still queued takes its place in `nr_running` along: where one of the two queues has
/// counted for a sample and the other has not, the kernel's sample holds it twice, or not at
/// all, while the instant's count holds it once. A sleeper being woken elsewhere (`on_rq` 0)
/// joins a queue only at its wakeup, which that hook notes.
///
/// Migrations are a small share of switches; away from a sample this is one map lookup and
/// a clock read.
#[btf_tracepoint(function = "sched_migrate_task")]
#[inline(always)]
pub fn sched_migrate_task(ctx: BtfTracePointContext) -> i32 {
    let samples = Samples::get();
    let now = unsafe { bpf_ktime_get_ns() };
    if !samples.near_sample(now) {
        return 0;
    }
    let Some(counters) = counters() else {
        return 0;
    };
    let task: *const u8 = ctx.arg(0);
    let dest = ctx.arg::<u64>(1) as u32;
    let Some(on_rq) = read_at::<u32>(task, layout().on_rq_offset) else {
        return 0;
    };
    if on_rq != TASK_ON_RQ_MIGRATING {
        return 0;
    }
    let (Some(from), Some(to)) = (run_queue(task), counters_of(dest)) else {
        return 0;
    };
    let to = unsafe { (*to).rq } as *const u8;
    if to.is_null() || to == from {
        return 0;
    }
    let from_counted = samples.note_fold_lag_on(from, now, -1, counters);
    let to_counted = samples.note_fold_lag_on(to, now, 1, counters);
    if from_counted != to_counted {
        counters.sample_migrations += 1;
    }
    0
}

/// How long before a sample's instant a queue may already have counted for it: the instant
/// is placed from when the CPUs' timer interrupts saw each jiffy, a little after it began,
/// and a thread woken on a CPU right after its tick counted falls between the two. A jiffy
/// at HZ=250; at higher HZ the margin is only wider than needed.
const EARLY_NS: u64 = 4_000_000;

/// Adds to this CPU's fold lag for the sample of `jiffy`; a sample older than the one the lag
/// is kept for is past counting.
#[inline(always)]
fn add_fold_lag(counters: &mut Counters, jiffy: u64, delta: i64) {
    if jiffy < counters.fold_lag_jiffy {
        return;
    }
    if counters.fold_lag_jiffy != jiffy {
        counters.fold_lag_jiffy = jiffy;
        counters.fold_lag = 0;
    }
    counters.fold_lag += delta;
}

/// Holds a change to an idle CPU's queue, from that CPU or another: those after the
/// instant join the fold lag if a tick counts the queue; those before it, in the instant's
/// count, are taken out again if the CPU leaves idle first. Not atomic (the BPF target has no
/// atomic read-modify-write in Rust): two CPUs adding to an idle CPU's slot within the same
/// few instructions, in the few ticks around a sample, would lose one change.
#[inline(always)]
fn hold_fold_lag(target: &mut Counters, jiffy: u64, delta: i64, before_instant: bool) {
    if target.pending_lag_jiffy != jiffy {
        target.pending_lag_jiffy = jiffy;
        target.pending_lag = 0;
        target.pending_before = 0;
    }
    if before_instant {
        target.pending_before += delta;
    } else {
        target.pending_lag += delta;
    }
}

/// `tick_stop(int success, int dependency)`: this CPU stopped its tick in idle (success 1),
/// and the kernel counted its run queue for the load average as it did (`calc_load_nohz_start`).
#[btf_tracepoint(function = "tick_stop")]
#[inline(always)]
pub fn tick_stop(ctx: BtfTracePointContext) -> i32 {
    let Some(counters) = counters() else {
        return 0;
    };
    // The idle loop stops the tick right after the switch to idle, seen or not.
    check_handover(counters, unsafe { bpf_get_current_task() } as *const u8);
    if ctx.arg::<u64>(0) as i32 != 0 {
        counters.tick_stopped = 1;
    }
    0
}

/// Where this CPU's last switch event is not the whole story: a handover without an event,
/// and sleepers left queued that the kernel dequeued while picking without one.
#[inline(always)]
fn check_handover(counters: &mut Counters, current: *const u8) {
    notice_unseen_handover(counters, current);
    if layout().sched_delayed_offset != 0 && counters.delayed_count != 0 {
        settle_delayed(counters, unsafe { bpf_ktime_get_ns() });
    }
}

/// The CPU left idle, and its tick runs again. Had its queue not been counted for the sample
/// meanwhile, the kernel moved its jiffy on without counting (`calc_load_nohz_stop`) and keeps
/// the count it took when the tick stopped: the changes held back after the instant are not in
/// the sample, and those before it, in the instant's count, come out. `queue_jiffy` is the
/// queue's `calc_load_update` now.
#[inline(always)]
pub fn left_idle(counters: &mut Counters, queue_jiffy: impl FnOnce() -> u64) {
    if counters.tick_stopped == 0 {
        return;
    }
    counters.tick_stopped = 0;
    counters.pending_lag = 0;
    let before = core::mem::replace(&mut counters.pending_before, 0);
    if before != 0 && queue_jiffy() > counters.pending_lag_jiffy {
        add_fold_lag(counters, counters.pending_lag_jiffy, -before);
    }
}
