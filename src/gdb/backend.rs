//! What the one gdb target serves: a live VM or a snapshot, each a [`Backend`]. Registers,
//! memory, threads and the monitor work on both; what only a VM that runs can do (resume, step,
//! breakpoints, watchpoints) is behind [`RunControl`], which a snapshot does not have.

use std::sync::Arc;

use gdbstub::common::Tid;
use gdbstub::stub::{DisconnectReason, MultiThreadStopReason};
use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub::target::TargetError;

use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::Lines;
use crate::snapshot::CpuSnapshot;
use crate::vmm::machine::VcpuReport;
use crate::vmm::memory::GuestRam;
use crate::vmm::outcome::RunEnd;
use crate::vmm::vcpu::VcpuEvent;

/// How a run served to gdb ended, and the event that ended it while no gdb was attached (what
/// `--dump-on-crash` judges).
pub(crate) type Ended = (RunEnd, Option<VcpuEvent>);

/// A reply that refuses what gdb asked (the reason is on gdbvisor's stderr), or a fault.
pub(crate) type Refusal = TargetError<TargetFault>;

/// gdb's thread id of vCPU `id` (threads are numbered from 1).
pub(crate) fn tid_of(id: u8) -> Tid {
    Tid::new(usize::from(id) + 1).expect("ids start at 0, tids at 1")
}

/// What ended a wait while the guest runs.
pub enum Waited {
    Stopped(MultiThreadStopReason<u64>),
    /// gdb's Ctrl-C (0x03): all-stop, so the one byte read while the guest runs.
    CtrlC,
    /// gdb's connection closed or failed.
    Disconnected(std::io::Error),
}

/// What gdb asked a vCPU to do at the next resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Stay,
    Continue,
    Step,
}

/// The state behind the gdb target. vCPUs are numbered 0…count-1; every `id` given to a method
/// names one (the target checks gdb's thread ids first).
pub trait Backend {
    fn vcpu_count(&self) -> usize;
    /// vCPU `id`'s whole state at this stop.
    fn cpu(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault>;
    /// At least vCPU `id`'s general and segment registers at this stop: enough for its pc, mode
    /// and page tables.
    fn core(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.cpu(id)
    }
    fn ram(&self) -> &Arc<GuestRam>;
    /// `CPU#n [mode, CPL, state]`, as `info threads` shows it (taking the state it needs: gdb
    /// asks only for `info threads`, never at the thread listing it makes at every stop).
    fn describe_thread(&mut self, id: u8) -> Result<String, TargetFault>;

    /// Whether gdb may write registers and memory: `Err` says why not, on stderr.
    fn writable(&self, _what: &str) -> Result<(), Refusal> {
        Ok(())
    }
    /// Writes a whole register file (what gdb's `G` and `P` packets end in), in `layout`.
    fn write_registers(
        &mut self,
        id: u8,
        file: &RegisterFile,
        layout: RegLayout,
    ) -> Result<(), Refusal>;

    /// The monitor commands whose answer depends on the backend: `hold`, `catch`, `msr`, `dump`.
    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines;

    /// Resume, step and breakpoints, when the guest can run.
    fn run_control(&mut self) -> Option<&mut dyn RunControl>;
    /// After a resume: waits until the guest stops, or gdb sends a byte. `current` is the vCPU
    /// of gdb's current thread.
    fn wait_for_stop(
        &mut self,
        conn: &mut GdbConnection,
        current: u8,
    ) -> Result<Waited, TargetFault>;
    /// gdb's Ctrl-C while the guest runs: the stop that follows ends the wait.
    fn interrupt(&mut self) {}

    /// No input came while no gdb is attached: a chance to notice a vCPU's final halt (and for
    /// the exception trace to read the IDT again); `Some` when the run ended meanwhile.
    fn tick(&mut self, _inbox: &SharedInbox) -> Result<Option<Ended>, TargetFault> {
        Ok(None)
    }
    /// A vCPU's report while no gdb is attached: `Some` when it ends the run.
    fn report_unattended(
        &mut self,
        _report: VcpuReport,
        _inbox: &SharedInbox,
    ) -> Result<Option<Ended>, TargetFault> {
        Ok(None)
    }
    /// Ctrl-C in gdbvisor's terminal while no gdb is attached: the run ends.
    fn stop_for_good(&mut self, _inbox: &SharedInbox) -> Result<(), TargetFault> {
        Ok(())
    }
    /// A gdb attaches: hold the guest still for it.
    fn attach(&mut self, _inbox: &SharedInbox) -> Result<(), TargetFault> {
        Ok(())
    }
    /// gdb's session ended, as gdb chose (`None`: the connection failed): `Some` when the run is
    /// over, `None` to wait for the next gdb. `stdio`: nobody can attach again.
    fn detach(
        &mut self,
        how: Option<DisconnectReason>,
        inbox: &SharedInbox,
        stdio: bool,
    ) -> Result<Option<Ended>, TargetFault>;
}

/// gdb's run control of a guest that can run. `Ok(false)` from an insertion is gdb's "cannot
/// insert" (the reason is on stderr).
pub trait RunControl {
    /// gdbstub's contract: a thread without an explicit action continues, unless
    /// [`RunControl::lock_scheduler`] follows.
    fn clear_actions(&mut self);
    /// gdb's action for vCPU `id`; `None`: gdb named a thread that does not exist.
    fn set_action(&mut self, id: Option<u8>, action: Action);
    /// Only the threads gdb named run.
    fn lock_scheduler(&mut self);
    /// Runs the vCPUs as the actions say; `current` is the vCPU of gdb's current thread.
    fn resume(&mut self, current: u8) -> Result<(), TargetFault>;

    fn add_sw_breakpoint(&mut self, addr: u64) -> Result<bool, TargetFault>;
    fn remove_sw_breakpoint(&mut self, addr: u64) -> bool;
    fn add_hw_breakpoint(&mut self, addr: u64) -> bool;
    fn remove_hw_breakpoint(&mut self, addr: u64) -> bool;
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool;
    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool;
}
