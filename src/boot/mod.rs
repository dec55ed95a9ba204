//! Kernel loaders. Each turns an image into guest memory contents and the CPU state at entry
//! ([`BootCpuState`]); none of them touches KVM.
//!
//! Detection order (unless `--format` forces one): Linux bzImage ("HdrS") → PVH ELF note →
//! multiboot2 header in the first 32 KiB → Limine base-revision tag or request in an ELF64's
//! segments → ELF64 → multiboot1 header in the first 8 KiB → flat binary carrying 0x55AA at
//! offset 510. Every format then gets the no-BIOS IVT
//! (`ivt`).

pub(crate) mod acpi;
pub(crate) mod elf;
mod entry;
pub mod framebuffer;
pub mod image;
pub(crate) mod ivt;
pub(crate) mod layout;
pub(crate) mod limine;
pub(crate) mod linux;
mod loader;
pub(crate) mod memory;
pub(crate) mod multiboot1;
pub(crate) mod multiboot2;
pub(crate) mod place;
pub(crate) mod pvh;

use vm_memory::GuestMemoryBackend;

use elf::ElfClass;
pub use entry::ApPlan;
pub(crate) use entry::{BootCpuState, EntryMode, HeldAp, LoaderGdt};
use framebuffer::VideoRequest;
use image::Image;
pub use loader::BootParams;
pub(crate) use loader::{BootError, BootFormat, LoadedKernel, Module};
use memory::GuestMemoryExt;
pub(crate) use place::check_fits;
use place::load_segments;

/// The boot-sector signature that lets a flat image be auto-detected.
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// Picks the boot format of `image`, trying in this order: linux (bzImage "HdrS" header),
/// pvh (ELF with a Xen PHYS32_ENTRY note), multiboot2 (header in the first 32 KiB), limine
/// (an ELF64 with a base-revision tag or a request), elf64, multiboot1 (header in the first
/// 8 KiB), flat (0x55AA at offset 510). Specific markers come before generic ones: a bzImage
/// also ends its boot sector with 0x55AA, a vmlinux and a Limine kernel are also ELF64s, and a
/// kernel with both multiboot headers is booted the newer way. Reads the first 32 KiB and, for
/// an ELF, its program headers and notes (and an ELF64's segments, for Limine requests).
pub(crate) fn detect(image: &Image) -> Result<BootFormat, BootError> {
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
        if limine::detect(image)? {
            return Ok(BootFormat::Limine);
        }
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
    multiboot2 (header in the first 32 KiB), limine (Limine request in an ELF64), elf64 (ELF64 \
    header), multiboot1 (header in the first 8 KiB), flat (0x55AA at offset 510)";

/// The framebuffer `image`'s header asks for, booted as `format`: multiboot1 header flag bit 2
/// with linear graphics (mode_type 0), or a multiboot2 framebuffer tag (or a required request
/// for framebuffer information). The caller makes it (`vmm::vm::Vm::with_framebuffer`)
/// and hands it to [`load`] in [`BootParams::framebuffer`]. Reads the first 32 KiB only.
pub fn video_request(image: &Image, format: BootFormat) -> Result<Option<VideoRequest>, BootError> {
    let head = image.head();
    Ok(match format {
        BootFormat::Multiboot1 => multiboot1::find_header(head)?.and_then(|h| h.video),
        BootFormat::Multiboot2 => multiboot2::find_header(head)?.and_then(|h| h.framebuffer),
        BootFormat::Limine => limine::video_request(image)?,
        _ => None,
    })
}

/// Loads `image` into `ram` in the given or detected format.
pub fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let format = match params.format {
        Some(format) => format,
        None => detect(image)?,
    };
    if !params.modules.is_empty() && format == BootFormat::Flat {
        return Err(BootError::Format(
            "--initrd needs a linux, pvh, multiboot1, multiboot2, limine or elf64 kernel".into(),
        ));
    }
    let head = image.head();
    let kernel = match format {
        BootFormat::Multiboot1 => {
            let header = multiboot1::find_header(head)?.ok_or_else(|| {
                BootError::Format("no multiboot1 header in the first 8 KiB".into())
            })?;
            multiboot1::load(ram, image, &header, params)?
        }
        BootFormat::Elf64 => load_elf64(ram, image, params)?,
        BootFormat::Flat => load_flat(ram, image, params.load_addr)?,
        BootFormat::Linux => linux::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Pvh => pvh::load(ram, image, &params.cmdline, &params.modules)?,
        BootFormat::Limine => limine::load(ram, image, params)?,
        BootFormat::Multiboot2 => {
            let header = multiboot2::find_header(head)?.ok_or_else(|| {
                BootError::Format("no multiboot2 header in the first 32 KiB".into())
            })?;
            multiboot2::load(ram, image, &header, params)?
        }
    };
    // Whatever the entry mode, the guest may run real-mode code (a boot sector, a kernel that
    // drops back to call the BIOS, an AP trampoline): empty vectors must not lead into zeros.
    ivt::install(ram)?;
    Ok(kernel)
}

