//! Kernel loaders. Each turns an image into guest memory contents and the CPU state at entry
//! ([`BootCpuState`]); none of them touches KVM.
//!
//! Detection order (unless `--format` forces one): Linux bzImage ("HdrS") → PVH ELF note →
//! multiboot2 header in the first 32 KiB → ELF64 → multiboot1 header in the first 8 KiB →
//! flat binary carrying 0x55AA at offset 510. Every format then gets the no-BIOS IVT
//! (`ivt`).

pub mod acpi;
pub mod elf;
pub mod image;
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
use image::{size_text, Image, ImageError};

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

/// A multiboot module or initrd piece: its file, the string the kernel sees, its bytes (read
/// only when they are copied into guest RAM).
#[derive(Debug, Clone)]
pub struct Module {
    pub path: PathBuf,
    pub string: String,
    pub image: Image,
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
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub format: BootFormat,
    pub cpu: BootCpuState,
    /// Guest-physical (start, length) ranges holding the image's bytes (not its bss): where its
    /// code is, for scans of it, without the file's headers or debug information.
    pub code: Vec<(u64, u64)>,
}

/// Where a loader put a kernel: its entry point, one past its last byte (bss included), and
/// [`LoadedKernel::code`].
pub(crate) struct Placement {
    pub entry: u64,
    pub end: u64,
    pub code: Vec<(u64, u64)>,
}

