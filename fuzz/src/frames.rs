//! Structured frames for the targets: Ethernet (0–2 VLAN tags) / IPv4 (with options) / TCP or
//! UDP or ICMP (with options) / payload, checksums right, every field chosen by the fuzzer, and
//! an optional corruption afterwards. Starting from a well-formed frame gets the fuzzer past
//! the first checks of every layer; the corruption explores each check itself.

use std::net::Ipv4Addr;

use arbitrary::{Result, Unstructured};
use libos::wire::{EthernetAddress, Ipv4Packet, TcpPacket, UdpPacket};

/// What [`build`] writes.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Destination and source MAC.
    pub dst_mac: EthernetAddress,
    pub src_mac: EthernetAddress,
    /// VLAN IDs of up to two 802.1Q tags.
    pub vlans: Vec<u16>,
    /// IPv4 addresses.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// IPv4 identification, DF, TTL, TOS.
    pub ident: u16,
    pub df: bool,
    pub ttl: u8,
    pub tos: u8,
    /// IPv4 options (padded to a multiple of 4, at most 40 bytes).
    pub ip_opts: Vec<u8>,
    /// IP protocol: 6 (TCP, built with `tcp`), 17 (UDP), anything else (raw payload).
    pub protocol: u8,
    /// TCP fields: ports, sequence and acknowledgment numbers, flags, window, options.
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub tcp_opts: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Spec {
    /// A TCP/IPv4 frame from 10.0.0.9:5000 to 10.0.0.1:80 with `payload`, no options.
    pub fn tcp(payload: Vec<u8>) -> Spec {
        Spec {
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            vlans: Vec::new(),
            src: Ipv4Addr::new(10, 0, 0, 9),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            ident: 1,
            df: true,
            ttl: 64,
            tos: 0,
            ip_opts: Vec::new(),
            protocol: 6,
            sport: 5000,
            dport: 80,
            seq: 1000,
            ack: 1,
            flags: 0x10,
            window: 65535,
            tcp_opts: Vec::new(),
            payload,
        }
    }

    /// Bytes before the L4 payload.
    pub fn hdr_len(&self) -> usize {
        self.l4() + self.l4_hdr_len()
    }

    /// Offset of the IPv4 header.
    pub fn l3(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// Offset of the L4 header.
    pub fn l4(&self) -> usize {
        self.l3() + 20 + self.ip_opts.len().div_ceil(4) * 4
    }

    fn l4_hdr_len(&self) -> usize {
        match self.protocol {
            6 => 20 + self.tcp_opts.len().div_ceil(4) * 4,
            17 => 8,
            _ => 0,
        }
    }
}

/// A random spec: mostly TCP between a few hosts and ports, sometimes with VLAN tags, IPv4
/// and TCP options; `payload` bytes up to `max_payload`.
pub fn spec(u: &mut Unstructured<'_>, max_payload: usize) -> Result<Spec> {
    let mut s = Spec::tcp(Vec::new());
    if u.ratio(1, 8)? {
        for _ in 0..u.int_in_range(1..=2)? {
            s.vlans.push(u.int_in_range(0..=4095)?);
        }
    }
    s.src = Ipv4Addr::new(10, 0, 0, *u.choose(&[9, 10, 11])?);
    s.ident = u.arbitrary()?;
    s.df = u.ratio(3, 4)?;
    s.ttl = if u.ratio(7, 8)? { 64 } else { u.arbitrary()? };
    s.tos = if u.ratio(7, 8)? { 0 } else { u.arbitrary()? };
    if u.ratio(1, 8)? {
        let n = u.int_in_range(1..=40)?;
        s.ip_opts = u.bytes(n)?.to_vec();
    }
    s.protocol = match u.int_in_range(0..=9)? {
        0..=7 => 6,
        8 => 17,
        _ => u.arbitrary()?,
    };
    s.sport = *u.choose(&[5000, 5001, 5002])?;
    s.dport = *u.choose(&[80, 81])?;
    s.seq = u.arbitrary()?;
    s.ack = u.arbitrary()?;
    s.flags = if u.ratio(3, 4)? { 0x10 } else { u.arbitrary()? };
    s.window = u.arbitrary()?;
    if u.ratio(1, 4)? {
        let n = u.int_in_range(1..=40)?;
        s.tcp_opts = u.bytes(n)?.to_vec();
    }
    let len = u.int_in_range(0..=max_payload)?;
    s.payload = (0..len).map(|i| (i * 7) as u8 ^ s.sport as u8).collect();
    Ok(s)
}

/// The frame `s` describes, with correct lengths and checksums.
pub fn build(s: &Spec) -> Vec<u8> {
    let (l3, l4, hl) = (s.l3(), s.l4(), s.hdr_len());
    let mut f = vec![0u8; hl + s.payload.len()];
    f[..6].copy_from_slice(&s.dst_mac.0);
    f[6..12].copy_from_slice(&s.src_mac.0);
    let mut at = 12;
    for &v in &s.vlans {
        f[at..at + 2].copy_from_slice(&0x8100u16.to_be_bytes());
        f[at + 2..at + 4].copy_from_slice(&(v & 0xfff).to_be_bytes());
        at += 4;
    }
    f[at..at + 2].copy_from_slice(&0x0800u16.to_be_bytes());
    f[l3 + 20..l3 + 20 + s.ip_opts.len()].copy_from_slice(&s.ip_opts);
    match s.protocol {
        6 => {
            f[l4 + 20..l4 + 20 + s.tcp_opts.len()].copy_from_slice(&s.tcp_opts);
        }
        17 => {}
        _ => {}
    }
    f[hl..].copy_from_slice(&s.payload);
    let total = (f.len() - l3).min(usize::from(u16::MAX)) as u16;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[l3..]);
        ip.set_version(4);
        ip.set_header_len(l4 - l3);
        ip.set_dscp(s.tos >> 2);
        ip.set_ecn(s.tos & 3);
        ip.set_total_len(total);
        ip.set_ident(s.ident);
        ip.set_dont_frag(s.df);
        ip.set_ttl(s.ttl);
        ip.set_protocol(s.protocol.into());
        ip.set_src_addr(s.src);
        ip.set_dst_addr(s.dst);
        ip.fill_checksum();
    }
    match s.protocol {
        6 => {
            let mut t = TcpPacket::new_unchecked(&mut f[l4..]);
            t.set_src_port(s.sport);
            t.set_dst_port(s.dport);
            t.set_seq_number(s.seq);
            t.set_ack_number(s.ack);
            t.set_header_len(hl - l4);
            t.set_flags(libos::wire::TcpFlags::from_bits(s.flags));
            t.set_window_len(s.window);
            t.fill_checksum(s.src, s.dst);
        }
        17 => {
            let len = (f.len() - l4).min(usize::from(u16::MAX)) as u16;
            let mut d = UdpPacket::new_unchecked(&mut f[l4..]);
            d.set_src_port(s.sport);
            d.set_dst_port(s.dport);
            d.set_len(len);
            d.fill_checksum(s.src, s.dst);
        }
        _ => {}
    }
    f
}

/// Now and then flips, overwrites, truncates or extends a built frame.
pub fn corrupt(u: &mut Unstructured<'_>, mut f: Vec<u8>) -> Result<Vec<u8>> {
    match u.int_in_range(0..=15)? {
        0 if !f.is_empty() => {
            let at = u.choose_index(f.len())?;
            f[at] ^= u.int_in_range(1..=255)?;
        }
        1 if !f.is_empty() => {
            let at = u.choose_index(f.len())?;
            f[at] = u.arbitrary()?;
        }
        2 => {
            let n = u.choose_index(f.len() + 1)?;
            f.truncate(n);
        }
        3 => {
            let n = u.int_in_range(1..=32)?;
            f.extend(std::iter::repeat_n(0, n));
        }
        _ => {}
    }
    Ok(f)
}
