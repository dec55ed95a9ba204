//! Decoders for the guest's own tables: GDT, LDT, IDT, TSS, and the page tables as a whole.
//!
//! Everything here reads guest memory the guest may have scribbled over, so every iterator is
//! bounded by a budget of entries visited and reports unreadable or reserved entries as items
//! rather than stopping. Nothing panics or loops on hostile input: recursive page-table slots or
//! tables pointing at themselves only cost budget, which ends the walk with [`TableError::Truncated`].

use super::cpu::{ControlRegs, PagingMode};
use super::paging::{
    EntryKind, Level, LinearMemory, LinearReadError, PageSize, PageTableFlags, PagingCtx, Rights,
};
use super::phys::PhysMemory;
use super::segment::{Descriptor, TableRegister};
use std::fmt;
use thiserror::Error;

/// Entries visited before a descriptor-table iterator gives up (a GDT has at most 8192).
pub const DEFAULT_DESCRIPTOR_BUDGET: usize = 8192;
/// Entries visited before a page-table enumeration gives up: enough for 16 GiB in 4 KiB pages.
pub(crate) const DEFAULT_PAGE_BUDGET: usize = 1 << 23;

/// A problem met while decoding tables; iteration continues after all but `Truncated`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TableError {
    /// An entry cannot be read.
    #[error("entry {index} at linear {addr:#x} cannot be read: {source}")]
    Unreadable {
        /// Its index.
        index: usize,
        /// Its linear address.
        addr: u64,
        /// Why it cannot be read.
        source: LinearReadError,
    },
    #[error(
        "{level} at {entry_addr:#x} = {raw:#x} (linear {linear:#x}) has reserved bits {bits:#x}"
    )]
    /// A paging entry has reserved bits set.
    ReservedBits {
        /// The first linear address it maps.
        linear: u64,
        /// Its level.
        level: Level,
        /// Its physical address.
        entry_addr: u64,
        /// Its value.
        raw: u64,
        /// The reserved bits set.
        bits: u64,
    },
    /// A paging structure lies outside RAM.
    #[error("{level} table for linear {linear:#x} at physical {addr:#x} is outside RAM")]
    TableOutsideRam {
        /// The first linear address it maps.
        linear: u64,
        /// Its level.
        level: Level,
        /// Its physical address.
        addr: u64,
    },
    #[error("stopped after visiting {visited} entries (budget exhausted); output is truncated")]
    /// The entry budget ran out: what was decoded so far is returned.
    Truncated {
        /// Entries visited.
        visited: usize,
    },
}

/// Which descriptor table an entry came from; decides how entries are named and sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// The GDT.
    Gdt,
    /// An LDT.
    Ldt,
    /// The IDT.
    Idt,
}

/// One decoded descriptor-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    pub(crate) table: TableKind,
    /// Entry index (GDT/LDT: selector >> 3; IDT: vector).
    pub(crate) index: usize,
    /// Linear address of the entry.
    pub(crate) addr: u64,
    pub(crate) raw: u64,
    /// Upper 8 bytes of a 16-byte entry.
    pub raw_high: Option<u64>,
    /// The decoded entry.
    pub descriptor: Descriptor,
}

impl fmt::Display for TableEntry {
    /// `GDT[0x0008]=Code segment, …`, `LDT[1]=…`, `IDT[0x0e]=64-Bit Interrupt Gate …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.table {
            TableKind::Gdt => write!(f, "GDT[{:#06x}]={}", self.index * 8, self.descriptor),
            TableKind::Ldt => write!(f, "LDT[{}]={}", self.index, self.descriptor),
            TableKind::Idt => write!(f, "IDT[{:#04x}]={}", self.index, self.descriptor),
        }
    }
}

/// Iterator over a GDT, LDT or IDT. 16-byte entries are consumed whole in long mode.
pub struct DescriptorTable<'a, L: ?Sized> {
    mem: &'a L,
    kind: TableKind,
    base: u64,
    limit: u64,
    long_mode: bool,
    offset: u64,
    visited: usize,
    budget: usize,
    done: bool,
}

