//! # Ethernet II frames with 802.1Q / 802.1ad VLAN tags
//!
//! What it is: a zero-copy view ([`EthernetFrame`]) over an Ethernet II frame as it sits in a
//! receive or transmit buffer (no preamble, no FCS: the NIC strips and adds those), the
//! [`EthernetAddress`] and [`EtherType`] vocabulary types, and [`EthernetRepr`] for building
//! headers.
//!
//! What it owns: the 14-byte MAC header and up to two VLAN tags (a single 802.1Q C-tag, or an
//! 802.1ad S-tag followed by a C-tag, "QinQ"). Either TPID (0x8100 or 0x88a8) is accepted at
//! either position, as switches in the field emit both orders.
//!
//! What it never does: look at the payload, pad short frames to the 60-byte minimum (the
//! caller sizes its buffer), compute an FCS, or allocate.
//!
//! Invariants:
//! - after [`EthernetFrame::new_checked`] succeeds the buffer holds the MAC header and every
//!   VLAN tag its type fields announce, there are at most two tags, and so the inner
//!   [`EtherType`] is never a TPID; no accessor panics, whatever the bytes (even after a setter
//!   rewrote a type field: tag accessors read with bounds checks and the payload is clamped to
//!   the buffer).
//! - an [`EthernetRepr`] emits exactly the frame it was parsed from (up to the payload).
//!
//! References: IEEE 802.3 §3.2 (MAC frame), IEEE 802.1Q-2018 §9 (tag format, TPIDs 0x8100 and
//! 0x88a8), RFC 894 (IPv4 over Ethernet), RFC 7042 (EtherType and MAC address conventions).

use core::fmt;

use super::{Error, Result};

/// Length of the untagged Ethernet header: destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

