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
use crate::gdb::backend::{tid_of, Backend, Ended, Refusal, RunControl, Waited};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::{dump, msr, Lines, MonitorError};
use crate::snapshot::{CpuSnapshot, Snapshot};
use crate::vmm::memory::GuestRam;
use crate::vmm::outcome::RunEnd;

/// What gdb's console shows when asked to run a snapshot.
const CANNOT_RUN: &str = "gdbvisor: this is a snapshot: the guest cannot run (continue, step, breakpoints and watchpoints need a live VM); registers, memory and monitor commands work";

/// The error reply to a write: a snapshot is read-only (EROFS).
const READ_ONLY: u8 = 30;

/// The gdb target's backend over a snapshot: registers and memory read-only, no run control.
pub struct SnapshotBackend {
    snapshot: Snapshot,
}

impl SnapshotBackend {
    /// A backend serving `snapshot`.
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
    fn describe_thread(&mut self, id: u8) -> Result<String, TargetFault> {
        let cpu = self.saved(id);
        Ok(format!(
            "CPU#{id} [{:?}, CPL{}, {} in the snapshot]",
            cpu.mode(),
            cpu.sregs.cs.selector & 3,
            cpu.run_state()
        ))
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use gdbstub::common::Tid;
    use gdbstub::target::ext::base::multithread::{
        MultiThreadBase, MultiThreadResume, MultiThreadSingleStep,
    };
    use gdbstub::target::ext::breakpoints::{HwWatchpoint, SwBreakpoint, WatchKind};

    use super::*;
    use crate::gdb::arch::{ArchChoice, X86Registers};
    use crate::gdb::conn::Inbox;
    use crate::gdb::target::GdbTarget;
    use crate::snapshot::notes::blank_cpu;
    use crate::snapshot::Origin;

    /// Two vCPUs in real mode (no paging: linear is physical) over 2 MiB of RAM with a marker.
    fn target() -> GdbTarget<SnapshotBackend> {
        let ram = GuestRam::new(2 << 20).unwrap();
        ram.write(0x1000, b"saved").unwrap();
        let snapshot = Snapshot {
            path: PathBuf::from("unit.core"),
            origin: Origin::Gdbvisor,
            cpus: vec![blank_cpu(0), blank_cpu(0)],
            ram: Arc::new(ram),
            inferred: Vec::new(),
        };
        GdbTarget::new(SnapshotBackend::new(snapshot), ArchChoice::Mode)
    }

    fn tid(n: usize) -> Tid {
        Tid::new(n).unwrap()
    }

    #[test]
    fn reads_work_and_writes_are_refused_as_read_only() {
        let mut t = target();
        let mut buf = [0u8; 5];
        assert_eq!(t.read_addrs(0x1000, &mut buf, tid(2)).ok(), Some(5));
        assert_eq!(&buf, b"saved");
        assert_eq!(t.current_vcpu(), 1);
        assert!(matches!(
            t.write_addrs(0x1000, b"x", tid(1)),
            Err(TargetError::Errno(READ_ONLY))
        ));
        let mut regs = X86Registers::default();
        assert!(t.read_registers(&mut regs, tid(1)).is_ok());
        assert!(matches!(
            t.write_registers(&regs, tid(1)),
            Err(TargetError::Errno(READ_ONLY))
        ));
        assert!(matches!(
            t.read_addrs(0x1000, &mut buf, tid(3)),
            Err(TargetError::Errno(1))
        ));
        assert!(t.read_addrs(0x1000, &mut buf, tid(1)).is_ok());
        assert_eq!(
            &buf, b"saved",
            "the refused write left the snapshot as it was"
        );
    }

    #[test]
    fn run_control_is_accepted_and_does_nothing() {
        let mut t = target();
        assert!(matches!(t.add_sw_breakpoint(0x1000, 1), Ok(true)));
        assert!(matches!(
            t.add_hw_watchpoint(0x1000, 4, WatchKind::Write),
            Ok(true)
        ));
        t.clear_resume_actions().unwrap();
        t.set_resume_action_step(tid(1), None).unwrap();
        t.resume().unwrap();
        let mut buf = [0u8; 5];
        assert!(t.read_addrs(0x1000, &mut buf, tid(1)).is_ok());
        assert_eq!(&buf, b"saved", "no 0xCC planted");
    }

    /// What the stub writes to gdb, kept for the test to read.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_resume_stops_at_once_and_says_why_on_gdbs_console() {
        let mut t = target();
        let mut buf = [0u8; 1];
        assert!(t.read_addrs(0x1000, &mut buf, tid(2)).is_ok());
        let (inbox, _notifier) = Inbox::new().unwrap();
        let written = Written::default();
        let mut conn = GdbConnection::new(Box::new(written.clone()), inbox);
        let Ok(Waited::Stopped(stop)) = t.wait_for_stop(&mut conn) else {
            panic!("no stop");
        };
        assert_eq!(
            stop,
            MultiThreadStopReason::SignalWithThread {
                tid: tid(2),
                signal: Signal::SIGZERO
            }
        );
        let sent = written.0.lock().unwrap().clone();
        assert_eq!(sent, console_packet(&format!("{CANNOT_RUN}\n")));
        assert!(sent.starts_with(b"$O"));
    }

    #[test]
    fn console_packets_are_hex_with_their_checksum() {
        assert_eq!(console_packet("hi"), b"$O6869#2c".to_vec());
    }
}
