//! Probes of this host's KVM: tiny guests in throwaway VMs, whose ends show what KVM really
//! does rather than what its capabilities report. [`crate::vmm::host_caps::HostCaps`] runs
//! them (each at most once per process) for runs, and `gdbvisor doctor` reports them.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::boot::layout;
use crate::boot::memory::GuestMemoryExt;
use crate::boot::{BootCpuState, EntryMode};
use crate::devices::sink::Sink;
use crate::vmm::cpuid::CpuFeature;
use crate::vmm::guest_debug::{DebugConfig, DebugSlot, DebugState, SlotKind};
use crate::vmm::machine::{Machine, MachineError};
use crate::vmm::memory::{GuestRam, MemoryError};
use crate::vmm::vcpu::{VcpuError, VcpuEvent};
use crate::vmm::vm::{Vm, VmError, VmOptions};
use crate::x86::segment::DescriptorFlags;
use crate::x86::PhysMemoryError;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Vcpu(#[from] VcpuError),
    #[error("probe setup: {0}")]
    Boot(#[from] crate::boot::BootError),
    #[error("probe: {0}")]
    Probe(String),
    #[error("probe memory: {0}")]
    Memory(#[from] MemoryError),
    #[error("probe memory: {0}")]
    PhysMemory(#[from] PhysMemoryError),
}

const CODE: u64 = 0x2000;
const HANDLER: u64 = 0x2100;
const IDT: u64 = 0x3000;
const PAGE_DIR: u64 = 0x4000;
const PDPT: u64 = 0x5000;
const WATCHED: u64 = 0x6000;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The value every probe writes to isa-debug-exit when it got through.
const PROBE_OK: u32 = 0x55;

/// Each CPUID feature probed: `None` when the guest's CPUID does not show it, else whether its
/// instructions run.
pub(crate) type FeatureOutcomes = Vec<(CpuFeature, Option<Outcome>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Works,
    Fails(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Int3Behaviour {
    /// Delivered to the guest's IDT by KVM itself, as on hardware.
    Native,
    /// KVM reported an emulation failure; gdbvisor completed it by injection.
    EmulationFailure,
    Other(String),
}

/// A kind of write into a page that is a read-only memory slot (a page gdbvisor protects for a
/// breakpoint or a watchpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtectedWriteCase {
    /// `mov [page], eax`.
    InstructionStore,
    /// `retfq` through a GDT on the page whose code descriptor has Accessed clear.
    DescriptorAccessed,
    /// `ltr` of a TSS descriptor on the page.
    TssBusy,
    /// A load through a page-table entry on the page with Accessed clear.
    PageTableAccessed,
    /// `ud2` with RSP on the page: the #UD frame.
    ExceptionFrame,
}

impl ProtectedWriteCase {
    pub(crate) const ALL: [ProtectedWriteCase; 5] = [
        ProtectedWriteCase::InstructionStore,
        ProtectedWriteCase::DescriptorAccessed,
        ProtectedWriteCase::TssBusy,
        ProtectedWriteCase::PageTableAccessed,
        ProtectedWriteCase::ExceptionFrame,
    ];

    pub(crate) fn describe(self) -> &'static str {
        match self {
            ProtectedWriteCase::InstructionStore => "an instruction's store",
            ProtectedWriteCase::DescriptorAccessed => "a descriptor's Accessed bit (segment load)",
            ProtectedWriteCase::TssBusy => "the TSS busy bit (ltr)",
            ProtectedWriteCase::PageTableAccessed => "a page-table entry's Accessed bit",
            ProtectedWriteCase::ExceptionFrame => "an exception frame on the stack",
        }
    }
}

/// How KVM treated one [`ProtectedWriteCase`] (with gdbvisor's progress guarantee off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtectedWrite {
    /// Left KVM_RUN as an MMIO write and the instruction went on.
    MmioExit,
    /// KVM_RUN never returned: the vCPU retries the instruction.
    NoExit,
    /// The instruction went on without an exit and the bit stayed clear.
    Dropped,
    /// KVM_EXIT_SHUTDOWN.
    TripleFault,
    Other(String),
}

impl fmt::Display for ProtectedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtectedWrite::MmioExit => write!(f, "MMIO exit"),
            ProtectedWrite::NoExit => write!(
                f,
                "NO EXIT: retried for ever (gdbvisor runs it with protection lifted)"
            ),
            ProtectedWrite::Dropped => write!(f, "dropped (the access completes, the bit stays clear)"),
            ProtectedWrite::TripleFault => write!(
                f,
                "triple fault (gdbvisor retries it, and takes interrupts in windows, with protection lifted)"
            ),
            ProtectedWrite::Other(what) => write!(f, "unexpected: {what}"),
        }
    }
}

