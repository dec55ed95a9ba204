//! Guest RAM as KVM memory slots, with chosen pages read-only.
//!
//! A write to a read-only slot leaves KVM as an MMIO exit (address, size, data) with the
//! instruction complete; the vCPU loop applies the write itself. That is how `watch` works on
//! every host, including those whose KVM never fires DR7 data breakpoints. A slot's flags cannot
//! change in place, so protecting a page means deleting the slot that holds it and registering
//! the pieces around it again.

use std::collections::BTreeSet;
use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::vmm::memory::GuestRam;

const PAGE: u64 = 0x1000;

#[derive(Debug, Error)]
pub enum MemslotError {
    #[error("KVM_SET_USER_MEMORY_REGION failed: {0}")]
    Kvm(kvm_ioctls::Error),
}

/// One registered slot: guest range, host address, read-only or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    guest: u64,
    len: u64,
    host: u64,
    read_only: bool,
}

pub struct MemorySlots {
    fd: Arc<VmFd>,
    ram: Arc<GuestRam>,
    pieces: Vec<Piece>,
    read_only_pages: BTreeSet<u64>,
}

impl MemorySlots {
    /// Registers all of `ram`, writable.
    pub fn new(fd: Arc<VmFd>, ram: Arc<GuestRam>) -> Result<Self, MemslotError> {
        let mut slots = MemorySlots {
            fd,
            ram,
            pieces: Vec::new(),
            read_only_pages: BTreeSet::new(),
        };
        slots.apply(Self::layout(&slots.ram, &BTreeSet::new()))?;
        Ok(slots)
    }

    pub fn read_only_pages(&self) -> &BTreeSet<u64> {
        &self.read_only_pages
    }

    /// Makes exactly `pages` (page-aligned guest-physical addresses inside RAM) read-only.
    pub fn set_read_only(&mut self, pages: BTreeSet<u64>) -> Result<(), MemslotError> {
        if pages == self.read_only_pages {
            return Ok(());
        }
        let layout = Self::layout(&self.ram, &pages);
        self.apply(layout)?;
        self.read_only_pages = pages;
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
        let region = kvm_userspace_memory_region {
            slot,
            flags: if piece.read_only { KVM_MEM_READONLY } else { 0 },
            guest_phys_addr: piece.guest,
            memory_size: size,
            userspace_addr: piece.host,
        };
        // SAFETY: the host range lies inside a live mapping owned by `ram`, which this struct
        // keeps alive (Arc) as long as the VM fd; slots never overlap (they partition RAM), and
        // a size of 0 deletes the slot.
        unsafe { self.fd.set_user_memory_region(region) }.map_err(MemslotError::Kvm)
    }
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
