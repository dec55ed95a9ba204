//! One vCPU: its initial state, and a run loop that handles device I/O itself and returns
//! every other event to the caller, who decides whether to run it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_regs, kvm_segment, kvm_sregs, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::boot::layout::{
    CODE32_SELECTOR, CODE64_SELECTOR, DATA_SELECTOR, GDT_ADDR, GDT_ENTRIES, GDT_LIMIT,
};
use crate::boot::{BootCpuState, EntryMode};
use crate::devices::i8042::KeyboardInput;
use crate::devices::{BusAction, PioBus};
use crate::vmm::emulation_failure::{
    complete_fwait, complete_soft_interrupt, fetched_insn, SoftInterrupt, Unemulated, MAX_INSN_LEN,
};
use crate::vmm::guest_debug::{DebugConfig, DebugInfo, DebugState};
use crate::vmm::kick;
use crate::vmm::kvm_vcpu::KvmVcpu;
pub use crate::vmm::kvm_vcpu::VcpuError;
use crate::vmm::memory::GuestRam;
use crate::vmm::memslots::{Protection, RamRegistered};
use crate::vmm::no_bios::{self, Cause, NoBiosStop, Seen};
use crate::vmm::progress::{self, ProgressSampler};
use crate::x86::cpu::{
    ControlRegs, CpuMode, Cr0Flags, Cr4Flags, EferFlags, PagingMode, RFlags, DEFAULT_MAXPHYADDR,
};
use crate::x86::insn::DecodedInsn;
use crate::x86::paging::PagedMemory;
use crate::x86::segment::{SegmentCache, SegmentDescriptor, SegmentSelector};

const HLT: u8 = 0xF4;

/// Why a vCPU stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    /// Halted with interrupts disabled: it can never run again.
    Halted,
    /// Triple fault (KVM_EXIT_SHUTDOWN).
    Shutdown,
    /// The guest wrote this value to isa-debug-exit.
    DebugExit(u32),
    /// The guest asked the i8042 to reset the machine.
    Reset,
    /// Stopped on request ([`VcpuControl::request_stop`]).
    Interrupted,
    /// Still running when a borrowing thread's time budget ran out (see
    /// `Machine::resume_here`): its own thread carries on; never reported.
    Yielded,
    /// KVM_EXIT_DEBUG: single step, hardware breakpoint, or (on hardware KVM) a planted int3.
    Debug(DebugInfo),
    /// The guest wrote `len` bytes at guest-physical `phys`, inside a watched range (the
    /// write has been applied).
    WatchWrite {
        /// Guest-physical address of the write.
        phys: u64,
        /// Bytes written.
        len: usize,
    },
    /// With `catch_mode` on ([`DebugState`]): the CPU or paging mode differs from the one at the
    /// previous exit (KVM does not exit on CR0/EFER writes, so this is seen at the next exit).
    ModeChange {
        /// The mode at the previous exit.
        from: ModeKey,
        /// The mode now.
        to: ModeKey,
    },
    /// IDTR differs from the one the debugger last read ([`DebugState`]'s `watch_idtr`).
    IdtChanged,
    /// Execution reached an int3 the debugger planted (this host reports it as an emulation
    /// failure, which the loop recognises).
    SoftwareBreakpoint {
        /// RIP of the int3.
        rip: u64,
    },
    /// A real-mode interrupt reached an empty IVT vector (gdbvisor's stub there); the vCPU is
    /// back on the instruction that raised it, or the one it interrupted.
    NoBios(NoBiosStop),
    /// KVM could not handle an exit: its data and the bytes at RIP.
    InternalError(InternalError),
    /// VM entry failed (invalid guest state).
    FailEntry {
        /// KVM's hardware_entry_failure_reason.
        reason: u64,
        /// The host CPU the entry failed on.
        cpu: u32,
    },
    /// An exit gdbvisor does not handle.
    Unhandled(String),
}

impl VcpuEvent {
    /// Whether the event ends the guest's run by itself (an exit, a reset, a fault it cannot
    /// go on from), as opposed to one that only means something to a debugger or to the loop
    /// that waits for a halt.
    pub(crate) fn ends_run(&self) -> bool {
        matches!(
            self,
            VcpuEvent::DebugExit(_)
                | VcpuEvent::Reset
                | VcpuEvent::Shutdown
                | VcpuEvent::InternalError(_)
                | VcpuEvent::FailEntry { .. }
                | VcpuEvent::Unhandled(_)
                | VcpuEvent::NoBios(_)
        )
    }
}

/// A KVM_EXIT_INTERNAL_ERROR, with the instruction it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError {
    pub(crate) suberror: u32,
    pub(crate) data: Vec<u64>,
    pub(crate) rip: u64,
    /// Linear address of the instruction (CS base + RIP outside long mode).
    pub(crate) linear_rip: u64,
    /// Up to 15 bytes at RIP, fewer when they are not readable.
    pub(crate) insn: Vec<u8>,
}

/// The CPU mode and paging mode together: what `catch mode` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeKey {
    pub(crate) cpu: CpuMode,
    pub(crate) paging: PagingMode,
}

impl ModeKey {
    pub(crate) fn of(regs: &kvm_regs, sregs: &kvm_sregs) -> Self {
        let control = ControlRegs::new(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer);
        ModeKey {
            cpu: CpuMode::detect(
                control.cr0,
                control.efer,
                regs.rflags,
                sregs.cs.l != 0,
                sregs.cs.db != 0,
            ),
            paging: control.paging_mode(),
        }
    }
}

