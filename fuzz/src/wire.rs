//! Targets of the wire parsers in `libos::wire`: any bytes through `new_checked`, every
//! accessor and payload getter of a checked view (none may panic, libos's view contract), the
//! setters on a copy, and `Repr::parse` → `emit` → `parse` round trips (what is emitted parses
//! back to the same value).

use std::net::Ipv4Addr;

use libos::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr, NetHdr, TcpFlags, TcpOption, TcpOptionIter, TcpPacket,
    TcpRepr, TxChecksum, UdpPacket, UdpRepr, VNET_HDR_LEN,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Ethernet II with up to two VLAN tags.
pub fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else { return };
    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.vlan_tags(), f.inner_ethertype());
    let hl = f.header_len();
    assert_eq!(hl, 14 + 4 * f.vlan_count());
    assert_eq!(hl + f.payload().len(), data.len(), "the payload is what follows the header");
    let repr = EthernetRepr::parse(&f).expect("a checked frame parses");
    assert_eq!(repr.header_len(), hl);
    let mut buf = vec![0u8; hl];
    if let Ok(n) = repr.emit(&mut buf) {
        assert_eq!(n, hl);
        let back = EthernetFrame::new_checked(&buf[..]).expect("emitted header checks");
        assert_eq!(EthernetRepr::parse(&back), Ok(repr));
    }
    let mut copy = data.to_vec();
    let mut f = EthernetFrame::new_checked(&mut copy[..]).expect("same bytes");
    f.set_dst_addr(EthernetAddress::BROADCAST);
    f.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
    let _ = f.payload_mut().len();
}

/// ARP for IPv4 over Ethernet.
pub fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else { return };
    let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
    let _ = (p.operation(), p.sender_hardware_addr(), p.sender_protocol_addr());
    let _ = (p.target_hardware_addr(), p.target_protocol_addr());
    if let Ok(repr) = ArpRepr::parse(&p) {
        let mut buf = [0u8; 28];
        assert_eq!(repr.emit(&mut buf), Ok(28));
        let back = ArpPacket::new_checked(&buf[..]).expect("emitted packet checks");
        assert_eq!(ArpRepr::parse(&back), Ok(repr));
    }
}

/// IPv4: header, options, payload clamped to the total length, checksum, fragments.
pub fn ipv4(data: &[u8]) {
    if let Ok(h) = Ipv4Packet::new_checked_header(data) {
        let _ = (h.version(), h.header_len(), h.total_len(), h.protocol(), h.checksum());
    }
    let Ok(p) = Ipv4Packet::new_checked(data) else { return };
    let _ = (p.version(), p.dscp(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags());
    let _ = (p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol(), p.src_addr(), p.dst_addr());
    let _ = p.verify_checksum();
    let (hl, total) = (p.header_len(), usize::from(p.total_len()));
    assert!((20..=60).contains(&hl) && hl <= total && total <= data.len());
    assert_eq!(p.options().len(), hl - 20);
    assert_eq!(p.payload().len(), total - hl, "the payload stops at the total length");
    if let Ok(repr) = Ipv4Repr::parse(&p) {
        assert!(!p.is_fragment());
        let mut buf = vec![0u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut buf), Ok(20));
        let back = Ipv4Packet::new_checked(&buf[..]).expect("emitted header checks");
        assert!(back.verify_checksum(), "emit fills a valid header checksum");
        assert_eq!(Ipv4Repr::parse(&back), Ok(repr));
    }
    // Setters on a copy, then the accessors again: still no panic, even with nonsense lengths.
    let mut copy = data.to_vec();
    let mut m = Ipv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    m.set_total_len(u16::MAX);
    m.set_ttl(0);
    m.set_frag_offset(0xfff8);
    m.set_protocol(IpProtocol::Unknown(253));
    m.fill_checksum();
    let _ = (m.options_mut().len(), m.payload_mut().len());
    let m = Ipv4Packet::new_unchecked(&copy[..]);
    let _ = (m.options().len(), m.payload().len(), m.verify_checksum());
}

