//! Delivering one event (exception or interrupt) the way the CPU does, step by step, in real,
//! protected or long mode: the IDT (IVT) entry, the gate, the target code segment, the stack
//! switch, the frame's pushes and the handler's first fetch (SDM vol. 3, §6.12 and §6.14).
//!
//! Each step is one line naming the table or page entry it used; the first step that fails
//! gives the fault the CPU raises instead. Memory is read through the walker as the CPU's
//! implicit supervisor accesses, never written.

use std::fmt;

use super::cpu::{ControlRegs, CpuMode, PagingMode, RFlags};
use super::exception::Vector;
use super::paging::{translate, Access, LinearMemory, PagedMemory, Translation, WalkError};
use super::phys::PhysMemory;
use super::segment::{
    descriptor_for, logical_to_linear, Descriptor, Gate, SegAccess, SegmentCache, SegmentError,
    SegmentRegister, SegmentSelector, SystemType, TableRegister,
};

/// The registers an event is delivered from (and an instruction's segments are used from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuState {
    pub(crate) regs: ControlRegs,
    pub(crate) rflags: u64,
    pub(crate) rip: u64,
    pub(crate) rsp: u64,
    /// ES, CS, SS, DS, FS, GS.
    pub(crate) segments: [SegmentCache; 6],
    pub(crate) gdtr: TableRegister,
    pub(crate) idtr: TableRegister,
    pub(crate) ldtr: SegmentCache,
    pub(crate) tr: SegmentCache,
}

impl CpuState {
    pub(crate) fn seg(&self, reg: SegmentRegister) -> &SegmentCache {
        &self.segments[seg_index(reg)]
    }

    fn seg_mut(&mut self, reg: SegmentRegister) -> &mut SegmentCache {
        &mut self.segments[seg_index(reg)]
    }

    pub(crate) fn mode(&self) -> CpuMode {
        CpuMode::from_cache(&self.regs, self.rflags, self.seg(SegmentRegister::Cs))
    }

    /// The current privilege level: CS.RPL in protected mode (what the CPU keeps there).
    pub(crate) fn cpl(&self) -> u8 {
        match self.mode() {
            CpuMode::Real => 0,
            CpuMode::Virtual8086 => 3,
            _ => self.seg(SegmentRegister::Cs).selector.rpl(),
        }
    }
}

fn seg_index(reg: SegmentRegister) -> usize {
    match reg {
        SegmentRegister::Es => 0,
        SegmentRegister::Cs => 1,
        SegmentRegister::Ss => 2,
        SegmentRegister::Ds => 3,
        SegmentRegister::Fs => 4,
        SegmentRegister::Gs => 5,
    }
}

/// One event to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) vector: Vector,
    /// Pushed on the handler's stack (protected and long mode only).
    pub(crate) error_code: Option<u32>,
    /// `int n`, `int3`, `into`: the gate's DPL is checked and faults carry no EXT bit.
    pub(crate) software: bool,
}

impl Event {
    /// A fault raised by the CPU (hardware exception) as the next event.
    pub(crate) fn from_fault(fault: &Fault) -> Self {
        Event {
            vector: fault.vector,
            error_code: fault.error_code,
            software: false,
        }
    }
}

/// A fault the CPU raises: vector, error code, and CR2 for `#PF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) vector: Vector,
    pub(crate) error_code: Option<u32>,
    pub(crate) cr2: Option<u64>,
}

impl Fault {
    /// A fault with `code` if the vector pushes one.
    pub(crate) fn new(vector: Vector, code: u32) -> Self {
        Fault {
            vector,
            error_code: vector.has_error_code().then_some(code),
            cr2: None,
        }
    }

    /// `#PF` at `linear` (CR2) with its error code.
    pub(crate) fn page(linear: u64, code: u32) -> Self {
        Fault {
            vector: Vector::PF,
            error_code: Some(code),
            cr2: Some(linear),
        }
    }
}

impl fmt::Display for Fault {
    /// `#PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0x400000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.vector)?;
        if let Some(text) = self
            .error_code
            .and_then(|code| self.vector.describe_error_code(code))
        {
            write!(f, ", error code {text}")?;
        }
        if let Some(cr2) = self.cr2 {
            write!(f, ", CR2={cr2:#x}")?;
        }
        Ok(())
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler runs: the state at its first instruction.
    Delivered(Box<CpuState>),
    /// Delivery completed, but fetching the handler's first instruction raises a new fault
    /// (a fault of the handler, not of the delivery: no double fault).
    HandlerFaults(Box<CpuState>, Fault),
    /// A step of the delivery faults: the CPU raises this instead (or escalates).
    Faults(Fault),
    /// The model cannot follow (a task gate, a table outside RAM): why, in a line.
    Unknown(String),
}

