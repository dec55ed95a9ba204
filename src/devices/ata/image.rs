//! A drive's backing file: reads and writes at byte offsets, with the write policy of
//! [`WriteMode`] (through to the file, refused, or kept in a copy-on-write overlay).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{CD_BLOCK, DISK_SECTOR};

/// Why an image cannot be attached.
#[derive(Debug, Error)]
pub enum DiskImageError {
    /// The image file cannot be opened or measured.
    #[error("{path}: {source}")]
    Open {
        /// The image file.
        path: PathBuf,
        /// Why it cannot be opened.
        source: std::io::Error,
    },
    /// A disk image must hold whole sectors.
    #[error("{path}: a disk image must be a whole number of 512-byte sectors, but it has {size} bytes ({} too many); pad it, e.g. `truncate -s %512 {}`", size % DISK_SECTOR, path.display())]
    PartialSector {
        /// The image file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The image is empty.
    #[error("{path}: the image is empty")]
    Empty {
        /// The image file.
        path: PathBuf,
    },
}

/// What a guest's writes to a disk do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// They reach the file.
    #[default]
    ReadWrite,
    /// They are refused: the command ends with an error (QEMU: `readonly=on`).
    ReadOnly,
    /// They are kept in memory for the run; the file never changes (QEMU: `snapshot=on`).
    Snapshot,
}

fn open_error(path: &Path) -> impl FnOnce(std::io::Error) -> DiskImageError + '_ {
    move |source| DiskImageError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a write did not happen.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// The drive is read-only.
    Protected,
    /// The host refused it.
    Io(io::Error),
}

/// An opened image file.
pub(crate) struct DiskImage {
    file: File,
    /// Size in bytes (a whole number of sectors for a disk).
    size: u64,
    mode: WriteMode,
    /// `snapshot` mode: sectors the guest wrote, by sector number.
    overlay: HashMap<u64, Box<[u8]>>,
}

impl DiskImage {
    /// A disk: read-write unless `mode` says otherwise; its size must be whole sectors.
    pub(crate) fn open_disk(path: &Path, mode: WriteMode) -> Result<Self, DiskImageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == WriteMode::ReadWrite)
            .open(path)
            .map_err(open_error(path))?;
        let size = Self::measure(&file, path)?;
        if size % DISK_SECTOR != 0 {
            return Err(DiskImageError::PartialSector {
                path: path.to_path_buf(),
                size,
            });
        }
        Ok(Self::new(file, size, mode))
    }

    /// A CD-ROM: read-only; a partial last block reads as zeros past the end of the file.
    pub(crate) fn open_cdrom(path: &Path) -> Result<Self, DiskImageError> {
        let file = File::open(path).map_err(open_error(path))?;
        let size = Self::measure(&file, path)?;
        Ok(Self::new(
            file,
            size.div_ceil(CD_BLOCK) * CD_BLOCK,
            WriteMode::ReadOnly,
        ))
    }

    fn measure(file: &File, path: &Path) -> Result<u64, DiskImageError> {
        let size = file.metadata().map_err(open_error(path))?.len();
        if size == 0 {
            return Err(DiskImageError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(size)
    }

    fn new(file: File, size: u64, mode: WriteMode) -> Self {
        DiskImage {
            file,
            size,
            mode,
            overlay: HashMap::new(),
        }
    }

    /// An image over an existing file, for tests.
    #[cfg(test)]
    pub(crate) fn from_file(file: File, mode: WriteMode) -> Self {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self::new(file, size, mode)
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn read_only(&self) -> bool {
        self.mode == WriteMode::ReadOnly
    }

    /// Fills `buf` from byte `offset`; the caller keeps the range inside [`Self::size`].
    /// Bytes past the end of the file (a CD's partial last block) read as zeros.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let sector = at / DISK_SECTOR;
            let within = (at % DISK_SECTOR) as usize;
            let n = (DISK_SECTOR as usize - within).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match self.overlay.get(&sector) {
                Some(data) => piece.copy_from_slice(&data[within..within + n]),
                None => read_full(&self.file, at, piece)?,
            }
            done += n;
        }
        Ok(())
    }

    /// Writes whole sectors from sector `lba`.
    pub(crate) fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), WriteFailure> {
        match self.mode {
            WriteMode::ReadOnly => Err(WriteFailure::Protected),
            WriteMode::ReadWrite => self
                .file
                .write_all_at(data, lba * DISK_SECTOR)
                .map_err(WriteFailure::Io),
            WriteMode::Snapshot => {
                for (i, sector) in data.chunks(DISK_SECTOR as usize).enumerate() {
                    self.overlay.insert(lba + i as u64, sector.into());
                }
                Ok(())
            }
        }
    }

    /// Makes written data durable (the guest's CACHE FLUSH).
    pub(crate) fn flush(&self) -> io::Result<()> {
        match self.mode {
            WriteMode::ReadWrite => self.file.sync_data(),
            WriteMode::ReadOnly | WriteMode::Snapshot => Ok(()),
        }
    }
}

/// `pread` until `buf` is full; the end of the file reads as zeros.
fn read_full(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                buf.fill(0);
                return Ok(());
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_image(bytes: &[u8]) -> (tempfile_path::TempPath, File) {
        let path = tempfile_path::TempPath::new();
        std::fs::File::create(&path.0)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path.0)
            .unwrap();
        (path, file)
    }

    /// A file removed when dropped.
    mod tempfile_path {
        pub(crate) struct TempPath(pub(crate) std::path::PathBuf);
        impl TempPath {
            pub(crate) fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                TempPath(std::env::temp_dir().join(format!(
                    "gdbvisor-image-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                )))
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn snapshot_writes_stay_in_memory() {
        let (path, file) = temp_image(&[7u8; 1024]);
        let mut image = DiskImage::from_file(file, WriteMode::Snapshot);
        image.write(1, &[9u8; 512]).unwrap();
        let mut buf = [0u8; 4];
        image.read(510, &mut buf).unwrap();
        assert_eq!(buf, [7, 7, 9, 9], "reads see the overlay");
        assert_eq!(std::fs::read(&path.0).unwrap(), vec![7u8; 1024]);
    }

    #[test]
    fn read_write_reaches_the_file_and_read_only_refuses() {
        let (path, file) = temp_image(&[0u8; 1024]);
        let mut image = DiskImage::from_file(file, WriteMode::ReadWrite);
        image.write(1, &[5u8; 512]).unwrap();
        image.flush().unwrap();
        assert_eq!(std::fs::read(&path.0).unwrap()[512..], [5u8; 512]);
        let (_path, file) = temp_image(&[0u8; 512]);
        let mut image = DiskImage::from_file(file, WriteMode::ReadOnly);
        assert!(matches!(
            image.write(0, &[1; 512]),
            Err(WriteFailure::Protected)
        ));
    }

    #[test]
    fn partial_sectors_and_empty_files_are_refused() {
        let (path, _file) = temp_image(&[0u8; 513]);
        let err = DiskImage::open_disk(&path.0, WriteMode::ReadWrite)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("512-byte sectors") && err.contains("513 bytes"),
            "{err}"
        );
        let (path, _file) = temp_image(&[]);
        assert!(DiskImage::open_cdrom(&path.0).is_err());
        let (path, _file) = temp_image(&[1u8; 3000]);
        let cd = DiskImage::open_cdrom(&path.0).unwrap();
        assert_eq!(cd.size(), 4096);
        let mut tail = [9u8; 8];
        cd.read(2996, &mut tail).unwrap();
        assert_eq!(tail, [1, 1, 1, 1, 0, 0, 0, 0]);
    }
}
