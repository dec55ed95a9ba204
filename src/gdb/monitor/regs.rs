//! Register views: `mode`, `cregs`, `sregs`, `dregs` (Bochs `creg`/`sreg`/`dreg`).

use super::view::{addr, View};
use crate::x86::segment::descriptor_for;
use crate::x86::{
    CpuMode, Cr0Flags, Cr4Flags, Descriptor, EferFlags, PagingMode, SegmentCache, SegmentRegister,
    SegmentSelector,
};

/// `long mode 64-bit, paging 4-level, CPL 0, A20 on (assumed)`.
pub(crate) fn mode(v: &View) -> String {
    let cs = v.seg(SegmentRegister::Cs);
    let bits = |db: bool| if db { "32-bit" } else { "16-bit" };
    let cpu = match v.mode {
        CpuMode::Real => "real mode".to_string(),
        CpuMode::Protected16 | CpuMode::Protected32 => format!("protected mode {}", bits(cs.db)),
        CpuMode::Virtual8086 => "virtual-8086 mode".to_string(),
        CpuMode::Compatibility => format!("compatibility mode {}", bits(cs.db)),
        CpuMode::Long64 => "long mode 64-bit".to_string(),
    };
    let paging = match v.regs.paging_mode() {
        PagingMode::None => "paging off",
        PagingMode::Bits32 => "paging 32-bit",
        PagingMode::Pae => "paging PAE",
        PagingMode::Level4 => "paging 4-level",
        PagingMode::Level5 => "paging 5-level",
    };
    // CPL is SS.DPL (what VMX and SVM report); real mode is ring 0, virtual-8086 mode ring 3.
    let cpl = match v.mode {
        CpuMode::Real => 0,
        CpuMode::Virtual8086 => 3,
        _ => v.snap.sregs.ss.dpl,
    };
    // gdbvisor emulates no A20 gate (no port 0x92, no keyboard controller): it is always on.
    format!("{cpu}, {paging}, CPL {cpl}, A20 on (assumed)")
}

/// Bochs `creg`: flags uppercase when set.
pub(crate) fn cregs(v: &View) -> Vec<String> {
    let s = &v.snap.sregs;
    vec![
        format!(
            "CR0={:#010x}: {}",
            s.cr0,
            Cr0Flags::from_bits_retain(s.cr0).bochs()
        ),
        format!("CR2=page fault laddr={:#018x}", s.cr2),
        format!(
            "CR3={:#018x}: PCD={} PWT={}",
            s.cr3,
            (s.cr3 >> 4) & 1,
            (s.cr3 >> 3) & 1
        ),
        format!(
            "CR4={:#010x}: {}",
            s.cr4,
            Cr4Flags::from_bits_retain(s.cr4).bochs()
        ),
        format!(
            "EFER={:#010x}: {}",
            s.efer,
            EferFlags::from_bits_retain(s.efer).bochs()
        ),
        maxphyaddr_line(v.regs.maxphyaddr),
    ]
}

/// Not a register, but it decides which entry bits the walk faults on (CPUID 0x80000008).
fn maxphyaddr_line(bits: u8) -> String {
    if bits >= 52 {
        return format!(
            "MAXPHYADDR={bits}: physical addresses have {bits} bits; no address bit of a page-table entry is reserved"
        );
    }
    format!("MAXPHYADDR={bits}: physical addresses have {bits} bits; page-table entry bits 51:{bits} are reserved")
}

/// Where a selector's descriptor lives, as the table views name it: `GDT[0x0010]`, `LDT[1]`.
fn entry_name(selector: SegmentSelector) -> String {
    if selector.is_ldt() {
        format!("LDT[{}]", selector.index())
    } else {
        format!("GDT[{:#06x}]", selector.0 & !7)
    }
}

