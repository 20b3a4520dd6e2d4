//! Deterministic scenarios: two stacks (and scripted raw hosts) over a simulated segment.

use core::time::Duration;
use std::net::SocketAddrV4;

use super::frames::{self, classify, Kind};
use super::{ip, mac, LinkConfig, Sim};
use crate::iface::neighbor::NeighborState;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::udp::{GeneratorConfig, UdpHandle, UdpMode, UdpSocketConfig};
use crate::wire::{
    ArpOperation, EthernetFrame, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sa(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip(n), port)
}

fn bind(sim: &mut Sim, node: usize, port: u16, mode: UdpMode) -> UdpHandle {
    let cfg = UdpSocketConfig {
        mode,
        tx_slot_size: 65507,
        rx_slot_size: 65507,
        ..UdpSocketConfig::default()
    };
    sim.stack(node).udp_bind(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port), cfg).unwrap()
}

fn recv_all(sim: &mut Sim, node: usize, h: UdpHandle) -> Vec<(SocketAddrV4, Vec<u8>)> {
    let mut out = Vec::new();
    sim.stack(node).udp_recv(h, usize::MAX, |m, d| out.push((m.src, d.to_vec()))).unwrap();
    out
}

fn no_announce(c: &mut crate::StackConfig) {
    c.arp.announce_count = 0;
}

/// ARP requests in the trace sent by `from` for `target`, announcements excluded.
fn arp_requests(sim: &Sim, from: usize, target: std::net::Ipv4Addr) -> usize {
    sim.trace()
        .iter()
        .filter(|e| e.from == from)
        .filter(|e| matches!(classify(&e.frame), Kind::Arp { op: ArpOperation::Request, sender, target: t } if t == target && sender != t))
        .count()
}

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

#[test]
fn gratuitous_arp_announcements_on_start() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 1);
    sim.run_for(ms(5000));
    let announcements: Vec<(Instant, usize)> = sim
        .trace()
        .iter()
        .filter(|e| matches!(classify(&e.frame), Kind::Arp { op: ArpOperation::Request, sender, target } if sender == target))
        .map(|e| (e.at, e.from))
        .collect();
    let s = Instant::from_secs;
    assert_eq!(announcements, [(s(0), 0), (s(0), 1), (s(2), 0), (s(2), 1)]);
    // Nobody answers an announcement, and no conflict is seen.
    assert_eq!(sim.stack(0).stats().arp_conflicts, 0);
    assert_eq!(sim.stack(0).stats().arp_replies_sent, 0);
}

#[test]
fn arp_resolution_both_ways() {
    let mut sim = Sim::pair_with(LinkConfig::perfect(), 2, no_announce);
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    let b = bind(&mut sim, 1, 2000, UdpMode::Queue);
    sim.stack(0).udp_send(a, sa(2, 2000), b"hello").unwrap();
    sim.run_for(ms(10));
    assert_eq!(recv_all(&mut sim, 1, b), [(sa(1, 1000), b"hello".to_vec())]);
    let n = sim.stack(0).neighbors().get(ip(2)).unwrap();
    assert_eq!((n.mac, n.state), (mac(2), NeighborState::Reachable));
    // B learned A from A's request (RFC 826 merge; stale until confirmed).
    let n = sim.stack(1).neighbors().get(ip(1)).unwrap();
    assert_eq!((n.mac, n.state), (mac(1), NeighborState::Stale));
    sim.stack(1).udp_send(b, sa(1, 1000), b"world").unwrap();
    sim.run_for(ms(10));
    assert_eq!(recv_all(&mut sim, 0, a), [(sa(2, 2000), b"world".to_vec())]);
    assert_eq!(arp_requests(&sim, 0, ip(2)), 1);
    assert_eq!(arp_requests(&sim, 1, ip(1)), 0, "B answered from what it learned");
    assert_eq!(sim.stack(1).stats().arp_replies_sent, 1);
    // B's stale entry is probed (unicast) after delay_first_probe, and A confirms it.
    sim.run_for(ms(6000));
    let probe = sim.trace().iter().any(|e| {
        e.from == 1
            && matches!(classify(&e.frame), Kind::Arp { op: ArpOperation::Request, .. })
            && e.frame[0] != 0xff
    });
    assert!(probe, "unicast probe of the stale entry");
    assert_eq!(sim.stack(1).neighbors().get(ip(1)).unwrap().state, NeighborState::Reachable);
}

