//! # `xdpos bench fwd`: RFC 2544-style forwarding, A → F → B
//!
//! What it is: the `chain` rig (A —veth— F —veth— B) with a load generator in A
//! ([`nic::trafgen::LiveGen`]: frames addressed to F's MAC, UDP source ports cycling over
//! `--flows`, IPv4 destinations cycling over `--dsts` addresses spread across the unicast
//! space), a counting sink on B's veth ([`nic::trafgen::Sink`]), and the device under test in
//! F on [`DUT_CPU`]:
//!
//! | variant | F | counted by | baseline |
//! |---|---|---|---|
//! | `kernel` | Linux `ip_forward` (addresses on both veths, default route via B, B's MAC static), in its best placement: receive steered to CPU 1 by RPS | sink on B | |
//! | `xdpos-router` | the xdpos router ([`crate::forward`]), default route via B (one route) | sink on B | `l2fwd` |
//! | `xdpos-router[routes=N]` | the same with N routes: the default and N−1 from [`libos::fib::internet_like`], all via B | sink on B | `xdpos-router` |
//! | `xdpos-router-xdp` | the xdpos router with the XDP fast path ([`crate::fastpath`]), default route via B; F's receive NAPI threaded on CPU 1 at SCHED_FIFO 50 | sink on B | `xdp-redirect` |
//! | `xdpos-router-xdp[routes=N]` | the same with N routes | sink on B | `xdpos-router-xdp` |
//! | `xdp-redirect` | a bare in-kernel XDP redirect F(A side) → F(B side) with B's MAC ([`nic::afxdp::XdpRedirect`]); F's receive NAPI threaded on CPU 1 at SCHED_FIFO 50 | sink on B | |
//! | `xdpos-xconnect` | the xdpos cross-connect, frames unchanged | sink on B | `testpmd` |
//! | `testpmd` | DPDK testpmd, af_xdp PMD on both veths, io forwarding 0 ↔ 1 | sink on B | |
//! | `xdpos-router-dpdk` | with `--backend dpdk`: the xdpos router on the DPDK backend (`xdpos forward --backend dpdk --dpdk-pmd af_xdp`, a child process: DPDK's af_xdp PMD on both veths, the devices testpmd uses), default route via B | sink on B | `testpmd` |
//! | `l2fwd` | the raw AF_XDP l2fwd loop of `bench raw` on F's veth toward A (back to A) | sink on A | |
//!
//! `l2fwd` is `xdpos bench raw`'s l2fwd on this rig and in the same run, so the router's
//! target (≥ 90 % of l2fwd) is a ratio within one run. The notes under the table add the other
//! targets, each a median of per-repetition ratios: router / testpmd, router with the largest
//! route count / router with one route, router / kernel.
//!
//! Sizes are frame bytes handed to the device (no FCS): 64, 512 and 1500 by default. Metrics:
//! `pps` (delivered at the sink), `goodput_bps`, `loss` (1 − delivered / offered, RFC 2544's
//! frame loss with the generator's count as offered); the table adds `offered_pps`,
//! `dut_tx_pps` (what F says it sent), CPU shares and `foreign%` (CPU time of processes
//! outside the measurement during the window: other people's builds on a shared machine;
//! `--max-foreign` measures a disturbed point again, and leaves it out if it stays disturbed).
//!
//! Placement (docs/benchmarks.md, `bench raw`): the generator on CPU 0 raises F's receive
//! NAPI there (softirq: the XDP program and the copy into the socket, or the kernel's receive);
//! the sink's NAPI (B's veth, A's for `l2fwd`) is threaded and pinned to CPU 0; CPU 1 runs the
//! DUT and nothing else. For the kernel, `--explore` measures `kernel[softirq]` (everything on
//! CPU 0 with the generator), `kernel[rps-cpu1]` (RPS moves IP receive, forwarding and
//! transmit to CPU 1) and `kernel[napi-cpu1]` (F's receive NAPI threaded on CPU 1);
//! `kernel` is the best of those, chosen from those runs (docs/forwarding.md).
//!
//! What it owns: one `chain` rig for the run; per point the DUT (service, thread or process),
//! the generator thread, the sink. All are gone when [`FwdBench::measure`] returns, on every
//! path (the sysctls and addresses of the kernel variant are undone, the namespaces deleted at
//! the end of the run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use libos::fib::{Fib, NextHop};
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::{
    BindMode, FastPathCounters, FpOutcome, XdpMode, XdpProgram, XdpRedirect, XskConfig, XskPort,
};
use nic::trafgen::{udp_frame, Destinations, GenHandle, LiveGen, Sink, UdpSpec};

