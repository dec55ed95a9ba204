//! A kernel or module file, opened but never read whole: its size, its first 32 KiB (all that
//! format detection needs), and positioned reads of the ranges a loader asks for. A kernel file
//! may be far larger than guest RAM (a vmlinux with debug information, whose segments are
//! small), sparse, or not a kernel at all; only what goes into guest RAM is read.

use std::borrow::Cow;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use vm_memory::GuestMemoryBackend;

use super::memory::GuestMemoryExt;
use crate::x86::PhysMemoryError;

/// What detection looks at: the multiboot2 header must lie in the first 32 KiB, the others
/// sooner; ELF program headers and notes are read where they point.
const HEAD_LEN: usize = 32 * 1024;
/// Bytes copied to guest RAM per read: bounds gdbvisor's own memory whatever the file's size.
const CHUNK: usize = 1 << 20;

/// Why an image could not be opened or read.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The file cannot be opened or inspected.
    #[error("{0}")]
    Open(std::io::Error),
    #[error(
        "not a regular file (a pipe or device) and longer than guest RAM ({}): it would be read into memory whole",
        size_text(*.0)
    )]
    /// A pipe or device longer than guest RAM.
    StreamTooLarge(u64),
    /// A read would go past the end of the file.
    #[error("{what} at offset {offset:#x}..{end:#x} is past the end of the file ({len:#x} bytes)")]
    PastEnd {
        /// What was being read.
        what: String,
        /// Where it starts in the file.
        offset: u64,
        /// Where it ends in the file.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// The file got shorter after it was opened.
    #[error("reading {what} at offset {offset:#x}: the file is shorter than when gdbvisor opened it (was it rewritten?)")]
    Shrunk {
        /// What was being read.
        what: String,
        /// Where in the file.
        offset: u64,
    },
    /// A read failed.
    #[error("reading {what} at offset {offset:#x}: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// Where in the file.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Copying into guest memory failed.
    #[error("{0}")]
    Memory(#[from] PhysMemoryError),
}

/// An image: a file read on demand, or bytes already in memory (the demo kernel, tests, or a
/// pipe).
#[derive(Clone)]
pub struct Image {
    len: u64,
    /// The file's first bytes (up to `HEAD_LEN`), or all of an in-memory image.
    known: Arc<[u8]>,
    file: Option<Arc<File>>,
}

impl Image {
    /// Opens `path` and reads its first 32 KiB. A pipe or device has no size to check before
    /// reading, so it is read, up to `stream_limit` bytes (more could not be loaded anyway).
    pub fn open(path: &Path, stream_limit: u64) -> Result<Image, ImageError> {
        let file = File::open(path).map_err(ImageError::Open)?;
        let meta = file.metadata().map_err(ImageError::Open)?;
        if !meta.is_file() {
            return Self::read_stream(file, stream_limit);
        }
        let len = meta.len();
        let mut head = vec![0u8; len.min(HEAD_LEN as u64) as usize];
        read_exact_at(&file, &mut head, 0, "the first bytes")?;
        Ok(Image {
            len,
            known: head.into(),
            file: Some(Arc::new(file)),
        })
    }

    fn read_stream(file: File, limit: u64) -> Result<Image, ImageError> {
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ImageError::Open)?;
        if bytes.len() as u64 > limit {
            return Err(ImageError::StreamTooLarge(limit));
        }
        Ok(Image::from(bytes))
    }

    /// The size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes, up to 32 KiB, whatever the source: detection sees the same bytes
    /// for a file and for the same bytes in memory.
    pub(crate) fn head(&self) -> &[u8] {
        &self.known[..self.known.len().min(HEAD_LEN)]
    }

    /// Reads `len` bytes at `offset` (headers, notes: callers keep `len` small); a range past
    /// the end of the file is [`ImageError::PastEnd`], named by `what`.
    pub(crate) fn read(
        &self,
        offset: u64,
        len: usize,
        what: &str,
    ) -> Result<Cow<'_, [u8]>, ImageError> {
        let end = self.check_range(offset, len as u64, what)?;
        if let Some(bytes) = self.known.get(offset as usize..end as usize) {
            return Ok(Cow::Borrowed(bytes));
        }
        let mut buf = vec![0u8; len];
        self.read_file(&mut buf, offset, what)?;
        Ok(Cow::Owned(buf))
    }

    /// Copies `len` bytes from `offset` to guest-physical `paddr`, a chunk at a time. The
    /// caller has checked that the destination is RAM.
    pub(crate) fn copy_to_ram(
        &self,
        ram: &impl GuestMemoryBackend,
        paddr: u64,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<(), ImageError> {
        self.check_range(offset, len, what)?;
        let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let at = offset + done;
            let chunk = &mut buf[..n];
            match self.known.get(at as usize..at as usize + n) {
                Some(bytes) => chunk.copy_from_slice(bytes),
                None => self.read_file(chunk, at, what)?,
            }
            ram.write_at(paddr + done, chunk)?;
            done += n as u64;
        }
        Ok(())
    }

    /// `offset + len`, when that is inside the file.
    fn check_range(&self, offset: u64, len: u64, what: &str) -> Result<u64, ImageError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(end),
            end => Err(ImageError::PastEnd {
                what: what.to_string(),
                offset,
                end: end.unwrap_or(u64::MAX),
                len: self.len,
            }),
        }
    }

    fn read_file(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<(), ImageError> {
        match &self.file {
            Some(file) => read_exact_at(file, buf, offset, what),
            // In-memory images are whole in `known`, which check_range has bounded.
            None => Err(ImageError::Shrunk {
                what: what.to_string(),
                offset,
            }),
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, what: &str) -> Result<(), ImageError> {
    file.read_exact_at(buf, offset).map_err(|source| {
        let what = what.to_string();
        if source.kind() == ErrorKind::UnexpectedEof {
            ImageError::Shrunk { what, offset }
        } else {
            ImageError::Read {
                what,
                offset,
                source,
            }
        }
    })
}

// Its size and source, not 32 KiB of bytes.
impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("len", &self.len)
            .field("file", &self.file.is_some())
            .finish()
    }
}

