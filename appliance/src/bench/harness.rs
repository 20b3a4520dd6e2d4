//! # The measurement loop shared by every benchmark
//!
//! What it is: the [`Benchmark`] trait a benchmark implements, and [`run`], which measures its
//! variants side by side and alternated (for each repetition, for each size, each variant in
//! turn), summarises the samples as median, min and max per metric ([`Row`]), and hands the
//! [`Report`] to the table, JSON and plot writers in [`super::report`] and [`super::plot`].
//!
//! What it owns: the progress bar (stderr) and the samples.
//!
//! Invariants: a failed measurement is reported (on stderr) and leaves its sample out, so a row's
//! `repeats` is the number of samples it really has; a stop request ends the run after the
//! current point, and the rows measured so far are still reported.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{CommonArgs, Stop};

/// The values one measurement produced, by metric name (BENCHMARKS.md names: `pps`,
/// `goodput_bps`, `loss`, `tps`, `p50_us`, …), in the order the benchmark lists them.
pub type Metrics = Vec<(&'static str, f64)>;

/// One variant of a benchmark.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name in the table and the JSON (`rxdrop`, `kernel`, `testpmd-io`, …).
    pub name: String,
    /// The variant this one's ratio is taken against, if any.
    pub baseline: Option<String>,
    /// Why it cannot run here (a missing tool); such a variant is listed and skipped.
    pub unavailable: Option<String>,
}

impl Variant {
    /// A variant with a baseline (or none).
    pub fn new(name: impl Into<String>, baseline: Option<&str>) -> Variant {
        Variant { name: name.into(), baseline: baseline.map(Into::into), unavailable: None }
    }
}

/// The metric drawn and compared: its JSON name and how to print it.
#[derive(Debug, Clone, Copy)]
pub struct Primary {
    /// Metric name (`pps`, `goodput_bps`, `tps`).
    pub metric: &'static str,
    /// Axis and column label with unit after scaling (`Mpps`).
    pub label: &'static str,
    /// Divisor applied for display (`1e6` for Mpps).
    pub scale: f64,
}

/// Static facts written into the JSON `machine` object by the benchmark.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Machine {
    /// CPUs the process may run on.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Device kind (`veth`).
    pub nic: String,
    /// XDP attach and bind mode (`native-copy`).
    pub xdp_mode: String,
}

impl Machine {
    /// This machine, with the benchmark's device and XDP mode.
    pub fn here(nic: &str, xdp_mode: &str) -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            nic: nic.into(),
            xdp_mode: xdp_mode.into(),
        }
    }
}

/// How one point is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Load before counting starts (rings fill, NAPI threads wake, caches warm).
    pub warmup: Duration,
    /// Counting window.
    pub window: Duration,
    /// The run's stop flag.
    pub stop: Stop,
}

/// A benchmark: variants and how to measure one of them at one size.
pub trait Benchmark {
    /// Its name (`raw`, `udp`, …).
    fn name(&self) -> &'static str;
    /// Sizes measured unless `--sizes` says otherwise.
    fn default_sizes(&self) -> Vec<usize>;
    /// Every variant, available or not, in table order.
    fn variants(&self) -> Vec<Variant>;
    /// The metric compared, plotted and shown first.
    fn primary(&self) -> Primary;
    /// The JSON `machine` object.
    fn machine(&self) -> Machine;
    /// Measures `variant` at `size` once. Must return within `plan.warmup + plan.window` plus
    /// its own bounded set-up and tear-down, and sooner when `plan.stop` is raised.
    fn measure(&mut self, variant: &Variant, size: usize, plan: &Plan) -> anyhow::Result<Metrics>;
    /// The metrics written to the JSON (default: all); the others are shown in the table only
    /// (diagnostics such as CPU shares).
    fn json_metrics(&self) -> Option<Vec<&'static str>> {
        None
    }
    /// A line printed under the table (placements, caveats).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Median, min and max of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some(Summary { median, min: s[0], max: s[n - 1] })
    }
}

/// One (variant, size) of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// Variant name.
    pub variant: String,
    /// Its baseline, if any.
    pub baseline: Option<String>,
    /// Size.
    pub size: usize,
    /// Samples that succeeded.
    pub repeats: usize,
    /// Per metric, in the benchmark's order.
    pub metrics: Vec<(&'static str, Summary)>,
    /// The primary metric of each repetition that succeeded: (repetition, value).
    pub by_rep: Vec<(u32, f64)>,
}

