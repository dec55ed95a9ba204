//! The files of an ISO 9660 image (hadris-iso reads the file system): open, look a path up,
//! read a file, list a directory. Names are looked up as a real loader would find them: the
//! Rock Ridge name (what grub-mkrescue and `xorriso -as mkisofs` write), else the Joliet name
//! (`mkisofs -J`), else the ISO 9660 name without its `;1` version and compared without case
//! (level-1 names are upper case).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hadris_iso::file::EntryType;
use hadris_iso::read::{DirEntry, IsoImage, RootDir};
use thiserror::Error;

use crate::boot::image::size_text;

/// ISO 9660 volume descriptors start at sector 16; each is one 2048-byte sector.
const SECTOR: u64 = 2048;
const FIRST_DESCRIPTOR: u64 = 16 * SECTOR;
/// The standard identifier every volume descriptor carries at byte 1.
const STANDARD_ID: &[u8; 5] = b"CD001";

/// Why an image or one of its files cannot be read.
#[derive(Debug, Error)]
pub enum IsoFsError {
    /// The image file cannot be opened or read.
    #[error("{0}")]
    Open(std::io::Error),
    /// A directory, not an image.
    #[error("a directory, not an ISO 9660 image (build one with grub-mkrescue or xorriso)")]
    Directory,
    /// Too short to hold the volume descriptors.
    #[error("not an ISO 9660 image: {} is too short to hold its volume descriptors (at 32 KiB)", size_text(*.0))]
    TooShort(u64),
    /// No ISO 9660 volume descriptor where there must be one.
    #[error("not an ISO 9660 image: no \"CD001\" volume descriptor at sector 16")]
    NotIso,
    /// The file is shorter than the volume it holds.
    #[error("truncated ISO 9660 image: its volume descriptor says {}, the file has {}", size_text(*.volume), size_text(*.file))]
    Truncated {
        /// The volume's size, from its primary descriptor.
        volume: u64,
        /// The file's size.
        file: u64,
    },
    /// The file system's structures are damaged.
    #[error("damaged ISO 9660 image: {0}")]
    Damaged(String),
    /// No such file or directory.
    #[error("{0}: no such file or directory in the image")]
    NotFound(String),
    /// A file was wanted and a directory found.
    #[error("{0} is a directory, not a file")]
    IsDirectory(String),
    /// A directory was wanted and a file found.
    #[error("{0} is a file, not a directory")]
    NotDirectory(String),
    /// The file is larger than it may be (it goes whole into guest RAM).
    #[error("{path} is {}: more than {} ({why})", size_text(*.size), size_text(*.limit))]
    TooLarge {
        /// The file's path in the image.
        path: String,
        /// Its size.
        size: u64,
        /// The most it may be.
        limit: u64,
        /// Why there is a limit.
        why: &'static str,
    },
}

/// The naming schemes of an ISO 9660 image, in the order files are looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Rock Ridge (RRIP) names in the primary tree: POSIX names, case kept.
    RockRidge,
    /// The Joliet tree: UCS-2 names, case kept.
    Joliet,
    /// Plain ISO 9660 names in the primary tree (`KERNEL.BIN;1`), compared without case.
    Iso9660,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Namespace::RockRidge => "Rock Ridge",
            Namespace::Joliet => "Joliet",
            Namespace::Iso9660 => "ISO 9660",
        })
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name in the image's first namespace.
    pub name: String,
    /// A directory.
    pub is_dir: bool,
    /// Its size in bytes (a directory's: that of its records).
    pub size: u64,
}

/// An open ISO 9660 image.
pub struct IsoFs {
    image: IsoImage<File>,
    /// The namespaces this image has, best first, each with the root of its tree.
    trees: Vec<(Namespace, RootDir)>,
}