/// The protected-write probe layout: a read-only page, a read-only page table, an IDT and a
/// GDTR image in ordinary RAM.
const PROTECTED: u64 = 0x30000;
const PROTECTED_PT: u64 = 0x31000;
const PROBE_IDT: u64 = 0x32000;
const PROBE_GDTR: u64 = 0x21000;
const PROBE_HANDLER: u64 = 0x20800;
/// Mapped through the protected page table (PD entry 1).
const THROUGH_PT: u32 = 0x20_0000;
/// A retried instruction is given this long to prove it never ends.
const NO_EXIT_WAIT: Duration = Duration::from_millis(300);

/// Runs one [`ProtectedWriteCase`] in long mode with the probe pages read-only and the vCPU's
/// progress guarantee off, so that KVM's own behaviour shows.
pub(crate) fn protected_write(case: ProtectedWriteCase) -> Result<ProtectedWrite, ProbeError> {
    const CODE64: u64 = DescriptorFlags::KERNEL_CODE64.bits();
    const CODE64_ACCESSED_CLEAR: u64 = CODE64 & !DescriptorFlags::ACCESSED.bits();
    let lgdt = [0x0F, 0x01, 0x14, 0x25]; //              lgdt [PROBE_GDTR]
    let mut code: Vec<u8> = Vec::new();
    let mut rsp = 0x7000;
    match case {
        ProtectedWriteCase::InstructionStore => {
            code.extend([0x89, 0x04, 0x25]); //          mov [PROTECTED + 0x400], eax
            code.extend((PROTECTED as u32 + 0x400).to_le_bytes());
        }
        ProtectedWriteCase::DescriptorAccessed => {
            code.extend(lgdt);
            code.extend((PROBE_GDTR as u32).to_le_bytes());
            code.extend([0x6A, 0x08, 0x68]); //           push 0x08; push target
            let target = 0x20000 + code.len() as u32 + 4 + 2;
            code.extend(target.to_le_bytes());
            code.extend([0x48, 0xCB]); //                 retfq
        }
        ProtectedWriteCase::TssBusy => {
            code.extend(lgdt);
            code.extend((PROBE_GDTR as u32).to_le_bytes());
            code.extend([0x66, 0xB8, 0x10, 0x00, 0x0F, 0x00, 0xD8]); // mov ax, 0x10; ltr ax
        }
        ProtectedWriteCase::PageTableAccessed => {
            code.extend([0x8B, 0x04, 0x25]); //           mov eax, [THROUGH_PT]
            code.extend(THROUGH_PT.to_le_bytes());
        }
        ProtectedWriteCase::ExceptionFrame => {
            code.extend([0x0F, 0x0B]); //                 ud2 (its handler reports)
            rsp = PROTECTED + 0x800;
        }
    }
    code.extend(mov_al_out(PROBE_OK));
    let tss = PROTECTED + 0x100;
    let tss_low = 0x67 | ((tss & 0xff_ffff) << 16) | (0x89 << 40) | ((tss >> 24) << 56);
    let code_descriptor = if case == ProtectedWriteCase::DescriptorAccessed {
        CODE64_ACCESSED_CLEAR
    } else {
        CODE64
    };
    let run = run_probe_with(EntryMode::Long64, 0x20000, &code, rsp, NO_EXIT_WAIT, |vm| {
        vm.ram.write(PROBE_HANDLER, &mov_al_out(PROBE_OK))?;
        for (i, entry) in [0, code_descriptor, tss_low, tss >> 32]
            .into_iter()
            .enumerate()
        {
            vm.ram.write_u64(PROTECTED + 8 * i as u64, entry)?;
        }
        vm.ram.write(PROBE_GDTR, &0x1fu16.to_le_bytes())?;
        vm.ram.write_u64(PROBE_GDTR + 2, PROTECTED)?;
        // One 4 KiB page through the protected table, Accessed clear.
        vm.ram
            .write_u64(PROTECTED_PT, u64::from(THROUGH_PT) | 0x3)?;
        vm.ram.write_u64(layout::PD_ADDR + 8, PROTECTED_PT | 0x3)?;
        install_idt(
            vm,
            PROBE_IDT,
            true,
            &[(6, layout::CODE64_SELECTOR, PROBE_HANDLER)],
        )?;
        let vcpu = &mut vm.vcpus[0];
        vcpu.protection = None;
        vcpu.set_debug_state(DebugState {
            watched: vec![(PROTECTED, 0x2000)],
            ..Default::default()
        })?;
        vm.slots
            .set_read_only([PROTECTED, PROTECTED_PT].into_iter().collect())
            .map_err(|e| ProbeError::Probe(e.to_string()))
    })?;
    let mut pte = [0u8; 8];
    run.ram.read(PROTECTED_PT, &mut pte)?;
    let accessed = u64::from_le_bytes(pte) & 0x20 != 0;
    Ok(match (run.event, run.protected_writes_applied) {
        (VcpuEvent::DebugExit(PROBE_OK), 0)
            if case == ProtectedWriteCase::PageTableAccessed && !accessed =>
        {
            ProtectedWrite::Dropped
        }
        (VcpuEvent::DebugExit(PROBE_OK), n) if n > 0 => ProtectedWrite::MmioExit,
        (VcpuEvent::Interrupted, 0) => ProtectedWrite::NoExit,
        (VcpuEvent::Shutdown, _) => ProtectedWrite::TripleFault,
        (other, n) => ProtectedWrite::Other(format!("{other:?} after {n} MMIO writes")),
    })
}

