//! The gdbstub target: the VM's vCPUs as gdb threads 1…N, all-stop. Thin: registers and memory
//! come from [`super::regs`] and the x86 walker; breakpoints from [`super::breakpoints`].

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints as BreakpointsExt, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint,
    HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::extended_mode::ExtendedModeOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use thiserror::Error;

use crate::gdb::arch::{
    target_xml_part, ArchChoice, GdbvisorArch, Reg, RegLayout, RegisterFile, X86RegId, X86Registers,
};
use crate::gdb::breakpoints::{Applied, Breakpoints, DEBUG_REGISTERS};
use crate::gdb::regs::{apply_file, CpuSnapshot};
use crate::gdb::step::{handler_entry, iret_return};
use crate::gdb::watchpoints::Watchpoints;
use crate::gdb::NO_SUCH_THREAD;
use crate::vmm::host_caps::{Capability, HostCaps};
use crate::vmm::machine::{Machine, MachineError};
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::{MemslotError, Protection};
use crate::vmm::outcome::{vcpu_state, RunEnd};
use crate::vmm::progress::FRAME_BYTES;
use crate::vmm::vcpu::{
    DebugConfig, DebugSlot, SlotKind, SoftInterrupt, Vcpu, VcpuError, VcpuEvent,
};
use crate::x86::cpu::CpuMode;
use crate::x86::paging::{translate, Access};

/// How long the event loop runs a lone vCPU itself before handing it to its own thread: long
/// enough for a step or a breakpoint a few thousand instructions on, short enough that gdb's
/// Ctrl-C is read promptly.
const RUN_HERE_BUDGET: Duration = Duration::from_millis(2);

#[derive(Debug, Error)]
pub enum TargetFault {
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Vcpu(#[from] VcpuError),
    #[error("{0}")]
    Slots(#[from] MemslotError),
    #[error("vCPU(s) {0:?} do not stop: stuck inside the host's KVM_RUN")]
    Stuck(Vec<u8>),
}

/// What gdb asked each vCPU to do at the next resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stay,
    Continue,
    Step,
}

/// A read or access watchpoint held in a debug register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataWatch {
    addr: u64,
    len: u8,
    kind: WatchKind,
}

impl DataWatch {
    fn slot(&self) -> DebugSlot {
        DebugSlot {
            addr: self.addr,
            // x86 has no read-only data breakpoint: `rwatch` watches accesses too.
            kind: SlotKind::Access(self.len),
        }
    }
}

/// Why a vCPU can never run again (triple fault, KVM failure): it keeps reporting this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dead {
    signal: Signal,
}

pub struct VmTarget {
    pub machine: Machine,
    pub ram: Arc<GuestRam>,
    slots: Protection,
    pub watchpoints: Watchpoints,
    /// The description this connection is served.
    pub layout: RegLayout,
    /// The description connections get when they attach (`--gdb-arch`, `monitor arch`).
    pub(crate) arch: ArchChoice,
    pub breakpoints: Breakpoints,
    applied: Applied,
    actions: Vec<Action>,
    /// `rwatch`/`awatch` in debug registers (hosts whose KVM fires DR7 data breakpoints).
    data_watches: Vec<DataWatch>,
    /// Whether gdb named each thread's action in the current resume request.
    explicit: Vec<bool>,
    /// The current resume request named a thread that does not exist.
    named_missing_thread: bool,
    /// vCPUs whose step runs to a debug register (over `hlt` or an interrupt instruction), and
    /// the address that ends it.
    step_into: std::collections::HashMap<u8, u64>,
    snapshots: Vec<Option<CpuSnapshot>>,
    /// Stops that other vCPUs reported while the first stop was being handled; the next resume
    /// reports them without running anything (all-stop).
    pub pending: VecDeque<(u8, VcpuEvent)>,
    dead: Vec<Option<Dead>>,
    /// Set when the guest ended (debug-exit, reset): how the process ends.
    pub run_end: Option<RunEnd>,
    /// `monitor hold`: the next disconnect keeps the guest stopped.
    pub hold: bool,
    /// The vCPU gdb last read or wrote (its current thread): monitor commands act on it.
    pub current: u8,
    /// `monitor phys on`: gdb's memory addresses are guest-physical.
    pub phys_mode: bool,
    /// `monitor catch mode on`: stop when a vCPU's CPU or paging mode changes.
    pub catch_mode: bool,
    /// KVM can block interrupts while stepping (KVM_GUESTDBG_BLOCKIRQ).
    pub block_irq: bool,
    /// What the host can do, as learned before the vCPUs started: never probed from here.
    pub(crate) caps: HostCaps,
    /// Set by the Ctrl-C handler of the VMM's terminal.
    pub interrupt: Arc<AtomicBool>,
}