#[test]
fn arp_request_is_retried_under_loss() {
    let mut sim = Sim::pair_with(LinkConfig::lossy_first(1), 3, no_announce);
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    let b = bind(&mut sim, 1, 2000, UdpMode::Queue);
    sim.stack(0).udp_send(a, sa(2, 2000), b"late").unwrap();
    sim.run_for(ms(900));
    assert!(recv_all(&mut sim, 1, b).is_empty(), "first request lost");
    assert_eq!(sim.stack(0).neighbors().get(ip(2)).unwrap().queued, 1);
    sim.run_for(ms(200));
    assert_eq!(recv_all(&mut sim, 1, b), [(sa(1, 1000), b"late".to_vec())]);
    assert_eq!(arp_requests(&sim, 0, ip(2)), 2, "retransmitted after retrans_time");
}

#[test]
fn ping_is_answered_in_place_and_fragmented_pings_too() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 4);
    let raw = sim.add_raw(mac(9));
    let data = pattern(56, 1);
    let req = frames::icmp_echo_frame(mac(9), mac(2), ip(9), ip(2), 0x77, 1, &data);
    sim.send_raw(raw, &req);
    sim.run_for(ms(1));
    let replies: Vec<Vec<u8>> = sim
        .inbox(raw)
        .iter()
        .filter(|(_, f)| matches!(classify(f), Kind::Icmp { msg: Icmpv4Message::EchoReply, .. }))
        .map(|(_, f)| f.clone())
        .collect();
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply.len(), req.len(), "same frame, same length");
    assert_eq!(&reply[..6], &mac(9).0);
    let e = EthernetFrame::new_checked(&reply[..]).unwrap();
    let p = Ipv4Packet::new_checked(e.payload()).unwrap();
    assert!(p.verify_checksum());
    assert_eq!((p.src_addr(), p.dst_addr(), p.ttl()), (ip(2), ip(9), 64));
    let icmp = Icmpv4Packet::new_checked(p.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.echo_ident(), icmp.echo_seq_no(), icmp.data()), (0x77, 1, &data[..]));
    assert_eq!(sim.stack(1).stats().icmp_echo_replies, 1);

    // A 4000-byte ping arrives in fragments and is answered in fragments.
    let big = pattern(4000, 2);
    let repr = crate::wire::Icmpv4Repr::EchoRequest { ident: 5, seq_no: 9, data: &big };
    let mut msg = vec![0u8; repr.buffer_len()];
    repr.emit(&mut msg).unwrap();
    for f in frames::ipv4_fragments(mac(9), mac(2), ip(9), ip(2), IpProtocol::Icmp, 42, &msg, 1500)
    {
        sim.send_raw(raw, &f);
    }
    sim.run_for(ms(1));
    let mut frags: Vec<(u16, Vec<u8>)> = sim
        .inbox(raw)
        .iter()
        .filter(|(_, f)| matches!(classify(f), Kind::Fragment { .. }))
        .map(|(_, f)| {
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            let p = Ipv4Packet::new_checked(e.payload()).unwrap();
            assert!(p.verify_checksum() && p.src_addr() == ip(2));
            (p.frag_offset(), p.payload().to_vec())
        })
        .collect();
    assert_eq!(frags.len(), 3);
    frags.sort();
    let whole: Vec<u8> = frags.into_iter().flat_map(|(_, d)| d).collect();
    let icmp = Icmpv4Packet::new_checked(&whole[..]).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
    assert_eq!(icmp.data(), &big[..]);
    assert_eq!(sim.stack(1).stats().reassembled, 1);
}

