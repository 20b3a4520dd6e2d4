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
//! table adds the writes per second of the sender, the CPU shares, and `retx%`: the segments
//! the sender retransmitted per 100 it sent over the whole connection, warm-up included (the
//! kernel's `RetransSegs`/`OutSegs` in A's namespace, or the xdpos stack's counters), which
//! shows loss on the way (veth's NAPI ring, the backlog, an AF_XDP ring) that the receiver's
//! count cannot. `steal%` is the time the hypervisor gave our two CPUs to other guests (in % of
//! one CPU), which the guest sees nowhere else, and `c2c_ns` the round trip of a cache line
//! between CPUs 0 and 1 just before the point: on a VM it says whether the host's cores under
//! them share a cache (~80 ns here) or not (~400 ns, when every xdpos variant runs ~0.7× as fast:
//! docs/tcp.md).
//!
//! The kernel's TCP runs CUBIC in both namespaces whatever the host's default (`--kernel-cc`):
//! the xdpos stack's algorithm and Linux's own default, and the kernel's faster one here (a host
//! default of BBR paces the sender by timer on veth and halved the baseline's goodput at small
//! writes, docs/tcp.md).
//!
//! The xdpos ends are hosts with their own addresses (10.0.0.11 on A, 10.0.0.12 on B; the
//! kernels keep 10.0.0.1 and 10.0.0.2), resolving each other by ARP. Both run
//! [`crate::services::Services`]: the sender a [`Role::Source`] client connection, the
//! receiver the sink service. Nagle is on everywhere, as with netperf's defaults, so small
//! writes are coalesced into full segments by both stacks.
//!
//! Placement ([`RxPlace`]): by default veth runs B's receive work (the kernel's TCP receive, or
//! XDP and the copies into the AF_XDP socket) as a softirq on the sender's CPU 0, and A's
//! receive work (the ACKs) on the receiver's CPU 1. Each variant runs with B's receive work in
//! its best placement, from the `--explore` runs in docs/tcp.md; where the winner changes with
//! the size or the run, the best of several ([`Kind::candidates`]), all measured in every
//! repetition (the `alt` column says which won, from 0): the kernel's TCP receive on CPU 1 by
//! RPS or in the softirq default; xdpos's XDP receive on CPU 1 by RPS (the steering program in
//! SKB mode, which runs after RPS); a kernel sender into xdpos with B's NAPI in a kthread on
//! the sender's CPU, deferred (re-armed by a timer), or in a kthread on the receiver's CPU with
//! A's ACKs moved by RPS to the sender's. `--explore` measures every placement as a variant of
//! its own, `--rx-place` forces one.
//!
//! Shared machines: `--max-foreign PCT` measures a point again when other processes used more
//! than PCT% of a CPU during its window (`--retries` times, then leaves it out); the table's
//! `foreign%` column shows what the kept samples saw. A VM's vCPUs: `--max-c2c-ns NS` measures
//! only while a cache line goes between CPUs 0 and 1 and back within NS (the `c2c_ns` column,
//! probed before and after every point): the host moves our two vCPUs between cores that share
//! an L3 and cores that do not, and the xdpos variants slow down by a third in the latter.
//!
//! What it owns: the rig for the run, and per point the threads of both ends with their
//! sockets, XDP programs and workers, all gone (offloads reset) when a point returns, on every
//! path. Every loop is bounded by the point's stop flag and deadline.

