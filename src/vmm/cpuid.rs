//! The guest's CPUID: KVM_GET_SUPPORTED_CPUID minus the features a user (or this host's KVM)
//! cannot have.
//!
//! A software-nested KVM such as KVM-PVM offers features in its supported CPUID that it then
//! cannot execute: `lock cmpxchg16b` and `xsave`/`xrstor` end in emulation failures. Linux uses
//! both as soon as CPUID names them (SLUB's cmpxchg16b, the FPU's xsave), so they must be hidden.
//! `--cpuid-hide` takes a list of [`CpuFeature`] names, `none`, or `auto` (the default): for
//! Linux and PVH kernels, hide what [`crate::vmm::host_caps::HostCaps::cpuid_gaps`] found this
//! host cannot run.

use std::fmt;
use std::str::FromStr;

use kvm_bindings::CpuId;
use thiserror::Error;

use crate::boot::BootFormat;
use crate::vmm::vm::{cpuid_for, Vm, VmError};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpuidError {
    #[error("unknown CPUID feature '{name}' for --cpuid-hide; known: auto, none, {known}")]
    UnknownFeature { name: String, known: String },
}

/// Where a feature bit lives: leaf, subleaf, register, bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FeatureBit {
    leaf: u32,
    index: u32,
    reg: Reg,
    bit: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Ebx,
    Ecx,
    Edx,
}

const fn bit(leaf: u32, reg: Reg, bit: u8) -> FeatureBit {
    FeatureBit {
        leaf,
        index: 0,
        reg,
        bit,
    }
}

/// A CPUID feature `--cpuid-hide` can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuFeature {
    /// CMPXCHG16B (leaf 1 ECX bit 13).
    Cx16,
    /// XSAVE/XRSTOR and everything whose state lives in the XSAVE area (OSXSAVE, AVX, AVX2,
    /// FMA, F16C, AVX-512, leaf 0xD): hiding XSAVE alone would leave an inconsistent CPU.
    Xsave,
    /// AVX, AVX2, FMA, F16C and AVX-512 (the XSAVE-managed vector extensions).
    Avx,
    /// x2APIC mode (leaf 1 ECX bit 21).
    X2apic,
    /// TSC-deadline timer mode (leaf 1 ECX bit 24).
    TscDeadline,
    /// RDRAND (leaf 1 ECX bit 30).
    Rdrand,
    /// RDSEED (leaf 7 EBX bit 18).
    Rdseed,
    /// PCID (leaf 1 ECX bit 17).
    Pcid,
    /// 1 GiB pages (leaf 0x80000001 EDX bit 26).
    Pdpe1gb,
    /// 5-level paging (leaf 7 ECX bit 16).
    La57,
    /// The "running under a hypervisor" bit and KVM's paravirtual leaves 0x40000000+.
    Hypervisor,
    /// POPCNT (leaf 1 ECX bit 23).
    Popcnt,
    /// MOVBE (leaf 1 ECX bit 22).
    Movbe,
    /// SSSE3 (leaf 1 ECX bit 9): PSHUFB and friends.
    Ssse3,
    /// SSE4.1 (leaf 1 ECX bit 19).
    Sse41,
    /// SSE4.2 (leaf 1 ECX bit 20): CRC32, PCMPxSTRx.
    Sse42,
    /// AES-NI (leaf 1 ECX bit 25).
    Aes,
    /// PCLMULQDQ (leaf 1 ECX bit 1).
    Pclmul,
    /// SMAP (leaf 7 EBX bit 20): CLAC/STAC.
    Smap,
    /// RDFSBASE/WRFSBASE… (leaf 7 EBX bit 0).
    Fsgsbase,
    /// INVPCID (leaf 7 EBX bit 10).
    Invpcid,
    /// Protection keys (leaf 7 ECX bit 3): RDPKRU/WRPKRU.
    Pku,
    /// RDTSCP (leaf 0x80000001 EDX bit 27).
    Rdtscp,
    /// RDPID (leaf 7 ECX bit 22).
    Rdpid,
}

