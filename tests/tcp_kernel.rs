//! xdpos TCP against the Linux kernel as its peer, on AF_XDP over veth (root).
//!
//! - byte streams: a kernel client through the xdpos echo service and an xdpos client through
//!   a kernel echo server, [`BIG`] bytes each way, both ends' streams hashed with Debian's
//!   `sha256sum`;
//! - the same with loss, duplication and reordering: 5% loss both ways and 2% duplication
//!   (A → B) from nftables on the kernel peer's veth, reordering and 2% duplication (B → A)
//!   from an AF_XDP bridge in a middle namespace ([`Bridge`]: netem is not built here), with
//!   [`LOSSY`] bytes each way (smaller than [`BIG`] to keep CI time: at 5% loss each way the
//!   kernel's own recovery, its 200 ms minimum RTO included, bounds the rate);
//! - 10,000 concurrent kernel connections to one xdpos listener;
//! - a SYN flood from an AF_XDP socket in A while a kernel connection streams into the xdpos
//!   sink: the stream keeps a floor of its undisturbed throughput and SYN cookies are sent;
//! - the stock `iperf3 -c` client against the xdpos iperf3 server, forward (2 streams) and
//!   `-R`, its byte counts against the server's, and `sockperf ping-pong` against the
//!   sockperf service.
//!
//! Every wait is bounded; every test ends with the frame accounting of every queue (the
//! service's `join`, or `Worker::finish`) and no XDP program left. The tests share two CPUs,
//! so they take turns ([`serial`]): throughput floors need the machine.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libos::iface::route::Ipv4Cidr;
use libos::tcp::{TcpConfig, TcpError, TcpHandle};
use libos::wire::EthernetAddress;
use libos::{Stack, StackConfig};
use nic::afxdp::{XdpMode, XdpProgram, XskConfig, XskGroup, XskPort};
use nic::{Burst, Port};
use xdpos::echo::{EchoConfig, EchoService, WorkerReport};
use xdpos::rig::{mac_str, Chain, ChainOpts, Netns, Pair, PairOpts};
use xdpos::services::ServicesConfig;
use xdpos::worker::{App, Clock, Worker, WorkerConfig};
use xdpos_tests::*;

const ECHO: u16 = 7;
const SINK: u16 = 9;
const SOCKPERF: u16 = 11111;
const IPERF3: u16 = 5201;
/// Bytes each way of the clean streams.
const BIG: u64 = 256 << 20;
/// Bytes each way of the lossy streams.
const LOSSY: u64 = 16 << 20;
/// Longest any stream may take.
const STREAM_LIMIT: Duration = Duration::from_secs(120);

/// The tests take turns on the machine's two CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Hashing and the test stream.

/// Debian's `sha256sum` fed through a pipe (the debug build's own code would be too slow).
struct Sha256 {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    bytes: u64,
}

impl Sha256 {
    fn new() -> Sha256 {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum (coreutils)");
        let stdin = child.stdin.take();
        Sha256 { child, stdin, bytes: 0 }
    }

    fn update(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        self.stdin.as_mut().expect("open").write_all(b).expect("feed sha256sum");
    }

    /// The hex digest and the number of bytes hashed.
    fn finish(mut self) -> (String, u64) {
        drop(self.stdin.take());
        let mut out = String::new();
        self.child.stdout.take().expect("piped").read_to_string(&mut out).expect("read digest");
        let _ = self.child.wait();
        (out.split_whitespace().next().unwrap_or("").to_string(), self.bytes)
    }
}

/// The test stream: 64 KiB blocks of fixed random bytes, each starting with its own index, so
/// a block out of place changes the hash.
struct Blocks {
    base: Vec<u8>,
    cur: Vec<u8>,
    idx: u64,
}

const BLOCK: usize = 64 * 1024;

impl Blocks {
    fn new(seed: u64) -> Blocks {
        let mut x = seed | 1;
        let base: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Blocks { cur: base.clone(), base, idx: u64::MAX }
    }

