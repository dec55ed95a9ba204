//! The IDE drives a run asks for (`--hda`, `--hdb`, the CD-ROM) and their images opened.

use std::path::PathBuf;
use std::str::FromStr;

use thiserror::Error;

use super::image::{DiskImage, DiskImageError, WriteMode};

/// A drive option that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("'{0}': a drive is FILE[,readonly=on|snapshot=on]")]
pub struct DriveSpecError(pub String);

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
    type Err = DriveSpecError;

    fn from_str(text: &str) -> Result<Self, DriveSpecError> {
        let bad = || DriveSpecError(text.to_string());
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
    pub(crate) fn open(&self) -> Result<IdeDrives, DiskImageError> {
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
