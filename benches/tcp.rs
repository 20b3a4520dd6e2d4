//! # TCP micro-benchmarks: ns per segment in and out
//!
//! Two `libos::Stack`s wired back to back (frames copied from one's transmit slots into the
//! other's receive batch, as a veth pair would), with a connection warmed up first so that the
//! congestion window is large. Cases, each over batches of 64 as a worker sees them:
//! - `rx_data/1448`: the receiver takes 64 in-order full-sized segments (`handle_rx`), the
//!   application reads them (`read_with`, zero copy) and `poll_tx` produces the ACKs. The
//!   segments are replayed with their sequence numbers rewritten (RFC 1624 checksum update) so
//!   every batch is new data. `rx_data_csum_offload/1448` marks the checksums as verified by the
//!   device (what a NIC or the NIC layer's GRO reports).
//! - `tx_data/1448`: the sender's application writes 64 segments' worth, `poll_tx` builds 64
//!   segments (software checksums), and one cumulative ACK comes back.
//! - `tx_tso/64KiB`: the same with segmentation offload: one 64 KiB super-segment per
//!   `poll_tx` (the NIC layer splits it; not measured here).
//! - `small_writes/64`: 64 application writes of 64 bytes, then `poll_tx` and the ACK: the
//!   cost of a write as a function call.
//! - `request_response/64`: one 64-byte request and its 64-byte response through both stacks
//!   (writes, segments both ways, reads, delayed-ACK bookkeeping).
//!
//! `Throughput::Elements` counts segments (or writes, or transactions); divide the time per
//! iteration by 64 for ns per segment.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libos::iface::route::Ipv4Cidr;
use libos::tcp::{TcpEvent, TcpHandle};
use libos::wire::{Csum, EthernetAddress, NetHdr, TcpPacket};
use libos::{Frame, FrameSlots, Instant, Stack, StackConfig};

const BATCH: usize = 64;
const MSS: usize = 1448;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

