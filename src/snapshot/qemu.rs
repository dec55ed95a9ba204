//! QEMU's `dump-guest-memory` ELF files: one `QEMU` note (type 0, a `QEMUCPUState`) per vCPU,
//! after the NT_PRSTATUS notes.
//!
//! `QEMUCPUState` (QEMU's target/i386/arch_dump.c), all little-endian: `u32 version` (1), `u32
//! size`, then u64 rax rbx rcx rdx rsi rdi rsp rbp r8…r15 rip rflags, ten segments (cs ds es fs
//! gs ss ldt tr gdt idt), each `u32 selector, u32 limit, u32 flags, u32 pad, u64 base`, then
//! `u64 cr[5]` (cr0, cr1, cr2, cr3, cr4), and since QEMU 6.x `u64 kernel_gs_base` (present when
//! `size` covers it). `flags` is the descriptor's second doubleword as QEMU caches it (type in
//! bits 8-11, S 12, DPL 13-14, P 15, AVL 20, L 21, D/B 22, G 23); `limit` is in bytes.
//!
//! The note has no EFER and no PAE PDPTE registers: they are inferred (see [`infer`]) and the
//! snapshot says so.

use kvm_bindings::kvm_segment;

use super::cpu::CpuSnapshot;
use super::elf::{Fields, Note, EM_X86_64};
use super::error::SnapshotError;
use super::notes::blank_cpu;
use crate::x86::cpu::{Cr0Flags, Cr4Flags, EferFlags};
use crate::x86::paging::Rights;
use crate::x86::tables::{leaves, EnumOptions};
use crate::x86::PhysMemory;

pub(crate) const OWNER: &str = "QEMU";
/// Offsets in `QEMUCPUState`.
const SEGMENTS_AT: usize = 8 + 18 * 8;
const SEGMENT_SIZE: usize = 24;
const CR_AT: usize = SEGMENTS_AT + 10 * SEGMENT_SIZE;
const KERNEL_GS_BASE_AT: usize = CR_AT + 5 * 8;
const KVM_MP_STATE_RUNNABLE: u32 = 0;

