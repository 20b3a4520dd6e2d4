//! # IPv4 output: headers for originated datagrams and fragmentation
//!
//! What it is: the pieces of the IPv4 layer that are not wire parsing: [`OutHeader`] (the
//! fields of a datagram the stack originates), [`fragment_plan`] and [`write_packet`], which
//! cut a transport message into MTU-sized IPv4 packets (RFC 791 §2.3 and §3.2, "fragmentation
//! procedure"), and [`frag`], the reassembly of received fragments.
//!
//! What it owns: the layout of originated packets: a 20-byte header without options, DF
//! clear, the identification given by the caller (one counter per stack, RFC 6864 §4.1:
//! unique per source, destination and protocol within the maximum datagram lifetime), and
//! fragment payloads that are multiples of 8 bytes except the last.
//!
//! What it never does: allocate (it writes into buffers the caller lends), choose routes, or
//! send options.
//!
//! Invariants: the fragments of a message cover it exactly once, in order; each packet written
//! is at most `mtu` bytes and carries a correct header checksum.
//!
//! References: RFC 791 (IPv4, fragmentation), RFC 815 (reassembly), RFC 1122 §3.3.2,
//! RFC 6864 (identification field).

pub mod frag;

use std::net::Ipv4Addr;

use crate::wire::{IpProtocol, Ipv4Packet, IPV4_HEADER_LEN};

/// Largest IPv4 datagram (the total length field is 16 bits).
pub const MAX_DATAGRAM: usize = 65535;

/// Header fields of a datagram the stack originates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    /// Source address (one of ours).
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport protocol.
    pub protocol: IpProtocol,
    /// Identification (shared by all fragments of the datagram).
    pub ident: u16,
    /// Time to live.
    pub ttl: u8,
    /// The type-of-service byte (DSCP and ECN): 0, except for ICMP errors
    /// ([`ICMP_ERROR_TOS`]).
    pub tos: u8,
}

/// The type-of-service byte of an ICMP error: precedence 6, internetwork control (RFC 1812
/// §4.3.2.5: Destination Unreachable, Redirect, Time Exceeded and Parameter Problem SHOULD
/// carry precedence 6 or 7), the rest 0 (RFC 1349 §5.1); what Linux sends for a packet of TOS 0.
pub const ICMP_ERROR_TOS: u8 = 0xc0;

/// How a message of `len` bytes is cut for an `mtu`: the payload bytes per fragment (a
/// multiple of 8) and the number of packets. `None` if the datagram would exceed 65535 bytes
/// or the MTU cannot carry a header and 8 bytes.
pub fn fragment_plan(len: usize, mtu: usize) -> Option<(usize, usize)> {
    if len + IPV4_HEADER_LEN > MAX_DATAGRAM || mtu < IPV4_HEADER_LEN + 8 {
        return None;
    }
    if len + IPV4_HEADER_LEN <= mtu {
        return Some((len, 1));
    }
    let per = (mtu - IPV4_HEADER_LEN) & !7;
    Some((per, len.div_ceil(per)))
}

/// Copies `out.len()` bytes of the concatenation of `pieces`, starting at `offset`, into `out`.
/// Bytes past the end of the pieces are left untouched.
pub fn copy_range(pieces: &[&[u8]], mut offset: usize, out: &mut [u8]) {
    let mut at = 0;
    for p in pieces {
        if at >= out.len() {
            break;
        }
        if offset >= p.len() {
            offset -= p.len();
            continue;
        }
        let n = (p.len() - offset).min(out.len() - at);
        out[at..at + n].copy_from_slice(&p[offset..offset + n]);
        at += n;
        offset = 0;
    }
}

/// Writes one IPv4 packet into the front of `out`: a 20-byte header for `hdr` followed by
/// `len` bytes of the message (the concatenation of `pieces`) starting at `offset`, with More
/// Fragments set when `more`. The packet is a fragment iff `offset > 0 || more`. Returns the
/// packet length, or `None` if `out` is too short or `offset` is not a multiple of 8.
pub fn write_packet(
    out: &mut [u8],
    hdr: &OutHeader,
    pieces: &[&[u8]],
    offset: usize,
    len: usize,
    more: bool,
) -> Option<usize> {
    let total = IPV4_HEADER_LEN + len;
    if out.len() < total || offset % 8 != 0 || offset > 0xffff || total > MAX_DATAGRAM {
        return None;
    }
    let (head, body) = out[..total].split_at_mut(IPV4_HEADER_LEN);
    copy_range(pieces, offset, body);
    let mut p = Ipv4Packet::new_unchecked(head);
    p.set_version(4);
    p.set_header_len(IPV4_HEADER_LEN);
    p.set_dscp(hdr.tos >> 2);
    p.set_ecn(hdr.tos & 0b11);
    p.set_total_len(total as u16);
    p.set_ident(hdr.ident);
    p.set_dont_frag(false);
    p.set_more_frags(more);
    p.set_frag_offset(offset as u16);
    p.set_protocol(hdr.protocol);
    p.set_src_addr(hdr.src);
    p.set_dst_addr(hdr.dst);
    p.set_ttl(hdr.ttl);
    p.fill_checksum();
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: OutHeader = OutHeader {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
        protocol: IpProtocol::Udp,
        ident: 0x1234,
        ttl: 64,
        tos: 0,
    };

    #[test]
    fn plan_matches_linux_for_1500() {
        assert_eq!(fragment_plan(1480, 1500), Some((1480, 1)));
        assert_eq!(fragment_plan(1481, 1500), Some((1480, 2)));
        assert_eq!(fragment_plan(4008, 1500), Some((1480, 3)));
        assert_eq!(fragment_plan(100, 27), None);
        assert_eq!(fragment_plan(65516, 1500), None);
        assert_eq!(fragment_plan(100, 31), Some((8, 13)));
    }

    #[test]
    fn copy_range_spans_pieces() {
        let mut out = [0u8; 5];
        copy_range(&[b"abc", b"", b"defg"], 1, &mut out);
        assert_eq!(&out, b"bcdef");
        let mut out = [9u8; 4];
        copy_range(&[b"ab"], 1, &mut out);
        assert_eq!(out, [b'b', 9, 9, 9]);
    }

    #[test]
    fn fragments_reassemble_to_the_message() {
        let msg: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let (per, n) = fragment_plan(msg.len(), 576).unwrap();
        let mut seen = Vec::new();
        for k in 0..n {
            let off = k * per;
            let len = per.min(msg.len() - off);
            let mut buf = [0u8; 576];
            let total =
                write_packet(&mut buf, &HDR, &[&msg[..10], &msg[10..]], off, len, k + 1 < n)
                    .unwrap();
            let p = Ipv4Packet::new_checked(&buf[..total]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(usize::from(p.frag_offset()), off);
            assert_eq!(p.more_frags(), k + 1 < n);
            assert_eq!((p.ttl(), p.ident(), p.dst_addr()), (64, 0x1234, HDR.dst));
            seen.extend_from_slice(p.payload());
        }
        assert_eq!(seen, msg);
        assert_eq!(write_packet(&mut [0u8; 30], &HDR, &[&msg], 0, 20, false), None);
        assert_eq!(write_packet(&mut [0u8; 64], &HDR, &[&msg], 4, 20, false), None);
    }
}
