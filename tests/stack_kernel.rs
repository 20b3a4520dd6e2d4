//! The libos stack on AF_XDP against the Linux kernel as its peer, on the `pair` rig: xdpos is
//! the host at B's address (the steering program owns the address), A's kernel talks to it.
//! A's permanent neighbour entry for B is removed, so A's kernel resolves xdpos by ARP, and
//! xdpos resolves A by ARP when it originates traffic. Covered: ping, ARP both ways (also with
//! the reply landing on another queue than the stack that asked), UDP echo at 64 to 1472 bytes
//! and a fragmented 4000-byte datagram (reassembled by xdpos, echoed fragmented, reassembled by
//! the kernel), and ICMP port unreachable seen by a connected kernel socket as ECONNREFUSED.
//! Every test ends with the frame accounting of every queue and no XDP program left.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libos::iface::neighbor::NeighborState;
use libos::iface::route::Ipv4Cidr;
use libos::udp::{UdpHandle, UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Stack, StackConfig};
use nic::afxdp::{XdpMode, XdpProgram, XskConfig, XskPort};
use xdpos::echo::{EchoConfig, EchoService, Steer, WorkerReport};
use xdpos::rig::{Pair, PairOpts};
use xdpos::worker::{self, App, Clock, TxCsum, Worker, WorkerConfig};
use xdpos_tests::*;

const ECHO: u16 = 7;

/// The pair with `queues` queues and without A's permanent neighbour entry for B.
fn pair(tag: &str, queues: u32) -> Pair {
    sweep();
    let pair = Pair::new(tag, &PairOpts { queues, ..Default::default() }).unwrap();
    pair.ns_a.sh(&format!("ip neigh del {} dev {}", pair.b.ip, pair.a.ifname)).unwrap();
    pair
}

/// The echo host at B's address /24 on `queues`, started in namespace B.
fn echo_host(pair: &Pair, queues: u32) -> EchoService {
    let cfg = EchoConfig {
        ifname: pair.b.ifname.clone(),
        addr: Ipv4Cidr::new(pair.b.ip, 24),
        port: ECHO,
        steer: Steer::Addr,
        queues: (0..queues).collect(),
        cpus: Vec::new(),
        mode: XdpMode::Native,
        attach: nic::afxdp::Attach::Link,
        socket: XskConfig::default(),
        tx_csum: TxCsum::Auto,
        services: Default::default(),
        tcp: Default::default(),
        worker: Default::default(),
        offloads: Default::default(),
    };
    pair.ns_b.run_in(|| EchoService::start(&cfg)).unwrap().unwrap()
}

/// Stops the host, checks every queue's frame accounting and that no program is left; returns
/// the reports.
fn finish(pair: &Pair, host: EchoService) -> Vec<WorkerReport> {
    let (reports, _) = host.join().unwrap();
    for r in &reports {
        assert!(r.frames.is_ok(), "queue {}: {:?}", r.queue, r.frames);
    }
    assert_no_xdp(&pair.ns_b);
    reports
}

