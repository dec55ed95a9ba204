//! The exception trace's stops on a live VM: a vCPU at a traced handler entry is recorded and
//! resumed without gdb hearing of it (unless gdb steps it, breaks there, or catches the
//! vector); without gdb, every other report ends the run as it does without tracing. With gdb
//! the vCPUs also stop every [`REFRESH_EVERY`] so that a new IDT is seen; without gdb each
//! vCPU compares IDTR at every exit it handles instead.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gdbstub::common::Signal;
use gdbstub::stub::MultiThreadStopReason;

use super::exceptions::{ExceptionTrace, REFRESH_EVERY};
use super::vm::LiveVm;
use crate::gdb::backend::{tid_of, Action, Ended};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::{usage, Lines};
use crate::vmm::outcome::{report_event, settle_halt, AfterHalt, RunEnd};
use crate::vmm::vcpu::VcpuEvent;
use crate::x86::exception::Vector;

/// What a report means with the trace on, while gdb is attached.
pub(crate) enum TraceStop {
    /// Not a trace stop: gdb hears it as always.
    NotOurs(VcpuEvent),
    /// Recorded; the vCPUs resume as gdb last asked once the other reports are handled.
    Swallowed,
    /// Recorded, and gdb hears this stop (a step that ended there, or a caught vector).
    Report(MultiThreadStopReason<u64>),
}

impl LiveVm {
    /// Whether vCPU `id`'s report is a stop at a traced handler entry: a breakpoint there, or
    /// a step that ended there (the stepped instruction raised the exception).
    fn is_trace_hit(&mut self, id: u8, event: &VcpuEvent) -> Result<bool, TargetFault> {
        let breakpoint = matches!(
            event,
            VcpuEvent::SoftwareBreakpoint { .. } | VcpuEvent::Debug(_)
        );
        if !breakpoint || self.trace.as_ref().is_none_or(|t| !t.on) {
            return Ok(false);
        }
        let pc = self.core_at_stop(id)?.pc();
        Ok(self.trace.as_ref().is_some_and(|t| t.is_entry(pc)))
    }

    /// Records the exception vCPU `id` takes if it is on a traced entry (a step off one that
    /// landed on another).
    pub(crate) fn record_if_entry(&mut self, id: u8) -> Result<(), TargetFault> {
        self.record_hit(id).map(|_| ())
    }

    /// Records the exception vCPU `id` (every vCPU stopped, our bytes out of memory) takes.
    fn record_hit(&mut self, id: u8) -> Result<Option<super::exceptions::Taken>, TargetFault> {
        let state = self.core_at_stop(id)?.clone();
        let ram = self.vm.ram.clone();
        Ok(self
            .trace
            .as_mut()
            .and_then(|trace| trace.record(id, &ram, &state)))
    }

    /// Without gdb and with the trace on: vCPU `id` reported `event`. Every vCPU is stopped,
    /// trace stops among the reports are recorded, and the rest ends the run as without
    /// tracing (or, a halt of one vCPU among several, lets the others go on).
    pub(crate) fn traced_unattended(
        &mut self,
        id: u8,
        event: VcpuEvent,
        inbox: &SharedInbox,
    ) -> Result<Option<Ended>, TargetFault> {
        self.stop_the_rest(inbox)?;
        let mut reports = vec![(id, event)];
        reports.extend(self.pending.drain(..));
        self.settle_unattended(reports)
    }

    /// Handles the reports of one all-stop without gdb (see [`LiveVm::traced_unattended`]),
    /// and those the steps off handler entries turn up before the vCPUs run again.
    fn settle_unattended(
        &mut self,
        mut reports: Vec<(u8, VcpuEvent)>,
    ) -> Result<Option<Ended>, TargetFault> {
        loop {
            if let Some(ended) = self.settle_reports(reports)? {
                return Ok(Some(ended));
            }
            // Ctrl-C: the event loop ends the run (a guest that faults without end keeps this
            // loop busy otherwise).
            if self.pending.is_empty() || self.interrupt.load(Ordering::SeqCst) {
                return Ok(None);
            }
            // Reported by a vCPU run on this thread, the only one that ran: our bytes out.
            self.all_stopped();
            reports = self.pending.drain(..).collect();
        }
    }

