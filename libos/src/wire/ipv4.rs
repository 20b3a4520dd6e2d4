//! # IPv4 packets
//!
//! What it is: a zero-copy view ([`Ipv4Packet`]) over an IPv4 datagram, the [`IpProtocol`]
//! numbers the stack knows, and [`Ipv4Repr`] for building headers.
//!
//! What it owns: the IPv4 header, including the header checksum (verify, fill, and the RFC 1624
//! incremental update on a TTL rewrite) and the bounds of the payload, which ends at the total
//! length, not at the end of the buffer (a minimum-size Ethernet frame carries padding after
//! a short datagram).
//!
//! What it never does: interpret options (they are skipped: [`Ipv4Packet::options`] exposes
//! the raw bytes), reassemble fragments (a fragment is visible through the view, but
//! [`Ipv4Repr::parse`] refuses it; the stack reassembles in [`crate::ipv4::frag`]), verify
//! checksums implicitly (the caller does, unless the device reported them good), or allocate.
//!
//! Invariants:
//! - after [`Ipv4Packet::new_checked`] succeeds: version 4, `20 <= header_len <= total_len <=
//!   buffer length`, and no accessor panics, whatever the bytes. Regions derived from length
//!   fields (options, payload, the checksummed header) are clamped to the buffer, so even a
//!   setter that writes an inconsistent length cannot make a later accessor panic.
//! - addresses are `std::net::Ipv4Addr` everywhere (accessors, setters, [`Ipv4Repr`]).
//! - a well-formed header sums to `0xffff` ([`super::checksum`] vocabulary).
//!
//! References: RFC 791 (IPv4), RFC 1071 and RFC 1624 (checksum and its incremental update),
//! RFC 2474 and RFC 3168 (DSCP and ECN in the former TOS byte), RFC 6864 (the identification
//! field of atomic datagrams), RFC 1122 §3.2.1.

use core::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result};

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;

/// Largest IPv4 header (IHL 15).
pub const IPV4_MAX_HEADER_LEN: usize = 60;

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

mod flg {
    pub const DF: u16 = 0x4000;
    pub const MF: u16 = 0x2000;
    pub const OFFSET: u16 = 0x1fff;
}

/// The protocol field (IANA "Assigned Internet Protocol Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP, 1 (RFC 792).
    Icmp,
    /// TCP, 6 (RFC 9293).
    Tcp,
    /// UDP, 17 (RFC 768).
    Udp,
    /// Any other protocol number.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> IpProtocol {
        match v {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(v) => v,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Unknown(v) => write!(f, "protocol {v}"),
        }
    }
}

/// Folded sum of the IPv4 pseudo-header (RFC 9293 §3.1, RFC 768) for TCP and UDP checksums,
/// with addresses as [`Ipv4Addr`].
pub(super) fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u16 {
    checksum::pseudo_header_v4(src.octets(), dst.octets(), protocol, len)
}

/// A read/write view of an IPv4 datagram (see the module documentation).
#[derive(Debug, Clone)]
pub struct Ipv4Packet<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> Ipv4Packet<B> {
    /// Wraps `buffer` without checking it; fixed-field accessors panic on a buffer shorter
    /// than 20 bytes. Use for buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> Ipv4Packet<B> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<Ipv4Packet<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps a header that may have been cut short after its first bytes of payload, as
    /// quoted in an ICMP error (RFC 792: the header plus 64 bits of the original datagram).
    /// Checks everything [`check_len`](Self::check_len) does except that the total length
    /// fits in the buffer; [`payload`](Self::payload) then returns what the buffer holds.
    pub fn new_checked_header(buffer: B) -> Result<Ipv4Packet<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    /// Checks the header against the buffer: [`Error::Truncated`] if the buffer is shorter than
    /// 20 bytes, the header length or the total length; [`Error::Malformed`] for a version
    /// other than 4, an IHL below 5 or a total length below the header length. A buffer longer
    /// than the total length (link-layer padding) is fine.
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < IPV4_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        if usize::from(self.total_len()) < self.header_len() {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// The version field (4 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (RFC 2474), 0..=63.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification codepoint (RFC 3168), 0..=3.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length of the datagram in bytes, header included.
    pub fn total_len(&self) -> u16 {
        self.be16(field::LENGTH.start)
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        self.be16(field::IDENT.start)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.be16(field::FLG_OFF.start) & flg::DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.be16(field::FLG_OFF.start) & flg::MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (self.be16(field::FLG_OFF.start) & flg::OFFSET) << 3
    }

    /// Whether this datagram is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr(field::SRC_ADDR.start)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr(field::DST_ADDR.start)
    }

