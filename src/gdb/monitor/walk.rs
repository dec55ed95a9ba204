//! `walk ADDR|SEG:OFF [r|w|x] [user]`: the whole translation of one address, as the CPU would
//! do it for that access — segmentation (for SEG:OFF), every paging level, then the physical
//! address or the fault. The level lines and the failure text are the walker's own
//! (`Trace` Display, `WalkError::explain`).

use super::help::usage;
use super::host::Lines;
use super::view::{addr, parse_num, View};
use crate::x86::cpu::RFlags;
use crate::x86::paging::{check_access, walk as walk_tables};
use crate::x86::segment::{cache_from_tables, descriptor_for};
use crate::x86::{
    logical_to_linear, Access, ControlRegs, CpuMode, PagingMode, PhysMemory, SegAccess,
    SegmentCache, SegmentRegister, SegmentSelector, WalkError,
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

pub(crate) fn walk(v: &View, args: &[&str]) -> Lines {
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
    .with_eflags_ac(v.snap.regs.rflags & RFlags::AC.bits() != 0);
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
    paging(&*v.ram, &v.regs, linear, access, &mut lines);
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
fn paging<M: PhysMemory + ?Sized>(
    mem: &M,
    regs: &ControlRegs,
    linear: u64,
    access: Access,
    lines: &mut Vec<String>,
) {
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
    let outcome = walk_tables(mem, regs, linear).and_then(|w| {
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

#[cfg(test)]
mod tests {
    //! The paging step of `walk` on synthetic memory in 32-bit paging (4 KiB and 4 MiB pages)
    //! and PAE (2 MiB pages, NX): every level line, then the result or the #PF. Exact lines.
    use super::paging;
    use crate::gdb::monitor::pt::tests::{legacy, pae};
    use crate::x86::{Access, ControlRegs, VecMemory};

    fn walk(t: &(VecMemory, ControlRegs), linear: u64, access: Access) -> Vec<String> {
        let mut lines = Vec::new();
        paging(&t.0, &t.1, linear, access, &mut lines);
        lines
    }

    #[test]
    fn legacy_4k_4m_rights_and_faults() {
        let t = legacy();
        assert_eq!(
            walk(&t, 0x1234, Access::read(false)),
            [
                "paging: 32-bit paging, CR3=0x1000, supervisor read of linear 0x00001234",
                "  PDE   [  0] @0x00001000 = 0x00002027  P W U A                -> table 0x00002000",
                "  PTE   [  1] @0x00002004 = 0x00005063  P W S A D              -> page 0x00005000 (4 KiB)",
                "linear 0x1234 -> physical 0x5234 (4 KiB page 0x5000, -rwx)",
            ]
        );
        assert_eq!(
            walk(&t, 0x2000, Access::write(false)),
            [
                "paging: 32-bit paging, CR3=0x1000, supervisor write of linear 0x00002000",
                "  PDE   [  0] @0x00001000 = 0x00002027  P W U A                -> table 0x00002000",
                "  PTE   [  2] @0x00002008 = 0x00006061  P R S A D              -> page 0x00006000 (4 KiB)",
                "physical address not available for linear 0x2000: supervisor write of linear 0x2000 denied by rights -r-x",
                "#PF would be raised: error code 0x0003 (protection, write, supervisor)",
            ]
        );
        assert_eq!(
            walk(&t, 0x3000, Access::read(true)),
            [
                "paging: 32-bit paging, CR3=0x1000, user read of linear 0x00003000",
                "  PDE   [  0] @0x00001000 = 0x00002027  P W U A                -> table 0x00002000",
                "  PTE   [  3] @0x0000200c = 0x00007067  P W U A D              -> page 0x00007000 (4 KiB)",
                "linear 0x3000 -> physical 0x7000 (4 KiB page 0x7000, urwx)",
            ]
        );
        assert_eq!(
            walk(&t, 0x1000, Access::read(true)),
            [
                "paging: 32-bit paging, CR3=0x1000, user read of linear 0x00001000",
                "  PDE   [  0] @0x00001000 = 0x00002027  P W U A                -> table 0x00002000",
                "  PTE   [  1] @0x00002004 = 0x00005063  P W S A D              -> page 0x00005000 (4 KiB)",
                "physical address not available for linear 0x1000: user read of linear 0x1000 denied by rights -rwx",
                "#PF would be raised: error code 0x0005 (protection, read, user)",
            ]
        );
        assert_eq!(
            walk(&t, 0xc0123456, Access::fetch(false)),
            [
                "paging: 32-bit paging, CR3=0x1000, supervisor fetch of linear 0xc0123456",
                "  PDE   [768] @0x00001c00 = 0x004001e3  P W S A D PS G         -> page 0x00400000 (4 MiB)",
                "linear 0xc0123456 -> physical 0x523456 (4 MiB page 0x400000, -rwx)",
            ]
        );
        assert_eq!(
            walk(&t, 0x5000, Access::read(false)),
            [
                "paging: 32-bit paging, CR3=0x1000, supervisor read of linear 0x00005000",
                "  PDE   [  0] @0x00001000 = 0x00002027  P W U A                -> table 0x00002000",
                "  PTE   [  5] @0x00002014 = 0x00000000  --                     -> not present",
                "physical address not available for linear 0x5000: PTE for linear 0x5000 is not present",
                "#PF would be raised: error code 0x0000 (not-present, read, supervisor)",
            ]
        );
    }

    #[test]
    fn pae_2m_and_nx() {
        let t = pae();
        assert_eq!(
            walk(&t, 0x1000, Access::fetch(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor fetch of linear 0x00001000",
                "  PDPTE [  0] @0x00001000 = 0x0000000000002001  P R S                  -> table 0x00002000",
                "  PDE   [  0] @0x00002000 = 0x0000000000003027  P W U A                -> table 0x00003000",
                "  PTE   [  1] @0x00003008 = 0x0000000000005063  P W S A D              -> page 0x00005000 (4 KiB)",
                "linear 0x1000 -> physical 0x5000 (4 KiB page 0x5000, -rwx)",
            ]
        );
        assert_eq!(
            walk(&t, 0x2000, Access::fetch(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor fetch of linear 0x00002000",
                "  PDPTE [  0] @0x00001000 = 0x0000000000002001  P R S                  -> table 0x00002000",
                "  PDE   [  0] @0x00002000 = 0x0000000000003027  P W U A                -> table 0x00003000",
                "  PTE   [  2] @0x00003010 = 0x8000000000006063  P W S A D XD           -> page 0x00006000 (4 KiB)",
                "physical address not available for linear 0x2000: supervisor fetch of linear 0x2000 denied by rights -rw-",
                "#PF would be raised: error code 0x0011 (protection, fetch, supervisor)",
            ]
        );
        assert_eq!(
            walk(&t, 0x2000, Access::write(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor write of linear 0x00002000",
                "  PDPTE [  0] @0x00001000 = 0x0000000000002001  P R S                  -> table 0x00002000",
                "  PDE   [  0] @0x00002000 = 0x0000000000003027  P W U A                -> table 0x00003000",
                "  PTE   [  2] @0x00003010 = 0x8000000000006063  P W S A D XD           -> page 0x00006000 (4 KiB)",
                "linear 0x2000 -> physical 0x6000 (4 KiB page 0x6000, -rw-)",
            ]
        );
        assert_eq!(
            walk(&t, 0x234567, Access::fetch(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor fetch of linear 0x00234567",
                "  PDPTE [  0] @0x00001000 = 0x0000000000002001  P R S                  -> table 0x00002000",
                "  PDE   [  1] @0x00002008 = 0x00000000004000e3  P W S A D PS           -> page 0x00400000 (2 MiB)",
                "linear 0x234567 -> physical 0x434567 (2 MiB page 0x400000, -rwx)",
            ]
        );
        assert_eq!(
            walk(&t, 0x400000, Access::fetch(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor fetch of linear 0x00400000",
                "  PDPTE [  0] @0x00001000 = 0x0000000000002001  P R S                  -> table 0x00002000",
                "  PDE   [  2] @0x00002010 = 0x80000000006000e3  P W S A D PS XD        -> page 0x00600000 (2 MiB)",
                "physical address not available for linear 0x400000: supervisor fetch of linear 0x400000 denied by rights -rw-",
                "#PF would be raised: error code 0x0011 (protection, fetch, supervisor)",
            ]
        );
        assert_eq!(
            walk(&t, 0x4000_0000, Access::read(false)),
            [
                "paging: PAE paging, CR3=0x1000, supervisor read of linear 0x40000000",
                "  PDPTE [  1] @0x00001008 = 0x0000000000000000  --                     -> not present",
                "physical address not available for linear 0x40000000: PDPTE for linear 0x40000000 is not present",
                "#PF would be raised: error code 0x0000 (not-present, read, supervisor)",
            ]
        );
    }
}
