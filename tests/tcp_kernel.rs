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
use xdpos::rig::{Chain, ChainOpts, Netns, Pair, PairOpts};
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
        ..Default::default()
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
) -> (EchoCheck, xdpos::worker::WorkerReport, u64, libos::tcp::TcpStats) {
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
                let (_, stack, app) = w.into_parts();
                drop(prog);
                (app, r, stack.tcp().stats().clone())
            })
            .unwrap()
        });
        let (app, r, tcp) = client.join().unwrap();
        let echoed = echo.join().unwrap();
        (app, r, echoed, tcp)
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
    let (app, r, echoed, _) = xdpos_echo_client(
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

// ---------------------------------------------------------------------------------------------
// Many connections.

/// Lets this process hold `n` file descriptors (root may raise the hard limit too).
fn raise_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_some_and(|c| c >= n) {
        return;
    }
    let max = cur.maximum.map_or(n, |m| m.max(n));
    setrlimit(Resource::Nofile, Rlimit { current: Some(n), maximum: Some(max) })
        .expect("raise RLIMIT_NOFILE");
}

/// Connections in `state` to port `port` in `ns` (from `ss`).
fn count_conns(ns: &Netns, state: &str, port: u16) -> usize {
    let out = ns.sh(&format!("ss -Htn state {state} '( dport = :{port} )' | wc -l")).unwrap();
    out.trim().parse().unwrap_or(0)
}

#[test]
fn ten_thousand_kernel_connections_are_served_at_once_by_one_xdpos_listener() {
    const N: usize = 10_000;
    let _turn = serial();
    let pair = pair("tk");
    pair.ns_a.sh("sysctl -qw net.ipv4.ip_local_port_range='1024 65535'").unwrap();
    raise_nofile(N as u64 + 4096);
    // 10,240 slots of 2 × 4 KiB buffers: 80 MiB of address space, touched only as used.
    let h = host(&pair.ns_b, &pair.b.ifname, pair.b.ip, tcp_config(10_240, 4096));
    let dst = SocketAddr::V4(SocketAddrV4::new(pair.b.ip, ECHO));
    let t0 = Instant::now();
    let (established, echoed, connect_secs) = pair
        .ns_a
        .run_in(|| {
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut conns = Vec::with_capacity(N);
            while conns.len() < N && Instant::now() < deadline {
                match TcpStream::connect_timeout(&dst, Duration::from_secs(5)) {
                    Ok(s) => conns.push(s),
                    Err(e) => panic!("connection {} failed: {e}", conns.len()),
                }
            }
            let connect_secs = t0.elapsed().as_secs_f64();
            let established = count_conns(&pair.ns_a, "established", ECHO);
            // Every connection, all open at once, echoes its own number.
            for (i, s) in conns.iter_mut().enumerate() {
                s.write_all(&(i as u32).to_be_bytes()).unwrap();
            }
            let mut echoed = 0;
            for (i, s) in conns.iter_mut().enumerate() {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut b = [0u8; 4];
                if s.read_exact(&mut b).is_ok() && u32::from_be_bytes(b) == i as u32 {
                    echoed += 1;
                }
            }
            drop(conns);
            (established, echoed, connect_secs)
        })
        .unwrap();
    // Wait (bounded) until xdpos has answered every FIN.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && count_conns(&pair.ns_a, "fin-wait-1", ECHO) + count_conns(&pair.ns_a, "fin-wait-2", ECHO)
            > 0
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = finish(&pair.ns_b, h);
    eprintln!("{N} connections in {connect_secs:.1} s; {}", r.line());
    assert_eq!(established, N, "all {N} open at once\n{}", dump(&pair));
    assert_eq!(echoed, N, "every connection echoed its message");
    assert_eq!(r.services.accepted, N as u64);
    assert_eq!((r.services.closed, r.services.failed), (N as u64, 0), "{}", r.line());
    assert_eq!(r.tcp.syn_cookies_sent, 0, "no SYN was answered with a cookie");
}

