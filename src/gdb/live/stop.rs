//! Stopping a live VM and telling gdb why: every vCPU is stopped before gdb hears of a stop
//! (all-stop), reports that raced the first are held back for the next resume, and each report
//! becomes a gdb stop reason. While vCPUs run, the wait wakes every [`HALT_POLL`] only to kick
//! them for halt detection.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gdbstub::common::Signal;
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind;

use super::trace_stops::TraceStop;
use super::vm::LiveVm;
use crate::gdb::backend::{tid_of, Action, Waited};
use crate::gdb::conn::{disconnected, GdbConnection, LoopInput, SharedInbox, CTRL_C};
use crate::gdb::fault::TargetFault;
use crate::vmm::machine::HALT_POLL;
use crate::vmm::outcome::{vcpu_state, RunEnd};
use crate::vmm::vcpu::VcpuEvent;

/// How long kicks may take to stop a running vCPU before it counts as stuck.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl LiveVm {
    /// The first held-back stop of a vCPU the current resume runs, if any; of any vCPU when
    /// the resume runs none (it must still end in a stop).
    pub(crate) fn pending_of_runner(&self) -> Option<usize> {
        let runs_none = self.vcpus.runners().is_empty();
        self.pending
            .iter()
            .position(|&(id, _)| runs_none || self.vcpus.action(id) != Action::Stay)
    }

    /// Takes [`LiveVm::pending_of_runner`]'s stop.
    pub(crate) fn take_pending_of_runner(&mut self) -> Option<(u8, VcpuEvent)> {
        let at = self.pending_of_runner()?;
        self.pending.remove(at)
    }

    /// Stops every vCPU still running and waits for each to report; reports other than the
    /// requested stop are kept for the next resume (all-stop: gdb hears them one at a time). A
    /// vCPU that does not stop within [`STOP_TIMEOUT`] of kicks is stuck inside the host's KVM.
    pub(crate) fn stop_the_rest(&mut self, inbox: &SharedInbox) -> Result<(), TargetFault> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let machine = &mut self.vm.machine;
        machine.stop_all();
        let mut later = Vec::new();
        while machine.any_running() {
            if Instant::now() >= deadline {
                inbox.borrow_mut().defer_all(later);
                return Err(TargetFault::Stuck(machine.running_ids()));
            }
            let input = inbox.borrow_mut().next(Some(HALT_POLL));
            match input {
                Some(LoopInput::Vcpu((id, event))) => {
                    machine.mark_stopped(id);
                    match event {
                        Ok(VcpuEvent::Interrupted) => {}
                        Ok(event) => self.pending.push_back((id, event)),
                        Err(e) => log::warn!("vCPU {id}: {e}"),
                    }
                }
                Some(other) => later.push(other),
                None => machine.stop_all(),
            }
        }
        inbox.borrow_mut().defer_all(later);
        self.all_stopped();
        Ok(())
    }

    /// Called once every vCPU has stopped: take our 0xCC bytes out of guest memory.
    pub(crate) fn all_stopped(&mut self) {
        self.debug.breakpoints.unplant(&self.vm.ram);
        self.vcpus.all_stay();
    }

    /// After a resume: the stop gdb hears next (a dead vCPU's, one held back, or the first a
    /// running vCPU reports), or a byte from gdb.
    pub(crate) fn next_stop(&mut self, conn: &mut GdbConnection) -> Result<Waited, TargetFault> {
        let inbox = conn.inbox();
        if let Some(stop) = self.dead_stop() {
            self.all_stopped();
            return Ok(Waited::Stopped(stop));
        }
        // Stops the exception trace handled by itself: the vCPUs resume as gdb asked.
        let mut swallowed = false;
        loop {
            while let Some((id, event)) = self.take_pending_of_runner() {
                let stop = match self.attached_trace_stop(id, event, &inbox, conn)? {
                    TraceStop::Swallowed => {
                        swallowed = true;
                        continue;
                    }
                    TraceStop::Report(stop) => Some(stop),
                    TraceStop::NotOurs(event) => self.stop_reason(id, event),
                };
                if let Some(stop) = stop {
                    self.all_stopped();
                    return Ok(Waited::Stopped(stop));
                }
            }
            if std::mem::take(&mut swallowed) {
                self.resume_as_before()?;
                continue;
            }
            if self.interrupt.swap(false, Ordering::SeqCst) {
                // Ctrl-C in the VMM's terminal breaks into the attached gdb.
                self.vm.machine.stop_all();
            }
            let input = inbox.borrow_mut().next(Some(HALT_POLL));
            match input {
                None => {
                    self.vm.machine.kick_running();
                    let continuing = !self.resumed_actions.contains(&Action::Step);
                    if continuing && self.refresh_due() {
                        // The trace reads the IDT again at the resume.
                        self.stop_the_rest(&inbox)?;
                        swallowed = true;
                    }
                }
                Some(LoopInput::Byte(CTRL_C)) => return Ok(Waited::CtrlC),
                // All-stop: while the guest runs only an interrupt is read, as gdbserver does
                // (it discards anything else). A packet handled now would touch vCPUs that are
                // running, and a resume in it would start a vCPU twice.
                Some(LoopInput::Byte(byte)) => {
                    log::debug!("byte {byte:#04x} from gdb while the guest runs: ignored");
                }
                Some(LoopInput::Vcpu((id, event))) => {
                    self.vm.machine.mark_stopped(id);
                    let stop = match self.attached_trace_stop(id, event?, &inbox, conn)? {
                        TraceStop::Swallowed => {
                            swallowed = true;
                            None
                        }
                        TraceStop::Report(stop) => Some(stop),
                        TraceStop::NotOurs(event) => self.stop_reason(id, event),
                    };
                    if let Some(stop) = stop {
                        self.stop_the_rest(&inbox)?;
                        return Ok(Waited::Stopped(stop));
                    }
                    if swallowed {
                        self.stop_the_rest(&inbox)?;
                    }
                }
                Some(LoopInput::ClientGone) => return Ok(Waited::Disconnected(disconnected())),
                // The listener refuses other clients while this one is attached.
                Some(LoopInput::NewClient(_)) => {}
            }
        }
    }

    /// A dead vCPU asked to run reports its end again instead.
    fn dead_stop(&self) -> Option<MultiThreadStopReason<u64>> {
        let (id, signal) = self.vcpus.dead_runner()?;
        Some(MultiThreadStopReason::SignalWithThread {
            tid: tid_of(id),
            signal,
        })
    }

    /// Turns a vCPU report into what gdb should hear; `None` for reports that need no stop.
    fn stop_reason(&mut self, id: u8, event: VcpuEvent) -> Option<MultiThreadStopReason<u64>> {
        let tid = tid_of(id);
        let with_signal = |signal| MultiThreadStopReason::SignalWithThread { tid, signal };
        Some(match event {
            VcpuEvent::Debug(info) => self.debug.debug_stop(id, tid, &info),
            VcpuEvent::SoftwareBreakpoint { .. } => MultiThreadStopReason::SwBreak(tid),
            VcpuEvent::ModeChange { from, to } => {
                eprintln!(
                    "gdbvisor: vCPU {id} changed mode: {:?}/{:?} -> {:?}/{:?} (seen at the first exit after the switch)",
                    from.cpu, from.paging, to.cpu, to.paging
                );
                with_signal(Signal::SIGTRAP)
            }
            VcpuEvent::WatchWrite { phys, len } => {
                match self.debug.watchpoints.hit(phys, len as u64) {
                    Some(addr) => MultiThreadStopReason::Watch {
                        tid,
                        kind: WatchKind::Write,
                        addr,
                    },
                    None => with_signal(Signal::SIGTRAP),
                }
            }
            // Yielded never leaves the machine; were it to, it is a stop without a cause.
            VcpuEvent::Interrupted | VcpuEvent::Yielded => with_signal(Signal::SIGINT),
            // Only the trace without gdb asks for it: a re-read of the IDT, no stop.
            VcpuEvent::IdtChanged => return None,
            VcpuEvent::Halted => {
                eprintln!("gdbvisor: vCPU {id} halted with interrupts disabled (reported to gdb as SIGSTOP)");
                with_signal(Signal::SIGSTOP)
            }
            VcpuEvent::DebugExit(value) => {
                let end = RunEnd::DebugExit(value);
                let status = end.status() as u8;
                self.run_end = Some(end);
                MultiThreadStopReason::Exited(status)
            }
            VcpuEvent::Reset => {
                eprintln!(
                    "gdbvisor: guest reset the machine through the i8042; gdbvisor does not reboot"
                );
                self.run_end = Some(RunEnd::Reset);
                MultiThreadStopReason::Exited(0)
            }
            // Not dead: the vCPU is back on the instruction, which a continue runs again (or
            // the user first fills the vector, or moves $pc past it).
            VcpuEvent::NoBios(stop) => {
                eprintln!("gdbvisor: {stop} (reported to gdb as SIGILL)");
                with_signal(Signal::SIGILL)
            }
            VcpuEvent::Shutdown => {
                eprintln!("gdbvisor: triple fault on vCPU {id} (KVM_EXIT_SHUTDOWN); stopped in gdb as SIGSEGV, memory intact; registers as KVM reports them:");
                if let Ok(state) = vcpu_state(&mut self.vm.machine, id) {
                    eprintln!("{state}");
                }
                self.vcpus.set_dead(id, Signal::SIGSEGV);
                with_signal(Signal::SIGSEGV)
            }
            other @ (VcpuEvent::InternalError(_)
            | VcpuEvent::FailEntry { .. }
            | VcpuEvent::Unhandled(_)) => {
                eprintln!(
                    "gdbvisor: vCPU {id} cannot continue: {other:?}; stopped in gdb as SIGILL"
                );
                self.vcpus.set_dead(id, Signal::SIGILL);
                with_signal(Signal::SIGILL)
            }
        })
    }
}
