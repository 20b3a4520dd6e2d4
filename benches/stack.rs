//! # Stack micro-benchmarks: ns per packet on the UDP fast paths
//!
//! One `libos::Stack` fed batches of 64 frames through `handle_rx`, as a worker feeds it a
//! receive burst: UDP echo answered in place, UDP sink, UDP queue (copy into the socket ring and
//! drain with `udp_recv`), ICMP echo, and the generator filling 64 transmit slots through
//! `poll_tx`. `Throughput::Elements(64)`, so criterion reports packets per second; divide the
//! time per iteration by 64 for ns per packet.
//!
//! The echo and ICMP cases rewrite their frames, so each iteration first copies the 64
//! pristine frames back (`restore_only` measures that copy alone, to subtract it). Checksums
//! are verified in software (`Csum::None`), as on a copy-mode AF_XDP device.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libos::iface::route::Ipv4Cidr;
use libos::sim::frames;
use libos::udp::{GeneratorConfig, UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};

const BATCH: usize = 64;
const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

fn sa(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), port)
}

fn stack() -> Stack {
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24)]);
    cfg.static_neighbors.push((Ipv4Addr::new(10, 0, 0, 9), PEER));
    cfg.arp.announce_count = 0;
    let mut s = Stack::new(cfg, Instant::ZERO).expect("valid config");
    let any = |p| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
    s.udp_bind(any(7), UdpSocketConfig::mode(UdpMode::Echo)).expect("bind");
    s.udp_bind(any(9), UdpSocketConfig::mode(UdpMode::Sink)).expect("bind");
    s
}

fn batch_of(frame: &[u8]) -> Vec<Frame> {
    (0..BATCH).map(|_| Frame::new(frame, 2048)).collect()
}

fn restore(batch: &mut [Frame], frame: &[u8]) {
    for f in batch {
        f.buf[..frame.len()].copy_from_slice(frame);
        f.len = frame.len();
    }
}

fn udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("stack");
    g.throughput(Throughput::Elements(BATCH as u64));
    for payload in [18usize, 1472] {
        let echo = frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 7), &vec![0xab; payload]);
        let sink = frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 9), &vec![0xcd; payload]);
        let mut s = stack();
        let mut b = batch_of(&echo);
        g.bench_function(BenchmarkId::new("restore_only", payload), |bench| {
            bench.iter(|| restore(black_box(&mut b), &echo))
        });
        g.bench_function(BenchmarkId::new("udp_echo", payload), |bench| {
            bench.iter(|| {
                restore(&mut b, &echo);
                s.handle_rx(Instant::ZERO, black_box(&mut b[..]));
            })
        });
        let mut b = batch_of(&sink);
        g.bench_function(BenchmarkId::new("udp_sink", payload), |bench| {
            bench.iter(|| s.handle_rx(Instant::ZERO, black_box(&mut b[..])))
        });
        let mut q = stack();
        let h = q
            .udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53), UdpSocketConfig::default())
            .expect("bind");
        let queued = frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 53), &vec![0xef; payload]);
        let mut b = batch_of(&queued);
        g.bench_function(BenchmarkId::new("udp_queue_and_recv", payload), |bench| {
            bench.iter(|| {
                q.handle_rx(Instant::ZERO, black_box(&mut b[..]));
                q.udp_recv(h, BATCH, |_, p| {
                    black_box(p);
                })
            })
        });
        let mut gs = stack();
        let gh = gs
            .udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), UdpSocketConfig::default())
            .expect("bind");
        let cfg = GeneratorConfig { dst: sa(9, 9), payload_len: payload, count: None };
        gs.udp_generate(gh, Some(cfg)).expect("generator");
        let mut slots: Vec<Frame> = (0..BATCH).map(|_| Frame::empty(2048)).collect();
        g.bench_function(BenchmarkId::new("udp_generator", payload), |bench| {
            bench.iter(|| gs.poll_tx(Instant::ZERO, &mut FrameSlots::new(black_box(&mut slots))))
        });
    }
    let ping = frames::icmp_echo_frame(
        PEER,
        US,
        Ipv4Addr::new(10, 0, 0, 9),
        Ipv4Addr::new(10, 0, 0, 2),
        1,
        1,
        &[0x55; 56],
    );
    let mut s = stack();
    let mut b = batch_of(&ping);
    g.bench_function("icmp_echo_56", |bench| {
        bench.iter(|| {
            restore(&mut b, &ping);
            s.handle_rx(Instant::ZERO, black_box(&mut b[..]));
        })
    });
    g.finish();
}

criterion_group!(benches, udp);
criterion_main!(benches);
