//! The stub's own breakpoint model, applied to the guest only while it runs.
//!
//! Software breakpoints are kept by linear address and re-resolved before every resume: each is
//! planted as 0xCC at whatever physical address the running vCPUs map it to, and removed again at
//! every stop — so gdb never reads our 0xCC, a guest that rewrote the code gets its new byte
//! kept, and a remapped page moves the breakpoint. Which breakpoint waits in a debug register
//! instead is the resume's plan ([`super::plan`]).

use std::collections::BTreeSet;

use thiserror::Error;

use crate::vmm::guest_debug::PlantedBytes;
use crate::vmm::memory::GuestRam;
use crate::x86::cpu::ControlRegs;
use crate::x86::paging::{translate, Access};

pub(crate) const DEBUG_REGISTERS: usize = 4;
const INT3: u8 = 0xCC;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum BreakpointError {
    #[error("all {DEBUG_REGISTERS} debug registers are in use")]
    NoDebugRegister,
}

#[derive(Debug, Default)]
pub(crate) struct Breakpoints {
    /// `break`: linear addresses.
    pub(crate) software: BTreeSet<u64>,
    /// `hbreak`: linear addresses, each owning a debug register.
    pub(crate) hardware: Vec<u64>,
    /// Every 0xCC we wrote and the guest's byte under it, shared with the vCPUs: the pages
    /// holding them are read-only while the guest runs, and a guest write there updates the
    /// byte under the 0xCC instead of erasing the breakpoint (a boot loader copying code).
    pub(crate) planted: PlantedBytes,
}

/// A `break` and the guest-physical RAM addresses the vCPUs about to run map it to (none: not
/// mapped yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoftwareBreakpoint {
    pub(crate) addr: u64,
    pub(crate) targets: BTreeSet<u64>,
    pub(crate) owner: Owner,
}

/// Whose a software breakpoint is: gdb's `break`, or the exception trace's (at a handler
/// entry), which gdb never sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Gdb,
    Trace,
}

/// How the breakpoints are applied for one resume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// DR0-3 contents: hardware breakpoints first, then software ones served by a register.
    pub(crate) debug_registers: Vec<u64>,
}

impl Applied {
    /// Which breakpoint DR slot `slot` serves, if any: (address, is it a user `hbreak`).
    pub(crate) fn slot(&self, slot: usize, breakpoints: &Breakpoints) -> Option<(u64, bool)> {
        let addr = *self.debug_registers.get(slot)?;
        Some((addr, breakpoints.hardware.contains(&addr)))
    }
}

impl Breakpoints {
    /// Adds an `hbreak`; fails when the debug registers are taken.
    pub(crate) fn add_hardware(&mut self, addr: u64) -> Result<(), BreakpointError> {
        if self.hardware.contains(&addr) {
            return Ok(());
        }
        if self.hardware.len() >= DEBUG_REGISTERS {
            return Err(BreakpointError::NoDebugRegister);
        }
        self.hardware.push(addr);
        Ok(())
    }

    pub(crate) fn remove_hardware(&mut self, addr: u64) -> bool {
        let before = self.hardware.len();
        self.hardware.retain(|&a| a != addr);
        before != self.hardware.len()
    }

    /// Adds a `break`. One that no vCPU maps now needs a free debug register until it is.
    pub(crate) fn add_software(
        &mut self,
        addr: u64,
        mapped_now: bool,
    ) -> Result<(), BreakpointError> {
        if !mapped_now {
            let unmapped_in_registers = self.hardware.len() + 1;
            if unmapped_in_registers > DEBUG_REGISTERS {
                return Err(BreakpointError::NoDebugRegister);
            }
        }
        self.software.insert(addr);
        Ok(())
    }

    pub(crate) fn remove_software(&mut self, addr: u64) -> bool {
        self.software.remove(&addr)
    }

    pub(crate) fn clear(&mut self) {
        self.software.clear();
        self.hardware.clear();
    }

