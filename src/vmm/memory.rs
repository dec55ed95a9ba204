//! Guest RAM: anonymous memory from vm-memory, laid out like a PC's, readable by the x86 model.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::x86::{PhysMemory, PhysMemoryError};

/// RAM below this address is contiguous from 0; the rest starts at 4 GiB, leaving the
/// 32-bit MMIO hole (LAPIC, IOAPIC) free as on real PCs.
pub const LOW_RAM_END: u64 = 0xC000_0000;
/// Where RAM resumes above the 32-bit hole.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("guest RAM of {0} bytes is too small (at least 2 MiB)")]
    TooSmall(u64),
    #[error("cannot allocate {size} bytes of guest RAM: {source}")]
    Allocate {
        size: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("guest-physical range {addr:#x}+{len:#x} is outside RAM")]
    OutOfRange { addr: u64, len: usize },
}

/// Guest RAM and its PC layout.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
}

impl GuestRam {
    /// Allocates `size` bytes of RAM, split around the 32-bit MMIO hole when it is that large.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        if size < 2 << 20 {
            return Err(MemoryError::TooSmall(size));
        }
        Self::from_ranges(&Self::ranges_for(size))
    }

    /// RAM with exactly these (start, length) ranges (a snapshot's), sorted and disjoint.
    pub fn from_ranges(ranges: &[(u64, u64)]) -> Result<Self, MemoryError> {
        let size = ranges.iter().map(|r| r.1).sum();
        let regions: Vec<(GuestAddress, usize)> = ranges
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len as usize))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&regions)
            .map_err(|source| MemoryError::Allocate { size, source })?;
        for region in mem.iter() {
            // A fork (vmm::teardown) must neither copy nor write-protect guest RAM.
            // SAFETY: the range is exactly this region's live mapping; MADV_DONTFORK changes
            // only what a child process inherits.
            let rc = unsafe {
                libc::madvise(
                    region.as_ptr().cast(),
                    region.len() as usize,
                    libc::MADV_DONTFORK,
                )
            };
            if rc != 0 {
                log::debug!("MADV_DONTFORK: {}", std::io::Error::last_os_error());
            }
        }
        Ok(GuestRam { mem, size })
    }

    /// The (start, length) ranges that hold `size` bytes of RAM.
    pub fn ranges_for(size: u64) -> Vec<(u64, u64)> {
        if size <= LOW_RAM_END {
            vec![(0, size)]
        } else {
            vec![(0, LOW_RAM_END), (HIGH_RAM_START, size - LOW_RAM_END)]
        }
    }

    /// Total RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// End of the RAM that starts at 0 (the "upper memory" multiboot reports ends here).
    pub fn low_end(&self) -> u64 {
        self.size.min(LOW_RAM_END)
    }

    /// One past the highest RAM address.
    pub fn top(&self) -> u64 {
        self.mem.last_addr().0 + 1
    }

    /// (start, length) of each RAM range.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.mem
            .iter()
            .map(|region| (region.start_addr().0, region.len()))
            .collect()
    }

    /// True when every byte of `addr..addr+len` is RAM.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let Some(last) = addr.checked_add(len - 1) else {
            return false;
        };
        self.ranges()
            .iter()
            .any(|&(start, size)| addr >= start && last < start + size)
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), MemoryError> {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfRange {
                addr,
                len: bytes.len(),
            })
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfRange {
                addr,
                len: buf.len(),
            })
    }

    /// Fills `addr..addr+len` with zeros.
    pub fn zero(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        const CHUNK: usize = 64 * 1024;
        let zeros = [0u8; CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            self.write(addr + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    pub fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }

    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// The vm-memory object, for registering memory slots.
    pub fn mmap(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl PhysMemory for GuestRam {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError> {
        self.read(addr, buf).map_err(|_| PhysMemoryError {
            addr,
            len: buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_range() {
        assert_eq!(GuestRam::ranges_for(128 << 20), vec![(0, 128 << 20)]);
    }

    #[test]
    fn large_ram_skips_the_32_bit_hole() {
        assert_eq!(
            GuestRam::ranges_for(4 << 30),
            vec![(0, LOW_RAM_END), (HIGH_RAM_START, (4 << 30) - LOW_RAM_END)]
        );
    }

    #[test]
    fn reads_past_ram_fail() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let mut buf = [0u8; 8];
        assert!(ram.read_phys((2 << 20) - 4, &mut buf).is_err());
        assert!(ram.read_phys((2 << 20) - 8, &mut buf).is_ok());
        assert!(!ram.contains((2 << 20) - 4, 8));
        assert!(ram.contains(0, 2 << 20));
    }

    #[test]
    fn tiny_ram_is_refused() {
        assert!(matches!(GuestRam::new(4096), Err(MemoryError::TooSmall(_))));
    }
}
