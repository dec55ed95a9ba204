//! Kernels that die one known way (test-kernels/deaths64.S and deaths32.S; their headers give
//! each fault chain as QEMU TCG confirmed it) end in a triple fault on KVM: each prints its
//! line on COM1, gdbvisor exits with the triple-fault status, and RIP and CS at
//! KVM_EXIT_SHUTDOWN are where the kernel's source says, live and in the `--dump-on-crash` core
//! read back with `--snapshot`.
//!
//! gdbvisor's explanation of the death is compared with `tests/deaths/<kernel>.expected`, and
//! its `--trace-exceptions` file with `tests/deaths/<kernel>.trace.expected`, when those files
//! exist (see tests/deaths/README.md); without them the test checks the rest.
//! `GDBVISOR_BLESS_DEATHS=1` writes the explanation files from the live runs, `=trace` (or any
//! value containing it) the trace files too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// gdbvisor's exit status for a triple fault.
const TRIPLE_FAULT_STATUS: i32 = 4;
/// Long enough for the slowest death here (~90 exceptions) on a loaded nested-KVM host.
const RUN_LIMIT: Duration = Duration::from_secs(60);
const KERNEL_CS: u16 = 0x08;
const USER_CS: u16 = 0x23;

/// What one death kernel must leave behind.
struct Death {
    /// Test-kernel name; its COM1 line is "<name>: about to fault".
    name: &'static str,
    /// Symbol of the instruction RIP points at after the shutdown.
    rip_symbol: &'static str,
    /// CS selector after the shutdown.
    cs: u16,
    /// The exceptions QEMU TCG delivers (its `-d int` lines) in order: the first, raised by
    /// the instruction, as `vector:error-code`, the others (raised while delivering, whose error
    /// codes QEMU gets wrong) as `vector`; a run of N equal ones as `… xN`. The triple fault
    /// follows the last.
    qemu_chain: &'static str,
}

impl Death {
    /// A death whose shutdown leaves RIP at `fault_here`, at CPL 0.
    const fn at_fault(name: &'static str, qemu_chain: &'static str) -> Self {
        Death {
            name,
            rip_symbol: "fault_here",
            cs: KERNEL_CS,
            qemu_chain,
        }
    }
}

