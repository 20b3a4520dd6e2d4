//! # `xdpos bench udp`: netperf UDP_STREAM, the kernel's sockets against the xdpos stack
//!
//! What it is: a one-way stream of UDP datagrams of one payload size from namespace A to
//! namespace B of the `pair` rig, as fast as the sender can go, counted at the receiver
//! (BENCHMARKS.md; the seed report's Figure 4). Sizes are UDP payload bytes (18 to 1472: the
//! frames are 60 to 1514 bytes). Variants:
//!
//! | variant | sender (A, CPU 0) | receiver (B, CPU 1) | baseline |
//! |---|---|---|---|
//! | `kernel` | kernel socket, `sendmmsg` of 64 | kernel socket, `recvmmsg` of 64 | |
//! | `xdpos` | xdpos stack generator on AF_XDP | xdpos stack sink socket on AF_XDP | `kernel` |
//! | `kernel-to-xdpos` | kernel socket, `sendmmsg` of 64 | xdpos stack sink socket | `kernel` |
//!
//! and, with `--backend dpdk`, instead: `kernel-to-xdpos` beside
//!
//! | variant | sender (A, CPU 0) | receiver (B) | baseline |
//! |---|---|---|---|
//! | `kernel-to-xdpos-dpdk` | kernel socket, `sendmmsg` of 64 | xdpos stack sink socket on the DPDK backend (`xdpos echo --backend dpdk --dpdk-pmd af_xdp --dpdk-udp-sink 9`, a child process, worker on CPU 1) | `kernel-to-xdpos` |
//! | `testpmd-rxonly` | kernel socket, `sendmmsg` of 64 | testpmd rxonly on the same PMD and veth (forwarding lcore on CPU 1) | |
//!
//! all three with B's receive work in the placement of `kernel-to-xdpos`.
//!
//! and, with `--ceiling`, the stack's cost against the raw AF_XDP loops of `bench raw` in the
//! same placement as there (the system under test on CPU 1, the load on CPU 0):
//!
//! | variant | load | system under test | counted by | baseline |
//! |---|---|---|---|---|
//! | `raw-rxdrop` | BPF live-frame generator in A | `loops::rxdrop` on B | the loop | |
//! | `xdpos-rx` | BPF live-frame generator in A | xdpos stack sink on B | the stack | `raw-rxdrop` |
//! | `raw-txonly` | `loops::txonly` on B | | XDP sink on A | |
//! | `xdpos-tx` | xdpos stack generator on B | | XDP sink on A | `raw-txonly` |
//!
//! Metrics: `pps` (datagrams received per second), `goodput_bps` (payload bits received per
//! second), `loss` (1 − received / sent over the window) in the JSON; the table adds what the
//! sender sent and the per-CPU busy and softirq shares (where the work landed).
//!
//! The xdpos ends are real hosts: each stack owns its own address on its veth
//! (`XdpProgram::own_addr`: 10.0.0.11 on A, 10.0.0.12 on B; the kernels keep 10.0.0.1 and
//! 10.0.0.2), and the generator resolves the sink by ARP during the warm-up, as the kernel
//! sender of `kernel-to-xdpos` does.
//!
//! Placement (BENCHMARKS.md): on veth the receive work of B (the kernel's IP/UDP receive, or
//! the XDP program and the copy into the AF_XDP socket) runs as a softirq on the *sender's*
//! CPU unless moved. [`RxPlace`] moves it to a NAPI kthread pinned to a CPU (for the kernel:
//! GRO on, which gives veth a NAPI), to that kthread on the sender's CPU with the sender
//! yielding after each batch, to the receiving socket by busy polling, or, for the kernel
//! only, to CPU 1 with RPS. Each variant runs in its best placement ([`Kind::best`]: the kernel
//! busy-polls; xdpos uses `napi-cpu0+yield`), chosen from the `--explore` runs recorded in
//! `docs/udp.md`; `--explore` measures every placement as a variant of its own
//! (`kernel[B=rps-cpu1]`).
//!
//! Shared machines: `--max-foreign PCT` leaves out a sample during whose window other
//! processes (not this benchmark, not the kernel's network threads) used more than `PCT`% of a
//! CPU, and says so; the table's `foreign%` column shows what the kept samples saw.
//!
//! What it owns: one `pair` rig for the run (removed on drop, Ctrl-C included) and, per point,
//! the threads of both ends with their sockets, XDP programs and generators, and the
//! placement; all are gone (and the placement reset) when [`UdpBench::measure`] returns, on
//! every path. Every loop is bounded by the point's stop flag and deadline.

use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use libos::iface::route::Ipv4Cidr;
use libos::udp::{GeneratorConfig, UdpMode, UdpSocketConfig};
use libos::wire::{checksum, EthernetAddress};
use libos::{Stack, StackConfig};
use nic::afxdp::{BindMode, XdpMode, XdpProgram, XskConfig, XskPort};
use nic::trafgen::{udp_frame, GenHandle, LiveGen, Sink, UdpSpec};
use nic::Port;

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::loops::{self, LoopCtl, Published};
use super::place::{self, CpuTimes, Foreign, Napi, DUT_CPU, GEN_CPU};
use super::{CommonArgs, Stop};
use crate::rig::{Netns, Pair, PairOpts};
use crate::worker::{Clock, TxCsum, Worker, WorkerConfig, WorkerCounters};

