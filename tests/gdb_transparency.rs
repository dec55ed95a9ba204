//! Differential tests: a kernel debugged with gdb must behave exactly as it does alone.
//!
//! Every scenario runs a kernel twice on real KVM — alone, and under a real gdb 13 (driven by
//! `tests/transparency.py`) — and asserts the same serial output, the same exit status and the
//! same final memory. The `transparency` kernel (test-kernels/transparency.*) is laid out as
//! hobby kernels are: its GDT (Accessed bits clear, so the CPU writes them) shares a 4 KiB page
//! with its code and with the C global `boot_stage`; it rewrites one 4 KiB PTE; it takes #UD
//! and #DE and returns with `iretq`.
//!
//! Scenarios on `transparency`: (a) alone: output checked against a model of the kernel's
//! computation written here, the final memory (saved at the guest's exit) checked for the
//! CPU's own writes; (b) `break` on every function, `hbreak`, `watch boot_stage` (the GDT's
//! page), `watch -l` on the PTE it rewrites, `stepi` windows over every instruction class of
//! the boot; (c) 50 attach/detach cycles at moments drawn from a seeded PRNG (the seed is
//! printed; `TRANSPARENCY_SEED=N` replays it). (d) The other test kernels get the `break` and
//! attach/detach runs.
//!
//! What may differ, and why (nothing else is excluded):
//! - `watch -l` on the rewritten PTE: that page-table page is a read-only KVM memory slot while
//!   the guest runs, and KVM drops the Accessed/Dirty bits (5 and 6) the CPU's page walks set in
//!   it (measured on the development host's KVM-PVM: silently, no exit). So bits 5 and 6 of
//!   every entry of that one page (`pt0`) are excluded, and the watch values gdb prints are
//!   compared with those bits masked.
//! - gdb writes no guest memory in these scenarios: software breakpoints are planted by
//!   gdbvisor only while the guest runs and removed at every stop (the guest's exit is a stop),
//!   watchpoints and `hbreak` use no guest memory. So breakpoint bytes are NOT excluded.
//!
//! Final memory comes from a snapshot every run writes at the guest's exit (`--dump-at-exit
//! FILE`), read with `gdbvisor::snapshot::Snapshot`.
//!
//! Runs that hang (before the progress guarantee: the CPU's Accessed-bit write into the GDT on
//! a read-only page, which KVM-PVM retries for ever) fail after `STALL` without progress, and
//! their processes are killed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::gdb::{drain, wait_until, Vmm};
use gdbvisor::snapshot::Snapshot;

/// Guest RAM for every run (less to dump and compare than the default 128 MiB).
const RAM: &str = "32M";
/// A gdb run that prints no progress line for this long is hung.
const STALL: Duration = Duration::from_secs(10);
/// The most any one run may take.
const DEADLINE: Duration = Duration::from_secs(90);
/// The most a run without gdb may take (the longest, loops=ATTACH_LOOPS, takes ~3 s here).
const ALONE_DEADLINE: Duration = Duration::from_secs(30);
/// loops=N for the attach/detach run of `transparency` (~5 ms of guest time per loop here).
const ATTACH_LOOPS: u32 = 600;
/// Attach/detach cycles on a kernel that runs long enough.
const CYCLES: usize = 50;

// ------------------------------------------------------------------------ kernels --- //

/// A kernel and how it is booted.
struct Kernel {
    name: &'static str,
    image: PathBuf,
    elf: PathBuf,
    /// Extra gdbvisor arguments (command line, vCPUs).
    args: Vec<String>,
    symbols: Symbols,
}

impl Kernel {
    fn new(name: &'static str, args: &[&str]) -> Kernel {
        let built = test_kernels::build(name)
            .unwrap_or_else(|e| panic!("building test kernel {name}: {e}"));
        Kernel {
            name,
            image: built.image().to_path_buf(),
            symbols: Symbols::read(&built.elf),
            elf: built.elf,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The register layout gdb gets: the ELF's (gdb is given the ELF for symbols).
    fn gdb_arch(&self) -> &'static str {
        let header = std::fs::read(&self.elf).expect("read ELF");
        if header[4] == 1 {
            "i386"
        } else {
            "x86-64"
        }
    }

    fn sym(&self, name: &str) -> u64 {
        self.symbols.addr(name)
    }
}

/// Symbols of an ELF: every address (nm) and the function names (readelf: type FUNC).
struct Symbols {
    sorted: Vec<(u64, String)>,
    functions: Vec<String>,
}

impl Symbols {
    fn read(elf: &Path) -> Symbols {
        let nm = Command::new("nm").arg("-n").arg(elf).output().expect("nm");
        let sorted = String::from_utf8_lossy(&nm.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                "TtDdBbRr".contains(kind).then(|| (addr, name.to_string()))
            })
            .collect();
        let readelf = Command::new("readelf")
            .arg("-sW")
            .arg(elf)
            .output()
            .expect("readelf");
        let mut functions: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 8 && w[3] == "FUNC" && w[6] != "UND").then(|| w[7].to_string())
            })
            .collect();
        functions.sort();
        functions.dedup();
        Symbols { sorted, functions }
    }

    fn addr(&self, name: &str) -> u64 {
        self.sorted
            .iter()
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("no symbol {name}"))
            .0
    }

    /// `symbol+0xoff` for an address.
    fn describe(&self, addr: u64) -> String {
        match self.sorted.iter().rev().find(|(a, _)| *a <= addr) {
            Some((a, n)) if addr - a < 0x10000 => format!("{n}+{:#x}", addr - a),
            _ => "?".to_string(),
        }
    }
}

// --------------------------------------------------------------------------- runs --- //

