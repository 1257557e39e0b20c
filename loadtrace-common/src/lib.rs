//! Types that cross the kernel/userspace boundary: map values and ring-buffer records.
//!
//! Both sides compile this crate, so every type is `#[repr(C)]`, plain old data, and laid out
//! without implicit padding (padding bytes are spelled out) so the kernel side never hands
//! uninitialised bytes to userspace.
#![no_std]

/// What a tracked task is doing since `TaskEntry::since_ns`.
pub mod state {
    /// Left the CPU still runnable (preempted or yielded), waiting in a run queue.
    pub const RUNNABLE: u8 = 2;
    /// Asleep in a state that counts toward the load average (D, not TASK_NOLOAD, not frozen).
    pub const UNINTERRUPTIBLE: u8 = 3;
    /// Asleep in a state that does not count: S, T, t, parked, TASK_IDLE, frozen.
    pub const SLEEPING: u8 = 4;
    /// Exited, but its final totals could not be sent yet (ring buffer full); userspace
    /// collects the entry on its next sweep.
    pub const DEAD: u8 = 5;
    /// Asleep in a state that does not count, yet still queued: the fair class (EEVDF, 6.12+)
    /// dequeues a sleeper that used more than its share only once that lag is spent, and the
    /// kernel counts it in `nr_running`, hence in the load average, until then.
    pub const QUEUED_ASLEEP: u8 = 6;
}

/// How many threads asleep but still queued (see [`state::QUEUED_ASLEEP`]) each CPU follows
/// at once; more are counted in [`Counters::delayed_unfollowed`].
pub const DELAYED_SLOTS: usize = 8;

/// Raw `task_struct::__state` bits the kernel side tests (include/linux/sched.h; stable
/// since 5.14 apart from TASK_FROZEN, which 6.1 added and nothing earlier uses).
pub mod task_state {
    pub const TASK_UNINTERRUPTIBLE: u32 = 0x0002;
    pub const TASK_DEAD: u32 = 0x0080;
    pub const TASK_NOLOAD: u32 = 0x0400;
    pub const TASK_FROZEN: u32 = 0x8000;
}

/// Per-thread cumulative totals, in nanoseconds and switch counts, since the thread was first
/// seen. Cumulative (not deltas) so that a record that is read twice or late never loses or
/// double-counts time: userspace subtracts successive readings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskTotals {
    pub on_cpu_ns: u64,
    pub runqueue_ns: u64,
    /// Load-counting uninterruptible sleep.
    pub uninterruptible_ns: u64,
    /// The part of `uninterruptible_ns` slept in io_schedule (`task->in_iowait`).
    pub iowait_ns: u64,
    /// Sleep that does not count toward load.
    pub sleeping_ns: u64,
    /// Sleep the kernel still counts as running: queued until a delayed dequeue or the
    /// wakeup (see [`state::QUEUED_ASLEEP`]).
    pub queued_asleep_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// The part of `on_cpu_ns` the hypervisor ran something else on the virtual CPU (its
    /// steal clock, as the run queue read it at the switches): the kernel leaves it out of
    /// the thread's CPU time, yet the thread was running, and load, all along.
    pub stolen_ns: u64,
}

/// Value of the per-thread map, keyed by thread id. Updated when the thread leaves a CPU;
/// while it is on one, the CPU's [`Counters::curr_tid`] names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskEntry {
    /// Odd while the kernel side is updating the entry: lets userspace retry a torn read.
    pub seq: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// One of [`state`]: how the thread left the CPU.
    pub state: u8,
    /// The thread went to sleep in io_schedule (only meaningful in UNINTERRUPTIBLE).
    pub iowait: u8,
    /// Whether the thread counted toward load at `sample_ns`.
    pub sample_active: u8,
    pub _pad: [u8; 5],
    /// When it left the CPU (CLOCK_MONOTONIC ns, as bpf_ktime_get_ns).
    pub since_ns: u64,
    /// The kernel's `sched_info.run_delay` (total run-queue wait) when it left the CPU: the
    /// next departure's value minus this is the wait before that run, measured by the kernel
    /// from the moment the thread was woken or preempted.
    pub run_delay_ns: u64,
    /// The kernel's `se.sum_exec_runtime` (its CPU time, in every scheduling class) when it
    /// left the CPU. Where the kernel switched without an event, the next departure's value
    /// minus this is how long that run lasted, so it tells when the run began.
    pub sum_exec_ns: u64,
    /// When it was last woken from a load-counting D sleep: where the kernel moves it from
    /// `nr_uninterruptible` back to `nr_running` (and delay accounting ends its wait).
    pub woken_ns: u64,
    /// When the entry was created: tells a reused thread id from its predecessor.
    pub birth_ns: u64,
    /// The kernel's latest load sample (see [`LoadSampleAt`]) that fell inside an interval
    /// this entry has since closed, with `sample_active` saying what the thread was then.
    /// 0: none. Intervals still open are judged by userspace from the entry as it stands.
    pub sample_ns: u64,
    pub totals: TaskTotals,
    /// Filled only when an exit could not be sent (state DEAD).
    pub comm: [u8; 16],
}

