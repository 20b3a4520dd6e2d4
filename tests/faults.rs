//! Faults survived by a running `xdpos echo` process (UDP echo, TCP echo) on the namespace rig
//! (root): its interface and the peer's going down and up, MTU changes on both ends, and a
//! kernel TCP stream through 1% loss each way (nftables on A's veth). After each fault the
//! kernel client is served again (UDP echoes, a long-lived TCP connection, a new one), and at
//! the end the process exits cleanly with its frame accounting intact. `tcp_kernel.rs` has 5%
//! loss with duplication and reordering; `echo_process.rs` has `kill -9` and a restart.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use xdpos::rig::{Pair, PairOpts};
use xdpos_tests::*;

const UDP_ECHO: u16 = 7;
const TCP_ECHO: u16 = 8;

fn start_echo(pair: &Pair) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pair.ns_b.name()])
        .arg(xdpos_bin())
        .args(["echo", "--interface", &pair.b.ifname, "--addr", &format!("{}/24", pair.b.ip)])
        .args(["--port", &UDP_ECHO.to_string(), "--tcp-echo", &TCP_ECHO.to_string()]);
    let mut child = Child::spawn(cmd);
    assert!(child.wait_line("ready:", DEADLINE).is_some(), "xdpos echo: {:?}", child.seen);
    child
}

/// Stops the process: clean exit, frame accounting intact; returns its report lines.
fn stop(mut child: Child) -> Vec<String> {
    child.signal(Signal::TERM);
    let st = child.wait(DEADLINE).expect("xdpos exits after SIGTERM");
    assert!(st.success(), "exit {st:?}: {:?}", child.seen);
    for l in child.seen.iter().filter(|l| l.starts_with("queue ")) {
        assert!(l.contains("frames ok"), "frame accounting: {l}");
    }
    child.seen.clone()
}

/// UDP echoes (retried for up to `limit`: ARP and the link may need a moment after a fault),
/// then a round trip on `conn` and on a new connection. The calling thread is in A.
fn served(b: Ipv4Addr, conn: &mut TcpStream, limit: Duration, what: &str) {
    let s = kernel_udp(Ipv4Addr::UNSPECIFIED, 0);
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    let mut ok = 0;
    let mut i = 0u32;
    while ok < 5 {
        assert!(Instant::now() < deadline, "no UDP echo within {limit:?} after {what}");
        s.send_to(&payload(i, 100), SocketAddrV4::new(b, UDP_ECHO)).unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            if check_payload(&buf[..n]) == Some(i) {
                ok += 1;
            }
        }
        i += 1;
    }
    conn.write_all(b"after the fault").unwrap();
    let mut got = [0u8; 15];
    conn.read_exact(&mut got).unwrap_or_else(|e| panic!("long-lived TCP after {what}: {e}"));
    assert_eq!(&got, b"after the fault");
    let mut c = TcpStream::connect_timeout(&SocketAddrV4::new(b, TCP_ECHO).into(), limit)
        .unwrap_or_else(|e| panic!("new TCP connection after {what}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"new").unwrap();
    let mut got = [0u8; 3];
    c.read_exact(&mut got).unwrap_or_else(|e| panic!("new TCP echo after {what}: {e}"));
}

/// A fault: what it does to the rig.
type Fault<'a> = Box<dyn Fn() + Sync + 'a>;

#[test]
fn a_running_echo_survives_links_going_down_and_up_and_mtu_changes() {
    sweep();
    let pair = Pair::new("fd", &PairOpts::default()).unwrap();
    let echo = start_echo(&pair);
    let (a, b) = (&pair.a.ifname, &pair.b.ifname);
    let faults: Vec<(&str, Fault<'_>)> = vec![
        (
            "xdpos's interface down for 1 s, then up",
            Box::new(|| {
                pair.ns_b.sh(&format!("ip link set {b} down")).unwrap();
                std::thread::sleep(Duration::from_secs(1));
                pair.ns_b.sh(&format!("ip link set {b} up")).unwrap();
            }),
        ),
        (
            "the peer's interface down for 1 s, then up",
            Box::new(|| {
                pair.ns_a.sh(&format!("ip link set {a} down")).unwrap();
                std::thread::sleep(Duration::from_secs(1));
                pair.ns_a.sh(&format!("ip link set {a} up")).unwrap();
                // The address's routes and the static neighbour came back with the link.
                let _ = pair.ns_a.sh(&format!(
                    "ip neigh replace {} lladdr {} dev {a} nud permanent",
                    pair.b.ip,
                    xdpos::rig::mac_str(&pair.b.mac)
                ));
            }),
        ),
        (
            "MTU 1500 -> 1280 on both ends",
            Box::new(|| {
                pair.ns_b.sh(&format!("ip link set {b} mtu 1280")).unwrap();
                pair.ns_a.sh(&format!("ip link set {a} mtu 1280")).unwrap();
            }),
        ),
        (
            "MTU 1280 -> 1500 on both ends",
            Box::new(|| {
                pair.ns_a.sh(&format!("ip link set {a} mtu 1500")).unwrap();
                pair.ns_b.sh(&format!("ip link set {b} mtu 1500")).unwrap();
            }),
        ),
    ];
    pair.ns_a
        .run_in(|| {
            let mut conn = TcpStream::connect_timeout(
                &SocketAddrV4::new(pair.b.ip, TCP_ECHO).into(),
                Duration::from_secs(5),
            )
            .expect("kernel TCP connection to the xdpos echo");
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            served(pair.b.ip, &mut conn, Duration::from_secs(5), "no fault");
            for (what, fault) in &faults {
                fault();
                served(pair.b.ip, &mut conn, Duration::from_secs(10), what);
            }
        })
        .unwrap();
    let seen = stop(echo);
    eprintln!("{seen:?}");
    assert_no_xdp(&pair.ns_b);
}

/// nftables on A's veth: 1% of TCP frames dropped each way.
const LOSS_1: &str = r#"table netdev xdpos_loss1 {
  chain in {
    type filter hook ingress device "xa0" priority 0; policy accept;
    meta l4proto tcp numgen random mod 100 < 1 counter drop
  }
  chain out {
    type filter hook egress device "xa0" priority 0; policy accept;
    meta l4proto tcp numgen random mod 100 < 1 counter drop
  }
}"#;

