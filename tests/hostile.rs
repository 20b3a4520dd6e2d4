//! Hostile packets against a running daemon (`xdpos run --config FILE`) on the namespace rig
//! (root), in both of the roles that take packets apart: a server (UDP echo, TCP echo and TCP
//! sink on the library-OS stack) and a router. Frames are crafted in Rust and injected from an
//! AF_XDP socket on A's veth (the same way `tcp_kernel.rs` floods SYNs), while kernel clients
//! in A keep using the services; the daemon's drop counts are read from its `/metrics`
//! endpoint, and it is stopped with SIGTERM (exit 0, frame accounting, nothing attached):
//!
//! - every layer's errors to the server's address: IPv4 total length past the frame or short
//!   of the header, bad header, UDP, ICMP and TCP checksums, UDP length fields that lie,
//!   martian sources, unknown protocols, UDP to a closed port, unsolicited ICMP, IP options,
//!   overlapping, duplicate, tiny, oversized (past 65535 bytes) and never-completed fragments,
//!   every TCP flag combination, an ARP flood and spoofed ARP replies claiming the server's
//!   address, then a SYN flood: `/metrics` must count each drop under its reason (exactly, per
//!   reason, nothing else), every SYN of the flood must be answered (SYN-ACK or cookie) or
//!   counted, and the kernel client must have been served (UDP echo, TCP echo on an old and a
//!   new connection, a stream into the TCP sink) between every volley;
//! - frames the steering program cannot parse (runts, IPv4 version and header-length errors)
//!   never reach the daemon's stack: they are passed to the kernel and counted as unparsed;
//! - the answers RFCs prescribe (RST or RST|ACK for TCP segments to a closed port or a
//!   listener, SYN|ACK, silence, ICMP port and protocol unreachable, echo replies) are the
//!   Linux kernel's: the same probes go to the daemon and to a kernel host, and the replies,
//!   described relative to each probe, must be the same;
//! - unexpected segments on an established connection (RSTs and data out of the window, a SYN,
//!   an ACK of unsent data) get the kernel's answers (RFC 5961 challenge ACKs, duplicate ACKs);
//! - the router role, with its forwarding in userspace and with the default `auto` fast path
//!   (XDP, which punts all of these to the workers): transit packets broken at the IPv4 layer
//!   (lengths, version, header length, checksum, TTL 1 and 0, martian sources and destinations,
//!   no route, a source route) are dropped under their reason, exactly, while it keeps
//!   forwarding;
//! - the router's ICMP errors (time exceeded, net unreachable, fragmentation needed for an
//!   egress MTU smaller than the packet, silence for later fragments and ICMP errors) are a
//!   Linux router's given the same transit packets: type, code, source, TTL, TOS, DF, IP ID,
//!   length and the quote (up to 576 bytes in all), but for one justified TOS difference;
//! - the steering program (security): of a mix of frames for owned and foreign addresses,
//!   ports, protocols, fragments and VLANs, exactly the owned ones reach the AF_XDP socket,
//!   and every other one reaches the kernel.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use libos::sim::frames::{arp_reply, arp_request, icmp_echo_frame, ipv4_fragments, udp_frame};
use libos::sim::tcp::{repr, tcp_frame};
use libos::wire::{
    EthernetAddress, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket,
};
use nic::afxdp::{L4Proto, XdpMode, XdpProgram, XskConfig, XskPort};
use nic::{Burst, Port};
use xdpos::rig::{Chain, ChainOpts, Netns, Pair, PairOpts};
use xdpos_tests::*;

const UDP_ECHO: u16 = 7;
const TCP_ECHO: u16 = 8;
const CLOSED: u16 = 9;
const TCP_SINK: u16 = 10;
/// The spoofed source the hostile frames come from (an address A's kernel also holds, so that
/// ARP for it resolves and replies to it are absorbed).
const HOSTILE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

/// The tests take turns: replies are timed, the machine has two CPUs, and every daemon serves
/// its metrics on the same port (each in its own namespace).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Injection and capture in A.

/// An AF_XDP socket on A's veth: sends crafted frames; with `capture`, every frame arriving at
/// A goes to it (A's kernel sees none meanwhile), else A's kernel keeps its traffic.
struct Wire {
    port: XskPort,
    _prog: XdpProgram,
}

impl Wire {
    fn open(ifname: &str, capture: bool) -> Wire {
        let prog = XdpProgram::attach(ifname, XdpMode::Native).expect("attach in A");
        let steered = if capture { prog.steer_all() } else { prog.steer_none() };
        steered.expect("steer");
        let port = XskPort::open(&XskConfig::new(ifname, 0), &prog).expect("AF_XDP socket in A");
        Wire { port, _prog: prog }
    }

    /// Sends every frame (waiting, bounded, for ring room); returns how many left.
    fn send(&mut self, frames: &[Vec<u8>]) -> usize {
        let mut sent = 0;
        let deadline = Instant::now() + DEADLINE;
        let mut b = Burst::new();
        while sent < frames.len() && Instant::now() < deadline {
            self.port.reclaim();
            let got = self.port.alloc_burst(&mut b, (frames.len() - sent).min(32));
            if got == 0 {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            let descs: Vec<nic::Desc> = b.iter().copied().collect();
            for (i, d) in descs.iter().enumerate() {
                let f = &frames[sent + i];
                self.port.room_mut(d)[..f.len()].copy_from_slice(f);
            }
            for (i, d) in b.as_mut_slice().iter_mut().enumerate() {
                d.len = frames[sent + i].len() as u32;
            }
            sent += self.port.tx_burst(&mut b);
            self.port.free_burst(&mut b);
        }
        sent
    }

    /// Every frame that arrives within `limit`.
    fn recv(&mut self, limit: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = Instant::now() + limit;
        let mut b = Burst::new();
        while Instant::now() < deadline {
            self.port.rx_burst(&mut b);
            out.extend(b.iter().map(|d| self.port.frame(d).to_vec()));
            let idle = b.is_empty();
            self.port.free_burst(&mut b);
            if idle {
                self.port.reclaim();
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        out
    }

    fn close(mut self) {
        assert_frames_accounted(&mut self.port);
    }
}

// ---------------------------------------------------------------------------------------------
// Frames.

struct Macs {
    a: EthernetAddress,
    b: EthernetAddress,
}

impl Macs {
    fn of(pair: &Pair) -> Macs {
        Macs { a: EthernetAddress(pair.a.mac), b: EthernetAddress(pair.b.mac) }
    }
}

/// The IPv4 header of an untagged frame, mutably; refills its checksum unless told not to.
fn with_ip(mut f: Vec<u8>, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>), fill: bool) -> Vec<u8> {
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        edit(&mut ip);
        if fill {
            ip.fill_checksum();
        }
    }
    f
}

fn udp(m: &Macs, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let p = payload(u32::from(sport), len);
    udp_frame(m.a, m.b, SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport), &p)
}

fn tcp(m: &Macs, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let r = repr(sport, dport, 0x1234_5678, 0x0bad_cafe, TcpFlags::from_bits(flags), 64240);
    tcp_frame(m.a, m.b, HOSTILE, dst, &r, payload)
}

