//! Segmentation: selectors, descriptors, the hidden descriptor cache, and logical → linear.
//!
//! Two views of a segment exist and can disagree: the hidden cache the CPU loaded when the
//! selector was written (what KVM's `sregs` report, and what the CPU actually uses), and what the
//! GDT/LDT says now (the guest may have edited the table since). Translation uses the cache;
//! [`descriptor_for`] decodes the table so a debugger can show a mismatch.

use super::cpu::{ControlRegs, CpuMode, Cr4Flags};
use super::paging::{LinearMemory, LinearReadError};
use bitflags::bitflags;
use std::fmt;
use thiserror::Error;

/// A segment selector: index into the GDT or LDT, table indicator, requested privilege level.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SegmentSelector(pub u16);

impl SegmentSelector {
    /// Descriptor index (bits 15:3).
    pub(crate) const fn index(self) -> u16 {
        self.0 >> 3
    }
    /// TI: the selector refers to the LDT.
    pub(crate) const fn is_ldt(self) -> bool {
        self.0 & 4 != 0
    }
    /// Requested privilege level (bits 1:0).
    pub(crate) const fn rpl(self) -> u8 {
        (self.0 & 3) as u8
    }
    /// A null selector (GDT index 0): loading it into DS/ES/FS/GS marks the segment unusable.
    pub(crate) const fn is_null(self) -> bool {
        self.0 & !3 == 0
    }
    /// Byte offset of the descriptor in its table.
    pub(crate) const fn table_offset(self) -> u64 {
        (self.0 & !7) as u64
    }
}

impl fmt::Debug for SegmentSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentSelector({:#06x})", self.0)
    }
}

impl fmt::Display for SegmentSelector {
    /// `0x002b (GDT[5], RPL 3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = if self.is_ldt() { "LDT" } else { "GDT" };
        write!(
            f,
            "{:#06x} ({t}[{}], RPL {})",
            self.0,
            self.index(),
            self.rpl()
        )
    }
}

bitflags! {
    /// Bits of an 8-byte code/data descriptor (names as in the `x86_64` crate).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub(crate) struct DescriptorFlags: u64 {
        /// Set by the CPU when the segment is loaded.
        const ACCESSED = 1 << 40;
        /// Data: writable. Code: readable.
        const WRITABLE = 1 << 41;
        /// Code: conforming. Data: expand-down.
        const CONFORMING = 1 << 42;
        /// Code segment (else data).
        const EXECUTABLE = 1 << 43;
        /// S: code/data segment (else system descriptor).
        const USER_SEGMENT = 1 << 44;
        /// Both DPL bits: ring 3.
        const DPL_RING_3 = 3 << 45;
        /// P: the segment is present.
        const PRESENT = 1 << 47;
        /// Limit bits 15:0, all set.
        const LIMIT_0_15 = 0xffff;
        /// Limit bits 19:16, all set.
        const LIMIT_16_19 = 0xf << 48;
        /// AVL: free for the OS.
        const AVAILABLE = 1 << 52;
        /// L: 64-bit code segment.
        const LONG_MODE = 1 << 53;
        /// D/B: 32-bit default operand size / big stack / 4 GiB expand-down upper bound.
        const DEFAULT_SIZE = 1 << 54;
        /// G: limit counts 4 KiB units.
        const GRANULARITY = 1 << 55;

        /// Bits shared by the flat kernel/user segments below.
        const COMMON = Self::USER_SEGMENT.bits() | Self::PRESENT.bits() | Self::WRITABLE.bits()
            | Self::ACCESSED.bits() | Self::LIMIT_0_15.bits() | Self::LIMIT_16_19.bits()
            | Self::GRANULARITY.bits();
        /// Flat 64-bit kernel code: 0x00af9b000000ffff.
        const KERNEL_CODE64 = Self::COMMON.bits() | Self::EXECUTABLE.bits() | Self::LONG_MODE.bits();
        /// Flat 32-bit kernel code: 0x00cf9b000000ffff.
        const KERNEL_CODE32 = Self::COMMON.bits() | Self::EXECUTABLE.bits() | Self::DEFAULT_SIZE.bits();
        /// Flat kernel data: 0x00cf93000000ffff.
        const KERNEL_DATA = Self::COMMON.bits() | Self::DEFAULT_SIZE.bits();
        /// Flat 64-bit user code: 0x00affb000000ffff.
        const USER_CODE64 = Self::KERNEL_CODE64.bits() | Self::DPL_RING_3.bits();
        /// Flat 32-bit user code: 0x00cffb000000ffff.
        const USER_CODE32 = Self::KERNEL_CODE32.bits() | Self::DPL_RING_3.bits();
        /// Flat user data: 0x00cff3000000ffff.
        const USER_DATA = Self::KERNEL_DATA.bits() | Self::DPL_RING_3.bits();
    }
}

/// The low 8 bytes of any descriptor, with accessors for the code/data layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SegmentDescriptor(pub u64);

