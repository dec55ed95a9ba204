//! The gdbstub target: a [`Backend`]'s vCPUs as gdb threads 1…N, all-stop. Thin: registers come
//! from [`crate::gdb::regs`], memory through the x86 walker one page piece at a time, monitor
//! commands from [`crate::gdb::monitor`]; run control goes to the backend's [`RunControl`] and
//! is accepted without effect on a backend that cannot run (gdb inserts breakpoints only to
//! resume, and the wait after the resume says why nothing ran).

use std::ops::Range;
use std::sync::Arc;

use gdbstub::common::{Pid, Signal, Tid};
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
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::extended_mode::{
    Args, AttachKind, ExtendedMode, ExtendedModeOps, ShouldTerminate,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::gdb::arch::{
    target_xml_part, ArchChoice, GdbvisorArch, Reg, RegLayout, RegisterFile, X86RegId, X86Registers,
};
use crate::gdb::backend::{tid_of, Action, Backend, RunControl, Waited};
use crate::gdb::conn::GdbConnection;
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::{handle_monitor, Lines, MonitorHost};
use crate::snapshot::CpuSnapshot;
use crate::vmm::memory::GuestRam;
use crate::x86::paging::PagedMemory;
use crate::x86::{PhysMemory, PhysMemoryError};

/// The error reply for a thread that does not exist (gdbserver answers `E01`).
const NO_SUCH_THREAD: u8 = 1;
/// The error reply for memory that cannot be read or written (EFAULT).
const BAD_ADDRESS: u8 = 14;

/// The vCPU (0…count-1) that gdb's thread `tid` (1…count) names, if there is one: every
/// target method goes through it, so a thread id gdb made up is an error reply, never an
/// index out of bounds or a wrap onto another vCPU.
fn vcpu_of(tid: Tid, count: usize) -> Option<u8> {
    let id = tid.get() - 1;
    (id < count).then(|| u8::try_from(id).ok()).flatten()
}

/// The one gdb target, over a live VM or a snapshot.
pub struct GdbTarget<B> {
    pub(crate) backend: B,
    /// The description this connection is served.
    layout: RegLayout,
    /// The description connections get when they attach (`--gdb-arch`, `monitor arch`).
    arch: ArchChoice,
    /// The vCPU gdb last read or wrote (its current thread): monitor commands act on it.
    current: u8,
    /// `monitor phys on`: gdb's memory addresses are guest-physical.
    phys_mode: bool,
}

impl<B: Backend> GdbTarget<B> {
    /// Serves `backend`; connections get the description `arch` chooses.
    pub fn new(backend: B, arch: ArchChoice) -> Self {
        GdbTarget {
            backend,
            layout: RegLayout::X86_64,
            arch,
            current: 0,
            phys_mode: false,
        }
    }

    /// The vCPU of gdb's current thread.
    pub fn current_vcpu(&self) -> u8 {
        self.current
    }

    /// A gdb attaches: it gets the description `--gdb-arch` or `monitor arch` chose, or that of
    /// vCPU 0's mode.
    pub(crate) fn begin_session(&mut self) -> Result<(), TargetFault> {
        self.layout = match self.arch.fixed() {
            Some(layout) => layout,
            None => RegLayout::from_mode(self.backend.cpu(0)?.mode()),
        };
        Ok(())
    }

    /// After a resume: waits for the stop (or a byte from gdb).
    pub(crate) fn wait_for_stop(
        &mut self,
        conn: &mut GdbConnection,
    ) -> Result<Waited, TargetFault> {
        self.backend.wait_for_stop(conn, self.current)
    }

    /// The vCPU thread `tid` names, if it exists.
    fn vcpu(&self, tid: Tid) -> Option<u8> {
        vcpu_of(tid, self.backend.vcpu_count())
    }

    fn thread(&self, tid: Tid) -> Result<u8, TargetError<TargetFault>> {
        self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))
    }

    /// Memory as vCPU `id` sees it (guest-physical with `monitor phys on`), handed to `each`
    /// page piece by page piece; the bytes done before the first that failed.
    fn access(
        &mut self,
        id: u8,
        start: u64,
        len: usize,
        mut each: impl FnMut(&GuestRam, u64, Range<usize>) -> Result<(), PhysMemoryError>,
    ) -> Result<usize, TargetFault> {
        let regs = self.backend.core(id)?.control_regs();
        let ram: &GuestRam = self.backend.ram();
        let memory = if self.phys_mode {
            PagedMemory::physical(ram)
        } else {
            PagedMemory::new(ram, regs)
        };
        Ok(memory
            .for_each_piece(start, len, |phys, range| each(ram, phys, range))
            .0)
    }

    /// vCPU `id`'s registers in the session's layout.
    fn registers(&mut self, id: u8) -> Result<X86Registers, TargetFault> {
        Ok(X86Registers {
            layout: self.layout,
            file: RegisterFile::from(self.backend.cpu(id)?),
        })
    }

    /// The registers gdb reads at every stop (pc, stack and frame pointers, flags) of the
    /// stopped thread, for the stop reply: gdb then needs no `g` after a step or a hit.
    pub(crate) fn expedited(
        &mut self,
        stop: &MultiThreadStopReason<u64>,
    ) -> Vec<(X86RegId, Vec<u8>)> {
        const EXPEDITED: [Reg; 4] = [Reg::Rip, Reg::Rsp, Reg::Rbp, Reg::Eflags];
        let tid = match *stop {
            MultiThreadStopReason::SignalWithThread { tid, .. }
            | MultiThreadStopReason::SwBreak(tid)
            | MultiThreadStopReason::HwBreak(tid)
            | MultiThreadStopReason::Watch { tid, .. } => tid,
            _ => return Vec::new(),
        };
        let layout = self.layout;
        let Some(Ok(core)) = self.vcpu(tid).map(|id| self.backend.core(id)) else {
            return Vec::new();
        };
        // Only general registers are read from it, which the core of a vCPU's state has.
        let regs = X86Registers {
            layout,
            file: RegisterFile::from(core),
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

    /// `run` on the backend's run control, or `refused` when the guest cannot run.
    fn run_or<T>(&mut self, refused: T, run: impl FnOnce(&mut dyn RunControl) -> T) -> T {
        match self.backend.run_control() {
            Some(control) => run(control),
            None => refused,
        }
    }
}

impl<B: Backend> Target for GdbTarget<B> {
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

    /// Only so that gdb's `kill` (vKill) gets its OK before the session ends; running or
    /// attaching to other programs is refused.
    fn support_extended_mode(&mut self) -> Option<ExtendedModeOps<'_, Self>> {
        Some(self)
    }
}

