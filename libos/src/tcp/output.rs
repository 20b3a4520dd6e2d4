//! # Writing TCP segments into frames
//!
//! What it is: [`write_segment`], which turns a segment description (sequence numbers, flags,
//! window, options, payload pieces) into an Ethernet + IPv4 + TCP frame in a transmit buffer,
//! or into a bare IPv4 packet for the ARP pending queue, with the checksum and offload header
//! the link wants:
//! - a super-segment (payload above the segment size, `tso` on): `Gso::TcpV4 { size, hdr_len }`
//!   and, in the checksum field, the pseudo-header sum *without* the length
//!   ([`crate::wire::NetHdr`]'s convention; the NIC layer's software TSO completes each piece);
//! - with transmit checksum offload: `Csum::Partial` and the pseudo-header sum with the length;
//! - otherwise: the complete checksum, summed here over header and payload.
//!
//! What it never does: allocate, or write past the buffer (a buffer too small is `None` and
//! nothing is committed).
//!
//! Invariants: the IPv4 header is 20 bytes with DF set (TCP does path-MTU discovery, RFC 1191)
//! and a correct header checksum; the TCP header is [`TcpRepr::emit`]'s Linux layout.
//!
//! References: RFC 791, RFC 9293 §3.1, RFC 1191, RFC 6864, virtio 1.2 §5.1.6.

use std::net::SocketAddrV4;

use crate::wire::{
    checksum, Csum, EtherType, EthernetAddress, Gso, IpProtocol, Ipv4Packet, NetHdr, SackBlocks,
    TcpFlags, TcpRepr, TcpTimestamps, TxChecksum, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
    TCP_CHECKSUM_OFFSET, VLAN_TAG_LEN,
};

/// Link-layer facts of the interface, for framing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L2 {
    pub mac: EthernetAddress,
    pub vlan: Option<u16>,
    pub tx_csum: bool,
    pub ttl: u8,
}

impl L2 {
    /// Bytes of Ethernet header (with the VLAN tag, if any).
    pub fn len(&self) -> usize {
        ETHERNET_HEADER_LEN + if self.vlan.is_some() { VLAN_TAG_LEN } else { 0 }
    }

    fn write(&self, out: &mut [u8], dst: EthernetAddress) -> Option<usize> {
        let n = self.len();
        let h = out.get_mut(..n)?;
        h[..6].copy_from_slice(&dst.0);
        h[6..12].copy_from_slice(&self.mac.0);
        let mut at = 12;
        if let Some(vid) = self.vlan {
            h[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
            h[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            at = 16;
        }
        h[at..at + 2].copy_from_slice(&u16::from(EtherType::Ipv4).to_be_bytes());
        Some(n)
    }
}

/// The TCP part of a segment to write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSpec {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub mss_opt: Option<u16>,
    pub ws_opt: Option<u8>,
    pub sack_perm: bool,
    pub sack: SackBlocks,
    pub ts: Option<TcpTimestamps>,
    /// Payload bytes per wire segment; a longer payload makes a super-segment.
    pub seg_size: u16,
}

impl SegmentSpec {
    fn repr(&self) -> TcpRepr {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: self.seq,
            ack_number: if self.flags.contains(TcpFlags::ACK) { self.ack } else { 0 },
            flags: self.flags,
            window_len: self.window,
            urgent_at: 0,
            max_seg_size: self.mss_opt,
            window_scale: self.ws_opt,
            sack_permitted: self.sack_perm,
            sack_ranges: self.sack,
            timestamps: self.ts,
        }
    }

    /// TCP header bytes this segment needs.
    pub fn header_len(&self) -> usize {
        self.repr().header_len()
    }
}

