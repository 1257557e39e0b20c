//! Maps and read-only globals shared by the programs.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    cty::c_void,
    helpers::bpf_map_lookup_percpu_elem,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use loadtrace_common::{
    BioOwner, Counters, IoKey, IoTotals, LoadSampleAt, LoadSampleSeen, RequestStart, TaskEntry,
    TaskLayout,
};

/// Per-thread state and totals, keyed by thread id. Userspace sizes it at load time for the
/// most threads the kernel can have at once; entries are allocated on first sight (no
/// preallocation: memory follows the live threads, not the limit) and deleted at exit.
#[map]
pub static TASKS: HashMap<u32, TaskEntry> = HashMap::with_max_entries(32768, BPF_F_NO_PREALLOC);

/// Final totals of exited threads. Userspace polls it; records are submitted without a
/// wakeup so an exit storm does not also become a wakeup storm.
#[map]
pub static EXITS: RingBuf = RingBuf::with_byte_size(512 * 1024, 0);

/// Block requests in flight, keyed by the request's address. LRU: a request whose completion
/// is never seen ages out instead of filling the map.
#[map]
pub static REQUESTS: LruHashMap<u64, RequestStart> = LruHashMap::with_max_entries(16384, 0);

/// Submitters of bios that got a request, keyed by the bio's address, until the request is
/// seen starting. LRU for the same reason as REQUESTS.
#[map]
pub static BIO_OWNERS: LruHashMap<u64, BioOwner> = LruHashMap::with_max_entries(16384, 0);

/// Cumulative I/O per (process, device); userspace removes the entries of processes that are
/// gone once it has read them.
#[map]
pub static IO_TOTALS: HashMap<IoKey, IoTotals> =
    HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// When the kernel's load samples fall (written by userspace; see `loadavg`).
#[map]
pub static LOAD_SAMPLE_AT: Array<LoadSampleAt> = Array::with_max_entries(1, 0);

/// The latest load sample a CPU was seen taking (written by `loadavg`).
#[map]
pub static LOAD_SAMPLE_SEEN: Array<LoadSampleSeen> = Array::with_max_entries(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// `task_struct` offsets for the running kernel, written by userspace before load. Read-only
/// data, so the verifier knows the values and prunes the branches they rule out.
#[unsafe(no_mangle)]
static LAYOUT: TaskLayout = TaskLayout {
    pid_offset: 0,
    tgid_offset: 0,
    state_offset: 0,
    in_iowait_offset: 0,
    in_iowait_mask: 0,
    prev_state_arg: 1,
    run_delay_offset: 0,
    rq_data_len_offset: 0,
    rq_cmd_flags_offset: 0,
    rq_part_offset: 0,
    rq_bio_offset: 0,
    bdev_dev_offset: 0,
    sched_delayed_offset: 0,
    sum_exec_offset: 0,
    cfs_rq_offset: 0,
    cfs_rq_rq_offset: 0,
    rq_calc_load_update_offset: 0,
    rq_cpu_offset: 0,
    rq_steal_offset: 0,
    on_rq_offset: 0,
};

#[inline(always)]
pub fn layout() -> TaskLayout {
    // Volatile: the compiler must not fold the placeholder values above into the code.
    unsafe { core::ptr::read_volatile(&LAYOUT) }
}

#[inline(always)]
pub fn counters() -> Option<&'static mut Counters> {
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Another CPU's slot of [`COUNTERS`].
#[inline(always)]
pub fn counters_of(cpu: u32) -> Option<*mut Counters> {
    let key = 0u32;
    let p = unsafe {
        bpf_map_lookup_percpu_elem(
            core::ptr::addr_of!(COUNTERS) as *mut c_void,
            core::ptr::addr_of!(key) as *const c_void,
            cpu,
        )
    };
    (!p.is_null()).then_some(p as *mut Counters)
}
