//! The router with the XDP fast path (issue 9) on the `chain` rig (A —veth— F —veth— B), the
//! Linux kernel as the hosts on both sides, as in `forward_kernel.rs`: xdpos in F routes
//! 10.0.1.0/24 (A) and 10.0.2.0/24 (B), no static neighbour anywhere. Covered: UDP and a
//! kernel TCP transfer both ways forwarded by the XDP program once ARP (punted to the library
//! OS) resolved the next hops; ping through (TTL 63) and to both of the router's addresses
//! (punted, answered by the library OS); TTL 1 → time exceeded and no route → net unreachable
//! (punted, answered); `auto` choosing XDP on veth (copy mode); a route change under traffic
//! that moves packets from one destination to another with no packet handled by a mix of the
//! two tables. Every test ends with the UMEM audit of every worker and no XDP program left.
//!
//! veth delivers a frame redirected into it (`ndo_xdp_xmit`) only if the receiving end has
//! NAPI on (an XDP program or GRO): A's and B's veths get a pass-everything program
//! ([`XdpProgram`] in its initial mode) for the duration of each test.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libos::fib::NextHop;
use libos::forward::FwdDrop;
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::{FastPathCounters, FpOutcome, XdpMode, XdpProgram};
use xdpos::fastpath::FastPathMode;
use xdpos::forward::{build_fib, ForwardConfig, ForwardReport, ForwardService, Role, RouteSpec};
use xdpos::rig::{mac_str, Chain, ChainOpts};
use xdpos_tests::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The rig and the pass programs on A's and B's veths (dropped with the tuple's second half).
fn chain(tag: &str) -> (Chain, Vec<XdpProgram>) {
    sweep();
    let chain = Chain::new(tag, &ChainOpts::default()).unwrap();
    let pa = chain.ns_a.run_in(|| XdpProgram::attach(&chain.a.ifname, XdpMode::Native)).unwrap();
    let pb = chain.ns_b.run_in(|| XdpProgram::attach(&chain.b.ifname, XdpMode::Native)).unwrap();
    (chain, vec![pa.unwrap(), pb.unwrap()])
}

fn start(chain: &Chain, cfg: &ForwardConfig) -> ForwardService {
    let svc = start_forward(chain, cfg);
    assert_eq!(svc.fast_path(), FastPathMode::Xdp, "veth binds in copy mode: XDP forwards");
    svc
}

/// Stops the service (reading the fast path's counters first), checks every worker's frame
/// accounting and that F has no XDP program left.
fn finish(chain: &Chain, svc: ForwardService) -> (Vec<ForwardReport>, FastPathCounters) {
    let fp = svc.fast_path_counters().unwrap().expect("the fast path is on");
    (finish_forward(chain, svc), fp)
}

fn describe(reports: &[ForwardReport], fp: &FastPathCounters) -> String {
    let mut s: Vec<String> = reports.iter().map(|r| r.line()).collect();
    s.push(format!(
        "fast path: {}",
        FpOutcome::ALL
            .iter()
            .map(|&o| format!("{}={}", o.name(), fp.get(o).packets))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    s.join("\n")
}

/// A kernel TCP transfer A → B and B → A (`bytes` each way) through F, checked with FNV-1a.
fn tcp_checked(chain: &Chain, bytes: usize) -> bool {
    let up: Vec<u8> = (0..bytes).map(|i| (i as u8).wrapping_mul(7) ^ (i >> 11) as u8).collect();
    let down: Vec<u8> = (0..bytes).map(|i| (i as u8).wrapping_mul(13) ^ (i >> 9) as u8).collect();
    let (at_b, back) = tcp_transfer(chain, &up, &down);
    fnv(FNV0, &at_b) == fnv(FNV0, &up) && fnv(FNV0, &back) == fnv(FNV0, &down)
}

#[test]
fn xdp_router_forwards_udp_and_tcp_both_ways_after_arp_in_the_library_os() {
    let (chain, _peers) = chain("xu");
    let svc = start(&chain, &router_cfg(&chain, 1, plain_router(), FastPathMode::Xdp));
    let to_b = udp_round_trips(&chain, chain.b.ip, 200, 1000);
    let early = svc.fast_path_counters().unwrap().unwrap();
    let to_a = udp_round_trips(&chain, chain.a.ip, 100, 64);
    let tcp = tcp_checked(&chain, 4 << 20);
    let na = chain.ns_a.sh(&format!("ip neigh show {}", chain.fa.ip)).unwrap();
    let nb = chain.ns_b.sh(&format!("ip neigh show {}", chain.fb.ip)).unwrap();
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    assert_eq!(to_b, 200, "UDP A -> B -> A through F\n{d}\n{}", chain.dump());
    assert_eq!(to_a, 100, "UDP B -> A -> B through F\n{d}");
    assert!(tcp, "4 MiB each way over kernel TCP, checksums equal\n{d}");
    assert!(na.contains(&mac_str(&chain.fa.mac)), "{na:?}");
    assert!(nb.contains(&mac_str(&chain.fb.mac)), "{nb:?}");
    // ARP went to the library OS (requests from A and B, F's own resolutions and replies).
    let arp_requests = report_sum(&reports, |r| r.stacks.iter().map(|s| s.arp_requests_sent).sum());
    assert!(arp_requests >= 2, "F resolved A and B by ARP: {d}");
    assert!(fp.get(FpOutcome::NotIpv4).packets >= 2, "ARP punted: {d}");
    // The first datagram toward an unresolved next hop was punted, parked by the library OS
    // until ARP answered, and forwarded from userspace.
    assert!(fp.get(FpOutcome::NoNeighbor).packets >= 1, "{d}");
    assert!(report_sum(&reports, |r| r.forward.as_ref().unwrap().arp_queued) >= 1, "{d}");
    // Then the XDP program forwarded: at least half of the 400 UDP frames of the first
    // exchange, and
    // the TCP transfer (about 2,900 full segments each way) and its ACKs.
    assert!(early.forwarded() >= 200, "fast path after ARP: {d}");
    assert!(fp.forwarded() >= 600 + 2 * 2900, "{d}");
    assert!(
        report_sum(&reports, ForwardReport::forwarded) < fp.forwarded() / 10,
        "userspace forwarded only the stragglers: {d}"
    );
    assert_eq!(
        report_drops(&reports, FwdDrop::NoRoute) + report_drops(&reports, FwdDrop::BadChecksum),
        0
    );
    assert_eq!(fp.get(FpOutcome::Malformed).packets, 0, "{d}");
}

#[test]
fn xdp_router_auto_pings_through_with_ttl_63_and_the_library_os_answers_its_addresses() {
    let (chain, _peers) = chain("xp");
    // veth binds AF_XDP in copy mode only: auto takes the XDP fast path (asserted by start).
    let svc = start(&chain, &router_cfg(&chain, 1, plain_router(), FastPathMode::Auto));
    let through = chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", chain.b.ip));
    let near = chain.ns_a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fa.ip));
    let far = chain.ns_a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fb.ip));
    let from_b = chain.ns_b.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fa.ip));
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    let through = through.unwrap_or_else(|e| panic!("ping through F: {e}\n{d}\n{}", chain.dump()));
    assert!(through.contains("3 received") && through.contains("ttl=63"), "{through}\n{d}");
    for out in [near, far, from_b] {
        let out = out.unwrap();
        assert!(out.contains("2 received") && out.contains("ttl=64"), "{out}\n{d}");
    }
    let replies = report_sum(&reports, |r| r.stacks.iter().map(|s| s.icmp_echo_replies).sum());
    assert_eq!(replies, 6, "{d}");
    assert_eq!(fp.get(FpOutcome::Local).packets, 6, "pings to F punted: {d}");
    // Three requests and three replies through F; the first of each direction may have waited
    // for ARP in the library OS (parked, then sent) or been forwarded from userspace, the rest
    // went through XDP.
    let userspace = report_sum(&reports, ForwardReport::forwarded);
    let parked = report_sum(&reports, |r| r.forward.as_ref().unwrap().arp_queued);
    assert_eq!(fp.forwarded() + userspace + parked, 6, "{d}");
    assert!(fp.forwarded() >= 4, "{d}");
}