/// A volley of hostile frames and the drops the appliance must count for it.
struct Volley {
    name: &'static str,
    frames: Vec<Vec<u8>>,
    /// Drop reasons (`reason` labels of `/metrics`, TCP's with a `tcp_` prefix) and how many of
    /// each the volley adds.
    drops: Vec<(&'static str, u64)>,
}

/// Frames to the server's address that the steering program hands to the daemon, each broken
/// at one layer, with the reason the daemon must count.
fn volleys(m: &Macs, b: Ipv4Addr) -> Vec<Volley> {
    const N: usize = 20;
    let rep = |f: Vec<u8>| vec![f; N];
    let n = N as u64;
    let good = udp(m, HOSTILE, b, 40000, UDP_ECHO, 64);
    let mut v = vec![
        Volley {
            name: "IPv4 total length past the end of the frame",
            frames: rep(with_ip(good.clone(), |ip| ip.set_total_len(1400), true)),
            drops: vec![("truncated", n)],
        },
        Volley {
            name: "IPv4 total length shorter than the header",
            frames: rep(with_ip(good.clone(), |ip| ip.set_total_len(12), true)),
            drops: vec![("malformed", n)],
        },
        Volley {
            name: "IPv4 header checksum wrong",
            frames: rep(with_ip(good.clone(), |ip| ip.set_checksum(ip.checksum() ^ 0x0101), false)),
            drops: vec![("bad_checksum", n)],
        },
        Volley {
            name: "UDP checksum wrong",
            frames: rep({
                let mut f = good.clone();
                f[34 + 6] ^= 0x40;
                f
            }),
            drops: vec![("bad_checksum", n)],
        },
        Volley {
            name: "UDP length past the IPv4 payload",
            frames: rep({
                let mut f = good.clone();
                f[34 + 4..34 + 6].copy_from_slice(&200u16.to_be_bytes());
                f
            }),
            drops: vec![("truncated", n)],
        },
        Volley {
            name: "UDP length below its header",
            frames: rep({
                let mut f = good.clone();
                f[34 + 4..34 + 6].copy_from_slice(&4u16.to_be_bytes());
                f
            }),
            drops: vec![("malformed", n)],
        },
        Volley {
            name: "martian sources (loopback, broadcast, our own address)",
            frames: [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::BROADCAST, b]
                .iter()
                .flat_map(|&s| vec![udp(m, s, b, 40001, UDP_ECHO, 32); N])
                .collect(),
            drops: vec![("bad_source", 3 * n)],
        },
        Volley {
            name: "UDP to a closed port (port unreachable, rate-limited)",
            frames: rep(udp(m, HOSTILE, b, 40002, CLOSED, 32)),
            drops: vec![("no_socket", n)],
        },
        Volley {
            name: "unknown IP protocol (protocol unreachable, rate-limited)",
            frames: rep(with_ip(
                good.clone(),
                |ip| ip.set_protocol(IpProtocol::Unknown(253)),
                true,
            )),
            drops: vec![("unknown_protocol", n)],
        },
        Volley {
            name: "ICMP checksum wrong",
            frames: rep({
                let mut f = icmp_echo_frame(m.a, m.b, HOSTILE, b, 7, 1, &[1; 56]);
                f[34 + 2] ^= 0x10;
                f
            }),
            drops: vec![("bad_checksum", n)],
        },
        Volley {
            name: "unsolicited ICMP echo replies",
            frames: rep({
                let mut f = icmp_echo_frame(m.a, m.b, HOSTILE, b, 7, 1, &[1; 56]);
                let mut p = Icmpv4Packet::new_unchecked(&mut f[34..]);
                p.set_msg_type(libos::wire::Icmpv4Message::EchoReply);
                p.fill_checksum();
                f
            }),
            drops: vec![("icmp_ignored", n)],
        },
        Volley {
            name: "TCP checksum wrong",
            frames: rep({
                let mut f = tcp(m, b, 40003, TCP_ECHO, 0x02, &[]);
                f[34 + 16] ^= 0x08;
                f
            }),
            drops: vec![("bad_checksum", n)],
        },
        Volley {
            name: "every combination of the six classic TCP flags to a closed port",
            frames: (0..64u8).map(|fl| tcp(m, b, 41000 + u16::from(fl), CLOSED, fl, &[])).collect(),
            // The 32 without RST are answered with a reset (RFC 9293 §3.10.7.1), the 32 with
            // RST are dropped silently: all are segments for no socket.
            drops: vec![("no_socket", 64), ("tcp_no_socket", 64)],
        },
    ];
    // Fragments: overlapping (the datagram dropped), duplicate (kept once), tiny, and never
    // completed (held until the reassembly timeout, not counted yet).
    let dgram = libos::sim::frames::udp_datagram(
        SocketAddrV4::new(HOSTILE, 40010),
        SocketAddrV4::new(b, UDP_ECHO),
        &payload(1, 1200),
    );
    let frags =
        |ident: u16| ipv4_fragments(m.a, m.b, HOSTILE, b, IpProtocol::Udp, ident, &dgram, 500);
    let overlap = {
        let f = frags(100);
        // The second fragment's bytes again, 8 bytes further on: it overlaps the second
        // fragment in part and reaches into bytes not received yet (a fragment covered
        // entirely by what arrived is a duplicate instead).
        let second = with_ip(f[1].clone(), |ip| ip.set_frag_offset(ip.frag_offset() + 8), true);
        vec![f[0].clone(), f[1].clone(), second]
    };
    v.push(Volley {
        name: "overlapping fragments",
        frames: overlap,
        drops: vec![("fragment_overlap", 1)],
    });
    let dup = {
        let f = frags(101);
        vec![f[0].clone(), f[0].clone(), f[1].clone(), f[1].clone(), f[2].clone()]
    };
    v.push(Volley {
        name: "duplicate fragments",
        frames: dup,
        drops: vec![("fragment_duplicate", 2)],
    });
    let never = frags(102)[..2].to_vec();
    v.push(Volley { name: "a datagram never completed", frames: never, drops: vec![] });
    // Tiny fragments: 8 bytes each (the UDP header alone in the first), a complete datagram.
    let tiny = ipv4_fragments(
        m.a,
        m.b,
        HOSTILE,
        b,
        IpProtocol::Udp,
        103,
        &libos::sim::frames::udp_datagram(
            SocketAddrV4::new(HOSTILE, 40011),
            SocketAddrV4::new(b, UDP_ECHO),
            &payload(2, 40),
        ),
        28,
    );
    v.push(Volley { name: "tiny fragments (8 bytes each)", frames: tiny, drops: vec![] });
    // Oversized: datagrams whose final fragment ends past 65535 bytes (the ping of death, in
    // UDP), each after a first fragment that opened its reassembly.
    let pod: Vec<Vec<u8>> = (0..10u16)
        .flat_map(|k| {
            let f = frags(110 + k);
            let last = with_ip(f[2].clone(), |ip| ip.set_frag_offset(65512), true);
            [f[0].clone(), last]
        })
        .collect();
    v.push(Volley {
        name: "oversized datagrams (a final fragment ending past 65535 bytes)",
        frames: pod,
        drops: vec![("fragment_limit", 10)],
    });
    // IP options: a ping with a record-route option is answered; a loose source route too
    // (a host ignores it: the ping is for it).
    let rr = {
        let f = icmp_echo_frame(m.a, m.b, HOSTILE, b, 9, 1, &[7; 32]);
        with_options(f, &[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    };
    v.push(Volley { name: "IP options (record route)", frames: vec![rr; 4], drops: vec![] });
    // ARP: a flood of requests for the appliance's address from 200 senders (answered), and
    // replies spoofing the appliance's own address (conflicts, ignored).
    let flood: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mac = EthernetAddress([0x02, 0x42, 0, 0, (i >> 8) as u8, i as u8]);
            arp_request(mac, Ipv4Addr::new(10, 0, 1, (i % 200) as u8 + 1), b)
        })
        .collect();
    v.push(Volley { name: "ARP request flood from 2000 MACs", frames: flood, drops: vec![] });
    let spoof: Vec<Vec<u8>> = (0..50u8)
        .map(|i| {
            let mac = EthernetAddress([0x02, 0x66, 0, 0, 0, i]);
            arp_reply(mac, b, m.b, b)
        })
        .collect();
    v.push(Volley {
        name: "ARP replies claiming the appliance's address",
        frames: spoof,
        drops: vec![("arp_ignored", 50)],
    });
    v
}

/// Inserts IPv4 options (a multiple of 4 bytes) into an untagged frame.
fn with_options(f: Vec<u8>, opts: &[u8]) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut out = f[..34].to_vec();
    out.extend_from_slice(opts);
    out.extend_from_slice(&f[34..]);
    with_ip(
        out,
        |ip| {
            ip.set_header_len(20 + opts.len());
            ip.set_total_len(ip.total_len() + opts.len() as u16);
        },
        true,
    )
}

/// Frames the steering program cannot parse as IPv4: they stay the kernel's.
fn unparsed(m: &Macs, b: Ipv4Addr) -> Vec<Vec<u8>> {
    let good = udp(m, HOSTILE, b, 40020, UDP_ECHO, 64);
    let mut v = Vec::new();
    for len in [14usize, 20, 33] {
        v.push(good[..len].to_vec()); // IPv4 header cut short
    }
    v.push(with_ip(good.clone(), |ip| ip.set_version(6), true));
    v.push(with_ip(good.clone(), |ip| ip.set_header_len(16), true));
    v.push(with_ip(good.clone(), |ip| ip.set_version(0), true));
    v
}

// ---------------------------------------------------------------------------------------------
// The daemon and its metrics.

/// The server: one worker on B's veth, UDP echo, TCP echo and a TCP sink on B's address.
fn server_config(pair: &Pair) -> String {
    let services = [("udp-echo", UDP_ECHO), ("tcp-echo", TCP_ECHO), ("tcp-sink", TCP_SINK)];
    server_toml((&pair.b.ifname, pair.b.ip), Some(4096), 1, &services)
}

// ---------------------------------------------------------------------------------------------
// The server role.