/// `xdpos bench udp` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UdpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Datagrams per `sendmmsg`/`recvmmsg` call of the kernel ends.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Frames per batch of the xdpos workers (and `burst` of their sockets).
    #[arg(long, default_value_t = 64)]
    pub burst: usize,
    /// Who computes the xdpos stacks' transmit checksums: auto (the stack, since AF_XDP does
    /// not offload them), stack, or partial (the port completes them in software).
    #[arg(long, default_value = "auto")]
    pub tx_csum: TxCsum,
    /// Add the ceiling variants: raw-rxdrop, xdpos-rx, raw-txonly, xdpos-tx.
    #[arg(long)]
    pub ceiling: bool,
    /// Measure every placement of B's receive work of every variant as a variant of its own.
    #[arg(long)]
    pub explore: bool,
    /// Force the placement of B's receive work (softirq, rps-cpuN, napi-cpuN) for every
    /// variant it applies to.
    #[arg(long)]
    pub rx_place: Option<RxPlace>,
    /// How long an xdpos receiver polls an empty port before sleeping on it (microseconds).
    #[arg(long, default_value_t = 1000)]
    pub rx_spin_us: u64,
    /// xdpos receivers yield the CPU after every empty poll.
    #[arg(long)]
    pub rx_yield: bool,
    /// CPU pause hints after an empty poll of the xdpos workers.
    #[arg(long, default_value_t = 0)]
    pub empty_pause: u32,
    /// xdpos senders yield the CPU after every burst.
    #[arg(long)]
    pub tx_yield: bool,
    /// Leave out a sample when other processes (not this benchmark, not the kernel's network
    /// threads) used more than this percentage of a CPU during its window (shared machines).
    #[arg(long)]
    pub max_foreign: Option<f64>,
    /// Whether the xdpos workers keep their metrics (batch histograms, busy time, counter
    /// snapshots; `WorkerConfig::metrics`): `off` measures what they cost.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub metrics: String,
    /// `dpdk`: measure the DPDK backend (`kernel-to-xdpos-dpdk`) beside `kernel-to-xdpos`
    /// (AF_XDP) and `testpmd-rxonly` (same PMD and veth). Needs `--features dpdk`.
    #[arg(long, default_value = "afxdp")]
    pub backend: crate::dpdk::Backend,
}

/// UDP port of every stream (discard).
const PORT: u16 = 9;
/// The xdpos hosts' addresses (the kernels keep .1 on A and .2 on B).
const XDPOS_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const XDPOS_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
/// Bound on set-up and tear-down of one point, beyond warm-up and window.
const SLACK: Duration = Duration::from_secs(15);
/// Iterations of a kernel loop between two clock reads.
const CLOCK_EVERY: u64 = 64;

/// Where the receive work of B's veth runs (frames from A: the kernel's IP/UDP receive, or the
/// XDP program and the copy into the AF_XDP socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPlace {
    /// veth's default: a softirq on the CPU that transmitted into A's veth (the sender's).
    Softirq,
    /// The kernel's receive processing moved to a CPU by RPS (the kernel variant only: XDP
    /// runs before RPS).
    Rps(usize),
    /// A NAPI kthread pinned to a CPU (threaded NAPI; the kernel variant turns GRO on so
    /// veth has a NAPI without XDP).
    Napi(usize),
    /// A NAPI kthread pinned to the sender's CPU, and the sender yields the CPU after each
    /// batch it hands to the kernel (`sendmmsg`, or the xdpos worker's `tx_burst`), so the
    /// kthread processes the whole batch in one go instead of a softirq per packet.
    NapiYield(usize),
    /// The receiver runs it itself, on its CPU: preferred busy polling of its socket
    /// (`nic::busy_poll`; the device's `napi_defer_hard_irqs` and `gro_flush_timeout` set so
    /// the kernel leaves the NAPI context to the poller). Works for a kernel UDP socket; an
    /// AF_XDP socket on veth never gets a NAPI id, so for it only the deferral remains (B's
    /// receive batched on the sender's CPU).
    BusyPoll,
}

impl std::fmt::Display for RxPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RxPlace::Softirq => f.write_str("softirq"),
            RxPlace::Rps(c) => write!(f, "rps-cpu{c}"),
            RxPlace::Napi(c) => write!(f, "napi-cpu{c}"),
            RxPlace::NapiYield(c) => write!(f, "napi-cpu{c}+yield"),
            RxPlace::BusyPoll => f.write_str("busy-poll"),
        }
    }
}

impl std::str::FromStr for RxPlace {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<RxPlace> {
        let cpu = |p: &str| s.strip_prefix(p).and_then(|c| c.parse().ok());
        if s == "softirq" {
            Ok(RxPlace::Softirq)
        } else if s == "busy-poll" {
            Ok(RxPlace::BusyPoll)
        } else if let Some(c) = cpu("rps-cpu") {
            Ok(RxPlace::Rps(c))
        } else if let Some(c) = s.strip_suffix("+yield").and_then(|p| p.strip_prefix("napi-cpu")) {
            c.parse().map(RxPlace::NapiYield).map_err(|_| anyhow::anyhow!("bad CPU in {s:?}"))
        } else if let Some(c) = cpu("napi-cpu") {
            Ok(RxPlace::Napi(c))
        } else {
            anyhow::bail!(
                "unknown placement {s:?} (softirq, rps-cpuN, napi-cpuN, napi-cpuN+yield, busy-poll)"
            )
        }
    }
}

/// The kinds of measurement (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kernel to kernel.
    Kernel,
    /// xdpos to xdpos.
    Xdpos,
    /// Kernel sender, xdpos receiver.
    KernelToXdpos,
    /// Kernel sender, xdpos receiver on the DPDK backend (a child process).
    KernelToDpdk,
    /// Kernel sender, testpmd rxonly on DPDK's af_xdp PMD.
    TestpmdRx,
    /// Live generator into the raw rxdrop loop.
    RawRxdrop,
    /// Live generator into an xdpos sink.
    XdposRx,
    /// The raw txonly loop into an XDP sink.
    RawTxonly,
    /// An xdpos generator into an XDP sink.
    XdposTx,
}

impl Kind {
    /// The main variants, in table order.
    pub const MAIN: [Kind; 3] = [Kind::Kernel, Kind::Xdpos, Kind::KernelToXdpos];
    /// The ceiling variants (`--ceiling`).
    pub const CEILING: [Kind; 4] = [Kind::RawRxdrop, Kind::XdposRx, Kind::RawTxonly, Kind::XdposTx];

