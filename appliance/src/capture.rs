//! # Packet capture from a running instance
//!
//! What it is: `xdpos capture` takes a pcap of the frames one worker receives on one
//! interface and queue, from a running instance (`xdpos echo`, `xdpos forward`, and the daemon
//! `xdpos run` in every role: router and cross-connect workers, server workers) without
//! stopping its traffic: the tool asks the instance's metrics endpoint
//! (`GET /capture?interface=…&queue=…&filter=…&snaplen=…&count=…&seconds=…`) and writes the
//! pcap it streams back.
//!
//! How: each worker owns one [`CaptureSlot`] for all its sockets; a [`CaptureTarget`] names one
//! socket of it (interface, queue, and the socket's index among the worker's: `sub`, the port
//! of a forwarding worker's group, the queue of a server worker's queue set). Unarmed, the
//! worker's cost is one relaxed load and one branch per received batch
//! ([`CaptureSlot::armed`], [`CaptureSlot::armed_for`]). The endpoint arms it for one socket
//! with a filter, a snap length, a count and a buffer allocated on the control side; the armed
//! worker copies the first `snaplen` bytes of each matching frame of that socket into that
//! buffer (never past its capacity: a full buffer counts the frame as missed) under a
//! `try_lock` (a batch that finds the control side draining is skipped and counted, never
//! waited for); the endpoint drains the buffer every few milliseconds and streams the records
//! as pcap until `count` frames or `seconds` have passed, then disarms the slot. One capture
//! at a time per instance.
//!
//! What it cannot see: frames the kernel never hands to a worker (those the router's XDP fast
//! path forwards or drops itself, and those the steering program passes to the kernel).
//!
//! Filter ([`Filter`]): words joined by `and`: `arp`, `ip`, `icmp`, `udp`, `tcp`,
//! `host A.B.C.D`, `src [host] A.B.C.D`, `dst [host] A.B.C.D`, `port N`, `src port N`,
//! `dst port N` (tcpdump's words for the same tests); empty matches every frame.
//! Frames are captured as received, before the stack (the verdicts rewrite them in place).
//!
//! Format: classic pcap (`a1b2c3d4`, version 2.4, link type 1 Ethernet), microsecond
//! timestamps in wall-clock time.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most bytes of frames one capture buffers between two drains.
pub const CAPTURE_BUFFER: usize = 4 << 20;
/// Longest capture.
pub const MAX_SECONDS: f64 = 60.0;

/// What to capture (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    proto: Option<Proto>,
    host: Option<Ipv4Addr>,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    port: Option<u16>,
    sport: Option<u16>,
    dport: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Arp,
    Ip,
    Icmp,
    Udp,
    Tcp,
}

/// The filter's words, for its error messages.
const WORDS: &str = "arp, ip, icmp, udp, tcp, host A, src [host] A, dst [host] A, port N, \
                     src port N, dst port N, and";

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        let mut words = s.split_whitespace().filter(|w| *w != "and").peekable();
        while let Some(w) = words.next() {
            // `src`/`dst` take `port N`, `host A` or a bare address, as in tcpdump.
            let qualifier = if matches!(w, "src" | "dst") {
                words.next_if(|q| matches!(*q, "port" | "host"))
            } else {
                None
            };
            let port_of = qualifier == Some("port");
            let what = qualifier.unwrap_or(w);
            let mut next = || words.next().ok_or_else(|| format!("filter: `{what}` needs a value"));
            let addr = |a: &str| -> Result<Ipv4Addr, String> {
                a.parse().map_err(|_| format!("filter: {a:?} is not an IPv4 address"))
            };
            let port = |p: &str| -> Result<u16, String> {
                p.parse().map_err(|_| format!("filter: bad port {p:?}"))
            };
            match (w, port_of) {
                ("arp", _) => f.proto = Some(Proto::Arp),
                ("ip", _) => f.proto = Some(Proto::Ip),
                ("icmp", _) => f.proto = Some(Proto::Icmp),
                ("udp", _) => f.proto = Some(Proto::Udp),
                ("tcp", _) => f.proto = Some(Proto::Tcp),
                ("host", _) => f.host = Some(addr(next()?)?),
                ("src", false) => f.src = Some(addr(next()?)?),
                ("dst", false) => f.dst = Some(addr(next()?)?),
                ("src", true) => f.sport = Some(port(next()?)?),
                ("dst", true) => f.dport = Some(port(next()?)?),
                ("port", _) => f.port = Some(port(next()?)?),
                _ => return Err(format!("filter: unknown word {w:?} ({WORDS})")),
            }
        }
        Ok(f)
    }
}

