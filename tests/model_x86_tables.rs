//! Descriptor-table and page-table decoders on hand-built and hostile tables.

use gdbvisor::x86::paging::Level;
use gdbvisor::x86::segment::SystemType;
use gdbvisor::x86::tables::*;
use gdbvisor::x86::*;
use std::time::Instant;

const P: u64 = 1;
const W: u64 = 2;
const U: u64 = 4;
const PS: u64 = 0x80;
const XD: u64 = 1 << 63;

fn flat32() -> ControlRegs {
    ControlRegs::new(0x11, 0, 0, 0)
}

fn long4(cr3: u64) -> ControlRegs {
    ControlRegs::new(0x8001_0011, cr3, 0x20, 0xd00)
}

#[test]
fn gdt_long_mode_with_tss() {
    let mut m = VecMemory::new(0x10000);
    let gdt_base = 0x1000;
    m.write_u64(gdt_base + 8, 0x00af_9b00_0000_ffff);
    m.write_u64(gdt_base + 16, 0x00cf_9300_0000_ffff);
    m.write_u64(gdt_base + 24, 0x0000_8b00_3000_0067); // 64-bit TSS at 0x3000 (16 bytes)
    m.write_u64(gdt_base + 32, 0);
    m.write_u64(gdt_base + 40, 0x00af_fb00_0000_ffff);
    let mem = PagedMemory::new(&m, flat32());
    let gdtr = TableRegister {
        base: gdt_base,
        limit: 47,
    };
    let entries: Vec<_> = tables::gdt(&mem, gdtr, true).map(Result::unwrap).collect();
    let lines: Vec<_> = entries.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(lines[0], "GDT[0x0000]=<null entry>");
    assert!(lines[1].starts_with("GDT[0x0008]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, Accessed, 64-bit"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("GDT[0x0010]=Data segment"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("GDT[0x0018]=64-Bit TSS (Busy) at 0x00003000, length 0x00067"),
        "{}",
        lines[3]
    );
    assert_eq!(entries[3].raw_high, Some(0));
    assert!(
        lines[4].starts_with("GDT[0x0028]=Code segment"),
        "{}",
        lines[4]
    );
    // the same table in legacy mode has 6 entries of 8 bytes
    assert_eq!(tables::gdt(&mem, gdtr, false).count(), 6);
}

#[test]
fn ldt_and_huge_limits_are_bounded() {
    let m = VecMemory::new(0x10000);
    let mem = PagedMemory::new(&m, flat32());
    // An LDT cache limit of 4 GiB: only the budget stops the iteration.
    let t = Instant::now();
    let items: Vec<_> = tables::ldt(&mem, 0, u32::MAX, false).collect();
    assert!(t.elapsed().as_secs() < 2);
    assert_eq!(items.len(), DEFAULT_DESCRIPTOR_BUDGET + 1);
    assert!(matches!(
        items.last(),
        Some(Err(TableError::Truncated { .. }))
    ));
    // Entries beyond RAM are reported and skipped, not fatal.
    let gdtr = TableRegister {
        base: 0xfff0,
        limit: 0xffff,
    };
    let items: Vec<_> = tables::gdt(&mem, gdtr, false).collect();
    assert_eq!(items.len(), 8192);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(matches!(
        items[2],
        Err(TableError::Unreadable { index: 2, .. })
    ));
    let entries = tables::ldt(&mem, 0x100, 0x17, false).with_budget(2).count();
    assert_eq!(entries, 3);
}

#[test]
fn idt_32_and_64() {
    let mut m = VecMemory::new(0x10000);
    m.write_u64(0x2000 + 0x0e * 16, 0x8100_8e00_0008_1234);
    m.write_u64(0x2000 + 0x0e * 16 + 8, 0xffff_ffff);
    m.write_u64(0x2000 + 0x80 * 16, 0x0000_ee00_0008_4000);
    let mem = PagedMemory::new(&m, flat32());
    let idtr = TableRegister {
        base: 0x2000,
        limit: 256 * 16 - 1,
    };
    let v: Vec<_> = tables::idt(&mem, idtr, true).map(Result::unwrap).collect();
    assert_eq!(v.len(), 256);
    assert_eq!(
        v[0x0e].to_string(),
        "IDT[0x0e]=64-Bit Interrupt Gate target=0x0008:0xffffffff81001234, DPL=0"
    );
    assert!(v[0x80].to_string().contains("DPL=3"));
    // 32-bit: 8-byte gates, limit 0x7ff
    m.write_u64(0x3000 + 8 * 8, 0x0010_8f00_0008_5678);
    m.write_u64(0x3000 + 8 * 9, 0x0000_8500_0030_0000);
    let mem = PagedMemory::new(&m, flat32());
    let idtr = TableRegister {
        base: 0x3000,
        limit: 0x7ff,
    };
    let v: Vec<_> = tables::idt(&mem, idtr, false).map(Result::unwrap).collect();
    assert_eq!(v.len(), 256);
    assert_eq!(
        v[8].to_string(),
        "IDT[0x08]=32-Bit Trap Gate target=0x0008:0x00105678, DPL=0"
    );
    assert!(matches!(v[9].descriptor, Descriptor::Gate(g) if g.kind == SystemType::TaskGate));
    // real-mode IVT
    m.write(0x0, &[0x53, 0xff, 0x00, 0xf0]).unwrap();
    let mem = PagedMemory::new(&m, ControlRegs::new(0x10, 0, 0, 0));
    let ivt = tables::ivt(
        &mem,
        TableRegister {
            base: 0,
            limit: 0x3ff,
        },
    );
    assert_eq!(ivt.len(), 256);
    assert_eq!(ivt[0], Ok((0, 0xf000, 0xff53)));
}

#[test]
fn tss_layouts() {
    let mut b = [0u8; TSS_SIZE];
    b[4..12].copy_from_slice(&0xffff_8000_0001_0000u64.to_le_bytes()); // rsp0
    b[36..44].copy_from_slice(&0xffff_8000_0002_0000u64.to_le_bytes()); // ist1
    b[102..104].copy_from_slice(&104u16.to_le_bytes());
    let t = Tss64::from_bytes(&b);
    assert_eq!(t.rsp[0], 0xffff_8000_0001_0000);
    assert_eq!(t.ist[0], 0xffff_8000_0002_0000);
    assert_eq!(t.iomap_base, 104);
    assert!(t.to_string().contains("ist1 = 0xffff800000020000"));
    let mut b = [0u8; TSS_SIZE];
    b[4..8].copy_from_slice(&0x9000u32.to_le_bytes()); // esp0
    b[8..10].copy_from_slice(&0x10u16.to_le_bytes()); // ss0
    b[28..32].copy_from_slice(&0x1000u32.to_le_bytes()); // cr3
    b[32..36].copy_from_slice(&0x1234u32.to_le_bytes()); // eip
    b[76..78].copy_from_slice(&0x08u16.to_le_bytes()); // cs
    b[96..98].copy_from_slice(&0x28u16.to_le_bytes()); // ldt
    let t = Tss32::from_bytes(&b);
    assert_eq!(
        (t.stacks[0], t.cr3, t.eip, t.segments[1], t.ldt),
        ((0x9000, 0x10), 0x1000, 0x1234, 8, 0x28)
    );
    let mut m = VecMemory::new(0x1000);
    m.write(0x100, &b).unwrap();
    assert_eq!(Tss32::read(&PagedMemory::new(&m, flat32()), 0x100), Ok(t));
    assert!(Tss32::read(&PagedMemory::new(&m, flat32()), 0xfa0).is_err());
}

/// PML4 at 0x1000; identity-map 0..4 MiB with 4 KiB pages (one rights change at 1 MiB), a 2 MiB
/// page at 0x4000_0000, and the kernel half at 0xffff_8000_0000_0000 -> 0 (NX).
fn build(m: &mut VecMemory) -> ControlRegs {
    m.write_u64(0x1000, 0x2000 | P | W | U);
    m.write_u64(0x2000, 0x3000 | P | W | U);
    for pd in 0..2u64 {
        m.write_u64(0x3000 + pd * 8, (0x4000 + pd * 0x1000) | P | W | U);
        for i in 0..512u64 {
            let phys = (pd * 512 + i) * 0x1000;
            let user = if phys < 0x10_0000 { 0 } else { U };
            m.write_u64(0x4000 + pd * 0x1000 + i * 8, phys | P | W | user);
        }
    }
    m.write_u64(0x2000 + 8, 0x6000 | P | W);
    m.write_u64(0x6000, 0x20_0000 | P | PS);
    m.write_u64(0x1000 + 256 * 8, 0x7000 | P | W);
    m.write_u64(0x7000, 0x8000 | P | W);
    m.write_u64(0x8000, P | W | PS | XD);
    long4(0x1000)
}

#[test]
fn enumerate_coalesces() {
    let mut m = VecMemory::new(1 << 20);
    let regs = build(&mut m);
    let e = enumerate(&m, &regs, EnumOptions::default(), true);
    assert!(!e.truncated && e.problems.is_empty(), "{e:?}");
    let r: Vec<_> = e
        .ranges
        .iter()
        .map(|r| (r.linear_start, r.linear_end, r.phys_start, r.rights))
        .collect();
    assert_eq!(
        r,
        [
            (0, 0xf_ffff, 0, Rights::WRITE),
            (
                0x10_0000,
                0x3f_ffff,
                0x10_0000,
                Rights::WRITE | Rights::USER
            ),
            (0x4000_0000, 0x401f_ffff, 0x20_0000, Rights::empty()),
            (
                0xffff_8000_0000_0000,
                0xffff_8000_001f_ffff,
                0,
                Rights::WRITE | Rights::NO_EXEC
            ),
        ]
    );
    assert_eq!(e.leaves.len(), 1024 + 2);
    assert_eq!(e.ranges[1].pages, 768);
    assert_eq!(e.leaves[1025].level, Level::Pde);
    assert_eq!(
        e.ranges[3].to_string(),
        "0xffff800000000000-0xffff8000001fffff -> 0x0000000000000000-0x00000000001fffff 0x0000000000200000 -rw-"
    );
    // every leaf agrees with the walker
    for l in &e.leaves {
        let t = walk(&m, &regs, l.linear + 0x123).unwrap().translation;
        assert_eq!(
            (t.phys, t.page_size, t.rights),
            (l.phys + 0x123, l.size, l.rights)
        );
    }
    // a linear window
    let opts = EnumOptions {
        start: 0x3f_f000,
        end: 0x4000_0000,
        ..Default::default()
    };
    let r: Vec<_> = ranges(&m, &regs, opts).map(Result::unwrap).collect();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].linear_start, r[0].size), (0x3f_f000, 0x1000));
    assert_eq!(r[1].linear_start, 0x4000_0000);
    let upper = EnumOptions {
        start: 0xffff_8000_0000_0000,
        ..Default::default()
    };
    assert_eq!(ranges(&m, &regs, upper).count(), 1);
}

