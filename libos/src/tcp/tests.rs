//! Unit and property tests of the connection table through a [`crate::Stack`], with a
//! scripted peer (the simulator tests in `crate::sim` use two stacks).

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;

use super::*;
use crate::batch::{Frame, FrameSlots};
use crate::iface::route::Ipv4Cidr;
use crate::sim::tcp::{parse, repr, tcp_frame, SegInfo};
use crate::stack::{Stack, StackConfig};

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);
const US_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const PEER_ISN: u32 = 0xffff_ff00;

/// The byte the peer sends at stream offset `i`.
fn peer_byte(i: u32) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 24) as u8
}

/// The byte we send at stream offset `i`.
fn our_byte(i: u32) -> u8 {
    (i.wrapping_mul(40_503) >> 8) as u8 ^ 0x5a
}

pub(super) struct Harness {
    pub s: Stack,
    pub now: Instant,
    pub h: TcpHandle,
    pub our_isn: u32,
    pub ts: bool,
    pub sent_out: Vec<SegInfo>,
}

pub(super) fn stack(rx: usize, tx: usize, tweak: impl Fn(&mut TcpConfig)) -> Stack {
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(US_IP, 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((PEER_IP, PEER));
    cfg.tcp.max_connections = 4;
    cfg.tcp.rx_buffer = rx;
    cfg.tcp.tx_buffer = tx;
    tweak(&mut cfg.tcp);
    Stack::new(cfg, Instant::ZERO).unwrap()
}

impl Harness {
    /// A connection accepted by a listener on port 80, the peer at 10.0.0.9:5000.
    pub fn established(rx: usize, tx: usize, ts: bool, sack: bool, ws: Option<u8>) -> Harness {
        let mut s = stack(rx, tx, |_| {});
        let l = s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
        let mut h = Harness {
            s,
            now: Instant::from_secs(1),
            h: TcpHandle::default(),
            our_isn: 0,
            ts,
            sent_out: Vec::new(),
        };
        let mut syn = repr(5000, 80, PEER_ISN, 0, TcpFlags::SYN, 65535);
        syn.max_seg_size = Some(1460);
        syn.window_scale = ws;
        syn.sack_permitted = sack;
        syn.timestamps = ts.then_some(TcpTimestamps { tsval: 100, tsecr: 0 });
        h.rx_repr(&syn, &[]);
        let out = h.tx();
        let synack =
            out.iter().find(|s| s.flags() == TcpFlags::SYN | TcpFlags::ACK).expect("syn-ack");
        h.our_isn = synack.repr.seq_number;
        let mut ack = repr(
            5000,
            80,
            PEER_ISN.wrapping_add(1),
            h.our_isn.wrapping_add(1),
            TcpFlags::ACK,
            65535,
        );
        ack.timestamps =
            ts.then_some(TcpTimestamps { tsval: 101, tsecr: synack.ts().map_or(0, |t| t.tsval) });
        h.rx_repr(&ack, &[]);
        h.h = h.s.tcp_mut().accept(l).expect("accepted");
        h
    }

    pub fn rx_repr(&mut self, r: &TcpRepr, payload: &[u8]) -> Verdict {
        let f = tcp_frame(PEER, US, PEER_IP, US_IP, r, payload);
        let mut b = [Frame::new(&f, f.len())];
        self.s.handle_rx(self.now, &mut b[..]);
        b[0].verdict
    }

    pub fn tx(&mut self) -> Vec<SegInfo> {
        let mut out = Vec::new();
        loop {
            let mut slots: Vec<Frame> = (0..8).map(|_| Frame::empty(2048)).collect();
            let n = self.s.poll_tx(self.now, &mut FrameSlots::new(&mut slots));
            for f in &slots[..n] {
                if let Some(seg) = parse(f.bytes()) {
                    out.push(seg);
                }
            }
            if n < 8 {
                break;
            }
        }
        self.sent_out.extend(out.iter().cloned());
        out
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
    }

    pub fn conn(&self) -> &Conn {
        &self.s.tcp().conns[self.h.index as usize]
    }
}

#[derive(Debug, Clone)]
enum Op {
    Seg { seq: i32, ack: i32, flags: u8, len: u16, wnd: u16, sack: Option<(i32, u16)>, ts: i32 },
    Write(u16),
    Read(u16),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop_oneof![3 => -200i32..2000, 1 => -3000i32..6000],
            prop_oneof![3 => 0i32..3000, 1 => -3000i32..6000],
            prop_oneof![3 => Just(0x10u8), 1 => Just(0x11u8), 1 => Just(0x18u8), 1 => any::<u8>()],
            0u16..1500,
            prop_oneof![3 => 1000u16..65535, 1 => any::<u16>()],
            proptest::option::of((-2000i32..6000, 1u16..3000)),
            -5i32..50,
        )
            .prop_map(|(seq, ack, flags, len, wnd, sack, ts)| Op::Seg { seq, ack, flags, len, wnd, sack, ts }),
        2 => (0u16..5000).prop_map(Op::Write),
        2 => (0u16..5000).prop_map(Op::Read),
        1 => (0u16..3000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Arbitrary segments (any flags, sequence and acknowledgment numbers near the live ones,
    /// SACK blocks, timestamps), writes, reads and time: never a panic; SND.UNA ≤ SND.NXT ≤
    /// SND.MAX; buffers within bounds; the right window edge never moves left; what is read is
    /// exactly the peer's stream, in order, each byte once; what is sent is exactly ours.
    #[test]
    fn arbitrary_segments_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..120),
        ts in any::<bool>(),
        sack in any::<bool>(),
        ws in proptest::option::of(0u8..16),
    ) {
        let (rx, txb) = (4096usize, 4096usize);
        let mut h = Harness::established(rx, txb, ts, sack, ws);
        let mut read = Vec::new();
        let mut written = 0u32;
        let mut tsval = 200u32;
        let mut adv = h.conn().rcv_adv();
        for op in ops {
            match op {
                Op::Seg { seq, ack, flags, len, wnd, sack, ts: dts } => {
                    let c = h.conn();
                    let (una, nxt, _) = c.snd();
                    let base = c.rcv_nxt();
                    let s = base.wrapping_add(seq as u32);
                    let a = if ack % 2 == 0 { una.wrapping_add(ack as u32) } else { nxt.wrapping_add(ack as u32 / 4) };
                    let off = s.wrapping_sub(PEER_ISN.wrapping_add(1));
                    let payload: Vec<u8> = (0..u32::from(len)).map(|i| peer_byte(off.wrapping_add(i))).collect();
                    let mut r = repr(5000, 80, s, a, TcpFlags::from_bits(flags & 0x3f), wnd);
                    if h.ts {
                        tsval = tsval.wrapping_add(dts as u32);
                        r.timestamps = Some(TcpTimestamps { tsval, tsecr: 0 });
                    }
                    if let Some((l, n)) = sack {
                        let l = una.wrapping_add(l as u32);
                        r.sack_ranges = SackBlocks::from_slice(&[(l, l.wrapping_add(u32::from(n)))]).unwrap();
                    }
                    h.rx_repr(&r, &payload);
                }
                Op::Write(n) => {
                    let data: Vec<u8> = (0..u32::from(n)).map(|i| our_byte(written + i)).collect();
                    if let Ok(k) = h.s.tcp_mut().write(h.h, &data) {
                        prop_assert!(k <= data.len());
                        written += k as u32;
                    }
                }
                Op::Read(n) => {
                    let mut buf = vec![0u8; usize::from(n)];
                    if let Ok(k) = h.s.tcp_mut().read(h.h, &mut buf) {
                        read.extend_from_slice(&buf[..k]);
                    }
                }
                Op::Advance(ms) => h.advance(Duration::from_millis(u64::from(ms))),
            }
            let out = h.tx();
            if h.s.tcp().slot(h.h).is_err() {
                break; // reset or closed: the handle is gone
            }
            let c = h.conn();
            let (una, nxt, max) = c.snd();
            prop_assert!(seq::le(una, nxt) && seq::le(nxt, max), "una {una} nxt {nxt} max {max}");
            prop_assert!(c.readable() <= rx && c.send_queued() <= txb);
            prop_assert!(seq::le(una, c.buf_seq()) && seq::le(c.buf_seq(), una.wrapping_add(1)));
            if c.state.may_receive() {
                prop_assert!(seq::ge(c.rcv_adv(), adv), "window edge moved left");
                adv = c.rcv_adv();
            }
            for &(s, e) in c.ooo_ranges() {
                prop_assert!(seq::lt(c.rcv_nxt(), s) && seq::lt(s, e));
            }
            for &(s, e) in c.sacked() {
                prop_assert!(seq::le(una, s) && seq::lt(s, e) && seq::le(e, max));
            }
            for seg in &out {
                let first = h.our_isn.wrapping_add(1);
                for (k, &b) in seg.payload.iter().enumerate() {
                    let i = seg.repr.seq_number.wrapping_add(k as u32).wrapping_sub(first);
                    prop_assert!(i < written, "sent a byte never written");
                    prop_assert_eq!(b, our_byte(i));
                }
            }
            let _ = c.mode();
            let _ = c.pmtu();
        }
        for (i, &b) in read.iter().enumerate() {
            prop_assert_eq!(b, peer_byte(i as u32), "byte {} read wrong", i);
        }
    }
}
