//! The `xdpos echo` process on the namespace rig: it serves kernel clients, drains and detaches
//! on SIGTERM, leaves nothing attached when killed (BPF link), and `xdpos cleanup` removes
//! what a killed instance with a netlink attachment left behind. A fresh start after `kill -9`
//! works.
#![forbid(unsafe_code)]

use std::net::SocketAddrV4;
use std::process::Command;

use rustix::process::Signal;
use xdpos::rig::{Pair, PairOpts};
use xdpos_tests::*;

const PORT: u16 = 7;

fn start_echo(pair: &Pair, extra: &[&str]) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()])
        .arg(xdpos_bin())
        .args(["echo", "--interface", &pair.b.ifname, "--addr", &pair.b.ip.to_string()])
        .args(["--port", &PORT.to_string()])
        .args(extra);
    let mut child = Child::spawn(cmd);
    assert!(
        child.wait_line("ready:", DEADLINE).is_some(),
        "xdpos echo did not become ready: {:?}",
        child.seen
    );
    child
}

/// Sends `n` datagrams from a kernel socket in A and returns how many came back intact.
fn echoes(pair: &Pair, n: u32) -> u32 {
    pair.ns_a
        .run_in(|| {
            let s = kernel_udp(pair.a.ip, 0);
            let dst = SocketAddrV4::new(pair.b.ip, PORT);
            let mut got = 0;
            let mut buf = [0u8; 256];
            for i in 0..n {
                s.send_to(&payload(i, 100), dst).unwrap();
                if let Ok(len) = s.recv(&mut buf) {
                    if check_payload(&buf[..len]) == Some(i) {
                        got += 1;
                    }
                }
            }
            got
        })
        .unwrap()
}

fn xdp_attached(pair: &Pair) -> bool {
    pair.ns_b.sh("ip -d link show").unwrap().contains("prog/xdp")
}

#[test]
fn sigterm_drains_detaches_and_exits_zero() {
    sweep();
    let pair = Pair::new("st", &PairOpts { queues: 2, ..Default::default() }).unwrap();
    let mut echo = start_echo(&pair, &[]);
    assert!(xdp_attached(&pair));
    assert_eq!(echoes(&pair, 50), 50, "{}", dump(&pair));
    echo.signal(Signal::TERM);
    let st = echo.wait(DEADLINE).expect("exits after SIGTERM");
    assert!(st.success(), "exit status {st:?}, output {:?}", echo.seen);
    let rx: u64 = echo
        .seen
        .iter()
        .filter(|l| l.starts_with("queue "))
        .map(|l| {
            assert!(l.contains("frames ok"), "frame accounting after drain: {l}");
            l.split_whitespace().nth(3).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        })
        .sum();
    assert_eq!(rx, 50, "the per-queue report counts every datagram: {:?}", echo.seen);
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn sigkill_leaves_nothing_attached_and_a_restart_serves_again() {
    sweep();
    let pair = Pair::new("sk", &PairOpts::default()).unwrap();
    let mut echo = start_echo(&pair, &[]);
    assert_eq!(echoes(&pair, 10), 10);
    echo.signal(Signal::KILL);
    assert!(echo.wait(DEADLINE).is_some());
    // The BPF link died with the process.
    assert_no_xdp(&pair.ns_b);
    let mut again = start_echo(&pair, &[]);
    assert_eq!(echoes(&pair, 10), 10, "a fresh start after kill -9 serves");
    again.signal(Signal::TERM);
    assert!(again.wait(DEADLINE).expect("exits").success());
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn cleanup_removes_a_killed_netlink_attachment_and_spares_a_live_one() {
    sweep();
    let pair = Pair::new("cl", &PairOpts::default()).unwrap();
    let cleanup = || {
        let out = pair
            .ns_b
            .cmd(xdpos_bin().to_str().unwrap())
            .arg("cleanup")
            .output()
            .expect("run xdpos cleanup");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // A live instance attached through a link is left alone.
    let mut live = start_echo(&pair, &[]);
    let out = cleanup();
    assert!(out.contains("belongs to a running xdpos"), "{out}");
    assert!(xdp_attached(&pair));
    assert_eq!(echoes(&pair, 5), 5, "still serving after cleanup");
    live.signal(Signal::TERM);
    assert!(live.wait(DEADLINE).expect("exits").success());
    assert_no_xdp(&pair.ns_b);

    // A netlink attachment outlives a killed process...
    let mut crashed = start_echo(&pair, &["--attach", "netlink"]);
    crashed.signal(Signal::KILL);
    assert!(crashed.wait(DEADLINE).is_some());
    assert!(xdp_attached(&pair), "netlink attachment survives kill -9");
    // ...until cleanup removes it.
    let out = cleanup();
    assert!(out.contains("detached leftover steering program"), "{out}");
    assert_no_xdp(&pair.ns_b);
    assert_eq!(cleanup().trim(), "", "nothing left to clean");
}

#[test]
fn skb_mode_serves_kernel_clients() {
    sweep();
    let pair = Pair::new("sm", &PairOpts::default()).unwrap();
    let mut echo = start_echo(&pair, &["--mode", "skb"]);
    assert!(echo.seen.iter().any(|l| l.contains("(skb XDP)")), "{:?}", echo.seen);
    assert_eq!(echoes(&pair, 20), 20, "{}", dump(&pair));
    echo.signal(Signal::TERM);
    assert!(echo.wait(DEADLINE).expect("exits").success());
    assert_no_xdp(&pair.ns_b);
}
