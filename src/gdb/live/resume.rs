//! Starting the vCPUs gdb resumes, in steps: read each runner's state, plant the breakpoints,
//! turn the steps a single step gets wrong into runs to a debug register, make the watched and
//! planted pages read-only, give each runner its debug settings, and let them run.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::breakpoints::Applied;
use super::step::{handler_entry, iret_return};
use super::vm::LiveVm;
use crate::gdb::backend::Action;
use crate::gdb::fault::TargetFault;
use crate::vmm::progress::FRAME_BYTES;
use crate::vmm::vcpu::{DebugConfig, SoftInterrupt, Vcpu, VcpuError, VcpuEvent};
use crate::x86::cpu::{ControlRegs, CpuMode, RFlags};
use crate::x86::paging::PagedMemory;

/// How long the event loop runs a lone vCPU itself before handing it to its own thread: long
/// enough for a step or a breakpoint a few thousand instructions on, short enough that gdb's
/// Ctrl-C is read promptly.
const RUN_HERE_BUDGET: Duration = Duration::from_millis(2);

/// The translation state and linear pc of each vCPU about to run, in the order of the runners.
type Views = Vec<(ControlRegs, u64)>;

impl LiveVm {
    /// gdb's resume: reports a stop at once when one is due (a stop held back, a dead vCPU
    /// asked to run, nothing to run), else starts the vCPUs. `current`: gdb's current thread's.
    pub(crate) fn handle_resume(&mut self, current: u8) -> Result<(), TargetFault> {
        if !self.pending.is_empty() || self.vcpus.dead_runner().is_some() {
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

    /// Applies breakpoints and debug settings, then lets the vCPUs with an action run.
    fn start_vcpus(&mut self) -> Result<(), TargetFault> {
        let runners = self.vcpus.runners();
        let (views, real_mode) = self.views(&runners)?;
        let mut applied = self.plant_breakpoints(&views, real_mode);
        self.plan_steps_into(&runners, &mut applied)?;
        let watched = self.protect_pages(&runners, &views)?;
        self.configure_vcpus(&runners, &views, &applied, watched)?;
        self.debug.applied = applied;
        self.vcpus.forget_states();
        self.launch(&runners)
    }

    /// Each runner's translation state and pc, and whether any is in real mode.
    fn views(&mut self, runners: &[u8]) -> Result<(Views, bool), TargetFault> {
        let mut views = Vec::new();
        let mut real_mode = false;
        for &id in runners {
            let state = self.core_at_stop(id)?;
            views.push((state.control_regs(), state.pc()));
            real_mode |= state.mode() == CpuMode::Real;
        }
        Ok((views, real_mode))
    }

    /// Plants the software breakpoints where the runners map them (or gives them debug
    /// registers); says which breakpoints stay inactive.
    fn plant_breakpoints(&mut self, views: &Views, real_mode: bool) -> Applied {
        let registers = self.debug.exec_registers();
        let (applied, warnings) =
            self.debug
                .breakpoints
                .plant(&self.vm.ram, views, real_mode, registers);
        for warning in warnings {
            eprintln!("gdbvisor: {warning}");
        }
        applied
    }

    /// Steps that a single step would get wrong run to a debug register instead: over
    /// int3/int1/int n to the handler's entry, over `iret` to where it returns, over `hlt` to
    /// the next instruction.
    fn plan_steps_into(
        &mut self,
        runners: &[u8],
        applied: &mut Applied,
    ) -> Result<(), TargetFault> {
        self.debug.step_into.clear();
        let registers = self.debug.exec_registers();
        for &id in runners {
            if self.vcpus.action(id) != Action::Step || applied.debug_registers.len() >= registers {
                continue;
            }
            if let Some(target) = self.step_target(id)? {
                applied.debug_registers.push(target);
                self.debug.step_into.insert(id, target);
            }
        }
        Ok(())
    }

    /// Where a step of vCPU `id` must end when a single step would get it wrong.
    fn step_target(&mut self, id: u8) -> Result<Option<u64>, TargetFault> {
        const HLT: u8 = 0xF4;
        let mut insn = [0u8; 2];
        let read = self.bytes_at_pc(id, &mut insn)?;
        let insn = &insn[..read];
        let state = self.vcpus.state(&mut self.vm.machine, id, false)?;
        // `hlt` only ends with an interrupt: let that interrupt's handler run whole and stop
        // after the `hlt`, as a step that never lands in the handler.
        if insn.first() == Some(&HLT) {
            return Ok(Some(state.pc() + 1));
        }
        let ram = &self.vm.ram;
        if let Some(soft) = SoftInterrupt::decode(insn) {
            if let Some(handler) = handler_entry(ram, state, soft.vector()) {
                return Ok(Some(handler));
            }
        }
        Ok(iret_return(ram, state, insn))
    }

    /// Fills `buf` with the bytes at vCPU `id`'s pc; how many were readable.
    fn bytes_at_pc(&mut self, id: u8, buf: &mut [u8]) -> Result<usize, TargetFault> {
        let state = self.core_at_stop(id)?;
        let (regs, pc) = (state.control_regs(), state.pc());
        Ok(PagedMemory::new(&*self.vm.ram, regs).read_prefix(pc, buf).0)
    }

    /// Makes the pages under write watches and planted breakpoints read-only; returns the
    /// watched guest-physical ranges the vCPUs must report writes to.
    fn protect_pages(
        &mut self,
        runners: &[u8],
        views: &Views,
    ) -> Result<Vec<(u64, u64)>, TargetFault> {
        let (mut pages, watched) = match views.first() {
            Some((regs, _)) => self.debug.watchpoints.resolve(&self.vm.ram, regs),
            None => Default::default(),
        };
        pages.extend(self.debug.breakpoints.planted_pages());
        let watched_pages: BTreeSet<u64> = watched.iter().map(|&(phys, _)| phys & !0xfff).collect();
        for page in self.real_mode_stack_pages(runners)? {
            if pages.remove(&page) && watched_pages.contains(&page) {
                eprintln!(
                    "gdbvisor: a watchpoint on page {page:#x} is inactive while a real-mode vCPU's stack is there (its `int n` frames cannot land on a read-only page)"
                );
            }
        }
        self.vm.slots.set_read_only(pages)?;
        Ok(watched)
    }

    /// The pages real-mode vCPUs about to run have their stack on: never made read-only. A
    /// real-mode `int n` runs without an exit on a software-nested KVM, and its frame pushed
    /// onto a read-only page loses FLAGS and CS; no window can catch it.
    fn real_mode_stack_pages(&mut self, runners: &[u8]) -> Result<BTreeSet<u64>, TargetFault> {
        let mut pages = BTreeSet::new();
        for &id in runners {
            let state = self.core_at_stop(id)?;
            if state.mode() != CpuMode::Real {
                continue;
            }
            let ss = &state.sregs.ss;
            let sp = state.regs.rsp & 0xffff;
            for offset in [1, FRAME_BYTES] {
                let linear = ss.base.wrapping_add(sp.wrapping_sub(offset) & 0xffff);
                pages.insert(linear & !0xfff);
            }
        }
        Ok(pages)
    }

    /// Gives each runner its debug settings: single step, debug registers, the breakpoints and
    /// watches its exits are checked against, and RF where it leaves a debug-register breakpoint.
    fn configure_vcpus(
        &mut self,
        runners: &[u8],
        views: &Views,
        applied: &Applied,
        watched: Vec<(u64, u64)>,
    ) -> Result<(), TargetFault> {
        let hw = self.debug.slots(applied);
        // Only breakpoints planted as 0xCC: an `int3` at one served by a debug register is the
        // guest's own and goes to the guest.
        let planted: HashSet<u64> = self
            .debug
            .breakpoints
            .software
            .iter()
            .copied()
            .filter(|addr| !applied.debug_registers.contains(addr))
            .collect();
        let planted_bytes = self.debug.breakpoints.planted.clone();
        for (&id, &(_, pc)) in runners.iter().zip(views) {
            // Stepping into an interrupt handler runs until its entry instead.
            let stepping =
                self.vcpus.action(id) == Action::Step && !self.debug.step_into.contains_key(&id);
            let config = DebugConfig {
                single_step: stepping,
                // Interrupts stay blocked while stepping (a step over `hlt` is not a single step,
                // see above).
                block_irq: self.vm.block_irq && stepping,
                sw_breakpoints: !self.debug.breakpoints.software.is_empty(),
                hw_breakpoints: hw,
            };
            // Leaving an instruction that carries a debug-register breakpoint must not re-hit it:
            // the registers of this stop, with RF set.
            let resume_flag_regs = if applied.debug_registers.contains(&pc) {
                Some(self.core_at_stop(id)?.regs)
            } else {
                None
            };
            let planted = planted.clone();
            let watched = watched.clone();
            let planted_bytes = planted_bytes.clone();
            let catch_mode = self.debug.catch_mode;
            let prepare = move |vcpu: &mut Vcpu| -> Result<(), VcpuError> {
                vcpu.catch_mode = catch_mode;
                vcpu.planted_breakpoints = planted;
                vcpu.watched = watched;
                vcpu.planted_bytes = planted_bytes;
                vcpu.set_debug(config)?;
                if let Some(mut regs) = resume_flag_regs {
                    regs.rflags |= RFlags::RF.bits();
                    vcpu.fd()
                        .set_regs(&regs)
                        .map_err(|e| VcpuError::Kvm("SET_REGS", e))?;
                }
                Ok(())
            };
            self.vm.machine.with_vcpu(id, prepare)??;
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
    pub fn resume_all(&mut self) -> Result<usize, TargetFault> {
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
