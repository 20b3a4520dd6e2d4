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
    pub listener: Option<ListenHandle>,
    pub our_isn: u32,
    pub ts: bool,
    pub sack: bool,
    /// The peer's next sequence number.
    pub peer_nxt: u32,
    /// The highest sequence number we sent (end of our segments).
    pub our_max: u32,
    /// The peer's timestamp clock and our latest TSval.
    pub peer_ts: u32,
    pub our_ts: u32,
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
    fn blank(s: Stack, ts: bool, sack: bool) -> Harness {
        Harness {
            s,
            now: Instant::from_secs(1),
            h: TcpHandle::default(),
            listener: None,
            our_isn: 0,
            ts,
            sack,
            peer_nxt: PEER_ISN,
            our_max: 0,
            peer_ts: 100,
            our_ts: 0,
            sent_out: Vec::new(),
        }
    }

    /// A connection accepted by a listener on port 80, the peer at 10.0.0.9:5000.
    pub fn established(rx: usize, tx: usize, ts: bool, sack: bool, ws: Option<u8>) -> Harness {
        Harness::passive_with(stack(rx, tx, |_| {}), ts, sack, ws)
    }

    pub fn passive_with(s: Stack, ts: bool, sack: bool, ws: Option<u8>) -> Harness {
        let mut h = Harness::blank(s, ts, sack);
        let l = h.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
        h.listener = Some(l);
        let mut syn = h.seg(TcpFlags::SYN);
        syn.ack_number = 0;
        syn.max_seg_size = Some(1460);
        syn.window_scale = ws;
        syn.sack_permitted = sack;
        h.send(&syn, &[]);
        let out = h.tx();
        let synack =
            out.iter().find(|s| s.flags() == TcpFlags::SYN | TcpFlags::ACK).expect("syn-ack");
        h.our_isn = synack.repr.seq_number;
        let ack = h.seg(TcpFlags::ACK);
        h.send(&ack, &[]);
        h.h = h.s.tcp_mut().accept(l).expect("accepted");
        h
    }

    /// A connection we opened from 10.0.0.1:4000 to the peer at 10.0.0.9:5000, up to the SYN.
    pub fn syn_sent(ts: bool, sack: bool) -> Harness {
        let s = stack(8192, 8192, |c| {
            c.timestamps = ts;
            c.sack = sack;
        });
        let mut h = Harness::blank(s, ts, sack);
        h.h =
            h.s.tcp_connect(
                h.now,
                SocketAddrV4::new(PEER_IP, 5000),
                Some(SocketAddrV4::new(US_IP, 80)),
            )
            .unwrap();
        let out = h.tx();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flags(), TcpFlags::SYN);
        h.our_isn = out[0].repr.seq_number;
        h
    }

    /// [`syn_sent`](Self::syn_sent), then the peer's SYN-ACK.
    pub fn active(ts: bool, sack: bool) -> Harness {
        let mut h = Harness::syn_sent(ts, sack);
        let mut sa = h.seg(TcpFlags::SYN | TcpFlags::ACK);
        sa.max_seg_size = Some(1460);
        sa.sack_permitted = sack;
        h.send(&sa, &[]);
        h.tx();
        h
    }

    /// A segment from the peer at its current sequence number, acknowledging all we sent.
    pub fn seg(&mut self, flags: TcpFlags) -> TcpRepr {
        let mut r = repr(5000, 80, self.peer_nxt, self.our_max, flags, 65535);
        if self.ts {
            self.peer_ts += 1;
            r.timestamps = Some(TcpTimestamps { tsval: self.peer_ts, tsecr: self.our_ts });
        }
        r
    }

    /// Sends `r` with `payload` and advances the peer's sequence number past it.
    pub fn send(&mut self, r: &TcpRepr, payload: &[u8]) -> Verdict {
        let adv = payload.len() as u32
            + u32::from(r.flags.contains(TcpFlags::SYN))
            + u32::from(r.flags.contains(TcpFlags::FIN));
        if r.seq_number == self.peer_nxt {
            self.peer_nxt = self.peer_nxt.wrapping_add(adv);
        }
        self.rx_repr(r, payload)
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
        for seg in &out {
            let end = seg.repr.seq_number.wrapping_add(
                seg.payload.len() as u32
                    + u32::from(seg.flags().contains(TcpFlags::SYN))
                    + u32::from(seg.flags().contains(TcpFlags::FIN)),
            );
            if !seg.flags().contains(TcpFlags::RST)
                && (self.our_max == 0 || seq::gt(end, self.our_max))
            {
                self.our_max = end;
            }
            if let Some(t) = seg.ts() {
                self.our_ts = t.tsval;
            }
        }
        self.sent_out.extend(out.iter().cloned());
        out
    }

    /// Moves time forward by `d`, running the timers on the way (each due one at its time).
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.s.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.tx();
        }
        self.now = end;
    }

    pub fn conn(&self) -> &Conn {
        &self.s.tcp().conns[self.h.index as usize]
    }

    /// The state of our connection (CLOSED once its slot was released).
    pub fn state(&self) -> TcpState {
        let i = self.h.index as usize;
        let c = &self.s.tcp().conns[i];
        if self.s.tcp().tw.lookup(&c.key).is_some() {
            TcpState::TimeWait
        } else if self.s.tcp().live[i] && c.generation == self.h.generation {
            c.state
        } else if self.s.tcp().time_wait_entries() > 0 {
            TcpState::TimeWait
        } else {
            TcpState::Closed
        }
    }

    pub fn events(&mut self) -> Ready {
        let mut r = Ready::empty();
        while let Some(e) = self.s.tcp_mut().poll_event() {
            if let TcpEvent::Conn { ready, .. } = e {
                r |= ready;
            }
        }
        r
    }
}

/// `n` property-test cases, or `PROPTEST_CASES` when set (for long runs in release).
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n)
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
    #![proptest_config(ProptestConfig { cases: cases(256), .. ProptestConfig::default() })]

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

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn flags_of(out: &[SegInfo]) -> Vec<TcpFlags> {
    out.iter().map(|s| s.flags()).collect()
}

const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const SYN: TcpFlags = TcpFlags::SYN;
const RST: TcpFlags = TcpFlags::RST;
const SYNACK: TcpFlags = TcpFlags::from_bits(0x12);
const FINACK: TcpFlags = TcpFlags::from_bits(0x11);

#[test]
fn passive_open_and_passive_close() {
    let mut h = Harness::established(8192, 8192, true, true, Some(7));
    assert_eq!(h.state(), TcpState::Established);
    assert_eq!(h.s.tcp().stats().passive_opens, 1);
    // Peer FIN → CLOSE-WAIT, FIN acknowledged at once, PEER_CLOSED reported.
    let r = h.seg(FIN | ACK);
    h.send(&r, b"bye");
    let out = h.tx();
    assert_eq!(flags_of(&out), [ACK]);
    assert_eq!(out[0].repr.ack_number, h.peer_nxt);
    assert_eq!(h.state(), TcpState::CloseWait);
    assert!(h.events().contains(Ready::PEER_CLOSED | Ready::READABLE));
    let mut buf = [0u8; 8];
    assert_eq!(h.s.tcp_mut().read(h.h, &mut buf), Ok(3));
    assert_eq!(h.s.tcp_mut().read(h.h, &mut buf), Ok(0), "end of stream");
    // Close → LAST-ACK with our FIN → the peer's ACK → gone.
    h.s.tcp_mut().close(h.now, h.h).unwrap();
    let out = h.tx();
    assert_eq!(flags_of(&out), [FIN | ACK]);
    assert_eq!(h.s.tcp().stats().in_state(TcpState::LastAck), 1);
    let r = h.seg(ACK);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::Closed);
    assert_eq!(h.s.tcp().connections(), 0);
    assert_eq!(h.s.tcp().time_wait_entries(), 0);
    assert_eq!(h.s.tcp().stats().states, [0; TcpState::COUNT]);
}

