//! # The router's forwarding paths allocate nothing
//!
//! A counting global allocator (`stats_alloc`, so no `unsafe` of ours) measures a region in
//! which a warmed-up two-interface router forwards batches in place both ways (a million-route
//! table behind it), answers a ping and an ARP request for itself, drops a TTL-expired packet
//! with a time-exceeded error, a packet without a route, and parks packets for a next hop that
//! is resolving, and sends what its stacks queued. DESIGN §9: no allocation per packet.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use libos::fib::{internet_like, NextHop};
use libos::forward::{interface_routes, Action, Router, RouterConfig};
use libos::iface::route::Ipv4Cidr;
use libos::sim::frames;
use libos::wire::{EthernetAddress, Ipv4Packet};
use libos::{Frame, FrameSlots, Instant, StackConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const R0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf0]);
const R1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0xf1]);
const HA: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0a]);
const HB: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 0x0b]);

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn forwarding_does_not_allocate() {
    let c0 = StackConfig::new(R0, &[Ipv4Cidr::new(ip(10, 0, 1, 1), 24)]);
    let c1 = StackConfig::new(R1, &[Ipv4Cidr::new(ip(10, 0, 2, 1), 24)]);
    let mut b = interface_routes(&[c0.clone(), c1.clone()]);
    for p in internet_like(1_000_000, 3) {
        b.insert(p, NextHop::Forward { iface: 1, via: Some(ip(10, 0, 2, 2)) });
    }
    let mut r =
        Router::new(RouterConfig::new(vec![c0, c1]), Arc::new(b.build()), Instant::ZERO).unwrap();
    r.stack_mut(0).add_static_neighbor(ip(10, 0, 1, 2), HA);
    r.stack_mut(1).add_static_neighbor(ip(10, 0, 2, 2), HB);
    let sa = |a: Ipv4Addr, p| SocketAddrV4::new(a, p);
    let (a, b2) = (ip(10, 0, 1, 2), ip(10, 0, 2, 2));
    let mut expiring = frames::udp_frame(HA, R0, sa(a, 1), sa(b2, 2), &[0; 18]);
    Ipv4Packet::new_unchecked(&mut expiring[14..]).set_ttl(1);
    let from_a: Vec<Vec<u8>> = vec![
        frames::udp_frame(HA, R0, sa(a, 1000), sa(b2, 9), &[1; 18]),
        frames::udp_frame(HA, R0, sa(a, 1000), sa(ip(1, 2, 3, 4), 9), &[2; 18]),
        frames::icmp_echo_frame(HA, R0, a, ip(10, 0, 2, 1), 1, 1, &[3; 32]),
        frames::arp_request(HA, a, ip(10, 0, 1, 1)),
        expiring,
        frames::udp_frame(HA, R0, sa(a, 1000), sa(ip(10, 0, 3, 3), 9), &[4; 18]),
        // Resolving: parked (the pending queue fills, then drops are counted).
        frames::udp_frame(HA, R0, sa(a, 1000), sa(ip(10, 0, 2, 77), 9), &[5; 18]),
    ];
    let from_b: Vec<Vec<u8>> = vec![frames::udp_frame(HB, R1, sa(b2, 9), sa(a, 1000), &[6; 18])];
    let mut batch: Vec<Frame> = (0..64).map(|_| Frame::empty(2048)).collect();
    let mut actions = vec![Action::Free; 64];
    let mut slots: Vec<Frame> = (0..64).map(|_| Frame::empty(2048)).collect();
    let mut round = |r: &mut Router, t: u64| {
        let now = Instant::from_millis(t);
        for (port, kinds) in [(0, &from_a), (1, &from_b)] {
            for (i, f) in batch.iter_mut().enumerate() {
                let k = &kinds[i % kinds.len()];
                f.buf[..k.len()].copy_from_slice(k);
                f.len = k.len();
            }
            r.handle_rx(now, port, &mut batch[..], &mut actions);
        }
        r.handle_timeout(now);
        for port in 0..2 {
            r.poll_tx(now, port, &mut FrameSlots::new(&mut slots));
        }
    };
    for t in 0..4 {
        round(&mut r, t);
    }
    let region = Region::new(GLOBAL);
    for t in 4..1000 {
        round(&mut r, t);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "{change:?}");
    let s = r.stats();
    assert!(s.forwarded > 50_000 && s.local > 0 && s.arp_queued > 0, "{s:?}");
    assert!(s.total_drops() > 0 && r.stack(0).stats().icmp_errors_sent > 0, "{s:?}");
    // The counter does see allocations.
    let region = Region::new(GLOBAL);
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(region.change().allocations >= 1);
}

/// Run without libtest (`harness = false` in Cargo.toml): one thread, so the global counters
/// see only the code under test.
fn main() {
    forwarding_does_not_allocate();
    println!("test forwarding_does_not_allocate ... ok");
}
