//! `--dump-on-crash DIR`: when a run ends badly, its state is saved before the VM goes away.

use std::path::{Path, PathBuf};

use super::capture::capture;
use super::write_core;
use crate::vmm::machine::Machine;
use crate::vmm::memory::GuestRam;
use crate::vmm::outcome::RunEnd;
use crate::vmm::vcpu::VcpuEvent;

/// What to save when a run ends, and when.
#[derive(Debug, Clone, Default)]
pub struct PostMortem {
    /// Where `gdbvisor-<pid>-<reason>.core` goes; `None`: nothing is saved.
    pub dump_dir: Option<PathBuf>,
    /// The exit status the guest's isa-debug-exit should give; another one is a failure.
    pub expect_exit: Option<i32>,
}

impl PostMortem {
    /// The file name's reason when `event` (which ended the run as `end`) deserves a dump.
    pub fn reason(&self, event: &VcpuEvent, end: &RunEnd) -> Option<String> {
        self.dump_dir.as_ref()?;
        match (event, end) {
            (VcpuEvent::Shutdown, _) => Some("triple-fault".into()),
            (VcpuEvent::InternalError(_), _) => Some("kvm-internal-error".into()),
            (VcpuEvent::FailEntry { .. }, _) => Some("kvm-entry-failure".into()),
            (_, RunEnd::KvmFailure) => Some("kvm-failure".into()),
            (VcpuEvent::DebugExit(_), end) => {
                let status = end.status();
                (self.expect_exit.is_some_and(|want| want != status))
                    .then(|| format!("exit-{status}"))
            }
            _ => None,
        }
    }

    /// Saves the VM if `event` calls for it and prints the file's path (or why it failed); the
    /// run's exit status does not change either way.
    pub fn after(&self, event: &VcpuEvent, end: &RunEnd, machine: &mut Machine, ram: &GuestRam) {
        let (Some(dir), Some(reason)) = (&self.dump_dir, self.reason(event, end)) else {
            return;
        };
        let path = dir.join(format!("gdbvisor-{}-{reason}.core", std::process::id()));
        match save(&path, machine, ram) {
            Ok(stats) => eprintln!(
                "gdbvisor: state saved to {} ({stats}); open it with: gdbvisor --snapshot {} --gdb …",
                path.display(),
                path.display()
            ),
            Err(e) => eprintln!("gdbvisor: cannot save the state to {}: {e}", path.display()),
        }
    }
}

fn save(
    path: &Path,
    machine: &mut Machine,
    ram: &GuestRam,
) -> Result<super::WriteStats, super::SnapshotError> {
    let cpus = capture(machine)?;
    write_core(path, &cpus, ram)
}
