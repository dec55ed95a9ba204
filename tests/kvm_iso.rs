//! `--cdrom`: real ISOs, built here as hobby-OS builds make them (grub-mkrescue; xorriso for
//! Limine configs, Joliet-only and plain ISO 9660 images), booted straight into the kernel their
//! config names, with the command line and modules it gives. QEMU booting the same GRUB image
//! through the real GRUB is the oracle for what the kernel must see. Bad images and bad flags
//! end with one line on stderr and status 2. Also `gdbvisor iso ls` and `iso extract`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::iso::{grub_iso, mkisofs_iso, tools_available, IsoFile};
use common::{kernel_elf, kvm_available, run_gdbvisor, Run};

/// The module mbinfo's GRUB entry loads first (10 bytes) and second (5000 bytes).
const MODULE_ONE: &[u8] = b"MODULE-ONE";

fn module_two() -> Vec<u8> {
    vec![b'2'; 5000]
}

/// The third module: 13 bytes, gzip-compressed.
const MODULE_THREE: &[u8] = b"PACKED-MODULE";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// What the mbinfo image's grub.cfg says: a menu of two entries, the display commands a
/// tutorial's config carries, a quoted argument, a gzip module that GRUB unpacks and the same
/// loaded `--nounzip`.
const MBINFO_GRUB_CFG: &str = r#"set timeout=3
set default=0
insmod all_video

menuentry "mbinfo" {
    multiboot /boot/mbinfo.elf hello   "multi boot" x=1
    module /boot/mod1.txt root=/dev/x
    module /boot/mod2.bin
    module /boot/mod3.gz packed
    module --nounzip /boot/mod3.gz raw
    boot
}

menuentry "mbinfo, no modules" {
    multiboot /boot/mbinfo.elf second entry
}
"#;

/// grub-mkrescue's image of the multiboot1 ELF32 `mbinfo`, built once for the tests here.
fn mbinfo_iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        grub_iso(
            "mbinfo",
            &[
                IsoFile::copy("boot/mbinfo.elf", &kernel_elf("mbinfo")),
                IsoFile::new("boot/mod1.txt", MODULE_ONE),
                IsoFile::new("boot/mod2.bin", module_two()),
                IsoFile::new("boot/mod3.gz", gzip(MODULE_THREE)),
            ],
            MBINFO_GRUB_CFG,
        )
    })
}

fn ready(test: &str) -> bool {
    kvm_available(test) && tools_available(test)
}

fn cdrom(iso: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--cdrom", iso.to_str().unwrap()];
    args.extend(extra);
    run_gdbvisor(&args)
}