/// ICMPv4.
pub fn icmp(data: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(data) else { return };
    let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
    let _ = (p.next_hop_mtu(), p.verify_checksum(), p.data().len());
    if let Ok(repr) = Icmpv4Repr::parse(&p) {
        let mut buf = vec![0u8; repr.buffer_len()];
        match repr.emit(&mut buf) {
            Ok(n) => {
                assert_eq!(n, repr.buffer_len());
                let back = Icmpv4Packet::new_checked(&buf[..]).expect("emitted message checks");
                assert!(back.verify_checksum(), "emit fills a valid checksum");
                assert_eq!(Icmpv4Repr::parse(&back), Ok(repr));
            }
            // A code emit refuses to write (an `Other` code below 5 has a variant of its own).
            Err(libos::wire::Error::Malformed) => {}
            Err(e) => panic!("emit into a buffer of buffer_len bytes: {e:?}"),
        }
    }
}

/// UDP, with the checksum over a pseudo-header.
pub fn udp(data: &[u8]) {
    let Ok(p) = UdpPacket::new_checked(data) else { return };
    let _ = (p.src_port(), p.dst_port(), p.checksum(), p.is_empty());
    let _ = p.verify_checksum(A, B);
    let len = usize::from(p.len());
    assert!(len >= 8 && len <= data.len());
    assert_eq!(p.payload().len(), len - 8, "the payload stops at the length field");
    let repr = UdpRepr::parse(&p).expect("a checked datagram parses");
    let mut buf = data[..len].to_vec();
    assert_eq!(repr.emit(&mut buf, A, B, TxChecksum::Full), Ok(8));
    let back = UdpPacket::new_checked(&buf[..]).expect("emitted datagram checks");
    assert!(back.verify_checksum(A, B), "emit fills a valid checksum");
    assert_eq!(back.payload(), p.payload());
    assert_eq!(UdpRepr::parse(&back), Ok(repr));
}

/// TCP, its options iterator included.
pub fn tcp(data: &[u8]) {
    // The iterator over raw option bytes: ends (fused), each option re-emits to its bytes.
    let mut n = 0;
    let mut it = TcpOptionIter::new(data);
    for opt in it.by_ref() {
        n += 1;
        assert!(n <= data.len() + 1, "the iterator advances");
        if let Ok(opt) = opt {
            let mut buf = [0u8; 256];
            if let Ok(len) = opt.emit(&mut buf) {
                assert_eq!(len, opt.buffer_len());
                let again = TcpOptionIter::new(&buf[..len]).next();
                if !matches!(opt, TcpOption::EndOfList) {
                    assert_eq!(again, Some(Ok(opt)), "an option re-parses as itself");
                }
            }
        }
    }
    assert!(it.next().is_none(), "fused");

    let Ok(p) = TcpPacket::new_checked(data) else { return };
    let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
    let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.verify_checksum(A, B));
    let hl = p.header_len();
    assert!((20..=60).contains(&hl) && hl <= data.len());
    assert_eq!(p.options().len(), hl - 20);
    assert_eq!(p.payload().len(), data.len() - hl);
    assert_eq!(p.payload_len(), data.len() - hl);
    let _ = p.segment_len();
    for _ in p.option_iter() {}
    let Ok(repr) = TcpRepr::parse(&p) else { return };
    let hl2 = repr.header_len();
    if hl2 > 60 || data.len() - hl + hl2 > usize::from(u16::MAX) {
        return; // more options than fit (emit refuses them)
    }
    let mut buf = vec![0u8; hl2 + p.payload().len()];
    buf[hl2..].copy_from_slice(p.payload());
    assert_eq!(repr.emit(&mut buf, A, B, TxChecksum::Full), Ok(hl2));
    let back = TcpPacket::new_checked(&buf[..]).expect("emitted segment checks");
    assert!(back.verify_checksum(A, B), "emit fills a valid checksum");
    assert_eq!(TcpRepr::parse(&back), Ok(repr));
    let mut copy = data.to_vec();
    let mut m = TcpPacket::new_checked(&mut copy[..]).expect("same bytes");
    m.replace_flags(TcpFlags::RST);
    m.replace_seq_number(1);
    m.set_header_len(60);
    let _ = (m.options_mut().len(), m.payload_mut().len());
}

/// The virtio-net header.
pub fn vnet(data: &[u8]) {
    let Ok(h) = NetHdr::parse(data) else { return };
    let mut buf = [0u8; VNET_HDR_LEN];
    h.emit(&mut buf).expect("a parsed header emits");
    assert_eq!(NetHdr::parse(&buf), Ok(h), "round trip");
}
