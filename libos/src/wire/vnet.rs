//! # virtio-net-style offload header
//!
//! The metadata that travels with every frame between the NIC layer and the stack, with the
//! semantics of `struct virtio_net_hdr_v1` (virtio 1.2 §5.1.6): what is known about the frame's
//! L4 checksum, and whether the frame is a super-segment to be split (transmit) or a coalesced
//! run of segments (receive).
//!
//! In memory it is a small Rust value ([`NetHdr`]); on the wire (TAP with `IFF_VNET_HDR`, vhost)
//! it is the 12-byte little-endian layout, read with [`NetHdr::parse`] and written with
//! [`NetHdr::emit`].
//!
//! Conventions (the same as Linux's for `CHECKSUM_PARTIAL` and TSO):
//! - [`Csum::Partial`]: the L4 checksum field at `start + offset` holds the folded sum of the
//!   pseudo-header (for a GSO super-segment: the pseudo-header **without** the length, since
//!   each segment has its own); whoever completes it sums from `start` to the end of the frame
//!   and stores the complement.
//! - [`Csum::Valid`]: a lower layer verified the L4 checksum (of every segment, for a coalesced
//!   frame); the stack need not verify it again.
//! - [`Csum::None`]: nothing is known on receive; on transmit the checksum is already complete.

/// Length of the virtio-net header on the wire (`struct virtio_net_hdr_v1`).
pub const VNET_HDR_LEN: usize = 12;

mod flags {
    pub const NEEDS_CSUM: u8 = 1;
    pub const DATA_VALID: u8 = 2;
    pub const RSC_INFO: u8 = 4;
}

mod gso_type {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    pub const UDP_L4: u8 = 5;
    pub const ECN: u8 = 0x80;
}

/// What is known about a frame's L4 checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Csum {
    /// Receive: unverified. Transmit: already complete.
    #[default]
    None,
    /// The checksum still has to be completed: sum from `start` (offset in the frame) to the
    /// end and store the complement at `start + offset`.
    Partial {
        /// Where the checksummed region starts (the L4 header).
        start: u16,
        /// Where the checksum field sits, relative to `start`.
        offset: u16,
    },
    /// Verified below the stack.
    Valid,
}

/// Segmentation state of a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gso {
    /// An ordinary frame.
    #[default]
    None,
    /// A TCP/IPv4 super-segment: headers of `hdr_len` bytes followed by payload cut into
    /// segments of `size` bytes (the last may be shorter).
    TcpV4 {
        /// Payload bytes per segment (the MSS).
        size: u16,
        /// Ethernet + IPv4 + TCP header bytes at the front of the frame.
        hdr_len: u16,
    },
    /// A UDP/IPv4 super-datagram cut into datagrams of `size` payload bytes (`UDP_SEGMENT`).
    UdpL4 {
        /// Payload bytes per datagram.
        size: u16,
        /// Ethernet + IPv4 + UDP header bytes at the front of the frame.
        hdr_len: u16,
    },
}

/// Offload metadata of one frame (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetHdr {
    /// Checksum state.
    pub csum: Csum,
    /// Segmentation state.
    pub gso: Gso,
    /// For a coalesced receive frame: how many wire segments it carries (virtio's RSC info).
    /// 0 or 1 for an ordinary frame.
    pub segments: u16,
}

impl NetHdr {
    /// The header of an ordinary frame with nothing known and nothing to do.
    pub const NONE: NetHdr = NetHdr { csum: Csum::None, gso: Gso::None, segments: 0 };

