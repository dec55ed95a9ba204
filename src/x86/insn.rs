//! What one instruction does to memory by itself, decoded with iced-x86: whether it loads a
//! segment register (and so may make the CPU set a descriptor's Accessed bit), whether it jumps
//! to itself (a spin that makes no progress by design), and which bytes it writes explicitly.
//!
//! The VMM uses this to tell a guest write from a write the CPU makes on its own, and a vCPU
//! stuck on a protected page from one spinning on purpose.

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, InstructionInfoFactory};
use iced_x86::{Formatter, GasFormatter, Mnemonic, OpAccess, OpKind, Register, UsedMemory};

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

/// What the bytes at an instruction pointer are.
#[derive(Debug, Clone)]
pub(crate) enum Decoded {
    /// One whole valid instruction.
    Valid(DecodedInsn),
    /// Not an instruction: the CPU raises #UD.
    Invalid,
    /// The bytes end before the instruction does (the rest could not be read).
    Truncated,
}

/// One memory access of an instruction: where (segment and offset), how wide, and whether it
/// writes (a read-modify-write counts as a write: the CPU checks it as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryAccess {
    pub(crate) segment: Register,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) write: bool,
}

/// The divisor of a `div`/`idiv`: a register, or memory read through [`MemoryAccess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Divisor {
    Register(Register),
    Memory(MemoryAccess),
}

/// Who may run an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// CPL 0 only, else #GP(0): `hlt`, `lgdt`, `mov %cr0`, `wrmsr`, …
    Ring0,
    /// CPL <= IOPL, else #GP(0): `cli`, `sti`.
    Iopl,
}

/// Where a segment-register load takes its selector from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelectorSource {
    /// A general register (`mov %ax,%ds`).
    Register(Register),
    /// The instruction's (first) memory access: `mov (%rax),%ds`, `pop %ds`.
    Memory,
}

/// Operand size in bits the decoder needs for `mode`.
fn bitness(mode: CpuMode) -> u32 {
    match mode {
        CpuMode::Long64 => 64,
        CpuMode::Protected32 | CpuMode::Compatibility => 32,
        CpuMode::Real | CpuMode::Protected16 | CpuMode::Virtual8086 => 16,
    }
}

/// Builds iced-x86's decoder tables, which it otherwise builds at the first decode (~0.5 ms
/// of allocations on a nested host): a gdb session decodes at its first step.
pub(crate) fn warm_decoder() {
    let nop = [0x90];
    let _ = Decoder::with_ip(32, &nop, 0, DecoderOptions::NONE).decode();
}

impl DecodedInsn {
    /// Decodes the instruction at the start of `bytes`, fetched at `ip` (RIP, not linear), in
    /// `mode`; `None` when the bytes are not one whole valid instruction.
    pub(crate) fn decode(bytes: &[u8], ip: u64, mode: CpuMode) -> Option<Self> {
        let mut decoder = Decoder::with_ip(bitness(mode), bytes, ip, DecoderOptions::NONE);
        let insn = decoder.decode();
        (!insn.is_invalid()).then_some(DecodedInsn { insn })
    }

    /// Decodes the instruction at the start of `bytes`, telling an invalid opcode (#UD) from
    /// bytes that end too soon.
    pub(crate) fn decode_checked(bytes: &[u8], ip: u64, mode: CpuMode) -> Decoded {
        let mut decoder = Decoder::with_ip(bitness(mode), bytes, ip, DecoderOptions::NONE);
        let insn = decoder.decode();
        match decoder.last_error() {
            DecoderError::None => Decoded::Valid(DecodedInsn { insn }),
            DecoderError::NoMoreBytes => Decoded::Truncated,
            _ => Decoded::Invalid,
        }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.insn.len()
    }

