//! Descriptor tables: `gdt`, `ldt`, `idt`, `tss`, one line per entry (Bochs `info gdt` style,
//! from the decoders in `x86::tables`).

use super::help::usage;
use super::host::{Lines, MonitorError};
use super::view::{addr, parse_num, View};
use crate::boot::ivt;
use crate::x86::segment::SystemType;
use crate::x86::tables::{self, TableEntry, TableError, Tss32, Tss64};
use crate::x86::{CpuMode, SegmentCache};

/// Entry lines of a table iterator, keeping those `keep` accepts; a read error becomes an
/// `error:` line and iteration goes on (the decoders bound the number of entries).
fn entries(
    it: impl Iterator<Item = Result<TableEntry, TableError>>,
    keep: impl Fn(&TableEntry) -> bool,
) -> Vec<String> {
    it.filter_map(|item| match item {
        Ok(e) => keep(&e).then(|| e.to_string()),
        Err(e) => Some(format!("error: {e}")),
    })
    .collect()
}

/// `gdt [FIRST [LAST]]`: entries whose selector is in FIRST..=LAST (one selector: its entry).
pub(crate) fn gdt(v: &View, args: &[&str]) -> Lines {
    let selector = |s: &str| {
        parse_num(s)
            .filter(|&n| n <= 0xffff)
            .ok_or_else(|| usage("gdt"))
    };
    let (first, last) = match args {
        [] => (0, 0xffff),
        [one] => {
            let s = selector(one)?;
            (s & !7, s | 7)
        }
        [a, b] => {
            let (a, b) = (selector(a)?, selector(b)?);
            if a > b {
                return Err(usage("gdt"));
            }
            (a & !7, b)
        }
        _ => return Err(usage("gdt")),
    };
    let gdtr = v.gdtr();
    let mut lines = vec![format!(
        "Global Descriptor Table (base={}, limit={:#06x}):",
        addr(gdtr.base),
        gdtr.limit
    )];
    let mem = v.linear();
    let found = entries(tables::gdt(&mem, gdtr, v.long_mode()), |e| {
        (first..=last).contains(&(e.index as u64 * 8))
    });
    if found.is_empty() {
        lines.push(format!(
            "no GDT entries between selectors {first:#06x} and {last:#06x}"
        ));
    }
    lines.extend(found);
    Ok(lines)
}

/// Whether a hidden cache holds nothing usable (null selector, or never loaded).
fn unloaded(cache: &SegmentCache) -> bool {
    cache.unusable || !cache.present || (cache.selector.is_null() && !cache.selector.is_ldt())
}

pub(crate) fn ldt(v: &View) -> Lines {
    let ldtr = v.ldtr();
    if unloaded(&ldtr) {
        return Ok(vec![format!(
            "no LDT: LDTR={:#06x} is null or unusable",
            ldtr.selector.0
        )]);
    }
    let mut lines = vec![format!(
        "Local Descriptor Table (LDTR={:#06x}, base={}, limit={:#06x}):",
        ldtr.selector.0,
        addr(ldtr.base),
        ldtr.limit
    )];
    let mem = v.linear();
    lines.extend(entries(
        tables::ldt(&mem, ldtr.base, ldtr.limit, v.long_mode()),
        |_| true,
    ));
    Ok(lines)
}

/// `idt [VECTOR]`: gates, or the real-mode interrupt vector table.
pub(crate) fn idt(v: &View, args: &[&str]) -> Lines {
    let vector = match args {
        [] => None,
        [n] => Some(
            parse_num(n)
                .filter(|&n| n <= 0xff)
                .ok_or_else(|| usage("idt"))? as usize,
        ),
        _ => return Err(usage("idt")),
    };
    let idtr = v.idtr();
    let mem = v.linear();
    let real = matches!(v.mode, CpuMode::Real);
    let entry_size: u64 = match (real, v.long_mode()) {
        (true, _) => 4,
        (false, true) => 16,
        (false, false) => 8,
    };
    if let Some(n) = vector {
        if (n as u64 + 1) * entry_size - 1 > u64::from(idtr.limit) {
            return Err(MonitorError::Failed(format!(
                "vector {n:#04x} is beyond the IDT limit {:#06x}",
                idtr.limit
            )));
        }
    }
    let wanted = |i: usize| vector.is_none_or(|n| n == i);
    let mut lines = Vec::new();
    if real {
        lines.push(format!(
            "Interrupt Vector Table (base={}, limit={:#06x}):",
            addr(idtr.base),
            idtr.limit
        ));
        for item in tables::ivt(&mem, idtr) {
            match item {
                Ok((i, seg, off)) if wanted(usize::from(i)) => {
                    let linear = (u64::from(seg) << 4) + u64::from(off);
                    let stub = if ivt::stub_vector(linear) == Some(i) {
                        " (empty: gdbvisor's no-BIOS stub)"
                    } else {
                        ""
                    };
                    lines.push(format!("IVT[{i:#04x}]={seg:#06x}:{off:#06x}{stub}"))
                }
                Ok(_) => {}
                Err(e) => lines.push(format!("error: {e}")),
            }
        }
    } else {
        lines.push(format!(
            "Interrupt Descriptor Table (base={}, limit={:#06x}):",
            addr(idtr.base),
            idtr.limit
        ));
        lines.extend(entries(tables::idt(&mem, idtr, v.long_mode()), |e| {
            wanted(e.index)
        }));
    }
    if lines.len() == 1 {
        lines.push("no entries: the table is empty (limit below one entry)".into());
    }
    Ok(lines)
}

/// The TSS that TR holds: its descriptor cache, then the fields of its format.
pub(crate) fn tss(v: &View) -> Lines {
    let tr = v.tr();
    if unloaded(&tr) {
        return Ok(vec![format!(
            "no TSS: TR={:#06x} is null or unusable",
            tr.selector.0
        )]);
    }
    let kind = SystemType::decode(tr.type_, v.long_mode());
    let mut lines = vec![format!(
        "TR={:#06x}: {} at {}, length {:#07x}",
        tr.selector.0,
        kind.name(),
        addr(tr.base),
        tr.limit
    )];
    let mem = v.linear();
    let body = match kind {
        SystemType::Tss64 { .. } => Tss64::read(&mem, tr.base).map(|t| t.to_string()),
        SystemType::Tss32 { .. } => Tss32::read(&mem, tr.base).map(|t| t.to_string()),
        other => {
            lines.push(format!(
                "TR's type {:#x} ({}) is not a 32- or 64-bit TSS: fields not decoded",
                tr.type_,
                other.name()
            ));
            return Ok(lines);
        }
    };
    match body {
        Ok(text) => lines.extend(text.lines().map(str::to_string)),
        Err(e) => lines.push(format!("error: {e}")),
    }
    Ok(lines)
}
