//! Integration tests of the AF_XDP NIC layer on real veth pairs in network namespaces, with
//! the Linux kernel's UDP and TCP sockets as the peer. Root is required (CI runs as root).
//!
//! Each test builds its own `pair` rig (unique names, removed on drop, also on failure), and
//! ends by checking the frame-accounting invariant and that no XDP program is left attached.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libos::wire::TxChecksum;
use nic::afxdp::{L4Proto, XdpMode, XdpProgram, XskConfig, XskPort};
use nic::{Burst, NicError, Port};
use xdpos::raw::{build_udp_with, echo_in_place, parse_udp, UdpFlow};
use xdpos::rig::{Pair, PairOpts};
use xdpos_tests::*;

const ECHO_PORT: u16 = 9000;

/// Kernel UDP sockets in A send `flows × per_flow` datagrams of `size` bytes to xdpos in B,
/// which owns B's address through the steering program and serves both queues of a 2-queue
/// veth; xdpos checks every datagram and echoes it from the same frame; A checks every echo.
fn udp_round_trip(size: usize) {
    sweep();
    let pair = Pair::new("rt", &PairOpts { queues: 2, ..Default::default() }).unwrap();
    let (flows, per_flow) = (32u32, 8u32);
    let total = (flows * per_flow) as usize;
    let (ready_tx, ready_rx) = mpsc::channel();

    let (b_result, a_result) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            pair.ns_b.enter().unwrap();
            let prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Auto).unwrap();
            prog.own_addr(pair.b.ip).unwrap();
            let mut ports: Vec<XskPort> = (0..2)
                .map(|q| XskPort::open(&XskConfig::new(&pair.b.ifname, q), &prog).unwrap())
                .collect();
            ready_tx.send(()).unwrap();
            let mut seen = HashSet::new();
            let mut per_queue = [0usize; 2];
            let mut bad = 0usize;
            let mut burst = Burst::new();
            let done = poll_until(&mut ports, DEADLINE, |ports| {
                for (q, port) in ports.iter_mut().enumerate() {
                    port.rx_burst(&mut burst);
                    per_queue[q] += burst.len();
                    for d in burst.as_mut_slice() {
                        let f = port.frame_mut(d);
                        let ok = parse_udp(f).and_then(|u| {
                            (u.checksum_ok && u.ip_checksum_ok && u.payload.len() == size)
                                .then(|| check_payload(u.payload))
                                .flatten()
                        });
                        match ok {
                            Some(seq) => {
                                seen.insert(seq);
                                assert!(echo_in_place(f, ECHO_PORT));
                            }
                            None => bad += 1,
                        }
                    }
                    while !burst.is_empty() {
                        if port.tx_burst(&mut burst) == 0 {
                            port.reclaim();
                        }
                    }
                }
                seen.len() == total
            });
            // Let the last echoes complete, then check where every frame is.
            let counts: Vec<_> = ports.iter_mut().map(assert_frames_accounted).collect();
            let verdicts = prog.verdicts().unwrap();
            (done, seen.len(), per_queue, bad, counts, verdicts)
        });
        ready_rx.recv_timeout(DEADLINE).expect("xdpos side ready");
        let a = s.spawn(|| {
            pair.ns_a.enter().unwrap();
            let socks: Vec<_> = (0..flows).map(|_| kernel_udp(pair.a.ip, 0)).collect();
            let dst = SocketAddrV4::new(pair.b.ip, ECHO_PORT);
            for round in 0..per_flow {
                for (i, s) in socks.iter().enumerate() {
                    s.send_to(&payload(round * flows + i as u32, size), dst).unwrap();
                }
            }
            let mut echoed = HashSet::new();
            let mut buf = vec![0u8; 2048];
            let deadline = Instant::now() + DEADLINE;
            while echoed.len() < total && Instant::now() < deadline {
                for s in &socks {
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        assert_eq!(
                            from,
                            std::net::SocketAddr::V4(dst),
                            "echo comes from the service"
                        );
                        let seq = check_payload(&buf[..n]).expect("echo payload intact");
                        echoed.insert(seq);
                        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                    }
                }
            }
            echoed.len()
        });
        (b.join().unwrap(), a.join().unwrap())
    });

    let (done, received, per_queue, bad, counts, verdicts) = b_result;
    assert!(done, "xdpos received {received}/{total} datagrams\n{}", dump(&pair));
    assert_eq!(bad, 0, "malformed or corrupted datagrams at xdpos");
    assert_eq!(a_result, total, "echoes received by the kernel socket\n{}", dump(&pair));
    assert!(per_queue[0] > 0 && per_queue[1] > 0, "both queues carry flows: {per_queue:?}");
    assert_eq!(verdicts.redirect.packets as usize, per_queue[0] + per_queue[1]);
    for c in &counts {
        assert_eq!(c.held, 0);
        assert_eq!(c.kernel, 0, "{c:?}");
    }
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn kernel_udp_to_xdpos_and_echo_back_64_bytes_two_queues() {
    udp_round_trip(64);
}

