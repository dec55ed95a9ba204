//! `msr INDEX`: one model-specific register, read by the vCPU's own thread with KVM_GET_MSRS
//! on a live VM, or from the state a snapshot saved.

use super::help::usage;
use super::host::{Lines, MonitorError};
use super::view::parse_num;
use crate::snapshot::CpuSnapshot;
use crate::vmm::machine::Machine;

/// Where an MSR's value comes from: `Ok(Err(why))` when it cannot be read.
pub(crate) type MsrSource<'a> =
    Box<dyn FnOnce(u32) -> Result<Result<u64, String>, MonitorError> + 'a>;

pub(crate) fn msr(args: &[&str], read: MsrSource<'_>) -> Lines {
    let [index] = args else {
        return Err(usage("msr"));
    };
    let index = parse_num(index)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| usage("msr"))?;
    match read(index)? {
        Ok(value) => Ok(vec![format!("MSR {index:#x} = {value:#018x}")]),
        Err(why) => Err(MonitorError::Failed(format!(
            "MSR {index:#x} cannot be read: {why}"
        ))),
    }
}

/// Reads through KVM_GET_MSRS on vCPU `vcpu`'s thread.
pub(crate) fn from_kvm(machine: &mut Machine, vcpu: u8) -> MsrSource<'_> {
    Box::new(move |index| {
        machine
            .with_vcpu(vcpu, move |v| match v.kvm().msr(index) {
                Ok(Some(value)) => Ok(value),
                Ok(None) => Err("KVM does not expose it (unknown or not readable)".to_string()),
                Err(e) => Err(e.to_string()),
            })
            .map_err(|e| MonitorError::Target(e.into()))
    })
}

/// The MSRs a snapshot holds (as registers it saved).
pub(crate) fn from_saved(cpu: CpuSnapshot) -> MsrSource<'static> {
    Box::new(move |index| {
        Ok(match index {
            0x1b => Ok(cpu.sregs.apic_base),
            0xc000_0080 => Ok(cpu.sregs.efer),
            0xc000_0100 => Ok(cpu.sregs.fs.base),
            0xc000_0101 => Ok(cpu.sregs.gs.base),
            0xc000_0102 => Ok(cpu.kernel_gs_base),
            _ => Err("a snapshot holds only IA32_APIC_BASE (0x1b), EFER (0xc0000080), FS_BASE, GS_BASE and KERNEL_GS_BASE (0xc0000100-0xc0000102)".to_string()),
        })
    })
}