impl<'a, L: LinearMemory + ?Sized> DescriptorTable<'a, L> {
    /// A table of `kind` at linear `base` whose last valid byte is at `base + limit`.
    pub fn new(mem: &'a L, kind: TableKind, base: u64, limit: u64, long_mode: bool) -> Self {
        DescriptorTable {
            mem,
            kind,
            base,
            limit,
            long_mode,
            offset: 0,
            visited: 0,
            budget: DEFAULT_DESCRIPTOR_BUDGET,
            done: false,
        }
    }

    /// Limits the number of entries visited.
    pub fn with_budget(mut self, budget: usize) -> Self {
        self.budget = budget;
        self
    }

    fn read(&self, addr: u64, index: usize) -> Result<u64, TableError> {
        let mut b = [0u8; 8];
        self.mem
            .read_linear(addr, &mut b)
            .map(|_| u64::from_le_bytes(b))
            .map_err(|source| TableError::Unreadable {
                index,
                addr,
                source,
            })
    }
}

/// The GDT that GDTR describes.
pub fn gdt<L: LinearMemory + ?Sized>(
    mem: &L,
    gdtr: TableRegister,
    long_mode: bool,
) -> DescriptorTable<'_, L> {
    DescriptorTable::new(mem, TableKind::Gdt, gdtr.base, gdtr.limit as u64, long_mode)
}

/// The LDT at `base` with byte limit `limit` (from LDTR's hidden cache, or its GDT descriptor).
pub fn ldt<L: LinearMemory + ?Sized>(
    mem: &L,
    base: u64,
    limit: u32,
    long_mode: bool,
) -> DescriptorTable<'_, L> {
    DescriptorTable::new(mem, TableKind::Ldt, base, limit as u64, long_mode)
}

/// The protected/long-mode IDT that IDTR describes (at most 256 vectors).
pub fn idt<L: LinearMemory + ?Sized>(
    mem: &L,
    idtr: TableRegister,
    long_mode: bool,
) -> DescriptorTable<'_, L> {
    DescriptorTable::new(mem, TableKind::Idt, idtr.base, idtr.limit as u64, long_mode)
}

impl<L: LinearMemory + ?Sized> Iterator for DescriptorTable<'_, L> {
    type Item = Result<TableEntry, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let size = if self.kind == TableKind::Idt && self.long_mode {
            16
        } else {
            8
        };
        let index = match self.kind {
            TableKind::Idt => (self.offset / size) as usize,
            _ => (self.offset / 8) as usize,
        };
        if self.offset + 7 > self.limit || (self.kind == TableKind::Idt && index > 255) {
            self.done = true;
            return None;
        }
        if self.visited >= self.budget {
            self.done = true;
            return Some(Err(TableError::Truncated {
                visited: self.visited,
            }));
        }
        self.visited += 1;
        let addr = self.base.wrapping_add(self.offset);
        let low = match self.read(addr, index) {
            Ok(v) => v,
            Err(e) => {
                self.offset += size;
                return Some(Err(e));
            }
        };
        let wide = match self.kind {
            TableKind::Idt => self.long_mode,
            _ => Descriptor::is_wide(low, self.long_mode),
        };
        let mut raw_high = None;
        if wide && self.offset + 15 <= self.limit {
            match self.read(addr.wrapping_add(8), index) {
                Ok(v) => raw_high = Some(v),
                Err(e) => {
                    self.offset += 16;
                    return Some(Err(e));
                }
            }
        }
        self.offset += if wide { 16 } else { 8 };
        let descriptor = Descriptor::decode(low, raw_high.unwrap_or(0), self.long_mode);
        Some(Ok(TableEntry {
            table: self.kind,
            index,
            addr,
            raw: low,
            raw_high,
            descriptor,
        }))
    }
}

/// Real-mode interrupt vector table entries (`segment:offset`), up to 256 or the IDTR limit.
pub fn ivt<L: LinearMemory + ?Sized>(
    mem: &L,
    idtr: TableRegister,
) -> Vec<Result<(u8, u16, u16), TableError>> {
    let count = ((idtr.limit as usize + 1) / 4).min(256);
    (0..count)
        .map(|v| {
            let addr = idtr.base.wrapping_add(v as u64 * 4);
            let mut b = [0u8; 4];
            mem.read_linear(addr, &mut b)
                .map(|_| {
                    (
                        v as u8,
                        u16::from_le_bytes([b[2], b[3]]),
                        u16::from_le_bytes([b[0], b[1]]),
                    )
                })
                .map_err(|source| TableError::Unreadable {
                    index: v,
                    addr,
                    source,
                })
        })
        .collect()
}