/// How a run ended.
struct Outcome {
    status: i32,
    serial: String,
    /// The snapshot saved at the guest's exit, if any.
    dump: Option<PathBuf>,
    /// Whether gdb was attached when the guest ended (no dump without --dump-at-exit then).
    gdb_at_end: bool,
    log: String,
    wall: Duration,
    /// From the start until gdb ended (debugged runs).
    gdb_wall: Duration,
}

/// A directory for one run's files; removed when the test passes, kept when it fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("transparency-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn dump_args(dir: &Path) -> Vec<String> {
    vec![
        "--dump-at-exit".into(),
        dir.join("exit.core").display().to_string(),
    ]
}

fn find_dump(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "core"))
}

fn base_args(k: &Kernel, dir: &Path) -> Vec<String> {
    let mut args = vec![
        "--kernel".to_string(),
        k.image.display().to_string(),
        "-m".into(),
        RAM.into(),
        "--serial".into(),
        format!("file:{}", dir.join("serial.txt").display()),
    ];
    args.extend(k.args.iter().cloned());
    args.extend(dump_args(dir));
    args
}

/// The kernel alone: no gdb endpoint at all.
fn alone(k: &Kernel, scratch: &Scratch) -> Outcome {
    let dir = &scratch.0;
    let args = base_args(k, dir);
    let start = Instant::now();
    let mut vmm = Vmm::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let status = wait_until(&mut vmm.child, start + ALONE_DEADLINE);
    let wall = start.elapsed();
    let log = vmm.transcript();
    let status = status.unwrap_or_else(|| {
        panic!(
            "{} alone did not end within {ALONE_DEADLINE:?} (killed)\n{log}",
            k.name
        )
    });
    Outcome {
        status,
        serial: std::fs::read_to_string(dir.join("serial.txt")).unwrap_or_default(),
        dump: find_dump(dir),
        gdb_at_end: false,
        log,
        wall,
        gdb_wall: Duration::ZERO,
    }
}

/// What gdb reported.
struct GdbReport {
    /// The `TP …` lines, without "TP ".
    tp: Vec<String>,
    stdout: Vec<String>,
    stderr: String,
}

impl GdbReport {
    fn lines(&self, kind: &str) -> Vec<Vec<&str>> {
        self.tp
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&kind)).then(|| w[1..].to_vec())
            })
            .collect()
    }

    fn exit_code(&self) -> Option<i32> {
        self.lines("EXIT").first().and_then(|w| w[0].parse().ok())
    }

    /// The last lines of gdb's output, for failure messages.
    fn tail(&self) -> String {
        let from = self.stdout.len().saturating_sub(40);
        format!(
            "--- gdb stdout (last {} of {} lines)\n{}\n--- gdb stderr\n{}",
            self.stdout.len() - from,
            self.stdout.len(),
            self.stdout[from..].join("\n"),
            self.stderr
        )
    }

    /// No gdb command failed and no unexpected stop happened.
    fn assert_clean(&self, what: &str) {
        for kind in ["ERROR", "STOP"] {
            let bad = self.lines(kind);
            assert!(
                bad.is_empty(),
                "{what}: gdb reported {kind}\n{}",
                self.tail()
            );
        }
    }
}

/// How a debugging run is set up.
struct Debug<'a> {
    /// `-S`: hold the guest at its first instruction until gdb attaches.
    hold: bool,
    /// Give gdb the kernel's ELF (symbols).
    symbols: bool,
    /// gdbvisor's --gdb-arch.
    arch: &'a str,
    /// TP_* variables for tests/transparency.py.
    env: Vec<(&'a str, String)>,
}

/// The kernel under gdb: gdbvisor on a unix socket, gdb driven by tests/transparency.py.
fn debugged(k: &Kernel, scratch: &Scratch, d: Debug) -> (Outcome, GdbReport) {
    let dir = &scratch.0;
    let socket = dir.join("gdb.sock");
    let mut args = base_args(k, dir);
    args.extend([
        "--gdb".to_string(),
        format!("unix:{}", socket.display()),
        "--gdb-arch".into(),
        d.arch.into(),
    ]);
    if d.hold {
        args.push("-S".into());
    }
    let start = Instant::now();
    let mut vmm = Vmm::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    vmm.wait_stderr("gdb listening on unix:");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transparency.py");
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-x"]).arg(&script);
    if d.symbols {
        gdb.arg(&k.elf);
    }
    gdb.env("TP_TARGET", &socket);
    for (key, value) in &d.env {
        gdb.env(key, value);
    }
    let mut gdb = gdb
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdb runs (is gdb installed?)");
    let (tx, rx) = mpsc::channel();
    let out = gdb.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let stderr = drain(gdb.stderr.take().unwrap());
    let mut stdout = Vec::new();
    let mut last_progress = Instant::now();
    let hung = loop {
        let now = Instant::now();
        if now >= start + DEADLINE {
            break Some(format!("not done after {DEADLINE:?}"));
        }
        if now >= last_progress + STALL {
            break Some(format!("no progress for {STALL:?}"));
        }
        let wait = (last_progress + STALL).min(start + DEADLINE) - now;
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if line.starts_with("TP ") {
                    last_progress = Instant::now();
                }
                stdout.push(line);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break None,
        }
    };
    if hung.is_some() {
        // Kill gdb (our child, by PID); the VMM (our child too) goes when `vmm` drops.
        let _ = gdb.kill();
    }
    let gdb_status = wait_until(&mut gdb, Instant::now() + Duration::from_secs(10));
    let gdb_wall = start.elapsed();
    let report = GdbReport {
        tp: stdout
            .iter()
            .filter_map(|l| l.strip_prefix("TP ").map(str::to_string))
            .collect(),
        stdout,
        stderr: stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default(),
    };
    let _ = std::fs::write(
        dir.join("gdb.log"),
        format!(
            "{}\n--- stderr\n{}",
            report.stdout.join("\n"),
            report.stderr
        ),
    );
    if let Some(why) = hung {
        let log = vmm.transcript();
        drop(vmm);
        panic!(
            "{}: HUNG under gdb ({why}); gdb and gdbvisor killed\n{}\n--- VMM\n{log}",
            k.name,
            report.tail()
        );
    }
    assert!(gdb_status.is_some(), "gdb did not exit\n{}", report.tail());
    let status = wait_until(&mut vmm.child, start + DEADLINE);
    let wall = start.elapsed();
    let log = vmm.transcript();
    let status = status.unwrap_or_else(|| {
        panic!(
            "{}: gdbvisor did not end after gdb\n{}\n--- VMM\n{log}",
            k.name,
            report.tail()
        )
    });
    let outcome = Outcome {
        status,
        serial: std::fs::read_to_string(dir.join("serial.txt")).unwrap_or_default(),
        dump: find_dump(dir),
        gdb_at_end: report.exit_code().is_some(),
        log,
        wall,
        gdb_wall,
    };
    (outcome, report)
}

