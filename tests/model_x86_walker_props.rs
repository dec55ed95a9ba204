//! Property tests: the walker against a deliberately simple reference written from the SDM text,
//! and the table decoders against random bytes (no panic, bounded).

use gdbvisor::x86::tables::{self, EnumOptions, TableKind};
use gdbvisor::x86::*;
use proptest::prelude::*;

/// splitmix64: deterministic bytes from a proptest-chosen seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const RAM_PAGES: u64 = 32;
/// Entries point into 0..40 pages: some tables are outside RAM.
const TARGET_PAGES: u64 = 40;

#[derive(Debug, Clone, Copy)]
struct Setup {
    seed: u64,
    mode: u8,
    nxe: bool,
    pse: bool,
    wp: bool,
    smep: bool,
    smap: bool,
    maxphy: u8,
    use_pdptrs: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<u64>(),
        0u8..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![36u8, 40, 46, 52]),
        any::<bool>(),
    )
        .prop_map(
            |(seed, mode, nxe, pse, wp, smep, smap, maxphy, use_pdptrs)| Setup {
                seed,
                mode,
                nxe,
                pse,
                wp,
                smep,
                smap,
                maxphy,
                use_pdptrs,
            },
        )
}

/// Random page tables: mostly present entries with random flags pointing at random pages.
fn random_tables(s: &Setup, rng: &mut Rng) -> (VecMemory, ControlRegs) {
    let mut m = VecMemory::new((RAM_PAGES * 4096) as usize);
    let wide = s.mode != 0;
    for slot in 0..(RAM_PAGES * 4096 / if wide { 8 } else { 4 }) {
        let mut e = 0u64;
        if rng.chance(75) {
            e = rng.below(TARGET_PAGES) << 12 | (rng.next() & 0x1fe);
            if rng.chance(93) {
                e |= 1;
            }
            if rng.chance(75) {
                e |= 2;
            }
            if rng.chance(75) {
                e |= 4;
            }
            e &= !0x80;
            if rng.chance(25) {
                e |= 0x80;
                if rng.chance(70) {
                    // an aligned large page (bit 12 stays: it is PAT there)
                    e &= !(0x1_ffff << 13);
                }
            }
            if wide {
                if rng.chance(20) {
                    e |= 1 << 63;
                }
                if rng.chance(3) {
                    e |= 1 << (36 + rng.below(27)); // somewhere in 36..=62
                }
            } else if rng.chance(10) {
                e |= (rng.next() & 0x3ffff) << 13; // PSE-36 / reserved bits of a 4 MiB PDE
            }
        }
        if wide {
            m.write_u64(slot * 8, e);
        } else {
            m.write_u32(slot * 4, e as u32);
        }
    }
    let cr3 = rng.below(RAM_PAGES) << 12 | if s.mode == 1 { rng.below(128) << 5 } else { 0 };
    if s.mode == 1 && rng.chance(70) {
        // mostly valid PDPTEs, so PAE walks get past the first level
        for i in 0..4 {
            let e = m.read_u64(cr3 + i * 8).unwrap();
            m.write_u64(cr3 + i * 8, e & !0x1e6 & !(1 << 63) & 0xf_ffff_ffff);
        }
    }
    let mut cr0 = 0x8000_0011u64;
    if s.wp {
        cr0 |= 1 << 16;
    }
    let mut cr4 = 0u64;
    let mut efer = 0u64;
    match s.mode {
        0 => {}
        1 => cr4 |= 0x20,
        2 => {
            cr4 |= 0x20;
            efer |= 0x500
        }
        _ => {
            cr4 |= 0x1020;
            efer |= 0x500
        }
    }
    if s.pse {
        cr4 |= 0x10;
    }
    if s.smep {
        cr4 |= 1 << 20;
    }
    if s.smap {
        cr4 |= 1 << 21;
    }
    if s.nxe {
        efer |= 0x800;
    }
    let mut regs = ControlRegs::new(cr0, cr3, cr4, efer).with_maxphyaddr(s.maxphy);
    if s.mode == 1 && s.use_pdptrs {
        let mut p = [0u64; 4];
        for (i, v) in p.iter_mut().enumerate() {
            *v = m.read_u64(cr3 + i as u64 * 8).unwrap();
            if rng.chance(30) {
                *v = rng.below(TARGET_PAGES) << 12 | 1;
            }
        }
        regs = regs.with_pdptrs(p);
    }
    (m, regs)
}

fn random_linear(s: &Setup, rng: &mut Rng) -> u64 {
    let x = rng.next();
    match s.mode {
        0 | 1 if rng.chance(95) => x & 0xffff_ffff,
        2 if rng.chance(90) => sign_extend(x, 48),
        3 if rng.chance(90) => sign_extend(x, 57),
        _ => x,
    }
}

// ---------------------------------------------------------------------------------------------
// The reference: one level at a time, reserved bits decided bit by bit from the SDM tables.

#[derive(Debug, PartialEq, Eq)]
enum RefResult {
    Page {
        phys: u64,
        size: u64,
        w: bool,
        u: bool,
        nx: bool,
    },
    NotPresent(usize),
    Reserved(usize),
    Outside(usize),
    NonCanonical,
}

