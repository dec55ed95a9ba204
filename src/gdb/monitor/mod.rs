//! `monitor` commands: the x86 views gdb lacks, on the vCPU of gdb's current thread (or the one
//! a `cpu N` prefix names). One file per family; this one parses and dispatches.
//!
//! Every command produces whole lines (one item per line, stable for scripts); bad or missing
//! arguments produce the command's usage line, never a panic.

mod help;
mod memory;
mod msr;
mod pt;
mod regs;
mod tables;
mod view;
mod walk;

use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};
use thiserror::Error;

use crate::gdb::target::{TargetFault, VmTarget};
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

type Lines = Result<Vec<String>, MonitorError>;

impl MonitorCmd for VmTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), TargetFault> {
        let text = String::from_utf8_lossy(cmd);
        let mut words: Vec<&str> = text.split_whitespace().collect();
        // `cpu N CMD…` runs CMD on vCPU N instead of gdb's current thread.
        let vcpu = match words.as_slice() {
            ["cpu", n, _, ..] => match view::parse_num(n) {
                Some(n) if n < self.vcpu_count() as u64 => {
                    words.drain(..2);
                    n as u8
                }
                _ => {
                    gdbstub::outputln!(
                        out,
                        "usage: cpu N COMMAND (N from 0 to {})",
                        self.vcpu_count() - 1
                    );
                    return Ok(());
                }
            },
            ["cpu", ..] => {
                gdbstub::outputln!(
                    out,
                    "usage: cpu N COMMAND (N from 0 to {})",
                    self.vcpu_count() - 1
                );
                return Ok(());
            }
            _ => self.current,
        };
        let result = match words.split_first() {
            None => help::help(&[]),
            Some((name, args)) => self.run(vcpu, name, args),
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
}

impl VmTarget {
    fn run(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        let no_args = |lines: Lines| -> Lines {
            if args.is_empty() {
                lines
            } else {
                Err(help::usage(name))
            }
        };
        match name {
            "help" => help::help(args),
            "hold" => {
                self.hold = true;
                no_args(Ok(vec![
                    "the guest stays stopped when this gdb disconnects".into(),
                ]))
            }
            "arch" => {
                // What gdb should `set architecture` to for the mode vCPU 0 is in now, and
                // what this session serves (the helper reconnects when they differ).
                let now = self.snapshot(0)?.layout();
                no_args(Ok(vec![format!(
                    "{} {}",
                    now.architecture(),
                    self.layout.architecture()
                )]))
            }
            "phys" => match args {
                ["on"] => {
                    self.phys_mode = true;
                    Ok(vec!["gdb memory addresses are guest-physical now".into()])
                }
                ["off"] => {
                    self.phys_mode = false;
                    Ok(vec![
                        "gdb memory addresses are linear (through the page tables) now".into(),
                    ])
                }
                _ => Err(help::usage("phys")),
            },
            "catch" => match args {
                ["mode", "on"] => {
                    self.catch_mode = true;
                    Ok(vec![
                        "stopping when a vCPU's CPU or paging mode changes (seen at the first exit after the switch: KVM does not exit on CR0/EFER writes)".into(),
                    ])
                }
                ["mode", "off"] => {
                    self.catch_mode = false;
                    Ok(vec!["no longer stopping on mode changes".into()])
                }
                _ => Err(help::usage("catch")),
            },
            "threads" | "cpus" => {
                self.snapshot_all()?;
                no_args(Ok((0..self.vcpu_count() as u8)
                    .map(|id| self.describe_thread(id))
                    .collect()))
            }
            "msr" => msr::msr(self, vcpu, args),
            _ => {
                let Some(command) = help::find(name) else {
                    return Err(MonitorError::Failed(format!(
                        "unknown monitor command '{name}'; try 'monitor help'"
                    )));
                };
                let v = View::new(self, vcpu)?;
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
}
