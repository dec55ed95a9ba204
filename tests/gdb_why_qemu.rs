//! `monitor why` for the deaths this host's KVM cannot run: 32-bit paging and PAE.
//!
//! QEMU TCG boots `death32-paging-pf` or `death32-pae-pf` (test-kernels/deaths32.S) to a hardware
//! breakpoint at `fault_here`, the instruction whose `#PF` starts the chain, and writes a
//! `dump-guest-memory` file there (QEMU's state after a TCG triple fault is not one the CPU would
//! leave, so the dump is taken at the first fault's instruction instead). gdbvisor opens the dump
//! (`--snapshot FILE --gdb stdio`) and `monitor why` explains, from that state, the chain QEMU's
//! `-d int` log shows for the kernel (in the kernel's header): `#PF` at `fault_here`, `#GP`
//! delivering it, `#DF`, `#GP` delivering that, shutdown. The lines must equal
//! `tests/deaths/<name>.snapshot.expected` (`GDBVISOR_BLESS_DEATHS=1` writes them).
//!
//! Without `qemu-system-i386` or `gdb` the tests print `SKIPPED` and pass, except under
//! `CI=true`, where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::session;

const RAM_MIB: u64 = 8;
const DEADLINE: Duration = Duration::from_secs(120);

/// The `monitor why` lines gdbvisor gives on QEMU's dump of `name` stopped at `fault_here`.
fn why_from_qemu_dump(test: &str, name: &str) -> Option<Vec<String>> {
    if !common::tool_available(test, "qemu-system-i386", "qemu-system-x86")
        || !common::tool_available(test, "gdb", "gdb")
    {
        return None;
    }
    let elf = common::kernel_elf(name);
    let stop = common::symbol(&elf, "fault_here");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dump = tmp.join(format!("{}-{name}.why.core", std::process::id()));
    let qmp = dump.with_extension("qmp");
    for stale in [&dump, &qmp] {
        let _ = std::fs::remove_file(stale);
    }
    let qemu_target = format!(
        "qemu-system-i386 -accel tcg -cpu qemu32 -kernel '{}' -m {RAM_MIB}M -display none \
         -vga none -serial null -monitor none -qmp unix:'{}',server=on,wait=off -no-reboot \
         -S -gdb stdio",
        elf.display(),
        qmp.display()
    );
    let dump_cmd = format!("hmp dump-guest-memory {}", dump.display());
    let q = session::run(
        &format!("{name}-why-qemu"),
        Some(&elf),
        &qemu_target,
        Some(stop),
        Some(&qmp),
        std::slice::from_ref(&dump_cmd),
        DEADLINE,
    );
    assert!(
        q.get(&dump_cmd).trim().is_empty(),
        "{name}: dump-guest-memory said {:?}\n{}",
        q.get(&dump_cmd),
        q.log
    );
    let ours_target = format!(
        "{} --snapshot '{}' --gdb stdio",
        env!("CARGO_BIN_EXE_gdbvisor"),
        dump.display()
    );
    let why = "monitor why".to_string();
    let g = session::run(
        &format!("{name}-why-gdbvisor"),
        Some(&elf),
        &ours_target,
        None,
        None,
        std::slice::from_ref(&why),
        DEADLINE,
    );
    let _ = std::fs::remove_file(&dump);
    Some(g.get(&why).lines().map(str::to_string).collect())
}

fn expected_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/deaths")
        .join(format!("{name}.snapshot.expected"))
}

fn check(test: &str, name: &str, chain: &[&str]) {
    let Some(lines) = why_from_qemu_dump(test, name) else {
        return;
    };
    let path = expected_path(name);
    if std::env::var_os("GDBVISOR_BLESS_DEATHS").is_some() {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    // QEMU's chain, in the explanation's words, whatever the file says.
    let text = lines.join("\n");
    let mut at = 0;
    for step in chain {
        let found = text[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{name}: {step:?} missing (in order) from:\n{text}"));
        at += found + step.len();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (GDBVISOR_BLESS_DEATHS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        text + "\n",
        expected,
        "{name}: monitor why on QEMU's dump differs from {}",
        path.display()
    );
}

#[test]
fn why_explains_a_32_bit_paging_death_from_a_qemu_dump() {
    check(
        "why_explains_a_32_bit_paging_death_from_a_qemu_dump",
        "death32-paging-pf",
        &[
            "PDE for linear 0x800000 is not present",
            "-> #PF (page fault), error code 0x0000",
            "-> #GP (general protection), error code 0x73",
            "#PF then #GP: double fault",
            "-> #GP (general protection), error code 0x43",
            "shutdown (triple fault)",
        ],
    );
}

#[test]
fn why_explains_a_pae_paging_death_from_a_qemu_dump() {
    check(
        "why_explains_a_pae_paging_death_from_a_qemu_dump",
        "death32-pae-pf",
        &[
            "PDPTE for linear 0x40000000 is not present",
            "-> #PF (page fault), error code 0x0000",
            "-> #GP (general protection), error code 0x73",
            "#PF then #GP: double fault",
            "-> #GP (general protection), error code 0x43",
            "shutdown (triple fault)",
        ],
    );
}
