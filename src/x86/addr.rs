//! Address newtypes, so linear and physical addresses cannot be mixed up by accident.

use std::fmt;
use thiserror::Error;

/// A linear address is not canonical: its upper bits are not copies of the top implemented bit.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("linear address {addr:#x} is not canonical for {bits}-bit linear addresses")]
pub(crate) struct AddrError {
    pub(crate) addr: u64,
    pub(crate) bits: u32,
}

/// A linear (virtual) address: the output of segmentation, the input of paging.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub(crate) struct LinearAddr(u64);

/// A guest-physical address: the output of paging.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub(crate) struct PhysAddr(u64);

/// Whether `addr` is canonical for `bits`-bit linear addresses (48 for 4-level, 57 for 5-level):
/// bits 63..bits-1 must all be equal.
pub(crate) const fn is_canonical(addr: u64, bits: u32) -> bool {
    if bits >= 64 {
        return true;
    }
    sign_extend(addr, bits) == addr
}

/// Sign-extends the low `bits` bits of `addr` (what the CPU requires of long-mode addresses).
pub const fn sign_extend(addr: u64, bits: u32) -> u64 {
    if bits >= 64 {
        return addr;
    }
    let shift = 64 - bits;
    (((addr << shift) as i64) >> shift) as u64
}

impl LinearAddr {
    /// Wraps any 64-bit value; use [`LinearAddr::new_canonical`] to check it.
    pub(crate) const fn new(addr: u64) -> Self {
        LinearAddr(addr)
    }

    /// Wraps `addr` if it is canonical for `bits`-bit linear addresses.
    pub(crate) const fn new_canonical(addr: u64, bits: u32) -> Result<Self, AddrError> {
        if is_canonical(addr, bits) {
            Ok(LinearAddr(addr))
        } else {
            Err(AddrError { addr, bits })
        }
    }

    /// The raw value.
    pub(crate) const fn as_u64(self) -> u64 {
        self.0
    }

    /// Canonical for 48-bit (4-level paging) addresses.
    pub(crate) const fn is_canonical_48(self) -> bool {
        is_canonical(self.0, 48)
    }

    /// Canonical for 57-bit (5-level paging) addresses.
    pub(crate) const fn is_canonical_57(self) -> bool {
        is_canonical(self.0, 57)
    }

    /// Offset within a page of `page_size` bytes (a power of two).
    pub(crate) const fn page_offset(self, page_size: u64) -> u64 {
        self.0 & (page_size - 1)
    }

    /// Start of the page of `page_size` bytes (a power of two) that holds this address.
    pub(crate) const fn align_down(self, page_size: u64) -> Self {
        LinearAddr(self.0 & !(page_size - 1))
    }
}

impl PhysAddr {
    /// Wraps a guest-physical address.
    pub(crate) const fn new(addr: u64) -> Self {
        PhysAddr(addr)
    }

    /// The raw value.
    pub(crate) const fn as_u64(self) -> u64 {
        self.0
    }

    /// Start of the page of `page_size` bytes (a power of two) that holds this address.
    pub(crate) const fn align_down(self, page_size: u64) -> Self {
        PhysAddr(self.0 & !(page_size - 1))
    }
}

impl From<LinearAddr> for u64 {
    fn from(a: LinearAddr) -> u64 {
        a.0
    }
}

impl From<PhysAddr> for u64 {
    fn from(a: PhysAddr) -> u64 {
        a.0
    }
}

impl fmt::Debug for LinearAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinearAddr({:#x})", self.0)
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for LinearAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for LinearAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_48() {
        assert!(LinearAddr::new(0x0000_7fff_ffff_ffff).is_canonical_48());
        assert!(LinearAddr::new(0xffff_8000_0000_0000).is_canonical_48());
        assert!(!LinearAddr::new(0x0000_8000_0000_0000).is_canonical_48());
        assert!(!LinearAddr::new(0xfff7_8000_0000_0000).is_canonical_48());
        assert_eq!(
            sign_extend(0x0000_8000_0000_0000, 48),
            0xffff_8000_0000_0000
        );
    }

    #[test]
    fn canonical_57() {
        assert!(LinearAddr::new(0x00ff_ffff_ffff_ffff).is_canonical_57());
        assert!(LinearAddr::new(0x0000_8000_0000_0000).is_canonical_57());
        assert!(!LinearAddr::new(0x0100_0000_0000_0000).is_canonical_57());
        assert!(LinearAddr::new(0xff00_0000_0000_0000).is_canonical_57());
        assert_eq!(
            LinearAddr::new_canonical(0x0100_0000_0000_0000, 57),
            Err(AddrError {
                addr: 0x0100_0000_0000_0000,
                bits: 57
            })
        );
    }

    #[test]
    fn alignment() {
        let a = LinearAddr::new(0xffff_8000_0020_1234);
        assert_eq!(a.page_offset(0x1000), 0x234);
        assert_eq!(a.align_down(0x20_0000).as_u64(), 0xffff_8000_0020_0000);
        assert_eq!(PhysAddr::new(0x1fff).align_down(0x1000).as_u64(), 0x1000);
    }
}
