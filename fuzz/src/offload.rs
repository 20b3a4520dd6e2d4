//! Targets of the software offloads in `nic::offload`: TSO (`tso::split_frame` on any frame
//! and any segmentation header) and GRO (`gro::Gro::coalesce` on bursts of arbitrary frames,
//! mostly segments of a few flows, in order or not, with any checksum state).
//!
//! TSO invariants: no panic; on success, as many segments as `segment_count` says, each a
//! valid frame (IPv4 header checksum and TCP checksum verify, total length right), sequence
//! numbers consecutive, FIN/PSH only on the last, and their payloads end to end the
//! super-segment's. GRO invariants: no panic; each frame is delivered unchanged or consumed
//! into exactly one coalesced packet; per flow the payload bytes in delivery order equal those
//! in arrival order; each coalesced packet has a valid IPv4 header, a total length that is its
//! length, a `TcpV4` header whose `hdr_len` is its headers, and TSO cuts it back into its
//! `segments` segments with the same bytes.

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use libos::wire::{
    Csum, EtherType, EthernetFrame, Gso, IpProtocol, Ipv4Packet, NetHdr, TcpFlags, TcpPacket,
};
use nic::offload::gro::{Delivery, Gro, GroConfig};
use nic::offload::tso::{segment_count, split_frame, SegmentSink};
use nic::offload::OffloadError;

use crate::frames::{build, corrupt, spec, Spec};

/// A sink of owned buffers, `limit` of them at most, each `room` bytes (0: what is asked).
struct VecSink {
    segs: Vec<Vec<u8>>,
    cur: Vec<u8>,
    limit: usize,
    room: usize,
}

impl SegmentSink for VecSink {
    fn next_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.segs.len() >= self.limit {
            return None;
        }
        self.cur = vec![0; if self.room == 0 { len } else { self.room }];
        Some(&mut self.cur)
    }
    fn commit(&mut self, len: usize) {
        let mut b = std::mem::take(&mut self.cur);
        b.truncate(len);
        self.segs.push(b);
    }
}

/// Ethernet → IPv4 → TCP of a frame, if it is one: (IPv4 header offset, TCP header offset,
/// payload offset).
fn tcp_layout(f: &[u8]) -> Option<(usize, usize, usize)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.inner_ethertype() != EtherType::Ipv4 {
        return None; // GRO leaves other EtherTypes alone, whatever follows the header
    }
    let l3 = eth.header_len();
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Tcp || ip.is_fragment() {
        return None;
    }
    let l4 = l3 + ip.header_len();
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((l3, l4, l4 + tcp.header_len()))
}

/// Checks a segment TSO produced and returns (seq, flags, payload).
fn check_segment(seg: &[u8]) -> (u32, TcpFlags, Vec<u8>) {
    let (l3, l4, _) = tcp_layout(seg).expect("a segment is a TCP/IPv4 frame");
    let ip = Ipv4Packet::new_checked(&seg[l3..]).expect("checked above");
    assert!(ip.verify_checksum(), "segment IPv4 checksum");
    assert_eq!(usize::from(ip.total_len()), seg.len() - l3, "segment total length");
    let tcp = TcpPacket::new_checked(&seg[l4..]).expect("checked above");
    assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()), "segment TCP checksum");
    (tcp.seq_number(), tcp.flags(), tcp.payload().to_vec())
}

/// Splits `frame` with `hdr` and checks the segments; returns them on success.
fn split_and_check(frame: &[u8], hdr: &NetHdr, limit: usize, room: usize) -> Option<Vec<Vec<u8>>> {
    let mut sink = VecSink { segs: Vec::new(), cur: Vec::new(), limit, room };
    let r = split_frame(frame, hdr, &mut sink);
    match r {
        Ok(st) => {
            let Gso::TcpV4 { size, hdr_len } = hdr.gso else { panic!("split a non-TSO frame") };
            let hl = usize::from(hdr_len);
            let payload = &frame[hl..];
            assert_eq!(st.segments, segment_count(payload.len(), size));
            assert_eq!(st.segments, sink.segs.len());
            assert_eq!(st.bytes, sink.segs.iter().map(Vec::len).sum::<usize>());
            let tcp0 = TcpPacket::new_checked(&frame[tcp_layout(frame)?.1..]).ok()?;
            let mut joined = Vec::new();
            for (i, seg) in sink.segs.iter().enumerate() {
                let (seq, flags, p) = check_segment(seg);
                assert_eq!(seq, tcp0.seq_number().wrapping_add(joined.len() as u32));
                assert!(p.len() <= usize::from(size));
                if i + 1 < st.segments {
                    assert!(!flags.contains(TcpFlags::FIN) && !flags.contains(TcpFlags::PSH));
                    assert_eq!(p.len(), usize::from(size), "only the last segment is short");
                }
                joined.extend_from_slice(&p);
            }
            assert_eq!(joined, payload, "the segments' payloads are the super-segment's");
            Some(sink.segs)
        }
        Err(OffloadError::OutputExhausted { segment, .. }) => {
            assert_eq!(segment, sink.segs.len());
            None
        }
        Err(_) => None,
    }
}

