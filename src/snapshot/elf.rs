//! The ELF core container: the file header, program headers and notes of 32- and 64-bit
//! x86 core files, read without trusting a single field (every offset and size is checked
//! against the file), and the few pieces a writer needs.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::error::SnapshotError;

pub(crate) const ET_CORE: u16 = 4;
pub(crate) const EM_386: u16 = 3;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_NOTE: u32 = 4;
pub(crate) const NT_PRSTATUS: u32 = 1;
/// Size of an ELF64 file header and of one ELF64 program header.
pub(crate) const EHDR64_SIZE: usize = 64;
pub(crate) const PHDR64_SIZE: usize = 56;

/// Notes larger than this are not CPU state: a corrupt size field.
const MAX_NOTES: u64 = 64 << 20;
/// More program headers than this is a corrupt count (QEMU writes one per RAM block).
const MAX_PHDRS: usize = 4096;

/// One PT_LOAD: guest-physical `paddr..paddr+memsz`, of which the first `filesz` bytes are at
/// `offset` in the file and the rest are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) paddr: u64,
    pub(crate) offset: u64,
    pub(crate) filesz: u64,
    pub(crate) memsz: u64,
}

/// One note: its owner's name (without the NUL), type and descriptor bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) name: String,
    pub(crate) kind: u32,
    pub(crate) desc: Vec<u8>,
}

/// The parts of a core file a snapshot needs; the memory stays in the file until loaded.
#[derive(Debug)]
pub(crate) struct CoreFile {
    pub(crate) class64: bool,
    pub(crate) machine: u16,
    pub(crate) loads: Vec<Load>,
    pub(crate) notes: Vec<Note>,
}

/// Little-endian fields at fixed offsets of a byte slice the caller has sized.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl Fields<'_> {
    pub(crate) fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.0[at..at + 2].try_into().expect("2 bytes"))
    }
    pub(crate) fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    pub(crate) fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

fn read_exact_at(
    file: &File,
    len: u64,
    offset: u64,
    size: u64,
    what: &str,
) -> Result<Vec<u8>, SnapshotError> {
    let end = offset.checked_add(size).ok_or_else(|| {
        SnapshotError::Corrupt(format!(
            "{what} at offset {offset:#x} of {size:#x} bytes overflows"
        ))
    })?;
    if end > len {
        return Err(SnapshotError::Truncated(format!(
            "{what} at offset {offset:#x}..{end:#x} is past the end of the file ({len:#x} bytes)"
        )));
    }
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(SnapshotError::Read)?;
    Ok(buf)
}