    /// Whether the header (options included) sums to `0xffff`.
    pub fn verify_checksum(&self) -> bool {
        let data = self.buffer.as_ref();
        checksum::sum(&data[..self.header_len().min(data.len())]) == 0xffff
    }

    /// The payload's range in the buffer: from the header length to the total length, both
    /// clamped to the buffer.
    fn payload_range(&self) -> core::ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().min(len);
        let end = usize::from(self.total_len()).clamp(start, len);
        start..end
    }

    fn be16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The options: the header bytes after the first 20 (empty for IHL 5), with the buffer's
    /// lifetime.
    pub fn options(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        let end = self.header_len().clamp(IPV4_HEADER_LEN.min(data.len()), data.len());
        &data[IPV4_HEADER_LEN.min(end)..end]
    }

    /// The payload, from the end of the header to the total length (link-layer padding
    /// excluded), with the buffer's lifetime.
    pub fn payload(&self) -> &'a [u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }
}

/// Setters write their field only; the header checksum is then stale until
/// [`fill_checksum`](Self::fill_checksum), except for [`set_ttl`](Self::set_ttl), the
/// forwarding fast path, which updates it incrementally.
impl<B: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<B> {
    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes; it is stored as IHL = `len / 4` (4 bits).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP (the low 6 bits of `dscp`).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Sets the ECN codepoint (the low 2 bits of `ecn`).
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        self.set_be16(field::LENGTH.start, len);
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, ident: u16) {
        self.set_be16(field::IDENT.start, ident);
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(flg::DF, value);
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(flg::MF, value);
    }

    /// Sets the fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.be16(field::FLG_OFF.start);
        self.set_be16(field::FLG_OFF.start, (v & !flg::OFFSET) | (offset >> 3));
    }

    /// Sets the TTL and updates the header checksum incrementally (RFC 1624 eqn. 3): a
    /// correct checksum stays correct without summing the header again.
    pub fn set_ttl(&mut self, ttl: u8) {
        let data = self.buffer.as_mut();
        let old = u16::from_be_bytes([data[field::TTL], data[field::PROTOCOL]]);
        let new = u16::from_be_bytes([ttl, data[field::PROTOCOL]]);
        data[field::TTL] = ttl;
        let check = checksum::update16(self.checksum(), old, new);
        self.set_checksum(check);
    }

    /// Sets the protocol field.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Stores `checksum` in the header checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_be16(field::CHECKSUM.start, checksum);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum (options included) and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let check = checksum::checksum(&data[..self.header_len().min(data.len())]);
        self.set_checksum(check);
    }

    /// The options, writable (see [`options`](Ipv4Packet::options)).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let len = self.buffer.as_ref().len();
        let end = self.header_len().clamp(IPV4_HEADER_LEN.min(len), len);
        &mut self.buffer.as_mut()[IPV4_HEADER_LEN.min(end)..end]
    }

    /// The payload, writable (see [`payload`](Ipv4Packet::payload)).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    fn set_flag(&mut self, bit: u16, value: bool) {
        let v = self.be16(field::FLG_OFF.start);
        self.set_be16(field::FLG_OFF.start, if value { v | bit } else { v & !bit });
    }

    fn set_be16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed IPv4 header without options, of an unfragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification field (RFC 6864: arbitrary for an atomic datagram).
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// ECN codepoint, 0..=3.
    pub ecn: u8,
}

