//! Builds gdbvisor's test kernels, the GNU `as` sources in this directory, with GNU binutils
//! (and gcc for C parts). gdbvisor's `build.rs` uses it to embed the demo kernel; its tests and
//! benches use it to boot the others.
//!
//! The kernels are `as` sources plus linker scripts, some with C files as well; no binary is
//! committed. This crate assembles one with `as`, compiles its C files with `gcc` (the flags
//! are those hobby kernels use), links the objects with `ld` and, for flat images, extracts the raw bytes with
//! `objcopy -O binary`.
//!
//! 1. `src/spec.rs` says how each kernel is built and booted.
//! 2. [`build`] builds into the cache, `<target>/test-kernels/`, where `<target>` is
//!    `$CARGO_TARGET_DIR` or the workspace's `target/`. A kernel is rebuilt when the contents of
//!    any file in `test-kernels/` or the tool arguments changed (a hash recorded in
//!    `<name>.stamp`).
//! 3. Several test processes may build the same kernel at once: each builds in its own temporary
//!    directory and renames the results into place (atomic on one file system); the stamp is
//!    renamed last, so a matching stamp means complete outputs.
//! 4. [`build_into`] builds unconditionally into a given directory (what `build.rs` uses).
//!
//! ```no_run
//! let k = test_kernels::build("modes").unwrap();
//! let image = k.image(); // the flat binary for `modes`, the ELF for ELF kernels
//! # let _ = image;
//! ```

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};

mod spec;
#[cfg(test)]
mod tests;

pub use spec::BootFormat;
use spec::{spec, KernelSpec, ObjectBits, GCC_FLAGS, SPECS};

/// The files one build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    /// Kernel name.
    pub name: String,
    /// The linked ELF, with symbols and DWARF line info (give it to gdb).
    pub elf: PathBuf,
    /// The `objcopy -O binary` image for flat kernels.
    pub flat: Option<PathBuf>,
    /// How the VMM boots it.
    pub format: BootFormat,
}

impl BuiltKernel {
    /// The file to boot: the flat image when there is one, else the ELF.
    pub fn image(&self) -> &Path {
        self.flat.as_deref().unwrap_or(&self.elf)
    }
}