impl From<Vec<u8>> for Image {
    fn from(bytes: Vec<u8>) -> Image {
        Image {
            len: bytes.len() as u64,
            known: bytes.into(),
            file: None,
        }
    }
}

impl From<&[u8]> for Image {
    fn from(bytes: &[u8]) -> Image {
        Image::from(bytes.to_vec())
    }
}

/// A size for messages: exact bytes, and in the largest binary unit that keeps it readable.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    match UNITS.iter().find(|(shift, _)| bytes >> shift != 0) {
        Some(&(shift, unit)) => {
            let value = bytes as f64 / (1u64 << shift) as f64;
            format!("{bytes} bytes ({value:.1} {unit})")
        }
        None => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::plain_ram;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("gdbvisor-image-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn a_file_and_the_same_bytes_in_memory_read_alike() {
        let bytes: Vec<u8> = (0..HEAD_LEN as u32 + 5000).map(|i| i as u8).collect();
        let path = temp("alike", &bytes);
        let file = Image::open(&path, 0).unwrap();
        let memory = Image::from(bytes.clone());
        for image in [&file, &memory] {
            assert_eq!(image.len(), bytes.len() as u64);
            assert_eq!(image.head(), &bytes[..HEAD_LEN]);
            let tail = image.read(HEAD_LEN as u64 - 2, 6, "tail").unwrap();
            assert_eq!(&tail[..], &bytes[HEAD_LEN - 2..HEAD_LEN + 4]);
            let err = image.read(bytes.len() as u64 - 2, 4, "x").unwrap_err();
            assert!(
                err.to_string().contains("past the end of the file"),
                "{err}"
            );
            assert!(image.read(u64::MAX, 4, "x").is_err());
            let ram = plain_ram(4 << 20);
            image
                .copy_to_ram(&ram, 0x10_0000, 3, bytes.len() as u64 - 3, "all")
                .unwrap();
            let mut back = vec![0u8; bytes.len() - 3];
            ram.read_at(0x10_0000, &mut back).unwrap();
            assert_eq!(back, bytes[3..]);
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_cut_after_opening_is_an_error_not_a_crash() {
        let path = temp("shrinks", &vec![7u8; HEAD_LEN + 100]);
        let image = Image::open(&path, 0).unwrap();
        File::create(&path).unwrap().set_len(10).unwrap();
        let err = image.read(HEAD_LEN as u64, 50, "tail").unwrap_err();
        assert!(err.to_string().contains("shorter than when"), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_device_or_pipe_is_read_up_to_the_limit() {
        let empty = Image::open(Path::new("/dev/null"), 1 << 20).unwrap();
        assert!(empty.is_empty());
        let err = Image::open(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("longer than guest RAM"), "{err}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(100), "100 bytes");
        assert_eq!(size_text(3 << 30), "3221225472 bytes (3.0 GiB)");
        assert_eq!(size_text(1536 << 10), "1572864 bytes (1.5 MiB)");
    }
}
