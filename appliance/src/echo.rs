//! # `xdpos echo`: a UDP echo host on the libos stack
//!
//! What it is: an IPv4 host on one interface, served by one AF_XDP socket per queue, each
//! with one pinned [`Worker`] running its own libos [`Stack`] (the interface's MAC, the
//! configured address). It behaves as a host on the wire: it answers ARP requests and resolves
//! its peers by ARP when it originates traffic, answers ping, echoes UDP datagrams on the
//! service port **from the same frame** (addresses and ports swapped in place, checksums still
//! valid), answers other UDP ports with ICMP port unreachable (rate-limited), and reassembles
//! fragmented datagrams, whose echoes leave fragmented again. `xdpos echo` serves it and
//! `xdpos demo` drives it with kernel clients.
//!
//! TCP: the same host serves the TCP services of [`crate::services`] (echo, sink, source,
//! sockperf, iperf3, HTTP) on the ports of [`EchoConfig::services`], each worker running a
//! [`Services`] app over its stack's TCP ([`EchoConfig::tcp`] sizes the connection table and
//! buffers). A connection lives on the queue its packets arrive on; iperf3's control and data
//! connections must arrive on one queue (a single-queue interface, or RSS that keeps one
//! client on one queue).
//!
//! Steering ([`Steer`]): by default the steering program takes the whole address
//! (`XdpProgram::own_addr`: every IPv4 packet to it and ARP for it), so the host's kernel
//! keeps the interface's other addresses and traffic. [`Steer::Port`] takes only the UDP port
//! (the kernel keeps the address, its ARP and its ICMP: a pass-through set-up).
//!
//! Several queues, one address: every per-queue stack has the same MAC and address, so an ARP
//! request is answered identically by whichever stack its queue feeds; only queue 0's stack
//! announces the address (gratuitous ARP). An ARP *reply* lands on whichever queue the device
//! picks, not necessarily that of the stack that asked, so the workers pass what ARP taught
//! them to each other ([`crate::worker::Siblings`]). Fragments of one datagram must reach one
//! queue to be reassembled: veth sends a socket's frames through one queue, and NICs hash UDP
//! fragments on addresses only by default (`ethtool -n <dev> rx-flow-hash udp4`: `sd`).
//!
//! What it owns: the steering program, the sockets, the worker threads and their live
//! counters (single writer, relaxed stores, DESIGN.md §6), and the service's metrics source
//! ([`EchoService::metrics`]: one [`WorkerMetrics`] block per worker, role `echo`, labelled
//! with the worker index, the interface and the queue; each socket's `XDP_STATISTICS` and the
//! steering program's verdicts, read at scrape time).
//!
//! Shutdown: [`EchoService::join`] (called by `xdpos echo` on SIGTERM, SIGINT or the end of
//! `--seconds`) first tells the steering program to take nothing more, so the kernel stops
//! writing into the sockets, then stops the workers: each finishes its batch, frees every frame,
//! drains what was in flight and checks its frame accounting on a quiet port. It collects their
//! reports and drops the program, which detaches it. Dropping the service without `join` stops
//! the workers too.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use libos::iface::route::Ipv4Cidr;
use libos::udp::{UdpHandle, UdpMode, UdpSocketConfig};
use libos::wire::EthernetAddress;
use libos::{Stack, StackConfig, Stats};
use nic::afxdp::{
    Attach, L4Proto, Verdicts, XdpMode, XdpProgram, XdpStatistics, XskConfig, XskPort,
};
use nic::{FrameCounts, Port, PortStats};

use crate::capture::{CaptureSlot, CaptureTarget};
use crate::metrics::{Forwarding, ServiceMetrics, SocketReader, WorkerMetrics};
use crate::offload::{OffloadPort, Offloads};
use crate::services::{ServiceStats, Services, ServicesConfig};
use crate::worker::{self, Clock, TxCsum, Worker, WorkerConfig, WorkerCounters};

/// What the steering program hands to the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Steer {
    /// Every IPv4 packet to the address and ARP for it: xdpos is the host at that address.
    #[default]
    Addr,
    /// Only UDP to the service port and TCP to the services' ports at the address; the kernel
    /// keeps its ARP and ICMP.
    Port,
}

