//! Why the gdb target cannot answer at all: the VMM under it failed. gdb hears of it as the end
//! of the session; refusals of what a backend cannot do are error replies instead.

use thiserror::Error;

use crate::vmm::machine::MachineError;
use crate::vmm::memslots::MemslotError;
use crate::vmm::vcpu::VcpuError;

#[derive(Debug, Error)]
pub enum TargetFault {
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Vcpu(#[from] VcpuError),
    #[error("{0}")]
    Slots(#[from] MemslotError),
    #[error("vCPU(s) {0:?} do not stop: stuck inside the host's KVM_RUN")]
    Stuck(Vec<u8>),
    /// The VM could not be made (while gdb attached: see `live::arriving`).
    #[error("{0}")]
    Unmade(String),
}
