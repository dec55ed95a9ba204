//! gdbvisor's own CPU-state notes (owner name `GDBVISOR`), one group per vCPU, and the standard
//! `NT_PRSTATUS` note that lets other tools show the general registers.
//!
//! Every field is little-endian; the layouts are documented in README ("Snapshot file format").
//! A reader accepts a descriptor longer than it knows (fields appended later) and refuses a
//! shorter one.

use kvm_bindings::{kvm_debugregs, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

use super::cpu::CpuSnapshot;
use super::elf::{push_note, Fields, Note, NT_PRSTATUS};
use super::error::SnapshotError;

pub(crate) const OWNER: &str = "GDBVISOR";
/// The file's first note: format version, vCPU count.
pub(crate) const NT_GV_INFO: u32 = 0x100;
/// Starts a vCPU's group: its index and KVM_MP_STATE.
pub(crate) const NT_GV_CPU: u32 = 0x101;
pub(crate) const NT_GV_GENERAL: u32 = 0x102;
pub(crate) const NT_GV_SEGMENTS: u32 = 0x103;
pub(crate) const NT_GV_CONTROL: u32 = 0x104;
pub(crate) const NT_GV_DEBUG: u32 = 0x105;
pub(crate) const NT_GV_DTABLES: u32 = 0x106;
pub(crate) const NT_GV_PDPTRS: u32 = 0x107;
pub(crate) const NT_GV_FPU: u32 = 0x108;
pub(crate) const NT_GV_MSRS: u32 = 0x109;
/// The guest's MAXPHYADDR (CPUID.80000008H:EAX[7:0]); files without it predate it.
pub(crate) const NT_GV_MAXPHYADDR: u32 = 0x10a;

pub(crate) const FORMAT_VERSION: u32 = 1;
const SEGMENT_SIZE: usize = 24;

/// A little-endian writer.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64s(&mut self, values: &[u64]) -> &mut Self {
        for v in values {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    fn pad(&mut self, n: usize) -> &mut Self {
        self.0.extend(std::iter::repeat_n(0, n));
        self
    }
}

fn general(r: &kvm_regs) -> [u64; 18] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags,
    ]
}

fn segments(s: &kvm_sregs) -> [&kvm_segment; 8] {
    [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt]
}

fn segments_mut(s: &mut kvm_sregs) -> [&mut kvm_segment; 8] {
    [
        &mut s.cs, &mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss, &mut s.tr, &mut s.ldt,
    ]
}

/// Appends the notes of vCPU `id`: NT_PRSTATUS, then the GDBVISOR group.
pub(crate) fn push_cpu(buf: &mut Vec<u8>, id: u32, cpu: &CpuSnapshot) {
    push_note(buf, "CORE", NT_PRSTATUS, &prstatus(id, cpu));
    let (r, s) = (&cpu.regs, &cpu.sregs);
    push_note(
        buf,
        OWNER,
        NT_GV_CPU,
        &Out::default().u32(id).u32(cpu.mp_state).0,
    );
    push_note(
        buf,
        OWNER,
        NT_GV_GENERAL,
        &Out::default().u64s(&general(r)).0,
    );
    let mut seg = Out::default();
    for g in segments(s) {
        seg.u64s(&[g.base]).u32(g.limit).u16(g.selector);
        for b in [
            g.type_, g.present, g.dpl, g.db, g.s, g.l, g.g, g.avl, g.unusable,
        ] {
            seg.u8(b);
        }
        seg.pad(1);
    }
    push_note(buf, OWNER, NT_GV_SEGMENTS, &seg.0);
    let control = [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base];
    push_note(buf, OWNER, NT_GV_CONTROL, &Out::default().u64s(&control).0);
    let d = &cpu.debugregs;
    let debug = [d.db[0], d.db[1], d.db[2], d.db[3], d.dr6, d.dr7];
    push_note(buf, OWNER, NT_GV_DEBUG, &Out::default().u64s(&debug).0);
    let mut dt = Out::default();
    dt.u64s(&[s.gdt.base]).u16(s.gdt.limit).pad(6);
    dt.u64s(&[s.idt.base]).u16(s.idt.limit).pad(6);
    push_note(buf, OWNER, NT_GV_DTABLES, &dt.0);
    let (valid, pdptrs) = match cpu.pdptrs {
        Some(p) => (1, p),
        None => (0, [0; 4]),
    };
    push_note(
        buf,
        OWNER,
        NT_GV_PDPTRS,
        &Out::default().u64s(&[valid]).u64s(&pdptrs).0,
    );
    let f = &cpu.fpu;
    let mut fpu = Out::default();
    fpu.u16(f.fcw)
        .u16(f.fsw)
        .u8(f.ftwx)
        .pad(1)
        .u16(f.last_opcode);
    fpu.u64s(&[f.last_ip, f.last_dp]).u32(f.mxcsr).pad(4);
    for st in &f.fpr {
        fpu.0.extend_from_slice(st);
    }
    for xmm in &f.xmm {
        fpu.0.extend_from_slice(xmm);
    }
    push_note(buf, OWNER, NT_GV_FPU, &fpu.0);
    push_note(
        buf,
        OWNER,
        NT_GV_MSRS,
        &Out::default().u64s(&[cpu.kernel_gs_base]).0,
    );
    push_note(
        buf,
        OWNER,
        NT_GV_MAXPHYADDR,
        &Out::default().u32(u32::from(cpu.maxphyaddr)).0,
    );
}