// ---------------------------------------------------------------------------------------------
// SYN flood.

/// SYN frames from spoofed sources (10.0.0.100–199, every source port) to `dst`.
fn syn_frames(a_mac: [u8; 6], b_mac: [u8; 6], dst: SocketAddrV4, n: usize) -> Vec<Vec<u8>> {
    use libos::sim::tcp::{repr, tcp_frame};
    use libos::wire::TcpFlags;
    (0..n)
        .map(|i| {
            let src = Ipv4Addr::new(10, 0, 0, 100 + (i % 100) as u8);
            let sport = 1024 + (i / 100) as u16;
            let r = repr(sport, dst.port(), 0x1000_0000 ^ i as u32, 0, TcpFlags::SYN, 65535);
            let mut r = r;
            r.max_seg_size = Some(1460);
            tcp_frame(EthernetAddress(a_mac), EthernetAddress(b_mac), src, *dst.ip(), &r, &[])
        })
        .collect()
}

/// Sends `frames` round and round from an AF_XDP socket on `ifname` (the calling thread's
/// namespace) at about `pps`, until `stop`; returns how many were sent.
fn flood(ifname: &str, frames: &[Vec<u8>], pps: u64, stop: &AtomicBool) -> u64 {
    let prog = XdpProgram::attach(ifname, XdpMode::Native).unwrap();
    prog.steer_none().unwrap();
    let mut port = XskPort::open(&XskConfig::new(ifname, 0), &prog).unwrap();
    let (mut sent, mut k) = (0u64, 0usize);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(30);
    let mut b = Burst::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let due = (t0.elapsed().as_secs_f64() * pps as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        port.reclaim();
        let want = ((due - sent) as usize).min(64);
        let got = port.alloc_burst(&mut b, want);
        for d in b.as_mut_slice().iter_mut() {
            let f = &frames[k % frames.len()];
            k += 1;
            d.len = f.len() as u32;
        }
        let descs: Vec<nic::Desc> = b.iter().copied().collect();
        for (i, d) in descs.iter().enumerate() {
            let f = &frames[(k - got + i) % frames.len()];
            port.room_mut(d)[..f.len()].copy_from_slice(f);
        }
        sent += port.tx_burst(&mut b) as u64;
        port.free_burst(&mut b);
    }
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle && port.frame_counts().tx + port.frame_counts().kernel > 0 {
        port.reclaim();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_frames_accounted(&mut port);
    drop(port);
    drop(prog);
    sent
}

/// A kernel client in A streams 64 KiB writes to `dst` on B; after 0.5 s its rate is taken
/// alone for 1.5 s, then 50k SYN/s from 10,000 spoofed sources start and it is taken again for
/// 1.5 s. Returns (bytes/s alone, bytes/s during the flood, SYNs sent).
fn stream_through_syn_flood(pair: &Pair, dst: SocketAddrV4) -> (f64, f64, u64) {
    let frames = syn_frames(pair.a.mac, pair.b.mac, dst, 10_000);
    let written = AtomicU64::new(0);
    let (stop_stream, stop_flood) = (AtomicBool::new(false), AtomicBool::new(false));
    let out = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            pair.ns_a
                .run_in(|| {
                    let mut c =
                        TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(5))
                            .expect("connect to the sink");
                    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                    let buf = vec![0x5au8; 64 * 1024];
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop_stream.load(Ordering::Relaxed) && Instant::now() < deadline {
                        c.write_all(&buf).expect("the stream survives the flood");
                        written.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    }
                })
                .unwrap()
        });
        let rate = |d: Duration| {
            let a = written.load(Ordering::Relaxed);
            std::thread::sleep(d);
            (written.load(Ordering::Relaxed) - a) as f64 / d.as_secs_f64()
        };
        std::thread::sleep(Duration::from_millis(500));
        let base = rate(Duration::from_millis(1500));
        let f = s.spawn(|| {
            pair.ns_a.run_in(|| flood(&pair.a.ifname, &frames, 50_000, &stop_flood)).unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        let during = rate(Duration::from_millis(1500));
        stop_flood.store(true, Ordering::Relaxed);
        let flooded = f.join().unwrap();
        stop_stream.store(true, Ordering::Relaxed);
        stream.join().unwrap();
        (base, during, flooded)
    });
    assert_no_xdp(&pair.ns_a);
    out
}

