//! Bad images and arguments: one line naming the file and the reason, exit status 2, no panic.

mod common;

use common::*;

/// Runs gdbvisor on `image` and checks the one-line error.
fn assert_refused(name: &str, image: &[u8], extra: &[&str], reason: &str) {
    let path = temp_file(name, image);
    let path = path.to_str().unwrap();
    let mut args = vec!["--kernel", path];
    args.extend_from_slice(extra);
    let run = run_gdbvisor(&args);
    run.assert_status(2);
    let line = format!("gdbvisor: {path}: ");
    assert!(run.stderr.starts_with(&line), "error names the file\n{run}");
    assert!(run.stderr.contains(reason), "reason {reason:?}\n{run}");
    assert_eq!(run.stderr.lines().count(), 1, "one line\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
}

#[test]
fn empty_image() {
    if kvm_available("empty image") {
        assert_refused("empty", b"", &[], "the image is empty");
    }
}

#[test]
fn unknown_image_lists_what_was_tried() {
    if kvm_available("unknown image") {
        assert_refused("junk", &[0x42; 1024], &[], "tried linux (\"HdrS\" at offset 0x202), pvh (ELF note XEN_ELFNOTE_PHYS32_ENTRY), multiboot2 (header in the first 32 KiB), limine (Limine request in an ELF64), elf64");
    }
}

#[test]
fn truncated_elf() {
    if kvm_available("truncated elf") {
        let mut image = elf64_header(0x100000, 0x1000);
        image.extend([0x90; 16]);
        assert_refused("truncated.elf", &image, &[], "truncated (segment data)");
        assert_refused("header.elf", &image[..0x30], &[], "truncated (ELF header)");
    }
}

#[test]
fn segment_outside_ram() {
    if kvm_available("segment outside ram") {
        let mut image = elf64_header(0x4000_0000, 16);
        image.extend([0x90; 16]);
        assert_refused("high.elf", &image, &["-m", "16M"], "outside guest RAM");
    }
}

#[test]
fn multiboot_header_with_bad_checksum() {
    if kvm_available("bad checksum") {
        let mut image = vec![0u8; 64];
        for word in [0x1BAD_B002u32, 0x3, 0x1234] {
            image.extend(word.to_le_bytes());
        }
        assert_refused("badsum.bin", &image, &[], "bad checksum");
    }
}

#[test]
fn flat_image_past_real_mode_reach() {
    if kvm_available("flat too high") {
        assert_refused(
            "flat.bin",
            &[0xF4; 64],
            &["--format", "flat", "--load-addr", "0xffff0"],
            "beyond real mode's reach",
        );
    }
}

#[test]
fn missing_kernel_file() {
    let run = run_gdbvisor(&["--kernel", "/nonexistent/kernel.elf"]);
    run.assert_status(2)
        .assert_stderr_has("gdbvisor: /nonexistent/kernel.elf: No such file or directory");
}

#[test]
fn missing_module_file() {
    let image = temp_file("mod-kernel.bin", &boot_sector(&[0xF4]));
    run_gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--initrd",
        "/nonexistent/mod arg",
    ])
    .assert_status(2)
    .assert_stderr_has("gdbvisor: /nonexistent/mod: No such file or directory");
}

#[test]
fn bad_arguments_are_usage_errors() {
    run_gdbvisor(&["--memory", "12X"])
        .assert_status(2)
        .assert_stderr_has("not a size");
    run_gdbvisor(&["--serial", "tcp:1"])
        .assert_status(2)
        .assert_stderr_has("stdout, stderr, null or file:PATH");
    run_gdbvisor(&["--format", "pe"]).assert_status(2);
    run_gdbvisor(&["--load-addr", "0xzz"])
        .assert_status(2)
        .assert_stderr_has("not an address");
}

#[test]
fn bad_sizes_and_cpu_counts() {
    if !kvm_available("bad sizes") {
        return;
    }
    run_gdbvisor(&["--memory", "1K"])
        .assert_status(2)
        .assert_stderr_has("too small");
    run_gdbvisor(&["--cpus", "0"])
        .assert_status(2)
        .assert_stderr_has("--cpus must be between 1");
}

#[test]
fn help_and_version() {
    let help = run_gdbvisor(&["--help"]);
    help.assert_status(0);
    assert!(
        help.stdout.contains("Examples:") && help.stdout.contains("--append"),
        "{help}"
    );
    run_gdbvisor(&["--version"]).assert_status(0);
}
