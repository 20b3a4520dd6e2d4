//! # Software offload micro-benchmarks
//!
//! - checksum completion (`nic::offload::csum::complete`) of a 1500-byte TCP frame;
//! - TSO: splitting a 64 KiB TCP/IPv4 super-segment at MSS 1448 (46 segments) into
//!   preallocated buffers (`nic::offload::tso::split_frame`);
//! - GRO: coalescing a burst of 64 in-order 1448-byte segments of one flow
//!   (`nic::offload::gro::Gro::coalesce`), with checksums to verify (`Csum::None`) and
//!   already verified by the device (`Csum::Valid`).
//!
//! Throughput is in segments (`Elements`) for TSO and GRO, bytes for checksum completion.
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use libos::wire::checksum;
use libos::wire::{Csum, Gso, NetHdr};
use nic::offload::csum;
use nic::offload::gro::{Gro, GroConfig};
use nic::offload::tso::{split_frame, SegmentSink};

const MSS: usize = 1448;
const SRC: [u8; 4] = [10, 0, 0, 1];
const DST: [u8; 4] = [10, 0, 0, 2];

/// Ethernet + IPv4 + TCP with timestamps (66 header bytes) + payload. `full`: both checksums
/// complete (as received); otherwise the TCP field holds the pseudo-header sum without length
/// (a super-segment for TSO).
fn tcp_frame(seq: u32, id: u16, payload: &[u8], full: bool) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 32 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&DST);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&7u32.to_be_bytes());
    f.extend_from_slice(&[0x80, 0x10, 0x01, 0xf5, 0, 0, 0, 0]);
    f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.extend_from_slice(payload);
    let tcp_len = if full { (f.len() - 34) as u16 } else { 0 };
    let l = tcp_len.to_be_bytes();
    let pseudo = [SRC[0], SRC[1], SRC[2], SRC[3], DST[0], DST[1], DST[2], DST[3], 0, 6, l[0], l[1]];
    let ph = checksum::sum(&pseudo);
    if full {
        let s = checksum::add(ph, checksum::sum(&f[34..]));
        f[50..52].copy_from_slice(&(!s).to_be_bytes());
    } else {
        f[50..52].copy_from_slice(&ph.to_be_bytes());
    }
    f
}

fn completion(c: &mut Criterion) {
    let payload = vec![0x5au8; 1500 - 66];
    let mut frame = tcp_frame(1, 1, &payload, false);
    let partial = NetHdr { csum: Csum::Partial { start: 34, offset: 16 }, ..NetHdr::NONE };
    let mut g = c.benchmark_group("csum");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("complete/1500", |b| {
        b.iter(|| {
            let mut hdr = partial;
            csum::complete(black_box(&mut frame), &mut hdr).unwrap();
            hdr
        })
    });
    g.bench_function("verify_ipv4_l4/1500", |b| b.iter(|| csum::verify_ipv4_l4(black_box(&frame))));
    g.finish();
}

/// Writes segments one after another into a preallocated buffer, 2 KiB apart.
struct Slots {
    buf: Vec<u8>,
    n: usize,
}

impl SegmentSink for Slots {
    fn next_buffer(&mut self, _len: usize) -> Option<&mut [u8]> {
        self.buf.get_mut(self.n * 2048..(self.n + 1) * 2048)
    }
    fn commit(&mut self, _len: usize) {
        self.n += 1;
    }
}

fn tso(c: &mut Criterion) {
    let payload: Vec<u8> = (0..65535 - 52).map(|i| i as u8).collect();
    let sup = tcp_frame(1000, 1, &payload, false);
    let hdr = NetHdr {
        csum: Csum::Partial { start: 34, offset: 16 },
        gso: Gso::TcpV4 { size: MSS as u16, hdr_len: 66 },
        segments: 0,
    };
    let segments = payload.len().div_ceil(MSS);
    let mut slots = Slots { buf: vec![0; 2048 * segments], n: 0 };
    let mut g = c.benchmark_group("tso");
    g.throughput(Throughput::Elements(segments as u64));
    g.bench_function("split/64KiB/mss1448", |b| {
        b.iter(|| {
            slots.n = 0;
            split_frame(black_box(&sup), &hdr, &mut slots).unwrap()
        })
    });
    g.finish();
}

fn gro(c: &mut Criterion) {
    let mut frames: Vec<(Vec<u8>, NetHdr)> = (0..64)
        .map(|i| {
            let payload = vec![i as u8; MSS];
            (tcp_frame(1000 + (i * MSS) as u32, i as u16, &payload, true), NetHdr::NONE)
        })
        .collect();
    let mut gro = Gro::new(GroConfig::on());
    let mut g = c.benchmark_group("gro");
    g.throughput(Throughput::Elements(64));
    g.bench_function("coalesce/64x1448/verify", |b| {
        b.iter(|| {
            gro.coalesce(black_box(&frames[..]));
            gro.deliveries().len()
        })
    });
    for f in &mut frames {
        f.1.csum = Csum::Valid;
    }
    g.bench_function("coalesce/64x1448/valid", |b| {
        b.iter(|| {
            gro.coalesce(black_box(&frames[..]));
            gro.deliveries().len()
        })
    });
    let mut off = Gro::new(GroConfig::default());
    g.bench_function("coalesce/64x1448/disabled", |b| {
        b.iter(|| {
            off.coalesce(black_box(&frames[..]));
            off.deliveries().len()
        })
    });
    g.finish();
}

criterion_group!(benches, completion, tso, gro);
criterion_main!(benches);
