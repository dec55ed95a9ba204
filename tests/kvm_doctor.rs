//! `gdbvisor doctor` reports this host's facts: on a software-nested (PVM) host, the ones in
//! shared/reference/kvm-on-this-host.md; on hardware KVM, that everything works.

mod common;

use common::*;

#[test]
fn doctor_reports_what_this_host_can_do() {
    if !kvm_available("doctor") {
        return;
    }
    let run = run_gdbvisor(&["doctor"]);
    run.assert_status(0);
    let hardware = run.stdout.contains("virtualization: hardware");
    if hardware {
        run.assert_stdout_line("32-bit paging (no long mode): works")
            .assert_stdout_line("PAE paging (no long mode): works")
            .assert_stdout_line("guest int3 / int n: delivered to the guest by KVM")
            .assert_stdout_line("syscall from ring 3 (64-bit user space): works")
            .assert_stdout_line("DR7 data watchpoints: works")
            .assert_stdout_line(
                "CPUID features hidden from guests by default (--cpuid-hide auto): none",
            );
    } else {
        assert!(
            run.stdout.contains("virtualization: software-nested"),
            "{run}"
        );
        run.assert_stdout_line(
            "32-bit paging (no long mode): NOT SUPPORTED (the guest triple-faults)",
        )
        .assert_stdout_line("PAE paging (no long mode): NOT SUPPORTED (the guest triple-faults)")
        .assert_stdout_line(
            "guest int3 / int n: KVM emulation failure; gdbvisor completes it by injection",
        )
        .assert_stdout_line(
            "syscall from ring 3 (64-bit user space): NOT SUPPORTED (the handler runs in ring 3: Linux user space dies at its first system call)",
        )
        .assert_stdout_line("DR7 data watchpoints: NOT SUPPORTED (never fires)")
        // What the progress guarantee is built on (README: the progress guarantee).
        .assert_stdout_line("  an instruction's store: MMIO exit")
        .assert_stdout_line(
            "  a descriptor's Accessed bit (segment load): NO EXIT: retried for ever (gdbvisor runs it with protection lifted)",
        )
        .assert_stdout_line("  the TSS busy bit (ltr): MMIO exit")
        .assert_stdout_line(
            "  a page-table entry's Accessed bit: dropped (the access completes, the bit stays clear)",
        )
        .assert_stdout_line(
            "  an exception frame on the stack: triple fault (gdbvisor retries it, and takes interrupts in windows, with protection lifted)",
        )
        // KVM's instruction emulator, which runs guest code here, lacks these.
        .assert_stdout_line("CPUID cx16 instructions: NOT SUPPORTED (KVM emulation failure)")
        .assert_stdout_line("CPUID popcnt instructions: NOT SUPPORTED (KVM emulation failure)");
        assert!(
            run.stdout.lines().any(|l| l.starts_with(
                "CPUID features hidden from guests by default (--cpuid-hide auto): cx16,xsave,popcnt,"
            )),
            "{run}"
        );
    }
    assert!(
        run.stdout.contains("guest debug flags: ENABLE SINGLESTEP"),
        "{run}"
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("read-only memslots: ")),
        "{run}"
    );
    run.assert_stdout_line(
        "writes into a read-only page (gdbvisor protects breakpoint and watched pages):",
    );
    // Every host: an instruction's own store leaves KVM as MMIO.
    run.assert_stdout_line("  an instruction's store: MMIO exit");
}