impl<B: Backend> ExtendedMode for GdbTarget<B> {
    fn run(&mut self, _filename: Option<&[u8]>, _args: Args<'_, '_>) -> TargetResult<Pid, Self> {
        Err(TargetError::NonFatal)
    }

    fn attach(&mut self, _pid: Pid) -> TargetResult<(), Self> {
        Err(TargetError::NonFatal)
    }

    fn query_if_attached(&mut self, _pid: Pid) -> TargetResult<AttachKind, Self> {
        Ok(AttachKind::Attach)
    }

    fn kill(&mut self, _pid: Option<Pid>) -> TargetResult<ShouldTerminate, Self> {
        Ok(ShouldTerminate::Yes)
    }

    fn restart(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<B: Backend> MultiThreadBase for GdbTarget<B> {
    fn read_registers(&mut self, regs: &mut X86Registers, tid: Tid) -> TargetResult<(), Self> {
        let id = self.thread(tid)?;
        self.current = id;
        *regs = self.registers(id).map_err(TargetError::Fatal)?;
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86Registers, tid: Tid) -> TargetResult<(), Self> {
        self.backend.writable("register write")?;
        let id = self.thread(tid)?;
        if regs.layout.g_packet_len() != self.layout.g_packet_len() {
            eprintln!(
                "gdbvisor: register write refused: {} bytes of registers, the {} description has {}",
                regs.layout.g_packet_len(),
                self.layout.name(),
                self.layout.g_packet_len()
            );
            return Err(TargetError::NonFatal);
        }
        self.backend.write_registers(id, &regs.file, self.layout)
    }

    /// `p`/`P` packets: without them gdb writes one register as a whole `G`, and gdb 13
    /// crashes when an i386 `G` is refused.
    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let id = self.thread(tid)?;
        self.current = id;
        let len = data.len();
        let done = self.access(id, start, len, |ram, phys, range| {
            ram.read_phys(phys, &mut data[range])
        });
        match done.map_err(TargetError::Fatal)? {
            0 if len > 0 => Err(TargetError::Errno(BAD_ADDRESS)),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        self.backend.writable("memory write")?;
        let id = self.thread(tid)?;
        let done = self.access(id, start, data.len(), |ram, phys, range| {
            let len = range.len();
            ram.write(phys, &data[range])
                .map_err(|_| PhysMemoryError { addr: phys, len })
        });
        if done.map_err(TargetError::Fatal)? == data.len() {
            Ok(())
        } else {
            Err(TargetError::Errno(BAD_ADDRESS))
        }
    }

    fn list_active_threads(
        &mut self,
        register_thread: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        for id in 0..self.backend.vcpu_count() as u8 {
            register_thread(tid_of(id));
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

impl<B: Backend> SingleRegisterAccess<Tid> for GdbTarget<B> {
    fn read_register(
        &mut self,
        tid: Tid,
        reg: X86RegId,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let id = self.thread(tid)?;
        let regs = self.registers(id).map_err(TargetError::Fatal)?;
        regs.read_register(reg.0, buf).ok_or(TargetError::NonFatal)
    }

    fn write_register(&mut self, tid: Tid, reg: X86RegId, val: &[u8]) -> TargetResult<(), Self> {
        self.backend.writable("register write")?;
        let id = self.thread(tid)?;
        let mut regs = self.registers(id).map_err(TargetError::Fatal)?;
        if regs.write_register(reg.0, val).is_none() {
            return Err(TargetError::NonFatal);
        }
        self.backend.write_registers(id, &regs.file, self.layout)
    }
}

impl<B: Backend> MultiThreadResume for GdbTarget<B> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        let current = self.current;
        self.run_or(Ok(()), |run| run.resume(current))
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.run_or((), |run| run.clear_actions());
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
        let id = self.vcpu(tid);
        self.run_or((), |run| run.set_action(id, Action::Continue));
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl<B: Backend> MultiThreadSingleStep for GdbTarget<B> {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        let id = self.vcpu(tid);
        self.run_or((), |run| run.set_action(id, Action::Step));
        Ok(())
    }
}

impl<B: Backend> MultiThreadSchedulerLocking for GdbTarget<B> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.run_or((), |run| run.lock_scheduler());
        Ok(())
    }
}

impl<B: Backend> Breakpoints for GdbTarget<B> {
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

impl<B: Backend> SwBreakpoint for GdbTarget<B> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.run_or(Ok(true), |run| run.add_sw_breakpoint(addr))
            .map_err(TargetError::Fatal)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.run_or(true, |run| run.remove_sw_breakpoint(addr)))
    }
}