fn ref_reserved(mode: u8, name: &str, ps: bool, bit: u32, m: u32, nxe: bool) -> bool {
    match mode {
        0 => name == "PDE" && ps && (bit == 21 || (13 + (m.min(40) - 32) <= bit && bit <= 20)),
        1 => {
            if name == "PDPTE" {
                [1, 2, 5, 6, 7, 8, 63].contains(&bit) || (bit >= m && bit <= 62)
            } else {
                (bit >= m && bit <= 62)
                    || (bit == 63 && !nxe)
                    || (name == "PDE" && ps && (13..=20).contains(&bit))
            }
        }
        _ => {
            (bit >= m && bit <= 51)
                || (bit == 63 && !nxe)
                || ((name == "PML4" || name == "PML5") && bit == 7)
                || (name == "PDPTE" && ps && (13..=29).contains(&bit))
                || (name == "PDE" && ps && (13..=20).contains(&bit))
        }
    }
}

fn reference(mem: &VecMemory, s: &Setup, regs: &ControlRegs, lin: u64) -> RefResult {
    let m = s.maxphy as u32;
    let pow = |b: u32| 1u64 << b;
    // (name, shift, index count) per mode
    let levels: Vec<(&str, u32, u64)> = match s.mode {
        0 => vec![("PDE", 22, 1024), ("PTE", 12, 1024)],
        1 => vec![("PDPTE", 30, 4), ("PDE", 21, 512), ("PTE", 12, 512)],
        2 => vec![
            ("PML4", 39, 512),
            ("PDPTE", 30, 512),
            ("PDE", 21, 512),
            ("PTE", 12, 512),
        ],
        _ => vec![
            ("PML5", 48, 512),
            ("PML4", 39, 512),
            ("PDPTE", 30, 512),
            ("PDE", 21, 512),
            ("PTE", 12, 512),
        ],
    };
    let va_bits = match s.mode {
        0 | 1 => 32,
        2 => 48,
        _ => 57,
    };
    if va_bits == 32 {
        if lin >= pow(32) {
            return RefResult::NonCanonical;
        }
    } else {
        let top = lin >> (va_bits - 1);
        if top != 0 && top != (u64::MAX >> (va_bits - 1)) {
            return RefResult::NonCanonical;
        }
    }
    let esize = if s.mode == 0 { 4 } else { 8 };
    let mut table = match s.mode {
        0 => (regs.cr3 % pow(32)) / 4096 * 4096,
        1 => (regs.cr3 % pow(32)) / 32 * 32,
        _ => (regs.cr3 % pow(m)) / 4096 * 4096,
    };
    let (mut w, mut u, mut nx) = (true, true, false);
    for (depth, &(name, shift, count)) in levels.iter().enumerate() {
        let index = (lin >> shift) % count;
        let raw = if let (1, "PDPTE", Some(p)) = (s.mode, name, regs.pdptrs) {
            p[index as usize]
        } else {
            let at = table + index * esize;
            let r = if esize == 4 {
                mem.read_u32(at).map(u64::from)
            } else {
                mem.read_u64(at)
            };
            match r {
                Ok(v) => v,
                Err(_) => return RefResult::Outside(depth),
            }
        };
        if raw % 2 == 0 {
            return RefResult::NotPresent(depth);
        }
        let ps_bit = (raw >> 7) & 1 == 1;
        let is_leaf = name == "PTE"
            || (ps_bit
                && ((name == "PDE" && (s.mode != 0 || s.pse)) || (name == "PDPTE" && s.mode >= 2)));
        for bit in 0..64 {
            if (raw >> bit) & 1 == 1
                && ref_reserved(s.mode, name, is_leaf && name != "PTE", bit, m, s.nxe)
            {
                return RefResult::Reserved(depth);
            }
        }
        if !(s.mode == 1 && name == "PDPTE") {
            w &= (raw >> 1) & 1 == 1;
            u &= (raw >> 2) & 1 == 1;
            nx |= s.mode != 0 && s.nxe && raw >> 63 == 1;
        }
        let addr = if s.mode == 0 {
            raw % pow(32) / 4096 * 4096
        } else {
            raw % pow(m) / 4096 * 4096
        };
        if is_leaf {
            let size = pow(shift);
            let base = if s.mode == 0 && name == "PDE" {
                (raw & 0xffc0_0000) + (((raw >> 13) & 0xff) << 32)
            } else {
                addr / size * size
            };
            return RefResult::Page {
                phys: base + lin % size,
                size,
                w,
                u,
                nx,
            };
        }
        table = addr;
    }
    unreachable!()
}

/// SDM 4.6, read literally.
fn ref_allowed(s: &Setup, w: bool, u: bool, nx: bool, kind: u8, user: bool, ac: bool) -> bool {
    let (read, write, fetch) = (kind == 0, kind == 1, kind == 2);
    if user {
        if !u {
            return false;
        }
        if write && !w {
            return false;
        }
        return !(fetch && nx);
    }
    if fetch {
        // no XD anywhere, and SMEP does not forbid user pages
        return !(nx || (s.smep && u));
    }
    let smap_blocks = s.smap && u && !ac;
    if read {
        return !smap_blocks;
    }
    // writes also need W when CR0.WP is set
    !(smap_blocks || (s.wp && !w))
}

