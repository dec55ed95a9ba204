//! Boots every test kernel this host can run on real KVM and checks serial output and exit status.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use gdbvisor::vmm::host_caps::{Capability, HostCaps};

#[test]
fn demo_walks_through_every_mode_and_halts() {
    if !kvm_available("demo") {
        return;
    }
    run_gdbvisor(&[])
        .assert_status(0)
        .assert_stdout_line("modes: real mode")
        .assert_stdout_line("modes: protected mode 32-bit")
        .assert_stdout_line("modes: long mode 64-bit")
        .assert_stderr_has("gdbvisor: flat kernel, entry 0x00007c00, 128 MiB RAM, 1 vCPU")
        .assert_stderr_has("guest halted");
    // `demo` is the same, and takes the usual options.
    run_gdbvisor(&["demo", "--memory", "64M"])
        .assert_status(0)
        .assert_stderr_has("64 MiB RAM")
        .assert_stdout_line("modes: long mode 64-bit");
}

#[test]
fn demo_writes_its_elf_for_gdb() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-modes.elf");
    run_gdbvisor(&["demo", "--write-elf", path.to_str().unwrap()]).assert_status(0);
    let elf = std::fs::read(&path).unwrap();
    assert!(elf.starts_with(b"\x7fELF"));
    let symbols = String::from_utf8_lossy(&elf).into_owned();
    assert!(
        symbols.contains("long64_entry"),
        "the demo ELF keeps its symbols"
    );
}

#[test]
fn modes_kernel_exits_through_debug_exit() {
    if !kvm_available("modes") {
        return;
    }
    let image = kernel("modes");
    run_gdbvisor(&["--kernel", image.to_str().unwrap()])
        .assert_status(1)
        .assert_stdout_line("modes: real mode")
        .assert_stdout_line("modes: protected mode 32-bit")
        .assert_stdout_line("modes: long mode 64-bit");
}

#[test]
fn tiny_kernel_exits_at_once() {
    if !kvm_available("tiny") {
        return;
    }
    run_gdbvisor(&["--kernel", kernel("tiny").to_str().unwrap()]).assert_status(1);
}

#[test]
fn elf64_kernel_gets_long_mode_info_interrupts_timer_vga_and_debugcon() {
    if !kvm_available("elf64") {
        return;
    }
    let image = kernel("elf64");
    let run = run_gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet",
        "-m",
        "64",
    ]);
    run.assert_status(67)
        .assert_stderr_has("gdbvisor: elf64 kernel")
        .assert_stdout_line("elf64: long mode entry")
        .assert_stdout_line("elf64: mem_upper=64512")
        .assert_stdout_line("elf64: cmdline=console=ttyS0 quiet")
        // int3 and int 0x80 reach the guest's IDT (completed by injection on PVM hosts).
        .assert_stdout_line("elf64: #BP vector 3")
        .assert_stdout_line("elf64: int 0x80 rax=0xc0ffee")
        // PIT interrupts through the in-kernel 8259.
        .assert_stdout_line("elf64: timer ticks=3")
        .assert_stdout_line("elf64: debugcon")
        .assert_stdout_line("elf64: done")
        .assert_stderr_has("gdbvisor: VGA text screen at exit:\ngdbvisor VGA");
}

#[test]
fn serial_and_debugcon_go_to_files() {
    if !kvm_available("sinks") {
        return;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let serial = dir.join(format!("serial-{}.log", std::process::id()));
    let debugcon = dir.join(format!("debugcon-{}.log", std::process::id()));
    let run = run_gdbvisor(&[
        "--kernel",
        kernel("elf64").to_str().unwrap(),
        "--serial",
        &format!("file:{}", serial.display()),
        "--debugcon",
        &format!("file:{}", debugcon.display()),
    ]);
    run.assert_status(67);
    assert!(!run.stdout.contains("elf64:"), "nothing on stdout\n{run}");
    let serial = std::fs::read_to_string(serial).unwrap();
    assert!(serial.contains("elf64: timer ticks=3\n"), "{serial}");
    assert_eq!(
        std::fs::read_to_string(debugcon).unwrap(),
        "elf64: debugcon\n"
    );
}

fn assert_mbinfo(kernel_name: &str, format_line: &str) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let first = dir.join(format!("{kernel_name}-mod1-{}", std::process::id()));
    let second = dir.join(format!("{kernel_name}-mod2-{}", std::process::id()));
    std::fs::write(&first, b"MODULE-ONE").unwrap();
    std::fs::write(&second, vec![b'2'; 5000]).unwrap();
    let initrd = format!("{} root=/dev/x,{}", first.display(), second.display());
    let run = run_gdbvisor(&[
        "--kernel",
        kernel(kernel_name).to_str().unwrap(),
        "--append",
        "hello multiboot",
        "--initrd",
        &initrd,
    ]);
    run.assert_status(1)
        .assert_stdout_line(format_line)
        .assert_stdout_line("mbinfo: eax=0x2badb002")
        .assert_stdout_line("mbinfo: flags=0x24d")
        .assert_stdout_line("mbinfo: mem_lower=639")
        .assert_stdout_line("mbinfo: mem_upper=130048")
        .assert_stdout_line("mbinfo: cmdline=hello multiboot")
        .assert_stdout_line("mbinfo: loader=gdbvisor 0.1.0")
        .assert_stdout_line("mbinfo: mods_count=2")
        .assert_stdout_line("mbinfo: mmap base=0x0 len=0x9fc00 type=1")
        .assert_stdout_line("mbinfo: mmap base=0x9fc00 len=0x400 type=2")
        .assert_stdout_line("mbinfo: mmap base=0xf0000 len=0x10000 type=2")
        .assert_stdout_line("mbinfo: mmap base=0x100000 len=0x7f00000 type=1");
    let module_line = |i: usize, string: &str, size: usize| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("mbinfo: mod[{i}] ")))
            .filter(|l| {
                l.contains(&format!("size={size} ")) && l.contains(&format!("string={string}"))
            })
            .unwrap_or_else(|| panic!("module {i} line\n{run}"))
            .to_string()
    };
    let one = module_line(0, &format!("{} root=/dev/x", first.display()), 10);
    assert!(one.contains("head=MODULE-O"), "{one}");
    module_line(1, &second.display().to_string(), 5000);
}

