//! # The worker loop with its metrics and an armed capture allocates nothing per batch
//!
//! A counting global allocator (`stats_alloc`, no `unsafe` of ours) measures a region in which
//! a worker over an in-memory port runs its real loop (`Worker::run_loop`: receive, the UDP
//! echo in place, transmit, the per-batch metrics updates and batch timing, the counter
//! snapshots every 8 busy batches, the idle checks and sleeps) while a peer sends bursts of
//! datagrams and reads the echoes, with a packet capture armed on the worker (its buffer is
//! allocated when armed, before the region). After a warm-up, the region must count zero
//! allocations, every echo must have come back, and the metrics and the capture must have seen
//! the traffic. Runs without libtest's harness, so no other thread allocates inside the region.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use libos::iface::route::Ipv4Cidr;
use libos::sim::frames;
use libos::udp::{UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Instant, Stack, StackConfig};
use nic::mem::{pair, MemConfig, MemPort};
use nic::{Burst, Port};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use xdpos::capture::{CaptureSlot, Filter};
use xdpos::metrics::{Exposition, WorkerMetrics};
use xdpos::worker::{Clock, Worker, WorkerConfig};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
const BURST: usize = 32;
const ROUNDS: usize = 200;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// Puts `frames` on the wire from the peer (no allocation: the frames are built beforehand).
fn send(peer: &mut MemPort, frames: &[Vec<u8>], b: &mut Burst) {
    peer.reclaim();
    assert_eq!(peer.alloc_burst(b, frames.len()), frames.len());
    for (d, f) in b.as_mut_slice().iter_mut().zip(frames) {
        d.len = f.len() as u32;
    }
    for (d, f) in b.iter().zip(frames) {
        peer.room_mut(d)[..f.len()].copy_from_slice(f);
    }
    assert_eq!(peer.tx_burst(b), frames.len());
}

/// Reads and frees what reached the peer; returns how many frames.
fn drain(peer: &mut MemPort, b: &mut Burst) -> usize {
    let mut n = 0;
    while peer.rx_burst(b) > 0 {
        n += b.len();
        peer.free_burst(b);
    }
    n
}

fn main() {
    let (mut peer, port) = pair(MemConfig::default());
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(ip(2), 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((ip(1), PEER));
    let mut stack = Stack::new(cfg, Instant::ZERO).unwrap();
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7);
    stack.udp_bind(any, UdpSocketConfig::mode(UdpMode::Echo)).unwrap();
    let metrics = WorkerMetrics::single("test");
    let slot = Arc::new(CaptureSlot::default());
    assert!(slot.arm(0, Filter::default(), 64, u64::MAX));
    let wcfg = WorkerConfig {
        spin: Duration::ZERO,
        idle_wait: Duration::from_millis(1),
        ..WorkerConfig::default()
    };
    let mut w = Worker::new(port, stack, (), wcfg, Clock::new())
        .with_metrics(metrics.clone())
        .with_capture(slot.clone());
    let datagrams: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            let src = SocketAddrV4::new(ip(1), 4000 + i as u16);
            frames::udp_frame(PEER, US, src, SocketAddrV4::new(ip(2), 7), &[i as u8; 18])
        })
        .collect();
    let stop = AtomicBool::new(false);
    let mut b = Burst::new();
    let round = |w: &mut Worker<MemPort>, peer: &mut MemPort, b: &mut Burst| -> usize {
        send(peer, &datagrams, b);
        w.run_loop(&stop, Some(StdInstant::now() + Duration::from_millis(2)));
        drain(peer, b)
    };
    // Warm-up: every path once (first batch, snapshots, the slow gauges, idle sleeps).
    let mut echoed = 0;
    for _ in 0..20 {
        echoed += round(&mut w, &mut peer, &mut b);
    }
    assert_eq!(echoed, 20 * BURST, "warm-up echoes");
    let reg = Region::new(GLOBAL);
    let mut echoed = 0;
    for _ in 0..ROUNDS {
        echoed += round(&mut w, &mut peer, &mut b);
    }
    let change = reg.change();
    assert_eq!(echoed, ROUNDS * BURST, "every datagram echoed");
    assert_eq!((change.allocations, change.reallocations), (0, 0), "{change:?}");
    // The metrics and the capture saw the traffic (checked after the region: scraping allocates).
    let mut e = Exposition::new();
    metrics.collect(&mut e);
    let text = e.render();
    let rx = text
        .lines()
        .find(|l| l.starts_with("xdpos_rx_packets_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .unwrap();
    assert_eq!(rx, (20 + ROUNDS) * BURST, "{text}");
    let batches = "xdpos_batch_duration_seconds_count{worker=\"0\",interface=\"\",queue=\"0\"} ";
    assert!(text.contains(batches), "{text}");
    assert!(!text.contains(&format!("{batches}0\n")), "{text}");
    assert!(slot.armed() && slot.missed() == 0, "the capture took every frame");
    slot.disarm();
    let r = w.finish();
    assert!(r.frames.is_ok(), "{:?}", r.frames);
    println!(
        "worker_no_alloc: {} rounds of {BURST} datagrams echoed with metrics and an armed capture, 0 allocations",
        ROUNDS
    );
}
