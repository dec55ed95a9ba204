//! What every loader shares: the boot formats, what a load is given ([`BootParams`],
//! [`Module`]) and what it hands back ([`LoadedKernel`]), and the one error type.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use super::elf::ElfError;
use super::entry::{ApPlan, BootCpuState};
use super::framebuffer::Framebuffer;
use super::image::{Image, ImageError};
use super::limine::error::LimineError;
use crate::x86::PhysMemoryError;

#[derive(Debug, Error)]
pub enum BootError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Layout(String),
    #[error("{0}")]
    Elf(#[from] ElfError),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Memory(#[from] PhysMemoryError),
    #[error("{0}")]
    Limine(#[from] LimineError),
}

/// The boot formats gdbvisor can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BootFormat {
    /// Multiboot 1 (ELF32 or a.out kludge), entered in 32-bit protected mode.
    Multiboot1,
    /// ELF64, entered directly in 64-bit long mode.
    Elf64,
    /// Flat binary entered in 16-bit real mode at --load-addr.
    Flat,
    /// Linux bzImage (boot protocol 2.12+), entered at its 64-bit entry point.
    Linux,
    /// ELF with a XEN_ELFNOTE_PHYS32_ENTRY note (Linux vmlinux), entered in 32-bit protected
    /// mode with EBX → hvm_start_info.
    Pvh,
    /// Multiboot2 (ELF32, ELF64 or address tag), entered in 32-bit protected mode with
    /// EAX=0x36d76289, EBX → boot information.
    Multiboot2,
    /// The Limine boot protocol: a higher-half ELF64 kernel with Limine requests, entered in
    /// long mode with its requests answered.
    Limine,
}

impl BootFormat {
    /// The formats a Linux kernel boots through (bzImage or PVH vmlinux): those get Linux
    /// command-line switches for this host's KVM.
    pub(crate) fn is_linux(self) -> bool {
        matches!(self, BootFormat::Linux | BootFormat::Pvh)
    }
}

impl fmt::Display for BootFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootFormat::Multiboot1 => "multiboot1",
            BootFormat::Elf64 => "elf64",
            BootFormat::Flat => "flat",
            BootFormat::Linux => "linux",
            BootFormat::Pvh => "pvh",
            BootFormat::Multiboot2 => "multiboot2",
            BootFormat::Limine => "limine",
        })
    }
}

/// A multiboot module or initrd piece: its file, the string the kernel sees, its bytes (read
/// only when they are copied into guest RAM).
#[derive(Debug, Clone)]
pub struct Module {
    pub(crate) path: PathBuf,
    pub(crate) string: String,
    pub(crate) image: Image,
}

/// What a loader needs besides the image.
#[derive(Debug, Clone, Default)]
pub struct BootParams {
    /// The boot format; `None` detects it from the image.
    pub format: Option<BootFormat>,
    /// The kernel command line.
    pub cmdline: String,
    /// Multiboot modules or the Linux initrd, in order.
    pub modules: Vec<Module>,
    /// Where a flat binary is loaded (0 = the default, 0x7c00).
    pub load_addr: u64,
    /// The kernel file (the Limine executable-file response names it).
    pub kernel_path: PathBuf,
    /// Number of vCPUs (the Limine MP response lists them; 0 counts as 1).
    pub cpus: u32,
    /// Slide a position-independent Limine kernel by a random offset (`--kaslr`).
    pub kaslr: bool,
    /// The framebuffer in guest memory, which the boot information describes (multiboot1 and
    /// 2, and the ELF64 boot's multiboot1 information); see [`super::video_request`].
    pub framebuffer: Option<Framebuffer>,
}

/// A kernel in guest memory, ready to run.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub(crate) format: BootFormat,
    pub cpu: BootCpuState,
    /// Guest-physical (start, length) ranges holding the image's bytes (not its bss): where its
    /// code is, for scans of it, without the file's headers or debug information.
    pub(crate) code: Vec<(u64, u64)>,
    /// Application processors the VMM holds until the kernel releases them (Limine MP).
    pub(crate) held_aps: Option<ApPlan>,
}
