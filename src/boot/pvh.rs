//! PVH boot (xen/include/public/arch-x86/hvm/start_info.h, "x86/HVM direct boot ABI"): an
//! ELF kernel whose XEN_ELFNOTE_PHYS32_ENTRY note names a 32-bit entry point. Linux's
//! `vmlinux` has one (CONFIG_PVH), so it boots without a bzImage wrapper or decompression.
//!
//! Entry: 32-bit protected mode, paging off, flat CS/DS/ES/SS, EBX → `hvm_start_info`
//! (version 1: command line, modules, memory map), interrupts off.

use vm_memory::GuestMemoryBackend;

use super::elf::{self, ElfError, ElfImage};
use super::entry::{BootCpuState, EntryMode};
use super::image::Image;
use super::layout::{self, INFO_ADDR};
use super::loader::{BootError, BootFormat, LoadedKernel, Module};
use super::memory::GuestMemoryExt;
use super::multiboot1::{self, InfoHeap};
use super::place::load_segments;

/// XEN_ELFNOTE_PHYS32_ENTRY.
pub(crate) const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// "xEn3" with the high bit of the first byte set.
pub(crate) const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Version 1 adds the memory map.
const START_INFO_VERSION: u32 = 1;
/// Sizes of `struct hvm_start_info`, `hvm_memmap_table_entry` and `hvm_modlist_entry`.
const START_INFO_SIZE: u64 = 56;
const MEMMAP_ENTRY_SIZE: u64 = 24;
const MODLIST_ENTRY_SIZE: u64 = 32;

/// The PVH entry point of an ELF image, if it has the note.
pub(crate) fn entry_point(image: &Image, elf: &ElfImage) -> Result<Option<u64>, ElfError> {
    Ok(elf
        .notes(image)?
        .into_iter()
        .find(|note| note.name == b"Xen" && note.kind == XEN_ELFNOTE_PHYS32_ENTRY)
        .and_then(|note| match note.desc.len() {
            4 => Some(u64::from(u32::from_le_bytes(note.desc.try_into().ok()?))),
            8 => Some(u64::from_le_bytes(note.desc.try_into().ok()?)),
            _ => None,
        }))
}

/// Loads a PVH kernel: its segments at their physical addresses, modules after it, and the
/// start info at [`INFO_ADDR`].
pub(crate) fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    cmdline: &str,
    modules: &[Module],
) -> Result<LoadedKernel, BootError> {
    let elf = elf::parse(image)?;
    let entry = entry_point(image, &elf)?.ok_or_else(|| {
        BootError::Format(
            "no PVH entry: the ELF has no Xen note of type XEN_ELFNOTE_PHYS32_ENTRY (18)".into(),
        )
    })?;
    if entry > u64::from(u32::MAX) {
        return Err(BootError::Format(format!(
            "PVH entry {entry:#x} is above 4 GiB"
        )));
    }
    let placed = load_segments(ram, image, &elf)?;
    layout::write_gdt(ram)?;
    let info = write_start_info(ram, cmdline, modules, placed.end)?;
    let cpu = BootCpuState {
        mode: EntryMode::Protected32,
        rip: entry,
        rsp: 0,
        rax: 0,
        rbx: info,
        rsi: 0,
        rdx: 0,
        cr3: 0,
    };
    Ok(LoadedKernel {
        format: BootFormat::Pvh,
        cpu,
        code: placed.code,
        held_aps: None,
    })
}