#[test]
fn multiboot_elf_kernel_sees_info_cmdline_and_modules() {
    if !kvm_available("mbinfo") {
        return;
    }
    assert_mbinfo("mbinfo", "mbinfo: format=elf");
}

#[test]
fn multiboot_aout_kludge_kernel_sees_the_same_info() {
    if !kvm_available("mbinfo-aout") {
        return;
    }
    assert_mbinfo("mbinfo-aout", "mbinfo: format=aout");
}

#[test]
fn segments_kernel_uses_nonzero_bases_and_an_ldt() {
    if !kvm_available("segments") {
        return;
    }
    run_gdbvisor(&["--kernel", kernel("segments").to_str().unwrap()])
        .assert_status(1)
        .assert_stdout_line("segments: gdt data base=0x200000 off=0x10 read 0x5e6a0001 ok")
        .assert_stdout_line("segments: expand-down base=0x300000 off=0x1000 read 0x5e6a0002 ok")
        .assert_stdout_line("segments: ldt data base=0x500000 off=0x20 read 0x5e6a0003 ok")
        .assert_stdout_line("segments: done");
}

#[test]
fn triple_fault_exits_4_with_registers() {
    if !kvm_available("triple") {
        return;
    }
    let run = run_gdbvisor(&["--kernel", kernel("triple").to_str().unwrap()]);
    run.assert_status(4)
        .assert_stdout_line("triple: about to fault")
        .assert_stderr_has("gdbvisor: triple fault on vCPU 0 (KVM_EXIT_SHUTDOWN)")
        .assert_stderr_has("  rip=")
        .assert_stderr_has("  cr0=");
    // The chain, explained: KVM reports the state at the ud2 that raised the first fault.
    let why: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("gdbvisor: why: "))
        .collect();
    assert_eq!(
        why[1..],
        [
            "instruction at 0x0008:0x7c49:",
            "  supervisor fetch: paging off: linear 0x7c49 = physical",
            "  ud2 (0f 0b)",
            "  an undefined instruction by definition: invalid opcode",
            "  -> #UD (invalid opcode)",
            "delivering #UD (invalid opcode)",
            "  IDTR base=0x0 limit=0x0: vector 0x06's entry at offset 0x30..0x37 is beyond the limit",
            "  -> #GP (general protection), error code 0x33 (IDT vector 0x06, external)",
            "#UD then #GP: #GP is delivered instead",
            "delivering #GP (general protection), error code 0x33 (IDT vector 0x06, external)",
            "  IDTR base=0x0 limit=0x0: vector 0x0d's entry at offset 0x68..0x6f is beyond the limit",
            "  -> #GP (general protection), error code 0x6b (IDT vector 0x0d, external)",
            "#GP then #GP: double fault",
            "delivering #DF (double fault), error code 0x0 (always 0)",
            "  IDTR base=0x0 limit=0x0: vector 0x08's entry at offset 0x40..0x47 is beyond the limit",
            "  -> #GP (general protection), error code 0x43 (IDT vector 0x08, external)",
            "#DF then #GP: shutdown (triple fault)",
        ],
        "{run}"
    );
    assert!(
        !run.stderr.contains("cannot run 32-bit paging"),
        "no paging hint for a plain triple fault\n{run}"
    );
}