impl std::str::FromStr for Steer {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Steer> {
        match s {
            "addr" => Ok(Steer::Addr),
            "port" => Ok(Steer::Port),
            _ => anyhow::bail!("unknown steering {s:?} (addr, port)"),
        }
    }
}

/// What the echo service serves, and how.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Interface (in the calling thread's network namespace).
    pub ifname: String,
    /// The host's address and prefix (the prefix is the connected route for traffic the stack
    /// originates; replies go back to their link-layer source whatever it says).
    pub addr: Ipv4Cidr,
    /// The UDP port echoed.
    pub port: u16,
    /// What the steering program takes.
    pub steer: Steer,
    /// Queues served, one worker each.
    pub queues: Vec<u32>,
    /// CPUs to pin workers to, in turn (empty: no pinning).
    pub cpus: Vec<usize>,
    /// XDP attach mode.
    pub mode: XdpMode,
    /// BPF link (default) or legacy netlink attachment.
    pub attach: Attach,
    /// Socket settings other than the interface and queue.
    pub socket: XskConfig,
    /// Who computes transmit checksums.
    pub tx_csum: TxCsum,
    /// The TCP services and their ports.
    pub services: ServicesConfig,
    /// TCP tunables of every queue's stack (connection table, buffers, offloads).
    pub tcp: libos::tcp::TcpConfig,
    /// How the workers run (burst is taken from `socket.burst`).
    pub worker: WorkerConfig,
    /// Software TSO staging and GRO around each queue's socket ([`crate::offload`]).
    pub offloads: Offloads,
}

impl EchoConfig {
    /// A UDP echo host at `addr` on every given queue of `ifname` with the defaults: no TCP
    /// service, link attachment, native XDP with SKB fallback.
    pub fn new(ifname: &str, addr: Ipv4Cidr, port: u16, queues: Vec<u32>) -> EchoConfig {
        EchoConfig {
            ifname: ifname.to_string(),
            addr,
            port,
            steer: Steer::Addr,
            queues,
            cpus: Vec::new(),
            mode: XdpMode::Auto,
            attach: Attach::Link,
            socket: XskConfig::default(),
            tx_csum: TxCsum::Auto,
            services: ServicesConfig::default(),
            tcp: libos::tcp::TcpConfig::default(),
            worker: WorkerConfig::default(),
            offloads: Offloads::default(),
        }
    }
}

/// Parses `A.B.C.D` or `A.B.C.D/len` (a bare address is a /32, as with `ip addr add`).
pub fn parse_cidr(s: &str) -> anyhow::Result<Ipv4Cidr> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l.parse().with_context(|| format!("prefix length in {s:?}"))?;
            anyhow::ensure!(len <= 32, "prefix length {len} in {s:?} is above 32");
            (a, len)
        }
        None => (s, 32),
    };
    let addr: Ipv4Addr = a.parse().with_context(|| format!("IPv4 address in {s:?}"))?;
    Ok(Ipv4Cidr::new(addr, len))
}

/// What one worker reports when it stops.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Queue served.
    pub queue: u32,
    /// CPU pinned to, if any.
    pub cpu: Option<usize>,
    /// Port counters.
    pub stats: PortStats,
    /// Kernel counters of the socket.
    pub xdp: XdpStatistics,
    /// Frame accounting after the last batch.
    pub frames: Result<FrameCounts, String>,
    /// UDP datagrams echoed (in place, or from the reassembly buffer).
    pub echoed: u64,
    /// Frames not answered: dropped by the stack (any reason) or for want of TX room.
    pub dropped: u64,
    /// Frames dropped for want of TX room (part of `dropped`).
    pub tx_full_drops: u64,
    /// Frames that arrived after the stop and were freed unprocessed (part of `dropped`).
    pub drained: u64,
    /// The stack's counters.
    pub stack: Stats,
    /// Sleeps while idle.
    pub sleeps: u64,
    /// The TCP services' counters.
    pub services: ServiceStats,
    /// The stack's TCP counters.
    pub tcp: libos::tcp::TcpStats,
    /// The last iperf3 test this queue served.
    pub iperf3: Option<crate::services::iperf3::TestRecord>,
}

