//! A vCPU's state as gdb's register file, and a register write from gdb back to KVM's.
//!
//! gdb addresses are linear in every mode: `$pc` is CS.base + EIP outside 64-bit mode (so in real
//! mode it is CS·16 + IP), and writing `$pc` keeps CS and sets the offset.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::snapshot::cpu::CpuSnapshot;
use crate::x86::cpu::RFlags;

impl From<&CpuSnapshot> for RegisterFile {
    fn from(cpu: &CpuSnapshot) -> RegisterFile {
        let r = &cpu.regs;
        let s = &cpu.sregs;
        let f = &cpu.fpu;
        let mut st = [[0u8; 10]; 8];
        for (dst, src) in st.iter_mut().zip(f.fpr.iter()) {
            dst.copy_from_slice(&src[..10]);
        }
        let mut xmm = [0u128; 16];
        for (dst, src) in xmm.iter_mut().zip(f.xmm.iter()) {
            *dst = u128::from_le_bytes(*src);
        }
        RegisterFile {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: cpu.pc(),
            eflags: r.rflags,
            cs: u64::from(s.cs.selector),
            ss: u64::from(s.ss.selector),
            ds: u64::from(s.ds.selector),
            es: u64::from(s.es.selector),
            fs: u64::from(s.fs.selector),
            gs: u64::from(s.gs.selector),
            fs_base: s.fs.base,
            gs_base: s.gs.base,
            k_gs_base: cpu.kernel_gs_base,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: s.cr8,
            efer: s.efer,
            st,
            fctrl: u32::from(f.fcw),
            fstat: u32::from(f.fsw),
            ftag: u32::from(f.ftwx),
            fiseg: 0,
            fioff: f.last_ip as u32,
            foseg: 0,
            fooff: f.last_dp as u32,
            fop: u32::from(f.last_opcode),
            xmm,
            mxcsr: f.mxcsr,
            gdtr_base: s.gdt.base,
            gdtr_limit: u64::from(s.gdt.limit),
            idtr_base: s.idt.base,
            idtr_limit: u64::from(s.idt.limit),
            ldtr: u64::from(s.ldt.selector),
            tr: u64::from(s.tr.selector),
            dr0: cpu.debugregs.db[0],
            dr1: cpu.debugregs.db[1],
            dr2: cpu.debugregs.db[2],
            dr3: cpu.debugregs.db[3],
            dr6: cpu.debugregs.dr6,
            dr7: cpu.debugregs.dr7,
        }
    }
}

/// What a register write asks of KVM; fields gdb cannot change (segment selectors, descriptor
/// table registers) are left as they are.
pub(crate) fn apply_file(
    snapshot: &CpuSnapshot,
    file: &RegisterFile,
    layout: RegLayout,
) -> Result<(kvm_regs, kvm_sregs, kvm_fpu), &'static str> {
    let mut regs = snapshot.regs;
    let wide = layout == RegLayout::X86_64;
    // In 16/32-bit layouts gdb holds only the low halves; keep the upper halves KVM has.
    let merge = |old: u64, new: u64| {
        if wide {
            new
        } else {
            (old & !0xffff_ffff) | (new & 0xffff_ffff)
        }
    };
    regs.rax = merge(regs.rax, file.rax);
    regs.rbx = merge(regs.rbx, file.rbx);
    regs.rcx = merge(regs.rcx, file.rcx);
    regs.rdx = merge(regs.rdx, file.rdx);
    regs.rsi = merge(regs.rsi, file.rsi);
    regs.rdi = merge(regs.rdi, file.rdi);
    regs.rbp = merge(regs.rbp, file.rbp);
    regs.rsp = merge(regs.rsp, file.rsp);
    if wide {
        regs.r8 = file.r8;
        regs.r9 = file.r9;
        regs.r10 = file.r10;
        regs.r11 = file.r11;
        regs.r12 = file.r12;
        regs.r13 = file.r13;
        regs.r14 = file.r14;
        regs.r15 = file.r15;
    }
    regs.rflags = merge(regs.rflags, file.eflags) | RFlags::RESERVED_1.bits();
    if file.rip != snapshot.pc() {
        regs.rip = if layout == RegLayout::X86_64 && snapshot.sregs.cs.l != 0 {
            file.rip
        } else {
            let offset = file.rip.wrapping_sub(snapshot.sregs.cs.base) & 0xffff_ffff;
            let limit = if layout == RegLayout::I8086 {
                0xffff
            } else {
                0xffff_ffff
            };
            if file.rip < snapshot.sregs.cs.base || offset > limit {
                return Err(
                    "the new $pc is outside the code segment (CS is kept; only the offset changes)",
                );
            }
            offset
        };
    }
    let mut sregs = snapshot.sregs;
    sregs.cr0 = file.cr0;
    sregs.cr2 = file.cr2;
    sregs.cr3 = file.cr3;
    sregs.cr4 = file.cr4;
    sregs.cr8 = file.cr8;
    sregs.efer = file.efer;
    if wide {
        sregs.fs.base = file.fs_base;
        sregs.gs.base = file.gs_base;
    }
    let mut fpu = snapshot.fpu;
    for (dst, src) in fpu.fpr.iter_mut().zip(file.st.iter()) {
        dst[..10].copy_from_slice(src);
    }
    fpu.fcw = file.fctrl as u16;
    fpu.fsw = file.fstat as u16;
    fpu.ftwx = file.ftag as u8;
    fpu.mxcsr = file.mxcsr;
    let xmm_count = if wide { 16 } else { 8 };
    for (dst, src) in fpu.xmm.iter_mut().zip(file.xmm.iter()).take(xmm_count) {
        *dst = src.to_le_bytes();
    }
    Ok((regs, sregs, fpu))
}
