//! lt-workload: workloads with a known scheduler footprint, for loadtrace's tests.
//!
//! Each subcommand does one kind of work whose effect on the load average the tests know
//! in advance, and prints one JSON line with its results when done (`"event": "done"`).
//! `--wait-stdin` holds the work until a line arrives on stdin (after printing a
//! `"event": "ready"` line), so a test can take its baseline and attach loadtrace first.
//! `--then-block` parks every thread in an interruptible sleep after the work, so the
//! kernel's per-thread totals stop changing yet stay readable in /proc.

use std::ffi::{CStr, c_int, c_void};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use loadtrace_tests::procfs::{self, Schedstat};
use serde_json::{Value, json};

/// Iterations of `burn` per fork child: about half a millisecond of CPU on the test
/// machines, long enough that fork and exit overheads do not dominate a child's time.
const DEFAULT_CHILD_ITERS: u64 = 400_000;
/// O_DIRECT wants buffers, offsets and sizes aligned to the device's logical block size;
/// 4096 satisfies every device the tests use.
const DIRECT_ALIGN: usize = 4096;
/// O_DIRECT writes stay within this much of the target, so a raw scratch device of any
/// useful size takes them.
const DIRECT_WRAP_BYTES: u64 = 64 << 20;

#[derive(Parser)]
#[command(about = "Workloads with a known scheduler footprint, for loadtrace's tests")]
struct Cli {
    /// Print a "ready" line, then wait for one line on stdin before starting the work.
    #[arg(long, global = true)]
    wait_stdin: bool,
    /// After the work, sleep interruptibly (pause) forever instead of exiting.
    #[arg(long, global = true)]
    then_block: bool,
    /// Run in the real-time class (SCHED_FIFO, priority 1). The kernel dequeues such a
    /// thread the moment it sleeps, never later (fair-class dequeues can be delayed).
    #[arg(long, global = true)]
    fifo: bool,
    /// Run on this CPU only.
    #[arg(long, global = true, value_name = "CPU")]
    on_cpu: Option<usize>,
    #[command(subcommand)]
    work: Work,
}

#[derive(Subcommand)]
enum Work {
    /// Reads the kernel's count of running tasks (/proc/loadavg, fourth field: nr_running,
    /// queued sleepers included) every few milliseconds for SECS seconds and reports the
    /// mean without itself. Run with --fifo, so each reading is taken when its timer fires,
    /// not when the busy CPUs happen to let it run.
    SampleRunning {
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Microseconds between readings. The default is not a multiple of the 4 ms tick,
        /// so readings do not keep one phase against it.
        #[arg(long, default_value_t = 3_100)]
        period_us: u64,
    },
    /// THREADS threads busy-looping for SECS seconds (0: forever).
    Spin {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 0)]
        secs: u64,
    },
    /// Sleep interruptibly (S state) for SECS seconds (0: forever). With THREADS > 1, the
    /// other threads wake once a second, so every one of them is known to a tracer.
    Sleep {
        #[arg(long, default_value_t = 0)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// COUNT synchronous O_DIRECT writes of SIZE bytes at successive offsets of PATH.
    Odirect {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 4096)]
        size: usize,
    },
    /// COUNT short-lived child processes ("lt-forkchild"), one after another.
    Forks {
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// CPU work per child, in iterations of a fixed arithmetic loop.
        #[arg(long, default_value_t = DEFAULT_CHILD_ITERS)]
        child_iters: u64,
    },
    /// Two processes pinned to CPU passing one byte back and forth over pipes.
    Pingpong {
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, default_value_t = 0)]
        cpu: usize,
    },
    /// vfork a child that sleeps SECS seconds; the parent waits in D meanwhile.
    VforkD {
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.fifo {
        enter_fifo_class()?;
    }
    if let Some(cpu) = cli.on_cpu {
        pin_to_cpu(cpu)?;
    }
    let gate = Gate {
        wait_stdin: cli.wait_stdin,
    };
    let results = match cli.work {
        Work::SampleRunning { secs, period_us } => {
            sample_running(secs, Duration::from_micros(period_us), &gate)?
        }
        Work::Spin { threads, secs } => spin(threads, secs, &gate, cli.then_block)?,
        Work::Sleep { secs, threads } => sleep(secs, threads, &gate)?,
        Work::Odirect { path, count, size } => odirect(&path, count, size, &gate)?,
        Work::Forks { count, child_iters } => forks(count, child_iters, &gate)?,
        Work::Pingpong { secs, cpu } => pingpong(secs, cpu, &gate)?,
        Work::VforkD { secs } => vfork_d(secs, &gate)?,
    };
    emit("done", results)?;
    if cli.then_block {
        block_forever();
    }
    Ok(())
}

