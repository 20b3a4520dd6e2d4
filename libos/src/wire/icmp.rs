//! # ICMPv4 messages
//!
//! What it is: a zero-copy view ([`Icmpv4Packet`]) over an ICMPv4 message and [`Icmpv4Repr`]
//! for the messages the stack sends and acts on: echo request and reply (ping), destination
//! unreachable (with the next-hop MTU of "fragmentation needed", which path MTU discovery
//! uses) and time exceeded (traceroute).
//!
//! What it owns: the 8-byte ICMP header (type, code, checksum, the four type-specific bytes)
//! and the checksum over the whole message. The message is the whole buffer: the caller passes
//! exactly the IPv4 payload ([`super::Ipv4Packet::payload`]).
//!
//! What it never does: decide whether to answer (rate limits, RFC 1122 §3.2.2's "never about
//! an ICMP error" rules belong to the stack), choose how much of an offending datagram to
//! quote, look inside the quoted datagram beyond checking that it starts with an IPv4 header
//! and 8 more bytes, or allocate.
//!
//! Invariants:
//! - after [`Icmpv4Packet::new_checked`] succeeds the buffer holds the 8-byte header and no
//!   accessor panics, whatever the bytes.
//! - an error message's `original` (in [`Icmpv4Repr`]) starts with an IPv4 header that passes
//!   [`super::Ipv4Packet::new_checked_header`], followed by at least 8 bytes (RFC 792: the
//!   header plus 64 bits of the original datagram, enough for the transport ports); both
//!   [`Icmpv4Repr::parse`] and [`Icmpv4Repr::emit`] enforce it.
//! - types other than echo request/reply, destination unreachable and time exceeded are
//!   visible through the view, but [`Icmpv4Repr::parse`] refuses them ([`Error::Malformed`]):
//!   the stack counts and drops them.
//!
//! References: RFC 792 (ICMP), RFC 1122 §3.2.2, RFC 1191 (next-hop MTU in "fragmentation
//! needed"), RFC 1812 §5.2.7 (unreachable codes), RFC 1071 (checksum).

use super::checksum;
use super::ipv4::Ipv4Packet;
use super::{Error, Result};

/// Length of the ICMP header (type, code, checksum and four type-specific bytes).
pub const ICMPV4_HEADER_LEN: usize = 8;

/// Transport bytes of the original datagram that an error message must quote after its IPv4
/// header (RFC 792).
const QUOTED_TRANSPORT_LEN: usize = 8;

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo: identifier. Unreachable, fragmentation needed: unused.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo: sequence number. Unreachable, fragmentation needed: next-hop MTU.
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    /// The four type-specific bytes.
    pub const REST: Range<usize> = 4..8;
}

/// The ICMPv4 type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    /// Echo reply, type 0.
    EchoReply,
    /// Destination unreachable, type 3.
    DstUnreachable,
    /// Echo request, type 8.
    EchoRequest,
    /// Time exceeded, type 11.
    TimeExceeded,
    /// Parameter problem, type 12.
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(v: u8) -> Icmpv4Message {
        match v {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            12 => Icmpv4Message::ParamProblem,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(m: Icmpv4Message) -> u8 {
        match m {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::ParamProblem => 12,
            Icmpv4Message::Unknown(v) => v,
        }
    }
}

/// Why a destination was unreachable (the code of a type 3 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4DstUnreachable {
    /// Code 0: net unreachable.
    NetUnreachable,
    /// Code 1: host unreachable.
    HostUnreachable,
    /// Code 2: protocol unreachable.
    ProtoUnreachable,
    /// Code 3: port unreachable.
    PortUnreachable,
    /// Code 4: fragmentation needed and DF set, with the next-hop MTU (RFC 1191; 0 from
    /// routers that predate it).
    FragNeeded {
        /// MTU of the next-hop link.
        next_hop_mtu: u16,
    },
    /// Any other code (5 and up: source route failed, administratively prohibited, …).
    Other(u8),
}

