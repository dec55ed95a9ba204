//! gdbvisor: a KVM hypervisor built around a gdb stub, for people who write kernels.
pub mod boot;
pub mod cli;
pub mod demo;
pub mod devices;
pub mod runner;
pub mod test_kernels;
pub mod vmm;
pub mod x86;
