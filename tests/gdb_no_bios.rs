//! gdbvisor has no BIOS: a real-mode interrupt through an empty IVT vector stops with one line
//! and status 8 (alone), or as SIGILL on the interrupt instruction (under gdb); kernels with
//! their own IVT entries are unaffected. The `nobios-*` test kernels, on real KVM and gdb 13.

mod common;

use common::gdb::*;
use common::symbol;

/// Runs `kernel` alone under the test deadline: (status, stdout, stderr).
fn run_alone(kernel_name: &str, extra: &[&str]) -> (i32, String, String) {
    let image = kernel(kernel_name);
    let mut args = vec!["--kernel", image.to_str().unwrap()];
    args.extend(extra);
    let mut vmm = Vmm::start(&args);
    let status = vmm.wait_exit();
    let stderr = vmm.stderr.lock().unwrap().clone();
    (status, vmm.stdout_text.clone(), stderr)
}

/// Asserts a no-BIOS end: status 8, the one line naming `what` and the CS:IP of `at`.
fn assert_no_bios_end(kernel_name: &str, what: &str, at: &str) {
    let (status, stdout, stderr) = run_alone(kernel_name, &[]);
    let ip = symbol(&elf(kernel_name), at);
    let line = format!("gdbvisor: {what} (CS:IP 0000:{ip:04x})\n");
    let transcript = format!("status {status}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(status, 8, "{transcript}");
    assert!(stdout.contains("nobios: real mode\n"), "{transcript}");
    assert!(!stdout.contains("nobios: done"), "{transcript}");
    assert!(stderr.contains(&line), "no line {line:?}\n{transcript}");
}

#[test]
fn bios_teletype_int10_stops_with_status_8() {
    if !common::kvm_available("bios_teletype_int10_stops_with_status_8") {
        return;
    }
    assert_no_bios_end(
        "nobios-int10",
        "real-mode int 0x10 (AH=0x0e) but no BIOS: IVT[0x10] was empty",
        "int10_here",
    );
}

#[test]
fn timer_irq_through_an_empty_vector_says_vector_8() {
    if !common::kvm_available("timer_irq_through_an_empty_vector_says_vector_8") {
        return;
    }
    // The return address is the instruction after `hlt`, which the IRQ interrupted.
    assert_no_bios_end(
        "nobios-irq",
        "real-mode vector 8 (IRQ 0 or #DF) but no BIOS: IVT[0x08] was empty",
        "after_hlt",
    );
}

#[test]
fn divide_error_through_an_empty_vector_says_vector_0() {
    if !common::kvm_available("divide_error_through_an_empty_vector_says_vector_0") {
        return;
    }
    // #DE is a fault: CS:IP is the `div` itself.
    assert_no_bios_end(
        "nobios-de",
        "real-mode vector 0 (#DE) but no BIOS: IVT[0x00] was empty",
        "de_here",
    );
}

#[test]
fn a_kernels_own_ivt_entry_is_kept_and_used() {
    if !common::kvm_available("a_kernels_own_ivt_entry_is_kept_and_used") {
        return;
    }
    let (status, stdout, stderr) = run_alone("nobios-own-ivt", &[]);
    let transcript = format!("status {status}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(status, 1, "{transcript}");
    assert!(
        stdout.contains("nobios: real mode\nnobios: own int 0x10 handler\nnobios: done\n"),
        "{transcript}"
    );
    assert!(!stderr.contains("no BIOS"), "{transcript}");
}

#[test]
fn dump_on_crash_saves_a_no_bios_stop() {
    if !common::kvm_available("dump_on_crash_saves_a_no_bios_stop") {
        return;
    }
    let dir = temp_path("no-bios-dumps");
    std::fs::create_dir_all(&dir).unwrap();
    let (status, _, stderr) = run_alone(
        "nobios-int10",
        &["-m", "2", "--dump-on-crash", dir.to_str().unwrap()],
    );
    assert_eq!(status, 8, "{stderr}");
    let saved: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("gdbvisor-") && f.ends_with("-no-bios.core"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}\n{stderr}");
    assert!(stderr.contains("state saved to"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `info registers eip` of a gdb run, in order.
fn eips(run: &GdbRun) -> Vec<u64> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("eip "))
        .map(|l| {
            let value = l.split_whitespace().nth(1).unwrap();
            u64::from_str_radix(value.trim_start_matches("0x"), 16).unwrap()
        })
        .collect()
}

#[test]
fn int10_under_gdb_is_sigill_on_the_int_and_can_be_skipped() {
    if !common::kvm_available("int10_under_gdb_is_sigill_on_the_int_and_can_be_skipped") {
        return;
    }
    let name = "nobios-int10";
    let int10 = symbol(&elf(name), "int10_here");
    let after = symbol(&elf(name), "after_int10");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel(name), ""),
            "continue".into(),
            "x/i $pc".into(),
            "info registers eip".into(),
            // Nothing filled the vector: the int runs again and stops again.
            "continue".into(),
            "info registers eip".into(),
            format!("set $pc = {after:#x}"),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_stdout_has("Program received signal SIGILL, Illegal instruction.")
        .assert_stdout_has(&format!("=> {int10:#x}:\tint    $0x10"))
        .assert_stderr_has(&format!(
            "gdbvisor: real-mode int 0x10 (AH=0x0e) but no BIOS: IVT[0x10] was empty (CS:IP 0000:{int10:04x}) (reported to gdb as SIGILL)"
        ))
        .assert_stderr_has("nobios: done")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    assert_eq!(eips(&run), [int10, int10], "{run}");
}

/// Stepping the `int 0x10` would land in gdbvisor's stub: it stops on the int instead.
#[test]
fn stepping_int10_stops_on_the_int_not_in_the_stub() {
    if !common::kvm_available("stepping_int10_stops_on_the_int_not_in_the_stub") {
        return;
    }
    let name = "nobios-int10";
    let int10 = symbol(&elf(name), "int10_here");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel(name), ""),
            format!("break *{int10:#x}"),
            "continue".into(),
            "echo STEP\\n".into(),
            "stepi".into(),
            "info registers eip".into(),
            "kill".into(),
        ],
    );
    let stepped = run.after_marker("STEP");
    assert!(
        stepped.contains("Program received signal SIGILL"),
        "stepi ends in the no-BIOS stop\n{run}"
    );
    run.assert_stderr_has("real-mode int 0x10 (AH=0x0e) but no BIOS");
    assert_eq!(eips(&run), [int10], "{run}");
}

