//! Each vCPU's run state under gdb: its state at this stop (fetched once, when first needed),
//! what gdb asked it to do at the next resume, and whether it can ever run again.

use std::collections::BTreeSet;

use gdbstub::common::Signal;

use crate::gdb::backend::Action;
use crate::gdb::fault::TargetFault;
use crate::snapshot::CpuSnapshot;
use crate::vmm::machine::Machine;

/// One vCPU's run state.
#[derive(Default)]
struct VcpuRun {
    /// The state at this stop, whole or only its core (see [`CpuSnapshot::fetch_core`]).
    state: Option<CpuSnapshot>,
    /// A core `state`'s `mp_state` was fetched too (see [`VcpuRuns::fetch_for_description`]).
    mp_state_known: bool,
    action: Action,
    /// Whether gdb named this vCPU's action in the current resume request.
    explicit: bool,
    /// Why it can never run again (triple fault, KVM failure): the signal it keeps reporting.
    dead: Option<Signal>,
}

/// Every vCPU's run state.
pub(crate) struct VcpuRuns {
    runs: Vec<VcpuRun>,
    /// The current resume request named a thread that does not exist.
    named_missing_thread: bool,
    /// vCPUs halted for good while no gdb was attached: the run ends when every vCPU that
    /// started is among them.
    pub(crate) halted: BTreeSet<u8>,
}

