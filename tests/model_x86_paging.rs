//! Page walks on hand-built tables in synthetic memory, for every mode, page size and fault.

use gdbvisor::x86::paging::Level;
use gdbvisor::x86::*;

const P: u64 = 1;
const W: u64 = 2;
const U: u64 = 4;
const A: u64 = 0x20;
const PS: u64 = 0x80;
const XD: u64 = 1 << 63;

const CR0_PG: u64 = 0x8000_0011;
const CR4_PSE: u64 = 0x10;
const CR4_PAE: u64 = 0x20;
const CR4_LA57: u64 = 0x1000;
const EFER_LM: u64 = 0x500;
const EFER_NXE: u64 = 0x800;

fn mem() -> VecMemory {
    VecMemory::new(16 << 20)
}

fn long4(cr3: u64) -> ControlRegs {
    ControlRegs::new(CR0_PG | 1 << 16, cr3, CR4_PAE, EFER_LM | EFER_NXE)
}

/// 4-level tables at 0x1000.. mapping: 0x40_0000 -> 0x20_0000 (4K), 0x60_0000 -> 2M page at
/// 0x80_0000, 0x4000_0000 -> 1G page at 0x4000_0000 (beyond RAM, fine), 0xffff_8000_0000_0000 ->
/// 0x30_0000 supervisor read-only NX.
fn build4(m: &mut VecMemory) -> ControlRegs {
    let pml4 = 0x1000;
    let pdpt = 0x2000;
    let pd = 0x3000;
    let pt = 0x4000;
    m.write_u64(pml4, pdpt | P | W | U);
    m.write_u64(pdpt, pd | P | W | U);
    m.write_u64(pdpt + 8, 0x4000_0000 | P | W | PS);
    m.write_u64(pd + 2 * 8, pt | P | W | U); // 0x40_0000
    m.write_u64(pt, 0x20_0000 | P | W | U | A);
    m.write_u64(pd + 3 * 8, 0x80_0000 | P | W | U | PS); // 0x60_0000
                                                         // upper half: PML4[256] -> pdpt2 -> pd2 -> pt2
    m.write_u64(pml4 + 256 * 8, 0x5000 | P | W);
    m.write_u64(0x5000, 0x6000 | P | W);
    m.write_u64(0x6000, 0x7000 | P | W);
    m.write_u64(0x7000, 0x30_0000 | P | XD);
    long4(pml4)
}

#[test]
fn paging_off_is_identity() {
    let m = mem();
    let regs = ControlRegs::new(0x11, 0, 0, 0);
    let t = translate(&m, &regs, 0xb8000, Access::write(true)).unwrap();
    assert_eq!(t.phys, 0xb8000);
    assert!(matches!(
        walk(&m, &regs, 0x1_0000_0000),
        Err(WalkError::NonCanonical { .. })
    ));
}

#[test]
fn level4_4k_2m_1g() {
    let mut m = mem();
    let regs = build4(&mut m);
    let t = translate(&m, &regs, 0x40_0123, Access::DEBUGGER).unwrap();
    assert_eq!((t.phys, t.page_size), (0x20_0123, PageSize::Size4K));
    assert_eq!(t.rights, Rights::WRITE | Rights::USER);
    assert!(t.leaf_flags.contains(PageTableFlags::ACCESSED));
    let t = translate(&m, &regs, 0x6f_f00f, Access::DEBUGGER).unwrap();
    assert_eq!((t.phys, t.page_size), (0x8f_f00f, PageSize::Size2M));
    let t = translate(&m, &regs, 0x7654_3210, Access::DEBUGGER).unwrap();
    assert_eq!((t.phys, t.page_size), (0x7654_3210, PageSize::Size1G));
    assert_eq!(t.rights, Rights::WRITE);
    let w = walk(&m, &regs, 0xffff_8000_0000_0042).unwrap();
    assert_eq!(w.translation.phys, 0x30_0042);
    assert_eq!(w.translation.rights, Rights::NO_EXEC);
    let levels: Vec<_> = w
        .trace
        .iter()
        .map(|e| (e.level, e.index, e.entry_addr))
        .collect();
    assert_eq!(
        levels,
        [
            (Level::Pml4, 256, 0x1800),
            (Level::Pdpte, 0, 0x5000),
            (Level::Pde, 0, 0x6000),
            (Level::Pte, 0, 0x7000)
        ]
    );
}