/// The kernel client in A (the calling thread is in A): UDP echoes, one round trip on the
/// long-lived TCP connection `conn` and one on a fresh connection, and a stream into the TCP
/// sink that it closes when the peer does. Panics if any fails.
fn served(b: Ipv4Addr, conn: &mut TcpStream, what: &str) {
    let s = kernel_udp(Ipv4Addr::UNSPECIFIED, 0);
    let mut buf = [0u8; 256];
    for i in 0..5 {
        s.send_to(&payload(i, 100), SocketAddrV4::new(b, UDP_ECHO)).unwrap();
        let n = s.recv(&mut buf).unwrap_or_else(|e| panic!("UDP echo {i} after {what}: {e}"));
        assert_eq!(check_payload(&buf[..n]), Some(i), "UDP echo after {what}");
    }
    let fresh = |port: u16| {
        let c =
            TcpStream::connect_timeout(&SocketAddrV4::new(b, port).into(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("new TCP connection to {port} after {what}: {e}"));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    };
    for c in [Some(conn), None] {
        let mut new;
        let c = match c {
            Some(c) => c,
            None => {
                new = fresh(TCP_ECHO);
                &mut new
            }
        };
        c.write_all(b"still there?").unwrap();
        let mut got = [0u8; 12];
        c.read_exact(&mut got).unwrap_or_else(|e| panic!("TCP echo after {what}: {e}"));
        assert_eq!(&got, b"still there?");
    }
    let mut sink = fresh(TCP_SINK);
    sink.write_all(&payload(7, 20_000)).unwrap_or_else(|e| panic!("TCP sink after {what}: {e}"));
    sink.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    sink.read_to_end(&mut rest).unwrap_or_else(|e| panic!("TCP sink's close after {what}: {e}"));
    assert!(rest.is_empty(), "the sink sent {} bytes", rest.len());
}

/// SYNs from HOSTILE (one source port each) to the TCP echo listener.
fn syn_flood(m: &Macs, b: Ipv4Addr, n: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let sport = 20000 + k;
            let mut r = repr(sport, TCP_ECHO, 0x4000_0000 ^ u32::from(k), 0, TcpFlags::SYN, 64240);
            r.max_seg_size = Some(1460);
            tcp_frame(m.a, m.b, HOSTILE, b, &r, &[])
        })
        .collect()
}

/// The source ports of the SYN-ACKs among `frames` that answer a SYN of [`syn_flood`].
fn syn_acks(frames: &[Vec<u8>], into: &mut BTreeSet<u16>) {
    for f in frames {
        let Ok(e) = EthernetFrame::new_checked(&f[..]) else { continue };
        let Ok(ip) = Ipv4Packet::new_checked(e.payload()) else { continue };
        let Ok(t) = TcpPacket::new_checked(ip.payload()) else { continue };
        let k = t.dst_port().wrapping_sub(20000);
        if ip.protocol() == IpProtocol::Tcp
            && t.src_port() == TCP_ECHO
            && t.flags() == TcpFlags::from_bits(0x12)
            && t.ack_number() == (0x4000_0000 ^ u32::from(k)).wrapping_add(1)
        {
            into.insert(t.dst_port());
        }
    }
}