impl SegmentDescriptor {
    /// Base bits 31:0.
    pub(crate) const fn base(self) -> u32 {
        (((self.0 >> 16) & 0xff_ffff) | (((self.0 >> 56) & 0xff) << 24)) as u32
    }
    /// The 20-bit limit field as stored.
    pub(crate) const fn raw_limit(self) -> u32 {
        ((self.0 & 0xffff) | (((self.0 >> 48) & 0xf) << 16)) as u32
    }
    /// The limit in bytes: with G, the field counts 4 KiB units and the low 12 bits are ones.
    pub(crate) const fn limit(self) -> u32 {
        if self.granularity() {
            (self.raw_limit() << 12) | 0xfff
        } else {
            self.raw_limit()
        }
    }
    /// The 4-bit type field.
    pub(crate) const fn type_bits(self) -> u8 {
        ((self.0 >> 40) & 0xf) as u8
    }
    /// S: code/data rather than system.
    pub(crate) const fn is_user_segment(self) -> bool {
        self.0 & (1 << 44) != 0
    }
    /// Descriptor privilege level.
    pub(crate) const fn dpl(self) -> u8 {
        ((self.0 >> 45) & 3) as u8
    }
    /// P.
    pub(crate) const fn present(self) -> bool {
        self.0 & (1 << 47) != 0
    }
    /// AVL.
    pub(crate) const fn avl(self) -> bool {
        self.0 & (1 << 52) != 0
    }
    /// L.
    pub(crate) const fn long(self) -> bool {
        self.0 & (1 << 53) != 0
    }
    /// D/B.
    pub(crate) const fn db(self) -> bool {
        self.0 & (1 << 54) != 0
    }
    /// G.
    pub(crate) const fn granularity(self) -> bool {
        self.0 & (1 << 55) != 0
    }
}

impl fmt::Debug for SegmentDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentDescriptor({:#018x})", self.0)
    }
}

/// System descriptor and gate types (S = 0); the meaning of a type differs in long mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemType {
    /// 16-bit TSS.
    Tss16 {
        /// B: the task is running or nested.
        busy: bool,
    },
    /// LDT.
    Ldt,
    /// 16-bit call gate.
    CallGate16,
    /// Task gate.
    TaskGate,
    /// 16-bit interrupt gate.
    InterruptGate16,
    /// 16-bit trap gate.
    TrapGate16,
    /// 32-bit TSS.
    Tss32 {
        /// B: the task is running or nested.
        busy: bool,
    },
    /// 32-bit call gate.
    CallGate32,
    /// 32-bit interrupt gate.
    InterruptGate32,
    /// 32-bit trap gate.
    TrapGate32,
    /// 64-bit TSS.
    Tss64 {
        /// B: the task is running.
        busy: bool,
    },
    /// 64-bit call gate.
    CallGate64,
    /// 64-bit interrupt gate.
    InterruptGate64,
    /// 64-bit trap gate.
    TrapGate64,
    /// A type that is reserved in this mode.
    Reserved(u8),
}

impl SystemType {
    /// Decodes the 4-bit type of a system descriptor.
    pub(crate) fn decode(type_bits: u8, long_mode: bool) -> Self {
        use SystemType::*;
        match (type_bits & 0xf, long_mode) {
            (2, _) => Ldt,
            (1, false) => Tss16 { busy: false },
            (3, false) => Tss16 { busy: true },
            (4, false) => CallGate16,
            (5, false) => TaskGate,
            (6, false) => InterruptGate16,
            (7, false) => TrapGate16,
            (9, false) => Tss32 { busy: false },
            (0xb, false) => Tss32 { busy: true },
            (0xc, false) => CallGate32,
            (0xe, false) => InterruptGate32,
            (0xf, false) => TrapGate32,
            (9, true) => Tss64 { busy: false },
            (0xb, true) => Tss64 { busy: true },
            (0xc, true) => CallGate64,
            (0xe, true) => InterruptGate64,
            (0xf, true) => TrapGate64,
            (t, _) => Reserved(t),
        }
    }

    /// Whether this is a gate (selector:offset) rather than a segment (base, limit).
    pub(crate) fn is_gate(self) -> bool {
        use SystemType::*;
        matches!(
            self,
            CallGate16
                | CallGate32
                | CallGate64
                | TaskGate
                | InterruptGate16
                | InterruptGate32
                | InterruptGate64
                | TrapGate16
                | TrapGate32
                | TrapGate64
        )
    }

    /// Bochs-style name: `32-Bit TSS (Busy)`, `64-Bit Interrupt Gate`.
    pub(crate) fn name(self) -> String {
        use SystemType::*;
        let busy = |b: bool| if b { "(Busy)" } else { "(Available)" };
        match self {
            Tss16 { busy: b } => format!("16-Bit TSS {}", busy(b)),
            Tss32 { busy: b } => format!("32-Bit TSS {}", busy(b)),
            Tss64 { busy: b } => format!("64-Bit TSS {}", busy(b)),
            Ldt => "LDT".into(),
            CallGate16 => "16-Bit Call Gate".into(),
            CallGate32 => "32-Bit Call Gate".into(),
            CallGate64 => "64-Bit Call Gate".into(),
            TaskGate => "Task Gate".into(),
            InterruptGate16 => "16-Bit Interrupt Gate".into(),
            InterruptGate32 => "32-Bit Interrupt Gate".into(),
            InterruptGate64 => "64-Bit Interrupt Gate".into(),
            TrapGate16 => "16-Bit Trap Gate".into(),
            TrapGate32 => "32-Bit Trap Gate".into(),
            TrapGate64 => "64-Bit Trap Gate".into(),
            Reserved(t) => format!("reserved system type {t:#x}"),
        }
    }
}

/// A gate: where a call, interrupt or task switch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gate {
    /// Which gate.
    pub kind: SystemType,
    /// Target code segment (for a task gate: the TSS selector).
    pub(crate) selector: SegmentSelector,
    /// Target offset (0 for task gates).
    pub(crate) offset: u64,
    pub(crate) dpl: u8,
    pub(crate) present: bool,
    /// Interrupt stack table index (64-bit interrupt/trap gates), 0 = none.
    pub(crate) ist: u8,
    /// Parameters copied by a call gate (16/32-bit only).
    pub(crate) param_count: u8,
}

