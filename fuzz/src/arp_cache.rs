//! Target of the ARP cache (`libos::iface::neighbor`) through a [`Stack`]: arbitrary ARP frames
//! (requests and replies, spoofed senders, our own address claimed, zero and broadcast
//! senders, unknown operations and types, truncated and padded), datagrams sent to a few
//! neighbours (which start resolutions and queue behind them), and time steps through the
//! retransmission, probe, reachable and garbage-collection timers.
//!
//! Invariants: no panic; the table never holds more than its capacity, nor the pending pool
//! more than its slots, nor one neighbour more than its share; the static entry never changes;
//! no entry for one of our addresses or for 0.0.0.0; an entry exists only for an address we
//! looked up or that asked for one of ours (no entry from unsolicited replies, Linux's
//! `arp_accept = 0`); every ARP frame the stack sends carries our MAC and address as sender;
//! a resolved neighbour's queued datagrams leave at the next `poll_tx`; timers never
//! livelock.

use core::time::Duration;
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use arbitrary::{Result, Unstructured};
use libos::batch::Frame;
use libos::iface::neighbor::NeighborState;
use libos::iface::route::Ipv4Cidr;
use libos::udp::{UdpMode, UdpSocketConfig};
use libos::wire::{ArpOperation, ArpPacket, EtherType, EthernetAddress, EthernetFrame};
use libos::{Instant, Stack, StackConfig};

use crate::{advance, drain_tx};

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const US_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const STATIC_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc8]);

const IPS: [Ipv4Addr; 12] = [
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 3),
    Ipv4Addr::new(10, 0, 0, 4),
    Ipv4Addr::new(10, 0, 0, 5),
    Ipv4Addr::new(10, 0, 0, 6),
    Ipv4Addr::new(10, 0, 0, 7),
    Ipv4Addr::new(10, 0, 0, 8),
    US_IP,
    STATIC_IP,
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(10, 0, 0, 255),
];

const MACS: [EthernetAddress; 6] = [
    EthernetAddress([2, 0, 0, 0, 0, 2]),
    EthernetAddress([2, 0, 0, 0, 0, 3]),
    EthernetAddress([0x0a, 0xbb, 0, 0, 0, 4]),
    US,
    EthernetAddress::BROADCAST,
    EthernetAddress([1, 0, 0x5e, 0, 0, 1]),
];

fn arp_frame(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut f = vec![0u8; 42];
    let dst = *u.choose(&[US, EthernetAddress::BROADCAST, MACS[0]])?;
    let sha = *u.choose(&MACS)?;
    let eth_src = if u.ratio(7, 8)? { sha } else { *u.choose(&MACS)? };
    {
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        e.set_dst_addr(dst);
        e.set_src_addr(eth_src);
        e.set_ethertype(EtherType::Arp);
    }
    let op = match u.int_in_range(0..=7)? {
        0..=3 => ArpOperation::Request,
        4..=6 => ArpOperation::Reply,
        _ => ArpOperation::Unknown(u.arbitrary()?),
    };
    {
        let mut p = ArpPacket::new_unchecked(&mut f[14..]);
        p.set_ethernet_ipv4();
        p.set_operation(op);
        p.set_sender_hardware_addr(sha);
        p.set_sender_protocol_addr(*u.choose(&IPS)?);
        p.set_target_hardware_addr(*u.choose(&MACS)?);
        p.set_target_protocol_addr(if u.ratio(2, 3)? { US_IP } else { *u.choose(&IPS)? });
    }
    // Now and then a corrupted type or length field, a truncation or Ethernet padding.
    match u.int_in_range(0..=15)? {
        0 => {
            let at = u.int_in_range(14..=21)?;
            f[at] = u.arbitrary()?;
        }
        1 => f.truncate(u.int_in_range(0..=41)?),
        2 => f.resize(60, 0),
        _ => {}
    }
    Ok(f)
}

pub fn run(data: &[u8]) {
    let _ = run_u(&mut Unstructured::new(data));
}

