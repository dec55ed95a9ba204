//! Kernel loaders. Each turns an image into guest memory contents and the CPU state at entry
//! ([`BootCpuState`]); none of them touches KVM.
//!
//! Detection order (unless `--format` forces one): Linux bzImage ("HdrS") → PVH ELF note →
//! multiboot2 header in the first 32 KiB → ELF64 → multiboot1 header in the first 8 KiB →
//! flat binary carrying 0x55AA at offset 510. Every format then gets the no-BIOS IVT
//! (`ivt`).

pub mod acpi;
pub mod elf;
pub(crate) mod ivt;
pub mod layout;
pub mod linux;
pub mod multiboot1;
pub mod multiboot2;
pub mod pvh;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::vmm::memory::{GuestRam, MemoryError};
use elf::{ElfClass, ElfError, ElfImage};

#[derive(Debug, Error)]
pub enum BootError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Layout(String),
    #[error("{0}")]
    Elf(#[from] ElfError),
    #[error("{0}")]
    Memory(#[from] MemoryError),
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
}

impl BootFormat {
    /// The formats a Linux kernel boots through (bzImage or PVH vmlinux): those get Linux
    /// command-line switches for this host's KVM.
    pub fn is_linux(self) -> bool {
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
        })
    }
}

/// The CPU mode a loader hands the kernel over in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 16-bit real mode with CS = `cs` (base cs·16); other segments 0.
    Real { cs: u16 },
    /// 32-bit protected mode, flat segments from the boot GDT, paging off.
    Protected32,
    /// 64-bit long mode, boot GDT, identity-mapped 4-level paging rooted at `cr3`.
    Long64,
}

/// Registers a loader sets at entry; everything not named here is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCpuState {
    pub mode: EntryMode,
    pub rip: u64,
    pub rsp: u64,
    pub rax: u64,
    pub rbx: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub cr3: u64,
}

/// A multiboot module: its file, the string the kernel sees, its bytes.
#[derive(Debug, Clone)]
pub struct Module {
    pub path: PathBuf,
    pub string: String,
    pub data: Vec<u8>,
}

/// What a loader needs besides the image.
#[derive(Debug, Clone, Default)]
pub struct BootParams {
    pub format: Option<BootFormat>,
    pub cmdline: String,
    pub modules: Vec<Module>,
    pub load_addr: u64,
}

/// A kernel in guest memory, ready to run.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    pub format: BootFormat,
    pub cpu: BootCpuState,
}

/// The boot-sector signature that lets a flat image be auto-detected.
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// Picks the boot format of `image`, trying in this order: linux (bzImage "HdrS" header),
/// pvh (ELF with a Xen PHYS32_ENTRY note), multiboot2 (header in the first 32 KiB), elf64,
/// multiboot1 (header in the first 8 KiB), flat (0x55AA at offset 510). Specific markers come
/// before generic ones: a bzImage also ends its boot sector with 0x55AA, a vmlinux is also an
/// ELF64, and a kernel with both multiboot headers is booted the newer way.
pub fn detect(image: &[u8]) -> Result<BootFormat, BootError> {
    if image.is_empty() {
        return Err(BootError::Format("the image is empty".into()));
    }
    if linux::is_bzimage(image) {
        return Ok(BootFormat::Linux);
    }
    if pvh::is_pvh(image) {
        return Ok(BootFormat::Pvh);
    }
    if multiboot2::find_header(image)?.is_some() {
        return Ok(BootFormat::Multiboot2);
    }
    if elf::class_of(image) == Some(ElfClass::Elf64) {
        return Ok(BootFormat::Elf64);
    }
    if multiboot1::find_header(image)?.is_some() {
        return Ok(BootFormat::Multiboot1);
    }
    if image.get(510..512) == Some(&BOOT_SIGNATURE[..]) {
        return Ok(BootFormat::Flat);
    }
    let what = if elf::is_elf(image) {
        "an ELF32 image without a multiboot header"
    } else {
        "an unknown image"
    };
    Err(BootError::Format(format!(
        "{what}: tried {TRIED}; use --format flat for a raw binary"
    )))
}

