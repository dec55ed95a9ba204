//! GRUB 2's `grub.cfg`, read the way GRUB's script engine would run it, as far as a hobby OS's
//! config needs: `set`, `menuentry` and `submenu` blocks, the multiboot, multiboot2 and linux
//! loaders with their modules, variables, simple `if` blocks and functions. The commands that
//! only change GRUB's own screen or modules are accepted and logged at debug level; anything
//! that would boot something else (chainloader, another config file…) is an error naming its
//! line, for the whole config when it is at the top level, for its entry when it is inside one.
//!
//! Checked against GRUB 2.06 (grub-core/loader/multiboot.c, lib/cmdline.c, loader/i386/linux.c)
//! and, with QEMU booting grub-mkrescue ISOs of the `mbinfo`, `mb2info` and Debian kernels,
//! against what the kernel receives: multiboot and multiboot2 pass the arguments after the
//! kernel's path, not the path; a module's string is the arguments after its path; linux passes
//! `BOOT_IMAGE=<path as written>` then the arguments; every argument is re-quoted by
//! [`loader_cmdline`].
// Until the --cdrom runner uses these (branch iso-boot), only the tests do.
#![allow(dead_code)]

use std::collections::HashMap;
use std::rc::Rc;

use log::debug;
use thiserror::Error;

use super::menu::{
    normal_path, BootEntry, BootMenu, Built, ConfigLine, ConfigText, ModuleSpec, Protocol,
};

/// Why a grub.cfg (or one of its entries) cannot be booted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// The text is not valid GRUB script.
    #[error("{at}: {problem}")]
    Syntax { at: ConfigLine, problem: String },
    /// A command gdbvisor cannot honour.
    #[error("{at}: {problem}")]
    Unsupported { at: ConfigLine, problem: String },
    /// A variable whose value gdbvisor cannot know, where the value matters.
    #[error("{at}: ${{{name}}} is not set by any `set` gdbvisor can follow{why}")]
    UnknownVariable {
        at: ConfigLine,
        name: String,
        why: String,
    },
    /// A path that is not a file in the ISO.
    #[error("{at}: {path:?}: {problem}")]
    Path {
        at: ConfigLine,
        path: String,
        problem: String,
    },
    /// The config hands over to another config file; `target` is its path in the ISO, which a
    /// caller may parse instead.
    #[error("{at}: gdbvisor reads one config file and does not follow `configfile`/`source` (the menu is in {target})")]
    OtherConfig { at: ConfigLine, target: String },
    /// The config has no menu entry at all.
    #[error("{config_path}: no menuentry: nothing to boot")]
    NoEntries { config_path: String },
}

/// Parses `text`, the grub.cfg found at `config_path` in the ISO.
pub(crate) fn parse(text: &str, config_path: &str) -> Result<BootMenu, ConfigError> {
    let source = Source {
        text,
        lines: ConfigText::new(config_path, text),
    };
    let tokens = tokenize(&source)?;
    let commands = Parser {
        source: &source,
        tokens: &tokens,
        pos: 0,
        depth: 0,
    }
    .script()?;
    let mut run = Runner::new(&source);
    let mut items = Vec::new();
    run.top_level(&commands, "", &mut items)?;
    if run.leaves.is_empty() {
        return Err(ConfigError::NoEntries {
            config_path: config_path.to_string(),
        });
    }
    // Leaves were collected level by level; the menu lists them in tree order.
    let mut order = Vec::with_capacity(run.leaves.len());
    menu_order(&items, &mut order);
    let default = run
        .default_leaf(&items)
        .and_then(|default| order.iter().position(|&leaf| leaf == default))
        .unwrap_or(0);
    let timeout = run.timeout();
    let built = order.iter().enumerate().map(|(number, &leaf)| {
        let leaf = &run.leaves[leaf];
        Built {
            title: leaf.title.clone(),
            line: leaf.line,
            entry: run.entry(leaf, number).map_err(|e| e.to_string()),
        }
    });
    Ok(BootMenu::new(config_path, default, timeout, built))
}

/// The command line GRUB builds from arguments (grub-core/lib/cmdline.c): each argument with
/// `\`, `'` and `"` escaped by a backslash (a `\xHH` sequence kept as it is), in double quotes
/// when it contains a space, joined by single spaces.
pub(crate) fn loader_cmdline(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let mut out = String::with_capacity(arg.len() + 2);
            let chars: Vec<char> = arg.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let c = chars[i];
                let hex_escape = c == '\\'
                    && chars.get(i + 1) == Some(&'x')
                    && chars.get(i + 2).is_some_and(char::is_ascii_hexdigit)
                    && chars.get(i + 3).is_some_and(char::is_ascii_hexdigit);
                if hex_escape {
                    out.extend(&chars[i..i + 4]);
                    i += 4;
                    continue;
                }
                if matches!(c, '\\' | '\'' | '"') {
                    out.push('\\');
                }
                out.push(c);
                i += 1;
            }
            if arg.contains(' ') {
                format!("\"{out}\"")
            } else {
                out
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The config's text and where it came from, for error messages.
struct Source<'a> {
    text: &'a str,
    lines: ConfigText<'a>,
}

impl Source<'_> {
    fn line(&self, number: usize) -> ConfigLine {
        self.lines.line(number)
    }

    fn syntax(&self, line: usize, problem: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            at: self.line(line),
            problem: problem.into(),
        }
    }

    fn unsupported(&self, line: usize, problem: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            at: self.line(line),
            problem: problem.into(),
        }
    }
}

/// A piece of a word: literal text, or a variable reference (`$name`, `${name}`); a variable
/// outside double quotes is split into several arguments at blanks, as GRUB does.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var { name: String, quoted: bool },
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Word {
    pieces: Vec<Piece>,
    /// Some part was quoted: the word is an argument even when empty, never a keyword.
    quoted: bool,
}

impl Word {
    /// The word as a keyword or command name: only unquoted plain text counts.
    fn bare(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Text(text)] if !self.quoted => Some(text),
            _ => None,
        }
    }

    fn push_char(&mut self, c: char) {
        if let Some(Piece::Text(text)) = self.pieces.last_mut() {
            text.push(c);
        } else {
            self.pieces.push(Piece::Text(c.to_string()));
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Word(Word),
    OpenBrace,
    CloseBrace,
    /// A newline or `;`.
    End,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    line: usize,
}

/// Splits GRUB script into words, braces and command ends: quotes ('…' literal, "…" with
/// `$var` and `\"`, `\\`, `\$` escapes), backslash escapes and line continuations, `#`
/// comments at a word's start.
fn tokenize(source: &Source) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::new();
    let mut chars = source.text.chars().peekable();
    let mut line = 1;
    let mut word: Option<(Word, usize)> = None;
    let finish = |word: &mut Option<(Word, usize)>, tokens: &mut Vec<Token>| {
        if let Some((w, l)) = word.take() {
            tokens.push(Token {
                kind: TokenKind::Word(w),
                line: l,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                finish(&mut word, &mut tokens);
                tokens.push(Token {
                    kind: TokenKind::End,
                    line,
                });
                line += 1;
            }
            ' ' | '\t' | '\r' => finish(&mut word, &mut tokens),
            ';' => {
                finish(&mut word, &mut tokens);
                tokens.push(Token {
                    kind: TokenKind::End,
                    line,
                });
            }
            '{' | '}' => {
                finish(&mut word, &mut tokens);
                let kind = if c == '{' {
                    TokenKind::OpenBrace
                } else {
                    TokenKind::CloseBrace
                };
                tokens.push(Token { kind, line });
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '\\' => match chars.next() {
                Some('\n') => line += 1,
                Some(escaped) => word
                    .get_or_insert((Word::default(), line))
                    .0
                    .push_char(escaped),
                None => word
                    .get_or_insert((Word::default(), line))
                    .0
                    .push_char('\\'),
            },
            '\'' => {
                let start = line;
                let (w, _) = word.get_or_insert((Word::default(), line));
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            w.push_char(c);
                        }
                        None => return Err(source.syntax(start, "a ' quote is never closed")),
                    }
                }
            }
            '"' => {
                let start = line;
                let (w, _) = word.get_or_insert((Word::default(), line));
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some('\n') => {
                                chars.next();
                                line += 1;
                            }
                            Some(&e @ ('"' | '\\' | '$')) => {
                                chars.next();
                                w.push_char(e);
                            }
                            _ => w.push_char('\\'),
                        },
                        Some('$') => variable(&mut chars, w, true, source, line)?,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            w.push_char(c);
                        }
                        None => return Err(source.syntax(start, "a \" quote is never closed")),
                    }
                }
            }
            '$' => {
                let (w, _) = word.get_or_insert((Word::default(), line));
                variable(&mut chars, w, false, source, line)?;
            }
            c => word.get_or_insert((Word::default(), line)).0.push_char(c),
        }
    }
    finish(&mut word, &mut tokens);
    tokens.push(Token {
        kind: TokenKind::End,
        line,
    });
    Ok(tokens)
}

/// Reads a variable reference after its `$`: `${any}`, `$name`, `$1`, `$?`, `$#`, `$*`, `$@`;
/// a `$` followed by anything else is literal.
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars>,
    word: &mut Word,
    quoted: bool,
    source: &Source,
    line: usize,
) -> Result<(), ConfigError> {
    let mut name = String::new();
    match chars.peek() {
        Some('{') => {
            chars.next();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some('\n') | None => {
                        return Err(source.syntax(line, "a ${ is never closed by }"));
                    }
                    Some(c) => name.push(c),
                }
            }
        }
        Some(&c) if matches!(c, '?' | '#' | '*' | '@') => {
            chars.next();
            name.push(c);
        }
        Some(&c) if c.is_ascii_digit() => {
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                name.push(d);
                chars.next();
            }
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            while let Some(&d) = chars
                .peek()
                .filter(|d| d.is_ascii_alphanumeric() || **d == '_')
            {
                name.push(d);
                chars.next();
            }
        }
        _ => {
            word.push_char('$');
            return Ok(());
        }
    }
    word.pieces.push(Piece::Var { name, quoted });
    Ok(())
}

/// A parsed command: its words, and the `{ … }` block after them (menuentry, submenu,
/// function), or an `if` chain.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Simple {
        line: usize,
        words: Vec<Word>,
        block: Option<Vec<Command>>,
    },
    If {
        line: usize,
        /// Each `if`/`elif` condition (its words) with its body.
        branches: Vec<(Vec<Word>, Vec<Command>)>,
        otherwise: Vec<Command>,
    },
    /// `for`/`while`/`until` loops: refused where they run.
    Loop { line: usize },
}

