//! Process start → guest exit for the smallest test kernel (`tiny`: one `out` to isa-debug-exit).
//! Target: ≤ 20 ms median. Measures gdbvisor's own start-up (KVM VM, RAM, devices, threads),
//! not guest speed.
//!
//! Two figures: until gdbvisor has seen the guest's exit (its `isa-debug-exit` log line on
//! stderr), and until the process has ended. The host kernel's VM teardown (~15 ms on a
//! software-nested PVM host) happens in gdbvisor's worker process after the process started has
//! gone (src/relay.rs),
//! so the second figure is only gdbvisor's own exit.
// criterion_group! defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn startup(c: &mut Criterion) {
    let kernel = test_kernels::build("tiny").expect("build the tiny test kernel");
    let image = kernel.image().to_path_buf();
    let binary = env!("CARGO_BIN_EXE_gdbvisor");
    let mut group = c.benchmark_group("startup");
    group.sample_size(50);
    group.bench_function("tiny: process start to guest exit seen", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                let mut child = Command::new(binary)
                    .arg("--kernel")
                    .arg(&image)
                    .env("RUST_LOG", "gdbvisor=info")
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("gdbvisor runs");
                let stderr = BufReader::new(child.stderr.take().unwrap());
                let seen = stderr
                    .lines()
                    .map_while(Result::ok)
                    .any(|line| line.contains("isa-debug-exit"));
                total += start.elapsed();
                assert!(seen, "gdbvisor logs the guest's exit");
                assert_eq!(child.wait().unwrap().code(), Some(1));
            }
            total
        })
    });
    group.bench_function("tiny: process start to process exit", |b| {
        b.iter(|| {
            let status = Command::new(binary)
                .arg("--kernel")
                .arg(&image)
                .status()
                .expect("gdbvisor runs");
            assert_eq!(status.code(), Some(1), "tiny exits through debug-exit");
        })
    });
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