use std::fmt;
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
use super::place::{self, CpuTimes, Foreign, Napi, DUT_CPU, GEN_CPU};
use super::{CommonArgs, KernelCc, Stop};
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
    /// Frames the xdpos workers keep posted on their fill rings, at most (`XskConfig::fill`).
    #[arg(long, default_value_t = nic::afxdp::DEFAULT_FILL)]
    pub fill: u32,
    /// Receive and send buffer of every xdpos connection, bytes (default: the stack's,
    /// `TcpConfig::default()`; a window much larger than the path's queues only fills veth's
    /// 256-frame NAPI ring and loses segments, docs/tcp.md).
    #[arg(long, default_value_t = TcpConfig::default().rx_buffer)]
    pub buffer: usize,
    /// Measure every placement of B's receive work of every variant as a variant of its own
    /// (`name[B=place]`, each compared with its baseline in veth's softirq default).
    #[arg(long)]
    pub explore: bool,
    /// Force the placement of B's receive work (softirq, rps-cpuN, napi-cpuN,
    /// napi-cpuN+yield, defer, skb-rps-cpuN; napi-cpuN+acks-cpuM and rps-cpuN+acks-cpuM also
    /// move A's receive work, the ACKs, to CPU M) for every variant it applies to (default:
    /// each variant's candidates).
    #[arg(long)]
    pub rx_place: Option<RxPlace>,
    /// Measure a point again when other processes used more than this percentage of a CPU
    /// during its window (up to `--retries` times; a point still disturbed then is left out).
    #[arg(long)]
    pub max_foreign: Option<f64>,
    /// Attempts per point beyond the first, with `--max-foreign` or `--max-c2c-ns`.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Measure only while the host keeps our two CPUs close: before a point, wait (up to
    /// `--c2c-wait` seconds) until a cache line goes from CPU 0 to CPU 1 and back in at most
    /// this many ns, and measure the point again when the round trip after it took longer (up
    /// to `--retries` times; then the point is left out). ~80 ns where the vCPUs share an L3,
    /// ~400 where the host put them apart (docs/tcp.md, "slow mode").
    #[arg(long)]
    pub max_c2c_ns: Option<f64>,
    /// Seconds to wait for a close placement before each point, with `--max-c2c-ns`.
    #[arg(long, default_value_t = 60)]
    pub c2c_wait: u64,
    #[command(flatten)]
    pub kernel_cc: KernelCc,
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

    /// The receiver is a kernel socket.
    fn kernel_rx(self) -> bool {
        matches!(self, Kind::Kernel | Kind::KernelNoOffload)
    }

    /// The placements of B's receive work `--explore` tries.
    fn placements(self) -> Vec<RxPlace> {
        match self {
            // Without GRO (or XDP) a veth has no NAPI to thread or defer: the kernel's
            // TCP receive runs where the frame was sent, or where RPS moves it.
            Kind::KernelNoOffload | Kind::Kernel => {
                vec![RxPlace::Softirq, RxPlace::Rps(DUT_CPU), RxPlace::RpsAcks(DUT_CPU, GEN_CPU)]
            }
            Kind::Xdpos => vec![
                RxPlace::Softirq,
                RxPlace::Napi(GEN_CPU),
                RxPlace::NapiYield(GEN_CPU),
                RxPlace::Napi(DUT_CPU),
                RxPlace::Defer,
                RxPlace::SkbRps(DUT_CPU),
            ],
            Kind::KernelToXdpos => vec![
                RxPlace::Softirq,
                RxPlace::Napi(GEN_CPU),
                RxPlace::Napi(DUT_CPU),
                RxPlace::Defer,
                RxPlace::SkbRps(DUT_CPU),
                RxPlace::NapiAcks(DUT_CPU, GEN_CPU),
            ],
        }
    }

    /// The placements measured in every repetition of a default run (no `--explore`, no
    /// `--rx-place`), the better one kept: where the winner changes with the size or the run
    /// (docs/tcp.md), a variant gets both, as the kernel does. The first is [`Kind::best`].
    pub fn candidates(self) -> Vec<RxPlace> {
        match self {
            Kind::KernelNoOffload | Kind::Kernel => vec![RxPlace::Rps(DUT_CPU), RxPlace::Softirq],
            Kind::Xdpos => vec![RxPlace::SkbRps(DUT_CPU)],
            // Quiet-machine explore runs with a CUBIC sender (2026-11-30 16:00): B's NAPI on
            // the sender's CPU won from 4 KiB up, deferred NAPI from 64 B to 1 KiB; SKB-mode
            // XDP behind RPS to CPU 1 (the winner at 64 KiB against a BBR sender) and B's NAPI
            // on CPU 1 won nowhere. B's NAPI on CPU 1 with A's ACKs on CPU 0 (2026-11-30
            // 19:00) is the steadier of the two from 4 KiB up: `napi-cpu0` falls to ~0.65x
            // in some repetitions where it does not.
            Kind::KernelToXdpos => {
                vec![RxPlace::Napi(GEN_CPU), RxPlace::Defer, RxPlace::NapiAcks(DUT_CPU, GEN_CPU)]
            }
        }
    }

    /// The best placement of B's receive work, from the `--explore` runs in docs/tcp.md.
    pub fn best(self) -> RxPlace {
        match self {
            // The kernel: its TCP receive (and the ACKs it sends) on the receiver's CPU by RPS,
            // so the sender's CPU only sends (ahead of the softirq default at most sizes; which
            // wins at 64 B to 1 KiB differs between runs, see docs/tcp.md). Without `--rx-place`
            // the kernel variants measure both and keep the better (`TcpBench::measure`).
            Kind::KernelNoOffload | Kind::Kernel => RxPlace::Rps(DUT_CPU),
            // xdpos: B's program in SKB mode behind RPS, so the XDP program and both copies
            // into the AF_XDP socket run on the receiver's CPU, off the sender's.
            Kind::Xdpos => RxPlace::SkbRps(DUT_CPU),
            // A kernel sender into xdpos: B's NAPI in a kthread on the sender's CPU, so the
            // receiver's CPU runs only the worker (with deferred NAPI also measured in default
            // runs: `candidates`).
            Kind::KernelToXdpos => RxPlace::Napi(GEN_CPU),
        }
    }

    /// ethtool settings of A's and B's veths.
    fn offloads(self) -> (&'static str, &'static str) {
        match self {
            Kind::KernelNoOffload => {
                ("tx on tso off gso off gro off", "tx on tso off gso off gro off")
            }
            Kind::Kernel => ("tx on tso on gso on", "tx on tso on gso on"),
            Kind::KernelToXdpos => {
                ("tx off tso off gso off gro off", "tx off tso off gso off gro off")
            }
            Kind::Xdpos => ("tx off tso off gso off", "tx off tso off gso off gro off"),
        }
    }
}