/// Linux's x86-64 `struct elf_prstatus` (336 bytes): pid = vCPU index + 1 (gdb's thread
/// numbers), registers in `struct user_regs_struct` order.
fn prstatus(id: u32, cpu: &CpuSnapshot) -> Vec<u8> {
    let (r, s) = (&cpu.regs, &cpu.sregs);
    let mut out = Out::default();
    out.pad(32).u32(id + 1).pad(112 - 36);
    out.u64s(&[
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        u64::MAX,
        r.rip, // orig_rax: no system call
    ]);
    out.u64s(&[
        u64::from(s.cs.selector),
        r.rflags,
        r.rsp,
        u64::from(s.ss.selector),
    ]);
    out.u64s(&[s.fs.base, s.gs.base]);
    out.u64s(&[s.ds.selector, s.es.selector, s.fs.selector, s.gs.selector].map(u64::from));
    out.u32(0).pad(4);
    out.0
}

/// The descriptor of a GDBVISOR note, at least `len` bytes.
fn sized<'a>(
    note: &'a Note,
    cpu: u32,
    what: &str,
    len: usize,
) -> Result<Fields<'a>, SnapshotError> {
    if note.desc.len() < len {
        return Err(SnapshotError::Corrupt(format!(
            "vCPU {cpu}'s {what} note has {} bytes, {len} expected",
            note.desc.len()
        )));
    }
    Ok(Fields(&note.desc))
}

/// One vCPU as its GDBVISOR notes describe it; which notes were seen.
struct Building {
    id: u32,
    cpu: CpuSnapshot,
    seen: u32,
}