    /// Variant name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Xdpos => "xdpos",
            Kind::KernelToXdpos => "kernel-to-xdpos",
            Kind::KernelToDpdk => "kernel-to-xdpos-dpdk",
            Kind::TestpmdRx => "testpmd-rxonly",
            Kind::RawRxdrop => "raw-rxdrop",
            Kind::XdposRx => "xdpos-rx",
            Kind::RawTxonly => "raw-txonly",
            Kind::XdposTx => "xdpos-tx",
        }
    }

    fn baseline(self) -> Option<Kind> {
        match self {
            Kind::Xdpos | Kind::KernelToXdpos => Some(Kind::Kernel),
            Kind::KernelToDpdk => Some(Kind::KernelToXdpos),
            Kind::XdposRx => Some(Kind::RawRxdrop),
            Kind::XdposTx => Some(Kind::RawTxonly),
            _ => None,
        }
    }

    /// Frames flow into B (B's receive placement matters).
    fn receives_on_b(self) -> bool {
        !matches!(self, Kind::RawTxonly | Kind::XdposTx)
    }

    /// The placements `--explore` tries.
    fn placements(self) -> Vec<RxPlace> {
        match self {
            Kind::Kernel => vec![
                RxPlace::Softirq,
                RxPlace::Rps(DUT_CPU),
                RxPlace::Napi(DUT_CPU),
                RxPlace::Napi(GEN_CPU),
                RxPlace::NapiYield(GEN_CPU),
                RxPlace::BusyPoll,
            ],
            k if k.receives_on_b() => vec![
                RxPlace::Softirq,
                RxPlace::Napi(GEN_CPU),
                RxPlace::NapiYield(GEN_CPU),
                RxPlace::Napi(DUT_CPU),
                RxPlace::BusyPoll,
            ],
            _ => vec![RxPlace::Softirq],
        }
    }

    /// The best placement of B's receive work, from the `--explore` runs in docs/udp.md.
    pub fn best(self) -> RxPlace {
        match self {
            // The kernel: the receiving socket busy-polls veth's NAPI, so B's whole receive
            // path runs on CPU 1 in the receiver's context and the sender's CPU only sends.
            // (Best at every size: 1.2-2x softirq, ahead of RPS and threaded NAPI.)
            Kind::Kernel => RxPlace::BusyPoll,
            // xdpos: B's XDP receive stays on the sender's CPU (moving it to CPU 1 costs more
            // in cross-CPU frees and completions than it saves), batched: a NAPI kthread there,
            // and the generator yields after each burst so the kthread takes the burst at once.
            Kind::Xdpos => RxPlace::NapiYield(GEN_CPU),
            // A kernel sender into xdpos: B's XDP receive batched by deferred NAPI (what the
            // busy-poll settings do to a veth whose AF_XDP socket cannot busy-poll, see
            // docs/udp.md).
            Kind::KernelToXdpos => RxPlace::BusyPoll,
            // The DPDK variants in the same placement as the AF_XDP one they compare with.
            Kind::KernelToDpdk | Kind::TestpmdRx => RxPlace::BusyPoll,
            // The ceiling variants: as in bench raw (CPU 1 runs the system under test alone).
            _ => RxPlace::Softirq,
        }
    }
}

/// One end of a point, on its own thread (or, for the XDP sink, an attached program).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Kernel socket sending to `dst` with `sendmmsg`.
    KernelTx(SocketAddrV4),
    /// Kernel socket receiving with `recvmmsg`.
    KernelRx,
    /// xdpos stack generator to `dst`; `static_peer`: skip ARP (the peer is an XDP sink).
    XdposTx { dst: SocketAddrV4, static_peer: bool },
    /// xdpos stack sink.
    XdposRx,
    /// The raw txonly loop.
    RawTx,
    /// The raw rxdrop loop.
    RawRx,
    /// The BPF live-frame generator.
    Live,
    /// The counting XDP sink.
    XdpSink,
    /// The xdpos sink on the DPDK backend, a child process.
    DpdkRx,
    /// testpmd rxonly, a child process.
    TestpmdRx,
}

/// Which namespace of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// How one kind is measured: sender and receiver, where they run.
#[derive(Debug, Clone, Copy)]
struct Setup {
    tx: End,
    tx_side: Side,
    rx: End,
    rx_side: Side,
}

impl Kind {
    fn setup(self, pair: &Pair) -> Setup {
        let to_kernel_b = SocketAddrV4::new(pair.b.ip, PORT);
        let to_xdpos_b = SocketAddrV4::new(XDPOS_B, PORT);
        let to_kernel_a = SocketAddrV4::new(pair.a.ip, PORT);
        let (tx, tx_side, rx, rx_side) = match self {
            Kind::Kernel => (End::KernelTx(to_kernel_b), Side::A, End::KernelRx, Side::B),
            Kind::Xdpos => (
                End::XdposTx { dst: to_xdpos_b, static_peer: false },
                Side::A,
                End::XdposRx,
                Side::B,
            ),
            Kind::KernelToXdpos => (End::KernelTx(to_xdpos_b), Side::A, End::XdposRx, Side::B),
            Kind::KernelToDpdk => (End::KernelTx(to_xdpos_b), Side::A, End::DpdkRx, Side::B),
            // testpmd answers no ARP: to B's kernel address (A has B's MAC statically); the
            // PMD takes every frame of the queue.
            Kind::TestpmdRx => (End::KernelTx(to_kernel_b), Side::A, End::TestpmdRx, Side::B),
            Kind::RawRxdrop => (End::Live, Side::A, End::RawRx, Side::B),
            Kind::XdposRx => (End::Live, Side::A, End::XdposRx, Side::B),
            Kind::RawTxonly => (End::RawTx, Side::B, End::XdpSink, Side::A),
            Kind::XdposTx => (
                End::XdposTx { dst: to_kernel_a, static_peer: true },
                Side::B,
                End::XdpSink,
                Side::A,
            ),
        };
        Setup { tx, tx_side, rx, rx_side }
    }
}

/// The benchmark: the rig and what each variant name means.
#[derive(Debug)]
pub struct UdpBench {
    args: UdpArgs,
    pair: Pair,
    variants: Vec<(Variant, Kind, RxPlace)>,
    xdp_mode: String,
}

