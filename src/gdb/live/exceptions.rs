//! The exception trace: KVM does not tell the VMM which exceptions the guest takes, so the
//! trace breaks at the handler entries the guest's IDT names. At a stop on one, the handler has
//! not run yet: the exception frame is on its stack ([error code,] RIP, CS, RFLAGS[, RSP, SS]),
//! CR2 still holds a page fault's address, and the faulting instruction is still in memory.
//!
//! `lidt` does not exit: IDTR is read again whenever the vCPUs stop (at every trace stop, and
//! every [`REFRESH_EVERY`] while they run) and, without gdb, at every exit the vCPU handles
//! itself (port and MMIO accesses: `DebugState::watch_idtr`, from the run page), so exceptions
//! taken before the IDT is seen are missed. Several vectors whose gates lead to one entry, or an IRQ or `int n` that reaches a
//! traced entry, make the vector ambiguous: the line says so.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter};

use super::breakpoints::{Owner, SoftwareBreakpoint};
use crate::boot::ivt::stub_vector;
use crate::snapshot::CpuSnapshot;
use crate::vmm::memory::GuestRam;
use crate::vmm::vcpu::from_kvm_segment;
use crate::x86::cpu::ControlRegs;
use crate::x86::exception::Vector;
use crate::x86::paging::{translate, Access, PagedMemory};
use crate::x86::segment::{
    descriptor_for, Descriptor, SegmentDescriptor, SegmentSelector, SystemType, TableRegister,
};
use crate::x86::tables::{idt, ivt, Tss64};

/// How often running vCPUs are stopped so that a new IDT is seen (`lidt` does not exit).
pub(crate) const REFRESH_EVERY: Duration = Duration::from_millis(50);
/// How many traced exceptions `monitor exceptions` can show.
const RECENT: usize = 1000;
/// The longest x86 instruction.
const MAX_INSN: usize = 15;
const PAGE_MASK: u64 = !0xfff;

/// One handler entry: the vectors whose gates lead there, and the width of a frame slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandlerEntry {
    pub(crate) vectors: Vec<u8>,
    /// 8 through a 64-bit gate, 4 through a 32-bit one, 2 through a 16-bit one.
    pub(crate) slot: u8,
}

/// What the trace keeps of the IDT it last read: IDTR, GDTR, CR3 and the table's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdtKey {
    idtr: (u64, u16),
    gdtr: (u64, u16),
    cr3: u64,
    long_mode: bool,
    bytes: Vec<u8>,
}

/// One exception taken, as a stop at its handler's entry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The vectors whose gates lead to the entry (more than one: ambiguous).
    pub(crate) candidates: Vec<u8>,
    /// The traced vector the line is decoded as.
    pub(crate) vector: Vector,
    /// The trace line (without a repeat count).
    pub(crate) line: String,
}

/// The exception trace of one run.
pub(crate) struct ExceptionTrace {
    /// The vectors traced.
    traced: BTreeSet<u8>,
    /// `monitor catch exception`: vectors whose trace stop is reported to gdb.
    pub(crate) catch: BTreeSet<u8>,
    /// Whether stops on handler entries are planted (`--trace-exceptions`, `monitor trace
    /// exceptions on`, or a catch).
    pub(crate) on: bool,
    out: Box<dyn Write + Send>,
    key: Option<IdtKey>,
    /// Every present interrupt or trap gate's entry, by linear address.
    entries: BTreeMap<u64, HandlerEntry>,
    /// The last line written, and how many times it came in a row.
    last: Option<(String, u64)>,
    recent: VecDeque<String>,
    /// Entries already said to be untraceable, so it is said once.
    noted: BTreeSet<u64>,
    /// The entries are a real-mode IVT's: no 0xCC (a debug register each), no error codes.
    real: bool,
    /// When the vCPUs last stopped (the IDT was read then).
    pub(crate) last_stop: Instant,
    /// Exceptions traced, stops made only to read the IDT again, and the vCPU reports the
    /// trace handled (a breakpoint at an entry, a step off one: each a KVM exit).
    pub(crate) taken: u64,
    pub(crate) refreshes: u64,
    pub(crate) reports: u64,
    /// What the stops to read the IDT again took, stop to resume.
    pub(crate) refresh_time: Duration,
}