#[test]
fn hostile_frames_are_dropped_under_their_reason_while_kernel_clients_are_served() {
    let _turn = serial();
    sweep();
    let pair = Pair::new("hx", &PairOpts::default()).unwrap();
    pair.ns_a.sh(&format!("ip addr add {HOSTILE}/24 dev {}", pair.a.ifname)).unwrap();
    let d = Daemon::start(&pair.ns_b, "hostile-hx", &server_config(&pair));
    let m = Macs::of(&pair);
    let b = pair.b.ip;
    let vs = volleys(&m, b);
    const FLOOD: u16 = 2000;
    let flood = syn_flood(&m, b, FLOOD);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut tried = 0usize;
    let mut flood_report = String::new();
    pair.ns_a
        .run_in(|| {
            let mut conn = TcpStream::connect_timeout(
                &SocketAddrV4::new(b, TCP_ECHO).into(),
                Duration::from_secs(5),
            )
            .expect("kernel TCP connection to the daemon's echo");
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Sockets for the datagrams the daemon echoes from reassembly (else A's kernel
            // would answer them with port unreachable, counted by the daemon as ignored ICMP).
            let _sinks = [40010, 40011].map(|p| kernel_udp(HOSTILE, p));
            let mut wire = Wire::open(&pair.a.ifname, false);
            served(b, &mut conn, "nothing");
            for v in &vs {
                assert_eq!(wire.send(&v.frames), v.frames.len(), "{}: not all sent", v.name);
                tried += v.frames.len();
                std::thread::sleep(Duration::from_millis(50));
                served(b, &mut conn, v.name);
                for &(k, n) in &v.drops {
                    *want.entry(k.to_string()).or_default() += n;
                }
            }
            wire.close();
            // Everything so far is counted, exactly, before the flood.
            let (got, text) = d.metrics_until(stack_drops, &want);
            assert_eq!(got, want, "drops by reason before the SYN flood:\n{text}");

            // The SYN flood, 64 SYNs every 2 ms from a capturing socket (A's kernel sees
            // nothing meanwhile, so it does not reset the half-open connections): every SYN
            // is answered with a SYN-ACK, from the SYN queue or with a cookie once it is full,
            // or its loss is counted (the stateless reply queue full, a full ring).
            let before = d.metrics();
            let mut w = Wire::open(&pair.a.ifname, true);
            // The ARP flood may have pushed HOSTILE out of the cache: a request from it puts
            // it back, so the SYN-ACKs do not wait on a resolution.
            assert_eq!(w.send(&[arp_request(m.a, HOSTILE, b)]), 1);
            w.recv(Duration::from_millis(50));
            let mut answered = BTreeSet::new();
            for chunk in flood.chunks(64) {
                assert_eq!(w.send(chunk), chunk.len(), "the SYN flood");
                syn_acks(&w.recv(Duration::from_millis(2)), &mut answered);
            }
            syn_acks(&w.recv(Duration::from_millis(300)), &mut answered);
            w.close();
            tried += flood.len();
            let after = d.metrics();
            let (d0, d1) = (stack_drops(&before), stack_drops(&after));
            let mut lost = xsk_drops(&after) - xsk_drops(&before);
            for (k, n) in &d1 {
                let delta = n - d0.get(k).copied().unwrap_or(0);
                if delta == 0 {
                    continue;
                }
                assert!(
                    [
                        "tcp_ctl_queue_full",
                        "tcp_syn_queue_full",
                        "tcp_listen_overflow",
                        "arp_pending_full",
                        "tx_backlog_full"
                    ]
                    .contains(&k.as_str()),
                    "the SYN flood dropped {delta} under {k}"
                );
                lost += delta;
                *want.entry(k.clone()).or_default() += delta;
            }
            let cookies = metric_total(&after, "xdpos_tcp_syn_cookies_sent_total")
                - metric_total(&before, "xdpos_tcp_syn_cookies_sent_total");
            flood_report = format!(
                "{FLOOD} SYNs: {} answered ({cookies} with cookies), {lost} counted lost",
                answered.len()
            );
            assert_eq!(answered.len() as u64 + lost, u64::from(FLOOD), "{flood_report}");
            assert!(cookies > 0, "the flood outgrew the SYN queue: {flood_report}");
            served(b, &mut conn, "the SYN flood");
        })
        .unwrap();
    let (drops, text) = d.metrics_until(stack_drops, &want);
    eprintln!("{tried} hostile frames; {flood_report}; drops {drops:?}");
    // Each reason exactly, and nothing else dropped (the clients' own traffic never is; RSTs
    // from A's kernel to the half-open connections' SYN-ACKs are not drops).
    assert_eq!(drops, want, "drops by reason:\n{text}");
    d.stop();
}

#[test]
fn frames_the_steering_program_cannot_parse_stay_with_the_kernel() {
    let _turn = serial();
    sweep();
    let pair = Pair::new("hu", &PairOpts::default()).unwrap();
    let d = Daemon::start(&pair.ns_b, "hostile-hu", &server_config(&pair));
    let unparsed_now =
        |text: &str| metric_by_label(text, "xdpos_xdp_packets_total", "verdict")["pass_unparsed"];
    let before = unparsed_now(&d.metrics());
    let m = Macs::of(&pair);
    let frames = unparsed(&m, pair.b.ip);
    pair.ns_a
        .run_in(|| {
            let mut w = Wire::open(&pair.a.ifname, false);
            assert_eq!(w.send(&frames), frames.len());
            std::thread::sleep(Duration::from_millis(100));
            w.close();
        })
        .unwrap();
    let text = d.metrics();
    assert_eq!(stack_drops(&text), BTreeMap::new(), "the stack saw frames it should not have");
    assert_eq!(unparsed_now(&text) - before, frames.len() as u64, "pass_unparsed:\n{text}");
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// Answers compared with the kernel's.

/// A reply described relative to the probe it answers (sequence numbers as offsets from the
/// probe's, ISNs hidden), so the kernel's and xdpos's can be compared.
fn describe(probe: &[u8], reply: &[u8]) -> Option<String> {
    let pe = EthernetFrame::new_checked(probe).ok()?;
    let pip = Ipv4Packet::new_checked(pe.payload()).ok()?;
    let re = EthernetFrame::new_checked(reply).ok()?;
    let rip = Ipv4Packet::new_checked(re.payload()).ok()?;
    if rip.dst_addr() != pip.src_addr() {
        return None;
    }
    match rip.protocol() {
        IpProtocol::Tcp if pip.protocol() == IpProtocol::Tcp => {
            let p = TcpPacket::new_checked(pip.payload()).ok()?;
            let r = TcpPacket::new_checked(rip.payload()).ok()?;
            if (r.dst_port(), r.src_port()) != (p.src_port(), p.dst_port()) {
                return None;
            }
            let f = r.flags();
            let seq = if f.contains(TcpFlags::SYN) {
                "isn".to_string()
            } else {
                format!("probe.ack{:+}", r.seq_number().wrapping_sub(p.ack_number()) as i32)
            };
            let ack = if f.contains(TcpFlags::ACK) {
                format!("probe.seq{:+}", r.ack_number().wrapping_sub(p.seq_number()) as i32)
            } else {
                "-".into()
            };
            Some(format!("tcp {f:?} seq={seq} ack={ack}"))
        }
        IpProtocol::Icmp => {
            let i = Icmpv4Packet::new_checked(rip.payload()).ok()?;
            // An error quotes the probe's header; a reply carries its identifier.
            let quoted = i.data().get(..20).is_some_and(|q| q[12..20] == pe.payload()[12..20]);
            let echo = pip.protocol() == IpProtocol::Icmp
                && Icmpv4Packet::new_checked(pip.payload())
                    .is_ok_and(|q| q.echo_ident() == i.echo_ident());
            (quoted || echo).then(|| format!("icmp {:?} code {}", i.msg_type(), i.msg_code()))
        }
        _ => None,
    }
}

/// Probes with an answer an RFC prescribes; each from its own source port or identifier.
fn probes(m: &Macs, b: Ipv4Addr) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (port, what) in [(TCP_ECHO, "listener"), (CLOSED, "closed port")] {
        for fl in 0..64u8 {
            let sport = 42000 + u16::from(fl) + if port == CLOSED { 100 } else { 0 };
            let data: &[u8] = if fl & 0x08 != 0 { b"data" } else { &[] };
            v.push((
                format!("{what}: flags {:?}", TcpFlags::from_bits(fl)),
                tcp(m, b, sport, port, fl, data),
            ));
        }
    }
    v.push(("UDP to a closed port".into(), udp(m, HOSTILE, b, 43000, CLOSED, 20)));
    v.push((
        "unknown protocol".into(),
        with_ip(
            udp(m, HOSTILE, b, 43001, UDP_ECHO, 20),
            |ip| ip.set_protocol(IpProtocol::Unknown(253)),
            true,
        ),
    ));
    v.push(("ping".into(), icmp_echo_frame(m.a, m.b, HOSTILE, b, 0x4242, 1, &[9; 40])));
    v.push(("ping with a bad checksum".into(), {
        let mut f = icmp_echo_frame(m.a, m.b, HOSTILE, b, 0x4343, 1, &[9; 40]);
        f[34 + 2] ^= 1;
        f
    }));
    v
}

/// Sends each probe from a capturing AF_XDP socket in A (one every 50 ms: the kernel's ICMP
/// rate limit lets single errors through) and describes the replies to each.
fn answers(pair: &Pair, probes: &[(String, Vec<u8>)]) -> Vec<(String, Vec<String>)> {
    let m = Macs::of(pair);
    captured_answers(&pair.ns_a, &pair.a.ifname, &m, (HOSTILE, pair.b.ip), probes, describe)
}

/// Sends each probe from `ifname` in `ns` (a capturing [`Wire`]: the kernel there sees
/// nothing) and describes what comes back within 50 ms with `describe(probe, reply)`, sorted,
/// duplicates removed. `ours` is the probes' source (A's side: `m.a`) and `peer` the address
/// of the host or router at `m.b`: a request from `ours` for `peer` first puts `ours` in its
/// ARP cache (Linux and xdpos both learn from it), so no answer waits on a resolution; later
/// requests for `ours` are answered.
fn captured_answers(
    ns: &Netns,
    ifname: &str,
    m: &Macs,
    (ours, peer): (Ipv4Addr, Ipv4Addr),
    probes: &[(String, Vec<u8>)],
    describe: fn(&[u8], &[u8]) -> Option<String>,
) -> Vec<(String, Vec<String>)> {
    ns.run_in(|| {
        let mut w = Wire::open(ifname, true);
        assert_eq!(w.send(&[arp_request(m.a, ours, peer)]), 1);
        w.recv(Duration::from_millis(50));
        let mut got = Vec::new();
        for (name, f) in probes {
            assert_eq!(w.send(std::slice::from_ref(f)), 1);
            let frames = w.recv(Duration::from_millis(50));
            for r in &frames {
                if let libos::sim::frames::Kind::Arp { op, target, .. } =
                    libos::sim::frames::classify(r)
                {
                    if op == libos::wire::ArpOperation::Request && target == ours {
                        w.send(&[arp_reply(m.a, ours, m.b, peer)]);
                    }
                }
            }
            let mut replies: Vec<String> = frames.iter().filter_map(|r| describe(f, r)).collect();
            replies.sort();
            replies.dedup(); // a retransmitted SYN-ACK is the same answer
            got.push((name.clone(), replies));
        }
        w.close();
        got
    })
    .unwrap()
}

#[test]
fn answers_to_hostile_probes_are_the_linux_kernels() {
    let _turn = serial();
    sweep();
    // The kernel host: B's address in B's kernel, a listener on TCP_ECHO, no xdpos.
    let kpair = Pair::new("hk", &PairOpts { b_kernel_ip: true, ..Default::default() }).unwrap();
    let m = Macs::of(&kpair);
    let listener = kpair
        .ns_b
        .run_in(|| std::net::TcpListener::bind(SocketAddrV4::new(kpair.b.ip, TCP_ECHO)).unwrap())
        .unwrap();
    let udp_sock = kpair.ns_b.run_in(|| kernel_udp(kpair.b.ip, UDP_ECHO)).unwrap();
    kpair.ns_b.sh("sysctl -qw net.ipv4.tcp_ecn=0").unwrap();
    let ps = probes(&m, kpair.b.ip);
    let kernel = answers(&kpair, &ps);
    drop((listener, udp_sock));

    let xpair = Pair::new("hy", &PairOpts::default()).unwrap();
    assert_eq!(Macs::of(&xpair).b, m.b, "both rigs use the same addresses");
    let d = Daemon::start(&xpair.ns_b, "hostile-hy", &server_config(&xpair));
    let xdpos = answers(&xpair, &ps);
    d.stop();

    let mut diffs = Vec::new();
    for ((name, k), (_, x)) in kernel.iter().zip(&xdpos) {
        if k != x {
            diffs.push(format!("{name}: kernel {k:?}, xdpos {x:?}"));
        }
    }
    let answered = kernel.iter().filter(|(_, k)| !k.is_empty()).count();
    eprintln!("{} probes, {answered} answered by the kernel", ps.len());
    assert!(answered >= 50, "the kernel answered only {answered} probes: {kernel:?}");
    assert!(diffs.is_empty(), "answers differ from the kernel's:\n{}", diffs.join("\n"));
    assert_no_xdp(&xpair.ns_b);
}

// ---------------------------------------------------------------------------------------------
// Security: the steering program takes only what the appliance owns.

#[test]
fn the_steering_program_redirects_only_what_the_appliance_owns() {
    let _turn = serial();
    sweep();
    let pair = Pair::new("hs", &PairOpts { b_kernel_ip: true, ..Default::default() }).unwrap();
    let m = Macs::of(&pair);
    let b = pair.b.ip;
    let other = Ipv4Addr::new(10, 0, 0, 3);
    let owned_addr = Ipv4Addr::new(10, 0, 0, 99);
    // (frame, owned?)
    let mut mix: Vec<(Vec<u8>, bool)> = vec![
        (udp(&m, HOSTILE, b, 1000, 7, 32), true), // owned (addr, UDP port)
        (udp(&m, HOSTILE, other, 1001, 7, 32), false), // same port, another address
        (udp(&m, HOSTILE, b, 1002, 8, 32), false), // another UDP port
        (tcp(&m, b, 1003, 7, 0x02, &[]), false),  // TCP to the UDP-owned port
        (tcp(&m, b, 1004, 80, 0x02, &[]), true),  // TCP port owned on any address
        (tcp(&m, other, 1005, 80, 0x02, &[]), true), // ... so on this one too
        (udp(&m, HOSTILE, b, 1006, 80, 32), false), // UDP to the TCP-owned port
        (udp(&m, HOSTILE, owned_addr, 1007, 9999, 32), true), // an owned address: everything
        (icmp_echo_frame(m.a, m.b, HOSTILE, owned_addr, 1, 1, &[0; 8]), true),
        (icmp_echo_frame(m.a, m.b, HOSTILE, b, 1, 1, &[0; 8]), false), // ping to the kernel
        (arp_request(m.a, HOSTILE, b), false), // ARP for the kernel's address
        (arp_request(m.a, HOSTILE, owned_addr), true), // ARP for the owned address
        (with_options(udp(&m, HOSTILE, b, 1008, 7, 32), &[1, 1, 1, 0]), true), // options
    ];
    // A datagram to the owned port in fragments: only the first carries the port.
    let d = libos::sim::frames::udp_datagram(
        SocketAddrV4::new(HOSTILE, 1009),
        SocketAddrV4::new(b, 7),
        &payload(3, 1000),
    );
    let fr = ipv4_fragments(m.a, m.b, HOSTILE, b, IpProtocol::Udp, 77, &d, 500);
    for (i, f) in fr.into_iter().enumerate() {
        mix.push((f, i == 0));
    }
    // A later fragment whose first bytes look like a header for the owned port.
    let mut fake = udp(&m, HOSTILE, b, 1010, 7, 32);
    fake = with_ip(fake, |ip| ip.set_frag_offset(64), true);
    mix.push((fake, false));
    // IPv6 and a VLAN-tagged frame for the owned port (the program parses the tag).
    let mut v6 = udp(&m, HOSTILE, b, 1011, 7, 32);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    mix.push((v6, false));
    let plain = udp(&m, HOSTILE, b, 1012, 7, 32);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&plain[12..]);
    mix.push((tagged, true));

    const ROUNDS: usize = 10;
    let owned = mix.iter().filter(|(_, o)| *o).count() * ROUNDS;
    let total = mix.len() * ROUNDS;
    let frames: Vec<Vec<u8>> =
        (0..ROUNDS).flat_map(|_| mix.iter().map(|(f, _)| f.clone())).collect();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let pair_b = &pair;
        let xdp = s.spawn(move || {
            let pair = pair_b;
            pair.ns_b.enter().unwrap();
            let prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Native).unwrap();
            prog.own_port(Some(b), L4Proto::Udp, 7).unwrap();
            prog.own_port(None, L4Proto::Tcp, 80).unwrap();
            prog.own_addr(owned_addr).unwrap();
            let mut port = XskPort::open(&XskConfig::new(&pair.b.ifname, 0), &prog).unwrap();
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut burst = Burst::new();
            let deadline = Instant::now() + DEADLINE;
            while done_rx.try_recv().is_err() && Instant::now() < deadline {
                port.rx_burst(&mut burst);
                got.extend(burst.iter().map(|d| port.frame(d).to_vec()));
                let idle = burst.is_empty();
                port.free_burst(&mut burst);
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            assert_frames_accounted(&mut port);
            (got, prog.verdicts().unwrap())
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();
        pair.ns_a
            .run_in(|| {
                let mut w = Wire::open(&pair.a.ifname, false);
                assert_eq!(w.send(&frames), frames.len());
                std::thread::sleep(Duration::from_millis(200));
                w.close();
            })
            .unwrap();
        done_tx.send(()).unwrap();
        let (got, verdicts) = xdp.join().unwrap();
        // Every frame the socket got is one of the owned ones, and all of those came.
        let owned_set: Vec<&Vec<u8>> = mix.iter().filter(|(_, o)| *o).map(|(f, _)| f).collect();
        for g in &got {
            assert!(owned_set.contains(&g), "a frame the appliance does not own: {g:02x?}");
        }
        assert_eq!(got.len(), owned, "owned frames redirected ({verdicts:?})");
        assert_eq!(verdicts.redirect.packets, owned as u64);
        // The rest went to the kernel (A's kernel adds its own frames to B now and then).
        let passed = verdicts.pass_not_owned.packets + verdicts.pass_unparsed.packets;
        assert!(passed >= (total - owned) as u64, "{verdicts:?}");
    });
    assert_no_xdp(&pair.ns_b);
}

