//! # Report writers: the stdout table and the JSON file
//!
//! What it is: the two text forms of a [`Report`]. The table has one row per (size, variant):
//! the primary metric's median with min and max, the medians of the other metrics, and the
//! ratio to the row's baseline. The JSON follows BENCHMARKS.md exactly (`bench`, `version`,
//! `machine`, `rows` with `variant`, `size`, `repeats`, `median`, `min`, `max`), so other tools
//! can read it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map, Value};

use super::harness::{Machine, Primary, Report, Row, Summary};

/// `12.3M`, `845k`, `0.021`: three significant digits with an SI suffix.
pub fn si(x: f64) -> String {
    let (v, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    let digits = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    format!("{v:.digits$}{suffix}")
}

/// The table printed on stdout.
pub fn table(r: &Report) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "xdpos bench {}: medians of {} (min-max); {} cpus, kernel {}, {}, {}{}",
        r.bench,
        r.repeats_asked,
        m.cpus,
        m.kernel,
        m.nic,
        m.xdp_mode,
        if r.interrupted { "; INTERRUPTED, partial" } else { "" }
    );
    let others: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        // Column order: that of the row with the most metrics, then any others.
        let mut rows: Vec<&Row> = r.rows.iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.metrics.len()));
        for row in rows {
            for (k, _) in &row.metrics {
                if *k != r.primary.metric && !v.contains(k) {
                    v.push(k);
                }
            }
        }
        v
    };
    let vw = r.rows.iter().map(|x| x.variant.len()).max().unwrap_or(7).max(7);
    let _ = write!(s, "{:>6}  {:<vw$}  {:<26}", "size", "variant", r.primary.label);
    for o in &others {
        let _ = write!(s, "  {o:>12}");
    }
    let _ = writeln!(s, "  {:>4}  ratio", "n");
    for row in &r.rows {
        let _ = write!(s, "{:>6}  {:<vw$}  {:<26}", row.size, row.variant, primary_cell(r, row));
        for o in &others {
            let cell = row.get(o).map(|x| si(x.median)).unwrap_or_else(|| "-".into());
            let _ = write!(s, "  {cell:>12}");
        }
        let ratio = match (r.ratio(row), &row.baseline) {
            (Some(x), Some(b)) => format!("{x:.2}x {b}"),
            (None, Some(b)) => format!("- ({b} not measured)"),
            _ => "(baseline)".into(),
        };
        let _ = writeln!(s, "  {:>4}  {ratio}", row.repeats);
    }
    if r.rows.iter().any(|row| row.baseline.is_some()) {
        let _ = writeln!(
            s,
            "ratio: median over repetitions of {} / baseline's, measured back to back",
            r.primary.metric
        );
    }
    for (v, why) in &r.skipped {
        let _ = writeln!(s, "skipped {v}: {why}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

fn primary_cell(r: &Report, row: &Row) -> String {
    let p = r.primary;
    match row.get(p.metric) {
        Some(x) => {
            let f = |v: f64| format!("{:.3}", v / p.scale);
            format!("{} ({}-{})", f(x.median), f(x.min), f(x.max))
        }
        None => "-".into(),
    }
}

/// The JSON document of BENCHMARKS.md.
pub fn json(r: &Report) -> Value {
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            let pick = |f: fn(&super::harness::Summary) -> f64| {
                let mut m = Map::new();
                let keep = |k: &str| r.json_metrics.as_ref().is_none_or(|j| j.contains(&k));
                for (k, s) in row.metrics.iter().filter(|(k, _)| keep(k)) {
                    m.insert((*k).to_string(), json!(f(s)));
                }
                Value::Object(m)
            };
            json!({
                "variant": row.variant,
                "size": row.size,
                "repeats": row.repeats,
                "median": pick(|s| s.median),
                "min": pick(|s| s.min),
                "max": pick(|s| s.max),
            })
        })
        .collect();
    json!({
        "bench": r.bench,
        "version": env!("CARGO_PKG_VERSION"),
        "machine": r.machine,
        "rows": rows,
    })
}

