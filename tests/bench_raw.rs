//! `xdpos bench raw --quick --json F` on the namespace rig: the harness runs the three AF_XDP
//! loops at 64 and 1500 bytes and writes the JSON of BENCHMARKS.md with a positive packet rate
//! in every row. (The numbers themselves are reported in docs/benchmarks.md, never asserted
//! here: a test is not a benchmark.)
#![forbid(unsafe_code)]

use std::process::Command;

use xdpos_tests::*;

#[test]
fn bench_raw_quick_writes_the_three_modes_at_64_and_1500_bytes() {
    sweep();
    let dir = std::env::temp_dir().join(format!("xdpos-bench-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("raw.json");
    let out = Command::new(xdpos_bin())
        .args(["bench", "raw", "--quick", "--variants", "rxdrop,txonly,l2fwd", "--json"])
        .arg(&json)
        .output()
        .expect("run xdpos bench raw");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(report["bench"], "raw");
    assert!(report["version"].is_string());
    for key in ["cpus", "kernel", "nic", "xdp_mode"] {
        assert!(!report["machine"][key].is_null(), "machine.{key} missing: {report}");
    }
    let rows = report["rows"].as_array().expect("rows");
    for variant in ["rxdrop", "txonly", "l2fwd"] {
        for size in [64, 1500] {
            let row = rows
                .iter()
                .find(|r| r["variant"] == variant && r["size"] == size)
                .unwrap_or_else(|| panic!("no row for {variant} at {size} B: {report}"));
            assert_eq!(row["repeats"], 1);
            for stat in ["median", "min", "max"] {
                let pps = row[stat]["pps"].as_f64().unwrap_or(0.0);
                assert!(pps > 1000.0, "{variant} {size} B {stat} pps = {pps}");
            }
        }
    }
}