/// Reads and checks the headers and notes of an x86 ELF core file.
pub(crate) fn parse(file: &File) -> Result<CoreFile, SnapshotError> {
    let len = file.metadata().map_err(SnapshotError::Read)?.len();
    if len < 4 {
        return Err(SnapshotError::NotElf);
    }
    let ident = read_exact_at(file, len, 0, 16.min(len), "ELF identification")?;
    if ident[..4] != *b"\x7fELF" {
        // QEMU's other dump-guest-memory formats: say how to get the ELF one instead.
        let other = match &ident[..] {
            [b'K', b'D', b'U', b'M', b'P', ..] => {
                Some("a kdump-compressed dump (dump-guest-memory -z/-l/-s)")
            }
            [b'P', b'A', b'G', b'E', b'D', b'U', ..] => {
                Some("a Windows crash dump (dump-guest-memory -w)")
            }
            _ => None,
        };
        return Err(match other {
            Some(what) => SnapshotError::Foreign(format!(
                "{what}; write it as ELF: dump-guest-memory FILE (without -z/-l/-s/-w)"
            )),
            None => SnapshotError::NotElf,
        });
    }
    if ident.len() < 16 {
        return Err(SnapshotError::Truncated(format!(
            "the file ends ({len} bytes) inside the ELF header"
        )));
    }
    let class64 = match ident[4] {
        1 => false,
        2 => true,
        other => {
            return Err(SnapshotError::Corrupt(format!(
                "ELF class {other} (1 or 2 expected)"
            )))
        }
    };
    if ident[5] != 1 {
        return Err(SnapshotError::Foreign(format!(
            "ELF data encoding {} is not little-endian",
            ident[5]
        )));
    }
    let ehdr_size = if class64 { EHDR64_SIZE } else { 52 };
    let ehdr = read_exact_at(file, len, 0, ehdr_size as u64, "the ELF header")?;
    let h = Fields(&ehdr);
    let e_type = h.u16(16);
    let machine = h.u16(18);
    if e_type != ET_CORE {
        let kind = match e_type {
            1 => "a relocatable object",
            2 => "an executable",
            3 => "a shared object",
            _ => "not a core file",
        };
        return Err(SnapshotError::Foreign(format!(
            "ELF type {e_type} ({kind}), not a core file (type 4)"
        )));
    }
    if machine != EM_X86_64 && machine != EM_386 {
        return Err(SnapshotError::Foreign(format!(
            "ELF machine {machine} is not x86 (3 or 62)"
        )));
    }
    let (phoff, phentsize, phnum) = if class64 {
        (h.u64(32), usize::from(h.u16(54)), usize::from(h.u16(56)))
    } else {
        (
            u64::from(h.u32(28)),
            usize::from(h.u16(42)),
            usize::from(h.u16(44)),
        )
    };
    let want_phent = if class64 { PHDR64_SIZE } else { 32 };
    if phnum == 0 {
        return Err(SnapshotError::Corrupt("no program headers".into()));
    }
    if phentsize != want_phent || phnum > MAX_PHDRS {
        return Err(SnapshotError::Corrupt(format!(
            "program header table of {phnum} entries of {phentsize} bytes ({want_phent} expected)"
        )));
    }
    let table = read_exact_at(
        file,
        len,
        phoff,
        (phentsize * phnum) as u64,
        "the program header table",
    )?;
    let mut loads = Vec::new();
    let mut notes = Vec::new();
    for (i, entry) in table.chunks(phentsize).enumerate() {
        let p = Fields(entry);
        // (type, offset, paddr, filesz, memsz)
        let (kind, offset, paddr, filesz, memsz) = if class64 {
            (p.u32(0), p.u64(8), p.u64(24), p.u64(32), p.u64(40))
        } else {
            (
                p.u32(0),
                u64::from(p.u32(4)),
                u64::from(p.u32(12)),
                u64::from(p.u32(16)),
                u64::from(p.u32(20)),
            )
        };
        match kind {
            PT_LOAD => {
                if filesz > memsz {
                    return Err(SnapshotError::Corrupt(format!(
                        "PT_LOAD {i} has more bytes in the file ({filesz:#x}) than in memory ({memsz:#x})"
                    )));
                }
                let end = offset.checked_add(filesz).filter(|&e| e <= len);
                if end.is_none() {
                    return Err(SnapshotError::Truncated(format!(
                        "PT_LOAD {i} (guest-physical {paddr:#x}) needs file bytes {offset:#x}+{filesz:#x}, the file has {len:#x}"
                    )));
                }
                if paddr.checked_add(memsz).is_none() {
                    return Err(SnapshotError::Corrupt(format!(
                        "PT_LOAD {i} at {paddr:#x}+{memsz:#x} wraps around"
                    )));
                }
                if memsz > 0 {
                    loads.push(Load {
                        paddr,
                        offset,
                        filesz,
                        memsz,
                    });
                }
            }
            PT_NOTE => {
                if filesz > MAX_NOTES {
                    return Err(SnapshotError::Corrupt(format!(
                        "PT_NOTE {i} claims {filesz:#x} bytes"
                    )));
                }
                let bytes = read_exact_at(file, len, offset, filesz, &format!("PT_NOTE {i}"))?;
                parse_notes(&bytes, &mut notes)?;
            }
            _ => {}
        }
    }
    loads.sort_by_key(|l| l.paddr);
    for pair in loads.windows(2) {
        if pair[0].paddr + pair[0].memsz > pair[1].paddr {
            return Err(SnapshotError::Corrupt(format!(
                "PT_LOAD segments overlap at guest-physical {:#x} (QEMU's dump-guest-memory -p writes one per virtual mapping: dump without -p)",
                pair[1].paddr
            )));
        }
    }
    Ok(CoreFile {
        class64,
        machine,
        loads,
        notes,
    })
}