impl Gate {
    /// Decodes a gate of `kind` from its low (and, for 64-bit gates, high) 8 bytes.
    pub(crate) fn decode(kind: SystemType, low: u64, high: u64) -> Self {
        let off_lo = low & 0xffff;
        let off_mid = (low >> 48) & 0xffff;
        let offset = match kind {
            SystemType::TaskGate => 0,
            SystemType::CallGate16 | SystemType::InterruptGate16 | SystemType::TrapGate16 => off_lo,
            SystemType::CallGate32 | SystemType::InterruptGate32 | SystemType::TrapGate32 => {
                off_lo | off_mid << 16
            }
            _ => off_lo | off_mid << 16 | (high & 0xffff_ffff) << 32,
        };
        let d = SegmentDescriptor(low);
        let wide = matches!(kind, SystemType::InterruptGate64 | SystemType::TrapGate64);
        Gate {
            kind,
            selector: SegmentSelector((low >> 16) as u16),
            offset,
            dpl: d.dpl(),
            present: d.present(),
            ist: if wide { ((low >> 32) & 7) as u8 } else { 0 },
            param_count: if wide || kind == SystemType::CallGate64 {
                0
            } else {
                ((low >> 32) & 0x1f) as u8
            },
        }
    }
}

/// An LDT or TSS descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SystemSegment {
    pub(crate) kind: SystemType,
    /// Base, including bits 63:32 from the upper half in long mode.
    pub(crate) base: u64,
    /// Limit in bytes (G applied).
    pub(crate) limit: u32,
    pub(crate) dpl: u8,
    pub(crate) present: bool,
}

/// Any descriptor, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Descriptor {
    /// All-zero entry (the first GDT entry by convention).
    Null,
    /// Code or data segment.
    Segment(SegmentDescriptor),
    /// LDT or TSS.
    System(SystemSegment),
    /// Call, interrupt, trap or task gate.
    Gate(Gate),
    /// Reserved system type: the CPU would fault on it.
    Invalid {
        /// The entry's low 8 bytes.
        raw: u64,
        /// Its 4-bit type.
        type_bits: u8,
    },
}

impl Descriptor {
    /// Whether an entry with these low 8 bytes takes 16 bytes in a long-mode table.
    pub(crate) fn is_wide(low: u64, long_mode: bool) -> bool {
        // In long mode every valid system descriptor (LDT, TSS, gates) is 16 bytes.
        let d = SegmentDescriptor(low);
        long_mode
            && low != 0
            && !d.is_user_segment()
            && !matches!(
                SystemType::decode(d.type_bits(), true),
                SystemType::Reserved(_)
            )
    }

    /// Decodes from the low 8 bytes and, in long mode, the next 8 bytes (used only when the
    /// descriptor is a 16-byte one).
    pub(crate) fn decode(low: u64, high: u64, long_mode: bool) -> Self {
        if low == 0 {
            return Descriptor::Null;
        }
        let d = SegmentDescriptor(low);
        if d.is_user_segment() {
            return Descriptor::Segment(d);
        }
        let kind = SystemType::decode(d.type_bits(), long_mode);
        let wide = Descriptor::is_wide(low, long_mode);
        match kind {
            SystemType::Reserved(t) => Descriptor::Invalid {
                raw: low,
                type_bits: t,
            },
            k if k.is_gate() => Descriptor::Gate(Gate::decode(k, low, high)),
            k => Descriptor::System(SystemSegment {
                kind: k,
                base: d.base() as u64 | if wide { (high & 0xffff_ffff) << 32 } else { 0 },
                limit: d.limit(),
                dpl: d.dpl(),
                present: d.present(),
            }),
        }
    }
}

impl fmt::Display for Descriptor {
    /// Bochs `info gdt` style: `Code segment, base=0x00000000, limit=0xffffffff, Execute/Read,
    /// Non-Conforming, Accessed, 32-bit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Descriptor::Null => f.write_str("<null entry>"),
            Descriptor::Segment(d) => {
                let code = d.type_bits() & 8 != 0;
                write!(
                    f,
                    "{} segment, base={:#010x}, limit={:#010x}, ",
                    if code { "Code" } else { "Data" },
                    d.base(),
                    d.limit()
                )?;
                let t = d.type_bits();
                if code {
                    f.write_str(if t & 2 != 0 {
                        "Execute/Read"
                    } else {
                        "Execute-Only"
                    })?;
                    f.write_str(if t & 4 != 0 {
                        ", Conforming"
                    } else {
                        ", Non-Conforming"
                    })?;
                } else {
                    f.write_str(if t & 2 != 0 {
                        "Read/Write"
                    } else {
                        "Read-Only"
                    })?;
                    if t & 4 != 0 {
                        f.write_str(", Expand-down")?;
                    }
                }
                if t & 1 != 0 {
                    f.write_str(", Accessed")?;
                }
                if code {
                    f.write_str(match (d.long(), d.db()) {
                        (true, false) => ", 64-bit",
                        (true, true) => ", L and D both set (invalid)",
                        (false, true) => ", 32-bit",
                        (false, false) => ", 16-bit",
                    })?;
                } else if d.db() {
                    f.write_str(", big")?;
                }
                write!(f, ", DPL={}", d.dpl())?;
                if !d.present() {
                    f.write_str(", not present")?;
                }
                Ok(())
            }
            Descriptor::System(s) => {
                write!(
                    f,
                    "{} at {:#010x}, length {:#07x}, DPL={}",
                    s.kind.name(),
                    s.base,
                    s.limit,
                    s.dpl
                )?;
                if !s.present {
                    f.write_str(", not present")?;
                }
                Ok(())
            }
            Descriptor::Gate(g) => {
                if g.kind == SystemType::TaskGate {
                    write!(f, "Task Gate tss={:#06x}", g.selector.0)?;
                } else {
                    write!(
                        f,
                        "{} target={:#06x}:{:#010x}",
                        g.kind.name(),
                        g.selector.0,
                        g.offset
                    )?;
                }
                write!(f, ", DPL={}", g.dpl)?;
                if g.ist != 0 {
                    write!(f, ", IST={}", g.ist)?;
                }
                if g.param_count != 0 {
                    write!(f, ", params={}", g.param_count)?;
                }
                if !g.present {
                    f.write_str(", not present")?;
                }
                Ok(())
            }
            Descriptor::Invalid { raw, type_bits } => {
                write!(
                    f,
                    "invalid descriptor {raw:#018x} (reserved system type {type_bits:#x})"
                )
            }
        }
    }
}

