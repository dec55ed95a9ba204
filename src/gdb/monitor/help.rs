//! The command table: names, arguments and one example each, for `help` and usage lines.

use super::host::MonitorError;

pub(crate) struct Command {
    pub(crate) name: &'static str,
    /// Bochs users' names for the same command.
    pub(crate) aliases: &'static [&'static str],
    pub(crate) args: &'static str,
    pub(crate) about: &'static str,
    pub(crate) example: &'static str,
}

const fn cmd(
    name: &'static str,
    aliases: &'static [&'static str],
    args: &'static str,
    about: &'static str,
    example: &'static str,
) -> Command {
    Command {
        name,
        aliases,
        args,
        about,
        example,
    }
}

pub(crate) const COMMANDS: &[Command] = &[
    cmd(
        "help",
        &[],
        "[COMMAND]",
        "list the commands, or one",
        "help walk",
    ),
    cmd(
        "cpu",
        &[],
        "N COMMAND",
        "run COMMAND on vCPU N instead of gdb's current thread",
        "cpu 1 mode",
    ),
    cmd("mode", &[], "", "CPU mode, paging mode, CPL, A20", "mode"),
    cmd(
        "cregs",
        &["creg"],
        "",
        "CR0, CR2, CR3, CR4, EFER decoded (uppercase = set); the MAXPHYADDR the walk uses",
        "cregs",
    ),
    cmd(
        "sregs",
        &["sreg"],
        "",
        "segment registers' hidden caches beside their table entries; GDTR IDTR LDTR TR",
        "sregs",
    ),
    cmd("dregs", &["dreg"], "", "DR0-DR3, DR6, DR7 decoded", "dregs"),
    cmd(
        "msr",
        &[],
        "INDEX",
        "one MSR through KVM_GET_MSRS (a snapshot: the MSRs it saved)",
        "msr 0xc0000080",
    ),
    cmd(
        "gdt",
        &[],
        "[FIRST [LAST]]",
        "GDT entries, by selector",
        "gdt 0x08 0x18",
    ),
    cmd(
        "ldt",
        &[],
        "",
        "LDT entries (the LDT that LDTR holds), by index",
        "ldt",
    ),
    cmd(
        "idt",
        &[],
        "[VECTOR]",
        "IDT gates (IVT entries in real mode)",
        "idt 0x0e",
    ),
    cmd(
        "tss",
        &[],
        "",
        "the task-state segment that TR holds",
        "tss",
    ),
    cmd(
        "walk",
        &[],
        "ADDR|SEG:OFF [r|w|x] [user]",
        "translate one address: segmentation, each paging level, result or #PF",
        "walk ds:0x10 w",
    ),
    cmd(
        "why",
        &[],
        "",
        "why the vCPU faults: the instruction at RIP, its accesses, then each delivery step to #DF and shutdown",
        "why",
    ),
    cmd(
        "pt",
        &[],
        "[START [END]] [--leaves]",
        "mapped linear ranges (or every leaf) with rights and physical targets",
        "pt 0 0x3fffffff",
    ),
    cmd(
        "p2v",
        &[],
        "PHYS",
        "every linear address that maps a physical address",
        "p2v 0xb8000",
    ),
    cmd(
        "xp",
        &[],
        "PHYS [LEN]",
        "physical hexdump (LEN default 64, at most 4096)",
        "xp 0x100000 32",
    ),
    cmd("vga", &[], "", "the 80x25 text screen at 0xb8000", "vga"),
    cmd(
        "screenshot",
        &[],
        "FILE.png",
        "write the framebuffer (a multiboot kernel's video mode) to FILE.png",
        "screenshot /tmp/screen.png",
    ),
    cmd(
        "phys",
        &[],
        "on|off",
        "gdb memory access by physical address (on) or linear (off)",
        "phys on",
    ),
    cmd(
        "catch",
        &[],
        "mode on|off | exception VEC|all [on|off]",
        "stop when the CPU or paging mode changes (Bochs modebp), checked at every VM exit; or before the handler of exception VEC runs",
        "catch exception 14",
    ),
    cmd(
        "trace",
        &[],
        "exceptions on|off",
        "trace every exception the guest takes (one line each on the VMM's stderr)",
        "trace exceptions on",
    ),
    cmd(
        "exceptions",
        &[],
        "[N]",
        "the last N (20) exceptions traced",
        "exceptions 5",
    ),
    cmd(
        "threads",
        &["cpus"],
        "",
        "each vCPU's mode, CPL and state",
        "threads",
    ),
    cmd(
        "sendkey",
        &[],
        "KEYS",
        "type KEYS on the guest's PS/2 keyboard when it runs on, a byte as it reads one (--keys syntax: \\n Enter, \\<up>, \\<ctrl-c>; words joined by one space)",
        "sendkey ls\\n",
    ),
    cmd(
        "hold",
        &[],
        "",
        "keep the guest stopped when gdb disconnects (for a reconnect)",
        "hold",
    ),
    cmd(
        "dump",
        &[],
        "FILE",
        "save the whole VM (RAM, every vCPU's registers) as an ELF core; open it with gdbvisor --snapshot FILE",
        "dump /tmp/guest.core",
    ),
    cmd(
        "arch",
        &[],
        "[mode|i8086|i386|x86-64]",
        "gdb architecture of vCPU 0's mode now, and of this session; with an argument, the description later gdb connections get (mode: that of the CPU's mode as they attach)",
        "arch mode",
    ),
];

pub(crate) fn find(name: &str) -> Option<&'static Command> {
    COMMANDS
        .iter()
        .find(|c| c.name == name || c.aliases.contains(&name))
}

impl Command {
    /// `walk ADDR|SEG:OFF [r|w|x] [user]`.
    fn synopsis(&self) -> String {
        if self.args.is_empty() {
            self.name.to_string()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }

    /// One help line: synopsis, what it does, aliases, an example.
    pub(crate) fn line(&self) -> String {
        let aliases = if self.aliases.is_empty() {
            String::new()
        } else {
            format!(" (alias {})", self.aliases.join(", "))
        };
        format!(
            "{:<32} {}{aliases}; e.g. monitor {}",
            self.synopsis(),
            self.about,
            self.example
        )
    }
}

/// The usage line of `name`: what a bad or missing argument prints.
pub(crate) fn usage(name: &str) -> MonitorError {
    let c = find(name).expect("usage() of a command in the table");
    MonitorError::Usage(format!(
        "usage: {}  (e.g. monitor {})",
        c.synopsis(),
        c.example
    ))
}

pub(crate) fn help(args: &[&str]) -> Result<Vec<String>, MonitorError> {
    match args {
        [] => Ok(COMMANDS.iter().map(Command::line).collect()),
        [name] => match find(name) {
            Some(c) => Ok(vec![c.line()]),
            None => Err(MonitorError::Failed(format!(
                "unknown monitor command '{name}'; try 'monitor help'"
            ))),
        },
        _ => Err(usage("help")),
    }
}