/// Splits a PT_NOTE segment into notes (4-byte aligned names and descriptors, as Linux and
/// QEMU write them in both ELF classes).
fn parse_notes(bytes: &[u8], out: &mut Vec<Note>) -> Result<(), SnapshotError> {
    let mut at = 0usize;
    while at < bytes.len() {
        if bytes.len() - at < 12 {
            return Err(SnapshotError::Truncated(format!(
                "a note header at offset {at:#x} of the note segment is cut short"
            )));
        }
        let f = Fields(&bytes[at..]);
        let (namesz, descsz, kind) = (f.u32(0) as usize, f.u32(4) as usize, f.u32(8));
        let name_start = at + 12;
        let desc_start = name_start + namesz.div_ceil(4) * 4;
        let desc_end = desc_start.checked_add(descsz);
        let Some(desc_end) = desc_end.filter(|&e| e <= bytes.len() && desc_start <= bytes.len())
        else {
            return Err(SnapshotError::Truncated(format!(
                "note {} (type {kind}) claims {namesz} name and {descsz} descriptor bytes past the end of its segment",
                out.len()
            )));
        };
        let raw_name = &bytes[name_start..name_start + namesz];
        let name =
            String::from_utf8_lossy(raw_name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        out.push(Note {
            name,
            kind,
            desc: bytes[desc_start..desc_end].to_vec(),
        });
        at = desc_end.div_ceil(4) * 4;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn tests_parse_notes(bytes: &[u8], out: &mut Vec<Note>) -> Result<(), SnapshotError> {
    parse_notes(bytes, out)
}

/// Appends one note (4-byte aligned name and descriptor).
pub(crate) fn push_note(buf: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    buf.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    buf.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    buf.extend_from_slice(&kind.to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    pad4(buf);
    buf.extend_from_slice(desc);
    pad4(buf);
}

fn pad4(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// An ELF64 x86-64 core header for `phnum` program headers that follow it.
pub(crate) fn ehdr64(phnum: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(EHDR64_SIZE);
    h.extend_from_slice(b"\x7fELF");
    h.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little-endian, version 1, System V ABI
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&ET_CORE.to_le_bytes());
    h.extend_from_slice(&EM_X86_64.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&(EHDR64_SIZE as u64).to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&(EHDR64_SIZE as u16).to_le_bytes());
    h.extend_from_slice(&(PHDR64_SIZE as u16).to_le_bytes());
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&[0; 6]); // no section headers
    h
}

/// An ELF64 program header.
pub(crate) fn phdr64(kind: u32, offset: u64, paddr: u64, size: u64, align: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PHDR64_SIZE);
    p.extend_from_slice(&kind.to_le_bytes());
    let flags: u32 = if kind == PT_LOAD { 0b111 } else { 0b100 }; // RWX, or R
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&offset.to_le_bytes());
    // Physical memory: the virtual address is the physical one (identity), as QEMU writes it
    // without paging.
    p.extend_from_slice(&if kind == PT_LOAD { paddr } else { 0 }.to_le_bytes());
    p.extend_from_slice(&paddr.to_le_bytes());
    p.extend_from_slice(&size.to_le_bytes()); // filesz
    p.extend_from_slice(&size.to_le_bytes()); // memsz
    p.extend_from_slice(&align.to_le_bytes());
    p
}