#[test]
fn active_open_and_active_close_through_time_wait() {
    let mut h = Harness::active(true, true);
    assert_eq!(h.state(), TcpState::Established);
    let ev = h.events();
    assert!(ev.contains(Ready::CONNECTED | Ready::WRITABLE), "{ev:?}");
    assert_eq!(h.sent_out.last().unwrap().flags(), ACK, "the handshake's third segment");
    h.s.tcp_mut().write(h.h, b"hello").unwrap();
    h.s.tcp_mut().shutdown(h.h).unwrap();
    assert_eq!(h.state(), TcpState::FinWait1);
    let out = h.tx();
    assert_eq!(flags_of(&out), [FIN | ACK | TcpFlags::PSH], "data and FIN in one segment");
    assert_eq!(out[0].payload, b"hello");
    let r = h.seg(ACK);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::FinWait2);
    let r = h.seg(FIN | ACK);
    h.send(&r, &[]);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    assert_eq!(h.state(), TcpState::TimeWait);
    assert!(h.events().contains(Ready::CLOSED | Ready::PEER_CLOSED));
    assert_eq!(h.s.tcp().stats().in_state(TcpState::TimeWait), 1);
    // A retransmitted FIN in TIME-WAIT is acknowledged again; an RST is ignored (RFC 1337).
    let mut r = h.seg(FIN | ACK);
    r.seq_number = h.peer_nxt.wrapping_sub(1);
    h.rx_repr(&r, &[]);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    let r = h.seg(RST);
    h.rx_repr(&r, &[]);
    assert!(h.tx().is_empty());
    assert_eq!(h.s.tcp().time_wait_entries(), 1);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.s.tcp().time_wait_entries(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.s.tcp().time_wait_entries(), 0);
    assert_eq!(h.s.tcp().stats().in_state(TcpState::TimeWait), 0);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut h = Harness::established(8192, 8192, true, true, None);
    h.s.tcp_mut().shutdown(h.h).unwrap();
    assert_eq!(flags_of(&h.tx()), [FIN | ACK]);
    // The peer's FIN crosses ours: it does not acknowledge our FIN.
    let mut r = h.seg(FIN | ACK);
    r.ack_number = h.our_max.wrapping_sub(1);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::Closing);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    let r = h.seg(ACK);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::TimeWait);
}

#[test]
fn fin_ack_in_fin_wait_1_goes_straight_to_time_wait() {
    let mut h = Harness::established(8192, 8192, false, false, None);
    h.s.tcp_mut().shutdown(h.h).unwrap();
    h.tx();
    let r = h.seg(FIN | ACK);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::TimeWait);
    assert_eq!(flags_of(&h.tx()), [ACK]);
}

#[test]
fn simultaneous_open_through_syn_received() {
    let mut h = Harness::syn_sent(true, true);
    // The peer's SYN crosses ours.
    let mut syn = h.seg(SYN);
    syn.ack_number = 0;
    syn.max_seg_size = Some(1400);
    syn.sack_permitted = true;
    h.send(&syn, &[]);
    assert_eq!(h.state(), TcpState::SynReceived);
    let out = h.tx();
    assert_eq!(flags_of(&out), [SYN | ACK]);
    assert_eq!(out[0].repr.seq_number, h.our_isn, "SYN-ACK repeats our ISN");
    // Its SYN-ACK for our SYN: a challenge ACK (RFC 5961 §4), which completes both sides.
    let r = h.seg(SYN | ACK);
    h.rx_repr(&r, &[]);
    assert_eq!(h.state(), TcpState::SynReceived);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    let r = h.seg(ACK);
    h.send(&r, &[]);
    assert_eq!(h.state(), TcpState::Established);
    assert!(h.events().contains(Ready::CONNECTED));
    assert_eq!(h.conn().mss(), 1400 - 12);
}

/// Drives a fresh connection to `state` (active or passive as fits), with timestamps off so
/// that segments can be replayed freely.
fn in_state(state: TcpState) -> Harness {
    match state {
        TcpState::SynSent => Harness::syn_sent(false, false),
        TcpState::SynReceived => {
            let mut h = Harness::syn_sent(false, false);
            let mut syn = h.seg(SYN);
            syn.ack_number = 0;
            h.send(&syn, &[]);
            h.tx();
            h
        }
        TcpState::Established => Harness::established(8192, 8192, false, false, None),
        TcpState::FinWait1 => {
            let mut h = in_state(TcpState::Established);
            h.s.tcp_mut().shutdown(h.h).unwrap();
            h.tx();
            h
        }
        TcpState::FinWait2 => {
            let mut h = in_state(TcpState::FinWait1);
            let r = h.seg(ACK);
            h.send(&r, &[]);
            h
        }
        TcpState::CloseWait => {
            let mut h = in_state(TcpState::Established);
            let r = h.seg(FIN | ACK);
            h.send(&r, &[]);
            h.tx();
            h
        }
        TcpState::Closing => {
            let mut h = in_state(TcpState::FinWait1);
            let mut r = h.seg(FIN | ACK);
            r.ack_number = h.our_max.wrapping_sub(1);
            h.send(&r, &[]);
            h.tx();
            h
        }
        TcpState::LastAck => {
            let mut h = in_state(TcpState::CloseWait);
            h.s.tcp_mut().shutdown(h.h).unwrap();
            h.tx();
            h
        }
        s => panic!("in_state({s})"),
    }
}

const SYNCHRONIZED: [TcpState; 7] = [
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::CloseWait,
    TcpState::Closing,
    TcpState::LastAck,
    TcpState::SynReceived,
];

#[test]
fn every_state_is_reachable() {
    for s in SYNCHRONIZED.iter().chain(&[TcpState::SynSent]) {
        assert_eq!(in_state(*s).state(), *s);
    }
}

#[test]
fn rst_in_every_state() {
    for state in SYNCHRONIZED {
        // Out of window: silently dropped.
        let mut h = in_state(state);
        let mut r = h.seg(RST);
        r.seq_number = h.peer_nxt.wrapping_add(1_000_000);
        h.rx_repr(&r, &[]);
        assert!(h.tx().is_empty(), "{state}: no reply to an out-of-window RST");
        assert_eq!(h.state(), state);
        // In window but not RCV.NXT: a challenge ACK (RFC 5961 §3.2), nothing else.
        let mut r = h.seg(RST);
        r.seq_number = h.peer_nxt.wrapping_add(10);
        h.rx_repr(&r, &[]);
        let out = h.tx();
        assert_eq!(flags_of(&out), [ACK], "{state}: challenge ACK");
        assert_eq!(out[0].repr.ack_number, h.peer_nxt);
        assert_eq!(h.state(), state);
        assert!(h.s.tcp().stats().challenge_acks >= 1);
        // Exactly RCV.NXT: the connection is reset.
        let r = h.seg(RST);
        h.rx_repr(&r, &[]);
        assert!(h.tx().is_empty(), "{state}: never answer an RST");
        let tcp = h.s.tcp();
        assert!(tcp.state(h.h).map_or(true, |s| s == TcpState::Closed), "{state}: reset");
        assert!(h.events().contains(Ready::RESET), "{state}: RESET reported");
        assert_eq!(h.s.tcp_mut().write(h.h, b"x"), Err(TcpError::Reset), "{state}");
        assert_eq!(h.s.tcp_mut().read(h.h, &mut [0u8; 4]), Err(TcpError::Reset), "{state}");
        assert_eq!(h.s.tcp().stats().resets_received, 1);
    }
    // SYN-SENT: an RST is acceptable only if it acknowledges our SYN.
    let mut h = in_state(TcpState::SynSent);
    let mut r = h.seg(RST);
    r.flags = RST;
    h.rx_repr(&r, &[]);
    assert_eq!(h.state(), TcpState::SynSent, "RST without ACK ignored");
    let r = h.seg(RST | ACK);
    h.rx_repr(&r, &[]);
    assert!(h.events().contains(Ready::RESET), "connection refused");
    assert_eq!(h.s.tcp().stats().connect_failures, 1);
}

