//! `gdbvisor qemu [QEMU ARGUMENTS]`: QEMU's command line, for the subset hobby-OS Makefiles use,
//! turned into gdbvisor's own (the same [`crate::cli::Cli`] a gdbvisor command line parses to,
//! run the same way), and the `qemu-system-x86_64`/`qemu-system-i386` shims that run it.
//!
//! [`entry`] decides that a command line is QEMU's and what to do with it, [`options`] splits
//! QEMU's arguments into options, [`translate`] maps them onto gdbvisor's flags (refusing what
//! gdbvisor cannot do, one line each: [`error`]), [`shims`] installs the shims and recognises
//! them in argv[0]. docs/switching-from-qemu.md is the user's side of it.

pub mod entry;
pub mod error;
pub mod options;
pub mod shims;
pub mod translate;
