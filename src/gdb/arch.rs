//! Our `gdbstub` architecture: the x86 register file as gdb sees it, in three layouts.
//!
//! `gdbstub_arch` only knows the core and SSE registers, with one fixed width. A kernel debugger
//! also wants `$cr3`, `$efer`, `$fs_base`, the descriptor-table registers and the debug registers,
//! and it wants a description that matches the guest's mode: a 64-bit description makes gdb
//! decode 32-bit code as 64-bit and clashes with a 32-bit ELF (gdb keeps the ELF's i386 layout and
//! fails with "Remote 'g' packet reply is too long"), and only the `i8086` architecture makes gdb
//! disassemble 16-bit code. So the description is chosen per
//! connection ([`RegLayout`]) and served by the target through gdbstub's
//! `TargetDescriptionXmlOverride`; [`GdbvisorArch::target_description_xml`] stays `None`.
//!
//! One table per layout ([`RegLayout::registers`]) drives everything: the `g`/`G` byte stream,
//! single-register `p`/`P` access and the generated target.xml, so the three cannot drift apart.
//! gdb numbers the registers in XML order (no `regnum=` attributes), which is the table order.
//!
//! Layouts (register names, bit sizes):
//! - `X86_64` (QEMU's order): core `rax rbx rcx rdx rsi rdi rbp rsp r8`–`r15 rip`:64 `eflags`:32
//!   `cs ss ds es fs gs`:32 `st0`–`st7`:80 `fctrl fstat ftag fiseg fioff foseg fooff fop`:32; sse
//!   `xmm0`–`xmm15`:128 `mxcsr`:32; segments `fs_base gs_base k_gs_base`:64; sys
//!   `cr0 cr2 cr3 cr4 cr8 efer`:64; tables `gdtr_base`:64 `gdtr_limit`:16 `idtr_base`:64
//!   `idtr_limit`:16 `ldtr tr`:16 `dr0 dr1 dr2 dr3 dr6 dr7`:64. 680 bytes.
//! - `I386` and `I8086` (same registers, only `<architecture>` differs): core
//!   `eax ecx edx ebx esp ebp esi edi eip eflags cs ss ds es fs gs`:32, x87 as above; sse
//!   `xmm0`–`xmm7`:128 `mxcsr`:32; segments `fs_base gs_base`:32; sys `cr0 cr2 cr3 cr4 cr8`:32
//!   `efer`:64; tables `gdtr_base`:32 `gdtr_limit`:16 `idtr_base`:32 `idtr_limit`:16 `ldtr tr`:16
//!   `dr0 dr1 dr2 dr3 dr6 dr7`:32. 384 bytes.
//!
//! Registers narrower than their [`RegisterFile`] field (eax in rax, eflags, a 32-bit cr3) are
//! written by replacing the low bytes only, so a write through a 32-bit view never clobbers
//! state the view cannot show.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::OnceLock;

use gdbstub::arch::{Arch, RegId, Registers};

use crate::x86::cpu::{Cr0Flags, Cr4Flags, EferFlags, MxcsrFlags, RFlags};
use crate::x86::CpuMode;

/// Which register description gdb is given; fixed for the life of a connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegLayout {
    /// 32-bit registers, `<architecture>i8086</architecture>`: gdb disassembles 16-bit code.
    I8086,
    /// 32-bit registers, `<architecture>i386</architecture>`.
    I386,
    /// 64-bit registers, `<architecture>i386:x86-64</architecture>`.
    #[default]
    X86_64,
}

impl RegLayout {
    /// The layout matching what the CPU executes in `mode`.
    ///
    /// 16-bit protected mode and virtual-8086 mode run 16-bit code, so they get `I8086` for the
    /// disassembler's sake. Compatibility mode keeps `X86_64`: the 64-bit register state is
    /// live and the kernel around it is 64-bit.
    pub(crate) fn from_mode(mode: CpuMode) -> Self {
        match mode {
            CpuMode::Real | CpuMode::Virtual8086 | CpuMode::Protected16 => RegLayout::I8086,
            CpuMode::Protected32 => RegLayout::I386,
            CpuMode::Compatibility | CpuMode::Long64 => RegLayout::X86_64,
        }
    }

    /// The name `--gdb-arch` and `monitor arch` know this layout by.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RegLayout::I8086 => "i8086",
            RegLayout::I386 => "i386",
            RegLayout::X86_64 => "x86-64",
        }
    }

    /// The layout [`RegLayout::name`] gives `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [RegLayout::I8086, RegLayout::I386, RegLayout::X86_64]
            .into_iter()
            .find(|layout| layout.name() == name)
    }

    /// The `<architecture>` name gdb knows this layout by.
    pub(crate) fn architecture(self) -> &'static str {
        match self {
            RegLayout::I8086 => "i8086",
            RegLayout::I386 => "i386",
            RegLayout::X86_64 => "i386:x86-64",
        }
    }

    /// The registers in gdb's numbering: entry `n` is gdb register number `n`.
    pub(crate) fn registers(self) -> &'static [RegInfo] {
        static TABLES: [OnceLock<Vec<RegInfo>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        TABLES[self.index()].get_or_init(|| build_table(self))
    }

    /// Bytes in a `g` reply (and a `G` request) for this layout.
    pub(crate) fn g_packet_len(self) -> usize {
        self.registers().iter().map(RegInfo::bytes).sum()
    }

    fn index(self) -> usize {
        match self {
            RegLayout::I8086 => 0,
            RegLayout::I386 => 1,
            RegLayout::X86_64 => 2,
        }
    }

    fn is_64(self) -> bool {
        self == RegLayout::X86_64
    }
}