impl Command {
    fn line(&self) -> usize {
        match self {
            Command::Simple { line, .. } | Command::If { line, .. } | Command::Loop { line } => {
                *line
            }
        }
    }
}

struct Parser<'a> {
    source: &'a Source<'a>,
    tokens: &'a [Token],
    pos: usize,
    /// How many blocks and `if`s enclose the current command.
    depth: usize,
}

/// How deeply blocks and `if`s may nest: deeper is no real config, and would exhaust the
/// stack of this recursive parser.
const MAX_NESTING: usize = 64;

/// What ended a list of commands.
enum Ending {
    Eof,
    CloseBrace(usize),
    Keyword(String, usize),
}

impl<'a> Parser<'a> {
    fn script(mut self) -> Result<Vec<Command>, ConfigError> {
        let (commands, ending) = self.commands(&[])?;
        match ending {
            Ending::Eof => Ok(commands),
            Ending::CloseBrace(line) => Err(self.source.syntax(line, "this } closes no { block")),
            Ending::Keyword(word, line) => Err(self
                .source
                .syntax(line, format!("`{word}` without the `if` it belongs to"))),
        }
    }

    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    /// Commands up to the end, a `}`, or a command starting with one of `keywords` (consumed;
    /// the rest of its command is read by the next call).
    fn commands(&mut self, keywords: &[&str]) -> Result<(Vec<Command>, Ending), ConfigError> {
        if self.depth >= MAX_NESTING {
            let line = self.peek().map_or(1, |t| t.line);
            return Err(self.source.syntax(line, "blocks nested too deeply"));
        }
        self.depth += 1;
        let result = self.nested_commands(keywords);
        self.depth -= 1;
        result
    }

    fn nested_commands(
        &mut self,
        keywords: &[&str],
    ) -> Result<(Vec<Command>, Ending), ConfigError> {
        let mut commands = Vec::new();
        loop {
            let Some(token) = self.peek() else {
                return Ok((commands, Ending::Eof));
            };
            let line = token.line;
            match &token.kind {
                TokenKind::End => {
                    self.pos += 1;
                }
                TokenKind::CloseBrace => {
                    self.pos += 1;
                    return Ok((commands, Ending::CloseBrace(line)));
                }
                TokenKind::OpenBrace => {
                    return Err(self
                        .source
                        .syntax(line, "a { block with no command before it"));
                }
                TokenKind::Word(word) => {
                    let keyword = word.bare().map(str::to_string);
                    match keyword.as_deref() {
                        Some(k) if keywords.contains(&k) => {
                            self.pos += 1;
                            return Ok((commands, Ending::Keyword(k.to_string(), line)));
                        }
                        Some("if") => {
                            self.pos += 1;
                            commands.push(self.if_chain(line)?);
                        }
                        Some(k @ ("for" | "while" | "until")) => {
                            let k = k.to_string();
                            self.pos += 1;
                            self.skip_to_done(&k, line)?;
                            commands.push(Command::Loop { line });
                        }
                        Some(k @ ("then" | "elif" | "else" | "fi" | "do" | "done")) => {
                            return Err(self
                                .source
                                .syntax(line, format!("`{k}` without the `if` it belongs to")));
                        }
                        _ => commands.push(self.simple(line)?),
                    }
                }
            }
        }
    }

    /// Words up to the command's end; a `{` after them opens its block.
    fn simple(&mut self, line: usize) -> Result<Command, ConfigError> {
        let words = self.words();
        let block = if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::OpenBrace)) {
            self.pos += 1;
            match self.commands(&[])? {
                (body, Ending::CloseBrace(_)) => Some(body),
                _ => {
                    return Err(self
                        .source
                        .syntax(line, "the { block opened here is never closed by }"))
                }
            }
        } else {
            None
        };
        Ok(Command::Simple { line, words, block })
    }

    fn words(&mut self) -> Vec<Word> {
        let mut words = Vec::new();
        while let Some(Token {
            kind: TokenKind::Word(word),
            ..
        }) = self.peek()
        {
            words.push(word.clone());
            self.pos += 1;
        }
        words
    }

    /// After `if`: `COND; then …; [elif COND; then …;]… [else …;] fi`.
    fn if_chain(&mut self, line: usize) -> Result<Command, ConfigError> {
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        let mut condition = self.words();
        loop {
            let (_, ending) = self.commands_expecting(&["then"], line)?;
            debug_assert!(matches!(ending, Ending::Keyword(..)));
            let (body, ending) = self.commands(&["elif", "else", "fi"])?;
            branches.push((std::mem::take(&mut condition), body));
            match ending {
                Ending::Keyword(k, _) if k == "elif" => condition = self.words(),
                Ending::Keyword(k, _) if k == "else" => {
                    let (body, ending) = self.commands(&["fi"])?;
                    if !matches!(ending, Ending::Keyword(..)) {
                        return Err(self.source.syntax(line, "this `if` has no `fi`"));
                    }
                    otherwise = body;
                    break;
                }
                Ending::Keyword(..) => break,
                _ => return Err(self.source.syntax(line, "this `if` has no `fi`")),
            }
        }
        Ok(Command::If {
            line,
            branches,
            otherwise,
        })
    }

    /// Only command ends may come before `keywords`.
    fn commands_expecting(
        &mut self,
        keywords: &[&str],
        line: usize,
    ) -> Result<(Vec<Command>, Ending), ConfigError> {
        while matches!(self.peek().map(|t| &t.kind), Some(TokenKind::End)) {
            self.pos += 1;
        }
        match self.peek() {
            Some(Token {
                kind: TokenKind::Word(word),
                line: at,
            }) if word.bare().is_some_and(|w| keywords.contains(&w)) => {
                let found = Ending::Keyword(word.bare().unwrap_or_default().to_string(), *at);
                self.pos += 1;
                Ok((Vec::new(), found))
            }
            _ => Err(self.source.syntax(
                line,
                format!(
                    "gdbvisor reads an `if` whose condition is one command followed by `{}`",
                    keywords.join("`/`")
                ),
            )),
        }
    }

    /// Skips a loop to its `done` (nested loops counted).
    fn skip_to_done(&mut self, keyword: &str, line: usize) -> Result<(), ConfigError> {
        let mut depth = 1usize;
        while let Some(token) = self.peek() {
            self.pos += 1;
            if let TokenKind::Word(word) = &token.kind {
                match word.bare() {
                    Some("for" | "while" | "until") => depth += 1,
                    Some("done") => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(self
            .source
            .syntax(line, format!("this `{keyword}` loop has no `done`")))
    }
}

/// How variables gdbvisor has no value for expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expand {
    /// As empty, as GRUB does: where the value does not matter here.
    Lax,
    /// Unset ones as empty (GRUB's `[ -n "$x" ]`), unknown ones are an error.
    Condition,
    /// Any is an error: the value is part of what gdbvisor boots.
    Strict,
}

/// Variables: a scope's own over those it starts from, which are shared, so that the entries
/// of a large config do not each copy its variables.
#[derive(Debug, Clone, Default)]
struct Vars {
    shared: Rc<HashMap<String, Value>>,
    /// Set (Some) or unset (None) since the scope started.
    own: HashMap<String, Option<Value>>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&Value> {
        match self.own.get(name) {
            Some(value) => value.as_ref(),
            None => self.shared.get(name),
        }
    }

    fn insert(&mut self, name: String, value: Value) {
        self.own.insert(name, Some(value));
    }

    fn remove(&mut self, name: &str) {
        self.own.insert(name.to_string(), None);
    }

    /// Puts back what [`Runner::set_positional`] replaced.
    fn restore(&mut self, saved: Vec<(String, Option<Value>)>) {
        for (name, value) in saved {
            self.own.insert(name, value);
        }
    }

    /// These variables, to share: the own ones are merged into the shared ones.
    fn snapshot(&mut self) -> Vars {
        if !self.own.is_empty() {
            let mut merged = (*self.shared).clone();
            for (name, value) in self.own.drain() {
                match value {
                    Some(value) => merged.insert(name, value),
                    None => merged.remove(&name),
                };
            }
            self.shared = Rc::new(merged);
        }
        self.clone()
    }
}

/// A variable's value, or why gdbvisor cannot know it.
#[derive(Debug, Clone)]
enum Value {
    Known(String),
    Unknown(String),
}

/// Commands that only change GRUB's screen, modules, environment or search order: they cannot
/// change what a hobby ISO boots here, so they are accepted (logged at debug level).
const IGNORED_COMMANDS: &[&str] = &[
    "insmod",
    "rmmod",
    "search",
    "search.file",
    "search.fs_uuid",
    "search.fs_label",
    "terminal_input",
    "terminal_output",
    "terminal",
    "serial",
    "loadfont",
    "font",
    "boot",
    "echo",
    "sleep",
    "clear",
    "background_image",
    "background_color",
    "gfxmode",
    "gfxpayload",
    "play",
    "export",
    "save_env",
    "lsmod",
    "ls",
    "cat",
    "videoinfo",
    "vbeinfo",
    "set_background_color",
    "true",
    ":",
    "probe",
    "keystatus",
    "cmosclean",
    "terminfo",
    "locale",
    // The variables GRUB's environment block would set (saved_entry, next_entry…) stay unset
    // here: `default=saved` boots the first entry.
    "load_env",
];

/// Commands that boot something gdbvisor does not, with what to say about them.
const REFUSED_COMMANDS: &[(&str, &str)] = &[
    ("chainloader", "chainloads another boot loader"),
    ("ntldr", "chainloads Windows' NTLDR"),
    ("kfreebsd", "boots a FreeBSD kernel"),
    ("knetbsd", "boots a NetBSD kernel"),
    ("kopenbsd", "boots an OpenBSD kernel"),
    ("xnu_kernel", "boots an XNU kernel"),
    ("xnu_kernel64", "boots an XNU kernel"),
    ("appleloader", "boots through Apple firmware"),
    ("freedos", "boots FreeDOS"),
    ("plan9", "boots a Plan 9 kernel"),
    ("truecrypt", "boots a TrueCrypt image"),
    ("pxechainloader", "chainloads over the network"),
    ("legacy_kernel", "boots through GRUB Legacy's loader"),
    ("legacy_configfile", "reads a GRUB Legacy menu.lst"),
    (
        "linux32",
        "boots Linux through GRUB's 32-bit protocol variant",
    ),
    ("reboot", "reboots the machine"),
    ("halt", "powers the machine off"),
    ("fwsetup", "enters the firmware's setup"),
    ("exit", "leaves GRUB"),
    ("normal_exit", "leaves GRUB"),
    ("bootp", "needs a network"),
    ("net_bootp", "needs a network"),
    ("loopback", "boots from an image file inside the ISO"),
    ("cryptomount", "needs an encrypted disk"),
];

/// The message for a command gdbvisor cannot honour.
const ONLY_THESE: &str = "gdbvisor boots multiboot, multiboot2 and linux entries only";

/// GRUB's predefined variables on a BIOS CD boot (grub-mkrescue's El Torito image: the CD is
/// device `cd`, the config in `(cd)/boot/grub`).
const PREDEFINED: &[(&str, &str)] = &[
    ("root", "cd"),
    ("prefix", "(cd)/boot/grub"),
    ("cmdpath", "(cd)"),
    ("grub_platform", "pc"),
    ("grub_cpu", "i386"),
];

/// The most bytes of variable values one command may expand to (a real config's are tiny;
/// `set a=$a$a` repeated would otherwise double without end).
const MAX_EXPANSION: usize = 1 << 20;

/// How deeply `if`s, submenus and function calls may nest as the config runs (a function
/// calling itself would never end).
const MAX_RUN_DEPTH: usize = 80;

/// A menuentry found while running the top level.
struct Leaf {
    title: String,
    line: usize,
    body: Vec<Command>,
    /// The variables its body starts with ([`Runner::scopes`]): GRUB runs a body when the
    /// entry is chosen, after the whole config (or its submenu's body) has run.
    scope: usize,
    id: Option<String>,
}

/// How many submenus a config may have (each keeps its own variables).
const MAX_SUBMENUS: usize = 256;

/// The top-level menu tree, for `set default` (numbers and titles count per menu level).
enum Item {
    Entry(usize),
    Submenu { title: String, items: Vec<Item> },
}

/// A command [`Runner::walk`] hands over: not an `if`, an assignment or a function's.
struct Simple<'c> {
    line: usize,
    words: &'c [Word],
    /// The words expanded, unknown variables empty; never empty.
    args: &'c [String],
    block: Option<&'c [Command]>,
}

