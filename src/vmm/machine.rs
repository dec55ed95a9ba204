//! vCPU threads and the loop that waits for their events.
//!
//! Each vCPU has its own thread and obeys [`VcpuCommand`]s (a caller may also run a stopped vCPU
//! in place for a while: [`Machine::resume_here`]); every event a thread returns comes back
//! on one channel, so a caller (the plain run loop here, the gdb stub later) blocks on "a vCPU
//! stopped" and decides what runs next. Halt detection: a halted vCPU never leaves KVM_RUN with
//! the in-kernel irqchip, so while waiting the caller kicks running vCPUs every
//! [`HALT_POLL`]; a kicked vCPU that is halted with IF=0 reports [`VcpuEvent::Halted`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::vmm::kick::{self, KickTimer, Kicker};
use crate::vmm::vcpu::{Vcpu, VcpuControl, VcpuError, VcpuEvent};

/// How often a waiting caller checks running vCPUs for a final halt.
pub(crate) const HALT_POLL: Duration = Duration::from_millis(50);

/// Why the vCPU threads failed.
#[derive(Debug, Error)]
pub enum MachineError {
    /// The kick signal cannot be installed.
    #[error("cannot install the vCPU kick signal handler: {0}")]
    Signal(std::io::Error),
    /// A vCPU thread cannot be spawned.
    #[error("cannot start a vCPU thread: {0}")]
    Thread(std::io::Error),
    /// A vCPU thread ended unexpectedly.
    #[error("vCPU {0} thread ended unexpectedly")]
    ThreadGone(u8),
    /// Reports were asked for, but the machine was started with a sink of its own.
    #[error("this machine's events go to a caller's sink, not to wait_event")]
    NoEventChannel,
}

/// Work for a vCPU thread.
pub(crate) enum VcpuCommand {
    /// Run until the next event, then report it.
    Run,
    /// Run a closure on the vCPU (register access, debug state) while it is stopped.
    With(Box<dyn FnOnce(&mut Vcpu) + Send>),
}

struct VcpuThread {
    /// Locked by the vCPU's thread for each command, or by a caller running it in place.
    vcpu: Arc<Mutex<Vcpu>>,
    commands: Sender<VcpuCommand>,
    kicker: Kicker,
    control: Arc<VcpuControl>,
    running: bool,
    thread: Option<JoinHandle<()>>,
}

/// A report from a vCPU thread.
pub(crate) type VcpuReport = (u8, Result<VcpuEvent, VcpuError>);

/// The vCPUs, each on its own thread, run and stopped on request.
pub struct Machine {
    threads: Vec<VcpuThread>,
    /// The reports, when [`Machine::start`] made the channel; `None` when the caller consumes
    /// them through its own sink.
    events: Option<Receiver<VcpuReport>>,
    /// Bounds [`Machine::resume_here`]; made on first use, for the thread that uses it.
    kick_timer: Option<KickTimer>,
}

/// Where vCPU threads deliver their reports; `false` means nobody listens any more.
pub(crate) type ReportSink = Arc<dyn Fn(VcpuReport) -> bool + Send + Sync>;

impl Machine {
    /// Moves each vCPU onto its own thread; none runs until told to. Reports are read with
    /// [`Machine::wait_event`].
    pub fn start(vcpus: Vec<Vcpu>) -> Result<Machine, MachineError> {
        let (tx, rx) = mpsc::channel();
        let sink: ReportSink = Arc::new(move |report| tx.send(report).is_ok());
        let mut machine = Self::start_with_sink(vcpus, sink)?;
        machine.events = Some(rx);
        Ok(machine)
    }

