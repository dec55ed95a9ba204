//! Which register description gdb is served. `--gdb-arch auto` (the default) serves that of the
//! file gdb loads: the `mb2-long` kernel is an ELF64 (gdb loads it as x86-64) whose multiboot2
//! entry runs in 32-bit mode, the layout most hobby kernels have. A description following the
//! CPU mode there (i386) makes gdb fail; the kernel's own (x86-64) works from the first
//! instruction, and reconnecting with `monitor arch` gives 32-bit disassembly when wanted.

mod common;

use std::path::PathBuf;

use common::gdb::*;

fn helper_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gdb-scripts/gdbvisor.py")
}

/// The instruction line `x/i` printed for `<symbol+offset>` (the `=> ` marker stripped).
fn insn<'a>(text: &'a str, at: &str) -> &'a str {
    let tag = format!("<{at}>:");
    text.lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no instruction at {at} in:\n{text}"))
}

#[test]
fn elf64_kernel_entered_in_32_bit_mode_works_with_plain_gdb() {
    if !common::kvm_available("mb2-long with plain gdb") {
        return;
    }
    let elf = elf("mb2-long");
    let run = gdb_on(
        &elf,
        &[
            "info registers rip",
            "echo MARK-ENTRY\\n",
            "x/3i $pc",
            "break sum_to",
            "continue",
            "echo MARK-SUM\\n",
            "x/2i $pc",
            "p $rdi",
            "continue",
        ],
    );
    run.assert_ok()
        .assert_no_gdb_warning()
        .assert_stderr_has(
            "gdbvisor: gdb register description x86-64 (from the ELF64 kernel; --gdb-arch to change)",
        )
        .assert_stdout_has("Breakpoint 1, sum_to ()")
        .assert_stdout_has("$1 = 10")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    assert!(!run.stderr.contains("Truncated register"), "{run}");
    assert!(run.line_starting("rip").contains("<_start>"), "{run}");
    // 32-bit code under the x86-64 description is decoded as 64-bit code: the absolute
    // `mov %ebx,boot_info` becomes RIP-relative.
    let entry = run.after_marker("MARK-ENTRY");
    assert!(insn(entry, "_start+6").contains("(%rip)"), "{run}");
    let sum = run.after_marker("MARK-SUM");
    assert!(insn(sum, "sum_to+2").contains("test   %rdi,%rdi"), "{run}");
}

/// What `auto` replaced: the description of the CPU's mode at attach (i386 here) is one gdb
/// cannot use with the ELF64 it loaded.
#[test]
fn the_cpu_modes_description_fails_on_that_kernel() {
    if !common::kvm_available("mb2-long with --gdb-arch mode") {
        return;
    }
    let elf = elf("mb2-long");
    let run = gdb(
        Some(&elf),
        &cmds(&[&stdio_target(&elf, "--gdb-arch mode"), "info registers rip"]),
    );
    assert!(run.stderr.contains("Truncated register"), "{run}");
}

/// `--gdb-arch auto` for each kind of file, printed once at start-up; an explicit choice prints
/// nothing. (Without gdb on the other end of stdin the VMM ends at once.)
#[test]
fn auto_picks_the_description_of_the_file_gdb_loads() {
    if !common::kvm_available("gdb-arch auto") {
        return;
    }
    let said = |args: &[&str]| {
        let mut all = vec!["--gdb", "stdio", "-S"];
        all.extend(args);
        let run = common::run_gdbvisor(&all);
        run.stderr
            .lines()
            .find(|l| l.contains("gdb register description"))
            .map(str::to_string)
    };
    let with_kernel = |name: &str| said(&["--kernel", kernel(name).to_str().unwrap()]);
    let line = |layout: &str, from: &str| {
        Some(format!(
            "gdbvisor: gdb register description {layout} (from {from}; --gdb-arch to change)"
        ))
    };
    assert_eq!(with_kernel("mb2-long"), line("x86-64", "the ELF64 kernel"));
    assert_eq!(with_kernel("elf64"), line("x86-64", "the ELF64 kernel"));
    assert_eq!(with_kernel("mbinfo"), line("i386", "the ELF32 kernel"));
    assert_eq!(with_kernel("pvhinfo"), line("i386", "the ELF32 kernel"));
    assert_eq!(
        with_kernel("mbinfo-aout"),
        line(
            "i386",
            "the multiboot1 kernel's entry in 32-bit mode: it has no ELF header"
        )
    );
    assert_eq!(
        with_kernel("modes"),
        line(
            "i8086",
            "the flat kernel's entry in real mode: it has no ELF header"
        )
    );
    // The demo boots a flat image, but gdb loads its ELF64.
    assert_eq!(
        said(&[]),
        line(
            "x86-64",
            "the demo's ELF, which `gdbvisor demo --write-elf` writes"
        )
    );
    let modes = kernel("modes");
    assert_eq!(
        said(&["--kernel", modes.to_str().unwrap(), "--gdb-arch", "i386"]),
        None
    );
}

