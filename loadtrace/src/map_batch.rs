//! Reads a whole BPF hash map with BPF_MAP_LOOKUP_BATCH.
//!
//! Written by hand because aya 0.14 has no batch operations. Batches matter here twice over:
//! one syscall per few hundred entries instead of two per entry (10,000 threads every interval
//! would otherwise be 20,000 syscalls), and a walk that stays correct while the kernel deletes
//! entries, where `get_next_key` restarts from the first bucket when its cursor disappears.

use std::{io, mem::size_of, os::fd::RawFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel-internal ENOTSUPP that some BPF commands leak to userspace.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Appends every (key, value) of the hash map behind `fd` to `out`.
///
/// Fails with `ErrorKind::Unsupported` on kernels without batch lookups (before 5.6).
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(
    fd: RawFd,
    out: &mut Vec<(K, V)>,
) -> io::Result<()> {
    let mut chunk: u32 = 1024;
    let mut keys = vec![K::default(); chunk as usize];
    let mut values = vec![V::default(); chunk as usize];
    // The hash map's cursor is a bucket index (u32); 8 bytes leaves room either way.
    let mut cursor = [0u64; 1];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
            out_batch: cursor.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers of `chunk` keys and values that outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let err = (ret < 0).then(io::Error::last_os_error);
        let got = attr.count as usize;
        out.extend(
            keys[..got]
                .iter()
                .copied()
                .zip(values[..got].iter().copied()),
        );
        match err.as_ref().and_then(io::Error::raw_os_error) {
            None => first = false,
            // The walk reached the end of the map.
            Some(libc::ENOENT) => return Ok(()),
            // One bucket holds more entries than the buffer: retry it with a bigger one.
            Some(libc::ENOSPC) if chunk < 1 << 20 => {
                chunk *= 2;
                keys.resize(chunk as usize, K::default());
                values.resize(chunk as usize, V::default());
            }
            Some(libc::EINVAL) | Some(ENOTSUPP) if first && got == 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "BPF_MAP_LOOKUP_BATCH is not supported by this kernel",
                ));
            }
            Some(_) => return Err(err.expect("error present")),
        }
    }
}
