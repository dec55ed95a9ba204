//! Snapshot files that are not what they claim: every one ends with one clear line naming the
//! problem and status 2 — never a panic — and memory outside a snapshot is never zeros.
//! Thousands of random corruptions of a valid file are opened in-process: none may panic.

mod common;

use std::path::{Path, PathBuf};

use gdbvisor::snapshot::notes::blank_cpu;
use gdbvisor::snapshot::{write_core, Snapshot};
use gdbvisor::vmm::memory::GuestRam;
use gdbvisor::x86::PhysMemory;

fn temp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

/// A valid 2 MiB, one-vCPU gdbvisor snapshot (written without KVM).
fn valid_core(name: &str) -> (PathBuf, Vec<u8>) {
    let ram = GuestRam::new(2 << 20).unwrap();
    ram.write(0x1000, b"gdbvisor snapshot test").unwrap();
    let mut cpu = blank_cpu(0);
    cpu.regs.rip = 0x1000;
    cpu.regs.rflags = 2;
    cpu.sregs.cr0 = 0x11;
    cpu.sregs.cs.limit = 0xffff;
    cpu.sregs.cs.present = 1;
    cpu.sregs.cs.s = 1;
    cpu.sregs.cs.type_ = 0xb;
    let path = temp(name);
    write_core(&path, &[cpu], &ram).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// `gdbvisor --snapshot FILE` fails with status 2 and the one line `gdbvisor: FILE: why`.
fn refused(path: &Path, why: &str) {
    let run = common::run_gdbvisor(&["--snapshot", path.to_str().unwrap()]);
    run.assert_status(2);
    let expected = format!("gdbvisor: {}: {why}", path.display());
    assert!(
        run.stderr.lines().count() == 1 && run.stderr.starts_with(&expected),
        "expected one line starting {expected:?}\n{run}"
    );
}

fn variant(name: &str, bytes: &[u8]) -> PathBuf {
    let path = temp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_files_get_one_clear_line() {
    let (path, core) = valid_core("valid.core");
    // The valid file opens, with its memory and nothing else.
    let snapshot = Snapshot::open(&path).unwrap();
    let mut buf = [0u8; 22];
    snapshot.ram.read_phys(0x1000, &mut buf).unwrap();
    assert_eq!(&buf, b"gdbvisor snapshot test");
    assert!(snapshot.ram.read_phys(2 << 20, &mut [0u8; 1]).is_err());
    assert!(snapshot
        .ram
        .read_phys((2 << 20) - 4, &mut [0u8; 8])
        .is_err());

    refused(&variant("empty", b""), "not an ELF file");
    refused(&variant("text", b"hello, world\n"), "not an ELF file");
    refused(
        &variant("short", &core[..100]),
        "truncated file: the program header table",
    );
    refused(
        &variant("no-ram", &core[..5000]),
        "truncated file: PT_LOAD 1 (guest-physical 0x0) needs file bytes 0x1000+0x200000",
    );
    // A note whose descriptor size runs past its segment.
    let notes_at = 64 + 2 * 56;
    let mut bad = core.clone();
    bad[notes_at + 4..notes_at + 8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    refused(
        &variant("note-size", &bad),
        "truncated file: note 0 (type 256) claims",
    );
    // The format note says two vCPUs; the file has one.
    let mut bad = core.clone();
    let count_at = notes_at + 12 + 12 + 4; // note header, "GDBVISOR\0" padded to 12, version
    bad[count_at..count_at + 4].copy_from_slice(&2u32.to_le_bytes());
    refused(
        &variant("count", &bad),
        "corrupt file: the format note announces 2 vCPUs, the file describes 1",
    );
    // Another machine, another ELF type, another byte order.
    let mut bad = core.clone();
    bad[18..20].copy_from_slice(&183u16.to_le_bytes());
    refused(
        &variant("arm", &bad),
        "not a snapshot gdbvisor can open: ELF machine 183 is not x86",
    );
    let mut bad = core.clone();
    bad[5] = 2;
    refused(
        &variant("big-endian", &bad),
        "not a snapshot gdbvisor can open: ELF data encoding 2 is not little-endian",
    );
    let elf = common::kernel_elf("elf64");
    refused(
        &elf,
        "not a snapshot gdbvisor can open: ELF type 2 (an executable), not a core file",
    );
    // A core file without CPU-state notes (a process core dump, say).
    let mut bad = core.clone();
    for i in 0..bad.len().min(4096) - 8 {
        if &bad[i..i + 8] == b"GDBVISOR" {
            bad[i..i + 8].copy_from_slice(b"PROCESS!");
        }
    }
    refused(
        &variant("no-cpu", &bad),
        "no CPU state: the core file has neither",
    );
    refused(
        &temp("does-not-exist"),
        "cannot read: No such file or directory",
    );

    // --snapshot does not boot anything: --kernel with it is a usage error.
    let run = common::run_gdbvisor(&[
        "--snapshot",
        path.to_str().unwrap(),
        "--kernel",
        elf.to_str().unwrap(),
    ]);
    run.assert_status(2);
    run.assert_stderr_has("cannot be used with");
    for name in [
        "valid.core",
        "empty",
        "text",
        "short",
        "no-ram",
        "note-size",
        "count",
        "arm",
        "big-endian",
        "no-cpu",
    ] {
        let _ = std::fs::remove_file(temp(name));
    }
}

#[test]
fn random_corruption_never_panics() {
    let (path, core) = valid_core("fuzz-base.core");
    let fuzzed = temp("fuzzed.core");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The ELF header, program headers and notes (PT_NOTE's size is at 64 + 32); RAM follows.
    let notes = u64::from_le_bytes(core[96..104].try_into().unwrap()) as usize;
    let header_len = 64 + 2 * 56 + notes;
    let (mut opened, mut refused) = (0, 0);
    for round in 0..1000 {
        let mut bytes = core.clone();
        if round % 10 == 9 {
            bytes.truncate((next() % header_len as u64) as usize);
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() % header_len as u64) as usize;
                bytes[at] = next() as u8;
            }
        }
        std::fs::write(&fuzzed, &bytes).unwrap();
        match Snapshot::open(&fuzzed) {
            Ok(s) => {
                opened += 1;
                // Whatever opened is readable without panics, and bounded by its ranges.
                let mut b = [0u8; 16];
                let _ = s.ram.read_phys(0x1000, &mut b);
                let _ = s.cpus[0].control_regs();
                let _ = s.cpus[0].mode();
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("1000 corrupted snapshots: {opened} opened, {refused} refused, no panic");
    assert!(refused > 300, "{refused} refused");
    let _ = std::fs::remove_file(&fuzzed);
    let _ = std::fs::remove_file(&path);
}
