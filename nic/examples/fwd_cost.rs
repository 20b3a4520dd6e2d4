//! # What one packet costs the forwarding XDP program (issue 9), without a device
//!
//! `sudo cargo run --release -p nic --example fwd_cost [-- ROUNDS]` loads `bpf/fwd.bpf.c`
//! and `bpf/redirect.bpf.c` attached nowhere ([`FwdProbe`], [`RedirectProbe`]) and runs each
//! with `BPF_PROG_TEST_RUN` on a 64-byte IPv4/UDP frame, a million runs per program and round,
//! the programs interleaved in every round. It prints the kernel's average time per run
//! (median and minimum over the rounds, default 7) for:
//!
//! - `fwd-gateway`: the default route via a gateway with a resolved neighbour: what
//!   `xdpos bench fwd`'s one-route `xdpos-router-xdp` does to every frame;
//! - `fwd-tbl8`: a /32 route (a second-level group read) via a gateway;
//! - `fwd-on-link`: an on-link route, the neighbour the destination itself;
//! - `redirect`: the bare redirect (MAC rewrite, devmap redirect), the baseline.
//!
//! Each program sees its own output again in the next run (the kernel does not restore the
//! buffer), so the frame starts with TTL 255 and a call makes 250 runs: every run forwards.
//! The redirect itself is not performed outside live-frame mode (the action comes back to the
//! caller), for either program. The numbers are program time plus the test run's own
//! per-run overhead (the same for every program); they are a measurement, not a test: no
//! threshold. Root (or `CAP_BPF` and `CAP_NET_ADMIN`); nothing is attached, nothing sent.

use std::net::Ipv4Addr;
use std::time::Duration;

use nic::afxdp::{FpNextHop, FpOutcome, FpTable, FwdProbe, ProbeRun, RedirectProbe};
use nic::trafgen::{udp_frame, UdpSpec};

const IN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 2, 99];
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 99);
/// Runs per system call: the frame's TTL goes from 255 to 5.
const REPEAT: u32 = 250;
/// System calls per program and round: a million runs.
const CALLS: u32 = 4000;
const XDP_REDIRECT: u32 = 4;

/// The frame A sends to B through the router: 64 bytes, TTL 255.
fn frame() -> Vec<u8> {
    let spec = UdpSpec {
        src_mac: [2, 0, 0, 0, 1, 2],
        dst_mac: IN_MAC,
        src_ip: Ipv4Addr::new(10, 0, 1, 2),
        dst_ip: DST,
        src_port: 1024,
        dst_port: 9,
    };
    let mut f = udp_frame(&spec, 64).expect("template");
    f[14 + 8] = 255;
    f[14 + 10..14 + 12].fill(0);
    let c = libos::wire::checksum::checksum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

#[derive(Clone, Copy)]
enum Route {
    Gateway,
    Tbl8,
    OnLink,
}

/// A probe with ports 0 (in) and 1 (out) on the loopback device (nothing is sent), the
/// neighbours, and one route to [`DST`] of the given shape. Checks one run with distinct MACs,
/// then gives the neighbours port 0's MAC: a frame forwarded comes back to the router, so the
/// next run of a repeated test run forwards it again.
fn fwd_probe(route: Route, tbl24: &mut [u32], tbl8: &mut Vec<u32>, f: &[u8]) -> FwdProbe {
    let mut p = FwdProbe::load().expect("load the forwarding program (root?)");
    let fp = p.fast_path();
    fp.set_port(0, 1, IN_MAC, 1500).expect("port 0");
    fp.set_port(1, 1, OUT_MAC, 1500).expect("port 1");
    let n = fp.neighbors().expect("neighbour writer");
    n.set(1, GW, GW_MAC).expect("gateway neighbour");
    n.set(1, DST, HOST_MAC).expect("host neighbour");
    tbl24.fill(0);
    tbl8.clear();
    let via = match route {
        Route::OnLink => None,
        _ => Some(GW),
    };
    let next_hops = [FpNextHop::None, FpNextHop::Forward { port: 1, via }];
    let mut default = 0;
    match route {
        Route::Gateway => default = 1,
        Route::Tbl8 | Route::OnLink => {
            let d = u32::from(DST);
            tbl24[(d >> 8) as usize] = 1 << 31;
            tbl8.resize(256, 0);
            tbl8[(d & 0xff) as usize] = 1;
        }
    }
    let table = FpTable { tbl24, tbl8, next_hops: &next_hops, default };
    fp.load(&table).expect("load the table");
    fp.enable(true);
    let r = p.run(f, 1).expect("test run");
    let (mac, name) = match route {
        Route::OnLink => (HOST_MAC, "on-link"),
        _ => (GW_MAC, "via a gateway"),
    };
    assert_eq!(r.action, XDP_REDIRECT, "{name}: not redirected");
    assert_eq!(r.frame[0..6], mac, "{name}: destination MAC");
    assert_eq!(r.frame[6..12], OUT_MAC, "{name}: source MAC");
    assert_eq!(r.frame[14 + 8], 254, "{name}: TTL");
    assert_eq!(libos::wire::checksum::sum(&r.frame[14..34]), 0xffff, "{name}: header checksum");
    n.set(1, GW, IN_MAC).expect("gateway neighbour");
    n.set(1, DST, IN_MAC).expect("host neighbour");
    p
}

fn check_forwarded(name: &str, r: &ProbeRun) {
    assert_eq!(r.action, XDP_REDIRECT, "{name}: not redirected");
    if name == "redirect" {
        return;
    }
    assert_eq!(r.frame[0..6], IN_MAC, "{name}: destination MAC");
    assert_eq!(r.frame[6..12], OUT_MAC, "{name}: source MAC");
    assert_eq!(r.frame[14 + 8], (255 - REPEAT) as u8, "{name}: TTL");
    assert_eq!(libos::wire::checksum::sum(&r.frame[14..34]), 0xffff, "{name}: header checksum");
}

/// Two veth pairs, down, in the calling namespace: devices no packet arrives on, to hold the
/// four programs in the XDP dispatcher. Deleted on drop (deleting one end deletes the pair).
struct Veths(Vec<String>);

impl Veths {
    fn new() -> Veths {
        let id = std::process::id();
        let v = Veths((0..2).map(|i| format!("fwc{id}v{i}")).collect());
        for n in &v.0 {
            let ok = std::process::Command::new("ip")
                .args(["link", "add", n, "type", "veth", "peer", "name", &format!("{n}p")])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip link add {n} type veth (root?)");
        }
        v
    }

    /// The four device names.
    fn names(&self) -> Vec<String> {
        self.0.iter().flat_map(|n| [n.clone(), format!("{n}p")]).collect()
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::process::Command::new("ip").args(["link", "del", n]).status();
        }
    }
}

