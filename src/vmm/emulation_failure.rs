//! Instructions this host's KVM fails to emulate, finished by the VMM. A software-nested KVM
//! (KVM-PVM) exits with KVM_INTERNAL_ERROR_EMULATION on a guest's `int3`, `int1`, `int n` and
//! `fwait`; the VMM does what the CPU would have: steps over the instruction and delivers its
//! event through the guest's IDT, or raises the x87 error `fwait` would raise.
//!
//! The run loop (`vcpu.rs`) dispatches: it tells a debugger's own 0xCC from the guest's `int3`
//! and delivers the injected event off protected pages.

use kvm_bindings::kvm_regs;

use crate::vmm::kvm_vcpu::{KvmVcpu, VcpuError};

/// KVM_INTERNAL_ERROR_EMULATION: the exit this host gives for a guest's int3 / int n.
const SUBERROR_EMULATION: u32 = 1;
/// The longest x86 instruction.
pub(crate) const MAX_INSN_LEN: usize = 15;
const FWAIT: u8 = 0x9B;

/// A guest `int3`, `int1` or `int n` this host's KVM could not emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SoftInterrupt {
    Int3,
    Int1,
    IntN(u8),
}

impl SoftInterrupt {
    /// Decodes the instruction at the start of `bytes`.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xCC, ..] => Some(SoftInterrupt::Int3),
            [0xF1, ..] => Some(SoftInterrupt::Int1),
            [0xCD, n, ..] => Some(SoftInterrupt::IntN(*n)),
            _ => None,
        }
    }

    /// The interrupt vector it raises.
    pub(crate) fn vector(self) -> u8 {
        match self {
            SoftInterrupt::Int3 => 3,
            SoftInterrupt::Int1 => 1,
            SoftInterrupt::IntN(vector) => vector,
        }
    }

    pub(crate) fn insn_len(self) -> u64 {
        match self {
            SoftInterrupt::Int3 | SoftInterrupt::Int1 => 1,
            SoftInterrupt::IntN(_) => 2,
        }
    }
}

/// An emulation failure the VMM finishes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unemulated {
    SoftInterrupt(SoftInterrupt),
    Fwait,
}

impl Unemulated {
    /// What a KVM_EXIT_INTERNAL_ERROR with `suberror` on the instruction `insn` is, when the
    /// VMM can finish it.
    pub(crate) fn classify(suberror: u32, insn: &[u8]) -> Option<Self> {
        if suberror != SUBERROR_EMULATION {
            return None;
        }
        if insn.first() == Some(&FWAIT) {
            return Some(Unemulated::Fwait);
        }
        SoftInterrupt::decode(insn).map(Unemulated::SoftInterrupt)
    }
}

/// The instruction bytes KVM's emulator fetched, from an emulation failure's `suberror` and
/// data: `flags` with KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, then a size byte and
/// up to 15 bytes packed into the next two words. What the emulator fetched, not what memory
/// holds now: another vCPU may have rewritten the instruction since (Linux's text_poke_bp
/// plants an int3, patches, then restores the first byte, and waits for every CPU to have
/// seen it).
pub(crate) fn fetched_insn(suberror: u32, data: &[u64]) -> Option<Vec<u8>> {
    const FLAG_INSTRUCTION_BYTES: u64 = 1;
    if suberror != SUBERROR_EMULATION {
        return None;
    }
    let [flags, low, high, ..] = *data else {
        return None;
    };
    if flags & FLAG_INSTRUCTION_BYTES == 0 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..8].copy_from_slice(&low.to_le_bytes());
    packed[8..].copy_from_slice(&high.to_le_bytes());
    let size = usize::from(packed[0]);
    (1..=MAX_INSN_LEN)
        .contains(&size)
        .then(|| packed[1..=size].to_vec())
}

