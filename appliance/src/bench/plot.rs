//! # `--plot`: the primary metric against size, as a PNG
//!
//! What it is: one line per variant (median, with a min–max bar at each point), size on a
//! logarithmic axis, labelled axes and a legend: the picture of the seed report's Figures 3 and
//! 4. Drawn headless with plotters' bitmap backend; text is rendered with ab_glyph from a
//! TrueType font read at run time (DejaVu Sans from Debian's `fonts-dejavu-core`, or the file
//! named by `XDPOS_PLOT_FONT`), so no fontconfig or X is needed.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use plotters::prelude::*;

use super::harness::Report;

/// Where the font is looked for unless `XDPOS_PLOT_FONT` names one.
pub const FONT_PATHS: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// Line colours (matplotlib's tab10): distinct, dark enough on white.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Whether `x` is 1, 2 or 5 times a power of ten (the labelled ticks of the log axis).
fn round_1_2_5(x: f64) -> bool {
    if x <= 0.0 {
        return false;
    }
    let e = 10f64.powf(x.log10().floor());
    let m = x / e;
    [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 1e-6)
}

/// Registers the font once per process under plotters' "sans-serif".
fn font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("XDPOS_PLOT_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(|p| p.to_string()))
            .collect();
        let (path, bytes) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b)))
            .ok_or_else(|| {
                format!(
                    "no font for the plot: install Debian's fonts-dejavu-core or set \
                     XDPOS_PLOT_FONT (looked in {})",
                    candidates.join(", ")
                )
            })?;
        // The font lives as long as the process: plotters keeps a 'static reference.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Draws `report` into the PNG at `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    font()?;
    let p = report.primary;
    anyhow::ensure!(!report.rows.is_empty(), "nothing to plot");
    let mut variants: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    let sizes = report.rows.iter().map(|r| r.size as f64);
    let (lo, hi) = sizes.fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let (x0, x1) = (lo / 1.3, hi * 1.3);
    let ymax = report
        .rows
        .iter()
        .filter_map(|r| r.get(p.metric))
        .map(|s| s.max / p.scale)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.5; // headroom above the lines for the legend

    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("xdpos bench {}", report.bench), ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("size (bytes, log scale)")
        .y_desc(p.label)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|x| if round_1_2_5(*x) { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(|e| err(&e))?;

    for (i, v) in variants.iter().enumerate() {
        let (r, g, b) = PALETTE[i % PALETTE.len()];
        let color = RGBColor(r, g, b).to_rgba();
        let mut pts: Vec<(f64, f64, f64, f64)> = report
            .rows
            .iter()
            .filter(|r| r.variant == *v)
            .filter_map(|r| {
                let s = r.get(p.metric)?;
                Some((r.size as f64, s.median / p.scale, s.min / p.scale, s.max / p.scale))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().map(|q| (q.0, q.1)), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*v)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 22, y)], color.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|q| Circle::new((q.0, q.1), 4, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|q| PathElement::new([(q.0, q.2), (q.0, q.3)], color.stroke_width(1))),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e)).context("write the PNG")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_headless() {
        if font().is_err() {
            eprintln!("skipped: no font (install fonts-dejavu-core)");
            return;
        }
        use crate::bench::harness::{Machine, Primary, Row, Summary};
        let row = |v: &str, size: usize, pps: f64| Row {
            variant: v.into(),
            baseline: None,
            size,
            repeats: 3,
            metrics: vec![("pps", Summary { median: pps, min: pps * 0.95, max: pps * 1.05 })],
            by_rep: vec![],
        };
        let report = Report {
            bench: "raw",
            machine: Machine::here("veth", "native-copy"),
            primary: Primary { metric: "pps", label: "Mpps", scale: 1e6 },
            rows: vec![
                row("l2fwd", 64, 1.35e6),
                row("l2fwd", 1500, 1.26e6),
                row("testpmd-io", 64, 1.33e6),
                row("testpmd-io", 1500, 1.22e6),
            ],
            skipped: vec![],
            repeats_asked: 3,
            interrupted: false,
            notes: vec![],
            json_metrics: None,
        };
        let path = std::env::temp_dir().join(format!("xdpos-plot-test-{}.png", std::process::id()));
        draw(&report, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn log_axis_labels_only_1_2_5() {
        for x in [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0] {
            assert!(round_1_2_5(x), "{x}");
        }
        for x in [3.0, 64.0, 700.0, 900.0, 1500.0] {
            assert!(!round_1_2_5(x), "{x}");
        }
    }
}
