//! # `xdpos bench tcp`: netperf TCP_STREAM, the kernel's TCP against xdpos's
//!
//! What it is: one TCP connection from namespace A to namespace B of the `pair` rig, the
//! sender writing as fast as it can in writes of one size, goodput counted at the receiver
//! (BENCHMARKS.md; the seed report's Figure 3). Sizes are write sizes (64 B to 64 KiB). Variants
//! (sender on CPU 0, receiver on CPU 1):
//!
//! | variant | sender (A) | receiver (B) | baseline |
//! |---|---|---|---|
//! | `kernel-nooffload` | kernel socket, `write` of the size; TSO/GSO off, checksum offload on | kernel socket, GRO off | |
//! | `kernel` | the same with the veth's offloads as they come (TSO, GSO on) | kernel socket | `kernel-nooffload` |
//! | `xdpos` | xdpos stack on AF_XDP, a `Tcp::write` of the size per call (a function call, not a system call) | xdpos TCP sink | `kernel-nooffload` |
//! | `kernel-to-xdpos` | kernel socket as `kernel-nooffload`, and checksums complete (`tx off`: xdpos verifies them) | xdpos TCP sink | `kernel-nooffload` |
//!
//! Metric: `goodput_bps` (payload bits read by the receiving application per second). The
//! table adds the writes per second of the sender and the CPU shares.
//!
//! The xdpos ends are hosts with their own addresses (10.0.0.11 on A, 10.0.0.12 on B; the
//! kernels keep 10.0.0.1 and 10.0.0.2), resolving each other by ARP. Both run
//! [`crate::services::Services`]: the sender a [`Role::Source`] client connection, the
//! receiver the sink service. Nagle is on everywhere, as with netperf's defaults, so small
//! writes are coalesced into full segments by both stacks.
//!
//! Placement: veth runs B's receive work (the kernel's TCP receive, or XDP and the copy into
//! the AF_XDP socket) as a softirq on the sender's CPU 0, and A's receive work (the ACKs) on
//! the receiver's CPU 1; `--kernel-rps` moves the kernel receiver's TCP work to CPU 1 with RPS.
//!
//! What it owns: the rig for the run, and per point the threads of both ends with their
//! sockets, XDP programs and workers, all gone (offloads reset) when a point returns, on every
//! path. Every loop is bounded by the point's stop flag and deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use libos::iface::route::Ipv4Cidr;
use libos::tcp::TcpConfig;
use libos::wire::EthernetAddress;
use libos::{Stack, StackConfig};
use nic::afxdp::{BindMode, XdpMode, XdpProgram, XskConfig, XskPort};
use nic::Port;

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::place::{self, CpuTimes, DUT_CPU, GEN_CPU};
use super::{CommonArgs, Stop};
use crate::offload::{OffloadPort, Offloads};
use crate::rig::{Netns, Pair, PairOpts};
use crate::services::{Role, Services, ServicesConfig};
use crate::worker::{App, Clock, TxCsum, Worker, WorkerConfig};

/// `xdpos bench tcp` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TcpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Frames per batch of the xdpos workers (and `burst` of their sockets).
    #[arg(long, default_value_t = 64)]
    pub burst: usize,
    /// Receive and send buffer of every xdpos connection, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub buffer: usize,
    /// Move the kernel receiver's TCP work to CPU 1 with RPS (default: a softirq on CPU 0).
    #[arg(long)]
    pub kernel_rps: bool,
    /// Worker options of the xdpos ends (offloads): see `xdpos echo --help`.
    #[command(flatten)]
    pub offload: OffloadArgs,
}

/// The segmentation offload switches of the xdpos workers.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OffloadArgs {
    /// The xdpos stacks build TCP super-segments and the workers split them before the ring.
    #[arg(long)]
    pub tso: bool,
    /// The xdpos workers coalesce received TCP segments (GRO) before the stack.
    #[arg(long)]
    pub gro: bool,
}

/// TCP port of every stream.
pub(crate) const PORT: u16 = 5001;
/// The xdpos hosts' addresses (the kernels keep .1 on A and .2 on B).
pub(crate) const XDPOS_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
pub(crate) const XDPOS_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
/// Bound on set-up and tear-down of one point, beyond warm-up and window.
pub(crate) const SLACK: Duration = Duration::from_secs(15);