/// Writes interrupt gates (vector, selector, handler) into an IDT at `base` — 16-byte gates
/// for long mode, 8-byte ones otherwise — and points the vCPU's IDTR at all 256 entries.
fn install_idt(
    vm: &mut Vm,
    base: u64,
    long_mode: bool,
    gates: &[(u64, u16, u64)],
) -> Result<(), ProbeError> {
    let size: u64 = if long_mode { 16 } else { 8 };
    for &(vector, selector, handler) in gates {
        // Present, DPL 0, interrupt gate (the low 8 bytes are the same in both formats).
        let low = (handler & 0xffff)
            | (u64::from(selector) << 16)
            | (0x8E00 << 32)
            | (((handler >> 16) & 0xffff) << 48);
        vm.ram.write_u64(base + vector * size, low)?;
        if long_mode {
            vm.ram.write_u64(base + vector * size + 8, handler >> 32)?;
        }
    }
    let kvm = vm.vcpus[0].kvm();
    let mut sregs = kvm.get_sregs()?;
    sregs.idt.base = base;
    sregs.idt.limit = (256 * size - 1) as u16;
    kvm.set_sregs(&sregs)?;
    Ok(())
}

/// CR4 bits a probe turns on before its instruction.
const CR4_OSFXSR: u32 = (1 << 9) | (1 << 10);
const CR4_FSGSBASE: u32 = 1 << 16;
const CR4_OSXSAVE: u32 = 1 << 18;
const CR4_PKE: u32 = 1 << 22;