#[test]
fn syn_on_a_synchronized_connection_gets_a_challenge_ack() {
    for state in &SYNCHRONIZED[..6] {
        let mut h = in_state(*state);
        for seq in [0u32, 100, 1 << 30] {
            h.now = h.now + ms(600); // past the per-connection rate limit
            let mut r = h.seg(SYN);
            r.seq_number = h.peer_nxt.wrapping_add(seq);
            h.rx_repr(&r, &[]);
            let out = h.tx();
            assert_eq!(flags_of(&out), [ACK], "{state} seq +{seq}");
            assert_eq!(out[0].repr.ack_number, h.peer_nxt);
            assert_eq!(h.state(), *state);
        }
    }
}

#[test]
fn acks_outside_the_acceptable_range_get_challenge_acks() {
    let mut h = Harness::established(8192, 8192, false, false, None);
    h.s.tcp_mut().write(h.h, &[7; 100]).unwrap();
    h.tx();
    // Acknowledging data never sent (RFC 5961 §5.2).
    let mut r = h.seg(ACK);
    r.ack_number = h.our_max.wrapping_add(5000);
    h.rx_repr(&r, b"data");
    assert_eq!(flags_of(&h.tx()), [ACK]);
    assert_eq!(h.conn().readable(), 0, "the segment was dropped");
    assert_eq!(h.s.tcp().stats().drops(TcpDrop::BadAck), 1);
    // Far too old.
    h.now = h.now + ms(600);
    let mut r = h.seg(ACK);
    r.ack_number = h.our_max.wrapping_sub(1 << 20);
    h.rx_repr(&r, &[]);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    assert_eq!(h.s.tcp().stats().drops(TcpDrop::BadAck), 2);
    // A burst is rate limited per connection.
    for _ in 0..5 {
        let mut r = h.seg(ACK);
        r.ack_number = h.our_max.wrapping_add(5000);
        h.rx_repr(&r, &[]);
    }
    assert!(h.tx().is_empty());
    assert!(h.s.tcp().stats().drops(TcpDrop::RateLimited) >= 5);
}

#[test]
fn segments_for_no_socket_are_reset() {
    let mut h = Harness::blank(stack(4096, 4096, |_| {}), false, false);
    let mut syn = repr(5000, 81, 1000, 0, SYN, 65535);
    syn.max_seg_size = Some(1460);
    assert_eq!(h.rx_repr(&syn, &[]), Verdict::Drop(DropReason::NoSocket));
    let out = h.tx();
    assert_eq!(flags_of(&out), [RST | ACK]);
    assert_eq!((out[0].repr.seq_number, out[0].repr.ack_number), (0, 1001));
    let ack = repr(5000, 81, 1000, 777, ACK, 65535);
    h.rx_repr(&ack, b"xyz");
    let out = h.tx();
    assert_eq!(flags_of(&out), [RST]);
    assert_eq!(out[0].repr.seq_number, 777);
    h.rx_repr(&repr(5000, 81, 1000, 0, RST, 0), &[]);
    assert!(h.tx().is_empty(), "no RST for an RST");
    assert_eq!(h.s.tcp().stats().drops(TcpDrop::NoSocket), 3);
}

#[test]
fn unacceptable_acks_in_the_handshake_are_reset() {
    // SYN-SENT: an ACK that does not cover our SYN.
    let mut h = Harness::syn_sent(false, false);
    let mut r = h.seg(SYN | ACK);
    r.ack_number = h.our_isn.wrapping_add(100);
    h.rx_repr(&r, &[]);
    let out = h.tx();
    assert_eq!(flags_of(&out), [RST]);
    assert_eq!(out[0].repr.seq_number, h.our_isn.wrapping_add(100));
    assert_eq!(h.state(), TcpState::SynSent);
    // SYN-RECEIVED (passive): the same.
    let mut s = stack(4096, 4096, |_| {});
    s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
    let mut h = Harness::blank(s, false, false);
    let mut syn = h.seg(SYN);
    syn.ack_number = 0;
    h.send(&syn, &[]);
    h.tx();
    let mut r = h.seg(ACK);
    r.ack_number = 12345;
    h.rx_repr(&r, &[]);
    let out = h.tx();
    assert_eq!(flags_of(&out), [RST]);
    assert_eq!(out[0].repr.seq_number, 12345);
    assert_eq!(h.s.tcp().stats().in_state(TcpState::SynReceived), 1);
    // A retransmitted SYN gets the SYN-ACK again.
    h.rx_repr(&syn, &[]);
    assert_eq!(flags_of(&h.tx()), [SYN | ACK]);
    // An RST at RCV.NXT removes the half-open connection silently.
    let r = h.seg(RST);
    h.rx_repr(&r, &[]);
    assert_eq!(h.s.tcp().connections(), 0);
    assert_eq!(h.s.tcp().stats().in_state(TcpState::SynReceived), 0);
}

#[test]
fn paws_drops_segments_with_old_timestamps() {
    let mut h = Harness::established(8192, 8192, true, true, None);
    let r = h.seg(ACK | TcpFlags::PSH);
    h.send(&r, b"new");
    h.tx();
    // Replay with an older timestamp: dropped, answered with an ACK.
    let mut old = h.seg(ACK | TcpFlags::PSH);
    old.timestamps = Some(TcpTimestamps { tsval: 50, tsecr: 0 });
    h.rx_repr(&old, b"old");
    assert_eq!(flags_of(&h.tx()), [ACK]);
    assert_eq!(h.conn().readable(), 3);
    assert_eq!(h.s.tcp().stats().drops(TcpDrop::Paws), 1);
}

#[test]
fn lost_syn_is_retransmitted_with_backoff_then_times_out() {
    let mut h = Harness::syn_sent(true, true);
    let t0 = h.now;
    h.advance(Duration::from_secs(200));
    let syns: Vec<Duration> = h
        .sent_out
        .iter()
        .filter(|s| s.flags() == SYN)
        .map(|s| {
            // Timestamps carry our millisecond clock.
            Duration::from_millis(u64::from(
                s.ts().unwrap().tsval.wrapping_sub(h.sent_out[0].ts().unwrap().tsval),
            ))
        })
        .collect();
    let expect: Vec<Duration> =
        [0u64, 1, 3, 7, 15, 31, 63].iter().map(|&s| Duration::from_secs(s)).collect();
    assert_eq!(syns, expect, "1 s initial RTO, doubled each time, 6 retries");
    assert!(h.events().contains(Ready::TIMED_OUT));
    assert_eq!(h.state(), TcpState::Closed);
    assert!(h.now - t0 > Duration::from_secs(127));
    assert_eq!(h.s.tcp().stats().connect_failures, 1);
}

#[test]
fn time_wait_reopens_for_a_syn_with_a_newer_timestamp() {
    let mut h = Harness::established(8192, 8192, true, true, None);
    h.s.tcp_mut().close(h.now, h.h).unwrap();
    h.tx();
    let r = h.seg(FIN | ACK);
    h.send(&r, &[]);
    h.tx();
    assert_eq!(h.s.tcp().time_wait_entries(), 1);
    // An old SYN (lower timestamp) is answered with the TIME-WAIT ACK.
    let mut syn = h.seg(SYN);
    syn.ack_number = 0;
    syn.timestamps = Some(TcpTimestamps { tsval: 1, tsecr: 0 });
    h.rx_repr(&syn, &[]);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    // A new incarnation (RFC 6191): a new connection in SYN-RECEIVED, with an ISN above the old.
    let mut syn = h.seg(SYN);
    syn.ack_number = 0;
    syn.seq_number = 5;
    h.rx_repr(&syn, &[]);
    let old_max = h.our_max;
    let out = h.tx();
    assert_eq!(flags_of(&out), [SYN | ACK]);
    assert!(seq::gt(out[0].repr.seq_number, old_max));
    assert_eq!(h.s.tcp().time_wait_entries(), 0);
    assert_eq!(h.s.tcp().stats().time_wait_reused, 1);
}

/// Data segments (payload, retransmissions included) we sent since `from`.
fn data_segs(h: &Harness, from: usize) -> Vec<(u32, usize)> {
    h.sent_out[from..]
        .iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| (s.repr.seq_number.wrapping_sub(h.our_isn.wrapping_add(1)), s.payload.len()))
        .collect()
}

