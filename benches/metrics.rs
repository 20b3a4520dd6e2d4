//! # What the worker's metrics cost per batch, against shared atomic counters
//!
//! The worker updates its [`WorkerMetrics`] block once per busy batch (DESIGN.md §6,
//! `appliance/src/metrics`): the receive and transmit batch-size histograms, the batch-time
//! histogram and the busy time: four cells with a relaxed load and a relaxed store each, plus
//! the sums. Every 8 busy batches it stores a snapshot of its plain counters (port, stack, TCP:
//! about a hundred cells). This measures, per batch:
//! - `cells`: the per-batch updates as the worker does them;
//! - `cells+clock`: the same plus the clock read that ends the batch (the worker already
//!   read the clock at its start);
//! - `publish/8`: one snapshot of the port's and stack's counters, divided by 8 (it happens
//!   every 8 busy batches);
//! - `fetch_add`: the same per-batch updates as locked read-modify-writes on shared atomics,
//!   what a counter or histogram shared between threads needs (the `prometheus` crate's
//!   `IntCounter::inc` is a `fetch_add`; its histogram's `observe` adds to a bucket, a count and
//!   a floating-point sum, the last with a compare-and-swap loop), uncontended;
//! - `fetch_add/2 threads`: that, with a second thread adding to the same cells (two workers
//!   sharing one registry's counter).
//!
//! docs/observability.md has the numbers and the decision.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use libos::tcp::TcpStats;
use libos::Stats;
use nic::PortStats;
use xdpos::metrics::WorkerMetrics;

/// The shared-atomic equivalent of one batch's updates.
#[derive(Default)]
struct Shared {
    rx_bucket: [AtomicU64; 10],
    rx_sum: AtomicU64,
    tx_bucket: [AtomicU64; 10],
    tx_sum: AtomicU64,
    ns_bucket: [AtomicU64; 12],
    ns_count: AtomicU64,
    ns_sum: AtomicU64,
    busy: AtomicU64,
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let mut old = cell.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(old) + v).to_bits();
        match cell.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => old = x,
        }
    }
}

impl Shared {
    #[inline(never)]
    fn batch(&self, rx: u64, tx: u64, ns: u64) {
        let r = ceil_log2(rx).min(9);
        self.rx_bucket[r].fetch_add(1, Ordering::Relaxed);
        self.rx_sum.fetch_add(rx, Ordering::Relaxed);
        let t = ceil_log2(tx).min(9);
        self.tx_bucket[t].fetch_add(1, Ordering::Relaxed);
        self.tx_sum.fetch_add(tx, Ordering::Relaxed);
        let n = ceil_log2(ns >> 10).min(11);
        self.ns_bucket[n].fetch_add(1, Ordering::Relaxed);
        self.ns_count.fetch_add(1, Ordering::Relaxed);
        add_f64(&self.ns_sum, ns as f64 * 1e-9);
        self.busy.fetch_add(ns, Ordering::Relaxed);
    }
}

fn ceil_log2(v: u64) -> usize {
    if v <= 1 {
        0
    } else {
        (64 - (v - 1).leading_zeros()) as usize
    }
}

#[inline(never)]
fn cells(m: &WorkerMetrics, rx: usize, tx: usize, ns: u64) {
    m.rx_batch(0, rx);
    m.tx_batch(0, tx);
    m.batch(ns, 1);
}

fn metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_per_batch");
    let m = WorkerMetrics::single("bench");
    let mut i = 0u64;
    g.bench_function("cells", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            cells(
                &m,
                black_box(32 + (i & 31) as usize),
                black_box(32),
                black_box(3000 + (i & 1023)),
            );
        })
    });
    // The worker already read the clock at the start of the batch; metrics add the read at
    // its end (`elapsed`), one per batch, as here.
    let start = std::time::Instant::now();
    g.bench_function("cells+clock", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            m.rx_batch(0, black_box(32 + (i & 31) as usize));
            m.tx_batch(0, black_box(32));
            m.batch(black_box(start).elapsed().as_nanos() as u64 & 0xffff, 1);
        })
    });
    let (ps, st, tcp) = (PortStats::default(), Stats::default(), TcpStats::default());
    g.bench_function("publish/8", |b| {
        b.iter_custom(|iters| {
            let t = std::time::Instant::now();
            for k in 0..iters {
                if k % 8 == 0 {
                    m.publish_loop(k, 0, 0, 0);
                    m.publish_port(0, black_box(&ps));
                    m.publish_stack(0, black_box(&st), black_box(&tcp));
                }
            }
            t.elapsed()
        })
    });
    let shared = Arc::new(Shared::default());
    g.bench_function("fetch_add", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            shared.batch(black_box(32 + (i & 31)), black_box(32), black_box(3000 + (i & 1023)));
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (s, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k = k.wrapping_add(1);
                s.batch(32 + (k & 31), 32, 3000 + (k & 1023));
            }
        })
    };
    g.bench_function("fetch_add/2 threads", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            shared.batch(black_box(32 + (i & 31)), black_box(32), black_box(3000 + (i & 1023)));
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
    g.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