fn run_u(u: &mut Unstructured<'_>) -> Result<()> {
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(US_IP, 24)]);
    cfg.arp.cache_size = *u.choose(&[4usize, 8, 64])?;
    cfg.arp.pending_slots = u.int_in_range(0..=6)?;
    cfg.arp.pending_per_neighbor = u.int_in_range(0..=3)?;
    cfg.arp.announce_count = u.int_in_range(0..=2)?;
    cfg.arp.mcast_probes = u.int_in_range(0..=3)?;
    cfg.arp.ucast_probes = u.int_in_range(0..=3)?;
    cfg.static_neighbors.push((STATIC_IP, STATIC_MAC));
    // No TCP here: a small table (the default reserves 1024 connections of 512 KiB each, which
    // made every input cost a fifth of a second under ASan).
    cfg.tcp.max_connections = 1;
    cfg.tcp.max_time_wait = 1;
    cfg.tcp.rx_buffer = 1024;
    cfg.tcp.tx_buffer = 1024;
    let arp = cfg.arp;
    let mut now = Instant::from_secs(1);
    let mut s = Stack::new(cfg, now).expect("a valid configuration");
    let h = s
        .udp_bind(SocketAddrV4::new(US_IP, 9), UdpSocketConfig::mode(UdpMode::Queue))
        .expect("bind");
    // Addresses entitled to an entry: looked up by us, or asked for one of ours.
    let mut entitled: HashSet<Ipv4Addr> = [STATIC_IP].into();
    for _ in 0..u.arbitrary_len::<[u8; 8]>()?.min(200) {
        match u.int_in_range(0..=9)? {
            0..=4 => {
                let f = arp_frame(u)?;
                if let Ok(p) = ArpPacket::new_checked(f.get(14..).unwrap_or(&[])) {
                    if p.operation() == ArpOperation::Request
                        && p.target_protocol_addr() == US_IP
                        && p.hardware_type() == 1
                        && p.protocol_type() == 0x0800
                    {
                        entitled.insert(p.sender_protocol_addr());
                    }
                }
                let mut b = [Frame::new(&f, f.len().max(64))];
                s.handle_rx(now, &mut b[..]);
            }
            5..=6 => {
                let dst = *u.choose(&IPS)?;
                let len = usize::from(u.int_in_range(0..=1600u16)?);
                if s.udp_send(h, SocketAddrV4::new(dst, 7), &vec![0x42; len]).is_ok() {
                    entitled.insert(dst);
                }
            }
            7 => now = advance(&mut s, now, Duration::from_millis(u.int_in_range(0..=3_000)?)),
            8 => now = advance(&mut s, now, Duration::from_secs(u.int_in_range(0..=90)?)),
            _ => {}
        }
        let before: Vec<_> = s.neighbors().iter().filter(|n| n.queued > 0).collect();
        for f in drain_tx(&mut s, now, 64) {
            let e = EthernetFrame::new_checked(&f[..]).expect("the stack sends whole frames");
            assert_eq!(e.src_addr(), US);
            if e.ethertype() == EtherType::Arp {
                let p = ArpPacket::new_checked(e.payload()).expect("a whole ARP packet");
                assert_eq!(p.sender_hardware_addr(), US);
                assert_eq!(p.sender_protocol_addr(), US_IP);
            }
        }
        // Neighbours that were resolved with datagrams waiting had them sent.
        for n in before {
            if let Some(now_n) = s.neighbors().get(n.ip) {
                if now_n.state != NeighborState::Incomplete {
                    assert_eq!(now_n.queued, 0, "{:?} resolved but its queue was not sent", n.ip);
                }
            }
        }
        let c = s.neighbors();
        let entries: Vec<_> = c.iter().collect();
        assert!(entries.len() <= c.capacity());
        assert!(c.queued() <= arp.pending_slots);
        assert_eq!(entries.iter().map(|n| n.queued).sum::<usize>(), c.queued());
        for n in &entries {
            assert!(n.queued <= arp.pending_per_neighbor);
            assert!(n.ip != US_IP && !n.ip.is_unspecified(), "an entry for {:?}", n.ip);
            assert!(entitled.contains(&n.ip), "an entry for {:?} nobody asked for", n.ip);
        }
        let st = c.get(STATIC_IP).expect("the static entry stays");
        assert_eq!((st.mac, st.state), (STATIC_MAC, NeighborState::Static));
    }
    Ok(())
}