impl UdpBench {
    /// Builds the rig and the variant list.
    pub fn new(args: &UdpArgs) -> anyhow::Result<UdpBench> {
        anyhow::ensure!((1..=1024).contains(&args.batch), "--batch must be 1..=1024");
        anyhow::ensure!(
            (1..=nic::MAX_BURST).contains(&args.burst),
            "--burst must be 1..={}",
            nic::MAX_BURST
        );
        if let Some(sizes) = &args.common.sizes {
            for &s in sizes {
                anyhow::ensure!((18..=1472).contains(&s), "size {s}: UDP payloads are 18..=1472");
            }
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        anyhow::ensure!(cpus > DUT_CPU, "bench udp pins to CPUs 0 and 1; this machine has {cpus}");
        let pair = Pair::new("udp", &PairOpts { b_kernel_ip: true, ..Default::default() })
            .context("build the pair rig")?;
        let kinds: Vec<Kind> = if args.backend == crate::dpdk::Backend::Dpdk {
            vec![Kind::KernelToXdpos, Kind::KernelToDpdk, Kind::TestpmdRx]
        } else {
            Kind::MAIN
                .into_iter()
                .chain(args.ceiling.then_some(Kind::CEILING).into_iter().flatten())
                .collect()
        };
        let mut variants = Vec::new();
        for kind in kinds {
            let places = if args.explore {
                kind.placements()
            } else if kind.receives_on_b() {
                let p = args.rx_place.unwrap_or(kind.best());
                let applies = !matches!(p, RxPlace::Rps(_)) || kind == Kind::Kernel;
                vec![if applies { p } else { kind.best() }]
            } else {
                vec![RxPlace::Softirq]
            };
            for p in places {
                let name = |k: Kind| {
                    if args.explore && k.receives_on_b() {
                        format!("{}[B={p}]", k.name())
                    } else {
                        k.name().to_string()
                    }
                };
                let mut v = Variant::new(name(kind), None);
                v.unavailable = match kind {
                    Kind::KernelToDpdk => super::dpdk::unavailable(),
                    Kind::TestpmdRx if super::testpmd::installed().is_none() => {
                        Some(format!("{} not installed", super::testpmd::BINARY))
                    }
                    _ => None,
                };
                // Explored variants compare with the baseline in its best placement.
                v.baseline = kind.baseline().map(|b| {
                    if args.explore && b.receives_on_b() {
                        format!("{}[B={}]", b.name(), b.best())
                    } else {
                        b.name().to_string()
                    }
                });
                variants.push((v, kind, p));
            }
        }
        Ok(UdpBench { args: args.clone(), pair, variants, xdp_mode: "native-copy".into() })
    }
}

impl Benchmark for UdpBench {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![18, 64, 128, 256, 512, 1024, 1472]
    }

    fn variants(&self) -> Vec<Variant> {
        self.variants.iter().map(|(v, _, _)| v.clone()).collect()
    }

    fn primary(&self) -> Primary {
        Primary { metric: "goodput_bps", label: "Gbit/s", scale: 1e9 }
    }

    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        Some(vec!["pps", "goodput_bps", "loss"])
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", &self.xdp_mode)
    }

    fn notes(&self) -> Vec<String> {
        let places: Vec<String> = self
            .variants
            .iter()
            .filter(|(_, k, _)| k.receives_on_b())
            .map(|(v, _, p)| format!("{} B={p}", v.name))
            .collect();
        vec![
            format!(
                "sender on CPU {GEN_CPU}, receiver on CPU {DUT_CPU} (the tx ceiling variants: \
                 the system under test on CPU {DUT_CPU}, the XDP sink's NAPI kthread on CPU \
                 {GEN_CPU}); kernel ends: sendmmsg/recvmmsg of {}; xdpos workers: burst {}, \
                 checksums {:?}",
                self.args.batch, self.args.burst, self.args.tx_csum
            ),
            format!("B's receive work: {}", places.join(", ")),
            "sizes are UDP payload bytes; pps counts datagrams at the receiver".into(),
        ]
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let (_, kind, place) = *self
            .variants
            .iter()
            .find(|(x, _, _)| x.name == v.name)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        let r = self.point(kind, place, size, plan);
        // Whatever happened, leave B's receive path as the next point expects it.
        reset_place(&self.pair.ns_b, &self.pair.b.ifname);
        if !kind.receives_on_b() {
            let _ = place::place_napi(&self.pair.ns_a, &self.pair.a.ifname, Napi::Softirq);
        }
        r
    }
}

/// Raises a flag when dropped: every exit from a measurement stops its threads.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Stops a live generator when dropped (a test run cannot be interrupted otherwise).
struct StopGen(Option<GenHandle>);

impl Drop for StopGen {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            if let Err(e) = g.stop() {
                tracing::warn!("cannot stop the generator: {e}");
            }
        }
    }
}

/// What an end counts: messages sent or received so far.
enum Count {
    /// A counter the end's thread stores into.
    Atomic(Arc<AtomicU64>),
    /// An xdpos worker: its stack's UDP datagrams received (`true`) or sent.
    Worker(Arc<WorkerCounters>, bool),
    /// A raw loop.
    Loop(Arc<Published>, bool),
    /// The live generator.
    Gen(GenHandle),
    /// The XDP sink.
    Sink(Sink),
    /// The DPDK child's sink socket (asked on its stdin).
    Dpdk(Arc<std::sync::Mutex<super::dpdk::DpdkDut>>),
    /// testpmd's RX-packets.
    Testpmd(Arc<std::sync::Mutex<super::testpmd::Testpmd>>),
}

impl Count {
    fn read(&self) -> anyhow::Result<u64> {
        Ok(match self {
            Count::Atomic(a) => a.load(Ordering::Relaxed),
            Count::Worker(c, true) => c.udp_rx.load(Ordering::Relaxed),
            Count::Worker(c, false) => c.udp_tx.load(Ordering::Relaxed),
            Count::Loop(p, true) => p.read().0,
            Count::Loop(p, false) => p.sent(),
            Count::Gen(g) => g.sent()?.0,
            Count::Sink(s) => s.counts()?.0,
            Count::Dpdk(d) => {
                let mut d = d.lock().map_err(|_| anyhow!("dpdk end poisoned"))?;
                d.stat("udp_rx", Duration::from_secs(5))?
            }
            Count::Testpmd(t) => {
                let mut t = t.lock().map_err(|_| anyhow!("testpmd end poisoned"))?;
                t.stats(Duration::from_secs(5))?.rx_packets
            }
        })
    }
}

/// What an end reports when its thread ends: the frame accounting of an xdpos or raw end.
#[derive(Debug, Default)]
struct EndReport {
    frames: Option<Result<(), String>>,
    mode: Option<String>,
}

/// Everything an end's thread needs.
struct EndCtx<'a> {
    pair: &'a Pair,
    args: &'a UdpArgs,
    side: Side,
    cpu: usize,
    size: usize,
    /// The receiver runs B's receive work by busy polling its socket.
    busy_poll: bool,
    /// The sender yields the CPU after each batch.
    tx_yield: bool,
    stop: &'a AtomicBool,
    deadline: Instant,
}

