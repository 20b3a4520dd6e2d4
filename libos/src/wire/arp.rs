//! # ARP for IPv4 over Ethernet
//!
//! What it is: a zero-copy view ([`ArpPacket`]) over an ARP packet and [`ArpRepr`] for building
//! one, for the only combination xdpos speaks: Ethernet hardware addresses (hardware type 1,
//! length 6) and IPv4 protocol addresses (protocol type 0x0800, length 4).
//!
//! What it owns: the 28-byte packet: operation, sender and target hardware and protocol
//! addresses.
//!
//! What it never does: keep a neighbour cache, decide whether to answer (that is
//! `iface::neighbor`'s job, which also handles gratuitous ARP and RFC 5227 probes, which are
//! ordinary requests here), speak RARP or other hardware or protocol types, or allocate.
//!
//! Invariants:
//! - after [`ArpPacket::new_checked`] succeeds the packet is Ethernet/IPv4 with the 6/4 address
//!   lengths and the buffer holds all 28 bytes, so every address sits at a fixed offset and no
//!   accessor panics, whatever the bytes. Other hardware or protocol types are
//!   [`Error::Malformed`]; trailing bytes (Ethernet padding to 60 bytes) are ignored.
//! - [`ArpRepr`] describes requests and replies only: [`ArpRepr::parse`] refuses other
//!   operations ([`Error::Malformed`]).
//!
//! References: RFC 826 (ARP), RFC 5227 (probes and announcements), RFC 5494 (operation
//! codes), IANA "Address Resolution Protocol (ARP) Parameters".

use std::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::{Error, Result};

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_PACKET_LEN: usize = 28;

/// Hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// Protocol type of IPv4 (its EtherType).
const PTYPE_IPV4: u16 = 0x0800;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// The fixed part that says how long the addresses are.
    pub const FIXED_END: usize = 8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has the target protocol address?
    Request,
    /// 2: the sender has it.
    Reply,
    /// Any other operation (RARP, InARP, …).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> ArpOperation {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(v) => v,
        }
    }
}

/// A read/write view of an Ethernet/IPv4 ARP packet (see the module documentation).
#[derive(Debug, Clone)]
pub struct ArpPacket<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> ArpPacket<B> {
    /// Wraps `buffer` without checking it; accessors panic on a buffer shorter than 28 bytes.
    /// Use for buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> ArpPacket<B> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<ArpPacket<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the packet: [`Error::Truncated`] if the buffer is shorter than 8 bytes or, for an
    /// Ethernet/IPv4 packet, 28; [`Error::Malformed`] for another hardware or protocol type or
    /// address length.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::FIXED_END {
            return Err(Error::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(Error::Malformed);
        }
        if data.len() < ARP_PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Hardware type (1, Ethernet, for a checked packet).
    pub fn hardware_type(&self) -> u16 {
        self.be16(field::HTYPE.start)
    }

    /// Protocol type (0x0800, IPv4, for a checked packet).
    pub fn protocol_type(&self) -> u16 {
        self.be16(field::PTYPE.start)
    }

