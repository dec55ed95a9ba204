//! Just enough ELF to find loadable segments and the entry point of 32- and 64-bit kernels.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("ELF file is truncated ({0})")]
    Truncated(&'static str),
    #[error("unsupported ELF: {0}")]
    Unsupported(&'static str),
    #[error("ELF has no loadable segments")]
    NoSegments,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// A PT_LOAD segment: `file_size` bytes from `offset` go to `paddr`, then zeros up to `mem_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub vaddr: u64,
    pub offset: u64,
    pub file_size: u64,
    pub mem_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfImage {
    pub class: ElfClass,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// PT_NOTE segments: (file offset, size), checked to lie inside the file.
    pub notes: Vec<(u64, u64)>,
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// True when `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// The ELF class, if `image` is ELF at all.
pub fn class_of(image: &[u8]) -> Option<ElfClass> {
    if !is_elf(image) || image.len() < 5 {
        return None;
    }
    match image[4] {
        1 => Some(ElfClass::Elf32),
        2 => Some(ElfClass::Elf64),
        _ => None,
    }
}

fn bytes<const N: usize>(image: &[u8], at: u64, what: &'static str) -> Result<[u8; N], ElfError> {
    let start = usize::try_from(at).map_err(|_| ElfError::Truncated(what))?;
    image
        .get(start..start.checked_add(N).ok_or(ElfError::Truncated(what))?)
        .map(|s| s.try_into().expect("slice has N bytes"))
        .ok_or(ElfError::Truncated(what))
}

fn u16_at(image: &[u8], at: u64, what: &'static str) -> Result<u16, ElfError> {
    bytes::<2>(image, at, what).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], at: u64, what: &'static str) -> Result<u32, ElfError> {
    bytes::<4>(image, at, what).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], at: u64, what: &'static str) -> Result<u64, ElfError> {
    bytes::<8>(image, at, what).map(u64::from_le_bytes)
}

/// Parses the header and program headers of a little-endian x86 ELF executable.
pub fn parse(image: &[u8]) -> Result<ElfImage, ElfError> {
    let class = class_of(image).ok_or(ElfError::NotElf)?;
    if image.len() < 0x34 {
        return Err(ElfError::Truncated("ELF header"));
    }
    if image[5] != 1 {
        return Err(ElfError::Unsupported("not little-endian"));
    }
    let machine = u16_at(image, 0x12, "ELF header")?;
    let wide = class == ElfClass::Elf64;
    match (class, machine) {
        (ElfClass::Elf32, EM_386) | (ElfClass::Elf64, EM_X86_64) => {}
        _ => return Err(ElfError::Unsupported("machine is not i386 or x86-64")),
    }
    let (entry, phoff, phentsize, phnum) = if wide {
        (
            u64_at(image, 0x18, "ELF header")?,
            u64_at(image, 0x20, "ELF header")?,
            u16_at(image, 0x36, "ELF header")?,
            u16_at(image, 0x38, "ELF header")?,
        )
    } else {
        (
            u64::from(u32_at(image, 0x18, "ELF header")?),
            u64::from(u32_at(image, 0x1c, "ELF header")?),
            u16_at(image, 0x2a, "ELF header")?,
            u16_at(image, 0x2c, "ELF header")?,
        )
    };
    let min_phentsize = if wide { 56 } else { 32 };
    if phnum > 0 && phentsize < min_phentsize {
        return Err(ElfError::Unsupported("program header entries too small"));
    }
    let mut segments = Vec::new();
    let mut notes = Vec::new();
    for i in 0..u64::from(phnum) {
        let ph = phoff
            .checked_add(i * u64::from(phentsize))
            .ok_or(ElfError::Truncated("program headers"))?;
        let what = "program headers";
        let kind = u32_at(image, ph, what)?;
        if kind == PT_NOTE {
            let (offset, size) = if wide {
                (u64_at(image, ph + 8, what)?, u64_at(image, ph + 32, what)?)
            } else {
                (
                    u64::from(u32_at(image, ph + 4, what)?),
                    u64::from(u32_at(image, ph + 16, what)?),
                )
            };
            if offset
                .checked_add(size)
                .is_none_or(|end| end > image.len() as u64)
            {
                return Err(ElfError::Truncated("note segment"));
            }
            notes.push((offset, size));
            continue;
        }
        if kind != PT_LOAD {
            continue;
        }
        let segment = if wide {
            Segment {
                offset: u64_at(image, ph + 8, what)?,
                vaddr: u64_at(image, ph + 16, what)?,
                paddr: u64_at(image, ph + 24, what)?,
                file_size: u64_at(image, ph + 32, what)?,
                mem_size: u64_at(image, ph + 40, what)?,
            }
        } else {
            Segment {
                offset: u64::from(u32_at(image, ph + 4, what)?),
                vaddr: u64::from(u32_at(image, ph + 8, what)?),
                paddr: u64::from(u32_at(image, ph + 12, what)?),
                file_size: u64::from(u32_at(image, ph + 16, what)?),
                mem_size: u64::from(u32_at(image, ph + 20, what)?),
            }
        };
        let file_end = segment.offset.checked_add(segment.file_size);
        if file_end.is_none_or(|end| end > image.len() as u64) {
            return Err(ElfError::Truncated("segment data"));
        }
        if segment.file_size > segment.mem_size {
            return Err(ElfError::Unsupported(
                "segment file size exceeds memory size",
            ));
        }
        if segment.mem_size > 0 {
            segments.push(segment);
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    Ok(ElfImage {
        class,
        entry,
        segments,
        notes,
    })
}

/// One ELF note: its name (without the NUL), type and descriptor bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub kind: u32,
    pub desc: &'a [u8],
}

impl ElfImage {
    /// The notes of every PT_NOTE segment; a malformed note ends its segment's list.
    pub fn notes<'a>(&self, image: &'a [u8]) -> Vec<Note<'a>> {
        let mut out = Vec::new();
        for &(offset, size) in &self.notes {
            let Some(mut rest) = image.get(offset as usize..(offset + size) as usize) else {
                continue;
            };
            while rest.len() >= 12 {
                let word = |i: usize| {
                    u32::from_le_bytes(rest[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]))
                };
                let (namesz, descsz, kind) = (word(0) as usize, word(1) as usize, word(2));
                // Name and descriptor are each padded to 4 bytes.
                let name_end = 12usize.saturating_add(namesz);
                let desc_start = name_end.next_multiple_of(4);
                let desc_end = desc_start.saturating_add(descsz);
                if desc_end > rest.len() {
                    break;
                }
                let name = &rest[12..name_end];
                out.push(Note {
                    name: name.strip_suffix(b"\0").unwrap_or(name),
                    kind,
                    desc: &rest[desc_start..desc_end],
                });
                rest = &rest[desc_end.next_multiple_of(4).min(rest.len())..];
            }
        }
        out
    }

    /// The entry point as a physical address: kernels linked for a higher half give a virtual
    /// e_entry, which lives in the segment whose vaddr range holds it.
    pub fn physical_entry(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| self.entry >= s.vaddr && self.entry - s.vaddr < s.mem_size)
            .map_or(self.entry, |s| self.entry - s.vaddr + s.paddr)
    }

    /// One past the highest physical byte any segment occupies.
    pub fn physical_end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.mem_size))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF with one PT_LOAD segment carrying `code`, loaded at `paddr`.
    pub(crate) fn tiny_elf(class: ElfClass, paddr: u64, entry: u64, code: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 0x100];
        image[..4].copy_from_slice(b"\x7fELF");
        image[5] = 1;
        image[6] = 1;
        match class {
            ElfClass::Elf32 => {
                image[4] = 1;
                image[0x12..0x14].copy_from_slice(&EM_386.to_le_bytes());
                image[0x18..0x1c].copy_from_slice(&(entry as u32).to_le_bytes());
                image[0x1c..0x20].copy_from_slice(&0x34u32.to_le_bytes());
                image[0x2a..0x2c].copy_from_slice(&32u16.to_le_bytes());
                image[0x2c..0x2e].copy_from_slice(&1u16.to_le_bytes());
                let ph = 0x34;
                image[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
                image[ph + 4..ph + 8].copy_from_slice(&0x100u32.to_le_bytes());
                image[ph + 8..ph + 12].copy_from_slice(&(paddr as u32).to_le_bytes());
                image[ph + 12..ph + 16].copy_from_slice(&(paddr as u32).to_le_bytes());
                let len = (code.len() as u32).to_le_bytes();
                image[ph + 16..ph + 20].copy_from_slice(&len);
                image[ph + 20..ph + 24].copy_from_slice(&len);
            }
            ElfClass::Elf64 => {
                image[4] = 2;
                image[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
                image[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
                image[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
                image[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
                image[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
                let ph = 0x40;
                image[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
                image[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes());
                image[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
                image[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
                let len = (code.len() as u64).to_le_bytes();
                image[ph + 32..ph + 40].copy_from_slice(&len);
                image[ph + 40..ph + 48].copy_from_slice(&len);
            }
        }
        image.extend_from_slice(code);
        image
    }

    #[test]
    fn parses_both_classes() {
        for class in [ElfClass::Elf32, ElfClass::Elf64] {
            let elf = parse(&tiny_elf(class, 0x100000, 0x100000, &[0xf4; 16])).unwrap();
            assert_eq!(elf.class, class);
            assert_eq!(elf.entry, 0x100000);
            assert_eq!(elf.segments.len(), 1);
            assert_eq!(elf.segments[0].file_size, 16);
            assert_eq!(elf.physical_end(), 0x100010);
        }
    }

    #[test]
    fn truncated_segment_data_is_an_error() {
        let mut image = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 64]);
        image.truncate(0x120);
        assert_eq!(parse(&image), Err(ElfError::Truncated("segment data")));
    }

    #[test]
    fn truncated_header_is_an_error() {
        let image = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90]);
        assert_eq!(
            parse(&image[..0x20]),
            Err(ElfError::Truncated("ELF header"))
        );
        assert_eq!(parse(b"MZ\x90\x00"), Err(ElfError::NotElf));
    }

    #[test]
    fn higher_half_entry_is_made_physical() {
        let mut elf = parse(&tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 32])).unwrap();
        elf.segments[0].vaddr = 0xffff_ffff_8000_0000;
        elf.entry = 0xffff_ffff_8000_0010;
        assert_eq!(elf.physical_entry(), 0x100010);
    }
}
