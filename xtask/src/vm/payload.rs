//! The programs that run inside the guest, built as static executables: the initramfs has
//! no C library, and a static binary needs none.

use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::setup;

const TARGET: &str = "x86_64-unknown-linux-gnu";

pub struct Payload {
    pub loadtrace: PathBuf,
    pub workload: PathBuf,
    /// `lt-validate`, for `cargo xtask validate`.
    pub validator: PathBuf,
    /// Test executables, each with the name it gets under `/tests` in the guest.
    pub tests: Vec<(String, PathBuf)>,
}

/// Everything the test guest runs: loadtrace, the workload generator and the tests.
pub fn build(root: &Path) -> Result<Payload> {
    let programs = build_programs(root)?;
    let tests = build_tests(root, &target_dir(root))?;
    Ok(Payload { tests, ..programs })
}

/// loadtrace and the workload generator only, for a guest that runs a script of its own.
pub fn build_programs(root: &Path) -> Result<Payload> {
    setup::ensure_toolchain()?;
    eprintln!("xtask: building the VM programs (static, release)");
    let target_dir = target_dir(root);
    setup::run(cargo(root, &target_dir, "build").args(["-p", "loadtrace", "--bin", "loadtrace"]))?;
    setup::run(cargo(root, &target_dir, "build").args(["-p", "loadtrace-tests", "--bins"]))?;
    let bin_dir = target_dir.join(TARGET).join("release");
    Ok(Payload {
        loadtrace: existing(bin_dir.join("loadtrace"))?,
        workload: existing(bin_dir.join("lt-workload"))?,
        validator: existing(bin_dir.join("lt-validate"))?,
        tests: Vec::new(),
    })
}

/// A target directory of its own: the static RUSTFLAGS would otherwise invalidate the host
/// build's cache, and the host build would invalidate this one.
fn target_dir(root: &Path) -> PathBuf {
    root.join("target/vm-build")
}

/// `cargo <subcommand> --release` for the static target. With an explicit `--target`,
/// RUSTFLAGS reach only the target's code, so build scripts and proc macros stay dynamic.
fn cargo(root: &Path, target_dir: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Takes precedence over RUSTFLAGS, so one inherited from the caller would undo ours.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args([subcommand, "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    cmd
}

/// Builds the test executables and takes their paths from cargo's JSON messages, the only
/// place that names them (their file names carry a hash).
fn build_tests(root: &Path, target_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo(root, target_dir, "test");
    // json-render-diagnostics keeps compiler errors readable on stderr.
    cmd.args([
        "--no-run",
        "-p",
        "loadtrace-tests",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut tests = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Some(test) = test_executable(&line) {
            tests.push(test);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    if tests.is_empty() {
        bail!("cargo built no test executables for loadtrace-tests");
    }
    // Cargo reports artifacts in build order, which varies; the guest runs them by name.
    tests.sort();
    tests.dedup_by(|a, b| a.0 == b.0);
    Ok(tests)
}

/// The name and path of a test executable from one cargo JSON message. Integration tests
/// keep their target name; the unit tests of a library or binary get the kind as a prefix,
/// because a package's library, binaries and integration tests may share a name.
fn test_executable(line: &str) -> Option<(String, PathBuf)> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
        return None;
    }
    let exe = msg["executable"].as_str()?;
    let name = msg["target"]["name"].as_str()?;
    let name = match msg["target"]["kind"][0].as_str() {
        Some("test") | None => name.to_string(),
        Some(kind) => format!("{kind}-{name}"),
    };
    Some((name, PathBuf::from(exe)))
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("expected the build to produce {}", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_test_executables_only() {
        let test = r#"{"reason":"compiler-artifact","target":{"name":"sched","kind":["test"]},
            "profile":{"test":true},"executable":"/t/sched-abc"}"#
            .replace('\n', "");
        let unit = r#"{"reason":"compiler-artifact","target":{"name":"w","kind":["bin"]},
            "profile":{"test":true},"executable":"/t/w-abc"}"#
            .replace('\n', "");
        let bin = r#"{"reason":"compiler-artifact","target":{"name":"lt-workload"},
            "profile":{"test":false},"executable":"/t/lt-workload"}"#
            .replace('\n', "");
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"x"},
            "profile":{"test":true},"executable":null}"#
            .replace('\n', "");
        assert_eq!(
            test_executable(&test),
            Some(("sched".into(), "/t/sched-abc".into()))
        );
        assert_eq!(
            test_executable(&unit),
            Some(("bin-w".into(), "/t/w-abc".into()))
        );
        assert_eq!(test_executable(&bin), None);
        assert_eq!(test_executable(&lib), None);
        assert_eq!(
            test_executable(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
