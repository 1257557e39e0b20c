//! Block I/O per process and device: interval deltas of the kernel side's cumulative totals,
//! and latency percentiles from their histograms.

use std::collections::{BTreeMap, HashMap};

use loadtrace_common::{IoKey, IoTotals, LATENCY_BUCKETS, latency_bucket_floor};

/// I/O completed during one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct IoDelta {
    pub ops: u64,
    pub bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub latency_sum_ns: u64,
    /// Exact when the interval set a new all-time maximum; otherwise the top of the highest
    /// histogram bucket it touched, capped by the all-time maximum.
    pub latency_max_ns: u64,
    pub latency_hist: Vec<u64>,
}

impl Default for IoDelta {
    fn default() -> Self {
        Self {
            ops: 0,
            bytes: 0,
            read_ops: 0,
            write_ops: 0,
            latency_sum_ns: 0,
            latency_max_ns: 0,
            latency_hist: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl IoDelta {
    pub fn add(&mut self, o: &IoDelta) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.read_ops += o.read_ops;
        self.write_ops += o.write_ops;
        self.latency_sum_ns += o.latency_sum_ns;
        self.latency_max_ns = self.latency_max_ns.max(o.latency_max_ns);
        for (a, b) in self.latency_hist.iter_mut().zip(&o.latency_hist) {
            *a += b;
        }
    }

    pub fn latency(&self) -> Latency {
        if self.ops == 0 {
            return Latency::default();
        }
        Latency {
            avg_ns: self.latency_sum_ns as f64 / self.ops as f64,
            p50_ns: self.percentile(0.50),
            p99_ns: self.percentile(0.99),
            max_ns: self.latency_max_ns as f64,
        }
    }

    /// Linear interpolation inside the bucket holding the q-th request, capped by the max.
    fn percentile(&self, q: f64) -> f64 {
        let total: u64 = self.latency_hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.latency_hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let lo = latency_bucket_floor(i) as f64;
                let hi = bucket_top(i) as f64;
                let within = (rank - seen as f64) / n as f64;
                return (lo + within * (hi - lo)).min(self.latency_max_ns as f64);
            }
            seen += n;
        }
        self.latency_max_ns as f64
    }
}

