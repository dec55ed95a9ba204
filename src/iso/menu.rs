//! What a boot configuration asks for, whichever loader's syntax it was written in: the menu
//! entries ([`BootEntry`]), the default, and picking one (`--entry NAME|N`).
//!
//! Entries are numbered 0, 1, 2… in the order the config lists them (a submenu's or Limine
//! directory's entries flattened in place), bootable or not: an entry gdbvisor cannot boot (a
//! chainloader, a reboot entry…) keeps its number and is listed in [`BootMenu::refused`], so that
//! a config with a "Reboot" entry still boots its kernel, and choosing the refused entry gives
//! the reason with its line.
// Until the --cdrom runner uses these (branch iso-boot), only the tests do.
#![allow(dead_code)]

use std::fmt;

use thiserror::Error;

/// Where GRUB's config lies on a hobby-OS ISO, in the order gdbvisor looks. grub-mkrescue
/// writes `/boot/grub/grub.cfg` (its embedded early config sets `prefix` to `/boot/grub`);
/// Fedora-style tools use `/boot/grub2`; a root `grub.cfg` is what some hand-made ISOs carry.
pub(crate) const GRUB_CONFIG_PATHS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/grub/grub.cfg",
    "/grub.cfg",
    "/EFI/BOOT/grub.cfg",
];

/// Where Limine looks for its config on the boot volume, in its order (common/lib/config.c
/// `init_config_disk`, Limine 8.2; CONFIG.md "Location of the config file"): `limine.conf`
/// (current syntax) first, then the older `limine.cfg` (Limine 7 syntax) in the same places.
/// Limine matches these names case-insensitively.
pub(crate) const LIMINE_CONFIG_PATHS: &[&str] = &[
    "/limine.conf",
    "/limine/limine.conf",
    "/boot/limine.conf",
    "/boot/limine/limine.conf",
    "/EFI/BOOT/limine.conf",
    "/limine.cfg",
    "/limine/limine.cfg",
    "/boot/limine.cfg",
    "/boot/limine/limine.cfg",
    "/EFI/BOOT/limine.cfg",
];

/// The boot protocol an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// GRUB `multiboot`, Limine `protocol: multiboot1` (or `multiboot`).
    Multiboot1,
    /// GRUB `multiboot2`, Limine `protocol: multiboot2`.
    Multiboot2,
    /// GRUB `linux`/`linux16`, Limine `protocol: linux`; modules are initrd parts, to be
    /// concatenated in order.
    Linux,
    /// Limine `protocol: limine`: parsed, but gdbvisor does not boot it yet.
    Limine,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Multiboot1 => "multiboot",
            Protocol::Multiboot2 => "multiboot2",
            Protocol::Linux => "linux",
            Protocol::Limine => "limine",
        })
    }
}

/// A file loaded next to the kernel: a multiboot module or a Linux initrd part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleSpec {
    /// Absolute path in the ISO, e.g. "/boot/initrd.img".
    pub path: String,
    /// The string the kernel sees for it, as the loader would pass it ("" for an initrd).
    pub string: String,
    /// GRUB opens modules with transparent decompression unless `--nounzip` is given: a
    /// gzip/xz/lzop-compressed file reaches the kernel decompressed. Limine (8.0 on) never
    /// decompresses.
    pub decompress: bool,
}

/// One bootable menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootEntry {
    /// The title as the menu shows it; a submenu's entries are "Submenu>Entry" (GRUB's own
    /// notation for `default`), a Limine directory's "Directory/Entry".
    pub title: String,
    pub protocol: Protocol,
    /// Absolute path of the kernel in the ISO.
    pub kernel: String,
    /// The command line exactly as the real loader passes it: GRUB 2's multiboot and
    /// multiboot2 pass the arguments after the kernel's path (not the path), re-quoted; its
    /// linux passes `BOOT_IMAGE=<path as written>` and the arguments; Limine passes `cmdline:`
    /// as written.
    pub cmdline: String,
    pub modules: Vec<ModuleSpec>,
    /// 1-based line of the entry's title in the config.
    pub line: usize,
    /// The entry's number in the menu (0-based, all entries counted, see the module docs).
    pub number: usize,
}

/// A menu entry gdbvisor cannot boot, kept so that its number and the reason can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusedEntry {
    pub title: String,
    pub number: usize,
    /// 1-based line of the entry's title.
    pub line: usize,
    /// The whole reason, naming the config file, the line and quoting it.
    pub reason: String,
}

/// A parsed boot configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootMenu {
    /// The bootable entries, in menu order.
    pub entries: Vec<BootEntry>,
    /// The number ([`BootEntry::number`]) of the entry the loader boots by default; it may be
    /// a refused entry, so look it up with [`BootMenu::select`], not by indexing `entries`.
    pub default: usize,
    /// The menu's timeout in seconds, when the config sets one (None: unset or "wait forever").
    pub timeout: Option<u32>,
    /// Path of the config in the ISO, e.g. "/boot/grub/grub.cfg".
    pub config_path: String,
    /// The entries gdbvisor cannot boot, with the reason.
    pub refused: Vec<RefusedEntry>,
}

