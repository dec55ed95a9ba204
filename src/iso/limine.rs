//! Limine's config: `limine.conf` in the current syntax (Limine 8 on: `/Entry`, `option: value`,
//! `boot():/path`) and `limine.cfg` in the older one (Limine 7 and before: `:Entry`,
//! `KEY=VALUE`, `boot:///path`). Like Limine, the file's name picks the syntax
//! (common/lib/config.c reads a `limine.cfg` as the old one); another name is sniffed.
//!
//! Checked against Limine 8.2's CONFIG.md, common/lib/config.c (macros, whitespace, option
//! lookup), common/lib/uri.c (paths), common/menu.c (`default_entry` counts the rows the menu
//! shows: a directory is a row, its entries are rows only when it is expanded with `+`;
//! `kernel_cmdline` before `cmdline`) and common/protos/multiboot1.c (`module_string` pairs with
//! the `module_path` before it; the command line is passed as written), and CONFIG.md as of
//! Limine 7.13 for the old syntax. `path:` is Limine 9's name for `kernel_path:`.
// Until the --cdrom runner uses these (branch iso-boot), only the tests do.
#![allow(dead_code)]

use std::collections::HashMap;

use log::{debug, warn};
use thiserror::Error;

use super::menu::{
    normal_path, BootEntry, BootMenu, Built, ConfigLine, ConfigText, ModuleSpec, Protocol,
};

/// Why a Limine config (or one of its entries) cannot be booted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// The line is not Limine config syntax.
    #[error("{at}: {problem}")]
    Syntax { at: ConfigLine, problem: String },
    /// Something gdbvisor cannot honour.
    #[error("{at}: {problem}")]
    Unsupported { at: ConfigLine, problem: String },
    /// A `${NAME}` no line defines (Limine would put nothing there).
    #[error(
        "{at}: the macro ${{{name}}} is not defined (define it with a line `${{{name}}}=value`)"
    )]
    UndefinedMacro { at: ConfigLine, name: String },
    /// A path that is not a file in the ISO.
    #[error("{at}: {path:?}: {problem}")]
    Path {
        at: ConfigLine,
        path: String,
        problem: String,
    },
    /// The config has no entry at all.
    #[error("{config_path}: no menu entry (a line `/Title`, or `:Title` in limine.cfg): nothing to boot")]
    NoEntries { config_path: String },
}

/// Parses `text`, the Limine config found at `config_path` in the ISO.
pub(crate) fn parse(text: &str, config_path: &str) -> Result<BootMenu, ConfigError> {
    let syntax = Syntax::of(text, config_path);
    let config_text = ConfigText::new(config_path, text);
    let at = |number| config_text.line(number);
    let lines = expand_macros(text, &at)?;
    let mut items = Vec::new();
    for (number, line) in &lines {
        items.push(
            classify(line, syntax).map_err(|problem| ConfigError::Syntax {
                at: at(*number),
                problem,
            })?,
        );
    }
    let tree = Tree::build(&lines, &items, &at)?;
    if tree.leaves.is_empty() {
        return Err(ConfigError::NoEntries {
            config_path: config_path.to_string(),
        });
    }
    let global = |key: &str| {
        items
            .iter()
            .zip(&lines)
            .find_map(|(item, (n, _))| match item {
                Item::Option { key: k, value } if syntax.key_is(k, key) => {
                    Some((value.clone(), *n))
                }
                _ => None,
            })
    };
    let timeout = global("timeout").and_then(|(value, _)| value.trim().parse().ok());
    let default = match global("default_entry") {
        Some((value, number)) => {
            let row = value.trim().parse::<usize>().unwrap_or(0).saturating_sub(1);
            tree.leaf_of_row(row).unwrap_or_else(|| {
                debug!(
                    "{}: no bootable entry at that row: booting the first",
                    at(number)
                );
                0
            })
        }
        None => 0,
    };
    let built = tree.leaves.iter().enumerate().map(|(number, leaf)| {
        let body = &items[leaf.body.clone()];
        let body_lines = &lines[leaf.body.clone()];
        Built {
            title: leaf.title.clone(),
            line: leaf.line,
            entry: entry(syntax, leaf, number, body, body_lines, &at).map_err(|e| e.to_string()),
        }
    });
    Ok(BootMenu::new(config_path, default, timeout, built))
}

/// Which of Limine's two config syntaxes a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// limine.conf: `/Entry`, `option: value` (names case-insensitive), `boot():/path`.
    Current,
    /// limine.cfg: `:Entry`, `KEY=VALUE` (names upper case, as Limine compares them exactly),
    /// `boot:///path`.
    Old,
}

