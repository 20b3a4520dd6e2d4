//! # Checksum micro-benchmarks
//!
//! The RFC 1071 sum (`libos::wire::checksum::sum`, eight bytes at a time) against the textbook
//! byte-pair loop (`checksum::reference`) over 64, 1500 and 65535 bytes, and the RFC 1624
//! incremental update. `Throughput::Bytes`, so criterion reports GB/s as well as ns per call.
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libos::wire::checksum;

fn sums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [64usize, 1500, 65535] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("sum", len), &data, |b, d| {
            b.iter(|| checksum::sum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("reference", len), &data, |b, d| {
            b.iter(|| checksum::reference(black_box(d)))
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("update16", |b| {
        b.iter(|| checksum::update16(black_box(0xb861), black_box(0x4011), black_box(0x3f11)))
    });
    g.finish();
}

criterion_group!(benches, sums);
criterion_main!(benches);
