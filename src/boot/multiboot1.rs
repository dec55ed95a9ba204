//! Multiboot 1 (specification 0.6.96): the header search, ELF32 or a.out-kludge loading, and
//! the boot information structure (memory sizes and map, command line, boot loader name,
//! modules, framebuffer).

use vm_memory::GuestMemoryBackend;

use super::elf::{self, ElfClass};
use super::entry::{BootCpuState, EntryMode};
use super::framebuffer::{Framebuffer, VideoRequest, BITS_PER_PIXEL, RGB_FIELDS};
use super::image::Image;
use super::layout::{self, INFO_ADDR, INFO_END};
use super::loader::{BootError, BootFormat, BootParams, LoadedKernel, Module};
use super::memory::GuestMemoryExt;
use super::place::{check_fits, load_segments, Placement};

pub(crate) const HEADER_MAGIC: u32 = 0x1BAD_B002;
pub(crate) const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie in the image's first 8 KiB, 4-byte aligned.
const SEARCH_LIMIT: usize = 8192;
const FLAG_PAGE_ALIGN: u32 = 1 << 0;
const FLAG_MEMORY_INFO: u32 = 1 << 1;
const FLAG_VIDEO_MODE: u32 = 1 << 2;
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Header offsets of the video fields (flag bit 2), after the a.out-kludge ones, which are
/// there (if unused) whether or not flag bit 16 is set.
const VIDEO_FIELDS: usize = 32;
/// mode_type 0: linear graphics; 1 is EGA text, the mode a kernel is entered in anyway.
const MODE_LINEAR_GRAPHICS: u32 = 0;
/// framebuffer_type 1: direct RGB, described by the colour fields.
pub(crate) const FRAMEBUFFER_TYPE_RGB: u8 = 1;
/// Memory map entry types.
pub(crate) const MEMORY_AVAILABLE: u32 = 1;
pub(crate) const MEMORY_RESERVED: u32 = 2;
/// Bits 0-15 are requirements a loader must understand or refuse.
const KNOWN_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

pub(crate) const BOOT_LOADER_NAME: &str = concat!("gdbvisor ", env!("CARGO_PKG_VERSION"));

/// The a.out-kludge address fields (header flag bit 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AoutKludge {
    pub(crate) header_addr: u32,
    pub(crate) load_addr: u32,
    pub(crate) load_end_addr: u32,
    pub(crate) bss_end_addr: u32,
    pub(crate) entry_addr: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Offset of the header in the file.
    pub(crate) offset: usize,
    pub(crate) flags: u32,
    pub(crate) aout: Option<AoutKludge>,
    /// The linear graphics mode asked for (flag bit 2, mode_type 0).
    pub(crate) video: Option<VideoRequest>,
}

fn u32_at(image: &[u8], at: usize) -> Option<u32> {
    image
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Finds the multiboot header; `Ok(None)` when the image has none.
pub(crate) fn find_header(image: &[u8]) -> Result<Option<Header>, BootError> {
    let limit = image.len().min(SEARCH_LIMIT);
    let Some(offset) = (0..limit.saturating_sub(3))
        .step_by(4)
        .find(|&at| u32_at(image, at) == Some(HEADER_MAGIC))
    else {
        return Ok(None);
    };
    let (Some(flags), Some(checksum)) = (u32_at(image, offset + 4), u32_at(image, offset + 8))
    else {
        return Err(BootError::Format(format!(
            "multiboot header at offset {offset:#x} is truncated"
        )));
    };
    if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
        return Err(BootError::Format(format!(
            "multiboot header at offset {offset:#x} has a bad checksum ({checksum:#010x})"
        )));
    }
    let unknown = flags & 0xffff & !KNOWN_REQUIRED;
    if unknown != 0 {
        return Err(BootError::Format(format!(
            "multiboot header requires features gdbvisor does not know (flags {unknown:#x})"
        )));
    }
    let aout = if flags & FLAG_AOUT_KLUDGE != 0 {
        let field = |i: usize| {
            u32_at(image, offset + 12 + 4 * i).ok_or_else(|| {
                BootError::Format(format!(
                    "multiboot header at offset {offset:#x} is truncated (a.out kludge fields)"
                ))
            })
        };
        Some(AoutKludge {
            header_addr: field(0)?,
            load_addr: field(1)?,
            load_end_addr: field(2)?,
            bss_end_addr: field(3)?,
            entry_addr: field(4)?,
        })
    } else {
        None
    };
    let video = if flags & FLAG_VIDEO_MODE != 0 {
        video_request(image, offset)?
    } else {
        None
    };
    Ok(Some(Header {
        offset,
        flags,
        aout,
        video,
    }))
}

