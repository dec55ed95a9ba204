//! The progress guarantee: a page a debugger made read-only (a breakpoint's or a watch's) never
//! keeps a vCPU from finishing an instruction, and never stops it for a write the CPU makes by
//! itself.
//!
//! What this host's KVM (KVM-PVM) does with writes into a read-only memory slot, measured:
//! an instruction's own writes (`mov`, `xchg`, `lock cmpxchg`, `push`, `call`, `rep movs` one
//! exit per element, `movaps`) and the TSS busy bit of `ltr` leave KVM_RUN as MMIO exits with
//! the instruction complete; a descriptor's Accessed bit set by a segment load is retried for
//! ever with no exit (a single step returns with RIP unchanged); page-table Accessed/Dirty
//! updates are dropped; an exception or interrupt frame pushed onto a protected stack page ends
//! in a triple fault. Hardware KVM is expected to report the CPU's own writes as MMIO exits too
//! (unverified here).
//!
//! So a vCPU with protected pages is watched: at each kick (the event loop's every 50 ms) its
//! registers are compared with the last kick's ([`ProgressSampler`]); one that has not moved
//! and is on a segment load, or has not moved for [`STALL_SAMPLES`] kicks on anything but a
//! wait, runs that one instruction with protection lifted; so does a triple fault while pages
//! are protected, and a single step that did not move. An interrupt's frame cannot be retried
//! (its delivery is lost with the triple fault), so while one could land on a protected page
//! ([`frame_stacks`]) interrupts wait and are taken in lifted windows every
//! [`IRQ_WINDOW_PERIOD`]. Writes that turn out to be the CPU's own — an Accessed or busy bit in
//! a descriptor table, a page-table A/D bit — never stop the guest at a watchpoint, as a debug
//! register would not fire on them either.

use std::time::Duration;

use iced_x86::Register;
use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::vmm::memory::GuestRam;
use crate::x86::cpu::{ControlRegs, Cr0Flags, EferFlags};
use crate::x86::insn::DecodedInsn;
use crate::x86::paging::PagedMemory;
use crate::x86::tables::{Tss32, Tss64};

pub(crate) use crate::x86::paging::physical_pieces;

/// Kicks without progress after which any instruction but a wait counts as stuck (at 50 ms a
/// kick, 200 ms: a loop that reads memory and re-samples on the same instruction four times in
/// a row is rare enough, and a wrong guess costs only one instruction run unprotected).
pub(crate) const STALL_SAMPLES: u32 = 4;

/// How often a vCPU whose interrupt frames could land on a protected page opens an interrupt
/// window (a lifted step that lets a pending interrupt in): a 100 Hz timer's tick waits at
/// most this long.
pub(crate) const IRQ_WINDOW_PERIOD: Duration = Duration::from_millis(2);

/// How many stack slots above RSP may lie below a frame's return address: an error code and
/// what a handler's first instructions pushed.
pub(crate) const FRAME_SEARCH_SLOTS: usize = 4;

/// The stack bytes an interrupt or exception frame may take below a stack top: SS, RSP,
/// RFLAGS, CS, RIP and an error code, after long mode aligns RSP down to 16.
pub(crate) const FRAME_BYTES: u64 = 64;

/// The linear address SS:RSP names for the code running now: RSP in 64-bit code, else SS's
/// base plus ESP or SP (by SS's B bit), within 4 GiB.
pub(crate) fn stack_top(regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    let long_mode = sregs.efer & EferFlags::LMA.bits() != 0;
    if long_mode && sregs.cs.l != 0 {
        return regs.rsp;
    }
    let sp = if sregs.ss.db != 0 {
        regs.rsp & 0xffff_ffff
    } else {
        regs.rsp & 0xffff
    };
    sregs.ss.base.wrapping_add(sp) & 0xffff_ffff
}