use super::harness::{self, Benchmark, Machine, Metrics, Plan, Primary, Variant};
use super::loops::{self, LoopCtl, Published};
use super::place::{self, CpuTimes, Foreign, Napi, DUT_CPU, GEN_CPU};
use super::testpmd::{self, Testpmd};
use super::{CommonArgs, Stop};
use crate::fastpath::FastPathMode;
use crate::forward::{
    fib_builder, ForwardConfig, ForwardService, ForwardWorkerConfig, IfaceSpec, Role, RouteSpec,
};
use crate::rig::{mac_str, Chain, ChainOpts};

/// `xdpos bench fwd` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FwdArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Route counts of the router variants: the first is `xdpos-router`, the others
    /// `xdpos-router[routes=N]` (N routes via B: the default and N−1 random prefixes).
    #[arg(long, value_delimiter = ',', default_value = "1,1000000")]
    pub routes: Vec<usize>,
    /// Flows (UDP source ports) the generator cycles through.
    #[arg(long, default_value_t = 256)]
    pub flows: u16,
    /// Destination addresses the generator cycles through, spread over the unicast space
    /// (1: B's address only).
    #[arg(long, default_value_t = 65536)]
    pub dsts: u32,
    /// Descriptors per burst of the xdpos DUTs (16: with one DUT core on copy-mode veth the
    /// router made 1.02x testpmd's rate at 16 and 0.95x at 64; see docs/forwarding.md).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Measure the kernel in every placement (`kernel[softirq]`, `kernel[rps-cpu1]`,
    /// `kernel[napi-cpu1]`).
    #[arg(long)]
    pub explore: bool,
    /// Measure a point again when other processes used more than this percentage of a CPU
    /// during its window (up to `--retries` times; a point still disturbed then is left out).
    #[arg(long)]
    pub max_foreign: Option<f64>,
    /// Attempts per point beyond the first, with `--max-foreign`.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// `dpdk`: measure the DPDK backend: `xdpos-router-dpdk` (the router on DPDK's af_xdp PMD)
    /// beside `xdpos-router` (AF_XDP) and `testpmd` (io forwarding on the same PMD and
    /// veths), both routers against testpmd. Needs an xdpos built with `--features dpdk`.
    #[arg(long, default_value = "afxdp")]
    pub backend: crate::dpdk::Backend,
}

/// Where F's kernel does its receive and forwarding work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPlacement {
    /// Softirq on the CPU that raised it (CPU 0, the generator's).
    Softirq,
    /// RPS on F's veth toward A: IP receive, forwarding and transmit on CPU 1.
    RpsCpu1,
    /// F's veth toward A with threaded NAPI pinned to CPU 1.
    NapiCpu1,
}

impl KernelPlacement {
    fn label(self) -> &'static str {
        match self {
            KernelPlacement::Softirq => "softirq",
            KernelPlacement::RpsCpu1 => "rps-cpu1",
            KernelPlacement::NapiCpu1 => "napi-cpu1",
        }
    }

    /// The best placement, from `--explore` runs (docs/forwarding.md).
    pub const BEST: KernelPlacement = KernelPlacement::RpsCpu1;
}

/// The kinds of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Linux forwarding in F.
    Kernel(KernelPlacement),
    /// The xdpos router with this many routes.
    Router(usize),
    /// The xdpos router with the XDP fast path, this many routes.
    RouterXdp(usize),
    /// A bare in-kernel XDP redirect.
    XdpRedirect,
    /// The xdpos cross-connect.
    Xconnect,
    /// DPDK testpmd io forwarding.
    Testpmd,
    /// The xdpos router on the DPDK backend (a child process).
    RouterDpdk,
    /// The raw l2fwd loop, back to A.
    L2fwd,
}

impl Kind {
    /// Frames end at A's sink (l2fwd) rather than B's.
    fn to_a(self) -> bool {
        self == Kind::L2fwd
    }

    /// Forwarded in F's receive NAPI (XDP): that NAPI runs threaded on the DUT's CPU.
    fn in_napi(self) -> bool {
        matches!(self, Kind::RouterXdp(_) | Kind::XdpRedirect)
    }
}

/// Bound on set-up and tear-down of one point, beyond warm-up and window.
const SLACK: Duration = Duration::from_secs(20);
/// The benchmark: the rig, the variants, the tables built once for the run.
#[derive(Debug)]
pub struct FwdBench {
    args: FwdArgs,
    chain: Chain,
    variants: Vec<(Variant, Kind)>,
    fibs: Vec<(usize, Arc<Fib>)>,
    xdp_mode: String,
    /// Primary metric per (variant, size, repetition), for the ratios in the notes.
    samples: Vec<(String, usize, u32, f64)>,
    /// Every (variant, size) measured so far, failed ones included.
    attempts: Vec<(String, usize)>,
}

