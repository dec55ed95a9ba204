//! Parsing and dispatch: `[cpu N] COMMAND ARGS…` to the command's family.

use gdbstub::target::ext::monitor_cmd::ConsoleOutput;

use super::host::{Lines, MonitorError, MonitorHost};
use super::view::{self, View};
use super::{help, memory, pt, regs, screenshot, tables, walk, why};
use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::fault::TargetFault;

/// Parses `[cpu N] COMMAND ARGS…`, runs it, and prints its lines (or its error) to gdb.
pub(crate) fn handle_monitor<T: MonitorHost>(
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
        "hold" | "catch" | "msr" | "dump" | "trace" | "exceptions" | "sendkey" => {
            target.host_command(vcpu, name, args)
        }
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
        // Needs guest memory only, not a vCPU's state.
        "screenshot" => screenshot::screenshot(&target.guest_ram(), args),
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
                "why" => no_args(why::why(&v)),
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
    let now = RegLayout::from_mode(target.cpu_state(0)?.mode());
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