impl ExceptionTrace {
    /// A trace of `traced` written to `out`; `on`: planted from the first resume.
    pub(crate) fn new(traced: BTreeSet<u8>, out: Box<dyn Write + Send>, on: bool) -> Self {
        let mut trace = ExceptionTrace {
            traced,
            catch: BTreeSet::new(),
            on,
            out,
            key: None,
            real: false,
            entries: BTreeMap::new(),
            last: None,
            recent: VecDeque::new(),
            noted: BTreeSet::new(),
            last_stop: Instant::now(),
            taken: 0,
            refreshes: 0,
            reports: 0,
            refresh_time: Duration::ZERO,
        };
        if on {
            trace.header();
        }
        trace
    }

    /// The trace's first line: what it traces, and what it cannot see.
    pub(crate) fn header(&mut self) {
        let line = format!(
            "exception trace: vectors {}; IDTR is read at every stop (with gdb every {} ms at least) and without gdb at every exit: exceptions taken before the IDT is seen are missed",
            vector_list(&self.traced),
            REFRESH_EVERY.as_millis()
        );
        self.write(&line);
    }

    /// Traces `vectors` too (a `monitor catch exception` of a vector not traced).
    pub(crate) fn trace_also(&mut self, vectors: &BTreeSet<u8>) {
        self.traced.extend(vectors);
    }

    /// Reads IDTR and the IDT from `state` (a stopped vCPU), and says what changed.
    pub(crate) fn refresh(&mut self, ram: &GuestRam, state: &CpuSnapshot) {
        let sregs = &state.sregs;
        let regs = state.control_regs();
        let long_mode = regs.long_mode_active();
        let real = sregs.cr0 & 1 == 0;
        let idtr = TableRegister {
            base: sregs.idt.base,
            limit: sregs.idt.limit,
        };
        let mem = PagedMemory::new(ram, regs);
        let mut bytes = vec![0u8; usize::from(idtr.limit) + 1];
        let (read, _) = mem.read_prefix(idtr.base, &mut bytes);
        bytes.truncate(read);
        let key = IdtKey {
            idtr: (idtr.base, idtr.limit),
            gdtr: (sregs.gdt.base, sregs.gdt.limit),
            cr3: sregs.cr3,
            long_mode,
            bytes,
        };
        if self.key.as_ref() == Some(&key) {
            return;
        }
        self.key = Some(key);
        self.real = real;
        if real {
            let had_entries = !self.entries.is_empty();
            self.entries = ivt_entries(&mem, idtr);
            if had_entries || !self.entries.is_empty() {
                self.describe_idt("IVT", idtr);
            }
            return;
        }
        let gdtr = TableRegister {
            base: sregs.gdt.base,
            limit: sregs.gdt.limit,
        };
        let ldtr = from_kvm_segment(&sregs.ldt);
        let mut entries: BTreeMap<u64, HandlerEntry> = BTreeMap::new();
        for entry in idt(&mem, idtr, long_mode).flatten() {
            let Descriptor::Gate(gate) = entry.descriptor else {
                continue;
            };
            let slot = match gate.kind {
                SystemType::InterruptGate64 | SystemType::TrapGate64 => 8,
                SystemType::InterruptGate32 | SystemType::TrapGate32 => 4,
                SystemType::InterruptGate16 | SystemType::TrapGate16 => 2,
                _ => continue,
            };
            if !gate.present {
                continue;
            }
            let base = if long_mode {
                0
            } else {
                match descriptor_for(&mem, gdtr, &ldtr, gate.selector, false) {
                    Ok(Descriptor::Segment(d)) => u64::from(d.base()),
                    _ => continue,
                }
            };
            let linear = base.wrapping_add(gate.offset);
            let linear = if long_mode {
                linear
            } else {
                linear & 0xffff_ffff
            };
            let handler = entries.entry(linear).or_insert(HandlerEntry {
                vectors: Vec::new(),
                slot,
            });
            handler.vectors.push(entry.index as u8);
        }
        let had_entries = !self.entries.is_empty();
        self.entries = entries;
        // The boot state's empty IDT is no news.
        if had_entries || !self.entries.is_empty() {
            self.describe_idt("IDT", idtr);
        }
    }

