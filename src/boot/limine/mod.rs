//! The Limine boot protocol (limine-protocol `PROTOCOL.md`, base revisions 0 to 6), loaded
//! by the VMM: no bootloader code runs in the guest. The kernel is loaded as its program
//! headers say (slid and relocated when position independent), its requests are found in the
//! loaded image and answered in bootloader-reclaimable memory, and it enters in long mode on
//! the page tables and GDT the protocol describes. Application processors are held by the VMM
//! until the kernel writes their `goto_address` (see [`ApPlan`](super::entry::ApPlan)).

mod area;
pub(crate) mod error;
mod executable;
mod memmap;
mod paging;
pub(crate) mod protocol;
mod requests;
mod responses;

use vm_memory::GuestMemoryBackend;

use super::memory::GuestMemoryExt;

use super::elf::{self, ElfClass};
use super::framebuffer::VideoRequest;
use super::image::Image;
use super::loader::{BootError, BootParams, LoadedKernel};
use super::place;
pub use error::LimineError;
use protocol::RequestKind;

/// How much of an ELF64's segment bytes detection reads at most: requests live in data, so
/// writable segments are read first, and a huge image (a segment larger than RAM, say) is not
/// read whole only to find it is something else.
const DETECT_BUDGET: u64 = 32 << 20;
/// Detection reads this much at a time; chunks overlap by a request's ID, 8-byte aligned.
const DETECT_CHUNK: u64 = 1 << 20;
const DETECT_OVERLAP: u64 = 32;

/// Whether an ELF64 image is a Limine kernel: a base-revision tag or a known request ID at an
/// 8-byte aligned place in its loadable segments' file bytes (see [`DETECT_BUDGET`]).
pub(crate) fn detect(image: &Image) -> Result<bool, BootError> {
    scan_file(image, requests::has_limine_marks)
}

/// The framebuffer a Limine kernel asks for: any size, when it has a framebuffer request.
pub(crate) fn video_request(image: &Image) -> Result<Option<VideoRequest>, BootError> {
    let asks = scan_file(image, |bytes| {
        requests::has_request(bytes, RequestKind::Framebuffer)
    })?;
    Ok(asks.then_some(VideoRequest {
        width: 0,
        height: 0,
        depth: 0,
    }))
}

/// Whether `found` holds for some chunk of an ELF64's segment bytes (8-byte aligned like
/// their addresses), within [`DETECT_BUDGET`].
fn scan_file(image: &Image, found: impl Fn(&[u8]) -> bool) -> Result<bool, BootError> {
    if elf::class_of(image.head()) != Some(ElfClass::Elf64) {
        return Ok(false);
    }
    let Ok(elf) = elf::parse(image) else {
        return Ok(false);
    };
    let mut segments = elf.segments.clone();
    segments.sort_by_key(|s| s.flags & elf::PF_W == 0);
    let mut budget = DETECT_BUDGET;
    for segment in &segments {
        // Segments are aligned in the file as in memory, so 8-byte alignment carries over
        // (an odd file offset cannot hold an aligned request).
        if segment.offset % 8 != segment.vaddr % 8 {
            continue;
        }
        let skip = (8 - segment.offset % 8) % 8;
        let len = segment.file_size.saturating_sub(skip).min(budget);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(DETECT_CHUNK);
            let bytes = image.read(segment.offset + skip + at, n as usize, "a kernel segment")?;
            if found(&bytes) {
                return Ok(true);
            }
            if at + n >= len {
                break;
            }
            at += n - DETECT_OVERLAP;
        }
        budget -= len;
        if budget == 0 {
            break;
        }
    }
    Ok(false)
}

/// Loads a Limine kernel.
pub(crate) fn load(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    params: &BootParams,
) -> Result<LoadedKernel, BootError> {
    let elf = place::parse_elf64(image, "the Limine protocol")?;
    let exe = executable::build(image, &elf, params.kaslr, ram.low_end())?;
    let found = requests::scan(&exe.bytes)?;
    let revision = found.revision();
    if revision > protocol::MAX_BASE_REVISION {
        return Err(LimineError::BaseRevision(revision).into());
    }
    responses::answer(ram, image, params, exe, &found)
}

#[cfg(test)]
mod tests;
