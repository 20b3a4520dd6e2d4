//! Deterministic TCP scenarios: two stacks (or a stack and a scripted raw peer) over the
//! simulated segment, in virtual time.

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::tcp::{self, attach, pattern, segments_from, Peer, PeerConfig, SharedPeer};
use super::{ip, LinkConfig, Sim};
use crate::stack::StackConfig;
use crate::tcp::{Ready, TcpState};
use crate::time::Instant;
use crate::wire::TcpFlags;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sa(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip(n), port)
}

fn quiet(c: &mut StackConfig) {
    c.arp.announce_count = 0;
    c.tcp.max_connections = 64;
    c.tcp.rx_buffer = 128 * 1024;
    c.tcp.tx_buffer = 128 * 1024;
}

fn pair_with(link: LinkConfig, seed: u64, tweak: impl Fn(&mut StackConfig)) -> Sim {
    Sim::pair_with(link, seed, |c| {
        quiet(c);
        tweak(c);
    })
}

/// Client on node 0 sends `up` to a server on node 1 port 80, which sends `down`.
fn transfer(sim: &mut Sim, up: Vec<u8>, down: Vec<u8>) -> (SharedPeer, SharedPeer) {
    let server = Peer::new(PeerConfig { serve: down, ..PeerConfig::default() });
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 16).unwrap();
    server.borrow_mut().listener = Some(l);
    attach(sim, 1, &server);
    let client = Peer::new(PeerConfig::default());
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, sa(2, 80), None).unwrap();
    client.borrow_mut().add(h, up);
    attach(sim, 0, &client);
    (client, server)
}

fn assert_delivered(client: &SharedPeer, server: &SharedPeer, up: &[u8], down: &[u8]) {
    let c = client.borrow();
    let s = server.borrow();
    assert_eq!(s.conns.len(), 1, "server connections");
    let (ce, se) = (&c.conns[0], &s.conns[0]);
    assert_eq!(se.received.len(), up.len(), "bytes client → server");
    assert!(se.received == up, "client → server stream differs");
    assert_eq!(ce.received.len(), down.len(), "bytes server → client");
    assert!(ce.received == down, "server → client stream differs");
    assert!(ce.eof && se.eof, "both saw EOF");
    assert_eq!((ce.error, se.error), (None, None));
}

#[test]
fn handshake_transfer_and_close_on_a_perfect_link() {
    let mut sim = pair_with(LinkConfig::perfect(), 1, |_| {});
    let up = pattern(100_000, 1);
    let down = pattern(300_000, 2);
    let (client, server) = transfer(&mut sim, up.clone(), down.clone());
    sim.run_for(ms(2000));
    assert_delivered(&client, &server, &up, &down);
    assert!(client.borrow().conns[0].events.contains(Ready::CONNECTED | Ready::WRITABLE));
    // The client sent FIN after its data and the server after its own: whoever closed first
    // sits in TIME-WAIT; the other is gone.
    let tw = sim.stack(0).tcp().time_wait_entries() + sim.stack(1).tcp().time_wait_entries();
    assert_eq!(tw, 1);
    assert_eq!(sim.stack(0).tcp().connections() + sim.stack(1).tcp().connections(), 0);
    // Options negotiated as Linux would.
    let segs = segments_from(&sim, 0);
    let syn = &segs[0].1;
    assert_eq!(syn.flags(), TcpFlags::SYN);
    assert_eq!(syn.repr.max_seg_size, Some(1460));
    assert!(syn.repr.sack_permitted && syn.repr.timestamps.is_some());
    assert_eq!(syn.repr.window_scale, Some(2));
    let synack = &segments_from(&sim, 1)[0].1;
    assert_eq!(synack.flags(), TcpFlags::SYN | TcpFlags::ACK);
    // Full-sized data segments: 1448 bytes with timestamps.
    assert!(segs.iter().any(|(_, s)| s.payload.len() == 1448));
    assert!(segs.iter().all(|(_, s)| s.payload.len() <= 1448));
    // TIME-WAIT expires after 60 s.
    sim.run_for(Duration::from_secs(61));
    assert_eq!(sim.stack(0).tcp().time_wait_entries() + sim.stack(1).tcp().time_wait_entries(), 0);
    assert_eq!(sim.stack(0).tcp().stats().in_state(TcpState::TimeWait), 0);
}