#[test]
fn udp_echo_round_trip_at_every_size() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 5);
    let echo = bind(&mut sim, 1, 7, UdpMode::Echo);
    let a = bind(&mut sim, 0, 0, UdpMode::Queue);
    let port = sim.stack(0).udp_local_addr(a).unwrap().port();
    let sizes = [0usize, 1, 18, 64, 512, 1024, 1472];
    for (k, &n) in sizes.iter().enumerate() {
        sim.stack(0).udp_send(a, sa(2, 7), &pattern(n, k as u8)).unwrap();
    }
    sim.run_for(ms(10));
    let got = recv_all(&mut sim, 0, a);
    assert_eq!(got.len(), sizes.len());
    for (k, (src, data)) in got.into_iter().enumerate() {
        assert_eq!(src, sa(2, 7));
        assert_eq!(data, pattern(sizes[k], k as u8));
    }
    let st = sim.stack(1).udp_stats(echo).unwrap();
    assert_eq!((st.echoed, st.rx_datagrams), (sizes.len() as u64, sizes.len() as u64));
    assert_eq!(
        sim.stack(1).stats().tx_in_place,
        sizes.len() as u64 + 1,
        "echoes and one ARP reply"
    );
    assert!(port >= 49152);
}

#[test]
fn fragmented_4000_byte_datagram_survives_a_lossy_reordering_duplicating_link() {
    for seed in 0..8 {
        let link = LinkConfig::lossy(0.05).with_reorder(0.3, ms(1)).with_duplicate(0.1);
        let mut sim = Sim::pair(link, seed);
        bind(&mut sim, 1, 7, UdpMode::Echo);
        let a = bind(&mut sim, 0, 5000, UdpMode::Queue);
        let msg = pattern(4000, seed as u8);
        let mut got = Vec::new();
        for _ in 0..50 {
            sim.stack(0).udp_send(a, sa(2, 7), &msg).unwrap();
            sim.run_for(ms(1500));
            got.extend(recv_all(&mut sim, 0, a));
            if !got.is_empty() {
                break;
            }
        }
        assert!(!got.is_empty(), "seed {seed}: never came back");
        assert!(
            got.iter().all(|(src, d)| *src == sa(2, 7) && *d == msg),
            "seed {seed}: wrong data"
        );
        assert!(sim.stack(1).stats().reassembled >= 1);
        assert!(sim.stack(0).stats().fragments_sent >= 3);
        assert!(sim.stack(1).stats().fragments_sent >= 3);
    }
}

#[test]
fn simulation_is_deterministic_for_a_seed() {
    let run = |seed| {
        let link = LinkConfig::lossy(0.2).with_reorder(0.5, ms(2)).with_duplicate(0.2);
        let mut sim = Sim::pair(link, seed);
        bind(&mut sim, 1, 7, UdpMode::Echo);
        let a = bind(&mut sim, 0, 5000, UdpMode::Queue);
        for k in 0..20 {
            sim.stack(0).udp_send(a, sa(2, 7), &pattern(3000, k)).unwrap();
            sim.run_for(ms(300));
        }
        sim.trace().iter().map(|e| (e.at, e.from, e.frame.clone())).collect::<Vec<_>>()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn incomplete_datagram_times_out_with_time_exceeded() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 6);
    bind(&mut sim, 1, 7, UdpMode::Echo);
    let raw = sim.add_raw(mac(9));
    let dgram = frames::udp_datagram(sa(9, 4000), sa(2, 7), &pattern(4000, 3));
    let frags =
        frames::ipv4_fragments(mac(9), mac(2), ip(9), ip(2), IpProtocol::Udp, 7, &dgram, 1500);
    sim.send_raw(raw, &frags[0]);
    sim.send_raw(raw, &frags[2]);
    sim.run_for(Duration::from_secs(29));
    assert_eq!(sim.stack(1).stats().drops(DropReason::ReassemblyTimeout), 0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.stack(1).stats().drops(DropReason::ReassemblyTimeout), 1);
    let exceeded: Vec<_> = sim
        .inbox(raw)
        .iter()
        .filter(|(_, f)| {
            matches!(classify(f), Kind::Icmp { msg: Icmpv4Message::TimeExceeded, code: 1, .. })
        })
        .collect();
    assert_eq!(exceeded.len(), 1);
    assert!(exceeded[0].0 >= Instant::from_secs(30));
    assert_eq!(sim.stack(1).poll_timeout(), None, "nothing left to time out");
    // The last fragment alone later is a new datagram, not a completion of the old one.
    sim.send_raw(raw, &frags[1]);
    sim.run_for(ms(1));
    assert_eq!(sim.stack(1).stats().reassembled, 0);
}

