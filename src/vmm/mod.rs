//! The KVM side: the VM, its memory, and its vCPUs.
pub mod clock_dilation;
pub mod cpuid;
pub mod doctor;
pub mod host_caps;
pub mod kick;
pub mod machine;
pub mod memory;
pub mod memslots;
pub mod no_bios;
pub mod outcome;
pub mod probe;
pub mod progress;
pub mod state_text;
pub mod teardown;
pub mod vcpu;
pub mod vm;