#[test]
fn a_tcp_stream_through_one_percent_loss_each_way_is_byte_exact() {
    sweep();
    let pair = Pair::new("fl", &PairOpts::default()).unwrap();
    pair.ns_a.sh(&format!("nft -f - <<'EOF'\n{LOSS_1}\nEOF")).expect("nftables loss");
    let echo = start_echo(&pair);
    const TOTAL: usize = 8 << 20;
    let (sent, back) = pair
        .ns_a
        .run_in(|| {
            let mut c = TcpStream::connect_timeout(
                &SocketAddrV4::new(pair.b.ip, TCP_ECHO).into(),
                Duration::from_secs(5),
            )
            .expect("connect through the lossy link");
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let data: Vec<u8> =
                (0..TOTAL).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let mut w = c.try_clone().unwrap();
            let d2 = data.clone();
            let writer = std::thread::spawn(move || w.write_all(&d2).map(|_| d2.len()));
            let mut back = vec![0u8; TOTAL];
            c.read_exact(&mut back).expect("the echo of every byte");
            writer.join().unwrap().expect("write");
            (data, back)
        })
        .unwrap();
    let nft = pair.ns_a.sh("nft list table netdev xdpos_loss1").unwrap();
    let drops: Vec<u64> = nft
        .split("packets ")
        .skip(1)
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    pair.ns_a.sh("nft delete table netdev xdpos_loss1").unwrap();
    let seen = stop(echo);
    eprintln!("8 MiB each way through 1% loss: nft drops {drops:?}; {seen:?}");
    assert!(sent == back, "the echo is byte-exact");
    assert!(drops.len() == 2 && drops.iter().all(|&d| d > 0), "loss happened both ways: {nft}");
    let q = seen.iter().find(|l| l.starts_with("queue ")).expect("report");
    assert!(q.contains("retransmits") && !q.contains("retransmits 0,"), "xdpos retransmitted: {q}");
    assert_no_xdp(&pair.ns_b);
}

/// xdpos's address on the corruption chain (B's kernel keeps B's own).
const XDPOS_C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

