//! The KVM side: the VM, its memory, and its vCPUs.
pub mod kick;
pub mod memory;
pub mod vcpu;
pub mod vm;
pub mod machine;
pub mod state_text;
pub mod doctor;