#[test]
fn an_established_stream_keeps_its_throughput_through_a_syn_flood_answered_with_cookies() {
    let _turn = serial();
    let pair = pair("tf");
    let h = host(&pair.ns_b, &pair.b.ifname, pair.b.ip, tcp_config(1024, 256 * 1024));
    let dst = SocketAddrV4::new(pair.b.ip, SINK);
    let (base, during, flooded) = stream_through_syn_flood(&pair, dst);
    let r = finish(&pair.ns_b, h);
    eprintln!(
        "stream {:.0} Mbit/s alone, {:.0} Mbit/s during {flooded} SYNs; {}",
        base * 8e-6,
        during * 8e-6,
        r.line()
    );
    assert!(flooded > 50_000, "the flood sent {flooded} SYNs");
    assert!(r.tcp.syn_cookies_sent > 10_000, "cookies: {}", r.tcp.syn_cookies_sent);
    // The debug build halves the stream here (SYN-ACK cookies cost the worker); the floor
    // catches a flood that starves established connections.
    assert!(during >= 0.25 * base, "throughput fell from {base:.0} to {during:.0} B/s");
    assert_eq!(r.services.failed, 0, "{}", r.line());
}

/// The same sustained flood against the daemon (`xdpos run`, server role, a TCP sink from
/// its TOML configuration): cookies counted on `/metrics`, the established stream keeps its
/// floor, and the daemon stops cleanly afterwards.
#[test]
fn the_daemons_established_stream_keeps_its_throughput_through_a_syn_flood() {
    let _turn = serial();
    let pair = pair("tdf");
    let toml = server_toml((&pair.b.ifname, pair.b.ip), None, 1, &[("tcp-sink", SINK)]);
    let d = Daemon::start(&pair.ns_b, "tcp-flood", &toml);
    let dst = SocketAddrV4::new(pair.b.ip, SINK);
    let (base, during, flooded) = stream_through_syn_flood(&pair, dst);
    let text = d.metrics();
    let cookies = metric_total(&text, "xdpos_tcp_syn_cookies_sent_total");
    let lines = d.stop();
    eprintln!(
        "daemon: stream {:.0} Mbit/s alone, {:.0} Mbit/s during {flooded} SYNs, {cookies} cookies",
        base * 8e-6,
        during * 8e-6,
    );
    assert!(flooded > 50_000, "the flood sent {flooded} SYNs");
    assert!(cookies > 10_000, "cookies: {cookies}\n{lines:?}");
    assert!(during >= 0.25 * base, "throughput fell from {base:.0} to {during:.0} B/s");
}

// ---------------------------------------------------------------------------------------------
// Loss, duplication and reordering.

/// nftables on A's veth: 5% of TCP frames dropped each way, 2% of what leaves A duplicated.
const IMPAIR: &str = r#"table netdev xdpos_impair {
  chain in {
    type filter hook ingress device "xa0" priority 0; policy accept;
    meta l4proto tcp numgen random mod 100 < 5 counter drop
  }
  chain out {
    type filter hook egress device "xa0" priority 0; policy accept;
    meta l4proto tcp numgen random mod 100 < 5 counter drop
    meta l4proto tcp numgen random mod 100 < 2 counter dup to "xa0"
  }
}"#;

/// What the bridge did.
#[derive(Debug, Default, Clone, Copy)]
struct BridgeStats {
    forwarded: u64,
    reordered: u64,
    duplicated: u64,
}