    /// AT&T syntax, as gdb shows it: `movl $0x1,(%rax)`.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        GasFormatter::new().format(&self.insn, &mut out);
        out
    }

    /// `ud0`/`ud1`/`ud2`: valid encodings whose whole purpose is #UD.
    pub(crate) fn is_undefined_on_purpose(&self) -> bool {
        matches!(
            self.insn.mnemonic(),
            Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2
        )
    }

    /// Whether it is privileged, and how (SDM vol. 3, §2.8 and §5.9; `in`/`out` and the
    /// I/O bitmap are not modelled).
    pub(crate) fn privilege(&self) -> Option<Privilege> {
        let moves_control_register = matches!(
            self.insn.code(),
            Code::Mov_r32_cr
                | Code::Mov_r64_cr
                | Code::Mov_r32_dr
                | Code::Mov_r64_dr
                | Code::Mov_cr_r32
                | Code::Mov_cr_r64
                | Code::Mov_dr_r32
                | Code::Mov_dr_r64
        );
        let ring0 = moves_control_register
            || matches!(
                self.insn.mnemonic(),
                Mnemonic::Hlt
                    | Mnemonic::Lgdt
                    | Mnemonic::Lidt
                    | Mnemonic::Lldt
                    | Mnemonic::Ltr
                    | Mnemonic::Lmsw
                    | Mnemonic::Clts
                    | Mnemonic::Invd
                    | Mnemonic::Wbinvd
                    | Mnemonic::Invlpg
                    | Mnemonic::Rdmsr
                    | Mnemonic::Wrmsr
                    | Mnemonic::Swapgs
            );
        match self.insn.mnemonic() {
            _ if ring0 => Some(Privilege::Ring0),
            Mnemonic::Cli | Mnemonic::Sti => Some(Privilege::Iopl),
            _ => None,
        }
    }

    /// A segment-register load by `mov` or `pop`: the register loaded and where the selector
    /// comes from. (`lds`/`lss`/far transfers are not covered.)
    pub(crate) fn segment_load(&self) -> Option<(Register, SelectorSource)> {
        use Code::*;
        let popped = match self.insn.code() {
            Popw_ES | Popd_ES => Register::ES,
            Popw_SS | Popd_SS => Register::SS,
            Popw_DS | Popd_DS => Register::DS,
            Popw_FS | Popd_FS | Popq_FS => Register::FS,
            Popw_GS | Popd_GS | Popq_GS => Register::GS,
            Mov_Sreg_rm16 | Mov_Sreg_r32m16 | Mov_Sreg_r64m16 => {
                let source = match self.insn.op1_kind() {
                    OpKind::Register => SelectorSource::Register(self.insn.op1_register()),
                    _ => SelectorSource::Memory,
                };
                return Some((self.insn.op0_register(), source));
            }
            _ => return None,
        };
        Some((popped, SelectorSource::Memory))
    }

    /// `int n` and `int3`: the vector of the software interrupt it raises (its gate's DPL is
    /// checked against CPL).
    pub(crate) fn software_interrupt(&self) -> Option<u8> {
        match self.insn.code() {
            Code::Int3 => Some(3),
            Code::Int_imm8 => Some(self.insn.immediate8()),
            _ => None,
        }
    }

    /// Every memory access it makes, in the decoder's operand order (stack pushes and pops
    /// included), with offsets from `register` (segment registers are not added: the caller
    /// applies segmentation). `None` when an address cannot be computed.
    pub(crate) fn memory_accesses(
        &self,
        register: impl Fn(Register) -> u64,
    ) -> Option<Vec<MemoryAccess>> {
        let mut factory = InstructionInfoFactory::new();
        let info = factory.info(&self.insn);
        let mut accesses = Vec::new();
        for used in info.used_memory() {
            let Some(write) = writes(used.access()) else {
                continue;
            };
            let offset = used.virtual_address(0, |reg, _, _| {
                Some(if reg.is_segment_register() {
                    0
                } else {
                    register(reg)
                })
            })?;
            accesses.push(MemoryAccess {
                segment: used.segment(),
                offset,
                size: self.element_size(used).max(1),
                write,
            });
        }
        Some(accesses)
    }

    /// The divisor of `div`/`idiv`, with whether the division is signed; `None` for other
    /// instructions.
    pub(crate) fn divisor(&self, register: impl Fn(Register) -> u64) -> Option<(Divisor, bool)> {
        let signed = match self.insn.mnemonic() {
            Mnemonic::Div => false,
            Mnemonic::Idiv => true,
            _ => return None,
        };
        let divisor = match self.insn.op0_kind() {
            OpKind::Register => Divisor::Register(self.insn.op0_register()),
            _ => Divisor::Memory(*self.memory_accesses(register)?.first()?),
        };
        Some((divisor, signed))
    }

    /// Operand size of `div`/`idiv` in bytes (1, 2, 4 or 8).
    pub(crate) fn divisor_bytes(&self) -> u64 {
        match self.insn.op0_kind() {
            OpKind::Register => self.insn.op0_register().size() as u64,
            _ => self.insn.memory_size().size() as u64,
        }
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
            if writes(used.access()) != Some(true) {
                continue;
            }
            let linear = used.virtual_address(0, |reg, _, _| Some(register(reg)))?;
            let element = self.element_size(used);
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

    /// Bytes of one access (string instructions name their element size on the instruction
    /// only).
    fn element_size(&self, used: &UsedMemory) -> u64 {
        match used.memory_size().size() {
            0 => self.insn.memory_size().size() as u64,
            size => size as u64,
        }
    }

    /// Carries a `rep` prefix: each iteration is a step of its own.
    fn repeats(&self) -> bool {
        self.insn.has_rep_prefix() || self.insn.has_repe_prefix() || self.insn.has_repne_prefix()
    }
}