/// The six segment registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentRegister {
    /// ES.
    Es,
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS.
    Ds,
    /// FS.
    Fs,
    /// GS.
    Gs,
}

impl fmt::Display for SegmentRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            SegmentRegister::Es => "ES",
            SegmentRegister::Cs => "CS",
            SegmentRegister::Ss => "SS",
            SegmentRegister::Ds => "DS",
            SegmentRegister::Fs => "FS",
            SegmentRegister::Gs => "GS",
        })
    }
}

/// The hidden part of a segment register, as the CPU loaded it (KVM's `kvm_segment`, field for
/// field, without depending on KVM types). `limit` is in bytes, G already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SegmentCache {
    pub(crate) selector: SegmentSelector,
    pub(crate) base: u64,
    pub(crate) limit: u32,
    /// The 4-bit type field.
    pub(crate) type_: u8,
    /// S: code/data (else system).
    pub(crate) s: bool,
    pub(crate) dpl: u8,
    pub(crate) present: bool,
    pub(crate) db: bool,
    pub(crate) l: bool,
    pub(crate) g: bool,
    pub(crate) avl: bool,
    /// Loaded with a null selector (or never loaded): any access faults outside 64-bit mode.
    pub(crate) unusable: bool,
}

impl SegmentCache {
    /// What a real-mode (or virtual-8086) load of `selector` puts in the cache.
    pub fn real_mode(selector: u16, code: bool) -> Self {
        SegmentCache {
            selector: SegmentSelector(selector),
            base: (selector as u64) << 4,
            limit: 0xffff,
            type_: if code { 0xb } else { 0x3 },
            s: true,
            present: true,
            ..Default::default()
        }
    }

    /// What loading `selector` with descriptor `d` puts in the cache.
    pub fn from_descriptor(selector: SegmentSelector, d: SegmentDescriptor) -> Self {
        SegmentCache {
            selector,
            base: d.base() as u64,
            limit: d.limit(),
            type_: d.type_bits(),
            s: d.is_user_segment(),
            dpl: d.dpl(),
            present: d.present(),
            db: d.db(),
            l: d.long(),
            g: d.granularity(),
            avl: d.avl(),
            unusable: false,
        }
    }

    /// Code segment.
    pub(crate) fn is_code(&self) -> bool {
        self.s && self.type_ & 8 != 0
    }
    /// Data segment that is expand-down.
    pub(crate) fn is_expand_down(&self) -> bool {
        self.s && self.type_ & 0xc == 0x4
    }

    /// Fields that differ from `other` (e.g. the cache vs. the table now), by name. The accessed
    /// type bit is ignored: the CPU sets it in the table on load.
    pub(crate) fn mismatches(&self, other: &SegmentCache) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut check = |differs: bool, name| {
            if differs {
                v.push(name)
            }
        };
        check(self.selector != other.selector, "selector");
        check(self.base != other.base, "base");
        check(self.limit != other.limit, "limit");
        check((self.type_ | 1) != (other.type_ | 1), "type");
        check(self.s != other.s, "s");
        check(self.dpl != other.dpl, "dpl");
        check(self.present != other.present, "present");
        check(self.db != other.db, "db");
        check(self.l != other.l, "l");
        check(self.g != other.g, "g");
        check(self.avl != other.avl, "avl");
        v
    }
}

impl fmt::Display for SegmentCache {
    /// QEMU `info registers` style: `0010 0000000000000000 ffffffff 00cf9300 DPL=0 [-WA]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw_limit_hi = if self.g {
            self.limit >> 28
        } else {
            self.limit >> 16
        } & 0xf;
        let attr = (self.type_ as u32) << 8
            | raw_limit_hi << 16
            | (self.s as u32) << 12
            | (self.dpl as u32) << 13
            | (self.present as u32) << 15
            | (self.avl as u32) << 20
            | (self.l as u32) << 21
            | (self.db as u32) << 22
            | (self.g as u32) << 23;
        write!(
            f,
            "{:04x} {:016x} {:08x} {:08x} DPL={}",
            self.selector.0, self.base, self.limit, attr, self.dpl
        )?;
        if self.unusable {
            return f.write_str(" unusable");
        }
        if !self.s {
            return f.write_str(" system");
        }
        let t = self.type_;
        if t & 8 != 0 {
            let c = if t & 4 != 0 { 'C' } else { '-' };
            let r = if t & 2 != 0 { 'R' } else { '-' };
            let a = if t & 1 != 0 { 'A' } else { '-' };
            write!(f, " [{c}{r}{a}]")
        } else {
            let e = if t & 4 != 0 { 'E' } else { '-' };
            let w = if t & 2 != 0 { 'W' } else { '-' };
            let a = if t & 1 != 0 { 'A' } else { '-' };
            write!(f, " [{e}{w}{a}]")
        }
    }
}

impl CpuMode {
    /// The mode from the registers and the hidden CS cache (its L and D/B bits).
    pub fn from_cache(regs: &ControlRegs, rflags: u64, cs: &SegmentCache) -> Self {
        let mut efer = regs.efer;
        if regs.long_mode_active() {
            efer |= super::cpu::EferFlags::LMA;
        }
        CpuMode::detect(regs.cr0, efer, rflags, cs.l, cs.db)
    }
}