fn lossy() -> LinkConfig {
    LinkConfig::lossy(0.05).with_duplicate(0.02).with_reorder(0.05, ms(3))
}

fn run_lossy(
    seed: u64,
    up_len: usize,
    down_len: usize,
    tweak: impl Fn(&mut StackConfig),
) -> (Sim, Instant) {
    let mut sim = pair_with(lossy(), seed, tweak);
    sim.set_trace(false);
    let up = pattern(up_len, seed as u8);
    let down = pattern(down_len, seed as u8 ^ 0x55);
    let (client, server) = transfer(&mut sim, up.clone(), down.clone());
    let done = |p: &SharedPeer| p.borrow().conns.first().is_some_and(|e| e.done_at.is_some());
    let mut t = 0;
    while t < 120 && !(done(&client) && done(&server)) {
        sim.run_for(Duration::from_secs(1));
        t += 1;
    }
    sim.run_for(Duration::from_secs(1));
    assert_delivered(&client, &server, &up, &down);
    let end =
        client.borrow().conns[0].done_at.unwrap().max(server.borrow().conns[0].done_at.unwrap());
    assert!(end < Instant::from_secs(60), "seed {seed}: finished at {end:?}");
    (sim, end)
}

/// Applies a comma-separated list of variants to a configuration (see `soak`).
fn variant(c: &mut StackConfig, v: &str) {
    for v in v.split(',') {
        match v {
            "nosack" => c.tcp.sack = false,
            "nots" => c.tcp.timestamps = false,
            "nows" => c.tcp.window_scaling = false,
            "reno" => c.tcp.congestion = crate::tcp::CcAlgorithm::NewReno,
            "small" => {
                c.tcp.rx_buffer = 8192;
                c.tcp.tx_buffer = 8192;
            }
            "tso" => c.tcp.tso = true,
            "nodelay" => c.tcp.nodelay = true,
            _ => {}
        }
    }
}

/// 4 MiB each way over a link losing 5%, duplicating 2% and reordering 5% of frames by up to
/// 3 ms, for many seeds and option sets: byte-exact in both directions, done within 60 s of
/// virtual time. 12 seeds by default; a longer soak sets `XDPOS_TCP_SEEDS` (e.g. 384 runs every
/// option set on 64 seeds: `XDPOS_TCP_SEEDS=384 cargo test -p libos --release four_mib`).
#[test]
fn four_mib_each_way_over_a_lossy_duplicating_reordering_link() {
    let variants = ["", "nosack", "nots", "reno", "nosack,nots,nows", "tso"];
    let seeds: u64 =
        std::env::var("XDPOS_TCP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    for seed in 1..=seeds {
        let v = variants[seed as usize % variants.len()];
        let (sim, _) = run_lossy(seed, 4 << 20, 4 << 20, |c| {
            c.tcp.rx_buffer = 256 * 1024;
            c.tcp.tx_buffer = 256 * 1024;
            variant(c, v);
        });
        let (a, b) = (sim.nodes_tcp_stats(0), sim.nodes_tcp_stats(1));
        assert!(a.retransmits > 0 && b.retransmits > 0, "seed {seed} ({v}): losses were repaired");
    }
}

#[test]
fn super_segments_out_and_coalesced_segments_in() {
    for (seed, link) in [(1, LinkConfig::perfect()), (2, lossy()), (3, lossy())] {
        let mut sim = pair_with(link, seed, |c| c.tcp.tso = true);
        sim.set_tx_room(65536 + 256);
        sim.set_gro(true);
        sim.set_trace(false);
        let up = pattern(2 << 20, 7);
        let down = pattern(1 << 20, 8);
        let (client, server) = transfer(&mut sim, up.clone(), down.clone());
        for _ in 0..60 {
            if client.borrow().conns[0].done_at.is_some() {
                break;
            }
            sim.run_for(Duration::from_secs(1));
        }
        sim.run_for(Duration::from_secs(1));
        assert_delivered(&client, &server, &up, &down);
        let (a, b) = (sim.stack(0).tcp().stats().clone(), sim.stack(1).tcp().stats().clone());
        eprintln!(
            "seed {seed}: tso {} {} gro {} {} segs {} {}",
            a.tso_frames, b.tso_frames, a.gro_frames, b.gro_frames, a.segs_out, b.segs_out
        );
        assert!(a.tso_frames > 0 && b.tso_frames > 0, "super-segments sent");
        assert!(a.gro_frames > 0 && b.gro_frames > 0, "coalesced segments received");
    }
}