    /// One line on a new IDT (or real-mode IVT), and one per traced entry whose vector is ambiguous.
    fn describe_idt(&mut self, table: &str, idtr: TableRegister) {
        let traced: Vec<(u64, HandlerEntry)> = self.traced_entries().collect();
        let mut lines = vec![format!(
            "{table} at {:#x} (limit {:#x}): {} handler entries traced",
            idtr.base,
            idtr.limit,
            traced.len()
        )];
        for (addr, entry) in traced.iter().filter(|(_, e)| e.vectors.len() > 1) {
            lines.push(format!(
                "handler {addr:#x} is the entry of vectors {}: the vector of a stop there is ambiguous",
                hex_list(&entry.vectors)
            ));
        }
        for line in lines {
            self.write(&line);
        }
    }

    /// The entries of traced vectors.
    fn traced_entries(&self) -> impl Iterator<Item = (u64, HandlerEntry)> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| e.vectors.iter().any(|v| self.traced.contains(v)))
            .map(|(&a, e)| (a, e.clone()))
    }

    /// Whether a stop at linear `pc` is on a traced handler entry.
    pub(crate) fn is_entry(&self, pc: u64) -> bool {
        self.on
            && self
                .entries
                .get(&pc)
                .is_some_and(|e| e.vectors.iter().any(|v| self.traced.contains(v)))
    }

    /// The traced entries as breakpoints, each with where these page tables map it. An entry
    /// on one of the `avoid` pages gets no 0xCC (a debug register or nothing): its page would
    /// be read-only, and the CPU retries for ever a write of its own to such a page on a
    /// software-nested KVM.
    pub(crate) fn breakpoints(
        &self,
        ram: &GuestRam,
        page_tables: &[ControlRegs],
        avoid: &BTreeSet<u64>,
    ) -> Vec<SoftwareBreakpoint> {
        if !self.on {
            return Vec::new();
        }
        self.traced_entries()
            .map(|(addr, _)| {
                let targets: BTreeSet<u64> = page_tables
                    .iter()
                    .filter_map(|regs| translate(ram, regs, addr, Access::DEBUGGER).ok())
                    .map(|t| t.phys)
                    .filter(|&phys| ram.contains(phys, 1))
                    .collect();
                // Real mode: a software-nested KVM hands a real-mode `int3` to the guest.
                let safe = !self.real
                    && targets
                        .iter()
                        .all(|phys| !avoid.contains(&(phys & PAGE_MASK)));
                SoftwareBreakpoint {
                    addr,
                    targets: if safe { targets } else { BTreeSet::new() },
                    owner: Owner::Trace,
                }
            })
            .collect()
    }

    /// Says once that the entry at `addr` is not traced for now (not mapped, and no debug
    /// register left for it).
    pub(crate) fn note_untraced(&mut self, addr: u64) {
        if self.noted.insert(addr) {
            let vectors = self
                .entries
                .get(&addr)
                .map(|e| hex_list(&e.vectors))
                .unwrap_or_default();
            self.write(&format!(
                "handler {addr:#x} (vectors {vectors}) is not traced for now: it needs a debug register (its page is not mapped, or holds what the CPU writes when it delivers an exception, or the vCPU is in real mode), and none is free"
            ));
        }
    }

    /// Decodes and writes the exception vCPU `vcpu` takes, stopped at a handler entry;
    /// `None` when its pc is no traced entry.
    pub(crate) fn record(
        &mut self,
        vcpu: u8,
        ram: &GuestRam,
        state: &CpuSnapshot,
    ) -> Option<Taken> {
        let pc = state.pc();
        if !self.is_entry(pc) {
            return None;
        }
        let entry = self.entries.get(&pc)?.clone();
        let taken = decode(vcpu, ram, state, pc, &entry, &self.traced, self.real);
        self.taken += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(taken.line.clone());
        self.write(&taken.line);
        Some(taken)
    }

    /// `monitor exceptions N`: the last `n` traced exceptions, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<String> {
        let skip = self.recent.len().saturating_sub(n);
        self.recent.iter().skip(skip).cloned().collect()
    }

    /// Writes `line`, or counts it when it repeats the last one.
    fn write(&mut self, line: &str) {
        if let Some((last, count)) = &mut self.last {
            if last == line {
                *count += 1;
                return;
            }
        }
        self.flush_repeats();
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        self.last = Some((line.to_string(), 1));
    }

    /// Writes how many times the last line came, if more than once.
    fn flush_repeats(&mut self) {
        if let Some((_, count)) = self.last.take() {
            if count > 1 {
                let _ = writeln!(self.out, "... (x{count})");
                let _ = self.out.flush();
            }
        }
    }

    /// The run is over: the last repeat count and a summary.
    pub(crate) fn finish(&mut self) {
        if !self.on && self.taken == 0 {
            return;
        }
        self.flush_repeats();
        let _ = writeln!(
            self.out,
            "exception trace: {} exception{} traced",
            self.taken,
            if self.taken == 1 { "" } else { "s" }
        );
        let _ = self.out.flush();
        log::info!(
            "exception trace: {} exceptions, {} vCPU reports handled (breakpoints at entries, steps off them), {} stops to read the IDT again taking {} us each",
            self.taken,
            self.reports,
            self.refreshes,
            self.refresh_time.as_micros() / u128::from(self.refreshes.max(1))
        );
    }
}