// ---------------------------------------------------------------------------------------------
// The router role.

/// The router between A and B (F's veths, /24 each), with `fast_path` (`userspace` or `auto`).
fn router_config(chain: &Chain, fast_path: &str) -> String {
    let ifaces = [(chain.fa.ifname.as_str(), chain.fa.ip), (chain.fb.ifname.as_str(), chain.fb.ip)];
    router_toml(&ifaces, Some(4096), 1, Some(fast_path))
}

/// Forwarding in userspace: every packet goes through the workers.
#[test]
fn a_running_router_drops_hostile_transit_packets_under_their_reason_and_keeps_forwarding() {
    router_case("hr", "userspace");
}

/// The default fast path (`auto`: the XDP program on veth), which punts every packet below to
/// the workers before they drop it.
#[test]
fn a_router_with_the_xdp_fast_path_drops_hostile_transit_packets_the_same_way() {
    router_case("hp", "auto");
}

fn router_case(tag: &str, fast_path: &str) {
    let _turn = serial();
    sweep();
    let chain = Chain::new(tag, &ChainOpts::default()).unwrap();
    let d =
        Daemon::start(&chain.ns_f, &format!("hostile-{tag}"), &router_config(&chain, fast_path));
    let m = Macs { a: EthernetAddress(chain.a.mac), b: EthernetAddress(chain.fa.mac) };
    let (a, b) = (chain.a.ip, chain.b.ip);
    let sink = chain.ns_b.run_in(|| kernel_udp(b, 9000)).unwrap();
    const N: usize = 20;
    let good = udp(&m, a, b, 40000, 9000, 64);
    let lsrr = with_options(good.clone(), &[131, 7, 4, 10, 0, 2, 2, 0]);
    let volleys: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "total length past the frame",
            with_ip(good.clone(), |ip| ip.set_total_len(1400), true),
            "truncated",
        ),
        (
            "total length below the header",
            with_ip(good.clone(), |ip| ip.set_total_len(12), true),
            "malformed",
        ),
        ("version 6", with_ip(good.clone(), |ip| ip.set_version(6), true), "malformed"),
        ("header length 16", with_ip(good.clone(), |ip| ip.set_header_len(16), true), "malformed"),
        (
            "header checksum",
            with_ip(good.clone(), |ip| ip.set_checksum(!ip.checksum()), false),
            "bad_checksum",
        ),
        ("TTL 1", with_ip(good.clone(), |ip| ip.set_ttl(1), true), "ttl_exceeded"),
        ("TTL 0", with_ip(good.clone(), |ip| ip.set_ttl(0), true), "ttl_exceeded"),
        ("source 127.0.0.1", udp(&m, Ipv4Addr::LOCALHOST, b, 40001, 9000, 32), "bad_source"),
        (
            "source 224.0.0.1",
            udp(&m, Ipv4Addr::new(224, 0, 0, 1), b, 40002, 9000, 32),
            "bad_source",
        ),
        (
            "destination 0.1.2.3",
            udp(&m, a, Ipv4Addr::new(0, 1, 2, 3), 40003, 9000, 32),
            "bad_destination",
        ),
        (
            "destination 240.0.0.1",
            udp(&m, a, Ipv4Addr::new(240, 0, 0, 1), 40004, 9000, 32),
            "bad_destination",
        ),
        ("no route", udp(&m, a, Ipv4Addr::new(192, 168, 99, 1), 40005, 9000, 32), "no_route"),
        ("loose source route", lsrr, "source_route"),
    ];
    let fp = |t: &str| metric_by_label(t, "xdpos_xdp_fast_path_packets_total", "outcome");
    let fp_before = fp(&d.metrics());
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut forwarded = 0;
    chain
        .ns_a
        .run_in(|| {
            let client = kernel_udp(a, 0);
            let mut w = Wire::open(&chain.a.ifname, false);
            let mut buf = [0u8; 256];
            for (i, (name, f, reason)) in volleys.iter().enumerate() {
                assert_eq!(w.send(&vec![f.clone(); N]), N, "{name}");
                *want.entry(reason.to_string()).or_default() += N as u64;
                // Forwarding goes on: a kernel datagram from A reaches B's socket.
                client.send_to(&payload(i as u32, 64), SocketAddrV4::new(b, 9000)).unwrap();
                let n =
                    sink.recv(&mut buf).unwrap_or_else(|e| panic!("forwarding after {name}: {e}"));
                assert_eq!(check_payload(&buf[..n]), Some(i as u32), "after {name}");
                forwarded += 1;
            }
            w.close();
        })
        .unwrap();
    let (got, text) = d.metrics_until(forward_drops, &want);
    let hostile = (N * volleys.len()) as u64;
    eprintln!(
        "{fast_path}: {hostile} hostile packets, {forwarded} forwarded between them; {got:?}"
    );
    assert_eq!(got, want, "the router's drops by reason:\n{text}");
    if fast_path == "auto" {
        // The program punted each to the workers under its own outcome (other frames, ARP
        // and the kernel datagrams, add to some of them).
        let n = N as u64;
        let fp_after = fp(&text);
        for (outcome, at_least) in [
            ("malformed", 5 * n),
            ("ttl_expired", 2 * n),
            ("special_address", 4 * n),
            ("no_route", n),
            ("options", n),
        ] {
            let punted = fp_after.get(outcome).copied().unwrap_or(0)
                - fp_before.get(outcome).copied().unwrap_or(0);
            assert!(punted >= at_least, "fast path {outcome}: {punted} < {at_least}:\n{text}");
        }
    }
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// The router's ICMP errors, compared with a Linux router's.

