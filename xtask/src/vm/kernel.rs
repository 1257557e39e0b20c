//! The pinned kernel packages: found or downloaded, checked against their pinned hashes,
//! unpacked, and the modules the guest needs picked out in load order.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{build, setup};

/// One pinned Debian kernel package.
pub struct Kernel {
    /// The short name `--kernel` takes, also the name of its directory under `target/vm`.
    pub version: &'static str,
    pub package: &'static str,
    pub deb_version: &'static str,
    pub deb_file: &'static str,
    pub sha256: &'static str,
}

/// A kernel unpacked and ready to boot.
pub struct Unpacked {
    pub vmlinuz: PathBuf,
    /// In load order: every module comes after the modules it depends on.
    pub modules: Vec<Module>,
}

pub struct Module {
    pub name: String,
    /// Uncompressed, so the guest's insmod needs no decompressor.
    pub data: Vec<u8>,
    pub params: &'static str,
}

/// The modules the guest loads, with their parameters.
const WANTED: [(&str, &str); 3] = [
    // The scratch disk is a virtio PCI device. 6.1 builds the PCI transport as a module, and
    // virtio_blk does not depend on it by symbol, so it has to be asked for by name.
    ("virtio_pci", ""),
    ("virtio_blk", ""),
    // Two null devices whose every request completes after exactly 2 ms (irqmode=2 is the
    // timer mode), which gives the tests a known I/O latency to measure against.
    ("null_blk", "nr_devices=2 irqmode=2 completion_nsec=2000000"),
];

/// Makes the kernel bootable under `dir`: verified package, unpacked tree, modules.
pub fn prepare(k: &Kernel, dir: &Path) -> Result<Unpacked> {
    let deb = find_deb(k)?;
    let root = dir.join("root");
    unpack(k, &deb, &root)?;
    Ok(Unpacked {
        vmlinuz: find_vmlinuz(&root)?,
        modules: load_order(&modules_dir(&root)?)?,
    })
}

/// Prefers the copies kept next to the workspace, which outlive Debian's archive; downloads
/// into the user's cache (never into the source tree) only when they are not there.
fn find_deb(k: &Kernel) -> Result<PathBuf> {
    let shared = build::workspace_root().join("../shared/kernels");
    if !shared.is_dir() {
        return cached_deb(k);
    }
    let deb = shared.join(k.deb_file);
    verify(k, &deb)?;
    Ok(deb)
}

/// A download cut short leaves a file that fails the check; it is fetched again rather than
/// left to fail every later run.
fn cached_deb(k: &Kernel) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let deb = cache.join(k.deb_file);
    if deb.exists() {
        match verify(k, &deb) {
            Ok(()) => return Ok(deb),
            Err(e) => {
                eprintln!("xtask: {e:#}; downloading it again");
                fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
            }
        }
    }
    download(k, &cache)?;
    verify(k, &deb)?;
    Ok(deb)
}

fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home =
                std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?;
            PathBuf::from(home).join(".cache")
        }
    };
    let dir = base.join("loadtrace/kernels");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `apt-get download` fails on a machine whose package lists are stale or missing the
/// security suite's newest entries, so a failure is retried once after `apt-get update`.
fn download(k: &Kernel, cache: &Path) -> Result<()> {
    let spec = format!("{}={}", k.package, k.deb_version);
    eprintln!(
        "xtask: downloading kernel package {spec} into {}",
        cache.display()
    );
    let get = || {
        setup::run(
            Command::new("apt-get")
                .current_dir(cache)
                .args(["download", &spec]),
        )
    };
    if get().is_ok() {
        return Ok(());
    }
    setup::run(Command::new("apt-get").args(["update", "-q"]))?;
    get().with_context(|| format!("downloading {spec} (has Debian's archive dropped it?)"))
}

