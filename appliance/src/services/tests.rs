//! The services against libos's simulated peer: two stacks over a simulated link in virtual
//! time, the services on node 1 (10.0.0.2), a scripted client ([`libos::sim::tcp::Peer`]) or
//! another [`Services`] on node 0.

use std::cell::RefCell;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::Duration;

use libos::sim::tcp::{attach, pattern, Peer, PeerConfig, SharedPeer};
use libos::sim::{ip, LinkConfig, Sim};
use libos::StackConfig;

use super::echo::{sockperf_message, SOCKPERF_CLIENT, SOCKPERF_PONG_REQUEST};
use super::*;

const ECHO: u16 = 7;
const SINK: u16 = 9;
const SOURCE: u16 = 19;
const SOCKPERF: u16 = 11111;

fn quiet(c: &mut StackConfig) {
    c.arp.announce_count = 0;
    c.tcp.max_connections = 64;
    c.tcp.rx_buffer = 64 * 1024;
    c.tcp.tx_buffer = 64 * 1024;
}

/// A sim whose node 1 runs every service; returns the services.
fn served(link: LinkConfig, seed: u64) -> (Sim, Rc<RefCell<Services>>) {
    let mut sim = Sim::pair_with(link, seed, quiet);
    let cfg = ServicesConfig {
        echo: Some(ECHO),
        sink: Some(SINK),
        source: Some(SOURCE),
        sockperf: Some(SOCKPERF),
        iperf3: None,
        backlog: 16,
        ..Default::default()
    };
    let svc = Rc::new(RefCell::new(Services::new(&cfg, sim.stack(1)).unwrap()));
    let s = Rc::clone(&svc);
    sim.set_app(1, Box::new(move |now, stack| s.borrow_mut().poll(now, stack)));
    (sim, svc)
}

/// A client on node 0 connected to the server's `port`, sending `data`.
fn client(sim: &mut Sim, port: u16, data: Vec<u8>, cfg: PeerConfig) -> SharedPeer {
    let peer = Peer::new(cfg);
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, SocketAddrV4::new(ip(2), port), None).unwrap();
    peer.borrow_mut().add(h, data);
    attach(sim, 0, &peer);
    peer
}

#[test]
fn echo_returns_every_byte_over_a_lossy_reordering_link_and_closes_after_the_client() {
    let link = LinkConfig::lossy(0.03).with_reorder(0.02, Duration::from_millis(3));
    let (mut sim, svc) = served(link.with_duplicate(0.01), 5);
    let up = pattern(600_000, 3);
    let c = client(&mut sim, ECHO, up.clone(), PeerConfig::default());
    sim.run_for(Duration::from_secs(60));
    let p = c.borrow();
    let e = &p.conns[0];
    assert_eq!(e.received.len(), up.len());
    assert!(e.received == up, "echo differs");
    assert!(e.eof && e.error.is_none());
    let st = svc.borrow().stats();
    assert_eq!((st.accepted, st.closed, st.failed), (1, 1, 0));
    assert_eq!((st.bytes_in, st.bytes_out), (up.len() as u64, up.len() as u64));
    assert_eq!(svc.borrow().open(), 0);
}

#[test]
fn echo_stops_reading_when_the_client_stops_reading_its_echoes() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 1);
    let up = pattern(1_000_000, 4);
    let cfg = PeerConfig { read: false, ..PeerConfig::default() };
    let c = client(&mut sim, ECHO, up, cfg);
    sim.run_for(Duration::from_secs(5));
    // The echo's send buffer, the client's receive buffer and what is in flight bound what
    // the server took; the rest waits in the client's send buffer.
    let taken = svc.borrow().stats().bytes_in;
    assert!(taken > 0 && taken <= 3 * 64 * 1024, "server read {taken} bytes");
    assert!(c.borrow().conns[0].sent < 1_000_000);
    // It reads on once the client does.
    c.borrow_mut().cfg.read = true;
    sim.run_for(Duration::from_secs(20));
    assert_eq!(c.borrow().conns[0].received.len(), 1_000_000);
}

