//! Just enough ELF to find loadable segments and the entry point of 32- and 64-bit kernels.
//! Only the ELF header, the program headers and notes are read, where they point in the file:
//! a kernel's debug information, however large, is never read.

use std::borrow::Cow;

use thiserror::Error;

use super::image::{Image, ImageError};

#[derive(Debug, Error)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    /// `what` names the part that is cut off; `detail` where it lies and where the file ends.
    #[error("ELF file is truncated ({what}): {detail}")]
    Truncated { what: &'static str, detail: String },
    #[error("unsupported ELF: {0}")]
    Unsupported(&'static str),
    #[error("ELF has no loadable segments")]
    NoSegments,
    #[error("{0}")]
    Image(ImageError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElfClass {
    Elf32,
    Elf64,
}

/// A PT_LOAD segment: `file_size` bytes from `offset` go to `paddr`, then zeros up to `mem_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) paddr: u64,
    pub(crate) vaddr: u64,
    pub(crate) offset: u64,
    pub(crate) file_size: u64,
    pub(crate) mem_size: u64,
    /// p_flags: PF_X (1), PF_W (2), PF_R (4).
    pub(crate) flags: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfImage {
    pub(crate) class: ElfClass,
    pub(crate) entry: u64,
    pub(crate) segments: Vec<Segment>,
    /// PT_NOTE segments: (file offset, size), checked to lie inside the file.
    pub(crate) notes: Vec<(u64, u64)>,
    /// e_type: ET_EXEC (2) or ET_DYN (3, position independent).
    pub(crate) kind: u16,
    /// The PT_DYNAMIC segment's (vaddr, size), for loaders that relocate.
    pub(crate) dynamic: Option<(u64, u64)>,
}

/// e_type of a position-independent executable.
pub(crate) const ET_DYN: u16 = 3;
/// Segment flags (p_flags).
pub(crate) const PF_X: u32 = 1;
pub(crate) const PF_W: u32 = 2;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
/// Notes are small (Linux's take well under 4 KiB): a larger PT_NOTE is read only this far.
const NOTES_MAX: u64 = 64 * 1024;

/// True when `image` starts with the ELF magic.
pub(crate) fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// The ELF class, if `image` is ELF at all.
pub(crate) fn class_of(image: &[u8]) -> Option<ElfClass> {
    if !is_elf(image) || image.len() < 5 {
        return None;
    }
    match image[4] {
        1 => Some(ElfClass::Elf32),
        2 => Some(ElfClass::Elf64),
        _ => None,
    }
}

/// Reads `len` bytes at `offset`: where the file ends first, the ELF is truncated (`what`).
fn read<'a>(
    image: &'a Image,
    offset: u64,
    len: usize,
    what: &'static str,
    name: &str,
) -> Result<Cow<'a, [u8]>, ElfError> {
    image.read(offset, len, name).map_err(|e| match e {
        ImageError::PastEnd { .. } => ElfError::Truncated {
            what,
            detail: e.to_string(),
        },
        other => ElfError::Image(other),
    })
}

/// The little-endian field of `N` bytes at `at` in a structure read whole (`at + N` is within
/// it by construction; a short slice reads as zeros rather than panicking).
fn le<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    if let Some(src) = bytes.get(at..at + N) {
        field[..N].copy_from_slice(src);
    }
    u64::from_le_bytes(field)
}

/// Fails when `offset..offset+size` (a segment's bytes) runs past the end of the file.
fn check_in_file(
    image: &Image,
    what: &'static str,
    name: &str,
    offset: u64,
    size: u64,
) -> Result<(), ElfError> {
    match offset.checked_add(size) {
        Some(end) if end <= image.len() => Ok(()),
        end => Err(ElfError::Truncated {
            what,
            detail: format!(
                "{name} takes {size:#x} bytes at offset {offset:#x}..{}, past the end of the file ({:#x} bytes)",
                end.map_or("2^64".into(), |end| format!("{end:#x}")),
                image.len()
            ),
        }),
    }
}