/// An L2 bridge in F between A's and B's veths (one shared-UMEM AF_XDP group) that flips one
/// byte near the end of 1% of the frames longer than 100 bytes (a TCP or UDP payload byte:
/// only the checksum can tell), seeded; returns (forwarded, corrupted). Checks its frame
/// accounting when stopped.
fn corrupting_bridge(
    chain: &xdpos::rig::Chain,
    stop: &std::sync::atomic::AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> (u64, u64) {
    use nic::afxdp::{XdpMode, XdpProgram, XskConfig, XskGroup};
    use nic::{Burst, Port};
    use std::sync::atomic::Ordering;
    chain.ns_f.enter().unwrap();
    let pa = XdpProgram::attach(&chain.fa.ifname, XdpMode::Native).unwrap();
    let pb = XdpProgram::attach(&chain.fb.ifname, XdpMode::Native).unwrap();
    let cfg = |i: &str| XskConfig { frames: 8192, ..XskConfig::new(i, 0) };
    let mut g =
        XskGroup::open(&[(cfg(&chain.fa.ifname), &pa), (cfg(&chain.fb.ifname), &pb)]).unwrap();
    pa.steer_all().unwrap();
    pb.steer_all().unwrap();
    let _ = ready.send(());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let (mut fwd, mut bad) = (0u64, 0u64);
    let mut b = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            g.port(from).rx_burst(&mut b);
            for d in b.iter().copied() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 100 == 0 && d.len > 100 {
                    let mut p = g.port(from);
                    let f = p.frame_mut(&d);
                    let n = f.len();
                    f[n - 3] ^= 0x5a;
                    bad += 1;
                }
            }
            fwd += b.len() as u64;
            g.port(to).tx_burst(&mut b);
            g.port(to).free_burst(&mut b);
            g.port(to).reclaim();
        }
    }
    pa.steer_none().unwrap();
    pb.steer_none().unwrap();
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        let mut drain = Burst::new();
        for i in 0..2 {
            g.port(i).reclaim();
            while g.port(i).rx_burst(&mut drain) > 0 {
                g.port(i).free_burst(&mut drain);
            }
        }
        let c = g.frame_counts();
        if c.tx == 0 && c.kernel == 0 && c.completion == 0 && c.rx == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    g.audit().unwrap_or_else(|e| panic!("bridge: {e}"));
    drop(g);
    drop((pa, pb));
    (fwd, bad)
}

#[test]
fn a_tcp_stream_through_one_percent_corruption_is_byte_exact() {
    use std::sync::atomic::{AtomicBool, Ordering};
    sweep();
    let opts = xdpos::rig::ChainOpts {
        queues: 1,
        a_cidr: (Ipv4Addr::new(10, 0, 0, 1), 24),
        b_cidr: (Ipv4Addr::new(10, 0, 0, 2), 24),
        gateways: None,
    };
    let chain = xdpos::rig::Chain::new("fc", &opts).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", chain.ns_b.name()])
        .arg(xdpos_bin())
        .args(["echo", "--interface", &chain.b.ifname, "--addr", &format!("{XDPOS_C}/24")])
        .args(["--port", &UDP_ECHO.to_string(), "--tcp-echo", &TCP_ECHO.to_string()]);
    let mut echo = Child::spawn(cmd);
    assert!(echo.wait_line("ready:", DEADLINE).is_some(), "xdpos echo: {:?}", echo.seen);
    const TOTAL: usize = 8 << 20;
    let stop_bridge = AtomicBool::new(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ((sent, back, csum_errors), (fwd, bad)) = std::thread::scope(|s| {
        let br = s.spawn(|| corrupting_bridge(&chain, &stop_bridge, ready_tx));
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("bridge ready");
        let r = chain
            .ns_a
            .run_in(|| {
                let mut c = TcpStream::connect_timeout(
                    &SocketAddrV4::new(XDPOS_C, TCP_ECHO).into(),
                    Duration::from_secs(5),
                )
                .expect("connect through the corrupting bridge");
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let data: Vec<u8> =
                    (0..TOTAL).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
                let mut w = c.try_clone().unwrap();
                let d2 = data.clone();
                let writer = std::thread::spawn(move || w.write_all(&d2));
                let mut back = vec![0u8; TOTAL];
                c.read_exact(&mut back).expect("the echo of every byte");
                writer.join().unwrap().expect("write");
                let nstat = std::process::Command::new("nstat")
                    .args(["-az", "TcpInCsumErrors"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let errs: u64 = nstat
                    .lines()
                    .find(|l| l.starts_with("TcpInCsumErrors"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (data, back, errs)
            })
            .unwrap();
        stop_bridge.store(true, Ordering::Relaxed);
        (r, br.join().unwrap())
    });
    let seen = stop(echo);
    let q = seen.iter().find(|l| l.starts_with("queue ")).expect("report").clone();
    eprintln!(
        "8 MiB each way, bridge forwarded {fwd} corrupted {bad}; A's kernel TcpInCsumErrors \
         {csum_errors}; {q}"
    );
    assert!(sent == back, "the echo is byte-exact");
    assert!(bad > 0, "the bridge corrupted frames");
    assert!(q.contains("bad_checksum="), "xdpos dropped corrupted segments as bad_checksum: {q}");
    assert!(csum_errors > 0, "A's kernel dropped corrupted segments too");
    assert_no_xdp(&chain.ns_f);
    assert_no_xdp(&chain.ns_b);
}