    /// The stream's bytes from `offset` to the end of its block.
    fn at(&mut self, offset: u64) -> &[u8] {
        let idx = offset / BLOCK as u64;
        if idx != self.idx {
            self.cur.copy_from_slice(&self.base);
            self.cur[..8].copy_from_slice(&idx.to_be_bytes());
            self.idx = idx;
        }
        &self.cur[(offset % BLOCK as u64) as usize..]
    }
}

/// Sends `total` bytes of the stream on `w` and hashes them.
fn send_stream(mut w: TcpStream, total: u64, seed: u64) -> (String, u64) {
    let mut h = Sha256::new();
    let mut blocks = Blocks::new(seed);
    let (mut sent, deadline) = (0u64, Instant::now() + STREAM_LIMIT);
    while sent < total && Instant::now() < deadline {
        let n = (blocks.at(sent).len() as u64).min(total - sent) as usize;
        let chunk = &blocks.at(sent)[..n];
        if w.write_all(chunk).is_err() {
            break;
        }
        h.update(chunk);
        sent += n as u64;
    }
    let _ = w.shutdown(std::net::Shutdown::Write);
    h.finish()
}

/// Reads `r` to its end (bounded) and hashes it.
fn recv_stream(mut r: TcpStream) -> (String, u64) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + STREAM_LIMIT;
    while Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    h.finish()
}

/// The expected hash of `total` bytes of the stream.
fn stream_hash(total: u64, seed: u64) -> String {
    let mut h = Sha256::new();
    let mut blocks = Blocks::new(seed);
    let mut off = 0;
    while off < total {
        let n = (blocks.at(off).len() as u64).min(total - off) as usize;
        h.update(&blocks.at(off)[..n]);
        off += n as u64;
    }
    h.finish().0
}

// ---------------------------------------------------------------------------------------------
// Hosts.

/// TCP settings of the xdpos hosts.
fn tcp_config(max_connections: usize, buffer: usize) -> TcpConfig {
    TcpConfig {
        max_connections,
        max_time_wait: max_connections,
        rx_buffer: buffer,
        tx_buffer: buffer,
        ..TcpConfig::default()
    }
}

/// The xdpos host at `addr` on `ifname` in `ns`, one queue, with every TCP service.
fn host(ns: &Netns, ifname: &str, addr: Ipv4Addr, tcp: TcpConfig) -> EchoService {
    let mut cfg = EchoConfig::new(ifname, Ipv4Cidr::new(addr, 24), 7, vec![0]);
    cfg.mode = XdpMode::Native;
    cfg.services = ServicesConfig {
        echo: Some(ECHO),
        sink: Some(SINK),
        source: None,
        sockperf: Some(SOCKPERF),
        iperf3: Some(IPERF3),
        backlog: 4096,
    };
    cfg.tcp = tcp;
    ns.run_in(|| EchoService::start(&cfg)).unwrap().unwrap()
}

/// Stops the host; checks the frame accounting and that no program is left.
fn finish(ns: &Netns, host: EchoService) -> WorkerReport {
    let (mut reports, _) = host.join().unwrap();
    for r in &reports {
        assert!(r.frames.is_ok(), "queue {}: {:?}", r.queue, r.frames);
    }
    assert_no_xdp(ns);
    reports.remove(0)
}

fn pair(tag: &str) -> Pair {
    sweep();
    Pair::new(tag, &PairOpts::default()).unwrap()
}

