//! Stateful TCP target: one connection of a [`Stack`] (accepted by a listener on port 80, or
//! opened by `tcp_connect`) driven by a scripted peer whose segments the fuzzer chooses: any
//! flags, sequence and acknowledgment numbers near the live ones (the latest ACK and sequence
//! numbers the stack sent) or anywhere, payloads, windows, SACK blocks, timestamps, and SYNs
//! and RSTs from other 4-tuples, interleaved with application writes, reads, shutdowns,
//! closes, aborts and time steps through every timer.
//!
//! Invariants (from outside, through the public API): no panic and no timer livelock; what the
//! application reads is exactly the peer's stream, in order, each byte once; every byte the
//! stack sends at a sequence number is the byte written at that stream offset, and never one
//! that was not written; the connection's buffers stay within their sizes; the table stays
//! within its bounds and the per-state counts add up (`sum(states) - TIME-WAIT` is the live
//! connection count, TIME-WAIT the entry count); every frame sent is a valid TCP/IPv4 frame
//! from our address with our MAC; the right edge of the window we advertise never moves left
//! while the connection may receive (RFC 7323 §2.4, RFC 9293 §3.8.6).

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

use arbitrary::{Result, Unstructured};
use libos::batch::{Frame, FrameSlots};
use libos::iface::route::Ipv4Cidr;
use libos::sim::tcp::{parse, repr, tcp_frame, SegInfo};
use libos::tcp::{SynCookies, TcpHandle, TcpState};
use libos::wire::{EthernetAddress, EthernetFrame, SackBlocks, TcpFlags, TcpTimestamps};
use libos::{Instant, Stack, StackConfig};

use crate::MAX_TIMER_STEPS;

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);
const US_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const PEER_PORT: u16 = 5000;
const OUR_PORT: u16 = 80;
const MAX_CONNS: usize = 4;

/// The byte the peer sends at stream offset `i`.
fn peer_byte(i: u32) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 24) as u8
}

/// The byte the application writes at stream offset `i`.
fn our_byte(i: u32) -> u8 {
    (i.wrapping_mul(40_503) >> 8) as u8 ^ 0x5a
}

