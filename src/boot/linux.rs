//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst) for bzImage kernels, entered
//! through their 64-bit entry point: no real-mode setup code and no BIOS run.
//!
//! The protected-mode kernel (the file after its setup code) is copied to 1 MiB as read, a
//! chunk at a time; we build the "zero page"
//! (`struct boot_params`: the image's setup header, an e820 map, command line and initrd
//! pointers) and enter at `load address + 0x200` in long mode with RSI pointing at it, on an
//! identity map of all RAM (the protocol asks for the kernel, zero page and command line to be
//! identity-mapped).
//!
//! ```text
//! 0x07000  zero page (boot_params, 4 KiB)
//! 0x60000  command line (up to 64 KiB)
//! 1 MiB    protected-mode kernel; it decompresses itself to its preferred address (16 MiB)
//! top of low RAM (below initrd_addr_max)  initrd, page-aligned
//! ```

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{ByteValued, GuestMemoryBackend};

use super::entry::{BootCpuState, EntryMode};
use super::image::Image;
use super::layout::{self, STACK_TOP};
use super::loader::{BootError, BootFormat, LoadedKernel, Module};
use super::memory::GuestMemoryExt;
use super::multiboot1;
use super::place::check_fits;

pub(crate) const ZERO_PAGE_ADDR: u64 = 0x7000;
pub(crate) const CMDLINE_ADDR: u64 = 0x60000;
pub(crate) const CMDLINE_MAX: u64 = 0x10000;
/// Where the protected-mode kernel goes (the protocol's traditional `code32_start`).
pub(crate) const KERNEL_ADDR: u64 = 0x10_0000;
/// The 64-bit entry point's offset from the load address.
const ENTRY64_OFFSET: u64 = 0x200;

/// Where the setup header starts (`struct setup_header` in boot_params).
const SETUP_HEADER_OFFSET: u64 = 0x1F1;
const BOOT_FLAG_OFFSET: usize = 0x1FE;
const HEADER_OFFSET: usize = 0x202;
const HDRS_MAGIC: u32 = 0x5372_6448; // "HdrS"
const BOOT_FLAG: u16 = 0xAA55;
/// 2.12 introduced xloadflags, which says whether the kernel has a 64-bit entry.
const MIN_VERSION: u16 = 0x020C;
const LOADED_HIGH: u8 = 1 << 0;
const XLF_KERNEL_64: u16 = 1 << 0;
/// "Undefined" boot loader ID: gdbvisor has no ID assigned.
const LOADER_TYPE_UNDEFINED: u8 = 0xFF;
/// Where a relocatable kernel decompresses to when nothing else is said (CONFIG_PHYSICAL_START).
const DEFAULT_PREF_ADDRESS: u64 = 0x100_0000;

/// The setup-header fields gdbvisor checks or uses, read from the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetupHeader {
    pub(crate) setup_sects: u8,
    pub(crate) version: u16,
    pub(crate) loadflags: u8,
    pub(crate) initrd_addr_max: u32,
    pub(crate) kernel_alignment: u32,
    pub(crate) xloadflags: u16,
    pub(crate) cmdline_size: u32,
    pub(crate) pref_address: u64,
    pub(crate) init_size: u32,
}

