//! PCI configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data) with no devices: the
//! address register reads back what was written, so a kernel finds the mechanism, and every
//! configuration read returns all ones, the "no device here" vendor ID 0xFFFF. Linux then
//! boots without PCI instead of probing port ranges at random.

use super::{access_value, BusAction, PioDevice};

pub(crate) const BASE: u16 = 0xCF8;
pub(crate) const LEN: u16 = 8;
const DATA_OFFSET: u16 = 4;

#[derive(Default)]
pub(crate) struct PciConfig {
    address: u32,
}

impl PioDevice for PciConfig {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        if offset < DATA_OFFSET {
            let bytes = self.address.to_le_bytes();
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = bytes.get(usize::from(offset) + i).copied().unwrap_or(0xff);
            }
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        // Only full 32-bit writes set the address, as on real chipsets (byte writes to 0xCF9
        // are a reset-control register elsewhere, not emulated here).
        if offset == 0 && data.len() == 4 {
            self.address = access_value(data) & 0x80ff_fffc;
        }
        BusAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_reads_back_and_data_says_no_device() {
        let mut pci = PciConfig::default();
        pci.write(0, &0x8000_0000u32.to_le_bytes());
        let mut word = [0u8; 4];
        pci.read(0, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0x8000_0000);
        pci.read(DATA_OFFSET, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0xffff_ffff);
        let mut half = [0u8; 2];
        pci.read(DATA_OFFSET + 2, &mut half);
        assert_eq!(half, [0xff, 0xff]);
    }
}
