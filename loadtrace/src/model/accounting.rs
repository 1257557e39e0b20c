//! Turns successive readings of cumulative per-thread totals into per-interval deltas.

use std::collections::HashMap;

use loadtrace_common::TaskTotals;

use super::thread::{ThreadReading, ThreadState, load_ns};

/// What one thread did during one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInterval {
    pub tid: u32,
    pub tgid: u32,
    pub delta: TaskTotals,
    pub exited: bool,
    pub comm: Option<String>,
}

/// How many intervals a thread that vanished from the map is remembered. Its exit record can
/// arrive an interval after the entry disappeared (the record is read before the map), and
/// the delta must then be taken against its last reading, not against zero.
const GRACE_INTERVALS: u32 = 3;

struct Last {
    totals: TaskTotals,
    /// Its final totals were accounted; later live readings of it are stale copies.
    exited: bool,
    unseen: u32,
}

/// What to show for a thread whose totals are now `now` after `shown` was shown, and what
/// has been shown after that.
fn advance(now: &TaskTotals, shown: &TaskTotals) -> (TaskTotals, TaskTotals) {
    let to_show = load_ns(now).saturating_sub(load_ns(shown));
    // The load states, in this order: on CPU, run queue, D, queued asleep.
    let states = |t: &TaskTotals| {
        [
            t.on_cpu_ns,
            t.runqueue_ns,
            t.uninterruptible_ns,
            t.queued_asleep_ns,
        ]
    };
    let (now_s, shown_s) = (states(now), states(shown));
    let grew: [u64; 4] = std::array::from_fn(|i| now_s[i].saturating_sub(shown_s[i]));
    let grown: u64 = grew.iter().sum();
    let mut part = [0u64; 4];
    if grown > 0 {
        for (p, g) in part.iter_mut().zip(grew) {
            *p = (u128::from(to_show) * u128::from(g) / u128::from(grown)) as u64;
        }
        // Rounding leftovers go to the state that grew most.
        let rest = to_show - part.iter().sum::<u64>();
        let most = (0..4).max_by_key(|&i| grew[i]).unwrap_or(0);
        part[most] += rest;
    }
    let d_iowait = now.iowait_ns.saturating_sub(shown.iowait_ns).min(part[2]);
    let d_stolen = now.stolen_ns.saturating_sub(shown.stolen_ns).min(part[0]);
    let delta = TaskTotals {
        on_cpu_ns: part[0],
        runqueue_ns: part[1],
        uninterruptible_ns: part[2],
        iowait_ns: d_iowait,
        sleeping_ns: now.sleeping_ns.saturating_sub(shown.sleeping_ns),
        queued_asleep_ns: part[3],
        voluntary_switches: now
            .voluntary_switches
            .saturating_sub(shown.voluntary_switches),
        involuntary_switches: now
            .involuntary_switches
            .saturating_sub(shown.involuntary_switches),
        stolen_ns: d_stolen,
    };
    let after = TaskTotals {
        on_cpu_ns: shown.on_cpu_ns + part[0],
        runqueue_ns: shown.runqueue_ns + part[1],
        uninterruptible_ns: shown.uninterruptible_ns + part[2],
        iowait_ns: shown.iowait_ns + d_iowait,
        sleeping_ns: shown.sleeping_ns.max(now.sleeping_ns),
        queued_asleep_ns: shown.queued_asleep_ns + part[3],
        voluntary_switches: shown.voluntary_switches.max(now.voluntary_switches),
        involuntary_switches: shown.involuntary_switches.max(now.involuntary_switches),
        stolen_ns: shown.stolen_ns + d_stolen,
    };
    (delta, after)
}

/// Remembers each thread's last totals, keyed by (tid, birth) so a reused thread id starts
/// from zero.
#[derive(Default)]
pub struct Accountant {
    last: HashMap<(u32, u64), Last>,
}

impl Accountant {
    /// Accounts one interval ending at `now_ns`: the exited threads (final totals) and the
    /// live ones (totals so far).
    pub fn interval(
        &mut self,
        now_ns: u64,
        exited: impl IntoIterator<Item = ThreadReading>,
        live: impl IntoIterator<Item = ThreadReading>,
    ) -> Vec<ThreadInterval> {
        for last in self.last.values_mut() {
            last.unseen += 1;
        }
        let mut out = Vec::new();
        for r in exited {
            out.push(self.account(r, now_ns, true));
        }
        for r in live {
            let exited = r.state == ThreadState::Exited;
            let key = (r.tid, r.birth_ns);
            if let Some(last) = self.last.get_mut(&key)
                && last.exited
            {
                last.unseen = 0;
                continue;
            }
            out.push(self.account(r, now_ns, exited));
        }
        self.last.retain(|_, last| last.unseen <= GRACE_INTERVALS);
        out
    }

