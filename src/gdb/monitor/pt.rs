//! Page-table views: `pt` (mapped ranges, or every leaf) and `p2v` (which linear addresses map
//! a physical one). Both are bounded: the enumeration by the walker's entry budget (hostile or
//! recursive tables), the output by a line cap (gdb shows monitor output through O packets).

use super::help::usage;
use super::view::{addr, parse_num, View};
use super::Lines;
use crate::x86::tables::{leaves, ranges, EnumOptions, Leaf, TableError};
use crate::x86::{PageTableFlags, PagingMode};

/// Lines of ranges or leaves printed at most; the rest is counted.
const MAX_LINES: usize = 1024;
/// Linear addresses `p2v` lists at most.
const MAX_ALIASES: usize = 256;

fn header(v: &View) -> Option<String> {
    let mode = v.regs.paging_mode();
    (mode != PagingMode::None).then(|| format!("cr3: {:#x} ({mode})", v.regs.cr3))
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
pub fn pt(v: &View, args: &[&str]) -> Lines {
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
    let Some(head) = header(v) else {
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
            leaves(&*v.ram, &v.regs, opts),
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
            ranges(&*v.ram, &v.regs, opts),
            |r| r.to_string(),
            "ranges",
        );
    }
    Ok(lines)
}

/// `p2v PHYS`: every linear address whose translation lands on PHYS.
pub fn p2v(v: &View, args: &[&str]) -> Lines {
    let [phys] = args else {
        return Err(usage("p2v"));
    };
    let phys = parse_num(phys).ok_or_else(|| usage("p2v"))?;
    let Some(head) = header(v) else {
        return Ok(vec![format!(
            "paging off: physical {} is linear {}",
            addr(phys),
            addr(phys)
        )]);
    };
    let mut lines = vec![head];
    let (mut found, mut more) = (0usize, 0usize);
    for item in leaves(&*v.ram, &v.regs, EnumOptions::default()) {
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