impl Icmpv4DstUnreachable {
    fn from_code(code: u8, next_hop_mtu: u16) -> Icmpv4DstUnreachable {
        match code {
            0 => Icmpv4DstUnreachable::NetUnreachable,
            1 => Icmpv4DstUnreachable::HostUnreachable,
            2 => Icmpv4DstUnreachable::ProtoUnreachable,
            3 => Icmpv4DstUnreachable::PortUnreachable,
            4 => Icmpv4DstUnreachable::FragNeeded { next_hop_mtu },
            other => Icmpv4DstUnreachable::Other(other),
        }
    }

    /// The code field.
    pub const fn code(&self) -> u8 {
        match self {
            Icmpv4DstUnreachable::NetUnreachable => 0,
            Icmpv4DstUnreachable::HostUnreachable => 1,
            Icmpv4DstUnreachable::ProtoUnreachable => 2,
            Icmpv4DstUnreachable::PortUnreachable => 3,
            Icmpv4DstUnreachable::FragNeeded { .. } => 4,
            Icmpv4DstUnreachable::Other(code) => *code,
        }
    }
}

/// What expired (the code of a type 11 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4TimeExceeded {
    /// Code 0: TTL exceeded in transit.
    TtlExpired,
    /// Code 1: fragment reassembly time exceeded.
    FragReassembly,
}

impl Icmpv4TimeExceeded {
    /// The code field.
    pub const fn code(&self) -> u8 {
        match self {
            Icmpv4TimeExceeded::TtlExpired => 0,
            Icmpv4TimeExceeded::FragReassembly => 1,
        }
    }
}

/// A read/write view of an ICMPv4 message (see the module documentation).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> Icmpv4Packet<B> {
    /// Wraps `buffer` without checking it; accessors panic on a buffer shorter than 8 bytes.
    /// Use for buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> Icmpv4Packet<B> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<Icmpv4Packet<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// [`Error::Truncated`] if the buffer is shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < ICMPV4_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM.start)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo messages).
    pub fn echo_ident(&self) -> u16 {
        self.be16(field::ECHO_IDENT.start)
    }

    /// Echo sequence number (bytes 6..8; meaningful for echo messages).
    pub fn echo_seq_no(&self) -> u16 {
        self.be16(field::ECHO_SEQNO.start)
    }

    /// Next-hop MTU (bytes 6..8; meaningful for "fragmentation needed").
    pub fn next_hop_mtu(&self) -> u16 {
        self.be16(field::NEXT_HOP_MTU.start)
    }

    /// Whether the whole message sums to `0xffff`.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }

    fn be16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Everything after the 8-byte header (echo data, or the quoted original datagram), with
    /// the buffer's lifetime.
    pub fn data(&self) -> &'a [u8] {
        self.buffer.as_ref().get(ICMPV4_HEADER_LEN..).unwrap_or(&[])
    }
}