/// The variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kernel both ends, offloads off.
    KernelNoOffload,
    /// Kernel both ends, offloads as they come.
    Kernel,
    /// xdpos both ends.
    Xdpos,
    /// Kernel sender, xdpos receiver.
    KernelToXdpos,
}

impl Kind {
    /// Every variant, in table order.
    pub const ALL: [Kind; 4] =
        [Kind::KernelNoOffload, Kind::Kernel, Kind::Xdpos, Kind::KernelToXdpos];

    /// Variant name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KernelNoOffload => "kernel-nooffload",
            Kind::Kernel => "kernel",
            Kind::Xdpos => "xdpos",
            Kind::KernelToXdpos => "kernel-to-xdpos",
        }
    }

    fn baseline(self) -> Option<&'static str> {
        (self != Kind::KernelNoOffload).then_some("kernel-nooffload")
    }

    /// ethtool settings of A's and B's veths.
    fn offloads(self) -> (&'static str, &'static str) {
        match self {
            Kind::KernelNoOffload => {
                ("tx on tso off gso off gro off", "tx on tso off gso off gro off")
            }
            Kind::Kernel => ("tx on tso on gso on", "tx on tso on gso on"),
            Kind::KernelToXdpos => ("tx off tso off gso off gro off", "tx off tso off gso off"),
            Kind::Xdpos => ("tx off tso off gso off", "tx off tso off gso off"),
        }
    }
}

/// The benchmark.
#[derive(Debug)]
pub struct TcpBench {
    args: TcpArgs,
    pair: Pair,
    xdp_mode: String,
}

impl TcpBench {
    /// Builds the rig.
    pub fn new(args: &TcpArgs) -> anyhow::Result<TcpBench> {
        anyhow::ensure!(
            (1..=nic::MAX_BURST).contains(&args.burst),
            "--burst must be 1..={}",
            nic::MAX_BURST
        );
        if let Some(sizes) = &args.common.sizes {
            for &s in sizes {
                anyhow::ensure!(
                    (1..=crate::services::SCRATCH).contains(&s),
                    "write size {s}: 1..=65536"
                );
            }
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        anyhow::ensure!(cpus > DUT_CPU, "bench tcp pins to CPUs 0 and 1; this machine has {cpus}");
        let pair = Pair::new("tcp", &PairOpts { b_kernel_ip: true, ..Default::default() })
            .context("build the pair rig")?;
        Ok(TcpBench { args: args.clone(), pair, xdp_mode: "native-copy".into() })
    }
}

impl Benchmark for TcpBench {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![64, 256, 1024, 4096, 16384, 65535]
    }

    fn variants(&self) -> Vec<Variant> {
        Kind::ALL.iter().map(|k| Variant::new(k.name(), k.baseline())).collect()
    }

    fn primary(&self) -> Primary {
        Primary { metric: "goodput_bps", label: "Gbit/s", scale: 1e9 }
    }

    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        Some(vec!["goodput_bps"])
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", &self.xdp_mode)
    }

    fn notes(&self) -> Vec<String> {
        vec![
            format!(
                "sender on CPU {GEN_CPU}, receiver on CPU {DUT_CPU}; kernel receiver's TCP work: {}; \
                 xdpos: burst {}, buffers {} B, tso {}, gro {}",
                if self.args.kernel_rps { "RPS to CPU 1" } else { "softirq on CPU 0" },
                self.args.burst,
                self.args.buffer,
                self.args.offload.tso,
                self.args.offload.gro
            ),
            "sizes are bytes per write; goodput is what the receiving application read".into(),
        ]
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let kind = *Kind::ALL
            .iter()
            .find(|k| k.name() == v.name)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        let (a, b) = kind.offloads();
        let (pa, pb) = (&self.pair.ns_a, &self.pair.ns_b);
        pa.sh(&format!("ethtool -K {} {a} >/dev/null 2>&1 || true", self.pair.a.ifname))?;
        pb.sh(&format!("ethtool -K {} {b} >/dev/null 2>&1 || true", self.pair.b.ifname))?;
        let rps = self.args.kernel_rps && matches!(kind, Kind::Kernel | Kind::KernelNoOffload);
        let mask = if rps { 1u64 << DUT_CPU } else { 0 };
        pb.sh(&format!(
            "echo {mask:x} > /sys/class/net/{}/queues/rx-0/rps_cpus",
            self.pair.b.ifname
        ))?;
        let r = self.point(kind, size, plan);
        let (pa, pb) = (&self.pair.ns_a, &self.pair.ns_b);
        // The rig's defaults again (kernel peers: checksums complete, no super-frames).
        let _ = pa.sh(&format!(
            "ethtool -K {} tx off tso off gso off >/dev/null 2>&1",
            self.pair.a.ifname
        ));
        let _ =
            pb.sh(&format!("echo 0 > /sys/class/net/{}/queues/rx-0/rps_cpus", self.pair.b.ifname));
        r
    }
}

