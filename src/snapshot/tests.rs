//! The snapshot format without KVM: our notes round trip every field, a QEMU ELF32 dump (built
//! here byte by byte as QEMU's arch_dump.c lays it out) opens with EFER and PDPTRs inferred, and
//! the walker translates through it.

use kvm_bindings::kvm_segment;

use super::elf::{push_note, EM_386, ET_CORE, NT_PRSTATUS, PT_LOAD, PT_NOTE};
use super::notes::{blank_cpu, push_cpu, push_info, read_cpus, records_maxphyaddr};
use super::{elf, write, Origin, Snapshot};
use crate::x86::paging::{translate, Access};
use crate::x86::PhysMemory;

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gdbvisor-unit-{}-{name}", std::process::id()))
}

#[test]
fn our_notes_round_trip_every_field() {
    let mut cpu = blank_cpu(3);
    let mut n = 0u64;
    let mut next = || {
        n += 0x0101_0101_0101_0101;
        n
    };
    let r = &mut cpu.regs;
    for f in [
        &mut r.rax,
        &mut r.rbx,
        &mut r.rcx,
        &mut r.rdx,
        &mut r.rsi,
        &mut r.rdi,
        &mut r.rsp,
        &mut r.rbp,
        &mut r.r8,
        &mut r.r9,
        &mut r.r10,
        &mut r.r11,
        &mut r.r12,
        &mut r.r13,
        &mut r.r14,
        &mut r.r15,
        &mut r.rip,
        &mut r.rflags,
    ] {
        *f = next();
    }
    let s = &mut cpu.sregs;
    for (i, seg) in [
        &mut s.cs, &mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss, &mut s.tr, &mut s.ldt,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u8;
        *seg = kvm_segment {
            base: 0x1000 * u64::from(i) + 7,
            limit: 0xfff0 + u32::from(i),
            selector: 8 * u16::from(i) + 3,
            type_: i,
            present: 1,
            dpl: i & 3,
            db: i & 1,
            s: 1,
            l: (i >> 1) & 1,
            g: 1,
            avl: 1,
            unusable: i & 1,
            padding: 0,
        };
    }
    (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base) =
        (next(), next(), next(), next(), next(), next(), next());
    (s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit) = (next(), 0x27, next(), 0xfff);
    cpu.debugregs.db = [next(), next(), next(), next()];
    (cpu.debugregs.dr6, cpu.debugregs.dr7) = (next(), next());
    cpu.pdptrs = Some([next(), next(), next(), next()]);
    cpu.kernel_gs_base = next();
    cpu.maxphyaddr = 46;
    let f = &mut cpu.fpu;
    (
        f.fcw,
        f.fsw,
        f.ftwx,
        f.last_opcode,
        f.last_ip,
        f.last_dp,
        f.mxcsr,
    ) = (0x37f, 0x1234, 0x5a, 0x77, next(), next(), 0x1f80);
    for (i, st) in f.fpr.iter_mut().enumerate() {
        st.fill(i as u8 + 1);
    }
    for (i, x) in f.xmm.iter_mut().enumerate() {
        x.fill(0x80 + i as u8);
    }
    let mut bytes = Vec::new();
    push_info(&mut bytes, 1);
    push_cpu(&mut bytes, 0, &cpu);
    let mut notes = Vec::new();
    elf::tests_parse_notes(&bytes, &mut notes).unwrap();
    let back = read_cpus(&notes).unwrap().expect("our notes");
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(b.regs, cpu.regs);
    assert_eq!(b.sregs, cpu.sregs);
    assert_eq!(b.fpu, cpu.fpu);
    assert_eq!(b.debugregs.db, cpu.debugregs.db);
    assert_eq!(
        (b.debugregs.dr6, b.debugregs.dr7),
        (cpu.debugregs.dr6, cpu.debugregs.dr7)
    );
    assert_eq!(b.pdptrs, cpu.pdptrs);
    assert_eq!(b.kernel_gs_base, cpu.kernel_gs_base);
    assert_eq!(b.maxphyaddr, 46);
    assert!(records_maxphyaddr(&notes));
    assert_eq!(b.mp_state, 3);
    // NT_PRSTATUS carries the general registers where other tools look: rip at 112 + 16 * 8.
    let prstatus = notes.iter().find(|n| n.kind == NT_PRSTATUS).unwrap();
    assert_eq!(prstatus.desc.len(), 336);
    assert_eq!(elf::Fields(&prstatus.desc).u64(112 + 16 * 8), cpu.regs.rip);
}