#[test]
fn xdp_router_punts_ttl_1_and_no_route_and_the_library_os_answers() {
    let (chain, _peers) = chain("xt");
    let svc = start(&chain, &router_cfg(&chain, 1, plain_router(), FastPathMode::Xdp));
    let ping = |args: &str| {
        chain
            .ns_a
            .sh(&format!("ping {args} 2>&1; true"))
            .unwrap_or_else(|e| panic!("ping {args}: {e}"))
    };
    // Resolve B first, so the TTL-1 packet finds a route and a neighbour: only its TTL stops
    // it in the fast path.
    let warm = ping(&format!("-c 1 -W 2 {}", chain.b.ip));
    let ttl = ping(&format!("-c 1 -t 1 -W 2 {}", chain.b.ip));
    let unreachable = ping("-c 1 -W 2 203.0.113.7");
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    assert!(warm.contains("1 received"), "{warm}\n{d}");
    assert!(ttl.contains("From 10.0.1.1") && ttl.contains("Time to live exceeded"), "{ttl}\n{d}");
    assert!(
        unreachable.contains("From 10.0.1.1")
            && unreachable.contains("Destination Net Unreachable"),
        "{unreachable}\n{d}"
    );
    assert_eq!(fp.get(FpOutcome::Ttl).packets, 1, "{d}");
    assert_eq!(fp.get(FpOutcome::NoRoute).packets, 1, "{d}");
    assert_eq!(report_drops(&reports, FwdDrop::TtlExceeded), 1, "{d}");
    assert_eq!(report_drops(&reports, FwdDrop::NoRoute), 1, "{d}");
    assert_eq!(report_sum(&reports, |r| r.stacks[0].icmp_errors_sent), 2, "{d}");
}