impl Filter {
    /// Whether the filter tests TCP/UDP ports.
    fn on_ports(&self) -> bool {
        self.port.is_some() || self.sport.is_some() || self.dport.is_some()
    }

    /// Whether `frame` (Ethernet, optionally one VLAN tag) matches.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if *self == Filter::default() {
            return true;
        }
        let (mut ethertype, mut l3) = match frame.get(12..14) {
            Some(t) => (u16::from_be_bytes([t[0], t[1]]), 14),
            None => return false,
        };
        if ethertype == 0x8100 {
            match frame.get(16..18) {
                Some(t) => (ethertype, l3) = (u16::from_be_bytes([t[0], t[1]]), 18),
                None => return false,
            }
        }
        if ethertype == 0x0806 {
            let addrs = self.host.is_some() || self.src.is_some() || self.dst.is_some();
            return matches!(self.proto, None | Some(Proto::Arp)) && !addrs && !self.on_ports();
        }
        if ethertype != 0x0800 || self.proto == Some(Proto::Arp) {
            return false;
        }
        let Some(ip) = frame.get(l3..l3 + 20) else { return false };
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let proto = ip[9];
        let want = match self.proto {
            Some(Proto::Icmp) => Some(1),
            Some(Proto::Tcp) => Some(6),
            Some(Proto::Udp) => Some(17),
            _ => None,
        };
        if want.is_some_and(|p| p != proto)
            || self.host.is_some_and(|h| h != src && h != dst)
            || self.src.is_some_and(|a| a != src)
            || self.dst.is_some_and(|a| a != dst)
        {
            return false;
        }
        if self.on_ports() {
            let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            let l4 = l3 + usize::from(ip[0] & 0x0f) * 4;
            let Some(ports) = frame.get(l4..l4 + 4) else { return false };
            let (sp, dp) = (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            );
            return first_fragment
                && (proto == 6 || proto == 17)
                && self.port.is_none_or(|p| sp == p || dp == p)
                && self.sport.is_none_or(|p| sp == p)
                && self.dport.is_none_or(|p| dp == p);
        }
        true
    }
}

#[derive(Debug, Default)]
struct Armed {
    /// The worker's socket whose frames are taken.
    sub: usize,
    filter: Filter,
    snaplen: usize,
    remaining: u64,
    /// Records: time (u64 ns of the worker's clock), frame length (u32), captured bytes
    /// (u32), bytes.
    buf: Vec<u8>,
}

/// One worker's capture point (see the module documentation).
#[derive(Debug, Default)]
pub struct CaptureSlot {
    /// 0: no capture; `sub + 1`: capturing the frames of the worker's socket `sub`.
    armed: AtomicUsize,
    state: Mutex<Armed>,
    missed: AtomicU64,
}

