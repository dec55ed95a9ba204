//! Post-mortem debugging: a guest's whole state in an ELF core file, and back.
//!
//! 1. [`capture`] reads every vCPU of a stopped VM (finishing a pending port exit first) into
//!    [`CpuSnapshot`]s, with the PAE PDPTE registers from KVM_GET_SREGS2.
//! 2. [`write`] writes them and guest RAM as an ELF64 core: one PT_LOAD per RAM range (zero
//!    pages are holes in a sparse file), one PT_NOTE with NT_PRSTATUS and gdbvisor's own notes
//!    per vCPU ([`notes`]).
//! 3. [`Snapshot::open`] reads such a file, or a QEMU `dump-guest-memory` file ([`qemu`]), into
//!    RAM with the same layout and the vCPUs' state, which the gdb stub serves as it serves a
//!    live VM (same walker, same monitor commands).

pub(crate) mod capture;
pub(crate) mod cpu;
pub(crate) mod elf;
mod error;
pub mod notes;
pub mod post_mortem;
pub(crate) mod qemu;
#[cfg(test)]
mod tests;
pub(crate) mod write;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::vmm::memory::GuestRam;

pub use cpu::CpuSnapshot;
pub(crate) use cpu::ASSUMED_MAXPHYADDR;
pub(crate) use error::SnapshotError;
pub use write::{write_core, WriteStats};

/// Who wrote a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// gdbvisor's own ELF core (`monitor dump`, `--dump-on-crash`).
    Gdbvisor,
    /// QEMU's `dump-guest-memory`, from a 32-bit (i386) or 64-bit ELF.
    Qemu {
        /// A 64-bit ELF (else 32-bit).
        elf64: bool,
    },
}

/// A guest's saved state: what gdb and every monitor command read instead of a live VM.
pub struct Snapshot {
    /// The file it was opened from.
    pub path: PathBuf,
    /// Who wrote it.
    pub origin: Origin,
    /// Each vCPU's saved state, by vCPU id.
    pub cpus: Vec<CpuSnapshot>,
    /// Guest RAM: exactly the snapshot's PT_LOAD ranges; anything else reads as an error.
    pub ram: Arc<GuestRam>,
    /// State the file lacks and that was inferred, in words (QEMU dumps: EFER, PDPTRs).
    pub inferred: Vec<String>,
}

/// Loading copies this much of a PT_LOAD at a time.
const CHUNK: usize = 1 << 20;

impl Snapshot {
    /// Opens a gdbvisor or QEMU snapshot file.
    pub fn open(path: &Path) -> Result<Snapshot, SnapshotError> {
        Self::open_with(path, None)
    }

    /// Opens a snapshot; `maxphyaddr` (32..=52, `--maxphyaddr`), when given, replaces the
    /// guest's MAXPHYADDR the file records or [`ASSUMED_MAXPHYADDR`].
    pub(crate) fn open_with(
        path: &Path,
        maxphyaddr: Option<u8>,
    ) -> Result<Snapshot, SnapshotError> {
        let file = File::open(path).map_err(SnapshotError::Read)?;
        let core = elf::parse(&file)?;
        let ours = notes::read_cpus(&core.notes)?;
        let (origin, mut cpus) = match ours {
            Some(cpus) => (Origin::Gdbvisor, cpus),
            None => match qemu::read_cpus(&core.notes)? {
                Some(cpus) => (
                    Origin::Qemu {
                        elf64: core.class64,
                    },
                    cpus,
                ),
                None => return Err(SnapshotError::NoCpuState),
            },
        };
        if core.loads.is_empty() {
            return Err(SnapshotError::NoMemory);
        }
        let ram = load_ram(&file, &core.loads)?;
        let mut inferred = Vec::new();
        match maxphyaddr {
            Some(bits) => cpus.iter_mut().for_each(|cpu| cpu.maxphyaddr = bits),
            None if origin != Origin::Gdbvisor || !notes::records_maxphyaddr(&core.notes) => {
                inferred.push(format!(
                    "MAXPHYADDR={ASSUMED_MAXPHYADDR} assumed (QEMU's default phys-bits): the file does not record the guest's physical-address width, which decides the reserved bits of page-table entries; --maxphyaddr N sets it"
                ));
            }
            None => {}
        }
        if let Origin::Qemu { .. } = origin {
            for (i, cpu) in cpus.iter_mut().enumerate() {
                let said = qemu::infer(cpu, core.machine, &ram);
                inferred.extend(said.into_iter().map(|s| format!("vCPU {i}: {s}")));
            }
        }
        Ok(Snapshot {
            path: path.to_path_buf(),
            origin,
            cpus,
            ram: Arc::new(ram),
            inferred,
        })
    }

    /// One line: what the file is.
    pub(crate) fn describe(&self) -> String {
        let origin = match self.origin {
            Origin::Gdbvisor => "gdbvisor snapshot".to_string(),
            Origin::Qemu { elf64 } => format!(
                "QEMU dump-guest-memory ({})",
                if elf64 { "ELF64" } else { "ELF32" }
            ),
        };
        let ram: u64 = self.ram.ranges().iter().map(|r| r.1).sum();
        format!(
            "{}: {origin}, {} vCPU{}, {} KiB of guest RAM in {} range{}",
            self.path.display(),
            self.cpus.len(),
            if self.cpus.len() == 1 { "" } else { "s" },
            ram >> 10,
            self.ram.ranges().len(),
            if self.ram.ranges().len() == 1 {
                ""
            } else {
                "s"
            },
        )
    }
}

/// Guest RAM with exactly the PT_LOAD ranges, filled from the file. All-zero pages are not
/// copied: fresh anonymous memory is already zero, and stays unallocated.
fn load_ram(file: &File, loads: &[elf::Load]) -> Result<GuestRam, SnapshotError> {
    let ranges: Vec<(u64, u64)> = loads.iter().map(|l| (l.paddr, l.memsz)).collect();
    let ram = GuestRam::from_ranges(&ranges)?;
    let mut buf = vec![0u8; CHUNK];
    for load in loads {
        let mut done = 0u64;
        while done < load.filesz {
            let n = (load.filesz - done).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            file.read_exact_at(chunk, load.offset + done)
                .map_err(SnapshotError::Read)?;
            for (i, page) in chunk.chunks(4096).enumerate() {
                if !write::is_zero(page) {
                    ram.write(load.paddr + done + (i * 4096) as u64, page)?;
                }
            }
            done += n as u64;
        }
    }
    Ok(ram)
}
