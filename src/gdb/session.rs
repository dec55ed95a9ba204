//! The VMM's life with a gdb endpoint: the guest runs (or waits, with `--wait`) until a gdb
//! attaches; a session lasts until gdb detaches, disconnects, kills the VM or the guest ends; a
//! new gdb may attach afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::stub::{DisconnectReason, GdbStub};
use thiserror::Error;

use crate::gdb::arch::ArchChoice;
use crate::gdb::conn::{self, Client, GdbConnection, GdbEndpoint, Inbox, LoopInput, SharedInbox};
use crate::gdb::event_loop::{serve_client, stop_the_rest};
use crate::gdb::target::{TargetFault, VmTarget};
use crate::snapshot::post_mortem::PostMortem;
use crate::vmm::host_caps::HostCaps;
use crate::vmm::machine::{Machine, MachineError, ReportSink, HALT_POLL};
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::Protection;
use crate::vmm::outcome::{report_event, settle_halt, AfterHalt, RunEnd};
use crate::vmm::vcpu::{Vcpu, VcpuEvent};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("cannot listen for gdb: {0}")]
    Listen(std::io::Error),
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Target(#[from] TargetFault),
}

/// How gdb is served.
#[derive(Debug, Clone)]
pub struct GdbOptions {
    pub endpoint: GdbEndpoint,
    /// Hold the guest before its first instruction until gdb attaches.
    pub wait: bool,
    /// The register description a connection gets (`monitor arch` changes it for later ones).
    pub arch: ArchChoice,
    /// What to save when the run ends (`--dump-on-crash` only with no gdb attached).
    pub post_mortem: PostMortem,
}

/// How the run ended, and the event that ended it while no gdb was attached (what
/// `--dump-on-crash` judges).
type Ended = (RunEnd, Option<VcpuEvent>);

/// Runs the VM with a gdb endpoint until the guest ends or gdb kills it.
pub fn serve(
    vcpus: Vec<Vcpu>,
    ram: Arc<GuestRam>,
    slots: Protection,
    options: GdbOptions,
    interrupt: Arc<AtomicBool>,
    caps: HostCaps,
) -> Result<RunEnd, SessionError> {
    let (inbox, notifier) = Inbox::new().map_err(SessionError::Listen)?;
    let vcpu_notifier = notifier.clone();
    let sink: ReportSink = Arc::new(move |report| vcpu_notifier.send(LoopInput::Vcpu(report)));
    let machine = Machine::start_with_sink(vcpus, sink)?;
    let session = Arc::new(AtomicBool::new(false));
    let note = if options.wait {
        " (guest held before its first instruction)"
    } else {
        ""
    };
    conn::listen(&options.endpoint, notifier, session.clone(), note)
        .map_err(SessionError::Listen)?;
    let mut target = VmTarget::new(machine, ram, slots, caps, interrupt.clone());
    target.arch = options.arch;
    if !options.wait {
        target.resume_all()?;
    }
    let (end, event) = run_to_end(&mut target, &inbox, &session, &options)?;
    // Every vCPU is stopped (and our 0xCC bytes are out of memory) before the VM is saved.
    stop_the_rest(&mut target, &inbox)?;
    let ram = target.ram.clone();
    options
        .post_mortem
        .after(event.as_ref(), &end, &mut target.machine, &ram);
    Ok(end)
}