/// What an end's thread needs.
pub(crate) struct EndCtx<'a> {
    pub(crate) ns: &'a Netns,
    pub(crate) ifname: &'a str,
    pub(crate) mac: [u8; 6],
    pub(crate) cpu: usize,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) deadline: Instant,
}

impl EndCtx<'_> {
    pub(crate) fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Enters the namespace and pins the thread.
    pub(crate) fn enter(&self) -> anyhow::Result<()> {
        self.ns.enter()?;
        place::pin(self.cpu)
    }
}

/// Raises a flag when dropped: every exit from a measurement stops its threads.
pub(crate) struct RaiseOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl TcpBench {
    fn point(&mut self, kind: Kind, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let deadline = Instant::now() + plan.warmup + plan.window + SLACK;
        let stop = AtomicBool::new(false);
        let pair = &self.pair;
        let (args, offload) = (&self.args, self.args.offload);
        let rx_ctx = EndCtx {
            ns: &pair.ns_b,
            ifname: &pair.b.ifname,
            mac: pair.b.mac,
            cpu: DUT_CPU,
            stop: &stop,
            deadline,
        };
        let tx_ctx = EndCtx {
            ns: &pair.ns_a,
            ifname: &pair.a.ifname,
            mac: pair.a.mac,
            cpu: GEN_CPU,
            stop: &stop,
            deadline,
        };
        let xdpos_rx = matches!(kind, Kind::Xdpos | Kind::KernelToXdpos);
        let dst = SocketAddrV4::new(if xdpos_rx { XDPOS_B } else { pair.b.ip }, PORT);
        let got = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let out = std::thread::scope(|s| -> anyhow::Result<(Metrics, Vec<Option<String>>)> {
            let _stop = RaiseOnDrop(&stop);
            let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
            let rx = {
                let (got, ready) = (got.clone(), ready_tx.clone());
                let c = &rx_ctx;
                s.spawn(move || {
                    if xdpos_rx {
                        xdpos_sink(c, args.burst, args.buffer, offload, got, ready)
                    } else {
                        kernel_sink(c, got, ready)
                    }
                })
            };
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow!("receiver not ready"))??;
            let tx = {
                let (writes, ready) = (writes.clone(), ready_tx);
                let c = &tx_ctx;
                s.spawn(move || {
                    if kind == Kind::Xdpos {
                        xdpos_source(c, dst, size, args.burst, args.buffer, offload, writes, ready)
                    } else {
                        kernel_source(c, dst, size, writes, ready)
                    }
                })
            };
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow!("sender not ready"))??;
            let full_warmup = plan.stop.sleep(plan.warmup);
            let cpu0 = CpuTimes::now();
            let t0 = Instant::now();
            let (g0, w0) = (got.load(Ordering::Relaxed), writes.load(Ordering::Relaxed));
            let full = full_warmup && plan.stop.sleep(plan.window);
            let (g1, w1) = (got.load(Ordering::Relaxed), writes.load(Ordering::Relaxed));
            let secs = t0.elapsed().as_secs_f64().max(1e-6);
            let cpu = cpu0.shares(&CpuTimes::now());
            stop.store(true, Ordering::Relaxed);
            let r_tx = tx.join().map_err(|_| anyhow!("the sender panicked"))??;
            let r_rx = rx.join().map_err(|_| anyhow!("the receiver panicked"))??;
            anyhow::ensure!(full || plan.stop.requested(), "window cut short");
            let bytes = g1.saturating_sub(g0) as f64;
            anyhow::ensure!(bytes > 0.0, "nothing arrived");
            let mut m: Metrics = vec![
                ("goodput_bps", bytes * 8.0 / secs),
                ("writes_per_s", w1.saturating_sub(w0) as f64 / secs),
            ];
            for (i, c) in cpu.iter().enumerate().take(2) {
                m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
                m.push((["cpu0_si%", "cpu1_si%"][i], c.softirq));
            }
            Ok((m, vec![r_tx, r_rx]))
        });
        let (m, modes) = out?;
        if let Some(mode) = modes.into_iter().flatten().next() {
            self.xdp_mode = mode;
        }
        Ok(m)
    }
}