impl WorkerReport {
    /// The per-queue line `xdpos echo` prints at exit (tests parse its first fields).
    pub fn line(&self) -> String {
        let frames = match &self.frames {
            Ok(c) => format!("ok ({} total)", c.total),
            Err(e) => e.clone(),
        };
        let s = &self.stack;
        format!(
            "queue {}: rx {} echoed {} dropped {} frames {frames}; arp replies {} requests {}, \
             ping replies {}, icmp errors {}, reassembled {}, fragments out {}",
            self.queue,
            self.stats.rx_packets,
            self.echoed,
            self.dropped,
            s.arp_replies_sent,
            s.arp_requests_sent,
            s.icmp_echo_replies,
            s.icmp_errors_sent,
            s.reassembled,
            s.fragments_sent
        ) + &self.tcp_line()
            + &self.drops_line()
    }

    /// Every drop reason with a non-zero count, the stack's, TCP's (`tcp_` labels), then the
    /// worker's (`tx_full`, `drained`): `; drops [truncated=2 bad_checksum=1 tcp_no_socket=3]`
    /// (empty when nothing dropped).
    fn drops_line(&self) -> String {
        let stack = libos::DropReason::ALL
            .iter()
            .filter(|&&r| self.stack.drops(r) > 0)
            .map(|&r| format!("{r}={}", self.stack.drops(r)));
        let tcp = libos::tcp::TcpDrop::ALL
            .iter()
            .filter(|&&r| self.tcp.drops(r) > 0)
            .map(|&r| format!("tcp_{}={}", r.as_str(), self.tcp.drops(r)));
        let worker = [("tx_full", self.tx_full_drops), ("drained", self.drained)]
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(k, n)| format!("{k}={n}"));
        let all: Vec<String> = stack.chain(tcp).chain(worker).collect();
        if all.is_empty() {
            return String::new();
        }
        format!("; drops [{}]", all.join(" "))
    }

    /// The TCP part of [`line`](Self::line) (empty when the queue saw no TCP).
    fn tcp_line(&self) -> String {
        let (v, t) = (&self.services, &self.tcp);
        if t.segs_in == 0 && v.accepted == 0 && v.connected == 0 {
            return String::new();
        }
        format!(
            "; tcp accepted {} closed {} failed {} bytes in {} out {}, segs in {} out {}, \
             retransmits {}, syn cookies {}, sockperf replies {}, iperf3 tests {}, \
             http requests {} (200: {}, 404: {}, 405: {}, bad: {})",
            v.accepted,
            v.closed,
            v.failed,
            v.bytes_in,
            v.bytes_out,
            t.segs_in,
            t.segs_out,
            t.retransmits,
            t.syn_cookies_sent,
            v.sockperf_replies,
            v.iperf3_tests,
            v.http.requests,
            v.http.ok,
            v.http.not_found,
            v.http.method_not_allowed,
            v.http.bad_requests
        )
    }
}

/// A running echo service.
#[derive(Debug)]
pub struct EchoService {
    prog: Option<XdpProgram>,
    workers: Vec<JoinHandle<anyhow::Result<WorkerReport>>>,
    counters: Vec<(u32, Arc<WorkerCounters>)>,
    metrics: Arc<ServiceMetrics>,
    captures: Vec<CaptureTarget>,
    /// Raised by `join` (or drop) once the steering program takes nothing more.
    stop: Arc<AtomicBool>,
}