/// ELF64 kernels start in long mode on our GDT and identity map, with a multiboot1 info
/// structure in RBX/RSI so they learn the memory map and command line.
fn load_elf64(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let elf = place::parse_elf64(image, "--format elf64")?;
    let placed = load_segments(ram, image, &elf)?;
    layout::write_gdt(ram)?;
    let cr3 = layout::write_identity_page_tables(ram, ram.top().max(1 << 32))?;
    let info = multiboot1::write_info(ram, params, placed.end)?;
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
        held_aps: None,
    })
}

/// Flat binaries run in real mode, which reaches only the first MiB.
fn load_flat(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    load_addr: u64,
) -> Result<LoadedKernel, BootError> {
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
        held_aps: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf::tests::tiny_elf;
    use memory::tests::{plain_ram, read_u64};

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
        let ram = plain_ram(2 << 20);
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
        let ram = plain_ram(2 << 20);
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

    /// What a multiboot1 ELF32 and an ELF64 leave in plain anonymous guest memory (no KVM):
    /// their code at its physical address, the boot GDT, the boot information, page tables for
    /// the ELF64, and the no-BIOS IVT.
    #[test]
    fn kernels_land_in_plain_guest_memory() {
        let code = [0xFA, 0xF4, 0xEB, 0xFD]; // cli; hlt; jmp $-1
        let mut mb = tiny_elf(ElfClass::Elf32, 0x10_0000, 0x10_0000, &code);
        let magic = multiboot1::HEADER_MAGIC;
        for word in [magic, 0, 0u32.wrapping_sub(magic)] {
            mb.extend(word.to_le_bytes());
        }
        let elf64 = tiny_elf(ElfClass::Elf64, 0x20_0000, 0x20_0002, &code);
        let params = BootParams {
            cmdline: "console=ttyS0".into(),
            ..Default::default()
        };
        for (image, at) in [(mb, 0x10_0000), (elf64, 0x20_0000)] {
            let ram = plain_ram(8 << 20);
            let kernel = load(&ram, &image.into(), &params).unwrap();
            assert_eq!(kernel.code, [(at, code.len() as u64)]);
            let mut landed = [0u8; 4];
            ram.read_at(at, &mut landed).unwrap();
            assert_eq!(landed, code);
            for (i, descriptor) in layout::GDT_ENTRIES.iter().enumerate() {
                assert_eq!(read_u64(&ram, layout::GDT_ADDR + 8 * i as u64), *descriptor);
            }
            assert_eq!(kernel.cpu.rax, u64::from(multiboot1::BOOTLOADER_MAGIC));
            assert_eq!(kernel.cpu.rbx, layout::INFO_ADDR);
            let flags = read_u64(&ram, layout::INFO_ADDR) as u32;
            assert_ne!(flags & 4, 0, "a command line");
            let cmdline = read_u64(&ram, layout::INFO_ADDR + 16) as u32;
            let mut text = [0u8; 14];
            ram.read_at(u64::from(cmdline), &mut text).unwrap();
            assert_eq!(&text, b"console=ttyS0\0");
            // IVT[0x10] → F000:F040, where the stub's `out 0xE5, al` is.
            assert_eq!(read_u64(&ram, 0x10 * 4) as u32, 0xF000_F040);
            ram.read_at(0xF_F040, &mut landed).unwrap();
            assert_eq!(landed[..2], [0xE6, 0xE5]);
            match kernel.format {
                BootFormat::Multiboot1 => {
                    assert_eq!(kernel.cpu.mode, EntryMode::Protected32);
                    assert_eq!(kernel.cpu.rip, 0x10_0000);
                }
                BootFormat::Elf64 => {
                    assert_eq!(kernel.cpu.mode, EntryMode::Long64);
                    assert_eq!(kernel.cpu.rip, 0x20_0002);
                    // The identity map's first 2 MiB page: PML4 → PDPT → PD.
                    let pml4e = read_u64(&ram, kernel.cpu.cr3);
                    let pdpte = read_u64(&ram, pml4e & !0xFFF);
                    assert_eq!(read_u64(&ram, pdpte & !0xFFF), 0x83);
                }
                other => panic!("loaded as {other}"),
            }
        }
    }

    #[test]
    fn elf64_enters_long_mode_with_info() {
        let ram = plain_ram(8 << 20);
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
        let ram = plain_ram(2 << 20);
        let image = tiny_elf(ElfClass::Elf64, 0x4000_0000, 0x4000_0000, &[0x90; 8]);
        let err = load(&ram, &image.into(), &BootParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside guest RAM"), "{err}");
    }

    #[test]
    fn forced_format_mismatch_is_an_error() {
        let ram = plain_ram(2 << 20);
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
