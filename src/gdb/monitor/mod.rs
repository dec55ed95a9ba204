//! `monitor` commands: the x86 views gdb lacks, on the vCPU of gdb's current thread (or the one
//! a `cpu N` prefix names). One file per family; `dispatch` parses and dispatches, `host`
//! says what the commands read.
//!
//! Every command produces whole lines (one item per line, stable for scripts); bad or missing
//! arguments produce the command's usage line, never a panic.

mod dispatch;
mod dump;
mod help;
mod host;
pub(crate) mod keys;
mod memory;
pub(crate) mod msr;
mod pt;
mod regs;
mod screenshot;
mod tables;
mod view;
mod walk;
pub(crate) mod why;

pub(crate) use dispatch::handle_monitor;
pub(crate) use dump::dump;
pub(crate) use help::usage;
pub(crate) use host::{Lines, MonitorError, MonitorHost};

/// Every command `monitor help` lists (the `cpu N` prefix among them), each with its aliases:
/// the docs test checks the monitor reference against it.
pub fn command_names() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    help::COMMANDS.iter().map(|c| (c.name, c.aliases))
}