/// The lines of mbinfo's output that say what its loader gave it (command line, modules and
/// their strings, sizes and first bytes), without addresses, which each loader picks.
fn given(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| {
            l.starts_with("mbinfo: cmdline=")
                || l.starts_with("mbinfo: mods_count=")
                || l.starts_with("mbinfo: mod[")
                || l.starts_with("mbinfo: format=")
                || l.starts_with("mbinfo: eax=")
                || *l == "mbinfo: done"
        })
        .map(|l| match l.find(" size=") {
            Some(at) if l.starts_with("mbinfo: mod[") => {
                format!("{}{}", &l[..l.find(" start=").unwrap_or(at)], &l[at..])
            }
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn grub_image_of_a_multiboot1_elf32_boots_with_its_cmdline_and_modules() {
    if !ready("--cdrom mbinfo") {
        return;
    }
    let iso = mbinfo_iso();
    let run = cdrom(iso, &[]);
    run.assert_status(1)
        .assert_stdout_line("mbinfo: format=elf")
        .assert_stdout_line("mbinfo: eax=0x2badb002")
        .assert_stdout_line("mbinfo: flags=0x24d")
        .assert_stdout_line(r#"mbinfo: cmdline=hello "multi boot" x=1"#)
        .assert_stdout_line("mbinfo: mods_count=4")
        .assert_stdout_line("mbinfo: done")
        .assert_stderr_has(&format!(
            "gdbvisor: /boot/mbinfo.elf in {} (boot/grub/grub.cfg line 5, entry 0 \"mbinfo\"), multiboot1; symbols for gdb: gdbvisor iso extract {} /boot/mbinfo.elf\n",
            iso.display(),
            iso.display()
        ));
    let modules: Vec<String> = given(&run.stdout)
        .into_iter()
        .filter(|l| l.starts_with("mbinfo: mod["))
        .collect();
    assert_eq!(
        modules,
        [
            "mbinfo: mod[0] size=10 string=root=/dev/x head=MODULE-O".to_string(),
            "mbinfo: mod[1] size=5000 string= head=22222222".to_string(),
            "mbinfo: mod[2] size=13 string=packed head=PACKED-M".to_string(),
            format!(
                "mbinfo: mod[3] size={} string=raw head=........",
                gzip(MODULE_THREE).len()
            ),
        ],
        "{run}"
    );
}

/// The serial output of the real GRUB booting `iso` in QEMU (TCG), to the kernel's exit.
fn grub_in_qemu(iso: &Path) -> String {
    let qemu = Command::new("qemu-system-x86_64")
        .args([
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "128",
            "-serial",
            "stdio",
        ])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-cdrom",
        ])
        .arg(iso)
        .output()
        .expect("QEMU runs");
    String::from_utf8_lossy(&qemu.stdout).into_owned()
}

fn qemu_ready(test: &str) -> bool {
    ready(test) && common::tool_available(test, "qemu-system-x86_64", "qemu-system-x86")
}

/// The real GRUB, in QEMU, boots the same image: the kernel must see the same command line and
/// modules through gdbvisor.
#[test]
fn mbinfo_sees_what_the_real_grub_gives_it() {
    if !qemu_ready("--cdrom mbinfo against GRUB in QEMU") {
        return;
    }
    let iso = mbinfo_iso();
    let grub = grub_in_qemu(iso);
    assert!(grub.contains("mbinfo: done"), "QEMU + GRUB:\n{grub}");
    let run = cdrom(iso, &[]);
    assert_eq!(
        given(&run.stdout),
        given(&grub),
        "{run}\nQEMU + GRUB:\n{grub}"
    );
}

/// The same for multiboot2 (`mb2info`): `multiboot2` and `module2` lines, a gzip module GRUB
/// unpacks.
#[test]
fn mb2info_sees_what_the_real_grub_gives_it() {
    if !qemu_ready("--cdrom mb2info against GRUB in QEMU") {
        return;
    }
    let iso = grub_iso(
        "mb2info",
        &[
            IsoFile::copy("boot/mb2info.elf", &kernel_elf("mb2info")),
            IsoFile::new("boot/mod1.txt", MODULE_ONE),
            IsoFile::new("boot/mod3.gz", gzip(MODULE_THREE)),
        ],
        "set timeout=0\nmenuentry \"mb2info\" {\n  multiboot2 /boot/mb2info.elf hello 'two words'\n  module2 /boot/mod1.txt root=/dev/x\n  module2 /boot/mod3.gz packed\n}\n",
    );
    // What the kernel was given: its magic, command line, modules (their strings and sizes,
    // not where each loader put them).
    let given = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|l| {
                l.starts_with("mb2info: eax=")
                    || l.starts_with("mb2info: cmdline=")
                    || l.starts_with("mb2info: module ")
                    || *l == "mb2info: done"
            })
            .map(|l| match (l.find(" start="), l.find(" string=")) {
                (Some(start), Some(string)) => {
                    let field = |name: &str| {
                        let hex = l.split(name).nth(1).unwrap().split_whitespace().next();
                        u64::from_str_radix(hex.unwrap().trim_start_matches("0x"), 16).unwrap()
                    };
                    let size = field("end=") - field("start=");
                    format!("{} size={size}{}", &l[..start], &l[string..])
                }
                _ => l.to_string(),
            })
            .collect()
    };
    let grub = grub_in_qemu(&iso);
    assert!(grub.contains("mb2info: done"), "QEMU + GRUB:\n{grub}");
    let run = cdrom(&iso, &[]);
    run.assert_status(1)
        .assert_stdout_line(r#"mb2info: cmdline=hello "two words""#);
    assert_eq!(
        given(&run.stdout),
        given(&grub),
        "{run}\nQEMU + GRUB:\n{grub}"
    );
    assert!(
        given(&run.stdout).contains(&"mb2info: module size=13 string=packed".to_string()),
        "{run}"
    );
}

