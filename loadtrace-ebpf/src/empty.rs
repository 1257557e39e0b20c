//! Empty programs on the scheduler hooks, attached in place of the real ones only to measure
//! what running any program at each event costs on a machine (`loadtrace --empty-programs`,
//! for `cargo xtask bench`): the floor beneath what loadtrace's own programs add.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

#[btf_tracepoint(function = "sched_switch")]
pub fn empty_sched_switch(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn empty_sched_wakeup(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn empty_sched_wakeup_new(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_update_nr_running_tp")]
pub fn empty_sched_update_nr_running_tp(_ctx: BtfTracePointContext) -> i32 {
    0
}
