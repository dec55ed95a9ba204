//! What one instruction does to memory by itself, decoded with iced-x86: whether it loads a
//! segment register (and so may make the CPU set a descriptor's Accessed bit), whether it jumps
//! to itself (a spin that makes no progress by design), and which bytes it writes explicitly.
//!
//! The VMM uses this to tell a guest write from a write the CPU makes on its own, and a vCPU
//! stuck on a protected page from one spinning on purpose.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, InstructionInfoFactory, OpAccess};
use iced_x86::{Mnemonic, Register};

use crate::x86::cpu::CpuMode;

/// One decoded instruction and the mode it was decoded in.
#[derive(Debug, Clone)]
pub(crate) struct DecodedInsn {
    insn: Instruction,
}

/// A byte range an instruction writes: linear start and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WrittenRange {
    pub(crate) linear: u64,
    pub(crate) len: u64,
}

/// Operand size in bits the decoder needs for `mode`.
fn bitness(mode: CpuMode) -> u32 {
    match mode {
        CpuMode::Long64 => 64,
        CpuMode::Protected32 | CpuMode::Compatibility => 32,
        CpuMode::Real | CpuMode::Protected16 | CpuMode::Virtual8086 => 16,
    }
}

impl DecodedInsn {
    /// Decodes the instruction at the start of `bytes`, fetched at `ip` (RIP, not linear), in
    /// `mode`; `None` when the bytes are not one whole valid instruction.
    pub(crate) fn decode(bytes: &[u8], ip: u64, mode: CpuMode) -> Option<Self> {
        let mut decoder = Decoder::with_ip(bitness(mode), bytes, ip, DecoderOptions::NONE);
        let insn = decoder.decode();
        (!insn.is_invalid()).then_some(DecodedInsn { insn })
    }

    /// Loads a segment register from a descriptor table: the CPU then sets the descriptor's
    /// Accessed bit (or a TSS's busy bit) if it is clear — a write no instruction operand names.
    pub(crate) fn loads_segment(&self) -> bool {
        // `mov sreg, …` and `pop sreg`: the segment register is the destination.
        let writes_sreg = self.insn.op_count() > 0
            && self.insn.op0_kind() == iced_x86::OpKind::Register
            && self.insn.op0_register().is_segment_register();
        writes_sreg
            || matches!(
                self.insn.mnemonic(),
                Mnemonic::Lds
                    | Mnemonic::Les
                    | Mnemonic::Lfs
                    | Mnemonic::Lgs
                    | Mnemonic::Lss
                    | Mnemonic::Ltr
                    | Mnemonic::Lldt
                    | Mnemonic::Iret
                    | Mnemonic::Iretd
                    | Mnemonic::Iretq
                    | Mnemonic::Retf
                    | Mnemonic::Sysexit
                    | Mnemonic::Sysexitq
            )
            || self.insn.is_jmp_far()
            || self.insn.is_jmp_far_indirect()
            || self.insn.is_call_far()
            || self.insn.is_call_far_indirect()
    }

    /// A jump whose target is the instruction itself (`jmp $`): it never advances, by design.
    pub(crate) fn jumps_to_itself(&self) -> bool {
        (self.insn.is_jmp_short_or_near() || self.insn.is_jcc_short_or_near())
            && self.insn.near_branch_target() == self.insn.ip()
    }

    /// `iret`/`iretd`/`iretq`: the bytes of one slot of the frame it pops (2, 4 or 8).
    pub(crate) fn iret_slot_bytes(&self) -> Option<u64> {
        match self.insn.mnemonic() {
            Mnemonic::Iret => Some(2),
            Mnemonic::Iretd => Some(4),
            Mnemonic::Iretq => Some(8),
            _ => None,
        }
    }

    /// `pause`, `hlt` and the like: waiting is what it is for.
    pub(crate) fn waits(&self) -> bool {
        matches!(self.insn.code(), Code::Pause | Code::Hlt)
    }

