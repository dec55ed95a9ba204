//! The framebuffer: the `fb-mb1` (multiboot1) and `fb-mb2` (multiboot2) test kernels draw a
//! pattern into the framebuffer they are given, `--screenshot` writes it, and every pixel is
//! compared with the pattern computed here from the geometry alone. The oracle for what a
//! kernel gets and draws is real GRUB in QEMU: the same kernels on a `grub-mkrescue` ISO, the
//! picture taken with QEMU's `screendump`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::framebuffer::{
    assert_same, drawn_with_pitch, field, first_mismatch, geometry, pattern, read_png, read_ppm,
};
use common::*;

/// Runs `kernel` with `--screenshot` (and `extra` flags); the run and the picture's path.
fn screenshot_run(kernel_name: &str, extra: &[&str]) -> (Run, PathBuf) {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}-{kernel_name}-{}.png",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&png);
    let image = kernel(kernel_name);
    let mut args = vec!["--kernel", image.to_str().unwrap(), "--screenshot"];
    args.push(png.to_str().unwrap());
    args.extend(extra);
    (run_gdbvisor(&args), png)
}

/// The kernel ran to its end, said it drew into a `width` x `height` 32-bit framebuffer at
/// 0xfd000000 reserved in the memory map, and the picture is its pattern.
fn assert_drawn(kernel_name: &str, extra: &[&str], width: u32, height: u32) {
    let (run, png) = screenshot_run(kernel_name, extra);
    run.assert_status(1)
        .assert_stdout_line(&format!(
            "{kernel_name}: framebuffer addr=0xfd000000 pitch={} width={width} height={height} bpp=32 type=1 rgb=16/8,8/8,0/8",
            width * 4
        ))
        .assert_stdout_line(&format!("{kernel_name}: mmap at framebuffer: type=2"))
        .assert_stdout_line(&format!("{kernel_name}: done"))
        .assert_stderr_has(&format!("gdbvisor: wrote {}: {width}x{height}", png.display()));
    assert_same(
        &read_png(&png),
        &pattern(width, height, 4),
        &format!("{kernel_name} {extra:?}"),
    );
}

#[test]
fn multiboot1_video_mode_gets_the_framebuffer_it_asks_for() {
    if kvm_available("framebuffer multiboot1") {
        assert_drawn("fb-mb1", &[], 1024, 768);
    }
}

#[test]
fn multiboot2_framebuffer_tag_gets_the_framebuffer_it_asks_for() {
    if kvm_available("framebuffer multiboot2") {
        assert_drawn("fb-mb2", &[], 800, 600);
    }
}

/// `--framebuffer` overrides the size asked, and the kernels draw with the pitch and size they
/// are given: a kernel that assumed its own 1024x768 would not draw this picture.
#[test]
fn framebuffer_flag_overrides_the_size_asked() {
    if kvm_available("framebuffer --framebuffer") {
        assert_drawn("fb-mb1", &["--framebuffer", "640x480"], 640, 480);
        assert_drawn("fb-mb2", &["--framebuffer", "1280x720"], 1280, 720);
    }
}

/// The comparison can fail: a kernel that used a wrong pitch, or drew only part of the
/// pattern, or a screen of another size, does not pass for the pattern.
#[test]
fn a_wrong_picture_is_told_apart() {
    let right = pattern(800, 600, 4);
    let skewed = drawn_with_pitch(&right, 1024 * 4);
    assert!(first_mismatch(&skewed, &right).is_some());
    assert!(first_mismatch(&drawn_with_pitch(&right, 800 * 4), &right).is_none());
    assert!(first_mismatch(&pattern(800, 600, 3), &right).is_some());
    let result = std::panic::catch_unwind(|| assert_same(&pattern(640, 480, 4), &right, "size"));
    assert!(result.is_err());
}

#[test]
fn bad_framebuffer_sizes_are_refused_with_status_2() {
    for (size, says) in [
        ("800", "\"800\" is not WIDTHxHEIGHT"),
        ("0x600", "each side must be 1 to 4096"),
        ("4096x4096", "at most 28 MiB"),
    ] {
        let run = run_gdbvisor(&["--kernel", "/nonexistent", "--framebuffer", size]);
        run.assert_status(2).assert_stderr_has(says);
    }
}