/// One instruction per feature a Linux guest uses as soon as CPUID shows it, with the CR4 bits
/// it needs. RDI points at 64 zeroed, 64-byte aligned bytes; RAX = 2 (INVPCID's "all contexts").
fn feature_probes() -> Vec<(CpuFeature, u32, Vec<u8>)> {
    use CpuFeature::*;
    vec![
        (Cx16, 0, vec![0xF0, 0x48, 0x0F, 0xC7, 0x0F]), //  lock cmpxchg16b [rdi]
        // xor edx, edx; mov eax, 1 (x87 state); xsave [rdi]; xrstor [rdi]
        (
            Xsave,
            CR4_OSXSAVE,
            vec![
                0x31, 0xD2, 0xB8, 1, 0, 0, 0, 0x0F, 0xAE, 0x27, 0x0F, 0xAE, 0x2F,
            ],
        ),
        (Popcnt, 0, vec![0xF3, 0x48, 0x0F, 0xB8, 0xC7]), // popcnt rax, rdi
        (Movbe, 0, vec![0x0F, 0x38, 0xF0, 0x07]),        // movbe eax, [rdi]
        (Ssse3, CR4_OSFXSR, vec![0x66, 0x0F, 0x38, 0x00, 0xC1]), // pshufb xmm0, xmm1
        (Sse41, CR4_OSFXSR, vec![0x66, 0x0F, 0x3A, 0x0E, 0xC1, 0]), // pblendw xmm0, xmm1, 0
        (Sse42, 0, vec![0xF2, 0x0F, 0x38, 0xF1, 0xC1]),  // crc32 eax, ecx
        (Aes, CR4_OSFXSR, vec![0x66, 0x0F, 0x38, 0xDC, 0xC1]), // aesenc xmm0, xmm1
        (Pclmul, CR4_OSFXSR, vec![0x66, 0x0F, 0x3A, 0x44, 0xC1, 0]), // pclmulqdq xmm0, xmm1, 0
        (Smap, 0, vec![0x0F, 0x01, 0xCA]),               // clac
        (Fsgsbase, CR4_FSGSBASE, vec![0xF3, 0x48, 0x0F, 0xAE, 0xC0]), // rdfsbase rax
        (Invpcid, 0, vec![0x66, 0x0F, 0x38, 0x82, 0x07]), // invpcid rax, [rdi]
        // xor ecx, ecx; xor edx, edx; xor eax, eax; wrpkru
        (
            Pku,
            CR4_PKE,
            vec![0x31, 0xC9, 0x31, 0xD2, 0x31, 0xC0, 0x0F, 0x01, 0xEF],
        ),
        (Rdrand, 0, vec![0x48, 0x0F, 0xC7, 0xF0]), //       rdrand rax
        (Rdseed, 0, vec![0x48, 0x0F, 0xC7, 0xF8]), //       rdseed rax
        (Rdtscp, 0, vec![0x0F, 0x01, 0xF9]),       //       rdtscp
        (Rdpid, 0, vec![0xF3, 0x0F, 0xC7, 0xF8]),  //       rdpid rax
    ]
}

/// The guest-visible CPUID register `reg` (1 EBX, 2 ECX, 3 EDX) of `leaf`, subleaf 0: on
/// KVM-PVM not only what KVM_SET_CPUID2 was given, since some of the host's bits show through.
fn guest_cpuid(leaf: u32, reg: u8) -> Result<u32, ProbeError> {
    let mut code = vec![0xB8];
    code.extend(leaf.to_le_bytes()); //                  mov eax, leaf
    code.extend([0x31, 0xC9, 0x0F, 0xA2]); //            xor ecx, ecx; cpuid
    code.extend(match reg {
        1 => [0x89, 0xD8], //                            mov eax, ebx
        2 => [0x89, 0xC8], //                            mov eax, ecx
        _ => [0x89, 0xD0], //                            mov eax, edx
    });
    code.extend([0xE7, 0xF4]); //                        out 0xF4, eax
    match run_long_mode_probe(&code)? {
        VcpuEvent::DebugExit(value) => Ok(value),
        other => Err(ProbeError::Probe(format!(
            "CPUID probe ended with {other:?}"
        ))),
    }
}

/// For each feature of [`feature_probes`] the guest's CPUID shows, runs its instruction in long
/// mode; `None` for features the guest does not see.
pub(crate) fn cpuid_features() -> Result<FeatureOutcomes, ProbeError> {
    const DATA: u32 = 0x30000;
    let mut visible = std::collections::HashMap::new();
    let mut results = Vec::new();
    for (feature, cr4, instruction) in feature_probes() {
        let (leaf, reg, bit) = feature.cpuid_bit();
        let value = match visible.get(&(leaf, reg)) {
            Some(&value) => value,
            None => {
                let value = guest_cpuid(leaf, reg)?;
                visible.insert((leaf, reg), value);
                value
            }
        };
        if value & (1 << bit) == 0 {
            results.push((feature, None));
            continue;
        }
        let mut code = Vec::new();
        if cr4 != 0 {
            code.extend([0x0F, 0x20, 0xE0, 0x0D]); //    mov rax, cr4; or eax, …
            code.extend(cr4.to_le_bytes());
            code.extend([0x0F, 0x22, 0xE0]); //          mov cr4, rax
        }
        code.push(0xBF);
        code.extend(DATA.to_le_bytes()); //              mov edi, DATA
        code.extend([0xB8, 2, 0, 0, 0]); //              mov eax, 2
        code.extend(instruction);
        code.extend(mov_al_out(PROBE_OK));
        results.push((feature, Some(outcome(run_long_mode_probe(&code)?))));
    }
    Ok(results)
}