#[test]
fn closed_port_answers_port_unreachable() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 7);
    let a = bind(&mut sim, 0, 1234, UdpMode::Queue);
    sim.stack(0).udp_send(a, sa(2, 9999), b"anyone?").unwrap();
    sim.run_for(ms(10));
    let unreachable = sim.trace().iter().filter(|e| {
        e.from == 1
            && classify(&e.frame)
                == Kind::Icmp {
                    src: ip(2),
                    dst: ip(1),
                    msg: Icmpv4Message::DstUnreachable,
                    code: 3,
                }
    });
    assert_eq!(unreachable.count(), 1);
    assert_eq!(sim.stack(1).stats().drops(DropReason::NoSocket), 1);
    assert_eq!(sim.stack(1).stats().icmp_errors_sent, 1);
    assert_eq!(sim.stack(0).stats().drops(DropReason::IcmpIgnored), 1);
    // A broadcast to a closed port gets no answer (RFC 1122 §3.2.2).
    let raw = sim.add_raw(mac(9));
    let f = frames::udp_frame(
        mac(9),
        crate::wire::EthernetAddress::BROADCAST,
        sa(9, 1),
        SocketAddrV4::new(std::net::Ipv4Addr::BROADCAST, 9999),
        b"x",
    );
    sim.send_raw(raw, &f);
    sim.run_for(ms(10));
    assert_eq!(sim.stack(1).stats().icmp_errors_sent, 1);
}

#[test]
fn icmp_errors_are_rate_limited_by_a_token_bucket() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 8);
    let raw = sim.add_raw(mac(9));
    let f = frames::udp_frame(mac(9), mac(2), sa(9, 1), sa(2, 9999), b"x");
    let errors = |sim: &Sim| {
        sim.inbox(raw)
            .iter()
            .filter(|(_, f)| {
                matches!(classify(f), Kind::Icmp { msg: Icmpv4Message::DstUnreachable, .. })
            })
            .count()
    };
    for _ in 0..200 {
        sim.send_raw(raw, &f);
    }
    sim.run_for(ms(1));
    assert_eq!(errors(&sim), 50, "the burst");
    sim.run_for(ms(9));
    for _ in 0..100 {
        sim.send_raw(raw, &f);
    }
    sim.run_for(ms(1));
    assert_eq!(errors(&sim), 60, "10 ms at 1000/s");
    let st = sim.stack(1).stats();
    assert_eq!(st.icmp_rate_limited, 240);
    assert_eq!(st.drops(DropReason::NoSocket), 300);
}

#[test]
fn arp_pending_queue_is_bounded_and_dropped_when_resolution_fails() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 9);
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    for k in 0..40 {
        sim.stack(0).udp_send(a, sa(77, 9), &[k]).unwrap();
    }
    sim.run_for(ms(1));
    let st = sim.stack(0).stats().clone();
    assert_eq!(st.drops(DropReason::ArpPendingFull), 24, "16 wait per neighbour");
    assert_eq!(sim.stack(0).neighbors().queued(), 16);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.stack(0).stats().drops(DropReason::ArpFailed), 16);
    assert_eq!(arp_requests(&sim, 0, ip(77)), 3, "mcast_probes");
    assert_eq!(sim.stack(0).neighbors().queued(), 0);
    assert!(sim.stack(0).neighbors().get(ip(77)).is_none());
    // The socket counts what it could not hand over; what failed later is the stack's.
    assert_eq!(sim.stack(0).udp_stats(a).unwrap().tx_dropped, 24);
}