/// A 32-bit task-state segment (104 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tss32 {
    pub(crate) link: u16,
    /// (ESP, SS) for rings 0, 1, 2.
    pub stacks: [(u32, u16); 3],
    /// CR3: the task's page tables.
    pub cr3: u32,
    /// EIP.
    pub eip: u32,
    pub(crate) eflags: u32,
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI.
    pub(crate) gprs: [u32; 8],
    /// ES, CS, SS, DS, FS, GS.
    pub segments: [u16; 6],
    /// LDT selector.
    pub ldt: u16,
    /// T: debug trap on task switch.
    pub(crate) trap: bool,
    pub(crate) iomap_base: u16,
}

/// A 64-bit task-state segment (104 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tss64 {
    /// RSP0..RSP2.
    pub rsp: [u64; 3],
    /// IST1..IST7.
    pub ist: [u64; 7],
    /// Offset of the I/O permission bitmap.
    pub iomap_base: u16,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Size of both TSS formats without the I/O bitmap.
pub const TSS_SIZE: usize = 104;

impl Tss32 {
    /// Decodes the architectural layout.
    pub fn from_bytes(b: &[u8; TSS_SIZE]) -> Self {
        let mut t = Tss32 {
            link: le16(b, 0),
            cr3: le32(b, 28),
            eip: le32(b, 32),
            eflags: le32(b, 36),
            ldt: le16(b, 96),
            trap: b[100] & 1 != 0,
            iomap_base: le16(b, 102),
            ..Default::default()
        };
        for r in 0..3 {
            t.stacks[r] = (le32(b, 4 + r * 8), le16(b, 8 + r * 8));
        }
        for r in 0..8 {
            t.gprs[r] = le32(b, 40 + r * 4);
        }
        for s in 0..6 {
            t.segments[s] = le16(b, 72 + s * 4);
        }
        t
    }

    /// Reads and decodes the TSS at linear `base`.
    pub fn read<L: LinearMemory + ?Sized>(mem: &L, base: u64) -> Result<Self, TableError> {
        read_tss_bytes(mem, base).map(|b| Self::from_bytes(&b))
    }
}

/// The architectural part of a TSS (32- or 64-bit) at linear `base`.
fn read_tss_bytes<L: LinearMemory + ?Sized>(
    mem: &L,
    base: u64,
) -> Result<[u8; TSS_SIZE], TableError> {
    let mut b = [0u8; TSS_SIZE];
    mem.read_linear(base, &mut b)
        .map_err(|source| TableError::Unreadable {
            index: 0,
            addr: base,
            source,
        })?;
    Ok(b)
}

impl Tss64 {
    /// Decodes the architectural layout.
    pub fn from_bytes(b: &[u8; TSS_SIZE]) -> Self {
        let mut t = Tss64 {
            iomap_base: le16(b, 102),
            ..Default::default()
        };
        for r in 0..3 {
            t.rsp[r] = le64(b, 4 + r * 8);
        }
        for i in 0..7 {
            t.ist[i] = le64(b, 36 + i * 8);
        }
        t
    }

    /// Reads and decodes the TSS at linear `base`.
    pub(crate) fn read<L: LinearMemory + ?Sized>(mem: &L, base: u64) -> Result<Self, TableError> {
        read_tss_bytes(mem, base).map(|b| Self::from_bytes(&b))
    }
}