/// An L2 bridge in F between A's and B's veths on one shared-UMEM AF_XDP group, which holds
/// 3% of the frames back until a later frame of the same direction has gone ahead of them
/// (or 2 ms passed): real reordering without netem. It also duplicates 2% of B → A frames
/// (nftables' `dup` can only duplicate what leaves A). Seeded, bounded, and it checks its
/// frame accounting when stopped.
fn bridge(chain: &Chain, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) -> BridgeStats {
    chain.ns_f.enter().unwrap();
    let pa = XdpProgram::attach(&chain.fa.ifname, XdpMode::Native).unwrap();
    let pb = XdpProgram::attach(&chain.fb.ifname, XdpMode::Native).unwrap();
    let cfg = |i: &str| XskConfig { frames: 8192, ..XskConfig::new(i, 0) };
    let mut g =
        XskGroup::open(&[(cfg(&chain.fa.ifname), &pa), (cfg(&chain.fb.ifname), &pb)]).unwrap();
    pa.steer_all().unwrap();
    pb.steer_all().unwrap();
    let _ = ready.send(());
    let mut st = BridgeStats::default();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100
    };
    let mut held = [Burst::new(), Burst::new()];
    let mut held_at = [Instant::now(); 2];
    let (mut b, mut out) = (Burst::new(), Burst::new());
    let mut copy = vec![0u8; 4096];
    let deadline = Instant::now() + STREAM_LIMIT + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            g.port(from).rx_burst(&mut b);
            let fresh = b.len();
            for d in b.iter().copied() {
                let r = rnd();
                if r < 3 && held[from].spare() > 0 && held[from].len() < 16 {
                    if held[from].is_empty() {
                        held_at[from] = Instant::now();
                    }
                    held[from].push(d);
                    st.reordered += 1;
                    continue;
                }
                out.push(d);
                if from == 1 && r >= 98 {
                    let n = {
                        let p = g.port(from);
                        let f = p.frame(&d);
                        copy[..f.len()].copy_from_slice(f);
                        f.len()
                    };
                    let mut one = Burst::new();
                    if g.port(to).alloc_burst(&mut one, 1) == 1 {
                        let mut dd = one.as_slice()[0];
                        dd.len = n as u32;
                        g.port(to).room_mut(&dd)[..n].copy_from_slice(&copy[..n]);
                        out.push(dd);
                        st.duplicated += 1;
                    }
                }
            }
            b.clear();
            // Held frames leave after newer ones (or when they have waited long enough).
            let release = (fresh > held[from].len() && !out.is_empty())
                || held_at[from].elapsed() > Duration::from_millis(2);
            if release {
                for d in held[from].iter().copied() {
                    out.push(d);
                }
                held[from].clear();
            }
            st.forwarded += out.len() as u64;
            g.port(to).tx_burst(&mut out);
            g.port(to).free_burst(&mut out);
            g.port(to).reclaim();
        }
    }
    pa.steer_none().unwrap();
    pb.steer_none().unwrap();
    for (i, h) in held.iter_mut().enumerate() {
        g.port(i).free_burst(h);
    }
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        g.port(0).reclaim();
        g.port(1).reclaim();
        let mut drain = Burst::new();
        for i in 0..2 {
            while g.port(i).rx_burst(&mut drain) > 0 {
                g.port(i).free_burst(&mut drain);
            }
        }
        let c = g.frame_counts();
        if c.tx == 0 && c.kernel == 0 && c.completion == 0 && c.rx == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    g.audit().unwrap_or_else(|e| panic!("bridge: {e}"));
    drop(g);
    drop((pa, pb));
    st
}

