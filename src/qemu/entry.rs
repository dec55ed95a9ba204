//! `gdbvisor qemu …` from argv to a gdbvisor command line: which invocations are QEMU's, the
//! help, `--dry-run`, `--install-shims`, and the warnings printed before the run.

use std::ffi::OsString;
use std::path::PathBuf;

use super::error::QemuArgsError;
use super::translate::{translate, Translation};
use super::{options, shims};

/// The QEMU arguments of this process when it runs as `gdbvisor qemu …` or as a shim
/// (`qemu-system-x86_64 …`); `None` for any other gdbvisor command line.
///
/// `qemu` must be the first argument: it is decided here, before clap, because QEMU's flags
/// (`-s`, `-m`, `-kernel`) would otherwise be read as gdbvisor's own.
pub fn invocation(mut args: impl Iterator<Item = OsString>) -> Option<Vec<OsString>> {
    let argv0 = args.next()?;
    if shims::is_shim_name(&argv0) {
        return Some(args.collect());
    }
    match args.next() {
        Some(first) if first == "qemu" => Some(args.collect()),
        _ => None,
    }
}

/// What `gdbvisor qemu` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run QEMU's machine.
    Run(Translation),
    /// `--dry-run …`: print the gdbvisor command line that QEMU's translates to.
    Show(Translation),
    /// `-h`, `-help`, `--help`.
    Help,
    /// `-version`, `--version`.
    Version,
    /// `--install-shims DIR`.
    InstallShims(PathBuf),
}

/// Reads `gdbvisor qemu`'s arguments.
pub fn plan(args: &[OsString]) -> Result<Plan, QemuArgsError> {
    let first = args.first().and_then(|a| a.to_str());
    match (first, args.len()) {
        (Some("-h" | "-help" | "--help"), 1) => return Ok(Plan::Help),
        (Some("-version" | "--version"), 1) => return Ok(Plan::Version),
        (Some("--install-shims"), 2) => return Ok(Plan::InstallShims(PathBuf::from(&args[1]))),
        (Some("--install-shims"), _) => {
            return Err(QemuArgsError::MissingValue("--install-shims DIR".into()))
        }
        (Some("--dry-run"), _) => {
            return Ok(Plan::Show(translate(&options::parse(&args[1..])?)?));
        }
        _ => {}
    }
    Ok(Plan::Run(translate(&options::parse(args)?)?))
}

const HELP: &str = "\
usage: gdbvisor qemu [QEMU ARGUMENTS] [-- GDBVISOR FLAGS]
       qemu-system-x86_64 [QEMU ARGUMENTS]      (a shim: gdbvisor qemu --install-shims DIR)

Runs what QEMU's command line describes on gdbvisor, e.g.
  gdbvisor qemu -kernel kernel.elf -serial stdio -display none -no-reboot
  gdbvisor qemu -cdrom os.iso -m 512M -s -S
  gdbvisor qemu -kernel k.elf -d int -no-reboot -no-shutdown
Flags after -- are gdbvisor's own (gdbvisor --help), e.g. -- --screenshot out.png.

  --dry-run QEMU ARGUMENTS   print the gdbvisor command line they run, and exit
  --install-shims DIR        make DIR/qemu-system-x86_64 and DIR/qemu-system-i386 run
                             gdbvisor qemu; then: PATH=DIR:$PATH make run

Flags taken, ignored and refused: docs/switching-from-qemu.md. Exit statuses are gdbvisor's
(gdbvisor --help); isa-debug-exit gives (v << 1) | 1 as under QEMU.";

/// `gdbvisor qemu …` up to the run: QEMU's command line as gdbvisor's own, warnings printed.
/// `Err` is the exit status when nothing is to run (help, shims installed, a refused flag:
/// one line on stderr and status 2).
pub fn command_line(args: &[OsString]) -> Result<crate::cli::Cli, i32> {
    let bad_input = |e: &dyn std::fmt::Display| {
        eprintln!("gdbvisor qemu: {e}");
        crate::runner::status::BAD_INPUT
    };
    let translation = match plan(args) {
        Ok(Plan::Run(translation)) => translation,
        Ok(Plan::Show(translation)) => {
            println!("{}", translation.shell_line());
            return Err(0);
        }
        Ok(Plan::Help) => {
            println!("{HELP}");
            return Err(0);
        }
        Ok(Plan::Version) => {
            println!(
                "gdbvisor {} (QEMU's command line: gdbvisor qemu)",
                env!("CARGO_PKG_VERSION")
            );
            return Err(0);
        }
        Ok(Plan::InstallShims(dir)) => {
            let installed = std::env::current_exe()
                .map_err(|e| QemuArgsError::Shims {
                    dir: dir.clone(),
                    message: format!("cannot find gdbvisor's own executable: {e}"),
                })
                .and_then(|exe| shims::install(&dir, &exe));
            return Err(match installed {
                Ok(made) => {
                    for shim in made {
                        println!("{}", shim.display());
                    }
                    println!(
                        "run a Makefile's QEMU on gdbvisor: PATH={}:$PATH make run",
                        dir.display()
                    );
                    0
                }
                Err(e) => bad_input(&e),
            });
        }
        Err(e) => return Err(bad_input(&e)),
    };
    for warning in &translation.warnings {
        eprintln!("gdbvisor qemu: {warning}");
    }
    log::info!("gdbvisor qemu runs: {}", translation.shell_line());
    translation.cli().map_err(|e| {
        let _ = e.print();
        crate::runner::status::BAD_INPUT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn qemu_first_or_a_shim_name_is_a_qemu_invocation() {
        let found = |list: &[&str]| invocation(args(list).into_iter());
        assert_eq!(found(&["gdbvisor", "qemu", "-s"]), Some(args(&["-s"])));
        assert_eq!(
            found(&["/x/qemu-system-i386", "-kernel", "k"]),
            Some(args(&["-kernel", "k"]))
        );
        assert_eq!(found(&["gdbvisor", "-s", "qemu"]), None);
        assert_eq!(found(&["gdbvisor"]), None);
    }

    #[test]
    fn help_version_dry_run_and_shims_are_plans_of_their_own() {
        assert_eq!(plan(&args(&["-help"])), Ok(Plan::Help));
        assert_eq!(plan(&args(&["--version"])), Ok(Plan::Version));
        assert_eq!(
            plan(&args(&["--install-shims", "d"])),
            Ok(Plan::InstallShims(PathBuf::from("d")))
        );
        assert!(plan(&args(&["--install-shims"])).is_err());
        assert!(matches!(
            plan(&args(&["--dry-run", "-kernel", "k"])),
            Ok(Plan::Show(_))
        ));
        assert!(matches!(plan(&args(&["-kernel", "k"])), Ok(Plan::Run(_))));
    }
}
