//! `xdpos demo`, the README's first command, end to end: it builds the rig, starts the router
//! and server daemons, drives ping, UDP echo, curl and iperf3 through and to them, prints a line
//! per second (with the daemons' own counters from their `/metrics`) and a summary, exits 0, and
//! leaves no namespace, process, XDP program or temporary directory behind.
#![forbid(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use xdpos_tests::*;

#[test]
fn the_demo_drives_every_service_through_the_router_and_cleans_up() {
    sweep();
    let mut cmd = Command::new(xdpos_bin());
    cmd.args(["demo", "--seconds", "3", "--rate", "500"]).stderr(Stdio::inherit());
    let mut child = Child::spawn(cmd);
    let pid = child.child.id();
    let st = child.wait(Duration::from_secs(120)).expect("the demo ends within 120 s");
    let out = child.seen.join("\n");
    println!("{out}");
    assert!(st.success(), "xdpos demo exited with {st}");
    for want in [
        "ready:",
        "ping 10.0.1.1 (the xdpos router itself): 3 packets transmitted, 3 received",
        "ping 10.0.2.2 (B's kernel, through the router): 3 packets transmitted, 3 received",
        "ping 10.0.2.3 (the xdpos server, through the router): 3 packets transmitted, 3 received",
        "  | HTTP/1.1 200 OK",
        "t= 1s udp echo:",
        "router forwarded",
        "XDP program detached",
        "iperf3: ",
        "ok: the xdpos router forwarded every flow",
    ] {
        assert!(out.contains(want), "missing {want:?} in the demo's output");
    }
    assert_eq!(out.matches("exit status: 0, XDP program detached").count(), 2, "{out}");
    // Where to scrape, and the daemons' own counters in the live lines.
    assert_eq!(out.matches("curl -s http://127.0.0.1:9464/metrics").count(), 2, "{out}");
    let last = out.lines().rev().find(|l| l.starts_with("t=")).expect("live lines");
    let count = |after: &str| -> u64 {
        let rest = last.split(after).nth(1).unwrap_or_else(|| panic!("{after:?} in {last:?}"));
        rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count("router forwarded ") > 0, "the router's /metrics: {last}");
    assert!(count("server rx ") > 0, "the server's /metrics: {last}");
    // Nothing left: the rig's namespaces carry the demo's pid, the directory too.
    let ns = xdpos::rig::run(Command::new("ip").args(["netns", "list"])).unwrap();
    let leaked: Vec<&str> = ns.lines().filter(|l| l.contains(&format!("-{pid}-"))).collect();
    assert!(leaked.is_empty(), "namespaces left: {leaked:?}");
    let dir = std::env::temp_dir().join(format!("xdpos-demo-{pid}"));
    assert!(!dir.exists(), "{} left", dir.display());
}
