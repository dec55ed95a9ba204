//! ISO images for the `--cdrom` tests, built as hobby-OS builds make them: `grub-mkrescue`
//! (Rock Ridge names, GRUB's BIOS and EFI boot files around a grub.cfg) or `xorriso -as mkisofs`
//! (Limine configs; Joliet-only and plain ISO 9660 names).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when grub-mkrescue, xorriso and mformat are installed (grub-common, grub-pc-bin,
/// xorriso, mtools; `.ci/run` installs them). Under CI a missing one fails the test.
pub fn tools_available(test: &str) -> bool {
    super::tool_available(test, "grub-mkrescue", "grub-common and grub-pc-bin")
        && super::tool_available(test, "xorriso", "xorriso")
        && super::tool_available(test, "mformat", "mtools")
}

/// A file to put in an image: its path there and its bytes.
pub struct IsoFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl IsoFile {
    pub fn new(path: &str, bytes: impl Into<Vec<u8>>) -> IsoFile {
        IsoFile {
            path: path.trim_start_matches('/').to_string(),
            bytes: bytes.into(),
        }
    }

    /// A file copied from the host.
    pub fn copy(path: &str, from: &Path) -> IsoFile {
        let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        IsoFile::new(path, bytes)
    }
}

/// A fresh directory under the target's temporary directory, for one test's image. Those that
/// earlier test processes left (a GRUB image is ~10 MB) are removed once their process is gone.
pub fn work_dir(name: &str) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let owner = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("iso-"))
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("iso-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` into `dir/tree`, returning the tree.
fn lay_out(dir: &Path, files: &[IsoFile]) -> PathBuf {
    let tree = dir.join("tree");
    for file in files {
        let path = tree.join(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &file.bytes).unwrap();
    }
    tree
}

fn run(command: &mut Command) {
    let output = command.output().expect("image tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `grub-mkrescue -o NAME.iso TREE` with `files` and `boot/grub/grub.cfg` = `grub_cfg`.
pub fn grub_iso(name: &str, files: &[IsoFile], grub_cfg: &str) -> PathBuf {
    let dir = work_dir(name);
    let tree = lay_out(&dir, files);
    let config = tree.join("boot/grub/grub.cfg");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(config, grub_cfg).unwrap();
    let iso = dir.join(format!("{name}.iso"));
    run(Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&tree));
    iso
}

/// `xorriso -as mkisofs ARGS -o NAME.iso TREE` with `files`: `-R` for Rock Ridge names (xorriso
/// adds them unless `--norock`), `-J` for a Joliet tree.
pub fn mkisofs_iso(name: &str, files: &[IsoFile], args: &[&str]) -> PathBuf {
    let dir = work_dir(name);
    let tree = lay_out(&dir, files);
    let iso = dir.join(format!("{name}.iso"));
    run(Command::new("xorriso")
        .args(["-as", "mkisofs"])
        .args(args)
        .arg("-o")
        .arg(&iso)
        .arg(&tree));
    iso
}