#[test]
fn sink_counts_and_source_sends_the_pattern_until_the_client_closes() {
    let (mut sim, svc) = served(LinkConfig::perfect(), 2);
    let up = pattern(300_000, 5);
    let sink = client(&mut sim, SINK, up, PeerConfig::default());
    sim.run_for(Duration::from_secs(5));
    assert!(sink.borrow().conns[0].eof, "the sink closes after the client's FIN");
    assert_eq!(svc.borrow().stats().bytes_in, 300_000);

    // A client that reads 200 kB of the source and closes.
    let peer = Peer::new(PeerConfig { shutdown_when_sent: false, ..PeerConfig::default() });
    let now = sim.now();
    let h = sim.stack(0).tcp_connect(now, SocketAddrV4::new(ip(2), SOURCE), None).unwrap();
    peer.borrow_mut().add(h, Vec::new());
    attach(&mut sim, 0, &peer);
    while peer.borrow().conns[0].received.len() < 200_000 {
        sim.run_for(Duration::from_millis(10));
        assert!(sim.now() < libos::Instant::from_millis(20_000), "source too slow");
    }
    sim.stack(0).tcp_mut().shutdown(h).unwrap();
    sim.run_for(Duration::from_secs(5));
    let p = peer.borrow();
    let got = &p.conns[0].received;
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)), "pattern broken");
    assert!(p.conns[0].eof, "the source closes once the client did");
    assert_eq!(svc.borrow().open(), 0);
}

#[test]
fn sockperf_answers_only_pong_requests_with_the_client_flag_cleared() {
    let (mut sim, svc) = served(LinkConfig::lossy(0.02), 3);
    let mut up = Vec::new();
    let mut want = Vec::new();
    for seq in 0..300u64 {
        let len = 14 + (seq as usize * 37) % 700;
        let ask = seq % 3 != 0;
        let flags = SOCKPERF_CLIENT | if ask { SOCKPERF_PONG_REQUEST } else { 0 };
        let mut m = sockperf_message(seq, flags, len);
        for (i, b) in m[14..].iter_mut().enumerate() {
            *b = (i as u8) ^ seq as u8;
        }
        up.extend_from_slice(&m);
        if ask {
            m[8..10].copy_from_slice(&SOCKPERF_PONG_REQUEST.to_be_bytes());
            want.extend_from_slice(&m);
        }
    }
    let c = client(&mut sim, SOCKPERF, up, PeerConfig::default());
    sim.run_for(Duration::from_secs(30));
    let p = c.borrow();
    assert!(
        p.conns[0].received == want,
        "replies differ ({} vs {})",
        p.conns[0].received.len(),
        want.len()
    );
    assert_eq!(svc.borrow().stats().sockperf_replies, 200);
}

#[test]
fn a_source_client_with_a_limit_fills_a_sink_server_exactly() {
    let (mut sim, svc) = served(LinkConfig::lossy(0.01), 4);
    let client =
        Rc::new(RefCell::new(Services::new(&ServicesConfig::default(), sim.stack(0)).unwrap()));
    let now = sim.now();
    let role = Role::Source { write: 1000, limit: Some(2_000_000) };
    let h = {
        let mut c = client.borrow_mut();
        c.connect(now, sim.stack(0), SocketAddrV4::new(ip(2), SINK), role).unwrap()
    };
    let c2 = Rc::clone(&client);
    sim.set_app(0, Box::new(move |now, stack| c2.borrow_mut().poll(now, stack)));
    sim.run_for(Duration::from_secs(30));
    assert_eq!(svc.borrow().stats().bytes_in, 2_000_000);
    let cs = client.borrow().stats();
    assert_eq!((cs.connected, cs.bytes_out, cs.closed, cs.failed), (1, 2_000_000, 1, 0));
    assert!(client.borrow().bytes(h).is_none(), "closed after the server's FIN");
}