/// Where the receive work of B's veth runs (segments from A: the kernel's TCP receive, or the
/// XDP program and the copies into the AF_XDP socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPlace {
    /// veth's default: a softirq on the CPU that transmitted into A's veth (the sender's), once
    /// per frame for a copy-mode AF_XDP sender (each frame's transmit re-enables bottom halves).
    Softirq,
    /// The kernel's TCP receive moved to a CPU by RPS (kernel receivers only: XDP runs first).
    Rps(usize),
    /// A NAPI kthread pinned to a CPU (threaded NAPI; xdpos receivers only, whose XDP program
    /// gives veth its NAPI). An xdpos receiver on that CPU yields after every empty poll.
    Napi(usize),
    /// A NAPI kthread pinned to the sender's CPU, and the xdpos sender yields the CPU after
    /// each busy iteration, so the kthread takes the whole burst in one poll.
    NapiYield(usize),
    /// Deferred NAPI (`napi_defer_hard_irqs`, `gro_flush_timeout`): B's poll is re-armed by a
    /// timer instead of raised per frame, so it takes what queued meanwhile in one poll.
    Defer,
    /// xdpos receivers: B's steering program in SKB (generic) mode, which runs after RPS, and
    /// RPS to a CPU: the XDP program and the copies into the AF_XDP socket move to that CPU
    /// as the kernel's TCP receive does with [`RxPlace::Rps`] (veth without a NAPI hands
    /// frames to `netif_rx`, RPS queues them on the CPU's backlog and raises it by IPI).
    SkbRps(usize),
    /// A kernel sender into an xdpos receiver: B's NAPI in a kthread pinned to the first CPU
    /// (as [`RxPlace::Napi`]), and A's receive work (the ACKs, and the segments the kernel
    /// sender transmits from their softirq when they open its window) moved by RPS to the
    /// second. With `napi-cpu1+acks-cpu0` each end's kernel work runs on that end's CPU: A
    /// builds its segments where it writes, and a segment crosses between the CPUs once,
    /// into B's NAPI, as with the kernel's own `rps-cpu1`.
    NapiAcks(usize, usize),
    /// Kernel receivers: [`RxPlace::Rps`], and A's receive work (the ACKs) moved by RPS to the
    /// second CPU (`--explore` only: it lost to `rps-cpu1` at every size, docs/tcp.md).
    RpsAcks(usize, usize),
}

impl RxPlace {
    /// The CPU of B's NAPI kthread, where there is one.
    fn napi_cpu(self) -> Option<usize> {
        match self {
            RxPlace::Napi(c) | RxPlace::NapiYield(c) | RxPlace::NapiAcks(c, _) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for RxPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxPlace::Softirq => f.write_str("softirq"),
            RxPlace::Rps(c) => write!(f, "rps-cpu{c}"),
            RxPlace::Napi(c) => write!(f, "napi-cpu{c}"),
            RxPlace::NapiYield(c) => write!(f, "napi-cpu{c}+yield"),
            RxPlace::Defer => f.write_str("defer"),
            RxPlace::SkbRps(c) => write!(f, "skb-rps-cpu{c}"),
            RxPlace::NapiAcks(c, a) => write!(f, "napi-cpu{c}+acks-cpu{a}"),
            RxPlace::RpsAcks(c, a) => write!(f, "rps-cpu{c}+acks-cpu{a}"),
        }
    }
}

