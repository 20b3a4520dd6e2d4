//! # TCP segmentation offload (TSO/GSO) in software
//!
//! What it is: [`split`] cuts one TCP/IPv4 super-segment (headers + a payload of any length,
//! possibly in pieces) into frames of at most `mss` payload bytes each, as a NIC with TSO or
//! Linux's `tcp_gso_segment` does; [`split_frame`] does it for a frame whose [`NetHdr`] says
//! [`Gso::TcpV4`]. Each segment goes to a [`SegmentSink`] (a port's free frames through
//! [`PortSink`], or any buffers the caller has).
//!
//! What it owns: nothing; it reads the super-segment and writes only into the buffers the sink
//! hands it.
//!
//! What it never does: allocate, touch the super-segment, trust the super-segment's IPv4 total
//! length or TCP checksum field (each segment's are computed here), panic on a malformed
//! header (an [`OffloadError`], before anything is written).
//!
//! Per segment `i` of `n` (Linux's rules, `net/ipv4/tcp_offload.c`, `af_inet.c`):
//! - headers are copied from the template (Ethernet, up to two VLAN tags, IPv4 with options,
//!   TCP with options);
//! - IPv4 total length is this segment's; the identification is the template's `+ i`
//!   (wrapping; RFC 6864 allows anything for DF datagrams, Linux increments unless FIXEDID);
//!   the header checksum is updated incrementally (RFC 1624, `checksum::update16`) from the
//!   template's, computed once;
//! - TCP sequence number is the template's `+ i * mss`; FIN and PSH stay only on the last
//!   segment, CWR only on the first (RFC 3168: one CWR per window reduction); all other bits,
//!   the window, options and urgent pointer are copied;
//! - TCP checksum = pseudo-header (with this segment's length) + the template TCP header's sum
//!   without its sequence number, flags word and checksum (computed once) + those two fields'
//!   new values + this segment's payload sum. The payload is the only thing summed per segment,
//!   once, right after it was copied (still in cache).
//!
//! Cost per segment: one copy of the headers and the payload, one pass over the payload for the
//! sum, a dozen 16-bit ones'-complement additions (`benches/offload.rs` on the development
//! machine: a 64 KiB super-segment into 46 segments of 1448 bytes in about 5 µs, 110 ns a
//! segment, most of it the payload sum).
//!
//! An empty payload gives one segment (the headers, with their fields fixed). The last
//! segment may be shorter than `mss`.
//!
//! References: RFC 9293 §3.1 (header, checksum), RFC 1071 and RFC 1624, RFC 3168 §6.1.2 (CWR),
//! RFC 6864 (IPv4 ID), Linux `Documentation/networking/segmentation-offloads.rst`,
//! virtio 1.2 §5.1.6.4 (`VIRTIO_NET_HDR_GSO_TCPV4`).

use libos::wire::checksum;
use libos::wire::{Gso, Ipv4Packet, NetHdr, TcpFlags, TcpPacket, TCP_CHECKSUM_OFFSET};

use super::layout;
use super::OffloadError;
use crate::port::Port;
use crate::virtq::{Burst, Desc};

/// Where [`split`] writes segments: one buffer per segment, asked for in order.
pub trait SegmentSink {
    /// A buffer for the next segment, which needs `len` bytes (the buffer may be longer; a
    /// shorter one fails the split with [`OffloadError::OutputTooSmall`]). `None` when there is
    /// none: the split stops with [`OffloadError::OutputExhausted`].
    ///
    /// Called again without a [`commit`](Self::commit) in between (after a failure), it may
    /// return the same buffer.
    fn next_buffer(&mut self, len: usize) -> Option<&mut [u8]>;

    /// The segment in the buffer last returned is complete: its first `len` bytes.
    fn commit(&mut self, len: usize);
}

/// What a split produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitStats {
    /// Segments committed to the sink.
    pub segments: usize,
    /// Bytes committed (headers included).
    pub bytes: usize,
}

/// How many segments a payload of `payload_len` bytes makes at `mss` (at least one).
pub fn segment_count(payload_len: usize, mss: u16) -> usize {
    payload_len.div_ceil(usize::from(mss.max(1))).max(1)
}

