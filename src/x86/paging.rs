//! The page walk: linear → physical, for every paging mode, with a per-level trace.
//!
//! The walk reads entries through [`PhysMemory`] exactly as the CPU would (Intel SDM vol. 3,
//! chapter 4), but never writes: accessed/dirty bits are left alone, so inspecting a guest from
//! the debugger does not change it. Protection keys and the PAT memory types are not modelled.

use super::cpu::{ControlRegs, Cr0Flags, Cr4Flags, EferFlags, PagingMode};
use super::phys::{PhysMemory, PhysMemoryError};
use bitflags::bitflags;
use std::fmt;
use std::ops::Range;
use thiserror::Error;

bitflags! {
    /// The flag bits of a page-table entry at any level (bits that are address bits are not flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PageTableFlags: u64 {
        /// P: the entry maps something.
        const PRESENT = 1 << 0;
        /// R/W: writes allowed (needed at every level).
        const WRITABLE = 1 << 1;
        /// U/S: user-mode accesses allowed (needed at every level).
        const USER = 1 << 2;
        /// PWT: write-through caching.
        const WRITE_THROUGH = 1 << 3;
        /// PCD: caching disabled.
        const NO_CACHE = 1 << 4;
        /// A: set by the CPU when the entry was used.
        const ACCESSED = 1 << 5;
        /// D: set by the CPU on a write through a leaf entry.
        const DIRTY = 1 << 6;
        /// PS: the entry maps a large page (in a PTE this bit is PAT instead).
        const HUGE_PAGE = 1 << 7;
        /// G: translation survives CR3 loads when CR4.PGE is set.
        const GLOBAL = 1 << 8;
        /// Bit 9: free for the OS.
        const BIT_9 = 1 << 9;
        /// Bit 10: free for the OS.
        const BIT_10 = 1 << 10;
        /// Bit 11: free for the OS (HLAT restart under some modes).
        const BIT_11 = 1 << 11;
        /// PAT bit of a large-page entry.
        const PAT_HUGE = 1 << 12;
        /// XD: instruction fetches not allowed (only with EFER.NXE, wide entries).
        const NO_EXECUTE = 1 << 63;
    }
}

/// One page-table entry as stored in memory (4-byte entries are zero-extended).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub(crate) struct PageTableEntry(u64);

impl PageTableEntry {
    /// The raw value.
    pub(crate) const fn raw(self) -> u64 {
        self.0
    }
    /// The flag bits.
    pub(crate) const fn flags(self) -> PageTableFlags {
        PageTableFlags::from_bits_truncate(self.0)
    }
}

impl fmt::Debug for PageTableEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageTableEntry({:#x}, {:?})", self.0, self.flags())
    }
}

/// A paging-structure level, named after its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Level {
    /// 5-level paging's top level (PML5E).
    Pml5,
    /// PML4E.
    Pml4,
    /// Page-directory-pointer-table entry.
    Pdpte,
    /// Page-directory entry.
    #[default]
    Pde,
    /// Page-table entry.
    Pte,
}

impl Level {
    /// The usual short name (`PML5`, `PML4`, `PDPTE`, `PDE`, `PTE`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Pml5 => "PML5",
            Level::Pml4 => "PML4",
            Level::Pdpte => "PDPTE",
            Level::Pde => "PDE",
            Level::Pte => "PTE",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Size of a page mapped by a leaf entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PageSize {
    /// 4 KiB.
    #[default]
    Size4K,
    /// 2 MiB (PAE, 4- and 5-level paging).
    Size2M,
    /// 4 MiB (32-bit paging with CR4.PSE).
    Size4M,
    /// 1 GiB.
    Size1G,
}

impl PageSize {
    /// Bytes in the page.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 0x1000,
            PageSize::Size2M => 0x20_0000,
            PageSize::Size4M => 0x40_0000,
            PageSize::Size1G => 0x4000_0000,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            PageSize::Size4K => "4 KiB",
            PageSize::Size2M => "2 MiB",
            PageSize::Size4M => "4 MiB",
            PageSize::Size1G => "1 GiB",
        })
    }
}

bitflags! {
    /// Effective rights of a translation, combined over all levels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Rights: u8 {
        /// Writable at every level.
        const WRITE = 1 << 0;
        /// User-accessible at every level.
        const USER = 1 << 1;
        /// XD set at some level (and EFER.NXE on).
        const NO_EXEC = 1 << 2;
    }
}

impl fmt::Display for Rights {
    /// QEMU `info mem` style plus execute: `urwx`, `-r--`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = [
            if self.contains(Rights::USER) {
                'u'
            } else {
                '-'
            },
            'r',
            if self.contains(Rights::WRITE) {
                'w'
            } else {
                '-'
            },
            if self.contains(Rights::NO_EXEC) {
                '-'
            } else {
                'x'
            },
        ];
        f.pad(&s.iter().collect::<String>())
    }
}

