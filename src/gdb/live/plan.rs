//! What a resume does, decided from what was read at the stop: which debug register serves
//! what, where a step runs to instead of single-stepping, where 0xCC bytes go, which pages
//! become read-only, and each vCPU's debug settings. A pure function of its inputs, so every
//! decision is tested without KVM; [`super::resume`] reads the inputs and applies the plan.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::breakpoints::{Applied, Owner, SoftwareBreakpoint, DEBUG_REGISTERS};
use super::debug::DataWatch;
use crate::gdb::backend::Action;
use crate::vmm::guest_debug::{DebugConfig, DebugSlot};
use crate::vmm::progress::FRAME_BYTES;
use crate::x86::cpu::CpuMode;

const PAGE_MASK: u64 = !0xfff;

/// One vCPU about to run, as read at this stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunnerView {
    pub(crate) id: u8,
    pub(crate) action: Action,
    /// The instruction pointer, linear.
    pub(crate) pc: u64,
    pub(crate) mode: CpuMode,
    /// SS's base and SP: where a real-mode interrupt pushes its frame.
    pub(crate) ss_base: u64,
    pub(crate) sp: u64,
    /// Where a step must end when a single step would get it wrong (after `hlt`, at the
    /// handler's entry of `int3`/`int1`/`int n`, where `iret` returns), as read from guest
    /// memory; `None` when a single step is right or the vCPU does not step.
    pub(crate) step_target: Option<u64>,
}

/// Everything a resume is decided from.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanInputs {
    /// The vCPUs about to run (those that stay are not here).
    pub(crate) runners: Vec<RunnerView>,
    /// `break`s, by address, each with where the runners map it; then the exception trace's
    /// handler entries (gdb's get debug registers first).
    pub(crate) software: Vec<SoftwareBreakpoint>,
    /// `hbreak`s, each owning a debug register.
    pub(crate) hardware: Vec<u64>,
    /// `rwatch`/`awatch`es, each owning a debug register after the execution slots.
    pub(crate) data_watches: Vec<DataWatch>,
    /// The guest-physical ranges under `watch`es, resolved through the first runner's page
    /// tables.
    pub(crate) watched: Vec<(u64, u64)>,
    /// KVM can block interrupts while stepping (KVM_GUESTDBG_BLOCKIRQ).
    pub(crate) block_irq: bool,
    /// The guest-physical pages read-only since the last resume.
    pub(crate) read_only_now: BTreeSet<u64>,
}

/// One runner's part of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VcpuPlan {
    pub(crate) id: u8,
    pub(crate) config: DebugConfig,
    /// It resumes on an instruction a debug register breaks on: RFLAGS.RF lets it leave
    /// without hitting it again.
    pub(crate) resume_flag: bool,
}

/// How one resume applies gdb's breakpoints, watches and steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResumePlan {
    /// DR0-3's execution breakpoints: `hbreak`s, then `break`s that wait in a register, then
    /// step targets. Data watches take the registers after them.
    pub(crate) applied: Applied,
    /// Runners whose step runs to a debug register, and the address that ends it.
    pub(crate) step_into: HashMap<u8, u64>,
    /// Guest-physical addresses that get a 0xCC.
    pub(crate) plant: BTreeSet<u64>,
    /// Linear addresses of the `break`s not served by a debug register: an `int3` there is
    /// gdb's; at one a register serves, it is the guest's own and goes to the guest.
    pub(crate) planted_breakpoints: HashSet<u64>,
    /// Guest-physical ranges whose writes stop the guest.
    pub(crate) watched: Vec<(u64, u64)>,
    /// Guest-physical pages made read-only while the vCPUs run: under watches and planted
    /// 0xCC bytes, but never a real-mode runner's stack.
    pub(crate) read_only: BTreeSet<u64>,
    /// Each runner's debug settings, in the runners' order.
    pub(crate) vcpus: Vec<VcpuPlan>,
    /// What the user should hear: breakpoints and watches inactive for this run.
    pub(crate) warnings: Vec<String>,
    /// Handler entries the exception trace cannot stop at in this run (not mapped, no debug
    /// register left): the trace says so once.
    pub(crate) untraced: Vec<u64>,
}

