//! A live VM as a gdb backend: registers from KVM at each stop, memory from guest RAM, and run
//! control — gdb's resume and step on the vCPU threads, breakpoints planted as 0xCC or held in
//! debug registers, watchpoints on read-only pages or in debug registers.
//!
//! The parts ([`vm`]) are the machine handle, each vCPU's run state ([`vcpus`]) and the
//! breakpoint and watch bookkeeping ([`debug`]); [`resume`] starts the vCPUs as [`plan`]
//! decides, [`stop`] stops them and says why; this file answers the target and the session
//! loop.

pub(crate) mod arriving;
mod breakpoints;
mod debug;
pub(crate) mod exceptions;
mod plan;
mod resume;
mod step;
mod stop;
mod trace_stops;
mod vcpus;
mod vm;
mod watchpoints;

use std::sync::Arc;

use gdbstub::stub::DisconnectReason;
use gdbstub::target::ext::breakpoints::WatchKind;

use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::gdb::backend::{Action, Backend, Ended, Refusal, RunControl, Waited};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::monitor::{dump, keys, msr, usage, Lines};
use crate::snapshot::CpuSnapshot;
use crate::vmm::host_caps::Capability;
use crate::vmm::machine::VcpuReport;
use crate::vmm::memory::GuestRam;
use crate::vmm::outcome::{report_event, settle_halt, AfterHalt, RunEnd};
use crate::vmm::vcpu::VcpuEvent;
use crate::x86::paging::{translate, Access};
use debug::DataWatch;
pub(crate) use vm::LiveVm;

impl LiveVm {
    /// Forgets every breakpoint and debug setting (detach or disconnect).
    fn forget_debugging(&mut self) -> Result<(), TargetFault> {
        self.debug.forget(&self.vm.ram);
        if let Some(trace) = self.trace.as_mut() {
            // gdb's catches go with it; a trace the command line asked for goes on.
            trace.catch.clear();
        }
        self.vm.slots.set_read_only(Default::default())?;
        for id in self.vcpus.ids() {
            self.vm.machine.with_vcpu(id, |vcpu| vcpu.clear_debug())??;
        }
        Ok(())
    }

    /// After a run without gdb ended in vCPU `id`'s triple fault: why, on stderr, as a run
    /// without the exception trace tells it.
    pub(crate) fn explain_triple_fault(&mut self, id: u8) -> Result<(), TargetFault> {
        let snap = self.core_at_stop(id)?.clone();
        crate::gdb::monitor::why::print_explanation(&snap, &*self.vm.ram);
        Ok(())
    }

    /// `dump FILE`: every vCPU's whole state, with the PAE PDPTE registers KVM holds.
    fn dump(&mut self, args: &[&str]) -> Lines {
        let mut cpus = Vec::new();
        for id in self.vcpus.ids() {
            let mut cpu = self.state_at_stop(id)?.clone();
            cpu.pdptrs = self
                .vm
                .machine
                .with_vcpu(id, |v| v.kvm().pdptrs())
                .map_err(TargetFault::from)?;
            cpus.push(cpu);
        }
        dump(args, &cpus, &self.vm.ram)
    }
}

impl Backend for LiveVm {
    fn vcpu_count(&self) -> usize {
        self.vcpus.count()
    }

    fn cpu(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.state_at_stop(id)
    }

    fn core(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.core_at_stop(id)
    }

    fn ram(&self) -> &Arc<GuestRam> {
        &self.vm.ram
    }

    fn describe_thread(&mut self, id: u8) -> Result<String, TargetFault> {
        self.vcpus.fetch_for_description(&mut self.vm.machine, id)?;
        Ok(self.vcpus.describe(id))
    }

