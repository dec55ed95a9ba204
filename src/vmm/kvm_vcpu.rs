//! A vCPU's KVM handle: each ioctl with its error named once, and the general and segment
//! registers KVM copies into the run page at every exit (KVM_CAP_SYNC_REGS), trusted until
//! anything writes registers — a stop's state without two ioctls.

use std::cell::Cell;

use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_guest_debug, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_run,
    kvm_sregs, kvm_sregs2, kvm_translation, kvm_vcpu_events, CpuId, Msrs, KVMIO,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use thiserror::Error;
use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use crate::vmm::memslots::MemslotError;

/// A vCPU operation that failed.
#[derive(Debug, Error)]
pub enum VcpuError {
    /// The named KVM ioctl failed.
    #[error("KVM ioctl {0} failed: {1}")]
    Kvm(&'static str, kvm_ioctls::Error),
    /// Guest RAM's registration with KVM failed.
    #[error("guest RAM: {0}")]
    Memory(#[from] MemslotError),
}

vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS2, KVMIO, 0xcc, kvm_sregs2);
/// KVM_SREGS2_FLAGS_PDPTRS_VALID: the `pdptrs` of kvm_sregs2 hold the PDPTE registers.
const PDPTRS_VALID: u64 = 1;

/// One vCPU's KVM file descriptor and the run page's register copy.
pub struct KvmVcpu {
    fd: VcpuFd,
    /// The registers KVM copied into the run page at the last exit are still the vCPU's. A
    /// `Cell`: writes come through shared references.
    exit_regs_fresh: Cell<bool>,
}

/// Names the ioctl a KVM error came from.
fn named(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |e| VcpuError::Kvm(ioctl, e)
}

impl KvmVcpu {
    pub(crate) fn new(mut fd: VcpuFd) -> Self {
        // KVM_CAP_SYNC_REGS: every exit leaves general and segment registers in the run page.
        fd.set_sync_valid_reg(SyncReg::Register);
        fd.set_sync_valid_reg(SyncReg::SystemRegister);
        KvmVcpu {
            fd,
            exit_regs_fresh: Cell::new(false),
        }
    }

    /// General and segment registers as KVM left them in the run page at the last exit, unless
    /// anything may have written registers since.
    fn exit_registers(&self) -> Option<(kvm_regs, kvm_sregs)> {
        self.exit_regs_fresh.get().then(|| {
            let sync = self.fd.sync_regs();
            (sync.regs, sync.sregs)
        })
    }

    /// Registers were or may have been written: the run page's copy is stale.
    fn registers_written(&self) {
        self.exit_regs_fresh.set(false);
    }

    /// General registers: KVM's copy from the last exit when still valid, else KVM_GET_REGS.
    pub(crate) fn regs(&self) -> Result<kvm_regs, VcpuError> {
        match self.exit_registers() {
            Some((regs, _)) => Ok(regs),
            None => self.get_regs(),
        }
    }

    /// General and segment registers: KVM's copy from the last exit when still valid, else
    /// KVM_GET_REGS and KVM_GET_SREGS.
    pub(crate) fn regs_and_sregs(&self) -> Result<(kvm_regs, kvm_sregs), VcpuError> {
        match self.exit_registers() {
            Some(registers) => Ok(registers),
            None => Ok((self.get_regs()?, self.get_sregs()?)),
        }
    }

    /// KVM_GET_REGS, whatever the run page holds.
    pub(crate) fn get_regs(&self) -> Result<kvm_regs, VcpuError> {
        self.fd.get_regs().map_err(named("GET_REGS"))
    }

    /// KVM_GET_SREGS, whatever the run page holds.
    pub fn get_sregs(&self) -> Result<kvm_sregs, VcpuError> {
        self.fd.get_sregs().map_err(named("GET_SREGS"))
    }

    pub(crate) fn set_regs(&self, regs: &kvm_regs) -> Result<(), VcpuError> {
        self.registers_written();
        self.fd.set_regs(regs).map_err(named("SET_REGS"))
    }

    pub(crate) fn set_sregs(&self, sregs: &kvm_sregs) -> Result<(), VcpuError> {
        self.registers_written();
        self.fd.set_sregs(sregs).map_err(named("SET_SREGS"))
    }

    pub(crate) fn get_fpu(&self) -> Result<kvm_fpu, VcpuError> {
        self.fd.get_fpu().map_err(named("GET_FPU"))
    }

    pub(crate) fn set_fpu(&self, fpu: &kvm_fpu) -> Result<(), VcpuError> {
        self.registers_written();
        self.fd.set_fpu(fpu).map_err(named("SET_FPU"))
    }

