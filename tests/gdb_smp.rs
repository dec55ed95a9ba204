//! SMP bring-up: the `smp` kernel starts its second CPU with INIT/SIPI through the local APIC;
//! KVM's in-kernel LAPIC delivers them to a vCPU that waits inside KVM_RUN. gdb then lists both
//! CPUs, the AP halted in its real-mode trampoline.

mod common;

use common::gdb::*;
use common::{kvm_available, run_gdbvisor};

#[test]
fn the_boot_cpu_starts_the_second_with_init_sipi() {
    if !kvm_available("smp run") {
        return;
    }
    run_gdbvisor(&["--kernel", kernel("smp").to_str().unwrap(), "--cpus", "2"])
        .assert_status(1)
        .assert_stderr_has("2 vCPUs")
        .assert_stdout_line("smp: hello from an AP in real mode")
        .assert_stdout_line("smp: AP up, APIC ID 0x1");
}

/// The AP halts for good (cli; hlt) while the BSP works on: the run ends only when the BSP
/// does, with its exit status — not at the AP's halt. The same with gdb attached then
/// detached is covered by the transparency tests; here without gdb and with a gdb endpoint
/// that nobody uses.
#[test]
fn an_ap_halting_for_good_does_not_end_the_run() {
    if !kvm_available("smp ap halts") {
        return;
    }
    let image = kernel("smp-bsp-works");
    for extra in [&[][..], &["--gdb", "tcp:127.0.0.1:0"][..]] {
        let mut args = vec!["--kernel", image.to_str().unwrap(), "--cpus", "2"];
        args.extend(extra);
        let run = run_gdbvisor(&args);
        run.assert_status(1)
            .assert_stdout_line("smp: AP up, APIC ID 0x1");
        let working = run
            .stdout
            .lines()
            .filter(|l| *l == "smp: bsp still working")
            .count();
        assert_eq!(working, 3, "{run}");
        assert!(!run.stderr.contains("guest halted"), "{run}");
    }
}

/// A BSP-only kernel with spare vCPUs: they wait for INIT/SIPI for ever, and the run still
/// ends when the BSP halts, saying which never started; the VM is saved at that end too.
#[test]
fn vcpus_never_started_do_not_keep_the_run_alive() {
    if !kvm_available("smp never started") {
        return;
    }
    let dump = temp_path("never-started.core");
    run_gdbvisor(&["--cpus", "3", "--dump-at-exit", dump.to_str().unwrap()])
        .assert_status(0)
        .assert_stderr_has("gdbvisor: vCPU 1, 2 never started (still waiting for INIT/SIPI)")
        .assert_stderr_has(
            "guest halted (every vCPU that started halted with interrupts disabled)",
        );
    assert!(dump.metadata().is_ok_and(|m| m.len() > 0), "no dump");
    let _ = std::fs::remove_file(dump);
}

#[test]
fn without_a_second_cpu_nobody_answers() {
    if !kvm_available("smp alone") {
        return;
    }
    run_gdbvisor(&["--kernel", kernel("smp").to_str().unwrap()])
        .assert_status(33)
        .assert_stdout_line("smp: FAIL no AP");
}

#[test]
fn gdb_lists_both_cpus_after_the_ap_started() {
    if !kvm_available("smp gdb") {
        return;
    }
    let elf = elf("smp");
    let run = gdb(
        Some(&elf),
        &[
            stdio_target(&kernel("smp"), "--cpus 2"),
            "echo ==before\\n".into(),
            "info threads".into(),
            "break smp_ap_up".into(),
            "continue".into(),
            "echo ==after\\n".into(),
            "info threads".into(),
            "thread 2".into(),
            "p/x $pc".into(),
            "kill".into(),
        ],
    );
    run.assert_ok();
    let before = run.after_marker("==before");
    assert!(
        before.contains("Thread 1.2 (CPU#1 [Real, CPL0, waiting for INIT/SIPI])"),
        "{run}"
    );
    let after = run.after_marker("==after");
    assert!(
        after.contains("Thread 1.1 (CPU#0 [Protected32, CPL0, stopped]) smp_ap_up"),
        "{run}"
    );
    // The AP halted in its trampoline at 0x7000 (real mode, CS=0x0700).
    assert!(
        after.contains("Thread 1.2 (CPU#1 [Real, CPL0, halted])"),
        "{run}"
    );
    assert!(after.contains("$1 = 0x70"), "{run}");
}
