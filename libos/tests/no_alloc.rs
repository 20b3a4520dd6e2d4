//! # The steady-state fast paths allocate nothing
//!
//! A counting global allocator (`stats_alloc`, so no `unsafe` of ours) measures a region in
//! which a warmed-up stack receives batches for every fast path (UDP echo in place, sink,
//! queue and zero-copy delivery, ICMP echo, ARP request), sends queued datagrams and generator
//! traffic, and runs its timers. DESIGN §9: no allocation per packet.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};

use libos::iface::route::Ipv4Cidr;
use libos::sim::frames;
use libos::udp::{GeneratorConfig, UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

fn sa(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), port)
}

fn steady_state_fast_paths_do_not_allocate() {
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24)]);
    cfg.static_neighbors.push((Ipv4Addr::new(10, 0, 0, 9), PEER));
    let mut stack = Stack::new(cfg, Instant::ZERO).unwrap();
    let any = |p| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
    stack.udp_bind(any(7), UdpSocketConfig::mode(UdpMode::Echo)).unwrap();
    stack.udp_bind(any(10), UdpSocketConfig::mode(UdpMode::Sink)).unwrap();
    stack.udp_bind(any(11), UdpSocketConfig::mode(UdpMode::Deliver)).unwrap();
    let q = stack.udp_bind(any(9), UdpSocketConfig::mode(UdpMode::Queue)).unwrap();
    let g = stack.udp_bind(any(0), UdpSocketConfig::mode(UdpMode::Sink)).unwrap();
    stack
        .udp_generate(g, Some(GeneratorConfig { dst: sa(9, 9), payload_len: 18, count: None }))
        .unwrap();

    let kinds: Vec<Vec<u8>> = vec![
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 7), &[1; 18]),
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 10), &[2; 18]),
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 9), &[3; 18]),
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 11), &[4; 18]),
        frames::icmp_echo_frame(
            PEER,
            US,
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(10, 0, 0, 2),
            1,
            1,
            &[5; 32],
        ),
        frames::arp_request(PEER, Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 2)),
        frames::udp_frame(PEER, US, sa(9, 4000), sa(2, 12), &[6; 18]),
    ];
    let mut batch: Vec<Frame> =
        (0..64).map(|i| Frame::new(&kinds[i % kinds.len()], 2048)).collect();
    let mut slots: Vec<Frame> = (0..64).map(|_| Frame::empty(2048)).collect();
    let mut round = |stack: &mut Stack, t: u64| {
        for (i, f) in batch.iter_mut().enumerate() {
            let k = &kinds[i % kinds.len()];
            f.buf[..k.len()].copy_from_slice(k);
            f.len = k.len();
        }
        let now = Instant::from_millis(t);
        stack.handle_rx(now, &mut batch[..]);
        stack.udp_recv(q, 64, |_, _| {}).unwrap();
        stack.udp_send(q, sa(9, 53), &[7; 100]).unwrap();
        stack.handle_timeout(now);
        stack.poll_tx(now, &mut FrameSlots::new(&mut slots));
    };
    for t in 0..4 {
        round(&mut stack, t);
    }
    let region = Region::new(GLOBAL);
    for t in 4..1000 {
        round(&mut stack, t);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "{change:?}");
    assert!(stack.stats().tx_in_place > 0 && stack.stats().udp_tx_datagrams > 0);
    // The counter does see allocations.
    let region = Region::new(GLOBAL);
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(region.change().allocations >= 1);
}

/// Run without libtest (`harness = false` in Cargo.toml): one thread, so the global counters
/// see only the code under test.
fn main() {
    steady_state_fast_paths_do_not_allocate();
    println!("test steady_state_fast_paths_do_not_allocate ... ok");
}