fn router_name(routes: &[usize], n: usize) -> String {
    if routes.first() == Some(&n) {
        "xdpos-router".to_string()
    } else {
        format!("xdpos-router[routes={n}]")
    }
}

fn router_xdp_name(routes: &[usize], n: usize) -> String {
    if routes.first() == Some(&n) {
        "xdpos-router-xdp".to_string()
    } else {
        format!("xdpos-router-xdp[routes={n}]")
    }
}

/// Warns when the XDP fast path punted more than 1 % of a window's frames: the generator
/// offers only frames the program can forward, so punts mean the window measured something
/// else (the library OS's slow path, or frames the generator did not mean to send).
fn warn_punts(before: &FastPathCounters, after: &FastPathCounters) {
    let d = |o: FpOutcome| after.get(o).packets.saturating_sub(before.get(o).packets);
    let punted = after.punted().saturating_sub(before.punted());
    let all = d(FpOutcome::Forwarded) + punted;
    if punted * 100 > all {
        let why: Vec<String> = FpOutcome::ALL
            .iter()
            .filter(|o| o.is_punt() && d(**o) > 0)
            .map(|o| format!("{} {}", o.name(), d(*o)))
            .collect();
        tracing::warn!(
            "the XDP fast path punted {punted} of {all} frames in the window ({})",
            why.join(", ")
        );
    }
}

impl FwdBench {
    /// Builds the rig, the variant list and the tables.
    pub fn new(args: &FwdArgs) -> anyhow::Result<FwdBench> {
        anyhow::ensure!(!args.routes.is_empty(), "--routes: give at least one count");
        anyhow::ensure!(args.routes.iter().all(|&n| n >= 1), "--routes: counts start at 1");
        anyhow::ensure!((1..=nic::MAX_BURST).contains(&args.batch), "--batch 1..=256");
        if let Some(sizes) = &args.common.sizes {
            for &s in sizes {
                anyhow::ensure!(
                    (nic::trafgen::MIN_FRAME..=nic::trafgen::MAX_FRAME).contains(&s),
                    "size {s}: frames are 60..=1514 bytes (no FCS)"
                );
            }
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        anyhow::ensure!(cpus > DUT_CPU, "bench fwd pins to CPUs 0 and 1; this machine has {cpus}");
        let chain = Chain::new("fwd", &ChainOpts::default()).context("build the chain rig")?;
        let mut variants = Vec::new();
        let kernels: Vec<KernelPlacement> = if args.explore {
            vec![KernelPlacement::Softirq, KernelPlacement::RpsCpu1, KernelPlacement::NapiCpu1]
        } else {
            vec![KernelPlacement::BEST]
        };
        for k in kernels {
            let name =
                if args.explore { format!("kernel[{}]", k.label()) } else { "kernel".to_string() };
            variants.push((Variant::new(name, None), Kind::Kernel(k)));
        }
        variants.push((Variant::new("l2fwd", None), Kind::L2fwd));
        for (i, &n) in args.routes.iter().enumerate() {
            let base = if i == 0 {
                "l2fwd".to_string()
            } else {
                router_name(&args.routes, args.routes[0])
            };
            variants
                .push((Variant::new(router_name(&args.routes, n), Some(&base)), Kind::Router(n)));
        }
        variants.push((Variant::new("xdp-redirect", None), Kind::XdpRedirect));
        for (i, &n) in args.routes.iter().enumerate() {
            let base = if i == 0 {
                "xdp-redirect".to_string()
            } else {
                router_xdp_name(&args.routes, args.routes[0])
            };
            variants.push((
                Variant::new(router_xdp_name(&args.routes, n), Some(&base)),
                Kind::RouterXdp(n),
            ));
        }
        let mut tp = Variant::new("testpmd", None);
        if testpmd::installed().is_none() {
            tp.unavailable =
                Some(format!("{} not installed (Debian package dpdk)", testpmd::BINARY));
        }
        let tp_ok = tp.unavailable.is_none();
        variants.push((tp, Kind::Testpmd));
        let xc_base = tp_ok.then_some("testpmd");
        variants.push((Variant::new("xdpos-xconnect", xc_base), Kind::Xconnect));
        if args.backend == crate::dpdk::Backend::Dpdk {
            let tp_base = tp_ok.then_some("testpmd");
            let first = args.routes[0];
            variants.retain(|(_, k)| *k == Kind::Testpmd);
            variants.push((
                Variant::new(router_name(&args.routes, first), tp_base),
                Kind::Router(first),
            ));
            let mut v = Variant::new("xdpos-router-dpdk", tp_base);
            v.unavailable = super::dpdk::unavailable();
            variants.push((v, Kind::RouterDpdk));
        }
        let mut bench = FwdBench {
            args: args.clone(),
            chain,
            variants,
            fibs: Vec::new(),
            xdp_mode: "native-copy".into(),
            samples: Vec::new(),
            attempts: Vec::new(),
        };
        for &n in &args.routes {
            let t = Instant::now();
            let fib = bench.build_fib(n);
            tracing::info!(routes = n, ms = t.elapsed().as_millis() as u64, "router table built");
            bench.fibs.push((n, fib));
        }
        Ok(bench)
    }

    fn ifaces(&self) -> Vec<IfaceSpec> {
        let c = &self.chain;
        vec![
            IfaceSpec {
                name: c.fa.ifname.clone(),
                addrs: vec![Ipv4Cidr::new(c.fa.ip, 24)],
                mtu: 1500,
            },
            IfaceSpec {
                name: c.fb.ifname.clone(),
                addrs: vec![Ipv4Cidr::new(c.fb.ip, 24)],
                mtu: 1500,
            },
        ]
    }

    /// The default route via B and `n - 1` random prefixes via B.
    fn build_fib(&self, n: usize) -> Arc<Fib> {
        let via_b = NextHop::Forward { iface: 1, via: Some(self.chain.b.ip) };
        let default = RouteSpec {
            prefix: Ipv4Cidr::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            next_hop: via_b,
        };
        let mut b = fib_builder(&self.ifaces(), &[default]);
        for p in libos::fib::internet_like(n.saturating_sub(1), 42) {
            b.insert(p, via_b);
        }
        Arc::new(b.build())
    }

    /// The generator's template: A → F's MAC, to B's address (the destinations vary from it).
    fn frame(&self, size: usize, back_to_a: bool) -> anyhow::Result<Vec<u8>> {
        let c = &self.chain;
        let spec = UdpSpec {
            src_mac: c.a.mac,
            dst_mac: c.fa.mac,
            src_ip: c.a.ip,
            dst_ip: if back_to_a { c.a.ip } else { c.b.ip },
            src_port: 1024,
            dst_port: 9,
        };
        Ok(udp_frame(&spec, size)?)
    }
}

impl Benchmark for FwdBench {
    fn name(&self) -> &'static str {
        "fwd"
    }

