//! Target of the whole receive path of a [`Stack`] (`handle_rx` → Ethernet → ARP / IPv4 →
//! reassembly → ICMP / UDP / TCP → `poll_tx`), the way a worker drives it: batches of frames
//! built from a structured description (Ethernet with 0–2 VLAN tags, IPv4 with options, TCP,
//! UDP, ICMP echo or another protocol, to our addresses, a broadcast or someone else) and then
//! corrupted now and then, IPv4 fragments of such datagrams (any cut, overlapping, repeated,
//! reordered, never completed), ARP frames and raw bytes; UDP sockets in every mode (echo,
//! sink, queue, zero-copy delivery), a TCP listener whose connections echo, and time steps.
//!
//! Invariants: no panic, no timer livelock; every frame of a batch gets a verdict, and every
//! `Drop(reason)` verdict is counted under that reason (the counter grows by at least the
//! number of such verdicts: frame accounting); `rx_frames` counts every frame handed over; an
//! in-place reply (`Transmit`) is no longer than the frame it was written into and is a
//! well-formed frame from our MAC (IPv4 header checksum valid, length consistent, UDP and ICMP
//! checksums valid when not left to the device); a zero-copy delivery points inside its frame;
//! every frame `poll_tx` writes is from our MAC, and its IPv4 header is valid, from one of our
//! addresses and within the MTU; the TCP tables stay within their bounds.

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

use arbitrary::{Result, Unstructured};
use libos::batch::{Frame, Verdict};
use libos::iface::route::Ipv4Cidr;
use libos::tcp::{TcpHandle, TcpState};
use libos::udp::{UdpMode, UdpSocketConfig};
use libos::wire::{
    Csum, EtherType, EthernetAddress, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet,
    UdpPacket,
};
use libos::{DropReason, Instant, Stack, StackConfig};

use crate::frames::{build, corrupt, spec};
use crate::{drain_tx, MAX_TIMER_STEPS};

const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);
const US_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const US_IP2: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 1);
const MTU: usize = 1500;
const MAX_CONNS: usize = 8;

/// UDP ports: echo, sink, queue, zero-copy delivery, and one nobody listens on.
const UDP_PORTS: [u16; 5] = [7, 9, 53, 6000, 1234];

struct Target {
    s: Stack,
    now: Instant,
    conns: Vec<TcpHandle>,
}

impl Target {
    /// Hands `frames` to the stack as one batch and checks every verdict.
    fn batch(&mut self, frames: Vec<Vec<u8>>, room: usize) {
        let mut b: Vec<Frame> = frames.iter().map(|f| Frame::new(f, room.max(f.len()))).collect();
        let before = self.s.stats().clone();
        self.s.handle_rx(self.now, &mut b[..]);
        let after = self.s.stats();
        assert_eq!(after.rx_frames - before.rx_frames, frames.len() as u64, "rx_frames");
        let mut dropped = [0u64; DropReason::COUNT];
        for (f, orig) in b.iter().zip(&frames) {
            match f.verdict {
                Verdict::Drop(r) => dropped[r as usize] += 1,
                Verdict::Consumed => {}
                Verdict::Transmit { len, hdr } => {
                    assert!(
                        len <= orig.len(),
                        "a reply of {len} bytes in a frame of {}",
                        orig.len()
                    );
                    check_reply(&f.buf[..len], hdr.csum);
                }
                Verdict::Deliver(d) => {
                    let end = d.offset as usize + d.len as usize;
                    assert!(
                        end <= orig.len(),
                        "delivery {}+{} past {}",
                        d.offset,
                        d.len,
                        orig.len()
                    );
                    assert!(UDP_PORTS.contains(&d.dst.port()));
                }
            }
        }
        for r in DropReason::ALL {
            let counted = after.drops(r) - before.drops(r);
            assert!(
                counted >= dropped[r as usize],
                "{} frames dropped as {r} but {counted} counted",
                dropped[r as usize]
            );
        }
    }