/// The README's way to see 32-bit code as such under an x86-64 description: reconnect with an
/// i386 one (`monitor arch i386`), and back.
#[test]
fn reconnecting_with_monitor_arch_switches_the_disassembly() {
    if !common::kvm_available("monitor arch reconnect") {
        return;
    }
    let elf = elf("mb2-long");
    let (_vmm, port) = Vmm::held_on_tcp(&elf, &[]);
    let remote = format!("target remote 127.0.0.1:{port}");
    let reconnect = |arch: &str, gdb_arch: &str| {
        vec![
            "monitor hold".to_string(),
            format!("monitor arch {arch}"),
            "disconnect".into(),
            "unset tdesc filename".into(),
            format!("set architecture {gdb_arch}"),
            remote.clone(),
        ]
    };
    let mut commands = vec![
        "set remotetimeout 30".to_string(),
        remote.clone(),
        "echo MARK-64\\n".into(),
        "x/3i $pc".into(),
    ];
    commands.extend(reconnect("i386", "i386"));
    commands.extend(cmds(&[
        "echo MARK-32\\n",
        "x/3i $pc",
        "break kmain",
        "continue",
    ]));
    commands.extend(reconnect("x86-64", "i386:x86-64"));
    commands.extend(cmds(&["echo MARK-BACK\\n", "x/2i $pc", "kill"]));
    let run = gdb(Some(&elf), &commands);
    run.assert_ok()
        .assert_no_gdb_warning()
        .assert_stdout_has("Breakpoint 1, kmain ()");
    assert!(
        insn(run.after_marker("MARK-64"), "_start+6").contains("(%rip)"),
        "{run}"
    );
    let as_32 = insn(run.after_marker("MARK-32"), "_start+6");
    assert!(
        as_32.contains("mov    %ebx,0x") && !as_32.contains("(%rip)"),
        "{run}"
    );
    assert!(
        insn(run.after_marker("MARK-BACK"), "kmain+1").contains("(%rip),%rsi"),
        "{run}"
    );
}

/// Mode following on the same kernel: `gdbvisor-connect` asks for the description of the CPU's
/// mode (i386 at the 32-bit entry, not the kernel's x86-64) and reconnects as x86-64 once the
/// kernel is in long mode.
#[test]
fn gdbvisor_connect_follows_the_mode_of_an_elf64_kernel_entered_in_32_bit_mode() {
    if !common::kvm_available("gdbvisor-connect on mb2-long") {
        return;
    }
    let elf = elf("mb2-long");
    let (_vmm, port) = Vmm::held_on_tcp(&elf, &[]);
    let run = gdb(
        Some(&elf),
        &[
            "set remotetimeout 30".into(),
            format!("source {}", helper_script().display()),
            format!("gdbvisor-connect 127.0.0.1:{port}"),
            "echo MARK-32\\n".into(),
            "x/3i $pc".into(),
            "break kmain".into(),
            "continue".into(),
            "echo MARK-64\\n".into(),
            "x/2i $pc".into(),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_stdout_has(&format!(
            "gdbvisor: connected to 127.0.0.1:{port} as i386\n"
        ))
        .assert_stdout_has("gdbvisor: CPU mode changed: reconnecting as i386:x86-64 (was i386)")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    let as_32 = insn(run.after_marker("MARK-32"), "_start+6");
    assert!(!as_32.contains("(%rip)"), "{run}");
    assert!(
        insn(run.after_marker("MARK-64"), "kmain+1").contains("(%rip),%rsi"),
        "{run}"
    );
}
