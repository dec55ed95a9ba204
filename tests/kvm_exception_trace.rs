//! `--trace-exceptions` on real KVM, without gdb: the pfstorm kernel takes a known list of
//! exceptions and recovers from each; the trace names each one exactly, and the guest's output
//! and exit status are those of a run without tracing.

mod common;

use common::*;

/// The trace lines of pfstorm with a storm of `storm` page faults, addresses from its ELF.
fn expected_lines(storm: u64) -> Vec<String> {
    let elf = kernel_elf("pfstorm");
    let at = |name: &str| symbol(&elf, name);
    let mut lines = vec![
        "exception trace: vectors 0-31; IDTR is read at every stop (with gdb every 50 ms at least) and without gdb at every exit: exceptions taken before the IDT is seen are missed".to_string(),
        format!("IDT at {:#x} (limit 0xfff): 32 handler entries traced", at("idt")),
        format!(
            "handler {:#x} is the entry of vectors 0x03, 0x80: the vector of a stop there is ambiguous",
            at("bp_handler")
        ),
        format!("vCPU 0: #UD (invalid opcode) at 0x0008:{:#x} `ud2` -> handler {:#x}", at("ud_here"), at("ud_handler")),
        format!("vCPU 0: #DE (divide error) at 0x0008:{:#x} `div %ecx` -> handler {:#x}", at("de_here"), at("de_handler")),
        format!(
            "vCPU 0: #BP (breakpoint) [ambiguous: handler shared by vectors 0x03, 0x80] at 0x0008:{:#x} `int3` -> handler {:#x}",
            at("bp_here"),
            at("bp_handler")
        ),
        format!(
            "vCPU 0: #GP (general protection) error 0x0 (no selector) at 0x0008:{:#x} `mov (%rax),%rax` -> handler {:#x}",
            at("gp_here"),
            at("gp_handler")
        ),
        format!(
            "vCPU 0: #PF (page fault) error 0x0002 (not-present, write, supervisor) CR2=0x40000000 at 0x0008:{:#x} `movl $1,(%rax)` -> handler {:#x}",
            at("pf_here"),
            at("pf_handler")
        ),
    ];
    if storm > 0 {
        lines.push(format!(
            "vCPU 0: #PF (page fault) error 0x0002 (not-present, write, supervisor) CR2=0x40000000 at 0x0008:{:#x} `movl $1,(%rax)` -> handler {:#x}",
            at("storm_pf"),
            at("pf_handler")
        ));
        if storm > 1 {
            lines.push(format!("... (x{storm})"));
        }
    }
    lines.push(format!("exception trace: {} exceptions traced", 5 + storm));
    lines
}

#[test]
fn every_exception_is_traced_in_order_and_the_guest_runs_the_same() {
    if !kvm_available("exception trace") {
        return;
    }
    let image = kernel("pfstorm");
    let image = image.to_str().unwrap();
    let trace = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pfstorm.trace");
    let trace_arg = format!("--trace-exceptions={}", trace.display());
    let plain = run_gdbvisor(&["--kernel", image, "--cmdline", "40"]);
    let traced = run_gdbvisor(&["--kernel", image, "--cmdline", "40", &trace_arg]);
    plain
        .assert_status(67)
        .assert_stdout_line("pfstorm: faults 41")
        .assert_stdout_line("pfstorm: done");
    assert_eq!(traced.status, plain.status, "{traced}");
    assert_eq!(
        traced.stdout, plain.stdout,
        "the guest's output is the same"
    );
    let written = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines, expected_lines(40), "{written}\n{traced}");
}

#[test]
fn the_trace_goes_to_stderr_without_a_file_and_takes_a_vector_list() {
    if !kvm_available("exception trace") {
        return;
    }
    let image = kernel("pfstorm");
    let run = run_gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--trace-exceptions",
        "--trace-vectors",
        "14",
    ]);
    run.assert_status(67)
        .assert_stderr_has("exception trace: vectors 14;")
        .assert_stderr_has("IDT at ")
        .assert_stderr_has("1 handler entries traced")
        .assert_stderr_has("exception trace: 1 exception traced");
    assert!(!run.stderr.contains("#UD"), "only #PF is traced\n{run}");
    run_gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--trace-vectors",
        "0-x",
    ])
    .assert_status(2)
    .assert_stderr_has("is not a list of vectors");
}

#[test]
fn a_second_vcpu_waiting_for_its_startup_changes_nothing() {
    if !kvm_available("exception trace") {
        return;
    }
    let image = kernel("pfstorm");
    let trace = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pfstorm-smp.trace");
    let trace_arg = format!("--trace-exceptions={}", trace.display());
    let image = image.to_str().unwrap();
    run_gdbvisor(&[
        "--kernel",
        image,
        "--cpus",
        "2",
        "--cmdline",
        "2",
        &trace_arg,
    ])
    .assert_status(67)
    .assert_stdout_line("pfstorm: faults 3");
    let written = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        expected_lines(2),
        "{written}"
    );
}

#[test]
fn the_trace_leaves_no_byte_behind() {
    if !kvm_available("exception trace") {
        return;
    }
    let image = kernel("pfstorm");
    let image = image.to_str().unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dump = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let path_arg = path.to_str().unwrap().to_string();
        let mut args = vec!["--kernel", image, "-m", "16", "--cmdline", "3"];
        args.extend(["--dump-at-exit", &path_arg]);
        args.extend(extra);
        run_gdbvisor(&args).assert_status(67);
        std::fs::read(&path).unwrap()
    };
    let trace_arg = format!("--trace-exceptions={}", dir.join("nobyte.trace").display());
    let plain = dump("plain.core", &[]);
    let traced = dump("traced.core", &[&trace_arg]);
    // RAM and every register as the guest left them: no 0xCC, no flag of ours.
    assert!(
        plain == traced,
        "the VM saved at exit differs with the trace on"
    );
}