/// Parses the header and program headers of a little-endian x86 ELF executable, and checks
/// that every segment's bytes are in the file.
pub(crate) fn parse(image: &Image) -> Result<ElfImage, ElfError> {
    let head = image.head();
    if !is_elf(head) {
        return Err(ElfError::NotElf);
    }
    let class = match head.get(4) {
        Some(1) => ElfClass::Elf32,
        Some(2) => ElfClass::Elf64,
        _ => {
            return Err(ElfError::Unsupported(
                "class is neither 32-bit (1) nor 64-bit (2)",
            ))
        }
    };
    let wide = class == ElfClass::Elf64;
    let header = read(
        image,
        0,
        if wide { 0x40 } else { 0x34 },
        "ELF header",
        "the ELF header",
    )?;
    if header.get(5) != Some(&1) {
        return Err(ElfError::Unsupported("not little-endian"));
    }
    match (class, le::<2>(&header, 0x12) as u16) {
        (ElfClass::Elf32, EM_386) | (ElfClass::Elf64, EM_X86_64) => {}
        _ => return Err(ElfError::Unsupported("machine is not i386 or x86-64")),
    }
    let (entry, phoff, phentsize, phnum) = if wide {
        (
            le::<8>(&header, 0x18),
            le::<8>(&header, 0x20),
            le::<2>(&header, 0x36),
            le::<2>(&header, 0x38),
        )
    } else {
        (
            le::<4>(&header, 0x18),
            le::<4>(&header, 0x1c),
            le::<2>(&header, 0x2a),
            le::<2>(&header, 0x2c),
        )
    };
    let min_phentsize = if wide { 56 } else { 32 };
    if phnum > 0 && phentsize < min_phentsize {
        return Err(ElfError::Unsupported("program header entries too small"));
    }
    // phnum and phentsize are 16-bit: their product cannot overflow.
    check_in_file(
        image,
        "program headers",
        &format!("the program header table ({phnum} × {phentsize} bytes)"),
        phoff,
        phnum * phentsize,
    )?;
    let mut segments = Vec::new();
    let mut notes = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = read(
            image,
            phoff + i * phentsize,
            min_phentsize as usize,
            "program headers",
            "a program header",
        )?;
        let kind = le::<4>(&ph, 0) as u32;
        if kind == PT_NOTE {
            let (offset, size) = if wide {
                (le::<8>(&ph, 8), le::<8>(&ph, 32))
            } else {
                (le::<4>(&ph, 4), le::<4>(&ph, 16))
            };
            let name = format!("note segment (program header {i})");
            check_in_file(image, "note segment", &name, offset, size)?;
            notes.push((offset, size));
            continue;
        }
        if kind == PT_DYNAMIC {
            dynamic = Some(if wide {
                (le::<8>(&ph, 16), le::<8>(&ph, 40))
            } else {
                (le::<4>(&ph, 8), le::<4>(&ph, 20))
            });
            continue;
        }
        if kind != PT_LOAD {
            continue;
        }
        let segment = if wide {
            Segment {
                offset: le::<8>(&ph, 8),
                vaddr: le::<8>(&ph, 16),
                paddr: le::<8>(&ph, 24),
                file_size: le::<8>(&ph, 32),
                mem_size: le::<8>(&ph, 40),
                flags: le::<4>(&ph, 4) as u32,
            }
        } else {
            Segment {
                offset: le::<4>(&ph, 4),
                vaddr: le::<4>(&ph, 8),
                paddr: le::<4>(&ph, 12),
                file_size: le::<4>(&ph, 16),
                mem_size: le::<4>(&ph, 20),
                flags: le::<4>(&ph, 24) as u32,
            }
        };
        let name = format!("segment {} (program header {i})", segments.len());
        check_in_file(
            image,
            "segment data",
            &name,
            segment.offset,
            segment.file_size,
        )?;
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
        kind: le::<2>(&header, 0x10) as u16,
        dynamic,
    })
}

/// One ELF note: its name (without the NUL), type and descriptor bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) name: Vec<u8>,
    pub(crate) kind: u32,
    pub(crate) desc: Vec<u8>,
}