/// Shared with other threads: lets them stop this vCPU.
#[derive(Default)]
pub(crate) struct VcpuControl {
    stop: AtomicBool,
}

impl VcpuControl {
    /// Asks the vCPU to return [`VcpuEvent::Interrupted`]; follow with a kick.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Drops a stop request the vCPU never saw (it stopped for another reason first): a
    /// request is for the run in progress, and a stale one would end the next run at its
    /// first kick.
    pub(crate) fn withdraw_stop(&self) {
        self.stop.store(false, Ordering::SeqCst);
    }
}

/// One vCPU and its run loop; [`Machine`](crate::vmm::machine::Machine) runs each on its thread.
pub struct Vcpu {
    pub(crate) id: u8,
    kvm: KvmVcpu,
    ram: Arc<GuestRam>,
    bus: Arc<Mutex<PioBus>>,
    control: Arc<VcpuControl>,
    /// Guest int3 / int n this loop completed by injection (this host's KVM cannot).
    pub(crate) soft_interrupts_completed: u64,
    /// Run by a thread other than its own, which gave it a time budget: a kick then means
    /// the budget is spent ([`VcpuEvent::Yielded`]).
    pub(crate) borrowed: bool,
    /// Guest RAM's registration with KVM, waited for before the first run (see memslots).
    pub(crate) ram_registered: Option<Arc<RamRegistered>>,
    /// The read-only pages a debugger set, which this vCPU lifts for one instruction the CPU
    /// cannot finish on a protected page (see [`crate::vmm::progress`]).
    pub(crate) protection: Option<Protection>,
    /// The VM's keyboard, for `monitor sendkey` at a stop.
    pub(crate) keyboard: Option<KeyboardInput>,
    /// Writes into read-only pages that KVM reported as MMIO and this loop applied.
    pub(crate) protected_writes_applied: u64,
    /// The guest's MAXPHYADDR (CPUID.80000008H:EAX[7:0] as this vCPU's CPUID says): which
    /// page-table entry bits the CPU treats as reserved.
    maxphyaddr: u8,
    /// Samples this vCPU's registers at each kick, to see it make no progress.
    sampler: ProgressSampler,
    /// Exits handled so far: a vCPU that exits is not stuck.
    exits: u64,
    /// The registers a debugger's single step started from: a step that ends where it began
    /// on a protected page did not run its instruction, and one that ends in a handler pushed
    /// the step's TF into the frame.
    step_origin: Option<kvm_regs>,
    /// Inside [`Vcpu::complete_unprotected`]: its own exits are not stalls.
    in_window: bool,
    /// An interrupt frame could land on a protected page (a watched stack): interrupts wait
    /// (BLOCKIRQ) and are taken in windows with protection lifted, every
    /// [`progress::IRQ_WINDOW_PERIOD`] while interrupts are enabled.
    irq_windows: bool,
    /// Kicks this vCPU's own thread for the next interrupt window.
    window_timer: Option<kick::KickTimer>,
    /// What a debugger asks of this vCPU ([`Vcpu::set_debug_state`]).
    debug: DebugState,
}

impl Vcpu {
    pub(crate) fn new(id: u8, fd: VcpuFd, ram: Arc<GuestRam>, bus: Arc<Mutex<PioBus>>) -> Self {
        Vcpu {
            id,
            kvm: KvmVcpu::new(fd),
            ram,
            bus,
            control: Arc::new(VcpuControl::default()),
            soft_interrupts_completed: 0,
            borrowed: false,
            ram_registered: None,
            protection: None,
            keyboard: None,
            protected_writes_applied: 0,
            maxphyaddr: DEFAULT_MAXPHYADDR,
            sampler: ProgressSampler::default(),
            exits: 0,
            step_origin: None,
            in_window: false,
            irq_windows: false,
            window_timer: None,
            debug: DebugState::default(),
        }
    }

    /// The guest's MAXPHYADDR, as its CPUID reports it.
    pub fn maxphyaddr(&self) -> u8 {
        self.maxphyaddr
    }

    /// Records the MAXPHYADDR the CPUID given to KVM reports (see [`crate::vmm::vm`]).
    pub(crate) fn set_maxphyaddr(&mut self, bits: u8) {
        self.maxphyaddr = bits;
    }

    /// The registers translation depends on, with this guest's MAXPHYADDR: how this vCPU's
    /// CPU walks its page tables.
    pub(crate) fn control_regs(&self, sregs: &kvm_sregs) -> ControlRegs {
        ControlRegs::new(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer)
            .with_maxphyaddr(self.maxphyaddr)
    }

    /// The vCPU's KVM handle: its registers and state, read and written.
    pub fn kvm(&self) -> &KvmVcpu {
        &self.kvm
    }

    pub(crate) fn control(&self) -> Arc<VcpuControl> {
        self.control.clone()
    }

    /// Applies a debugger's wishes: KVM's settings (single step, breakpoints in DR0-3, #BP
    /// exits; told to KVM only when they change) and what the run loop checks exits against.
    pub fn set_debug_state(&mut self, state: DebugState) -> Result<(), VcpuError> {
        let changed = state.config != self.debug.config;
        self.debug = state;
        if !changed {
            return Ok(());
        }
        self.apply_debug(self.kvm_debug(), 0)
    }

