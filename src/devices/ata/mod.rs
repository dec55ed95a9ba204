//! IDE (ATA) on the two legacy channels: disks backed by raw image files on the primary
//! channel (ports 0x1F0-0x1F7 and 0x3F6, IRQ 14) and an ATAPI CD-ROM backed by an ISO file on
//! the secondary (0x170-0x177 and 0x376, IRQ 15), both in PIO mode, as hobby OS drivers use
//! them. No DMA, no bus master, no PCI function: a kernel finds the channels at their ISA ports.

pub(crate) mod atapi;
pub(crate) mod channel;
pub(crate) mod identify;
pub(crate) mod image;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

pub(crate) use channel::Channel;
pub(crate) use image::DiskImage;

/// A channel's command-block ports (data … status/command).
pub(crate) const PRIMARY_BASE: u16 = 0x1F0;
pub(crate) const SECONDARY_BASE: u16 = 0x170;
pub(crate) const COMMAND_BLOCK_LEN: u16 = 8;
/// A channel's control-block port: alternate status (read), device control (write).
pub(crate) const PRIMARY_CONTROL: u16 = 0x3F6;
pub(crate) const SECONDARY_CONTROL: u16 = 0x376;
pub(crate) const PRIMARY_IRQ: u32 = 14;
pub(crate) const SECONDARY_IRQ: u32 = 15;

/// Bytes in a disk sector and a CD-ROM block.
pub(crate) const DISK_SECTOR: u64 = 512;
pub(crate) const CD_BLOCK: u64 = 2048;

/// Why a drive cannot be attached.
#[derive(Debug, Error)]
pub enum AtaError {
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
    /// A drive option that does not parse.
    #[error("'{0}': a drive is FILE[,readonly=on|snapshot=on]")]
    BadOption(String),
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

/// A disk given on the command line: `FILE[,readonly=on|snapshot=on]` (QEMU's `-drive`
/// option names; `,,` is a comma in the file name, as in QEMU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSpec {
    /// The raw image file.
    pub path: PathBuf,
    /// What writes do.
    pub mode: WriteMode,
}

impl FromStr for DriveSpec {
    type Err = AtaError;

    fn from_str(text: &str) -> Result<Self, AtaError> {
        let bad = || AtaError::BadOption(text.to_string());
        // Split on single commas; ",," stays in the file name as one comma.
        let mut items = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != ',' {
                current.push(c);
            } else if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                items.push(std::mem::take(&mut current));
            }
        }
        items.push(current);
        let path = items.remove(0);
        if path.is_empty() {
            return Err(bad());
        }
        let mut mode = WriteMode::ReadWrite;
        for item in &items {
            mode = match item.split_once('=') {
                Some(("readonly", "on" | "true" | "yes")) => WriteMode::ReadOnly,
                Some(("snapshot", "on" | "true" | "yes")) => WriteMode::Snapshot,
                Some(("readonly" | "snapshot", "off" | "false" | "no")) => mode,
                _ => return Err(bad()),
            };
        }
        Ok(DriveSpec {
            path: PathBuf::from(path),
            mode,
        })
    }
}

/// The IDE drives of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdeConfig {
    /// Primary master (QEMU: -hda).
    pub hda: Option<DriveSpec>,
    /// Primary slave (QEMU: -hdb).
    pub hdb: Option<DriveSpec>,
    /// The ATAPI CD-ROM on the secondary master (QEMU: -cdrom).
    pub cdrom: Option<PathBuf>,
}

/// The opened images, ready to become channels.
pub(crate) struct IdeDrives {
    pub(crate) primary: [Option<DiskImage>; 2],
    pub(crate) cdrom: Option<DiskImage>,
}

impl IdeConfig {
    /// Opens every image (before the VM exists, so a bad one fails the run at once).
    pub(crate) fn open(&self) -> Result<IdeDrives, AtaError> {
        let disk = |spec: &Option<DriveSpec>| {
            spec.as_ref()
                .map(|s| DiskImage::open_disk(&s.path, s.mode))
                .transpose()
        };
        Ok(IdeDrives {
            primary: [disk(&self.hda)?, disk(&self.hdb)?],
            cdrom: self
                .cdrom
                .as_deref()
                .map(DiskImage::open_cdrom)
                .transpose()?,
        })
    }
}

pub(crate) fn open_error(path: &Path) -> impl FnOnce(std::io::Error) -> AtaError + '_ {
    move |source| AtaError::Open {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_specs_take_qemu_option_names() {
        let spec: DriveSpec = "disk.img".parse().unwrap();
        assert_eq!(spec.path, PathBuf::from("disk.img"));
        assert_eq!(spec.mode, WriteMode::ReadWrite);
        let spec: DriveSpec = "d.img,readonly=on".parse().unwrap();
        assert_eq!(spec.mode, WriteMode::ReadOnly);
        let spec: DriveSpec = "a,,b.img,snapshot=on".parse().unwrap();
        assert_eq!(
            (spec.path, spec.mode),
            (PathBuf::from("a,b.img"), WriteMode::Snapshot)
        );
        for bad in ["", ",readonly=on", "d.img,cache=none", "d.img,readonly"] {
            assert!(bad.parse::<DriveSpec>().is_err(), "{bad}");
        }
    }
}
