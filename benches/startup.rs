//! Process start → guest exit for the smallest test kernel (`tiny`: one `out` to isa-debug-exit).
//! Target: ≤ 20 ms median. Measures gdbvisor's own start-up (KVM VM, RAM, devices, threads),
//! not guest speed.
//!
//! Two figures: until gdbvisor has seen the guest's exit (its `isa-debug-exit` log line on
//! stderr), and until the process has ended. The host kernel's VM teardown (~15 ms on a
//! software-nested PVM host) happens in gdbvisor's worker process after the process started has
//! gone (src/relay.rs),
//! so the second figure is only gdbvisor's own exit.
//!
//! `--cdrom` beside `--kernel`, for the same kernel (`mb2-long`, multiboot2 ELF64, in a
//! grub-mkrescue image): until gdb can attach with the guest held (`-S`: gdbvisor's "gdb
//! listening" line, printed once the kernel is in guest RAM; KVM makes the VM meanwhile, ~2 ms
//! more), and until the guest's exit. Target: ≤ 30 ms to the first instruction from an ISO.
// criterion_group! defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn startup(c: &mut Criterion) {
    let kernel = test_kernels::build("tiny").expect("build the tiny test kernel");
    let image = kernel.image().to_path_buf();
    let binary = env!("CARGO_BIN_EXE_gdbvisor");
    let mut group = c.benchmark_group("startup");
    group.sample_size(50);
    let tiny = [std::ffi::OsStr::new("--kernel"), image.as_os_str()];
    group.bench_function("tiny: process start to guest exit seen", |b| {
        b.iter_custom(|n| time_to_line(binary, &tiny, "isa-debug-exit", Some(1), n))
    });
    group.bench_function("tiny: process start to process exit", |b| {
        b.iter(|| {
            let status = Command::new(binary)
                .arg("--kernel")
                .arg(&image)
                .status()
                .expect("gdbvisor runs");
            assert_eq!(status.code(), Some(1), "tiny exits through debug-exit");
        })
    });
    group.finish();
}

/// A grub-mkrescue image whose grub.cfg boots `elf` by multiboot2.
fn grub_image(elf: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gdbvisor-bench-iso-{}", std::process::id()));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::copy(elf, tree.join("boot/kernel.bin")).unwrap();
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        "set timeout=0\nmenuentry \"bench\" {\n  multiboot2 /boot/kernel.bin\n}\n",
    )
    .unwrap();
    let iso = dir.join("os.iso");
    let status = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .stderr(Stdio::null())
        .status()
        .expect("grub-mkrescue runs (grub-common, grub-pc-bin, xorriso, mtools)");
    assert!(status.success(), "grub-mkrescue builds the image");
    iso
}

/// Process start until gdbvisor prints a stderr line containing `needle`. Then the process
/// ends with `status`, or (`None`: `-S` holds the guest forever) is killed; either way reaped.
fn time_to_line(
    binary: &str,
    args: &[&std::ffi::OsStr],
    needle: &str,
    status: Option<i32>,
    iterations: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let start = Instant::now();
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "gdbvisor=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdbvisor runs");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let seen = stderr
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains(needle));
        total += start.elapsed();
        assert!(seen, "gdbvisor prints {needle:?}");
        if status.is_none() {
            let _ = child.kill();
        }
        let ended = child.wait().unwrap();
        if status.is_some() {
            assert_eq!(ended.code(), status, "gdbvisor's exit status");
        }
    }
    total
}

fn iso_startup(c: &mut Criterion) {
    let kernel = test_kernels::build("mb2-long").expect("build the mb2-long test kernel");
    let iso = grub_image(&kernel.elf);
    let binary = env!("CARGO_BIN_EXE_gdbvisor");
    let mut group = c.benchmark_group("startup");
    group.sample_size(50);
    let kernel_flag = [std::ffi::OsStr::new("--kernel"), kernel.elf.as_os_str()];
    let cdrom_flag = [std::ffi::OsStr::new("--cdrom"), iso.as_os_str()];
    let held = ["--gdb", "tcp:127.0.0.1:0", "-S"].map(std::ffi::OsStr::new);
    for (name, boot) in [("--kernel", &kernel_flag), ("--cdrom", &cdrom_flag)] {
        let held_args: Vec<&std::ffi::OsStr> = boot.iter().chain(&held).copied().collect();
        group.bench_function(
            format!("mb2-long {name}: process start to gdb listening (guest held)"),
            |b| b.iter_custom(|n| time_to_line(binary, &held_args, "gdb listening", None, n)),
        );
        group.bench_function(
            format!("mb2-long {name}: process start to guest exit seen"),
            |b| b.iter_custom(|n| time_to_line(binary, boot, "isa-debug-exit", Some(1), n)),
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(iso.parent().unwrap());
}

criterion_group!(benches, startup, iso_startup);
criterion_main!(benches);