/// A real-mode IVT's handler entries, but for the vectors that lead to gdbvisor's no-BIOS
/// stubs (those stop the run by themselves) and empty ones.
fn ivt_entries(
    mem: &PagedMemory<'_, GuestRam>,
    ivtr: TableRegister,
) -> BTreeMap<u64, HandlerEntry> {
    let mut entries: BTreeMap<u64, HandlerEntry> = BTreeMap::new();
    for (vector, segment, offset) in ivt(mem, ivtr).into_iter().flatten() {
        let linear = (u64::from(segment) << 4) + u64::from(offset);
        if linear == 0 || stub_vector(linear) == Some(vector) {
            continue;
        }
        let entry = entries.entry(linear).or_insert(HandlerEntry {
            vectors: Vec::new(),
            slot: 2,
        });
        entry.vectors.push(vector);
    }
    entries
}

/// The guest-physical pages the CPU writes by itself when it delivers an exception on the vCPU
/// in `state`: its stack, the stacks its TSS names, the GDT, IDT and TSS (Accessed and busy
/// bits). No 0xCC goes there (see [`ExceptionTrace::breakpoints`]).
pub(crate) fn cpu_written_pages(ram: &GuestRam, state: &CpuSnapshot) -> BTreeSet<u64> {
    let regs = state.control_regs();
    let long_mode = regs.long_mode_active();
    let sregs = &state.sregs;
    let mem = PagedMemory::new(ram, regs);
    let mut ranges = vec![
        (sregs.gdt.base, u64::from(sregs.gdt.limit) + 1),
        (sregs.idt.base, u64::from(sregs.idt.limit) + 1),
        (sregs.tr.base, u64::from(sregs.tr.limit) + 1),
    ];
    let ss_base = if long_mode { 0 } else { sregs.ss.base };
    let frame = 6 * 8;
    ranges.push((
        ss_base.wrapping_add(state.regs.rsp).wrapping_sub(frame),
        frame,
    ));
    if long_mode {
        if let Ok(tss) = Tss64::read(&mem, sregs.tr.base) {
            for top in tss.rsp.iter().chain(&tss.ist).filter(|&&top| top != 0) {
                ranges.push((top.wrapping_sub(frame), frame));
            }
        }
    }
    let mut pages = BTreeSet::new();
    for (start, len) in ranges {
        // Counted, not compared: a range may wrap around the top of the address space.
        let first = start & PAGE_MASK;
        let last = start.wrapping_add(len.clamp(1, 0x10000) - 1) & PAGE_MASK;
        let count = (last.wrapping_sub(first) >> 12).min(16) + 1;
        for page in (0..count).map(|i| first.wrapping_add(i << 12)) {
            if let Ok(t) = translate(ram, &regs, page, Access::DEBUGGER) {
                pages.insert(t.phys & PAGE_MASK);
            }
        }
    }
    pages
}