/// The video fields (flag bit 2): mode_type, width, height, depth. EGA text (mode_type 1) is
/// what the kernel gets without asking: no framebuffer then.
fn video_request(image: &[u8], offset: usize) -> Result<Option<VideoRequest>, BootError> {
    let field = |i: usize| {
        u32_at(image, offset + VIDEO_FIELDS + 4 * i).ok_or_else(|| {
            BootError::Format(format!(
                "multiboot header at offset {offset:#x} is truncated (video mode fields)"
            ))
        })
    };
    let mode_type = field(0)?;
    if mode_type != MODE_LINEAR_GRAPHICS {
        log::debug!("multiboot header asks for text mode (mode_type {mode_type}): no framebuffer");
        return Ok(None);
    }
    Ok(Some(VideoRequest {
        width: field(1)?,
        height: field(2)?,
        depth: field(3)?,
    }))
}

/// Loads a multiboot1 kernel and its modules; the CPU enters 32-bit protected mode.
pub(crate) fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    header: &Header,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let placed = match header.aout {
        Some(aout) => load_aout(ram, image, header.offset, &aout)?,
        None => load_elf32(ram, image)?,
    };
    layout::write_gdt(ram)?;
    let info = write_info(ram, params, placed.end)?;
    Ok(LoadedKernel {
        format: BootFormat::Multiboot1,
        cpu: protected_entry(placed.entry, BOOTLOADER_MAGIC, info),
        code: placed.code,
        held_aps: None,
    })
}

/// The multiboot entry state: 32-bit protected mode on the boot GDT, paging off, the loader's
/// magic in EAX and the information structure in EBX.
pub(crate) fn protected_entry(entry: u64, magic: u32, info: u64) -> BootCpuState {
    BootCpuState {
        mode: EntryMode::Protected32,
        rip: entry,
        rsp: layout::STACK_TOP,
        rax: u64::from(magic),
        rbx: info,
        rsi: 0,
        rdx: 0,
        cr3: 0,
    }
}

pub(crate) fn load_aout(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    header_offset: usize,
    aout: &AoutKludge,
) -> Result<Placement, BootError> {
    let bad = |why: &str| BootError::Format(format!("multiboot a.out kludge: {why}"));
    if aout.load_addr > aout.header_addr {
        return Err(bad("load_addr is above header_addr"));
    }
    let file_start = (header_offset as u64)
        .checked_sub(u64::from(aout.header_addr - aout.load_addr))
        .ok_or_else(|| bad("load_addr lies before the start of the file"))?;
    let load_addr = u64::from(aout.load_addr);
    // The header lies in the file, so file_start does too.
    let rest = image.len().saturating_sub(file_start);
    let load_len = if aout.load_end_addr == 0 {
        check_fits(
            image.len(),
            ram.low_end()
                .saturating_sub(load_addr)
                .saturating_add(file_start),
            &format!(
                "with load_end_addr 0 the file from offset {file_start:#x} goes whole at {load_addr:#x}, below the end of guest RAM at {:#x}",
                ram.low_end()
            ),
            true,
        )?;
        rest
    } else {
        u64::from(aout.load_end_addr)
            .checked_sub(load_addr)
            .ok_or_else(|| bad("load_end_addr is below load_addr"))?
    };
    if load_len > rest {
        return Err(bad(&format!(
            "the image is shorter than load_end_addr - load_addr: {load_len:#x} bytes from offset {file_start:#x}, the file ends at {:#x}",
            image.len()
        )));
    }
    let load_end = load_addr + load_len;
    let bss_end = if aout.bss_end_addr == 0 {
        load_end
    } else {
        u64::from(aout.bss_end_addr).max(load_end)
    };
    let entry = u64::from(aout.entry_addr);
    if !(load_addr..load_end).contains(&entry) {
        return Err(bad("entry_addr is outside the loaded image"));
    }
    layout::check_placement(ram, "kernel image", load_addr, bss_end - load_addr)?;
    image.copy_to_ram(ram, load_addr, file_start, load_len, "the kernel image")?;
    ram.zero(load_end, bss_end - load_end)?;
    Ok(Placement {
        entry,
        end: bss_end,
        code: vec![(load_addr, load_len)],
    })
}

