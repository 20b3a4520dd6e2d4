//! # UDP datagrams
//!
//! What it is: a zero-copy view ([`UdpPacket`]) over a UDP datagram and [`UdpRepr`] for
//! building headers.
//!
//! What it owns: the 8-byte header, the payload bounds (the length field, not the buffer:
//! whatever follows is not UDP's), and the UDP checksum over the IPv4 pseudo-header with the
//! RFC 768 zero rules: a transmitted 0 means "no checksum" and verifies, and a computed 0 is
//! sent as `0xffff` (the other ones'-complement zero).
//!
//! What it never does: demultiplex to sockets, fragment, or allocate. With
//! [`TxChecksum::Partial`] the completer (device or software offload) owns the zero rule, as
//! Linux's `CSUM_MANGLED_0` does.
//!
//! Invariants: after [`UdpPacket::new_checked`] succeeds, `8 <= length <= buffer length`, and
//! no accessor panics, whatever the bytes; the payload and the checksummed region are clamped
//! to the buffer, so a setter writing a bad length cannot cause a panic later either.
//!
//! References: RFC 768 (UDP), RFC 1122 §4.1.3.4 (checksums on by default, a zero checksum
//! accepted), RFC 1071 (checksum).

use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result, TxChecksum};

/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// Offset of the checksum field from the start of the UDP header (`csum_offset` for
/// [`super::Csum::Partial`]).
pub const UDP_CHECKSUM_OFFSET: usize = 6;

/// The IP protocol number of UDP, for the pseudo-header.
const PROTOCOL: u8 = 17;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A read/write view of a UDP datagram (see the module documentation).
#[derive(Debug, Clone)]
pub struct UdpPacket<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> UdpPacket<B> {
    /// Wraps `buffer` without checking it; accessors panic on a buffer shorter than 8 bytes.
    /// Use for buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> UdpPacket<B> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<UdpPacket<B>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header against the buffer: [`Error::Truncated`] if the buffer is shorter than
    /// 8 bytes or the length field; [`Error::Malformed`] for a length field below 8. A buffer
    /// longer than the length field is fine.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < UDP_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if usize::from(self.len()) < UDP_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if usize::from(self.len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Source port (0: none).
    pub fn src_port(&self) -> u16 {
        self.be16(field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.be16(field::DST_PORT.start)
    }

    /// The length field: header plus payload, in bytes.
    pub fn len(&self) -> u16 {
        self.be16(field::LENGTH.start)
    }

    /// Whether the payload is empty (the length field is at most 8).
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= UDP_HEADER_LEN
    }

    /// Checksum as stored; 0 means the sender computed none.
    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM.start)
    }

    /// Whether the datagram (up to the length field) sums, with the IPv4 pseudo-header, to
    /// `0xffff`, or carries no checksum (0), which RFC 768 allows over IPv4.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = &self.buffer.as_ref()[self.datagram_range()];
        checksum::add(pseudo(src, dst, self.len()), checksum::sum(data)) == 0xffff
    }

    /// The datagram's range in the buffer: up to the length field, clamped to the buffer.
    fn datagram_range(&self) -> core::ops::Range<usize> {
        0..usize::from(self.len()).min(self.buffer.as_ref().len())
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let end = self.datagram_range().end;
        UDP_HEADER_LEN.min(end)..end
    }

    fn be16(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The payload, up to the length field, with the buffer's lifetime.
    pub fn payload(&self) -> &'a [u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }
}

/// Setters write their field only; the checksum is then stale until a `fill_*`.
impl<B: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<B> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_be16(field::SRC_PORT.start, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_be16(field::DST_PORT.start, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        self.set_be16(field::LENGTH.start, len);
    }

    /// Stores `checksum` in the checksum field (0 means none).
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_be16(field::CHECKSUM.start, checksum);
    }

    /// Computes the checksum over the pseudo-header and the datagram (up to the length field)
    /// and stores it; a computed 0 is stored as `0xffff`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = &self.buffer.as_ref()[self.datagram_range()];
        let c = !checksum::add(pseudo(src, dst, self.len()), checksum::sum(data));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Stores the folded pseudo-header sum (not complemented), for a device or software
    /// offload to complete ([`TxChecksum::Partial`]).
    pub fn fill_partial_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let s = pseudo(src, dst, self.len());
        self.set_checksum(s);
    }

    /// The payload, up to the length field, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    fn set_be16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed UDP header: the ports. The length is the datagram's, and the checksum is
