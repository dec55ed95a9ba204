//! One run of a kernel, from image file to exit status.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{IsTerminal, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use kvm_ioctls::Kvm;
use thiserror::Error;

use crate::boot::elf::{self, ElfClass};
use crate::boot::framebuffer::{Framebuffer, FramebufferError};
use crate::boot::image::{Image, ImageError};
use crate::boot::{self, acpi, BootError, BootFormat, BootParams, EntryMode, LoadedKernel, Module};
use crate::devices::ata::config::{IdeConfig, IdeDrives};
use crate::devices::ata::image::DiskImageError;
use crate::devices::sink::SinkSpec;
use crate::devices::vga;
use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::conn::GdbEndpoint;
use crate::gdb::live::exceptions::ExceptionTrace;
use crate::gdb::monitor;
use crate::gdb::session::{self, GdbOptions, MakeVcpus, SessionError};
use crate::host_input::{self, KeyboardTerminal, StdinTarget};
use crate::snapshot::post_mortem::PostMortem;
use crate::snapshot::CpuSnapshot;
use crate::vmm::clock_dilation::{self, ClockDilation};
use crate::vmm::cpuid::{self, CpuFeature, CpuidHide};
use crate::vmm::held_aps::HeldAps;
use crate::vmm::host_caps::{Capability, HostCaps};
use crate::vmm::machine::{Machine, MachineError};
use crate::vmm::memory::GuestRam;
pub use crate::vmm::outcome::status;
pub(crate) use crate::vmm::outcome::RunEnd;
use crate::vmm::outcome::{is_mov_to_cr0, report_event, settle_halt, AfterHalt};
use crate::vmm::screenshot;
use crate::vmm::vcpu::{VcpuError, VcpuEvent};
use crate::vmm::vm::{Vm, VmError, VmOptions};
use crate::x86::insn::code_sets_efer_lme;