/// Runs until every connection of `peer` is done (or `limit` of virtual time passes).
fn run_until_done(sim: &mut Sim, peer: &SharedPeer, n: usize, limit: Duration) {
    let end = sim.now() + limit;
    while sim.now() < end {
        {
            let p = peer.borrow();
            if p.conns.len() >= n && p.conns.iter().all(|c| c.done_at.is_some()) {
                return;
            }
        }
        sim.run_for(ms(100));
    }
}

#[test]
fn syn_cookies_under_a_syn_flood_while_a_transfer_continues() {
    let mut sim = pair_with(LinkConfig::perfect(), 11, |c| {
        c.tcp.syn_backlog = 16;
        c.tcp.max_connections = 64;
    });
    sim.set_trace(false);
    let flooder = sim.add_raw(crate::wire::EthernetAddress([2, 0, 0, 0, 0, 0x66]));
    let up = pattern(4 << 20, 3);
    let down = pattern(4 << 20, 4);
    let (client, server) = transfer(&mut sim, up.clone(), down.clone());
    sim.run_for(ms(5));
    let mut rng = super::rng::Rng::new(99);
    let mut flood = 0u32;
    let mut second = None;
    for round in 0..3000 {
        for _ in 0..100 {
            let src = Ipv4Addr::new(10, 0, 0, 100 + rng.below(100) as u8);
            let mut r = tcp::repr(
                1024 + rng.below(60000) as u16,
                80,
                rng.next_u64() as u32,
                0,
                TcpFlags::SYN,
                65535,
            );
            r.max_seg_size = Some(1460);
            r.timestamps = Some(crate::wire::TcpTimestamps { tsval: 1, tsecr: 0 });
            r.window_scale = Some(7);
            r.sack_permitted = true;
            let f = tcp::tcp_frame(
                crate::wire::EthernetAddress([2, 0, 0, 0, 0, 0x66]),
                super::mac(2),
                src,
                ip(2),
                &r,
                &[],
            );
            sim.send_raw(flooder, &f);
            flood += 1;
        }
        sim.run_for(ms(1));
        if round == 100 {
            // A new client during the flood: its SYN finds the SYN queue full.
            let now = sim.now();
            let h = sim.stack(0).tcp_connect(now, sa(2, 80), None).unwrap();
            client.borrow_mut().add(h, b"during the flood".to_vec());
            second = Some(h);
        }
        let p = server.borrow();
        if round > 100 && p.conns.len() == 2 && p.conns.iter().all(|c| c.done_at.is_some()) {
            break;
        }
    }
    sim.run_for(ms(200));
    let _ = second;
    let c = client.borrow();
    let s = server.borrow();
    assert_eq!(s.conns.len(), 2);
    assert!(s.conns[0].received == up, "the established transfer survived byte-exact");
    assert!(c.conns[0].received == down);
    assert_eq!(s.conns[1].received, b"during the flood");
    drop((c, s));
    let st = sim.stack(1).tcp().stats().clone();
    assert!(flood > 10_000);
    assert!(st.syn_cookies_sent > 10_000, "{st:?}");
    assert_eq!(st.syn_cookies_validated, 1, "the new client came in through a cookie");
    assert!(st.in_state(TcpState::SynReceived) <= 16, "the SYN queue stayed bounded");
    assert!(sim.stack(1).tcp().connections() <= 18);
}

#[test]
fn cookie_connections_keep_window_scaling_and_sack_through_timestamps() {
    let mut sim = pair_with(lossy(), 12, |c| c.tcp.syn_cookies = crate::tcp::SynCookies::Always);
    sim.set_trace(false);
    let up = pattern(300_000, 1);
    let down = pattern(300_000, 2);
    let (client, server) = transfer(&mut sim, up.clone(), down.clone());
    sim.run_for(ms(100));
    let h = server.borrow().conns[0].handle.unwrap();
    let info = sim.stack(1).tcp().info(h).unwrap();
    assert!(info.ts && info.sack && info.wscale.is_some(), "{info:?}");
    assert_eq!(info.mss, 1448);
    run_until_done(&mut sim, &client, 1, Duration::from_secs(60));
    sim.run_for(Duration::from_secs(2));
    assert_delivered(&client, &server, &up, &down);
    assert!(sim.stack(1).tcp().stats().syn_cookies_validated >= 1);
}

