//! The kernel's load-average recurrence (kernel/sched/loadavg.c), fed with loadtrace's own
//! measurements instead of the kernel's 5-second samples.

/// Sampling period: 5 s + 1 tick at HZ=250.
pub const LOAD_FREQ_NS: u64 = 5_004_000_000;
const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// 2048 * exp(-5/60), exp(-5/300), exp(-5/900).
const EXP: [u64; 3] = [1884, 2014, 2037];

/// 1-, 5- and 15-minute averages in the kernel's fixed point, advanced one LOAD_FREQ window
/// at a time with the average number of active tasks measured over that window.
#[derive(Clone, Debug)]
pub struct Reconstructed {
    fixed: [u64; 3],
    /// Task-nanoseconds accumulated in the window not yet folded in.
    window_task_ns: f64,
    window_elapsed_ns: u64,
}

impl Reconstructed {
    /// Starts from known averages (the kernel's at start-up: what came before tracing cannot
    /// be measured).
    pub fn starting_at(avg: [f64; 3]) -> Self {
        Self {
            fixed: avg.map(|a| (a * FIXED_1 as f64).round() as u64),
            window_task_ns: 0.0,
            window_elapsed_ns: 0,
        }
    }

    /// Adds `dt_ns` of time during which `active` tasks were, on average, running, runnable
    /// or in load-counting D.
    pub fn advance(&mut self, active: f64, mut dt_ns: u64) {
        while self.window_elapsed_ns + dt_ns >= LOAD_FREQ_NS {
            let part = LOAD_FREQ_NS - self.window_elapsed_ns;
            self.window_task_ns += active * part as f64;
            let window_avg = self.window_task_ns / LOAD_FREQ_NS as f64;
            self.fold((window_avg * FIXED_1 as f64).round() as u64);
            self.window_task_ns = 0.0;
            self.window_elapsed_ns = 0;
            dt_ns -= part;
        }
        self.window_task_ns += active * dt_ns as f64;
        self.window_elapsed_ns += dt_ns;
    }

    /// Folds in one of the kernel's own samples: `active` tasks counted at its instant, as
    /// `calc_global_load` does every LOAD_FREQ.
    pub fn fold_sample(&mut self, active: u32) {
        self.fold(u64::from(active) * FIXED_1);
    }

    fn fold(&mut self, active_fixed: u64) {
        for (load, exp) in self.fixed.iter_mut().zip(EXP) {
            let mut newload = *load * exp + active_fixed * (FIXED_1 - exp);
            if active_fixed >= *load {
                newload += FIXED_1 - 1;
            }
            *load = newload / FIXED_1;
        }
    }

    pub fn averages(&self) -> [f64; 3] {
        self.fixed.map(|f| f as f64 / FIXED_1 as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds as /proc/loadavg prints.
    fn shown(v: f64) -> String {
        format!("{v:.2}")
    }

    fn run(r: &mut Reconstructed, active: f64, secs: u64) {
        // Arbitrary 2-second steps, not aligned to the 5-second windows.
        let mut left = secs * 1_000_000_000;
        while left > 0 {
            let step = left.min(2_000_000_000);
            r.advance(active, step);
            left -= step;
        }
    }

    #[test]
    fn one_busy_thread_from_idle_matches_the_kernel_check_values() {
        let mut r = Reconstructed::starting_at([0.0; 3]);
        run(&mut r, 1.0, 61);
        assert_eq!(shown(r.averages()[0]), "0.63");
        assert_eq!(shown(r.averages()[1]), "0.18");
        run(&mut r, 1.0, 60);
        assert_eq!(shown(r.averages()[0]), "0.87");
        run(&mut r, 1.0, 180);
        assert_eq!(shown(r.averages()[0]), "1.00");
    }

    #[test]
    fn decays_from_one_to_idle() {
        let mut r = Reconstructed::starting_at([1.0; 3]);
        run(&mut r, 0.0, 61);
        assert_eq!(shown(r.averages()[0]), "0.37");
    }

    #[test]
    fn samples_fold_as_the_kernel_folds_them() {
        // A minute of samples of one busy task from idle: 1 - exp(-1), as the kernel shows.
        let mut r = Reconstructed::starting_at([0.0; 3]);
        for _ in 0..12 {
            r.fold_sample(1);
        }
        assert_eq!(shown(r.averages()[0]), "0.63");
        r.fold_sample(0);
        assert!(r.averages()[0] < 0.63);
    }

    #[test]
    fn nothing_changes_inside_a_window() {
        let mut r = Reconstructed::starting_at([0.5, 0.5, 0.5]);
        r.advance(10.0, LOAD_FREQ_NS - 1);
        assert_eq!(r.averages(), [0.5; 3]);
        r.advance(10.0, 1);
        assert!(r.averages()[0] > 0.5);
    }
}