/// `QEMUCPUState` for a 32-bit PAE guest: flat segments, CR3 → PDPT at 0x1000.
fn qemu_state() -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(1u32.to_le_bytes());
    d.extend(440u32.to_le_bytes());
    let gprs = [
        1, 2, 3, 4, 5, 6, 0x9000, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x1234, 0x46u64,
    ];
    for v in gprs {
        d.extend(v.to_le_bytes());
    }
    // cs ds es fs gs ss ldt tr gdt idt: selector, limit, flags, pad, base.
    let seg = |d: &mut Vec<u8>, sel: u32, limit: u32, flags: u32, base: u64| {
        for v in [sel, limit, flags, 0] {
            d.extend(v.to_le_bytes());
        }
        d.extend(base.to_le_bytes());
    };
    seg(&mut d, 0x08, 0xffff_ffff, 0x00cf_9a00, 0);
    for _ in 0..5 {
        seg(&mut d, 0x10, 0xffff_ffff, 0x00cf_9300, 0);
    }
    seg(&mut d, 0, 0xffff, 0x8200, 0);
    seg(&mut d, 0, 0xffff, 0x8b00, 0);
    seg(&mut d, 0, 0x27, 0, 0x5000);
    seg(&mut d, 0, 0x3ff, 0, 0);
    for cr in [0x8000_0011u64, 0, 0, 0x1000, 0x20] {
        d.extend(cr.to_le_bytes());
    }
    d.extend(0u64.to_le_bytes()); // kernel_gs_base
    d
}

/// An ELF32 core as QEMU writes it for an i386 guest under 4 GiB.
fn qemu_elf32(ram: &[u8]) -> Vec<u8> {
    let mut notes = Vec::new();
    push_note(&mut notes, "CORE", NT_PRSTATUS, &[0u8; 144]);
    push_note(&mut notes, "QEMU", 0, &qemu_state());
    let phoff = 52u32;
    let notes_at = phoff + 2 * 32;
    let ram_at = notes_at + notes.len() as u32;
    let mut f = Vec::new();
    f.extend(b"\x7fELF\x01\x01\x01\x00");
    f.extend([0u8; 8]);
    f.extend(ET_CORE.to_le_bytes());
    f.extend(EM_386.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    f.extend(0u32.to_le_bytes()); // entry
    f.extend(phoff.to_le_bytes());
    f.extend(0u32.to_le_bytes()); // shoff
    f.extend(0u32.to_le_bytes()); // flags
    for v in [52u16, 32, 2, 0, 0, 0] {
        f.extend(v.to_le_bytes());
    }
    let phdr = |f: &mut Vec<u8>, kind: u32, offset: u32, paddr: u32, size: u32| {
        for v in [kind, offset, paddr, paddr, size, size, 0, 0] {
            f.extend(v.to_le_bytes());
        }
    };
    phdr(&mut f, PT_NOTE, notes_at, 0, notes.len() as u32);
    phdr(&mut f, PT_LOAD, ram_at, 0, ram.len() as u32);
    f.extend(notes);
    f.extend(ram);
    f
}

#[test]
fn qemu_elf32_dump_opens_with_inferred_efer_and_pdptrs() {
    let mut ram = vec![0u8; 2 << 20];
    let put = |ram: &mut [u8], at: usize, v: u64| ram[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // PDPTE 0 → PD at 0x2000, with the accessed bit QEMU's walk leaves in memory.
    put(&mut ram, 0x1000, 0x2000 | 0x20 | 1);
    // PDE 0: a 2 MiB page at 0, no-execute.
    put(&mut ram, 0x2000, 0x8000_0000_0000_0083);
    ram[0x1234] = 0xab;
    let path = temp("qemu32.core");
    std::fs::write(&path, qemu_elf32(&ram)).unwrap();
    let s = Snapshot::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.origin, Origin::Qemu { elf64: false });
    let cpu = &s.cpus[0];
    assert_eq!(
        (cpu.regs.rip, cpu.regs.rsp, cpu.regs.rflags),
        (0x1234, 0x9000, 0x46)
    );
    assert_eq!(
        (
            cpu.sregs.cs.selector,
            cpu.sregs.cs.type_,
            cpu.sregs.cs.db,
            cpu.sregs.cs.g
        ),
        (8, 0xa, 1, 1)
    );
    assert_eq!((cpu.sregs.gdt.base, cpu.sregs.gdt.limit), (0x5000, 0x27));
    assert_eq!(cpu.sregs.ldt.unusable, 0);
    assert_eq!(cpu.sregs.efer, 0x800, "NXE only: {:#x}", cpu.sregs.efer);
    assert_eq!(cpu.pdptrs, Some([0x2001, 0, 0, 0]));
    assert!(s.inferred.iter().any(|l| l.contains("PDPTRs inferred")));
    let t = translate(&*s.ram, &cpu.control_regs(), 0x1234, Access::DEBUGGER).unwrap();
    assert_eq!(t.phys, 0x1234);
    let mut b = [0u8; 1];
    s.ram.read_phys(t.phys, &mut b).unwrap();
    assert_eq!(b[0], 0xab);
    assert!(s.ram.read_phys(2 << 20, &mut b).is_err(), "past the dump");
}

#[test]
fn maxphyaddr_note_outside_32_to_52_is_corrupt_and_missing_means_40() {
    for (bits, ok) in [
        (32u32, true),
        (52, true),
        (31, false),
        (53, false),
        (0x130, false),
    ] {
        let mut cpu = blank_cpu(0);
        cpu.maxphyaddr = 40;
        let mut bytes = Vec::new();
        push_info(&mut bytes, 1);
        push_cpu(&mut bytes, 0, &cpu);
        // The MAXPHYADDR note ends the group: its descriptor is the last 4 bytes.
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&bits.to_le_bytes());
        let mut notes = Vec::new();
        elf::tests_parse_notes(&bytes, &mut notes).unwrap();
        match read_cpus(&notes) {
            Ok(Some(cpus)) if ok => assert_eq!(u32::from(cpus[0].maxphyaddr), bits),
            Err(e) if !ok => assert!(
                e.to_string()
                    .contains(&format!("MAXPHYADDR note says {bits}; x86 has 32 to 52")),
                "{e}"
            ),
            other => panic!("{bits}: {:?}", other.map(|c| c.map(|c| c.len()))),
        }
    }
    assert_eq!(blank_cpu(0).maxphyaddr, super::cpu::ASSUMED_MAXPHYADDR);
    assert_eq!(super::cpu::ASSUMED_MAXPHYADDR, 40);
}