/// A stop at a handler entry, decoded: the frame on the stack, the instruction it names.
fn decode(
    vcpu: u8,
    ram: &GuestRam,
    state: &CpuSnapshot,
    pc: u64,
    entry: &HandlerEntry,
    traced: &BTreeSet<u8>,
    real: bool,
) -> Taken {
    let vector = Vector(
        entry
            .vectors
            .iter()
            .copied()
            .find(|v| traced.contains(v))
            .unwrap_or(entry.vectors[0]),
    );
    let regs = state.control_regs();
    let long_mode = regs.long_mode_active();
    let mem = PagedMemory::new(ram, regs);
    let slot = usize::from(entry.slot);
    let ss_base = if long_mode { 0 } else { state.sregs.ss.base };
    let sp = if slot == 8 {
        state.regs.rsp
    } else {
        state.regs.rsp & 0xffff_ffff
    };
    let mut raw = [0u8; 6 * 8];
    let (read, _) = mem.read_prefix(ss_base.wrapping_add(sp), &mut raw[..4 * slot]);
    // Real mode pushes no error code.
    let frame = parse_frame(&raw[..read], slot, vector.has_error_code() && !real);
    let mut line = format!("vCPU {vcpu}: {vector}");
    if entry.vectors.len() > 1 {
        line += &format!(
            " [ambiguous: handler shared by vectors {}]",
            hex_list(&entry.vectors)
        );
    }
    match frame {
        Some(frame) => {
            if let Some(code) = frame.error {
                let text = vector
                    .describe_error_code(code as u32)
                    .unwrap_or_else(|| format!("{code:#x}"));
                line += &format!(" error {text}");
            }
            if vector == Vector::PF {
                line += &format!(" CR2={:#x}", state.sregs.cr2);
            }
            line += &format!(" {}", instruction(&mem, state, long_mode, &frame, vector));
        }
        None => line += " (exception frame not readable)",
    }
    line += &format!(" -> handler {pc:#x}");
    Taken {
        candidates: entry.vectors.clone(),
        vector,
        line,
    }
}

/// The interrupted instruction's place, as the frame holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) error: Option<u64>,
    pub(crate) rip: u64,
    pub(crate) cs: u16,
}

/// Reads `[error code,] RIP, CS` from `bytes` (the stack at the handler's first instruction),
/// `slot` bytes each.
pub(crate) fn parse_frame(bytes: &[u8], slot: usize, with_error: bool) -> Option<Frame> {
    let value = |i: usize| -> Option<u64> {
        let b = bytes.get(i * slot..(i + 1) * slot)?;
        let mut wide = [0u8; 8];
        wide[..slot].copy_from_slice(b);
        Some(u64::from_le_bytes(wide))
    };
    let first = usize::from(with_error);
    Some(Frame {
        error: if with_error { Some(value(0)?) } else { None },
        rip: value(first)?,
        cs: value(first + 1)? as u16,
    })
}