    /// Everything the stack sends now, checked.
    fn tx(&mut self) {
        for f in drain_tx(&mut self.s, self.now, 32) {
            check_sent(&f);
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut steps = 0;
        while let Some(t) = self.s.poll_timeout().filter(|&t| t <= end) {
            steps += 1;
            assert!(steps < MAX_TIMER_STEPS, "timer livelock at {t:?}");
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.tx();
        }
        self.now = end;
    }

    /// The application: accepts, echoes what it reads, closes what the peer closed.
    fn app(&mut self, l: libos::tcp::ListenHandle) {
        let tcp = self.s.tcp_mut();
        while let Ok(c) = tcp.accept(l) {
            self.conns.push(c);
        }
        while tcp.poll_event().is_some() {}
        let mut buf = [0u8; 4096];
        let now = self.now;
        self.conns.retain(|&c| {
            let Ok(n) = tcp.read(c, &mut buf) else {
                let _ = tcp.close(now, c);
                return false;
            };
            if n > 0 {
                let _ = tcp.write(c, &buf[..n]);
            }
            if tcp.state(c) == Ok(TcpState::CloseWait) {
                let _ = tcp.close(now, c);
                return false;
            }
            true
        });
        let tcp = self.s.tcp();
        assert!(tcp.connections() <= MAX_CONNS);
        let st = &tcp.stats().states;
        let tw = tcp.stats().in_state(TcpState::TimeWait);
        assert_eq!((st.iter().sum::<u64>() - tw) as usize, tcp.connections(), "{st:?}");
        assert_eq!(tw as usize, tcp.time_wait_entries());
    }
}

/// IPv4 of an Ethernet frame (untagged or tagged).
fn ipv4_of(f: &[u8]) -> Option<(EthernetFrame<&[u8]>, usize)> {
    let e = EthernetFrame::new_checked(f).ok()?;
    let l3 = e.header_len();
    (e.inner_ethertype() == EtherType::Ipv4).then_some((e, l3))
}

/// An in-place reply: from our MAC; IPv4 valid; UDP and ICMP checksums complete unless left
/// to the device.
fn check_reply(f: &[u8], csum: Csum) {
    let e = EthernetFrame::new_checked(f).expect("a reply is a whole frame");
    assert_eq!(e.src_addr(), US, "a reply from another MAC");
    let Some((_, l3)) = ipv4_of(f) else { return };
    let ip = Ipv4Packet::new_checked(&f[l3..]).expect("a reply's IPv4 header checks");
    assert!(ip.verify_checksum(), "a reply's IPv4 header checksum");
    // Bytes after the datagram (Ethernet padding, trailing junk) may stay in the frame.
    assert!(l3 + usize::from(ip.total_len()) <= f.len(), "a reply's total length");
    assert!([US_IP, US_IP2].contains(&ip.src_addr()), "a reply from {}", ip.src_addr());
    if ip.is_fragment() || csum != Csum::None {
        return;
    }
    match ip.protocol() {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).expect("a reply's UDP header checks");
            assert!(u.verify_checksum(ip.src_addr(), ip.dst_addr()), "a reply's UDP checksum");
        }
        IpProtocol::Icmp => {
            let i = Icmpv4Packet::new_checked(ip.payload()).expect("a reply's ICMP checks");
            assert!(i.verify_checksum(), "a reply's ICMP checksum: {f:02x?}");
        }
        _ => {}
    }
}

/// A frame `poll_tx` wrote: from our MAC; IPv4 valid, from one of our addresses, within the
/// MTU.
fn check_sent(f: &[u8]) {
    let e = EthernetFrame::new_checked(f).expect("the stack sends whole frames");
    assert_eq!(e.src_addr(), US, "a frame from another MAC");
    let Some((_, l3)) = ipv4_of(f) else { return };
    let ip = Ipv4Packet::new_checked(&f[l3..]).expect("a sent IPv4 header checks");
    assert!(ip.verify_checksum(), "a sent IPv4 header checksum");
    assert!(usize::from(ip.total_len()) <= MTU, "a sent packet over the MTU");
    assert!([US_IP, US_IP2].contains(&ip.src_addr()), "sent from {}: {f:02x?}", ip.src_addr());
}

