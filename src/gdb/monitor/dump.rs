//! `dump FILE`, which a live VM and a snapshot both answer.

use std::path::Path;

use super::help::usage;
use super::host::{Lines, MonitorError};
use crate::snapshot::{write_core, CpuSnapshot};
use crate::vmm::memory::GuestRam;

/// `dump FILE`: writes the vCPUs and RAM as a gdbvisor snapshot (a path may contain spaces).
pub(crate) fn dump(args: &[&str], cpus: &[CpuSnapshot], ram: &GuestRam) -> Lines {
    if args.is_empty() {
        return Err(usage("dump"));
    }
    let file = args.join(" ");
    let stats = write_core(Path::new(&file), cpus, ram)
        .map_err(|e| MonitorError::Failed(format!("{file}: {e}")))?;
    Ok(vec![format!(
        "saved {} vCPU{} and {stats} to {file}",
        cpus.len(),
        if cpus.len() == 1 { "" } else { "s" }
    )])
}
