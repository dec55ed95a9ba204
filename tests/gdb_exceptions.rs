//! `monitor catch exception`, `monitor exceptions` and `monitor trace exceptions` through a real
//! `gdb -batch` on the pfstorm kernel, which takes #UD, #DE, #BP, #GP and #PF in that order and
//! recovers from each.

mod common;

use common::gdb::*;

#[test]
fn a_caught_page_fault_stops_before_its_handler_and_the_trace_lists_what_came_before() {
    if !common::kvm_available("gdb exceptions") {
        return;
    }
    let elf = elf("pfstorm");
    let at = |name: &str| common::symbol(&elf, name);
    let mut commands = vec![stdio_target(&kernel("pfstorm"), "")];
    commands.push(marked("exceptions"));
    commands.push(marked("catch exception 14"));
    commands.extend(cmds(&["continue", "echo ==pc\\n", "p/x $pc"]));
    commands.push(marked("exceptions 2"));
    commands.push(marked("catch exception 14 off"));
    commands.push(marked("catch exception 300"));
    commands.push(marked("trace exceptions off"));
    commands.extend(cmds(&["continue"]));
    let run = gdb(Some(&elf), &commands);
    // The VMM's stderr reaches gdb through the pipe, so the trace's first line may land in
    // the command's output too.
    assert!(
        section(&run, "catch exception 14").contains(
            &"stopping before the handler of #PF (gdb sees SIGSEGV for #PF and #GP, SIGTRAP otherwise)"
        ),
        "{run}"
    );
    let pf_line = format!(
        "vCPU 0: #PF (page fault) error 0x0002 (not-present, write, supervisor) CR2=0x40000000 at 0x0008:{:#x} `movl $1,(%rax)` -> handler {:#x}",
        at("pf_here"),
        at("pf_handler")
    );
    run.assert_stdout_has("Program received signal SIGSEGV")
        .assert_stdout_has(&format!("$1 = {:#x}", at("pf_handler")))
        .assert_stderr_has(&format!("gdbvisor: caught {pf_line}"));
    // gdb's console (an `O` packet, which gdb prints on its stderr) has it as its own line.
    let console = format!("caught {pf_line}");
    assert!(run.stderr.lines().any(|l| l == console), "{run}");
    let gp_line = format!(
        "vCPU 0: #GP (general protection) error 0x0 (no selector) at 0x0008:{:#x} `mov (%rax),%rax` -> handler {:#x}",
        at("gp_here"),
        at("gp_handler")
    );
    assert_section(&run, "exceptions 2", &[&gp_line, &pf_line]);
    assert_section(
        &run,
        "catch exception 14 off",
        &["no longer stopping for #PF"],
    );
    assert!(
        section(&run, "catch exception 300")
            .iter()
            .any(|l| l.starts_with("usage: catch mode on|off | exception VEC|all [on|off]")),
        "{run}"
    );
    assert_section(
        &run,
        "exceptions",
        &["no exception trace: `monitor trace exceptions on` or `monitor catch exception VEC` starts one"],
    );
    assert_eq!(
        section(&run, "trace exceptions off").first(),
        Some(&"no longer tracing exceptions"),
        "{run}"
    );
    // isa-debug-exit 0x21: status 67, which gdb prints in octal.
    run.assert_stdout_has("exited with code 0103");
}

#[test]
fn a_caught_invalid_opcode_is_a_sigtrap_and_all_catches_every_exception() {
    if !common::kvm_available("gdb exceptions") {
        return;
    }
    let elf = elf("pfstorm");
    let at = |name: &str| common::symbol(&elf, name);
    let mut commands = vec![stdio_target(&kernel("pfstorm"), "")];
    commands.push(marked("catch exception all"));
    commands.extend(cmds(&["continue", "echo ==pc\\n", "p/x $pc", "continue"]));
    commands.push(marked("catch exception all off"));
    commands.extend(cmds(&["continue"]));
    let run = gdb(Some(&elf), &commands);
    run.assert_stdout_has("Program received signal SIGTRAP")
        .assert_stdout_has(&format!("$1 = {:#x}", at("ud_handler")))
        .assert_stderr_has(&format!(
            "gdbvisor: caught vCPU 0: #UD (invalid opcode) at 0x0008:{:#x} `ud2`",
            at("ud_here")
        ))
        .assert_stderr_has(&format!(
            "gdbvisor: caught vCPU 0: #DE (divide error) at 0x0008:{:#x}",
            at("de_here")
        ));
    assert_eq!(
        section(&run, "catch exception all off").first(),
        Some(&"no longer stopping for every exception (vectors 0-31)"),
        "{run}"
    );
    run.assert_stdout_has("exited with code 0103");
}

/// `--trace-exceptions` with gdb attached while the guest runs: a vCPU that sees the guest load
/// its IDT reports it (the trace's per-exit IDTR check) and must be resumed with the new entries
/// planted, not left stopped — gdb's `continue` used to hang here. death-pf-in-pf loads its IDT,
/// prints a line and takes 64 page faults before it triple-faults.
#[test]
fn a_trace_started_before_gdb_attaches_follows_a_new_idt_and_the_run_goes_on() {
    if !common::kvm_available("gdb exceptions") {
        return;
    }
    let trace = std::env::temp_dir().join(format!("gdb-trace-idt-{}.txt", std::process::id()));
    let target = format!(
        "target remote | {} --kernel {} --gdb stdio --trace-exceptions={}",
        vmm(),
        kernel("death-pf-in-pf").display(),
        trace.display()
    );
    let run = gdb(None, &[target, "continue".to_string()]);
    run.assert_stdout_has("Program received signal SIGSEGV");
    let lines = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    assert!(
        lines.contains("exception trace: 64 exceptions traced"),
        "{lines}\n{run}"
    );
}
