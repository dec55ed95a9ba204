//! Page-table views: `pt` (mapped ranges, or every leaf) and `p2v` (which linear addresses map
//! a physical one). Both are bounded: the enumeration by the walker's entry budget (hostile or
//! recursive tables), the output by a line cap (gdb shows monitor output through O packets).

use super::help::usage;
use super::host::Lines;
use super::view::{addr, parse_num, View};
use crate::x86::tables::{leaves, ranges, EnumOptions, Leaf, TableError};
use crate::x86::{ControlRegs, PageTableFlags, PagingMode, PhysMemory};

/// Lines of ranges or leaves printed at most; the rest is counted.
const MAX_LINES: usize = 1024;
/// Linear addresses `p2v` lists at most.
const MAX_ALIASES: usize = 256;

fn header(regs: &ControlRegs) -> Option<String> {
    let mode = regs.paging_mode();
    (mode != PagingMode::None).then(|| format!("cr3: {:#x} ({mode})", regs.cr3))
}

/// The leaf entry's flags beyond the rights: `G D A PCD PWT PAT`.
fn leaf_flags(leaf: &Leaf) -> String {
    let f = leaf.flags;
    let pat = if leaf.size.bytes() == 0x1000 {
        PageTableFlags::HUGE_PAGE
    } else {
        PageTableFlags::PAT_HUGE
    };
    [
        (PageTableFlags::GLOBAL, "G"),
        (PageTableFlags::DIRTY, "D"),
        (PageTableFlags::ACCESSED, "A"),
        (PageTableFlags::NO_CACHE, "PCD"),
        (PageTableFlags::WRITE_THROUGH, "PWT"),
        (pat, "PAT"),
    ]
    .into_iter()
    .filter_map(|(bit, name)| f.contains(bit).then_some(name))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Adds the lines of `items` to `lines`, at most MAX_LINES of them, then the problems'
/// notes; items after the cap are counted (the enumeration itself is bounded).
fn bounded<T>(
    lines: &mut Vec<String>,
    items: impl Iterator<Item = Result<T, TableError>>,
    show: impl Fn(&T) -> String,
    what: &str,
) {
    let (mut shown, mut more) = (0usize, 0usize);
    for item in items {
        match item {
            Ok(x) if shown < MAX_LINES => {
                lines.push(show(&x));
                shown += 1;
            }
            Ok(_) => more += 1,
            Err(e @ TableError::Truncated { .. }) => lines.push(format!("truncated: {e}")),
            Err(e) => lines.push(format!("problem: {e}")),
        }
    }
    if more > 0 {
        lines.push(format!(
            "... {more} more {what} not shown (at most {MAX_LINES}; narrow with START END)"
        ));
    }
    if shown == 0 && more == 0 {
        lines.push(format!("no {what} mapped in this range"));
    }
}

/// `pt [START [END]] [--leaves]`.
pub(crate) fn pt(v: &View, args: &[&str]) -> Lines {
    pt_in(&*v.ram, &v.regs, args)
}

/// `pt` on any physical memory (the guest's, or synthetic memory in tests).
fn pt_in<M: PhysMemory + ?Sized>(mem: &M, regs: &ControlRegs, args: &[&str]) -> Lines {
    let keep_leaves = args.contains(&"--leaves");
    let bounds: Vec<&str> = args.iter().copied().filter(|a| *a != "--leaves").collect();
    if args.iter().filter(|a| **a == "--leaves").count() > 1 {
        return Err(usage("pt"));
    }
    let num = |s: &str| parse_num(s).ok_or_else(|| usage("pt"));
    let (start, end) = match bounds.as_slice() {
        [] => (0, u64::MAX),
        [s] => (num(s)?, u64::MAX),
        [s, e] => (num(s)?, num(e)?),
        _ => return Err(usage("pt")),
    };
    if start > end {
        return Err(usage("pt"));
    }
    let Some(head) = header(regs) else {
        return Ok(vec!["paging off: linear = physical".into()]);
    };
    let mut lines = vec![head];
    let opts = EnumOptions {
        start,
        end,
        ..EnumOptions::default()
    };
    if keep_leaves {
        bounded(
            &mut lines,
            leaves(mem, regs, opts),
            |l| {
                format!(
                    "{:#018x} -> {:#018x} {:<5} {} {}",
                    l.linear,
                    l.phys,
                    l.size.to_string(),
                    l.rights,
                    leaf_flags(l)
                )
                .trim_end()
                .to_string()
            },
            "leaves",
        );
    } else {
        bounded(
            &mut lines,
            ranges(mem, regs, opts),
            |r| r.to_string(),
            "ranges",
        );
    }
    Ok(lines)
}

/// `p2v PHYS`: every linear address whose translation lands on PHYS.
pub(crate) fn p2v(v: &View, args: &[&str]) -> Lines {
    p2v_in(&*v.ram, &v.regs, args)
}

/// `p2v` on any physical memory.
fn p2v_in<M: PhysMemory + ?Sized>(mem: &M, regs: &ControlRegs, args: &[&str]) -> Lines {
    let [phys] = args else {
        return Err(usage("p2v"));
    };
    let phys = parse_num(phys).ok_or_else(|| usage("p2v"))?;
    let Some(head) = header(regs) else {
        return Ok(vec![format!(
            "paging off: physical {} is linear {}",
            addr(phys),
            addr(phys)
        )]);
    };
    let mut lines = vec![head];
    let (mut found, mut more) = (0usize, 0usize);
    for item in leaves(mem, regs, EnumOptions::default()) {
        match item {
            Ok(l) if l.phys <= phys && phys - l.phys < l.size.bytes() => {
                if found < MAX_ALIASES {
                    lines.push(format!(
                        "physical {} -> linear {:#018x} ({} page {:#018x}, {})",
                        addr(phys),
                        l.linear + (phys - l.phys),
                        l.size,
                        l.linear,
                        l.rights
                    ));
                    found += 1;
                } else {
                    more += 1;
                }
            }
            Ok(_) => {}
            Err(e @ TableError::Truncated { .. }) => lines.push(format!("truncated: {e}")),
            Err(e) => lines.push(format!("problem: {e}")),
        }
    }
    if more > 0 {
        lines.push(format!(
            "... {more} more mappings not shown (at most {MAX_ALIASES})"
        ));
    }
    if found == 0 {
        lines.push(format!("physical {} is not mapped", addr(phys)));
    }
    Ok(lines)
}

#[cfg(test)]
pub(crate) mod tests {
    //! `pt` and `p2v` on synthetic memory in the modes KVM cannot run here: 32-bit paging
    //! (4 KiB and 4 MiB pages) and PAE (2 MiB pages, NX). Exact lines.
    use super::{p2v_in, pt_in};
    use crate::x86::{ControlRegs, Cr0Flags, Cr4Flags, EferFlags, VecMemory};

    /// 32-bit paging: PD at 0x1000, PT at 0x2000 (PDE 0x27: P|W|U|A).
    /// 0x1000 -> 0x5000 rw, 0x2000 -> 0x6000 read-only, 0x3000 -> 0x7000 user,
    /// 0x4000 -> 0x5000 (alias), 4 MiB pages 0x400000 -> 0x800000 and 0xC0000000 -> 0x400000 (G).
    pub(crate) fn legacy() -> (VecMemory, ControlRegs) {
        let mut m = VecMemory::new(0x10_0000);
        m.write_u32(0x1000, 0x2027);
        m.write_u32(0x1004, 0x80_00e3);
        m.write_u32(0x1000 + 0x300 * 4, 0x40_01e3);
        m.write_u32(0x2004, 0x5063);
        m.write_u32(0x2008, 0x6061);
        m.write_u32(0x200c, 0x7067);
        m.write_u32(0x2010, 0x5063);
        let regs = ControlRegs {
            cr0: Cr0Flags::PE | Cr0Flags::PG | Cr0Flags::WP | Cr0Flags::ET,
            cr3: 0x1000,
            cr4: Cr4Flags::PSE,
            ..ControlRegs::default()
        };
        (m, regs)
    }

    /// PAE: PDPT at 0x1000 (PDPTE[0] -> PD 0x2000), PT at 0x3000.
    /// 0x1000 -> 0x5000 rw, 0x2000 -> 0x6000 rw NX, 2 MiB pages 0x200000 -> 0x400000 and
    /// 0x400000 -> 0x600000 NX.
    pub(crate) fn pae() -> (VecMemory, ControlRegs) {
        let nx = 1u64 << 63;
        let mut m = VecMemory::new(0x10_0000);
        m.write_u64(0x1000, 0x2001);
        m.write_u64(0x2000, 0x3027);
        m.write_u64(0x2008, 0x40_00e3);
        m.write_u64(0x2010, 0x60_00e3 | nx);
        m.write_u64(0x3008, 0x5063);
        m.write_u64(0x3010, 0x6063 | nx);
        let regs = ControlRegs {
            cr0: Cr0Flags::PE | Cr0Flags::PG | Cr0Flags::WP | Cr0Flags::ET,
            cr3: 0x1000,
            cr4: Cr4Flags::PAE,
            efer: EferFlags::NXE,
            ..ControlRegs::default()
        };
        (m, regs)
    }

    fn run(
        f: fn(&VecMemory, &ControlRegs, &[&str]) -> super::Lines,
        (m, regs): &(VecMemory, ControlRegs),
        args: &[&str],
    ) -> Vec<String> {
        f(m, regs, args).unwrap()
    }

    #[test]
    fn legacy_ranges_leaves_and_aliases() {
        let t = legacy();
        assert_eq!(
            run(pt_in, &t, &[]),
            [
                "cr3: 0x1000 (32-bit paging)",
                "0x0000000000001000-0x0000000000001fff -> 0x0000000000005000-0x0000000000005fff 0x0000000000001000 -rwx",
                "0x0000000000002000-0x0000000000002fff -> 0x0000000000006000-0x0000000000006fff 0x0000000000001000 -r-x",
                "0x0000000000003000-0x0000000000003fff -> 0x0000000000007000-0x0000000000007fff 0x0000000000001000 urwx",
                "0x0000000000004000-0x0000000000004fff -> 0x0000000000005000-0x0000000000005fff 0x0000000000001000 -rwx",
                "0x0000000000400000-0x00000000007fffff -> 0x0000000000800000-0x0000000000bfffff 0x0000000000400000 -rwx",
                "0x00000000c0000000-0x00000000c03fffff -> 0x0000000000400000-0x00000000007fffff 0x0000000000400000 -rwx G",
            ]
        );
        assert_eq!(
            run(pt_in, &t, &["--leaves"]),
            [
                "cr3: 0x1000 (32-bit paging)",
                "0x0000000000001000 -> 0x0000000000005000 4 KiB -rwx D A",
                "0x0000000000002000 -> 0x0000000000006000 4 KiB -r-x D A",
                "0x0000000000003000 -> 0x0000000000007000 4 KiB urwx D A",
                "0x0000000000004000 -> 0x0000000000005000 4 KiB -rwx D A",
                "0x0000000000400000 -> 0x0000000000800000 4 MiB -rwx D A",
                "0x00000000c0000000 -> 0x0000000000400000 4 MiB -rwx G D A",
            ]
        );
        assert_eq!(
            run(p2v_in, &t, &["0x5000"]),
            [
                "cr3: 0x1000 (32-bit paging)",
                "physical 0x00005000 -> linear 0x0000000000001000 (4 KiB page 0x0000000000001000, -rwx)",
                "physical 0x00005000 -> linear 0x0000000000004000 (4 KiB page 0x0000000000004000, -rwx)",
            ]
        );
        assert_eq!(
            run(p2v_in, &t, &["0x400010"]),
            [
                "cr3: 0x1000 (32-bit paging)",
                "physical 0x00400010 -> linear 0x00000000c0000010 (4 MiB page 0x00000000c0000000, -rwx)",
            ]
        );
    }

    /// 4-level paging with a 1 GiB page (this host's CPU has no pdpe1gb, so the `pagetables`
    /// kernel cannot show one): PML4 0x1000 -> PDPT 0x2000; PDPTE[1] maps 1 GiB at 0x40000000
    /// -> 0x80000000 (G, NX), PDPTE[0] -> PD 0x3000 with a 2 MiB page 0x200000 -> 0x200000.
    #[test]
    fn level4_one_gib_page_with_nx() {
        let nx = 1u64 << 63;
        let mut m = VecMemory::new(0x10_0000);
        m.write_u64(0x1000, 0x2003);
        m.write_u64(0x2000, 0x3003);
        m.write_u64(0x2008, 0x8000_0000 | 0x1e3 | nx);
        m.write_u64(0x3008, 0x20_00e3);
        let regs = ControlRegs {
            cr0: Cr0Flags::PE | Cr0Flags::PG | Cr0Flags::WP | Cr0Flags::ET,
            cr3: 0x1000,
            cr4: Cr4Flags::PAE,
            efer: EferFlags::LME | EferFlags::LMA | EferFlags::NXE,
            ..ControlRegs::default()
        };
        let t = (m, regs);
        assert_eq!(
            run(pt_in, &t, &[]),
            [
                "cr3: 0x1000 (4-level paging)",
                "0x0000000000200000-0x00000000003fffff -> 0x0000000000200000-0x00000000003fffff 0x0000000000200000 -rwx",
                "0x0000000040000000-0x000000007fffffff -> 0x0000000080000000-0x00000000bfffffff 0x0000000040000000 -rw- G",
            ]
        );
        assert_eq!(
            run(pt_in, &t, &["--leaves"])[2],
            "0x0000000040000000 -> 0x0000000080000000 1 GiB -rw- G D A"
        );
        assert_eq!(
            run(p2v_in, &t, &["0x80001234"])[1],
            "physical 0x80001234 -> linear 0x0000000040001234 (1 GiB page 0x0000000040000000, -rw-)"
        );
    }

    #[test]
    fn pae_ranges_and_leaves_with_nx() {
        let t = pae();
        assert_eq!(
            run(pt_in, &t, &[]),
            [
                "cr3: 0x1000 (PAE paging)",
                "0x0000000000001000-0x0000000000001fff -> 0x0000000000005000-0x0000000000005fff 0x0000000000001000 -rwx",
                "0x0000000000002000-0x0000000000002fff -> 0x0000000000006000-0x0000000000006fff 0x0000000000001000 -rw-",
                "0x0000000000200000-0x00000000003fffff -> 0x0000000000400000-0x00000000005fffff 0x0000000000200000 -rwx",
                "0x0000000000400000-0x00000000005fffff -> 0x0000000000600000-0x00000000007fffff 0x0000000000200000 -rw-",
            ]
        );
        assert_eq!(
            run(pt_in, &t, &["0", "0x3fffff", "--leaves"]),
            [
                "cr3: 0x1000 (PAE paging)",
                "0x0000000000001000 -> 0x0000000000005000 4 KiB -rwx D A",
                "0x0000000000002000 -> 0x0000000000006000 4 KiB -rw- D A",
                "0x0000000000200000 -> 0x0000000000400000 2 MiB -rwx D A",
            ]
        );
        assert_eq!(
            run(p2v_in, &t, &["0x600123"]),
            [
                "cr3: 0x1000 (PAE paging)",
                "physical 0x00600123 -> linear 0x0000000000400123 (2 MiB page 0x0000000000400000, -rw-)",
            ]
        );
    }
}