/// The steps of one delivery and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) steps: Vec<String>,
    pub(crate) outcome: Outcome,
}

/// Delivers `event` from `cpu` through the tables in `mem`.
pub(crate) fn deliver<M: PhysMemory + ?Sized>(mem: &M, cpu: &CpuState, event: Event) -> Delivery {
    let mut d = Deliverer {
        mem,
        cpu,
        event,
        steps: Vec::new(),
    };
    let outcome = match cpu.mode() {
        CpuMode::Real => d.real_mode(),
        CpuMode::Virtual8086 => Err(Outcome::Unknown(
            "delivery from virtual-8086 mode is not modelled".into(),
        )),
        _ => d.protected_mode(),
    };
    Delivery {
        steps: d.steps,
        outcome: outcome.unwrap_or_else(|stop| stop),
    }
}

/// A step's result: `Err` ends the delivery with that outcome.
type Step<T> = Result<T, Outcome>;

/// Where the handler's stack is: the segment, the stack pointer before the pushes, and
/// whether it was switched (faults on it then name the new SS).
struct Stack {
    ss: SegmentCache,
    rsp: u64,
    switched: bool,
}

struct Deliverer<'a, M: ?Sized> {
    mem: &'a M,
    cpu: &'a CpuState,
    event: Event,
    steps: Vec<String>,
}