impl std::str::FromStr for RxPlace {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<RxPlace> {
        let cpu = |p: &str| s.strip_prefix(p).and_then(|c| c.parse::<usize>().ok());
        if let Some((b, a)) = s.split_once("+acks-cpu") {
            let a: usize = a.parse().map_err(|_| anyhow!("bad CPU in {s:?}"))?;
            return match b.parse::<RxPlace>()? {
                RxPlace::Napi(c) => Ok(RxPlace::NapiAcks(c, a)),
                RxPlace::Rps(c) => Ok(RxPlace::RpsAcks(c, a)),
                _ => Err(anyhow!("{s:?}: +acks-cpuN follows napi-cpuN or rps-cpuN")),
            };
        }
        if s == "softirq" {
            Ok(RxPlace::Softirq)
        } else if s == "defer" {
            Ok(RxPlace::Defer)
        } else if let Some(c) = cpu("skb-rps-cpu") {
            Ok(RxPlace::SkbRps(c))
        } else if let Some(c) = cpu("rps-cpu") {
            Ok(RxPlace::Rps(c))
        } else if let Some(c) = s.strip_suffix("+yield").and_then(|p| p.strip_prefix("napi-cpu")) {
            c.parse().map(RxPlace::NapiYield).map_err(|_| anyhow!("bad CPU in {s:?}"))
        } else if let Some(c) = cpu("napi-cpu") {
            Ok(RxPlace::Napi(c))
        } else {
            Err(anyhow!(
                "unknown placement {s:?} (softirq, rps-cpuN, napi-cpuN, napi-cpuN+yield, defer, \
                 skb-rps-cpuN, napi-cpuN+acks-cpuM, rps-cpuN+acks-cpuM)"
            ))
        }
    }
}

impl RxPlace {
    /// Whether `kind` can run with B's receive work here.
    fn fits(self, kind: Kind) -> bool {
        match self {
            RxPlace::Softirq => true,
            RxPlace::Rps(_) => kind.kernel_rx(),
            RxPlace::Napi(_) | RxPlace::Defer | RxPlace::SkbRps(_) => !kind.kernel_rx(),
            RxPlace::NapiYield(_) => kind == Kind::Xdpos,
            // RPS moves A's receive only for a kernel sender (an xdpos sender's ACKs meet its
            // XDP program first, which runs before RPS).
            RxPlace::NapiAcks(..) => kind == Kind::KernelToXdpos,
            RxPlace::RpsAcks(..) => kind.kernel_rx(),
        }
    }
}

/// Hand-offs of the cache-line probe before each point (~10 ms at ~80 ns a round trip).
const C2C_ROUNDS: u32 = 100_000;

/// The cache-line round trip between the sender's and the receiver's CPUs now, in ns (-1
/// where it could not be measured).
fn c2c_ns() -> f64 {
    place::cache_line_round_trip_ns(GEN_CPU, DUT_CPU, C2C_ROUNDS).unwrap_or(-1.0)
}

/// `napi_defer_hard_irqs` of [`RxPlace::Defer`].
const DEFER_COUNT: u32 = 2;
/// `gro_flush_timeout` of [`RxPlace::Defer`] (ns): the timer that polls B's queue again.
const DEFER_FLUSH_NS: u32 = 50_000;

/// Places B's receive work (after its XDP program, if any, is attached), and A's where the
/// placement moves it too.
fn apply_place(pair: &Pair, p: RxPlace) -> anyhow::Result<()> {
    let (ns, dev) = (&pair.ns_b, pair.b.ifname.as_str());
    match p {
        RxPlace::Softirq => {}
        RxPlace::Rps(cpu) | RxPlace::SkbRps(cpu) | RxPlace::RpsAcks(cpu, _) => {
            rps(ns, dev, cpu)?;
        }
        RxPlace::Napi(cpu) | RxPlace::NapiYield(cpu) | RxPlace::NapiAcks(cpu, _) => {
            let kthreads = place::place_napi(ns, dev, Napi::Thread(cpu))?;
            if cpu == DUT_CPU {
                // The receiver's worker yields to the kthread after every empty poll, which
                // hands it the CPU only if both weigh the same: at nice 0 against a worker at
                // nice -20 the kthread got ~1% of the CPU when both were runnable.
                place::match_nice(&kthreads)?;
            }
        }
        RxPlace::Defer => {
            ns.sh(&format!(
                "echo {DEFER_COUNT} > /sys/class/net/{dev}/napi_defer_hard_irqs && \
                 echo {DEFER_FLUSH_NS} > /sys/class/net/{dev}/gro_flush_timeout"
            ))
            .with_context(|| format!("defer {dev}'s NAPI"))?;
        }
    }
    if let RxPlace::NapiAcks(_, cpu) | RxPlace::RpsAcks(_, cpu) = p {
        rps(&pair.ns_a, &pair.a.ifname, cpu)?;
    }
    Ok(())
}

/// Steers `dev`'s receive work to `cpu` with RPS.
fn rps(ns: &Netns, dev: &str, cpu: usize) -> anyhow::Result<()> {
    ns.sh(&format!("echo {:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus", 1u64 << cpu))
        .with_context(|| format!("steer {dev}'s receive work to CPU {cpu} with RPS"))?;
    Ok(())
}

/// Undoes any placement of B's (and A's) receive work (errors ignored: the device may have no
/// NAPI).
fn reset_place(pair: &Pair) {
    let _ = pair.ns_b.sh(&format!(
        "echo 0 > /sys/class/net/{dev}/threaded; \
         echo 0 > /sys/class/net/{dev}/queues/rx-0/rps_cpus; \
         echo 0 > /sys/class/net/{dev}/napi_defer_hard_irqs; \
         echo 0 > /sys/class/net/{dev}/gro_flush_timeout; true",
        dev = pair.b.ifname
    ));
    let _ = pair
        .ns_a
        .sh(&format!("echo 0 > /sys/class/net/{}/queues/rx-0/rps_cpus; true", pair.a.ifname));
}

