//! gdbvisor provides no BIOS, so a real-mode `int 0x10`, IRQ or exception through an empty
//! interrupt vector would jump to 0000:0000 and run zeros for ever. Before the kernel's first
//! instruction every empty vector of the real-mode IVT (0x0-0x3FF) points at a stub of
//! gdbvisor's own that reports to the VMM, which stops the run saying which vector it was
//! (see `vmm::no_bios`). A KVM-PVM host delivers a real-mode `int n` to the IVT without an
//! exit, so the trap has to live in guest memory.
//!
//! ```text
//! F000:F000 + 4n  (linear 0xFF000 + 4n), n = 0..255:
//!     E6 E5   out %al, $0xE5   gdbvisor's port; the VMM tells the vector from the address
//!     CF      iret             not reached: the VMM rewinds the vCPU to the interrupted code
//!     90      nop              padding
//! ```
//!
//! The stubs live in the system BIOS segment (F000), where a real-mode handler would be on a
//! PC and which every memory map gdbvisor hands over marks reserved: above the ACPI tables at
//! its start (0xF0000, at most ~2 KiB), below the reset vector and BIOS date/model bytes at its
//! end. `out` only reads AL, so the registers gdb shows at the stop are the guest's.

use vm_memory::GuestMemoryBackend;

use super::loader::BootError;
use super::memory::GuestMemoryExt;

/// The gdbvisor-private port the stubs write; only writes from the stubs count.
pub(crate) const PORT: u16 = 0xE5;
/// Real-mode address of stub 0.
pub(crate) const STUB_SEGMENT: u16 = 0xF000;
pub(crate) const STUB_OFFSET: u16 = 0xF000;
/// Linear address of stub 0.
pub(crate) const STUBS: u64 = ((STUB_SEGMENT as u64) << 4) + STUB_OFFSET as u64;
pub(crate) const STUB_LEN: u64 = 4;
const STUB: [u8; STUB_LEN as usize] = [0xE6, PORT as u8, 0xCF, 0x90];
const VECTORS: u64 = 256;
const IVT_ENTRY_LEN: u64 = 4;

/// The vector whose stub holds linear address `linear`, if one does.
pub(crate) fn stub_vector(linear: u64) -> Option<u8> {
    let index = linear.checked_sub(STUBS)? / STUB_LEN;
    (index < VECTORS).then_some(index as u8)
}

/// Writes the stubs and points every empty IVT entry (0000:0000) at its stub. Memory the kernel
/// image already holds is left alone: its own IVT entries stay, and with the image over the
/// stubs' place (a flat binary in the BIOS segment) nothing is written. Returns how many
/// vectors now lead to a stub.
pub(crate) fn install(ram: &impl GuestMemoryBackend) -> Result<usize, BootError> {
    let stubs_len = VECTORS * STUB_LEN;
    if !ram.contains(0, VECTORS * IVT_ENTRY_LEN) || !ram.contains(STUBS, stubs_len) {
        log::debug!("no RAM at the IVT or the BIOS segment: no no-BIOS IVT stubs");
        return Ok(0);
    }
    // RAM starts zeroed: anything there now is the kernel's.
    let mut area = vec![0u8; stubs_len as usize];
    ram.read_at(STUBS, &mut area)?;
    if area.iter().any(|&b| b != 0) {
        log::warn!("the kernel occupies {STUBS:#x}: no no-BIOS IVT stubs (an empty real-mode vector jumps to 0000:0000)");
        return Ok(0);
    }
    let stubs: Vec<u8> = (0..VECTORS).flat_map(|_| STUB).collect();
    ram.write_at(STUBS, &stubs)?;
    let mut pointed = 0;
    for vector in 0..=u8::MAX {
        let at = u64::from(vector) * IVT_ENTRY_LEN;
        let mut entry = [0u8; IVT_ENTRY_LEN as usize];
        ram.read_at(at, &mut entry)?;
        if entry != [0; 4] {
            continue;
        }
        let offset = STUB_OFFSET + u16::from(vector) * STUB_LEN as u16;
        entry[..2].copy_from_slice(&offset.to_le_bytes());
        entry[2..].copy_from_slice(&STUB_SEGMENT.to_le_bytes());
        ram.write_at(at, &entry)?;
        pointed += 1;
    }
    Ok(pointed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::plain_ram;

    fn stub_entry(vector: u8) -> u64 {
        STUBS + u64::from(vector) * STUB_LEN
    }

    fn ivt_entry(ram: &impl GuestMemoryBackend, vector: u8) -> (u16, u16) {
        let mut entry = [0u8; 4];
        ram.read_at(u64::from(vector) * 4, &mut entry).unwrap();
        (
            u16::from_le_bytes([entry[2], entry[3]]),
            u16::from_le_bytes([entry[0], entry[1]]),
        )
    }

    #[test]
    fn every_empty_vector_leads_to_its_own_stub() {
        let ram = plain_ram(2 << 20);
        // A kernel image that brought its own vector 0x13.
        ram.write_at(0x13 * 4, &[0x34, 0x12, 0x00, 0x07]).unwrap();
        assert_eq!(install(&ram).unwrap(), 255);
        assert_eq!(ivt_entry(&ram, 0x13), (0x0700, 0x1234));
        for vector in [0u8, 8, 0x10, 0xff] {
            let (segment, offset) = ivt_entry(&ram, vector);
            let linear = (u64::from(segment) << 4) + u64::from(offset);
            assert_eq!(linear, stub_entry(vector));
            assert_eq!(stub_vector(linear), Some(vector));
            assert_eq!(stub_vector(linear + 2), Some(vector), "past the out");
            let mut code = [0u8; 4];
            ram.read_at(linear, &mut code).unwrap();
            assert_eq!(code, [0xE6, 0xE5, 0xCF, 0x90]);
        }
        assert_eq!(stub_vector(STUBS - 1), None);
        assert_eq!(stub_vector(STUBS + 0x400), None);
        assert_eq!(stub_vector(0), None);
    }

    #[test]
    fn a_kernel_in_the_stubs_place_or_small_ram_gets_none() {
        let ram = plain_ram(2 << 20);
        ram.write_at(STUBS + 0x200, &[0x90]).unwrap();
        assert_eq!(install(&ram).unwrap(), 0);
        assert_eq!(ivt_entry(&ram, 0x10), (0, 0));
        let small = plain_ram(512 << 10);
        assert_eq!(install(&small).unwrap(), 0);
    }
}