    /// Hardware address length (6 for a checked packet).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4 for a checked packet).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.be16(field::OPER.start))
    }

    /// Sender hardware address.
    pub fn sender_hardware_addr(&self) -> EthernetAddress {
        self.mac(field::SHA.start)
    }

    /// Sender protocol address.
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        self.ip(field::SPA.start)
    }

    /// Target hardware address (zero in a request).
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        self.mac(field::THA.start)
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.ip(field::TPA.start)
    }

    fn be16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    fn mac(&self, at: usize) -> EthernetAddress {
        let d = self.buffer.as_ref();
        EthernetAddress([d[at], d[at + 1], d[at + 2], d[at + 3], d[at + 4], d[at + 5]])
    }

    fn ip(&self, at: usize) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3])
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<B> {
    /// Writes the Ethernet/IPv4 header fields: hardware type 1, protocol type 0x0800, address
    /// lengths 6 and 4.
    pub fn set_ethernet_ipv4(&mut self) {
        let d = self.buffer.as_mut();
        d[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        d[field::PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        d[field::HLEN] = 6;
        d[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(op).to_be_bytes());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// [`ArpOperation::Request`] or [`ArpOperation::Reply`].
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub sender_protocol_addr: Ipv4Addr,
    /// Target hardware address (zero in a request, RFC 5227 §2.1.1).
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a packet (checking it again, so an unchecked view is fine). [`Error::Malformed`]
    /// for an operation other than request or reply.
    pub fn parse<B: AsRef<[u8]>>(packet: &ArpPacket<B>) -> Result<ArpRepr> {
        packet.check_len()?;
        let operation = packet.operation();
        if let ArpOperation::Unknown(_) = operation {
            return Err(Error::Malformed);
        }
        Ok(ArpRepr {
            operation,
            sender_hardware_addr: packet.sender_hardware_addr(),
            sender_protocol_addr: packet.sender_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 28.
    pub const fn buffer_len(&self) -> usize {
        ARP_PACKET_LEN
    }

    /// Writes the packet into the front of `buf` and returns 28. [`Error::Truncated`] if `buf`
    /// is shorter; [`Error::Malformed`] for an operation other than request or reply.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let ArpOperation::Unknown(_) = self.operation {
            return Err(Error::Malformed);
        }
        let out = buf.get_mut(..ARP_PACKET_LEN).ok_or(Error::Truncated)?;
        let mut packet = ArpPacket::new_unchecked(out);
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(self.sender_hardware_addr);
        packet.set_sender_protocol_addr(self.sender_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
        Ok(ARP_PACKET_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Who has 10.0.0.2? Tell 10.0.0.1 (02:00:00:00:00:01), the Ethernet payload of a
    /// broadcast frame (scapy: `ARP(op=1, …)`).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    /// 10.0.0.2 is at 02:00:00:00:00:02, to 10.0.0.1.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a,
        0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
    ];

    const MAC1: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const MAC2: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const IP1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn request_fixture() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!((p.hardware_type(), p.protocol_type()), (1, 0x0800));
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOperation::Request);
        let repr = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOperation::Request,
                sender_hardware_addr: MAC1,
                sender_protocol_addr: IP1,
                target_hardware_addr: EthernetAddress::default(),
                target_protocol_addr: IP2,
            }
        );
        let mut out = [0u8; 28];
        assert_eq!(repr.emit(&mut out), Ok(28));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn reply_fixture_and_answering_in_place() {
        let p = ArpPacket::new_checked(&REPLY[..]).unwrap();
        let reply = ArpRepr::parse(&p).unwrap();
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!((reply.sender_hardware_addr, reply.sender_protocol_addr), (MAC2, IP2));
        assert_eq!((reply.target_hardware_addr, reply.target_protocol_addr), (MAC1, IP1));

        // Turning the request into this reply in its own buffer, padded as on the wire.
        let mut frame = [0u8; 46];
        frame[..28].copy_from_slice(&REQUEST);
        let mut p = ArpPacket::new_checked(&mut frame[..]).unwrap();
        p.set_operation(ArpOperation::Reply);
        p.set_target_hardware_addr(p.sender_hardware_addr());
        p.set_target_protocol_addr(p.sender_protocol_addr());
        p.set_sender_hardware_addr(MAC2);
        p.set_sender_protocol_addr(IP2);
        assert_eq!(frame[..28], REPLY);
    }

    #[test]
    fn rejects_other_types_and_short_buffers() {
        let check = |b: &[u8]| ArpPacket::new_checked(b).err();
        assert_eq!(check(&REQUEST[..7]), Some(Error::Truncated));
        assert_eq!(check(&REQUEST[..27]), Some(Error::Truncated));
        for (at, value) in [(1, 6), (2, 0x86), (3, 0xdd), (4, 8), (5, 16)] {
            let mut v = REQUEST;
            v[at] = value;
            assert_eq!(check(&v), Some(Error::Malformed), "byte {at} = {value}");
            assert_eq!(check(&v[..8]), Some(Error::Malformed), "checked before the length");
        }
        let mut v = REQUEST;
        v[7] = 3; // RARP request
        let p = ArpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(p.operation(), ArpOperation::Unknown(3));
        assert_eq!(ArpRepr::parse(&p), Err(Error::Malformed));
        let mut repr = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(repr.emit(&mut [0u8; 27]), Err(Error::Truncated));
        repr.operation = ArpOperation::Unknown(4);
        assert_eq!(repr.emit(&mut [0u8; 28]), Err(Error::Malformed));
    }

    fn repr() -> impl Strategy<Value = ArpRepr> {
        let op = prop_oneof![Just(ArpOperation::Request), Just(ArpOperation::Reply)];
        (op, any::<[u8; 6]>(), any::<[u8; 4]>(), any::<[u8; 6]>(), any::<[u8; 4]>()).prop_map(
            |(operation, sha, spa, tha, tpa)| ArpRepr {
                operation,
                sender_hardware_addr: EthernetAddress(sha),
                sender_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            },
        )
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..48),
                                     plausible in any::<bool>()) {
            if plausible && bytes.len() >= 8 {
                bytes[..6].copy_from_slice(&REQUEST[..6]);
            }
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
                let _ = (p.operation(), p.sender_hardware_addr(), p.sender_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trips(repr in repr(), padding in 0usize..20) {
            let mut buf = vec![0u8; 28 + padding];
            prop_assert_eq!(repr.emit(&mut buf), Ok(28));
            let p = ArpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&p).unwrap(), repr);
        }
    }
}
