//! The forwarding roles on the `chain` rig (A —veth— F —veth— B) with the Linux kernel as the
//! hosts on both sides: xdpos in F as an IPv4 router (10.0.1.1/24 toward A, 10.0.2.1/24 toward
//! B; A and B route through it and have no static neighbour for it, nor it for them) and as an
//! L2 cross-connect. Covered: UDP both ways, a kernel TCP transfer both ways with a checksum,
//! ping through the router (TTL 63) and to both of its addresses, TTL 1 → time exceeded seen
//! by ping, an unknown destination → net unreachable (ping), next hops resolved by ARP, a
//! million-route table forwarding sampled prefixes to the host its routes name, a new table
//! moving traffic while running, two queues with two workers, and the cross-connect passing
//! frames unchanged (ARP through it, TTL 64 at the far end) as the `xdpos forward` process.
//! Every test ends with the frame accounting of every worker's UMEM and no XDP program left.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libos::fib::{internet_like, NextHop};
use libos::forward::FwdDrop;
use libos::iface::route::Ipv4Cidr;
use rustix::process::Signal;
use xdpos::fastpath::FastPathMode;
use xdpos::forward::{fib_builder, ForwardReport, ForwardService, Role, RouteSpec};
use xdpos::rig::{mac_str, Chain, ChainOpts};
use xdpos_tests::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn chain(tag: &str, queues: u32) -> Chain {
    sweep();
    Chain::new(tag, &ChainOpts { queues, ..ChainOpts::default() }).unwrap()
}

/// Starts the userspace router in F with `role` on `queues` queues.
fn start(chain: &Chain, queues: u32, role: Role) -> ForwardService {
    start_forward(chain, &router_cfg(chain, queues, role, FastPathMode::Userspace))
}

/// A kernel TCP transfer A → B and B → A (`bytes` each way) through F, checked with FNV-1a on
/// both ends; returns whether both directions arrived intact.
fn tcp_checked(chain: &Chain, bytes: usize) -> bool {
    let up = pattern(bytes, 1);
    let down = pattern(bytes, 2);
    let (at_b, back) = tcp_transfer(chain, &up, &down);
    fnv(FNV0, &at_b) == fnv(FNV0, &up) && fnv(FNV0, &back) == fnv(FNV0, &down)
}

#[test]
fn router_forwards_udp_and_tcp_both_ways_resolving_next_hops_by_arp() {
    let chain = chain("fu", 1);
    let svc = start(&chain, 1, plain_router());
    let to_b = udp_round_trips(&chain, chain.b.ip, 200, 1000);
    let to_a = udp_round_trips(&chain, chain.a.ip, 100, 64);
    let tcp = tcp_checked(&chain, 4 << 20);
    // A's and B's kernels learned F's MACs by ARP (F answered on each link).
    let na = chain.ns_a.sh(&format!("ip neigh show {}", chain.fa.ip)).unwrap();
    let nb = chain.ns_b.sh(&format!("ip neigh show {}", chain.fb.ip)).unwrap();
    let reports = finish_forward(&chain, svc);
    let lines: Vec<String> = reports.iter().map(|r| r.line()).collect();
    assert_eq!(to_b, 200, "UDP A -> B -> A through F\n{lines:?}\n{}", chain.dump());
    assert_eq!(to_a, 100, "UDP B -> A -> B through F\n{lines:?}");
    assert!(tcp, "4 MiB each way over kernel TCP, checksums equal\n{lines:?}");
    assert!(na.contains(&mac_str(&chain.fa.mac)), "{na:?}");
    assert!(nb.contains(&mac_str(&chain.fb.mac)), "{nb:?}");
    let arp_requests = report_sum(&reports, |r| r.stacks.iter().map(|s| s.arp_requests_sent).sum());
    assert!(arp_requests >= 2, "F resolved A and B by ARP (no static neighbours): {lines:?}");
    assert!(report_sum(&reports, |r| r.forward.as_ref().unwrap().arp_queued) >= 1, "{lines:?}");
    assert!(report_sum(&reports, ForwardReport::forwarded) >= 600 + 2 * 2900, "{lines:?}");
    assert_eq!(
        report_drops(&reports, FwdDrop::NoRoute) + report_drops(&reports, FwdDrop::BadChecksum),
        0
    );
}

#[test]
fn ping_goes_through_the_router_and_reaches_both_of_its_addresses() {
    let chain = chain("fp", 1);
    let svc = start(&chain, 1, plain_router());
    let through = chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", chain.b.ip));
    let near = chain.ns_a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fa.ip));
    let far = chain.ns_a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fb.ip));
    let from_b = chain.ns_b.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", chain.fa.ip));
    let reports = finish_forward(&chain, svc);
    let through = through.unwrap_or_else(|e| panic!("ping through F: {e}\n{}", chain.dump()));
    assert!(through.contains("3 received") && through.contains("ttl=63"), "{through}");
    for out in [near, far, from_b] {
        let out = out.unwrap();
        assert!(out.contains("2 received") && out.contains("ttl=64"), "{out}");
    }
    let replies = report_sum(&reports, |r| r.stacks.iter().map(|s| s.icmp_echo_replies).sum());
    assert_eq!(replies, 6);
}

