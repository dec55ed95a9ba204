//! A live VM under gdb, in parts: the machine handle, each vCPU's run state, the breakpoint and
//! watch bookkeeping, and what the event loop keeps between gdb's requests.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use gdbstub::target::TargetError;

use super::debug::DebugBook;
use super::exceptions::ExceptionTrace;
use super::vcpus::VcpuRuns;
use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::gdb::backend::{Action, Refusal};
use crate::gdb::fault::TargetFault;
use crate::gdb::regs::apply_file;
use crate::snapshot::CpuSnapshot;
use crate::vmm::host_caps::HostCaps;
use crate::vmm::machine::Machine;
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::Protection;
use crate::vmm::outcome::RunEnd;
use crate::vmm::vcpu::VcpuEvent;

/// The machine: its vCPU threads, guest RAM, and the memory slots that make pages read-only.
pub(crate) struct VmHandle {
    pub(crate) machine: Machine,
    pub(crate) ram: Arc<GuestRam>,
    pub(crate) slots: Protection,
    /// KVM can block interrupts while stepping (KVM_GUESTDBG_BLOCKIRQ).
    pub(crate) block_irq: bool,
    /// What the host can do, as learned before the vCPUs started: never probed from here.
    pub(crate) caps: HostCaps,
}

/// A live VM as gdb's backend: vCPUs are threads 1…N, all-stop.
pub(crate) struct LiveVm {
    pub(crate) vm: VmHandle,
    pub(crate) vcpus: VcpuRuns,
    pub(crate) debug: DebugBook,
    /// Stops that other vCPUs reported while the first stop was being handled; the next resume
    /// that runs their vCPU reports them without running anything (all-stop). A resume that
    /// leaves their vCPU where it is (gdb stepping another thread over a breakpoint) keeps
    /// them: reporting one then would answer gdb's step with another thread's stop.
    pub(crate) pending: VecDeque<(u8, VcpuEvent)>,
    /// Set when the guest ended (debug-exit, reset): how the process ends.
    pub(crate) run_end: Option<RunEnd>,
    /// `monitor hold`: the next disconnect keeps the guest stopped.
    pub(crate) hold: bool,
    /// Set by the Ctrl-C handler of the VMM's terminal.
    pub(crate) interrupt: Arc<AtomicBool>,
    /// The exception trace (`--trace-exceptions`, `monitor trace exceptions`, `monitor catch
    /// exception`); `None` keeps every resume as it was without one.
    pub(crate) trace: Option<ExceptionTrace>,
    /// Each vCPU's action in the last resume: a stop the trace handles by itself resumes the
    /// vCPUs as gdb last asked.
    pub(crate) resumed_actions: Vec<Action>,
    /// The vCPU stepping off a handler entry on its own thread (see `LiveVm::start_vcpus`):
    /// its report resumes the others.
    pub(crate) stepping_off: Option<u8>,
    /// The run has no gdb (the exception trace's own loop drives it).
    pub(crate) unattended: bool,
}

impl LiveVm {
    pub(crate) fn new(
        machine: Machine,
        ram: Arc<GuestRam>,
        slots: Protection,
        caps: HostCaps,
        interrupt: Arc<AtomicBool>,
        trace: Option<ExceptionTrace>,
    ) -> Self {
        let count = machine.vcpu_count();
        LiveVm {
            vm: VmHandle {
                machine,
                ram,
                slots,
                block_irq: caps.block_irq(),
                caps,
            },
            vcpus: VcpuRuns::new(count),
            debug: DebugBook::default(),
            pending: VecDeque::new(),
            run_end: None,
            hold: false,
            interrupt,
            trace,
            resumed_actions: Vec::new(),
            stepping_off: None,
            unattended: false,
        }
    }

    /// vCPU `id`'s whole state at this stop.
    pub(crate) fn state_at_stop(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.vcpus.state(&mut self.vm.machine, id, true)
    }

    /// At least vCPU `id`'s general and segment registers at this stop (see
    /// [`CpuSnapshot::fetch_core`]): enough for its pc, mode and page tables.
    pub(crate) fn core_at_stop(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.vcpus.state(&mut self.vm.machine, id, false)
    }

    /// Writes a whole register file to vCPU `id` (what gdb's `G` and `P` packets end in).
    pub(crate) fn write_file(
        &mut self,
        id: u8,
        file: &RegisterFile,
        layout: RegLayout,
    ) -> Result<(), Refusal> {
        let state = self.state_at_stop(id).map_err(TargetError::Fatal)?;
        let (kregs, ksregs, kfpu) = match apply_file(state, file, layout) {
            Ok(values) => values,
            Err(why) => {
                eprintln!("gdbvisor: register write refused: {why}");
                return Err(TargetError::NonFatal);
            }
        };
        let result = self.vm.machine.with_vcpu(id, move |vcpu| {
            let kvm = vcpu.kvm();
            kvm.set_regs(&kregs)
                .and_then(|_| kvm.set_sregs(&ksregs))
                .and_then(|_| kvm.set_fpu(&kfpu))
        });
        self.vcpus.forget_state(id);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                eprintln!("gdbvisor: KVM refused the register write: {e}");
                Err(TargetError::NonFatal)
            }
            Err(e) => Err(TargetError::Fatal(e.into())),
        }
    }
}