/// Ring-buffer record: a thread's final totals, sent when it exits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitRecord {
    pub tid: u32,
    pub tgid: u32,
    pub comm: [u8; 16],
    pub birth_ns: u64,
    pub exit_ns: u64,
    pub totals: TaskTotals,
    /// As in [`TaskEntry`]: the thread's state at the latest load sample of its life.
    pub sample_ns: u64,
    pub sample_active: u8,
    pub _pad: [u8; 7],
}

/// When the kernel takes its load-average samples, as userspace has worked them out from
/// [`LoadSampleSeen`]: the one just past and the next one (CLOCK_MONOTONIC ns, 0: not
/// known). The kernel side tags each interval it closes across a sample with the thread's
/// state at that instant.
///
/// Each CPU counts its own run queue at its own tick, the first at `next_ns`, a CPU that
/// missed that jiffy's update a tick later. From `next_ns` until the kernel folds the counts
/// (`fold_ns`) the kernel side notes every change to a run queue that has not counted yet
/// for `next_jiffy` ([`Counters::fold_lag`]): the kernel's sample holds those changes, and a
/// count of every thread at `next_ns` does not. In the few milliseconds before `next_ns` it
/// notes the changes the count holds and the sample does not: on a queue that counted
/// already, or whose CPU leaves idle without counting it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadSampleAt {
    pub prev_ns: u64,
    pub next_ns: u64,
    /// The jiffy of the sample at `next_ns`: a run queue whose `calc_load_update` is still at
    /// or before it has not counted yet.
    pub next_jiffy: u64,
    /// When the kernel folds the CPUs' counts of that sample (10 ticks after it).
    pub fold_ns: u64,
}

/// The latest load sample the kernel side saw a CPU take: the CPU's run queue moved its
/// `calc_load_update` (the jiffy of its next sample) from `jiffy_before` to `jiffy_after`
/// in a timer interrupt that ended at `seen_ns`. The earliest CPU to see a sample writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSampleSeen {
    pub jiffy_before: u64,
    pub jiffy_after: u64,
    pub seen_ns: u64,
}