/// The most VLAN tags a frame may carry here (802.1ad S-tag + 802.1Q C-tag).
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    /// The EtherType or, in a tagged frame, the first tag's TPID.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Within a tag (relative to its start, which is the TPID's offset): the TCI.
    pub const TAG_TCI: Range<usize> = 2..4;
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`; `None` if there are fewer.
    pub fn from_bytes(bytes: &[u8]) -> Option<EthernetAddress> {
        bytes.get(..6).and_then(|b| b.try_into().ok()).map(EthernetAddress)
    }

    /// The six octets, in wire order.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the I/G bit is set (group address); broadcast is a multicast address too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the U/L bit is set (locally administered, as veth and TAP addresses are).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// The EtherType (or TPID) field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4, 0x0800 (RFC 894).
    Ipv4,
    /// ARP, 0x0806 (RFC 826).
    Arp,
    /// 802.1Q customer VLAN tag (C-tag) TPID, 0x8100.
    Vlan,
    /// 802.1ad service VLAN tag (S-tag) TPID, 0x88a8.
    QinQ,
    /// IPv6, 0x86dd (RFC 2464).
    Ipv6,
    /// Anything else, including 802.3 length values (< 0x0600).
    Unknown(u16),
}

impl EtherType {
    /// Whether this value announces a VLAN tag.
    pub const fn is_vlan_tpid(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> EtherType {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::QinQ => f.write_str("802.1ad"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

/// One VLAN tag: its TPID and the fields of its TCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// [`EtherType::Vlan`] (C-tag) or [`EtherType::QinQ`] (S-tag).
    pub tpid: EtherType,
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4095 (0: priority tag only, 4095: reserved).
    pub vid: u16,
}

impl VlanTag {
    /// The tag with `tpid` and the fields of a raw TCI.
    pub const fn from_tci(tpid: EtherType, tci: u16) -> VlanTag {
        VlanTag { tpid, pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
    }

    /// The raw TCI. Out-of-range `pcp` and `vid` bits are masked off.
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    fn is_valid(self) -> bool {
        self.tpid.is_vlan_tpid() && self.pcp <= 7 && self.vid <= 0x0fff
    }
}

/// A read/write view of an Ethernet II frame (see the module documentation).
#[derive(Debug, Clone)]
pub struct EthernetFrame<B> {
    buffer: B,
}

impl<B: AsRef<[u8]>> EthernetFrame<B> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer. Use for
    /// buffers the caller has sized itself (emit paths).
    pub const fn new_unchecked(buffer: B) -> EthernetFrame<B> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: B) -> Result<EthernetFrame<B>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the MAC header and every VLAN tag the type fields announce:
    /// [`Error::Truncated`] if not, [`Error::Malformed`] for a third tag.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < ETHERNET_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let tags = scan_tags(data);
        if tags > MAX_VLAN_TAGS {
            return Err(Error::Malformed);
        }
        if data.len() < ETHERNET_HEADER_LEN + tags * VLAN_TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> B {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        let d = self.buffer.as_ref();
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        let d = &self.buffer.as_ref()[field::SRC];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// The outer type field at offset 12: the EtherType of an untagged frame, or the first
    /// tag's TPID. See [`inner_ethertype`](Self::inner_ethertype) for the payload's type.
    pub fn ethertype(&self) -> EtherType {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([d[0], d[1]]))
    }

    /// How many VLAN tags the frame carries (0, 1 or 2 for a checked frame; capped at 2).
    pub fn vlan_count(&self) -> usize {
        scan_tags(self.buffer.as_ref()).min(MAX_VLAN_TAGS)
    }

    /// The VLAN tags, outermost first; `[None, None]` for an untagged frame.
    pub fn vlan_tags(&self) -> [Option<VlanTag>; MAX_VLAN_TAGS] {
        let data = self.buffer.as_ref();
        let mut tags = [None; MAX_VLAN_TAGS];
        for (i, slot) in tags.iter_mut().enumerate().take(self.vlan_count()) {
            let at = field::ETHERTYPE.start + i * VLAN_TAG_LEN;
            if let (Some(tpid), Some(tci)) = (be16(data, at), be16(data, at + field::TAG_TCI.start))
            {
                *slot = Some(VlanTag::from_tci(EtherType::from(tpid), tci));
            }
        }
        tags
    }

    /// The EtherType of the payload, after any VLAN tags.
    pub fn inner_ethertype(&self) -> EtherType {
        let data = self.buffer.as_ref();
        let at = field::ETHERTYPE.start + self.vlan_count() * VLAN_TAG_LEN;
        EtherType::from(be16(data, at).unwrap_or(0))
    }

    /// Header length: 14 plus 4 per VLAN tag.
    pub fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN + self.vlan_count() * VLAN_TAG_LEN
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// The payload after the header and any VLAN tags, with the buffer's lifetime. It runs to
    /// the end of the buffer (Ethernet has no length field; padding is the inner layer's
    /// business).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..).unwrap_or(&[])
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<B> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the outer type field at offset 12 (see [`ethertype`](Self::ethertype)).
    pub fn set_ethertype(&mut self, ty: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ty).to_be_bytes());
    }

    /// The payload after the header and any VLAN tags, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        self.buffer.as_mut().get_mut(at..).unwrap_or(&mut [])
    }
}

/// A parsed Ethernet header: addresses, VLAN tags and the payload's EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// VLAN tags, outermost first. `[Some(_), None]` is a single tag; `[None, Some(_)]` is
    /// invalid.
    pub vlan: [Option<VlanTag>; MAX_VLAN_TAGS],
    /// The payload's EtherType (after the tags); never a TPID.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a frame (checking its length again, so an unchecked view is fine).
    pub fn parse<B: AsRef<[u8]>>(frame: &EthernetFrame<B>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan_tags(),
            ethertype: frame.inner_ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 14 plus 4 per tag.
    pub fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN + self.vlan.iter().flatten().count() * VLAN_TAG_LEN
    }

    /// Writes the header into the front of `buf` and returns its length (where the payload
    /// starts). [`Error::Truncated`] if `buf` is shorter than the header;
    /// [`Error::Malformed`] for an inner tag without an outer one, a tag whose TPID is not a
    /// VLAN TPID or whose fields are out of range, or a TPID as `ethertype`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if matches!(self.vlan, [None, Some(_)])
            || self.vlan.iter().flatten().any(|t| !t.is_valid())
            || self.ethertype.is_vlan_tpid()
        {
            return Err(Error::Malformed);
        }
        let len = self.header_len();
        let hdr = buf.get_mut(..len).ok_or(Error::Truncated)?;
        hdr[field::DST].copy_from_slice(&self.dst_addr.0);
        hdr[field::SRC].copy_from_slice(&self.src_addr.0);
        let mut at = field::ETHERTYPE.start;
        for tag in self.vlan.iter().flatten() {
            hdr[at..at + 2].copy_from_slice(&u16::from(tag.tpid).to_be_bytes());
            hdr[at + 2..at + 4].copy_from_slice(&tag.tci().to_be_bytes());
            at += VLAN_TAG_LEN;
        }
        hdr[at..at + 2].copy_from_slice(&u16::from(self.ethertype).to_be_bytes());
        Ok(len)
    }
}

/// Big-endian u16 at `at`, if the buffer holds it.
fn be16(data: &[u8], at: usize) -> Option<u16> {
    match data.get(at..at + 2) {
        Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    }
}

/// Counts the VLAN tags announced by the type fields, looking at most one past
/// [`MAX_VLAN_TAGS`]; stops where the buffer ends.
fn scan_tags(data: &[u8]) -> usize {
    let mut at = field::ETHERTYPE.start;
    let mut tags = 0;
    while tags <= MAX_VLAN_TAGS {
        match be16(data, at) {
            Some(ty) if EtherType::from(ty).is_vlan_tpid() => {
                tags += 1;
                at += VLAN_TAG_LEN;
            }
            _ => break,
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

    /// A TCP SYN, untagged (scapy: `Ether()/IP()/TCP(flags="S", options=[…])`), first 34 bytes.
    const UNTAGGED: [u8; 34] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x9b, 0x1a, 0xc0, 0xa8, 0x01, 0x0a,
        0xc0, 0xa8, 0x01, 0x01,
    ];

    /// A DNS query in VLAN 100 with priority 5
    /// (`Ether()/Dot1Q(prio=5, vlan=100)/IP()/UDP(dport=53)/…`).
    const VLAN_UDP: [u8; 75] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0xa0,
        0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x39, 0x00, 0x07, 0x00, 0x00, 0x40, 0x11, 0x66, 0x78,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x35, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0xd3,
        0xbd, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65,
        0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    /// QinQ: S-tag VLAN 10 (PCP 3), C-tag VLAN 20 (DEI set), IPv4/UDP "qinq"
    /// (`Ether(type=0x88a8)/Dot1AD(prio=3, vlan=10)/Dot1Q(id=1, vlan=20)/IP()/UDP()/…`).
    const QINQ: [u8; 54] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x60,
        0x0a, 0x81, 0x00, 0x10, 0x14, 0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x08, 0x00, 0x00,
        0x40, 0x11, 0x66, 0xc3, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x04, 0xd2, 0x16,
        0x2e, 0x00, 0x0c, 0xf0, 0xf8, 0x71, 0x69, 0x6e, 0x71,
    ];

    #[test]
    fn untagged_fixture() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), B);
        assert_eq!(f.src_addr(), A);
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(f.vlan_count(), 0);
        assert_eq!(f.vlan_tags(), [None, None]);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &UNTAGGED[14..]);

        let repr = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 14];
        assert_eq!(repr.emit(&mut out), Ok(14));
        assert_eq!(out, UNTAGGED[..14]);
    }

    #[test]
    fn vlan_fixture() {
        let f = EthernetFrame::new_checked(&VLAN_UDP[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Vlan);
        assert_eq!(f.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(
            f.vlan_tags(),
            [Some(VlanTag { tpid: EtherType::Vlan, pcp: 5, dei: false, vid: 100 }), None]
        );
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload()[0], 0x45);
        assert_eq!(f.payload().len(), 75 - 18);

        let repr = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 18];
        assert_eq!(repr.emit(&mut out), Ok(18));
        assert_eq!(out, VLAN_UDP[..18]);
    }

    #[test]
    fn qinq_fixture() {
        let f = EthernetFrame::new_checked(&QINQ[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::QinQ);
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(
            f.vlan_tags(),
            [
                Some(VlanTag { tpid: EtherType::QinQ, pcp: 3, dei: false, vid: 10 }),
                Some(VlanTag { tpid: EtherType::Vlan, pcp: 0, dei: true, vid: 20 }),
            ]
        );
        assert_eq!(f.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.payload(), &QINQ[22..]);

        let repr = EthernetRepr::parse(&f).unwrap();
        assert_eq!(repr.header_len(), 22);
        let mut out = [0u8; 22];
        assert_eq!(repr.emit(&mut out), Ok(22));
        assert_eq!(out, QINQ[..22]);
    }

    #[test]
    fn rejects_short_and_triple_tagged() {
        assert_eq!(EthernetFrame::new_checked(&UNTAGGED[..13]).err(), Some(Error::Truncated));
        // The tag is announced but not there.
        assert_eq!(EthernetFrame::new_checked(&VLAN_UDP[..17]).err(), Some(Error::Truncated));
        assert_eq!(EthernetFrame::new_checked(&QINQ[..21]).err(), Some(Error::Truncated));
        let mut triple = [0u8; 30];
        triple[..20].copy_from_slice(&QINQ[..20]);
        triple[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(EthernetFrame::new_checked(&triple[..]).err(), Some(Error::Malformed));
        // A bare header with an empty payload is fine.
        let f = EthernetFrame::new_checked(&UNTAGGED[..14]).unwrap();
        assert_eq!(f.payload(), &[] as &[u8]);
    }

    #[test]
    fn setters_write_the_fields() {
        let mut buf = VLAN_UDP;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr(A);
        f.set_src_addr(B);
        f.payload_mut()[0] = 0x46;
        assert_eq!(f.dst_addr(), A);
        assert_eq!(f.src_addr(), B);
        // Rewriting the TPID into a plain type removes the tag from the view's point of view.
        f.set_ethertype(EtherType::Arp);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.inner_ethertype(), EtherType::Arp);
        assert_eq!(buf[18], 0x46);
    }

    #[test]
    fn address_helpers() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(A.is_unicast() && A.is_local() && !A.is_broadcast());
        assert_eq!(A.to_string(), "02:00:00:00:00:01");
        assert_eq!(EthernetAddress::from_bytes(&UNTAGGED[6..]), Some(A));
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
        assert_eq!(u16::from(EtherType::Unknown(0x9100)), 0x9100);
        assert_eq!(EtherType::Unknown(0x0042).to_string(), "0x0042");
    }

    #[test]
    fn emit_rejects_bad_reprs() {
        let tag = VlanTag { tpid: EtherType::Vlan, pcp: 0, dei: false, vid: 1 };
        let base =
            EthernetRepr { src_addr: A, dst_addr: B, vlan: [None; 2], ethertype: EtherType::Ipv4 };
        let mut buf = [0u8; 22];
        let r = EthernetRepr { vlan: [None, Some(tag)], ..base };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r = EthernetRepr { vlan: [Some(VlanTag { vid: 4096, ..tag }), None], ..base };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r =
            EthernetRepr { vlan: [Some(VlanTag { tpid: EtherType::Ipv4, ..tag }), None], ..base };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r = EthernetRepr { ethertype: EtherType::QinQ, ..base };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r = EthernetRepr { vlan: [Some(tag), Some(tag)], ..base };
        assert_eq!(r.emit(&mut buf[..21]), Err(Error::Truncated));
    }

    fn tpid() -> impl Strategy<Value = EtherType> {
        prop_oneof![Just(EtherType::Vlan), Just(EtherType::QinQ)]
    }

    fn vlan_tag() -> impl Strategy<Value = VlanTag> {
        (tpid(), 0u8..8, any::<bool>(), 0u16..4096).prop_map(|(tpid, pcp, dei, vid)| VlanTag {
            tpid,
            pcp,
            dei,
            vid,
        })
    }

    fn repr() -> impl Strategy<Value = EthernetRepr> {
        let tags = prop_oneof![
            Just([None, None]),
            vlan_tag().prop_map(|t| [Some(t), None]),
            (vlan_tag(), vlan_tag()).prop_map(|(a, b)| [Some(a), Some(b)]),
        ];
        let ethertype =
            any::<u16>().prop_map(EtherType::from).prop_filter("not a TPID", |t| !t.is_vlan_tpid());
        (any::<[u8; 6]>(), any::<[u8; 6]>(), tags, ethertype).prop_map(|(s, d, vlan, ethertype)| {
            EthernetRepr {
                src_addr: EthernetAddress(s),
                dst_addr: EthernetAddress(d),
                vlan,
                ethertype,
            }
        })
    }

    /// Bytes that are often tagged, so the tag paths get exercised.
    fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
        let tpid = prop_oneof![Just([0x81u8, 0x00]), Just([0x88, 0xa8]), any::<[u8; 2]>()];
        (proptest::collection::vec(any::<u8>(), 0..40), tpid.clone(), tpid.clone(), tpid).prop_map(
            |(mut v, t0, t1, t2)| {
                for (at, t) in [(12, t0), (16, t1), (20, t2)] {
                    if v.len() >= at + 2 {
                        v[at..at + 2].copy_from_slice(&t);
                    }
                }
                v
            },
        )
    }

    proptest! {
        #[test]
        fn checked_view_never_panics(mut bytes in frame_bytes()) {
            if let Ok(f) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.inner_ethertype());
                let _ = (f.vlan_count(), f.vlan_tags());
                prop_assert!(!f.inner_ethertype().is_vlan_tpid());
                prop_assert_eq!(f.payload().len() + f.header_len(), bytes.len());
                let r = EthernetRepr::parse(&f).unwrap();
                prop_assert_eq!(r.header_len(), f.header_len());
                let mut f = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
                // Setters may make the type fields claim more than the buffer holds.
                f.set_ethertype(EtherType::Vlan);
                let _ = (f.vlan_tags(), f.inner_ethertype(), f.payload_mut().len());
            }
        }

        #[test]
        fn repr_round_trips(repr in repr(), payload_len in 0usize..8) {
            let mut buf = [0u8; 30];
            let n = repr.emit(&mut buf).unwrap();
            prop_assert_eq!(n, repr.header_len());
            let f = EthernetFrame::new_checked(&buf[..n + payload_len]).unwrap();
            prop_assert_eq!(f.header_len(), n);
            prop_assert_eq!(f.payload().len(), payload_len);
            prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), repr);
        }
    }
}
