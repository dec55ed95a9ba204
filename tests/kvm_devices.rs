//! The IDE disk, the ATAPI CD-ROM and the PS/2 keyboard, end to end: the `ata`, `atapi` and
//! `keyboard` test kernels (C drivers as hobby kernels write them) run under gdbvisor with
//! its own flags, the disk image is checked afterwards, and, where QEMU is installed, the
//! same kernels run under QEMU TCG with QEMU's flags and must print the same lines.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gdb::{drain, wait_until, DEADLINE};
use common::{kernel, kvm_available, temp_file, tool_available, Run};

/// Sectors of the test disk: 1 MiB.
const SECTORS: usize = 2048;

/// Byte i of sector n is (n + i) mod 251, as `ata.c` checks.
fn pattern(sectors: usize) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| ((i / 512 + i % 512) % 251) as u8)
        .collect()
}

/// The disk after `ata`'s writes: sector 5 is 0x5a ^ i, the last sector 0xc3 ^ i.
fn written(sectors: usize) -> Vec<u8> {
    let mut disk = pattern(sectors);
    for (sector, fill) in [(5, 0x5au8), (sectors - 1, 0xc3)] {
        for i in 0..512 {
            disk[sector * 512 + i] = fill ^ (i as u8);
        }
    }
    disk
}

/// A child process killed (by its PID) and reaped if the test fails before it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// gdbvisor with `args`, killed and reaped past the deadline.
fn gdbvisor(args: &[&str]) -> Run {
    common::run_gdbvisor_within(args)
}

const ATA_WRITES: &[&str] = &[
    "ata: entry",
    "ata: identify sectors=2048 lba48 sectors=2048",
    "ata: no slave",
    "ata: lba28 polled read of 4 sectors ok",
    "ata: lba48 irq read of 2 sectors ok",
    "ata: read multiple (4-sector blocks) of 8 sectors ok",
    "ata: read past the end: error",
    "ata: write sector 5: ok",
    "ata: cache flush: ok",
    "ata: sector 5 reads back as written",
    "ata: lba48 write of the last sector: ok",
    "ata: cache flush ext: ok",
    "ata: done",
];

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn disk(name: &str) -> PathBuf {
    temp_file(name, &pattern(SECTORS))
}

fn run_ata(hda: &str, extra: &[&str]) -> Run {
    let image = kernel("ata");
    let mut args = vec!["--kernel", image.to_str().unwrap(), "--hda", hda];
    args.extend(extra);
    gdbvisor(&args)
}

#[test]
fn ata_reads_and_writes_reach_the_file() {
    if !kvm_available("ata_reads_and_writes_reach_the_file") {
        return;
    }
    let path = disk("ata-rw.img");
    let run = run_ata(path.to_str().unwrap(), &[]);
    assert_eq!(run.status, 1, "{run}");
    assert_eq!(lines(&run.stdout), ATA_WRITES, "{run}");
    assert!(
        std::fs::read(&path).unwrap() == written(SECTORS),
        "the writes are in the file"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn ata_snapshot_and_readonly_leave_the_file_alone() {
    if !kvm_available("ata_snapshot_and_readonly_leave_the_file_alone") {
        return;
    }
    let path = disk("ata-snapshot.img");
    let snapshot = format!("{},snapshot=on", path.display());
    let run = run_ata(&snapshot, &[]);
    assert_eq!(run.status, 1, "{run}");
    assert_eq!(
        lines(&run.stdout),
        ATA_WRITES,
        "the guest sees its writes\n{run}"
    );
    assert!(
        std::fs::read(&path).unwrap() == pattern(SECTORS),
        "snapshot=on: file unchanged"
    );

    let readonly = format!("{},readonly=on", path.display());
    let run = run_ata(&readonly, &[]);
    assert_eq!(run.status, 1, "{run}");
    let out = lines(&run.stdout);
    for line in [
        "ata: write sector 5: error",
        "ata: sector 5 unchanged",
        "ata: lba48 write of the last sector: error",
        "ata: done",
    ] {
        assert!(out.contains(&line), "no {line:?}\n{run}");
    }
    assert!(
        std::fs::read(&path).unwrap() == pattern(SECTORS),
        "readonly=on: file unchanged"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn ata_slave_is_found() {
    if !kvm_available("ata_slave_is_found") {
        return;
    }
    let master = disk("ata-master.img");
    let slave = temp_file("ata-slave.img", &vec![0u8; 4096 * 512]);
    let run = run_ata(
        master.to_str().unwrap(),
        &["--hdb", &format!("{},snapshot=on", slave.display())],
    );
    assert_eq!(run.status, 1, "{run}");
    assert!(run.stdout.contains("ata: slave sectors=4096\n"), "{run}");
    for p in [master, slave] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn bad_images_are_refused_at_start() {
    let partial = temp_file("partial.img", &[0u8; 1000]);
    let image = kernel("ata");
    let run = gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--hda",
        partial.to_str().unwrap(),
    ]);
    assert_eq!(run.status, 2, "{run}");
    assert!(
        run.stderr.contains("whole number of 512-byte sectors")
            && run.stderr.contains("1000 bytes"),
        "{run}"
    );
    let run = gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--hdb",
        "/nonexistent/disk.img",
    ]);
    assert_eq!(run.status, 2, "{run}");
    assert!(run.stderr.contains("/nonexistent/disk.img"), "{run}");
    let run = gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--hda",
        "x.img,cache=none",
    ]);
    assert_eq!(run.status, 2, "{run}");
    std::fs::remove_file(partial).unwrap();
}