/// Runs the config as GRUB would, tracking variables, collecting the entries.
struct Runner<'a> {
    source: &'a Source<'a>,
    vars: Vars,
    functions: Rc<HashMap<String, Rc<Vec<Command>>>>,
    leaves: Vec<Leaf>,
    /// The variables as the top level, and each submenu, left them.
    scopes: Vec<Vars>,
    submenus: usize,
    default: Option<(Value, usize)>,
    /// How many [`Runner::walk`]s are under way.
    depth: usize,
}

/// What an entry's body has loaded so far.
#[derive(Default)]
struct Loaded {
    kernel: Option<(Protocol, String, String)>,
    modules: Vec<ModuleSpec>,
    /// `boot` ran: GRUB has left, what follows never runs.
    booted: bool,
}

impl<'a> Runner<'a> {
    fn new(source: &'a Source<'a>) -> Self {
        let mut vars = Vars::default();
        for (name, value) in PREDEFINED {
            vars.insert(name.to_string(), Value::Known(value.to_string()));
        }
        Runner {
            source,
            vars,
            functions: Rc::default(),
            leaves: Vec::new(),
            scopes: Vec::new(),
            submenus: 0,
            default: None,
            depth: 0,
        }
    }

    /// Runs `commands` as GRUB would: an `if` runs the branch its condition picks, `function`
    /// defines one and a call runs its body, assignments set variables, a loop is refused;
    /// every other command goes to `command` with its line, words, expanded words and block.
    fn walk(
        &mut self,
        commands: &[Command],
        command: &mut dyn FnMut(&mut Self, Simple) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        if self.depth >= MAX_RUN_DEPTH {
            let line = commands.first().map_or(1, Command::line);
            return Err(self.source.unsupported(
                line,
                "ifs, submenus and function calls nest too deeply (a function calling itself?)",
            ));
        }
        self.depth += 1;
        let result = self.walk_nested(commands, command);
        self.depth -= 1;
        result
    }

    fn walk_nested(
        &mut self,
        commands: &[Command],
        command: &mut dyn FnMut(&mut Self, Simple) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        for each in commands {
            match each {
                Command::Simple { line, words, block } => {
                    let line = *line;
                    let args = self.expand_lax(words);
                    let Some(name) = args.first().map(String::as_str) else {
                        continue;
                    };
                    if let (Some(body), "function") = (block, name) {
                        if let Some(function) = args.get(1) {
                            Rc::make_mut(&mut self.functions)
                                .insert(function.clone(), Rc::new(body.clone()));
                        }
                        continue;
                    }
                    if block.is_none() && self.assignment(name, &args, words, line) {
                        continue;
                    }
                    match self.functions.get(name).cloned() {
                        Some(body) if block.is_none() => {
                            let saved = self.set_positional(&args[1..]);
                            self.walk(&body, command)?;
                            self.vars.restore(saved);
                        }
                        _ => command(
                            self,
                            Simple {
                                line,
                                words,
                                args: &args,
                                block: block.as_deref(),
                            },
                        )?,
                    }
                }
                Command::If {
                    line,
                    branches,
                    otherwise,
                } => {
                    if let Some(body) = self.choose_branch(*line, branches, otherwise)? {
                        self.walk(body, command)?;
                    }
                }
                Command::Loop { line } => {
                    return Err(self
                        .source
                        .unsupported(*line, "gdbvisor does not run GRUB loops"))
                }
            }
        }
        Ok(())
    }

    /// Runs top-level commands (or a submenu's), collecting menu entries into `items`. A
    /// submenu's body runs after the level it is in, as GRUB runs it when it is chosen.
    fn top_level(
        &mut self,
        commands: &[Command],
        title_prefix: &str,
        items: &mut Vec<Item>,
    ) -> Result<(), ConfigError> {
        let first_leaf = self.leaves.len();
        let mut submenus = Vec::new();
        self.walk(commands, &mut |runner, simple| {
            let Simple {
                line,
                words,
                args,
                block,
            } = simple;
            let name = args[0].as_str();
            match (name, block) {
                ("menuentry", Some(body)) => {
                    let (title, id) = menuentry_title(&args[1..]);
                    items.push(Item::Entry(runner.leaves.len()));
                    runner.leaves.push(Leaf {
                        title: format!("{title_prefix}{title}"),
                        line,
                        body: body.to_vec(),
                        scope: 0,
                        id,
                    });
                    Ok(())
                }
                ("submenu", Some(body)) => {
                    runner.submenus += 1;
                    if runner.submenus > MAX_SUBMENUS {
                        return Err(runner.source.unsupported(
                            line,
                            format!("more than {MAX_SUBMENUS} submenus"),
                        ));
                    }
                    let (title, _) = menuentry_title(&args[1..]);
                    submenus.push((items.len(), body.to_vec()));
                    items.push(Item::Submenu {
                        title,
                        items: Vec::new(),
                    });
                    Ok(())
                }
                (_, Some(_)) => Err(runner.source.unsupported(
                    line,
                    format!("gdbvisor reads `{{ … }}` blocks after menuentry, submenu and function only, not after `{name}`"),
                )),
                ("configfile" | "source" | "." | "normal", None) if args.len() > 1 => {
                    let target =
                        runner.expand_strict(words, line, "it names the config file to read")?;
                    let target = iso_path(target.get(1).map_or("", String::as_str), runner.source, line)?;
                    Err(ConfigError::OtherConfig {
                        at: runner.source.line(line),
                        target,
                    })
                }
                ("menuentry" | "submenu", None) => Err(runner
                    .source
                    .syntax(line, format!("`{name}` needs a {{ … }} block"))),
                _ => runner.top_level_simple(name, line),
            }
        })?;
        let scope = self.scopes.len();
        self.scopes.push(self.vars.snapshot());
        for leaf in &mut self.leaves[first_leaf..] {
            leaf.scope = scope;
        }
        for (index, body) in submenus {
            let saved = (self.vars.clone(), self.default.clone());
            let Item::Submenu { title, items: sub } = &mut items[index] else {
                continue;
            };
            let prefix = format!("{title_prefix}{title}>");
            let mut children = Vec::new();
            self.top_level(&body, &prefix, &mut children)?;
            *sub = children;
            (self.vars, self.default) = saved;
        }
        Ok(())
    }

    /// A top-level command with no block.
    fn top_level_simple(&self, name: &str, line: usize) -> Result<(), ConfigError> {
        if let Some((_, what)) = REFUSED_COMMANDS.iter().find(|(n, _)| *n == name) {
            return Err(self.source.unsupported(
                line,
                format!("`{name}` {what} outside any menuentry: {ONLY_THESE}"),
            ));
        }
        if IGNORED_COMMANDS.contains(&name) || name == "normal" {
            debug!("{}: ignored", self.source.line(line));
            return Ok(());
        }
        if LOADERS.contains(&name) {
            return Err(self.source.unsupported(
                line,
                format!("`{name}` outside any menuentry: gdbvisor boots what a menuentry loads"),
            ));
        }
        Err(self.source.unsupported(
            line,
            format!("`{name}` is not a GRUB command gdbvisor knows; {ONLY_THESE}"),
        ))
    }

    /// Makes `args` a function's `$1`, `$2`… and `$#`; returns what they replaced, for
    /// [`Vars::restore`].
    fn set_positional(&mut self, args: &[String]) -> Vec<(String, Option<Value>)> {
        let previous = match self.vars.get("#") {
            Some(Value::Known(count)) => count.parse().unwrap_or(0),
            _ => 0,
        };
        let names: Vec<String> = (1..=args.len().max(previous))
            .map(|i| i.to_string())
            .chain(["#".to_string()])
            .collect();
        let saved = names
            .iter()
            .map(|name| (name.clone(), self.vars.get(name).cloned()))
            .collect();
        for name in &names {
            self.vars.remove(name);
        }
        for (i, arg) in args.iter().enumerate() {
            self.vars
                .insert((i + 1).to_string(), Value::Known(arg.clone()));
        }
        self.vars
            .insert("#".into(), Value::Known(args.len().to_string()));
        saved
    }