impl Drop for EchoService {
    fn drop(&mut self) {
        // Without `join` (an error path): stop the workers; the program detaches on its drop.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl EchoService {
    /// Attaches the steering program, opens one socket per queue, builds one stack per queue
    /// and starts the workers, all in the calling thread's network namespace.
    pub fn start(cfg: &EchoConfig) -> anyhow::Result<EchoService> {
        anyhow::ensure!(!cfg.queues.is_empty(), "echo: no queue to serve");
        let mac = nic::netdev::mac_address(&cfg.ifname)
            .with_context(|| format!("read the MAC address of {}", cfg.ifname))?;
        let prog = XdpProgram::attach_with(&cfg.ifname, cfg.mode, cfg.attach)
            .with_context(|| format!("attach the steering program to {}", cfg.ifname))?;
        let clock = Clock::new();
        let mut workers = Vec::new();
        let mut metrics =
            ServiceMetrics { programs: vec![prog.verdict_reader()?], ..ServiceMetrics::default() };
        for (i, &q) in cfg.queues.iter().enumerate() {
            let sc = XskConfig { ifname: cfg.ifname.clone(), queue: q, ..cfg.socket.clone() };
            let port = XskPort::open(&sc, &prog)
                .with_context(|| format!("open {} queue {q}", cfg.ifname))?;
            metrics.sockets.push(SocketReader {
                worker: i as u32,
                interface: cfg.ifname.clone(),
                queue: q,
                reader: port.stats_reader()?,
            });
            let (mut stack, echo) = echo_stack(cfg, EthernetAddress(mac), &port, i == 0, clock)?;
            let services = Services::new(&cfg.services, &mut stack)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("open the TCP services' listeners")?;
            workers.push((OffloadPort::new(port, cfg.offloads), stack, echo, services));
        }
        // Take the traffic only once every queue has its socket and stack.
        match cfg.steer {
            Steer::Addr => prog.own_addr(cfg.addr.addr)?,
            Steer::Port => {
                prog.own_port(Some(cfg.addr.addr), L4Proto::Udp, cfg.port)?;
                for (p, _) in cfg.services.listeners() {
                    prog.own_port(Some(cfg.addr.addr), L4Proto::Tcp, p)?;
                }
            }
        }
        let wcfg = WorkerConfig { burst: cfg.socket.burst, ..cfg.worker };
        let mut handles = Vec::new();
        let mut counters = Vec::new();
        let mut captures = Vec::new();
        let stop = Arc::new(AtomicBool::new(false));
        let sibs = worker::siblings(workers.len());
        for (i, ((port, stack, echo, services), sib)) in workers.into_iter().zip(sibs).enumerate() {
            let queue = port.inner().queue();
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
            let m = Arc::new(WorkerMetrics::new(
                i as u32,
                "echo",
                &[(&cfg.ifname, queue)],
                &[&cfg.ifname],
                Forwarding::None,
            ));
            metrics.workers.push(m.clone());
            let slot = Arc::new(CaptureSlot::default());
            captures.push(CaptureTarget {
                interface: cfg.ifname.clone(),
                queue,
                slot: slot.clone(),
                sub: 0,
                epoch: clock.wall_epoch(),
            });
            let w = Worker::new(port, stack, services, wcfg, clock)
                .with_siblings(sib)
                .with_metrics(m)
                .with_capture(slot);
            counters.push((queue, w.counters().clone()));
            let stop = stop.clone();
            let h = std::thread::Builder::new()
                .name(format!("xdpos-q{queue}"))
                .spawn(move || run_worker(w, queue, cpu, echo, &stop))
                .context("spawn a worker thread")?;
            handles.push(h);
        }
        tracing::info!(
            ifname = %cfg.ifname, addr = %cfg.addr, port = cfg.port, queues = ?cfg.queues,
            mode = prog.mode().as_str(), "echo service ready"
        );
        let metrics = Arc::new(metrics);
        Ok(EchoService { prog: Some(prog), workers: handles, counters, metrics, captures, stop })
    }

    /// The XDP mode the program runs in.
    pub fn xdp_mode(&self) -> &'static str {
        self.prog.as_ref().map_or("detached", |p| p.mode().as_str())
    }

    /// Live counters per queue.
    pub fn counters(&self) -> &[(u32, Arc<WorkerCounters>)] {
        &self.counters
    }

    /// The service's metrics, for a [`crate::metrics::Registry`].
    pub fn metrics(&self) -> Arc<ServiceMetrics> {
        self.metrics.clone()
    }