#[test]
fn kernel_udp_to_xdpos_and_echo_back_1472_bytes_two_queues() {
    udp_round_trip(1472);
}

/// xdpos builds datagrams from scratch in frames it allocates, on both queues, and the kernel
/// socket in A receives every one intact.
fn xdpos_originated(size: usize) {
    sweep();
    let pair = Pair::new("tx", &PairOpts { queues: 2, ..Default::default() }).unwrap();
    let per_queue = 200u32;
    let (port_tx, port_rx) = mpsc::channel();
    let pair_ref = &pair;
    // Datagrams the kernel socket has taken so far: the sender keeps at most a burst ahead of
    // it, so a receiver descheduled on a busy machine cannot overflow its socket buffer.
    let received = AtomicUsize::new(0);
    let received = &received;
    std::thread::scope(|s| {
        let a = s.spawn(move || {
            let pair = pair_ref;
            pair.ns_a.enter().unwrap();
            let sock = kernel_udp(pair.a.ip, 0);
            // Room for a burst of full-size datagrams even while this thread waits for a CPU
            // (the default buffer holds ~40 of them; root may force more).
            rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, 4 << 20).unwrap();
            port_tx.send(sock.local_addr().unwrap().port()).unwrap();
            let mut got = HashSet::new();
            let mut buf = vec![0u8; 2048];
            let deadline = Instant::now() + DEADLINE;
            while got.len() < 2 * per_queue as usize && Instant::now() < deadline {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.insert(check_payload(&buf[..n]).expect("payload intact"));
                    received.store(got.len(), Ordering::Release);
                }
            }
            got.len()
        });
        let kernel_port = port_rx.recv_timeout(DEADLINE).unwrap();
        s.spawn(move || {
            let pair = pair_ref;
            pair.ns_b.enter().unwrap();
            let mut burst = Burst::new();
            for q in 0..2u32 {
                // Transmit needs no XDP program: a bound socket sends.
                let mut port = XskPort::bind(&XskConfig::new(&pair.b.ifname, q)).unwrap();
                let flow = UdpFlow {
                    src_mac: pair.b.mac,
                    dst_mac: pair.a.mac,
                    src_ip: pair.b.ip,
                    dst_ip: pair.a.ip,
                    src_port: 7000 + q as u16,
                    dst_port: kernel_port,
                };
                let mut seq = q * per_queue;
                while seq < (q + 1) * per_queue {
                    let want = ((q + 1) * per_queue - seq).min(64) as usize;
                    assert_eq!(port.alloc_burst(&mut burst, want), want);
                    for d in burst.as_mut_slice() {
                        // Every other frame leaves its UDP checksum to the port (Csum::Partial):
                        // the kernel drops a datagram whose checksum is wrong.
                        let csum =
                            if seq % 2 == 0 { TxChecksum::Full } else { TxChecksum::Partial };
                        let room = port.room_mut(d);
                        let (len, hdr) =
                            build_udp_with(room, &flow, &payload(seq, size), csum).unwrap();
                        (d.len, d.hdr) = (len as u32, hdr);
                        seq += 1;
                    }
                    while !burst.is_empty() {
                        if port.tx_burst(&mut burst) == 0 {
                            port.reclaim();
                        }
                    }
                    // Pace: the kernel socket's receive buffer is finite. Wait (bounded) until
                    // the receiver has taken all but the last burst.
                    let deadline = Instant::now() + DEADLINE;
                    while received.load(Ordering::Acquire) + 64 < seq as usize
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                let c = assert_frames_accounted(&mut port);
                assert_eq!((c.held, c.tx, c.kernel), (0, 0, 0), "{c:?}");
                assert_eq!(port.stats().tx_packets, u64::from(per_queue));
                assert_eq!(port.stats().tx_csum_sw, u64::from(per_queue / 2));
            }
        });
        let got = a.join().unwrap();
        assert_eq!(
            got,
            2 * per_queue as usize,
            "{}\nA's UDP counters: {:?}",
            dump(&pair),
            pair.ns_a.sh("grep Udp: /proc/net/snmp")
        );
    });
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn xdpos_originated_udp_reaches_kernel_socket_64_bytes() {
    xdpos_originated(64);
}