/// Writes `hvm_start_info` and what it points to; returns its address.
pub(crate) fn write_start_info(
    ram: &impl GuestMemoryBackend,
    cmdline: &str,
    modules: &[Module],
    kernel_end: u64,
) -> Result<u64, BootError> {
    let mut area = InfoHeap {
        next: INFO_ADDR + START_INFO_SIZE,
    };
    ram.zero(INFO_ADDR, START_INFO_SIZE)?;
    ram.write_u32(INFO_ADDR, START_INFO_MAGIC)?;
    ram.write_u32(INFO_ADDR + 4, START_INFO_VERSION)?;
    let cmdline_paddr = area.put_str(ram, cmdline)?;
    ram.write_u64(INFO_ADDR + 24, u64::from(cmdline_paddr))?;

    // The same PC memory map multiboot and e820 report; types are E820 types.
    let map = multiboot1::memory_map(ram, None);
    let memmap = area.alloc(map.len() as u64 * MEMMAP_ENTRY_SIZE, 8)?;
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        let at = memmap + i as u64 * MEMMAP_ENTRY_SIZE;
        ram.write_u64(at, addr)?;
        ram.write_u64(at + 8, size)?;
        ram.write_u32(at + 16, kind)?;
        ram.write_u32(at + 20, 0)?;
    }
    ram.write_u64(INFO_ADDR + 40, memmap)?;
    ram.write_u32(INFO_ADDR + 48, map.len() as u32)?;

    if !modules.is_empty() {
        let list = area.alloc(modules.len() as u64 * MODLIST_ENTRY_SIZE, 8)?;
        let starts = multiboot1::place_modules(ram, modules, kernel_end)?;
        for (i, (module, start)) in modules.iter().zip(starts).enumerate() {
            let at = list + i as u64 * MODLIST_ENTRY_SIZE;
            ram.write_u64(at, start)?;
            ram.write_u64(at + 8, module.image.len())?;
            ram.write_u64(at + 16, u64::from(area.put_str(ram, &module.string)?))?;
            ram.write_u64(at + 24, 0)?;
        }
        ram.write_u32(INFO_ADDR + 12, modules.len() as u32)?;
        ram.write_u64(INFO_ADDR + 16, list)?;
    }
    Ok(INFO_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::elf::tests::tiny_elf;
    use crate::boot::elf::ElfClass;
    use crate::boot::memory::tests::{plain_ram, read_u32};
    use std::path::PathBuf;

    /// `tiny_elf` plus a PT_NOTE program header (the second) with a Xen PHYS32_ENTRY note.
    pub(crate) fn pvh_elf(entry: u32) -> Vec<u8> {
        let mut image = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 16]);
        let note_offset = image.len() as u64;
        for w in [4u32, 4, XEN_ELFNOTE_PHYS32_ENTRY] {
            image.extend(w.to_le_bytes());
        }
        image.extend(b"Xen\0");
        image.extend(entry.to_le_bytes());
        // Second program header at 0x40 + 56: PT_NOTE.
        let ph = 0x40 + 56;
        image[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        image[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        image[ph + 8..ph + 16].copy_from_slice(&note_offset.to_le_bytes());
        image[ph + 32..ph + 40].copy_from_slice(&20u64.to_le_bytes());
        image
    }

    #[test]
    fn finds_the_note_and_writes_start_info() {
        let is_pvh = |image: &Image| {
            let elf = elf::parse(image).unwrap();
            entry_point(image, &elf).unwrap().is_some()
        };
        let image = Image::from(pvh_elf(0x100008));
        assert!(is_pvh(&image));
        assert!(!is_pvh(
            &tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90]).into()
        ));
        let ram = plain_ram(8 << 20);
        let module = Module {
            path: PathBuf::from("m"),
            string: "m x".into(),
            image: vec![1; 3].into(),
        };
        let cpu = load(&ram, &image, "root=none", &[module]).unwrap().cpu;
        assert_eq!(
            (cpu.mode, cpu.rip, cpu.rbx),
            (EntryMode::Protected32, 0x100008, INFO_ADDR)
        );
        assert_eq!(read_u32(&ram, INFO_ADDR), START_INFO_MAGIC);
        assert_eq!(read_u32(&ram, INFO_ADDR + 4), 1, "version");
        assert_eq!(read_u32(&ram, INFO_ADDR + 12), 1, "nr_modules");
        let cmdline = read_u32(&ram, INFO_ADDR + 24);
        let mut text = [0u8; 10];
        ram.read_at(u64::from(cmdline), &mut text).unwrap();
        assert_eq!(&text, b"root=none\0");
        assert_eq!(read_u32(&ram, INFO_ADDR + 48), 4, "memmap entries");
        let memmap = u64::from(read_u32(&ram, INFO_ADDR + 40));
        assert_eq!(read_u32(&ram, memmap + 3 * 24), 0x100000);
        assert_eq!(read_u32(&ram, memmap + 3 * 24 + 16), 1);
        let modlist = u64::from(read_u32(&ram, INFO_ADDR + 16));
        assert_eq!(read_u32(&ram, modlist), 0x101000);
        assert_eq!(read_u32(&ram, modlist + 8), 3);
    }

    #[test]
    fn missing_note_or_truncated_note_is_an_error() {
        let ram = plain_ram(8 << 20);
        let plain = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90]);
        let e = load(&ram, &plain.into(), "", &[]).unwrap_err().to_string();
        assert!(e.contains("no PVH entry"), "{e}");
        let mut cut = pvh_elf(0x100000);
        cut.truncate(cut.len() - 2);
        let e = load(&ram, &cut.into(), "", &[]).unwrap_err().to_string();
        assert!(e.contains("truncated (note segment)"), "{e}");
    }
}
