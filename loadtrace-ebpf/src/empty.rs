//! Empty programs on the scheduler and timer hooks, attached in place of the real ones
//! (`loadtrace --empty-programs`): `cargo xtask bench` measures with them what running any
//! program at each event costs on a machine, the floor beneath what loadtrace's own programs
//! add; the VM tests hold them for the guest's whole life, so that no test's attach or detach
//! patches the kernel's text at those tracepoints.

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

#[btf_tracepoint(function = "hrtimer_expire_exit")]
pub fn empty_hrtimer_expire_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_migrate_task")]
pub fn empty_sched_migrate_task(_ctx: BtfTracePointContext) -> i32 {
    0
}