impl ElfImage {
    /// The notes of every PT_NOTE segment (its first 64 KiB); a malformed note ends its
    /// segment's list.
    pub(crate) fn notes(&self, image: &Image) -> Result<Vec<Note>, ElfError> {
        let mut out = Vec::new();
        for &(offset, size) in &self.notes {
            let bytes = read(
                image,
                offset,
                size.min(NOTES_MAX) as usize,
                "note segment",
                "a note segment",
            )?;
            let mut rest = &bytes[..];
            while rest.len() >= 12 {
                let word = |i: usize| le::<4>(rest, 4 * i) as u32;
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
                    name: name.strip_suffix(b"\0").unwrap_or(name).to_vec(),
                    kind,
                    desc: rest[desc_start..desc_end].to_vec(),
                });
                rest = &rest[desc_end.next_multiple_of(4).min(rest.len())..];
            }
        }
        Ok(out)
    }

    /// The entry point as a physical address: kernels linked for a higher half give a virtual
    /// e_entry, which lives in the segment whose vaddr range holds it.
    pub(crate) fn physical_entry(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| self.entry >= s.vaddr && self.entry - s.vaddr < s.mem_size)
            .map_or(self.entry, |s| self.entry - s.vaddr + s.paddr)
    }

    /// One past the highest physical byte any segment occupies.
    pub(crate) fn physical_end(&self) -> u64 {
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

    fn parse_bytes(bytes: &[u8]) -> Result<ElfImage, ElfError> {
        parse(&Image::from(bytes))
    }

    fn truncated(bytes: &[u8]) -> (&'static str, String) {
        match parse_bytes(bytes) {
            Err(ElfError::Truncated { what, detail }) => (what, detail),
            other => panic!("not truncated: {other:?}"),
        }
    }

    #[test]
    fn parses_both_classes() {
        for class in [ElfClass::Elf32, ElfClass::Elf64] {
            let elf = parse_bytes(&tiny_elf(class, 0x100000, 0x100000, &[0xf4; 16])).unwrap();
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
        let (what, detail) = truncated(&image);
        assert_eq!(what, "segment data");
        assert_eq!(
            detail,
            "segment 0 (program header 0) takes 0x40 bytes at offset 0x100..0x140, past the end of the file (0x120 bytes)"
        );
    }

    #[test]
    fn truncated_header_is_an_error() {
        let image = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90]);
        let (what, detail) = truncated(&image[..0x20]);
        assert_eq!(what, "ELF header");
        assert!(detail.contains("0x0..0x34 is past the end of the file (0x20 bytes)"));
        assert!(matches!(parse_bytes(b"MZ\x90\x00"), Err(ElfError::NotElf)));
    }

    /// 100 bytes of a valid header: the 64-bit program headers end past them; the 32-bit one
    /// fits, but its segment's bytes do not.
    #[test]
    fn a_100_byte_elf_is_truncated_in_either_class() {
        let elf64 = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 16]);
        let (what, detail) = truncated(&elf64[..100]);
        assert_eq!(what, "program headers");
        assert!(detail.contains("(1 × 56 bytes) takes 0x38 bytes at offset 0x40..0x78"));
        let elf32 = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0x90; 16]);
        assert_eq!(truncated(&elf32[..100]).0, "segment data");
    }

    #[test]
    fn notes_past_the_file_are_truncated() {
        let mut image = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 16]);
        // Turn the only program header into a PT_NOTE of 0x1000 bytes at 0x100.
        image[0x40..0x44].copy_from_slice(&PT_NOTE.to_le_bytes());
        image[0x60..0x68].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(truncated(&image).0, "note segment");
    }

    #[test]
    fn higher_half_entry_is_made_physical() {
        let mut elf =
            parse_bytes(&tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0x90; 32])).unwrap();
        elf.segments[0].vaddr = 0xffff_ffff_8000_0000;
        elf.entry = 0xffff_ffff_8000_0010;
        assert_eq!(elf.physical_entry(), 0x100010);
    }
}