    fn account(&mut self, r: ThreadReading, now_ns: u64, exited: bool) -> ThreadInterval {
        let now_totals = r.totals_at(now_ns);
        let key = (r.tid, r.birth_ns);
        // Time counted in one state while still open can turn out to belong to another (a
        // sleep's end, or which CPU a thread is on, is only certain when it leaves a CPU
        // again). What was shown is never taken back, so no time is counted twice: the load
        // still to show is the growth of the thread's total load past what was shown, split
        // over the states that grew.
        let (delta, baseline) = match self.last.get(&key) {
            Some(last) if last.exited => (TaskTotals::default(), last.totals),
            Some(last) => advance(&now_totals, &last.totals),
            None => (now_totals, now_totals),
        };
        self.last.insert(
            key,
            Last {
                totals: baseline,
                exited,
                unseen: 0,
            },
        );
        ThreadInterval {
            tid: r.tid,
            tgid: r.tgid,
            delta,
            exited,
            comm: r.comm,
        }
    }

    /// Threads currently remembered (for tests and memory accounting).
    pub fn tracked(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread back on a CPU since `since` (when Runnable), with `on_cpu` accounted before.
    fn live(tid: u32, birth: u64, state: ThreadState, since: u64, on_cpu: u64) -> ThreadReading {
        ThreadReading {
            tid,
            tgid: tid,
            birth_ns: birth,
            state,
            since_ns: since,
            on_cpu_since: (state == ThreadState::Runnable).then_some(since),
            totals: TaskTotals {
                on_cpu_ns: on_cpu,
                ..Default::default()
            },
            comm: None,
        }
    }

    fn exit(tid: u32, birth: u64, on_cpu: u64) -> ThreadReading {
        ThreadReading {
            comm: Some("short".into()),
            ..live(tid, birth, ThreadState::Exited, 0, on_cpu)
        }
    }

    #[test]
    fn running_thread_is_charged_per_interval_including_its_open_state() {
        let mut a = Accountant::default();
        // On a CPU since t=100 with 50 ns accounted before that.
        let r = live(1, 0, ThreadState::Runnable, 100, 50);
        let d = a.interval(1_000, [], [r.clone()]);
        assert_eq!(d[0].delta.on_cpu_ns, 50 + 900);
        let d = a.interval(2_000, [], [r]);
        assert_eq!(d[0].delta.on_cpu_ns, 1_000);
    }

    #[test]
    fn exit_is_charged_against_the_last_reading() {
        let mut a = Accountant::default();
        a.interval(1_000, [], [live(1, 0, ThreadState::Runnable, 0, 0)]);
        // Exited at 1_500 having run the whole time; the entry is gone from the map.
        let d = a.interval(2_000, [exit(1, 0, 1_500)], []);
        assert_eq!(d[0].delta.on_cpu_ns, 500);
        assert!(d[0].exited);
    }

    #[test]
    fn late_exit_record_still_uses_the_last_reading() {
        let mut a = Accountant::default();
        a.interval(1_000, [], [live(1, 0, ThreadState::Runnable, 0, 0)]);
        // Entry vanished but its record only arrives one interval later.
        assert!(a.interval(2_000, [], []).is_empty());
        let d = a.interval(3_000, [exit(1, 0, 1_500)], []);
        assert_eq!(d[0].delta.on_cpu_ns, 500);
    }

    #[test]
    fn thread_born_and_dead_within_an_interval_counts_in_full() {
        let mut a = Accountant::default();
        let d = a.interval(1_000, [exit(7, 400, 300)], []);
        assert_eq!(d[0].delta.on_cpu_ns, 300);
        assert_eq!(d[0].comm.as_deref(), Some("short"));
    }

    #[test]
    fn reused_thread_id_starts_from_zero() {
        let mut a = Accountant::default();
        a.interval(1_000, [], [live(5, 0, ThreadState::Sleeping, 0, 900)]);
        let d = a.interval(
            2_000,
            [exit(5, 0, 900)],
            [live(5, 1_500, ThreadState::Runnable, 1_500, 0)],
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].delta.on_cpu_ns, 0);
        assert_eq!(d[1].delta.on_cpu_ns, 500);
    }