impl Row {
    /// The summary of `metric`.
    pub fn get(&self, metric: &str) -> Option<Summary> {
        self.metrics.iter().find(|(m, _)| *m == metric).map(|&(_, s)| s)
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// Benchmark name.
    pub bench: &'static str,
    /// The machine.
    pub machine: Machine,
    /// The compared metric.
    pub primary: Primary,
    /// Rows: sizes in the order asked, variants in the benchmark's order.
    pub rows: Vec<Row>,
    /// Variants skipped, with why.
    pub skipped: Vec<(String, String)>,
    /// Repetitions asked for.
    pub repeats_asked: u32,
    /// Whether a stop request cut the run short.
    pub interrupted: bool,
    /// Notes of the benchmark.
    pub notes: Vec<String>,
    /// Metrics that go to the JSON (`None`: all).
    pub json_metrics: Option<Vec<&'static str>>,
}

impl Report {
    /// The row of `variant` at `size`.
    pub fn row(&self, variant: &str, size: usize) -> Option<&Row> {
        self.rows.iter().find(|r| r.variant == variant && r.size == size)
    }

    /// Ratio of the primary metric to the baseline's at the same size: the median over
    /// repetitions of the ratio within each repetition (the two were measured back to back, so
    /// a slow drift or a sudden change of the machine's speed cancels out), or the ratio of the
    /// medians when no repetition has both.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        let base = self.row(row.baseline.as_deref()?, row.size)?;
        let paired: Vec<f64> = row
            .by_rep
            .iter()
            .filter_map(|&(rep, x)| {
                let &(_, b) = base.by_rep.iter().find(|(r, _)| *r == rep)?;
                (b > 0.0).then(|| x / b)
            })
            .collect();
        if let Some(s) = Summary::of(&paired) {
            return Some(s.median);
        }
        let (a, b) = (row.get(self.primary.metric)?, base.get(self.primary.metric)?);
        (b.median > 0.0).then(|| a.median / b.median)
    }
}