#[test]
fn two_thousand_concurrent_connections_to_one_listener() {
    const N: usize = 2000;
    let mut sim = pair_with(LinkConfig::perfect(), 13, |c| {
        c.tcp.max_connections = N + 16;
        c.tcp.max_time_wait = N + 16;
        c.tcp.rx_buffer = 8192;
        c.tcp.tx_buffer = 8192;
        c.tcp.syn_backlog = N;
    });
    sim.set_trace(false);
    let server = Peer::new(PeerConfig { echo: true, ..PeerConfig::default() });
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7), N).unwrap();
    server.borrow_mut().listener = Some(l);
    attach(&mut sim, 1, &server);
    let client = Peer::new(PeerConfig::default());
    attach(&mut sim, 0, &client);
    let now = sim.now();
    for k in 0..N {
        let h = sim.stack(0).tcp_connect(now, sa(2, 7), None).unwrap();
        client.borrow_mut().add(h, pattern(1000, k as u8));
    }
    assert_eq!(sim.stack(0).tcp().connections(), N);
    run_until_done(&mut sim, &client, N, Duration::from_secs(30));
    let c = client.borrow();
    for (k, e) in c.conns.iter().enumerate() {
        assert!(e.received == pattern(1000, k as u8), "connection {k} echoed");
        assert!(e.done_at.is_some());
    }
    assert_eq!(sim.stack(1).tcp().stats().accepts as usize, N);
    assert_eq!(
        sim.stack(0).tcp().stats().syn_cookies_sent + sim.stack(1).tcp().stats().syn_cookies_sent,
        0
    );
}

#[test]
fn a_full_accept_queue_holds_connections_back_until_accepted() {
    let mut sim = pair_with(LinkConfig::perfect(), 14, |_| {});
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 2).unwrap();
    let client = Peer::new(PeerConfig {
        shutdown_when_sent: false,
        close_when_done: false,
        ..PeerConfig::default()
    });
    attach(&mut sim, 0, &client);
    let now = sim.now();
    for _ in 0..5 {
        let h = sim.stack(0).tcp_connect(now, sa(2, 80), None).unwrap();
        client.borrow_mut().add(h, Vec::new());
    }
    sim.run_for(ms(500));
    assert_eq!(sim.stack(1).tcp().accept_pending(l).unwrap(), 2);
    assert!(sim.stack(1).tcp().stats().listen_overflows >= 3);
    let connected = client.borrow().conns.iter().filter(|e| e.connected_at.is_some()).count();
    assert!(connected <= 2 + 3, "{connected}");
    // Accepting makes room; the others get in with their SYN retransmissions.
    let mut accepted = 0;
    for _ in 0..20 {
        while sim.stack(1).tcp_mut().accept(l).is_ok() {
            accepted += 1;
        }
        sim.run_for(Duration::from_secs(1));
    }
    assert_eq!(accepted, 5);
    assert!(client.borrow().conns.iter().all(|e| e.connected_at.is_some() && e.error.is_none()));
}

#[test]
fn a_receiver_that_stops_reading_closes_the_window_and_the_sender_probes() {
    let mut sim = pair_with(LinkConfig::perfect(), 15, |c| {
        c.tcp.rx_buffer = 16 * 1024;
    });
    sim.set_trace(false);
    let up = pattern(200_000, 5);
    let server = Peer::new(PeerConfig { read: false, ..PeerConfig::default() });
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
    server.borrow_mut().listener = Some(l);
    attach(&mut sim, 1, &server);
    let client = Peer::new(PeerConfig::default());
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, sa(2, 80), None).unwrap();
    client.borrow_mut().add(h, up.clone());
    attach(&mut sim, 0, &client);
    sim.run_for(Duration::from_secs(10));
    let probes = sim.stack(0).tcp().stats().window_probes;
    assert!((3..=10).contains(&probes), "probes with backoff over 10 s: {probes}");
    assert!(sim.stack(0).tcp().info(h).unwrap().snd_wnd < 1024);
    server.borrow_mut().cfg.read = true;
    sim.run_for(ms(1));
    run_until_done(&mut sim, &client, 1, Duration::from_secs(120));
    sim.run_for(Duration::from_secs(1));
    assert!(server.borrow().conns[0].received == up);
}

