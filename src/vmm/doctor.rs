//! `gdbvisor doctor`: what this host's KVM can do, learned by running tiny guests in throwaway
//! VMs ([`crate::vmm::probe`]) rather than trusting the capabilities it reports. What runs
//! depend on comes from the process's [`HostCaps`]; the rest only this report needs.

use std::fmt;

use kvm_bindings::{
    KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_INJECT_BP, KVM_GUESTDBG_INJECT_DB,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use kvm_ioctls::Cap;
use thiserror::Error;

use crate::vmm::cpuid::CpuFeature;
use crate::vmm::host_caps::{Capability, HostCaps, Probed};
use crate::vmm::probe::{
    self, Int3Behaviour, Outcome, ProbeError, ProtectedWrite, ProtectedWriteCase,
};
use crate::vmm::vm::Vm;

/// Why the host report could not be made.
#[derive(Debug, Error)]
pub enum DoctorError {
    /// A probe VM failed to run.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A probe [`HostCaps`] ran could not run: its message.
    #[error("{0}")]
    Probed(String),
}

/// What the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub(crate) virtualization: String,
    pub(crate) legacy_paging: Outcome,
    pub(crate) pae_paging: Outcome,
    pub(crate) int3: Int3Behaviour,
    /// Whether `syscall` from ring 3 reaches its handler in ring 0.
    pub(crate) user_syscall: Outcome,
    pub(crate) dr_write_watchpoint: Outcome,
    pub(crate) readonly_memslots: bool,
    /// What KVM does with each kind of write into a read-only slot.
    pub(crate) protected_writes: Vec<(ProtectedWriteCase, ProtectedWrite)>,
    pub(crate) guest_debug_flags: Vec<&'static str>,
    /// KVM offers LA57 in its supported CPUID.
    pub(crate) la57_offered: bool,
    /// The host CPU itself has LA57.
    pub(crate) la57_host: bool,
    /// Features gdbvisor probes: whether KVM's supported CPUID offers them (`None`: not
    /// offered) and whether their instructions run.
    pub(crate) cpuid_features: Vec<(CpuFeature, Option<Outcome>)>,
}

/// Runs every probe (those `caps` already ran are not run again).
pub fn examine(caps: HostCaps) -> Result<HostReport, DoctorError> {
    let vm = Vm::new(probe::vm_options()).map_err(ProbeError::from)?;
    let readonly_memslots = vm.kvm.check_extension(Cap::ReadonlyMem);
    let debug_bits = caps.guest_debug_flags();
    let guest_debug_flags = [
        (KVM_GUESTDBG_ENABLE, "ENABLE"),
        (KVM_GUESTDBG_SINGLESTEP, "SINGLESTEP"),
        (KVM_GUESTDBG_USE_SW_BP, "USE_SW_BP"),
        (KVM_GUESTDBG_USE_HW_BP, "USE_HW_BP"),
        (KVM_GUESTDBG_INJECT_DB, "INJECT_DB"),
        (KVM_GUESTDBG_INJECT_BP, "INJECT_BP"),
        (KVM_GUESTDBG_BLOCKIRQ, "BLOCKIRQ"),
    ]
    .into_iter()
    .filter(|(bit, _)| debug_bits & bit != 0)
    .map(|(_, name)| name)
    .collect();
    let la57_offered = vm
        .kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map(|cpuid| {
            cpuid
                .as_slice()
                .iter()
                .any(|e| e.function == 7 && e.index == 0 && e.ecx & (1 << 16) != 0)
        })
        .unwrap_or(false);
    drop(vm);
    let learned = |probed: &Probed<Outcome>| probed.clone().map_err(DoctorError::Probed);
    Ok(HostReport {
        virtualization: caps.virtualization().to_string(),
        legacy_paging: learned(caps.outcome(Capability::LegacyPaging))?,
        pae_paging: probe::paging(true)?,
        int3: probe::int3()?,
        user_syscall: learned(caps.outcome(Capability::UserSyscall))?,
        dr_write_watchpoint: learned(caps.outcome(Capability::DataBreakpoints))?,
        readonly_memslots,
        protected_writes: ProtectedWriteCase::ALL
            .iter()
            .map(|&case| Ok((case, probe::protected_write(case)?)))
            .collect::<Result<_, ProbeError>>()?,
        guest_debug_flags,
        la57_offered,
        la57_host: caps.cpu_has("la57"),
        cpuid_features: caps.cpuid_features().clone().map_err(DoctorError::Probed)?,
    })
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Works => "works".into(),
        Outcome::Fails(why) => format!("NOT SUPPORTED ({why})"),
    }
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "virtualization: {}", self.virtualization)?;
        writeln!(
            f,
            "32-bit paging (no long mode): {}",
            describe(&self.legacy_paging)
        )?;
        writeln!(
            f,
            "PAE paging (no long mode): {}",
            describe(&self.pae_paging)
        )?;
        let int3 = match &self.int3 {
            Int3Behaviour::Native => "delivered to the guest by KVM".to_string(),
            Int3Behaviour::EmulationFailure => {
                "KVM emulation failure; gdbvisor completes it by injection".to_string()
            }
            Int3Behaviour::Other(what) => format!("unexpected: {what}"),
        };
        writeln!(f, "guest int3 / int n: {int3}")?;
        writeln!(
            f,
            "syscall from ring 3 (64-bit user space): {}",
            describe(&self.user_syscall)
        )?;

        writeln!(
            f,
            "DR7 data watchpoints: {}",
            describe(&self.dr_write_watchpoint)
        )?;
        writeln!(
            f,
            "read-only memslots: {}",
            if self.readonly_memslots {
                "reported"
            } else {
                "NOT SUPPORTED"
            }
        )?;
        writeln!(
            f,
            "writes into a read-only page (gdbvisor protects breakpoint and watched pages):"
        )?;
        for (case, outcome) in &self.protected_writes {
            writeln!(f, "  {}: {outcome}", case.describe())?;
        }
        writeln!(f, "guest debug flags: {}", self.guest_debug_flags.join(" "))?;
        for (feature, outcome) in &self.cpuid_features {
            let verdict = match outcome {
                Some(outcome) => describe(outcome),
                None => "not in the guest's CPUID".to_string(),
            };
            writeln!(f, "CPUID {feature} instructions: {verdict}")?;
        }
        let gaps: Vec<&str> = self
            .cpuid_features
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Some(Outcome::Fails(_))))
            .map(|(feature, _)| feature.name())
            .collect();
        writeln!(
            f,
            "CPUID features hidden from guests by default (--cpuid-hide auto): {}",
            if gaps.is_empty() {
                "none".to_string()
            } else {
                gaps.join(",")
            }
        )?;
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "5-level paging (LA57): host CPU {}, offered in KVM's CPUID {}",
            yes_no(self.la57_host),
            yes_no(self.la57_offered)
        )
    }
}
