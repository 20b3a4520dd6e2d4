//! # The HTTP responder allocates nothing per request
//!
//! A counting global allocator (`stats_alloc`, no `unsafe` of ours) measures a region in which
//! a client stack, wired back to back with a server stack running the services' HTTP
//! responder, sends pipelined requests (GET, HEAD, a 404, a 405 with a body to discard, split
//! across writes), reads the responses, and opens, uses and closes fresh connections with
//! `Connection: close` (accept, parse, answer, close). After a warm-up that touches every path,
//! the region must count zero allocations, and every response must have arrived. Runs without
//! libtest's harness, so no other thread allocates inside the region.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use libos::iface::route::Ipv4Cidr;
use libos::tcp::{TcpError, TcpHandle};
use libos::wire::EthernetAddress;
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use xdpos::services::{Services, ServicesConfig};
use xdpos::worker::App;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PORT: u16 = 80;
/// One round's requests: four pipelined, in two writes split mid-request.
const ROUND: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HT\
                       TP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn stack(n: u8, peer: u8) -> Stack {
    let mut cfg =
        StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, n]), &[Ipv4Cidr::new(ip(n), 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((ip(peer), EthernetAddress([2, 0, 0, 0, 0, peer])));
    cfg.tcp.max_connections = 16;
    cfg.tcp.rx_buffer = 64 * 1024;
    cfg.tcp.tx_buffer = 64 * 1024;
    Stack::new(cfg, Instant::ZERO).unwrap()
}

fn pump(from: &mut Stack, to: &mut Stack, now: Instant, slots: &mut [Frame], rx: &mut [Frame]) {
    loop {
        let n = from.poll_tx(now, &mut FrameSlots::new(slots));
        for (s, r) in slots[..n].iter().zip(rx.iter_mut()) {
            r.buf[..s.len].copy_from_slice(&s.buf[..s.len]);
            r.len = s.len;
            r.hdr = s.hdr;
        }
        to.handle_rx(now, &mut rx[..n]);
        if n < slots.len() {
            break;
        }
    }
}

struct World {
    client: Stack,
    server: Stack,
    services: Services,
    slots: Vec<Frame>,
    rx: Vec<Frame>,
    now: Instant,
    /// Response bytes the client read.
    got: u64,
}

impl World {
    fn step(&mut self) {
        self.now = self.now + Duration::from_millis(1);
        for s in [&mut self.client, &mut self.server] {
            if s.poll_timeout().is_some_and(|t| t <= self.now) {
                s.handle_timeout(self.now);
            }
        }
        pump(&mut self.client, &mut self.server, self.now, &mut self.slots, &mut self.rx);
        self.services.poll(self.now, &mut self.server);
        pump(&mut self.server, &mut self.client, self.now, &mut self.slots, &mut self.rx);
        while self.client.tcp_mut().poll_event().is_some() {}
    }

    fn connect(&mut self) -> TcpHandle {
        let at = SocketAddrV4::new(ip(2), PORT);
        let h = self.client.tcp_connect(self.now, at, None).unwrap();
        for _ in 0..5 {
            self.step();
        }
        h
    }

    fn send(&mut self, h: TcpHandle, data: &[u8]) {
        let n = self.client.tcp_mut().write(h, data).unwrap();
        assert_eq!(n, data.len());
    }

    /// Reads what arrived; true at the end of the stream.
    fn drain(&mut self, h: TcpHandle) -> bool {
        loop {
            match self.client.tcp_mut().read_with(h, |d| d.len()) {
                Ok(0) => return true,
                Ok(n) => self.got += n as u64,
                Err(TcpError::WouldBlock) => return false,
                Err(e) => panic!("client read: {e:?}"),
            }
        }
    }

    /// A round on `h`: the four requests in two writes, then the answers.
    fn round(&mut self, h: TcpHandle) {
        let (a, b) = ROUND.split_at(70);
        self.send(h, a);
        self.step();
        self.send(h, b);
        for _ in 0..3 {
            self.step();
            self.drain(h);
        }
    }

    /// A fresh connection: one request with `Connection: close`, answered, closed both ways.
    fn one_shot(&mut self) {
        let h = self.connect();
        self.send(h, CLOSE);
        let mut eof = false;
        for _ in 0..6 {
            self.step();
            eof |= self.drain(h);
        }
        assert!(eof, "the server closes after Connection: close");
        self.client.tcp_mut().close(self.now, h).unwrap();
        for _ in 0..3 {
            self.step();
        }
    }
}

fn main() {
    let mut server = stack(2, 1);
    let cfg = ServicesConfig { http: Some(PORT), backlog: 16, ..Default::default() };
    let services = Services::new(&cfg, &mut server).unwrap();
    let mut w = World {
        client: stack(1, 2),
        server,
        services,
        slots: (0..64).map(|_| Frame::empty(2048)).collect(),
        rx: (0..64).map(|_| Frame::empty(2048)).collect(),
        now: Instant::ZERO,
        got: 0,
    };
    // Warm-up: every path once (and TIME-WAIT entries, timers, the Date line).
    let h = w.connect();
    for _ in 0..20 {
        w.round(h);
        w.one_shot();
    }
    let per_round = w.got;
    let before = w.services.stats().http;
    let region = Region::new(GLOBAL);
    for i in 0..400 {
        w.round(h);
        if i % 10 == 0 {
            w.one_shot();
        }
    }
    let change = region.change();
    let after = w.services.stats().http;
    let requests = after.requests - before.requests;
    println!(
        "http_no_alloc: {requests} requests ({} connections opened and closed), {} response \
         bytes, {} allocations, {} reallocations in the region",
        after.requests - before.requests - 400 * 4,
        w.got - per_round,
        change.allocations,
        change.reallocations
    );
    assert_eq!(requests, 400 * 4 + 40, "every request answered");
    assert_eq!(after.bad_requests, 0);
    assert_eq!(after.not_found - before.not_found, 400);
    assert_eq!(after.method_not_allowed - before.method_not_allowed, 400);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "the HTTP responder allocated per request"
    );
    println!("1 passed, 0 failed");
}
