//! A real-mode interrupt that reached one of gdbvisor's no-BIOS stubs (`boot::ivt`): which
//! vector, what raised it, and the registers put back where the guest was before it, so that
//! the stop shows the `int 0x10` (or the interrupted instruction), never the stub. The vCPU
//! (`vmm::vcpu`) reads and writes the registers; everything here works on their values.

use std::fmt;

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::boot::ivt;
use crate::x86::cpu::{Cr0Flags, RFlags};

/// A real-mode interrupt frame: IP, CS, FLAGS, one word each.
const FRAME_LEN: u16 = 6;

/// What sent the CPU through an empty vector, told by the bytes before the return address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `int n` (CD n); AH is the function number BIOS services take.
    Int { ah: u8 },
    /// `int3` (CC).
    Int3,
    /// `into` (CE).
    Into,
    /// `int1` (F1).
    Int1,
    /// No interrupt instruction before the return address: an IRQ, an exception or an NMI.
    Event,
}

/// A stop at an empty real-mode vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBiosStop {
    pub(crate) vector: u8,
    pub(crate) cause: Cause,
    /// CS:IP the vCPU was put back to (the interrupt instruction, or the interrupted or faulting
    /// one); `None` when the stack could not be read and the vCPU stays in the stub.
    pub(crate) at: Option<(u16, u16)>,
}

impl fmt::Display for NoBiosStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vector = self.vector;
        f.write_str("real-mode ")?;
        match self.cause {
            Cause::Int { ah } => write!(f, "int {vector:#04x} (AH={ah:#04x})")?,
            Cause::Int3 => f.write_str("int3")?,
            Cause::Into => f.write_str("into")?,
            Cause::Int1 => f.write_str("int1")?,
            // Digits below 10 read the same in both bases.
            Cause::Event if vector < 10 => write!(f, "vector {vector}")?,
            Cause::Event => write!(f, "vector {vector:#04x}")?,
        }
        if let (Cause::Event, Some(name)) = (self.cause, event_name(vector)) {
            write!(f, " ({name})")?;
        }
        write!(f, " but no BIOS: IVT[{vector:#04x}] was empty")?;
        if let Some((cs, ip)) = self.at {
            write!(f, " (CS:IP {cs:04x}:{ip:04x})")?;
        }
        Ok(())
    }
}

/// What arrives at `vector` in real mode: CPU exceptions, and IRQs where a PC BIOS puts the
/// 8259s (IRQ 0-7 at 0x08, IRQ 8-15 at 0x70), which overlap some exceptions.
fn event_name(vector: u8) -> Option<String> {
    const EXCEPTIONS: [&str; 20] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "", "", "", "#SS", "#GP",
        "", "", "#MF", "#AC", "#MC", "#XM",
    ];
    let exception = EXCEPTIONS
        .get(usize::from(vector))
        .filter(|name| !name.is_empty());
    let irq = match vector {
        0x08..=0x0F => Some(vector - 0x08),
        0x70..=0x77 => Some(vector - 0x70 + 8),
        _ => None,
    };
    match (irq, exception) {
        (Some(irq), Some(exception)) => Some(format!("IRQ {irq} or {exception}")),
        (Some(irq), None) => Some(format!("IRQ {irq}")),
        (None, Some(exception)) => Some(exception.to_string()),
        (None, None) => None,
    }
}

/// The cause, and how many bytes before the return address its instruction starts, from the
/// two bytes before the return address (`None`: unreadable).
fn classify(vector: u8, before: [Option<u8>; 2], ah: u8) -> (Cause, u16) {
    match before {
        [Some(0xCD), Some(n)] if n == vector => (Cause::Int { ah }, 2),
        [_, Some(0xCC)] if vector == 3 => (Cause::Int3, 1),
        [_, Some(0xCE)] if vector == 4 => (Cause::Into, 1),
        [_, Some(0xF1)] if vector == 1 => (Cause::Int1, 1),
        _ => (Cause::Event, 0),
    }
}

/// How the vCPU was seen in a stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The stub's `out` exited (KVM still holds the port exit).
    PortWrite,
    /// A debug exit (a breakpoint or a single step) at the stub; `stepped`: KVM's single step
    /// was on, so the TF in the pushed flags is KVM's, not the guest's.
    DebugExit { stepped: bool },
}

/// The vector whose stub holds linear `pc`, when the vCPU is there in real mode.
pub(crate) fn stub_vector(pc: u64, sregs: &kvm_sregs) -> Option<u8> {
    let real_mode = !Cr0Flags::from_bits_truncate(sregs.cr0).contains(Cr0Flags::PE);
    ivt::stub_vector(pc).filter(|_| real_mode)
}

