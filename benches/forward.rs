//! # Router micro-benchmarks: ns per lookup and per forwarded packet, one route vs a million
//!
//! - `fib/lookup`: [`libos::fib::Fib::lookup`] of 65,536 destinations spread over the
//!   unicast space (a different /24 each, so the first-level table is read at 65,536 places,
//!   4 MiB of cache lines on as many pages: cache and TLB misses as with real traffic), in a
//!   table of one default route and of a million routes with the BGP length mix.
//!   `Throughput::Elements(65536)`.
//! - `fib/build`: [`libos::fib::FibBuilder::build`] of a million routes (what a route change
//!   costs the control thread; the workers keep forwarding on the old table meanwhile).
//! - `router/forward`: [`libos::forward::Router::handle_rx`] on batches of 64 frames (64-byte
//!   UDP frames, destinations cycling over the same 65,536 addresses) forwarded in place: header
//!   checks, one lookup, the next hop (one ARP-cache lookup per batch when it repeats), TTL
//!   and checksum update, MAC rewrite. Each iteration restores the 64 frames first
//!   (`restore_only` measures that alone, to subtract). `Throughput::Elements(64)`.
//!
//! The whole-system numbers (AF_XDP on veth, where the kernel's copies dominate) come from
//! `xdpos bench fwd`.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libos::fib::{internet_like, Fib, NextHop};
use libos::forward::{interface_routes, Action, Router, RouterConfig};
use libos::iface::route::Ipv4Cidr;
use libos::sim::frames;
use libos::wire::{checksum, EthernetAddress};
use libos::{Frame, Instant, StackConfig};

const R0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf0]);
const R1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf1]);
const HA: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0a]);
const HB: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0b]);
const DSTS: usize = 65536;
const BATCH: usize = 64;

fn configs() -> [StackConfig; 2] {
    let mut c0 = StackConfig::new(R0, &[Ipv4Cidr::new(Ipv4Addr::new(10, 0, 1, 1), 24)]);
    let mut c1 = StackConfig::new(R1, &[Ipv4Cidr::new(Ipv4Addr::new(10, 0, 2, 1), 24)]);
    c0.arp.announce_count = 0;
    c1.arp.announce_count = 0;
    [c0, c1]
}

/// The interfaces' routes, a default route via B and `n - 1` random prefixes via B.
fn table(n: usize) -> Arc<Fib> {
    Arc::new(builder(n).build())
}

fn builder(n: usize) -> libos::fib::FibBuilder {
    let via_b = NextHop::Forward { iface: 1, via: Some(Ipv4Addr::new(10, 0, 2, 2)) };
    let mut b = interface_routes(&configs());
    b.insert(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0), via_b);
    for p in internet_like(n.saturating_sub(1), 42) {
        b.insert(p, via_b);
    }
    b
}

/// `DSTS` addresses, one per /24 stride over 1.0.0.0 – 223.255.255.255.
fn destinations() -> Vec<Ipv4Addr> {
    let stride = ((223u64 << 24) / DSTS as u64) as u32;
    (0..DSTS as u32)
        .map(|k| {
            let mut a = (1u32 << 24).wrapping_add(k.wrapping_mul(stride)) | 1;
            if matches!(a >> 24, 10 | 127) {
                a += 1 << 24;
            }
            Ipv4Addr::from(a)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("fib");
    g.throughput(Throughput::Elements(DSTS as u64));
    let dsts = destinations();
    for routes in [1usize, 1_000_000] {
        let fib = table(routes);
        g.bench_with_input(BenchmarkId::new("lookup", routes), &fib, |b, fib| {
            b.iter(|| {
                let mut acc = 0u32;
                for d in &dsts {
                    acc = acc.wrapping_add(fib.lookup_index(black_box(d.to_bits())));
                }
                acc
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("fib");
    g.sample_size(10);
    let b = builder(1_000_000);
    g.bench_function("build/1000000", |bench| bench.iter(|| black_box(b.build())));
    g.finish();
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(BATCH as u64));
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 4000);
    let pristine: Vec<Vec<u8>> = destinations()
        .iter()
        .map(|&d| frames::udp_frame(HA, R0, src, SocketAddrV4::new(d, 9), &[0u8; 18]))
        .collect();
    let restore = |batch: &mut [Frame], round: usize| {
        for (i, f) in batch.iter_mut().enumerate() {
            let p = &pristine[(round * BATCH + i) % DSTS];
            f.buf[..p.len()].copy_from_slice(p);
            f.len = p.len();
        }
    };
    let mut batch: Vec<Frame> = (0..BATCH).map(|_| Frame::empty(2048)).collect();
    let mut round = 0usize;
    g.bench_function("restore_only", |b| {
        b.iter(|| {
            round += 1;
            restore(&mut batch, round);
            black_box(&batch);
        })
    });
    for routes in [1usize, 1_000_000] {
        let [c0, c1] = configs();
        let mut r = Router::new(RouterConfig::new(vec![c0, c1]), table(routes), Instant::ZERO)
            .expect("valid router");
        r.stack_mut(1).add_static_neighbor(Ipv4Addr::new(10, 0, 2, 2), HB);
        let mut actions = vec![Action::Free; BATCH];
        g.bench_function(BenchmarkId::new("forward", routes), |b| {
            b.iter(|| {
                round += 1;
                restore(&mut batch, round);
                r.handle_rx(Instant::ZERO, 0, &mut batch[..], &mut actions);
                black_box(&actions);
            })
        });
        assert_eq!(r.stats().total_drops(), 0, "{:?}", r.stats());
        assert!(matches!(actions[0], Action::Send { port: 1, .. }));
        // The forwarded frame is valid: TTL 63 and a header that still sums right.
        let f = &batch[0].buf[14..34];
        assert_eq!((f[8], checksum::sum(f)), (63, 0xffff));
    }
    g.finish();
}

criterion_group!(benches, lookup, forward);
criterion_main!(benches);