// ------------------------------------------------------------------------- memory --- //

/// Bits to ignore in every aligned quadword of `[start, start + len)`.
struct Exclusion {
    start: u64,
    len: u64,
    bits: u64,
}

/// The differences between two snapshots' RAM outside `exclusions`, described.
fn memory_differences(
    base: &Path,
    other: &Path,
    exclusions: &[Exclusion],
    symbols: &Symbols,
) -> Vec<String> {
    let a = Snapshot::open(base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    let b = Snapshot::open(other).unwrap_or_else(|e| panic!("{}: {e}", other.display()));
    let ranges = a.ram.ranges();
    assert_eq!(ranges, b.ram.ranges(), "the two runs' RAM ranges");
    let mut diffs = Vec::new();
    let mut count = 0usize;
    let (mut pa, mut pb) = (vec![0u8; 4096], vec![0u8; 4096]);
    for (start, len) in ranges {
        for page in (start..start + len).step_by(4096) {
            a.ram.read(page, &mut pa).expect("read snapshot");
            b.ram.read(page, &mut pb).expect("read snapshot");
            if pa == pb {
                continue;
            }
            for i in (0..4096).step_by(8) {
                let x = u64::from_le_bytes(pa[i..i + 8].try_into().unwrap());
                let y = u64::from_le_bytes(pb[i..i + 8].try_into().unwrap());
                let addr = page + i as u64;
                let ignored = exclusions
                    .iter()
                    .filter(|e| (e.start..e.start + e.len).contains(&addr))
                    .fold(0u64, |bits, e| bits | e.bits);
                if (x ^ y) & !ignored != 0 {
                    count += 1;
                    if diffs.len() < 16 {
                        diffs.push(format!(
                            "  {addr:#x} ({}): alone {x:#018x}, debugged {y:#018x}",
                            symbols.describe(addr)
                        ));
                    }
                }
            }
        }
    }
    if count > diffs.len() {
        diffs.push(format!(
            "  … {} more differing quadwords",
            count - diffs.len()
        ));
    }
    diffs
}

/// Same status, same serial output, same final memory (outside `exclusions`).
fn assert_transparent(
    what: &str,
    k: &Kernel,
    base: &Outcome,
    run: &Outcome,
    exclusions: &[Exclusion],
    report: Option<&GdbReport>,
) {
    let context = || {
        format!(
            "--- alone: status {}\n{}--- debugged: status {}\n{}{}",
            base.status,
            base.serial,
            run.status,
            run.serial,
            report.map(GdbReport::tail).unwrap_or_default()
        )
    };
    assert_eq!(
        run.status,
        base.status,
        "{what}: exit status\n{}",
        context()
    );
    assert_eq!(
        run.serial,
        base.serial,
        "{what}: serial output\n{}",
        context()
    );
    if let Some(r) = report {
        if let Some(code) = r.exit_code() {
            assert_eq!(code, base.status, "{what}: the exit code gdb saw");
        }
    }
    let base_dump = base
        .dump
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: the run alone left no snapshot\n{}", base.log));
    match &run.dump {
        Some(dump) => {
            let diffs = memory_differences(base_dump, dump, exclusions, &k.symbols);
            assert!(
                diffs.is_empty(),
                "{what}: final memory differs:\n{}\n{}",
                diffs.join("\n"),
                context()
            );
        }
        None => panic!("{what}: no snapshot at the guest's exit\n{}", run.log),
    }
}

/// Reads `len` bytes of guest-physical memory from a snapshot.
fn snapshot_bytes(path: &Path, addr: u64, len: usize) -> Vec<u8> {
    let snap = Snapshot::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    snap.ram
        .read(addr, &mut buf)
        .expect("address in the snapshot");
    buf
}

/// `len` bytes at address `addr` of `section` in the ELF file (readelf gives its address and
/// file offset).
fn elf_bytes(elf: &Path, section: &str, addr: u64, len: usize) -> Vec<u8> {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(elf)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == section))
        .unwrap_or_else(|| panic!("no {section} in {}", elf.display()))
        .split_whitespace()
        .collect();
    let at = fields.iter().position(|w| *w == section).unwrap();
    let base = u64::from_str_radix(fields[at + 2], 16).unwrap();
    let offset = u64::from_str_radix(fields[at + 3], 16).unwrap();
    let file = std::fs::read(elf).expect("read ELF");
    let start = (offset + addr - base) as usize;
    file[start..start + len].to_vec()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