/// What an access through a segment does, for the type check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegAccess {
    /// A data read (or a code read through a readable code segment).
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
    /// Debugger access: limits and presence are checked, the type is not.
    Any,
}

/// A descriptor table register (GDTR/IDTR): linear base and limit (last valid byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TableRegister {
    /// Linear address of the table.
    pub base: u64,
    /// Offset of its last byte.
    pub limit: u16,
}

/// Why a logical address has no linear address, or a selector no descriptor.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SegmentError {
    #[error("{seg} is unusable (null selector): #GP(0)")]
    /// The segment is unusable (loaded with a null selector).
    Unusable {
        /// The segment register used.
        seg: SegmentRegister,
    },
    #[error("{seg} segment is not present: #NP")]
    /// The segment's descriptor has P = 0.
    NotPresent {
        /// The segment register used.
        seg: SegmentRegister,
    },
    /// The segment's type does not allow the access.
    #[error("{seg}: {access:?} not allowed on segment type {type_:#x}: #GP(0)")]
    WrongType {
        /// The segment register used.
        seg: SegmentRegister,
        /// The access.
        access: SegAccess,
        /// The segment's 4-bit type.
        type_: u8,
    },
    /// The access is outside the segment's limit.
    #[error("{seg}: offset {offset:#x}+{len:#x} is outside the limit {limit:#x} (expand-down: {expand_down}): #GP(0)")]
    Limit {
        /// The segment register used.
        seg: SegmentRegister,
        /// The offset accessed.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// The segment's limit in bytes.
        limit: u32,
        /// Whether valid offsets lie above the limit.
        expand_down: bool,
    },
    #[error("{seg}: linear address {linear:#x} is not canonical: #GP(0)")]
    /// The linear address is not canonical (64-bit mode).
    NonCanonical {
        /// The segment register used.
        seg: SegmentRegister,
        /// The linear address.
        linear: u64,
    },
    #[error("selector {selector} is null")]
    /// The selector is null: it names no descriptor.
    NullSelector {
        /// The selector.
        selector: SegmentSelector,
    },
    /// The selector's index is past the table's limit.
    #[error("selector {selector} is beyond the table limit {limit:#x}")]
    OutsideTable {
        /// The selector.
        selector: SegmentSelector,
        /// The table's limit.
        limit: u32,
    },
    #[error("selector {selector} refers to the LDT, but LDTR is unusable")]
    /// The selector names the LDT but LDTR holds none.
    NoLdt {
        /// The selector.
        selector: SegmentSelector,
    },
    /// The descriptor cannot be read.
    #[error("descriptor for {selector} at linear {addr:#x} cannot be read: {source}")]
    Unreadable {
        /// The selector.
        selector: SegmentSelector,
        /// The descriptor's linear address.
        addr: u64,
        /// Why it cannot be read.
        source: LinearReadError,
    },
}

/// Logical → linear through the hidden cache of `seg`, as the CPU does in `mode`.
///
/// `len` bytes starting at `offset` must all be inside the segment (`len` = 0 is treated as 1).
/// Real and virtual-8086 mode use the cached base and limit, so "unreal mode" works; the 1 MiB
/// A20 wrap is not applied (A20 is on). Outside 64-bit mode the linear address wraps at 4 GiB.
pub(crate) fn logical_to_linear(
    mode: CpuMode,
    regs: &ControlRegs,
    seg: SegmentRegister,
    cache: &SegmentCache,
    offset: u64,
    len: u64,
    access: SegAccess,
) -> Result<u64, SegmentError> {
    let last = offset.wrapping_add(len.max(1) - 1);
    if mode == CpuMode::Long64 {
        let base = match seg {
            SegmentRegister::Fs | SegmentRegister::Gs => cache.base,
            _ => 0,
        };
        let bits = if regs.cr4.contains(Cr4Flags::LA57) {
            57
        } else {
            48
        };
        let linear = base.wrapping_add(offset);
        let end = base.wrapping_add(last);
        for a in [linear, end] {
            if !super::addr::is_canonical(a, bits) {
                return Err(SegmentError::NonCanonical { seg, linear: a });
            }
        }
        return Ok(linear);
    }
    if mode.is_protected_segmentation() {
        if cache.unusable {
            return Err(SegmentError::Unusable { seg });
        }
        if !cache.present {
            return Err(SegmentError::NotPresent { seg });
        }
        let t = cache.type_;
        let code = cache.is_code();
        let ok = match access {
            SegAccess::Any => true,
            SegAccess::Read => !code || t & 2 != 0,
            SegAccess::Write => cache.s && !code && t & 2 != 0,
            SegAccess::Execute => code,
        };
        if !ok {
            return Err(SegmentError::WrongType {
                seg,
                access,
                type_: t,
            });
        }
    }
    let expand_down = mode.is_protected_segmentation() && cache.is_expand_down();
    let in_limit = if expand_down {
        let upper: u64 = if cache.db { 0xffff_ffff } else { 0xffff };
        offset > cache.limit as u64 && last <= upper && last >= offset
    } else {
        last <= cache.limit as u64 && last >= offset
    };
    if !in_limit {
        return Err(SegmentError::Limit {
            seg,
            offset,
            len,
            limit: cache.limit,
            expand_down,
        });
    }
    Ok(cache.base.wrapping_add(offset) & 0xffff_ffff)
}