fn load_elf32(ram: &impl GuestMemoryBackend, image: &Image) -> Result<Placement, BootError> {
    let elf = elf::parse(image)?;
    if elf.class != ElfClass::Elf32 {
        return Err(BootError::Format(
            "multiboot1 without the a.out kludge needs an ELF32 image".into(),
        ));
    }
    load_segments(ram, image, &elf)
}

/// Builds the multiboot information structure at `INFO_ADDR` (command line, modules and
/// framebuffer from `params`); modules go page-aligned after `kernel_end`. Returns the
/// structure's address.
pub(crate) fn write_info(
    ram: &impl GuestMemoryBackend,
    params: &BootParams,
    kernel_end: u64,
) -> Result<u64, BootError> {
    // Up to the framebuffer's colour information (GRUB's layout, see `framebuffer_info`).
    const INFO_SIZE: u64 = 120;
    const MEM: u32 = 1 << 0;
    const CMDLINE: u32 = 1 << 2;
    const MODS: u32 = 1 << 3;
    const MMAP: u32 = 1 << 6;
    const LOADER_NAME: u32 = 1 << 9;
    const FRAMEBUFFER_INFO: u32 = 1 << 12;
    let (cmdline, modules) = (params.cmdline.as_str(), params.modules.as_slice());

    let mut heap = InfoHeap {
        next: INFO_ADDR + INFO_SIZE,
    };
    let mut info = [0u32; INFO_SIZE as usize / 4];
    let mut flags = MEM | CMDLINE | MMAP | LOADER_NAME;
    info[1] = 639; // mem_lower in KiB: 0..0x9FC00
    info[2] = u32::try_from((ram.low_end() - 0x10_0000) / 1024).unwrap_or(u32::MAX);
    info[4] = heap.put_str(ram, cmdline)?;
    info[16] = heap.put_str(ram, BOOT_LOADER_NAME)?;

    let map = memory_map(ram, params.framebuffer.as_ref());
    let mmap_addr = heap.alloc(map.len() as u64 * 24, 8)?;
    for (i, (base, len, kind)) in map.iter().enumerate() {
        let at = mmap_addr + i as u64 * 24;
        ram.write_u32(at, 20)?; // size of the rest of the entry
        ram.write_u64(at + 4, *base)?;
        ram.write_u64(at + 12, *len)?;
        ram.write_u32(at + 20, *kind)?;
    }
    info[11] = (map.len() * 24) as u32;
    info[12] = mmap_addr as u32;

    if !modules.is_empty() {
        flags |= MODS;
        let list = heap.alloc(modules.len() as u64 * 16, 4)?;
        for (i, (module, start)) in modules
            .iter()
            .zip(place_modules(ram, modules, kernel_end)?)
            .enumerate()
        {
            let string = heap.put_str(ram, &module.string)?;
            let entry = list + i as u64 * 16;
            ram.write_u32(entry, start as u32)?;
            ram.write_u32(entry + 4, (start + module.image.len()) as u32)?;
            ram.write_u32(entry + 8, string)?;
            ram.write_u32(entry + 12, 0)?;
        }
        info[5] = modules.len() as u32;
        info[6] = list as u32;
    }
    let mut bytes: Vec<u8> = info.iter().flat_map(|v| v.to_le_bytes()).collect();
    if let Some(framebuffer) = &params.framebuffer {
        flags |= FRAMEBUFFER_INFO;
        bytes[88..118].copy_from_slice(&framebuffer_info(framebuffer));
    }
    bytes[..4].copy_from_slice(&flags.to_le_bytes());
    ram.write_at(INFO_ADDR, &bytes)?;
    Ok(INFO_ADDR)
}

