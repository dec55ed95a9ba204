//! Guest RAM: anonymous memory from vm-memory, laid out like a PC's, readable by the x86 model.

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

use crate::boot::framebuffer::Framebuffer;
use crate::boot::memory::GuestMemoryExt;
use crate::x86::{PhysMemory, PhysMemoryError};

/// RAM below this address is contiguous from 0; the rest starts at 4 GiB, leaving the
/// 32-bit MMIO hole (LAPIC, IOAPIC) free as on real PCs.
pub(crate) const LOW_RAM_END: u64 = 0xC000_0000;
/// Where RAM resumes above the 32-bit hole.
pub(crate) const HIGH_RAM_START: u64 = 0x1_0000_0000;

/// Why guest RAM cannot be made or accessed.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// Less than the 2 MiB gdbvisor's boot data needs.
    #[error("guest RAM of {0} bytes is too small (at least 2 MiB)")]
    TooSmall(u64),
    /// The host cannot allocate it.
    #[error("cannot allocate {size} bytes of guest RAM: {source}")]
    Allocate {
        /// Bytes asked for.
        size: u64,
        /// vm-memory's error.
        source: vm_memory::mmap::FromRangesError,
    },
    /// An access outside RAM.
    #[error(transparent)]
    OutOfRange(#[from] PhysMemoryError),
}

/// Guest RAM and its PC layout. It is a vm-memory [`GuestMemoryBackend`], the memory the
/// loaders ([`crate::boot`]) write kernels into. A framebuffer, when the kernel asked for one,
/// is one more region of it: KVM maps it like RAM and gdb reads it like RAM, but the memory map
/// the loaders report calls it reserved.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    framebuffer: Option<Framebuffer>,
}

impl GuestRam {
    /// Allocates `size` bytes of RAM, split around the 32-bit MMIO hole when it is that large.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        if size < 2 << 20 {
            return Err(MemoryError::TooSmall(size));
        }
        Self::from_ranges(&Self::ranges_for(size))
    }

    /// `size` bytes of RAM as [`GuestRam::new`], plus `framebuffer`'s memory at its address.
    pub fn with_framebuffer(
        size: u64,
        framebuffer: Option<Framebuffer>,
    ) -> Result<Self, MemoryError> {
        let Some(framebuffer) = framebuffer else {
            return Self::new(size);
        };
        if size < 2 << 20 {
            return Err(MemoryError::TooSmall(size));
        }
        let mut ranges = Self::ranges_for(size);
        ranges.push((framebuffer.addr(), framebuffer.region_len()));
        ranges.sort_unstable();
        Ok(GuestRam {
            framebuffer: Some(framebuffer),
            ..Self::from_ranges(&ranges)?
        })
    }

    /// The framebuffer the kernel was given, if any.
    pub fn framebuffer(&self) -> Option<Framebuffer> {
        self.framebuffer
    }

    /// RAM with exactly these (start, length) ranges (a snapshot's), sorted and disjoint.
    pub(crate) fn from_ranges(ranges: &[(u64, u64)]) -> Result<Self, MemoryError> {
        let size = ranges.iter().map(|r| r.1).sum();
        let regions: Vec<(GuestAddress, usize)> = ranges
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len as usize))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&regions)
            .map_err(|source| MemoryError::Allocate { size, source })?;
        Ok(GuestRam {
            mem,
            framebuffer: None,
        })
    }

    /// The (start, length) ranges that hold `size` bytes of RAM.
    pub(crate) fn ranges_for(size: u64) -> Vec<(u64, u64)> {
        if size <= LOW_RAM_END {
            vec![(0, size)]
        } else {
            vec![(0, LOW_RAM_END), (HIGH_RAM_START, size - LOW_RAM_END)]
        }
    }

    /// (start, length) of each RAM range (the framebuffer's among them).
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ram_ranges()
    }

    /// True when every byte of `addr..addr+len` is RAM.
    pub(crate) fn contains(&self, addr: u64, len: u64) -> bool {
        GuestMemoryExt::contains(self, addr, len)
    }

    /// Copies `bytes` to guest-physical `addr`; fails outside RAM.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), MemoryError> {
        Ok(self.write_at(addr, bytes)?)
    }

    /// Fills `buf` from guest-physical `addr`; fails outside RAM.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        Ok(self.read_at(addr, buf)?)
    }

    /// The vm-memory object, for registering memory slots.
    pub(crate) fn mmap(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl GuestMemoryBackend for GuestRam {
    type R = GuestRegionMmap;

    fn iter(&self) -> impl Iterator<Item = &GuestRegionMmap> {
        self.mem.iter()
    }

    fn find_region(&self, addr: GuestAddress) -> Option<&GuestRegionMmap> {
        self.mem.find_region(addr)
    }
}

impl PhysMemory for GuestRam {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError> {
        self.read_at(addr, buf)
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
    fn a_framebuffer_is_a_region_of_its_own_in_the_hole() {
        let framebuffer = Framebuffer::new(1024, 768).unwrap();
        let ram = GuestRam::with_framebuffer(4 << 30, Some(framebuffer)).unwrap();
        assert_eq!(
            ram.ranges(),
            vec![
                (0, LOW_RAM_END),
                (framebuffer.addr(), 3 << 20),
                (HIGH_RAM_START, (4 << 30) - LOW_RAM_END)
            ]
        );
        assert_eq!(ram.framebuffer(), Some(framebuffer));
        ram.write(framebuffer.addr() + (3 << 20) - 4, &[1, 2, 3, 4])
            .unwrap();
        assert_eq!(GuestRam::new(2 << 20).unwrap().framebuffer(), None);
    }

    #[test]
    fn tiny_ram_is_refused() {
        assert!(matches!(GuestRam::new(4096), Err(MemoryError::TooSmall(_))));
    }
}