/// Which description a gdb connection is served when it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchChoice {
    /// `--gdb-arch auto`: that of the file gdb loads (the kernel's ELF class). The runner turns
    /// it into [`ArchChoice::Fixed`] once it knows the kernel; with no kernel file (a snapshot)
    /// it acts as [`ArchChoice::Mode`].
    Kernel,
    /// That of vCPU 0's CPU mode at attach time (what `gdbvisor-connect` asks for).
    Mode,
    /// This one, whatever the mode.
    Fixed(RegLayout),
}

impl ArchChoice {
    /// The layout, unless it is that of the CPU's mode at attach time.
    pub(crate) fn fixed(self) -> Option<RegLayout> {
        match self {
            ArchChoice::Fixed(layout) => Some(layout),
            ArchChoice::Kernel | ArchChoice::Mode => None,
        }
    }
}

/// A register of [`RegisterFile`], independent of the width gdb sees it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reg {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    Rip,
    Eflags,
    Cs,
    Ss,
    Ds,
    Es,
    Fs,
    Gs,
    /// x87 register `st(i)`; the index is taken modulo 8.
    St(u8),
    Fctrl,
    Fstat,
    Ftag,
    Fiseg,
    Fioff,
    Foseg,
    Fooff,
    Fop,
    /// SSE register `xmm(i)`; the index is taken modulo 16.
    Xmm(u8),
    Mxcsr,
    FsBase,
    GsBase,
    KGsBase,
    Cr0,
    Cr2,
    Cr3,
    Cr4,
    Cr8,
    Efer,
    GdtrBase,
    GdtrLimit,
    IdtrBase,
    IdtrLimit,
    Ldtr,
    Tr,
    Dr0,
    Dr1,
    Dr2,
    Dr3,
    Dr6,
    Dr7,
}

/// One register as described to gdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegInfo {
    /// Which [`RegisterFile`] field it shows.
    pub(crate) reg: Reg,
    /// gdb's name (`$name`).
    pub(crate) name: &'static str,
    /// Width gdb sees; at most the field's width, in which case the low bits are shown.
    pub(crate) bitsize: usize,
    /// The `<feature>` it belongs to.
    pub(crate) feature: &'static str,
    /// gdb type (predefined or defined in the feature).
    ty: &'static str,
    /// gdb register group, when gdb's own description gives one.
    group: Option<&'static str>,
}

impl RegInfo {
    /// Width in bytes in the `g` packet.
    pub(crate) fn bytes(&self) -> usize {
        self.bitsize / 8
    }
}

/// The whole vCPU state gdb can see, at full width regardless of layout.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RegisterFile {
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rbp: u64,
    pub(crate) rsp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
    /// What gdb calls `$pc`; the target decides what it holds (e.g. CS:IP's linear address).
    pub(crate) rip: u64,
    pub(crate) eflags: u64,
    /// Segment selectors.
    pub(crate) cs: u64,
    pub(crate) ss: u64,
    pub(crate) ds: u64,
    pub(crate) es: u64,
    pub(crate) fs: u64,
    pub(crate) gs: u64,
    pub(crate) fs_base: u64,
    pub(crate) gs_base: u64,
    /// IA32_KERNEL_GS_BASE, what `swapgs` exchanges with `gs_base`.
    pub(crate) k_gs_base: u64,
    pub(crate) cr0: u64,
    pub(crate) cr2: u64,
    pub(crate) cr3: u64,
    pub(crate) cr4: u64,
    pub(crate) cr8: u64,
    pub(crate) efer: u64,
    /// x87 registers in FXSAVE order: 80-bit little-endian values.
    pub(crate) st: [[u8; 10]; 8],
    pub(crate) fctrl: u32,
    pub(crate) fstat: u32,
    pub(crate) ftag: u32,
    pub(crate) fiseg: u32,
    pub(crate) fioff: u32,
    pub(crate) foseg: u32,
    pub(crate) fooff: u32,
    pub(crate) fop: u32,
    pub(crate) xmm: [u128; 16],
    pub(crate) mxcsr: u32,
    pub(crate) gdtr_base: u64,
    pub(crate) gdtr_limit: u64,
    pub(crate) idtr_base: u64,
    pub(crate) idtr_limit: u64,
    /// LDTR selector.
    pub(crate) ldtr: u64,
    /// TR selector.
    pub(crate) tr: u64,
    pub(crate) dr0: u64,
    pub(crate) dr1: u64,
    pub(crate) dr2: u64,
    pub(crate) dr3: u64,
    pub(crate) dr6: u64,
    pub(crate) dr7: u64,
}