/// Finishes what the host's KVM could not: steps over the instruction (`regs` are the vCPU's)
/// and has KVM deliver the event through the guest's IDT at the next entry, as the CPU would
/// have.
pub(crate) fn complete_soft_interrupt(
    kvm: &KvmVcpu,
    soft: SoftInterrupt,
    mut regs: kvm_regs,
) -> Result<(), VcpuError> {
    log::debug!("completing {soft:?} at rip {:#x} by injection", regs.rip);
    regs.rip += soft.insn_len();
    kvm.set_regs(&regs)?;
    let mut events = kvm.get_vcpu_events()?;
    match soft {
        SoftInterrupt::Int3 | SoftInterrupt::Int1 => {
            events.exception.injected = 1;
            events.exception.nr = soft.vector();
            events.exception.has_error_code = 0;
        }
        SoftInterrupt::IntN(vector) => {
            events.interrupt.injected = 1;
            events.interrupt.nr = vector;
            events.interrupt.soft = 0;
        }
    }
    kvm.set_vcpu_events(&events)
}

/// All FWAIT (Linux's FPU code has one) does is raise #MF if an unmasked x87 exception is
/// pending (FSW.ES), so the VMM does that or steps over it (`regs` are the vCPU's).
pub(crate) fn complete_fwait(kvm: &KvmVcpu, mut regs: kvm_regs) -> Result<(), VcpuError> {
    const FSW_ERROR_SUMMARY: u16 = 1 << 7;
    const MF_VECTOR: u8 = 16;
    if kvm.get_fpu()?.fsw & FSW_ERROR_SUMMARY != 0 {
        let mut events = kvm.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.nr = MF_VECTOR;
        events.exception.has_error_code = 0;
        return kvm.set_vcpu_events(&events);
    }
    regs.rip += 1;
    kvm.set_regs(&regs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bytes_the_emulator_fetched() {
        // Seen on KVM-PVM: an int3 another vCPU had planted, fetched before it was patched away.
        let data = [0x1, 0xfff4_2dc7_e890_cc0f, 0x4801_b415_9805_0348, 0x1000];
        let bytes = fetched_insn(SUBERROR_EMULATION, &data).unwrap();
        assert_eq!(bytes.len(), 15);
        assert_eq!(bytes[..4], [0xcc, 0x90, 0xe8, 0xc7]);
        assert_eq!(
            Unemulated::classify(SUBERROR_EMULATION, &bytes),
            Some(Unemulated::SoftInterrupt(SoftInterrupt::Int3))
        );
        assert_eq!(fetched_insn(SUBERROR_EMULATION + 1, &data), None);
        assert_eq!(
            fetched_insn(SUBERROR_EMULATION, &[0, data[1], data[2]]),
            None
        );
        assert_eq!(fetched_insn(SUBERROR_EMULATION, &data[..2]), None);
        assert_eq!(fetched_insn(SUBERROR_EMULATION, &[1, 0, 0]), None);
        assert_eq!(fetched_insn(SUBERROR_EMULATION, &[1, 0x10, 0]), None);
    }

    #[test]
    fn decodes_soft_interrupts() {
        assert_eq!(
            SoftInterrupt::decode(&[0xCC, 0x90]),
            Some(SoftInterrupt::Int3)
        );
        assert_eq!(
            SoftInterrupt::decode(&[0xCD, 0x80]),
            Some(SoftInterrupt::IntN(0x80))
        );
        assert_eq!(SoftInterrupt::decode(&[0xF1]), Some(SoftInterrupt::Int1));
        assert_eq!(SoftInterrupt::decode(&[0xCD]), None);
        assert_eq!(SoftInterrupt::decode(&[0x0F, 0x0B]), None);
        assert_eq!(SoftInterrupt::IntN(3).insn_len(), 2);
    }

    #[test]
    fn only_emulation_failures_of_fwait_and_soft_interrupts_are_finished() {
        assert_eq!(
            Unemulated::classify(SUBERROR_EMULATION, &[FWAIT, 0x90]),
            Some(Unemulated::Fwait)
        );
        assert_eq!(
            Unemulated::classify(SUBERROR_EMULATION, &[0xCD, 0x10]),
            Some(Unemulated::SoftInterrupt(SoftInterrupt::IntN(0x10)))
        );
        assert_eq!(Unemulated::classify(SUBERROR_EMULATION + 1, &[0xCC]), None);
        assert_eq!(
            Unemulated::classify(SUBERROR_EMULATION, &[0x0F, 0x0B]),
            None
        );
        assert_eq!(Unemulated::classify(SUBERROR_EMULATION, &[]), None);
    }
}