impl fmt::Display for Tss32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (r, (esp, ss)) in self.stacks.iter().enumerate() {
            writeln!(f, "ss{r}:esp{r} = {ss:#06x}:{esp:#010x}")?;
        }
        writeln!(
            f,
            "cr3 = {:#010x}  eip = {:#010x}  eflags = {:#010x}",
            self.cr3, self.eip, self.eflags
        )?;
        let names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
        for (n, v) in names.iter().zip(self.gprs) {
            writeln!(f, "{n} = {v:#010x}")?;
        }
        let segs = ["es", "cs", "ss", "ds", "fs", "gs"];
        for (n, v) in segs.iter().zip(self.segments) {
            writeln!(f, "{n} = {v:#06x}")?;
        }
        write!(
            f,
            "ldt = {:#06x}  link = {:#06x}  T = {}  iomap = {:#06x}",
            self.ldt, self.link, self.trap as u8, self.iomap_base
        )
    }
}

impl fmt::Display for Tss64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (r, v) in self.rsp.iter().enumerate() {
            writeln!(f, "rsp{r} = {v:#018x}")?;
        }
        for (i, v) in self.ist.iter().enumerate() {
            writeln!(f, "ist{} = {v:#018x}", i + 1)?;
        }
        write!(f, "iomap = {:#06x}", self.iomap_base)
    }
}

/// Options for page-table enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumOptions {
    /// Entries (present or not) that may be examined before stopping with `Truncated`.
    pub budget: usize,
    /// First linear address of interest (inclusive).
    pub start: u64,
    /// Last linear address of interest (inclusive).
    pub end: u64,
}

impl Default for EnumOptions {
    fn default() -> Self {
        EnumOptions {
            budget: DEFAULT_PAGE_BUDGET,
            start: 0,
            end: u64::MAX,
        }
    }
}

/// One mapped page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Linear address of the page (canonical, sign-extended in long mode).
    pub linear: u64,
    /// Physical address of the page.
    pub phys: u64,
    /// Page size.
    pub size: PageSize,
    /// Rights combined over the path.
    pub rights: Rights,
    /// Flags of the leaf entry.
    pub(crate) flags: PageTableFlags,
    /// The level of the leaf entry.
    pub level: Level,
}

/// A run of pages contiguous in both linear and physical space with identical rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedRange {
    /// First linear byte.
    pub linear_start: u64,
    /// Last linear byte (inclusive, as Bochs prints it).
    pub linear_end: u64,
    /// First physical byte.
    pub phys_start: u64,
    /// Bytes mapped.
    pub size: u64,
    /// Rights combined over the path.
    pub rights: Rights,
    /// Global pages (G): they survive CR3 reloads in the TLB.
    pub(crate) global: bool,
    /// Number of leaf entries merged.
    pub pages: u64,
}

impl MappedRange {
    /// Last physical byte (inclusive).
    pub(crate) fn phys_end(&self) -> u64 {
        self.phys_start + (self.size - 1)
    }
}

impl fmt::Display for MappedRange {
    /// `0x0000000000400000-0x00000000005fffff -> 0x0000000000200000-0x00000000003fffff 0x0000000000200000 urw-`,
    /// with ` G` appended for global pages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#018x}-{:#018x} -> {:#018x}-{:#018x} {:#018x} {}{}",
            self.linear_start,
            self.linear_end,
            self.phys_start,
            self.phys_end(),
            self.size,
            self.rights,
            if self.global { " G" } else { "" }
        )
    }
}

struct Frame {
    depth: usize,
    index: usize,
    count: usize,
    lin_base: u64,
    rights: Rights,
}

/// Depth-first iterator over every mapped page, in linear order.
pub struct Leaves<'a, M: ?Sized> {
    mem: &'a M,
    ctx: PagingCtx,
    opts: EnumOptions,
    visited: usize,
    done: bool,
    stack: Vec<Frame>,
    /// Entries of the table currently open at each depth.
    bufs: Vec<Vec<u64>>,
    raw: Vec<u8>,
    bits: u32,
    /// Table physical address currently open at each depth (for reporting entry addresses).
    tables: [u64; 5],
    /// A problem to report before anything else (the root table is unreadable).
    first_error: Option<TableError>,
}