impl IsoFs {
    /// Opens `path`: an ISO 9660 image whose file (or block device, a CD drive) holds all of
    /// its volume.
    pub fn open(path: &Path) -> Result<IsoFs, IsoFsError> {
        let mut file = File::open(path).map_err(IsoFsError::Open)?;
        if file.metadata().map_err(IsoFsError::Open)?.is_dir() {
            return Err(IsoFsError::Directory);
        }
        // A block device's metadata says 0 bytes; its end says how long it is.
        let len = file.seek(SeekFrom::End(0)).map_err(IsoFsError::Open)?;
        if len < FIRST_DESCRIPTOR + SECTOR {
            return Err(IsoFsError::TooShort(len));
        }
        let mut descriptor = [0u8; 6];
        file.seek(SeekFrom::Start(FIRST_DESCRIPTOR))
            .and_then(|_| file.read_exact(&mut descriptor))
            .map_err(IsoFsError::Open)?;
        if &descriptor[1..6] != STANDARD_ID {
            return Err(IsoFsError::NotIso);
        }
        let image = IsoImage::open(file).map_err(damaged)?;
        let volume =
            u64::from(image.read_pvd().map_err(damaged)?.volume_space_size.read()) * SECTOR;
        if volume > len {
            return Err(IsoFsError::Truncated { volume, file: len });
        }
        let primary = image
            .root_dirs()
            .iter()
            .copied()
            .find(|root| matches!(root.entry_type(), EntryType::Level1 { .. }));
        let joliet = image
            .root_dirs()
            .iter()
            .copied()
            .find(|root| matches!(root.entry_type(), EntryType::Joliet { .. }));
        let mut trees = Vec::new();
        if let Some(root) = primary.filter(|_| image.supports_rrip()) {
            trees.push((Namespace::RockRidge, root));
        }
        trees.extend(joliet.map(|root| (Namespace::Joliet, root)));
        trees.extend(primary.map(|root| (Namespace::Iso9660, root)));
        if trees.is_empty() {
            return Err(IsoFsError::Damaged("no directory tree".into()));
        }
        Ok(IsoFs { image, trees })
    }

    /// The namespace listings use and lookups try first.
    pub fn namespace(&self) -> Namespace {
        self.trees[0].0
    }