#[test]
fn rto_backs_off_and_karn_ignores_retransmitted_samples() {
    let mut h = Harness::established(8192, 8192, false, false, None);
    h.now = h.now + ms(50);
    h.s.tcp_mut().write(h.h, &[1; 1000]).unwrap();
    h.tx();
    // A first RTT sample of 50 ms.
    h.now = h.now + ms(50);
    let r = h.seg(ACK);
    h.send(&r, &[]);
    let srtt = h.s.tcp().info(h.h).unwrap().srtt.unwrap();
    assert!(srtt > ms(1), "{srtt:?}");
    let rto = h.s.tcp().info(h.h).unwrap().rto;
    assert_eq!(rto, ms(200), "the 200 ms floor");
    let start = h.sent_out.len();
    let t0 = h.now;
    h.s.tcp_mut().write(h.h, &[2; 1000]).unwrap();
    h.tx();
    let mut times = Vec::new();
    for _ in 0..2000 {
        let before = h.sent_out.len();
        h.advance(ms(1));
        if h.sent_out.len() > before {
            times.push((h.now - t0).as_millis() as u64);
        }
    }
    assert_eq!(times, [200, 600, 1400], "RTO doubles: 200, 400, 800 ms");
    assert_eq!(data_segs(&h, start).len(), 4);
    assert_eq!(h.s.tcp().stats().rto_events, 3);
    // The ACK of retransmitted data gives no RTT sample (Karn), and the backoff stays until a
    // fresh sample.
    h.now = h.now + ms(10);
    let r = h.seg(ACK);
    h.send(&r, &[]);
    assert_eq!(h.s.tcp().info(h.h).unwrap().srtt.unwrap(), srtt);
    assert!(h.s.tcp().info(h.h).unwrap().rto > ms(200));
    assert_eq!(h.state(), TcpState::Established);
}

#[test]
fn rto_gives_up_after_max_retries() {
    let s = stack(8192, 8192, |c| c.max_retries = 3);
    let mut h = Harness::passive_with(s, false, false, None);
    h.s.tcp_mut().write(h.h, &[1; 100]).unwrap();
    h.tx();
    h.advance(Duration::from_secs(30));
    assert_eq!(data_segs(&h, 0).len(), 4);
    assert!(h.events().contains(Ready::TIMED_OUT));
    assert_eq!(h.s.tcp_mut().write(h.h, b"x"), Err(TcpError::TimedOut));
    assert_eq!(h.s.tcp().stats().timeouts, 1);
}

/// Ten full segments in flight from an established connection without SACK.
fn ten_in_flight(ts: bool, sack: bool) -> Harness {
    let mut h = Harness::established(65536, 65536, ts, sack, Some(7));
    h.s.tcp_mut().write(h.h, &vec![9; 10 * 1460]).unwrap();
    let out = h.tx();
    assert_eq!(out.len(), 10, "initial window of 10 segments");
    h
}

fn ack_at(h: &mut Harness, off: u32, sack: &[(u32, u32)]) {
    let mut r = h.seg(ACK);
    let base = h.our_isn.wrapping_add(1);
    r.ack_number = base.wrapping_add(off);
    let blocks: Vec<(u32, u32)> =
        sack.iter().map(|&(a, b)| (base.wrapping_add(a), base.wrapping_add(b))).collect();
    r.sack_ranges = SackBlocks::from_slice(&blocks).unwrap();
    h.send(&r, &[]);
}

#[test]
fn newreno_fast_retransmit_and_partial_acks() {
    const M: u32 = 1460;
    let mut h = ten_in_flight(false, false);
    ack_at(&mut h, M, &[]);
    let cwnd0 = h.s.tcp().info(h.h).unwrap().cwnd;
    h.tx();
    let start = h.sent_out.len();
    // Segment 2 is lost: three duplicate ACKs.
    for _ in 0..2 {
        ack_at(&mut h, M, &[]);
    }
    // Limited transmit (RFC 3042): two dupacks release no retransmission (and no new data:
    // everything is sent).
    assert!(data_segs(&h, start).is_empty());
    h.tx();
    ack_at(&mut h, M, &[]);
    h.tx();
    assert_eq!(data_segs(&h, start), [(M, M as usize)], "fast retransmit of the hole");
    assert_eq!(h.s.tcp().stats().fast_retransmits, 1);
    let info = h.s.tcp().info(h.h).unwrap();
    assert_eq!(info.ssthresh, (cwnd0 as f64 * 0.7) as u32, "CUBIC's β = 0.7");
    assert_eq!(info.cwnd, info.ssthresh + 3 * 1460, "NewReno inflation");
    // A partial ACK up to segment 5: the next hole (segment 6) goes at once (RFC 6582).
    ack_at(&mut h, 5 * M, &[]);
    h.tx();
    assert_eq!(data_segs(&h, start)[1], (5 * M, M as usize));
    // The full ACK ends recovery.
    ack_at(&mut h, 10 * M, &[]);
    assert_eq!(h.conn().mode(), conn::Mode::Open);
    assert!(h.s.tcp().info(h.h).unwrap().cwnd <= info.ssthresh);
}

#[test]
#[allow(non_snake_case)]
fn sack_recovery_retransmits_only_the_holes() {
    let mut h = ten_in_flight(true, true);
    let M = u32::from(h.conn().mss());
    assert!(h.sack);
    let start = h.sent_out.len();
    // Segments 2 and 6 (offsets M and 5M) are lost; the rest arrive and are SACKed.
    ack_at(&mut h, M, &[(2 * M, 5 * M)]);
    ack_at(&mut h, M, &[(6 * M, 10 * M), (2 * M, 5 * M)]);
    h.tx();
    let rtx = data_segs(&h, start);
    assert_eq!(rtx, [(M, M as usize), (5 * M, M as usize)], "exactly the holes");
    assert_eq!(h.s.tcp().stats().sack_recoveries, 1);
    assert_eq!(h.conn().mode(), conn::Mode::Recovery);
    ack_at(&mut h, 10 * M, &[]);
    assert_eq!(h.conn().mode(), conn::Mode::Open);
    assert_eq!(h.s.tcp().stats().retransmits, 2);
}

/// Segment 2 is reordered, not lost: the SACKs above it start a recovery and it is
/// retransmitted, then the original and the retransmission both arrive and the receiver
/// reports the second as a duplicate (RFC 2883 D-SACK). The window reduction is undone once
/// the recovery is over (RFC 2883 §5, as Linux's `tcp_try_undo_dsack`).
/// Ten segments in flight with SACK; the receiver SACKs all but segment 2, which is resent in
/// a recovery. Returns the harness, the MSS and the window before the recovery.
fn segment_two_resent_in_recovery() -> (Harness, u32, TcpInfo) {
    let mut h = ten_in_flight(true, true);
    let m = u32::from(h.conn().mss());
    let before = h.s.tcp().info(h.h).unwrap();
    let start = h.sent_out.len();
    ack_at(&mut h, m, &[(2 * m, 5 * m)]);
    ack_at(&mut h, m, &[(2 * m, 10 * m)]);
    h.tx();
    assert_eq!(data_segs(&h, start), [(m, m as usize)], "the hole resent");
    assert_eq!(h.conn().mode(), conn::Mode::Recovery);
    (h, m, before)
}

#[test]
#[allow(non_snake_case)]
fn a_dsacked_fast_retransmit_undoes_its_window_reduction() {
    let (mut h, M, before) = segment_two_resent_in_recovery();
    let during = h.s.tcp().info(h.h).unwrap();
    assert!(during.cwnd < before.cwnd, "reduced: {} -> {}", before.cwnd, during.cwnd);
    // The original arrived late: everything is acknowledged and the resent copy D-SACKed.
    ack_at(&mut h, 10 * M, &[(M, 2 * M)]);
    assert_eq!(h.conn().mode(), conn::Mode::Open);
    let after = h.s.tcp().info(h.h).unwrap();
    assert!(after.cwnd >= before.cwnd, "undone: {} -> {}", before.cwnd, after.cwnd);
    assert_eq!(after.ssthresh, before.ssthresh);
    assert_eq!(h.s.tcp().stats().dsack_undos, 1);
}

