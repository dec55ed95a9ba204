//! Command-line interface: flags named for QEMU users where QEMU has one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Parser, Subcommand};
use thiserror::Error;

use crate::boot::framebuffer::Framebuffer;
use crate::boot::BootFormat;
use crate::devices::ata::config::{DriveSpec, IdeConfig};
use crate::devices::scancode::{parse_keys, KeyError};
use crate::devices::sink::SinkSpec;
use crate::gdb::arch::{ArchChoice, RegLayout};
use crate::gdb::conn::GdbEndpoint;
pub use crate::host_input::StdinTarget;
use crate::vmm::clock_dilation::ClockDilation;
use crate::vmm::cpuid::CpuidHide;

/// A command-line value that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CliError {
    /// Not a size.
    #[error("'{0}' is not a size: use a number of MiB or a K/M/G suffix, as in 128M or 1G")]
    Size(String),
    /// Not an address.
    #[error("'{0}' is not an address: use hex (0x7c00) or decimal")]
    Address(String),
    /// Not a vector list.
    #[error("'{0}' is not a list of vectors: use numbers and ranges, as in 0-31,0x80")]
    Vectors(String),
    /// `-S` without a gdb endpoint.
    #[error("-S/--wait holds the guest for gdb: give a gdb endpoint too (-s or --gdb ENDPOINT)")]
    WaitWithoutGdb,
    /// Not a MAXPHYADDR.
    #[error("'{0}' is not a MAXPHYADDR: give the guest's physical-address width in bits, 32 to 52 (QEMU's phys-bits)")]
    MaxPhyAddr(String),
    /// `--cdrom` with a flag that names what the ISO's boot entry names.
    #[error("--cdrom boots the kernel its boot configuration names: drop {0} (--entry picks another entry; `gdbvisor iso ls ISO` shows the files)")]
    CdromWith(&'static str),
    /// `--entry` without `--cdrom`.
    #[error("--entry picks an entry of an ISO's boot menu: give --cdrom FILE.iso too")]
    EntryWithoutCdrom,
}

const EXAMPLES: &str = "\
Examples:
  gdbvisor                                   boot the built-in demo kernel
  gdbvisor --kernel build/kernel.elf         boot a multiboot1 or ELF64 kernel
  gdbvisor --kernel boot.bin --format flat   run a raw binary in real mode at 0000:7C00
  gdbvisor --kernel k.elf -m 256M --append 'debug' --initrd 'mod1 arg=1,mod2'
  gdbvisor --kernel k.elf -s -S              wait for gdb on 127.0.0.1:1234 (then: gdb k.elf -ex 'target remote :1234')
  gdbvisor --cdrom os.iso                    boot what the ISO's grub.cfg or limine.conf names
  gdbvisor --cdrom os.iso --entry 1 -s -S    its second entry, for gdb (gdbvisor iso extract os.iso /boot/kernel.bin)
  gdb k.elf -ex 'target remote | gdbvisor --kernel k.elf --gdb stdio -S'
  gdbvisor doctor                            show what this host's KVM can do
  gdbvisor qemu -kernel k.elf -serial stdio -s -S   QEMU's command line (docs/switching-from-qemu.md)

