//! `--cdrom`: from an ISO image to what a run boots. Finds the boot configuration (GRUB's, else
//! Limine's), picks the entry (`--entry`, else the default), and reads the kernel and modules it
//! names into memory, with the boot format its protocol means. No loader code runs: gdbvisor
//! does what GRUB or Limine would have done with the entry.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::fs::{self, IsoFs, IsoFsError};
use super::grub;
use super::limine;
use super::menu::{BootEntry, BootMenu, Protocol, GRUB_CONFIG_PATHS, LIMINE_CONFIG_PATHS};
use super::unzip::{self, UnzipError};
use crate::boot::image::Image;
use crate::boot::{BootFormat, Module};

/// A boot configuration larger than this is not a hobby OS's menu.
const CONFIG_LIMIT: u64 = 1 << 20;
/// How many `configfile` hand-overs are followed from the first grub.cfg.
const MAX_CONFIG_HOPS: usize = 4;

/// Why an ISO cannot be booted.
#[derive(Debug, Error)]
pub enum CdromError {
    /// The image or a file in it cannot be read.
    #[error("{iso}: {source}")]
    Fs {
        /// The ISO image.
        iso: PathBuf,
        /// Why.
        source: IsoFsError,
    },
    /// No boot configuration where GRUB or Limine look.
    #[error("{iso}: no boot configuration: none of {} is in the image (`gdbvisor iso ls {}` shows what is)", tried(), shell_word(&iso.display().to_string()))]
    NoConfig {
        /// The ISO image.
        iso: PathBuf,
    },
    /// The configuration asks for what gdbvisor cannot do, or has no such entry (a GRUB or
    /// Limine config error, or a menu error: the parsers' own types, crate-private).
    #[error("{iso}: {source}")]
    Config {
        /// The ISO image.
        iso: PathBuf,
        /// Why, naming the config's line.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The entry names a file that the image does not have (or cannot give).
    #[error("{iso}: {entry} names {path}: {source}")]
    File {
        /// The ISO image.
        iso: PathBuf,
        /// The entry, with its config and line.
        entry: Box<EntryPlace>,
        /// The file it names.
        path: String,
        /// Why it cannot be read.
        source: IsoFsError,
    },
    /// A module GRUB would unpack, which gdbvisor cannot.
    #[error("{iso}: {entry} loads {path}, {source}")]
    Packed {
        /// The ISO image.
        iso: PathBuf,
        /// The entry, with its config and line.
        entry: Box<EntryPlace>,
        /// The module.
        path: String,
        /// Why.
        source: UnzipError,
    },
}

/// Where an entry is: its config file, line, number and title, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPlace {
    config_path: String,
    line: usize,
    number: usize,
    title: String,
}

impl EntryPlace {
    fn of(menu: &BootMenu, entry: &BootEntry) -> EntryPlace {
        EntryPlace {
            config_path: menu.config_path.trim_start_matches('/').to_string(),
            line: entry.line,
            number: entry.number,
            title: entry.title.clone(),
        }
    }
}

impl fmt::Display for EntryPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}, entry {} {:?}",
            self.config_path, self.line, self.number, self.title
        )
    }
}

/// What an ISO's boot entry boots: the kernel and modules read into memory, the format its
/// protocol means, and the command line its loader would pass.
#[derive(Debug)]
pub struct CdromBoot {
    /// The kernel's bytes.
    pub kernel: Image,
    /// The kernel as messages name it: `os.iso:/boot/kernel.bin`.
    pub name: PathBuf,
    /// The format the entry's protocol means.
    pub format: BootFormat,
    /// The command line: the entry's, then `--append`'s.
    pub cmdline: String,
    /// The modules (multiboot) or initrd parts (Linux), in order.
    pub modules: Vec<Module>,
    /// One line for the user: where the kernel came from, and how to get it out for gdb.
    pub summary: String,
}

