//! The KVM side: the VM, its memory, and its vCPUs.
pub mod memory;