#[test]
fn qemu_dump_gets_maxphyaddr_40_and_says_so_unless_given() {
    let mut ram = vec![0u8; 2 << 20];
    ram[0x1000..0x1008].copy_from_slice(&0x2001u64.to_le_bytes());
    let path = temp("qemu32-maxphy.core");
    std::fs::write(&path, qemu_elf32(&ram)).unwrap();
    let s = Snapshot::open(&path).unwrap();
    assert_eq!(s.cpus[0].maxphyaddr, 40);
    assert_eq!(s.cpus[0].control_regs().maxphyaddr, 40);
    let said: Vec<&String> = s
        .inferred
        .iter()
        .filter(|l| l.contains("MAXPHYADDR"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", s.inferred);
    assert!(said[0].starts_with("MAXPHYADDR=40 assumed (QEMU's default phys-bits)"));
    let s = Snapshot::open_with(&path, Some(36)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.cpus[0].control_regs().maxphyaddr, 36);
    assert!(!s.inferred.iter().any(|l| l.contains("MAXPHYADDR")));
}

#[test]
fn zero_pages_are_found_at_any_alignment() {
    let mut page = vec![0u8; 4099];
    assert!(write::is_zero(&page[1..4097]));
    page[4098] = 1;
    assert!(!write::is_zero(&page[3..]));
    assert!(write::is_zero(&page[..4098]));
}

#[test]
fn other_qemu_formats_and_paging_dumps_say_what_to_do() {
    let path = temp("kdump.core");
    std::fs::write(&path, b"KDUMP   \x06\x00\x00\x00 and the rest").unwrap();
    let e = Snapshot::open(&path).err().expect("refused").to_string();
    assert!(
        e.contains("kdump-compressed") && e.contains("without -z/-l/-s/-w"),
        "{e}"
    );
    // Two PT_LOADs over the same physical page, as `dump-guest-memory -p` writes for aliases.
    let mut core = qemu_elf32(&[0u8; 0x2000]);
    let phdrs = 52 + 32;
    let second: Vec<u8> = core[phdrs..phdrs + 32].to_vec();
    core.splice(phdrs + 32..phdrs + 32, second);
    core[44..46].copy_from_slice(&3u16.to_le_bytes());
    // The notes moved by 32 bytes: so did their offset.
    let notes_at = u32::from_le_bytes(core[52 + 4..52 + 8].try_into().unwrap()) + 32;
    core[52 + 4..52 + 8].copy_from_slice(&notes_at.to_le_bytes());
    for at in [phdrs + 4, phdrs + 36] {
        let off = u32::from_le_bytes(core[at..at + 4].try_into().unwrap()) + 32;
        core[at..at + 4].copy_from_slice(&off.to_le_bytes());
    }
    std::fs::write(&path, &core).unwrap();
    let e = Snapshot::open(&path).err().expect("refused").to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        e.contains("overlap at guest-physical 0x0") && e.contains("without -p"),
        "{e}"
    );
}