/// Why `--entry` (or the config's default) picks nothing bootable.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum MenuError {
    /// No entry has that number or title.
    #[error("{config_path} has no entry {choice:?}; its entries are:\n{listing}")]
    Unknown {
        choice: String,
        config_path: String,
        listing: String,
    },
    /// The chosen (or default) entry is one gdbvisor cannot boot.
    #[error("{reason}{hint}")]
    Refused { reason: String, hint: String },
    /// The config lists no entry at all.
    #[error("{config_path} has no menu entry: nothing to boot")]
    Empty { config_path: String },
}

/// One menu entry as a parser built it: the entry, or why gdbvisor cannot boot it (the whole
/// message, naming the config file and line).
pub(crate) struct Built {
    pub title: String,
    /// 1-based line of the entry's title.
    pub line: usize,
    pub entry: Result<BootEntry, String>,
}

impl BootMenu {
    /// The menu of the config at `config_path`, its entries numbered in the order given.
    pub(crate) fn new(
        config_path: &str,
        default: usize,
        timeout: Option<u32>,
        built: impl IntoIterator<Item = Built>,
    ) -> BootMenu {
        let mut entries = Vec::new();
        let mut refused = Vec::new();
        for (number, built) in built.into_iter().enumerate() {
            match built.entry {
                Ok(entry) => entries.push(BootEntry { number, ..entry }),
                Err(reason) => refused.push(RefusedEntry {
                    title: built.title,
                    number,
                    line: built.line,
                    reason,
                }),
            }
        }
        BootMenu {
            entries,
            default,
            timeout,
            config_path: config_path.to_string(),
            refused,
        }
    }

    /// The entry to boot: `None` is the config's default; a number is an entry's number
    /// (0-based, as GRUB's `set default=N` and as [`BootMenu::listing`] shows them); anything
    /// else is an entry's exact title.
    pub(crate) fn select(&self, choice: Option<&str>) -> Result<&BootEntry, MenuError> {
        if self.entries.is_empty() && self.refused.is_empty() {
            return Err(MenuError::Empty {
                config_path: self.config_path.clone(),
            });
        }
        let number = match choice {
            None => Some(self.default),
            Some(text) => match text.trim().parse::<usize>() {
                Ok(number) => Some(number),
                Err(_) => self.number_of_title(text),
            },
        };
        if let Some(number) = number {
            if let Some(entry) = self.entries.iter().find(|e| e.number == number) {
                return Ok(entry);
            }
            if let Some(refused) = self.refused.iter().find(|e| e.number == number) {
                let hint = if choice.is_none() {
                    "\n(that is the config's default entry; pick another with --entry)".to_string()
                } else {
                    String::new()
                };
                return Err(MenuError::Refused {
                    reason: refused.reason.clone(),
                    hint,
                });
            }
        }
        Err(MenuError::Unknown {
            choice: choice.unwrap_or_default().to_string(),
            config_path: self.config_path.clone(),
            listing: self.listing(),
        })
    }

    /// Every entry, one a line: its number, its title, and for a refused one why not.
    pub(crate) fn listing(&self) -> String {
        let mut rows: Vec<(usize, String)> = self
            .entries
            .iter()
            .map(|e| {
                (
                    e.number,
                    format!("  {}  {} ({})", e.number, e.title, e.protocol),
                )
            })
            .chain(self.refused.iter().map(|e| {
                (
                    e.number,
                    format!("  {}  {} (not bootable by gdbvisor)", e.number, e.title),
                )
            }))
            .collect();
        rows.sort_by_key(|(number, _)| *number);
        rows.into_iter()
            .map(|(_, row)| row)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn number_of_title(&self, title: &str) -> Option<usize> {
        self.entries
            .iter()
            .map(|e| (e.number, e.title.as_str()))
            .chain(self.refused.iter().map(|e| (e.number, e.title.as_str())))
            .filter(|(_, t)| *t == title)
            .map(|(number, _)| number)
            .min()
    }
}

/// An absolute path with repeated and trailing slashes removed ("//boot//x/" → "/boot/x"),
/// or None when nothing is left ("/").
pub(crate) fn normal_path(path: &str) -> Option<String> {
    let mut normal = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        normal.push('/');
        normal.push_str(part);
    }
    (!normal.is_empty()).then_some(normal)
}

/// The longest stretch of a config line an error message quotes.
const QUOTED_LINE_MAX: usize = 100;

/// A line of a config file, as error messages show it: `/boot/grub/grub.cfg line 7: "…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigLine {
    pub config_path: String,
    /// 1-based.
    pub number: usize,
    /// The line's text, trimmed.
    pub text: String,
}

