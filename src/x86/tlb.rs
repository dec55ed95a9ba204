//! A small software TLB: remembers recent walks so repeated debugger reads skip the page tables.
//!
//! Like the CPU's TLB it caches translations keyed by linear page; unlike it, we cannot see the
//! guest's INVLPG or table writes, so the cache is only valid while the guest is stopped. The VMM
//! calls [`Tlb::invalidate`] whenever the vCPU ran, and the cache also empties itself when it is
//! asked to translate under control registers (CR0/CR3/CR4/EFER, PDPTRs, MAXPHYADDR) other than the
//! ones it was filled with.

use super::cpu::ControlRegs;
use super::paging::{
    check_access, Access, PageSize, PageTableFlags, PagingCtx, Rights, Translation, WalkError,
};
use super::phys::PhysMemory;

/// Number of slots (direct-mapped on the 4 KiB linear page number).
pub(crate) const TLB_SLOTS: usize = 1024;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Generation the slot was filled in; stale when it differs from the TLB's.
    generation: u64,
    /// Linear address >> 12.
    vpn: u64,
    /// Physical address of the 4 KiB piece of the page that holds the linear page.
    phys4k: u64,
    page_size: PageSize,
    rights: Rights,
    leaf_flags: PageTableFlags,
}

/// Hit and miss counters, to show the cache's effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TlbStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// Times the contents were dropped (explicitly or because the registers changed).
    pub(crate) flushes: u64,
}

/// The software TLB. Cheap to invalidate (a generation counter, not a memset).
#[derive(Debug, Clone)]
pub struct Tlb {
    regs: Option<ControlRegs>,
    ctx: Option<PagingCtx>,
    generation: u64,
    slots: Box<[Slot]>,
    stats: TlbStats,
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlb {
    /// An empty TLB.
    pub fn new() -> Self {
        Tlb {
            regs: None,
            ctx: None,
            generation: 1,
            slots: vec![Slot::default(); TLB_SLOTS].into_boxed_slice(),
            stats: TlbStats::default(),
        }
    }

    /// Forgets every translation: call whenever the vCPU ran (tables may have changed).
    pub fn invalidate(&mut self) {
        self.generation += 1;
        self.stats.flushes += 1;
    }

    /// Hit/miss counters since creation.
    pub(crate) fn stats(&self) -> TlbStats {
        self.stats
    }

    /// Like [`super::paging::translate`], answered from the cache when possible.
    ///
    /// Hits are re-checked against `access`; a denied hit falls back to a full walk so the error
    /// carries a trace.
    pub fn translate<M: PhysMemory + ?Sized>(
        &mut self,
        mem: &M,
        regs: &ControlRegs,
        linear: u64,
        access: Access,
    ) -> Result<Translation, WalkError> {
        if self.regs.as_ref() != Some(regs) {
            self.regs = Some(*regs);
            self.ctx = Some(PagingCtx::new(regs));
            self.invalidate();
        }
        let vpn = linear >> 12;
        let slot = &mut self.slots[(vpn as usize) & (TLB_SLOTS - 1)];
        if slot.generation == self.generation && slot.vpn == vpn {
            self.stats.hits += 1;
            if check_access(slot.rights, access, regs).is_ok() {
                return Ok(Translation {
                    linear,
                    phys: slot.phys4k | (linear & 0xfff),
                    page_size: slot.page_size,
                    rights: slot.rights,
                    leaf_flags: slot.leaf_flags,
                });
            }
        } else {
            self.stats.misses += 1;
        }
        let ctx = self.ctx.as_ref().expect("set above");
        let walk = ctx.walk(mem, linear)?;
        let t = walk.translation;
        *slot = Slot {
            generation: self.generation,
            vpn,
            phys4k: t.phys & !0xfff,
            page_size: t.page_size,
            rights: t.rights,
            leaf_flags: t.leaf_flags,
        };
        match check_access(t.rights, access, regs) {
            Ok(()) => Ok(t),
            Err(code) => Err(WalkError::Protection {
                linear,
                access,
                rights: t.rights,
                code,
                trace: Box::new(walk.trace),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::phys::VecMemory;

    fn setup() -> (VecMemory, ControlRegs) {
        let mut m = VecMemory::new(1 << 20);
        m.write_u64(0x1000, 0x2000 | 3);
        m.write_u64(0x2000, 0x3000 | 3);
        m.write_u64(0x3000, 0x4000 | 3);
        m.write_u64(0x4000, 0x8000 | 3);
        m.write_u64(0x4008, 0x9000 | 1);
        (m, ControlRegs::new(0x8001_0011, 0x1000, 0x20, 0x500))
    }

    #[test]
    fn hits_misses_and_invalidation() {
        let (mut m, regs) = setup();
        let mut tlb = Tlb::new();
        let t = tlb.translate(&m, &regs, 0x10, Access::DEBUGGER).unwrap();
        assert_eq!(t.phys, 0x8010);
        let t = tlb.translate(&m, &regs, 0x20, Access::DEBUGGER).unwrap();
        assert_eq!(t.phys, 0x8020);
        assert_eq!(tlb.stats().hits, 1);
        assert_eq!(tlb.stats().misses, 1);
        // the guest remaps the page; stale until invalidated, as with a real TLB
        m.write_u64(0x4000, 0xa000 | 3);
        assert_eq!(
            tlb.translate(&m, &regs, 0x20, Access::DEBUGGER)
                .unwrap()
                .phys,
            0x8020
        );
        tlb.invalidate();
        assert_eq!(
            tlb.translate(&m, &regs, 0x20, Access::DEBUGGER)
                .unwrap()
                .phys,
            0xa020
        );
        // a different CR3 flushes by itself
        m.write_u64(0x5000, 0x2000 | 3);
        let other = ControlRegs {
            cr3: 0x5000,
            ..regs
        };
        m.write_u64(0x4000, 0xb000 | 3);
        assert_eq!(
            tlb.translate(&m, &other, 0x20, Access::DEBUGGER)
                .unwrap()
                .phys,
            0xb020
        );
    }

    #[test]
    fn denied_hit_reports_protection_with_trace() {
        let (m, regs) = setup();
        let mut tlb = Tlb::new();
        assert!(tlb.translate(&m, &regs, 0x1000, Access::DEBUGGER).is_ok());
        let e = tlb
            .translate(&m, &regs, 0x1000, Access::write(false))
            .unwrap_err();
        assert!(matches!(e, WalkError::Protection { .. }));
        assert_eq!(e.trace().unwrap().len(), 4);
        assert!(tlb
            .translate(&m, &regs, 0x5000_0000, Access::DEBUGGER)
            .is_err());
    }
}