    /// `set name=value`, `name=value`, `unset name`: true when it was one.
    fn assignment(&mut self, name: &str, args: &[String], words: &[Word], line: usize) -> bool {
        match name {
            "set" => {
                // `set` re-expanded word by word, so that a value's unknown variable is kept.
                for word in &words[1..] {
                    let key = match word.pieces.first() {
                        Some(Piece::Text(text)) if text.contains('=') => {
                            text.split_once('=').map(|(key, _)| key.to_string())
                        }
                        _ => self
                            .expand_lax(std::slice::from_ref(word))
                            .join(" ")
                            .split_once('=')
                            .map(|(key, _)| key.to_string()),
                    };
                    if let Some(key) = key {
                        let value = self.word_value(word, &key, line);
                        self.set(&key, value, line);
                    }
                }
                true
            }
            "unset" => {
                for key in &args[1..] {
                    self.vars.remove(key);
                }
                true
            }
            _ if args.len() == 1 && valid_name(name.split_once('=').map_or("", |(k, _)| k)) => {
                let key = name.split_once('=').map_or("", |(k, _)| k).to_string();
                let value = self.word_value(&words[0], &key, line);
                self.set(&key, value, line);
                true
            }
            _ => false,
        }
    }

    fn set(&mut self, key: &str, value: Value, line: usize) {
        // GRUB takes `set root=(cd0)` as `cd0`.
        let value = match value {
            Value::Known(text) if key == "root" => Value::Known(
                text.strip_prefix('(')
                    .and_then(|t| t.strip_suffix(')'))
                    .unwrap_or(&text)
                    .to_string(),
            ),
            other => other,
        };
        if key == "default" {
            self.default = Some((value.clone(), line));
        }
        self.vars.insert(key.to_string(), value);
    }

    /// The value of `word` after its first `skip` characters (the `name=`): unknown when it
    /// uses a variable gdbvisor cannot know.
    fn word_value(&self, word: &Word, key: &str, line: usize) -> Value {
        match self.expand_word(word, Expand::Strict, &mut MAX_EXPANSION.clone()) {
            Ok(parts) => {
                let text = parts.join(" ");
                let value = match text.split_once('=') {
                    Some((_, value)) => value,
                    None => "",
                };
                Value::Known(
                    text.strip_prefix(key)
                        .and_then(|rest| rest.strip_prefix('='))
                        .unwrap_or(value)
                        .to_string(),
                )
            }
            // The first cause is kept: where an unknown value came from.
            Err(name) => Value::Unknown(match self.vars.get(&name) {
                Some(Value::Known(_)) => {
                    format!("{} makes it longer than 1 MiB", self.source.line(line))
                }
                Some(Value::Unknown(why)) => why.clone(),
                None => format!("{} sets it from ${{{name}}}", self.source.line(line)),
            }),
        }
    }