/// The framebuffer fields as GRUB writes them in both multiboot versions, and as kernels read
/// them through GRUB's `multiboot.h`/`multiboot2.h`: address, pitch, width, height, bpp, type,
/// 2 bytes of padding, then the red, green and blue field positions and mask sizes. The
/// padding is GRUB's: its multiboot1 structure aligns the colour union (which holds a 32-bit
/// palette address) to 4 bytes, so the colour fields start at info offset 112, not the 110 of
/// the 0.6.96 specification's table; its multiboot2 tag 8 has a 16-bit reserved field there.
pub(crate) fn framebuffer_info(framebuffer: &Framebuffer) -> [u8; 30] {
    let mut out = [0u8; 30];
    out[..8].copy_from_slice(&framebuffer.addr().to_le_bytes());
    out[8..12].copy_from_slice(&framebuffer.pitch().to_le_bytes());
    out[12..16].copy_from_slice(&framebuffer.width().to_le_bytes());
    out[16..20].copy_from_slice(&framebuffer.height().to_le_bytes());
    out[20] = BITS_PER_PIXEL;
    out[21] = FRAMEBUFFER_TYPE_RGB;
    for (i, &(position, size)) in RGB_FIELDS.iter().enumerate() {
        out[24 + 2 * i] = position;
        out[25 + 2 * i] = size;
    }
    out
}

/// The memory map a BIOS would report for our RAM: (base, length, type) with 1 = usable,
/// 2 = reserved (EBDA and the BIOS area, which hold no BIOS here but kernels expect them; the
/// framebuffer, which is a region of `ram` but no RAM for the kernel to use).
pub(crate) fn memory_map(
    ram: &impl GuestMemoryBackend,
    framebuffer: Option<&Framebuffer>,
) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, 0x9_FC00, MEMORY_AVAILABLE),
        (0x9_FC00, 0x400, MEMORY_RESERVED),
        (0xF_0000, 0x1_0000, MEMORY_RESERVED),
    ];
    for (start, len) in ram.ram_ranges() {
        if framebuffer.is_some_and(|fb| fb.addr() == start) {
            map.push((start, len, MEMORY_RESERVED));
            continue;
        }
        let start_above_1m = start.max(0x10_0000);
        if start + len > start_above_1m {
            map.push((
                start_above_1m,
                start + len - start_above_1m,
                MEMORY_AVAILABLE,
            ));
        }
    }
    map
}

/// Copies each module page-aligned after `kernel_end`, below 4 GiB (32-bit boot information
/// holds 32-bit addresses); returns their start addresses. Every place is checked before any
/// module is read.
pub(crate) fn place_modules(
    ram: &impl GuestMemoryBackend,
    modules: &[Module],
    kernel_end: u64,
) -> Result<Vec<u64>, BootError> {
    let mut next = kernel_end.next_multiple_of(0x1000);
    let mut starts = Vec::new();
    for module in modules {
        let len = module.image.len();
        let what = format!("module {}", module.path.display());
        layout::check_placement(ram, &what, next, len)?;
        if next + len > u64::from(u32::MAX) {
            return Err(BootError::Layout(format!(
                "{what} does not fit below 4 GiB"
            )));
        }
        starts.push(next);
        next = (next + len).next_multiple_of(0x1000);
    }
    for (module, &start) in modules.iter().zip(&starts) {
        let what = format!("module {}", module.path.display());
        module
            .image
            .copy_to_ram(ram, start, 0, module.image.len(), &what)?;
    }
    Ok(starts)
}

/// A bump allocator for the strings and tables of the info area.
pub(crate) struct InfoHeap {
    pub(crate) next: u64,
}

impl InfoHeap {
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Result<u64, BootError> {
        let at = self.next.next_multiple_of(align);
        if at + len > INFO_END {
            return Err(BootError::Layout(format!(
                "boot information (command line, module strings) exceeds {} bytes",
                INFO_END - INFO_ADDR
            )));
        }
        self.next = at + len;
        Ok(at)
    }