#[test]
fn enumerate_32bit_and_pae() {
    let mut m = VecMemory::new(1 << 20);
    // 32-bit: PDE[0] 4 MiB page at 0 (PSE), PDE[768] -> PT with 2 pages
    m.write_u32(0x1000, (P | W | PS) as u32);
    m.write_u32(0x1000 + 768 * 4, (0x2000 | P | W) as u32);
    m.write_u32(0x2000, (0x10_0000 | P) as u32);
    m.write_u32(0x2004, (0x10_1000 | P) as u32);
    let regs = ControlRegs::new(0x8000_0011, 0x1000, 0x10, 0);
    let r: Vec<_> = ranges(&m, &regs, EnumOptions::default())
        .map(Result::unwrap)
        .collect();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].linear_start, r[0].size), (0, 0x40_0000));
    assert_eq!(
        (r[1].linear_start, r[1].phys_start, r[1].size, r[1].rights),
        (0xc000_0000, 0x10_0000, 0x2000, Rights::empty())
    );
    // PAE with PDPTE registers
    m.write_u64(0x4000 + 8, 0x20_0000 | P | W | PS | XD);
    let regs =
        ControlRegs::new(0x8000_0011, 0x3000, 0x20, 0x800).with_pdptrs([0, 0, 0, 0x4000 | P]);
    let r: Vec<_> = ranges(&m, &regs, EnumOptions::default())
        .map(Result::unwrap)
        .collect();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].linear_start, r[0].phys_start, r[0].rights),
        (0xc020_0000, 0x20_0000, Rights::WRITE | Rights::NO_EXEC)
    );
    // paging off: nothing
    assert_eq!(ranges(&m, &flat32(), EnumOptions::default()).count(), 0);
}