impl Ipv4Repr {
    /// Reads the header of a packet (checking its length again, so an unchecked view is fine).
    /// Options are skipped. Does not verify the checksum: call
    /// [`Ipv4Packet::verify_checksum`] first unless the device did. [`Error::Malformed`] for a
    /// fragment, which this representation cannot describe (count those with
    /// [`Ipv4Packet::is_fragment`] before parsing).
    pub fn parse<B: AsRef<[u8]>>(packet: &Ipv4Packet<B>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if packet.is_fragment() {
            return Err(Error::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 20.
    pub const fn header_len(&self) -> usize {
        IPV4_HEADER_LEN
    }

    /// Header plus payload: the total length.
    pub const fn buffer_len(&self) -> usize {
        IPV4_HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with its checksum into the front of `buf` and returns 20 (where
    /// the payload starts). `buf` must have room for the payload as well, so that the result
    /// passes [`Ipv4Packet::new_checked`]: [`Error::Truncated`] otherwise.
    /// [`Error::Malformed`] if the total length exceeds 65535 or DSCP/ECN are out of range.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = u16::try_from(self.buffer_len()).map_err(|_| Error::Malformed)?;
        if self.dscp > 63 || self.ecn > 3 {
            return Err(Error::Malformed);
        }
        if buf.len() < self.buffer_len() {
            return Err(Error::Truncated);
        }
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER_LEN]);
        packet.set_version(4);
        packet.set_header_len(IPV4_HEADER_LEN);
        packet.buffer[field::DSCP_ECN] = (self.dscp << 2) | self.ecn;
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_be16(field::FLG_OFF.start, if self.dont_frag { flg::DF } else { 0 });
        packet.buffer[field::TTL] = self.ttl;
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(IPV4_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 + TCP SYN with options, DF, TTL 64, 192.168.1.10 → 192.168.1.1
    /// (scapy: `IP(id=0x1c46, flags="DF")/TCP(flags="S", options=[…])`).
    const SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x9b, 0x1a, 0xc0, 0xa8, 0x01,
        0x0a, 0xc0, 0xa8, 0x01, 0x01, 0xd4, 0x31, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xaa, 0x43, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// IPv4 with a Router Alert option (IHL 6), TTL 1, to 224.0.0.22, carrying UDP "x"
    /// (`IP(ttl=1, options=[IPOption_Router_Alert()])/UDP()/"x"`).
    const ROUTER_ALERT: [u8; 33] = [
        0x46, 0x00, 0x00, 0x21, 0x00, 0x09, 0x00, 0x00, 0x01, 0x11, 0x3a, 0xa8, 0x0a, 0x00, 0x00,
        0x01, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x09,
        0x9d, 0xc1, 0x78,
    ];

    /// A 30-byte datagram (UDP "hi", zero UDP checksum) followed by the 16 bytes of Ethernet
    /// padding that bring its frame to 60 bytes.
    const PADDED: [u8; 46] = [
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x0a, 0x00, 0x00, 0x40, 0x11, 0x66, 0xc3, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x07, 0x00, 0x07, 0x00, 0x0a, 0x00, 0x00, 0x68, 0x69,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00,
    ];

    #[test]
    fn syn_fixture() {
        let p = Ipv4Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x9b1a);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &SYN[20..]);

        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 1, 10),
                dst_addr: Ipv4Addr::new(192, 168, 1, 1),
                protocol: IpProtocol::Tcp,
                payload_len: 40,
                ttl: 64,
                ident: 0x1c46,
                dont_frag: true,
                dscp: 0,
                ecn: 0,
            }
        );
        let mut out = [0u8; 60];
        assert_eq!(repr.emit(&mut out), Ok(20));
        assert_eq!(out[..20], SYN[..20]);
    }

    #[test]
    fn options_are_skipped() {
        let p = Ipv4Packet::new_checked(&ROUTER_ALERT[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(p.verify_checksum());
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.payload(), &ROUTER_ALERT[24..]);
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 9);
        assert_eq!(repr.dst_addr, Ipv4Addr::new(224, 0, 0, 22));
    }

    #[test]
    fn payload_stops_at_total_len() {
        let p = Ipv4Packet::new_checked(&PADDED[..]).unwrap();
        assert_eq!(p.total_len(), 30);
        assert_eq!(p.payload().len(), 10);
        assert_eq!(&p.payload()[8..], b"hi");
        assert!(p.verify_checksum());
    }

    #[test]
    fn rejects_bad_headers() {
        let check = |b: &[u8]| Ipv4Packet::new_checked(b).err();
        assert_eq!(check(&SYN[..19]), Some(Error::Truncated));
        let mut v = SYN;
        v[0] = 0x65;
        assert_eq!(check(&v), Some(Error::Malformed), "version 6");
        v[0] = 0x44;
        assert_eq!(check(&v), Some(Error::Malformed), "IHL 4");
        assert_eq!(check(&ROUTER_ALERT[..23]), Some(Error::Truncated), "options cut short");
        v = SYN;
        v[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(check(&v), Some(Error::Malformed), "total length < header");
        v[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(check(&v), Some(Error::Truncated), "total length > buffer");
        // ... but that is what an ICMP error quotes, and the header view accepts it.
        let q = Ipv4Packet::new_checked_header(&v[..28]).unwrap();
        assert_eq!(q.payload().len(), 8);
        assert_eq!(Ipv4Repr::parse(&q), Err(Error::Truncated));
    }

    #[test]
    fn fragments_are_visible_but_not_parsed() {
        let mut v = SYN;
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert!(p.is_fragment() && p.more_frags() && p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn set_ttl_updates_checksum_incrementally() {
        let mut v = SYN;
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        for ttl in (0..64).rev() {
            p.set_ttl(ttl);
            assert_eq!(p.ttl(), ttl);
            assert!(p.verify_checksum(), "ttl {ttl}");
        }
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn setters_write_the_fields() {
        let mut v = [0u8; 24];
        let mut p = Ipv4Packet::new_unchecked(&mut v[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp(46);
        p.set_ecn(2);
        p.set_total_len(24);
        p.set_ident(0xbeef);
        p.set_dont_frag(true);
        p.set_dont_frag(false);
        p.set_protocol(IpProtocol::Unknown(47));
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.fill_checksum();
        assert_eq!(p.payload_mut().len(), 0);
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!((p.dscp(), p.ecn(), p.ident()), (46, 2, 0xbeef));
        assert!(!p.dont_frag());
        assert_eq!(p.protocol(), IpProtocol::Unknown(47));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn pseudo_header_sum_matches_reference() {
        let (src, dst) = (Ipv4Addr::new(192, 168, 1, 10), Ipv4Addr::new(192, 168, 1, 1));
        let bytes = [192, 168, 1, 10, 192, 168, 1, 1, 0, 6, 0, 40];
        assert_eq!(pseudo_header_sum(src, dst, 6, 40), checksum::reference(&bytes));
        assert_eq!(pseudo_header_sum(src, dst, 6, 40), 0x838a);
    }

    #[test]
    fn emit_rejects_bad_reprs() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::LOCALHOST,
            dst_addr: Ipv4Addr::LOCALHOST,
            protocol: IpProtocol::Udp,
            payload_len: 8,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            dscp: 0,
            ecn: 0,
        };
        let mut buf = [0u8; 28];
        assert_eq!(repr.emit(&mut buf[..27]), Err(Error::Truncated));
        assert_eq!(Ipv4Repr { dscp: 64, ..repr }.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(Ipv4Repr { ecn: 4, ..repr }.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(Ipv4Repr { payload_len: 65516, ..repr }.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(repr.emit(&mut buf), Ok(20));
    }

    /// Bytes that often look like an IPv4 header, so that `new_checked` succeeds now and then.
    fn packet_bytes() -> impl Strategy<Value = Vec<u8>> {
        (proptest::collection::vec(any::<u8>(), 0..100), 0u8..16, any::<u16>(), any::<bool>())
            .prop_map(|(mut v, ihl, total, plausible)| {
                if plausible && v.len() >= 4 {
                    v[0] = 0x40 | ihl;
                    let total = total % (v.len() as u16 + 8);
                    v[2..4].copy_from_slice(&total.to_be_bytes());
                }
                v
            })
    }

    fn repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..64,
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            0u8..64,
            0u8..4,
        )
            .prop_map(|(s, d, proto, payload_len, ttl, ident, dont_frag, dscp, ecn)| {
                Ipv4Repr {
                    src_addr: Ipv4Addr::from(s),
                    dst_addr: Ipv4Addr::from(d),
                    protocol: IpProtocol::from(proto),
                    payload_len,
                    ttl,
                    ident,
                    dont_frag,
                    dscp,
                    ecn,
                }
            })
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(mut bytes in packet_bytes(), len in any::<u16>(),
                                     ihl in 0usize..64) {
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len(), p.ident());
                let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment(), p.ttl());
                let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
                let _ = p.verify_checksum();
                prop_assert_eq!(p.options().len(), p.header_len() - 20);
                prop_assert_eq!(p.payload().len(), usize::from(p.total_len()) - p.header_len());
                let _ = Ipv4Repr::parse(&p);
                // Setters that make the length fields lie cannot make accessors panic.
                let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
                p.set_total_len(len);
                p.set_header_len(ihl);
                p.fill_checksum();
                p.set_ttl(3);
                let _ = (p.options_mut().len(), p.payload_mut().len(), p.verify_checksum());
                let p = Ipv4Packet::new_unchecked(&bytes[..]);
                let _ = (p.options(), p.payload());
            }
            if let Ok(p) = Ipv4Packet::new_checked_header(&bytes[..]) {
                let _ = (p.options(), p.payload(), p.verify_checksum());
            }
        }

        #[test]
        fn repr_round_trips(repr in repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + 3];
            prop_assert_eq!(repr.emit(&mut buf), Ok(20));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.payload().len(), repr.payload_len);
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn set_ttl_matches_fill(repr in repr(), ttl in any::<u8>()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut buf).unwrap();
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            p.set_ttl(ttl);
            prop_assert!(p.verify_checksum());
        }
    }
}