/// Boots `code` at 0x20000 in 64-bit mode on an identity map and returns how it ended.
fn run_long_mode_probe(code: &[u8]) -> Result<VcpuEvent, ProbeError> {
    run_probe_in(EntryMode::Long64, 0x20000, code, |_| Ok(())).map(|(event, _)| event)
}

pub(crate) fn vm_options() -> VmOptions {
    VmOptions {
        memory: 2 << 20,
        cpus: 1,
        serial: Sink::Null,
        debugcon: Sink::Null,
    }
}

/// Boots `code` at [`CODE`] in 32-bit protected mode and returns how it ended and how many
/// soft interrupts the run loop completed.
fn run_probe(
    code: &[u8],
    prepare: impl FnOnce(&mut Vm) -> Result<(), ProbeError>,
) -> Result<(VcpuEvent, u64), ProbeError> {
    run_probe_in(EntryMode::Protected32, CODE, code, prepare)
}

/// Boots `code` at `at` in `mode` (long mode: on an identity map of the first GiB), lets
/// `prepare` adjust the VM, runs until the first event or [`PROBE_TIMEOUT`].
fn run_probe_in(
    mode: EntryMode,
    at: u64,
    code: &[u8],
    prepare: impl FnOnce(&mut Vm) -> Result<(), ProbeError>,
) -> Result<(VcpuEvent, u64), ProbeError> {
    let run = run_probe_with(mode, at, code, 0x7000, PROBE_TIMEOUT, prepare)?;
    Ok((run.event, run.soft_interrupts_completed))
}

/// How a probe guest ended, and what its run loop did on the way.
struct ProbeRun {
    event: VcpuEvent,
    soft_interrupts_completed: u64,
    protected_writes_applied: u64,
    ram: std::sync::Arc<GuestRam>,
}

/// [`run_probe_in`] with the stack pointer and the time limit chosen; writes to watched
/// ranges are applied and the guest goes on.
fn run_probe_with(
    mode: EntryMode,
    at: u64,
    code: &[u8],
    rsp: u64,
    timeout: Duration,
    prepare: impl FnOnce(&mut Vm) -> Result<(), ProbeError>,
) -> Result<ProbeRun, ProbeError> {
    let mut vm = Vm::new(vm_options())?;
    layout::write_gdt(&*vm.ram)?;
    let cr3 = match mode {
        EntryMode::Long64 => layout::write_identity_page_tables(&*vm.ram, 1 << 30)?,
        _ => 0,
    };
    vm.ram.write(at, code)?;
    vm.vcpus[0].set_boot_state(&BootCpuState {
        mode,
        rip: at,
        rsp,
        rax: 0,
        rbx: 0,
        rsi: 0,
        rdx: 0,
        cr3,
    })?;
    prepare(&mut vm)?;
    let ram = vm.ram.clone();
    let mut machine = Machine::start(vm.vcpus)?;
    machine.resume(0)?;
    let deadline = Instant::now() + timeout;
    let event = loop {
        let (_, event) = machine.wait_event(&AtomicBool::new(false), Some(deadline))?;
        match event? {
            VcpuEvent::WatchWrite { .. } => machine.resume(0)?,
            other => break other,
        }
    };
    let (soft_interrupts_completed, protected_writes_applied) = machine.with_vcpu(0, |vcpu| {
        (
            vcpu.soft_interrupts_completed,
            vcpu.protected_writes_applied,
        )
    })?;
    Ok(ProbeRun {
        event,
        soft_interrupts_completed,
        protected_writes_applied,
        ram,
    })
}

