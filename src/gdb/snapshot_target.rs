//! gdb served from a snapshot: no KVM, no vCPU threads. Registers come from the saved state,
//! memory through the same page walker as a live VM, every monitor command through
//! [`MonitorHost`]; vCPUs are threads 1…N. Nothing can run: `continue` and `stepi` stop at once
//! with a message on gdb's console saying so, and writes are refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::Connection;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSingleStep,
    MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::extended_mode::ExtendedModeOps;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::gdb::arch::{
    target_xml_part, ArchChoice, GdbvisorArch, RegLayout, X86RegId, X86Registers,
};
use crate::gdb::conn::{self, GdbConnection, GdbEndpoint, Inbox, LoopInput};
use crate::gdb::monitor::msr;
use crate::gdb::monitor::{handle_monitor, Lines, MonitorError, MonitorHost};
use crate::gdb::regs::CpuSnapshot;
use crate::gdb::session::{GdbOptions, SessionError};
use crate::gdb::target::TargetFault;
use crate::gdb::NO_SUCH_THREAD;
use crate::snapshot::Snapshot;
use crate::vmm::machine::HALT_POLL;
use crate::vmm::memory::GuestRam;
use crate::x86::paging::{LinearMemory, PagedMemory};
use crate::x86::PhysMemory;

/// What gdb's console shows when asked to run a snapshot.
const CANNOT_RUN: &str = "gdbvisor: this is a snapshot: the guest cannot run (continue, step, breakpoints and watchpoints need a live VM); registers, memory and monitor commands work";

pub struct SnapshotTarget {
    pub snapshot: Snapshot,
    /// The description this connection is served.
    pub layout: RegLayout,
    /// The description connections get when they attach (`--gdb-arch`, `monitor arch`).
    pub(crate) arch: ArchChoice,
    /// The vCPU gdb last read: monitor commands act on it.
    pub current: u8,
    /// `monitor phys on`: gdb's memory addresses are guest-physical.
    pub phys_mode: bool,
}

impl SnapshotTarget {
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotTarget {
            snapshot,
            layout: RegLayout::X86_64,
            arch: ArchChoice::Mode,
            current: 0,
            phys_mode: false,
        }
    }

    /// The vCPU thread `tid` names, if the snapshot has it.
    fn vcpu(&self, tid: Tid) -> Option<u8> {
        crate::gdb::vcpu_of(tid, self.snapshot.cpus.len())
    }

    /// vCPU `id`'s saved state; `id` comes from [`SnapshotTarget::vcpu`] or `current`.
    fn cpu(&self, id: u8) -> &CpuSnapshot {
        self.snapshot
            .cpus
            .get(usize::from(id))
            .unwrap_or(&self.snapshot.cpus[0])
    }

    /// `CPU#n [mode, CPL, saved state]`.
    fn describe(&self, id: u8) -> String {
        let cpu = self.cpu(id);
        format!(
            "CPU#{id} [{:?}, CPL{}, {} in the snapshot]",
            cpu.mode(),
            cpu.sregs.cs.selector & 3,
            cpu.run_state()
        )
    }
}

impl MonitorHost for SnapshotTarget {
    fn vcpu_count(&self) -> usize {
        self.snapshot.cpus.len()
    }

    fn current_vcpu(&self) -> u8 {
        self.current
    }

    fn cpu_state(&mut self, id: u8) -> Result<CpuSnapshot, TargetFault> {
        Ok(self.cpu(id).clone())
    }

    fn guest_ram(&self) -> Arc<GuestRam> {
        self.snapshot.ram.clone()
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
        Ok((0..self.snapshot.cpus.len() as u8)
            .map(|id| self.describe(id))
            .collect())
    }

    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        match name {
            "msr" => msr::msr(args, msr::from_saved(self.cpu(vcpu).clone())),
            // Writes the snapshot again, in gdbvisor's format (converts a QEMU dump).
            "dump" => crate::gdb::monitor::dump(args, &self.snapshot.cpus, &self.snapshot.ram),
            _ => Err(MonitorError::Failed(format!(
                "'{name}' needs a live VM; this is a snapshot ({})",
                self.snapshot.path.display()
            ))),
        }
    }
}

