//! What this host's KVM can do, as one handle passed to the code that depends on it.
//!
//! Each capability is learned at most once per process, the first time something asks for it:
//! the results are process-wide, so every handle, every run in the process and `gdbvisor
//! doctor` share them. Learning one may boot a throwaway VM ([`probe`], ~15 ms on KVM-PVM),
//! which must not happen while a run's vCPUs run (a gdb packet or the report of a run's end
//! would wait on it). So a run asks for what it will need before its vCPUs start
//! ([`HostCaps::probe`], in `runner`), and code that runs alongside vCPUs (the gdb target, a
//! run's outcome) reads only what is known ([`HostCaps::known`]).

use std::fmt;
use std::sync::OnceLock;

use kvm_bindings::{KVM_CAP_SET_GUEST_DEBUG2, KVM_GUESTDBG_BLOCKIRQ};

use crate::vmm::cpuid::CpuFeature;
use crate::vmm::probe::{self, FeatureOutcomes, Outcome};

/// A capability learned by running a probe guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// 32-bit paging and PAE without long mode run: a kernel turning them on does not
    /// triple-fault.
    LegacyPaging,
    /// `syscall` from ring 3 reaches its handler in ring 0 (Linux user space can run).
    UserSyscall,
    /// DR7 data breakpoints fire (gdb's `rwatch` and `awatch` live in debug registers).
    DataBreakpoints,
}

/// A probe's verdict, or why the probe itself could not run.
pub(crate) type Probed<T> = Result<T, String>;

/// Everything learned so far.
struct Learned {
    cpu_flags: OnceLock<Vec<String>>,
    virtualization: OnceLock<String>,
    guest_debug_flags: OnceLock<u32>,
    legacy_paging: OnceLock<Probed<Outcome>>,
    user_syscall: OnceLock<Probed<Outcome>>,
    data_breakpoints: OnceLock<Probed<Outcome>>,
    cpuid_features: OnceLock<Probed<FeatureOutcomes>>,
}

impl Learned {
    /// Nothing learned yet (a `const fn`, so the process-wide one can be a `static`).
    const fn nothing() -> Learned {
        Learned {
            cpu_flags: OnceLock::new(),
            virtualization: OnceLock::new(),
            guest_debug_flags: OnceLock::new(),
            legacy_paging: OnceLock::new(),
            user_syscall: OnceLock::new(),
            data_breakpoints: OnceLock::new(),
            cpuid_features: OnceLock::new(),
        }
    }
}

static THIS_HOST: Learned = Learned::nothing();

/// The handle: cheap to copy, every copy sharing what this process has learned.
#[derive(Clone, Copy)]
pub struct HostCaps {
    learned: &'static Learned,
}

impl fmt::Debug for HostCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCaps")
            .field("legacy_paging", &self.known(Capability::LegacyPaging))
            .field("user_syscall", &self.known(Capability::UserSyscall))
            .field("data_breakpoints", &self.known(Capability::DataBreakpoints))
            .finish_non_exhaustive()
    }
}

impl HostCaps {
    /// The handle on this host.
    pub fn of_this_host() -> HostCaps {
        HostCaps {
            learned: &THIS_HOST,
        }
    }