/// The benchmark.
#[derive(Debug)]
pub struct TcpBench {
    args: TcpArgs,
    pair: Pair,
    /// Variants with their kind and placement of B's receive work.
    variants: Vec<(Variant, Kind, RxPlace)>,
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
        args.kernel_cc.apply(&pair)?;
        let mut variants = Vec::new();
        for kind in Kind::ALL {
            if args.explore {
                // Each placement a variant of its own, compared with the baseline in softirq
                // (the table shows the baseline's other placements beside it).
                for p in kind.placements() {
                    let mut v = Variant::new(format!("{}[B={p}]", kind.name()), None);
                    v.baseline = kind.baseline().map(|b| format!("{b}[B={}]", RxPlace::Softirq));
                    variants.push((v, kind, p));
                }
            } else {
                let p = args.rx_place.filter(|p| p.fits(kind)).unwrap_or(kind.best());
                variants.push((Variant::new(kind.name(), kind.baseline()), kind, p));
            }
        }
        Ok(TcpBench { args: args.clone(), pair, variants, xdp_mode: "native-copy".into() })
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
        self.variants.iter().map(|(v, _, _)| v.clone()).collect()
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
        let both = !self.args.explore && self.args.rx_place.is_none();
        let places: Vec<String> = self
            .variants
            .iter()
            .map(|(v, k, p)| {
                let c = k.candidates();
                if both && c.len() > 1 {
                    let names: Vec<String> = c.iter().map(ToString::to_string).collect();
                    format!("{} the best of {} (alt: which won, from 0)", v.name, names.join(", "))
                } else {
                    format!("{} {p}", v.name)
                }
            })
            .collect();
        vec![
            format!(
                "sender on CPU {GEN_CPU}, receiver on CPU {DUT_CPU}; kernel TCP: {}; xdpos: burst {}, \
                 buffers {} B, tso {}, gro {}",
                self.args.kernel_cc.name,
                self.args.burst,
                self.args.buffer,
                self.args.offload.tso,
                self.args.offload.gro
            ),
            format!("B's receive work: {}", places.join(", ")),
            "sizes are bytes per write; goodput is what the receiving application read".into(),
        ]
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let (_, kind, place) = *self
            .variants
            .iter()
            .find(|(x, _, _)| x.name == v.name)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        let (a, b) = kind.offloads();
        let (pa, pb) = (&self.pair.ns_a, &self.pair.ns_b);
        pa.sh(&format!("ethtool -K {} {a} >/dev/null 2>&1 || true", self.pair.a.ifname))?;
        pb.sh(&format!("ethtool -K {} {b} >/dev/null 2>&1 || true", self.pair.b.ifname))?;
        // In a default run a variant gets the best of its candidate placements, all measured
        // in this repetition (which one wins differs by size and by run: see docs/tcp.md);
        // the `alt` column says which won (0: the first).
        let places = if !self.args.explore && self.args.rx_place.is_none() {
            kind.candidates()
        } else {
            vec![place]
        };
        let mut best: Option<anyhow::Result<Metrics>> = None;
        for (i, p) in places.into_iter().enumerate() {
            let mut r = self.measure_at(&v.name, kind, p, size, plan);
            if let Ok(m) = &mut r {
                m.push(("alt", i as f64));
            }
            reset_place(&self.pair);
            let goodput = |r: &anyhow::Result<Metrics>| {
                r.as_ref().ok().and_then(|m| m.first()).map_or(-1.0, |x| x.1)
            };
            if best.as_ref().is_none_or(|b| goodput(&r) > goodput(b)) {
                best = Some(r);
            }
        }
        let r = best.unwrap_or_else(|| Err(anyhow!("no placement measured")));
        // The rig's defaults again (kernel peers: checksums complete, no super-frames).
        let _ = self.pair.ns_a.sh(&format!(
            "ethtool -K {} tx off tso off gso off >/dev/null 2>&1",
            self.pair.a.ifname
        ));
        reset_place(&self.pair);
        r
    }
}

