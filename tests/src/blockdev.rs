//! Block devices by the names lsblk prints, found through sysfs: which devices carry the
//! requests for a file or a device node, to compare with the devices loadtrace names.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// The device a block device node stands for, or that holds a file, as lsblk names it.
pub fn name_of(path: &Path) -> Result<String> {
    lsblk_name(&sysfs_dir(path)?)
}

/// Every device that carries requests for `path`, as lsblk names them: the device itself,
/// the disk a partition belongs to (request-level tracing names the disk, bio-level the
/// partition), and the members of a device-mapper or md device, with their disks.
pub fn carriers(path: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    collect(&sysfs_dir(path)?, &mut names)?;
    Ok(names)
}

/// `/sys/dev/block/MAJ:MIN` resolved to the device's own sysfs directory.
fn sysfs_dir(path: &Path) -> Result<PathBuf> {
    let (major, minor) = device_number(path)?;
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    fs::canonicalize(&link).with_context(|| {
        format!(
            "resolving {} (the block device of {})",
            link.display(),
            path.display()
        )
    })
}

/// The device I/O to `path` goes to: a block device node's own number, else the number of
/// the device its filesystem lives on.
fn device_number(path: &Path) -> Result<(u32, u32)> {
    let meta = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    let dev = if meta.file_type().is_block_device() {
        meta.rdev()
    } else {
        meta.dev()
    };
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    // Major 0 is the kernel's anonymous devices: tmpfs, overlayfs, btrfs subvolumes.
    ensure!(
        major != 0,
        "{} is on a filesystem without a block device of its own (device {major}:{minor})",
        path.display()
    );
    Ok((major, minor))
}

/// Adds the device at `dir` and every device under it to `names`.
fn collect(dir: &Path, names: &mut BTreeSet<String>) -> Result<()> {
    if !names.insert(lsblk_name(dir)?) {
        return Ok(());
    }
    // A partition's directory sits inside its disk's, and has a `partition` file.
    if dir.join("partition").is_file() {
        let disk = dir
            .parent()
            .context("a partition directory without a parent")?;
        collect(disk, names)?;
    }
    for member in members(dir)? {
        collect(&member, names)?;
    }
    Ok(())
}

/// The devices a stacked device (device-mapper, md) is built on: its `slaves` links.
fn members(dir: &Path) -> Result<Vec<PathBuf>> {
    let slaves = dir.join("slaves");
    if !slaves.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(&slaves).with_context(|| format!("listing {}", slaves.display()))? {
        let link = entry
            .with_context(|| format!("listing {}", slaves.display()))?
            .path();
        found.push(
            fs::canonicalize(&link).with_context(|| format!("resolving {}", link.display()))?,
        );
    }
    Ok(found)
}

/// lsblk's NAME: a device-mapper device's own name (`vg-root`), else the kernel's.
fn lsblk_name(dir: &Path) -> Result<String> {
    if let Ok(dm) = fs::read_to_string(dir.join("dm/name"))
        && !dm.trim().is_empty()
    {
        return Ok(dm.trim().to_owned());
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no device name", dir.display()))?;
    Ok(name.to_owned())
}

/// Writes completed and milliseconds spent writing, from /sys/block/NAME/stat.
pub fn write_stats(name: &str) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/sys/block/{name}/stat"))
        .with_context(|| format!("reading /sys/block/{name}/stat"))?;
    let f: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing /sys/block/{name}/stat: {text:?}"))?;
    anyhow::ensure!(f.len() >= 8, "short /sys/block/{name}/stat: {text:?}");
    Ok((f[4], f[7]))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A sysfs-like tree: disk sda with partition sda1, and dm-0 ("vg-root") on sda1.
    fn fake_sysfs(root: &Path) -> (PathBuf, PathBuf) {
        let sda1 = root.join("devices/pci0/block/sda/sda1");
        let dm0 = root.join("devices/virtual/block/dm-0");
        fs::create_dir_all(&sda1).unwrap();
        fs::write(sda1.join("partition"), "1\n").unwrap();
        fs::create_dir_all(dm0.join("dm")).unwrap();
        fs::create_dir_all(dm0.join("slaves")).unwrap();
        fs::write(dm0.join("dm/name"), "vg-root\n").unwrap();
        symlink(&sda1, dm0.join("slaves/sda1")).unwrap();
        (sda1, dm0)
    }

    #[test]
    fn partitions_and_mapped_devices_lead_to_their_disks() {
        let root = std::env::temp_dir().join(format!("lt-blockdev-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (sda1, dm0) = fake_sysfs(&root);
        let names = |dir: &Path| {
            let mut names = BTreeSet::new();
            collect(dir, &mut names).unwrap();
            names.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(names(&sda1), ["sda", "sda1"]);
        assert_eq!(names(&dm0), ["sda", "sda1", "vg-root"]);
        assert_eq!(names(sda1.parent().unwrap()), ["sda"]);
        fs::remove_dir_all(&root).unwrap();
    }
}
