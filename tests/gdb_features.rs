//! gdb features beyond the basics, each driven by a real `gdb -batch`: following the CPU through
//! 16/32/64-bit mode with gdb-scripts/gdbvisor.py, write watchpoints through read-only memory
//! slots, a breakpoint the guest copies code over, register writes, and Ctrl-C in the VMM's own
//! terminal while gdb is attached.

mod common;

use std::path::PathBuf;

use common::gdb::*;
use gdbvisor::vmm::host_caps::{Capability, HostCaps};

/// A VMM holding an idle guest (`sti; hlt; jmp`) for gdb on a free TCP port.
fn idle_vmm_on_tcp(name: &str) -> (Vmm, u16) {
    Vmm::held_on_tcp(&common::idle_image(name), &[])
}

fn helper_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gdb-scripts/gdbvisor.py")
}

#[test]
fn modes_kernel_one_run_stops_in_16_32_and_64_bit_code() {
    if !common::kvm_available("modes run") {
        return;
    }
    // `auto` serves the flat image's entry mode (i8086) at first; each reconnect then asks for
    // the mode's description.
    modes_kernel_followed_through_every_mode(&[]);
}

/// `gdbvisor-connect` asks for the description of the CPU's mode: a fixed one given to the
/// VMM does not stick to the connections it makes.
#[test]
fn mode_following_overrides_a_fixed_gdb_arch() {
    if !common::kvm_available("modes run, x86-64") {
        return;
    }
    modes_kernel_followed_through_every_mode(&["--gdb-arch", "x86-64"]);
}

/// The `modes` kernel under `gdbvisor-connect`, stopped in 16-, 32- and 64-bit code.
fn modes_kernel_followed_through_every_mode(vmm_args: &[&str]) {
    let (_vmm, port) = Vmm::held_on_tcp(&kernel("modes"), vmm_args);
    let run = gdb(
        Some(&elf("modes")),
        &[
            "set remotetimeout 30".into(),
            format!("source {}", helper_script().display()),
            format!("gdbvisor-connect 127.0.0.1:{port}"),
            "break real_print".into(),
            "break prot32_print".into(),
            "break long64_print".into(),
            "continue".into(),
            "echo MARK-16\\n".into(),
            "x/i $pc".into(),
            "p/x $cs".into(),
            "continue".into(),
            "echo MARK-32\\n".into(),
            "x/i $pc".into(),
            "p/x $cr0".into(),
            "continue".into(),
            "echo MARK-64\\n".into(),
            "x/i $pc".into(),
            "p $efer".into(),
            "continue".into(),
        ],
    );
    run.assert_ok()
        .assert_stdout_has(&format!(
            "gdbvisor: connected to 127.0.0.1:{port} as i8086\n"
        ))
        .assert_stdout_has("gdbvisor: CPU mode changed: reconnecting as i386 (was i8086)")
        .assert_stdout_has("gdbvisor: CPU mode changed: reconnecting as i386:x86-64 (was i386)")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    // 16-bit code disassembled as such (`%si`), 32-bit (`%esi`), 64-bit (RIP-relative `lea`).
    assert!(
        run.after_marker("MARK-16")
            .contains("<real_print>:\tmov    $0x"),
        "{run}"
    );
    assert!(run.after_marker("MARK-16").contains(",%si"), "{run}");
    assert!(
        run.after_marker("MARK-32")
            .contains("<prot32_print>:\tmov    $0x"),
        "{run}"
    );
    assert!(run.after_marker("MARK-32").contains(",%esi"), "{run}");
    assert!(
        run.after_marker("MARK-32").contains("= 0x60000011")
            || run.after_marker("MARK-32").contains("= 0x11"),
        "{run}"
    );
    assert!(
        run.after_marker("MARK-64")
            .contains("<long64_print>:\tlea    0x"),
        "{run}"
    );
    assert!(run.after_marker("MARK-64").contains("(%rip),%rsi"), "{run}");
    assert!(run.after_marker("MARK-64").contains("[ LME LMA ]"), "{run}");
}

#[test]
fn watch_stops_on_each_write_with_old_and_new_value() {
    if !common::kvm_available("watch") {
        return;
    }
    let elf = elf("elf64");
    let run = gdb_on(
        &elf,
        &[
            "watch *(long *)&ticks",
            "continue",
            "continue",
            "delete",
            "continue",
        ],
    );
    run.assert_ok()
        .assert_stdout_has("Hardware watchpoint 1: *(long *)&ticks")
        .assert_stdout_has("Old value = 0\nNew value = 1")
        .assert_stdout_has("Old value = 1\nNew value = 2")
        .assert_stdout_has("timer_handler ()")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 0103]");
}

#[test]
fn watch_on_a_quiet_variable_ignores_writes_to_its_busy_page() {
    if !common::kvm_available("watch busy page") {
        return;
    }
    // `boot_info` shares its page with `ticks`, which every timer interrupt increments.
    let elf = elf("elf64");
    let run = gdb_on(
        &elf,
        &[
            "break timer_wait",
            "continue",
            "delete",
            "watch *(long *)&boot_info",
            "continue",
        ],
    );
    run.assert_ok()
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 0103]");
    assert!(
        !run.stdout.contains("Old value"),
        "no stop for writes beside the watch\n{run}"
    );
    assert!(run.stderr.contains("elf64: timer ticks=3"), "{run}");
}

