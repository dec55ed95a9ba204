//! Serving gdb, one client at a time, until the run ends: a live VM runs (or waits, with
//! `--wait`) until a gdb attaches, and a session lasts until gdb detaches, disconnects, kills the
//! VM or the guest ends; a snapshot waits for gdb and serves it until gdb kills it. A new gdb
//! may attach after one leaves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::stub::GdbStub;
use thiserror::Error;

use crate::gdb::arch::ArchChoice;
use crate::gdb::backend::{Backend, Ended};
use crate::gdb::conn::{self, Client, GdbConnection, GdbEndpoint, Inbox, LoopInput, SharedInbox};
use crate::gdb::event_loop::serve_client;
use crate::gdb::fault::TargetFault;
use crate::gdb::live::arriving::{Arriving, MakeLive};
use crate::gdb::live::exceptions::ExceptionTrace;
use crate::gdb::live::LiveVm;
use crate::gdb::snapshot_target::SnapshotBackend;
use crate::gdb::target::GdbTarget;
use crate::snapshot::post_mortem::PostMortem;
use crate::snapshot::Snapshot;
use crate::vmm::host_caps::HostCaps;
use crate::vmm::machine::{Machine, MachineError, ReportSink, HALT_POLL};
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::Protection;
use crate::vmm::outcome::RunEnd;
use crate::vmm::vcpu::Vcpu;