/// The MTU of F's veth toward B (and of the router's interface there): smaller than A's side,
/// so that a DF packet from A too big for it draws fragmentation needed.
const EGRESS_MTU: u16 = 1200;
/// B's kernel UDP socket: what the router forwards is absorbed there, unanswered.
const B_SINK: u16 = 9000;

/// An ICMP error about `probe` (from the router or forwarded from B), described with
/// everything a router chooses: type and code, the error's source, TTL, TOS, DF, whether it
/// has an IP ID, its length, the next-hop MTU of fragmentation needed, and how much of the
/// probe it quotes (which must be the probe's first bytes, as received).
fn describe_icmp_error(probe: &[u8], reply: &[u8]) -> Option<String> {
    let pip = Ipv4Packet::new_checked(EthernetFrame::new_checked(probe).ok()?.payload()).ok()?;
    let re = EthernetFrame::new_checked(reply).ok()?;
    let rip = Ipv4Packet::new_checked(re.payload()).ok()?;
    if rip.dst_addr() != pip.src_addr() || rip.protocol() != IpProtocol::Icmp {
        return None;
    }
    let i = Icmpv4Packet::new_checked(rip.payload()).ok()?;
    let original = &EthernetFrame::new_checked(probe).ok()?.payload()[..pip.total_len().into()];
    let q = i.data();
    if q.get(12..20) != original.get(12..20) {
        return None; // about another packet
    }
    let same = q.len() <= original.len() && q == &original[..q.len()];
    let mtu = if (i.msg_type(), i.msg_code()) == (libos::wire::Icmpv4Message::DstUnreachable, 4) {
        format!(" mtu {}", i.next_hop_mtu())
    } else {
        String::new()
    };
    Some(format!(
        "icmp {:?} code {}{mtu} from {} ttl {} tos {:#04x} df {} id {} len {} checksum {} \
         quotes {} of {} bytes{}",
        i.msg_type(),
        i.msg_code(),
        rip.src_addr(),
        rip.ttl(),
        (rip.dscp() << 2) | rip.ecn(),
        rip.dont_frag(),
        if rip.ident() == 0 { "0" } else { "set" },
        rip.total_len(),
        if i.verify_checksum() { "ok" } else { "bad" },
        q.len(),
        original.len(),
        if same { "" } else { ", changed" },
    ))
}

/// Transit packets from A (10.0.1.2, to F's MAC) for which a router owes A an ICMP error, or
/// owes none.
fn router_probes(m: &Macs, a: Ipv4Addr, b: Ipv4Addr) -> Vec<(String, Vec<u8>)> {
    let nowhere = Ipv4Addr::new(192, 168, 99, 1);
    let ttl = |f: Vec<u8>, t: u8| with_ip(f, |ip| ip.set_ttl(t), true);
    let df = |f: Vec<u8>| with_ip(f, |ip| ip.set_dont_frag(true), true);
    let big = 1400 - 28; // a 1400-byte datagram
    let fits = usize::from(EGRESS_MTU) - 28;
    let echo = |id: u16, dst: Ipv4Addr| icmp_echo_frame(m.a, m.b, a, dst, id, 1, &[7; 56]);
    let later = ipv4_fragments(m.a, m.b, a, b, IpProtocol::Udp, 77, &[9; 1000], 600)
        .pop()
        .expect("a later fragment");
    let unreachable = {
        // An ICMP error A "sends" through the router, about a datagram B sent it.
        let quoted = udp(m, b, a, B_SINK, 41000, 32);
        let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&quoted[14..14 + 28]);
        let c = !libos::wire::checksum::sum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = udp(m, a, b, 1, 1, 0);
        f.truncate(14 + 20);
        f.extend_from_slice(&msg);
        with_ip(
            f,
            |ip| {
                ip.set_protocol(IpProtocol::Icmp);
                ip.set_total_len(20 + msg.len() as u16);
                ip.set_ttl(1);
            },
            true,
        )
    };
    // No route first: Linux limits those errors to a burst of 5, then one a second
    // (net.ipv4.route.error_burst and error_cost, not per namespace), on the same per-host
    // tokens as its other ICMP errors, which icmp_ratelimit=0 leaves at zero.
    vec![
        ("UDP, no route", udp(m, a, nowhere, 41006, B_SINK, 64)),
        ("ICMP echo, no route", echo(0x4343, nowhere)),
        ("UDP, TTL 1", ttl(udp(m, a, b, 41001, B_SINK, 64), 1)),
        (
            "UDP, TTL 1, DSCP EF",
            with_ip(ttl(udp(m, a, b, 41010, B_SINK, 64), 1), |ip| ip.set_dscp(46), true),
        ),
        ("UDP, TTL 0", ttl(udp(m, a, b, 41002, B_SINK, 64), 0)),
        ("UDP, TTL 1, DF", df(ttl(udp(m, a, b, 41003, B_SINK, 64), 1))),
        ("UDP of 1400 bytes, TTL 1 (the quote's length)", ttl(udp(m, a, b, 41004, B_SINK, big), 1)),
        ("ICMP echo, TTL 1", ttl(echo(0x4242, b), 1)),
        ("UDP, TTL 2 (forwarded)", ttl(udp(m, a, b, 41005, B_SINK, 64), 2)),
        ("UDP of 1400 bytes, DF, egress MTU 1200", df(udp(m, a, b, 41007, B_SINK, big))),
        ("UDP of 1200 bytes, DF (fits, forwarded)", df(udp(m, a, b, 41008, B_SINK, fits))),
        ("UDP of 1400 bytes, DF, TTL 1", df(ttl(udp(m, a, b, 41009, B_SINK, big), 1))),
        ("a later fragment, TTL 1 (RFC 1812 4.3.2.7: no error)", ttl(later, 1)),
        ("an ICMP error, TTL 1 (RFC 1812 4.3.2.7: no error)", unreachable),
    ]
    .into_iter()
    .map(|(n, f)| (n.to_string(), f))
    .collect()
}

/// The ICMP errors a router in F sends A for [`router_probes`], with B's kernel socket absorbing
/// what it forwards.
fn router_answers(chain: &Chain) -> Vec<(String, Vec<String>)> {
    let m = Macs { a: EthernetAddress(chain.a.mac), b: EthernetAddress(chain.fa.mac) };
    let _sink = chain.ns_b.run_in(|| kernel_udp(chain.b.ip, B_SINK)).unwrap();
    let probes = router_probes(&m, chain.a.ip, chain.b.ip);
    let peer = (chain.a.ip, chain.fa.ip);
    captured_answers(&chain.ns_a, &chain.a.ifname, &m, peer, &probes, describe_icmp_error)
}

/// A chain whose F is a Linux router: F's addresses as the appliance would have them,
/// forwarding on and its ICMP rate limits off.
fn linux_router(tag: &str) -> Chain {
    let chain = Chain::new(tag, &ChainOpts::default()).unwrap();
    let (fa, fb) = (&chain.fa, &chain.fb);
    chain
        .ns_f
        .sh(&format!(
            "ip addr add {}/24 dev {} && ip addr add {}/24 dev {} && \
             sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000",
            fa.ip, fa.ifname, fb.ip, fb.ifname
        ))
        .unwrap();
    chain
}

