//! Checks made before touching the kernel, so that a missing privilege or feature is a
//! sentence saying what to do rather than an errno from deep inside a BPF syscall.

use std::fs;

use anyhow::{Result, bail};

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
/// BPF ring buffers arrived in 5.8.
const MIN_KERNEL: (u32, u32) = (5, 8);

pub fn check() -> Result<()> {
    check_kernel_version(&crate::procfs::kernel_release())?;
    check_capabilities()?;
    raise_memlock();
    Ok(())
}

/// (major, minor) of a kernel release string; (0, 0) where it does not say.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

pub fn check_kernel_version(release: &str) -> Result<()> {
    if kernel_version(release) < MIN_KERNEL {
        bail!(
            "kernel {release} is too old: loadtrace needs Linux {}.{} or newer (BPF ring buffer)",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(())
}

fn check_capabilities() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let missing = missing_capabilities(&status);
    if !missing.is_empty() {
        bail!(
            "loadtrace needs root, or the capabilities {} (missing here); run it with sudo",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// Capabilities loadtrace needs that the `CapEff` line of /proc/self/status lacks.
pub fn missing_capabilities(status: &str) -> Vec<&'static str> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// Where the kernel names the clock behind CLOCK_MONOTONIC, which every timestamp loadtrace
/// takes in the kernel reads.
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

/// A warning when the running clocksource is read from a device rather than a CPU register:
/// two timestamps per context switch then cost microseconds instead of nanoseconds, and in a
/// virtual machine such a read can come back late when the host is busy (measured: QEMU with
/// the HPET, a loaded host, run-queue waits 10-25% short).
pub fn clocksource_warning() -> Option<String> {
    let name = fs::read_to_string(CLOCKSOURCE).ok()?;
    slow_clocksource_warning(name.trim())
}

pub fn slow_clocksource_warning(name: &str) -> Option<String> {
    const SLOW: [&str; 5] = ["hpet", "acpi_pm", "jiffies", "refined-jiffies", "pit"];
    SLOW.contains(&name).then(|| {
        format!(
            "the kernel's clocksource is {name}, a device read on every timestamp: tracing costs \
             more than usual, and under virtualisation the timestamps can lag on a busy host \
             (a TSC the kernel trusts, e.g. booting with tsc=reliable where that is true, avoids it)"
        )
    })
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK. Raising it may be refused (no
/// CAP_SYS_RESOURCE); newer kernels do not need it, so a refusal is not an error.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(check_kernel_version("6.18.44-fc-v669").is_ok());
        assert!(check_kernel_version("5.8.0").is_ok());
        let err = check_kernel_version("5.4.0-150-generic").unwrap_err();
        assert!(err.to_string().contains("too old"), "{err}");
    }

    #[test]
    fn device_clocksources_are_warned_about() {
        let warning = slow_clocksource_warning("hpet").unwrap();
        assert!(warning.contains("hpet"), "{warning}");
        assert!(slow_clocksource_warning("acpi_pm").is_some());
        for fast in [
            "tsc",
            "kvm-clock",
            "arch_sys_counter",
            "hyperv_clocksource_tsc_page",
        ] {
            assert_eq!(slow_clocksource_warning(fast), None, "{fast}");
        }
    }

    #[test]
    fn capabilities_from_status() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(missing_capabilities(root).is_empty());
        let none = "CapEff:\t0000000000000000\n";
        assert_eq!(missing_capabilities(none), ["CAP_BPF", "CAP_PERFMON"]);
        let bpf_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_BPF);
        assert_eq!(missing_capabilities(&bpf_only), ["CAP_PERFMON"]);
    }
}
