//! Application processors held by the VMM for the Limine MP feature: no parking loop runs in
//! the guest. A held AP's vCPU waits for a start-up that never comes from the guest (KVM's
//! "uninitialized" state, like an AP before INIT/SIPI), so it uses no CPU and, as any AP not
//! yet started, keeps no run alive. The pages with the MP information are read-only for KVM:
//! the kernel's write of a `goto_address` leaves KVM as an MMIO exit on the writing vCPU,
//! which applies it and calls [`HeldAps::poll`]; the AP then gets the protocol's entry state
//! (the BSP's CR3 and GDT, its own stack, RDI → its `limine_mp_info`, RIP = the address
//! written) and runs. The pages stay read-only for the whole run, even while a debugger's
//! pages are lifted for one instruction: changing memory slots while vCPUs run leaves a moment
//! without a slot there, which a running vCPU can hit (seen here as an emulation failure at an
//! AP's first instruction). A later write by the kernel to those pages (once it reclaims them)
//! costs an exit each; a descriptor table or page table it put there would stall the CPU's own
//! writes to it (Accessed bits) for ever on this host's KVM.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::boot::{ApPlan, BootCpuState, HeldAp};
use crate::vmm::kick::Kicker;
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::{MemslotError, Protection};

/// How a released AP starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApStart {
    pub(crate) cpu: BootCpuState,
    /// RDI: the AP's `struct limine_mp_info`.
    pub(crate) rdi: u64,
}

#[derive(Default)]
struct State {
    /// Not released yet.
    waiting: Vec<HeldAp>,
    /// Released, not yet started by their own thread.
    pending: BTreeMap<u8, ApStart>,
    /// Each vCPU thread's kicker, as the thread registers it.
    kickers: BTreeMap<u8, Kicker>,
}

/// The held APs of one VM, shared by its vCPUs.
pub(crate) struct HeldAps {
    entry: BootCpuState,
    pages: BTreeSet<u64>,
    state: Mutex<State>,
}

impl HeldAps {
    /// Holds the APs of `plan` and protects its pages.
    pub(crate) fn hold(plan: &ApPlan, slots: Protection) -> Result<Arc<Self>, MemslotError> {
        let pages: BTreeSet<u64> = plan.pages.iter().copied().collect();
        slots.set_pinned(pages.clone())?;
        Ok(Arc::new(HeldAps {
            entry: plan.entry,
            pages,
            state: Mutex::new(State {
                waiting: plan.aps.clone(),
                ..State::default()
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a write at `phys..phys+len` may touch the MP information.
    pub(crate) fn watches(&self, phys: u64, len: u64) -> bool {
        let last = phys.saturating_add(len.max(1) - 1);
        self.pages.contains(&(phys & !0xfff)) || self.pages.contains(&(last & !0xfff))
    }

    /// Records the kicker of vCPU `id`'s thread (called on that thread).
    pub(crate) fn register(&self, id: u8, kicker: Kicker) {
        self.lock().kickers.insert(id, kicker);
    }

    /// Releases every held AP whose `goto_address` is no longer 0 in RAM, kicking its thread
    /// so it starts.
    pub(crate) fn poll(&self, ram: &GuestRam) {
        let mut state = self.lock();
        let mut released = Vec::new();
        state.waiting.retain(|ap| {
            let mut goto = [0u8; 8];
            let written = ram.read(ap.goto_phys, &mut goto).is_ok() && goto != [0; 8];
            if written {
                released.push((*ap, u64::from_le_bytes(goto)));
            }
            !written
        });
        for (ap, goto) in &released {
            let start = ApStart {
                cpu: BootCpuState {
                    rip: *goto,
                    rsp: ap.rsp,
                    ..self.entry
                },
                rdi: ap.info_virt,
            };
            log::debug!("limine: AP {} released at {goto:#x}", ap.cpu);
            state.pending.insert(ap.cpu, start);
            if let Some(kicker) = state.kickers.get(&ap.cpu) {
                kicker.kick();
            }
        }
    }

    /// The start of vCPU `id`, once it is released (taken once).
    pub(crate) fn take_start(&self, id: u8) -> Option<ApStart> {
        self.lock().pending.remove(&id)
    }
}
