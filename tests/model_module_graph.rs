//! The crate's dependencies point down only, and no file depends on itself through others.
//!
//! Every `src/**/*.rs` is read (comments and literals blanked out) for the paths it names:
//! `use` trees and inline paths starting with `crate::`, `super::`, `self::`, `gdbvisor::` (in
//! main.rs, the binary) or a child module's name. A path resolves to the file that defines the
//! longest module prefix of it (an item of `boot` is in `src/boot/mod.rs`), so a module's
//! mod.rs is a file like any other. Code under `#[cfg(test)]` counts: a test that needs a
//! higher layer says the layers are wrong.
//!
//! `MODULE_GRAPH=1 cargo test --test module_graph -- --nocapture` prints both graphs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The layers, top to bottom. A module may use the modules of the layers below its own; never
/// one of its own layer or above.
const LAYERS: &[&[&str]] = &[
    // The binary: parses the command line and runs, opens a snapshot or reports the host.
    &["main"],
    // `gdbvisor qemu`: QEMU's command line turned into the command line's own types.
    &["qemu"],
    // One run from image file to exit status; the command line's definition, which names the
    // types of the layers below that its flags parse into.
    &["runner", "cli"],
    // The gdb stub over a live VM or a snapshot: it opens and saves snapshots (`--snapshot`,
    // `monitor dump`), so it sits above them.
    &["gdb"],
    // The ELF-core format of a stopped VM, written and read: no gdb types in it.
    &["snapshot"],
    // KVM: the VM, its vCPUs and their threads, host capabilities; keys from the host's
    // terminal for the devices.
    &["vmm", "host_input"],
    // What an ISO image (`--cdrom`) boots: its files, its boot configs, the chosen entry read
    // into boot's images and modules.
    &["iso"],
    // Loaders write kernels into any vm-memory guest memory; the port devices.
    &["boot", "devices"],
    // Depend on nothing in the crate: the x86 model, the demo kernel's bytes, the process that
    // relays the worker's exit status (main's first step).
    &["x86", "demo", "relay"],
];

type ModPath = Vec<String>;

/// Where a file names another: the line, for messages.
#[derive(Debug, Clone, Copy)]
struct Site {
    line: usize,
}

struct Graph {
    /// Module path of each file (`src/lib.rs` is the root, `[]`; `src/main.rs` is `[main]`).
    files: BTreeMap<ModPath, String>,
    /// file → file it names, with the first place it does.
    edges: BTreeMap<String, BTreeMap<String, Site>>,
}

