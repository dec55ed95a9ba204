//! What is saved when a run ends: `--dump-on-crash DIR` when it ends badly, `--dump-at-exit
//! FILE` whatever ended it. Both are snapshots of the stopped VM, taken once.

use std::path::PathBuf;

use super::capture::capture;
use super::write::write_core;
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
    /// Saved at every end of the run (`--dump-at-exit`).
    pub at_exit: Option<PathBuf>,
}

impl PostMortem {
    /// The file name's reason when `event` (which ended the run as `end`) deserves a dump.
    pub(crate) fn reason(&self, event: &VcpuEvent, end: &RunEnd) -> Option<String> {
        self.dump_dir.as_ref()?;
        match (event, end) {
            (VcpuEvent::Shutdown, _) => Some("triple-fault".into()),
            (VcpuEvent::InternalError(_), _) => Some("kvm-internal-error".into()),
            (VcpuEvent::FailEntry { .. }, _) => Some("kvm-entry-failure".into()),
            (VcpuEvent::NoBios(_), _) => Some("no-bios".into()),
            (_, RunEnd::KvmFailure) => Some("kvm-failure".into()),
            (VcpuEvent::DebugExit(_), end) => {
                let status = end.status();
                (self.expect_exit.is_some_and(|want| want != status))
                    .then(|| format!("exit-{status}"))
            }
            _ => None,
        }
    }

    /// Saves the stopped VM to every file the run's end calls for and says where (or why it
    /// could not); the run's exit status does not change either way. `event` is what ended a
    /// run with no gdb attached; `None` when gdb was attached, where a crash stops in gdb instead
    /// and only `--dump-at-exit` applies.
    pub(crate) fn after(
        &self,
        event: Option<&VcpuEvent>,
        end: &RunEnd,
        machine: &mut Machine,
        ram: &GuestRam,
    ) {
        let crash = match (&self.dump_dir, event.and_then(|e| self.reason(e, end))) {
            (Some(dir), Some(reason)) => {
                Some(dir.join(format!("gdbvisor-{}-{reason}.core", std::process::id())))
            }
            _ => None,
        };
        let paths: Vec<PathBuf> = crash.into_iter().chain(self.at_exit.clone()).collect();
        if paths.is_empty() {
            return;
        }
        let cpus = match capture(machine) {
            Ok(cpus) => cpus,
            Err(e) => {
                for path in &paths {
                    eprintln!("gdbvisor: cannot save the state to {}: {e}", path.display());
                }
                return;
            }
        };
        for path in &paths {
            match write_core(path, &cpus, ram) {
                Ok(stats) => eprintln!(
                    "gdbvisor: state saved to {} ({stats}); open it with: gdbvisor --snapshot {} --gdb …",
                    path.display(),
                    path.display()
                ),
                Err(e) => eprintln!("gdbvisor: cannot save the state to {}: {e}", path.display()),
            }
        }
    }
}