impl<M: PhysMemory + ?Sized> Deliverer<'_, M> {
    fn step(&mut self, line: String) {
        self.steps.push(line);
    }

    /// EXT: set in error codes of faults raised while delivering a hardware event.
    fn ext(&self) -> u32 {
        u32::from(!self.event.software)
    }

    /// `vector` with `code`, which real mode does not push.
    fn fault(&self, vector: Vector, code: u32) -> Outcome {
        let mut fault = Fault::new(vector, code);
        if self.cpu.mode() == CpuMode::Real {
            fault.error_code = None;
        }
        Outcome::Faults(fault)
    }

    /// The error code naming this event's IDT entry.
    fn idt_code(&self) -> u32 {
        u32::from(self.event.vector.0) * 8 + 2 + self.ext()
    }

    /// The error code naming `selector`'s descriptor.
    fn selector_code(&self, selector: SegmentSelector) -> u32 {
        u32::from(selector.0 & 0xfffc) | self.ext()
    }

    fn long_mode(&self) -> bool {
        self.cpu.regs.long_mode_active()
    }

    fn protected_mode(&mut self) -> Step<Outcome> {
        let gate = self.gate()?;
        let (cs, new_cpl) = self.code_segment(&gate)?;
        let stack = self.stack(&gate, new_cpl)?;
        let bottom = self.push_frame(&gate, &cs, &stack, new_cpl)?;
        let handler = self.handler_state(&gate, cs, stack, bottom);
        Ok(self.first_fetch(handler, new_cpl))
    }

    /// IDTR limit, the gate read through paging, its type, DPL (for `int n`) and P.
    fn gate(&mut self) -> Step<Gate> {
        let size = if self.long_mode() { 16 } else { 8 };
        let linear = self.idt_entry(size)?;
        let mut bytes = [0u8; 16];
        self.read_system(linear, &mut bytes[..size as usize])?;
        let low = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let high = u64::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
        let descriptor = Descriptor::decode(low, high, self.long_mode());
        let vector = self.event.vector.0;
        let raw = if size == 16 {
            format!("{low:#018x} {high:#018x}")
        } else {
            format!("{low:#018x}")
        };
        self.step(format!(
            "IDT[{vector:#04x}] @{linear:#x} = {raw}: {descriptor}"
        ));
        let gate = match descriptor {
            Descriptor::Gate(gate) if self.is_event_gate(gate.kind) => gate,
            _ => {
                self.step(format!(
                    "IDT[{vector:#04x}] is not an interrupt or trap gate{}",
                    if self.long_mode() { " (64-bit)" } else { "" }
                ));
                return Err(self.fault(Vector::GP, self.idt_code()));
            }
        };
        if gate.kind == SystemType::TaskGate {
            return Err(Outcome::Unknown(
                "a task gate: task switches are not modelled".into(),
            ));
        }
        let cpl = self.cpu.cpl();
        if self.event.software && gate.dpl < cpl {
            self.step(format!(
                "IDT[{vector:#04x}]: gate DPL {} < CPL {cpl}: int n may not use it",
                gate.dpl
            ));
            return Err(self.fault(Vector::GP, self.idt_code()));
        }
        if !gate.present {
            self.step(format!("IDT[{vector:#04x}]: gate not present (P=0)"));
            return Err(self.fault(Vector::NP, self.idt_code()));
        }
        Ok(gate)
    }

    /// The linear address of this event's IDT entry of `size` bytes, after the limit check.
    fn idt_entry(&mut self, size: u64) -> Step<u64> {
        let idtr = self.cpu.idtr;
        let first = u64::from(self.event.vector.0) * size;
        let last = first + size - 1;
        let within = last <= u64::from(idtr.limit);
        self.step(format!(
            "IDTR base={:#x} limit={:#x}: vector {:#04x}'s entry at offset {first:#x}..{last:#x} is {}",
            idtr.base,
            idtr.limit,
            self.event.vector.0,
            if within { "within the limit" } else { "beyond the limit" }
        ));
        if !within {
            return Err(self.fault(Vector::GP, self.idt_code()));
        }
        Ok(idtr.base.wrapping_add(first))
    }

    fn is_event_gate(&self, kind: SystemType) -> bool {
        use SystemType::*;
        if self.long_mode() {
            matches!(kind, InterruptGate64 | TrapGate64)
        } else {
            matches!(
                kind,
                InterruptGate16 | InterruptGate32 | TrapGate16 | TrapGate32 | TaskGate
            )
        }
    }

    /// Reads a system structure (IDT, GDT, TSS) as the CPU's implicit supervisor read.
    fn read_system(&mut self, linear: u64, buf: &mut [u8]) -> Step<()> {
        let len = buf.len() as u64;
        let last = linear.wrapping_add(len.saturating_sub(1));
        for at in [linear, last] {
            self.check_page(at, Access::read(false))?;
        }
        PagedMemory::new(self.mem, self.cpu.regs)
            .read_linear(linear, buf)
            .map_err(|e| Outcome::Unknown(format!("reading {linear:#x}: {e}")))
    }

    /// One access through the walker; a refusal is `#PF` (its levels in the steps).
    fn check_page(&mut self, linear: u64, access: Access) -> Step<Translation> {
        translate(self.mem, &self.cpu.regs, linear, access)
            .map_err(|e| walk_failure(&mut self.steps, &e, access, &self.cpu.regs))
    }

    /// The gate's target code segment: descriptor, type, DPL, P; and the CPL it runs at.
    fn code_segment(&mut self, gate: &Gate) -> Step<(SegmentCache, u8)> {
        let selector = gate.selector;
        let d = self.descriptor(selector, Vector::GP)?;
        let cpl = self.cpu.cpl();
        let Descriptor::Segment(seg) = d else {
            self.step(format!("{selector}: not a code segment"));
            return Err(self.fault(Vector::GP, self.selector_code(selector)));
        };
        let cache = SegmentCache::from_descriptor(selector, seg);
        if !cache.is_code() || seg.dpl() > cpl {
            self.step(format!(
                "{selector}: {} (must be code with DPL <= CPL {cpl})",
                if cache.is_code() {
                    "DPL too high"
                } else {
                    "a data segment"
                }
            ));
            return Err(self.fault(Vector::GP, self.selector_code(selector)));
        }
        let code64 = seg.long() && !seg.db();
        if self.long_mode() && !code64 {
            self.step(format!("{selector}: not a 64-bit code segment (L=1, D=0)"));
            return Err(self.fault(Vector::GP, self.selector_code(selector)));
        }
        if !seg.present() {
            self.step(format!("{selector}: segment not present (P=0)"));
            return Err(self.fault(Vector::NP, self.selector_code(selector)));
        }
        let conforming = cache.type_ & 4 != 0;
        let new_cpl = if conforming { cpl } else { seg.dpl() };
        Ok((
            SegmentCache {
                selector: SegmentSelector((selector.0 & !3) | u16::from(new_cpl)),
                ..cache
            },
            new_cpl,
        ))
    }

    /// The descriptor `selector` names, read through paging; a bad selector raises `bad`.
    fn descriptor(&mut self, selector: SegmentSelector, bad: Vector) -> Step<Descriptor> {
        let mem = PagedMemory::new(self.mem, self.cpu.regs);
        let (table, base) = if selector.is_ldt() {
            ("LDT", self.cpu.ldtr.base)
        } else {
            ("GDT", self.cpu.gdtr.base)
        };
        match descriptor_for(
            &mem,
            self.cpu.gdtr,
            &self.cpu.ldtr,
            selector,
            self.long_mode(),
        ) {
            Ok(d) => {
                let at = base.wrapping_add(selector.table_offset());
                self.step(format!(
                    "{table}[{:#06x}] @{at:#x} ({selector}): {d}",
                    selector.0 & !7
                ));
                Ok(d)
            }
            Err(SegmentError::Unreadable { addr, .. }) => {
                self.read_system(addr, &mut [0u8; 8])?;
                Err(Outcome::Unknown(format!(
                    "{selector}: descriptor at {addr:#x} unreadable"
                )))
            }
            Err(e) => {
                self.step(e.to_string());
                let code = if selector.is_null() {
                    self.ext()
                } else {
                    self.selector_code(selector)
                };
                Err(self.fault(bad, code))
            }
        }
    }

    /// The stack the frame goes on: the TSS's (privilege change, IST) or the current one.
    fn stack(&mut self, gate: &Gate, new_cpl: u8) -> Step<Stack> {
        let cpl = self.cpu.cpl();
        let current = Stack {
            ss: *self.cpu.seg(SegmentRegister::Ss),
            rsp: self.cpu.rsp,
            switched: false,
        };
        if self.long_mode() {
            return self.long_mode_stack(gate, new_cpl, current);
        }
        if new_cpl == cpl {
            self.step(format!(
                "no privilege change (CPL {cpl}): frame on the current stack {:#06x}:{:#x}",
                current.ss.selector.0, current.rsp
            ));
            return Ok(current);
        }
        self.tss32_stack(new_cpl)
    }

    /// Long mode: IST n if the gate names one, else RSPn on a privilege change; RSP is then
    /// aligned down to 16 bytes (the CPU always does so in 64-bit mode).
    fn long_mode_stack(&mut self, gate: &Gate, new_cpl: u8, current: Stack) -> Step<Stack> {
        let cpl = self.cpu.cpl();
        let (field, offset) = match (gate.ist, new_cpl < cpl) {
            (0, false) => {
                let rsp = current.rsp & !0xf;
                self.step(format!(
                    "no privilege change (CPL {cpl}), no IST: frame on the current stack, RSP {:#x} aligned to {rsp:#x}",
                    current.rsp
                ));
                return Ok(Stack { rsp, ..current });
            }
            (0, true) => (format!("RSP{new_cpl}"), 4 + 8 * u64::from(new_cpl)),
            (ist, _) => (format!("IST{ist}"), 36 + 8 * u64::from(ist - 1)),
        };
        let rsp = self.tss_field(&field, offset, 8)?;
        let rsp = u64::from_le_bytes(rsp[..8].try_into().unwrap_or_default());
        if !super::addr::is_canonical(rsp, self.cpu.regs.paging_mode().linear_bits()) {
            self.step(format!("{field} = {rsp:#x} is not canonical"));
            return Err(self.fault(Vector::SS, self.ext()));
        }
        let ss = SegmentCache {
            selector: SegmentSelector(u16::from(new_cpl)),
            unusable: true,
            ..Default::default()
        };
        Ok(Stack {
            ss,
            rsp: rsp & !0xf,
            switched: true,
        })
    }

    /// `len` bytes at `offset` in the current TSS, after TR's limit check.
    fn tss_field(&mut self, name: &str, offset: u64, len: u64) -> Step<Vec<u8>> {
        let tr = self.cpu.tr;
        if tr.unusable || !tr.present || offset + len - 1 > u64::from(tr.limit) {
            self.step(format!(
                "TSS (TR={:#06x}, base {:#x}, limit {:#x}): {name} at offset {offset:#x} is outside it",
                tr.selector.0, tr.base, tr.limit
            ));
            return Err(self.fault(Vector::TS, self.selector_code(tr.selector)));
        }
        let linear = tr.base.wrapping_add(offset);
        let mut bytes = vec![0u8; len as usize];
        self.read_system(linear, &mut bytes)?;
        let mut value = [0u8; 8];
        value[..bytes.len()].copy_from_slice(&bytes);
        self.step(format!(
            "TSS (TR={:#06x}, base {:#x}): {name} @{linear:#x} = {:#x}",
            tr.selector.0,
            tr.base,
            u64::from_le_bytes(value)
        ));
        Ok(bytes)
    }

    /// Protected mode, privilege change: SSn:ESPn from the 32-bit TSS, and SS's checks (#TS).
    fn tss32_stack(&mut self, new_cpl: u8) -> Step<Stack> {
        if !matches!(
            SystemType::decode(self.cpu.tr.type_, false),
            SystemType::Tss32 { .. }
        ) {
            return Err(Outcome::Unknown(
                "a stack switch through a 16-bit TSS is not modelled".into(),
            ));
        }
        let offset = 4 + 8 * u64::from(new_cpl);
        let bytes = self.tss_field(&format!("ESP{new_cpl}, SS{new_cpl}"), offset, 6)?;
        let esp = u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default());
        let selector = SegmentSelector(u16::from_le_bytes([bytes[4], bytes[5]]));
        let d = self.descriptor(selector, Vector::TS)?;
        let ss = match d {
            Descriptor::Segment(seg) => SegmentCache::from_descriptor(selector, seg),
            _ => SegmentCache::default(),
        };
        let writable_data = ss.s && !ss.is_code() && ss.type_ & 2 != 0;
        if !writable_data || selector.rpl() != new_cpl || ss.dpl != new_cpl {
            self.step(format!(
                "SS{new_cpl} {selector}: must be a writable data segment with RPL = DPL = {new_cpl}"
            ));
            return Err(self.fault(Vector::TS, self.selector_code(selector)));
        }
        if !ss.present {
            self.step(format!("SS{new_cpl} {selector}: segment not present"));
            return Err(self.fault(Vector::SS, self.selector_code(selector)));
        }
        Ok(Stack {
            ss,
            rsp: u64::from(esp),
            switched: true,
        })
    }

    /// The frame's slots, first pushed first: SS, RSP (on a stack switch, always in long
    /// mode), RFLAGS, CS, RIP, error code.
    fn frame_slots(&self, stack: &Stack, width: u64) -> Vec<&'static str> {
        let [sp, flags, ip] = match width {
            2 => ["SP", "FLAGS", "IP"],
            4 => ["ESP", "EFLAGS", "EIP"],
            _ => ["RSP", "RFLAGS", "RIP"],
        };
        let mut slots = Vec::new();
        if stack.switched || self.long_mode() {
            slots.extend(["SS", sp]);
        }
        slots.extend([flags, "CS", ip]);
        if self.event.error_code.is_some() {
            slots.push("error code");
        }
        slots
    }

    /// Checks every push of the frame: segment limit (protected mode) and page (supervisor
    /// write at the new CPL); returns the stack pointer after the last push.
    fn push_frame(
        &mut self,
        gate: &Gate,
        cs: &SegmentCache,
        stack: &Stack,
        new_cpl: u8,
    ) -> Step<u64> {
        let width = gate_width(gate.kind);
        let access = Access::write(new_cpl == 3);
        let stack_mask = match (self.long_mode(), stack.ss.db) {
            (true, _) => u64::MAX,
            (false, true) => 0xffff_ffff,
            (false, false) => 0xffff,
        };
        let mode = if self.long_mode() && cs.l {
            CpuMode::Long64
        } else {
            CpuMode::Protected32
        };
        let paging = self.cpu.regs.paging_mode() != PagingMode::None;
        let mut run: Option<PageRun> = None;
        let mut rsp = stack.rsp;
        for name in self.frame_slots(stack, width) {
            rsp = rsp.wrapping_sub(width) & stack_mask;
            let linear = self.stack_linear(mode, stack, rsp, width, name)?;
            let page = linear & !0xfff;
            match &mut run {
                Some(r) if r.page == page => r.add(name, linear),
                _ => {
                    if let Some(done) = run.take() {
                        self.step(done.line(access, paging));
                    }
                    let before = self.steps.len();
                    let translation = self.check_page(linear, access).inspect_err(|_| {
                        self.steps
                            .insert(before, format!("push {name} to {linear:#x}"))
                    })?;
                    run = Some(PageRun::new(page, name, linear, translation));
                }
            }
        }
        if let Some(done) = run {
            self.step(done.line(access, paging));
        }
        Ok(rsp)
    }

    /// The linear address of one push (segment checks outside 64-bit mode: #SS).
    fn stack_linear(
        &mut self,
        mode: CpuMode,
        stack: &Stack,
        offset: u64,
        width: u64,
        name: &str,
    ) -> Step<u64> {
        let regs = self.cpu.regs;
        logical_to_linear(
            mode,
            &regs,
            SegmentRegister::Ss,
            &stack.ss,
            offset,
            width,
            SegAccess::Write,
        )
        .map_err(|e| {
            self.step(format!(
                "push {name} to SS:{offset:#x}: {}",
                segment_reason(&e)
            ));
            let code = if stack.switched {
                self.selector_code(stack.ss.selector)
            } else {
                self.ext()
            };
            self.fault(Vector::SS, code)
        })
    }

    /// The state the handler starts in: CS:RIP from the gate, the new stack, flags cleared.
    fn handler_state(&self, gate: &Gate, cs: SegmentCache, stack: Stack, rsp: u64) -> CpuState {
        let mut cpu = self.cpu.clone();
        let mut clear = RFlags::TF | RFlags::NT | RFlags::RF | RFlags::VM;
        if matches!(
            gate.kind,
            SystemType::InterruptGate16 | SystemType::InterruptGate32 | SystemType::InterruptGate64
        ) {
            clear |= RFlags::IF;
        }
        cpu.rflags &= !clear.bits();
        *cpu.seg_mut(SegmentRegister::Cs) = cs;
        *cpu.seg_mut(SegmentRegister::Ss) = stack.ss;
        cpu.rip = gate.offset;
        cpu.rsp = rsp;
        cpu
    }

    /// The handler's first instruction: CS limit (canonical RIP in long mode) and its page,
    /// fetched at the new CPL.
    fn first_fetch(&mut self, handler: CpuState, new_cpl: u8) -> Outcome {
        let cs = *handler.seg(SegmentRegister::Cs);
        let mode = handler.mode();
        let at = format!("handler {:#06x}:{:#x}", cs.selector.0, handler.rip);
        let linear = match logical_to_linear(
            mode,
            &handler.regs,
            SegmentRegister::Cs,
            &cs,
            handler.rip,
            1,
            SegAccess::Execute,
        ) {
            Ok(linear) => linear,
            Err(e) => {
                self.step(format!("{at}: {e}"));
                return Outcome::Faults(Fault::new(Vector::GP, self.ext()));
            }
        };
        let access = Access::fetch(new_cpl == 3);
        match self.check_page(linear, access) {
            Ok(_) if handler.regs.paging_mode() == PagingMode::None => {
                self.step(format!("{at}: {access}, paging off: delivered"));
                Outcome::Delivered(Box::new(handler))
            }
            Ok(t) => {
                self.step(format!("{at}: {access} {t}: delivered"));
                Outcome::Delivered(Box::new(handler))
            }
            Err(Outcome::Faults(fault)) => {
                self.step(format!(
                    "{at}: the frame is pushed, but fetching the handler's first instruction faults"
                ));
                Outcome::HandlerFaults(Box::new(handler), fault)
            }
            Err(other) => other,
        }
    }

    /// Real mode: the IVT entry (limit checked), FLAGS, CS, IP pushed on SS:SP.
    fn real_mode(&mut self) -> Step<Outcome> {
        let linear = self.idt_entry(4)?;
        let mut entry = [0u8; 4];
        PagedMemory::new(self.mem, self.cpu.regs)
            .read_linear(linear, &mut entry)
            .map_err(|e| Outcome::Unknown(format!("reading the IVT at {linear:#x}: {e}")))?;
        let ip = u16::from_le_bytes([entry[0], entry[1]]);
        let segment = u16::from_le_bytes([entry[2], entry[3]]);
        self.step(format!(
            "IVT[{:#04x}] @{linear:#x} = {segment:#06x}:{ip:#06x}",
            self.event.vector.0
        ));
        let stack = Stack {
            ss: *self.cpu.seg(SegmentRegister::Ss),
            rsp: self.cpu.rsp & 0xffff,
            switched: false,
        };
        let mut sp = stack.rsp;
        for name in ["FLAGS", "CS", "IP"] {
            sp = sp.wrapping_sub(2) & 0xffff;
            self.stack_linear(CpuMode::Real, &stack, sp, 2, name)?;
        }
        self.step(format!(
            "push FLAGS, CS, IP to SS:SP {:#06x}:{sp:#06x}",
            stack.ss.selector.0
        ));
        let mut handler = self.cpu.clone();
        *handler.seg_mut(SegmentRegister::Cs) = SegmentCache::real_mode(segment, true);
        handler.rip = u64::from(ip);
        handler.rsp = (self.cpu.rsp & !0xffff) | sp;
        handler.rflags &= !(RFlags::IF | RFlags::TF | RFlags::AC).bits();
        self.step(format!("handler {segment:#06x}:{ip:#06x}: delivered"));
        Ok(Outcome::Delivered(Box::new(handler)))
    }
}