#[test]
fn xdpos_originated_udp_reaches_kernel_socket_1472_bytes() {
    xdpos_originated(1472);
}

/// B's kernel keeps its own traffic while xdpos owns one UDP port on the same address: ARP
/// (A's neighbour entry is removed), ping, a kernel TCP connection moving data both ways, and
/// a kernel UDP socket on another port all keep working; only the owned port reaches xdpos.
#[test]
fn pass_through_keeps_kernel_traffic_while_xdpos_owns_a_port() {
    sweep();
    let pair = Pair::new("pt", &PairOpts { b_kernel_ip: true, ..Default::default() }).unwrap();
    pair.ns_a.sh(&format!("ip neigh del {} dev {}", pair.b.ip, pair.a.ifname)).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    const OWNED: u16 = 9000;
    const KERNEL_UDP: u16 = 9001;
    const TCP: u16 = 5001;
    const TCP_BYTES: usize = 4 << 20;

    let pair_ref = &pair;
    std::thread::scope(|s| {
        // B: xdpos owns UDP 9000 on B's address; B's kernel serves TCP 5001 and UDP 9001.
        let xdpos = s.spawn(move || {
            let pair = pair_ref;
            pair.ns_b.enter().unwrap();
            let prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Auto).unwrap();
            prog.own_port(Some(pair.b.ip), L4Proto::Udp, OWNED).unwrap();
            let mut port = XskPort::open(&XskConfig::new(&pair.b.ifname, 0), &prog).unwrap();
            let listener = TcpListener::bind(SocketAddrV4::new(pair.b.ip, TCP)).unwrap();
            let kudp = kernel_udp(pair.b.ip, KERNEL_UDP);
            ready_tx.send(()).unwrap();
            let server = std::thread::scope(|s2| {
                let tcp = s2.spawn(move || {
                    let (mut c, _) = listener.accept().unwrap();
                    c.set_read_timeout(Some(DEADLINE)).unwrap();
                    let mut buf = vec![0u8; TCP_BYTES];
                    c.read_exact(&mut buf).unwrap();
                    // Echo it all back.
                    c.write_all(&buf).unwrap();
                    buf.iter().map(|&b| u64::from(b)).sum::<u64>()
                });
                let mut owned = 0usize;
                let mut burst = Burst::new();
                let deadline = Instant::now() + DEADLINE;
                while stop_rx.try_recv().is_err() && Instant::now() < deadline {
                    port.rx_burst(&mut burst);
                    for d in burst.iter() {
                        let u = parse_udp(port.frame(d)).expect("only UDP reaches xdpos");
                        assert_eq!(u.flow.dst_port, OWNED, "only the owned port reaches xdpos");
                        owned += 1;
                    }
                    port.free_burst(&mut burst);
                    if burst.is_empty() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                let mut kbuf = [0u8; 64];
                let mut kernel_udp_got = 0;
                while kudp.recv(&mut kbuf).is_ok() {
                    kernel_udp_got += 1;
                }
                (owned, kernel_udp_got, tcp.join().unwrap())
            });
            assert_frames_accounted(&mut port);
            (server, prog.verdicts().unwrap())
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();

        let a = s.spawn(|| {
            pair.ns_a.enter().unwrap();
            // UDP to both ports first (ARP resolves through the pass-through path).
            let s = kernel_udp(pair.a.ip, 0);
            for i in 0..50 {
                s.send_to(&payload(i, 32), SocketAddrV4::new(pair.b.ip, OWNED)).unwrap();
                s.send_to(&payload(i, 32), SocketAddrV4::new(pair.b.ip, KERNEL_UDP)).unwrap();
            }
            // TCP through B's kernel, both directions.
            let mut c = TcpStream::connect_timeout(
                &SocketAddrV4::new(pair.b.ip, TCP).into(),
                Duration::from_secs(5),
            )
            .expect("kernel TCP connection to B");
            c.set_read_timeout(Some(DEADLINE)).unwrap();
            let data: Vec<u8> = (0..TCP_BYTES).map(|i| (i * 7 % 251) as u8).collect();
            let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
            let writer = {
                let mut w = c.try_clone().unwrap();
                let data = data.clone();
                std::thread::spawn(move || w.write_all(&data).unwrap())
            };
            let mut back = vec![0u8; TCP_BYTES];
            c.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert!(back == data, "TCP data came back intact");
            sum
        });
        let sum_sent = a.join().unwrap();
        let ping = pair.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", pair.b.ip));
        assert!(ping.is_ok(), "ping through the pass-through path: {ping:?}");
        std::thread::sleep(Duration::from_millis(100));
        stop_tx.send(()).unwrap();
        let ((owned, kernel_udp_got, sum_recv), verdicts) = xdpos.join().unwrap();
        assert_eq!(owned, 50, "datagrams to the owned port reach xdpos");
        assert_eq!(kernel_udp_got, 50, "datagrams to another port reach the kernel socket");
        assert_eq!(sum_recv, sum_sent, "the kernel TCP server got every byte");
        assert_eq!(verdicts.redirect.packets, 50);
        assert!(verdicts.pass_not_owned.packets > 100, "{verdicts:?}");
    });
    assert_no_xdp(&pair.ns_b);
}

/// Binding a queue the device does not have fails with an error that says so.
#[test]
fn a_missing_queue_or_interface_is_a_clear_error() {
    sweep();
    let pair = Pair::new("mq", &PairOpts { queues: 2, ..Default::default() }).unwrap();
    pair.ns_b
        .run_in(|| {
            let err = XskPort::bind(&XskConfig::new(&pair.b.ifname, 5)).unwrap_err();
            assert!(matches!(err, NicError::NoSuchQueue { queue: 5, queues: 2, .. }), "{err:?}");
            assert_eq!(err.to_string(), "af_xdp: cannot bind xb0 queue 5: device has 2 queues");
            let err = XskPort::bind(&XskConfig::new("nope0", 0)).unwrap_err();
            assert!(err.to_string().contains("no interface named \"nope0\""), "{err}");
            let err = XdpProgram::attach("nope0", XdpMode::Auto).unwrap_err();
            assert!(matches!(err, NicError::NoSuchInterface(_)), "{err:?}");
            let cfg = XskConfig { frame_size: 3000, ..XskConfig::new(&pair.b.ifname, 0) };
            let err = XskPort::bind(&cfg).unwrap_err();
            assert!(err.to_string().contains("frame_size"), "{err}");
            let cfg = XskConfig { fill: 0, ..XskConfig::new(&pair.b.ifname, 0) };
            let err = XskPort::bind(&cfg).unwrap_err();
            assert!(err.to_string().contains("fill"), "{err}");
        })
        .unwrap();
}

/// The fill ring gets `fill` frames (512 by default), never fewer than a burst nor more than
/// the ring or half the UMEM; the rest stay free for transmit.
#[test]
fn the_fill_ring_holds_the_configured_depth() {
    sweep();
    // One queue per socket: a queue is busy for a while after its socket closes.
    let pair = Pair::new("fd", &PairOpts { queues: 5, ..Default::default() }).unwrap();
    pair.ns_b
        .run_in(|| {
            let posted = |queue: u32, set: &dyn Fn(&mut XskConfig)| {
                let mut cfg = XskConfig::new(&pair.b.ifname, queue);
                set(&mut cfg);
                let port = XskPort::bind(&cfg).unwrap();
                let c = port.audit().unwrap();
                assert_eq!(c.fill + c.free, c.total, "{c:?}");
                c.fill
            };
            assert_eq!(posted(0, &|_| {}), nic::afxdp::DEFAULT_FILL);
            assert_eq!(posted(1, &|c| c.fill = 100), 100);
            assert_eq!(posted(2, &|c| (c.fill, c.burst) = (8, 32)), 32);
            assert_eq!(posted(3, &|c| c.fill = 1 << 20), 2048);
            assert_eq!(posted(4, &|c| (c.fill, c.ring_size) = (1 << 20, 256)), 256);
        })
        .unwrap();
}

/// A second program cannot be attached over ours, and ours is gone once dropped.
#[test]
fn attach_refuses_an_occupied_interface_and_detaches_on_drop() {
    sweep();
    let pair = Pair::new("dt", &PairOpts::default()).unwrap();
    pair.ns_b
        .run_in(|| {
            let prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Native).unwrap();
            assert_eq!(prog.mode(), nic::afxdp::AttachedMode::Native);
            let err = XdpProgram::attach(&pair.b.ifname, XdpMode::Auto).unwrap_err();
            assert!(chain(&err).contains("already has an XDP program"), "{}", chain(&err));
            drop(prog);
        })
        .unwrap();
    assert_no_xdp(&pair.ns_b);
    // And a panic while attached (the unwinding path) detaches too.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pair.ns_b
            .run_in(|| {
                let _prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Auto).unwrap();
                panic!("test failure while attached");
            })
            .unwrap()
    }));
    assert!(r.is_err());
    assert_no_xdp(&pair.ns_b);
}