/// `at CS:RIP` and the instruction there, disassembled (AT&T syntax, as gdb shows it). A trap
/// (`#BP`, `#OF`) saves the address after its instruction: `int3`, `int $3` or `into` just
/// before it is shown at its own address, anything else as `returning to CS:RIP`.
fn instruction(
    mem: &PagedMemory<'_, GuestRam>,
    state: &CpuSnapshot,
    long_mode: bool,
    frame: &Frame,
    vector: Vector,
) -> String {
    let sregs = &state.sregs;
    let gdtr = TableRegister {
        base: sregs.gdt.base,
        limit: sregs.gdt.limit,
    };
    let ldtr = from_kvm_segment(&sregs.ldt);
    let selector = SegmentSelector(frame.cs);
    let descriptor = if sregs.cr0 & 1 == 0 {
        // A real-mode segment's base is its selector times 16: a 16-bit descriptor's base.
        let base = u64::from(frame.cs) << 4;
        Ok(Descriptor::Segment(SegmentDescriptor(
            (base & 0xff_ffff) << 16 | 0xffff,
        )))
    } else {
        descriptor_for(mem, gdtr, &ldtr, selector, long_mode)
    };
    let (base, bitness) = match descriptor {
        Ok(Descriptor::Segment(d)) if long_mode && d.long() => (0, 64),
        Ok(Descriptor::Segment(d)) => (u64::from(d.base()), if d.db() { 32 } else { 16 }),
        _ => {
            return format!(
                "at {:#06x}:{:#x} (CS names no code segment)",
                frame.cs, frame.rip
            )
        }
    };
    let mut rip = frame.rip;
    let mut place = "at";
    if matches!(vector.0, 3 | 4) {
        let mut before = [0u8; 2];
        let (read, _) = mem.read_prefix(base.wrapping_add(rip).wrapping_sub(2), &mut before);
        rip = match (read, before) {
            (2, [_, 0xcc | 0xce]) => rip - 1,
            (2, [0xcd, 0x03]) => rip - 2,
            _ => {
                place = "returning to";
                rip
            }
        };
    }
    let at = format!("{place} {:#06x}:{rip:#x}", frame.cs);
    let mut bytes = [0u8; MAX_INSN];
    let (read, _) = mem.read_prefix(base.wrapping_add(rip), &mut bytes);
    if read == 0 {
        return format!("{at} (instruction not readable)");
    }
    let text = disassemble(&bytes[..read], rip, bitness).unwrap_or_else(|| {
        let hex: Vec<String> = bytes[..read.min(4)]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("(bytes {} do not decode)", hex.join(" "))
    });
    format!("{at} {text}")
}

/// The instruction at the start of `bytes`, fetched at `ip`, in AT&T syntax.
pub(crate) fn disassemble(bytes: &[u8], ip: u64, bitness: u32) -> Option<String> {
    let mut decoder = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return None;
    }
    let mut text = String::new();
    GasFormatter::new().format(&insn, &mut text);
    Some(format!("`{text}`"))
}

/// `0x0e, 0x20`.
fn hex_list(vectors: &[u8]) -> String {
    let items: Vec<String> = vectors.iter().map(|v| format!("{v:#04x}")).collect();
    items.join(", ")
}