/// Bytes per push for a gate: 2 (16-bit), 4 (32-bit) or 8 (64-bit).
fn gate_width(kind: SystemType) -> u64 {
    use SystemType::*;
    match kind {
        InterruptGate16 | TrapGate16 => 2,
        InterruptGate32 | TrapGate32 => 4,
        _ => 8,
    }
}

/// Pushes that land on one page, for one line.
struct PageRun {
    page: u64,
    names: Vec<&'static str>,
    low: u64,
    high: u64,
    translation: Translation,
}

impl PageRun {
    fn new(page: u64, name: &'static str, linear: u64, translation: Translation) -> Self {
        PageRun {
            page,
            names: vec![name],
            low: linear,
            high: linear,
            translation,
        }
    }

    fn add(&mut self, name: &'static str, linear: u64) {
        self.names.push(name);
        self.low = self.low.min(linear);
        self.high = self.high.max(linear);
    }

    /// `push SS, RSP, RFLAGS to 0x1fe8..0x1ff8: supervisor write, page 0x1000 -> physical
    /// 0x5000 (4 KiB, -rw-)`.
    fn line(&self, access: Access, paging: bool) -> String {
        let names = self.names.join(", ");
        let (low, high) = (self.low, self.high);
        if !paging {
            return format!("push {names} to {low:#x}..{high:#x}: {access}, paging off: ok");
        }
        let t = &self.translation;
        let phys_page = t.phys & !(t.page_size.bytes() - 1);
        format!(
            "push {names} to {low:#x}..{high:#x}: {access}, page {:#x} -> physical {phys_page:#x} ({}, {}): ok",
            self.page,
            t.page_size,
            t.rights
        )
    }
}

