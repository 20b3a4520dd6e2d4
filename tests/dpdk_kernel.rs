//! The DPDK backend on the namespace rig, with the Linux kernel as the peers: `xdpos echo
//! --backend dpdk` serving a kernel host through DPDK's `net_af_packet` device on a veth
//! (`--no-huge --no-shconf`; UDP echo, a TCP echo transfer checked byte for byte, ping), and
//! `xdpos forward --backend dpdk` routing between two DPDK ports on the chain rig (UDP both
//! ways, a kernel TCP transfer both ways, ping through with the TTL decremented). Every test
//! runs the `xdpos` process (EAL is process-global), stops it with SIGTERM and checks its exit
//! report: the workers' frame accounting and every frame back in its pool after the devices
//! stopped (`dpdk: frames ok`).
//!
//! Built only with the `dpdk` feature (`cargo test -p xdpos-tests --features dpdk --test
//! dpdk_kernel`, after `cargo build -p xdpos --features dpdk`); `scripts/test.sh` runs it.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use xdpos::rig::{Chain, ChainOpts, Netns, Pair, PairOpts};
use xdpos_tests::*;

/// Starts `xdpos ARGS` in `ns` and waits for its `ready:` line.
fn start(ns: &Netns, args: &[&str]) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]).arg(xdpos_bin()).args(args);
    let mut c = Child::spawn(cmd);
    let ready = c.wait_line("ready:", Duration::from_secs(30));
    assert!(ready.is_some(), "xdpos {args:?} not ready: {:?}", c.seen);
    c
}

/// SIGTERM, a clean exit, and the DPDK leak check in the report; returns the stdout lines.
fn stop(mut c: Child) -> Vec<String> {
    c.signal(Signal::TERM);
    let st = c.wait(DEADLINE).expect("exits after SIGTERM");
    assert!(st.success(), "{st:?}\n{}", c.seen.join("\n"));
    assert!(
        c.seen.iter().any(|l| l == "dpdk: frames ok (every pool full after the devices closed)"),
        "{}",
        c.seen.join("\n")
    );
    c.seen.clone()
}

/// UDP through F both ways: a kernel echo on each side, a kernel client on the other, 100
/// datagrams of 1000 bytes each; how many came back intact, per direction.
fn udp_both_ways(chain: &Chain) -> Vec<u32> {
    vec![
        udp_round_trips(chain, chain.b.ip, 100, 1000),
        udp_round_trips(chain, chain.a.ip, 100, 1000),
    ]
}