/// Per-CPU counters, one slot of a per-CPU array. Userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Context switches seen (sched_switch calls), to compare with /proc/stat `ctxt`.
    pub switches: u64,
    /// Exits whose record did not fit in the ring buffer; kept in the map, not lost.
    pub exits_deferred: u64,
    /// Threads that could not be tracked because the task map was full: lost time.
    pub map_full: u64,
    /// Deferred exits overwritten by a new thread reusing the id before userspace
    /// collected them: lost totals.
    pub exits_lost: u64,
    /// Block requests that could not be followed (in-flight map full): their completions
    /// are not counted.
    pub io_untracked: u64,
    /// Completed requests whose per-process totals had no room (I/O map full): lost.
    pub io_lost: u64,
    /// Handovers without a sched_switch event: switches whose outgoing thread was not the one
    /// last switched in on that CPU, and timer interrupts (or the idle loop) that found
    /// another thread running than the one last switched in.
    pub unseen_handovers: u64,
    /// Time of this CPU's last context switch: when `curr_tid` arrived on it.
    pub last_switch_ns: u64,
    /// The thread this CPU last switched to (0: idle or not known yet).
    pub curr_tid: u64,
    /// Its `task_struct` address, for checked reads when it turns out to have left without
    /// a switch event.
    pub curr_task: u64,
    /// `curr_tid` was found running by a timer interrupt after a handover without an event:
    /// its arrival is known only from its CPU time.
    pub arrival_unknown: u64,
    /// Sleepers that stayed queued on this CPU: their `task_struct` addresses and ids, in
    /// slots (0: free), checked at each switch here until the kernel dequeues them.
    pub delayed_tasks: [u64; DELAYED_SLOTS],
    pub delayed_tids: [u64; DELAYED_SLOTS],
    /// Slots in use.
    pub delayed_count: u64,
    /// Sleepers that stayed queued while every slot was taken: counted as plain sleep,
    /// so the load is short of the kernel's by their queued time.
    pub delayed_unfollowed: u64,
    /// This CPU's run queue's `calc_load_update` when last looked at.
    pub calc_load_update: u64,
    /// Changes to `nr_running + nr_uninterruptible`, made by this CPU on run queues that had
    /// not yet counted for sample `fold_lag_jiffy`, from that sample's instant on (see
    /// [`LoadSampleAt`]). Signed.
    pub fold_lag_jiffy: u64,
    pub fold_lag: i64,
    /// The latest jiffy this CPU's timer hook saw, and when it first saw it: jiffy `j` began
    /// at or before that time, which places the jiffy grid (and the load samples on it)
    /// closer than the rare sightings of a sample do.
    pub jiffy_seen: u64,
    pub jiffy_seen_ns: u64,
    /// This CPU's steal clock at its last switch.
    pub steal_ns: u64,
    /// This CPU's tick is stopped in idle (`tick_stop`; cleared when it leaves idle): the
    /// kernel counted its run queue for the load average when the tick stopped, and counts it
    /// again for a sample only if a tick comes before the CPU leaves idle.
    pub tick_stopped: u64,
    /// Changes to this CPU's run queue made while its tick was stopped, after the instant of
    /// sample `pending_lag_jiffy`: they join `fold_lag` if a tick then counts the queue for
    /// that sample, and are dropped when the CPU leaves idle first. Other CPUs add to it.
    pub pending_lag_jiffy: u64,
    pub pending_lag: i64,
    /// Such changes made shortly before the instant: in the instant's count, and taken out of
    /// it (through `fold_lag`) if the CPU leaves idle before a tick counts the queue.
    pub pending_before: i64,
    /// When the thread running here last left `nr_running` to sleep (its dequeue in
    /// `__schedule()`, before the pick of the next thread and the switch event): where its run
    /// ends. Cleared at each switch.
    pub queue_drop_ns: u64,
    /// When this CPU last put a thread into a run queue, and which queue: a wakeup's enqueue,
    /// moments before its event fires. Cleared when a wakeup takes it.
    pub queue_add_ns: u64,
    pub queue_add_rq: u64,
    /// This CPU's run queue (`struct rq *`), noted by its timer hook: where a thread moved
    /// here from another CPU is counted.
    pub rq: u64,
    /// Queued threads moved between a CPU whose queue had counted for a sample and one whose
    /// queue had not, between the sample's instant and its fold: the kernel's sample holds
    /// each twice or not at all.
    pub sample_migrations: u64,
}

/// Latency histogram: bucket 0 holds everything under 1 µs; above that, each power of two of
/// nanoseconds from 2^10 to 2^37 (about 2 minutes) is split into 4 linear sub-buckets, so a
/// percentile read from it is within 19% of the truth.
pub const LATENCY_BUCKETS: usize = 1 + 4 * 28;
pub const LATENCY_FIRST_LOG2: u32 = 10;

/// Index of the histogram bucket for `ns`.
pub fn latency_bucket(ns: u64) -> usize {
    if ns < 1 << LATENCY_FIRST_LOG2 {
        return 0;
    }
    // Clamped first, so the index needs no clamp: a branch on it after the arithmetic leaves
    // 6.1's verifier with an impossible range it cannot prune.
    const LAST_LOG2: u32 = LATENCY_FIRST_LOG2 + ((LATENCY_BUCKETS - 1) / 4) as u32;
    let ns = if ns >= 1 << LAST_LOG2 {
        (1 << LAST_LOG2) - 1
    } else {
        ns
    };
    let log2 = log2(ns);
    let sub = (ns >> (log2 - 2)) & 3;
    1 + 4 * (log2 - LATENCY_FIRST_LOG2) as usize + sub as usize
}

/// Lowest latency that falls in bucket `idx` (ns); the bucket ends where the next begins.
pub fn latency_bucket_floor(idx: usize) -> u64 {
    if idx == 0 {
        return 0;
    }
    let log2 = LATENCY_FIRST_LOG2 + ((idx - 1) / 4) as u32;
    let sub = ((idx - 1) % 4) as u64;
    (1u64 << log2) + sub * (1u64 << (log2 - 2))
}

/// floor(log2(v)) for v > 0, without loops (the verifier counts every instruction).
#[inline(always)]
pub fn log2(mut v: u64) -> u32 {
    let mut r = 0;
    if v >= 1 << 32 {
        v >>= 32;
        r += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        r += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        r += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        r += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        r += 2;
    }
    if v >= 1 << 1 {
        r += 1;
    }
    r
}

/// Operation of a block request, as counted.
pub mod io_op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const OTHER: u8 = 2;
}

/// A block request in flight, keyed by the request's address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestStart {
    pub start_ns: u64,
    pub tgid: u32,
    pub dev: u32,
    pub bytes: u32,
    pub op: u8,
    pub _pad: [u8; 3],
}