    /// Expands a command's words; unknown variables become empty, as in GRUB.
    fn expand_lax(&self, words: &[Word]) -> Vec<String> {
        let mut budget = MAX_EXPANSION;
        words
            .iter()
            .flat_map(|w| {
                self.expand_word(w, Expand::Lax, &mut budget)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Expands a command's words where the values matter: an unknown variable is an error.
    fn expand_strict(
        &self,
        words: &[Word],
        line: usize,
        purpose: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let mut args = Vec::new();
        let mut budget = MAX_EXPANSION;
        for word in words {
            match self.expand_word(word, Expand::Strict, &mut budget) {
                Ok(parts) => args.extend(parts),
                Err(name) => {
                    let why = match self.vars.get(&name) {
                        Some(Value::Unknown(why)) => format!(" ({why})"),
                        Some(Value::Known(_)) => {
                            " (its expansions make the command longer than 1 MiB)".to_string()
                        }
                        None => String::new(),
                    };
                    return Err(ConfigError::UnknownVariable {
                        at: self.source.line(line),
                        name,
                        why: format!("; {purpose}{why}"),
                    });
                }
            }
        }
        Ok(args)
    }

    /// The arguments one word becomes. `Err(name)` when it uses a variable `mode` does not let
    /// through as empty, or whose value would overdraw `budget` (bytes of variables left to
    /// expand in this command).
    fn expand_word(
        &self,
        word: &Word,
        mode: Expand,
        budget: &mut usize,
    ) -> Result<Vec<String>, String> {
        let mut args: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut has_current = word.quoted;
        for piece in &word.pieces {
            match piece {
                Piece::Text(text) => {
                    current.push_str(text);
                    has_current = true;
                }
                Piece::Var { name, quoted } => {
                    let positional = name.chars().all(|c| c.is_ascii_digit());
                    let value = match (self.vars.get(name), mode) {
                        (Some(Value::Known(value)), _) => value.as_str(),
                        (_, Expand::Lax) => "",
                        // Unset positional parameters are empty, as in GRUB.
                        (None, _) if positional => "",
                        (None, Expand::Condition) => "",
                        _ => return Err(name.clone()),
                    };
                    // `set a=$a$a` doubles a value: bound what one command may expand to.
                    *budget = match budget.checked_sub(value.len()) {
                        Some(left) => left,
                        None => return Err(name.clone()),
                    };
                    if *quoted {
                        current.push_str(value);
                        has_current = true;
                        continue;
                    }
                    // Outside quotes the value splits at blanks into several arguments.
                    let mut fields = value.split([' ', '\t', '\n']);
                    if let Some(first) = fields.next() {
                        current.push_str(first);
                        has_current |= !first.is_empty();
                    }
                    for field in fields {
                        if has_current {
                            args.push(std::mem::take(&mut current));
                        }
                        current.push_str(field);
                        has_current = !field.is_empty();
                    }
                }
            }
        }
        if has_current {
            args.push(current);
        }
        Ok(args)
    }

    /// Which body of an `if` runs: the one a condition gdbvisor can evaluate picks. When it
    /// cannot evaluate one and the branches only assign variables or set up GRUB's screen,
    /// none runs and the variables they assign become unknown (an error where one matters);
    /// when they do more, an error.
    fn choose_branch<'c>(
        &mut self,
        line: usize,
        branches: &'c [(Vec<Word>, Vec<Command>)],
        otherwise: &'c [Command],
    ) -> Result<Option<&'c [Command]>, ConfigError> {
        for (condition, body) in branches {
            match self.evaluate(condition) {
                Some(true) => return Ok(Some(body)),
                Some(false) => continue,
                None => {
                    let mut assigned = Vec::new();
                    let only_assignments = branches
                        .iter()
                        .map(|(_, body)| body.as_slice())
                        .chain([otherwise])
                        .all(|body| self.assignments_only(body, &mut assigned, 0));
                    if !only_assignments {
                        return Err(self.source.unsupported(
                            line,
                            "gdbvisor cannot evaluate this `if` (it evaluates `[ A = B ]`, `[ A != B ]`, `[ -n A ]`, `[ -z A ]`, true, false), and its branches do more than set variables or GRUB's screen",
                        ));
                    }
                    debug!("{}: condition not evaluated", self.source.line(line));
                    let why = format!(
                        "{} may set it, and gdbvisor cannot evaluate that `if`",
                        self.source.line(line)
                    );
                    for name in assigned {
                        self.set(&name, Value::Unknown(why.clone()), line);
                    }
                    return Ok(None);
                }
            }
        }
        Ok(Some(otherwise))
    }

    /// Whether `commands` only assign variables (collected in `assigned`), set up GRUB's
    /// screen or run `if`s and functions that do no more.
    fn assignments_only(
        &self,
        commands: &[Command],
        assigned: &mut Vec<String>,
        depth: usize,
    ) -> bool {
        commands.iter().all(|command| match command {
            Command::Simple {
                words, block: None, ..
            } => {
                let Some(name) = words.first().and_then(Word::bare) else {
                    return false;
                };
                let key = |w: &Word| match w.pieces.first() {
                    Some(Piece::Text(t)) => t.split_once('=').map(|(k, _)| k.to_string()),
                    _ => None,
                };
                match name {
                    "set" => assigned.extend(words[1..].iter().filter_map(key)),
                    "unset" => assigned.extend(
                        words[1..]
                            .iter()
                            .filter_map(|w| w.bare().map(str::to_string)),
                    ),
                    _ if words.len() == 1 && key(&words[0]).is_some_and(|k| valid_name(&k)) => {
                        assigned.extend(key(&words[0]));
                    }
                    _ if IGNORED_COMMANDS.contains(&name) => {}
                    _ => {
                        return depth < MAX_RUN_DEPTH
                            && self.functions.get(name).is_some_and(|body| {
                                self.assignments_only(body, assigned, depth + 1)
                            })
                    }
                }
                true
            }
            Command::If {
                branches,
                otherwise,
                ..
            } => branches
                .iter()
                .map(|(_, body)| body.as_slice())
                .chain([otherwise.as_slice()])
                .all(|body| self.assignments_only(body, assigned, depth + 1)),
            Command::Simple { .. } | Command::Loop { .. } => false,
        })
    }

    /// The value of a simple condition, or None.
    fn evaluate(&self, condition: &[Word]) -> Option<bool> {
        let mut args = Vec::new();
        let mut budget = MAX_EXPANSION;
        for word in condition {
            args.extend(
                self.expand_word(word, Expand::Condition, &mut budget)
                    .ok()?,
            );
        }
        let (negate, args) = match args.first().map(String::as_str) {
            Some("!") => (true, &args[1..]),
            _ => (false, &args[..]),
        };
        let test: &[String] = match args {
            [open, inner @ .., close] if open == "[" && close == "]" => inner,
            [test, inner @ ..] if test == "test" => inner,
            [single] if single == "true" => return Some(!negate),
            [single] if single == "false" => return Some(negate),
            _ => return None,
        };
        let value = match test {
            [a, op, b] if op == "=" || op == "==" => a == b,
            [a, op, b] if op == "!=" => a != b,
            [op, a] if op == "-n" => !a.is_empty(),
            [op, a] if op == "-z" => a.is_empty(),
            [a] => !a.is_empty(),
            [] => false,
            _ => return None,
        };
        Some(value != negate)
    }

    /// `set default=…` resolved to an entry (an index in `leaves`): a number or `N>M` path, a
    /// title or `Submenu>Title`, an `--id`. None for `saved`, variables gdbvisor cannot know
    /// and anything that names no entry: the caller picks the first entry, as GRUB does.
    fn default_leaf(&self, items: &[Item]) -> Option<usize> {
        let (value, line) = self.default.as_ref()?;
        let text = match value {
            Value::Known(text) => text.trim().to_string(),
            Value::Unknown(why) => {
                debug!("default entry not known ({why}): booting the first");
                return None;
            }
        };
        let found = resolve_default(items, &self.leaves, &text);
        if found.is_none() {
            debug!(
                "{}: default {text:?} names no entry: booting the first",
                self.source.line(*line)
            );
        }
        found
    }

    fn timeout(&self) -> Option<u32> {
        match self.vars.get("timeout") {
            Some(Value::Known(text)) => text.trim().parse().ok(),
            _ => None,
        }
    }

    /// Runs an entry's body: what it loads, or why gdbvisor cannot boot it.
    fn entry(&self, leaf: &Leaf, number: usize) -> Result<BootEntry, ConfigError> {
        let mut scope = Runner {
            source: self.source,
            vars: self.scopes.get(leaf.scope).cloned().unwrap_or_default(),
            functions: Rc::clone(&self.functions),
            leaves: Vec::new(),
            scopes: Vec::new(),
            submenus: 0,
            default: None,
            depth: 0,
        };
        let mut loaded = Loaded::default();
        scope.entry_body(&leaf.body, &mut loaded)?;
        let Some((protocol, kernel, cmdline)) = loaded.kernel else {
            return Err(self.source.unsupported(
                leaf.line,
                "this entry loads no kernel (no multiboot, multiboot2 or linux command)",
            ));
        };
        Ok(BootEntry {
            title: leaf.title.clone(),
            protocol,
            kernel,
            cmdline,
            modules: loaded.modules,
            line: leaf.line,
            number,
        })
    }

    fn entry_body(&mut self, commands: &[Command], loaded: &mut Loaded) -> Result<(), ConfigError> {
        self.walk(commands, &mut |runner, simple| {
            let name = simple.args[0].as_str();
            if loaded.booted {
                debug!("{}: after `boot`: never runs", runner.source.line(simple.line));
                return Ok(());
            }
            if name == "boot" {
                loaded.booted = true;
                return Ok(());
            }
            if simple.block.is_some() {
                return Err(runner.source.unsupported(
                    simple.line,
                    format!("`{name} {{ … }}` inside a menuentry: gdbvisor reads menuentry blocks at the top level or in a submenu"),
                ));
            }
            runner.entry_command(name, simple.words, simple.line, loaded)
        })
    }

    /// One command of an entry's body, other than assignments and function calls.
    fn entry_command(
        &self,
        name: &str,
        words: &[Word],
        line: usize,
        loaded: &mut Loaded,
    ) -> Result<(), ConfigError> {
        let loader = |protocol| match protocol {
            Protocol::Multiboot1 => "multiboot",
            Protocol::Multiboot2 => "multiboot2",
            _ => "linux",
        };
        match name {
            "multiboot" | "multiboot2" | "linux" | "linux16" | "linuxefi" => {
                let protocol = match name {
                    "multiboot" => Protocol::Multiboot1,
                    "multiboot2" => Protocol::Multiboot2,
                    _ => Protocol::Linux,
                };
                if let Some((previous, _, _)) = &loaded.kernel {
                    return Err(self.source.unsupported(
                        line,
                        format!(
                            "a second kernel in one entry (after `{}`)",
                            loader(*previous)
                        ),
                    ));
                }
                let args = self.expand_strict(
                    words,
                    line,
                    "it is part of the kernel's path or command line",
                )?;
                let mut args = &args[1..];
                // multiboot's --quirk-* options change how GRUB places the image; gdbvisor's
                // loader follows the specification.
                while let Some(option) = args.first().filter(|a| a.starts_with("--")) {
                    debug!("{}: option {option} ignored", self.source.line(line));
                    args = &args[1..];
                }
                let Some(path) = args.first() else {
                    return Err(self
                        .source
                        .syntax(line, format!("`{name}` names no kernel file")));
                };
                let kernel = iso_path(path, self.source, line)?;
                let cmdline = if protocol == Protocol::Linux {
                    format!("BOOT_IMAGE={}", loader_cmdline(args))
                } else {
                    loader_cmdline(&args[1..])
                };
                if name != "linux" && name != "multiboot" && name != "multiboot2" {
                    debug!("{}: booted as `linux`", self.source.line(line));
                }
                loaded.kernel = Some((protocol, kernel, cmdline));
                Ok(())
            }
            "module" | "module2" => {
                let wanted = if name == "module" {
                    Protocol::Multiboot1
                } else {
                    Protocol::Multiboot2
                };
                match &loaded.kernel {
                    Some((protocol, _, _)) if *protocol == wanted => {}
                    Some((protocol, _, _)) => {
                        return Err(self.source.unsupported(
                            line,
                            format!("`{name}` after `{}`: GRUB loads `{name}` for a {} kernel only", loader(*protocol), loader(wanted)),
                        ))
                    }
                    None => {
                        return Err(self.source.unsupported(
                            line,
                            format!("`{name}` before the kernel: GRUB says \"you need to load the kernel first\""),
                        ))
                    }
                }
                let args =
                    self.expand_strict(words, line, "it is part of a module's path or string")?;
                let mut args = &args[1..];
                let mut decompress = true;
                if args.first().is_some_and(|a| a == "--nounzip") {
                    decompress = false;
                    args = &args[1..];
                }
                let Some(path) = args.first() else {
                    return Err(self.source.syntax(line, format!("`{name}` names no file")));
                };
                loaded.modules.push(ModuleSpec {
                    path: iso_path(path, self.source, line)?,
                    string: loader_cmdline(&args[1..]),
                    decompress,
                });
                Ok(())
            }
            "initrd" | "initrd16" | "initrdefi" => {
                if !matches!(&loaded.kernel, Some((Protocol::Linux, _, _))) {
                    return Err(self.source.unsupported(
                        line,
                        format!("`{name}` without a linux kernel before it: GRUB says \"you need to load the kernel first\""),
                    ));
                }
                let args = self.expand_strict(words, line, "it is part of an initrd's path")?;
                let mut args = &args[1..];
                while let Some(option) = args.first().filter(|a| a.starts_with("--")) {
                    debug!("{}: option {option} ignored", self.source.line(line));
                    args = &args[1..];
                }
                if args.is_empty() {
                    return Err(self.source.syntax(line, format!("`{name}` names no file")));
                }
                for path in args {
                    if path.starts_with("newc:") {
                        return Err(ConfigError::Path {
                            at: self.source.line(line),
                            path: path.clone(),
                            problem: "GRUB's newc: initrd renaming is not supported by gdbvisor"
                                .into(),
                        });
                    }
                    loaded.modules.push(ModuleSpec {
                        path: iso_path(path, self.source, line)?,
                        string: String::new(),
                        decompress: false,
                    });
                }
                Ok(())
            }
            "configfile" | "source" | "." | "normal" => Err(self.source.unsupported(
                line,
                format!("`{name}` inside a menuentry reads another config file: {ONLY_THESE}"),
            )),
            _ if IGNORED_COMMANDS.contains(&name) => {
                debug!("{}: ignored", self.source.line(line));
                Ok(())
            }
            _ => {
                if let Some((_, what)) = REFUSED_COMMANDS.iter().find(|(n, _)| *n == name) {
                    return Err(self
                        .source
                        .unsupported(line, format!("`{name}` {what}: {ONLY_THESE}")));
                }
                Err(self.source.unsupported(
                    line,
                    format!("`{name}` is not a GRUB command gdbvisor knows; {ONLY_THESE}"),
                ))
            }
        }
    }
}

/// The commands that load a kernel or its files.
const LOADERS: &[&str] = &[
    "multiboot",
    "multiboot2",
    "module",
    "module2",
    "linux",
    "linux16",
    "linuxefi",
    "initrd",
    "initrd16",
    "initrdefi",
];

/// A menuentry's or submenu's title (its first argument that is not an option) and `--id`.
fn menuentry_title(args: &[String]) -> (String, Option<String>) {
    let mut title = None;
    let mut id = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some(option) = arg.strip_prefix("--") {
            let (key, inline) = match option.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (option, None),
            };
            let takes_value = matches!(key, "class" | "users" | "hotkey" | "id" | "source");
            let value = if takes_value && inline.is_none() {
                i += 1;
                args.get(i).cloned()
            } else {
                inline
            };
            if key == "id" {
                id = value;
            }
        } else if title.is_none() {
            title = Some(arg.clone());
        }
        i += 1;
    }
    (title.unwrap_or_default(), id)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `N`, `N>M…`, `Title`, `Submenu>Title` or an `--id`, as GRUB's `default` reads them.
fn resolve_default(items: &[Item], leaves: &[Leaf], text: &str) -> Option<usize> {
    if let Some(number) = leaves
        .iter()
        .position(|leaf| leaf.id.as_deref() == Some(text))
    {
        return Some(number);
    }
    let mut level = items;
    let parts: Vec<&str> = text.split('>').collect();
    for (i, part) in parts.iter().enumerate() {
        let item = match part.parse::<usize>() {
            Ok(index) => level.get(index)?,
            Err(_) => level.iter().find(|item| match item {
                Item::Entry(n) => leaves[*n].title.rsplit('>').next() == Some(*part),
                Item::Submenu { title, .. } => title == part,
            })?,
        };
        match item {
            Item::Entry(n) if i + 1 == parts.len() => return Some(*n),
            Item::Entry(_) => return None,
            Item::Submenu { items, .. } if i + 1 == parts.len() => return first_entry(items),
            Item::Submenu { items, .. } => level = items,
        }
    }
    None
}

/// The leaves of `items` in the order the menu shows them.
fn menu_order(items: &[Item], order: &mut Vec<usize>) {
    for item in items {
        match item {
            Item::Entry(leaf) => order.push(*leaf),
            Item::Submenu { items, .. } => menu_order(items, order),
        }
    }
}

fn first_entry(items: &[Item]) -> Option<usize> {
    items.iter().find_map(|item| match item {
        Item::Entry(n) => Some(*n),
        Item::Submenu { items, .. } => first_entry(items),
    })
}