/// Why segmentation refused an access, without the fault the message names (the caller
/// knows which fault it raises: #SS for the stack).
pub(crate) fn segment_reason(e: &SegmentError) -> String {
    match e {
        SegmentError::Unusable { seg } => format!("{seg} is unusable (null selector)"),
        SegmentError::NotPresent { seg } => format!("{seg} segment is not present"),
        SegmentError::WrongType { seg, access, type_ } => {
            format!("{access:?} not allowed on {seg} segment type {type_:#x}")
        }
        SegmentError::Limit {
            seg, limit, len, ..
        } => format!("{len} bytes outside the {seg} limit {limit:#x}"),
        SegmentError::NonCanonical { linear, .. } => {
            format!("linear address {linear:#x} is not canonical")
        }
        other => other.to_string(),
    }
}

/// A refused access as steps (the walk's levels and why it stopped) and the fault it raises:
/// `#PF`, or `#GP(0)` for a non-canonical address.
pub(crate) fn walk_failure(
    steps: &mut Vec<String>,
    error: &WalkError,
    access: Access,
    regs: &ControlRegs,
) -> Outcome {
    if let Some(trace) = error.trace() {
        steps.extend(
            trace
                .to_string()
                .lines()
                .map(|l| l.trim_start().to_string()),
        );
    }
    steps.push(match error {
        WalkError::Protection { .. } => error.to_string(),
        _ => format!("{access}: {error}"),
    });
    match error.page_fault(access, regs) {
        Some(pf) => Outcome::Faults(Fault::page(pf.linear, pf.code.bits())),
        None if matches!(error, WalkError::NonCanonical { .. }) => {
            Outcome::Faults(Fault::new(Vector::GP, 0))
        }
        None => Outcome::Unknown(format!(
            "the CPU would read whatever is at that physical address; not modelled ({error})"
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests;