    /// Like [`Machine::start`], but every report goes to `sink`, so a caller can merge vCPU
    /// events with other inputs (a debugger's bytes) on one channel; it then calls
    /// [`Machine::mark_stopped`] for each report it receives.
    pub(crate) fn start_with_sink(
        vcpus: Vec<Vcpu>,
        sink: ReportSink,
    ) -> Result<Machine, MachineError> {
        kick::install_handler().map_err(MachineError::Signal)?;
        let mut threads = Vec::new();
        for vcpu in vcpus {
            let id = vcpu.id;
            let control = vcpu.control();
            let vcpu = Arc::new(Mutex::new(vcpu));
            let shared = vcpu.clone();
            let (commands, command_rx) = mpsc::channel::<VcpuCommand>();
            let (kicker_tx, kicker_rx) = mpsc::sync_channel(1);
            let sink = sink.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    let _ = kicker_tx.send(lock(&shared).bind_to_current_thread());
                    while let Ok(command) = command_rx.recv() {
                        let mut vcpu = lock(&shared);
                        match command {
                            VcpuCommand::Run => {
                                let event = vcpu.run();
                                drop(vcpu);
                                if !sink((id, event)) {
                                    break;
                                }
                            }
                            VcpuCommand::With(work) => work(&mut vcpu),
                        }
                    }
                })
                .map_err(MachineError::Thread)?;
            let kicker = kicker_rx.recv().map_err(|_| MachineError::ThreadGone(id))?;
            threads.push(VcpuThread {
                vcpu,
                commands,
                kicker,
                control,
                running: false,
                thread: Some(thread),
            });
        }
        Ok(Machine {
            threads,
            events: None,
            kick_timer: None,
        })
    }

    /// Number of vCPUs.
    pub(crate) fn vcpu_count(&self) -> usize {
        self.threads.len()
    }

    /// Records that vCPU `id` reported an event and no longer runs.
    pub(crate) fn mark_stopped(&mut self, id: u8) {
        if let Some(thread) = self.threads.get_mut(usize::from(id)) {
            thread.running = false;
        }
    }

    /// Kicks every running vCPU so a final halt is noticed (see [`HALT_POLL`]).
    pub(crate) fn kick_running(&self) {
        for thread in self.threads.iter().filter(|t| t.running) {
            thread.kicker.kick();
        }
    }

    fn thread(&mut self, id: u8) -> Result<&mut VcpuThread, MachineError> {
        self.threads
            .get_mut(usize::from(id))
            .ok_or(MachineError::ThreadGone(id))
    }

    /// Lets vCPU `id` run until its next event.
    pub fn resume(&mut self, id: u8) -> Result<(), MachineError> {
        let thread = self.thread(id)?;
        if thread.running {
            // Its report is still on the way: a second Run would start it again behind the
            // caller's back, and a caller that then takes it for stopped waits for ever.
            log::warn!("vCPU {id} resumed while it runs; ignored");
            return Ok(());
        }
        thread.control.withdraw_stop();
        thread
            .commands
            .send(VcpuCommand::Run)
            .map_err(|_| MachineError::ThreadGone(id))?;
        thread.running = true;
        Ok(())
    }

    /// Lets vCPU `id` run until its next event like [`Machine::resume`], but first on the
    /// calling thread for up to `budget`: a debugger's step or a breakpoint a few instructions
    /// on then costs no thread hand-off (on a nested host, waking a thread costs more than
    /// the step). Returns the report when the vCPU stopped within the budget (the sink does
    /// not see it, and the vCPU is not running); otherwise its own thread carries on and
    /// reports to the sink. Call only while no vCPU runs.
    pub(crate) fn resume_here(
        &mut self,
        id: u8,
        budget: Duration,
    ) -> Result<Option<VcpuReport>, MachineError> {
        if self
            .kick_timer
            .as_ref()
            .is_none_or(|timer| !timer.is_for_current_thread())
        {
            self.kick_timer = Some(KickTimer::for_current_thread().map_err(MachineError::Signal)?);
        }
        let thread = self.thread(id)?;
        thread.control.withdraw_stop();
        let shared = thread.vcpu.clone();
        let mut vcpu = lock(&shared);
        let timer = self.kick_timer.as_ref().expect("made above");
        vcpu.borrowed = true;
        vcpu.bind_to_current_thread();
        timer.arm(budget);
        let event = vcpu.run();
        timer.disarm();
        // A kick that landed after KVM_RUN returned must not end the next run early.
        kick::register_current_thread(std::ptr::null_mut());
        vcpu.clear_kick();
        vcpu.borrowed = false;
        drop(vcpu);
        if matches!(event, Ok(VcpuEvent::Yielded)) {
            self.resume(id)?;
            return Ok(None);
        }
        Ok(Some((id, event)))
    }

    /// Runs `work` on stopped vCPU `id` and returns its result: right here while the vCPU is
    /// stopped (KVM takes a stopped vCPU's ioctls from any thread), else on its own thread
    /// once it stops.
    pub fn with_vcpu<R: Send + 'static>(
        &mut self,
        id: u8,
        work: impl FnOnce(&mut Vcpu) -> R + Send + 'static,
    ) -> Result<R, MachineError> {
        let thread = self.thread(id)?;
        if !thread.running {
            return Ok(work(&mut lock(&thread.vcpu)));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let command = VcpuCommand::With(Box::new(move |vcpu| {
            let _ = tx.send(work(vcpu));
        }));
        self.thread(id)?
            .commands
            .send(command)
            .map_err(|_| MachineError::ThreadGone(id))?;
        rx.recv().map_err(|_| MachineError::ThreadGone(id))
    }

    /// Asks every running vCPU to stop; each answers with an event.
    pub(crate) fn stop_all(&self) {
        for thread in self.threads.iter().filter(|t| t.running) {
            thread.control.request_stop();
            thread.kicker.kick();
        }
    }

    /// Stops every running vCPU and drops the reports of their stops (the run is over). Only
    /// for a machine with its own event channel ([`Machine::start`]).
    pub(crate) fn stop_every_vcpu(&mut self) -> Result<(), MachineError> {
        for (id, event) in self.stop_collecting()? {
            log::debug!("vCPU {id} reported {event:?} while the run ended");
        }
        Ok(())
    }

    /// Stops every running vCPU; returns the reports other than the stops asked for (events
    /// that raced the request). Only for a machine with its own event channel.
    pub(crate) fn stop_collecting(&mut self) -> Result<Vec<(u8, VcpuEvent)>, MachineError> {
        let no_interrupt = AtomicBool::new(false);
        self.stop_all();
        let mut raced = Vec::new();
        while self.any_running() {
            match self.wait_event(&no_interrupt, None)? {
                (_, Ok(VcpuEvent::Interrupted)) => {}
                (id, Ok(event)) => raced.push((id, event)),
                (id, Err(e)) => log::warn!("vCPU {id}: {e}"),
            }
        }
        Ok(raced)
    }

    /// With every vCPU stopped: the vCPUs outside `halted` that still wait for INIT/SIPI (never
    /// started), or `None` when one of them has started (runnable, or halted waiting for an
    /// interrupt) and the run goes on.
    pub(crate) fn never_started(
        &mut self,
        halted: &BTreeSet<u8>,
    ) -> Result<Option<Vec<u8>>, MachineError> {
        let mut waiting = Vec::new();
        for id in (0..self.threads.len() as u8).filter(|id| !halted.contains(id)) {
            if !self.with_vcpu(id, |vcpu| vcpu.waits_for_startup())? {
                return Ok(None);
            }
            waiting.push(id);
        }
        Ok(Some(waiting))
    }

    /// Waits for the next vCPU event, kicking running vCPUs every [`HALT_POLL`] so halts are
    /// seen; `interrupt` set by another thread (Ctrl-C) or a passed `deadline` stops every vCPU.
    pub fn wait_event(
        &mut self,
        interrupt: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<VcpuReport, MachineError> {
        loop {
            let late = deadline.is_some_and(|d| Instant::now() >= d);
            if interrupt.swap(false, Ordering::SeqCst) || late {
                self.stop_all();
            }
            let Some(events) = &self.events else {
                return Err(MachineError::NoEventChannel);
            };
            match events.recv_timeout(HALT_POLL) {
                Ok(report) => {
                    self.mark_stopped(report.0);
                    return Ok(report);
                }
                Err(RecvTimeoutError::Timeout) => self.kick_running(),
                Err(RecvTimeoutError::Disconnected) => return Err(MachineError::ThreadGone(0)),
            }
        }
    }

    /// The vCPUs running now.
    pub(crate) fn running_ids(&self) -> Vec<u8> {
        (0..self.threads.len() as u8)
            .filter(|&id| self.threads[usize::from(id)].running)
            .collect()
    }

    /// True while any vCPU is running.
    pub(crate) fn any_running(&self) -> bool {
        self.threads.iter().any(|t| t.running)
    }
}

/// A vCPU, whether or not a thread panicked while holding it.
fn lock(vcpu: &Mutex<Vcpu>) -> MutexGuard<'_, Vcpu> {
    vcpu.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Stop running vCPUs, then close their command channels so the threads end. A thread
        // still marked running may be stuck inside KVM_RUN: it is left to end with the process
        // rather than joined forever.
        self.stop_all();
        let handles: Vec<_> = self
            .threads
            .iter_mut()
            .filter(|t| !t.running)
            .filter_map(|t| t.thread.take())
            .collect();
        self.threads.clear();
        for handle in handles {
            let _ = handle.join();
        }
    }
}
