//! Project tasks: `cargo xtask <command>`. Every command first makes sure the machine has what
//! the build needs (see `setup`), so a fresh checkout needs nothing but rustup's toolchains.

mod bench;
mod build;
mod setup;
mod test;
mod validate;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test loadtrace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build needs (nightly rust-src, bpf-linker) when it is missing.
    Setup,
    /// Build loadtrace (release) and run it with the given arguments: `cargo xtask run -- --top 10`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests, integration tests on this kernel, then the VM tests on the
    /// pinned kernels.
    Test {
        /// Skip the VM tests (for a quick local loop; CI never sets this).
        #[arg(long)]
        no_vm: bool,
    },
    /// Measure what tracing costs per context switch against an untraced run and bpftrace.
    Bench {
        /// Rounds of each mode (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds of ping-pong per round.
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// Also run loadtrace with the hooks that refine its accounting left out (the
        /// queued-sleeper hook, then the wakeup stamp too), to show what each costs.
        #[arg(long)]
        hook_costs: bool,
    },
    /// Measure what tracing costs per block I/O: O_DIRECT writes to an instant null_blk
    /// device inside the VM, untraced against loadtrace.
    BenchIo {
        /// Rounds of each mode (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Writes per round.
        #[arg(long, default_value_t = 200_000)]
        count: u64,
        /// Which pinned kernel to boot: 6.1 or 6.12.
        #[arg(long, default_value = "6.12")]
        kernel: String,
    },
    /// Compare loadtrace with the kernel's own accounting, scenario by scenario, on this
    /// kernel and the pinned ones (tables in target/validate/).
    Validate {
        /// host, 6.1, 6.12 or all.
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Seconds each scenario is traced.
        #[arg(long, default_value_t = 180)]
        secs: u64,
        /// Only these scenarios, comma-separated (cpu-saturation, disk, vfork-d, mixed,
        /// fork-storm, idle).
        #[arg(long, default_value = "")]
        only: String,
        /// Keep the disk writer on this CPU (to set wakeups from the CPU that takes the
        /// disk's interrupts apart from wakeups on the writer's own).
        #[arg(long, value_name = "CPU")]
        writer_cpu: Option<usize>,
        /// Keep the fork storm's forker, and so its children, on this CPU (no wakeup of the
        /// forker then crosses CPUs).
        #[arg(long, value_name = "CPU")]
        forker_cpu: Option<usize>,
    },
    /// Boot the pinned kernels under QEMU and run the integration tests inside them.
    VmTest {
        /// Which kernel: 6.1, 6.12 or all.
        #[arg(long, default_value = "all")]
        kernel: String,
    },
}

/// Errors print as their chain of causes only: what failed is in the message, and a backtrace
/// of xtask itself (`RUST_BACKTRACE` is set for the tests' sake) would push it out of sight.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("\nCaused by:\n    {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Setup => setup::ensure_toolchain(),
        Command::Run { args } => build::run(&args),
        Command::Test { no_vm } => test::run_all(!no_vm),
        Command::Bench {
            rounds,
            secs,
            hook_costs,
        } => bench::run(&bench::Options {
            rounds,
            secs,
            hook_costs,
        }),
        Command::BenchIo {
            rounds,
            count,
            kernel,
        } => bench::run_io(&bench::IoOptions {
            kernel,
            rounds,
            count,
        }),
        Command::Validate {
            kernel,
            secs,
            only,
            writer_cpu,
            forker_cpu,
        } => validate::run(&validate::Options {
            kernel,
            secs,
            only,
            writer_cpu,
            forker_cpu,
        }),
        Command::VmTest { kernel } => vm::run(&kernel),
    }
}
