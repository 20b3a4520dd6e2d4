//! # Checksum offload in software
//!
//! What it is: [`complete`] finishes a transport checksum the stack left partial
//! ([`Csum::Partial`], virtio 1.2 §5.1.6.2 `VIRTIO_NET_HDR_F_NEEDS_CSUM`), as a device with
//! `tx_csum` would; [`verify_ipv4_l4`] checks a received IPv4 TCP/UDP frame's checksums, for
//! callers that must know before the stack sees it (GRO).
//!
//! What it owns: nothing. It rewrites two bytes of the frame it is given and its header.
//!
//! What it never does: complete the checksum of a super-segment as a whole (each segment has
//! its own: [`super::tso`] does it per segment), read past the frame, panic on bad offsets.
//!
//! Convention (Linux's `skb_checksum_help`, the same for TCP and UDP): the field at
//! `start + offset` holds the folded pseudo-header sum; the checksum is the complement of the
//! sum from `start` to the end of the frame, and a result of `0x0000` is stored as `0xffff`
//! (the other ones'-complement zero, RFC 1071 §1), because `0` means "no checksum" to UDP
//! (RFC 768). Both verify the same way.
//!
//! References: RFC 1071 (the sum), RFC 768 and RFC 9293 §3.1 (pseudo-headers), virtio 1.2
//! §5.1.6.2, Linux `net/core/dev.c` (`skb_checksum_help`, `CSUM_MANGLED_0`).

use libos::wire::checksum;
use libos::wire::{Csum, Gso, IpProtocol, Ipv4Packet, NetHdr};

use super::layout;
use super::OffloadError;

/// Completes a [`Csum::Partial`] checksum in `frame` and sets `hdr.csum` to [`Csum::None`]
/// (on transmit: complete). [`Csum::None`] and [`Csum::Valid`] frames are left alone.
///
/// Errors, with `frame` and `hdr` untouched: [`OffloadError::CsumOutOfBounds`] if the field
/// (two bytes at `start + offset`) is not inside the frame; [`OffloadError::SuperSegment`] if
/// `hdr.gso` is set (split the frame instead).
pub fn complete(frame: &mut [u8], hdr: &mut NetHdr) -> Result<(), OffloadError> {
    let Csum::Partial { start, offset } = hdr.csum else {
        return Ok(());
    };
    if hdr.gso != Gso::None {
        return Err(OffloadError::SuperSegment);
    }
    let (s, field) = (usize::from(start), usize::from(start) + usize::from(offset));
    if field + 2 > frame.len() {
        return Err(OffloadError::CsumOutOfBounds { start, offset, len: frame.len() });
    }
    let check = match !checksum::sum(&frame[s..]) {
        0 => 0xffff,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&check.to_be_bytes());
    hdr.csum = Csum::None;
    Ok(())
}

/// Checks the IPv4 header checksum and the TCP or UDP checksum of a received frame (VLAN tags
/// and IPv4 options allowed; the datagram ends at its total length, Ethernet padding ignored).
///
/// `Some(true)`: both are right (or the UDP checksum is 0, "none", RFC 768). `Some(false)`:
/// one is wrong, or the transport header is cut short. `None`: nothing to check here (not
/// IPv4, not TCP or UDP, a fragment, or headers the frame does not hold); the stack decides.
pub fn verify_ipv4_l4(frame: &[u8]) -> Option<bool> {
    let l3 = layout::ipv4(frame).ok()?;
    let ip = Ipv4Packet::new_checked(&frame[l3..]).ok()?;
    if ip.is_fragment() {
        return None;
    }
    let (proto, min) = match ip.protocol() {
        IpProtocol::Tcp => (6, 20),
        IpProtocol::Udp => (17, 8),
        _ => return None,
    };
    if !ip.verify_checksum() {
        return Some(false);
    }
    let l4 = ip.payload();
    if l4.len() < min {
        return Some(false);
    }
    if proto == 17 && l4[6] == 0 && l4[7] == 0 {
        return Some(true);
    }
    Some(l4_sum_ok(ip.src_addr().octets(), ip.dst_addr().octets(), proto, l4))
}