/// What a single entry means once decoded in its level and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum EntryKind {
    /// P = 0.
    #[default]
    NotPresent,
    /// Present, but these reserved bits are set: the CPU raises #PF with RSVD.
    Reserved(u64),
    /// Points to the next-level table at this physical address.
    Table(u64),
    /// Maps a page starting at this physical address.
    Page(u64, PageSize),
}

/// Kind of memory access, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AccessKind {
    Read,
    Write,
    Execute,
}

/// An access to check against a translation's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    pub(crate) kind: AccessKind,
    /// CPL 3 (and not an implicit supervisor access such as a GDT read).
    pub(crate) user: bool,
    /// EFLAGS.AC = 1 on an explicit supervisor access: lifts SMAP.
    pub(crate) smap_override: bool,
}

impl Access {
    /// What a debugger needs: any present mapping is readable (supervisor read, SMAP lifted).
    pub const DEBUGGER: Access = Access {
        kind: AccessKind::Read,
        user: false,
        smap_override: true,
    };
    /// A data read at the given privilege.
    pub const fn read(user: bool) -> Self {
        Access {
            kind: AccessKind::Read,
            user,
            smap_override: false,
        }
    }
    /// A data write at the given privilege.
    pub const fn write(user: bool) -> Self {
        Access {
            kind: AccessKind::Write,
            user,
            smap_override: false,
        }
    }
    /// An instruction fetch at the given privilege.
    pub const fn fetch(user: bool) -> Self {
        Access {
            kind: AccessKind::Execute,
            user,
            smap_override: false,
        }
    }
    /// The same access with EFLAGS.AC as given (matters only for supervisor data accesses).
    pub const fn with_eflags_ac(mut self, ac: bool) -> Self {
        self.smap_override = ac;
        self
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.user { "user" } else { "supervisor" };
        let what = match self.kind {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::Execute => "fetch",
        };
        write!(f, "{who} {what}")
    }
}

bitflags! {
    /// The #PF error code pushed by the CPU (SDM vol. 3, 4.7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PageFaultCode: u32 {
        /// P: 0 = not present, 1 = protection violation.
        const PRESENT = 1 << 0;
        /// W/R: the access was a write.
        const WRITE = 1 << 1;
        /// U/S: the access was a user-mode access.
        const USER = 1 << 2;
        /// RSVD: a reserved bit was set in some entry.
        const RESERVED = 1 << 3;
        /// I/D: instruction fetch (reported only with SMEP or PAE+NXE).
        const FETCH = 1 << 4;
        /// PK: protection-key violation.
        const PROTECTION_KEY = 1 << 5;
        /// SS: shadow-stack access.
        const SHADOW_STACK = 1 << 6;
    }
}

impl PageFaultCode {
    /// Builds the code the CPU would push for `access` (see SDM 4.7 for the I/D condition).
    pub(crate) fn for_access(
        access: Access,
        regs: &ControlRegs,
        present: bool,
        rsvd: bool,
    ) -> Self {
        let mut c = PageFaultCode::empty();
        c.set(PageFaultCode::PRESENT, present);
        c.set(PageFaultCode::WRITE, access.kind == AccessKind::Write);
        c.set(PageFaultCode::USER, access.user);
        c.set(PageFaultCode::RESERVED, rsvd);
        let id_reported = regs.cr4.contains(Cr4Flags::SMEP)
            || (regs.cr4.contains(Cr4Flags::PAE) && regs.efer.contains(EferFlags::NXE));
        c.set(
            PageFaultCode::FETCH,
            access.kind == AccessKind::Execute && id_reported,
        );
        c
    }
}

impl fmt::Display for PageFaultCode {
    /// `0x0002 (not-present, write, supervisor)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![
            if self.contains(PageFaultCode::PRESENT) {
                "protection"
            } else {
                "not-present"
            },
            if self.contains(PageFaultCode::WRITE) {
                "write"
            } else {
                "read"
            },
            if self.contains(PageFaultCode::USER) {
                "user"
            } else {
                "supervisor"
            },
        ];
        if self.contains(PageFaultCode::RESERVED) {
            parts.push("reserved-bit");
        }
        if self.contains(PageFaultCode::FETCH) {
            parts[1] = "fetch";
        }
        if self.contains(PageFaultCode::PROTECTION_KEY) {
            parts.push("pkey");
        }
        if self.contains(PageFaultCode::SHADOW_STACK) {
            parts.push("shadow-stack");
        }
        write!(f, "{:#06x} ({})", self.bits(), parts.join(", "))
    }
}

/// A page fault the CPU would raise, for display: `#PF would be raised: error code 0x0002 (...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting linear address (what CR2 would hold).
    pub linear: u64,
    /// The error code it would push.
    pub code: PageFaultCode,
}

impl fmt::Display for PageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#PF would be raised: error code {}", self.code)
    }
}

