//! Minimal ACPI tables so a kernel finds every CPU: RSDP → XSDT → MADT (one Processor Local
//! APIC entry per vCPU, the I/O APIC, LINT1 as NMI). Linux starts the APICs it finds here with
//! INIT/SIPI, which KVM's in-kernel LAPIC carries out; Debian's cloud kernel has no MP-table
//! parser, so ACPI is the one way to show it more than one CPU.
//!
//! The tables sit in the BIOS area at [`RSDP_ADDR`], which the memory map marks reserved and
//! where kernels scan for "RSD PTR " when no pointer is handed over. No FADT or DSDT: the kernel
//! reads the MADT early, then finds no namespace to load and runs without ACPI's other services.

use vm_memory::GuestMemoryBackend;

use super::loader::BootError;
use super::memory::GuestMemoryExt;

pub(crate) const RSDP_ADDR: u64 = 0xF_0000;
const XSDT_ADDR: u64 = RSDP_ADDR + 0x40;
const MADT_ADDR: u64 = RSDP_ADDR + 0x100;
/// The BIOS area ends at 1 MiB.
const AREA_END: u64 = 0x10_0000;
pub(crate) const LAPIC_ADDR: u32 = 0xFEE0_0000;
pub(crate) const IOAPIC_ADDR: u32 = 0xFEC0_0000;
const OEM_ID: &[u8; 6] = b"GDBVSR";
const OEM_TABLE_ID: &[u8; 8] = b"GDBVISOR";
const HEADER_LEN: usize = 36;
/// MADT flags: PCAT_COMPAT, a pair of 8259s is present (the in-kernel PIC).
const MADT_PCAT_COMPAT: u32 = 1;
const LAPIC_ENABLED: u32 = 1;

/// Two's complement of the byte sum, so the whole table sums to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// A system description table: header (with length and checksum filled in) and body.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_LEN + body.len());
    t.extend_from_slice(signature);
    t.extend(((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"GDBV"); // creator ID
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// The MADT for `cpus` CPUs with APIC IDs 0..cpus; the I/O APIC takes the next ID.
fn madt(cpus: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(LAPIC_ADDR.to_le_bytes());
    body.extend(MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..cpus {
        // Processor Local APIC: type 0, length 8, processor UID, APIC ID, flags.
        body.extend([0, 8, id, id]);
        body.extend(LAPIC_ENABLED.to_le_bytes());
    }
    // I/O APIC: type 1, length 12, ID, reserved, address, GSI base 0. KVM's default routing
    // sends ISA IRQ n to pin n, which is what no Interrupt Source Override entry means.
    body.extend([1, 12, cpus, 0]);
    body.extend(IOAPIC_ADDR.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    // Local APIC NMI: type 4, length 6, all processors (0xFF), flags 0, LINT1.
    body.extend([4, 6, 0xFF, 0, 0, 1]);
    table(b"APIC", 4, &body)
}

fn rsdp(xsdt: u64) -> [u8; 36] {
    let mut r = [0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2; // revision: ACPI 2.0+, with the XSDT
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// Writes RSDP, XSDT and MADT for `cpus` CPUs; returns the RSDP's address, or `None` when the
/// kernel image itself occupies that memory.
pub(crate) fn write_tables(
    ram: &impl GuestMemoryBackend,
    cpus: u32,
) -> Result<Option<u64>, BootError> {
    let cpus = u8::try_from(cpus)
        .ok()
        .filter(|&n| n > 0 && n < 255)
        .ok_or_else(|| BootError::Layout(format!("ACPI tables for {cpus} CPUs")))?;
    let madt = madt(cpus);
    if MADT_ADDR + madt.len() as u64 > AREA_END {
        return Err(BootError::Layout(format!(
            "the MADT for {cpus} CPUs does not fit below 1 MiB"
        )));
    }
    // RAM starts zeroed: anything there now is the kernel's own (an image linked into the BIOS
    // area), which the tables must not overwrite.
    let mut area = vec![0u8; (MADT_ADDR - RSDP_ADDR) as usize + madt.len()];
    ram.read_at(RSDP_ADDR, &mut area)?;
    if area.iter().any(|&b| b != 0) {
        log::warn!("the kernel occupies {RSDP_ADDR:#x}: no ACPI tables written");
        return Ok(None);
    }
    let xsdt = table(b"XSDT", 1, &MADT_ADDR.to_le_bytes());
    ram.write_at(RSDP_ADDR, &rsdp(XSDT_ADDR))?;
    ram.write_at(XSDT_ADDR, &xsdt)?;
    ram.write_at(MADT_ADDR, &madt)?;
    Ok(Some(RSDP_ADDR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory::tests::plain_ram;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn tables_checksum_and_link_up() {
        let ram = plain_ram(4 << 20);
        assert_eq!(write_tables(&ram, 3).unwrap(), Some(RSDP_ADDR));
        let mut r = [0u8; 36];
        ram.read_at(RSDP_ADDR, &mut r).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        let xsdt = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let mut x = [0u8; 44];
        ram.read_at(xsdt, &mut x).unwrap();
        assert_eq!((&x[..4], sum(&x)), (&b"XSDT"[..], 0));
        let madt_addr = u64::from_le_bytes(x[36..44].try_into().unwrap());
        let len = 36 + 8 + 3 * 8 + 12 + 6;
        let mut m = vec![0u8; len];
        ram.read_at(madt_addr, &mut m).unwrap();
        assert_eq!(&m[..4], b"APIC");
        assert_eq!(
            u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize,
            len
        );
        assert_eq!(sum(&m), 0);
        // Third CPU's entry: type 0, length 8, UID 2, APIC ID 2, enabled.
        assert_eq!(&m[44 + 16..44 + 24], &[0, 8, 2, 2, 1, 0, 0, 0]);
        // The I/O APIC takes ID 3.
        assert_eq!(&m[68..72], &[1, 12, 3, 0]);
    }

    #[test]
    fn cpu_counts_outside_a_byte_are_refused() {
        let ram = plain_ram(4 << 20);
        assert!(write_tables(&ram, 0).is_err());
        assert!(write_tables(&ram, 255).is_err());
        assert!(write_tables(&ram, 254).is_ok());
    }

    #[test]
    fn a_kernel_in_the_bios_area_is_left_alone() {
        let ram = plain_ram(4 << 20);
        ram.write_at(RSDP_ADDR + 0x80, &[0x90]).unwrap();
        assert_eq!(write_tables(&ram, 1).unwrap(), None);
        let mut byte = [0u8];
        ram.read_at(RSDP_ADDR, &mut byte).unwrap();
        assert_eq!(byte, [0]);
    }
}
