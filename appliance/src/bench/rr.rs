//! # `xdpos bench rr`: netperf UDP_RR and TCP_RR, one transaction in flight
//!
//! What it is: a client in namespace A sends a request of one size (64 B by default), waits
//! for the response of the same size from a server in namespace B, and sends the next at once
//! (BENCHMARKS.md). Client on CPU 0, server on CPU 1. Variants, for each protocol:
//!
//! | variant | client (A) | server (B) | baseline |
//! |---|---|---|---|
//! | `udp-kernel`, `tcp-kernel` | kernel socket, blocking `send`/`recv` | kernel socket, blocking | |
//! | `udp-xdpos-server`, `tcp-xdpos-server` | kernel socket | xdpos: the UDP echo socket (answers from the same frame) or the TCP echo service | `*-kernel` |
//! | `udp-xdpos`, `tcp-xdpos` | xdpos stack on AF_XDP ([`RrClient`]) | xdpos | `*-kernel` |
//!
//! Metrics: `tps` (transactions per second), `p50_us`, `p99_us`, `p999_us` (round-trip time
//! percentiles, microseconds). The kernel client timestamps each transaction with the clock
//! around its two system calls; the xdpos client uses its worker's per-iteration clock (the
//! request leaves in the iteration that wrote it; the response is stamped by the iteration
//! that received it). Latencies go into a fixed log-linear histogram ([`Hist`]: 32 buckets per
//! power of two, about 3% resolution, no allocation per sample). The kernel's TCP runs CUBIC
//! in both namespaces, as in `bench tcp` (`--kernel-cc`).
//!
//! What it owns: the rig for the run, and per point the threads of both ends; all gone when a
//! point returns. Every loop is bounded by the point's stop flag and deadline; a lost UDP
//! request is sent again after 100 ms (counted).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use libos::tcp::{TcpError, TcpHandle};
use libos::udp::{UdpHandle, UdpMode, UdpSocketConfig};
use libos::Stack;
use nic::afxdp::XdpMode;

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::place::{CpuTimes, DUT_CPU, GEN_CPU};
use super::tcp::{
    bench_tcp, fail, run_host, xdpos_host, EndCtx, OffloadArgs, RaiseOnDrop, PORT, SLACK, XDPOS_A,
    XDPOS_B,
};
use super::{CommonArgs, KernelCc, Stop};
use crate::rig::{Pair, PairOpts};
use crate::services::{Services, ServicesConfig};
use crate::worker::App;

/// `xdpos bench rr` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RrArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Protocols to measure.
    #[arg(long, value_delimiter = ',', default_value = "udp,tcp")]
    pub protos: Vec<String>,
    /// Frames per batch of the xdpos workers.
    #[arg(long, default_value_t = 64)]
    pub burst: usize,
    /// Frames the xdpos workers keep posted on their fill rings, at most (`XskConfig::fill`).
    #[arg(long, default_value_t = nic::afxdp::DEFAULT_FILL)]
    pub fill: u32,
    #[command(flatten)]
    pub kernel_cc: KernelCc,
}

/// Who plays what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Kernel,
    XdposServer,
    Xdpos,
}

/// Transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

/// A fixed log-linear latency histogram in nanoseconds: 32 buckets per power of two.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Box<[u64]>,
    n: u64,
}

const SUB: u32 = 5;

impl Default for Hist {
    fn default() -> Hist {
        Hist { counts: vec![0u64; 64 << SUB].into_boxed_slice(), n: 0 }
    }
}

impl Hist {
    fn bucket(ns: u64) -> usize {
        if ns < (1 << (SUB + 1)) {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros();
        let sub = (ns >> (e - SUB)) & ((1 << SUB) - 1);
        (((e - SUB) << SUB) as u64 + sub + (1 << SUB)) as usize
    }

    /// The middle of bucket `i`, nanoseconds.
    fn value(i: usize) -> f64 {
        if i < 1 << (SUB + 1) {
            return i as f64;
        }
        let i = i - (1 << SUB);
        let e = (i >> SUB) as u32 + SUB;
        let sub = (i & ((1 << SUB) - 1)) as u64;
        let lo = (1u64 << e) + (sub << (e - SUB));
        lo as f64 + (1u64 << (e - SUB)) as f64 / 2.0
    }

    /// Records one round trip.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let i = Hist::bucket(ns).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.n += 1;
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `q` quantile (0..1), nanoseconds.
    pub fn quantile(&self, q: f64) -> f64 {
        let want = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Hist::value(i);
            }
        }
        0.0
    }
}