/// Splits a TCP/IPv4 super-segment into segments of at most `mss` payload bytes (see the
/// module documentation).
///
/// `headers` are the super-segment's Ethernet, IPv4 and TCP headers, exactly (that is
/// `hdr_len`); `payload` is its payload, in as many pieces as it is stored in (a ring buffer's
/// two halves, say), in order.
///
/// On success every segment was committed. On error nothing was committed if the headers or
/// `mss` are wrong or the first buffer is too small; if the sink runs out of buffers halfway,
/// the segments before stayed committed ([`OffloadError::OutputExhausted`] says how many).
pub fn split<S: SegmentSink + ?Sized>(
    headers: &[u8],
    payload: &[&[u8]],
    mss: u16,
    sink: &mut S,
) -> Result<SplitStats, OffloadError> {
    let lay = layout::tcp_v4(headers)?;
    if lay.payload != headers.len() {
        return Err(OffloadError::HdrLen { hdr_len: headers.len(), actual: lay.payload });
    }
    if mss == 0 {
        return Err(OffloadError::ZeroSegmentSize);
    }
    let total: usize = payload.iter().map(|p| p.len()).sum();
    let (hl, mss) = (headers.len(), usize::from(mss));
    let n = segment_count(total, mss as u16);
    let (ip_hl, thl) = (lay.l4 - lay.l3, lay.payload - lay.l4);
    let largest_ip = ip_hl + thl + mss.min(total);
    if largest_ip > usize::from(u16::MAX) {
        return Err(OffloadError::SegmentTooLarge(largest_ip));
    }

    // The template, summed once.
    let ip_hdr = &headers[lay.l3..lay.l4];
    let ip = Ipv4Packet::new_unchecked(ip_hdr);
    let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
    let (tmpl_len, tmpl_id) = (ip.total_len(), ip.ident());
    // The template's header checksum as it should be (whatever the field holds): the header's
    // sum minus the stored field, complemented.
    let ip_check = !checksum::add(checksum::sum(ip_hdr), !ip.checksum());
    let tcp = TcpPacket::new_unchecked(&headers[lay.l4..]);
    let (seq0, flags0) = (tcp.seq_number(), tcp.flags());
    let flags_word = |flags: TcpFlags| u16::from_be_bytes([headers[lay.l4 + 12], flags.bits()]);
    // Sum of the TCP header without the fields that change per segment: sequence number,
    // data-offset/flags word and checksum.
    let tcp_base = [(seq0 >> 16) as u16, seq0 as u16, flags_word(flags0), tcp.checksum()]
        .iter()
        .fold(checksum::sum(&headers[lay.l4..]), |s, &w| checksum::add(s, !w));

    let mut cursor = Cursor { pieces: payload, piece: 0, at: 0 };
    let mut stats = SplitStats::default();
    for i in 0..n {
        let off = i * mss;
        let seg_len = mss.min(total - off);
        let need = hl + seg_len;
        let Some(buf) = sink.next_buffer(need) else {
            return Err(OffloadError::OutputExhausted { segment: i, segments: n });
        };
        if buf.len() < need {
            return Err(OffloadError::OutputTooSmall { needed: need, got: buf.len() });
        }
        let buf = &mut buf[..need];
        buf[..hl].copy_from_slice(headers);
        cursor.copy_to(&mut buf[hl..]);

        let ip_len = (ip_hl + thl + seg_len) as u16;
        let id = tmpl_id.wrapping_add(i as u16);
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[lay.l3..lay.l4]);
        ip.set_total_len(ip_len);
        ip.set_ident(id);
        ip.set_checksum(checksum::update16(
            checksum::update16(ip_check, tmpl_len, ip_len),
            tmpl_id,
            id,
        ));

        let seq = seq0.wrapping_add(off as u32);
        let mut flags = flags0;
        if i + 1 < n {
            flags.remove(TcpFlags::FIN | TcpFlags::PSH);
        }
        if i > 0 {
            flags.remove(TcpFlags::CWR);
        }
        // The TCP header starts at an even offset of the TCP segment and its length is a
        // multiple of 4, so the payload's sum needs no byte swap.
        let payload_sum = checksum::sum(&buf[hl..]);
        let tcp_len = (thl + seg_len) as u16;
        let sum = [(seq >> 16) as u16, seq as u16, flags_word(flags), payload_sum].iter().fold(
            checksum::add(tcp_base, checksum::pseudo_header_v4(src, dst, 6, tcp_len)),
            |s, &w| checksum::add(s, w),
        );
        let mut tcp = TcpPacket::new_unchecked(&mut buf[lay.l4..]);
        tcp.set_seq_number(seq);
        tcp.set_flags(flags);
        tcp.set_checksum(!sum);

        sink.commit(need);
        stats.segments += 1;
        stats.bytes += need;
    }
    Ok(stats)
}

