//! The per-thread state machine: every transition closes the interval the thread spent in its
//! previous state, adds it to the matching total, and opens the next one.
//!
//! The kernel serialises a thread's switch and wakeup events under its run-queue lock, so one
//! thread's entry never has two kernel-side writers at once; the only concurrent reader is
//! userspace, which the `seq` counter protects from torn reads.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_NO_WAKEUP},
    helpers::bpf_get_current_comm,
};
use loadtrace_common::{Counters, ExitRecord, TaskEntry, state};

use crate::maps::{EXITS, TASKS};

#[inline(always)]
pub fn lookup(tid: u32) -> Option<&'static mut TaskEntry> {
    TASKS.get_ptr_mut(tid).map(|p| unsafe { &mut *p })
}

/// Starts tracking a thread first seen now. Failure means the map is full: counted, and the
/// thread's time is lost until an entry frees up.
#[inline(always)]
pub fn insert(tid: u32, entry: &TaskEntry, counters: &mut Counters) {
    if TASKS.insert(tid, entry, BPF_NOEXIST as u64).is_err() {
        counters.map_full += 1;
    }
}

#[inline(always)]
pub fn new_entry(tgid: u32, task_state: u8, now: u64) -> TaskEntry {
    TaskEntry {
        tgid,
        state: task_state,
        since_ns: now,
        birth_ns: now,
        ..TaskEntry::default()
    }
}

/// Keeps the compiler from moving the entry's stores across the `seq` updates. An empty asm
/// block is assumed to touch memory; LLVM's BPF backend cannot lower `compiler_fence`.
#[inline(always)]
fn compiler_barrier() {
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

#[inline(always)]
pub fn begin_update(e: &mut TaskEntry) {
    unsafe { core::ptr::write_volatile(&mut e.seq, e.seq.wrapping_add(1)) };
    compiler_barrier();
}

#[inline(always)]
pub fn end_update(e: &mut TaskEntry) {
    compiler_barrier();
    unsafe { core::ptr::write_volatile(&mut e.seq, e.seq.wrapping_add(1)) };
}

/// Sends a dead thread's final totals. On a full ring buffer the entry stays in the map,
/// marked DEAD with its name, for userspace to collect: the totals are late, not lost.
#[inline(always)]
pub fn send_exit(tid: u32, e: &mut TaskEntry, now: u64, counters: &mut Counters) {
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    if emit(tid, e, comm, now) {
        let _ = TASKS.remove(tid);
    } else {
        counters.exits_deferred += 1;
        begin_update(e);
        e.state = state::DEAD;
        e.since_ns = now;
        e.comm = comm;
        end_update(e);
    }
}

/// A new thread takes the id: if a dead one's totals are still waiting under it, send them
/// now or, if the ring is still full, count them lost before the entry is reused.
#[inline(always)]
pub fn flush_if_dead(tid: u32, e: &TaskEntry, counters: &mut Counters) {
    if e.state == state::DEAD && !emit(tid, e, e.comm, e.since_ns) {
        counters.exits_lost += 1;
    }
}

#[inline(always)]
fn emit(tid: u32, e: &TaskEntry, comm: [u8; 16], exit_ns: u64) -> bool {
    let Some(mut slot) = EXITS.reserve::<ExitRecord>(0) else {
        return false;
    };
    slot.write(ExitRecord {
        tid,
        tgid: e.tgid,
        comm,
        birth_ns: e.birth_ns,
        exit_ns,
        totals: e.totals,
        sample_ns: e.sample_ns,
        sample_active: e.sample_active,
        _pad: [0; 7],
    });
    slot.submit(BPF_RB_NO_WAKEUP as u64);
    true
}