/// Decides whether `access` is allowed on a page with `rights`; the error is the #PF code.
///
/// Follows SDM vol. 3, 4.6: user accesses need U everywhere, writes need W (supervisor writes only
/// with CR0.WP), fetches fail on XD, SMEP blocks supervisor fetches from user pages and SMAP blocks
/// supervisor data accesses to user pages unless EFLAGS.AC lifts it.
pub(crate) fn check_access(
    rights: Rights,
    access: Access,
    regs: &ControlRegs,
) -> Result<(), PageFaultCode> {
    if !regs.cr0.contains(Cr0Flags::PG) {
        return Ok(());
    }
    let user_page = rights.contains(Rights::USER);
    let writable = rights.contains(Rights::WRITE);
    let nx = rights.contains(Rights::NO_EXEC);
    let denied = if access.user {
        !user_page
            || (access.kind == AccessKind::Write && !writable)
            || (access.kind == AccessKind::Execute && nx)
    } else {
        let smap = regs.cr4.contains(Cr4Flags::SMAP) && user_page && !access.smap_override;
        match access.kind {
            AccessKind::Read => smap,
            AccessKind::Write => smap || (regs.cr0.contains(Cr0Flags::WP) && !writable),
            AccessKind::Execute => nx || (regs.cr4.contains(Cr4Flags::SMEP) && user_page),
        }
    };
    if denied {
        Err(PageFaultCode::for_access(access, regs, true, false))
    } else {
        Ok(())
    }
}

/// One level of a walk, as read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceEntry {
    /// The level of the entry.
    pub level: Level,
    /// Index of the entry within its table.
    pub index: u16,
    /// Physical address the entry was read from.
    pub entry_addr: u64,
    pub(crate) entry: PageTableEntry,
    /// The entry came from a PDPTE register, not memory (PAE with known PDPTRs).
    pub from_register: bool,
    pub(crate) kind: EntryKind,
}

/// The levels visited by one walk, outermost first (at most five; no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub(crate) mode: PagingMode,
    entries: [TraceEntry; 5],
    len: u8,
}

impl Trace {
    /// An empty trace for a walk in `mode`.
    pub(crate) fn new(mode: PagingMode) -> Self {
        Trace {
            mode,
            entries: [TraceEntry::default(); 5],
            len: 0,
        }
    }
    fn push(&mut self, e: TraceEntry) {
        self.entries[self.len as usize] = e;
        self.len += 1;
    }
    /// The visited levels.
    pub(crate) fn entries(&self) -> &[TraceEntry] {
        &self.entries[..self.len as usize]
    }
}

impl std::ops::Deref for Trace {
    type Target = [TraceEntry];
    fn deref(&self) -> &[TraceEntry] {
        self.entries()
    }
}

/// Bochs-like flag column: `P W S A`, uppercase names of set bits.
fn flag_column(e: PageTableEntry, level: Level, mode: PagingMode) -> String {
    let fl = e.flags();
    if !fl.contains(PageTableFlags::PRESENT) {
        return "--".into();
    }
    let mut s = vec!["P"];
    s.push(if fl.contains(PageTableFlags::WRITABLE) {
        "W"
    } else {
        "R"
    });
    s.push(if fl.contains(PageTableFlags::USER) {
        "U"
    } else {
        "S"
    });
    for (bit, name) in [
        (PageTableFlags::WRITE_THROUGH, "PWT"),
        (PageTableFlags::NO_CACHE, "PCD"),
        (PageTableFlags::ACCESSED, "A"),
        (PageTableFlags::DIRTY, "D"),
    ] {
        if fl.contains(bit) {
            s.push(name);
        }
    }
    if fl.contains(PageTableFlags::HUGE_PAGE) {
        s.push(if level == Level::Pte { "PAT" } else { "PS" });
    }
    if fl.contains(PageTableFlags::GLOBAL) {
        s.push("G");
    }
    if mode.wide_entries() && fl.contains(PageTableFlags::NO_EXECUTE) {
        s.push("XD");
    }
    s.join(" ")
}

impl fmt::Display for Trace {
    /// One line per level:
    /// `  PDE   [768] @0x00105c00 = 0x00107003  P W S A        -> table 0x00107000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wide = self.mode.wide_entries();
        for e in self.entries() {
            write!(f, "  {:<5} [{:>3}] ", e.level, e.index)?;
            if e.from_register {
                write!(f, "PDPTR{}     ", e.index)?;
            } else {
                write!(f, "@{:#010x}", e.entry_addr)?;
            }
            if wide {
                write!(f, " = {:#018x}", e.entry.raw())?;
            } else {
                write!(f, " = {:#010x}", e.entry.raw())?;
            }
            write!(f, "  {:<22}", flag_column(e.entry, e.level, self.mode))?;
            match e.kind {
                EntryKind::NotPresent => write!(f, " -> not present")?,
                EntryKind::Reserved(bits) => write!(f, " -> reserved bits {bits:#x}")?,
                EntryKind::Table(a) => write!(f, " -> table {a:#010x}")?,
                EntryKind::Page(a, size) => write!(f, " -> page {a:#010x} ({size})")?,
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A successful translation of one linear address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub(crate) linear: u64,
    /// The physical address of the translated byte.
    pub phys: u64,
    /// The size of the page that maps it.
    pub page_size: PageSize,
    /// Rights combined over all levels.
    pub rights: Rights,
    /// Flags of the leaf entry (G, D, A, PCD, PWT); empty with paging off.
    pub leaf_flags: PageTableFlags,
}

impl Translation {
    /// Physical address of the start of the page.
    pub(crate) fn phys_page(&self) -> u64 {
        self.phys & !(self.page_size.bytes() - 1)
    }
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "linear {:#x} -> physical {:#x} ({} page {:#x}, {})",
            self.linear,
            self.phys,
            self.page_size,
            self.phys_page(),
            self.rights
        )
    }
}

