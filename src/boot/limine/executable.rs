//! The kernel as the Limine protocol loads it: its PT_LOAD segments laid out in one physically
//! contiguous image at their virtual addresses (plus a slide for a position-independent
//! kernel), with the dynamic relocations of a PIE applied. Built in host memory, so requests
//! are found and answered before it is copied into guest RAM once.

use super::super::elf::{ElfImage, Segment, ET_DYN, PF_W, PF_X};
use super::super::image::Image;
use super::super::loader::BootError;
use super::error::LimineError;
use super::protocol::KERNEL_MIN_VADDR;

const PAGE: u64 = 0x1000;
/// Slides keep 2 MiB alignment, so large-page-aligned segments stay so.
const SLIDE_ALIGN: u64 = 2 << 20;
/// How far `--kaslr` may move a kernel up: 1 GiB, in 2 MiB steps.
const KASLR_RANGE: u64 = 1 << 30;

const DT_NULL: u64 = 0;
const DT_PLTRELSZ: u64 = 2;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_SYMENT: u64 = 11;
const DT_PLTREL: u64 = 20;
const DT_JMPREL: u64 = 23;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;

const R_X86_64_NONE: u64 = 0;
const R_X86_64_64: u64 = 1;
const R_X86_64_GLOB_DAT: u64 = 6;
const R_X86_64_JUMP_SLOT: u64 = 7;
const R_X86_64_RELATIVE: u64 = 8;

/// The loaded image and where it goes.
pub(crate) struct Executable {
    /// The bytes from `virt_base` (page-aligned) to the end of the last segment, page-rounded.
    pub(crate) bytes: Vec<u8>,
    /// Virtual address of `bytes[0]`, slide included.
    pub(crate) virt_base: u64,
    /// Added to every link-time virtual address.
    pub(crate) slide: u64,
    /// The entry point (virtual, slid).
    pub(crate) entry: u64,
    /// The segments, slid: what the kernel mapping covers and with which rights.
    pub(crate) segments: Vec<Segment>,
}

impl Executable {
    /// Byte offset in the image of virtual address `virt`, when `len` bytes there are inside.
    pub(crate) fn offset_of(&self, virt: u64, len: u64) -> Option<usize> {
        let offset = virt.checked_sub(self.virt_base)?;
        (offset.checked_add(len)? <= self.bytes.len() as u64).then_some(offset as usize)
    }

    /// Size of the image in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub(crate) fn read_u64(&self, offset: usize) -> u64 {
        super::requests::word(&self.bytes, offset)
    }

    pub(crate) fn write_u64(&mut self, offset: usize, value: u64) {
        if let Some(slot) = self.bytes.get_mut(offset..offset + 8) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Each page of the image with its rights (writable, executable), in address order: a
    /// page two segments share gets both segments' rights.
    pub(crate) fn page_rights(&self) -> std::collections::BTreeMap<u64, (bool, bool)> {
        let mut pages = std::collections::BTreeMap::new();
        for s in &self.segments {
            let first = s.vaddr & !(PAGE - 1);
            let end = (s.vaddr + s.mem_size).next_multiple_of(PAGE);
            for page in (first..end).step_by(PAGE as usize) {
                let rights = pages.entry(page).or_insert((false, false));
                rights.0 |= s.flags & PF_W != 0;
                rights.1 |= s.flags & PF_X != 0;
            }
        }
        pages
    }
}

/// A random 2 MiB-aligned offset below `range` (0 when the range is smaller).
fn random_offset(range: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let steps = range / SLIDE_ALIGN;
    if steps == 0 {
        return 0;
    }
    // std's RandomState is seeded from the OS's random source per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(steps);
    (hasher.finish() % steps) * SLIDE_ALIGN
}