/// What [`detect`] looks for, in order (for its error message).
const TRIED: &str = "linux (\"HdrS\" at offset 0x202), pvh (ELF note XEN_ELFNOTE_PHYS32_ENTRY), \
    multiboot2 (header in the first 32 KiB), elf64 (ELF64 header), multiboot1 (header in the \
    first 8 KiB), flat (0x55AA at offset 510)";

/// Loads `image` into `ram` in the given or detected format.
pub fn load(ram: &GuestRam, image: &[u8], params: &BootParams) -> Result<LoadedKernel, BootError> {
    let format = match params.format {
        Some(format) => format,
        None => detect(image)?,
    };
    if !params.modules.is_empty() && format == BootFormat::Flat {
        return Err(BootError::Format(
            "--initrd needs a linux, pvh, multiboot1, multiboot2 or elf64 kernel".into(),
        ));
    }
    let cpu = match format {
        BootFormat::Multiboot1 => {
            let header = multiboot1::find_header(image)?.ok_or_else(|| {
                BootError::Format("no multiboot1 header in the first 8 KiB".into())
            })?;
            multiboot1::load(ram, image, &header, &params.cmdline, &params.modules)?
        }
        BootFormat::Elf64 => load_elf64(ram, image, params)?,
        BootFormat::Flat => load_flat(ram, image, params.load_addr)?,
        BootFormat::Linux => linux::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Pvh => pvh::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Multiboot2 => {
            let header = multiboot2::find_header(image)?.ok_or_else(|| {
                BootError::Format("no multiboot2 header in the first 32 KiB".into())
            })?;
            multiboot2::load(ram, image, &header, &params.cmdline, &params.modules)?
        }
    };
    // Whatever the entry mode, the guest may run real-mode code (a boot sector, a kernel that
    // drops back to call the BIOS, an AP trampoline): empty vectors must not lead into zeros.
    ivt::install(ram)?;
    Ok(LoadedKernel { format, cpu })
}

/// Copies an ELF's PT_LOAD segments to their physical addresses, zero-filling the bss.
fn load_segments(ram: &GuestRam, image: &[u8], elf: &ElfImage) -> Result<(), BootError> {
    for segment in &elf.segments {
        let what = format!("segment at file offset {:#x}", segment.offset);
        layout::check_placement(ram, &what, segment.paddr, segment.mem_size)?;
        let start = segment.offset as usize;
        ram.write(
            segment.paddr,
            &image[start..start + segment.file_size as usize],
        )?;
        ram.zero(
            segment.paddr + segment.file_size,
            segment.mem_size - segment.file_size,
        )?;
    }
    Ok(())
}

/// ELF64 kernels start in long mode on our GDT and identity map, with a multiboot1 info
/// structure in RBX/RSI so they learn the memory map and command line.
fn load_elf64(
    ram: &GuestRam,
    image: &[u8],
    params: &BootParams,
) -> Result<BootCpuState, BootError> {
    let elf = elf::parse(image)?;
    if elf.class != ElfClass::Elf64 {
        return Err(BootError::Format(
            "--format elf64 needs an ELF64 image".into(),
        ));
    }
    load_segments(ram, image, &elf)?;
    layout::write_gdt(ram)?;
    let cr3 = layout::write_identity_page_tables(ram, ram.top().max(1 << 32))?;
    let info = multiboot1::write_info(ram, &params.cmdline, &params.modules, elf.physical_end())?;
    Ok(BootCpuState {
        mode: EntryMode::Long64,
        rip: elf.physical_entry(),
        rsp: layout::STACK_TOP,
        rax: u64::from(multiboot1::BOOTLOADER_MAGIC),
        rbx: info,
        rsi: info,
        rdx: 0,
        cr3,
    })
}