/// A translation together with how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Where the address went.
    pub translation: Translation,
    /// The entries read on the way.
    pub trace: Trace,
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.trace, self.translation)
    }
}

/// Why a walk failed, and where.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// Outside the linear address space: non-canonical in long mode, above 4 GiB otherwise.
    /// The CPU raises #GP (or #SS), not #PF.
    #[error("linear address {linear:#x} is not canonical / outside the address space of {mode}")]
    NonCanonical {
        /// The address.
        linear: u64,
        /// The paging mode whose address space it is outside.
        mode: PagingMode,
    },
    /// An entry on the way has P = 0.
    #[error("{level} for linear {linear:#x} is not present")]
    NotPresent {
        /// The address.
        linear: u64,
        /// The level whose entry is not present.
        level: Level,
        /// The entries read on the way.
        trace: Box<Trace>,
    },
    /// An entry has reserved bits set (depends on MAXPHYADDR, NXE, PS).
    #[error("{level} for linear {linear:#x} has reserved bits {bits:#x} set")]
    ReservedBits {
        /// The address.
        linear: u64,
        /// The level whose entry has them.
        level: Level,
        /// The reserved bits set.
        bits: u64,
        /// The entries read on the way.
        trace: Box<Trace>,
    },
    /// A paging structure lies outside guest RAM (or in MMIO).
    #[error("{level} table for linear {linear:#x} at physical {addr:#x} is outside RAM")]
    TableOutsideRam {
        /// The address.
        linear: u64,
        /// The level of the table.
        level: Level,
        /// The table's physical address.
        addr: u64,
        /// The entries read on the way.
        trace: Box<Trace>,
    },
    /// The translation exists but the access is not allowed.
    #[error("{access} of linear {linear:#x} denied by rights {rights}")]
    Protection {
        /// The address.
        linear: u64,
        /// The access refused.
        access: Access,
        /// The rights the path grants.
        rights: Rights,
        /// The #PF error code the CPU would push.
        code: PageFaultCode,
        /// The entries read on the way.
        trace: Box<Trace>,
    },
}

impl WalkError {
    /// The levels visited before failing, if the walk started.
    pub fn trace(&self) -> Option<&Trace> {
        match self {
            WalkError::NonCanonical { .. } => None,
            WalkError::NotPresent { trace, .. }
            | WalkError::ReservedBits { trace, .. }
            | WalkError::TableOutsideRam { trace, .. }
            | WalkError::Protection { trace, .. } => Some(trace),
        }
    }

    /// The linear address being translated.
    pub(crate) fn linear(&self) -> u64 {
        match *self {
            WalkError::NonCanonical { linear, .. }
            | WalkError::NotPresent { linear, .. }
            | WalkError::ReservedBits { linear, .. }
            | WalkError::TableOutsideRam { linear, .. }
            | WalkError::Protection { linear, .. } => linear,
        }
    }

    /// The #PF the CPU would raise for `access`; `None` when the CPU would not raise #PF
    /// (non-canonical: #GP; table outside RAM: the CPU would read whatever is there).
    pub fn page_fault(&self, access: Access, regs: &ControlRegs) -> Option<PageFault> {
        let code = match self {
            WalkError::NotPresent { .. } => PageFaultCode::for_access(access, regs, false, false),
            WalkError::ReservedBits { .. } => PageFaultCode::for_access(access, regs, true, true),
            WalkError::Protection { code, .. } => *code,
            WalkError::NonCanonical { .. } | WalkError::TableOutsideRam { .. } => return None,
        };
        Some(PageFault {
            linear: self.linear(),
            code,
        })
    }
}

impl WalkError {
    /// Multi-line report for `monitor walk`: the levels visited, why the walk stopped, and the
    /// #PF the CPU would raise for `access` (if it would raise one).
    pub fn explain(&self, access: Access, regs: &ControlRegs) -> String {
        let mut out = String::new();
        if let Some(t) = self.trace() {
            out.push_str(&t.to_string());
        }
        out.push_str(&format!(
            "physical address not available for linear {:#x}: {self}\n",
            self.linear()
        ));
        if let WalkError::ReservedBits { bits, .. } = self {
            if let Some(why) = PagingCtx::new(regs).width_note(*bits) {
                out.push_str(&why);
                out.push('\n');
            }
        }
        match self.page_fault(access, regs) {
            Some(pf) => out.push_str(&format!("{pf}\n")),
            None if matches!(self, WalkError::NonCanonical { .. }) => {
                out.push_str("#GP would be raised (non-canonical address)\n")
            }
            None => {}
        }
        out
    }
}