/// Decides a resume.
pub(crate) fn plan(inputs: PlanInputs) -> ResumePlan {
    // Data watchpoints hold the registers execution breakpoints leave.
    let registers = DEBUG_REGISTERS.saturating_sub(inputs.data_watches.len());
    let mut warnings = Vec::new();
    let mut untraced = Vec::new();
    let (mut applied, plant) = place_breakpoints(&inputs, registers, &mut warnings, &mut untraced);
    let step_into = steps_into(&inputs.runners, &mut applied, registers);
    let read_only = read_only_pages(&inputs, &plant, &mut warnings);
    let hw = slots(&applied, &inputs.data_watches);
    let planted_breakpoints = inputs
        .software
        .iter()
        .map(|bp| bp.addr)
        .filter(|addr| !applied.debug_registers.contains(addr))
        .collect();
    let vcpus = inputs
        .runners
        .iter()
        .map(|runner| {
            // A step run to a debug register is no single step.
            let stepping = runner.action == Action::Step && !step_into.contains_key(&runner.id);
            VcpuPlan {
                id: runner.id,
                config: DebugConfig {
                    single_step: stepping,
                    // Interrupts stay blocked while stepping (a step over `hlt` is not a single
                    // step: the interrupt that ends the `hlt` runs whole).
                    block_irq: inputs.block_irq && stepping,
                    sw_breakpoints: !inputs.software.is_empty(),
                    hw_breakpoints: hw,
                },
                resume_flag: applied.debug_registers.contains(&runner.pc),
            }
        })
        .collect();
    ResumePlan {
        applied,
        step_into,
        plant,
        planted_breakpoints,
        watched: inputs.watched,
        read_only,
        vcpus,
        warnings,
        untraced,
    }
}

/// Gives each `break` a 0xCC at every physical address the runners map it to, or one of the
/// `registers` debug registers after the `hbreak`s: when it is not mapped yet (a higher-half
/// symbol before paging), when a runner is on it (a 0xCC there would stop it at once), or when a
/// runner is in real mode (where a software-nested KVM delivers `int3` straight to the guest's
/// IVT instead of exiting) while a register is free.
fn place_breakpoints(
    inputs: &PlanInputs,
    registers: usize,
    warnings: &mut Vec<String>,
    untraced: &mut Vec<u64>,
) -> (Applied, BTreeSet<u64>) {
    let registers_first = inputs.runners.iter().any(|r| r.mode == CpuMode::Real);
    let mut applied = Applied {
        debug_registers: inputs.hardware.clone(),
    };
    let mut plant = BTreeSet::new();
    for bp in &inputs.software {
        let at_pc = inputs.runners.iter().any(|r| r.pc == bp.addr);
        let register_free = applied.debug_registers.len() < registers;
        if at_pc || bp.targets.is_empty() || (registers_first && register_free) {
            if register_free {
                applied.debug_registers.push(bp.addr);
            } else if bp.owner == Owner::Trace {
                untraced.push(bp.addr);
            } else {
                warnings.push(format!(
                    "breakpoint at {:#x} is inactive for this run: all debug registers are in use",
                    bp.addr
                ));
            }
            continue;
        }
        plant.extend(&bp.targets);
    }
    (applied, plant)
}

/// Steps a single step would get wrong run to a debug register at their target instead, while
/// registers last.
fn steps_into(runners: &[RunnerView], applied: &mut Applied, registers: usize) -> HashMap<u8, u64> {
    let mut step_into = HashMap::new();
    for runner in runners {
        if runner.action != Action::Step || applied.debug_registers.len() >= registers {
            continue;
        }
        if let Some(target) = runner.step_target {
            applied.debug_registers.push(target);
            step_into.insert(runner.id, target);
        }
    }
    step_into
}

