//! The bootloader-reclaimable area: one physically contiguous stretch of guest RAM that holds
//! everything gdbvisor hands a Limine kernel (responses, page tables, GDT, stacks), handed out
//! by a bump allocator. Its size is fixed before the memory map is made, from an upper bound.

use vm_memory::GuestMemoryBackend;

use super::super::loader::BootError;
use super::super::memory::GuestMemoryExt;
use super::error::LimineError;

pub(crate) const PAGE: u64 = 0x1000;

/// A bump allocator over `start..end` of guest-physical memory (zeroed as handed out).
pub(crate) struct BootArea {
    pub(crate) start: u64,
    next: u64,
    pub(crate) end: u64,
}

impl BootArea {
    pub(crate) fn new(start: u64, len: u64) -> Self {
        BootArea {
            start,
            next: start,
            end: start + len,
        }
    }

    /// `len` zeroed bytes aligned to `align`; their physical address.
    pub(crate) fn alloc(
        &mut self,
        ram: &impl GuestMemoryBackend,
        len: u64,
        align: u64,
    ) -> Result<u64, BootError> {
        let at = self.next.next_multiple_of(align);
        if at + len > self.end {
            return Err(LimineError::Layout(format!(
                "gdbvisor's bootloader-reclaimable area ({:#x} bytes) is full: this is a bug",
                self.end - self.start
            ))
            .into());
        }
        ram.zero(at, len)?;
        self.next = at + len;
        Ok(at)
    }

    /// `bytes` copied in, aligned to 8; their physical address.
    pub(crate) fn put(
        &mut self,
        ram: &impl GuestMemoryBackend,
        bytes: &[u8],
    ) -> Result<u64, BootError> {
        let at = self.alloc(ram, bytes.len() as u64, 8)?;
        ram.write_at(at, bytes)?;
        Ok(at)
    }

    /// A 0-terminated copy of `text`; its physical address.
    pub(crate) fn put_str(
        &mut self,
        ram: &impl GuestMemoryBackend,
        text: &str,
    ) -> Result<u64, BootError> {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.put(ram, &bytes)
    }

    /// A zeroed, page-aligned page (page tables).
    pub(crate) fn page(&mut self, ram: &impl GuestMemoryBackend) -> Result<u64, BootError> {
        self.alloc(ram, PAGE, PAGE)
    }
}