fn bucket_top(i: usize) -> u64 {
    if i + 1 < LATENCY_BUCKETS {
        latency_bucket_floor(i + 1)
    } else {
        latency_bucket_floor(i) * 2
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub avg_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub max_ns: f64,
}

/// A process's I/O in one interval, in total and per device (kernel dev_t).
#[derive(Clone, Debug, Default)]
pub struct ProcessDisk {
    pub total: IoDelta,
    pub devices: BTreeMap<u32, IoDelta>,
}

/// Remembers the last cumulative reading of each (process, device).
#[derive(Default)]
pub struct DiskAccountant {
    last: HashMap<IoKey, IoTotals>,
}

impl DiskAccountant {
    /// Per-process I/O since the previous call, from a reading of every (process, device).
    pub fn interval(&mut self, readings: &[(IoKey, IoTotals)]) -> HashMap<u32, ProcessDisk> {
        let mut out: HashMap<u32, ProcessDisk> = HashMap::new();
        let mut next = HashMap::with_capacity(readings.len());
        for (key, now) in readings {
            let delta = match self.last.get(key) {
                Some(before) => delta(now, before),
                None => delta(now, &IoTotals::default()),
            };
            next.insert(*key, *now);
            if delta.ops == 0 {
                continue;
            }
            let p = out.entry(key.tgid).or_default();
            p.total.add(&delta);
            p.devices.entry(key.dev).or_default().add(&delta);
        }
        self.last = next;
        out
    }
}

fn delta(now: &IoTotals, before: &IoTotals) -> IoDelta {
    let hist: Vec<u64> = now
        .latency_hist
        .iter()
        .zip(&before.latency_hist)
        .map(|(a, b)| u64::from(a.wrapping_sub(*b)))
        .collect();
    let max = if now.latency_max_ns > before.latency_max_ns {
        now.latency_max_ns
    } else {
        hist.iter()
            .rposition(|&n| n > 0)
            .map_or(0, |i| bucket_top(i).min(now.latency_max_ns))
    };
    IoDelta {
        ops: now.ops - before.ops.min(now.ops),
        bytes: now.bytes - before.bytes.min(now.bytes),
        read_ops: now.read_ops - before.read_ops.min(now.read_ops),
        write_ops: now.write_ops - before.write_ops.min(now.write_ops),
        latency_sum_ns: now.latency_sum_ns - before.latency_sum_ns.min(now.latency_sum_ns),
        latency_max_ns: max,
        latency_hist: hist,
    }
}

#[cfg(test)]
mod tests {
    use loadtrace_common::latency_bucket;

    use super::*;

    fn totals(latencies: &[u64]) -> IoTotals {
        let mut t = IoTotals::default();
        for &l in latencies {
            t.ops += 1;
            t.write_ops += 1;
            t.bytes += 4096;
            t.latency_sum_ns += l;
            t.latency_max_ns = t.latency_max_ns.max(l);
            t.latency_hist[latency_bucket(l)] += 1;
        }
        t
    }

    const KEY: IoKey = IoKey { tgid: 7, dev: 1 };

    #[test]
    fn interval_counts_only_what_completed_since_the_last_reading() {
        let mut a = DiskAccountant::default();
        let first: Vec<u64> = vec![2_000_000; 100];
        a.interval(&[(KEY, totals(&first))]);
        let mut both = first.clone();
        both.extend([2_000_000; 50]);
        let d = a.interval(&[(KEY, totals(&both))]);
        let p = &d[&7];
        assert_eq!(
            (p.total.ops, p.total.write_ops, p.total.bytes),
            (50, 50, 50 * 4096)
        );
        let lat = p.total.latency();
        assert!((lat.avg_ns - 2e6).abs() < 1.0);
        // 2 ms sits in a bucket 2^20 * 1.875 .. 2^21 wide: within 19%.
        assert!((lat.p50_ns - 2e6).abs() / 2e6 < 0.19, "{lat:?}");
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let mut lats = vec![1_000_000u64; 980];
        lats.extend([50_000_000; 20]);
        let mut a = DiskAccountant::default();
        let d = a.interval(&[(KEY, totals(&lats))]);
        let lat = d[&7].total.latency();
        assert!((lat.p50_ns - 1e6).abs() / 1e6 < 0.19, "{lat:?}");
        assert!((lat.p99_ns - 5e7).abs() / 5e7 < 0.19, "{lat:?}");
        assert_eq!(lat.max_ns, 5e7);
    }

    #[test]
    fn interval_max_is_exact_when_new_and_bounded_otherwise() {
        let mut a = DiskAccountant::default();
        a.interval(&[(KEY, totals(&[10_000_000]))]);
        let d = a.interval(&[(KEY, totals(&[10_000_000, 1_000_000]))]);
        let max = d[&7].total.latency_max_ns;
        assert!((1_000_000..=1_250_000).contains(&max), "{max}");
    }

    #[test]
    fn devices_are_kept_apart_and_idle_entries_dropped() {
        let mut a = DiskAccountant::default();
        let other = IoKey { tgid: 7, dev: 2 };
        let idle = IoKey { tgid: 8, dev: 1 };
        let d = a.interval(&[
            (KEY, totals(&[1_000_000; 3])),
            (other, totals(&[1_000_000; 5])),
            (idle, IoTotals::default()),
        ]);
        assert_eq!(d[&7].devices[&1].ops, 3);
        assert_eq!(d[&7].devices[&2].ops, 5);
        assert_eq!(d[&7].total.ops, 8);
        assert!(!d.contains_key(&8));
    }
}