/// Lays out `elf`'s segments, slid as the protocol says, and relocates a PIE; an image larger
/// than `ram` bytes is refused before anything is read.
pub(crate) fn build(
    image: &Image,
    elf: &ElfImage,
    kaslr: bool,
    ram: u64,
) -> Result<Executable, BootError> {
    let pie = elf.kind == ET_DYN;
    let low = elf.segments.iter().map(|s| s.vaddr).min().unwrap_or(0) & !(PAGE - 1);
    let too_high = || LimineError::Layout("a segment ends past 2^64".into());
    let high = elf
        .segments
        .iter()
        .map(|s| s.vaddr.checked_add(s.mem_size))
        .try_fold(0u64, |max, end| end.map(|e| max.max(e)))
        .and_then(|end| end.checked_next_multiple_of(PAGE))
        .ok_or_else(too_high)?;
    let span = high - low;
    if span > ram {
        return Err(LimineError::Layout(format!(
            "the kernel's segments span {span:#x} bytes, more than the {ram:#x} bytes of RAM they go into: try a larger --memory"
        ))
        .into());
    }
    let mut slide = 0u64;
    if low < KERNEL_MIN_VADDR {
        if !pie {
            return Err(LimineError::Layout(format!(
                "the kernel is linked at {low:#x}: the Limine protocol loads kernels at or above {KERNEL_MIN_VADDR:#x} (or position-independent ones)"
            ))
            .into());
        }
        slide = (KERNEL_MIN_VADDR - low).next_multiple_of(SLIDE_ALIGN);
    }
    // The slid image must end at 2^64 at the latest.
    let end = u128::from(high) + u128::from(slide);
    let Some(room) = (1u128 << 64).checked_sub(end) else {
        return Err(LimineError::Layout(format!(
            "the kernel spans {span:#x} bytes: too large for the top 2 GiB"
        ))
        .into());
    };
    if pie && kaslr {
        slide += random_offset(room.min(u128::from(KASLR_RANGE)) as u64);
    }
    let mut bytes = vec![
        0u8;
        usize::try_from(span)
            .map_err(|_| LimineError::Layout("the kernel is too large".into()))?
    ];
    for s in &elf.segments {
        let at = (s.vaddr - low) as usize;
        let data = image.read(s.offset, s.file_size as usize, "a kernel segment")?;
        bytes[at..at + data.len()].copy_from_slice(&data);
    }
    let mut exe = Executable {
        bytes,
        virt_base: low.wrapping_add(slide),
        slide,
        entry: elf.entry.wrapping_add(slide),
        segments: elf
            .segments
            .iter()
            .map(|s| Segment {
                vaddr: s.vaddr.wrapping_add(slide),
                ..*s
            })
            .collect(),
    };
    if pie {
        if let Some((vaddr, size)) = elf.dynamic {
            relocate(&mut exe, vaddr, size)?;
        }
    }
    Ok(exe)
}

/// The dynamic section's tags, as (tag, value) until DT_NULL.
fn dynamic_tags(exe: &Executable, vaddr: u64, size: u64) -> Result<Vec<(u64, u64)>, LimineError> {
    let at = exe
        .offset_of(vaddr.wrapping_add(exe.slide), size)
        .ok_or(LimineError::Layout(
            "PT_DYNAMIC lies outside the loaded segments".into(),
        ))?;
    let mut tags = Vec::new();
    for i in 0..(size / 16) as usize {
        let tag = exe.read_u64(at + 16 * i);
        if tag == DT_NULL {
            break;
        }
        tags.push((tag, exe.read_u64(at + 16 * i + 8)));
    }
    Ok(tags)
}

