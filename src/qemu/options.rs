//! QEMU's argument syntax: `-flag`, `--flag` (QEMU takes both), `-flag value` and `-flag=value`;
//! option values as `key=value,key=value` lists with `,,` for a literal comma.

use std::ffi::OsString;

use super::error::QemuArgsError;

/// The flags that take a value, by QEMU's name. A flag in neither list is unknown: it is
/// refused before anything runs, since whether it takes a value cannot be known.
const WITH_VALUE: &[&str] = &[
    "kernel",
    "initrd",
    "append",
    "cdrom",
    "hda",
    "hdb",
    "hdc",
    "hdd",
    "fda",
    "fdb",
    "drive",
    "m",
    "smp",
    "gdb",
    "serial",
    "debugcon",
    "device",
    "d",
    "D",
    "display",
    "vga",
    "monitor",
    "machine",
    "M",
    "cpu",
    "accel",
    "boot",
    "name",
    "rtc",
    "k",
    "net",
    "netdev",
    "nic",
    "bios",
    "L",
    "pflash",
    "chardev",
    "usbdevice",
    "audiodev",
    "soundhw",
    "object",
    "global",
    "parallel",
    "qmp",
    "mon",
    "numa",
    "smbios",
    "fw_cfg",
    "mem-path",
    "incoming",
    "loadvm",
    "option-rom",
    "icount",
    "trace",
    "readconfig",
    "pidfile",
    "blockdev",
    "virtfs",
    "fsdev",
    "sandbox",
    "watchdog-action",
    "action",
    "overcommit",
    "msg",
    "compat",
    "plugin",
    "semihosting-config",
    "spice",
    "vnc",
    "iscsi",
    "tpmdev",
    "add-fd",
    "set",
    "runas",
    "chroot",
    "g",
    "dtb",
];

/// The flags that take no value.
const WITHOUT_VALUE: &[&str] = &[
    "s",
    "S",
    "nographic",
    "no-reboot",
    "no-shutdown",
    "enable-kvm",
    "snapshot",
    "no-acpi",
    "no-hpet",
    "full-screen",
    "daemonize",
    "usb",
    "nodefaults",
    "no-user-config",
    "no-fd-bootchk",
    "curses",
    "sdl",
    "alt-grab",
    "ctrl-grab",
    "win2k-hack",
    "no-quit",
    "enable-sync-profile",
    "preconfig",
    "h",
    "help",
    "version",
];

/// One option of a QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOption {
    /// The flag's name without dashes (`kernel`, `M`).
    pub name: String,
    /// Its value, for flags that take one.
    pub value: Option<String>,
}

impl QemuOption {
    /// The flag as QEMU's documentation spells it, for messages.
    pub fn flag(&self) -> String {
        format!("-{}", self.name)
    }

    /// The value (flags that take one always have it after [`parse`]).
    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or_default()
    }
}

/// A QEMU command line split into options, and the gdbvisor flags given after `--`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuCommandLine {
    /// QEMU's options, in order.
    pub options: Vec<QemuOption>,
    /// Everything after a lone `--`: gdbvisor's own flags (`-- --keys 'hello\n'`).
    pub gdbvisor_flags: Vec<OsString>,
}

/// Splits QEMU's arguments into options. A bare argument (QEMU's disk image as the first
/// positional) is read as `-hda`, as QEMU does.
pub fn parse(args: &[OsString]) -> Result<QemuCommandLine, QemuArgsError> {
    let mut line = QemuCommandLine::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            line.gdbvisor_flags = rest.cloned().collect();
            break;
        }
        let text = arg
            .to_str()
            .ok_or_else(|| QemuArgsError::NotUtf8(arg.clone()))?;
        let Some(flag) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            line.options.push(QemuOption {
                name: "hda".into(),
                value: Some(text.to_string()),
            });
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) if WITH_VALUE.contains(&name) => (name, Some(value)),
            _ => (flag, None),
        };
        let value = if WITH_VALUE.contains(&name) {
            match inline {
                Some(value) => Some(value.to_string()),
                None => Some(
                    rest.next()
                        .ok_or_else(|| QemuArgsError::MissingValue(format!("-{name}")))?
                        .to_str()
                        .ok_or_else(|| QemuArgsError::NotUtf8(arg.clone()))?
                        .to_string(),
                ),
            }
        } else if WITHOUT_VALUE.contains(&name) {
            None
        } else {
            return Err(QemuArgsError::Unknown(text.to_string()));
        };
        line.options.push(QemuOption {
            name: name.to_string(),
            value,
        });
    }
    Ok(line)
}

/// A `key=value,key,…` option list as QEMU writes it (`-drive`, `-machine`, `-smp`): the first
/// item may be a bare value (`-machine q35,accel=kvm`), returned under the key `implied`;
/// `,,` is a literal comma.
pub fn key_values(text: &str, implied: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                current.push(',');
            }
            ',' => items.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    items.push(current);
    items
        .into_iter()
        .enumerate()
        .filter(|(_, item)| !item.is_empty())
        .map(|(i, item)| match item.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None if i == 0 => (implied.to_string(), item),
            // A bare later item is a boolean switch (QEMU's `,readonly`).
            None => (item, "on".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_and_double_dashes_and_inline_values() {
        let line = parse(&args(&[
            "-kernel", "k.elf", "--m=512M", "-s", "--S", "disk.img", "--", "--keys", "hi",
        ]))
        .unwrap();
        let names: Vec<_> = line
            .options
            .iter()
            .map(|o| (o.name.as_str(), o.value.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("kernel", Some("k.elf")),
                ("m", Some("512M")),
                ("s", None),
                ("S", None),
                ("hda", Some("disk.img")),
            ]
        );
        assert_eq!(line.gdbvisor_flags, args(&["--keys", "hi"]));
    }

    #[test]
    fn unknown_flags_and_missing_values_are_refused() {
        assert_eq!(
            parse(&args(&["-frobnicate"])),
            Err(QemuArgsError::Unknown("-frobnicate".into()))
        );
        assert_eq!(
            parse(&args(&["-kernel"])),
            Err(QemuArgsError::MissingValue("-kernel".into()))
        );
        // `=` splits only a flag that takes a value.
        assert!(parse(&args(&["-s=1"])).is_err());
    }

    #[test]
    fn key_value_lists() {
        assert_eq!(
            key_values("q35,accel=kvm,,tcg,usb", "type"),
            [
                ("type".into(), "q35".into()),
                ("accel".into(), "kvm,tcg".into()),
                ("usb".into(), "on".into())
            ]
        );
        assert_eq!(
            key_values("file=a,,b.img,format=raw", "file"),
            [
                ("file".into(), "a,b.img".into()),
                ("format".into(), "raw".into())
            ]
        );
    }
}
