//! gdbvisor: a KVM hypervisor built around a gdb stub, for people who write kernels.
//!
//! How a run goes, module by module:
//!
//! 1. [`cli`] parses the command line (flags named for QEMU users).
//! 2. [`runner`] opens the kernel and modules ([`boot::image`]: sizes and first bytes, the rest
//!    read only as it is loaded) and creates the VM ([`vmm::vm`]): guest RAM from
//!    vm-memory ([`vmm::memory`]), the in-kernel irqchip and PIT, the legacy port devices
//!    ([`devices`]) and the vCPUs.
//! 3. [`boot`] detects the image format and writes the kernel, gdbvisor's GDT, page tables and
//!    multiboot information into RAM, and points empty real-mode IVT vectors at gdbvisor's
//!    no-BIOS stubs ([`vmm::no_bios`] stops there), returning the CPU state at entry, which
//!    [`vmm::vcpu::Vcpu::set_boot_state`] applies.
//! 4. [`vmm::machine`] moves each vCPU onto a thread. A vCPU handles port I/O itself and returns
//!    every other exit as a [`vmm::vcpu::VcpuEvent`]; the caller decides whether it runs again.
//! 5. [`runner`] maps the event that ended the run to an exit status.
//! 6. [`snapshot`] saves a stopped VM as an ELF core (`monitor dump`, `--dump-on-crash`) and
//!    opens one, or a QEMU `dump-guest-memory` file, for gdb with no KVM (`--snapshot`).
//!
//! [`x86`] is a pure model of segmentation, paging and descriptor tables that reads guest-physical
//! memory through [`x86::PhysMemory`]; it knows nothing of KVM. [`vmm::host_caps`] learns what
//! the host's KVM can do, and [`vmm::doctor`] reports it. The `test-kernels` workspace crate
//! assembles the kernels in `test-kernels/` for `build.rs` and the tests.
// These docs are for gdbvisor's developers, read with `cargo doc --document-private-items`,
// where links to crate-private items resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod boot;
pub mod cli;
pub mod demo;
pub mod devices;
pub mod gdb;
pub mod host_input;
pub mod iso;
pub mod qemu;
pub mod relay;
pub mod runner;
pub mod snapshot;
pub mod vmm;
pub mod x86;