    /// The host CPU's feature flags from /proc/cpuinfo.
    fn cpu_flags(self) -> &'static [String] {
        self.learned.cpu_flags.get_or_init(|| {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            cpuinfo
                .lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().skip(2).map(str::to_string).collect())
                .unwrap_or_default()
        })
    }

    /// Whether the host CPU has `flag` (as /proc/cpuinfo names it).
    pub(crate) fn cpu_has(self, flag: &str) -> bool {
        self.cpu_flags().iter().any(|f| f == flag)
    }

    /// How KVM runs guests here: "hardware (…)" or "software-nested (…)".
    pub(crate) fn virtualization(self) -> &'static str {
        self.learned.virtualization.get_or_init(|| {
            if self.cpu_has("vmx") {
                "hardware (Intel VT-x)".into()
            } else if self.cpu_has("svm") {
                "hardware (AMD-V)".into()
            } else if std::path::Path::new("/sys/module/kvm_pvm").exists() {
                "software-nested (KVM-PVM: no VT-x/AMD-V in this CPU)".into()
            } else {
                "software-nested (no VT-x/AMD-V in this CPU)".into()
            }
        })
    }

    /// True when this host's KVM runs without VT-x/AMD-V (KVM-PVM): it emulates guest kernels.
    pub fn software_nested(self) -> bool {
        !self.virtualization().starts_with("hardware")
    }

    /// The KVM_GUESTDBG_* flags this KVM accepts (KVM_CAP_SET_GUEST_DEBUG2); none when
    /// /dev/kvm cannot be opened.
    pub(crate) fn guest_debug_flags(self) -> u32 {
        *self.learned.guest_debug_flags.get_or_init(|| {
            kvm_ioctls::Kvm::new()
                .map(|kvm| {
                    kvm.check_extension_raw(u64::from(KVM_CAP_SET_GUEST_DEBUG2))
                        .max(0) as u32
                })
                .unwrap_or(0)
        })
    }

    /// KVM can keep interrupts out while it single-steps a vCPU (KVM_GUESTDBG_BLOCKIRQ).
    pub(crate) fn block_irq(self) -> bool {
        self.guest_debug_flags() & KVM_GUESTDBG_BLOCKIRQ != 0
    }

    fn cell(self, cap: Capability) -> &'static OnceLock<Probed<Outcome>> {
        match cap {
            Capability::LegacyPaging => &self.learned.legacy_paging,
            Capability::UserSyscall => &self.learned.user_syscall,
            Capability::DataBreakpoints => &self.learned.data_breakpoints,
        }
    }

    /// The probe's verdict on `cap`, with why it fails; probes (a throwaway VM) the first
    /// time.
    pub(crate) fn outcome(self, cap: Capability) -> &'static Probed<Outcome> {
        self.cell(cap).get_or_init(|| {
            let outcome = match cap {
                Capability::LegacyPaging => probe::paging(false),
                Capability::UserSyscall => probe::user_syscall(),
                Capability::DataBreakpoints => probe::dr_watchpoint(),
            };
            outcome.map_err(|e| e.to_string())
        })
    }

    /// What a verdict means for `cap`. A `syscall` probe that could not run does not hide a
    /// host where Linux works (a warning would be all it changed).
    fn verdict(cap: Capability, outcome: &Probed<Outcome>) -> bool {
        match cap {
            Capability::UserSyscall => matches!(outcome, Ok(Outcome::Works) | Err(_)),
            Capability::LegacyPaging | Capability::DataBreakpoints => {
                matches!(outcome, Ok(Outcome::Works))
            }
        }
    }

    /// True when hardware virtualization settles `cap` without a probe: it runs `syscall`
    /// natively.
    fn settled(self, cap: Capability) -> bool {
        cap == Capability::UserSyscall && !self.software_nested()
    }

    /// Whether this host has `cap`; probes (a throwaway VM) the first time. Not for code
    /// that runs while vCPUs run: see [`HostCaps::known`].
    pub fn has(self, cap: Capability) -> bool {
        self.settled(cap) || Self::verdict(cap, self.outcome(cap))
    }

    /// What is known of `cap` without probing: `None` until something asked for it.
    pub(crate) fn known(self, cap: Capability) -> Option<bool> {
        if self.settled(cap) {
            return Some(true);
        }
        self.cell(cap)
            .get()
            .map(|outcome| Self::verdict(cap, outcome))
    }

    /// For each CPUID feature gdbvisor probes: `None` when the guest's CPUID does not show it,
    /// else whether its instructions run. Probes (throwaway VMs, ~50 ms on KVM-PVM) the first
    /// time.
    pub(crate) fn cpuid_features(self) -> &'static Probed<FeatureOutcomes> {
        self.learned
            .cpuid_features
            .get_or_init(|| probe::cpuid_features().map_err(|e| e.to_string()))
    }

    /// The CPUID features this host's KVM offers but cannot execute. Hardware KVM runs every
    /// instruction it offers, so only a software-nested host is probed.
    pub(crate) fn cpuid_gaps(self) -> Vec<CpuFeature> {
        if !self.software_nested() {
            return Vec::new();
        }
        match self.cpuid_features() {
            Ok(results) => results
                .iter()
                .filter(|(_, outcome)| matches!(outcome, Some(Outcome::Fails(_))))
                .map(|&(feature, _)| feature)
                .collect(),
            Err(e) => {
                // Without a verdict, hide what is known to fail on software-nested KVM.
                log::warn!("cannot probe CPUID features ({e}); hiding cx16 and xsave");
                vec![CpuFeature::Cx16, CpuFeature::Xsave]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on a host of which only `virtualization` is known: nothing is probed unless a
    /// test asks for what it has not set.
    fn host(virtualization: &str) -> HostCaps {
        let learned: &'static Learned = Box::leak(Box::new(Learned::nothing()));
        learned.virtualization.set(virtualization.into()).unwrap();
        HostCaps { learned }
    }

    #[test]
    fn what_is_known_is_read_without_probing() {
        let caps = host("software-nested (KVM-PVM: no VT-x/AMD-V in this CPU)");
        assert_eq!(caps.known(Capability::LegacyPaging), None);
        let fails = Ok(Outcome::Fails("the guest triple-faults".into()));
        caps.learned.legacy_paging.set(fails).unwrap();
        assert_eq!(caps.known(Capability::LegacyPaging), Some(false));
        assert!(!caps.has(Capability::LegacyPaging));
        // A syscall probe that could not run does not make Linux's user space look broken.
        caps.learned
            .user_syscall
            .set(Err("no /dev/kvm".into()))
            .unwrap();
        assert_eq!(caps.known(Capability::UserSyscall), Some(true));
        caps.learned
            .data_breakpoints
            .set(Ok(Outcome::Works))
            .unwrap();
        assert!(
            caps.has(Capability::DataBreakpoints),
            "set above: nothing probed"
        );
        assert_eq!(caps.known(Capability::DataBreakpoints), Some(true));
    }

    #[test]
    fn hardware_settles_syscall_and_cpuid_without_probes() {
        let caps = host("hardware (Intel VT-x)");
        assert!(!caps.software_nested());
        assert_eq!(caps.known(Capability::UserSyscall), Some(true));
        assert!(caps.cpuid_gaps().is_empty());
        assert!(caps.learned.cpuid_features.get().is_none(), "not probed");
    }

    #[test]
    fn cpuid_gaps_are_the_features_that_fail() {
        let caps = host("software-nested (no VT-x/AMD-V in this CPU)");
        let fails = Some(Outcome::Fails("KVM emulation failure".into()));
        let features = vec![
            (CpuFeature::Cx16, fails.clone()),
            (CpuFeature::Rdrand, Some(Outcome::Works)),
            (CpuFeature::Pku, None),
            (CpuFeature::Popcnt, fails),
        ];
        caps.learned.cpuid_features.set(Ok(features)).unwrap();
        assert_eq!(caps.cpuid_gaps(), [CpuFeature::Cx16, CpuFeature::Popcnt]);
        let unprobed = host("software-nested (no VT-x/AMD-V in this CPU)");
        unprobed
            .learned
            .cpuid_features
            .set(Err("no /dev/kvm".into()))
            .unwrap();
        assert_eq!(unprobed.cpuid_gaps(), [CpuFeature::Cx16, CpuFeature::Xsave]);
    }
}