/// Sequence-space "a ≤ b" (RFC 9293 §3.4).
fn seq_le(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

struct Run {
    s: Stack,
    now: Instant,
    h: Option<TcpHandle>,
    /// The peer's first ISN: payload bytes at sequence number `s` are `peer_byte(s - isn - 1)`
    /// on every connection of the run, so the fuzzer's segments stay consistent.
    peer_isn: u32,
    /// The sequence number of stream byte 0 of the current connection (its peer ISN + 1).
    rcv_base: u32,
    /// Our ISN once the SYN (or SYN-ACK) was seen.
    our_isn: Option<u32>,
    /// The highest acknowledgment number the stack sent on our connection.
    rcv_ack: u32,
    /// The lowest and highest sequence numbers the stack has sent at (start of the latest
    /// segment, end of the furthest one).
    snd_seen: u32,
    snd_max: u32,
    /// The peer's next in-order sequence number (what a well-behaved peer sends next).
    peer_nxt: u32,
    /// Bytes the application wrote; bytes it read.
    written: u32,
    read: u32,
    /// Our timestamp clock as last seen, and the peer's.
    our_tsval: u32,
    peer_tsval: u32,
    /// The right edge of the window we advertised, once known, and our window shift.
    right_edge: Option<u32>,
    rx: usize,
    tx: usize,
}

impl Run {
    /// Takes every frame the stack sends and checks it.
    fn tx(&mut self) -> Result<()> {
        for _ in 0..10_000 {
            let mut frames: Vec<Frame> = (0..16).map(|_| Frame::empty(2048)).collect();
            let n = self.s.poll_tx(self.now, &mut FrameSlots::new(&mut frames));
            for f in &frames[..n] {
                self.check_frame(f.bytes());
            }
            if n < 16 {
                return Ok(());
            }
        }
        panic!("poll_tx never ran dry");
    }

    fn check_frame(&mut self, f: &[u8]) {
        let e = EthernetFrame::new_checked(f).expect("the stack sends whole frames");
        assert_eq!(e.src_addr(), US, "frame from another MAC");
        let Some(seg) = parse(f) else {
            // ARP or ICMP; TCP frames must parse with valid checksums.
            let ip = libos::wire::Ipv4Packet::new_checked(e.payload());
            if let Ok(ip) = ip {
                assert!(ip.protocol() != libos::wire::IpProtocol::Tcp, "a TCP frame that fails");
            }
            return;
        };
        assert_eq!(*seg.src.ip(), US_IP, "a segment from another address");
        if seg.dst != SocketAddrV4::new(PEER_IP, PEER_PORT) || seg.src.port() != OUR_PORT {
            return; // an answer to a stray segment (RST, SYN-ACK of another 4-tuple)
        }
        self.check_segment(&seg);
    }

    fn check_segment(&mut self, seg: &SegInfo) {
        let r = &seg.repr;
        if r.flags.contains(TcpFlags::SYN) && !r.flags.contains(TcpFlags::RST) {
            match self.our_isn {
                Some(isn) if isn == r.seq_number => {}
                Some(isn) => {
                    // A new connection on the 4-tuple (a SYN after a reset, a close or in
                    // TIME-WAIT, or another cookie): only once ours is gone.
                    assert!(
                        !self.live(),
                        "a second ISN {} on a live connection ({isn})",
                        r.seq_number
                    );
                    self.h = None;
                    self.new_connection(r.seq_number);
                }
                None => self.new_connection(r.seq_number),
            }
            if r.flags.contains(TcpFlags::ACK) {
                self.rcv_base = r.ack_number;
            }
        }
        if let Some(t) = r.timestamps {
            self.our_tsval = t.tsval;
        }
        let Some(isn) = self.our_isn else { return };
        if r.flags.contains(TcpFlags::RST) {
            return;
        }
        let syn = u32::from(r.flags.contains(TcpFlags::SYN));
        let first = isn.wrapping_add(1);
        let data_seq = r.seq_number.wrapping_add(syn);
        for (k, &b) in seg.payload.iter().enumerate() {
            let i = data_seq.wrapping_add(k as u32).wrapping_sub(first);
            assert!(i < self.written, "sent stream byte {i}, never written ({})", self.written);
            assert_eq!(b, our_byte(i), "stream byte {i} sent wrong");
        }
        let end = data_seq
            .wrapping_add(seg.payload.len() as u32)
            .wrapping_add(u32::from(r.flags.contains(TcpFlags::FIN)));
        if seq_le(self.snd_max, end) {
            self.snd_max = end;
        }
        self.snd_seen = r.seq_number;
        if r.flags.contains(TcpFlags::ACK) {
            if seq_le(self.rcv_ack, r.ack_number) {
                self.rcv_ack = r.ack_number;
            }
            if syn == 0 {
                self.check_window(r.ack_number, r.window_len);
            }
        }
    }

    /// Whether our connection's handle still names a connection that is not closed (a reset
    /// one keeps its handle, in CLOSED, until the application closes it).
    fn live(&self) -> bool {
        self.h.is_some_and(|h| self.s.tcp().info(h).is_ok_and(|i| i.state != TcpState::Closed))
    }

    /// Starts tracking a new connection on the 4-tuple whose ISN is `isn`.
    fn new_connection(&mut self, isn: u32) {
        self.our_isn = Some(isn);
        self.snd_max = isn;
        self.snd_seen = isn;
        self.written = 0;
        self.read = 0;
        self.right_edge = None;
    }

    /// The right edge of the advertised window never moves left while we may receive.
    fn check_window(&mut self, ack: u32, window: u16) {
        let Some(h) = self.h else { return };
        let Ok(info) = self.s.tcp().info(h) else { return };
        if !info.state.may_receive() {
            self.right_edge = None;
            return;
        }
        let shift = info.wscale.map_or(0, |(ours, _)| ours);
        let edge = ack.wrapping_add(u32::from(window) << shift);
        if let Some(prev) = self.right_edge {
            // The shift rounds the window down: allow what one unit of scale hides.
            let slack = (1u32 << shift).saturating_sub(1);
            assert!(
                seq_le(prev, edge.wrapping_add(slack)),
                "window edge moved left: {prev} -> {edge} (ack {ack}, window {window} << {shift})"
            );
            if seq_le(prev, edge) {
                self.right_edge = Some(edge);
            }
        } else {
            self.right_edge = Some(edge);
        }
    }

    fn rx(&mut self, r: &libos::wire::TcpRepr, payload: &[u8], src: Ipv4Addr) {
        let f = tcp_frame(PEER, US, src, US_IP, r, payload);
        let mut b = [Frame::new(&f, f.len())];
        let cookies = self.s.tcp().stats().syn_cookies_validated;
        let state =
            |s: &Stack, h: Option<TcpHandle>| h.and_then(|h| s.tcp().info(h).ok()).map(|i| i.state);
        let before = state(&self.s, self.h);
        self.s.handle_rx(self.now, &mut b[..]);
        let ours = src == PEER_IP && (r.src_port, r.dst_port) == (PEER_PORT, OUR_PORT);
        let after = state(&self.s, self.h);
        if ours
            && r.flags.contains(TcpFlags::SYN)
            && before == Some(TcpState::SynSent)
            && after != before
        {
            // Our SYN was answered (SYN-ACK, or a SYN crossing it): the peer's stream starts
            // after this SYN, wherever the fuzzer put it.
            self.rcv_base = r.seq_number.wrapping_add(1);
        }
        if ours && self.s.tcp().stats().syn_cookies_validated > cookies {
            // A connection made from a SYN cookie: its ISN is what this ACK acknowledges,
            // which need not be the SYN-ACK's (a cookie is valid for any ACK whose sequence
            // and acknowledgment numbers are shifted by the same amount, as Linux's are).
            assert!(!self.live(), "a cookie opened a second connection on the 4-tuple");
            self.h = None;
            self.new_connection(r.ack_number.wrapping_sub(1));
            self.snd_max = r.ack_number;
            self.rcv_base = r.seq_number;
        }
    }

    /// A segment from the peer at its next sequence number, acknowledging all we sent.
    fn seg(&mut self, flags: TcpFlags, ts: bool) -> libos::wire::TcpRepr {
        let mut r = repr(PEER_PORT, OUR_PORT, self.peer_nxt, self.snd_max, flags, 65535);
        if ts {
            self.peer_tsval = self.peer_tsval.wrapping_add(1);
            r.timestamps = Some(TcpTimestamps { tsval: self.peer_tsval, tsecr: self.our_tsval });
        }
        r
    }

    fn advance(&mut self, d: Duration) -> Result<()> {
        let end = self.now + d;
        let mut steps = 0;
        while let Some(t) = self.s.poll_timeout().filter(|&t| t <= end) {
            steps += 1;
            assert!(steps < MAX_TIMER_STEPS, "timer livelock at {t:?}");
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.tx()?;
        }
        self.now = end;
        Ok(())
    }

    fn check_tables(&self) {
        let tcp = self.s.tcp();
        assert!(tcp.connections() <= MAX_CONNS);
        let st = &tcp.stats().states;
        let tw = tcp.stats().in_state(TcpState::TimeWait);
        assert_eq!((st.iter().sum::<u64>() - tw) as usize, tcp.connections(), "{st:?}");
        assert_eq!(tw as usize, tcp.time_wait_entries());
        let Some(h) = self.h else { return };
        let Ok(info) = tcp.info(h) else { return };
        assert!(info.readable as usize <= self.rx, "readable {} > {}", info.readable, self.rx);
        assert!(info.unsent as usize <= self.tx, "unsent {} > {}", info.unsent, self.tx);
        // Unacknowledged bytes are written bytes (plus a SYN and a FIN).
        assert!(info.unacked <= self.written.saturating_add(2), "unacked {}", info.unacked);
        assert!(info.mss > 0);
    }
}

pub fn run(data: &[u8]) {
    let _ = run_u(&mut Unstructured::new(data));
}

fn run_u(u: &mut Unstructured<'_>) -> Result<()> {
    let rx = *u.choose(&[1024usize, 4096, 65536])?;
    let tx = *u.choose(&[1024usize, 4096, 65536])?;
    let ts = u.arbitrary::<bool>()?;
    let sack = u.arbitrary::<bool>()?;
    let ws: Option<u8> = if u.arbitrary()? { Some(u.int_in_range(0..=15)?) } else { None };
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(US_IP, 24)]);
    cfg.arp.announce_count = 0;
    cfg.static_neighbors.push((PEER_IP, PEER));
    cfg.static_neighbors.push((Ipv4Addr::new(10, 0, 0, 10), PEER));
    cfg.tcp.max_connections = MAX_CONNS;
    cfg.tcp.max_time_wait = 2;
    cfg.tcp.syn_backlog = 2;
    cfg.tcp.rx_buffer = rx;
    cfg.tcp.tx_buffer = tx;
    cfg.tcp.timestamps = ts || u.arbitrary()?;
    cfg.tcp.sack = sack || u.arbitrary()?;
    cfg.tcp.window_scaling = u.arbitrary()?;
    cfg.tcp.nodelay = u.arbitrary()?;
    cfg.tcp.syn_cookies = *u.choose(&[SynCookies::Off, SynCookies::Auto, SynCookies::Always])?;
    cfg.tcp.secret = [u.arbitrary()?, u.arbitrary()?];
    let now = Instant::from_secs(1);
    let s = Stack::new(cfg, now).expect("a valid configuration");
    let peer_isn: u32 = u.arbitrary()?;
    let mut r = Run {
        s,
        now,
        h: None,
        peer_isn,
        rcv_base: peer_isn.wrapping_add(1),
        our_isn: None,
        rcv_ack: peer_isn.wrapping_add(1),
        snd_seen: 0,
        snd_max: 0,
        peer_nxt: peer_isn,
        written: 0,
        read: 0,
        our_tsval: 0,
        peer_tsval: u.arbitrary()?,
        right_edge: None,
        rx,
        tx,
    };

    // Open: passive (SYN to the listener, ACK of the SYN-ACK, accept) or active (connect,
    // the peer's SYN-ACK); either may be left half-done for the operations to continue.
    let passive = u.arbitrary::<bool>()?;
    let listener = if passive {
        let l = r.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, OUR_PORT), 2);
        let l = l.expect("listen");
        let mut syn = r.seg(TcpFlags::SYN, ts);
        syn.ack_number = 0;
        syn.max_seg_size = Some(*u.choose(&[536, 1460, 100, 9000])?);
        syn.window_scale = ws;
        syn.sack_permitted = sack;
        r.peer_nxt = r.peer_nxt.wrapping_add(1);
        r.rx(&syn, &[], PEER_IP);
        r.tx()?;
        if u.ratio(7, 8)? {
            let ack = r.seg(TcpFlags::ACK, ts);
            r.rx(&ack, &[], PEER_IP);
            r.tx()?;
            r.h = r.s.tcp_mut().accept(l).ok();
            assert!(r.h.is_some() || r.our_isn.is_none(), "the handshake did not complete");
        }
        Some(l)
    } else {
        let remote = SocketAddrV4::new(PEER_IP, PEER_PORT);
        let h = r.s.tcp_connect(r.now, remote, Some(SocketAddrV4::new(US_IP, OUR_PORT)));
        r.h = Some(h.expect("connect"));
        r.tx()?;
        if u.ratio(7, 8)? {
            let mut sa = r.seg(TcpFlags::SYN | TcpFlags::ACK, ts);
            sa.max_seg_size = Some(*u.choose(&[536, 1460, 100, 9000])?);
            sa.window_scale = ws;
            sa.sack_permitted = sack;
            r.peer_nxt = r.peer_nxt.wrapping_add(1);
            r.rx(&sa, &[], PEER_IP);
            r.tx()?;
        }
        None
    };
    r.check_tables();

    let mut read_buf = vec![0u8; 8192];
    for _ in 0..u.arbitrary_len::<[u8; 8]>()?.min(300) {
        match u.int_in_range(0..=15)? {
            // A segment of our connection, numbered near the live values or anywhere.
            0..=8 => {
                let seq = match u.int_in_range(0..=5)? {
                    0..=2 => r.rcv_ack.wrapping_add(u.int_in_range(-200i32..=2000)? as u32),
                    3 => r.peer_nxt,
                    4 => r.rcv_ack.wrapping_add(u.int_in_range(-70_000i32..=70_000)? as u32),
                    _ => u.arbitrary()?,
                };
                let ack = match u.int_in_range(0..=5)? {
                    0..=2 => r.snd_max.wrapping_add(u.int_in_range(-3000i32..=10)? as u32),
                    3 => r.snd_seen.wrapping_add(u.int_in_range(0..=3000)?),
                    4 => r.snd_max.wrapping_add(u.int_in_range(-70_000i32..=70_000)? as u32),
                    _ => u.arbitrary()?,
                };
                let flags = match u.int_in_range(0..=7)? {
                    0..=2 => TcpFlags::ACK,
                    3 => TcpFlags::ACK | TcpFlags::PSH,
                    4 => TcpFlags::ACK | TcpFlags::FIN,
                    _ => TcpFlags::from_bits(u.arbitrary::<u8>()? & 0x3f),
                };
                let len = match u.int_in_range(0..=3)? {
                    0 => 0,
                    1 => u.int_in_range(1..=100u32)?,
                    2 => *u.choose(&[536u32, 1448, 1460])?,
                    _ => u.int_in_range(0..=9000u32)?,
                };
                let off = seq.wrapping_sub(r.peer_isn.wrapping_add(1));
                let payload: Vec<u8> = (0..len).map(|i| peer_byte(off.wrapping_add(i))).collect();
                let window = if u.ratio(3, 4)? { 65535 } else { u.arbitrary()? };
                let mut seg = repr(PEER_PORT, OUR_PORT, seq, ack, flags, window);
                if ts && u.ratio(7, 8)? {
                    let step: i16 =
                        if u.ratio(7, 8)? { u.int_in_range(0..=50)? } else { u.arbitrary()? };
                    r.peer_tsval = r.peer_tsval.wrapping_add(step as u32);
                    let tsecr = if u.ratio(7, 8)? { r.our_tsval } else { u.arbitrary()? };
                    seg.timestamps = Some(TcpTimestamps { tsval: r.peer_tsval, tsecr });
                }
                if sack && u.ratio(1, 4)? {
                    let mut blocks = Vec::new();
                    for _ in 0..u.int_in_range(1..=4)? {
                        let l = r.snd_max.wrapping_sub(u.int_in_range(0..=8000)?);
                        blocks.push((l, l.wrapping_add(u.int_in_range(1..=3000)?)));
                    }
                    if let Some(b) = SackBlocks::from_slice(&blocks) {
                        seg.sack_ranges = b;
                    }
                }
                if seq == r.peer_nxt && !flags.contains(TcpFlags::RST) {
                    r.peer_nxt = r
                        .peer_nxt
                        .wrapping_add(len)
                        .wrapping_add(u32::from(flags.contains(TcpFlags::SYN)))
                        .wrapping_add(u32::from(flags.contains(TcpFlags::FIN)));
                }
                r.rx(&seg, &payload, PEER_IP);
            }
            // A segment from another 4-tuple (another port or host): SYNs, ACKs, RSTs.
            9 => {
                let sport = *u.choose(&[PEER_PORT + 1, PEER_PORT + 2, PEER_PORT])?;
                let dport = *u.choose(&[OUR_PORT, OUR_PORT + 1])?;
                let src = *u.choose(&[PEER_IP, Ipv4Addr::new(10, 0, 0, 10)])?;
                let flags = TcpFlags::from_bits(u.arbitrary::<u8>()? & 0x3f);
                let mut seg = repr(sport, dport, u.arbitrary()?, u.arbitrary()?, flags, 4096);
                seg.max_seg_size = if u.arbitrary()? { Some(u.arbitrary()?) } else { None };
                seg.window_scale = if u.arbitrary()? { Some(u.arbitrary()?) } else { None };
                let len = usize::from(u.int_in_range(0..=64u8)?);
                r.rx(&seg, &vec![0x42; len], src);
            }
            10 => {
                let n = usize::from(u.int_in_range(0..=9000u16)?);
                if let Some(h) = r.h {
                    let data: Vec<u8> =
                        (0..n as u32).map(|i| our_byte(r.written.wrapping_add(i))).collect();
                    if let Ok(k) = r.s.tcp_mut().write(h, &data) {
                        assert!(k <= n);
                        r.written += k as u32;
                    }
                }
            }
            11 => {
                let n = usize::from(u.int_in_range(0..=8192u16)?);
                if let Some(h) = r.h {
                    if let Ok(k) = r.s.tcp_mut().read(h, &mut read_buf[..n]) {
                        let skew = r.rcv_base.wrapping_sub(r.peer_isn.wrapping_add(1));
                        for (j, &b) in read_buf[..k].iter().enumerate() {
                            let i = r.read + j as u32;
                            let want = peer_byte(skew.wrapping_add(i));
                            assert_eq!(b, want, "stream byte {i} read wrong");
                        }
                        r.read += k as u32;
                    }
                }
            }
            12 => {
                let ms = match u.int_in_range(0..=3)? {
                    0..=1 => u.int_in_range(0..=300)?,
                    2 => u.int_in_range(0..=5_000)?,
                    _ => u.int_in_range(0..=200_000)?,
                };
                r.advance(Duration::from_millis(ms))?;
            }
            13 => {
                if let Some(h) = r.h {
                    let now = r.now;
                    let _ = match u.int_in_range(0..=3)? {
                        0..=1 => r.s.tcp_mut().shutdown(h),
                        2 => r.s.tcp_mut().close(now, h),
                        _ => r.s.tcp_mut().abort(now, h),
                    };
                }
            }
            14 => {
                // The application accepts what a listener has (a second connection).
                if let Some(l) = listener {
                    if let Ok(c) = r.s.tcp_mut().accept(l) {
                        let info = r.s.tcp().info(c);
                        let ours = info
                            .as_ref()
                            .is_ok_and(|i| i.remote == SocketAddrV4::new(PEER_IP, PEER_PORT));
                        // A connection reset while it waited in the accept queue is handed out
                        // closed, with what it had received (as Linux's accept does); the
                        // 4-tuple may have a newer connection since, whose stream `rcv_base`
                        // now follows, so a closed one is not taken as ours.
                        let closed = info.is_ok_and(|i| i.state == TcpState::Closed);
                        if ours && !closed && !r.live() {
                            r.h = Some(c);
                        }
                    }
                }
                while r.s.tcp_mut().poll_event().is_some() {}
            }
            _ => {
                // A well-behaved ACK of everything, with the timestamps echoed.
                let a = r.seg(TcpFlags::ACK, ts);
                r.rx(&a, &[], PEER_IP);
            }
        }
        r.tx()?;
        r.check_tables();
        if let Some(h) = r.h {
            if r.s.tcp().info(h).is_err() {
                r.right_edge = None;
            }
        }
    }
    Ok(())
}
