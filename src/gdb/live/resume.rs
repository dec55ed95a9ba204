//! Starting the vCPUs gdb resumes: read what the plan needs at this stop (each runner's state,
//! where breakpoints, watches and step targets are in guest memory), decide ([`plan`]), then
//! apply the plan — plant the 0xCC bytes, make pages read-only, give each runner its debug
//! state — and let the runners go.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::exceptions::cpu_written_pages;
use super::plan::{plan, PlanInputs, ResumePlan, RunnerView};
use super::step::step_target;
use super::vm::LiveVm;
use crate::gdb::backend::Action;
use crate::gdb::fault::TargetFault;
use crate::vmm::guest_debug::DebugState;
use crate::vmm::vcpu::{Vcpu, VcpuError, VcpuEvent};
use crate::x86::cpu::RFlags;

/// How long the event loop runs a lone vCPU itself before handing it to its own thread: long
/// enough for a step or a breakpoint a few thousand instructions on, short enough that gdb's
/// Ctrl-C is read promptly.
const RUN_HERE_BUDGET: Duration = Duration::from_millis(2);

/// At most this many steps off handler entries before one resume (see
/// [`LiveVm::start_vcpus`]).
const STEP_OFF_LIMIT: usize = 16;

impl LiveVm {
    /// gdb's resume: reports a stop at once when one is due (a stop held back, a dead vCPU
    /// asked to run, nothing to run), else starts the vCPUs. `current`: gdb's current thread's.
    pub(crate) fn handle_resume(&mut self, current: u8) -> Result<(), TargetFault> {
        if self.pending_of_runner().is_some() || self.vcpus.dead_runner().is_some() {
            // Reported by the wait for the stop without running anything.
            return Ok(());
        }
        if self.vcpus.runners().is_empty() {
            // Nothing to run (a resume that named only threads that do not exist): report a
            // stop at once, as a resume must end in one, instead of waiting for ever.
            if self.vcpus.named_missing_thread() {
                eprintln!("gdbvisor: gdb resumed only threads that do not exist; stopped at once");
            }
            self.pending.push_back((current, VcpuEvent::Interrupted));
            return Ok(());
        }
        self.start_vcpus()
    }

    /// Plans the resume, applies the plan, then lets the vCPUs with an action run. With the
    /// exception trace on, vCPUs that continue from a handler entry step off it first: a debug
    /// register with RF would let them leave it on hardware, but a software-nested KVM's
    /// emulator checks code breakpoints whatever RF says. A report of those steps that is not
    /// the trace's is left in `pending`, and nothing runs.
    pub(crate) fn start_vcpus(&mut self) -> Result<(), TargetFault> {
        self.resumed_actions = self.vcpus.actions();
        if self.trace.as_ref().is_some_and(|t| t.on) {
            self.step_off_entries()?;
            if self.pending_of_runner().is_some() || self.stepping_off.is_some() {
                return Ok(());
            }
        }
        self.start_planned()
    }

    /// Steps each continuing vCPU that is on a traced handler entry, alone, until none is (a
    /// step may land on another entry: that exception is recorded too).
    fn step_off_entries(&mut self) -> Result<(), TargetFault> {
        let actions = self.resumed_actions.clone();
        // Each step is one instruction of one vCPU; a handler whose first instruction faults
        // again and again is bounded here and resumed as is.
        for _ in 0..STEP_OFF_LIMIT {
            let Some(id) = self.continuing_on_entry(&actions)? else {
                break;
            };
            let mut step_alone = vec![Action::Stay; actions.len()];
            step_alone[usize::from(id)] = Action::Step;
            self.vcpus.restore_actions(&step_alone);
            self.start_planned()?;
            let Some((id, event)) = self.take_pending_of_runner() else {
                // The step outlasted the budget (a loaded host): the vCPU goes on on its own
                // thread, and its report, through the event loop, resumes the rest.
                self.stepping_off = Some(id);
                self.vcpus.restore_actions(&actions);
                return Ok(());
            };
            self.all_stopped();
            if let Some(trace) = self.trace.as_mut() {
                trace.reports += 1;
            }
            match event {
                VcpuEvent::Debug(_) | VcpuEvent::SoftwareBreakpoint { .. } => {
                    self.record_if_entry(id)?;
                }
                other => {
                    self.pending.push_back((id, other));
                    break;
                }
            }
        }
        self.vcpus.restore_actions(&actions);
        Ok(())
    }