/// A field of [`RegisterFile`], whatever its Rust type, as a little-endian integer.
trait Field {
    fn get(&self) -> u128;
    /// Replaces the bits selected by `mask`, keeping the others.
    fn set_masked(&mut self, value: u128, mask: u128);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn get(&self) -> u128 {
                u128::from(*self)
            }
            fn set_masked(&mut self, value: u128, mask: u128) {
                let merged = (self.get() & !mask) | (value & mask);
                // Only bits of `mask` within the field's width change, so this never truncates
                // anything the caller meant to keep.
                *self = merged as $t;
            }
        }
    )*};
}
int_field!(u32, u64, u128);

impl Field for [u8; 10] {
    fn get(&self) -> u128 {
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(self);
        u128::from_le_bytes(b)
    }
    fn set_masked(&mut self, value: u128, mask: u128) {
        let merged = (self.get() & !mask) | (value & mask);
        self.copy_from_slice(&merged.to_le_bytes()[..10]);
    }
}

// Generates the shared and mutable accessors from one list so they cannot disagree.
macro_rules! fields {
    ($($var:ident => $f:ident),* $(,)?) => {
        impl RegisterFile {
            fn field(&self, reg: Reg) -> &dyn Field {
                match reg {
                    $(Reg::$var => &self.$f,)*
                    Reg::St(i) => &self.st[usize::from(i) % 8],
                    Reg::Xmm(i) => &self.xmm[usize::from(i) % 16],
                }
            }
            fn field_mut(&mut self, reg: Reg) -> &mut dyn Field {
                match reg {
                    $(Reg::$var => &mut self.$f,)*
                    Reg::St(i) => &mut self.st[usize::from(i) % 8],
                    Reg::Xmm(i) => &mut self.xmm[usize::from(i) % 16],
                }
            }
        }
    };
}

fields! {
    Rax => rax, Rbx => rbx, Rcx => rcx, Rdx => rdx, Rsi => rsi, Rdi => rdi, Rbp => rbp,
    Rsp => rsp, R8 => r8, R9 => r9, R10 => r10, R11 => r11, R12 => r12, R13 => r13,
    R14 => r14, R15 => r15, Rip => rip, Eflags => eflags, Cs => cs, Ss => ss, Ds => ds,
    Es => es, Fs => fs, Gs => gs, Fctrl => fctrl, Fstat => fstat, Ftag => ftag,
    Fiseg => fiseg, Fioff => fioff, Foseg => foseg, Fooff => fooff, Fop => fop,
    Mxcsr => mxcsr, FsBase => fs_base, GsBase => gs_base, KGsBase => k_gs_base, Cr0 => cr0,
    Cr2 => cr2, Cr3 => cr3, Cr4 => cr4, Cr8 => cr8, Efer => efer, GdtrBase => gdtr_base,
    GdtrLimit => gdtr_limit, IdtrBase => idtr_base, IdtrLimit => idtr_limit, Ldtr => ldtr,
    Tr => tr, Dr0 => dr0, Dr1 => dr1, Dr2 => dr2, Dr3 => dr3, Dr6 => dr6, Dr7 => dr7,
}

fn low_mask(bytes: usize) -> u128 {
    if bytes >= 16 {
        u128::MAX
    } else {
        (1u128 << (bytes * 8)) - 1
    }
}

impl RegisterFile {
    /// The register's full value, zero-extended (an `st` register's 80 bits, an `xmm`'s 128).
    pub(crate) fn get(&self, reg: Reg) -> u128 {
        self.field(reg).get()
    }

    /// Sets the register's low `bytes` bytes from `value`, keeping its upper bytes.
    fn set_low(&mut self, reg: Reg, value: u128, bytes: usize) {
        self.field_mut(reg).set_masked(value, low_mask(bytes));
    }
}

/// The register file together with the layout gdb was given: what gdbstub moves in `g`/`G`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct X86Registers {
    pub(crate) layout: RegLayout,
    pub(crate) file: RegisterFile,
}

impl X86Registers {
    /// Reads gdb register `regnum` into `buf` (little-endian, the layout's width).
    ///
    /// Returns the byte count, or `None` if the layout has no such register or `buf` is short.
    pub(crate) fn read_register(&self, regnum: usize, buf: &mut [u8]) -> Option<usize> {
        let info = self.layout.registers().get(regnum)?;
        let n = info.bytes();
        let out = buf.get_mut(..n)?;
        out.copy_from_slice(&self.file.get(info.reg).to_le_bytes()[..n]);
        Some(n)
    }

    /// Writes gdb register `regnum` from `bytes`, which must be exactly the layout's width.
    ///
    /// Returns which register changed so the caller knows which vCPU state to push.
    pub(crate) fn write_register(&mut self, regnum: usize, bytes: &[u8]) -> Option<Reg> {
        let info = self.layout.registers().get(regnum)?;
        if bytes.len() != info.bytes() {
            return None;
        }
        let mut le = [0u8; 16];
        le[..bytes.len()].copy_from_slice(bytes);
        self.file
            .set_low(info.reg, u128::from_le_bytes(le), bytes.len());
        Some(info.reg)
    }
}

