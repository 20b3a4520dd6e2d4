//! # Wire formats
//!
//! Zero-copy views over frame buffers (`*Packet<B: AsRef<[u8]>>`, setters where
//! `B: AsMut<[u8]>`) and small `*Repr` values for building packets, in the style of smoltcp's
//! `wire` module. A view is validated once by `new_checked`; after that no accessor can panic.
//!
//! Formats: Ethernet II with up to two VLAN tags ([`EthernetFrame`], RFC 894, IEEE 802.1Q),
//! ARP for IPv4 over Ethernet ([`ArpPacket`], RFC 826), IPv4 ([`Ipv4Packet`], RFC 791),
//! ICMPv4 ([`Icmpv4Packet`], RFC 792), UDP ([`UdpPacket`], RFC 768) and TCP ([`TcpPacket`],
//! RFC 9293). Conventions they share:
//! - a view covers exactly its layer and what follows; the caller hands each layer the
//!   payload of the one below (`Ipv4Packet::payload` already stops at the total length);
//! - payload getters on `*Packet<&'a [u8]>` return `&'a [u8]`; regions derived from length
//!   fields are clamped to the buffer, so no accessor of a checked view panics even after a
//!   setter wrote a nonsensical length;
//! - `*Repr::parse` re-checks lengths but never verifies checksums: whether to verify depends
//!   on what the device reported ([`Csum`]), so the caller calls `verify_checksum`;
//! - `*Repr::emit` writes into the front of a `&mut [u8]`, returns how many bytes it wrote
//!   (the header length, or the whole message for ARP and ICMP), and returns
//!   [`Error::Truncated`] or [`Error::Malformed`] instead of panicking; TCP and UDP fill their
//!   checksum as [`TxChecksum`] says.
//!
//! Also here: whole Ethernet/IPv4/UDP frames for one flow ([`emit_udp_frame`]), the Internet checksum ([`checksum`], RFC 1071 and RFC 1624) and the
//! virtio-net-style offload header ([`NetHdr`], virtio 1.2 §5.1.6) which is itself a wire format
//! (a TAP device with `IFF_VNET_HDR` prepends it to every frame).

mod arp;
pub mod checksum;
mod ethernet;
mod frame;
mod icmp;
mod ipv4;
mod tcp;
mod udp;
mod vnet;

pub use arp::{ArpOperation, ArpPacket, ArpRepr, ARP_PACKET_LEN};
pub use ethernet::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag, ETHERNET_HEADER_LEN,
    MAX_VLAN_TAGS, VLAN_TAG_LEN,
};
pub use frame::{emit_udp_frame, udp_frame_len, UdpFlow};
pub use icmp::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded,
    ICMPV4_HEADER_LEN,
};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, IPV4_HEADER_LEN, IPV4_MAX_HEADER_LEN};
pub use tcp::{
    SackBlocks, TcpFlags, TcpOption, TcpOptionIter, TcpPacket, TcpRepr, TcpTimestamps,
    TCP_CHECKSUM_OFFSET, TCP_HEADER_LEN, TCP_MAX_HEADER_LEN, TCP_MAX_SACK_BLOCKS,
};
pub use udp::{UdpPacket, UdpRepr, UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN};
pub use vnet::{Csum, Gso, NetHdr, VNET_HDR_LEN};

/// Why a buffer could not be viewed as a packet of some format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the format's header or its length fields claim.
    Truncated,
    /// A field holds a value the format does not allow (version, header length, …).
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

/// How a `*Repr::emit` fills a transport (TCP, UDP) checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxChecksum {
    /// Sum the pseudo-header and the whole segment, and store the complete checksum.
    #[default]
    Full,
    /// Store only the folded pseudo-header sum (over the segment's own length) for the device
    /// or the software offload to complete: the [`Csum::Partial`] convention, with the field at
    /// [`TCP_CHECKSUM_OFFSET`] or [`UDP_CHECKSUM_OFFSET`] from the start of the L4 header.
    Partial,
}

/// Result of parsing a wire format.
pub type Result<T> = core::result::Result<T, Error>;