    /// Forgets every debugger wish and tells KVM so, whatever it was last told: what a
    /// detaching debugger leaves behind.
    pub(crate) fn clear_debug(&mut self) -> Result<(), VcpuError> {
        self.debug = DebugState::default();
        self.step_origin = None;
        self.apply_debug(self.kvm_debug(), 0)
    }

    /// What KVM is asked for: the debugger's wishes, with interrupts held back while they
    /// could push a frame onto a protected page.
    fn kvm_debug(&self) -> DebugConfig {
        DebugConfig {
            block_irq: self.debug.config.block_irq || self.irq_windows,
            ..self.debug.config
        }
    }

    fn apply_debug(&self, config: DebugConfig, extra_control: u32) -> Result<(), VcpuError> {
        self.kvm.set_guest_debug(&config.to_kvm(extra_control))
    }

    /// Must be called on the thread that will run this vCPU, before [`Vcpu::run`].
    pub(crate) fn bind_to_current_thread(&mut self) -> kick::Kicker {
        kick::register_current_thread(self.kvm.run_page());
        kick::Kicker::for_current_thread()
    }

    /// Forgets a kick that arrived after KVM_RUN returned, so the next run is not cut short.
    pub(crate) fn clear_kick(&mut self) {
        self.kvm.set_immediate_exit(false);
    }

    /// Sets registers for the loader's entry state.
    pub fn set_boot_state(&self, boot: &BootCpuState) -> Result<(), VcpuError> {
        let mut sregs = self.kvm.get_sregs()?;
        match boot.mode {
            EntryMode::Real { cs } => {
                sregs.cs.selector = cs;
                sregs.cs.base = u64::from(cs) << 4;
                for seg in [
                    &mut sregs.ds,
                    &mut sregs.es,
                    &mut sregs.fs,
                    &mut sregs.gs,
                    &mut sregs.ss,
                ] {
                    seg.selector = 0;
                    seg.base = 0;
                }
            }
            EntryMode::Protected32 => {
                set_flat_segments(&mut sregs, CODE32_SELECTOR);
                sregs.cr0 = (Cr0Flags::PE | Cr0Flags::ET).bits();
            }
            EntryMode::Long64 => {
                set_flat_segments(&mut sregs, CODE64_SELECTOR);
                sregs.cr0 = (Cr0Flags::PE | Cr0Flags::ET | Cr0Flags::PG).bits();
                sregs.cr3 = boot.cr3;
                sregs.cr4 = Cr4Flags::PAE.bits();
                sregs.efer = (EferFlags::LME | EferFlags::LMA).bits();
            }
        }
        self.kvm.set_sregs(&sregs)?;
        let regs = kvm_regs {
            rip: boot.rip,
            rsp: boot.rsp,
            rax: boot.rax,
            rbx: boot.rbx,
            rsi: boot.rsi,
            rdx: boot.rdx,
            rflags: RFlags::RESERVED_1.bits(),
            ..Default::default()
        };
        self.kvm.set_regs(&regs)
    }

    /// Completes a port or MMIO exit KVM still holds (RIP past the `out`, an `in`'s register
    /// written) without running the guest: KVM_RUN with `immediate_exit` set finishes it and
    /// returns EINTR at once. Done before saving the state after such an exit.
    pub(crate) fn complete_pending_exit(&mut self) -> Result<(), VcpuError> {
        self.kvm.set_immediate_exit(true);
        let result = self.kvm.run().map(|_| ());
        self.kvm.set_immediate_exit(false);
        result
    }

    /// Runs until something the caller must decide on happens.
    pub(crate) fn run(&mut self) -> Result<VcpuEvent, VcpuError> {
        if let Some(registered) = self.ram_registered.take() {
            registered.wait()?;
        }
        let mut mode = if self.debug.catch_mode {
            Some(self.mode_key()?)
        } else {
            None
        };
        self.step_origin = if self.debug.config.single_step {
            Some(self.kvm.regs()?)
        } else {
            None
        };
        self.plan_irq_windows()?;
        loop {
            if let Some(event) = self.run_once()? {
                return Ok(event);
            }
            if let Some(from) = mode {
                let to = self.mode_key()?;
                if to != from {
                    return Ok(VcpuEvent::ModeChange { from, to });
                }
                mode = Some(to);
            }
            if let Some(seen) = self.debug.watch_idtr {
                // From the run page at this exit: no ioctl.
                let (_, sregs) = self.kvm.regs_and_sregs()?;
                if (sregs.idt.base, sregs.idt.limit) != seen {
                    return Ok(VcpuEvent::IdtChanged);
                }
            }
        }
    }

    fn mode_key(&self) -> Result<ModeKey, VcpuError> {
        let (regs, sregs) = self.kvm.regs_and_sregs()?;
        Ok(ModeKey::of(&regs, &sregs))
    }

