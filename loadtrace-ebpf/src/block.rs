//! Block-layer hooks: each request is followed from submission to completion and charged to
//! the process that submitted it, not to the interrupt or kworker that completes it.
//!
//! Submission is the first of block_io_start (6.5+), block_rq_insert and block_rq_issue to
//! see the request: all three run in the submitter's context for requests it issues itself
//! (a plug flushed at schedule() included). Userspace attaches the ones the kernel has.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use loadtrace_common::{BioOwner, IoKey, IoTotals, RequestStart, io_op, latency_bucket};

use crate::maps::{BIO_OWNERS, IO_TOTALS, REQUESTS, counters, layout};

/// A new entry's value: too large for the 512-byte BPF stack, so it lives in read-only data.
static ZERO_TOTALS: IoTotals = IoTotals::ZERO;

/// Low byte of `cmd_flags`: the operation (REQ_OP_READ = 0, REQ_OP_WRITE = 1).
const REQ_OP_MASK: u32 = 0xff;
/// Map update flag: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

#[inline(always)]
fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

#[inline(always)]
fn start(rq: *const u8) -> i32 {
    let key = rq as u64;
    if unsafe { REQUESTS.get(key) }.is_some() {
        return 0;
    }
    let l = layout();
    let bio: *const u8 = load(rq, l.rq_bio_offset);
    let part: *const u8 = load(rq, l.rq_part_offset);
    if part.is_null() {
        // Passthrough and flush-machinery requests have no partition: not charged.
        return 0;
    }
    let op = match load::<u32>(rq, l.rq_cmd_flags_offset) & REQ_OP_MASK {
        0 => io_op::READ,
        1 => io_op::WRITE,
        _ => io_op::OTHER,
    };
    // Issued by whoever runs the queue; charged to whoever submitted the bio, when known.
    let owner = match unsafe { BIO_OWNERS.get(bio as u64) }.copied() {
        Some(o) => {
            let _ = BIO_OWNERS.remove(bio as u64);
            o
        }
        None => BioOwner {
            start_ns: unsafe { bpf_ktime_get_ns() },
            tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
            _pad: 0,
        },
    };
    let start = RequestStart {
        start_ns: owner.start_ns,
        tgid: owner.tgid,
        dev: load(part, l.bdev_dev_offset),
        bytes: load(rq, l.rq_data_len_offset),
        op,
        _pad: [0; 3],
    };
    if REQUESTS.insert(key, start, BPF_NOEXIST).is_err()
        && let Some(c) = counters()
    {
        c.io_untracked += 1;
    }
    0
}

#[inline(always)]
fn done(key: u64) -> i32 {
    let Some(s) = (unsafe { REQUESTS.get(key) }).copied() else {
        return 0;
    };
    let _ = REQUESTS.remove(key);
    let latency = unsafe { bpf_ktime_get_ns() }.saturating_sub(s.start_ns);
    let io_key = IoKey {
        tgid: s.tgid,
        dev: s.dev,
    };
    let totals = match IO_TOTALS.get_ptr_mut(io_key) {
        Some(t) => t,
        None => {
            // By reference: a copy would not fit on the BPF stack.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let _ = IO_TOTALS.insert(&io_key, &ZERO_TOTALS, BPF_NOEXIST);
            match IO_TOTALS.get_ptr_mut(io_key) {
                Some(t) => t,
                None => {
                    if let Some(c) = counters() {
                        c.io_lost += 1;
                    }
                    return 0;
                }
            }
        }
    };
    // Completions of one process's requests can run on several CPUs at once.
    let t = unsafe { &mut *totals };
    add(&mut t.ops, 1);
    add(&mut t.bytes, u64::from(s.bytes));
    match s.op {
        io_op::READ => add(&mut t.read_ops, 1),
        io_op::WRITE => add(&mut t.write_ops, 1),
        _ => {}
    }
    add(&mut t.latency_sum_ns, latency);
    if latency > t.latency_max_ns {
        t.latency_max_ns = latency;
    }
    let bucket = latency_bucket(latency);
    if let Some(slot) = t.latency_hist.get_mut(bucket) {
        unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(slot, 1) };
    }
    0
}

/// An atomic add (BPF_ATOMIC): core's atomic types offer none on the BPF target.
#[inline(always)]
fn add(field: &mut u64, v: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, v) };
}

/// `block_getrq(struct bio *)`: a bio got a request, in the submitter's context. A raw
/// tracepoint: only the bio's address is needed.
#[raw_tracepoint(tracepoint = "block_getrq")]
#[inline(always)]
pub fn block_getrq(ctx: RawTracePointContext) -> i32 {
    let owner = BioOwner {
        start_ns: unsafe { bpf_ktime_get_ns() },
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
    };
    let _ = BIO_OWNERS.insert(ctx.arg::<u64>(0), owner, 0);
    0
}

/// `block_io_start(struct request *)`, 6.5+.
#[btf_tracepoint(function = "block_io_start")]
#[inline(always)]
pub fn block_io_start(ctx: BtfTracePointContext) -> i32 {
    start(ctx.arg(0))
}

/// `block_rq_insert(struct request *)`.
#[btf_tracepoint(function = "block_rq_insert")]
#[inline(always)]
pub fn block_rq_insert(ctx: BtfTracePointContext) -> i32 {
    start(ctx.arg(0))
}

/// `block_rq_issue(struct request *)`.
#[btf_tracepoint(function = "block_rq_issue")]
#[inline(always)]
pub fn block_rq_issue(ctx: BtfTracePointContext) -> i32 {
    start(ctx.arg(0))
}

/// `block_rq_complete(struct request *, blk_status_t, unsigned int nr_bytes)`: the first
/// completion of a request ends it (partial completions are rare and short). A raw
/// tracepoint: only the request's address is needed, and 6.1's verifier refuses this
/// tracepoint's typed arguments.
#[raw_tracepoint(tracepoint = "block_rq_complete")]
#[inline(always)]
pub fn block_rq_complete(ctx: RawTracePointContext) -> i32 {
    done(ctx.arg::<u64>(0))
}