impl CaptureSlot {
    /// Whether a capture is running: the worker's one check per batch.
    #[inline(always)]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed) != 0
    }

    /// Whether a capture of the worker's socket `sub` is running (one check per batch).
    #[inline(always)]
    pub fn armed_for(&self, sub: usize) -> bool {
        self.armed.load(Ordering::Relaxed) == sub + 1
    }

    /// Worker: offers the frames of one received batch at `now_ns` (its clock), each with the
    /// index of the socket it arrived on; only those of the armed socket are taken.
    pub fn offer<'a>(&self, now_ns: u64, frames: impl Iterator<Item = (usize, &'a [u8])>) {
        let Ok(mut a) = self.state.try_lock() else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let sub = a.sub;
        for (_, f) in frames.filter(|&(s, _)| s == sub) {
            if a.remaining == 0 {
                break;
            }
            if !a.filter.matches(f) {
                continue;
            }
            let n = f.len().min(a.snaplen);
            if a.buf.len() + 16 + n > a.buf.capacity() {
                self.missed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            a.buf.extend_from_slice(&now_ns.to_le_bytes());
            a.buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            a.buf.extend_from_slice(&(n as u32).to_le_bytes());
            a.buf.extend_from_slice(&f[..n]);
            a.remaining -= 1;
        }
        if a.remaining == 0 {
            self.armed.store(0, Ordering::Relaxed);
        }
    }

    /// Control side: starts a capture of the worker's socket `sub`; `false` if one is running.
    pub fn arm(&self, sub: usize, filter: Filter, snaplen: usize, count: u64) -> bool {
        let mut a = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.armed() {
            return false;
        }
        *a = Armed {
            sub,
            filter,
            snaplen: snaplen.max(14),
            remaining: count,
            buf: Vec::with_capacity(CAPTURE_BUFFER),
        };
        self.armed.store(if count > 0 { sub + 1 } else { 0 }, Ordering::Relaxed);
        true
    }

    /// Control side: stops the capture.
    pub fn disarm(&self) {
        self.armed.store(0, Ordering::Relaxed);
    }

    /// Control side: moves the records captured so far to `out` (the buffer keeps its
    /// capacity); returns whether the capture is still running.
    fn drain(&self, out: &mut Vec<u8>) -> bool {
        let mut a = self.state.lock().unwrap_or_else(|e| e.into_inner());
        out.extend_from_slice(&a.buf);
        a.buf.clear();
        self.armed()
    }

    /// Batches or frames the capture could not take (buffer full, or busy draining).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// The pcap global header for `snaplen`.
pub fn pcap_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// Turns drained records into pcap records; `epoch` is the wall-clock time of the worker
/// clock's zero. Returns how many records.
fn to_pcap(records: &[u8], epoch: SystemTime, out: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i + 16 <= records.len() {
        let ns = u64::from_le_bytes(records[i..i + 8].try_into().unwrap_or_default());
        let orig = u32::from_le_bytes(records[i + 8..i + 12].try_into().unwrap_or_default());
        let incl = u32::from_le_bytes(records[i + 12..i + 16].try_into().unwrap_or_default());
        let data = &records[i + 16..(i + 16 + incl as usize).min(records.len())];
        let t = (epoch + Duration::from_nanos(ns)).duration_since(UNIX_EPOCH).unwrap_or_default();
        out.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&t.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&orig.to_le_bytes());
        out.extend_from_slice(data);
        i += 16 + incl as usize;
        n += 1;
    }
    n
}

/// A worker's capture point as the endpoint knows it.
#[derive(Debug, Clone)]
pub struct CaptureTarget {
    /// Interface.
    pub interface: String,
    /// Queue.
    pub queue: u32,
    /// The worker's slot.
    pub slot: std::sync::Arc<CaptureSlot>,
    /// The socket's index among the worker's (its port in a forwarding group, its queue in a
    /// server's queue set; 0 for a worker of one socket).
    pub sub: usize,
    /// Wall-clock time of the worker clock's zero.
    pub epoch: SystemTime,
}

/// What a capture request asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Interface.
    pub interface: String,
    /// Queue.
    pub queue: u32,
    /// Filter.
    pub filter: Filter,
    /// Bytes kept per frame.
    pub snaplen: u32,
    /// Frames.
    pub count: u64,
    /// Longest capture.
    pub seconds: f64,
}