    fn write_registers(
        &mut self,
        id: u8,
        file: &RegisterFile,
        layout: RegLayout,
    ) -> Result<(), Refusal> {
        self.write_file(id, file, layout)
    }

    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        match (name, args) {
            ("hold", []) => {
                self.hold = true;
                Ok(vec![
                    "the guest stays stopped when this gdb disconnects".into()
                ])
            }
            ("catch", ["mode", "on"]) => {
                self.debug.catch_mode = true;
                Ok(vec![
                    "stopping when a vCPU's CPU or paging mode changes (seen at the first exit after the switch: KVM does not exit on CR0/EFER writes)".into(),
                ])
            }
            ("catch", ["mode", "off"]) => {
                self.debug.catch_mode = false;
                Ok(vec!["no longer stopping on mode changes".into()])
            }
            ("catch", ["exception", ..]) | ("exceptions", _) | ("trace", _) => {
                self.trace_command(name, args)
            }
            ("msr", _) => msr::msr(args, msr::from_kvm(&mut self.vm.machine, vcpu)),
            ("dump", [_, ..]) => self.dump(args),
            ("sendkey", [_, ..]) => keys::sendkey(&mut self.vm.machine, vcpu, args),
            _ => Err(usage(name)),
        }
    }

    fn run_control(&mut self) -> Option<&mut dyn RunControl> {
        Some(self)
    }

    fn wait_for_stop(
        &mut self,
        conn: &mut GdbConnection,
        _current: u8,
    ) -> Result<Waited, TargetFault> {
        self.next_stop(conn)
    }

    fn interrupt(&mut self) {
        self.vm.machine.stop_all();
    }

    fn tick(&mut self, inbox: &SharedInbox) -> Result<Option<Ended>, TargetFault> {
        self.vm.machine.kick_running();
        self.refresh_unattended(inbox)
    }

    fn report_unattended(
        &mut self,
        (id, event): VcpuReport,
        inbox: &SharedInbox,
    ) -> Result<Option<Ended>, TargetFault> {
        self.vm.machine.mark_stopped(id);
        let event = event?;
        if event == VcpuEvent::Interrupted {
            return Ok(None);
        }
        if self.trace.as_ref().is_some_and(|t| t.on) {
            return self.traced_unattended(id, event, inbox);
        }
        if event != VcpuEvent::Halted && !event.ends_run() {
            // A report meant for a gdb that has gone (a step or a hit that raced its
            // disconnect): nothing to do with it but let the vCPU go on.
            log::debug!("vCPU {id}: {event:?} after gdb left; resumed");
            self.vm.machine.resume(id)?;
            return Ok(None);
        }
        // Without gdb, a run ends as it would without a gdb endpoint.
        self.stop_the_rest(inbox)?;
        let (id, event) = if event == VcpuEvent::Halted {
            let raced: Vec<_> = self.pending.drain(..).collect();
            match settle_halt(&mut self.vm.machine, &mut self.vcpus.halted, id, raced)? {
                AfterHalt::End(id, event) => (id, event),
                AfterHalt::GoOn => {
                    let halted = self.vcpus.halted.clone();
                    self.resume_all_but(&halted)?;
                    return Ok(None);
                }
            }
        } else {
            (id, event)
        };
        let end = report_event(&mut self.vm.machine, id, event.clone(), self.vm.caps)?;
        Ok(Some((end, Some(event))))
    }

    fn stop_for_good(&mut self, inbox: &SharedInbox) -> Result<(), TargetFault> {
        self.stop_the_rest(inbox)?;
        self.pending.clear();
        Ok(())
    }

    fn attach(&mut self, inbox: &SharedInbox) -> Result<(), TargetFault> {
        self.stop_the_rest(inbox)?;
        self.hold = false;
        Ok(())
    }

    fn detach(
        &mut self,
        how: Option<DisconnectReason>,
        inbox: &SharedInbox,
        stdio: bool,
    ) -> Result<Option<Ended>, TargetFault> {
        if let Some(end) = self.run_end.clone() {
            return Ok(Some((end, None)));
        }
        match how {
            Some(DisconnectReason::Kill) => {
                eprintln!("gdbvisor: gdb killed the VM");
                return Ok(Some((RunEnd::Killed, None)));
            }
            Some(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {
                return Ok(Some((RunEnd::Killed, None)));
            }
            Some(DisconnectReason::Disconnect) | None => {}
        }
        // gdb may leave while the guest runs (an abrupt disconnect): stop it before touching
        // the vCPUs, and let an end it reached meanwhile end the run.
        self.stop_the_rest(inbox)?;
        self.forget_debugging()?;
        // Only an event that ends a run ends it now; what was reported for gdb (a step's debug
        // exit, a breakpoint or watch hit) means nothing without it.
        let ending = self.pending.drain(..).find(|(_, event)| event.ends_run());
        if let Some((id, event)) = ending {
            let end = report_event(&mut self.vm.machine, id, event.clone(), self.vm.caps)?;
            return Ok(Some((end, Some(event))));
        }
        if stdio {
            // Nobody can attach again through stdin.
            eprintln!("gdbvisor: gdb went away from stdio; ending the VM");
            return Ok(Some((RunEnd::Killed, None)));
        }
        if self.hold {
            eprintln!(
                "gdbvisor: gdb detached; the guest stays stopped for the next gdb (monitor hold)"
            );
        } else {
            let running = if self.trace.as_ref().is_some_and(|t| t.on) {
                let running = self
                    .vcpus
                    .ids()
                    .filter(|&id| self.vcpus.is_alive(id))
                    .count();
                if let Some(ended) = self.resume_unattended()? {
                    return Ok(Some(ended));
                }
                running
            } else {
                self.resume_all()?
            };
            eprintln!(
                "gdbvisor: gdb detached; the guest runs on ({running} vCPU{})",
                if running == 1 { "" } else { "s" }
            );
        }
        Ok(None)
    }
}