impl Registers for X86Registers {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.file.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for info in self.layout.registers() {
            let le = self.file.get(info.reg).to_le_bytes();
            for &b in &le[..info.bytes()] {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        // gdbstub builds the registers with the default layout before the target sees them,
        // so the layout is the one whose `g` length this is (the target then checks it is the
        // session's). Checked up front so that a bad packet leaves the registers untouched.
        if bytes.len() != self.layout.g_packet_len() {
            self.layout = [RegLayout::X86_64, RegLayout::I386, RegLayout::I8086]
                .into_iter()
                .find(|layout| layout.g_packet_len() == bytes.len())
                .ok_or(())?;
        }
        let mut rest = bytes;
        for info in self.layout.registers() {
            let (value, tail) = rest.split_at(info.bytes());
            let mut le = [0u8; 16];
            le[..value.len()].copy_from_slice(value);
            self.file
                .set_low(info.reg, u128::from_le_bytes(le), value.len());
            rest = tail;
        }
        Ok(())
    }
}

/// A raw gdb register number.
///
/// The width of register `n` depends on the connection's [`RegLayout`], which a static
/// `from_raw_id` cannot know, so no size is reported to gdbstub; resolve it with
/// [`X86Registers::read_register`] / [`X86Registers::write_register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86RegId(pub(crate) usize);

impl RegId for X86RegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        let max = RegLayout::X86_64
            .registers()
            .len()
            .max(RegLayout::I386.registers().len());
        (id < max).then_some((X86RegId(id), None))
    }

    fn to_raw_id(&self) -> Option<usize> {
        Some(self.0)
    }
}

/// The gdbstub architecture of every gdbvisor session; the layout lives in [`X86Registers`].
pub enum GdbvisorArch {}

impl Arch for GdbvisorArch {
    type Usize = u64;
    type Registers = X86Registers;
    type BreakpointKind = usize;
    type RegId = X86RegId;

    /// `None`: the target serves [`target_xml`] for its connection's layout instead.
    fn target_description_xml() -> Option<&'static str> {
        None
    }
}

const FEATURE_CORE: &str = "org.gnu.gdb.i386.core";
const FEATURE_SSE: &str = "org.gnu.gdb.i386.sse";
/// gdb 8+ maps `fs_base`/`gs_base` from this feature; `k_gs_base` rides along as a plain register.
const FEATURE_SEGMENTS: &str = "org.gnu.gdb.i386.segments";
/// gdb has no feature for these; any name works and the registers become `$cr0` etc.
const FEATURE_SYS: &str = "org.gdbvisor.x86.sys";
const FEATURE_TABLES: &str = "org.gdbvisor.x86.tables";

const ST_NAMES: [&str; 8] = ["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"];
const XMM_NAMES: [&str; 16] = [
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
];

fn build_table(layout: RegLayout) -> Vec<RegInfo> {
    let wide = layout.is_64();
    // Natural width of general, address and control registers in this layout.
    let w = if wide { 64 } else { 32 };
    let mut t = Vec::new();
    let mut add = |feature, reg, name, bitsize, ty, group| {
        t.push(RegInfo {
            reg,
            name,
            bitsize,
            feature,
            ty,
            group,
        })
    };

    // Core. gdb's i386 and amd64 descriptions order the first eight registers differently.
    let gprs: &[(Reg, &str, &str)] = if wide {
        &[
            (Reg::Rax, "rax", "int64"),
            (Reg::Rbx, "rbx", "int64"),
            (Reg::Rcx, "rcx", "int64"),
            (Reg::Rdx, "rdx", "int64"),
            (Reg::Rsi, "rsi", "int64"),
            (Reg::Rdi, "rdi", "int64"),
            (Reg::Rbp, "rbp", "data_ptr"),
            (Reg::Rsp, "rsp", "data_ptr"),
            (Reg::R8, "r8", "int64"),
            (Reg::R9, "r9", "int64"),
            (Reg::R10, "r10", "int64"),
            (Reg::R11, "r11", "int64"),
            (Reg::R12, "r12", "int64"),
            (Reg::R13, "r13", "int64"),
            (Reg::R14, "r14", "int64"),
            (Reg::R15, "r15", "int64"),
            (Reg::Rip, "rip", "code_ptr"),
        ]
    } else {
        &[
            (Reg::Rax, "eax", "int32"),
            (Reg::Rcx, "ecx", "int32"),
            (Reg::Rdx, "edx", "int32"),
            (Reg::Rbx, "ebx", "int32"),
            (Reg::Rsp, "esp", "data_ptr"),
            (Reg::Rbp, "ebp", "data_ptr"),
            (Reg::Rsi, "esi", "int32"),
            (Reg::Rdi, "edi", "int32"),
            (Reg::Rip, "eip", "code_ptr"),
        ]
    };
    for &(reg, name, ty) in gprs {
        add(FEATURE_CORE, reg, name, w, ty, None);
    }
    add(FEATURE_CORE, Reg::Eflags, "eflags", 32, "i386_eflags", None);
    for (reg, name) in [
        (Reg::Cs, "cs"),
        (Reg::Ss, "ss"),
        (Reg::Ds, "ds"),
        (Reg::Es, "es"),
        (Reg::Fs, "fs"),
        (Reg::Gs, "gs"),
    ] {
        add(FEATURE_CORE, reg, name, 32, "int32", None);
    }
    for (i, name) in (0u8..).zip(ST_NAMES) {
        add(FEATURE_CORE, Reg::St(i), name, 80, "i387_ext", None);
    }
    for (reg, name) in [
        (Reg::Fctrl, "fctrl"),
        (Reg::Fstat, "fstat"),
        (Reg::Ftag, "ftag"),
        (Reg::Fiseg, "fiseg"),
        (Reg::Fioff, "fioff"),
        (Reg::Foseg, "foseg"),
        (Reg::Fooff, "fooff"),
        (Reg::Fop, "fop"),
    ] {
        add(FEATURE_CORE, reg, name, 32, "int", Some("float"));
    }

    // SSE: gdb's i386 tdep expects 8 xmm registers, amd64 16.
    let nxmm = if wide { 16 } else { 8 };
    for (i, name) in (0u8..).zip(XMM_NAMES).take(nxmm) {
        add(FEATURE_SSE, Reg::Xmm(i), name, 128, "vec128", None);
    }
    add(
        FEATURE_SSE,
        Reg::Mxcsr,
        "mxcsr",
        32,
        "i386_mxcsr",
        Some("vector"),
    );

    add(FEATURE_SEGMENTS, Reg::FsBase, "fs_base", w, "int", None);
    add(FEATURE_SEGMENTS, Reg::GsBase, "gs_base", w, "int", None);
    if wide {
        // Only swapgs in 64-bit mode makes it matter.
        add(FEATURE_SEGMENTS, Reg::KGsBase, "k_gs_base", 64, "int", None);
    }

    // Control registers are 32-bit outside long mode; EFER is a 64-bit MSR everywhere.
    add(FEATURE_SYS, Reg::Cr0, "cr0", w, "i386_cr0", None);
    add(FEATURE_SYS, Reg::Cr2, "cr2", w, "int", None);
    add(FEATURE_SYS, Reg::Cr3, "cr3", w, "int", None);
    add(FEATURE_SYS, Reg::Cr4, "cr4", w, "i386_cr4", None);
    add(FEATURE_SYS, Reg::Cr8, "cr8", w, "int", None);
    add(FEATURE_SYS, Reg::Efer, "efer", 64, "i386_efer", None);

    for (reg, name, bitsize) in [
        (Reg::GdtrBase, "gdtr_base", w),
        (Reg::GdtrLimit, "gdtr_limit", 16),
        (Reg::IdtrBase, "idtr_base", w),
        (Reg::IdtrLimit, "idtr_limit", 16),
        (Reg::Ldtr, "ldtr", 16),
        (Reg::Tr, "tr", 16),
        (Reg::Dr0, "dr0", w),
        (Reg::Dr1, "dr1", w),
        (Reg::Dr2, "dr2", w),
        (Reg::Dr3, "dr3", w),
        (Reg::Dr6, "dr6", w),
        (Reg::Dr7, "dr7", w),
    ] {
        add(FEATURE_TABLES, reg, name, bitsize, "int", None);
    }
    t
}