    pub(crate) fn get_debug_regs(&self) -> Result<kvm_debugregs, VcpuError> {
        self.fd.get_debug_regs().map_err(named("GET_DEBUGREGS"))
    }

    pub(crate) fn get_mp_state(&self) -> Result<kvm_mp_state, VcpuError> {
        self.fd.get_mp_state().map_err(named("GET_MP_STATE"))
    }

    pub(crate) fn set_mp_state(&self, state: kvm_mp_state) -> Result<(), VcpuError> {
        self.fd.set_mp_state(state).map_err(named("SET_MP_STATE"))
    }

    /// Pending and injected exceptions and interrupts.
    pub(crate) fn get_vcpu_events(&self) -> Result<kvm_vcpu_events, VcpuError> {
        self.fd.get_vcpu_events().map_err(named("GET_VCPU_EVENTS"))
    }

    pub(crate) fn set_vcpu_events(&self, events: &kvm_vcpu_events) -> Result<(), VcpuError> {
        self.fd
            .set_vcpu_events(events)
            .map_err(named("SET_VCPU_EVENTS"))
    }

    /// MSR `index` as KVM_GET_MSRS reads it; `None` when KVM does not expose it (it answers
    /// how many entries it filled, and 0 means it refused the first).
    pub(crate) fn msr(&self, index: u32) -> Result<Option<u64>, VcpuError> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        match self.fd.get_msrs(&mut msrs).map_err(named("GET_MSRS"))? {
            1 => Ok(Some(msrs.as_slice()[0].data)),
            _ => Ok(None),
        }
    }

    /// Writes MSR `index` (KVM_SET_MSRS); false when KVM refused it.
    pub(crate) fn set_msr(&self, index: u32, data: u64) -> Result<bool, VcpuError> {
        let msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            data,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        Ok(self.fd.set_msrs(&msrs).map_err(named("SET_MSRS"))? == 1)
    }

    /// The PAE PDPTE registers, when KVM has KVM_GET_SREGS2 and the vCPU is in PAE paging.
    pub(crate) fn pdptrs(&self) -> Option<[u64; 4]> {
        let mut sregs2 = kvm_sregs2::default();
        // SAFETY: KVM_GET_SREGS2 writes one kvm_sregs2 into the struct we own and pass by
        // mutable reference; `fd` is a valid vCPU descriptor for the duration of the call.
        let ret = unsafe { ioctl_with_mut_ref(&self.fd, KVM_GET_SREGS2(), &mut sregs2) };
        (ret == 0 && sregs2.flags & PDPTRS_VALID != 0).then_some(sregs2.pdptrs)
    }

    /// The guest TSC's frequency (KVM_GET_TSC_KHZ).
    pub(crate) fn tsc_khz(&self) -> Result<u32, VcpuError> {
        self.fd.get_tsc_khz().map_err(named("GET_TSC_KHZ"))
    }

    /// KVM's own translation of a linear address (KVM_TRANSLATE), which the walker is checked
    /// against.
    pub fn translate(&self, linear: u64) -> Result<kvm_translation, VcpuError> {
        self.fd.translate_gva(linear).map_err(named("TRANSLATE"))
    }

    /// The CPUID the guest sees; only before the first KVM_RUN.
    pub(crate) fn set_cpuid(&self, cpuid: &CpuId) -> Result<(), VcpuError> {
        self.fd.set_cpuid2(cpuid).map_err(named("SET_CPUID2"))
    }

    /// KVM_SET_GUEST_DEBUG. The run page's copy stays valid: it holds no debug register, and
    /// KVM hides the TF of its single step from every read of RFLAGS.
    pub(crate) fn set_guest_debug(&self, debug: &kvm_guest_debug) -> Result<(), VcpuError> {
        self.fd
            .set_guest_debug(debug)
            .map_err(named("SET_GUEST_DEBUG"))
    }

    /// KVM_RUN: the exit, or `None` when a kick cut it short (EINTR, EAGAIN). Whatever its
    /// outcome, KVM refreshed the run page's registers on its way out.
    pub(crate) fn run(&mut self) -> Result<Option<VcpuExit<'_>>, VcpuError> {
        let result = self.fd.run();
        self.exit_regs_fresh.set(true);
        match result {
            Ok(exit) => Ok(Some(exit)),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(None),
            Err(e) => Err(named("RUN")(e)),
        }
    }

    /// Sets or clears `kvm_run.immediate_exit`: KVM_RUN returns EINTR at once while it is set.
    pub(crate) fn set_immediate_exit(&mut self, on: bool) {
        self.fd.set_kvm_immediate_exit(on.into());
    }

    /// The run page: the exit's data, and `immediate_exit` for a kick.
    pub(crate) fn run_page(&mut self) -> &mut kvm_run {
        self.fd.get_kvm_run()
    }
}