/// [`split`] for a frame whose header says [`Gso::TcpV4`]: `frame[..hdr_len]` are the
/// headers, the rest the payload, cut at `size`. The checksum state (`hdr.csum`, normally
/// [`Csum::Partial`](libos::wire::Csum::Partial)) is not needed: segments leave complete.
///
/// Errors: [`OffloadError::NotTcpV4Gso`] for another `gso`, [`OffloadError::HdrLen`] if
/// `hdr_len` is not where the frame's TCP header ends, and those of [`split`].
pub fn split_frame<S: SegmentSink + ?Sized>(
    frame: &[u8],
    hdr: &NetHdr,
    sink: &mut S,
) -> Result<SplitStats, OffloadError> {
    let Gso::TcpV4 { size, hdr_len } = hdr.gso else {
        return Err(OffloadError::NotTcpV4Gso(hdr.gso));
    };
    let hdr_len = usize::from(hdr_len);
    let lay = layout::tcp_v4(frame)?;
    if lay.payload != hdr_len {
        return Err(OffloadError::HdrLen { hdr_len, actual: lay.payload });
    }
    split(&frame[..hdr_len], &[&frame[hdr_len..]], size, sink)
}

/// Reads a payload stored in pieces, front to back.
struct Cursor<'p, 'b> {
    pieces: &'p [&'b [u8]],
    piece: usize,
    at: usize,
}

impl Cursor<'_, '_> {
    /// Fills `out` with the next `out.len()` bytes; the caller never asks past the end.
    fn copy_to(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            let Some(piece) = self.pieces.get(self.piece) else { return };
            let rest = &piece[self.at..];
            let n = rest.len().min(out.len());
            out[..n].copy_from_slice(&rest[..n]);
            out = &mut out[n..];
            self.at += n;
            if self.at == piece.len() {
                self.piece += 1;
                self.at = 0;
            }
        }
    }
}

/// A [`SegmentSink`] that writes each segment into a fresh frame of a port
/// ([`Port::alloc_burst`]) and appends its descriptor, complete ([`NetHdr::NONE`]), to a burst
/// for [`Port::tx_burst`]. A frame taken for a segment that was never committed goes back to
/// the port when the sink is dropped.
pub struct PortSink<'a, P: Port + ?Sized> {
    port: &'a mut P,
    out: &'a mut Burst,
    /// Index in `out` of a frame handed out and not yet committed.
    pending: Option<usize>,
}

impl<'a, P: Port + ?Sized> PortSink<'a, P> {
    /// Segments will be written into frames of `port` and appended to `out`.
    pub fn new(port: &'a mut P, out: &'a mut Burst) -> Self {
        PortSink { port, out, pending: None }
    }
}

impl<P: Port + ?Sized> core::fmt::Debug for PortSink<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PortSink")
            .field("out", &self.out.len())
            .field("pending", &self.pending)
            .finish()
    }
}

impl<P: Port + ?Sized> SegmentSink for PortSink<'_, P> {
    fn next_buffer(&mut self, _len: usize) -> Option<&mut [u8]> {
        let idx = match self.pending {
            Some(idx) => idx,
            None => {
                let idx = self.out.len();
                if self.out.spare() == 0 || self.port.alloc_burst(self.out, 1) != 1 {
                    return None;
                }
                self.pending = Some(idx);
                idx
            }
        };
        let desc = self.out.as_slice()[idx];
        Some(self.port.room_mut(&desc))
    }

    fn commit(&mut self, len: usize) {
        if let Some(idx) = self.pending.take() {
            self.out.as_mut_slice()[idx].len = len as u32;
        }
    }
}

impl<P: Port + ?Sized> Drop for PortSink<'_, P> {
    fn drop(&mut self) {
        if let Some(idx) = self.pending.take() {
            let desc: Desc = self.out.as_slice()[idx];
            self.port.free(&desc);
            self.out.retain(|d| d.addr != desc.addr);
        }
    }
}

