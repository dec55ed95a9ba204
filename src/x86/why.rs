//! Why a stopped CPU died (or would fault next): the instruction at CS:RIP, its fetch and each
//! memory access through segmentation and the page walker, the first fault, then the delivery
//! of that fault ([`super::delivery`]) and of each fault its delivery raises, escalated as the
//! CPU does (#DF, then shutdown: a triple fault).
//!
//! One line per step; what the saved state cannot prove is said in a line, not guessed.

use iced_x86::Register;

use super::cpu::{CpuMode, Cr4Flags, PagingMode, RFlags};
use super::delivery::{deliver, segment_reason, walk_failure, CpuState, Event, Fault, Outcome};
use super::exception::{Escalation, Vector};
use super::insn::{
    divide_faults, Decoded, DecodedInsn, Divisor, MemoryAccess, Privilege, SelectorSource,
};
use super::paging::{translate, Access, LinearMemory, PagedMemory};
use super::phys::PhysMemory;
use super::segment::{
    descriptor_for, logical_to_linear, Descriptor, SegAccess, SegmentCache, SegmentError,
    SegmentRegister, SegmentSelector,
};

/// A stopped vCPU: its state, general registers and CR2 (if saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoppedCpu {
    pub(crate) state: CpuState,
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15 (the decoder's register order).
    pub(crate) gprs: [u64; 16],
    pub(crate) cr2: Option<u64>,
}

/// Bytes shown of an invalid instruction (its length is unknown).
const SHOWN_INVALID_BYTES: usize = 4;
/// Deliveries followed before giving up (escalation ends any chain in five).
const MAX_DELIVERIES: usize = 8;
/// Times the same handler may fault again at its first fetch before the chain is cut short.
const MAX_HANDLER_REPEATS: usize = 1 << 16;

/// The explanation, one line per step.
pub(crate) fn explain<M: PhysMemory + ?Sized>(mem: &M, cpu: &StoppedCpu) -> Vec<String> {
    let mut lines = vec![header(cpu)];
    let Some((first, fault)) = first_event(mem, cpu, &mut lines) else {
        return lines;
    };
    let faults = chain(mem, cpu.state.clone(), first, fault, &mut lines);
    lines.extend(cr2_agreement(cpu.cr2, &faults));
    lines
}

/// `state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP …`.
fn header(cpu: &StoppedCpu) -> String {
    let s = &cpu.state;
    let mut line = format!(
        "state: {}, {}, CPL {}, CS:RIP {:#06x}:{:#x}, SS:RSP {:#06x}:{:#x}",
        s.mode(),
        s.regs.paging_mode(),
        s.cpl(),
        s.seg(SegmentRegister::Cs).selector.0,
        s.rip,
        s.seg(SegmentRegister::Ss).selector.0,
        s.rsp
    );
    if let Some(cr2) = cpu.cr2 {
        line.push_str(&format!(", CR2 {cr2:#x}"));
    }
    line
}

/// The instruction at CS:RIP: fetch, decode, its accesses; the event it raises first (a fault,
/// or the software interrupt of `int n`), or `None` (with the reason in `lines`) when it
/// raises none the model can prove. A fault comes with the event.
fn first_event<M: PhysMemory + ?Sized>(
    mem: &M,
    cpu: &StoppedCpu,
    lines: &mut Vec<String>,
) -> Option<(Event, Option<Fault>)> {
    let mut steps = Vec::new();
    let result = Instruction { mem, cpu }.check(&mut steps);
    lines.push(format!(
        "instruction at {:#06x}:{:#x}:",
        cpu.state.seg(SegmentRegister::Cs).selector.0,
        cpu.state.rip
    ));
    lines.extend(steps.into_iter().map(indent));
    match result {
        Ok(Some(vector)) => {
            lines.push(format!("  -> software interrupt {vector:#04x}"));
            let event = Event {
                vector: Vector(vector),
                error_code: None,
                software: true,
            };
            Some((event, None))
        }
        Ok(None) => {
            lines.push(
                "  nothing in this instruction faults: the state does not show the first fault (it came from an interrupt, a breakpoint or an earlier instruction)"
                    .into(),
            );
            None
        }
        Err(Outcome::Faults(fault)) => {
            lines.push(format!("  -> {fault}"));
            Some((Event::from_fault(&fault), Some(fault)))
        }
        Err(Outcome::Unknown(why)) => {
            lines.push(format!("  not proven: {why}"));
            None
        }
        Err(_) => None,
    }
}

