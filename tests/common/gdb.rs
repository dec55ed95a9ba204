//! Helpers for driving a real gdb (`gdb -batch`) against the VMM: deadlines so a hang fails
//! instead of blocking, the VMM's readiness line instead of sleeps.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most any one gdb or VMM run may take before it is killed and the test fails. Runs take
/// well under a second here; the margin is for a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn vmm() -> &'static str {
    env!("CARGO_BIN_EXE_gdbvisor")
}

pub fn kernel(name: &str) -> PathBuf {
    super::kernel(name)
}

pub fn elf(name: &str) -> PathBuf {
    super::kernel_elf(name)
}

/// `target remote | gdbvisor --kernel IMAGE --gdb stdio -S EXTRA…`: gdb starts the VMM itself.
pub fn stdio_target(image: &Path, extra: &str) -> String {
    format!(
        "target remote | {} --kernel {} --gdb stdio -S {extra}",
        vmm(),
        image.display()
    )
}

/// gdb with `elf`'s symbols on a VMM it starts itself, held at the entry (`stdio_target`),
/// then `commands`.
pub fn gdb_on(elf: &Path, commands: &[&str]) -> GdbRun {
    let mut all = vec![stdio_target(elf, "")];
    all.extend(commands.iter().map(|c| c.to_string()));
    gdb(Some(elf), &all)
}

// ------------------------------------------------------------------ child processes --- //

/// Reads a pipe to its end on a thread; the text arrives on the returned channel.
pub fn drain(mut pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Waits for `child` until `deadline`; kills it then. `None` when it had to be killed.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<i32> {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One finished `gdb -batch` run.
pub struct GdbRun {
    /// `None`: gdb hung and was killed.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for GdbRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- gdb status {:?}\n--- gdb stdout\n{}--- gdb stderr (with a stdio VMM's stderr)\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl GdbRun {
    /// gdb ended by itself with status 0 (in batch mode: its last command succeeded).
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, Some(0), "gdb's exit status\n{self}");
        self
    }

    pub fn assert_stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "gdb stdout lacks {text:?}\n{self}"
        );
        self
    }

    pub fn assert_stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "gdb stderr lacks {text:?}\n{self}"
        );
        self
    }

    /// No line of gdb's own warnings (`warning: …`) and no register-size complaint.
    pub fn assert_no_gdb_warning(&self) -> &Self {
        for line in self.stdout.lines().chain(self.stderr.lines()) {
            assert!(
                !line.starts_with("warning:") && !line.contains("packet reply is too long"),
                "gdb complained: {line:?}\n{self}"
            );
        }
        self
    }

    /// The first stdout line that starts with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no gdb stdout line starting with {prefix:?}\n{self}"))
    }

    /// The stdout after the first line equal to `marker` (printed with `echo MARKER\n`).
    pub fn after_marker(&self, marker: &str) -> &str {
        let at = self
            .stdout
            .find(&format!("{marker}\n"))
            .unwrap_or_else(|| panic!("no marker {marker:?} in gdb stdout\n{self}"));
        &self.stdout[at + marker.len() + 1..]
    }
}