impl VcpuRuns {
    pub(crate) fn new(count: usize) -> Self {
        VcpuRuns {
            runs: (0..count).map(|_| VcpuRun::default()).collect(),
            named_missing_thread: false,
            halted: BTreeSet::new(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.runs.len()
    }

    /// vCPU `id`'s state at this stop, fetched from `machine` (whole, or only the core) unless
    /// already at hand.
    pub(crate) fn state(
        &mut self,
        machine: &mut Machine,
        id: u8,
        whole: bool,
    ) -> Result<&CpuSnapshot, TargetFault> {
        let run = &mut self.runs[usize::from(id)];
        let at_hand = run.state.as_ref().is_some_and(|s| s.complete || !whole);
        if !at_hand {
            let state = machine.with_vcpu(id, move |vcpu| {
                if whole {
                    CpuSnapshot::fetch(vcpu)
                } else {
                    CpuSnapshot::fetch_core(vcpu)
                }
            })??;
            run.state = Some(state);
        }
        Ok(run.state.as_ref().expect("just filled"))
    }

    /// What `info threads` shows of vCPU `id` at this stop: its core state and how it waits
    /// (one KVM_GET_MP_STATE instead of the whole state's seven ioctls).
    pub(crate) fn fetch_for_description(
        &mut self,
        machine: &mut Machine,
        id: u8,
    ) -> Result<(), TargetFault> {
        if self.state(machine, id, false)?.complete || self.runs[usize::from(id)].mp_state_known {
            return Ok(());
        }
        let mp_state = machine.with_vcpu(id, |vcpu| vcpu.kvm().get_mp_state())??;
        let run = &mut self.runs[usize::from(id)];
        if let Some(state) = run.state.as_mut() {
            state.mp_state = mp_state.mp_state;
            run.mp_state_known = true;
        }
        Ok(())
    }

    /// Forgets vCPU `id`'s state (its registers were written).
    pub(crate) fn forget_state(&mut self, id: u8) {
        let run = &mut self.runs[usize::from(id)];
        run.state = None;
        run.mp_state_known = false;
    }

    /// Forgets every state: the vCPUs run.
    pub(crate) fn forget_states(&mut self) {
        self.runs.iter_mut().for_each(|run| {
            run.state = None;
            run.mp_state_known = false;
        });
    }

    /// Records gdb's action for vCPU `id`; one for a thread that does not exist is remembered,
    /// so a resume that runs nothing reports a stop at once instead of waiting for ever.
    pub(crate) fn set_action(&mut self, id: Option<u8>, action: Action) {
        match id {
            Some(id) => {
                let run = &mut self.runs[usize::from(id)];
                run.action = action;
                run.explicit = true;
            }
            None => self.named_missing_thread = true,
        }
    }

    /// A new resume request: every vCPU continues unless gdb says otherwise.
    pub(crate) fn clear_actions(&mut self) {
        for run in &mut self.runs {
            run.action = Action::Continue;
            run.explicit = false;
        }
        self.named_missing_thread = false;
    }

    /// Only the vCPUs gdb named run.
    pub(crate) fn lock_scheduler(&mut self) {
        for run in self.runs.iter_mut().filter(|run| !run.explicit) {
            run.action = Action::Stay;
        }
    }

    /// Every vCPU stopped: none has an action until gdb's next resume.
    pub(crate) fn all_stay(&mut self) {
        self.runs
            .iter_mut()
            .for_each(|run| run.action = Action::Stay);
    }

    /// Every vCPU's action, in id order.
    pub(crate) fn actions(&self) -> Vec<Action> {
        self.runs.iter().map(|run| run.action).collect()
    }

    /// Gives the vCPUs the actions [`VcpuRuns::actions`] returned.
    pub(crate) fn restore_actions(&mut self, actions: &[Action]) {
        for (run, &action) in self.runs.iter_mut().zip(actions) {
            run.action = action;
        }
    }

    pub(crate) fn action(&self, id: u8) -> Action {
        self.runs[usize::from(id)].action
    }

    pub(crate) fn named_missing_thread(&self) -> bool {
        self.named_missing_thread
    }

    /// The vCPUs the current resume runs: those with an action that can run.
    pub(crate) fn runners(&self) -> Vec<u8> {
        self.ids()
            .filter(|&id| self.action(id) != Action::Stay && self.is_alive(id))
            .collect()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = u8> {
        0..self.runs.len() as u8
    }

    pub(crate) fn is_alive(&self, id: u8) -> bool {
        self.runs[usize::from(id)].dead.is_none()
    }

    /// vCPU `id` can never run again; it reports `signal` whenever asked to.
    pub(crate) fn set_dead(&mut self, id: u8, signal: Signal) {
        self.runs[usize::from(id)].dead = Some(signal);
    }

    /// A dead vCPU the current resume asks to run, and the signal it reports instead.
    pub(crate) fn dead_runner(&self) -> Option<(u8, Signal)> {
        self.ids().find_map(|id| {
            let run = &self.runs[usize::from(id)];
            (run.action != Action::Stay).then_some((id, run.dead?))
        })
    }

    /// `CPU#n [mode, CPL, state]` from the state taken at this stop.
    pub(crate) fn describe(&self, id: u8) -> String {
        let run = &self.runs[usize::from(id)];
        let Some(state) = run.state.as_ref() else {
            return format!("CPU#{id}");
        };
        let condition = match run.dead {
            Some(Signal::SIGSEGV) => "triple-faulted",
            Some(_) => "failed",
            None => state.run_state(),
        };
        format!(
            "CPU#{id} [{:?}, CPL{}, {condition}]",
            state.mode(),
            state.sregs.cs.selector & 3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_runs_every_vcpu_unless_the_scheduler_is_locked() {
        let mut runs = VcpuRuns::new(3);
        assert!(runs.runners().is_empty(), "nothing runs before gdb resumes");
        runs.clear_actions();
        runs.set_action(Some(1), Action::Step);
        assert_eq!(runs.runners(), vec![0, 1, 2]);
        assert_eq!(runs.action(1), Action::Step);
        runs.lock_scheduler();
        assert_eq!(runs.runners(), vec![1]);
        runs.all_stay();
        assert!(runs.runners().is_empty());
    }

    #[test]
    fn a_resume_of_missing_threads_runs_nothing_and_is_remembered() {
        let mut runs = VcpuRuns::new(2);
        runs.clear_actions();
        runs.set_action(None, Action::Continue);
        runs.lock_scheduler();
        assert!(runs.runners().is_empty());
        assert!(runs.named_missing_thread());
        runs.clear_actions();
        assert!(!runs.named_missing_thread());
    }

    #[test]
    fn a_dead_vcpu_never_runs_and_reports_its_signal_when_asked_to() {
        let mut runs = VcpuRuns::new(2);
        runs.set_dead(0, Signal::SIGSEGV);
        runs.clear_actions();
        assert_eq!(runs.runners(), vec![1]);
        assert_eq!(runs.dead_runner(), Some((0, Signal::SIGSEGV)));
        runs.set_action(Some(1), Action::Continue);
        runs.lock_scheduler();
        assert_eq!(runs.dead_runner(), None);
        assert_eq!(runs.describe(0), "CPU#0", "no state fetched at this stop");
    }
}