/// The offset of the TCP checksum field, for [`Csum::Partial`](libos::wire::Csum::Partial)
/// headers of super-segments (`start` = the TCP header's offset).
pub const CSUM_OFFSET: u16 = TCP_CHECKSUM_OFFSET as u16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{self, Spec};
    use libos::wire::Csum;
    use proptest::prelude::*;

    /// Collects segments into vectors.
    #[derive(Default)]
    struct VecSink {
        buf: Vec<u8>,
        out: Vec<Vec<u8>>,
        limit: Option<usize>,
        room: usize,
    }

    impl VecSink {
        fn new() -> Self {
            VecSink { room: 70_000, ..Default::default() }
        }
    }

    impl SegmentSink for VecSink {
        fn next_buffer(&mut self, _len: usize) -> Option<&mut [u8]> {
            if self.limit.is_some_and(|l| self.out.len() >= l) {
                return None;
            }
            self.buf.resize(self.room, 0xee);
            Some(&mut self.buf)
        }
        fn commit(&mut self, len: usize) {
            self.out.push(self.buf[..len].to_vec());
        }
    }

    /// The naive reference: segment `i` built from scratch, both checksums recomputed in full
    /// with `checksum::reference`.
    fn reference(spec: &Spec, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let n = payload.len().div_ceil(mss).max(1);
        (0..n)
            .map(|i| {
                let chunk =
                    &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
                let mut flags = spec.flags;
                if i + 1 < n {
                    flags &= !(0x01 | 0x08);
                }
                if i > 0 {
                    flags &= !0x80;
                }
                let seg = Spec {
                    seq: spec.seq.wrapping_add((i * mss) as u32),
                    id: spec.id.wrapping_add(i as u16),
                    flags,
                    ..spec.clone()
                };
                testutil::frame(&seg, chunk)
            })
            .collect()
    }

    fn gso(spec: &Spec, mss: u16) -> NetHdr {
        NetHdr {
            csum: Csum::Partial { start: spec.l4() as u16, offset: CSUM_OFFSET },
            gso: Gso::TcpV4 { size: mss, hdr_len: spec.hdr_len() as u16 },
            segments: 0,
        }
    }

    #[test]
    fn splits_into_mss_sized_segments() {
        let spec = Spec { flags: 0x10 | 0x08 | 0x01 | 0x80, ..Spec::default() };
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let f = testutil::super_segment(&spec, &payload);
        let mut sink = VecSink::new();
        let stats = split_frame(&f, &gso(&spec, 1448), &mut sink).unwrap();
        assert_eq!(stats, SplitStats { segments: 3, bytes: 3000 + 3 * 54 });
        assert_eq!(sink.out, reference(&spec, &payload, 1448));
        let flags: Vec<u8> = sink.out.iter().map(|s| s[47]).collect();
        assert_eq!(flags, [0x90, 0x10, 0x19]);
        for s in &sink.out {
            assert_eq!(crate::offload::csum::verify_ipv4_l4(s), Some(true));
        }
    }

    #[test]
    fn payload_in_pieces_equals_contiguous() {
        let spec = Spec {
            vlans: vec![5],
            tcp_opts: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ..Spec::default()
        };
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let f = testutil::super_segment(&spec, &payload);
        let hl = spec.hdr_len();
        let mut whole = VecSink::new();
        split(&f[..hl], &[&payload], 1000, &mut whole).unwrap();
        for cuts in [[0, 0], [1, 2], [999, 1000], [1001, 4999], [2500, 5000]] {
            let (a, rest) = payload.split_at(cuts[0]);
            let (b, c) = rest.split_at(cuts[1] - cuts[0]);
            let mut pieces = VecSink::new();
            split(&f[..hl], &[a, &[], b, c], 1000, &mut pieces).unwrap();
            assert_eq!(pieces.out, whole.out, "cuts {cuts:?}");
        }
    }

    #[test]
    fn empty_payload_gives_one_segment() {
        let spec = Spec { flags: 0x11, ..Spec::default() };
        let f = testutil::super_segment(&spec, &[]);
        let mut sink = VecSink::new();
        assert_eq!(split_frame(&f, &gso(&spec, 100), &mut sink).unwrap().segments, 1);
        assert_eq!(sink.out, reference(&spec, &[], 100));
    }

    #[test]
    fn errors_instead_of_panics() {
        let spec = Spec::default();
        let f = testutil::super_segment(&spec, &[1; 100]);
        let h = gso(&spec, 10);
        let mut sink = VecSink::new();
        let with = |g: Gso| NetHdr { gso: g, ..h };
        assert_eq!(
            split_frame(&f, &NetHdr::NONE, &mut sink),
            Err(OffloadError::NotTcpV4Gso(Gso::None))
        );
        assert_eq!(
            split_frame(&f, &with(Gso::TcpV4 { size: 10, hdr_len: 50 }), &mut sink),
            Err(OffloadError::HdrLen { hdr_len: 50, actual: 54 })
        );
        assert_eq!(
            split(&f[..60], &[], 10, &mut sink),
            Err(OffloadError::HdrLen { hdr_len: 60, actual: 54 })
        );
        assert_eq!(
            split_frame(&f, &with(Gso::TcpV4 { size: 0, hdr_len: 54 }), &mut sink),
            Err(OffloadError::ZeroSegmentSize)
        );
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(split_frame(&udp, &h, &mut sink), Err(OffloadError::NotTcp(17)));
        let mut v6 = f.clone();
        v6[12] = 0x86;
        v6[13] = 0xdd;
        assert_eq!(split_frame(&v6, &h, &mut sink), Err(OffloadError::NotIpv4(0x86dd)));
        let mut small = VecSink { room: 60, ..VecSink::new() };
        assert_eq!(
            split_frame(&f, &h, &mut small),
            Err(OffloadError::OutputTooSmall { needed: 64, got: 60 })
        );
        assert!(small.out.is_empty());
        let mut three = VecSink { limit: Some(3), ..VecSink::new() };
        assert_eq!(
            split_frame(&f, &h, &mut three),
            Err(OffloadError::OutputExhausted { segment: 3, segments: 10 })
        );
        assert_eq!(three.out.len(), 3);
        assert_eq!(
            split(&f[..54], &[&vec![0u8; 70_000]], u16::MAX, &mut sink),
            Err(OffloadError::SegmentTooLarge(40 + 65535))
        );
        assert!(sink.out.is_empty());
        for n in 0..54 {
            assert!(split(&f[..n], &[], 10, &mut sink).is_err());
        }
    }

    #[test]
    fn splits_into_port_frames_that_the_peer_receives() {
        use crate::mem::{pair, MemConfig};
        let (mut a, mut b) = pair(MemConfig::default());
        let spec = Spec { vlans: vec![9, 10], ..Spec::default() };
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let f = testutil::super_segment(&spec, &payload);
        let mut tx = Burst::new();
        let stats =
            split_frame(&f, &gso(&spec, 1448), &mut PortSink::new(&mut a, &mut tx)).unwrap();
        assert_eq!((stats.segments, tx.len()), (7, 7));
        assert_eq!(a.tx_burst(&mut tx), 7);
        let mut rx = Burst::new();
        assert_eq!(b.rx_burst(&mut rx), 7);
        let want = reference(&spec, &payload, 1448);
        for (d, w) in rx.iter().zip(&want) {
            assert_eq!(b.frame(d), w.as_slice());
        }
        b.free_burst(&mut rx);

        // A port that runs dry: the frame taken for the failed segment goes back.
        let (mut a, _b) = pair(MemConfig { frames: 3, ..MemConfig::default() });
        let mut tx = Burst::new();
        let err = split_frame(&f, &gso(&spec, 1448), &mut PortSink::new(&mut a, &mut tx));
        assert_eq!(err, Err(OffloadError::OutputExhausted { segment: 3, segments: 7 }));
        assert_eq!(tx.len(), 3);
        let c = a.frame_counts();
        assert_eq!((c.held, c.free), (3, 0));
        // And one that is too small: nothing stays held.
        let (mut a, _b) = pair(MemConfig::default());
        let mut tx = Burst::new();
        let err = split_frame(&f, &gso(&spec, 4000), &mut PortSink::new(&mut a, &mut tx));
        assert!(matches!(err, Err(OffloadError::OutputTooSmall { .. })));
        assert!(tx.is_empty());
        assert_eq!(a.frame_counts().held, 0);
        a.frame_counts().check().unwrap();
    }

    proptest! {
        /// Split frames are byte-identical to segments built from scratch, and their payloads
        /// concatenate to the original.
        #[test]
        fn split_matches_the_naive_reference(
            spec in testutil::spec(),
            len in prop_oneof![0usize..3000, 0usize..65536],
            seed in any::<u8>(),
            mss in prop_oneof![1u16..100, 500u16..1461, Just(1448u16), 1u16..9000],
            cut in any::<prop::sample::Index>(),
        ) {
            let len = len.min(usize::from(mss) * 700);
            let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let f = testutil::super_segment(&spec, &payload);
            let mut sink = VecSink::new();
            let r = split_frame(&f, &gso(&spec, mss), &mut sink);
            let ip_hl = 20 + spec.ip_opts.len() + 20 + spec.tcp_opts.len();
            if ip_hl + usize::from(mss).min(len) > 65535 {
                prop_assert!(matches!(r, Err(OffloadError::SegmentTooLarge(_))));
                return Ok(());
            }
            let stats = r.unwrap();
            let want = reference(&spec, &payload, usize::from(mss));
            prop_assert_eq!(stats.segments, want.len());
            prop_assert_eq!(&sink.out, &want);
            let hl = spec.hdr_len();
            let joined: Vec<u8> = sink.out.iter().flat_map(|s| s[hl..].iter().copied()).collect();
            prop_assert_eq!(joined, payload.clone());
            // The same from two pieces.
            let at = cut.index(len + 1);
            let mut pieces = VecSink::new();
            split(&f[..hl], &[&payload[..at], &payload[at..]], mss, &mut pieces).unwrap();
            prop_assert_eq!(pieces.out, want);
        }
    }
}
