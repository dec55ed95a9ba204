//! Why a snapshot could not be opened, read or written.

use thiserror::Error;

use crate::vmm::memory::MemoryError;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("cannot write: {0}")]
    Write(std::io::Error),
    #[error("not an ELF file (no \\x7fELF magic): not a gdbvisor or QEMU snapshot")]
    NotElf,
    #[error("truncated file: {0}")]
    Truncated(String),
    #[error("corrupt file: {0}")]
    Corrupt(String),
    #[error("not a snapshot gdbvisor can open: {0}")]
    Foreign(String),
    #[error("no CPU state: the core file has neither gdbvisor's (GDBVISOR) nor QEMU's (QEMU) CPU-state notes (a process core dump?)")]
    NoCpuState,
    #[error("no guest memory: the core file has no PT_LOAD segment")]
    NoMemory,
    #[error("guest memory of the snapshot: {0}")]
    Memory(#[from] MemoryError),
    #[error("cannot read the VM's state: {0}")]
    Live(String),
}