/// Flat binaries run in real mode, which reaches only the first MiB.
fn load_flat(ram: &GuestRam, image: &[u8], load_addr: u64) -> Result<BootCpuState, BootError> {
    const REAL_MODE_LIMIT: u64 = 0x10_0000;
    let end = load_addr.saturating_add(image.len() as u64);
    if end > REAL_MODE_LIMIT {
        return Err(BootError::Layout(format!(
            "flat image at {load_addr:#x}+{:#x} ends past 1 MiB, beyond real mode's reach",
            image.len()
        )));
    }
    if !ram.contains(load_addr, image.len() as u64) {
        return Err(BootError::Layout(format!(
            "flat image at {load_addr:#x}+{:#x} is outside guest RAM",
            image.len()
        )));
    }
    ram.write(load_addr, image)?;
    // 0000:7C00 as a BIOS would for the default; segment:offset with offset < 16 above 64 KiB.
    let (cs, ip) = if load_addr <= 0xFFFF {
        (0, load_addr)
    } else {
        ((load_addr >> 4) as u16, load_addr & 0xF)
    };
    Ok(BootCpuState {
        mode: EntryMode::Real { cs },
        rip: ip,
        rsp: 0x7C00,
        rax: 0,
        rbx: 0,
        rsi: 0,
        rdx: 0x80, // the BIOS boot-drive number a boot sector expects in DL
        cr3: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf::tests::tiny_elf;

    fn boot_sector() -> Vec<u8> {
        let mut image = vec![0xf4u8; 512];
        image[510..].copy_from_slice(&BOOT_SIGNATURE);
        image
    }

    #[test]
    fn detects_each_format() {
        assert_eq!(
            detect(&tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90])).unwrap(),
            BootFormat::Elf64
        );
        assert_eq!(detect(&boot_sector()).unwrap(), BootFormat::Flat);
        let mut mb = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90; 4]);
        for word in [
            multiboot1::HEADER_MAGIC,
            0,
            0u32.wrapping_sub(multiboot1::HEADER_MAGIC),
        ] {
            mb.extend(word.to_le_bytes());
        }
        assert_eq!(detect(&mb).unwrap(), BootFormat::Multiboot1);
    }

    #[test]
    fn unknown_images_say_what_was_tried() {
        let err = detect(&[0u8; 600]).unwrap_err().to_string();
        assert!(err.contains("tried linux"), "{err}");
        for format in ["pvh", "multiboot2", "elf64", "multiboot1", "flat"] {
            assert!(err.contains(format), "{err}");
        }
        let err = detect(&tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ELF32 image without a multiboot header"),
            "{err}"
        );
        assert!(detect(&[]).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn flat_image_enters_at_0000_7c00() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let params = BootParams {
            load_addr: 0x7C00,
            ..Default::default()
        };
        let kernel = load(&ram, &boot_sector(), &params).unwrap();
        assert_eq!(kernel.cpu.mode, EntryMode::Real { cs: 0 });
        assert_eq!(kernel.cpu.rip, 0x7C00);
        let high = load_flat(&ram, &[0xf4], 0x12345).unwrap();
        assert_eq!((high.mode, high.rip), (EntryMode::Real { cs: 0x1234 }, 5));
        assert!(load_flat(&ram, &[0xf4; 16], 0xFFFF8).is_err());
    }

    #[test]
    fn elf64_enters_long_mode_with_info() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let image = tiny_elf(ElfClass::Elf64, 0x200000, 0x200004, &[0x90; 8]);
        let kernel = load(&ram, &image, &BootParams::default()).unwrap();
        assert_eq!(kernel.format, BootFormat::Elf64);
        assert_eq!(kernel.cpu.mode, EntryMode::Long64);
        assert_eq!(kernel.cpu.rip, 0x200004);
        assert_eq!(kernel.cpu.cr3, layout::PML4_ADDR);
        assert_eq!(kernel.cpu.rbx, layout::INFO_ADDR);
    }

    #[test]
    fn segments_outside_ram_are_refused() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let image = tiny_elf(ElfClass::Elf64, 0x4000_0000, 0x4000_0000, &[0x90; 8]);
        let err = load(&ram, &image, &BootParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside guest RAM"), "{err}");
    }

    #[test]
    fn forced_format_mismatch_is_an_error() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let params = BootParams {
            format: Some(BootFormat::Elf64),
            ..Default::default()
        };
        assert!(load(&ram, &boot_sector(), &params).is_err());
        let params = BootParams {
            format: Some(BootFormat::Multiboot1),
            ..Default::default()
        };
        let err = load(&ram, &boot_sector(), &params).unwrap_err().to_string();
        assert!(err.contains("no multiboot1 header"), "{err}");
    }
}