    /// One batch of [`LiveVm::settle_unattended`]: `Some` when the run ends; else the vCPUs
    /// were resumed (or a step off an entry left a report in `pending`).
    fn settle_reports(
        &mut self,
        reports: Vec<(u8, VcpuEvent)>,
    ) -> Result<Option<Ended>, TargetFault> {
        let mut rest = Vec::new();
        self.stepping_off = None;
        for (id, event) in reports {
            log::debug!("vCPU {id}: {event:?} (exception trace on)");
            if let Some(trace) = self.trace.as_mut() {
                trace.reports += 1;
            }
            if self.is_trace_hit(id, &event)? {
                self.record_hit(id)?;
            } else if event == VcpuEvent::Halted || event.ends_run() {
                rest.push((id, event));
            } else if event != VcpuEvent::Interrupted {
                log::debug!("vCPU {id}: {event:?} without gdb; resumed");
            }
        }
        let Some((id, event)) = rest.first().cloned() else {
            self.resume_traced()?;
            return Ok(None);
        };
        let (id, event) = if event == VcpuEvent::Halted {
            let raced = rest.into_iter().skip(1);
            match settle_halt(&mut self.vm.machine, &mut self.vcpus.halted, id, raced)? {
                AfterHalt::End(id, event) => (id, event),
                AfterHalt::GoOn => {
                    self.resume_traced()?;
                    return Ok(None);
                }
            }
        } else {
            (id, event)
        };
        let end = report_event(&mut self.vm.machine, id, event.clone(), self.vm.caps)?;
        if end == RunEnd::TripleFault {
            self.explain_triple_fault(id)?;
        }
        Ok(Some((end, Some(event))))
    }

    /// Without gdb: [`LiveVm::resume_traced`], and the reports of a vCPU that ran on this
    /// thread handled at once; `Some` when the run ended.
    pub(crate) fn resume_unattended(&mut self) -> Result<Option<Ended>, TargetFault> {
        self.unattended = true;
        self.resume_traced()?;
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.all_stopped();
        let reports = self.pending.drain(..).collect();
        self.settle_unattended(reports)
    }

    /// Without gdb: every vCPU that can run continues, through a planned resume (the trace's
    /// breakpoints planted). A lone vCPU runs on this thread first: what it reports then is
    /// left in `pending`.
    fn resume_traced(&mut self) -> Result<(), TargetFault> {
        self.vcpus.clear_actions();
        for id in self.vcpus.ids().collect::<Vec<_>>() {
            if self.vcpus.halted.contains(&id) {
                self.vcpus.set_action(Some(id), Action::Stay);
            }
        }
        self.start_vcpus()
    }

    /// Without gdb: every [`REFRESH_EVERY`] the vCPUs stop so that the IDT is read again.
    pub(crate) fn refresh_unattended(
        &mut self,
        inbox: &SharedInbox,
    ) -> Result<Option<Ended>, TargetFault> {
        if !self.refresh_due() {
            return Ok(None);
        }
        let start = Instant::now();
        self.stop_the_rest(inbox)?;
        let reports = self.pending.drain(..).collect();
        let ended = self.settle_unattended(reports)?;
        if let Some(trace) = self.trace.as_mut() {
            // Up to the vCPUs' launch: a lone vCPU then runs the guest on this thread a while.
            trace.refreshes += 1;
            trace.refresh_time += trace.last_stop.saturating_duration_since(start);
        }
        Ok(ended)
    }

    /// With gdb: the trace is on, the vCPUs run, and they have not stopped for
    /// [`REFRESH_EVERY`]. Without gdb the vCPUs compare IDTR at every exit themselves
    /// (`DebugState::watch_idtr`), so a run that takes no exception pays for no stop.
    pub(crate) fn refresh_due(&self) -> bool {
        !self.unattended
            && self
                .trace
                .as_ref()
                .is_some_and(|t| t.on && t.last_stop.elapsed() >= REFRESH_EVERY)
            && self.vm.machine.any_running()
    }

