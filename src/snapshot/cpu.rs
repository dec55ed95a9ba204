//! A stopped vCPU's state as KVM reports it: what a gdb stop reads, and what a snapshot saves.

use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_regs, kvm_sregs, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};

use crate::vmm::vcpu::{linear_pc, ModeKey, Vcpu, VcpuError};
use crate::x86::cpu::{ControlRegs, CpuMode};

/// MAXPHYADDR taken for a file that does not record it (QEMU dumps, older gdbvisor snapshots):
/// QEMU's default `phys-bits`, so that a QEMU dump is walked as QEMU's CPU walked it.
pub(crate) const ASSUMED_MAXPHYADDR: u8 = 40;

const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Everything gdb can see of one vCPU: fetched once per stop of a live VM, or saved in a snapshot.
#[derive(Clone)]
pub struct CpuSnapshot {
    /// General-purpose registers, RIP and RFLAGS.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers, EFER.
    pub sregs: kvm_sregs,
    pub(crate) fpu: kvm_fpu,
    pub(crate) debugregs: kvm_debugregs,
    pub(crate) kernel_gs_base: u64,
    /// KVM_MP_STATE_*: runnable, halted, or waiting for INIT/SIPI.
    pub(crate) mp_state: u32,
    /// The PAE PDPTE registers when known (a snapshot, or KVM_GET_SREGS2); the walker reads the
    /// PDPT from memory otherwise.
    pub(crate) pdptrs: Option<[u64; 4]>,
    /// False after [`CpuSnapshot::fetch_core`]: only `regs` and `sregs` are the vCPU's.
    pub(crate) complete: bool,
    /// The guest's MAXPHYADDR (`CPUID.80000008H:EAX[7:0]`): entry bits from it up to 51 are
    /// reserved, so the walker faults on them as the CPU does.
    pub(crate) maxphyaddr: u8,
}

impl CpuSnapshot {
    /// Only what a stop needs (general and segment registers: pc, mode, paging); the rest is
    /// left at defaults, sparing four ioctls when gdb asks for no more.
    pub(crate) fn fetch_core(vcpu: &Vcpu) -> Result<CpuSnapshot, VcpuError> {
        let (regs, sregs) = vcpu.kvm().regs_and_sregs()?;
        Ok(CpuSnapshot {
            regs,
            sregs,
            fpu: kvm_fpu::default(),
            debugregs: kvm_debugregs::default(),
            kernel_gs_base: 0,
            mp_state: KVM_MP_STATE_RUNNABLE,
            pdptrs: None,
            complete: false,
            maxphyaddr: vcpu.maxphyaddr(),
        })
    }

    pub(crate) fn fetch(vcpu: &Vcpu) -> Result<CpuSnapshot, VcpuError> {
        let kvm = vcpu.kvm();
        let kernel_gs_base = kvm.msr(MSR_KERNEL_GS_BASE).ok().flatten().unwrap_or(0);
        Ok(CpuSnapshot {
            regs: kvm.get_regs()?,
            sregs: kvm.get_sregs()?,
            fpu: kvm.get_fpu()?,
            debugregs: kvm.get_debug_regs()?,
            kernel_gs_base,
            mp_state: kvm.get_mp_state()?.mp_state,
            pdptrs: None,
            complete: true,
            maxphyaddr: vcpu.maxphyaddr(),
        })
    }

    /// The registers address translation depends on, with this vCPU's MAXPHYADDR.
    pub fn control_regs(&self) -> ControlRegs {
        let regs = ControlRegs::new(
            self.sregs.cr0,
            self.sregs.cr3,
            self.sregs.cr4,
            self.sregs.efer,
        )
        .with_maxphyaddr(self.maxphyaddr);
        match self.pdptrs {
            Some(pdptrs) => regs.with_pdptrs(pdptrs),
            None => regs,
        }
    }

    /// How the vCPU waits, as `info threads` shows it.
    pub(crate) fn run_state(&self) -> &'static str {
        match self.mp_state {
            KVM_MP_STATE_HALTED => "halted",
            KVM_MP_STATE_UNINITIALIZED | KVM_MP_STATE_INIT_RECEIVED => "waiting for INIT/SIPI",
            _ => "stopped",
        }
    }

    /// The instruction pointer as a linear address.
    pub(crate) fn pc(&self) -> u64 {
        linear_pc(&self.regs, &self.sregs)
    }

    /// The CPU mode, from CR0, EFER, RFLAGS.VM and the CS descriptor cache.
    pub fn mode(&self) -> CpuMode {
        ModeKey::of(&self.regs, &self.sregs).cpu
    }
}