Exit status: 0 guest halted (or reset), 2 bad input, 4 triple fault, 6 KVM failure,
8 real-mode interrupt through an empty IVT vector (no BIOS), 130 Ctrl-C; an isa-debug-exit
write of v gives (v << 1) | 1.";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "gdbvisor", version, about = "A KVM hypervisor for kernel developers, built around a gdb stub", after_help = EXAMPLES)]
pub struct Cli {
    /// A subcommand, if any; none runs a kernel.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of a run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// gdbvisor's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the built-in demo kernel (16-bit real → 32-bit protected → 64-bit long mode).
    Demo {
        /// Write the demo kernel's ELF (with symbols, for gdb) to this file and exit.
        #[arg(long, value_name = "FILE")]
        write_elf: Option<PathBuf>,
    },
    /// Probe this host's KVM with a throwaway VM and report what it can do.
    Doctor,
    /// Run a QEMU command line: gdbvisor qemu -kernel k.elf -s -S (`gdbvisor qemu -help`).
    ///
    /// `qemu` must be the first argument. gdbvisor run as `qemu-system-x86_64` or
    /// `qemu-system-i386` (`gdbvisor qemu --install-shims DIR`) does the same;
    /// docs/switching-from-qemu.md lists the flags.
    Qemu {
        /// QEMU's arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "QEMU ARGUMENTS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Read an ISO 9660 image: list it, or write out one of its files (the kernel, for gdb).
    Iso {
        /// What to do with the image.
        #[command(subcommand)]
        command: IsoCommand,
    },
}

/// `gdbvisor iso` subcommands.
#[derive(Debug, Subcommand)]
pub enum IsoCommand {
    /// Write a file of the image out, as `gdb` wants the kernel's ELF.
    Extract {
        /// The ISO image.
        iso: PathBuf,
        /// The file's path in the image, as its boot configuration names it.
        path: String,
        /// Where to write it: `-` is stdout (default: its base name in the current directory).
        #[arg(short = 'o', long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// List a directory of the image (default: its root).
    Ls {
        /// The ISO image.
        iso: PathBuf,
        /// The directory's path in the image.
        dir: Option<String>,
    },
}

/// The flags that say what to run and how.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kernel image: Linux bzImage, PVH ELF (Linux vmlinux), multiboot1 or multiboot2 (ELF or
    /// address tags), Limine protocol (ELF64 with requests), ELF64, or a flat binary; see
    /// --format for how it is detected.
    #[arg(short = 'k', long, value_name = "FILE", global = true)]
    pub kernel: Option<PathBuf>,
    /// Boot an ISO 9660 image as GRUB or Limine would, without running them: the kernel,
    /// command line and modules that its boot/grub/grub.cfg (or limine.conf, limine.cfg) names.
    #[arg(
        long,
        value_name = "FILE.iso",
        conflicts_with = "snapshot",
        global = true
    )]
    pub cdrom: Option<PathBuf>,
    /// With --cdrom: the boot menu entry, by title or number from 0 (default: the
    /// configuration's default).
    #[arg(long, value_name = "NAME|N", global = true)]
    pub entry: Option<String>,
    /// Force the boot format instead of detecting it.
    #[arg(long, value_enum, global = true)]
    pub format: Option<BootFormat>,
    /// Kernel command line (QEMU: -append). With --cdrom: appended to the entry's command line.
    #[arg(long, visible_alias = "append", default_value = "", global = true)]
    pub cmdline: String,
    /// Initial ramdisk (Linux, PVH) or multiboot modules, comma-separated; each item is
    /// "FILE [ARGS]" and the whole item is a module's string. Linux gets the files concatenated
    /// as one initrd (QEMU: -initrd).
    #[arg(long, value_name = "LIST", global = true)]
    pub initrd: Option<String>,
    /// Guest RAM: a bare number is MiB, or use K/M/G (QEMU: -m).
    #[arg(short = 'm', long, default_value = "128M", value_parser = parse_size, global = true)]
    pub memory: u64,
    /// Number of vCPUs; the first runs, the others wait for INIT/SIPI (QEMU: -smp).
    #[arg(long, visible_alias = "smp", default_value_t = 1, global = true)]
    pub cpus: u32,
    /// Where a flat binary is loaded and entered (real mode).
    #[arg(long, default_value = "0x7c00", value_parser = parse_address, global = true)]
    pub load_addr: u64,
    /// Slide a position-independent Limine kernel by a random 2 MiB multiple (KASLR); off by
    /// default, so addresses are the same at every run.
    #[arg(long, global = true)]
    pub kaslr: bool,
    /// COM1 output: stdout, stderr, null or file:PATH.
    #[arg(long, default_value = "stdout", global = true)]
    pub serial: SinkSpec,
    /// Port 0xE9 debug console output: stdout, stderr, null or file:PATH.
    #[arg(long, default_value = "stdout", global = true)]
    pub debugcon: SinkSpec,
    /// Serve gdb: tcp:[HOST:]PORT (host defaults to 127.0.0.1; port 0 picks a free one),
    /// unix:PATH (mode 0600) or stdio (for `target remote | gdbvisor …`).
    #[arg(long, value_name = "ENDPOINT", global = true)]
    pub(crate) gdb: Option<GdbEndpoint>,
    /// Shorthand for --gdb tcp:127.0.0.1:1234 (QEMU: -s).
    #[arg(short = 's', global = true)]
    pub(crate) gdb_default_port: bool,
    /// Hold the guest before its first instruction until gdb attaches (QEMU: -S).
    #[arg(short = 'S', long, global = true)]
    pub wait: bool,
    /// CPUID features to hide from the guest: a comma-separated list (cx16, xsave, avx, x2apic,
    /// tsc-deadline, rdrand, rdseed, pcid, pdpe1gb, la57, hypervisor), `none`, or `auto`: for
    /// Linux and PVH kernels, what this host's KVM offers but cannot execute (on software-nested
    /// KVM: cx16,xsave; Linux also gets `noxsave`); other kernels keep KVM's CPUID.
    #[arg(long, value_name = "LIST", default_value = "auto", global = true)]
    pub cpuid_hide: CpuidHide,
    /// Linux and PVH kernels: tell the guest its TSC runs N times faster than it does
    /// (`tsc_early_khz=`, and `no-kvmclock` so that every guest clock follows the TSC): its
    /// clock and timer ticks run N times slower than real time.
    /// `auto`: 10 on a software-nested host, where each tick costs about a tick period of
    /// emulated instructions; 1 (off) elsewhere.
    #[arg(long, value_name = "N", default_value = "auto", global = true)]
    pub clock_dilation: ClockDilation,
    /// Register description served to gdb. `auto`: that of the file gdb loads, i.e. the
    /// kernel's ELF class (ELF64: x86-64, ELF32: i386), a bzImage's vmlinux (x86-64), or the
    /// entry mode of an image without ELF header (flat: i8086). `mode`: that of the CPU's mode
    /// when gdb attaches.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub gdb_arch: GdbArch,
    /// On a triple fault, KVM failure or no-BIOS stop (or an isa-debug-exit status other than
    /// --expect-exit), save the VM to DIR/gdbvisor-<pid>-<reason>.core before exiting.
    #[arg(long, value_name = "DIR", global = true)]
    pub dump_on_crash: Option<PathBuf>,
    /// When the run ends, whatever ended it (the guest's isa-debug-exit, i8042 reset, halt or
    /// triple fault, a KVM failure, gdb's `kill`, Ctrl-C), save the VM to FILE as `monitor dump`
    /// does, with or without gdb attached.
    #[arg(long, value_name = "FILE", conflicts_with = "snapshot", global = true)]
    pub dump_at_exit: Option<PathBuf>,
    /// The exit status the guest's isa-debug-exit should give; with --dump-on-crash, another
    /// status saves the VM too. Exit statuses do not change.
    #[arg(long, value_name = "N", global = true)]
    pub expect_exit: Option<i32>,
    /// Write one line per exception the guest takes (vCPU, vector, error code, faulting
    /// instruction, CR2, handler) to FILE, or stderr without one. Breakpoints at the IDT's
    /// handler entries find them; exceptions taken before gdbvisor sees the IDT are missed.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        conflicts_with = "snapshot",
        global = true
    )]
    pub trace_exceptions: Option<Option<PathBuf>>,
    /// The vectors --trace-exceptions traces: numbers and ranges, decimal or hex.
    #[arg(long, value_name = "LIST", default_value = "0-31", global = true)]
    pub trace_vectors: VectorList,
    /// Open a saved VM (gdbvisor's `monitor dump`/--dump-on-crash, or QEMU dump-guest-memory)
    /// instead of booting: serve it to gdb with --gdb, or print its registers.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernel", "initrd"], global = true)]
    pub snapshot: Option<PathBuf>,
    /// With --snapshot: the guest's MAXPHYADDR (physical-address width, 32 to 52; QEMU:
    /// phys-bits), which decides the reserved bits of page-table entries. Replaces what the
    /// file records; files that record none (QEMU dumps, older snapshots) get 40.
    // `requires` alone lets `--kernel` through: clap waives a requirement that conflicts.
    #[arg(long, value_name = "N", value_parser = parse_maxphyaddr, requires = "snapshot", conflicts_with = "kernel", global = true)]
    pub maxphyaddr: Option<u8>,
    /// The framebuffer's size, WIDTHxHEIGHT, for a kernel that asks for one (multiboot1 header
    /// flag bit 2, multiboot2 framebuffer tag) instead of the size it asks; 32 bits per pixel.
    #[arg(long, value_name = "WxH", value_parser = Framebuffer::parse, conflicts_with = "snapshot", global = true)]
    pub framebuffer: Option<Framebuffer>,
    /// When the run ends, whatever ended it, write the framebuffer to FILE as a PNG.
    #[arg(
        long,
        value_name = "FILE.png",
        conflicts_with = "snapshot",
        global = true
    )]
    pub screenshot: Option<PathBuf>,
    /// Disks and keyboard.
    #[command(flatten)]
    pub devices: DeviceArgs,
}

