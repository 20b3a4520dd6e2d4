//! # Where the headers of an Ethernet / IPv4 / TCP frame sit (private to the offloads)
//!
//! What it is: one validating parse that finds the IPv4 header behind up to two VLAN tags
//! and the TCP header behind the IPv4 options (through `libos::wire`'s [`EthernetFrame`],
//! [`Ipv4Packet`] and [`TcpPacket`] views), and the pseudo-header sum.
//!
//! What it never does: look at the payload, trust a length it has not checked against the
//! buffer, panic (every index it returns is inside the buffer it parsed).
//!
//! Invariant: for a [`Layout`] returned by [`parse`] on `buf`,
//! `l3 + 20 <= l4 && l4 + 20 <= payload <= buf.len()`, so fixed-offset accesses to the IPv4
//! header (`l3 + 0..20`) and the TCP header (`l4 + 0..20`) cannot panic.

use libos::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket, IPV4_HEADER_LEN, TCP_HEADER_LEN,
};

use super::OffloadError;

/// Offsets of the headers of a TCP/IPv4 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Start of the IPv4 header (14, 18 or 22).
    pub l3: usize,
    /// Start of the TCP header (`l3` + IPv4 header length).
    pub l4: usize,
    /// Start of the TCP payload (`l4` + TCP header length): the frame's header length.
    pub payload: usize,
}

/// Finds the IPv4 header behind up to two VLAN tags; returns its offset. Checks that the
/// whole IPv4 header (options included) is in `buf`, version 4 and IHL ≥ 5; not the total
/// length (a super-segment's may not describe it, a received frame's is checked by the caller).
pub(crate) fn ipv4(buf: &[u8]) -> Result<usize, OffloadError> {
    let eth = EthernetFrame::new_checked(buf).map_err(|e| match e {
        libos::wire::Error::Truncated => {
            OffloadError::Truncated { what: "ethernet header", needed: 14, len: buf.len() }
        }
        libos::wire::Error::Malformed => OffloadError::Malformed("ethernet header: 3 vlan tags"),
    })?;
    let l3 = eth.header_len();
    match eth.inner_ethertype() {
        EtherType::Ipv4 => {}
        other => return Err(OffloadError::NotIpv4(other.into())),
    }
    let need =
        |n: usize| OffloadError::Truncated { what: "ipv4 header", needed: n, len: buf.len() };
    let ip = buf.get(l3..).filter(|b| b.len() >= IPV4_HEADER_LEN).ok_or(need(l3 + 20))?;
    let ip = Ipv4Packet::new_unchecked(ip);
    if ip.version() != 4 || ip.header_len() < IPV4_HEADER_LEN {
        return Err(OffloadError::Malformed("ipv4 version or header length"));
    }
    if l3 + ip.header_len() > buf.len() {
        return Err(need(l3 + ip.header_len()));
    }
    Ok(l3)
}

/// Finds the headers of a TCP/IPv4 frame; they must all be in `buf` (which may end there, as
/// the header part of a super-segment does). Refuses fragments.
pub(crate) fn tcp_v4(buf: &[u8]) -> Result<Layout, OffloadError> {
    let l3 = ipv4(buf)?;
    let ip = Ipv4Packet::new_unchecked(&buf[l3..]);
    match ip.protocol() {
        IpProtocol::Tcp => {}
        other => return Err(OffloadError::NotTcp(other.into())),
    }
    if ip.is_fragment() {
        return Err(OffloadError::Fragment);
    }
    let l4 = l3 + ip.header_len();
    let need = |n: usize| OffloadError::Truncated { what: "tcp header", needed: n, len: buf.len() };
    if l4 + TCP_HEADER_LEN > buf.len() {
        return Err(need(l4 + TCP_HEADER_LEN));
    }
    // Not `TcpPacket::new_checked`: a super-segment's TCP "segment" may exceed 65535 bytes.
    let thl = TcpPacket::new_unchecked(&buf[l4..]).header_len();
    if thl < TCP_HEADER_LEN {
        return Err(OffloadError::Malformed("tcp data offset"));
    }
    if l4 + thl > buf.len() {
        return Err(need(l4 + thl));
    }
    Ok(Layout { l3, l4, payload: l4 + thl })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tags: &[u16], ethertype: u16, ihl: u8, proto: u8, doff: u8) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for &t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        let l3 = f.len();
        f.resize(l3 + usize::from(ihl) * 4, 0);
        f[l3] = 0x40 | ihl;
        f[l3 + 9] = proto;
        f[l3 + 2..l3 + 4].copy_from_slice(&100u16.to_be_bytes());
        let l4 = f.len();
        f.resize(l4 + usize::from(doff) * 4, 0);
        f[l4 + 12] = doff << 4;
        f
    }

    #[test]
    fn finds_headers_behind_tags_and_options() {
        let f = frame(&[], 0x0800, 5, 6, 5);
        assert_eq!(tcp_v4(&f), Ok(Layout { l3: 14, l4: 34, payload: 54 }));
        let f = frame(&[0x8100], 0x0800, 6, 6, 8);
        assert_eq!(tcp_v4(&f), Ok(Layout { l3: 18, l4: 42, payload: 74 }));
        let f = frame(&[0x88a8, 0x8100], 0x0800, 15, 6, 15);
        assert_eq!(tcp_v4(&f), Ok(Layout { l3: 22, l4: 82, payload: 142 }));
    }

    #[test]
    fn refuses_what_it_cannot_handle() {
        assert_eq!(
            tcp_v4(&frame(&[0x8100, 0x8100, 0x8100], 0x0800, 5, 6, 5)),
            Err(OffloadError::Malformed("ethernet header: 3 vlan tags"))
        );
        assert_eq!(tcp_v4(&frame(&[], 0x86dd, 5, 6, 5)), Err(OffloadError::NotIpv4(0x86dd)));
        assert_eq!(tcp_v4(&frame(&[], 0x0800, 5, 17, 5)), Err(OffloadError::NotTcp(17)));
        assert!(matches!(tcp_v4(&frame(&[], 0x0800, 4, 6, 5)), Err(OffloadError::Malformed(_))));
        let mut f = frame(&[], 0x0800, 5, 6, 5);
        f[34 + 12] = 4 << 4;
        assert_eq!(tcp_v4(&f), Err(OffloadError::Malformed("tcp data offset")));
        let f = frame(&[], 0x0800, 5, 6, 8);
        assert!(matches!(tcp_v4(&f[..60]), Err(OffloadError::Truncated { needed: 66, .. })));
        let mut f = frame(&[], 0x0800, 5, 6, 5);
        f[14 + 6] = 0x20; // MF
        assert_eq!(tcp_v4(&f), Err(OffloadError::Fragment));
    }

    #[test]
    fn never_panics_on_short_buffers() {
        let f = frame(&[0x8100], 0x0800, 15, 6, 15);
        for n in 0..f.len() {
            assert!(tcp_v4(&f[..n]).is_err());
        }
    }
}
