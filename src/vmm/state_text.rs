//! A vCPU's registers as text, for the messages printed when a run ends badly.

use std::fmt;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

/// Registers as KVM reports them at one moment.
pub(crate) struct CpuStateText<'a> {
    pub(crate) regs: &'a kvm_regs,
    pub(crate) sregs: &'a kvm_sregs,
}

fn segment(f: &mut fmt::Formatter<'_>, name: &str, seg: &kvm_segment) -> fmt::Result {
    writeln!(
        f,
        "  {name}={:04x} base={:016x} limit={:08x} type={:x} s={} dpl={} p={} db={} l={} g={}{}",
        seg.selector,
        seg.base,
        seg.limit,
        seg.type_,
        seg.s,
        seg.dpl,
        seg.present,
        seg.db,
        seg.l,
        seg.g,
        if seg.unusable != 0 { " unusable" } else { "" }
    )
}

impl fmt::Display for CpuStateText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.regs;
        let s = self.sregs;
        writeln!(
            f,
            "  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}",
            r.rax, r.rbx, r.rcx, r.rdx
        )?;
        writeln!(
            f,
            "  rsi={:016x} rdi={:016x} rbp={:016x} rsp={:016x}",
            r.rsi, r.rdi, r.rbp, r.rsp
        )?;
        writeln!(
            f,
            "  r8 ={:016x} r9 ={:016x} r10={:016x} r11={:016x}",
            r.r8, r.r9, r.r10, r.r11
        )?;
        writeln!(
            f,
            "  r12={:016x} r13={:016x} r14={:016x} r15={:016x}",
            r.r12, r.r13, r.r14, r.r15
        )?;
        writeln!(f, "  rip={:016x} rflags={:08x}", r.rip, r.rflags)?;
        for (name, seg) in [
            ("cs", &s.cs),
            ("ds", &s.ds),
            ("es", &s.es),
            ("fs", &s.fs),
            ("gs", &s.gs),
            ("ss", &s.ss),
            ("tr", &s.tr),
            ("ldt", &s.ldt),
        ] {
            segment(f, name, seg)?;
        }
        writeln!(
            f,
            "  gdt={:016x}/{:04x} idt={:016x}/{:04x}",
            s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit
        )?;
        write!(
            f,
            "  cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}",
            s.cr0, s.cr2, s.cr3, s.cr4, s.efer
        )
    }
}
