//! Multiboot2 (the GNU Multiboot2 specification, version 2.0): the header and its tags, ELF32,
//! ELF64 or address-tag loading, and the boot information (command line, boot loader name,
//! basic memory sizes, memory map, modules, framebuffer).
//!
//! The kernel is entered in 32-bit protected mode with paging off, EAX = 0x36d76289 and EBX →
//! the information structure, whatever its ELF class: an ELF64 multiboot2 kernel brings its own
//! switch to long mode.

use vm_memory::GuestMemoryBackend;

use super::elf::{self, ElfClass};
use super::framebuffer::VideoRequest;
use super::image::Image;
use super::layout::{self, INFO_ADDR, INFO_END};
use super::loader::{BootError, BootFormat, BootParams, LoadedKernel};
use super::memory::GuestMemoryExt;
use super::multiboot1::{self, AoutKludge, BOOT_LOADER_NAME};
use super::place::load_segments;

pub(crate) const HEADER_MAGIC: u32 = 0xE852_50D6;
pub(crate) const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// The header lies in the first 32 KiB, 8-byte aligned.
const SEARCH_LIMIT: usize = 32768;
/// Where a header that does not end in time runs to.
const PAST: &str = "the end of the file or of its first 32 KiB";
const ARCH_I386: u32 = 0;
const TAG_OPTIONAL: u16 = 1;

const HEADER_TAG_END: u16 = 0;
const HEADER_TAG_INFO_REQUEST: u16 = 1;
const HEADER_TAG_ADDRESS: u16 = 2;
const HEADER_TAG_ENTRY: u16 = 3;
const HEADER_TAG_CONSOLE_FLAGS: u16 = 4;
const HEADER_TAG_FRAMEBUFFER: u16 = 5;
const HEADER_TAG_MODULE_ALIGN: u16 = 6;
const HEADER_TAG_RELOCATABLE: u16 = 10;

const INFO_TAG_END: u32 = 0;
const INFO_TAG_CMDLINE: u32 = 1;
const INFO_TAG_LOADER_NAME: u32 = 2;
const INFO_TAG_MODULE: u32 = 3;
const INFO_TAG_BASIC_MEMINFO: u32 = 4;
const INFO_TAG_MMAP: u32 = 6;
const INFO_TAG_FRAMEBUFFER: u32 = 8;
/// Information tags gdbvisor provides, so a request for them can be honoured (the framebuffer
/// tag by giving the kernel a framebuffer).
const PROVIDED: [u32; 6] = [
    INFO_TAG_CMDLINE,
    INFO_TAG_LOADER_NAME,
    INFO_TAG_MODULE,
    INFO_TAG_BASIC_MEMINFO,
    INFO_TAG_MMAP,
    INFO_TAG_FRAMEBUFFER,
];

/// What the header asks of the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Offset of the header in the file.
    pub(crate) offset: usize,
    /// The address tag: where the file is loaded, as with multiboot1's a.out kludge.
    pub(crate) address: Option<AddressTag>,
    /// The entry address tag.
    pub(crate) entry: Option<u32>,
    /// The framebuffer tag (or a required request for framebuffer information).
    pub(crate) framebuffer: Option<VideoRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressTag {
    pub(crate) header_addr: u32,
    pub(crate) load_addr: u32,
    pub(crate) load_end_addr: u32,
    pub(crate) bss_end_addr: u32,
}

