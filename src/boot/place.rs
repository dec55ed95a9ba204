//! Putting an image's bytes into guest memory, for the loaders that share the steps: an ELF's
//! segments, and the size check before anything loaded whole is read.

use vm_memory::GuestMemoryBackend;

use super::elf::{self, ElfImage};
use super::image::{size_text, Image};
use super::layout;
use super::loader::BootError;
use super::memory::GuestMemoryExt;

/// Where a loader put a kernel: its entry point, one past its last byte (bss included), and
/// [`LoadedKernel::code`](super::loader::LoadedKernel::code).
pub(crate) struct Placement {
    pub(crate) entry: u64,
    pub(crate) end: u64,
    pub(crate) code: Vec<(u64, u64)>,
}

/// Copies an ELF's PT_LOAD segments to their physical addresses, zero-filling the bss; every
/// placement is checked before any byte is read. Returns where the ELF's bytes went.
pub(crate) fn load_segments(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    elf: &ElfImage,
) -> Result<Placement, BootError> {
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

/// Parses `image`, which must be an ELF64 (`format` says who needs it, for the error).
pub(crate) fn parse_elf64(image: &Image, format: &str) -> Result<ElfImage, BootError> {
    let elf = elf::parse(image)?;
    if elf.class != elf::ElfClass::Elf64 {
        return Err(BootError::Format(format!("{format} needs an ELF64 image")));
    }
    Ok(elf)
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