/// A real loss is not undone: the retransmission is never D-SACKed, and a D-SACK of a
/// segment the network duplicated (never retransmitted) does not count for it.
#[test]
#[allow(non_snake_case)]
fn a_real_loss_is_not_undone_by_a_dsack_of_a_network_duplicate() {
    let (mut h, M, before) = segment_two_resent_in_recovery();
    // The retransmission repairs the hole; segment 4 arrived twice (the network's copy).
    ack_at(&mut h, 10 * M, &[(3 * M, 4 * M)]);
    assert_eq!(h.conn().mode(), conn::Mode::Open);
    let after = h.s.tcp().info(h.h).unwrap();
    assert!(after.cwnd < before.cwnd, "kept reduced: {} -> {}", before.cwnd, after.cwnd);
    assert!(after.ssthresh < before.ssthresh);
    assert_eq!(h.s.tcp().stats().dsack_undos, 0);
    // A D-SACK of the resent segment itself arriving much later (a second copy of the
    // retransmission) does undo it: that retransmission was in fact unnecessary.
    ack_at(&mut h, 10 * M, &[(M, 2 * M)]);
    assert_eq!(h.s.tcp().stats().dsack_undos, 1);
}

#[test]
#[allow(non_snake_case)]
fn rto_after_sack_loss_resends_everything_unacknowledged() {
    let mut h = ten_in_flight(true, true);
    let M = u32::from(h.conn().mss());
    let start = h.sent_out.len();
    // A first RTT sample makes tail-loss probes possible: ACK the first segment.
    h.now = h.now + ms(1);
    ack_at(&mut h, M, &[]);
    h.tx();
    // Silence: first a tail-loss probe (the last segment again) after ~10 ms...
    h.advance(ms(50));
    let rtx = data_segs(&h, start);
    assert_eq!(rtx.len(), 1, "one probe");
    assert_eq!(rtx[0].0 + rtx[0].1 as u32, 14600, "the probe carries the tail (new data)");
    assert_eq!(h.s.tcp().stats().tail_loss_probes, 1);
    // ...then the RTO: go back to SND.UNA.
    let start = h.sent_out.len();
    h.advance(ms(1100));
    let rtx = data_segs(&h, start);
    assert!(!rtx.is_empty());
    assert_eq!(rtx[0], (M, M as usize), "go back to SND.UNA");
    assert_eq!(h.conn().mode(), conn::Mode::Loss);
    // Each ACK opens the window (slow start) and the rest goes out in order.
    for k in 2..=11 {
        ack_at(&mut h, (k * M).min(14600), &[]);
        h.tx();
    }
    let offs: Vec<u32> = data_segs(&h, start).iter().map(|s| s.0).collect();
    for k in 1..10 {
        assert!(offs.contains(&(k * M)), "segment {k} resent");
    }
    assert_eq!(h.conn().mode(), conn::Mode::Open);
}

#[test]
fn zero_window_is_probed_with_backoff_then_resumes() {
    let mut h = Harness::established(8192, 65536, false, false, None);
    let mut r = h.seg(ACK);
    r.window_len = 0;
    h.send(&r, &[]);
    h.s.tcp_mut().write(h.h, &[5; 3000]).unwrap();
    assert!(data_segs(&h, 0).is_empty() && h.tx().is_empty(), "nothing while the window is 0");
    let start = h.sent_out.len();
    let t0 = h.now;
    let mut times = Vec::new();
    for _ in 0..1500 {
        let before = h.sent_out.len();
        h.advance(ms(1));
        if h.sent_out.len() > before {
            times.push((h.now - t0).as_millis() as u64);
            // The peer answers each probe: still no room.
            let mut r = h.seg(ACK);
            r.window_len = 0;
            r.ack_number = h.our_isn.wrapping_add(1);
            h.send(&r, &[]);
        }
    }
    assert_eq!(times, [200, 600, 1400], "probes back off");
    for s in &h.sent_out[start..] {
        assert_eq!(s.payload.len(), 1, "a one-octet probe");
    }
    assert_eq!(h.s.tcp().stats().window_probes, 3);
    // The window opens: everything flows, starting with the probed octet.
    let mut r = h.seg(ACK);
    r.ack_number = h.our_isn.wrapping_add(1);
    h.send(&r, &[]);
    let out = h.tx();
    assert_eq!(out[0].repr.seq_number, h.our_isn.wrapping_add(1));
    let mut total: usize = out.iter().map(|s| s.payload.len()).sum();
    assert_eq!(total, 2920, "full segments; Nagle holds the 80-byte tail");
    let r = h.seg(ACK);
    h.send(&r, &[]);
    total += h.tx().iter().map(|s| s.payload.len()).sum::<usize>();
    assert_eq!(total, 3000);
}

#[test]
fn keepalive_probes_an_idle_peer_then_gives_up() {
    let mut h = Harness::established(8192, 8192, true, false, None);
    let ka =
        Keepalive { idle: Duration::from_secs(10), interval: Duration::from_secs(2), probes: 3 };
    h.s.tcp_mut().set_keepalive(h.now, h.h, Some(ka)).unwrap();
    let start = h.sent_out.len();
    h.advance(Duration::from_secs(10) + ms(1));
    let probes = &h.sent_out[start..];
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].repr.seq_number, h.our_isn, "SEG.SEQ = SND.UNA − 1");
    assert!(probes[0].payload.is_empty());
    // The peer answers: the connection stays, the next probe waits a full idle time.
    let r = h.seg(ACK);
    h.send(&r, &[]);
    h.advance(Duration::from_secs(9));
    assert_eq!(h.sent_out.len(), start + 1);
    // Now silence: three probes 2 s apart, then an RST and TIMED_OUT.
    h.advance(Duration::from_secs(20));
    let after: Vec<TcpFlags> = h.sent_out[start + 1..].iter().map(|s| s.flags()).collect();
    assert_eq!(after, [ACK, ACK, ACK, RST | ACK]);
    assert!(h.events().contains(Ready::TIMED_OUT));
    assert_eq!(h.s.tcp().stats().keepalive_probes, 4);
}

#[test]
fn delayed_acks_after_the_quick_start() {
    let mut h = Harness::established(65536, 8192, false, false, None);
    // Quick ACKs: the first 16 segments are acknowledged at once.
    for _ in 0..16 {
        let r = h.seg(ACK);
        h.send(&r, &[1; 100]);
        assert_eq!(flags_of(&h.tx()), [ACK]);
    }
    // Then one small segment waits for the delayed-ACK timer (40 ms).
    let r = h.seg(ACK);
    h.send(&r, &[1; 100]);
    assert!(h.tx().is_empty());
    let n = h.sent_out.len();
    h.advance(ms(39));
    assert_eq!(h.sent_out.len(), n);
    h.advance(ms(1));
    assert_eq!(h.sent_out.len(), n + 1);
    assert_eq!(h.s.tcp().stats().delayed_acks, 1);
    // Two full-sized segments are acknowledged at once (RFC 9293 §3.8.6.3).
    let r = h.seg(ACK);
    h.send(&r, &[1; 1460]);
    let r = h.seg(ACK);
    h.send(&r, &[1; 1460]);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    // Out-of-order data is acknowledged at once (a duplicate ACK).
    let mut r = h.seg(ACK);
    r.seq_number = h.peer_nxt.wrapping_add(1000);
    h.rx_repr(&r, &[1; 10]);
    let out = h.tx();
    assert_eq!(flags_of(&out), [ACK]);
    assert_eq!(out[0].repr.ack_number, h.peer_nxt);
}

#[test]
fn nagle_holds_small_segments_while_data_is_unacknowledged() {
    let mut h = Harness::established(8192, 65536, false, false, None);
    h.s.tcp_mut().write(h.h, b"a").unwrap();
    assert_eq!(h.tx().len(), 1, "nothing in flight: sent at once");
    h.s.tcp_mut().write(h.h, b"b").unwrap();
    h.s.tcp_mut().write(h.h, b"c").unwrap();
    assert!(h.tx().is_empty(), "held while 'a' is unacknowledged");
    let r = h.seg(ACK);
    h.send(&r, &[]);
    let out = h.tx();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"bc", "coalesced");
    // TCP_NODELAY sends at once.
    h.s.tcp_mut().set_nodelay(h.h, true).unwrap();
    h.s.tcp_mut().write(h.h, b"d").unwrap();
    assert_eq!(h.tx().len(), 1);
}

