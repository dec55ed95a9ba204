//! A pure model of x86 address translation: segmentation, paging and descriptor tables.
//!
//! Nothing here knows about KVM or gdb; guest-physical memory is read through [`PhysMemory`].
//! A debugger address goes through the same steps as in the CPU:
//!
//! 1. [`cpu`]: decode CR0/CR3/CR4/EFER ([`ControlRegs`]) into a [`CpuMode`] and a [`PagingMode`].
//! 2. [`segment`]: logical → linear with the hidden descriptor cache ([`SegmentCache`]), as in
//!    real, protected, compatibility or 64-bit mode; [`segment::descriptor_for`] decodes what the
//!    GDT/LDT says now, so a stale cache can be shown.
//! 3. [`paging`]: linear → physical with [`walk`] (a [`paging::Trace`] of every level) or [`translate`]
//!    (plus the permission check and the #PF error code the CPU would raise).
//! 4. [`tables`]: iterators over the GDT, LDT, IDT, TSS and all page-table mappings, bounded by
//!    a budget so that hostile tables cannot hang the debugger.
//!
//! [`logical_to_physical`] chains steps 2 and 3.

use thiserror::Error;

pub(crate) mod addr;
pub mod cpu;
pub(crate) mod delivery;
pub(crate) mod exception;
pub(crate) mod insn;
pub mod paging;
pub(crate) mod phys;
pub mod segment;
pub mod tables;
pub(crate) mod why;

pub use addr::sign_extend;

pub use cpu::{ControlRegs, CpuMode, Cr0Flags, Cr4Flags};
pub(crate) use cpu::{EferFlags, PagingMode};
pub(crate) use paging::Translation;
pub use paging::{
    translate, walk, Access, LinearMemory, LinearReadError, PageFaultCode, PageSize,
    PageTableFlags, PagedMemory, Rights, WalkError,
};
pub(crate) use phys::PhysMemoryError;
pub use phys::{PhysMemory, VecMemory};
pub(crate) use segment::logical_to_linear;
pub use segment::{
    Descriptor, SegAccess, SegmentCache, SegmentDescriptor, SegmentError, SegmentRegister,
    SegmentSelector, TableRegister,
};

/// Why a logical address could not be turned into a physical one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X86Error {
    /// Segmentation refused the access.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Paging refused the access.
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// Logical (`seg:offset`) → linear → physical, as the CPU would for an access of `len` bytes.
///
/// Returns the linear address and the translation of its first byte; longer accesses are split
/// at page ends by the caller ([`PagedMemory`] does). Pass [`SegAccess::Any`] and
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