/// 32-bit paging and PAE kernels: run them where the host can; where it cannot (PVM), the
/// warning before boot and the hint after the triple fault are what we check.
fn legacy_paging_kernel(name: &str, done_line: &str) {
    if !kvm_available(name) {
        return;
    }
    let run = run_gdbvisor(&["--kernel", kernel(name).to_str().unwrap()]);
    if HostCaps::of_this_host().has(Capability::LegacyPaging) {
        run.assert_status(1).assert_stdout_line(done_line);
    } else {
        eprintln!("SKIPPED running {name} to the end: this host's KVM cannot run 32-bit paging/PAE (checking the warnings instead)");
        run.assert_status(4)
            .assert_stderr_has(
                "gdbvisor: warning: this kernel starts in 32-bit mode and writes CR0",
            )
            .assert_stderr_has("gdbvisor: note: this host's KVM cannot run 32-bit paging or PAE");
    }
}

#[test]
fn mb32_paging_kernel() {
    legacy_paging_kernel("mb32-paging", "mb32-paging: done");
}

#[test]
fn pae_kernel() {
    legacy_paging_kernel("pae", "pae: done");
}

#[test]
fn i8042_reset_ends_the_vm() {
    if !kvm_available("reset") {
        return;
    }
    // mov al, 0xfe; out 0x64, al; hlt
    let image = temp_file("reset.bin", &boot_sector(&[0xB0, 0xFE, 0xE6, 0x64, 0xF4]));
    run_gdbvisor(&["--kernel", image.to_str().unwrap()])
        .assert_status(0)
        .assert_stderr_has("guest reset the machine through the i8042");
}

#[test]
fn unknown_ports_read_all_ones() {
    if !kvm_available("unknown ports") {
        return;
    }
    // in al, 0x99; out 0xf4, al  → debug-exit 0xff → status (0x1ff & 0xff)
    let image = temp_file("port.bin", &boot_sector(&[0xE4, 0x99, 0xE6, 0xF4]));
    run_gdbvisor(&["--kernel", image.to_str().unwrap()]).assert_status(0xff);
    // debugcon reads return 0xE9: in al, 0xe9; out 0xf4, al → status 0xd3
    let image = temp_file("e9.bin", &boot_sector(&[0xE4, 0xE9, 0xE6, 0xF4]));
    run_gdbvisor(&["--kernel", image.to_str().unwrap()]).assert_status(0xd3);
}

#[test]
fn flat_binary_without_signature_needs_format_and_honours_load_addr() {
    if !kvm_available("flat") {
        return;
    }
    // mov ax, cs; out 0xf4, al  — CS is load_addr >> 4 above 64 KiB.
    let image = temp_file("raw.bin", &[0x8C, 0xC8, 0xE6, 0xF4]);
    let path = image.to_str().unwrap();
    run_gdbvisor(&["--kernel", path]).assert_status(2);
    run_gdbvisor(&["--kernel", path, "--format", "flat"]).assert_status(1);
    // Loaded at 0x12340: CS = 0x1234, so AL = 0x34.
    run_gdbvisor(&[
        "--kernel",
        path,
        "--format",
        "flat",
        "--load-addr",
        "0x12340",
    ])
    .assert_status((0x34 << 1) | 1);
}

#[test]
fn several_cpus_are_created_and_the_first_runs() {
    if !kvm_available("cpus") {
        return;
    }
    run_gdbvisor(&["--smp", "4"])
        .assert_status(0)
        .assert_stderr_has("4 vCPUs (the others wait for INIT/SIPI)")
        .assert_stdout_line("modes: long mode 64-bit");
}

#[test]
fn ctrl_c_stops_cleanly_with_130() {
    if !kvm_available("ctrl-c") {
        return;
    }
    // sti; hlt; jmp back — idles forever with interrupts on.
    let image = idle_image("idle.bin");
    let mut child = gdbvisor()
        .args(["--kernel", image.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the boot line rather than sleeping a guessed time.
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("vCPU\n") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "gdbvisor ended early");
        seen.push(byte[0]);
    }
    // SAFETY: kill(2) takes any pid and signal; this is our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("gdbvisor: interrupted"), "{rest}");
}

/// Kernels that enter in 32-bit mode and switch to long mode themselves get no legacy-paging
/// warning: an ELF64 multiboot2 kernel (`mb2-long`), and an ELF32 one that sets EFER.LME
/// (`elf64-shim`, which runs the `elf64` kernel as its module).
#[test]
fn no_paging_warning_for_kernels_that_enter_long_mode() {
    if !kvm_available("no_paging_warning_for_kernels_that_enter_long_mode") {
        return;
    }
    let warning = "this kernel starts in 32-bit mode and writes CR0";
    let mb2_long = run_gdbvisor(&["--kernel", kernel("mb2-long").to_str().unwrap()]);
    mb2_long.assert_status(1);
    assert!(!mb2_long.stderr.contains(warning), "{mb2_long}");
    let shim = run_gdbvisor(&[
        "--kernel",
        kernel("elf64-shim").to_str().unwrap(),
        "--initrd",
        kernel_elf("elf64").to_str().unwrap(),
    ]);
    shim.assert_status(67).assert_stdout_line("elf64: done");
    assert!(!shim.stderr.contains(warning), "{shim}");
}