/// Enumerates the page tables `regs` select. With paging off, yields nothing.
pub fn leaves<'a, M: PhysMemory + ?Sized>(
    mem: &'a M,
    regs: &ControlRegs,
    opts: EnumOptions,
) -> Leaves<'a, M> {
    let ctx = PagingCtx::new(regs);
    let bits = ctx.mode.linear_bits();
    let mask = (1u64 << bits) - 1;
    let (start, end, empty) = if bits == 32 {
        (opts.start, opts.end.min(mask), opts.start > mask)
    } else {
        // Canonical addresses map monotonically onto 0..2^bits once masked.
        (opts.start & mask, opts.end & mask, false)
    };
    let mut it = Leaves {
        mem,
        ctx,
        opts: EnumOptions { start, end, ..opts },
        visited: 0,
        done: ctx.mode == PagingMode::None || empty || start > end,
        stack: Vec::with_capacity(5),
        bufs: vec![Vec::new(); 5],
        raw: Vec::new(),
        bits,
        tables: [0; 5],
        first_error: None,
    };
    if !it.done {
        if let Err(e) = it.open(0, ctx.root, 0, Rights::WRITE | Rights::USER) {
            it.first_error = Some(e);
        }
    }
    it
}

impl<M: PhysMemory + ?Sized> Leaves<'_, M> {
    /// Number of entries examined so far.
    pub fn visited(&self) -> usize {
        self.visited
    }

    fn canonical(&self, lin: u64) -> u64 {
        match self.ctx.mode {
            PagingMode::Level4 | PagingMode::Level5 => super::addr::sign_extend(lin, self.bits),
            _ => lin,
        }
    }

    /// Reads the table at `table` for `depth` into its buffer and pushes a frame.
    fn open(
        &mut self,
        depth: usize,
        table: u64,
        lin_base: u64,
        rights: Rights,
    ) -> Result<(), TableError> {
        let (level, _, nbits) = self.ctx.levels()[depth];
        let count = 1usize << nbits;
        let esize = self.ctx.entry_size() as usize;
        let buf = &mut self.bufs[depth];
        buf.clear();
        if let Some(p0) = self.ctx.pdptr(level, 0) {
            buf.push(p0);
            for i in 1..4 {
                buf.push(self.ctx.pdptr(level, i).unwrap_or(0));
            }
        } else {
            self.raw.resize(count * esize, 0);
            if self.mem.read_phys(table, &mut self.raw).is_err() {
                return Err(TableError::TableOutsideRam {
                    linear: self.canonical(lin_base),
                    level,
                    addr: table,
                });
            }
            if esize == 8 {
                buf.extend(
                    self.raw
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
                );
            } else {
                buf.extend(
                    self.raw
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64),
                );
            }
        }
        self.tables[depth] = table;
        self.stack.push(Frame {
            depth,
            index: 0,
            count,
            lin_base,
            rights,
        });
        Ok(())
    }
}

impl<M: PhysMemory + ?Sized> Iterator for Leaves<'_, M> {
    type Item = Result<Leaf, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.first_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        loop {
            let Some(top) = self.stack.last_mut() else {
                self.done = true;
                return None;
            };
            if top.index >= top.count {
                self.stack.pop();
                continue;
            }
            if self.visited >= self.opts.budget {
                self.done = true;
                return Some(Err(TableError::Truncated {
                    visited: self.visited,
                }));
            }
            self.visited += 1;
            let depth = top.depth;
            let i = top.index;
            top.index += 1;
            let (level, shift, _) = self.ctx.levels()[depth];
            let lin = top.lin_base + ((i as u64) << shift);
            let span_end = lin + ((1u64 << shift) - 1);
            if span_end < self.opts.start || lin > self.opts.end {
                if lin > self.opts.end {
                    // Entries are in linear order: nothing further in this table matters.
                    top.index = top.count;
                }
                continue;
            }
            let rights_in = top.rights;
            let raw = self.bufs[depth][i];
            match self.ctx.decode(level, raw) {
                EntryKind::NotPresent => continue,
                EntryKind::Reserved(bits) => {
                    return Some(Err(TableError::ReservedBits {
                        linear: self.canonical(lin),
                        level,
                        entry_addr: self.tables[depth] + i as u64 * self.ctx.entry_size(),
                        raw,
                        bits,
                    }))
                }
                EntryKind::Table(next) => {
                    let rights = self.ctx.combine(rights_in, level, raw);
                    if let Err(e) = self.open(depth + 1, next, lin, rights) {
                        return Some(Err(e));
                    }
                }
                EntryKind::Page(phys, size) => {
                    return Some(Ok(Leaf {
                        linear: self.canonical(lin),
                        phys,
                        size,
                        rights: self.ctx.combine(rights_in, level, raw),
                        flags: PageTableFlags::from_bits_truncate(raw),
                        level,
                    }))
                }
            }
        }
    }
}

