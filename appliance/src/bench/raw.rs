//! # `xdpos bench raw`: the AF_XDP ceiling, with the nic layer and no stack
//!
//! What it is: three loops of [`super::loops`] on one xdpos AF_XDP socket ([`nic::afxdp`]) in
//! namespace B of the `pair` rig, against DPDK testpmd's af_xdp PMD on the same veth, counted
//! the same way:
//!
//! | variant | load | counted by | baseline |
//! |---|---|---|---|
//! | `rxdrop` | generator in A → xdpos on B receives and frees | xdpos (userspace) | `testpmd-rxonly` |
//! | `txonly` | xdpos on B transmits prebuilt frames | sink on A | `testpmd-txonly` |
//! | `l2fwd` | generator in A → xdpos on B swaps MACs, sends back | sink on A | `testpmd-io` |
//! | `testpmd-rxonly` | generator in A → testpmd rxonly | testpmd's `RX-packets` | |
//! | `testpmd-txonly` | testpmd txonly `--txpkts=<size>` | sink on A | |
//! | `testpmd-io` | generator in A → testpmd io (same port back) | sink on A | |
//!
//! Sizes are frame bytes handed to the device (no FCS): 64 and 1500 by default. Metrics:
//! `pps` and `goodput_bps` (= pps × size × 8) in the JSON; the table adds what the generator
//! offered and the per-CPU busy and softirq shares during the window (where the work landed).
//!
//! Placement (BENCHMARKS.md): generator and sink side on CPU 0 ([`GEN_CPU`]), xdpos's loop and
//! testpmd's forwarding lcore on CPU 1 ([`DUT_CPU`]); the receive NAPI work of B's veth (frames
//! from the generator) and of A's veth (frames back to the sink) is placed per variant
//! ([`Placement`]): each variant runs in its best placement, chosen from `--explore` runs
//! recorded in `docs/benchmarks.md`. `--explore` measures every relevant placement as its own
//! variant (`l2fwd[B=napi-cpu1/A=softirq]`).
//!
//! What it owns: one `pair` rig for the whole run (removed on drop, Ctrl-C included), and per
//! point: the xdpos thread with its XDP program and socket, the generator thread, the sink (a
//! BPF link), testpmd. All are gone when [`RawBench::measure`] returns, on every path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use nic::afxdp::{BindMode, XdpMode, XdpProgram, XskConfig, XskPort};
use nic::trafgen::{udp_frame, GenHandle, LiveGen, Sink, UdpSpec};

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::loops::{self, LoopCtl, LoopStats, Published};
use super::place::{self, CpuTimes, Napi, DUT_CPU, GEN_CPU};
use super::testpmd::{self, Testpmd};
use super::{CommonArgs, Stop};
use crate::rig::{Pair, PairOpts};

/// `xdpos bench raw` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RawArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Frames per burst of the xdpos loops (and `burst` of the socket).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Flows (UDP source ports) the generator cycles through.
    #[arg(long, default_value_t = 64)]
    pub flows: u16,
    /// Measure every relevant NAPI placement of every variant as a variant of its own.
    #[arg(long)]
    pub explore: bool,
    /// Force the placement of B's receive NAPI (softirq, napi-cpu0, napi-cpu1) for all variants.
    #[arg(long)]
    pub napi_b: Option<Napi>,
    /// Force the placement of A's receive NAPI (the sink side) for all variants.
    #[arg(long)]
    pub napi_a: Option<Napi>,
    /// Entries of each ring of the xdpos socket (UMEM: twice as many frames).
    #[arg(long, default_value_t = 2048)]
    pub ring: u32,
    /// Bytes per UMEM frame of the xdpos socket (2048 or 4096).
    #[arg(long, default_value_t = 4096)]
    pub frame_size: u32,
    /// Add the `generator` variant: the generator alone into a sink on B (its ceiling).
    #[arg(long)]
    pub calibrate: bool,
}

