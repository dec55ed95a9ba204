//! Control-register flag types and the CPU operating mode derived from them.
//!
//! Everything here is a plain decoding of register values: the VMM reads CR0/CR3/CR4/EFER from KVM
//! and hands them over as [`ControlRegs`]; the walker, the segment code and the gdb layer derive
//! [`CpuMode`] and [`PagingMode`] from them instead of each re-deriving the rules.

use bitflags::bitflags;
use std::fmt;

bitflags! {
    /// CR0: operating mode and protection switches.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Cr0Flags: u64 {
        /// Protection Enable: segmentation in protected mode rather than real mode.
        const PE = 1 << 0;
        /// Monitor Coprocessor: WAIT/FWAIT honour TS.
        const MP = 1 << 1;
        /// Emulation: x87 instructions raise #NM.
        const EM = 1 << 2;
        /// Task Switched: the next x87/SSE instruction raises #NM (lazy FPU switching).
        const TS = 1 << 3;
        /// Extension Type: hard-wired to 1 on modern CPUs (387 present).
        const ET = 1 << 4;
        /// Numeric Error: native x87 error reporting (#MF) instead of IRQ13.
        const NE = 1 << 5;
        /// Write Protect: supervisor writes honour read-only pages.
        const WP = 1 << 16;
        /// Alignment Mask: EFLAGS.AC enables alignment checks at CPL 3.
        const AM = 1 << 18;
        /// Not Write-through (cache policy).
        const NW = 1 << 29;
        /// Cache Disable.
        const CD = 1 << 30;
        /// Paging: linear addresses go through the page tables.
        const PG = 1 << 31;
    }
}

bitflags! {
    /// CR4: architectural extensions (Intel SDM vol. 3A, 2.5; FRED and LASS from Linux's
    /// processor-flags.h).
    ///
    /// The walker reads the bits that change a translation or its rights (PSE, PAE, LA57,
    /// SMEP, SMAP); the others are named for display only. In particular it does not model LAM_SUP
    /// (supervisor pointers are checked as if untagged) or LASS (no fault predicted for a
    /// supervisor access to a user address).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Cr4Flags: u64 {
        /// Virtual-8086 Mode Extensions.
        const VME = 1 << 0;
        /// Protected-mode Virtual Interrupts.
        const PVI = 1 << 1;
        /// Time Stamp Disable: RDTSC is privileged.
        const TSD = 1 << 2;
        /// Debugging Extensions: DR4/DR5 fault, I/O breakpoints allowed.
        const DE = 1 << 3;
        /// Page Size Extensions: 4 MiB pages under 32-bit paging.
        const PSE = 1 << 4;
        /// Physical Address Extension: 64-bit entries (PAE, 4- and 5-level paging).
        const PAE = 1 << 5;
        /// Machine Check Enable.
        const MCE = 1 << 6;
        /// Page Global Enable: G-bit entries survive CR3 loads.
        const PGE = 1 << 7;
        /// Performance-monitoring Counter Enable: RDPMC at any CPL.
        const PCE = 1 << 8;
        /// OS supports FXSAVE/FXRSTOR.
        const OSFXSR = 1 << 9;
        /// OS handles unmasked SIMD floating-point exceptions (#XM).
        const OSXMMEXCPT = 1 << 10;
        /// User-Mode Instruction Prevention: SGDT/SIDT/... privileged.
        const UMIP = 1 << 11;
        /// 57-bit linear addresses: 5-level paging.
        const LA57 = 1 << 12;
        /// VMX enable.
        const VMXE = 1 << 13;
        /// SMX enable.
        const SMXE = 1 << 14;
        /// RDFSBASE/WRFSBASE and friends allowed.
        const FSGSBASE = 1 << 16;
        /// Process-context identifiers in CR3 bits 11:0.
        const PCIDE = 1 << 17;
        /// XSAVE and extended states enabled.
        const OSXSAVE = 1 << 18;
        /// Key Locker.
        const KL = 1 << 19;
        /// Supervisor-Mode Execution Prevention: no supervisor fetch from user pages.
        const SMEP = 1 << 20;
        /// Supervisor-Mode Access Prevention: no supervisor data access to user pages unless EFLAGS.AC.
        const SMAP = 1 << 21;
        /// Protection keys for user pages.
        const PKE = 1 << 22;
        /// Control-flow Enforcement Technology.
        const CET = 1 << 23;
        /// Protection keys for supervisor pages.
        const PKS = 1 << 24;
        /// User interrupts (UIRET, SENDUIPI).
        const UINTR = 1 << 25;
        /// Linear-address-space separation: user and supervisor halves of the address space.
        const LASS = 1 << 27;
        /// Linear-address masking for supervisor pointers.
        const LAM_SUP = 1 << 28;
        /// Flexible return and event delivery (64-bit CR4 only).
        const FRED = 1 << 32;
    }
}