    fn default_sizes(&self) -> Vec<usize> {
        vec![64, 512, 1500]
    }

    fn variants(&self) -> Vec<Variant> {
        self.variants.iter().map(|(v, _)| v.clone()).collect()
    }

    fn primary(&self) -> Primary {
        Primary { metric: "pps", label: "Mpps", scale: 1e6 }
    }

    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        Some(vec!["pps", "goodput_bps", "loss"])
    }

    fn machine(&self) -> Machine {
        Machine::here("veth", &self.xdp_mode)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            format!(
                "generator in A (CPU {GEN_CPU}): {} flows x {} destinations; DUT on CPU {DUT_CPU}; \
                 F's receive NAPI softirq on CPU {GEN_CPU}, the sink's NAPI threaded on CPU {GEN_CPU}; \
                 kernel: {}",
                self.args.flows,
                self.args.dsts,
                if self.args.explore { "every placement" } else { "RPS to CPU 1" }
            ),
            "counted by the sink on B (l2fwd: on A); loss = 1 - delivered/offered".into(),
        ];
        let first = router_name(&self.args.routes, self.args.routes[0]);
        let last = router_name(&self.args.routes, *self.args.routes.last().unwrap_or(&1));
        let mut pairs =
            vec![(first.clone(), "l2fwd".to_string()), (first.clone(), "testpmd".into())];
        pairs.push(("xdpos-router-dpdk".to_string(), "testpmd".to_string()));
        pairs.push(("xdpos-router-dpdk".to_string(), first.clone()));
        if last != first {
            pairs.push((last, first.clone()));
        }
        let kernel = if self.args.explore {
            format!("kernel[{}]", KernelPlacement::BEST.label())
        } else {
            "kernel".into()
        };
        pairs.push((first, kernel.clone()));
        let first_xdp = router_xdp_name(&self.args.routes, self.args.routes[0]);
        let last_xdp = router_xdp_name(&self.args.routes, *self.args.routes.last().unwrap_or(&1));
        pairs.push((first_xdp.clone(), kernel));
        pairs.push((first_xdp.clone(), "xdp-redirect".into()));
        if last_xdp != first_xdp {
            pairs.push((last_xdp, first_xdp));
        }
        let sizes: std::collections::BTreeSet<usize> = self.samples.iter().map(|x| x.1).collect();
        for size in sizes {
            let mut parts = Vec::new();
            for (a, b) in &pairs {
                let get = |v: &str, rep: u32| {
                    self.samples
                        .iter()
                        .find(|(n, s, r, _)| n == v && *s == size && *r == rep)
                        .map(|x| x.3)
                };
                let reps: std::collections::BTreeSet<u32> =
                    self.samples.iter().map(|x| x.2).collect();
                let ratios: Vec<f64> = reps
                    .iter()
                    .filter_map(|&rep| {
                        let (x, y) = (get(a, rep)?, get(b, rep)?);
                        (y > 0.0).then(|| x / y)
                    })
                    .collect();
                if let Some(m) = harness::Summary::of(&ratios) {
                    parts.push(format!("{a}/{b} {:.2}x", m.median));
                }
            }
            if !parts.is_empty() {
                notes.push(format!(
                    "{size} B, median of per-repetition ratios: {}",
                    parts.join(", ")
                ));
            }
        }
        notes
    }

    fn measure(&mut self, v: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let kind = self
            .variants
            .iter()
            .find(|(x, _)| x.name == v.name)
            .map(|(_, k)| *k)
            .ok_or_else(|| anyhow!("unknown variant {}", v.name))?;
        // The repetition: how many attempts of this (variant, size) came before.
        let rep = self.attempts.iter().filter(|(n, s)| *n == v.name && *s == size).count() as u32;
        self.attempts.push((v.name.clone(), size));
        let mut attempt = 0;
        let m = loop {
            let m = self.point(kind, size, plan)?;
            let foreign = m.iter().find(|(k, _)| *k == "foreign%").map_or(0.0, |x| x.1);
            match self.args.max_foreign {
                Some(max) if foreign > max && !plan.stop.requested() => {
                    attempt += 1;
                    anyhow::ensure!(
                        attempt <= self.args.retries,
                        "still disturbed after {attempt} attempts ({foreign:.0}% of a CPU to \
                         other processes > {max}%): left out"
                    );
                    tracing::warn!(
                        "{} at {size} B disturbed ({foreign:.0}% > {max}%): measuring again",
                        v.name
                    );
                }
                _ => break m,
            }
        };
        if let Some(&(_, pps)) = m.iter().find(|(k, _)| *k == "pps") {
            self.samples.push((v.name.clone(), size, rep, pps));
        }
        Ok(m)
    }
}