/// The chain A —veth— F (the bridge) —veth— B with A's veth impaired; xdpos at
/// [`XDPOS_LOSSY`] on B. Runs `f` while the bridge runs; returns its result, the bridge's
/// counts and nftables' counters.
fn lossy<R: Send>(tag: &str, f: impl FnOnce(&Chain) -> R + Send) -> (R, BridgeStats, String) {
    sweep();
    let opts = ChainOpts {
        queues: 1,
        a_cidr: (Ipv4Addr::new(10, 0, 0, 1), 24),
        b_cidr: (Ipv4Addr::new(10, 0, 0, 2), 24),
        gateways: None,
    };
    let chain = Chain::new(tag, &opts).unwrap();
    chain.ns_a.sh(&format!("nft -f - <<'EOF'\n{IMPAIR}\nEOF")).expect("nftables impairment");
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (r, st) = std::thread::scope(|s| {
        let b = s.spawn(|| bridge(&chain, &stop, ready_tx));
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("bridge ready");
        let r = f(&chain);
        stop.store(true, Ordering::Relaxed);
        (r, b.join().unwrap())
    });
    let counters = chain.ns_a.sh("nft list table netdev xdpos_impair").unwrap_or_default();
    chain.ns_a.sh("nft delete table netdev xdpos_impair").unwrap();
    assert_no_xdp(&chain.ns_f);
    assert!(!chain.ns_a.sh("nft list tables").unwrap().contains("xdpos_impair"));
    (r, st, counters)
}

/// xdpos's address on the lossy chain (B's kernel keeps 10.0.0.2).
const XDPOS_LOSSY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

/// The packets nftables counted in `table` output, per rule, in order.
fn nft_counts(table: &str) -> Vec<u64> {
    table
        .split("packets ")
        .skip(1)
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn a_kernel_client_streams_byte_exact_through_the_xdpos_echo_despite_loss_duplication_and_reordering(
) {
    let _turn = serial();
    let t0 = Instant::now();
    let ((sh, sn, rh, rn, r), st, nft) = lossy("tl", |chain| {
        let h = host(&chain.ns_b, &chain.b.ifname, XDPOS_LOSSY, tcp_config(64, 256 * 1024));
        let (sh, sn, rh, rn) =
            kernel_echo_client(&chain.ns_a, SocketAddrV4::new(XDPOS_LOSSY, ECHO), LOSSY);
        let r = finish(&chain.ns_b, h);
        (sh, sn, rh, rn, r)
    });
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} MiB each way in {secs:.1} s; bridge {st:?}; nft {:?}; {}",
        LOSSY >> 20,
        nft_counts(&nft),
        r.line()
    );
    assert_eq!((sn, rn), (LOSSY, LOSSY), "bytes sent and echoed");
    assert_eq!(sh, stream_hash(LOSSY, 7));
    assert_eq!(rh, sh, "the echo is byte-exact");
    assert_eq!((r.services.closed, r.services.failed), (1, 0));
    let n = nft_counts(&nft);
    assert!(n.len() == 3 && n.iter().all(|&c| c > 0), "loss and duplication happened: {nft}");
    assert!(st.reordered > 0 && st.duplicated > 0, "{st:?}");
    assert!(r.tcp.retransmits > 0 && r.tcp.sack_recoveries + r.tcp.rto_events > 0, "{:?}", r.tcp);
}

#[test]
fn an_xdpos_client_streams_byte_exact_through_a_kernel_echo_despite_loss_duplication_and_reordering(
) {
    let _turn = serial();
    let t0 = Instant::now();
    let ((app, r, echoed, tcp), st, nft) = lossy("tm", |chain| {
        let server = SocketAddrV4::new(chain.a.ip, 7000);
        xdpos_echo_client(
            &chain.ns_b,
            &chain.b.ifname,
            chain.b.mac,
            XDPOS_LOSSY,
            &chain.ns_a,
            server,
            LOSSY,
        )
    });
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("{} MiB each way in {secs:.1} s; bridge {st:?}; nft {:?}; tcp retransmits {} sack recoveries {} rto {}", LOSSY >> 20, nft_counts(&nft), tcp.retransmits, tcp.sack_recoveries, tcp.rto_events);
    assert_eq!(echoed, LOSSY);
    check_client(app, &r, LOSSY, "lossy");
    assert!(st.reordered > 0 && st.duplicated > 0, "{st:?}");
    assert!(tcp.retransmits > 0, "{tcp:?}");
}
