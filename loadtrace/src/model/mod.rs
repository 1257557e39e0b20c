//! The accounting model: turns readings of per-thread cumulative totals into per-interval,
//! per-process load figures. Pure: it knows nothing of BPF, procfs or clocks, and every part
//! of it is unit-tested without root.

pub mod accounting;
pub mod disk;
pub mod loadavg;
pub mod process;
pub mod sampling;
pub mod thread;
pub mod verdict;