/// Runs `gdb -batch -nx [FILE] -ex CMD…` under the deadline.
pub fn gdb(file: Option<&Path>, commands: &[String]) -> GdbRun {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"]);
    if let Some(file) = file {
        cmd.arg(file);
    }
    for c in commands {
        cmd.arg("-ex").arg(c);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdb runs (is gdb installed?)");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_until(&mut child, Instant::now() + DEADLINE);
    // A VMM started by gdb through `| gdbvisor --gdb stdio` may hold the pipes a moment longer.
    let collect = |rx: Receiver<String>| rx.recv_timeout(DEADLINE).unwrap_or_default();
    let run = GdbRun {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    assert!(run.status.is_some(), "gdb hung and was killed\n{run}");
    run
}

/// Shorthand: `&["a", "b"]` → commands.
pub fn cmds(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A VMM started by the test (for tcp and unix endpoints), with its output collected.
pub struct Vmm {
    pub child: Child,
    pub stderr_lines: Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
    pub stdout: Option<Receiver<String>>,
    pub stdout_text: String,
}

impl Vmm {
    pub fn start(args: &[&str]) -> Vmm {
        let mut child = Command::new(vmm())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdbvisor starts");
        let stdout = drain(child.stdout.take().unwrap());
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, stderr_lines) = mpsc::channel();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Vmm {
            child,
            stderr_lines,
            stderr,
            stdout: Some(stdout),
            stdout_text: String::new(),
        }
    }

    /// A VMM holding `kernel` before its first instruction (`-S`) for gdb on a free TCP port,
    /// with `extra` flags; the port is the one its readiness line names.
    pub fn held_on_tcp(kernel: &Path, extra: &[&str]) -> (Vmm, u16) {
        let mut args = vec![
            "--kernel",
            kernel.to_str().expect("a UTF-8 path"),
            "--gdb",
            "tcp:127.0.0.1:0",
            "-S",
        ];
        args.extend(extra);
        let vmm = Vmm::start(&args);
        let port = vmm.tcp_port();
        (vmm, port)
    }

    pub fn transcript(&self) -> String {
        format!(
            "--- VMM stdout\n{}--- VMM stderr\n{}",
            self.stdout_text,
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the VMM never printed {needle:?} on stderr\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// The port from `gdbvisor: gdb listening on tcp:HOST:PORT …`.
    pub fn tcp_port(&self) -> u16 {
        let line = self.wait_stderr("gdb listening on tcp:");
        let endpoint = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tcp:"))
            .unwrap_or_else(|| panic!("no endpoint in {line:?}"));
        let (_, port) = endpoint.rsplit_once(':').expect("HOST:PORT");
        let port: u16 = port.parse().unwrap_or_else(|_| panic!("port in {line:?}"));
        assert_ne!(
            port, 0,
            "the readiness line names the port picked: {line:?}"
        );
        port
    }

    /// Waits for the VMM to end by itself; returns its status and keeps its stdout.
    pub fn wait_exit(&mut self) -> i32 {
        let status = wait_until(&mut self.child, Instant::now() + DEADLINE);
        if let Some(rx) = self.stdout.take() {
            self.stdout_text = rx.recv_timeout(DEADLINE).unwrap_or_default();
        }
        // Let the stderr thread reach the end of the pipe.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self
            .stderr_lines
            .recv_timeout(deadline - Instant::now())
            .is_ok()
        {}
        status.unwrap_or_else(|| panic!("the VMM did not exit by itself\n{}", self.transcript()))
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh path under the target's temporary directory.
pub fn temp_path(name: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The bytes `x/Nxb` prints, in order (`0x100115 <after_int3>:\t0x48\t0xc7…`).
pub fn examined_bytes(run: &GdbRun, symbol: &str) -> Vec<u8> {
    let tag = format!("<{symbol}>:");
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no x/xb line for {symbol}\n{run}"));
    line.split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|b| {
            u8::from_str_radix(b.trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("byte {b:?} in {line:?}"))
        })
        .collect()
}

/// gdb's `kill` was acknowledged. (With `--gdb stdio` gdb ends the VMM with SIGTERM when it
/// closes the pipe, so the VMM's own "gdb killed the VM" line may never be written.)
pub fn assert_killed(run: &GdbRun) {
    run.assert_ok()
        .assert_stdout_has("[Inferior 1 (process 1) killed]");
}

// ------------------------------------------------------------------------------ tests --- //

/// `monitor COMMAND` with its output on stdout after an `==COMMAND` marker. gdb -batch writes
/// monitor output to stderr, out of order with `echo`; Python's `to_string` captures it.
pub fn marked(command: &str) -> String {
    format!(
        "python gdb.write(\"=={command}\\n\" + gdb.execute(\"monitor {command}\", to_string=True))"
    )
}

/// The output lines of `monitor COMMAND` (between its marker and the next one).
pub fn section<'a>(run: &'a GdbRun, command: &str) -> Vec<&'a str> {
    run.after_marker(&format!("=={command}"))
        .lines()
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

/// Asserts that `monitor COMMAND` printed exactly `expected`.
pub fn assert_section(run: &GdbRun, command: &str, expected: &[&str]) {
    assert_eq!(section(run, command), expected, "monitor {command}\n{run}");
}