impl VmTarget {
    pub fn new(
        machine: Machine,
        ram: Arc<GuestRam>,
        slots: Protection,
        caps: HostCaps,
        interrupt: Arc<AtomicBool>,
    ) -> Self {
        let count = machine.vcpu_count();
        VmTarget {
            machine,
            ram,
            slots,
            watchpoints: Watchpoints::default(),
            layout: RegLayout::X86_64,
            arch: ArchChoice::Mode,
            breakpoints: Breakpoints::default(),
            applied: Applied::default(),
            actions: vec![Action::Stay; count],
            explicit: vec![false; count],
            named_missing_thread: false,
            data_watches: Vec::new(),
            step_into: Default::default(),
            snapshots: vec![None; count],
            pending: VecDeque::new(),
            dead: vec![None; count],
            run_end: None,
            hold: false,
            current: 0,
            phys_mode: false,
            catch_mode: false,
            block_irq: caps.block_irq(),
            caps,
            interrupt,
        }
    }

    pub fn vcpu_count(&self) -> usize {
        self.actions.len()
    }

    /// Records gdb's action for thread `tid`; one that names no vCPU is remembered, so a
    /// resume that runs nothing reports a stop at once instead of waiting for ever.
    fn set_action(&mut self, tid: Tid, action: Action) {
        match self.vcpu(tid) {
            Some(id) => {
                self.actions[usize::from(id)] = action;
                self.explicit[usize::from(id)] = true;
            }
            None => self.named_missing_thread = true,
        }
    }

    /// The vCPU thread `tid` names, if it exists.
    fn vcpu(&self, tid: Tid) -> Option<u8> {
        crate::gdb::vcpu_of(tid, self.vcpu_count())
    }

    pub fn tid(id: u8) -> Tid {
        Tid::new(usize::from(id) + 1).expect("ids start at 0, tids at 1")
    }

    /// The vCPU's whole state at this stop, fetched once, when first needed.
    pub fn snapshot(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.state(id, true)
    }

    /// At least the vCPU's general and segment registers at this stop (see
    /// [`CpuSnapshot::fetch_core`]): enough for its pc, mode and page tables.
    fn core(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.state(id, false)
    }

    /// The state at this stop, fetched (whole, or only the core) unless already at hand.
    fn state(&mut self, id: u8, whole: bool) -> Result<&CpuSnapshot, TargetFault> {
        let slot = usize::from(id);
        let at_hand = self.snapshots[slot]
            .as_ref()
            .is_some_and(|s| s.complete || !whole);
        if !at_hand {
            let snapshot = self.machine.with_vcpu(id, move |vcpu| {
                if whole {
                    CpuSnapshot::fetch(vcpu)
                } else {
                    CpuSnapshot::fetch_core(vcpu)
                }
            })??;
            self.snapshots[slot] = Some(snapshot);
        }
        Ok(self.snapshots[slot].as_ref().expect("just filled"))
    }

    /// Reads or writes linear memory as vCPU `id` sees it (physical memory with `monitor phys
    /// on`), page by page; returns the bytes done before the first unmapped page.
    fn access_linear(
        &mut self,
        id: u8,
        start: u64,
        len: usize,
        mut each: impl FnMut(&GuestRam, u64, usize, usize) -> bool,
    ) -> Result<usize, TargetFault> {
        let regs = self.core(id)?.control_regs();
        let mut done = 0;
        while done < len {
            let addr = start.wrapping_add(done as u64);
            let (phys, to_page_end) = if self.phys_mode {
                (addr, 0x1000 - (addr & 0xfff))
            } else {
                let Ok(t) = translate(self.ram.as_ref(), &regs, addr, Access::DEBUGGER) else {
                    break;
                };
                (t.phys, t.bytes_to_page_end())
            };
            let chunk = (len - done).min(to_page_end as usize);
            if !each(&self.ram, phys, done, chunk) {
                break;
            }
            done += chunk;
        }
        Ok(done)
    }