    fn run_once(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        if let (true, false, Some(timer)) = (self.irq_windows, self.in_window, &self.window_timer) {
            timer.arm(progress::IRQ_WINDOW_PERIOD);
        }
        let Some(exit) = self.kvm.run()? else {
            return self.after_kick();
        };
        log::trace!("vCPU {} exit {exit:?}", self.id);
        if !matches!(exit, VcpuExit::Intr) {
            self.exits += 1;
        }
        let action = match exit {
            VcpuExit::IoIn(port, data) => {
                self.bus
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(port, data);
                BusAction::Continue
            }
            VcpuExit::IoOut(port, data) => {
                let bytes = data.to_vec();
                if port == crate::boot::ivt::PORT {
                    if let Some(event) = self.no_bios_stop(Seen::PortWrite)? {
                        return Ok(Some(event));
                    }
                }
                self.port_write(port, &bytes)
            }
            VcpuExit::MmioRead(addr, data) => {
                log::debug!("unhandled MMIO read {addr:#x} ({} bytes)", data.len());
                data.fill(0xff);
                BusAction::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                let bytes = data.to_vec();
                if let Some(event) = self.write_to_protected_ram(addr, &bytes) {
                    return Ok(Some(event));
                }
                return self.step_ended_at_store();
            }
            VcpuExit::Hlt => {
                return self
                    .halted_for_good()
                    .map(|h| h.then_some(VcpuEvent::Halted))
            }
            VcpuExit::Shutdown => return self.after_shutdown(),
            VcpuExit::Debug(arch) => {
                let info = DebugInfo::from(arch);
                return self.debug_exit(info);
            }
            VcpuExit::FailEntry(reason, cpu) => {
                return Ok(Some(VcpuEvent::FailEntry { reason, cpu }))
            }
            VcpuExit::Intr => return self.after_kick(),
            VcpuExit::InternalError => return self.internal_error(),
            other => return Ok(Some(VcpuEvent::Unhandled(format!("{other:?}")))),
        };
        Ok(match action {
            BusAction::Continue => None,
            BusAction::DebugExit(value) => Some(VcpuEvent::DebugExit(value)),
            BusAction::Reset => Some(VcpuEvent::Reset),
        })
    }

    /// A write that left KVM as MMIO: to a read-only RAM page (a watched one), or to no memory
    /// at all. RAM writes are applied here; the caller hears of those that touch a watch.
    fn write_to_protected_ram(&mut self, addr: u64, bytes: &[u8]) -> Option<VcpuEvent> {
        let len = bytes.len() as u64;
        if !self.ram.contains(addr, len) {
            log::debug!("unhandled MMIO write {addr:#x} <- {bytes:02x?}");
            return None;
        }
        let old = self.ram_bytes((addr, len));
        self.protected_writes_applied += 1;
        if let Err(e) = self.ram.write(addr, bytes) {
            log::warn!("applying a guest write to a protected page: {e}");
        }
        // Code written over a breakpoint: remember the new byte, keep the breakpoint.
        let mut planted = self
            .debug
            .planted_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (phys, original) in planted.range_mut(addr..addr + len) {
            *original = bytes[(phys - addr) as usize];
            let _ = self.ram.write(*phys, &[0xCC]);
        }
        drop(planted);
        let touches_watch = self
            .debug
            .watched
            .iter()
            .any(|&(start, size)| addr < start + size && start < addr + len);
        (touches_watch && !self.write_is_cpu_made(addr, &old, bytes)).then_some(
            VcpuEvent::WatchWrite {
                phys: addr,
                len: bytes.len(),
            },
        )
    }

    /// KVM hands a store out as MMIO with the instruction already done (RIP past it) and, once
    /// the write is completed, resumes the guest without the single step it was asked for
    /// (the FIXME in its `complete_emulated_mmio`): the next instruction would run too. Under
    /// a step, then, the step ends here, reported as the debug exit KVM would have made.
    /// A `rep` store whose RIP has not moved still has elements to write and runs on.
    fn step_ended_at_store(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        const TF: u64 = RFlags::TF.bits();
        const DR6_SINGLE_STEP: u64 = 0xffff_4ff0;
        const DB_VECTOR: u32 = 1;
        let Some((origin_rip, guest_tf)) =
            self.step_origin.as_ref().map(|o| (o.rip, o.rflags & TF))
        else {
            return Ok(None);
        };
        if !self.debug.config.single_step || self.in_window {
            return Ok(None);
        }
        self.complete_pending_exit()?;
        let (mut regs, sregs) = self.kvm.regs_and_sregs()?;
        if regs.rip == origin_rip {
            return Ok(None);
        }
        // The step's own TF must not stay behind in the guest's flags.
        if regs.rflags & TF != guest_tf {
            regs.rflags = (regs.rflags & !TF) | guest_tf;
            self.kvm.set_regs(&regs)?;
        }
        let info = DebugInfo {
            exception: DB_VECTOR,
            pc: linear_pc(&regs, &sregs),
            dr6: DR6_SINGLE_STEP,
            dr7: 0,
        };
        self.debug_exit(info)
    }

    /// See [`progress::is_cpu_made`]: a descriptor's Accessed bit or a PTE's A/D bits that
    /// hardware KVM reports as MMIO do not stop the guest at a watchpoint.
    fn write_is_cpu_made(&self, phys: u64, old: &[u8], new: &[u8]) -> bool {
        let Ok((regs, sregs)) = self.kvm.regs_and_sregs() else {
            return false;
        };
        let insn = self.insn_at_pc(&regs, &sregs);
        let control = self.control_regs(&sregs);
        let to_phys =
            |linear, len| progress::physical_pieces(self.ram.as_ref(), &control, linear, len);
        let tables = self.descriptor_tables(&sregs);
        progress::is_cpu_made(
            insn.as_ref(),
            &regs,
            &sregs,
            to_phys,
            phys,
            old,
            new,
            &tables,
        )
    }

