//! # Who should compute transmit checksums on AF_XDP: the stack, or the port?
//!
//! The AF_XDP port completes `Csum::Partial` in software just before the ring
//! (`nic::offload::csum::complete`, summing the whole datagram). This measures, per datagram,
//! what each choice costs the sender at 18 and 1472 bytes of payload:
//! - `stack`: the stack's generator writes complete checksums (`tx_csum_offload = false`: it
//!   updates its template's checksum incrementally for the 8-byte sequence number);
//! - `partial+complete`: the generator writes `Partial` (`tx_csum_offload = true`) and the port's
//!   completion runs on every frame, as `XskPort::tx_burst` does.
//!
//! An in-place UDP echo never touches its checksum either way (the sum is symmetric), so the
//! generator is the case where the choice shows. docs/udp.md has the numbers.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libos::iface::route::Ipv4Cidr;
use libos::udp::{GeneratorConfig, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};

const BATCH: usize = 64;

fn generator(offload: bool, payload: usize) -> Stack {
    let mut cfg = StackConfig::new(
        EthernetAddress([2, 0, 0, 0, 0, 2]),
        &[Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24)],
    );
    cfg.static_neighbors.push((Ipv4Addr::new(10, 0, 0, 9), EthernetAddress([2, 0, 0, 0, 0, 9])));
    cfg.arp.announce_count = 0;
    cfg.tx_csum_offload = offload;
    let mut s = Stack::new(cfg, Instant::ZERO).expect("valid config");
    let h = s
        .udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9), UdpSocketConfig::default())
        .expect("bind");
    let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 9);
    s.udp_generate(h, Some(GeneratorConfig { dst, payload_len: payload, count: None }))
        .expect("generator");
    s
}

fn tx_csum(c: &mut Criterion) {
    let mut g = c.benchmark_group("tx_csum");
    g.throughput(Throughput::Elements(BATCH as u64));
    for payload in [18usize, 1472] {
        let mut slots: Vec<Frame> = (0..BATCH).map(|_| Frame::empty(2048)).collect();
        let mut s = generator(false, payload);
        g.bench_function(BenchmarkId::new("stack", payload), |b| {
            b.iter(|| s.poll_tx(Instant::ZERO, &mut FrameSlots::new(black_box(&mut slots))))
        });
        let mut s = generator(true, payload);
        g.bench_function(BenchmarkId::new("partial+complete", payload), |b| {
            b.iter(|| {
                s.poll_tx(Instant::ZERO, &mut FrameSlots::new(black_box(&mut slots)));
                for f in &mut slots {
                    let len = f.len;
                    nic::offload::csum::complete(&mut f.buf[..len], &mut f.hdr).expect("in bounds");
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tx_csum);
criterion_main!(benches);