/// Serves the VM and each gdb that attaches until the run ends.
fn run_to_end(
    target: &mut VmTarget,
    inbox: &SharedInbox,
    session: &AtomicBool,
    options: &GdbOptions,
) -> Result<Ended, SessionError> {
    // vCPUs halted for good while no gdb was attached: the run ends when every vCPU that
    // started is among them.
    let mut halted = BTreeSet::new();
    loop {
        let input = inbox.borrow_mut().next(Some(HALT_POLL));
        if target.interrupt.swap(false, Ordering::SeqCst) {
            // Ctrl-C with no gdb attached: stop cleanly, as without gdb.
            stop_the_rest(target, inbox)?;
            target.pending.clear();
            eprintln!("gdbvisor: interrupted");
            return Ok((RunEnd::Interrupted, None));
        }
        match input {
            None => target.machine.kick_running(),
            Some(LoopInput::Vcpu((id, event))) => {
                target.machine.mark_stopped(id);
                let event = event.map_err(TargetFault::from)?;
                if event == VcpuEvent::Interrupted {
                    continue;
                }
                if event != VcpuEvent::Halted && !event.ends_run() {
                    // A report meant for a gdb that has gone (a step or a hit that raced its
                    // disconnect): nothing to do with it but let the vCPU go on.
                    log::debug!("vCPU {id}: {event:?} after gdb left; resumed");
                    target.machine.resume(id)?;
                    continue;
                }
                // Without gdb, a run ends as it would without a gdb endpoint.
                stop_the_rest(target, inbox)?;
                let (id, event) = if event == VcpuEvent::Halted {
                    let raced: Vec<_> = target.pending.drain(..).collect();
                    match settle_halt(&mut target.machine, &mut halted, id, raced)? {
                        AfterHalt::End(id, event) => (id, event),
                        AfterHalt::GoOn => {
                            target.resume_all_but(&halted)?;
                            continue;
                        }
                    }
                } else {
                    (id, event)
                };
                let end = report_event(&mut target.machine, id, event.clone(), target.caps)?;
                return Ok((end, Some(event)));
            }
            Some(LoopInput::NewClient(client)) => {
                let ended = attach(target, inbox, client, options, session)?;
                if let Some(ended) = ended {
                    return Ok(ended);
                }
            }
            // Left over from a gdb that has gone.
            Some(LoopInput::Byte(_) | LoopInput::ClientGone) => {}
        }
    }
}

/// One gdb session. `Some` when the VM is over; `None` when gdb left and the guest runs (or is
/// held) without it.
fn attach(
    target: &mut VmTarget,
    inbox: &SharedInbox,
    client: Client,
    options: &GdbOptions,
    session: &AtomicBool,
) -> Result<Option<Ended>, SessionError> {
    log::info!("gdb attached from {}", client.peer);
    stop_the_rest(target, inbox)?;
    inbox
        .borrow_mut()
        .attach_reader(client.reader, client.reader_fd);
    target.layout = match target.arch.fixed() {
        Some(layout) => layout,
        None => target.snapshot(0)?.layout(),
    };
    target.hold = false;
    let connection = GdbConnection::new(client.writer, inbox.clone());
    // Large packets make memory dumps fast: gdb reads up to PacketSize per `m`. Filled with
    // '#': gdbstub 0.7 validates a packet by scanning from its checksum to the next '#' in
    // the whole buffer, which in a zeroed 64 KiB buffer costs ~30 us per packet; with the
    // fill it stops right after the packet (or at the end of a longer earlier one).
    let mut packet_buffer = vec![b'#'; 0x10000];
    let stub = GdbStub::builder(connection)
        .with_packet_buffer(&mut packet_buffer)
        .build()
        .expect("a packet buffer is given");
    let result = serve_client(stub, target);
    // However the session ended, the client sees its connection close; the next may connect
    // at once (it waits in the inbox while this one's end is handled).
    inbox.borrow_mut().detach_reader();
    session.store(false, Ordering::SeqCst);
    if let Some(end) = target.run_end.clone() {
        return Ok(Some((end, None)));
    }
    match result {
        Ok(DisconnectReason::Kill) => {
            eprintln!("gdbvisor: gdb killed the VM");
            Ok(Some((RunEnd::Killed, None)))
        }
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {
            Ok(Some((RunEnd::Killed, None)))
        }
        Ok(DisconnectReason::Disconnect) | Err(_) => {
            if let Err(e) = &result {
                log::info!("gdb session ended: {e}");
            }
            // gdb may leave while the guest runs (an abrupt disconnect): stop it before touching
            // the vCPUs, and let an end it reached meanwhile end the run.
            stop_the_rest(target, inbox)?;
            target.forget_debugging()?;
            // Only an event that ends a run ends it now; what was reported for gdb (a step's
            // debug exit, a breakpoint or watch hit) means nothing without it.
            let ending = target.pending.drain(..).find(|(_, event)| event.ends_run());
            if let Some((id, event)) = ending {
                let end = report_event(&mut target.machine, id, event.clone(), target.caps)?;
                return Ok(Some((end, Some(event))));
            }
            if options.endpoint == GdbEndpoint::Stdio {
                // Nobody can attach again through stdin.
                eprintln!("gdbvisor: gdb went away from stdio; ending the VM");
                return Ok(Some((RunEnd::Killed, None)));
            }
            if target.hold {
                eprintln!("gdbvisor: gdb detached; the guest stays stopped for the next gdb (monitor hold)");
            } else {
                let running = target.resume_all()?;
                eprintln!(
                    "gdbvisor: gdb detached; the guest runs on ({running} vCPU{})",
                    if running == 1 { "" } else { "s" }
                );
            }
            Ok(None)
        }
    }
}
