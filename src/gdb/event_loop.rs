//! One gdb client's session: gdbstub's state machine driven over the inbox. It blocks until the
//! backend reports a stop or gdb sends a byte (see [`Backend::wait_for_stop`]). Stop replies
//! carry the registers gdb reads at every stop, sparing it a `g` round trip.

use gdbstub::conn::ConnectionExt;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, GdbStubError, MultiThreadStopReason};
use thiserror::Error;

use crate::gdb::backend::{Backend, Waited};
use crate::gdb::conn::{GdbConnection, CTRL_C};
use crate::gdb::fault::TargetFault;
use crate::gdb::target::GdbTarget;

/// Why a gdb session ended other than by gdb's choice.
#[derive(Debug, Error)]
pub(crate) enum ClientError {
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
pub(crate) fn serve_client<B: Backend>(
    stub: GdbStub<'_, GdbTarget<B>, GdbConnection>,
    target: &mut GdbTarget<B>,
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
                // The stop that follows ends the Running state.
                target.backend.interrupt();
                gdb.interrupt_handled(target, None::<MultiThreadStopReason<u64>>)?
            }
            GdbStubStateMachine::Running(mut gdb) => {
                match target.wait_for_stop(gdb.borrow_conn())? {
                    Waited::Stopped(stop) => {
                        let expedited = target.expedited(&stop);
                        let mut regs = expedited.iter().map(|(id, bytes)| (*id, bytes.as_slice()));
                        gdb.report_stop_with_regs(target, stop, &mut regs)?
                    }
                    Waited::CtrlC => gdb.incoming_data(target, CTRL_C)?,
                    Waited::Disconnected(e) => return Err(ClientError::Connection(e)),
                }
            }
        }
    }
}
