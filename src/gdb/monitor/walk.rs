//! `walk ADDR|SEG:OFF [r|w|x] [user]`: the whole translation of one address, as the CPU would
//! do it for that access — segmentation (for SEG:OFF), every paging level, then the physical
//! address or the fault. The level lines and the failure text are the walker's own
//! (`Trace` Display, `WalkError::explain`).

use super::help::usage;
use super::view::{addr, parse_num, View};
use super::Lines;
use crate::x86::cpu::RFLAGS_AC;
use crate::x86::paging::{check_access, walk as walk_tables};
use crate::x86::segment::{cache_from_tables, descriptor_for};
use crate::x86::{
    logical_to_linear, Access, CpuMode, PagingMode, SegAccess, SegmentCache, SegmentRegister,
    SegmentSelector, WalkError,
};

/// The segment part of `SEG:OFF`: a register by name, or a selector number.
enum Segment {
    Register(SegmentRegister),
    Selector(u16),
}

fn parse_segment(text: &str) -> Option<Segment> {
    let reg = match text.to_ascii_lowercase().as_str() {
        "es" => SegmentRegister::Es,
        "cs" => SegmentRegister::Cs,
        "ss" => SegmentRegister::Ss,
        "ds" => SegmentRegister::Ds,
        "fs" => SegmentRegister::Fs,
        "gs" => SegmentRegister::Gs,
        _ => {
            return parse_num(text)
                .filter(|&n| n <= 0xffff)
                .map(|n| Segment::Selector(n as u16))
        }
    };
    Some(Segment::Register(reg))
}

pub fn walk(v: &View, args: &[&str]) -> Lines {
    let (target, rest) = args.split_first().ok_or_else(|| usage("walk"))?;
    let mut kind = 'r';
    let mut user = false;
    for word in rest {
        match *word {
            "r" | "w" | "x" if kind == 'r' => kind = word.chars().next().unwrap_or('r'),
            "user" if !user => user = true,
            _ => return Err(usage("walk")),
        }
    }
    let access = match kind {
        'w' => Access::write(user),
        'x' => Access::fetch(user),
        _ => Access::read(user),
    }
    // EFLAGS.AC lifts SMAP for supervisor data accesses: use the guest's current value.
    .with_eflags_ac(v.snap.regs.rflags & RFLAGS_AC != 0);
    let seg_access = match kind {
        'w' => SegAccess::Write,
        'x' => SegAccess::Execute,
        _ => SegAccess::Read,
    };

    let mut lines = Vec::new();
    let linear = match target.split_once(':') {
        None => parse_num(target).ok_or_else(|| usage("walk"))?,
        Some((seg, off)) => {
            let seg = parse_segment(seg).ok_or_else(|| usage("walk"))?;
            let off = parse_num(off).ok_or_else(|| usage("walk"))?;
            match segmentation(v, seg, off, seg_access, &mut lines) {
                Some(linear) => linear,
                None => return Ok(lines),
            }
        }
    };
    paging(v, linear, access, &mut lines);
    Ok(lines)
}

/// The segmentation step; `None` (with the reason in `lines`) when it faults.
fn segmentation(
    v: &View,
    seg: Segment,
    offset: u64,
    access: SegAccess,
    lines: &mut Vec<String>,
) -> Option<u64> {
    let real = matches!(v.mode, CpuMode::Real | CpuMode::Virtual8086);
    let (reg, cache) = match seg {
        Segment::Register(reg) => {
            let cache = v.seg(reg);
            lines.push(format!("segment: {reg}={cache} (hidden cache)"));
            (reg, cache)
        }
        // A bare selector: what loading it into DS would give (in 64-bit mode DS's base is
        // ignored, as for any selector but FS/GS).
        Segment::Selector(sel) if real => {
            let cache = SegmentCache::real_mode(sel, false);
            lines.push(format!(
                "segment: selector {sel:#06x} in {}: base = selector * 16 = {}",
                v.mode,
                addr(cache.base)
            ));
            (SegmentRegister::Ds, cache)
        }
        Segment::Selector(sel) => {
            let selector = SegmentSelector(sel);
            let mem = v.linear();
            let (gdtr, ldtr, long) = (v.gdtr(), v.ldtr(), v.long_mode());
            match descriptor_for(&mem, gdtr, &ldtr, selector, long) {
                Ok(d) => lines.push(format!("segment: selector {selector} -> {d}")),
                Err(e) => {
                    lines.push(format!("segmentation fails: {e}"));
                    return None;
                }
            }
            match cache_from_tables(&mem, gdtr, &ldtr, selector, long) {
                Ok(Some(cache)) => (SegmentRegister::Ds, cache),
                _ => {
                    lines.push(format!(
                        "segmentation fails: selector {sel:#06x} is not a code or data segment: #GP"
                    ));
                    return None;
                }
            }
        }
    };
    match logical_to_linear(v.mode, &v.regs, reg, &cache, offset, 1, access) {
        Ok(linear) => {
            let check = if v.mode == CpuMode::Long64 {
                "64-bit mode: no limit check".to_string()
            } else if cache.is_expand_down() && !real {
                format!(
                    "offset {offset:#x} above expand-down limit {:#x}: ok",
                    cache.limit
                )
            } else {
                format!("offset {offset:#x} within limit {:#x}: ok", cache.limit)
            };
            lines.push(format!("segment: {check} -> linear {}", addr(linear)));
            Some(linear)
        }
        Err(e) => {
            lines.push(format!("segmentation fails: {e}"));
            None
        }
    }
}

/// The paging step: every level, then the result or the fault (the walker's own text).
fn paging(v: &View, linear: u64, access: Access, lines: &mut Vec<String>) {
    let regs = &v.regs;
    let mode = regs.paging_mode();
    if mode == PagingMode::None {
        lines.push(format!("paging off: linear {} = physical", addr(linear)));
    } else {
        lines.push(format!(
            "paging: {mode}, CR3={:#x}, {access} of linear {}",
            regs.cr3,
            addr(linear)
        ));
    }
    let outcome = walk_tables(&*v.ram, regs, linear).and_then(|w| {
        match check_access(w.translation.rights, access, regs) {
            Ok(()) => Ok(w),
            Err(code) => Err(WalkError::Protection {
                linear,
                access,
                rights: w.translation.rights,
                code,
                trace: Box::new(w.trace),
            }),
        }
    });
    let text = match outcome {
        Ok(w) => w.to_string(),
        Err(e) => e.explain(access, regs),
    };
    lines.extend(text.lines().map(str::to_string));
}