fn u16_at(image: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        image.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(image: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        image.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Finds and checks the multiboot2 header; `Ok(None)` when the image has none.
pub(crate) fn find_header(image: &[u8]) -> Result<Option<Header>, BootError> {
    // The whole header lies in the first 32 KiB, all gdbvisor reads before choosing a format.
    let image = &image[..image.len().min(SEARCH_LIMIT)];
    let Some(offset) = (0..image.len().saturating_sub(3))
        .step_by(8)
        .find(|&at| u32_at(image, at) == Some(HEADER_MAGIC))
    else {
        return Ok(None);
    };
    let bad = |why: String| BootError::Format(format!("multiboot2 header at {offset:#x}: {why}"));
    let field = |i: usize| u32_at(image, offset + 4 * i).ok_or_else(|| bad("truncated".into()));
    let (arch, length, checksum) = (field(1)?, field(2)?, field(3)?);
    if HEADER_MAGIC
        .wrapping_add(arch)
        .wrapping_add(length)
        .wrapping_add(checksum)
        != 0
    {
        return Err(bad(format!("bad checksum ({checksum:#010x})")));
    }
    if arch != ARCH_I386 {
        return Err(bad(format!(
            "architecture {arch} is not i386 (0), the only one gdbvisor boots"
        )));
    }
    let end = offset
        .checked_add(length as usize)
        .filter(|&end| end <= image.len() && length >= 16)
        .ok_or_else(|| bad(format!("header_length {length} runs past {PAST}")))?;
    let mut header = Header {
        offset,
        address: None,
        entry: None,
        framebuffer: None,
    };
    let mut framebuffer_info_required = false;
    let mut at = offset + 16;
    // GRUB and Limine walk the tags until the end tag, reading neither its size nor
    // header_length: the Limine test kernel's end tag has a 16-bit size and runs past
    // header_length. gdbvisor accepts what they accept and says what is off.
    let mut past_header_noted = false;
    loop {
        let (Some(kind), Some(flags)) = (u16_at(image, at), u16_at(image, at + 2)) else {
            return Err(bad(format!("tags run past {PAST} (no end tag)")));
        };
        if kind == HEADER_TAG_END {
            let size = u32_at(image, at + 4);
            if size != Some(8) || at + 8 > end {
                log::warn!(
                    "multiboot2 header at {offset:#x}: the end tag at {at:#x} (size {size:?}) does not end the header's {length} bytes; ended there, as GRUB and Limine do"
                );
            }
            break;
        }
        let Some(size) = u32_at(image, at + 4) else {
            return Err(bad(format!("tags run past {PAST} (no end tag)")));
        };
        let size = size as usize;
        // A size below 8 would never reach the end tag (GRUB loops for ever on size 0).
        if size < 8 || at + size > image.len() {
            return Err(bad(format!("tag {kind} at {at:#x} has a bad size {size}")));
        }
        if at + size > end && !past_header_noted {
            past_header_noted = true;
            log::warn!(
                "multiboot2 header at {offset:#x}: tag {kind} at {at:#x} runs past header_length {length}; read on, as GRUB and Limine do"
            );
        }
        let optional = flags & TAG_OPTIONAL != 0;
        let word = |i: usize| {
            if 8 + 4 * (i + 1) > size {
                return Err(bad(format!("tag {kind} at {at:#x} is too short")));
            }
            u32_at(image, at + 8 + 4 * i).ok_or_else(|| bad("truncated".into()))
        };
        match kind {
            HEADER_TAG_INFO_REQUEST => {
                for i in 0..(size - 8) / 4 {
                    let wanted = word(i)?;
                    if !optional && !PROVIDED.contains(&wanted) {
                        return Err(bad(format!(
                            "requires boot information tag {wanted}, which gdbvisor cannot provide (it gives cmdline, boot loader name, modules, basic meminfo, memory map, framebuffer)"
                        )));
                    }
                    framebuffer_info_required |= !optional && wanted == INFO_TAG_FRAMEBUFFER;
                }
            }
            HEADER_TAG_ADDRESS => {
                header.address = Some(AddressTag {
                    header_addr: word(0)?,
                    load_addr: word(1)?,
                    load_end_addr: word(2)?,
                    bss_end_addr: word(3)?,
                })
            }
            HEADER_TAG_ENTRY => header.entry = Some(word(0)?),
            HEADER_TAG_FRAMEBUFFER => {
                header.framebuffer = Some(VideoRequest {
                    width: word(0)?,
                    height: word(1)?,
                    depth: word(2)?,
                })
            }
            // Console flags concern a text console gdbvisor does not have (COM1 is the
            // console); module alignment is always page alignment; a relocatable kernel is
            // simply loaded at its preferred address.
            HEADER_TAG_CONSOLE_FLAGS | HEADER_TAG_MODULE_ALIGN | HEADER_TAG_RELOCATABLE => {
                log::debug!("multiboot2 header tag {kind} ignored");
            }
            other if optional => log::debug!("optional multiboot2 header tag {other} ignored"),
            other => {
                return Err(bad(format!(
                    "requires tag {other} (EFI boot services or an EFI entry point), which gdbvisor does not support"
                )))
            }
        }
        at = (at + size).next_multiple_of(8);
    }
    if framebuffer_info_required && header.framebuffer.is_none() {
        // The kernel cannot boot without framebuffer information: it gets one of the default
        // size, as for a framebuffer tag without preferences.
        header.framebuffer = Some(VideoRequest {
            width: 0,
            height: 0,
            depth: 0,
        });
    }
    Ok(Some(header))
}

/// Loads a multiboot2 kernel and its modules; the CPU enters 32-bit protected mode.
pub(crate) fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    header: &Header,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let placed = match header.address {
        Some(address) => {
            let entry = header.entry.ok_or_else(|| {
                BootError::Format(
                    "multiboot2 header has an address tag but no entry address tag".into(),
                )
            })?;
            let aout = AoutKludge {
                header_addr: address.header_addr,
                load_addr: address.load_addr,
                load_end_addr: address.load_end_addr,
                bss_end_addr: address.bss_end_addr,
                entry_addr: entry,
            };
            multiboot1::load_aout(ram, image, header.offset, &aout)?
        }
        None => {
            let elf = elf::parse(image).map_err(|e| {
                BootError::Format(format!(
                    "multiboot2 kernel without an address tag must be ELF: {e}"
                ))
            })?;
            if elf.class == ElfClass::Elf64 && header.entry.is_none() {
                log::debug!("ELF64 multiboot2 kernel: entering its e_entry in 32-bit mode");
            }
            load_segments(ram, image, &elf)?
        }
    };
    let entry = header.entry.map_or(placed.entry, u64::from);
    if entry > u64::from(u32::MAX) {
        return Err(BootError::Format(format!(
            "multiboot2 entry {entry:#x} is above 4 GiB, out of reach of 32-bit protected mode"
        )));
    }
    layout::write_gdt(ram)?;
    let info = write_info(ram, params, placed.end)?;
    Ok(LoadedKernel {
        format: BootFormat::Multiboot2,
        cpu: multiboot1::protected_entry(entry, BOOTLOADER_MAGIC, info),
        code: placed.code,
        held_aps: None,
    })
}

/// Builds the boot information at [`INFO_ADDR`] (command line, modules and framebuffer from
/// `params`); modules go page-aligned after `kernel_end`.
pub(crate) fn write_info(
    ram: &impl GuestMemoryBackend,
    params: &BootParams,
    kernel_end: u64,
) -> Result<u64, BootError> {
    let (cmdline, modules) = (params.cmdline.as_str(), params.modules.as_slice());
    let mut info: Vec<u8> = vec![0; 8]; // total_size and reserved, filled in at the end
    let tag = |info: &mut Vec<u8>, kind: u32, body: &[u8]| {
        info.extend(kind.to_le_bytes());
        info.extend((8 + body.len() as u32).to_le_bytes());
        info.extend_from_slice(body);
        info.resize(info.len().next_multiple_of(8), 0);
    };
    let cstr = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        bytes
    };
    tag(&mut info, INFO_TAG_CMDLINE, &cstr(cmdline));
    tag(&mut info, INFO_TAG_LOADER_NAME, &cstr(BOOT_LOADER_NAME));
    let mem_upper = u32::try_from((ram.low_end() - 0x10_0000) / 1024).unwrap_or(u32::MAX);
    let meminfo: Vec<u8> = [639u32, mem_upper]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    tag(&mut info, INFO_TAG_BASIC_MEMINFO, &meminfo);
    let mut mmap = Vec::new();
    mmap.extend(24u32.to_le_bytes()); // entry_size
    mmap.extend(0u32.to_le_bytes()); // entry_version
    for (base, len, kind) in multiboot1::memory_map(ram, params.framebuffer.as_ref()) {
        mmap.extend(base.to_le_bytes());
        mmap.extend(len.to_le_bytes());
        mmap.extend(kind.to_le_bytes());
        mmap.extend(0u32.to_le_bytes());
    }
    tag(&mut info, INFO_TAG_MMAP, &mmap);
    if let Some(framebuffer) = &params.framebuffer {
        // 38 bytes with its type and size, as GRUB writes it for direct RGB.
        let body = multiboot1::framebuffer_info(framebuffer);
        tag(&mut info, INFO_TAG_FRAMEBUFFER, &body);
    }
    let starts = multiboot1::place_modules(ram, modules, kernel_end)?;
    for (module, start) in modules.iter().zip(starts) {
        let mut body = Vec::new();
        body.extend((start as u32).to_le_bytes());
        body.extend(((start + module.image.len()) as u32).to_le_bytes());
        body.extend(cstr(&module.string));
        tag(&mut info, INFO_TAG_MODULE, &body);
    }
    tag(&mut info, INFO_TAG_END, &[]);
    let total = info.len() as u64;
    if INFO_ADDR + total > INFO_END {
        return Err(BootError::Layout(format!(
            "multiboot2 boot information (command line, module strings) exceeds {} bytes",
            INFO_END - INFO_ADDR
        )));
    }
    info[..4].copy_from_slice(&(total as u32).to_le_bytes());
    ram.write_at(INFO_ADDR, &info)?;
    Ok(INFO_ADDR)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::boot::elf::tests::tiny_elf;
    use crate::boot::entry::EntryMode;
    use crate::boot::framebuffer::Framebuffer;
    use crate::boot::loader::Module;
    use crate::boot::memory::tests::{plain_ram, ram as ram_with, read_u32};
    use std::path::PathBuf;

    /// A multiboot2 header with the given tags (each: type, flags, u32 words).
    pub(crate) fn header(tags: &[(u16, u16, &[u32])]) -> Vec<u8> {
        let mut body = Vec::new();
        for &(kind, flags, words) in tags.iter().chain([&(0u16, 0u16, &[][..])]) {
            body.extend(kind.to_le_bytes());
            body.extend(flags.to_le_bytes());
            body.extend((8 + 4 * words.len() as u32).to_le_bytes());
            for w in words {
                body.extend(w.to_le_bytes());
            }
            body.resize(body.len().next_multiple_of(8), 0);
        }
        let length = 16 + body.len() as u32;
        let mut out = Vec::new();
        for w in [
            HEADER_MAGIC,
            ARCH_I386,
            length,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(length)),
        ] {
            out.extend(w.to_le_bytes());
        }
        out.extend(body);
        out
    }

    #[test]
    fn finds_header_with_address_and_entry_tags() {
        let mut image = vec![0u8; 64];
        image.extend(header(&[
            (HEADER_TAG_ADDRESS, 0, &[0x100040, 0x100000, 0, 0x102000]),
            (HEADER_TAG_ENTRY, 0, &[0x100100]),
            (HEADER_TAG_FRAMEBUFFER, TAG_OPTIONAL, &[0, 0, 0]),
        ]));
        image.resize(0x200, 0xf4);
        let found = find_header(&image).unwrap().unwrap();
        assert_eq!(found.offset, 64);
        assert_eq!(found.entry, Some(0x100100));
        assert_eq!(found.address.unwrap().bss_end_addr, 0x102000);
        let ram = plain_ram(4 << 20);
        let params = BootParams {
            cmdline: "hello".into(),
            ..Default::default()
        };
        let cpu = load(&ram, &image.into(), &found, &params).unwrap().cpu;
        assert_eq!(cpu.mode, EntryMode::Protected32);
        assert_eq!(
            (cpu.rip, cpu.rax, cpu.rbx),
            (0x100100, 0x36d76289, INFO_ADDR)
        );
        // The file is loaded so the header lands at header_addr.
        assert_eq!(read_u32(&ram, 0x100040), HEADER_MAGIC);
        assert_eq!(read_u32(&ram, 0x101000), 0, "bss zeroed");
    }

    #[test]
    fn info_has_cmdline_name_meminfo_mmap_and_modules() {
        let ram = plain_ram(8 << 20);
        let module = Module {
            path: PathBuf::from("m"),
            string: "m arg".into(),
            image: vec![0xAB; 10].into(),
        };
        let params = BootParams {
            cmdline: "console=1".into(),
            modules: vec![module],
            ..Default::default()
        };
        let at = write_info(&ram, &params, 0x30_0000 - 0x1800).unwrap();
        let total = read_u32(&ram, at);
        let mut tags = Vec::new();
        let mut p = at + 8;
        while p < at + u64::from(total) {
            let (kind, size) = (read_u32(&ram, p), read_u32(&ram, p + 4));
            tags.push((kind, p));
            p = (p + u64::from(size)).next_multiple_of(8);
        }
        let kinds: Vec<u32> = tags.iter().map(|t| t.0).collect();
        assert_eq!(kinds, [1, 2, 4, 6, 3, 0]);
        let mut text = [0u8; 10];
        ram.read_at(tags[0].1 + 8, &mut text).unwrap();
        assert_eq!(&text, b"console=1\0");
        assert_eq!(
            read_u32(&ram, tags[2].1 + 12),
            (7 << 20) / 1024,
            "mem_upper"
        );
        assert_eq!(read_u32(&ram, tags[3].1 + 8), 24, "mmap entry size");
        assert_eq!(read_u32(&ram, tags[4].1 + 8), 0x30_0000 - 0x1000);
        assert_eq!(read_u32(&ram, 0x30_0000 - 0x1000), 0xABAB_ABAB);
    }

    #[test]
    fn required_unknown_tags_and_bad_checksums_are_errors() {
        let err = |image: &[u8]| find_header(image).unwrap_err().to_string();
        let efi = header(&[(7, 0, &[])]);
        assert!(err(&efi).contains("EFI"), "{}", err(&efi));
        let apm = header(&[(HEADER_TAG_INFO_REQUEST, 0, &[10])]);
        assert!(err(&apm).contains("information tag 10"));
        assert!(find_header(&header(&[(HEADER_TAG_INFO_REQUEST, 1, &[10])])).is_ok());
        let mut bad = header(&[]);
        bad[12] ^= 1;
        assert!(err(&bad).contains("checksum"));
        let unterminated = &header(&[])[..16];
        assert!(find_header(unterminated).is_err());
        assert_eq!(find_header(&[0u8; 100]).unwrap(), None);
    }

    /// Limine's multiboot2 test kernel: a 16-bit size in the end tag, which therefore runs past
    /// header_length. GRUB and Limine accept it; so does gdbvisor.
    #[test]
    fn an_end_tag_ends_the_header_whatever_its_size() {
        let mut image = header(&[(HEADER_TAG_ENTRY, 0, &[0x100100])]);
        // End tag as `.word 0, 0, 8`: header_length stops 2 bytes into its size field.
        let end_tag = image.len() - 8;
        image.truncate(end_tag);
        image.extend([0, 0, 0, 0, 8, 0, 0xff, 0xff]);
        let length = (end_tag + 6) as u32;
        image[8..12].copy_from_slice(&length.to_le_bytes());
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(length));
        image[12..16].copy_from_slice(&checksum.to_le_bytes());
        image.resize(0x100, 0);
        let found = find_header(&image).unwrap().unwrap();
        assert_eq!(found.entry, Some(0x100100));
        // A tag whose size could never reach the end tag stays an error.
        let mut looping = header(&[(HEADER_TAG_ENTRY, 0, &[0x100100])]);
        looping[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert!(find_header(&looping)
            .unwrap_err()
            .to_string()
            .contains("bad size 0"));
    }

    #[test]
    fn a_framebuffer_tag_or_required_info_asks_for_a_framebuffer() {
        let found = |tags: &[(u16, u16, &[u32])]| find_header(&header(tags)).unwrap().unwrap();
        let asked = |width, height, depth| {
            Some(VideoRequest {
                width,
                height,
                depth,
            })
        };
        let tag = found(&[(HEADER_TAG_FRAMEBUFFER, TAG_OPTIONAL, &[800, 600, 32])]);
        assert_eq!(tag.framebuffer, asked(800, 600, 32));
        let info_only = found(&[(HEADER_TAG_INFO_REQUEST, 0, &[INFO_TAG_FRAMEBUFFER])]);
        assert_eq!(info_only.framebuffer, asked(0, 0, 0));
        let both = found(&[
            (HEADER_TAG_INFO_REQUEST, 0, &[INFO_TAG_FRAMEBUFFER]),
            (HEADER_TAG_FRAMEBUFFER, 0, &[640, 480, 16]),
        ]);
        assert_eq!(both.framebuffer, asked(640, 480, 16));
        let optional_info = found(&[(HEADER_TAG_INFO_REQUEST, 1, &[INFO_TAG_FRAMEBUFFER])]);
        assert_eq!(optional_info.framebuffer, None);
        let short = header(&[(HEADER_TAG_FRAMEBUFFER, 0, &[800, 600])]);
        assert!(find_header(&short)
            .unwrap_err()
            .to_string()
            .contains("too short"));
    }

    #[test]
    fn info_has_the_framebuffer_tag_in_grubs_layout() {
        let framebuffer = Framebuffer::new(800, 600).unwrap();
        let ram = ram_with(&[(0, 8 << 20), (framebuffer.addr(), framebuffer.region_len())]);
        let params = BootParams {
            framebuffer: Some(framebuffer),
            ..Default::default()
        };
        let at = write_info(&ram, &params, 0x20_0000).unwrap();
        let mut p = at + 8;
        let (mut fb_tag, mut mmap_tag) = (None, None);
        while read_u32(&ram, p) != INFO_TAG_END {
            match read_u32(&ram, p) {
                INFO_TAG_FRAMEBUFFER => fb_tag = Some(p),
                INFO_TAG_MMAP => mmap_tag = Some(p),
                _ => {}
            }
            p = (p + u64::from(read_u32(&ram, p + 4))).next_multiple_of(8);
        }
        let fb = fb_tag.expect("tag 8");
        assert_eq!(read_u32(&ram, fb + 4), 38, "size");
        let mut body = [0u8; 30];
        ram.read_at(fb + 8, &mut body).unwrap();
        assert_eq!(
            u64::from_le_bytes(body[..8].try_into().unwrap()),
            0xFD00_0000
        );
        assert_eq!(read_u32(&ram, fb + 16), 3200, "pitch");
        assert_eq!(
            (read_u32(&ram, fb + 20), read_u32(&ram, fb + 24)),
            (800, 600)
        );
        assert_eq!(&body[20..30], &[32, 1, 0, 0, 16, 8, 8, 8, 0, 8]);
        let mmap = mmap_tag.expect("tag 6");
        let entries = (read_u32(&ram, mmap + 4) - 16) / 24;
        let last = mmap + 16 + u64::from(entries - 1) * 24;
        assert_eq!(read_u32(&ram, last + 16), 2, "the framebuffer is reserved");
        assert_eq!(read_u32(&ram, last), 0xFD00_0000);
    }

    #[test]
    fn elf_kernels_load_by_segments() {
        let mut image = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90; 16]);
        image.truncate(0x100);
        image[0x80..0x80 + 24].copy_from_slice(&header(&[])[..24]);
        image.extend([0x90; 16]);
        let found = find_header(&image).unwrap().unwrap();
        let ram = plain_ram(4 << 20);
        let cpu = load(&ram, &image.into(), &found, &BootParams::default())
            .unwrap()
            .cpu;
        assert_eq!(cpu.rip, 0x100000);
    }
}