/// The pages under write watches and planted 0xCC bytes, less the stack pages of real-mode
/// runners: a real-mode `int n` runs without an exit on a software-nested KVM, and its frame
/// pushed onto a read-only page loses FLAGS and CS; no window can catch it.
///
/// While every runner steps, the pages read-only now stay so: gdb steps off a breakpoint with
/// its breakpoints removed and plants them again for the `continue` after, and unprotecting the
/// pages for one instruction cost eight memory-slot changes a hit. A guest write to such a page
/// is applied by the vCPU as any write to a protected page is, so the guest sees no difference.
fn read_only_pages(
    inputs: &PlanInputs,
    plant: &BTreeSet<u64>,
    warnings: &mut Vec<String>,
) -> BTreeSet<u64> {
    let watched_pages: BTreeSet<u64> = inputs
        .watched
        .iter()
        .map(|&(phys, _)| phys & PAGE_MASK)
        .collect();
    let mut pages: BTreeSet<u64> = watched_pages
        .iter()
        .copied()
        .chain(plant.iter().map(|phys| phys & PAGE_MASK))
        .collect();
    let all_step = inputs.runners.iter().all(|r| r.action == Action::Step);
    if all_step {
        pages.extend(&inputs.read_only_now);
    }
    for page in real_mode_stack_pages(&inputs.runners) {
        if pages.remove(&page) && watched_pages.contains(&page) {
            warnings.push(format!(
                "a watchpoint on page {page:#x} is inactive while a real-mode vCPU's stack is there (its `int n` frames cannot land on a read-only page)"
            ));
        }
    }
    pages
}

/// The pages a real-mode runner's next interrupt frame lands on (SS:SP wraps at 64 KiB).
fn real_mode_stack_pages(runners: &[RunnerView]) -> BTreeSet<u64> {
    let mut pages = BTreeSet::new();
    for runner in runners.iter().filter(|r| r.mode == CpuMode::Real) {
        let sp = runner.sp & 0xffff;
        for offset in [1, FRAME_BYTES] {
            let linear = runner
                .ss_base
                .wrapping_add(sp.wrapping_sub(offset) & 0xffff);
            pages.insert(linear & PAGE_MASK);
        }
    }
    pages
}

/// DR0-3: execution slots first (`applied`), then the data watchpoints.
fn slots(applied: &Applied, data_watches: &[DataWatch]) -> [Option<DebugSlot>; 4] {
    let mut hw = [None; 4];
    let slots = applied
        .debug_registers
        .iter()
        .map(|&addr| DebugSlot::execute(addr))
        .chain(data_watches.iter().map(DataWatch::slot));
    for (register, slot) in hw.iter_mut().zip(slots) {
        *register = Some(slot);
    }
    hw
}

#[cfg(test)]
mod tests {
    use gdbstub::target::ext::breakpoints::WatchKind;

    use super::*;
    use crate::gdb::live::vcpus::VcpuRuns;
    use crate::vmm::guest_debug::SlotKind;

    /// A runner in 64-bit mode at `pc`.
    fn runner(id: u8, action: Action, pc: u64) -> RunnerView {
        RunnerView {
            id,
            action,
            pc,
            mode: CpuMode::Long64,
            ss_base: 0,
            sp: 0x8000,
            step_target: None,
        }
    }

    /// A runner stepping from `pc` over an instruction whose step ends at `target`.
    fn stepping_to(id: u8, pc: u64, target: u64) -> RunnerView {
        RunnerView {
            step_target: Some(target),
            ..runner(id, Action::Step, pc)
        }
    }

    fn mapped(addr: u64, phys: u64) -> SoftwareBreakpoint {
        SoftwareBreakpoint {
            addr,
            targets: [phys].into(),
            owner: Owner::Gdb,
        }
    }

    fn unmapped(addr: u64) -> SoftwareBreakpoint {
        SoftwareBreakpoint {
            addr,
            targets: BTreeSet::new(),
            owner: Owner::Gdb,
        }
    }

    fn data_watch(addr: u64) -> DataWatch {
        DataWatch {
            addr,
            len: 4,
            kind: WatchKind::ReadWrite,
        }
    }

    fn vcpu(plan: &ResumePlan, id: u8) -> VcpuPlan {
        *plan.vcpus.iter().find(|v| v.id == id).expect("a runner")
    }

    #[test]
    fn a_step_over_hlt_int_n_or_iret_runs_to_its_target_instead_of_single_stepping() {
        // vCPU 0 steps over `hlt` (target: the next instruction), vCPU 1 over `int 0x10` (the
        // handler), vCPU 2 over an `add` (a single step), vCPU 3 continues.
        let plan = plan(PlanInputs {
            runners: vec![
                stepping_to(0, 0x1000, 0x1001),
                stepping_to(1, 0x2000, 0xf000_0000),
                runner(2, Action::Step, 0x3000),
                runner(3, Action::Continue, 0x4000),
            ],
            block_irq: true,
            ..Default::default()
        });
        assert_eq!(plan.applied.debug_registers, vec![0x1001, 0xf000_0000]);
        assert_eq!(plan.step_into, [(0, 0x1001), (1, 0xf000_0000)].into());
        for id in [0, 1] {
            let config = vcpu(&plan, id).config;
            assert!(!config.single_step && !config.block_irq, "vCPU {id}");
        }
        let single = vcpu(&plan, 2).config;
        assert!(single.single_step && single.block_irq);
        let running = vcpu(&plan, 3).config;
        assert!(!running.single_step && !running.block_irq);
        assert_eq!(
            running.hw_breakpoints[1],
            Some(DebugSlot::execute(0xf000_0000))
        );
        assert!(plan.vcpus.iter().all(|v| !v.resume_flag));
    }

