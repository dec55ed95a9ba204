//! Writing a snapshot: an ELF64 core file whose RAM is sparse (zero pages are holes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::cpu::CpuSnapshot;
use super::elf::{ehdr64, phdr64, EHDR64_SIZE, PHDR64_SIZE, PT_LOAD, PT_NOTE};
use super::error::SnapshotError;
use super::notes;
use crate::vmm::memory::GuestRam;

const PAGE: usize = 4096;
/// RAM is scanned and written this much at a time.
const CHUNK: usize = 2 << 20;

/// What writing a snapshot took.
#[derive(Debug, Clone, Copy)]
pub struct WriteStats {
    /// Bytes of guest RAM saved.
    pub(crate) ram: u64,
    /// Bytes of it that were not zero, i.e. written to the file.
    pub(crate) written: u64,
    pub(crate) elapsed: Duration,
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} MiB of RAM ({} KiB not zero) in {:.1} ms",
            self.ram >> 20,
            self.written >> 10,
            self.elapsed.as_secs_f64() * 1e3
        )
    }
}

/// True when every byte of `bytes` is zero.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    // Eight bytes at a time: this scan is most of the time a dump takes.
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64; align_to only splits the slice.
        unsafe { bytes.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Writes `cpus` and `ram` to `path` (replacing it) as a gdbvisor snapshot.
pub fn write_core(
    path: &Path,
    cpus: &[CpuSnapshot],
    ram: &GuestRam,
) -> Result<WriteStats, SnapshotError> {
    let started = Instant::now();
    let mut note = Vec::new();
    notes::push_info(&mut note, cpus.len() as u32);
    for (id, cpu) in cpus.iter().enumerate() {
        notes::push_cpu(&mut note, id as u32, cpu);
    }
    let ranges = ram.ranges();
    let phnum = 1 + ranges.len();
    let notes_at = (EHDR64_SIZE + phnum * PHDR64_SIZE) as u64;
    // RAM starts page-aligned, so the file's holes line up with guest pages.
    let ram_at = (notes_at + note.len() as u64).div_ceil(PAGE as u64) * PAGE as u64;
    let mut header = ehdr64(phnum as u16);
    header.extend(phdr64(PT_NOTE, notes_at, 0, note.len() as u64, 4));
    let mut offset = ram_at;
    for &(start, len) in &ranges {
        header.extend(phdr64(PT_LOAD, offset, start, len, PAGE as u64));
        offset += len;
    }
    header.extend(&note);
    let file = File::create(path).map_err(SnapshotError::Write)?;
    file.write_all_at(&header, 0)
        .map_err(SnapshotError::Write)?;
    let mut written = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut file_at = ram_at;
    for &(start, len) in &ranges {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            ram.read(start + done, chunk)?;
            // Runs of non-zero pages, one write each.
            let mut run: Option<usize> = None;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                match (is_zero(page), run) {
                    (false, None) => run = Some(i * PAGE),
                    (true, Some(from)) => {
                        file.write_all_at(&chunk[from..i * PAGE], file_at + done + from as u64)
                            .map_err(SnapshotError::Write)?;
                        written += (i * PAGE - from) as u64;
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = run {
                file.write_all_at(&chunk[from..], file_at + done + from as u64)
                    .map_err(SnapshotError::Write)?;
                written += (n - from) as u64;
            }
            done += n as u64;
        }
        file_at += len;
    }
    // The zero tail, if any, becomes a hole too.
    file.set_len(file_at).map_err(SnapshotError::Write)?;
    Ok(WriteStats {
        ram: ranges.iter().map(|r| r.1).sum(),
        written,
        elapsed: started.elapsed(),
    })
}
