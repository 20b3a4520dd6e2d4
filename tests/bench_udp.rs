//! `xdpos bench udp --quick --json F` on the namespace rig: every variant (the kernel's sockets,
//! the xdpos stack at both ends, a kernel sender into xdpos, and the ceiling variants against
//! the raw loops) measures a positive rate at the smallest and the largest payload, and the
//! JSON has the fields of BENCHMARKS.md. The numbers themselves are reported in docs/udp.md,
//! never asserted here: a test is not a benchmark. (An xdpos end whose frame accounting breaks
//! fails its point, so a missing row also catches that.)
#![forbid(unsafe_code)]

use xdpos_tests::*;

/// `xdpos bench udp` at `sizes` for `variants`: every point has a row with a positive rate,
/// goodput that matches it and a loss fraction.
fn bench(args: &[&str], sizes: &[u64], variants: &[&str]) {
    bench_rows("udp", args, sizes, variants, |variant, size, row, text| {
        let m = &row["median"];
        let pps = m["pps"].as_f64().unwrap_or(0.0);
        assert!(pps > 1000.0, "{variant} {size} B: pps {pps}\n{}", text());
        let goodput = m["goodput_bps"].as_f64().unwrap_or(0.0);
        assert!((goodput - pps * size as f64 * 8.0).abs() < 1.0, "{variant}: {m}");
        let loss = m["loss"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&loss), "{variant} {size} B: loss {loss}");
    });
}

#[test]
fn the_main_variants_stream_at_the_smallest_and_largest_payload() {
    bench(&[], &[18, 1472], &["kernel", "xdpos", "kernel-to-xdpos"]);
}

#[test]
fn the_ceiling_variants_measure_the_stack_against_the_raw_loops() {
    bench(&["--ceiling"], &[64], &["raw-rxdrop", "xdpos-rx", "raw-txonly", "xdpos-tx"]);
}
