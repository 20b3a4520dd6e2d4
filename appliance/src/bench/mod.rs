//! # `xdpos bench`: the side-by-side benchmark harness
//!
//! What it is: the shared machinery behind every `xdpos bench <name>` (see BENCHMARKS.md) and
//! the benchmarks themselves. A benchmark implements [`harness::Benchmark`]: it names its
//! variants (each with the baseline its ratio is taken against) and measures one
//! (variant, size) point when asked. The harness does the rest, the same way for every
//! benchmark:
//! - alternation: for each repetition, for each size, every variant in turn, so drift on these
//!   shared machines hits all variants alike;
//! - medians with min and max per (size, variant), a progress bar on stderr, a table on stdout
//!   with the ratio to the baseline, the JSON of BENCHMARKS.md (`--json`), a PNG (`--plot`);
//! - a stop flag set by SIGINT/SIGTERM ([`Stop`]): every load loop checks it and has its own
//!   deadline, the rig's namespaces are removed by their `Drop`, XDP programs by their links'.
//!   A second Ctrl-C exits at once (the next run sweeps what was left, see
//!   [`crate::rig::sweep_stale`]).
//!
//! What it owns: the threads and child processes of a measurement, for its duration only.
//!
//! Benchmarks: [`raw`] (the AF_XDP ceiling: rxdrop, txonly, l2fwd, and DPDK testpmd), [`udp`],
//! [`tcp`] (TCP_STREAM), [`rr`] (UDP_RR and TCP_RR), [`fwd`] (forwarding A → F → B) and
//! [`ready`] (start-up time). Adding one is a new module implementing
//! [`harness::Benchmark`] and a [`BenchCmd`] arm; metric names are those of BENCHMARKS.md
//! (`pps`, `goodput_bps`, `loss`, `tps`, `p50_us`, …).

pub mod dpdk;
pub mod fwd;
pub mod harness;
pub mod loops;
pub mod place;
pub mod plot;
pub mod raw;
pub mod ready;
pub mod report;
pub mod rr;
pub mod tcp;
pub mod testpmd;
pub mod udp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// AF_XDP ceiling with the nic layer and no stack: rxdrop, txonly, l2fwd (and DPDK testpmd
    /// rxonly/txonly/io when installed), on the `pair` rig.
    Raw(raw::RawArgs),
    /// netperf UDP_STREAM: kernel sockets (sendmmsg/recvmmsg) against the xdpos stack on
    /// AF_XDP, payloads of 18 to 1472 bytes, on the `pair` rig.
    Udp(udp::UdpArgs),
    /// RFC 2544-style forwarding A → F → B: the kernel, the xdpos router (one route and a
    /// full table) and cross-connect, DPDK testpmd io, and raw l2fwd, on the `chain` rig.
    Fwd(fwd::FwdArgs),
    /// Start-up time of the router: exec → first forwarded packet, exec → first TCP
    /// connection accepted on its own address.
    Ready(ready::ReadyArgs),
    /// netperf TCP_STREAM: the kernel's TCP (with and without offloads) against the xdpos
    /// stack at both ends and a kernel sender into xdpos, writes of 64 B to 64 KiB.
    Tcp(tcp::TcpArgs),
    /// netperf UDP_RR and TCP_RR: transactions per second and round-trip percentiles of the
    /// kernel, an xdpos server with a kernel client, and xdpos at both ends.
    Rr(rr::RrArgs),
    /// Draws the PNG of `--plot` again from a report's JSON.
    Plot(PlotArgs),
}

/// `--kernel-cc`: the congestion control of the kernel's TCP in a bench's namespaces.
#[derive(Debug, Clone, clap::Args)]
pub struct KernelCc {
    /// Congestion control of the kernel's TCP in both namespaces (`net.ipv4.tcp_congestion_control`,
    /// one of `tcp_available_congestion_control`). CUBIC by default: Linux's own default and the
    /// xdpos stack's, so both sides of every ratio run the same algorithm whatever the host's
    /// sysctl says (a host default of BBR paces the sender with a timer per burst on veth and
    /// lowers the kernel's own goodput here, docs/tcp.md).
    #[arg(long = "kernel-cc", default_value = "cubic", value_parser = cc_name)]
    pub name: String,
}

/// A congestion control name is a plain word (it goes into a shell command line).
fn cc_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(s.to_string())
    } else {
        Err("not a congestion control name".into())
    }
}

