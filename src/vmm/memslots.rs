//! Guest RAM as KVM memory slots, with chosen pages read-only.
//!
//! A write to a read-only slot leaves KVM as an MMIO exit (address, size, data) with the
//! instruction complete; the vCPU loop applies the write itself. That is how `watch` works on
//! every host, including those whose KVM never fires DR7 data breakpoints. A slot's flags cannot
//! change in place, so protecting a page means deleting the slot that holds it and registering
//! the pieces around it again.
//!
//! The first registration runs on a thread of its own: on a nested host it waits ~5 ms for an
//! SRCU grace period, time better spent setting up the VM and answering gdb's first packets.
//! Anything that needs the slots ([`RamRegistered::wait`]) waits for it: every vCPU before it
//! runs, and every later change of the slots.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::vmm::memory::GuestRam;

const PAGE: u64 = 0x1000;

#[derive(Debug, Clone, Copy, Error)]
pub enum MemslotError {
    #[error("KVM_SET_USER_MEMORY_REGION failed: {0}")]
    Kvm(kvm_ioctls::Error),
    #[error("cannot start the memory registration thread")]
    Thread,
}

/// Set once guest RAM's first registration with KVM has finished (or failed).
#[derive(Default)]
pub(crate) struct RamRegistered {
    outcome: Mutex<Option<Result<(), MemslotError>>>,
    done: Condvar,
}

impl RamRegistered {
    /// Blocks until the first registration has finished; its outcome.
    pub(crate) fn wait(&self) -> Result<(), MemslotError> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = *outcome {
                return result;
            }
            outcome = self.done.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish(&self, result: Result<(), MemslotError>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.done.notify_all();
    }
}

/// The read-only pages, shared by whoever sets them (the debugger, at each resume) and the vCPUs,
/// which lift them for one instruction the CPU cannot finish on a protected page (see
/// `vmm::vcpu`, the progress guarantee).
#[derive(Clone)]
pub(crate) struct Protection {
    slots: Arc<Mutex<MemorySlots>>,
}

