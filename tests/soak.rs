//! Soak: a bounded mixed load on two running xdpos processes (root), for `XDPOS_SOAK_SECONDS`
//! (default 45; `scripts/soak.sh` runs it for minutes):
//!
//! - `xdpos forward --role router` between kernel hosts A and B (a chain): UDP at a fixed rate
//!   from A to a kernel socket in B, and a TCP stream A → B echoed back by B's kernel;
//! - `xdpos echo` (UDP echo, TCP echo) for a kernel client: UDP echoes at a fixed rate, a
//!   long-lived TCP echo stream, and connection churn (connect, echo 100 bytes, close);
//!
//! every payload checked byte for byte. Every 5 s it prints both processes' resident memory
//! and the load's counters. At the end: resident memory flat after warm-up (the last sample
//! within 1 MiB of the first one taken after a fifth of the run), both processes' frame
//! accounting intact, zero drops in their reports, and every UDP datagram and TCP byte
//! accounted for (a veth without impairment loses nothing; a loss is an unexpected drop).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use xdpos::rig::{Chain, ChainOpts, Pair, PairOpts};
use xdpos_tests::*;

const UDP_ECHO: u16 = 7;
const TCP_ECHO: u16 = 8;
const SINK_UDP: u16 = 9000;
const SINK_TCP: u16 = 9001;
/// Datagrams per second of each UDP load.
const UDP_RATE: u64 = 2000;