impl Request {
    /// Parses the query string of `GET /capture?…`.
    pub fn parse(query: &str) -> Result<Request, String> {
        let mut r = Request {
            interface: String::new(),
            queue: 0,
            filter: Filter::default(),
            snaplen: 65535,
            count: 100,
            seconds: 10.0,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_decode(v);
            let bad = |what: &str| format!("capture: bad {what} {v:?}");
            match k {
                "interface" => r.interface = v.clone(),
                "queue" => r.queue = v.parse().map_err(|_| bad("queue"))?,
                "filter" => r.filter = v.parse()?,
                "snaplen" => r.snaplen = v.parse().map_err(|_| bad("snaplen"))?,
                "count" => r.count = v.parse().map_err(|_| bad("count"))?,
                "seconds" => r.seconds = v.parse().map_err(|_| bad("seconds"))?,
                _ => return Err(format!("capture: unknown parameter {k:?}")),
            }
        }
        if r.interface.is_empty() {
            return Err("capture: name an interface".into());
        }
        r.seconds = r.seconds.clamp(0.0, MAX_SECONDS);
        r.snaplen = r.snaplen.clamp(14, 65535);
        Ok(r)
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a capture on `target` and streams pcap into `w` (header first). Returns the frames
/// written and the frames missed.
pub fn run(
    target: &CaptureTarget,
    r: &Request,
    w: &mut dyn std::io::Write,
) -> std::io::Result<(u64, u64)> {
    let missed0 = target.slot.missed();
    if !target.slot.arm(target.sub, r.filter.clone(), r.snaplen as usize, r.count) {
        return Err(std::io::Error::other("a capture is already running on this queue"));
    }
    w.write_all(&pcap_header(r.snaplen))?;
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(r.seconds);
    let (mut records, mut out, mut written) = (Vec::new(), Vec::new(), 0u64);
    let result = loop {
        let running = target.slot.drain(&mut records);
        written += to_pcap(&records, target.epoch, &mut out);
        records.clear();
        if let Err(e) = w.write_all(&out) {
            break Err(e);
        }
        out.clear();
        if !running || written >= r.count || std::time::Instant::now() >= deadline {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    target.slot.disarm();
    // What arrived between the last drain and the disarm.
    target.slot.drain(&mut records);
    if result.is_ok() {
        written += to_pcap(&records, target.epoch, &mut out);
        w.write_all(&out)?;
    }
    result.map(|()| (written, target.slot.missed() - missed0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libos::sim::frames;
    use libos::wire::EthernetAddress;
    use std::net::SocketAddrV4;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn filters_select_by_protocol_address_and_port() {
        let udp = frames::udp_frame(
            A,
            B,
            SocketAddrV4::new(ip(1), 4000),
            SocketAddrV4::new(ip(2), 7),
            b"x",
        );
        let arp = frames::arp_request(A, ip(1), ip(2));
        let ping = frames::icmp_echo_frame(A, B, ip(1), ip(2), 1, 1, b"p");
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("").matches(&udp) && f("").matches(&arp));
        assert!(f("udp port 7").matches(&udp) && !f("udp port 8").matches(&udp));
        assert!(f("udp and port 4000 and src 10.0.0.1").matches(&udp));
        assert!(!f("dst 10.0.0.1").matches(&udp) && f("host 10.0.0.1").matches(&udp));
        assert!(f("arp").matches(&arp) && !f("arp").matches(&udp) && !f("udp").matches(&arp));
        assert!(
            f("icmp").matches(&ping) && !f("tcp").matches(&ping) && !f("port 7").matches(&ping)
        );
        assert!("udp port".parse::<Filter>().is_err() && "bogus".parse::<Filter>().is_err());
        assert!("host 1.2.3".parse::<Filter>().is_err());
        // tcpdump's directional forms.
        assert!(f("udp and dst port 7").matches(&udp) && !f("udp and src port 7").matches(&udp));
        assert!(f("src port 4000 and dst port 7").matches(&udp));
        assert!(!f("dst port 4000").matches(&udp) && !f("src port 7").matches(&ping));
        assert!(f("src host 10.0.0.1 and dst host 10.0.0.2").matches(&udp));
        assert!(!f("dst host 10.0.0.1").matches(&udp) && !f("dst port 7").matches(&arp));
        assert!("src port".parse::<Filter>().is_err() && "dst port x".parse::<Filter>().is_err());
        assert!("src host".parse::<Filter>().is_err() && "dst".parse::<Filter>().is_err());
    }

    #[test]
    fn an_armed_slot_takes_count_matching_frames_then_disarms() {
        let s = CaptureSlot::default();
        assert!(!s.armed());
        let udp = frames::udp_frame(
            A,
            B,
            SocketAddrV4::new(ip(1), 4000),
            SocketAddrV4::new(ip(2), 7),
            &[7u8; 100],
        );
        let arp = frames::arp_request(A, ip(1), ip(2));
        assert!(s.arm(1, "udp".parse().unwrap(), 64, 3));
        assert!(s.armed() && s.armed_for(1) && !s.armed_for(0));
        assert!(!s.arm(0, Filter::default(), 64, 1), "one capture at a time");
        // Socket 0's frames are not taken, only socket 1's.
        s.offer(500, [(0, &udp[..]), (0, &udp[..])].into_iter());
        s.offer(1_000, [(1, &udp[..]), (0, &udp[..]), (1, &arp[..]), (1, &udp[..])].into_iter());
        assert!(s.armed());
        s.offer(2_000_000, [(1, &udp[..]), (1, &udp[..])].into_iter());
        assert!(!s.armed(), "three frames taken: disarmed");
        let mut rec = Vec::new();
        assert!(!s.drain(&mut rec));
        let mut pcap = Vec::new();
        let epoch = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(to_pcap(&rec, epoch, &mut pcap), 3);
        assert_eq!(pcap.len(), 3 * (16 + 64));
        // The third record: 2 ms after the epoch, 64 of 142 bytes.
        let r3 = &pcap[2 * 80..];
        assert_eq!(u32::from_le_bytes(r3[0..4].try_into().unwrap()), 1_000_000);
        assert_eq!(u32::from_le_bytes(r3[4..8].try_into().unwrap()), 2_000);
        assert_eq!(u32::from_le_bytes(r3[8..12].try_into().unwrap()), 64);
        assert_eq!(u32::from_le_bytes(r3[12..16].try_into().unwrap()) as usize, udp.len());
        assert_eq!(&r3[16..16 + 64], &udp[..64]);
    }

    #[test]
    fn requests_parse_with_bounds() {
        let r = Request::parse(
            "interface=xb0&queue=1&filter=udp+port%207&snaplen=96&count=5&seconds=999",
        )
        .unwrap();
        assert_eq!((r.interface.as_str(), r.queue, r.snaplen, r.count), ("xb0", 1, 96, 5));
        assert_eq!(r.filter, "udp port 7".parse().unwrap());
        assert_eq!(r.seconds, MAX_SECONDS);
        assert!(Request::parse("queue=1").is_err());
        assert!(Request::parse("interface=x&filter=nope").is_err());
        assert!(Request::parse("interface=x&what=1").is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// `xdpos capture`: the client.

/// `xdpos capture` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// The instance's metrics endpoint (its `--metrics` or `[metrics] listen`).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub from: std::net::SocketAddr,
    /// Interface whose received frames to capture.
    #[arg(long)]
    pub interface: String,
    /// Queue of the interface.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Filter: `arp`, `ip`, `icmp`, `udp`, `tcp`, `host A`, `src [host] A`, `dst [host] A`,
    /// `port N`, `src port N`, `dst port N`, joined by `and` (default: every frame).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Bytes kept of each frame.
    #[arg(long, default_value_t = 65535)]
    pub snaplen: u32,
    /// Frames to capture.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub count: u64,
    /// Stop after this many seconds even if fewer frames matched (at most 60).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// The pcap file to write (`-`: standard output).
    #[arg(long, short = 'w')]
    pub write: std::path::PathBuf,
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `xdpos capture`: asks the instance for a capture and writes the pcap; prints how many
/// frames it holds.
pub fn run_cli(a: &CaptureArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::{BufRead, Read, Write};
    a.filter.parse::<Filter>().map_err(anyhow::Error::msg)?;
    let mut s = std::net::TcpStream::connect_timeout(&a.from, Duration::from_secs(5))
        .with_context(|| format!("connect to the instance's endpoint {}", a.from))?;
    s.set_read_timeout(Some(Duration::from_secs_f64(a.seconds.clamp(0.0, MAX_SECONDS) + 10.0)))?;
    write!(
        s,
        "GET /capture?interface={}&queue={}&filter={}&snaplen={}&count={}&seconds={} HTTP/1.1\r\n\
         Host: {}\r\nConnection: close\r\n\r\n",
        query_escape(&a.interface),
        a.queue,
        query_escape(&a.filter),
        a.snaplen,
        a.count,
        a.seconds,
        a.from
    )?;
    let mut r = std::io::BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut line = String::new();
    while r.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut body = Vec::new();
    r.read_to_end(&mut body)?;
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "capture refused: {} {}",
        status.trim(),
        String::from_utf8_lossy(&body).trim()
    );
    anyhow::ensure!(body.len() >= 24, "capture: the instance sent no pcap header");
    let mut frames = 0u64;
    let mut i = 24;
    while i + 16 <= body.len() {
        let incl = u32::from_le_bytes(body[i + 8..i + 12].try_into().unwrap_or_default());
        i += 16 + incl as usize;
        frames += 1;
    }
    if a.write.as_os_str() == "-" {
        std::io::stdout().write_all(&body)?;
    } else {
        std::fs::write(&a.write, &body).with_context(|| format!("write {}", a.write.display()))?;
    }
    eprintln!("captured {frames} frames from {} queue {}", a.interface, a.queue);
    Ok(())
}
