//! `msr INDEX`: one model-specific register, read by the vCPU's own thread with KVM_GET_MSRS.

use kvm_bindings::{kvm_msr_entry, Msrs};

use super::help::usage;
use super::view::parse_num;
use super::{Lines, MonitorError};
use crate::gdb::target::VmTarget;

pub fn msr(target: &mut VmTarget, vcpu: u8, args: &[&str]) -> Lines {
    let [index] = args else {
        return Err(usage("msr"));
    };
    let index = parse_num(index)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| usage("msr"))?;
    let read = target
        .machine
        .with_vcpu(vcpu, move |v| {
            let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
                index,
                ..Default::default()
            }])
            .expect("one MSR entry fits");
            // KVM_GET_MSRS answers how many entries it filled: 0 means it refused the first.
            match v.fd().get_msrs(&mut msrs) {
                Ok(1) => Ok(msrs.as_slice()[0].data),
                Ok(_) => Err("KVM does not expose it (unknown or not readable)".to_string()),
                Err(e) => Err(format!("KVM_GET_MSRS failed: {e}")),
            }
        })
        .map_err(|e| MonitorError::Target(e.into()))?;
    match read {
        Ok(value) => Ok(vec![format!("MSR {index:#x} = {value:#018x}")]),
        Err(why) => Err(MonitorError::Failed(format!(
            "MSR {index:#x} cannot be read: {why}"
        ))),
    }
}