/// Raises a flag when dropped: every exit from a measurement stops its threads.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Stops a generator when dropped.
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

/// The system under test of one point, torn down on drop or by [`Dut::stop`].
enum Dut<'a> {
    Kernel(KernelDut<'a>),
    Service(Option<ForwardService>),
    Testpmd(Testpmd),
    /// The bare XDP redirect.
    Redirect(XdpRedirect),
    /// The router on the DPDK backend, a child process.
    Dpdk(super::dpdk::DpdkDut),
    /// The l2fwd thread reports through `Published`; the thread is joined by the point.
    Loop,
}

/// F's kernel as a router for one point: addresses, forwarding, B's MAC, a pass-all XDP
/// program on F's veth toward A (so the generator's redirected frames are received, as for
/// every other variant), RPS or threaded NAPI; all undone on drop.
struct KernelDut<'a> {
    chain: &'a Chain,
    _pass: Option<XdpProgram>,
}

impl<'a> KernelDut<'a> {
    fn start(chain: &'a Chain, placement: KernelPlacement) -> anyhow::Result<KernelDut<'a>> {
        let (fa, fb, b) = (&chain.fa, &chain.fb, &chain.b);
        let mut dut = KernelDut { chain, _pass: None };
        chain.ns_f.sh(&format!(
            "ip addr add {}/24 dev {fa} && ip addr add {}/24 dev {fb} && \
             sysctl -qw net.ipv4.ip_forward=1 && \
             ip route add default via {bip} && \
             ip neigh replace {bip} lladdr {bmac} dev {fb} nud permanent && \
             ip neigh replace {aip} lladdr {amac} dev {fa} nud permanent",
            fa.ip,
            fb.ip,
            fa = fa.ifname,
            fb = fb.ifname,
            bip = b.ip,
            bmac = mac_str(&b.mac),
            aip = chain.a.ip,
            amac = mac_str(&chain.a.mac),
        ))?;
        let pass = chain
            .ns_f
            .run_in(|| XdpProgram::attach(&fa.ifname, XdpMode::Native))?
            .context("attach a pass-all program to F's veth toward A")?;
        dut._pass = Some(pass);
        let rps = if placement == KernelPlacement::RpsCpu1 { 1 << DUT_CPU } else { 0 };
        chain
            .ns_f
            .sh(&format!("echo {rps:x} > /sys/class/net/{}/queues/rx-0/rps_cpus", fa.ifname))?;
        Ok(dut)
    }
}

impl Drop for KernelDut<'_> {
    fn drop(&mut self) {
        let (fa, fb) = (&self.chain.fa.ifname, &self.chain.fb.ifname);
        let _ = self.chain.ns_f.sh(&format!(
            "echo 0 > /sys/class/net/{fa}/queues/rx-0/rps_cpus; echo 0 > /sys/class/net/{fa}/threaded; \
             sysctl -qw net.ipv4.ip_forward=0; ip neigh flush dev {fb}; ip neigh flush dev {fa}; \
             ip addr flush dev {fa}; ip addr flush dev {fb}"
        ));
    }
}

