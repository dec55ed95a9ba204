//! `gdbvisor qemu`: test kernels run with QEMU's own command lines give what gdbvisor's own
//! flags give (serial output and exit status); where QEMU is installed, QEMU TCG with the same
//! flags prints the same; refused flags are one line and status 2; the `qemu-system-*` shims run
//! a Makefile's QEMU line on gdbvisor.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::iso::{grub_iso, tools_available, IsoFile};
use common::{kernel, kernel_elf, kvm_available, run_gdbvisor, tool_available, Run};

/// A file under the target's temporary directory, unique to this test process.
fn temp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("qemu-{}-{name}", std::process::id()))
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// One kernel run both ways.
struct Row {
    what: &'static str,
    qemu: Vec<String>,
    gdbvisor: Vec<String>,
    status: i32,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn run(args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_gdbvisor(&args)
}

fn qemu_run(args: &[String]) -> Run {
    let mut all = vec!["qemu".to_string()];
    all.extend(args.iter().cloned());
    run(&all)
}

const EXIT_DEVICE: [&str; 2] = ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"];

/// The table: each QEMU command line beside the gdbvisor one it stands for.
fn rows() -> Vec<Row> {
    let mbinfo = path(&kernel_elf("mbinfo"));
    let module = path(&kernel("tiny"));
    let modes = path(&kernel("modes"));
    let mb2 = path(&kernel_elf("mb2-long"));
    let elf64 = path(&kernel_elf("elf64"));
    let triple = path(&kernel("triple"));
    let trace_qemu = path(&temp("int-qemu.log"));
    let trace_own = path(&temp("int-own.log"));
    let modules = format!("{module} first arg,{module}");
    vec![
        Row {
            what: "multiboot1 with -append, -initrd, -m, -smp",
            qemu: strings(&[
                "-kernel",
                &mbinfo,
                "-append",
                "hello world",
                "-initrd",
                &modules,
                "-m",
                "64M",
                "-smp",
                "1",
                "-serial",
                "stdio",
                "-display",
                "none",
                "-no-reboot",
            ]),
            gdbvisor: strings(&[
                "--kernel",
                &mbinfo,
                "--append",
                "hello world",
                "--initrd",
                &modules,
                "-m",
                "64M",
                "--debugcon",
                "null",
            ]),
            status: 1,
        },
        Row {
            what: "multiboot2 ELF64 with the isa-debug-exit device and QEMU's no-op flags",
            qemu: strings(&[
                "-enable-kvm",
                "-M",
                "pc,accel=kvm",
                "-cpu",
                "host",
                "-name",
                "t",
                "-rtc",
                "base=utc",
                "-vga",
                "std",
                "-monitor",
                "none",
                "-kernel",
                &mb2,
                "-nographic",
                EXIT_DEVICE[0],
                EXIT_DEVICE[1],
            ]),
            gdbvisor: strings(&["--kernel", &mb2, "--debugcon", "null"]),
            status: 1,
        },
        Row {
            what: "ELF64 with -debugcon stdio",
            qemu: strings(&["--kernel", &elf64, "--debugcon=stdio", "--serial=stdio"]),
            gdbvisor: strings(&["--kernel", &elf64]),
            status: 67,
        },
        Row {
            what: "-d int -D FILE is --trace-exceptions=FILE",
            qemu: strings(&[
                "-kernel",
                &elf64,
                "-d",
                "int,cpu_reset,guest_errors",
                "-D",
                &trace_qemu,
                "-serial",
                "stdio",
                "-display",
                "none",
            ]),
            gdbvisor: strings(&[
                "--kernel",
                &elf64,
                &format!("--trace-exceptions={trace_own}"),
                "--debugcon",
                "null",
            ]),
            status: 67,
        },
        Row {
            what: "a boot-sector disk alone (-hda): its first sector runs at 0x7c00",
            qemu: strings(&["-hda", &modes, "-serial", "stdio", "-display", "none"]),
            gdbvisor: strings(&["--kernel", &modes, "--format", "flat", "--debugcon", "null"]),
            status: 1,
        },
        Row {
            what: "a triple fault with -no-reboot -no-shutdown",
            qemu: strings(&[
                "-hda",
                &triple,
                "-serial",
                "stdio",
                "-no-reboot",
                "-no-shutdown",
                "-d",
                "cpu_reset",
            ]),
            gdbvisor: strings(&[
                "--kernel",
                &triple,
                "--format",
                "flat",
                "--debugcon",
                "null",
            ]),
            status: 4,
        },
    ]
}

#[test]
fn qemu_command_lines_run_as_gdbvisor_flags_do() {
    if !kvm_available("qemu_command_lines_run_as_gdbvisor_flags_do") {
        return;
    }
    for row in rows() {
        let through_qemu = qemu_run(&row.qemu);
        let own = run(&row.gdbvisor);
        assert_eq!(
            through_qemu.status, row.status,
            "{}: gdbvisor qemu {:?}\n{through_qemu}",
            row.what, row.qemu
        );
        assert_eq!(
            own.status, row.status,
            "{}: gdbvisor {:?}\n{own}",
            row.what, row.gdbvisor
        );
        assert_eq!(
            through_qemu.stdout, own.stdout,
            "{}: serial output differs\n{through_qemu}\n{own}",
            row.what
        );
        assert!(!own.stdout.is_empty(), "{}: no output\n{own}", row.what);
    }
    let traced = |name| std::fs::read_to_string(temp(name)).unwrap_or_default();
    let (qemu_trace, own_trace) = (traced("int-qemu.log"), traced("int-own.log"));
    assert!(
        qemu_trace.contains("#BP"),
        "-d int wrote no exception:\n{qemu_trace}"
    );
    assert_eq!(qemu_trace, own_trace);
}

/// `-cdrom os.iso -boot d` boots what the ISO's grub.cfg names, as `--cdrom` does.
#[test]
fn cdrom_boots_the_iso_as_cdrom_does() {
    if !kvm_available("cdrom_boots_the_iso_as_cdrom_does")
        || !tools_available("cdrom_boots_the_iso_as_cdrom_does")
    {
        return;
    }
    let iso = grub_iso(
        "qemu-cli-mbinfo",
        &[IsoFile::copy("boot/mbinfo.elf", &kernel_elf("mbinfo"))],
        "menuentry \"mbinfo\" {\n    multiboot /boot/mbinfo.elf from the iso\n}\n",
    );
    let iso = path(&iso);
    let through_qemu = qemu_run(&strings(&[
        "-cdrom", &iso, "-boot", "d", "-M", "q35", "-m", "256M", "-serial", "stdio", "-display",
        "none",
    ]));
    let own = run(&strings(&[
        "--cdrom",
        &iso,
        "-m",
        "256M",
        "--debugcon",
        "null",
    ]));
    through_qemu.assert_status(1);
    own.assert_status(1);
    assert_eq!(through_qemu.stdout, own.stdout);
    own.assert_stdout_line("mbinfo: cmdline=from the iso");
}

/// Runs `qemu-system-x86_64` with `args` under a deadline, killed and reaped by PID past it.
fn real_qemu(args: &[String]) -> Run {
    let mut child = Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    let stdout = common::gdb::drain(child.stdout.take().unwrap());
    let stderr = common::gdb::drain(child.stderr.take().unwrap());
    let status = common::gdb::wait_until(&mut child, Instant::now() + Duration::from_secs(60));
    let collect = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default()
    };
    let run = Run {
        status: status.unwrap_or(-1),
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    assert!(status.is_some(), "QEMU hung and was killed\n{run}");
    run
}

/// QEMU TCG, given the same flags, prints what `gdbvisor qemu` prints: a multiboot1 kernel
/// through -kernel, and a boot sector through -drive (under QEMU, SeaBIOS boots it).
#[test]
fn real_qemu_prints_the_same_for_the_same_flags() {
    if !kvm_available("real_qemu_prints_the_same_for_the_same_flags")
        || !tool_available(
            "real_qemu_prints_the_same_for_the_same_flags",
            "qemu-system-x86_64",
            "qemu-system-x86",
        )
    {
        return;
    }
    let segments = path(&kernel_elf("segments"));
    let modes = path(&kernel("modes"));
    let common_flags = [
        "-M",
        "pc",
        "-m",
        "64M",
        "-serial",
        "stdio",
        "-display",
        "none",
        "-no-reboot",
        EXIT_DEVICE[0],
        EXIT_DEVICE[1],
    ];
    for boot in [
        strings(&["-kernel", &segments]),
        strings(&[
            "-drive",
            &format!("file={modes},format=raw,if=ide"),
            "-boot",
            "c",
        ]),
    ] {
        let mut flags = strings(&common_flags);
        flags.extend(boot);
        let qemu = real_qemu(&flags);
        let ours = qemu_run(&flags);
        assert_eq!(ours.status, qemu.status, "{flags:?}\n{ours}\n{qemu}");
        assert_eq!(ours.stdout, qemu.stdout, "{flags:?}\n{ours}\n{qemu}");
        assert!(!ours.stdout.is_empty());
    }
}

/// What gdbvisor cannot do is one line on stderr naming the flag, and status 2.
#[test]
fn refused_flags_are_one_line_and_status_2() {
    let elf = path(&kernel_elf("elf64"));
    let qcow = temp("disk.qcow2");
    std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03").unwrap();
    let qcow = path(&qcow);
    let table: &[(&[&str], &str)] = &[
        (&["-bios", "OVMF.fd"], "-bios: gdbvisor has no firmware"),
        (
            &["-fda", "floppy.img"],
            "-fda: gdbvisor has no floppy controller",
        ),
        (&["-hda", &qcow], "a qcow2 image"),
        (
            &["-device", "virtio-net"],
            "-device virtio-net: gdbvisor has no such device",
        ),
        (
            &["-netdev", "user,id=n0"],
            "-netdev: gdbvisor has no network device",
        ),
        (&["-usb"], "-usb: gdbvisor has no USB"),
        (&["-M", "q35", "-hda", &elf], "q35 puts disks on AHCI"),
        (
            &["-device", "isa-debug-exit,iobase=0x501"],
            "is at port 0xf4",
        ),
        (&["-d", "in_asm"], "-d in_asm"),
        (
            &["-no-such-flag"],
            "-no-such-flag: not a QEMU flag gdbvisor knows",
        ),
    ];
    for (flags, expected) in table {
        let mut args = vec!["qemu", "-kernel", &elf];
        args.extend(*flags);
        let refused = run_gdbvisor(&args);
        refused.assert_status(2).assert_stderr_has(expected);
        assert_eq!(refused.stderr.lines().count(), 1, "{flags:?}\n{refused}");
        assert!(refused.stderr.starts_with("gdbvisor qemu: "), "{refused}");
    }
}

/// `--install-shims DIR`, then a Makefile's `run` target unchanged with DIR first in PATH, and
/// the one-word change `QEMU = gdbvisor qemu`: both print what gdbvisor prints.
#[test]
fn shims_run_a_makefile_unchanged() {
    if !kvm_available("shims_run_a_makefile_unchanged") {
        return;
    }
    let dir = temp("shims");
    let installed = run_gdbvisor(&["qemu", "--install-shims", &path(&dir)]);
    installed.assert_status(0);
    assert!(installed.stdout.contains("make run"), "{installed}");
    for name in ["qemu-system-x86_64", "qemu-system-i386"] {
        assert!(dir.join(name).exists(), "{name} not installed\n{installed}");
    }
    let mb2 = path(&kernel_elf("mb2-long"));
    let own = run(&strings(&["--kernel", &mb2, "--debugcon", "null"]));
    own.assert_status(1);
    let path_var = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = |line: &str| -> Run {
        let output = Command::new("sh")
            .args(["-c", line])
            .env("PATH", &path_var)
            .env("KERNEL", &mb2)
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    let direct =
        shell(r#"qemu-system-x86_64 -kernel "$KERNEL" -serial stdio -display none -no-reboot"#);
    direct.assert_status(1);
    assert_eq!(direct.stdout, own.stdout, "{direct}");
    if !tool_available("shims_run_a_makefile_unchanged", "make", "make") {
        return;
    }
    let makefile = dir.join("Makefile");
    std::fs::write(
        &makefile,
        "QEMU ?= qemu-system-i386\n\
         QEMUFLAGS = -serial stdio -display none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04\n\
         run:\n\t$(QEMU) -kernel $(KERNEL) $(QEMUFLAGS)\n",
    )
    .unwrap();
    let make = |extra: &str| shell(&format!("make -s -f '{}' run {extra}", makefile.display()));
    // Unchanged: the shim answers to qemu-system-i386. make reports the guest's status 1 as
    // its own failure (status 2), as with QEMU.
    let shimmed = make("");
    assert_eq!(shimmed.stdout, own.stdout, "{shimmed}");
    let gdbvisor = env!("CARGO_BIN_EXE_gdbvisor");
    let one_word = make(&format!("QEMU='{gdbvisor} qemu'"));
    assert_eq!(one_word.stdout, own.stdout, "{one_word}");
    assert_eq!(one_word.status, shimmed.status);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The disk kernel through `-drive …,if=ide` and the keyboard kernel with `-- --keys`: what
/// gdbvisor's `--hda`/`--keys` give, and the same bytes written to the disk image.
#[test]
fn disk_and_keys_through_qemu_flags() {
    if !kvm_available("disk_and_keys_through_qemu_flags") {
        return;
    }
    // Byte i of sector n is (n + i) mod 251, as the `ata` kernel checks; 1 MiB.
    let pattern: Vec<u8> = (0..2048 * 512)
        .map(|i| ((i / 512 + i % 512) % 251) as u8)
        .collect();
    let disk = |name: &str| {
        let file = temp(name);
        std::fs::write(&file, &pattern).unwrap();
        path(&file)
    };
    let ata = path(&kernel("ata"));
    let (qemu_disk, own_disk) = (disk("ata-qemu.img"), disk("ata-own.img"));
    let drive = format!("file={qemu_disk},format=raw,if=ide,index=0,media=disk");
    let through_qemu = qemu_run(&strings(&[
        "-M", "pc", "-kernel", &ata, "-drive", &drive, "-serial", "stdio", "-display", "none",
    ]));
    let own = run(&strings(&[
        "--kernel",
        &ata,
        "--hda",
        &own_disk,
        "--debugcon",
        "null",
    ]));
    through_qemu
        .assert_status(1)
        .assert_stdout_line("ata: done");
    assert_eq!(through_qemu.stdout, own.stdout, "{through_qemu}\n{own}");
    assert_eq!(own.status, 1, "{own}");
    assert!(std::fs::read(&qemu_disk).unwrap() == std::fs::read(&own_disk).unwrap());
    assert!(
        std::fs::read(&qemu_disk).unwrap() != pattern,
        "the writes reached the file"
    );
    let keyboard = path(&kernel("keyboard"));
    let typed = "hello from make\\n";
    let through_qemu = qemu_run(&strings(&[
        "-kernel", &keyboard, "-serial", "stdio", "-display", "none", "--", "--keys", typed,
    ]));
    let own = run(&strings(&[
        "--kernel",
        &keyboard,
        "--keys",
        typed,
        "--debugcon",
        "null",
    ]));
    through_qemu
        .assert_status(1)
        .assert_stdout_line("keyboard: typed: hello from make");
    assert_eq!(through_qemu.stdout, own.stdout, "{through_qemu}\n{own}");
    for file in [qemu_disk, own_disk] {
        let _ = std::fs::remove_file(file);
    }
}