#[test]
fn ttl_1_gets_time_exceeded_and_an_unknown_route_net_unreachable() {
    let chain = chain("ft", 1);
    let svc = start(&chain, 1, plain_router());
    // Linux prints ICMP errors about its pings and exits 1: read the output either way.
    let ping = |args: &str| {
        chain
            .ns_a
            .sh(&format!("ping {args} 2>&1; true"))
            .unwrap_or_else(|e| panic!("ping {args}: {e}"))
    };
    let ttl = ping(&format!("-c 1 -t 1 -W 2 {}", chain.b.ip));
    let unreachable = ping("-c 1 -W 2 203.0.113.7");
    // A UDP datagram to nowhere: answered too (Linux does not report a net unreachable to a
    // UDP socket without IP_RECVERR: it is not a "hard" error, RFC 1122 §4.2.3.9).
    chain
        .ns_a
        .run_in(|| {
            let s = kernel_udp(chain.a.ip, 0);
            s.send_to(b"anyone?", SocketAddrV4::new(ip("203.0.113.7"), 9)).unwrap();
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reports = finish_forward(&chain, svc);
    assert!(ttl.contains("From 10.0.1.1") && ttl.contains("Time to live exceeded"), "{ttl}");
    assert!(
        unreachable.contains("From 10.0.1.1")
            && unreachable.contains("Destination Net Unreachable"),
        "{unreachable}"
    );
    assert_eq!(report_drops(&reports, FwdDrop::TtlExceeded), 1);
    assert_eq!(report_drops(&reports, FwdDrop::NoRoute), 2);
    assert_eq!(report_sum(&reports, |r| r.stacks[0].icmp_errors_sent), 3);
}

#[test]
fn a_million_routes_send_sampled_prefixes_to_the_host_they_name() {
    let chain = chain("fm", 1);
    let prefixes = internet_like(1_000_000, 11);
    let ifs = chain_ifaces(&chain);
    let mut b = fib_builder(&ifs, &[]);
    let via = |i: usize| NextHop::Forward {
        iface: (i % 2) as u16,
        via: Some(if i % 2 == 0 { chain.a.ip } else { chain.b.ip }),
    };
    for (i, p) in prefixes.iter().enumerate() {
        b.insert(*p, via(i));
    }
    let fib = Arc::new(b.build());
    assert!(fib.routes() >= 1_000_000);
    // Sample prefixes whose first address really goes where the prefix says (a longer prefix
    // inside it may say otherwise: then the table must follow the longer one, checked by the
    // unit tests), alternating sides; give that address to the host on that side.
    let mut picks: Vec<(Ipv4Addr, usize)> = Vec::new();
    for (i, p) in prefixes.iter().enumerate().step_by(4099) {
        let host = Ipv4Addr::from(p.network().to_bits() | 1);
        if b.reference_lookup(host) == Some(via(i)) && fib.lookup(host) == Some(&via(i)) {
            picks.push((host, i % 2));
        }
        if picks.len() == 16 {
            break;
        }
    }
    assert!(picks.iter().filter(|p| p.1 == 0).count() >= 4, "{picks:?}");
    assert!(picks.iter().filter(|p| p.1 == 1).count() >= 4, "{picks:?}");
    for &(addr, side) in &picks {
        let (ns, dev) = if side == 0 { (&chain.ns_a, "xa0") } else { (&chain.ns_b, "xb0") };
        ns.sh(&format!("ip addr add {addr}/32 dev {dev}")).unwrap();
    }
    let role = Role::Router {
        routes: vec![RouteSpec {
            prefix: Ipv4Cidr::new(ip("0.0.0.0"), 0),
            next_hop: NextHop::Blackhole,
        }],
        neighbors: Vec::new(),
        fib: Some(fib),
        tcp_listen: None,
    };
    let svc = start(&chain, 1, role);
    // Ping each sampled address from the host on the other side: the request reaches it only
    // if F sent it to the right host (the other host does not have the address).
    let mut failures = Vec::new();
    for &(addr, side) in &picks {
        let from = if side == 0 { &chain.ns_b } else { &chain.ns_a };
        let out = from.sh(&format!("ping -c 1 -W 2 {addr} 2>&1; true")).unwrap();
        if !out.contains("1 received") {
            failures.push(format!("{addr} (side {side}): {out}"));
        }
    }
    let reports = finish_forward(&chain, svc);
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{:?}",
        reports.iter().map(|r| r.line()).collect::<Vec<_>>()
    );
    // A request and a reply per ping, in place or (the first toward each host) after ARP.
    let queued = report_sum(&reports, |r| r.forward.as_ref().unwrap().arp_queued);
    assert!(report_sum(&reports, ForwardReport::forwarded) + queued >= 2 * picks.len() as u64);
}

#[test]
fn two_queues_two_workers_forward_and_share_what_arp_taught_them() {
    let chain = chain("f2", 2);
    let svc = start(&chain, 2, plain_router());
    // Sixteen kernel sockets in A (different source ports, so A's kernel spreads them over
    // its two transmit queues), each sending to B's echo.
    let n = 16;
    let got = with_udp_echo(&chain.ns_b, chain.b.ip, n * 10, || {
        chain
            .ns_a
            .run_in(|| {
                let socks: Vec<_> = (0..n).map(|_| kernel_udp(chain.a.ip, 0)).collect();
                let mut buf = [0u8; 2048];
                let mut got = 0;
                for round in 0..10u32 {
                    for (k, s) in socks.iter().enumerate() {
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let seq = round * 100 + k as u32;
                        let to = SocketAddrV4::new(chain.b.ip, ECHO_PORT);
                        s.send_to(&payload(seq, 300), to).unwrap();
                        if let Ok(len) = s.recv(&mut buf) {
                            got += u32::from(check_payload(&buf[..len]) == Some(seq));
                        }
                    }
                }
                got
            })
            .unwrap()
    });
    let reports = finish_forward(&chain, svc);
    let lines: Vec<String> = reports.iter().map(|r| r.line()).collect();
    assert_eq!(got, 160, "every datagram echoed through F\n{lines:?}");
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.forwarded() > 0), "both workers forwarded: {lines:?}");
}