    /// Applies breakpoints and debug settings, then lets the vCPUs with an action run.
    fn start_vcpus(&mut self) -> Result<(), TargetFault> {
        let runners: Vec<u8> = (0..self.vcpu_count() as u8)
            .filter(|&id| {
                self.actions[usize::from(id)] != Action::Stay
                    && self.dead[usize::from(id)].is_none()
            })
            .collect();
        let mut views = Vec::new();
        let mut real_mode = false;
        for &id in &runners {
            let snapshot = self.core(id)?;
            views.push((snapshot.control_regs(), snapshot.pc()));
            real_mode |= snapshot.mode() == CpuMode::Real;
        }
        let exec_registers = DEBUG_REGISTERS - self.data_watches.len();
        let (mut applied, warnings) =
            self.breakpoints
                .plant(&self.ram, &views, real_mode, exec_registers);
        for warning in warnings {
            eprintln!("gdbvisor: {warning}");
        }
        // Steps that a single step would get wrong run to a debug register instead: over
        // int3/int1/int n to the handler's entry, over `hlt` to the next instruction.
        self.step_into.clear();
        for &id in &runners {
            if self.actions[usize::from(id)] != Action::Step
                || applied.debug_registers.len() >= exec_registers
            {
                continue;
            }
            let pc = self.core(id)?.pc();
            // `hlt` only ends with an interrupt: let that interrupt's handler run whole and
            // stop after the `hlt`, as a step that never lands in the handler.
            let target = if self.at_hlt(id) {
                Some(pc + 1)
            } else if let Some(handler) = self.soft_interrupt_handler(id)? {
                Some(handler)
            } else {
                self.iret_target(id)?
            };
            if let Some(target) = target {
                applied.debug_registers.push(target);
                self.step_into.insert(id, target);
            }
        }
        // Execution slots first, then the DR7 data watchpoints.
        let mut hw = [None; 4];
        let slots = applied
            .debug_registers
            .iter()
            .map(|&addr| DebugSlot::execute(addr))
            .chain(self.data_watches.iter().map(|w| w.slot()));
        for (register, slot) in hw.iter_mut().zip(slots) {
            *register = Some(slot);
        }
        // Only breakpoints planted as 0xCC: an `int3` at one served by a debug register is the
        // guest's own and goes to the guest.
        let planted: std::collections::HashSet<u64> = self
            .breakpoints
            .software
            .iter()
            .copied()
            .filter(|addr| !applied.debug_registers.contains(addr))
            .collect();
        let (mut pages, watched) = match views.first() {
            Some((regs, _)) => self.watchpoints.resolve(&self.ram, regs),
            None => Default::default(),
        };
        pages.extend(self.breakpoints.planted_pages());
        let watched_pages: BTreeSet<u64> = watched.iter().map(|&(phys, _)| phys & !0xfff).collect();
        for page in self.real_mode_stack_pages(&runners)? {
            if pages.remove(&page) && watched_pages.contains(&page) {
                eprintln!(
                    "gdbvisor: a watchpoint on page {page:#x} is inactive while a real-mode vCPU's stack is there (its `int n` frames cannot land on a read-only page)"
                );
            }
        }
        self.slots.set_read_only(pages)?;
        let planted_bytes = self.breakpoints.planted.clone();
        for (&id, &(_, pc)) in runners.iter().zip(&views) {
            // Stepping into an interrupt handler runs until its entry instead.
            let stepping =
                self.actions[usize::from(id)] == Action::Step && !self.step_into.contains_key(&id);
            let config = DebugConfig {
                single_step: stepping,
                // Interrupts stay blocked while stepping (a step over `hlt` is not a single step,
                // see above).
                block_irq: self.block_irq && stepping,
                sw_breakpoints: !self.breakpoints.software.is_empty(),
                hw_breakpoints: hw,
            };
            // Leaving an instruction that carries a debug-register breakpoint must not re-hit it:
            // the registers of this stop, with RF set.
            let resume_flag_regs = if applied.debug_registers.contains(&pc) {
                Some(self.core(id)?.regs)
            } else {
                None
            };
            let planted = planted.clone();
            let watched = watched.clone();
            let planted_bytes = planted_bytes.clone();
            let catch_mode = self.catch_mode;
            let prepare = move |vcpu: &mut Vcpu| -> Result<(), VcpuError> {
                vcpu.catch_mode = catch_mode;
                vcpu.planted_breakpoints = planted;
                vcpu.watched = watched;
                vcpu.planted_bytes = planted_bytes;
                vcpu.set_debug(config)?;
                if let Some(mut regs) = resume_flag_regs {
                    regs.rflags |= 1 << 16;
                    vcpu.fd()
                        .set_regs(&regs)
                        .map_err(|e| VcpuError::Kvm("SET_REGS", e))?;
                }
                Ok(())
            };
            self.machine.with_vcpu(id, prepare)??;
        }
        self.applied = applied;
        self.snapshots.iter_mut().for_each(|s| *s = None);
        // One vCPU to run (a step, or a continue on a uniprocessor guest): run it here first,
        // sparing two thread wake-ups when it stops soon, as steps and nearby breakpoints do.
        if let ([id], false) = (runners.as_slice(), self.machine.any_running()) {
            if let Some((id, event)) = self.machine.resume_here(*id, RUN_HERE_BUDGET)? {
                self.pending.push_back((id, event?));
            }
            return Ok(());
        }
        for id in runners {
            self.machine.resume(id)?;
        }
        Ok(())
    }