bitflags! {
    /// IA32_EFER (MSR 0xC000_0080): long mode and no-execute.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct EferFlags: u64 {
        /// SYSCALL/SYSRET enable.
        const SCE = 1 << 0;
        /// Long Mode Enable: requested by software, takes effect when paging is turned on.
        const LME = 1 << 8;
        /// Long Mode Active: set by the CPU when LME and CR0.PG are both set.
        const LMA = 1 << 10;
        /// No-Execute Enable: bit 63 of PAE/4-level/5-level entries is XD instead of reserved.
        const NXE = 1 << 11;
        /// Secure Virtual Machine enable (AMD).
        const SVME = 1 << 12;
        /// Long Mode Segment Limit Enable (AMD).
        const LMSLE = 1 << 13;
        /// Fast FXSAVE/FXRSTOR (AMD).
        const FFXSR = 1 << 14;
        /// Translation Cache Extension (AMD).
        const TCE = 1 << 15;
    }
}

/// Bochs `creg` style: every known flag, highest bit first, uppercase when set
/// (`PG cd nw ac wp ne ET ts em mp PE`).
fn bochs_flags<F: bitflags::Flags<Bits = u64> + Copy>(value: F) -> String {
    let mut names: Vec<(u64, &str)> = F::all().iter_names().map(|(n, f)| (f.bits(), n)).collect();
    names.sort_by_key(|&(bit, _)| std::cmp::Reverse(bit));
    names
        .iter()
        .map(|&(bit, name)| {
            if value.bits() & bit != 0 {
                name.to_uppercase()
            } else {
                name.to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Cr0Flags {
    /// `PG cd nw ac wp ne ET ts em mp PE`: uppercase = set.
    pub(crate) fn bochs(self) -> String {
        bochs_flags(self)
    }
}

impl Cr4Flags {
    /// Uppercase = set, highest bit first.
    pub(crate) fn bochs(self) -> String {
        bochs_flags(self)
    }
}

impl EferFlags {
    /// Uppercase = set, highest bit first.
    pub(crate) fn bochs(self) -> String {
        bochs_flags(self)
    }
}

bitflags! {
    /// RFLAGS: status, control and system flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub(crate) struct RFlags: u64 {
        /// Carry.
        const CF = 1 << 0;
        /// Always one (bit 1 is reserved).
        const RESERVED_1 = 1 << 1;
        /// Parity.
        const PF = 1 << 2;
        /// Auxiliary carry.
        const AF = 1 << 4;
        /// Zero.
        const ZF = 1 << 6;
        /// Sign.
        const SF = 1 << 7;
        /// Trap: a debug exception after each instruction (single step).
        const TF = 1 << 8;
        /// Maskable interrupts enabled.
        const IF = 1 << 9;
        /// String direction.
        const DF = 1 << 10;
        /// Overflow.
        const OF = 1 << 11;
        /// I/O privilege level (a two-bit field).
        const IOPL = 3 << 12;
        /// Nested task.
        const NT = 1 << 14;
        /// Resume: the next instruction's instruction breakpoints are not taken.
        const RF = 1 << 16;
        /// Virtual-8086 mode.
        const VM = 1 << 17;
        /// Alignment check, and SMAP override for explicit supervisor accesses.
        const AC = 1 << 18;
        /// Virtual interrupt flag.
        const VIF = 1 << 19;
        /// Virtual interrupt pending.
        const VIP = 1 << 20;
        /// CPUID is available (the flag can be toggled).
        const ID = 1 << 21;
    }
}

bitflags! {
    /// MXCSR: SSE exception flags, masks and rounding control.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub(crate) struct MxcsrFlags: u32 {
        /// Invalid operation (flag).
        const IE = 1 << 0;
        /// Denormal operand (flag).
        const DE = 1 << 1;
        /// Divide by zero (flag).
        const ZE = 1 << 2;
        /// Overflow (flag).
        const OE = 1 << 3;
        /// Underflow (flag).
        const UE = 1 << 4;
        /// Precision (flag).
        const PE = 1 << 5;
        /// Denormals are zeros.
        const DAZ = 1 << 6;
        /// Invalid operation masked.
        const IM = 1 << 7;
        /// Denormal operand masked.
        const DM = 1 << 8;
        /// Divide by zero masked.
        const ZM = 1 << 9;
        /// Overflow masked.
        const OM = 1 << 10;
        /// Underflow masked.
        const UM = 1 << 11;
        /// Precision masked.
        const PM = 1 << 12;
        /// Rounding control (a two-bit field: nearest, down, up, toward zero).
        const RC = 3 << 13;
        /// Flush to zero.
        const FZ = 1 << 15;
    }
}

/// MAXPHYADDR assumed when the caller does not know better: the architectural maximum.
pub(crate) const DEFAULT_MAXPHYADDR: u8 = 52;

/// MAXPHYADDR as a CPU reports it: CPUID.80000008H:EAX bits 7:0 (`leaf_80000008_eax`, `None`
/// when the highest extended leaf is below 0x80000008), clamped to 32..=52. Without the leaf
/// the SDM (vol. 3, 4.1.4) and KVM both say 36.
pub(crate) fn maxphyaddr_from_cpuid(leaf_80000008_eax: Option<u32>) -> u8 {
    match leaf_80000008_eax {
        Some(eax) => (eax & 0xff).clamp(32, 52) as u8,
        None => 36,
    }
}

/// The registers address translation depends on, as the VMM read them after the vCPU stopped.
///
/// `maxphyaddr` is not a register but CPUID.80000008H:EAX bits 7:0; it decides which entry bits are
/// reserved, so it travels with the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRegs {
    /// CR0.
    pub cr0: Cr0Flags,
    /// Raw CR3: table address plus PCD/PWT or PCID bits.
    pub cr3: u64,
    /// CR4.
    pub cr4: Cr4Flags,
    /// IA32_EFER.
    pub efer: EferFlags,
    /// The four PAE PDPTE registers, if known (KVM_GET_SREGS2). PAE paging uses these rather than
    /// memory, because the CPU loaded them at the last CR3 write and ignores later memory changes.
    pub pdptrs: Option<[u64; 4]>,
    /// Physical address width in bits (CPUID.80000008H:EAX bits 7:0); 36..=52.
    pub maxphyaddr: u8,
}

impl Default for ControlRegs {
    fn default() -> Self {
        ControlRegs {
            cr0: Cr0Flags::ET,
            cr3: 0,
            cr4: Cr4Flags::empty(),
            efer: EferFlags::empty(),
            pdptrs: None,
            maxphyaddr: DEFAULT_MAXPHYADDR,
        }
    }
}

impl ControlRegs {
    /// Builds from raw register values as KVM reports them; unknown bits are kept.
    pub fn new(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Self {
        ControlRegs {
            cr0: Cr0Flags::from_bits_retain(cr0),
            cr3,
            cr4: Cr4Flags::from_bits_retain(cr4),
            efer: EferFlags::from_bits_retain(efer),
            pdptrs: None,
            maxphyaddr: DEFAULT_MAXPHYADDR,
        }
    }

    /// Same registers, with the PAE PDPTE registers known.
    pub fn with_pdptrs(mut self, pdptrs: [u64; 4]) -> Self {
        self.pdptrs = Some(pdptrs);
        self
    }

    /// Same registers, on a CPU with the given physical address width (clamped to 32..=52).
    pub fn with_maxphyaddr(mut self, bits: u8) -> Self {
        self.maxphyaddr = bits.clamp(32, 52);
        self
    }

    /// The paging mode these registers select.
    pub fn paging_mode(&self) -> PagingMode {
        PagingMode::from_regs(self.cr0, self.cr4, self.efer)
    }

    /// Whether long mode is active (EFER.LMA); derived from LME+PG if LMA was not reported.
    pub(crate) fn long_mode_active(&self) -> bool {
        self.efer.contains(EferFlags::LMA)
            || (self.efer.contains(EferFlags::LME) && self.cr0.contains(Cr0Flags::PG))
    }
}

/// Which page-table format translates linear addresses (Intel SDM vol. 3, 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// CR0.PG = 0: linear addresses are physical addresses.
    None,
    /// 32-bit paging: 2 levels of 4-byte entries; 4 MiB pages with CR4.PSE.
    Bits32,
    /// PAE paging: 4 PDPTEs, then 2 levels of 8-byte entries; 2 MiB pages; NX.
    Pae,
    /// 4-level paging (IA-32e): 48-bit linear addresses.
    Level4,
    /// 5-level paging (CR4.LA57): 57-bit linear addresses.
    Level5,
}

impl PagingMode {
    /// Decodes the mode from CR0.PG, CR4.PAE/LA57 and EFER.LME/LMA.
    pub(crate) fn from_regs(cr0: Cr0Flags, cr4: Cr4Flags, efer: EferFlags) -> Self {
        if !cr0.contains(Cr0Flags::PG) {
            PagingMode::None
        } else if !cr4.contains(Cr4Flags::PAE) {
            PagingMode::Bits32
        } else if !efer.intersects(EferFlags::LME | EferFlags::LMA) {
            PagingMode::Pae
        } else if cr4.contains(Cr4Flags::LA57) {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        }
    }

    /// Width of linear addresses in this mode.
    pub(crate) fn linear_bits(self) -> u32 {
        match self {
            PagingMode::None | PagingMode::Bits32 | PagingMode::Pae => 32,
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }

    /// Whether entries are 8 bytes wide (and bit 63 may be XD).
    pub(crate) fn wide_entries(self) -> bool {
        matches!(
            self,
            PagingMode::Pae | PagingMode::Level4 | PagingMode::Level5
        )
    }
}

impl fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PagingMode::None => "paging off",
            PagingMode::Bits32 => "32-bit paging",
            PagingMode::Pae => "PAE paging",
            PagingMode::Level4 => "4-level paging",
            PagingMode::Level5 => "5-level paging",
        })
    }
}