impl RunControl for LiveVm {
    fn clear_actions(&mut self) {
        self.vcpus.clear_actions();
    }

    fn set_action(&mut self, id: Option<u8>, action: Action) {
        self.vcpus.set_action(id, action);
    }

    fn lock_scheduler(&mut self) {
        self.vcpus.lock_scheduler();
    }

    fn resume(&mut self, current: u8) -> Result<(), TargetFault> {
        self.handle_resume(current)
    }

    fn add_sw_breakpoint(&mut self, addr: u64) -> Result<bool, TargetFault> {
        let regs = self.core_at_stop(0)?.control_regs();
        let ram = &self.vm.ram;
        let mapped = translate(ram.as_ref(), &regs, addr, Access::DEBUGGER)
            .is_ok_and(|t| ram.contains(t.phys, 1));
        match self.debug.breakpoints.add_software(addr, mapped) {
            Ok(()) => Ok(true),
            Err(e) => {
                eprintln!(
                    "gdbvisor: cannot insert breakpoint at {addr:#x}: not mapped yet and {e}"
                );
                Ok(false)
            }
        }
    }

    fn remove_sw_breakpoint(&mut self, addr: u64) -> bool {
        self.debug.breakpoints.remove_software(addr)
    }

    fn add_hw_breakpoint(&mut self, addr: u64) -> bool {
        if self.debug.registers_full() {
            eprintln!(
                "gdbvisor: cannot insert hardware breakpoint at {addr:#x}: all 4 debug registers are in use"
            );
            return false;
        }
        match self.debug.breakpoints.add_hardware(addr) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("gdbvisor: cannot insert hardware breakpoint at {addr:#x}: {e}");
                false
            }
        }
    }

    fn remove_hw_breakpoint(&mut self, addr: u64) -> bool {
        self.debug.breakpoints.remove_hardware(addr)
    }

    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool {
        match kind {
            WatchKind::Write => {
                // Bounded before anything walks it: each watched page becomes a read-only
                // memory slot, and KVM has only so many (`Z2,…,ffffffffffffffff` used to walk
                // 2^52 pages on the event loop's thread).
                let limit = self.vm.slots.max_read_only_pages();
                let wanted = self.debug.watchpoints.pages_with(addr, len);
                if len == 0 || wanted > limit as u64 {
                    eprintln!(
                        "gdbvisor: cannot insert a watchpoint of {len:#x} bytes at {addr:#x}: watches would span {wanted} pages, and KVM's memory slots allow {limit} read-only pages"
                    );
                    return false;
                }
                self.debug.watchpoints.add(addr, len);
                true
            }
            WatchKind::Read | WatchKind::ReadWrite => {
                let refuse = |why: &str| {
                    eprintln!(
                        "gdbvisor: cannot insert a read/access watchpoint at {addr:#x}: {why}"
                    );
                    false
                };
                // Learned (a throwaway VM, ~30 ms) the first time gdb asks for an access
                // watchpoint: every vCPU is stopped while gdb inserts one, and runs that never
                // ask do not pay for it.
                if !self.vm.caps.has(Capability::DataBreakpoints) {
                    return refuse("this host's KVM never fires DR7 data breakpoints (see `gdbvisor doctor`); write watchpoints work");
                }
                if !matches!(len, 1 | 2 | 4 | 8) || !addr.is_multiple_of(len) {
                    return refuse("a debug register watches 1, 2, 4 or 8 aligned bytes");
                }
                if self.debug.registers_full() {
                    return refuse("all 4 debug registers are in use");
                }
                self.debug.data_watches.push(DataWatch {
                    addr,
                    len: len as u8,
                    kind,
                });
                true
            }
        }
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool {
        if kind == WatchKind::Write {
            return self.debug.watchpoints.remove(addr, len);
        }
        let watches = &mut self.debug.data_watches;
        let before = watches.len();
        watches.retain(|w| (w.addr, u64::from(w.len), w.kind) != (addr, len, kind));
        before != watches.len()
    }
}
