//! # AF_XDP UDP echo service
//!
//! What it is: the Foundation's datapath end to end: the steering program takes a UDP port (or
//! a whole address) of one interface, one AF_XDP socket per queue feeds one pinned worker
//! thread, and each worker answers every well-formed datagram **from the same frame** (addresses
//! and ports swapped in place, checksums still valid) in run-to-completion bursts. It is what
//! `xdpos echo` serves and what `xdpos demo` drives with kernel clients.
//!
//! What it owns: the steering program, the sockets, the worker threads; counters per worker
//! (single writer, published once per burst with relaxed stores, DESIGN.md §6).
//!
//! Idle workers do not spin forever: after [`SPIN_POLLS`] empty polls a worker sleeps in
//! `poll(2)` on its socket (woken by traffic, or after [`IDLE_WAIT_MS`] to check the stop flag)
//! and counts the sleep.
//!
//! Shutdown: raising the stop flag (SIGTERM, SIGINT, or the end of `--seconds`) makes the
//! workers finish their burst, hand back every frame and exit; [`EchoService::join`] then
//! checks the frame accounting of every socket and drops the program, which detaches it.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use nic::afxdp::{
    Attach, L4Proto, Verdicts, XdpMode, XdpProgram, XdpStatistics, XskConfig, XskPort,
};
use nic::{Burst, FrameCounts, Port, PortStats};

use crate::bench::Stop;
use crate::raw::echo_in_place;

/// Empty polls before a worker sleeps on its socket.
pub const SPIN_POLLS: u32 = 256;
/// Longest sleep of an idle worker before it looks at the stop flag again.
pub const IDLE_WAIT_MS: i32 = 10;

/// What the echo service serves, and how.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Interface (in the calling thread's network namespace).
    pub ifname: String,
    /// The address datagrams are sent to; `None`: any address of the interface.
    pub addr: Option<Ipv4Addr>,
    /// The UDP port answered.
    pub port: u16,
    /// Take every packet to `addr` (the host's kernel keeps nothing of that address), instead
    /// of only the UDP port.
    pub own_addr: bool,
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
}

/// Per-worker counters, written by the worker only (relaxed stores, once per burst).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub rx: AtomicU64,
    /// Datagrams echoed.
    pub echoed: AtomicU64,
    /// Frames dropped: not a well-formed datagram for the service.
    pub dropped: AtomicU64,
    /// Echoes dropped because the TX ring stayed full.
    pub tx_full_drops: AtomicU64,
    /// Sleeps on the socket while idle.
    pub sleeps: AtomicU64,
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
    /// Frame accounting after the last burst.
    pub frames: Result<FrameCounts, String>,
    /// Echoed / dropped totals.
    pub echoed: u64,
    /// Frames not answered.
    pub dropped: u64,
}

/// A running echo service.
#[derive(Debug)]
pub struct EchoService {
    prog: XdpProgram,
    workers: Vec<JoinHandle<WorkerReport>>,
    counters: Vec<(u32, Arc<Counters>)>,
    stop: Stop,
}

impl EchoService {
    /// Attaches the steering program, opens one socket per queue and starts the workers, all
    /// in the calling thread's network namespace.
    pub fn start(cfg: &EchoConfig, stop: Stop) -> anyhow::Result<EchoService> {
        let prog = XdpProgram::attach_with(&cfg.ifname, cfg.mode, cfg.attach)
            .with_context(|| format!("attach the steering program to {}", cfg.ifname))?;
        let mut ports = Vec::new();
        for &q in &cfg.queues {
            let sc = XskConfig { ifname: cfg.ifname.clone(), queue: q, ..cfg.socket.clone() };
            ports.push(
                XskPort::open(&sc, &prog)
                    .with_context(|| format!("open {} queue {q}", cfg.ifname))?,
            );
        }
        // Take the traffic only once every queue has its socket.
        match (cfg.own_addr, cfg.addr) {
            (true, Some(a)) => prog.own_addr(a)?,
            (true, None) => prog.steer_all()?,
            (false, a) => prog.own_port(a, L4Proto::Udp, cfg.port)?,
        }
        let mut workers = Vec::new();
        let mut counters = Vec::new();
        for (i, port) in ports.into_iter().enumerate() {
            let c = Arc::new(Counters::default());
            counters.push((port.queue(), c.clone()));
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
            let stop = stop.clone();
            let service_port = cfg.port;
            let h = std::thread::Builder::new()
                .name(format!("xdpos-q{}", port.queue()))
                .spawn(move || worker(port, service_port, cpu, &stop, &c))
                .context("spawn a worker thread")?;
            workers.push(h);
        }
        tracing::info!(
            ifname = %cfg.ifname, port = cfg.port, queues = ?cfg.queues, mode = prog.mode().as_str(),
            "echo service ready"
        );
        Ok(EchoService { prog, workers, counters, stop })
    }