/// A GRUB file name as a path in the ISO: `(cd)/boot/x`, `(cd0)/boot/x`, `/boot/x` are all
/// "/boot/x"; relative names, block lists and GRUB's own or network devices are refused.
fn iso_path(word: &str, source: &Source, line: usize) -> Result<String, ConfigError> {
    let problem = |problem: &str| ConfigError::Path {
        at: source.line(line),
        path: word.to_string(),
        problem: problem.to_string(),
    };
    let path = match word.strip_prefix('(') {
        Some(rest) => {
            let Some((device, path)) = rest.split_once(')') else {
                return Err(problem("a device name with no closing )"));
            };
            let device = device.to_ascii_lowercase();
            let foreign = ["memdisk", "proc", "tftp", "http", "pxe", "host"];
            if foreign.iter().any(|f| device.starts_with(f)) {
                return Err(problem(
                    "not on the ISO (a GRUB-internal or network device)",
                ));
            }
            path
        }
        None => word,
    };
    if !path.starts_with('/') {
        return Err(problem(if path.contains('+') {
            "a block list: gdbvisor reads files in the ISO by path"
        } else {
            "not an absolute path in the ISO"
        }));
    }
    normal_path(path).ok_or_else(|| problem("a directory, not a file"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CFG: &str = "/boot/grub/grub.cfg";

    fn menu(text: &str) -> BootMenu {
        parse(text, CFG).unwrap_or_else(|e| panic!("{e}"))
    }

    fn default_entry(text: &str) -> BootEntry {
        menu(text)
            .select(None)
            .unwrap_or_else(|e| panic!("{e}"))
            .clone()
    }

    fn error(text: &str) -> String {
        parse(text, CFG).unwrap_err().to_string()
    }

    /// The reason the default entry is refused.
    fn refusal(text: &str) -> String {
        menu(text).select(None).unwrap_err().to_string()
    }

    #[test]
    fn osdev_bare_bones() {
        let entry = default_entry("menuentry \"myos\" {\n\tmultiboot /boot/myos.bin\n}\n");
        assert_eq!(entry.title, "myos");
        assert_eq!(entry.protocol, Protocol::Multiboot1);
        assert_eq!(entry.kernel, "/boot/myos.bin");
        assert_eq!(entry.cmdline, "");
        assert!(entry.modules.is_empty());
        assert_eq!((entry.line, entry.number), (1, 0));
        // The same on one line, as the tutorial's shell `echo`s write it.
        let one_line = default_entry("menuentry \"myos\" { multiboot /boot/myos.bin }");
        assert_eq!(one_line.kernel, "/boot/myos.bin");
    }

    #[test]
    fn multiboot2_tutorial() {
        let text = "set timeout=0\nset default=0\n\nmenuentry \"my os\" {\n    multiboot2 /boot/kernel.bin\n    boot\n}\n";
        let menu = menu(text);
        assert_eq!(menu.timeout, Some(0));
        assert_eq!(menu.default, 0);
        assert_eq!(menu.config_path, CFG);
        let entry = menu.select(None).unwrap();
        assert_eq!(entry.protocol, Protocol::Multiboot2);
        assert_eq!(entry.kernel, "/boot/kernel.bin");
        assert_eq!(entry.line, 4);
    }

    /// In the shape of hobby OS repos' grub.cfg: a serial-debug second entry with arguments,
    /// modules with strings, `insmod`/`gfxmode`/`terminal_output`, a `--class`.
    #[test]
    fn hobby_os_two_entries_with_modules() {
        let text = r#"# generated by make iso
set timeout=5
set default="1"
insmod all_video
insmod gfxterm
set gfxmode=1024x768x32
set gfxpayload=keep
terminal_output gfxterm

menuentry "Toy OS" --class os {
    multiboot2 /boot/toy.elf console=ttyS0 quiet
    module2 /boot/initrd.tar initrd
    boot
}

menuentry 'Toy OS (serial debug)' --class os --id toy-debug {
    echo 'Loading Toy OS...'
    multiboot2 /boot/toy.elf console=ttyS0 debug "log level=4"
    module2 /boot/initrd.tar
    module2 --nounzip /boot/fonts.gz font
}
"#;
        let menu = menu(text);
        assert_eq!(menu.timeout, Some(5));
        assert_eq!(menu.default, 1);
        let first = menu.select(Some("0")).unwrap();
        assert_eq!(first.cmdline, "console=ttyS0 quiet");
        assert_eq!(
            first.modules,
            vec![ModuleSpec {
                path: "/boot/initrd.tar".into(),
                string: "initrd".into(),
                decompress: true
            }]
        );
        let second = menu.select(None).unwrap();
        assert_eq!(second.title, "Toy OS (serial debug)");
        assert_eq!(second.cmdline, "console=ttyS0 debug \"log level=4\"");
        assert_eq!(second.modules[0].string, "");
        assert_eq!(second.modules[1].path, "/boot/fonts.gz");
        assert_eq!(second.modules[1].string, "font");
        assert!(!second.modules[1].decompress);
        assert_eq!(second.line, 16);
        assert_eq!(menu.select(Some("Toy OS")).unwrap().number, 0);
    }

    /// What GRUB 2.06 gave the mbinfo test kernel under QEMU for
    /// `multiboot /boot/mbinfo arg1 "two words" 'single q' x=\"y\" back\\slash`.
    #[test]
    fn multiboot_cmdline_requoted_as_grub_does() {
        let text = "menuentry x {\n multiboot /boot/mbinfo arg1 \"two words\" 'single q' x=\\\"y\\\" back\\\\slash\n module /boot/m.txt modarg \"m two\"\n module --nounzip /boot/m.txt\n}";
        let entry = default_entry(text);
        assert_eq!(
            entry.cmdline,
            r#"arg1 "two words" "single q" x=\"y\" back\\slash"#
        );
        assert_eq!(entry.modules[0].string, r#"modarg "m two""#);
        assert_eq!(entry.modules[1].string, "");
    }

    /// What the Debian kernel printed as its command line under QEMU for
    /// `linux (cd)/boot/vmlinuz console=ttyS0 panic=-1 "a b" q=\"x\"`.
    #[test]
    fn linux_cmdline_starts_with_boot_image() {
        let text = "menuentry lx {\n    linux (cd)/boot/vmlinuz console=ttyS0 panic=-1 \"a b\" q=\\\"x\\\"\n    initrd /boot/ucode.img /boot/initrd.img\n}";
        let entry = default_entry(text);
        assert_eq!(entry.protocol, Protocol::Linux);
        assert_eq!(entry.kernel, "/boot/vmlinuz");
        assert_eq!(
            entry.cmdline,
            r#"BOOT_IMAGE=(cd)/boot/vmlinuz console=ttyS0 panic=-1 "a b" q=\"x\""#
        );
        let paths: Vec<&str> = entry.modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/boot/ucode.img", "/boot/initrd.img"]);
        assert!(entry.modules.iter().all(|m| m.string.is_empty()));
        let linux16 = default_entry("menuentry l { linux16 /vmlinuz\n initrd16 /a\n initrd /b }");
        assert_eq!(linux16.cmdline, "BOOT_IMAGE=/vmlinuz");
        assert_eq!(linux16.modules.len(), 2);
    }

    /// What GRUB 2.06 gave mbinfo under QEMU for this entry (with `$undefined` before `end`,
    /// which GRUB drops and gdbvisor refuses): variables split outside quotes, a backslash
    /// outside quotes takes the next character as it is.
    #[test]
    fn variable_splitting_and_escapes_as_grub_does() {
        let text = r#"set args="a  b"
set root=(cd)
menuentry "mb1" {
    multiboot ($root)/boot/mbinfo $args "$args" x${args}y a\x41b it\'s "q\"d" 'sq"' end
    module /boot/m.txt "" z
}"#;
        let entry = default_entry(text);
        assert_eq!(entry.kernel, "/boot/mbinfo");
        assert_eq!(
            entry.cmdline,
            r#"a b "a  b" xa by ax41b it\'s q\"d sq\" end"#
        );
        assert_eq!(entry.modules[0].string, " z");
    }

    #[test]
    fn loader_cmdline_keeps_hex_escapes() {
        let args = ["a\\x41b".to_string(), "it's".to_string(), String::new()];
        assert_eq!(loader_cmdline(&args), "a\\x41b it\\'s ");
        assert_eq!(loader_cmdline(&[]), "");
    }

    #[test]
    fn variables_and_devices_in_paths() {
        let text = r#"
set kernel=/boot/kernel.elf
set root='(cd0)'
set args="a b"
menuentry "v" {
    set extra=c
    multiboot2 ($root)${kernel} $args "$args" ${extra}
    module2 ($root)//boot///mod.bin
}
menuentry "w" { multiboot /boot/x $prefix }
"#;
        let menu = menu(text);
        let v = menu.select(Some("v")).unwrap();
        assert_eq!(v.kernel, "/boot/kernel.elf");
        assert_eq!(v.cmdline, "a b \"a b\" c");
        assert_eq!(v.modules[0].path, "/boot/mod.bin");
        // Predefined: prefix is where grub-mkrescue's image looks.
        assert_eq!(menu.select(Some("w")).unwrap().cmdline, "(cd)/boot/grub");
    }

    /// GRUB 2.06 under QEMU gave mbinfo `cmdline=second`: an entry's body runs when it is
    /// chosen, with the variables the whole config left; its title is expanded where it is.
    #[test]
    fn entry_bodies_see_the_variables_the_config_ends_with() {
        let text =
            "set k=first\nmenuentry \"mb1 $k\" {\n    multiboot /boot/mbinfo $k\n}\nset k=second\n";
        let entry = default_entry(text);
        assert_eq!(
            (entry.title.as_str(), entry.cmdline.as_str()),
            ("mb1 first", "second")
        );
        // A submenu's body runs after the top level, its entries see what it sets.
        let sub = "submenu s {\n set a=$k-sub\n menuentry e { multiboot /k $a }\n}\nset k=top\nmenuentry t { multiboot /k $a }";
        let menu = menu(sub);
        assert_eq!(menu.select(Some("s>e")).unwrap().cmdline, "top-sub");
        assert!(menu
            .select(Some("t"))
            .unwrap_err()
            .to_string()
            .contains("${a}"));
        let many = "submenu s { menuentry e { multiboot /k } }\n".repeat(300);
        assert!(error(&many).contains("more than 256 submenus"));
    }

    #[test]
    fn unknown_variable_in_a_path_is_an_error_naming_the_line() {
        let err = refusal("menuentry \"a\" {\n  multiboot2 $kdir/kernel.bin\n}");
        assert_eq!(
            err,
            "/boot/grub/grub.cfg line 2: \"multiboot2 $kdir/kernel.bin\": ${kdir} is not set by any `set` gdbvisor can follow; it is part of the kernel's path or command line\n(that is the config's default entry; pick another with --entry)"
        );
        // A variable set from one gdbvisor cannot know says where.
        let err = refusal("set k=$saved\nmenuentry a { multiboot2 $k }");
        assert!(err.contains("${k}"), "{err}");
        assert!(err.contains("line 1: \"set k=$saved\""), "{err}");
        // In a module's string too.
        let err = refusal("menuentry a { multiboot2 /k\n module2 /m $nope }");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("${nope}"), "{err}");
    }

    /// Entries share the config's variables rather than each copying them.
    #[test]
    fn many_variables_and_entries_stay_fast() {
        let sets: String = (0..20_000).map(|i| format!("set v{i}=x\n")).collect();
        let entries: String = (0..20_000)
            .map(|i| format!("menuentry e{i} {{ set w=$v{i}\n multiboot /k $w }}\n"))
            .collect();
        let start = std::time::Instant::now();
        let menu = menu(&(sets + &entries));
        assert_eq!(menu.entries.len(), 20_000);
        assert_eq!(menu.select(Some("e19999")).unwrap().cmdline, "x");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn positional_parameters_are_restored_after_a_call() {
        let text = "function inner { set got=$1 }\nfunction outer { inner a b c\n set after=\"$1 $2 $#\" }\nmenuentry e { outer x\n multiboot /k $got $after }";
        // $2 is empty again after `inner a b c` returns: "x  1" splits into two arguments.
        assert_eq!(default_entry(text).cmdline, "a x 1");
    }

    #[test]
    fn doubling_variables_are_bounded() {
        let doubling = "set a=xxxxxxxxxxxxxxxx\n".to_string() + &"set a=$a$a\n".repeat(64);
        let err = refusal(&format!("{doubling}menuentry e {{ multiboot /k $a }}"));
        assert!(err.contains("${a}"), "{err}");
        assert!(err.contains("longer than 1 MiB"), "{err}");
        let many = format!(
            "set a=\"{}\"\nmenuentry e {{ multiboot /k {} }}",
            "y".repeat(60_000),
            "$a ".repeat(100)
        );
        let err = refusal(&many);
        assert!(err.contains("longer than 1 MiB"), "{err}");
    }

    #[test]
    fn unknown_variables_in_ignored_commands_are_fine() {
        let entry =
            default_entry("echo $nothing\nmenuentry \"a $nothing\" { echo ${x}; multiboot /k }");
        assert_eq!(entry.title, "a ");
    }

    #[test]
    fn default_forms() {
        let three = "menuentry a { multiboot /a }\nmenuentry b --id bee { multiboot /b }\nmenuentry c { multiboot /c }\n";
        let with = |default: &str| menu(&format!("set default={default}\n{three}")).default;
        assert_eq!(with("2"), 2);
        assert_eq!(with("\"c\""), 2);
        assert_eq!(with("bee"), 1);
        assert_eq!(with("saved"), 0);
        assert_eq!(with("${saved_entry}"), 0);
        assert_eq!(with("9"), 0);
        assert_eq!(with("nosuch"), 0);
        // `default=N` without `set`, and the last assignment wins.
        assert_eq!(
            menu(&format!("default=1\nset default=2\n{three}")).default,
            2
        );
        assert_eq!(menu(three).timeout, None);
        assert_eq!(menu(&format!("set timeout=-1\n{three}")).timeout, None);
        assert_eq!(
            menu(&format!("set timeout=\"10\"\n{three}")).timeout,
            Some(10)
        );
    }

    #[test]
    fn submenus_are_flattened_with_grub_titles() {
        let text = r#"
set default="1>1"
menuentry "main" { multiboot2 /main }
submenu "Advanced" {
    menuentry "debug" { multiboot2 /main debug }
    menuentry "trace" { multiboot2 /main trace }
}
menuentry "last" { multiboot2 /last }
"#;
        let menu = menu(text);
        let titles: Vec<&str> = menu.entries.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(titles, ["main", "Advanced>debug", "Advanced>trace", "last"]);
        assert_eq!(menu.default, 2);
        assert_eq!(
            menu.select(Some("Advanced>debug")).unwrap().cmdline,
            "debug"
        );
        assert_eq!(menu.select(Some("3")).unwrap().title, "last");
        let by_title = parse(&text.replace("1>1", "Advanced>trace"), CFG).unwrap();
        assert_eq!(by_title.default, 2);
        // A default naming the submenu itself: its first entry.
        assert_eq!(parse(&text.replace("1>1", "1"), CFG).unwrap().default, 1);
        assert_eq!(parse(&text.replace("1>1", "2"), CFG).unwrap().default, 3);
        assert_eq!(parse(&text.replace("1>1", "0>1"), CFG).unwrap().default, 0);
    }

    #[test]
    fn refused_entries_keep_their_numbers() {
        let text = "menuentry \"my os\" {\n  multiboot /boot/os.bin\n}\nmenuentry \"Windows\" {\n  insmod chain\n  chainloader +1\n}\nmenuentry \"Reboot\" { reboot }\nmenuentry \"Firmware\" { fwsetup }\n";
        let menu = menu(text);
        assert_eq!(menu.entries.len(), 1);
        assert_eq!(menu.refused.len(), 3);
        assert_eq!(menu.select(None).unwrap().title, "my os");
        assert_eq!(
            menu.select(Some("1")).unwrap_err().to_string(),
            "/boot/grub/grub.cfg line 6: \"chainloader +1\": `chainloader` chainloads another boot loader: gdbvisor boots multiboot, multiboot2 and linux entries only"
        );
        assert!(menu
            .select(Some("Reboot"))
            .unwrap_err()
            .to_string()
            .contains("line 8"));
        let listing = menu.select(Some("x")).unwrap_err().to_string();
        assert!(
            listing.contains("  3  Firmware (not bootable by gdbvisor)"),
            "{listing}"
        );
    }

    #[test]
    fn refused_commands_in_entries() {
        for (command, what) in [
            ("ntldr /bootmgr", "NTLDR"),
            ("kfreebsd /boot/kernel", "FreeBSD"),
            ("linux32 /vmlinuz", "32-bit"),
            ("configfile /boot/grub/other.cfg", "another config file"),
            ("frobnicate", "not a GRUB command gdbvisor knows"),
            ("menuentry x { multiboot /k }", "inside a menuentry"),
        ] {
            let err = refusal(&format!("menuentry a {{\n  multiboot /k\n  {command}\n}}"));
            assert!(err.contains(what), "{command}: {err}");
            assert!(err.contains("line 3"), "{command}: {err}");
        }
    }

    #[test]
    fn entry_loader_order_errors() {
        for (body, what) in [
            ("module /m", "before the kernel"),
            ("multiboot /k\nmodule2 /m", "`module2` after `multiboot`"),
            ("multiboot2 /k\nmodule /m", "`module` after `multiboot2`"),
            ("initrd /i", "without a linux kernel"),
            ("multiboot /k\nlinux /v", "a second kernel"),
            ("multiboot", "names no kernel file"),
            ("multiboot2 /k\nmodule2", "names no file"),
            ("multiboot2 /k\nmodule2 --nounzip", "names no file"),
            ("linux /v\ninitrd", "names no file"),
            ("linux /v\ninitrd newc:a:/b", "newc:"),
            ("echo nothing", "loads no kernel"),
            ("for x in a; do echo; done", "loops"),
        ] {
            let err = refusal(&format!("menuentry a {{\n{body}\n}}"));
            assert!(err.contains(what), "{body}: {err}");
        }
    }

    #[test]
    fn paths_outside_the_iso_are_refused() {
        for (path, what) in [
            ("boot/kernel", "not an absolute path"),
            ("+1", "block list"),
            ("(hd0)+1", "block list"),
            ("(memdisk)/boot/k", "GRUB-internal"),
            ("(tftp,10.0.0.1)/k", "network"),
            ("(cd", "no closing )"),
            ("(cd)/", "a directory"),
        ] {
            let err = refusal(&format!("menuentry a {{\n multiboot {path}\n}}"));
            assert!(err.contains(what), "{path}: {err}");
            assert!(err.contains(&format!("{path:?}")), "{path}: {err}");
        }
        assert_eq!(
            default_entry("menuentry a { multiboot (cd0)/k }").kernel,
            "/k"
        );
        assert_eq!(
            default_entry("menuentry a { multiboot (hd0,msdos1)/k }").kernel,
            "/k"
        );
    }

    #[test]
    fn top_level_errors_name_the_line() {
        assert_eq!(
            error("set timeout=0\nchainloader +1\nmenuentry a { multiboot /k }"),
            "/boot/grub/grub.cfg line 2: \"chainloader +1\": `chainloader` chainloads another boot loader outside any menuentry: gdbvisor boots multiboot, multiboot2 and linux entries only"
        );
        assert!(error("multiboot /k\n").contains("outside any menuentry"));
        assert!(error("frob\n").contains("line 1: \"frob\": `frob` is not a GRUB command"));
        assert!(
            error("for i in 1 2; do echo $i; done\nmenuentry a { multiboot /k }").contains("loops")
        );
        assert!(error("echo {\n}").contains("only, not after `echo`"));
        assert!(error("menuentry a\n").contains("needs a { … } block"));
        assert_eq!(
            error("# nothing\nset timeout=1\n"),
            "/boot/grub/grub.cfg: no menuentry: nothing to boot"
        );
    }

    #[test]
    fn configfile_names_the_other_config() {
        let err = parse(
            "set root=(cd)\nconfigfile ($root)/boot/grub/real.cfg\n",
            CFG,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::OtherConfig {
                at: ConfigLine::new(
                    CFG,
                    "set root=(cd)\nconfigfile ($root)/boot/grub/real.cfg",
                    2
                ),
                target: "/boot/grub/real.cfg".into()
            }
        );
        assert!(err
            .to_string()
            .contains("(the menu is in /boot/grub/real.cfg)"));
        let err = error("source $cfgdir/x.cfg\n");
        assert!(err.contains("${cfgdir} is not set"), "{err}");
        assert!(err.contains("it names the config file to read"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line, what) in [
            (
                "menuentry \"a {\n multiboot /k\n}\n",
                1,
                "\" quote is never closed",
            ),
            ("menuentry 'a {\n", 1, "' quote is never closed"),
            ("menuentry a {\n multiboot /k\n", 1, "never closed by }"),
            ("set x=1\n}\n", 2, "closes no { block"),
            ("{ echo }", 1, "no command before it"),
            ("echo ${x\n", 1, "${ is never closed"),
            ("fi\n", 1, "without the `if`"),
            ("if true\necho x\nfi", 1, "followed by `then`"),
            ("if true; then echo x\n", 1, "no `fi`"),
            ("if true; then echo; else echo\n", 1, "no `fi`"),
            ("for x in y; do echo\n", 1, "no `done`"),
        ] {
            let err = error(text);
            assert!(err.contains(&format!("line {line}:")), "{text:?}: {err}");
            assert!(err.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let blocks = "menuentry a {\n".repeat(100_000);
        assert!(error(&blocks).contains("nested too deeply"));
        let ifs = "if true; then\n".repeat(100_000);
        assert!(error(&ifs).contains("nested too deeply"));
        let fine = format!(
            "{}menuentry a {{ multiboot /k }}\n{}",
            "if true; then\n".repeat(60),
            "fi\n".repeat(60)
        );
        assert_eq!(default_entry(&fine).kernel, "/k");
    }

    #[test]
    fn comments_continuations_and_separators() {
        let text = "# a comment\nset timeout=1 # trailing\nmenuentry \"a#b\" { # comment after brace\n  multiboot /boot/k \\\n    one two; boot\n  echo a#b\n}\n";
        let menu = menu(text);
        let entry = menu.select(None).unwrap();
        assert_eq!(entry.title, "a#b");
        assert_eq!(entry.cmdline, "one two");
        assert_eq!(menu.timeout, Some(1));
        // CRLF line ends.
        let crlf = default_entry("menuentry \"x\" {\r\n  multiboot2 /boot/k a\r\n}\r\n");
        assert_eq!(
            (crlf.kernel.as_str(), crlf.cmdline.as_str()),
            ("/boot/k", "a")
        );
        // A literal $ and escapes in double quotes.
        let entry = default_entry("menuentry x { multiboot /k \"\\$HOME\" 5$ \"a\\b\" }");
        assert_eq!(entry.cmdline, "$HOME 5$ a\\\\b");
    }

    #[test]
    fn if_blocks() {
        // The common font/gfxterm block: condition unknown, harmless branches.
        let text = "if loadfont /boot/grub/font.pf2 ; then\n  set gfxmode=auto\n  insmod gfxterm\n  terminal_output gfxterm\nfi\nmenuentry a { multiboot /k }";
        assert_eq!(default_entry(text).kernel, "/k");
        // Conditions gdbvisor evaluates.
        let platform = "if [ \"$grub_platform\" = \"efi\" ]; then\n  set kernel=/efi.elf\nelif [ x$grub_platform == xpc ]; then\n  set kernel=/pc.elf\nelse\n  set kernel=/other.elf\nfi\nmenuentry a { multiboot2 $kernel }";
        assert_eq!(default_entry(platform).kernel, "/pc.elf");
        let negated = "if ! [ -n \"$nothing_set\" ]; then set k=/a; else set k=/b; fi\nmenuentry a { multiboot2 $k }";
        assert_eq!(default_entry(negated).kernel, "/a");
        let tests = [
            ("[ -z \"\" ]", "/yes"),
            ("[ a != b ]", "/yes"),
            ("test a = a", "/yes"),
            ("[ x ]", "/yes"),
            ("[ ]", "/no"),
            ("false", "/no"),
            ("! true", "/no"),
        ];
        for (condition, kernel) in tests {
            let text = format!("if {condition}; then set k=/yes; else set k=/no; fi\nmenuentry a {{ multiboot2 $k }}");
            assert_eq!(default_entry(&text).kernel, kernel, "{condition}");
        }
        // Inside an entry.
        let inside = "menuentry a {\n if [ $grub_cpu = i386 ]; then multiboot /k32; else multiboot2 /k64; fi\n}";
        assert_eq!(default_entry(inside).kernel, "/k32");
        // Unknown condition with branches that do more than assign: an error naming the `if`.
        let err = error("if keystatus --shift; then\n menuentry b { multiboot /b }\nfi\nmenuentry a { multiboot /k }");
        assert!(
            err.contains("line 1: \"if keystatus --shift; then\""),
            "{err}"
        );
        assert!(err.contains("cannot evaluate"), "{err}");
        // Unknown condition that only assigns: the variables become unknown.
        let shift = "if keystatus --shift; then\n set default=1\n set k=/debug\nelse\n set k=/k\nfi\nmenuentry a { multiboot /a }\nmenuentry b { multiboot $k }";
        let shifted = menu(shift);
        assert_eq!(shifted.default, 0);
        let err = shifted.select(Some("b")).unwrap_err().to_string();
        assert!(
            err.contains("line 8: \"menuentry b { multiboot $k }\": ${k} is not set"),
            "{err}"
        );
        assert!(err.contains("(/boot/grub/grub.cfg line 1: \"if keystatus --shift; then\" may set it, and gdbvisor cannot evaluate that `if`)"), "{err}");
        // A function called in such a branch counts by what it does.
        let function = "function f { set x=1 }\nfunction g { multiboot /g }\nif [ -e /a ]; then f; fi\nmenuentry a { multiboot /a }";
        assert_eq!(menu(function).entries.len(), 1);
        assert!(error(&function.replace("then f", "then g")).contains("cannot evaluate"));
        assert!(
            error("if [ -e /a ]; then for x in y; do echo; done; fi").contains("cannot evaluate")
        );
        assert!(error("if [ -e /a ]; then $cmd; fi").contains("cannot evaluate"));
        let unset = "set k=/k\nif [ -e /a ]; then unset k; fi\nmenuentry a { multiboot $k }";
        assert!(refusal(unset).contains("${k}"));
        let err = refusal("menuentry a {\n if [ -e /x ]; then multiboot /a; fi\n}");
        assert!(err.contains("line 2"), "{err}");
        // An unknown condition whose branches are only screen set-up, nested.
        let nested = "if [ -e /x ]; then if [ -e /y ]; then insmod png; fi; fi\nmenuentry a { multiboot /k }";
        assert_eq!(default_entry(nested).kernel, "/k");
    }

    /// The header grub-mkconfig writes (a distribution's grub.cfg), which some ISOs copy.
    #[test]
    fn grub_mkconfig_header() {
        let text = r#"if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi

if [ x"${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi

export menuentry_id_option

function load_video {
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  else
    insmod efi_gop
    insmod vbe
  fi
}

if [ x$feature_timeout_style = xy ] ; then
  set timeout_style=menu
  set timeout=5
else
  set timeout=5
fi
menuentry 'My OS' --class os $menuentry_id_option 'myos-simple' {
	load_video
	insmod gzio
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	insmod part_msdos
	search --no-floppy --fs-uuid --set=root 1234-ABCD
	echo	'Loading My OS ...'
	multiboot2	/boot/myos.elf
}
"#;
        // `[ -s … ]` is not evaluated; the variable its branch sets is not used.
        let menu = menu(text);
        assert_eq!(menu.timeout, Some(5));
        assert_eq!(menu.default, 0);
        let entry = menu.select(None).unwrap();
        assert_eq!(
            (entry.title.as_str(), entry.kernel.as_str()),
            ("My OS", "/boot/myos.elf")
        );
    }

    #[test]
    fn functions_run_where_they_are_called() {
        let text = "function load_video {\n  insmod all_video\n}\nfunction kernel {\n  multiboot2 /boot/k.elf $1\n}\nmenuentry a {\n  load_video\n  kernel\n}\nload_video\n";
        assert_eq!(default_entry(text).kernel, "/boot/k.elf");
        let recursive = "function f { f }\nmenuentry a { f }";
        assert!(refusal(recursive).contains("too deeply"));
        let chain: String = (0..200)
            .map(|i| format!("function f{i} {{ f{} }}\n", i + 1))
            .collect();
        let err = error(&format!("{chain}f0\nmenuentry a {{ multiboot /k }}"));
        assert!(err.contains("nest too deeply"), "{err}");
        let ten: String = (0..10)
            .map(|i| format!("function f{i} {{ f{} }}\n", i + 1))
            .collect();
        let fine = format!("{ten}function f10 {{ multiboot /k }}\nmenuentry a {{ f0 }}");
        assert_eq!(default_entry(&fine).kernel, "/k");
        assert!(error("function f { f }\nf\nmenuentry a { multiboot /k }").contains("too deeply"));
    }

    #[test]
    fn ignored_commands_are_accepted() {
        let text = "insmod part_msdos\ninsmod ext2\nsearch --no-floppy --set=root --file /boot/k\nterminal_input console\nterminal_output console\nloadfont unicode\nserial --unit=0 --speed=115200\nsleep 1\nclear\nexport x\nnormal\nset pager=1\nunset pager\nmenuentry \"a\" --class os --users \"\" --unrestricted --hotkey=a {\n  insmod multiboot2\n  set root='hd0,msdos1'\n  set gfxpayload=keep\n  echo 'Loading...'\n  sleep 0\n  multiboot2 /boot/k\n  boot\n}\n";
        let entry = default_entry(text);
        assert_eq!(entry.title, "a");
        assert_eq!(entry.kernel, "/boot/k");
    }

    #[test]
    fn nothing_after_boot_runs() {
        let entry = default_entry(
            "menuentry a {\n multiboot2 /k\n boot\n module2 /never\n chainloader +1\n}",
        );
        assert!(entry.modules.is_empty());
        assert!(refusal("menuentry a {\n boot\n multiboot2 /k\n}").contains("loads no kernel"));
    }

    #[test]
    fn multiboot_options_are_skipped() {
        let entry = default_entry("menuentry a { multiboot --quirk-modules-after-kernel /k x }");
        assert_eq!((entry.kernel.as_str(), entry.cmdline.as_str()), ("/k", "x"));
        let entry = default_entry("menuentry a { linux /v\n initrd --foo /i }");
        assert_eq!(entry.modules[0].path, "/i");
    }

    #[test]
    fn menuentry_titles() {
        assert_eq!(
            menuentry_title(&["--class".into(), "os".into(), "T".into(), "extra".into()]),
            ("T".into(), None)
        );
        assert_eq!(
            menuentry_title(&["--id=x".into(), "T".into()]),
            ("T".into(), Some("x".into()))
        );
        assert_eq!(menuentry_title(&[]), (String::new(), None));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = parse(&text, CFG);
        }

        #[test]
        fn grub_like_text_never_panics(
            text in "([ \t\n;{}'\"$#\\\\]|menuentry|multiboot2?|module2?|linux|initrd|set|if|then|else|elif|fi|function|submenu|default=|\\(cd\\)|/boot/k|\\[|\\]|for|done|[a-z0-9=>])*"
        ) {
            if let Ok(menu) = parse(&text, CFG) {
                let _ = menu.select(None);
                let _ = menu.select(Some("1"));
            }
        }
    }
}
