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
    frame[p..p + payload.0.len()].copy_from_slice(payload.0);
    frame[p + payload.0.len()..].copy_from_slice(payload.1);
    let (src, dstip) = (*spec.local.ip(), *spec.remote.ip());
    let seg_size = usize::from(spec.seg_size.max(1));
    let gso = dst.is_some() && tso && len > seg_size;
    let partial = dst.is_some() && (gso || l2.tx_csum);
    let cs = if partial { TxChecksum::Partial } else { TxChecksum::Full };
    repr.emit(&mut frame[l4..], src, dstip, cs).ok()?;
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