/// Setters write their field only; the checksum is then stale until
/// [`fill_checksum`](Self::fill_checksum).
impl<B: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<B> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, msg: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = msg.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Stores `checksum` in the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_be16(field::CHECKSUM.start, checksum);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, ident: u16) {
        self.set_be16(field::ECHO_IDENT.start, ident);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        self.set_be16(field::ECHO_SEQNO.start, seq_no);
    }

    /// Sets the next-hop MTU and zeroes the unused bytes before it.
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        self.set_be16(field::ECHO_IDENT.start, 0);
        self.set_be16(field::NEXT_HOP_MTU.start, mtu);
    }

    /// Computes the checksum over the whole message and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(ICMPV4_HEADER_LEN..).unwrap_or(&mut [])
    }

    fn set_be16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed ICMPv4 message of a type the stack handles, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, echoed back in the reply.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier, copied from the request.
        ident: u16,
        /// Sequence number, copied from the request.
        seq_no: u16,
        /// Data, copied from the request.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// The code, with the next-hop MTU for "fragmentation needed".
        reason: Icmpv4DstUnreachable,
        /// The original datagram's IPv4 header and at least 8 bytes of what followed it.
        original: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// The code.
        reason: Icmpv4TimeExceeded,
        /// The original datagram's IPv4 header and at least 8 bytes of what followed it.
        original: &'a [u8],
    },
    /// Parameter problem, code 0 (RFC 792): the octet of the original header where the
    /// problem was found.
    ParamProblem {
        /// Offset of the offending octet from the start of the original IPv4 header.
        pointer: u8,
        /// The original datagram's IPv4 header and at least 8 bytes of what followed it.
        original: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message (checking its length again, so an unchecked view is fine). Does not
    /// verify the checksum: call [`Icmpv4Packet::verify_checksum`] first.
    ///
    /// The code of an echo message is ignored (RFC 792 says 0; Linux answers any). Errors:
    /// [`Error::Truncated`] if an error message quotes less than an IPv4 header and 8 bytes;
    /// [`Error::Malformed`] for another type, a time-exceeded code above 1, a parameter-problem
    /// code other than 0, or a quoted header that is not IPv4.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        let data = packet.data();
        match packet.msg_type() {
            Icmpv4Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Message::DstUnreachable => {
                check_original(data)?;
                let reason =
                    Icmpv4DstUnreachable::from_code(packet.msg_code(), packet.next_hop_mtu());
                Ok(Icmpv4Repr::DstUnreachable { reason, original: data })
            }
            Icmpv4Message::TimeExceeded => {
                check_original(data)?;
                let reason = match packet.msg_code() {
                    0 => Icmpv4TimeExceeded::TtlExpired,
                    1 => Icmpv4TimeExceeded::FragReassembly,
                    _ => return Err(Error::Malformed),
                };
                Ok(Icmpv4Repr::TimeExceeded { reason, original: data })
            }
            Icmpv4Message::ParamProblem => {
                check_original(data)?;
                if packet.msg_code() != 0 {
                    return Err(Error::Malformed);
                }
                let pointer = packet.buffer.as_ref()[field::REST][0];
                Ok(Icmpv4Repr::ParamProblem { pointer, original: data })
            }
            Icmpv4Message::Unknown(_) => Err(Error::Malformed),
        }
    }

    /// Bytes [`emit`](Self::emit) writes: the 8-byte header plus the data or quoted datagram.
    pub fn buffer_len(&self) -> usize {
        ICMPV4_HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { original, .. }
                | Icmpv4Repr::TimeExceeded { original, .. }
                | Icmpv4Repr::ParamProblem { original, .. } => original.len(),
            }
    }

    /// Writes the whole message (header, data, checksum) into the front of `buf` and returns
    /// its length, [`buffer_len`](Self::buffer_len). [`Error::Truncated`] if it does not fit,
    /// or if an error message's `original` is shorter than an IPv4 header and 8 bytes;
    /// [`Error::Malformed`] if `original` does not start with an IPv4 header, or for
    /// [`Icmpv4DstUnreachable::Other`] with a code below 5 (which has a variant of its own).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let (msg, code, rest, body): (Icmpv4Message, u8, [u8; 4], &[u8]) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                (Icmpv4Message::EchoRequest, 0, echo_rest(ident, seq_no), data)
            }
            Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                (Icmpv4Message::EchoReply, 0, echo_rest(ident, seq_no), data)
            }
            Icmpv4Repr::DstUnreachable { reason, original } => {
                check_original(original)?;
                let rest = match reason {
                    Icmpv4DstUnreachable::FragNeeded { next_hop_mtu } => {
                        let m = next_hop_mtu.to_be_bytes();
                        [0, 0, m[0], m[1]]
                    }
                    Icmpv4DstUnreachable::Other(code) if code <= 4 => return Err(Error::Malformed),
                    _ => [0; 4],
                };
                (Icmpv4Message::DstUnreachable, reason.code(), rest, original)
            }
            Icmpv4Repr::TimeExceeded { reason, original } => {
                check_original(original)?;
                (Icmpv4Message::TimeExceeded, reason.code(), [0; 4], original)
            }
            Icmpv4Repr::ParamProblem { pointer, original } => {
                check_original(original)?;
                (Icmpv4Message::ParamProblem, 0, [pointer, 0, 0, 0], original)
            }
        };
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        out[field::REST].copy_from_slice(&rest);
        out[ICMPV4_HEADER_LEN..].copy_from_slice(body);
        let mut packet = Icmpv4Packet::new_unchecked(out);
        packet.set_msg_type(msg);
        packet.set_msg_code(code);
        packet.fill_checksum();
        Ok(len)
    }
}

