//! What a monitor command reads and acts on, and how it fails.

use std::sync::Arc;

use thiserror::Error;

use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::fault::TargetFault;
use crate::snapshot::CpuSnapshot;
use crate::vmm::memory::GuestRam;

/// Why a command printed no result.
#[derive(Debug, Error)]
pub enum MonitorError {
    /// Bad or missing arguments: the text is the command's usage line.
    #[error("{0}")]
    Usage(String),
    /// The command ran, but what was asked for does not exist or cannot be read.
    #[error("error: {0}")]
    Failed(String),
    /// The VMM could not answer at all (a vCPU is gone or stuck): gdb hears about it.
    #[error(transparent)]
    Target(#[from] TargetFault),
}

pub(crate) type Lines = Result<Vec<String>, MonitorError>;

/// What the monitor commands read and act on: the gdb target, over a live VM or a snapshot.
/// Every view (tables, walks, page tables, memory) needs only a vCPU's state and guest RAM, so
/// both serve the same commands.
pub(crate) trait MonitorHost {
    fn vcpu_count(&self) -> usize;
    /// The vCPU of gdb's current thread (commands act on it without a `cpu N` prefix).
    fn current_vcpu(&self) -> u8;
    /// vCPU `id`'s state at this stop.
    fn cpu_state(&mut self, id: u8) -> Result<CpuSnapshot, TargetFault>;
    fn guest_ram(&self) -> Arc<GuestRam>;
    /// The register description this gdb session is served.
    fn served_layout(&self) -> RegLayout;
    /// `arch mode|LAYOUT`: the description gdb connections get from now on.
    fn set_arch(&mut self, choice: ArchChoice);
    /// `phys on|off`: gdb's memory addresses are guest-physical (on) or linear.
    fn set_phys_mode(&mut self, on: bool);
    /// `threads`: one line per vCPU.
    fn thread_lines(&mut self) -> Result<Vec<String>, TargetFault>;
    /// The commands whose answer depends on what is behind the target: `hold`, `catch`, `msr`,
    /// `dump`.
    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines;
}