    /// The XDP mode the program runs in.
    pub fn xdp_mode(&self) -> &'static str {
        self.prog.mode().as_str()
    }

    /// Live counters per queue.
    pub fn counters(&self) -> &[(u32, Arc<Counters>)] {
        &self.counters
    }

    /// The steering program's verdicts so far.
    pub fn verdicts(&self) -> anyhow::Result<Verdicts> {
        Ok(self.prog.verdicts()?)
    }

    /// Stops the workers, collects their reports, and detaches the program.
    pub fn join(self) -> anyhow::Result<(Vec<WorkerReport>, Verdicts)> {
        self.stop.request();
        let mut reports = Vec::new();
        for w in self.workers {
            reports.push(w.join().map_err(|_| anyhow::anyhow!("an echo worker panicked"))?);
        }
        let verdicts = self.prog.verdicts()?;
        self.prog.detach()?;
        Ok((reports, verdicts))
    }
}

/// One worker: run to completion over one socket until stopped.
fn worker(
    mut port: XskPort,
    service_port: u16,
    cpu: Option<usize>,
    stop: &Stop,
    c: &Counters,
) -> WorkerReport {
    let pinned = cpu.filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    let mut rx = Burst::new();
    let mut tx = Burst::new();
    let (mut total_rx, mut echoed, mut dropped, mut tx_full, mut sleeps) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut empty = 0u32;
    while !stop.requested() {
        let n = port.rx_burst(&mut rx);
        if n == 0 {
            port.reclaim();
            empty += 1;
            if empty >= SPIN_POLLS {
                empty = 0;
                sleeps += 1;
                c.sleeps.store(sleeps, Ordering::Relaxed);
                let _ = port.wait_rx(IDLE_WAIT_MS);
            }
            continue;
        }
        empty = 0;
        total_rx += n as u64;
        for i in 0..rx.len() {
            let d = rx.as_slice()[i];
            if echo_in_place(port.frame_mut(&d), service_port) {
                tx.push(d);
            } else {
                port.free(&d);
                dropped += 1;
            }
        }
        rx.clear();
        let queued = tx.len() as u64;
        // One retry after reclaiming completions; what still does not fit is dropped (counted):
        // holding frames would starve the fill ring.
        if port.tx_burst(&mut tx) < queued as usize && !tx.is_empty() {
            port.reclaim();
            port.tx_burst(&mut tx);
        }
        tx_full += tx.len() as u64;
        echoed += queued - tx.len() as u64;
        port.free_burst(&mut tx);
        c.rx.store(total_rx, Ordering::Relaxed);
        c.echoed.store(echoed, Ordering::Relaxed);
        c.dropped.store(dropped, Ordering::Relaxed);
        c.tx_full_drops.store(tx_full, Ordering::Relaxed);
    }
    // Let the last transmissions complete, then account for every frame.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        port.reclaim();
        let f = port.frame_counts();
        if f.tx == 0 && f.kernel == 0 && f.completion == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    WorkerReport {
        queue: port.queue(),
        cpu: pinned,
        stats: port.stats(),
        xdp: port.xdp_statistics().unwrap_or_default(),
        frames: port.audit().map_err(|e| e.to_string()),
        echoed,
        dropped: dropped + tx_full,
    }
}
