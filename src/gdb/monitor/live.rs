//! The monitor as a live VM answers it, and `dump`, which both a live VM and a snapshot answer.

use std::path::Path;
use std::sync::Arc;

use super::help::usage;
use super::{msr, Lines, MonitorError, MonitorHost};
use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::regs::CpuSnapshot;
use crate::gdb::target::{TargetFault, VmTarget};
use crate::snapshot::capture::read_pdptrs;
use crate::snapshot::write_core;
use crate::vmm::memory::GuestRam;

impl MonitorHost for VmTarget {
    fn vcpu_count(&self) -> usize {
        VmTarget::vcpu_count(self)
    }

    fn current_vcpu(&self) -> u8 {
        self.current
    }

    fn cpu_state(&mut self, id: u8) -> Result<CpuSnapshot, TargetFault> {
        Ok(self.snapshot(id)?.clone())
    }

    fn guest_ram(&self) -> Arc<GuestRam> {
        self.ram.clone()
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
        self.snapshot_all()?;
        Ok((0..VmTarget::vcpu_count(self) as u8)
            .map(|id| self.describe_thread(id))
            .collect())
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
                self.catch_mode = true;
                Ok(vec![
                    "stopping when a vCPU's CPU or paging mode changes (seen at the first exit after the switch: KVM does not exit on CR0/EFER writes)".into(),
                ])
            }
            ("catch", ["mode", "off"]) => {
                self.catch_mode = false;
                Ok(vec!["no longer stopping on mode changes".into()])
            }
            ("msr", _) => msr::msr(args, msr::from_kvm(self, vcpu)),
            ("dump", [_, ..]) => {
                let mut cpus = Vec::new();
                for id in 0..VmTarget::vcpu_count(self) as u8 {
                    let mut cpu = self.snapshot(id)?.clone();
                    cpu.pdptrs = self
                        .machine
                        .with_vcpu(id, |v| read_pdptrs(v.fd()))
                        .map_err(TargetFault::from)?;
                    cpus.push(cpu);
                }
                let ram = self.ram.clone();
                dump(args, &cpus, &ram)
            }
            _ => Err(usage(name)),
        }
    }
}

/// `dump FILE`: writes the vCPUs and RAM as a gdbvisor snapshot (a path may contain spaces).
pub fn dump(args: &[&str], cpus: &[CpuSnapshot], ram: &GuestRam) -> Lines {
    if args.is_empty() {
        return Err(usage("dump"));
    }
    let file = args.join(" ");
    let stats = write_core(Path::new(&file), cpus, ram)
        .map_err(|e| MonitorError::Failed(format!("{file}: {e}")))?;
    Ok(vec![format!(
        "saved {} vCPU{} and {stats} to {file}",
        cpus.len(),
        if cpus.len() == 1 { "" } else { "s" }
    )])
}