    /// The first vCPU that continues (per `actions`) from a traced handler entry.
    fn continuing_on_entry(&mut self, actions: &[Action]) -> Result<Option<u8>, TargetFault> {
        for (id, &action) in (0u8..).zip(actions) {
            if action != Action::Continue || !self.vcpus.is_alive(id) {
                continue;
            }
            let pc = self.core_at_stop(id)?.pc();
            if self.trace.as_ref().is_some_and(|t| t.is_entry(pc)) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Plans the resume, applies the plan, then lets the vCPUs with an action run.
    fn start_planned(&mut self) -> Result<(), TargetFault> {
        let runners = self.vcpus.runners();
        let plan = plan(self.plan_inputs(&runners)?);
        for warning in &plan.warnings {
            eprintln!("gdbvisor: {warning}");
        }
        if let Some(trace) = self.trace.as_mut() {
            for &addr in &plan.untraced {
                trace.note_untraced(addr);
            }
            trace.last_stop = Instant::now();
        }
        self.debug.breakpoints.plant(&self.vm.ram, &plan.plant);
        self.vm.slots.set_read_only(plan.read_only.clone())?;
        self.configure_vcpus(&plan)?;
        self.debug.step_into = plan.step_into;
        self.debug.applied = plan.applied;
        self.vcpus.forget_states();
        self.launch(&runners)
    }

    /// What the resume is decided from: each runner's state at this stop, and what guest
    /// memory says through the runners' page tables — where each breakpoint and watch is, where
    /// a step must end.
    fn plan_inputs(&mut self, runners: &[u8]) -> Result<PlanInputs, TargetFault> {
        let mut views = Vec::new();
        let mut page_tables = Vec::new();
        for &id in runners {
            let action = self.vcpus.action(id);
            let state = self.vcpus.state(&mut self.vm.machine, id, false)?;
            page_tables.push(state.control_regs());
            views.push(RunnerView {
                id,
                action,
                pc: state.pc(),
                mode: state.mode(),
                ss_base: state.sregs.ss.base,
                sp: state.regs.rsp,
                step_target: match action {
                    Action::Step => step_target(&self.vm.ram, state),
                    _ => None,
                },
            });
        }
        let ram = &self.vm.ram;
        let mut software = self.debug.breakpoints.targets(ram, &page_tables);
        // While every runner steps, the trace needs no breakpoint: a step that delivers an
        // exception ends at the handler's entry, and is recorded there.
        let all_step = views.iter().all(|r| r.action == Action::Step);
        if let (Some(trace), Some(&first), false) = (self.trace.as_mut(), runners.first(), all_step)
        {
            // One IDT for all: the first runner's (the vCPUs of one kernel share it).
            let state = self.vcpus.state(&mut self.vm.machine, first, false)?;
            trace.refresh(ram, state);
            let mut avoid = BTreeSet::new();
            for &id in runners {
                let state = self.vcpus.state(&mut self.vm.machine, id, false)?;
                avoid.extend(cpu_written_pages(ram, state));
            }
            let gdb_has = |addr| self.debug.breakpoints.software.contains(&addr);
            // A vCPU steps off an entry with nothing there.
            let stepping_at = |addr| {
                views
                    .iter()
                    .any(|r: &RunnerView| r.action == Action::Step && r.pc == addr)
            };
            software.extend(
                trace
                    .breakpoints(ram, &page_tables, &avoid)
                    .into_iter()
                    .filter(|bp| !gdb_has(bp.addr) && !stepping_at(bp.addr)),
            );
        }
        let watched = match page_tables.first() {
            Some(regs) => self.debug.watchpoints.resolve(ram, regs),
            None => Vec::new(),
        };
        Ok(PlanInputs {
            runners: views,
            software,
            hardware: self.debug.breakpoints.hardware.clone(),
            data_watches: self.debug.data_watches.clone(),
            watched,
            block_irq: self.vm.block_irq,
            read_only_now: self.vm.slots.read_only_pages(),
        })
    }

    /// Gives each runner its debug state, and RF where it leaves a debug-register breakpoint.
    fn configure_vcpus(&mut self, plan: &ResumePlan) -> Result<(), TargetFault> {
        for vcpu_plan in &plan.vcpus {
            // Without gdb the trace learns of a new IDT at the vCPU's next exit.
            let watch_idtr = if self.trace.is_some() && self.unattended {
                let idt = self.core_at_stop(vcpu_plan.id)?.sregs.idt;
                Some((idt.base, idt.limit))
            } else {
                None
            };
            let state = DebugState {
                config: vcpu_plan.config,
                planted_breakpoints: plan.planted_breakpoints.clone(),
                watched: plan.watched.clone(),
                planted_bytes: self.debug.breakpoints.planted.clone(),
                catch_mode: self.debug.catch_mode,
                watch_idtr,
            };
            // Leaving an instruction that carries a debug-register breakpoint must not re-hit
            // it: the registers of this stop, with RF set.
            let resume_flag_regs = if vcpu_plan.resume_flag {
                let mut regs = self.core_at_stop(vcpu_plan.id)?.regs;
                regs.rflags |= RFlags::RF.bits();
                Some(regs)
            } else {
                None
            };
            let prepare = move |vcpu: &mut Vcpu| -> Result<(), VcpuError> {
                vcpu.set_debug_state(state)?;
                if let Some(regs) = resume_flag_regs {
                    vcpu.kvm().set_regs(&regs)?;
                }
                Ok(())
            };
            self.vm.machine.with_vcpu(vcpu_plan.id, prepare)??;
        }
        Ok(())
    }

    /// Lets the runners go. One vCPU to run (a step, or a continue on a uniprocessor guest) runs
    /// here first, sparing two thread wake-ups when it stops soon, as steps and nearby
    /// breakpoints do.
    fn launch(&mut self, runners: &[u8]) -> Result<(), TargetFault> {
        let machine = &mut self.vm.machine;
        if let ([id], false) = (runners, machine.any_running()) {
            if let Some((id, event)) = machine.resume_here(*id, RUN_HERE_BUDGET)? {
                self.pending.push_back((id, event?));
            }
            return Ok(());
        }
        for &id in runners {
            machine.resume(id)?;
        }
        Ok(())
    }

    /// Lets every vCPU that can run go on (after a detach); returns how many run.
    pub(crate) fn resume_all(&mut self) -> Result<usize, TargetFault> {
        self.resume_all_but(&BTreeSet::new())
    }

    /// [`LiveVm::resume_all`] but for the vCPUs in `skip` (halted for good).
    pub(crate) fn resume_all_but(&mut self, skip: &BTreeSet<u8>) -> Result<usize, TargetFault> {
        self.vcpus.forget_states();
        let mut count = 0;
        for id in self.vcpus.ids().filter(|id| !skip.contains(id)) {
            if self.vcpus.is_alive(id) {
                self.vm.machine.resume(id)?;
                count += 1;
            }
        }
        Ok(count)
    }
}
