//! gdbvisor's own snapshot format, round trip: a long-mode guest (the `elf64` kernel, stopped
//! in its `int 0x80` handler) is saved with `monitor dump`, then gdbvisor serves the file with
//! no KVM, and gdb must get the same answers from both: every register (`info all-registers`:
//! general, segment, control, debug, descriptor-table, x87/SSE), every monitor view, `x/`, and
//! thousands of memory reads — RAM, unmapped pages, and mapped addresses past the end of RAM
//! (refused by both: never zeros). Also `--dump-on-crash` and `--expect-exit`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::session;

const DEADLINE: Duration = Duration::from_secs(120);

/// Linear addresses read (16 bytes each) from the live VM and from its snapshot.
fn addresses() -> Vec<u64> {
    // 0..144 MiB every 60 KiB: RAM (128 MiB), then pages mapped by the 4 GiB identity map but
    // past RAM.
    let mut out: Vec<u64> = (0..0x900_0000u64)
        .step_by(0xf000)
        .map(|a| a + 0x38)
        .collect();
    // Reads that end exactly at, or run past, the end of RAM and page ends.
    out.extend([0x7ff_fff0, 0x7ff_fff8, 0xfff8, 0x1_0000_0000 - 8]);
    let mut seed = 0x853c_49e6_748f_ea9bu64;
    for i in 0..1000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Random addresses anywhere (mostly unmapped or non-canonical), and in the low 128 MiB.
        out.push(if i % 2 == 0 { seed } else { seed & 0x7ff_fff0 });
    }
    out
}

#[test]
fn dump_of_a_long_mode_guest_serves_what_the_live_vm_does() {
    if !common::kvm_available("snapshot round trip") {
        return;
    }
    let elf = common::kernel_elf("elf64");
    let stop = common::symbol(&elf, "int80_handler");
    let core = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-elf64-roundtrip.core", std::process::id()));
    let _ = std::fs::remove_file(&core);
    let addrs = addresses();
    let mut shared: Vec<String> = [
        "info all-registers",
        "monitor mode",
        "monitor cregs",
        "monitor sregs",
        "monitor dregs",
        "monitor gdt",
        "monitor idt",
        "monitor ldt",
        "monitor tss",
        "monitor pt",
        "monitor walk 0x100000 w",
        "monitor walk 0x200000000",
        "monitor walk ds:0x104000",
        "monitor p2v 0xb8000",
        "monitor xp 0x100000 64",
        "monitor xp 0x7fffff0 32",
        "monitor msr 0xc0000080",
        "monitor vga",
        "monitor arch",
        "x/16i $pc",
        "x/8xg $sp",
        "p $_siginfo",
        "bt",
    ]
    .map(String::from)
    .to_vec();
    shared.extend(addrs.iter().map(|a| format!("read {a:x} 16")));
    let mut live_cmds = vec![format!("monitor dump {}", core.display())];
    live_cmds.extend(shared.iter().cloned());
    let vmm = env!("CARGO_BIN_EXE_gdbvisor");
    let live = session::run(
        "elf64-live",
        Some(&elf),
        &format!("{vmm} --kernel '{}' --gdb stdio -S", elf.display()),
        Some(stop),
        None,
        &live_cmds,
        DEADLINE,
    );
    let saved = live.get(&live_cmds[0]);
    assert!(
        saved.starts_with("saved 1 vCPU and 128 MiB of RAM"),
        "monitor dump said {saved:?}\n{}",
        live.log
    );
    let snap = session::run(
        "elf64-snapshot",
        Some(&elf),
        &format!("{vmm} --snapshot '{}' --gdb stdio", core.display()),
        None,
        None,
        &shared,
        DEADLINE,
    );
    let mut differ = Vec::new();
    let (mut readable, mut refused) = (0, 0);
    for c in &shared {
        let (a, b) = (live.get(c), snap.get(c));
        if c.starts_with("read ") {
            if a.trim() == "-" {
                refused += 1;
            } else {
                readable += 1;
            }
        }
        if a != b {
            differ.push(format!("{c}:\n  live:     {a:?}\n  snapshot: {b:?}"));
        }
    }
    eprintln!(
        "elf64 round trip: {} commands compared ({} reads: {readable} readable, {refused} refused by both), {} differ",
        shared.len(),
        addrs.len(),
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "{} answers differ between the live VM and its snapshot:\n{}",
        differ.len(),
        differ[..differ.len().min(10)].join("\n")
    );
    let registers = live.get("info all-registers");
    assert!(
        registers.contains("rip") && registers.contains("k_gs_base") && registers.contains("xmm15"),
        "{registers}"
    );
    assert!(
        readable > 2000 && refused > 500,
        "too few reads of each kind"
    );
    assert!(live.get("monitor xp 0x7fffff0 32").contains("outside RAM"));
    let _ = std::fs::remove_file(&core);
}

/// The cores `--dump-on-crash DIR` left for this process's child `pid`.
fn cores(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn dump_on_crash_saves_triple_faults_and_unexpected_exits() {
    if !common::kvm_available("dump on crash") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-crash-dumps", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();

    // A triple fault: status 4 as always, and a core named after it.
    let triple = common::kernel("triple");
    let run = common::run_gdbvisor(&["--kernel", triple.to_str().unwrap(), "--dump-on-crash", d]);
    run.assert_status(4);
    let names = cores(&dir);
    assert_eq!(names.len(), 1, "{names:?}\n{run}");
    assert!(
        names[0].starts_with("gdbvisor-") && names[0].ends_with("-triple-fault.core"),
        "{names:?}"
    );
    let core = dir.join(&names[0]);
    run.assert_stderr_has(&format!("gdbvisor: state saved to {}", core.display()));
    // The snapshot holds the state KVM reported: protected mode at `triple_fault_here`.
    let elf = common::kernel_elf("triple");
    let here = common::symbol(&elf, "triple_fault_here");
    let shown = common::run_gdbvisor(&["--snapshot", core.to_str().unwrap()]);
    shown.assert_status(0);
    assert!(
        shown.stdout.contains("vCPU 0: Protected32")
            && shown.stdout.contains(&format!("rip={here:016x}")),
        "{shown}"
    );
    std::fs::remove_file(&core).unwrap();

    // isa-debug-exit: status 1 (`tiny` writes 0). Expected: nothing saved.
    let tiny = common::kernel("tiny");
    let tiny = tiny.to_str().unwrap();
    let args = ["--kernel", tiny, "--dump-on-crash", d, "--expect-exit"];
    let run = common::run_gdbvisor(&[&args[..], &["1"]].concat());
    run.assert_status(1);
    assert!(cores(&dir).is_empty(), "{:?}\n{run}", cores(&dir));
    // Another status expected: saved, exit status unchanged. The `out` that ended the run is
    // complete in the saved state: RIP is past it (0x7c02 + 2).
    let run = common::run_gdbvisor(&[&args[..], &["3"]].concat());
    run.assert_status(1);
    let names = cores(&dir);
    assert!(
        names.len() == 1 && names[0].ends_with("-exit-1.core"),
        "{names:?}\n{run}"
    );
    let shown = common::run_gdbvisor(&["--snapshot", dir.join(&names[0]).to_str().unwrap()]);
    assert!(
        shown.stdout.contains("vCPU 0: Real") && shown.stdout.contains("rip=0000000000007c04"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
