//! `cargo xtask test`: every test the project has, in the order that fails fastest.

use std::process::Command;

use anyhow::Result;

use crate::{build, setup, vm};

pub fn run_all(with_vm: bool) -> Result<()> {
    let started = std::time::Instant::now();
    setup::ensure_toolchain()?;
    let root = build::workspace_root();

    eprintln!("xtask: unit tests");
    setup::run(Command::new("cargo").current_dir(&root).args([
        "test",
        "--package",
        "loadtrace",
        "--package",
        "loadtrace-common",
        "--package",
        "xtask",
    ]))?;

    eprintln!("xtask: integration tests on the host kernel");
    let loadtrace = build::build_loadtrace()?;
    setup::run(
        Command::new("cargo")
            .current_dir(&root)
            .env("LOADTRACE_BIN", &loadtrace)
            .args([
                "test",
                "--release",
                "--package",
                "loadtrace-tests",
                "--",
                "--test-threads=1",
            ]),
    )?;

    if with_vm {
        vm::run("all")?;
    }
    eprintln!("xtask: all tests passed in {:.0?}", started.elapsed());
    Ok(())
}
