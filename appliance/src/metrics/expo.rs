//! # The Prometheus text exposition (format 0.0.4)
//!
//! What it is: a small writer of the text format Prometheus scrapes: metric families with
//! `# HELP` and `# TYPE` lines, each family's samples together (several workers contribute to
//! one family, so samples are gathered per family and written at the end), label values
//! escaped, histograms as cumulative `_bucket{le}` series with `_sum` and `_count`.
//!
//! Runs on the control thread at scrape time: it allocates freely, the fast path never calls
//! it. Families come out sorted by name, so two scrapes of the same state are byte-identical.
//!
//! Reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::cells::Buckets;

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (its name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    samples: String,
}

/// One scrape's families (see the module documentation).
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

/// Label pairs of one series.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(out: &mut String, ls: Labels<'_>, le: Option<&str>) {
    if ls.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in ls.iter().map(|(k, v)| (*k, *v)).chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v);
        out.push('"');
    }
    out.push('}');
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The family `name`, declared on first use (a family declared without samples is
    /// written with its `HELP` and `TYPE` lines only).
    pub fn declare(&mut self, name: &'static str, help: &'static str, kind: Kind) {
        let f = self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            samples: String::new(),
        });
        debug_assert_eq!(f.kind, kind, "metric {name} declared with two types");
    }

    fn samples(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut String {
        self.declare(name, help, kind);
        &mut self.families.get_mut(name).expect("declared above").samples
    }

    /// One counter sample.
    pub fn counter(&mut self, name: &'static str, help: &'static str, ls: Labels<'_>, v: u64) {
        debug_assert!(name.ends_with("_total"), "counter {name} must end in _total");
        let s = self.samples(name, help, Kind::Counter);
        s.push_str(name);
        labels(s, ls, None);
        let _ = writeln!(s, " {v}");
    }

    /// One counter sample of a value that is not an integer (seconds).
    pub fn counter_f64(&mut self, name: &'static str, help: &'static str, ls: Labels<'_>, v: f64) {
        debug_assert!(name.ends_with("_total"), "counter {name} must end in _total");
        let s = self.samples(name, help, Kind::Counter);
        s.push_str(name);
        labels(s, ls, None);
        let _ = writeln!(s, " {}", float(v));
    }

    /// One gauge sample.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, ls: Labels<'_>, v: f64) {
        let s = self.samples(name, help, Kind::Gauge);
        s.push_str(name);
        labels(s, ls, None);
        let _ = writeln!(s, " {}", float(v));
    }

    /// One histogram: `buckets` are the non-cumulative counts of `layout` (`+Inf` last),
    /// `sum` in the observed unit (divided like the bounds).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        ls: Labels<'_>,
        layout: Buckets,
        buckets: &[u64],
        sum: u64,
    ) {
        let s = self.samples(name, help, Kind::Histogram);
        let mut cum = 0u64;
        for (i, &b) in buckets.iter().enumerate() {
            cum += b;
            let le = if i < layout.finite { float(layout.bound(i)) } else { "+Inf".into() };
            let _ = write!(s, "{name}_bucket");
            labels(s, ls, Some(&le));
            let _ = writeln!(s, " {cum}");
        }
        let _ = write!(s, "{name}_sum");
        labels(s, ls, None);
        let _ = writeln!(s, " {}", float(sum as f64 / layout.divisor));
        let _ = write!(s, "{name}_count");
        labels(s, ls, None);
        let _ = writeln!(s, " {cum}");
    }

    /// The text Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(
            self.families.values().map(|f| f.samples.len() + 128).sum::<usize>(),
        );
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            out.push_str(&f.samples);
        }
        out
    }

    /// Names of the families (for tests and the dashboards' checks).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.families.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::cells::{Histogram, BATCH_FRAMES};

    #[test]
    fn families_group_their_samples_and_escape_labels() {
        let mut e = Exposition::new();
        e.counter("xdpos_b_total", "B.", &[("worker", "0")], 3);
        e.gauge("xdpos_a", "A.", &[("interface", "we\"ird\\\n")], 1.5);
        e.counter("xdpos_b_total", "B.", &[("worker", "1")], 4);
        e.declare("xdpos_c_total", "C.", Kind::Counter);
        let t = e.render();
        assert_eq!(
            t,
            "# HELP xdpos_a A.\n# TYPE xdpos_a gauge\nxdpos_a{interface=\"we\\\"ird\\\\\\n\"} 1.5\n\
             # HELP xdpos_b_total B.\n# TYPE xdpos_b_total counter\n\
             xdpos_b_total{worker=\"0\"} 3\nxdpos_b_total{worker=\"1\"} 4\n\
             # HELP xdpos_c_total C.\n# TYPE xdpos_c_total counter\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(BATCH_FRAMES);
        for v in [1, 3, 300] {
            h.observe(v);
        }
        let (b, sum) = h.snapshot();
        let mut e = Exposition::new();
        e.histogram("xdpos_h", "H.", &[("queue", "0")], BATCH_FRAMES, &b, sum);
        let t = e.render();
        assert!(t.contains("xdpos_h_bucket{queue=\"0\",le=\"1\"} 1\n"), "{t}");
        assert!(t.contains("xdpos_h_bucket{queue=\"0\",le=\"4\"} 2\n"), "{t}");
        assert!(t.contains("xdpos_h_bucket{queue=\"0\",le=\"256\"} 2\n"), "{t}");
        assert!(t.contains("xdpos_h_bucket{queue=\"0\",le=\"+Inf\"} 3\n"), "{t}");
        assert!(t.contains("xdpos_h_sum{queue=\"0\"} 304\nxdpos_h_count{queue=\"0\"} 3\n"), "{t}");
    }
}