#[test]
fn reading_reopens_a_closed_window_with_an_update() {
    let mut h = Harness::established(4096, 8192, false, false, None);
    let mut sent = 0;
    while sent < 8000 {
        let r = h.seg(ACK);
        if h.send(&r, &[3; 1000]) != Verdict::Consumed {
            h.peer_nxt = h.peer_nxt.wrapping_sub(1000);
            break;
        }
        sent += 1000;
    }
    let out = h.tx();
    let last = out.last().unwrap();
    assert_eq!(last.repr.window_len, 0, "the window closed");
    assert!(h.conn().readable() >= 4000);
    let mut buf = [0u8; 8192];
    let n = h.s.tcp_mut().read(h.h, &mut buf).unwrap();
    assert!(n >= 4000);
    let out = h.tx();
    assert_eq!(flags_of(&out), [ACK], "a window update");
    assert!(out[0].repr.window_len as usize >= 4000);
}

#[test]
fn icmp_fragmentation_needed_lowers_the_mss() {
    let mut h = Harness::established(8192, 65536, false, false, None);
    h.s.tcp_mut().write(h.h, &[4; 4000]).unwrap();
    let out = h.tx();
    assert_eq!(out[0].payload.len(), 1460);
    // A router says the path carries 1200 bytes, quoting our first segment.
    let seg = tcp_frame(US, PEER, US_IP, PEER_IP, &out[0].repr, &out[0].payload);
    let quote = &seg[14..14 + 28];
    let icmp = crate::sim::tcp::icmp_frag_needed(PEER, US, PEER_IP, US_IP, 1200, quote);
    let mut b = [Frame::new(&icmp, icmp.len())];
    h.s.handle_rx(h.now, &mut b[..]);
    assert_eq!(h.s.tcp().stats().pmtu_updates, 1);
    assert_eq!(h.s.tcp().info(h.h).unwrap().mss, 1160);
    let out = h.tx();
    assert!(!out.is_empty());
    assert!(out.iter().all(|s| s.payload.len() <= 1160));
    assert_eq!(out[0].repr.seq_number, h.our_isn.wrapping_add(1), "resent at the new size");
}

#[test]
fn data_right_after_the_syn_ack_is_accepted_before_our_first_ack() {
    let mut h = Harness::syn_sent(false, false);
    let mut sa = h.seg(SYN | ACK);
    sa.max_seg_size = Some(1460);
    // The SYN-ACK and two data segments arrive in one batch, before we answer.
    let f1 = tcp_frame(PEER, US, PEER_IP, US_IP, &sa, &[]);
    h.peer_nxt = h.peer_nxt.wrapping_add(1);
    let d1 = h.seg(ACK);
    let f2 = tcp_frame(PEER, US, PEER_IP, US_IP, &d1, &[1; 1000]);
    h.peer_nxt = h.peer_nxt.wrapping_add(1000);
    let d2 = h.seg(ACK);
    let f3 = tcp_frame(PEER, US, PEER_IP, US_IP, &d2, &[2; 1000]);
    let mut b = [Frame::new(&f1, f1.len()), Frame::new(&f2, f2.len()), Frame::new(&f3, f3.len())];
    h.s.handle_rx(h.now, &mut b[..]);
    assert!(
        b.iter().all(|f| f.verdict == Verdict::Consumed),
        "{:?}",
        b.iter().map(|f| f.verdict).collect::<Vec<_>>()
    );
    assert_eq!(h.conn().readable(), 2000);
    let out = h.tx();
    assert_eq!(flags_of(&out), [ACK], "one ACK for the whole batch");
    assert_eq!(out[0].repr.ack_number, h.peer_nxt.wrapping_add(1000));
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    /// The peer's FIN, acknowledging everything we sent.
    PeerFin,
    /// The peer's FIN, not acknowledging our FIN.
    PeerFinCrossing,
    /// An ACK of everything we sent.
    PeerAck,
    /// An RST at RCV.NXT.
    PeerRst,
    /// A SYN-ACK for our SYN.
    PeerSynAck,
    /// A SYN (simultaneous open).
    PeerSyn,
    AppShutdown,
    AppClose,
}

/// RFC 9293 §3.3.2's transitions, one row each: from, event, to, what we send.
#[test]
fn state_transition_table() {
    use TcpState::*;
    const NONE: &[TcpFlags] = &[];
    let table: &[(TcpState, Ev, TcpState, &[TcpFlags])] = &[
        (SynSent, Ev::PeerSynAck, Established, &[ACK]),
        (SynSent, Ev::PeerSyn, SynReceived, &[SYNACK]),
        (SynSent, Ev::PeerRst, SynSent, NONE), // no ACK of our SYN: ignored
        (SynSent, Ev::AppClose, Closed, NONE),
        (SynReceived, Ev::PeerAck, Established, NONE),
        (SynReceived, Ev::PeerRst, Closed, NONE),
        (Established, Ev::PeerFin, CloseWait, &[ACK]),
        (Established, Ev::AppShutdown, FinWait1, &[FINACK]),
        (Established, Ev::PeerRst, Closed, NONE),
        (Established, Ev::AppClose, FinWait1, &[FINACK]),
        (FinWait1, Ev::PeerAck, FinWait2, NONE),
        (FinWait1, Ev::PeerFin, TimeWait, &[ACK]),
        (FinWait1, Ev::PeerFinCrossing, Closing, &[ACK]),
        (FinWait1, Ev::PeerRst, Closed, NONE),
        (FinWait2, Ev::PeerFin, TimeWait, &[ACK]),
        (FinWait2, Ev::PeerRst, Closed, NONE),
        (CloseWait, Ev::AppShutdown, LastAck, &[FINACK]),
        (CloseWait, Ev::AppClose, LastAck, &[FINACK]),
        (CloseWait, Ev::PeerRst, Closed, NONE),
        (Closing, Ev::PeerAck, TimeWait, NONE),
        (Closing, Ev::PeerRst, Closed, NONE),
        (LastAck, Ev::PeerAck, Closed, NONE),
        (LastAck, Ev::PeerRst, Closed, NONE),
    ];
    for &(from, ev, to, reply) in table {
        let mut h = in_state(from);
        match ev {
            Ev::PeerFin | Ev::PeerFinCrossing => {
                let mut r = h.seg(FIN | ACK);
                if let Ev::PeerFinCrossing = ev {
                    r.ack_number = h.our_max.wrapping_sub(1);
                }
                h.send(&r, &[]);
            }
            Ev::PeerAck => {
                let r = h.seg(ACK);
                h.send(&r, &[]);
            }
            Ev::PeerRst => {
                let r = h.seg(RST);
                h.rx_repr(&r, &[]);
            }
            Ev::PeerSynAck => {
                let mut r = h.seg(SYN | ACK);
                r.max_seg_size = Some(1460);
                h.send(&r, &[]);
            }
            Ev::PeerSyn => {
                let mut r = h.seg(SYN);
                r.ack_number = 0;
                h.send(&r, &[]);
            }
            Ev::AppShutdown => h.s.tcp_mut().shutdown(h.h).unwrap(),
            Ev::AppClose => h.s.tcp_mut().close(h.now, h.h).unwrap(),
        }
        let out = h.tx();
        assert_eq!(h.state(), to, "{from} + {ev:?}");
        assert_eq!(flags_of(&out), reply, "{from} + {ev:?}: reply");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), .. ProptestConfig::default() })]

    /// Arbitrary segments from many 4-tuples at a listener (SYNs with any options, ACKs with
    /// any numbers, RSTs, data), with time passing and the application accepting now and then:
    /// never a panic; the tables stay within their bounds; the per-state counts add up.
    #[test]
    fn arbitrary_segments_at_a_listener_keep_the_tables_bounded(
        segs in proptest::collection::vec(
            (0u16..6, any::<u32>(), any::<u32>(), any::<u8>(), proptest::option::of(0u16..3000),
             proptest::option::of(0u8..20), any::<bool>(), proptest::option::of(any::<u32>()),
             0usize..64, 0u8..4),
            1..150),
        cookies in 0u8..3,
    ) {
        let s = stack(4096, 4096, |c| {
            c.syn_backlog = 2;
            c.max_time_wait = 2;
            c.syn_cookies = match cookies { 0 => SynCookies::Off, 1 => SynCookies::Auto, _ => SynCookies::Always };
        });
        let mut h = Harness::blank(s, false, false);
        let l = h.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 2).unwrap();
        let mut accepted = Vec::new();
        for (port, seqn, ackn, flags, mss, ws, sackp, ts, len, action) in segs {
            let mut r = repr(5000 + port, if port == 5 { 81 } else { 80 }, seqn, ackn, TcpFlags::from_bits(flags), 4096);
            r.max_seg_size = mss;
            r.window_scale = ws;
            r.sack_permitted = sackp;
            r.timestamps = ts.map(|v| TcpTimestamps { tsval: v, tsecr: v.rotate_left(7) });
            h.rx_repr(&r, &vec![0x42; len]);
            match action {
                0 => h.advance(ms(300)),
                1 => {
                    if let Ok(c) = h.s.tcp_mut().accept(l) {
                        accepted.push(c);
                    }
                }
                2 => {
                    if let Some(c) = accepted.pop() {
                        let _ = h.s.tcp_mut().close(h.now, c);
                    }
                }
                _ => {}
            }
            h.tx();
            let tcp = h.s.tcp();
            prop_assert!(tcp.connections() <= 4);
            prop_assert!(tcp.time_wait_entries() <= 2);
            prop_assert!(tcp.stats().in_state(TcpState::SynReceived) <= 2);
            let live: u64 = tcp.stats().states.iter().sum::<u64>() - tcp.stats().in_state(TcpState::TimeWait);
            prop_assert_eq!(live as usize, tcp.connections());
            prop_assert_eq!(tcp.stats().in_state(TcpState::TimeWait) as usize, tcp.time_wait_entries());
        }
    }
}

