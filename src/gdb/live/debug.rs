//! gdb's breakpoints and watchpoints on a live VM: as gdb set them, and as the last resume
//! applied them (which debug register serves what, which steps run to a register). A debug
//! exit is read back against the latter.

use std::collections::HashMap;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind;

use super::breakpoints::{Applied, Breakpoints, DEBUG_REGISTERS};
use super::watchpoints::Watchpoints;
use crate::vmm::memory::GuestRam;
use crate::vmm::vcpu::{DebugInfo, DebugSlot, SlotKind};

/// A read or access watchpoint held in a debug register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataWatch {
    pub(crate) addr: u64,
    pub(crate) len: u8,
    pub(crate) kind: WatchKind,
}

impl DataWatch {
    pub(crate) fn slot(&self) -> DebugSlot {
        DebugSlot {
            addr: self.addr,
            // x86 has no read-only data breakpoint: `rwatch` watches accesses too.
            kind: SlotKind::Access(self.len),
        }
    }
}

/// Breakpoint and watch bookkeeping.
#[derive(Default)]
pub(crate) struct DebugState {
    pub(crate) breakpoints: Breakpoints,
    /// `watch`: write watchpoints on read-only pages.
    pub(crate) watchpoints: Watchpoints,
    /// `rwatch`/`awatch` in debug registers (hosts whose KVM fires DR7 data breakpoints).
    pub(crate) data_watches: Vec<DataWatch>,
    /// How the last resume applied the breakpoints.
    pub(crate) applied: Applied,
    /// vCPUs whose step runs to a debug register (over `hlt` or an interrupt instruction), and
    /// the address that ends it.
    pub(crate) step_into: HashMap<u8, u64>,
    /// `monitor catch mode on`: stop when a vCPU's CPU or paging mode changes.
    pub(crate) catch_mode: bool,
}

impl DebugState {
    /// The debug registers execution breakpoints may use (data watchpoints hold the others).
    pub(crate) fn exec_registers(&self) -> usize {
        DEBUG_REGISTERS - self.data_watches.len()
    }

    /// Whether every debug register is taken by a user `hbreak`, `rwatch` or `awatch`.
    pub(crate) fn registers_full(&self) -> bool {
        self.breakpoints.hardware.len() + self.data_watches.len() >= DEBUG_REGISTERS
    }

    /// DR0-3 for a resume: execution slots first (`applied`), then the data watchpoints.
    pub(crate) fn slots(&self, applied: &Applied) -> [Option<DebugSlot>; 4] {
        let mut hw = [None; 4];
        let slots = applied
            .debug_registers
            .iter()
            .map(|&addr| DebugSlot::execute(addr))
            .chain(self.data_watches.iter().map(DataWatch::slot));
        for (register, slot) in hw.iter_mut().zip(slots) {
            *register = Some(slot);
        }
        hw
    }

    /// The DR7 data watchpoint whose slot DR6 reports as hit.
    fn data_watch_hit(&self, dr6: u64) -> Option<DataWatch> {
        let first = self.applied.debug_registers.len();
        (0..4usize)
            .filter(|slot| dr6 & (1 << slot) != 0)
            .find_map(|slot| {
                slot.checked_sub(first)
                    .and_then(|i| self.data_watches.get(i))
            })
            .copied()
    }

    /// What vCPU `id`'s debug exit means to gdb (thread `tid`).
    pub(crate) fn debug_stop(
        &self,
        id: u8,
        tid: Tid,
        info: &DebugInfo,
    ) -> MultiThreadStopReason<u64> {
        let trap = MultiThreadStopReason::SignalWithThread {
            tid,
            signal: Signal::SIGTRAP,
        };
        if self.step_into.get(&id) == Some(&info.pc) {
            // A step run to a debug register got there.
            return trap;
        }
        if let Some(watch) = self.data_watch_hit(info.dr6) {
            return MultiThreadStopReason::Watch {
                tid,
                kind: watch.kind,
                addr: watch.addr,
            };
        }
        let hit = (0..4).find(|slot| info.dr6 & (1 << slot) != 0);
        match hit.and_then(|slot| self.applied.slot(slot, &self.breakpoints)) {
            Some((_, true)) => MultiThreadStopReason::HwBreak(tid),
            Some((_, false)) => MultiThreadStopReason::SwBreak(tid),
            None if info.exception == 3 => MultiThreadStopReason::SwBreak(tid),
            None => trap,
        }
    }

    /// Forgets every breakpoint, watch and catch (detach or disconnect), taking our 0xCC bytes
    /// out of `ram`.
    pub(crate) fn forget(&mut self, ram: &GuestRam) {
        self.breakpoints.clear();
        self.breakpoints.unplant(ram);
        self.watchpoints.clear();
        self.data_watches.clear();
        self.catch_mode = false;
    }
}
