//! `gdbvisor --snapshot FILE [--gdb ENDPOINT]`: open a snapshot and serve it, or print it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;

use super::{Snapshot, SnapshotError};
use crate::gdb::arch::ArchChoice;
use crate::gdb::session::{GdbOptions, SessionError};
use crate::gdb::snapshot_target;
use crate::vmm::outcome::status;
use crate::vmm::state_text::CpuStateText;

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: SnapshotError,
    },
    #[error("{0}")]
    Gdb(#[from] SessionError),
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(ctrlc::Error),
}

impl OpenError {
    /// The exit status this error ends gdbvisor with: a file it cannot open is bad input.
    pub fn status(&self) -> i32 {
        match self {
            OpenError::Open { .. } => status::BAD_INPUT,
            _ => status::KVM_FAILURE,
        }
    }
}

/// Opens `path` (with `maxphyaddr` for the guest's MAXPHYADDR, when given); with `gdb`, serves
/// it until gdb is done, else prints every vCPU's registers.
pub fn open_and_serve(
    path: &Path,
    gdb: Option<GdbOptions>,
    maxphyaddr: Option<u8>,
) -> Result<i32, OpenError> {
    let snapshot = Snapshot::open_with(path, maxphyaddr).map_err(|source| OpenError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    eprintln!("gdbvisor: {}", snapshot.describe());
    for note in &snapshot.inferred {
        eprintln!("gdbvisor: {note}");
    }
    let Some(options) = gdb else {
        for (id, cpu) in snapshot.cpus.iter().enumerate() {
            println!("vCPU {id}: {:?}, {}", cpu.mode(), cpu.run_state());
            println!(
                "{}",
                CpuStateText {
                    regs: &cpu.regs,
                    sregs: &cpu.sregs,
                }
            );
        }
        return Ok(status::HALTED);
    };
    if options.arch == ArchChoice::Kernel {
        // No kernel file here: the CPU's mode is the best guess at what gdb loads.
        eprintln!(
            "gdbvisor: gdb register description {}, that of vCPU 0's mode (a snapshot has no kernel file; --gdb-arch to change)",
            snapshot.cpus[0].layout().name()
        );
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(OpenError::Signal)?;
    snapshot_target::serve(snapshot, &options, interrupt)?;
    Ok(status::HALTED)
}