/// Sends a setup error to the waiting harness and returns it.
pub(crate) fn fail<T>(
    ready: &mpsc::Sender<anyhow::Result<()>>,
    e: anyhow::Error,
) -> anyhow::Result<T> {
    let msg = format!("{e:#}");
    let _ = ready.send(Err(e));
    Err(anyhow!(msg))
}

/// The kernel receiver: accepts one connection on B's kernel address, reads and counts.
fn kernel_sink(
    c: &EndCtx<'_>,
    got: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let setup = || -> anyhow::Result<TcpListener> {
        c.enter()?;
        let l =
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).context("bind")?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let l = match setup() {
        Ok(l) => l,
        Err(e) => return fail(&ready, e.context("kernel receiver")),
    };
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
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    while !c.done() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                got.store(total, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(anyhow!("read: {e}")),
        }
    }
    Ok(None)
}

/// The kernel sender: one connection, `write` of `size` bytes at a time.
fn kernel_source(
    c: &EndCtx<'_>,
    dst: SocketAddrV4,
    size: usize,
    writes: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let setup = || -> anyhow::Result<TcpStream> {
        c.enter()?;
        let s = TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(5))
            .with_context(|| format!("connect to {dst}"))?;
        s.set_write_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    };
    let mut s = match setup() {
        Ok(s) => s,
        Err(e) => return fail(&ready, e.context("kernel sender")),
    };
    let _ = ready.send(Ok(()));
    let buf = vec![0x5au8; size];
    let mut n = 0u64;
    let mut i = 0u64;
    while !(c.stop.load(Ordering::Relaxed) || (i % 64 == 0 && c.done())) {
        i += 1;
        match s.write(&buf) {
            Ok(_) => {
                n += 1;
                writes.store(n, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(anyhow!("write: {e}")),
        }
    }
    Ok(None)
}

/// [`Services`] plus counters another thread can read: bytes read by the services and writes
/// of the source (published once per worker iteration, relaxed stores).
pub(crate) struct Counted {
    pub(crate) services: Services,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) writes: Option<(Arc<AtomicU64>, usize)>,
}

impl App for Counted {
    fn poll(&mut self, now: libos::Instant, stack: &mut Stack) {
        self.services.poll(now, stack);
        let st = self.services.stats();
        self.bytes_in.store(st.bytes_in, Ordering::Relaxed);
        if let Some((w, size)) = &self.writes {
            w.store(st.bytes_out / *size as u64, Ordering::Relaxed);
        }
    }
}

/// An xdpos host at `addr` on the end's veth with `app`, ready to run.
pub(crate) fn xdpos_host<A: App>(
    c: &EndCtx<'_>,
    addr: Ipv4Addr,
    burst: usize,
    tcp: TcpConfig,
    offload: OffloadArgs,
    app: impl FnOnce(&mut Stack) -> anyhow::Result<A>,
) -> anyhow::Result<(XdpProgram, Worker<OffloadPort<XskPort>, A>)> {
    c.enter()?;
    let prog = XdpProgram::attach(c.ifname, XdpMode::Native)
        .with_context(|| format!("attach to {}", c.ifname))?;
    let xsk = XskConfig { burst, bind: BindMode::Auto, ..XskConfig::new(c.ifname, 0) };
    let port = XskPort::open(&xsk, &prog).with_context(|| format!("open {} queue 0", c.ifname))?;
    let clock = Clock::new();
    let mut cfg = StackConfig::new(EthernetAddress(c.mac), &[Ipv4Cidr::new(addr, 24)]);
    cfg.arp.announce_count = 0;
    cfg.tx_csum_offload = TxCsum::Auto.offload(&port.caps());
    cfg.tcp = TcpConfig { tso: offload.tso, ..tcp };
    let mut stack = Stack::new(cfg, clock.now()).map_err(|e| anyhow!("stack: {e}"))?;
    let app = app(&mut stack)?;
    prog.own_addr(addr)?;
    let wcfg = WorkerConfig { burst, ..WorkerConfig::default() };
    let offloads = Offloads { tso: offload.tso, gro: offload.gro };
    let w = Worker::new(OffloadPort::new(port, offloads), stack, app, wcfg, clock);
    Ok((prog, w))
}

