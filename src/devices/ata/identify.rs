//! The 256-word IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data (ATA/ATAPI-6, 8.15 and 8.16):
//! what a driver reads to learn a drive's kind, name and size.

/// CHS geometry reported for disks (the usual translated 16 heads, 63 sectors per track).
pub(crate) const HEADS: u64 = 16;
pub(crate) const SECTORS_PER_TRACK: u64 = 63;
/// Largest block READ/WRITE MULTIPLE accept (word 47).
pub(crate) const MAX_MULTIPLE: u16 = 16;

const MODEL_DISK: &str = "gdbvisor HARDDISK";
const MODEL_CDROM: &str = "gdbvisor DVD-ROM";
const FIRMWARE: &str = "1.0";

/// 256 words, stored as the 512 bytes the data port returns.
struct Words([u16; 256]);

impl Words {
    /// ATA strings: space-padded, two characters per word, the first in the high byte.
    fn string(&mut self, first: usize, words: usize, text: &str) {
        let mut bytes = vec![b' '; words * 2];
        for (dst, src) in bytes.iter_mut().zip(text.bytes()) {
            *dst = src;
        }
        for (i, pair) in bytes.chunks(2).enumerate() {
            self.0[first + i] = u16::from_be_bytes([pair[0], pair[1]]);
        }
    }

    /// Little-endian words, the integrity word 255 completed: signature 0xA5 in its low byte,
    /// and a high byte that makes all 512 bytes sum to zero (mod 256).
    fn finish(mut self) -> Vec<u8> {
        self.0[255] = 0x00A5;
        let mut bytes: Vec<u8> = self.0.iter().flat_map(|w| w.to_le_bytes()).collect();
        let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
        bytes[511] = 0u8.wrapping_sub(sum);
        bytes
    }
}

fn common(serial: &str, model: &str) -> Words {
    let mut w = Words([0; 256]);
    w.string(10, 10, serial);
    w.string(23, 4, FIRMWARE);
    w.string(27, 20, model);
    // PIO modes 3 and 4 (word 64), minimum cycle times (65-68), words 64-70 valid (53 bit 1).
    w.0[53] = 0x0002;
    w.0[64] = 0x0003;
    for word in 65..=68 {
        w.0[word] = 120;
    }
    w
}

/// IDENTIFY DEVICE of a disk of `sectors` 512-byte sectors; `multiple` is the current READ
/// MULTIPLE block (0: not set).
pub(crate) fn disk(sectors: u64, serial: &str, multiple: u16) -> Vec<u8> {
    let mut w = common(serial, MODEL_DISK);
    let cylinders = (sectors / (HEADS * SECTORS_PER_TRACK)).clamp(1, 16383) as u16;
    w.0[0] = 0x0040; // ATA device, fixed (not removable)
    w.0[1] = cylinders;
    w.0[3] = HEADS as u16;
    w.0[6] = SECTORS_PER_TRACK as u16;
    w.0[47] = 0x8000 | MAX_MULTIPLE;
    w.0[49] = 0x0200; // LBA supported; no DMA
    w.0[50] = 0x4000;
    // Current CHS translation valid (53 bit 0): words 54-58.
    w.0[53] |= 0x0001;
    w.0[54] = cylinders;
    w.0[55] = HEADS as u16;
    w.0[56] = SECTORS_PER_TRACK as u16;
    let chs = u64::from(cylinders) * HEADS * SECTORS_PER_TRACK;
    w.0[57] = chs as u16;
    w.0[58] = (chs >> 16) as u16;
    w.0[59] = if multiple == 0 { 0 } else { 0x0100 | multiple };
    let lba28 = sectors.min(0x0FFF_FFFF);
    w.0[60] = lba28 as u16;
    w.0[61] = (lba28 >> 16) as u16;
    w.0[80] = 0x007E; // ATA-1 to ATA-6
                      // Supported and enabled: FLUSH CACHE (bit 12), 48-bit addresses (10), FLUSH CACHE EXT (13).
    w.0[82] = 0x4000;
    w.0[83] = 0x4000 | 0x3400;
    w.0[84] = 0x4000;
    w.0[85] = 0x4000;
    w.0[86] = 0x3400;
    w.0[87] = 0x4000;
    for (i, word) in (100..=103).enumerate() {
        w.0[word] = (sectors >> (16 * i)) as u16;
    }
    w.finish()
}

/// IDENTIFY PACKET DEVICE of a CD-ROM.
pub(crate) fn cdrom(serial: &str) -> Vec<u8> {
    let mut w = common(serial, MODEL_CDROM);
    // ATAPI (15:14 = 10), CD-ROM (12:8 = 5), removable (7), DRQ within 50 us (6:5 = 10),
    // 12-byte packets (1:0 = 0).
    w.0[0] = 0x8000 | 0x0500 | 0x0080 | 0x0040;
    w.0[49] = 0x0200;
    w.0[80] = 0x001E; // ATA/ATAPI-4 to -6
    w.0[82] = 0x4010; // PACKET feature set
    w.0[83] = 0x4000;
    w.0[84] = 0x4000;
    w.0[85] = 0x4010;
    w.0[87] = 0x4000;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(data: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([data[2 * i], data[2 * i + 1]])
    }

    #[test]
    fn disk_words_and_checksum() {
        let sectors = 0x1_2345_6789;
        let data = disk(sectors, "GV0001", 0);
        assert_eq!(data.len(), 512);
        assert_eq!(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(data[510], 0xA5);
        assert_eq!(word(&data, 0), 0x0040);
        // Model text: "gd" in word 27, high byte first.
        assert_eq!(word(&data, 27), u16::from_be_bytes(*b"gd"));
        assert_eq!(
            (u32::from(word(&data, 61)) << 16) | u32::from(word(&data, 60)),
            0x0FFF_FFFF,
            "LBA28 capacity saturates"
        );
        let lba48 = (0..4).fold(0u64, |acc, i| {
            acc | u64::from(word(&data, 100 + i)) << (16 * i)
        });
        assert_eq!(lba48, sectors);
        assert_ne!(word(&data, 83) & 0x0400, 0, "48-bit feature set");
        assert_eq!(word(&data, 49) & 0x0200, 0x0200, "LBA");
    }

    #[test]
    fn cdrom_is_atapi() {
        let data = cdrom("GV0003");
        assert_eq!(word(&data, 0) >> 14, 2);
        assert_eq!((word(&data, 0) >> 8) & 0x1f, 5);
        assert_eq!(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }
}
