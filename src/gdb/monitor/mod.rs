//! `monitor` commands: the x86 views gdb lacks, on the vCPU of gdb's current thread (or the one
//! a `cpu N` prefix names). One file per family; this one parses and dispatches.

use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use crate::gdb::target::{TargetFault, VmTarget};

impl MonitorCmd for VmTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), TargetFault> {
        let text = String::from_utf8_lossy(cmd);
        let mut words: Vec<&str> = text.split_whitespace().collect();
        // `cpu N CMD…` runs CMD on vCPU N instead of gdb's current thread.
        let vcpu = match words.as_slice() {
            ["cpu", n, ..] => match n.parse::<u8>() {
                Ok(n) if usize::from(n) < self.vcpu_count() => {
                    words.drain(..2);
                    n
                }
                _ => {
                    gdbstub::outputln!(
                        out,
                        "usage: cpu N COMMAND (N from 0 to {})",
                        self.vcpu_count() - 1
                    );
                    return Ok(());
                }
            },
            _ => self.current,
        };
        let _ = vcpu;
        match words.as_slice() {
            ["hold"] => {
                self.hold = true;
                gdbstub::outputln!(out, "the guest stays stopped when this gdb disconnects");
            }
            ["arch"] => {
                // What gdb should `set architecture` to for the mode vCPU 0 is in now, and
                // what this session serves (the helper reconnects when they differ).
                let now = self.snapshot(0)?.layout();
                gdbstub::outputln!(out, "{} {}", now.architecture(), self.layout.architecture());
            }
            ["phys", "on"] => {
                self.phys_mode = true;
                gdbstub::outputln!(out, "gdb memory addresses are guest-physical now");
            }
            ["phys", "off"] => {
                self.phys_mode = false;
                gdbstub::outputln!(
                    out,
                    "gdb memory addresses are linear (through the page tables) now"
                );
            }
            ["threads"] | ["cpus"] => {
                self.snapshot_all()?;
                for id in 0..self.vcpu_count() as u8 {
                    gdbstub::outputln!(out, "{}", self.describe_thread(id));
                }
            }
            [] | ["help"] => {
                gdbstub::outputln!(
                    out,
                    "hold      keep the guest stopped when gdb disconnects (for a reconnect)"
                );
                gdbstub::outputln!(out, "threads   each vCPU's mode, CPL and state");
                gdbstub::outputln!(
                    out,
                    "phys on|off  gdb memory access by physical address (on) or linear (off)"
                );
            }
            _ => gdbstub::outputln!(out, "unknown monitor command '{text}'; try 'monitor help'"),
        }
        Ok(())
    }
}
