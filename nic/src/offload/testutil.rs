//! # Test frames for the offload tests
//!
//! Builds Ethernet (+ VLAN tags) / IPv4 (+ options) / TCP (+ options) frames byte by byte, with
//! checksums computed the naive way ([`checksum::reference`] over the bytes as they go on the
//! wire), so the offloads are checked against code that shares nothing with them.

use libos::wire::checksum;
use proptest::prelude::*;

/// Everything about a TCP/IPv4 frame but its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// VLAN tags (TCI values), 0 to 2; the outer one of two is an 802.1ad S-tag.
    pub vlans: Vec<u16>,
    /// IPv4 option bytes (a multiple of 4, at most 40).
    pub ip_opts: Vec<u8>,
    /// TCP option bytes (a multiple of 4, at most 40).
    pub tcp_opts: Vec<u8>,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            vlans: vec![],
            ip_opts: vec![],
            tcp_opts: vec![],
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            sport: 40000,
            dport: 80,
            seq: 1000,
            ack: 5000,
            flags: 0x10,
            window: 512,
            ttl: 64,
            tos: 0,
            id: 7,
            df: true,
        }
    }
}

impl Spec {
    /// Bytes in front of the payload.
    pub fn hdr_len(&self) -> usize {
        14 + 4 * self.vlans.len() + 20 + self.ip_opts.len() + 20 + self.tcp_opts.len()
    }

    /// Where the IPv4 header starts.
    pub fn l3(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// Where the TCP header starts.
    pub fn l4(&self) -> usize {
        self.l3() + 20 + self.ip_opts.len()
    }
}

/// Naive pseudo-header + segment checksum.
pub fn tcp_checksum(src: [u8; 4], dst: [u8; 4], segment: &[u8]) -> u16 {
    let mut v = Vec::with_capacity(12 + segment.len());
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&[0, 6]);
    v.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    v.extend_from_slice(segment);
    !checksum::reference(&v)
}

/// A frame on the wire: both checksums complete (computed naively), total length right.
pub fn frame(spec: &Spec, payload: &[u8]) -> Vec<u8> {
    let mut f = headers(spec, payload.len());
    f.extend_from_slice(payload);
    let (l3, l4) = (spec.l3(), spec.l4());
    let c = tcp_checksum(spec.src, spec.dst, &f[l4..]);
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    let c = !checksum::reference(&f[l3..l4]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// A TCP super-segment as the stack hands it to TSO: total length as if it were one datagram
/// (wrapping past 65535, where it means nothing), IPv4 checksum complete for that, and the TCP
/// checksum field holding the pseudo-header sum without the length (vnet.rs convention).
pub fn super_segment(spec: &Spec, payload: &[u8]) -> Vec<u8> {
    let mut f = headers(spec, payload.len());
    f.extend_from_slice(payload);
    let (l3, l4) = (spec.l3(), spec.l4());
    let mut ph = Vec::new();
    ph.extend_from_slice(&spec.src);
    ph.extend_from_slice(&spec.dst);
    ph.extend_from_slice(&[0, 6, 0, 0]);
    let pseudo = checksum::reference(&ph);
    f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let c = !checksum::reference(&f[l3..l4]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// Headers with zero checksums, for a payload of `payload_len` bytes.
fn headers(spec: &Spec, payload_len: usize) -> Vec<u8> {
    assert!(spec.vlans.len() <= 2 && spec.ip_opts.len() % 4 == 0 && spec.tcp_opts.len() % 4 == 0);
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (i, tci) in spec.vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && spec.vlans.len() == 2 { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ihl = 20 + spec.ip_opts.len();
    let thl = 20 + spec.tcp_opts.len();
    let total = (ihl + thl + payload_len) as u16; // wraps for a super-segment past 64 KiB
    f.push(0x40 | (ihl / 4) as u8);
    f.push(spec.tos);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&spec.id.to_be_bytes());
    f.extend_from_slice(&(if spec.df { 0x4000u16 } else { 0 }).to_be_bytes());
    f.extend_from_slice(&[spec.ttl, 6, 0, 0]);
    f.extend_from_slice(&spec.src);
    f.extend_from_slice(&spec.dst);
    f.extend_from_slice(&spec.ip_opts);
    f.extend_from_slice(&spec.sport.to_be_bytes());
    f.extend_from_slice(&spec.dport.to_be_bytes());
    f.extend_from_slice(&spec.seq.to_be_bytes());
    f.extend_from_slice(&spec.ack.to_be_bytes());
    f.push(((thl / 4) as u8) << 4);
    f.push(spec.flags);
    f.extend_from_slice(&spec.window.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    f.extend_from_slice(&spec.tcp_opts);
    f
}

/// Option bytes: NOP-padded timestamps (the usual 12 bytes), a random multiple of 4, or none.
pub fn tcp_options() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| {
            let mut v = vec![1, 1, 8, 10];
            v.extend_from_slice(&a.to_be_bytes());
            v.extend_from_slice(&b.to_be_bytes());
            v
        }),
        (0usize..=10).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4)),
    ]
}

/// A random header spec (addresses and ports from a small set, so flows repeat).
pub fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![Just(vec![]), Just(vec![100]), Just(vec![7, 100])],
        (0usize..=10).prop_flat_map(|w| proptest::collection::vec(Just(1u8), w * 4)),
        tcp_options(),
        (any::<u32>(), any::<u32>(), any::<u8>(), any::<u16>()),
        (any::<u8>(), any::<u8>(), any::<u16>(), any::<bool>()),
    )
        .prop_map(
            |(vlans, ip_opts, tcp_opts, (seq, ack, flags, window), (ttl, tos, id, df))| Spec {
                vlans,
                ip_opts,
                tcp_opts,
                seq,
                ack,
                flags,
                window,
                ttl,
                tos,
                id,
                df,
                ..Spec::default()
            },
        )
}