/// Writes the segment into the front of `buf`: with an Ethernet header to `dst` when given,
/// else as a bare IPv4 packet (always fully checksummed). `payload` is the data in up to two
/// pieces. Returns the frame length, its offload header and the number of wire segments.
pub(crate) fn write_segment(
    buf: &mut [u8],
    l2: &L2,
    dst: Option<EthernetAddress>,
    ident: u16,
    spec: &SegmentSpec,
    payload: (&[u8], &[u8]),
    tso: bool,
) -> Option<(usize, NetHdr, u16)> {
    let repr = spec.repr();
    let thl = repr.header_len();
    let len = payload.0.len() + payload.1.len();
    let e = match dst {
        Some(mac) => l2.write(buf, mac)?,
        None => 0,
    };
    let l4 = e + IPV4_HEADER_LEN;
    let total = IPV4_HEADER_LEN + thl + len;
    if total > 65535 {
        return None;
    }
    let frame = buf.get_mut(..e + total)?;
    let p = l4 + thl;
    let (src, dstip) = (*spec.local.ip(), *spec.remote.ip());
    let seg_size = usize::from(spec.seg_size.max(1));
    let gso = dst.is_some() && tso && len > seg_size;
    let partial = dst.is_some() && (gso || l2.tx_csum);
    let (a, b) = frame[p..].split_at_mut(payload.0.len());
    if partial {
        a.copy_from_slice(payload.0);
        b.copy_from_slice(payload.1);
    }
    // The header goes in with the pseudo-header sum in its checksum field (the partial
    // convention); without offload the payload is summed while it is copied (one pass over
    // it instead of two) and the checksum completed here.
    repr.emit(&mut frame[l4..p], src, dstip, TxChecksum::Partial).ok()?;
    let pseudo_len =
        checksum::pseudo_header_v4(src.octets(), dstip.octets(), 6, (thl + len) as u16);
    frame[l4 + TCP_CHECKSUM_OFFSET..l4 + TCP_CHECKSUM_OFFSET + 2]
        .copy_from_slice(&pseudo_len.to_be_bytes());
    if !partial {
        let (a, b) = frame[p..].split_at_mut(payload.0.len());
        let sa = copy_and_sum(a, payload.0);
        let sb = checksum::at_offset(copy_and_sum(b, payload.1), payload.0.len());
        let hdr = checksum::sum(&frame[l4..p]);
        let c = !checksum::add(hdr, checksum::add(sa, sb));
        frame[l4 + TCP_CHECKSUM_OFFSET..l4 + TCP_CHECKSUM_OFFSET + 2]
            .copy_from_slice(&c.to_be_bytes());
    }
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[e..l4]);
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER_LEN);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(total as u16);
        ip.set_ident(ident);
        ip.set_dont_frag(true);
        ip.set_more_frags(false);
        ip.set_frag_offset(0);
        ip.set_ttl(l2.ttl);
        ip.set_protocol(IpProtocol::Tcp);
        ip.set_src_addr(src);
        ip.set_dst_addr(dstip);
        ip.fill_checksum();
    }
    let segments = if gso { len.div_ceil(seg_size) as u16 } else { 1 };
    let mut hdr = NetHdr::NONE;
    if partial {
        hdr.csum = Csum::Partial { start: l4 as u16, offset: TCP_CHECKSUM_OFFSET as u16 };
    }
    if gso {
        let pseudo = checksum::pseudo_header_v4(src.octets(), dstip.octets(), 6, 0);
        frame[l4 + TCP_CHECKSUM_OFFSET..l4 + TCP_CHECKSUM_OFFSET + 2]
            .copy_from_slice(&pseudo.to_be_bytes());
        hdr.gso = Gso::TcpV4 { size: spec.seg_size, hdr_len: (l4 + thl) as u16 };
    }
    Some((e + total, hdr, segments))
}

