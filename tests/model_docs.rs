//! The documentation against the code: every `monitor` command and command-line flag is in its
//! chapter of the book (`docs/`), the book's table of contents (`docs/SUMMARY.md`) lists exactly
//! the chapters there are, every relative link in the README and the book resolves (anchors
//! included), the README stays short, and its two commands are the ones CI runs. Pure and fast:
//! no KVM, no gdb, no build of anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use gdbvisor::cli::Cli;

/// The README's size limit: what it is, two commands, a tour and links fit; a reference does not.
const README_MAX_BYTES: usize = 10_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn chapter(name: &str) -> String {
    read(&root().join("docs").join(name))
}

/// Every `.md` file under `docs/`, relative to `docs/`.
fn book_files() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, base: &Path, found: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.insert(path.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let docs = root().join("docs");
    let mut found = BTreeSet::new();
    walk(&docs, &docs, &mut found);
    found
}

/// The text outside fenced code blocks, with inline code spans kept: flags and commands are
/// written as code, and headings never are inside a fence.
fn prose_lines(markdown: &str) -> Vec<&str> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push(line);
        }
    }
    lines
}

/// `markdown` without fenced code blocks and inline code spans (blanked), so that link syntax
/// shown as code is not taken for a link.
fn without_code(markdown: &str) -> String {
    let mut text = String::new();
    for line in prose_lines(markdown) {
        let mut in_span = false;
        for c in line.chars() {
            if c == '`' {
                in_span = !in_span;
                text.push(' ');
            } else {
                text.push(if in_span { ' ' } else { c });
            }
        }
        text.push('\n');
    }
    text
}

/// Link targets: whatever follows `](` up to `)`, when it has no spaces (so not prose).
fn link_targets(markdown: &str) -> Vec<String> {
    let text = without_code(markdown);
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            (!target.is_empty() && !target.contains(char::is_whitespace))
                .then(|| target.to_string())
        })
        .collect()
}

/// The anchor GitHub and mdBook give a heading: lower case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    prose_lines(markdown)
        .into_iter()
        .filter_map(|line| {
            let text = line.trim_start_matches('#');
            (text.len() < line.len() && text.starts_with(' ')).then(|| slug(text))
        })
        .collect()
}

/// Whether `text` names `flag` as a whole word: `--gdb` is not named by `--gdb-arch`, nor `-s`
/// by `x86-s`.
fn mentions(text: &str, flag: &str) -> bool {
    let part_of_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(flag).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + flag.len()..].chars().next();
        !before.is_some_and(part_of_word) && !after.is_some_and(part_of_word)
    })
}

/// The first cell of each table row, for the rows of a reference table.
fn first_cells(markdown: &str) -> Vec<&str> {
    prose_lines(markdown)
        .into_iter()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" | ").next())
        .filter(|cell| !cell.starts_with("---"))
        .collect()
}