/// `0-31,0x80`: ranges of consecutive vectors.
pub(crate) fn vector_list(vectors: &BTreeSet<u8>) -> String {
    let mut parts = Vec::new();
    let mut iter = vectors.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end.wrapping_add(1))) && end != u8::MAX {
            end = iter.next().unwrap_or(end);
        }
        let show = |v: u8| {
            if v < 32 {
                v.to_string()
            } else {
                format!("{v:#x}")
            }
        };
        parts.push(if start == end {
            show(start)
        } else {
            format!("{}-{}", show(start), show(end))
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::notes::blank_cpu;

    /// 32-bit protected mode without paging: a flat code segment 0x08 in a GDT at 0x1000, an
    /// IDT at 0x2000 whose 32-bit interrupt gates lead vector V to 0x3000 + 16 * V, but #PF
    /// and vector 0x20 to one entry at 0x4000; a vCPU stopped there by a #PF of `movl $1,
    /// (%eax)` at 0x5000, its frame on a stack at 0x7000.
    fn protected_mode_fault() -> (GuestRam, CpuSnapshot) {
        let ram = GuestRam::new(2 << 20).unwrap();
        ram.write(0x1008, &0x00cf_9a00_0000_ffffu64.to_le_bytes())
            .unwrap();
        let gate = |offset: u32| -> u64 {
            u64::from(offset & 0xffff) | 0x08 << 16 | 0x8e << 40 | u64::from(offset >> 16) << 48
        };
        for vector in 0..0x21u64 {
            let offset = match vector {
                0x0e | 0x20 => 0x4000,
                v => 0x3000 + 16 * v as u32,
            };
            ram.write(0x2000 + 8 * vector, &gate(offset).to_le_bytes())
                .unwrap();
        }
        ram.write(0x5000, &[0xc7, 0x00, 1, 0, 0, 0]).unwrap();
        let frame: Vec<u8> = [0x2u32, 0x5000, 0x08, 0x202]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        ram.write(0x7000 - 16, &frame).unwrap();
        let mut state = blank_cpu(0);
        state.sregs.cr0 = 0x11;
        state.sregs.gdt.base = 0x1000;
        state.sregs.gdt.limit = 0x0f;
        state.sregs.idt.base = 0x2000;
        state.sregs.idt.limit = 0x21 * 8 - 1;
        state.sregs.cs.selector = 0x08;
        state.sregs.cs.db = 1;
        state.sregs.cs.present = 1;
        state.sregs.cs.s = 1;
        state.sregs.cs.type_ = 0xb;
        state.sregs.cr2 = 0x1234;
        state.regs.rip = 0x4000;
        state.regs.rsp = 0x7000 - 16;
        (ram, state)
    }

    #[test]
    fn a_shared_entry_is_ambiguous_and_a_32_bit_frame_is_decoded() {
        let (ram, state) = protected_mode_fault();
        let mut trace = ExceptionTrace::new((0..32).collect(), Box::new(std::io::sink()), true);
        trace.refresh(&ram, &state);
        assert!(trace.is_entry(0x4000) && trace.is_entry(0x3000));
        assert!(!trace.is_entry(0x3000 + 16 * 0x0e), "no gate leads there");
        let taken = trace.record(0, &ram, &state).expect("on a traced entry");
        assert_eq!(
            taken.line,
            "vCPU 0: #PF (page fault) [ambiguous: handler shared by vectors 0x0e, 0x20] error 0x0002 (not-present, write, supervisor) CR2=0x1234 at 0x0008:0x5000 `movl $1,(%eax)` -> handler 0x4000"
        );
        assert_eq!(taken.candidates, [0x0e, 0x20]);
        assert_eq!(trace.recent(5).len(), 1);
        let breakpoints = trace.breakpoints(&ram, &[state.control_regs()], &BTreeSet::new());
        assert_eq!(
            breakpoints.len(),
            32,
            "one per entry: #PF and 0x20 share one"
        );
        let avoid = [0x4000].into();
        let breakpoints = trace.breakpoints(&ram, &[state.control_regs()], &avoid);
        let shared = breakpoints.iter().find(|bp| bp.addr == 0x4000).unwrap();
        assert!(shared.targets.is_empty(), "no 0xCC on a page to avoid");
        assert!(cpu_written_pages(&ram, &state).is_superset(&[0x1000, 0x2000, 0x6000].into()));
        let mut wrapping = state.clone();
        wrapping.regs.rsp = 0x10;
        assert!(
            cpu_written_pages(&ram, &wrapping).contains(&0),
            "a stack that wraps below 0 ends"
        );
    }

    #[test]
    fn a_real_mode_ivt_is_traced_in_debug_registers_only() {
        let ram = GuestRam::new(2 << 20).unwrap();
        // IVT[0] = 0x0100:0x0020 (#DE), IVT[6] = 0x0000:0x2000 (#UD); the rest empty.
        ram.write(0, &[0x20, 0x00, 0x00, 0x01]).unwrap();
        ram.write(6 * 4, &[0x00, 0x20, 0x00, 0x00]).unwrap();
        ram.write(0x7000, &[0x0f, 0x0b]).unwrap();
        // At #UD's entry: IP 0x7000, CS 0, FLAGS on the stack at 0x8ffa.
        ram.write(0x8ffa, &[0x00, 0x70, 0x00, 0x00, 0x02, 0x00])
            .unwrap();
        let mut state = blank_cpu(0);
        state.sregs.idt.limit = 0x3ff;
        state.regs.rip = 0x2000;
        state.regs.rsp = 0x8ffa;
        let mut trace = ExceptionTrace::new((0..32).collect(), Box::new(std::io::sink()), true);
        trace.refresh(&ram, &state);
        assert!(trace.is_entry(0x1020) && trace.is_entry(0x2000));
        let breakpoints = trace.breakpoints(&ram, &[state.control_regs()], &BTreeSet::new());
        assert_eq!(breakpoints.len(), 2);
        assert!(breakpoints.iter().all(|bp| bp.targets.is_empty()));
        let taken = trace.record(0, &ram, &state).unwrap();
        assert_eq!(
            taken.line,
            "vCPU 0: #UD (invalid opcode) at 0x0000:0x7000 `ud2` -> handler 0x2000"
        );
    }

    #[test]
    fn repeated_lines_become_a_count() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let shared = Shared::default();
        let mut trace = ExceptionTrace::new([14].into(), Box::new(shared.clone()), false);
        for line in ["a", "b", "b", "b", "c", "c"] {
            trace.write(line);
        }
        trace.on = true;
        trace.finish();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "a\nb\n... (x3)\nc\n... (x2)\nexception trace: 0 exceptions traced\n"
        );
    }

    #[test]
    fn frames_of_each_width_with_and_without_error_code() {
        let mut long = Vec::new();
        for v in [0x2u64, 0x1234, 0x08, 0x202] {
            long.extend(v.to_le_bytes());
        }
        assert_eq!(
            parse_frame(&long, 8, true),
            Some(Frame {
                error: Some(2),
                rip: 0x1234,
                cs: 8
            })
        );
        assert_eq!(
            parse_frame(&long, 8, false),
            Some(Frame {
                error: None,
                rip: 2,
                cs: 0x1234
            })
        );
        let mut narrow = Vec::new();
        for v in [0x1000u32, 0x10, 0x2] {
            narrow.extend(v.to_le_bytes());
        }
        assert_eq!(
            parse_frame(&narrow, 4, false),
            Some(Frame {
                error: None,
                rip: 0x1000,
                cs: 0x10
            })
        );
        assert_eq!(parse_frame(&narrow[..6], 4, false), None, "short read");
    }

    #[test]
    fn instructions_disassemble_in_att_syntax() {
        assert_eq!(
            disassemble(&[0x0f, 0x0b], 0x1000, 64).as_deref(),
            Some("`ud2`")
        );
        assert_eq!(
            disassemble(&[0xc7, 0x00, 1, 0, 0, 0], 0x1000, 64).as_deref(),
            Some("`movl $1,(%rax)`")
        );
        assert_eq!(disassemble(&[0x0f], 0, 32), None);
    }

    #[test]
    fn vector_lists_show_ranges() {
        let set: BTreeSet<u8> = (0..32).chain([0x80, 0xfe, 0xff]).collect();
        assert_eq!(vector_list(&set), "0-31,0x80,0xfe-0xff");
        assert_eq!(vector_list(&[3].into()), "3");
    }
}
