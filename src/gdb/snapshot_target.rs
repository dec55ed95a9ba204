//! A snapshot as a gdb backend: no KVM, no vCPU threads. Registers come from the saved state and
//! memory from the saved RAM, through the same target, walker and monitor commands as a live
//! VM. Nothing can run: `continue` and `stepi` stop at once with a message on gdb's console
//! saying so, and writes are refused.

use std::sync::Arc;

use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::{DisconnectReason, MultiThreadStopReason};
use gdbstub::target::TargetError;

use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::gdb::backend::{Backend, Ended, Refusal, RunControl, Waited};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::{dump, msr, Lines, MonitorError};
use crate::gdb::target::tid_of;
use crate::snapshot::{CpuSnapshot, Snapshot};
use crate::vmm::memory::GuestRam;
use crate::vmm::outcome::RunEnd;

/// What gdb's console shows when asked to run a snapshot.
const CANNOT_RUN: &str = "gdbvisor: this is a snapshot: the guest cannot run (continue, step, breakpoints and watchpoints need a live VM); registers, memory and monitor commands work";

/// The error reply to a write: a snapshot is read-only (EROFS).
const READ_ONLY: u8 = 30;

pub struct SnapshotBackend {
    snapshot: Snapshot,
}

impl SnapshotBackend {
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotBackend { snapshot }
    }

    /// vCPU `id`'s saved state; `id` names one of the snapshot's vCPUs (see [`Backend`]).
    fn saved(&self, id: u8) -> &CpuSnapshot {
        self.snapshot
            .cpus
            .get(usize::from(id))
            .unwrap_or(&self.snapshot.cpus[0])
    }
}

impl Backend for SnapshotBackend {
    fn vcpu_count(&self) -> usize {
        self.snapshot.cpus.len()
    }

    fn cpu(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        Ok(self.saved(id))
    }

    fn ram(&self) -> &Arc<GuestRam> {
        &self.snapshot.ram
    }

    /// `CPU#n [mode, CPL, saved state]`.
    fn describe_thread(&self, id: u8) -> String {
        let cpu = self.saved(id);
        format!(
            "CPU#{id} [{:?}, CPL{}, {} in the snapshot]",
            cpu.mode(),
            cpu.sregs.cs.selector & 3,
            cpu.run_state()
        )
    }

    /// Refused: gdb only says "cannot access", so the reason goes to gdbvisor's stderr.
    fn writable(&self, what: &str) -> Result<(), Refusal> {
        eprintln!("gdbvisor: {what} refused: a snapshot is read-only");
        Err(TargetError::Errno(READ_ONLY))
    }

    fn write_registers(
        &mut self,
        _id: u8,
        _file: &RegisterFile,
        _layout: RegLayout,
    ) -> Result<(), Refusal> {
        self.writable("register write")
    }

    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        match name {
            "msr" => msr::msr(args, msr::from_saved(self.saved(vcpu).clone())),
            // Writes the snapshot again, in gdbvisor's format (converts a QEMU dump).
            "dump" => dump(args, &self.snapshot.cpus, &self.snapshot.ram),
            _ => Err(MonitorError::Failed(format!(
                "'{name}' needs a live VM; this is a snapshot ({})",
                self.snapshot.path.display()
            ))),
        }
    }

    fn run_control(&mut self) -> Option<&mut dyn RunControl> {
        None
    }

    /// Nothing ran: say why on gdb's console, and report the stop at once.
    fn wait_for_stop(
        &mut self,
        conn: &mut GdbConnection,
        current: u8,
    ) -> Result<Waited, TargetFault> {
        let line = format!("{CANNOT_RUN}\n");
        if let Err(e) = conn
            .write_all(&console_packet(&line))
            .and_then(|()| conn.flush())
        {
            return Ok(Waited::Disconnected(e));
        }
        Ok(Waited::Stopped(MultiThreadStopReason::SignalWithThread {
            tid: tid_of(current),
            // Signal 0: gdb says only that the thread stopped, where it was.
            signal: Signal::SIGZERO,
        }))
    }

    fn detach(
        &mut self,
        how: Option<DisconnectReason>,
        _inbox: &SharedInbox,
        stdio: bool,
    ) -> Result<Option<Ended>, TargetFault> {
        if how == Some(DisconnectReason::Kill) {
            eprintln!("gdbvisor: gdb ended the session");
            return Ok(Some((RunEnd::Killed, None)));
        }
        if stdio {
            return Ok(Some((RunEnd::Killed, None)));
        }
        eprintln!("gdbvisor: gdb detached; waiting for the next one");
        Ok(None)
    }
}

/// The RSP `O` packet: text for gdb's console while it waits for a stop.
fn console_packet(text: &str) -> Vec<u8> {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    let body = format!("O{hex}");
    let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${body}#{sum:02x}").into_bytes()
}
