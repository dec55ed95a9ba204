//! Saving and opening a 128 MiB guest (what `monitor dump` and `--dump-on-crash` write, and
//! `--snapshot` reads), three ways: a freshly booted guest (1 MiB of RAM not zero: the rest is
//! holes in a sparse file), half the RAM written, and every page written (no hole at all).
//! Files go to the target directory, i.e. the page cache of a local disk.
// criterion_group! defines an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gdbvisor::snapshot::notes::blank_cpu;
use gdbvisor::snapshot::{write_core, Snapshot};
use gdbvisor::vmm::memory::GuestRam;

const RAM: u64 = 128 << 20;

/// 128 MiB of guest RAM with the first `used` bytes not zero (one word per 512 bytes).
fn guest(used: u64) -> GuestRam {
    let ram = GuestRam::new(RAM).unwrap();
    let mut page = vec![0u8; 1 << 20];
    for (i, chunk) in page.chunks_mut(512).enumerate() {
        chunk[..8].copy_from_slice(&(i as u64 | 0x5a5a_0000_0000).to_le_bytes());
    }
    for at in (0..used).step_by(page.len()) {
        ram.write(at, &page).unwrap();
    }
    ram
}

fn snapshots(c: &mut Criterion) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let cpus = [blank_cpu(0)];
    let mut group = c.benchmark_group("snapshot 128 MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(RAM));
    for (name, used) in [("booted", 1 << 20), ("half", RAM / 2), ("full", RAM)] {
        let ram = guest(used);
        let path = dir.join(format!("bench-{name}.core"));
        group.bench_function(format!("write {name}"), |b| {
            b.iter(|| write_core(&path, &cpus, &ram).unwrap())
        });
        group.bench_function(format!("open {name}"), |b| {
            b.iter(|| Snapshot::open(&path).unwrap())
        });
        let _ = std::fs::remove_file(&path);
    }
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
