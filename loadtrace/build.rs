//! Builds the kernel-side programs (loadtrace-ebpf, on nightly for bpfel-unknown-none) and
//! leaves the object in OUT_DIR, where `include_bytes!` picks it up.

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../loadtrace-ebpf");
    println!("cargo:rerun-if-changed={manifest_dir}/../loadtrace-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "loadtrace-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