#[test]
fn every_monitor_command_has_a_row_in_the_monitor_reference() {
    let reference = chapter("monitor.md");
    // The command a row documents: the first word of its first cell (`walk ADDR|SEG:OFF …`).
    let rows: BTreeSet<&str> = first_cells(&reference)
        .into_iter()
        .filter_map(|cell| cell.strip_prefix('`'))
        .filter_map(|cell| cell.split([' ', '`']).next())
        .collect();
    let mut known = BTreeSet::new();
    let mut missing = Vec::new();
    for (name, aliases) in gdbvisor::gdb::monitor::command_names() {
        known.insert(name);
        if !rows.contains(name) {
            missing.push(format!("command `{name}` has no row"));
        }
        for alias in aliases {
            known.insert(alias);
            if !reference.contains(&format!("`{alias}`")) {
                missing.push(format!("alias `{alias}` of `{name}` is not named"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/monitor.md: {missing:?}");
    let unknown: Vec<_> = rows.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "docs/monitor.md documents commands the stub does not know: {unknown:?}"
    );
}

#[test]
fn every_command_line_flag_is_in_the_cli_chapter() {
    let text = chapter("cli.md");
    let mut command = Cli::command();
    // Building adds the generated --help and --version, which users see too.
    command.build();
    let mut flags = BTreeSet::new();
    let mut subcommands = Vec::new();
    // Each command with the words that call it (`gdbvisor iso extract`).
    let mut pending = vec![(&command, "gdbvisor".to_string())];
    while let Some((cmd, words)) = pending.pop() {
        for arg in cmd.get_arguments() {
            flags.extend(arg.get_long().map(|l| format!("--{l}")));
            flags.extend(arg.get_short().map(|s| format!("-{s}")));
            let long_aliases = arg.get_visible_aliases().unwrap_or_default();
            flags.extend(long_aliases.into_iter().map(|l| format!("--{l}")));
            let short_aliases = arg.get_visible_short_aliases().unwrap_or_default();
            flags.extend(short_aliases.into_iter().map(|s| format!("-{s}")));
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let called = format!("{words} {}", sub.get_name());
            subcommands.push(called.clone());
            pending.push((sub, called));
        }
    }
    assert!(flags.len() > 20, "clap's flags not found: {flags:?}");
    let missing: Vec<_> = flags.iter().filter(|f| !mentions(&text, f)).collect();
    assert!(missing.is_empty(), "docs/cli.md does not name {missing:?}");
    for sub in subcommands {
        assert!(text.contains(&sub), "docs/cli.md does not show `{sub}`");
    }
    // The flag table's first column names only flags that exist.
    for cell in first_cells(&text) {
        for word in cell.split(|c: char| !(c.is_alphanumeric() || c == '-')) {
            if word.starts_with("--") {
                assert!(flags.contains(word), "docs/cli.md's table names {word}");
            }
        }
    }
}

#[test]
fn the_summary_lists_every_chapter_once() {
    let summary = chapter("SUMMARY.md");
    let listed: Vec<PathBuf> = link_targets(&summary)
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let unique: BTreeSet<PathBuf> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a chapter is listed twice");
    for chapter in &listed {
        assert!(
            root().join("docs").join(chapter).is_file(),
            "docs/SUMMARY.md lists {}, which does not exist",
            chapter.display()
        );
    }
    let mut files = book_files();
    files.remove(Path::new("SUMMARY.md"));
    let unlisted: Vec<_> = files.difference(&unique).collect();
    assert!(unlisted.is_empty(), "not in docs/SUMMARY.md: {unlisted:?}");
}

#[test]
fn every_relative_link_resolves() {
    let mut documents = vec![root().join("README.md")];
    documents.extend(
        book_files()
            .into_iter()
            .map(|f| root().join("docs").join(f)),
    );
    let mut broken = Vec::new();
    for document in &documents {
        let text = read(document);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(path)
            };
            let name = document.strip_prefix(root()).unwrap().display();
            if !file.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_markdown = file.extension().is_some_and(|e| e == "md");
                if is_markdown && !anchors(&read(&file)).contains(anchor) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_readme_is_short() {
    let size = read(&root().join("README.md")).len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, over {README_MAX_BYTES}: move the detail into a docs/ chapter \
         and link it"
    );
}

#[test]
fn the_readmes_two_commands_are_the_ones_ci_runs() {
    let readme = read(&root().join("README.md"));
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Two commands"))
        .expect("README.md has a 'Two commands' section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the section starts with a code block");
    let commands: Vec<&str> = block
        .lines()
        .skip(1) // the fence's language tag
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|command| !command.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release", "cargo test"],
        "README's two commands: the demo and the tests"
    );
    let ci = read(&root().join(".ci/run"));
    let ci_commands: BTreeSet<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    for command in commands {
        assert!(
            ci_commands.contains(command) || (command == "cargo test" && tiers_are_cargo_test(&ci)),
            ".ci/run does not run README's `{command}`"
        );
    }
}

/// Whether .ci/run's test tiers (`tier NAME ARGS…`, each `cargo test ARGS…`) together run what
/// `cargo test` runs: the unit tests of the libraries and binaries, the doc tests, and every
/// integration test in tests/ through one tier's `--test 'PREFIX*'`.
fn tiers_are_cargo_test(ci: &str) -> bool {
    let args: Vec<&str> = ci
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tier "))
        .flat_map(|tier| tier.split_whitespace().skip(1))
        .collect();
    let prefixes: Vec<&str> = args
        .windows(2)
        .filter(|pair| pair[0] == "--test")
        .filter_map(|pair| pair[1].trim_matches('\'').strip_suffix('*'))
        .collect();
    let tests = std::fs::read_dir(root().join("tests")).expect("tests/");
    let mut test_stems = tests.filter_map(|entry| {
        let path = entry.ok()?.path();
        let stem = path.file_stem()?.to_string_lossy().into_owned();
        (path.extension()? == "rs").then_some(stem)
    });
    ["--lib", "--bins", "--doc"]
        .iter()
        .all(|flag| args.contains(flag))
        && test_stems.all(|stem| prefixes.iter().any(|prefix| stem.starts_with(prefix)))
}

#[test]
fn helpers_read_markdown_as_github_does() {
    assert_eq!(
        slug("Host KVM quirks: `gdbvisor doctor`"),
        "host-kvm-quirks-gdbvisor-doctor"
    );
    assert_eq!(
        slug("Timer ticks and `--clock-dilation`"),
        "timer-ticks-and---clock-dilation"
    );
    assert!(mentions("`--gdb ENDPOINT`", "--gdb"));
    assert!(!mentions("`--gdb-arch`", "--gdb"));
    assert!(!mentions("x86-s", "-s"));
    let text = "see [a](a.md#x) and `[b](b.md)`\n```\n[c](c.md)\n```\n[d\ne](d.md)";
    assert_eq!(link_targets(text), ["a.md#x", "d.md"]);
}