impl EndCtx<'_> {
    fn ns(&self) -> &Netns {
        match self.side {
            Side::A => &self.pair.ns_a,
            Side::B => &self.pair.ns_b,
        }
    }

    fn ifname(&self) -> &str {
        match self.side {
            Side::A => &self.pair.a.ifname,
            Side::B => &self.pair.b.ifname,
        }
    }

    fn mac(&self) -> [u8; 6] {
        match self.side {
            Side::A => self.pair.a.mac,
            Side::B => self.pair.b.mac,
        }
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

impl UdpBench {
    /// One measurement of `kind` at `size` with B's receive work at `place`.
    fn point(
        &mut self,
        kind: Kind,
        place: RxPlace,
        size: usize,
        plan: &Plan,
    ) -> anyhow::Result<Metrics> {
        let setup = kind.setup(&self.pair);
        let deadline = Instant::now() + plan.warmup + plan.window + SLACK;
        let stop = AtomicBool::new(false);
        let (pair, args) = (&self.pair, &self.args);
        let busy_poll = place == RxPlace::BusyPoll && kind.receives_on_b();
        let ctx = |side, cpu| EndCtx {
            pair,
            args,
            side,
            cpu,
            size,
            busy_poll: busy_poll && side == setup.rx_side,
            tx_yield: (matches!(place, RxPlace::NapiYield(_)) || args.tx_yield)
                && side == setup.tx_side,
            stop: &stop,
            deadline,
        };
        let (tx_cpu, rx_cpu) =
            if kind.receives_on_b() { (GEN_CPU, DUT_CPU) } else { (DUT_CPU, GEN_CPU) };

        let outcome = std::thread::scope(|s| -> anyhow::Result<(Metrics, Vec<EndReport>)> {
            let _stop_threads = RaiseOnDrop(&stop);
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
            let mut threads = Vec::new();
            // Receiver first: it must own its address before anything is sent to it.
            let mut counts = Vec::new();
            for (end, side, cpu) in
                [(setup.rx, setup.rx_side, rx_cpu), (setup.tx, setup.tx_side, tx_cpu)]
            {
                if end == End::XdpSink {
                    let ns = ctx(side, cpu);
                    let sink = ns
                        .ns()
                        .run_in(|| Sink::attach(ns.ifname()))?
                        .with_context(|| format!("attach the sink on {}", ns.ifname()))?;
                    counts.push(Count::Sink(sink));
                    continue;
                }
                let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<Count>>();
                let c = ctx(side, cpu);
                let go = go_rx.clone();
                threads.push(s.spawn(move || run_end(end, c, ready_tx, go)));
                match ready_rx.recv_timeout(Duration::from_secs(40)) {
                    Ok(Ok(count)) => counts.push(count),
                    Ok(Err(e)) => return Err(e),
                    // A child process (testpmd, xdpos on DPDK) waits up to 30 s for itself.
                    Err(_) => return Err(anyhow!("{end:?} not ready within 40 s")),
                }
            }
            // Placement, once every XDP program of the point is attached.
            if kind.receives_on_b() {
                apply_place(&pair.ns_b, &pair.b.ifname, place, kind == Kind::Kernel)?;
            } else {
                place::place_napi(&pair.ns_a, &pair.a.ifname, Napi::Thread(GEN_CPU))?;
            }
            for _ in 0..threads.len() {
                let _ = go_tx.send(());
            }
            let _stop_gen = StopGen(match &counts[1] {
                Count::Gen(g) => Some(g.try_clone()?),
                _ => None,
            });
            let (rx, tx) = (&counts[0], &counts[1]);
            let full_warmup = plan.stop.sleep(plan.warmup);
            let cpu0 = CpuTimes::now();
            let foreign0 = Foreign::now();
            let t0 = Instant::now();
            let (r0, s0) = (rx.read()?, tx.read()?);
            let full_window = full_warmup && plan.stop.sleep(plan.window);
            let (r1, s1) = (rx.read()?, tx.read()?);
            let secs = t0.elapsed().as_secs_f64().max(1e-6);
            let cpu = cpu0.shares(&CpuTimes::now());
            let foreign = foreign0.since(secs);
            stop.store(true, Ordering::Relaxed);
            drop(_stop_gen);
            let mut reports = Vec::new();
            for t in threads {
                reports.push(t.join().map_err(|_| anyhow!("an end's thread panicked"))??);
            }
            anyhow::ensure!(full_window || plan.stop.requested(), "window cut short");
            if let Some(max) = args.max_foreign {
                anyhow::ensure!(
                    foreign.0 <= max,
                    "disturbed: other processes used {:.0}% of a CPU during the window (most: \
                     {}); sample left out",
                    foreign.0,
                    foreign.1
                );
            }
            let (got, sent) = (r1.saturating_sub(r0) as f64, s1.saturating_sub(s0) as f64);
            let pps = got / secs;
            let loss = if sent > 0.0 { (1.0 - got / sent).max(0.0) } else { 0.0 };
            let mut m: Metrics = vec![
                ("pps", pps),
                ("goodput_bps", pps * size as f64 * 8.0),
                ("loss", loss),
                ("sent_pps", sent / secs),
                ("foreign%", foreign.0),
            ];
            for (i, c) in cpu.iter().enumerate().take(2) {
                m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
                m.push((["cpu0_si%", "cpu1_si%"][i], c.softirq));
            }
            Ok((m, reports))
        });
        let (m, reports) = outcome?;
        for r in reports {
            if let Some(Err(e)) = r.frames {
                anyhow::bail!("frame accounting broken after {} at {size} B: {e}", kind.name());
            }
            if let Some(mode) = r.mode {
                self.xdp_mode = mode;
            }
        }
        Ok(m)
    }
}

/// Places B's receive work. `kernel`: the receiver is a kernel socket (GRO gives veth the NAPI
/// that threading needs; RPS applies).
fn apply_place(ns: &Netns, dev: &str, place: RxPlace, kernel: bool) -> anyhow::Result<()> {
    match place {
        // A veth without XDP (the kernel receiver) has no NAPI to unthread.
        RxPlace::Softirq if kernel => {}
        RxPlace::Softirq => {
            place::place_napi(ns, dev, Napi::Softirq)?;
        }
        RxPlace::Rps(cpu) => {
            anyhow::ensure!(kernel, "RPS runs after XDP: it cannot move an AF_XDP receive");
            ns.sh(&format!("echo {:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus", 1u64 << cpu))
                .with_context(|| format!("steer {dev}'s receive work to CPU {cpu} with RPS"))?;
        }
        RxPlace::Napi(cpu) | RxPlace::NapiYield(cpu) => {
            if kernel {
                ns.sh(&format!("ethtool -K {dev} gro on >/dev/null"))
                    .with_context(|| format!("turn GRO on for {dev} (gives veth a NAPI)"))?;
            }
            place::place_napi(ns, dev, Napi::Thread(cpu))?;
        }
        RxPlace::BusyPoll => {
            if kernel {
                ns.sh(&format!("ethtool -K {dev} gro on >/dev/null"))
                    .with_context(|| format!("turn GRO on for {dev} (gives veth a NAPI)"))?;
            } else {
                place::place_napi(ns, dev, Napi::Softirq)?;
            }
            ns.sh(&format!(
                "echo {BUSY_DEFER} > /sys/class/net/{dev}/napi_defer_hard_irqs && \
                 echo {BUSY_FLUSH_NS} > /sys/class/net/{dev}/gro_flush_timeout"
            ))
            .with_context(|| format!("let busy pollers own {dev}'s NAPI"))?;
        }
    }
    Ok(())
}

/// `napi_defer_hard_irqs` while a receiver busy-polls: the NAPI context stays with the poller
/// for this many empty polls before the kernel schedules it again.
const BUSY_DEFER: u32 = 2;
/// `gro_flush_timeout` while a receiver busy-polls (ns): the kernel's fallback poll, should
/// the poller stop polling.
const BUSY_FLUSH_NS: u32 = 200_000;

/// Undoes any placement of B's receive work (errors ignored: the device may have no NAPI).
fn reset_place(ns: &Netns, dev: &str) {
    let _ = ns.sh(&format!(
        "echo 0 > /sys/class/net/{dev}/threaded; \
         echo 0 > /sys/class/net/{dev}/queues/rx-0/rps_cpus; \
         echo 0 > /sys/class/net/{dev}/napi_defer_hard_irqs; \
         echo 0 > /sys/class/net/{dev}/gro_flush_timeout; \
         ethtool -K {dev} gro off >/dev/null 2>&1; true"
    ));
}

/// An end's thread: enter the namespace, pin, set up, report ready with its counter, wait for
/// go, run until stopped, tear down.
fn run_end(
    end: End,
    c: EndCtx<'_>,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    go: Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
) -> anyhow::Result<EndReport> {
    let wait_go = || {
        let got = go.lock().map(|rx| rx.recv_timeout(Duration::from_secs(10)).is_ok());
        got.unwrap_or(false)
    };
    let enter = || -> anyhow::Result<()> {
        c.ns().enter()?;
        place::pin(c.cpu)?;
        Ok(())
    };
    if let Err(e) = enter() {
        let msg = format!("{e:#}");
        let _ = ready.send(Err(e));
        return Err(anyhow!(msg));
    }
    match end {
        End::KernelTx(dst) => kernel_tx(&c, dst, ready, wait_go),
        End::KernelRx => kernel_rx(&c, ready, wait_go),
        End::XdposTx { .. } | End::XdposRx => xdpos_end(&c, end, ready, wait_go),
        End::RawTx | End::RawRx => raw_end(&c, end, ready, wait_go),
        End::Live => live_gen(&c, ready, wait_go),
        End::XdpSink => Err(anyhow!("the XDP sink has no thread")),
        End::DpdkRx | End::TestpmdRx => child_end(&c, end, ready, wait_go),
    }
}

/// A receiver that is a DPDK process (the xdpos sink on the DPDK backend, or testpmd rxonly)
/// on B's veth through DPDK's af_xdp PMD: started here, counted through its own counters,
/// stopped (and, for xdpos, its exit report checked) when the point ends.
fn child_end(
    c: &EndCtx<'_>,
    end: End,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl Fn() -> bool,
) -> anyhow::Result<EndReport> {
    let wait = || {
        if wait_go() {
            while !c.done() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    if end == End::TestpmdRx {
        let t = super::testpmd::Testpmd::start(
            c.ns(),
            c.ifname(),
            super::testpmd::Mode::RxOnly,
            c.size,
        );
        let t = match t {
            Ok(t) => Arc::new(std::sync::Mutex::new(t)),
            Err(e) => return fail(&ready, e),
        };
        let _ = ready.send(Ok(Count::Testpmd(t.clone())));
        wait();
        let mut t = t.lock().map_err(|_| anyhow!("testpmd end poisoned"))?;
        t.stop()?;
        return Ok(EndReport { frames: None, mode: Some("dpdk-af_xdp".into()) });
    }
    let args: Vec<String> = [
        "echo",
        "--backend",
        "dpdk",
        "--dpdk-pmd",
        "af_xdp",
        "--interface",
        c.ifname(),
        "--addr",
        &format!("{XDPOS_B}/24"),
        "--port",
        "7",
        "--queues",
        "0",
        "--cpus",
        &c.cpu.to_string(),
        "--burst",
        &c.args.burst.to_string(),
        "--dpdk-udp-sink",
        &PORT.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = match super::dpdk::DpdkDut::start(c.ns(), &args) {
        Ok(d) => Arc::new(std::sync::Mutex::new(d)),
        Err(e) => return fail(&ready, e),
    };
    let _ = ready.send(Ok(Count::Dpdk(d.clone())));
    wait();
    let mut d = d.lock().map_err(|_| anyhow!("dpdk end poisoned"))?;
    let frames = d.stop().map_err(|e| format!("{e:#}"));
    Ok(EndReport { frames: Some(frames), mode: Some("dpdk-af_xdp".into()) })
}

/// Sends a setup error to the waiting harness and returns it.
fn fail<T>(ready: &mpsc::Sender<anyhow::Result<Count>>, e: anyhow::Error) -> anyhow::Result<T> {
    let msg = format!("{e:#}");
    let _ = ready.send(Err(e));
    Err(anyhow!(msg))
}

/// The kernel sender: a connected UDP socket, `sendmmsg` of `batch` datagrams at a time.
fn kernel_tx(
    c: &EndCtx<'_>,
    dst: SocketAddrV4,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl FnOnce() -> bool,
) -> anyhow::Result<EndReport> {
    let setup = || -> anyhow::Result<UdpSocket> {
        let sock = UdpSocket::bind(SocketAddrV4::new(c.pair.a.ip, 0)).context("bind")?;
        sock.connect(dst).with_context(|| format!("connect to {dst}"))?;
        let _ = rustix::net::sockopt::set_socket_send_buffer_size_force(&sock, 4 << 20);
        Ok(sock)
    };
    let sock = match setup() {
        Ok(s) => s,
        Err(e) => return fail(&ready, e.context("kernel sender")),
    };
    let sent = Arc::new(AtomicU64::new(0));
    let _ = ready.send(Ok(Count::Atomic(sent.clone())));
    if !wait_go() {
        return Ok(EndReport::default());
    }
    let payload: Vec<u8> = (0..c.size).map(|i| i as u8).collect();
    let iov = [IoSlice::new(&payload)];
    let mut controls: Vec<rustix::net::SendAncillaryBuffer<'_, '_, '_>> =
        (0..c.args.batch).map(|_| Default::default()).collect();
    let mut msgs: Vec<rustix::net::MMsgHdr<'_>> =
        controls.iter_mut().map(|ctl| rustix::net::MMsgHdr::new(&iov, ctl)).collect();
    let (mut total, mut i) = (0u64, 0u64);
    while !(c.stop.load(Ordering::Relaxed) || (i % CLOCK_EVERY == 0 && c.done())) {
        i += 1;
        match rustix::net::sendmmsg(&sock, &mut msgs, rustix::net::SendFlags::empty()) {
            Ok(n) => {
                total += n as u64;
                sent.store(total, Ordering::Relaxed);
                if c.tx_yield {
                    std::thread::yield_now();
                }
            }
            Err(rustix::io::Errno::NOBUFS | rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
            }
            // The receiver's ICMP errors (port unreachable before it is up) are not ours.
            Err(rustix::io::Errno::CONNREFUSED) => {}
            Err(e) => return Err(anyhow!("sendmmsg to {dst}: {e}")),
        }
    }
    Ok(EndReport::default())
}

/// The kernel receiver: a UDP socket on B's kernel address, `recvmmsg` of `batch`.
fn kernel_rx(
    c: &EndCtx<'_>,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl FnOnce() -> bool,
) -> anyhow::Result<EndReport> {
    let setup = || -> anyhow::Result<UdpSocket> {
        let at = SocketAddrV4::new(c.pair.b.ip, PORT);
        let sock = UdpSocket::bind(at).with_context(|| format!("bind {at}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, 8 << 20);
        if c.busy_poll {
            let bp = nic::busy_poll::BusyPoll { usecs: 50, budget: c.args.batch as u32 };
            nic::busy_poll::enable(sock.as_fd(), bp).context("busy polling")?;
        }
        Ok(sock)
    };
    let sock = match setup() {
        Ok(s) => s,
        Err(e) => return fail(&ready, e.context("kernel receiver")),
    };
    let got = Arc::new(AtomicU64::new(0));
    let _ = ready.send(Ok(Count::Atomic(got.clone())));
    if !wait_go() {
        return Ok(EndReport::default());
    }
    let mut batch = nic::mmsg::RecvBatch::new(c.args.batch, 2048);
    let mut total = 0u64;
    while !c.done() {
        let n = batch.recv(sock.as_fd(), true).context("recvmmsg")?;
        if n > 0 {
            total += n as u64;
            got.store(total, Ordering::Relaxed);
        }
    }
    Ok(EndReport::default())
}

/// An xdpos end: the steering program owning the end's address, one socket, one stack with a
/// sink socket (receiver) or a generator (sender), one worker.
fn xdpos_end(
    c: &EndCtx<'_>,
    end: End,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl FnOnce() -> bool,
) -> anyhow::Result<EndReport> {
    let addr = match c.side {
        Side::A => XDPOS_A,
        Side::B => XDPOS_B,
    };
    let setup = || -> anyhow::Result<(XdpProgram, Worker<XskPort>)> {
        let ifname = c.ifname();
        let prog = XdpProgram::attach(ifname, XdpMode::Native)
            .with_context(|| format!("attach the steering program to {ifname}"))?;
        let xsk =
            XskConfig { burst: c.args.burst, bind: BindMode::Auto, ..XskConfig::new(ifname, 0) };
        let port = XskPort::open(&xsk, &prog).with_context(|| format!("open {ifname} queue 0"))?;
        if c.busy_poll {
            let bp = nic::busy_poll::BusyPoll { usecs: 20, budget: c.args.burst as u32 };
            nic::busy_poll::enable(port.fd(), bp).context("busy polling")?;
        }
        let clock = Clock::new();
        let mut cfg = StackConfig::new(EthernetAddress(c.mac()), &[Ipv4Cidr::new(addr, 24)]);
        cfg.arp.announce_count = 0;
        cfg.tx_csum_offload = c.args.tx_csum.offload(&port.caps());
        let mut stack = Stack::new(cfg, clock.now()).map_err(|e| anyhow!("stack: {e}"))?;
        let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
        let h = stack
            .udp_bind(local, UdpSocketConfig::mode(UdpMode::Sink))
            .map_err(|e| anyhow!("bind the socket: {e}"))?;
        if let End::XdposTx { dst, static_peer } = end {
            if static_peer {
                // The peer is an XDP sink that answers no ARP: A's kernel address and MAC.
                stack.add_static_neighbor(*dst.ip(), EthernetAddress(c.pair.a.mac));
            }
            let gen = GeneratorConfig { dst, payload_len: c.size, count: None };
            stack.udp_generate(h, Some(gen)).map_err(|e| anyhow!("generator: {e}"))?;
        }
        prog.own_addr(addr)?;
        let mut wcfg = WorkerConfig { burst: c.args.burst, ..WorkerConfig::default() };
        wcfg.empty_pause = c.args.empty_pause;
        wcfg.metrics = c.args.metrics == "on";
        if matches!(end, End::XdposTx { .. }) {
            wcfg.yield_when_busy = c.tx_yield;
        }
        if end == End::XdposRx {
            wcfg.spin = Duration::from_micros(c.args.rx_spin_us);
            wcfg.busy_poll = c.busy_poll;
            wcfg.yield_when_empty = c.args.rx_yield;
        }
        Ok((prog, Worker::new(port, stack, (), wcfg, clock)))
    };
    let (prog, mut w) = match setup() {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context(format!("xdpos {end:?}"))),
    };
    let rx = end == End::XdposRx;
    let _ = ready.send(Ok(Count::Worker(w.counters().clone(), rx)));
    if !wait_go() {
        return Ok(EndReport::default());
    }
    w.run_loop(c.stop, Some(c.deadline));
    // Stop the inflow before the accounting check reads the rings.
    prog.steer_none()?;
    let r = w.finish();
    let mode = format!(
        "{}-{}",
        prog.mode().as_str(),
        if w.port().caps().zero_copy { "zerocopy" } else { "copy" }
    );
    tracing::debug!(
        ?end,
        size = c.size,
        rx = r.port.rx_packets,
        tx = r.port.tx_packets,
        kicks = r.port.kicks,
        iterations = r.iterations,
        sleeps = r.sleeps,
        tx_full_drops = r.tx_full_drops,
        drops = r.stack.total_drops(),
        rx_dropped = w.port().xdp_statistics().map(|s| s.rx_dropped).unwrap_or(0),
        napi_id = nic::busy_poll::incoming_napi_id(w.port().fd()).unwrap_or(0),
        "xdpos end"
    );
    drop(w);
    drop(prog);
    Ok(EndReport { frames: Some(r.frames.map(|_| ())), mode: Some(mode) })
}

/// A raw loop of `bench raw` on one AF_XDP socket, with the xdpos workers' burst (`--burst`).
fn raw_end(
    c: &EndCtx<'_>,
    end: End,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl FnOnce() -> bool,
) -> anyhow::Result<EndReport> {
    let setup = || -> anyhow::Result<(XdpProgram, XskPort)> {
        let ifname = c.ifname();
        let prog = XdpProgram::attach(ifname, XdpMode::Native)
            .with_context(|| format!("attach the steering program to {ifname}"))?;
        prog.steer_all()?;
        let xsk = XskConfig { burst: c.args.burst, ..XskConfig::new(ifname, 0) };
        let port = XskPort::open(&xsk, &prog).with_context(|| format!("open {ifname} queue 0"))?;
        Ok((prog, port))
    };
    let (prog, mut port) = match setup() {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context(format!("raw {end:?}"))),
    };
    let frame = frame_to_a(c.pair, c.size)?;
    if end == End::RawTx {
        loops::prefill(&mut port, &frame);
    }
    let out = Arc::new(Published::default());
    let _ = ready.send(Ok(Count::Loop(out.clone(), end == End::RawRx)));
    if !wait_go() {
        return Ok(EndReport::default());
    }
    let ctl = LoopCtl { stop: c.stop, deadline: c.deadline, out: &out };
    match end {
        End::RawRx => loops::rxdrop(&mut port, ctl),
        _ => loops::txonly(&mut port, frame.len() as u32, c.args.burst, ctl),
    };
    let mut frames = Ok(());
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        port.reclaim();
        let f = port.frame_counts();
        if f.tx == 0 && f.kernel == 0 && f.completion == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Err(e) = port.audit() {
        frames = Err(e.to_string());
    }
    drop(port);
    drop(prog);
    Ok(EndReport { frames: Some(frames), mode: None })
}

/// The frame the raw txonly loop sends to A (B → A, UDP payload `size`).
fn frame_to_a(pair: &Pair, size: usize) -> anyhow::Result<Vec<u8>> {
    let spec = UdpSpec {
        src_mac: pair.b.mac,
        dst_mac: pair.a.mac,
        src_ip: pair.b.ip,
        dst_ip: pair.a.ip,
        src_port: PORT,
        dst_port: PORT,
    };
    Ok(udp_frame(&spec, (size + 42).max(nic::trafgen::MIN_FRAME))?)
}

/// The live generator's frame (A → the xdpos or raw receiver on B), one flow, with a complete
/// UDP checksum so that an xdpos receiver verifies it as it would a real sender's.
fn frame_to_b(pair: &Pair, size: usize) -> anyhow::Result<Vec<u8>> {
    let spec = UdpSpec {
        src_mac: pair.a.mac,
        dst_mac: pair.b.mac,
        src_ip: XDPOS_A,
        dst_ip: XDPOS_B,
        src_port: 1024,
        dst_port: PORT,
    };
    let mut f = udp_frame(&spec, (size + 42).max(nic::trafgen::MIN_FRAME))?;
    let udp_len = f.len() - 34;
    let pseudo = checksum::pseudo_header_v4(XDPOS_A.octets(), XDPOS_B.octets(), 17, udp_len as u16);
    let c = !checksum::add(pseudo, checksum::sum(&f[34..]));
    let c = if c == 0 { 0xffff } else { c };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    Ok(f)
}

/// The BPF live-frame generator in A: one flow into B, in few long test runs sized from the
/// rate seen so far (each run costs ~20 ms of set-up), stopped through its handle.
fn live_gen(
    c: &EndCtx<'_>,
    ready: mpsc::Sender<anyhow::Result<Count>>,
    wait_go: impl FnOnce() -> bool,
) -> anyhow::Result<EndReport> {
    let setup = || -> anyhow::Result<(LiveGen, GenHandle)> {
        let frame = frame_to_b(c.pair, c.size)?;
        let gen = LiveGen::new(c.ifname(), &frame, 1, 1024)?;
        let handle = gen.handle()?;
        Ok((gen, handle))
    };
    let (mut gen, handle) = match setup() {
        Ok(x) => x,
        Err(e) => return fail(&ready, e.context("live generator")),
    };
    let _ = ready.send(Ok(Count::Gen(handle)));
    if !wait_go() {
        return Ok(EndReport::default());
    }
    loops::paced(&mut gen, c.deadline, || c.done())?;
    Ok(EndReport::default())
}

/// `xdpos bench udp`.
pub fn run(args: &UdpArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = UdpBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench); // the rig goes before the report is printed
    harness::finish(&report, &args.common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_parse_and_print() {
        for s in ["softirq", "rps-cpu1", "napi-cpu0", "napi-cpu0+yield", "busy-poll"] {
            assert_eq!(s.parse::<RxPlace>().unwrap().to_string(), s);
        }
        assert!("rps".parse::<RxPlace>().is_err());
    }

    #[test]
    fn every_variant_but_the_baselines_has_one_and_placements_fit_the_receiver() {
        for k in Kind::MAIN.into_iter().chain(Kind::CEILING) {
            if let Some(b) = k.baseline() {
                assert!(b.baseline().is_none());
            }
            assert!(k.placements().contains(&k.best()), "{}", k.name());
            let rps = k.placements().iter().any(|p| matches!(p, RxPlace::Rps(_)));
            assert_eq!(rps, k == Kind::Kernel, "RPS cannot move an AF_XDP receive");
        }
    }
}