/// The flags of the IDE drives and the keyboard (docs/devices.md).
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// IDE primary master: a raw disk image, FILE[,readonly=on|snapshot=on]; writes reach
    /// the file unless readonly=on (refused) or snapshot=on (kept in memory) (QEMU: -hda).
    #[arg(long, value_name = "FILE[,OPTS]", global = true)]
    pub hda: Option<DriveSpec>,
    /// IDE primary slave, as --hda (QEMU: -hdb).
    #[arg(long, value_name = "FILE[,OPTS]", global = true)]
    pub hdb: Option<DriveSpec>,
    /// An ISO file as the ATAPI CD-ROM on the secondary IDE channel, without booting from it
    /// (QEMU: -cdrom beside -kernel); --cdrom boots from its ISO and attaches it so too.
    #[arg(long, value_name = "FILE.iso", conflicts_with = "cdrom", global = true)]
    pub ide_cdrom: Option<PathBuf>,
    /// Type these keys into the guest's PS/2 keyboard, one byte at a time as the guest reads
    /// them: text on a US layout, \n Enter, \t Tab, \b Backspace, \e Escape, \\ a
    /// backslash, \<NAME> other keys and combinations (\<up>, \<f1>, \<ctrl-c>).
    #[arg(long, value_name = "TEXT", value_parser = parse_keys_arg, global = true)]
    pub keys: Option<KeyCodes>,
    /// Where keys typed on a terminal go: `serial` (COM1's receive side, the default) or
    /// `keyboard` (the PS/2 keyboard; the terminal is then in non-canonical mode, Ctrl-C
    /// still stops gdbvisor). Stdin that is not a terminal is never read.
    #[arg(long, value_enum, default_value = "serial", global = true)]
    pub stdin: StdinTarget,
}

