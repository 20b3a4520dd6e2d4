//! # TCP helpers for the simulator
//!
//! What it is: what TCP tests need on top of [`super::Sim`]:
//! - the simulated device's segmentation offloads: [`tso_split`] (a super-segment into wire
//!   segments, each with its own length, identification, sequence number and checksum, as the
//!   NIC layer's software TSO does) and [`gro_coalesce`] (consecutive in-order segments of a
//!   flow in one batch into one frame with `segments > 1`, as its GRO does);
//! - frame builders and a parser for scripting a peer by hand ([`tcp_frame`], [`parse`]);
//! - [`Peer`], a small application that drives connections on a stack node: it accepts or
//!   connects, writes what it was given as fast as the send buffer takes it, reads everything
//!   (or nothing, to test zero windows), optionally echoes, shuts down when done and records
//!   events, errors and the time it finished. Attach it with [`attach`].
//!
//! What it never does: anything on a fast path (these allocate freely), or read a clock.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use super::Sim;
use crate::batch::Frame;
use crate::stack::Stack;
use crate::tcp::{ListenHandle, Ready, TcpError, TcpEvent, TcpHandle};
use crate::time::Instant;
use crate::wire::{
    checksum, Csum, EthernetAddress, EthernetFrame, Gso, Ipv4Packet, NetHdr, SackBlocks, TcpFlags,
    TcpPacket, TcpRepr, TcpTimestamps, TxChecksum, ETHERNET_HEADER_LEN,
};

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn tcp_checksum(frame: &mut [u8], l3: usize, l4: usize) {
    let src = [frame[l3 + 12], frame[l3 + 13], frame[l3 + 14], frame[l3 + 15]];
    let dst = [frame[l3 + 16], frame[l3 + 17], frame[l3 + 18], frame[l3 + 19]];
    let len = (frame.len() - l4) as u16;
    frame[l4 + 16] = 0;
    frame[l4 + 17] = 0;
    let s =
        checksum::add(checksum::pseudo_header_v4(src, dst, 6, len), checksum::sum(&frame[l4..]));
    frame[l4 + 16..l4 + 18].copy_from_slice(&(!s).to_be_bytes());
}

