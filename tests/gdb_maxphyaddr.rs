//! MAXPHYADDR on KVM, with the CPU as the oracle: the `maxphyaddr` kernel sets the bit at its
//! own MAXPHYADDR (CPUID 0x80000008) in a PTE and in a PDE and reads through both; its #PF
//! handler reports the error code the CPU pushed (P and RSVD) and CR2. Stopped in that handler
//! under gdb, `monitor walk` of CR2 must report the reserved-bit fault with the same error code
//! and the guest's MAXPHYADDR. A `monitor dump` of that stop records MAXPHYADDR; the same file
//! without that note (as written before it existed) opens with 40 and says so; `--maxphyaddr`
//! overrides both.

mod common;

use std::path::{Path, PathBuf};

use common::gdb::*;

const PTE_LINEAR: u64 = 0xc000_0000;
const PDE_LINEAR: u64 = 0xc020_0000;

/// The kernel's own report: its MAXPHYADDR from CPUID, or `None` (with the reason printed)
/// when no address bit can be reserved.
fn guest_maxphyaddr(stdout: &str) -> Option<u8> {
    if stdout.contains("maxphyaddr: maxphyaddr=52, no reserved address bit") {
        eprintln!("SKIPPED: this CPU's MAXPHYADDR is 52, no address bit of an entry is reserved");
        return None;
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("maxphyaddr: cpuid 0x80000008 maxphyaddr="))
        .unwrap_or_else(|| panic!("no MAXPHYADDR line:\n{stdout}"));
    Some(line.rsplit('=').next().unwrap().parse().unwrap())
}

/// `python` that prints `==NAME rax rbx cr2` in hex (the handler keeps the error code in RAX
/// and CR2 in RBX at `pf_report`).
fn handler_regs(name: &str) -> String {
    format!(
        "python gdb.write(\"=={name} %#x %#x %#x\\n\" % tuple(int(gdb.parse_and_eval(r)) & (2**64 - 1) for r in (\"$rax\", \"$rbx\", \"$cr2\")))"
    )
}