/// HELLO.TXT of the test ISOs: `atapi` prints its first line and size.
fn hello_text() -> String {
    (0..200).fold(
        "Hello from the ISO: the kernel read this with READ(10).\n".to_string(),
        |acc, i| acc + &format!("padding line {i}\n"),
    )
}

/// An ISO with HELLO.TXT in its root directory, made with xorriso.
fn iso(name: &str) -> Option<PathBuf> {
    if !tool_available(name, "xorriso", "xorriso") {
        return None;
    }
    let files = [common::iso::IsoFile::new("hello.txt", hello_text())];
    Some(common::iso::mkisofs_iso(name, &files, &[]))
}

fn atapi_expected(size: u64, blocks: u64) -> Vec<String> {
    let text = format!(
        "atapi: entry
atapi: signature 0x14 0xeb
atapi: identify device aborted
atapi: identify packet device: cd-rom
atapi: test unit ready: ok
atapi: inquiry: cd-rom, removable
atapi: capacity {blocks} blocks of 2048 bytes"
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(format!(
        "atapi: HELLO.TXT {size} bytes, hash HASH, 512-byte chunks"
    ));
    lines.push("atapi: first line: Hello from the ISO: the kernel read this with READ(10).".into());
    lines.push("atapi: read past the end: illegal request".into());
    lines.push("atapi: done".into());
    lines
}

/// The Java-style hash `atapi.c` prints: h = h * 31 + byte, 32-bit.
fn text_hash(text: &[u8]) -> u32 {
    text.iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

#[test]
fn atapi_reads_a_file_of_its_iso() {
    if !kvm_available("atapi_reads_a_file_of_its_iso") {
        return;
    }
    let Some(iso) = iso("atapi-kernel") else {
        return;
    };
    let image = kernel("atapi");
    let run = gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--ide-cdrom",
        iso.to_str().unwrap(),
    ]);
    assert_eq!(run.status, 1, "{run}");
    let blocks = std::fs::metadata(&iso).unwrap().len() / 2048;
    let text = hello_text();
    let expected: Vec<String> = atapi_expected(text.len() as u64, blocks)
        .into_iter()
        .map(|l| l.replace("HASH", &format!("{:#x}", text_hash(text.as_bytes()))))
        .collect();
    assert_eq!(lines(&run.stdout), expected, "{run}");
}

