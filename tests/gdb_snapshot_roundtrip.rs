//! gdbvisor's own snapshot format, round trip: a long-mode guest (the `elf64` kernel, stopped
//! in its `int 0x80` handler) is saved with `monitor dump`, then gdbvisor serves the file with
//! no KVM, and gdb must get the same answers from both: every register (`info all-registers`:
//! general, segment, control, debug, descriptor-table, x87/SSE), every monitor view, `x/`, and
//! thousands of memory reads — RAM, unmapped pages, and mapped addresses past the end of RAM
//! (refused by both: never zeros). Also `--dump-on-crash`, `--expect-exit` and `--dump-at-exit`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::session;
use gdbvisor::snapshot::Snapshot;

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
        "monitor cpu 1 mode",
        "monitor cpu 1 sregs",
        "monitor cpu 1 cregs",
        "x/16i $pc",
        "x/8xg $sp",
        "x/1xb 0x100000",
        "p $_siginfo",
        "bt",
    ]
    .map(String::from)
    .to_vec();
    shared.extend(addrs.iter().map(|a| format!("read {a:x} 16")));
    // Physical addresses for gdb's memory packets: RAM, its last bytes, and past its end.
    shared.extend(
        [
            "monitor phys on",
            "x/2xg 0x1000",
            "x/2xg 0x7fffff8",
            "x/2xg 0x8000000",
            "monitor phys off",
        ]
        .map(String::from),
    );
    let mut live_cmds = vec![
        format!("monitor dump {}", core.display()),
        "monitor dump".into(),
        "monitor dump /nonexistent-dir/x.core".into(),
    ];
    live_cmds.extend(shared.iter().cloned());
    let vmm = env!("CARGO_BIN_EXE_gdbvisor");
    let live = session::run(
        "elf64-live",
        Some(&elf),
        &format!("{vmm} --kernel '{}' --cpus 2 --gdb stdio -S", elf.display()),
        Some(stop),
        None,
        &live_cmds,
        DEADLINE,
    );
    let saved = live.get(&live_cmds[0]);
    assert!(
        saved.starts_with("saved 2 vCPUs and 128 MiB of RAM"),
        "monitor dump said {saved:?}\n{}",
        live.log
    );
    assert_eq!(
        live.get("monitor dump"),
        "usage: dump FILE  (e.g. monitor dump /tmp/guest.core)\n"
    );
    assert!(live
        .get("monitor dump /nonexistent-dir/x.core")
        .starts_with("error: /nonexistent-dir/x.core: cannot write: No such file or directory"));
    // After the comparison, what a snapshot cannot do: run, or be written.
    let refusals = [
        "continue",
        "stepi",
        "set $rax = 1",
        "set {char}0x100000 = 1",
        "monitor catch mode on",
        "monitor hold",
        "info threads",
        "p/x $rax",
        "x/1bx 0x100000",
    ]
    .map(String::from);
    let snap_cmds: Vec<String> = shared.iter().chain(&refusals).cloned().collect();
    let snap = session::run(
        "elf64-snapshot",
        Some(&elf),
        &format!("{vmm} --snapshot '{}' --gdb stdio", core.display()),
        None,
        None,
        &snap_cmds,
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
    let cannot_run = "this is a snapshot: the guest cannot run";
    // gdb's console gets why (the stop itself is printed where to_string cannot see it).
    for c in ["continue", "stepi"] {
        assert!(snap.get(c).contains(cannot_run), "{c}: {:?}", snap.get(c));
    }
    assert!(snap
        .get("set $rax = 1")
        .starts_with("ERROR: Could not write register"));
    assert!(snap
        .get("set {char}0x100000 = 1")
        .starts_with("ERROR: Cannot access memory"));
    assert_eq!(
        snap.get("monitor catch mode on").trim(),
        format!(
            "error: 'catch' needs a live VM; this is a snapshot ({})",
            core.display()
        )
    );
    assert!(snap
        .get("monitor hold")
        .starts_with("error: 'hold' needs a live VM"));
    let threads = snap.get("info threads");
    assert!(
        threads.contains("CPU#0 [Long64, CPL0, stopped in the snapshot]")
            && threads.contains("CPU#1 [Real, CPL0, waiting for INIT/SIPI in the snapshot]"),
        "{threads}"
    );
    // Nothing changed: the refused writes left the saved state as it was.
    assert!(
        snap.get("p/x $rax").ends_with(" = 0xc0ffee\n"),
        "{}",
        snap.log
    );
    assert_eq!(
        snap.get("x/1bx 0x100000"),
        live.get("x/1xb 0x100000"),
        "the refused memory write changed the snapshot"
    );
    // (gdbvisor also says why on its stderr; gdb drops what a failing command printed while
    // its output is captured, so that line is not checked here.)
    let _ = std::fs::remove_file(&core);
}