fn ip_checksum(frame: &mut [u8], l3: usize, ihl: usize) {
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = checksum::checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Splits a TCP/IPv4 super-segment (`hdr_len` bytes of headers, then payload) into segments of
/// at most `size` payload bytes, with complete checksums. A malformed frame comes back whole.
pub fn tso_split(frame: &[u8], size: usize, hdr_len: usize) -> Vec<Vec<u8>> {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return vec![frame.to_vec()] };
    let l3 = eth.header_len();
    let Some(&vihl) = frame.get(l3) else { return vec![frame.to_vec()] };
    let ihl = usize::from(vihl & 0xf) * 4;
    let l4 = l3 + ihl;
    if size == 0 || hdr_len <= l4 || hdr_len > frame.len() {
        return vec![frame.to_vec()];
    }
    let payload = &frame[hdr_len..];
    let seq0 = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let flags0 = frame[l4 + 13];
    let id0 = be16(frame, l3 + 4);
    let n = payload.len().div_ceil(size).max(1);
    (0..n)
        .map(|i| {
            let chunk =
                &payload[(i * size).min(payload.len())..((i + 1) * size).min(payload.len())];
            let mut seg = Vec::with_capacity(hdr_len + chunk.len());
            seg.extend_from_slice(&frame[..hdr_len]);
            seg.extend_from_slice(chunk);
            let total = (seg.len() - l3) as u16;
            seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            seg[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            ip_checksum(&mut seg, l3, ihl);
            let seqn = seq0.wrapping_add((i * size) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seqn.to_be_bytes());
            let mut f = flags0;
            if i + 1 < n {
                f &= !(TcpFlags::FIN.bits() | TcpFlags::PSH.bits());
            }
            if i > 0 {
                f &= !TcpFlags::CWR.bits();
            }
            seg[l4 + 13] = f;
            tcp_checksum(&mut seg, l3, l4);
            seg
        })
        .collect()
}

/// Where a plain TCP/IPv4 frame's layers start: (l3, l4, payload), or `None`.
fn layout(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    let ip = Ipv4Packet::new_checked(&frame[l3..]).ok()?;
    if ip.protocol() != crate::wire::IpProtocol::Tcp || ip.is_fragment() || ip.header_len() != 20 {
        return None;
    }
    if usize::from(ip.total_len()) != frame.len() - l3 {
        return None;
    }
    let l4 = l3 + 20;
    let t = TcpPacket::new_checked(&frame[l4..]).ok()?;
    Some((l3, l4, l4 + t.header_len()))
}

/// Coalesces runs of consecutive, in-order data segments of one flow (same headers but for
/// the sequence number and checksums, no SYN/RST/URG/FIN, PSH only on the last) into one frame
/// with `NetHdr { csum: Valid, gso: TcpV4 { size, hdr_len }, segments: n }`.
pub fn gro_coalesce(frames: Vec<Frame>) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::with_capacity(frames.len());
    let mut run: Option<(Frame, usize, usize, u32, u16, bool)> = None; // frame, l4, hdr_len, next seq, segs, closed
    let stop = TcpFlags::SYN | TcpFlags::RST | TcpFlags::URG | TcpFlags::FIN;
    let finish = |out: &mut Vec<Frame>, r: Option<(Frame, usize, usize, u32, u16, bool)>| {
        if let Some((mut f, l4, hl, _, segs, _)) = r {
            if segs > 1 {
                let l3 = l4 - 20;
                let total = (f.len - l3) as u16;
                f.buf[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                ip_checksum(&mut f.buf, l3, 20);
                let mss = (f.len - hl) / usize::from(segs);
                f.hdr = NetHdr {
                    csum: Csum::Valid,
                    gso: Gso::TcpV4 { size: mss.max(1) as u16, hdr_len: hl as u16 },
                    segments: segs,
                };
            }
            out.push(f);
        }
    };
    for f in frames {
        let bytes = f.bytes().to_vec();
        let Some((_, l4, p)) = layout(&bytes) else {
            finish(&mut out, run.take());
            out.push(f);
            continue;
        };
        let flags = TcpFlags::from_bits(bytes[l4 + 13]);
        let seq = u32::from_be_bytes([bytes[l4 + 4], bytes[l4 + 5], bytes[l4 + 6], bytes[l4 + 7]]);
        let plen = bytes.len() - p;
        let mergeable = plen > 0 && !flags.intersects(stop);
        if let Some((rf, rl4, rhl, next, segs, closed)) = run.as_mut() {
            let first_len = (rf.len - *rhl) / usize::from(*segs);
            let same = !*closed
                && mergeable
                && *rhl == p
                && *rl4 == l4
                && seq == *next
                && plen <= first_len
                && rf.len + plen <= 65535
                && rf.buf[..l4 - 20] == bytes[..l4 - 20]
                && rf.buf[l4 - 8..l4] == bytes[l4 - 8..l4]
                && rf.buf[l4..l4 + 4] == bytes[l4..l4 + 4]
                && rf.buf[l4 + 8..l4 + 13] == bytes[l4 + 8..l4 + 13]
                && rf.buf[l4 + 14..l4 + 16] == bytes[l4 + 14..l4 + 16]
                && rf.buf[l4 + 20..p] == bytes[l4 + 20..p];
            if same {
                rf.buf.truncate(rf.len);
                rf.buf.extend_from_slice(&bytes[p..]);
                rf.len = rf.buf.len();
                rf.buf[*rl4 + 13] |= flags.bits() & TcpFlags::PSH.bits();
                *next = seq.wrapping_add(plen as u32);
                *segs += 1;
                *closed = flags.contains(TcpFlags::PSH) || plen < first_len;
                continue;
            }
        }
        finish(&mut out, run.take());
        if mergeable && !flags.contains(TcpFlags::PSH) {
            run = Some((f, l4, p, seq.wrapping_add(plen as u32), 1, false));
        } else {
            out.push(f);
        }
    }
    finish(&mut out, run.take());
    out
}

/// An Ethernet frame carrying a TCP segment described by `repr`, with correct checksums.
pub fn tcp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    repr: &TcpRepr,
    payload: &[u8],
) -> Vec<u8> {
    let thl = repr.header_len();
    let mut seg = vec![0u8; thl + payload.len()];
    seg[thl..].copy_from_slice(payload);
    let _ = repr.emit(&mut seg, src, dst, TxChecksum::Full);
    let mut f = vec![0u8; ETHERNET_HEADER_LEN + 20 + seg.len()];
    f[..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len((20 + seg.len()) as u16);
        ip.set_ident(0);
        ip.set_dont_frag(true);
        ip.set_ttl(64);
        ip.set_protocol(crate::wire::IpProtocol::Tcp);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    f[34..].copy_from_slice(&seg);
    f
}

/// A TCP header for [`tcp_frame`]: `flags`, `seq`, `ack` between two ports, no options.
pub fn repr(sport: u16, dport: u16, seq: u32, ack: u32, flags: TcpFlags, window: u16) -> TcpRepr {
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: window,
        urgent_at: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: SackBlocks::EMPTY,
        timestamps: None,
    }
}