fn sample_running(secs: u64, period: Duration, gate: &Gate) -> Result<Value> {
    gate.pass(json!({}))?;
    // Readings taken late (the timer's interrupt held back, e.g. while a CPU ran with
    // interrupts off) are kept apart: if they saw more tasks than the punctual ones, the
    // moments a timer-driven sample lands on are not a fair draw of time.
    const LATE_BOUNDS_US: [u64; 3] = [100, 1_000, 4_000];
    let started = Instant::now();
    let mut deadline = started;
    let (mut samples, mut others) = (0u64, 0u64);
    let mut by_lateness = [(0u64, 0u64); LATE_BOUNDS_US.len() + 1];
    while started.elapsed() < Duration::from_secs(secs) {
        let late = Instant::now()
            .saturating_duration_since(deadline)
            .as_micros() as u64;
        let running = procfs::running_tasks()?;
        // This thread is running as it reads.
        let seen = running.saturating_sub(1);
        others += seen;
        samples += 1;
        let bin = LATE_BOUNDS_US.iter().take_while(|&&b| late >= b).count();
        by_lateness[bin].0 += 1;
        by_lateness[bin].1 += seen;
        deadline += period;
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        } else {
            deadline = Instant::now();
        }
    }
    let bins: Vec<Value> = by_lateness
        .iter()
        .enumerate()
        .map(|(i, &(n, seen))| {
            json!({
                "late_from_us": if i == 0 { 0 } else { LATE_BOUNDS_US[i - 1] },
                "samples": n,
                "mean_others": seen as f64 / n.max(1) as f64,
            })
        })
        .collect();
    Ok(json!({
        "samples": samples,
        "mean_others": others as f64 / samples.max(1) as f64,
        "by_lateness": bins,
        "elapsed_ns": nanos(started.elapsed()),
    }))
}

/// Moves the process (threads it starts later inherit the policy) to SCHED_FIFO.
fn enter_fifo_class() -> Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    ensure!(
        rc == 0,
        "sched_setscheduler(SCHED_FIFO): {}",
        io::Error::last_os_error()
    );
    Ok(())
}

/// Where the work waits for the test to release it (with `--wait-stdin`).
struct Gate {
    wait_stdin: bool,
}

impl Gate {
    /// Announces that everything is set up, then waits for the release line.
    /// A closed stdin means the test has gone: starting the work then would only leave
    /// an orphan burning CPU, so it is an error.
    fn pass(&self, setup: Value) -> Result<()> {
        if !self.wait_stdin {
            return Ok(());
        }
        emit("ready", setup)?;
        let mut line = String::new();
        let read = io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the release line from stdin")?;
        ensure!(read > 0, "stdin closed before the work was released");
        Ok(())
    }
}

/// Prints one JSON line tagged with the event name and our pid, flushed at once so a
/// test reading the pipe sees it while we block.
fn emit(event: &str, mut fields: Value) -> Result<()> {
    fields["event"] = event.into();
    fields["pid"] = std::process::id().into();
    let mut out = io::stdout().lock();
    writeln!(out, "{fields}").context("writing to stdout")?;
    out.flush().context("flushing stdout")
}

/// Sleeps interruptibly forever: the state loadtrace must count as no load at all.
fn block_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions; it returns only when a signal is handled.
        unsafe { libc::pause() };
    }
}