impl Syntax {
    /// By the file's name, as Limine does; a file with another name by its first entry line.
    fn of(text: &str, config_path: &str) -> Syntax {
        let name = config_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.ends_with(".cfg") {
            return Syntax::Old;
        }
        if name.ends_with(".conf") {
            return Syntax::Current;
        }
        let first_entry = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with('/') || l.starts_with(':'));
        match first_entry {
            Some(line) if line.starts_with(':') => Syntax::Old,
            _ => Syntax::Current,
        }
    }

    fn entry_mark(self) -> char {
        match self {
            Syntax::Current => '/',
            Syntax::Old => ':',
        }
    }

    /// Whether the option named `written` in the file is `key` (given in lower case).
    fn key_is(self, written: &str, key: &str) -> bool {
        match self {
            Syntax::Current => written.eq_ignore_ascii_case(key),
            Syntax::Old => written == key.to_ascii_uppercase(),
        }
    }
}

/// The most bytes macros may add to a config (Limine's own buffer is bounded too).
const MAX_EXPANSION: usize = 16 << 20;

/// The config's lines (1-based numbers) with whitespace at both ends removed, comments, blank
/// lines and macro definitions dropped, and macros expanded.
fn expand_macros(
    text: &str,
    at: &dyn Fn(usize) -> ConfigLine,
) -> Result<Vec<(usize, String)>, ConfigError> {
    let mut macros: HashMap<String, String> = HashMap::new();
    macros.insert("ARCH".into(), "x86-64".into());
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("${") {
            let definition = rest
                .split_once('}')
                .and_then(|(name, after)| after.strip_prefix('=').map(|value| (name, value)));
            let Some((name, value)) = definition else {
                return Err(ConfigError::Syntax {
                    at: at(number),
                    problem: "a macro definition is `${NAME}=value`".into(),
                });
            };
            macros.insert(name.to_string(), value.to_string());
            continue;
        }
        lines.push((number, line.to_string()));
    }
    // Limine defines every macro before expanding any: a definition may follow its use.
    let mut expanded = 0usize;
    for (number, line) in &mut lines {
        let mut out = String::with_capacity(line.len());
        let mut rest = line.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::Syntax {
                    at: at(*number),
                    problem: "a ${ with no } after it (Limine: \"Malformed macro usage\")".into(),
                });
            };
            let name = &after[..end];
            let Some(value) = macros.get(name) else {
                return Err(ConfigError::UndefinedMacro {
                    at: at(*number),
                    name: name.to_string(),
                });
            };
            expanded += value.len();
            if expanded > MAX_EXPANSION {
                return Err(ConfigError::Syntax {
                    at: at(*number),
                    problem: "macros expand the config beyond 16 MiB (Limine: \"Macro-induced buffer overflow\")".into(),
                });
            }
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        *line = out;
    }
    Ok(lines)
}

/// One line of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// `/Title` (depth = number of marks), `+` (expanded directory) removed from the title.
    Entry {
        depth: usize,
        title: String,
        expanded: bool,
    },
    Option {
        key: String,
        value: String,
    },
}

