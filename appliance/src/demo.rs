//! # `xdpos demo`: the datapath on a rig it builds and removes
//!
//! What it is: the README's first command. It builds the `pair` rig (namespace A with the
//! kernel as a client, namespace B with xdpos on a two-queue veth, B's kernel keeping its own
//! address 10.0.0.2), starts the echo host ([`crate::echo`]: one libos stack per queue) on B
//! at its own address 10.0.0.3, and shows it behaving as a host on the wire: A's kernel
//! resolves 10.0.0.3 by ARP (answered by xdpos) and pings it (answered by xdpos), while B's
//! kernel still answers for 10.0.0.2 through the same interface. Then kernel UDP sockets in A
//! drive the UDP echo for `--seconds`, with a live line per second: datagrams sent and echoed,
//! round-trip times, what each queue's worker did; and a summary with each stack's ARP, ping
//! and echo counts, the steering program's verdicts and the frame accounting.
//!
//! What it owns: the rig (removed on every path, Ctrl-C included), the service, the client.
//!
//! Exit status: 0 when every datagram came back intact and every frame is accounted for.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use libos::iface::route::Ipv4Cidr;
use nic::afxdp::{Attach, XdpMode, XskConfig};

use crate::bench::Stop;
use crate::echo::{EchoConfig, EchoService, Steer};
use crate::rig::{Pair, PairOpts};
use crate::worker::TxCsum;

/// Options of `xdpos demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long to drive traffic.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Datagrams per second from the kernel clients (paced).
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

const SERVICE_PORT: u16 = 7;
/// The address xdpos serves (B's kernel keeps `pair.b.ip`, 10.0.0.2).
const XDPOS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const CLIENTS: usize = 8;