impl Dut<'_> {
    /// The XDP fast path's counters (`xdpos-router-xdp` only).
    fn fast_path(&self) -> Option<FastPathCounters> {
        match self {
            Dut::Service(Some(s)) => s.fast_path_counters().ok().flatten(),
            _ => None,
        }
    }

    /// Frames F says it transmitted toward the sink so far.
    fn sent(&mut self, chain: &Chain, published: &Published) -> anyhow::Result<u64> {
        Ok(match self {
            Dut::Kernel(k) => k
                .chain
                .ns_f
                .sh(&format!("cat /sys/class/net/{}/statistics/tx_packets", chain.fb.ifname))?
                .trim()
                .parse()
                .unwrap_or(0),
            Dut::Service(Some(s)) => {
                let xdp = s.fast_path_counters()?.map_or(0, |c| c.forwarded());
                s.counters().iter().map(|c| c.tx.load(Ordering::Relaxed)).sum::<u64>() + xdp
            }
            Dut::Redirect(r) => r.redirected()?,
            Dut::Service(None) => 0,
            Dut::Testpmd(t) => t.port_stats(1, Duration::from_secs(5))?.tx_packets,
            Dut::Dpdk(_) => chain
                .ns_f
                .sh(&format!("cat /sys/class/net/{}/statistics/tx_packets", chain.fb.ifname))?
                .trim()
                .parse()
                .unwrap_or(0),
            Dut::Loop => published.sent(),
        })
    }

    /// Stops the DUT and checks what it reports about itself (frame accounting).
    fn stop(&mut self) -> anyhow::Result<Option<String>> {
        match self {
            Dut::Service(s) => {
                let Some(s) = s.take() else { return Ok(None) };
                let mode = s.xdp_mode().to_string();
                for r in s.join()? {
                    if let Err(e) = &r.frames {
                        anyhow::bail!("xdpos frame accounting broken: {e}");
                    }
                }
                Ok(Some(mode))
            }
            Dut::Testpmd(t) => t.stop().map(|()| None),
            Dut::Dpdk(d) => d.stop().map(|()| Some("dpdk-af_xdp".to_string())),
            Dut::Redirect(r) => Ok(Some(r.mode().as_str().to_string())),
            Dut::Kernel(_) | Dut::Loop => Ok(None),
        }
    }
}

impl FwdBench {
    /// `xdpos forward` on the DPDK backend with the router of `xdpos-router`: DPDK's af_xdp
    /// PMD on both veths (as testpmd), the first route count, both hosts' MACs static, the
    /// worker on the DUT's CPU.
    fn dpdk_router_args(&self) -> Vec<String> {
        let c = &self.chain;
        let n = self.args.routes[0];
        let mut a: Vec<String> = ["forward", "--backend", "dpdk", "--dpdk-pmd", "af_xdp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for i in self.ifaces() {
            let addrs: Vec<String> = i.addrs.iter().map(|x| x.to_string()).collect();
            a.extend(["--iface".into(), format!("{}={}", i.name, addrs.join("+"))]);
        }
        a.extend(["--route".into(), format!("0.0.0.0/0={}", c.b.ip)]);
        if n > 1 {
            a.extend(["--random-routes".into(), (n - 1).to_string()]);
            a.extend(["--random-via".into(), c.b.ip.to_string()]);
        }
        a.extend(["--neighbor".into(), format!("{}={}", c.b.ip, mac_str(&c.b.mac))]);
        a.extend(["--neighbor".into(), format!("{}={}", c.a.ip, mac_str(&c.a.mac))]);
        a.extend(["--cpus".into(), DUT_CPU.to_string(), "--burst".into()]);
        a.push(self.args.batch.to_string());
        a.extend(["--dpdk-frames".into(), "8192".into()]);
        a
    }

    fn service_cfg(&self, role: Role, fast_path: FastPathMode) -> ForwardConfig {
        ForwardConfig {
            ifaces: self.ifaces(),
            role,
            queues: 1,
            cpus: vec![DUT_CPU],
            mode: XdpMode::Native,
            socket: XskConfig { burst: self.args.batch, ..XskConfig::default() },
            worker: ForwardWorkerConfig {
                burst: self.args.batch,
                ..ForwardWorkerConfig::default()
            },
            fast_path,
        }
    }