fn stack(n: u8, peer: u8, tso: bool) -> Stack {
    let mut cfg = StackConfig::new(mac(n), &[Ipv4Cidr::new(ip(n), 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((ip(peer), mac(peer)));
    cfg.tcp.max_connections = 4;
    cfg.tcp.tso = tso;
    cfg.tcp.rx_buffer = 4 << 20;
    cfg.tcp.tx_buffer = 4 << 20;
    Stack::new(cfg, Instant::ZERO).expect("valid config")
}

/// Two stacks, a connection from `a` to `b`, and the frames to move between them.
struct Pair {
    a: Stack,
    b: Stack,
    ha: TcpHandle,
    hb: TcpHandle,
    slots: Vec<Frame>,
    rx: Vec<Frame>,
    now: Instant,
}

impl Pair {
    fn new(tso: bool) -> Pair {
        let room = if tso { 66 * 1024 } else { 2048 };
        let mut p = Pair {
            a: stack(1, 2, tso),
            b: stack(2, 1, tso),
            ha: TcpHandle::default(),
            hb: TcpHandle::default(),
            slots: (0..BATCH).map(|_| Frame::empty(room)).collect(),
            rx: (0..BATCH).map(|_| Frame::empty(room)).collect(),
            now: Instant::from_secs(1),
        };
        let l = p.b.tcp_listen(SocketAddrV4::new(ip(2), 80), 4).expect("listen");
        p.ha = p.a.tcp_connect(p.now, SocketAddrV4::new(ip(2), 80), None).expect("connect");
        for _ in 0..4 {
            p.a_to_b();
            p.b_to_a();
        }
        p.hb = p.b.tcp_mut().accept(l).expect("accepted");
        while p.a.tcp_mut().poll_event().is_some() {}
        // Warm up: 32 MiB from a to b grows the congestion window out of slow start.
        let data = vec![0x5a; 1 << 20];
        for _ in 0..32 {
            let mut off = 0;
            while off < data.len() {
                off += p.a.tcp_mut().write(p.ha, &data[off..]).unwrap_or(0);
                p.a_to_b();
                p.drain_b();
                p.b_to_a();
            }
        }
        for _ in 0..8 {
            p.a_to_b();
            p.drain_b();
            p.b_to_a();
        }
        p
    }

    /// Moves what one stack sends into the other's receive batch (as a link would), in
    /// rounds of up to 64 frames; returns the frames moved.
    fn pump(
        from: &mut Stack,
        to: &mut Stack,
        now: Instant,
        slots: &mut [Frame],
        rx: &mut [Frame],
    ) -> usize {
        let mut total = 0;
        loop {
            let n = from.poll_tx(now, &mut FrameSlots::new(slots));
            for (s, r) in slots[..n].iter().zip(rx.iter_mut()) {
                r.buf[..s.len].copy_from_slice(&s.buf[..s.len]);
                r.len = s.len;
                // A super-segment arrives whole, as the NIC layer's GRO would hand it over.
                r.hdr = match s.hdr.gso {
                    libos::wire::Gso::TcpV4 { size, .. } => NetHdr {
                        csum: Csum::Valid,
                        gso: s.hdr.gso,
                        segments: ((s.len - 66) / usize::from(size) + 1) as u16,
                    },
                    _ => NetHdr::NONE,
                };
            }
            to.handle_rx(now, &mut rx[..n]);
            total += n;
            if n < slots.len() {
                return total;
            }
        }
    }

    fn a_to_b(&mut self) -> usize {
        Pair::pump(&mut self.a, &mut self.b, self.now, &mut self.slots, &mut self.rx)
    }

    fn b_to_a(&mut self) -> usize {
        Pair::pump(&mut self.b, &mut self.a, self.now, &mut self.slots, &mut self.rx)
    }

    fn drain_b(&mut self) {
        while let Ok(n) = self.b.tcp_mut().read_with(self.hb, |d| d.len()) {
            if n == 0 {
                break;
            }
        }
        while self.b.tcp_mut().poll_event().is_some() {}
    }
}

fn rewrite_seq(f: &mut Frame, seq: u32) {
    let mut t = TcpPacket::new_unchecked(&mut f.buf[34..f.len]);
    t.replace_seq_number(seq);
}

fn rewrite_ack(f: &mut Frame, ack: u32) {
    let mut t = TcpPacket::new_unchecked(&mut f.buf[34..f.len]);
    t.replace_ack_number(ack);
}

fn tcp_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp");

    // Receive: 64 full segments in, read, ACKs out.
    for offload in [false, true] {
        let mut p = Pair::new(false);
        p.a.tcp_mut().write(p.ha, &vec![7u8; BATCH * MSS]).expect("write");
        let n = p.a.poll_tx(p.now, &mut FrameSlots::new(&mut p.slots));
        assert_eq!(n, BATCH, "a full batch of segments: {:?}", p.a.tcp().info(p.ha));
        let mut batch: Vec<Frame> = p.slots[..BATCH].to_vec();
        let seq0: Vec<u32> = batch
            .iter()
            .map(|f| TcpPacket::new_unchecked(&f.buf[34..f.len]).seq_number())
            .collect();
        let hdr = if offload { NetHdr { csum: Csum::Valid, ..NetHdr::NONE } } else { NetHdr::NONE };
        let mut round = 0u32;
        let (mut b, hb, now) = (p.b, p.hb, p.now);
        let mut acks: Vec<Frame> = (0..BATCH).map(|_| Frame::empty(2048)).collect();
        let name = if offload { "rx_data_csum_offload" } else { "rx_data" };
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new(name, MSS), |bench| {
            bench.iter(|| {
                let off = round.wrapping_mul((BATCH * MSS) as u32);
                round += 1;
                for (f, s) in batch.iter_mut().zip(&seq0) {
                    rewrite_seq(f, s.wrapping_add(off));
                    f.hdr = hdr;
                }
                b.handle_rx(now, black_box(&mut batch[..]));
                while let Ok(n) = b.tcp_mut().read_with(hb, |d| black_box(d).len()) {
                    if n == 0 {
                        break;
                    }
                }
                b.poll_tx(now, &mut FrameSlots::new(&mut acks))
            })
        });
    }

    // Transmit: 64 segments' worth written, segmented and sent, one ACK back.
    for tso in [false, true] {
        let mut p = Pair::new(tso);
        // An ACK from b to rewrite: b acknowledges whatever a sent.
        p.a.tcp_mut().write(p.ha, &[1u8; 100]).expect("write");
        p.a_to_b();
        // Past the delayed-ACK timeout, b acknowledges.
        p.now = p.now + std::time::Duration::from_millis(50);
        p.b.handle_timeout(p.now);
        let n = p.b.poll_tx(p.now, &mut FrameSlots::new(&mut p.slots));
        assert!(n >= 1);
        let mut ack = p.slots[n - 1].clone();
        let mut acked = TcpPacket::new_unchecked(&ack.buf[34..ack.len]).ack_number();
        let (mut a, ha, now, mut slots) = (p.a, p.ha, p.now, p.slots);
        let data = vec![3u8; BATCH * MSS];
        let (name, param, elems) = if tso {
            ("tx_tso", "64KiB".to_string(), (BATCH * MSS / MSS) as u64)
        } else {
            ("tx_data", MSS.to_string(), BATCH as u64)
        };
        g.throughput(Throughput::Elements(elems));
        g.bench_function(BenchmarkId::new(name, param), |bench| {
            bench.iter(|| {
                let w = a.tcp_mut().write(ha, black_box(&data)).unwrap_or(0);
                let mut sent = 0;
                loop {
                    let k = a.poll_tx(now, &mut FrameSlots::new(&mut slots));
                    sent += k;
                    if k < slots.len() {
                        break;
                    }
                }
                acked = acked.wrapping_add(w as u32);
                rewrite_ack(&mut ack, acked);
                a.handle_rx(now, std::slice::from_mut(&mut ack));
                sent
            })
        });
        // The benchmark measured real work: every ACK acknowledged data that was sent.
        let st = a.tcp().stats();
        assert_eq!(st.drops(libos::tcp::TcpDrop::BadAck), 0, "{st:?}");
        assert!(st.segs_out > 64 && (!tso || st.tso_frames > 0), "{st:?}");
    }

    // 64 small writes, then what goes out.
    {
        let mut p = Pair::new(false);
        p.a.tcp_mut().set_nodelay(p.ha, true).expect("nodelay");
        let msg = [9u8; 64];
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new("small_writes", 64), |bench| {
            bench.iter(|| {
                for _ in 0..BATCH {
                    let _ = p.a.tcp_mut().write(p.ha, black_box(&msg));
                }
                p.a_to_b();
                p.drain_b();
                p.b_to_a()
            })
        });
    }

    // Request-response: 64 bytes each way through both stacks.
    {
        let mut p = Pair::new(false);
        p.a.tcp_mut().set_nodelay(p.ha, true).expect("nodelay");
        p.b.tcp_mut().set_nodelay(p.hb, true).expect("nodelay");
        let msg = [1u8; 64];
        let mut buf = [0u8; 256];
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("request_response", 64), |bench| {
            bench.iter(|| {
                p.a.tcp_mut().write(p.ha, &msg).expect("request");
                p.a_to_b();
                let n = p.b.tcp_mut().read(p.hb, &mut buf).unwrap_or(0);
                p.b.tcp_mut().write(p.hb, &buf[..n]).expect("response");
                p.b_to_a();
                while let Some(TcpEvent::Conn { .. }) = p.a.tcp_mut().poll_event() {}
                while p.b.tcp_mut().poll_event().is_some() {}
                p.a.tcp_mut().read(p.ha, &mut buf).unwrap_or(0)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tcp_benches);
criterion_main!(benches);