    #[test]
    fn interrupts_stay_open_on_a_host_that_cannot_block_them() {
        let plan = plan(PlanInputs {
            runners: vec![runner(0, Action::Step, 0x1000)],
            block_irq: false,
            ..Default::default()
        });
        let config = vcpu(&plan, 0).config;
        assert!(config.single_step && !config.block_irq);
    }

    #[test]
    fn trace_entries_come_after_gdb_and_are_noted_not_warned_when_no_register_is_left() {
        // Four `hbreak`s take every register; an unmapped `break` is warned about, an
        // unmapped handler entry of the exception trace is handed back as untraced; a mapped
        // entry gets its 0xCC like any `break`.
        let trace = |addr, targets: &[u64]| SoftwareBreakpoint {
            addr,
            targets: targets.iter().copied().collect(),
            owner: Owner::Trace,
        };
        let plan = plan(PlanInputs {
            runners: vec![runner(0, Action::Continue, 0x1000)],
            software: vec![
                unmapped(0x8000_0000),
                trace(0x9000_0000, &[]),
                trace(0x2000, &[0x2000]),
            ],
            hardware: vec![0x10, 0x20, 0x30, 0x40],
            ..Default::default()
        });
        assert_eq!(plan.untraced, vec![0x9000_0000]);
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert_eq!(plan.plant, [0x2000].into());
        assert!(plan.planted_breakpoints.contains(&0x2000));
    }

    #[test]
    fn a_vcpu_on_a_register_breakpoint_resumes_with_rf() {
        // A `break` at vCPU 0's pc waits in a register instead of a 0xCC; vCPU 1 is elsewhere.
        let plan = plan(PlanInputs {
            runners: vec![
                runner(0, Action::Continue, 0x1000),
                runner(1, Action::Continue, 0x5000),
            ],
            software: vec![mapped(0x1000, 0x1000), mapped(0x2000, 0x2000)],
            ..Default::default()
        });
        assert_eq!(plan.applied.debug_registers, vec![0x1000]);
        assert_eq!(plan.plant, [0x2000].into());
        assert!(vcpu(&plan, 0).resume_flag);
        assert!(!vcpu(&plan, 1).resume_flag);
        assert_eq!(
            plan.planted_breakpoints,
            [0x2000].into(),
            "an int3 at 0x1000 is the guest's: a register serves that breakpoint"
        );
        assert!(vcpu(&plan, 0).config.sw_breakpoints);
    }