impl ConfigLine {
    /// Line `number` (1-based) of `text`, read from `config_path`.
    pub(crate) fn new(config_path: &str, text: &str, number: usize) -> Self {
        ConfigText::new(config_path, text).line(number)
    }
}

/// A config's lines, indexed once, for error messages that quote them.
pub(crate) struct ConfigText<'a> {
    pub config_path: &'a str,
    lines: Vec<&'a str>,
}

impl<'a> ConfigText<'a> {
    pub(crate) fn new(config_path: &'a str, text: &'a str) -> Self {
        ConfigText {
            config_path,
            lines: text.lines().collect(),
        }
    }

    /// Line `number` (1-based); an empty one past the end.
    pub(crate) fn line(&self, number: usize) -> ConfigLine {
        let text = self
            .lines
            .get(number.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        ConfigLine {
            config_path: self.config_path.to_string(),
            number,
            text: text.trim().to_string(),
        }
    }
}

impl fmt::Display for ConfigLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(QUOTED_LINE_MAX)
            .collect();
        let ellipsis = if self.text.chars().count() > QUOTED_LINE_MAX {
            "…"
        } else {
            ""
        };
        write!(
            f,
            "{} line {}: \"{shown}{ellipsis}\"",
            self.config_path, self.number
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: usize, title: &str) -> BootEntry {
        BootEntry {
            title: title.to_string(),
            protocol: Protocol::Multiboot2,
            kernel: "/boot/kernel.bin".to_string(),
            cmdline: String::new(),
            modules: Vec::new(),
            line: number + 1,
            number,
        }
    }

    fn menu() -> BootMenu {
        BootMenu {
            entries: vec![entry(0, "my os"), entry(2, "my os (debug)")],
            default: 0,
            timeout: Some(0),
            config_path: "/boot/grub/grub.cfg".to_string(),
            refused: vec![RefusedEntry {
                title: "Windows".to_string(),
                number: 1,
                line: 9,
                reason: "/boot/grub/grub.cfg line 10: \"chainloader +1\": no".to_string(),
            }],
        }
    }

    #[test]
    fn select_default_number_and_title() {
        let menu = menu();
        assert_eq!(menu.select(None).unwrap().title, "my os");
        assert_eq!(menu.select(Some("2")).unwrap().title, "my os (debug)");
        assert_eq!(menu.select(Some("my os (debug)")).unwrap().number, 2);
    }

    #[test]
    fn select_refused_entry_gives_its_reason() {
        let menu = menu();
        let err = menu.select(Some("1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/boot/grub/grub.cfg line 10: \"chainloader +1\": no"
        );
        assert!(matches!(
            menu.select(Some("Windows")),
            Err(MenuError::Refused { .. })
        ));
        let default_refused = BootMenu { default: 1, ..menu };
        let err = default_refused.select(None).unwrap_err().to_string();
        assert!(err.contains("chainloader +1"), "{err}");
        assert!(err.contains("--entry"), "{err}");
    }

    #[test]
    fn select_unknown_lists_entries_with_numbers() {
        let err = menu().select(Some("nope")).unwrap_err().to_string();
        assert_eq!(
            err,
            "/boot/grub/grub.cfg has no entry \"nope\"; its entries are:\n  \
             0  my os (multiboot2)\n  1  Windows (not bootable by gdbvisor)\n  \
             2  my os (debug) (multiboot2)"
        );
        assert!(matches!(
            menu().select(Some("7")),
            Err(MenuError::Unknown { .. })
        ));
    }

    #[test]
    fn select_in_empty_menu() {
        let empty = BootMenu {
            entries: Vec::new(),
            refused: Vec::new(),
            ..menu()
        };
        assert_eq!(
            empty.select(None).unwrap_err().to_string(),
            "/boot/grub/grub.cfg has no menu entry: nothing to boot"
        );
    }

    #[test]
    fn config_line_quotes_and_truncates() {
        let line = ConfigLine::new("/x.cfg", "a\n  chainloader +1  \n", 2);
        assert_eq!(line.to_string(), "/x.cfg line 2: \"chainloader +1\"");
        let long = "y".repeat(150);
        let shown = ConfigLine::new("/x.cfg", &long, 1).to_string();
        assert!(shown.ends_with("…\""), "{shown}");
        assert_eq!(ConfigLine::new("/x.cfg", "", 5).text, "");
    }

    #[test]
    fn config_paths_start_where_the_tools_write() {
        assert_eq!(GRUB_CONFIG_PATHS[0], "/boot/grub/grub.cfg");
        assert!(GRUB_CONFIG_PATHS.contains(&"/grub.cfg"));
        assert_eq!(LIMINE_CONFIG_PATHS[0], "/limine.conf");
        assert!(LIMINE_CONFIG_PATHS.contains(&"/boot/limine/limine.cfg"));
    }
}
