//! # Steady-state TCP allocates nothing
//!
//! A counting global allocator (`stats_alloc`, so no `unsafe` of ours) measures a region in
//! which two warmed-up stacks, wired back to back, move data both ways over one connection
//! (bulk writes and zero-copy reads, small request/response writes, delayed ACKs through
//! `handle_timeout`, events through `poll_event`), and a second connection is opened, used and
//! closed through TIME-WAIT. DESIGN §9 and the TCP brief: no allocation per segment; the only
//! allocations are at `Stack::new` and `tcp_listen`.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use libos::iface::route::Ipv4Cidr;
use libos::tcp::{ListenHandle, TcpError, TcpEvent, TcpHandle};
use libos::wire::EthernetAddress;
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

fn stack(n: u8, peer: u8) -> Stack {
    let mut cfg = StackConfig::new(mac(n), &[Ipv4Cidr::new(ip(n), 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((ip(peer), mac(peer)));
    cfg.tcp.max_connections = 8;
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
    a: Stack,
    b: Stack,
    slots: Vec<Frame>,
    rx: Vec<Frame>,
    now: Instant,
    /// Short-lived connections accepted on b, closed once their peer finished.
    served: [Option<TcpHandle>; 8],
    /// Short-lived connections opened by a, closed once they ended.
    clients: [Option<TcpHandle>; 8],
    buf: Vec<u8>,
}

impl World {
    fn round(&mut self) {
        self.now = self.now + Duration::from_millis(1);
        for s in [&mut self.a, &mut self.b] {
            if s.poll_timeout().is_some_and(|t| t <= self.now) {
                s.handle_timeout(self.now);
            }
        }
        pump(&mut self.a, &mut self.b, self.now, &mut self.slots, &mut self.rx);
        pump(&mut self.b, &mut self.a, self.now, &mut self.slots, &mut self.rx);
        while self.a.tcp_mut().poll_event().is_some() {}
    }

    /// Serves the short-lived connections on b: accept, read to the end, close.
    fn serve(&mut self, l: ListenHandle) {
        while let Some(ev) = self.b.tcp_mut().poll_event() {
            if let TcpEvent::Acceptable(_) = ev {
                while let Ok(h) = self.b.tcp_mut().accept(l) {
                    if let Some(slot) = self.served.iter_mut().find(|s| s.is_none()) {
                        *slot = Some(h);
                    }
                }
            }
        }
        for slot in self.served.iter_mut() {
            let Some(h) = *slot else { continue };
            match self.b.tcp_mut().read(h, &mut self.buf) {
                Ok(0) | Err(TcpError::Reset) | Err(TcpError::InvalidHandle) => {
                    let _ = self.b.tcp_mut().close(self.now, h);
                    *slot = None;
                }
                _ => {}
            }
        }
    }
}

fn steady_state_tcp_does_not_allocate() {
    let mut w = World {
        a: stack(1, 2),
        b: stack(2, 1),
        slots: (0..64).map(|_| Frame::empty(2048)).collect(),
        rx: (0..64).map(|_| Frame::empty(2048)).collect(),
        now: Instant::from_secs(1),
        served: [None; 8],
        clients: [None; 8],
        buf: vec![0u8; 64 * 1024],
    };
    let l = w.b.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 8).unwrap();
    let ha = w.a.tcp_connect(w.now, SocketAddrV4::new(ip(2), 80), None).unwrap();
    for _ in 0..4 {
        w.round();
    }
    while w.b.tcp_mut().poll_event().is_some() {}
    let hb = w.b.tcp_mut().accept(l).expect("the long-lived connection");
    let data = vec![0xa5u8; 16 * 1024];
    let mut moved = 0u64;
    let mut traffic = |w: &mut World, k: u64| {
        let _ = w.a.tcp_mut().write(ha, &data);
        if k % 3 == 0 {
            let _ = w.b.tcp_mut().write(hb, b"response");
        }
        w.round();
        while let Ok(n) = w.b.tcp_mut().read_with(hb, |d| d.len()) {
            if n == 0 {
                break;
            }
            moved += n as u64;
        }
        while let Ok(n) = w.a.tcp_mut().read(ha, &mut w.buf) {
            if n == 0 {
                break;
            }
        }
        w.serve(l);
        // A short-lived connection every 50 rounds: open, send, shut down; closed once it
        // ended (TIME-WAIT on a).
        if k % 50 == 10 {
            if let Ok(h) = w.a.tcp_connect(w.now, SocketAddrV4::new(ip(2), 80), None) {
                let _ = w.a.tcp_mut().write(h, b"hello");
                let _ = w.a.tcp_mut().shutdown(h);
                if let Some(slot) = w.clients.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(h);
                }
            }
        }
        for slot in w.clients.iter_mut() {
            if let Some(h) = *slot {
                if w.a.tcp().state(h) == Ok(libos::tcp::TcpState::Closed) {
                    let _ = w.a.tcp_mut().close(w.now, h);
                    *slot = None;
                }
            }
        }
        moved
    };
    for k in 0..200 {
        traffic(&mut w, k);
    }
    let before = traffic(&mut w, 200);
    let region = Region::new(GLOBAL);
    let mut after = 0;
    for k in 201..2201 {
        after = traffic(&mut w, k);
    }
    let change = region.change();
    assert!(after - before > 10 << 20, "data moved: {}", after - before);
    assert!(w.a.tcp().stats().active_opens > 40);
    assert!(w.a.tcp().time_wait_entries() > 0);
    assert_eq!((change.allocations, change.reallocations), (0, 0), "{change:?}");
}

/// Run without libtest (`harness = false` in Cargo.toml): one thread, so the global counters
/// see only the code under test.
fn main() {
    steady_state_tcp_does_not_allocate();
    println!("test steady_state_tcp_does_not_allocate ... ok");
}
