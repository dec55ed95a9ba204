//! The Limine boot protocol's numbers: tags, request IDs, memory-map types, and the layout of
//! the structures gdbvisor reads and writes (limine-protocol `PROTOCOL.md`, base revisions 0-6).

/// The two words every request ID starts with.
pub(crate) const COMMON_MAGIC: [u64; 2] = [0xc7b1_dd30_df4c_8b88, 0x0a82_e883_a194_f07b];
/// The two words a base-revision tag starts with; the third is the revision asked for.
pub(crate) const BASE_REVISION_MAGIC: [u64; 2] = [0xf956_2b2d_5c95_a6c8, 0x6a7b_3849_4453_6bdc];
/// Requests (and the base-revision tag) are searched after the last start marker...
pub(crate) const REQUESTS_START_MARKER: [u64; 4] = [
    0xf6b8_f4b3_9de7_d1ae,
    0xfab9_1a69_40fc_b9cf,
    0x785c_6ed0_15d3_e316,
    0x181e_920a_7852_b9d9,
];
/// ... and before the first end marker.
pub(crate) const REQUESTS_END_MARKER: [u64; 2] = [0xadc0_e053_1bb1_0d03, 0x9572_709f_3176_4c62];

/// The highest base revision the specification defines (and gdbvisor implements).
pub(crate) const MAX_BASE_REVISION: u64 = 6;

/// The lowest virtual address a kernel may be loaded at.
pub(crate) const KERNEL_MIN_VADDR: u64 = 0xffff_ffff_8000_0000;
/// Where the higher-half direct map starts under 4-level paging.
pub(crate) const HHDM_OFFSET: u64 = 0xffff_8000_0000_0000;
/// IA32_PAT as the protocol lays it out: WB, WT, UC-, UC, WP, WC, then (unspecified) UC-, UC.
pub(crate) const PAT: u64 = 0x0007_0105_0007_0406;
/// The stack every CPU gets unless the stack-size request asks for more.
pub(crate) const DEFAULT_STACK_SIZE: u64 = 64 * 1024;

/// The requests gdbvisor knows, by the last two words of their ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RequestKind {
    BootloaderInfo,
    ExecutableCmdline,
    FirmwareType,
    StackSize,
    Hhdm,
    Framebuffer,
    PagingMode,
    Mp,
    RiscvBspHartid,
    Memmap,
    EntryPoint,
    ExecutableFile,
    Module,
    Rsdp,
    Smbios,
    EfiSystemTable,
    TpmEventLog,
    EfiMemmap,
    DateAtBoot,
    ExecutableAddress,
    Dtb,
    BootloaderPerformance,
    KeepIommu,
    TscFrequency,
    FlantermFbInitParams,
    Entropy,
    /// Deprecated (removed from the specification): never answered.
    Terminal,
}

/// (kind, ID words 2 and 3, name) of every request in the specification.
const REQUESTS: [(RequestKind, [u64; 2], &str); 27] = [
    (
        RequestKind::BootloaderInfo,
        [0xf550_38d8_e2a1_202f, 0x2794_26fc_f5f5_9740],
        "bootloader info",
    ),
    (
        RequestKind::ExecutableCmdline,
        [0x4b16_1536_e598_651e, 0xb390_ad4a_2f1f_303a],
        "executable command line",
    ),
    (
        RequestKind::FirmwareType,
        [0x8c2f_75d9_0bef_28a8, 0x7045_a468_8eac_00c3],
        "firmware type",
    ),
    (
        RequestKind::StackSize,
        [0x224e_f046_0a8e_8926, 0xe1cb_0fc2_5f46_ea3d],
        "stack size",
    ),
    (
        RequestKind::Hhdm,
        [0x48dc_f1cb_8ad2_b852, 0x6398_4e95_9a98_244b],
        "HHDM",
    ),
    (
        RequestKind::Framebuffer,
        [0x9d58_27dc_d881_dd75, 0xa314_8604_f6fa_b11b],
        "framebuffer",
    ),
    (
        RequestKind::PagingMode,
        [0x95c1_a0ed_ab09_44cb, 0xa4e5_cb38_42f7_488a],
        "paging mode",
    ),
    (
        RequestKind::Mp,
        [0x95a6_7b81_9a1b_857e, 0xa0b6_1b72_3b6a_73e0],
        "MP",
    ),
    (
        RequestKind::RiscvBspHartid,
        [0x1369_359f_0255_25f9, 0x2ff2_a561_7839_1bb6],
        "RISC-V BSP hart ID",
    ),
    (
        RequestKind::Memmap,
        [0x67cf_3d9d_378a_806f, 0xe304_acdf_c50c_3c62],
        "memory map",
    ),
    (
        RequestKind::EntryPoint,
        [0x13d8_6c03_5a1c_d3e1, 0x2b0c_aa89_d8f3_026a],
        "entry point",
    ),
    (
        RequestKind::ExecutableFile,
        [0xad97_e90e_83f1_ed67, 0x31eb_5d1c_5ff2_3b69],
        "executable file",
    ),
    (
        RequestKind::Module,
        [0x3e7e_2797_02be_32af, 0xca1c_4f3b_d128_0cee],
        "module",
    ),
    (
        RequestKind::Rsdp,
        [0xc5e7_7b6b_397e_7b43, 0x2763_7845_accd_cf3c],
        "RSDP",
    ),
    (
        RequestKind::Smbios,
        [0x9e90_46f1_1e09_5391, 0xaa4a_520f_efbd_e5ee],
        "SMBIOS",
    ),
    (
        RequestKind::EfiSystemTable,
        [0x5ceb_a516_3eaa_f6d6, 0x0a69_8161_0cf6_5fcc],
        "EFI system table",
    ),
    (
        RequestKind::TpmEventLog,
        [0x98e0_94fc_7e76_e979, 0xee8d_8775_c54e_1d1f],
        "TPM event log",
    ),
    (
        RequestKind::EfiMemmap,
        [0x7df6_2a43_1d68_72d5, 0xa4fc_dfb3_e573_06c8],
        "EFI memory map",
    ),
    (
        RequestKind::DateAtBoot,
        [0x5027_46e1_84c0_88aa, 0xfbc5_ec83_e632_7893],
        "date at boot",
    ),
    (
        RequestKind::ExecutableAddress,
        [0x71ba_7686_3cc5_5f63, 0xb264_4a48_c516_a487],
        "executable address",
    ),
    (
        RequestKind::Dtb,
        [0xb40d_db48_fb54_bac7, 0x5450_8149_3f81_ffb7],
        "device tree blob",
    ),
    (
        RequestKind::BootloaderPerformance,
        [0x6b50_ad9b_f36d_13ad, 0xdc4c_7e88_fc75_9e17],
        "bootloader performance",
    ),
    (
        RequestKind::KeepIommu,
        [0x8eba_abe5_1f49_0179, 0x2aa8_6a59_ffb4_ab0f],
        "x86-64 keep IOMMU",
    ),
    (
        RequestKind::TscFrequency,
        [0x10f2_ee1d_87d1_95e4, 0xf747_a2b7_8f6d_db31],
        "TSC frequency",
    ),
    (
        RequestKind::FlantermFbInitParams,
        [0x3259_399f_e7c5_f126, 0xe01c_1c8c_5db9_d1a9],
        "flanterm FB init params",
    ),
    (
        RequestKind::Entropy,
        [0x65ea_8025_5d56_82c5, 0x9117_2407_23f4_93eb],
        "entropy",
    ),
    (
        RequestKind::Terminal,
        [0x0785_a0ae_a5d0_750f, 0x1c19_36fe_e0d6_cf6e],
        "terminal",
    ),
];

