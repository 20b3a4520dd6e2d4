//! Scaling out behind ECMP, as docs/scale-out.md describes: two xdpos appliances (`xdpos run`,
//! the same configuration but for their link address) own the same anycast service address
//! 192.0.2.80; a kernel router R has one route to it with both as next hops and hashes flows on
//! their ports (`fib_multipath_hash_policy=1`); a kernel client C behind R opens many HTTP
//! connections (`curl`, one source port each). Both appliances serve a share, every request is
//! answered, and when R withdraws one next hop, new connections all go to the other while it
//! keeps answering. Then both drain on SIGTERM and detach.
//!
//! ```text
//!   C 10.9.0.2 --- 10.9.0.1 R 10.1.1.1 --- 10.1.1.3 S1 (xdpos, + 192.0.2.80)
//!                           R 10.2.1.1 --- 10.2.1.3 S2 (xdpos, + 192.0.2.80)
//! ```
#![forbid(unsafe_code)]

use std::process::Command;

use rustix::process::Signal;
use xdpos::rig::Netns;
use xdpos_tests::*;

const ANYCAST: &str = "192.0.2.80";

fn config(ifname: &str, addr: &str, gw: &str) -> String {
    format!(
        r#"[[interfaces]]
name = "{ifname}"
addresses = ["{addr}/24", "{ANYCAST}/32"]

[[workers]]
cpu = 0
queues = ["{ifname}:0"]

[role]
kind = "server"

[[routes]]
prefix = "0.0.0.0/0"
via = "{gw}"

[[services]]
kind = "http"
listen = "{ANYCAST}:80"
body = "anycast\n"
"#
    )
}

/// `xdpos run` in `ns` on `file`, once ready.
fn daemon(ns: &Netns, file: &std::path::Path) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]).arg(xdpos_bin()).arg("run").arg("--config").arg(file);
    let mut c = Child::spawn(cmd);
    assert!(c.wait_line("ready:", DEADLINE).is_some(), "not ready: {:?}", c.seen);
    c
}

/// HTTP requests a stopped daemon's exit lines report (`… http requests N …` or, failing
/// that, accepted TCP connections: one request per connection here).
fn served(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.split("tcp accepted ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `n` curl connections from C, one request each; returns how many got the body.
fn fetch(c: &Netns, n: usize) -> usize {
    let url = format!("http://{ANYCAST}/");
    // One curl per connection: each gets a fresh source port, so R hashes each on its own.
    let script = format!(
        "for i in $(seq {n}); do curl -s --max-time 2 {url}; done | grep -c '^anycast$' || true"
    );
    c.sh(&script).unwrap().trim().parse().unwrap()
}

#[test]
fn two_appliances_behind_ecmp_share_the_flows_and_one_can_be_withdrawn() {
    sweep();
    let c = Netns::create("ec").unwrap();
    let r = Netns::create("er").unwrap();
    let s1 = Netns::create("e1").unwrap();
    let s2 = Netns::create("e2").unwrap();
    let link = |a: &Netns, an: &str, b: &Netns, bn: &str| {
        xdpos::rig::run(Command::new("ip").args([
            "link",
            "add",
            an,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            bn,
            "netns",
            b.name(),
        ]))
        .unwrap();
    };
    link(&c, "c0", &r, "r0");
    link(&r, "r1", &s1, "s1");
    link(&r, "r2", &s2, "s2");
    // Kernel ends compute their checksums and send whole segments (as the rig's kernel hosts
    // do): a veth would otherwise pass partial checksums and super-segments to AF_XDP.
    let plain = |i: &str| format!("ethtool -K {i} tx off tso off gso off gro off >/dev/null");
    c.sh(&format!(
        "ip addr add 10.9.0.2/24 dev c0 && ip link set c0 up && \
         ip route add default via 10.9.0.1 && {}",
        plain("c0")
    ))
    .unwrap();
    r.sh("ip addr add 10.9.0.1/24 dev r0 && ip addr add 10.1.1.1/24 dev r1 && \
         ip addr add 10.2.1.1/24 dev r2 && ip link set r0 up && ip link set r1 up && \
         ip link set r2 up && sysctl -qw net.ipv4.ip_forward=1 \
         net.ipv4.fib_multipath_hash_policy=1")
        .unwrap();
    r.sh(&format!("{} && {} && {}", plain("r0"), plain("r1"), plain("r2"))).unwrap();
    for (ns, i) in [(&s1, "s1"), (&s2, "s2")] {
        ns.sh(&format!("ip link set {i} up")).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("xdpos-ecmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f1, f2) = (dir.join("s1.toml"), dir.join("s2.toml"));
    std::fs::write(&f1, config("s1", "10.1.1.3", "10.1.1.1")).unwrap();
    std::fs::write(&f2, config("s2", "10.2.1.3", "10.2.1.1")).unwrap();
    let mut d1 = daemon(&s1, &f1);
    let mut d2 = daemon(&s2, &f2);
    r.sh(&format!(
        "ip route add {ANYCAST}/32 nexthop via 10.1.1.3 dev r1 nexthop via 10.2.1.3 dev r2"
    ))
    .unwrap();

    // Both reachable through R before the load (ARP resolved, steering in place).
    for a in ["10.1.1.3", "10.2.1.3"] {
        let ping = c.sh(&format!("ping -c 2 -i 0.2 -W 2 {a}"));
        assert!(ping.is_ok(), "C cannot ping {a} through R: {ping:?}");
    }
    let both = fetch(&c, 40);
    // Withdraw S1: new flows all go to S2.
    r.sh(&format!("ip route replace {ANYCAST}/32 via 10.2.1.3 dev r2")).unwrap();
    let only = fetch(&c, 20);

    let mut lines = Vec::new();
    for d in [&mut d1, &mut d2] {
        d.signal(Signal::TERM);
        let st = d.wait(DEADLINE).expect("the daemon exits after SIGTERM");
        assert!(st.success(), "exit {st}: {:?}", d.seen);
        lines.push(d.seen.clone());
    }
    for ns in [&s1, &s2] {
        assert_no_xdp(ns);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (n1, n2) = (served(&lines[0]), served(&lines[1]));
    println!(
        "ECMP: {both}/40 answered over both, {only}/20 after withdrawing S1; S1 {n1}, S2 {n2}"
    );
    assert_eq!(both, 40, "every request answered while both serve");
    assert_eq!(only, 20, "every request answered by S2 alone");
    assert_eq!(n1 + n2, 60, "S1 {n1} + S2 {n2} connections: {lines:?}");
    // 40 flows hashed over two next hops: each gets some (all 40 on one: p = 2^-39).
    assert!((1..40).contains(&n1), "S1 served {n1} of the first 40 and none after");
    assert!(n2 > 20, "S2 served {n2}: its share of the 40 and all 20 after");
}