fn u16_at(image: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(image: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(image: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(image.get(at..at + 8)?.try_into().ok()?))
}

/// True when `image` carries the boot protocol's "HdrS" header and the 0xAA55 boot flag.
pub(crate) fn is_bzimage(image: &[u8]) -> bool {
    u32_at(image, HEADER_OFFSET) == Some(HDRS_MAGIC)
        && u16_at(image, BOOT_FLAG_OFFSET) == Some(BOOT_FLAG)
}

/// Reads and checks the setup header: a bzImage with a 64-bit entry point.
pub(crate) fn parse_header(file: &Image) -> Result<SetupHeader, BootError> {
    let image = file.head();
    if !is_bzimage(image) {
        return Err(BootError::Format(
            "not a Linux bzImage (no \"HdrS\" at offset 0x202 with 0xAA55 at 0x1FE)".into(),
        ));
    }
    let truncated = || BootError::Format("bzImage setup header is truncated".into());
    let header = SetupHeader {
        setup_sects: *image.get(0x1F1).ok_or_else(truncated)?,
        version: u16_at(image, 0x206).ok_or_else(truncated)?,
        loadflags: *image.get(0x211).ok_or_else(truncated)?,
        initrd_addr_max: u32_at(image, 0x22C).ok_or_else(truncated)?,
        kernel_alignment: u32_at(image, 0x230).ok_or_else(truncated)?,
        xloadflags: u16_at(image, 0x236).ok_or_else(truncated)?,
        cmdline_size: u32_at(image, 0x238).ok_or_else(truncated)?,
        pref_address: u64_at(image, 0x258).ok_or_else(truncated)?,
        init_size: u32_at(image, 0x260).ok_or_else(truncated)?,
    };
    if header.version < MIN_VERSION {
        return Err(BootError::Format(format!(
            "bzImage boot protocol {}.{:02} is too old: gdbvisor enters at the 64-bit entry point, which needs 2.12 or later",
            header.version >> 8,
            header.version & 0xff
        )));
    }
    if header.loadflags & LOADED_HIGH == 0 {
        return Err(BootError::Format(
            "zImage (loaded below 1 MiB) is not supported: build a bzImage".into(),
        ));
    }
    if header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::Format(
            "this bzImage has no 64-bit entry point (xloadflags bit 0): a 32-bit kernel cannot boot here".into(),
        ));
    }
    if header.setup_size() as u64 >= file.len() {
        return Err(BootError::Format(format!(
            "bzImage is truncated: {} bytes, but its setup code alone takes {}",
            file.len(),
            header.setup_size()
        )));
    }
    Ok(header)
}

impl SetupHeader {
    /// Bytes of real-mode setup code (boot sector included) before the protected-mode kernel.
    pub(crate) fn setup_size(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            usize::from(self.setup_sects)
        };
        (sects + 1) * 512
    }

    /// The end of the memory the kernel needs while it decompresses and runs its early code:
    /// `init_size` bytes from where it will run.
    pub(crate) fn runtime_end(&self) -> u64 {
        let align = u64::from(self.kernel_alignment).max(0x1000);
        let pref = if self.pref_address == 0 {
            DEFAULT_PREF_ADDRESS
        } else {
            self.pref_address
        };
        let run_at = KERNEL_ADDR.next_multiple_of(align).max(pref);
        run_at + u64::from(self.init_size)
    }
}

/// Where the initrd went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Initrd {
    pub(crate) addr: u64,
    pub(crate) size: u64,
}

/// Loads a bzImage, its command line and initrd (the modules, concatenated: Linux accepts a
/// sequence of cpio archives) and returns the 64-bit entry state.
pub(crate) fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    cmdline: &str,
    initrd: &[Module],
) -> Result<LoadedKernel, BootError> {
    let header = parse_header(image)?;
    let setup_size = header.setup_size() as u64;
    let kernel_size = image.len() - setup_size;
    check_fits(
        image.len(),
        ram.low_end()
            .saturating_sub(KERNEL_ADDR)
            .saturating_add(setup_size),
        &format!(
            "a bzImage goes at 1 MiB but for its {setup_size:#x} bytes of setup code, below the end of guest RAM at {:#x}",
            ram.low_end()
        ),
        true,
    )?;
    layout::check_placement(ram, "bzImage kernel", KERNEL_ADDR, kernel_size)?;
    let needed = header.runtime_end();
    if needed > ram.low_end() {
        return Err(BootError::Layout(format!(
            "this kernel needs RAM up to {needed:#x} to decompress and start ({} MiB); guest RAM ends at {:#x}: try a larger --memory",
            needed.div_ceil(1 << 20),
            ram.low_end()
        )));
    }
    image.copy_to_ram(
        ram,
        KERNEL_ADDR,
        setup_size,
        kernel_size,
        "the bzImage's kernel",
    )?;
    // The zero page starts as the image's own setup header, as the boot protocol asks.
    let mut setup_header = setup_header::default();
    let bytes = image.read(
        SETUP_HEADER_OFFSET,
        std::mem::size_of::<setup_header>(),
        "the setup header",
    )?;
    setup_header.as_mut_slice().copy_from_slice(&bytes);
    setup_header.code32_start = KERNEL_ADDR as u32;

    let mut params = boot_params {
        hdr: setup_header,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = write_cmdline(ram, cmdline, header.cmdline_size)?;
    if let Some(rd) = place_initrd(ram, &header, initrd)? {
        params.hdr.ramdisk_image = rd.addr as u32;
        params.hdr.ramdisk_size = rd.size as u32;
    }
    let map = e820_map(ram);
    if map.len() > params.e820_table.len() {
        return Err(BootError::Layout("too many e820 entries".into()));
    }
    for (slot, &(addr, size, kind)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: kind,
        };
    }
    params.e820_entries = map.len() as u8;
    ram.zero(ZERO_PAGE_ADDR, 0x1000)?;
    ram.write_at(ZERO_PAGE_ADDR, params.as_slice())?;

    layout::write_gdt(ram)?;
    let cr3 = layout::write_identity_page_tables(ram, ram.top().max(1 << 32))?;
    let cpu = BootCpuState {
        mode: EntryMode::Long64,
        rip: KERNEL_ADDR + ENTRY64_OFFSET,
        rsp: STACK_TOP,
        rax: 0,
        rbx: 0,
        rsi: ZERO_PAGE_ADDR,
        rdx: 0,
        cr3,
    };
    Ok(LoadedKernel {
        format: BootFormat::Linux,
        cpu,
        code: vec![(KERNEL_ADDR, kernel_size)],
        held_aps: None,
    })
}