    /// With gdb attached: what vCPU `id`'s report means to the trace.
    pub(crate) fn attached_trace_stop(
        &mut self,
        id: u8,
        event: VcpuEvent,
        inbox: &SharedInbox,
        conn: &mut GdbConnection,
    ) -> Result<TraceStop, TargetFault> {
        if self.stepping_off == Some(id) {
            self.stepping_off = None;
            if matches!(event, VcpuEvent::Debug(_)) {
                // The end of a step off a handler entry that ran on the vCPU's thread.
                self.stop_the_rest(inbox)?;
                self.record_if_entry(id)?;
                return Ok(TraceStop::Swallowed);
            }
        }
        if event == VcpuEvent::IdtChanged {
            // The guest loaded another IDT (`DebugState::watch_idtr`, set while the trace ran
            // without gdb): the resume reads it and plants its entries.
            self.stop_the_rest(inbox)?;
            return Ok(TraceStop::Swallowed);
        }
        if !self.is_trace_hit(id, &event)? {
            return Ok(TraceStop::NotOurs(event));
        }
        if let Some(trace) = self.trace.as_mut() {
            trace.reports += 1;
        }
        let pc = self.core_at_stop(id)?.pc();
        let stepping = self.resumed_actions.get(usize::from(id)) == Some(&Action::Step);
        let breakpoints = &self.debug.breakpoints;
        let gdb_breaks = breakpoints.software.contains(&pc) || breakpoints.hardware.contains(&pc);
        // Read with our bytes out of memory: the faulting instruction may carry one.
        self.stop_the_rest(inbox)?;
        let taken = self.record_hit(id)?;
        if gdb_breaks {
            return Ok(TraceStop::NotOurs(event));
        }
        let tid = tid_of(id);
        if stepping {
            return Ok(TraceStop::Report(MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGTRAP,
            }));
        }
        let catch = self.trace.as_ref().map(|trace| &trace.catch);
        let caught = taken
            .filter(|t| catch.is_some_and(|catch| t.candidates.iter().any(|v| catch.contains(v))));
        let Some(taken) = caught else {
            return Ok(TraceStop::Swallowed);
        };
        let line = format!("caught {}", taken.line);
        eprintln!("gdbvisor: {line}");
        console_output(conn, &line);
        let signal = if matches!(taken.vector, Vector::PF | Vector::GP) {
            Signal::SIGSEGV
        } else {
            Signal::SIGTRAP
        };
        Ok(TraceStop::Report(MultiThreadStopReason::SignalWithThread {
            tid,
            signal,
        }))
    }

    /// Resumes the vCPUs as gdb last asked, after stops the trace handled by itself.
    pub(crate) fn resume_as_before(&mut self) -> Result<(), TargetFault> {
        let actions = self.resumed_actions.clone();
        self.vcpus.restore_actions(&actions);
        self.start_vcpus()
    }

    /// `monitor exceptions [N]`, `monitor trace exceptions on|off`, `monitor catch exception
    /// VEC|all [on|off]`.
    pub(crate) fn trace_command(&mut self, name: &str, args: &[&str]) -> Lines {
        match (name, args) {
            ("exceptions", _) => {
                let n = match args {
                    [] => 20,
                    [n] => n.parse().map_err(|_| usage("exceptions"))?,
                    _ => return Err(usage("exceptions")),
                };
                let Some(trace) = self.trace.as_ref() else {
                    return Ok(vec![
                        "no exception trace: `monitor trace exceptions on` or `monitor catch exception VEC` starts one".into(),
                    ]);
                };
                let lines = trace.recent(n);
                if lines.is_empty() {
                    return Ok(vec![if trace.on {
                        "no exception traced yet".into()
                    } else {
                        "no exception traced (the trace is off)".into()
                    }]);
                }
                Ok(lines)
            }
            ("trace", ["exceptions", on @ ("on" | "off")]) => {
                let on = *on == "on";
                let trace = self.trace_or_default();
                if on && !trace.on {
                    trace.on = true;
                    trace.header();
                }
                let caught = !trace.catch.is_empty();
                trace.on = on || caught;
                Ok(vec![match (on, caught) {
                    (true, _) => "tracing exceptions: one line per exception on gdbvisor's stderr; `monitor exceptions` shows the last ones".into(),
                    (false, false) => "no longer tracing exceptions".into(),
                    (false, true) => "still tracing exceptions while a `monitor catch exception` is on".into(),
                }])
            }
            ("catch", ["exception", which, rest @ ..]) => {
                let on = match rest {
                    [] | ["on"] => true,
                    ["off"] => false,
                    _ => return Err(usage("catch")),
                };
                let vectors: BTreeSet<u8> = match *which {
                    "all" => (0..32).collect(),
                    n => {
                        let v = parse_vector(n).ok_or_else(|| usage("catch"))?;
                        [v].into()
                    }
                };
                let trace = self.trace_or_default();
                if on {
                    trace.trace_also(&vectors);
                    trace.catch.extend(&vectors);
                    if !trace.on {
                        trace.on = true;
                        trace.header();
                    }
                } else {
                    trace.catch.retain(|v| !vectors.contains(v));
                }
                let names: Vec<String> = if *which == "all" {
                    vec!["every exception (vectors 0-31)".into()]
                } else {
                    vectors.iter().map(|&v| Vector(v).mnemonic()).collect()
                };
                Ok(vec![format!(
                    "{} {}{}",
                    if on {
                        "stopping before the handler of"
                    } else {
                        "no longer stopping for"
                    },
                    names.join(" "),
                    if on {
                        " (gdb sees SIGSEGV for #PF and #GP, SIGTRAP otherwise)"
                    } else {
                        ""
                    }
                )])
            }
            _ => Err(usage(name)),
        }
    }

    /// The trace, made (off, vectors 0-31, on stderr) on first use.
    fn trace_or_default(&mut self) -> &mut ExceptionTrace {
        self.trace.get_or_insert_with(|| {
            ExceptionTrace::new((0..32).collect(), Box::new(std::io::stderr()), false)
        })
    }
}

/// `14`, `0xe`.
fn parse_vector(text: &str) -> Option<u8> {
    match text.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Sends `line` to gdb's console (an `O` packet, which gdb prints while the guest runs).
fn console_output(conn: &mut GdbConnection, line: &str) {
    use gdbstub::conn::Connection;
    let mut body = String::from("O");
    for byte in line.bytes().chain(*b"\n") {
        body += &format!("{byte:02x}");
    }
    let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    let packet = format!("${body}#{sum:02x}");
    let _ = conn.write_all(packet.as_bytes());
    let _ = conn.flush();
}