fn spin(threads: usize, secs: u64, gate: &Gate, then_block: bool) -> Result<Value> {
    ensure!(threads > 0, "--threads must be at least 1");
    let run_for = (secs > 0).then(|| Duration::from_secs(secs));
    // The workers exist before the release so a test can read their baseline; the
    // barrier holds them (asleep) until then.
    let start = Arc::new(Barrier::new(threads + 1));
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..threads {
        let (start, tid_tx, done_tx) = (Arc::clone(&start), tid_tx.clone(), done_tx.clone());
        thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            tid_tx.send(tid).ok();
            start.wait();
            // Read once running: on 6.12+ a sleeper left queued at the barrier is charged its
            // whole wait there as run-queue wait when it first runs again.
            let before = own_schedstat().ok();
            busy_until(run_for.map(|d| Instant::now() + d));
            let after = own_schedstat().ok();
            let loop_runnable_ns = before.zip(after).map(|(b, a)| {
                (a.exec_ns + a.run_delay_ns).saturating_sub(b.exec_ns + b.run_delay_ns)
            });
            done_tx.send((tid, loop_runnable_ns)).ok();
            // Parked rather than exited, so the thread's schedstat stays readable.
            if then_block {
                block_forever();
            }
        });
    }
    let tids: Vec<libc::pid_t> = tid_rx.iter().take(threads).collect();
    gate.pass(json!({ "tids": tids }))?;
    start.wait();
    let started = Instant::now();
    let mut loop_runnable_ns = serde_json::Map::new();
    for _ in 0..threads {
        let (tid, ns) = done_rx.recv().context("a spinning thread died")?;
        loop_runnable_ns.insert(tid.to_string(), json!(ns));
    }
    Ok(json!({
        "threads": threads,
        "tids": tids,
        "elapsed_ns": nanos(started.elapsed()),
        // Each worker's schedstat runnable time (CPU + run-queue wait) over its spin alone.
        "loop_runnable_ns": loop_runnable_ns,
    }))
}

/// Busy-loops in user space until the deadline (or forever without one). The clock is
/// read only every few thousand iterations: where it is a system call (a VM without a
/// usable TSC) reading it every time would turn the spin into a syscall loop.
fn busy_until(deadline: Option<Instant>) {
    let mut x = 1u64;
    loop {
        x = burn(x, 10_000);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            black_box(x);
            return;
        }
    }
}

/// A fixed amount of CPU work the optimiser cannot remove.
fn burn(seed: u64, iters: u64) -> u64 {
    let mut x = seed;
    for i in 0..iters {
        x = black_box(x.rotate_left(5) ^ i).wrapping_mul(0x0100_0000_01b3);
    }
    x
}

fn sleep(secs: u64, threads: usize, gate: &Gate) -> Result<Value> {
    for i in 1..threads {
        thread::Builder::new()
            // Small stacks: ten thousand of them must fit anywhere.
            .stack_size(64 * 1024)
            .spawn(|| {
                loop {
                    thread::sleep(Duration::from_secs(1));
                }
            })
            .with_context(|| format!("starting sleeper thread {i}"))?;
    }
    gate.pass(json!({}))?;
    if secs == 0 {
        block_forever();
    }
    let started = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    Ok(json!({ "elapsed_ns": nanos(started.elapsed()) }))
}

fn odirect(path: &Path, count: u64, size: usize, gate: &Gate) -> Result<Value> {
    ensure!(
        size > 0 && size.is_multiple_of(DIRECT_ALIGN) && size as u64 <= DIRECT_WRAP_BYTES,
        "--size must be a positive multiple of {DIRECT_ALIGN} up to {DIRECT_WRAP_BYTES}"
    );
    let file = open_direct(path)?;
    let buf = AlignedBuf::new(size);
    let slots = DIRECT_WRAP_BYTES / size as u64;
    gate.pass(json!({}))?;
    let schedstat_before = own_schedstat()?;
    let started = Instant::now();
    for i in 0..count {
        let offset = (i % slots) * size as u64;
        file.write_all_at(buf.bytes(), offset)
            .with_context(|| format!("O_DIRECT write at offset {offset} of {}", path.display()))?;
    }
    let elapsed = started.elapsed();
    let schedstat_after = own_schedstat()?;
    Ok(json!({
        "writes": count,
        "bytes": count * size as u64,
        "elapsed_ns": nanos(elapsed),
        // The scheduler's totals of this thread over the writes alone, for what the wall
        // time minus them leaves: the time the writes slept.
        "loop_exec_ns": schedstat_after.exec_ns - schedstat_before.exec_ns,
        "loop_run_delay_ns": schedstat_after.run_delay_ns - schedstat_before.run_delay_ns,
    }))
}