/// TSO on an arbitrary or structured frame.
pub fn tso(data: &[u8]) {
    let _ = tso_u(&mut Unstructured::new(data));
}

fn tso_u(u: &mut Unstructured<'_>) -> Result<()> {
    let structured = u.ratio(7, 8)?;
    let (frame, hl) = if structured {
        let s = spec(u, 9000)?;
        let hl = s.hdr_len();
        (corrupt(u, build(&s))?, hl)
    } else {
        let hl = usize::from(u.int_in_range(0..=140u16)?);
        (u.arbitrary::<Vec<u8>>()?, hl)
    };
    let hdr_len = if u.ratio(7, 8)? { hl as u16 } else { u.arbitrary()? };
    let size = match u.int_in_range(0..=3)? {
        0 => u.arbitrary()?,
        1 => u.int_in_range(1..=64)?,
        _ => u.int_in_range(500..=1460)?,
    };
    let hdr = NetHdr {
        csum: Csum::Partial { start: u.arbitrary()?, offset: 16 },
        gso: if u.ratio(15, 16)? { Gso::TcpV4 { size, hdr_len } } else { Gso::None },
        segments: 0,
    };
    let limit = if u.ratio(7, 8)? { usize::MAX } else { u.int_in_range(0..=4)? };
    let room = if u.ratio(7, 8)? { 0 } else { usize::from(u.int_in_range(0..=2000u16)?) };
    split_and_check(&frame, &hdr, limit, room);
    Ok(())
}

/// A flow key and the TCP payload of a frame; frames that are not TCP/IPv4 form one "flow"
/// per frame (their whole bytes), since GRO passes them through untouched.
fn key_and_payload(f: &[u8], i: usize) -> ((u8, [u8; 12], usize), Vec<u8>) {
    match tcp_layout(f) {
        Some((l3, l4, pl)) => {
            let mut k = [0u8; 12];
            k[..8].copy_from_slice(&f[l3 + 12..l3 + 20]);
            k[8..].copy_from_slice(&f[l4..l4 + 4]);
            let total = l3 + usize::from(Ipv4Packet::new_unchecked(&f[l3..]).total_len());
            ((1, k, 0), f[pl..total.min(f.len())].to_vec())
        }
        None => ((0, [0; 12], i), f.to_vec()),
    }
}

/// GRO on a burst of frames.
pub fn gro(data: &[u8]) {
    let _ = gro_u(&mut Unstructured::new(data));
}

