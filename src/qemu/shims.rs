//! The shims: `qemu-system-x86_64` and `qemu-system-i386` naming gdbvisor, so that a Makefile
//! that runs QEMU runs gdbvisor when their directory comes first in PATH.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::error::QemuArgsError;

/// The names a Makefile calls QEMU by (gdbvisor's machine serves both: an i386 kernel boots on
/// an x86-64 CPU as on QEMU's i386 one).
pub const SHIM_NAMES: [&str; 2] = ["qemu-system-x86_64", "qemu-system-i386"];

/// Whether argv[0] is one of the shims.
pub fn is_shim_name(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| SHIM_NAMES.contains(&name))
}

/// Creates the shims in `dir` (made if missing) as symbolic links to `exe`, or copies of it
/// where a link cannot be made; an existing file of that name is replaced. Returns their paths.
pub fn install(dir: &Path, exe: &Path) -> Result<Vec<PathBuf>, QemuArgsError> {
    let failed = |e: std::io::Error| QemuArgsError::Shims {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut made = Vec::new();
    for name in SHIM_NAMES {
        let shim = dir.join(name);
        match std::fs::remove_file(&shim) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
            _ => {}
        }
        if std::os::unix::fs::symlink(exe, &shim).is_err() {
            std::fs::copy(exe, &shim).map_err(failed)?;
        }
        made.push(shim);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_names_are_recognised_by_file_name() {
        assert!(is_shim_name(OsStr::new("/tmp/shims/qemu-system-x86_64")));
        assert!(is_shim_name(OsStr::new("qemu-system-i386")));
        assert!(!is_shim_name(OsStr::new("/usr/bin/gdbvisor")));
        assert!(!is_shim_name(OsStr::new("qemu-system-aarch64")));
    }

    #[test]
    fn install_links_both_names_and_replaces_old_ones() {
        let dir = std::env::temp_dir().join(format!("gdbvisor-shims-{}", std::process::id()));
        let exe = std::env::current_exe().unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SHIM_NAMES[0]), b"old").unwrap();
        let made = install(&dir, &exe).unwrap();
        assert_eq!(made.len(), 2);
        for shim in made {
            assert_eq!(std::fs::read_link(&shim).unwrap(), exe);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
