//! A writer for the "newc" cpio format, the one format the kernel unpacks an initramfs from.
//! Written here because it is small and spares the host a cpio tool; it also lets the
//! archive hold a device node without the host needing to create one.

use std::io::{self, Write};

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const CHAR_DEV: u32 = 0o020_000;
const TYPE_MASK: u32 = 0o170_000;

pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, next_ino: 1 }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, DIR | 0o755, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, FILE | perm, (0, 0), data)
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, CHAR_DEV | perm, (major, minor), &[])
    }

    /// Writes the trailer entry that ends the archive and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }

    /// Header, name and data, each of the last two padded to four bytes. Owner root, time
    /// zero: the archive depends only on its contents.
    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name_size = path.len() + 1;
        let nlink = if mode & TYPE_MASK == DIR { 2 } else { 1 };
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            len_u32(data.len())?,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            len_u32(name_size)?,
            0, // check, unused by newc
        ];
        self.next_ino += 1;
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(path.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name_size)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, written: usize) -> io::Result<()> {
        let zeros = [0u8; 3];
        self.out.write_all(&zeros[..(4 - written % 4) % 4])
    }
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::other("entry larger than cpio's 4 GiB limit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_described() {
        let mut w = Writer::new(Vec::new());
        w.file("init", 0o755, b"hello").unwrap();
        let out = w.finish().unwrap();
        let header = std::str::from_utf8(&out[..110]).unwrap();
        assert!(header.starts_with("070701"));
        assert_eq!(&header[14..22], "000081ed", "mode: regular file 0755");
        assert_eq!(&header[54..62], "00000005", "file size");
        assert_eq!(&header[94..102], "00000005", "name size with its NUL");
        // 110 + 5 name bytes = 115, padded to 116; then 5 data bytes padded to 8.
        assert_eq!(&out[110..116], b"init\0\0");
        assert_eq!(&out[116..124], b"hello\0\0\0");
        assert!(out[124..].starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
    }
}
