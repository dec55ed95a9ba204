//! Limine-protocol kernels on real KVM: `limine-basic` (higher half) and `limine-pie`
//! (relocated) check every response they read and exit through isa-debug-exit; with more
//! than one vCPU they start every AP through its goto_address. Bad images end with status 2
//! and one line.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// The module the kernels check: 22 bytes, "FILE ARGS" on the command line. Written once:
/// tests run in parallel, and a rewrite is empty for an instant.
fn module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limine-module.txt");
        std::fs::write(&path, b"limine module payload\n").unwrap();
        path
    })
}

/// Runs `kernel` as the kernels expect it (module, command line) with `extra` flags.
fn run_limine(kernel: &Path, extra: &[&str]) -> Run {
    let module = format!("{} arg1 arg2", module().display());
    let mut args = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        &module,
        "--cmdline",
        "limine-test cmdline",
    ];
    args.extend(extra);
    run_gdbvisor(&args)
}

fn assert_all_passed(run: &Run) {
    run.assert_status(1)
        .assert_stdout_line("limine: all checks passed")
        .assert_stderr_has("gdbvisor: limine kernel");
    assert!(!run.stdout.contains("FAIL"), "{run}");
}

/// `elf` with its base-revision tag asking for `revision`, written next to the tests' files.
fn with_base_revision(elf: &Path, revision: u64) -> PathBuf {
    let mut bytes = std::fs::read(elf).unwrap();
    let magic: Vec<u8> = [0xf956_2b2d_5c95_a6c8u64, 0x6a7b_3849_4453_6bdc]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let at = bytes
        .windows(16)
        .position(|w| w == magic)
        .expect("a base-revision tag");
    bytes[at + 16..at + 24].copy_from_slice(&revision.to_le_bytes());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("limine-rev{revision}.elf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn limine_basic_checks_every_response() {
    if !kvm_available("limine basic") {
        return;
    }
    let run = run_limine(&kernel("limine-basic"), &[]);
    assert_all_passed(&run);
    for line in [
        "limine: ok base revision supported 0x3",
        "limine: ok HHDM offset 0xffff800000000000",
        "limine: ok kernel virtual base 0xffffffff80000000",
        "limine: ok module bytes 0x16",
        "limine: ok RSDP physical 0xf0000",
        "limine: ok CS 0x28 0x28",
        "limine: ok MP cpu_count 0x1",
    ] {
        run.assert_stdout_line(line);
    }
}

/// The same kernel from an ISO whose limine.conf has a `protocol: limine` entry: its
/// command line, module and module_cmdline reach the kernel as the flags' do.
#[test]
fn a_limine_conf_entry_boots_with_the_limine_protocol() {
    if !common::iso::tools_available("--cdrom protocol: limine") || !kvm_available("limine iso") {
        return;
    }
    let conf = "timeout: 0\n\n/limine test\n    protocol: limine\n    path: boot():/boot/kernel.elf\n    cmdline: limine-test cmdline\n    module_path: boot():/boot/mod.txt\n    module_cmdline: arg1 arg2\n";
    let iso = common::iso::mkisofs_iso(
        "limine-protocol",
        &[
            common::iso::IsoFile::copy("boot/kernel.elf", &kernel("limine-basic")),
            common::iso::IsoFile::copy("boot/mod.txt", module()),
            common::iso::IsoFile::new("boot/limine/limine.conf", conf),
        ],
        &[],
    );
    let run = run_gdbvisor(&["--cdrom", iso.to_str().unwrap(), "--cpus", "2"]);
    assert_all_passed(&run);
    run.assert_stderr_has("(boot/limine/limine.conf line 3, entry 0 \"limine test\"), limine;")
        .assert_stdout_line("limine: AP 0x1 up, extra 0xa1");
}

/// The framebuffer `--framebuffer` sizes, with the square the kernel drew in it.
#[test]
fn the_framebuffer_request_gets_the_vms_framebuffer() {
    if !kvm_available("limine framebuffer") {
        return;
    }
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limine-fb.png");
    let run = run_limine(
        &kernel("limine-basic"),
        &[
            "--framebuffer",
            "640x480",
            "--screenshot",
            png.to_str().unwrap(),
        ],
    );
    assert_all_passed(&run);
    run.assert_stdout_line("limine: ok framebuffer format 0x280000001e0")
        .assert_stdout_line("limine: ok framebuffer in the memory map 0xfd000000");
    let picture = common::framebuffer::read_png(&png);
    assert_eq!(picture.at(7, 7), 0xff0000);
    assert_eq!(picture.at(8, 8), 0);
}

/// Revisions 0 to 6 all boot, each with its own HHDM, identity map and RSDP semantics (the
/// kernel checks the RSDP's signature through the HHDM, or its physical address at revision 3,
/// and the identity map at revision 0).
#[test]
fn every_base_revision_boots() {
    if !kvm_available("limine base revisions") {
        return;
    }
    let elf = kernel("limine-basic");
    for revision in [0, 1, 2, 4, 5, 6] {
        let run = run_limine(&with_base_revision(&elf, revision), &[]);
        assert_all_passed(&run);
        run.assert_stdout_line(&format!("limine: ok base revision supported {revision:#x}"));
        if revision == 0 {
            run.assert_stdout_line("limine: ok identity map (base revision 0) 0x100000");
        }
    }
}

#[test]
fn a_pie_kernel_is_slid_and_relocated() {
    if !kvm_available("limine pie") {
        return;
    }
    let elf = kernel("limine-pie");
    let run = run_limine(&elf, &[]);
    assert_all_passed(&run);
    run.assert_stdout_line("limine: ok kernel virtual base 0xffffffff80000000");
    // With --kaslr the slide is random: across a few runs some base differs.
    let bases: Vec<String> = (0..3)
        .map(|_| {
            let run = run_limine(&elf, &["--kaslr"]);
            assert_all_passed(&run);
            run.stdout
                .lines()
                .find(|l| l.starts_with("limine: ok kernel virtual base"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        bases.iter().any(|b| !b.ends_with("0xffffffff80000000")),
        "{bases:?}"
    );
}

#[test]
fn every_ap_starts_at_its_goto_address() {
    if !kvm_available("limine smp") {
        return;
    }
    for cpus in ["3", "4"] {
        let run = run_limine(&kernel("limine-basic"), &["--cpus", cpus]);
        assert_all_passed(&run);
        run.assert_stderr_has("(the others held until the kernel writes their goto_address)");
        let n: u64 = cpus.parse().unwrap();
        run.assert_stdout_line(&format!("limine: ok every AP arrived {:#x}", n - 1));
        for ap in 1..n {
            run.assert_stdout_line(&format!("limine: AP {ap:#x} up, extra {:#x}", 0xa0 + ap));
        }
    }
}

/// Status 2 and a single line on stderr.
fn assert_refused(run: &Run, text: &str) {
    run.assert_status(2).assert_stderr_has(text);
    assert_eq!(run.stderr.lines().count(), 1, "{run}");
}

#[test]
fn bad_images_are_refused_with_one_line() {
    let elf = kernel("limine-basic");
    let future = with_base_revision(&elf, 7);
    assert_refused(
        &run_limine(&future, &[]),
        "limine: the kernel asks for base revision 7; gdbvisor implements base revisions 0 to 6",
    );
    let bytes = std::fs::read(&elf).unwrap();
    let cut = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limine-truncated.elf");
    std::fs::write(&cut, &bytes[..0x1800]).unwrap();
    assert_refused(
        &run_limine(&cut, &["--format", "limine"]),
        "ELF file is truncated",
    );
    // An ELF64 linked low is no Limine kernel.
    assert_refused(
        &run_gdbvisor(&[
            "--kernel",
            kernel("elf64").to_str().unwrap(),
            "--format",
            "limine",
        ]),
        "the Limine protocol loads kernels at or above 0xffffffff80000000",
    );
}

/// An ELF64 with one RWX segment at `0xffffffff80000000` holding `code`.
fn tiny_limine_elf(code: &[u8]) -> Vec<u8> {
    let mut elf = vec![0u8; 0x1000];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4..7].copy_from_slice(&[2, 1, 1]);
    elf[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    elf[0x18..0x20].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes());
    elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let ph = 0x40;
    elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf[ph + 4..ph + 8].copy_from_slice(&7u32.to_le_bytes()); // RWX
    elf[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
    for field in [16, 24] {
        elf[ph + field..ph + field + 8].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes());
    }
    for field in [32, 40] {
        elf[ph + field..ph + field + 8].copy_from_slice(&(code.len() as u64).to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}

/// A kernel that asks for the MP feature but never writes a goto_address, and halts: the
/// held APs do not keep the run alive, and are named as never started.
#[test]
fn held_aps_never_released_do_not_keep_the_run_alive() {
    if !kvm_available("limine held aps") {
        return;
    }
    let mut code = vec![0xfa, 0xf4, 0, 0, 0, 0, 0, 0]; // cli; hlt
    for word in [
        0xc7b1_dd30_df4c_8b88u64, // the MP request: common magic, its ID, revision, response
        0x0a82_e883_a194_f07b,
        0x95a6_7b81_9a1b_857e,
        0xa0b6_1b72_3b6a_73e0,
        0,
        0,
        0,
    ] {
        code.extend(word.to_le_bytes());
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limine-halts.elf");
    std::fs::write(&path, tiny_limine_elf(&code)).unwrap();
    run_gdbvisor(&["--kernel", path.to_str().unwrap(), "--cpus", "3"])
        .assert_status(0)
        .assert_stderr_has("gdbvisor: limine kernel")
        .assert_stderr_has("vCPU 1, 2 never started")
        .assert_stderr_has("guest halted");
}
