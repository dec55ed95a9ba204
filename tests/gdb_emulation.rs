//! An instruction this host's KVM cannot emulate ends the run with the instruction bytes and RIP
//! (status 6), and stops gdb with SIGILL; where KVM runs it, the guest simply goes on.

mod common;

use common::gdb::{cmds, gdb, stdio_target};
use common::*;

/// Real mode at 0x7C00: `popcnt ax, ax; mov al, 0; out 0xF4, al` (debug-exit value 0, status 1).
const POPCNT_THEN_EXIT: [u8; 8] = [0xF3, 0x0F, 0xB8, 0xC0, 0xB0, 0x00, 0xE6, 0xF4];

fn popcnt_fails_here() -> bool {
    run_gdbvisor(&["doctor"])
        .stdout
        .contains("CPUID popcnt instructions: NOT SUPPORTED")
}

#[test]
fn an_unemulated_instruction_stops_with_its_bytes_and_rip() {
    if !kvm_available("emulation failure") {
        return;
    }
    let image = temp_file("popcnt", &boot_sector(&POPCNT_THEN_EXIT));
    let run = run_gdbvisor(&["--kernel", image.to_str().unwrap()]);
    if popcnt_fails_here() {
        run.assert_status(6)
            .assert_stderr_has("suberror 1 (emulation failure)")
            .assert_stderr_has("rip 0x7c00 (linear 0x7c00), bytes at rip: f3 0f b8 c0 b0 00 e6 f4");
    } else {
        run.assert_status(1);
    }
}

#[test]
fn gdb_sees_the_failure_as_sigill() {
    if !kvm_available("emulation failure in gdb") || !popcnt_fails_here() {
        return;
    }
    let image = temp_file("popcnt-gdb", &boot_sector(&POPCNT_THEN_EXIT));
    let mut commands = vec![stdio_target(&image, "")];
    commands.extend(cmds(&["continue", "p/x $pc", "kill"]));
    let run = gdb(None, &commands);
    run.assert_ok()
        .assert_stdout_has("Program received signal SIGILL")
        .assert_stdout_has("$1 = 0x7c00")
        .assert_stderr_has("InternalError");
}

#[test]
fn fwait_is_completed_by_the_vmm() {
    if !kvm_available("fwait") {
        return;
    }
    // cli; fwait; mov al, 0; out 0xF4, al — KVM-PVM cannot emulate FWAIT; gdbvisor steps over
    // it (no x87 exception is pending), hardware just runs it.
    let image = temp_file("fwait", &boot_sector(&[0xFA, 0x9B, 0xB0, 0x00, 0xE6, 0xF4]));
    run_gdbvisor(&["--kernel", image.to_str().unwrap()]).assert_status(1);
}