/// The vCPUs of a QEMU dump, before inference; `None` when it has no QEMU notes.
pub(crate) fn read_cpus(notes: &[Note]) -> Result<Option<Vec<CpuSnapshot>>, SnapshotError> {
    let states: Vec<&Note> = notes
        .iter()
        .filter(|n| n.name == OWNER && n.kind == 0)
        .collect();
    if states.is_empty() {
        return Ok(None);
    }
    states
        .iter()
        .enumerate()
        .map(|(i, note)| cpu(i, &note.desc))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn cpu(index: usize, desc: &[u8]) -> Result<CpuSnapshot, SnapshotError> {
    if desc.len() < CR_AT + 40 {
        return Err(SnapshotError::Corrupt(format!(
            "QEMU CPU-state note {index} has {} bytes, at least {} expected",
            desc.len(),
            CR_AT + 40
        )));
    }
    let f = Fields(desc);
    let (version, size) = (f.u32(0), f.u32(4) as usize);
    if version != 1 {
        return Err(SnapshotError::Foreign(format!(
            "QEMU CPU-state note version {version} (this gdbvisor reads version 1)"
        )));
    }
    let mut cpu = blank_cpu(KVM_MP_STATE_RUNNABLE);
    let r = &mut cpu.regs;
    let g: Vec<u64> = (0..18).map(|i| f.u64(8 + 8 * i)).collect();
    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp) =
        (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
        (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    (r.rip, r.rflags) = (g[16], g[17]);
    let s = &mut cpu.sregs;
    let seg = |i: usize| segment(&f, SEGMENTS_AT + i * SEGMENT_SIZE);
    (s.cs, s.ds, s.es, s.fs, s.gs, s.ss, s.ldt, s.tr) = (
        seg(0),
        seg(1),
        seg(2),
        seg(3),
        seg(4),
        seg(5),
        seg(6),
        seg(7),
    );
    let table = |i: usize| {
        let at = SEGMENTS_AT + i * SEGMENT_SIZE;
        (f.u64(at + 16), f.u32(at + 4) as u16)
    };
    (s.gdt.base, s.gdt.limit) = table(8);
    (s.idt.base, s.idt.limit) = table(9);
    (s.cr0, s.cr2, s.cr3, s.cr4) = (
        f.u64(CR_AT),
        f.u64(CR_AT + 16),
        f.u64(CR_AT + 24),
        f.u64(CR_AT + 32),
    );
    if size >= KERNEL_GS_BASE_AT + 8 && desc.len() >= KERNEL_GS_BASE_AT + 8 {
        cpu.kernel_gs_base = f.u64(KERNEL_GS_BASE_AT);
    }
    // The x87/SSE state a fresh CPU has: QEMU's note holds none.
    cpu.fpu.fcw = 0x37f;
    cpu.fpu.mxcsr = 0x1f80;
    Ok(cpu)
}

/// A segment cache from QEMU's (selector, byte limit, descriptor flags, base).
fn segment(f: &Fields<'_>, at: usize) -> kvm_segment {
    let flags = f.u32(at + 8);
    let bit = |n: u32| ((flags >> n) & 1) as u8;
    let present = bit(15);
    kvm_segment {
        base: f.u64(at + 16),
        limit: f.u32(at + 4),
        selector: f.u32(at) as u16,
        type_: ((flags >> 8) & 0xf) as u8,
        present,
        dpl: ((flags >> 13) & 3) as u8,
        db: bit(22),
        s: bit(12),
        l: bit(21),
        g: bit(23),
        avl: bit(20),
        // KVM marks a not-present (null) segment unusable; QEMU keeps flags 0 for it.
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Fills in EFER and the PDPTE registers, which QEMU's note lacks, from CR0/CR4, the CS
/// descriptor, the ELF machine and the page tables; returns what was inferred, in words.
pub(crate) fn infer(cpu: &mut CpuSnapshot, machine: u16, mem: &impl PhysMemory) -> Vec<String> {
    let mut said = Vec::new();
    let cr0 = Cr0Flags::from_bits_truncate(cpu.sregs.cr0);
    let cr4 = Cr4Flags::from_bits_truncate(cpu.sregs.cr4);
    let paging = cr0.contains(Cr0Flags::PG);
    let pae = paging && cr4.contains(Cr4Flags::PAE);
    // QEMU writes EM_X86_64 exactly when the first CPU had long mode active (HF_LMA).
    let long_mode = pae && (machine == EM_X86_64 || cpu.sregs.cs.l != 0);
    if pae && !long_mode {
        let pdpt = cpu.sregs.cr3 & 0xffff_ffe0;
        let mut entries = [0u64; 4];
        let mut readable = true;
        for (i, e) in entries.iter_mut().enumerate() {
            match mem.read_u64(pdpt + 8 * i as u64) {
                // QEMU's own walk sets the accessed (and dirty) bit in the PDPT in memory,
                // bits the SDM reserves in the PDPTE registers: drop them.
                Ok(v) => *e = v & !0x60,
                Err(_) => readable = false,
            }
        }
        if readable {
            cpu.pdptrs = Some(entries);
            said.push(format!(
                "PDPTRs inferred: QEMU's notes have none; read from the PDPT at CR3 ({pdpt:#x}), accessed/dirty bits QEMU sets there cleared"
            ));
        } else {
            said.push(format!(
                "PDPTRs unknown: QEMU's notes have none and the PDPT at {pdpt:#x} is outside the dump"
            ));
        }
    }
    let mut efer = EferFlags::empty();
    if long_mode {
        efer |= EferFlags::LME | EferFlags::LMA;
    }
    // A guest sets XD (bit 63) in its entries only with NXE on: with NXE off the CPU faults on
    // them as reserved. So NXE is on when some entry has XD.
    let xd = pae && {
        cpu.sregs.efer = (efer | EferFlags::NXE).bits();
        let probe = cpu.control_regs();
        let options = EnumOptions {
            budget: XD_SCAN_BUDGET,
            ..EnumOptions::default()
        };
        leaves(mem, &probe, options)
            .filter_map(Result::ok)
            .any(|leaf| leaf.rights.contains(Rights::NO_EXEC))
    };
    if xd {
        efer |= EferFlags::NXE;
    }
    cpu.sregs.efer = efer.bits();
    said.push(format!(
        "EFER={:#x} inferred: QEMU's notes have no EFER ({}; {}; SCE unknown, taken as 0)",
        efer.bits(),
        if long_mode {
            "long mode active: CR0.PG, CR4.PAE and a 64-bit dump or CS.L, so LME and LMA"
        } else {
            "long mode not active"
        },
        match (pae, xd) {
            (false, _) => "no PAE paging, so no NXE",
            (true, true) => "NXE: page-table entries have XD set",
            (true, false) => "no NXE: no page-table entry has XD set",
        }
    ));
    said
}

/// Page-table entries examined when looking for XD bits.
const XD_SCAN_BUDGET: usize = 1 << 20;