    pub(crate) fn put_str(
        &mut self,
        ram: &impl GuestMemoryBackend,
        text: &str,
    ) -> Result<u32, BootError> {
        let at = self.alloc(text.len() as u64 + 1, 1)?;
        ram.write_at(at, text.as_bytes())?;
        ram.write_at(at + text.len() as u64, &[0])?;
        Ok(at as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::elf::tests::tiny_elf;
    use crate::boot::memory::tests::{plain_ram, ram as ram_with, read_u32};

    fn header(flags: u32, extra: &[u32]) -> Vec<u8> {
        let mut words = vec![
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ];
        words.extend_from_slice(extra);
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn read_str(ram: &impl GuestMemoryBackend, addr: u64) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        for i in 0.. {
            ram.read_at(addr + i, &mut b).unwrap();
            if b[0] == 0 {
                break;
            }
            out.push(b[0]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn finds_an_aligned_header() {
        let mut image = vec![0u8; 64];
        image.extend(header(3, &[]));
        let found = find_header(&image).unwrap().unwrap();
        assert_eq!(found.offset, 64);
        assert_eq!(found.flags, 3);
        assert_eq!(found.aout, None);
    }

    #[test]
    fn ignores_a_header_past_8k() {
        let mut image = vec![0u8; 8192];
        image.extend(header(3, &[]));
        assert_eq!(find_header(&image).unwrap(), None);
    }

    #[test]
    fn bad_checksum_is_an_error() {
        let mut image = header(3, &[]);
        image[8] ^= 1;
        let err = find_header(&image).unwrap_err().to_string();
        assert!(err.contains("bad checksum"), "{err}");
    }

    #[test]
    fn unknown_required_flag_is_an_error() {
        let err = find_header(&header(1 << 5, &[])).unwrap_err().to_string();
        assert!(err.contains("requires features"), "{err}");
    }

    #[test]
    fn aout_kludge_loads_the_image_and_clears_bss() {
        // Header at file offset 0, loaded at 1 MiB; code follows the header.
        let mut image = header(
            FLAG_AOUT_KLUDGE | FLAG_MEMORY_INFO,
            &[0x10_0000, 0x10_0000, 0, 0x10_2000, 0x10_0020],
        );
        image.extend_from_slice(&[0x90; 16]);
        let ram = plain_ram(4 << 20);
        ram.write_at(0x10_1000, &[0xaa; 4]).unwrap();
        let found = find_header(&image).unwrap().unwrap();
        let cpu = load(&ram, &image.into(), &found, &BootParams::default())
            .unwrap()
            .cpu;
        assert_eq!(cpu.rip, 0x10_0020);
        assert_eq!(read_u32(&ram, 0x10_0000), HEADER_MAGIC);
        assert_eq!(read_u32(&ram, 0x10_1000), 0, "bss cleared");
    }

    #[test]
    fn aout_kludge_past_the_file_is_an_error() {
        let image = header(
            FLAG_AOUT_KLUDGE,
            &[0x10_0000, 0x10_0000, 0x10_4000, 0, 0x10_0000],
        );
        let found = find_header(&image).unwrap().unwrap();
        let ram = plain_ram(4 << 20);
        let err = load(&ram, &image.into(), &found, &BootParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter"), "{err}");
    }

    #[test]
    fn elf64_without_kludge_is_refused() {
        let mut image = tiny_elf(ElfClass::Elf64, 0x10_0000, 0x10_0000, &[0x90; 4]);
        image.extend(header(3, &[]));
        let found = find_header(&image).unwrap().unwrap();
        let ram = plain_ram(4 << 20);
        let err = load(&ram, &image.into(), &found, &BootParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ELF32"), "{err}");
    }

    #[test]
    fn info_holds_memory_cmdline_name_map_and_modules() {
        let ram = plain_ram(16 << 20);
        let modules = [
            Module {
                path: "a.bin".into(),
                string: "a.bin arg=1".into(),
                image: vec![1, 2, 3].into(),
            },
            Module {
                path: "b.bin".into(),
                string: "b.bin".into(),
                image: vec![4; 5000].into(),
            },
        ];
        let params = BootParams {
            cmdline: "console=ttyS0".into(),
            modules: modules.to_vec(),
            ..Default::default()
        };
        let info = write_info(&ram, &params, 0x10_0123).unwrap();
        let flags = read_u32(&ram, info);
        assert_eq!(flags, 1 | 4 | 8 | 64 | 512);
        assert_eq!(read_u32(&ram, info + 4), 639);
        assert_eq!(read_u32(&ram, info + 8), 15 * 1024);
        assert_eq!(
            read_str(&ram, u64::from(read_u32(&ram, info + 16))),
            "console=ttyS0"
        );
        assert_eq!(
            read_str(&ram, u64::from(read_u32(&ram, info + 64))),
            BOOT_LOADER_NAME
        );
        assert_eq!(read_u32(&ram, info + 20), 2);
        let list = u64::from(read_u32(&ram, info + 24));
        assert_eq!(read_u32(&ram, list), 0x10_1000);
        assert_eq!(read_u32(&ram, list + 4), 0x10_1003);
        assert_eq!(
            read_str(&ram, u64::from(read_u32(&ram, list + 8))),
            "a.bin arg=1"
        );
        assert_eq!(read_u32(&ram, list + 16), 0x10_2000);
        assert_eq!(read_u32(&ram, list + 20), 0x10_2000 + 5000);
        let mmap_len = read_u32(&ram, info + 44);
        assert_eq!(mmap_len, 4 * 24);
        let last = u64::from(read_u32(&ram, info + 48)) + 3 * 24;
        assert_eq!(read_u32(&ram, last), 20);
        let mut b = [0u8; 8];
        ram.read_at(last + 12, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 15 << 20);
    }

    #[test]
    fn video_fields_ask_for_a_framebuffer_unless_text() {
        let flags = FLAG_VIDEO_MODE | FLAG_MEMORY_INFO;
        let linear = header(flags, &[0, 0, 0, 0, 0, 0, 1024, 768, 32]);
        assert_eq!(
            find_header(&linear).unwrap().unwrap().video,
            Some(VideoRequest {
                width: 1024,
                height: 768,
                depth: 32
            })
        );
        let text = header(flags, &[0, 0, 0, 0, 0, 1, 80, 25, 0]);
        assert_eq!(find_header(&text).unwrap().unwrap().video, None);
        let truncated = header(flags, &[0, 0, 0, 0, 0, 0, 1024]);
        let err = find_header(&truncated).unwrap_err().to_string();
        assert!(err.contains("video mode fields"), "{err}");
        assert_eq!(find_header(&header(3, &[])).unwrap().unwrap().video, None);
    }

    #[test]
    fn info_describes_the_framebuffer_and_reserves_it() {
        let framebuffer = Framebuffer::new(800, 600).unwrap();
        let ram = ram_with(&[
            (0, 16 << 20),
            (framebuffer.addr(), framebuffer.region_len()),
        ]);
        let params = BootParams {
            framebuffer: Some(framebuffer),
            ..Default::default()
        };
        let info = write_info(&ram, &params, 0x10_0000).unwrap();
        assert_eq!(read_u32(&ram, info) & (1 << 12), 1 << 12);
        let mut fields = [0u8; 30];
        ram.read_at(info + 88, &mut fields).unwrap();
        assert_eq!(
            u64::from_le_bytes(fields[..8].try_into().unwrap()),
            0xFD00_0000
        );
        assert_eq!(read_u32(&ram, info + 96), 3200, "pitch");
        assert_eq!(read_u32(&ram, info + 100), 800);
        assert_eq!(read_u32(&ram, info + 104), 600);
        // bpp, type, GRUB's padding, colour fields at offset 112.
        assert_eq!(&fields[20..30], &[32, 1, 0, 0, 16, 8, 8, 8, 0, 8]);
        let map = memory_map(&ram, Some(&framebuffer));
        assert_eq!(
            map.last(),
            Some(&(0xFD00_0000, framebuffer.region_len(), 2))
        );
        assert!(!memory_map(&ram, None)
            .iter()
            .any(|e| e.0 == 0xFD00_0000 && e.2 == 2));
        let plain = write_info(&ram, &BootParams::default(), 0x10_0000).unwrap();
        assert_eq!(read_u32(&ram, plain) & (1 << 12), 0);
    }

    #[test]
    fn oversized_cmdline_is_an_error() {
        let ram = plain_ram(4 << 20);
        let long = "x".repeat(40_000);
        let params = BootParams {
            cmdline: long,
            ..Default::default()
        };
        let err = write_info(&ram, &params, 0x10_0000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceeds"), "{err}");
    }

    #[test]
    fn module_past_ram_is_an_error() {
        let ram = plain_ram(2 << 20);
        let modules = [Module {
            path: "big".into(),
            string: "big".into(),
            image: vec![0; 2 << 20].into(),
        }];
        let params = BootParams {
            modules: modules.to_vec(),
            ..Default::default()
        };
        let err = write_info(&ram, &params, 0x10_0000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("module big"), "{err}");
    }
}