// ------------------------------------------------- the transparency kernel's model --- //

/// What `transparency` prints with `loops=N`, computed here the way transparency.c computes it.
fn transparency_output(loops: u32) -> String {
    fn compute(round: u32) -> u64 {
        let mut state = 0x1234u32.wrapping_add(round);
        let mut buf = [0u8; 256];
        for b in buf.iter_mut() {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (state >> 16) as u8;
        }
        let fnv = |p: &[u8]| {
            p.iter().fold(0x811c_9dc5u32, |h, &b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            })
        };
        let before = fnv(&buf);
        buf[128..].fill((round & 0xff) as u8);
        (u64::from(before) << 32) | u64::from(fnv(&buf))
    }
    let (mut counter, mut atomics, mut remap, mut sum) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..u64::from(loops) {
        // lock xadd; lock cmpxchg that hits; lock cmpxchg (expecting 1) that misses unless the
        // counter is 1; lock inc; xchg.
        let add = 5 + round;
        let old = counter;
        let prev = old.wrapping_add(add);
        counter = prev.wrapping_mul(3);
        let expected = if counter == 1 {
            counter = 0xdead;
            1
        } else {
            counter
        };
        counter = counter.wrapping_add(1);
        let swapped = counter;
        counter = round ^ 0x5a5a;
        atomics ^= old ^ (prev << 8) ^ (expected << 16) ^ (swapped << 24);
        remap =
            remap.wrapping_add((0x414c_4941_5300_0000 + round) ^ (0x5749_4e44_4f57_0000 + round));
        sum = sum.wrapping_mul(31).wrapping_add(compute(round as u32));
    }
    format!(
        "transparency: protected mode, own gdt\n\
         transparency: long mode, loops={loops}\n\
         transparency: #UD and #DE handled, #DE on IST1\n\
         transparency: atomics {atomics:#x}\n\
         transparency: counter {counter:#x}\n\
         transparency: remap {remap:#x}\n\
         transparency: compute {sum:#x}\n\
         transparency: done\n"
    )
}

fn transparency(loops: Option<u32>) -> Kernel {
    match loops {
        Some(n) => Kernel::new("transparency", &["--cmdline", &format!("loops={n}")]),
        None => Kernel::new("transparency", &[]),
    }
}

/// The PTE transparency.c rewrites: window_page's entry in pt0.
fn window_pte(k: &Kernel) -> u64 {
    k.sym("pt0") + 8 * ((k.sym("window_page") >> 12) & 511)
}

fn kvm(test: &str) -> bool {
    common::kvm_available(test) && common::tool_available(test, "gdb", "gdb")
}

// ----------------------------------------------------------------- (a) alone --- //

/// The kernel alone prints what the model computes, exits with status 1, and its memory at the
/// exit holds the CPU's own writes: Accessed bits in the GDT, the busy TSS, the last stage.
#[test]
fn transparency_alone() {
    if !kvm("transparency_alone") {
        return;
    }
    let k = transparency(None);
    let scratch = Scratch::new("alone");
    let base = alone(&k, &scratch);
    assert_eq!(base.status, 1, "{}", base.log);
    assert_eq!(base.serial, transparency_output(1), "{}", base.log);
    let dump = base.dump.as_ref().expect("a snapshot at the exit");
    let image = elf_bytes(&k.elf, ".rodata", k.sym("gdt"), 0x30);
    let gdt = snapshot_bytes(dump, k.sym("gdt"), 0x30);
    for (selector, source) in [
        (0x08, 0x00cf9a000000ffffu64),
        (0x10, 0x00cf92000000ffff),
        (0x18, 0x00af9a000000ffff),
    ] {
        assert_eq!(
            u64_at(&image, selector),
            source,
            "GDT {selector:#x} in the ELF"
        );
        assert_eq!(
            u64_at(&gdt, selector),
            source | 1 << 40,
            "GDT {selector:#x}: the CPU set the Accessed bit"
        );
    }
    assert_eq!(image[0x25], 0x89, "TSS descriptor in the ELF: available");
    assert_eq!(gdt[0x25], 0x8b, "TSS descriptor: busy after ltr");
    let stage = snapshot_bytes(dump, k.sym("boot_stage"), 4);
    assert_eq!(u32::from_le_bytes(stage.try_into().unwrap()), 7);
    let pte = snapshot_bytes(dump, window_pte(&k), 8);
    assert_eq!(
        u64_at(&pte, 0),
        k.sym("window_page") | 0x23,
        "window PTE: mapped back (P, W), then Accessed by the read through it"
    );
    // loops=N is parsed from the multiboot2 command line.
    let k3 = transparency(Some(3));
    let scratch3 = Scratch::new("alone-3");
    let run = alone(&k3, &scratch3);
    assert_eq!(run.serial, transparency_output(3), "{}", run.log);
    assert_eq!(run.status, 1);
}

// --------------------------------------------------------------- (b) under gdb --- //

