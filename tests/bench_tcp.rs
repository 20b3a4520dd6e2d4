//! `xdpos bench tcp --quick --json F` on the namespace rig: every variant (the kernel with and
//! without offloads, the xdpos stack at both ends, a kernel sender into xdpos), each in its
//! default placement, moves data at the smallest and the largest write, every placement
//! `--explore` offers the xdpos receivers works, and the JSON has the fields of BENCHMARKS.md.
//! The numbers themselves are reported in docs/tcp.md, never asserted here: a test is not a
//! benchmark. (An xdpos end whose frame accounting breaks fails its point, so a missing row
//! also catches that.)
#![forbid(unsafe_code)]

use xdpos_tests::*;

/// `xdpos bench tcp` at `sizes` for `variants`: every point has a row with some goodput.
fn bench(args: &[&str], sizes: &[u64], variants: &[&str]) {
    bench_rows("tcp", args, sizes, variants, |variant, size, row, text| {
        let goodput = row["median"]["goodput_bps"].as_f64().unwrap_or(0.0);
        assert!(goodput > 1e6, "{variant} {size} B: goodput {goodput}\n{}", text());
    });
}

#[test]
fn every_variant_streams_at_the_smallest_and_largest_write() {
    bench(&[], &[64, 65535], &["kernel-nooffload", "kernel", "xdpos", "kernel-to-xdpos"]);
}

#[test]
fn every_placement_of_an_xdpos_receiver_streams() {
    bench(
        &["--explore"],
        &[4096],
        &[
            "xdpos[B=softirq]",
            "xdpos[B=napi-cpu0]",
            "xdpos[B=napi-cpu0+yield]",
            "xdpos[B=napi-cpu1]",
            "xdpos[B=defer]",
            "xdpos[B=skb-rps-cpu1]",
            "kernel-to-xdpos[B=napi-cpu1]",
            "kernel-to-xdpos[B=skb-rps-cpu1]",
            "kernel-nooffload[B=rps-cpu1]",
        ],
    );
}