/// Measures `bench` as the common flags say and returns the report (also printed and written
/// by [`finish`]).
pub fn run(bench: &mut dyn Benchmark, args: &CommonArgs, stop: &Stop) -> anyhow::Result<Report> {
    let sizes = args.sizes.clone().unwrap_or_else(|| bench.default_sizes());
    anyhow::ensure!(!sizes.is_empty(), "no sizes to measure");
    let all = bench.variants();
    // `--variants l2fwd` selects `l2fwd` and its placements `l2fwd[…]`.
    let selects = |f: &str, name: &str| {
        name == f || name.strip_prefix(f).is_some_and(|rest| rest.starts_with('['))
    };
    if let Some(only) = &args.variants {
        for v in only {
            anyhow::ensure!(
                all.iter().any(|a| selects(v, &a.name)),
                "{} has no variant {v:?} (it has: {})",
                bench.name(),
                all.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let wanted =
        |v: &Variant| args.variants.as_ref().is_none_or(|o| o.iter().any(|f| selects(f, &v.name)));
    let mut skipped = Vec::new();
    let mut variants = Vec::new();
    for v in all.into_iter().filter(wanted) {
        match &v.unavailable {
            Some(why) => skipped.push((v.name.clone(), why.clone())),
            None => variants.push(v),
        }
    }
    anyhow::ensure!(!variants.is_empty(), "no variant of {} can run here", bench.name());
    let repeats = args.repeats();
    let plan = Plan {
        warmup: if args.quick { Duration::from_millis(300) } else { Duration::from_millis(500) },
        window: args.window(),
        stop: stop.clone(),
    };
    let total = u64::from(repeats) * (sizes.len() * variants.len()) as u64;
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(format!("bench {}", bench.name()));

    // samples[(variant index, size index)][metric] = values
    let mut samples: BTreeMap<(usize, usize), BTreeMap<&'static str, Vec<f64>>> = BTreeMap::new();
    let mut order: BTreeMap<(usize, usize), Vec<&'static str>> = BTreeMap::new();
    let mut by_rep: BTreeMap<(usize, usize), Vec<(u32, f64)>> = BTreeMap::new();
    let primary = bench.primary().metric;
    let mut interrupted = false;
    'reps: for rep in 0..repeats {
        for (si, &size) in sizes.iter().enumerate() {
            for (vi, v) in variants.iter().enumerate() {
                if stop.requested() {
                    interrupted = true;
                    break 'reps;
                }
                pb.set_message(format!("{} @ {size} B, repetition {}/{repeats}", v.name, rep + 1));
                match bench.measure(v, size, &plan) {
                    Ok(m) if !stop.requested() => {
                        let entry = samples.entry((vi, si)).or_default();
                        let names = order.entry((vi, si)).or_default();
                        for (k, x) in m {
                            if k == primary {
                                by_rep.entry((vi, si)).or_default().push((rep, x));
                            }
                            if !names.contains(&k) {
                                names.push(k);
                            }
                            entry.entry(k).or_default().push(x);
                        }
                    }
                    Ok(_) => {} // cut short by a stop request: not a full sample
                    Err(e) => pb.suspend(|| {
                        tracing::warn!("{} {} at {size} B failed: {e:#}", bench.name(), v.name)
                    }),
                }
                pb.inc(1);
            }
        }
    }
    interrupted |= stop.requested();
    pb.finish_and_clear();

    let mut rows = Vec::new();
    for (si, &size) in sizes.iter().enumerate() {
        for (vi, v) in variants.iter().enumerate() {
            let Some(m) = samples.get(&(vi, si)) else { continue };
            let names = &order[&(vi, si)];
            let metrics: Vec<_> =
                names.iter().filter_map(|&k| Some((k, Summary::of(m.get(k)?)?))).collect();
            let repeats = m.values().map(Vec::len).max().unwrap_or(0);
            rows.push(Row {
                variant: v.name.clone(),
                baseline: v.baseline.clone(),
                size,
                repeats,
                metrics,
                by_rep: by_rep.remove(&(vi, si)).unwrap_or_default(),
            });
        }
    }
    Ok(Report {
        bench: bench.name(),
        machine: bench.machine(),
        primary: bench.primary(),
        rows,
        skipped,
        repeats_asked: repeats,
        interrupted,
        notes: bench.notes(),
        json_metrics: bench.json_metrics(),
    })
}

/// Prints the table, writes `--json` and `--plot`; fails when the run was interrupted or
/// produced no row.
pub fn finish(report: &Report, args: &CommonArgs) -> anyhow::Result<()> {
    print!("{}", super::report::table(report));
    if let Some(path) = &args.json {
        super::report::write_json(report, path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        super::plot::draw(report, path)?;
        eprintln!("wrote {}", path.display());
    }
    anyhow::ensure!(!report.interrupted, "interrupted: the table shows what was measured");
    anyhow::ensure!(!report.rows.is_empty(), "no measurement succeeded (see the warnings above)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_pairs_repetitions_so_a_change_of_machine_speed_cancels() {
        let row = |v: &str, b: Option<&str>, reps: &[f64]| Row {
            variant: v.into(),
            baseline: b.map(Into::into),
            size: 64,
            repeats: reps.len(),
            metrics: vec![("pps", Summary::of(reps).unwrap())],
            by_rep: reps.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect(),
        };
        // The machine is twice as fast in repetitions 1 and 2; xdpos is 10% faster throughout.
        let r = Report {
            bench: "t",
            machine: Machine::here("veth", "native-copy"),
            primary: Primary { metric: "pps", label: "Mpps", scale: 1e6 },
            rows: vec![
                row("base", None, &[1.0, 2.0, 2.0]),
                row("x", Some("base"), &[1.1, 2.2, 1.1 * 2.0]),
            ],
            skipped: vec![],
            repeats_asked: 3,
            interrupted: false,
            notes: vec![],
            json_metrics: None,
        };
        let ratio = r.ratio(&r.rows[1]).unwrap();
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn summary_median_min_max() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Summary::of(&[]).is_none());
    }

    /// A fake benchmark that records the order it is asked in.
    struct Fake {
        calls: Vec<(String, usize)>,
    }

    impl Benchmark for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn default_sizes(&self) -> Vec<usize> {
            vec![64, 1500]
        }
        fn variants(&self) -> Vec<Variant> {
            let mut gone = Variant::new("gone", None);
            gone.unavailable = Some("not installed".into());
            vec![Variant::new("kernel", None), Variant::new("xdpos", Some("kernel")), gone]
        }
        fn primary(&self) -> Primary {
            Primary { metric: "pps", label: "Mpps", scale: 1e6 }
        }
        fn machine(&self) -> Machine {
            Machine::here("veth", "native-copy")
        }
        fn measure(&mut self, v: &Variant, size: usize, _: &Plan) -> anyhow::Result<Metrics> {
            self.calls.push((v.name.clone(), size));
            let base = if v.name == "kernel" { 1e6 } else { 3e6 };
            let n = self.calls.len() as f64;
            Ok(vec![("pps", base + n), ("goodput_bps", (base + n) * size as f64 * 8.0)])
        }
    }

    #[test]
    fn variants_alternate_within_each_repetition_and_ratios_use_the_baseline() {
        let mut fake = Fake { calls: Vec::new() };
        let args = CommonArgs {
            sizes: None,
            seconds: 0.1,
            repeat: 2,
            quick: false,
            variants: None,
            json: None,
            plot: None,
        };
        let r = run(&mut fake, &args, &Stop::new()).unwrap();
        let order: Vec<_> = fake.calls.iter().map(|(v, s)| format!("{v}@{s}")).collect();
        assert_eq!(
            order,
            [
                "kernel@64",
                "xdpos@64",
                "kernel@1500",
                "xdpos@1500",
                "kernel@64",
                "xdpos@64",
                "kernel@1500",
                "xdpos@1500"
            ]
        );
        assert_eq!(r.skipped, [("gone".to_string(), "not installed".to_string())]);
        assert_eq!(r.rows.len(), 4);
        let x = r.row("xdpos", 64).unwrap();
        assert_eq!(x.repeats, 2);
        let ratio = r.ratio(x).unwrap();
        assert!((ratio - 3.0).abs() < 0.01, "{ratio}");
        assert_eq!(x.by_rep.len(), 2);
        assert!(r.ratio(r.row("kernel", 64).unwrap()).is_none());
    }
}