    /// The memory this instruction writes through its operands (stack pushes and string
    /// stores included; a repeated store: every element RCX allows, in either direction), as
    /// linear ranges; `register` gives a register's value (segment registers: their base).
    /// `None` when an address cannot be computed.
    pub(crate) fn explicit_writes(
        &self,
        register: impl Fn(Register) -> u64,
    ) -> Option<Vec<WrittenRange>> {
        let mut factory = InstructionInfoFactory::new();
        let info = factory.info(&self.insn);
        let mut ranges = Vec::new();
        for used in info.used_memory() {
            let writes = matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            if !writes {
                continue;
            }
            let linear = used.virtual_address(0, |reg, _, _| Some(register(reg)))?;
            // String instructions name their element size on the instruction only.
            let element = match used.memory_size().size() {
                0 => self.insn.memory_size().size() as u64,
                size => size as u64,
            };
            ranges.push(if self.repeats() {
                // Up to RCX elements, upwards or (DF=1) downwards: both sides count.
                let count = register(Register::RCX).max(1);
                let reach = element.saturating_mul(count);
                WrittenRange {
                    linear: linear.saturating_sub(reach - element),
                    len: reach.saturating_mul(2),
                }
            } else {
                WrittenRange {
                    linear,
                    len: element,
                }
            });
        }
        Some(ranges)
    }

    /// Carries a `rep` prefix: each iteration is a step of its own.
    fn repeats(&self) -> bool {
        self.insn.has_rep_prefix() || self.insn.has_repe_prefix() || self.insn.has_repne_prefix()
    }
}

/// Whether 32-bit code anywhere in `image` turns on EFER.LME: `mov ecx, 0xC0000080` (IA32_EFER)
/// followed, within a few instructions before its `wrmsr`, by an `or`/`bts` that sets bit 8 of
/// EAX (`or eax, 0x100`, `or ah, 1`, `bts eax, 8`). How a kernel that switches to long mode by
/// itself is told from one that turns on legacy paging.
pub(crate) fn code_sets_efer_lme(image: &[u8]) -> bool {
    const MOV_ECX_EFER: [u8; 5] = [0xB9, 0x80, 0x00, 0x00, 0xC0];
    const LOOKAHEAD: usize = 8;
    image
        .windows(MOV_ECX_EFER.len())
        .enumerate()
        .filter(|(_, w)| *w == MOV_ECX_EFER)
        .any(|(at, _)| {
            let mut decoder = Decoder::with_ip(32, &image[at..], at as u64, DecoderOptions::NONE);
            let mut lme = false;
            for insn in decoder.iter().take(LOOKAHEAD) {
                if insn.is_invalid() {
                    return false;
                }
                lme |= sets_lme_bit(&insn);
                if insn.code() == Code::Wrmsr {
                    return lme;
                }
            }
            false
        })
}