/// Applies a PIE's RELA (and PLT) and RELR relocations, as Limine does: RELATIVE, 64,
/// GLOB_DAT and JUMP_SLOT (the last three against the kernel's own symbols).
fn relocate(exe: &mut Executable, dyn_vaddr: u64, dyn_size: u64) -> Result<(), BootError> {
    let tags = dynamic_tags(exe, dyn_vaddr, dyn_size)?;
    let tag = |t: u64| tags.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
    let slide = exe.slide;
    let table = |exe: &Executable, vaddr: u64, size: u64, what: &str| {
        exe.offset_of(vaddr.wrapping_add(slide), size)
            .ok_or_else(|| {
                LimineError::Layout(format!("the {what} table lies outside the loaded segments"))
            })
    };
    let symtab = tag(DT_SYMTAB);
    let syment = tag(DT_SYMENT).unwrap_or(24);
    let mut tables = Vec::new();
    if let (Some(rela), Some(size)) = (tag(DT_RELA), tag(DT_RELASZ)) {
        tables.push((rela, size, "RELA"));
    }
    if let (Some(jmprel), Some(size)) = (tag(DT_JMPREL), tag(DT_PLTRELSZ)) {
        if tag(DT_PLTREL) != Some(DT_RELA) {
            return Err(LimineError::Layout("DT_PLTREL is not DT_RELA".into()).into());
        }
        tables.push((jmprel, size, "JMPREL"));
    }
    let relaent = tag(DT_RELAENT).unwrap_or(24).max(24);
    for (vaddr, size, what) in tables {
        let at = table(exe, vaddr, size, what)?;
        for i in 0..(size / relaent) as usize {
            let entry = at + i * relaent as usize;
            let (offset, info, addend) = (
                exe.read_u64(entry),
                exe.read_u64(entry + 8),
                exe.read_u64(entry + 16),
            );
            let kind = info & 0xffff_ffff;
            let value = match kind {
                R_X86_64_NONE => continue,
                R_X86_64_RELATIVE => slide.wrapping_add(addend),
                R_X86_64_64 | R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT => {
                    let symtab = symtab.ok_or(LimineError::Layout(
                        "a symbol relocation without DT_SYMTAB".into(),
                    ))?;
                    let sym = table(exe, symtab + (info >> 32) * syment, 24, "symbol")?;
                    let st_value = exe.read_u64(sym + 8);
                    if st_value == 0 {
                        return Err(LimineError::Layout(format!(
                            "relocation {i} of {what} needs an undefined symbol"
                        ))
                        .into());
                    }
                    st_value.wrapping_add(slide).wrapping_add(addend)
                }
                other => {
                    return Err(LimineError::Layout(format!(
                        "unsupported relocation type {other} in {what}"
                    ))
                    .into())
                }
            };
            let target = table(exe, offset, 8, "relocated word")?;
            exe.write_u64(target, value);
        }
    }
    if let (Some(relr), Some(size)) = (tag(DT_RELR), tag(DT_RELRSZ)) {
        let entsize = tag(DT_RELRENT).unwrap_or(8).max(8);
        let at = table(exe, relr, size, "RELR")?;
        let mut next = 0u64;
        for i in 0..(size / entsize) as usize {
            let entry = exe.read_u64(at + i * entsize as usize);
            let add_slide = |exe: &mut Executable, vaddr: u64| -> Result<(), BootError> {
                let target = table(exe, vaddr, 8, "relocated word")?;
                let value = exe.read_u64(target).wrapping_add(slide);
                exe.write_u64(target, value);
                Ok(())
            };
            if entry & 1 == 0 {
                add_slide(exe, entry)?;
                next = entry + 8;
            } else {
                for bit in 1..64 {
                    if entry >> bit & 1 != 0 {
                        add_slide(exe, next + (bit - 1) * 8)?;
                    }
                }
                next += 63 * 8;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RELA (RELATIVE) and RELR (an address entry, then a bitmap) applied with a slide.
    #[test]
    fn rela_and_relr_relocations_add_the_slide() {
        let slide = KERNEL_MIN_VADDR;
        let mut exe = Executable {
            bytes: vec![0u8; 0x1000],
            virt_base: slide,
            slide,
            entry: slide,
            segments: Vec::new(),
        };
        let dynamic = [
            (DT_RELA, 0x200),
            (DT_RELASZ, 24),
            (DT_RELAENT, 24),
            (DT_RELR, 0x300),
            (DT_RELRSZ, 16),
            (DT_NULL, 0),
        ];
        for (i, (tag, value)) in dynamic.iter().enumerate() {
            exe.write_u64(0x100 + 16 * i, *tag);
            exe.write_u64(0x108 + 16 * i, *value);
        }
        exe.write_u64(0x200, 0x400);
        exe.write_u64(0x208, R_X86_64_RELATIVE);
        exe.write_u64(0x210, 0x10);
        exe.write_u64(0x300, 0x500);
        exe.write_u64(0x308, 1 | 1 << 1 | 1 << 3);
        for (at, value) in [(0x500, 5), (0x508, 6), (0x510, 7), (0x518, 8)] {
            exe.write_u64(at, value);
        }
        relocate(&mut exe, 0x100, 16 * dynamic.len() as u64).unwrap();
        assert_eq!(exe.read_u64(0x400), slide + 0x10);
        assert_eq!(exe.read_u64(0x500), slide + 5);
        assert_eq!(exe.read_u64(0x508), slide + 6);
        assert_eq!(exe.read_u64(0x510), 7, "bit 2 of the bitmap is clear");
        assert_eq!(exe.read_u64(0x518), slide + 8);
        // An unknown relocation type is refused.
        exe.write_u64(0x208, 37);
        let err = relocate(&mut exe, 0x100, 16 * dynamic.len() as u64).unwrap_err();
        assert!(
            err.to_string().contains("unsupported relocation type 37"),
            "{err}"
        );
    }
}