impl TcpBench {
    /// One point of `kind` with B's receive work at `place`, measured again while disturbed
    /// (`--max-foreign`, `--retries`).
    fn measure_at(
        &mut self,
        name: &str,
        kind: Kind,
        place: RxPlace,
        size: usize,
        plan: &Plan,
    ) -> anyhow::Result<Metrics> {
        let mut attempt = 0;
        loop {
            let c2c_before = self.close_cpus(plan);
            let r = self.point(kind, place, size, c2c_before, plan);
            let metric = |name: &str| {
                r.as_ref().ok().and_then(|m| m.iter().find(|(k, _)| *k == name)).map(|x| x.1)
            };
            let foreign = metric("foreign%").unwrap_or(0.0);
            let c2c = metric("c2c_ns").unwrap_or(-1.0);
            let why = match (self.args.max_foreign, self.args.max_c2c_ns) {
                (Some(max), _) if foreign > max => {
                    format!("{foreign:.0}% of a CPU to other processes > {max}%")
                }
                (_, Some(max)) if c2c > max => {
                    format!("a cache line between the CPUs took {c2c:.0} ns > {max} ns")
                }
                _ => return r,
            };
            if plan.stop.requested() {
                return r;
            }
            attempt += 1;
            if attempt > self.args.retries {
                return Err(anyhow!("still disturbed after {attempt} attempts ({why}): left out"));
            }
            tracing::warn!("{name} at {size} B disturbed ({why}): measuring again");
            reset_place(&self.pair);
        }
    }

    /// The cache-line round trip between the sender's and the receiver's CPUs now (-1 where
    /// it could not be measured); with `--max-c2c-ns`, first waits up to `--c2c-wait` seconds
    /// for one within the limit.
    fn close_cpus(&self, plan: &Plan) -> f64 {
        let mut ns = c2c_ns();
        let Some(max) = self.args.max_c2c_ns else { return ns };
        let until = Instant::now() + Duration::from_secs(self.args.c2c_wait);
        if ns > max {
            tracing::warn!("the CPUs are far apart ({ns:.0} ns > {max} ns): waiting");
        }
        while ns > max && Instant::now() < until && plan.stop.sleep(Duration::from_secs(1)) {
            ns = c2c_ns();
        }
        ns
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
    /// An xdpos worker here yields the CPU after every busy iteration
    /// ([`WorkerConfig::yield_when_busy`]) and after every empty poll
    /// ([`WorkerConfig::yield_when_empty`]): for a NAPI kthread pinned to its CPU.
    pub(crate) yields: (bool, bool),
    /// How the end's steering program is attached (xdpos ends).
    pub(crate) xdp_mode: XdpMode,
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
    fn point(
        &mut self,
        kind: Kind,
        place: RxPlace,
        size: usize,
        c2c_before: f64,
        plan: &Plan,
    ) -> anyhow::Result<Metrics> {
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
            yields: (false, place.napi_cpu() == Some(DUT_CPU)),
            xdp_mode: if matches!(place, RxPlace::SkbRps(_)) {
                XdpMode::Skb
            } else {
                XdpMode::Native
            },
        };
        let tx_ctx = EndCtx {
            ns: &pair.ns_a,
            ifname: &pair.a.ifname,
            mac: pair.a.mac,
            cpu: GEN_CPU,
            stop: &stop,
            deadline,
            yields: (place == RxPlace::NapiYield(GEN_CPU), place == RxPlace::Napi(GEN_CPU)),
            xdp_mode: XdpMode::Native,
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
                        xdpos_sink(c, (args.burst, args.fill), args.buffer, offload, got, ready)
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
                        xdpos_source(
                            c,
                            dst,
                            size,
                            (args.burst, args.fill),
                            args.buffer,
                            offload,
                            writes,
                            ready,
                        )
                    } else {
                        kernel_source(c, dst, size, writes, ready)
                    }
                })
            };
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow!("sender not ready"))??;
            // Placement, once every XDP program is attached (veth recreates a device's NAPI
            // when a program comes or goes); the warm-up follows.
            apply_place(pair, place)?;
            let full_warmup = plan.stop.sleep(plan.warmup);
            let cpu0 = CpuTimes::now();
            let foreign0 = Foreign::now();
            let t0 = Instant::now();
            let (g0, w0) = (got.load(Ordering::Relaxed), writes.load(Ordering::Relaxed));
            let full = full_warmup && plan.stop.sleep(plan.window);
            let (g1, w1) = (got.load(Ordering::Relaxed), writes.load(Ordering::Relaxed));
            let secs = t0.elapsed().as_secs_f64().max(1e-6);
            let cpu = cpu0.shares(&CpuTimes::now());
            let foreign = foreign0.since(secs);
            // A kernel sender runs the congestion control asked for.
            let cc_check = (kind != Kind::Xdpos).then(|| args.kernel_cc.verify(&pair.ns_a, PORT));
            stop.store(true, Ordering::Relaxed);
            let (r_tx, loss) = tx.join().map_err(|_| anyhow!("the sender panicked"))??;
            let r_rx = rx.join().map_err(|_| anyhow!("the receiver panicked"))??;
            anyhow::ensure!(full || plan.stop.requested(), "window cut short");
            cc_check.transpose()?;
            // Where the host put our two vCPUs, before and after the point: the worse of the
            // two (-1: could not measure).
            let c2c_after = c2c_ns();
            let c2c =
                if c2c_before < 0.0 || c2c_after < 0.0 { -1.0 } else { c2c_before.max(c2c_after) };
            let bytes = g1.saturating_sub(g0) as f64;
            anyhow::ensure!(bytes > 0.0, "nothing arrived");
            let mut m: Metrics = vec![
                ("goodput_bps", bytes * 8.0 / secs),
                ("writes_per_s", w1.saturating_sub(w0) as f64 / secs),
                ("foreign%", foreign.0),
                ("retx%", loss.percent()),
                // The host's share of our CPUs (% of one CPU, both together): a slow period
                // the guest cannot see otherwise.
                ("steal%", cpu.iter().take(2).map(|c| c.steal).sum()),
                ("c2c_ns", c2c),
            ];
            for (i, c) in cpu.iter().enumerate().take(2) {
                m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
                m.push((["cpu0_si%", "cpu1_si%"][i], c.softirq));
            }
            Ok((m, vec![r_tx, r_rx]))
        });
        let (m, modes) = out?;
        // The machine's XDP mode is the native one; SKB-mode placements say so in the notes.
        if let Some(mode) = modes.into_iter().flatten().find(|m| m.starts_with("native")) {
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
) -> anyhow::Result<(Option<String>, SenderLoss)> {
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
    // A's namespace holds only this connection: its counters are the connection's.
    let before = SenderLoss::of_this_netns()?;
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
    Ok((None, SenderLoss::of_this_netns()?.since(before)))
}

