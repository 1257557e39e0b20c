//! `cargo xtask bench`: what tracing costs every context switch, against an untraced run in
//! the same session and against the bpftrace one-liner a user would type instead.
//!
//! A pipe ping-pong pinned to one CPU makes two context switches and two wakeups per round
//! trip, the densest scheduler event stream two tasks can produce. Rounds alternate between
//! the modes (in a rotating order) so that drift in the machine's speed spreads over all of
//! them; medians and ranges are reported.
//!
//! `cargo xtask bench-io` (below) does the same per block I/O, inside the test VM.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{build, setup};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    Loadtrace,
    Bpftrace,
    /// loadtrace with the refining hooks `left_out` unattached (what each one costs), and
    /// with `empty`, empty programs in place of its own on the rest (what running any
    /// program there costs: the floor beneath loadtrace's).
    Variant {
        left_out: &'static [&'static str],
        empty: bool,
    },
}

/// Empty programs on every hook loadtrace uses.
const EMPTY_PROGRAMS: Mode = Mode::Variant {
    left_out: &[],
    empty: true,
};

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Untraced => "untraced".into(),
            Mode::Loadtrace => "loadtrace --top 10".into(),
            Mode::Bpftrace => "bpftrace sched_switch count".into(),
            Mode::Variant { left_out, empty } => {
                let what = if empty {
                    "empty programs on the same hooks"
                } else {
                    "loadtrace"
                };
                if left_out.is_empty() {
                    what.into()
                } else {
                    format!("{what} without {}", left_out.join(", "))
                }
            }
        }
    }
}

/// The hooks that refine the accounting, left out one after the other by `--hook-costs`:
/// the `nr_running` hook (the exact ends of sleeps and runs, and queued sleepers on 6.12+),
/// then the wakeup stamp too.
const LEFT_OUT: [&[&str]; 2] = [
    &["sched_update_nr_running_tp"],
    &["sched_update_nr_running_tp", "sched_wakeup"],
];

const BPFTRACE_ONE_LINER: &str = "tracepoint:sched:sched_switch { @ = count(); }";

pub struct Options {
    pub rounds: usize,
    pub secs: u64,
    /// Also measure loadtrace with its refining hooks left out.
    pub hook_costs: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    let loadtrace = build::build_loadtrace()?;
    let workload = build::build_workload()?;
    setup::ensure_debian_packages(&[("bpftrace", "/usr/bin/bpftrace")])?;
    mount_tracefs()?;

    let mut modes = vec![
        Mode::Untraced,
        Mode::Loadtrace,
        Mode::Bpftrace,
        EMPTY_PROGRAMS,
    ];
    if opts.hook_costs {
        modes.extend(LEFT_OUT.iter().map(|&left_out| Mode::Variant {
            left_out,
            empty: false,
        }));
        // The floor of any design that runs one program per switch (the fork hook stays,
        // idle in a ping-pong).
        modes.push(Mode::Variant {
            left_out: LEFT_OUT[LEFT_OUT.len() - 1],
            empty: true,
        });
    }
    let mut per_switch: Vec<(Mode, Vec<f64>)> = modes.iter().map(|&m| (m, Vec::new())).collect();
    let mut saturation = Vec::new();
    for round in 0..opts.rounds {
        for i in 0..modes.len() {
            let mode = modes[(round + i) % modes.len()];
            let r = measure(mode, &loadtrace, &workload, opts.secs, false)?;
            eprintln!(
                "xtask bench: round {} {:<60} {:>7.1} ns/switch",
                round + 1,
                mode.label(),
                r.ns_per_switch
            );
            per_switch
                .iter_mut()
                .find(|(m, _)| *m == mode)
                .expect("mode")
                .1
                .push(r.ns_per_switch);
            if let Some(s) = r.loadtrace {
                saturation.push(s);
            }
        }
    }
    let costs = measure(Mode::Loadtrace, &loadtrace, &workload, opts.secs, true)?;
    let idle = idle_cost(&loadtrace, opts.secs.max(10))?;
    let many = many_threads_cost(&loadtrace, &workload, opts.secs.max(10))?;
    print_report(&per_switch, &saturation, costs.loadtrace.as_ref(), &idle);
    println!(
        "| {MANY_THREADS} threads alive (each waking once a second): userspace CPU / peak RSS | {:.3}% / {} KiB |",
        many.cpu_fraction * 100.0,
        many.peak_rss_kib
    );
    Ok(())
}