/// Linear stack tops an interrupt frame may be pushed below: the current stack, and the
/// stacks the TSS switches to (RSP0-2 and IST1-7 in long mode, ESP0-2 in a 32-bit TSS), read
/// through the vCPU's `control` registers.
pub(crate) fn frame_stacks(
    ram: &GuestRam,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    control: ControlRegs,
) -> Vec<u64> {
    // In long mode an event is delivered on RSP whatever the interrupted code's mode.
    let long_mode = control.efer.contains(EferFlags::LMA);
    let current = if long_mode {
        regs.rsp
    } else {
        stack_top(regs, sregs)
    };
    let mut tops = vec![current];
    let tss_loaded = sregs.tr.present != 0 && sregs.tr.unusable == 0;
    if tss_loaded && control.cr0.contains(Cr0Flags::PE) {
        let mem = PagedMemory::new(ram, control);
        if long_mode {
            if let Ok(tss) = Tss64::read(&mem, sregs.tr.base) {
                tops.extend(tss.rsp.iter().chain(&tss.ist).filter(|&&sp| sp != 0));
            }
        } else if let Ok(tss) = Tss32::read(&mem, sregs.tr.base) {
            tops.extend(
                tss.stacks
                    .iter()
                    .map(|&(sp, _)| u64::from(sp))
                    .filter(|&sp| sp != 0),
            );
        }
    }
    tops
}

/// Where the saved RFLAGS sits in an interrupt frame near the top of `frame` (the stack in
/// the handler, `width`-byte slots): two slots above the saved return address, which is
/// `return_ip` (the instruction the event interrupted) followed by a selector-sized CS. Below
/// it may lie an error code and what the handler's first instruction pushed (a single step
/// across an exception ends after that instruction). `None` when no slot fits.
pub(crate) fn saved_flags_offset(frame: &[u8], width: usize, return_ip: u64) -> Option<usize> {
    let slot = |i: usize| -> Option<u64> {
        let bytes = frame.get(i * width..(i + 1) * width)?;
        let mut raw = [0u8; 8];
        raw[..width].copy_from_slice(bytes);
        Some(u64::from_le_bytes(raw))
    };
    let mask = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    (0..FRAME_SEARCH_SLOTS)
        .find(|&i| {
            slot(i) == Some(return_ip & mask)
                && slot(i + 1).is_some_and(|cs| cs <= 0xffff)
                && slot(i + 2).is_some()
        })
        .map(|i| (i + 2) * width)
}

/// The registers at the last kick and how many kicks in a row saw them unchanged.
#[derive(Debug, Default)]
pub(crate) struct ProgressSampler {
    last: Option<(kvm_regs, u64)>,
    unchanged: u32,
}

impl ProgressSampler {
    /// Records this kick's registers and exit count; returns how many kicks in a row (this
    /// one included) saw neither change, 0 when something moved.
    pub(crate) fn sample(&mut self, regs: &kvm_regs, exits: u64) -> u32 {
        let same = self
            .last
            .as_ref()
            .is_some_and(|(last, last_exits)| last == regs && *last_exits == exits);
        self.unchanged = if same { self.unchanged + 1 } else { 0 };
        self.last = Some((*regs, exits));
        self.unchanged
    }
}

/// Whether a vCPU that sat on `insn` (`None`: not decodable) for `unchanged` kicks is stuck
/// rather than waiting on purpose.
pub(crate) fn is_stalled(insn: Option<&DecodedInsn>, unchanged: u32) -> bool {
    match insn {
        Some(insn) if insn.jumps_to_itself() || insn.waits() => false,
        Some(insn) if insn.loads_segment() => true,
        _ => unchanged >= STALL_SAMPLES,
    }
}