impl CpuFeature {
    pub(crate) const ALL: [CpuFeature; 24] = [
        CpuFeature::Cx16,
        CpuFeature::Xsave,
        CpuFeature::Avx,
        CpuFeature::X2apic,
        CpuFeature::TscDeadline,
        CpuFeature::Rdrand,
        CpuFeature::Rdseed,
        CpuFeature::Pcid,
        CpuFeature::Pdpe1gb,
        CpuFeature::La57,
        CpuFeature::Hypervisor,
        CpuFeature::Popcnt,
        CpuFeature::Movbe,
        CpuFeature::Ssse3,
        CpuFeature::Sse41,
        CpuFeature::Sse42,
        CpuFeature::Aes,
        CpuFeature::Pclmul,
        CpuFeature::Smap,
        CpuFeature::Fsgsbase,
        CpuFeature::Invpcid,
        CpuFeature::Pku,
        CpuFeature::Rdtscp,
        CpuFeature::Rdpid,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            CpuFeature::Cx16 => "cx16",
            CpuFeature::Xsave => "xsave",
            CpuFeature::Avx => "avx",
            CpuFeature::X2apic => "x2apic",
            CpuFeature::TscDeadline => "tsc-deadline",
            CpuFeature::Rdrand => "rdrand",
            CpuFeature::Rdseed => "rdseed",
            CpuFeature::Pcid => "pcid",
            CpuFeature::Pdpe1gb => "pdpe1gb",
            CpuFeature::La57 => "la57",
            CpuFeature::Hypervisor => "hypervisor",
            CpuFeature::Popcnt => "popcnt",
            CpuFeature::Movbe => "movbe",
            CpuFeature::Ssse3 => "ssse3",
            CpuFeature::Sse41 => "sse4.1",
            CpuFeature::Sse42 => "sse4.2",
            CpuFeature::Aes => "aes",
            CpuFeature::Pclmul => "pclmulqdq",
            CpuFeature::Smap => "smap",
            CpuFeature::Fsgsbase => "fsgsbase",
            CpuFeature::Invpcid => "invpcid",
            CpuFeature::Pku => "pku",
            CpuFeature::Rdtscp => "rdtscp",
            CpuFeature::Rdpid => "rdpid",
        }
    }

    /// The bits cleared to hide the feature.
    fn bits(self) -> Vec<FeatureBit> {
        use Reg::*;
        const AVX: [FeatureBit; 12] = [
            bit(1, Ecx, 12), // FMA
            bit(1, Ecx, 28), // AVX
            bit(1, Ecx, 29), // F16C
            bit(7, Ebx, 5),  // AVX2
            bit(7, Ebx, 16), // AVX512F
            bit(7, Ebx, 17), // AVX512DQ
            bit(7, Ebx, 21), // AVX512_IFMA
            bit(7, Ebx, 26), // AVX512PF
            bit(7, Ebx, 27), // AVX512ER
            bit(7, Ebx, 28), // AVX512CD
            bit(7, Ebx, 30), // AVX512BW
            bit(7, Ebx, 31), // AVX512VL
        ];
        match self {
            CpuFeature::Cx16 => vec![bit(1, Ecx, 13)],
            CpuFeature::Xsave => {
                let mut bits = vec![bit(1, Ecx, 26), bit(1, Ecx, 27)];
                bits.extend(AVX);
                bits
            }
            CpuFeature::Avx => AVX.to_vec(),
            CpuFeature::X2apic => vec![bit(1, Ecx, 21)],
            CpuFeature::TscDeadline => vec![bit(1, Ecx, 24)],
            CpuFeature::Rdrand => vec![bit(1, Ecx, 30)],
            CpuFeature::Rdseed => vec![bit(7, Ebx, 18)],
            CpuFeature::Pcid => vec![bit(1, Ecx, 17)],
            CpuFeature::Pdpe1gb => vec![bit(0x8000_0001, Edx, 26)],
            CpuFeature::La57 => vec![bit(7, Ecx, 16)],
            CpuFeature::Hypervisor => vec![bit(1, Ecx, 31)],
            CpuFeature::Popcnt => vec![bit(1, Ecx, 23)],
            CpuFeature::Movbe => vec![bit(1, Ecx, 22)],
            CpuFeature::Ssse3 => vec![bit(1, Ecx, 9)],
            CpuFeature::Sse41 => vec![bit(1, Ecx, 19)],
            CpuFeature::Sse42 => vec![bit(1, Ecx, 20)],
            CpuFeature::Aes => vec![bit(1, Ecx, 25)],
            CpuFeature::Pclmul => vec![bit(1, Ecx, 1)],
            CpuFeature::Smap => vec![bit(7, Ebx, 20)],
            CpuFeature::Fsgsbase => vec![bit(7, Ebx, 0)],
            CpuFeature::Invpcid => vec![bit(7, Ebx, 10)],
            CpuFeature::Pku => vec![bit(7, Ecx, 3), bit(7, Ecx, 4)],
            CpuFeature::Rdtscp => vec![bit(0x8000_0001, Edx, 27)],
            CpuFeature::Rdpid => vec![bit(7, Ecx, 22)],
        }
    }

    /// Where the feature's (first) bit lives: leaf, register (1 EBX, 2 ECX, 3 EDX), bit.
    pub(crate) fn cpuid_bit(self) -> (u32, u8, u8) {
        let b = self.bits()[0];
        let reg = match b.reg {
            Reg::Ebx => 1,
            Reg::Ecx => 2,
            Reg::Edx => 3,
        };
        (b.leaf, reg, b.bit)
    }

    /// Linux's X86_FEATURE number for `clearcpuid=` (word × 32 + bit; words 1 = 0x80000001
    /// EDX, 4 = leaf 1 ECX, 9 = leaf 7 EBX, 16 = leaf 7 ECX), for features a Linux guest uses by
    /// itself once CPUID shows them.
    pub(crate) fn linux_number(self) -> Option<u32> {
        let (leaf, reg, bit) = self.cpuid_bit();
        let word = match (leaf, reg) {
            (0x8000_0001, 3) => 1,
            (1, 2) => 4,
            (7, 1) => 9,
            (7, 2) => 16,
            _ => return None,
        };
        match self {
            // CPUID hides these here; x2APIC and friends are not instructions.
            CpuFeature::Xsave
            | CpuFeature::Avx
            | CpuFeature::X2apic
            | CpuFeature::TscDeadline
            | CpuFeature::Pcid
            | CpuFeature::Pdpe1gb
            | CpuFeature::La57
            | CpuFeature::Hypervisor => None,
            _ => Some(word * 32 + u32::from(bit)),
        }
    }
}