/// Copies `src` into `dst` (same length) and returns the folded ones'-complement sum of the
/// bytes (RFC 1071), in one pass: 32-bit native-order words added into a 64-bit accumulator
/// without carries, folded once at the end, as [`checksum::sum`] does.
fn copy_and_sum(dst: &mut [u8], src: &[u8]) -> u16 {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    // 32-byte blocks into eight independent lanes: the loop vectorizes (load, store, widen,
    // add) instead of chaining one add per word.
    let mut lanes = [0u64; 8];
    let mut d = dst.chunks_exact_mut(32);
    let mut s = src.chunks_exact(32);
    for (o, i) in (&mut d).zip(&mut s) {
        o.copy_from_slice(i);
        for (k, lane) in lanes.iter_mut().enumerate() {
            let w = [i[4 * k], i[4 * k + 1], i[4 * k + 2], i[4 * k + 3]];
            *lane += u64::from(u32::from_ne_bytes(w));
        }
    }
    let (dr, sr) = (d.into_remainder(), s.remainder());
    dr.copy_from_slice(sr);
    let mut acc: u64 = lanes.iter().sum();
    let mut words = sr.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_ne_bytes(tail));
    let mut x = (acc & 0xffff_ffff) + (acc >> 32);
    x = (x & 0xffff_ffff) + (x >> 32);
    let mut x = (x & 0xffff) + (x >> 16);
    x = (x & 0xffff) + (x >> 16);
    x = (x & 0xffff) + (x >> 16);
    let x = x as u16;
    if cfg!(target_endian = "little") {
        x.swap_bytes()
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, TcpPacket};
    use std::net::Ipv4Addr;

    fn spec() -> SegmentSpec {
        SegmentSpec {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000),
            seq: 1000,
            ack: 2000,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 512,
            mss_opt: None,
            ws_opt: None,
            sack_perm: false,
            sack: SackBlocks::EMPTY,
            ts: Some(TcpTimestamps { tsval: 1, tsecr: 2 }),
            seg_size: 100,
        }
    }

    fn l2(tx_csum: bool) -> L2 {
        L2 { mac: EthernetAddress([2, 0, 0, 0, 0, 1]), vlan: None, tx_csum, ttl: 64 }
    }

    #[test]
    fn full_checksum_frame() {
        let mut buf = [0u8; 512];
        let peer = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let (n, hdr, segs) =
            write_segment(&mut buf, &l2(false), Some(peer), 7, &spec(), (b"hel", b"lo"), false)
                .unwrap();
        assert_eq!((hdr, segs), (NetHdr::NONE, 1));
        let e = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum() && ip.dont_frag());
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(t.payload(), b"hello");
        // A bare IPv4 packet for the pending queue.
        let (n2, _, _) =
            write_segment(&mut buf, &l2(true), None, 7, &spec(), (b"hel", b"lo"), true).unwrap();
        assert_eq!(n2, n - 14);
        assert!(write_segment(
            &mut buf[..60],
            &l2(false),
            Some(peer),
            7,
            &spec(),
            (b"x", b""),
            false
        )
        .is_none());
    }

    #[test]
    fn copy_and_sum_matches_the_reference() {
        for n in [0usize, 1, 2, 3, 4, 5, 63, 1448, 1449] {
            let src: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            let mut dst = vec![0u8; n];
            assert_eq!(copy_and_sum(&mut dst, &src), checksum::reference(&src), "{n}");
            assert_eq!(dst, src);
        }
        // Two pieces, the second at an odd offset, sum like one.
        let whole: Vec<u8> = (0..101u32).map(|i| (i * 13) as u8).collect();
        let mut out = [0u8; 101];
        let (a, b) = out.split_at_mut(37);
        let s = checksum::add(
            copy_and_sum(a, &whole[..37]),
            checksum::at_offset(copy_and_sum(b, &whole[37..]), 37),
        );
        assert_eq!(s, checksum::reference(&whole));
    }

    #[test]
    fn super_segment_uses_the_tso_convention() {
        let mut buf = vec![0u8; 2048];
        let data = vec![0xab; 250];
        let (n, hdr, segs) = write_segment(
            &mut buf,
            &l2(false),
            Some(EthernetAddress([2, 0, 0, 0, 0, 2])),
            7,
            &spec(),
            (&data, &[]),
            true,
        )
        .unwrap();
        assert_eq!(segs, 3);
        assert_eq!(hdr.gso, Gso::TcpV4 { size: 100, hdr_len: 14 + 20 + 32 });
        assert_eq!(hdr.csum, Csum::Partial { start: 34, offset: 16 });
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 0);
        assert_eq!(u16::from_be_bytes([buf[34 + 16], buf[34 + 17]]), pseudo);
        assert_eq!(n, 14 + 20 + 32 + 250);
    }
}