/// The first guest change in a watched range (`phys`, `old` → `new`), as (phys, len) spanning
/// the changed bytes. Changes the CPU makes by itself do not count: a descriptor's Accessed
/// (bit 40) or busy (bit 41) bit inside `tables` (guest-physical GDT/LDT pieces), and the
/// Accessed/Dirty bits of a present page-table entry (a whole aligned 8-byte entry in range).
pub(crate) fn guest_change(
    phys: u64,
    old: &[u8],
    new: &[u8],
    tables: &[(u64, u64)],
) -> Option<(u64, usize)> {
    const ACCESSED_OR_BUSY: u8 = 0b11;
    let descriptor_bit = |at: u64, was: u8, now: u8| {
        let in_table =
            |&(start, len): &(u64, u64)| at >= start && at < start + len && (at - start) % 8 == 5;
        was & !now == 0 && (now & !was) & !ACCESSED_OR_BUSY == 0 && tables.iter().any(in_table)
    };
    let entry_status_bits = |at: u64| {
        let entry = at & !7;
        let offset = entry.checked_sub(phys)? as usize;
        let (was, now) = (old.get(offset..offset + 8)?, new.get(offset..offset + 8)?);
        Some(pte_status_bits_only(was, now))
    };
    let changed: Vec<u64> = old
        .iter()
        .zip(new)
        .enumerate()
        .map(|(i, (&was, &now))| (phys + i as u64, was, now))
        .filter(|&(at, was, now)| {
            was != now && !descriptor_bit(at, was, now) && entry_status_bits(at) != Some(true)
        })
        .map(|(at, _, _)| at)
        .collect();
    let (first, last) = (*changed.first()?, *changed.last()?);
    Some((first, (last - first + 1) as usize))
}