/// Without a framebuffer `--screenshot` says why on stderr and the exit status stays the
/// kernel's; `--framebuffer` for such a kernel is a note.
#[test]
fn screenshot_without_a_framebuffer_says_so() {
    if !kvm_available("screenshot without framebuffer") {
        return;
    }
    let (run, png) = screenshot_run("mb2-long", &["--framebuffer", "640x480"]);
    run.assert_status(1)
        .assert_stderr_has(
            "gdbvisor: --screenshot: no framebuffer: the kernel asked for none; `monitor vga` shows text mode",
        )
        .assert_stderr_has("gdbvisor: --framebuffer ignored: the kernel asks for no framebuffer");
    assert!(!png.exists());
}

// ------------------------------------------------------------------- the GRUB oracle --- //

/// A GRUB rescue ISO (`grub-mkrescue`) booting `elf` with `command` (multiboot or multiboot2),
/// as the hobby-OS tutorials build theirs.
fn grub_iso(dir: &Path, elf: &Path, command: &str) -> PathBuf {
    let root = dir.join("iso");
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::copy(elf, root.join("boot/kernel.elf")).unwrap();
    std::fs::write(
        root.join("boot/grub/grub.cfg"),
        format!("set timeout=0\nmenuentry \"kernel\" {{\n    {command} /boot/kernel.elf\n}}\n"),
    )
    .unwrap();
    let iso = dir.join("os.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .expect("grub-mkrescue runs");
    assert!(
        out.status.success(),
        "grub-mkrescue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    iso
}

/// Boots `iso` in QEMU (TCG, std VGA, no isa-debug-exit: the kernel halts at its end) until
/// the kernel's `done` line, then takes a `screendump`; the serial output and the picture.
fn qemu_screendump(
    dir: &Path,
    iso: &Path,
    kernel_name: &str,
) -> (String, common::framebuffer::Picture) {
    let (serial, monitor, ppm) = (
        dir.join("serial.txt"),
        dir.join("monitor.sock"),
        dir.join("shot.ppm"),
    );
    let mut qemu = Command::new("qemu-system-x86_64")
        .arg("-cdrom")
        .arg(iso)
        .args(["-m", "128", "-display", "none", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = format!("{kernel_name}: done");
    let text = loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains(&done) || text.contains("FAIL") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let picture = text.contains(&done).then(|| {
        let mut socket = UnixStream::connect(&monitor).expect("QEMU's monitor socket");
        writeln!(socket, "screendump {}", ppm.display()).unwrap();
        loop {
            if let Some(picture) = read_ppm(&ppm) {
                break picture;
            }
            assert!(Instant::now() < deadline, "no screendump from QEMU");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let _ = qemu.kill();
    let _ = qemu.wait();
    let mut stderr = String::new();
    let _ = qemu.stderr.take().unwrap().read_to_string(&mut stderr);
    let picture =
        picture.unwrap_or_else(|| panic!("{kernel_name} under GRUB in QEMU:\n{text}\n{stderr}"));
    (text, picture)
}

/// GRUB in QEMU gives each kernel the framebuffer gdbvisor gives it (width, height, depth,
/// colour layout; address and pitch could differ), and the kernel draws the same picture.
#[test]
fn grub_in_qemu_gives_the_same_framebuffer_and_picture() {
    let test = "framebuffer vs GRUB in QEMU";
    if !kvm_available(test)
        || !tool_available(test, "qemu-system-x86_64", "qemu-system-x86")
        || !tool_available(
            test,
            "grub-mkrescue",
            "grub-common, grub-pc-bin, xorriso, mtools",
        )
    {
        return;
    }
    for (kernel_name, command) in [("fb-mb1", "multiboot"), ("fb-mb2", "multiboot2")] {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}-grub-{kernel_name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let iso = grub_iso(&dir, &kernel_elf(kernel_name), command);
        let (grub_serial, grub_picture) = qemu_screendump(&dir, &iso, kernel_name);
        let (run, png) = screenshot_run(kernel_name, &[]);
        run.assert_status(1);
        let (ours, grubs) = (
            geometry(&run.stdout, kernel_name),
            geometry(&grub_serial, kernel_name),
        );
        for name in ["width", "height", "bpp", "type", "rgb"] {
            assert_eq!(
                field(&ours, name),
                field(&grubs, name),
                "{kernel_name} {name}"
            );
        }
        let ours = read_png(&png);
        assert_same(
            &ours,
            &grub_picture,
            &format!("{kernel_name}: gdbvisor vs GRUB in QEMU"),
        );
        assert_same(
            &grub_picture,
            &pattern(ours.width, ours.height, 4),
            kernel_name,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