/// Whether a memory operand's access writes (a read-modify-write does); `None` when it
/// touches no memory (`lea`).
fn writes(access: OpAccess) -> Option<bool> {
    match access {
        OpAccess::Read | OpAccess::CondRead => Some(false),
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite => {
            Some(true)
        }
        _ => None,
    }
}

/// Whether `div`/`idiv` of `dividend` (twice `bytes` wide: AX, DX:AX, EDX:EAX, RDX:RAX) by
/// `divisor` raises #DE: a zero divisor, or a quotient that does not fit in `bytes`.
pub(crate) fn divide_faults(dividend: u128, divisor: u64, bytes: u64, signed: bool) -> bool {
    let bits = (bytes * 8).clamp(8, 64) as u32;
    let mask = |v: u128, width: u32| v & (u128::MAX >> (128 - width));
    let divisor = mask(u128::from(divisor), bits);
    let dividend = mask(dividend, bits * 2);
    if divisor == 0 {
        return true;
    }
    if !signed {
        return dividend / divisor > mask(u128::MAX, bits);
    }
    let extend = |v: u128, width: u32| ((v << (128 - width)) as i128) >> (128 - width);
    let quotient = extend(dividend, bits * 2).checked_div(extend(divisor, bits));
    let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
    quotient.is_none_or(|q| q < min || q > max)
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
    fn checked_decoding_and_accesses() {
        let decode = |bytes: &[u8]| DecodedInsn::decode_checked(bytes, 0x1000, CpuMode::Long64);
        assert!(
            matches!(decode(&[0x0F, 0x0B]), Decoded::Valid(ref i) if i.is_undefined_on_purpose())
        );
        assert!(matches!(decode(&[0x06, 0x90]), Decoded::Invalid)); // push es: not in 64-bit mode
        assert!(matches!(decode(&[0xC7, 0x00, 0x01]), Decoded::Truncated));
        let Decoded::Valid(mov) = decode(&[0xC7, 0x00, 0x01, 0, 0, 0]) else {
            panic!("movl $1, (%rax)")
        };
        assert_eq!(mov.text(), "movl $1,(%rax)");
        assert_eq!(mov.len(), 6);
        let regs = |r: Register| if r == Register::RAX { 0x4000 } else { 0 };
        assert_eq!(
            mov.memory_accesses(regs).unwrap(),
            vec![MemoryAccess {
                segment: Register::DS,
                offset: 0x4000,
                size: 4,
                write: true
            }]
        );
        let div = long(&[0x48, 0xF7, 0xF1]); // div %rcx
        assert_eq!(
            div.divisor(regs),
            Some((Divisor::Register(Register::RCX), false))
        );
        assert_eq!(div.divisor_bytes(), 8);
        assert_eq!(long(&[0xcd, 0x80]).software_interrupt(), Some(0x80));
        assert_eq!(long(&[0xcc]).software_interrupt(), Some(3));
        assert_eq!(long(&[0xf4]).privilege(), Some(Privilege::Ring0)); // hlt
        assert_eq!(
            long(&[0x0f, 0x22, 0xc0]).privilege(),
            Some(Privilege::Ring0)
        ); // mov %rax,%cr0
        assert_eq!(long(&[0xfa]).privilege(), Some(Privilege::Iopl)); // cli
        assert_eq!(long(&[0x90]).privilege(), None);
        assert_eq!(
            long(&[0x8e, 0xd8]).segment_load(), // mov %eax,%ds
            Some((Register::DS, SelectorSource::Register(Register::EAX)))
        );
        let pop_ds = DecodedInsn::decode(&[0x1f], 0, CpuMode::Protected32).unwrap();
        assert_eq!(
            pop_ds.segment_load(),
            Some((Register::DS, SelectorSource::Memory))
        );
    }

    #[test]
    fn divide_errors() {
        assert!(divide_faults(10, 0, 4, false));
        assert!(!divide_faults(10, 3, 4, false));
        assert!(divide_faults(0x1_0000_0000, 1, 4, false), "quotient 2^32");
        assert!(divide_faults(0x8000, 0xff, 1, true), "-32768 / -1");
        assert!(!divide_faults(0xfffc, 2, 1, true), "-4 / 2");
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