    /// `out`/`outs`: KVM packs `count` accesses of `size` bytes; each goes to the device.
    fn port_write(&mut self, port: u16, bytes: &[u8]) -> BusAction {
        // SAFETY: the exit reason was KVM_EXIT_IO, so the `io` member of the union is valid.
        let size = usize::from(unsafe { self.kvm.run_page().__bindgen_anon_1.io.size }).max(1);
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        for access in bytes.chunks(size) {
            let action = bus.write(port, access);
            if action != BusAction::Continue {
                return action;
            }
        }
        BusAction::Continue
    }

    /// A #BP exit at an address the debugger did not plant is the guest's own `int3`: hand it
    /// back to the guest (hardware KVM with USE_SW_BP).
    fn debug_exit(&mut self, info: DebugInfo) -> Result<Option<VcpuEvent>, VcpuError> {
        const BP_VECTOR: u32 = 3;
        if let Some(origin) = self.step_origin.take() {
            if !self.in_window && self.is_protected() && self.kvm.regs()? == origin {
                log::debug!(
                    "vCPU {}: a step at {:#x} did not move; running it with protection lifted",
                    self.id,
                    origin.rip
                );
                return self.complete_unprotected(false);
            }
            self.clear_leaked_trap_flag(&origin)?;
        }
        // A step or breakpoint that ends in a no-BIOS stub (stepping `int 0x10`) stops where
        // the interrupt came from instead.
        let stepped = self.in_window || self.debug.config.single_step;
        if let Some(event) = self.no_bios_stop(Seen::DebugExit { stepped })? {
            return Ok(Some(event));
        }
        if info.exception == BP_VECTOR && !self.debug.planted_breakpoints.contains(&info.pc) {
            self.apply_debug(self.kvm_debug(), kvm_bindings::KVM_GUESTDBG_INJECT_BP)?;
            self.soft_interrupts_completed += 1;
            return Ok(None);
        }
        Ok(Some(VcpuEvent::Debug(info)))
    }

    fn after_kick(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        self.kvm.set_immediate_exit(false);
        if self.control.stop.swap(false, Ordering::SeqCst) {
            return Ok(Some(VcpuEvent::Interrupted));
        }
        if self.borrowed {
            return Ok(Some(VcpuEvent::Yielded));
        }
        if self.halted_for_good()? {
            return Ok(Some(VcpuEvent::Halted));
        }
        if let Some(event) = self.check_progress()? {
            return Ok(Some(event));
        }
        if self.irq_windows && !self.in_window {
            let (regs, _) = self.kvm.regs_and_sregs()?;
            if regs.rflags & RFlags::IF.bits() != 0 {
                return self.complete_unprotected(true);
            }
        }
        Ok(None)
    }

    /// Whether an interrupt frame could land on a protected page — the current stack, or a
    /// stack the TSS switches to — decided at each run: then interrupts are taken only in
    /// windows with protection lifted (this host's KVM triple-faults on such a frame and the
    /// interrupt is lost). Exceptions need no window: their instruction runs again after a
    /// triple fault ([`Vcpu::after_shutdown`]).
    fn plan_irq_windows(&mut self) -> Result<(), VcpuError> {
        let wanted = match &self.protection {
            Some(protection) if protection.is_active() && !self.borrowed => {
                let (regs, sregs) = self.kvm.regs_and_sregs()?;
                let control = self.control_regs(&sregs);
                progress::frame_stacks(self.ram.as_ref(), &regs, &sregs, control)
                    .into_iter()
                    .flat_map(|top| {
                        let bottom = top.wrapping_sub(progress::FRAME_BYTES);
                        progress::physical_pieces(
                            self.ram.as_ref(),
                            &control,
                            bottom,
                            progress::FRAME_BYTES,
                        )
                    })
                    .any(|(phys, _)| protection.protects(phys))
            }
            _ => false,
        };
        if wanted && self.window_timer.is_none() {
            match kick::KickTimer::for_current_thread() {
                Ok(timer) => self.window_timer = Some(timer),
                Err(e) => log::warn!("no interrupt windows: {e}"),
            }
        }
        let wanted = wanted && self.window_timer.is_some();
        if wanted != self.irq_windows {
            log::debug!(
                "vCPU {}: interrupt windows {}",
                self.id,
                if wanted { "on" } else { "off" }
            );
            self.irq_windows = wanted;
            if !wanted {
                if let Some(timer) = &self.window_timer {
                    timer.disarm();
                }
            }
            self.apply_debug(self.kvm_debug(), 0)?;
        }
        Ok(())
    }

    fn is_protected(&self) -> bool {
        self.protection.as_ref().is_some_and(Protection::is_active)
    }