/// Hits per function for `transparency` with loops=L, from its source. `_start` is 0: the guest
/// is held there when gdb attaches, and gdb steps over a breakpoint at the stop address.
/// `serial_putc` has none: gcc inlines it into loops (serial_puts, print_hex, print_dec) and
/// hoists the port number out of them, and gdb breaks at each inlined instance's entry, which
/// then runs once per call of the enclosing function rather than once per character.
fn expected_hits(name: &str, loops: u64) -> Option<u64> {
    Some(match name {
        "_start" => 0,
        "early_print" | "check_multiboot" | "setup_page_tables" | "enable_long_mode"
        | "long_mode_start" | "kernel_main" | "mb2_cmdline" | "parse_loops" | "idt_init"
        | "exceptions_test" | "isr0" | "isr6" | "debug_exit" | "print_dec" => 1,
        "interrupt_dispatch" | "isr_common" => 2,
        "idt_set_gate" => 32,
        "print_line" | "print_hex" => 4,
        // 3 in kernel_main, 2 per print_line, 1 per print_hex
        "serial_puts" => 3 + 4 * 2 + 4,
        "set_stage" => 3 + 4 * loops,
        "atomics_test" | "remap_test" | "compute" | "fill_random" | "memcpy" | "memset64" => loops,
        "map_page" | "checksum" => 2 * loops,
        "lcg_next" => 256 * loops,
        "fail" | "memset" => 0,
        n if n.starts_with("isr") => 0,
        _ => return None,
    })
}

/// `break` on every function: each stop is at one of the breakpoint's locations, each function
/// is hit as often as the source says, and the run is otherwise the same as alone.
#[test]
fn transparency_break_on_every_function() {
    if !kvm("transparency_break_on_every_function") {
        return;
    }
    let k = transparency(None);
    let (s1, s2) = (Scratch::new("break-alone"), Scratch::new("break"));
    let base = alone(&k, &s1);
    let functions = k.symbols.functions.join(" ");
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: "x86-64",
            env: vec![("TP_MODE", "break".into()), ("TP_FUNCS", functions)],
        },
    );
    report.assert_clean("break");
    let hits = check_hits(&report, &k.symbols.functions);
    for name in &k.symbols.functions {
        if name == "serial_putc" {
            assert!(hits.contains_key("serial_putc"), "{}", report.tail());
            continue;
        }
        let want = expected_hits(name, 1)
            .unwrap_or_else(|| panic!("no expected hit count for function {name}"));
        assert_eq!(
            hits.get(name.as_str()).copied().unwrap_or(0),
            want,
            "hits of {name}\n{}",
            report.tail()
        );
    }
    assert_transparent(
        "break on every function",
        &k,
        &base,
        &run,
        &[],
        Some(&report),
    );
}

/// Checks every TP BP/HIT line; returns the hits per function.
fn check_hits<'a>(report: &'a GdbReport, functions: &[String]) -> BTreeMap<&'a str, u64> {
    let set: Vec<&str> = report.lines("BP").iter().map(|w| w[0]).collect();
    for f in functions {
        assert!(
            set.contains(&f.as_str()),
            "no breakpoint on {f}\n{}",
            report.tail()
        );
    }
    let mut hits = BTreeMap::new();
    for w in report.lines("HIT") {
        assert_eq!(
            w[2],
            "OK",
            "stopped at {} for {}, not one of its locations\n{}",
            w[1],
            w[0],
            report.tail()
        );
        *hits.entry(w[0]).or_insert(0) += 1;
    }
    assert!(
        report.exit_code().is_some(),
        "the guest did not end\n{}",
        report.tail()
    );
    hits
}

/// `hbreak` on four functions of the GDT's page (32-bit and 64-bit code, an interrupt handler's
/// C part, a function called in the loop).
#[test]
fn transparency_hbreak() {
    if !kvm("transparency_hbreak") {
        return;
    }
    let k = transparency(None);
    let (s1, s2) = (Scratch::new("hbreak-alone"), Scratch::new("hbreak"));
    let base = alone(&k, &s1);
    let chosen = [
        "setup_page_tables",
        "long_mode_start",
        "interrupt_dispatch",
        "checksum",
    ];
    let gdt_page = k.sym("gdt") >> 12;
    for f in chosen {
        assert_eq!(k.sym(f) >> 12, gdt_page, "{f} is on the GDT's page");
    }
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: "x86-64",
            env: vec![("TP_MODE", "hbreak".into()), ("TP_FUNCS", chosen.join(" "))],
        },
    );
    report.assert_clean("hbreak");
    let functions: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
    let hits = check_hits(&report, &functions);
    for f in chosen {
        assert_eq!(
            hits.get(f).copied().unwrap_or(0),
            expected_hits(f, 1).unwrap(),
            "hits of {f}\n{}",
            report.tail()
        );
    }
    assert_transparent("hbreak", &k, &base, &run, &[], Some(&report));
}

/// Parses a value gdb printed (decimal, or hex with 0x).
fn gdb_number(text: &str) -> u64 {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    }
    .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// The watch stops as (old, new) pairs, masked: what the script read, and what gdb printed
/// ("Old value = …" / "New value = …"); both must agree.
fn watch_changes(report: &GdbReport, mask: u64) -> Vec<(u64, u64)> {
    let read: Vec<(u64, u64)> = report
        .lines("WATCH")
        .iter()
        .map(|w| (gdb_number(w[0]) & mask, gdb_number(w[1]) & mask))
        .collect();
    let printed = |label: &str| -> Vec<u64> {
        report
            .stdout
            .iter()
            .filter_map(|l| l.strip_prefix(label))
            .map(|v| gdb_number(v) & mask)
            .collect()
    };
    let printed: Vec<(u64, u64)> = printed("Old value = ")
        .into_iter()
        .zip(printed("New value = "))
        .collect();
    assert_eq!(
        read,
        printed,
        "the values read at each watch stop and the ones gdb printed\n{}",
        report.tail()
    );
    read
}