impl fmt::Display for CpuFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--cpuid-hide` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuidHide {
    /// Hide what this host's KVM offers but cannot execute (probed once).
    #[default]
    Auto,
    /// Hide exactly these (empty: KVM's supported CPUID unchanged).
    List(Vec<CpuFeature>),
}

impl CpuidHide {
    /// The features to hide for a kernel of `format`. `auto` asks for this host's `gaps` (a
    /// few throwaway VMs, ~50 ms on KVM-PVM, the first time) only for Linux and PVH kernels,
    /// which use CMPXCHG16B and XSAVE as soon as CPUID offers them; other kernels keep KVM's
    /// CPUID and their fast start.
    pub(crate) fn resolve(
        &self,
        format: BootFormat,
        gaps: impl FnOnce() -> Vec<CpuFeature>,
    ) -> Vec<CpuFeature> {
        match self {
            CpuidHide::Auto if format.is_linux() => gaps(),
            CpuidHide::Auto => Vec::new(),
            CpuidHide::List(list) => list.clone(),
        }
    }
}

impl FromStr for CpuidHide {
    type Err = CpuidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => return Ok(CpuidHide::Auto),
            "none" | "" => return Ok(CpuidHide::List(Vec::new())),
            _ => {}
        }
        let mut list = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let feature = CpuFeature::ALL
                .into_iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| CpuidError::UnknownFeature {
                    name: name.to_string(),
                    known: CpuFeature::ALL.map(CpuFeature::name).join(", "),
                })?;
            if !list.contains(&feature) {
                list.push(feature);
            }
        }
        Ok(CpuidHide::List(list))
    }
}

/// Clears the bits of every feature in `hide` from `cpuid`.
pub(crate) fn hide_features(cpuid: &mut CpuId, hide: &[CpuFeature]) {
    let hides_xsave = hide.contains(&CpuFeature::Xsave);
    let hides_hypervisor = hide.contains(&CpuFeature::Hypervisor);
    for entry in cpuid.as_mut_slice() {
        for feature in hide {
            for b in feature.bits() {
                if entry.function == b.leaf && entry.index == b.index {
                    let mask = !(1u32 << b.bit);
                    match b.reg {
                        Reg::Ebx => entry.ebx &= mask,
                        Reg::Ecx => entry.ecx &= mask,
                        Reg::Edx => entry.edx &= mask,
                    }
                }
            }
        }
        // Leaf 0xD describes the XSAVE area; without XSAVE it must read as empty.
        if hides_xsave && entry.function == 0xd {
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = 0;
            entry.edx = 0;
        }
        // KVM's signature leaf: a kernel that finds no "KVMKVMKVM" uses no paravirt features.
        if hides_hypervisor && entry.function == 0x4000_0000 {
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = 0;
            entry.edx = 0;
        }
    }
}

/// Linux command-line switches that hide what CPUID cannot. KVM-PVM shows the guest the host's
/// leaf 1 ECX bits for features KVM itself does not list (XSAVE, AVX, POPCNT, MOVBE…) whatever
/// KVM_SET_CPUID2 said, so a Linux guest there gets `noxsave` and `clearcpuid=` with Linux's
/// feature numbers (word 4 = leaf 1 ECX: bit n is 128 + n). Only for Linux kernels (bzImage or
/// PVH), and only switches not already on `cmdline`.
pub(crate) fn linux_switches(
    format: BootFormat,
    hide: &[CpuFeature],
    cmdline: &str,
) -> Vec<String> {
    if !format.is_linux() {
        return Vec::new();
    }
    let present = |prefix: &str| cmdline.split_whitespace().any(|w| w.starts_with(prefix));
    let mut switches = Vec::new();
    if hide
        .iter()
        .any(|f| matches!(f, CpuFeature::Xsave | CpuFeature::Avx))
        && !present("noxsave")
    {
        switches.push("noxsave".to_string());
    }
    let mut numbers: Vec<String> = hide
        .iter()
        .filter_map(|f| f.linux_number())
        .map(|n| n.to_string())
        .collect();
    numbers.dedup();
    if !numbers.is_empty() && !present("clearcpuid=") {
        switches.push(format!("clearcpuid={}", numbers.join(",")));
    }
    switches
}

/// Gives every vCPU of `vm` KVM's supported CPUID (with its own APIC ID) minus `hide`. Must
/// run before the first KVM_RUN.
pub(crate) fn apply(vm: &Vm, hide: &[CpuFeature]) -> Result<(), VmError> {
    for vcpu in &vm.vcpus {
        let mut cpuid = cpuid_for(&vm.supported_cpuid, vcpu.id);
        hide_features(&mut cpuid, hide);
        vcpu.kvm().set_cpuid(&cpuid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn cpuid() -> CpuId {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: 0xffff_ffff,
                edx: 0xffff_ffff,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                ebx: 0xffff_ffff,
                ecx: 0xffff_ffff,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xd,
                eax: 7,
                ebx: 0x240,
                ..Default::default()
            },
        ];
        CpuId::from_entries(&entries).unwrap()
    }

    /// `auto` asks for the host's gaps only for a Linux kernel; a list is taken as it is.
    #[test]
    fn auto_asks_the_host_only_for_linux() {
        let gaps = || vec![CpuFeature::Cx16];
        assert_eq!(
            CpuidHide::Auto.resolve(BootFormat::Pvh, gaps),
            [CpuFeature::Cx16]
        );
        let never = || -> Vec<CpuFeature> { panic!("not asked") };
        assert!(CpuidHide::Auto
            .resolve(BootFormat::Multiboot2, never)
            .is_empty());
        let list = CpuidHide::List(vec![CpuFeature::Rdrand]);
        assert_eq!(list.resolve(BootFormat::Linux, never), [CpuFeature::Rdrand]);
    }

    #[test]
    fn linux_gets_noxsave_once() {
        let hide = [CpuFeature::Cx16, CpuFeature::Xsave, CpuFeature::Avx];
        assert_eq!(
            linux_switches(BootFormat::Linux, &hide, "quiet"),
            ["noxsave", "clearcpuid=141"]
        );
        assert_eq!(
            linux_switches(BootFormat::Pvh, &hide, "a noxsave clearcpuid=1"),
            [""; 0]
        );
        assert_eq!(
            linux_switches(
                BootFormat::Pvh,
                &[CpuFeature::Popcnt, CpuFeature::Smap, CpuFeature::X2apic],
                ""
            ),
            ["clearcpuid=151,308"]
        );
        assert_eq!(linux_switches(BootFormat::Multiboot2, &hide, ""), [""; 0]);
    }

    #[test]
    fn parses_lists_auto_and_none() {
        assert_eq!("auto".parse(), Ok(CpuidHide::Auto));
        assert_eq!("none".parse(), Ok(CpuidHide::List(vec![])));
        assert_eq!(
            "cx16, XSAVE,cx16".parse(),
            Ok(CpuidHide::List(vec![CpuFeature::Cx16, CpuFeature::Xsave]))
        );
        let err = "cx16,sse9".parse::<CpuidHide>().unwrap_err().to_string();
        assert!(
            err.contains("'sse9'") && err.contains("cx16, xsave"),
            "{err}"
        );
    }

    /// True when `cpuid` offers the feature (its first bit is set).
    fn offered(feature: CpuFeature, cpuid: &CpuId) -> bool {
        let first = feature.bits()[0];
        cpuid.as_slice().iter().any(|e| {
            let value = match first.reg {
                Reg::Ebx => e.ebx,
                Reg::Ecx => e.ecx,
                Reg::Edx => e.edx,
            };
            e.function == first.leaf && e.index == first.index && value & (1 << first.bit) != 0
        })
    }

    #[test]
    fn hiding_clears_the_documented_bits() {
        let mut ids = cpuid();
        assert!(offered(CpuFeature::Cx16, &ids));
        hide_features(&mut ids, &[CpuFeature::Cx16, CpuFeature::Xsave]);
        let leaf1 = ids.as_slice()[0];
        assert_eq!(leaf1.ecx & (1 << 13), 0, "CX16");
        assert_eq!(leaf1.ecx & (0xf << 26), 0, "XSAVE, OSXSAVE, AVX, F16C gone");
        assert_ne!(leaf1.ecx & (1 << 30), 0, "RDRAND stays");
        assert_eq!(leaf1.edx, 0xffff_ffff, "EDX untouched");
        assert_eq!(ids.as_slice()[1].ebx & (1 << 5), 0, "AVX2");
        assert_eq!(ids.as_slice()[1].ebx & (1 << 18), 1 << 18, "RDSEED stays");
        assert_eq!((ids.as_slice()[2].eax, ids.as_slice()[2].ebx), (0, 0));
        assert!(!offered(CpuFeature::Cx16, &ids));
        assert!(!offered(CpuFeature::Xsave, &ids));
        assert!(offered(CpuFeature::Rdrand, &ids));
    }
}