impl Protection {
    pub(crate) fn new(slots: MemorySlots) -> Self {
        Protection {
            slots: Arc::new(Mutex::new(slots)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemorySlots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes exactly `pages` read-only (see [`MemorySlots::set_read_only`]), besides the
    /// pinned ones.
    pub(crate) fn set_read_only(&self, pages: BTreeSet<u64>) -> Result<(), MemslotError> {
        self.lock().set_read_only(pages)
    }

    /// Keeps `pages` read-only whatever a debugger sets, until changed again: the VMM's own
    /// write watches (the Limine MP information, see `vmm::held_aps`).
    pub(crate) fn set_pinned(&self, pages: BTreeSet<u64>) -> Result<(), MemslotError> {
        self.lock().set_pinned(pages)
    }

    /// The pages a debugger made read-only (pinned pages aside).
    pub(crate) fn read_only_pages(&self) -> BTreeSet<u64> {
        self.lock().read_only_pages.clone()
    }

    /// True while a debugger keeps any page read-only. Pinned pages do not count: they hold
    /// data the guest's own instructions write (never a descriptor table, page table or stack
    /// the CPU writes by itself), so nothing the progress guarantee handles happens there.
    pub(crate) fn is_active(&self) -> bool {
        !self.lock().read_only_pages.is_empty()
    }

    /// See [`MemorySlots::max_read_only_pages`].
    pub(crate) fn max_read_only_pages(&self) -> usize {
        self.lock().max_read_only_pages()
    }

    /// The page holding `phys` is read-only now.
    pub(crate) fn protects(&self, phys: u64) -> bool {
        self.lock().read_only_pages.contains(&(phys & !(PAGE - 1)))
    }

    /// What a vCPU waits on before its first run.
    pub(crate) fn registered(&self) -> Arc<RamRegistered> {
        self.lock().registered()
    }

    /// Runs `work` with the debugger's pages writable (pinned ones stay read-only: changing
    /// slots while other vCPUs run leaves them an instant without memory), then protects them
    /// again. Holds the slots meanwhile, so nobody changes them under it.
    pub(crate) fn lifted<R>(&self, work: impl FnOnce() -> R) -> Result<R, MemslotError> {
        let mut slots = self.lock();
        let pages = slots.read_only_pages.clone();
        slots.set_read_only(BTreeSet::new())?;
        let result = work();
        slots.set_read_only(pages)?;
        Ok(result)
    }
}

/// One registered slot: guest range, host address, read-only or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    guest: u64,
    len: u64,
    host: u64,
    read_only: bool,
}

pub(crate) struct MemorySlots {
    fd: Arc<VmFd>,
    /// KVM_CAP_NR_MEMSLOTS: every read-only page may cut a slot in two.
    nr_slots: usize,
    ram: Arc<GuestRam>,
    pieces: Vec<Piece>,
    /// What a debugger asked to be read-only.
    read_only_pages: BTreeSet<u64>,
    /// What the VMM keeps read-only for itself.
    pinned: BTreeSet<u64>,
    /// Both, as registered with KVM.
    applied: BTreeSet<u64>,
    registered: Arc<RamRegistered>,
}

impl MemorySlots {
    /// Starts registering all of `ram`, writable, in the background (see [`RamRegistered`]).
    pub(crate) fn new(fd: Arc<VmFd>, ram: Arc<GuestRam>) -> Result<Self, MemslotError> {
        let pieces = Self::layout(&ram, &BTreeSet::new());
        let registered = Arc::new(RamRegistered::default());
        let (thread_fd, thread_pieces, gate) = (fd.clone(), pieces.clone(), registered.clone());
        // The thread keeps RAM mapped for as long as it may register it.
        let thread_ram = ram.clone();
        std::thread::Builder::new()
            .name("memslots".into())
            .spawn(move || {
                let result = thread_pieces
                    .iter()
                    .enumerate()
                    .try_for_each(|(slot, piece)| set(&thread_fd, slot as u32, piece, piece.len));
                gate.finish(result);
                drop(thread_ram);
            })
            .map_err(|_| MemslotError::Thread)?;
        // KVM documents 32 slots at the least when the capability is absent.
        let nr_slots = usize::try_from(fd.check_extension_int(kvm_ioctls::Cap::NrMemslots))
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(32);
        Ok(MemorySlots {
            fd,
            nr_slots,
            ram,
            pieces,
            read_only_pages: BTreeSet::new(),
            pinned: BTreeSet::new(),
            applied: BTreeSet::new(),
            registered,
        })
    }

    /// What a vCPU waits on before its first run.
    pub(crate) fn registered(&self) -> Arc<RamRegistered> {
        self.registered.clone()
    }

    /// How many scattered pages can be read-only at once: each may split a RAM slot in two,
    /// within KVM's slot count.
    pub(crate) fn max_read_only_pages(&self) -> usize {
        let ram_regions = self.ram.mmap().iter().count();
        self.nr_slots.saturating_sub(ram_regions + 1) / 2
    }

    /// Makes exactly `pages` (page-aligned guest-physical addresses inside RAM) and the pinned
    /// pages read-only.
    pub(crate) fn set_read_only(&mut self, pages: BTreeSet<u64>) -> Result<(), MemslotError> {
        let pinned = self.pinned.clone();
        self.protect(pages, pinned)
    }

    /// Makes exactly `pinned` and the debugger's pages read-only.
    pub(crate) fn set_pinned(&mut self, pinned: BTreeSet<u64>) -> Result<(), MemslotError> {
        let pages = self.read_only_pages.clone();
        self.protect(pages, pinned)
    }

    fn protect(&mut self, pages: BTreeSet<u64>, pinned: BTreeSet<u64>) -> Result<(), MemslotError> {
        let union: BTreeSet<u64> = pages.union(&pinned).copied().collect();
        if union != self.applied {
            self.registered.wait()?;
            let layout = Self::layout(&self.ram, &union);
            self.apply(layout)?;
            self.applied = union;
        }
        self.read_only_pages = pages;
        self.pinned = pinned;
        Ok(())
    }

    /// RAM regions cut into runs of writable and read-only pages.
    fn layout(ram: &GuestRam, read_only: &BTreeSet<u64>) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for region in ram.mmap().iter() {
            let start = region.start_addr().0;
            let end = start + region.len();
            let host = region.as_ptr() as u64;
            let mut cursor = start;
            let mut push = |from: u64, to: u64, read_only: bool| {
                if to > from {
                    pieces.push(Piece {
                        guest: from,
                        len: to - from,
                        host: host + (from - start),
                        read_only,
                    });
                }
            };
            for &page in read_only.range(start..end) {
                push(cursor, page, false);
                push(page, (page + PAGE).min(end), true);
                cursor = (page + PAGE).min(end);
            }
            push(cursor, end, false);
        }
        // Merge adjacent read-only pages into one slot.
        let mut merged: Vec<Piece> = Vec::new();
        for piece in pieces {
            match merged.last_mut() {
                Some(last)
                    if last.read_only == piece.read_only
                        && last.guest + last.len == piece.guest
                        && last.host + last.len == piece.host =>
                {
                    last.len += piece.len;
                }
                _ => merged.push(piece),
            }
        }
        merged
    }

    /// Replaces the registered slots by `layout`, touching only the slots that change.
    fn apply(&mut self, layout: Vec<Piece>) -> Result<(), MemslotError> {
        let old = std::mem::take(&mut self.pieces);
        // Delete old slots that are not kept as they are; slot numbers are positions.
        for (slot, piece) in old.iter().enumerate() {
            if layout.get(slot) != Some(piece) {
                self.set(slot as u32, piece, 0)?;
            }
        }
        for (slot, piece) in layout.iter().enumerate() {
            if old.get(slot) != Some(piece) {
                self.set(slot as u32, piece, piece.len)?;
            }
        }
        self.pieces = layout;
        Ok(())
    }

    fn set(&self, slot: u32, piece: &Piece, size: u64) -> Result<(), MemslotError> {
        set(&self.fd, slot, piece, size)
    }
}

/// Registers (or with `size` 0 deletes) slot number `slot` as `piece`.
fn set(fd: &VmFd, slot: u32, piece: &Piece, size: u64) -> Result<(), MemslotError> {
    let region = kvm_userspace_memory_region {
        slot,
        flags: if piece.read_only { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: piece.guest,
        memory_size: size,
        userspace_addr: piece.host,
    };
    // SAFETY: the host range lies inside a live mapping of a GuestRam that the caller keeps
    // alive (MemorySlots and the registration thread hold an Arc); slots never overlap (they
    // partition RAM), and a size of 0 deletes the slot.
    unsafe { fd.set_user_memory_region(region) }.map_err(MemslotError::Kvm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_cuts_and_merges_read_only_pages() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let pages: BTreeSet<u64> = [0x1000, 0x2000, 0x10_0000].into_iter().collect();
        let layout = MemorySlots::layout(&ram, &pages);
        let summary: Vec<(u64, u64, bool)> = layout
            .iter()
            .map(|p| (p.guest, p.len, p.read_only))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 0x1000, false),
                (0x1000, 0x2000, true),
                (0x3000, 0x10_0000 - 0x3000, false),
                (0x10_0000, 0x1000, true),
                (0x10_1000, (4 << 20) - 0x10_1000, false),
            ]
        );
        let plain = MemorySlots::layout(&ram, &BTreeSet::new());
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].len, 4 << 20);
    }
}