/// (error code, RBX, CR2) from a [`handler_regs`] line.
fn regs_at(run: &GdbRun, name: &str) -> (u64, u64, u64) {
    let line = run.line_starting(&format!("=={name} "));
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// The last three lines of a reserved-bit walk: the failure, why it is reserved, the #PF.
fn reserved_tail(level: &str, linear: u64, bits: u8, reserved_as: u8) -> Vec<String> {
    vec![
        format!(
            "physical address not available for linear {linear:#x}: {level} for linear {linear:#x} has reserved bits {:#x} set",
            1u64 << bits
        ),
        format!(
            "MAXPHYADDR is {reserved_as}: physical addresses have {reserved_as} bits, so entry bits 51:{reserved_as} are reserved"
        ),
        "#PF would be raised: error code 0x0009 (protection, read, supervisor, reserved-bit)"
            .to_string(),
    ]
}

fn assert_tail(run: &GdbRun, command: &str, tail: &[String]) {
    let lines = section(run, command);
    assert!(
        lines.len() > tail.len() && lines[lines.len() - tail.len()..] == *tail,
        "monitor {command}: expected to end with {tail:#?}\n{run}"
    );
}

/// The error code `monitor COMMAND` says the CPU would push.
fn walk_code(run: &GdbRun, command: &str) -> u64 {
    let line = section(run, command)
        .into_iter()
        .find_map(|l| l.strip_prefix("#PF would be raised: error code "))
        .unwrap_or_else(|| panic!("monitor {command} names no #PF\n{run}"));
    u64::from_str_radix(line[2..6].trim(), 16).unwrap()
}

/// The `MAXPHYADDR=` line of `monitor cregs`.
fn cregs_line(bits: u8) -> String {
    format!(
        "MAXPHYADDR={bits}: physical addresses have {bits} bits; page-table entry bits 51:{bits} are reserved"
    )
}

#[test]
fn walk_reports_the_reserved_bit_fault_the_cpu_raised() {
    if !common::kvm_available("maxphyaddr oracle") {
        return;
    }
    let elf = elf("maxphyaddr");
    let alone = common::run_gdbvisor(&["--kernel", elf.to_str().unwrap()]);
    alone.assert_status(1);
    let Some(m) = guest_maxphyaddr(&alone.stdout) else {
        return;
    };
    let expected = [
        "maxphyaddr: long mode entry".to_string(),
        format!("maxphyaddr: cpuid 0x80000008 maxphyaddr={m}"),
        "maxphyaddr: tables loaded".to_string(),
        format!("maxphyaddr: #PF error code=0x9 cr2={PTE_LINEAR:#x} ok"),
        format!("maxphyaddr: #PF error code=0x9 cr2={PDE_LINEAR:#x} ok"),
        "maxphyaddr: done".to_string(),
    ];
    assert_eq!(
        alone.stdout.lines().collect::<Vec<_>>(),
        expected,
        "{alone}"
    );

    let core = temp_path("maxphyaddr-pf.core");
    let walk_pte = format!("walk {PTE_LINEAR:#x}");
    let walk_pde = format!("walk {PDE_LINEAR:#x}");
    let walk_pde_w = format!("walk {PDE_LINEAR:#x} w");
    let dump = format!("dump {}", core.display());
    let commands = vec![
        stdio_target(&kernel("maxphyaddr"), ""),
        "break pf_report".into(),
        "continue".into(),
        handler_regs("pte"),
        marked(&walk_pte),
        marked("cregs"),
        marked(&dump),
        "continue".into(),
        handler_regs("pde"),
        marked(&walk_pde),
        marked(&walk_pde_w),
        "echo ==end\\n".into(),
        "delete".into(),
        "continue".into(),
    ];
    let run = gdb(Some(&elf), &commands);
    run.assert_ok()
        .assert_stdout_has("exited with code 01")
        .assert_no_gdb_warning();

    // First stop: the PTE. What the CPU pushed and what the walk says agree.
    let (code, rbx, cr2) = regs_at(&run, "pte");
    assert_eq!((rbx, cr2), (PTE_LINEAR, PTE_LINEAR), "{run}");
    assert_eq!(code & 0x9, 0x9, "P and RSVD\n{run}");
    assert_eq!(walk_code(&run, &walk_pte), code, "{run}");
    assert_tail(&run, &walk_pte, &reserved_tail("PTE", PTE_LINEAR, m, m));
    let pte = section(&run, &walk_pte)[4];
    assert!(
        pte.starts_with("  PTE   [  0] @")
            && pte.ends_with(&format!("-> reserved bits {:#x}", 1u64 << m)),
        "{run}"
    );
    assert!(
        section(&run, "cregs").contains(&cregs_line(m).as_str()),
        "{run}"
    );
    assert!(
        section(&run, &dump)[0].starts_with("saved 1 vCPU and 128 MiB of RAM"),
        "{run}"
    );

    // Second stop: the PDE, a table pointer with the bit: a fault, not "outside RAM".
    let (code, rbx, cr2) = regs_at(&run, "pde");
    assert_eq!((rbx, cr2), (PDE_LINEAR, PDE_LINEAR), "{run}");
    assert_eq!(walk_code(&run, &walk_pde), code, "{run}");
    assert_tail(&run, &walk_pde, &reserved_tail("PDE", PDE_LINEAR, m, m));
    assert_eq!(
        walk_code(&run, &walk_pde_w),
        code | 0x2,
        "a write adds W\n{run}"
    );

    snapshot_keeps_maxphyaddr(&elf, &core, m, &section(&run, &walk_pte));
    let _ = std::fs::remove_file(&core);
}

/// gdb on `--snapshot CORE EXTRA`: `walk` of both addresses and `cregs`.
fn on_snapshot(elf: &Path, core: &Path, extra: &str) -> GdbRun {
    let commands = vec![
        format!(
            "target remote | {} --snapshot {} --gdb stdio {extra}",
            vmm(),
            core.display()
        ),
        marked(&format!("walk {PTE_LINEAR:#x}")),
        marked(&format!("walk {PDE_LINEAR:#x}")),
        marked("cregs"),
        "echo ==end\\n".into(),
        "kill".into(),
    ];
    let run = gdb(Some(elf), &commands);
    run.assert_ok();
    run
}

/// The snapshot's MAXPHYADDR note, and files without it.
fn snapshot_keeps_maxphyaddr(elf: &Path, core: &Path, m: u8, live_walk: &[&str]) {
    let walk_pte = format!("walk {PTE_LINEAR:#x}");
    let walk_pde = format!("walk {PDE_LINEAR:#x}");
    let assumed = "gdbvisor: MAXPHYADDR=40 assumed (QEMU's default phys-bits): the file does not record the guest's physical-address width, which decides the reserved bits of page-table entries; --maxphyaddr N sets it";

    // Written and read back: the same walk as the live VM, nothing assumed.
    let run = on_snapshot(elf, core, "");
    assert_section(&run, &walk_pte, live_walk);
    assert!(
        section(&run, "cregs").contains(&cregs_line(m).as_str()),
        "{run}"
    );
    assert!(!run.stderr.contains("MAXPHYADDR=40 assumed"), "{run}");

    // The file as gdbvisor wrote it before the note: 40, said once on stderr.
    let old = without_maxphyaddr_note(core);
    let printed = common::run_gdbvisor(&["--snapshot", old.to_str().unwrap()]);
    printed.assert_status(0);
    assert_eq!(
        printed.stderr.lines().filter(|l| *l == assumed).count(),
        1,
        "{printed}"
    );
    let run = on_snapshot(elf, &old, "");
    run.assert_stderr_has(assumed);
    assert!(
        section(&run, "cregs").contains(&cregs_line(40).as_str()),
        "{run}"
    );
    if m >= 40 {
        // Bit m is at or above 40 too: still reserved, and the walk says why.
        assert_tail(&run, &walk_pte, &reserved_tail("PTE", PTE_LINEAR, m, 40));
        assert_tail(&run, &walk_pde, &reserved_tail("PDE", PDE_LINEAR, m, 40));
    }

    // --maxphyaddr replaces the default (no line) and the note.
    let run = on_snapshot(elf, &old, &format!("--maxphyaddr {m}"));
    assert_section(&run, &walk_pte, live_walk);
    assert!(!run.stderr.contains("assumed"), "{run}");
    let run = on_snapshot(elf, core, "--maxphyaddr 52");
    let page = (1u64 << m) | 0x90_0000;
    assert_eq!(
        section(&run, &walk_pte).last().copied(),
        Some(
            format!("linear {PTE_LINEAR:#x} -> physical {page:#x} (4 KiB page {page:#x}, -rwx)")
                .as_str()
        ),
        "{run}"
    );
    assert!(
        section(&run, &walk_pde)
            .iter()
            .any(|l| l.ends_with("is outside RAM")),
        "with 52 bits the PDE points past RAM\n{run}"
    );

    // Bad values: one clear line, status 2.
    for bad in ["53", "31", "x"] {
        let r = common::run_gdbvisor(&["--snapshot", old.to_str().unwrap(), "--maxphyaddr", bad]);
        r.assert_status(2)
            .assert_stderr_has(&format!("'{bad}' is not a MAXPHYADDR"));
    }
    let r = common::run_gdbvisor(&["--kernel", elf.to_str().unwrap(), "--maxphyaddr", "40"]);
    r.assert_status(2)
        .assert_stderr_has("'--kernel <FILE>' cannot be used with '--maxphyaddr <N>'");
    let r = common::run_gdbvisor(&["--maxphyaddr", "40"]);
    r.assert_status(2).assert_stderr_has("--snapshot <FILE>");
    let _ = std::fs::remove_file(&old);
}

/// A copy of a one-vCPU snapshot with its last note, MAXPHYADDR, cut off the PT_NOTE segment:
/// byte for byte what gdbvisor wrote before that note existed (RAM stays where it was).
fn without_maxphyaddr_note(core: &Path) -> PathBuf {
    let mut bytes = std::fs::read(core).unwrap();
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let phoff = u64_at(&bytes, 0x20) as usize;
    let phnum = usize::from(u16_at(&bytes, 0x38));
    let note = (0..phnum)
        .map(|i| phoff + 56 * i)
        .find(|&ph| u32::from_le_bytes(bytes[ph..ph + 4].try_into().unwrap()) == 4)
        .expect("a PT_NOTE");
    let (offset, size) = (u64_at(&bytes, note + 8), u64_at(&bytes, note + 32));
    // namesz 9 ("GDBVISOR\0", padded to 12), descsz 4, type 0x10a: 28 bytes.
    const NOTE: u64 = 12 + 12 + 4;
    let last = (offset + size - NOTE) as usize;
    assert_eq!(
        &bytes[last..last + 24],
        b"\x09\0\0\0\x04\0\0\0\x0a\x01\0\0GDBVISOR\0\0\0\0",
        "the MAXPHYADDR note ends the notes"
    );
    for field in [note + 32, note + 40] {
        bytes[field..field + 8].copy_from_slice(&(size - NOTE).to_le_bytes());
    }
    let old = core.with_extension("old.core");
    std::fs::write(&old, bytes).unwrap();
    old
}