/// `or eax, imm` with bit 8, `or ah, imm` with bit 0, or `bts eax, 8`.
fn sets_lme_bit(insn: &Instruction) -> bool {
    let imm = || insn.try_immediate(1).unwrap_or(0);
    match (insn.mnemonic(), insn.op0_register()) {
        (Mnemonic::Or, Register::EAX) => imm() & 0x100 != 0,
        (Mnemonic::Or, Register::AH) => imm() & 1 != 0,
        (Mnemonic::Bts, Register::EAX) => imm() == 8,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(bytes: &[u8]) -> DecodedInsn {
        DecodedInsn::decode(bytes, 0x1000, CpuMode::Long64).unwrap()
    }

    #[test]
    fn segment_loads_are_recognised() {
        assert!(long(&[0x48, 0xCB]).loads_segment()); //            lretq
        assert!(long(&[0x8E, 0xD8]).loads_segment()); //            mov ds, ax
        assert!(long(&[0x0F, 0x00, 0xD8]).loads_segment()); //      ltr ax
        assert!(long(&[0x48, 0xCF]).loads_segment()); //            iretq
        assert!(long(&[0xFF, 0x28]).loads_segment()); //            ljmp *(%rax)
        let ljmp32 = [0xEA, 0x10, 0x00, 0x10, 0x00, 0x08, 0x00]; // ljmp $0x08, $0x100010
        assert!(DecodedInsn::decode(&ljmp32, 0x100000, CpuMode::Protected32)
            .unwrap()
            .loads_segment());
        assert!(!long(&[0x8C, 0xD8]).loads_segment()); //           mov ax, ds (a store)
        assert!(!long(&[0x89, 0x07]).loads_segment()); //           mov [rdi], eax
        assert!(!long(&[0xC3]).loads_segment()); //                 ret
    }

    #[test]
    fn efer_lme_writes_are_found() {
        let efer = [0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32]; // mov ecx, EFER; rdmsr
        let with = |set: &[u8]| [&[0x90][..], &efer, set, &[0x0F, 0x30]].concat();
        assert!(code_sets_efer_lme(&with(&[0x0D, 0x00, 0x01, 0, 0]))); // or eax, 0x100
        assert!(code_sets_efer_lme(&with(&[0x80, 0xCC, 0x01]))); //      or ah, 1
        assert!(code_sets_efer_lme(&with(&[0x0F, 0xBA, 0xE8, 0x08]))); // bts eax, 8
                                                                       // EFER.NXE only (bit 11), as the `pae` test kernel writes it.
        assert!(!code_sets_efer_lme(&with(&[0x0D, 0x00, 0x08, 0, 0])));
        assert!(!code_sets_efer_lme(&[0x0F, 0x22, 0xC0]));
    }

    #[test]
    fn spins_and_waits() {
        assert!(long(&[0xEB, 0xFE]).jumps_to_itself()); //          jmp $
        assert!(long(&[0xE9, 0xFB, 0xFF, 0xFF, 0xFF]).jumps_to_itself());
        assert!(!long(&[0xEB, 0x00]).jumps_to_itself());
        assert!(long(&[0xF3, 0x90]).waits()); //                     pause
        assert!(long(&[0xF4]).waits()); //                           hlt
        assert_eq!(long(&[0x48, 0xCF]).iret_slot_bytes(), Some(8)); // iretq
        assert_eq!(long(&[0xCF]).iret_slot_bytes(), Some(4)); //       iretd
        let real = DecodedInsn::decode(&[0xCF], 0, CpuMode::Real).unwrap();
        assert_eq!(real.iret_slot_bytes(), Some(2));
        assert_eq!(long(&[0xC3]).iret_slot_bytes(), None);
    }

    #[test]
    fn explicit_writes_have_addresses() {
        let regs = |reg: Register| match reg {
            Register::RDI => 0x5000,
            Register::RSP => 0x8000,
            _ => 0,
        };
        // mov [rdi+8], eax
        let w = long(&[0x89, 0x47, 0x08]).explicit_writes(regs).unwrap();
        assert_eq!(
            w,
            vec![WrittenRange {
                linear: 0x5008,
                len: 4
            }]
        );
        // push rax: 8 bytes below RSP
        let w = long(&[0x50]).explicit_writes(regs).unwrap();
        assert_eq!(
            w,
            vec![WrittenRange {
                linear: 0x7ff8,
                len: 8
            }]
        );
        // mov eax, [rdi]: no write
        assert!(long(&[0x8B, 0x07])
            .explicit_writes(regs)
            .unwrap()
            .is_empty());
        // lretq writes nothing through its operands (the Accessed bit is the CPU's own write)
        assert!(long(&[0x48, 0xCB])
            .explicit_writes(regs)
            .unwrap()
            .is_empty());
        assert!(long(&[0xF3, 0x48, 0xAB]).repeats()); // rep stosq
    }
}