#[test]
fn hostile_tables() {
    let mut m = VecMemory::new(1 << 20);
    let regs = build(&mut m);
    // recursive slot PML4[510] -> PML4: the tables show up as pages, and it terminates.
    m.write_u64(0x1000 + 510 * 8, 0x1000 | P | W);
    let e = enumerate(&m, &regs, EnumOptions::default(), true);
    assert!(!e.truncated);
    let self_map = 0xffff_ff7f_bfdf_e000u64; // PML4 seen through the slot 4 times
    assert!(e
        .leaves
        .iter()
        .any(|l| l.linear == self_map && l.phys == 0x1000));
    assert_eq!(walk(&m, &regs, self_map).unwrap().translation.phys, 0x1000);
    // a loop: every entry of one table points to that table -> 512^4 paths, budget stops it
    let mut m = VecMemory::new(1 << 20);
    for i in 0..512 {
        m.write_u64(0x1000 + i * 8, 0x1000 | P | W | U);
    }
    let t = Instant::now();
    let e = enumerate(
        &m,
        &long4(0x1000),
        EnumOptions {
            budget: 1 << 20,
            ..Default::default()
        },
        false,
    );
    assert!(e.truncated);
    assert!(e.visited <= 1 << 20);
    assert!(!e.ranges.is_empty());
    assert!(t.elapsed().as_secs() < 5);
    // entries pointing outside RAM and reserved bits are reported, the rest still enumerated
    let mut m = VecMemory::new(1 << 20);
    let regs = build(&mut m);
    m.write_u64(0x2000 + 16, 0x1_0000_0000 | P);
    m.write_u64(0x4000 + 8, 0x1000 | 1 << 51 | P);
    let e = enumerate(&m, &regs.with_maxphyaddr(46), EnumOptions::default(), false);
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
    assert!(matches!(
        e.problems[0],
        TableError::ReservedBits {
            level: Level::Pte,
            linear: 0x1000,
            ..
        }
    ));
    assert!(matches!(
        e.problems[1],
        TableError::TableOutsideRam {
            level: Level::Pde,
            addr: 0x1_0000_0000,
            ..
        }
    ));
    assert_eq!(e.ranges.len(), 5);
    // CR3 outside RAM
    let e = enumerate(&m, &long4(0x4000_0000), EnumOptions::default(), false);
    assert!(matches!(
        e.problems[..],
        [TableError::TableOutsideRam {
            level: Level::Pml4,
            ..
        }]
    ));
}
