//! Reading a live VM's state for a snapshot.

use kvm_bindings::{kvm_sregs2, KVMIO};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use super::cpu::CpuSnapshot;
use super::error::SnapshotError;
use crate::vmm::machine::Machine;
use crate::vmm::vcpu::{Vcpu, VcpuError};

vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS2, KVMIO, 0xcc, kvm_sregs2);
/// KVM_SREGS2_FLAGS_PDPTRS_VALID: the `pdptrs` of kvm_sregs2 hold the PDPTE registers.
const PDPTRS_VALID: u64 = 1;

/// The PAE PDPTE registers, when KVM has KVM_GET_SREGS2 and the vCPU is in PAE paging.
pub fn read_pdptrs(fd: &VcpuFd) -> Option<[u64; 4]> {
    let mut sregs2 = kvm_sregs2::default();
    // SAFETY: KVM_GET_SREGS2 writes one kvm_sregs2 into the struct we own and pass by mutable
    // reference; `fd` is a valid vCPU descriptor for the duration of the call.
    let ret = unsafe { ioctl_with_mut_ref(fd, KVM_GET_SREGS2(), &mut sregs2) };
    (ret == 0 && sregs2.flags & PDPTRS_VALID != 0).then_some(sregs2.pdptrs)
}

/// One stopped vCPU's state, after completing an exit KVM still holds.
pub fn capture_vcpu(vcpu: &mut Vcpu) -> Result<CpuSnapshot, VcpuError> {
    vcpu.complete_pending_exit()?;
    let mut cpu = CpuSnapshot::fetch(vcpu)?;
    cpu.pdptrs = read_pdptrs(vcpu.fd());
    Ok(cpu)
}

/// Every vCPU of a machine whose vCPUs are all stopped.
pub fn capture(machine: &mut Machine) -> Result<Vec<CpuSnapshot>, SnapshotError> {
    (0..machine.vcpu_count() as u8)
        .map(|id| {
            machine
                .with_vcpu(id, capture_vcpu)
                .map_err(|e| SnapshotError::Live(e.to_string()))?
                .map_err(|e| SnapshotError::Live(format!("vCPU {id}: {e}")))
        })
        .collect()
}