/// A TCP segment read back from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegInfo {
    /// Sender.
    pub src: SocketAddrV4,
    /// Receiver.
    pub dst: SocketAddrV4,
    /// The header.
    pub repr: TcpRepr,
    /// The payload.
    pub payload: Vec<u8>,
}

impl SegInfo {
    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        self.repr.flags
    }

    /// Timestamps option.
    pub fn ts(&self) -> Option<TcpTimestamps> {
        self.repr.timestamps
    }
}

/// The TCP segment of a frame, if it carries one with valid checksums.
pub fn parse(frame: &[u8]) -> Option<SegInfo> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != crate::wire::IpProtocol::Tcp || !ip.verify_checksum() {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    if !t.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return None;
    }
    let repr = TcpRepr::parse(&t).ok()?;
    Some(SegInfo {
        src: SocketAddrV4::new(ip.src_addr(), repr.src_port),
        dst: SocketAddrV4::new(ip.dst_addr(), repr.dst_port),
        repr,
        payload: t.payload().to_vec(),
    })
}

/// The TCP segments a node put on the wire, in order (from the simulator's trace).
pub fn segments_from(sim: &Sim, node: usize) -> Vec<(Instant, SegInfo)> {
    sim.trace()
        .iter()
        .filter(|e| e.from == node)
        .filter_map(|e| parse(&e.frame).map(|s| (e.at, s)))
        .collect()
}

/// One connection driven by a [`Peer`].
#[derive(Debug, Default, Clone)]
pub struct Endpoint {
    /// The connection.
    pub handle: Option<TcpHandle>,
    /// What to send.
    pub to_send: Vec<u8>,
    /// How much of it the stack took.
    pub sent: usize,
    /// What arrived.
    pub received: Vec<u8>,
    /// The peer's FIN was read.
    pub eof: bool,
    /// We shut down sending.
    pub shut: bool,
    /// We closed the handle.
    pub closed: bool,
    /// Every readiness bit seen.
    pub events: Ready,
    /// The first error a call returned (other than `WouldBlock`).
    pub error: Option<TcpError>,
    /// When both directions were done (all sent, EOF read) and the handle closed.
    pub done_at: Option<Instant>,
    /// When CONNECTED was seen.
    pub connected_at: Option<Instant>,
}

/// What a [`Peer`] does (see the module documentation).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Data each accepted connection sends.
    pub serve: Vec<u8>,
    /// Echo what arrives.
    pub echo: bool,
    /// Read at all (false: let the receive window fill up).
    pub read: bool,
    /// Shut down once everything was sent (after EOF when echoing).
    pub shutdown_when_sent: bool,
    /// Close the handle once both directions are done.
    pub close_when_done: bool,
}

impl Default for PeerConfig {
    fn default() -> PeerConfig {
        PeerConfig {
            serve: Vec::new(),
            echo: false,
            read: true,
            shutdown_when_sent: true,
            close_when_done: true,
        }
    }
}

/// A test application (see the module documentation).
#[derive(Debug, Default)]
pub struct Peer {
    /// Behaviour.
    pub cfg: PeerConfig,
    /// The listener, if serving.
    pub listener: Option<ListenHandle>,
    /// Connections, in the order they appeared.
    pub conns: Vec<Endpoint>,
}

