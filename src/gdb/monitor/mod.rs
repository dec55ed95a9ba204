//! `monitor` commands: the x86 views gdb lacks, on the vCPU of gdb's current thread (or the one
//! a `cpu N` prefix names). One file per family; this one parses and dispatches.
//!
//! Every command produces whole lines (one item per line, stable for scripts); bad or missing
//! arguments produce the command's usage line, never a panic.

mod help;
pub(crate) mod live;
mod memory;
pub(crate) mod msr;
pub(crate) use live::dump;
mod pt;
mod regs;
mod tables;
mod view;
mod walk;

use std::sync::Arc;

use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};
use thiserror::Error;

use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::regs::CpuSnapshot;
use crate::gdb::target::{TargetFault, VmTarget};
use crate::vmm::memory::GuestRam;
use view::View;

/// Why a command printed no result.
#[derive(Debug, Error)]
pub enum MonitorError {
    /// Bad or missing arguments: the text is the command's usage line.
    #[error("{0}")]
    Usage(String),
    /// The command ran, but what was asked for does not exist or cannot be read.
    #[error("error: {0}")]
    Failed(String),
    /// The VMM could not answer at all (a vCPU is gone or stuck): gdb hears about it.
    #[error(transparent)]
    Target(#[from] TargetFault),
}

pub type Lines = Result<Vec<String>, MonitorError>;

/// Every command `monitor help` lists (the `cpu N` prefix among them), each with its aliases:
/// the docs test checks the monitor reference against it.
pub fn command_names() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    help::COMMANDS.iter().map(|c| (c.name, c.aliases))
}

/// What the monitor commands read and act on: a live VM ([`VmTarget`]) or a saved one
/// ([`crate::gdb::snapshot_target::SnapshotTarget`]). Every view (tables, walks, page tables,
/// memory) needs only a vCPU's state and guest RAM, so both serve the same commands.
pub trait MonitorHost {
    fn vcpu_count(&self) -> usize;
    /// The vCPU of gdb's current thread (commands act on it without a `cpu N` prefix).
    fn current_vcpu(&self) -> u8;
    /// vCPU `id`'s state at this stop.
    fn cpu_state(&mut self, id: u8) -> Result<CpuSnapshot, TargetFault>;
    fn guest_ram(&self) -> Arc<GuestRam>;
    /// The register description this gdb session is served.
    fn served_layout(&self) -> RegLayout;
    /// `arch mode|LAYOUT`: the description gdb connections get from now on.
    fn set_arch(&mut self, choice: ArchChoice);
    /// `phys on|off`: gdb's memory addresses are guest-physical (on) or linear.
    fn set_phys_mode(&mut self, on: bool);
    /// `threads`: one line per vCPU.
    fn thread_lines(&mut self) -> Result<Vec<String>, TargetFault>;
    /// The commands whose answer depends on what is behind the target: `hold`, `catch`, `msr`,
    /// `dump`.
    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines;
}

/// Parses `[cpu N] COMMAND ARGS…`, runs it, and prints its lines (or its error) to gdb.
pub fn handle_monitor<T: MonitorHost>(
    target: &mut T,
    cmd: &[u8],
    mut out: ConsoleOutput<'_>,
) -> Result<(), TargetFault> {
    let text = String::from_utf8_lossy(cmd);
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let count = target.vcpu_count();
    // `cpu N CMD…` runs CMD on vCPU N instead of gdb's current thread.
    let vcpu = match words.as_slice() {
        ["cpu", n, _, ..] => match view::parse_num(n) {
            Some(n) if n < count as u64 => {
                words.drain(..2);
                n as u8
            }
            _ => {
                gdbstub::outputln!(out, "usage: cpu N COMMAND (N from 0 to {})", count - 1);
                return Ok(());
            }
        },
        ["cpu", ..] => {
            gdbstub::outputln!(out, "usage: cpu N COMMAND (N from 0 to {})", count - 1);
            return Ok(());
        }
        _ => target.current_vcpu(),
    };
    let result = match words.split_first() {
        None => help::help(&[]),
        Some((name, args)) => run(target, vcpu, name, args),
    };
    match result {
        Ok(lines) => {
            for line in lines.iter().flat_map(|l| l.lines()) {
                gdbstub::outputln!(out, "{line}");
            }
        }
        Err(MonitorError::Target(fault)) => return Err(fault),
        Err(e) => gdbstub::outputln!(out, "{e}"),
    }
    Ok(())
}

impl MonitorCmd for VmTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        out: ConsoleOutput<'_>,
    ) -> Result<(), TargetFault> {
        handle_monitor(self, cmd, out)
    }
}

fn run<T: MonitorHost>(target: &mut T, vcpu: u8, name: &str, args: &[&str]) -> Lines {
    let no_args = |lines: Lines| -> Lines {
        if args.is_empty() {
            lines
        } else {
            Err(help::usage(name))
        }
    };
    match name {
        "help" => help::help(args),
        "hold" | "catch" | "msr" | "dump" => target.host_command(vcpu, name, args),
        "arch" => arch(target, args),
        "phys" => match args {
            ["on"] => {
                target.set_phys_mode(true);
                Ok(vec!["gdb memory addresses are guest-physical now".into()])
            }
            ["off"] => {
                target.set_phys_mode(false);
                Ok(vec![
                    "gdb memory addresses are linear (through the page tables) now".into(),
                ])
            }
            _ => Err(help::usage("phys")),
        },
        "threads" | "cpus" => no_args(Ok(target.thread_lines()?)),
        _ => {
            let Some(command) = help::find(name) else {
                return Err(MonitorError::Failed(format!(
                    "unknown monitor command '{name}'; try 'monitor help'"
                )));
            };
            let v = View::new(target, vcpu)?;
            match command.name {
                "mode" => no_args(Ok(vec![regs::mode(&v)])),
                "cregs" => no_args(Ok(regs::cregs(&v))),
                "sregs" => no_args(Ok(regs::sregs(&v))),
                "dregs" => no_args(Ok(regs::dregs(&v))),
                "gdt" => tables::gdt(&v, args),
                "ldt" => no_args(tables::ldt(&v)),
                "idt" => tables::idt(&v, args),
                "tss" => no_args(tables::tss(&v)),
                "walk" => walk::walk(&v, args),
                "pt" => pt::pt(&v, args),
                "p2v" => pt::p2v(&v, args),
                "xp" => memory::xp(&v, args),
                "vga" => no_args(memory::vga(&v)),
                other => Err(help::usage(other)),
            }
        }
    }
}

/// `arch`: the gdb architecture of vCPU 0's mode now and the one this session serves (the
/// helper reconnects when they differ); `arch mode|LAYOUT` sets what later connections get.
fn arch<T: MonitorHost>(target: &mut T, args: &[&str]) -> Lines {
    let now = target.cpu_state(0)?.layout();
    let served = target.served_layout();
    let (choice, what) = match args {
        [] => {
            return Ok(vec![format!(
                "{} {}",
                now.architecture(),
                served.architecture()
            )])
        }
        ["mode"] => (
            ArchChoice::Mode,
            format!(
                "the description of vCPU 0's mode as they attach ({} now)",
                now.name()
            ),
        ),
        [name] => match RegLayout::from_name(name) {
            Some(layout) => (ArchChoice::Fixed(layout), format!("the {name} description")),
            None => return Err(help::usage("arch")),
        },
        _ => return Err(help::usage("arch")),
    };
    target.set_arch(choice);
    Ok(vec![format!(
        "gdb connections from now on get {what}; this one keeps {}",
        served.name()
    )])
}