#[test]
fn level4_faults() {
    let mut m = mem();
    let regs = build4(&mut m);
    // not present at the PDE level
    let e = walk(&m, &regs, 0x20_0000).unwrap_err();
    assert!(
        matches!(
            e,
            WalkError::NotPresent {
                level: Level::Pde,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.trace().unwrap().len(), 3);
    let pf = e.page_fault(Access::write(false), &regs).unwrap();
    assert_eq!(pf.code.bits(), 0x2);
    assert_eq!(
        pf.to_string(),
        "#PF would be raised: error code 0x0002 (not-present, write, supervisor)"
    );
    let report = e.explain(Access::write(false), &regs);
    println!("{report}");
    assert_eq!(report.lines().count(), 5, "{report}");
    assert!(
        report.contains("  PDE   [  1] @0x00003008 = 0x0000000000000000  --"),
        "{report}"
    );
    assert!(report
        .ends_with("#PF would be raised: error code 0x0002 (not-present, write, supervisor)\n"));
    // not present at PML4
    let e = walk(&m, &regs, 0x0000_7f00_0000_0000).unwrap_err();
    assert!(matches!(
        e,
        WalkError::NotPresent {
            level: Level::Pml4,
            ..
        }
    ));
    // non-canonical
    let e = walk(&m, &regs, 0x0000_8000_0000_0000).unwrap_err();
    assert!(matches!(e, WalkError::NonCanonical { .. }));
    assert_eq!(e.page_fault(Access::DEBUGGER, &regs), None);
    // reserved: PS in a PML4E
    m.write_u64(0x1000 + 8, 0x2000 | P | PS);
    let e = walk(&m, &regs, 0x80_0000_0000).unwrap_err();
    assert!(matches!(
        e,
        WalkError::ReservedBits {
            level: Level::Pml4,
            bits: PS,
            ..
        }
    ));
    let pf = e.page_fault(Access::read(true), &regs).unwrap();
    assert_eq!(pf.code.bits(), 0b1101);
    // reserved: address bit above MAXPHYADDR 46, only with that width
    m.write_u64(0x4000 + 8, (1 << 47) | P);
    assert!(walk(&m, &regs, 0x40_1000).is_ok());
    let narrow = regs.with_maxphyaddr(46);
    let e = walk(&m, &narrow, 0x40_1000).unwrap_err();
    assert!(
        matches!(e, WalkError::ReservedBits { level: Level::Pte, bits, .. } if bits == 1 << 47)
    );
    // reserved: 2M page with bit 13 set
    m.write_u64(0x3000 + 4 * 8, 0x80_0000 | 1 << 13 | P | PS);
    assert!(matches!(
        walk(&m, &regs, 0x80_0000),
        Err(WalkError::ReservedBits {
            level: Level::Pde,
            bits: 0x2000,
            ..
        })
    ));
    // reserved: XD without EFER.NXE
    let no_nxe = ControlRegs::new(CR0_PG, 0x1000, CR4_PAE, EFER_LM);
    assert!(matches!(
        walk(&m, &no_nxe, 0xffff_8000_0000_0000),
        Err(WalkError::ReservedBits {
            level: Level::Pte,
            bits: XD,
            ..
        })
    ));
    // a table outside RAM
    m.write_u64(0x3000 + 5 * 8, 0x7000_0000 | P);
    let e = walk(&m, &regs, 0xa0_0000).unwrap_err();
    assert!(
        matches!(
            e,
            WalkError::TableOutsideRam {
                level: Level::Pte,
                addr: 0x7000_0000,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.page_fault(Access::DEBUGGER, &regs), None);
    // the PML4 itself outside RAM
    let far = long4(0x10_0000_0000);
    assert!(matches!(
        walk(&m, &far, 0),
        Err(WalkError::TableOutsideRam {
            level: Level::Pml4,
            ..
        })
    ));
}

/// MAXPHYADDR M decides which address bits of an entry are reserved, at every level of 4-level
/// paging and for every page size: bit M-1 is an address bit (a table or page out there), bit M
/// and up to 51 are reserved, and the CPU raises #PF with P and RSVD for any access; with
/// M = 52 no address bit is reserved.
#[test]
fn maxphyaddr_36_40_46_52_reserve_the_address_bits_at_and_above_it() {
    let mut m = mem();
    let wide = build4(&mut m);
    // (level, entry address, linear that goes through it, leaf?)
    let cases = [
        (Level::Pml4, 0x1000, 0x40_0000u64, false),
        (Level::Pdpte, 0x2000, 0x40_0000, false),
        (Level::Pdpte, 0x2008, 0x4000_0000, true),
        (Level::Pde, 0x3010, 0x40_0000, false),
        (Level::Pde, 0x3018, 0x60_0000, true),
        (Level::Pte, 0x4000, 0x40_0000, true),
    ];
    for bits in [36u8, 40, 46, 52] {
        let regs = wide.with_maxphyaddr(bits);
        assert_eq!(regs.maxphyaddr, bits);
        for (level, at, linear, leaf) in cases {
            let saved = m.read_u64(at).unwrap();
            let what = format!("MAXPHYADDR {bits}, {level} @{at:#x}");
            // The highest address bit: the entry points past RAM, nothing is reserved.
            let top = 1u64 << (bits - 1);
            m.write_u64(at, saved | top);
            match walk(&m, &regs, linear) {
                Ok(w) if leaf => assert_eq!(w.translation.phys & top, top, "{what}"),
                Err(WalkError::TableOutsideRam { addr, .. }) if !leaf => {
                    assert_eq!(addr & top, top, "{what}")
                }
                other => panic!("{what}: bit {} is an address bit: {other:?}", bits - 1),
            }
            for bit in u32::from(bits)..52 {
                m.write_u64(at, saved | 1 << bit);
                let e = walk(&m, &regs, linear).unwrap_err();
                assert!(
                    matches!(e, WalkError::ReservedBits { level: l, bits: b, .. } if l == level && b == 1 << bit),
                    "{what}, bit {bit}: {e:?}"
                );
                for (access, code) in [
                    (Access::read(false), 0x9),
                    (Access::write(false), 0xb),
                    (Access::read(true), 0xd),
                    (Access::fetch(false), 0x19),
                ] {
                    let pf = e.page_fault(access, &regs).unwrap();
                    assert_eq!((pf.linear, pf.code.bits()), (linear, code), "{what}");
                }
                let report = e.explain(Access::read(false), &regs);
                assert!(
                    report.contains(&format!(
                        "MAXPHYADDR is {bits}: physical addresses have {bits} bits, so entry bits 51:{bits} are reserved\n"
                    )) && report.ends_with(
                        "#PF would be raised: error code 0x0009 (protection, read, supervisor, reserved-bit)\n"
                    ),
                    "{what}:\n{report}"
                );
            }
            m.write_u64(at, saved);
        }
        // Reserved bits the format reserves whatever MAXPHYADDR is get no MAXPHYADDR line.
        m.write_u64(0x1008, 0x2000 | P | PS);
        let e = walk(&m, &regs, 0x80_0000_0000).unwrap_err();
        assert!(!e.explain(Access::read(false), &regs).contains("MAXPHYADDR"));
        m.write_u64(0x1008, 0);
    }
    // PAE: bits 62:M are reserved, the same line names the ones MAXPHYADDR reserves.
    m.write_u64(0x8000, 0x9000 | P);
    m.write_u64(0x9000, 0x20_0000 | 1 << 40 | P | W | PS);
    let pae = ControlRegs::new(CR0_PG, 0x8000, CR4_PAE, EFER_NXE).with_maxphyaddr(40);
    let e = walk(&m, &pae, 0x1234).unwrap_err();
    assert!(
        matches!(e, WalkError::ReservedBits { level: Level::Pde, bits, .. } if bits == 1 << 40)
    );
    assert!(e.explain(Access::read(false), &pae).contains(
        "MAXPHYADDR is 40: physical addresses have 40 bits, so entry bits 51:40 are reserved"
    ));
    assert!(walk(&m, &pae.with_maxphyaddr(41), 0x1234).is_ok());
}

#[test]
fn protection_checks_and_error_codes() {
    let mut m = mem();
    let regs = build4(&mut m);
    let kernel_ro_nx = 0xffff_8000_0000_0000;
    let user_rw = 0x40_0000;
    let code = |regs: &ControlRegs, lin, acc| match translate(&m, regs, lin, acc) {
        Ok(_) => None,
        Err(e) => Some(e.page_fault(acc, regs).unwrap().code.bits()),
    };
    // user read of a supervisor page: P|U
    assert_eq!(code(&regs, kernel_ro_nx, Access::read(true)), Some(0x5));
    // supervisor write to read-only with WP=1: P|W; with WP=0 allowed
    assert_eq!(code(&regs, kernel_ro_nx, Access::write(false)), Some(0x3));
    let no_wp = ControlRegs {
        cr0: Cr0Flags::from_bits_retain(CR0_PG),
        ..regs
    };
    assert_eq!(code(&no_wp, kernel_ro_nx, Access::write(false)), None);
    // fetch from NX: P|I/D
    assert_eq!(code(&regs, kernel_ro_nx, Access::fetch(false)), Some(0x11));
    // user write to user rw page: fine; user fetch fine
    assert_eq!(code(&regs, user_rw, Access::write(true)), None);
    assert_eq!(code(&regs, user_rw, Access::fetch(true)), None);
    // SMEP: supervisor fetch from user page
    let smep = ControlRegs {
        cr4: regs.cr4 | Cr4Flags::SMEP,
        ..regs
    };
    assert_eq!(code(&regs, user_rw, Access::fetch(false)), None);
    assert_eq!(code(&smep, user_rw, Access::fetch(false)), Some(0x11));
    // SMAP: supervisor read of user page blocked unless EFLAGS.AC
    let smap = ControlRegs {
        cr4: regs.cr4 | Cr4Flags::SMAP,
        ..regs
    };
    assert_eq!(code(&smap, user_rw, Access::read(false)), Some(0x1));
    assert_eq!(code(&smap, user_rw, Access::write(false)), Some(0x3));
    assert_eq!(
        code(&smap, user_rw, Access::read(false).with_eflags_ac(true)),
        None
    );
    assert_eq!(code(&smap, user_rw, Access::DEBUGGER), None);
    // user write through a read-only 1 GiB page that is also supervisor
    assert_eq!(code(&regs, 0x4000_0000, Access::write(true)), Some(0x7));
    // not present fetch, I/D reported because PAE+NXE
    assert_eq!(code(&regs, 0x20_0000, Access::fetch(true)), Some(0x14));
    // the Protection error carries the code and the trace
    let e = translate(&m, &regs, kernel_ro_nx, Access::write(true)).unwrap_err();
    assert!(matches!(e, WalkError::Protection { code, .. } if code.bits() == 0x7));
    assert_eq!(e.trace().unwrap().len(), 4);
}

#[test]
fn bits32_4k_and_4m() {
    let mut m = mem();
    let pd = 0x10_0000u64;
    let pt = 0x10_1000u64;
    // 0xc000_0000 -> PT -> 0x0020_0000
    m.write_u32(pd + 768 * 4, (pt | P | W) as u32);
    m.write_u32(pt + 5 * 4, (0x20_0000 | P | W | U) as u32);
    // 0x0040_0000: 4 MiB page at 0x0080_0000 with PSE; PSE-36: high bits 0x3 -> 0x3_0080_0000
    m.write_u32(pd + 4, (0x80_0000 | P | PS | U) as u32);
    m.write_u32(pd + 2 * 4, (0x80_0000 | 0x3 << 13 | P | PS) as u32);
    let pse = ControlRegs::new(CR0_PG, pd, CR4_PSE, 0);
    let t = translate(&m, &pse, 0xc000_5abc, Access::write(false)).unwrap();
    assert_eq!((t.phys, t.page_size), (0x20_0abc, PageSize::Size4K));
    // U only at the PTE: user read fails, code P|U
    let e = translate(&m, &pse, 0xc000_5abc, Access::read(true)).unwrap_err();
    assert_eq!(
        e.page_fault(Access::read(true), &pse).unwrap().code.bits(),
        5
    );
    let t = translate(&m, &pse, 0x0051_2345, Access::read(true)).unwrap();
    assert_eq!((t.phys, t.page_size), (0x0091_2345, PageSize::Size4M));
    assert_eq!(t.rights, Rights::USER);
    let t = walk(&m, &pse, 0x0080_0001).unwrap().translation;
    assert_eq!(t.phys, 0x3_0080_0001);
    // with MAXPHYADDR 32 the PSE-36 bits are reserved
    let narrow = pse.with_maxphyaddr(32);
    let e = walk(&m, &narrow, 0x0080_0001).unwrap_err();
    assert!(matches!(
        e,
        WalkError::ReservedBits {
            level: Level::Pde,
            ..
        }
    ));
    assert!(e.explain(Access::read(false), &narrow).contains(
        "MAXPHYADDR is 32: PDE bits 20:13 (physical-address bits 39:32) of a 4 MiB page are reserved\n"
    ));
    // with 36, physical-address bits 35:32 (PDE bits 16:13) remain
    let e = walk(&m, &pse.with_maxphyaddr(36), 0x0080_0001);
    assert!(e.is_ok(), "{e:?}");
    // bit 21 is always reserved in a 4 MiB PDE
    m.write_u32(pd + 3 * 4, (0x80_0000 | 1 << 21 | P | PS) as u32);
    assert!(matches!(
        walk(&m, &pse, 0x00c0_0000),
        Err(WalkError::ReservedBits {
            bits: 0x20_0000,
            ..
        })
    ));
    // without CR4.PSE the PS bit is ignored: the PDE points to a page table at 0x0080_0000
    let nopse = ControlRegs::new(CR0_PG, pd, 0, 0);
    m.write_u32(0x80_0000 + 0x12 * 4, (0x5000 | P) as u32);
    let w = walk(&m, &nopse, 0x0041_2007).unwrap();
    assert_eq!(w.translation.phys, 0x5007);
    assert_eq!(w.trace.len(), 2);
    // not present PTE; fetch doesn't report I/D on 32-bit paging without SMEP
    let e = walk(&m, &pse, 0xc000_6000).unwrap_err();
    assert!(matches!(
        e,
        WalkError::NotPresent {
            level: Level::Pte,
            ..
        }
    ));
    assert_eq!(
        e.page_fault(Access::fetch(false), &pse)
            .unwrap()
            .code
            .bits(),
        0
    );
    // above 4 GiB is not a 32-bit linear address
    assert!(matches!(
        walk(&m, &pse, 0x1_0000_0000),
        Err(WalkError::NonCanonical { .. })
    ));
    // display
    let text = walk(&m, &pse, 0xc000_5abc).unwrap().to_string();
    println!("{text}");
    assert!(
        text.contains("  PDE   [768] @0x00100c00 = 0x00101003  P W S"),
        "{text}"
    );
    assert!(text.contains("-> table 0x00101000"), "{text}");
    assert!(
        text.contains("PTE   [  5] @0x00101014 = 0x00200007  P W U"),
        "{text}"
    );
}

#[test]
fn pae_from_memory_and_registers() {
    let mut m = mem();
    let cr3 = 0x9020u64; // 32-byte aligned PDPT
    let pd = 0x3000u64;
    let pt = 0x4000u64;
    m.write_u64(cr3 + 3 * 8, pd | P);
    m.write_u64(pd + 8, pt | P | W);
    m.write_u64(pt + 2 * 8, 0x1_2345_6000 | P | W | XD);
    m.write_u64(pd + 2 * 8, 0x60_0000 | P | PS | U);
    let regs = ControlRegs::new(CR0_PG, cr3, CR4_PAE, EFER_NXE);
    let w = walk(&m, &regs, 0xc020_2010).unwrap();
    assert_eq!(w.translation.phys, 0x1_2345_6010);
    assert_eq!(w.translation.rights, Rights::WRITE | Rights::NO_EXEC);
    assert_eq!(w.trace[0].entry_addr, cr3 + 24);
    assert!(!w.trace[0].from_register);
    let t = walk(&m, &regs, 0xc041_0000).unwrap().translation;
    assert_eq!((t.phys, t.page_size), (0x61_0000, PageSize::Size2M));
    // PDPTE registers win over memory (the CPU cached them at the CR3 load)
    let alt_pd = 0x5000u64;
    m.write_u64(alt_pd + 2 * 8, 0xa0_0000 | P | PS);
    let with_regs = regs.with_pdptrs([0, 0, 0, alt_pd | P]);
    let w = walk(&m, &with_regs, 0xc041_0000).unwrap();
    assert_eq!(w.translation.phys, 0xa1_0000);
    assert!(w.trace[0].from_register);
    assert!(w.to_string().contains("PDPTR3"), "{w}");
    // PDPTE not present
    let e = walk(&m, &regs, 0x0000_1000).unwrap_err();
    assert!(matches!(
        e,
        WalkError::NotPresent {
            level: Level::Pdpte,
            ..
        }
    ));
    // PDPTE reserved bits: R/W is reserved in a PAE PDPTE
    m.write_u64(cr3 + 2 * 8, pd | P | W);
    assert!(matches!(
        walk(&m, &regs, 0x8000_0000),
        Err(WalkError::ReservedBits {
            level: Level::Pdpte,
            bits: 2,
            ..
        })
    ));
    // XD without NXE is reserved; fetch from NX page with NXE gives P|I/D
    let no_nxe = ControlRegs::new(CR0_PG, cr3, CR4_PAE, 0);
    assert!(matches!(
        walk(&m, &no_nxe, 0xc020_2010),
        Err(WalkError::ReservedBits { bits: XD, .. })
    ));
    let e = translate(&m, &regs, 0xc020_2010, Access::fetch(false)).unwrap_err();
    assert_eq!(
        e.page_fault(Access::fetch(false), &regs)
            .unwrap()
            .code
            .bits(),
        0x11
    );
    // 2M page with reserved bit 13
    m.write_u64(pd + 3 * 8, 0x60_0000 | 1 << 13 | P | PS);
    assert!(matches!(
        walk(&m, &regs, 0xc060_0000),
        Err(WalkError::ReservedBits {
            level: Level::Pde,
            bits: 0x2000,
            ..
        })
    ));
    // PAE: bits 62:52 are reserved (unlike 4-level, where they are ignored)
    m.write_u64(pt + 3 * 8, 1 << 60 | 0x7000 | P);
    assert!(matches!(
        walk(&m, &regs, 0xc020_3000),
        Err(WalkError::ReservedBits { bits, .. }) if bits == 1 << 60
    ));
}

#[test]
fn level5() {
    let mut m = mem();
    let pml5 = 0x1000;
    m.write_u64(pml5 + 0x1ff * 8, 0x2000 | P | W);
    m.write_u64(0x2000 + 0x1ff * 8, 0x3000 | P | W);
    m.write_u64(0x3000 + 0x1fe * 8, 0x4000 | P | W);
    m.write_u64(0x4000, 0x5000 | P | W);
    m.write_u64(0x5000 + 8, 0xab_c000 | P | W);
    let regs = ControlRegs::new(CR0_PG, pml5, CR4_PAE | CR4_LA57, EFER_LM);
    let lin = 0xffff_ffff_8000_1234;
    let w = walk(&m, &regs, lin).unwrap();
    assert_eq!(w.translation.phys, 0xab_c234);
    assert_eq!(w.trace.len(), 5);
    assert_eq!(w.trace[0].level, Level::Pml5);
    assert_eq!(w.trace[0].index, 0x1ff);
    // canonical for 48 bits is not the same as for 57 bits
    assert!(matches!(
        walk(&m, &regs, 0x0100_0000_0000_0000),
        Err(WalkError::NonCanonical { .. })
    ));
    assert!(matches!(
        walk(&m, &regs, 0x0000_8000_0000_0000),
        Err(WalkError::NotPresent {
            level: Level::Pml5,
            ..
        })
    ));
    // PS is reserved in a PML5E
    m.write_u64(pml5, 0x2000 | P | PS);
    assert!(matches!(
        walk(&m, &regs, 0x1000),
        Err(WalkError::ReservedBits {
            level: Level::Pml5,
            ..
        })
    ));
}

#[test]
fn paged_memory_reads_across_pages() {
    let mut m = mem();
    let regs = build4(&mut m);
    // 0x40_0000 -> 0x20_0000; 0x40_1000 -> 0x9_0000
    m.write_u64(0x4000 + 8, 0x9_0000 | P);
    m.write(0x20_0ffe, &[1, 2]).unwrap();
    m.write(0x9_0000, &[3, 4]).unwrap();
    let lm = PagedMemory::new(&m, regs);
    let mut buf = [0u8; 4];
    lm.read_linear(0x40_0ffe, &mut buf).unwrap();
    assert_eq!(buf, [1, 2, 3, 4]);
    assert!(matches!(
        lm.read_linear(0x40_2ffe, &mut buf),
        Err(LinearReadError::Walk(WalkError::NotPresent { .. }))
    ));
}

#[test]
fn logical_to_physical_chains_segmentation_and_paging() {
    let mut m = mem();
    let pd = 0x10_0000u64;
    m.write_u32(pd + 768 * 4, (0x10_1000 | P | W) as u32);
    m.write_u32(0x10_1000 + 4, (0x30_0000 | P) as u32); // 0xc000_1000 -> 0x30_0000, read-only
    let regs = ControlRegs::new(CR0_PG | 1 << 16, pd, CR4_PSE, 0);
    // DS: base 0xc000_0000, limit 0xffff, data RW, 32-bit
    let ds = SegmentCache::from_descriptor(
        SegmentSelector(0x10),
        SegmentDescriptor(0xc040_9300_0000_ffff),
    );
    let cs = SegmentCache::from_descriptor(
        SegmentSelector(0x08),
        SegmentDescriptor(0x00cf_9b00_0000_ffff),
    );
    let mode = CpuMode::from_cache(&regs, 0x2, &cs);
    assert_eq!(mode, CpuMode::Protected32);
    let (lin, t) = logical_to_physical(
        &m,
        &regs,
        mode,
        SegmentRegister::Ds,
        &ds,
        0x1234,
        4,
        SegAccess::Read,
        Access::read(false),
    )
    .unwrap();
    assert_eq!((lin, t.phys), (0xc000_1234, 0x30_0234));
    // paging refuses the write (read-only, WP), segmentation the limit
    let e = logical_to_physical(
        &m,
        &regs,
        mode,
        SegmentRegister::Ds,
        &ds,
        0x1234,
        4,
        SegAccess::Write,
        Access::write(false),
    )
    .unwrap_err();
    assert!(
        matches!(e, X86Error::Walk(WalkError::Protection { .. })),
        "{e}"
    );
    let e = logical_to_physical(
        &m,
        &regs,
        mode,
        SegmentRegister::Ds,
        &ds,
        0x1_0000,
        1,
        SegAccess::Read,
        Access::DEBUGGER,
    )
    .unwrap_err();
    assert!(
        matches!(e, X86Error::Segment(SegmentError::Limit { .. })),
        "{e}"
    );
    // real mode: CS:IP = f000:fff0 with paging off
    let real = ControlRegs::new(0x10, 0, 0, 0);
    let cs = SegmentCache::real_mode(0xf000, true);
    let mode = CpuMode::from_cache(&real, 0x2, &cs);
    assert_eq!(mode, CpuMode::Real);
    let (lin, t) = logical_to_physical(
        &m,
        &real,
        mode,
        SegmentRegister::Cs,
        &cs,
        0xfff0,
        1,
        SegAccess::Execute,
        Access::fetch(false),
    )
    .unwrap();
    assert_eq!((lin, t.phys), (0xffff0, 0xffff0));
}