/// Opens PATH for synchronous direct writes: every write waits for the device, in D.
/// A block device is used as it is; anything else is a file, created if missing.
fn open_direct(path: &Path) -> Result<File> {
    let is_block_device = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    OpenOptions::new()
        .write(true)
        .create(!is_block_device)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT|O_DSYNC", path.display()))
}

/// A write buffer aligned for O_DIRECT.
struct AlignedBuf {
    blocks: Vec<Block>,
}

#[derive(Clone)]
#[repr(C, align(4096))]
struct Block([u8; DIRECT_ALIGN]);

impl AlignedBuf {
    /// `size` must be a multiple of DIRECT_ALIGN.
    fn new(size: usize) -> Self {
        Self {
            blocks: vec![Block([0xa5; DIRECT_ALIGN]); size / DIRECT_ALIGN],
        }
    }

    fn bytes(&self) -> &[u8] {
        let len = self.blocks.len() * DIRECT_ALIGN;
        // SAFETY: Block is repr(C) plain bytes with no padding, so the Vec's storage is
        // `len` initialised, contiguous bytes that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), len) }
    }
}

fn forks(count: u32, child_iters: u64, gate: &Gate) -> Result<Value> {
    set_comm(c"lt-forkparent")?;
    gate.pass(json!({}))?;
    let started = Instant::now();
    // A storm meant to last until killed asks for far more children than it will make.
    let expected = count.min(100_000) as usize;
    let mut pids = Vec::with_capacity(expected);
    let mut cpu_ns = Vec::with_capacity(expected);
    let mut runnable_ns = Vec::with_capacity(expected);
    for _ in 0..count {
        let pid = fork_worker(child_iters)?;
        runnable_ns.push(zombie_runnable_ns(pid)?);
        cpu_ns.push(reap(pid)?);
        pids.push(pid);
    }
    Ok(json!({
        "children": count,
        "children_cpu_ns": cpu_ns.iter().sum::<u64>(),
        "children_runnable_ns": runnable_ns.iter().sum::<u64>(),
        "child_pids": pids,
        "child_cpu_ns": cpu_ns,
        "child_runnable_ns": runnable_ns,
        "elapsed_ns": nanos(started.elapsed()),
    }))
}

/// Forks a child that renames itself, burns a fixed amount of CPU and exits.
fn fork_worker(iters: u64) -> Result<libc::pid_t> {
    // SAFETY: this process is single-threaded here, and the child only computes and
    // calls async-signal-safe functions before _exit.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()).context("fork"),
        0 => {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"lt-forkchild".as_ptr()) };
            black_box(burn(1, iters));
            // SAFETY: _exit skips the parent's atexit handlers and stdio buffers, which
            // the child must not run or flush twice.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

/// Waits for a child to exit without reaping it, and returns its runnable time (on a CPU
/// plus waiting for one) from its schedstat, which stays readable while it is a zombie.
/// rusage has only the CPU part, and the kernel's split between the two parts shifts with
/// when it updates its run-queue clock; their sum does not.
fn zombie_runnable_ns(pid: libc::pid_t) -> Result<u64> {
    // SAFETY: siginfo_t is plain data, all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is valid for writes; WNOWAIT leaves the child to be reaped by wait4.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("waitid for child {pid}"));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .with_context(|| format!("reading the schedstat of zombie child {pid}"))?;
    let mut fields = stat.split_whitespace().map(str::parse::<u64>);
    let exec = fields.next().context("empty schedstat")??;
    let run_delay = fields.next().context("short schedstat")??;
    Ok(exec + run_delay)
}

/// Waits for a child and returns the CPU time the kernel charged it, in ns.
/// wait4's rusage is the child's sum_exec_runtime split into user and system parts,
/// so their sum is its exact run time (to the microsecond).
fn reap(pid: libc::pid_t) -> Result<u64> {
    let mut status = 0;
    // SAFETY: rusage is plain data, all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for writes for the duration of the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return Err(io::Error::last_os_error()).with_context(|| format!("wait4 for child {pid}"));
    }
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed: wait status {status:#x}"
    );
    Ok(timeval_ns(usage.ru_utime) + timeval_ns(usage.ru_stime))
}

fn timeval_ns(tv: libc::timeval) -> u64 {
    tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000
}

/// Sets the calling thread's name, which for the main thread is the process's comm.
fn set_comm(name: &CStr) -> Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error()).context("prctl(PR_SET_NAME)");
    }
    Ok(())
}