impl KernelCc {
    /// Sets it in both namespaces of `pair` (new namespaces inherit the host's default).
    pub fn apply(&self, pair: &crate::rig::Pair) -> anyhow::Result<()> {
        let cc = &self.name;
        let available = || {
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        for ns in [&pair.ns_a, &pair.ns_b] {
            ns.sh(&format!("sysctl -qw net.ipv4.tcp_congestion_control={cc}")).with_context(
                || {
                    format!(
                        "--kernel-cc {cc}: set it in {} (available: {})",
                        ns.name(),
                        available()
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Checks that the kernel's established connection to port `dport` in `ns`, still up, runs
    /// it (`ss` names the algorithm of each socket).
    pub fn verify(&self, ns: &crate::rig::Netns, dport: u16) -> anyhow::Result<()> {
        let cc = &self.name;
        let ss = ns
            .sh(&format!("ss -tin state established '( dport = :{dport} )'"))
            .context("read the kernel connection's congestion control")?;
        anyhow::ensure!(
            ss.split_whitespace().any(|w| w == cc),
            "the kernel's connection does not run {cc}: `ss -ti` says {ss}"
        );
        Ok(())
    }
}

/// `xdpos bench plot` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// The JSON a benchmark wrote with `--json`.
    pub json: std::path::PathBuf,
    /// The PNG to write.
    pub png: std::path::PathBuf,
    /// The metric to draw.
    #[arg(long, default_value = "pps")]
    pub metric: String,
    /// Divisor for display (`1e6` for Mpps).
    #[arg(long, default_value_t = 1e6)]
    pub scale: f64,
    /// Axis label (the metric after scaling).
    #[arg(long, default_value = "Mpps")]
    pub label: String,
}

/// `xdpos bench plot`: the PNG from a JSON report.
fn replot(a: &PlotArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&a.json).with_context(|| format!("read {}", a.json.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", a.json.display()))?;
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let primary =
        harness::Primary { metric: leak(&a.metric), label: leak(&a.label), scale: a.scale };
    let report = report::from_json(&v, primary)?;
    plot::draw(&report, &a.png)?;
    eprintln!("wrote {}", a.png.display());
    Ok(())
}

/// Flags every benchmark takes (BENCHMARKS.md, "Common flags").
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Sizes to measure, comma-separated (bytes; what a size means is the benchmark's).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Seconds of measurement per point (after a warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Repetitions of every point; the table shows medians with min and max.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Smoke run: 1 second per point, 1 repetition.
    #[arg(long)]
    pub quick: bool,
    /// Only these variants (comma-separated; default: all that are available).
    #[arg(long, value_delimiter = ',')]
    pub variants: Option<Vec<String>>,
    /// Write the results as JSON (schema in BENCHMARKS.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Draw the main metric against size, one line per variant, as a PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<std::path::PathBuf>,
}

impl CommonArgs {
    /// Measurement window per point.
    pub fn window(&self) -> Duration {
        if self.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs_f64(self.seconds.clamp(0.1, 3600.0))
        }
    }

    /// Repetitions per point.
    pub fn repeats(&self) -> u32 {
        if self.quick {
            1
        } else {
            self.repeat.max(1)
        }
    }
}

/// A stop request (Ctrl-C, SIGTERM), shared by every thread of a run. Cheap to clone and to
/// poll from a load loop (one relaxed load).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag nobody has raised.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Raises the flag on SIGINT and SIGTERM; a second signal while it is raised exits the
    /// process at once (status 130).
    pub fn on_signals() -> anyhow::Result<Stop> {
        let stop = Stop::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the conditional exit is checked before the flag is set.
            signal_hook::flag::register_conditional_shutdown(sig, 130, stop.0.clone())
                .context("install the second-signal exit")?;
            signal_hook::flag::register(sig, stop.0.clone()).context("install the stop flag")?;
        }
        Ok(stop)
    }

    /// Whether a stop was requested.
    #[inline]
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Requests a stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// The flag itself, for loops that take an `&AtomicBool`.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }

    /// Sleeps for `d` or until a stop is requested, whichever comes first; returns whether the
    /// whole duration passed.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.requested() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

/// Runs one benchmark.
pub fn run(cmd: &BenchCmd) -> anyhow::Result<()> {
    if let BenchCmd::Plot(a) = cmd {
        return replot(a);
    }
    let stop = Stop::on_signals()?;
    let removed = crate::rig::sweep_stale();
    if removed > 0 {
        tracing::info!(removed, "removed namespaces left by an earlier run");
    }
    match cmd {
        BenchCmd::Raw(args) => raw::run(args, &stop),
        BenchCmd::Udp(args) => udp::run(args, &stop),
        BenchCmd::Tcp(args) => tcp::run(args, &stop),
        BenchCmd::Rr(args) => rr::run(args, &stop),
        BenchCmd::Fwd(args) => fwd::run(args, &stop),
        BenchCmd::Ready(args) => ready::run(args, &stop),
        BenchCmd::Plot(_) => unreachable!("handled above"),
    }
}