/// The benchmark.
#[derive(Debug)]
pub struct RrBench {
    args: RrArgs,
    pair: Pair,
    variants: Vec<(Variant, Proto, Who)>,
    xdp_mode: String,
}

impl RrBench {
    /// Builds the rig.
    pub fn new(args: &RrArgs) -> anyhow::Result<RrBench> {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        anyhow::ensure!(cpus > DUT_CPU, "bench rr pins to CPUs 0 and 1; this machine has {cpus}");
        if let Some(sizes) = &args.common.sizes {
            for &s in sizes {
                anyhow::ensure!((1..=1472).contains(&s), "size {s}: 1..=1472 bytes");
            }
        }
        let mut variants = Vec::new();
        for p in &args.protos {
            let proto = match p.as_str() {
                "udp" => Proto::Udp,
                "tcp" => Proto::Tcp,
                _ => anyhow::bail!("unknown protocol {p:?} (udp, tcp)"),
            };
            let base = format!("{p}-kernel");
            variants.push((Variant::new(base.clone(), None), proto, Who::Kernel));
            variants.push((
                Variant::new(format!("{p}-xdpos-server"), Some(&base)),
                proto,
                Who::XdposServer,
            ));
            variants.push((Variant::new(format!("{p}-xdpos"), Some(&base)), proto, Who::Xdpos));
        }
        let pair = Pair::new("rr", &PairOpts { b_kernel_ip: true, ..Default::default() })
            .context("build the pair rig")?;
        args.kernel_cc.apply(&pair)?;
        Ok(RrBench { args: args.clone(), pair, variants, xdp_mode: "native-copy".into() })
    }
}

impl Benchmark for RrBench {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![64]
    }

    fn variants(&self) -> Vec<Variant> {
        self.variants.iter().map(|(v, _, _)| v.clone()).collect()
    }

    fn primary(&self) -> Primary {
        Primary { metric: "tps", label: "kTPS", scale: 1e3 }
    }

    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        Some(vec!["tps", "p50_us", "p99_us", "p999_us"])
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", &self.xdp_mode)
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "client on CPU {GEN_CPU}, server on CPU {DUT_CPU}; one transaction in flight; sizes \
             are request = response bytes; kernel TCP: {}; xdpos workers: burst {}, fill {}",
            self.args.kernel_cc.name, self.args.burst, self.args.fill
        )]
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let (_, proto, who) = *self
            .variants
            .iter()
            .find(|(x, _, _)| x.name == v.name)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        // A kernel TCP client's connection is checked for `--kernel-cc`.
        let cc = (proto == Proto::Tcp && who != Who::Xdpos).then_some(&self.args.kernel_cc);
        let (m, mode) =
            point(&self.pair, (self.args.burst, self.args.fill), proto, who, cc, size, plan)?;
        if let Some(mode) = mode {
            self.xdp_mode = mode;
        }
        Ok(m)
    }
}

/// What the client hands back: transactions so far (live), and the histogram of the window.
struct ClientOut {
    done: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
}