/// `watch boot_stage`: the variable shares its page with the GDT, so that page is read-only
/// while the guest runs, from the first instruction — through the far jump that sets the
/// descriptors' Accessed bits.
#[test]
fn transparency_watch_boot_stage_on_the_gdt_page() {
    if !kvm("transparency_watch_boot_stage_on_the_gdt_page") {
        return;
    }
    let k = transparency(None);
    assert_eq!(k.sym("boot_stage") >> 12, k.sym("gdt") >> 12);
    let (s1, s2) = (Scratch::new("watch-alone"), Scratch::new("watch"));
    let base = alone(&k, &s1);
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: "x86-64",
            env: vec![
                ("TP_MODE", "watch".into()),
                ("TP_WATCH", "boot_stage".into()),
            ],
        },
    );
    report.assert_clean("watch boot_stage");
    // transparency.c: 0xffffffff, then stages 1, 2, (3, 4, 5, 6) per loop, 7.
    let want = [
        (0xffff_ffff, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (5, 6),
        (6, 7),
    ];
    assert_eq!(
        watch_changes(&report, u64::MAX),
        want,
        "old/new values gdb printed\n{}",
        report.tail()
    );
    assert_transparent("watch boot_stage", &k, &base, &run, &[], Some(&report));
}

/// `watch -l` on the PTE the kernel rewrites (map to another frame, invlpg, read, map back):
/// gdb sees the 32-bit code fill it, then both rewrites.
#[test]
fn transparency_watch_the_pte_it_rewrites() {
    if !kvm("transparency_watch_the_pte_it_rewrites") {
        return;
    }
    let k = transparency(None);
    let (s1, s2) = (Scratch::new("pte-alone"), Scratch::new("pte"));
    let base = alone(&k, &s1);
    let pte = window_pte(&k);
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: "x86-64",
            env: vec![
                ("TP_MODE", "watch".into()),
                ("TP_WATCH", format!("-l *(unsigned long *){pte:#x}")),
            ],
        },
    );
    report.assert_clean("watch the PTE");
    // While watched, the page-table page is a read-only slot: KVM drops the Accessed (5) and
    // Dirty (6) bits the CPU's walks set in it, so they are masked here and excluded below.
    let ad = (1u64 << 5) | (1 << 6);
    let (window, alias) = (k.sym("window_page") | 3, k.sym("alias_page") | 3);
    assert_eq!(
        watch_changes(&report, !ad),
        [(0, window), (window, alias), (alias, window)],
        "old/new PTE values gdb printed (A/D masked)\n{}",
        report.tail()
    );
    let pt0 = Exclusion {
        start: k.sym("pt0"),
        len: 4096,
        bits: ad,
    };
    assert_transparent("watch the PTE", &k, &base, &run, &[pt0], Some(&report));
}

fn hex(a: Option<u64>) -> String {
    a.map(|a| format!("{a:#x}"))
        .unwrap_or_else(|| "none".into())
}

/// Instruction classes, told by their bytes (in the code they were stepped in).
fn class_of(code: &[u8]) -> Option<&'static str> {
    let mut i = 0;
    let mut lock = false;
    let mut rep = false;
    let mut rex_w = false;
    while i < code.len() {
        match code[i] {
            0xf0 => lock = true,
            0xf3 => rep = true,
            0x66 => {}
            b @ 0x40..=0x4f => rex_w = b & 8 != 0,
            _ => break,
        }
        i += 1;
    }
    let op = code.get(i..)?;
    let modrm_reg = |at: usize| op.get(at).map(|m| (m >> 3) & 7);
    Some(match op {
        _ if lock => "lock",
        [0xea, ..] => "far jump",
        [0x8e, ..] => "segment load",
        [0x0f, 0x01, ..] if modrm_reg(2) == Some(2) => "lgdt",
        [0x0f, 0x01, ..] if modrm_reg(2) == Some(3) => "lidt",
        [0x0f, 0x01, ..] if modrm_reg(2) == Some(7) => "invlpg",
        [0x0f, 0x00, ..] if modrm_reg(2) == Some(3) => "ltr",
        [0x0f, 0x22, ..] => "mov to CR",
        [0x0f, 0x30, ..] => "wrmsr",
        [0x0f, 0x32, ..] => "rdmsr",
        [0x0f, 0x0b, ..] => "ud2",
        [0xf7, ..] if modrm_reg(1) == Some(6) => "div",
        [0xcf, ..] if rex_w => "iretq",
        [0x87, ..] => "xchg",
        [0xa4, ..] if rep => "rep movsb",
        [0xab, ..] if rep && rex_w => "rep stosq",
        [0xe6, ..] | [0xee, ..] => "out",
        _ => return None,
    })
}

