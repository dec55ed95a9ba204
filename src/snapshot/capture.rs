//! Reading a live VM's state for a snapshot.

use super::cpu::CpuSnapshot;
use super::error::SnapshotError;
use crate::vmm::machine::Machine;
use crate::vmm::vcpu::{Vcpu, VcpuError};

/// One stopped vCPU's state, after completing an exit KVM still holds.
pub(crate) fn capture_vcpu(vcpu: &mut Vcpu) -> Result<CpuSnapshot, VcpuError> {
    vcpu.complete_pending_exit()?;
    let mut cpu = CpuSnapshot::fetch(vcpu)?;
    cpu.pdptrs = vcpu.kvm().pdptrs();
    Ok(cpu)
}

/// Every vCPU of a machine whose vCPUs are all stopped.
pub(crate) fn capture(machine: &mut Machine) -> Result<Vec<CpuSnapshot>, SnapshotError> {
    (0..machine.vcpu_count() as u8)
        .map(|id| {
            machine
                .with_vcpu(id, capture_vcpu)
                .map_err(|e| SnapshotError::Live(e.to_string()))?
                .map_err(|e| SnapshotError::Live(format!("vCPU {id}: {e}")))
        })
        .collect()
}