/// Reads a report back from its JSON (for `xdpos bench plot`): rows with median/min/max
/// per metric; baselines, per-repetition samples and table-only metrics are not in the JSON.
pub fn from_json(v: &Value, primary: Primary) -> anyhow::Result<Report> {
    let bench: &'static str = Box::leak(
        v["bench"].as_str().context("JSON has no \"bench\"")?.to_string().into_boxed_str(),
    );
    let machine: Machine =
        serde_json::from_value(v["machine"].clone()).context("JSON has no valid \"machine\"")?;
    let mut rows = Vec::new();
    for r in v["rows"].as_array().context("JSON has no \"rows\" array")? {
        let field = |k: &str| r.get(k).with_context(|| format!("row without {k:?}: {r}"));
        let mut metrics = Vec::new();
        for (k, med) in field("median")?.as_object().context("median is not an object")? {
            let get = |which: &str| r[which][k].as_f64();
            let name: &'static str = Box::leak(k.clone().into_boxed_str());
            let median = med.as_f64().with_context(|| format!("median.{k} is not a number"))?;
            let s = Summary {
                median,
                min: get("min").unwrap_or(median),
                max: get("max").unwrap_or(median),
            };
            metrics.push((name, s));
        }
        rows.push(Row {
            variant: field("variant")?.as_str().context("variant is not a string")?.into(),
            baseline: None,
            size: field("size")?.as_u64().context("size is not a number")? as usize,
            repeats: field("repeats")?.as_u64().unwrap_or(0) as usize,
            metrics,
            by_rep: Vec::new(),
        });
    }
    Ok(Report {
        bench,
        machine,
        primary,
        rows,
        skipped: Vec::new(),
        repeats_asked: 0,
        interrupted: false,
        notes: Vec::new(),
        json_metrics: None,
    })
}

/// Writes [`json`] to `path`.
pub fn write_json(r: &Report, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&json(r)).context("encode the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let s = |x: f64| Summary { median: x, min: x * 0.9, max: x * 1.1 };
        let row = |v: &str, b: Option<&str>, pps: f64| Row {
            variant: v.into(),
            baseline: b.map(Into::into),
            size: 64,
            repeats: 3,
            metrics: vec![("pps", s(pps)), ("goodput_bps", s(pps * 512.0)), ("cpu0_si%", s(3.0))],
            by_rep: vec![],
        };
        Report {
            bench: "raw",
            machine: Machine {
                cpus: 2,
                kernel: "6.18.44".into(),
                nic: "veth".into(),
                xdp_mode: "native-copy".into(),
            },
            primary: Primary { metric: "pps", label: "Mpps", scale: 1e6 },
            rows: vec![row("testpmd-io", None, 4e5), row("l2fwd", Some("testpmd-io"), 5e5)],
            skipped: vec![],
            repeats_asked: 3,
            interrupted: false,
            notes: vec![],
            json_metrics: Some(vec!["pps", "goodput_bps"]),
        }
    }

    #[test]
    fn json_follows_the_schema_of_benchmarks_md() {
        let v = json(&report());
        assert_eq!(v["bench"], "raw");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        for k in ["cpus", "kernel", "nic", "xdp_mode"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        let row = &v["rows"][1];
        assert_eq!(row["variant"], "l2fwd");
        assert_eq!(row["size"], 64);
        assert_eq!(row["repeats"], 3);
        assert_eq!(row["median"]["pps"], 5e5);
        assert!(
            row["min"]["goodput_bps"].as_f64().unwrap()
                < row["max"]["goodput_bps"].as_f64().unwrap()
        );
        let keys: Vec<_> = row.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(row["median"].get("cpu0_si%").is_none(), "table-only metrics stay out");
        assert!(table(&report()).contains("cpu0_si%"));
    }

    #[test]
    fn json_reads_back_for_plotting() {
        let r = report();
        let back = from_json(&json(&r), r.primary).unwrap();
        assert_eq!(back.bench, "raw");
        assert_eq!(back.rows.len(), 2);
        assert_eq!(back.rows[1].get("pps"), r.rows[1].get("pps"));
        assert!(back.rows[1].get("cpu0_si%").is_none());
    }

    #[test]
    fn table_shows_the_ratio_to_the_baseline() {
        let t = table(&report());
        assert!(t.contains("1.25x testpmd-io"), "{t}");
        assert!(t.contains("0.500 (0.450-0.550)"), "{t}");
        assert!(t.contains("(baseline)"), "{t}");
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(845_000.0), "845k");
        assert_eq!(si(0.021), "0.02");
        assert_eq!(si(8.2e9), "8.20G");
    }
}