const MANY_THREADS: usize = 10_000;

/// Userspace cost of loadtrace with many threads to read every interval.
fn many_threads_cost(loadtrace: &Path, workload: &Path, secs: u64) -> Result<Idle> {
    let mut sleepers = Command::new(workload)
        .args([
            "sleep",
            "--threads",
            &MANY_THREADS.to_string(),
            "--secs",
            &(secs + 30).to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the sleeping threads")?;
    // Let them all start and wake once.
    thread::sleep(Duration::from_secs(3));
    let cost = idle_cost(loadtrace, secs);
    let _ = sleepers.kill();
    let _ = sleepers.wait();
    cost
}

fn mount_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return Ok(());
    }
    eprintln!("xtask bench: mounting tracefs at /sys/kernel/tracing (bpftrace needs it)");
    setup::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
}

/// What one traced loadtrace run reported while the ping-pong ran.
struct LoadtraceRun {
    lost: u64,
    switches_seen: u64,
    ctxt_delta: u64,
    cpu_fraction: f64,
    peak_rss_kib: u64,
    programs: Vec<(String, f64)>,
}

struct Measurement {
    ns_per_switch: f64,
    loadtrace: Option<LoadtraceRun>,
}

fn measure(
    mode: Mode,
    loadtrace: &Path,
    workload: &Path,
    secs: u64,
    bpf_stats: bool,
) -> Result<Measurement> {
    let mut tracer = match mode {
        Mode::Untraced => None,
        Mode::Loadtrace => Some(Tracer::loadtrace(loadtrace, bpf_stats, &[])?),
        Mode::Variant { left_out, empty } => {
            let mut args: Vec<String> = left_out
                .iter()
                .map(|h| format!("--leave-out={h}"))
                .collect();
            if empty {
                args.push("--empty-programs".to_owned());
            }
            Some(Tracer::loadtrace(loadtrace, bpf_stats, &args)?)
        }
        Mode::Bpftrace => Some(Tracer::bpftrace()?),
    };
    // The tracer's cumulative switch count and /proc/stat's are taken back to back.
    let loadtrace_running = mode == Mode::Loadtrace;
    let switches_before = match &mut tracer {
        Some(t) if loadtrace_running => t.switches(),
        _ => None,
    };
    let ctxt_before = ctxt()?;
    let cpu_before = match &tracer {
        Some(t) if loadtrace_running => Some(t.cpu_ns()?),
        _ => None,
    };
    let started = Instant::now();

    let out = Command::new(workload)
        .args(["pingpong", "--secs", &secs.to_string(), "--cpu", "0"])
        .stderr(Stdio::inherit())
        .output()
        .context("running the ping-pong")?;
    if !out.status.success() {
        bail!("the ping-pong failed: {}", out.status);
    }
    let result: Value = last_json_line(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| anyhow!("the ping-pong printed no result"))?;
    let ns_per_rt = result["ns_per_round_trip"]
        .as_f64()
        .ok_or_else(|| anyhow!("no ns_per_round_trip in {result}"))?;

    let loadtrace_run = match (&mut tracer, mode) {
        (Some(t), Mode::Loadtrace) => {
            let elapsed = started.elapsed();
            let cpu_ns = t.cpu_ns()? - cpu_before.unwrap_or(0);
            let peak_rss_kib = t.peak_rss_kib()?;
            let last = t.fresh_report()?;
            let ctxt_delta = ctxt()? - ctxt_before;
            let switches_after = last["counters"]["switches"].as_u64().unwrap_or(0);
            Some(LoadtraceRun {
                lost: last["lost"].as_u64().unwrap_or(u64::MAX),
                switches_seen: switches_after - switches_before.unwrap_or(0),
                ctxt_delta,
                cpu_fraction: cpu_ns as f64 / elapsed.as_nanos() as f64,
                peak_rss_kib,
                programs: last["programs"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                (
                                    p["name"].as_str().unwrap_or("?").to_owned(),
                                    p["ns_per_run"].as_f64().unwrap_or(0.0),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
        _ => None,
    };
    Ok(Measurement {
        ns_per_switch: ns_per_rt / 2.0,
        loadtrace: loadtrace_run,
    })
}

/// A tracer running beside the workload; killed on drop.
struct Tracer {
    child: Child,
    lines: Option<std::io::Lines<BufReader<std::process::ChildStdout>>>,
}

impl Tracer {
    fn loadtrace(bin: &Path, bpf_stats: bool, extra_args: &[String]) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["--top", "10", "--interval", "0.5", "--json"]);
        if bpf_stats {
            cmd.arg("--bpf-stats");
        }
        cmd.args(extra_args);
        let mut t = Self::spawn(cmd)?;
        // Its first report says it is attached.
        t.next_report()
            .context("waiting for loadtrace's first report")?;
        Ok(t)
    }

    fn bpftrace() -> Result<Self> {
        let mut cmd = Command::new("bpftrace");
        // Line-buffered, or "Attaching 1 probe..." sits in a pipe buffer.
        cmd.args(["-B", "line", "-e", BPFTRACE_ONE_LINER]);
        let mut t = Self::spawn(cmd)?;
        // bpftrace says "Attaching 1 probe..." once its program is in.
        let lines = t.lines.as_mut().expect("stdout");
        match lines.next() {
            Some(Ok(l)) if l.starts_with("Attaching") => Ok(t),
            other => bail!("bpftrace did not start: {other:?}"),
        }
    }

    fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let lines = child.stdout.take().map(|o| BufReader::new(o).lines());
        Ok(Self { child, lines })
    }

    fn next_report(&mut self) -> Result<Value> {
        let lines = self.lines.as_mut().expect("stdout");
        let line = lines
            .next()
            .ok_or_else(|| anyhow!("loadtrace exited"))?
            .context("reading loadtrace's output")?;
        serde_json::from_str(&line).with_context(|| format!("parsing {line}"))
    }

    /// The first report made after this call (older ones may be queued in the pipe).
    fn fresh_report(&mut self) -> Result<Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        loop {
            let r = self.next_report()?;
            if r["time"].as_f64().unwrap_or(0.0) >= now {
                return Ok(r);
            }
        }
    }

    /// Cumulative switch count from a fresh report.
    fn switches(&mut self) -> Option<u64> {
        self.fresh_report().ok()?["counters"]["switches"].as_u64()
    }

    fn cpu_ns(&self) -> Result<u64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("reading the tracer's /proc stat")?;
        let after = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        Ok(ticks * 1_000_000_000 / clock_ticks())
    }

    fn peak_rss_kib(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM in /proc status"))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // SIGINT, as a person would stop it; then make sure.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1)
}

fn ctxt() -> Result<u64> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no ctxt line in /proc/stat"))
}