fn indent(line: String) -> String {
    format!("  {line}")
}

/// The instruction's checks, in the CPU's order.
struct Instruction<'a, M: ?Sized> {
    mem: &'a M,
    cpu: &'a StoppedCpu,
}

type Check<T> = Result<T, Outcome>;

impl<M: PhysMemory + ?Sized> Instruction<'_, M> {
    fn state(&self) -> &CpuState {
        &self.cpu.state
    }

    fn user(&self) -> bool {
        self.state().cpl() == 3
    }

    fn check(&self, steps: &mut Vec<String>) -> Check<Option<u8>> {
        let insn = self.fetch_and_decode(steps)?;
        self.privilege(&insn, steps)?;
        let accesses = insn
            .memory_accesses(|r| self.register(r))
            .ok_or_else(|| Outcome::Unknown("an operand's address cannot be computed".into()))?;
        for access in &accesses {
            self.memory_access(access, steps)?;
        }
        self.segment_load(&insn, &accesses, steps)?;
        self.divide(&insn, steps)?;
        Ok(insn.software_interrupt())
    }

    /// CS limit and page of each byte of the instruction (fetches), then iced-x86's decoding.
    fn fetch_and_decode(&self, steps: &mut Vec<String>) -> Check<DecodedInsn> {
        let linear = self.code_linear(1, steps)?;
        self.fetch_page(linear, steps)?;
        let mut bytes = [0u8; 15];
        let (read, _) =
            PagedMemory::new(self.mem, self.state().regs).read_prefix(linear, &mut bytes);
        let bytes = &bytes[..read];
        let insn = match DecodedInsn::decode_checked(bytes, self.state().rip, self.state().mode()) {
            Decoded::Valid(insn) => insn,
            Decoded::Invalid => {
                steps.push(format!(
                    "bytes {}: iced-x86 decodes no valid instruction: invalid opcode",
                    hex_bytes(&bytes[..bytes.len().min(SHOWN_INVALID_BYTES)])
                ));
                return Err(Outcome::Faults(Fault::new(Vector::UD, 0)));
            }
            Decoded::Truncated => {
                return Err(Outcome::Unknown(format!(
                    "the instruction's bytes {} end at unreadable memory",
                    hex_bytes(bytes)
                )))
            }
        };
        steps.push(format!(
            "{} ({})",
            insn.text(),
            hex_bytes(&bytes[..insn.len()])
        ));
        let last = linear.wrapping_add(insn.len() as u64 - 1);
        if last & !0xfff != linear & !0xfff {
            self.code_linear(insn.len() as u64, steps)?;
            self.fetch_page(last, steps)?;
        }
        if insn.is_undefined_on_purpose() {
            steps.push("an undefined instruction by definition: invalid opcode".into());
            return Err(Outcome::Faults(Fault::new(Vector::UD, 0)));
        }
        Ok(insn)
    }

    /// CS:RIP to linear for a fetch of `len` bytes (CS limit; canonical in 64-bit mode).
    fn code_linear(&self, len: u64, steps: &mut Vec<String>) -> Check<u64> {
        let s = self.state();
        let cs = s.seg(SegmentRegister::Cs);
        logical_to_linear(
            s.mode(),
            &s.regs,
            SegmentRegister::Cs,
            cs,
            s.rip,
            len,
            SegAccess::Execute,
        )
        .map_err(|e| {
            steps.push(format!("fetch at CS:{:#x}: {}", s.rip, segment_reason(&e)));
            Outcome::Faults(segment_fault(&e))
        })
    }

    fn fetch_page(&self, linear: u64, steps: &mut Vec<String>) -> Check<()> {
        let access = Access::fetch(self.user());
        self.page(linear, access, steps)
    }

    /// One access through the walker: a line when it is allowed, the levels and the fault
    /// when not.
    fn page(&self, linear: u64, access: Access, steps: &mut Vec<String>) -> Check<()> {
        let regs = &self.state().regs;
        match translate(self.mem, regs, linear, access) {
            Ok(_) if regs.paging_mode() == PagingMode::None => {
                steps.push(format!(
                    "{access}: paging off: linear {linear:#x} = physical"
                ));
                Ok(())
            }
            Ok(t) => {
                steps.push(format!("{access}: {t}"));
                Ok(())
            }
            Err(e) => Err(walk_failure(steps, &e, access, regs)),
        }
    }

    /// The linear address of `m` through `seg` (the segment checks for `access`).
    fn linear(
        &self,
        seg: SegmentRegister,
        m: &MemoryAccess,
        access: SegAccess,
    ) -> Result<u64, SegmentError> {
        let s = self.state();
        logical_to_linear(s.mode(), &s.regs, seg, s.seg(seg), m.offset, m.size, access)
    }

    /// One memory operand: logical -> linear (segment checks) -> physical (the walk).
    fn memory_access(&self, m: &MemoryAccess, steps: &mut Vec<String>) -> Check<()> {
        let s = self.state();
        let Some(seg) = segment_register(m.segment) else {
            return Err(Outcome::Unknown(format!(
                "operand segment {:?} is not modelled",
                m.segment
            )));
        };
        let kind = if m.write { "write" } else { "read" };
        let seg_access = if m.write {
            SegAccess::Write
        } else {
            SegAccess::Read
        };
        let linear = self.linear(seg, m, seg_access).map_err(|e| {
            steps.push(format!(
                "{kind} of {} bytes at {seg}:{:#x}: {}",
                m.size,
                m.offset,
                segment_reason(&e)
            ));
            Outcome::Faults(segment_fault(&e))
        })?;
        steps.push(format!(
            "{kind} of {} bytes at {seg}:{:#x} -> linear {linear:#x}",
            m.size, m.offset
        ));
        let ac = s.rflags & RFlags::AC.bits() != 0;
        let access = if m.write {
            Access::write(self.user())
        } else {
            Access::read(self.user())
        }
        .with_eflags_ac(ac);
        self.page(linear, access, steps)?;
        let last = linear.wrapping_add(m.size - 1);
        if last & !0xfff != linear & !0xfff {
            self.page(last & !0xfff, access, steps)?;
        }
        Ok(())
    }

    /// A privileged instruction above its privilege level raises #GP(0) (`cli`/`sti` at CPL 3
    /// with CR4.PVI change VIF instead).
    fn privilege(&self, insn: &DecodedInsn, steps: &mut Vec<String>) -> Check<()> {
        let s = self.state();
        let cpl = s.cpl();
        let iopl = (s.rflags & RFlags::IOPL.bits()) >> 12;
        let pvi = cpl == 3 && s.regs.cr4.contains(Cr4Flags::PVI);
        let denied = match insn.privilege() {
            Some(Privilege::Ring0) if cpl > 0 => format!("a CPL 0 instruction at CPL {cpl}"),
            Some(Privilege::Iopl) if u64::from(cpl) > iopl && !pvi => {
                format!("CPL {cpl} > IOPL {iopl}")
            }
            _ => return Ok(()),
        };
        steps.push(format!("{denied}: general protection"));
        Err(Outcome::Faults(Fault::new(Vector::GP, 0)))
    }

    /// `mov …,%sreg` and `pop %sreg` in protected or long mode: the selector's descriptor and
    /// the checks of a segment load (SDM vol. 2, MOV and POP).
    fn segment_load(
        &self,
        insn: &DecodedInsn,
        accesses: &[MemoryAccess],
        steps: &mut Vec<String>,
    ) -> Check<()> {
        let Some((reg, source)) = insn.segment_load() else {
            return Ok(());
        };
        let mode = self.state().mode();
        let protected = mode.is_protected_segmentation() || mode == CpuMode::Long64;
        let Some(seg) = segment_register(reg).filter(|_| protected) else {
            return Ok(());
        };
        let value = match (source, accesses.first()) {
            (SelectorSource::Register(r), _) => self.register(r),
            (SelectorSource::Memory, Some(m)) => self.memory_value(m)?,
            (SelectorSource::Memory, None) => return Ok(()),
        };
        let selector = SegmentSelector(value as u16);
        steps.push(format!("loads {seg} with selector {selector}"));
        self.selector_checks(seg, selector, steps)
    }

    /// The checks of loading `selector` into `seg`: its descriptor's type, privilege, P.
    fn selector_checks(
        &self,
        seg: SegmentRegister,
        selector: SegmentSelector,
        steps: &mut Vec<String>,
    ) -> Check<()> {
        let s = self.state();
        let cpl = s.cpl();
        let stack = seg == SegmentRegister::Ss;
        let fault =
            |vector, code: u16| Err(Outcome::Faults(Fault::new(vector, u32::from(code & !3))));
        if selector.is_null() {
            if !stack || (s.mode() == CpuMode::Long64 && cpl < 3) {
                steps.push(format!("a null selector: {seg} becomes unusable"));
                return Ok(());
            }
            steps.push("a null selector cannot be loaded into SS".into());
            return fault(Vector::GP, 0);
        }
        let mem = PagedMemory::new(self.mem, s.regs);
        let long = s.regs.long_mode_active();
        let d = match descriptor_for(&mem, s.gdtr, &s.ldtr, selector, long) {
            Ok(Descriptor::Segment(d)) => d,
            Ok(other) => {
                steps.push(format!("{other}: not a code or data segment"));
                return fault(Vector::GP, selector.0);
            }
            Err(SegmentError::Unreadable { addr, .. }) => {
                self.page(addr, Access::read(false), steps)?;
                return Err(Outcome::Unknown(format!(
                    "the descriptor at {addr:#x} cannot be read"
                )));
            }
            Err(e) => {
                steps.push(e.to_string());
                return fault(Vector::GP, selector.0);
            }
        };
        steps.push(format!("descriptor: {}", Descriptor::Segment(d)));
        let cache = SegmentCache::from_descriptor(selector, d);
        let (allowed, rule) = if stack {
            let writable_data = cache.s && !cache.is_code() && cache.type_ & 2 != 0;
            (
                writable_data && selector.rpl() == cpl && d.dpl() == cpl,
                format!("SS needs a writable data segment with RPL = DPL = CPL {cpl}"),
            )
        } else {
            let readable = !cache.is_code() || cache.type_ & 2 != 0;
            let conforming = cache.is_code() && cache.type_ & 4 != 0;
            let privilege = conforming || (d.dpl() >= cpl && d.dpl() >= selector.rpl());
            (
                cache.s && readable && privilege,
                format!(
                    "{seg} needs a data or readable code segment with DPL >= CPL {cpl} and RPL {}",
                    selector.rpl()
                ),
            )
        };
        if !allowed {
            steps.push(rule);
            return fault(Vector::GP, selector.0);
        }
        if !d.present() {
            steps.push("segment not present".into());
            return fault(if stack { Vector::SS } else { Vector::NP }, selector.0);
        }
        Ok(())
    }

    /// `div`/`idiv`: a zero divisor or a quotient too wide raises #DE.
    fn divide(&self, insn: &DecodedInsn, steps: &mut Vec<String>) -> Check<()> {
        let Some((divisor, signed)) = insn.divisor(|r| self.register(r)) else {
            return Ok(());
        };
        let bytes = insn.divisor_bytes();
        let (name, value) = match divisor {
            Divisor::Register(r) => (format!("{r:?}").to_lowercase(), self.register(r)),
            Divisor::Memory(m) => (format!("memory at {:#x}", m.offset), self.memory_value(&m)?),
        };
        let (rax, rdx) = (self.gprs(0), self.gprs(2));
        let dividend = match bytes {
            1 => u128::from(rax & 0xffff),
            _ => {
                let bits = bytes * 8;
                let mask = u64::MAX >> (64 - bits);
                (u128::from(rdx & mask) << bits) | u128::from(rax & mask)
            }
        };
        if !divide_faults(dividend, value, bytes, signed) {
            steps.push(format!("divisor {name} = {value:#x}: no divide error"));
            return Ok(());
        }
        steps.push(if value == 0 {
            format!("divisor {name} = 0: divide error")
        } else {
            format!(
                "dividend {dividend:#x} / divisor {name} = {value:#x}: the quotient does not fit in {} bits: divide error",
                bytes * 8
            )
        });
        Err(Outcome::Faults(Fault::new(Vector::DE, 0)))
    }

    /// A memory divisor's value (its access was checked already).
    fn memory_value(&self, m: &MemoryAccess) -> Check<u64> {
        let s = self.state();
        let unreadable =
            |why: String| Outcome::Unknown(format!("the divisor cannot be read: {why}"));
        let seg = segment_register(m.segment).unwrap_or(SegmentRegister::Ds);
        let linear = self
            .linear(seg, m, SegAccess::Any)
            .map_err(|e| unreadable(e.to_string()))?;
        let mut bytes = [0u8; 8];
        let len = (m.size as usize).min(8);
        PagedMemory::new(self.mem, s.regs)
            .read_linear(linear, &mut bytes[..len])
            .map_err(|e| unreadable(e.to_string()))?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn gprs(&self, index: usize) -> u64 {
        self.cpu.gprs[index]
    }

    /// A register's value as the decoder names it (8/16/32-bit parts included).
    fn register(&self, reg: Register) -> u64 {
        if matches!(reg, Register::RIP | Register::EIP) {
            return self.state().rip;
        }
        let full = reg.full_register();
        let index = (full as usize).wrapping_sub(Register::RAX as usize);
        let Some(&value) = self.cpu.gprs.get(index) else {
            return 0;
        };
        let high_byte = matches!(
            reg,
            Register::AH | Register::CH | Register::DH | Register::BH
        );
        let value = if high_byte { value >> 8 } else { value };
        match reg.size() {
            1 => value & 0xff,
            2 => value & 0xffff,
            4 => value & 0xffff_ffff,
            _ => value,
        }
    }
}

