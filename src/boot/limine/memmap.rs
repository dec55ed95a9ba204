//! The memory map a Limine kernel gets, and which of it the higher-half direct map (and, at
//! base revision 0, the identity map) covers at each base revision.

use super::area::PAGE;
use super::protocol::MemmapType;

const GIB4: u64 = 1 << 32;

/// One memory-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) base: u64,
    pub(crate) len: u64,
    pub(crate) kind: MemmapType,
}

impl Entry {
    fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// What gdbvisor placed in guest RAM, besides RAM itself.
pub(crate) struct Placed {
    /// Kernel image, modules and the kernel file's copy: one page-aligned stretch.
    pub(crate) executable_and_modules: (u64, u64),
    /// The bootloader-reclaimable area.
    pub(crate) boot_area: (u64, u64),
    /// A linear framebuffer, if the machine has one.
    pub(crate) framebuffer: Option<(u64, u64)>,
}

/// The BIOS-era pieces of low memory that are not usable: the real-mode IVT page (gdbvisor's
/// no-BIOS vectors), the EBDA's page, and the BIOS area with the ACPI tables and the no-BIOS
/// stubs. At base revision 4 and later the BIOS area is "reserved, mapped" (it holds the ACPI
/// tables, which the HHDM must then cover).
fn fixed(revision: u64) -> [Entry; 3] {
    let bios_area = if revision >= 4 {
        MemmapType::ReservedMapped
    } else {
        MemmapType::Reserved
    };
    [
        Entry {
            base: 0,
            len: PAGE,
            kind: MemmapType::Reserved,
        },
        Entry {
            base: 0x9_F000,
            len: 0x1000,
            kind: MemmapType::Reserved,
        },
        Entry {
            base: 0xF_0000,
            len: 0x1_0000,
            kind: MemmapType::ReservedMapped,
        }
        .with_kind(bios_area),
    ]
}

impl Entry {
    fn with_kind(self, kind: MemmapType) -> Self {
        Entry { kind, ..self }
    }
}

/// The memory map: RAM (`ram`: start, length) is usable where nothing else is; sorted by base.
/// RAM between 640 KiB and 1 MiB outside the BIOS area (VGA, option ROMs on a PC) is left out.
pub(crate) fn build(ram: &[(u64, u64)], placed: &Placed, revision: u64) -> Vec<Entry> {
    let mut taken: Vec<Entry> = fixed(revision).to_vec();
    taken.push(Entry {
        base: 0xA_0000,
        len: 0x5_0000,
        kind: MemmapType::Reserved,
    });
    let (base, len) = placed.executable_and_modules;
    taken.push(Entry {
        base,
        len,
        kind: MemmapType::ExecutableAndModules,
    });
    let (base, len) = placed.boot_area;
    taken.push(Entry {
        base,
        len,
        kind: MemmapType::BootloaderReclaimable,
    });
    // The framebuffer's memory is a RAM range of its own: listed as the framebuffer.
    if let Some((base, len)) = placed.framebuffer {
        taken.push(Entry {
            base,
            len,
            kind: MemmapType::Framebuffer,
        });
    }
    let mut map: Vec<Entry> = Vec::new();
    for &(start, size) in ram {
        let mut cursor = start.next_multiple_of(PAGE);
        let end = (start + size) & !(PAGE - 1);
        let mut cuts: Vec<&Entry> = taken
            .iter()
            .filter(|t| t.base < end && t.end() > cursor)
            .collect();
        cuts.sort_by_key(|t| t.base);
        for cut in cuts {
            let cut_start = cut.base & !(PAGE - 1);
            if cut_start > cursor {
                map.push(Entry {
                    base: cursor,
                    len: cut_start - cursor,
                    kind: MemmapType::Usable,
                });
            }
            cursor = cursor.max(cut.end().next_multiple_of(PAGE));
        }
        if end > cursor {
            map.push(Entry {
                base: cursor,
                len: end - cursor,
                kind: MemmapType::Usable,
            });
        }
    }
    // Only the reserved pieces that RAM backs are listed (the VGA hole is not).
    map.extend(
        taken
            .iter()
            .filter(|t| t.base != 0xA_0000)
            .filter(|t| ram.iter().any(|&(s, l)| t.base >= s && t.end() <= s + l)),
    );
    map.sort_by_key(|e| e.base);
    map
}

/// Sorted, merged (start, end) ranges, page-rounded outwards.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    for r in &mut ranges {
        *r = (r.0 & !(PAGE - 1), r.1.next_multiple_of(PAGE));
    }
    ranges.retain(|r| r.1 > r.0);
    ranges.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The physical ranges the HHDM maps at `revision`.