/// A kernel client in `ns` streams `total` bytes to `dst` (an echo) and reads them back;
/// returns (hash sent, bytes sent, hash received, bytes received).
fn kernel_echo_client(ns: &Netns, dst: SocketAddrV4, total: u64) -> (String, u64, String, u64) {
    ns.run_in(|| {
        let s = TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(5))
            .expect("connect to the xdpos echo");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || send_stream(w, total, 7));
        let (rh, rn) = recv_stream(s);
        let (sh, sn) = writer.join().unwrap();
        (sh, sn, rh, rn)
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// An xdpos client: streams through a kernel echo server and hashes both directions.

/// Connects to `remote`, writes `total` bytes of the test stream, reads the echo, hashes
/// both; closes once the echo's end arrived.
struct EchoCheck {
    remote: SocketAddrV4,
    h: Option<TcpHandle>,
    total: u64,
    sent: u64,
    blocks: Blocks,
    tx: Option<Sha256>,
    rx: Option<Sha256>,
    shut: bool,
    eof: bool,
    error: Option<TcpError>,
    done: Arc<AtomicBool>,
}

impl App for EchoCheck {
    fn poll(&mut self, now: libos::Instant, stack: &mut Stack) {
        while stack.tcp_mut().poll_event().is_some() {}
        let h = match self.h {
            Some(h) => h,
            None => match stack.tcp_connect(now, self.remote, None) {
                Ok(h) => *self.h.insert(h),
                Err(e) => {
                    self.error = Some(e);
                    self.done.store(true, Ordering::Relaxed);
                    return;
                }
            },
        };
        if self.error.is_some() || self.eof {
            return;
        }
        let tcp = stack.tcp_mut();
        let rx = self.rx.as_mut().expect("open");
        loop {
            match tcp.read_with(h, |d| {
                rx.update(d);
                d.len()
            }) {
                Ok(0) => {
                    self.eof = true;
                    let _ = tcp.close(now, h);
                    self.done.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(_) => {}
                Err(TcpError::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    self.done.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        while self.sent < self.total {
            let n = (self.blocks.at(self.sent).len() as u64).min(self.total - self.sent) as usize;
            let chunk = &self.blocks.at(self.sent)[..n];
            match tcp.write(h, chunk) {
                Ok(k) => {
                    self.tx.as_mut().expect("open").update(&chunk[..k]);
                    self.sent += k as u64;
                }
                Err(TcpError::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        if self.sent == self.total && !self.shut {
            self.shut = tcp.shutdown(h).is_ok();
        }
    }
}

/// A kernel echo server on `at` in `ns` for one connection (bounded); returns the bytes echoed.
fn kernel_echo_server(ns: &Netns, at: SocketAddrV4, ready: std::sync::mpsc::Sender<()>) -> u64 {
    ns.run_in(|| {
        let l = TcpListener::bind(at).expect("bind the kernel echo");
        l.set_nonblocking(true).unwrap();
        let _ = ready.send(());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no connection to the kernel echo: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 128 * 1024];
        let mut n = 0u64;
        let end = Instant::now() + STREAM_LIMIT;
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    n += k as u64;
                }
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        n
    })
    .unwrap()
}

/// Runs an xdpos client (one queue, address `addr` on `ifname` in `ns`) through the kernel
/// echo at `server` in `server_ns`; returns the app and the worker's report.
fn xdpos_echo_client(
    ns: &Netns,
    ifname: &str,
    mac: [u8; 6],
    addr: Ipv4Addr,
    server_ns: &Netns,
    server: SocketAddrV4,
    total: u64,
) -> (EchoCheck, xdpos::worker::WorkerReport, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let echo = s.spawn(|| kernel_echo_server(server_ns, server, ready_tx));
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("kernel echo ready");
        let client = s.spawn(|| {
            ns.run_in(|| {
                let prog = XdpProgram::attach(ifname, XdpMode::Native).unwrap();
                let port = XskPort::open(&XskConfig::new(ifname, 0), &prog).unwrap();
                let clock = Clock::new();
                let mut cfg = StackConfig::new(EthernetAddress(mac), &[Ipv4Cidr::new(addr, 24)]);
                cfg.arp.announce_count = 0;
                cfg.tcp = tcp_config(16, 256 * 1024);
                let stack = Stack::new(cfg, clock.now()).unwrap();
                let app = EchoCheck {
                    remote: server,
                    h: None,
                    total,
                    sent: 0,
                    blocks: Blocks::new(11),
                    tx: Some(Sha256::new()),
                    rx: Some(Sha256::new()),
                    shut: false,
                    eof: false,
                    error: None,
                    done: done.clone(),
                };
                let mut w = Worker::new(port, stack, app, WorkerConfig::default(), clock);
                prog.own_addr(addr).unwrap();
                let until = Instant::now() + STREAM_LIMIT;
                std::thread::scope(|t| {
                    t.spawn(|| {
                        while !done.load(Ordering::Relaxed) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        // Let the last ACKs and the FIN exchange finish.
                        std::thread::sleep(Duration::from_millis(300));
                        stop.store(true, Ordering::Relaxed);
                    });
                    w.run_loop(&stop, Some(until + Duration::from_secs(2)));
                });
                prog.steer_none().unwrap();
                let r = w.finish();
                let (_, _, app) = w.into_parts();
                drop(prog);
                (app, r)
            })
            .unwrap()
        });
        let (app, r) = client.join().unwrap();
        let echoed = echo.join().unwrap();
        (app, r, echoed)
    })
}

/// Checks an [`EchoCheck`]'s two hashes against the stream's.
fn check_client(mut app: EchoCheck, r: &xdpos::worker::WorkerReport, total: u64, what: &str) {
    assert!(r.frames.is_ok(), "{what}: {:?}", r.frames);
    assert_eq!(app.error, None, "{what}: the xdpos client failed");
    assert!(app.eof, "{what}: the echo's end never arrived ({} sent)", app.sent);
    let (th, tn) = app.tx.take().unwrap().finish();
    let (rh, rn) = app.rx.take().unwrap().finish();
    assert_eq!((tn, rn), (total, total), "{what}: bytes sent and echoed");
    let want = stream_hash(total, 11);
    assert_eq!(th, want, "{what}: what xdpos sent is not the stream");
    assert_eq!(rh, want, "{what}: the echo differs from what was sent");
}

// ---------------------------------------------------------------------------------------------
// Clean streams.

#[test]
fn a_kernel_client_streams_256_mib_each_way_through_the_xdpos_echo() {
    let _turn = serial();
    let pair = pair("te");
    let h = host(&pair.ns_b, &pair.b.ifname, pair.b.ip, tcp_config(64, 256 * 1024));
    let t0 = Instant::now();
    let (sh, sn, rh, rn) = kernel_echo_client(&pair.ns_a, SocketAddrV4::new(pair.b.ip, ECHO), BIG);
    let secs = t0.elapsed().as_secs_f64();
    let r = finish(&pair.ns_b, h);
    assert_eq!((sn, rn), (BIG, BIG), "bytes sent and echoed\n{}", dump(&pair));
    assert_eq!(sh, stream_hash(BIG, 7), "the kernel sent the stream");
    assert_eq!(rh, sh, "the echo is byte-exact");
    assert_eq!((r.services.bytes_in, r.services.bytes_out), (BIG, BIG));
    assert_eq!((r.services.accepted, r.services.closed, r.services.failed), (1, 1, 0));
    eprintln!("256 MiB each way in {secs:.1} s; {}", r.line());
}

#[test]
fn an_xdpos_client_streams_256_mib_each_way_through_a_kernel_echo() {
    let _turn = serial();
    let pair = pair("tc");
    let server = SocketAddrV4::new(pair.a.ip, 7000);
    let t0 = Instant::now();
    let (app, r, echoed) = xdpos_echo_client(
        &pair.ns_b,
        &pair.b.ifname,
        pair.b.mac,
        pair.b.ip,
        &pair.ns_a,
        server,
        BIG,
    );
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(echoed, BIG, "the kernel echoed everything\n{}", dump(&pair));
    eprintln!("256 MiB each way in {secs:.1} s; port {:?}", r.port);
    check_client(app, &r, BIG, "clean");
    assert_no_xdp(&pair.ns_b);
}

// ---------------------------------------------------------------------------------------------
// Real clients.

/// Runs the stock `iperf3 -c` in `ns` (bounded by `timeout`) and returns its JSON report.
fn iperf3(ns: &Netns, server: Ipv4Addr, args: &str) -> serde_json::Value {
    let out = ns
        .sh(&format!("timeout 30 iperf3 -c {server} -p {IPERF3} -t 2 --json {args}"))
        .unwrap_or_else(|e| panic!("iperf3 {args}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 {args}: {e}: {out}"))
}

fn bytes(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or_else(|| panic!("no {path:?} in {v}"))
}

#[test]
fn the_stock_iperf3_client_measures_the_xdpos_server_with_matching_byte_counts() {
    let _turn = serial();
    let pair = pair("ti");
    let h = host(&pair.ns_b, &pair.b.ifname, pair.b.ip, tcp_config(64, 256 * 1024));
    let fwd = iperf3(&pair.ns_a, pair.b.ip, "-P 2");
    let after_fwd = h.counters()[0].1.rx.load(Ordering::Relaxed);
    let rev = iperf3(&pair.ns_a, pair.b.ip, "-R");
    let r = finish(&pair.ns_b, h);
    assert!(after_fwd > 0);
    // Forward: what the client sent is what the server received, stream by stream (the
    // server reports once the last byte arrived).
    let (sent, recv) = (
        bytes(&fwd, &["end", "sum_sent", "bytes"]),
        bytes(&fwd, &["end", "sum_received", "bytes"]),
    );
    assert!(sent > 10 << 20, "forward moved only {sent} bytes");
    assert_eq!(sent, recv, "forward: client sent vs server received");
    for s in fwd["end"]["streams"].as_array().expect("streams") {
        assert_eq!(bytes(s, &["sender", "bytes"]), bytes(s, &["receiver", "bytes"]));
    }
    // Reverse: the client's sender line is the server's count, which is also the server's own
    // record; the client stops reading at TEST_END, so its count may be short by what sat in
    // its socket buffer (see services::iperf3).
    let (rsent, rrecv) = (
        bytes(&rev, &["end", "sum_sent", "bytes"]),
        bytes(&rev, &["end", "sum_received", "bytes"]),
    );
    let rec = r.iperf3.as_ref().expect("the server recorded the reverse test");
    assert!(rec.reverse);
    let server_sent: u64 = rec.streams.iter().map(|s| s.2).sum();
    assert_eq!(rsent, server_sent, "reverse: the client reports the server's count");
    assert!(rsent > 10 << 20, "reverse moved only {rsent} bytes");
    assert!(rrecv <= rsent && rsent - rrecv <= 8 << 20, "reverse: sent {rsent}, received {rrecv}");
    assert_eq!(rec.streams[0].3, Some(rrecv), "the server got the client's count");
    assert_eq!((r.services.iperf3_tests, r.services.failed), (2, 0), "{}", r.line());
}

#[test]
fn sockperf_ping_pong_gets_every_reply_from_the_sockperf_service() {
    let _turn = serial();
    let pair = pair("ts");
    let h = host(&pair.ns_b, &pair.b.ifname, pair.b.ip, tcp_config(64, 64 * 1024));
    let out = pair
        .ns_a
        .sh(&format!(
            "timeout 20 sockperf ping-pong --tcp -i {} -p {SOCKPERF} -t 1 -m 64 2>&1",
            pair.b.ip
        ))
        .unwrap_or_else(|e| panic!("sockperf: {e}"));
    let r = finish(&pair.ns_b, h);
    assert!(out.contains("Summary: Latency is"), "{out}");
    assert!(out.contains("# dropped messages = 0"), "{out}");
    let line = out.lines().find(|l| l.contains("ReceivedMessages=")).expect("counts");
    let received: u64 = line.rsplit('=').next().unwrap().trim().parse().unwrap();
    assert!(received > 1000 && r.services.sockperf_replies >= received, "{line}; {}", r.line());
}
