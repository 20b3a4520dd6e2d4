//! # Raw UDP frames for the datapath checks
//!
//! What it is: the little frame handling the Foundation's demo, tests and benchmarks need
//! before the library-OS stack takes over: build an Ethernet/IPv4/UDP frame into a buffer,
//! parse one, and answer one **in place** (swap the addresses and ports of a received datagram
//! so it can be sent back from the same frame, with no copy; the checksums stay valid because
//! the ones'-complement sum does not depend on the order of its words).
//!
//! What it never does: ARP, fragments, options handling beyond skipping them; anything a real
//! stack does. Malformed frames are reported as `None`, never a panic.

use libos::wire::{
    EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, NetHdr, TxChecksum,
    UdpPacket,
};

pub use libos::wire::{udp_frame_len, UdpFlow};

/// Writes an Ethernet/IPv4/UDP frame with complete checksums into `buf`; returns its length,
/// or `None` if `buf` is too short or the datagram too long for IPv4.
pub fn build_udp(buf: &mut [u8], flow: &UdpFlow, payload: &[u8]) -> Option<usize> {
    build_udp_with(buf, flow, payload, TxChecksum::Full).map(|(len, _)| len)
}

/// [`build_udp`] choosing how the UDP checksum is written: with [`TxChecksum::Partial`] only the
/// pseudo-header sum is stored and the returned header says where the port must complete it.
pub fn build_udp_with(
    buf: &mut [u8],
    flow: &UdpFlow,
    payload: &[u8],
    csum: TxChecksum,
) -> Option<(usize, NetHdr)> {
    libos::wire::emit_udp_frame(buf, flow, payload, csum).ok()
}

/// A received UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<'a> {
    /// Addresses as sent (source = the peer).
    pub flow: UdpFlow,
    /// The payload.
    pub payload: &'a [u8],
    /// Whether the UDP checksum is right (or absent, which RFC 768 allows).
    pub checksum_ok: bool,
    /// Whether the IPv4 header checksum is right.
    pub ip_checksum_ok: bool,
}

/// Parses an Ethernet(/VLAN)/IPv4/UDP frame; `None` if it is anything else or malformed
/// (including fragments).
pub fn parse_udp(frame: &[u8]) -> Option<UdpDatagram<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.inner_ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Udp || ip.is_fragment() {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    Some(UdpDatagram {
        flow: UdpFlow {
            src_mac: eth.src_addr().0,
            dst_mac: eth.dst_addr().0,
            src_ip: ip.src_addr(),
            dst_ip: ip.dst_addr(),
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
        },
        payload: udp.payload(),
        checksum_ok: udp.verify_checksum(ip.src_addr(), ip.dst_addr()),
        ip_checksum_ok: ip.verify_checksum(),
    })
}

/// Turns a received UDP datagram to `port` into its echo, in place: swaps MACs, IPv4
/// addresses and UDP ports. Checksums stay valid (a sum does not depend on word order).
/// Returns false, changing nothing, if the frame is not a well-formed UDP datagram to `port`
/// with valid checksums.
pub fn echo_in_place(frame: &mut [u8], port: u16) -> bool {
    let flow = match parse_udp(frame) {
        Some(d) if d.flow.dst_port == port && d.checksum_ok && d.ip_checksum_ok => d.flow,
        _ => return false,
    };
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else { return false };
    eth.set_dst_addr(EthernetAddress(flow.src_mac));
    eth.set_src_addr(EthernetAddress(flow.dst_mac));
    let l2 = eth.header_len();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[l2..]) else { return false };
    ip.set_src_addr(flow.dst_ip);
    ip.set_dst_addr(flow.src_ip);
    let l3 = ip.header_len();
    let Ok(mut udp) = UdpPacket::new_checked(&mut frame[l2 + l3..]) else { return false };
    udp.set_src_port(flow.dst_port);
    udp.set_dst_port(flow.src_port);
    true
}

/// Swaps the destination and source MAC addresses of a frame in place (the `l2fwd` rewrite).
#[inline]
pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 12 {
        let (dst, rest) = frame.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn flow() -> UdpFlow {
        UdpFlow {
            src_mac: [2, 0, 0, 0, 0, 0xa],
            dst_mac: [2, 0, 0, 0, 0, 0xb],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 40000,
            dst_port: 7,
        }
    }

    #[test]
    fn build_parse_round_trip_with_valid_checksums() {
        let mut buf = [0u8; 256];
        let n = build_udp(&mut buf, &flow(), b"hello").unwrap();
        let d = parse_udp(&buf[..n]).unwrap();
        assert_eq!(d.flow, flow());
        assert_eq!(d.payload, b"hello");
        assert!(d.checksum_ok && d.ip_checksum_ok);
    }

    #[test]
    fn echo_swaps_and_keeps_checksums_valid() {
        let mut buf = [0u8; 256];
        let n = build_udp(&mut buf, &flow(), b"ping").unwrap();
        assert!(echo_in_place(&mut buf[..n], 7));
        let d = parse_udp(&buf[..n]).unwrap();
        assert_eq!(d.flow.src_ip, flow().dst_ip);
        assert_eq!(d.flow.dst_port, 40000);
        assert_eq!(d.flow.dst_mac, flow().src_mac);
        assert!(d.checksum_ok && d.ip_checksum_ok);
    }

    #[test]
    fn corrupt_or_foreign_frames_are_not_echoed() {
        let mut buf = [0u8; 256];
        let n = build_udp(&mut buf, &flow(), b"ping").unwrap();
        assert!(!echo_in_place(&mut buf[..n], 8), "wrong port");
        buf[n - 1] ^= 0xff;
        assert!(!echo_in_place(&mut buf[..n], 7), "bad checksum");
        assert!(!echo_in_place(&mut buf[..20], 7), "truncated");
        assert!(parse_udp(&[]).is_none());
    }
}