/// Why a run could not start or failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// A kernel or module file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The kernel or module file.
        path: PathBuf,
        /// Why it could not be read.
        source: ImageError,
    },
    /// The kernel cannot be loaded.
    #[error("{path}: {source}")]
    Boot {
        /// The kernel file.
        path: PathBuf,
        /// Why it could not be loaded.
        source: BootError,
    },
    /// The VM cannot be created.
    #[error("{0}")]
    Vm(#[from] VmError),
    /// The vCPU threads failed.
    #[error("{0}")]
    Machine(#[from] MachineError),
    /// A vCPU failed.
    #[error("{0}")]
    Vcpu(#[from] VcpuError),
    /// An output (serial, debugcon) cannot be opened.
    #[error("{0}")]
    Output(std::io::Error),
    /// The gdb session failed.
    #[error("{0}")]
    Gdb(#[from] SessionError),
    /// A snapshot cannot be opened or written.
    #[error("{path}: {source}")]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// Why it failed.
        source: crate::snapshot::SnapshotError,
    },
    /// The Ctrl-C handler cannot be installed.
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(ctrlc::Error),
    /// A disk or CD-ROM image cannot be attached.
    #[error("{0}")]
    Disk(#[from] DiskImageError),
    /// The framebuffer the kernel asks for does not fit.
    #[error("{path}: {source} (--framebuffer WxH gives another size)")]
    Framebuffer {
        /// The kernel file.
        path: PathBuf,
        /// Why.
        source: FramebufferError,
    },
}

impl RunError {
    /// The exit status this error ends gdbvisor with.
    pub fn status(&self) -> i32 {
        match self {
            RunError::Read { .. }
            | RunError::Boot { .. }
            | RunError::Output(_)
            | RunError::Snapshot { .. }
            | RunError::Disk(_)
            | RunError::Framebuffer { .. } => status::BAD_INPUT,
            RunError::Vm(VmError::Memory(_) | VmError::Cpus { .. }) => status::BAD_INPUT,
            _ => status::KVM_FAILURE,
        }
    }
}

/// What to boot and how.
pub struct RunRequest {
    /// The kernel's name in messages (its path, or "demo").
    pub name: PathBuf,
    /// The kernel image.
    pub image: Image,
    /// Boot format, command line, modules.
    pub boot: BootParams,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Where COM1 writes.
    pub serial: SinkSpec,
    /// Where the debug console (port 0xe9) writes.
    pub debugcon: SinkSpec,
    /// Serve gdb instead of just running.
    pub gdb: Option<GdbOptions>,
    /// The ELF gdb loads when it is not the kernel image (the demo's): `--gdb-arch auto` serves
    /// its description.
    pub gdb_elf: Option<&'static [u8]>,
    /// What to save when the run ends (`--dump-at-exit`) or ends badly (`--dump-on-crash`,
    /// `--expect-exit`).
    pub post_mortem: PostMortem,
    /// CPUID features the guest does not see.
    pub cpuid_hide: CpuidHide,
    /// How much slower a Linux guest's timer ticks come.
    pub clock_dilation: ClockDilation,
    /// `--trace-exceptions`: one line per exception the guest takes.
    pub trace_exceptions: Option<ExceptionTraceRequest>,
    /// `--framebuffer WxH`: the size a kernel that asks for a framebuffer gets.
    pub framebuffer: Option<Framebuffer>,
    /// `--screenshot FILE.png`: where the framebuffer goes when the run ends.
    pub screenshot: Option<PathBuf>,
    /// The IDE drives and keyboard input.
    pub devices: DeviceRequest,
}

/// The IDE drives of a run and what types into its keyboard.
#[derive(Debug, Clone, Default)]
pub struct DeviceRequest {
    /// Disks and CD-ROM.
    pub ide: IdeConfig,
    /// Scan codes typed into the keyboard as the guest reads them (`--keys`).
    pub keys: Vec<u8>,
    /// Where a terminal's keys go.
    pub stdin: StdinTarget,
}

/// What `--trace-exceptions` traces, and where its lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionTraceRequest {
    /// The file the lines go to; stderr without one.
    pub file: Option<PathBuf>,
    /// The vectors traced.
    pub vectors: BTreeSet<u8>,
}

impl ExceptionTraceRequest {
    /// Opens the trace's output (created or truncated).
    fn open(&self) -> Result<ExceptionTrace, RunError> {
        let out: Box<dyn Write + Send> = match &self.file {
            Some(path) => Box::new(LineWriter::new(
                File::create(path).map_err(RunError::Output)?,
            )),
            None => Box::new(std::io::stderr()),
        };
        Ok(ExceptionTrace::new(self.vectors.clone(), out, true))
    }
}

impl RunRequest {
    /// Opens the kernel: its size and first 32 KiB; the rest is read as it is loaded. A pipe
    /// is read whole, up to `memory` bytes (guest RAM could hold no more).
    pub fn read_image(path: &Path, memory: u64) -> Result<Image, RunError> {
        Image::open(path, memory).map_err(|source| RunError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Opens the modules named in an `--initrd` list ("file args,file2"); each goes whole into
    /// guest RAM, so one larger than `memory` is refused before it is read.
    pub fn read_modules(list: &str, memory: u64) -> Result<Vec<Module>, RunError> {
        list.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                let string = item.trim().to_string();
                let path = PathBuf::from(string.split(' ').next().unwrap_or_default());
                let image = Self::read_image(&path, memory)?;
                boot::check_fits(
                    image.len(),
                    memory,
                    "a module or initrd goes whole into guest RAM",
                    true,
                )
                .map_err(|source| RunError::Boot {
                    path: path.clone(),
                    source,
                })?;
                Ok(Module {
                    path,
                    string,
                    image,
                })
            })
            .collect()
    }
}

/// Boots the kernel and runs it to its end; messages go to stderr. What the run needs to know
/// of the host is learned through `caps` before any vCPU starts.
pub fn run(
    request: RunRequest,
    interrupt: Arc<AtomicBool>,
    caps: HostCaps,
) -> Result<RunEnd, RunError> {
    let drives = request.devices.ide.open()?;
    let bad_boot = |source| RunError::Boot {
        path: request.name.clone(),
        source,
    };
    let mut params = request.boot.clone();
    let format = match params.format {
        Some(format) => format,
        None => boot::detect(&request.image).map_err(bad_boot)?,
    };
    // The framebuffer is a memory region of the VM: known before the VM is made.
    let asked = boot::video_request(&request.image, format).map_err(bad_boot)?;
    let (framebuffer, notes) =
        Framebuffer::for_run(asked, request.framebuffer).map_err(|source| {
            RunError::Framebuffer {
                path: request.name.clone(),
                source,
            }
        })?;
    for note in notes {
        eprintln!("gdbvisor: {note}");
    }
    params.framebuffer = framebuffer;
    // What the user can get wrong about KVM and RAM is found here, before anything is made.
    let kvm = Vm::open_kvm(request.cpus)?;
    let ram =
        Arc::new(GuestRam::with_framebuffer(request.memory, framebuffer).map_err(VmError::from)?);
    let options = VmOptions {
        memory: request.memory,
        cpus: request.cpus,
        serial: request.serial.open().map_err(RunError::Output)?,
        debugcon: request.debugcon.open().map_err(RunError::Output)?,
    };
    let hidden = request.cpuid_hide.resolve(format, || caps.cpuid_gaps());
    params.format = Some(format);
    let switches = cpuid::linux_switches(format, &hidden, &params.cmdline);
    let dilation = request
        .clock_dilation
        .resolve(format, || caps.software_nested());
    // KVM_GET_TSC_KHZ only when there is something to dilate: it asks a vCPU, so the VM is
    // made before the command line is final (and not while gdb says hello).
    let (made, tsc_khz) = if dilation > 1 {
        let vm = Vm::with_ram(kvm, options, ram.clone())?;
        let tsc_khz = vm.vcpus[0].kvm().tsc_khz().ok();
        (Made::Already(Box::new(vm)), tsc_khz)
    } else {
        (Made::Later(kvm, options), None)
    };
    let clock_switch = clock_dilation::linux_switch(dilation, tsc_khz, &params.cmdline);
    for switch in switches.iter().chain(&clock_switch) {
        params.cmdline = format!("{} {switch}", params.cmdline).trim().to_string();
    }
    params.kernel_path = request.name.clone();
    params.cpus = request.cpus;
    let kernel = boot::load(&*ram, &request.image, &params).map_err(bad_boot)?;
    // ACPI tables tell the kernel how many CPUs there are (not for real-mode flat images,
    // which may live in the BIOS area themselves).
    if format != BootFormat::Flat {
        acpi::write_tables(&*ram, request.cpus).map_err(bad_boot)?;
    }
    if request.cpuid_hide == CpuidHide::Auto && !hidden.is_empty() {
        let names: Vec<&str> = hidden.iter().map(|f| f.name()).collect();
        eprintln!(
            "gdbvisor: CPUID hides {} from the guest: this host's KVM cannot execute them (see `gdbvisor doctor`; --cpuid-hide none keeps them)",
            names.join(",")
        );
    }
    if !switches.is_empty() {
        eprintln!(
            "gdbvisor: appended \"{}\" to the kernel command line: this host's KVM shows the guest features it cannot execute whatever its CPUID says",
            switches.join(" ")
        );
    }
    if format.is_linux() && !caps.has(Capability::UserSyscall) {
        eprintln!(
            "gdbvisor: warning: this host's KVM runs a guest's `syscall` handler in ring 3 (see `gdbvisor doctor`): Linux boots, but its user space dies at the first system call (\"Attempted to kill init\")"
        );
    }
    if let Some(switch) = &clock_switch {
        eprintln!(
            "gdbvisor: appended \"{switch}\" to the kernel command line: the guest's clock and timer ticks run {dilation} times slower than real time, so ticks do not eat its CPU (--clock-dilation)"
        );
    }
    // A PVH kernel (Linux) goes from 32-bit mode straight to long mode, never to legacy paging;
    // so does an ELF64 or any kernel that sets EFER.LME (the common multiboot layout).
    if kernel.cpu.mode == EntryMode::Protected32
        && kernel.format != BootFormat::Pvh
        && elf::class_of(request.image.head()) != Some(ElfClass::Elf64)
        && code_has(&ram, &kernel.code, writes_cr0)
        && !code_has(&ram, &kernel.code, code_sets_efer_lme)
    {
        warn_if_no_legacy_paging(caps);
    }
    eprintln!(
        "gdbvisor: {} kernel, entry {:#010x}, {} MiB RAM, {} vCPU{}",
        kernel.format,
        kernel.cpu.rip,
        request.memory >> 20,
        request.cpus,
        match (request.cpus, kernel.held_aps.is_some()) {
            (1, _) => "",
            (_, true) => "s (the others held until the kernel writes their goto_address)",
            (_, false) => "s (the others wait for INIT/SIPI)",
        }
    );
    let gdb_on_stdio = request
        .gdb
        .as_ref()
        .is_some_and(|g| g.endpoint == GdbEndpoint::Stdio);
    // Restores the terminal when the run ends (keys typed there went to the keyboard).
    let mut _terminal = None;
    let mut stdin = None;
    if std::io::stdin().is_terminal() && !gdb_on_stdio {
        let target = request.devices.stdin;
        if target == StdinTarget::Keyboard {
            _terminal = KeyboardTerminal::enter();
        }
        stdin = Some(target);
    }
    let recipe = VmRecipe {
        made,
        ram: ram.clone(),
        drives,
        keys: request.devices.keys,
        hidden,
        kernel: kernel.clone(),
        stdin,
    };
    let trace = request
        .trace_exceptions
        .as_ref()
        .map(ExceptionTraceRequest::open)
        .transpose()?;
    if let Some(mut options) = request.gdb {
        if options.arch == ArchChoice::Kernel {
            let (layout, why) = match request.gdb_elf {
                Some(elf) => (
                    elf_layout(elf),
                    "the demo's ELF, which `gdbvisor demo --write-elf` writes".to_string(),
                ),
                None => kernel_layout(request.image.head(), &kernel),
            };
            eprintln!(
                "gdbvisor: gdb register description {} (from {why}; --gdb-arch to change)",
                layout.name()
            );
            options.arch = ArchChoice::Fixed(layout);
        }
        let make: MakeVcpus = Box::new(move || {
            let vm = recipe.make().map_err(|e| e.to_string())?;
            Ok((vm.vcpus, vm.slots))
        });
        let end = session::serve(
            make,
            request.cpus,
            ram.clone(),
            options,
            trace,
            interrupt,
            caps,
        )?;
        show_screens(&ram, request.screenshot.as_deref());
        return Ok(end);
    }
    let vm = recipe.make()?;
    if let Some(trace) = trace {
        // The live gdb backend, with no gdb, stops at the IDT's handler entries.
        let end = session::run_traced(
            vm.vcpus,
            ram.clone(),
            vm.slots,
            trace,
            &request.post_mortem,
            interrupt,
            caps,
        )?;
        show_screens(&ram, request.screenshot.as_deref());
        return Ok(end);
    }
    let mut machine = Machine::start(vm.vcpus)?;
    // Application processors block inside KVM_RUN until the guest's INIT/SIPI reaches them.
    for id in 0..request.cpus as u8 {
        machine.resume(id)?;
    }
    let mut halted = BTreeSet::new();
    let (id, event) = loop {
        let (id, event) = machine.wait_event(&interrupt, None)?;
        let event = event?;
        if event != VcpuEvent::Halted {
            break (id, event);
        }
        // One vCPU halted for good: the run is over once every vCPU that started has.
        let raced = machine.stop_collecting()?;
        match settle_halt(&mut machine, &mut halted, id, raced)? {
            AfterHalt::End(id, event) => break (id, event),
            AfterHalt::GoOn => {
                for other in (0..request.cpus as u8).filter(|id| !halted.contains(id)) {
                    machine.resume(other)?;
                }
            }
        }
    };
    // The others stop too: the run is over, and a snapshot reads every vCPU.
    machine.stop_every_vcpu()?;
    let end = report_event(&mut machine, id, event.clone(), caps)?;
    if end == RunEnd::TripleFault {
        explain_triple_fault(&mut machine, id, &ram)?;
    }
    request
        .post_mortem
        .after(Some(&event), &end, &mut machine, &ram);
    drop(machine);
    show_screens(&ram, request.screenshot.as_deref());
    Ok(end)
}

/// The VM itself when it had to be made before the load (a dilated clock asks a vCPU), or what
/// it is made with.
enum Made {
    Already(Box<Vm>),
    Later(Kvm, VmOptions),
}

/// What the VM is made from once the kernel is in RAM: the making may run on its own thread
/// while gdb says hello (see `session::serve`).
struct VmRecipe {
    made: Made,
    ram: Arc<GuestRam>,
    drives: IdeDrives,
    keys: Vec<u8>,
    hidden: Vec<CpuFeature>,
    kernel: LoadedKernel,
    /// Where a terminal's keys go, when stdin is one gdb does not use.
    stdin: Option<StdinTarget>,
}

impl VmRecipe {
    /// The VM with its devices, CPUID and the boot CPU's entry state, ready to run.
    fn make(self) -> Result<Vm, RunError> {
        let mut vm = match self.made {
            Made::Already(vm) => *vm,
            Made::Later(kvm, options) => Vm::with_ram(kvm, options, self.ram)?,
        };
        // The host's teardown of the VM waits for the process's exit (see `relay`).
        vm.release_at_exit();
        vm.attach_ide(self.drives)?;
        if !self.keys.is_empty() {
            vm.keyboard.type_codes(&self.keys);
        }
        if self.kernel.format == BootFormat::Limine {
            vm.mask_legacy_pic()?;
        }
        if let Some(plan) = &self.kernel.held_aps {
            let held = HeldAps::hold(plan, vm.slots.clone()).map_err(VmError::from)?;
            for vcpu in &mut vm.vcpus {
                vcpu.held_aps = Some(held.clone());
            }
        }
        cpuid::apply(&vm, &self.hidden)?;
        vm.vcpus[0].set_boot_state(&self.kernel.cpu)?;
        if let Some(target) = self.stdin {
            host_input::forward_stdin(target, vm.serial_input.clone(), vm.keyboard.clone());
        }
        Ok(vm)
    }
}

/// After a triple fault: the chain of faults that ended in it, as `monitor why` tells it.
fn explain_triple_fault(machine: &mut Machine, id: u8, ram: &GuestRam) -> Result<(), MachineError> {
    match machine.with_vcpu(id, |vcpu| CpuSnapshot::fetch_core(vcpu))? {
        Ok(snap) => monitor::why::print_explanation(&snap, ram),
        Err(e) => eprintln!("gdbvisor: why: registers unavailable: {e}"),
    }
    Ok(())
}

/// The description of the file gdb loads for `image` (see `--gdb-arch auto`), and what it
/// comes from: the ELF class; a bzImage's vmlinux is an ELF64; an image without an ELF header
/// (flat, a.out kludge, multiboot2 address tag) is debugged in its entry mode.
fn kernel_layout(image: &[u8], kernel: &LoadedKernel) -> (RegLayout, String) {
    match (elf::class_of(image), kernel.format) {
        (Some(ElfClass::Elf64), _) => (RegLayout::X86_64, "the ELF64 kernel".into()),
        (Some(ElfClass::Elf32), _) => (RegLayout::I386, "the ELF32 kernel".into()),
        (None, BootFormat::Linux) => (RegLayout::X86_64, "the bzImage's vmlinux, an ELF64".into()),
        (None, format) => {
            let (layout, mode) = match kernel.cpu.mode {
                EntryMode::Real { .. } => (RegLayout::I8086, "real mode"),
                EntryMode::Protected32 => (RegLayout::I386, "32-bit mode"),
                EntryMode::Long64 | EntryMode::Long64Gdt(_) => (RegLayout::X86_64, "64-bit mode"),
            };
            (
                layout,
                format!("the {format} kernel's entry in {mode}: it has no ELF header"),
            )
        }
    }
}

/// x86-64 for an ELF64, i386 for an ELF32.
fn elf_layout(elf: &[u8]) -> RegLayout {
    if elf::class_of(elf) == Some(ElfClass::Elf64) {
        RegLayout::X86_64
    } else {
        RegLayout::I386
    }
}

/// At the end of a run: prints the VGA text screen if the guest wrote to it; writes the
/// framebuffer to `screenshot` (`--screenshot`), or says why not (the exit status stays).
fn show_screens(ram: &GuestRam, screenshot: Option<&Path>) {
    if let Ok(Some(screen)) = vga::render(ram) {
        eprintln!("gdbvisor: VGA text screen at exit:\n{screen}");
    }
    if let Some(path) = screenshot {
        match screenshot::take(ram, path) {
            Ok(line) => eprintln!("gdbvisor: {line}"),
            Err(e) => eprintln!("gdbvisor: --screenshot: {e}"),
        }
    }
}

/// True when `found` holds for some stretch of the kernel's code in RAM (`code`: start,
/// length). Read a chunk at a time, each overlapping the next by more than any pattern and
/// decoding look-ahead searched for, so no match is cut in two.
fn code_has(ram: &GuestRam, code: &[(u64, u64)], found: impl Fn(&[u8]) -> bool) -> bool {
    const CHUNK: u64 = 1 << 20;
    const OVERLAP: u64 = 256;
    let mut buf = vec![0u8; CHUNK as usize];
    code.iter().any(|&(start, len)| {
        let mut at = 0;
        loop {
            let n = (len - at).min(CHUNK);
            let chunk = &mut buf[..n as usize];
            if ram.read(start + at, chunk).is_err() {
                return false;
            }
            if found(chunk) {
                return true;
            }
            if at + n >= len {
                return false;
            }
            at += n - OVERLAP;
        }
    })
}

/// `mov cr0, r32` anywhere in `code`: the kernel may turn on paging.
fn writes_cr0(image: &[u8]) -> bool {
    (0..image.len()).any(|i| is_mov_to_cr0(&image[i..]))
}

fn warn_if_no_legacy_paging(caps: HostCaps) {
    if !caps.has(Capability::LegacyPaging) {
        eprintln!(
            "gdbvisor: warning: this kernel starts in 32-bit mode and writes CR0; this host's KVM cannot run 32-bit paging or PAE without long mode, so enabling them will triple-fault (see `gdbvisor doctor`)"
        );
    }
}

/// `gdbvisor --snapshot FILE [--gdb ENDPOINT]`: opens `path` (with `maxphyaddr` for the guest's
/// MAXPHYADDR, when given); with `gdb`, serves it until gdb is done, else prints every vCPU's
/// registers.
pub fn open_snapshot(
    path: &Path,
    gdb: Option<GdbOptions>,
    maxphyaddr: Option<u8>,
) -> Result<i32, RunError> {
    use crate::snapshot::Snapshot;
    use crate::vmm::state_text::CpuStateText;
    use std::sync::atomic::Ordering;

    let snapshot = Snapshot::open_with(path, maxphyaddr).map_err(|source| RunError::Snapshot {
        path: path.to_path_buf(),
        source,
    })?;
    eprintln!("gdbvisor: {}", snapshot.describe());
    for note in &snapshot.inferred {
        eprintln!("gdbvisor: {note}");
    }
    let Some(options) = gdb else {
        for (id, cpu) in snapshot.cpus.iter().enumerate() {
            println!("vCPU {id}: {:?}, {}", cpu.mode(), cpu.run_state());
            println!(
                "{}",
                CpuStateText {
                    regs: &cpu.regs,
                    sregs: &cpu.sregs,
                }
            );
            // A core saved at a crash (`--dump-on-crash`) is explained as the crash was.
            monitor::why::print_explanation(cpu, &*snapshot.ram);
        }
        return Ok(status::HALTED);
    };
    if options.arch == ArchChoice::Kernel {
        // No kernel file here: the CPU's mode is the best guess at what gdb loads.
        eprintln!(
            "gdbvisor: gdb register description {}, that of vCPU 0's mode (a snapshot has no kernel file; --gdb-arch to change)",
            RegLayout::from_mode(snapshot.cpus[0].mode()).name()
        );
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(RunError::Signal)?;
    session::serve_snapshot(snapshot, &options, interrupt)?;
    Ok(status::HALTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::elf::tests::tiny_elf;
    use crate::boot::BootCpuState;

    fn loaded(format: BootFormat, mode: EntryMode) -> LoadedKernel {
        let cpu = BootCpuState {
            mode,
            rip: 0x100000,
            rsp: 0,
            rax: 0,
            rbx: 0,
            rsi: 0,
            rdx: 0,
            cr3: 0,
        };
        LoadedKernel {
            format,
            cpu,
            code: Vec::new(),
            held_aps: None,
        }
    }

    /// Matches are found across the 1 MiB chunks the code is read in, and only in the code.
    #[test]
    fn code_scans_see_across_chunks() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let code = [(0x10_0000, 2 << 20)];
        assert!(!code_has(&ram, &code, writes_cr0));
        // `mov cr0, eax` split by the first chunk's end.
        ram.write(0x10_0000 + (1 << 20) - 2, &[0x0F, 0x22, 0xC0])
            .unwrap();
        assert!(code_has(&ram, &code, writes_cr0));
        assert!(!code_has(&ram, &[(0x10_0000, (1 << 20) - 2)], writes_cr0));
        // mov ecx, 0xC0000080; rdmsr; or eax, 0x100; wrmsr — across the same boundary.
        let lme = [
            0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30,
        ];
        ram.write(0x10_0000 + (1 << 20) - 7, &lme).unwrap();
        assert!(code_has(&ram, &code, code_sets_efer_lme));
        assert!(!code_has(&ram, &[], code_sets_efer_lme));
    }

    #[test]
    fn gdb_gets_the_description_of_the_file_it_loads() {
        let elf64 = tiny_elf(ElfClass::Elf64, 0x100000, 0x100000, &[0xf4]);
        let elf32 = tiny_elf(ElfClass::Elf32, 0x100000, 0x100000, &[0xf4]);
        let layout = |image: &[u8], format, mode| kernel_layout(image, &loaded(format, mode)).0;
        // An ELF64 entered in 32-bit mode (multiboot2, PVH) is still what gdb loads as x86-64.
        let protected = EntryMode::Protected32;
        assert_eq!(
            layout(&elf64, BootFormat::Multiboot2, protected),
            RegLayout::X86_64
        );
        assert_eq!(
            layout(&elf64, BootFormat::Pvh, protected),
            RegLayout::X86_64
        );
        assert_eq!(layout(&elf32, BootFormat::Pvh, protected), RegLayout::I386);
        assert_eq!(
            layout(&elf32, BootFormat::Multiboot1, protected),
            RegLayout::I386
        );
        // No ELF header: a bzImage stands for its vmlinux; the others for their entry mode.
        let (bzimage, why) = kernel_layout(b"MZ", &loaded(BootFormat::Linux, EntryMode::Long64));
        assert_eq!(
            (bzimage, why.as_str()),
            (RegLayout::X86_64, "the bzImage's vmlinux, an ELF64")
        );
        let real = EntryMode::Real { cs: 0 };
        assert_eq!(layout(b"\xfa", BootFormat::Flat, real), RegLayout::I8086);
        assert_eq!(
            layout(b"\x02\xb0\xad\x1b", BootFormat::Multiboot1, protected),
            RegLayout::I386
        );
        assert_eq!(elf_layout(&elf64), RegLayout::X86_64);
        assert_eq!(elf_layout(&elf32), RegLayout::I386);
    }
}
