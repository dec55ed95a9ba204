//! What a debugger asks of a vCPU: KVM's debug settings (single step, DR0-3 and DR7, #BP exits)
//! and what the run loop checks its exits against (planted breakpoints, watched ranges, mode
//! changes), given as one [`DebugState`]; and what a debug exit reports.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_debug_exit_arch, kvm_guest_debug};

/// Guest-physical address → the guest's byte under a debugger's 0xCC. Shared between the
/// debugger and every vCPU: a guest write to a planted byte updates the map and keeps the 0xCC.
pub(crate) type PlantedBytes = Arc<Mutex<BTreeMap<u64, u8>>>;

/// Everything a debugger asks of one vCPU for its next runs (`Vcpu::set_debug_state`).
#[derive(Debug, Clone, Default)]
pub struct DebugState {
    /// What KVM is told (KVM_SET_GUEST_DEBUG).
    pub config: DebugConfig,
    /// Linear addresses where the debugger planted int3: those stop instead of being
    /// completed into the guest.
    pub planted_breakpoints: HashSet<u64>,
    /// Guest-physical ranges (start, length) under a write watchpoint; their pages are
    /// read-only slots, so writes to them come back as MMIO exits.
    pub watched: Vec<(u64, u64)>,
    /// The debugger's planted 0xCC bytes (their pages are read-only while it runs).
    pub planted_bytes: PlantedBytes,
    /// `catch mode`: report a mode change at the first exit in a new mode.
    pub catch_mode: bool,
    /// The exception trace without gdb: IDTR (base, limit) as last read; report
    /// [`VcpuEvent::IdtChanged`](crate::vmm::vcpu::VcpuEvent::IdtChanged) at the first exit where
    /// it differs (`lidt` does not exit), so the trace reads the new IDT.
    pub watch_idtr: Option<(u64, u16)>,
}

/// What a debugger asks of KVM for this vCPU (KVM_SET_GUEST_DEBUG).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugConfig {
    /// Exit after one instruction.
    pub single_step: bool,
    /// Take no interrupts while stepping, so a step never lands in a timer handler.
    pub block_irq: bool,
    /// Exit on `int3` (hardware KVM reports #BP as KVM_EXIT_DEBUG).
    pub sw_breakpoints: bool,
    /// DR0-3: execution breakpoints or data watchpoints, by linear address.
    pub hw_breakpoints: [Option<DebugSlot>; 4],
}

/// What one debug register watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugSlot {
    pub(crate) addr: u64,
    pub(crate) kind: SlotKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Execute,
    /// Data writes of a 1-, 2-, 4- or 8-byte aligned range.
    Write(u8),
    /// Data reads or writes (x86 has no read-only kind).
    Access(u8),
}

impl DebugSlot {
    /// A hardware breakpoint at linear address `addr`.
    pub fn execute(addr: u64) -> Self {
        DebugSlot {
            addr,
            kind: SlotKind::Execute,
        }
    }

    /// DR7's RW and LEN fields for this slot.
    fn rw_len(&self) -> u64 {
        let len_bits = |len: u8| match len {
            1 => 0b00,
            2 => 0b01,
            8 => 0b10,
            _ => 0b11,
        };
        match self.kind {
            SlotKind::Execute => 0,
            SlotKind::Write(len) => 0b01 | (len_bits(len) << 2),
            SlotKind::Access(len) => 0b11 | (len_bits(len) << 2),
        }
    }
}

impl DebugConfig {
    /// True when KVM needs no debug exits at all.
    pub(crate) fn is_idle(&self) -> bool {
        *self == DebugConfig::default()
    }

    fn control(&self) -> u32 {
        use kvm_bindings::{
            KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
            KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
        };
        if self.is_idle() {
            return 0;
        }
        let mut control = KVM_GUESTDBG_ENABLE;
        if self.single_step {
            control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if self.block_irq {
            control |= KVM_GUESTDBG_BLOCKIRQ;
        }
        if self.sw_breakpoints {
            control |= KVM_GUESTDBG_USE_SW_BP;
        }
        if self.hw_breakpoints.iter().any(Option::is_some) {
            control |= KVM_GUESTDBG_USE_HW_BP;
        }
        control
    }

    /// DR7 enabling each used slot locally (Ln) with its RW/LEN fields.
    pub(crate) fn dr7(&self) -> u64 {
        self.hw_breakpoints
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.map(|slot| (i, slot)))
            .fold(0, |dr7, (i, slot)| {
                dr7 | (1 << (2 * i)) | (slot.rw_len() << (16 + 4 * i))
            })
    }

    /// KVM_SET_GUEST_DEBUG's argument, with `extra_control` flags (a one-off such as
    /// KVM_GUESTDBG_INJECT_BP).
    pub(crate) fn to_kvm(self, extra_control: u32) -> kvm_guest_debug {
        let mut debug = kvm_guest_debug {
            control: self.control() | extra_control,
            ..Default::default()
        };
        for (i, slot) in self.hw_breakpoints.iter().enumerate() {
            debug.arch.debugreg[i] = slot.map_or(0, |slot| slot.addr);
        }
        debug.arch.debugreg[7] = self.dr7();
        debug
    }
}

/// A KVM_EXIT_DEBUG: the exception, where, and the debug status and control registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugInfo {
    pub(crate) exception: u32,
    /// Linear address of the stop.
    pub pc: u64,
    pub(crate) dr6: u64,
    pub(crate) dr7: u64,
}

impl From<kvm_debug_exit_arch> for DebugInfo {
    fn from(arch: kvm_debug_exit_arch) -> Self {
        DebugInfo {
            exception: arch.exception,
            pc: arch.pc,
            dr6: arch.dr6,
            dr7: arch.dr7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_config_sets_control_and_dr7() {
        use kvm_bindings::*;
        assert_eq!(DebugConfig::default().control(), 0);
        let config = DebugConfig {
            single_step: true,
            block_irq: true,
            sw_breakpoints: true,
            hw_breakpoints: [
                Some(DebugSlot::execute(0x1000)),
                None,
                Some(DebugSlot::execute(0x2000)),
                Some(DebugSlot {
                    addr: 0x3000,
                    kind: SlotKind::Write(4),
                }),
            ],
        };
        assert_eq!(
            config.control(),
            KVM_GUESTDBG_ENABLE
                | KVM_GUESTDBG_SINGLESTEP
                | KVM_GUESTDBG_BLOCKIRQ
                | KVM_GUESTDBG_USE_SW_BP
                | KVM_GUESTDBG_USE_HW_BP
        );
        // L0, L2, L3; slot 3: RW=01 (write), LEN=11 (4 bytes) at bits 28-31.
        assert_eq!(config.dr7(), 0b0101_0001 | (0b1101 << 28));
        let access8 = DebugSlot {
            addr: 0,
            kind: SlotKind::Access(8),
        };
        assert_eq!(access8.rw_len(), 0b1011);
        let kvm = config.to_kvm(KVM_GUESTDBG_INJECT_BP);
        assert_eq!(kvm.control, config.control() | KVM_GUESTDBG_INJECT_BP);
        assert_eq!(
            kvm.arch.debugreg,
            [0x1000, 0, 0x2000, 0x3000, 0, 0, 0, config.dr7()]
        );
    }
}
