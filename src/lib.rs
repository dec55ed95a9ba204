//! gdbvisor: a KVM hypervisor built around a gdb stub, for people who write kernels.
pub mod x86;