#[test]
fn xconnect_process_passes_frames_unchanged_both_ways() {
    sweep();
    let opts = ChainOpts {
        queues: 1,
        a_cidr: (ip("10.0.0.1"), 24),
        b_cidr: (ip("10.0.0.2"), 24),
        gateways: None,
    };
    let chain = Chain::new("fx", &opts).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", chain.ns_f.name()])
        .arg(xdpos_bin())
        .args(["forward", "--role", "xconnect", "--iface", "xf0", "--iface", "xf1"]);
    let mut x = Child::spawn(cmd);
    assert!(x.wait_line("ready:", DEADLINE).is_some(), "not ready: {:?}", x.seen);
    // ARP crosses it (no static entries), the TTL is untouched, and B's MAC is B's own.
    let ping = chain.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {}", chain.b.ip));
    let echoed = udp_round_trips(&chain, chain.b.ip, 100, 1400);
    let back = udp_round_trips(&chain, chain.a.ip, 100, 64);
    let neigh = chain.ns_a.sh(&format!("ip neigh show {}", chain.b.ip)).unwrap();
    x.signal(Signal::TERM);
    let st = x.wait(DEADLINE).expect("exits after SIGTERM");
    assert!(st.success(), "{st:?} {:?}", x.seen);
    let ping = ping.unwrap_or_else(|e| panic!("ping across: {e}\n{}", chain.dump()));
    assert!(ping.contains("3 received") && ping.contains("ttl=64"), "{ping}");
    assert_eq!((echoed, back), (100, 100));
    assert!(neigh.contains(&mac_str(&chain.b.mac)), "{neigh:?}");
    let line = x.seen.iter().find(|l| l.starts_with("worker 0:")).expect("report line");
    assert!(line.contains("frames ok"), "{line}");
    // Every frame of the exchanges crossed, both ways (ARP included).
    let count = |dir: &str| -> u64 {
        let after = line.split(dir).nth(1).unwrap_or("");
        after.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count("a->b ") >= 203 && count("b->a ") >= 203, "{line}");
    assert_no_xdp(&chain.ns_f);
}

#[test]
fn a_new_table_moves_traffic_without_a_restart() {
    let chain = chain("fn", 1);
    let target = ip("198.51.100.5");
    chain.ns_b.sh(&format!("ip addr add {target}/32 dev {}", chain.b.ifname)).unwrap();
    let prefix = Ipv4Cidr::new(ip("198.51.100.0"), 24);
    let route = |next_hop| vec![RouteSpec { prefix, next_hop }];
    let role = Role::Router {
        routes: route(NextHop::Blackhole),
        neighbors: Vec::new(),
        fib: None,
        tcp_listen: None,
    };
    let svc = start(&chain, 1, role);
    let ping = || chain.ns_a.sh(&format!("ping -c 1 -W 1 {target} 2>&1; true")).unwrap();
    let before = ping();
    let via_b = NextHop::Forward { iface: 1, via: Some(chain.b.ip) };
    svc.set_fib(Arc::new(fib_builder(&chain_ifaces(&chain), &route(via_b)).build())).unwrap();
    // The worker takes the table between batches: within a few polls of an idle worker.
    let deadline = Instant::now() + DEADLINE;
    let mut after = ping();
    while !after.contains("1 received") && Instant::now() < deadline {
        after = ping();
    }
    let reports = finish_forward(&chain, svc);
    assert!(before.contains("0 received"), "blackholed at first: {before}");
    assert!(after.contains("1 received"), "routed after the new table: {after}");
    // The first ping, and possibly one sent before the idle worker looked for a new table.
    assert!(
        (1..=2).contains(&report_drops(&reports, FwdDrop::Blackhole)),
        "{:?}",
        reports[0].line()
    );
    assert_eq!(report_sum(&reports, |r| r.fib_swaps), 1);
}