    /// At a kick: a vCPU whose registers have not moved since the last kick, with no exit in
    /// between, on an instruction that makes the CPU write by itself (a segment load sets a
    /// descriptor's Accessed bit), is stuck on a protected page — this host's KVM retries such
    /// a write for ever. So is one that has not moved for [`progress::STALL_SAMPLES`] kicks
    /// on any instruction but a wait. Either runs its instruction with protection lifted.
    fn check_progress(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        if self.in_window || !self.is_protected() {
            self.sampler = ProgressSampler::default();
            return Ok(None);
        }
        let (regs, sregs) = self.kvm.regs_and_sregs()?;
        let unchanged = self.sampler.sample(&regs, self.exits);
        if unchanged == 0 {
            return Ok(None);
        }
        let mp = self.kvm.get_mp_state()?;
        if mp.mp_state == KVM_MP_STATE_HALTED {
            return Ok(None);
        }
        if !progress::is_stalled(self.insn_at_pc(&regs, &sregs).as_ref(), unchanged) {
            return Ok(None);
        }
        log::debug!(
            "vCPU {}: no progress at {:#x} on a protected page; running it with protection lifted",
            self.id,
            regs.rip
        );
        self.sampler = ProgressSampler::default();
        self.complete_unprotected(false)
    }

    /// A triple fault while pages are protected may be ours: on this host's KVM an exception
    /// or interrupt frame pushed onto a protected stack page ends in one. Run the instruction
    /// again with protection lifted; a second triple fault is the guest's own.
    fn after_shutdown(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        if self.in_window || !self.is_protected() {
            return Ok(Some(VcpuEvent::Shutdown));
        }
        log::debug!(
            "vCPU {}: triple fault with pages protected; retrying with protection lifted",
            self.id
        );
        self.complete_unprotected(false)
    }

    /// Runs one instruction (or the delivery of one event) with every page writable and
    /// breakpoints left as they are, then protects the pages again. The guest's writes land
    /// in RAM directly: a write over a planted 0xCC becomes the byte under it, and a change
    /// to a watched range is reported as the write it is — unless it is only the CPU setting
    /// a descriptor's Accessed or busy bit, which no watchpoint sees.
    ///
    /// With `deliver_interrupts`, a pending interrupt is delivered first (an interrupt window).
    fn complete_unprotected(
        &mut self,
        deliver_interrupts: bool,
    ) -> Result<Option<VcpuEvent>, VcpuError> {
        let Some(protection) = self.protection.clone() else {
            return Ok(None);
        };
        let (_, sregs) = self.kvm.regs_and_sregs()?;
        let before: Vec<Vec<u8>> = self
            .debug
            .watched
            .iter()
            .map(|&r| self.ram_bytes(r))
            .collect();
        let user_step = self.debug.config.single_step;
        let step = DebugConfig {
            single_step: true,
            block_irq: !deliver_interrupts,
            ..self.debug.config
        };
        if self.apply_debug(step, 0).is_err() {
            // A KVM without BLOCKIRQ: an interrupt may be delivered first; the stall then
            // comes back and is completed at a later kick.
            self.apply_debug(
                DebugConfig {
                    block_irq: false,
                    ..step
                },
                0,
            )?;
        }
        let (start_regs, _) = self.kvm.regs_and_sregs()?;
        self.in_window = true;
        let outcome = protection.lifted(|| loop {
            match self.run_once() {
                Ok(None) => continue,
                other => break other,
            }
        });
        self.in_window = false;
        self.apply_debug(self.kvm_debug(), 0)?;
        let event = outcome??;
        self.clear_leaked_trap_flag(&start_regs)?;
        self.keep_breakpoints_planted();
        let changed = self
            .debug
            .watched
            .iter()
            .zip(&before)
            .find_map(|(&(start, len), old)| {
                let new = self.ram_bytes((start, len));
                progress::guest_change(start, old, &new, &self.descriptor_tables(&sregs))
            });
        if let Some((phys, len)) = changed {
            return Ok(Some(VcpuEvent::WatchWrite { phys, len }));
        }
        Ok(match event {
            // The completing step itself, unless the debugger asked for a step or a debug
            // register hit with it.
            Some(VcpuEvent::Debug(info)) if !user_step && info.dr6 & 0xf == 0 => None,
            other => other,
        })
    }

    /// A single step across an event's delivery pushes the step's TF into the frame, and the
    /// handler's `iret` would then raise #DB in the guest: when the step ended in a handler,
    /// the saved flags get the guest's own TF back.
    fn clear_leaked_trap_flag(&mut self, before: &kvm_regs) -> Result<(), VcpuError> {
        const TF: u64 = RFlags::TF.bits();
        let (regs, sregs) = self.kvm.regs_and_sregs()?;
        if before.rflags & TF != 0 || regs.rsp == before.rsp {
            return Ok(());
        }
        let long_mode = sregs.efer & EferFlags::LMA.bits() != 0;
        let width = match (long_mode, sregs.cs.db != 0) {
            (true, _) => 8,
            (false, true) => 4,
            (false, false) => 2,
        };
        let top = progress::stack_top(&regs, &sregs);
        let frame = self.read_linear(&sregs, top, (progress::FRAME_SEARCH_SLOTS + 3) * width);
        let Some(offset) = progress::saved_flags_offset(&frame, width, before.rip) else {
            return Ok(());
        };
        let control = self.control_regs(&sregs);
        let flags_at = top.wrapping_add(offset as u64 + 1);
        if let Some(&(phys, _)) =
            progress::physical_pieces(self.ram.as_ref(), &control, flags_at, 1).first()
        {
            let byte = frame[offset + 1] & !((TF >> 8) as u8);
            if byte != frame[offset + 1] {
                log::debug!("vCPU {}: TF cleared in the frame at {top:#x}", self.id);
                let _ = self.ram.write(phys, &[byte]);
            }
        }
        Ok(())
    }