/// Client-side totals, shared with the printer.
#[derive(Debug, Default)]
struct ClientCounters {
    sent: AtomicU64,
    echoed: AtomicU64,
    corrupt: AtomicU64,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let stop = Stop::on_signals()?;
    let stale = crate::rig::sweep_stale();
    if stale > 0 {
        println!("removed {stale} namespaces left by an earlier run");
    }
    let size = args.size.clamp(8, 1472);
    println!(
        "building the rig: namespace A (kernel clients) --veth, 2 queues-- namespace B (xdpos)"
    );
    let pair = Pair::new("demo", &PairOpts { queues: 2, b_kernel_ip: true, ..Default::default() })
        .context("build the namespace rig (needs root, iproute2 and ethtool)")?;
    let cfg = EchoConfig {
        ifname: pair.b.ifname.clone(),
        addr: Ipv4Cidr::new(XDPOS_IP, 24),
        port: SERVICE_PORT,
        steer: Steer::Addr,
        queues: vec![0, 1],
        cpus: (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .rev()
            .collect(),
        mode: XdpMode::Auto,
        attach: Attach::Link,
        socket: XskConfig::default(),
        tx_csum: TxCsum::Auto,
        services: Default::default(),
        tcp: Default::default(),
        worker: Default::default(),
        offloads: Default::default(),
    };
    let service = pair.ns_b.run_in(|| EchoService::start(&cfg))??;
    println!(
        "xdpos: host {XDPOS_IP}/24 on {} in namespace B ({} XDP, queues 0 and 1, one pinned \
         worker and one libos stack each), UDP echo on port {SERVICE_PORT}; B's kernel keeps \
         {} and everything else",
        pair.b.ifname,
        service.xdp_mode(),
        pair.b.ip
    );
    let neigh = |what: &str| {
        let out = pair.ns_a.sh(&format!("ip neigh show {XDPOS_IP}")).unwrap_or_default();
        let out = out.trim();
        println!("  A's ARP cache {what}: {}", if out.is_empty() { "(no entry)" } else { out });
    };
    println!("ARP and ping from A's kernel to xdpos at {XDPOS_IP}:");
    neigh("before");
    let ping_xdpos = pair.ns_a.sh(&format!("ping -c 3 -i 0.2 -W 1 {XDPOS_IP} | tail -2"));
    match &ping_xdpos {
        Ok(out) => println!("  {}", out.trim().replace('\n', "\n  ")),
        Err(e) => println!("  ping to xdpos failed: {e}"),
    }
    neigh("after (resolved by xdpos's ARP reply)");
    let ping = pair.ns_a.sh(&format!("ping -c 2 -i 0.2 -W 1 {} | tail -2", pair.b.ip));
    match &ping {
        Ok(out) => println!(
            "pass-through: B's kernel still answers ping at {} on the same interface:\n  {}",
            pair.b.ip,
            out.trim().replace('\n', "\n  ")
        ),
        Err(e) => println!("pass-through: ping to B's kernel failed: {e}"),
    }

    let cc = Arc::new(ClientCounters::default());
    let rtts = std::sync::Mutex::new(Vec::<u32>::with_capacity(1 << 16));
    let dst = SocketAddrV4::new(XDPOS_IP, SERVICE_PORT);
    let end = Instant::now() + Duration::from_secs(args.seconds.max(1));
    let (client_res, ()) = std::thread::scope(|s| {
        let client = s.spawn(|| {
            pair.ns_a.run_in(|| client(dst, pair.a.ip, size, args.rate, end, &stop, &cc, &rtts))
        });
        let mut last = Instant::now();
        let start = last;
        while Instant::now() < end && !stop.requested() {
            stop.sleep(Duration::from_secs(1).saturating_sub(last.elapsed()));
            last = Instant::now();
            let mut r = rtts.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
            r.sort_unstable();
            let pct =
                |p: f64| r.get(((r.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
            let queues: Vec<String> = service
                .counters()
                .iter()
                .map(|(q, c)| {
                    format!(
                        "q{q} rx {} replies {}",
                        c.rx.load(Ordering::Relaxed),
                        c.replies.load(Ordering::Relaxed)
                    )
                })
                .collect();
            println!(
                "t={:>2}s client: sent {} echoed {} | rtt p50 {} us p99 {} us | xdpos: {}",
                start.elapsed().as_secs(),
                cc.sent.load(Ordering::Relaxed),
                cc.echoed.load(Ordering::Relaxed),
                pct(0.5),
                pct(0.99),
                queues.join(", ")
            );
        }
        (client.join(), ())
    });
    let client_res = client_res.map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    client_res.context("enter namespace A")?.context("kernel UDP client")?;

    let (reports, verdicts) = service.join()?;
    let (sent, echoed, corrupt) = (
        cc.sent.load(Ordering::Relaxed),
        cc.echoed.load(Ordering::Relaxed),
        cc.corrupt.load(Ordering::Relaxed),
    );
    println!("summary:");
    println!("  kernel clients: sent {sent}, echoed {echoed}, corrupted {corrupt}");
    let mut frames_ok = true;
    for r in &reports {
        let f = match &r.frames {
            Ok(c) => format!(
                "{} frames accounted for ({} free, {} on the fill ring)",
                c.total, c.free, c.fill
            ),
            Err(e) => {
                frames_ok = false;
                format!("ACCOUNTING BROKEN: {e}")
            }
        };
        println!(
            "  xdpos queue {} (cpu {}): rx {} echoed {} dropped {} in {} bursts, {} kicks; \
             stack: {} ARP replies, {} ARP requests, {} ping replies, {} ICMP errors; \
             kernel: {} rx drops, {} fill-ring empty; {f}",
            r.queue,
            r.cpu.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            r.stats.rx_packets,
            r.echoed,
            r.dropped,
            r.stats.rx_bursts,
            r.stats.kicks,
            r.stack.arp_replies_sent,
            r.stack.arp_requests_sent,
            r.stack.icmp_echo_replies,
            r.stack.icmp_errors_sent,
            r.xdp.rx_dropped,
            r.xdp.rx_fill_ring_empty_descs,
        );
    }
    println!(
        "  steering program: {} redirected to xdpos, {} passed to the kernel",
        verdicts.redirect.packets,
        verdicts.pass_not_owned.packets
            + verdicts.pass_no_socket.packets
            + verdicts.pass_unparsed.packets
    );
    let attached = pair.ns_b.sh("ip -d link show")?.contains("prog/xdp");
    println!("  XDP program detached: {}", if attached { "NO" } else { "yes" });
    drop(pair);
    println!("  rig removed");
    if stop.requested() && Instant::now() < end {
        println!("interrupted");
        return Ok(());
    }
    let pinged = ping_xdpos.is_ok();
    if sent == 0 || echoed != sent || corrupt > 0 || !frames_ok || attached || !pinged {
        bail!(
            "demo failed: sent {sent}, echoed {echoed}, corrupted {corrupt}, frames ok \
             {frames_ok}, program left attached {attached}, xdpos answered ping {pinged}"
        );
    }
    println!("ok: xdpos answered ARP and ping, and every datagram came back intact");
    Ok(())
}

/// Kernel UDP clients in namespace A: paced sends from several sockets (several flows, so
/// both queues are used), reading the echoes and timing them.
#[allow(clippy::too_many_arguments)]
fn client(
    dst: SocketAddrV4,
    src: std::net::Ipv4Addr,
    size: usize,
    rate: u32,
    end: Instant,
    stop: &Stop,
    cc: &ClientCounters,
    rtts: &std::sync::Mutex<Vec<u32>>,
) -> anyhow::Result<()> {
    let socks: Vec<UdpSocket> = (0..CLIENTS)
        .map(|_| {
            let s = UdpSocket::bind(SocketAddrV4::new(src, 0))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()?;
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut pending: Vec<VecDeque<(u64, Instant)>> = vec![VecDeque::new(); CLIENTS];
    let mut seq = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut payload = vec![0u8; size];
    // Stop sending at the end, then give the last echoes a moment.
    let drain_until = end + Duration::from_millis(300);
    while Instant::now() < drain_until && !stop.requested() {
        let now = Instant::now();
        while now < end && start + interval.mul_f64(seq as f64) <= now {
            let i = (seq as usize) % CLIENTS;
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            for (j, b) in payload.iter_mut().enumerate().skip(8) {
                *b = (seq as usize + j) as u8;
            }
            if socks[i].send_to(&payload, dst).is_ok() {
                pending[i].push_back((seq, Instant::now()));
                cc.sent.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
        }
        for (i, s) in socks.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                let got = &buf[..n];
                let ok = n == size
                    && got.iter().enumerate().skip(8).all(|(j, &b)| {
                        b == (u64::from_be_bytes(got[..8].try_into().unwrap_or_default()) as usize
                            + j) as u8
                    });
                if !ok {
                    cc.corrupt.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let s_no = u64::from_be_bytes(got[..8].try_into().unwrap_or_default());
                while let Some(&(p, t)) = pending[i].front() {
                    pending[i].pop_front();
                    if p == s_no {
                        cc.echoed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut v) = rtts.lock() {
                            v.push(t.elapsed().as_micros() as u32);
                        }
                        break;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}