#[test]
fn deliver_mode_hands_the_frame_over_without_copy() {
    let mut sim = Sim::pair(LinkConfig::perfect(), 10);
    let b = bind(&mut sim, 1, 53, UdpMode::Deliver);
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    sim.stack(0).udp_send(a, sa(2, 53), b"query").unwrap();
    sim.run_for(ms(5));
    let d = sim.deliveries(1);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1.socket, b);
    assert_eq!((d[0].1.src, d[0].1.dst), (sa(1, 1000), sa(2, 53)));
    assert_eq!(d[0].2, b"query");
    assert_eq!(d[0].1.offset, 14 + 20 + 8);
}

#[test]
fn generator_feeds_a_sink_with_and_without_checksum_offload() {
    for offload in [false, true] {
        let mut sim = Sim::pair_with(LinkConfig::perfect(), 11, |c| c.tx_csum_offload = offload);
        let sink = bind(&mut sim, 1, 9, UdpMode::Sink);
        let g = bind(&mut sim, 0, 0, UdpMode::Sink);
        let cfg = GeneratorConfig { dst: sa(2, 9), payload_len: 18, count: Some(1000) };
        sim.stack(0).udp_generate(g, Some(cfg)).unwrap();
        sim.run_for(ms(100));
        assert_eq!(sim.stack(0).udp_generated(g).unwrap(), 1000);
        let st = sim.stack(1).udp_stats(sink).unwrap();
        assert_eq!((st.rx_datagrams, st.rx_bytes), (1000, 18_000), "offload {offload}");
        assert_eq!(sim.stack(1).stats().drops(DropReason::BadChecksum), 0);
        // Frames are minimum-size Ethernet frames with distinct identifications.
        let udp: Vec<_> = sim
            .trace()
            .iter()
            .filter(|e| e.from == 0 && matches!(classify(&e.frame), Kind::Udp { .. }))
            .collect();
        assert_eq!(udp.len(), 1000);
        assert!(udp.iter().all(|e| e.frame.len() == 60));
        assert_ne!(udp[0].frame[18..20], udp[1].frame[18..20]);
    }
    let mut sim = Sim::pair(LinkConfig::perfect(), 12);
    let g = bind(&mut sim, 0, 0, UdpMode::Sink);
    let too_big = GeneratorConfig { dst: sa(2, 9), payload_len: 1473, count: None };
    assert!(sim.stack(0).udp_generate(g, Some(too_big)).is_err());
}

#[test]
fn vlan_tagged_interfaces_talk_and_drop_untagged_frames() {
    let mut sim = Sim::pair_with(LinkConfig::perfect(), 13, |c| c.vlan = Some(100));
    bind(&mut sim, 1, 7, UdpMode::Echo);
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    sim.stack(0).udp_send(a, sa(2, 7), b"tagged").unwrap();
    sim.run_for(ms(5));
    assert_eq!(recv_all(&mut sim, 0, a), [(sa(2, 7), b"tagged".to_vec())]);
    assert!(sim.trace().iter().all(|e| e.frame[12..14] == [0x81, 0x00]));
    let raw = sim.add_raw(mac(9));
    sim.send_raw(raw, &frames::udp_frame(mac(9), mac(2), sa(9, 1), sa(2, 7), b"untagged"));
    sim.run_for(ms(5));
    assert_eq!(sim.stack(1).stats().drops(DropReason::WrongVlan), 1);
}

#[test]
fn default_route_sends_off_link_traffic_to_the_gateway() {
    let mut sim = Sim::pair_with(LinkConfig::perfect(), 14, |c| {
        c.routes.push(crate::iface::route::Route::default_via(ip(2)));
    });
    // Node 1 is the "gateway": its MAC receives the frame, its IP layer drops it (not ours).
    let a = bind(&mut sim, 0, 1000, UdpMode::Queue);
    let far = SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 1), 53);
    sim.stack(0).udp_send(a, far, b"x").unwrap();
    sim.run_for(ms(5));
    assert_eq!(arp_requests(&sim, 0, ip(2)), 1, "resolves the gateway, not the destination");
    assert_eq!(sim.stack(1).stats().drops(DropReason::NotForUs), 1);
}