fn access_of(kind: u8, user: bool, ac: bool) -> Access {
    match kind {
        0 => Access::read(user),
        1 => Access::write(user),
        _ => Access::fetch(user),
    }
    .with_eflags_ac(ac)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn walker_matches_reference(s in setup()) {
        let mut rng = Rng(s.seed);
        let (mem, regs) = random_tables(&s, &mut rng);
        for _ in 0..200 {
            let lin = random_linear(&s, &mut rng);
            let want = reference(&mem, &s, &regs, lin);
            let got = walk(&mem, &regs, lin);
            match (&want, &got) {
                (RefResult::Page { phys, size, w, u, nx }, Ok(walk)) => {
                    let t = walk.translation;
                    prop_assert_eq!((t.phys, t.page_size.bytes()), (*phys, *size));
                    prop_assert_eq!(
                        (t.rights.contains(Rights::WRITE), t.rights.contains(Rights::USER), t.rights.contains(Rights::NO_EXEC)),
                        (*w, *u, *nx)
                    );
                    let kind = rng.below(3) as u8;
                    let user = rng.chance(50);
                    let ac = rng.chance(50);
                    let acc = access_of(kind, user, ac);
                    let allowed = ref_allowed(&s, *w, *u, *nx, kind, user, ac);
                    let checked = translate(&mem, &regs, lin, acc);
                    prop_assert_eq!(checked.is_ok(), allowed, "{:?} {:?}", acc, t.rights);
                    if let Err(e) = checked {
                        let pf = e.page_fault(acc, &regs).unwrap();
                        prop_assert!(pf.code.contains(PageFaultCode::PRESENT));
                        prop_assert_eq!(pf.code.contains(PageFaultCode::WRITE), kind == 1);
                        prop_assert_eq!(pf.code.contains(PageFaultCode::USER), user);
                    }
                }
                (RefResult::NotPresent(d), Err(WalkError::NotPresent { trace, .. })) => {
                    prop_assert_eq!(trace.len(), d + 1);
                }
                (RefResult::Reserved(d), Err(WalkError::ReservedBits { trace, .. })) => {
                    prop_assert_eq!(trace.len(), d + 1);
                }
                (RefResult::Outside(d), Err(WalkError::TableOutsideRam { trace, .. })) => {
                    prop_assert_eq!(trace.len(), *d);
                }
                (RefResult::NonCanonical, Err(WalkError::NonCanonical { .. })) => {}
                _ => prop_assert!(false, "lin {:#x}: reference {:?}, walker {:?}", lin, want, got),
            }
        }
    }

    #[test]
    fn enumeration_agrees_with_walker(s in setup()) {
        let mut rng = Rng(s.seed);
        let (mem, regs) = random_tables(&s, &mut rng);
        let opts = EnumOptions { budget: 20_000, ..Default::default() };
        let mut n = 0;
        let mut it = tables::leaves(&mem, &regs, opts);
        for item in &mut it {
            let Ok(leaf) = item else { continue };
            n += 1;
            if n % 7 != 0 {
                continue; // check a sample, keep the test fast
            }
            let t = walk(&mem, &regs, leaf.linear).unwrap().translation;
            prop_assert_eq!((t.phys, t.page_size, t.rights), (leaf.phys, leaf.size, leaf.rights));
        }
        prop_assert!(it.visited() <= 20_000);
    }

    #[test]
    fn random_bytes_never_panic(seed in any::<u64>(), mode in 0u8..4, long in any::<bool>(), limit in any::<u16>()) {
        let mut rng = Rng(seed);
        let mut bytes = vec![0u8; 64 * 1024];
        for b in bytes.chunks_mut(8) {
            b.copy_from_slice(&rng.next().to_le_bytes()[..b.len()]);
        }
        let mem = VecMemory::from_bytes(0, bytes);
        let s = Setup { seed, mode, nxe: long, pse: true, wp: true, smep: false, smap: false, maxphy: 46, use_pdptrs: false };
        let mut regs = random_tables(&s, &mut Rng(seed)).1;
        regs.cr3 = rng.below(16) << 12;
        let e = tables::enumerate(&mem, &regs, EnumOptions { budget: 50_000, ..Default::default() }, true);
        prop_assert!(e.visited <= 50_000);
        for _ in 0..100 {
            let lin = random_linear(&s, &mut rng);
            let _ = walk(&mem, &regs, lin);
        }
        let lm = PagedMemory::new(&mem, ControlRegs::new(0x11, 0, 0, 0));
        let base = rng.below(0x10000);
        let tr = TableRegister { base, limit };
        for kind in [TableKind::Gdt, TableKind::Ldt, TableKind::Idt] {
            let n = tables::DescriptorTable::new(&lm, kind, tr.base, limit as u64, long).count();
            prop_assert!(n <= 8193);
            for item in tables::DescriptorTable::new(&lm, kind, tr.base, limit as u64, long).flatten() {
                let _ = item.to_string();
            }
        }
    }
}