fn outcome(event: VcpuEvent) -> Outcome {
    match event {
        VcpuEvent::DebugExit(PROBE_OK) => Outcome::Works,
        VcpuEvent::Shutdown => Outcome::Fails("the guest triple-faults".into()),
        VcpuEvent::InternalError(error) if error.suberror == 1 => {
            Outcome::Fails("KVM emulation failure".into())
        }
        other => Outcome::Fails(format!("{other:?}")),
    }
}

/// Turns on 32-bit paging (a 4 MiB identity page) or PAE (a 2 MiB one), then reports.
pub(crate) fn paging(pae: bool) -> Result<Outcome, ProbeError> {
    let (cr4, cr3): (u32, u32) = if pae {
        (0x20, PDPT as u32)
    } else {
        (0x10, PAGE_DIR as u32)
    };
    let mut code = vec![0xB8];
    code.extend(cr4.to_le_bytes()); //  mov eax, cr4 bits
    code.extend([0x0F, 0x22, 0xE0]); // mov cr4, eax
    code.push(0xB8);
    code.extend(cr3.to_le_bytes()); //  mov eax, table
    code.extend([0x0F, 0x22, 0xD8]); // mov cr3, eax
    code.extend([0x0F, 0x20, 0xC0]); // mov eax, cr0
    code.extend([0x0D, 0x00, 0x00, 0x00, 0x80]); // or eax, 0x80000000
    code.extend([0x0F, 0x22, 0xC0]); // mov cr0, eax
    code.extend(mov_al_out(PROBE_OK));
    let (event, _) = run_probe(&code, |vm| {
        // PDE/PDPTE: present, writable, page size.
        vm.ram.write_u32(PAGE_DIR, 0x83)?;
        vm.ram.write_u64(PDPT, PAGE_DIR | 1)?;
        Ok(())
    })?;
    Ok(outcome(event))
}

/// `mov al, value; out 0xF4, al`
fn mov_al_out(value: u32) -> [u8; 4] {
    [0xB0, value as u8, 0xE6, 0xF4]
}

/// Executes `int3` with a handler installed for vector 3.
pub(crate) fn int3() -> Result<Int3Behaviour, ProbeError> {
    let code = [0xCC, 0xF4]; // int3; hlt (not reached when the handler runs)
    let (event, completed) = run_probe(&code, |vm| {
        vm.ram.write(HANDLER, &mov_al_out(PROBE_OK))?;
        install_idt(vm, IDT, false, &[(3, layout::CODE32_SELECTOR, HANDLER)])
    })?;
    Ok(match (event, completed) {
        (VcpuEvent::DebugExit(PROBE_OK), 0) => Int3Behaviour::Native,
        (VcpuEvent::DebugExit(PROBE_OK), _) => Int3Behaviour::EmulationFailure,
        (other, _) => Int3Behaviour::Other(format!("{other:?}")),
    })
}

/// User-mode probe layout: ring-3 code, the ring-0 handler, and the GDT slots after the boot
/// GDT's four: user data (0x20) and 64-bit user code (0x28).
const USER_CODE: u64 = 0x21000;
const USER_STACK: u32 = 0x8000;
const SYSCALL_HANDLER: u64 = 0x22000;
const USER_DATA_SELECTOR: u8 = 0x20 | 3;
const USER_CODE_SELECTOR: u8 = 0x28 | 3;