#[test]
fn entry_picks_another_entry_by_number_or_title() {
    if !ready("--cdrom --entry") {
        return;
    }
    for choice in ["1", "mbinfo, no modules"] {
        let run = cdrom(mbinfo_iso(), &["--entry", choice]);
        run.assert_status(1)
            .assert_stdout_line("mbinfo: cmdline=second entry")
            .assert_stderr_has("(boot/grub/grub.cfg line 14, entry 1 \"mbinfo, no modules\")");
        assert!(!run.stdout.contains("mbinfo: mod[0]"), "{run}");
    }
}

#[test]
fn append_goes_after_the_entrys_command_line() {
    if !ready("--cdrom --append") {
        return;
    }
    cdrom(mbinfo_iso(), &["--append", "debug=1"])
        .assert_status(1)
        .assert_stdout_line(r#"mbinfo: cmdline=hello "multi boot" x=1 debug=1"#);
}

/// An `xorriso -as mkisofs` image (`args`) of `mb2-long` as `/boot/kernel.elf` and `files`.
fn mb2_long_iso(name: &str, files: Vec<IsoFile>, args: &[&str]) -> PathBuf {
    let mut all = vec![IsoFile::copy("boot/kernel.elf", &kernel_elf("mb2-long"))];
    all.extend(files);
    mkisofs_iso(name, &all, args)
}

fn mb2_long_lines(run: &Run) {
    run.assert_status(1)
        .assert_stdout_line("mb2-long: 32-bit entry")
        .assert_stdout_line("mb2-long: long mode 64-bit")
        .assert_stdout_line("mb2-long: sum=0x37")
        .assert_stdout_line("mb2-long: done");
}

#[test]
fn grub_image_of_a_multiboot2_elf64_boots() {
    if !ready("--cdrom mb2-long") {
        return;
    }
    let iso = grub_iso(
        "mb2-long",
        &[IsoFile::copy("boot/kernel.bin", &kernel_elf("mb2-long"))],
        "set timeout=0\nmenuentry \"my os\" {\n\tmultiboot2 /boot/kernel.bin\n\tboot\n}\n",
    );
    let run = cdrom(&iso, &[]);
    mb2_long_lines(&run);
    run.assert_stderr_has("(boot/grub/grub.cfg line 2, entry 0 \"my os\"), multiboot2;")
        .assert_stderr_has("gdbvisor: multiboot2 kernel, entry");
}

#[test]
fn limine_conf_image_made_with_xorriso_boots() {
    if !ready("--cdrom limine.conf") {
        return;
    }
    let conf = "timeout: 0\n\n/mbinfo from Limine\n    protocol: multiboot1\n    path: boot():/boot/mbinfo.elf\n    cmdline: limine says hi\n    module_path: boot():/boot/mod1.txt\n";
    let iso = mkisofs_iso(
        "limine-conf",
        &[
            IsoFile::copy("boot/mbinfo.elf", &kernel_elf("mbinfo")),
            IsoFile::new("boot/mod1.txt", MODULE_ONE),
            IsoFile::new("boot/limine/limine.conf", conf),
        ],
        &[],
    );
    let run = cdrom(&iso, &[]);
    run.assert_status(1)
        .assert_stdout_line("mbinfo: cmdline=limine says hi")
        .assert_stdout_line("mbinfo: mods_count=1")
        .assert_stderr_has(
            "(boot/limine/limine.conf line 3, entry 0 \"mbinfo from Limine\"), multiboot1;",
        );
    assert!(
        run.stdout.contains("mbinfo: mod[0] ") && run.stdout.contains("size=10 "),
        "{run}"
    );
}

#[test]
fn older_limine_cfg_image_boots() {
    if !ready("--cdrom limine.cfg") {
        return;
    }
    let cfg =
        "TIMEOUT=0\n\n:my os\n    PROTOCOL=multiboot2\n    KERNEL_PATH=boot:///boot/kernel.elf\n";
    let iso = mb2_long_iso("limine-cfg", vec![IsoFile::new("limine.cfg", cfg)], &[]);
    let run = cdrom(&iso, &[]);
    mb2_long_lines(&run);
    run.assert_stderr_has("(limine.cfg line 3, entry 0 \"my os\"), multiboot2;");
}

/// `mkisofs -J` without Rock Ridge: long, mixed-case names live only in the Joliet tree.
#[test]
fn joliet_only_image_boots_by_its_joliet_names() {
    if !ready("--cdrom joliet") {
        return;
    }
    let conf =
        "/Long Name\n    protocol: multiboot2\n    kernel_path: boot():/Boot/My-Kernel.Long.elf\n";
    let iso = mkisofs_iso(
        "joliet",
        &[
            IsoFile::copy("Boot/My-Kernel.Long.elf", &kernel_elf("mb2-long")),
            IsoFile::new("limine.conf", conf),
        ],
        &["--norock", "-J"],
    );
    mb2_long_lines(&cdrom(&iso, &[]));
    let ls = run_gdbvisor(&["iso", "ls", iso.to_str().unwrap(), "/Boot"]);
    ls.assert_status(0);
    assert!(ls.stdout.contains("  My-Kernel.Long.elf\n"), "{ls}");
}

/// Neither Rock Ridge nor Joliet: upper-case 8.3 names with versions (`KERNEL.ELF;1`), which a
/// config names in lower case.
#[test]
fn plain_iso9660_image_boots_by_case_insensitive_names() {
    if !ready("--cdrom plain ISO 9660") {
        return;
    }
    let iso = mb2_long_iso(
        "plain",
        vec![IsoFile::new(
            "boot/grub/grub.cfg",
            "menuentry x {\n multiboot2 /boot/kernel.elf\n}\n",
        )],
        &["--norock"],
    );
    mb2_long_lines(&cdrom(&iso, &[]));
}

/// An image with both configs boots GRUB's and says the other is unused.
#[test]
fn hybrid_image_prefers_grub_and_says_so() {
    if !ready("--cdrom hybrid") {
        return;
    }
    let iso = mb2_long_iso(
        "hybrid",
        vec![
            IsoFile::new(
                "boot/grub/grub.cfg",
                "menuentry grub {\n multiboot2 /boot/kernel.elf\n}\n",
            ),
            IsoFile::new(
                "limine.conf",
                "/limine\n protocol: limine\n path: boot():/boot/kernel.elf\n",
            ),
        ],
        &[],
    );
    let run = cdrom(&iso, &[]);
    mb2_long_lines(&run);
    run.assert_stderr_has("entry 0 \"grub\"), multiboot2 (limine.conf there too, not used);");
}

/// A grub.cfg that hands over to another config (`configfile`) is followed to its menu.
#[test]
fn configfile_is_followed_to_the_menu() {
    if !ready("--cdrom configfile") {
        return;
    }
    let iso = mb2_long_iso(
        "configfile",
        vec![
            IsoFile::new(
                "boot/grub/grub.cfg",
                "set prefix=/boot/grub\nconfigfile /boot/grub/menu.cfg\n",
            ),
            IsoFile::new(
                "boot/grub/menu.cfg",
                "menuentry \"real menu\" {\n multiboot2 /boot/kernel.elf\n}\n",
            ),
        ],
        &[],
    );
    let run = cdrom(&iso, &[]);
    mb2_long_lines(&run);
    run.assert_stderr_has("(boot/grub/menu.cfg line 1, entry 0 \"real menu\"), multiboot2;");
}

// ------------------------------------------------------------------------ bad input --- //

/// Status 2 and exactly one line on stderr, which says `what`.
fn assert_refused(run: &Run, what: &str) {
    run.assert_status(2).assert_stderr_has(what);
    assert_eq!(run.stderr.lines().count(), 1, "one line\n{run}");
    assert!(run.stderr.starts_with("gdbvisor: "), "{run}");
}

#[test]
fn bad_images_are_one_line_and_status_2() {
    if !tools_available("--cdrom bad images") {
        return;
    }
    let dir = common::iso::work_dir("bad");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let not_iso = write("zeros.iso", &vec![0u8; 64 << 10]);
    assert_refused(
        &cdrom(&not_iso, &[]),
        "zeros.iso: not an ISO 9660 image: no \"CD001\" volume descriptor at sector 16",
    );
    let tiny = write("tiny.iso", b"hello");
    assert_refused(
        &cdrom(&tiny, &[]),
        "tiny.iso: not an ISO 9660 image: 5 bytes is too short",
    );
    let whole = std::fs::read(mbinfo_iso()).unwrap();
    let truncated = write("truncated.iso", &whole[..whole.len() / 2]);
    assert_refused(
        &cdrom(&truncated, &[]),
        "truncated.iso: truncated ISO 9660 image: its volume descriptor says",
    );
    assert_refused(
        &cdrom(&dir.join("absent.iso"), &[]),
        "absent.iso: No such file or directory",
    );
    let no_config = mb2_long_iso("no-config", Vec::new(), &[]);
    assert_refused(
        &cdrom(&no_config, &[]),
        "no boot configuration: none of boot/grub/grub.cfg,",
    );
    let missing = mkisofs_iso(
        "missing-kernel",
        &[IsoFile::new(
            "boot/grub/grub.cfg",
            "menuentry \"gone\" {\n multiboot2 /boot/gone.elf\n}\n",
        )],
        &[],
    );
    assert_refused(
        &cdrom(&missing, &[]),
        "boot/grub/grub.cfg line 1, entry 0 \"gone\" names /boot/gone.elf: /boot/gone.elf: no such file or directory in the image",
    );
    let xz_module = mb2_long_iso(
        "xz-module",
        vec![
            IsoFile::new("boot/mod.xz", b"\xfd7zXZ\x00 as xz -c writes it".to_vec()),
            IsoFile::new(
                "boot/grub/grub.cfg",
                "menuentry \"xz\" {\n multiboot2 /boot/kernel.elf\n module2 /boot/mod.xz\n}\n",
            ),
        ],
        &[],
    );
    assert_refused(
        &cdrom(&xz_module, &[]),
        "entry 0 \"xz\" loads /boot/mod.xz, xz-compressed: GRUB would unpack it, gdbvisor does not",
    );
}

#[test]
fn flags_that_clash_with_cdrom_are_one_line_and_status_2() {
    let iso = "os.iso";
    for (args, what) in [
        (vec!["--cdrom", iso, "--kernel", "k.elf"], "drop --kernel"),
        (vec!["--cdrom", iso, "--initrd", "m"], "drop --initrd"),
        (
            vec!["--cdrom", iso, "--format", "multiboot2"],
            "drop --format",
        ),
        (
            vec!["--kernel", "k.elf", "--entry", "1"],
            "--entry picks an entry of an ISO's boot menu: give --cdrom FILE.iso too",
        ),
    ] {
        assert_refused(&run_gdbvisor(&args), what);
    }
}

#[test]
fn an_unknown_entry_lists_the_menu() {
    if !tools_available("--cdrom unknown entry") {
        return;
    }
    let run = cdrom(mbinfo_iso(), &["--entry", "7"]);
    run.assert_status(2)
        .assert_stderr_has("has no entry \"7\"; its entries are:")
        .assert_stderr_has("  1  mbinfo, no modules (multiboot");
}

// ---------------------------------------------------------------- iso ls, iso extract --- //

#[test]
fn iso_extract_writes_the_file_gdb_wants() {
    if !tools_available("iso extract") {
        return;
    }
    let iso = mbinfo_iso().to_str().unwrap();
    let elf = std::fs::read(kernel_elf("mbinfo")).unwrap();
    let dir = common::iso::work_dir("extract");
    let out = dir.join("k.elf");
    let run = run_gdbvisor(&[
        "iso",
        "extract",
        iso,
        "/boot/mbinfo.elf",
        "-o",
        out.to_str().unwrap(),
    ]);
    run.assert_status(0).assert_stderr_has("gdbvisor: wrote ");
    assert_eq!(std::fs::read(&out).unwrap(), elf);
    // `-o -`: stdout; no OUT: the base name, in the current directory.
    let stdout = common::gdbvisor()
        .args(["iso", "extract", iso, "boot/mod1.txt", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(stdout.stdout, MODULE_ONE);
    let default_out = common::gdbvisor()
        .args(["iso", "extract", iso, "/boot/mbinfo.elf"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(default_out.status.success());
    assert_eq!(std::fs::read(dir.join("mbinfo.elf")).unwrap(), elf);
    assert_refused(
        &run_gdbvisor(&["iso", "extract", iso, "/boot/nothing"]),
        "/boot/nothing: no such file or directory in the image",
    );
    assert_refused(
        &run_gdbvisor(&["iso", "extract", iso, "/boot"]),
        "/boot is a directory, not a file",
    );
}

#[test]
fn iso_ls_lists_a_directory() {
    if !tools_available("iso ls") {
        return;
    }
    let iso = mbinfo_iso().to_str().unwrap();
    let root = run_gdbvisor(&["iso", "ls", iso]);
    root.assert_status(0);
    assert!(root.stdout.contains("-  boot/\n"), "{root}");
    let boot = run_gdbvisor(&["iso", "ls", iso, "/boot"]);
    boot.assert_status(0);
    let size = std::fs::metadata(kernel_elf("mbinfo")).unwrap().len();
    assert!(
        boot.stdout.contains(&format!("{size:>10}  mbinfo.elf\n"))
            && boot.stdout.contains("  grub/\n")
            && boot.stdout.contains("        10  mod1.txt\n"),
        "{boot}"
    );
    assert_refused(
        &run_gdbvisor(&["iso", "ls", iso, "/boot/mod1.txt"]),
        "/boot/mod1.txt is a file, not a directory",
    );
    assert_refused(
        &run_gdbvisor(&["iso", "ls", "/dev/null"]),
        "not an ISO 9660 image",
    );
}

/// Damaged images (bytes changed where the descriptors, path tables and directories are, or
/// cut short) are errors, never a panic or a hang: a thousand variations of a small image.
#[test]
fn damaged_images_are_errors_not_panics() {
    if !tools_available("--cdrom damaged images") {
        return;
    }
    let good = mkisofs_iso(
        "damage",
        &[
            IsoFile::new("boot/kernel.elf", vec![0x90u8; 3000]),
            IsoFile::new(
                "boot/grub/grub.cfg",
                "menuentry x {\n multiboot2 /boot/kernel.elf\n module2 /boot/kernel.elf\n}\n",
            ),
            IsoFile::new(
                "limine.conf",
                "/x\n protocol: multiboot1\n path: boot():/boot/kernel.elf\n",
            ),
        ],
        &["-J"],
    );
    let bytes = std::fs::read(&good).unwrap();
    let metadata_end = bytes.len().min(96 << 10);
    let damaged = good.with_extension("damaged.iso");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..1000 {
        let mut copy = bytes.clone();
        for _ in 0..1 + next() % 8 {
            let at = 16 * 2048 + (next() as usize) % (metadata_end - 16 * 2048);
            copy[at] = next() as u8;
        }
        if round % 10 == 0 {
            copy.truncate(16 * 2048 + (next() as usize) % (bytes.len() - 16 * 2048));
        }
        std::fs::write(&damaged, &copy).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let _ = gdbvisor::iso::boot_entry::CdromBoot::open(&damaged, None, "", 128 << 20);
            if let Ok(image) = gdbvisor::iso::fs::IsoFs::open(&damaged) {
                let _ = image.list("/");
                let _ = image.list("/boot");
            }
        });
        if outcome.is_err() {
            let kept = good.with_extension(format!("panic-{round}.iso"));
            std::fs::write(&kept, &copy).unwrap();
            panic!("round {round} panicked; the image is {}", kept.display());
        }
    }
}
