//! Harness for loadtrace's integration tests: runs loadtrace and the `lt-workload`
//! generator as child processes, collects loadtrace's JSON reports, and reads the
//! kernel's own accounting from /proc to check them against.
//!
//! The tests need root (loadtrace loads eBPF programs). Without it they skip, except
//! under CI (`CI=true`), where a skipped suite would pass without testing anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

pub mod blockdev;
pub mod check;
mod child;
mod lines;
pub mod loadtrace;
pub mod procfs;
pub mod report;
pub mod samples;
pub mod workload;

pub use loadtrace::{Loadtrace, Options, Received, reports_within, runnable_against_run_queues};
pub use report::{Disk, DiskSum, Process, Report, Thread};
pub use workload::Workload;

/// True when the test may go on; false (after saying so) when it must skip for want of
/// root. Panics under CI instead: there a missing privilege is a broken setup.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("loadtrace tests need root, and under CI they must not be skipped");
    }
    note(
        "skipping: needs root (loadtrace loads eBPF programs); run as root or via `cargo xtask test`",
    );
    false
}

/// Writes a line to the test's stderr, past the test harness's output capture, for
/// what must be seen (and recorded) even when the test passes.
pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// True inside the project's QEMU test VM (`LT_IN_VM=1`), where everything runs under
/// TCG emulation, many times slower than on the host.
pub fn in_vm() -> bool {
    std::env::var("LT_IN_VM").is_ok_and(|v| v == "1")
}

/// A timeout stretched for the VM. Only how long a test waits is scaled this way,
/// never what it accepts.
pub fn patience(timeout: Duration) -> Duration {
    if in_vm() { timeout * 10 } else { timeout }
}

/// The workspace this crate belongs to.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The loadtrace binary under test: `LOADTRACE_BIN` (set by `cargo xtask test`), else
/// the workspace's release build.
pub fn loadtrace_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LOADTRACE_BIN") {
        return PathBuf::from(path);
    }
    let built = workspace_root().join("target/release/loadtrace");
    if built.is_file() {
        return built;
    }
    panic!(
        "no loadtrace binary: set LOADTRACE_BIN, build {} (cargo build --release -p loadtrace), \
         or run the suite with `cargo xtask test`",
        built.display()
    );
}

/// The lt-workload binary: `LT_WORKLOAD_BIN` if set (the VM has no Cargo), else
/// `built`, the path Cargo gave the test at compile time. Use [`workload_bin!`].
pub fn workload_bin_or(built: &str) -> PathBuf {
    std::env::var_os("LT_WORKLOAD_BIN").map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// The lt-workload binary. A macro because Cargo tells only the integration tests
/// themselves, not this library, where it put the crate's binaries.
#[macro_export]
macro_rules! workload_bin {
    () => {
        $crate::workload_bin_or(env!("CARGO_BIN_EXE_lt-workload"))
    };
}

/// Where the tests may write with O_DIRECT: `LT_SCRATCH` (a raw block device in the
/// VM), else a file under the workspace's target directory.
pub fn scratch_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("LT_SCRATCH") {
        return Ok(PathBuf::from(path));
    }
    let dir = workspace_root().join("target/lt-scratch");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("odirect"))
}