/// For a vCPU in the stub of `vector`: pops the interrupt frame from `regs`/`sregs`, puts CS:IP
/// back on the interrupt instruction (or the interrupted one) and says what happened.
/// `read(linear, len)` reads guest memory as the vCPU sees it, as many bytes as it can. When
/// the stack cannot be read, the stop has no `at` and the registers are left as they were.
pub(crate) fn unwind(
    vector: u8,
    seen: Seen,
    regs: &mut kvm_regs,
    sregs: &mut kvm_sregs,
    read: impl Fn(u64, usize) -> Vec<u8>,
) -> NoBiosStop {
    let sp = regs.rsp as u16;
    let word = |k: u16| {
        let at = sregs.ss.base + u64::from(sp.wrapping_add(2 * k));
        match read(at, 2)[..] {
            [low, high] => Some(u16::from_le_bytes([low, high])),
            _ => None,
        }
    };
    let (Some(ip), Some(cs), Some(flags)) = (word(0), word(1), word(2)) else {
        log::debug!("no-BIOS stub {vector:#x}: the stack at SS:SP is unreadable");
        return NoBiosStop {
            vector,
            cause: Cause::Event,
            at: None,
        };
    };
    let code = |back: u16| (u64::from(cs) << 4) + u64::from(ip.wrapping_sub(back));
    let byte = |back| read(code(back), 1).first().copied();
    let ah = (regs.rax >> 8) as u8;
    let (cause, back) = classify(vector, [byte(2), byte(1)], ah);
    let ip = ip.wrapping_sub(back);
    regs.rip = u64::from(ip);
    regs.rsp = (regs.rsp & !0xFFFF) | u64::from(sp.wrapping_add(FRAME_LEN));
    regs.rflags = (regs.rflags & !0xFFFF) | u64::from(flags);
    if matches!(seen, Seen::DebugExit { stepped: true }) {
        regs.rflags &= !RFlags::TF.bits();
    }
    sregs.cs.selector = cs;
    sregs.cs.base = u64::from(cs) << 4;
    log::debug!("no-BIOS stub {vector:#x} reached ({seen:?}), back at {cs:04x}:{ip:04x}");
    NoBiosStop {
        vector,
        cause,
        at: Some((cs, ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(vector: u8, cause: Cause) -> String {
        NoBiosStop {
            vector,
            cause,
            at: Some((0, 0x7c0b)),
        }
        .to_string()
    }

    #[test]
    fn messages_name_the_instruction_or_the_vector() {
        assert_eq!(
            stop(0x10, Cause::Int { ah: 0x0e }),
            "real-mode int 0x10 (AH=0x0e) but no BIOS: IVT[0x10] was empty (CS:IP 0000:7c0b)"
        );
        assert_eq!(
            stop(8, Cause::Event),
            "real-mode vector 8 (IRQ 0 or #DF) but no BIOS: IVT[0x08] was empty (CS:IP 0000:7c0b)"
        );
        assert!(stop(0, Cause::Event).starts_with("real-mode vector 0 (#DE) but no BIOS"));
        assert!(stop(0x0d, Cause::Event).starts_with("real-mode vector 0x0d (IRQ 5 or #GP) "));
        assert!(stop(0x74, Cause::Event).starts_with("real-mode vector 0x74 (IRQ 12) "));
        assert!(stop(0x42, Cause::Event).starts_with("real-mode vector 0x42 but no BIOS"));
        assert!(stop(3, Cause::Int3).starts_with("real-mode int3 but no BIOS: IVT[0x03]"));
        let lost = NoBiosStop {
            vector: 9,
            cause: Cause::Event,
            at: None,
        };
        assert_eq!(
            lost.to_string(),
            "real-mode vector 9 (IRQ 1) but no BIOS: IVT[0x09] was empty"
        );
    }

    #[test]
    fn the_bytes_before_the_return_address_tell_the_cause() {
        let int = |ah| Cause::Int { ah };
        assert_eq!(
            classify(0x10, [Some(0xCD), Some(0x10)], 0x0e),
            (int(0x0e), 2)
        );
        // `int 0x13` returning to where an IRQ 0 (vector 8) would have: not this vector's int.
        assert_eq!(classify(8, [Some(0xCD), Some(0x13)], 0), (Cause::Event, 0));
        assert_eq!(classify(3, [Some(0x90), Some(0xCC)], 0), (Cause::Int3, 1));
        assert_eq!(classify(0xCC, [Some(0xCD), Some(0xCC)], 1), (int(1), 2));
        assert_eq!(classify(4, [None, Some(0xCE)], 0), (Cause::Into, 1));
        assert_eq!(classify(1, [None, Some(0xF1)], 0), (Cause::Int1, 1));
        assert_eq!(classify(8, [Some(0xFB), Some(0xF4)], 0), (Cause::Event, 0));
        assert_eq!(classify(0, [None, None], 0), (Cause::Event, 0));
    }

    /// `int 0x10` at 0000:7C09 with AH=0x0E, stepped into the stub: the frame (IP 7C0B, CS 0,
    /// FLAGS with TF) is popped and the step's TF dropped; an unreadable stack changes nothing.
    #[test]
    fn the_frame_is_popped_back_onto_the_interrupt() {
        let mut memory = vec![0u8; 0x8000];
        memory[0x7000..0x7006].copy_from_slice(&[0x0B, 0x7C, 0x00, 0x00, 0x02, 0x03]);
        memory[0x7C09..0x7C0B].copy_from_slice(&[0xCD, 0x10]);
        let read = |at: u64, len: usize| {
            let at = at as usize;
            memory
                .get(at..at + len)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        let mut regs = kvm_regs {
            rax: 0x0E41,
            rsp: 0x7000,
            rip: 0xF040,
            rflags: 0x0002,
            ..Default::default()
        };
        let mut sregs = kvm_sregs::default();
        sregs.cs.selector = 0xF000;
        sregs.cs.base = 0xF_0000;
        let stepped = Seen::DebugExit { stepped: true };
        let stop = unwind(0x10, stepped, &mut regs, &mut sregs, read);
        assert_eq!(
            stop,
            NoBiosStop {
                vector: 0x10,
                cause: Cause::Int { ah: 0x0E },
                at: Some((0, 0x7C09)),
            }
        );
        assert_eq!((regs.rip, regs.rsp, regs.rflags), (0x7C09, 0x7006, 0x0202));
        assert_eq!((sregs.cs.selector, sregs.cs.base), (0, 0));

        let mut regs = kvm_regs {
            rsp: 0xFFFE,
            ..Default::default()
        };
        let before = regs;
        let stop = unwind(8, Seen::PortWrite, &mut regs, &mut sregs, read);
        assert_eq!((stop.cause, stop.at), (Cause::Event, None));
        assert_eq!(regs, before);
    }
}