/// A gdbvisor run that ended (or was killed at [`RUN_LIMIT`]).
fn run_limited(args: &[&str]) -> Run {
    let mut child = gdbvisor()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbvisor runs");
    let started = Instant::now();
    while child.try_wait().expect("wait for gdbvisor").is_none() {
        if started.elapsed() > RUN_LIMIT {
            kill_and_reap(&mut child);
            panic!("gdbvisor {args:?} still running after {RUN_LIMIT:?}: the kernel did not die");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("gdbvisor output");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The value of `name=<hex>` in gdbvisor's register listing (`  rip=…`, `  cs=…`), the
/// first after `after` in `text`.
fn register(text: &str, after: &str, name: &str) -> u64 {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in\n{text}"));
    let key = format!(" {name}=");
    let rest = &text[start..];
    let at = rest
        .find(&key)
        .unwrap_or_else(|| panic!("no {name}= after {after:?} in\n{text}"));
    let hex: String = rest[at + key.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("{name}={hex:?} in\n{text}"))
}

/// The explanation block in `stderr`: the lines after the first line containing "why", up to
/// an empty line, a `gdbvisor: ` line without "why" (the next message), or the end.
fn explanation(stderr: &str) -> Option<Vec<&str>> {
    let mut lines = stderr.lines();
    lines.by_ref().find(|l| l.contains("why"))?;
    Some(
        lines
            .take_while(|l| {
                let next_message = l.starts_with("gdbvisor: ") && !l.contains("why");
                !l.trim().is_empty() && !next_message
            })
            .collect(),
    )
}

/// `tests/deaths/<name><suffix>`.
fn expected_path(name: &str, suffix: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/deaths")
        .join(format!("{name}{suffix}"))
}

/// Whether `GDBVISOR_BLESS_DEATHS` asks to write the expected files: the explanations for any
/// value, the traces too when the value contains `trace`.
fn blessing(trace: bool) -> bool {
    std::env::var("GDBVISOR_BLESS_DEATHS").is_ok_and(|v| !trace || v.contains("trace"))
}

/// Asserts that `got` is exactly the lines of `path`; `what` and `output` say what was read
/// from where, for the message.
fn assert_lines_match(what: &str, path: &Path, got: &[&str], output: &str) {
    let expected = std::fs::read_to_string(path).expect("expected file");
    let expected: Vec<&str> = expected.lines().collect();
    assert!(
        got == expected,
        "{what} differs from {}\n--- expected\n{}\n--- got\n{}\n--- whole output\n{output}",
        path.display(),
        expected.join("\n"),
        got.join("\n"),
    );
}

fn bless(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write expected file");
    eprintln!("wrote {}", path.display());
}

/// Compares `output`'s explanation with the expected file, if there is one. `origin` says
/// which run it is (live, snapshot). A missing block fails only where `required`.
fn check_explanation(name: &str, origin: &str, output: &str, required: bool) {
    let path = expected_path(name, ".expected");
    let block = explanation(output);
    if blessing(false) && origin == "live" {
        let block = block.unwrap_or_else(|| panic!("{name}: no \"why\" block to bless\n{output}"));
        bless(&path, &block);
        return;
    }
    if !path.is_file() {
        if origin == "live" {
            eprintln!(
                "NOTE {name}: no {} yet: the explanation is not compared",
                path.display()
            );
        }
        return;
    }
    let Some(block) = block else {
        assert!(
            !required,
            "{name} ({origin}): no line containing \"why\" on stderr, but {} exists\n{output}",
            path.display()
        );
        eprintln!("NOTE {name} ({origin}): no \"why\" block in this output: not compared");
        return;
    };
    assert_lines_match(
        &format!("{name} ({origin}): explanation"),
        &path,
        &block,
        output,
    );
}

/// With `tests/deaths/<name>.trace.expected`, runs the kernel again with
/// `--trace-exceptions=FILE` and compares FILE with it, line by line.
fn check_trace(name: &str, image: &Path) {
    let path = expected_path(name, ".trace.expected");
    let bless_it = blessing(true);
    if !bless_it && !path.is_file() {
        return;
    }
    let trace = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deaths-{name}-{}.trace", std::process::id()));
    let run = run_limited(&[
        "--kernel",
        image.to_str().unwrap(),
        "-m",
        "16",
        &format!("--trace-exceptions={}", trace.display()),
    ]);
    run.assert_status(TRIPLE_FAULT_STATUS);
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let lines: Vec<&str> = text.lines().collect();
    if bless_it {
        bless(&path, &lines);
    } else {
        assert_lines_match(
            &format!("{name}: exception trace"),
            &path,
            &lines,
            &run.to_string(),
        );
    }
}

/// Whether this host's KVM delivered through a gate whose selector names a data segment (it
/// loaded that segment into CS instead of raising #GP): KVM-PVM does, hardware does not.
fn delivered_through_data_segment(run: &Run) -> bool {
    run.stdout.contains("FAIL exception")
        || (run.stderr.contains("(KVM_EXIT_SHUTDOWN)")
            && register(&run.stderr, "(KVM_EXIT_SHUTDOWN)", "cs") == 0x10)
}

fn die(death: &Death) {
    let name = death.name;
    if !kvm_available(name) {
        return;
    }
    let image = kernel(name);
    let elf = kernel_elf(name);
    let dumps = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deaths-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dumps).expect("dump directory");
    let run = run_limited(&[
        "--kernel",
        image.to_str().unwrap(),
        "-m",
        "16",
        "--dump-on-crash",
        dumps.to_str().unwrap(),
    ]);
    run.assert_stdout_line(&format!("{name}: about to fault"));
    if name.ends_with("data-selector") && delivered_through_data_segment(&run) {
        eprintln!(
            "SKIPPED {name} past its COM1 line: this host's KVM (PVM) loaded the data segment into CS \
             through the gate instead of raising #GP(selector), so the kernel does not die as on hardware"
        );
        let _ = std::fs::remove_dir_all(&dumps);
        return;
    }
    run.assert_status(TRIPLE_FAULT_STATUS)
        .assert_stderr_has("gdbvisor: triple fault on vCPU 0 (KVM_EXIT_SHUTDOWN)");
    let rip = symbol(&elf, death.rip_symbol);
    let marker = "(KVM_EXIT_SHUTDOWN)";
    assert_eq!(
        register(&run.stderr, marker, "rip"),
        rip,
        "{name}: RIP at the shutdown is not {}\n{run}",
        death.rip_symbol
    );
    assert_eq!(
        register(&run.stderr, marker, "cs"),
        u64::from(death.cs),
        "{name}: CS at the shutdown\n{run}"
    );
    check_explanation(name, "live", &run.stderr, true);

    // The core saved at the shutdown holds the same state.
    let core = std::fs::read_dir(&dumps)
        .expect("dump directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("triple-fault.core"))
        .unwrap_or_else(|| panic!("{name}: no triple-fault core in {}\n{run}", dumps.display()));
    let snapshot = run_limited(&["--snapshot", core.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dumps);
    snapshot.assert_status(0);
    assert_eq!(
        register(&snapshot.stdout, "vCPU 0", "rip"),
        rip,
        "{name}: RIP in the core\n{snapshot}"
    );
    check_explanation(
        name,
        "snapshot",
        &format!("{}{}", snapshot.stdout, snapshot.stderr),
        false,
    );
    check_trace(name, &image);
}

const DEATHS: &[Death] = &[
    Death::at_fault("death-null-idt", "0e:0002 08"),
    Death::at_fault("death-not-present", "06:0000 0b 08"),
    Death {
        rip_symbol: "unmapped_pf_stub",
        ..Death::at_fault("death-handler-unmapped", "00:0000 0e x85 08")
    },
    Death {
        rip_symbol: "pf_handler_fault",
        ..Death::at_fault("death-pf-in-pf", "0e:0000 0e x64 08")
    },
    Death {
        cs: USER_CS,
        ..Death::at_fault("death-rsp0-unmapped", "0d:0000 0e 08")
    },
    Death::at_fault("death-ist-unmapped", "06:0000 0e 08"),
    Death::at_fault("death-data-selector", "0e:0000 08"),
    Death::at_fault("death-noncanonical", "0d:0000 08"),
    Death::at_fault("death-reserved-pde", "0e:0009 08"),
    Death {
        cs: USER_CS,
        ..Death::at_fault("death-user-supervisor", "0e:0005 08")
    },
    Death::at_fault("death-write-readonly", "0e:0003 08"),
    Death::at_fault("death-ud", "06:0000 0d 08"),
    Death::at_fault("death-divide", "00:0000 08"),
    Death::at_fault("death32-null-idt", "0d:0018 08"),
    Death::at_fault("death32-not-present", "06:0000 0b 08"),
    Death::at_fault("death32-data-selector", "00:0000 08"),
    Death::at_fault("death32-ud", "06:0000 0d 08"),
    Death::at_fault("death32-divide", "00:0000 08"),
];

fn death(name: &str) -> &'static Death {
    DEATHS
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is not in DEATHS"))
}

/// One KVM test per death kernel.
macro_rules! deaths {
    ($($test:ident => $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                die(death($name));
            }
        )*
    };
}

deaths! {
    null_idt => "death-null-idt";
    not_present_gate => "death-not-present";
    handler_page_unmapped => "death-handler-unmapped";
    page_fault_in_page_fault_handler => "death-pf-in-pf";
    rsp0_stack_unmapped => "death-rsp0-unmapped";
    ist_stack_unmapped => "death-ist-unmapped";
    gate_selector_is_data_segment => "death-data-selector";
    noncanonical_address => "death-noncanonical";
    reserved_bit_in_pde => "death-reserved-pde";
    user_reads_supervisor_page => "death-user-supervisor";
    write_to_readonly_page_with_wp => "death-write-readonly";
    invalid_opcode_without_handler => "death-ud";
    divide_error_without_handler => "death-divide";
    protected_mode_null_idt => "death32-null-idt";
    protected_mode_not_present_gate => "death32-not-present";
    protected_mode_gate_selector_is_data_segment => "death32-data-selector";
    protected_mode_invalid_opcode_without_handler => "death32-ud";
    protected_mode_divide_error_without_handler => "death32-divide";
}

/// QEMU TCG, an independent machine, takes the exceptions each kernel's header lists, from
/// `fault_here` to a triple fault with RIP at the same symbol as on KVM. Long-mode kernels run
/// through elf64-shim (QEMU's `-kernel` loads no ELF64).
#[test]
fn qemu_takes_the_documented_exceptions() {
    if !tool_available(
        "qemu_takes_the_documented_exceptions",
        "qemu-system-x86_64",
        "qemu-system-x86",
    ) {
        return;
    }
    let shim = kernel("elf64-shim");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for death in DEATHS {
        let name = death.name;
        let elf = kernel_elf(name);
        let log = dir.join(format!("qemu-{name}-{}.log", std::process::id()));
        let serial = dir.join(format!("qemu-{name}-{}.serial", std::process::id()));
        let mut qemu = std::process::Command::new("qemu-system-x86_64");
        qemu.args(["-accel", "tcg", "-d", "int,cpu_reset", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none", "-m", "32"])
            .arg("-D")
            .arg(&log)
            .arg("-serial")
            .arg(format!("file:{}", serial.display()));
        if name.starts_with("death32-") {
            qemu.arg("-kernel").arg(&elf);
        } else {
            qemu.arg("-kernel").arg(&shim).arg("-initrd").arg(&elf);
        }
        let status = qemu.status().expect("qemu runs");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let serial_text = std::fs::read_to_string(&serial).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&serial);
        assert!(
            status.success(),
            "{name}: qemu {status}
{serial_text}"
        );
        assert!(
            serial_text.contains(&format!("{name}: about to fault\n")),
            "{name}: serial under QEMU: {serial_text:?}"
        );
        let taken = qemu_exceptions(&log_text);
        assert_eq!(
            chain_text(&taken),
            death.qemu_chain,
            "{name}: exceptions under QEMU"
        );
        assert!(
            log_text.trim_end().ends_with("Triple fault"),
            "{name}: QEMU's log does not end in a triple fault"
        );
        assert_eq!(
            taken.first().map(|e| e.rip),
            Some(symbol(&elf, "fault_here")),
            "{name}"
        );
        let last = taken.last().expect("exceptions");
        assert_eq!(
            last.rip,
            symbol(&elf, death.rip_symbol),
            "{name}: RIP at the end"
        );
        assert_eq!(last.cs, death.cs, "{name}: CS at the end");
    }
}

/// One exception QEMU's `-d int` logged: `N: v=VV e=EEEE i=I cpl=C IP=CS:RIP …`.
#[derive(Debug, PartialEq)]
struct QemuException {
    vector: u8,
    error: u16,
    cs: u16,
    rip: u64,
}

/// The exceptions taken in the kernel (IP from 1 MiB on: not SeaBIOS's or the loader's).
fn qemu_exceptions(log: &str) -> Vec<QemuException> {
    let field = |line: &str, key: &str| -> Option<String> {
        let at = line.find(key)? + key.len();
        Some(line[at..].split_whitespace().next()?.to_string())
    };
    log.lines()
        .filter_map(|line| {
            let vector = u8::from_str_radix(&field(line, " v=")?, 16).ok()?;
            let error = u16::from_str_radix(&field(line, " e=")?, 16).ok()?;
            let ip = field(line, " IP=")?;
            let (cs, rip) = ip.split_once(':')?;
            Some(QemuException {
                vector,
                error,
                cs: u16::from_str_radix(cs, 16).ok()?,
                rip: u64::from_str_radix(rip, 16).ok()?,
            })
        })
        .filter(|e| (0x10_0000..0x20_0000).contains(&e.rip))
        .collect()
}

/// The chain as [`Death::qemu_chain`] writes it. QEMU 7.2 leaves P out of a reserved-bit
/// #PF's error code (the SDM: RSVD is set only with P): put it back.
fn chain_text(taken: &[QemuException]) -> String {
    const PF: u8 = 14;
    const PF_PRESENT: u16 = 1;
    const PF_RESERVED: u16 = 1 << 3;
    let tokens: Vec<String> = taken
        .iter()
        .enumerate()
        .map(|(i, e)| match i {
            0 if e.vector == PF && e.error & PF_RESERVED != 0 => {
                format!("{:02x}:{:04x}", e.vector, e.error | PF_PRESENT)
            }
            0 => format!("{:02x}:{:04x}", e.vector, e.error),
            _ => format!("{:02x}", e.vector),
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let run = tokens[i..].iter().take_while(|t| **t == tokens[i]).count();
        out.push(tokens[i].clone());
        if run > 1 {
            out.push(format!("x{run}"));
        }
        i += run;
    }
    out.join(" ")
}

#[test]
fn explanation_block_is_the_lines_after_the_why_marker() {
    let stderr = "gdbvisor: triple fault on vCPU 0\n  rip=1\ngdbvisor: why the guest died:\n  #UD at 0x10\n  #GP(0x33)\n\n  cr0=1\n";
    assert_eq!(
        explanation(stderr),
        Some(vec!["  #UD at 0x10", "  #GP(0x33)"])
    );
    let next_message = "gdbvisor: why:\n  step\ngdbvisor: state saved\n";
    assert_eq!(explanation(next_message), Some(vec!["  step"]));
    let why_lines = "gdbvisor: why: 1\ngdbvisor: why: 2\n";
    assert_eq!(explanation(why_lines), Some(vec!["gdbvisor: why: 2"]));
    assert_eq!(explanation("gdbvisor: triple fault\n"), None);
}