/// Frames handed back twice or never held are refused and counted, never corrupting the
/// accounting.
#[test]
fn double_free_and_forged_descriptors_are_counted_not_corrupting() {
    sweep();
    let pair = Pair::new("df", &PairOpts::default()).unwrap();
    pair.ns_b
        .run_in(|| {
            let mut port = XskPort::bind(&XskConfig::new(&pair.b.ifname, 0)).unwrap();
            let mut b = Burst::new();
            port.alloc_burst(&mut b, 4);
            let d = b.as_slice()[0];
            port.free_burst(&mut b);
            port.free(&d);
            let forged = nic::Desc { addr: 1 << 40, len: 60, hdr: Default::default() };
            port.free(&forged);
            let mut tx = Burst::new();
            tx.push(d);
            assert_eq!(port.tx_burst(&mut tx), 0, "a frame not held is not sent");
            assert_eq!(port.stats().invalid_descs, 3);
            let c = port.audit().unwrap();
            assert_eq!(c.held, 0);
        })
        .unwrap();
}

/// Where the driver has no native XDP (an IFB device), `Auto` falls back to SKB mode (with a
/// warning in the log) and `Native` refuses.
#[test]
fn auto_mode_falls_back_to_skb_where_native_xdp_is_missing() {
    sweep();
    let ns = xdpos::rig::Netns::create("fb").unwrap();
    ns.sh("ip link add dum0 type ifb && ip link set dum0 up").unwrap();
    ns.run_in(|| {
        let err = XdpProgram::attach("dum0", XdpMode::Native).unwrap_err();
        assert!(matches!(err, NicError::Sys { .. }), "{err:?}");
        let prog = XdpProgram::attach("dum0", XdpMode::Auto).unwrap();
        assert_eq!(prog.mode(), nic::afxdp::AttachedMode::Skb);
    })
    .unwrap();
    assert_no_xdp(&ns);
}