/// Average ns per run over [`CALLS`] calls of [`REPEAT`] runs.
fn measure(name: &str, frame: &[u8], run: &dyn Fn(&[u8]) -> ProbeRun) -> f64 {
    let mut total = Duration::ZERO;
    for i in 0..CALLS {
        let r = run(frame);
        if i == 0 {
            check_forwarded(name, &r);
        }
        total += r.per_run;
    }
    total.as_secs_f64() * 1e9 / f64::from(CALLS)
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(7, |s| s.parse().expect("ROUNDS"));
    let f = frame();
    let mut tbl24 = vec![0u32; 1 << 24];
    let mut tbl8 = Vec::new();
    let veths = Veths::new();
    let devs = veths.names();
    let mut probes = [
        ("fwd-gateway", fwd_probe(Route::Gateway, &mut tbl24, &mut tbl8, &f)),
        ("fwd-tbl8", fwd_probe(Route::Tbl8, &mut tbl24, &mut tbl8, &f)),
        ("fwd-on-link", fwd_probe(Route::OnLink, &mut tbl24, &mut tbl8, &f)),
    ];
    drop((tbl24, tbl8));
    let mut redirect = RedirectProbe::load(1, IN_MAC, OUT_MAC).expect("load the bare redirect");
    for ((_, p), dev) in probes.iter_mut().zip(&devs) {
        p.hold_in_dispatcher(dev).expect("attach natively to a veth");
    }
    redirect.hold_in_dispatcher(&devs[3]).expect("attach natively to a veth");
    let names: Vec<&str> = probes.iter().map(|p| p.0).chain(["redirect"]).collect();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, (name, p)) in probes.iter().enumerate() {
            ns[i].push(measure(name, &f, &|f| p.run(f, REPEAT).expect("test run")));
        }
        let i = probes.len();
        ns[i].push(measure("redirect", &f, &|f| redirect.run(f, REPEAT).expect("test run")));
    }
    for (name, p) in &probes {
        let c = p.counters().expect("counters");
        let runs = u64::from(REPEAT) * u64::from(CALLS) * rounds as u64 + 1;
        assert_eq!(c.forwarded(), runs, "{name}: every run forwarded and counted");
        assert_eq!(c.get(FpOutcome::NoNeighbor).packets, 0, "{name}: no punt");
    }
    println!(
        "BPF_PROG_TEST_RUN, 64-byte IPv4/UDP frame, {} runs per program and round, {rounds} rounds",
        REPEAT * CALLS
    );
    drop((probes, redirect, veths));
    println!("{:<12} {:>10} {:>8} {:>8}", "program", "median ns", "min ns", "max ns");
    for (name, v) in names.iter().zip(&mut ns) {
        v.sort_by(f64::total_cmp);
        let (min, med, max) = (v[0], v[v.len() / 2], v[v.len() - 1]);
        println!("{name:<12} {med:>10.1} {min:>8.1} {max:>8.1}");
    }
}