/// The e820 map: the PC memory map multiboot reports too (usable low memory, EBDA and BIOS
/// area reserved, RAM from 1 MiB, RAM above the 32-bit hole).
pub(crate) fn e820_map(ram: &impl GuestMemoryBackend) -> Vec<(u64, u64, u32)> {
    multiboot1::memory_map(ram, None)
}

/// Writes the NUL-terminated command line; returns its address.
fn write_cmdline(
    ram: &impl GuestMemoryBackend,
    cmdline: &str,
    cmdline_size: u32,
) -> Result<u32, BootError> {
    // cmdline_size excludes the terminating NUL.
    let limit = u64::from(cmdline_size).min(CMDLINE_MAX - 1);
    if cmdline.len() as u64 > limit {
        return Err(BootError::Layout(format!(
            "the command line is {} bytes; this kernel accepts at most {limit}",
            cmdline.len()
        )));
    }
    if cmdline.contains('\0') {
        return Err(BootError::Format(
            "the command line contains a NUL byte".into(),
        ));
    }
    ram.write_at(CMDLINE_ADDR, cmdline.as_bytes())?;
    ram.write_at(CMDLINE_ADDR + cmdline.len() as u64, &[0])?;
    Ok(CMDLINE_ADDR as u32)
}

/// Puts the initrd as high in low RAM as the kernel allows, as boot loaders do, so it stays
/// clear of the kernel's decompression area.
fn place_initrd(
    ram: &impl GuestMemoryBackend,
    header: &SetupHeader,
    modules: &[Module],
) -> Result<Option<Initrd>, BootError> {
    if modules.is_empty() {
        return Ok(None);
    }
    // cpio archives in an initramfs are 4-byte aligned: each piece starts so.
    let mut offsets = Vec::new();
    let mut size = 0u64;
    for module in modules {
        offsets.push(size);
        size = (size + module.image.len()).next_multiple_of(4);
    }
    let max = u64::from(header.initrd_addr_max).min(ram.low_end() - 1);
    let lowest = header.runtime_end().next_multiple_of(0x1000);
    let addr = (max + 1).checked_sub(size).map(|a| a & !0xfff);
    match addr {
        Some(addr) if addr >= lowest => {
            for (module, &at) in modules.iter().zip(&offsets) {
                let len = module.image.len();
                let what = format!("initrd piece {}", module.path.display());
                module.image.copy_to_ram(ram, addr + at, 0, len, &what)?;
                ram.zero(addr + at + len, len.next_multiple_of(4) - len)?;
            }
            Ok(Some(Initrd { addr, size }))
        }
        _ => Err(BootError::Layout(format!(
            "the initrd ({} KiB) does not fit between the kernel's working area (ends at {lowest:#x}) and {:#x}: try a larger --memory",
            size.div_ceil(1024),
            max + 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::{plain_ram, read_u32};
    use std::path::PathBuf;

    /// A minimal bzImage: boot sector with the setup header, one setup sector, a kernel body.
    pub(crate) fn tiny_bzimage(body: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 2 * 512];
        image[0x1F1] = 1; // setup_sects
        image[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        image[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        image[0x211] = LOADED_HIGH;
        image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        image[0x22C..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        image[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        image[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        image[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
        image[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        image[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes()); // init_size 1 MiB
        image.extend_from_slice(body);
        image
    }

    #[test]
    fn zero_page_has_loader_cmdline_initrd_and_e820() {
        let ram = plain_ram(64 << 20);
        let image = tiny_bzimage(&[0x90; 0x300]);
        let module = Module {
            path: PathBuf::from("rd"),
            string: "rd".into(),
            image: vec![7; 5000].into(),
        };
        let cpu = load(&ram, &image.into(), "console=ttyS0", &[module])
            .unwrap()
            .cpu;
        assert_eq!(cpu.mode, EntryMode::Long64);
        assert_eq!((cpu.rip, cpu.rsi), (0x10_0200, ZERO_PAGE_ADDR));
        let mut byte = [0u8];
        ram.read_at(ZERO_PAGE_ADDR + 0x210, &mut byte).unwrap();
        assert_eq!(byte[0], 0xFF, "type_of_loader");
        assert_eq!(read_u32(&ram, ZERO_PAGE_ADDR + 0x202), HDRS_MAGIC);
        assert_eq!(read_u32(&ram, ZERO_PAGE_ADDR + 0x228), CMDLINE_ADDR as u32);
        let mut cmdline = [0u8; 14];
        ram.read_at(CMDLINE_ADDR, &mut cmdline).unwrap();
        assert_eq!(&cmdline, b"console=ttyS0\0");
        let rd_addr = read_u32(&ram, ZERO_PAGE_ADDR + 0x218);
        assert_eq!(read_u32(&ram, ZERO_PAGE_ADDR + 0x21C), 5000);
        assert_eq!(rd_addr % 0x1000, 0);
        assert!(u64::from(rd_addr) + 5000 <= 64 << 20);
        assert_eq!(read_u32(&ram, u64::from(rd_addr)), 0x0707_0707);
        ram.read_at(ZERO_PAGE_ADDR + 0x1E8, &mut byte).unwrap();
        assert_eq!(byte[0], 4, "e820 entries");
        // The fourth entry: RAM from 1 MiB to the end, type 1.
        let entry = ZERO_PAGE_ADDR + 0x2D0 + 3 * 20;
        assert_eq!(read_u32(&ram, entry), 0x10_0000);
        assert_eq!(read_u32(&ram, entry + 8), (63 << 20));
        assert_eq!(read_u32(&ram, entry + 16), 1);
        // The kernel body sits at 1 MiB.
        ram.read_at(KERNEL_ADDR, &mut byte).unwrap();
        assert_eq!(byte[0], 0x90);
    }

    #[test]
    fn bad_images_get_clear_errors() {
        let err = |image: &[u8]| parse_header(&image.into()).unwrap_err().to_string();
        assert!(err(&[0u8; 100]).contains("not a Linux bzImage"));
        let mut old = tiny_bzimage(&[]);
        old[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(err(&old).contains("too old"), "{}", err(&old));
        let mut no64 = tiny_bzimage(&[0x90]);
        no64[0x236] = 0;
        assert!(err(&no64).contains("no 64-bit entry"));
        let truncated = tiny_bzimage(&[]);
        assert!(err(&truncated).contains("truncated"));
        assert!(err(&truncated[..0x210]).contains("truncated"));
    }

    #[test]
    fn too_little_ram_or_long_cmdline_is_an_error() {
        let image = Image::from(tiny_bzimage(&[0x90; 16]));
        let small = plain_ram(8 << 20);
        let e = load(&small, &image, "", &[]).unwrap_err().to_string();
        assert!(e.contains("try a larger --memory"), "{e}");
        let ram = plain_ram(64 << 20);
        let e = load(&ram, &image, &"x".repeat(3000), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 2047"), "{e}");
        let huge = Module {
            path: PathBuf::from("rd"),
            string: "rd".into(),
            image: vec![0; 60 << 20].into(),
        };
        let e = load(&ram, &image, "", &[huge]).unwrap_err().to_string();
        assert!(e.contains("initrd"), "{e}");
    }
}