/// The files in `dir`, sorted.
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
    // Explained later from the core as live: `monitor why` on the snapshot.
    let vmm = env!("CARGO_BIN_EXE_gdbvisor");
    let why = common::gdb::gdb(
        Some(&elf),
        &common::gdb::cmds(&[
            &format!(
                "target remote | {vmm} --snapshot {} --gdb stdio",
                core.display()
            ),
            "monitor why",
        ]),
    );
    why.assert_stderr_has("\n  ud2 (0f 0b)\n")
        .assert_stderr_has("\n#DF then #GP: shutdown (triple fault)\n");
    std::fs::remove_file(&core).unwrap();
    // The same with a gdb endpoint that nobody attached to: the run ends as without one.
    let run = common::run_gdbvisor(&[
        "--kernel",
        triple.to_str().unwrap(),
        "--gdb",
        "tcp:0",
        "--dump-on-crash",
        d,
    ]);
    run.assert_status(4);
    let names = cores(&dir);
    assert!(
        names.len() == 1 && names[0].ends_with("-triple-fault.core"),
        "{names:?}\n{run}"
    );
    std::fs::remove_file(dir.join(&names[0])).unwrap();

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

/// The first guest-physical address where two snapshots' RAM differs, or where their RAM
/// ranges do.
fn first_ram_difference(a: &Snapshot, b: &Snapshot) -> Option<String> {
    if a.ram.ranges() != b.ram.ranges() {
        return Some(format!(
            "ranges {:x?} vs {:x?}",
            a.ram.ranges(),
            b.ram.ranges()
        ));
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for (start, len) in a.ram.ranges() {
        for at in (start..start + len).step_by(x.len()) {
            let n = (start + len - at).min(x.len() as u64) as usize;
            a.ram.read(at, &mut x[..n]).unwrap();
            b.ram.read(at, &mut y[..n]).unwrap();
            if let Some(i) = (0..n).find(|&i| x[i] != y[i]) {
                let addr = at + i as u64;
                return Some(format!("{addr:#x}: {:#04x} vs {:#04x}", x[i], y[i]));
            }
        }
    }
    None
}

/// `--dump-at-exit`: the guest's final state, saved whatever ended the run, with or without
/// gdb. `mb2-long` depends on nothing but its own code, so its final state alone and under gdb
/// (breakpoints planted in the 32- and 64-bit code it runs) must be the same, memory byte for
/// byte: no debugger 0xCC left behind.
#[test]
fn dump_at_exit_saves_the_same_final_state_alone_and_under_gdb() {
    if !common::kvm_available("dump at exit") {
        return;
    }
    let elf = common::kernel_elf("mb2-long");
    let kernel = elf.to_str().unwrap();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let alone = tmp.join(format!("{}-mb2-long-alone.core", std::process::id()));
    let under_gdb = tmp.join(format!("{}-mb2-long-gdb.core", std::process::id()));
    let _ = std::fs::remove_file(&under_gdb);
    let run = common::run_gdbvisor(&[
        "--kernel",
        kernel,
        "-m",
        "16M",
        "--dump-at-exit",
        alone.to_str().unwrap(),
    ]);
    run.assert_status(1)
        .assert_stdout_line("mb2-long: done")
        .assert_stderr_has(&format!("gdbvisor: state saved to {} (", alone.display()));
    // Without gdb the file prints its registers: long mode, RIP past the `out` that ended it.
    let shown = common::run_gdbvisor(&["--snapshot", alone.to_str().unwrap()]);
    shown.assert_status(0);
    let rip = common::symbol(&elf, "debug_exit64") + 2;
    assert!(
        shown.stdout.contains("vCPU 0: Long64")
            && shown.stdout.contains(&format!("rip={rip:016x}")),
        "{shown}"
    );
    // gdb on the file sees what the kernel computed, and its code.
    let vmm = env!("CARGO_BIN_EXE_gdbvisor");
    let on_file = common::gdb::gdb(
        Some(&elf),
        &common::gdb::cmds(&[
            &format!(
                "target remote | {vmm} --snapshot {} --gdb stdio",
                alone.display()
            ),
            "p/x *(long *)&result",
            "x/i sum_to",
            "kill",
        ]),
    );
    on_file
        .assert_ok()
        .assert_stdout_has("$1 = 0x37")
        .assert_stdout_has("<sum_to>:\txor    %eax,%eax");

    let under = common::gdb::gdb(
        Some(&elf),
        &common::gdb::cmds(&[
            &common::gdb::stdio_target(
                &elf,
                &format!("-m 16M --dump-at-exit {}", under_gdb.display()),
            ),
            "break enter_long_mode",
            "break kmain",
            "break sum_to",
            "continue",
            "continue",
            "continue",
            "continue",
        ]),
    );
    under
        .assert_ok()
        .assert_stdout_has("Breakpoint 3, sum_to ()")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    // gdb waits for the VMM it started to end (the file is complete), but drops what the VMM
    // writes on stderr once the connection is closed: the file itself is the proof.
    let a = Snapshot::open(&alone).expect("the run alone saved a snapshot");
    let b = Snapshot::open(&under_gdb).expect("the run under gdb saved a snapshot");
    assert_eq!(
        first_ram_difference(&a, &b),
        None,
        "final memory alone vs under gdb"
    );
    let shown_b = common::run_gdbvisor(&["--snapshot", under_gdb.to_str().unwrap()]);
    assert_eq!(
        shown.stdout, shown_b.stdout,
        "final registers alone vs under gdb"
    );
    std::fs::remove_file(&alone).unwrap();
    std::fs::remove_file(&under_gdb).unwrap();
}

/// `--dump-at-exit` for the other ends: a halt (the demo) and a triple fault, where
/// `--dump-on-crash` saves the same state too.
#[test]
fn dump_at_exit_after_a_halt_and_beside_dump_on_crash() {
    if !common::kvm_available("dump at exit, halt and triple fault") {
        return;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join(format!("{}-at-exit-dumps", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let at_exit = dir.join("end.core");
    let end = at_exit.to_str().unwrap();

    let run = common::run_gdbvisor(&["demo", "-m", "16M", "--dump-at-exit", end]);
    run.assert_status(0)
        .assert_stderr_has(&format!("gdbvisor: state saved to {end} ("));
    let halt = common::symbol(&common::kernel_elf("modes-halt"), "halt_forever");
    let shown = common::run_gdbvisor(&["--snapshot", end]);
    assert!(
        shown.stdout.contains("vCPU 0: Long64, halted")
            && shown.stdout.contains(&format!("rip={:016x}", halt + 1)),
        "{shown}"
    );
    std::fs::remove_file(&at_exit).unwrap();

    let triple = common::kernel("triple");
    let args = ["--kernel", triple.to_str().unwrap(), "-m", "16M"];
    let d = dir.to_str().unwrap();
    let run =
        common::run_gdbvisor(&[&args[..], &["--dump-on-crash", d, "--dump-at-exit", end]].concat());
    run.assert_status(4);
    let names = cores(&dir);
    assert_eq!(names.len(), 2, "{names:?}\n{run}");
    let crash = names
        .iter()
        .find(|n| n.ends_with("-triple-fault.core"))
        .unwrap();
    let a = Snapshot::open(&dir.join(crash)).unwrap();
    let b = Snapshot::open(&at_exit).unwrap();
    assert_eq!(first_ram_difference(&a, &b), None);
    assert_eq!(a.cpus[0].regs.rip, b.cpus[0].regs.rip);
    let _ = std::fs::remove_dir_all(&dir);
}