/// The six kinds of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// xdpos receives and frees.
    Rxdrop,
    /// xdpos transmits.
    Txonly,
    /// xdpos swaps MACs and sends back.
    L2fwd,
    /// testpmd rxonly.
    TestpmdRx,
    /// testpmd txonly.
    TestpmdTx,
    /// testpmd io.
    TestpmdIo,
    /// Calibration (`--calibrate`): the generator alone, counted by a sink on B.
    Generator,
}

impl Kind {
    /// Every kind, in table order: each xdpos loop next to its testpmd counterpart, so the
    /// two are measured back to back.
    pub const ALL: [Kind; 6] = [
        Kind::Rxdrop,
        Kind::TestpmdRx,
        Kind::Txonly,
        Kind::TestpmdTx,
        Kind::L2fwd,
        Kind::TestpmdIo,
    ];

    /// Variant name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rxdrop => "rxdrop",
            Kind::Txonly => "txonly",
            Kind::L2fwd => "l2fwd",
            Kind::TestpmdRx => "testpmd-rxonly",
            Kind::TestpmdTx => "testpmd-txonly",
            Kind::TestpmdIo => "testpmd-io",
            Kind::Generator => "generator",
        }
    }

    fn baseline(self) -> Option<Kind> {
        match self {
            Kind::Rxdrop => Some(Kind::TestpmdRx),
            Kind::Txonly => Some(Kind::TestpmdTx),
            Kind::L2fwd => Some(Kind::TestpmdIo),
            _ => None,
        }
    }

    fn testpmd(self) -> Option<testpmd::Mode> {
        match self {
            Kind::TestpmdRx => Some(testpmd::Mode::RxOnly),
            Kind::TestpmdTx => Some(testpmd::Mode::TxOnly),
            Kind::TestpmdIo => Some(testpmd::Mode::Io),
            _ => None,
        }
    }

    /// Frames flow A → B (a generator runs, B's receive NAPI matters).
    fn receives(self) -> bool {
        !matches!(self, Kind::Txonly | Kind::TestpmdTx)
    }

    /// Frames flow B → A (a sink on A counts, A's receive NAPI matters).
    fn transmits(self) -> bool {
        !matches!(self, Kind::Rxdrop | Kind::TestpmdRx | Kind::Generator)
    }

    /// Runs an xdpos AF_XDP socket on B.
    fn xdpos(self) -> bool {
        matches!(self, Kind::Rxdrop | Kind::Txonly | Kind::L2fwd)
    }

    /// The best placement, from the `--explore` runs in docs/benchmarks.md: CPU 1 runs the
    /// system under test and nothing else. B's receive work stays a softirq on the generator's
    /// CPU 0 (where the generator's redirect raises it); A's receive work (the sink), which the
    /// DUT's transmit would raise as a softirq on CPU 1, runs in a NAPI kthread on CPU 0.
    pub fn best(self) -> Placement {
        let b = Napi::Softirq;
        let a = if self.transmits() { Napi::Thread(GEN_CPU) } else { Napi::Softirq };
        Placement { b, a }
    }
}

/// Where the receive NAPI work of B's and A's veth runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// B's veth: frames from the generator (XDP program, copy into the socket).
    pub b: Napi,
    /// A's veth: frames back to the sink.
    pub a: Napi,
}

impl Placement {
    fn label(self, kind: Kind) -> String {
        match (kind.receives(), kind.transmits()) {
            (true, true) => format!("B={}/A={}", self.b, self.a),
            (true, false) => format!("B={}", self.b),
            _ => format!("A={}", self.a),
        }
    }
}

const NAPIS: [Napi; 3] = [Napi::Softirq, Napi::Thread(GEN_CPU), Napi::Thread(DUT_CPU)];

/// Bound on set-up and tear-down of one point, beyond warm-up and window.
const SLACK: Duration = Duration::from_secs(15);

