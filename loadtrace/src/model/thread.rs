//! One thread as read from the kernel: its totals so far and the state it is in now.

use loadtrace_common::TaskTotals;

/// How a thread last left a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Preempted or yielded: waiting for a CPU.
    Runnable,
    /// Load-counting uninterruptible sleep; `iowait` when slept in io_schedule.
    Uninterruptible {
        iowait: bool,
    },
    Sleeping,
    /// Asleep, but still queued and counted as running by the kernel (6.12+ delayed dequeue).
    QueuedAsleep,
    /// Gone: the totals are final.
    Exited,
}

/// A reading of one thread's cumulative totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadReading {
    pub tid: u32,
    pub tgid: u32,
    /// When the kernel side started tracking this thread; with `tid`, its identity.
    pub birth_ns: u64,
    pub state: ThreadState,
    /// When `state` began.
    pub since_ns: u64,
    /// On a CPU since then, if it is on one now.
    pub on_cpu_since: Option<u64>,
    pub totals: TaskTotals,
    /// The thread's name, known for exited threads (live ones are named from /proc).
    pub comm: Option<String>,
}

impl ThreadReading {
    /// Totals as of `now_ns`. The kernel side brings a thread's totals up to date when it
    /// leaves a CPU, so what happened since is added here: the state it left in until now, or
    /// until it got a CPU back, and the time on that CPU. How much of the time before getting
    /// the CPU back was a wait in the run queue is only known when it leaves again; until
    /// then it is counted in the state it left in.
    pub fn totals_at(&self, now_ns: u64) -> TaskTotals {
        let mut t = self.totals;
        // A CPU that names it as arriving before it last left is stale (the kernel moved it
        // off that CPU without a switch event): it is not on that CPU.
        let back = match self.on_cpu_since {
            Some(arrived) if arrived >= self.since_ns => arrived.min(now_ns),
            _ => now_ns.max(self.since_ns),
        };
        let open = back.saturating_sub(self.since_ns);
        t.on_cpu_ns += now_ns.saturating_sub(back);
        match self.state {
            ThreadState::Runnable => t.runqueue_ns += open,
            ThreadState::Uninterruptible { iowait } => {
                t.uninterruptible_ns += open;
                if iowait {
                    t.iowait_ns += open;
                }
            }
            ThreadState::Sleeping => t.sleeping_ns += open,
            ThreadState::QueuedAsleep => t.queued_asleep_ns += open,
            ThreadState::Exited => {}
        }
        t
    }
}

pub fn totals_add(a: &mut TaskTotals, b: &TaskTotals) {
    a.on_cpu_ns += b.on_cpu_ns;
    a.runqueue_ns += b.runqueue_ns;
    a.uninterruptible_ns += b.uninterruptible_ns;
    a.iowait_ns += b.iowait_ns;
    a.sleeping_ns += b.sleeping_ns;
    a.queued_asleep_ns += b.queued_asleep_ns;
    a.voluntary_switches += b.voluntary_switches;
    a.involuntary_switches += b.involuntary_switches;
    a.stolen_ns += b.stolen_ns;
}

/// Time that counts toward the load average: on a CPU, waiting for one, in D, or asleep
/// while the kernel still counts the thread as running.
pub fn load_ns(t: &TaskTotals) -> u64 {
    t.on_cpu_ns + t.runqueue_ns + t.uninterruptible_ns + t.queued_asleep_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(state: ThreadState) -> ThreadReading {
        ThreadReading {
            tid: 10,
            tgid: 10,
            birth_ns: 0,
            state,
            since_ns: 1_000,
            on_cpu_since: None,
            totals: TaskTotals {
                on_cpu_ns: 5,
                ..Default::default()
            },
            comm: None,
        }
    }

    #[test]
    fn open_state_is_added_to_its_own_bucket() {
        let on_cpu = ThreadReading {
            on_cpu_since: Some(1_200),
            ..reading(ThreadState::Uninterruptible { iowait: false })
        };
        let t = on_cpu.totals_at(1_500);
        assert_eq!((t.uninterruptible_ns, t.on_cpu_ns), (200, 305));
        let t = reading(ThreadState::Runnable).totals_at(1_500);
        assert_eq!((t.on_cpu_ns, t.runqueue_ns), (5, 500));
        let t = reading(ThreadState::Uninterruptible { iowait: true }).totals_at(1_500);
        assert_eq!((t.uninterruptible_ns, t.iowait_ns), (500, 500));
        let t = reading(ThreadState::Uninterruptible { iowait: false }).totals_at(1_500);
        assert_eq!((t.uninterruptible_ns, t.iowait_ns), (500, 0));
        let t = reading(ThreadState::Sleeping).totals_at(1_500);
        assert_eq!((t.sleeping_ns, load_ns(&t)), (500, 5));
        // The kernel counts a sleeper it keeps queued as running: load, not sleep.
        let t = reading(ThreadState::QueuedAsleep).totals_at(1_500);
        assert_eq!(
            (t.queued_asleep_ns, t.sleeping_ns, load_ns(&t)),
            (500, 0, 505)
        );
        assert_eq!(reading(ThreadState::Exited).totals_at(1_500).on_cpu_ns, 5);
    }

    #[test]
    fn a_reading_older_than_the_state_adds_nothing() {
        let t = reading(ThreadState::Runnable).totals_at(900);
        assert_eq!((t.on_cpu_ns, t.runqueue_ns), (5, 0));
        // A CPU naming it as arriving before it left is stale: it is not on a CPU.
        let r = ThreadReading {
            on_cpu_since: Some(800),
            ..reading(ThreadState::Sleeping)
        };
        let t = r.totals_at(1_500);
        assert_eq!((t.on_cpu_ns, t.sleeping_ns), (5, 500));
    }
}
