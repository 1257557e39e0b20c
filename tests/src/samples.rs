//! The kernel's 5-second load samples, given back by successive readings of a 1-minute
//! average. The kernel folds one instant count of running and D tasks into its averages every
//! 5 s (and a tick); between two readings one fold apart, the 1-minute average moves by
//! (1 - e) x (count - old average), so the count can be solved for. loadtrace's reconstructed
//! average follows the same recurrence, so its counts come back the same way, and the two can
//! be set side by side sample by sample.

use crate::Received;

/// EXP_1 / FIXED_1 in kernel/sched/loadavg.c: the weight the 1-minute average keeps at a fold.
pub const DECAY_1M: f64 = 1884.0 / 2048.0;

/// The count folded in between two readings of a 1-minute average taken one fold apart. From
/// `/proc/loadavg`'s two decimals it comes back to within 0.12 of a task.
pub fn folded_between(before: f64, after: f64) -> f64 {
    (after - before * DECAY_1M) / (1.0 - DECAY_1M)
}

/// The reports that close a stretch holding one of the kernel's folds (those that list one
/// sample: none is listed before the kernel has folded it, and no stretch between two reports
/// holds two), by index, each with `pick`'s 1-minute average recovered to the count folded
/// over the stretch.
pub fn folds_in(reports: &[Received], pick: fn(&Received) -> f64) -> Vec<(usize, f64)> {
    (1..reports.len())
        .filter(|&i| reports[i].report.samples.len() == 1)
        .map(|i| (i, folded_between(pick(&reports[i - 1]), pick(&reports[i]))))
        .collect()
}

/// A sample at which two averages read at the same moments folded different whole counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOff {
    /// The sample's place in the counts compared, from 1: with counts recovered from every
    /// pair of successive readings, the index of the later reading.
    pub reading: usize,
    pub kernel: i64,
    pub traced: i64,
}

/// Every sample where `traced` folded a different whole count than `kernel`; both are counts
/// recovered (`folded_between`) from averages read at the same moments.
pub fn samples_off(kernel: &[f64], traced: &[f64]) -> Vec<SampleOff> {
    kernel
        .iter()
        .zip(traced)
        .map(|(k, t)| (k.round() as i64, t.round() as i64))
        .enumerate()
        .filter(|(_, (k, t))| k != t)
        .map(|(i, (kernel, traced))| SampleOff {
            reading: i + 1,
            kernel,
            traced,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED_1: u64 = 2048;

    /// Every count folded in along a series of averages read one fold apart.
    fn folded(series: &[f64]) -> Vec<f64> {
        series
            .windows(2)
            .map(|w| folded_between(w[0], w[1]))
            .collect()
    }

    /// calc_load() of kernel/sched/loadavg.c, for the 1-minute average.
    fn calc_load(load: u64, tasks: u64) -> u64 {
        let active = tasks * FIXED_1;
        let mut new = load * 1884 + active * (FIXED_1 - 1884);
        if active >= load {
            new += FIXED_1 - 1;
        }
        new / FIXED_1
    }

    /// The 1-minute figure as /proc/loadavg prints it: rounded, two decimals.
    fn shown(load: u64) -> f64 {
        let x = load + FIXED_1 / 200;
        let whole = x >> 11;
        let hundredths = ((x & (FIXED_1 - 1)) * 100) >> 11;
        whole as f64 + hundredths as f64 / 100.0
    }

    fn kernel_readings(counts: &[u64]) -> (Vec<f64>, Vec<f64>) {
        let mut load = 0;
        let (mut shown_series, mut exact_series) = (vec![shown(load)], vec![0.0]);
        for &c in counts {
            load = calc_load(load, c);
            shown_series.push(shown(load));
            exact_series.push(load as f64 / FIXED_1 as f64);
        }
        (shown_series, exact_series)
    }

    #[test]
    fn counts_come_back_from_two_decimal_readings() {
        // Bursty counts from idle up to a busy box and down again.
        let counts = [
            0, 3, 1, 0, 7, 12, 12, 2, 0, 0, 1, 5, 9, 4, 4, 4, 0, 1, 30, 2,
        ];
        let (shown_series, exact_series) = kernel_readings(&counts);
        for (count, &c) in folded(&shown_series).iter().zip(&counts) {
            assert_eq!(count.round() as u64, c, "{count}");
        }
        assert!(samples_off(&folded(&shown_series), &folded(&exact_series)).is_empty());
    }

    #[test]
    fn a_sample_counted_one_over_is_found_where_it_was() {
        let kernel = [0, 1, 1, 2, 0, 0, 1, 0];
        let mut traced = kernel;
        traced[4] = 1;
        let (kernel_series, _) = kernel_readings(&kernel);
        let (_, traced_series) = kernel_readings(&traced);
        assert_eq!(
            samples_off(&folded(&kernel_series), &folded(&traced_series)),
            vec![SampleOff {
                reading: 5,
                kernel: 0,
                traced: 1
            }]
        );
    }
}