/// Cuts the IPv4 datagram of `frame` (untagged) into fragments the fuzzer chooses: offsets
/// (multiples of 8 mostly), lengths, MF bits, duplicates and omissions.
fn fragments(u: &mut Unstructured<'_>, frame: &[u8]) -> Result<Vec<Vec<u8>>> {
    let Some((_, l3)) = ipv4_of(frame) else { return Ok(vec![frame.to_vec()]) };
    let Ok(ip) = Ipv4Packet::new_checked(&frame[l3..]) else { return Ok(vec![frame.to_vec()]) };
    let hl = ip.header_len();
    let payload = ip.payload().to_vec();
    let mut out = Vec::new();
    let mut off = 0usize;
    for _ in 0..u.int_in_range(1..=12)? {
        let len = match u.int_in_range(0..=3)? {
            0 => usize::from(u.int_in_range(1..=8u8)?) * 8,
            1 => usize::from(u.int_in_range(0..=20u8)?),
            _ => usize::from(u.int_in_range(1..=200u8)?) * 8,
        };
        let start = match u.int_in_range(0..=5)? {
            0 => off.saturating_sub(usize::from(u.int_in_range(1..=64u8)?)) / 8 * 8,
            1 => usize::from(u.int_in_range(0..=8191u16)?) * 8,
            _ => off,
        };
        let end = (start + len).min(payload.len().max(start));
        let more = if end >= payload.len() { u.ratio(1, 8)? } else { !u.ratio(1, 8)? };
        let mut f = frame[..l3 + hl].to_vec();
        f.extend_from_slice(payload.get(start..end).unwrap_or(&[]));
        {
            let mut p = Ipv4Packet::new_unchecked(&mut f[l3..]);
            p.set_total_len((hl + end - start).min(usize::from(u16::MAX)) as u16);
            p.set_more_frags(more);
            p.set_frag_offset((start.min(0xfff8) / 8 * 8) as u16);
            p.fill_checksum();
        }
        out.push(f);
        off = end;
    }
    if out.len() > 1 && u.ratio(1, 3)? {
        let i = u.choose_index(out.len())?;
        let j = u.choose_index(out.len())?;
        out.swap(i, j);
    }
    Ok(out)
}

/// One frame for the batch.
fn frame(u: &mut Unstructured<'_>, frags: &mut Vec<Vec<u8>>) -> Result<Vec<u8>> {
    if let Some(f) = frags.pop() {
        return Ok(f);
    }
    match u.int_in_range(0..=15)? {
        0 => Ok(u.arbitrary()?),
        1 => {
            let mut f = vec![0u8; 42];
            f[..6].copy_from_slice(&if u.arbitrary()? { US.0 } else { [0xff; 6] });
            f[6..12].copy_from_slice(&PEER.0);
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, u.int_in_range(1..=2)?]);
            f[22..28].copy_from_slice(&PEER.0);
            f[28..32].copy_from_slice(&[10, 0, 0, *u.choose(&[9, 10, 1, 0, 255])?]);
            f[38..42].copy_from_slice(&US_IP.octets());
            corrupt(u, f)
        }
        _ => {
            let mut s = spec(u, 2000)?;
            s.dst_mac = *u.choose(&[US, US, US, EthernetAddress::BROADCAST, PEER])?;
            s.dst = *u.choose(&[
                US_IP,
                US_IP,
                US_IP,
                US_IP2,
                Ipv4Addr::new(10, 0, 0, 255),
                Ipv4Addr::BROADCAST,
                Ipv4Addr::new(10, 0, 0, 77),
                Ipv4Addr::new(224, 0, 0, 1),
            ])?;
            if u.ratio(1, 16)? {
                s.src = *u.choose(&[US_IP, Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED])?;
            }
            match u.int_in_range(0..=7)? {
                0..=2 => s.protocol = 6,
                3..=4 => {
                    s.protocol = 17;
                    s.dport = *u.choose(&UDP_PORTS)?;
                }
                5..=6 => {
                    s.protocol = 1;
                    let n = s.payload.len().max(8);
                    s.payload.resize(n, 0);
                    s.payload[0] = if u.ratio(7, 8)? { 8 } else { u.arbitrary()? };
                    s.payload[1] = 0;
                    s.payload[2] = 0;
                    s.payload[3] = 0;
                    let mut p = Icmpv4Packet::new_unchecked(&mut s.payload[..]);
                    p.fill_checksum();
                }
                _ => {}
            }
            if s.protocol == 6 && u.ratio(1, 4)? {
                s.seq = u.arbitrary()?;
            }
            let f = build(&s);
            if s.vlans.is_empty() && u.ratio(1, 6)? {
                let mut fr = fragments(u, &f)?;
                fr.reverse();
                let first = fr.pop().unwrap_or(f);
                *frags = fr;
                return Ok(first);
            }
            corrupt(u, f)
        }
    }
}