/// Why a kernel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KernelBuildError {
    /// No kernel has this name.
    #[error("unknown test kernel `{0}` (known: {known})", known = known_names())]
    UnknownKernel(String),
    /// Reading sources or writing outputs failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A tool could not be started (not installed?).
    #[error(
        "cannot run `{tool}` ({source}); install GNU binutils (and gcc, for kernels with C sources) to build the test kernels"
    )]
    ToolMissing {
        /// `as`, `gcc`, `ld` or `objcopy`.
        tool: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A tool ran and failed.
    #[error("`{tool}` failed ({status}): {command}\n{}", stderr.trim_end())]
    ToolFailed {
        /// `as`, `gcc`, `ld` or `objcopy`.
        tool: String,
        /// The command line, for copying into a shell.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Every kernel's name, for the unknown-kernel message.
fn known_names() -> String {
    let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    names.join(", ")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KernelBuildError + '_ {
    move |source| KernelBuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `test-kernels/`: this crate's directory, which holds the kernel sources.
fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cache directory: `$CARGO_TARGET_DIR/test-kernels` (relative to the workspace root, where
/// cargo is run) or `<workspace>/target/test-kernels`.
pub(crate) fn cache_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    target.join("test-kernels")
}

/// Builds `name` into the cache (see the module docs) unless an up-to-date build is there.
pub fn build(name: &str) -> Result<BuiltKernel, KernelBuildError> {
    build_cached(name, &cache_dir())
}

/// [`build`] with the cache in `out_dir`.
fn build_cached(name: &str, out_dir: &Path) -> Result<BuiltKernel, KernelBuildError> {
    let spec = spec(name).ok_or_else(|| KernelBuildError::UnknownKernel(name.to_string()))?;
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let stamp_value = format!("{:016x}\n", input_hash(spec)?);
    let outputs = outputs(spec, out_dir);
    let stamp = out_dir.join(format!("{}.stamp", spec.name));
    let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_value)
        && outputs.elf.exists()
        && outputs.flat.as_ref().is_none_or(|f| f.exists());
    if !fresh {
        build_spec(spec, out_dir, Some(&stamp_value))?;
    }
    Ok(outputs)
}

/// Builds `name` into `out_dir` as `<name>.elf` (and `<name>.bin` for flat images), always.
pub fn build_into(name: &str, out_dir: &Path) -> Result<BuiltKernel, KernelBuildError> {
    let spec = spec(name).ok_or_else(|| KernelBuildError::UnknownKernel(name.to_string()))?;
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    build_spec(spec, out_dir, None)
}

fn outputs(spec: &KernelSpec, dir: &Path) -> BuiltKernel {
    BuiltKernel {
        name: spec.name.to_string(),
        elf: dir.join(format!("{}.elf", spec.name)),
        flat: spec
            .has_flat()
            .then(|| dir.join(format!("{}.bin", spec.name))),
        format: spec.format,
    }
}

/// Hash of the tool arguments and of every file in `test-kernels/` (they may `.include` each other).
fn input_hash(spec: &KernelSpec) -> Result<u64, KernelBuildError> {
    let dir = source_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut h = DefaultHasher::new();
    for (tool, args) in commands(spec, Path::new("obj"), Path::new("tmp")) {
        tool.hash(&mut h);
        args.hash(&mut h);
    }
    for file in files {
        let data = fs::read(&file).map_err(io_err(&file))?;
        file.file_name().hash(&mut h);
        data.hash(&mut h);
    }
    Ok(h.finish())
}

/// The tool invocations for `spec`, writing into `tmp`, reading sources from `src`.
fn commands(spec: &KernelSpec, src: &Path, tmp: &Path) -> Vec<(&'static str, Vec<String>)> {
    let p = |path: PathBuf| path.to_string_lossy().into_owned();
    let obj = tmp.join(format!("{}.o", spec.name));
    let elf = tmp.join(format!("{}.elf", spec.name));
    let (as_flag, gcc_flag, emulation) = match spec.bits {
        ObjectBits::Bits32 => ("--32", "-m32", "elf_i386"),
        ObjectBits::Bits64 | ObjectBits::Bits64HigherHalf | ObjectBits::Bits64Pie => {
            ("--64", "-m64", "elf_x86_64")
        }
    };
    let (gcc_extra, ld_extra) = spec.bits.extra_flags();
    let mut as_args = vec![
        as_flag.to_string(),
        "-g".to_string(),
        "-I".to_string(),
        p(src.to_path_buf()),
    ];
    for (sym, value) in spec.defsyms {
        as_args.push("--defsym".to_string());
        as_args.push(format!("{sym}={value}"));
    }
    as_args.extend(["-o".to_string(), p(obj.clone()), p(src.join(spec.source))]);
    let mut cmds = vec![("as", as_args)];
    let mut objects = vec![p(obj)];
    for c in spec.c_sources {
        let stem = Path::new(c)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let c_obj = tmp.join(format!("{}-{stem}.c.o", spec.name));
        let mut gcc_args = vec![gcc_flag.to_string()];
        gcc_args.extend(GCC_FLAGS.iter().map(|f| f.to_string()));
        gcc_args.extend(gcc_extra.iter().map(|f| f.to_string()));
        gcc_args.extend([
            "-c".to_string(),
            "-o".to_string(),
            p(c_obj.clone()),
            p(src.join(c)),
        ]);
        cmds.push(("gcc", gcc_args));
        objects.push(p(c_obj));
    }
    let mut ld_args = vec![
        "-m".to_string(),
        emulation.to_string(),
        "-z".to_string(),
        "max-page-size=0x1000".to_string(),
    ];
    ld_args.extend(ld_extra.iter().map(|f| f.to_string()));
    ld_args.extend([
        "-T".to_string(),
        p(src.join(spec.linker_script)),
        "-o".to_string(),
        p(elf.clone()),
    ]);
    ld_args.extend(objects);
    cmds.push(("ld", ld_args));
    if spec.has_flat() {
        let bin = tmp.join(format!("{}.bin", spec.name));
        cmds.push((
            "objcopy",
            vec!["-O".to_string(), "binary".to_string(), p(elf), p(bin)],
        ));
    }
    cmds
}

fn run(tool: &str, args: &[String]) -> Result<(), KernelBuildError> {
    let output =
        Command::new(tool)
            .args(args)
            .output()
            .map_err(|source| KernelBuildError::ToolMissing {
                tool: tool.to_string(),
                source,
            })?;
    if output.status.success() {
        return Ok(());
    }
    Err(KernelBuildError::ToolFailed {
        tool: tool.to_string(),
        command: format!("{tool} {}", args.join(" ")),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Builds in a private temporary directory under `out_dir`, then renames into place.
fn build_spec(
    spec: &KernelSpec,
    out_dir: &Path,
    stamp: Option<&str>,
) -> Result<BuiltKernel, KernelBuildError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = out_dir.join(format!(
        ".tmp-{}-{}-{}",
        spec.name,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = build_in(spec, &tmp, out_dir, stamp);
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn build_in(
    spec: &KernelSpec,
    tmp: &Path,
    out_dir: &Path,
    stamp: Option<&str>,
) -> Result<BuiltKernel, KernelBuildError> {
    for (tool, args) in commands(spec, &source_dir(), tmp) {
        run(tool, &args)?;
    }
    let built_tmp = outputs(spec, tmp);
    let built = outputs(spec, out_dir);
    fs::rename(&built_tmp.elf, &built.elf).map_err(io_err(&built.elf))?;
    if let (Some(from), Some(to)) = (&built_tmp.flat, &built.flat) {
        fs::rename(from, to).map_err(io_err(to))?;
    }
    if let Some(stamp) = stamp {
        let tmp_stamp = tmp.join("stamp");
        let final_stamp = out_dir.join(format!("{}.stamp", spec.name));
        fs::write(&tmp_stamp, stamp).map_err(io_err(&tmp_stamp))?;
        fs::rename(&tmp_stamp, &final_stamp).map_err(io_err(&final_stamp))?;
    }
    Ok(built)
}