impl DeviceArgs {
    /// The IDE drives these flags ask for; `boot_cdrom` is the ISO `--cdrom` boots from, which
    /// is the CD-ROM too, as under QEMU.
    pub fn ide(&self, boot_cdrom: Option<&Path>) -> IdeConfig {
        IdeConfig {
            hda: self.hda.clone(),
            hdb: self.hdb.clone(),
            cdrom: boot_cdrom
                .map(Path::to_path_buf)
                .or_else(|| self.ide_cdrom.clone()),
        }
    }
}

/// Scan codes parsed from `--keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCodes(pub Vec<u8>);

fn parse_keys_arg(text: &str) -> Result<KeyCodes, KeyError> {
    parse_keys(text).map(KeyCodes)
}

/// `--gdb-arch` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GdbArch {
    /// That of the file gdb loads.
    Auto,
    /// That of the CPU's mode when gdb attaches.
    Mode,
    /// gdb's i8086: 16-bit registers.
    I8086,
    /// gdb's i386: 32-bit registers.
    I386,
    /// gdb's i386:x86-64: 64-bit registers.
    #[value(name = "x86-64")]
    X86_64,
}

impl GdbArch {
    /// What the gdb session serves for this choice.
    pub fn choice(self) -> ArchChoice {
        match self {
            GdbArch::Auto => ArchChoice::Kernel,
            GdbArch::Mode => ArchChoice::Mode,
            GdbArch::I8086 => ArchChoice::Fixed(RegLayout::I8086),
            GdbArch::I386 => ArchChoice::Fixed(RegLayout::I386),
            GdbArch::X86_64 => ArchChoice::Fixed(RegLayout::X86_64),
        }
    }
}

