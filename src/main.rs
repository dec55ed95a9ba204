//! gdbvisor's command line: parse, boot, run, and map how the guest ended to an exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;

use gdbvisor::boot::BootParams;
use gdbvisor::cli::{Cli, Command, IsoCommand};
use gdbvisor::demo;
use gdbvisor::devices::sink::SinkSpec;
use gdbvisor::gdb::conn::GdbEndpoint;
use gdbvisor::gdb::session::GdbOptions;
use gdbvisor::iso::boot_entry::{CdromBoot, CdromError};
use gdbvisor::iso::fs::IsoFs;
use gdbvisor::relay;
use gdbvisor::runner::{self, status, DeviceRequest, ExceptionTraceRequest, RunRequest};
use gdbvisor::snapshot::post_mortem::PostMortem;
use gdbvisor::vmm::doctor;
use gdbvisor::vmm::host_caps::HostCaps;

fn main() -> ExitCode {
    // The caller waits for this process; the host's teardown of the VM happens after it ends.
    // Forked first of all: every page written both before the fork and in the worker after it
    // is one more (copy-on-write) fault, ~1 ms in all on a nested host when clap had run.
    let relay = relay::split();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let relay = relay
        .map_err(|e| log::warn!("{e}; gdbvisor's exit waits for the VM's teardown"))
        .ok();
    let code = match parse() {
        Ok(cli) => run(cli).unwrap_or_else(|(message, code)| {
            eprintln!("gdbvisor: {message}");
            code
        }),
        Err(code) => code,
    };
    if let Some(relay) = relay {
        relay.finish(code);
    }
    exit(code)
}

/// The command line, or the status to end with (0 after `--help` and `--version`).
fn parse() -> Result<Cli, i32> {
    // `gdbvisor qemu …` and the qemu-system-* shims: QEMU's flags, never clap's reading of them.
    match gdbvisor::qemu::entry::invocation(std::env::args_os()) {
        Some(qemu_args) => gdbvisor::qemu::entry::command_line(&qemu_args),
        None => Cli::try_parse().map_err(|e| {
            let _ = e.print();
            if e.use_stderr() {
                status::BAD_INPUT
            } else {
                0
            }
        }),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code as u8)
}

