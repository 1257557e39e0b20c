//! What loadtrace reads from /proc and /sys: the kernel's own figures and process names.

use std::{collections::HashMap, fs, path::Path};

use anyhow::{Context as _, Result, anyhow};

use crate::tracer::SeedTask;

/// /proc/loadavg: the 1-, 5- and 15-minute averages.
pub fn loadavg() -> Result<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse_loadavg(&text)
}

pub fn parse_loadavg(text: &str) -> Result<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut avg = [0.0; 3];
    for a in &mut avg {
        *a = fields
            .next()
            .ok_or_else(|| anyhow!("/proc/loadavg is too short: {text:?}"))?
            .with_context(|| format!("/proc/loadavg is not numbers: {text:?}"))?;
    }
    Ok(avg)
}

pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A process's name, or None once it is gone.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// Runs a short-lived thread on every online CPU. Each causes a context switch there, after
/// which the kernel side knows who every CPU runs: a thread that has had a CPU to itself since
/// before tracing began would otherwise stay invisible until it left it.
pub fn visit_every_cpu() {
    let handles: Vec<_> = (0..online_cpus() as usize)
        .map(|cpu| {
            std::thread::spawn(move || {
                // SAFETY: cpu_set_t is a plain bit mask; all-zero is the empty set.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                unsafe { libc::CPU_SET(cpu, &mut set) };
                // SAFETY: a valid mask for the calling thread.
                let pinned =
                    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } == 0;
                if pinned {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// The process a thread belongs to.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Block device names as lsblk shows them (vda, nullb0, nvme0n1p2), from the kernel's dev_t.
#[derive(Default)]
pub struct DeviceNames {
    cache: HashMap<u32, String>,
}

impl DeviceNames {
    pub fn name(&mut self, dev: u32) -> String {
        self.cache
            .entry(dev)
            .or_insert_with(|| device_name(dev))
            .clone()
    }

    /// Names of every device the given processes did I/O on.
    pub fn names_for(
        &mut self,
        processes: &[crate::model::process::ProcessInterval],
    ) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        for p in processes {
            for &dev in p.disk.devices.keys() {
                out.entry(dev).or_insert_with(|| self.name(dev));
            }
        }
        out
    }
}

/// The kernel's dev_t packs major << 20 | minor; /sys/dev/block/MAJ:MIN links to the device.
fn device_name(dev: u32) -> String {
    let (major, minor) = (dev >> 20, dev & 0xf_ffff);
    fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// The most threads the kernel can have at once: no more can be tracked at the same time.
pub fn max_threads() -> u32 {
    let read = |p: &str| -> Option<u32> { fs::read_to_string(p).ok()?.trim().parse().ok() };
    let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(4_194_304);
    let threads_max = read("/proc/sys/kernel/threads-max").unwrap_or(pid_max);
    pid_max.min(threads_max).max(1024)
}

/// Threads that are runnable (R) or in uninterruptible sleep (D) right now.
pub fn active_threads() -> Vec<SeedTask> {
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(tgid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A process can exit while it is being read: whatever is gone is skipped.
        let Ok(tasks) = fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let runnable = match stat_state(&stat) {
                Some('R') => true,
                Some('D') => false,
                _ => continue,
            };
            let (sum_exec_ns, run_delay_ns) = fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| parse_schedstat(&s))
                .unwrap_or((0, 0));
            out.push(SeedTask {
                tid,
                tgid,
                runnable,
                run_delay_ns,
                sum_exec_ns,
            });
        }
    }
    out
}

/// A thread's `schedstat`: its CPU time and its run-queue wait so far, in ns.
fn parse_schedstat(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// Whether thread `tid` of process `tgid` is still alive (not gone, not a zombie).
pub fn thread_alive(tgid: u32, tid: u32) -> bool {
    fs::read_to_string(format!("/proc/{tgid}/task/{tid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The state letter of a /proc/PID/stat line; the name before it may hold spaces and ')'.
pub fn stat_state(stat: &str) -> Option<char> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_cpu_time_then_wait() {
        assert_eq!(parse_schedstat("1234 567 8\n"), Some((1234, 567)));
        assert_eq!(parse_schedstat("1234"), None);
        assert_eq!(parse_schedstat("x 1"), None);
    }

    #[test]
    fn this_thread_is_alive_and_a_missing_one_is_not() {
        let me = std::process::id();
        assert!(thread_alive(me, me));
        assert!(!thread_alive(me, u32::MAX));
    }

    #[test]
    fn parses_loadavg() {
        let avg = parse_loadavg("0.52 0.31 0.12 2/345 6789\n").unwrap();
        assert_eq!(avg, [0.52, 0.31, 0.12]);
        assert!(parse_loadavg("0.5 x").is_err());
        assert!(parse_loadavg("").is_err());
    }

    #[test]
    fn state_survives_odd_names() {
        assert_eq!(stat_state("12 (a) b) c) D 1 2 3"), Some('D'));
        assert_eq!(stat_state("1 (init) S 0"), Some('S'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn names_block_devices_or_falls_back_to_numbers() {
        // Major 4095 is never assigned.
        assert_eq!(device_name(4095 << 20), "4095:0");
        if let Some(entry) = fs::read_dir("/sys/dev/block")
            .ok()
            .and_then(|mut d| d.next())
        {
            let entry = entry.unwrap();
            let numbers = entry.file_name().to_string_lossy().into_owned();
            let (maj, min) = numbers.split_once(':').unwrap();
            let dev = (maj.parse::<u32>().unwrap() << 20) | min.parse::<u32>().unwrap();
            let expected = fs::read_link(entry.path()).unwrap();
            assert_eq!(
                device_name(dev),
                expected.file_name().unwrap().to_string_lossy()
            );
        }
    }

    #[test]
    fn finds_this_thread_running() {
        let me = std::process::id();
        let seen = active_threads();
        assert!(seen.iter().any(|t| t.tgid == me && t.runnable), "{seen:?}");
    }
}