impl RunArgs {
    /// `--cdrom` takes the kernel, its modules and format from the ISO's boot entry: flags that
    /// name them too are usage errors, as is `--entry` without an ISO.
    pub fn check_cdrom(&self) -> Result<(), CliError> {
        if self.cdrom.is_none() {
            return match self.entry {
                Some(_) => Err(CliError::EntryWithoutCdrom),
                None => Ok(()),
            };
        }
        let named = [
            (self.kernel.is_some(), "--kernel"),
            (
                self.initrd.is_some(),
                "--initrd (the entry's module and initrd lines name them)",
            ),
            (
                self.format.is_some(),
                "--format (the entry's protocol decides it)",
            ),
        ];
        match named.iter().find(|(given, _)| *given) {
            Some(&(_, flag)) => Err(CliError::CdromWith(flag)),
            None => Ok(()),
        }
    }

    /// The gdb endpoint, from --gdb or -s; `-S` without one is a usage error.
    pub fn gdb_endpoint(&self) -> Result<Option<GdbEndpoint>, CliError> {
        let endpoint = match (&self.gdb, self.gdb_default_port) {
            (Some(endpoint), _) => Some(endpoint.clone()),
            (None, true) => Some(GdbEndpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 1234,
            }),
            (None, false) => None,
        };
        if self.wait && endpoint.is_none() {
            return Err(CliError::WaitWithoutGdb);
        }
        Ok(endpoint)
    }
}

/// Parses `128`, `128M`, `512K`, `2G` (binary units; a bare number is MiB, as in QEMU).
pub(crate) fn parse_size(text: &str) -> Result<u64, CliError> {
    let bad = || CliError::Size(text.to_string());
    let trimmed = text.trim();
    let (digits, shift) = match trimmed.char_indices().last() {
        Some((i, 'K' | 'k')) => (&trimmed[..i], 10),
        Some((i, 'M' | 'm')) => (&trimmed[..i], 20),
        Some((i, 'G' | 'g')) => (&trimmed[..i], 30),
        _ => (trimmed, 20),
    };
    let value: u64 = digits.parse().map_err(|_| bad())?;
    value.checked_mul(1 << shift).ok_or_else(bad)
}

/// Parses a MAXPHYADDR: decimal bits, 32 to 52 (what x86 CPUs report).
pub(crate) fn parse_maxphyaddr(text: &str) -> Result<u8, CliError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|bits| (32..=52).contains(bits))
        .ok_or_else(|| CliError::MaxPhyAddr(text.to_string()))
}

/// Parses `0x7c00` or `31744`.
/// A set of interrupt vectors, as `0-31,0x80` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorList(pub BTreeSet<u8>);

impl FromStr for VectorList {
    type Err = CliError;

    fn from_str(text: &str) -> Result<Self, CliError> {
        let bad = || CliError::Vectors(text.to_string());
        let number = |s: &str| -> Result<u8, CliError> {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u8::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .map_err(|_| bad())
        };
        let mut set = BTreeSet::new();
        for item in text.split(',') {
            match item.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (number(low)?, number(high)?);
                    if low > high {
                        return Err(bad());
                    }
                    set.extend(low..=high);
                }
                None => {
                    set.insert(number(item)?);
                }
            }
        }
        Ok(VectorList(set))
    }
}

