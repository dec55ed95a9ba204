//! gdbvisor: a KVM hypervisor built around a gdb stub, for people who write kernels.
pub mod x86;
pub mod boot;
pub mod vmm;
pub mod devices;
pub mod cli;
pub mod demo;
pub mod runner;
pub mod test_kernels;