    /// The workers' capture points, for a [`crate::metrics::Registry`] (`xdpos capture`).
    pub fn captures(&self) -> Vec<CaptureTarget> {
        self.captures.clone()
    }

    /// The steering program's verdicts so far.
    pub fn verdicts(&self) -> anyhow::Result<Verdicts> {
        let prog = self.prog.as_ref().ok_or_else(|| anyhow::anyhow!("echo: program detached"))?;
        Ok(prog.verdicts()?)
    }

    /// Stops the inflow, then the workers; collects their reports and detaches the program.
    pub fn join(mut self) -> anyhow::Result<(Vec<WorkerReport>, Verdicts)> {
        let prog = self.prog.take().ok_or_else(|| anyhow::anyhow!("echo: joined twice"))?;
        let steer = prog.steer_none();
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        let mut failed = steer.err().map(anyhow::Error::from);
        for w in std::mem::take(&mut self.workers) {
            match w.join() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(anyhow::anyhow!("an echo worker panicked")),
            }
        }
        let verdicts = prog.verdicts()?;
        prog.detach()?;
        match failed {
            Some(e) => Err(e),
            None => Ok((reports, verdicts)),
        }
    }
}

/// The stack of one queue: the interface's MAC, the service address, an echo socket on the
/// service port (returned with the stack); only the first queue's stack announces the address.
fn echo_stack(
    cfg: &EchoConfig,
    mac: EthernetAddress,
    port: &XskPort,
    announce: bool,
    clock: Clock,
) -> anyhow::Result<(Stack, UdpHandle)> {
    let mut sc = StackConfig::new(mac, &[cfg.addr]);
    sc.tcp = libos::tcp::TcpConfig { tso: cfg.offloads.tso, ..cfg.tcp.clone() };
    sc.tx_csum_offload = cfg.tx_csum.offload(&port.caps());
    if !announce {
        sc.arp.announce_count = 0;
    }
    let mut stack = Stack::new(sc, clock.now())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("configure the stack of {} queue {}", cfg.ifname, port.queue()))?;
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
    let echo = stack
        .udp_bind(any, UdpSocketConfig::mode(UdpMode::Echo))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("bind the echo socket to port {}", cfg.port))?;
    Ok((stack, echo))
}

/// One worker thread: pin, run until stopped, report.
fn run_worker(
    mut w: Worker<OffloadPort<XskPort>, Services>,
    queue: u32,
    cpu: Option<usize>,
    echo: UdpHandle,
    stop: &AtomicBool,
) -> anyhow::Result<WorkerReport> {
    let pinned = cpu.filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    if cpu.is_some() && pinned.is_none() {
        tracing::warn!(queue, cpu = ?cpu, "cannot pin the worker; it runs unpinned");
    }
    w.metrics().set_cpu(pinned);
    let r = w.run(stop, None);
    let echoed = w.stack().udp_stats(echo).map(|s| s.echoed).unwrap_or(0);
    Ok(WorkerReport {
        queue,
        cpu: pinned,
        stats: r.port,
        xdp: w.port().inner().xdp_statistics().unwrap_or_default(),
        frames: r.frames.clone(),
        echoed,
        dropped: r.dropped(),
        tx_full_drops: r.tx_full_drops,
        drained: r.drained,
        stack: r.stack.clone(),
        sleeps: r.sleeps,
        services: w.app().stats(),
        tcp: w.stack().tcp().stats().clone(),
        iperf3: w.app().iperf3().last().cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_a_prefix() {
        assert_eq!(
            parse_cidr("10.0.0.2/24").unwrap(),
            Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24)
        );
        assert_eq!(parse_cidr("10.0.0.2").unwrap().prefix_len, 32);
        assert!(parse_cidr("10.0.0.2/33").is_err());
        assert!(parse_cidr("10.0.0/24").is_err());
        assert!(format!("{:#}", parse_cidr("x/1").unwrap_err()).contains("IPv4 address"));
        assert_eq!("port".parse::<Steer>().unwrap(), Steer::Port);
        assert!("all".parse::<Steer>().is_err());
    }
}