/// A present page-table entry (4 or 8 bytes) whose change only sets Accessed and Dirty.
fn pte_status_bits_only(old: &[u8], new: &[u8]) -> bool {
    const PRESENT: u64 = 1;
    const ACCESSED_DIRTY: u64 = 0x60;
    if !matches!(old.len(), 4 | 8) || old.len() != new.len() {
        return false;
    }
    let entry = |bytes: &[u8]| {
        let mut raw = [0u8; 8];
        raw[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(raw)
    };
    let (was, now) = (entry(old), entry(new));
    was & PRESENT != 0 && was & !now == 0 && (now & !was) & !ACCESSED_DIRTY == 0
}

/// Whether `old` → `new`, written at `phys`, only sets bits the CPU sets by itself: a
/// descriptor's Accessed or busy bit inside `tables`, or a present page-table entry's
/// Accessed/Dirty bits (a whole aligned 4- or 8-byte entry written).
pub(crate) fn only_status_bits(phys: u64, old: &[u8], new: &[u8], tables: &[(u64, u64)]) -> bool {
    if old == new || old.len() != new.len() {
        return false;
    }
    guest_change(phys, old, new, tables).is_none()
        || (phys.is_multiple_of(old.len() as u64) && pte_status_bits_only(old, new))
}

/// A write to a watched range that left KVM as MMIO (`old` → `new` at `phys`) is the CPU's
/// own when it only sets status bits ([`only_status_bits`]) and the instruction at RIP names
/// no memory operand that maps onto it (`to_phys` translates a linear range as this vCPU sees
/// it). Hardware KVM reports the CPU's own writes this way with RIP at the instruction; this
/// host's KVM reports instruction writes with RIP already past it, so the bits decide there.
/// An instruction that cannot be decoded does not clear the write.
#[allow(clippy::too_many_arguments)]
pub(crate) fn is_cpu_made(
    insn: Option<&DecodedInsn>,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    to_phys: impl Fn(u64, u64) -> Vec<(u64, u64)>,
    phys: u64,
    old: &[u8],
    new: &[u8],
    tables: &[(u64, u64)],
) -> bool {
    if !only_status_bits(phys, old, new, tables) {
        return false;
    }
    let len = new.len() as u64;
    let Some(writes) = insn.and_then(|i| i.explicit_writes(|reg| register_value(regs, sregs, reg)))
    else {
        return false;
    };
    let overlaps = |(start, size): (u64, u64)| start < phys + len && phys < start + size;
    !writes
        .iter()
        .flat_map(|w| to_phys(w.linear, w.len))
        .any(overlaps)
}

/// A register's value as iced-x86 names it; a segment register gives its base.
fn register_value(regs: &kvm_regs, sregs: &kvm_sregs, reg: Register) -> u64 {
    let full = match reg.full_register() {
        Register::RAX => regs.rax,
        Register::RBX => regs.rbx,
        Register::RCX => regs.rcx,
        Register::RDX => regs.rdx,
        Register::RSI => regs.rsi,
        Register::RDI => regs.rdi,
        Register::RSP => regs.rsp,
        Register::RBP => regs.rbp,
        Register::R8 => regs.r8,
        Register::R9 => regs.r9,
        Register::R10 => regs.r10,
        Register::R11 => regs.r11,
        Register::R12 => regs.r12,
        Register::R13 => regs.r13,
        Register::R14 => regs.r14,
        Register::R15 => regs.r15,
        Register::RIP => regs.rip,
        Register::ES => sregs.es.base,
        Register::CS => sregs.cs.base,
        Register::SS => sregs.ss.base,
        Register::DS => sregs.ds.base,
        Register::FS => sregs.fs.base,
        Register::GS => sregs.gs.base,
        _ => 0,
    };
    match reg.size() {
        1 if reg.is_gpr8()
            && matches!(
                reg,
                Register::AH | Register::BH | Register::CH | Register::DH
            ) =>
        {
            (full >> 8) & 0xff
        }
        1 => full & 0xff,
        2 if !reg.is_segment_register() => full & 0xffff,
        4 => full & 0xffff_ffff,
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::cpu::CpuMode;

    #[test]
    fn saved_flags_are_found_above_the_return_address() {
        let frame =
            |slots: &[u64]| -> Vec<u8> { slots.iter().flat_map(|s| s.to_le_bytes()).collect() };
        // 64-bit: RIP, CS, RFLAGS, RSP, SS.
        let plain = frame(&[0x1234, 0x08, 0x346, 0x7000, 0x10]);
        assert_eq!(saved_flags_offset(&plain, 8, 0x1234), Some(16));
        // With an error code below RIP.
        let with_code = frame(&[0x2, 0x1234, 0x08, 0x346, 0x7000, 0x10]);
        assert_eq!(saved_flags_offset(&with_code, 8, 0x1234), Some(24));
        assert_eq!(saved_flags_offset(&plain, 8, 0x9999), None);
        // After the handler's first instruction pushed a register.
        let pushed = frame(&[0xabcd, 0x2, 0x1234, 0x08, 0x346, 0x7000, 0x10]);
        assert_eq!(saved_flags_offset(&pushed, 8, 0x1234), Some(32));
        // 32-bit slots.
        let frame32: Vec<u8> = [0x1234u32, 0x08, 0x346]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(saved_flags_offset(&frame32, 4, 0x1234), Some(8));
    }

    #[test]
    fn sampler_counts_kicks_without_progress() {
        let mut sampler = ProgressSampler::default();
        let regs = kvm_regs {
            rip: 0x1000,
            ..Default::default()
        };
        assert_eq!(sampler.sample(&regs, 5), 0);
        assert_eq!(sampler.sample(&regs, 5), 1);
        assert_eq!(sampler.sample(&regs, 5), 2);
        assert_eq!(sampler.sample(&regs, 6), 0, "an exit is progress");
        let moved = kvm_regs {
            rip: 0x1002,
            ..regs
        };
        assert_eq!(sampler.sample(&moved, 6), 0);
    }

    #[test]
    fn stalls_are_told_from_waits() {
        let stalled = |bytes: &[u8], unchanged| {
            is_stalled(
                DecodedInsn::decode(bytes, 0x1000, CpuMode::Long64).as_ref(),
                unchanged,
            )
        };
        assert!(stalled(&[0x48, 0xCB], 1), "lretq");
        assert!(!stalled(&[0xEB, 0xFE], 99), "jmp $");
        assert!(!stalled(&[0xF3, 0x90], 99), "pause");
        assert!(!stalled(&[0x8B, 0x07], 1));
        assert!(stalled(&[0x8B, 0x07], STALL_SAMPLES));
        assert!(
            stalled(&[0x0F, 0xFF], STALL_SAMPLES),
            "undecodable: after enough kicks"
        );
    }

    #[test]
    fn accessed_bits_in_a_gdt_are_the_cpus() {
        // A GDT at 0x1000 (3 entries), a watched range over its second entry and a variable.
        let tables = [(0x1000, 0x18)];
        let old = [0xff, 0xff, 0, 0, 0, 0x9a, 0xaf, 0, 7, 0];
        let mut new = old;
        new[5] = 0x9b; // the CPU sets Accessed on 0x1008
        assert_eq!(guest_change(0x1008, &old, &new, &tables), None);
        new[8] = 8; // and the guest writes the variable after it
        assert_eq!(guest_change(0x1008, &old, &new, &tables), Some((0x1010, 1)));
        // The same bit outside a descriptor table is a guest write.
        assert_eq!(guest_change(0x5008, &old, &new, &tables), Some((0x500d, 4)));
        // Clearing it is the guest's doing.
        assert_eq!(guest_change(0x1008, &new, &old, &tables), Some((0x100d, 4)));
        // A watched page-table page: the walk's Accessed bit is the CPU's, a new frame is not.
        let pte = 0x20_0003u64.to_le_bytes();
        assert_eq!(
            guest_change(0x3008, &pte, &0x20_0023u64.to_le_bytes(), &[]),
            None
        );
        assert_eq!(
            guest_change(0x3008, &pte, &0x30_0003u64.to_le_bytes(), &[]),
            Some((0x300a, 1))
        );
    }

    /// The hardware-KVM path, with a synthetic MMIO exit: a PTE's Accessed bit set during a
    /// `mov eax, [rsi]` is the CPU's; the same bit set by `mov [rdi], rax`, or any other change
    /// to the entry, is the guest's.
    #[test]
    fn mmio_writes_are_judged_by_bits_and_instruction() {
        const PTE: u64 = 0x3008;
        let identity = |linear: u64, len: u64| vec![(linear, len)];
        let regs = kvm_regs {
            rsi: 0x20_0000,
            rdi: PTE,
            rcx: 4,
            ..Default::default()
        };
        let sregs = kvm_sregs::default();
        let old = 0x20_0003u64.to_le_bytes();
        let accessed = 0x20_0023u64.to_le_bytes();
        let remapped = 0x30_0003u64.to_le_bytes();
        let judge = |code: &[u8], regs: &kvm_regs, new: &[u8]| {
            let insn = DecodedInsn::decode(code, 0, CpuMode::Long64);
            is_cpu_made(insn.as_ref(), regs, &sregs, identity, PTE, &old, new, &[])
        };
        assert!(judge(&[0x8B, 0x06], &regs, &accessed)); //         mov eax, [rsi]
        assert!(
            !judge(&[0x8B, 0x06], &regs, &remapped),
            "not status bits only"
        );
        assert!(!judge(&[0x48, 0x89, 0x07], &regs, &accessed)); //  mov [rdi], rax
                                                                // rep stosq from 0x3000 with RCX=4 reaches the PTE at 0x3008.
        let from_below = kvm_regs {
            rdi: 0x3000,
            ..regs
        };
        assert!(!judge(&[0xF3, 0x48, 0xAB], &from_below, &accessed));
        // An undecodable instruction is taken for the writer.
        assert!(!judge(&[0x0F, 0xFF], &regs, &accessed));
        // A not-present entry never gets status bits from the CPU.
        assert!(!only_status_bits(PTE, &[0; 8], &0x20u64.to_le_bytes(), &[]));
        // The TSS busy bit `ltr` sets in the GDT.
        let tss = 0x0000_8900_0000_0067u64.to_le_bytes();
        let busy = 0x0000_8b00_0000_0067u64.to_le_bytes();
        assert!(only_status_bits(0x1018, &tss, &busy, &[(0x1000, 0x28)]));
    }
}