/// Enters ring 3 with `iretq` and runs `syscall` with STAR/LSTAR/SFMASK/EFER.SCE set as Linux
/// sets them; the handler reports only if it runs in ring 0. KVM-PVM, which emulates a non-PVM
/// guest's kernel, starts the handler at LSTAR still in ring 3 (its own `jmp $` runs there), so
/// Linux's first system call from user space faults and init dies.
pub(crate) fn user_syscall() -> Result<Outcome, ProbeError> {
    let handler = (SYSCALL_HANDLER as u32).to_le_bytes();
    let mut code = Vec::new();
    let wrmsr = |code: &mut Vec<u8>, msr: u32, eax: u32, edx: u32| {
        code.push(0xB9);
        code.extend(msr.to_le_bytes()); //                mov ecx, msr
        code.push(0xB8);
        code.extend(eax.to_le_bytes()); //                mov eax, low
        code.push(0xBA);
        code.extend(edx.to_le_bytes()); //                mov edx, high
        code.extend([0x0F, 0x30]); //                     wrmsr
    };
    // STAR: kernel CS 0x08 (SS 0x10); LSTAR: the handler; SFMASK: IF.
    wrmsr(
        &mut code,
        0xC000_0081,
        0,
        u32::from(layout::CODE64_SELECTOR),
    );
    wrmsr(&mut code, 0xC000_0082, u32::from_le_bytes(handler), 0);
    wrmsr(&mut code, 0xC000_0084, 0x200, 0);
    // EFER.SCE on top of LME/LMA.
    code.extend([
        0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32, 0x83, 0xC8, 0x01, 0x0F, 0x30,
    ]);
    code.extend([0x6A, USER_DATA_SELECTOR, 0x68]); //     push ss; push rsp
    code.extend(USER_STACK.to_le_bytes());
    code.extend([0x6A, 0x02, 0x6A, USER_CODE_SELECTOR, 0x68]); // push rflags; push cs; push rip
    code.extend((USER_CODE as u32).to_le_bytes());
    code.extend([0x48, 0xCF]); //                         iretq
                               // syscall; ud2
    let user = [0x0F, 0x05, 0x0F, 0x0B];
    // mov eax, cs; test al, 3; jnz bad; mov al, OK; out 0xF4, al; bad: ud2 (in ring 3: #UD,
    // no IDT, a triple fault)
    let mut check = vec![0x8C, 0xC8, 0xA8, 0x03, 0x75, 0x04];
    check.extend(mov_al_out(PROBE_OK));
    check.extend([0x0F, 0x0B]);
    let (event, _) = run_probe_in(EntryMode::Long64, 0x20000, &code, |vm| {
        vm.ram.write(USER_CODE, &user)?;
        vm.ram.write(SYSCALL_HANDLER, &check)?;
        // User bit on the identity map's first 2 MiB (PML4, PDPT and PD entries).
        for table in [layout::PML4_ADDR, layout::PDPT_ADDR, layout::PD_ADDR] {
            let mut entry = [0u8; 8];
            vm.ram.read(table, &mut entry)?;
            vm.ram.write_u64(table, u64::from_le_bytes(entry) | 0x4)?;
        }
        vm.ram
            .write_u64(layout::GDT_ADDR + 0x20, DescriptorFlags::USER_DATA.bits())?;
        vm.ram
            .write_u64(layout::GDT_ADDR + 0x28, DescriptorFlags::USER_CODE64.bits())?;
        let kvm = vm.vcpus[0].kvm();
        let mut sregs = kvm.get_sregs()?;
        sregs.gdt.limit = 0x2f;
        kvm.set_sregs(&sregs)?;
        Ok(())
    })?;
    Ok(match event {
        VcpuEvent::DebugExit(PROBE_OK) => Outcome::Works,
        VcpuEvent::Shutdown => Outcome::Fails(
            "the handler runs in ring 3: Linux user space dies at its first system call".into(),
        ),
        other => outcome(other),
    })
}

/// Arms DR0 as a 4-byte write watchpoint and writes there.
pub(crate) fn dr_watchpoint() -> Result<Outcome, ProbeError> {
    let mut code = vec![0xA3];
    code.extend((WATCHED as u32).to_le_bytes()); // mov [WATCHED], eax
    code.extend(mov_al_out(PROBE_OK));
    let (event, _) = run_probe(&code, |vm| {
        let watch = DebugSlot {
            addr: WATCHED,
            kind: SlotKind::Write(4),
        };
        vm.vcpus[0].set_debug_state(DebugState {
            config: DebugConfig {
                hw_breakpoints: [Some(watch), None, None, None],
                ..Default::default()
            },
            ..Default::default()
        })?;
        Ok(())
    })?;
    Ok(match event {
        VcpuEvent::Debug(info) if info.dr6 & 1 != 0 => Outcome::Works,
        VcpuEvent::DebugExit(PROBE_OK) => Outcome::Fails("never fires".into()),
        other => Outcome::Fails(format!("{other:?}")),
    })
}