/// Time exceeded (TTL 1 and 0), net unreachable (no route) and fragmentation needed (DF, egress
/// MTU smaller than the packet) from the router role, against a Linux router given the same
/// packets: F with the same addresses, forwarding on and its ICMP rate limits off.
#[test]
fn the_routers_icmp_errors_are_a_linux_routers() {
    let _turn = serial();
    sweep();
    let kchain = linux_router("hlk");
    kchain.ns_f.sh(&format!("ip link set {} mtu {EGRESS_MTU}", kchain.fb.ifname)).unwrap();
    let kernel = router_answers(&kchain);
    drop(kchain);

    let xchain = Chain::new("hlx", &ChainOpts::default()).unwrap();
    xchain.ns_f.sh(&format!("ip link set {} mtu {EGRESS_MTU}", xchain.fb.ifname)).unwrap();
    let (fb, fbip) = (&xchain.fb.ifname, xchain.fb.ip);
    let cfg = router_config(&xchain, "auto").replace(
        &format!("addresses = [\"{fbip}/24\"]\n"),
        &format!("addresses = [\"{fbip}/24\"]\nmtu = {EGRESS_MTU}\n"),
    );
    assert!(cfg.contains("mtu = "), "{fb}: {cfg}");
    let d = Daemon::start(&xchain.ns_f, "hostile-hlx", &cfg);
    let xdpos = router_answers(&xchain);
    d.stop();

    // The one justified difference: Linux ORs the probe's old RFC 1349 TOS bits (0x1e) into
    // precedence 6; xdpos sends precedence 6 and nothing else (RFC 1812 §4.3.2.5, RFC 1349
    // §5.1: an ICMP error carries the default TOS; for DSCP EF, 0xb8, Linux's 0xd8 is a code
    // point nobody asked for).
    let justified = ("UDP, TTL 1, DSCP EF", "tos 0xd8", "tos 0xc0");
    let mut diffs = Vec::new();
    for ((name, k), (_, x)) in kernel.iter().zip(&xdpos) {
        eprintln!("{name}:\n  linux: {k:?}\n  xdpos: {x:?}");
        let mut want = k.clone();
        if name == justified.0 {
            assert!(k.len() == 1 && k[0].contains(justified.1), "{name}: linux {k:?}");
            want[0] = k[0].replace(justified.1, justified.2);
        }
        if &want != x {
            diffs.push(format!("{name}: linux {k:?}, xdpos {x:?}"));
        }
    }
    assert_eq!(kernel.len(), xdpos.len());
    assert!(diffs.is_empty(), "{} of {} differ:\n{}", diffs.len(), kernel.len(), diffs.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Transit packets with IPv4 options, compared with a Linux router.

/// The options of a header as text: bytes in hex, but a timestamp option (68) as its pointer,
/// overflow, flag and entries, each timestamp shown as `t` (set) or `0`, since two routers'
/// clocks never agree.
fn describe_options(o: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < o.len() {
        let len =
            if o[i] <= 1 { 1 } else { usize::from(o.get(i + 1).copied().unwrap_or(1)).max(1) };
        let part = &o[i..(i + len).min(o.len())];
        if o[i] == 68 && part.len() >= 4 {
            let flag = part[3] & 0x0f;
            let step = if flag == 0 { 4 } else { 8 };
            let mut d = format!("ts[ptr {} oflw {} flg {}:", part[2], part[3] >> 4, flag);
            for e in part[4..].chunks_exact(step) {
                if flag != 0 {
                    d += &format!(" {}", Ipv4Addr::new(e[0], e[1], e[2], e[3]));
                }
                d += if e[step - 4..] == [0; 4] { " 0" } else { " t" };
            }
            parts.push(d + "]");
        } else {
            parts.push(format!("{part:02x?}"));
        }
        i += len;
    }
    parts.join(" ")
}

/// A probe's datagram as it reached B: TTL, header length and checksum, and the options.
fn describe_forwarded(probe: &[u8], got: &[u8]) -> Option<String> {
    let pip = Ipv4Packet::new_checked(EthernetFrame::new_checked(probe).ok()?.payload()).ok()?;
    let gip = Ipv4Packet::new_checked(EthernetFrame::new_checked(got).ok()?.payload()).ok()?;
    if gip.ident() != pip.ident()
        || gip.src_addr() != pip.src_addr()
        || gip.protocol() != pip.protocol()
    {
        return None;
    }
    Some(format!(
        "at B: ttl {} header {} checksum {} options {}",
        gip.ttl(),
        gip.header_len(),
        if gip.verify_checksum() { "ok" } else { "bad" },
        describe_options(gip.options()),
    ))
}

/// An ICMP error about `probe` at A, with the parameter-problem pointer where there is one.
fn describe_error_with_pointer(probe: &[u8], reply: &[u8]) -> Option<String> {
    let d = describe_icmp_error(probe, reply)?;
    let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(reply).ok()?.payload()).ok()?;
    let icmp = ip.payload();
    Some(if icmp[0] == 12 { format!("{d} pointer {}", icmp[4]) } else { d })
}

/// UDP datagrams from A to B through F, each with other IPv4 options; ident `0x4f00 + i`.
fn option_probes(m: &Macs, a: Ipv4Addr, b: Ipv4Addr) -> Vec<(String, Vec<u8>)> {
    let bo = b.octets();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no options (reference)", vec![]),
        ("record route, room for two", vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("record route, full", vec![7, 7, 8, 10, 9, 9, 9]),
        ("record route, pointer 3 (below the first slot)", vec![7, 7, 3, 0, 0, 0, 0]),
        ("loose source route via B", vec![131, 7, 4, bo[0], bo[1], bo[2], bo[3]]),
        ("strict source route via B", vec![137, 7, 4, bo[0], bo[1], bo[2], bo[3]]),
        ("timestamps only, room for two", vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("timestamps and addresses, room for one", vec![68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("timestamps, full", vec![68, 8, 9, 0, 0, 0, 0, 1]),
        ("timestamps, full, overflow 15", vec![68, 8, 9, 0xf0, 0, 0, 0, 1]),
        (
            "timestamps at pre-specified F",
            vec![68, 20, 5, 3, 10, 0, 1, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0],
        ),
        ("timestamps at a pre-specified other", vec![68, 12, 5, 3, 1, 2, 3, 4, 0, 0, 0, 0]),
        ("timestamps and addresses, cut short", vec![68, 8, 5, 1, 0, 0, 0, 0]),
        ("timestamps, unknown flag 2", vec![68, 12, 5, 2, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("record route twice", vec![7, 7, 4, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0]),
        ("stream id", vec![136, 4, 0x12, 0x34]),
        ("router alert", vec![148, 4, 0, 0]),
        ("unknown option 0x9e", vec![0x9e, 4, 1, 2]),
        ("NOPs then end of options", vec![1, 1, 1, 0]),
        ("option length 1", vec![7, 1, 0, 0]),
        ("option longer than the header", vec![1, 7, 40, 4, 0, 0, 0, 0]),
    ];
    cases
        .into_iter()
        .chain([("TTL 1 and an option cut short", vec![7, 1, 0, 0])])
        .enumerate()
        .map(|(i, (name, opts))| {
            let f = udp(m, a, b, 42000 + i as u16, B_SINK, 32);
            let ttl = if name.starts_with("TTL 1") { 1 } else { 64 };
            let f = with_ip(
                f,
                |ip| {
                    ip.set_ident(0x4f00 + i as u16);
                    ip.set_ttl(ttl);
                },
                true,
            );
            let mut opts = opts;
            while opts.len() % 4 != 0 {
                opts.push(0); // end of options
            }
            (name.to_string(), with_options(f, &opts))
        })
        .collect()
}

/// Sends each probe from A and returns, per probe, what reached B and the errors A got back.
/// Both ends are AF_XDP wires that capture everything and answer the router's ARP requests.
fn option_answers(chain: &Chain) -> Vec<(String, Vec<String>)> {
    let m = Macs { a: EthernetAddress(chain.a.mac), b: EthernetAddress(chain.fa.mac) };
    let probes = option_probes(&m, chain.a.ip, chain.b.ip);
    let (b_mac, fb_mac) = (EthernetAddress(chain.b.mac), EthernetAddress(chain.fb.mac));
    let mut wa = chain.ns_a.run_in(|| Wire::open(&chain.a.ifname, true)).unwrap();
    let mut wb = chain.ns_b.run_in(|| Wire::open(&chain.b.ifname, true)).unwrap();
    // Answers the router's ARP requests for A's and B's addresses; returns the other frames.
    let arp = |w: &mut Wire, frames: Vec<Vec<u8>>, mac, ours, peer_mac, peer| {
        let mut rest = Vec::new();
        for f in frames {
            match libos::sim::frames::classify(&f) {
                libos::sim::frames::Kind::Arp { op, target, .. }
                    if op == libos::wire::ArpOperation::Request && target == ours =>
                {
                    w.send(&[arp_reply(mac, ours, peer_mac, peer)]);
                }
                _ => rest.push(f),
            }
        }
        rest
    };
    let poll = |wa: &mut Wire, wb: &mut Wire, ms: u64| {
        let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            let got = wa.recv(Duration::from_millis(5));
            at_a.extend(arp(wa, got, m.a, chain.a.ip, m.b, chain.fa.ip));
            let got = wb.recv(Duration::from_millis(5));
            at_b.extend(arp(wb, got, b_mac, chain.b.ip, fb_mac, chain.fb.ip));
        }
        (at_a, at_b)
    };
    // Neighbours first: a plain datagram through F until one reaches B.
    let warm = udp(&m, chain.a.ip, chain.b.ip, 41999, B_SINK, 8);
    let mut through = false;
    for _ in 0..20 {
        assert_eq!(wa.send(std::slice::from_ref(&warm)), 1);
        let (_, at_b) = poll(&mut wa, &mut wb, 100);
        if at_b.iter().any(|f| describe_forwarded(&warm, f).is_some()) {
            through = true;
            break;
        }
    }
    assert!(through, "no datagram from A reached B through the router");
    let mut out = Vec::new();
    for (name, f) in &probes {
        assert_eq!(wa.send(std::slice::from_ref(f)), 1);
        let (at_a, at_b) = poll(&mut wa, &mut wb, 60);
        let mut seen: Vec<String> = at_b.iter().filter_map(|g| describe_forwarded(f, g)).collect();
        seen.extend(at_a.iter().filter_map(|r| describe_error_with_pointer(f, r)));
        out.push((name.clone(), seen));
    }
    wa.close();
    wb.close();
    out
}

/// Transit datagrams with IPv4 options (record route, source routes, timestamps, unknown and
/// malformed options) through the router role and through a Linux router given the same
/// packets: what reaches B (TTL, options as rewritten, header checksum) and what A gets back.
#[test]
fn the_routers_handling_of_ip_options_is_a_linux_routers() {
    let _turn = serial();
    sweep();
    // The Linux chain is gone (dropped) before the xdpos one is made.
    let kernel = option_answers(&linux_router("hok"));

    let xchain = Chain::new("hox", &ChainOpts::default()).unwrap();
    let d = Daemon::start(&xchain.ns_f, "hostile-hox", &router_config(&xchain, "auto"));
    let xdpos = option_answers(&xchain);
    d.stop();

    // The one justified difference: for a second record-route option Linux has already filled
    // in the first (so its quote differs from the datagram sent) and echoes it, reversed, in
    // its error's own header (8 bytes more); xdpos quotes the datagram as it arrived and sends
    // a plain header. Both point at the second option.
    let justified = ("record route twice", ("len 112", ", changed"), ("len 104", ""));
    let mut diffs = Vec::new();
    for ((name, k), (_, x)) in kernel.iter().zip(&xdpos) {
        eprintln!("{name}:\n  linux: {k:?}\n  xdpos: {x:?}");
        let mut want = k.clone();
        if name == justified.0 {
            let (l, x) = (justified.1, justified.2);
            assert!(
                k.len() == 1 && k[0].contains(l.0) && k[0].contains(l.1),
                "{name}: linux {k:?}"
            );
            want[0] = k[0].replace(l.0, x.0).replace(l.1, x.1);
        }
        if &want != x {
            diffs.push(format!("{name}: linux {k:?}, xdpos {x:?}"));
        }
    }
    assert_eq!(kernel.len(), xdpos.len());
    assert!(kernel[0].1.len() == 1, "the reference datagram did not arrive once: {:?}", kernel[0]);
    assert!(diffs.is_empty(), "{} of {} differ:\n{}", diffs.len(), kernel.len(), diffs.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Unexpected segments on an established connection, compared with the kernel's answers.

/// A reply on connection (`sport`) described against its numbers: our next sequence number
/// `rcv` (what the server acknowledges) and the server's `snd`.
fn describe_conn(reply: &[u8], sport: u16, rcv: u32, snd: u32) -> Option<String> {
    let e = EthernetFrame::new_checked(reply).ok()?;
    let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    if t.dst_port() != sport {
        return None;
    }
    let f = t.flags();
    let ack = if f.contains(TcpFlags::ACK) {
        format!("rcv{:+}", t.ack_number().wrapping_sub(rcv) as i32)
    } else {
        "-".into()
    };
    Some(format!(
        "{f:?} seq=snd{:+} ack={ack} len {}",
        t.seq_number().wrapping_sub(snd) as i32,
        t.payload().len()
    ))
}

/// For each case, a connection from its own port: SYN, the server's SYN-ACK, ACK, then the
/// case's segment (flags, sequence number against ours, acknowledgment against the server's,
/// payload); returns the replies to that segment.
fn established_answers(pair: &Pair, cases: &[(&str, u8, i32, i32, usize)]) -> Vec<Vec<String>> {
    pair.ns_a
        .run_in(|| {
            let mut w = Wire::open(&pair.a.ifname, true);
            let m = Macs::of(pair);
            let b = pair.b.ip;
            assert_eq!(w.send(&[arp_request(m.a, HOSTILE, b)]), 1);
            w.recv(Duration::from_millis(50));
            let seg = |sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]| {
                let mut r = repr(sport, TCP_ECHO, seq, ack, TcpFlags::from_bits(flags), 64240);
                if flags & 0x02 != 0 {
                    r.max_seg_size = Some(1460);
                }
                tcp_frame(m.a, m.b, HOSTILE, b, &r, payload)
            };
            let mut out = Vec::new();
            for (k, &(name, flags, dseq, dack, len)) in cases.iter().enumerate() {
                let sport = 45000 + k as u16;
                let isn = 0x1000_0000u32.wrapping_mul(k as u32 + 1);
                assert_eq!(w.send(&[seg(sport, isn, 0, 0x02, &[])]), 1);
                let synack = w
                    .recv(Duration::from_millis(50))
                    .iter()
                    .find_map(|r| {
                        let e = EthernetFrame::new_checked(&r[..]).ok()?;
                        let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
                        let t = TcpPacket::new_checked(ip.payload()).ok()?;
                        (t.dst_port() == sport && t.flags() == TcpFlags::from_bits(0x12))
                            .then(|| t.seq_number())
                    })
                    .unwrap_or_else(|| panic!("{name}: no SYN-ACK"));
                let (rcv, snd) = (isn.wrapping_add(1), synack.wrapping_add(1));
                assert_eq!(w.send(&[seg(sport, rcv, snd, 0x10, &[])]), 1);
                w.recv(Duration::from_millis(30));
                let probe = seg(
                    sport,
                    rcv.wrapping_add(dseq as u32),
                    snd.wrapping_add(dack as u32),
                    flags,
                    &vec![0x61; len],
                );
                assert_eq!(w.send(&[probe]), 1);
                let mut replies: Vec<String> = w
                    .recv(Duration::from_millis(100))
                    .iter()
                    .filter_map(|r| describe_conn(r, sport, rcv, snd))
                    .collect();
                replies.sort();
                replies.dedup();
                out.push(replies);
                // Done with the connection.
                let rst = seg(
                    sport,
                    rcv.wrapping_add(if flags & 0x04 != 0 { 0 } else { dseq.max(0) as u32 }),
                    0,
                    0x04,
                    &[],
                );
                w.send(&[rst]);
            }
            w.close();
            out
        })
        .unwrap()
}

#[test]
fn answers_to_unexpected_segments_on_an_established_connection_are_the_linux_kernels() {
    let _turn = serial();
    sweep();
    // (name, flags, sequence number - ours, acknowledgment number - the server's, payload)
    let cases: &[(&str, u8, i32, i32, usize)] = &[
        ("RST beyond the window", 0x04, 1 << 24, 0, 0),
        ("RST in the window but not at its left edge", 0x04, 1, 0, 0),
        ("SYN on the established connection", 0x02, 5, 0, 0),
        ("ACK of data never sent", 0x10, 0, 100_000, 0),
        ("data beyond the window", 0x18, 1 << 24, 0, 10),
        ("data before the window", 0x18, -1000, 0, 10),
        ("RST at the left edge", 0x14, 0, 0, 0),
    ];
    let kpair = Pair::new("he", &PairOpts { b_kernel_ip: true, ..Default::default() }).unwrap();
    let listener = kpair
        .ns_b
        .run_in(|| std::net::TcpListener::bind(SocketAddrV4::new(kpair.b.ip, TCP_ECHO)).unwrap())
        .unwrap();
    kpair
        .ns_b
        .sh("sysctl -qw net.ipv4.tcp_ecn=0 net.ipv4.tcp_challenge_ack_limit=1000000")
        .unwrap();
    let kernel = established_answers(&kpair, cases);
    drop(listener);
    let xpair = Pair::new("hf", &PairOpts::default()).unwrap();
    let d = Daemon::start(&xpair.ns_b, "hostile-hf", &server_config(&xpair));
    let xdpos = established_answers(&xpair, cases);
    d.stop();
    let mut diffs = Vec::new();
    for (((name, ..), k), x) in cases.iter().zip(&kernel).zip(&xdpos) {
        eprintln!("{name}: kernel {k:?}, xdpos {x:?}");
        if k != x {
            diffs.push(format!("{name}: kernel {k:?}, xdpos {x:?}"));
        }
    }
    assert!(kernel.iter().filter(|k| !k.is_empty()).count() >= 3, "kernel answers: {kernel:?}");
    assert!(diffs.is_empty(), "answers differ from the kernel's:\n{}", diffs.join("\n"));
    assert_no_xdp(&xpair.ns_b);
}
