//! A pure model of x86 address translation: segmentation, paging and descriptor tables.
//!
//! Nothing here knows about KVM or gdb; guest-physical memory is read through [`PhysMemory`].
//! A debugger address goes through the same steps as in the CPU:
//!
//! 1. [`cpu`]: decode CR0/CR3/CR4/EFER ([`ControlRegs`]) into a [`CpuMode`] and a [`PagingMode`].
//! 2. [`segment`]: logical → linear with the hidden descriptor cache ([`SegmentCache`]), as in
//!    real, protected, compatibility or 64-bit mode; [`segment::descriptor_for`] decodes what the
//!    GDT/LDT says now, so a stale cache can be shown.
//! 3. [`paging`]: linear → physical with [`walk`] (a [`Trace`] of every level) or [`translate`]
//!    (plus the permission check and the #PF error code the CPU would raise).
//! 4. [`tlb`]: a software [`Tlb`] in front of `translate` for repeated reads while the guest is
//!    stopped; invalidate it whenever the vCPU ran.
//! 5. [`tables`]: iterators over the GDT, LDT, IDT, TSS and all page-table mappings, bounded by
//!    a budget so that hostile tables cannot hang the debugger.
//!
//! [`logical_to_physical`] chains steps 2 and 3.

use thiserror::Error;

pub mod addr;
pub mod cpu;
pub mod insn;
pub mod paging;
pub mod segment;
pub mod tables;
pub mod tlb;

pub use addr::{is_canonical, sign_extend, AddrError, LinearAddr, PhysAddr};
pub use cpu::{ControlRegs, CpuMode, Cr0Flags, Cr4Flags, EferFlags, PagingMode};
pub use paging::{
    check_access, translate, walk, Access, AccessKind, LinearMemory, LinearReadError, PageFault,
    PageFaultCode, PageSize, PageTableEntry, PageTableFlags, PagedMemory, Rights, Trace,
    Translation, Walk, WalkError,
};
pub use segment::{
    logical_to_linear, Descriptor, DescriptorFlags, SegAccess, SegmentCache, SegmentDescriptor,
    SegmentError, SegmentRegister, SegmentSelector, TableRegister,
};
pub use tlb::{Tlb, TlbStats};

/// Why a logical address could not be turned into a physical one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X86Error {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// Logical (`seg:offset`) → linear → physical, as the CPU would for an access of `len` bytes.
///
/// Returns the linear address and the translation of its first byte; the caller splits longer
/// accesses at [`Translation::bytes_to_page_end`]. Pass [`SegAccess::Any`] and
/// [`Access::DEBUGGER`] for debugger reads that should ignore rights.
#[allow(clippy::too_many_arguments)]
pub fn logical_to_physical<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    mode: CpuMode,
    seg: SegmentRegister,
    cache: &SegmentCache,
    offset: u64,
    len: u64,
    seg_access: SegAccess,
    access: Access,
) -> Result<(u64, Translation), X86Error> {
    let linear = logical_to_linear(mode, regs, seg, cache, offset, len, seg_access)?;
    Ok((linear, translate(mem, regs, linear, access)?))
}

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
    pub fn with_base(base: u64, len: usize) -> Self {
        VecMemory {
            base,
            data: vec![0; len],
        }
    }

    /// Wraps existing bytes as RAM starting at `base`.
    pub fn from_bytes(base: u64, data: Vec<u8>) -> Self {
        VecMemory { base, data }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
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
