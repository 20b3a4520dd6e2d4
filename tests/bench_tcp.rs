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
            "kernel-to-xdpos[B=napi-cpu1+acks-cpu0]",
            "kernel-nooffload[B=rps-cpu1]",
            "kernel-nooffload[B=rps-cpu1+acks-cpu0]",
        ],
    );
}

#[test]
fn the_kernel_senders_run_the_congestion_control_asked_for() {
    // Reno is built into every kernel and is not the bench's default: a point whose sender's
    // connection `ss` shows with another algorithm fails, and its row goes missing.
    bench(&["--kernel-cc", "reno"], &[65535], &["kernel-nooffload", "kernel-to-xdpos"]);
}

#[test]
fn max_c2c_ns_leaves_out_points_taken_with_the_cpus_far_apart() {
    // No two CPUs hand a cache line over in a picosecond: every attempt is disturbed, and the
    // point is left out with the reason.
    sweep();
    let out = std::process::Command::new(xdpos_bin())
        .args(["bench", "tcp", "--quick", "--sizes", "4096", "--variants", "xdpos"])
        .args(["--max-c2c-ns", "0.001", "--c2c-wait", "0", "--retries", "1"])
        .output()
        .expect("run xdpos bench tcp");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a cache line between the CPUs took")
            && err.contains("measuring again")
            && err.contains("still disturbed after 2 attempts")
            && err.contains("left out"),
        "{err}"
    );
    // A limit no probe reaches keeps every point.
    bench(&["--max-c2c-ns", "1000000"], &[4096], &["xdpos"]);
}

#[test]
fn an_unknown_kernel_congestion_control_fails_clearly() {
    sweep();
    let out = std::process::Command::new(xdpos_bin())
        .args(["bench", "tcp", "--quick", "--sizes", "64", "--kernel-cc", "no_such_cc"])
        .output()
        .expect("run xdpos bench tcp");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown algorithm was accepted: {err}");
    assert!(
        err.contains("--kernel-cc no_such_cc")
            && err.contains("available: ")
            && err.contains("reno"),
        "the error names neither the flag nor the algorithms there are: {err}"
    );
    for bad in ["", "cubic;true", "../bbr"] {
        let out = std::process::Command::new(xdpos_bin())
            .args(["bench", "tcp", "--quick", "--sizes", "64", "--kernel-cc", bad])
            .output()
            .expect("run xdpos bench tcp");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("not a congestion control name"),
            "--kernel-cc {bad:?}: {err}"
        );
    }
}