pub(crate) fn hhdm_ranges(map: &[Entry], revision: u64) -> Vec<(u64, u64)> {
    let top = map.iter().map(Entry::end).max().unwrap_or(0);
    let ranges = match revision {
        0 => vec![(0, top.max(GIB4))],
        1 | 2 => std::iter::once((0, GIB4))
            .chain(
                map.iter()
                    .filter(|e| !matches!(e.kind, MemmapType::Reserved | MemmapType::BadMemory))
                    .filter(|e| e.end() > GIB4)
                    .map(|e| (e.base.max(GIB4), e.end())),
            )
            .collect(),
        _ => map
            .iter()
            .filter(|e| match e.kind {
                MemmapType::Usable
                | MemmapType::BootloaderReclaimable
                | MemmapType::ExecutableAndModules
                | MemmapType::Framebuffer => true,
                MemmapType::ReservedMapped | MemmapType::AcpiReclaimable | MemmapType::AcpiNvs => {
                    revision >= 4
                }
                MemmapType::Reserved | MemmapType::BadMemory => false,
            })
            .map(|e| (e.base, e.end()))
            .collect(),
    };
    merged(ranges)
}

/// The identity-mapped ranges: base revision 0 only, from 0x1000 over what the HHDM covers.
pub(crate) fn identity_ranges(map: &[Entry], revision: u64) -> Vec<(u64, u64)> {
    if revision != 0 {
        return Vec::new();
    }
    let top = map.iter().map(Entry::end).max().unwrap_or(0);
    vec![(PAGE, top.max(GIB4))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> Placed {
        Placed {
            executable_and_modules: (0x10_0000, 0x5000),
            boot_area: (0x10_5000, 0x3000),
            framebuffer: None,
        }
    }

    #[test]
    fn usable_memory_is_what_nothing_else_takes() {
        let map = build(&[(0, 8 << 20)], &placed(), 3);
        let usable: Vec<_> = map
            .iter()
            .filter(|e| e.kind == MemmapType::Usable)
            .map(|e| (e.base, e.len))
            .collect();
        assert_eq!(
            usable,
            [(0x1000, 0x9_E000), (0x10_8000, (8 << 20) - 0x10_8000)]
        );
        assert!(
            map.windows(2).all(|w| w[0].base + w[0].len <= w[1].base),
            "{map:?}"
        );
        assert!(map
            .iter()
            .any(|e| e.kind == MemmapType::ExecutableAndModules));
        assert!(!map.iter().any(|e| e.base == 0xA_0000));
    }

    #[test]
    fn hhdm_coverage_follows_the_base_revision() {
        let map = build(&[(0, 8 << 20)], &placed(), 3);
        assert_eq!(hhdm_ranges(&map, 0), [(0, 1 << 32)]);
        assert_eq!(hhdm_ranges(&map, 2), [(0, 1 << 32)]);
        // Revision 3: no page 0, no BIOS area.
        let r3 = hhdm_ranges(&map, 3);
        assert_eq!(r3[0], (0x1000, 0x9_F000));
        assert!(!r3.iter().any(|r| r.0 <= 0xF_0000 && 0xF_0000 < r.1));
        let map4 = build(&[(0, 8 << 20)], &placed(), 4);
        assert!(hhdm_ranges(&map4, 4)
            .iter()
            .any(|r| r.0 <= 0xF_0000 && 0xF_0000 < r.1));
        assert_eq!(identity_ranges(&map, 0), [(0x1000, 1 << 32)]);
        assert!(identity_ranges(&map, 1).is_empty());
    }

    #[test]
    fn a_framebuffer_range_is_listed_as_the_framebuffer_and_mapped() {
        let fb = (0xFD00_0000, 3 << 20);
        let placed = Placed {
            framebuffer: Some(fb),
            ..placed()
        };
        let map = build(&[(0, 8 << 20), fb], &placed, 3);
        let entry = map.iter().find(|e| e.base == fb.0).unwrap();
        assert_eq!((entry.len, entry.kind), (fb.1, MemmapType::Framebuffer));
        assert_eq!(map.iter().filter(|e| e.base >= fb.0).count(), 1, "{map:?}");
        assert!(hhdm_ranges(&map, 3).contains(&(fb.0, fb.0 + fb.1)));
    }
}
