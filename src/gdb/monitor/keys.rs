//! `sendkey KEYS`: types into the live guest's PS/2 keyboard (the `--keys` syntax).

use super::host::{Lines, MonitorError};
use crate::devices::scancode::parse_keys;
use crate::vmm::machine::Machine;

/// Queues the keys of `args` (joined by single spaces); the guest reads them when it runs.
pub(crate) fn sendkey(machine: &mut Machine, vcpu: u8, args: &[&str]) -> Lines {
    let text = args.join(" ");
    let codes = parse_keys(&text).map_err(|e| MonitorError::Failed(e.to_string()))?;
    let keyboard = machine
        .with_vcpu(vcpu, |v| v.keyboard.clone())
        .map_err(|e| MonitorError::Target(e.into()))?
        .ok_or_else(|| MonitorError::Failed("this VM has no keyboard".into()))?;
    keyboard.type_codes(&codes);
    Ok(vec![format!(
        "{} scan-code bytes queued; the guest reads them when it runs on",
        codes.len()
    )])
}
