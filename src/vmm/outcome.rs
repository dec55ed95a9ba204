//! How a run ends: the events that end it, the message each prints, and the exit status.

use std::collections::BTreeSet;

use crate::devices::debug_exit;
use crate::vmm::host_caps::{Capability, HostCaps};
use crate::vmm::machine::{Machine, MachineError};
use crate::vmm::state_text::CpuStateText;
use crate::vmm::vcpu::{linear_pc, InternalError, Vcpu, VcpuEvent};
use crate::x86::cpu::{Cr0Flags, Cr4Flags, EferFlags};

/// gdbvisor's own exit statuses are even; isa-debug-exit's are odd.
pub mod status {
    pub(crate) const HALTED: i32 = 0;
    /// Bad command line, image or snapshot.
    pub const BAD_INPUT: i32 = 2;
    pub(crate) const TRIPLE_FAULT: i32 = 4;
    /// KVM failed or refused.
    pub const KVM_FAILURE: i32 = 6;
    pub(crate) const NO_BIOS: i32 = 8;
    /// Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Halted,
    Reset,
    DebugExit(u32),
    TripleFault,
    KvmFailure,
    /// A real-mode interrupt through an empty IVT vector (gdbvisor has no BIOS).
    NoBios,
    Interrupted,
    /// gdb killed the VM.
    Killed,
}

impl RunEnd {
    pub fn status(&self) -> i32 {
        match self {
            RunEnd::Halted | RunEnd::Reset | RunEnd::Killed => status::HALTED,
            RunEnd::DebugExit(value) => debug_exit::exit_status(*value),
            RunEnd::TripleFault => status::TRIPLE_FAULT,
            RunEnd::KvmFailure => status::KVM_FAILURE,
            RunEnd::NoBios => status::NO_BIOS,
            RunEnd::Interrupted => status::INTERRUPTED,
        }
    }
}

/// What a run without gdb does after a vCPU halted for good.
pub(crate) enum AfterHalt {
    /// The run ends with this vCPU's event.
    End(u8, VcpuEvent),
    /// Other vCPUs that started still run: resume every vCPU outside the halted set.
    GoOn,
}

/// Decides on vCPU `id`'s halt for good, with every vCPU stopped and `raced` the reports their
/// stop turned up: other halts join `halted`; any other report ends the run; else the run ends
/// once every vCPU that started has halted (those still waiting for INIT/SIPI are named).
pub(crate) fn settle_halt(
    machine: &mut Machine,
    halted: &mut BTreeSet<u8>,
    id: u8,
    raced: impl IntoIterator<Item = (u8, VcpuEvent)>,
) -> Result<AfterHalt, MachineError> {
    halted.insert(id);
    let mut ending = None;
    for (other, event) in raced {
        if event == VcpuEvent::Halted {
            halted.insert(other);
        } else if ending.is_none() {
            ending = Some((other, event));
        }
    }
    if let Some((other, event)) = ending {
        return Ok(AfterHalt::End(other, event));
    }
    Ok(match machine.never_started(halted)? {
        Some(waiting) => {
            note_never_started(&waiting);
            AfterHalt::End(id, VcpuEvent::Halted)
        }
        None => AfterHalt::GoOn,
    })
}

/// Says which vCPUs a run ended without: application processors the guest never started.
fn note_never_started(waiting: &[u8]) {
    if !waiting.is_empty() {
        let ids: Vec<String> = waiting.iter().map(u8::to_string).collect();
        eprintln!(
            "gdbvisor: vCPU {} never started (still waiting for INIT/SIPI)",
            ids.join(", ")
        );
    }
}

