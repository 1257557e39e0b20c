//! `cargo xtask bench`: what tracing costs every context switch, against an untraced run in
//! the same session and against the bpftrace one-liner a user would type instead.
//!
//! A pipe ping-pong pinned to one CPU makes two context switches and two wakeups per round
//! trip, the densest scheduler event stream two tasks can produce. Rounds alternate between
//! the modes (in a rotating order) so that drift in the machine's speed spreads over all of
//! them; medians and ranges are reported.

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
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Loadtrace => "loadtrace --top 10",
            Mode::Bpftrace => "bpftrace sched_switch count",
        }
    }
}

const BPFTRACE_ONE_LINER: &str = "tracepoint:sched:sched_switch { @ = count(); }";

pub struct Options {
    pub rounds: usize,
    pub secs: u64,
}

pub fn run(opts: &Options) -> Result<()> {
    let loadtrace = build::build_loadtrace()?;
    let workload = build::build_workload()?;
    setup::ensure_debian_packages(&[("bpftrace", "/usr/bin/bpftrace")])?;
    mount_tracefs()?;

    let modes = [Mode::Untraced, Mode::Loadtrace, Mode::Bpftrace];
    let mut per_switch: Vec<(Mode, Vec<f64>)> = modes.iter().map(|&m| (m, Vec::new())).collect();
    let mut saturation = Vec::new();
    for round in 0..opts.rounds {
        for i in 0..modes.len() {
            let mode = modes[(round + i) % modes.len()];
            let r = measure(mode, &loadtrace, &workload, opts.secs, false)?;
            eprintln!(
                "xtask bench: round {} {:<28} {:>7.1} ns/switch",
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
    print_report(&per_switch, &saturation, costs.loadtrace.as_ref(), &idle);
    Ok(())
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
        Mode::Loadtrace => Some(Tracer::loadtrace(loadtrace, bpf_stats)?),
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
    fn loadtrace(bin: &Path, bpf_stats: bool) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["--top", "10", "--interval", "0.5", "--json"]);
        if bpf_stats {
            cmd.arg("--bpf-stats");
        }
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
    let t = Tracer::loadtrace(loadtrace, false)?;
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

fn print_report(
    per_switch: &[(Mode, Vec<f64>)],
    saturation: &[LoadtraceRun],
    costs: Option<&LoadtraceRun>,
    idle: &Idle,
) {
    let base = median(&per_switch[0].1);
    println!("\n| mode | ns per switch, median | range | added per switch (median) |");
    println!("|---|---|---|---|");
    for (mode, v) in per_switch {
        let (lo, hi) = range(v);
        let added = median(v) - base;
        println!(
            "| {} | {:.0} | {:.0}-{:.0} | {} |",
            mode.label(),
            median(v),
            lo,
            hi,
            if *mode == Mode::Untraced {
                "-".to_owned()
            } else {
                format!("{added:+.0} ns")
            }
        );
    }
    // Added cost per round, each traced round against the median untraced one.
    if let Some(lt) = per_switch.iter().find(|(m, _)| *m == Mode::Loadtrace) {
        let added: Vec<f64> = lt.1.iter().map(|v| v - base).collect();
        let (lo, hi) = range(&added);
        println!(
            "\nloadtrace added per switch: median {:+.0} ns, range {lo:+.0} to {hi:+.0} ns",
            median(&added)
        );
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