fn sum(reports: &[WorkerReport], f: impl Fn(&WorkerReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

#[test]
fn the_kernel_resolves_an_xdpos_address_by_arp_and_pings_it() {
    let pair = pair("kp", 2);
    let host = echo_host(&pair, 2);
    let out = pair.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", pair.b.ip));
    let out = out.unwrap_or_else(|e| panic!("ping failed: {e}\n{}", dump(&pair)));
    assert!(out.contains("3 received"), "{out}");
    let neigh = pair.ns_a.sh(&format!("ip neigh show {}", pair.b.ip)).unwrap();
    assert!(
        neigh.contains(&xdpos::rig::mac_str(&pair.b.mac)),
        "A's kernel learned xdpos's MAC by ARP: {neigh:?}"
    );
    let reports = finish(&pair, host);
    assert!(sum(&reports, |r| r.stack.arp_replies_sent) >= 1, "{reports:?}");
    assert_eq!(sum(&reports, |r| r.stack.icmp_echo_replies), 3);
}

#[test]
fn kernel_udp_client_gets_echoes_of_every_size_and_of_a_fragmented_datagram() {
    let pair = pair("ke", 2);
    let host = echo_host(&pair, 2);
    let dst = SocketAddrV4::new(pair.b.ip, ECHO);
    let sizes = [64usize, 512, 1024, 1472, 4000];
    let got = pair
        .ns_a
        .run_in(|| {
            let s = kernel_udp(pair.a.ip, 0);
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.connect(dst).unwrap();
            let mut buf = vec![0u8; 9000];
            let mut got = Vec::new();
            for (k, &size) in sizes.iter().enumerate() {
                for rep in 0..3u32 {
                    let seq = (k as u32) * 10 + rep;
                    s.send(&payload(seq, size)).unwrap();
                    let ok = match s.recv(&mut buf) {
                        Ok(n) => n == size && check_payload(&buf[..n]) == Some(seq),
                        Err(_) => false,
                    };
                    got.push((size, ok));
                }
            }
            got
        })
        .unwrap();
    let reports = finish(&pair, host);
    for (size, ok) in &got {
        assert!(ok, "{size}-byte echo missing or wrong: {got:?}\n{reports:?}");
    }
    assert_eq!(sum(&reports, |r| r.echoed), 15);
    assert_eq!(sum(&reports, |r| r.stack.reassembled), 3, "three 4000-byte datagrams");
    assert_eq!(sum(&reports, |r| r.stack.fragments_sent), 9, "each echoed in 3 fragments");
}

#[test]
fn a_closed_port_answers_port_unreachable_and_a_connected_socket_sees_econnrefused() {
    let pair = pair("ku", 1);
    let host = echo_host(&pair, 1);
    let (refused, echoed) = pair
        .ns_a
        .run_in(|| {
            let s = kernel_udp(pair.a.ip, 0);
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.connect(SocketAddrV4::new(pair.b.ip, 9)).unwrap();
            s.send(b"anyone there?").unwrap();
            let refused = s.recv(&mut [0u8; 64]).map_err(|e| e.kind());
            // The echo port still answers.
            let e = kernel_udp(pair.a.ip, 0);
            e.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            e.send_to(&payload(1, 100), SocketAddrV4::new(pair.b.ip, ECHO)).unwrap();
            let mut buf = [0u8; 256];
            let echoed = e.recv(&mut buf).ok().and_then(|n| check_payload(&buf[..n]));
            (refused, echoed)
        })
        .unwrap();
    let reports = finish(&pair, host);
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused), "{reports:?}");
    assert_eq!(echoed, Some(1));
    assert_eq!(sum(&reports, |r| r.stack.icmp_errors_sent), 1);
}

/// A socket owner that sends one datagram from `local` to `to` on its first poll and counts
/// what comes back on that socket.
struct SendOnce {
    sock: UdpHandle,
    to: SocketAddrV4,
    sent: bool,
    replies: &'static AtomicUsize,
}

