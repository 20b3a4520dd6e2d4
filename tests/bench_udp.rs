//! `xdpos bench udp --quick --json F` on the namespace rig: every variant (the kernel's sockets,
//! the xdpos stack at both ends, a kernel sender into xdpos, and the ceiling variants against
//! the raw loops) measures a positive rate at the smallest and the largest payload, and the
//! JSON has the fields of BENCHMARKS.md. The numbers themselves are reported in docs/udp.md,
//! never asserted here: a test is not a benchmark. (An xdpos end whose frame accounting breaks
//! fails its point, so a missing row also catches that.)
#![forbid(unsafe_code)]

use std::process::Command;

use xdpos_tests::*;

fn bench(args: &[&str], sizes: &[u64], variants: &[&str]) {
    sweep();
    let dir = std::env::temp_dir().join(format!("xdpos-bench-udp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("udp-{}.json", variants.len()));
    let sizes_arg = sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new(xdpos_bin())
        .args(["bench", "udp", "--quick", "--sizes", &sizes_arg, "--variants"])
        .arg(variants.join(","))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run xdpos bench udp");
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
    assert_eq!(report["bench"], "udp");
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
            let m = &row["median"];
            let pps = m["pps"].as_f64().unwrap_or(0.0);
            assert!(pps > 1000.0, "{variant} {size} B: pps {pps}\n{}", text());
            let goodput = m["goodput_bps"].as_f64().unwrap_or(0.0);
            assert!((goodput - pps * size as f64 * 8.0).abs() < 1.0, "{variant}: {m}");
            let loss = m["loss"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&loss), "{variant} {size} B: loss {loss}");
        }
    }
}

#[test]
fn the_main_variants_stream_at_the_smallest_and_largest_payload() {
    bench(&[], &[18, 1472], &["kernel", "xdpos", "kernel-to-xdpos"]);
}

#[test]
fn the_ceiling_variants_measure_the_stack_against_the_raw_loops() {
    bench(&["--ceiling"], &[64], &["raw-rxdrop", "xdpos-rx", "raw-txonly", "xdpos-tx"]);
}