/// `stepi` windows: from the entry (300 instructions: lgdt, the far jump reloading CS, segment
/// loads, port output), over the switch to long mode (CR writes, rdmsr/wrmsr, the far jump to
/// 64-bit code, segment loads, ltr), through #UD and #DE and their iretq, the locked
/// instructions, xchg, the PTE rewrite with invlpg, and into rep movsb / rep stosq (left in
/// the middle). Also lidt. Hardware breakpoints start the windows, so no page is made read-only.
#[test]
fn transparency_stepi_every_instruction_class() {
    if !kvm("transparency_stepi_every_instruction_class") {
        return;
    }
    let k = transparency(None);
    let (s1, s2) = (Scratch::new("step-alone"), Scratch::new("step"));
    let base = alone(&k, &s1);
    let windows = [
        (k.sym("_start"), 300),
        (k.sym("enable_long_mode"), 60),
        (instruction(&k, "idt_init", "lidt"), 3),
        (k.sym("exceptions_test"), 200),
        (k.sym("atomics_test"), 25),
        (k.sym("remap_test"), 60),
        // memcpy and memset64, inlined in compute
        (instruction(&k, "compute", "rep movsb"), 20),
        (instruction(&k, "compute", "rep stos %rax"), 10),
    ];
    let spec: Vec<String> = windows.iter().map(|(a, n)| format!("{a:#x}:{n}")).collect();
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: "x86-64",
            env: vec![("TP_MODE", "step".into()), ("TP_WINDOWS", spec.join(" "))],
        },
    );
    report.assert_clean("stepi");
    assert_eq!(
        report.lines("WINDOW").len(),
        windows.len(),
        "every window reached\n{}",
        report.tail()
    );
    let steps: Vec<(u64, Vec<u8>)> = report
        .lines("STEP")
        .iter()
        .map(|w| {
            let pc = gdb_number(w[0]);
            let bytes = (0..w[1].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&w[1][i..i + 2], 16).unwrap())
                .collect();
            (pc, bytes)
        })
        .collect();
    let total: usize = windows.iter().map(|w| w.1).sum();
    assert_eq!(steps.len(), total, "every stepi stopped\n{}", report.tail());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, (pc, code)) in steps.iter().enumerate() {
        let Some(class) = class_of(code) else {
            continue;
        };
        *seen.entry(class).or_default() += 1;
        let next = steps.get(i + 1).map(|s| s.0);
        match class {
            // The far jump lands on its target (32-bit code: EA offset32 selector16).
            "far jump" => {
                let target = u64::from(u32::from_le_bytes(code[1..5].try_into().unwrap()));
                if next != Some(target) {
                    problems.push(format!(
                        "far jump at {pc:#x}: next stop {}, not its target {target:#x}",
                        hex(next)
                    ));
                }
            }
            // The faulting instruction's step stops in its handler's stub (the stub is 2 or 3
            // instructions, 9 bytes at most) ...
            "ud2" | "div" => {
                let stub = k.sym(if class == "ud2" { "isr6" } else { "isr0" });
                let next = next.unwrap_or(0);
                if !(stub..stub + 9).contains(&next) {
                    problems.push(format!(
                        "{class} at {pc:#x}: next stop {next:#x}, not in its stub at {stub:#x}"
                    ));
                }
                // ... and the step over the handler's iretq stops right after the faulting
                // instruction (the handler skips it: 2 bytes), before running anything there.
                let iretq = steps[i + 1..]
                    .iter()
                    .position(|(_, c)| class_of(c) == Some("iretq"))
                    .map(|j| i + 1 + j);
                let after = iretq.and_then(|j| steps.get(j + 1)).map(|s| s.0);
                if after != Some(pc + 2) {
                    problems.push(format!(
                        "{class} at {pc:#x}: the step over its handler's iretq{} stopped at \
                         {} ({}), not at {:#x} where the handler returns",
                        iretq
                            .map(|j| format!(" at {:#x}", steps[j].0))
                            .unwrap_or_default(),
                        hex(after),
                        after.map(|a| k.symbols.describe(a)).unwrap_or_default(),
                        pc + 2
                    ));
                }
            }
            _ => {}
        }
    }
    for (class, at_least) in [
        ("far jump", 2),
        ("segment load", 10),
        ("lgdt", 1),
        ("lidt", 1),
        ("ltr", 1),
        ("mov to CR", 3),
        ("rdmsr", 1),
        ("wrmsr", 1),
        ("ud2", 1),
        ("div", 1),
        ("iretq", 2),
        ("lock", 4),
        ("xchg", 1),
        ("invlpg", 2),
        // Stopped inside the string instruction at least once (here KVM runs its iterations
        // in batches: one stepi stops again at the rep with RCX lower, the next ends it).
        ("rep movsb", 2),
        ("rep stosq", 2),
        ("out", 30),
    ] {
        let n = seen.get(class).copied().unwrap_or(0);
        if n < at_least {
            problems.push(format!(
                "stepped {class} {n} times, want at least {at_least}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "stepi:\n{}\nclasses stepped: {seen:?}\n{}",
        problems.join("\n"),
        report.tail()
    );
    assert!(report.exit_code().is_some(), "{}", report.tail());
    assert_transparent("stepi", &k, &base, &run, &[], Some(&report));
}

/// The address of the first instruction whose objdump text contains `mnemonic` in the
/// function `within` (which ends where the next symbol starts).
fn instruction(k: &Kernel, within: &str, mnemonic: &str) -> u64 {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(&k.elf)
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = k.sym(within);
    let end = k
        .symbols
        .sorted
        .iter()
        .map(|(a, _)| *a)
        .find(|a| *a > start)
        .unwrap_or(u64::MAX);
    text.lines()
        .filter(|l| l.contains(mnemonic))
        .filter_map(|l| u64::from_str_radix(l.split(':').next()?.trim(), 16).ok())
        .find(|a| (start..end).contains(a))
        .unwrap_or_else(|| panic!("no {mnemonic} in {within}"))
}

// ------------------------------------------------------------- (c) attach/detach --- //

/// splitmix64: the attach/detach schedule's PRNG.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max) seconds, in microseconds.
    fn seconds(&mut self, max: f64) -> f64 {
        (self.next() % ((max * 1e6) as u64).max(1)) as f64 / 1e6
    }
}

fn seed() -> u64 {
    match std::env::var("TRANSPARENCY_SEED") {
        Ok(s) => s.parse().expect("TRANSPARENCY_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// `cycles` attach/detach cycles: the guest runs up to `run_max` seconds before each attach,
/// stays stopped up to `held_max`; gdb attaches with no symbols (any mode: the VMM picks the
/// layout at each attach).
fn attach_detach(
    k: &Kernel,
    tag: &str,
    hold: bool,
    cycles: usize,
    run_max: f64,
    held_max: f64,
) -> (Outcome, Outcome, GdbReport, u64, [Scratch; 2]) {
    let seed = seed();
    eprintln!("{tag}: attach/detach seed {seed} (replay: TRANSPARENCY_SEED={seed})");
    let mut prng = Prng(seed);
    let pauses: Vec<String> = (0..cycles)
        .map(|_| format!("{:.6},{:.6}", prng.seconds(run_max), prng.seconds(held_max)))
        .collect();
    let (s1, s2) = (Scratch::new(&format!("{tag}-alone")), Scratch::new(tag));
    let base = alone(k, &s1);
    let (run, report) = debugged(
        k,
        &s2,
        Debug {
            hold,
            symbols: false,
            arch: "auto",
            env: vec![
                ("TP_MODE", "attach".into()),
                ("TP_PAUSES", pauses.join(" ")),
            ],
        },
    );
    (base, run, report, seed, [s1, s2])
}

/// 50 cycles while `transparency` runs loops=ATTACH_LOOPS (no -S): every cycle must happen
/// before the guest ends, and the run ends as it does alone.
#[test]
fn transparency_attach_detach_50_cycles() {
    if !kvm("transparency_attach_detach_50_cycles") {
        return;
    }
    let k = transparency(Some(ATTACH_LOOPS));
    let (base, run, report, seed, _scratch) =
        attach_detach(&k, "attach", false, CYCLES, 0.04, 0.005);
    assert_eq!(base.serial, transparency_output(ATTACH_LOOPS));
    report.assert_clean("attach/detach");
    let attached = report.lines("ATTACHED").len();
    assert_eq!(
        attached,
        CYCLES,
        "seed {seed}: only {attached} cycles before the guest ended (alone it runs {:?}; raise \
         ATTACH_LOOPS)\n{}",
        base.wall,
        report.tail()
    );
    assert!(!run.gdb_at_end, "the guest ended after the last detach");
    eprintln!(
        "attach/detach: {CYCLES} cycles done {:?} after the start; the guest ended after {:?} \
         ({:?} alone)",
        run.gdb_wall, run.wall, base.wall
    );
    let what = format!("attach/detach (seed {seed})");
    assert_transparent(&what, &k, &base, &run, &[], Some(&report));
}

// ------------------------------------------------------- (d) the other kernels --- //

/// `break` on every function of another test kernel.
fn other_break(name: &'static str, args: &[&str]) {
    let k = Kernel::new(name, args);
    let (s1, s2) = (
        Scratch::new(&format!("{name}-break-alone")),
        Scratch::new(&format!("{name}-break")),
    );
    let base = alone(&k, &s1);
    let (run, report) = debugged(
        &k,
        &s2,
        Debug {
            hold: true,
            symbols: true,
            arch: k.gdb_arch(),
            env: vec![
                ("TP_MODE", "break".into()),
                ("TP_FUNCS", k.symbols.functions.join(" ")),
            ],
        },
    );
    report.assert_clean(&format!("{name}: break"));
    let hits = check_hits(&report, &k.symbols.functions);
    eprintln!("{name}: breakpoint hits {hits:?}");
    assert!(
        hits.values().sum::<u64>() > 0 || k.symbols.functions.len() == 1,
        "{name}: no breakpoint hit at all\n{}",
        report.tail()
    );
    assert_transparent(
        &format!("{name}: break"),
        &k,
        &base,
        &run,
        &[],
        Some(&report),
    );
}

/// Attach/detach on another test kernel. They run for milliseconds, so the guest is held for
/// the first gdb (-S) and the cycles go on, with pauses under 3 ms, until it ends: fewer than
/// 50 (the count is printed).
fn other_attach(name: &'static str, args: &[&str]) {
    let k = Kernel::new(name, args);
    let tag = format!("{name}-attach");
    let (base, run, report, seed, _scratch) = attach_detach(&k, &tag, true, CYCLES, 0.003, 0.001);
    report.assert_clean(&format!("{name}: attach/detach"));
    let attached = report.lines("ATTACHED").len();
    eprintln!(
        "{name}: {attached} attach/detach cycles before the guest ended (alone: {:?})",
        base.wall
    );
    assert!(
        attached >= 1,
        "{name}: the held guest was never attached\n{}",
        report.tail()
    );
    let what = format!("{name}: attach/detach (seed {seed})");
    assert_transparent(&what, &k, &base, &run, &[], Some(&report));
}

macro_rules! other_kernels {
    ($($module:ident: $name:literal $(, $arg:literal)*;)*) => {$(
        mod $module {
            #[test]
            fn break_on_every_function() {
                if super::kvm(concat!($name, " break")) {
                    super::other_break($name, &[$($arg),*]);
                }
            }

            #[test]
            fn attach_detach() {
                if super::kvm(concat!($name, " attach/detach")) {
                    super::other_attach($name, &[$($arg),*]);
                }
            }
        }
    )*};
}

// Not here: mb32-paging and pae (32-bit paging and PAE: refused by this host's KVM), modes-halt
// (modes, ending in a halt), triple (ends in a triple fault: under gdb a stop, not an end),
// elf64-shim (needs QEMU's multiboot loader and a module), loop (never ends), pt4g (~5 s a run;
// transparency covers long runs).
other_kernels! {
    modes: "modes";
    mbinfo: "mbinfo", "--cmdline", "hello world";
    mbinfo_aout: "mbinfo-aout";
    elf64: "elf64";
    segments: "segments";
    recursive: "recursive";
    tiny: "tiny";
    copycode: "copycode";
    pagetables: "pagetables";
    mb2info: "mb2info", "--cmdline", "a b";
    mb2info_addr: "mb2info-addr";
    pvhinfo: "pvhinfo";
    smp: "smp", "--cpus", "2";
}
