//! The KVM side: the VM, its memory, and its vCPUs.
pub(crate) mod clock_dilation;
pub(crate) mod cpuid;
pub mod doctor;
pub(crate) mod emulation_failure;
pub mod guest_debug;
pub mod host_caps;
pub(crate) mod kick;
pub mod kvm_vcpu;
pub mod machine;
pub mod memory;
pub(crate) mod memslots;
pub(crate) mod no_bios;
pub(crate) mod outcome;
pub(crate) mod probe;
pub(crate) mod progress;
pub(crate) mod state_text;
pub(crate) mod teardown;
// The `plan` branch reworks vcpu.rs (issue 15: resume planning); its public items get their
// docs there, and this allow goes.
#[allow(missing_docs)]
pub mod vcpu;
pub mod vm;