#[test]
fn breakpoint_survives_the_guest_copying_code_over_it() {
    if !common::kvm_available("copied code") {
        return;
    }
    let elf = elf("copycode");
    let run = gdb_on(
        &elf,
        &[
            "break *0x300000",
            "continue",
            "echo MARK-1\\n",
            "x/i $pc",
            "continue",
            "echo MARK-2\\n",
            "x/i $pc",
            "continue",
        ],
    );
    run.assert_ok()
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    // Each stop shows the code the guest copied there, never our 0xCC.
    assert!(
        run.after_marker("MARK-1")
            .contains("0x300000:\tmov    $0x31,%bl"),
        "{run}"
    );
    assert!(
        run.after_marker("MARK-2")
            .contains("0x300000:\tmov    $0x32,%bl"),
        "{run}"
    );
    assert!(
        run.stderr.contains("copycode: v1") && run.stderr.contains("copycode: v2"),
        "{run}"
    );
}

#[test]
fn register_writes_reach_the_vcpu() {
    if !common::kvm_available("register writes") {
        return;
    }
    // Real mode: writing $pc keeps CS and sets IP.
    let run = gdb(
        None,
        &cmds(&[
            &stdio_target(&kernel("modes"), ""),
            "set $pc = 0x7c06",
            "stepi",
            "info registers eip cs",
            "kill",
        ]),
    );
    run.assert_ok();
    let eip = run.line_starting("eip");
    assert!(
        eip.contains("0x7c08"),
        "stepped from the written $pc: {eip}\n{run}"
    );
    assert!(run.line_starting("cs").contains("0x0"), "{run}");
    // Long mode: a general register written before a `int $0x80` is what the guest prints.
    let elf = elf("elf64");
    let run = gdb_on(
        &elf,
        &[
            "break int80_here",
            "continue",
            "set $rax = 0x1234abcd",
            "delete",
            "continue",
        ],
    );
    run.assert_ok();
    assert!(
        run.stderr.contains("elf64: int 0x80 rax=0x1234abcd"),
        "{run}"
    );
}

#[test]
fn ctrl_c_in_the_vmm_terminal_breaks_into_gdb() {
    if !common::kvm_available("vmm ctrl-c") {
        return;
    }
    let (vmm, port) = idle_vmm_on_tcp("idle-ctrlc.bin");
    let pid = vmm.child.id();
    let run = gdb(
        None,
        &[
            "set remotetimeout 30".into(),
            format!("target remote 127.0.0.1:{port}"),
            // SIGINT to the VMM (what Ctrl-C in its terminal sends) once gdb is waiting.
            format!(
                "python import threading, os, signal; threading.Timer(0.3, lambda: os.kill({pid}, signal.SIGINT)).start()"
            ),
            "continue".into(),
            "info registers eip".into(),
            "kill".into(),
        ],
    );
    run.assert_ok().assert_stdout_has("received signal SIGINT");
    let eip = run.line_starting("eip");
    assert!(
        eip.contains("0x7c0"),
        "stopped in the idle loop: {eip}\n{run}"
    );
}

#[test]
fn stepi_over_int_n_stops_at_the_handlers_first_instruction() {
    if !common::kvm_available("step into int n") {
        return;
    }
    let elf = elf("elf64");
    let run = gdb_on(
        &elf,
        &[
            "break int80_here",
            "continue",
            "stepi",
            "echo MARK\\n",
            "x/i $pc",
            "kill",
        ],
    );
    run.assert_ok();
    assert!(
        run.after_marker("MARK").contains("<int80_handler>:"),
        "{run}"
    );
}

/// The comparison the issue asks for once: QEMU's stub, same ELF32 kernel, same gdb, fails with
/// "Remote 'g' packet reply is too long"; gdbvisor's works (see gdb_session's ELF32 test).
#[test]
fn qemu_stub_fails_on_an_elf32_kernel_where_gdbvisor_works() {
    let qemu_missing = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err();
    if qemu_missing {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("qemu-system-x86_64 is missing under CI (.ci/run installs qemu-system-x86)");
        }
        eprintln!("SKIPPED qemu comparison: qemu-system-x86 not installed");
        return;
    }
    let elf = elf("segments");
    let qemu = format!(
        "target remote | exec qemu-system-x86_64 -kernel {} -display none -serial none -monitor none -S -gdb stdio",
        elf.display()
    );
    let run = gdb(Some(&elf), &cmds(&[&qemu, "info registers eip", "kill"]));
    assert!(
        run.stderr.contains("Remote 'g' packet reply is too long"),
        "QEMU's stub was expected to fail here\n{run}"
    );
    if !common::kvm_available("gdbvisor side of the qemu comparison") {
        return;
    }
    let ours = gdb_on(&elf, &["info registers eip", "kill"]);
    ours.assert_ok();
    assert!(!ours.stderr.contains("reply is too long"), "{ours}");
    assert!(ours.line_starting("eip").contains("<_start>"), "{ours}");
}