/// A [`Peer`] shared between a test and the simulator.
pub type SharedPeer = Rc<RefCell<Peer>>;

impl Peer {
    /// A peer with `cfg` and no connection.
    pub fn new(cfg: PeerConfig) -> SharedPeer {
        Rc::new(RefCell::new(Peer { cfg, listener: None, conns: Vec::new() }))
    }

    /// Starts driving `h`, sending `data`.
    pub fn add(&mut self, h: TcpHandle, data: Vec<u8>) {
        self.conns.push(Endpoint { handle: Some(h), to_send: data, ..Endpoint::default() });
    }

    /// One step: events, then reads and writes on every connection.
    pub fn step(&mut self, now: Instant, stack: &mut Stack) {
        while let Some(ev) = stack.tcp_mut().poll_event() {
            match ev {
                TcpEvent::Acceptable(l) => {
                    while let Ok(h) = stack.tcp_mut().accept(l) {
                        let data = self.cfg.serve.clone();
                        self.add(h, data);
                    }
                }
                TcpEvent::Conn { socket, ready } => {
                    if let Some(e) = self.conns.iter_mut().find(|e| e.handle == Some(socket)) {
                        e.events |= ready;
                        if ready.contains(Ready::CONNECTED) && e.connected_at.is_none() {
                            e.connected_at = Some(now);
                        }
                    }
                }
            }
        }
        let cfg = self.cfg.clone();
        for e in &mut self.conns {
            pump(&cfg, e, now, stack);
        }
    }
}

fn pump(cfg: &PeerConfig, e: &mut Endpoint, now: Instant, stack: &mut Stack) {
    let Some(h) = e.handle else { return };
    if e.closed {
        return;
    }
    let tcp = stack.tcp_mut();
    if cfg.read && !e.eof {
        loop {
            let before = e.received.len();
            let r = tcp.read_with(h, |d| {
                e.received.extend_from_slice(d);
                d.len()
            });
            match r {
                Ok(0) => {
                    e.eof = true;
                    break;
                }
                Ok(_) => {
                    if cfg.echo {
                        let fresh = e.received[before..].to_vec();
                        e.to_send.extend_from_slice(&fresh);
                    }
                }
                Err(TcpError::WouldBlock) => break,
                Err(err) => {
                    e.error.get_or_insert(err);
                    break;
                }
            }
        }
    }
    while e.sent < e.to_send.len() {
        match tcp.write(h, &e.to_send[e.sent..]) {
            Ok(n) => e.sent += n,
            Err(TcpError::WouldBlock) => break,
            Err(err) => {
                e.error.get_or_insert(err);
                break;
            }
        }
    }
    let all_sent = e.sent == e.to_send.len() && (!cfg.echo || e.eof);
    if cfg.shutdown_when_sent && all_sent && !e.shut && e.error.is_none() {
        e.shut = tcp.shutdown(h).is_ok();
    }
    if cfg.close_when_done && e.shut && e.eof && !e.closed {
        e.closed = tcp.close(now, h).is_ok();
        e.done_at = Some(now);
    }
}

/// Attaches `peer` to stack node `node`.
pub fn attach(sim: &mut Sim, node: usize, peer: &SharedPeer) {
    let p = Rc::clone(peer);
    sim.set_app(node, Box::new(move |now, stack| p.borrow_mut().step(now, stack)));
}

/// A deterministic test pattern of `n` bytes.
pub fn pattern(n: usize, salt: u8) -> Vec<u8> {
    let mut x = u32::from(salt).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// An ICMP "fragmentation needed" (type 3, code 4) from `src` to `dst` carrying next-hop
/// `mtu` and `quote` (the original IPv4 header and the start of its payload).
pub fn icmp_frag_needed(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mtu: u16,
    quote: &[u8],
) -> Vec<u8> {
    let mut msg = vec![3u8, 4, 0, 0, 0, 0];
    msg.extend_from_slice(&mtu.to_be_bytes());
    msg.extend_from_slice(quote);
    let c = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0u8; ETHERNET_HEADER_LEN + 20];
    f[..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&msg);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len((20 + msg.len()) as u16);
        ip.set_ttl(64);
        ip.set_protocol(crate::wire::IpProtocol::Icmp);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    f
}