/// A SYN with FIN (and any of PSH, URG) to a listener is dropped without an answer and opens
/// nothing, as Linux does; a plain SYN from the same port then opens as usual.
#[test]
fn a_syn_with_fin_to_a_listener_is_dropped_silently() {
    for extra in [0u8, 0x08, 0x20, 0x28] {
        let mut h = Harness::blank(stack(4096, 4096, |_| {}), false, false);
        h.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
        let mut r = h.seg(TcpFlags::from_bits(0x03 | extra));
        r.ack_number = 0;
        assert_eq!(h.rx_repr(&r, b""), Verdict::Drop(DropReason::Tcp));
        assert!(h.tx().is_empty(), "SYN|FIN with {extra:#x} answered");
        assert_eq!(h.s.tcp().connections(), 0);
        assert_eq!(h.s.tcp().stats().drops(TcpDrop::Ignored), 1);
        let r = h.seg(SYN);
        h.rx_repr(&r, b"");
        assert_eq!(flags_of(&h.tx()), [SYNACK]);
    }
}

#[test]
fn the_window_restarts_after_idle() {
    let mut h = Harness::established(65536, 1 << 20, false, true, Some(7));
    // Grow the window with a few round trips.
    for _ in 0..6 {
        h.s.tcp_mut().write(h.h, &vec![1; 64 * 1460]).unwrap();
        h.tx();
        h.now = h.now + ms(1);
        let r = h.seg(ACK);
        h.send(&r, &[]);
    }
    let grown = h.s.tcp().info(h.h).unwrap().cwnd;
    assert!(grown > 20 * 1460, "{grown}");
    while h.conn().send_queued() > 0 {
        h.tx();
        let r = h.seg(ACK);
        h.send(&r, &[]);
    }
    // Idle for longer than the RTO: the next burst starts from the initial window.
    h.advance(Duration::from_secs(2));
    h.s.tcp_mut().write(h.h, &vec![2; 64 * 1460]).unwrap();
    let out = h.tx();
    assert_eq!(out.len(), 10, "initial window after idle");
}

#[test]
fn a_coalesced_frame_is_one_segment_acknowledged_as_many() {
    let mut h = Harness::established(65536, 8192, true, true, None);
    // Use up the quick-ACK start so that the ACK decision rests on the segment count.
    for _ in 0..16 {
        let r = h.seg(ACK);
        h.send(&r, &[0; 10]);
        h.tx();
    }
    let mut buf = [0u8; 256];
    let _ = h.s.tcp_mut().read(h.h, &mut buf);
    // Ten 1448-byte segments coalesced by GRO below the stack: one frame, checksums verified
    // by the layer below (its TCP checksum field holds the TSO pseudo-header sum).
    let r = h.seg(ACK);
    let payload: Vec<u8> = (0..14480u32).map(|i| i as u8).collect();
    let mut f = tcp_frame(PEER, US, PEER_IP, US_IP, &r, &payload);
    f[34 + 16] ^= 0xff; // whatever is in the checksum field is not verified
    let mut b = [Frame::new(&f, f.len())];
    b[0].hdr = NetHdr {
        csum: Csum::Valid,
        gso: Gso::TcpV4 { size: 1448, hdr_len: (14 + 20 + 32) as u16 },
        segments: 10,
    };
    h.s.handle_rx(h.now, &mut b[..]);
    assert_eq!(b[0].verdict, Verdict::Consumed);
    h.peer_nxt = h.peer_nxt.wrapping_add(14480);
    assert_eq!(h.s.tcp().stats().gro_frames, 1);
    assert_eq!(h.conn().readable(), 14480);
    let out = h.tx();
    assert_eq!(flags_of(&out), [ACK], "ten segments' worth: acknowledged at once");
    assert_eq!(out[0].repr.ack_number, h.peer_nxt);
    let mut got = vec![0u8; 14480];
    assert_eq!(h.s.tcp_mut().read(h.h, &mut got), Ok(14480));
    assert_eq!(got, payload);
    // The same frame without the device's word is verified, and fails.
    let r = h.seg(ACK);
    let mut f = tcp_frame(PEER, US, PEER_IP, US_IP, &r, b"bad");
    f[34 + 16] ^= 0xff;
    let mut b = [Frame::new(&f, f.len())];
    h.s.handle_rx(h.now, &mut b[..]);
    assert_eq!(b[0].verdict, Verdict::Drop(DropReason::BadChecksum));
    assert_eq!(h.conn().readable(), 0);
}

#[test]
fn syn_cookies_without_timestamps_carry_only_the_mss() {
    let s = stack(8192, 8192, |c| c.syn_cookies = SynCookies::Always);
    let mut h = Harness::blank(s, false, false);
    let l = h.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).unwrap();
    let mut syn = h.seg(SYN);
    syn.ack_number = 0;
    syn.max_seg_size = Some(1400);
    syn.window_scale = Some(7);
    syn.sack_permitted = true;
    h.send(&syn, &[]);
    let out = h.tx();
    assert_eq!(flags_of(&out), [SYNACK]);
    let sa = &out[0].repr;
    assert_eq!((sa.max_seg_size, sa.window_scale, sa.sack_permitted), (Some(1460), None, false));
    assert_eq!(h.s.tcp().connections(), 0, "no state kept");
    h.our_isn = sa.seq_number;
    h.our_max = sa.seq_number.wrapping_add(1);
    // The ACK brings the connection to life; the MSS comes back from the cookie's table.
    let r = h.seg(ACK);
    h.send(&r, b"first");
    let c = h.s.tcp_mut().accept(l).unwrap();
    let info = h.s.tcp().info(c).unwrap();
    assert_eq!((info.mss, info.wscale, info.sack, info.ts), (1300, None, false, false));
    let mut buf = [0u8; 8];
    assert_eq!(h.s.tcp_mut().read(c, &mut buf), Ok(5));
    assert_eq!(h.s.tcp().stats().syn_cookies_validated, 1);
    assert_eq!(flags_of(&h.tx()), [ACK]);
    // A forged ACK (wrong cookie) is reset.
    let mut bad = h.seg(ACK);
    bad.src_port = 6000;
    bad.ack_number = 12345;
    h.rx_repr(&bad, &[]);
    assert_eq!(flags_of(&h.tx()), [RST]);
    assert_eq!(h.s.tcp().stats().syn_cookies_failed, 1);
}