    /// One measurement of `kind` at `size`.
    fn point(&mut self, kind: Kind, size: usize, plan: &Plan) -> anyhow::Result<Metrics> {
        let frame = self.frame(size, kind.to_a())?;
        let dsts = if kind.to_a() || self.args.dsts <= 1 {
            Destinations::default()
        } else {
            Destinations::spread(self.args.dsts)
        };
        let deadline = Instant::now() + plan.warmup + plan.window + SLACK;
        let point_stop = AtomicBool::new(false);
        let published = Published::default();
        let chain = &self.chain;
        let (sink_ns, sink_dev) = if kind.to_a() {
            (&chain.ns_a, &chain.a.ifname)
        } else {
            (&chain.ns_b, &chain.b.ifname)
        };
        let sink = sink_ns.run_in(|| Sink::attach(sink_dev))?.context("attach the sink")?;
        let mut dut = match kind {
            Kind::Kernel(p) => Dut::Kernel(KernelDut::start(chain, p)?),
            Kind::Router(n) | Kind::RouterXdp(n) => {
                let fib = self.fibs.iter().find(|(k, _)| *k == n).map(|(_, f)| f.clone());
                let role = Role::Router {
                    routes: Vec::new(),
                    neighbors: vec![(1, chain.b.ip, chain.b.mac), (0, chain.a.ip, chain.a.mac)],
                    fib,
                    tcp_listen: None,
                };
                let fast_path = if matches!(kind, Kind::RouterXdp(_)) {
                    FastPathMode::Xdp
                } else {
                    FastPathMode::Userspace
                };
                let cfg = self.service_cfg(role, fast_path);
                Dut::Service(Some(chain.ns_f.run_in(|| ForwardService::start(&cfg))??))
            }
            Kind::XdpRedirect => Dut::Redirect(
                chain
                    .ns_f
                    .run_in(|| {
                        XdpRedirect::attach(
                            &chain.fa.ifname,
                            &chain.fb.ifname,
                            chain.b.mac,
                            chain.fb.mac,
                            XdpMode::Native,
                        )
                    })?
                    .context("attach the bare redirect")?,
            ),
            Kind::Xconnect => {
                let cfg = self
                    .service_cfg(Role::Xconnect { pairs: vec![(0, 1)] }, FastPathMode::Userspace);
                Dut::Service(Some(chain.ns_f.run_in(|| ForwardService::start(&cfg))??))
            }
            Kind::Testpmd => Dut::Testpmd(Testpmd::start_ports(
                &chain.ns_f,
                &[&chain.fa.ifname, &chain.fb.ifname],
                testpmd::Mode::Io,
                size,
            )?),
            Kind::L2fwd => Dut::Loop,
            Kind::RouterDpdk => {
                let args = self.dpdk_router_args();
                Dut::Dpdk(super::dpdk::DpdkDut::start(&chain.ns_f, &args)?)
            }
        };
        let args = &self.args;
        let outcome = std::thread::scope(|s| -> anyhow::Result<(Metrics, Option<String>)> {
            let _stop_threads = RaiseOnDrop(&point_stop);
            let ctl = LoopCtl { stop: &point_stop, deadline, out: &published };
            let l2 = if kind == Kind::L2fwd {
                let (ready_tx, ready_rx) = mpsc::channel();
                let h = s.spawn(move || l2fwd_side(chain, args.batch, ctl, ready_tx));
                match ready_rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(())) => Some(h),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(anyhow!("l2fwd side not ready within 10 s")),
                }
            } else {
                None
            };
            // Placement, once every XDP program of the point is attached.
            place::place_napi(&chain.ns_f, &chain.fa.ifname, Napi::Softirq)?;
            if kind == Kind::Kernel(KernelPlacement::NapiCpu1) || kind.in_napi() {
                let pids = place::place_napi(&chain.ns_f, &chain.fa.ifname, Napi::Thread(DUT_CPU))?;
                if kind.in_napi() {
                    // The XDP variants forward in this kthread: at SCHED_FIFO, as the softirq
                    // the kernel's RPS placement forwards in, so that other processes on the
                    // DUT's CPU do not take its time.
                    for pid in pids {
                        let ok = std::process::Command::new("chrt")
                            .args(["-f", "-p", "50", &pid.to_string()])
                            .status()
                            .is_ok_and(|s| s.success());
                        anyhow::ensure!(ok, "chrt -f -p 50 {pid} (F's receive NAPI thread)");
                    }
                }
            }
            place::place_napi(sink_ns, sink_dev, Napi::Thread(GEN_CPU))?;
            let (handle_tx, handle_rx) = mpsc::channel();
            let (frame, stop) = (&frame, &point_stop);
            let gen = s.spawn(move || {
                generator(chain, frame, args.flows, dsts, stop, deadline, handle_tx)
            });
            let handle = match handle_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(h) => h,
                Err(_) => {
                    let e = gen.join().map_err(|_| anyhow!("generator thread panicked"))?.err();
                    return Err(e.unwrap_or_else(|| anyhow!("generator not ready in 10 s")));
                }
            };
            let stop_gen = StopGen(Some(&handle));
            let full_warmup = plan.stop.sleep(plan.warmup);
            let cpu0 = CpuTimes::now();
            let foreign0 = Foreign::now();
            let g0 = handle.sent()?.0;
            let (c0, t0) = (sink.counts()?.0, Instant::now());
            let s0 = dut.sent(chain, &published)?;
            let fp0 = dut.fast_path();
            let full_window = full_warmup && plan.stop.sleep(plan.window);
            let g1 = handle.sent()?.0;
            let (c1, t1) = (sink.counts()?.0, Instant::now());
            let s1 = dut.sent(chain, &published)?;
            if let (Some(a), Some(b)) = (fp0, dut.fast_path()) {
                warn_punts(&a, &b);
            }
            let cpu = cpu0.shares(&CpuTimes::now());
            let secs = t1.duration_since(t0).as_secs_f64().max(1e-6);
            let foreign = foreign0.since(secs);
            drop(stop_gen);
            point_stop.store(true, Ordering::Relaxed);
            gen.join().map_err(|_| anyhow!("generator thread panicked"))??;
            if let Some(h) = l2 {
                h.join().map_err(|_| anyhow!("l2fwd thread panicked"))??;
            }
            let mode = dut.stop()?;
            anyhow::ensure!(full_window || plan.stop.requested(), "window cut short");
            let pps = c1.saturating_sub(c0) as f64 / secs;
            let offered = g1.saturating_sub(g0) as f64 / secs;
            let loss = if offered > 0.0 { (1.0 - pps / offered).max(0.0) } else { 0.0 };
            let mut m: Metrics = vec![
                ("pps", pps),
                ("goodput_bps", pps * size as f64 * 8.0),
                ("loss", loss),
                ("offered_pps", offered),
                ("dut_tx_pps", s1.saturating_sub(s0) as f64 / secs),
            ];
            for (i, c) in cpu.iter().enumerate().take(2) {
                m.push((["cpu0_busy%", "cpu1_busy%"][i], c.busy));
                m.push((["cpu0_si%", "cpu1_si%"][i], c.softirq));
            }
            m.push(("foreign%", foreign.0));
            if foreign.0 > 10.0 {
                tracing::warn!(
                    "{:.0}% of a CPU went to other processes during the window (busiest: {})",
                    foreign.0,
                    foreign.1
                );
            }
            Ok((m, mode))
        });
        drop(dut);
        drop(sink);
        let (m, mode) = outcome?;
        if let Some(mode) = mode {
            self.xdp_mode = format!("{mode}-copy");
        }
        Ok(m)
    }
}