/// Who submitted a bio that became a request, and when: recorded in the submitter's context
/// (block_getrq), for requests that a kworker issues later (6.1 dispatches plugged requests
/// from kblockd).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BioOwner {
    pub start_ns: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// Key of the per-process, per-device I/O totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoKey {
    pub tgid: u32,
    /// Kernel dev_t: major << 20 | minor.
    pub dev: u32,
}

/// Cumulative I/O completed for one process on one device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoTotals {
    pub ops: u64,
    pub bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub latency_sum_ns: u64,
    pub latency_max_ns: u64,
    pub latency_hist: [u32; LATENCY_BUCKETS],
}

impl IoTotals {
    /// All zero; a const so the kernel side can keep one in read-only data (the struct does
    /// not fit on the BPF stack).
    pub const ZERO: Self = Self {
        ops: 0,
        bytes: 0,
        read_ops: 0,
        write_ops: 0,
        latency_sum_ns: 0,
        latency_max_ns: 0,
        latency_hist: [0; LATENCY_BUCKETS],
    };
}

impl Default for IoTotals {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Where the kernel side finds what it reads in `task_struct`; resolved from the running
/// kernel's BTF at start-up and written into the programs' read-only globals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskLayout {
    pub pid_offset: u32,
    pub tgid_offset: u32,
    /// `__state` (or `state` before 5.14), read only when the tracepoint lacks `prev_state`.
    pub state_offset: u32,
    /// Byte holding the `in_iowait` bitfield, and the bit within it.
    pub in_iowait_offset: u32,
    pub in_iowait_mask: u32,
    /// 1 when sched_switch passes `prev_state` as its fourth argument (5.18+).
    pub prev_state_arg: u32,
    /// `sched_info.run_delay`.
    pub run_delay_offset: u32,
    /// `struct request`: `__data_len`, `cmd_flags`, `part`, `bio` (the first bio, whose
    /// submitter block_getrq recorded); and `block_device::bd_dev`.
    pub rq_data_len_offset: u32,
    pub rq_cmd_flags_offset: u32,
    pub rq_part_offset: u32,
    pub rq_bio_offset: u32,
    pub bdev_dev_offset: u32,
    /// `se.sched_delayed` (6.12+): set while a sleeper stays queued; 0 where the kernel has
    /// no delayed dequeue.
    pub sched_delayed_offset: u32,
    /// `se.sum_exec_runtime`.
    pub sum_exec_offset: u32,
    /// From the current task to its CPU's run queue's `calc_load_update`: `se.cfs_rq` in
    /// `task_struct`, `rq` in `cfs_rq`, `calc_load_update` in `rq`. 0 where the kernel lacks
    /// the path (no CONFIG_FAIR_GROUP_SCHED): the load samples are then not followed.
    pub cfs_rq_offset: u32,
    pub cfs_rq_rq_offset: u32,
    pub rq_calc_load_update_offset: u32,
    /// `cpu` in `rq`: whose tick the run queue's count waits for.
    pub rq_cpu_offset: u32,
    /// `prev_steal_time_rq` in `rq` (0: absent, no CONFIG_PARAVIRT_TIME_ACCOUNTING): the
    /// steal time the run queue's clock has left out of its tasks' CPU time so far.
    pub rq_steal_offset: u32,
    /// `on_rq` in `task_struct`: `TASK_ON_RQ_MIGRATING` while a queued thread moves between
    /// CPUs' run queues.
    pub on_rq_offset: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_cover_their_values() {
        for ns in [
            0u64,
            1,
            999,
            1_024,
            1_500,
            2_000_000,
            2_100_000,
            5_000_000_000,
            u64::MAX,
        ] {
            let b = latency_bucket(ns);
            assert!(latency_bucket_floor(b) <= ns, "{ns} below its bucket {b}");
            if b + 1 < LATENCY_BUCKETS {
                assert!(
                    ns < latency_bucket_floor(b + 1),
                    "{ns} beyond its bucket {b}"
                );
            }
        }
        for b in 1..LATENCY_BUCKETS {
            assert!(latency_bucket_floor(b) > latency_bucket_floor(b - 1));
        }
    }

    #[test]
    fn log2_matches_the_definition() {
        for v in [1u64, 2, 3, 4, 1023, 1024, 1 << 40, u64::MAX] {
            assert_eq!(log2(v), 63 - v.leading_zeros(), "{v}");
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) plain old data with explicit padding.
    unsafe impl aya::Pod for super::TaskEntry {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::TaskLayout {}
    unsafe impl aya::Pod for super::LoadSampleAt {}
    unsafe impl aya::Pod for super::LoadSampleSeen {}
    unsafe impl aya::Pod for super::IoKey {}
    unsafe impl aya::Pod for super::IoTotals {}
}