/// Rebuilds the vCPUs from the GDBVISOR notes; `None` when the file has none.
pub(crate) fn read_cpus(notes: &[Note]) -> Result<Option<Vec<CpuSnapshot>>, SnapshotError> {
    let ours: Vec<&Note> = notes.iter().filter(|n| n.name == OWNER).collect();
    let Some(info) = ours.first() else {
        return Ok(None);
    };
    if info.kind != NT_GV_INFO || info.desc.len() < 8 {
        return Err(SnapshotError::Corrupt(
            "the first GDBVISOR note is not the 8-byte format note".into(),
        ));
    }
    let version = Fields(&info.desc).u32(0);
    let count = Fields(&info.desc).u32(4);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Foreign(format!(
            "gdbvisor snapshot format {version}; this gdbvisor reads format {FORMAT_VERSION}"
        )));
    }
    let mut cpus: Vec<Building> = Vec::new();
    for note in &ours[1..] {
        if note.kind == NT_GV_CPU {
            let f = sized(note, cpus.len() as u32, "CPU", 8)?;
            cpus.push(Building {
                id: f.u32(0),
                cpu: blank_cpu(f.u32(4)),
                seen: 0,
            });
            continue;
        }
        let Some(b) = cpus.last_mut() else {
            return Err(SnapshotError::Corrupt(format!(
                "GDBVISOR note type {:#x} before any vCPU note",
                note.kind
            )));
        };
        let id = b.id;
        let (r, s) = (&mut b.cpu.regs, &mut b.cpu.sregs);
        match note.kind {
            NT_GV_GENERAL => {
                let f = sized(note, id, "general-register", 144)?;
                let v: Vec<u64> = (0..18).map(|i| f.u64(8 * i)).collect();
                for (dst, src) in [
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
                ]
                .into_iter()
                .zip(v)
                {
                    *dst = src;
                }
            }
            NT_GV_SEGMENTS => {
                let f = sized(note, id, "segment-register", 8 * SEGMENT_SIZE)?;
                for (i, g) in segments_mut(s).into_iter().enumerate() {
                    let at = i * SEGMENT_SIZE;
                    g.base = f.u64(at);
                    g.limit = f.u32(at + 8);
                    g.selector = f.u16(at + 12);
                    let b = &f.0[at + 14..at + 23];
                    (
                        g.type_, g.present, g.dpl, g.db, g.s, g.l, g.g, g.avl, g.unusable,
                    ) = (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]);
                }
            }
            NT_GV_CONTROL => {
                let f = sized(note, id, "control-register", 56)?;
                (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base) = (
                    f.u64(0),
                    f.u64(8),
                    f.u64(16),
                    f.u64(24),
                    f.u64(32),
                    f.u64(40),
                    f.u64(48),
                );
            }
            NT_GV_DEBUG => {
                let f = sized(note, id, "debug-register", 48)?;
                let d = &mut b.cpu.debugregs;
                for i in 0..4 {
                    d.db[i] = f.u64(8 * i);
                }
                (d.dr6, d.dr7) = (f.u64(32), f.u64(40));
            }
            NT_GV_DTABLES => {
                let f = sized(note, id, "descriptor-table register", 32)?;
                (s.gdt.base, s.gdt.limit) = (f.u64(0), f.u16(8));
                (s.idt.base, s.idt.limit) = (f.u64(16), f.u16(24));
            }
            NT_GV_PDPTRS => {
                let f = sized(note, id, "PDPTR", 40)?;
                b.cpu.pdptrs = (f.u64(0) != 0).then(|| [f.u64(8), f.u64(16), f.u64(24), f.u64(32)]);
            }
            NT_GV_FPU => {
                let f = sized(note, id, "FPU", 416)?;
                let fpu = &mut b.cpu.fpu;
                (fpu.fcw, fpu.fsw, fpu.ftwx, fpu.last_opcode) =
                    (f.u16(0), f.u16(2), f.0[4], f.u16(6));
                (fpu.last_ip, fpu.last_dp, fpu.mxcsr) = (f.u64(8), f.u64(16), f.u32(24));
                for (i, st) in fpu.fpr.iter_mut().enumerate() {
                    st.copy_from_slice(&f.0[32 + 16 * i..48 + 16 * i]);
                }
                for (i, xmm) in fpu.xmm.iter_mut().enumerate() {
                    xmm.copy_from_slice(&f.0[160 + 16 * i..176 + 16 * i]);
                }
            }
            NT_GV_MSRS => b.cpu.kernel_gs_base = sized(note, id, "MSR", 8)?.u64(0),
            NT_GV_MAXPHYADDR => {
                let bits = sized(note, id, "MAXPHYADDR", 4)?.u32(0);
                b.cpu.maxphyaddr = u8::try_from(bits)
                    .ok()
                    .filter(|b| (32..=52).contains(b))
                    .ok_or_else(|| {
                        SnapshotError::Corrupt(format!(
                            "vCPU {id}'s MAXPHYADDR note says {bits}; x86 has 32 to 52"
                        ))
                    })?;
            }
            // A newer writer's note this reader does not know: skipped.
            _ => continue,
        }
        b.seen |= 1 << (note.kind - NT_GV_CPU);
    }
    if cpus.len() != count as usize {
        return Err(SnapshotError::Corrupt(format!(
            "the format note announces {count} vCPUs, the file describes {}",
            cpus.len()
        )));
    }
    let required = [
        (NT_GV_GENERAL, "general-register"),
        (NT_GV_SEGMENTS, "segment-register"),
        (NT_GV_CONTROL, "control-register"),
        (NT_GV_DTABLES, "descriptor-table register"),
    ];
    for (i, b) in cpus.iter().enumerate() {
        if b.id as usize != i {
            return Err(SnapshotError::Corrupt(format!(
                "vCPU notes out of order: vCPU {} where {i} was expected",
                b.id
            )));
        }
        for (kind, what) in required {
            if b.seen & (1 << (kind - NT_GV_CPU)) == 0 {
                return Err(SnapshotError::Corrupt(format!(
                    "vCPU {i} has no {what} note"
                )));
            }
        }
    }
    if cpus.is_empty() {
        return Err(SnapshotError::Corrupt("the snapshot has no vCPU".into()));
    }
    Ok(Some(cpus.into_iter().map(|b| b.cpu).collect()))
}

/// Whether the GDBVISOR notes record the guest's MAXPHYADDR (files written before they did
/// not: their vCPUs keep [`super::cpu::ASSUMED_MAXPHYADDR`]).
pub(crate) fn records_maxphyaddr(notes: &[Note]) -> bool {
    notes
        .iter()
        .any(|n| n.name == OWNER && n.kind == NT_GV_MAXPHYADDR)
}

/// A vCPU with every register zero, before its notes fill it in.
pub fn blank_cpu(mp_state: u32) -> CpuSnapshot {
    CpuSnapshot {
        regs: kvm_regs::default(),
        sregs: kvm_sregs::default(),
        fpu: kvm_fpu::default(),
        debugregs: kvm_debugregs::default(),
        kernel_gs_base: 0,
        mp_state,
        pdptrs: None,
        complete: true,
        maxphyaddr: super::cpu::ASSUMED_MAXPHYADDR,
    }
}

/// The file-level format note.
pub(crate) fn push_info(buf: &mut Vec<u8>, vcpus: u32) {
    push_note(
        buf,
        OWNER,
        NT_GV_INFO,
        &Out::default().u32(FORMAT_VERSION).u32(vcpus).0,
    );
}
