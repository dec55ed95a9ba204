//! One vCPU's state at this stop, with guest memory, as every monitor command reads it.
//!
//! A copy of the snapshot (not a borrow of the target) so that a command can still use the
//! target afterwards (e.g. `msr`, which asks the vCPU thread for an ioctl).

use std::sync::Arc;

use super::host::MonitorHost;
use crate::gdb::fault::TargetFault;
use crate::snapshot::CpuSnapshot;
use crate::vmm::memory::GuestRam;
use crate::vmm::vcpu::from_kvm_segment;
use crate::x86::{ControlRegs, CpuMode, PagedMemory, SegmentCache, SegmentRegister, TableRegister};

pub(crate) struct View {
    pub(crate) snap: CpuSnapshot,
    pub(crate) ram: Arc<GuestRam>,
    pub(crate) regs: ControlRegs,
    pub(crate) mode: CpuMode,
}

impl View {
    pub(crate) fn new(target: &mut impl MonitorHost, vcpu: u8) -> Result<View, TargetFault> {
        let snap = target.cpu_state(vcpu)?;
        Ok(View {
            regs: snap.control_regs(),
            mode: snap.mode(),
            ram: target.guest_ram(),
            snap,
        })
    }

    /// Descriptor tables use 16-byte system entries whenever long mode is active, including
    /// compatibility mode.
    pub(crate) fn long_mode(&self) -> bool {
        self.regs.long_mode_active()
    }

    /// Guest memory by linear address (descriptor tables live at linear addresses).
    pub(crate) fn linear(&self) -> PagedMemory<'_, GuestRam> {
        PagedMemory::new(&*self.ram, self.regs)
    }

    pub(crate) fn gdtr(&self) -> TableRegister {
        TableRegister {
            base: self.snap.sregs.gdt.base,
            limit: self.snap.sregs.gdt.limit,
        }
    }

    pub(crate) fn idtr(&self) -> TableRegister {
        TableRegister {
            base: self.snap.sregs.idt.base,
            limit: self.snap.sregs.idt.limit,
        }
    }

    pub(crate) fn seg(&self, reg: SegmentRegister) -> SegmentCache {
        let s = &self.snap.sregs;
        from_kvm_segment(match reg {
            SegmentRegister::Es => &s.es,
            SegmentRegister::Cs => &s.cs,
            SegmentRegister::Ss => &s.ss,
            SegmentRegister::Ds => &s.ds,
            SegmentRegister::Fs => &s.fs,
            SegmentRegister::Gs => &s.gs,
        })
    }

    pub(crate) fn ldtr(&self) -> SegmentCache {
        from_kvm_segment(&self.snap.sregs.ldt)
    }

    pub(crate) fn tr(&self) -> SegmentCache {
        from_kvm_segment(&self.snap.sregs.tr)
    }
}

/// An address as Bochs prints it: 8 hex digits when it fits in 32 bits, else 16.
pub(crate) fn addr(value: u64) -> String {
    if value <= u64::from(u32::MAX) {
        format!("{value:#010x}")
    } else {
        format!("{value:#018x}")
    }
}

/// A number as users type it: `0x` hex, or decimal.
pub(crate) fn parse_num(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}