/// A worker's sockets on two interfaces share one UMEM (`XskGroup`): every frame received on
/// F's port toward A is transmitted from the same memory on F's port toward B and back (an L2
/// cross-connect), so kernel hosts A and B on one subnet talk through F: a kernel UDP echo in B
/// answers every datagram from A.
#[test]
fn a_shared_umem_group_cross_connects_two_interfaces_without_copying() {
    use nic::afxdp::XskGroup;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use xdpos::rig::{mac_str, Chain, ChainOpts};
    sweep();
    let opts = ChainOpts {
        queues: 1,
        a_cidr: (Ipv4Addr::new(10, 0, 0, 1), 24),
        b_cidr: (Ipv4Addr::new(10, 0, 0, 2), 24),
        gateways: None,
    };
    let chain = Chain::new("xc", &opts).unwrap();
    chain
        .ns_a
        .sh(&format!(
            "ip neigh replace {} lladdr {} dev xa0 nud permanent",
            chain.b.ip,
            mac_str(&chain.b.mac)
        ))
        .unwrap();
    chain
        .ns_b
        .sh(&format!(
            "ip neigh replace {} lladdr {} dev xb0 nud permanent",
            chain.a.ip,
            mac_str(&chain.a.mac)
        ))
        .unwrap();
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    // More than a socket's share of the fill ring (4096 frames / 2 / 2 sockets = 1024), so
    // the fill rings must be refilled from what the other socket's completions freed.
    const N: u32 = 1500;
    std::thread::scope(|s| {
        let f = s.spawn(|| {
            chain.ns_f.enter().unwrap();
            let pa = XdpProgram::attach(&chain.fa.ifname, XdpMode::Auto).unwrap();
            let pb = XdpProgram::attach(&chain.fb.ifname, XdpMode::Auto).unwrap();
            let cfg = |i: &str| XskConfig { frames: 4096, ..XskConfig::new(i, 0) };
            let mut group =
                XskGroup::open(&[(cfg(&chain.fa.ifname), &pa), (cfg(&chain.fb.ifname), &pb)])
                    .unwrap();
            pa.steer_all().unwrap();
            pb.steer_all().unwrap();
            ready_tx.send(()).unwrap();
            let mut forwarded = [0u64; 2];
            let mut b = Burst::new();
            let deadline = Instant::now() + DEADLINE;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for (from, to) in [(0, 1), (1, 0)] {
                    let n = group.port(from).rx_burst(&mut b);
                    // The very descriptors received on one socket go out on the other.
                    let sent = group.port(to).tx_burst(&mut b);
                    assert!(sent <= n);
                    forwarded[from] += sent as u64;
                    group.port(to).free_burst(&mut b);
                    group.port(to).reclaim();
                }
            }
            pa.steer_none().unwrap();
            pb.steer_none().unwrap();
            let settle = Instant::now() + Duration::from_secs(2);
            while Instant::now() < settle {
                group.port(0).reclaim();
                group.port(1).reclaim();
                let c = group.frame_counts();
                if c.tx == 0 && c.kernel == 0 && c.completion == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let counts = group.audit().unwrap_or_else(|e| panic!("{e}"));
            let (s0, s1) = (group.port(0).stats(), group.port(1).stats());
            (forwarded, counts, s0, s1)
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();
        let echo = s.spawn(|| {
            chain.ns_b.enter().unwrap();
            let sock = kernel_udp(chain.b.ip, 9000);
            let mut buf = [0u8; 2048];
            let mut n = 0;
            let deadline = Instant::now() + DEADLINE;
            while n < N && Instant::now() < deadline {
                if let Ok((len, from)) = sock.recv_from(&mut buf) {
                    sock.send_to(&buf[..len], from).unwrap();
                    n += 1;
                }
            }
            n
        });
        let got = chain
            .ns_a
            .run_in(|| {
                let sock = kernel_udp(chain.a.ip, 0);
                let dst = SocketAddrV4::new(chain.b.ip, 9000);
                let mut got = 0;
                let mut buf = [0u8; 2048];
                for i in 0..N {
                    sock.send_to(&payload(i, 200), dst).unwrap();
                    if let Ok(len) = sock.recv(&mut buf) {
                        if check_payload(&buf[..len]) == Some(i) {
                            got += 1;
                        }
                    }
                }
                got
            })
            .unwrap();
        let echoed = echo.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (forwarded, counts, s0, s1) = f.join().unwrap();
        assert_eq!(echoed, N, "B's kernel received every datagram through F\n{}", chain.dump());
        assert_eq!(got, N, "A received every echo through F\n{}", chain.dump());
        assert!(forwarded[0] >= u64::from(N) && forwarded[1] >= u64::from(N), "{forwarded:?}");
        assert_eq!(s0.rx_packets, s1.tx_packets, "what F received toward A left toward B");
        assert_eq!(s1.rx_packets, s0.tx_packets);
        assert_eq!((counts.held, counts.kernel, counts.total), (0, 0, 4096), "{counts:?}");
    });
    assert_no_xdp(&chain.ns_f);
}

/// A worker asleep on its socket (`wait_rx`, the idle sleep through `nic::idle`) is woken by
/// the first frame the kernel delivers, not by the timeout, and a frame already on the ring
/// ends a wait before it starts.
#[test]
fn an_idle_wait_is_woken_by_traffic_not_by_its_timeout() {
    sweep();
    let pair = Pair::new("wake", &PairOpts::default()).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (b_result, _) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            pair.ns_b.enter().unwrap();
            let prog = XdpProgram::attach(&pair.b.ifname, XdpMode::Auto).unwrap();
            prog.own_addr(pair.b.ip).unwrap();
            let mut port = XskPort::open(&XskConfig::new(&pair.b.ifname, 0), &prog).unwrap();
            // Quiet: a wait runs to its timeout.
            let t0 = Instant::now();
            let quiet = port.wait_rx(100).unwrap();
            let quiet_took = t0.elapsed();
            ready_tx.send(()).unwrap();
            // The kernel in A sends one datagram 200 ms from now; the wait allows 10 s.
            let t1 = Instant::now();
            let woken = port.wait_rx(10_000).unwrap();
            let woke_after = t1.elapsed();
            // The frame is still on the ring: a second wait returns at once.
            let t2 = Instant::now();
            let again = port.wait_rx(10_000).unwrap();
            let again_took = t2.elapsed();
            let mut burst = Burst::new();
            port.rx_burst(&mut burst);
            let got = burst.len();
            port.free_burst(&mut burst);
            let counts = assert_frames_accounted(&mut port);
            (quiet, quiet_took, woken, woke_after, again, again_took, got, counts)
        });
        ready_rx.recv_timeout(DEADLINE).expect("xdpos side ready");
        let a = s.spawn(|| {
            pair.ns_a.enter().unwrap();
            let sock = kernel_udp(pair.a.ip, 0);
            std::thread::sleep(Duration::from_millis(200));
            sock.send_to(&payload(1, 64), SocketAddrV4::new(pair.b.ip, ECHO_PORT)).unwrap();
        });
        (b.join().unwrap(), a.join().unwrap())
    });
    let (quiet, quiet_took, woken, woke_after, again, again_took, got, counts) = b_result;
    assert!(
        !quiet && quiet_took >= Duration::from_millis(90),
        "quiet wait: {quiet} {quiet_took:?}"
    );
    assert!(woken, "the datagram woke the wait");
    assert!(
        woke_after >= Duration::from_millis(150) && woke_after < Duration::from_secs(3),
        "woken by the frame sent at 200 ms, not the 10 s timeout: {woke_after:?}"
    );
    assert!(again && again_took < Duration::from_secs(1), "frame on the ring: {again_took:?}");
    assert_eq!(got, 1, "one datagram received");
    assert_eq!(counts.held, 0);
    assert_no_xdp(&pair.ns_b);
}