/// Checks the package against the hash pinned here rather than a sums file next to it, so a
/// replaced package and sums file are caught too.
fn verify(k: &Kernel, deb: &Path) -> Result<()> {
    let out = Command::new("sha256sum")
        .arg(deb)
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!(
            "sha256sum {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let actual = stdout.split_whitespace().next().unwrap_or_default();
    if actual != k.sha256 {
        bail!(
            "{} has sha256 {actual}, expected {}: not the pinned kernel package",
            deb.display(),
            k.sha256
        );
    }
    Ok(())
}

/// Unpacks once; the stamp is written last, so an interrupted unpack is redone next time.
fn unpack(k: &Kernel, deb: &Path, root: &Path) -> Result<()> {
    let stamp = root.join(".unpacked");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == k.sha256) {
        return Ok(());
    }
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    setup::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    fs::write(&stamp, k.sha256).with_context(|| format!("writing {}", stamp.display()))
}

fn find_vmlinuz(root: &Path) -> Result<PathBuf> {
    let boot = root.join("boot");
    single_entry(&boot, |name| name.starts_with("vmlinuz-"))
        .with_context(|| format!("finding the kernel image in {}", boot.display()))
}

/// `lib/modules/<release>`, of which a kernel package holds exactly one.
fn modules_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("lib/modules");
    single_entry(&dir, |_| true)
        .with_context(|| format!("finding the modules in {}", dir.display()))
}

fn single_entry(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if matches(&entry.file_name().to_string_lossy()) {
            found.push(entry.path());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!("expected one match in {}, found {n}", dir.display()),
    }
}

/// Orders the wanted modules and their dependencies for loading. The package has no
/// modules.dep (depmod writes it at install time), so the dependencies come from each
/// module's own `depends=` entry, which is what depmod reads too.
fn load_order(modules_dir: &Path) -> Result<Vec<Module>> {
    let index = index_modules(&modules_dir.join("kernel"))?;
    let builtin = builtin_modules(modules_dir)?;
    let mut ordered = Vec::new();
    for (name, params) in WANTED {
        // A module built into this kernel needs no loading (6.12 builds in virtio_pci).
        if !builtin.contains(name) {
            visit(name, params, &index, &mut ordered)?;
        }
    }
    Ok(ordered)
}

/// Depth first, dependencies before dependents; module dependencies cannot be cyclic.
fn visit(
    name: &str,
    params: &'static str,
    index: &HashMap<String, PathBuf>,
    ordered: &mut Vec<Module>,
) -> Result<()> {
    if ordered.iter().any(|m| m.name == name) {
        return Ok(());
    }
    let path = index
        .get(name)
        .with_context(|| format!("module {name} is neither shipped nor built in"))?;
    let data = read_module(path)?;
    for dep in depends(&data) {
        visit(&dep, "", index, ordered)?;
    }
    ordered.push(Module {
        name: name.to_string(),
        data,
        params,
    });
    Ok(())
}

/// Maps module names to files. Names use `_` where file names may use `-`, as the kernel does.
fn index_modules(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut index = HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(name) = module_name(&path) {
                index.insert(name, path);
            }
        }
    }
    Ok(index)
}

fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".ko.xz")
        .or_else(|| file.strip_suffix(".ko"))?;
    Some(stem.replace('-', "_"))
}

fn builtin_modules(modules_dir: &Path) -> Result<HashSet<String>> {
    let path = modules_dir.join("modules.builtin");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect())
}

/// 6.1 ships plain `.ko`, 6.12 `.ko.xz`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz")?;
        if !out.status.success() {
            bail!(
                "xz -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return Ok(out.stdout);
    }
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The module's `depends=` entry from its `.modinfo` section, whose entries are
/// NUL-terminated `key=value` strings.
fn depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = module.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &module[start + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_from_modinfo() {
        let module = b"\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(depends(module), ["virtio", "virtio_ring"]);
    }

    #[test]
    fn empty_depends_means_none() {
        assert!(depends(b"\0depends=\0name=configfs\0").is_empty());
        assert!(depends(b"no modinfo here").is_empty());
    }

    #[test]
    fn module_names_normalise_dashes_and_suffixes() {
        assert_eq!(
            module_name(Path::new("a/null_blk.ko.xz")).as_deref(),
            Some("null_blk")
        );
        assert_eq!(
            module_name(Path::new("kernel/x/virtio-pci.ko")).as_deref(),
            Some("virtio_pci")
        );
        assert_eq!(module_name(Path::new("README")), None);
    }
}
