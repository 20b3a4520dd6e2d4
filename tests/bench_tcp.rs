//! `xdpos bench tcp --quick --json F` on the namespace rig: every variant (the kernel with and
//! without offloads, the xdpos stack at both ends, a kernel sender into xdpos), each in its
//! default placement, moves data at the smallest and the largest write, every placement
//! `--explore` offers the xdpos receivers works, and the JSON has the fields of BENCHMARKS.md.
//! The numbers themselves are reported in docs/tcp.md, never asserted here: a test is not a
//! benchmark. (An xdpos end whose frame accounting breaks fails its point, so a missing row
//! also catches that.)
#![forbid(unsafe_code)]

use std::process::Command;

use xdpos_tests::*;

fn bench(args: &[&str], sizes: &[u64], variants: &[&str]) {
    sweep();
    // A directory per call: the tests run in parallel, and one removing a shared directory
    // once it was empty made the other's --json fail.
    let dir = std::env::temp_dir().join(format!(
        "xdpos-bench-tcp-{}-{}",
        std::process::id(),
        variants.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("tcp-{}.json", variants.len()));
    let sizes_arg = sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new(xdpos_bin())
        .args(["bench", "tcp", "--quick", "--sizes", &sizes_arg, "--variants"])
        .arg(variants.join(","))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run xdpos bench tcp");
    let text = || {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(out.status.success(), "{}", text());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    std::fs::remove_file(&json).ok();
    std::fs::remove_dir(&dir).ok();
    assert_eq!(report["bench"], "tcp");
    for key in ["cpus", "kernel", "nic", "xdp_mode"] {
        assert!(!report["machine"][key].is_null(), "machine.{key} missing: {report}");
    }
    let rows = report["rows"].as_array().expect("rows");
    for variant in variants {
        for &size in sizes {
            let row = rows
                .iter()
                .find(|r| r["variant"] == *variant && r["size"] == size)
                .unwrap_or_else(|| panic!("no row for {variant} at {size} B: {}", text()));
            let goodput = row["median"]["goodput_bps"].as_f64().unwrap_or(0.0);
            assert!(goodput > 1e6, "{variant} {size} B: goodput {goodput}\n{}", text());
        }
    }
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