    /// Reads the 12-byte little-endian `virtio_net_hdr_v1`.
    pub fn parse(buf: &[u8]) -> super::Result<NetHdr> {
        let b: &[u8; VNET_HDR_LEN] = buf
            .get(..VNET_HDR_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(super::Error::Truncated)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let (fl, gt) = (b[0], b[1]);
        let (hdr_len, gso_size, csum_start, csum_offset, num) =
            (le(2), le(4), le(6), le(8), le(10));
        let csum = if fl & flags::NEEDS_CSUM != 0 {
            Csum::Partial { start: csum_start, offset: csum_offset }
        } else if fl & flags::DATA_VALID != 0 {
            Csum::Valid
        } else {
            Csum::None
        };
        let gso = match gt & !gso_type::ECN {
            gso_type::NONE => Gso::None,
            gso_type::TCPV4 if gso_size > 0 => Gso::TcpV4 { size: gso_size, hdr_len },
            gso_type::UDP_L4 if gso_size > 0 => Gso::UdpL4 { size: gso_size, hdr_len },
            _ => return Err(super::Error::Malformed),
        };
        // One segment (or none) is what a header without RSC information says: 0, so that
        // a parsed header emits and parses back to itself (found by the wire_vnet fuzz target).
        let segments = if fl & flags::RSC_INFO != 0 && num > 1 { num } else { 0 };
        Ok(NetHdr { csum, gso, segments })
    }

    /// Writes the 12-byte little-endian `virtio_net_hdr_v1` into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> super::Result<()> {
        let b = buf.get_mut(..VNET_HDR_LEN).ok_or(super::Error::Truncated)?;
        let (mut fl, mut start, mut offset) = (0u8, 0u16, 0u16);
        match self.csum {
            Csum::None => {}
            Csum::Partial { start: s, offset: o } => {
                fl |= flags::NEEDS_CSUM;
                start = s;
                offset = o;
            }
            Csum::Valid => fl |= flags::DATA_VALID,
        }
        let (gt, size, hdr_len) = match self.gso {
            Gso::None => (gso_type::NONE, 0, 0),
            Gso::TcpV4 { size, hdr_len } => (gso_type::TCPV4, size, hdr_len),
            Gso::UdpL4 { size, hdr_len } => (gso_type::UDP_L4, size, hdr_len),
        };
        if self.segments > 1 {
            fl |= flags::RSC_INFO;
        }
        b[0] = fl;
        b[1] = gt;
        b[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&size.to_le_bytes());
        b[6..8].copy_from_slice(&start.to_le_bytes());
        b[8..10].copy_from_slice(&offset.to_le_bytes());
        let num = if self.segments > 1 { self.segments } else { 0 };
        b[10..12].copy_from_slice(&num.to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rsc_info_of_one_segment_parses_as_none() {
        for num in [0u16, 1] {
            let mut b = [0u8; VNET_HDR_LEN];
            b[0] = flags::RSC_INFO;
            b[10..12].copy_from_slice(&num.to_le_bytes());
            let h = NetHdr::parse(&b).unwrap();
            assert_eq!(h.segments, 0);
            let mut out = [0u8; VNET_HDR_LEN];
            h.emit(&mut out).unwrap();
            assert_eq!(NetHdr::parse(&out), Ok(h));
        }
    }

    #[test]
    fn tso_header_fixture() {
        // NEEDS_CSUM, TCPV4, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16.
        let bytes = [0x01, 0x01, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0];
        let h = NetHdr::parse(&bytes).unwrap();
        assert_eq!(h.csum, Csum::Partial { start: 34, offset: 16 });
        assert_eq!(h.gso, Gso::TcpV4 { size: 1448, hdr_len: 66 });
        let mut out = [0u8; VNET_HDR_LEN];
        h.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn rejects_unknown_gso_type_and_short_buffers() {
        assert_eq!(
            NetHdr::parse(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(crate::wire::Error::Malformed)
        );
        assert_eq!(NetHdr::parse(&[0; 11]), Err(crate::wire::Error::Truncated));
        assert_eq!(NetHdr::NONE.emit(&mut [0u8; 4]), Err(crate::wire::Error::Truncated));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(bytes in proptest::array::uniform12(any::<u8>())) {
            if let Ok(h) = NetHdr::parse(&bytes) {
                let mut out = [0u8; VNET_HDR_LEN];
                h.emit(&mut out).unwrap();
                prop_assert_eq!(NetHdr::parse(&out).unwrap(), h);
            }
        }
    }
}