#[test]
fn xdp_route_changes_under_traffic_move_packets_with_no_packet_seeing_a_mix() {
    let (chain, _peers) = chain("xr");
    let (x, y) = (ip("10.9.0.1"), ip("10.8.0.1"));
    for a in [x, y] {
        chain.ns_b.sh(&format!("ip addr add {a}/32 dev {}", chain.b.ifname)).unwrap();
    }
    chain.ns_a.sh(&format!("ip route add 10.8.0.0/15 via {}", chain.fa.ip)).unwrap();
    let ifs = chain_ifaces(&chain);
    let via_b = NextHop::Forward { iface: 1, via: Some(chain.b.ip) };
    // Table X: 10.9/16 to B, 10.8/16 a blackhole; table Y: the other way round.
    let table = |to_b: Ipv4Addr| {
        let (open, shut) =
            if to_b == x { ("10.9.0.0", "10.8.0.0") } else { ("10.8.0.0", "10.9.0.0") };
        build_fib(
            &ifs,
            &[
                RouteSpec { prefix: Ipv4Cidr::new(ip(open), 16), next_hop: via_b },
                RouteSpec { prefix: Ipv4Cidr::new(ip(shut), 16), next_hop: NextHop::Blackhole },
            ],
        )
    };
    let (tx, ty) = (table(x), table(y));
    let role = Role::Router {
        routes: Vec::new(),
        neighbors: vec![(1, chain.b.ip, chain.b.mac)],
        fib: Some(tx.clone()),
        tcp_listen: None,
    };
    let svc = start(&chain, &router_cfg(&chain, 1, role, FastPathMode::Xdp));
    let flips = 6;
    let done = AtomicBool::new(false);
    let (received, sent) = std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (chain_ref, done_ref) = (&chain, &done);
        let sink = s.spawn(move || {
            chain_ref
                .ns_b
                .run_in(|| {
                    let socks = [kernel_udp(x, 9000), kernel_udp(y, 9000)];
                    for so in &socks {
                        so.set_nonblocking(true).unwrap();
                    }
                    ready_tx.send(()).unwrap();
                    let mut got: Vec<(u32, u8)> = Vec::new();
                    let mut buf = [0u8; 64];
                    let deadline = Instant::now() + DEADLINE;
                    let mut quiet_since: Option<Instant> = None;
                    while Instant::now() < deadline {
                        let mut any = false;
                        for (label, so) in socks.iter().enumerate() {
                            while let Ok(n) = so.recv(&mut buf) {
                                if let Some(seq) = check_payload(&buf[..n]) {
                                    got.push((seq, label as u8));
                                    any = true;
                                }
                            }
                        }
                        if any {
                            quiet_since = None;
                        } else if done_ref.load(Ordering::Relaxed) {
                            let q = *quiet_since.get_or_insert_with(Instant::now);
                            if q.elapsed() > Duration::from_millis(300) {
                                break;
                            }
                        } else {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                    got
                })
                .unwrap()
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();
        let sender = s.spawn(move || {
            chain_ref
                .ns_a
                .run_in(|| {
                    let so = kernel_udp(chain_ref.a.ip, 0);
                    let mut seq = 0u32;
                    let end = Instant::now() + Duration::from_millis(2100);
                    while Instant::now() < end {
                        // Every sequence number goes to both destinations: exactly one of
                        // the two is routed by either table.
                        for _ in 0..20 {
                            for to in [x, y] {
                                let _ = so.send_to(&payload(seq, 32), SocketAddrV4::new(to, 9000));
                            }
                            seq += 1;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    seq
                })
                .unwrap()
        });
        for i in 0..flips {
            std::thread::sleep(Duration::from_millis(300));
            let next = if i % 2 == 0 { ty.clone() } else { tx.clone() };
            svc.set_fib(next).unwrap();
        }
        let sent = sender.join().unwrap();
        done.store(true, Ordering::Relaxed);
        (sink.join().unwrap(), sent)
    });
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    let mut by_seq = received.clone();
    by_seq.sort_unstable();
    // A sequence number arrives once, from the table in force when its datagram crossed F;
    // twice only when a flip fell between its two datagrams.
    let mut once = by_seq.clone();
    once.dedup_by_key(|e| e.0);
    assert!(by_seq.len() - once.len() <= flips, "delivered to both too often: {d}");
    // In sequence order the destination changes only at the flips: a packet looked up in a
    // mix of tables (or a late old table) would show up as an extra change.
    let changes = by_seq.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(changes <= flips, "{changes} changes for {flips} flips\n{d}");
    assert!(changes >= flips - 1, "the traffic moved at (nearly) every flip: {changes}\n{d}");
    // Nearly everything arrived (the blackholed half of each pair is dropped in XDP).
    assert!(by_seq.len() as f64 >= 0.95 * f64::from(sent), "{} of {sent}\n{d}", by_seq.len());
    assert!(fp.get(FpOutcome::Blackhole).packets as f64 >= 0.95 * f64::from(sent), "{d}");
    assert!(fp.forwarded() as f64 >= 0.95 * f64::from(sent), "{d}");
}

#[test]
fn xdp_router_mirrors_static_neighbours_and_obeys_a_new_table_with_a_blackhole() {
    // Static neighbours are mirrored before the first packet needs them (no punt for want of
    // a neighbour), and a new table that blackholes B's half of its /24 stops the fast path
    // from forwarding there (dropped and counted in XDP).
    let (chain, _peers) = chain("xn");
    let role = Role::Router {
        routes: Vec::new(),
        neighbors: vec![(1, chain.b.ip, chain.b.mac), (0, chain.a.ip, chain.a.mac)],
        fib: None,
        tcp_listen: None,
    };
    let svc = start(&chain, &router_cfg(&chain, 1, role, FastPathMode::Xdp));
    let first = udp_round_trips(&chain, chain.b.ip, 50, 100);
    let fp0 = svc.fast_path_counters().unwrap().unwrap();
    let fwd0 = fp0.forwarded();
    let ifs = chain_ifaces(&chain);
    let shut = build_fib(
        &ifs,
        &[RouteSpec { prefix: Ipv4Cidr::new(ip("10.0.2.0"), 25), next_hop: NextHop::Blackhole }],
    );
    svc.set_fib(Arc::clone(&shut)).unwrap();
    // 20 datagrams A -> B: none may arrive.
    let second = std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let chain = &chain;
        let sink = s.spawn(move || {
            chain
                .ns_b
                .run_in(|| {
                    let so = kernel_udp(chain.b.ip, 9001);
                    ready_tx.send(()).unwrap();
                    let mut buf = [0u8; 256];
                    let end = Instant::now() + Duration::from_millis(800);
                    let mut got = 0;
                    while Instant::now() < end {
                        got += u32::from(so.recv(&mut buf).is_ok());
                    }
                    got
                })
                .unwrap()
        });
        ready_rx.recv_timeout(DEADLINE).unwrap();
        chain
            .ns_a
            .run_in(|| {
                let so = kernel_udp(chain.a.ip, 0);
                for i in 0..20 {
                    so.send_to(&payload(i, 100), SocketAddrV4::new(chain.b.ip, 9001)).unwrap();
                }
            })
            .unwrap();
        sink.join().unwrap()
    });
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    assert_eq!(first, 50, "{d}");
    assert_eq!(fp0.get(FpOutcome::NoNeighbor).packets, 0, "static neighbours mirrored: {d}");
    assert!(fwd0 >= 100, "{d}");
    assert_eq!(second, 0, "blackholed after the new table: {d}");
    assert_eq!(fp.get(FpOutcome::Blackhole).packets, 20, "{d}");
    assert_eq!(fp.forwarded(), fwd0, "nothing more forwarded toward B: {d}");
}

/// The rig with A's and B's GRO set to `gro` and no XDP program on them: plain kernel hosts.
fn plain_chain(tag: &str, gro: bool) -> Chain {
    sweep();
    let chain = Chain::new(tag, &ChainOpts::default()).unwrap();
    let onoff = if gro { "on" } else { "off" };
    chain.ns_a.sh(&format!("ethtool -K {} gro {onoff}", chain.a.ifname)).unwrap();
    chain.ns_b.sh(&format!("ethtool -K {} gro {onoff}", chain.b.ifname)).unwrap();
    chain
}

/// `N received` of ping's summary.
fn received(out: &str) -> u32 {
    out.split(',')
        .find_map(|p| p.trim().strip_suffix(" received").and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn xdp_router_auto_between_plain_kernel_peers_forwards_in_userspace_what_they_would_drop() {
    // A and B have neither an XDP program nor GRO: F's veths lack NDO_XMIT in their XDP
    // features and the kernel would drop what the fast path redirects into them (counted only
    // as rx_queue_0_drops of the receiving veth). The router sees it at start, switches both
    // ports' redirects off, and the library OS forwards to them.
    let chain = plain_chain("xk", false);
    let accepts =
        |name: &str| chain.ns_f.run_in(|| nic::netdev::accepts_xdp_redirect(name)).unwrap();
    assert_eq!(accepts(&chain.fa.ifname), Some(false), "A has no NAPI");
    let svc = start(&chain, &router_cfg(&chain, 1, plain_router(), FastPathMode::Auto));
    let ping = chain.ns_a.sh(&format!("ping -c 20 -i 0.2 -W 1 {}; true", chain.b.ip)).unwrap();
    let stats = chain
        .ns_f
        .sh(&format!("ethtool -S {}; ethtool -S {}", chain.fa.ifname, chain.fb.ifname))
        .unwrap();
    let now = svc.fast_path_counters().unwrap().unwrap();
    assert!(
        received(&ping) >= 19,
        "all but at most the first ping answered: {ping}\n{stats}\n{now:?}\n{:?}",
        [0, 1].map(|p| svc.fast_path_port_usable(p).unwrap())
    );
    let to_b = udp_round_trips(&chain, chain.b.ip, 100, 200);
    let to_a = udp_round_trips(&chain, chain.a.ip, 100, 200);
    let usable = [0, 1].map(|p| svc.fast_path_port_usable(p).unwrap().unwrap());
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    assert!(to_b >= 98, "UDP A -> B -> A: {to_b} of 100\n{d}");
    assert!(to_a >= 98, "UDP B -> A -> B: {to_a} of 100\n{d}");
    assert_eq!(usable, [false, false], "both ports' redirects switched off\n{d}");
    // What leaves toward A and B is punted and forwarded by the library OS.
    assert_eq!(fp.forwarded(), 0, "{d}");
    assert!(fp.get(FpOutcome::PortDisabled).packets >= 2 * 18 + 4 * 98, "{d}");
    assert!(report_sum(&reports, ForwardReport::forwarded) >= 2 * 18 + 4 * 98, "{d}");
}

#[test]
fn xdp_router_auto_redirects_to_kernel_peers_with_gro_on_and_follows_a_peer_turning_it_off() {
    // GRO on A and B turns their veth NAPI on: redirects arrive, no port is switched off.
    // B turning GRO off switches port 1 to userspace within the watch's period; on again, back.
    let chain = plain_chain("xo", true);
    let svc = start(&chain, &router_cfg(&chain, 1, plain_router(), FastPathMode::Auto));
    let first = udp_round_trips(&chain, chain.b.ip, 200, 200);
    let fp1 = svc.fast_path_counters().unwrap().unwrap();
    let usable1 = [0, 1].map(|p| svc.fast_path_port_usable(p).unwrap().unwrap());
    let b_gro = |on: &str| {
        chain.ns_b.sh(&format!("ethtool -K {} gro {on}", chain.b.ifname)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    };
    b_gro("off");
    let usable2 = svc.fast_path_port_usable(1).unwrap().unwrap();
    let second = udp_round_trips(&chain, chain.b.ip, 50, 200);
    let fp2 = svc.fast_path_counters().unwrap().unwrap();
    b_gro("on");
    let usable3 = svc.fast_path_port_usable(1).unwrap().unwrap();
    let third = udp_round_trips(&chain, chain.b.ip, 50, 200);
    let (reports, fp) = finish(&chain, svc);
    let d = describe(&reports, &fp);
    assert_eq!(first, 200, "{d}");
    assert_eq!(usable1, [true, true], "{d}");
    assert_eq!(fp1.get(FpOutcome::PortDisabled).packets, 0, "{d}");
    assert!(fp1.forwarded() >= 300, "forwarded in XDP: {d}");
    assert!(!usable2, "B without GRO: port 1 switched off\n{d}");
    assert_eq!(second, 50, "{d}");
    let off = fp2.get(FpOutcome::PortDisabled).packets;
    assert!(off >= 50, "A -> B punted, forwarded in userspace: {off}\n{d}");
    assert!(usable3, "B's GRO on again: port 1 back in XDP\n{d}");
    assert_eq!(third, 50, "{d}");
    assert!(fp.forwarded() >= fp2.forwarded() + 2 * 48, "XDP again: {d}");
    assert_eq!(fp.get(FpOutcome::PortDisabled).packets, off, "{d}");
}
