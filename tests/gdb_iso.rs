//! A kernel booted from the ISO its build produced is debuggable from its first instruction:
//! gdb loads the ELF that `gdbvisor iso extract` writes out of the image, starts
//! `gdbvisor --cdrom os.iso --gdb stdio -S` itself, and finds the CPU at the kernel's entry
//! symbol under the register description of that ELF (`--gdb-arch auto` follows the kernel
//! found in the image, not the image file).

mod common;

use std::path::{Path, PathBuf};

use common::gdb::{gdb, vmm};
use common::iso::{grub_iso, tools_available, work_dir, IsoFile};
use common::{kernel_elf, kvm_available, run_gdbvisor};

/// grub-mkrescue's image of `kernel` (its ELF) as `/boot/kernel.bin`, entered by multiboot2.
fn grub_image(name: &str, kernel: &str, command: &str) -> PathBuf {
    grub_iso(
        name,
        &[IsoFile::copy("boot/kernel.bin", &kernel_elf(kernel))],
        &format!("set timeout=0\nmenuentry \"{name}\" {{\n  {command} /boot/kernel.bin\n}}\n"),
    )
}

/// `gdbvisor iso extract ISO /boot/kernel.bin -o DIR/kernel.bin`: the file gdb loads.
fn extract_kernel(iso: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("kernel.bin");
    run_gdbvisor(&[
        "iso",
        "extract",
        iso.to_str().unwrap(),
        "/boot/kernel.bin",
        "-o",
        out.to_str().unwrap(),
    ])
    .assert_status(0);
    out
}

#[test]
fn iso_kernel_is_debuggable_from_its_first_instruction() {
    if !kvm_available("gdb --cdrom") || !tools_available("gdb --cdrom") {
        return;
    }
    let iso = grub_image("gdb-mb2-long", "mb2-long", "multiboot2");
    let elf = extract_kernel(&iso, &work_dir("gdb-mb2-long-elf"));
    let target = format!(
        "target remote | {} --cdrom {} --gdb stdio -S",
        vmm(),
        iso.display()
    );
    let run = gdb(
        Some(&elf),
        &[
            target,
            "info registers rip".into(),
            "break kmain".into(),
            "continue".into(),
            "info registers rip".into(),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_no_gdb_warning()
        .assert_stderr_has("gdbvisor: /boot/kernel.bin in ")
        .assert_stderr_has(
            "gdbvisor: gdb register description x86-64 (from the ELF64 kernel; --gdb-arch to change)",
        )
        .assert_stdout_has("Breakpoint 1, ")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    let rips: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("rip"))
        .collect();
    assert_eq!(rips.len(), 2, "{run}");
    assert!(rips[0].contains("<_start>"), "held at the entry\n{run}");
    assert!(rips[1].contains("<kmain>"), "{run}");
}

/// An ELF32 kernel in an image gets gdb's i386 description, as with `--kernel`.
#[test]
fn gdb_arch_auto_follows_the_kernel_in_the_image() {
    if !kvm_available("gdb-arch auto --cdrom") || !tools_available("gdb-arch auto --cdrom") {
        return;
    }
    let iso = grub_image("gdb-arch-mbinfo", "mbinfo", "multiboot");
    // Without gdb on the other end of stdin the VMM ends at once.
    let run = run_gdbvisor(&["--cdrom", iso.to_str().unwrap(), "--gdb", "stdio", "-S"]);
    run.assert_stderr_has(
        "gdbvisor: gdb register description i386 (from the ELF32 kernel; --gdb-arch to change)",
    );
}