fn pingpong(secs: u64, cpu: usize, gate: &Gate) -> Result<Value> {
    gate.pass(json!({}))?;
    // Pinned before the fork so the child inherits it: on one CPU every hand-over is a
    // context switch and a wakeup, the densest event stream a pair of tasks can make.
    pin_to_cpu(cpu)?;
    let (to_child_rx, mut to_child_tx) = pipe()?;
    let (mut to_parent_rx, to_parent_tx) = pipe()?;
    // SAFETY: this process is single-threaded here, and the child only reads, writes and
    // calls _exit.
    let child = match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()).context("fork"),
        0 => {
            drop((to_child_tx, to_parent_rx));
            echo_until_eof(to_child_rx, to_parent_tx);
        }
        pid => pid,
    };
    drop((to_child_rx, to_parent_tx));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut round_trips = 0u64;
    let mut byte = [0u8; 1];
    while Instant::now() < deadline {
        // Batches of round trips between clock reads keep clock reads out of the rate.
        for _ in 0..64 {
            to_child_tx
                .write_all(&byte)
                .context("writing to the pingpong child")?;
            to_parent_rx
                .read_exact(&mut byte)
                .context("reading from the pingpong child")?;
        }
        round_trips += 64;
    }
    let elapsed = started.elapsed();
    drop(to_child_tx);
    reap(child)?;
    Ok(json!({
        "cpu": cpu,
        "round_trips": round_trips,
        "elapsed_ns": nanos(elapsed),
        "ns_per_round_trip": nanos(elapsed) as f64 / round_trips.max(1) as f64,
    }))
}

/// The pingpong child: returns every byte until the parent closes its pipe.
fn echo_until_eof(mut rx: File, mut tx: File) -> ! {
    let mut byte = [0u8; 1];
    while rx.read_exact(&mut byte).is_ok() && tx.write_all(&byte).is_ok() {}
    // SAFETY: see fork_worker.
    unsafe { libc::_exit(0) }
}

fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is a plain bit mask; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    ensure!(
        cpu < libc::CPU_SETSIZE as usize,
        "cpu {cpu} is out of range"
    );
    // SAFETY: `cpu` is within the set (checked above); `set` is a valid cpu_set_t of the
    // size passed.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("pinning to cpu {cpu}"));
    }
    Ok(())
}

/// A pipe as (read end, write end), close-on-exec.
fn pipe() -> Result<(File, File)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both fds are fresh and owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn vfork_d(secs: u64, gate: &Gate) -> Result<Value> {
    gate.pass(json!({}))?;
    let mut stack = vec![0u8; 64 << 10];
    // The stack grows down from its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let started = Instant::now();
    // CLONE_VM|CLONE_VFORK is what vfork does, but with a stack of the child's own, so
    // the child cannot trample ours. The kernel keeps us in wait_for_vfork_done, an
    // uninterruptible (killable) sleep that counts in the load average, until it exits.
    // SAFETY: the child runs only `sleep_then_exit` on its own stack.
    let child = unsafe {
        libc::clone(
            sleep_then_exit,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            secs as usize as *mut c_void,
        )
    };
    let waited = started.elapsed();
    if child == -1 {
        return Err(io::Error::last_os_error()).context("clone(CLONE_VM|CLONE_VFORK)");
    }
    reap(child)?;
    drop(stack);
    Ok(json!({ "child": child, "secs": secs, "elapsed_ns": nanos(waited) }))
}

/// The vfork child: sleeps interruptibly for `arg` seconds and exits. It shares our
/// memory, so it makes nothing but system calls.
extern "C" fn sleep_then_exit(arg: *mut c_void) -> c_int {
    let mut left = libc::timespec {
        tv_sec: arg as usize as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string; nanosleep reads and writes
    // `left`, which lives on this child's own stack.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"lt-vforkchild".as_ptr());
        loop {
            let request = left;
            // A signal cuts the sleep short and leaves the remainder in `left`.
            if libc::nanosleep(&request, &mut left) == 0 {
                break;
            }
        }
        libc::_exit(0)
    }
}

/// This thread's schedstat: its time on a CPU and waiting in a run queue.
fn own_schedstat() -> Result<Schedstat> {
    let path = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    procfs::parse_schedstat(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