    /// Writes a whole register file to vCPU `id` (what gdb's `G` and `P` packets end in).
    fn push_registers(&mut self, id: u8, file: &RegisterFile) -> TargetResult<(), Self> {
        let layout = self.layout;
        let snapshot = match self.snapshot(id) {
            Ok(s) => s.clone(),
            Err(e) => return fault(e),
        };
        let (kregs, ksregs, kfpu) = match apply_file(&snapshot, file, layout) {
            Ok(values) => values,
            Err(why) => {
                eprintln!("gdbvisor: register write refused: {why}");
                return Err(TargetError::NonFatal);
            }
        };
        let result = self.machine.with_vcpu(id, move |vcpu| {
            let fd = vcpu.fd();
            fd.set_regs(&kregs)
                .and_then(|_| fd.set_sregs(&ksregs))
                .and_then(|_| fd.set_fpu(&kfpu))
        });
        self.snapshots[usize::from(id)] = None;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                eprintln!("gdbvisor: KVM refused the register write: {e}");
                Err(TargetError::NonFatal)
            }
            Err(e) => fault(e.into()),
        }
    }

    /// vCPU `id`'s registers in the session's layout.
    fn registers(&mut self, id: u8) -> Result<X86Registers, TargetFault> {
        let layout = self.layout;
        Ok(X86Registers {
            layout,
            file: self.snapshot(id)?.to_file(),
        })
    }

    /// The registers gdb reads at every stop (pc, stack and frame pointers, flags) of the
    /// stopped thread, for the stop reply: gdb then needs no `g` after a step or a hit.
    pub fn expedited(&mut self, stop: &MultiThreadStopReason<u64>) -> Vec<(X86RegId, Vec<u8>)> {
        const EXPEDITED: [Reg; 4] = [Reg::Rip, Reg::Rsp, Reg::Rbp, Reg::Eflags];
        let tid = match *stop {
            MultiThreadStopReason::SignalWithThread { tid, .. }
            | MultiThreadStopReason::SwBreak(tid)
            | MultiThreadStopReason::HwBreak(tid)
            | MultiThreadStopReason::Watch { tid, .. } => tid,
            _ => return Vec::new(),
        };
        let layout = self.layout;
        let Some(Ok(core)) = self.vcpu(tid).map(|id| self.core(id)) else {
            return Vec::new();
        };
        // Only general registers are read from it, which a core snapshot has.
        let regs = X86Registers {
            layout,
            file: core.to_file(),
        };
        let mut value = [0u8; 16];
        regs.layout
            .registers()
            .iter()
            .enumerate()
            .filter(|(_, info)| EXPEDITED.contains(&info.reg))
            .filter_map(|(regnum, _)| {
                let len = regs.read_register(regnum, &mut value)?;
                Some((X86RegId(regnum), value[..len].to_vec()))
            })
            .collect()
    }

    /// The handler entry of the int3/int1/int n vCPU `id` is about to execute, if it is one.
    fn soft_interrupt_handler(&mut self, id: u8) -> Result<Option<u64>, TargetFault> {
        let mut insn = [0u8; 2];
        let read = self.bytes_at_pc(id, &mut insn)?;
        let Some(soft) = SoftInterrupt::decode(&insn[..read]) else {
            return Ok(None);
        };
        let ram = self.ram.clone();
        Ok(handler_entry(&ram, self.core(id)?, soft.vector()))
    }

    /// The pages real-mode vCPUs about to run have their stack on: never made read-only. A
    /// real-mode `int n` runs without an exit on a software-nested KVM, and its frame pushed
    /// onto a read-only page loses FLAGS and CS; no window can catch it.
    fn real_mode_stack_pages(&mut self, runners: &[u8]) -> Result<BTreeSet<u64>, TargetFault> {
        let mut pages = BTreeSet::new();
        for &id in runners {
            let snapshot = self.core(id)?;
            if snapshot.mode() != CpuMode::Real {
                continue;
            }
            let ss = &snapshot.sregs.ss;
            let sp = snapshot.regs.rsp & 0xffff;
            for offset in [1, FRAME_BYTES] {
                let linear = ss.base.wrapping_add(sp.wrapping_sub(offset) & 0xffff);
                pages.insert(linear & !0xfff);
            }
        }
        Ok(pages)
    }

    /// Fills `buf` with the bytes at vCPU `id`'s pc; how many were readable.
    fn bytes_at_pc(&mut self, id: u8, buf: &mut [u8]) -> Result<usize, TargetFault> {
        let pc = self.core(id)?.pc();
        self.access_linear(id, pc, buf.len(), |ram, phys, at, n| {
            ram.read(phys, &mut buf[at..at + n]).is_ok()
        })
    }

    /// Where the `iret` vCPU `id` is about to execute returns to, if it is one.
    fn iret_target(&mut self, id: u8) -> Result<Option<u64>, TargetFault> {
        let mut insn = [0u8; 2];
        let read = self.bytes_at_pc(id, &mut insn)?;
        let ram = self.ram.clone();
        Ok(iret_return(&ram, self.core(id)?, &insn[..read]))
    }

    /// The DR7 data watchpoint whose slot DR6 reports as hit.
    fn data_watch_hit(&self, dr6: u64) -> Option<DataWatch> {
        let first = self.applied.debug_registers.len();
        (0..4usize)
            .filter(|slot| dr6 & (1 << slot) != 0)
            .find_map(|slot| {
                slot.checked_sub(first)
                    .and_then(|i| self.data_watches.get(i))
            })
            .copied()
    }

    /// Whether vCPU `id`'s next instruction, at linear `pc`, is `hlt`.
    fn at_hlt(&mut self, id: u8) -> bool {
        const HLT: u8 = 0xF4;
        let mut byte = [0u8];
        matches!(self.bytes_at_pc(id, &mut byte), Ok(1)) && byte[0] == HLT
    }

    /// Called once every vCPU has stopped: take our 0xCC bytes out of guest memory.
    pub fn all_stopped(&mut self) {
        self.breakpoints.unplant(&self.ram);
        self.actions.iter_mut().for_each(|a| *a = Action::Stay);
    }

    /// Turns a vCPU report into what gdb should hear; `None` for reports that need no stop.
    pub fn stop_reason(&mut self, id: u8, event: VcpuEvent) -> Option<MultiThreadStopReason<u64>> {
        let tid = Self::tid(id);
        let with_signal = |signal| MultiThreadStopReason::SignalWithThread { tid, signal };
        Some(match event {
            VcpuEvent::Debug(info) if self.step_into.get(&id) == Some(&info.pc) => {
                // A step run to a debug register got there.
                with_signal(Signal::SIGTRAP)
            }
            VcpuEvent::Debug(info) if self.data_watch_hit(info.dr6).is_some() => {
                let watch = self.data_watch_hit(info.dr6).expect("just matched");
                MultiThreadStopReason::Watch {
                    tid,
                    kind: watch.kind,
                    addr: watch.addr,
                }
            }
            VcpuEvent::Debug(info) => {
                let hit = (0..4).find(|slot| info.dr6 & (1 << slot) != 0);
                match hit.and_then(|slot| self.applied.slot(slot, &self.breakpoints)) {
                    Some((_, true)) => MultiThreadStopReason::HwBreak(tid),
                    Some((_, false)) => MultiThreadStopReason::SwBreak(tid),
                    None if info.exception == 3 => MultiThreadStopReason::SwBreak(tid),
                    None => with_signal(Signal::SIGTRAP),
                }
            }
            VcpuEvent::SoftwareBreakpoint { .. } => MultiThreadStopReason::SwBreak(tid),
            VcpuEvent::ModeChange { from, to } => {
                eprintln!(
                    "gdbvisor: vCPU {id} changed mode: {:?}/{:?} -> {:?}/{:?} (seen at the first exit after the switch)",
                    from.cpu, from.paging, to.cpu, to.paging
                );
                with_signal(Signal::SIGTRAP)
            }
            VcpuEvent::WatchWrite { phys, len } => match self.watchpoints.hit(phys, len as u64) {
                Some(addr) => MultiThreadStopReason::Watch {
                    tid,
                    kind: WatchKind::Write,
                    addr,
                },
                None => with_signal(Signal::SIGTRAP),
            },
            // Yielded never leaves the machine; were it to, it is a stop without a cause.
            VcpuEvent::Interrupted | VcpuEvent::Yielded => with_signal(Signal::SIGINT),
            VcpuEvent::Halted => {
                eprintln!("gdbvisor: vCPU {id} halted with interrupts disabled (reported to gdb as SIGSTOP)");
                with_signal(Signal::SIGSTOP)
            }
            VcpuEvent::DebugExit(value) => {
                let end = RunEnd::DebugExit(value);
                let status = end.status() as u8;
                self.run_end = Some(end);
                MultiThreadStopReason::Exited(status)
            }
            VcpuEvent::Reset => {
                eprintln!(
                    "gdbvisor: guest reset the machine through the i8042; gdbvisor does not reboot"
                );
                self.run_end = Some(RunEnd::Reset);
                MultiThreadStopReason::Exited(0)
            }
            // Not dead: the vCPU is back on the instruction, which a continue runs again (or
            // the user first fills the vector, or moves $pc past it).
            VcpuEvent::NoBios(stop) => {
                eprintln!("gdbvisor: {stop} (reported to gdb as SIGILL)");
                with_signal(Signal::SIGILL)
            }
            VcpuEvent::Shutdown => {
                eprintln!("gdbvisor: triple fault on vCPU {id} (KVM_EXIT_SHUTDOWN); stopped in gdb as SIGSEGV, memory intact; registers as KVM reports them:");
                if let Ok(state) = vcpu_state(&mut self.machine, id) {
                    eprintln!("{state}");
                }
                self.dead[usize::from(id)] = Some(Dead {
                    signal: Signal::SIGSEGV,
                });
                with_signal(Signal::SIGSEGV)
            }
            other @ (VcpuEvent::InternalError(_)
            | VcpuEvent::FailEntry { .. }
            | VcpuEvent::Unhandled(_)) => {
                eprintln!(
                    "gdbvisor: vCPU {id} cannot continue: {other:?}; stopped in gdb as SIGILL"
                );
                self.dead[usize::from(id)] = Some(Dead {
                    signal: Signal::SIGILL,
                });
                with_signal(Signal::SIGILL)
            }
        })
    }

    /// A dead vCPU asked to run reports its end again instead.
    pub fn dead_stop(&self) -> Option<MultiThreadStopReason<u64>> {
        self.actions.iter().enumerate().find_map(|(id, action)| {
            let dead = self.dead[id]?;
            (*action != Action::Stay).then_some(MultiThreadStopReason::SignalWithThread {
                tid: Self::tid(id as u8),
                signal: dead.signal,
            })
        })
    }

    /// Forgets every breakpoint and debug setting (detach or disconnect).
    pub fn forget_debugging(&mut self) -> Result<(), TargetFault> {
        self.breakpoints.clear();
        self.breakpoints.unplant(&self.ram);
        self.watchpoints.clear();
        self.data_watches.clear();
        self.catch_mode = false;
        self.slots.set_read_only(Default::default())?;
        for id in 0..self.vcpu_count() as u8 {
            self.machine.with_vcpu(id, |vcpu| {
                vcpu.catch_mode = false;
                vcpu.planted_breakpoints.clear();
                vcpu.watched.clear();
                vcpu.clear_debug()
            })??;
        }
        Ok(())
    }

    /// Lets every vCPU that can run go on (after a detach); returns how many run.
    pub fn resume_all(&mut self) -> Result<usize, TargetFault> {
        self.resume_all_but(&BTreeSet::new())
    }

    /// [`VmTarget::resume_all`] but for the vCPUs in `skip` (halted for good).
    pub fn resume_all_but(&mut self, skip: &BTreeSet<u8>) -> Result<usize, TargetFault> {
        self.snapshots.iter_mut().for_each(|s| *s = None);
        let mut count = 0;
        for id in (0..self.vcpu_count() as u8).filter(|id| !skip.contains(id)) {
            if self.dead[usize::from(id)].is_none() {
                self.machine.resume(id)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// `CPU#n [mode, CPL, state]` from the snapshot taken at this stop.
    pub(crate) fn describe_thread(&self, id: u8) -> String {
        let Some(snapshot) = self.snapshots.get(usize::from(id)).and_then(Option::as_ref) else {
            return format!("CPU#{id}");
        };
        let state = match self.dead[usize::from(id)] {
            Some(d) if d.signal == Signal::SIGSEGV => "triple-faulted",
            Some(_) => "failed",
            None => snapshot.run_state(),
        };
        format!(
            "CPU#{id} [{:?}, CPL{}, {state}]",
            snapshot.mode(),
            snapshot.sregs.cs.selector & 3
        )
    }

    /// Takes every vCPU's snapshot, so each thread can be described.
    pub(crate) fn snapshot_all(&mut self) -> Result<(), TargetFault> {
        for id in 0..self.vcpu_count() as u8 {
            self.snapshot(id)?;
        }
        Ok(())
    }
}

impl Target for VmTarget {
    type Arch = GdbvisorArch;
    type Error = TargetFault;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_target_description_xml_override(
        &mut self,
    ) -> Option<TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    /// Only so that gdb's `kill` (vKill) gets its OK before the VM ends; running or attaching
    /// to other programs is refused.
    fn support_extended_mode(&mut self) -> Option<ExtendedModeOps<'_, Self>> {
        Some(self)
    }
}

crate::gdb::kill_only_extended_mode!(VmTarget);

fn fault<T>(e: TargetFault) -> TargetResult<T, VmTarget> {
    Err(TargetError::Fatal(e))
}

impl MultiThreadBase for VmTarget {
    fn read_registers(&mut self, regs: &mut X86Registers, tid: Tid) -> TargetResult<(), Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        self.current = id;
        let layout = self.layout;
        match self.snapshot(id) {
            Ok(snapshot) => {
                regs.layout = layout;
                regs.file = snapshot.to_file();
                Ok(())
            }
            Err(e) => fault(e),
        }
    }

    fn write_registers(&mut self, regs: &X86Registers, tid: Tid) -> TargetResult<(), Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        if regs.layout.g_packet_len() != self.layout.g_packet_len() {
            eprintln!(
                "gdbvisor: register write refused: {} bytes of registers, the {} description has {}",
                regs.layout.g_packet_len(),
                self.layout.name(),
                self.layout.g_packet_len()
            );
            return Err(TargetError::NonFatal);
        }
        self.push_registers(id, &regs.file)
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        self.current = id;
        let len = data.len();
        let done = self.access_linear(id, start, len, |ram, phys, at, n| {
            ram.read(phys, &mut data[at..at + n]).is_ok()
        });
        match done {
            Ok(0) if len > 0 => Err(TargetError::Errno(14)),
            Ok(n) => Ok(n),
            Err(e) => fault(e),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        let done = self.access_linear(id, start, data.len(), |ram, phys, at, n| {
            ram.write(phys, &data[at..at + n]).is_ok()
        });
        match done {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(TargetError::Errno(14)),
            Err(e) => fault(e),
        }
    }

    fn list_active_threads(
        &mut self,
        register_thread: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        // `info threads` asks for each thread's description next, through `&self`.
        self.snapshot_all()?;
        for id in 0..self.vcpu_count() as u8 {
            register_thread(Self::tid(id));
        }
        Ok(())
    }

    fn is_thread_alive(&mut self, tid: Tid) -> Result<bool, Self::Error> {
        Ok(self.vcpu(tid).is_some())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for VmTarget {
    fn read_register(
        &mut self,
        tid: Tid,
        reg: X86RegId,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        let regs = match self.registers(id) {
            Ok(regs) => regs,
            Err(e) => return fault(e),
        };
        regs.read_register(reg.0, buf).ok_or(TargetError::NonFatal)
    }

    fn write_register(&mut self, tid: Tid, reg: X86RegId, val: &[u8]) -> TargetResult<(), Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        let mut regs = match self.registers(id) {
            Ok(regs) => regs,
            Err(e) => return fault(e),
        };
        if regs.write_register(reg.0, val).is_none() {
            return Err(TargetError::NonFatal);
        }
        self.push_registers(id, &regs.file)
    }
}

impl MultiThreadResume for VmTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        if !self.pending.is_empty() || self.dead_stop().is_some() {
            // Reported by the event loop without running anything.
            return Ok(());
        }
        let runs = self
            .actions
            .iter()
            .zip(&self.dead)
            .any(|(action, dead)| *action != Action::Stay && dead.is_none());
        if !runs {
            // Nothing to run (a resume that named only threads that do not exist): report a
            // stop at once, as a resume must end in one, instead of waiting for ever.
            if self.named_missing_thread {
                eprintln!("gdbvisor: gdb resumed only threads that do not exist; stopped at once");
            }
            self.pending
                .push_back((self.current, VcpuEvent::Interrupted));
            return Ok(());
        }
        self.start_vcpus()
    }

    /// gdbstub's contract: a thread without an explicit action continues, unless the
    /// scheduler lock below is set.
    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.iter_mut().for_each(|a| *a = Action::Continue);
        self.explicit.iter_mut().for_each(|e| *e = false);
        self.named_missing_thread = false;
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for VmTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, Action::Step);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VmTarget {
    /// Only the threads gdb named run.
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        for (action, explicit) in self.actions.iter_mut().zip(&self.explicit) {
            if !explicit {
                *action = Action::Stay;
            }
        }
        Ok(())
    }
}

