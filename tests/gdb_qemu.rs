//! gdb on `gdbvisor qemu`: QEMU's `-S` with `-gdb unix:PATH` holds the guest for gdb as
//! gdbvisor's `-S --gdb` does, and `-no-shutdown` keeps a triple-faulted VM for it.

mod common;

use common::gdb::{cmds, elf, gdb, kernel, temp_path, Vmm};

/// Holds `image` for gdb on a unix socket through QEMU's flags and returns the VMM and socket.
fn held(name: &str, image: &std::path::Path, extra: &[&str]) -> (Vmm, std::path::PathBuf) {
    let socket = temp_path(&format!("{name}.sock"));
    let endpoint = format!("unix:{},server=on,wait=off", socket.display());
    let image = image.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "qemu", "-kernel", image, "-gdb", &endpoint, "-S", "-serial", "stdio", "-display", "none",
    ];
    args.extend(extra);
    let vmm = Vmm::start(&args);
    vmm.wait_stderr(&format!("gdb listening on unix:{}", socket.display()));
    (vmm, socket)
}

/// `-S -gdb unix:PATH`: gdb attaches at the first instruction and runs the kernel to its exit.
#[test]
fn qemu_s_and_gdb_hold_the_guest_for_gdb() {
    if !common::kvm_available("qemu_s_and_gdb_hold_the_guest_for_gdb") {
        return;
    }
    let elf = elf("elf64");
    let (mut vmm, socket) = held("qemu-gdb-hold", &elf, &["-no-reboot"]);
    let run = gdb(
        Some(&elf),
        &cmds(&[
            &format!("target remote {}", socket.display()),
            "break bp_here",
            "continue",
            "continue",
        ]),
    );
    run.assert_ok()
        .assert_stdout_has("bp_here")
        .assert_stdout_has("[Inferior 1 (process 1) exited with code 0103]");
    assert_eq!(vmm.wait_exit(), 67, "{}", vmm.transcript());
    let _ = std::fs::remove_file(&socket);
}

/// `-no-shutdown` with a gdb endpoint: the triple fault stops in gdb (SIGSEGV) instead of ending
/// the run.
#[test]
fn no_shutdown_keeps_a_triple_fault_for_gdb() {
    if !common::kvm_available("no_shutdown_keeps_a_triple_fault_for_gdb") {
        return;
    }
    let (_vmm, socket) = held(
        "qemu-gdb-triple",
        &kernel("triple"),
        &["-no-reboot", "-no-shutdown"],
    );
    let run = gdb(
        Some(&elf("triple")),
        &cmds(&[
            &format!("target remote {}", socket.display()),
            "continue",
            "kill",
        ]),
    );
    run.assert_stdout_has("received signal SIGSEGV")
        .assert_stdout_has("triple_fault_here ()");
    let _ = std::fs::remove_file(&socket);
}