#[test]
fn keepalive_between_two_stacks_detects_a_dead_peer() {
    let mut sim = pair_with(LinkConfig::perfect(), 16, |_| {});
    let server = Peer::new(PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() });
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
    server.borrow_mut().listener = Some(l);
    attach(&mut sim, 1, &server);
    let client = Peer::new(PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() });
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, sa(2, 80), None).unwrap();
    client.borrow_mut().add(h, b"hi".to_vec());
    attach(&mut sim, 0, &client);
    sim.run_for(ms(100));
    let ka = crate::tcp::Keepalive {
        idle: Duration::from_secs(30),
        interval: Duration::from_secs(5),
        probes: 3,
    };
    let now = sim.now();
    sim.stack(0).tcp_mut().set_keepalive(now, h, Some(ka)).unwrap();
    sim.run_for(Duration::from_secs(300));
    assert!(sim.stack(0).tcp().stats().keepalive_probes >= 9, "answered probes every 30 s");
    assert_eq!(sim.stack(0).tcp().state(h), Ok(TcpState::Established));
    sim.set_link(LinkConfig::lossy(1.0));
    sim.run_for(Duration::from_secs(60));
    assert!(client.borrow().conns[0].events.contains(Ready::TIMED_OUT));
}

#[test]
fn simultaneous_open_between_two_stacks() {
    let mut sim = pair_with(LinkConfig::perfect(), 17, |_| {});
    let now = sim.now();
    let a = sim.stack(0).tcp_connect(now, sa(2, 6000), Some(sa(1, 5000))).unwrap();
    let b = sim.stack(1).tcp_connect(now, sa(1, 5000), Some(sa(2, 6000))).unwrap();
    sim.run_for(ms(100));
    assert_eq!(sim.stack(0).tcp().state(a), Ok(TcpState::Established));
    assert_eq!(sim.stack(1).tcp().state(b), Ok(TcpState::Established));
    sim.stack(0).tcp_mut().write(a, b"ping").unwrap();
    sim.stack(1).tcp_mut().write(b, b"pong").unwrap();
    sim.run_for(ms(100));
    let mut buf = [0u8; 8];
    assert_eq!(sim.stack(1).tcp_mut().read(b, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(sim.stack(0).tcp_mut().read(a, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"pong");
    // Simultaneous close: both end in TIME-WAIT via CLOSING.
    sim.stack(0).tcp_mut().shutdown(a).unwrap();
    sim.stack(1).tcp_mut().shutdown(b).unwrap();
    sim.run_for(ms(100));
    assert_eq!(sim.stack(0).tcp().time_wait_entries(), 1);
    assert_eq!(sim.stack(1).tcp().time_wait_entries(), 1);
}

#[test]
fn time_wait_is_bounded_and_reused_by_connect_when_safe() {
    let mut sim = pair_with(LinkConfig::perfect(), 18, |c| {
        c.tcp.max_time_wait = 4;
        c.tcp.ephemeral_ports = (50000, 50000);
    });
    let server = Peer::new(PeerConfig { echo: true, ..PeerConfig::default() });
    let l = sim.stack(1).tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7), 16).unwrap();
    server.borrow_mut().listener = Some(l);
    attach(&mut sim, 1, &server);
    let client = Peer::new(PeerConfig::default());
    attach(&mut sim, 0, &client);
    for k in 0..6u16 {
        let now = sim.now();
        let h = sim.stack(0).tcp_connect(now, sa(2, 7), Some(sa(1, 40000 + k))).unwrap();
        client.borrow_mut().add(h, b"x".to_vec());
        sim.run_for(ms(50));
    }
    assert_eq!(sim.stack(0).tcp().time_wait_entries(), 4);
    assert_eq!(sim.stack(0).tcp().stats().time_wait_overflows, 2);
    // The single ephemeral port: in TIME-WAIT after one connection; reused after a second.
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, sa(2, 7), None).unwrap();
    client.borrow_mut().add(h, b"y".to_vec());
    sim.run_for(ms(50));
    let now = sim.now();
    assert_eq!(sim.stack(0).tcp_connect(now, sa(2, 7), None), Err(crate::tcp::TcpError::NoSpace));
    sim.run_for(Duration::from_secs(1));
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, sa(2, 7), None).unwrap();
    client.borrow_mut().add(h, b"z".to_vec());
    sim.run_for(ms(50));
    assert_eq!(client.borrow().conns.last().unwrap().received, b"z");
    assert!(sim.stack(0).tcp().stats().time_wait_reused >= 1);
}