    #[test]
    fn execution_slots_come_first_then_data_watches() {
        // `hbreak 0x1000`, an unmapped `break` at 0x8000_0000, a step to 0x3000, an `awatch`.
        let plan = plan(PlanInputs {
            runners: vec![stepping_to(0, 0x2ffe, 0x3000)],
            software: vec![unmapped(0x8000_0000)],
            hardware: vec![0x1000],
            data_watches: vec![data_watch(0x4000)],
            ..Default::default()
        });
        assert_eq!(
            vcpu(&plan, 0).config.hw_breakpoints,
            [
                Some(DebugSlot::execute(0x1000)),
                Some(DebugSlot::execute(0x8000_0000)),
                Some(DebugSlot::execute(0x3000)),
                Some(DebugSlot {
                    addr: 0x4000,
                    kind: SlotKind::Access(4)
                }),
            ]
        );
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn out_of_debug_registers_breakpoints_go_inactive_and_steps_single_step() {
        // Two data watches leave two registers: the `hbreak` and the first unmapped `break`.
        let plan = plan(PlanInputs {
            runners: vec![stepping_to(0, 0x2ffe, 0x3000)],
            software: vec![unmapped(0x8000_0000), unmapped(0x8000_1000)],
            hardware: vec![0x1000],
            data_watches: vec![data_watch(0x4000), data_watch(0x5000)],
            ..Default::default()
        });
        assert_eq!(plan.applied.debug_registers, vec![0x1000, 0x8000_0000]);
        assert_eq!(
            plan.warnings,
            vec![
                "breakpoint at 0x80001000 is inactive for this run: all debug registers are in use"
            ]
        );
        assert!(plan.step_into.is_empty());
        assert!(vcpu(&plan, 0).config.single_step, "no register to run to");
        assert!(vcpu(&plan, 0)
            .config
            .hw_breakpoints
            .iter()
            .all(Option::is_some));
        assert_eq!(
            plan.planted_breakpoints,
            [0x8000_1000].into(),
            "an inactive breakpoint is still gdb's"
        );
    }

    #[test]
    fn real_mode_prefers_debug_registers_and_keeps_its_stack_writable() {
        // A real-mode runner with SS:SP = 0x1000:0x0010: a frame's top byte lands on page
        // 0x10000, and the frame's bottom wraps to SS:0xffd0, on page 0x1f000.
        let real = RunnerView {
            mode: CpuMode::Real,
            ss_base: 0x10000,
            sp: 0x0010,
            ..runner(0, Action::Continue, 0x7c00)
        };
        let plan = plan(PlanInputs {
            runners: vec![real],
            software: vec![mapped(0x500, 0x500)],
            watched: vec![(0x10008, 4), (0x1ffd0, 4), (0x20000, 8)],
            ..Default::default()
        });
        assert_eq!(plan.applied.debug_registers, vec![0x500], "no 0xCC planted");
        assert!(plan.plant.is_empty());
        assert_eq!(plan.read_only, [0x20000].into());
        assert_eq!(plan.watched.len(), 3, "the vCPUs still check every watch");
        let inactive = |page| {
            format!("a watchpoint on page {page:#x} is inactive while a real-mode vCPU's stack is there (its `int n` frames cannot land on a read-only page)")
        };
        assert_eq!(plan.warnings, vec![inactive(0x10000), inactive(0x1f000)]);
    }

    #[test]
    fn planted_and_watched_pages_become_read_only() {
        let plan = plan(PlanInputs {
            runners: vec![runner(0, Action::Continue, 0x1000)],
            software: vec![mapped(0x40_2345, 0x2345), mapped(0x40_3000, 0x3000)],
            watched: vec![(0x7ffe, 2), (0x8000, 2)],
            ..Default::default()
        });
        assert_eq!(plan.plant, [0x2345, 0x3000].into());
        assert_eq!(plan.read_only, [0x2000, 0x3000, 0x7000, 0x8000].into());
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn a_step_keeps_the_pages_read_only_a_continue_frees_them() {
        // gdb steps off a breakpoint with its breakpoints removed: the page stays read-only
        // for the `continue` that plants them again, but not the real-mode stack's.
        let real = RunnerView {
            mode: CpuMode::Real,
            ss_base: 0,
            sp: 0x7c00,
            ..runner(0, Action::Step, 0x7c00)
        };
        let read_only_now: BTreeSet<u64> = [0x2000, 0x7000].into();
        let step = plan(PlanInputs {
            runners: vec![real],
            read_only_now: read_only_now.clone(),
            ..Default::default()
        });
        assert_eq!(step.read_only, [0x2000].into());
        let continued = plan(PlanInputs {
            runners: vec![runner(0, Action::Continue, 0x1000)],
            read_only_now,
            ..Default::default()
        });
        assert!(continued.read_only.is_empty());
    }

    #[test]
    fn with_the_scheduler_locked_vcpus_that_stay_get_nothing() {
        // gdb steps vCPU 1 with `set scheduler-locking step`; vCPUs 0 and 2 stay.
        let mut runs = VcpuRuns::new(3);
        runs.clear_actions();
        runs.set_action(Some(1), Action::Step);
        runs.lock_scheduler();
        let runners = runs
            .runners()
            .into_iter()
            .map(|id| RunnerView {
                step_target: Some(0x1001),
                ..runner(id, runs.action(id), 0x1000)
            })
            .collect();
        let plan = plan(PlanInputs {
            runners,
            ..Default::default()
        });
        assert_eq!(plan.vcpus.len(), 1);
        assert_eq!(plan.vcpus[0].id, 1);
        assert_eq!(plan.step_into, [(1, 0x1001)].into());
    }
}