/// Per-walk constants derived from the registers (masks computed once).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PagingCtx {
    pub(crate) mode: PagingMode,
    pse: bool,
    nxe: bool,
    /// Address bits MAXPHYADDR-1:12.
    addr_mask: u64,
    /// Reserved high bits of wide entries (62/51:MAXPHYADDR, plus 63 without NXE).
    high_rsvd: u64,
    /// Reserved bits of a 32-bit 4 MiB PDE (PSE-36 width depends on MAXPHYADDR).
    pse_rsvd: u64,
    /// MAXPHYADDR, clamped to 32..=52.
    maxphyaddr: u32,
    pdptrs: Option<[u64; 4]>,
    pub(crate) root: u64,
}

const PS: u64 = 1 << 7;

/// Mask of bits `lo..=hi`.
const fn bits(lo: u32, hi: u32) -> u64 {
    if hi < lo {
        return 0;
    }
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl PagingCtx {
    pub(crate) fn new(regs: &ControlRegs) -> Self {
        let mode = regs.paging_mode();
        let m = regs.maxphyaddr.clamp(32, 52) as u32;
        let nxe = regs.efer.contains(EferFlags::NXE);
        let addr_mask = bits(12, m - 1);
        let mut high_rsvd = match mode {
            PagingMode::Pae => bits(m, 62),
            _ => bits(m, 51),
        };
        if !nxe {
            high_rsvd |= 1 << 63;
        }
        let pse36_width = m.min(40) - 32;
        let pse_rsvd = bits(13 + pse36_width, 21);
        let root = match mode {
            PagingMode::None => 0,
            PagingMode::Bits32 => regs.cr3 & 0xffff_f000,
            PagingMode::Pae => regs.cr3 & 0xffff_ffe0,
            PagingMode::Level4 | PagingMode::Level5 => regs.cr3 & addr_mask,
        };
        PagingCtx {
            mode,
            pse: regs.cr4.contains(Cr4Flags::PSE),
            nxe,
            addr_mask,
            high_rsvd,
            pse_rsvd,
            maxphyaddr: m,
            pdptrs: if mode == PagingMode::Pae {
                regs.pdptrs
            } else {
                None
            },
            root,
        }
    }

    /// Why some of the reserved `bits` of an entry are reserved, when it is MAXPHYADDR (address
    /// bits the CPU does not have) rather than the format: one line, or `None`.
    pub(crate) fn width_note(&self, reserved: u64) -> Option<String> {
        let m = self.maxphyaddr;
        match self.mode {
            PagingMode::Bits32 if reserved & self.pse_rsvd & bits(13, 20) != 0 => {
                // PDE bits 20:13 hold physical-address bits 39:32 of a 4 MiB page (PSE-36).
                let first = 13 + (m.min(40) - 32);
                Some(format!(
                    "MAXPHYADDR is {m}: PDE bits 20:{first} (physical-address bits 39:{}) of a 4 MiB page are reserved",
                    m.min(40)
                ))
            }
            PagingMode::Pae | PagingMode::Level4 | PagingMode::Level5
                if reserved & bits(m, 51) != 0 =>
            {
                Some(format!(
                    "MAXPHYADDR is {m}: physical addresses have {m} bits, so entry bits 51:{m} are reserved"
                ))
            }
            _ => None,
        }
    }

    /// The levels of this mode, outermost first: (level, index shift, index bits).
    pub(crate) fn levels(&self) -> &'static [(Level, u32, u32)] {
        match self.mode {
            PagingMode::None => &[],
            PagingMode::Bits32 => &[(Level::Pde, 22, 10), (Level::Pte, 12, 10)],
            PagingMode::Pae => &[
                (Level::Pdpte, 30, 2),
                (Level::Pde, 21, 9),
                (Level::Pte, 12, 9),
            ],
            PagingMode::Level4 => &[
                (Level::Pml4, 39, 9),
                (Level::Pdpte, 30, 9),
                (Level::Pde, 21, 9),
                (Level::Pte, 12, 9),
            ],
            PagingMode::Level5 => &[
                (Level::Pml5, 48, 9),
                (Level::Pml4, 39, 9),
                (Level::Pdpte, 30, 9),
                (Level::Pde, 21, 9),
                (Level::Pte, 12, 9),
            ],
        }
    }

    /// Bytes per entry.
    pub(crate) fn entry_size(&self) -> u64 {
        if self.mode.wide_entries() {
            8
        } else {
            4
        }
    }

    /// Whether `linear` is inside this mode's linear address space.
    pub(crate) fn linear_ok(&self, linear: u64) -> bool {
        match self.mode {
            PagingMode::Level4 => super::addr::is_canonical(linear, 48),
            PagingMode::Level5 => super::addr::is_canonical(linear, 57),
            _ => linear <= u32::MAX as u64,
        }
    }

    /// PAE PDPTE `index` from the registers, if they were given.
    pub(crate) fn pdptr(&self, level: Level, index: usize) -> Option<u64> {
        match (level, self.pdptrs) {
            (Level::Pdpte, Some(p)) => Some(p[index & 3]),
            _ => None,
        }
    }

    /// Decodes one entry of `level` in this mode.
    pub(crate) fn decode(&self, level: Level, raw: u64) -> EntryKind {
        if raw & 1 == 0 {
            return EntryKind::NotPresent;
        }
        if self.mode == PagingMode::Bits32 {
            return match level {
                Level::Pde if self.pse && raw & PS != 0 => {
                    let rsvd = raw & self.pse_rsvd;
                    if rsvd != 0 {
                        EntryKind::Reserved(rsvd)
                    } else {
                        let base = (raw & 0xffc0_0000) | (((raw >> 13) & 0xff) << 32);
                        EntryKind::Page(base, PageSize::Size4M)
                    }
                }
                Level::Pde => EntryKind::Table(raw & 0xffff_f000),
                _ => EntryKind::Page(raw & 0xffff_f000, PageSize::Size4K),
            };
        }
        let addr = raw & self.addr_mask;
        let mut rsvd = raw & self.high_rsvd;
        let kind = match level {
            Level::Pdpte if self.mode == PagingMode::Pae => {
                // PAE PDPTEs have no R/W, U/S, A, PS or XD: those bits are reserved.
                rsvd |= raw & (0x1e6 | 1 << 63);
                EntryKind::Table(addr)
            }
            Level::Pml5 | Level::Pml4 => {
                rsvd |= raw & PS;
                EntryKind::Table(addr)
            }
            Level::Pdpte if raw & PS != 0 => {
                rsvd |= raw & bits(13, 29);
                EntryKind::Page(addr & !bits(0, 29), PageSize::Size1G)
            }
            Level::Pde if raw & PS != 0 => {
                rsvd |= raw & bits(13, 20);
                EntryKind::Page(addr & !bits(0, 20), PageSize::Size2M)
            }
            Level::Pdpte | Level::Pde => EntryKind::Table(addr),
            Level::Pte => EntryKind::Page(addr, PageSize::Size4K),
        };
        if rsvd != 0 {
            EntryKind::Reserved(rsvd)
        } else {
            kind
        }
    }

    /// Folds one entry's R/W, U/S and XD into the running rights.
    pub(crate) fn combine(&self, rights: Rights, level: Level, raw: u64) -> Rights {
        if self.mode == PagingMode::Pae && level == Level::Pdpte {
            return rights;
        }
        let mut r = rights;
        if raw & 2 == 0 {
            r.remove(Rights::WRITE);
        }
        if raw & 4 == 0 {
            r.remove(Rights::USER);
        }
        if self.nxe && self.mode.wide_entries() && raw >> 63 != 0 {
            r.insert(Rights::NO_EXEC);
        }
        r
    }

    /// Reads one entry (or takes it from the PDPTE registers).
    #[inline]
    pub(crate) fn read_entry<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        level: Level,
        addr: u64,
        index: usize,
    ) -> Result<(u64, bool), PhysMemoryError> {
        if let Some(v) = self.pdptr(level, index) {
            return Ok((v, true));
        }
        if self.mode.wide_entries() {
            mem.read_u64(addr).map(|v| (v, false))
        } else {
            mem.read_u32(addr).map(|v| (v as u64, false))
        }
    }

    /// The full walk.
    pub(crate) fn walk<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        linear: u64,
    ) -> Result<Walk, WalkError> {
        let mut trace = Trace::new(self.mode);
        if self.mode == PagingMode::None {
            let phys = linear & 0xffff_ffff;
            if linear != phys {
                return Err(WalkError::NonCanonical {
                    linear,
                    mode: self.mode,
                });
            }
            let translation = Translation {
                linear,
                phys,
                page_size: PageSize::Size4K,
                rights: Rights::WRITE | Rights::USER,
                leaf_flags: PageTableFlags::empty(),
            };
            return Ok(Walk { translation, trace });
        }
        if !self.linear_ok(linear) {
            return Err(WalkError::NonCanonical {
                linear,
                mode: self.mode,
            });
        }
        let mut table = self.root;
        let mut rights = Rights::WRITE | Rights::USER;
        for &(level, shift, nbits) in self.levels() {
            let index = ((linear >> shift) & ((1 << nbits) - 1)) as usize;
            let entry_addr = table + index as u64 * self.entry_size();
            let (raw, from_register) = match self.read_entry(mem, level, entry_addr, index) {
                Ok(v) => v,
                Err(_) => {
                    return Err(WalkError::TableOutsideRam {
                        linear,
                        level,
                        addr: entry_addr,
                        trace: Box::new(trace),
                    })
                }
            };
            let kind = self.decode(level, raw);
            trace.push(TraceEntry {
                level,
                index: index as u16,
                entry_addr,
                entry: PageTableEntry(raw),
                from_register,
                kind,
            });
            match kind {
                EntryKind::NotPresent => {
                    return Err(WalkError::NotPresent {
                        linear,
                        level,
                        trace: Box::new(trace),
                    })
                }
                EntryKind::Reserved(bits) => {
                    return Err(WalkError::ReservedBits {
                        linear,
                        level,
                        bits,
                        trace: Box::new(trace),
                    })
                }
                EntryKind::Table(next) => {
                    rights = self.combine(rights, level, raw);
                    table = next;
                }
                EntryKind::Page(base, page_size) => {
                    rights = self.combine(rights, level, raw);
                    let translation = Translation {
                        linear,
                        phys: base | (linear & (page_size.bytes() - 1)),
                        page_size,
                        rights,
                        leaf_flags: PageTableEntry(raw).flags(),
                    };
                    return Ok(Walk { translation, trace });
                }
            }
        }
        unreachable!("the last level of every mode maps pages")
    }
}

