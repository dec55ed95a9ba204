//! Steps a single step gets wrong, run to a debug register instead:
//! - `hlt`: the step ends after it. Only an interrupt ends a `hlt`: its handler runs whole, and
//!   the step never lands in it.
//! - `int3`, `int1` or `int n`: the step ends at the handler's first instruction, as on a CPU
//!   with TF set. The handler's entry is found in the IVT/IDT by our own decoders, because the
//!   instruction itself may be completed by the VMM (a software-nested KVM cannot) and KVM's
//!   single step would then report a later instruction.
//! - `iret`: the step ends where it returns to. A software-nested KVM's single step over an
//!   `iret` that pops TF clear runs one instruction further.

use crate::snapshot::CpuSnapshot;
use crate::vmm::emulation_failure::SoftInterrupt;
use crate::vmm::memory::GuestRam;
use crate::vmm::progress::stack_top;
use crate::vmm::vcpu::from_kvm_segment;
use crate::x86::cpu::CpuMode;
use crate::x86::insn::DecodedInsn;
use crate::x86::paging::{LinearMemory, PagedMemory};
use crate::x86::segment::{
    cache_from_tables, Descriptor, SegmentSelector, SystemType, TableRegister,
};

/// Where a step of the vCPU in `snapshot` must end when a single step would get it wrong;
/// `None` when a single step is right (or the tables name no handler).
pub(crate) fn step_target(ram: &GuestRam, snapshot: &CpuSnapshot) -> Option<u64> {
    const HLT: u8 = 0xF4;
    let mut insn = [0u8; 2];
    let (read, _) =
        PagedMemory::new(ram, snapshot.control_regs()).read_prefix(snapshot.pc(), &mut insn);
    let insn = &insn[..read];
    if insn.first() == Some(&HLT) {
        return Some(snapshot.pc() + 1);
    }
    if let Some(soft) = SoftInterrupt::decode(insn) {
        if let Some(handler) = handler_entry(ram, snapshot, soft.vector()) {
            return Some(handler);
        }
    }
    iret_return(ram, snapshot, insn)
}

/// Linear address of the first instruction of the handler for `vector`, if the tables name one.
pub(crate) fn handler_entry(ram: &GuestRam, snapshot: &CpuSnapshot, vector: u8) -> Option<u64> {
    let mem = PagedMemory::new(ram, snapshot.control_regs());
    let idt = snapshot.sregs.idt;
    let mode = snapshot.mode();
    if mode == CpuMode::Real {
        // The IVT: offset then segment, four bytes per vector.
        let mut entry = [0u8; 4];
        mem.read_linear(idt.base + u64::from(vector) * 4, &mut entry)
            .ok()?;
        let offset = u64::from(u16::from_le_bytes([entry[0], entry[1]]));
        let segment = u64::from(u16::from_le_bytes([entry[2], entry[3]]));
        return Some((segment << 4) + offset);
    }
    let long = matches!(mode, CpuMode::Long64 | CpuMode::Compatibility);
    let size: u64 = if long { 16 } else { 8 };
    let at = u64::from(vector) * size;
    if at + size - 1 > u64::from(idt.limit) {
        return None;
    }
    let mut entry = [0u8; 16];
    mem.read_linear(idt.base + at, &mut entry[..size as usize])
        .ok()?;
    let low = u64::from_le_bytes(entry[..8].try_into().ok()?);
    let high = u64::from_le_bytes(entry[8..].try_into().ok()?);
    let Descriptor::Gate(gate) = Descriptor::decode(low, high, long) else {
        return None;
    };
    if !gate.present || !gate.kind.is_gate() || gate.kind == SystemType::TaskGate {
        return None;
    }
    if long {
        return Some(gate.offset);
    }
    let gdtr = TableRegister {
        base: snapshot.sregs.gdt.base,
        limit: snapshot.sregs.gdt.limit,
    };
    let ldtr = from_kvm_segment(&snapshot.sregs.ldt);
    let code = cache_from_tables(&mem, gdtr, &ldtr, gate.selector, false).ok()??;
    Some(code.base.wrapping_add(gate.offset) & 0xffff_ffff)
}

/// Linear address an `iret` (the instruction `bytes` at the vCPU's pc) returns to: the IP and
/// CS it pops from the stack, CS resolved through the GDT/LDT outside real mode.
pub(crate) fn iret_return(ram: &GuestRam, snapshot: &CpuSnapshot, bytes: &[u8]) -> Option<u64> {
    let mode = snapshot.mode();
    let width = DecodedInsn::decode(bytes, snapshot.regs.rip, mode)?.iret_slot_bytes()?;
    let mem = PagedMemory::new(ram, snapshot.control_regs());
    let top = stack_top(&snapshot.regs, &snapshot.sregs);
    let mut frame = [0u8; 16];
    let frame = &mut frame[..2 * width as usize];
    mem.read_linear(top, frame).ok()?;
    let slot = |i: usize| {
        let mut raw = [0u8; 8];
        raw[..width as usize].copy_from_slice(&frame[i * width as usize..(i + 1) * width as usize]);
        u64::from_le_bytes(raw)
    };
    let (ip, selector) = (slot(0), slot(1) as u16);
    if matches!(mode, CpuMode::Real | CpuMode::Virtual8086) {
        return Some((u64::from(selector) << 4) + ip);
    }
    let gdtr = TableRegister {
        base: snapshot.sregs.gdt.base,
        limit: snapshot.sregs.gdt.limit,
    };
    let ldtr = from_kvm_segment(&snapshot.sregs.ldt);
    let code = cache_from_tables(&mem, gdtr, &ldtr, SegmentSelector(selector), false).ok()??;
    Some(if code.l {
        ip
    } else {
        code.base.wrapping_add(ip) & 0xffff_ffff
    })
}

#[cfg(test)]
mod tests {
    use kvm_bindings::KVM_MP_STATE_RUNNABLE;

    use super::*;
    use crate::snapshot::notes::blank_cpu;

    /// A real-mode vCPU at CS:IP = 0x0000:0x7c00 with SS:SP = 0x0000:0x6ff0, the IVT at 0.
    fn real_mode() -> CpuSnapshot {
        let mut cpu = blank_cpu(KVM_MP_STATE_RUNNABLE);
        cpu.regs.rip = 0x7c00;
        cpu.regs.rsp = 0x6ff0;
        cpu.regs.rflags = 0x2;
        cpu.sregs.idt.limit = 0x3ff;
        cpu
    }

    fn target_of(code: &[u8]) -> Option<u64> {
        let ram = GuestRam::new(2 << 20).unwrap();
        // Vector 0x10 → 0xf000:0x1234; the stack holds IP 0x0500, CS 0x0070.
        ram.write(0x10 * 4, &[0x34, 0x12, 0x00, 0xf0]).unwrap();
        ram.write(0x6ff0, &[0x00, 0x05, 0x70, 0x00]).unwrap();
        ram.write(0x7c00, code).unwrap();
        step_target(&ram, &real_mode())
    }

    #[test]
    fn a_step_over_hlt_ends_after_it() {
        assert_eq!(target_of(&[0xF4]), Some(0x7c01));
    }

    #[test]
    fn a_step_over_int_n_ends_at_the_handler() {
        assert_eq!(target_of(&[0xCD, 0x10]), Some(0xf1234));
    }

    #[test]
    fn a_step_over_iret_ends_where_it_returns() {
        assert_eq!(target_of(&[0xCF]), Some(0x700 + 0x500));
    }

    #[test]
    fn other_instructions_single_step() {
        assert_eq!(target_of(&[0x90]), None);
    }
}