fn echo_rest(ident: u16, seq_no: u16) -> [u8; 4] {
    let (i, s) = (ident.to_be_bytes(), seq_no.to_be_bytes());
    [i[0], i[1], s[0], s[1]]
}

/// Checks that a quoted datagram starts with an IPv4 header and 8 more bytes.
fn check_original(original: &[u8]) -> Result<()> {
    let header = Ipv4Packet::new_checked_header(original)?;
    if original.len() < header.header_len() + QUOTED_TRANSPORT_LEN {
        return Err(Error::Truncated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Repr};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// `ping -s 56`: echo request, ident 0x1234, seq 1, data 0x10..0x48 (scapy).
    const PING: [u8; 64] = [
        0x08, 0x00, 0x2c, 0xf6, 0x12, 0x34, 0x00, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34,
        0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42, 0x43,
        0x44, 0x45, 0x46, 0x47,
    ];

    /// Port unreachable quoting a UDP probe 10.0.0.2:5000 → 10.0.0.1:33434 (header + 8).
    const PORT_UNREACHABLE: [u8; 36] = [
        0x03, 0x03, 0x2e, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x26, 0x00, 0x0c, 0x00,
        0x00, 0x40, 0x11, 0x66, 0xb9, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01, 0x13, 0x88,
        0x82, 0x9a, 0x00, 0x12, 0x37, 0xe0,
    ];

    /// Fragmentation needed, next-hop MTU 1400, quoting a 1500-byte DF TCP segment
    /// 10.0.0.2:443 → 10.0.0.9:50000.
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x32, 0x77, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x05, 0xdc, 0x00, 0x0e, 0x40,
        0x00, 0x3f, 0x06, 0x22, 0x04, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x09, 0x01, 0xbb,
        0xc3, 0x50, 0x00, 0x00, 0x00, 0x01,
    ];

    /// TTL exceeded in transit, quoting the same UDP probe.
    const TTL_EXCEEDED: [u8; 36] = [
        0x0b, 0x00, 0x26, 0xeb, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x26, 0x00, 0x0c, 0x00,
        0x00, 0x40, 0x11, 0x66, 0xb9, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01, 0x13, 0x88,
        0x82, 0x9a, 0x00, 0x12, 0x37, 0xe0,
    ];

    #[test]
    fn echo_request_fixture_and_reply() {
        let p = Icmpv4Packet::new_checked(&PING[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x2cf6);
        assert!(p.verify_checksum());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert_eq!(p.data().len(), 56);
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(repr, Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: &PING[8..] });
        let mut out = [0u8; 64];
        assert_eq!(repr.emit(&mut out), Ok(64));
        assert_eq!(out, PING);

        // The reply differs in the type byte only: its checksum is 0x0800 higher.
        let reply = Icmpv4Repr::EchoReply { ident: 0x1234, seq_no: 1, data: &PING[8..] };
        assert_eq!(reply.emit(&mut out), Ok(64));
        let p = Icmpv4Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0x34f6);
        assert_eq!(Icmpv4Repr::parse(&p), Ok(reply));
    }

    #[test]
    fn port_unreachable_fixture() {
        let p = Icmpv4Packet::new_checked(&PORT_UNREACHABLE[..]).unwrap();
        assert!(p.verify_checksum());
        let repr = Icmpv4Repr::parse(&p).unwrap();
        let Icmpv4Repr::DstUnreachable { reason, original } = repr else { panic!("{repr:?}") };
        assert_eq!(reason, Icmpv4DstUnreachable::PortUnreachable);
        let quoted = Ipv4Packet::new_checked_header(original).unwrap();
        assert_eq!(quoted.protocol(), IpProtocol::Udp);
        assert_eq!(quoted.dst_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(quoted.payload()[2..4], 33434u16.to_be_bytes());
        let mut out = [0u8; 40];
        assert_eq!(repr.emit(&mut out), Ok(36));
        assert_eq!(out[..36], PORT_UNREACHABLE);
    }

    #[test]
    fn frag_needed_fixture() {
        let p = Icmpv4Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.next_hop_mtu(), 1400);
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::FragNeeded { next_hop_mtu: 1400 },
                original: &FRAG_NEEDED[8..],
            }
        );
        let mut out = [0u8; 36];
        assert_eq!(repr.emit(&mut out), Ok(36));
        assert_eq!(out, FRAG_NEEDED);
    }

    #[test]
    fn time_exceeded_fixture() {
        let p = Icmpv4Packet::new_checked(&TTL_EXCEEDED[..]).unwrap();
        assert!(p.verify_checksum());
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::TimeExceeded {
                reason: Icmpv4TimeExceeded::TtlExpired,
                original: &TTL_EXCEEDED[8..],
            }
        );
        let mut out = [0u8; 36];
        assert_eq!(repr.emit(&mut out), Ok(36));
        assert_eq!(out, TTL_EXCEEDED);
    }

    #[test]
    fn param_problem_round_trip() {
        // A parameter problem about the port-unreachable fixture's quote, pointer 22 (RFC 792:
        // type 12, code 0, the pointer in the first byte after the checksum).
        let original = &PORT_UNREACHABLE[8..];
        let repr = Icmpv4Repr::ParamProblem { pointer: 22, original };
        let mut out = [0u8; 64];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(n, 8 + original.len());
        assert_eq!(out[..8][..2], [12, 0]);
        assert_eq!(out[4..8], [22, 0, 0, 0]);
        let p = Icmpv4Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.msg_type(), Icmpv4Message::ParamProblem);
        assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
        assert_eq!(u8::from(Icmpv4Message::ParamProblem), 12);
    }

    #[test]
    fn rejects_what_it_cannot_represent() {
        assert_eq!(Icmpv4Packet::new_checked(&PING[..7]).err(), Some(Error::Truncated));
        fn parse(b: &[u8]) -> Result<Icmpv4Repr<'_>> {
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(b).unwrap())
        }
        // Header + 7 quoted transport bytes.
        assert_eq!(parse(&PORT_UNREACHABLE[..35]), Err(Error::Truncated));
        let mut v = TTL_EXCEEDED;
        v[1] = 2;
        assert_eq!(parse(&v), Err(Error::Malformed), "time exceeded code 2");
        v = PORT_UNREACHABLE;
        v[8] = 0x65;
        assert_eq!(parse(&v), Err(Error::Malformed), "quoted IPv6-ish header");
        v = PORT_UNREACHABLE;
        v[0] = 5;
        assert_eq!(parse(&v), Err(Error::Malformed), "redirect");
        v = PORT_UNREACHABLE;
        (v[0], v[1]) = (12, 1);
        assert_eq!(parse(&v), Err(Error::Malformed), "parameter problem code 1");
        v = PORT_UNREACHABLE;
        v[1] = 13;
        assert_eq!(
            parse(&v).map(|r| match r {
                Icmpv4Repr::DstUnreachable { reason, .. } => reason,
                _ => unreachable!(),
            }),
            Ok(Icmpv4DstUnreachable::Other(13))
        );

        let mut out = [0u8; 64];
        let bad = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::Other(3),
            original: &PORT_UNREACHABLE[8..],
        };
        assert_eq!(bad.emit(&mut out), Err(Error::Malformed));
        let short = Icmpv4Repr::TimeExceeded {
            reason: Icmpv4TimeExceeded::FragReassembly,
            original: &PORT_UNREACHABLE[8..30],
        };
        assert_eq!(short.emit(&mut out), Err(Error::Truncated));
        let echo = Icmpv4Repr::EchoRequest { ident: 1, seq_no: 2, data: &PING };
        assert_eq!(echo.emit(&mut out), Err(Error::Truncated));
    }

    #[test]
    fn setters_write_the_fields() {
        let mut v = FRAG_NEEDED;
        let mut p = Icmpv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_next_hop_mtu(1280);
        p.set_msg_code(4);
        p.set_msg_type(Icmpv4Message::DstUnreachable);
        p.data_mut()[0] = 0x45;
        p.fill_checksum();
        assert_eq!(p.next_hop_mtu(), 1280);
        assert!(p.verify_checksum());
        p.set_echo_ident(7);
        p.set_echo_seq_no(8);
        p.set_msg_type(Icmpv4Message::Unknown(42));
        p.set_checksum(0);
        assert_eq!((p.echo_ident(), p.echo_seq_no(), p.checksum()), (7, 8, 0));
        assert_eq!(p.msg_type(), Icmpv4Message::Unknown(42));
    }

    /// An IPv4 header (IHL 5 or with options) and 8..24 more bytes.
    fn original() -> impl Strategy<Value = Vec<u8>> {
        (any::<[u8; 4]>(), any::<u8>(), 0usize..3, proptest::collection::vec(any::<u8>(), 8..24))
            .prop_map(|(dst, proto, opt_words, tail)| {
                let repr = Ipv4Repr {
                    src_addr: Ipv4Addr::new(10, 0, 0, 2),
                    dst_addr: Ipv4Addr::from(dst),
                    protocol: IpProtocol::from(proto),
                    payload_len: 1000,
                    ttl: 1,
                    ident: 9,
                    dont_frag: true,
                    dscp: 0,
                    ecn: 0,
                };
                let mut v = vec![0u8; repr.buffer_len()];
                repr.emit(&mut v).unwrap();
                // Claim 0..2 words of options (zeros: EOL); the checksum goes stale, which the
                // quote check does not look at.
                let header_len = 20 + 4 * opt_words;
                Ipv4Packet::new_unchecked(&mut v[..]).set_header_len(header_len);
                v.truncate(header_len);
                v.extend_from_slice(&tail);
                v
            })
    }

    /// Variant (0..5), ident, seq_no, echo data, quoted datagram, code, next-hop MTU (its low
    /// byte is a parameter problem's pointer).
    type Parts = (u8, u16, u16, Vec<u8>, Vec<u8>, u8, u16);

    fn repr_parts() -> impl Strategy<Value = Parts> {
        (
            0u8..5,
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            original(),
            0u8..16,
            any::<u16>(),
        )
    }

    fn build<'a>((kind, ident, seq_no, data, original, code, mtu): &'a Parts) -> Icmpv4Repr<'a> {
        match kind {
            0 => Icmpv4Repr::EchoRequest { ident: *ident, seq_no: *seq_no, data },
            1 => Icmpv4Repr::EchoReply { ident: *ident, seq_no: *seq_no, data },
            2 => Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::from_code(*code, *mtu),
                original,
            },
            4 => Icmpv4Repr::ParamProblem { pointer: *mtu as u8, original },
            _ => Icmpv4Repr::TimeExceeded {
                reason: if code & 1 == 0 {
                    Icmpv4TimeExceeded::TtlExpired
                } else {
                    Icmpv4TimeExceeded::FragReassembly
                },
                original,
            },
        }
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..80),
            ty in prop_oneof![Just(0u8), Just(3), Just(8), Just(11), any::<u8>()],
            quote in any::<bool>(),
        ) {
            if let Some(b) = bytes.first_mut() {
                *b = ty;
            }
            if quote && bytes.len() > 8 {
                bytes[8] = 0x45;
            }
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident());
                let _ = (p.echo_seq_no(), p.next_hop_mtu(), p.verify_checksum());
                prop_assert_eq!(p.data().len() + 8, bytes.len());
                if let Ok(r) = Icmpv4Repr::parse(&p) {
                    let mut out = vec![0u8; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(bytes.len()));
                }
                let mut p = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                let _ = p.data_mut().len();
            }
        }

        #[test]
        fn repr_round_trips(parts in repr_parts()) {
            let repr = build(&parts);
            let mut buf = vec![0u8; repr.buffer_len() + 5];
            let n = repr.emit(&mut buf).unwrap();
            prop_assert_eq!(n, repr.buffer_len());
            let p = Icmpv4Packet::new_checked(&buf[..n]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), repr);
        }
    }
}