/// Merges consecutive leaves into [`MappedRange`]s; problems pass through in order.
pub struct Ranges<I> {
    inner: I,
    pending: Option<MappedRange>,
    queued: Option<TableError>,
}

impl<I: Iterator<Item = Result<Leaf, TableError>>> Ranges<I> {
    /// Coalesces the leaves of `inner`.
    pub(crate) fn new(inner: I) -> Self {
        Ranges {
            inner,
            pending: None,
            queued: None,
        }
    }
}

impl<I: Iterator<Item = Result<Leaf, TableError>>> Iterator for Ranges<I> {
    type Item = Result<MappedRange, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.queued.take() {
            return Some(Err(e));
        }
        loop {
            match self.inner.next() {
                None => return self.pending.take().map(Ok),
                Some(Err(e)) => match self.pending.take() {
                    Some(r) => {
                        self.queued = Some(e);
                        return Some(Ok(r));
                    }
                    None => return Some(Err(e)),
                },
                Some(Ok(leaf)) => {
                    let bytes = leaf.size.bytes();
                    if let Some(p) = &mut self.pending {
                        if p.linear_end.wrapping_add(1) == leaf.linear
                            && p.phys_start + p.size == leaf.phys
                            && p.rights == leaf.rights
                            && p.global == leaf.flags.contains(PageTableFlags::GLOBAL)
                        {
                            p.linear_end = leaf.linear + (bytes - 1);
                            p.size += bytes;
                            p.pages += 1;
                            continue;
                        }
                    }
                    let fresh = MappedRange {
                        linear_start: leaf.linear,
                        linear_end: leaf.linear + (bytes - 1),
                        phys_start: leaf.phys,
                        size: bytes,
                        rights: leaf.rights,
                        global: leaf.flags.contains(PageTableFlags::GLOBAL),
                        pages: 1,
                    };
                    if let Some(done) = self.pending.replace(fresh) {
                        return Some(Ok(done));
                    }
                }
            }
        }
    }
}

/// Coalesced ranges of the page tables `regs` select.
pub fn ranges<'a, M: PhysMemory + ?Sized>(
    mem: &'a M,
    regs: &ControlRegs,
    opts: EnumOptions,
) -> Ranges<Leaves<'a, M>> {
    Ranges::new(leaves(mem, regs, opts))
}

/// Everything an `info tab`-style dump needs, collected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enumeration {
    /// Contiguous runs of pages with the same rights.
    pub ranges: Vec<MappedRange>,
    /// Every leaf, if requested.
    pub leaves: Vec<Leaf>,
    /// Reserved entries and tables outside RAM met on the way.
    pub problems: Vec<TableError>,
    /// Set when the budget ran out: the output covers only part of the address space.
    pub truncated: bool,
    /// Entries visited.
    pub visited: usize,
}

/// Walks all page tables once, collecting ranges (and every leaf if `keep_leaves`).
pub fn enumerate<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    opts: EnumOptions,
    keep_leaves: bool,
) -> Enumeration {
    let mut out = Enumeration::default();
    let mut it = leaves(mem, regs, opts);
    let mut ranges = Ranges::new(std::iter::from_fn(|| {
        let item = it.next()?;
        if let (Ok(leaf), true) = (&item, keep_leaves) {
            out.leaves.push(*leaf);
        }
        Some(item)
    }));
    let mut collected = Vec::new();
    let mut problems = Vec::new();
    let mut truncated = false;
    for item in &mut ranges {
        match item {
            Ok(r) => collected.push(r),
            Err(TableError::Truncated { .. }) => truncated = true,
            Err(e) => problems.push(e),
        }
    }
    drop(ranges);
    out.ranges = collected;
    out.problems = problems;
    out.truncated = truncated;
    out.visited = it.visited();
    out
}