    /// Guest-physical ranges of this vCPU's GDT and LDT, where an Accessed or busy bit the
    /// CPU sets is its own write.
    fn descriptor_tables(&self, sregs: &kvm_sregs) -> Vec<(u64, u64)> {
        let regs = self.control_regs(sregs);
        [
            (sregs.gdt.base, u64::from(sregs.gdt.limit) + 1),
            (sregs.ldt.base, u64::from(sregs.ldt.limit) + 1),
        ]
        .into_iter()
        .filter(|&(_, len)| len > 1)
        .flat_map(|(base, len)| progress::physical_pieces(self.ram.as_ref(), &regs, base, len))
        .collect()
    }

    fn ram_bytes(&self, (start, len): (u64, u64)) -> Vec<u8> {
        let mut bytes = vec![0; len as usize];
        let _ = self.ram.read(start, &mut bytes);
        bytes
    }

    /// After the guest wrote RAM directly: a planted byte it overwrote becomes the byte under
    /// the breakpoint, and the 0xCC goes back.
    fn keep_breakpoints_planted(&self) {
        let mut planted = self
            .debug
            .planted_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (&phys, original) in planted.iter_mut() {
            let mut byte = [0u8];
            if self.ram.read(phys, &mut byte).is_ok() && byte[0] != 0xCC {
                *original = byte[0];
                let _ = self.ram.write(phys, &[0xCC]);
            }
        }
    }

    /// Still waiting for the INIT/SIPI that starts an application processor.
    pub(crate) fn waits_for_startup(&self) -> bool {
        self.kvm.get_mp_state().is_ok_and(|mp| {
            matches!(
                mp.mp_state,
                KVM_MP_STATE_UNINITIALIZED | KVM_MP_STATE_INIT_RECEIVED
            )
        })
    }

    /// Halted with IF=0: only an NMI or INIT could wake it, and nothing here sends those.
    fn halted_for_good(&self) -> Result<bool, VcpuError> {
        let mp = self.kvm.get_mp_state()?;
        if mp.mp_state != KVM_MP_STATE_HALTED {
            return Ok(false);
        }
        let regs = self.kvm.get_regs()?;
        if regs.rflags & RFlags::IF.bits() != 0 {
            return Ok(false);
        }
        // A halted vCPU sits just after its `hlt`. KVM can still say HALTED for a vCPU that an
        // interrupt already woke (seen after a single step over `hlt`, inside the handler with
        // IF=0), so the instruction before RIP must be that `hlt`.
        let sregs = self.kvm.get_sregs()?;
        let before = linear_pc(&regs, &sregs).wrapping_sub(1);
        Ok(self.read_linear(&sregs, before, 1) == [HLT])
    }

    /// KVM could not handle an exit. On this host most are instructions its emulator fails
    /// on, which [`crate::vmm::emulation_failure`] finishes; a debugger's own 0xCC is a
    /// breakpoint stop instead of an `int3` for the guest.
    fn internal_error(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so `internal` is the valid member.
        let internal = unsafe { self.kvm.run_page().__bindgen_anon_1.internal };
        let (regs, sregs) = self.kvm.regs_and_sregs()?;
        let linear_rip = linear_pc(&regs, &sregs);
        let data = &internal.data[..(internal.ndata as usize).min(internal.data.len())];
        let insn = fetched_insn(internal.suberror, data)
            .unwrap_or_else(|| self.read_linear(&sregs, linear_rip, MAX_INSN_LEN));
        match Unemulated::classify(internal.suberror, &insn) {
            Some(Unemulated::Fwait) => {
                complete_fwait(&self.kvm, regs)?;
                Ok(None)
            }
            Some(Unemulated::SoftInterrupt(SoftInterrupt::Int3))
                if self.debug.planted_breakpoints.contains(&linear_rip) =>
            {
                // A step into a handler that starts with a breakpoint ends here.
                if let Some(origin) = self.step_origin.take() {
                    self.clear_leaked_trap_flag(&origin)?;
                }
                Ok(Some(VcpuEvent::SoftwareBreakpoint { rip: regs.rip }))
            }
            Some(Unemulated::SoftInterrupt(soft)) => {
                self.soft_interrupts_completed += 1;
                complete_soft_interrupt(&self.kvm, soft, regs)?;
                self.deliver_injected()
            }
            None => Ok(Some(VcpuEvent::InternalError(InternalError {
                suberror: internal.suberror,
                data: data.to_vec(),
                rip: regs.rip,
                linear_rip,
                insn,
            }))),
        }
    }

    /// An event the loop injected pushes its frame at the next entry: onto a protected stack
    /// page that would be a triple fault on this host, and the event lost. So with pages
    /// protected the delivery runs in a lifted step.
    fn deliver_injected(&mut self) -> Result<Option<VcpuEvent>, VcpuError> {
        if self.in_window || !self.is_protected() {
            return Ok(None);
        }
        let event = self.complete_unprotected(true)?;
        let (regs, _) = self.kvm.regs_and_sregs()?;
        log::debug!(
            "vCPU {}: injected event delivered unprotected, now at {:#x}",
            self.id,
            regs.rip
        );
        Ok(event)
    }