#[test]
fn cubic_backs_off_by_beta_and_grows_again() {
    let mut sim = pair_with(LinkConfig::lossy(0.002), 19, |c| {
        c.tcp.rx_buffer = 4 << 20;
        c.tcp.tx_buffer = 4 << 20;
        c.tcp.max_connections = 4;
    });
    sim.set_trace(false);
    let up = pattern(64 << 20, 9);
    let (client, _server) = transfer(&mut sim, up, Vec::new());
    let h = client.borrow().conns[0].handle.unwrap();
    let mut samples = Vec::new();
    let mut last_fr = 0;
    for _ in 0..20000 {
        sim.run_for(Duration::from_micros(20));
        let Ok(info) = sim.stack(0).tcp().info(h) else { break };
        let fr = info.stats.fast_retransmits;
        samples.push((info.cwnd, fr, info.ssthresh));
        if fr > last_fr {
            last_fr = fr;
        }
    }
    // Find a fast retransmit out of congestion avoidance and check the reduction.
    let mut checked = 0;
    for w in samples.windows(2) {
        let ((c0, f0, _), (_, f1, s1)) = (w[0], w[1]);
        if f1 == f0 + 1 && c0 > 20 * 1448 {
            let ratio = f64::from(s1) / f64::from(c0);
            // ssthresh = β × the window at the loss, which is at least the last sample's.
            assert!((0.69..1.0).contains(&ratio), "ssthresh {s1} / cwnd {c0} = {ratio}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "saw a reduction");
    let max = samples.iter().map(|s| s.0).max().unwrap();
    assert!(max > 100 * 1448, "the window grew to {max}");
}

/// Every duplicated data segment is answered at once with a D-SACK of exactly that segment
/// (RFC 2883 §4), reported in one ACK; our own sender ignores the blocks (they lie below
/// SND.UNA): a duplicating, lossless link costs no retransmission.
#[test]
fn duplicated_segments_are_answered_with_a_dsack_that_costs_no_retransmission() {
    let mut sim = pair_with(LinkConfig::perfect().with_duplicate(0.1), 5, |_| {});
    let up = pattern(300_000, 3);
    let (client, server) = transfer(&mut sim, up.clone(), Vec::new());
    sim.run_for(ms(3000));
    assert_delivered(&client, &server, &up, &[]);
    let data: Vec<(u32, u32)> = segments_from(&sim, 0)
        .iter()
        .filter(|(_, s)| !s.payload.is_empty())
        .map(|(_, s)| (s.repr.seq_number, s.repr.seq_number.wrapping_add(s.payload.len() as u32)))
        .collect();
    let mut dsacks = Vec::new();
    for (_, s) in segments_from(&sim, 1) {
        let Some(&first) = s.repr.sack_ranges.as_slice().first() else { continue };
        if (first.1.wrapping_sub(s.repr.ack_number) as i32) <= 0 {
            // Segments' edges (duplicates of neighbours in one batch share a block).
            assert!(
                data.iter().any(|d| d.0 == first.0) && data.iter().any(|d| d.1 == first.1),
                "a D-SACK of something never sent: {first:?}"
            );
            dsacks.push(first);
        }
    }
    // Duplicates arrive in the batch of their original: one ACK (and block) per batch.
    assert!(dsacks.len() >= 3, "a tenth of ~200 data segments duplicated: {dsacks:?}");
    let a = sim.nodes_tcp_stats(0);
    assert_eq!((a.retransmits, a.fast_retransmits, a.sack_recoveries), (0, 0, 0), "{a:?}");
}