fn last_json_line(out: &str) -> Option<Value> {
    out.lines().rev().find_map(|l| serde_json::from_str(l).ok())
}

/// Userspace cost of loadtrace on a quiet box.
struct Idle {
    cpu_fraction: f64,
    peak_rss_kib: u64,
}

fn idle_cost(loadtrace: &Path, secs: u64) -> Result<Idle> {
    let t = Tracer::loadtrace(loadtrace, false, &[])?;
    let before = t.cpu_ns()?;
    let started = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    Ok(Idle {
        cpu_fraction: (t.cpu_ns()? - before) as f64 / started.elapsed().as_nanos() as f64,
        peak_rss_kib: t.peak_rss_kib()?,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Round by round differences between two modes' figures.
fn paired_differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

/// "median (lowest to highest)" of added nanoseconds.
fn spread(v: &[f64]) -> String {
    let (lo, hi) = range(v);
    format!("{:+.0} ns ({lo:+.0} to {hi:+.0})", median(v))
}

fn print_report(
    per_switch: &[(Mode, Vec<f64>)],
    saturation: &[LoadtraceRun],
    costs: Option<&LoadtraceRun>,
    idle: &Idle,
) {
    let untraced = &per_switch[0].1;
    let base = median(untraced);
    println!(
        "\n| mode | ns per switch, median | range | added, medians | added, paired rounds: median (range) |"
    );
    println!("|---|---|---|---|---|");
    for (mode, v) in per_switch {
        let (lo, hi) = range(v);
        let (added, paired) = if *mode == Mode::Untraced {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:+.0} ns", median(v) - base),
                spread(&paired_differences(v, untraced)),
            )
        };
        println!(
            "| {} | {:.0} | {lo:.0}-{hi:.0} | {added} | {paired} |",
            mode.label(),
            median(v),
        );
    }
    // Each round runs every mode once, back to back: a traced round set against the same
    // round's untraced one (or the empty programs') cancels the drift of a noisy machine.
    let of = |mode: Mode| per_switch.iter().find(|(m, _)| *m == mode).map(|(_, v)| v);
    if let Some(lt) = of(Mode::Loadtrace) {
        println!(
            "\nloadtrace added per switch, paired rounds: {}",
            spread(&paired_differences(lt, untraced))
        );
        if let Some(empty) = of(EMPTY_PROGRAMS) {
            println!(
                "loadtrace above empty programs on the same hooks, paired rounds: {}",
                spread(&paired_differences(lt, empty))
            );
        }
        if let Some(bpftrace) = of(Mode::Bpftrace) {
            let ratios: Vec<f64> = lt
                .iter()
                .zip(bpftrace)
                .zip(untraced)
                .map(|((l, b), u)| (l - u) / (b - u))
                .collect();
            let (lo, hi) = range(&ratios);
            println!(
                "loadtrace's added cost over the bpftrace one-liner's, per round: median {:.2} ({lo:.2} to {hi:.2})",
                median(&ratios)
            );
        }
    }
    println!("\n| at saturation (loadtrace rounds) | value |");
    println!("|---|---|");
    for (i, s) in saturation.iter().enumerate() {
        println!(
            "| round {}: lost / switches seen / ctxt delta / userspace CPU / peak RSS | {} / {} / {} ({:+.3}%) / {:.2}% / {} KiB |",
            i + 1,
            s.lost,
            s.switches_seen,
            s.ctxt_delta,
            (s.switches_seen as f64 - s.ctxt_delta as f64) * 100.0 / s.ctxt_delta.max(1) as f64,
            s.cpu_fraction * 100.0,
            s.peak_rss_kib
        );
    }
    if let Some(c) = costs {
        for (name, ns) in &c.programs {
            println!("| kernel's own timing of {name} (bpf_stats) | {ns:.0} ns per run |");
        }
    }
    println!(
        "| idle box: userspace CPU / peak RSS | {:.3}% / {} KiB |",
        idle.cpu_fraction * 100.0,
        idle.peak_rss_kib
    );
}

/// `cargo xtask bench-io`: what tracing costs every block I/O. Inside the pinned VM, rounds
/// of synchronous 4 KiB O_DIRECT writes to a null_blk device that completes every request at
/// once (so what is timed is the system call and the block layer), untraced and under loadtrace,
/// alternating. One extra round with `--bpf-stats` has the kernel time the programs.
pub struct IoOptions {
    pub kernel: String,
    /// Rounds of each mode.
    pub rounds: usize,
    /// Writes per round.
    pub count: u64,
}

/// Starts the lines the guest script prints for the host to read.
const IO_RESULT: &str = "LOADTRACE-BENCH-IO: ";
const IO_REPORT: &str = "LOADTRACE-BENCH-REPORT: ";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IoMode {
    Untraced,
    Traced,
    /// Traced with the kernel timing loadtrace's programs; not part of the comparison.
    BpfStats,
}

impl IoMode {
    fn word(self) -> &'static str {
        match self {
            IoMode::Untraced => "untraced",
            IoMode::Traced => "traced",
            IoMode::BpfStats => "bpf-stats",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        [IoMode::Untraced, IoMode::Traced, IoMode::BpfStats]
            .into_iter()
            .find(|m| m.word() == word)
    }

    /// loadtrace's options in this mode, as the guest script passes them.
    fn loadtrace_args(self) -> Option<&'static str> {
        match self {
            IoMode::Untraced => None,
            IoMode::Traced => Some("--top 10 --interval 1 --json"),
            IoMode::BpfStats => Some("--top 10 --interval 1 --json --bpf-stats"),
        }
    }
}

