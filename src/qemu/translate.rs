//! QEMU's options mapped onto gdbvisor's flags: the machine QEMU would run, as a gdbvisor
//! command line, with the warnings to print first. What gdbvisor cannot do is refused here,
//! before anything runs; the decisions are documented in docs/switching-from-qemu.md.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use clap::Parser;

use super::error::QemuArgsError;
use super::options::{key_values, QemuCommandLine, QemuOption};
use crate::cli::{parse_size, Cli};

/// A QEMU command line as gdbvisor runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// gdbvisor's own command line, program name first.
    pub argv: Vec<OsString>,
    /// One line each, for stderr before the run: what is accepted but differs from QEMU.
    pub warnings: Vec<String>,
}

impl Translation {
    /// The command line, parsed as gdbvisor's own.
    pub fn cli(&self) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(&self.argv)
    }

    /// The command line as a shell would take it, for `-- --print` style messages and docs.
    pub fn shell_line(&self) -> String {
        self.argv
            .iter()
            .map(|arg| {
                let text = arg.to_string_lossy();
                let plain = text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c));
                match plain && !text.is_empty() {
                    true => text.into_owned(),
                    false => format!("'{}'", text.replace('\'', r"'\''")),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An IDE drive from `-hda`, `-hdb` or `-drive`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drive {
    path: String,
    readonly: bool,
    snapshot: bool,
}

impl Drive {
    /// gdbvisor's `--hda` value: FILE[,readonly=on|snapshot=on].
    fn spec(&self, all_snapshot: bool) -> String {
        let mut spec = self.path.clone();
        if self.readonly {
            spec.push_str(",readonly=on");
        } else if self.snapshot || all_snapshot {
            spec.push_str(",snapshot=on");
        }
        spec
    }
}

/// The machine a QEMU command line describes, gathered option by option.
#[derive(Debug, Default)]
struct Machine {
    kernel: Option<String>,
    initrd: Option<String>,
    append: Option<String>,
    cdrom: Option<String>,
    /// Primary master and slave.
    disks: [Option<Drive>; 2],
    /// `-drive if=ide` seen: the guest sees an IDE controller.
    ide_given: bool,
    memory: Option<String>,
    cpus: Option<u32>,
    gdb: Option<String>,
    gdb_default: bool,
    wait: bool,
    serial: Option<String>,
    serial_stdio: bool,
    debugcon: Option<String>,
    no_shutdown: bool,
    trace_int: bool,
    log_file: Option<String>,
    /// A window QEMU would open (its default without -display none or -nographic).
    window: Option<bool>,
    nographic: bool,
    q35: bool,
    boot_order: Option<String>,
    snapshot: bool,
}

/// Maps a QEMU command line onto gdbvisor's: refused flags are errors; warnings say what is
/// accepted but works differently.
pub fn translate(line: &QemuCommandLine) -> Result<Translation, QemuArgsError> {
    let mut machine = Machine::default();
    let mut warnings = Vec::new();
    for option in &line.options {
        machine.take(option, &mut warnings)?;
    }
    let mut argv = vec![OsString::from("gdbvisor")];
    machine.emit(&mut argv, &mut warnings)?;
    argv.extend(line.gdbvisor_flags.iter().cloned());
    Ok(Translation { argv, warnings })
}

/// A character-device target of `-serial` or `-debugcon` as gdbvisor's sink.
fn sink(option: &QemuOption) -> Result<String, QemuArgsError> {
    let value = option.value();
    match value {
        "stdio" | "mon:stdio" => Ok("stdout".into()),
        "null" | "none" => Ok("null".into()),
        // QEMU's graphical console: gdbvisor has no window, the terminal stands in for it.
        v if v == "vc" || v.starts_with("vc:") => Ok("stdout".into()),
        v => match v.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(format!("file:{path}")),
            _ => Err(QemuArgsError::bad_value(
                option.flag(),
                value,
                "gdbvisor writes to stdio, file:PATH or null (no pty, socket or chardev)",
            )),
        },
    }
}

const FIRMWARE: &str = "gdbvisor has no firmware: it boots -kernel (multiboot 1/2, Linux, PVH, ELF64) or the kernel -cdrom's GRUB or Limine configuration names, directly";

impl Machine {
    /// Takes one option into the machine.
    fn take(
        &mut self,
        option: &QemuOption,
        warnings: &mut Vec<String>,
    ) -> Result<(), QemuArgsError> {
        let value = option.value();
        let flag = option.flag();
        match option.name.as_str() {
            "kernel" => self.kernel = Some(value.into()),
            "initrd" if value.contains(",,") => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "a module string with a comma (QEMU's ,,) cannot be given to gdbvisor: drop the comma",
                ))
            }
            "initrd" => self.initrd = Some(value.into()),
            "append" => self.append = Some(value.into()),
            "cdrom" => self.cdrom = Some(value.into()),
            "hda" | "hdb" => {
                let index = usize::from(option.name == "hdb");
                self.disks[index] = Some(Drive {
                    path: value.into(),
                    readonly: false,
                    snapshot: false,
                });
            }
            "drive" => self.drive(option)?,
            "snapshot" => self.snapshot = true,
            "m" => {
                let size = key_values(value, "size")
                    .into_iter()
                    .find(|(key, _)| key == "size")
                    .map(|(_, size)| size)
                    .unwrap_or_default();
                parse_size(&size)
                    .map_err(|e| QemuArgsError::bad_value(&flag, value, e.to_string()))?;
                self.memory = Some(size);
            }
            "smp" => self.cpus = Some(smp(option)?),
            "s" => self.gdb_default = true,
            "S" => self.wait = true,
            "gdb" => {
                // QEMU's chardev options (`,server=on,wait=off`) mean what gdbvisor does anyway.
                let endpoint = value.split(',').next().unwrap_or_default();
                match endpoint {
                    "none" => self.gdb = None,
                    e if e == "stdio" || e.starts_with("tcp:") || e.starts_with("unix:") => {
                        self.gdb = Some(e.into())
                    }
                    _ => {
                        return Err(QemuArgsError::bad_value(
                            flag,
                            value,
                            "gdbvisor serves gdb on tcp::PORT, tcp:HOST:PORT, unix:PATH or stdio",
                        ))
                    }
                }
            }
            "serial" => {
                if self.serial.is_some() {
                    if value == "null" || value == "none" {
                        return Ok(());
                    }
                    return Err(QemuArgsError::unsupported(
                        format!("{flag} {value}"),
                        "a second -serial is COM2: gdbvisor has COM1 only",
                    ));
                }
                self.serial_stdio = value == "stdio" || value == "mon:stdio";
                self.serial = Some(sink(option)?);
            }
            "debugcon" => self.debugcon = Some(sink(option)?),
            "device" => device(option)?,
            "no-reboot" | "enable-kvm" | "name" | "rtc" | "k" | "no-acpi" | "no-hpet"
            | "full-screen" | "no-fd-bootchk" | "no-user-config" | "nodefaults" | "alt-grab"
            | "ctrl-grab" | "no-quit" | "msg" | "overcommit" | "accel" | "win2k-hack" => {}
            "no-shutdown" => self.no_shutdown = true,
            "d" => {
                for item in value.split(',') {
                    match item {
                        "int" => self.trace_int = true,
                        // The triple fault's explanation is printed anyway.
                        "cpu_reset" | "guest_errors" | "unimp" => {}
                        other => {
                            return Err(QemuArgsError::unsupported(
                                format!("-d {other}"),
                                "gdbvisor logs int (--trace-exceptions), and explains a triple fault; for the rest step the guest in gdb (-s -S)",
                            ))
                        }
                    }
                }
            }
            "D" => self.log_file = Some(value.into()),
            "display" => {
                let kind = value.split(',').next().unwrap_or_default();
                match kind {
                    "none" => self.window = Some(false),
                    "gtk" | "sdl" | "curses" | "cocoa" | "egl-headless" | "dbus" | "spice-app"
                    | "vnc" | "default" => {
                        self.window = Some(true);
                        warnings.push(no_window(&format!("{flag} {kind}")));
                    }
                    _ => {
                        return Err(QemuArgsError::bad_value(
                            flag,
                            value,
                            "gdbvisor takes -display none (or gtk, sdl, curses: no window)",
                        ))
                    }
                }
            }
            "sdl" | "curses" | "vnc" => {
                self.window = Some(true);
                warnings.push(no_window(&flag));
            }
            "nographic" => {
                self.nographic = true;
                self.window = Some(false);
            }
            "vga" => match value {
                "std" | "none" => {}
                other => warnings.push(format!(
                    "-vga {other}: gdbvisor has no VGA model; text written to 0xB8000 stays in RAM (the framebuffer of docs/framebuffer.md is what it shows)"
                )),
            },
            "monitor" => match value {
                "none" | "null" => {}
                other => warnings.push(format!(
                    "-monitor {other}: gdbvisor has no QEMU monitor: gdb's `monitor` commands do its work (docs/monitor.md)"
                )),
            },
            "machine" | "M" => self.machine(option)?,
            "cpu" => {
                let mut items = key_values(value, "model").into_iter();
                let model = items.next().map(|(_, model)| model).unwrap_or_default();
                let silent = ["host", "max", "qemu64", "qemu32", "kvm64", "kvm32", "base"];
                if !silent.contains(&model.as_str()) || items.next().is_some() {
                    warnings.push(format!(
                        "-cpu {value}: the guest sees this host's CPU; --cpuid-hide LIST (after --) hides features"
                    ));
                }
            }
            "boot" => {
                for (key, order) in key_values(value, "order") {
                    if key == "order" || key == "once" {
                        self.boot_order = Some(order);
                    }
                }
            }
            "net" | "nic" if value == "none" => {}
            "parallel" if value == "none" || value == "null" => {}
            "net" | "nic" | "netdev" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor has no network device: drop it (or -net none)",
                ))
            }
            "hdc" | "hdd" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor's secondary IDE channel holds -cdrom's CD-ROM only: use -hda or -hdb",
                ))
            }
            "fda" | "fdb" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor has no floppy controller: use a raw disk image with -hda, or an ISO with -cdrom",
                ))
            }
            "bios" | "L" | "pflash" | "option-rom" => {
                return Err(QemuArgsError::unsupported(flag, FIRMWARE))
            }
            "usb" | "usbdevice" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor has no USB: its keyboard is the PS/2 one of the i8042",
                ))
            }
            "chardev" | "mon" | "qmp" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor has no chardevs or QMP: use -serial/-debugcon stdio|file:PATH|null, and gdb's monitor commands",
                ))
            }
            "h" | "help" | "version" => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "give it alone: gdbvisor qemu -help",
                ))
            }
            _ => {
                return Err(QemuArgsError::unsupported(
                    flag,
                    "gdbvisor does not do this (docs/switching-from-qemu.md lists what it takes)",
                ))
            }
        }
        Ok(())
    }

    /// `-drive file=…,format=raw[,if=ide][,index=N][,media=disk|cdrom][,readonly=on][,snapshot=on]`.
    fn drive(&mut self, option: &QemuOption) -> Result<(), QemuArgsError> {
        let value = option.value();
        let refuse = |why: &str| QemuArgsError::unsupported(format!("-drive {value}"), why);
        let mut file = None;
        let mut index = None;
        let mut cdrom = false;
        let mut drive = Drive {
            path: String::new(),
            readonly: false,
            snapshot: false,
        };
        for (key, item) in key_values(value, "file") {
            match (key.as_str(), item.as_str()) {
                ("file", path) => file = Some(path.to_string()),
                ("format", "raw") => {}
                ("format", _) => {
                    return Err(refuse(
                        "gdbvisor reads raw images only: convert with `qemu-img convert -O raw IMAGE disk.img`",
                    ))
                }
                ("if", "ide") => self.ide_given = true,
                ("if", "pflash") => return Err(refuse(FIRMWARE)),
                ("if", _) => return Err(refuse("gdbvisor's disks are IDE: use if=ide (or no if=)")),
                ("index", n) => {
                    index = Some(n.parse::<usize>().ok().filter(|n| *n <= 2).ok_or_else(|| {
                        refuse("index= is 0 or 1 (primary master, slave), or 2 (the CD-ROM)")
                    })?)
                }
                ("media", "disk") => {}
                ("media", "cdrom") => cdrom = true,
                ("media", _) => return Err(refuse("media= is disk or cdrom")),
                ("readonly", "on" | "true") => drive.readonly = true,
                ("snapshot", "on" | "true") => drive.snapshot = true,
                ("readonly" | "snapshot", "off" | "false") => {}
                // Host-side caching choices change nothing the guest sees.
                ("cache" | "aio" | "discard" | "detect-zeroes" | "id" | "werror" | "rerror", _) => {}
                _ => {
                    return Err(refuse(
                        "gdbvisor takes file=, format=raw, if=ide, index=, media=, readonly=on, snapshot=on",
                    ))
                }
            }
        }
        let Some(path) = file else {
            return Err(refuse("give file=IMAGE"));
        };
        if cdrom || index == Some(2) {
            self.cdrom = Some(path);
            return Ok(());
        }
        drive.path = path;
        let slot = match index {
            Some(slot) => slot,
            None => self
                .disks
                .iter()
                .position(Option::is_none)
                .ok_or_else(|| refuse("gdbvisor has two IDE disks (index=0 and 1)"))?,
        };
        self.disks[slot] = Some(drive);
        Ok(())
    }

    /// `-machine TYPE[,accel=…,…]`: gdbvisor's machine is a PC whatever the type; only what the
    /// guest would see differently matters (q35's AHCI disks).
    fn machine(&mut self, option: &QemuOption) -> Result<(), QemuArgsError> {
        let value = option.value();
        for (key, item) in key_values(value, "type") {
            if key != "type" {
                continue;
            }
            match item.as_str() {
                "pc" | "isapc" | "microvm" => {}
                t if t.starts_with("pc-i440fx") => {}
                t if t == "q35" || t.starts_with("pc-q35") => self.q35 = true,
                _ => {
                    return Err(QemuArgsError::bad_value(
                        option.flag(),
                        value,
                        "gdbvisor's machine is a PC: use -M pc (or q35, microvm)",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Writes gdbvisor's flags for the machine.
    fn emit(
        &self,
        argv: &mut Vec<OsString>,
        warnings: &mut Vec<String>,
    ) -> Result<(), QemuArgsError> {
        let mut out: Vec<String> = Vec::new();
        let any_disk = self.disks.iter().any(Option::is_some);
        if self.q35 && (any_disk || self.ide_given) {
            return Err(QemuArgsError::unsupported(
                "-M q35 with -hda/-drive",
                "q35 puts disks on AHCI, which gdbvisor does not have: use -M pc (its IDE channels are gdbvisor's)",
            ));
        }
        for (name, given) in [("-append", &self.append), ("-initrd", &self.initrd)] {
            if given.is_some() && self.kernel.is_none() {
                return Err(QemuArgsError::unsupported(
                    name,
                    "only allowed with -kernel (QEMU refuses it too)",
                ));
            }
        }
        for (drive, name) in self.disks.iter().zip(["hda", "hdb"]) {
            if let Some(drive) = drive {
                check_raw(&drive.path, name)?;
            }
        }
        let boot = self.boot_disk()?;
        match (&self.kernel, &boot) {
            (Some(kernel), _) => {
                out.push(format!("--kernel={kernel}"));
                if let Some(initrd) = &self.initrd {
                    out.push(format!("--initrd={initrd}"));
                }
                if let Some(append) = &self.append {
                    out.push(format!("--append={append}"));
                }
                if let Some(iso) = &self.cdrom {
                    out.push(format!("--ide-cdrom={iso}"));
                }
            }
            (None, Some(BootFrom::Cdrom(iso))) => out.push(format!("--cdrom={iso}")),
            (None, Some(BootFrom::Disk(path))) => {
                // No BIOS to read the boot sector: the image runs as a flat binary at 0x7C00.
                out.push(format!("--kernel={path}"));
                out.push("--format=flat".into());
                if let Some(iso) = &self.cdrom {
                    out.push(format!("--ide-cdrom={iso}"));
                }
            }
            (None, None) => {
                return Err(QemuArgsError::NothingToBoot(
                    "nothing to boot: give -kernel FILE, -cdrom FILE.iso (GRUB or Limine), or -hda IMAGE whose first sector is a boot sector (0x55AA at 510)".into(),
                ))
            }
        }
        for (drive, name) in self.disks.iter().zip(["hda", "hdb"]) {
            if let Some(drive) = drive {
                out.push(format!("--{name}={}", drive.spec(self.snapshot)));
            }
        }
        if let Some(memory) = &self.memory {
            out.push(format!("--memory={memory}"));
        }
        if let Some(cpus) = self.cpus {
            out.push(format!("--cpus={cpus}"));
        }
        match (&self.gdb, self.gdb_default) {
            (Some(_), true) => {
                return Err(QemuArgsError::unsupported(
                    "-s with -gdb",
                    "gdbvisor serves one gdb endpoint: give -s (tcp::1234) or -gdb ENDPOINT",
                ))
            }
            (Some(endpoint), false) => out.push(format!("--gdb={endpoint}")),
            (None, true) => out.push("-s".into()),
            (None, false) => {}
        }
        if self.wait {
            out.push("-S".into());
        }
        out.push(format!(
            "--serial={}",
            self.serial.as_deref().unwrap_or("stdout")
        ));
        // Without -debugcon, QEMU has nothing at port 0xE9: writes there go nowhere.
        out.push(format!(
            "--debugcon={}",
            self.debugcon.as_deref().unwrap_or("null")
        ));
        if self.trace_int {
            out.push(match &self.log_file {
                Some(file) => format!("--trace-exceptions={file}"),
                None => "--trace-exceptions".into(),
            });
        }
        if self.no_shutdown && self.gdb.is_none() && !self.gdb_default {
            warnings.push("-no-shutdown without -s or -gdb: a triple fault ends the run (status 4, explained); add -s to keep the VM for gdb".into());
        }
        // QEMU's window takes the keys when the terminal is not the serial console.
        let window = self.window.unwrap_or(!self.nographic);
        if window && !self.serial_stdio {
            out.push("--stdin=keyboard".into());
        }
        argv.extend(out.into_iter().map(OsString::from));
        Ok(())
    }

    /// What QEMU's boot order boots when there is no -kernel: the first of its drive letters
    /// (default "cad") that names a bootable drive, as SeaBIOS skips a disk without a boot
    /// signature.
    fn boot_disk(&self) -> Result<Option<BootFrom>, QemuArgsError> {
        let order = self.boot_order.as_deref().unwrap_or("cad");
        for letter in order.chars() {
            match letter {
                'c' => {
                    if let Some(disk) = &self.disks[0] {
                        if has_boot_signature(&disk.path)? {
                            return Ok(Some(BootFrom::Disk(disk.path.clone())));
                        }
                    }
                }
                'd' => {
                    if let Some(iso) = &self.cdrom {
                        return Ok(Some(BootFrom::Cdrom(iso.clone())));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// Where a run without -kernel boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BootFrom {
    /// A disk image's boot sector (the image runs as a flat binary).
    Disk(String),
    /// An ISO's GRUB or Limine configuration.
    Cdrom(String),
}

/// The warning for a QEMU display: gdbvisor has no window.
fn no_window(flag: &str) -> String {
    format!("{flag}: gdbvisor has no window; the run goes on without one (--screenshot FILE.png after -- saves the framebuffer when it ends)")
}

/// `-smp N[,cpus=N][,sockets=S,cores=C,threads=T,dies=D][,maxcpus=M]`: the vCPUs at start.
fn smp(option: &QemuOption) -> Result<u32, QemuArgsError> {
    let value = option.value();
    let bad = || {
        QemuArgsError::bad_value(
            option.flag(),
            value,
            "give a number of CPUs, as in -smp 2 or -smp cpus=2,cores=2",
        )
    };
    let mut cpus = None;
    let mut topology = 1u32;
    let mut has_topology = false;
    for (key, number) in key_values(value, "cpus") {
        let n: u32 = number.parse().map_err(|_| bad())?;
        match key.as_str() {
            "cpus" => cpus = Some(n),
            "sockets" | "cores" | "threads" | "dies" | "clusters" | "books" | "drawers" => {
                has_topology = true;
                topology = topology.checked_mul(n).ok_or_else(bad)?;
            }
            "maxcpus" => {}
            _ => return Err(bad()),
        }
    }
    let cpus = cpus.unwrap_or(if has_topology { topology } else { 1 });
    match cpus {
        0 => Err(bad()),
        n => Ok(n),
    }
}

/// `-device`: only isa-debug-exit at gdbvisor's port, which is always there.
fn device(option: &QemuOption) -> Result<(), QemuArgsError> {
    let value = option.value();
    let mut items = key_values(value, "driver").into_iter();
    let driver = items.next().map(|(_, d)| d).unwrap_or_default();
    if driver != "isa-debug-exit" {
        let instead = match driver.as_str() {
            "isa-debugcon" => "use -debugcon stdio|file:PATH|null (port 0xE9)",
            _ => "gdbvisor has no such device model (its devices: docs/devices.md)",
        };
        return Err(QemuArgsError::unsupported(
            format!("-device {driver}"),
            instead,
        ));
    }
    // QEMU's own default iobase is 0x501; gdbvisor's exit port is 0xF4.
    let mut iobase = None;
    for (key, item) in items {
        match key.as_str() {
            "iobase" => iobase = Some(item),
            "iosize" | "id" => {}
            _ => {
                return Err(QemuArgsError::unsupported(
                    format!("-device {value}"),
                    "gdbvisor's isa-debug-exit takes iobase=0xf4,iosize=0x04 only",
                ))
            }
        }
    }
    match iobase.as_deref().and_then(|base| crate::cli::parse_address(base).ok()) {
        Some(0xf4) => Ok(()),
        _ => Err(QemuArgsError::unsupported(
            format!("-device {value}"),
            "gdbvisor's isa-debug-exit is at port 0xf4: use -device isa-debug-exit,iobase=0xf4,iosize=0x04",
        )),
    }
}

/// Reads up to 512 bytes of a disk image.
fn first_sector(path: &str) -> Result<Vec<u8>, QemuArgsError> {
    let failed = |e: std::io::Error| QemuArgsError::Image {
        path: PathBuf::from(path),
        message: e.to_string(),
    };
    let mut sector = Vec::with_capacity(512);
    File::open(path)
        .map_err(failed)?
        .take(512)
        .read_to_end(&mut sector)
        .map_err(failed)?;
    Ok(sector)
}

/// Whether a disk image's first sector ends with the boot signature 0x55AA.
fn has_boot_signature(path: &str) -> Result<bool, QemuArgsError> {
    let sector = first_sector(path)?;
    Ok(sector.len() == 512 && sector[510..] == [0x55, 0xAA])
}

/// Refuses images QEMU would read through a format driver (qcow2, VDI, VMDK, VHDX): gdbvisor
/// reads raw sectors.
fn check_raw(path: &str, name: &str) -> Result<(), QemuArgsError> {
    let sector = first_sector(path)?;
    let formats: [(&[u8], &str); 4] = [
        (b"QFI\xfb", "qcow2"),
        (b"<<< ", "VDI"),
        (b"KDMV", "VMDK"),
        (b"vhdxfile", "VHDX"),
    ];
    match formats.iter().find(|(magic, _)| sector.starts_with(magic)) {
        Some((_, format)) => Err(QemuArgsError::unsupported(
            format!("-{name} {path}"),
            format!("a {format} image: gdbvisor reads raw images only: convert it with `qemu-img convert -O raw {path} disk.img`"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
