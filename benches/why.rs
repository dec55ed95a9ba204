//! How long gdbvisor takes to explain a triple fault: from its "triple fault" line on stderr to
//! the last line of the explanation, for every death kernel (test-kernels/deaths64.S,
//! deaths32.S). Target (issue 17): within 50 ms. Not a timed test: `cargo bench --bench why`.
//!
//! Each kernel runs REPS times (default 5); the table shows the median and the slowest, and how
//! many explanation lines were printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEATHS: &[&str] = &[
    "death-null-idt",
    "death-not-present",
    "death-handler-unmapped",
    "death-pf-in-pf",
    "death-rsp0-unmapped",
    "death-ist-unmapped",
    "death-noncanonical",
    "death-reserved-pde",
    "death-user-supervisor",
    "death-write-readonly",
    "death-ud",
    "death-divide",
    "death32-null-idt",
    "death32-ud",
];

/// One run: the time from the triple-fault line to the last explanation line, and the lines.
fn explain_once(binary: &str, image: &std::path::Path) -> (Duration, usize) {
    let mut child = Command::new(binary)
        .arg("--kernel")
        .arg(image)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbvisor runs");
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (mut fault_seen, mut last_why, mut lines) = (None, None, 0);
    for line in stderr.lines().map_while(Result::ok) {
        if line.contains("triple fault") && fault_seen.is_none() {
            fault_seen = Some(Instant::now());
        }
        if line.starts_with("gdbvisor: why: ") {
            last_why = Some(Instant::now());
            lines += 1;
        }
    }
    child.wait().expect("gdbvisor ends");
    let (Some(start), Some(end)) = (fault_seen, last_why) else {
        panic!("{}: no triple fault explained", image.display());
    };
    (end - start, lines)
}

fn main() {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let binary = env!("CARGO_BIN_EXE_gdbvisor");
    println!(
        "{:<26} {:>10} {:>10} {:>6}",
        "kernel", "median ms", "max ms", "lines"
    );
    let mut worst = Duration::ZERO;
    for name in DEATHS {
        let kernel = test_kernels::build(name).expect("build the death kernel");
        let mut times = Vec::new();
        let mut lines = 0;
        for _ in 0..reps {
            let (took, n) = explain_once(binary, kernel.image());
            times.push(took);
            lines = n;
        }
        times.sort();
        let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
        worst = worst.max(max);
        println!(
            "{name:<26} {:>10.2} {:>10.2} {lines:>6}",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    let verdict = if worst <= Duration::from_millis(50) {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "slowest explanation: {:.2} ms (target 50 ms: {verdict})",
        worst.as_secs_f64() * 1e3
    );
}