/// gdb killed while the guest runs: the VMM stops the guest, forgets gdb's breakpoints, lets the
/// guest run on, and a new gdb can attach.
#[test]
fn abrupt_disconnect_while_running_then_a_new_gdb_attaches() {
    use std::io::{BufRead, BufReader};
    if !common::kvm_available("abrupt disconnect") {
        return;
    }
    let (vmm, port) = idle_vmm_on_tcp("idle-abrupt.bin");
    let mut first = std::process::Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            &format!("target remote 127.0.0.1:{port}"),
        ])
        .args(["-ex", "break *0x7c01", "-ex", "continue", "-ex", "continue"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gdb runs");
    // Once gdb has continued past its breakpoint, the guest idles and gdb waits: kill gdb then.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut hits = 0;
    while hits < 1 {
        let line = lines.next().expect("gdb output").expect("utf-8");
        hits += usize::from(line.starts_with("Breakpoint 1,"));
    }
    first.kill().expect("kill gdb");
    let _ = first.wait();
    vmm.wait_stderr("gdb detached; the guest runs on");
    let second = gdb(
        None,
        &[
            "set remotetimeout 30".into(),
            format!("target remote 127.0.0.1:{port}"),
            "info registers eip".into(),
            "x/1xb 0x7c01".into(),
            "kill".into(),
        ],
    );
    second.assert_ok();
    assert!(second.line_starting("eip").contains("0x7c0"), "{second}");
    // The first gdb's breakpoint is gone: the guest's own byte (hlt) is back.
    assert!(second.stdout.contains("0x7c01:\t0xf4"), "{second}");
}

/// `awatch`/`rwatch` live in DR7 data breakpoints: they stop on an access where the host's KVM
/// fires them, and are refused with the reason where it never does (software-nested KVM).
#[test]
fn access_watchpoints_use_debug_registers_where_the_host_fires_them() {
    if !common::kvm_available("access watchpoints") {
        return;
    }
    let elf = elf("elf64");
    let run = gdb_on(&elf, &["awatch *(long *)&ticks", "continue", "kill"]);
    if HostCaps::of_this_host().has(Capability::DataBreakpoints) {
        run.assert_ok()
            .assert_stdout_has("Hardware access (read/write) watchpoint 1: *(long *)&ticks")
            .assert_stdout_has("timer_handler ()");
    } else {
        eprintln!("this host's KVM never fires DR7 data breakpoints: checking the refusal");
        assert!(
            run.stderr.contains(
                "gdbvisor: cannot insert a read/access watchpoint at 0x102000: this host's KVM never fires DR7 data breakpoints"
            ),
            "{run}"
        );
        assert!(
            run.stderr
                .contains("Could not insert hardware watchpoint 1."),
            "{run}"
        );
    }
}

/// The example regression script in gdb-scripts/examples: gdb's exit status is the guest's
/// isa-debug-exit status when every check passes.
#[test]
fn example_regression_script_exits_with_the_guests_status() {
    if !common::kvm_available("example regression script") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("gdb-scripts/examples/elf64-regression.gdb"))
        .expect("example script")
        .replace("target/debug/gdbvisor", env!("CARGO_BIN_EXE_gdbvisor"))
        .replace(
            "target/test-kernels/elf64.elf",
            kernel("elf64").to_str().unwrap(),
        );
    let path = common::temp_file("elf64-regression.gdb", script.as_bytes());
    let status = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-x"])
        .arg(&path)
        .arg(elf("elf64"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("gdb runs");
    assert_eq!(
        status.status.code(),
        Some(67),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}
#[test]
fn helper_script_short_commands_and_mode_reports() {
    if !common::kvm_available("helper short commands") {
        return;
    }
    let run = gdb(
        None,
        &[
            format!("source {}", helper_script().display()),
            stdio_target(&kernel("modes"), ""),
            "hbreak *0x7c06".into(),
            "continue".into(),
            "mode".into(),
        ],
    );
    run.assert_ok();
    assert!(run.stderr.contains("real mode, paging off, CPL 0"), "{run}");
}

/// `monitor catch mode on` stops at the first exit after each mode switch of the `modes`
/// kernel: real → protected 32-bit → long mode 64-bit.
#[test]
fn catch_mode_stops_after_each_mode_switch() {
    if !common::kvm_available("catch mode") {
        return;
    }
    let run = gdb(
        None,
        &cmds(&[
            &stdio_target(&kernel("modes"), ""),
            "monitor catch mode on",
            "continue",
            "continue",
            "monitor catch mode off",
            "continue",
        ]),
    );
    run.assert_ok()
        .assert_stderr_has("vCPU 0 changed mode: Real/None -> Protected32/None")
        .assert_stderr_has("vCPU 0 changed mode: Protected32/None -> Long64/Level4")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 01]");
    assert_eq!(
        run.stdout.matches("received signal SIGTRAP").count(),
        2,
        "{run}"
    );
}