/// Reads the descriptor `selector` refers to, from the GDT or (TI = 1) the LDT that `ldtr`
/// describes. Tables are at linear addresses, hence [`LinearMemory`].
pub(crate) fn descriptor_for<L: LinearMemory + ?Sized>(
    mem: &L,
    gdtr: TableRegister,
    ldtr: &SegmentCache,
    selector: SegmentSelector,
    long_mode: bool,
) -> Result<Descriptor, SegmentError> {
    let (base, limit) = if selector.is_ldt() {
        if ldtr.unusable || !ldtr.present {
            return Err(SegmentError::NoLdt { selector });
        }
        (ldtr.base, ldtr.limit)
    } else {
        if selector.is_null() {
            return Err(SegmentError::NullSelector { selector });
        }
        (gdtr.base, gdtr.limit as u32)
    };
    let off = selector.table_offset();
    if off + 7 > limit as u64 {
        return Err(SegmentError::OutsideTable { selector, limit });
    }
    let addr = base.wrapping_add(off);
    let read = |a: u64| {
        let mut b = [0u8; 8];
        mem.read_linear(a, &mut b)
            .map(|_| u64::from_le_bytes(b))
            .map_err(|source| SegmentError::Unreadable {
                selector,
                addr: a,
                source,
            })
    };
    let low = read(addr)?;
    let high = if Descriptor::is_wide(low, long_mode) && off + 15 <= limit as u64 {
        read(addr + 8)?
    } else {
        0
    };
    Ok(Descriptor::decode(low, high, long_mode))
}

