//! A real-world guest for the Linux tests: Debian's cloud kernel package, fetched with
//! `apt-get download` once and cached under `target/debian-kernel/`.
//!
//! The package's `vmlinuz` is a bzImage; its payload (the compressed `vmlinux`) is unpacked on
//! the host with the matching tool (lz4, xz, zstd, gzip) into `vmlinux`, a PVH-capable ELF.
//! Under CI (`CI=true`) a failure to fetch fails the test; elsewhere the test prints why it
//! skips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The meta-package whose dependency names the current kernel package. The cloud flavour's
/// LZ4-compressed image decompresses fastest inside a guest.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

pub struct DebianKernel {
    /// The bzImage (`/boot/vmlinuz-*`).
    pub vmlinuz: PathBuf,
    /// The uncompressed kernel ELF unpacked from the bzImage's payload.
    pub vmlinux: PathBuf,
    /// The package it came from.
    pub package: String,
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("debian-kernel")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The cached kernel, fetching it first if needed; `None` (with a printed reason) when it
/// cannot be had outside CI.
pub fn debian_kernel(test: &str) -> Option<DebianKernel> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match fetch() {
        Ok(kernel) => Some(kernel),
        Err(why) if in_ci() => panic!("{test}: cannot get a Debian kernel under CI=true: {why}"),
        Err(why) => {
            eprintln!("SKIPPED {test}: no Debian kernel: {why}");
            None
        }
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `linux-image-<version>-cloud-amd64`, from the meta-package's dependency.
fn package_name() -> Result<String, String> {
    let depends = || run(Command::new("apt-cache").args(["depends", META_PACKAGE]));
    let text = match depends() {
        Ok(text) if text.contains("Depends: linux-image-") => text,
        // No package lists yet (a fresh container): fetch them once.
        _ => {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            depends()?
        }
    };
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|name| name.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| format!("apt-cache depends {META_PACKAGE} names no kernel package"))
}

fn fetch() -> Result<DebianKernel, String> {
    let dir = cache_dir();
    let (vmlinuz, vmlinux, name_file) = (
        dir.join("vmlinuz"),
        dir.join("vmlinux"),
        dir.join("package"),
    );
    if vmlinuz.exists() && vmlinux.exists() {
        let package = std::fs::read_to_string(&name_file).unwrap_or_default();
        return Ok(DebianKernel {
            vmlinuz,
            vmlinux,
            package,
        });
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err("apt-get is not installed (not a Debian-like system)".into());
    }
    let package = package_name()?;
    let work = dir.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    run(Command::new("apt-get")
        .args(["download", "-qq", &package])
        .current_dir(&work))?;
    let deb = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let root = work.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let boot = root.join("boot");
    let image = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the package has no /boot/vmlinuz-*")?;
    let bytes = std::fs::read(&image).map_err(|e| e.to_string())?;
    let elf = unpack_payload(&bytes)?;
    let tmp = dir.join("vmlinux.tmp");
    std::fs::write(&tmp, elf).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &vmlinux).map_err(|e| e.to_string())?;
    std::fs::copy(&image, &vmlinuz).map_err(|e| e.to_string())?;
    std::fs::write(&name_file, &package).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(DebianKernel {
        vmlinuz,
        vmlinux,
        package,
    })
}

/// The bzImage payload (setup header fields payload_offset/payload_length), decompressed with
/// the tool its magic names.
fn unpack_payload(image: &[u8]) -> Result<Vec<u8>, String> {
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or("bzImage header truncated")
    };
    let setup_sects = match image.get(0x1F1) {
        Some(0) | None => 4,
        Some(&n) => usize::from(n),
    };
    let setup = (setup_sects + 1) * 512;
    let (offset, len) = (u32_at(0x248)?, u32_at(0x24C)?);
    let payload = image
        .get(setup + offset..setup + offset + len)
        .ok_or("bzImage payload outside the file")?;
    let tool = match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
        [0xfd, b'7', b'z', b'X', b'Z', ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x1f, 0x8b, ..] => "gzip",
        _ => return Err("unknown bzImage payload compression".into()),
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{tool} (to unpack vmlinux): {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let data = payload.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // The tool may stop reading at the end of its stream (trailing size bytes): ignore.
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    // lz4's legacy format has no end marker: trailing bytes make it complain after a good
    // stream, so judge by the output.
    if !out.stdout.starts_with(b"\x7fELF") {
        return Err(format!("{tool} did not produce an ELF"));
    }
    Ok(out.stdout)
}