    /// When this vCPU is in real mode inside a no-BIOS stub: puts it back where the interrupt
    /// came from ([`no_bios::unwind`]) and says what happened. A planted breakpoint's 0xCC
    /// (which this host's KVM delivers to the IVT in real mode) becomes the breakpoint stop it
    /// is. `None` when the vCPU is elsewhere.
    fn no_bios_stop(&mut self, seen: Seen) -> Result<Option<VcpuEvent>, VcpuError> {
        let (regs, sregs) = self.kvm.regs_and_sregs()?;
        let Some(vector) = no_bios::stub_vector(linear_pc(&regs, &sregs), &sregs) else {
            return Ok(None);
        };
        if seen == Seen::PortWrite {
            // Registers set while KVM still holds the `out` would be overwritten when it
            // completes.
            self.complete_pending_exit()?;
        }
        // Registers are written below, from KVM's own, not the copy it left at the exit.
        let (mut regs, stub_sregs) = (self.kvm.get_regs()?, self.kvm.get_sregs()?);
        let mut sregs = stub_sregs;
        let stop = no_bios::unwind(vector, seen, &mut regs, &mut sregs, |at, len| {
            self.read_linear(&stub_sregs, at, len)
        });
        if stop.at.is_some() {
            self.kvm.set_sregs(&sregs)?;
            self.kvm.set_regs(&regs)?;
            let at = linear_pc(&regs, &sregs);
            if stop.cause == Cause::Int3 && self.debug.planted_breakpoints.contains(&at) {
                return Ok(Some(VcpuEvent::SoftwareBreakpoint { rip: regs.rip }));
            }
        }
        Ok(Some(VcpuEvent::NoBios(stop)))
    }

    /// The instruction at this vCPU's pc, decoded in its mode, if it decodes.
    fn insn_at_pc(&self, regs: &kvm_regs, sregs: &kvm_sregs) -> Option<DecodedInsn> {
        let bytes = self.read_linear(sregs, linear_pc(regs, sregs), MAX_INSN_LEN);
        DecodedInsn::decode(&bytes, regs.rip, ModeKey::of(regs, sregs).cpu)
    }

    /// Reads up to `len` bytes at a linear address, stopping at the first unreadable one.
    pub(crate) fn read_linear(&self, sregs: &kvm_sregs, linear: u64, len: usize) -> Vec<u8> {
        // Through our own walker with this vCPU's control registers (no KVM_TRANSLATE per byte).
        let mem = PagedMemory::new(self.ram.as_ref(), self.control_regs(sregs));
        let mut out = vec![0; len];
        let (read, _) = mem.read_prefix(linear, &mut out);
        out.truncate(read);
        out
    }
}

/// CS base + RIP, except in 64-bit mode where the base is ignored.
pub(crate) fn linear_pc(regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    if sregs.cs.l != 0 && sregs.efer & EferFlags::LMA.bits() != 0 {
        regs.rip
    } else {
        sregs.cs.base.wrapping_add(regs.rip) & 0xffff_ffff
    }
}

/// Loads CS with `code_selector` and the data segments with the flat data selector, from the
/// boot GDT, and points GDTR at it.
fn set_flat_segments(sregs: &mut kvm_sregs, code_selector: u16) {
    sregs.cs = segment_from_boot_gdt(code_selector);
    let data = segment_from_boot_gdt(DATA_SELECTOR);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = GDT_LIMIT;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
}

/// The hidden descriptor cache a `mov` of `selector` would load from the boot GDT.
fn segment_from_boot_gdt(selector: u16) -> kvm_segment {
    let descriptor = SegmentDescriptor(GDT_ENTRIES[usize::from(selector >> 3)]);
    to_kvm_segment(&SegmentCache::from_descriptor(
        SegmentSelector(selector),
        descriptor,
    ))
}

/// KVM's descriptor cache in our model's terms (field for field).
pub(crate) fn from_kvm_segment(seg: &kvm_segment) -> SegmentCache {
    SegmentCache {
        selector: SegmentSelector(seg.selector),
        base: seg.base,
        limit: seg.limit,
        type_: seg.type_,
        s: seg.s != 0,
        dpl: seg.dpl,
        present: seg.present != 0,
        db: seg.db != 0,
        l: seg.l != 0,
        g: seg.g != 0,
        avl: seg.avl != 0,
        unusable: seg.unusable != 0,
    }
}

/// Our model of a descriptor cache in KVM's layout (field for field).
pub(crate) fn to_kvm_segment(cache: &SegmentCache) -> kvm_segment {
    kvm_segment {
        base: cache.base,
        limit: cache.limit,
        selector: cache.selector.0,
        type_: cache.type_,
        s: cache.s.into(),
        dpl: cache.dpl,
        present: cache.present.into(),
        avl: cache.avl.into(),
        l: cache.l.into(),
        db: cache.db.into(),
        g: cache.g.into(),
        unusable: cache.unusable.into(),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_gdt_segments_decode_as_kvm_expects() {
        let code = segment_from_boot_gdt(CODE64_SELECTOR);
        assert_eq!(
            (code.base, code.limit, code.type_, code.l, code.db),
            (0, 0xffff_ffff, 0xb, 1, 0)
        );
        let data = segment_from_boot_gdt(DATA_SELECTOR);
        assert_eq!(
            (data.type_, data.s, data.present, data.db, data.g),
            (3, 1, 1, 1, 1)
        );
        let code32 = segment_from_boot_gdt(CODE32_SELECTOR);
        assert_eq!((code32.l, code32.db), (0, 1));
    }
}