/// What the table says now for the selector of `cache`, and the fields where the cache differs
/// (a segment not reloaded after its descriptor or the GDT changed).
fn beside(v: &View, cache: &SegmentCache, system: bool) -> String {
    if matches!(v.mode, CpuMode::Real | CpuMode::Virtual8086) {
        return "real-mode segment (no descriptor)".into();
    }
    if cache.selector.is_null() && !cache.selector.is_ldt() {
        return "null selector".into();
    }
    let found = descriptor_for(
        &v.linear(),
        v.gdtr(),
        &v.ldtr(),
        cache.selector,
        v.long_mode(),
    );
    let d = match found {
        Ok(d) => d,
        Err(e) => return format!("{}: {e}", entry_name(cache.selector)),
    };
    let mismatches = match d {
        Descriptor::Segment(d) if !system && !cache.unusable => {
            cache.mismatches(&SegmentCache::from_descriptor(cache.selector, d))
        }
        // LDTR and TR: the type differs by the busy bit only, so base and limit are what
        // tell a stale cache.
        Descriptor::System(s) if system => [
            (s.base != cache.base, "base"),
            (s.limit != cache.limit, "limit"),
        ]
        .into_iter()
        .filter_map(|(differs, name)| differs.then_some(name))
        .collect(),
        _ if cache.unusable => Vec::new(),
        _ => vec!["type"],
    };
    let mut text = format!("{}={d}", entry_name(cache.selector));
    if !mismatches.is_empty() {
        text.push_str(&format!(" | MISMATCH: {}", mismatches.join(",")));
    }
    text
}

/// Bochs `sreg`: `CS=0008 0000000000000000 ffffffff 00af9b00 DPL=0 [-RA] | GDT[0x0008]=…`.
pub(crate) fn sregs(v: &View) -> Vec<String> {
    let mut lines: Vec<String> = [
        SegmentRegister::Es,
        SegmentRegister::Cs,
        SegmentRegister::Ss,
        SegmentRegister::Ds,
        SegmentRegister::Fs,
        SegmentRegister::Gs,
    ]
    .into_iter()
    .map(|reg| {
        let cache = v.seg(reg);
        format!("{reg}={cache} | {}", beside(v, &cache, false))
    })
    .collect();
    let (gdtr, idtr) = (v.gdtr(), v.idtr());
    lines.push(format!(
        "GDTR: base={} limit={:#06x}",
        addr(gdtr.base),
        gdtr.limit
    ));
    lines.push(format!(
        "IDTR: base={} limit={:#06x}",
        addr(idtr.base),
        idtr.limit
    ));
    for (name, cache) in [("LDTR", v.ldtr()), ("TR", v.tr())] {
        lines.push(format!("{name}={cache} | {}", beside(v, &cache, true)));
    }
    lines
}

/// DR7's R/W field: what the slot matches.
fn dr7_rw(bits: u64) -> &'static str {
    match bits & 3 {
        0 => "execute",
        1 => "write",
        2 => "io",
        _ => "read/write",
    }
}

/// DR7's LEN field in bytes (the encoding is not monotonic: 0b10 is 8 bytes).
fn dr7_len(bits: u64) -> u8 {
    match bits & 3 {
        0 => 1,
        1 => 2,
        2 => 8,
        _ => 4,
    }
}

/// Bochs `dreg`: DR0-DR3, DR6 status bits, DR7 global bits then one line per slot.
pub(crate) fn dregs(v: &View) -> Vec<String> {
    let d = &v.snap.debugregs;
    let mut lines: Vec<String> =
        d.db.iter()
            .enumerate()
            .map(|(i, a)| format!("DR{i}={a:#018x}"))
            .collect();
    let dr6 = d.dr6;
    let bit = |value: u64, n: u32| (value >> n) & 1;
    lines.push(format!(
        "DR6={dr6:#010x}: BT={} BS={} BD={} B3={} B2={} B1={} B0={}",
        bit(dr6, 15),
        bit(dr6, 14),
        bit(dr6, 13),
        bit(dr6, 3),
        bit(dr6, 2),
        bit(dr6, 1),
        bit(dr6, 0)
    ));
    let dr7 = d.dr7;
    lines.push(format!(
        "DR7={dr7:#010x}: GD={} GE={} LE={}",
        bit(dr7, 13),
        bit(dr7, 9),
        bit(dr7, 8)
    ));
    for slot in 0..4u32 {
        let control = dr7 >> (16 + slot * 4);
        lines.push(format!(
            "DR7 slot {slot}: L{slot}={} G{slot}={} RW={} LEN={} addr={:#018x}",
            bit(dr7, slot * 2),
            bit(dr7, slot * 2 + 1),
            dr7_rw(control),
            dr7_len(control >> 2),
            d.db[slot as usize]
        ));
    }
    lines
}
