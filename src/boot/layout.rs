//! Where gdbvisor puts its own boot data in low guest memory, and the builders for it.
//!
//! ```text
//! 0x00500  GDT: null, 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code
//! 0x01000  PML4          (ELF64 boot only)
//! 0x02000  PDPT          (ELF64 boot only)
//! 0x09000  multiboot info, memory map, strings, module list (up to 0x10000)
//! 0x10000  page directories, one per GiB identity-mapped (ELF64 boot only)
//! 0x80000  initial stack pointer (the stack grows down from here)
//! ```

use vm_memory::GuestMemoryBackend;

use super::loader::BootError;
use super::memory::GuestMemoryExt;
use crate::x86::segment::DescriptorFlags;

pub(crate) const GDT_ADDR: u64 = 0x500;
pub(crate) const CODE64_SELECTOR: u16 = 0x08;
pub(crate) const DATA_SELECTOR: u16 = 0x10;
pub(crate) const CODE32_SELECTOR: u16 = 0x18;

/// The boot GDT's raw descriptors, indexed by selector / 8.
pub(crate) const GDT_ENTRIES: [u64; 4] = [
    0,
    DescriptorFlags::KERNEL_CODE64.bits(),
    DescriptorFlags::KERNEL_DATA.bits(),
    DescriptorFlags::KERNEL_CODE32.bits(),
];
pub(crate) const GDT_LIMIT: u16 = (GDT_ENTRIES.len() * 8 - 1) as u16;

pub(crate) const PML4_ADDR: u64 = 0x1000;
pub(crate) const PDPT_ADDR: u64 = 0x2000;
pub(crate) const INFO_ADDR: u64 = 0x9000;
pub(crate) const INFO_END: u64 = 0x10000;
pub(crate) const PD_ADDR: u64 = 0x10000;
/// Page directories fit below the stack area: 64 of them map 64 GiB.
pub(crate) const MAX_PDS: u64 = 64;
pub(crate) const STACK_TOP: u64 = 0x80000;
/// The region a kernel image must not overlap (boot data and stack).
pub(crate) const BOOT_DATA: std::ops::Range<u64> = GDT_ADDR..STACK_TOP;

/// Writes the boot GDT.
pub(crate) fn write_gdt(ram: &impl GuestMemoryBackend) -> Result<(), BootError> {
    for (i, entry) in GDT_ENTRIES.iter().enumerate() {
        ram.write_u64(GDT_ADDR + 8 * i as u64, *entry)?;
    }
    Ok(())
}

/// Builds 4-level page tables identity-mapping `0..bytes` with 2 MiB pages; returns CR3.
pub(crate) fn write_identity_page_tables(
    ram: &impl GuestMemoryBackend,
    bytes: u64,
) -> Result<u64, BootError> {
    const GIB: u64 = 1 << 30;
    const PRESENT_WRITABLE: u64 = 0x3;
    const HUGE: u64 = 0x80;
    let pds = bytes.div_ceil(GIB);
    if pds > MAX_PDS {
        return Err(BootError::Layout(format!(
            "the ELF64 identity map covers at most {MAX_PDS} GiB, RAM ends at {bytes:#x}"
        )));
    }
    ram.zero(PML4_ADDR, 0x2000)?;
    ram.write_u64(PML4_ADDR, PDPT_ADDR | PRESENT_WRITABLE)?;
    for pd in 0..pds {
        let pd_addr = PD_ADDR + pd * 0x1000;
        ram.write_u64(PDPT_ADDR + pd * 8, pd_addr | PRESENT_WRITABLE)?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| ((pd * GIB + i * (2 << 20)) | PRESENT_WRITABLE | HUGE).to_le_bytes())
            .collect();
        ram.write_at(pd_addr, &entries)?;
    }
    Ok(PML4_ADDR)
}

/// Fails when a kernel piece would overwrite gdbvisor's boot data or leave RAM.
pub(crate) fn check_placement(
    ram: &impl GuestMemoryBackend,
    what: &str,
    start: u64,
    len: u64,
) -> Result<(), BootError> {
    if !ram.contains(start, len) {
        return Err(BootError::Layout(format!(
            "{what} at {start:#x}+{len:#x} is outside guest RAM (RAM ends at {:#x}; try a larger --memory)",
            ram.top()
        )));
    }
    let end = start + len;
    if len > 0 && start < BOOT_DATA.end && end > BOOT_DATA.start {
        return Err(BootError::Layout(format!(
            "{what} at {start:#x}+{len:#x} overlaps gdbvisor's boot data at {:#x}-{:#x}",
            BOOT_DATA.start, BOOT_DATA.end
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::plain_ram;

    #[test]
    fn gdt_descriptors_have_the_documented_bits() {
        // Access byte and flags nibble of each descriptor.
        assert_eq!((GDT_ENTRIES[1] >> 40) & 0xff, 0x9b);
        assert_eq!(
            (GDT_ENTRIES[1] >> 53) & 1,
            1,
            "L bit of the 64-bit code segment"
        );
        assert_eq!((GDT_ENTRIES[2] >> 40) & 0xff, 0x93);
        assert_eq!(
            (GDT_ENTRIES[3] >> 54) & 1,
            1,
            "D bit of the 32-bit code segment"
        );
        assert_eq!(GDT_LIMIT, 31);
    }

    #[test]
    fn identity_map_maps_ram_with_2mib_pages() {
        let ram = plain_ram(8 << 20);
        let cr3 = write_identity_page_tables(&ram, 4 << 30).unwrap();
        let mut entry = [0u8; 8];
        ram.read_at(cr3, &mut entry).unwrap();
        assert_eq!(u64::from_le_bytes(entry), PDPT_ADDR | 3);
        ram.read_at(PDPT_ADDR + 3 * 8, &mut entry).unwrap();
        assert_eq!(u64::from_le_bytes(entry), (PD_ADDR + 0x3000) | 3);
        ram.read_at(PD_ADDR + 0x3000 + 8, &mut entry).unwrap();
        assert_eq!(u64::from_le_bytes(entry), (3 << 30) + (2 << 20) + 0x83);
    }

    #[test]
    fn placement_checks_ram_and_boot_data() {
        let ram = plain_ram(4 << 20);
        assert!(check_placement(&ram, "segment", 0x100000, 0x1000).is_ok());
        assert!(check_placement(&ram, "segment", 0x7000, 0x1000).is_err());
        assert!(check_placement(&ram, "segment", 0x3ff000, 0x2000).is_err());
        assert!(check_placement(&ram, "segment", u64::MAX - 1, 0x10).is_err());
    }
}