#[derive(Default)]
struct Load {
    udp_sent: AtomicU64,
    udp_back: AtomicU64,
    fwd_sent: AtomicU64,
    fwd_got: AtomicU64,
    stream_bytes: AtomicU64,
    fwd_stream_bytes: AtomicU64,
    conns: AtomicU64,
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits for a clean exit after SIGTERM; returns the report lines.
fn stop(mut c: Child, what: &str) -> Vec<String> {
    c.signal(Signal::TERM);
    let st = c.wait(DEADLINE).unwrap_or_else(|| panic!("{what} did not exit"));
    assert!(st.success(), "{what}: {st:?} {:?}", c.seen);
    c.seen.clone()
}

/// Paces a loop at `rate` per second: sleeps until iteration `i` is due.
fn pace(t0: Instant, i: u64, rate: u64) {
    let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
    if let Some(d) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Echo round trips of a checked stream on `c` until `stop`; returns the bytes echoed.
fn echo_stream(mut c: TcpStream, stop: &AtomicBool, count: &AtomicU64) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut back = vec![0u8; 16 << 10];
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let block = payload(i, back.len());
        c.write_all(&block).expect("stream write");
        c.read_exact(&mut back).expect("stream echo");
        assert_eq!(back, block, "stream block {i} came back changed");
        count.fetch_add(block.len() as u64, Ordering::Relaxed);
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_mixed_load_keeps_memory_flat_and_loses_nothing() {
    sweep();
    let secs: u64 =
        std::env::var("XDPOS_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let run_for = Duration::from_secs(secs);

    // The router between A and B, and B's kernel sinks.
    let chain = Chain::new("sr", &ChainOpts::default()).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", chain.ns_f.name()]).arg(xdpos_bin()).args([
        "forward",
        "--role",
        "router",
        "--iface",
        &format!("{}={}/24", chain.fa.ifname, chain.fa.ip),
        "--iface",
        &format!("{}={}/24", chain.fb.ifname, chain.fb.ip),
    ]);
    let mut router = Child::spawn(cmd);
    assert!(router.wait_line("ready:", DEADLINE).is_some(), "router: {:?}", router.seen);
    let sink_udp = chain.ns_b.run_in(|| kernel_udp(chain.b.ip, SINK_UDP)).unwrap();
    let sink_tcp =
        chain.ns_b.run_in(|| TcpListener::bind((chain.b.ip, SINK_TCP)).unwrap()).unwrap();

    // The echo host.
    let pair = Pair::new("se", &PairOpts::default()).unwrap();
    // The churn's client closes first: let it reuse its TIME-WAIT ports on long runs.
    pair.ns_a
        .sh("sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range='1024 65000'")
        .unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()]).arg(xdpos_bin()).args([
        "echo",
        "--interface",
        &pair.b.ifname,
        "--addr",
        &format!("{}/24", pair.b.ip),
        "--port",
        &UDP_ECHO.to_string(),
        "--tcp-echo",
        &TCP_ECHO.to_string(),
    ]);
    let mut echo = Child::spawn(cmd);
    assert!(echo.wait_line("ready:", DEADLINE).is_some(), "echo: {:?}", echo.seen);
    let (router_pid, echo_pid) = (router.child.id(), echo.child.id());

    let load = Load::default();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new();
    std::thread::scope(|s| {
        // Forwarding: UDP A -> B's kernel socket, counted at B.
        s.spawn(|| {
            chain.ns_a.enter().unwrap();
            let u = kernel_udp(chain.a.ip, 0);
            let dst = SocketAddrV4::new(chain.b.ip, SINK_UDP);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                u.send_to(&payload(i as u32, 200), dst).expect("send through the router");
                load.fwd_sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
                pace(t0, i, UDP_RATE);
            }
        });
        s.spawn(|| {
            let mut buf = [0u8; 512];
            let mut next = 0u32;
            // Until the load stopped and nothing came for the socket's read timeout.
            loop {
                if let Ok(n) = sink_udp.recv(&mut buf) {
                    let seq = check_payload(&buf[..n]).expect("a forwarded datagram intact");
                    assert!(seq >= next, "datagram {seq} after {next}: duplicated or reordered");
                    next = seq + 1;
                    load.fwd_got.fetch_add(1, Ordering::Relaxed);
                } else if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        // Forwarding: a TCP stream A -> B's kernel, echoed back by B.
        s.spawn(|| {
            let (mut c, _) = sink_tcp.accept().expect("accept through the router");
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => c.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        s.spawn(|| {
            chain.ns_a.enter().unwrap();
            let c = TcpStream::connect_timeout(
                &SocketAddrV4::new(chain.b.ip, SINK_TCP).into(),
                Duration::from_secs(5),
            )
            .expect("TCP through the router");
            echo_stream(c, &stop, &load.fwd_stream_bytes);
        });
        // The echo host: UDP echoes at a fixed rate.
        s.spawn(|| {
            pair.ns_a.enter().unwrap();
            let u = kernel_udp(Ipv4Addr::UNSPECIFIED, 0);
            let dst = SocketAddrV4::new(pair.b.ip, UDP_ECHO);
            let mut buf = [0u8; 512];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                u.send_to(&payload(i as u32, 100), dst).unwrap();
                load.udp_sent.fetch_add(1, Ordering::Relaxed);
                // Collect whatever came back so far (replies are checked, not awaited).
                u.set_nonblocking(true).unwrap();
                while let Ok(n) = u.recv(&mut buf) {
                    assert!(check_payload(&buf[..n]).is_some(), "an echo came back changed");
                    load.udp_back.fetch_add(1, Ordering::Relaxed);
                }
                u.set_nonblocking(false).unwrap();
                i += 1;
                pace(t0, i, UDP_RATE);
            }
            let end = Instant::now() + Duration::from_secs(1);
            while Instant::now() < end {
                if let Ok(n) = u.recv(&mut buf) {
                    assert!(check_payload(&buf[..n]).is_some());
                    load.udp_back.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // The echo host: a long-lived TCP stream and connection churn.
        s.spawn(|| {
            pair.ns_a.enter().unwrap();
            let c = TcpStream::connect_timeout(
                &SocketAddrV4::new(pair.b.ip, TCP_ECHO).into(),
                Duration::from_secs(5),
            )
            .expect("TCP echo stream");
            echo_stream(c, &stop, &load.stream_bytes);
        });
        s.spawn(|| {
            pair.ns_a.enter().unwrap();
            let dst = SocketAddrV4::new(pair.b.ip, TCP_ECHO);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let mut c = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let p = payload(i, 100);
                c.write_all(&p).unwrap();
                let mut back = [0u8; 100];
                c.read_exact(&mut back).unwrap_or_else(|e| panic!("connection {i} echo: {e}"));
                assert_eq!(&back[..], &p[..]);
                drop(c);
                load.conns.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Samples.
        println!("   t(s)  rss echo KiB  rss router KiB  udp sent/back  fwd sent/got  stream MiB  fwd-stream MiB  conns");
        while t0.elapsed() < run_for {
            std::thread::sleep(Duration::from_secs(5).min(run_for.saturating_sub(t0.elapsed())));
            let (re, rr) = (rss_kib(echo_pid), rss_kib(router_pid));
            let l = &load;
            let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
            println!(
                "{:7.0} {:13} {:15} {:>14} {:>13} {:11.1} {:15.1} {:6}",
                t0.elapsed().as_secs_f64(),
                re,
                rr,
                format!("{}/{}", r(&l.udp_sent), r(&l.udp_back)),
                format!("{}/{}", r(&l.fwd_sent), r(&l.fwd_got)),
                r(&l.stream_bytes) as f64 / (1 << 20) as f64,
                r(&l.fwd_stream_bytes) as f64 / (1 << 20) as f64,
                r(&l.conns)
            );
            samples.push((t0.elapsed().as_secs(), re, rr));
        }
        stop.store(true, Ordering::Relaxed);
    });

    // The kernel client's retransmissions (timeouts, tail-loss probes): each may reach xdpos
    // as a duplicate, which TCP drops as out of window and answers with an ACK.
    let retrans = pair.ns_a.run_in(|| nstat(&["TcpRetransSegs"])[0]).unwrap();
    let (echo_report, echo_drops) = stop_and_check(echo, "xdpos echo");
    let (router_report, router_drops) = stop_and_check(router, "xdpos forward");
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak {secs} s: udp {} sent {} echoed, forwarded {} sent {} received, stream {} B, \
         forwarded stream {} B, {} connections",
        r(&load.udp_sent),
        r(&load.udp_back),
        r(&load.fwd_sent),
        r(&load.fwd_got),
        r(&load.stream_bytes),
        r(&load.fwd_stream_bytes),
        r(&load.conns)
    );
    for l in echo_report.iter().chain(&router_report) {
        println!("  {l}");
    }
    println!("  kernel client retransmissions: {retrans}");
    // Zero unexpected drops: the echo host drops nothing but the duplicates of the kernel's
    // retransmissions (and frames still arriving after the stop); the router drops nothing.
    for (k, &n) in &echo_drops {
        match k.as_str() {
            "tcp" | "tcp_out_of_window" => {
                assert!(n <= retrans, "{k}={n}, {retrans} retransmitted")
            }
            "drained" => {}
            _ => panic!("xdpos echo: unexpected drops {k}={n}: {echo_report:?}"),
        }
    }
    assert!(router_drops.is_empty(), "xdpos forward: drops {router_drops:?}: {router_report:?}");
    for l in router_report.iter().filter(|l| l.starts_with("worker ")) {
        assert!(l.contains(" dropped 0 "), "xdpos forward: {l}");
    }
    // Memory flat after warm-up.
    let warm = samples.iter().find(|s| s.0 >= secs / 5).or(samples.first()).copied().unwrap();
    let last = *samples.last().unwrap();
    for (what, w, l) in [("echo", warm.1, last.1), ("router", warm.2, last.2)] {
        assert!(l <= w + 1024, "{what}: RSS {w} KiB after warm-up, {l} KiB at the end");
    }
    // Nothing lost.
    assert_eq!(r(&load.udp_back), r(&load.udp_sent), "UDP echoes lost");
    assert_eq!(r(&load.fwd_got), r(&load.fwd_sent), "forwarded datagrams lost");
    assert!(r(&load.conns) > secs, "connection churn: {}", r(&load.conns));
    assert_no_xdp(&pair.ns_b);
    assert_no_xdp(&chain.ns_f);
}

/// Stops a process: clean exit, frame accounting intact; returns its report lines and the
/// drops of its `; drops [..]` lists by label.
fn stop_and_check(c: Child, what: &str) -> (Vec<String>, BTreeMap<String, u64>) {
    let seen = stop(c, what);
    let lines: Vec<String> = seen
        .into_iter()
        .filter(|l| {
            l.starts_with("queue ") || l.starts_with("worker ") || l.starts_with("steering")
        })
        .collect();
    let mut drops = BTreeMap::new();
    for l in lines.iter().filter(|l| !l.starts_with("steering")) {
        assert!(l.contains("frames ok"), "{what}: frame accounting: {l}");
        if let Some(rest) = l.split("drops [").nth(1) {
            let list = rest.split(']').next().unwrap_or_default();
            for kv in list.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("label=count");
                *drops.entry(k.to_string()).or_default() += v.parse::<u64>().expect("count");
            }
        }
    }
    (lines, drops)
}

/// `nstat` counters of the calling thread's namespace.
fn nstat(names: &[&str]) -> Vec<u64> {
    let out = Command::new("nstat").arg("-az").args(names).output().expect("nstat");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    names
        .iter()
        .map(|n| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(n))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}
