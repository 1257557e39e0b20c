//! Types that cross the kernel/userspace boundary: map values and ring-buffer records.
//!
//! Both sides compile this crate, so every type is `#[repr(C)]`, plain old data, and laid out
//! without implicit padding (padding bytes are spelled out) so the kernel side never hands
//! uninitialised bytes to userspace.
#![no_std]

/// What a tracked task is doing since `TaskEntry::since_ns`.
pub mod state {
    /// On a CPU.
    pub const RUNNING: u8 = 1;
    /// Runnable, waiting in a run queue (woken, preempted, or yielded).
    pub const RUNNABLE: u8 = 2;
    /// Asleep in a state that counts toward the load average (D, not TASK_NOLOAD, not frozen).
    pub const UNINTERRUPTIBLE: u8 = 3;
    /// Asleep in a state that does not count: S, T, t, parked, TASK_IDLE, frozen.
    pub const SLEEPING: u8 = 4;
    /// Exited, but its final totals could not be sent yet (ring buffer full); userspace
    /// collects the entry on its next sweep.
    pub const DEAD: u8 = 5;
    /// Left a CPU without a switch event (see `Counters::unseen_handovers`): what it did
    /// since is unknown and counted nowhere until its next event.
    pub const UNSEEN: u8 = 6;
}

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
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Value of the per-thread map, keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskEntry {
    /// Odd while the kernel side is updating the entry: lets userspace retry a torn read.
    pub seq: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// One of [`state`].
    pub state: u8,
    /// The thread went to sleep in io_schedule (only meaningful in UNINTERRUPTIBLE).
    pub iowait: u8,
    pub _pad: [u8; 2],
    /// The kernel's count of the thread's arrivals on a CPU (`sched_info.pcount`, low 32
    /// bits) when it last became RUNNABLE; 0 when unknown. Tells a thread still waiting from
    /// one that ran without a switch event.
    pub pcount: u32,
    /// When `state` began (CLOCK_MONOTONIC ns, as bpf_ktime_get_ns).
    pub since_ns: u64,
    /// When the entry was created: tells a reused thread id from its predecessor.
    pub birth_ns: u64,
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
}

/// Per-CPU counters, one slot of a per-CPU array. Userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Context switches seen (sched_switch calls), to compare with /proc/stat `ctxt`.
    pub switches: u64,
    pub wakeups: u64,
    /// Exits whose record did not fit in the ring buffer; kept in the map, not lost.
    pub exits_deferred: u64,
    /// Threads that could not be tracked because the task map was full: lost time.
    pub map_full: u64,
    /// Deferred exits overwritten by a new thread reusing the id before userspace
    /// collected them: lost totals.
    pub exits_lost: u64,
    /// Switches whose outgoing thread was not the one last switched in on that CPU: the
    /// kernel moved threads on or off the CPU without a sched_switch event.
    pub unseen_handovers: u64,
    /// Time of this CPU's last context switch; the on-CPU start of a thread that was already
    /// running when tracing began.
    pub last_switch_ns: u64,
    /// The thread this CPU last switched to (0: idle or not known yet).
    pub curr_tid: u64,
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
    /// `sched_info.pcount`; 0 when the kernel lacks it (CONFIG_SCHED_INFO=n).
    pub pcount_offset: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) plain old data with explicit padding.
    unsafe impl aya::Pod for super::TaskEntry {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::TaskLayout {}
}