impl BreakpointsExt for VmTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl HwWatchpoint for VmTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        match kind {
            WatchKind::Write => {
                // Bounded before anything walks it: each watched page becomes a read-only
                // memory slot, and KVM has only so many (`Z2,…,ffffffffffffffff` used to walk
                // 2^52 pages on the event loop's thread).
                let limit = self.slots.max_read_only_pages();
                let wanted = self.watchpoints.pages_with(addr, len);
                if len == 0 || wanted > limit as u64 {
                    eprintln!(
                        "gdbvisor: cannot insert a watchpoint of {len:#x} bytes at {addr:#x}: watches would span {wanted} pages, and KVM's memory slots allow {limit} read-only pages"
                    );
                    return Ok(false);
                }
                self.watchpoints.add(addr, len);
                Ok(true)
            }
            WatchKind::Read | WatchKind::ReadWrite => {
                let refuse = |why: &str| {
                    eprintln!(
                        "gdbvisor: cannot insert a read/access watchpoint at {addr:#x}: {why}"
                    );
                    Ok(false)
                };
                if self.caps.known(Capability::DataBreakpoints) != Some(true) {
                    return refuse("this host's KVM never fires DR7 data breakpoints (see `gdbvisor doctor`); write watchpoints work");
                }
                if !matches!(len, 1 | 2 | 4 | 8) || !addr.is_multiple_of(len) {
                    return refuse("a debug register watches 1, 2, 4 or 8 aligned bytes");
                }
                if self.breakpoints.hardware.len() + self.data_watches.len() >= DEBUG_REGISTERS {
                    return refuse("all 4 debug registers are in use");
                }
                self.data_watches.push(DataWatch {
                    addr,
                    len: len as u8,
                    kind,
                });
                Ok(true)
            }
        }
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        if kind == WatchKind::Write {
            return Ok(self.watchpoints.remove(addr, len));
        }
        let before = self.data_watches.len();
        self.data_watches
            .retain(|w| (w.addr, u64::from(w.len), w.kind) != (addr, len, kind));
        Ok(before != self.data_watches.len())
    }
}