/// Reads one (trimmed, non-comment) line, or says why it is not Limine syntax.
fn classify(line: &str, syntax: Syntax) -> Result<Item, String> {
    let mark = syntax.entry_mark();
    if line.starts_with(mark) {
        let depth = line.chars().take_while(|&c| c == mark).count();
        let rest = &line[depth..];
        let (expanded, title) = match rest.strip_prefix('+') {
            Some(title) => (true, title),
            None => (false, rest),
        };
        return Ok(Item::Entry {
            depth,
            title: title.trim().to_string(),
            expanded,
        });
    }
    let separator = match syntax {
        Syntax::Current => ':',
        Syntax::Old => '=',
    };
    if let Some((key, value)) = line.split_once(separator) {
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let value = match syntax {
                Syntax::Current => value.trim_start_matches([' ', '\t']),
                Syntax::Old => value,
            };
            return Ok(Item::Option {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
    }
    let other = match syntax {
        Syntax::Current => Syntax::Old,
        Syntax::Old => Syntax::Current,
    };
    let hint = match (syntax, classify_plain(line, other)) {
        (Syntax::Current, true) => "; it is limine.cfg syntax (Limine 7), but a file named limine.conf is read in the current syntax (`/Title`, `name: value`, `boot():/path`)",
        (Syntax::Old, true) => "; it is limine.conf syntax, but a file named limine.cfg is read in the old syntax (`:Title`, `NAME=value`, `boot:///path`)",
        _ => "",
    };
    Err(match syntax {
        Syntax::Current => {
            format!(
                "not an option (`name: value`), an entry (`/Title`), a macro or a comment{hint}"
            )
        }
        Syntax::Old => {
            format!(
                "not an assignment (`NAME=value`), an entry (`:Title`), a macro or a comment{hint}"
            )
        }
    })
}

/// Whether `line` reads as an entry or option in `syntax` (for the hint only).
fn classify_plain(line: &str, syntax: Syntax) -> bool {
    if line.starts_with(syntax.entry_mark()) {
        return true;
    }
    let separator = match syntax {
        Syntax::Current => ':',
        Syntax::Old => '=',
    };
    line.split_once(separator).is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A bootable-looking entry: not a directory.
struct Leaf {
    title: String,
    /// 1-based line of its title.
    line: usize,
    /// Its options: indices into the config's lines.
    body: std::ops::Range<usize>,
}

/// The menu tree flattened: its leaves, and for `default_entry` the rows Limine's menu shows.
struct Tree {
    leaves: Vec<Leaf>,
    /// Per row the menu shows: the leaf it is, or for a directory its first leaf (if any).
    rows: Vec<Option<usize>>,
}

impl Tree {
    fn build(
        lines: &[(usize, String)],
        items: &[Item],
        at: &dyn Fn(usize) -> ConfigLine,
    ) -> Result<Tree, ConfigError> {
        let entry_positions: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| matches!(item, Item::Entry { .. }))
            .map(|(i, _)| i)
            .collect();
        let mut leaves = Vec::new();
        let mut rows = Vec::new();
        // Per open directory: its title, whether the menu shows its rows, and its row.
        let mut path: Vec<(String, bool, Option<usize>)> = Vec::new();
        let mut previous_depth = 0;
        for (k, &position) in entry_positions.iter().enumerate() {
            let Item::Entry {
                depth,
                title,
                expanded,
            } = &items[position]
            else {
                continue;
            };
            let line = lines[position].0;
            if *depth > previous_depth + 1 {
                return Err(ConfigError::Syntax {
                    at: at(line),
                    problem: format!(
                        "a sub-entry {depth} levels deep right after an entry {previous_depth} deep"
                    ),
                });
            }
            previous_depth = *depth;
            path.truncate(depth - 1);
            let visible = path.iter().all(|(_, shown, _)| *shown);
            let next = entry_positions.get(k + 1).copied();
            let is_directory = next.is_some_and(
                |n| matches!(&items[n], Item::Entry { depth: d, .. } if *d == depth + 1),
            );
            let body = position + 1..next.unwrap_or(items.len());
            if is_directory {
                let row = visible.then(|| {
                    rows.push(None);
                    rows.len() - 1
                });
                path.push((title.clone(), *expanded && visible, row));
                continue;
            }
            let number = leaves.len();
            // A directory's row boots nothing; for default_entry it stands for its first leaf.
            for (_, _, row) in &path {
                if let Some(row) = row {
                    rows[*row].get_or_insert(number);
                }
            }
            if visible {
                rows.push(Some(number));
            }
            let mut full_title: Vec<&str> = path.iter().map(|(t, _, _)| t.as_str()).collect();
            full_title.push(title);
            leaves.push(Leaf {
                title: full_title.join("/"),
                line,
                body,
            });
        }
        Ok(Tree { leaves, rows })
    }

    fn leaf_of_row(&self, row: usize) -> Option<usize> {
        self.rows.get(row).copied().flatten()
    }
}

/// What gdbvisor says of protocols it does not boot.
const ONLY_THESE: &str = "gdbvisor boots multiboot1, multiboot2 and linux entries only";

/// Builds one entry from its options, or says why gdbvisor cannot boot it.
fn entry(
    syntax: Syntax,
    leaf: &Leaf,
    number: usize,
    body: &[Item],
    lines: &[(usize, String)],
    at: &dyn Fn(usize) -> ConfigLine,
) -> Result<BootEntry, ConfigError> {
    let options: Vec<(&str, &str, usize)> = body
        .iter()
        .zip(lines)
        .filter_map(|(item, (n, _))| match item {
            Item::Option { key, value } => Some((key.as_str(), value.as_str(), *n)),
            Item::Entry { .. } => None,
        })
        .collect();
    let first = |key: &str| {
        options
            .iter()
            .find(|(k, _, _)| syntax.key_is(k, key))
            .map(|(_, v, n)| (*v, *n))
    };
    let unsupported = |line, problem: String| ConfigError::Unsupported {
        at: at(line),
        problem,
    };
    let Some((protocol_name, protocol_line)) = first("protocol") else {
        return Err(unsupported(
            leaf.line,
            "this entry names no protocol (Limine: \"Boot protocol not specified for this entry\")"
                .into(),
        ));
    };
    let protocol = match protocol_name.trim().to_ascii_lowercase().as_str() {
        "multiboot1" | "multiboot" => Protocol::Multiboot1,
        "multiboot2" => Protocol::Multiboot2,
        "linux" => Protocol::Linux,
        "limine" => Protocol::Limine,
        chainload @ ("efi_chainload" | "bios_chainload" | "chainload_next" | "chainload"
        | "efi") => {
            return Err(unsupported(
                protocol_line,
                format!("protocol {chainload} chainloads another program: {ONLY_THESE}"),
            ))
        }
        other => {
            return Err(unsupported(
                protocol_line,
                format!("{other:?} is not a Limine protocol; {ONLY_THESE}"),
            ))
        }
    };
    let Some((kernel, kernel_line)) = first("kernel_path").or_else(|| first("path")) else {
        return Err(unsupported(
            leaf.line,
            "this entry names no kernel (kernel_path: or path:)".into(),
        ));
    };
    let kernel = iso_path(kernel, syntax, at(kernel_line))?;
    let cmdline = first("kernel_cmdline")
        .or_else(|| first("cmdline"))
        .map_or("", |(v, _)| v)
        .to_string();
    // The protocol's own name for a module's string; Limine ignores the other names.
    let string_key = match protocol {
        Protocol::Multiboot1 | Protocol::Multiboot2 => Some("module_string"),
        Protocol::Limine => Some("module_cmdline"),
        Protocol::Linux => None,
    };
    let mut modules: Vec<(ModuleSpec, bool)> = Vec::new();
    for (key, value, n) in &options {
        if syntax.key_is(key, "module_path") {
            let spec = ModuleSpec {
                path: iso_path(value, syntax, at(*n))?,
                string: String::new(),
                decompress: false,
            };
            modules.push((spec, false));
        } else if string_key.is_some_and(|s| syntax.key_is(key, s)) {
            // The first string after a module_path is that module's.
            match modules.last_mut() {
                Some((spec, has_string @ false)) => {
                    spec.string = value.to_string();
                    *has_string = true;
                }
                _ => debug!("{}: no module_path before it: ignored", at(*n)),
            }
        } else if !KNOWN_OPTIONS.iter().any(|k| syntax.key_is(key, k)) {
            warn!("{}: not a Limine option gdbvisor knows: ignored", at(*n));
        }
    }
    Ok(BootEntry {
        title: leaf.title.clone(),
        protocol,
        kernel,
        cmdline,
        modules: modules.into_iter().map(|(spec, _)| spec).collect(),
        line: leaf.line,
        number,
    })
}

/// Options an entry may carry that do not change what gdbvisor loads.
const KNOWN_OPTIONS: &[&str] = &[
    "protocol",
    "kernel_path",
    "path",
    "cmdline",
    "kernel_cmdline",
    "module_string",
    "module_cmdline",
    "comment",
    "resolution",
    "textmode",
    "kaslr",
    "randomise_hhdm_base",
    "randomize_hhdm_base",
    "max_paging_mode",
    "min_paging_mode",
    "paging_mode",
    "dtb_path",
    "timeout",
    "default_entry",
    "quiet",
    "serial",
    "serial_baudrate",
    "verbose",
    "graphics",
    "wallpaper",
    "wallpaper_style",
    "backdrop",
    "interface_resolution",
    "interface_branding",
    "interface_branding_colour",
    "interface_branding_color",
    "interface_help_hidden",
    "term_font",
    "term_font_size",
    "term_font_scale",
    "term_font_spacing",
    "term_palette",
    "term_palette_bright",
    "term_background",
    "term_foreground",
    "term_background_bright",
    "term_foreground_bright",
    "term_margin",
    "term_margin_gradient",
    "term_wallpaper",
    "term_wallpaper_style",
    "term_backdrop",
    "editor_enabled",
    "editor_highlighting",
    "editor_validation",
    "remember_last_entry",
    "randomise_memory",
    "randomize_memory",
    "hash_mismatch_panic",
];

/// A Limine path (`boot():/x`, `boot(2):/x`; old syntax `boot:///x`, `boot://2/x`) as a path
/// in the ISO. A `#blake2b` suffix is dropped (gdbvisor does not check it). Other resources
/// (another drive, a GUID, a label, TFTP) and old-syntax `$` (gzip) paths are refused; a path
/// with no resource is taken as on the boot volume (Limine 8 itself says "No resource
/// specified").
fn iso_path(value: &str, syntax: Syntax, at: ConfigLine) -> Result<String, ConfigError> {
    let problem = |problem: &str| ConfigError::Path {
        at: at.clone(),
        path: value.to_string(),
        problem: problem.to_string(),
    };
    let value = value.trim();
    let (value, hash) = match value.rsplit_once('#') {
        Some((path, hash)) => (path, Some(hash)),
        None => (value, None),
    };
    if hash.is_some() {
        debug!("{at}: blake2b hash not checked by gdbvisor");
    }
    if syntax == Syntax::Old && value.starts_with('$') {
        return Err(problem(
            "a gzip-compressed file ($): gdbvisor does not decompress files",
        ));
    }
    let (resource, argument, path) = match syntax {
        Syntax::Current => match value.split_once("):") {
            Some((head, path)) => match head.split_once('(') {
                Some((resource, argument)) => (resource, argument, path),
                None => return Err(problem("not a Limine path (`resource(argument):/path`)")),
            },
            None if value.starts_with('/') => ("", "", value),
            None => return Err(problem("not a Limine path (`resource(argument):/path`)")),
        },
        Syntax::Old => match value.split_once("://") {
            Some((resource, rest)) => match rest.find('/') {
                Some(slash) => (resource, &rest[..slash], &rest[slash..]),
                None => return Err(problem("not a Limine URI (`resource://root/path`)")),
            },
            None if value.starts_with('/') => ("", "", value),
            None => return Err(problem("not a Limine URI (`resource://root/path`)")),
        },
    };
    match resource.to_ascii_lowercase().as_str() {
        "boot" => {
            if !argument.is_empty() {
                if argument.parse::<u8>().is_err() {
                    return Err(problem("boot's argument is a partition number"));
                }
                debug!("{at}: partition {argument} of the boot drive taken as the ISO itself");
            }
        }
        "" => debug!("{at}: a path with no resource taken as on the boot volume"),
        "hdd" | "odd" => return Err(problem("on another drive: gdbvisor reads files from the ISO only (boot():/path)")),
        "guid" | "uuid" | "fslabel" => {
            return Err(problem("a volume named by GUID or label: gdbvisor reads files from the ISO only (boot():/path)"))
        }
        "tftp" => return Err(problem("a network (TFTP) path: gdbvisor reads files from the ISO only (boot():/path)")),
        _ => return Err(problem("an unknown Limine resource: gdbvisor reads files from the ISO only (boot():/path)")),
    }
    if !path.starts_with('/') {
        return Err(problem("not an absolute path"));
    }
    normal_path(path).ok_or_else(|| problem("a directory, not a file"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CONF: &str = "/boot/limine/limine.conf";
    const CFG: &str = "/boot/limine.cfg";

    fn menu(text: &str, path: &str) -> BootMenu {
        parse(text, path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn default_entry(text: &str) -> BootEntry {
        menu(text, CONF)
            .select(None)
            .unwrap_or_else(|e| panic!("{e}"))
            .clone()
    }

    fn refusal(text: &str, path: &str) -> String {
        menu(text, path).select(None).unwrap_err().to_string()
    }

    /// In the shape of Limine's own test/limine.conf: macros, globals, every protocol, a
    /// directory whose entries show (`/+`), module strings per protocol.
    const LIMINE_TEST_SHAPE: &str = "# Macros first
${KERNEL}=boot():/boot/test.elf
${PICTURE}=boot():/boot/bg.jpg

default_entry: 2
timeout: 3
verbose: yes
wallpaper: ${PICTURE}

/Limine protocol
    comment: the Limine protocol on ${ARCH}

    protocol: limine
    kernel_path: ${KERNEL}
    kernel_cmdline: an example command line

    module_path: ${PICTURE}
    module_cmdline: first module

/Multiboot2
    comment: multiboot2

    protocol: multiboot2
    kernel_path: boot():/boot/multiboot2.elf
    kernel_cmdline: an example command line

    module_path: boot():/boot/bg.jpg
    module_string: first module

/EFI chainload
    protocol: efi_chainload
    image_path: boot():/EFI/BOOT/BOOTX64.EFI

/+Older protocols
    comment: a directory

    //Multiboot1
        protocol: multiboot1
        kernel_path: boot():/boot/multiboot.elf
        kernel_cmdline: an example command line
        module_path: boot():/boot/bg.jpg
        module_string: first module
";

    #[test]
    fn limine_test_config_shape() {
        let menu = menu(LIMINE_TEST_SHAPE, CONF);
        assert_eq!(menu.timeout, Some(3));
        assert_eq!(menu.config_path, CONF);
        let titles: Vec<(usize, &str)> = menu
            .entries
            .iter()
            .map(|e| (e.number, e.title.as_str()))
            .collect();
        assert_eq!(
            titles,
            [
                (0, "Limine protocol"),
                (1, "Multiboot2"),
                (3, "Older protocols/Multiboot1")
            ]
        );
        // default_entry is 1-based.
        assert_eq!(menu.default, 1);
        let mb2 = menu.select(None).unwrap();
        assert_eq!(mb2.protocol, Protocol::Multiboot2);
        assert_eq!(mb2.kernel, "/boot/multiboot2.elf");
        assert_eq!(mb2.cmdline, "an example command line");
        assert_eq!(
            mb2.modules,
            vec![ModuleSpec {
                path: "/boot/bg.jpg".into(),
                string: "first module".into(),
                decompress: false
            }]
        );
        assert_eq!(mb2.line, 20);
        let limine = menu.select(Some("0")).unwrap();
        assert_eq!(limine.protocol, Protocol::Limine);
        assert_eq!(limine.kernel, "/boot/test.elf");
        assert_eq!(limine.modules[0].string, "first module");
        let mb1 = menu.select(Some("Older protocols/Multiboot1")).unwrap();
        assert_eq!(mb1.protocol, Protocol::Multiboot1);
        assert_eq!(mb1.modules[0].string, "first module");
        assert_eq!(
            menu.select(Some("2")).unwrap_err().to_string(),
            "/boot/limine/limine.conf line 31: \"protocol: efi_chainload\": protocol efi_chainload chainloads another program: gdbvisor boots multiboot1, multiboot2 and linux entries only"
        );
    }

    /// In the shape of hobby OS build scripts' limine.conf (a Limine-protocol kernel with an
    /// initramfs, `timeout: 0`) and of Linux ones (`protocol: linux`, two entries).
    #[test]
    fn hobby_os_configs() {
        let entry = default_entry("timeout: 0\n\n/My OS\n    protocol: limine\n    kernel_path: boot():/boot/kernel\n    module_path: boot():/boot/initramfs.tar\n");
        assert_eq!(entry.protocol, Protocol::Limine);
        assert_eq!(entry.modules[0].path, "/boot/initramfs.tar");
        assert_eq!(entry.cmdline, "");
        let linux = "timeout: 5\nserial: yes\n\n/Live (desktop)\n    protocol: linux\n    kernel_path: boot():/boot/bzImage\n    module_path: boot():/boot/ucode.img\n    module_path: boot():/boot/initramfs.img\n    cmdline: rdinit=/init console=ttyS0,115200 quiet\n\n/Live (rescue shell)\n    protocol: linux\n    kernel_path: boot():/boot/bzImage\n    module_path: boot():/boot/initramfs.img\n    cmdline: rdinit=/init init=/bin/sh\n";
        let menu = menu(linux, "/limine.conf");
        let first = menu.select(None).unwrap();
        assert_eq!(first.cmdline, "rdinit=/init console=ttyS0,115200 quiet");
        let paths: Vec<&str> = first.modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/boot/ucode.img", "/boot/initramfs.img"]);
        assert_eq!(menu.select(Some("Live (rescue shell)")).unwrap().line, 11);
    }

    /// The Limine 7 syntax of limine.cfg files, as Linux installers and older hobby OS
    /// tutorials write them.
    #[test]
    fn old_syntax() {
        let text = "# limine.cfg\nTIMEOUT=5\nDEFAULT_ENTRY=2\n\n:Arch Linux\n    PROTOCOL=linux\n    KERNEL_PATH=boot:///vmlinuz-linux\n    MODULE_PATH=boot:///initramfs-linux.img\n    CMDLINE=root=UUID=1234 rw quiet\n\n:myOS\n    PROTOCOL=multiboot2\n    KERNEL_PATH=boot://1/boot/myos.elf\n    KERNEL_CMDLINE=first\n    CMDLINE=second\n    MODULE_PATH=boot:///boot/a.bin\n    MODULE_STRING=a string\n    MODULE_PATH=boot:///boot/b.bin\n";
        let menu = menu(text, CFG);
        assert_eq!(menu.timeout, Some(5));
        assert_eq!(menu.default, 1);
        let my = menu.select(None).unwrap();
        assert_eq!(my.kernel, "/boot/myos.elf");
        // kernel_cmdline wins over cmdline, as in Limine's boot().
        assert_eq!(my.cmdline, "first");
        assert_eq!(my.modules[0].string, "a string");
        assert_eq!(my.modules[1].string, "");
        let arch = menu.select(Some("0")).unwrap();
        assert_eq!(arch.protocol, Protocol::Linux);
        assert_eq!(arch.cmdline, "root=UUID=1234 rw quiet");
        // Old syntax compares names exactly: lower case is no option, and the entry no kernel.
        let lower = ":x\nprotocol=multiboot2\n";
        assert!(refusal(lower, CFG).contains("names no protocol"));
        // `$` marks a gzip-compressed file.
        let gz = ":x\nPROTOCOL=multiboot2\nKERNEL_PATH=$boot:///k.gz\n";
        assert!(refusal(gz, CFG).contains("gzip"));
        let sub = ":dir\n::entry\nPROTOCOL=multiboot1\nKERNEL_PATH=boot:///k\n";
        assert_eq!(menu_title(sub, CFG), "dir/entry");
    }

    fn menu_title(text: &str, path: &str) -> String {
        menu(text, path).select(None).unwrap().title.clone()
    }

    #[test]
    fn syntax_by_name_then_by_content() {
        let old = ":x\nPROTOCOL=multiboot2\nKERNEL_PATH=boot:///k\n";
        let new = "/x\nprotocol: multiboot2\nkernel_path: boot():/k\n";
        assert_eq!(Syntax::of(old, "/limine.cfg"), Syntax::Old);
        assert_eq!(Syntax::of(new, "/LIMINE.CONF"), Syntax::Current);
        assert_eq!(Syntax::of(old, "/x/config"), Syntax::Old);
        assert_eq!(Syntax::of(new, "/x/config"), Syntax::Current);
        assert_eq!(menu(old, "/x/config").select(None).unwrap().kernel, "/k");
        assert_eq!(menu(new, "/x/config").select(None).unwrap().kernel, "/k");
    }

    #[test]
    fn wrong_syntax_for_the_name_says_so() {
        // Real installers write the old syntax into a file named limine.conf.
        let old_in_conf = "TIMEOUT=3\n\n:Arch Linux\n    PROTOCOL=linux\n";
        assert_eq!(
            parse(old_in_conf, "/boot/limine.conf").unwrap_err().to_string(),
            "/boot/limine.conf line 1: \"TIMEOUT=3\": not an option (`name: value`), an entry (`/Title`), a macro or a comment; it is limine.cfg syntax (Limine 7), but a file named limine.conf is read in the current syntax (`/Title`, `name: value`, `boot():/path`)"
        );
        let new_in_cfg = "timeout: 3\n";
        let err = parse(new_in_cfg, CFG).unwrap_err().to_string();
        assert!(
            err.starts_with("/boot/limine.cfg line 1: \"timeout: 3\": not an assignment"),
            "{err}"
        );
        assert!(err.contains("limine.conf syntax"), "{err}");
        let garbage = parse("/x\nwhat is this\n", CONF).unwrap_err().to_string();
        assert!(garbage.contains("line 2: \"what is this\""), "{garbage}");
        assert!(!garbage.contains("syntax ("), "{garbage}");
    }

    #[test]
    fn options_are_case_insensitive_and_path_is_kernel_path() {
        let text = "TIMEOUT: 1\n/A\n  Protocol: Multiboot2\n  PATH: boot():/boot/k\n  CMDLINE:   spaced  \n";
        let menu = menu(text, CONF);
        assert_eq!(menu.timeout, Some(1));
        let entry = menu.select(None).unwrap();
        assert_eq!(entry.kernel, "/boot/k");
        assert_eq!(entry.cmdline, "spaced");
        // kernel_path before path.
        let both = "/A\nprotocol: linux\npath: boot():/p\nkernel_path: boot():/kp\n";
        assert_eq!(default_entry(both).kernel, "/kp");
    }

    #[test]
    fn module_strings_follow_their_module_and_protocol() {
        let text = "/A\nprotocol: multiboot1\nkernel_path: boot():/k\nmodule_string: before any module\nmodule_path: boot():/a\nmodule_cmdline: limine's name, ignored\nmodule_path: boot():/b\nmodule_string: for b\nmodule_string: second, ignored\n";
        let entry = default_entry(text);
        let strings: Vec<&str> = entry.modules.iter().map(|m| m.string.as_str()).collect();
        assert_eq!(strings, ["", "for b"]);
        let linux = "/A\nprotocol: linux\nkernel_path: boot():/k\nmodule_path: boot():/i\nmodule_string: not for linux\n";
        assert_eq!(default_entry(linux).modules[0].string, "");
    }

    #[test]
    fn paths() {
        let kernel = |path: &str| {
            let text = format!("/A\nprotocol: multiboot2\nkernel_path: {path}\n");
            parse(&text, CONF)
                .unwrap()
                .select(None)
                .map(|e| e.kernel.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(kernel("boot():/boot/k").unwrap(), "/boot/k");
        assert_eq!(kernel("boot(1):/boot//k").unwrap(), "/boot/k");
        assert_eq!(kernel("BOOT():/k#abcdef").unwrap(), "/k");
        assert_eq!(kernel("/bare/path").unwrap(), "/bare/path");
        for (path, what) in [
            ("tftp():/k", "TFTP"),
            ("guid(736b5698-5ae1-4dff-be2c-ef8f44a61c52):/k", "GUID"),
            ("uuid(736b5698-5ae1-4dff-be2c-ef8f44a61c52):/k", "GUID"),
            ("fslabel(ROOT):/k", "label"),
            ("hdd(1:2):/k", "another drive"),
            ("odd(1:):/k", "another drive"),
            ("nfs():/k", "unknown Limine resource"),
            ("boot(x):/k", "partition number"),
            ("boot:/k", "resource(argument):/path"),
            ("boot():k", "not an absolute path"),
            ("k", "resource(argument):/path"),
            ("boot():/", "a directory"),
        ] {
            let err = kernel(path).unwrap_err();
            assert!(err.contains(what), "{path}: {err}");
            assert!(
                err.starts_with("/boot/limine/limine.conf line 3: \"kernel_path: "),
                "{path}: {err}"
            );
        }
        let old = |path: &str| {
            let text = format!(":A\nPROTOCOL=multiboot2\nKERNEL_PATH={path}\n");
            parse(&text, CFG)
                .unwrap()
                .select(None)
                .map(|e| e.kernel.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(old("boot:///boot/k").unwrap(), "/boot/k");
        assert_eq!(old("boot://2/k").unwrap(), "/k");
        assert!(old("tftp://10.0.0.1/k").unwrap_err().contains("TFTP"));
        assert!(old("guid://736b5698/k").unwrap_err().contains("GUID"));
        assert!(old("boot://").unwrap_err().contains("resource://root/path"));
    }

    #[test]
    fn refused_entries() {
        for (body, line, what) in [
            ("protocol: limine\nkernel_path: boot():/k\n", None, ""),
            (
                "protocol: bios_chainload\ndrive: 1\n",
                Some(2),
                "chainloads",
            ),
            ("protocol: chainload_next\n", Some(2), "chainloads"),
            (
                "protocol: efi\npath: guid(1):/x.efi\n",
                Some(2),
                "chainloads",
            ),
            ("protocol: windows\n", Some(2), "not a Limine protocol"),
            ("comment: nothing\n", Some(1), "names no protocol"),
            ("protocol: linux\ncmdline: x\n", Some(1), "names no kernel"),
        ] {
            let text = format!("/Entry\n{body}");
            let menu = menu(&text, CONF);
            match line {
                None => assert_eq!(menu.select(None).unwrap().protocol, Protocol::Limine),
                Some(line) => {
                    let err = menu.select(None).unwrap_err().to_string();
                    assert!(
                        err.contains(&format!("limine.conf line {line}: ")),
                        "{body}: {err}"
                    );
                    assert!(err.contains(what), "{body}: {err}");
                }
            }
        }
    }

    #[test]
    fn macros() {
        let text = "/A\nprotocol: multiboot2\nkernel_path: ${K}\ncmdline: arch=${ARCH} ${EMPTY}.\n${K}=boot():/k\n${EMPTY}=\n";
        let entry = default_entry(text);
        assert_eq!(entry.kernel, "/k");
        assert_eq!(entry.cmdline, "arch=x86-64 .");
        assert_eq!(
            parse("/A\nprotocol: linux\nkernel_path: ${KERNEL}\n", CONF)
                .unwrap_err()
                .to_string(),
            "/boot/limine/limine.conf line 3: \"kernel_path: ${KERNEL}\": the macro ${KERNEL} is not defined (define it with a line `${KERNEL}=value`)"
        );
        let big = format!(
            "${{B}}={}\ncmdline: {}\n",
            "b".repeat(1 << 20),
            "${B}".repeat(17)
        );
        assert!(parse(&big, CONF)
            .unwrap_err()
            .to_string()
            .contains("beyond 16 MiB"));
        assert!(parse("cmdline: ${OPEN\n", CONF)
            .unwrap_err()
            .to_string()
            .contains("Malformed"));
        assert!(parse("${NAME} value\n", CONF)
            .unwrap_err()
            .to_string()
            .contains("line 1: \"${NAME} value\": a macro definition is"));
    }

    #[test]
    fn directories_and_default_rows() {
        // Rows: 0 "Top", 1 "Closed" (its entries hidden), 2 "Open", 3 "Open/a", 4 "Open/b".
        let text = "/Top\nprotocol: multiboot2\nkernel_path: boot():/top\n/Closed\ncomment: a directory\n//hidden\nprotocol: multiboot2\nkernel_path: boot():/hidden\n/+Open\n//a\nprotocol: multiboot2\nkernel_path: boot():/a\n//b\nprotocol: multiboot2\nkernel_path: boot():/b\n";
        let default = |n: &str| menu(&format!("default_entry: {n}\n{text}"), CONF);
        let kernel = |n: &str| default(n).select(None).unwrap().kernel.clone();
        assert_eq!(kernel("1"), "/top");
        assert_eq!(kernel("2"), "/hidden");
        assert_eq!(kernel("3"), "/a");
        assert_eq!(kernel("4"), "/a");
        assert_eq!(kernel("5"), "/b");
        assert_eq!(kernel("0"), "/top");
        assert_eq!(kernel("99"), "/top");
        assert_eq!(kernel("x"), "/top");
        let titles: Vec<String> = default("1")
            .entries
            .iter()
            .map(|e| e.title.clone())
            .collect();
        assert_eq!(titles, ["Top", "Closed/hidden", "Open/a", "Open/b"]);
        assert_eq!(
            parse("/a\n///too deep\n", CONF).unwrap_err().to_string(),
            "/boot/limine/limine.conf line 2: \"///too deep\": a sub-entry 3 levels deep right after an entry 1 deep"
        );
        // A directory with no entries after it is an (unbootable) entry.
        assert!(refusal("/empty\n", CONF).contains("names no protocol"));
    }

    #[test]
    fn no_entries() {
        assert_eq!(
            parse("timeout: 3\n# nothing else\n", CONF).unwrap_err().to_string(),
            "/boot/limine/limine.conf: no menu entry (a line `/Title`, or `:Title` in limine.cfg): nothing to boot"
        );
        assert!(matches!(parse("", CFG), Err(ConfigError::NoEntries { .. })));
    }

    #[test]
    fn whitespace_and_crlf() {
        let text = "timeout: no\r\n\t/Spaced title  \r\n\t\tprotocol: multiboot1\r\n  kernel_path:boot():/k  \r\n  \r\n";
        let menu = menu(text, CONF);
        assert_eq!(menu.timeout, None);
        let entry = menu.select(None).unwrap();
        assert_eq!(entry.title, "Spaced title");
        assert_eq!(entry.kernel, "/k");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*", old in any::<bool>()) {
            let path = if old { CFG } else { CONF };
            if let Ok(menu) = parse(&text, path) {
                let _ = menu.select(None);
            }
        }

        #[test]
        fn limine_like_text_never_panics(
            text in "([ \t\n:/+=#${}()]|protocol|kernel_path|module_path|module_string|default_entry|timeout|PROTOCOL|KERNEL_PATH|boot|multiboot2|linux|[a-z0-9])*",
            old in any::<bool>(),
        ) {
            let path = if old { CFG } else { CONF };
            if let Ok(menu) = parse(&text, path) {
                let _ = menu.select(None);
                let _ = menu.select(Some("1"));
            }
        }
    }
}
