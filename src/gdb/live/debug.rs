//! gdb's breakpoints and watchpoints on a live VM: as gdb set them, and as the last resume
//! applied them (which debug register serves what, which steps run to a register). A debug
//! exit is read back against the latter.

use std::collections::HashMap;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind;

use super::breakpoints::{Applied, Breakpoints, DEBUG_REGISTERS};
use super::watchpoints::Watchpoints;
use crate::vmm::guest_debug::{DebugInfo, DebugSlot, SlotKind};
use crate::vmm::memory::GuestRam;

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
pub(crate) struct DebugBook {
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

impl DebugBook {
    /// Whether every debug register is taken by a user `hbreak`, `rwatch` or `awatch`.
    pub(crate) fn registers_full(&self) -> bool {
        self.breakpoints.hardware.len() + self.data_watches.len() >= DEBUG_REGISTERS
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

#[cfg(test)]
mod tests {
    use super::*;

    fn debug_exit(pc: u64, dr6: u64, exception: u32) -> DebugInfo {
        DebugInfo {
            exception,
            pc,
            dr6,
            dr7: 0,
        }
    }

    /// `hbreak 0x1000`, a software breakpoint at 0x2000 served by DR1, a step of vCPU 0 run to
    /// 0x3000 in DR2, and an `awatch` on 0x4000 in DR3.
    fn applied() -> DebugBook {
        let mut debug = DebugBook::default();
        debug.breakpoints.add_hardware(0x1000).unwrap();
        debug.breakpoints.add_software(0x2000, true).unwrap();
        debug.applied.debug_registers = vec![0x1000, 0x2000, 0x3000];
        debug.step_into.insert(0, 0x3000);
        debug.data_watches.push(DataWatch {
            addr: 0x4000,
            len: 4,
            kind: WatchKind::ReadWrite,
        });
        debug
    }

    #[test]
    fn a_debug_exit_is_read_back_against_the_registers_the_resume_set() {
        let debug = applied();
        let tid = Tid::new(1).unwrap();
        let trap = MultiThreadStopReason::SignalWithThread {
            tid,
            signal: Signal::SIGTRAP,
        };
        assert_eq!(
            debug.debug_stop(0, tid, &debug_exit(0x3000, 1 << 2, 1)),
            trap
        );
        assert_eq!(
            debug.debug_stop(0, tid, &debug_exit(0x1000, 1 << 0, 1)),
            MultiThreadStopReason::HwBreak(tid)
        );
        assert_eq!(
            debug.debug_stop(0, tid, &debug_exit(0x2000, 1 << 1, 1)),
            MultiThreadStopReason::SwBreak(tid)
        );
        assert_eq!(
            debug.debug_stop(0, tid, &debug_exit(0x5000, 1 << 3, 1)),
            MultiThreadStopReason::Watch {
                tid,
                kind: WatchKind::ReadWrite,
                addr: 0x4000
            }
        );
        assert_eq!(
            debug.debug_stop(1, tid, &debug_exit(0x6000, 0, 3)),
            MultiThreadStopReason::SwBreak(tid),
            "an int3 exit with no slot hit is a planted breakpoint"
        );
        assert_eq!(
            debug.debug_stop(1, tid, &debug_exit(0x6000, 1 << 14, 1)),
            trap,
            "a single step"
        );
    }

    #[test]
    fn registers_are_full_when_hbreaks_and_data_watches_take_all_four() {
        let mut debug = applied();
        assert!(
            !debug.registers_full(),
            "software breakpoints and steps do not count"
        );
        for addr in [0x5000, 0x6000, 0x7000] {
            debug.data_watches.push(DataWatch {
                addr,
                len: 8,
                kind: WatchKind::ReadWrite,
            });
        }
        assert!(debug.registers_full());
    }
}
