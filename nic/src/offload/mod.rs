//! # Software offloads
//!
//! What it is: what a NIC with offloads does to frames, done in software just before the TX
//! ring or just after the RX ring when the device cannot:
//! - [`csum`]: checksum completion ([`Csum::Partial`](libos::wire::Csum::Partial), virtio 1.2
//!   §5.1.6.2, Linux's `skb_checksum_help`) and a receive-side verification helper (RFC 1071);
//! - [`tso`]: TCP segmentation of a super-segment ([`Gso::TcpV4`]) into MTU-sized frames with
//!   templated headers and incremental checksums (RFC 1624; Linux's `tcp_gso_segment`);
//! - [`gro`]: receive coalescing of in-order TCP segments of one flow into one frame (Linux's
//!   `inet_gro_receive`/`tcp_gro_receive`).
//!
//! What it owns: nothing but its scratch space ([`gro::Gro`] owns its coalescing buffers,
//! allocated once). Frames belong to the caller (a port); an offload reads one frame and writes
//! into buffers the caller hands it.
//!
//! What it never does: allocate per packet, panic on packet contents (a frame it cannot handle
//! is an [`OffloadError`], or, on receive, passed on unchanged for the stack to count and drop),
//! read the clock, hold a frame past the call that handed it over.
//!
//! Conventions: those of [`libos::wire::NetHdr`]. In particular the checksum field of a TCP
//! super-segment holds the pseudo-header sum **without** the length; [`tso`] recomputes the
//! pseudo-header of each segment from the IPv4 header rather than trusting that field, and
//! [`gro`] writes it that way into the frames it builds, so a coalesced frame is a valid TSO
//! input as it stands.
//!
//! References: virtio 1.2 §5.1.6 (`virtio_net_hdr`), RFC 1071 and RFC 1624 (the checksum and its
//! incremental update), RFC 791 (IPv4), RFC 9293 (TCP), RFC 6864 (IPv4 ID of atomic datagrams),
//! Linux `net/ipv4/tcp_offload.c`, `net/ipv4/af_inet.c` (`inet_gso_segment`,
//! `inet_gro_receive`), `net/core/gro.c`, `Documentation/networking/segmentation-offloads.rst`.
//!
//! Headers are read and patched through `libos::wire`'s views
//! ([`EthernetFrame`](libos::wire::EthernetFrame), [`Ipv4Packet`](libos::wire::Ipv4Packet),
//! [`TcpPacket`](libos::wire::TcpPacket)), located once per frame by the private `layout`.

pub mod csum;
pub mod gro;
mod layout;
#[cfg(test)]
mod testutil;
pub mod tso;

use libos::wire::Gso;

/// Why an offload could not process a frame. The frame is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The frame is shorter than the headers it announces.
    #[error("offload: truncated frame: {what} needs {needed} bytes, the frame has {len}")]
    Truncated {
        /// The header or field that does not fit.
        what: &'static str,
        /// Bytes it needs from the start of the frame.
        needed: usize,
        /// Bytes the frame has.
        len: usize,
    },
    /// The payload of the Ethernet frame (after up to two VLAN tags) is not IPv4.
    #[error("offload: not an IPv4 frame (ethertype {0:#06x})")]
    NotIpv4(u16),
    /// A header field holds a value its format does not allow.
    #[error("offload: malformed {0}")]
    Malformed(&'static str),
    /// The IPv4 payload is not TCP.
    #[error("offload: not TCP (IP protocol {0})")]
    NotTcp(u8),
    /// The datagram is an IPv4 fragment.
    #[error("offload: IPv4 fragment")]
    Fragment,
    /// [`Csum::Partial`](libos::wire::Csum::Partial) names a checksum field outside the
    /// frame.
    #[error("offload: checksum field at {start}+{offset} is outside the {len}-byte frame")]
    CsumOutOfBounds {
        /// `start` of the partial checksum.
        start: u16,
        /// `offset` of the partial checksum.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// Checksum completion was asked for a super-segment: its checksum is per segment, split it.
    #[error("offload: cannot complete the checksum of a super-segment as a whole; split it")]
    SuperSegment,
    /// Segmentation was asked for a frame that is not a TCP/IPv4 super-segment.
    #[error("offload: not a TCP/IPv4 super-segment (gso {0:?})")]
    NotTcpV4Gso(Gso),
    /// `hdr_len` of the segmentation header disagrees with the headers found in the frame.
    #[error("offload: gso hdr_len {hdr_len} but the frame's headers are {actual} bytes")]
    HdrLen {
        /// `hdr_len` as given.
        hdr_len: usize,
        /// Ethernet + IPv4 + TCP header bytes found.
        actual: usize,
    },
    /// The segment size (MSS) is 0.
    #[error("offload: gso size 0")]
    ZeroSegmentSize,
    /// One segment would exceed the largest IPv4 datagram.
    #[error("offload: a segment of {0} IP bytes exceeds 65535")]
    SegmentTooLarge(usize),
    /// The output buffer for a segment is shorter than the segment.
    #[error("offload: output buffer of {got} bytes for a {needed}-byte segment")]
    OutputTooSmall {
        /// Bytes the segment needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The output sink had no buffer for a segment; the segments before it were committed.
    #[error("offload: no output buffer for segment {segment} of {segments}")]
    OutputExhausted {
        /// Index of the segment that found no buffer.
        segment: usize,
        /// Segments the super-segment splits into.
        segments: usize,
    },
}
