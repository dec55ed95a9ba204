//! Walker throughput: 4-level translations, and a full enumeration of a 4-level table mapping
//! 4 GiB in 4 KiB pages (1M PTEs).
// criterion_group! defines an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gdbvisor::x86::tables::{self, EnumOptions};
use gdbvisor::x86::{translate, Access, ControlRegs, VecMemory};

const GIB: u64 = 1 << 30;

/// PML4 at 0x1000, PDPT at 0x2000, 4 PDs at 0x3000.., 2048 PTs at 0x7000..; linear 0..4 GiB
/// maps to physical 0x1_0000_0000.. (beyond RAM: only the tables need to be readable).
fn four_gib_in_4k_pages() -> (VecMemory, ControlRegs) {
    let pts = 0x7000u64;
    let mut m = VecMemory::new((pts + 2048 * 0x1000) as usize);
    m.write_u64(0x1000, 0x2000 | 3);
    for pd in 0..4u64 {
        m.write_u64(0x2000 + pd * 8, (0x3000 + pd * 0x1000) | 3);
        for i in 0..512u64 {
            let pt = pts + (pd * 512 + i) * 0x1000;
            m.write_u64(0x3000 + pd * 0x1000 + i * 8, pt | 3);
        }
    }
    let bytes = m.as_bytes_mut();
    for page in 0..((4 * GIB) >> 12) {
        let e = (0x1_0000_0000 + (page << 12)) | 0x63;
        let at = (pts + page * 8) as usize;
        bytes[at..at + 8].copy_from_slice(&e.to_le_bytes());
    }
    (m, ControlRegs::new(0x8001_0011, 0x1000, 0x20, 0xd00))
}

/// Page-granular pseudo-random addresses over the 4 GiB (an LCG; no two neighbours share a page).
fn addresses(n: usize, span_pages: u64) -> Vec<u64> {
    let mut x = 12345u64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 20) % span_pages) << 12 | (x & 0xff8)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (mem, regs) = four_gib_in_4k_pages();
    let mut g = c.benchmark_group("translate_4level");

    let cold = addresses(4096, (4 * GIB) >> 12);
    g.throughput(Throughput::Elements(cold.len() as u64));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            for &a in &cold {
                black_box(translate(&mem, &regs, a, Access::DEBUGGER).unwrap());
            }
        })
    });

    g.finish();

    let mut g = c.benchmark_group("enumerate_4gib_4k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1 << 20));
    g.bench_function("ranges", |b| {
        b.iter(|| {
            let e = tables::enumerate(&mem, &regs, EnumOptions::default(), false);
            assert_eq!(e.ranges.len(), 1);
            assert!(!e.truncated);
            black_box(e)
        })
    });
    g.bench_function("every_leaf", |b| {
        b.iter(|| {
            let e = tables::enumerate(&mem, &regs, EnumOptions::default(), true);
            assert_eq!(e.leaves.len(), 1 << 20);
            black_box(e)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
