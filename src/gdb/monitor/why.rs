//! `why`: why the vCPU stopped or would fault next — the instruction at CS:RIP, its accesses
//! through segmentation and the page walk, the first fault, and each step of delivering it
//! through IDT, GDT, TSS and stack until a handler runs or the CPU shuts down. The text is
//! `x86::why`'s; the same lines follow a triple fault on stderr.

use super::host::Lines;
use super::view::View;
use crate::snapshot::CpuSnapshot;
use crate::vmm::vcpu::from_kvm_segment;
use crate::x86::delivery::CpuState;
use crate::x86::why::{explain, StoppedCpu};
use crate::x86::{PhysMemory, TableRegister};

pub(crate) fn why(v: &View) -> Lines {
    Ok(explain_snapshot(&v.snap, &*v.ram))
}

/// The explanation of `snap` with guest memory `ram`, one line per step.
pub(crate) fn explain_snapshot<M: PhysMemory + ?Sized>(snap: &CpuSnapshot, ram: &M) -> Vec<String> {
    explain(ram, &stopped_cpu(snap))
}

/// The explanation of `snap` on stderr, one `gdbvisor: why: ` line per step: what follows a
/// triple fault, or each vCPU of a snapshot opened without gdb.
pub(crate) fn print_explanation<M: PhysMemory + ?Sized>(snap: &CpuSnapshot, ram: &M) {
    for line in explain_snapshot(snap, ram) {
        eprintln!("gdbvisor: why: {line}");
    }
}

/// The model's view of a snapshot's registers.
fn stopped_cpu(snap: &CpuSnapshot) -> StoppedCpu {
    let (r, s) = (&snap.regs, &snap.sregs);
    let table = |t: &kvm_bindings::kvm_dtable| TableRegister {
        base: t.base,
        limit: t.limit,
    };
    StoppedCpu {
        state: CpuState {
            regs: snap.control_regs(),
            rflags: r.rflags,
            rip: r.rip,
            rsp: r.rsp,
            segments: [&s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs].map(from_kvm_segment),
            gdtr: table(&s.gdt),
            idtr: table(&s.idt),
            ldtr: from_kvm_segment(&s.ldt),
            tr: from_kvm_segment(&s.tr),
        },
        gprs: [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ],
        cr2: Some(s.cr2),
    }
}