fn segment_register(reg: Register) -> Option<SegmentRegister> {
    Some(match reg {
        Register::ES => SegmentRegister::Es,
        Register::CS => SegmentRegister::Cs,
        Register::SS => SegmentRegister::Ss,
        Register::DS | Register::None => SegmentRegister::Ds,
        Register::FS => SegmentRegister::Fs,
        Register::GS => SegmentRegister::Gs,
        _ => return None,
    })
}

/// The fault a segmentation refusal raises: #SS for the stack segment, #NP for a segment not
/// present, else #GP(0).
fn segment_fault(e: &SegmentError) -> Fault {
    let seg = match e {
        SegmentError::Unusable { seg }
        | SegmentError::NotPresent { seg }
        | SegmentError::WrongType { seg, .. }
        | SegmentError::Limit { seg, .. }
        | SegmentError::NonCanonical { seg, .. } => Some(*seg),
        _ => None,
    };
    match (e, seg) {
        (_, Some(SegmentRegister::Ss)) => Fault::new(Vector::SS, 0),
        (SegmentError::NotPresent { .. }, _) => Fault::new(Vector::NP, 0),
        _ => Fault::new(Vector::GP, 0),
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Delivers `first` (raised as `fault`, if it is one) from `state`, then each fault its
/// delivery raises; returns every fault raised, in order.
fn chain<M: PhysMemory + ?Sized>(
    mem: &M,
    state: CpuState,
    first: Event,
    fault: Option<Fault>,
    lines: &mut Vec<String>,
) -> Vec<Fault> {
    let mut chain = Chain {
        mem,
        state,
        faults: fault.into_iter().collect(),
        repeats: Repeats::default(),
        deliveries: 0,
        lines,
    };
    let mut event = first;
    while chain.deliveries < MAX_DELIVERIES {
        match chain.deliver(event) {
            Some(next) => event = next,
            None => return chain.faults,
        }
    }
    chain.lines.push(format!(
        "not proven: stopped after {MAX_DELIVERIES} deliveries"
    ));
    chain.faults
}

/// A chain of deliveries as it goes: the state events are delivered from, the faults so far.
struct Chain<'a, M: ?Sized> {
    mem: &'a M,
    state: CpuState,
    faults: Vec<Fault>,
    repeats: Repeats,
    deliveries: usize,
    lines: &'a mut Vec<String>,
}

impl<M: PhysMemory + ?Sized> Chain<'_, M> {
    /// Delivers `event`; the next event to deliver, or `None` when the chain ends.
    fn deliver(&mut self, event: Event) -> Option<Event> {
        let delivery = deliver(self.mem, &self.state, event);
        let mut block = vec![format!(
            "delivering {}",
            delivered_fault(&event, &self.faults)
        )];
        block.extend(delivery.steps.into_iter().map(indent));
        if let Outcome::HandlerFaults(handler, fault) = delivery.outcome {
            block.push(format!("  -> {fault} (a new exception at the handler)"));
            return self.handler_faults(block, *handler, fault);
        }
        self.show(block);
        match delivery.outcome {
            Outcome::Delivered(handler) => {
                self.lines.push(format!(
                    "the handler runs at {:#06x}:{:#x}: no triple fault from here",
                    handler.seg(SegmentRegister::Cs).selector.0,
                    handler.rip
                ));
                None
            }
            Outcome::Faults(fault) => {
                self.lines.push(format!("  -> {fault}"));
                self.faults.push(fault);
                self.escalate(event.vector, fault)
            }
            Outcome::Unknown(why) => {
                self.lines.push(format!("  not proven: {why}"));
                None
            }
            Outcome::HandlerFaults(..) => None,
        }
    }

    /// A delivery's lines, after those of the repeats before it.
    fn show(&mut self, block: Vec<String>) {
        self.lines.extend(self.repeats.flush());
        self.lines.extend(block);
        self.deliveries += 1;
    }

    /// The handler was entered but its first fetch faults: a new exception from the
    /// handler's state. The same again (one frame lower) is counted, not shown.
    fn handler_faults(
        &mut self,
        block: Vec<String>,
        handler: CpuState,
        fault: Fault,
    ) -> Option<Event> {
        if self.repeats.same_again(&handler, fault) {
            if self.repeats.count >= MAX_HANDLER_REPEATS {
                self.lines.push(self.repeats.summary());
                self.lines.push(format!("not proven: the handler still faults after {MAX_HANDLER_REPEATS} frames with the stack still mapped"));
                return None;
            }
            self.repeats.last_block = block;
        } else {
            self.show(block);
            self.repeats.start(&handler, fault);
        }
        self.state = handler;
        self.faults.push(fault);
        Some(Event::from_fault(&fault))
    }

    /// `fault` raised while delivering `vector`: delivered instead, a double fault, or the
    /// shutdown (SDM Table 6-5).
    fn escalate(&mut self, vector: Vector, fault: Fault) -> Option<Event> {
        let pair = format!("{} then {}", vector.mnemonic(), fault.vector.mnemonic());
        match vector.then(fault.vector) {
            Escalation::Serially(_) => {
                self.lines.push(format!(
                    "{pair}: {} is delivered instead",
                    fault.vector.mnemonic()
                ));
                Some(Event::from_fault(&fault))
            }
            Escalation::DoubleFault => {
                self.lines.push(format!("{pair}: double fault"));
                Some(Event::from_fault(&Fault::new(Vector::DF, 0)))
            }
            Escalation::Shutdown => {
                self.lines.push(format!("{pair}: shutdown (triple fault)"));
                None
            }
        }
    }
}

