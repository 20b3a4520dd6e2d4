//! # Whole Ethernet/IPv4/UDP frames
//!
//! What it is: one flow's addresses ([`UdpFlow`]) and the builder of a complete
//! Ethernet/IPv4/UDP frame from it ([`emit_udp_frame`]), composed from the layer `Repr`s. Used
//! wherever a frame is made from scratch outside the stack: the benchmark's traffic templates,
//! the raw datapath checks, the tests.
//!
//! What it never does: allocate, options, VLAN tags, fragments (a datagram that does not fit is
//! an error, not split).

use std::net::Ipv4Addr;

use super::{
    Csum, EtherType, EthernetAddress, EthernetRepr, IpProtocol, Ipv4Repr, NetHdr, Result,
    TxChecksum, UdpRepr, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN,
};

/// Addresses and ports of one UDP flow, as seen by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpFlow {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

/// Bytes of an untagged Ethernet/IPv4/UDP frame carrying `payload_len` bytes.
pub const fn udp_frame_len(payload_len: usize) -> usize {
    ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + payload_len
}

/// Writes an Ethernet/IPv4/UDP frame for `flow` into the front of `buf`: IPv4 without options,
/// TTL 64, DF set, identification 0 (RFC 6864 allows it for an atomic datagram), the payload, and
/// the UDP checksum as `csum` says. Returns the frame length and the offload header to send it
/// with ([`Csum::Partial`] pointing at the UDP checksum when `csum` is partial).
///
/// [`super::Error::Truncated`] if `buf` is too short, [`super::Error::Malformed`] if the
/// datagram is longer than IPv4 allows.
pub fn emit_udp_frame(
    buf: &mut [u8],
    flow: &UdpFlow,
    payload: &[u8],
    csum: TxChecksum,
) -> Result<(usize, NetHdr)> {
    let len = udp_frame_len(payload.len());
    let buf = buf.get_mut(..len).ok_or(super::Error::Truncated)?;
    let eth = EthernetRepr {
        src_addr: EthernetAddress(flow.src_mac),
        dst_addr: EthernetAddress(flow.dst_mac),
        ethertype: EtherType::Ipv4,
        vlan: [None, None],
    };
    let l2 = eth.emit(buf)?;
    let ip = Ipv4Repr {
        src_addr: flow.src_ip,
        dst_addr: flow.dst_ip,
        protocol: IpProtocol::Udp,
        payload_len: UDP_HEADER_LEN + payload.len(),
        ttl: 64,
        ident: 0,
        dont_frag: true,
        dscp: 0,
        ecn: 0,
    };
    let l3 = ip.emit(&mut buf[l2..])?;
    let datagram = &mut buf[l2 + l3..];
    datagram[UDP_HEADER_LEN..].copy_from_slice(payload);
    let udp = UdpRepr { src_port: flow.src_port, dst_port: flow.dst_port };
    udp.emit(datagram, flow.src_ip, flow.dst_ip, csum)?;
    let hdr = match csum {
        TxChecksum::Full => NetHdr::NONE,
        TxChecksum::Partial => NetHdr {
            csum: Csum::Partial { start: (l2 + l3) as u16, offset: UDP_CHECKSUM_OFFSET as u16 },
            ..NetHdr::NONE
        },
    };
    Ok((len, hdr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, Ipv4Packet, UdpPacket};

    fn flow() -> UdpFlow {
        UdpFlow {
            src_mac: [2, 0, 0, 0, 0, 0xa],
            dst_mac: [2, 0, 0, 0, 0, 0xb],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 51277,
            dst_port: 9000,
        }
    }

    #[test]
    fn a_frame_the_kernel_would_accept() {
        // The payload of the datagram Linux sent in checksum.rs's fixture: same checksum.
        let payload: Vec<u8> =
            [0, 0, 0, 1].into_iter().chain((4..64u32).map(|i| (i * 31 + 1) as u8)).collect();
        let mut buf = [0u8; 200];
        let (len, hdr) = emit_udp_frame(&mut buf, &flow(), &payload, TxChecksum::Full).unwrap();
        assert_eq!((len, hdr), (106, NetHdr::NONE));
        let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.checksum(), 0xf133);
        assert_eq!(udp.payload(), &payload[..]);
    }

    #[test]
    fn partial_checksum_says_where_to_complete() {
        let mut buf = [0u8; 100];
        let (_, hdr) = emit_udp_frame(&mut buf, &flow(), b"x", TxChecksum::Partial).unwrap();
        assert_eq!(hdr.csum, Csum::Partial { start: 34, offset: 6 });
    }

    #[test]
    fn too_short_a_buffer_is_an_error() {
        assert!(emit_udp_frame(&mut [0u8; 41], &flow(), &[], TxChecksum::Full).is_err());
        assert_eq!(emit_udp_frame(&mut [0u8; 42], &flow(), &[], TxChecksum::Full).unwrap().0, 42);
    }
}
