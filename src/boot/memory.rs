//! Guest memory as the loaders see it: any vm-memory [`GuestMemoryBackend`] (gdbvisor's
//! `vmm::memory::GuestRam`, or a plain `GuestMemoryMmap` in tests), addressed by plain `u64`s,
//! with the layout questions loaders ask. This is the same bound linux-loader takes, and it
//! needs no KVM.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::x86::PhysMemoryError;

/// Byte access and layout queries on guest-physical memory, for every [`GuestMemoryBackend`].
pub(crate) trait GuestMemoryExt {
    /// Writes `bytes` at `addr`; every byte must be RAM.
    fn write_at(&self, addr: u64, bytes: &[u8]) -> Result<(), PhysMemoryError>;

    /// Reads `buf.len()` bytes at `addr`; every byte must be RAM.
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError>;

    /// (start, length) of each RAM range, in address order.
    fn ram_ranges(&self) -> Vec<(u64, u64)>;

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), PhysMemoryError> {
        self.write_at(addr, &value.to_le_bytes())
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), PhysMemoryError> {
        self.write_at(addr, &value.to_le_bytes())
    }

    /// Fills `addr..addr+len` with zeros.
    fn zero(&self, addr: u64, len: u64) -> Result<(), PhysMemoryError> {
        const CHUNK: usize = 64 * 1024;
        let zeros = [0u8; CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            self.write_at(addr + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// True when every byte of `addr..addr+len` is RAM.
    fn contains(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let Some(last) = addr.checked_add(len - 1) else {
            return false;
        };
        self.ram_ranges()
            .iter()
            .any(|&(start, size)| addr >= start && last < start + size)
    }

    /// One past the highest RAM address (0 without RAM).
    fn top(&self) -> u64 {
        self.ram_ranges()
            .last()
            .map_or(0, |&(start, len)| start + len)
    }

    /// End of the RAM that runs unbroken from address 0 (the "upper memory" multiboot reports
    /// ends here; on a PC, at the 32-bit MMIO hole when RAM is that large).
    fn low_end(&self) -> u64 {
        let mut end = 0;
        for (start, len) in self.ram_ranges() {
            if start != end {
                break;
            }
            end = start + len;
        }
        end
    }
}

impl<M: GuestMemoryBackend + ?Sized> GuestMemoryExt for M {
    fn write_at(&self, addr: u64, bytes: &[u8]) -> Result<(), PhysMemoryError> {
        self.write_slice(bytes, GuestAddress(addr))
            .map_err(|_| PhysMemoryError {
                addr,
                len: bytes.len(),
            })
    }

    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError> {
        self.read_slice(buf, GuestAddress(addr))
            .map_err(|_| PhysMemoryError {
                addr,
                len: buf.len(),
            })
    }

    fn ram_ranges(&self) -> Vec<(u64, u64)> {
        self.iter()
            .map(|region| (region.start_addr().0, region.len()))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    /// Anonymous guest memory with these (start, length) ranges: no KVM involved.
    pub(crate) fn ram(ranges: &[(u64, u64)]) -> GuestMemoryMmap {
        let regions: Vec<_> = ranges
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len as usize))
            .collect();
        GuestMemoryMmap::from_ranges(&regions).expect("anonymous guest memory")
    }

    /// `size` bytes of anonymous guest memory from address 0, as loaders' tests load into.
    pub(crate) fn plain_ram(size: u64) -> GuestMemoryMmap {
        ram(&[(0, size)])
    }

    pub(crate) fn read_u32(ram: &impl GuestMemoryBackend, addr: u64) -> u32 {
        let mut bytes = [0u8; 4];
        ram.read_at(addr, &mut bytes).unwrap();
        u32::from_le_bytes(bytes)
    }

    pub(crate) fn read_u64(ram: &impl GuestMemoryBackend, addr: u64) -> u64 {
        let mut bytes = [0u8; 8];
        ram.read_at(addr, &mut bytes).unwrap();
        u64::from_le_bytes(bytes)
    }

    #[test]
    fn ranges_bound_every_access() {
        let mem = ram(&[(0, 0x2000), (0x1_0000, 0x1000)]);
        assert_eq!(mem.top(), 0x1_1000);
        assert_eq!(mem.low_end(), 0x2000);
        assert!(mem.contains(0x1fff, 1));
        assert!(!mem.contains(0x1fff, 2), "the gap after the first range");
        assert!(mem.contains(0x1_0000, 0x1000));
        assert!(!mem.contains(u64::MAX, 2));
        assert!(mem.contains(u64::MAX, 0));
        let err = mem.write_u64(0x1ffc, 0).unwrap_err();
        assert_eq!(
            err,
            PhysMemoryError {
                addr: 0x1ffc,
                len: 8
            }
        );
        mem.write_u32(0x1_0000, 0x1234_5678).unwrap();
        assert_eq!(read_u32(&mem, 0x1_0000), 0x1234_5678);
        mem.write_at(0x100, &[0xff; 0x100]).unwrap();
        mem.zero(0x180, 0x80).unwrap();
        let mut buf = [0u8; 0x100];
        mem.read_at(0x100, &mut buf).unwrap();
        assert!(buf[..0x80].iter().all(|&b| b == 0xff) && buf[0x80..].iter().all(|&b| b == 0));
    }

    #[test]
    fn low_memory_runs_across_adjacent_ranges() {
        assert_eq!(ram(&[(0, 0x1000), (0x1000, 0x1000)]).low_end(), 0x2000);
        assert_eq!(ram(&[(0x1000, 0x1000)]).low_end(), 0);
    }
}
