//! gdbstub's blocking event loop over the inbox: it blocks until a vCPU reports or gdb sends a
//! byte; while vCPUs run it wakes every [`HALT_POLL`] only to kick them for halt detection.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::MultiThreadStopReason;

use crate::gdb::conn::{disconnected, GdbConnection, LoopInput, SharedInbox};
use crate::gdb::target::{TargetFault, VmTarget};
use crate::vmm::machine::HALT_POLL;
use crate::vmm::vcpu::VcpuEvent;

pub enum VmEventLoop {}

type WaitResult = Result<
    Event<MultiThreadStopReason<u64>>,
    WaitForStopReasonError<crate::gdb::target::TargetFault, std::io::Error>,
>;

/// Stops every vCPU still running and waits for each to report; reports other than the
/// requested stop are kept for the next resume (all-stop: gdb hears them one at a time). A vCPU
/// that does not stop within [`STOP_TIMEOUT`] of kicks is stuck inside the host's KVM.
pub fn stop_the_rest(target: &mut VmTarget, inbox: &SharedInbox) -> Result<(), TargetFault> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    target.machine.stop_all();
    let mut later = Vec::new();
    while target.machine.any_running() {
        if Instant::now() >= deadline {
            inbox.borrow_mut().defer_all(later);
            return Err(TargetFault::Stuck(target.machine.running_ids()));
        }
        let input = inbox.borrow_mut().next(Some(HALT_POLL));
        match input {
            Some(LoopInput::Vcpu((id, event))) => {
                target.machine.mark_stopped(id);
                match event {
                    Ok(VcpuEvent::Interrupted) => {}
                    Ok(event) => target.pending.push_back((id, event)),
                    Err(e) => log::warn!("vCPU {id}: {e}"),
                }
            }
            Some(other) => later.push(other),
            None => target.machine.stop_all(),
        }
    }
    inbox.borrow_mut().defer_all(later);
    target.all_stopped();
    Ok(())
}

/// How long kicks may take to stop a running vCPU before it counts as stuck.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl BlockingEventLoop for VmEventLoop {
    type Target = VmTarget;
    type Connection = GdbConnection;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(target: &mut VmTarget, conn: &mut GdbConnection) -> WaitResult {
        let inbox = conn.inbox();
        if let Some(stop) = target.dead_stop() {
            target.all_stopped();
            return Ok(Event::TargetStopped(stop));
        }
        while let Some((id, event)) = target.pending.pop_front() {
            if let Some(stop) = target.stop_reason(id, event) {
                target.all_stopped();
                return Ok(Event::TargetStopped(stop));
            }
        }
        loop {
            if target.interrupt.swap(false, Ordering::SeqCst) {
                // Ctrl-C in the VMM's terminal breaks into the attached gdb.
                target.machine.stop_all();
            }
            let input = inbox.borrow_mut().next(Some(HALT_POLL));
            match input {
                None => target.machine.kick_running(),
                Some(LoopInput::Byte(byte)) => return Ok(Event::IncomingData(byte)),
                Some(LoopInput::Vcpu((id, event))) => {
                    target.machine.mark_stopped(id);
                    let event = event.map_err(|e| WaitForStopReasonError::Target(e.into()))?;
                    if let Some(stop) = target.stop_reason(id, event) {
                        stop_the_rest(target, &inbox).map_err(WaitForStopReasonError::Target)?;
                        return Ok(Event::TargetStopped(stop));
                    }
                }
                Some(LoopInput::ClientGone) => {
                    return Err(WaitForStopReasonError::Connection(disconnected()))
                }
                // The listener refuses other clients while this one is attached.
                Some(LoopInput::NewClient(_)) => {}
            }
        }
    }

    fn on_interrupt(
        target: &mut VmTarget,
    ) -> Result<Option<MultiThreadStopReason<u64>>, crate::gdb::target::TargetFault> {
        target.machine.stop_all();
        Ok(None)
    }
}