/// Walks the page tables for `linear` without checking any access; the trace shows every level.
pub fn walk<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    linear: u64,
) -> Result<Walk, WalkError> {
    PagingCtx::new(regs).walk(mem, linear)
}

/// Translates `linear` for `access`: the walk plus the permission check the CPU would make.
///
/// Use [`Access::DEBUGGER`] to ask only "is it mapped, and where".
pub fn translate<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    linear: u64,
    access: Access,
) -> Result<Translation, WalkError> {
    let walk = walk(mem, regs, linear)?;
    match check_access(walk.translation.rights, access, regs) {
        Ok(()) => Ok(walk.translation),
        Err(code) => Err(WalkError::Protection {
            linear,
            access,
            rights: walk.translation.rights,
            code,
            trace: Box::new(walk.trace),
        }),
    }
}

/// The guest-physical pieces `(phys, len)` of the linear range `linear..linear+len`, in order,
/// split at page ends; pages that do not translate (debugger rights) are left out.
pub(crate) fn physical_pieces<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    linear: u64,
    len: u64,
) -> Vec<(u64, u64)> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    PagedMemory::new(mem, *regs)
        .pieces(linear, len)
        .filter_map(|(range, phys)| Some((phys.ok()?, range.len() as u64)))
        .collect()
}