/// What the segment cache would hold if `selector` were loaded now from the tables; compare with
/// the real cache via [`SegmentCache::mismatches`]. `None` for system descriptors and gates.
pub(crate) fn cache_from_tables<L: LinearMemory + ?Sized>(
    mem: &L,
    gdtr: TableRegister,
    ldtr: &SegmentCache,
    selector: SegmentSelector,
    long_mode: bool,
) -> Result<Option<SegmentCache>, SegmentError> {
    Ok(
        match descriptor_for(mem, gdtr, ldtr, selector, long_mode)? {
            Descriptor::Segment(d) => Some(SegmentCache::from_descriptor(selector, d)),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::paging::PagedMemory;
    use crate::x86::phys::VecMemory;

    #[test]
    fn known_descriptor_constants() {
        assert_eq!(DescriptorFlags::KERNEL_CODE64.bits(), 0x00af_9b00_0000_ffff);
        assert_eq!(DescriptorFlags::KERNEL_CODE32.bits(), 0x00cf_9b00_0000_ffff);
        assert_eq!(DescriptorFlags::KERNEL_DATA.bits(), 0x00cf_9300_0000_ffff);
        assert_eq!(DescriptorFlags::USER_CODE64.bits(), 0x00af_fb00_0000_ffff);
        assert_eq!(DescriptorFlags::USER_DATA.bits(), 0x00cf_f300_0000_ffff);
        let d = SegmentDescriptor(0x00af_9b00_0000_ffff);
        assert!(d.long() && !d.db() && d.granularity() && d.present());
        assert_eq!(
            (d.base(), d.limit(), d.dpl(), d.type_bits()),
            (0, 0xffff_ffff, 0, 0xb)
        );
    }

    #[test]
    fn selectors() {
        let s = SegmentSelector(0x2b);
        assert_eq!((s.index(), s.is_ldt(), s.rpl()), (5, false, 3));
        assert_eq!(SegmentSelector(0x0f).index(), 1);
        assert!(SegmentSelector(0x0f).is_ldt());
        assert!(SegmentSelector(3).is_null());
        assert_eq!(s.to_string(), "0x002b (GDT[5], RPL 3)");
    }

    #[test]
    fn base_limit_decoding() {
        // base 0x12345678, limit 0x5ffff bytes (G=0), data RW, DPL 2
        let raw = 0x1205_d234_5678_ffff_u64 & !0xffff_0000 | 0x5678_0000;
        let d = SegmentDescriptor(raw);
        assert_eq!(d.base(), 0x1234_5678);
        assert_eq!(d.raw_limit(), 0x5ffff);
        assert_eq!(d.limit(), 0x5ffff);
        assert_eq!(d.dpl(), 2);
        let text = Descriptor::decode(0x00cf_9b00_0000_ffff, 0, false).to_string();
        assert_eq!(
            text,
            "Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, \
             Accessed, 32-bit, DPL=0"
        );
    }

    #[test]
    fn system_descriptors() {
        // 64-bit TSS at 0xffff_8000_0012_3000, limit 0x67, busy
        let low = 0x0000_8b12_3000_0067u64;
        let high = 0xffff_8000u64;
        assert!(Descriptor::is_wide(low, true));
        assert!(!Descriptor::is_wide(low, false));
        let d = Descriptor::decode(low, high, true);
        assert_eq!(
            d,
            Descriptor::System(SystemSegment {
                kind: SystemType::Tss64 { busy: true },
                base: 0xffff_8000_0012_3000,
                limit: 0x67,
                dpl: 0,
                present: true
            })
        );
        let d32 = Descriptor::decode(low, 0, false);
        assert!(d32
            .to_string()
            .starts_with("32-Bit TSS (Busy) at 0x00123000, length 0x00067"));
        // LDT
        let ldt = Descriptor::decode(0x0000_8200_4000_00ff, 0, false);
        assert!(matches!(
            ldt,
            Descriptor::System(SystemSegment {
                kind: SystemType::Ldt,
                base: 0x4000,
                limit: 0xff,
                ..
            })
        ));
        // 64-bit interrupt gate: target 0x0008:0xffffffff81001234, IST 1
        let gate = Descriptor::decode(0x8100_8e01_0008_1234, 0xffff_ffff, true);
        let Descriptor::Gate(g) = gate else {
            panic!("{gate:?}")
        };
        assert_eq!(
            (g.selector.0, g.offset, g.ist, g.present),
            (8, 0xffff_ffff_8100_1234, 1, true)
        );
        assert_eq!(
            gate.to_string(),
            "64-Bit Interrupt Gate target=0x0008:0xffffffff81001234, DPL=0, IST=1"
        );
        // 32-bit trap gate DPL 3; call gate with 2 params; task gate
        let Descriptor::Gate(t) = Descriptor::decode(0x0010_ef00_0008_5678, 0, false) else {
            panic!()
        };
        assert_eq!(
            (t.kind, t.offset, t.dpl),
            (SystemType::TrapGate32, 0x0010_5678, 3)
        );
        let Descriptor::Gate(c) = Descriptor::decode(0x0000_8c02_0008_1000, 0, false) else {
            panic!()
        };
        assert_eq!((c.kind, c.param_count), (SystemType::CallGate32, 2));
        let Descriptor::Gate(tg) = Descriptor::decode(0x0000_8500_0028_0000, 0, false) else {
            panic!()
        };
        assert_eq!((tg.kind, tg.selector.0), (SystemType::TaskGate, 0x28));
        assert!(matches!(
            Descriptor::decode(0x0000_8d00_0000_0000, 0, true),
            Descriptor::Invalid { type_bits: 0xd, .. }
        ));
        assert!(matches!(
            Descriptor::decode(0x0000_8600_0000_0000, 0, true),
            Descriptor::Invalid { type_bits: 6, .. }
        ));
    }

    fn prot32() -> ControlRegs {
        ControlRegs::new(0x11, 0, 0, 0)
    }

    #[test]
    fn real_mode() {
        let regs = ControlRegs::new(0x10, 0, 0, 0);
        let ds = SegmentCache::real_mode(0x1234, false);
        let lin = logical_to_linear(
            CpuMode::Real,
            &regs,
            SegmentRegister::Ds,
            &ds,
            0x10,
            2,
            SegAccess::Read,
        );
        assert_eq!(lin, Ok(0x12350));
        assert!(matches!(
            logical_to_linear(
                CpuMode::Real,
                &regs,
                SegmentRegister::Ds,
                &ds,
                0xffff,
                2,
                SegAccess::Read
            ),
            Err(SegmentError::Limit { .. })
        ));
        // unreal mode: cached 4 GiB limit with base 0
        let unreal = SegmentCache {
            limit: 0xffff_ffff,
            base: 0,
            ..ds
        };
        assert_eq!(
            logical_to_linear(
                CpuMode::Real,
                &regs,
                SegmentRegister::Ds,
                &unreal,
                0x20_0000,
                4,
                SegAccess::Write
            ),
            Ok(0x20_0000)
        );
    }

    #[test]
    fn protected_mode_limits_and_types() {
        let regs = prot32();
        let sel = SegmentSelector(0x10);
        // base 0x10000, byte-granular limit 0xfff, data RW
        let data = SegmentCache::from_descriptor(sel, SegmentDescriptor(0x0040_9301_0000_0fff));
        assert_eq!((data.base, data.limit), (0x10000, 0xfff));
        let l = |c: &SegmentCache, off, len, acc| {
            logical_to_linear(
                CpuMode::Protected32,
                &regs,
                SegmentRegister::Ds,
                c,
                off,
                len,
                acc,
            )
        };
        assert_eq!(l(&data, 0xffc, 4, SegAccess::Write), Ok(0x10ffc));
        assert!(matches!(
            l(&data, 0xffd, 4, SegAccess::Read),
            Err(SegmentError::Limit { .. })
        ));
        // page granularity: limit 0xf -> 0xffff
        let g = SegmentCache::from_descriptor(sel, SegmentDescriptor(0x0080_9300_0000_000f));
        assert_eq!(g.limit, 0xffff);
        assert_eq!(l(&g, 0xfffc, 4, SegAccess::Read), Ok(0xfffc));
        // expand-down, limit 0xfff, B=1: valid offsets 0x1000..=0xffffffff
        let down = SegmentCache::from_descriptor(sel, SegmentDescriptor(0x0040_9700_0000_0fff));
        assert!(down.is_expand_down());
        assert!(matches!(
            l(&down, 0xfff, 1, SegAccess::Read),
            Err(SegmentError::Limit {
                expand_down: true,
                ..
            })
        ));
        assert_eq!(l(&down, 0x1000, 4, SegAccess::Read), Ok(0x1000));
        assert_eq!(l(&down, 0xffff_fffc, 4, SegAccess::Read), Ok(0xffff_fffc));
        // expand-down with B=0: upper bound 0xffff
        let down16 = SegmentCache { db: false, ..down };
        assert!(l(&down16, 0x1_0000, 1, SegAccess::Read).is_err());
        assert_eq!(l(&down16, 0xffff, 1, SegAccess::Read), Ok(0xffff));
        // types: write to code, read of execute-only code, fetch from data
        let code_xo = SegmentCache::from_descriptor(sel, SegmentDescriptor(0x00cf_9800_0000_ffff));
        assert!(matches!(
            l(&code_xo, 0, 1, SegAccess::Read),
            Err(SegmentError::WrongType { .. })
        ));
        assert!(matches!(
            l(&code_xo, 0, 1, SegAccess::Write),
            Err(SegmentError::WrongType { .. })
        ));
        assert_eq!(l(&code_xo, 0x1234, 1, SegAccess::Execute), Ok(0x1234));
        assert_eq!(l(&code_xo, 0x1234, 1, SegAccess::Any), Ok(0x1234));
        assert!(matches!(
            l(&data, 0, 1, SegAccess::Execute),
            Err(SegmentError::WrongType { .. })
        ));
        let ro = SegmentCache { type_: 1, ..data };
        assert!(matches!(
            l(&ro, 0, 1, SegAccess::Write),
            Err(SegmentError::WrongType { .. })
        ));
        // null and not present
        let null = SegmentCache {
            unusable: true,
            ..data
        };
        assert_eq!(
            l(&null, 0, 1, SegAccess::Read),
            Err(SegmentError::Unusable {
                seg: SegmentRegister::Ds
            })
        );
        let np = SegmentCache {
            present: false,
            ..data
        };
        assert_eq!(
            l(&np, 0, 1, SegAccess::Read),
            Err(SegmentError::NotPresent {
                seg: SegmentRegister::Ds
            })
        );
        // base + offset wraps at 4 GiB; compatibility mode behaves the same
        let high = SegmentCache {
            base: 0xffff_f000,
            limit: 0xffff_ffff,
            ..data
        };
        assert_eq!(l(&high, 0x2000, 1, SegAccess::Read), Ok(0x1000));
        let compat = logical_to_linear(
            CpuMode::Compatibility,
            &regs,
            SegmentRegister::Ds,
            &data,
            0x10,
            1,
            SegAccess::Read,
        );
        assert_eq!(compat, Ok(0x10010));
    }

    #[test]
    fn long_mode_bases_and_canonical() {
        let regs = ControlRegs::new(0x8000_0011, 0, 0x20, 0x500);
        let ds = SegmentCache {
            base: 0x1234_0000,
            unusable: true,
            ..Default::default()
        };
        let fs = SegmentCache {
            base: 0xffff_8000_0000_0000,
            ..Default::default()
        };
        let l = |seg, c: &SegmentCache, off| {
            logical_to_linear(CpuMode::Long64, &regs, seg, c, off, 8, SegAccess::Write)
        };
        // DS base ignored, even an unusable DS works in 64-bit mode
        assert_eq!(l(SegmentRegister::Ds, &ds, 0x40), Ok(0x40));
        assert_eq!(l(SegmentRegister::Fs, &fs, 0x40), Ok(0xffff_8000_0000_0040));
        assert!(matches!(
            l(SegmentRegister::Ds, &ds, 0x8000_0000_0000),
            Err(SegmentError::NonCanonical { .. })
        ));
        assert!(matches!(
            l(SegmentRegister::Ds, &ds, 0x7fff_ffff_fffc),
            Err(SegmentError::NonCanonical { .. })
        ));
        let la57 = ControlRegs::new(0x8000_0011, 0, 0x1020, 0x500);
        assert_eq!(
            logical_to_linear(
                CpuMode::Long64,
                &la57,
                SegmentRegister::Ds,
                &ds,
                0x8000_0000_0000,
                8,
                SegAccess::Read
            ),
            Ok(0x8000_0000_0000)
        );
    }

    #[test]
    fn table_vs_cache() {
        let mut m = VecMemory::new(0x10000);
        let gdt = 0x1000u64;
        m.write_u64(gdt + 8, 0x00cf_9b00_0000_ffff);
        m.write_u64(gdt + 0x10, 0x00cf_9300_0000_ffff);
        m.write_u64(gdt + 0x18, 0x0000_8200_2000_0017); // LDT at 0x2000, 3 entries
        m.write_u64(0x2000 + 8, 0x0040_f300_3000_0fff); // LDT[1]: data base 0x3000, DPL 3
        let mem = PagedMemory::new(&m, prot32());
        let gdtr = TableRegister {
            base: gdt,
            limit: 0x1f,
        };
        let ldtr = SegmentCache {
            selector: SegmentSelector(0x18),
            base: 0x2000,
            limit: 0x17,
            type_: 2,
            present: true,
            ..Default::default()
        };
        let cached = SegmentCache {
            type_: 3,
            ..SegmentCache::from_descriptor(
                SegmentSelector(0x10),
                SegmentDescriptor(0x00cf_9300_0000_ffff),
            )
        };
        let table = cache_from_tables(&mem, gdtr, &ldtr, SegmentSelector(0x10), false)
            .unwrap()
            .unwrap();
        assert!(cached.mismatches(&table).is_empty());
        // the guest rewrote the GDT entry after loading DS: base differs
        m.write_u64(gdt + 0x10, 0x00cf_9301_0000_ffff);
        let mem = PagedMemory::new(&m, prot32());
        let table = cache_from_tables(&mem, gdtr, &ldtr, SegmentSelector(0x10), false)
            .unwrap()
            .unwrap();
        assert_eq!(cached.mismatches(&table), ["base"]);
        // LDT selector 0x0f = LDT[1], RPL 3
        let d = descriptor_for(&mem, gdtr, &ldtr, SegmentSelector(0x0f), false).unwrap();
        let Descriptor::Segment(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!((s.base(), s.dpl()), (0x3000, 3));
        // beyond limits
        assert!(matches!(
            descriptor_for(&mem, gdtr, &ldtr, SegmentSelector(0x20), false),
            Err(SegmentError::OutsideTable { .. })
        ));
        assert!(matches!(
            descriptor_for(&mem, gdtr, &ldtr, SegmentSelector(0x1c), false),
            Err(SegmentError::OutsideTable { .. })
        ));
        assert!(matches!(
            descriptor_for(&mem, gdtr, &ldtr, SegmentSelector(0), false),
            Err(SegmentError::NullSelector { .. })
        ));
        let no_ldt = SegmentCache {
            unusable: true,
            ..ldtr
        };
        assert!(matches!(
            descriptor_for(&mem, gdtr, &no_ldt, SegmentSelector(0x0f), false),
            Err(SegmentError::NoLdt { .. })
        ));
        let far = TableRegister {
            base: 0xfff8,
            limit: 0xffff,
        };
        assert!(matches!(
            descriptor_for(&mem, far, &ldtr, SegmentSelector(0x10), false),
            Err(SegmentError::Unreadable { .. })
        ));
        assert_eq!(
            cached.to_string(),
            "0010 0000000000000000 ffffffff 00cf9300 DPL=0 [-WA]"
        );
    }
}