/// The operating mode, which decides how segmentation and instruction decoding work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMode {
    /// CR0.PE = 0: segment base = selector * 16 (or whatever the hidden cache holds: unreal mode).
    Real,
    /// Protected mode with a 16-bit code segment (CS.D = 0).
    Protected16,
    /// Protected mode with a 32-bit code segment (CS.D = 1).
    Protected32,
    /// EFLAGS.VM = 1 in protected mode: real-mode style segments under paging.
    Virtual8086,
    /// Long mode active, CS.L = 0: 16/32-bit code, segmentation as in protected mode.
    Compatibility,
    /// Long mode active, CS.L = 1: flat segments except FS/GS, canonical addresses.
    Long64,
}

impl CpuMode {
    /// Derives the mode the way the CPU does: CR0.PE, EFER.LMA, EFLAGS.VM, then CS.L and CS.D.
    ///
    /// `cs_l` and `cs_db` are the L and D/B bits of the hidden CS descriptor cache.
    pub(crate) fn detect(
        cr0: Cr0Flags,
        efer: EferFlags,
        rflags: u64,
        cs_l: bool,
        cs_db: bool,
    ) -> Self {
        let lma = efer.contains(EferFlags::LMA);
        if !cr0.contains(Cr0Flags::PE) {
            CpuMode::Real
        } else if lma {
            if cs_l {
                CpuMode::Long64
            } else {
                CpuMode::Compatibility
            }
        } else if rflags & RFlags::VM.bits() != 0 {
            CpuMode::Virtual8086
        } else if cs_db {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    /// Whether segment bases and limits apply as in 16/32-bit protected mode.
    pub(crate) fn is_protected_segmentation(self) -> bool {
        matches!(
            self,
            CpuMode::Protected16 | CpuMode::Protected32 | CpuMode::Compatibility
        )
    }
}

impl fmt::Display for CpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuMode::Real => "real mode",
            CpuMode::Protected16 => "16-bit protected mode",
            CpuMode::Protected32 => "32-bit protected mode",
            CpuMode::Virtual8086 => "virtual-8086 mode",
            CpuMode::Compatibility => "compatibility mode",
            CpuMode::Long64 => "64-bit long mode",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_bits_match_the_sdm() {
        assert_eq!(Cr0Flags::PG.bits(), 0x8000_0000);
        assert_eq!(
            (Cr0Flags::PE | Cr0Flags::ET | Cr0Flags::PG).bits(),
            0x8000_0011
        );
        assert_eq!(Cr0Flags::WP.bits(), 0x1_0000);
        assert_eq!(Cr4Flags::PAE.bits(), 0x20);
        assert_eq!(Cr4Flags::LA57.bits(), 0x1000);
        assert_eq!(Cr4Flags::SMEP.bits(), 0x10_0000);
        assert_eq!(Cr4Flags::SMAP.bits(), 0x20_0000);
        assert_eq!((EferFlags::LME | EferFlags::LMA).bits(), 0x500);
        assert_eq!(EferFlags::NXE.bits(), 0x800);
    }

    #[test]
    fn bochs_style() {
        let cr0 = Cr0Flags::from_bits_retain(0x8000_0011);
        assert_eq!(cr0.bochs(), "PG cd nw am wp ne ET ts em mp PE");
        assert!(EferFlags::from_bits_retain(0x500).bochs().contains("LMA"));
    }

    #[test]
    fn maxphyaddr_comes_from_leaf_80000008() {
        assert_eq!(maxphyaddr_from_cpuid(Some(0x3028)), 40, "QEMU's qemu64");
        assert_eq!(maxphyaddr_from_cpuid(Some(0x3030)), 48);
        assert_eq!(maxphyaddr_from_cpuid(None), 36);
        assert_eq!(maxphyaddr_from_cpuid(Some(0)), 32, "nonsense is clamped");
        assert_eq!(maxphyaddr_from_cpuid(Some(0xff)), 52);
    }

    #[test]
    fn paging_modes() {
        let r = |cr0, cr4, efer| ControlRegs::new(cr0, 0, cr4, efer).paging_mode();
        assert_eq!(r(0x11, 0, 0), PagingMode::None);
        assert_eq!(r(0x8000_0011, 0x10, 0), PagingMode::Bits32);
        assert_eq!(r(0x8000_0011, 0x20, 0), PagingMode::Pae);
        assert_eq!(r(0x8000_0011, 0x20, 0x500), PagingMode::Level4);
        assert_eq!(r(0x8000_0011, 0x1020, 0x500), PagingMode::Level5);
    }

    #[test]
    fn cpu_modes() {
        let pe = Cr0Flags::PE;
        let lma = EferFlags::LME | EferFlags::LMA;
        let none = EferFlags::empty();
        assert_eq!(
            CpuMode::detect(Cr0Flags::empty(), none, 0, false, false),
            CpuMode::Real
        );
        assert_eq!(
            CpuMode::detect(pe, none, 0, false, false),
            CpuMode::Protected16
        );
        assert_eq!(
            CpuMode::detect(pe, none, 0, false, true),
            CpuMode::Protected32
        );
        assert_eq!(
            CpuMode::detect(pe, none, RFlags::VM.bits(), false, true),
            CpuMode::Virtual8086
        );
        assert_eq!(
            CpuMode::detect(pe | Cr0Flags::PG, lma, 0, true, false),
            CpuMode::Long64
        );
        assert_eq!(
            CpuMode::detect(pe | Cr0Flags::PG, lma, 0, false, true),
            CpuMode::Compatibility
        );
    }
}
