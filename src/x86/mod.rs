//! A pure model of x86 address translation: segmentation, paging and descriptor tables.
//!
//! Nothing here knows about KVM or gdb; guest-physical memory is read through [`PhysMemory`].

use thiserror::Error;

pub mod addr;
pub mod cpu;

pub use addr::{is_canonical, sign_extend, AddrError, LinearAddr, PhysAddr};
pub use cpu::{ControlRegs, CpuMode, Cr0Flags, Cr4Flags, EferFlags, PagingMode};

/// A guest-physical range that cannot be read: outside RAM, or device memory.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("guest-physical range {addr:#x}+{len:#x} is outside RAM")]
pub struct PhysMemoryError {
    pub addr: u64,
    pub len: usize,
}

/// Read access to guest-physical memory.
pub trait PhysMemory {
    /// Fills `buf` from guest-physical `addr`; fails if any byte is outside RAM.
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError>;

    /// Reads a little-endian `u64` at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, PhysMemoryError> {
        let mut bytes = [0u8; 8];
        self.read_phys(addr, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Reads a little-endian `u32` at `addr`.
    fn read_u32(&self, addr: u64) -> Result<u32, PhysMemoryError> {
        let mut bytes = [0u8; 4];
        self.read_phys(addr, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
}
