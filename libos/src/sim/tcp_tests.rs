//! Deterministic TCP scenarios: two stacks (or a stack and a scripted raw peer) over the
//! simulated segment, in virtual time.

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::tcp::{attach, pattern, segments_from, Peer, PeerConfig, SharedPeer};
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

fn run_lossy(seed: u64, up_len: usize, down_len: usize, tweak: impl Fn(&mut StackConfig)) -> Sim {
    let mut sim = pair_with(lossy(), seed, tweak);
    sim.set_trace(false);
    let up = pattern(up_len, seed as u8);
    let down = pattern(down_len, seed as u8 ^ 0x55);
    let (client, server) = transfer(&mut sim, up.clone(), down.clone());
    let mut t = 0;
    while t < 120 && client.borrow().conns[0].done_at.is_none() {
        sim.run_for(Duration::from_secs(1));
        t += 1;
    }
    sim.run_for(Duration::from_secs(5));
    assert_delivered(&client, &server, &up, &down);
    let done = client.borrow().conns[0].done_at.unwrap();
    assert!(done < Instant::from_secs(60), "seed {seed}: finished at {done:?}");
    sim
}

#[test]
fn lossy_duplicating_reordering_link_delivers_byte_exact() {
    for seed in 1..=4 {
        let sim = run_lossy(seed, 512 * 1024, 512 * 1024, |_| {});
        let _ = sim;
    }
}

#[test]
fn scratch_big_lossy() {
    let seeds: Vec<u64> = std::env::var("SEEDS")
        .ok()
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![1]);
    let size: usize = std::env::var("SIZE").ok().map(|s| s.parse().unwrap()).unwrap_or(4 << 20);
    for seed in seeds {
        let t0 = std::time::Instant::now();
        let variant = std::env::var("VARIANT").unwrap_or_default();
        let mut sim = run_lossy(seed, size, size, |c| {
            c.tcp.rx_buffer = 256 * 1024;
            c.tcp.tx_buffer = 256 * 1024;
            for v in variant.split(',') {
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
        });
        let done = sim.now();
        eprintln!("seed {seed}: real {:?} virtual {:?} steps {}", t0.elapsed(), done, sim.steps());
        for n in 0..2 {
            let s = sim.stack(n).tcp().stats().clone();
            eprintln!(
                "  node {n}: segs_out {} rtx {} rto {} fr {} drops {:?}",
                s.segs_out, s.retransmits, s.rto_events, s.fast_retransmits, s.drops
            );
        }
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