pub(crate) fn parse_address(text: &str) -> Result<u64, CliError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| CliError::Address(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_qemu() {
        assert_eq!(parse_size("128"), Ok(128 << 20));
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn vector_lists_take_ranges_in_hex_or_decimal() {
        let list: VectorList = "0-3,0x80, 14".parse().unwrap();
        assert_eq!(list.0, [0, 1, 2, 3, 14, 0x80].into());
        for bad in ["", "3-1", "256", "x", "0-"] {
            assert!(bad.parse::<VectorList>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_take_hex_or_decimal() {
        assert_eq!(parse_address("0x7c00"), Ok(0x7c00));
        assert_eq!(parse_address("31744"), Ok(0x7c00));
        assert!(parse_address("0xzz").is_err());
    }

    #[test]
    fn gdb_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().run.gdb_endpoint();
        assert_eq!(parse(&["g"]), Ok(None));
        assert_eq!(
            parse(&["g", "-s", "-S"]),
            Ok(Some(GdbEndpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 1234
            }))
        );
        assert_eq!(
            parse(&["g", "--gdb", "stdio"]),
            Ok(Some(GdbEndpoint::Stdio))
        );
        assert_eq!(parse(&["g", "-S"]), Err(CliError::WaitWithoutGdb));
    }

    #[test]
    fn snapshot_with_kernel_is_a_usage_error() {
        let err = Cli::try_parse_from(["g", "--snapshot", "s.core", "--kernel", "k"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let cli = Cli::try_parse_from(["g", "--snapshot", "s.core", "--gdb", "stdio"]).unwrap();
        assert_eq!(cli.run.snapshot, Some(PathBuf::from("s.core")));
    }

    #[test]
    fn maxphyaddr_is_32_to_52_and_needs_a_snapshot() {
        assert_eq!(parse_maxphyaddr("40"), Ok(40));
        assert_eq!(parse_maxphyaddr("52"), Ok(52));
        assert_eq!(parse_maxphyaddr("32"), Ok(32));
        for bad in ["31", "53", "0x30", "-1", "", "999", "forty"] {
            assert_eq!(
                parse_maxphyaddr(bad),
                Err(CliError::MaxPhyAddr(bad.into())),
                "{bad:?}"
            );
        }
        let cli = Cli::try_parse_from(["g", "--snapshot", "s.core", "--maxphyaddr", "36"]).unwrap();
        assert_eq!(cli.run.maxphyaddr, Some(36));
        let err = Cli::try_parse_from(["g", "--snapshot", "s.core", "--maxphyaddr", "60"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'60' is not a MAXPHYADDR") && err.contains("32 to 52"),
            "{err}"
        );
        let err = Cli::try_parse_from(["g", "--maxphyaddr", "40"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = Cli::try_parse_from(["g", "--kernel", "k", "--maxphyaddr", "40"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn device_flags() {
        let cli = Cli::try_parse_from([
            "g",
            "--hda",
            "a.img",
            "--hdb",
            "b.img,snapshot=on",
            "--keys",
            "Hi\\n",
            "--stdin",
            "keyboard",
        ])
        .unwrap();
        let ide = cli.run.devices.ide(None);
        assert_eq!(ide.hda.unwrap().path, PathBuf::from("a.img"));
        assert_eq!(
            ide.hdb.unwrap().mode,
            crate::devices::ata::image::WriteMode::Snapshot
        );
        assert_eq!(
            cli.run.devices.keys,
            Some(KeyCodes(vec![
                0x2A, 0x23, 0xA3, 0xAA, 0x17, 0x97, 0x1C, 0x9C
            ]))
        );
        assert_eq!(cli.run.devices.stdin, StdinTarget::Keyboard);
        let err = Cli::try_parse_from(["g", "--hda", "a.img,cache=none"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("readonly=on|snapshot=on"), "{err}");
        let err = Cli::try_parse_from(["g", "--keys", "\\<nokey>"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key name 'nokey'"), "{err}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