impl SwBreakpoint for VmTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let regs = match self.core(0) {
            Ok(s) => s.control_regs(),
            Err(e) => return fault(e),
        };
        let mapped = translate(self.ram.as_ref(), &regs, addr, Access::DEBUGGER)
            .is_ok_and(|t| self.ram.contains(t.phys, 1));
        match self.breakpoints.add_software(addr, mapped) {
            Ok(()) => Ok(true),
            Err(e) => {
                eprintln!(
                    "gdbvisor: cannot insert breakpoint at {addr:#x}: not mapped yet and {e}"
                );
                Ok(false)
            }
        }
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove_software(addr))
    }
}

impl HwBreakpoint for VmTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.hardware.len() + self.data_watches.len() >= DEBUG_REGISTERS {
            eprintln!(
                "gdbvisor: cannot insert hardware breakpoint at {addr:#x}: all 4 debug registers are in use"
            );
            return Ok(false);
        }
        match self.breakpoints.add_hardware(addr) {
            Ok(()) => Ok(true),
            Err(e) => {
                eprintln!("gdbvisor: cannot insert hardware breakpoint at {addr:#x}: {e}");
                Ok(false)
            }
        }
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove_hardware(addr))
    }
}

impl TargetDescriptionXmlOverride for VmTarget {
    fn target_description_xml(
        &self,
        annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        target_xml_part(self.layout, annex, offset, length, buf).ok_or(TargetError::NonFatal)
    }
}

impl ThreadExtraInfo for VmTarget {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(id) = self.vcpu(tid) else {
            return Ok(0);
        };
        let text = self.describe_thread(id);
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}