impl CdromBoot {
    /// Opens `iso` and reads what its entry `choice` (`None`: the config's default) boots;
    /// `append` goes after the entry's command line. Nothing larger than `memory` (guest RAM)
    /// is read.
    pub fn open(
        iso: &Path,
        choice: Option<&str>,
        append: &str,
        memory: u64,
    ) -> Result<CdromBoot, CdromError> {
        let fs_error = |source| CdromError::Fs {
            iso: iso.to_path_buf(),
            source,
        };
        let image = IsoFs::open(iso).map_err(fs_error)?;
        let (menu, unused) = read_menu(iso, &image)?;
        let entry = menu.select(choice).map_err(|e| config_error(iso, e))?;
        let place = Box::new(EntryPlace::of(&menu, entry));
        let format = match entry.protocol {
            Protocol::Multiboot1 => BootFormat::Multiboot1,
            Protocol::Multiboot2 => BootFormat::Multiboot2,
            Protocol::Linux => BootFormat::Linux,
            Protocol::Limine => BootFormat::Limine,
        };
        let read = |path: &str, why| {
            image
                .read(path, memory, why)
                .map_err(|source| CdromError::File {
                    iso: iso.to_path_buf(),
                    entry: place.clone(),
                    path: path.to_string(),
                    source,
                })
        };
        let kernel = read(&entry.kernel, "guest RAM could hold no more")?;
        let modules = entry
            .modules
            .iter()
            .map(|spec| {
                let mut bytes = read(&spec.path, "a module or initrd goes whole into guest RAM")?;
                if spec.decompress {
                    bytes = unzip::unpack(bytes, memory).map_err(|source| CdromError::Packed {
                        iso: iso.to_path_buf(),
                        entry: place.clone(),
                        path: spec.path.clone(),
                        source,
                    })?;
                }
                Ok(Module {
                    path: fs::display_path(iso, &spec.path),
                    string: spec.string.clone(),
                    image: Image::from(bytes),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The loader's command line exactly, then `--append`'s words after one space.
        let cmdline = match (entry.cmdline.as_str(), append) {
            (line, "") => line.to_string(),
            ("", more) => more.to_string(),
            (line, more) => format!("{line} {more}"),
        };
        Ok(CdromBoot {
            kernel: Image::from(kernel),
            name: fs::display_path(iso, &entry.kernel),
            format,
            cmdline,
            modules,
            summary: summary(iso, &entry.kernel, &place, format, unused.as_deref()),
        })
    }
}

/// The line that says where the kernel came from, and how to get it out for gdb:
/// `/boot/kernel.bin in os.iso (boot/grub/grub.cfg line 3, entry 0 "my os"), multiboot2; symbols
/// for gdb: gdbvisor iso extract os.iso /boot/kernel.bin`.
fn summary(
    iso: &Path,
    kernel: &str,
    place: &EntryPlace,
    format: BootFormat,
    unused_config: Option<&str>,
) -> String {
    let kernel = fs::absolute(kernel);
    let unused = unused_config
        .map(|path| format!(" ({path} there too, not used)"))
        .unwrap_or_default();
    format!(
        "{kernel} in {} ({place}), {format}{unused}; symbols for gdb: gdbvisor iso extract {} {}",
        iso.display(),
        shell_word(&iso.display().to_string()),
        shell_word(&kernel)
    )
}

/// The image's boot menu: GRUB's config if it has one, else Limine's; and the path of a
/// Limine config left unused beside GRUB's (a hybrid image).
fn read_menu(iso: &Path, image: &IsoFs) -> Result<(BootMenu, Option<String>), CdromError> {
    let fs_error = |source| CdromError::Fs {
        iso: iso.to_path_buf(),
        source,
    };
    let find = |paths: &[&'static str]| -> Result<Option<&'static str>, CdromError> {
        for path in paths {
            if image.is_file(path).map_err(fs_error)? {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    let text = |path: &str| -> Result<String, CdromError> {
        let bytes = image
            .read(path, CONFIG_LIMIT, "not a boot menu")
            .map_err(fs_error)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let grub_config = find(GRUB_CONFIG_PATHS)?;
    let limine_config = find(LIMINE_CONFIG_PATHS)?;
    match (grub_config, limine_config) {
        (Some(path), unused) => {
            // A grub.cfg that only hands over (`configfile /boot/grub/menu.cfg`, as some
            // grub-mkrescue recipes write) is followed, as GRUB would, a few hops at most.
            let mut path = path.to_string();
            let mut hops = 0;
            let menu = loop {
                match grub::parse(&text(&path)?, &path) {
                    Err(grub::ConfigError::OtherConfig { target, .. })
                        if hops < MAX_CONFIG_HOPS
                            && image.is_file(&target).map_err(fs_error)? =>
                    {
                        path = target;
                        hops += 1;
                    }
                    parsed => break parsed.map_err(|e| config_error(iso, e))?,
                }
            };
            Ok((menu, unused.map(|p| p.trim_start_matches('/').to_string())))
        }
        (None, Some(path)) => {
            let menu = limine::parse(&text(path)?, path).map_err(|e| config_error(iso, e))?;
            Ok((menu, None))
        }
        (None, None) => Err(CdromError::NoConfig {
            iso: iso.to_path_buf(),
        }),
    }
}

fn config_error(iso: &Path, e: impl std::error::Error + Send + Sync + 'static) -> CdromError {
    CdromError::Config {
        iso: iso.to_path_buf(),
        source: Box::new(e),
    }
}

/// The configs looked for, for the error that finds none.
fn tried() -> String {
    GRUB_CONFIG_PATHS
        .iter()
        .chain(LIMINE_CONFIG_PATHS)
        .map(|p| p.trim_start_matches('/'))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as one shell word: as it is when it is safe, else single-quoted.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:+=,@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("build/os.iso"), "build/os.iso");
        assert_eq!(shell_word("my os.iso"), "'my os.iso'");
        assert_eq!(shell_word("it's.iso"), r"'it'\''s.iso'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn the_summary_names_the_entry_and_the_extract_command() {
        let place = EntryPlace {
            config_path: "boot/grub/grub.cfg".into(),
            line: 3,
            number: 0,
            title: "my os".into(),
        };
        let iso = Path::new("build/my os.iso");
        assert_eq!(
            summary(iso, "boot/kernel.bin", &place, BootFormat::Multiboot2, None),
            "/boot/kernel.bin in build/my os.iso (boot/grub/grub.cfg line 3, entry 0 \"my os\"), \
             multiboot2; symbols for gdb: gdbvisor iso extract 'build/my os.iso' /boot/kernel.bin"
        );
        let hybrid = summary(
            iso,
            "/k",
            &place,
            BootFormat::Multiboot1,
            Some("limine.conf"),
        );
        assert!(
            hybrid.contains("multiboot1 (limine.conf there too, not used); "),
            "{hybrid}"
        );
    }

    #[test]
    fn the_configs_tried_are_named_without_a_leading_slash() {
        let list = tried();
        assert!(list.starts_with("boot/grub/grub.cfg, "), "{list}");
        assert!(list.contains("limine.conf"), "{list}");
    }
}
