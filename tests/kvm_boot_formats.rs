//! The multiboot2 and PVH loaders, through the `mb2info` and `pvhinfo` test kernels that print
//! the boot information they were handed; format detection and `--format`.

mod common;

use common::*;

fn module_file(name: &str, bytes: &[u8]) -> String {
    temp_file(name, bytes).display().to_string()
}

fn assert_mb2info(kernel_name: &str, entry_line: &str) {
    let module = module_file(&format!("{kernel_name}-mod"), b"MODULE-ONE");
    let run = run_gdbvisor(&[
        "--kernel",
        kernel(kernel_name).to_str().unwrap(),
        "--cmdline",
        "hello multiboot2",
        "--initrd",
        &format!("{module} root=/dev/x"),
    ]);
    run.assert_status(1)
        .assert_stderr_has("gdbvisor: multiboot2 kernel, entry 0x")
        .assert_stdout_line("mb2info: eax=0x36d76289")
        .assert_stdout_line(entry_line)
        .assert_stdout_line("mb2info: image ok")
        .assert_stdout_line("mb2info: cmdline=hello multiboot2")
        .assert_stdout_line("mb2info: loader=gdbvisor 0.1.0")
        .assert_stdout_line("mb2info: mem_lower=639 mem_upper=130048")
        .assert_stdout_line("mb2info: mmap base=0x0 len=0x9fc00 type=1")
        .assert_stdout_line("mb2info: mmap base=0x9fc00 len=0x400 type=2")
        .assert_stdout_line("mb2info: mmap base=0xf0000 len=0x10000 type=2")
        .assert_stdout_line("mb2info: mmap base=0x100000 len=0x7f00000 type=1")
        .assert_stdout_line("mb2info: done");
    let module_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("mb2info: module start=0x"))
        .unwrap_or_else(|| panic!("no module line\n{run}"));
    assert!(
        module_line.ends_with(&format!("string={module} root=/dev/x")),
        "{module_line}"
    );
    // start and end 10 bytes apart, page-aligned start.
    let field = |name: &str| {
        let text = module_line.split(name).nth(1).unwrap();
        let hex = text
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("0x");
        u64::from_str_radix(hex, 16).unwrap()
    };
    assert_eq!(field("end=") - field("start="), 10, "{module_line}");
    assert_eq!(field("start=") % 0x1000, 0, "{module_line}");
}

#[test]
fn multiboot2_elf_gets_its_boot_information() {
    if kvm_available("multiboot2 elf") {
        assert_mb2info("mb2info", "mb2info: entry=elf");
    }
}

#[test]
fn multiboot2_address_and_entry_tags_are_honoured() {
    if kvm_available("multiboot2 address tag") {
        assert_mb2info("mb2info-addr", "mb2info: entry=tag");
    }
}

/// The end tag as the Limine bootloader's multiboot2 test kernel writes it (a 16-bit size,
/// running past header_length): GRUB and Limine boot it, so gdbvisor does.
#[test]
fn multiboot2_end_tag_with_a_short_size_is_accepted() {
    if kvm_available("multiboot2 short end tag") {
        assert_mb2info("mb2info-short-end", "mb2info: entry=elf");
    }
}

#[test]
fn pvh_kernel_gets_start_info_with_cmdline_memmap_and_modules() {
    if !kvm_available("pvh") {
        return;
    }
    let module = module_file("pvh-mod", b"0123456789abcdef");
    let run = run_gdbvisor(&[
        "--kernel",
        kernel("pvhinfo").to_str().unwrap(),
        "--cmdline",
        "hello pvh",
        "--initrd",
        &format!("{module} x=1"),
    ]);
    run.assert_status(1)
        .assert_stderr_has("gdbvisor: pvh kernel, entry 0x")
        .assert_stdout_line("pvhinfo: magic=0x336ec578 version=1")
        .assert_stdout_line("pvhinfo: memmap addr=0x0 size=0x9fc00 type=1")
        .assert_stdout_line("pvhinfo: memmap addr=0x100000 size=0x7f00000 type=1")
        .assert_stdout_line(&format!(
            "pvhinfo: module paddr=0x102000 size=16 string={module} x=1"
        ))
        .assert_stdout_line("pvhinfo: done");
    // The command line is ours, plus the switches (noxsave, clearcpuid=, the clock dilation's)
    // this host's KVM needs for Linux, each announced on stderr.
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("pvhinfo: cmdline="))
        .unwrap_or_else(|| panic!("no cmdline line\n{run}"));
    match line.strip_prefix("pvhinfo: cmdline=hello pvh") {
        Some("") => {}
        Some(extra) => {
            assert_eq!(
                appended_switches(&run.stderr).join(" "),
                extra.trim(),
                "{run}"
            );
        }
        None => panic!("{line}\n{run}"),
    };
}

#[test]
fn forced_formats_check_their_marker() {
    if !kvm_available("forced formats") {
        return;
    }
    let mb1 = kernel("mbinfo");
    let cases = [
        ("pvh", "no PVH entry"),
        ("multiboot2", "no multiboot2 header"),
        ("linux", "not a Linux bzImage"),
    ];
    for (format, reason) in cases {
        let run = run_gdbvisor(&["--kernel", mb1.to_str().unwrap(), "--format", format]);
        run.assert_status(2).assert_stderr_has(reason);
    }
    // A multiboot2 ELF forced to boot as plain multiboot1 has no multiboot1 header.
    let run = run_gdbvisor(&[
        "--kernel",
        kernel("mb2info").to_str().unwrap(),
        "--format",
        "multiboot1",
    ]);
    run.assert_status(2)
        .assert_stderr_has("no multiboot1 header");
}
