//! Kernel and module files are opened, never read whole. Files far larger than guest RAM
//! (sparse: they cost no disk) are refused at once, with one line and a small peak RSS; an ELF
//! whose file dwarfs RAM boots from its segments alone; a cut-off ELF is called truncated.

mod common;

use std::fs::OpenOptions;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const GIB: u64 = 1 << 30;
/// Far below every file size here: what gdbvisor may take whatever it is given.
const PEAK_LIMIT_KIB: i64 = 200 * 1024;
/// Reading even a sparse 3 GiB file would take seconds; refusing it takes milliseconds.
const TIME_LIMIT: Duration = Duration::from_secs(5);

/// A sparse file: `head`, then a hole up to `len` bytes. Removed when dropped.
struct Sparse(PathBuf);

impl Sparse {
    fn new(name: &str, head: &[u8], len: u64) -> Sparse {
        let path = temp_file(name, head);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len).unwrap();
        Sparse(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Sparse {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A run of gdbvisor with its peak resident memory (the kernel's account, from wait4).
struct Measured {
    run: Run,
    peak_kib: i64,
    took: Duration,
}

// The child is reaped by wait4, which std's wait cannot replace: it also reports the peak RSS.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> Measured {
    let start = Instant::now();
    let mut child = gdbvisor()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbvisor runs");
    // A few lines of output: reading one pipe to its end cannot leave the other full.
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is this test's own child, not yet reaped (the `Child` is never waited on);
    // `status` and `usage` are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Measured {
        run: Run {
            status,
            stdout,
            stderr,
        },
        peak_kib: usage.ru_maxrss,
        took: start.elapsed(),
    }
}

/// Status 2, one line `gdbvisor: FILE: …` holding `reason`, quickly and in little memory.
fn assert_refused_small(measured: &Measured, file: &str, reason: &str) {
    let Measured {
        run,
        peak_kib,
        took,
    } = measured;
    eprintln!("{file}: peak RSS {peak_kib} KiB, {took:?}");
    run.assert_status(2);
    let line = format!("gdbvisor: {file}: ");
    assert!(run.stderr.starts_with(&line), "error names the file\n{run}");
    assert!(run.stderr.contains(reason), "reason {reason:?}\n{run}");
    assert_eq!(run.stderr.lines().count(), 1, "one line\n{run}");
    assert!(*peak_kib < PEAK_LIMIT_KIB, "peak RSS {peak_kib} KiB\n{run}");
    assert!(*took < TIME_LIMIT, "took {took:?}\n{run}");
}

/// "3221225472 bytes (3.0 GiB)", as gdbvisor writes a whole number of GiB.
fn gib_text(len: u64) -> String {
    format!("{len} bytes ({}.0 GiB)", len / GIB)
}

/// The setup header fields that make a bzImage with a 64-bit entry (boot protocol 2.15): all
/// but detection and the size check are left for the kernel body that never gets read.
fn bzimage_header() -> Vec<u8> {
    let mut image = vec![0u8; 1024];
    image[0x1F1] = 1; // setup_sects: the protected-mode kernel starts at 0x400
    image[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    image[0x211] = 1; // loadflags: LOADED_HIGH
    image[0x236] = 1; // xloadflags: XLF_KERNEL_64
    image
}

#[test]
fn huge_whole_file_kernels_are_refused_unread() {
    if !kvm_available("huge kernels") {
        return;
    }
    // Multiboot1 a.out kludge, header at 0 and load_end_addr 0: the whole file goes at 1 MiB.
    let aout: Vec<u8> = [0x1BAD_B002u32, 1 << 16]
        .into_iter()
        .chain([0u32.wrapping_sub(0x1BAD_B002 + (1 << 16))])
        .chain([0x10_0000, 0x10_0000, 0, 0, 0x10_0020])
        .flat_map(u32::to_le_bytes)
        .collect();
    let kinds: [(&str, Vec<u8>, &str); 4] = [
        (
            "flat",
            boot_sector(&[0xF4]),
            "is too large: a flat image at 0x7c00 must end below 1 MiB (past it is beyond real mode's reach); room for 1016832 bytes (993.0 KiB)",
        ),
        (
            "bzimage",
            bzimage_header(),
            "is too large: a bzImage goes at 1 MiB but for its 0x400 bytes of setup code, below the end of guest RAM at 0x8000000; room for 133170176 bytes (127.0 MiB): try a larger --memory",
        ),
        (
            "aout",
            aout,
            "is too large: with load_end_addr 0 the file from offset 0x0 goes whole at 0x100000, below the end of guest RAM at 0x8000000; room for 133169152 bytes (127.0 MiB): try a larger --memory",
        ),
        ("unknown", vec![0x42; 1024], "an unknown image: tried linux"),
    ];
    for (kind, head, reason) in kinds {
        for len in [3 * GIB, 64 * GIB] {
            let file = Sparse::new(&format!("{kind}-{}g", len / GIB), &head, len);
            let measured = run_measured(&["--kernel", file.path()]);
            let size = if kind == "unknown" {
                String::new()
            } else {
                gib_text(len)
            };
            assert!(measured.run.stderr.contains(&size), "{}", measured.run);
            assert_refused_small(&measured, file.path(), reason);
        }
    }
}

#[test]
fn an_elf_segment_larger_than_ram_is_refused_unread() {
    if !kvm_available("huge segment") {
        return;
    }
    let file = Sparse::new(
        "segment-3g",
        &elf64_header(0x10_0000, 3 * GIB),
        0x78 + 3 * GIB,
    );
    let measured = run_measured(&["--kernel", file.path()]);
    assert_refused_small(
        &measured,
        file.path(),
        "segment at file offset 0x78 at 0x100000+0xc0000000 is outside guest RAM (RAM ends at 0x8000000; try a larger --memory)",
    );
}

/// A 64 GiB file (a vmlinux's debug information, say) whose one segment is 16 bytes of code:
/// only those are read, and the kernel runs.
#[test]
fn an_elf_far_larger_than_ram_boots_from_its_segments() {
    if !kvm_available("huge elf") {
        return;
    }
    let mut head = elf64_header(0x10_0000, 16);
    head.extend([
        0xB8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0xE7, 0xF4, // out 0xf4, eax: isa-debug-exit, status (1 << 1) | 1
        0xF4, // hlt
    ]);
    head.resize(0x78 + 16, 0);
    let file = Sparse::new("debuginfo-64g", &head, 64 * GIB);
    let measured = run_measured(&["--kernel", file.path()]);
    eprintln!(
        "{}: peak RSS {} KiB, {:?}",
        file.path(),
        measured.peak_kib,
        measured.took
    );
    measured.run.assert_status(3);
    assert!(measured.peak_kib < PEAK_LIMIT_KIB, "{}", measured.run);
}

#[test]
fn huge_modules_are_refused_unread() {
    if !kvm_available("huge modules") {
        return;
    }
    let mut kernel = elf64_header(0x10_0000, 1);
    kernel.push(0xF4);
    let kernel = temp_file("module-kernel.elf", &kernel);
    let small = temp_file("small-module", b"fits");
    for len in [3 * GIB, 64 * GIB] {
        let module = Sparse::new(&format!("module-{}g", len / GIB), b"070701", len);
        // The huge one second, after a module that fits: it is the one named.
        let list = format!("{} first,{} second", small.display(), module.path());
        let measured = run_measured(&["--kernel", kernel.to_str().unwrap(), "--initrd", &list]);
        let reason = format!(
            "{} is too large: a module or initrd goes whole into guest RAM; room for 134217728 bytes (128.0 MiB): try a larger --memory",
            gib_text(len)
        );
        assert_refused_small(&measured, module.path(), &reason);
    }
}

/// 100 bytes with a valid ELF identification and header: the 64-bit program header table, or
/// the 32-bit segment, runs past them. Neither is "an ELF32 image without a multiboot header".
#[test]
fn truncated_elfs_are_called_truncated() {
    if !kvm_available("truncated elfs") {
        return;
    }
    let mut elf32 = vec![0u8; 100];
    elf32[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    elf32[0x12] = 3; // EM_386
    elf32[0x1C] = 0x34; // e_phoff
    elf32[0x2A] = 32; // e_phentsize
    elf32[0x2C] = 1; // e_phnum
    elf32[0x34] = 1; // PT_LOAD
    elf32[0x38..0x3C].copy_from_slice(&0x1000u32.to_le_bytes()); // p_offset
    elf32[0x44..0x48].copy_from_slice(&0x100u32.to_le_bytes()); // p_filesz
    elf32[0x48..0x4C].copy_from_slice(&0x100u32.to_le_bytes()); // p_memsz
    let cases = [
        (
            "elf32-100",
            elf32,
            "ELF file is truncated (segment data): segment 0 (program header 0) takes 0x100 bytes at offset 0x1000..0x1100, past the end of the file (0x64 bytes)",
        ),
        (
            "elf64-100",
            elf64_header(0x10_0000, 16)[..100].to_vec(),
            "ELF file is truncated (program headers): the program header table (1 × 56 bytes) takes 0x38 bytes at offset 0x40..0x78, past the end of the file (0x64 bytes)",
        ),
    ];
    for (name, image, reason) in cases {
        let file = temp_file(name, &image);
        let measured = run_measured(&["--kernel", file.to_str().unwrap()]);
        assert!(
            !measured.run.stderr.contains("without a multiboot header"),
            "{}",
            measured.run
        );
        assert_refused_small(&measured, file.to_str().unwrap(), reason);
    }
}