/// `--cdrom` boots the kernel its grub.cfg names and is its CD-ROM too, as under QEMU.
#[test]
fn the_booted_iso_is_the_cdrom() {
    let test = "the_booted_iso_is_the_cdrom";
    if !kvm_available(test) || !common::iso::tools_available(test) {
        return;
    }
    let files = [
        common::iso::IsoFile::copy("boot/atapi.bin", &kernel("atapi")),
        common::iso::IsoFile::new("hello.txt", hello_text()),
    ];
    let grub_cfg = "set timeout=0\nmenuentry \"atapi\" {\n  multiboot /boot/atapi.bin\n}\n";
    let iso = common::iso::grub_iso("booted-cdrom", &files, grub_cfg);
    let run = gdbvisor(&["--cdrom", iso.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{run}");
    let text = hello_text();
    for line in [
        "atapi: identify packet device: cd-rom".to_string(),
        format!(
            "atapi: HELLO.TXT {} bytes, hash {:#x}, 512-byte chunks",
            text.len(),
            text_hash(text.as_bytes())
        ),
        "atapi: done".to_string(),
    ] {
        assert!(
            lines(&run.stdout).contains(&line.as_str()),
            "no {line:?}\n{run}"
        );
    }
}

const TYPED: &str = "Hello, World! (a|b) ~ok~";

fn keyboard_expected() -> Vec<String> {
    [
        "keyboard: entry",
        "keyboard: system flag set",
        "keyboard: controller self test passed",
        "keyboard: port test passed",
        "keyboard: reset, self test passed",
        "keyboard: echo",
        "keyboard: ready",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("keyboard: typed: {TYPED}"),
        "keyboard: enter, done".to_string(),
    ])
    .collect()
}

#[test]
fn keyboard_echoes_scripted_keys() {
    if !kvm_available("keyboard_echoes_scripted_keys") {
        return;
    }
    let image = kernel("keyboard");
    let keys = format!("{TYPED}\\n");
    let run = gdbvisor(&["--kernel", image.to_str().unwrap(), "--keys", &keys]);
    assert_eq!(run.status, 1, "{run}");
    assert_eq!(lines(&run.stdout), keyboard_expected(), "{run}");
}

#[test]
fn monitor_sendkey_types_at_a_stop() {
    if !kvm_available("monitor_sendkey_types_at_a_stop")
        || !tool_available("monitor_sendkey_types_at_a_stop", "gdb", "gdb")
    {
        return;
    }
    let image = kernel("keyboard");
    let run = common::gdb::gdb(
        None,
        &common::gdb::cmds(&[
            &common::gdb::stdio_target(&image, ""),
            "monitor sendkey Hi there\\n",
            "continue",
        ]),
    );
    assert!(
        run.stdout.contains("scan-code bytes queued")
            || run.stderr.contains("scan-code bytes queued"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("keyboard: typed: Hi there\nkeyboard: enter, done"),
        "{run}"
    );
}

// ------------------------------------------------------------------ QEMU side by side --- //

/// QEMU's `sendkey` name of the key that types `c` (US layout).
fn qemu_key(c: char) -> String {
    let shifted = "~!@#$%^&*()_+{}|:\"<>?";
    let plain = "`1234567890-=[]\\;',./";
    let names = [
        ('`', "grave_accent"),
        ('-', "minus"),
        ('=', "equal"),
        ('[', "bracket_left"),
        (']', "bracket_right"),
        ('\\', "backslash"),
        (';', "semicolon"),
        ('\'', "apostrophe"),
        (',', "comma"),
        ('.', "dot"),
        ('/', "slash"),
        (' ', "spc"),
        ('\n', "ret"),
    ];
    let name = |c: char| {
        names.iter().find(|(k, _)| *k == c).map_or_else(
            || c.to_ascii_lowercase().to_string(),
            |(_, n)| n.to_string(),
        )
    };
    if let Some(i) = shifted.find(c) {
        format!("shift-{}", name(plain.as_bytes()[i] as char))
    } else if c.is_ascii_uppercase() {
        format!("shift-{}", name(c))
    } else {
        name(c)
    }
}

/// Runs QEMU TCG (`-M pc`, isa-debug-exit) with `args`; with `keys`, types them through the
/// monitor's `sendkey` once the serial output has `ready`. Returns (serial output, status).
fn qemu(test: &str, args: &[&str], keys: Option<(&str, &str)>) -> (String, i32) {
    let serial = temp_file(&format!("{test}-serial"), b"");
    let monitor = serial.with_extension("monitor");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-M",
        "pc",
        "-m",
        "128M",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .arg("-monitor")
    .arg(format!("unix:{},server=on,wait=off", monitor.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn().expect("qemu starts"));
    let stderr = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE * 3;
    if let Some((ready, text)) = keys {
        while !std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .contains(ready)
        {
            assert!(Instant::now() < deadline, "QEMU never printed {ready:?}");
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut socket = UnixStream::connect(&monitor).expect("QEMU monitor socket");
        // Each key held 10 ms and released before the next is sent: keys that overlap in
        // QEMU's input queue can lose their Shift on a loaded machine.
        for c in text.chars() {
            writeln!(socket, "sendkey {} 10", qemu_key(c)).unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
    }
    let status = wait_until(&mut child.0, deadline).unwrap_or(-1);
    let out = std::fs::read_to_string(&serial).unwrap_or_default();
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&monitor);
    assert_ne!(
        status,
        -1,
        "QEMU hung; serial:\n{out}\nstderr:\n{}",
        stderr.recv_timeout(DEADLINE).unwrap_or_default()
    );
    (out, status)
}

fn qemu_available(test: &str) -> bool {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: qemu-system-x86_64 not installed");
    }
    found
}

/// One kernel run both ways: gdbvisor's flags and QEMU's for the same machine.
struct SideBySide<'a> {
    kernel: &'static str,
    gdbvisor: Vec<String>,
    qemu: Vec<String>,
    keys: Option<(&'a str, &'a str)>,
}

#[test]
fn same_output_as_qemu() {
    let test = "same_output_as_qemu";
    if !kvm_available(test) || !qemu_available(test) {
        return;
    }
    let ours = disk("side-ours.img");
    let theirs = disk("side-qemu.img");
    let cd = iso("side-by-side");
    let typed = format!("{TYPED}\n");
    let mut cases = vec![
        SideBySide {
            kernel: "ata",
            gdbvisor: vec!["--hda".into(), ours.display().to_string()],
            qemu: vec![
                "-drive".into(),
                format!("file={},format=raw,if=ide", theirs.display()),
            ],
            keys: None,
        },
        SideBySide {
            kernel: "keyboard",
            gdbvisor: vec!["--keys".into(), format!("{TYPED}\\n")],
            qemu: vec![],
            keys: Some(("keyboard: ready", &typed)),
        },
    ];
    if let Some(cd) = &cd {
        cases.push(SideBySide {
            kernel: "atapi",
            gdbvisor: vec!["--ide-cdrom".into(), cd.display().to_string()],
            qemu: vec!["-cdrom".into(), cd.display().to_string()],
            keys: None,
        });
    }
    for case in &cases {
        let image = kernel(case.kernel);
        let mut args = vec!["--kernel".to_string(), image.display().to_string()];
        args.extend(case.gdbvisor.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = gdbvisor(&args);
        let mut qargs = vec!["-kernel".to_string(), image.display().to_string()];
        qargs.extend(case.qemu.iter().cloned());
        let qargs: Vec<&str> = qargs.iter().map(String::as_str).collect();
        let (qemu_out, qemu_status) = qemu(&format!("{test}-{}", case.kernel), &qargs, case.keys);
        assert_eq!(
            (ran.stdout.as_str(), ran.status),
            (qemu_out.as_str(), qemu_status),
            "{}: gdbvisor (left) and QEMU (right) differ\n{ran}",
            case.kernel
        );
    }
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "the disk images differ after the ata kernel"
    );
    for p in [ours, theirs] {
        std::fs::remove_file(p).unwrap();
    }
}

// ------------------------------------------------------------------------ terminal --- //

/// The settings of the terminal `fd`.
fn termios(fd: i32) -> libc::termios {
    // SAFETY: termios is plain data, filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and termios pointer.
    assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
    t
}

#[test]
fn terminal_keys_reach_the_keyboard_and_the_terminal_is_restored() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if !kvm_available("terminal_keys_reach_the_keyboard_and_the_terminal_is_restored") {
        return;
    }
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; the name, settings and size are optional.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let before = termios(slave.as_raw_fd());
    assert_ne!(before.c_lflag & libc::ICANON, 0, "a fresh pty is canonical");
    let image = kernel("keyboard");
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_gdbvisor"))
            .args(["--kernel", image.to_str().unwrap(), "--stdin", "keyboard"])
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdbvisor runs"),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let stderr = drain(child.0.stderr.take().unwrap());
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&seen).contains("keyboard: ready") {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap();
        assert!(
            n > 0 && Instant::now() < deadline,
            "no ready line: {seen:?}"
        );
        seen.extend(&buf[..n]);
    }
    let during = termios(slave.as_raw_fd());
    assert_eq!(
        during.c_lflag & (libc::ICANON | libc::ECHO),
        0,
        "keys one by one, unechoed"
    );
    assert_ne!(during.c_lflag & libc::ISIG, 0, "Ctrl-C still a signal");
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    writer.write_all(b"Hi!\r").unwrap();
    let status = wait_until(&mut child.0, deadline).unwrap_or(-1);
    stdout.read_to_end(&mut seen).unwrap();
    let out = String::from_utf8_lossy(&seen);
    assert_eq!(
        status,
        1,
        "{out}\n{}",
        stderr.recv_timeout(DEADLINE).unwrap_or_default()
    );
    assert!(
        out.contains("keyboard: typed: Hi!\nkeyboard: enter, done"),
        "{out}"
    );
    let after = termios(slave.as_raw_fd());
    assert_eq!(after.c_lflag, before.c_lflag, "the terminal is restored");
    drop(master);
}