/// `src/` of the checkout being tested: cargo says at run time (a test binary reused from
/// another worktree's build would otherwise read that worktree).
fn src_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    root.join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `src/boot/mod.rs` → `[boot]`, `src/gdb/monitor/pt.rs` → `[gdb, monitor, pt]`.
fn module_path(relative: &Path) -> ModPath {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    match file.as_str() {
        "lib.rs" if parts.is_empty() => {}
        "mod.rs" => {}
        _ => parts.push(file.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The source with comments and the insides of string and char literals replaced by spaces
/// (newlines kept, so lines still count).
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[start..].iter().take_while(|&&ch| ch == '#').count();
            c.get(start + hashes) == Some(&'"')
        } {
            // A raw string: r"…", r#"…"#, br"…".
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[start..].iter().take_while(|&&ch| ch == '#').count();
            let body = start + hashes + 1;
            out.extend(std::iter::repeat_n(' ', body - i));
            i = body;
            while i < c.len() {
                if c[i] == '"'
                    && c[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('a', '\n', '\''); otherwise a lifetime or label, kept.
            out.push(' ');
            i += 1;
            if c[i] == '\\' {
                // The backslash and the character it escapes (which may be a quote).
                out.push_str("  ");
                i += 2;
            }
            while i < c.len() && c[i] != '\'' {
                blank(&mut out, c[i]);
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn ident(tok: Option<&(Tok, usize)>) -> Option<&str> {
    match tok {
        Some((Tok::Ident(name), _)) => Some(name),
        _ => None,
    }
}

/// Expands the use tree starting at `toks[*i]` into full paths; leaves `*i` past its end.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<ModPath>) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(name)) if name == "self" && !path.is_empty() => *i += 1,
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                *i += 1;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(toks.get(*i).map(|t| &t.0), Some(Tok::Punct('}')) | None) {
                    use_tree(toks, i, &path, out);
                    if toks.get(*i).map(|t| &t.0) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => break,
        }
        if toks.get(*i).map(|t| &t.0) == Some(&Tok::PathSep) {
            *i += 1;
        } else {
            break;
        }
    }
    if ident(toks.get(*i)) == Some("as") {
        *i += 2;
    }
    out.push(path);
}

impl Graph {
    fn read() -> Graph {
        let src = src_dir();
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let files: BTreeMap<ModPath, String> = paths
            .iter()
            .map(|p| {
                let relative = p.strip_prefix(&src).expect("under src/");
                let name = format!("src/{}", relative.display());
                (module_path(relative), name)
            })
            .collect();
        let mut graph = Graph {
            files,
            edges: BTreeMap::new(),
        };
        for (module, name) in graph.files.clone() {
            let text = std::fs::read_to_string(src.join(name.trim_start_matches("src/")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            graph.read_file(&module, &name, &text);
        }
        graph
    }

    /// Records every file `text` (the file `name`, module `module`) names.
    fn read_file(&mut self, module: &ModPath, name: &str, text: &str) {
        let toks = tokens(&blank_comments_and_literals(text));
        // Inline modules (`mod tests { … }`) open at a brace depth.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < toks.len() {
            let (tok, line) = &toks[i];
            let here: ModPath = module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(m, _)| m.clone()))
                .collect();
            match tok {
                Tok::Punct('{') => {
                    depth += 1;
                    i += 1;
                }
                Tok::Punct('}') => {
                    depth -= 1;
                    while inline.last().is_some_and(|&(_, d)| d > depth) {
                        inline.pop();
                    }
                    i += 1;
                }
                Tok::Ident(word) if word == "mod" => {
                    if let (Some(m), Some((Tok::Punct('{'), _))) =
                        (ident(toks.get(i + 1)), toks.get(i + 2))
                    {
                        depth += 1;
                        inline.push((m.to_string(), depth));
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                Tok::Ident(word) if word == "use" => {
                    i += 1;
                    let mut paths = Vec::new();
                    use_tree(&toks, &mut i, &[], &mut paths);
                    for path in paths {
                        self.add(module, &here, name, &path, *line);
                    }
                }
                Tok::Ident(first)
                    if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                        && (i == 0 || toks[i - 1].0 != Tok::PathSep) =>
                {
                    let mut path = vec![first.clone()];
                    i += 1;
                    while toks.get(i).map(|t| &t.0) == Some(&Tok::PathSep) {
                        match ident(toks.get(i + 1)) {
                            Some(seg) => {
                                path.push(seg.to_string());
                                i += 2;
                            }
                            None => break,
                        }
                    }
                    self.add(module, &here, name, &path, *line);
                }
                _ => i += 1,
            }
        }
    }

    /// Resolves `path`, named in file `name` (module `module`) inside module `here`, and
    /// records the edge to the file it lands in.
    fn add(&mut self, module: &ModPath, here: &ModPath, name: &str, path: &[String], line: usize) {
        let binary = name == "src/main.rs";
        let (mut abs, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
            Some("crate") if !binary => (Vec::new(), &path[1..]),
            Some("gdbvisor") if binary => (Vec::new(), &path[1..]),
            Some("self") => (here.clone(), &path[1..]),
            Some("super") => {
                let mut base = here.clone();
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    base.pop();
                }
                (base, &path[supers..])
            }
            // A child module of this file's module (`elf::parse` in boot/mod.rs).
            Some(child)
                if self
                    .files
                    .contains_key(&[module.as_slice(), &[child.to_string()]].concat()) =>
            {
                (module.clone(), path)
            }
            _ => return,
        };
        abs.extend(rest.iter().cloned());
        let target = (0..=abs.len())
            .rev()
            .find_map(|n| self.files.get(&abs[..n]))
            .expect("src/lib.rs is the root")
            .clone();
        if target == name || target == "src/lib.rs" {
            return;
        }
        self.edges
            .entry(name.to_string())
            .or_default()
            .entry(target)
            .or_insert(Site { line });
    }

    /// The top-level module a file belongs to (`main` for the binary).
    fn top(&self, file: &str) -> String {
        let module = self
            .files
            .iter()
            .find(|(_, f)| *f == file)
            .map(|(m, _)| m.clone())
            .expect("a known file");
        module.first().cloned().unwrap_or_else(|| "lib".into())
    }

    /// Module → module, with every file edge that makes it.
    fn module_edges(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut out: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for (from, targets) in &self.edges {
            for (to, site) in targets {
                let (a, b) = (self.top(from), self.top(to));
                if a != b {
                    out.entry((a, b))
                        .or_default()
                        .push(format!("{from}:{} → {to}", site.line));
                }
            }
        }
        out
    }

    /// Strongly connected components of more than one file (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<String>> {
        struct State<'g> {
            graph: &'g Graph,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            out: Vec<Vec<String>>,
        }
        fn visit<'g>(s: &mut State<'g>, v: &'g str) {
            let n = s.index.len();
            s.index.insert(v, n);
            s.low.insert(v, n);
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in s.graph.edges.get(v).into_iter().flat_map(|t| t.keys()) {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    s.out.push(component);
                }
            }
        }
        let mut state = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for file in self.files.values() {
            if !state.index.contains_key(file.as_str()) {
                visit(&mut state, file);
            }
        }
        state.out
    }

    /// A shortest cycle through `component`'s first file, as `a:line → b:line → … → a`.
    fn cycle_text(&self, component: &[String]) -> String {
        let start = &component[0];
        let inside: BTreeSet<&String> = component.iter().collect();
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(v) = queue.pop_front() {
            for w in self.edges.get(v).into_iter().flat_map(|t| t.keys()) {
                if w == start {
                    last = Some(v);
                    break 'search;
                }
                if inside.contains(w) && !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut back = Vec::new();
        let mut at = last.expect("a component is a cycle");
        while at != start {
            back.push(at);
            at = came_from[at];
        }
        let path: Vec<&String> = std::iter::once(start)
            .chain(back.into_iter().rev())
            .chain(std::iter::once(start))
            .collect();
        let mut text = String::new();
        for pair in path.windows(2) {
            let line = self.edges[pair[0]][pair[1]].line;
            text += &format!("{}:{line} → ", pair[0]);
        }
        text + start
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn dependencies_point_down_only() {
    let graph = Graph::read();
    if std::env::var_os("MODULE_GRAPH").is_some() {
        println!("module edges:");
        for ((a, b), uses) in graph.module_edges() {
            println!(
                "  {a} → {b}   ({} file edges, e.g. {})",
                uses.len(),
                uses[0]
            );
        }
    }
    let mut errors = Vec::new();
    let modules: BTreeSet<String> = graph.files.values().map(|f| graph.top(f)).collect();
    for module in modules.iter().filter(|m| *m != "lib") {
        if layer_of(module).is_none() {
            errors.push(format!(
                "module `{module}` is in no layer: place it in LAYERS (tests/model_module_graph.rs)"
            ));
        }
    }
    for ((a, b), uses) in graph.module_edges() {
        let (Some(la), Some(lb)) = (layer_of(&a), layer_of(&b)) else {
            continue;
        };
        if la >= lb {
            errors.push(format!(
                "`{a}` must not use `{b}` (same layer or above):\n    {}",
                uses.join("\n    ")
            ));
        }
    }
    assert!(errors.is_empty(), "\n{}\n", errors.join("\n"));
}

#[test]
fn no_file_depends_on_itself() {
    let graph = Graph::read();
    if std::env::var_os("MODULE_GRAPH").is_some() {
        println!("file edges:");
        for (from, targets) in &graph.edges {
            for (to, site) in targets {
                println!("  {from}:{} → {to}", site.line);
            }
        }
    }
    let mut errors = Vec::new();
    for component in graph.cycles() {
        let text = graph.cycle_text(&component);
        let files = component.join(" ");
        errors.push(format!("cycle: {text}\n  (all of: {files})"));
    }
    assert!(errors.is_empty(), "\n{}\n", errors.join("\n"));
}

/// The reader itself: paths in use trees, inline paths, comments and strings.
#[test]
fn the_reader_finds_what_a_file_names() {
    let mut graph = Graph {
        files: [
            (vec![], "src/lib.rs"),
            (vec!["a".into()], "src/a/mod.rs"),
            (vec!["a".into(), "kid".into()], "src/a/kid.rs"),
            (vec!["b".into()], "src/b.rs"),
            (vec!["c".into()], "src/c.rs"),
            (vec!["d".into()], "src/d.rs"),
        ]
        .into_iter()
        .map(|(m, f)| (m, f.to_string()))
        .collect(),
        edges: BTreeMap::new(),
    };
    let text = r##"
        use crate::{b::{self, Thing as Other}, c::*};
        // crate::d::Commented
        const S: &str = "crate::d::InAString"; const R: &str = r#"crate::d::Raw"#;
        fn f<'a>(x: &'a u8) -> [char; 2] { kid::go(); ['\'', 'x'] }
        mod tests { use super::*; }
    "##;
    graph.read_file(&vec!["a".into()], "src/a/mod.rs", text);
    graph.read_file(
        &vec!["a".into(), "kid".into()],
        "src/a/kid.rs",
        "fn g() { super::super::d::h() }",
    );
    let named = |f: &str| -> Vec<&str> {
        graph
            .edges
            .get(f)
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        named("src/a/mod.rs"),
        ["src/a/kid.rs", "src/b.rs", "src/c.rs"]
    );
    assert_eq!(named("src/a/kid.rs"), ["src/d.rs"]);
}