/// The fault an event delivers, with CR2 when it is the `#PF` raised last.
fn delivered_fault(event: &Event, raised: &[Fault]) -> Fault {
    let cr2 = raised
        .last()
        .filter(|f| f.vector == event.vector)
        .and_then(|f| f.cr2);
    Fault {
        vector: event.vector,
        error_code: event.error_code,
        cr2,
    }
}

/// A handler that faults at its first fetch again and again (each time one frame lower):
/// shown once, then counted.
#[derive(Default)]
struct Repeats {
    key: Option<(u64, Vector)>,
    count: usize,
    first_rsp: u64,
    last_rsp: u64,
    last_block: Vec<String>,
}

impl Repeats {
    fn same_again(&mut self, handler: &CpuState, fault: Fault) -> bool {
        let same = self.key == Some((handler.rip, fault.vector));
        if same {
            self.count += 1;
            self.last_rsp = handler.rsp;
        }
        same
    }

    fn start(&mut self, handler: &CpuState, fault: Fault) {
        *self = Repeats {
            key: Some((handler.rip, fault.vector)),
            first_rsp: handler.rsp,
            last_rsp: handler.rsp,
            ..Default::default()
        };
    }

    fn summary(&self) -> String {
        format!(
            "... the same {} more times, each frame lower on the stack (RSP {:#x} down to {:#x}); the last:",
            self.count, self.first_rsp, self.last_rsp
        )
    }

    /// The summary and the last repeated block, if there were repeats.
    fn flush(&mut self) -> Vec<String> {
        if self.count == 0 {
            return Vec::new();
        }
        let mut out = vec![self.summary()];
        out.append(&mut self.last_block);
        self.count = 0;
        out
    }
}

/// Whether the saved CR2 is the address of the last `#PF` of the chain.
fn cr2_agreement(cr2: Option<u64>, faults: &[Fault]) -> Option<String> {
    let cr2 = cr2?;
    let page_faults: Vec<u64> = faults.iter().filter_map(|f| f.cr2).collect();
    let last = *page_faults.last()?;
    Some(if cr2 == last {
        format!("CR2={cr2:#x}: the address of the last #PF above, as saved")
    } else if page_faults.contains(&cr2) {
        format!("CR2={cr2:#x}: an earlier #PF's address above, not the last one ({last:#x}): the saved state does not prove the order")
    } else {
        format!("CR2={cr2:#x} is no address in this chain (last #PF at {last:#x}): the saved state does not prove it; a #PF elsewhere came last")
    })
}

#[cfg(test)]
mod tests;