/// Runs a worker until the end's stop or deadline, then stops the inflow and checks the
/// frame accounting; returns the XDP mode.
pub(crate) fn run_host<A: App>(
    c: &EndCtx<'_>,
    prog: XdpProgram,
    mut w: Worker<OffloadPort<XskPort>, A>,
) -> anyhow::Result<(Option<String>, A)> {
    w.run_loop(c.stop, Some(c.deadline));
    prog.steer_none()?;
    let r = w.finish();
    let mode = format!(
        "{}-{}",
        prog.mode().as_str(),
        if w.port().caps().zero_copy { "zerocopy" } else { "copy" }
    );
    let t = w.stack().tcp().stats();
    let x = w.port().inner().xdp_statistics().unwrap_or_default();
    let o = w.port().offload_stats();
    tracing::debug!(
        ifname = c.ifname,
        rx = r.port.rx_packets,
        tx = r.port.tx_packets,
        rx_bursts = r.port.rx_bursts,
        tx_bursts = r.port.tx_bursts,
        iterations = r.iterations,
        tx_full_drops = r.tx_full_drops,
        drops = r.stack.total_drops(),
        xdp_rx_dropped = x.rx_dropped,
        xdp_rx_ring_full = x.rx_ring_full,
        xdp_fill_empty = x.rx_fill_ring_empty_descs,
        segs_in = t.segs_in,
        segs_out = t.segs_out,
        acks = t.acks_sent,
        delayed_acks = t.delayed_acks,
        retransmits = t.retransmits,
        rto = t.rto_events,
        tso = t.tso_frames,
        gro = t.gro_frames,
        split = o.split_frames,
        split_short = o.split_short,
        staged_copies = o.staged_copies,
        gro_merged = o.gro_merged,
        "xdpos end"
    );
    r.frames.map_err(|e| anyhow!("frame accounting broken: {e}"))?;
    let (_, _, app) = w.into_parts();
    drop(prog);
    Ok((Some(mode), app))
}

/// The TCP configuration of the benchmark's xdpos hosts.
pub(crate) fn bench_tcp(buffer: usize) -> TcpConfig {
    TcpConfig { max_connections: 16, rx_buffer: buffer, tx_buffer: buffer, ..TcpConfig::default() }
}

/// The xdpos receiver: the sink service at [`XDPOS_B`].
fn xdpos_sink(
    c: &EndCtx<'_>,
    burst: usize,
    buffer: usize,
    offload: OffloadArgs,
    got: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let cfg = ServicesConfig { sink: Some(PORT), backlog: 16, ..Default::default() };
    let host = xdpos_host(c, XDPOS_B, burst, bench_tcp(buffer), offload, |stack| {
        let services = Services::new(&cfg, stack).map_err(|e| anyhow!("listen: {e}"))?;
        Ok(Counted { services, bytes_in: got, writes: None })
    });
    let (prog, w) = match host {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context("xdpos receiver")),
    };
    let _ = ready.send(Ok(()));
    Ok(run_host(c, prog, w)?.0)
}

/// The xdpos sender: a source client connection to `dst` writing `size` bytes per call.
#[allow(clippy::too_many_arguments)]
fn xdpos_source(
    c: &EndCtx<'_>,
    dst: SocketAddrV4,
    size: usize,
    burst: usize,
    buffer: usize,
    offload: OffloadArgs,
    writes: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let host = xdpos_host(c, XDPOS_A, burst, bench_tcp(buffer), offload, |stack| {
        let mut services =
            Services::new(&ServicesConfig::default(), stack).map_err(|e| anyhow!("{e}"))?;
        let now = libos::Instant::ZERO;
        services
            .connect(now, stack, dst, Role::Source { write: size, limit: None })
            .map_err(|e| anyhow!("connect to {dst}: {e}"))?;
        Ok(Counted {
            services,
            bytes_in: Arc::new(AtomicU64::new(0)),
            writes: Some((writes, size)),
        })
    });
    let (prog, w) = match host {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context("xdpos sender")),
    };
    let _ = ready.send(Ok(()));
    Ok(run_host(c, prog, w)?.0)
}

/// `xdpos bench tcp`.
pub fn run(args: &TcpArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = TcpBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench);
    harness::finish(&report, &args.common)
}
