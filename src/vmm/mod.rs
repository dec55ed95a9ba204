//! The KVM side: the VM, its memory, and its vCPUs.
pub(crate) mod clock_dilation;
pub(crate) mod cpuid;
pub mod doctor;
pub(crate) mod emulation_failure;
// guest_debug.rs, kvm_vcpu.rs and vcpu.rs (the `plan` branch's files) were not this branch's to
// edit: their public items still need docs, and their allows go then.
#[allow(missing_docs)]
pub mod guest_debug;
pub mod host_caps;
pub(crate) mod kick;
#[allow(missing_docs)]
pub(crate) mod kvm_vcpu;
pub mod machine;
pub mod memory;
pub(crate) mod memslots;
pub(crate) mod no_bios;
pub(crate) mod outcome;
pub(crate) mod probe;
pub(crate) mod progress;
pub(crate) mod state_text;
pub(crate) mod teardown;
#[allow(missing_docs)]
pub mod vcpu;
pub mod vm;
