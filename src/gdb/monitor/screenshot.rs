//! `screenshot FILE.png`: the framebuffer as a PNG, at any stop.

use std::path::Path;

use super::help::usage;
use super::host::{Lines, MonitorError};
use crate::vmm::memory::GuestRam;
use crate::vmm::screenshot;

/// Writes the framebuffer to FILE (a path may contain spaces): "wrote FILE: WxH".
pub(crate) fn screenshot(ram: &GuestRam, args: &[&str]) -> Lines {
    if args.is_empty() {
        return Err(usage("screenshot"));
    }
    let file = args.join(" ");
    screenshot::take(ram, Path::new(&file))
        .map(|line| vec![line])
        .map_err(|e| MonitorError::Failed(e.to_string()))
}