fn gro_u(u: &mut Unstructured<'_>) -> Result<()> {
    let cfg = GroConfig {
        enabled: true,
        max_segments: u.int_in_range(0..=70)?,
        buffers: u.int_in_range(0..=4)?,
    };
    let mut gro = Gro::new(cfg);
    for _ in 0..u.int_in_range(1..=3)? {
        let n = u.int_in_range(1..=48usize)?;
        // A few flows, each sending in order from its own sequence number (the fuzzer may
        // skip, repeat or resize segments, change flags and checksum states, or corrupt).
        let mut flows: Vec<Spec> = (0..3)
            .map(|k| {
                let mut s = Spec::tcp(Vec::new());
                s.sport = 5000 + k;
                s
            })
            .collect();
        let mut burst: Vec<(Vec<u8>, NetHdr)> = Vec::with_capacity(n);
        for _ in 0..n {
            let frame = if u.ratio(1, 16)? {
                u.arbitrary::<Vec<u8>>()?
            } else {
                let k = u.choose_index(flows.len())?;
                let s = &mut flows[k];
                let len = match u.int_in_range(0..=3)? {
                    0 => u.int_in_range(0..=100)?,
                    _ => *u.choose(&[100usize, 536, 1448])?,
                };
                s.payload = (0..len).map(|i| (i as u32 ^ s.seq) as u8).collect();
                s.flags = if u.ratio(7, 8)? { 0x10 } else { u.arbitrary::<u8>()? | 0x10 };
                if u.ratio(1, 8)? {
                    s.ident = s.ident.wrapping_add(u.arbitrary::<u8>()?.into());
                    s.df = u.arbitrary()?;
                }
                if u.ratio(1, 16)? {
                    s.tcp_opts = vec![1, 1, 8, 10, 0, 0, 0, u.arbitrary()?, 0, 0, 0, 0];
                }
                let f = corrupt(u, build(s))?;
                s.ident = s.ident.wrapping_add(1);
                if !u.ratio(1, 8)? {
                    s.seq = s.seq.wrapping_add(len as u32);
                }
                f
            };
            let csum = match u.int_in_range(0..=5)? {
                0 => Csum::Valid,
                1 => Csum::Partial { start: 34, offset: 16 },
                _ => Csum::None,
            };
            let gso = if u.ratio(1, 32)? {
                Gso::TcpV4 { size: u.arbitrary()?, hdr_len: u.arbitrary()? }
            } else {
                Gso::None
            };
            burst.push((frame, NetHdr { csum, gso, segments: 0 }));
        }
        gro.coalesce(&burst[..]);

        let mut seen = vec![0u32; burst.len()];
        let mut merged = 0usize;
        let mut by_flow_in: BTreeMap<_, Vec<u8>> = BTreeMap::new();
        for (i, (f, _)) in burst.iter().enumerate() {
            let (k, p) = key_and_payload(f, i);
            by_flow_in.entry(k).or_default().extend(p);
        }
        let mut by_flow_out: BTreeMap<_, Vec<u8>> = BTreeMap::new();
        for &d in gro.deliveries() {
            match d {
                Delivery::Frame { index, hdr } => {
                    let i = usize::from(index);
                    seen[i] += 1;
                    assert_eq!(hdr.gso, burst[i].1.gso, "a passed frame keeps its gso");
                    let (k, p) = key_and_payload(&burst[i].0, i);
                    by_flow_out.entry(k).or_default().extend(p);
                }
                Delivery::Coalesced { packet } => {
                    let (bytes, hdr) = gro.packet(usize::from(packet));
                    let Gso::TcpV4 { size, hdr_len } = hdr.gso else {
                        panic!("a coalesced packet without TcpV4: {hdr:?}")
                    };
                    assert!(hdr.segments >= 2, "a coalesced packet of {} segments", hdr.segments);
                    assert!(hdr.segments <= cfg.max_segments.max(2));
                    merged += usize::from(hdr.segments);
                    let (l3, _, pl) = tcp_layout(bytes).expect("a coalesced packet parses");
                    assert_eq!(pl, usize::from(hdr_len));
                    let ip = Ipv4Packet::new_checked(&bytes[l3..]).expect("parsed above");
                    assert!(ip.verify_checksum(), "coalesced IPv4 header checksum");
                    assert_eq!(usize::from(ip.total_len()), bytes.len() - l3);
                    let (k, p) = key_and_payload(bytes, usize::MAX);
                    let segs = split_and_check(bytes, &hdr, usize::MAX, 0)
                        .expect("TSO cuts a coalesced packet");
                    assert_eq!(segs.len(), usize::from(hdr.segments));
                    assert!(p.len() > usize::from(size) * (segs.len() - 1));
                    by_flow_out.entry(k).or_default().extend(p);
                }
            }
        }
        for (i, &s) in seen.iter().enumerate() {
            assert_eq!(s + u32::from(gro.is_consumed(i)), 1, "frame {i} delivered once");
        }
        assert_eq!(merged, (0..burst.len()).filter(|&i| gro.is_consumed(i)).count());
        for (k, inb) in &by_flow_in {
            let outb = by_flow_out.get(k).map_or(&[][..], |v| &v[..]);
            if inb[..] != *outb {
                let at = inb.iter().zip(outb).position(|(a, b)| a != b);
                panic!(
                    "flow {k:?}: {} bytes in, {} out, first difference at {at:?}",
                    inb.len(),
                    outb.len()
                );
            }
        }
        assert_eq!(by_flow_in.len(), by_flow_out.len(), "flows in and out");
    }
    Ok(())
}