/// The benchmark: the rig and what each variant name means.
#[derive(Debug)]
pub struct RawBench {
    args: RawArgs,
    pair: Pair,
    variants: Vec<(Variant, Kind, Placement)>,
    xdp_mode: String,
    notes: Vec<String>,
}

impl RawBench {
    /// Builds the rig and the variant list.
    pub fn new(args: &RawArgs) -> anyhow::Result<RawBench> {
        anyhow::ensure!(
            (1..=nic::MAX_BURST).contains(&args.batch),
            "--batch must be 1..={}",
            nic::MAX_BURST
        );
        if let Some(sizes) = &args.common.sizes {
            for &s in sizes {
                anyhow::ensure!(
                    (nic::trafgen::MIN_FRAME..=nic::trafgen::MAX_FRAME).contains(&s),
                    "size {s}: frames are 60..=1514 bytes (no FCS)"
                );
            }
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        anyhow::ensure!(cpus > DUT_CPU, "bench raw pins to CPUs 0 and 1; this machine has {cpus}");
        let pair = Pair::new("raw", &PairOpts::default()).context("build the pair rig")?;
        let tp = testpmd::installed();
        let mut variants = Vec::new();
        let extra = args.calibrate.then_some(Kind::Generator);
        for kind in Kind::ALL.into_iter().chain(extra) {
            let placements: Vec<Placement> = if args.explore {
                let bs: &[Napi] = if kind.receives() { &NAPIS } else { &[Napi::Softirq] };
                let as_: &[Napi] = if kind.transmits() { &NAPIS } else { &[Napi::Softirq] };
                bs.iter().flat_map(|&b| as_.iter().map(move |&a| Placement { b, a })).collect()
            } else {
                let best = kind.best();
                vec![Placement {
                    b: args.napi_b.unwrap_or(best.b),
                    a: args.napi_a.unwrap_or(best.a),
                }]
            };
            for p in placements {
                let name = |k: Kind| {
                    if args.explore {
                        format!("{}[{}]", k.name(), p.label(kind))
                    } else {
                        k.name().to_string()
                    }
                };
                let mut v = Variant::new(name(kind), None);
                v.baseline = kind.baseline().map(name);
                if kind.testpmd().is_some() && tp.is_none() {
                    v.unavailable =
                        Some(format!("{} not installed (Debian package dpdk)", testpmd::BINARY));
                }
                variants.push((v, kind, p));
            }
        }
        let notes = vec![
            format!(
                "generator and sink on CPU {GEN_CPU}, xdpos loop / testpmd forwarding lcore on \
                 CPU {DUT_CPU}; xdpos batch {}, generator {} flows",
                args.batch, args.flows
            ),
            "counted by: rxdrop xdpos, testpmd-rxonly its RX-packets, the others the sink on A"
                .into(),
        ];
        Ok(RawBench { args: args.clone(), pair, variants, xdp_mode: "native-copy".into(), notes })
    }
}

/// Raises a flag when dropped: every exit from a measurement stops its threads.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What counts a point: the measured count, and for the transmitting kinds also what the
/// system under test says it transmitted (to see where frames are lost: a gap between the two
/// is frames dropped on the way to the sink, e.g. its veth ring full).
enum Counter<'a> {
    /// xdpos rxdrop: frames its loop received.
    Loop(&'a Published),
    /// The sink on A, and the DUT's own transmit count.
    Sink(&'a Sink, Tx<'a>),
    /// testpmd rxonly: its `RX-packets`.
    Testpmd(&'a mut Testpmd),
}

/// The DUT's own transmit count.
enum Tx<'a> {
    Loop(&'a Published),
    Testpmd(&'a mut Testpmd),
}

impl Counter<'_> {
    /// (packets so far, DUT's transmitted so far, when).
    fn read(&mut self) -> anyhow::Result<(u64, Option<u64>, Instant)> {
        let limit = Duration::from_secs(5);
        Ok(match self {
            Counter::Loop(p) => (p.read().0, None, Instant::now()),
            Counter::Sink(s, tx) => {
                let at = Instant::now();
                let n = s.counts()?.0;
                let sent = match tx {
                    Tx::Loop(p) => p.sent(),
                    Tx::Testpmd(t) => t.stats(limit)?.tx_packets,
                };
                (n, Some(sent), at)
            }
            Counter::Testpmd(t) => {
                let s = t.stats(limit)?;
                (s.rx_packets, None, s.at)
            }
        })
    }
}

/// What the xdpos thread reports at the end.
#[derive(Debug, Default)]
struct SideReport {
    stats: LoopStats,
    rx_dropped: u64,
    mode: String,
}

impl Benchmark for RawBench {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![64, 1500]
    }

    fn variants(&self) -> Vec<Variant> {
        self.variants.iter().map(|(v, _, _)| v.clone()).collect()
    }

    fn primary(&self) -> Primary {
        Primary { metric: "pps", label: "Mpps", scale: 1e6 }
    }

    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        Some(vec!["pps", "goodput_bps"])
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", &self.xdp_mode)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let (_, kind, placement) = *self
            .variants
            .iter()
            .find(|(x, _, _)| x.name == v.name)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        self.point(kind, placement, size, plan)
    }
}

