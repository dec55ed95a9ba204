use std::ffi::OsString;
use std::path::PathBuf;

use super::*;
use crate::qemu::options::parse;

fn line(args: &[&str]) -> Result<Translation, QemuArgsError> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    translate(&parse(&args)?)
}

/// The gdbvisor command line, without the program name.
fn gdbvisor(args: &[&str]) -> String {
    let translation = line(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    translation
        .shell_line()
        .strip_prefix("gdbvisor ")
        .unwrap()
        .to_string()
}

/// A file for the disk tests, removed when dropped.
struct TempImage(PathBuf);

impl TempImage {
    fn new(name: &str, bytes: &[u8]) -> TempImage {
        let path =
            std::env::temp_dir().join(format!("gdbvisor-qemu-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempImage(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn boot_sector() -> Vec<u8> {
    let mut sector = vec![0xf4; 512];
    sector[510..].copy_from_slice(&[0x55, 0xAA]);
    sector
}

#[test]
fn kernel_lines_map_flag_for_flag() {
    let table: &[(&[&str], &str)] = &[
        (
            &["-kernel", "k.elf", "-serial", "stdio", "-display", "none", "-no-reboot"],
            "--kernel=k.elf --serial=stdout --debugcon=null",
        ),
        (
            &[
                "-kernel", "k.elf", "-append", "a b", "-initrd", "m1 x,m2", "-m", "512M", "-smp",
                "2", "-s", "-S",
            ],
            "--kernel=k.elf '--initrd=m1 x,m2' '--append=a b' --memory=512M --cpus=2 -s -S --serial=stdout --debugcon=null",
        ),
        (
            &["-kernel", "k", "-gdb", "tcp::4321", "-debugcon", "file:dc.txt", "-nographic"],
            "--kernel=k --gdb=tcp::4321 --serial=stdout --debugcon=file:dc.txt",
        ),
        (
            &["-kernel", "k", "-gdb", "unix:/tmp/g.sock,server=on,wait=off", "-serial", "null"],
            "--kernel=k --gdb=unix:/tmp/g.sock --serial=null --debugcon=null",
        ),
        (
            &["-kernel", "k", "-d", "int,cpu_reset", "-D", "q.log", "-no-shutdown", "-s"],
            "--kernel=k -s --serial=stdout --debugcon=null --trace-exceptions=q.log",
        ),
        (
            &[
                "-kernel", "k", "-m", "size=1G,slots=2,maxmem=4G", "-smp", "cores=2,threads=2",
                "-serial", "mon:stdio", "-display", "none",
            ],
            "--kernel=k --memory=1G --cpus=4 --serial=stdout --debugcon=null",
        ),
        (
            &[
                "-enable-kvm", "-accel", "kvm", "-cpu", "host", "-name", "os", "-rtc", "base=utc",
                "-vga", "std", "-M", "pc,accel=kvm", "-monitor", "none", "-net", "none",
                "--kernel=k", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-nographic",
            ],
            "--kernel=k --serial=stdout --debugcon=null",
        ),
        (
            &["-cdrom", "os.iso", "-boot", "d", "-M", "q35", "-m", "2G", "-display", "none"],
            "--cdrom=os.iso --memory=2G --serial=stdout --debugcon=null",
        ),
    ];
    for (qemu, expected) in table {
        let got = gdbvisor(qemu);
        // The keyboard flag follows from the display; compare without it.
        let got = got.replace(" --stdin=keyboard", "");
        assert_eq!(&got, expected, "{qemu:?}");
    }
}

#[test]
fn translations_parse_as_gdbvisor_command_lines() {
    let translation =
        line(&["-kernel", "k", "-append", "-v --x", "-s", "-S", "-d", "int"]).unwrap();
    let cli = translation.cli().unwrap();
    assert_eq!(cli.run.cmdline, "-v --x");
    assert!(cli.run.wait);
    assert_eq!(cli.run.trace_exceptions, Some(None));
    let with_extra = line(&["-kernel", "k", "--", "--expect-exit", "0"]).unwrap();
    assert_eq!(with_extra.cli().unwrap().run.expect_exit, Some(0));
}

#[test]
fn refused_flags_name_the_flag_and_what_to_do() {
    let table: &[(&[&str], &str)] = &[
        (
            &["-kernel", "k", "-bios", "OVMF.fd"],
            "-bios: gdbvisor has no firmware",
        ),
        (
            &["-kernel", "k", "-fda", "f.img"],
            "-fda: gdbvisor has no floppy controller",
        ),
        (
            &["-kernel", "k", "-device", "e1000"],
            "-device e1000: gdbvisor has no such device model",
        ),
        (
            &["-kernel", "k", "-netdev", "user,id=n"],
            "-netdev: gdbvisor has no network device",
        ),
        (&["-kernel", "k", "-usb"], "-usb: gdbvisor has no USB"),
        (
            &["-kernel", "k", "-frob"],
            "-frob: not a QEMU flag gdbvisor knows",
        ),
        (
            &["-kernel", "k", "-drive", "file=d.qcow2,format=qcow2"],
            "convert with `qemu-img convert -O raw",
        ),
        (
            &["-kernel", "k", "-drive", "file=d.img,if=virtio"],
            "use if=ide",
        ),
        (
            &["-kernel", "k", "-device", "isa-debug-exit"],
            "gdbvisor's isa-debug-exit is at port 0xf4",
        ),
        (
            &["-kernel", "k", "-serial", "pty"],
            "-serial pty: gdbvisor writes to stdio, file:PATH or null",
        ),
        (
            &["-kernel", "k", "-d", "in_asm"],
            "-d in_asm: gdbvisor logs int",
        ),
        (
            &["-kernel", "k", "-M", "virt"],
            "-M virt: gdbvisor's machine is a PC",
        ),
        (
            &["-kernel", "k", "-s", "-gdb", "tcp::1"],
            "gdbvisor serves one gdb endpoint",
        ),
        (
            &["-cdrom", "os.iso", "-append", "x"],
            "-append: only allowed with -kernel",
        ),
        (&["-m"], "-m needs a value"),
        (
            &["-kernel", "k", "-initrd", "m a,,b"],
            "-initrd: a module string with a comma",
        ),
        (
            &["-kernel", "k", "-m", "lots"],
            "-m lots: 'lots' is not a size",
        ),
        (
            &["-kernel", "k", "-smp", "0"],
            "-smp 0: give a number of CPUs",
        ),
        (&["-display", "none"], "nothing to boot"),
    ];
    for (qemu, expected) in table {
        let err = line(qemu)
            .expect_err(&format!("{qemu:?} was accepted"))
            .to_string();
        assert!(err.contains(expected), "{qemu:?}: {err}");
        assert!(!err.contains('\n'), "{qemu:?}: more than one line: {err}");
    }
}

#[test]
fn display_windows_warn_and_point_at_screenshots() {
    let translation = line(&["-kernel", "k", "-display", "gtk", "-vga", "cirrus"]).unwrap();
    assert_eq!(translation.warnings.len(), 2, "{:?}", translation.warnings);
    assert!(translation.warnings[0].contains("--screenshot"));
    let quiet = line(&[
        "-kernel", "k", "-display", "none", "-vga", "std", "-cpu", "max",
    ])
    .unwrap();
    assert_eq!(quiet.warnings, Vec::<String>::new());
    let alone = line(&["-kernel", "k", "-no-shutdown"]).unwrap();
    assert!(alone.warnings[0].contains("-no-shutdown without -s or -gdb"));
}

#[test]
fn a_disk_boots_its_boot_sector_when_the_boot_order_reaches_it() {
    let bootable = TempImage::new("boot.img", &boot_sector());
    let blank = TempImage::new("blank.img", &[0; 1024]);
    let boots = gdbvisor(&["-hda", bootable.path(), "-display", "none"]);
    assert!(
        boots.starts_with(&format!("--kernel={} --format=flat", bootable.path())),
        "{boots}"
    );
    // -boot d, or a disk without a boot signature, leaves the CD to boot (the disk is then an
    // IDE disk only).
    for hda in [bootable.path(), blank.path()] {
        let order = if hda == blank.path() { "cad" } else { "d" };
        let cd = gdbvisor(&["-hda", hda, "-cdrom", "os.iso", "-boot", order]);
        assert!(cd.starts_with("--cdrom=os.iso"), "{cd}");
    }
    let err = line(&["-hda", blank.path()]).unwrap_err().to_string();
    assert!(err.starts_with("nothing to boot"), "{err}");
    let err = line(&["-kernel", "k", "-hda", bootable.path(), "-M", "q35"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("q35 puts disks on AHCI"), "{err}");
    let qcow = TempImage::new("d.qcow2", b"QFI\xfb\0\0\0\x03");
    let err = line(&["-kernel", "k", "-hda", qcow.path()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("a qcow2 image"), "{err}");
}

#[test]
fn drives_take_their_slots() {
    let disk = TempImage::new("slots.img", &[0; 512]);
    let d = disk.path();
    let mapped = gdbvisor(&[
        "-kernel",
        "k",
        "-drive",
        &format!("file={d},format=raw,if=ide,index=1,readonly=on"),
        "-drive",
        &format!("file={d},format=raw"),
        "-snapshot",
    ]);
    assert!(
        mapped.contains(&format!("--hda={d},snapshot=on --hdb={d},readonly=on")),
        "{mapped}"
    );
}