/// Reading guest memory by linear address (descriptor tables live at linear addresses).
pub trait LinearMemory {
    /// Fills `buf` from linear `addr`; pages may map anywhere, so reads are split at page ends.
    fn read_linear(&self, addr: u64, buf: &mut [u8]) -> Result<(), LinearReadError>;
}

/// A linear read failed: the walk failed, or the page it found is outside RAM.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinearReadError {
    /// A page does not translate.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A translated byte is outside RAM.
    #[error(transparent)]
    Phys(#[from] PhysMemoryError),
}

/// Guest memory as a debugger addresses it: by linear address through the page tables the
/// registers select (debugger rights), or, [`PagedMemory::physical`], guest-physically as is.
///
/// Every access goes one 4 KiB piece at a time: a page maps anywhere, and an access that meets a
/// page that does not translate, or lies outside RAM, still has the pieces before it.
#[derive(Debug, Clone, Copy)]
pub struct PagedMemory<'a, M: ?Sized> {
    mem: &'a M,
    /// `None`: addresses are guest-physical.
    regs: Option<ControlRegs>,
}

/// The bytes of the smallest page: no access piece crosses its boundary.
const PIECE: u64 = 0x1000;

impl<'a, M: PhysMemory + ?Sized> PagedMemory<'a, M> {
    /// Views `mem` through the translation that `regs` select.
    pub fn new(mem: &'a M, regs: ControlRegs) -> Self {
        PagedMemory {
            mem,
            regs: Some(regs),
        }
    }

    /// Views `mem` with guest-physical addresses (a debugger's `monitor phys on`).
    pub(crate) fn physical(mem: &'a M) -> Self {
        PagedMemory { mem, regs: None }
    }

    /// `addr..addr + len` cut at every 4 KiB boundary, in order: each piece's place in `0..len`,
    /// and the guest-physical address it starts at or why its page does not translate.
    pub(crate) fn pieces(
        &self,
        addr: u64,
        len: usize,
    ) -> impl Iterator<Item = (Range<usize>, Result<u64, WalkError>)> + '_ {
        let ctx = self.regs.as_ref().map(PagingCtx::new);
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let at = addr.wrapping_add(done as u64);
            let to_boundary = (PIECE - (at & (PIECE - 1))) as usize;
            let range = done..done + to_boundary.min(len - done);
            done = range.end;
            let phys = match &ctx {
                Some(ctx) => ctx.walk(self.mem, at).map(|walk| walk.translation.phys),
                None => Ok(at),
            };
            Some((range, phys))
        })
    }

    /// Hands `addr..addr + len` to `each` piece by piece (see [`PagedMemory::pieces`]) until a
    /// page does not translate or `each` fails: the bytes done before it, and why it stopped
    /// short (`Ok` when it did not).
    pub(crate) fn for_each_piece(
        &self,
        addr: u64,
        len: usize,
        mut each: impl FnMut(u64, Range<usize>) -> Result<(), PhysMemoryError>,
    ) -> (usize, Result<(), LinearReadError>) {
        for (range, phys) in self.pieces(addr, len) {
            let start = range.start;
            if let Err(e) = phys
                .map_err(LinearReadError::from)
                .and_then(|phys| Ok(each(phys, range)?))
            {
                return (start, Err(e));
            }
        }
        (len, Ok(()))
    }

    /// Reads from `addr` into `buf` up to the first page that does not translate or is outside
    /// RAM: the bytes read, and why it stopped short.
    pub(crate) fn read_prefix(
        &self,
        addr: u64,
        buf: &mut [u8],
    ) -> (usize, Result<(), LinearReadError>) {
        self.for_each_piece(addr, buf.len(), |phys, range| {
            self.mem.read_phys(phys, &mut buf[range])
        })
    }
}