impl RawBench {
    /// The generator's frame (A → B) and the transmit template (B → A) at `size`.
    fn frames(&self, size: usize) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let (a, b) = (&self.pair.a, &self.pair.b);
        let spec = UdpSpec {
            src_mac: a.mac,
            dst_mac: b.mac,
            src_ip: a.ip,
            dst_ip: b.ip,
            src_port: 1024,
            dst_port: 9,
        };
        let back = UdpSpec {
            src_mac: b.mac,
            dst_mac: a.mac,
            src_ip: b.ip,
            dst_ip: a.ip,
            src_port: 9,
            dst_port: 1024,
        };
        Ok((udp_frame(&spec, size)?, udp_frame(&back, size)?))
    }

    /// One measurement of `kind` at `size` in `placement`.
    fn point(
        &mut self,
        kind: Kind,
        placement: Placement,
        size: usize,
        plan: &Plan,
    ) -> anyhow::Result<Metrics> {
        let (to_b, to_a) = self.frames(size)?;
        let deadline = Instant::now() + plan.warmup + plan.window + SLACK;
        let point_stop = AtomicBool::new(false);
        let published = Published::default();
        let (pair, args) = (&self.pair, &self.args);

        // A side first: the sink must be there before anything is sent to A.
        let sink = if kind.transmits() {
            Some(
                pair.ns_a
                    .run_in(|| Sink::attach(&pair.a.ifname))?
                    .context("attach the sink on A")?,
            )
        } else if kind == Kind::Generator {
            Some(
                pair.ns_b
                    .run_in(|| Sink::attach(&pair.b.ifname))?
                    .context("attach the sink on B")?,
            )
        } else {
            None
        };
        let mut tp = match kind.testpmd() {
            Some(mode) => Some(Testpmd::start(&pair.ns_b, &pair.b.ifname, mode, size)?),
            None => None,
        };

        let outcome = std::thread::scope(|s| -> anyhow::Result<(Metrics, Option<SideReport>)> {
            let _stop_threads = RaiseOnDrop(&point_stop);
            let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let ctl = LoopCtl { stop: &point_stop, deadline, out: &published };
            let b_side = if kind.xdpos() {
                let to_a = &to_a;
                Some(s.spawn(move || xdpos_side(pair, kind, args, to_a, ctl, ready_tx, go_rx)))
            } else {
                drop(ready_tx);
                None
            };
            if b_side.is_some() {
                match ready_rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(anyhow!("xdpos side not ready within 10 s"));
                    }
                }
            }
            // Placement, once every XDP program of the point is attached.
            if kind.receives() {
                place::place_napi(&pair.ns_b, &pair.b.ifname, placement.b)?;
            }
            if kind.transmits() {
                place::place_napi(&pair.ns_a, &pair.a.ifname, placement.a)?;
            }
            let _ = go_tx.send(());
            let mut gen = None;
            if kind.receives() {
                let (handle_tx, handle_rx) = mpsc::channel();
                let (to_b, stop) = (&to_b, &point_stop);
                let h =
                    s.spawn(move || generator(pair, to_b, args.flows, stop, deadline, handle_tx));
                match handle_rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(handle) => gen = Some((h, handle)),
                    Err(_) => {
                        let e = h.join().map_err(|_| anyhow!("generator thread panicked"))?.err();
                        return Err(e.unwrap_or_else(|| anyhow!("generator not ready in 10 s")));
                    }
                }
            }
            let _stop_gen = StopGen(gen.as_ref().map(|(_, handle)| handle));
            let offered = || gen.as_ref().map(|(_, g)| g.sent().map(|s| s.0)).transpose();

            // Warm-up, then the window.
            let full_warmup = plan.stop.sleep(plan.warmup);
            let mut counter = match (kind, &sink, tp.as_mut()) {
                (Kind::Rxdrop, _, _) => Counter::Loop(&published),
                (Kind::TestpmdRx, _, Some(t)) => Counter::Testpmd(t),
                (Kind::Generator, Some(sink), _) => Counter::Sink(sink, Tx::Loop(&published)),
                (_, Some(sink), Some(t)) => Counter::Sink(sink, Tx::Testpmd(t)),
                (_, Some(sink), None) => Counter::Sink(sink, Tx::Loop(&published)),
                _ => return Err(anyhow!("no counter for {}", kind.name())),
            };
            let cpu0 = CpuTimes::now();
            let (g0, (c0, s0, t0)) = (offered()?, counter.read()?);
            let full_window = full_warmup && plan.stop.sleep(plan.window);
            let (g1, (c1, s1, t1)) = (offered()?, counter.read()?);
            let cpu = cpu0.shares(&CpuTimes::now());
            point_stop.store(true, Ordering::Relaxed);

            let side = match b_side {
                Some(h) => Some(h.join().map_err(|_| anyhow!("xdpos thread panicked"))??),
                None => None,
            };
            drop(_stop_gen);
            if let Some((h, _)) = gen {
                h.join().map_err(|_| anyhow!("generator thread panicked"))??;
            }
            anyhow::ensure!(full_window || plan.stop.requested(), "window cut short");
            let secs = t1.duration_since(t0).as_secs_f64().max(1e-6);
            let pps = c1.saturating_sub(c0) as f64 / secs;
            let mut m: Metrics = vec![("pps", pps), ("goodput_bps", pps * size as f64 * 8.0)];
            if let (Some(g0), Some(g1)) = (g0, g1) {
                m.push(("offered_pps", g1.saturating_sub(g0) as f64 / secs));
            }
            if let (Some(s0), Some(s1), true) = (s0, s1, kind != Kind::Generator) {
                m.push(("dut_tx_pps", s1.saturating_sub(s0) as f64 / secs));
            }
            for (i, c) in cpu.iter().enumerate().take(2) {
                m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
                m.push((["cpu0_si%", "cpu1_si%"][i], c.softirq));
            }
            Ok((m, side))
        });
        // Tear-down in order: testpmd (its XDP program), then the sink (drop detaches).
        let stopped = tp.as_mut().map(|t| t.stop()).transpose();
        drop(sink);
        let (m, side) = outcome?;
        stopped?;
        if let Some(side) = side {
            self.xdp_mode = side.mode.clone();
            tracing::debug!(
                kind = kind.name(),
                size,
                packets = side.stats.packets,
                sent = side.stats.sent,
                idle = side.stats.idle,
                iterations = side.stats.iterations,
                rx_dropped = side.rx_dropped,
                "xdpos side"
            );
        }
        Ok(m)
    }
}