/// The boot-sector signature that lets a flat image be auto-detected.
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// Picks the boot format of `image`, trying in this order: linux (bzImage "HdrS" header),
/// pvh (ELF with a Xen PHYS32_ENTRY note), multiboot2 (header in the first 32 KiB), elf64,
/// multiboot1 (header in the first 8 KiB), flat (0x55AA at offset 510). Specific markers come
/// before generic ones: a bzImage also ends its boot sector with 0x55AA, a vmlinux is also an
/// ELF64, and a kernel with both multiboot headers is booted the newer way. Reads the first
/// 32 KiB and, for an ELF, its program headers and notes.
pub fn detect(image: &Image) -> Result<BootFormat, BootError> {
    if image.is_empty() {
        return Err(BootError::Format("the image is empty".into()));
    }
    let head = image.head();
    if linux::is_bzimage(head) {
        return Ok(BootFormat::Linux);
    }
    let elf = elf::is_elf(head).then(|| elf::parse(image));
    if let Some(Ok(elf)) = &elf {
        if pvh::entry_point(image, elf)?.is_some() {
            return Ok(BootFormat::Pvh);
        }
    }
    if multiboot2::find_header(head)?.is_some() {
        return Ok(BootFormat::Multiboot2);
    }
    if elf::class_of(head) == Some(ElfClass::Elf64) {
        return Ok(BootFormat::Elf64);
    }
    if multiboot1::find_header(head)?.is_some() {
        return Ok(BootFormat::Multiboot1);
    }
    if head.get(510..512) == Some(&BOOT_SIGNATURE[..]) {
        return Ok(BootFormat::Flat);
    }
    let what = match elf {
        // A truncated or foreign ELF is that, whatever header it might have carried.
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(_)) => "an ELF32 image without a multiboot header",
        None => "an unknown image",
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
pub fn load(ram: &GuestRam, image: &Image, params: &BootParams) -> Result<LoadedKernel, BootError> {
    let format = match params.format {
        Some(format) => format,
        None => detect(image)?,
    };
    if !params.modules.is_empty() && format == BootFormat::Flat {
        return Err(BootError::Format(
            "--initrd needs a linux, pvh, multiboot1, multiboot2 or elf64 kernel".into(),
        ));
    }
    let head = image.head();
    let kernel = match format {
        BootFormat::Multiboot1 => {
            let header = multiboot1::find_header(head)?.ok_or_else(|| {
                BootError::Format("no multiboot1 header in the first 8 KiB".into())
            })?;
            multiboot1::load(ram, image, &header, &params.cmdline, &params.modules)?
        }
        BootFormat::Elf64 => load_elf64(ram, image, params)?,
        BootFormat::Flat => load_flat(ram, image, params.load_addr)?,
        BootFormat::Linux => linux::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Pvh => pvh::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Multiboot2 => {
            let header = multiboot2::find_header(head)?.ok_or_else(|| {
                BootError::Format("no multiboot2 header in the first 32 KiB".into())
            })?;
            multiboot2::load(ram, image, &header, &params.cmdline, &params.modules)?
        }
    };
    // Whatever the entry mode, the guest may run real-mode code (a boot sector, a kernel that
    // drops back to call the BIOS, an AP trampoline): empty vectors must not lead into zeros.
    ivt::install(ram)?;
    Ok(kernel)
}

/// Copies an ELF's PT_LOAD segments to their physical addresses, zero-filling the bss; every
/// placement is checked before any byte is read. Returns where the ELF's bytes went.
fn load_segments(ram: &GuestRam, image: &Image, elf: &ElfImage) -> Result<Placement, BootError> {
    let what = |segment: &elf::Segment| format!("segment at file offset {:#x}", segment.offset);
    for segment in &elf.segments {
        layout::check_placement(ram, &what(segment), segment.paddr, segment.mem_size)?;
    }
    for segment in &elf.segments {
        image.copy_to_ram(
            ram,
            segment.paddr,
            segment.offset,
            segment.file_size,
            &what(segment),
        )?;
        ram.zero(
            segment.paddr + segment.file_size,
            segment.mem_size - segment.file_size,
        )?;
    }
    Ok(Placement {
        entry: elf.physical_entry(),
        end: elf.physical_end(),
        code: elf
            .segments
            .iter()
            .map(|s| (s.paddr, s.file_size))
            .collect(),
    })
}

/// Refuses an image that is loaded whole when its `size` bytes exceed the `room` there is for
/// them, before a byte of them is read; `why` says where they go, `more_ram` whether a larger
/// `--memory` would help.
pub(crate) fn check_fits(size: u64, room: u64, why: &str, more_ram: bool) -> Result<(), BootError> {
    if size <= room {
        return Ok(());
    }
    Err(BootError::Layout(format!(
        "{} is too large: {why}; room for {}{}",
        size_text(size),
        size_text(room),
        if more_ram {
            ": try a larger --memory"
        } else {
            ""
        }
    )))
}

/// ELF64 kernels start in long mode on our GDT and identity map, with a multiboot1 info
/// structure in RBX/RSI so they learn the memory map and command line.
fn load_elf64(
    ram: &GuestRam,
    image: &Image,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let elf = elf::parse(image)?;
    if elf.class != ElfClass::Elf64 {
        return Err(BootError::Format(
            "--format elf64 needs an ELF64 image".into(),
        ));
    }
    let placed = load_segments(ram, image, &elf)?;
    layout::write_gdt(ram)?;
    let cr3 = layout::write_identity_page_tables(ram, ram.top().max(1 << 32))?;
    let info = multiboot1::write_info(ram, &params.cmdline, &params.modules, placed.end)?;
    let cpu = BootCpuState {
        mode: EntryMode::Long64,
        rip: placed.entry,
        rsp: layout::STACK_TOP,
        rax: u64::from(multiboot1::BOOTLOADER_MAGIC),
        rbx: info,
        rsi: info,
        rdx: 0,
        cr3,
    };
    Ok(LoadedKernel {
        format: BootFormat::Elf64,
        cpu,
        code: placed.code,
    })
}

/// Flat binaries run in real mode, which reaches only the first MiB.
fn load_flat(ram: &GuestRam, image: &Image, load_addr: u64) -> Result<LoadedKernel, BootError> {
    const REAL_MODE_LIMIT: u64 = 0x10_0000;
    let len = image.len();
    check_fits(
        len,
        REAL_MODE_LIMIT.saturating_sub(load_addr),
        &format!(
            "a flat image at {load_addr:#x} must end below 1 MiB (past it is beyond real mode's reach)"
        ),
        false,
    )?;
    if !ram.contains(load_addr, len) {
        return Err(BootError::Layout(format!(
            "flat image at {load_addr:#x}+{len:#x} is outside guest RAM"
        )));
    }
    image.copy_to_ram(ram, load_addr, 0, len, "the flat image")?;
    // 0000:7C00 as a BIOS would for the default; segment:offset with offset < 16 above 64 KiB.
    let (cs, ip) = if load_addr <= 0xFFFF {
        (0, load_addr)
    } else {
        ((load_addr >> 4) as u16, load_addr & 0xF)
    };
    let cpu = BootCpuState {
        mode: EntryMode::Real { cs },
        rip: ip,
        rsp: 0x7C00,
        rax: 0,
        rbx: 0,
        rsi: 0,
        rdx: 0x80, // the BIOS boot-drive number a boot sector expects in DL
        cr3: 0,
    };
    Ok(LoadedKernel {
        format: BootFormat::Flat,
        cpu,
        code: vec![(load_addr, len)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf::tests::tiny_elf;

    fn detect_bytes(bytes: &[u8]) -> Result<BootFormat, BootError> {
        detect(&Image::from(bytes))
    }

    fn boot_sector() -> Vec<u8> {
        let mut image = vec![0xf4u8; 512];
        image[510..].copy_from_slice(&BOOT_SIGNATURE);
        image
    }

    #[test]
    fn detects_each_format() {
        assert_eq!(
            detect_bytes(&tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90])).unwrap(),
            BootFormat::Elf64
        );
        assert_eq!(detect_bytes(&boot_sector()).unwrap(), BootFormat::Flat);
        let mut mb = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90; 4]);
        for word in [
            multiboot1::HEADER_MAGIC,
            0,
            0u32.wrapping_sub(multiboot1::HEADER_MAGIC),
        ] {
            mb.extend(word.to_le_bytes());
        }
        assert_eq!(detect_bytes(&mb).unwrap(), BootFormat::Multiboot1);
    }

    #[test]
    fn unknown_images_say_what_was_tried() {
        let err = detect_bytes(&[0u8; 600]).unwrap_err().to_string();
        assert!(err.contains("tried linux"), "{err}");
        for format in ["pvh", "multiboot2", "elf64", "multiboot1", "flat"] {
            assert!(err.contains(format), "{err}");
        }
        let err = detect_bytes(&tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ELF32 image without a multiboot header"),
            "{err}"
        );
        assert!(detect_bytes(&[]).unwrap_err().to_string().contains("empty"));
    }

    /// A valid ELF identification and header in 100 bytes: the program headers (ELF64) or the
    /// segment (ELF32) they announce are cut off, and that is what the error says.
    #[test]
    fn a_truncated_elf_is_called_truncated() {
        let ram = GuestRam::new(2 << 20).unwrap();
        for (class, what) in [
            (ElfClass::Elf32, "segment data"),
            (ElfClass::Elf64, "program headers"),
        ] {
            let image = tiny_elf(class, 0x100000, 0x100000, &[0x90; 16]);
            let err = load(&ram, &image[..100].into(), &BootParams::default())
                .unwrap_err()
                .to_string();
            let expected = format!("ELF file is truncated ({what}): ");
            assert!(err.starts_with(&expected), "{err}");
            assert!(
                err.contains("past the end of the file (0x64 bytes)"),
                "{err}"
            );
        }
    }

    #[test]
    fn flat_image_enters_at_0000_7c00() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let params = BootParams {
            load_addr: 0x7C00,
            ..Default::default()
        };
        let kernel = load(&ram, &boot_sector().into(), &params).unwrap();
        assert_eq!(kernel.cpu.mode, EntryMode::Real { cs: 0 });
        assert_eq!(kernel.cpu.rip, 0x7C00);
        let high = load_flat(&ram, &Image::from(&[0xf4][..]), 0x12345)
            .unwrap()
            .cpu;
        assert_eq!((high.mode, high.rip), (EntryMode::Real { cs: 0x1234 }, 5));
        let err = load_flat(&ram, &Image::from(&[0xf4; 16][..]), 0xFFFF8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "16 bytes is too large: a flat image at 0xffff8 must end below 1 MiB (past it is beyond real mode's reach); room for 8 bytes"
        );
    }

    #[test]
    fn elf64_enters_long_mode_with_info() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let image = tiny_elf(ElfClass::Elf64, 0x200000, 0x200004, &[0x90; 8]);
        let kernel = load(&ram, &image.into(), &BootParams::default()).unwrap();
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
        let err = load(&ram, &image.into(), &BootParams::default())
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
        assert!(load(&ram, &boot_sector().into(), &params).is_err());
        let params = BootParams {
            format: Some(BootFormat::Multiboot1),
            ..Default::default()
        };
        let err = load(&ram, &boot_sector().into(), &params)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no multiboot1 header"), "{err}");
    }
}
