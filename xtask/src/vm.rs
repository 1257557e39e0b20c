//! VM tests: the integration suite inside QEMU on the pinned kernels.
//!
//! Each kernel boots from an initramfs that holds busybox, loadtrace, the workload binary, the
//! statically linked test executables and the few modules the tests need; `/init` runs the
//! tests and reports on the serial console, which is all the host reads back. A benchmark can
//! have the guest run a script of its own instead (`run_script`).

mod cpio;
mod initramfs;
mod kernel;
mod payload;
mod qemu;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{build, setup};
use initramfs::Guest;
use kernel::Kernel;

/// The pinned kernels (see `../shared/kernels/README.md` for why these two).
const KERNELS: [Kernel; 2] = [
    Kernel {
        version: "6.1",
        package: "linux-image-6.1.0-56-cloud-amd64-unsigned",
        deb_version: "6.1.192-2",
        deb_file: "linux-image-6.1.0-56-cloud-amd64-unsigned_6.1.192-2_amd64.deb",
        sha256: "7ff7fc8da85d313242c20698c6b34542aea447673c7c1975b0d38bd6005100b5",
    },
    Kernel {
        version: "6.12",
        package: "linux-image-6.12.117+deb12-cloud-amd64",
        deb_version: "6.12.117-1~deb12u1",
        deb_file: "linux-image-6.12.117+deb12-cloud-amd64_6.12.117-1~deb12u1_amd64.deb",
        sha256: "5195b288dec79e2981d6b84457f38b7ce7310a2d702930ec7d07209c7f78ce37",
    },
];

/// Tests under TCG run many times slower than on the host; this bounds a hung guest without
/// cutting off a slow but healthy run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What one kernel's run took, for the summary.
struct Outcome {
    version: &'static str,
    boot: Option<Duration>,
    total: Duration,
    error: Option<anyhow::Error>,
}

pub fn run(kernel: &str) -> Result<()> {
    let kernels = select_kernels(kernel)?;
    ensure_host_packages()?;
    let timeout = timeout()?;
    let root = build::workspace_root();
    let vm_dir = root.join("target/vm");
    let payload = payload::build(&root)?;

    let outcomes: Vec<Outcome> = kernels
        .iter()
        .map(|k| run_kernel(k, &payload, &vm_dir, timeout))
        .collect();
    print_summary(&outcomes);
    fail_on_errors(outcomes)
}

/// Boots one pinned kernel with `script` (busybox sh, in the environment the tests get) as
/// the guest's work instead of the tests, and returns the console's lines. Fails when the
/// script exits non-zero or the guest never finishes.
pub fn run_script(kernel: &str, script: &str) -> Result<Vec<String>> {
    let [k] = select_kernels(kernel)?[..] else {
        bail!("a script runs on one kernel, not {kernel:?}");
    };
    ensure_host_packages()?;
    let root = build::workspace_root();
    let vm_dir = root.join("target/vm");
    let payload = payload::build_programs(&root)?;
    let guest = Guest::Script(script);
    let report = boot_kernel(k, &payload, &vm_dir, timeout()?, guest)?;
    report
        .result
        .with_context(|| format!("the script on kernel {}", k.version))?;
    let log = guest_files(&vm_dir.join(k.version), guest).console_log;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn ensure_host_packages() -> Result<()> {
    setup::ensure_debian_packages(&[
        ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
        ("busybox-static", "/bin/busybox"),
        ("xz-utils", "/usr/bin/xz"),
    ])
}

fn select_kernels(name: &str) -> Result<Vec<&'static Kernel>> {
    if name == "all" {
        return Ok(KERNELS.iter().collect());
    }
    match KERNELS.iter().find(|k| k.version == name) {
        Some(k) => Ok(vec![k]),
        None => bail!("unknown kernel {name:?}: expected 6.1, 6.12 or all"),
    }
}

fn timeout() -> Result<Duration> {
    match std::env::var("LOADTRACE_VM_TIMEOUT_SECS") {
        Ok(s) => {
            let secs: u64 = s
                .parse()
                .with_context(|| format!("LOADTRACE_VM_TIMEOUT_SECS={s:?} is not a number"))?;
            Ok(Duration::from_secs(secs))
        }
        Err(_) => Ok(DEFAULT_TIMEOUT),
    }
}

/// Runs one kernel and records the result instead of returning early, so that `all` still
/// tests the second kernel when the first fails.
fn run_kernel(k: &Kernel, payload: &payload::Payload, vm_dir: &Path, timeout: Duration) -> Outcome {
    eprintln!("xtask: VM tests on kernel {}", k.version);
    let started = Instant::now();
    let (boot, result) = match boot_kernel(k, payload, vm_dir, timeout, Guest::Tests) {
        Ok(report) => (report.boot_time, report.result),
        Err(e) => (None, Err(e)),
    };
    Outcome {
        version: k.version,
        boot,
        total: started.elapsed(),
        error: result
            .err()
            .map(|e| e.context(format!("VM tests on kernel {}", k.version))),
    }
}

/// Prepares the kernel and initramfs and boots; `Err` means the guest never got to run.
fn boot_kernel(
    k: &Kernel,
    payload: &payload::Payload,
    vm_dir: &Path,
    timeout: Duration,
    guest: Guest,
) -> Result<qemu::Report> {
    let dir = vm_dir.join(k.version);
    let unpacked = kernel::prepare(k, &dir)?;
    let files = guest_files(&dir, guest);
    initramfs::write(&files.initrd, &unpacked.modules, payload, guest)?;
    let disk = scratch_disk(vm_dir)?;
    qemu::boot(&qemu::Boot {
        label: k.version,
        kernel: &unpacked.vmlinuz,
        initrd: &files.initrd,
        disk: &disk,
        timeout,
        console_log: &files.console_log,
    })
}

struct GuestFiles {
    initrd: PathBuf,
    console_log: PathBuf,
}

/// Files of their own for a script guest, so a script run leaves the last test run's
/// console log alone.
fn guest_files(dir: &Path, guest: Guest) -> GuestFiles {
    let prefix = match guest {
        Guest::Tests => "",
        Guest::Script(_) => "script-",
    };
    GuestFiles {
        initrd: dir.join(format!("{prefix}initramfs.cpio")),
        console_log: dir.join(format!("{prefix}console.log")),
    }
}

/// A fresh zeroed 256 MiB raw disk per boot, so no test sees what an earlier one wrote. A
/// sparse file is exactly what `qemu-img create -f raw` makes, without needing qemu-utils.
fn scratch_disk(vm_dir: &Path) -> Result<PathBuf> {
    const SIZE: u64 = 256 << 20;
    std::fs::create_dir_all(vm_dir).with_context(|| format!("creating {}", vm_dir.display()))?;
    let path = vm_dir.join("scratch.img");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(SIZE)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(path)
}

fn print_summary(outcomes: &[Outcome]) {
    eprintln!("xtask: VM test summary");
    for o in outcomes {
        let boot = o
            .boot
            .map_or_else(|| "-".to_string(), |b| format!("{:.1}s", b.as_secs_f64()));
        let verdict = if o.error.is_some() {
            "FAILED"
        } else {
            "passed"
        };
        eprintln!(
            "  kernel {:<5} {verdict}  boot {boot:>6}  total {:.1}s",
            o.version,
            o.total.as_secs_f64()
        );
    }
}

fn fail_on_errors(outcomes: Vec<Outcome>) -> Result<()> {
    let mut errors: Vec<anyhow::Error> = outcomes.into_iter().filter_map(|o| o.error).collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
            bail!("VM tests failed on {n} kernels:\n\n{}", all.join("\n\n"))
        }
    }
}