/// The one-bit fields of a `bitflags` type as gdb's `<flags>` lists them: by bit position, those
/// at or above `width` bits left out (a flags type is exactly as wide as its register), and
/// multi-bit fields (IOPL, RC) left out as in gdb's own descriptions. `unnamed` flags get the
/// empty name, which gdb does not show (its own description names EFLAGS bit 1 so).
fn flag_fields<F>(width: u32, unnamed: F) -> Vec<(&'static str, u32)>
where
    F: bitflags::Flags + Copy,
    F::Bits: Into<u64>,
{
    let mut fields: Vec<(&'static str, u32)> = F::all()
        .iter_names()
        .filter_map(|(name, flag)| {
            let bits: u64 = flag.bits().into();
            let bit = bits.trailing_zeros();
            (bits.count_ones() == 1 && bit < width).then(|| {
                let hidden = unnamed.contains(flag);
                (if hidden { "" } else { name }, bit)
            })
        })
        .collect();
    fields.sort_by_key(|&(_, bit)| bit);
    fields
}

/// Bit flags gdb shows by name, e.g. `p $efer` → `[ SCE LME LMA NXE ]`; `bytes` is the
/// register's width.
fn write_flags<F>(xml: &mut String, id: &str, bytes: u32, unnamed: F)
where
    F: bitflags::Flags + Copy,
    F::Bits: Into<u64>,
{
    let _ = writeln!(xml, r#"    <flags id="{id}" size="{bytes}">"#);
    for (name, bit) in flag_fields(bytes * 8, unnamed) {
        let _ = writeln!(
            xml,
            r#"      <field name="{name}" start="{bit}" end="{bit}"/>"#
        );
    }
    xml.push_str("    </flags>\n");
}

/// Type definitions a feature needs; gdb looks types up only in the using feature.
fn write_feature_types(xml: &mut String, feature: &str, layout: RegLayout) {
    match feature {
        FEATURE_CORE => write_flags(xml, "i386_eflags", 4, RFlags::RESERVED_1),
        FEATURE_SSE => {
            xml.push_str(concat!(
                "    <vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>\n",
                "    <vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>\n",
                "    <vector id=\"v16i8\" type=\"int8\" count=\"16\"/>\n",
                "    <vector id=\"v8i16\" type=\"int16\" count=\"8\"/>\n",
                "    <vector id=\"v4i32\" type=\"int32\" count=\"4\"/>\n",
                "    <vector id=\"v2i64\" type=\"int64\" count=\"2\"/>\n",
                "    <union id=\"vec128\">\n",
                "      <field name=\"v4_float\" type=\"v4f\"/>\n",
                "      <field name=\"v2_double\" type=\"v2d\"/>\n",
                "      <field name=\"v16_int8\" type=\"v16i8\"/>\n",
                "      <field name=\"v8_int16\" type=\"v8i16\"/>\n",
                "      <field name=\"v4_int32\" type=\"v4i32\"/>\n",
                "      <field name=\"v2_int64\" type=\"v2i64\"/>\n",
                "      <field name=\"uint128\" type=\"uint128\"/>\n",
                "    </union>\n",
            ));
            write_flags(xml, "i386_mxcsr", 4, MxcsrFlags::empty());
        }
        FEATURE_SYS => {
            let cr = if layout.is_64() { 8 } else { 4 };
            write_flags(xml, "i386_cr0", cr, Cr0Flags::empty());
            write_flags(xml, "i386_cr4", cr, Cr4Flags::empty());
            write_flags(xml, "i386_efer", 8, EferFlags::empty());
        }
        _ => {}
    }
}

fn build_xml(layout: RegLayout) -> String {
    let mut xml = String::from(concat!(
        "<?xml version=\"1.0\"?>\n",
        "<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n",
        "<target version=\"1.0\">\n",
    ));
    let _ = writeln!(
        xml,
        "  <architecture>{}</architecture>",
        layout.architecture()
    );
    // Without it gdb assumes the host's OS ABI (GNU/Linux) for a bare kernel ELF.
    xml.push_str("  <osabi>none</osabi>\n");
    let mut current: Option<&str> = None;
    for info in layout.registers() {
        if current != Some(info.feature) {
            if current.is_some() {
                xml.push_str("  </feature>\n");
            }
            let _ = writeln!(xml, "  <feature name=\"{}\">", info.feature);
            write_feature_types(&mut xml, info.feature, layout);
            current = Some(info.feature);
        }
        let _ = write!(
            xml,
            "    <reg name=\"{}\" bitsize=\"{}\" type=\"{}\"",
            info.name, info.bitsize, info.ty
        );
        if let Some(group) = info.group {
            let _ = write!(xml, " group=\"{group}\"");
        }
        xml.push_str("/>\n");
    }
    xml.push_str("  </feature>\n</target>\n");
    xml
}

/// The complete, self-contained target.xml (no `xi:include`) for `layout`.
///
/// Register order is [`RegLayout::registers`] order, which is the `g` packet order.
/// Copies the part of `target.xml` gdb asked for (`qXfer:features:read`) into `buf`; `None` for
/// another annex.
pub(crate) fn target_xml_part(
    layout: RegLayout,
    annex: &[u8],
    offset: u64,
    length: usize,
    buf: &mut [u8],
) -> Option<usize> {
    if annex != b"target.xml" {
        return None;
    }
    let xml = target_xml(layout).as_bytes();
    let start = (offset as usize).min(xml.len());
    let end = start
        .saturating_add(length)
        .min(xml.len())
        .min(start + buf.len());
    buf[..end - start].copy_from_slice(&xml[start..end]);
    Some(end - start)
}

/// What is served: [`build_xml`]'s text without its line breaks and indentation, which gdb
/// does not need and which cost it time (gdb reading `target remote | …` spends ~0.4 us a
/// byte: it checks the command's stderr after every character).
pub(crate) fn target_xml(layout: RegLayout) -> &'static str {
    static XML: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    XML[layout.index()].get_or_init(|| build_xml(layout).lines().map(str::trim).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUTS: [RegLayout; 3] = [RegLayout::I8086, RegLayout::I386, RegLayout::X86_64];

    /// Every field set to a distinct, recognisable value so misplaced bytes show.
    fn sample() -> RegisterFile {
        let mut f = RegisterFile::default();
        let mut n = 0x0102_0304_0506_0708u64;
        let mut next = || {
            n = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
            n
        };
        for info in RegLayout::X86_64.registers() {
            let v = (u128::from(next()) << 64) | u128::from(next());
            f.set_low(info.reg, v, 16);
        }
        f
    }

    fn serialize(regs: &X86Registers) -> Vec<u8> {
        let mut out = Vec::new();
        regs.gdb_serialize(|b| out.push(b.expect("every register is available")));
        out
    }

    fn xml_bitsizes(xml: &str) -> Vec<usize> {
        xml.split("bitsize=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
            .collect()
    }

    #[test]
    fn round_trip_each_layout() {
        for layout in LAYOUTS {
            let before = X86Registers {
                layout,
                file: sample(),
            };
            let bytes = serialize(&before);
            let mut after = X86Registers {
                layout,
                file: sample(),
            };
            // Scramble what the layout shows, then restore it from the packet.
            after.file.rax ^= 1;
            after.file.xmm[7] ^= 1;
            after.file.dr7 ^= 1;
            after.gdb_deserialize(&bytes).unwrap();
            assert_eq!(before, after, "{layout:?}");
            assert_eq!(bytes.len(), layout.g_packet_len());
        }
    }

    #[test]
    fn narrow_writes_keep_upper_bits() {
        let mut regs = X86Registers {
            layout: RegLayout::I386,
            file: RegisterFile {
                rax: 0xdead_beef_0000_0001,
                ..Default::default()
            },
        };
        let mut bytes = serialize(&regs);
        bytes[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        regs.gdb_deserialize(&bytes).unwrap();
        assert_eq!(regs.file.rax, 0xdead_beef_1234_5678);
    }

    #[test]
    fn layout_sizes_and_order() {
        assert_eq!(RegLayout::X86_64.g_packet_len(), 680);
        assert_eq!(RegLayout::I386.g_packet_len(), 384);
        assert_eq!(RegLayout::I8086.g_packet_len(), 384);
        // QEMU's x86-64 order for the first 57 registers (0x218 bytes), so its tools agree.
        let r = RegLayout::X86_64.registers();
        assert_eq!(r[16].name, "rip");
        assert_eq!(r[17].name, "eflags");
        assert_eq!(r[40].name, "xmm0");
        assert_eq!(r[56].name, "mxcsr");
        assert_eq!(r[57].name, "fs_base");
        assert_eq!(r[62].name, "cr3");
        let before_fs_base: usize = r[..57].iter().map(RegInfo::bytes).sum();
        assert_eq!(before_fs_base, 0x218);
        let r = RegLayout::I386.registers();
        assert_eq!(r[8].name, "eip");
        assert_eq!(r[32].name, "xmm0");
        assert_eq!(r[40].name, "mxcsr");
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        for layout in LAYOUTS {
            let mut regs = X86Registers {
                layout,
                file: sample(),
            };
            let good = serialize(&regs);
            let before = regs.clone();
            for len in [0, 1, good.len() - 1, good.len() + 1, good.len() * 2] {
                let mut bytes = good.clone();
                bytes.resize(len, 0xAA);
                assert_eq!(
                    regs.gdb_deserialize(&bytes),
                    Err(()),
                    "{layout:?} len {len}"
                );
                assert_eq!(regs, before, "a rejected packet must not change registers");
            }
        }
    }

    #[test]
    fn single_register_access() {
        let mut regs = X86Registers {
            layout: RegLayout::X86_64,
            file: sample(),
        };
        let cr3 = RegLayout::X86_64
            .registers()
            .iter()
            .position(|r| r.name == "cr3")
            .unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(regs.read_register(cr3, &mut buf), Some(8));
        assert_eq!(
            u64::from_le_bytes(buf[..8].try_into().unwrap()),
            regs.file.cr3
        );
        assert_eq!(
            regs.write_register(cr3, &0x1000u64.to_le_bytes()),
            Some(Reg::Cr3)
        );
        assert_eq!(regs.file.cr3, 0x1000);
        assert_eq!(regs.write_register(cr3, &[0; 4]), None, "wrong width");
        assert_eq!(regs.read_register(cr3, &mut [0; 4]), None, "short buffer");
        assert_eq!(regs.read_register(10_000, &mut buf), None);

        // Each register read alone matches its slice of the 'g' packet.
        for layout in LAYOUTS {
            regs.layout = layout;
            let g = serialize(&regs);
            let mut off = 0;
            for (n, info) in layout.registers().iter().enumerate() {
                let len = regs.read_register(n, &mut buf).unwrap();
                assert_eq!(buf[..len], g[off..off + len], "{layout:?} {}", info.name);
                off += len;
            }
            assert_eq!(off, g.len());
        }
        assert!(X86RegId::from_raw_id(cr3).is_some());
        assert!(X86RegId::from_raw_id(10_000).is_none());
    }

    #[test]
    fn g_packet_matches_xml_bitsizes() {
        for layout in LAYOUTS {
            let xml = target_xml(layout);
            let bits = xml_bitsizes(xml);
            assert_eq!(bits.len(), layout.registers().len());
            assert!(bits.iter().all(|b| b % 8 == 0));
            let g = serialize(&X86Registers {
                layout,
                file: sample(),
            });
            assert_eq!(g.len(), bits.iter().sum::<usize>() / 8, "{layout:?}");
        }
    }

    /// The names, in bit order, of a `<flags>` type in the description.
    fn flag_names(xml: &str, id: &str) -> Vec<String> {
        let start = xml
            .find(&format!(r#"<flags id="{id}""#))
            .unwrap_or_else(|| panic!("no {id}"));
        let body = &xml[start..start + xml[start..].find("</flags>").unwrap()];
        body.split("<field name=\"")
            .skip(1)
            .map(|f| f[..f.find('"').unwrap()].to_string())
            .collect()
    }

    #[test]
    fn flag_lists_follow_the_bitflags_types() {
        let words = |s: &str| -> Vec<String> { s.split(' ').map(String::from).collect() };
        for layout in LAYOUTS {
            let xml = target_xml(layout);
            // gdb's own i386 core description: bit 1 unnamed, IOPL left out.
            assert_eq!(
                flag_names(xml, "i386_eflags"),
                words("CF  PF AF ZF SF TF IF DF OF NT RF VM AC VIF VIP ID"),
            );
            // gdb's sse description; RC (two bits) left out.
            assert_eq!(
                flag_names(xml, "i386_mxcsr"),
                words("IE DE ZE OE UE PE DAZ IM DM ZM OM UM PM FZ"),
            );
            assert_eq!(
                flag_names(xml, "i386_cr0"),
                words("PE MP EM TS ET NE WP AM NW CD PG"),
            );
            let mut cr4 = words(
                "VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT UMIP LA57 VMXE SMXE \
                 FSGSBASE PCIDE OSXSAVE KL SMEP SMAP PKE CET PKS UINTR LASS LAM_SUP",
            );
            if layout.is_64() {
                cr4.push("FRED".into());
            }
            assert_eq!(flag_names(xml, "i386_cr4"), cr4, "{layout:?}");
            assert_eq!(
                flag_names(xml, "i386_efer"),
                words("SCE LME LMA NXE SVME LMSLE FFXSR TCE"),
            );
        }
        // Every field sits at its flag's bit.
        assert_eq!(flag_fields(32, RFlags::RESERVED_1)[1], ("", 1));
        assert_eq!(
            flag_fields(64, Cr4Flags::empty()).last(),
            Some(&("FRED", 32))
        );
    }

    #[test]
    fn xml_tags_balance() {
        for layout in LAYOUTS {
            let xml = target_xml(layout);
            assert!(!xml.contains("xi:include"));
            let mut stack = Vec::new();
            let mut rest = xml;
            while let Some(start) = rest.find('<') {
                let end = start + rest[start..].find('>').expect("unterminated tag");
                let tag = &rest[start + 1..end];
                rest = &rest[end + 1..];
                if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
                    continue;
                }
                let name = tag.split_whitespace().next().unwrap();
                if let Some(closing) = name.strip_prefix('/') {
                    assert_eq!(stack.pop(), Some(closing), "{layout:?}");
                } else {
                    stack.push(name);
                }
            }
            assert!(stack.is_empty(), "{layout:?}: unclosed {stack:?}");
        }
    }

    #[test]
    fn layout_from_mode() {
        assert_eq!(RegLayout::from_mode(CpuMode::Real), RegLayout::I8086);
        assert_eq!(RegLayout::from_mode(CpuMode::Protected32), RegLayout::I386);
        assert_eq!(RegLayout::from_mode(CpuMode::Long64), RegLayout::X86_64);
    }

    /// A row of gdb's `maint print remote-registers`: what gdb will put where in `g`/`p`.
    struct GdbReg {
        name: String,
        size: usize,
        remote_nr: usize,
        g_offset: usize,
    }

    /// Loads our description into gdb (no target needed) and returns its register map.
    fn gdb_registers(layout: RegLayout) -> (Vec<GdbReg>, String, String) {
        let path = std::env::temp_dir().join(format!(
            "gdbvisor-tdesc-{}-{:?}.xml",
            std::process::id(),
            layout
        ));
        std::fs::write(&path, target_xml(layout)).unwrap();
        let out = std::process::Command::new("gdb")
            .args(["-nx", "-batch", "-ex"])
            .arg(format!("set tdesc filename {}", path.display()))
            .args(["-ex", "maint print remote-registers"])
            .args(["-ex", "show architecture"])
            .args(["-ex", "show osabi"])
            .output()
            .expect("gdb (13) is required by the test suite");
        let _ = std::fs::remove_file(&path);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        // Columns: Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset. Pseudo registers (al, ax,
        // eax in 64-bit) have no remote columns, so only raw registers have eight.
        let rows = stdout
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                if c.len() != 8 {
                    return None;
                }
                Some(GdbReg {
                    name: c[0].to_string(),
                    size: c[4].parse().ok()?,
                    remote_nr: c[6].parse().ok()?,
                    g_offset: c[7].parse().ok()?,
                })
            })
            .collect();
        (rows, stdout, stderr)
    }

    #[test]
    fn real_gdb_accepts_each_description() {
        for layout in LAYOUTS {
            let (rows, stdout, stderr) = gdb_registers(layout);
            assert!(stderr.trim().is_empty(), "{layout:?}: gdb said: {stderr}");
            assert_eq!(
                rows.len(),
                layout.registers().len(),
                "{layout:?}:\n{stdout}"
            );
            let find = |name: &str| {
                rows.iter()
                    .find(|r| r.name == name)
                    .unwrap_or_else(|| panic!("{layout:?}: gdb lacks {name}:\n{stdout}"))
            };
            // gdb numbers and places every register exactly where we serialize it.
            let mut offset = 0;
            for (n, info) in layout.registers().iter().enumerate() {
                let r = find(info.name);
                assert_eq!(
                    (r.remote_nr, r.g_offset, r.size),
                    (n, offset, info.bytes()),
                    "{layout:?} {}",
                    info.name
                );
                offset += info.bytes();
            }
            let (pc, w) = if layout == RegLayout::X86_64 {
                ("rip", 8)
            } else {
                ("eip", 4)
            };
            assert_eq!(find(pc).size, w);
            assert_eq!(find("cr3").size, w);
            assert_eq!(find("efer").size, 8);
            assert_eq!(find("gdtr_base").size, w);
            assert_eq!(find("dr7").size, w);
            let arch = format!("(currently \"{}\")", layout.architecture());
            assert!(stdout.contains(&arch), "{layout:?}: {stdout}");
            assert!(
                stdout.contains("(currently \"none\")"),
                "{layout:?}: {stdout}"
            );
        }
    }
}
