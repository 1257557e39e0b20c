//! Building loadtrace and its test programs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::setup;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Builds the loadtrace binary (release) for this machine and returns its path.
pub fn build_loadtrace() -> Result<PathBuf> {
    setup::ensure_toolchain()?;
    let root = workspace_root();
    setup::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "loadtrace",
        "--bin",
        "loadtrace",
    ]))?;
    Ok(root.join("target/release/loadtrace"))
}

/// Builds the workload generator the tests and benchmarks drive, and returns its path.
pub fn build_workload() -> Result<PathBuf> {
    let root = workspace_root();
    setup::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "loadtrace-tests",
        "--bin",
        "lt-workload",
    ]))?;
    Ok(root.join("target/release/lt-workload"))
}

pub fn run(args: &[String]) -> Result<()> {
    let bin = build_loadtrace()?;
    let status = Command::new(&bin)
        .args(args)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}
