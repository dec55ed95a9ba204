//! Why a QEMU command line cannot run on gdbvisor.

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

/// Why a QEMU command line cannot run on gdbvisor. Each is one line naming the QEMU flag and
/// what to do instead; `gdbvisor qemu` exits with status 2 on any of them.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QemuArgsError {
    /// A flag gdbvisor does not know at all.
    #[error(
        "{0}: not a QEMU flag gdbvisor knows (docs/switching-from-qemu.md lists those it takes)"
    )]
    Unknown(String),
    /// A flag whose value is missing.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A flag QEMU has that gdbvisor cannot honour, with what to do instead.
    #[error("{flag}: {why}")]
    Unsupported {
        /// The flag as given (with its value where the value is what is refused).
        flag: String,
        /// Why not, and what to do instead.
        why: String,
    },
    /// A value that does not parse.
    #[error("{flag} {value}: {why}")]
    BadValue {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
        /// What was expected.
        why: String,
    },
    /// An argument that is not valid UTF-8.
    #[error("an argument is not valid UTF-8: {0:?}")]
    NotUtf8(OsString),
    /// Nothing to boot: no -kernel, no bootable -cdrom or -hda.
    #[error("{0}")]
    NothingToBoot(String),
    /// A disk image that cannot be read (to look for its boot signature or format).
    #[error("{path}: {message}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `--install-shims DIR` failed.
    #[error("cannot install the shims in {dir}: {message}")]
    Shims {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl QemuArgsError {
    /// An unsupported flag with what to do instead.
    pub(crate) fn unsupported(flag: impl Into<String>, why: impl Into<String>) -> Self {
        QemuArgsError::Unsupported {
            flag: flag.into(),
            why: why.into(),
        }
    }

    /// A value that does not parse.
    pub(crate) fn bad_value(
        flag: impl Into<String>,
        value: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        QemuArgsError::BadValue {
            flag: flag.into(),
            value: value.into(),
            why: why.into(),
        }
    }
}
