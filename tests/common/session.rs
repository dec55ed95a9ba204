//! gdb driven by `tests/gdb_session.py`: many commands against one target in one gdb run, each
//! command's output kept apart, for tests that compare two targets' answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One gdb run's answers, by command.
pub struct Transcript {
    pub answers: HashMap<String, String>,
    /// gdb's own stdout and stderr, for failure messages.
    pub log: String,
}

impl Transcript {
    /// The output of `command` (which must have been run).
    pub fn get(&self, command: &str) -> &str {
        self.answers
            .get(command)
            .unwrap_or_else(|| panic!("no answer to {command:?}\n{}", self.log))
    }
}

/// Runs gdb (symbols from `elf`) against `target` (a command line for `target remote | exec`),
/// continuing to `stop` first if given, then every command (`hmp …` ones through QEMU's QMP
/// socket `qmp`); kills the target at the end.
pub fn run(
    name: &str,
    elf: Option<&Path>,
    target: &str,
    stop: Option<u64>,
    qmp: Option<&Path>,
    commands: &[String],
    deadline: Duration,
) -> Transcript {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let tag = format!("{}-{name}", std::process::id());
    let input = dir.join(format!("{tag}.commands"));
    let output = dir.join(format!("{tag}.answers"));
    std::fs::write(&input, commands.join("\n") + "\n").unwrap();
    let _ = std::fs::remove_file(&output);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gdb_session.py");
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-x"]).arg(&script);
    if let Some(elf) = elf {
        gdb.arg(elf);
    }
    if let Some(stop) = stop {
        gdb.env("GS_STOP", format!("{stop:#x}"));
    }
    if let Some(qmp) = qmp {
        gdb.env("GS_QMP", qmp);
    }
    let log_path = dir.join(format!("{tag}.log"));
    let child = gdb
        .env("GS_TARGET", target)
        .env("GS_COMMANDS", &input)
        .env("GS_OUT", &output)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{tag}.err"))).unwrap())
        .spawn();
    let mut child = child.expect("gdb runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let log = format!(
        "--- gdb {status:?}\n--- stdout\n{}--- stderr\n{}",
        read(&log_path),
        read(&dir.join(format!("{tag}.err")))
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "{name}: gdb failed or hung\n{log}"
    );
    let text = read(&output);
    let mut answers = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("==> ") {
            if let Some((c, a)) = current.take() {
                answers.insert(c, a);
            }
            current = Some((command.to_string(), String::new()));
        } else if let Some((_, a)) = current.as_mut() {
            a.push_str(line);
            a.push('\n');
        }
    }
    if let Some((c, a)) = current {
        answers.insert(c, a);
    }
    for ext in ["commands", "answers", "log", "err"] {
        let _ = std::fs::remove_file(dir.join(format!("{tag}.{ext}")));
    }
    Transcript { answers, log }
}

/// Parses hex with or without `0x`.
pub fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not hex: {text:?}: {e}"))
}