impl<M: PhysMemory + ?Sized> LinearMemory for PagedMemory<'_, M> {
    fn read_linear(&self, addr: u64, buf: &mut [u8]) -> Result<(), LinearReadError> {
        self.read_prefix(addr, buf).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::phys::VecMemory;

    /// 4-level paging: linear 0 -> 0x5000, 0x1000 -> 0x7000, nothing from 0x2000; RAM ends at
    /// 0x8000.
    fn two_pages() -> (VecMemory, ControlRegs) {
        let mut m = VecMemory::new(0x8000);
        for (entry, value) in [
            (0x1000, 0x2003),
            (0x2000, 0x3003),
            (0x3000, 0x4003),
            (0x4000, 0x5003),
            (0x4008, 0x7003),
        ] {
            m.write_u64(entry, value);
        }
        for (i, b) in m.as_bytes_mut()[0x5000..0x8000].iter_mut().enumerate() {
            *b = i as u8;
        }
        let regs = ControlRegs::new(0x8000_0001, 0x1000, 0x20, 0x500);
        (m, regs)
    }

    #[test]
    fn pieces_end_at_every_4k_boundary_in_order() {
        let (m, regs) = two_pages();
        let pieces: Vec<_> = PagedMemory::new(&m, regs).pieces(0xff0, 0x1020).collect();
        assert_eq!(
            pieces,
            vec![
                (0..0x10, Ok(0x5ff0)),
                (0x10..0x1010, Ok(0x7000)),
                (
                    0x1010..0x1020,
                    Err(PagingCtx::new(&regs).walk(&m, 0x2000).unwrap_err())
                ),
            ]
        );
        assert_eq!(PagedMemory::new(&m, regs).pieces(0x10, 0).count(), 0);
    }

    fn phys_bytes(m: &VecMemory, addr: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        m.read_phys(addr, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_read_keeps_what_came_before_an_unmapped_page() {
        let (m, regs) = two_pages();
        let linear = PagedMemory::new(&m, regs);
        let mut buf = [0u8; 16];
        let (read, why) = linear.read_prefix(0x1ff8, &mut buf);
        assert_eq!(read, 8);
        assert!(matches!(why, Err(LinearReadError::Walk(_))));
        assert_eq!(buf[..8], phys_bytes(&m, 0x7ff8, 8));
        assert!(linear.read_linear(0x1ff8, &mut buf).is_err());
        let mut whole = [0u8; 0x20];
        assert_eq!(linear.read_linear(0xff0, &mut whole), Ok(()));
        assert_eq!(whole[..0x10], phys_bytes(&m, 0x5ff0, 0x10));
        assert_eq!(whole[0x10..], phys_bytes(&m, 0x7000, 0x10));
    }

    #[test]
    fn physical_addressing_stops_at_the_end_of_ram() {
        let (m, _) = two_pages();
        let mut buf = [0u8; 16];
        let (read, why) = PagedMemory::physical(&m).read_prefix(0x7ff8, &mut buf);
        assert_eq!(read, 8);
        assert!(matches!(why, Err(LinearReadError::Phys(_))));
        assert_eq!(buf[..8], phys_bytes(&m, 0x7ff8, 8));
    }

    #[test]
    fn a_failing_piece_ends_the_visit_with_its_error() {
        let (m, regs) = two_pages();
        let refused = PhysMemoryError {
            addr: 0x7000,
            len: 4,
        };
        let mut seen = Vec::new();
        let (done, why) = PagedMemory::new(&m, regs).for_each_piece(0xffc, 8, |phys, range| {
            seen.push((phys, range));
            if phys == 0x7000 {
                Err(refused)
            } else {
                Ok(())
            }
        });
        assert_eq!(done, 4);
        assert_eq!(why, Err(LinearReadError::Phys(refused)));
        assert_eq!(seen, vec![(0x5ffc, 0..4), (0x7000, 4..8)]);
    }

    #[test]
    fn physical_pieces_skip_pages_that_do_not_translate() {
        let (m, regs) = two_pages();
        assert_eq!(
            physical_pieces(&m, &regs, 0x1ff0, 0x1020),
            vec![(0x7ff0, 0x10)]
        );
    }
}