pub fn run(data: &[u8]) {
    let _ = run_u(&mut Unstructured::new(data));
}

fn run_u(u: &mut Unstructured<'_>) -> Result<()> {
    let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(US_IP, 24), Ipv4Cidr::new(US_IP2, 24)]);
    cfg.static_neighbors.push((Ipv4Addr::new(10, 0, 0, 9), PEER));
    cfg.arp.announce_count = u.int_in_range(0..=1)?;
    cfg.frag.slots = u.int_in_range(1..=4)?;
    cfg.frag.timeout = Duration::from_millis(u.int_in_range(100..=30_000)?);
    cfg.tcp.max_connections = MAX_CONNS;
    cfg.tcp.max_time_wait = 4;
    cfg.tcp.rx_buffer = 4096;
    cfg.tcp.tx_buffer = 4096;
    cfg.tcp.secret = [u.arbitrary()?, u.arbitrary()?];
    cfg.tx_csum_offload = u.arbitrary()?;
    let mut t = Target {
        s: Stack::new(cfg, Instant::from_secs(1)).expect("valid"),
        now: Instant::from_secs(1),
        conns: Vec::new(),
    };
    let modes = [UdpMode::Echo, UdpMode::Sink, UdpMode::Queue, UdpMode::Deliver];
    let mut queue = None;
    for (port, mode) in UDP_PORTS.iter().zip(modes) {
        let mut c = UdpSocketConfig::mode(mode);
        c.rx_queue = 4;
        let h = t.s.udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port), c).expect("bind");
        if mode == UdpMode::Queue {
            queue = Some(h);
        }
    }
    let l = t.s.tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 4).expect("listen");
    let mut frags = Vec::new();
    for _ in 0..u.arbitrary_len::<[u8; 16]>()?.min(64) {
        match u.int_in_range(0..=9)? {
            0..=7 => {
                let n = u.int_in_range(1..=8)?;
                let mut batch = Vec::with_capacity(n);
                for _ in 0..n {
                    batch.push(frame(u, &mut frags)?);
                }
                let room = if u.ratio(7, 8)? { 2048 } else { 0 };
                t.batch(batch, room);
            }
            8 => {
                let ms = if u.ratio(3, 4)? {
                    u.int_in_range(0..=1000)?
                } else {
                    u.int_in_range(0..=120_000)?
                };
                t.advance(Duration::from_millis(ms));
            }
            _ => {
                if let Some(h) = queue {
                    let _ = t.s.udp_recv(h, 4, |_, _| {});
                    let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, *u.choose(&[9, 50])?), 9);
                    let len = usize::from(u.int_in_range(0..=3000u16)?);
                    let _ = t.s.udp_send(h, dst, &vec![7; len]);
                }
            }
        }
        t.app(l);
        t.tx();
    }
    Ok(())
}
