//! # Frame builders and a frame classifier for tests and benchmarks
//!
//! What it is: functions that build complete Ethernet frames (UDP, ICMP echo, ARP, IPv4
//! fragments) with the wire `Repr`s, and [`classify`], which summarizes a frame from a
//! simulator trace ([`Kind`]).
//!
//! What it never does: anything on a fast path: these allocate a `Vec` per frame.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ipv4::{fragment_plan, write_packet, OutHeader};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TxChecksum,
    UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
};

fn eth(src: EthernetAddress, dst: EthernetAddress, ty: EtherType) -> Vec<u8> {
    let mut f = vec![0u8; ETHERNET_HEADER_LEN];
    let repr = EthernetRepr { src_addr: src, dst_addr: dst, vlan: [None, None], ethertype: ty };
    let _ = repr.emit(&mut f);
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8], ident: u16) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: l4.len(),
        ttl: 64,
        ident,
        dont_frag: false,
        dscp: 0,
        ecn: 0,
    };
    let mut p = vec![0u8; repr.buffer_len()];
    p[20..].copy_from_slice(l4);
    let _ = repr.emit(&mut p);
    p
}

/// The UDP datagram (header and payload) from `src` to `dst`, with its checksum.
pub fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 8 + payload.len()];
    d[8..].copy_from_slice(payload);
    let repr = UdpRepr { src_port: src.port(), dst_port: dst.port() };
    let _ = repr.emit(&mut d, *src.ip(), *dst.ip(), TxChecksum::Full);
    d
}

/// An Ethernet frame carrying a UDP datagram.
pub fn udp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(src_mac, dst_mac, EtherType::Ipv4);
    f.extend(ipv4(*src.ip(), *dst.ip(), IpProtocol::Udp, &udp_datagram(src, dst, payload), 1));
    f
}

/// An Ethernet frame carrying an ICMP echo request.
pub fn icmp_echo_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest { ident, seq_no, data };
    let mut msg = vec![0u8; repr.buffer_len()];
    let _ = repr.emit(&mut msg);
    let mut f = eth(src_mac, dst_mac, EtherType::Ipv4);
    f.extend(ipv4(src, dst, IpProtocol::Icmp, &msg, 2));
    f
}

/// A broadcast ARP request from `src_mac`/`src` for `target`.
pub fn arp_request(src_mac: EthernetAddress, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(src_mac, EthernetAddress::BROADCAST, EtherType::Arp);
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        sender_hardware_addr: src_mac,
        sender_protocol_addr: src,
        target_hardware_addr: EthernetAddress::default(),
        target_protocol_addr: target,
    };
    let mut a = [0u8; 28];
    let _ = repr.emit(&mut a);
    f.extend_from_slice(&a);
    f
}

/// An ARP reply from `src_mac`/`src` to `dst_mac`/`dst` (unicast, as a host answers).
pub fn arp_reply(
    src_mac: EthernetAddress,
    src: Ipv4Addr,
    dst_mac: EthernetAddress,
    dst: Ipv4Addr,
) -> Vec<u8> {
    let mut f = eth(src_mac, dst_mac, EtherType::Arp);
    let repr = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hardware_addr: src_mac,
        sender_protocol_addr: src,
        target_hardware_addr: dst_mac,
        target_protocol_addr: dst,
    };
    let mut a = [0u8; 28];
    let _ = repr.emit(&mut a);
    f.extend_from_slice(&a);
    f
}

#[allow(clippy::too_many_arguments)]
/// The fragments (as Ethernet frames) of an IPv4 datagram carrying `l4` from `src` to `dst`,
/// cut for `mtu`, in order.
pub fn ipv4_fragments(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
    l4: &[u8],
    mtu: usize,
) -> Vec<Vec<u8>> {
    let hdr = OutHeader { src, dst, protocol, ident, ttl: 64, tos: 0 };
    let Some((per, n)) = fragment_plan(l4.len(), mtu) else { return Vec::new() };
    (0..n)
        .map(|k| {
            let off = k * per;
            let chunk = per.min(l4.len() - off);
            let mut f = eth(src_mac, dst_mac, EtherType::Ipv4);
            let mut p = vec![0u8; 20 + chunk];
            let _ = write_packet(&mut p, &hdr, &[l4], off, chunk, off + chunk < l4.len());
            f.extend(p);
            f
        })
        .collect()
}

/// What a frame is, for assertions on a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// ARP request or reply.
    Arp {
        /// Request or reply.
        op: ArpOperation,
        /// Sender protocol address.
        sender: Ipv4Addr,
        /// Target protocol address.
        target: Ipv4Addr,
    },
    /// A complete UDP datagram.
    Udp {
        /// Source.
        src: SocketAddrV4,
        /// Destination.
        dst: SocketAddrV4,
        /// Payload length.
        len: usize,
    },
    /// An ICMP message.
    Icmp {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Type.
        msg: Icmpv4Message,
        /// Code.
        code: u8,
    },
    /// An IPv4 fragment.
    Fragment {
        /// Identification.
        ident: u16,
        /// Offset in bytes.
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
    /// Anything else.
    Other,
}

/// Summarizes `frame` (see [`Kind`]).
pub fn classify(frame: &[u8]) -> Kind {
    let Ok(e) = EthernetFrame::new_checked(frame) else { return Kind::Other };
    match e.inner_ethertype() {
        EtherType::Arp => {
            match ArpPacket::new_checked(e.payload()).and_then(|p| ArpRepr::parse(&p)) {
                Ok(r) => Kind::Arp {
                    op: r.operation,
                    sender: r.sender_protocol_addr,
                    target: r.target_protocol_addr,
                },
                Err(_) => Kind::Other,
            }
        }
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(e.payload()) else { return Kind::Other };
            if ip.is_fragment() {
                return Kind::Fragment {
                    ident: ip.ident(),
                    offset: ip.frag_offset(),
                    more: ip.more_frags(),
                };
            }
            match ip.protocol() {
                IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
                    Ok(u) => Kind::Udp {
                        src: SocketAddrV4::new(ip.src_addr(), u.src_port()),
                        dst: SocketAddrV4::new(ip.dst_addr(), u.dst_port()),
                        len: u.payload().len(),
                    },
                    Err(_) => Kind::Other,
                },
                IpProtocol::Icmp => match Icmpv4Packet::new_checked(ip.payload()) {
                    Ok(p) => Kind::Icmp {
                        src: ip.src_addr(),
                        dst: ip.dst_addr(),
                        msg: p.msg_type(),
                        code: p.msg_code(),
                    },
                    Err(_) => Kind::Other,
                },
                _ => Kind::Other,
            }
        }
        _ => Kind::Other,
    }
}
