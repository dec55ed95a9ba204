//! The CPU state a loader hands a kernel over in. Loaders fill it in; the VMM applies it to
//! the boot vCPU (`vmm::vcpu::Vcpu::set_boot_state`).

/// The CPU mode a loader hands the kernel over in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryMode {
    /// 16-bit real mode with CS = `cs` (base cs·16); other segments 0.
    Real { cs: u16 },
    /// 32-bit protected mode, flat segments from the boot GDT, paging off.
    Protected32,
    /// 64-bit long mode, boot GDT, identity-mapped 4-level paging rooted at `cr3`.
    Long64,
}

/// Registers a loader sets at entry; everything not named here is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCpuState {
    pub(crate) mode: EntryMode,
    pub(crate) rip: u64,
    pub(crate) rsp: u64,
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdx: u64,
    pub(crate) cr3: u64,
}
