//! Write watchpoints without debug registers: the pages under each watched range become
//! read-only memory slots, so every write to them exits; the vCPU applies the write and stops
//! only when it touches a watched range. No 4-slot limit, and it works on hosts whose KVM never
//! fires DR7 data breakpoints. Watches are kept by linear address and re-resolved before every
//! resume, like breakpoints.

use crate::vmm::memory::GuestRam;
use crate::x86::cpu::ControlRegs;
use crate::x86::paging::physical_pieces;

const PAGE: u64 = 0x1000;

#[derive(Debug, Default)]
pub(crate) struct Watchpoints {
    /// (linear address, length) as gdb gave them.
    pub(crate) watches: Vec<(u64, u64)>,
    /// (guest-physical start, length, index into `watches`) of the current resolution.
    resolved: Vec<(u64, u64, usize)>,
}

impl Watchpoints {
    pub(crate) fn add(&mut self, linear: u64, len: u64) {
        if !self.watches.contains(&(linear, len)) {
            self.watches.push((linear, len));
        }
    }

    /// Pages the watches would span with one more of `len` bytes at `linear` (saturating).
    pub(crate) fn pages_with(&self, linear: u64, len: u64) -> u64 {
        let pages =
            |(linear, len): (u64, u64)| ((linear & (PAGE - 1)).saturating_add(len)).div_ceil(PAGE);
        self.watches
            .iter()
            .map(|&w| pages(w))
            .fold(pages((linear, len)), u64::saturating_add)
    }

    pub(crate) fn remove(&mut self, linear: u64, len: u64) -> bool {
        let before = self.watches.len();
        self.watches.retain(|&w| w != (linear, len));
        before != self.watches.len()
    }

    pub(crate) fn clear(&mut self) {
        self.watches.clear();
        self.resolved.clear();
    }

    /// Maps every watch to guest-physical pieces through `regs`, each within one page; returns
    /// the physical ranges the vCPUs must report. Unmapped parts are skipped.
    pub(crate) fn resolve(&mut self, ram: &GuestRam, regs: &ControlRegs) -> Vec<(u64, u64)> {
        self.resolved.clear();
        for (index, &(linear, len)) in self.watches.iter().enumerate() {
            for (phys, chunk) in physical_pieces(ram, regs, linear, len) {
                if ram.contains(phys, chunk) {
                    self.resolved.push((phys, chunk, index));
                }
            }
        }
        self.resolved
            .iter()
            .map(|&(phys, len, _)| (phys, len))
            .collect()
    }

    /// The linear address of the watch a guest write at `phys` touched.
    pub(crate) fn hit(&self, phys: u64, len: u64) -> Option<u64> {
        self.resolved
            .iter()
            .find(|&&(start, size, _)| phys < start + size && start < phys + len)
            .map(|&(_, _, index)| self.watches[index].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_across_pages_and_finds_hits() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let regs = ControlRegs::new(0x11, 0, 0, 0);
        let mut watches = Watchpoints::default();
        watches.add(0x1ffe, 4);
        let ranges = watches.resolve(&ram, &regs);
        assert_eq!(ranges, vec![(0x1ffe, 2), (0x2000, 2)]);
        assert_eq!(watches.hit(0x2001, 1), Some(0x1ffe));
        assert_eq!(watches.hit(0x2002, 4), None);
        assert_eq!(watches.pages_with(0x5000, 0x1000), 3);
        assert!(
            watches.pages_with(0, u64::MAX) > 1 << 51,
            "no overflow, no walk"
        );
        assert!(watches.remove(0x1ffe, 4));
    }
}