/// Whether a transport segment (header and payload) sums to `0xffff` with its pseudo-header.
#[inline]
pub(crate) fn l4_sum_ok(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> bool {
    let Ok(len) = u16::try_from(segment.len()) else {
        return false;
    };
    let pseudo = checksum::pseudo_header_v4(src, dst, proto, len);
    checksum::add(pseudo, checksum::sum(segment)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Naive RFC 1071 checksum of a TCP/UDP segment over its pseudo-header, built byte by byte.
    fn reference_l4(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
        let mut v = Vec::with_capacity(12 + segment.len());
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&[0, proto]);
        v.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        v.extend_from_slice(segment);
        !checksum::reference(&v)
    }

    /// Ethernet + optional VLAN tag + IPv4 (+ options) + L4 header area + payload, with the IPv4
    /// checksum right and the L4 checksum field holding the pseudo-header sum (transmit side
    /// of `Csum::Partial`). Returns the frame, where L4 starts and the checksum offset in it.
    fn partial_frame(
        vlan: bool,
        ip_opts: usize,
        proto: u8,
        payload: &[u8],
    ) -> (Vec<u8>, usize, usize) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let l3 = f.len();
        let ihl = 20 + ip_opts * 4;
        let (l4hdr, off) = if proto == 6 { (20, 16) } else { (8, 6) };
        let total = ihl + l4hdr + payload.len();
        f.extend_from_slice(&[0x40 | (ihl / 4) as u8, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto]);
        f.extend_from_slice(&[0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.resize(l3 + ihl, 1); // NOP options
        f[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
        let c = checksum::checksum(&f[l3..l3 + ihl]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let l4 = f.len();
        f.resize(l4 + l4hdr, 0);
        f[l4..l4 + 4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        if proto == 6 {
            f[l4 + 12] = 0x50;
            f[l4 + 13] = 0x18;
        } else {
            f[l4 + 4..l4 + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        let len = (l4hdr + payload.len()) as u16;
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], proto, len);
        f[l4 + off..l4 + off + 2].copy_from_slice(&pseudo.to_be_bytes());
        (f, l4, off)
    }

    #[test]
    fn completes_a_tcp_checksum() {
        let (mut f, l4, off) = partial_frame(false, 0, 6, b"hello, world");
        let mut hdr =
            NetHdr { csum: Csum::Partial { start: l4 as u16, offset: off as u16 }, ..NetHdr::NONE };
        complete(&mut f, &mut hdr).unwrap();
        assert_eq!(hdr.csum, Csum::None);
        assert_eq!(verify_ipv4_l4(&f), Some(true));
        f[l4 + 25] ^= 1;
        assert_eq!(verify_ipv4_l4(&f), Some(false));
    }

    #[test]
    fn leaves_complete_and_valid_frames_alone() {
        let (f0, _, _) = partial_frame(false, 0, 17, b"x");
        for csum in [Csum::None, Csum::Valid] {
            let mut f = f0.clone();
            let mut hdr = NetHdr { csum, ..NetHdr::NONE };
            complete(&mut f, &mut hdr).unwrap();
            assert_eq!((f, hdr.csum), (f0.clone(), csum));
        }
    }

    #[test]
    fn refuses_bad_offsets_and_super_segments() {
        let (mut f, _, _) = partial_frame(false, 0, 6, b"abc");
        let f0 = f.clone();
        let len = f.len() as u16;
        for (start, offset) in
            [(len, 0), (len - 1, 0), (len - 4, 3), (0, u16::MAX), (u16::MAX, u16::MAX)]
        {
            let mut hdr = NetHdr { csum: Csum::Partial { start, offset }, ..NetHdr::NONE };
            assert!(matches!(
                complete(&mut f, &mut hdr),
                Err(OffloadError::CsumOutOfBounds { .. })
            ));
            assert_eq!(hdr.csum, Csum::Partial { start, offset });
        }
        let mut hdr = NetHdr {
            csum: Csum::Partial { start: 34, offset: 16 },
            gso: Gso::TcpV4 { size: 1, hdr_len: 54 },
            segments: 0,
        };
        assert_eq!(complete(&mut f, &mut hdr), Err(OffloadError::SuperSegment));
        assert_eq!(f, f0);
    }

    #[test]
    fn a_zero_checksum_is_sent_as_ffff() {
        // Find a UDP payload whose checksum comes out 0: vary two bytes until it does.
        let (f0, l4, off) = partial_frame(false, 0, 17, &[0, 0]);
        let want = reference_l4([10, 0, 0, 1], [10, 0, 0, 2], 17, &{
            let mut s = f0[l4..].to_vec();
            s[off] = 0;
            s[off + 1] = 0;
            s
        });
        // Adding `want` to the payload word brings the sum to 0xffff, the checksum to 0.
        let (mut f, _, _) = partial_frame(false, 0, 17, &want.to_be_bytes());
        let mut seg = f[l4..].to_vec();
        seg[off] = 0;
        seg[off + 1] = 0;
        assert_eq!(reference_l4([10, 0, 0, 1], [10, 0, 0, 2], 17, &seg), 0);
        let mut hdr =
            NetHdr { csum: Csum::Partial { start: l4 as u16, offset: off as u16 }, ..NetHdr::NONE };
        complete(&mut f, &mut hdr).unwrap();
        assert_eq!(&f[l4 + off..l4 + off + 2], &[0xff, 0xff]);
        assert_eq!(verify_ipv4_l4(&f), Some(true));
    }

    #[test]
    fn verify_says_none_for_what_it_cannot_check() {
        let (mut f, _, _) = partial_frame(false, 0, 1, b"ping");
        assert_eq!(verify_ipv4_l4(&f), None, "icmp");
        f[12] = 0x86;
        f[13] = 0xdd;
        assert_eq!(verify_ipv4_l4(&f), None, "ipv6");
        assert_eq!(verify_ipv4_l4(&[0u8; 10]), None);
        let (mut f, _, _) = partial_frame(false, 0, 17, b"");
        f[14 + 6] = 0x20; // MF (header checksum now wrong too; fragments are not looked at)
        assert_eq!(verify_ipv4_l4(&f), None, "fragment");
    }

    #[test]
    fn verify_accepts_zero_udp_checksum_and_ignores_padding() {
        let (mut f, l4, _) = partial_frame(false, 0, 17, b"hi");
        f[l4 + 6] = 0;
        f[l4 + 7] = 0;
        f.resize(60, 0xaa);
        assert_eq!(verify_ipv4_l4(&f), Some(true));
        let (mut f, l4, off) = partial_frame(false, 0, 17, b"hi");
        let mut hdr =
            NetHdr { csum: Csum::Partial { start: l4 as u16, offset: off as u16 }, ..NetHdr::NONE };
        complete(&mut f, &mut hdr).unwrap();
        f.resize(60, 0xaa);
        assert_eq!(verify_ipv4_l4(&f), Some(true));
        f[14 + 10] ^= 0x40; // IPv4 header checksum
        assert_eq!(verify_ipv4_l4(&f), Some(false));
    }

    proptest! {
        /// `complete` stores what a from-scratch RFC 1071 checksum over pseudo-header and
        /// segment gives (modulo the two zeros), and the frame then verifies.
        #[test]
        fn complete_matches_the_reference(
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            vlan in any::<bool>(),
            ip_opts in 0usize..11,
            tcp in any::<bool>(),
        ) {
            let proto = if tcp { 6 } else { 17 };
            let (mut f, l4, off) = partial_frame(vlan, ip_opts, proto, &payload);
            let mut seg = f[l4..].to_vec();
            seg[off] = 0;
            seg[off + 1] = 0;
            let want = reference_l4([10, 0, 0, 1], [10, 0, 0, 2], proto, &seg);
            let mut hdr = NetHdr {
                csum: Csum::Partial { start: l4 as u16, offset: off as u16 },
                ..NetHdr::NONE
            };
            complete(&mut f, &mut hdr).unwrap();
            let got = u16::from_be_bytes([f[l4 + off], f[l4 + off + 1]]);
            let norm = |x: u16| if x == 0 { 0xffff } else { x };
            prop_assert_eq!(norm(got), norm(want));
            prop_assert_eq!(verify_ipv4_l4(&f), Some(true));
        }

        #[test]
        fn complete_and_verify_never_panic(
            mut f in proptest::collection::vec(any::<u8>(), 0..200),
            start in any::<u16>(),
            offset in any::<u16>(),
        ) {
            let mut hdr = NetHdr { csum: Csum::Partial { start, offset }, ..NetHdr::NONE };
            let _ = complete(&mut f, &mut hdr);
            if f.len() > 23 {
                f[12] = 0x08;
                f[13] = 0x00;
                f[14] = 0x45;
            }
            let _ = verify_ipv4_l4(&f);
        }
    }
}