/// The xdpos thread: in namespace B on [`DUT_CPU`], attaches the steering program (native mode,
/// every frame to the socket), opens the socket, reports ready, waits for go, runs the loop.
fn xdpos_side(
    pair: &Pair,
    kind: Kind,
    args: &RawArgs,
    to_a: &[u8],
    ctl: LoopCtl<'_>,
    ready: mpsc::Sender<anyhow::Result<()>>,
    go: mpsc::Receiver<()>,
) -> anyhow::Result<SideReport> {
    let setup = || -> anyhow::Result<(XdpProgram, XskPort)> {
        pair.ns_b.enter()?;
        place::pin(DUT_CPU)?;
        let ifname = &pair.b.ifname;
        let prog = XdpProgram::attach(ifname, XdpMode::Native)
            .with_context(|| format!("attach the steering program to {ifname}"))?;
        prog.steer_all()?;
        let cfg = XskConfig {
            burst: args.batch,
            ring_size: args.ring,
            frames: 2 * args.ring,
            frame_size: args.frame_size,
            bind: BindMode::Auto,
            ..XskConfig::new(ifname, 0)
        };
        let port = XskPort::open(&cfg, &prog).with_context(|| format!("open {ifname} queue 0"))?;
        Ok((prog, port))
    };
    let (prog, mut port) = match setup() {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            return Err(anyhow!(msg));
        }
    };
    if kind == Kind::Txonly {
        loops::prefill(&mut port, to_a);
    }
    if go.recv_timeout(Duration::from_secs(10)).is_err() {
        return Ok(SideReport::default()); // the harness gave up on this point
    }
    let stats = match kind {
        Kind::Rxdrop => loops::rxdrop(&mut port, ctl),
        Kind::Txonly => loops::txonly(&mut port, to_a.len() as u32, args.batch, ctl),
        Kind::L2fwd => loops::l2fwd(&mut port, ctl),
        _ => unreachable!("testpmd kinds have no xdpos side"),
    };
    let rx_dropped = port.xdp_statistics().map(|s| s.rx_dropped).unwrap_or(0);
    let mode = format!(
        "{}-{}",
        prog.mode().as_str(),
        if nic::Port::caps(&port).zero_copy { "zerocopy" } else { "copy" }
    );
    drop(port);
    drop(prog);
    Ok(SideReport { stats, rx_dropped, mode })
}