impl<B: Backend> HwBreakpoint for GdbTarget<B> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.run_or(true, |run| run.add_hw_breakpoint(addr)))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.run_or(true, |run| run.remove_hw_breakpoint(addr)))
    }
}

impl<B: Backend> HwWatchpoint for GdbTarget<B> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.run_or(true, |run| run.add_hw_watchpoint(addr, len, kind)))
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.run_or(true, |run| run.remove_hw_watchpoint(addr, len, kind)))
    }
}

impl<B: Backend> TargetDescriptionXmlOverride for GdbTarget<B> {
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

impl<B: Backend> ThreadExtraInfo for GdbTarget<B> {
    fn thread_extra_info(&mut self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(id) = self.vcpu(tid) else {
            return Ok(0);
        };
        let text = self.backend.describe_thread(id)?;
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

impl<B: Backend> MonitorCmd for GdbTarget<B> {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        out: ConsoleOutput<'_>,
    ) -> Result<(), TargetFault> {
        handle_monitor(self, cmd, out)
    }
}

impl<B: Backend> MonitorHost for GdbTarget<B> {
    fn vcpu_count(&self) -> usize {
        self.backend.vcpu_count()
    }

    fn current_vcpu(&self) -> u8 {
        self.current
    }

    fn cpu_state(&mut self, id: u8) -> Result<CpuSnapshot, TargetFault> {
        Ok(self.backend.cpu(id)?.clone())
    }

    fn guest_ram(&self) -> Arc<GuestRam> {
        self.backend.ram().clone()
    }

    fn served_layout(&self) -> RegLayout {
        self.layout
    }

    fn set_arch(&mut self, choice: ArchChoice) {
        self.arch = choice;
    }

    fn set_phys_mode(&mut self, on: bool) {
        self.phys_mode = on;
    }

    fn thread_lines(&mut self) -> Result<Vec<String>, TargetFault> {
        (0..self.backend.vcpu_count() as u8)
            .map(|id| self.backend.describe_thread(id))
            .collect()
    }

    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        self.backend.host_command(vcpu, name, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_name_existing_vcpus_only() {
        let tid = |n| Tid::new(n).unwrap();
        assert_eq!(vcpu_of(tid(1), 1), Some(0));
        assert_eq!(vcpu_of(tid(2), 1), None);
        assert_eq!(vcpu_of(tid(257), 300), None, "no u8 wrap onto vCPU 0");
        assert_eq!(vcpu_of(tid(101), 2), None);
        assert_eq!(vcpu_of(tid(usize::MAX), 2), None);
    }
}