/// The l2fwd thread: in namespace F on [`DUT_CPU`], the raw loop on F's veth toward A (every
/// frame to the socket, MACs swapped, back out).
fn l2fwd_side(
    chain: &Chain,
    batch: usize,
    ctl: LoopCtl<'_>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let setup = || -> anyhow::Result<(XdpProgram, XskPort)> {
        chain.ns_f.enter()?;
        place::pin(DUT_CPU)?;
        let ifname = &chain.fa.ifname;
        let prog = XdpProgram::attach(ifname, XdpMode::Native)?;
        prog.steer_all()?;
        let cfg = XskConfig { burst: batch, bind: BindMode::Auto, ..XskConfig::new(ifname, 0) };
        let port = XskPort::open(&cfg, &prog)?;
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
    loops::l2fwd(&mut port, ctl);
    prog.steer_none()?;
    drop(port);
    drop(prog);
    Ok(())
}

/// The generator thread: in namespace A on [`GEN_CPU`] (see `bench raw`).
fn generator(
    chain: &Chain,
    frame: &[u8],
    flows: u16,
    dsts: Destinations,
    stop: &AtomicBool,
    end: Instant,
    handle_tx: mpsc::Sender<GenHandle>,
) -> anyhow::Result<u64> {
    chain.ns_a.enter()?;
    place::pin(GEN_CPU)?;
    let mut gen = LiveGen::with_destinations(&chain.a.ifname, frame, flows, 1024, dsts)?;
    handle_tx.send(gen.handle()?).map_err(|_| anyhow!("measurement gave up on the generator"))?;
    let sent = loops::paced(&mut gen, end, || stop.load(Ordering::Relaxed))?;
    Ok(sent)
}

/// `xdpos bench fwd`.
pub fn run(args: &FwdArgs, stop: &Stop) -> anyhow::Result<()> {
    let mut bench = FwdBench::new(args)?;
    let report = harness::run(&mut bench, &args.common, stop)?;
    drop(bench); // the rig goes before the report is printed
    harness::finish(&report, &args.common)
}