/// The generator thread: in namespace A on [`GEN_CPU`], sends `frame` out of A's veth until
/// its handle (sent back through `handle_tx`) stops it, the point's stop flag is raised, or
/// `end` passes. Test runs are sized from the rate seen so far to last 1.5× the time left, so
/// there are few of them (each costs a page-pool set-up) and none ends inside the window.
fn generator(
    pair: &Pair,
    frame: &[u8],
    flows: u16,
    stop: &AtomicBool,
    end: Instant,
    handle_tx: mpsc::Sender<GenHandle>,
) -> anyhow::Result<u64> {
    pair.ns_a.enter()?;
    place::pin(GEN_CPU)?;
    let mut gen = LiveGen::new(&pair.a.ifname, frame, flows, 1024)?;
    handle_tx.send(gen.handle()?).map_err(|_| anyhow!("measurement gave up on the generator"))?;
    let sent = loops::paced(&mut gen, end, || stop.load(Ordering::Relaxed))?;
    Ok(sent)
}

/// Stops a generator when dropped: every exit from a measurement ends its test run.
struct StopGen<'a>(Option<&'a GenHandle>);

impl Drop for StopGen<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            if let Err(e) = g.stop() {
                tracing::warn!("cannot stop the generator: {e}");
            }
        }
    }
}

/// `xdpos bench raw`.
pub fn run(args: &RawArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = RawBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench); // the rig goes before the report is printed
    harness::finish(&report, &args.common)
}