fn point(
    pair: &Pair,
    xsk: (usize, u32),
    proto: Proto,
    who: Who,
    cc: Option<&KernelCc>,
    size: usize,
    plan: &Plan,
) -> anyhow::Result<(Metrics, Option<String>)> {
    let deadline = Instant::now() + plan.warmup + plan.window + SLACK;
    let stop = AtomicBool::new(false);
    let server = EndCtx {
        ns: &pair.ns_b,
        ifname: &pair.b.ifname,
        mac: pair.b.mac,
        cpu: DUT_CPU,
        stop: &stop,
        deadline,
        yields: (false, false),
        xdp_mode: XdpMode::Native,
    };
    let client = EndCtx {
        ns: &pair.ns_a,
        ifname: &pair.a.ifname,
        mac: pair.a.mac,
        cpu: GEN_CPU,
        stop: &stop,
        deadline,
        yields: (false, false),
        xdp_mode: XdpMode::Native,
    };
    let xdpos_server = who != Who::Kernel;
    let dst = SocketAddrV4::new(if xdpos_server { XDPOS_B } else { pair.b.ip }, PORT);
    let out = ClientOut {
        done: Arc::new(AtomicU64::new(0)),
        recording: Arc::new(AtomicBool::new(false)),
    };
    std::thread::scope(|s| -> anyhow::Result<(Metrics, Option<String>)> {
        let _stop = RaiseOnDrop(&stop);
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let srv = {
            let (ready, c) = (ready_tx.clone(), &server);
            s.spawn(move || {
                if xdpos_server {
                    xdpos_server_end(c, xsk, ready)
                } else {
                    kernel_server(c, proto, size, ready)
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("server not ready"))??;
        let cl = {
            let (ready, c) = (ready_tx, &client);
            let (done, rec) = (out.done.clone(), out.recording.clone());
            s.spawn(move || {
                if who == Who::Xdpos {
                    xdpos_client(c, proto, dst, size, xsk, done, rec, ready)
                } else {
                    kernel_client(c, proto, dst, size, done, rec, ready)
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("client not ready"))??;
        let full_warmup = plan.stop.sleep(plan.warmup);
        let cpu0 = CpuTimes::now();
        out.recording.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let d0 = out.done.load(Ordering::Relaxed);
        let full = full_warmup && plan.stop.sleep(plan.window);
        let d1 = out.done.load(Ordering::Relaxed);
        out.recording.store(false, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64().max(1e-6);
        let cpu = cpu0.shares(&CpuTimes::now());
        let cc_check = cc.map(|cc| cc.verify(&pair.ns_a, PORT));
        stop.store(true, Ordering::Relaxed);
        let (hist, cmode) = cl.join().map_err(|_| anyhow!("the client panicked"))??;
        let smode = srv.join().map_err(|_| anyhow!("the server panicked"))??;
        anyhow::ensure!(full || plan.stop.requested(), "window cut short");
        cc_check.transpose()?;
        anyhow::ensure!(!hist.is_empty(), "no transaction completed");
        let us = |q| hist.quantile(q) / 1e3;
        let mut m: Metrics = vec![
            ("tps", d1.saturating_sub(d0) as f64 / secs),
            ("p50_us", us(0.5)),
            ("p99_us", us(0.99)),
            ("p999_us", us(0.999)),
        ];
        for (i, c) in cpu.iter().enumerate().take(2) {
            m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
        }
        Ok((m, smode.or(cmode)))
    })
}

/// Whether an I/O error is a timeout (the loops' way of checking their stop flag).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// The kernel server: a UDP socket answering each datagram, or one TCP connection answering
/// each `size`-byte request.
fn kernel_server(
    c: &EndCtx<'_>,
    proto: Proto,
    size: usize,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let at = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
    if let Err(e) = c.enter() {
        return fail(&ready, e);
    }
    let mut buf = vec![0u8; 2048];
    match proto {
        Proto::Udp => {
            let s = match UdpSocket::bind(at) {
                Ok(s) => s,
                Err(e) => return fail(&ready, anyhow!("bind {at}: {e}")),
            };
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready.send(Ok(()));
            while !c.done() {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let _ = s.send_to(&buf[..n], from);
                    }
                    Err(e) if timed_out(&e) => {}
                    Err(e) => return Err(anyhow!("recv: {e}")),
                }
            }
        }
        Proto::Tcp => {
            let l = match TcpListener::bind(at) {
                Ok(l) => l,
                Err(e) => return fail(&ready, anyhow!("bind {at}: {e}")),
            };
            l.set_nonblocking(true)?;
            let _ = ready.send(Ok(()));
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if !c.done() => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(anyhow!("no connection: {e}")),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut have = 0;
            while !c.done() {
                match s.read(&mut buf[have..size]) {
                    Ok(0) => break,
                    Ok(n) => {
                        have += n;
                        if have == size {
                            s.write_all(&buf[..size])?;
                            have = 0;
                        }
                    }
                    Err(e) if timed_out(&e) => {}
                    Err(e) => return Err(anyhow!("read: {e}")),
                }
            }
        }
    }
    Ok(None)
}

/// The kernel client: blocking request/response, timed around the two system calls.
fn kernel_client(
    c: &EndCtx<'_>,
    proto: Proto,
    dst: SocketAddrV4,
    size: usize,
    done: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<(Hist, Option<String>)> {
    if let Err(e) = c.enter() {
        return fail(&ready, e);
    }
    let mut hist = Hist::default();
    let req = vec![0x42u8; size];
    let mut buf = vec![0u8; 2048];
    let mut n = 0u64;
    match proto {
        Proto::Udp => {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            s.connect(dst)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready.send(Ok(()));
            while !c.done() {
                let t = Instant::now();
                s.send(&req)?;
                match s.recv(&mut buf) {
                    Ok(_) => {
                        if recording.load(Ordering::Relaxed) {
                            hist.record(t.elapsed().as_nanos() as u64);
                        }
                        n += 1;
                        done.store(n, Ordering::Relaxed);
                    }
                    Err(e) if timed_out(&e) => {}
                    Err(e) => return Err(anyhow!("recv: {e}")),
                }
            }
        }
        Proto::Tcp => {
            let s = TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(5));
            let mut s = match s {
                Ok(s) => s,
                Err(e) => return fail(&ready, anyhow!("connect to {dst}: {e}")),
            };
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready.send(Ok(()));
            'outer: while !c.done() {
                let t = Instant::now();
                s.write_all(&req)?;
                let mut have = 0;
                while have < size {
                    match s.read(&mut buf[have..size]) {
                        Ok(0) => break 'outer,
                        Ok(k) => have += k,
                        Err(e) if timed_out(&e) => {
                            if c.done() {
                                break 'outer;
                            }
                        }
                        Err(e) => return Err(anyhow!("read: {e}")),
                    }
                }
                if recording.load(Ordering::Relaxed) {
                    hist.record(t.elapsed().as_nanos() as u64);
                }
                n += 1;
                done.store(n, Ordering::Relaxed);
            }
        }
    }
    Ok((hist, None))
}

/// The xdpos server: a UDP echo socket and the TCP echo service on [`PORT`] at [`XDPOS_B`].
fn xdpos_server_end(
    c: &EndCtx<'_>,
    xsk: (usize, u32),
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let host = xdpos_host(
        c,
        XDPOS_B,
        xsk,
        bench_tcp(64 * 1024),
        OffloadArgs { tso: false, gro: false },
        |stack| {
            let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
            stack
                .udp_bind(any, UdpSocketConfig::mode(UdpMode::Echo))
                .map_err(|e| anyhow!("udp: {e}"))?;
            let cfg = ServicesConfig { echo: Some(PORT), backlog: 16, ..Default::default() };
            Services::new(&cfg, stack).map_err(|e| anyhow!("tcp: {e}"))
        },
    );
    let (prog, w) = match host {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context("xdpos server")),
    };
    let _ = ready.send(Ok(()));
    Ok(run_host(c, prog, w)?.0)
}

/// The xdpos client of a request/response stream (see the module documentation).
#[derive(Debug)]
pub struct RrClient {
    proto: Proto,
    dst: SocketAddrV4,
    size: usize,
    udp: Option<UdpHandle>,
    tcp: Option<TcpHandle>,
    connected: bool,
    sent_at: Option<libos::Instant>,
    have: usize,
    req: Vec<u8>,
    hist: Hist,
    n: u64,
    lost: u64,
    done: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
    error: Option<TcpError>,
}

impl RrClient {
    fn send(&mut self, now: libos::Instant, stack: &mut Stack) {
        let ok = match (self.proto, self.udp, self.tcp) {
            (Proto::Udp, Some(h), _) => stack.udp_send(h, self.dst, &self.req).is_ok(),
            (Proto::Tcp, _, Some(h)) => {
                stack.tcp_mut().write(h, &self.req).is_ok_and(|n| n == self.req.len())
            }
            _ => false,
        };
        if ok {
            self.sent_at = Some(now);
            self.have = 0;
        }
    }

    fn complete(&mut self, now: libos::Instant) {
        if let Some(t) = self.sent_at.take() {
            if self.recording.load(Ordering::Relaxed) {
                self.hist.record((now - t).as_nanos() as u64);
            }
            self.n += 1;
            self.done.store(self.n, Ordering::Relaxed);
        }
    }
}

impl App for RrClient {
    fn poll(&mut self, now: libos::Instant, stack: &mut Stack) {
        while let Some(ev) = stack.tcp_mut().poll_event() {
            if let libos::tcp::TcpEvent::Conn { ready, .. } = ev {
                if ready.contains(libos::tcp::Ready::CONNECTED) {
                    self.connected = true;
                }
            }
        }
        match self.proto {
            Proto::Udp => {
                let Some(h) = self.udp else { return };
                let mut got = 0;
                let _ = stack.udp_recv(h, 8, |_, _| got += 1);
                if got > 0 {
                    self.complete(now);
                }
                let late = self.sent_at.is_some_and(|t| now - t > Duration::from_millis(100));
                if late {
                    self.lost += 1;
                    self.sent_at = None;
                }
                if self.sent_at.is_none() {
                    self.send(now, stack);
                }
            }
            Proto::Tcp => {
                if self.tcp.is_none() {
                    match stack.tcp_connect(now, self.dst, None) {
                        Ok(h) => self.tcp = Some(h),
                        Err(e) => self.error = Some(e),
                    }
                    return;
                }
                let Some(h) = self.tcp else { return };
                if !self.connected {
                    return;
                }
                let size = self.size;
                loop {
                    let have = self.have;
                    match stack.tcp_mut().read_with(h, |d| d.len().min(size - have)) {
                        Ok(0) => return,
                        Ok(k) => {
                            self.have += k;
                            if self.have == size {
                                self.complete(now);
                            }
                        }
                        Err(TcpError::WouldBlock) => break,
                        Err(e) => {
                            self.error = Some(e);
                            return;
                        }
                    }
                }
                if self.sent_at.is_none() {
                    self.send(now, stack);
                }
            }
        }
    }
}

/// The xdpos client at [`XDPOS_A`].
#[allow(clippy::too_many_arguments)]
fn xdpos_client(
    c: &EndCtx<'_>,
    proto: Proto,
    dst: SocketAddrV4,
    size: usize,
    xsk: (usize, u32),
    done: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<(Hist, Option<String>)> {
    let host = xdpos_host(
        c,
        XDPOS_A,
        xsk,
        bench_tcp(64 * 1024),
        OffloadArgs { tso: false, gro: false },
        |stack| {
            let udp = match proto {
                Proto::Udp => {
                    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 40000);
                    Some(
                        stack
                            .udp_bind(any, UdpSocketConfig::mode(UdpMode::Queue))
                            .map_err(|e| anyhow!("udp: {e}"))?,
                    )
                }
                Proto::Tcp => None,
            };
            Ok(RrClient {
                proto,
                dst,
                size,
                udp,
                tcp: None,
                connected: false,
                sent_at: None,
                have: 0,
                req: vec![0x42u8; size],
                hist: Hist::default(),
                n: 0,
                lost: 0,
                done,
                recording,
                error: None,
            })
        },
    );
    let (prog, w) = match host {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context("xdpos client")),
    };
    let _ = ready.send(Ok(()));
    let (mode, app, _) = run_host(c, prog, w)?;
    if let Some(e) = app.error {
        return Err(anyhow!("xdpos client: {e}"));
    }
    Ok((app.hist, mode))
}

/// `xdpos bench rr`.
pub fn run(args: &RrArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = RrBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench);
    harness::finish(&report, &args.common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_its_resolution() {
        let mut h = Hist::default();
        for v in 1..=100_000u64 {
            h.record(v * 100); // 100 ns .. 10 ms, uniform
        }
        for (q, want) in [(0.5, 5e6), (0.99, 9.9e6), (0.999, 9.99e6)] {
            let got = h.quantile(q);
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.len(), 100_000);
        let mut small = Hist::default();
        small.record(7);
        assert_eq!(small.quantile(0.5), 7.0);
    }
}