impl App for SendOnce {
    fn poll(&mut self, _: libos::Instant, stack: &mut Stack) {
        if !self.sent {
            stack.udp_send(self.sock, self.to, b"hello from xdpos").unwrap();
            self.sent = true;
        }
        let n =
            stack.udp_recv(self.sock, 8, |_, p| assert_eq!(p, b"hello from linux")).unwrap_or(0);
        self.replies.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs one worker per queue in namespace B, each with a [`SendOnce`] app sending from port
/// `4000 + queue` to `to`, until `stop` or a deadline; returns each worker's report and its
/// stack (for its ARP cache).
fn originating_host(
    pair: &Pair,
    queues: u32,
    to: SocketAddrV4,
    replies: &'static AtomicUsize,
    stop: &AtomicBool,
) -> Vec<(xdpos::worker::WorkerReport, Stack)> {
    pair.ns_b
        .run_in(|| {
            let ifname = &pair.b.ifname;
            let prog = XdpProgram::attach(ifname, XdpMode::Native).unwrap();
            let clock = Clock::new();
            let mut workers = Vec::new();
            for (q, sib) in (0..queues).zip(worker::siblings(queues as usize)) {
                let port = XskPort::open(&XskConfig::new(ifname, q), &prog).unwrap();
                let mut cfg =
                    StackConfig::new(EthernetAddress(pair.b.mac), &[Ipv4Cidr::new(pair.b.ip, 24)]);
                cfg.arp.announce_count = 0;
                let mut stack = Stack::new(cfg, clock.now()).unwrap();
                let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000 + q as u16);
                let sock = stack.udp_bind(local, UdpSocketConfig::mode(UdpMode::Queue)).unwrap();
                let app = SendOnce { sock, to, sent: false, replies };
                let w = Worker::new(port, stack, app, WorkerConfig::default(), clock);
                workers.push(w.with_siblings(sib));
            }
            prog.own_addr(pair.b.ip).unwrap();
            let until = Instant::now() + DEADLINE;
            let out = std::thread::scope(|s| {
                let hs: Vec<_> = workers
                    .into_iter()
                    .map(|mut w| {
                        s.spawn(move || {
                            let r = w.run(stop, Some(until));
                            (r, w.into_parts().1)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            drop(prog);
            out
        })
        .unwrap()
}

/// The kernel side in A: receives `n` datagrams on `port` (bounded) and answers each; returns
/// the senders.
fn kernel_answers(pair: &Pair, port: u16, n: usize) -> Vec<SocketAddrV4> {
    pair.ns_a
        .run_in(|| {
            let s = kernel_udp(pair.a.ip, port);
            let deadline = Instant::now() + DEADLINE;
            let mut from = Vec::new();
            let mut buf = [0u8; 256];
            while from.len() < n && Instant::now() < deadline {
                if let Ok((len, std::net::SocketAddr::V4(src))) = s.recv_from(&mut buf) {
                    assert_eq!(&buf[..len], b"hello from xdpos");
                    s.send_to(b"hello from linux", src).unwrap();
                    from.push(src);
                }
            }
            from
        })
        .unwrap()
}

fn wait_for(counter: &AtomicUsize, n: usize) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if counter.load(Ordering::Relaxed) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn check_originated(pair: &Pair, queues: u32, replies: &'static AtomicUsize) {
    let stop = AtomicBool::new(false);
    let to = SocketAddrV4::new(pair.a.ip, 5000);
    let (from, results) = std::thread::scope(|s| {
        let host = s.spawn(|| originating_host(pair, queues, to, replies, &stop));
        let from = kernel_answers(pair, 5000, queues as usize);
        let all_back = wait_for(replies, queues as usize);
        stop.store(true, Ordering::Relaxed);
        let results = host.join().unwrap();
        assert!(
            all_back,
            "replies back: {} of {queues}\n{}",
            replies.load(Ordering::Relaxed),
            dump(pair)
        );
        (from, results)
    });
    let mut ports: Vec<u16> = from.iter().map(|a| a.port()).collect();
    ports.sort_unstable();
    assert_eq!(ports, (0..queues as u16).map(|q| 4000 + q).collect::<Vec<_>>());
    assert!(from.iter().all(|a| *a.ip() == pair.b.ip));
    let mut requests = 0;
    for (r, stack) in &results {
        assert!(r.frames.is_ok(), "{:?}", r.frames);
        let n = stack.neighbors().get(pair.a.ip).expect("A is in every stack's cache");
        assert_eq!(n.mac, EthernetAddress(pair.a.mac));
        assert_ne!(n.state, NeighborState::Incomplete);
        requests += r.stack.arp_requests_sent;
    }
    assert!(requests >= 1, "xdpos asked by ARP");
    // A's kernel learned B from xdpos's request (its entry was removed at the start).
    let neigh = pair.ns_a.sh(&format!("ip neigh show {}", pair.b.ip)).unwrap();
    assert!(neigh.contains(&xdpos::rig::mac_str(&pair.b.mac)), "{neigh:?}");
    assert_no_xdp(&pair.ns_b);
}

#[test]
fn xdpos_resolves_the_kernel_by_arp_when_it_sends_first() {
    static REPLIES: AtomicUsize = AtomicUsize::new(0);
    let pair = pair("ko", 1);
    check_originated(&pair, 1, &REPLIES);
}

/// On veth, A's kernel sends both ARP replies through one of its TX queues, so they land on one
/// of B's queues and the other stack depends on its sibling's hint (without the hints this test
/// fails: checked by hand).
#[test]
fn every_queue_resolves_the_kernel_wherever_the_arp_reply_lands() {
    static REPLIES: AtomicUsize = AtomicUsize::new(0);
    let pair = pair("km", 2);
    check_originated(&pair, 2, &REPLIES);
}