#[test]
fn echo_over_dpdk_af_packet_serves_kernel_udp_tcp_and_ping() {
    sweep();
    let pair = Pair::new("dpe", &PairOpts::default()).unwrap();
    let x = start(
        &pair.ns_b,
        &[
            "echo",
            "--backend",
            "dpdk",
            "--interface",
            "xb0",
            "--addr",
            "10.0.0.2/24",
            "--port",
            "7",
            "--tcp-echo",
            "7",
            "--queues",
            "0",
        ],
    );
    let echo = SocketAddrV4::new(pair.b.ip, 7);
    let udp_small = udp_echoes(&pair.ns_a, pair.a.ip, echo, 200, 64);
    let udp_big = udp_echoes(&pair.ns_a, pair.a.ip, echo, 100, 1472);
    // 1 MiB through the TCP echo, every byte checked.
    let sent = pattern(1 << 20, 3);
    let back = pair
        .ns_a
        .run_in(|| {
            let mut c = TcpStream::connect_timeout(&echo.into(), Duration::from_secs(10)).unwrap();
            c.set_read_timeout(Some(DEADLINE)).unwrap();
            c.set_write_timeout(Some(DEADLINE)).unwrap();
            let mut w = c.try_clone().unwrap();
            let data = sent.clone();
            let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
            let mut got = vec![0u8; sent.len()];
            c.read_exact(&mut got).unwrap();
            writer.join().unwrap();
            got
        })
        .unwrap();
    let ping = pair.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", pair.b.ip));
    let lines = stop(x);
    assert_eq!((udp_small, udp_big), (200, 100), "{lines:?}");
    assert!(back == sent, "the TCP echo returned other bytes");
    let ping = ping.unwrap_or_else(|e| panic!("ping: {e}\n{lines:?}"));
    assert!(ping.contains("3 received"), "{ping}");
    let q = lines.iter().find(|l| l.starts_with("queue 0:")).expect("queue line");
    assert!(q.contains("frames ok"), "{q}");
    let echoed: u64 =
        q.split("echoed ").nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap();
    assert!(echoed >= 300, "{q}");
    assert!(q.contains("tcp accepted 1"), "{q}");
    let dev = lines
        .iter()
        .find(|l| l.starts_with("dpdk net_af_packet0 (net_af_packet)"))
        .expect("device line");
    assert!(dev.contains("rx ") && !dev.contains("rx 0 "), "{dev}");
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn router_forwards_between_two_dpdk_ports() {
    sweep();
    let chain = Chain::new("dpf", &ChainOpts::default()).unwrap();
    let x = start(
        &chain.ns_f,
        &[
            "forward",
            "--backend",
            "dpdk",
            "--iface",
            "xf0=10.0.1.1/24",
            "--iface",
            "xf1=10.0.2.1/24",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = x
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("metrics: http://")?.strip_suffix("/metrics"))
        .expect("the metrics address")
        .to_string();
    let udp = udp_both_ways(&chain);
    // A kernel TCP transfer, 2 MiB each way.
    let up = pattern(2 << 20, 1);
    let down = pattern(2 << 20, 2);
    let (at_b, at_a) = tcp_transfer(&chain, &up, &down);
    let ping = chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", chain.b.ip));
    // The devices' counters on the metrics endpoint (in F's namespace).
    let scrape = chain
        .ns_f
        .run_in(|| -> std::io::Result<String> {
            let mut c = TcpStream::connect(metrics.as_str())?;
            c.set_read_timeout(Some(DEADLINE))?;
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            Ok(body)
        })
        .unwrap()
        .expect("scrape");
    let value = |series: &str| -> Option<u64> {
        scrape.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let lines = stop(x);
    assert_eq!(udp, [100, 100], "{lines:?}");
    let rx0 =
        value(r#"xdpos_dpdk_rx_packets_total{device="net_af_packet0",driver="net_af_packet"}"#);
    assert!(rx0.is_some_and(|n| n >= 200), "{scrape}");
    let xs = value(r#"xdpos_dpdk_xstat_total{device="net_af_packet1",xstat="tx_good_packets"}"#);
    assert!(xs.is_some_and(|n| n >= 200), "{scrape}");
    assert!(at_b == up && at_a == down, "the TCP transfer arrived altered");
    let ping = ping.unwrap_or_else(|e| panic!("ping through: {e}\n{lines:?}"));
    assert!(ping.contains("3 received") && ping.contains("ttl=63"), "{ping}");
    let w = lines.iter().find(|l| l.starts_with("worker 0:")).expect("report line");
    assert!(w.contains("frames ok"), "{w}");
    for d in ["dpdk net_af_packet0 (net_af_packet)", "dpdk net_af_packet1 (net_af_packet)"] {
        assert!(lines.iter().any(|l| l.starts_with(d)), "{d}: {lines:?}");
    }
    assert_no_xdp(&chain.ns_f);
}

/// The daemon's router on the DPDK backend: `xdpos run --config` with `backend = "dpdk"` and
/// a `[dpdk]` table puts `net_af_packet` devices on F's veths (EAL without hugepages) and
/// routes kernel UDP both ways and ping through (TTL decremented); SIGTERM stops it with
/// exit 0, the workers' frame accounting and every frame back in its pool.
#[test]
fn daemon_routes_between_two_dpdk_ports_from_its_config() {
    sweep();
    let chain = Chain::new("dpd", &ChainOpts::default()).unwrap();
    let path = std::env::temp_dir().join(format!("xdpos-dpdk-router-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"backend = "dpdk"

[dpdk]
no_huge = true
memory_mb = 256
pmd = "af_packet"

[[interfaces]]
name = "xf0"
addresses = ["10.0.1.1/24"]

[[interfaces]]
name = "xf1"
addresses = ["10.0.2.1/24"]

[[workers]]
cpu = 0
queues = ["xf0:0", "xf1:0"]

[role]
kind = "router"

[metrics]
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let x = start(&chain.ns_f, &["run", "--config", path.to_str().unwrap()]);
    let ready = x.seen.iter().find(|l| l.starts_with("ready:")).cloned().unwrap_or_default();
    let udp = udp_both_ways(&chain);
    let ping = chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", chain.b.ip));
    // The devices' counters beside the workers' on the daemon's endpoint.
    let metrics = ready.split("metrics http://").nth(1).and_then(|s| s.strip_suffix("/metrics"));
    let scrape = chain
        .ns_f
        .run_in(|| -> std::io::Result<String> {
            let mut c = TcpStream::connect(metrics.unwrap_or("no address in the ready line"))?;
            c.set_read_timeout(Some(DEADLINE))?;
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            Ok(body)
        })
        .unwrap();
    let lines = stop(x);
    let _ = std::fs::remove_file(&path);
    let scrape = scrape.unwrap_or_else(|e| panic!("scrape {metrics:?}: {e}"));
    let rx1 = scrape.lines().find_map(|l| {
        l.strip_prefix(
            r#"xdpos_dpdk_rx_packets_total{device="net_af_packet1",driver="net_af_packet"}"#,
        )?
        .trim()
        .parse::<u64>()
        .ok()
    });
    assert!(rx1.is_some_and(|n| n >= 200), "{scrape}");
    assert!(
        ready.starts_with("ready: router on xf0,xf1") && ready.contains("dpdk net_af_packet"),
        "{ready}"
    );
    assert_eq!(udp, [100, 100], "{lines:?}");
    let ping = ping.unwrap_or_else(|e| panic!("ping through: {e}\n{lines:?}"));
    assert!(ping.contains("3 received") && ping.contains("ttl=63"), "{ping}");
    let w = lines.iter().find(|l| l.starts_with("worker 0 (queue 0):")).expect("report line");
    assert!(w.contains("frames ok"), "{w}");
    for d in ["dpdk net_af_packet0 (net_af_packet)", "dpdk net_af_packet1 (net_af_packet)"] {
        assert!(lines.iter().any(|l| l.starts_with(d)), "{d}: {lines:?}");
    }
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:?}");
    assert_no_xdp(&chain.ns_f);
}

/// `xdpos echo --backend dpdk` has no metrics endpoint: `--metrics` is refused before
/// anything starts, not silently ignored.
#[test]
fn dpdk_echo_refuses_a_metrics_address_it_would_not_serve() {
    let out = Command::new(xdpos_bin())
        .args(["echo", "--backend", "dpdk", "--interface", "lo", "--addr", "10.9.9.9"])
        .args(["--metrics", "127.0.0.1:0", "--seconds", "1"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--metrics is not served with --backend dpdk"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready:"));
}