/// How many segments a sender sent and how many of them were retransmissions (the `retx%`
/// column): loss anywhere between the ends (veth's ring, the backlog, an AF_XDP ring) shows
/// up here, since the receivers count only what reached them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SenderLoss {
    pub(crate) segs: u64,
    pub(crate) retrans: u64,
}

impl SenderLoss {
    /// `OutSegs` and `RetransSegs` of the calling thread's network namespace.
    fn of_this_netns() -> anyhow::Result<SenderLoss> {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
            .context("read /proc/thread-self/net/snmp")?;
        SenderLoss::parse_snmp(&snmp).ok_or_else(|| anyhow!("no Tcp OutSegs/RetransSegs in snmp"))
    }

    /// The `Tcp:` header and value lines of `/proc/net/snmp`.
    fn parse_snmp(snmp: &str) -> Option<SenderLoss> {
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next()?, tcp.next()?);
        let field = |name: &str| {
            let i = names.split_whitespace().position(|n| n == name)?;
            values.split_whitespace().nth(i)?.parse::<u64>().ok()
        };
        Some(SenderLoss { segs: field("OutSegs")?, retrans: field("RetransSegs")? })
    }

    fn since(self, earlier: SenderLoss) -> SenderLoss {
        SenderLoss {
            segs: self.segs.saturating_sub(earlier.segs),
            retrans: self.retrans.saturating_sub(earlier.retrans),
        }
    }

    /// Retransmitted segments per 100 sent.
    pub(crate) fn percent(self) -> f64 {
        100.0 * self.retrans as f64 / self.segs.max(1) as f64
    }
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
    (burst, fill): (usize, u32),
    tcp: TcpConfig,
    offload: OffloadArgs,
    app: impl FnOnce(&mut Stack) -> anyhow::Result<A>,
) -> anyhow::Result<(XdpProgram, Worker<OffloadPort<XskPort>, A>)> {
    c.enter()?;
    let prog = XdpProgram::attach(c.ifname, c.xdp_mode)
        .with_context(|| format!("attach to {}", c.ifname))?;
    let xsk = XskConfig { burst, fill, bind: BindMode::Auto, ..XskConfig::new(c.ifname, 0) };
    let port = XskPort::open(&xsk, &prog).with_context(|| format!("open {} queue 0", c.ifname))?;
    let clock = Clock::new();
    let mut cfg = StackConfig::new(EthernetAddress(c.mac), &[Ipv4Cidr::new(addr, 24)]);
    cfg.arp.announce_count = 0;
    cfg.tx_csum_offload = TxCsum::Auto.offload(&port.caps());
    cfg.tcp = TcpConfig { tso: offload.tso, ..tcp };
    let mut stack = Stack::new(cfg, clock.now()).map_err(|e| anyhow!("stack: {e}"))?;
    let app = app(&mut stack)?;
    prog.own_addr(addr)?;
    let wcfg = WorkerConfig {
        burst,
        yield_when_busy: c.yields.0,
        yield_when_empty: c.yields.1,
        ..WorkerConfig::default()
    };
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
) -> anyhow::Result<(Option<String>, A, SenderLoss)> {
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
    let loss = SenderLoss { segs: t.segs_out, retrans: t.retransmits };
    let (_, _, app) = w.into_parts();
    drop(prog);
    Ok((Some(mode), app, loss))
}

