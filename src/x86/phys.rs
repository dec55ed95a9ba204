//! Guest-physical memory as the model reads it: the [`PhysMemory`] trait every walk and table
//! iterator takes, and [`VecMemory`], RAM in a `Vec` for tests and offline analysis.

use thiserror::Error;

/// A guest-physical range that cannot be read: outside RAM, or device memory.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("guest-physical range {addr:#x}+{len:#x} is outside RAM")]
pub struct PhysMemoryError {
    pub(crate) addr: u64,
    pub(crate) len: usize,
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

/// Guest-physical memory held in a `Vec`: RAM from `base` to `base + len`, nothing elsewhere.
///
/// For tests, benches and offline analysis (e.g. a physical dump taken from QEMU).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VecMemory {
    base: u64,
    data: Vec<u8>,
}

impl VecMemory {
    /// `len` zeroed bytes of RAM starting at guest-physical 0.
    pub fn new(len: usize) -> Self {
        Self::with_base(0, len)
    }

    /// `len` zeroed bytes of RAM starting at guest-physical `base`.
    pub(crate) fn with_base(base: u64, len: usize) -> Self {
        VecMemory {
            base,
            data: vec![0; len],
        }
    }

    /// Wraps existing bytes as RAM starting at `base`.
    pub fn from_bytes(base: u64, data: Vec<u8>) -> Self {
        VecMemory { base, data }
    }

    /// Mutable bytes, to build guest structures in place.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, PhysMemoryError> {
        let err = PhysMemoryError { addr, len };
        let off = addr.checked_sub(self.base).ok_or(err)?;
        let end = off.checked_add(len as u64).ok_or(err)?;
        if end > self.data.len() as u64 {
            return Err(err);
        }
        Ok(off as usize..end as usize)
    }

    /// Copies `bytes` to `addr`; fails outside RAM.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), PhysMemoryError> {
        let r = self.range(addr, bytes.len())?;
        self.data[r].copy_from_slice(bytes);
        Ok(())
    }

    /// Stores a little-endian `u64`; panics outside RAM (a bug in the caller's layout).
    pub fn write_u64(&mut self, addr: u64, value: u64) {
        self.write(addr, &value.to_le_bytes())
            .expect("write_u64 outside RAM");
    }

    /// Stores a little-endian `u32`; panics outside RAM (a bug in the caller's layout).
    pub fn write_u32(&mut self, addr: u64, value: u32) {
        self.write(addr, &value.to_le_bytes())
            .expect("write_u32 outside RAM");
    }
}

impl PhysMemory for VecMemory {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn read_u64(&self, addr: u64) -> Result<u64, PhysMemoryError> {
        let r = self.range(addr, 8)?;
        Ok(u64::from_le_bytes(self.data[r].try_into().unwrap()))
    }
}