pub fn run_io(opts: &IoOptions) -> Result<()> {
    if opts.rounds == 0 || opts.count == 0 {
        bail!("--rounds and --count must be at least 1");
    }
    let started = Instant::now();
    let console = crate::vm::run_script(&opts.kernel, &io_script(opts))?;
    let rounds = parse_io_console(&console)?;
    eprintln!(
        "xtask bench-io: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    print_io_report(&rounds, opts)
}

/// The rounds in the order they run: one untraced warm-up (round 0, first-touch costs),
/// then both modes each round, the order swapped every round so drift spreads over both,
/// then the timed round.
fn io_plan(rounds: usize) -> Vec<(IoMode, usize)> {
    let mut plan = vec![(IoMode::Untraced, 0)];
    for round in 1..=rounds {
        let pair = [IoMode::Untraced, IoMode::Traced];
        let first = round % 2;
        plan.push((pair[1 - first], round));
        plan.push((pair[first], round));
    }
    plan.push((IoMode::BpfStats, rounds + 1));
    plan
}

/// The guest's script (busybox sh). Every round prints the workload's result line after
/// IO_RESULT, and a traced round then every report loadtrace wrote after IO_REPORT.
fn io_script(opts: &IoOptions) -> String {
    let mut s = String::from(IO_SCRIPT_PROLOGUE).replace("@COUNT@", &opts.count.to_string());
    for (mode, round) in io_plan(opts.rounds) {
        let args = mode.loadtrace_args().unwrap_or("");
        s.push_str(&format!("round {} {round} {args} || exit 1\n", mode.word()));
    }
    s.replace("@RESULT@", IO_RESULT)
        .replace("@REPORT@", IO_REPORT)
}

const IO_SCRIPT_PROLOGUE: &str = r#"# Generated by `cargo xtask bench-io`.
dev=$LT_NULLB_FAST
count=@COUNT@
reports=/tmp/loadtrace.json

# Starts loadtrace with the given options; returns once its first report says it is attached.
# Variables are local: the caller's own must survive the call.
start_loadtrace() {
    local tries=0
    # The background shell truncates the file only when it gets to run: the last round's
    # reports must be gone before, or they would pass for this round's first.
    rm -f $reports
    loadtrace "$@" > $reports 2> /tmp/loadtrace.err &
    lt=$!
    until [ -s $reports ]; do
        tries=$((tries + 1))
        if [ $tries -gt 1200 ] || ! kill -0 $lt 2> /dev/null; then
            echo "loadtrace did not start:"
            cat /tmp/loadtrace.err
            return 1
        fi
        sleep 0.1
    done
}

# Waits past a whole interval after the writes, so the reports hold every one of them.
stop_loadtrace() {
    sleep 2.5
    kill -INT $lt
    if ! wait $lt; then
        echo "loadtrace failed:"
        cat /tmp/loadtrace.err
        return 1
    fi
}

# round MODE N [loadtrace options]: the writes, untraced when no options are given.
round() {
    local mode=$1 n=$2 result
    shift 2
    if [ $# -gt 0 ]; then
        start_loadtrace "$@" || return 1
    fi
    result=$(lt-workload odirect --path $dev --count $count --size 4096) || return 1
    echo "@RESULT@$mode $n $result"
    if [ $# -gt 0 ]; then
        stop_loadtrace || return 1
        while read -r line; do
            echo "@REPORT@$mode $n $line"
        done < $reports
    fi
}

"#;

/// One round as the guest reported it.
struct IoRound {
    mode: IoMode,
    round: usize,
    /// The workload's pid, to find it in the reports.
    pid: u64,
    writes: u64,
    ns_per_io: f64,
    reports: Vec<Value>,
}

impl IoRound {
    /// The requests loadtrace charged to the writer over the round.
    fn counted(&self) -> u64 {
        self.reports
            .iter()
            .flat_map(|r| r["processes"].as_array().into_iter().flatten())
            .filter(|p| p["pid"].as_u64() == Some(self.pid))
            .filter_map(|p| p["disk"]["ops"].as_u64())
            .sum()
    }

    fn lost(&self) -> Option<u64> {
        self.reports.last()?["lost"].as_u64()
    }

    /// What the kernel timed loadtrace's programs at from its first report to its last,
    /// ns per write: everything they did for the writes, and for anything else that ran.
    fn program_ns_per_io(&self) -> Option<f64> {
        let run_time = |r: &Value| -> Option<u64> {
            r["programs"]
                .as_array()?
                .iter()
                .map(|p| p["run_time_ns"].as_u64())
                .sum()
        };
        let spent = run_time(self.reports.last()?)? - run_time(self.reports.first()?)?;
        Some(spent as f64 / self.writes.max(1) as f64)
    }

    /// Each program's average time per run over the whole round, from the last report.
    fn programs(&self) -> Vec<(String, f64)> {
        let Some(last) = self.reports.last() else {
            return Vec::new();
        };
        last["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("?").to_owned(),
                    p["ns_per_run"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect()
    }
}

/// The rounds from the guest's console, in the order they ran.
fn parse_io_console(console: &[String]) -> Result<Vec<IoRound>> {
    let mut rounds: Vec<IoRound> = Vec::new();
    for line in console {
        if let Some(rest) = marked(line, IO_RESULT) {
            rounds.push(parse_io_result(rest).with_context(|| format!("bad result line {line}"))?);
        } else if let Some(rest) = marked(line, IO_REPORT) {
            let (mode, round, report) =
                split_io_line(rest).with_context(|| format!("bad report line {line}"))?;
            let current = rounds
                .last_mut()
                .filter(|r| (r.mode, r.round) == (mode, round))
                .with_context(|| format!("a report before its round's result: {line}"))?;
            current.reports.push(report);
        }
    }
    if rounds.is_empty() {
        bail!("the guest reported no rounds");
    }
    Ok(rounds)
}

fn marked<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

fn parse_io_result(rest: &str) -> Result<IoRound> {
    let (mode, round, result) = split_io_line(rest)?;
    let field = |name: &str| {
        result[name]
            .as_u64()
            .with_context(|| format!("no {name} in {result}"))
    };
    let writes = field("writes")?;
    Ok(IoRound {
        mode,
        round,
        pid: field("pid")?,
        writes,
        ns_per_io: field("elapsed_ns")? as f64 / writes.max(1) as f64,
        reports: Vec::new(),
    })
}

/// `MODE ROUND JSON`.
fn split_io_line(rest: &str) -> Result<(IoMode, usize, Value)> {
    let mut parts = rest.trim().splitn(3, ' ');
    let mode = parts
        .next()
        .and_then(IoMode::from_word)
        .context("no mode")?;
    let round = parts.next().context("no round")?.parse()?;
    let json = serde_json::from_str(parts.next().context("no JSON")?).context("bad JSON")?;
    Ok((mode, round, json))
}

fn print_io_report(rounds: &[IoRound], opts: &IoOptions) -> Result<()> {
    let measured = |mode: IoMode| -> Vec<&IoRound> {
        rounds
            .iter()
            .filter(|r| r.mode == mode && r.round > 0)
            .collect()
    };
    let (untraced, traced) = (measured(IoMode::Untraced), measured(IoMode::Traced));
    if untraced.is_empty() || traced.is_empty() {
        bail!("the guest reported no untraced or no traced rounds");
    }
    let per_io = |rs: &[&IoRound]| rs.iter().map(|r| r.ns_per_io).collect::<Vec<_>>();
    let base = median(&per_io(&untraced));
    println!(
        "\n{} synchronous 4 KiB O_DIRECT writes per round to null_blk (irqmode=0) on kernel {}, {} rounds each\n",
        opts.count,
        opts.kernel,
        untraced.len()
    );
    println!("| mode | ns per I/O, median | range | added per I/O (median) |");
    println!("|---|---|---|---|");
    for (label, rs, is_base) in [
        ("untraced", &untraced, true),
        ("loadtrace --top 10 --interval 1", &traced, false),
    ] {
        let v = per_io(rs);
        let (lo, hi) = range(&v);
        let added = if is_base {
            "-".to_owned()
        } else {
            format!("{:+.0} ns", median(&v) - base)
        };
        println!(
            "| {label} | {:.0} | {lo:.0}-{hi:.0} | {added} |",
            median(&v)
        );
    }
    let added: Vec<f64> = per_io(&traced).iter().map(|v| v - base).collect();
    let (lo, hi) = range(&added);
    println!(
        "\nloadtrace added per I/O: median {:+.0} ns, range {lo:+.0} to {hi:+.0} ns",
        median(&added)
    );
    print_io_counts(&traced);
    print_io_programs(rounds);
    Ok(())
}

/// Whether loadtrace saw every write of the traced rounds.
fn print_io_counts(traced: &[&IoRound]) {
    println!("\n| traced round | writes | requests loadtrace charged to the writer | lost |");
    println!("|---|---|---|---|");
    for r in traced {
        let lost = r.lost().map_or_else(|| "?".to_owned(), |l| l.to_string());
        println!("| {} | {} | {} | {lost} |", r.round, r.writes, r.counted());
    }
    let short: Vec<usize> = traced
        .iter()
        .filter(|r| r.counted() != r.writes)
        .map(|r| r.round)
        .collect();
    if !short.is_empty() {
        println!(
            "\nIn traced rounds {short:?} loadtrace did not charge every write to the writer: \
             either it lost requests or those rounds were not traced throughout."
        );
    }
}

fn print_io_programs(rounds: &[IoRound]) {
    let Some(timed) = rounds.iter().find(|r| r.mode == IoMode::BpfStats) else {
        return;
    };
    println!("\n| kernel's own timing (--bpf-stats round) | ns |");
    println!("|---|---|");
    if let Some(ns) = timed.program_ns_per_io() {
        println!("| the programs below, per I/O over the round | {ns:.0} |");
    }
    let programs = timed.programs();
    for (name, ns) in &programs {
        println!("| {name}, per run | {ns:.0} |");
    }
    if !programs.iter().any(|(name, _)| name.starts_with("block")) {
        println!(
            "\nloadtrace's --bpf-stats timed no block-layer program: the figures above leave them out."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_plan_warms_up_then_alternates_the_first_mode() {
        let plan = io_plan(2);
        assert_eq!(
            plan,
            [
                (IoMode::Untraced, 0),
                (IoMode::Untraced, 1),
                (IoMode::Traced, 1),
                (IoMode::Traced, 2),
                (IoMode::Untraced, 2),
                (IoMode::BpfStats, 3),
            ]
        );
    }

    #[test]
    fn io_script_runs_every_round_with_its_options() {
        let script = io_script(&IoOptions {
            kernel: "6.12".into(),
            rounds: 1,
            count: 77,
        });
        assert!(script.contains("count=77\n"));
        assert!(script.contains("round traced 1 --top 10 --interval 1 --json || exit 1\n"));
        assert!(script.contains("round untraced 1  || exit 1\n"));
        assert!(script.contains(&format!("echo \"{IO_RESULT}$mode $n $result\"")));
        for placeholder in ["@COUNT@", "@RESULT@", "@REPORT@"] {
            assert!(
                !script.contains(placeholder),
                "{placeholder} left in the script"
            );
        }
    }

    #[test]
    fn io_console_gives_rounds_with_their_reports() {
        let report = |ops: u64, run_time: u64| {
            format!(
                r#"{{"lost": 0, "programs": [{{"name": "a", "run_time_ns": {run_time}, "ns_per_run": 50.0}}],
                    "processes": [{{"pid": 42, "disk": {{"ops": {ops}}}}}]}}"#
            )
            .replace('\n', "")
        };
        let console: Vec<String> = [
            "[    1.0] noise".to_owned(),
            format!(r#"{IO_RESULT}untraced 1 {{"pid": 41, "writes": 100, "elapsed_ns": 200000}}"#),
            format!(r#"{IO_RESULT}bpf-stats 2 {{"pid": 42, "writes": 100, "elapsed_ns": 300000}}"#),
            format!("{IO_REPORT}bpf-stats 2 {}", report(0, 1000)),
            format!("{IO_REPORT}bpf-stats 2 {}", report(100, 51000)),
        ]
        .into();
        let rounds = parse_io_console(&console).unwrap();
        assert_eq!(rounds.len(), 2);
        assert_eq!(
            (rounds[0].mode, rounds[0].ns_per_io),
            (IoMode::Untraced, 2000.0)
        );
        let timed = &rounds[1];
        assert_eq!((timed.counted(), timed.lost()), (100, Some(0)));
        assert_eq!(timed.program_ns_per_io(), Some(500.0));
        assert_eq!(timed.programs(), [("a".to_owned(), 50.0)]);

        let orphan = [format!("{IO_REPORT}traced 1 {}", report(1, 1))];
        assert!(parse_io_console(&orphan).is_err());
        assert!(parse_io_console(&["nothing".to_owned()]).is_err());
    }
}