/// The TCP configuration of the benchmark's xdpos hosts.
pub(crate) fn bench_tcp(buffer: usize) -> TcpConfig {
    TcpConfig { max_connections: 16, rx_buffer: buffer, tx_buffer: buffer, ..TcpConfig::default() }
}

/// The xdpos receiver: the sink service at [`XDPOS_B`].
fn xdpos_sink(
    c: &EndCtx<'_>,
    (burst, fill): (usize, u32),
    buffer: usize,
    offload: OffloadArgs,
    got: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let cfg = ServicesConfig { sink: Some(PORT), backlog: 16, ..Default::default() };
    let host = xdpos_host(c, XDPOS_B, (burst, fill), bench_tcp(buffer), offload, |stack| {
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
    (burst, fill): (usize, u32),
    buffer: usize,
    offload: OffloadArgs,
    writes: Arc<AtomicU64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<(Option<String>, SenderLoss)> {
    let host = xdpos_host(c, XDPOS_A, (burst, fill), bench_tcp(buffer), offload, |stack| {
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
    let (mode, _, loss) = run_host(c, prog, w)?;
    Ok((mode, loss))
}

/// `xdpos bench tcp`.
pub fn run(args: &TcpArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = TcpBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench);
    harness::finish(&report, &args.common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_loss_reads_tcp_out_and_retrans_segments_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails \
            EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
            Tcp: 1 200 120000 -1 3 0 0 0 1 8285 514241 24714 0 2 0\n";
        let l = SenderLoss::parse_snmp(snmp).unwrap();
        assert_eq!(l, SenderLoss { segs: 514241, retrans: 24714 });
        let d = l.since(SenderLoss { segs: 14241, retrans: 4714 });
        assert_eq!(d, SenderLoss { segs: 500000, retrans: 20000 });
        assert!((d.percent() - 4.0).abs() < 1e-9);
        assert_eq!(SenderLoss::default().percent(), 0.0);
        assert_eq!(SenderLoss::parse_snmp("Ip: 1\nIp: 2\n"), None);
        assert_eq!(SenderLoss::parse_snmp("Tcp: OutSegs\nTcp: x\n"), None);
    }

    #[test]
    fn placements_parse_and_print() {
        for s in [
            "softirq",
            "rps-cpu1",
            "napi-cpu0",
            "napi-cpu0+yield",
            "defer",
            "skb-rps-cpu1",
            "napi-cpu1+acks-cpu0",
            "rps-cpu1+acks-cpu0",
        ] {
            assert_eq!(s.parse::<RxPlace>().unwrap().to_string(), s);
        }
        assert_eq!("napi-cpu1+acks-cpu0".parse::<RxPlace>().unwrap(), RxPlace::NapiAcks(1, 0));
        for bad in [
            "napi",
            "rps-cpu",
            "skb-rps",
            "napi-cpux+yield",
            "defer+acks-cpu0",
            "napi-cpu1+acks-cpu",
            "napi-cpu1+acks-cpux",
        ] {
            assert!(bad.parse::<RxPlace>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_best_placement_is_explored_and_fits_its_receiver() {
        for k in Kind::ALL {
            let p = k.best();
            assert_eq!(k.candidates()[0], p, "{}", k.name());
            for c in k.candidates() {
                assert!(c.fits(k) && k.placements().contains(&c), "{} {c}", k.name());
            }
            assert!(p.fits(k), "{} {p}", k.name());
            assert!(k.placements().contains(&p), "{} {p}", k.name());
            for p in k.placements() {
                assert!(p.fits(k), "{} {p}", k.name());
            }
        }
        // RPS cannot move an XDP receive in native mode; SKB mode can't serve a kernel socket.
        assert!(!RxPlace::Rps(DUT_CPU).fits(Kind::Xdpos));
        assert!(!RxPlace::SkbRps(DUT_CPU).fits(Kind::KernelNoOffload));
        assert!(!RxPlace::NapiYield(GEN_CPU).fits(Kind::KernelToXdpos));
        // Only a kernel sender's ACKs can be moved by RPS.
        assert!(!RxPlace::NapiAcks(DUT_CPU, GEN_CPU).fits(Kind::Xdpos));
        assert!(RxPlace::NapiAcks(DUT_CPU, GEN_CPU).fits(Kind::KernelToXdpos));
        assert!(RxPlace::RpsAcks(DUT_CPU, GEN_CPU).fits(Kind::KernelNoOffload));
        assert!(!RxPlace::RpsAcks(DUT_CPU, GEN_CPU).fits(Kind::KernelToXdpos));
        assert_eq!(RxPlace::NapiAcks(DUT_CPU, GEN_CPU).napi_cpu(), Some(DUT_CPU));
    }
}