/// computed on emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads the header of a datagram (checking its length again, so an unchecked view is
    /// fine). Does not verify the checksum: call [`UdpPacket::verify_checksum`] first unless
    /// the device did.
    pub fn parse<B: AsRef<[u8]>>(packet: &UdpPacket<B>) -> Result<UdpRepr> {
        packet.check_len()?;
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// Bytes of header [`emit`](Self::emit) writes: 8.
    pub const fn header_len(&self) -> usize {
        UDP_HEADER_LEN
    }

    /// Writes the header into the front of `datagram`, which is the whole datagram (its length
    /// goes into the length field): the payload must already be at `datagram[8..]` when
    /// `checksum` is [`TxChecksum::Full`]. Returns 8. [`Error::Truncated`] if `datagram` is
    /// shorter than 8 bytes; [`Error::Malformed`] if it is longer than 65535.
    pub fn emit(
        &self,
        datagram: &mut [u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum: TxChecksum,
    ) -> Result<usize> {
        if datagram.len() < UDP_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = u16::try_from(datagram.len()).map_err(|_| Error::Malformed)?;
        let mut packet = UdpPacket::new_unchecked(datagram);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        match checksum {
            TxChecksum::Full => packet.fill_checksum(src, dst),
            TxChecksum::Partial => packet.fill_partial_checksum(src, dst),
        }
        Ok(UDP_HEADER_LEN)
    }
}

/// Folded sum of the UDP pseudo-header.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: u16) -> u16 {
    super::ipv4::pseudo_header_sum(src, dst, PROTOCOL, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A DNS query for example.com from 10.0.0.1:40000 to 10.0.0.53:53 (scapy, the IPv4
    /// payload of a VLAN-tagged frame).
    const DNS: [u8; 37] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0xd3, 0xbd, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63,
        0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    /// Echo "hi" from 10.0.0.1:7 to 10.0.0.2:7 with a zero (absent) checksum, followed by four
    /// bytes that are not part of it.
    const NO_CHECKSUM: [u8; 14] =
        [0x00, 0x07, 0x00, 0x07, 0x00, 0x0a, 0x00, 0x00, 0x68, 0x69, 0xde, 0xad, 0xbe, 0xef];

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const NS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);

    #[test]
    fn dns_fixture() {
        let p = UdpPacket::new_checked(&DNS[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 53));
        assert_eq!(p.len(), 37);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0xd3bd);
        assert!(p.verify_checksum(A, NS));
        assert!(!p.verify_checksum(NS, A.to_bits().wrapping_add(1).into()));
        assert_eq!(p.payload(), &DNS[8..]);

        let repr = UdpRepr::parse(&p).unwrap();
        assert_eq!(repr, UdpRepr { src_port: 40000, dst_port: 53 });
        let mut out = DNS;
        out[..8].fill(0);
        assert_eq!(repr.emit(&mut out, A, NS, TxChecksum::Full), Ok(8));
        assert_eq!(out, DNS);
    }

    #[test]
    fn zero_checksum_means_none_and_payload_stops_at_length() {
        let p = UdpPacket::new_checked(&NO_CHECKSUM[..]).unwrap();
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum(A, Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(p.payload(), b"hi");
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let (src, dst) = (A, Ipv4Addr::new(10, 0, 0, 2));
        let mut d = [0u8; 10];
        UdpRepr { src_port: 1, dst_port: 2 }.emit(&mut d, src, dst, TxChecksum::Full).unwrap();
        // A payload word equal to the checksum without it makes the sum 0xffff, the checksum 0.
        let c = UdpPacket::new_unchecked(&d[..]).checksum();
        d[8..].copy_from_slice(&c.to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut d[..]).unwrap();
        p.fill_checksum(src, dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(src, dst));
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        let mut partial = DNS;
        let mut p = UdpPacket::new_checked(&mut partial[..]).unwrap();
        p.fill_partial_checksum(A, NS);
        let c = checksum::checksum(&partial);
        partial[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(partial, DNS);
    }

    #[test]
    fn rejects_bad_lengths() {
        let check = |b: &[u8]| UdpPacket::new_checked(b).err();
        assert_eq!(check(&DNS[..7]), Some(Error::Truncated));
        assert_eq!(check(&DNS[..36]), Some(Error::Truncated), "length 37 in 36 bytes");
        let mut v = DNS;
        v[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(check(&v), Some(Error::Malformed));
        let r = UdpRepr { src_port: 1, dst_port: 2 };
        assert_eq!(r.emit(&mut [0u8; 7], A, NS, TxChecksum::Full), Err(Error::Truncated));
        assert_eq!(r.emit(&mut vec![0u8; 65536], A, NS, TxChecksum::Full), Err(Error::Malformed));
    }

    fn datagram_bytes() -> impl Strategy<Value = Vec<u8>> {
        (proptest::collection::vec(any::<u8>(), 0..64), any::<u16>(), any::<bool>()).prop_map(
            |(mut v, len, plausible)| {
                if plausible && v.len() >= 6 {
                    let len = len % (v.len() as u16 + 4);
                    v[4..6].copy_from_slice(&len.to_be_bytes());
                }
                v
            },
        )
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(mut bytes in datagram_bytes(), len in any::<u16>(),
                                     a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            let (src, dst) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum(), p.is_empty());
                let _ = p.verify_checksum(src, dst);
                prop_assert_eq!(p.payload().len() + 8, usize::from(p.len()));
                prop_assert!(UdpRepr::parse(&p).is_ok());
                let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum(src, dst);
                prop_assert!(p.checksum() != 0);
                prop_assert!(p.verify_checksum(src, dst));
                // A lying length cannot make anything panic.
                p.set_len(len);
                p.fill_checksum(src, dst);
                let _ = (p.payload_mut().len(), p.verify_checksum(src, dst));
                let p = UdpPacket::new_unchecked(&bytes[..]);
                let _ = p.payload();
            }
        }

        #[test]
        fn repr_round_trips(src_port in any::<u16>(), dst_port in any::<u16>(),
                            payload in proptest::collection::vec(any::<u8>(), 0..64),
                            a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            let (src, dst) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let repr = UdpRepr { src_port, dst_port };
            let mut buf = vec![0u8; 8 + payload.len()];
            buf[8..].copy_from_slice(&payload);
            prop_assert_eq!(repr.emit(&mut buf, src, dst, TxChecksum::Full), Ok(8));
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.checksum() != 0);
            prop_assert!(p.verify_checksum(src, dst));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(UdpRepr::parse(&p).unwrap(), repr);
        }
    }
}
