//! Shared helpers for the integration tests: KVM gating, running the gdbvisor binary, building
//! test kernels.
#![allow(dead_code)]

pub mod framebuffer;
pub mod gdb;
pub mod iso;
pub mod linux;
pub mod rsp;
pub mod session;

use std::path::PathBuf;
use std::process::{Command, Output};

/// True when /dev/kvm can be used. Under CI (`CI=true`) a missing KVM fails the test loudly;
/// elsewhere the test prints why it skips.
pub fn kvm_available(test: &str) -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: /dev/kvm is not usable, and CI=true requires KVM tests to run");
        }
        eprintln!("SKIPPED {test}: /dev/kvm is not usable on this machine");
    }
    usable
}

/// True when `program --version` runs. Under CI a missing tool fails loudly; elsewhere the test
/// prints why it skips.
pub fn tool_available(test: &str, program: &str, package: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {program} is not installed ({package}), and CI=true requires it");
        }
        eprintln!("SKIPPED {test}: {package} not installed");
    }
    ok
}

/// Address of `symbol` in `elf`, from binutils' `nm`.
pub fn symbol(elf: &std::path::Path, symbol: &str) -> u64 {
    let output = Command::new("nm").arg(elf).output().expect("nm runs");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            let addr = parts.next()?;
            let name = parts.nth(1)?;
            (name == symbol).then(|| u64::from_str_radix(addr, 16).unwrap())
        })
        .unwrap_or_else(|| panic!("{symbol} not in {}", elf.display()))
}

/// The switches gdbvisor says it appended to a kernel command line (its `appended "…"`
/// messages on stderr), each message's text in order.
pub fn appended_switches(stderr: &str) -> Vec<&str> {
    stderr
        .split("appended \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Path to a built test kernel's bootable image.
pub fn kernel(name: &str) -> PathBuf {
    test_kernels::build(name)
        .unwrap_or_else(|e| panic!("building test kernel {name}: {e}"))
        .image()
        .to_path_buf()
}

/// The ELF (with symbols) of a built test kernel.
pub fn kernel_elf(name: &str) -> PathBuf {
    test_kernels::build(name)
        .unwrap_or_else(|e| panic!("building test kernel {name}: {e}"))
        .elf
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_status(&self, status: i32) -> &Self {
        assert_eq!(self.status, status, "exit status\n{self}");
        self
    }

    pub fn assert_stdout_line(&self, line: &str) -> &Self {
        assert!(
            self.stdout.lines().any(|l| l == line),
            "no stdout line {line:?}\n{self}"
        );
        self
    }

    pub fn assert_stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- status {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

pub fn gdbvisor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gdbvisor"))
}

pub fn run_gdbvisor(args: &[&str]) -> Run {
    let output: Output = gdbvisor().args(args).output().expect("gdbvisor runs");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `run_gdbvisor` under [`gdb::DEADLINE`]: a run that hangs is killed and reaped (status -1).
pub fn run_gdbvisor_within(args: &[&str]) -> Run {
    use std::process::Stdio;
    let mut child = gdbvisor()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbvisor runs");
    let stdout = gdb::drain(child.stdout.take().unwrap());
    let stderr = gdb::drain(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + gdb::DEADLINE;
    let status = gdb::wait_until(&mut child, deadline).unwrap_or(-1);
    Run {
        status,
        stdout: stdout.recv_timeout(gdb::DEADLINE).unwrap_or_default(),
        stderr: stderr.recv_timeout(gdb::DEADLINE).unwrap_or_default(),
    }
}

/// A flat boot-sector image: `code` at 0x7C00 and the 0x55AA signature.
pub fn boot_sector(code: &[u8]) -> Vec<u8> {
    let mut image = vec![0u8; 512];
    image[..code.len()].copy_from_slice(code);
    image[510] = 0x55;
    image[511] = 0xAA;
    image
}

/// An ELF64 header with one PT_LOAD program header: `filesz` bytes from file offset 0x78 (where
/// the header ends) go to `paddr`, which is also the entry point.
pub fn elf64_header(paddr: u64, filesz: u64) -> Vec<u8> {
    let mut image = vec![0u8; 0x78];
    image[..4].copy_from_slice(b"\x7fELF");
    image[4] = 2; // 64-bit
    image[5] = 1; // little-endian
    image[0x12] = 62; // x86-64
    image[0x18..0x20].copy_from_slice(&paddr.to_le_bytes());
    image[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    image[0x36] = 56;
    image[0x38] = 1;
    image[0x40] = 1; // PT_LOAD
    image[0x48..0x50].copy_from_slice(&0x78u64.to_le_bytes());
    image[0x50..0x58].copy_from_slice(&paddr.to_le_bytes());
    image[0x58..0x60].copy_from_slice(&paddr.to_le_bytes());
    image[0x60..0x68].copy_from_slice(&filesz.to_le_bytes());
    image[0x68..0x70].copy_from_slice(&filesz.to_le_bytes());
    image
}

/// A boot sector that idles forever with interrupts on (`sti; hlt; jmp` back), written to a
/// fresh file named after `name`.
pub fn idle_image(name: &str) -> PathBuf {
    temp_file(name, &boot_sector(&[0xFB, 0xF4, 0xEB, 0xFD]))
}

/// Writes `bytes` to a fresh file under the target directory and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("write temp file");
    path
}