    /// Where each software breakpoint is in RAM through each of these page tables (those of
    /// the vCPUs about to run), in address order.
    pub(crate) fn targets(
        &self,
        ram: &GuestRam,
        page_tables: &[ControlRegs],
    ) -> Vec<SoftwareBreakpoint> {
        self.software
            .iter()
            .map(|&addr| SoftwareBreakpoint {
                addr,
                targets: page_tables
                    .iter()
                    .filter_map(|regs| translate(ram, regs, addr, Access::DEBUGGER).ok())
                    .map(|t| t.phys)
                    .filter(|&phys| ram.contains(phys, 1))
                    .collect(),
                owner: Owner::Gdb,
            })
            .collect()
    }

    /// Writes a 0xCC at each of these guest-physical addresses, keeping the guest's byte.
    pub(crate) fn plant(&mut self, ram: &GuestRam, at: &BTreeSet<u64>) {
        let mut planted = lock(&self.planted);
        for &phys in at {
            if planted.contains_key(&phys) {
                continue;
            }
            let mut original = [0u8];
            if ram.read(phys, &mut original).is_ok() && ram.write(phys, &[INT3]).is_ok() {
                planted.insert(phys, original[0]);
            }
        }
    }

    /// Takes every planted 0xCC out again. Where the guest has since written something else,
    /// its byte stays: the breakpoint is re-planted over the new code at the next resume.
    pub(crate) fn unplant(&mut self, ram: &GuestRam) {
        let mut planted = lock(&self.planted);
        for (phys, original) in std::mem::take(&mut *planted) {
            let mut current = [0u8];
            if ram.read(phys, &mut current).is_ok() && current[0] == INT3 {
                let _ = ram.write(phys, &[original]);
            }
        }
    }
}

fn lock(planted: &PlantedBytes) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, u8>> {
    planted.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat() -> ControlRegs {
        ControlRegs::new(0x11, 0, 0, 0)
    }

    #[test]
    fn plants_and_unplants_without_leaving_0xcc() {
        let ram = GuestRam::new(2 << 20).unwrap();
        ram.write(0x1000, &[0x90, 0x90]).unwrap();
        let mut bps = Breakpoints::default();
        bps.add_software(0x1000, true).unwrap();
        let targets = bps.targets(&ram, &[flat()]);
        assert_eq!(
            targets,
            vec![SoftwareBreakpoint {
                addr: 0x1000,
                targets: [0x1000].into(),
                owner: Owner::Gdb,
            }]
        );
        bps.plant(&ram, &targets[0].targets);
        let mut byte = [0u8];
        ram.read(0x1000, &mut byte).unwrap();
        assert_eq!(byte, [INT3]);
        bps.unplant(&ram);
        ram.read(0x1000, &mut byte).unwrap();
        assert_eq!(byte, [0x90]);
    }

    #[test]
    fn guest_overwrite_is_kept_and_replanted() {
        let ram = GuestRam::new(2 << 20).unwrap();
        ram.write(0x1000, &[0x90]).unwrap();
        let mut bps = Breakpoints::default();
        let at = [0x1000].into();
        bps.plant(&ram, &at);
        ram.write(0x1000, &[0xF4]).unwrap(); // the guest copies new code there
        bps.unplant(&ram);
        let mut byte = [0u8];
        ram.read(0x1000, &mut byte).unwrap();
        assert_eq!(byte, [0xF4]);
        bps.plant(&ram, &at);
        bps.unplant(&ram);
        ram.read(0x1000, &mut byte).unwrap();
        assert_eq!(byte, [0xF4], "the new code's byte is what gets restored");
    }

    #[test]
    fn a_breakpoint_outside_ram_has_no_target() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let mut bps = Breakpoints::default();
        bps.add_software(0x8000_0000, false).unwrap();
        let targets = bps.targets(&ram, &[flat(), flat()]);
        assert!(targets[0].targets.is_empty());
    }

    #[test]
    fn debug_registers_run_out() {
        let mut bps = Breakpoints::default();
        for addr in 0..4 {
            bps.add_hardware(addr).unwrap();
        }
        assert_eq!(bps.add_hardware(9), Err(BreakpointError::NoDebugRegister));
        assert_eq!(
            bps.add_software(9, false),
            Err(BreakpointError::NoDebugRegister)
        );
        assert!(bps.add_software(9, true).is_ok());
    }
}