/// An IRQ and an exception under gdb: SIGILL on the interrupted or faulting instruction; a
/// step into the exception leaves no trap flag of the step behind.
#[test]
fn irq_and_divide_error_under_gdb_stop_where_they_came_from() {
    if !common::kvm_available("irq_and_divide_error_under_gdb_stop_where_they_came_from") {
        return;
    }
    let after_hlt = symbol(&elf("nobios-irq"), "after_hlt");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel("nobios-irq"), ""),
            "continue".into(),
            "info registers eip".into(),
            "kill".into(),
        ],
    );
    run.assert_stdout_has("Program received signal SIGILL")
        .assert_stderr_has("real-mode vector 8 (IRQ 0 or #DF) but no BIOS");
    assert_eq!(eips(&run), [after_hlt], "{run}");

    let de = symbol(&elf("nobios-de"), "de_here");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel("nobios-de"), ""),
            format!("break *{de:#x}"),
            "continue".into(),
            "stepi".into(),
            "info registers eip".into(),
            "x/i $pc".into(),
            "p/x $eflags & 0x100".into(),
            "kill".into(),
        ],
    );
    run.assert_stdout_has("Program received signal SIGILL")
        .assert_stdout_has("div    %cx")
        .assert_stdout_has("$1 = 0x0")
        .assert_stderr_has("real-mode vector 0 (#DE) but no BIOS");
    assert_eq!(eips(&run), [de], "{run}");
}

/// With every debug register taken, a real-mode `break` is a planted 0xCC, which this host's
/// KVM delivers to IVT[3]: through the stub it is the breakpoint stop it should be, and the
/// kernel's own IVT entry for 0x10 keeps working.
#[test]
fn planted_real_mode_breakpoint_stops_through_the_stub() {
    if !common::kvm_available("planted_real_mode_breakpoint_stops_through_the_stub") {
        return;
    }
    let name = "nobios-own-ivt";
    let done = symbol(&elf(name), "nobios_done");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel(name), ""),
            "hbreak *0x600".into(),
            "hbreak *0x601".into(),
            "hbreak *0x602".into(),
            "hbreak *0x603".into(),
            format!("break *{done:#x}"),
            "continue".into(),
            "info registers eip".into(),
            "delete".into(),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_stdout_has(&format!("Breakpoint 5, {done:#010x} in ?? ()"))
        .assert_stderr_has("nobios: own int 0x10 handler\n")
        .assert_stderr_has("nobios: done\n")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    assert!(!run.stderr.contains("no BIOS"), "{run}");
    assert_eq!(eips(&run), [done], "{run}");
}

/// A watch on the real-mode stack's page: a real-mode `int n` runs without an exit here, and
/// its frame on a read-only page would lose FLAGS and CS (the kernel's own `int 0x10` handler
/// then returns into the weeds: "nonn" on serial). The stack page a real-mode vCPU has when it
/// resumes is never protected: the watch says it is inactive there, and the kernel's line
/// comes out whole.
#[test]
fn real_mode_int_frames_never_meet_a_protected_stack_page() {
    if !common::kvm_available("real_mode_int_frames_never_meet_a_protected_stack_page") {
        return;
    }
    let name = "nobios-own-ivt";
    let own_int = symbol(&elf(name), "own_int_here");
    let run = gdb(
        None,
        &[
            stdio_target(&kernel(name), ""),
            // Past the stack's set-up (SP = 0x7000: the page below).
            format!("hbreak *{own_int:#x}"),
            "continue".into(),
            "delete 1".into(),
            "watch *(short *)0x6f00".into(),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_stderr_has(
            "gdbvisor: a watchpoint on page 0x6000 is inactive while a real-mode vCPU's stack is there",
        )
        .assert_stderr_has("nobios: own int 0x10 handler\nnobios: done\n")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
}
