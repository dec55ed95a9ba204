//! One gdb client's session: gdbstub's state machine driven over the inbox. It blocks until a
//! vCPU reports or gdb sends a byte; while vCPUs run it wakes every [`HALT_POLL`] only to kick
//! them for halt detection. Stop replies carry the registers gdb reads at every stop, sparing
//! it a `g` round trip.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gdbstub::conn::ConnectionExt;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, GdbStubError, MultiThreadStopReason};
use thiserror::Error;

use crate::gdb::conn::{disconnected, GdbConnection, LoopInput, SharedInbox};
use crate::gdb::target::{TargetFault, VmTarget};
use crate::vmm::machine::HALT_POLL;
use crate::vmm::vcpu::VcpuEvent;

/// Why a gdb session ended other than by gdb's choice.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("gdb protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Target(#[from] TargetFault),
    #[error("gdb connection: {0}")]
    Connection(std::io::Error),
}

impl From<GdbStubError<TargetFault, std::io::Error>> for ClientError {
    fn from(e: GdbStubError<TargetFault, std::io::Error>) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// Serves one gdb client until it detaches, disconnects or kills the VM.
pub fn serve_client(
    stub: GdbStub<'_, VmTarget, GdbConnection>,
    target: &mut VmTarget,
) -> Result<DisconnectReason, ClientError> {
    let mut gdb = stub.run_state_machine(target)?;
    loop {
        gdb = match gdb {
            GdbStubStateMachine::Idle(mut gdb) => {
                let byte = gdb.borrow_conn().read().map_err(ClientError::Connection)?;
                gdb.incoming_data(target, byte)?
            }
            GdbStubStateMachine::Disconnected(gdb) => return Ok(gdb.get_reason()),
            GdbStubStateMachine::CtrlCInterrupt(gdb) => {
                // The vCPUs' reports of the stop end the Running state that follows.
                target.machine.stop_all();
                gdb.interrupt_handled(target, None::<MultiThreadStopReason<u64>>)?
            }
            GdbStubStateMachine::Running(mut gdb) => {
                match wait_for_stop_reason(target, gdb.borrow_conn())? {
                    Waited::Stopped(stop) => {
                        let expedited = target.expedited(&stop);
                        let mut regs = expedited.iter().map(|(id, bytes)| (*id, bytes.as_slice()));
                        gdb.report_stop_with_regs(target, stop, &mut regs)?
                    }
                    Waited::Byte(byte) => gdb.incoming_data(target, byte)?,
                }
            }
        }
    }
}

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

/// gdb's interrupt request, the one byte read while the guest runs.
const CTRL_C: u8 = 0x03;

/// What ended a wait while the guest runs.
enum Waited {
    Stopped(MultiThreadStopReason<u64>),
    /// A Ctrl-C from gdb.
    Byte(u8),
}

fn wait_for_stop_reason(
    target: &mut VmTarget,
    conn: &mut GdbConnection,
) -> Result<Waited, ClientError> {
    let inbox = conn.inbox();
    if let Some(stop) = target.dead_stop() {
        target.all_stopped();
        return Ok(Waited::Stopped(stop));
    }
    while let Some((id, event)) = target.pending.pop_front() {
        if let Some(stop) = target.stop_reason(id, event) {
            target.all_stopped();
            return Ok(Waited::Stopped(stop));
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
            Some(LoopInput::Byte(CTRL_C)) => return Ok(Waited::Byte(CTRL_C)),
            // All-stop: while the guest runs only an interrupt is read, as gdbserver does
            // (it discards anything else). A packet handled now would touch vCPUs that are
            // running, and a resume in it would start a vCPU twice.
            Some(LoopInput::Byte(byte)) => {
                log::debug!("byte {byte:#04x} from gdb while the guest runs: ignored");
            }
            Some(LoopInput::Vcpu((id, event))) => {
                target.machine.mark_stopped(id);
                let event = event.map_err(TargetFault::from)?;
                if let Some(stop) = target.stop_reason(id, event) {
                    stop_the_rest(target, &inbox)?;
                    return Ok(Waited::Stopped(stop));
                }
            }
            Some(LoopInput::ClientGone) => return Err(ClientError::Connection(disconnected())),
            // The listener refuses other clients while this one is attached.
            Some(LoopInput::NewClient(_)) => {}
        }
    }
}