/// Prints what ended the run and maps it to a [`RunEnd`]. What it says of the host is what
/// `caps` already knows: no probe runs here.
pub(crate) fn report_event(
    machine: &mut Machine,
    id: u8,
    event: VcpuEvent,
    caps: HostCaps,
) -> Result<RunEnd, MachineError> {
    Ok(match event {
        VcpuEvent::Halted => {
            eprintln!(
                "gdbvisor: guest halted (every vCPU that started halted with interrupts disabled)"
            );
            RunEnd::Halted
        }
        VcpuEvent::Reset => {
            eprintln!(
                "gdbvisor: guest reset the machine through the i8042; gdbvisor does not reboot"
            );
            RunEnd::Reset
        }
        VcpuEvent::DebugExit(value) => {
            log::info!("isa-debug-exit {value:#x}");
            RunEnd::DebugExit(value)
        }
        // An IDT change never ends a run (the trace re-reads the IDT and resumes).
        VcpuEvent::Interrupted | VcpuEvent::Yielded | VcpuEvent::IdtChanged => {
            eprintln!("gdbvisor: interrupted");
            RunEnd::Interrupted
        }
        VcpuEvent::Shutdown => {
            eprintln!(
                "gdbvisor: triple fault on vCPU {id} (KVM_EXIT_SHUTDOWN); registers as KVM reports them after the exit:"
            );
            eprintln!("{}", vcpu_state(machine, id)?);
            if machine.with_vcpu(id, was_enabling_legacy_paging)? {
                match caps.known(Capability::LegacyPaging) {
                    Some(true) => {}
                    Some(false) => eprintln!(
                        "gdbvisor: note: this host's KVM cannot run 32-bit paging or PAE without long mode; a kernel that enables them triple-faults here (see `gdbvisor doctor`)"
                    ),
                    None => eprintln!(
                        "gdbvisor: note: the vCPU was turning on 32-bit paging or PAE without long mode, which some hosts' KVM cannot run (`gdbvisor doctor` says whether this one can)"
                    ),
                }
            }
            RunEnd::TripleFault
        }
        VcpuEvent::NoBios(stop) => {
            eprintln!("gdbvisor: {stop}");
            RunEnd::NoBios
        }
        VcpuEvent::InternalError(error) => {
            eprintln!(
                "gdbvisor: KVM internal error on vCPU {id}: {}",
                describe_internal(&error)
            );
            eprintln!("{}", vcpu_state(machine, id)?);
            RunEnd::KvmFailure
        }
        VcpuEvent::FailEntry { reason, cpu } => {
            eprintln!("gdbvisor: VM entry failed on vCPU {id}: hardware reason {reason:#x} (host cpu {cpu})");
            eprintln!("{}", vcpu_state(machine, id)?);
            RunEnd::KvmFailure
        }
        VcpuEvent::Debug(info) => {
            eprintln!("gdbvisor: unexpected debug exit on vCPU {id}: {info:x?}");
            RunEnd::KvmFailure
        }
        VcpuEvent::ModeChange { to, .. } => {
            eprintln!("gdbvisor: unexpected mode-change report ({to:?}) on vCPU {id}");
            RunEnd::KvmFailure
        }
        VcpuEvent::WatchWrite { phys, .. } => {
            eprintln!("gdbvisor: unexpected watchpoint exit at {phys:#x} on vCPU {id}");
            RunEnd::KvmFailure
        }
        VcpuEvent::SoftwareBreakpoint { rip } => {
            eprintln!("gdbvisor: unexpected breakpoint at {rip:#x} on vCPU {id}");
            RunEnd::KvmFailure
        }
        VcpuEvent::Unhandled(what) => {
            eprintln!("gdbvisor: unhandled KVM exit on vCPU {id}: {what}");
            eprintln!("{}", vcpu_state(machine, id)?);
            RunEnd::KvmFailure
        }
    })
}

/// One line: suberror, its name, the exit data and the instruction bytes at RIP.
pub(crate) fn describe_internal(error: &InternalError) -> String {
    let kind = match error.suberror {
        1 => " (emulation failure)",
        2 => " (simultaneous exceptions)",
        3 => " (delivery event failure)",
        4 => " (unexpected exit reason)",
        _ => "",
    };
    let bytes: Vec<String> = error.insn.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "suberror {}{kind}, data [{}], rip {:#x} (linear {:#x}), bytes at rip: {}",
        error.suberror,
        error
            .data
            .iter()
            .map(|d| format!("{d:#x}"))
            .collect::<Vec<_>>()
            .join(", "),
        error.rip,
        error.linear_rip,
        if bytes.is_empty() {
            "unreadable".to_string()
        } else {
            bytes.join(" ")
        }
    )
}

/// vCPU `id`'s registers as text (the block printed when a run ends badly).
pub(crate) fn vcpu_state(machine: &mut Machine, id: u8) -> Result<String, MachineError> {
    machine.with_vcpu(id, |vcpu| {
        match (vcpu.kvm().get_regs(), vcpu.kvm().get_sregs()) {
            (Ok(regs), Ok(sregs)) => CpuStateText {
                regs: &regs,
                sregs: &sregs,
            }
            .to_string(),
            (Err(e), _) | (_, Err(e)) => format!("  (registers unavailable: {e})"),
        }
    })
}

/// `mov cr0, r32` (0F 22 C0+r) at the start of `code`.
pub(crate) fn is_mov_to_cr0(code: &[u8]) -> bool {
    matches!(code, [0x0F, 0x22, 0xC0..=0xC7, ..])
}

/// After a triple fault: was the guest outside long mode with paging off, but either at a
/// `mov cr0` or with CR4.PSE/PAE already set — i.e. turning on 32-bit paging or PAE?
fn was_enabling_legacy_paging(vcpu: &mut Vcpu) -> bool {
    let (Ok(regs), Ok(sregs)) = (vcpu.kvm().get_regs(), vcpu.kvm().get_sregs()) else {
        return false;
    };
    let paging_off = !Cr0Flags::from_bits_truncate(sregs.cr0).contains(Cr0Flags::PG);
    let long_mode = EferFlags::from_bits_truncate(sregs.efer).contains(EferFlags::LME);
    let cr4 = Cr4Flags::from_bits_truncate(sregs.cr4);
    let at_mov_cr0 = is_mov_to_cr0(&vcpu.read_linear(&sregs, linear_pc(&regs, &sregs), 3));
    paging_off && !long_mode && (at_mov_cr0 || cr4.intersects(Cr4Flags::PSE | Cr4Flags::PAE))
}