    #[test]
    fn a_stale_live_copy_of_an_exited_thread_is_not_counted_twice() {
        let mut a = Accountant::default();
        let d = a.interval(
            1_000,
            [exit(3, 0, 700)],
            [live(3, 0, ThreadState::Runnable, 0, 0)],
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].delta.on_cpu_ns, 700);
    }

    #[test]
    fn deferred_exit_found_in_the_map_is_final() {
        let mut a = Accountant::default();
        let d = a.interval(1_000, [], [exit(3, 0, 700)]);
        assert!(d[0].exited);
        // Its exit record cannot come too, but if a copy shows up it adds nothing.
        let d = a.interval(2_000, [exit(3, 0, 700)], []);
        assert_eq!(d[0].delta.on_cpu_ns, 0);
    }

    #[test]
    fn time_moved_between_states_is_not_counted_twice() {
        let mut a = Accountant::default();
        // Left in D at 0; not back on a CPU at 1_000: shown as 1_000 of D.
        let asleep = ThreadReading {
            on_cpu_since: None,
            ..live(1, 0, ThreadState::Uninterruptible { iowait: false }, 0, 0)
        };
        let d = a.interval(1_000, [], [asleep]);
        assert_eq!(d[0].delta.uninterruptible_ns, 1_000);
        // It left again at 2_000: woken at 800, waited until 1_200, ran until 2_000.
        let left = ThreadReading {
            state: ThreadState::Sleeping,
            since_ns: 2_000,
            on_cpu_since: None,
            totals: TaskTotals {
                uninterruptible_ns: 800,
                runqueue_ns: 400,
                on_cpu_ns: 800,
                ..Default::default()
            },
            ..live(1, 0, ThreadState::Sleeping, 2_000, 0)
        };
        let d = a.interval(2_000, [], [left.clone()]);
        assert_eq!(d[0].delta.uninterruptible_ns, 0);
        // 2_000 of load in all, 1_000 of it shown already.
        assert_eq!(d[0].delta.runqueue_ns + d[0].delta.on_cpu_ns, 1_000);
        // Its next D sleep counts only beyond the 200 ns shown too early.
        let mut again = left;
        again.totals.uninterruptible_ns = 1_300;
        let d = a.interval(3_000, [], [again]);
        assert_eq!(d[0].delta.uninterruptible_ns, 300);
    }

    #[test]
    fn a_queued_sleep_is_load_until_the_kernel_dequeues_it() {
        let mut a = Accountant::default();
        // Asleep but still queued since 0: all of it load so far.
        let queued = live(1, 0, ThreadState::QueuedAsleep, 0, 0);
        let d = a.interval(1_000, [], [queued]);
        assert_eq!(
            (d[0].delta.queued_asleep_ns, d[0].delta.sleeping_ns),
            (1_000, 0)
        );
        // Dequeued at 1_500, asleep since: 500 more of load, then plain sleep.
        let dequeued = ThreadReading {
            totals: TaskTotals {
                queued_asleep_ns: 1_500,
                ..Default::default()
            },
            ..live(1, 0, ThreadState::Sleeping, 1_500, 0)
        };
        let d = a.interval(2_000, [], [dequeued]);
        assert_eq!(
            (d[0].delta.queued_asleep_ns, d[0].delta.sleeping_ns),
            (500, 500)
        );
        assert_eq!(load_ns(&d[0].delta), 500);
    }

    #[test]
    fn stolen_time_is_shown_within_the_cpu_time_it_was_part_of() {
        let mut a = Accountant::default();
        // Ran 0..600 of which the hypervisor took 100, asleep since 600.
        let ran = ThreadReading {
            totals: TaskTotals {
                on_cpu_ns: 600,
                stolen_ns: 100,
                ..Default::default()
            },
            ..live(1, 0, ThreadState::Sleeping, 600, 0)
        };
        let d = a.interval(1_000, [], [ran]);
        assert_eq!((d[0].delta.on_cpu_ns, d[0].delta.stolen_ns), (600, 100));
        // Running since 1_200 (its open run shows as CPU time, its steal is not known until
        // it leaves) after a run of 100 at 1_000..1_100, all of it stolen.
        let running = ThreadReading {
            on_cpu_since: Some(1_200),
            totals: TaskTotals {
                on_cpu_ns: 700,
                stolen_ns: 200,
                ..Default::default()
            },
            ..live(1, 0, ThreadState::Sleeping, 1_100, 0)
        };
        let d = a.interval(2_000, [], [running]);
        assert_eq!((d[0].delta.on_cpu_ns, d[0].delta.stolen_ns), (900, 100));
        let f = crate::model::process::LoadFigures::from_totals(&d[0].delta, 1_000);
        assert!((f.stolen - 0.1).abs() < 1e-9 && f.stolen <= f.on_cpu);
    }

    #[test]
    fn forgotten_after_the_grace_period() {
        let mut a = Accountant::default();
        a.interval(1_000, [], [live(1, 0, ThreadState::Sleeping, 0, 0)]);
        for i in 0..=GRACE_INTERVALS {
            a.interval(2_000 + u64::from(i), [], []);
        }
        assert_eq!(a.tracked(), 0);
    }
}
