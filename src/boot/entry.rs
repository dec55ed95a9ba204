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
    /// 64-bit long mode on the loader's own GDT, with the 4-level paging rooted at `cr3`,
    /// CR0.WP and EFER.NXE set, TR's limit 0: the Limine protocol's entry state.
    Long64Gdt(LoaderGdt),
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

/// A GDT a loader wrote for its protocol (the Limine GDT), which the entry state loads instead
/// of gdbvisor's boot GDT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoaderGdt {
    /// GDTR's base: a linear address (the GDT's HHDM address for Limine).
    pub(crate) base: u64,
    /// The descriptors, indexed by selector / 8.
    pub(crate) entries: &'static [u64],
    pub(crate) code_selector: u16,
    pub(crate) data_selector: u16,
    /// IA32_PAT at entry: the protocol fixes its layout.
    pub(crate) pat: u64,
}

/// An application processor the VMM holds (its vCPU does not run) until the kernel writes
/// the `goto_address` of its Limine MP information; it then enters long mode there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldAp {
    /// vCPU index (its APIC ID).
    pub(crate) cpu: u8,
    /// Guest-physical address of its `goto_address`.
    pub(crate) goto_phys: u64,
    /// Its `struct limine_mp_info`'s (HHDM) address: RDI at its entry.
    pub(crate) info_virt: u64,
    /// Its stack pointer at entry.
    pub(crate) rsp: u64,
}

/// The held application processors and what starts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApPlan {
    /// The guest-physical pages holding the MP information and nothing else: KVM maps them
    /// read-only, so a write to a `goto_address` exits to the VMM.
    pub(crate) pages: Vec<u64>,
    pub(crate) aps: Vec<HeldAp>,
    /// The entry state every AP shares with the BSP (mode, CR3); RIP, RSP and RDI are each
    /// AP's own.
    pub(crate) entry: BootCpuState,
}