fn run(cli: Cli) -> Result<i32, (String, i32)> {
    let args = cli.run;
    if let Some(path) = &args.snapshot {
        let gdb = args
            .gdb_endpoint()
            .map_err(|e| (e.to_string(), status::BAD_INPUT))?
            .map(|endpoint| GdbOptions {
                endpoint,
                wait: false,
                arch: args.gdb_arch.choice(),
                post_mortem: PostMortem::default(),
            });
        return runner::open_snapshot(path, gdb, args.maxphyaddr)
            .map_err(|e| (e.to_string(), e.status()));
    }
    args.check_cdrom()
        .map_err(|e| (e.to_string(), status::BAD_INPUT))?;
    let (name, image, gdb_elf, cdrom) = match (cli.command, &args.kernel) {
        (Some(Command::Iso { command }), _) => return iso_command(command),
        (Some(Command::Qemu { .. }), _) => {
            return Err((
                "`qemu` comes first: gdbvisor qemu [QEMU ARGUMENTS]".into(),
                status::BAD_INPUT,
            ))
        }
        (Some(Command::Doctor), _) => {
            return match doctor::examine(HostCaps::of_this_host()) {
                Ok(report) => {
                    println!("{report}");
                    Ok(0)
                }
                Err(e) => Err((e.to_string(), status::KVM_FAILURE)),
            };
        }
        (
            Some(Command::Demo {
                write_elf: Some(path),
            }),
            _,
        ) => {
            std::fs::write(&path, demo::ELF)
                .map_err(|e| (format!("{}: {e}", path.display()), status::BAD_INPUT))?;
            return Ok(0);
        }
        (Some(Command::Demo { .. }), kernel) if kernel.is_some() || args.cdrom.is_some() => {
            return Err((
                "`demo` boots the built-in kernel; drop --kernel and --cdrom".into(),
                status::BAD_INPUT,
            ))
        }
        (_, Some(path)) => {
            let image = RunRequest::read_image(path, args.memory)
                .map_err(|e| (e.to_string(), e.status()))?;
            (path.clone(), image, None, None)
        }
        (_, None) => match &args.cdrom {
            Some(iso) => {
                let boot = CdromBoot::open(iso, args.entry.as_deref(), &args.cmdline, args.memory)
                    .map_err(|e| (e.to_string(), status::BAD_INPUT))?;
                eprintln!("gdbvisor: {}", boot.summary);
                (boot.name.clone(), boot.kernel.clone(), None, Some(boot))
            }
            None => (
                PathBuf::from("demo"),
                demo::FLAT.into(),
                Some(demo::ELF),
                None,
            ),
        },
    };
    // An ISO's entry decides the format, command line and modules; else the flags do.
    let (format, cmdline, modules) = match cdrom {
        Some(cdrom) => (Some(cdrom.format), cdrom.cmdline, cdrom.modules),
        None => (
            args.format,
            args.cmdline.clone(),
            match &args.initrd {
                Some(list) => RunRequest::read_modules(list, args.memory)
                    .map_err(|e| (e.to_string(), e.status()))?,
                None => Vec::new(),
            },
        ),
    };
    let gdb_endpoint = args
        .gdb_endpoint()
        .map_err(|e| (e.to_string(), status::BAD_INPUT))?;
    let on_stdio = gdb_endpoint == Some(GdbEndpoint::Stdio);
    // With gdb on stdio, stdout carries the remote protocol: guest output moves to stderr.
    let off_stdout = |sink: SinkSpec| match sink {
        SinkSpec::Stdout if on_stdio => SinkSpec::Stderr,
        other => other,
    };
    let post_mortem = PostMortem {
        dump_dir: args.dump_on_crash,
        expect_exit: args.expect_exit,
        at_exit: args.dump_at_exit,
    };
    let gdb = gdb_endpoint.map(|endpoint| GdbOptions {
        endpoint,
        wait: args.wait,
        arch: args.gdb_arch.choice(),
        post_mortem: post_mortem.clone(),
    });
    let request = RunRequest {
        name: name.clone(),
        image,
        boot: BootParams {
            format,
            cmdline,
            modules,
            load_addr: args.load_addr,
            kernel_path: name.clone(),
            cpus: args.cpus,
            kaslr: args.kaslr,
            framebuffer: None,
        },
        memory: args.memory,
        cpus: args.cpus,
        serial: off_stdout(args.serial),
        debugcon: off_stdout(args.debugcon),
        gdb,
        gdb_elf,
        post_mortem,
        cpuid_hide: args.cpuid_hide,
        clock_dilation: args.clock_dilation,
        trace_exceptions: args.trace_exceptions.map(|file| ExceptionTraceRequest {
            file,
            vectors: args.trace_vectors.0,
        }),
        framebuffer: args.framebuffer,
        screenshot: args.screenshot,
        devices: DeviceRequest {
            ide: args.devices.ide(args.cdrom.as_deref()),
            keys: args.devices.keys.clone().map(|k| k.0).unwrap_or_default(),
            stdin: args.devices.stdin,
        },
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let handler_flag = interrupt.clone();
    let stopping = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        // A second Ctrl-C while the first is still stopping the guest quits at once.
        if stopping.swap(true, Ordering::SeqCst) {
            std::process::exit(status::INTERRUPTED);
        }
        handler_flag.store(true, Ordering::SeqCst);
    })
    .map_err(|e| {
        (
            format!("cannot install the Ctrl-C handler: {e}"),
            status::KVM_FAILURE,
        )
    })?;
    match runner::run(request, interrupt, HostCaps::of_this_host()) {
        Ok(end) => Ok(end.status()),
        Err(e) => Err((e.to_string(), e.status())),
    }
}

/// `gdbvisor iso extract|ls`: bad input (an unreadable image, a missing file) is status 2.
fn iso_command(command: IsoCommand) -> Result<i32, (String, i32)> {
    let failed = |iso: &std::path::Path, source| {
        (
            CdromError::Fs {
                iso: iso.to_path_buf(),
                source,
            }
            .to_string(),
            status::BAD_INPUT,
        )
    };
    match command {
        IsoCommand::Extract { iso, path, output } => {
            let image = IsoFs::open(&iso).map_err(|e| failed(&iso, e))?;
            let bytes = image
                .read(&path, u64::MAX, "")
                .map_err(|e| failed(&iso, e))?;
            let output = match output {
                Some(output) => output,
                // Reading it succeeded, so the path names a file: it has a last name.
                None => PathBuf::from(gdbvisor::iso::fs::file_name(&path).unwrap_or(&path)),
            };
            let written = if output.as_os_str() == "-" {
                std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)
            } else {
                std::fs::write(&output, &bytes)
            };
            written.map_err(|e| (format!("{}: {e}", output.display()), status::BAD_INPUT))?;
            if output.as_os_str() != "-" {
                eprintln!(
                    "gdbvisor: wrote {} ({} bytes) from {}",
                    output.display(),
                    bytes.len(),
                    gdbvisor::iso::fs::display_path(&iso, &path).display()
                );
            }
        }
        IsoCommand::Ls { iso, dir } => {
            let image = IsoFs::open(&iso).map_err(|e| failed(&iso, e))?;
            let dir = dir.unwrap_or_default();
            for entry in image.list(&dir).map_err(|e| failed(&iso, e))? {
                let (size, slash) = match entry.is_dir {
                    true => ("-".to_string(), "/"),
                    false => (entry.size.to_string(), ""),
                };
                println!("{size:>10}  {}{slash}", entry.name);
            }
        }
    }
    Ok(0)
}
