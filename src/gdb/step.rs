//! Stepping an `int3`, `int1` or `int n`: the step ends at the handler's first instruction, as
//! on a CPU with TF set. The handler's entry is found in the IVT/IDT by our own decoders and
//! caught with a debug register, because the instruction itself may be completed by the VMM
//! (a software-nested KVM cannot) and KVM's single step would then report a later instruction.

use crate::gdb::regs::CpuSnapshot;
use crate::vmm::memory::GuestRam;
use crate::vmm::vcpu::from_kvm_segment;
use crate::x86::cpu::CpuMode;
use crate::x86::paging::{LinearMemory, PagedMemory};
use crate::x86::segment::{cache_from_tables, Descriptor, SystemType, TableRegister};

/// Linear address of the first instruction of the handler for `vector`, if the tables name one.
pub fn handler_entry(ram: &GuestRam, snapshot: &CpuSnapshot, vector: u8) -> Option<u64> {
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