impl RequestKind {
    /// The request whose ID ends with `tail`, after [`COMMON_MAGIC`].
    pub(crate) fn from_id_tail(tail: [u64; 2]) -> Option<Self> {
        REQUESTS
            .iter()
            .find(|(_, id, _)| *id == tail)
            .map(|(kind, _, _)| *kind)
    }

    /// The feature's name as the specification's heading gives it.
    pub(crate) fn name(self) -> &'static str {
        REQUESTS
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map_or("?", |(_, _, name)| name)
    }
}

/// Memory-map entry types. gdbvisor's machine has no ACPI NVS, ACPI-reclaimable or bad
/// memory; the HHDM rules still name them.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum MemmapType {
    Usable = 0,
    Reserved = 1,
    AcpiReclaimable = 2,
    AcpiNvs = 3,
    BadMemory = 4,
    BootloaderReclaimable = 5,
    ExecutableAndModules = 6,
    Framebuffer = 7,
    /// Base revision 4 and later.
    ReservedMapped = 8,
}

/// `firmware_type` of the firmware-type response: gdbvisor is no firmware, and a BIOS is what
/// the machine it models (a PC with ACPI tables in the BIOS area) would have.
pub(crate) const FIRMWARE_TYPE_X86BIOS: u64 = 0;
/// `mode` of the paging-mode request and response.
pub(crate) const PAGING_MODE_4LVL: u64 = 0;
/// Module request flag: the kernel cannot go on without this internal module.
pub(crate) const INTERNAL_MODULE_REQUIRED: u64 = 1;
/// `struct limine_file`'s size (revision 0), and `media_type` generic.
pub(crate) const FILE_SIZE: u64 = 112;
/// `struct limine_mp_info` (x86-64): processor_id, lapic_id, reserved, goto_address,
/// extra_argument.
pub(crate) const MP_INFO_SIZE: u64 = 32;
pub(crate) const MP_INFO_GOTO: u64 = 16;
/// `struct limine_framebuffer` (response revision 1), and its `memory_model` for RGB.
pub(crate) const FRAMEBUFFER_SIZE: u64 = 80;
pub(crate) const FRAMEBUFFER_RGB: u8 = 1;
/// Offset of `response` in every request (after id[4] and revision).
pub(crate) const REQUEST_RESPONSE: u64 = 40;
/// The first member after `response`.
pub(crate) const REQUEST_EXTRA: u64 = 48;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_named() {
        for (i, (kind, id, _)) in REQUESTS.iter().enumerate() {
            assert_eq!(RequestKind::from_id_tail(*id), Some(*kind));
            assert!(REQUESTS[i + 1..].iter().all(|(_, other, _)| other != id));
        }
        assert_eq!(RequestKind::Hhdm.name(), "HHDM");
        assert_eq!(RequestKind::from_id_tail([1, 2]), None);
    }
}