    /// The entry at `path` (absolute or not; `/` separated), in the first namespace that has
    /// it. `None` for the root, which has no entry.
    fn lookup(&self, path: &str) -> Result<Option<DirEntry>, IsoFsError> {
        for &(namespace, root) in &self.trees {
            if let Some(entry) = self.lookup_in(namespace, root, path)? {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    fn lookup_in(
        &self,
        namespace: Namespace,
        root: RootDir,
        path: &str,
    ) -> Result<Option<DirEntry>, IsoFsError> {
        let mut dir = root.dir_ref();
        let mut components = components(path).peekable();
        while let Some(name) = components.next() {
            let entries = self.image.open_dir(dir).read_entries().map_err(damaged)?;
            let Some(entry) = entries
                .into_iter()
                .find(|entry| name_matches(entry, namespace, name))
            else {
                return Ok(None);
            };
            if components.peek().is_none() {
                return Ok(Some(entry));
            }
            if !entry.is_directory() {
                return Ok(None);
            }
            dir = entry.as_dir_ref(&self.image).map_err(damaged)?;
        }
        Ok(None)
    }

    /// True when `path` names a file (not a directory) in the image.
    pub fn is_file(&self, path: &str) -> Result<bool, IsoFsError> {
        Ok(self
            .lookup(path)?
            .is_some_and(|entry| !entry.is_directory()))
    }

    /// The size of the file at `path`.
    pub fn size(&self, path: &str) -> Result<u64, IsoFsError> {
        Ok(self.file_entry(path)?.total_size())
    }

    fn file_entry(&self, path: &str) -> Result<DirEntry, IsoFsError> {
        if file_name(path).is_none() {
            return Err(IsoFsError::IsDirectory(absolute(path)));
        }
        match self.lookup(path)? {
            Some(entry) if entry.is_directory() => Err(IsoFsError::IsDirectory(path.into())),
            Some(entry) => Ok(entry),
            None => Err(IsoFsError::NotFound(path.into())),
        }
    }

    /// Reads the whole file at `path`, refusing one larger than `limit` bytes (`why` says why)
    /// before reading it.
    pub fn read(&self, path: &str, limit: u64, why: &'static str) -> Result<Vec<u8>, IsoFsError> {
        let entry = self.file_entry(path)?;
        let size = entry.total_size();
        if size > limit {
            return Err(IsoFsError::TooLarge {
                path: path.into(),
                size,
                limit,
                why,
            });
        }
        self.image.read_file(&entry).map_err(damaged)
    }

    /// The entries of the directory at `path` (`/` or empty: the root), in the image's order,
    /// named in its first namespace.
    pub fn list(&self, path: &str) -> Result<Vec<Listed>, IsoFsError> {
        let (namespace, root) = self.trees[0];
        let dir = if components(path).next().is_none() {
            root.dir_ref()
        } else {
            match self.lookup_in(namespace, root, path)? {
                Some(entry) if entry.is_directory() => {
                    entry.as_dir_ref(&self.image).map_err(damaged)?
                }
                Some(_) => return Err(IsoFsError::NotDirectory(path.into())),
                None => return Err(IsoFsError::NotFound(path.into())),
            }
        };
        let entries = self.image.open_dir(dir).read_entries().map_err(damaged)?;
        Ok(entries
            .iter()
            .filter_map(|entry| {
                Some(Listed {
                    name: entry_name(entry, namespace)?,
                    is_dir: entry.is_directory(),
                    size: entry.total_size(),
                })
            })
            .collect())
    }
}

fn damaged(e: impl fmt::Display) -> IsoFsError {
    IsoFsError::Damaged(e.to_string())
}

/// The names along `path`, without empty and `.` components.
fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// True when `entry` is called `name` in `namespace`.
fn name_matches(entry: &DirEntry, namespace: Namespace, name: &str) -> bool {
    match entry_name(entry, namespace) {
        Some(own) if namespace == Namespace::Iso9660 => own.eq_ignore_ascii_case(name),
        Some(own) => own == name,
        None => false,
    }
}

/// The name of `entry` in `namespace`; `None` for the `.` and `..` records.
fn entry_name(entry: &DirEntry, namespace: Namespace) -> Option<String> {
    if entry.is_special() {
        return None;
    }
    let raw = entry.name();
    match namespace {
        Namespace::RockRidge => entry
            .rrip
            .as_ref()
            .and_then(|rrip| rrip.alternate_name.clone())
            .or_else(|| Some(iso9660_name(raw))),
        Namespace::Joliet => {
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            Some(without_version(&String::from_utf16_lossy(&units)).to_string())
        }
        Namespace::Iso9660 => Some(iso9660_name(raw)),
    }
}

/// `KERNEL.BIN;1` → `KERNEL.BIN`; `README.;1` → `README` (an identifier always has its dot).
fn iso9660_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    let name = without_version(&name);
    name.strip_suffix('.').unwrap_or(name).to_string()
}

/// A file identifier without its `;N` version.
fn without_version(name: &str) -> &str {
    match name.rsplit_once(';') {
        Some((base, version)) if version.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

/// The last name along `path` (`None` for the root).
pub fn file_name(path: &str) -> Option<&str> {
    components(path).last()
}

/// `iso:/path`, how messages name a file in an image.
pub fn display_path(iso: &Path, path: &str) -> PathBuf {
    PathBuf::from(format!("{}:{}", iso.display(), absolute(path)))
}

/// `path` with exactly one leading `/`.
pub fn absolute(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso9660_names_lose_their_version_and_lone_dot() {
        assert_eq!(iso9660_name(b"KERNEL.BIN;1"), "KERNEL.BIN");
        assert_eq!(iso9660_name(b"README.;1"), "README");
        assert_eq!(iso9660_name(b"BOOT"), "BOOT");
        assert_eq!(without_version("a;b"), "a;b");
        assert_eq!(without_version("limine.conf;1"), "limine.conf");
    }

    #[test]
    fn paths_split_on_slashes() {
        let parts: Vec<&str> = components("//boot/./grub//grub.cfg").collect();
        assert_eq!(parts, ["boot", "grub", "grub.cfg"]);
        assert_eq!(components("/").count(), 0);
        assert_eq!(file_name("/boot/kernel.bin/"), Some("kernel.bin"));
        assert_eq!(file_name("//"), None);
        assert_eq!(absolute("boot/x"), "/boot/x");
        assert_eq!(absolute("//boot/x"), "/boot/x");
        assert_eq!(
            display_path(Path::new("os.iso"), "boot/k"),
            PathBuf::from("os.iso:/boot/k")
        );
    }

    #[test]
    fn what_is_not_an_iso_says_so() {
        let dir = std::env::temp_dir();
        let short = dir.join(format!("gdbvisor-iso-short-{}", std::process::id()));
        std::fs::write(&short, b"hello").unwrap();
        let err = IsoFs::open(&short).err().unwrap().to_string();
        assert!(err.starts_with("not an ISO 9660 image: 5 bytes"), "{err}");
        let zeros = dir.join(format!("gdbvisor-iso-zeros-{}", std::process::id()));
        std::fs::write(&zeros, vec![0u8; 64 << 10]).unwrap();
        let err = IsoFs::open(&zeros).err().unwrap().to_string();
        assert!(err.contains("no \"CD001\" volume descriptor"), "{err}");
        let err = IsoFs::open(&dir).err().unwrap().to_string();
        assert!(
            err.starts_with("a directory, not an ISO 9660 image"),
            "{err}"
        );
        std::fs::remove_file(short).unwrap();
        std::fs::remove_file(zeros).unwrap();
    }
}
