//! One run of a kernel, from image file to exit status.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use thiserror::Error;

use crate::boot::{self, BootError, BootParams, EntryMode, Module};
use crate::devices::debug_exit;
use crate::devices::serial::SerialInput;
use crate::devices::sink::SinkSpec;
use crate::devices::vga;
use crate::vmm::doctor;
use crate::vmm::machine::{Machine, MachineError};
use crate::vmm::state_text::CpuStateText;
use crate::vmm::vcpu::{linear_pc, InternalError, Vcpu, VcpuError, VcpuEvent};
use crate::vmm::vm::{Vm, VmError, VmOptions};
use crate::x86::cpu::{Cr0Flags, Cr4Flags, EferFlags};

/// gdbvisor's own exit statuses are even; isa-debug-exit's are odd.
pub mod status {
    pub const HALTED: i32 = 0;
    pub const BAD_INPUT: i32 = 2;
    pub const TRIPLE_FAULT: i32 = 4;
    pub const KVM_FAILURE: i32 = 6;
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Boot { path: PathBuf, source: BootError },
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Vcpu(#[from] VcpuError),
    #[error("{0}")]
    Output(std::io::Error),
}

impl RunError {
    /// The exit status this error ends gdbvisor with.
    pub fn status(&self) -> i32 {
        match self {
            RunError::Read { .. } | RunError::Boot { .. } | RunError::Output(_) => {
                status::BAD_INPUT
            }
            RunError::Vm(VmError::Memory(_) | VmError::Cpus { .. }) => status::BAD_INPUT,
            _ => status::KVM_FAILURE,
        }
    }
}

/// What to boot and how.
pub struct RunRequest {
    /// The kernel's name in messages (its path, or "demo").
    pub name: PathBuf,
    pub image: Vec<u8>,
    pub boot: BootParams,
    pub memory: u64,
    pub cpus: u32,
    pub serial: SinkSpec,
    pub debugcon: SinkSpec,
}

impl RunRequest {
    /// Reads the kernel and the modules named in an `--initrd` list ("file args,file2").
    pub fn read_image(path: &Path) -> Result<Vec<u8>, RunError> {
        std::fs::read(path).map_err(|source| RunError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn read_modules(list: &str) -> Result<Vec<Module>, RunError> {
        list.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                let string = item.trim().to_string();
                let path = PathBuf::from(string.split(' ').next().unwrap_or_default());
                let data = Self::read_image(&path)?;
                Ok(Module { path, string, data })
            })
            .collect()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Halted,
    Reset,
    DebugExit(u32),
    TripleFault,
    KvmFailure,
    Interrupted,
}

impl RunEnd {
    pub fn status(&self) -> i32 {
        match self {
            RunEnd::Halted | RunEnd::Reset => status::HALTED,
            RunEnd::DebugExit(value) => debug_exit::exit_status(*value),
            RunEnd::TripleFault => status::TRIPLE_FAULT,
            RunEnd::KvmFailure => status::KVM_FAILURE,
            RunEnd::Interrupted => status::INTERRUPTED,
        }
    }
}

/// Boots the kernel and runs it to its end; messages go to stderr.
pub fn run(request: RunRequest, interrupt: Arc<AtomicBool>) -> Result<RunEnd, RunError> {
    let vm = Vm::new(VmOptions {
        memory: request.memory,
        cpus: request.cpus,
        serial: request.serial.open().map_err(RunError::Output)?,
        debugcon: request.debugcon.open().map_err(RunError::Output)?,
    })?;
    let kernel =
        boot::load(&vm.ram, &request.image, &request.boot).map_err(|source| RunError::Boot {
            path: request.name.clone(),
            source,
        })?;
    if kernel.cpu.mode == EntryMode::Protected32 && writes_cr0(&request.image) {
        warn_if_no_legacy_paging();
    }
    vm.vcpus[0].set_boot_state(&kernel.cpu)?;
    eprintln!(
        "gdbvisor: {} kernel, entry {:#010x}, {} MiB RAM, {} vCPU{}",
        kernel.format,
        kernel.cpu.rip,
        request.memory >> 20,
        request.cpus,
        if request.cpus == 1 {
            ""
        } else {
            "s (only the first runs)"
        }
    );
    if std::io::stdin().is_terminal() {
        forward_stdin(vm.serial_input.clone());
    }
    let ram = vm.ram.clone();
    let mut machine = Machine::start(vm.vcpus)?;
    machine.resume(0)?;
    let (id, event) = machine.wait_event(&interrupt, None)?;
    let end = report_event(&mut machine, id, event?)?;
    drop(machine);
    if let Ok(Some(screen)) = vga::render(ram.as_ref()) {
        eprintln!("gdbvisor: VGA text screen at exit:\n{screen}");
    }
    Ok(end)
}

/// Prints what ended the run and maps it to a [`RunEnd`].
fn report_event(machine: &mut Machine, id: u8, event: VcpuEvent) -> Result<RunEnd, RunError> {
    Ok(match event {
        VcpuEvent::Halted => {
            eprintln!("gdbvisor: guest halted (every vCPU halted with interrupts disabled)");
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
        VcpuEvent::Interrupted => {
            eprintln!("gdbvisor: interrupted");
            RunEnd::Interrupted
        }
        VcpuEvent::Shutdown => {
            eprintln!(
                "gdbvisor: triple fault on vCPU {id} (KVM_EXIT_SHUTDOWN); registers as KVM reports them after the exit:"
            );
            eprintln!("{}", vcpu_state(machine, id)?);
            if machine.with_vcpu(id, was_enabling_legacy_paging)? && !doctor::legacy_paging_works()
            {
                eprintln!(
                    "gdbvisor: note: this host's KVM cannot run 32-bit paging or PAE without long mode; a kernel that enables them triple-faults here (see `gdbvisor doctor`)"
                );
            }
            RunEnd::TripleFault
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
pub fn describe_internal(error: &InternalError) -> String {
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

fn vcpu_state(machine: &mut Machine, id: u8) -> Result<String, RunError> {
    Ok(machine.with_vcpu(id, |vcpu| {
        match (vcpu.fd().get_regs(), vcpu.fd().get_sregs()) {
            (Ok(regs), Ok(sregs)) => CpuStateText {
                regs: &regs,
                sregs: &sregs,
            }
            .to_string(),
            (Err(e), _) | (_, Err(e)) => format!("  (registers unavailable: {e})"),
        }
    })?)
}

/// `mov cr0, r32` (0F 22 C0+r) at the start of `code`.
fn is_mov_to_cr0(code: &[u8]) -> bool {
    matches!(code, [0x0F, 0x22, 0xC0..=0xC7, ..])
}

/// `mov cr0, r32` anywhere in the image: the kernel may turn on paging.
fn writes_cr0(image: &[u8]) -> bool {
    (0..image.len()).any(|i| is_mov_to_cr0(&image[i..]))
}

/// After a triple fault: was the guest outside long mode with paging off, but either at a
/// `mov cr0` or with CR4.PSE/PAE already set — i.e. turning on 32-bit paging or PAE?
fn was_enabling_legacy_paging(vcpu: &mut Vcpu) -> bool {
    let (Ok(regs), Ok(sregs)) = (vcpu.fd().get_regs(), vcpu.fd().get_sregs()) else {
        return false;
    };
    let paging_off = !Cr0Flags::from_bits_truncate(sregs.cr0).contains(Cr0Flags::PG);
    let long_mode = EferFlags::from_bits_truncate(sregs.efer).contains(EferFlags::LME);
    let cr4 = Cr4Flags::from_bits_truncate(sregs.cr4);
    let at_mov_cr0 = is_mov_to_cr0(&vcpu.read_linear(&sregs, linear_pc(&regs, &sregs), 3));
    paging_off && !long_mode && (at_mov_cr0 || cr4.intersects(Cr4Flags::PSE | Cr4Flags::PAE))
}

fn warn_if_no_legacy_paging() {
    if !doctor::legacy_paging_works() {
        eprintln!(
            "gdbvisor: warning: this kernel starts in 32-bit mode and writes CR0; this host's KVM cannot run 32-bit paging or PAE without long mode, so enabling them will triple-fault (see `gdbvisor doctor`)"
        );
    }
}

/// Types on a terminal reach the guest's COM1 receive FIFO.
fn forward_stdin(input: SerialInput) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut pending = &buf[..n];
                while !pending.is_empty() {
                    let taken = input.feed(pending);
                    pending = &pending[taken..];
                    if taken == 0 {
                        // The guest has not drained its FIFO yet; it reads at its own pace.
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("serial input disabled: {e}");
    }
}
