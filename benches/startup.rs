//! Process start → guest exit for the smallest test kernel (`tiny`: one `out` to isa-debug-exit).
//! Target: ≤ 20 ms median. Measures gdbvisor's own start-up (KVM VM, RAM, devices, threads),
//! not guest speed.

use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};

fn startup(c: &mut Criterion) {
    let kernel = gdbvisor::test_kernels::build("tiny").expect("build the tiny test kernel");
    let image = kernel.image().to_path_buf();
    let binary = env!("CARGO_BIN_EXE_gdbvisor");
    let mut group = c.benchmark_group("startup");
    group.sample_size(50);
    group.bench_function("tiny kernel: process start to guest exit", |b| {
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