#[test]
fn nothing_to_send_means_no_transmit_work() {
    // Blocked by a zero window: the persist timer runs, the transmit queue is idle.
    let mut h = Harness::established(8192, 65536, false, false, None);
    let mut r = h.seg(ACK);
    r.window_len = 0;
    h.send(&r, &[]);
    h.s.tcp_mut().write(h.h, &[5; 3000]).unwrap();
    h.tx();
    assert!(!h.s.wants_tx(), "zero window");
    assert!(h.s.poll_timeout().is_some(), "persist timer");
    // In recovery, once the holes are resent, waiting for ACKs is not transmit work.
    let mut h = ten_in_flight(true, true);
    let m = u32::from(h.conn().mss());
    ack_at(&mut h, m, &[(2 * m, 10 * m)]);
    h.tx();
    assert_eq!(h.conn().mode(), conn::Mode::Recovery);
    assert!(!h.s.wants_tx(), "recovery waiting on ACKs");
}

#[test]
fn a_segment_in_ip_fragments_is_reassembled_and_delivered() {
    let mut h = Harness::established(8192, 8192, false, false, None);
    let r = h.seg(ACK | TcpFlags::PSH);
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 3) as u8).collect();
    let whole = tcp_frame(PEER, US, PEER_IP, US_IP, &r, &payload);
    let frags = crate::sim::frames::ipv4_fragments(
        PEER,
        US,
        PEER_IP,
        US_IP,
        crate::wire::IpProtocol::Tcp,
        77,
        &whole[34..],
        576,
    );
    assert!(frags.len() >= 3);
    for f in &frags {
        let mut b = [Frame::new(f, f.len())];
        h.s.handle_rx(h.now, &mut b[..]);
    }
    assert_eq!(h.conn().readable(), 1200);
    assert_eq!(h.s.stats().icmp_errors_sent, 0);
}

/// The peer's stream offset of sequence number `s`.
fn peer_off(s: u32) -> u32 {
    s.wrapping_sub(PEER_ISN.wrapping_add(1))
}

/// The peer's bytes `[s, s + n)` by sequence number.
fn peer_data(s: u32, n: u32) -> Vec<u8> {
    (0..n).map(|i| peer_byte(peer_off(s).wrapping_add(i))).collect()
}

/// The soak's pattern (issue 7): a Linux sender's 16 KiB block ends in a short segment; when
/// the receiver answers later than the sender's probe timeout (2·SRTT + 2 ms), the sender
/// retransmits that last segment as a tail-loss probe (RFC 8985 §7), and the original and the
/// probe arrive in one batch. The answer must carry a D-SACK of the probe (RFC 2883 §4), as
/// Linux's does: without it the sender takes the probe for a repaired loss
/// (`TCPLossProbeRecovery`) and halves its congestion window each time.
#[test]
fn a_tail_loss_probe_of_data_already_received_is_answered_with_a_dsack() {
    let mut h = Harness::established(65536, 8192, true, true, Some(7));
    let mut batch = Vec::new();
    let mut last = (0, 0);
    for len in [1448u32, 1448, 456] {
        let r = h.seg(ACK);
        let s = r.seq_number;
        batch.push(tcp_frame(PEER, US, PEER_IP, US_IP, &r, &peer_data(s, len)));
        h.peer_nxt = s.wrapping_add(len);
        last = (s, len);
    }
    let mut probe = h.seg(ACK);
    probe.seq_number = last.0;
    batch.push(tcp_frame(PEER, US, PEER_IP, US_IP, &probe, &peer_data(last.0, last.1)));
    let mut frames: Vec<Frame> = batch.iter().map(|f| Frame::new(f, f.len())).collect();
    h.s.handle_rx(h.now, &mut frames[..]);
    assert_eq!(h.s.tcp().stats().drops(TcpDrop::OutOfWindow), 1, "the probe's copy");
    let out = h.tx();
    let last_ack = out.last().expect("an answer at once, not after the delayed-ACK timer");
    assert_eq!(last_ack.repr.ack_number, h.peer_nxt);
    assert_eq!(
        last_ack.repr.sack_ranges.as_slice(),
        &[(last.0, last.0.wrapping_add(last.1))],
        "the probe D-SACKed: {out:?}"
    );
    assert!(out[..out.len() - 1].iter().all(|s| s.repr.sack_ranges.is_empty()), "{out:?}");
    // Reported once: the next ACK carries no block.
    let r = h.seg(ACK);
    h.send(&r, &peer_data(r.seq_number, 1448));
    let r = h.seg(ACK);
    h.send(&r, &peer_data(r.seq_number, 1448));
    let out = h.tx();
    assert!(!out.is_empty() && out.iter().all(|s| s.repr.sack_ranges.is_empty()), "{out:?}");
    let mut got = vec![0u8; 8192];
    let n = h.s.tcp_mut().read(h.h, &mut got).unwrap();
    assert_eq!(&got[..n], &peer_data(PEER_ISN.wrapping_add(1), n as u32)[..], "the stream");
}

/// A segment partly received before (a retransmission that overlaps RCV.NXT, RFC 2883 §4.1.1)
/// is D-SACKed for its old part and acknowledged at once; a duplicate of data held out of order
/// (§4.1.3) is reported first, before the out-of-order range; without SACK no block is sent
/// (and the overlap's new part waits for the delayed ACK like any other data).
#[test]
fn duplicate_parts_of_segments_are_dsacked_once_and_only_where_sack_was_agreed() {
    for sack in [true, false] {
        let mut h = Harness::established(65536, 8192, true, sack, Some(7));
        for _ in 0..16 {
            // Past the quick-ACK start: an ACK at once is the duplicate's doing.
            let r = h.seg(ACK);
            h.send(&r, &peer_data(r.seq_number, 10));
            h.tx();
        }
        let r = h.seg(ACK);
        let s = r.seq_number;
        h.send(&r, &peer_data(s, 500));
        let mut dup = h.seg(ACK);
        dup.seq_number = s.wrapping_add(300);
        h.rx_repr(&dup, &peer_data(dup.seq_number, 400));
        h.peer_nxt = s.wrapping_add(700);
        let mut out = h.tx();
        if !sack {
            // Nothing to report: the new part is acknowledged as any other data.
            assert!(out.is_empty(), "{out:?}");
            let n = h.sent_out.len();
            h.advance(ms(40));
            out = h.sent_out[n..].to_vec();
        }
        assert_eq!(out.len(), 1, "sack {sack}: {out:?}");
        assert_eq!(out[0].repr.ack_number, h.peer_nxt);
        let w = |a: u32, b: u32| (s.wrapping_add(a), s.wrapping_add(b));
        let want: &[(u32, u32)] = if sack { &[w(300, 500)] } else { &[] };
        assert_eq!(out[0].repr.sack_ranges.as_slice(), want, "sack {sack}");
        // Out of order: [nxt + 1000, nxt + 1500) arrives twice.
        let mut ooo = h.seg(ACK);
        ooo.seq_number = h.peer_nxt.wrapping_add(1000);
        let o = ooo.seq_number;
        h.rx_repr(&ooo, &peer_data(o, 500));
        h.tx();
        h.rx_repr(&ooo, &peer_data(o, 500));
        let out = h.tx();
        assert_eq!(out.len(), 1, "sack {sack}: {out:?}");
        let b = (o, o.wrapping_add(500));
        let want: &[(u32, u32)] = if sack { &[b, b] } else { &[] };
        assert_eq!(out[0].repr.sack_ranges.as_slice(), want, "sack {sack}");
    }
}
