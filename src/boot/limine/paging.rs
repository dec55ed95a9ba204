//! The 4-level page tables a Limine kernel starts on: the HHDM, the identity map (base
//! revision 0), and the kernel's segments with their ELF rights. Tables live in the
//! bootloader-reclaimable area; ranges use 2 MiB pages where both addresses allow it.

use vm_memory::GuestMemoryBackend;

use super::super::loader::BootError;
use super::super::memory::GuestMemoryExt;
use super::area::{BootArea, PAGE};
use super::error::LimineError;
use crate::x86::PageTableFlags;

const LARGE: u64 = 2 << 20;
const PRESENT: u64 = PageTableFlags::PRESENT.bits();
const WRITABLE: u64 = PageTableFlags::WRITABLE.bits();
const WRITE_THROUGH: u64 = PageTableFlags::WRITE_THROUGH.bits();
const HUGE: u64 = PageTableFlags::HUGE_PAGE.bits();
/// The PAT bit of a 4 KiB page's entry (where a larger page's entry has PS), and of a 2 MiB
/// page's.
const PAT_SMALL: u64 = PageTableFlags::HUGE_PAGE.bits();
const PAT_LARGE: u64 = PageTableFlags::PAT_HUGE.bits();
const NO_EXECUTE: u64 = PageTableFlags::NO_EXECUTE.bits();
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// Rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rights {
    pub(crate) writable: bool,
    pub(crate) executable: bool,
    /// Write-combining: PAT entry 5 (PAT and PWT set), as the protocol maps framebuffers.
    pub(crate) write_combining: bool,
}

impl Rights {
    pub(crate) const ALL: Rights = Rights {
        writable: true,
        executable: true,
        write_combining: false,
    };

    /// The entry's bits for a 4 KiB page, or a 2 MiB one (`large`).
    fn bits(self, large: bool) -> u64 {
        let pat = match (self.write_combining, large) {
            (false, _) => 0,
            (true, false) => PAT_SMALL | WRITE_THROUGH,
            (true, true) => PAT_LARGE | WRITE_THROUGH | HUGE,
        };
        PRESENT
            | pat
            | if large { HUGE } else { 0 }
            | if self.writable { WRITABLE } else { 0 }
            | if self.executable { 0 } else { NO_EXECUTE }
    }
}

/// Page tables being built in guest RAM.
pub(crate) struct PageTables<'a, M: GuestMemoryBackend> {
    ram: &'a M,
    area: &'a mut BootArea,
    /// CR3.
    pub(crate) root: u64,
}

impl<'a, M: GuestMemoryBackend> PageTables<'a, M> {
    pub(crate) fn new(ram: &'a M, area: &'a mut BootArea) -> Result<Self, BootError> {
        let root = area.page(ram)?;
        Ok(PageTables { ram, area, root })
    }

    fn read(&self, addr: u64) -> Result<u64, BootError> {
        let mut bytes = [0u8; 8];
        self.ram.read_at(addr, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// The table the entry at `slot` points to, made when absent.
    fn next_table(&mut self, slot: u64) -> Result<u64, BootError> {
        let entry = self.read(slot)?;
        if entry & PRESENT != 0 {
            if entry & HUGE != 0 {
                return Err(LimineError::Layout(format!(
                    "overlapping mappings at page-table entry {slot:#x}: this is a bug"
                ))
                .into());
            }
            return Ok(entry & ADDRESS);
        }
        let table = self.area.page(self.ram)?;
        self.ram.write_u64(slot, table | PRESENT | WRITABLE)?;
        Ok(table)
    }

    /// Maps `len` bytes of virtual `virt` to physical `phys` (both page-aligned).
    pub(crate) fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        rights: Rights,
    ) -> Result<(), BootError> {
        let mut done = 0;
        while done < len {
            let (v, p) = (virt.wrapping_add(done), phys + done);
            let index = |level: u32| (v >> (12 + 9 * level)) & 0x1ff;
            let pdpt = self.next_table(self.root + 8 * index(3))?;
            let pd = self.next_table(pdpt + 8 * index(2))?;
            let large = v % LARGE == 0 && p % LARGE == 0 && len - done >= LARGE;
            if large && self.read(pd + 8 * index(1))? & PRESENT == 0 {
                self.ram
                    .write_u64(pd + 8 * index(1), p | rights.bits(true))?;
                done += LARGE;
                continue;
            }
            let pt = self.next_table(pd + 8 * index(1))?;
            self.ram
                .write_u64(pt + 8 * index(0), p | rights.bits(false))?;
            done += PAGE;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::{plain_ram, read_u64};

    #[test]
    fn large_pages_where_aligned_small_pages_elsewhere() {
        let ram = plain_ram(16 << 20);
        let mut area = BootArea::new(0x10_0000, 0x10_0000);
        let mut tables = PageTables::new(&ram, &mut area).unwrap();
        let hhdm = 0xffff_8000_0000_0000u64;
        tables
            .map(hhdm + 0x1000, 0x1000, (4 << 20) - 0x1000, Rights::ALL)
            .unwrap();
        let root = tables.root;
        let pml4e = read_u64(&ram, root + 8 * 256);
        let pdpte = read_u64(&ram, pml4e & ADDRESS);
        let pd = pdpte & ADDRESS;
        // First 2 MiB: a page table (page 0 unmapped); second: a 2 MiB page.
        let pt = read_u64(&ram, pd) & ADDRESS;
        assert_eq!(read_u64(&ram, pt), 0);
        assert_eq!(read_u64(&ram, pt + 8), 0x1000 | PRESENT | WRITABLE);
        assert_eq!(
            read_u64(&ram, pd + 8),
            (2 << 20) | PRESENT | WRITABLE | HUGE
        );
        let code = Rights {
            writable: false,
            executable: true,
            write_combining: false,
        };
        tables
            .map(0xffff_ffff_8000_0000, 0x20_0000, PAGE, code)
            .unwrap();
        let data = Rights {
            writable: true,
            executable: false,
            write_combining: false,
        };
        tables
            .map(0xffff_ffff_8000_1000, 0x20_1000, PAGE, data)
            .unwrap();
        let pml4e = read_u64(&ram, root + 8 * 511);
        let pd = read_u64(&ram, (pml4e & ADDRESS) + 8 * 510) & ADDRESS;
        let pt = read_u64(&ram, pd) & ADDRESS;
        assert_eq!(read_u64(&ram, pt), 0x20_0000 | PRESENT);
        assert_eq!(
            read_u64(&ram, pt + 8),
            0x20_1000 | PRESENT | WRITABLE | NO_EXECUTE
        );
    }
}