/// Why a gdb session ended in error.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The endpoint cannot be listened on.
    #[error("cannot listen for gdb: {0}")]
    Listen(std::io::Error),
    /// The vCPU threads failed.
    #[error("{0}")]
    Machine(#[from] MachineError),
    /// The target failed.
    #[error("{0}")]
    Target(#[from] TargetFault),
}

/// How gdb is served.
#[derive(Debug, Clone)]
pub struct GdbOptions {
    /// Where gdb connects.
    pub endpoint: GdbEndpoint,
    /// Hold the guest before its first instruction until gdb attaches.
    pub wait: bool,
    /// The register description a connection gets (`monitor arch` changes it for later ones).
    pub arch: ArchChoice,
    /// What to save when the run ends (`--dump-on-crash` only with no gdb attached).
    pub post_mortem: PostMortem,
}

/// What makes the vCPUs and their memory slots; its error is the message gdbvisor ends with.
pub(crate) type MakeVcpus = Box<dyn FnOnce() -> Result<(Vec<Vcpu>, Protection), String> + Send>;

/// Runs the VM `make` makes, with `cpus` vCPUs around `ram`, and a gdb endpoint, until the
/// guest ends or gdb kills it; `trace`: the exception trace of `--trace-exceptions`. With
/// `wait` the VM is made while gdb attaches (see [`Arriving`]).
pub(crate) fn serve(
    make: MakeVcpus,
    cpus: u32,
    ram: Arc<GuestRam>,
    options: GdbOptions,
    trace: Option<ExceptionTrace>,
    interrupt: Arc<AtomicBool>,
    caps: HostCaps,
) -> Result<RunEnd, SessionError> {
    let (inbox, notifier) = Inbox::new().map_err(SessionError::Listen)?;
    let vcpu_notifier = notifier.clone();
    let sink: ReportSink = Arc::new(move |report| vcpu_notifier.send(LoopInput::Vcpu(report)));
    let make_live = {
        let (ram, interrupt) = (ram.clone(), interrupt.clone());
        move || -> Result<LiveVm, String> {
            let (vcpus, slots) = make()?;
            let machine = Machine::start_with_sink(vcpus, sink).map_err(|e| e.to_string())?;
            Ok(LiveVm::new(machine, ram, slots, caps, interrupt, trace))
        }
    };
    let backend = if options.wait {
        let making: MakeLive = Box::new(move || {
            let live = make_live()?;
            // iced-x86's tables, which the first step decodes with, are built while gdb reads
            // the target description (not on the way to a guest that runs at once).
            crate::x86::insn::warm_decoder();
            Ok(live)
        });
        Arriving::making(cpus as usize, ram, making)
    } else {
        Arriving::made(make_live().map_err(TargetFault::Unmade)?)
    };
    let session = Arc::new(AtomicBool::new(false));
    let note = if options.wait {
        " (guest held before its first instruction)"
    } else {
        ""
    };
    conn::listen(&options.endpoint, notifier, session.clone(), note)
        .map_err(SessionError::Listen)?;
    let mut target = GdbTarget::new(backend, options.arch);
    let mut ended = None;
    if !options.wait {
        let live = target.backend.live()?;
        if live.trace.is_some() {
            ended = live.resume_unattended()?;
        } else {
            live.resume_all()?;
        }
    }
    let ended = match ended {
        Some(ended) => ended,
        None => serve_clients(&mut target, &inbox, &session, Some(&options), &interrupt)?,
    };
    finish(target.backend.live()?, &inbox, ended, &options.post_mortem)
}

/// Runs the VM without gdb, with the exception trace on, until the guest ends: the live
/// backend stops at the IDT's handler entries, and every other stop ends the run as it does
/// without tracing.
pub(crate) fn run_traced(
    vcpus: Vec<Vcpu>,
    ram: Arc<GuestRam>,
    slots: Protection,
    trace: ExceptionTrace,
    post_mortem: &PostMortem,
    interrupt: Arc<AtomicBool>,
    caps: HostCaps,
) -> Result<RunEnd, SessionError> {
    let (inbox, notifier) = Inbox::new().map_err(SessionError::Listen)?;
    let sink: ReportSink = Arc::new(move |report| notifier.send(LoopInput::Vcpu(report)));
    let machine = Machine::start_with_sink(vcpus, sink)?;
    let mut live = LiveVm::new(machine, ram, slots, caps, interrupt.clone(), Some(trace));
    let ended = live.resume_unattended()?;
    let mut target = GdbTarget::new(live, ArchChoice::Kernel);
    let ended = match ended {
        Some(ended) => ended,
        None => {
            let session = AtomicBool::new(false);
            serve_clients(&mut target, &inbox, &session, None, &interrupt)?
        }
    };
    finish(&mut target.backend, &inbox, ended, post_mortem)
}

/// The run is over: every vCPU stopped (and our 0xCC bytes out of memory) before the VM is
/// saved; the trace's last lines.
fn finish(
    live: &mut LiveVm,
    inbox: &SharedInbox,
    (end, event): Ended,
    post_mortem: &PostMortem,
) -> Result<RunEnd, SessionError> {
    live.stop_the_rest(inbox)?;
    if let Some(trace) = live.trace.as_mut() {
        trace.finish();
    }
    let vm = &mut live.vm;
    post_mortem.after(event.as_ref(), &end, &mut vm.machine, &vm.ram);
    Ok(end)
}

/// Serves gdb from `snapshot` until gdb kills it, or (stdio) goes away, or Ctrl-C.
pub(crate) fn serve_snapshot(
    snapshot: Snapshot,
    options: &GdbOptions,
    interrupt: Arc<AtomicBool>,
) -> Result<(), SessionError> {
    let (inbox, notifier) = Inbox::new().map_err(SessionError::Listen)?;
    let session = Arc::new(AtomicBool::new(false));
    conn::listen(
        &options.endpoint,
        notifier,
        session.clone(),
        " (from a snapshot: nothing runs)",
    )
    .map_err(SessionError::Listen)?;
    let mut target = GdbTarget::new(SnapshotBackend::new(snapshot), options.arch);
    serve_clients(&mut target, &inbox, &session, Some(options), &interrupt)?;
    Ok(())
}

/// Serves the backend and each gdb that attaches until the run ends (`options`: `None` when
/// nothing listens for gdb).
fn serve_clients<B: Backend>(
    target: &mut GdbTarget<B>,
    inbox: &SharedInbox,
    session: &AtomicBool,
    options: Option<&GdbOptions>,
    interrupt: &AtomicBool,
) -> Result<Ended, SessionError> {
    loop {
        let input = inbox.borrow_mut().next(Some(HALT_POLL));
        if interrupt.swap(false, Ordering::SeqCst) {
            // Ctrl-C with no gdb attached: stop cleanly, as without gdb.
            target.backend.stop_for_good(inbox)?;
            eprintln!("gdbvisor: interrupted");
            return Ok((RunEnd::Interrupted, None));
        }
        let ended = match input {
            None => target.backend.tick(inbox)?,
            Some(LoopInput::Vcpu(report)) => target.backend.report_unattended(report, inbox)?,
            Some(LoopInput::NewClient(client)) => match options {
                Some(options) => attach(target, inbox, client, options, session)?,
                None => None,
            },
            // Left over from a gdb that has gone.
            Some(LoopInput::Byte(_) | LoopInput::ClientGone) => None,
        };
        if let Some(ended) = ended {
            return Ok(ended);
        }
    }
}

/// One gdb session. `Some` when the run is over; `None` when gdb left and the backend goes on
/// without it.
fn attach<B: Backend>(
    target: &mut GdbTarget<B>,
    inbox: &SharedInbox,
    client: Client,
    options: &GdbOptions,
    session: &AtomicBool,
) -> Result<Option<Ended>, SessionError> {
    log::info!("gdb attached from {}", client.peer);
    target.backend.attach(inbox)?;
    inbox
        .borrow_mut()
        .attach_reader(client.reader, client.reader_fd);
    target.begin_session()?;
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
    let how = result
        .inspect_err(|e| log::info!("gdb session ended: {e}"))
        .ok();
    let stdio = options.endpoint == GdbEndpoint::Stdio;
    Ok(target.backend.detach(how, inbox, stdio)?)
}