impl Target for SnapshotTarget {
    type Arch = GdbvisorArch;
    type Error = TargetFault;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
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

    /// Only so that gdb's `kill` (vKill) gets its OK before the session ends.
    fn support_extended_mode(&mut self) -> Option<ExtendedModeOps<'_, Self>> {
        Some(self)
    }
}

crate::gdb::kill_only_extended_mode!(SnapshotTarget);

/// A refused write: gdb only says "cannot access", so the reason goes to gdbvisor's stderr.
fn read_only<T>(what: &str) -> TargetResult<T, SnapshotTarget> {
    eprintln!("gdbvisor: {what} refused: a snapshot is read-only");
    Err(TargetError::Errno(30)) // EROFS
}

impl MultiThreadBase for SnapshotTarget {
    fn read_registers(&mut self, regs: &mut X86Registers, tid: Tid) -> TargetResult<(), Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        self.current = id;
        regs.layout = self.layout;
        regs.file = self.cpu(id).to_file();
        Ok(())
    }

    fn write_registers(&mut self, _regs: &X86Registers, _tid: Tid) -> TargetResult<(), Self> {
        read_only("register write")
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        self.current = id;
        let regs = self.cpu(id).control_regs();
        let ram = self.snapshot.ram.clone();
        let linear = PagedMemory::new(&*ram, regs);
        // Page by page, so a read that runs into an unmapped page or past the snapshot's RAM
        // returns what came before it; nothing outside the snapshot reads as zeros.
        let mut done = 0;
        while done < data.len() {
            let addr = start.wrapping_add(done as u64);
            let n = (0x1000 - (addr & 0xfff) as usize).min(data.len() - done);
            let piece = &mut data[done..done + n];
            let read = if self.phys_mode {
                ram.read_phys(addr, piece).is_ok()
            } else {
                linear.read_linear(addr, piece).is_ok()
            };
            if !read {
                break;
            }
            done += n;
        }
        match done {
            0 if !data.is_empty() => Err(TargetError::Errno(14)),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, _start: u64, _data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        read_only("memory write")
    }

    fn is_thread_alive(&mut self, tid: Tid) -> Result<bool, Self::Error> {
        Ok(self.vcpu(tid).is_some())
    }

    fn list_active_threads(
        &mut self,
        register_thread: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        for id in 0..self.snapshot.cpus.len() {
            register_thread(Tid::new(id + 1).expect("tids start at 1"));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    /// `p`/`P` packets: without them gdb writes one register as a whole `G`, and gdb 13
    /// crashes when an i386 `G` is refused.
    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for SnapshotTarget {
    fn read_register(
        &mut self,
        tid: Tid,
        reg: X86RegId,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let id = self.vcpu(tid).ok_or(TargetError::Errno(NO_SUCH_THREAD))?;
        let regs = X86Registers {
            layout: self.layout,
            file: self.cpu(id).to_file(),
        };
        regs.read_register(reg.0, buf).ok_or(TargetError::NonFatal)
    }

    fn write_register(&mut self, _tid: Tid, _reg: X86RegId, _val: &[u8]) -> TargetResult<(), Self> {
        read_only("register write")
    }
}

/// Resuming does nothing: the event loop reports the stop at once, with [`CANNOT_RUN`].
impl MultiThreadResume for SnapshotTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        _tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for SnapshotTarget {
    fn set_resume_action_step(
        &mut self,
        _tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Breakpoints are accepted (gdb inserts them only to resume), and the resume then says why
/// nothing runs.
impl Breakpoints for SnapshotTarget {
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

impl SwBreakpoint for SnapshotTarget {
    fn add_sw_breakpoint(&mut self, _addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, _addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(true)
    }
}

impl HwBreakpoint for SnapshotTarget {
    fn add_hw_breakpoint(&mut self, _addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, _addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(true)
    }
}

impl HwWatchpoint for SnapshotTarget {
    fn add_hw_watchpoint(
        &mut self,
        _addr: u64,
        _len: u64,
        _kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        _addr: u64,
        _len: u64,
        _kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(true)
    }
}

impl MonitorCmd for SnapshotTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        out: ConsoleOutput<'_>,
    ) -> Result<(), TargetFault> {
        handle_monitor(self, cmd, out)
    }
}

impl TargetDescriptionXmlOverride for SnapshotTarget {
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

impl ThreadExtraInfo for SnapshotTarget {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(id) = self.vcpu(tid) else {
            return Ok(0);
        };
        let text = self.describe(id);
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

/// The RSP `O` packet: text for gdb's console while it waits for a stop.
fn console_packet(text: &str) -> Vec<u8> {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    let body = format!("O{hex}");
    let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${body}#{sum:02x}").into_bytes()
}

pub enum SnapshotEventLoop {}

impl BlockingEventLoop for SnapshotEventLoop {
    type Target = SnapshotTarget;
    type Connection = GdbConnection;
    type StopReason = MultiThreadStopReason<u64>;

    /// Nothing ran: say why on gdb's console, and report the stop at once.
    fn wait_for_stop_reason(
        target: &mut SnapshotTarget,
        conn: &mut GdbConnection,
    ) -> Result<
        Event<MultiThreadStopReason<u64>>,
        WaitForStopReasonError<TargetFault, std::io::Error>,
    > {
        let line = format!("{CANNOT_RUN}\n");
        conn.write_all(&console_packet(&line))
            .and_then(|()| conn.flush())
            .map_err(WaitForStopReasonError::Connection)?;
        Ok(Event::TargetStopped(
            MultiThreadStopReason::SignalWithThread {
                tid: Tid::new(usize::from(target.current) + 1).expect("tids start at 1"),
                // Signal 0: gdb says only that the thread stopped, where it was.
                signal: Signal::SIGZERO,
            },
        ))
    }

    fn on_interrupt(
        _target: &mut SnapshotTarget,
    ) -> Result<Option<MultiThreadStopReason<u64>>, TargetFault> {
        Ok(None)
    }
}

/// Serves gdb from `snapshot` until gdb kills it, or (stdio) goes away, or Ctrl-C.
pub fn serve(
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
    let mut target = SnapshotTarget::new(snapshot);
    target.arch = options.arch;
    loop {
        let input = inbox.borrow_mut().next(Some(HALT_POLL));
        if interrupt.swap(false, Ordering::SeqCst) {
            eprintln!("gdbvisor: interrupted");
            return Ok(());
        }
        let Some(LoopInput::NewClient(client)) = input else {
            continue;
        };
        log::info!("gdb attached from {}", client.peer);
        inbox
            .borrow_mut()
            .attach_reader(client.reader, client.reader_fd);
        target.layout = target
            .arch
            .fixed()
            .unwrap_or_else(|| target.cpu(0).layout());
        let connection = GdbConnection::new(client.writer, inbox.clone());
        let mut packet_buffer = vec![0u8; 0x10000];
        let stub = GdbStub::builder(connection)
            .with_packet_buffer(&mut packet_buffer)
            .build()
            .expect("a packet buffer is given");
        let result = stub.run_blocking::<SnapshotEventLoop>(&mut target);
        session.store(false, Ordering::SeqCst);
        match result {
            Ok(DisconnectReason::Kill) => {
                eprintln!("gdbvisor: gdb ended the session");
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => log::info!("gdb session ended: {e}"),
        }
        if options.endpoint == GdbEndpoint::Stdio {
            return Ok(());
        }
        eprintln!("gdbvisor: gdb detached; waiting for the next one");
    }
}
